package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/ckanops/ckanops/api"

	"github.com/redis/go-redis/v9"

	"github.com/ckanops/ckanops/checks"
	"github.com/ckanops/ckanops/config"
	"github.com/ckanops/ckanops/gate"
	"github.com/ckanops/ckanops/internal/ckansim"
	"github.com/ckanops/ckanops/internal/testredis"
)

const checkToken = "check-ops-token-3141592653589793238462643383279502884197"

// checkSite is a real gate in front of a simulated CKAN, with Solr and
// Redis whose health the test controls, and a sites.toml naming it.
type checkSite struct {
	sites     string
	solrFails atomic.Bool
	rdb       *redis.Client
}

func newCheckSite(t *testing.T) *checkSite {
	t.Helper()
	cs := &checkSite{}
	sim, err := ckansim.New(ckansim.Options{})
	if err != nil {
		t.Fatal(err)
	}
	up := httptest.NewServer(sim)
	t.Cleanup(up.Close)
	solr := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if cs.solrFails.Load() {
			w.WriteHeader(500)
			w.Write([]byte(`{"error":{"msg":"Error opening new searcher","code":500}}`))
			return
		}
		w.Write([]byte(`{"status":"OK"}`))
	}))
	t.Cleanup(solr.Close)
	rd := testredis.Start(t)
	opt, _ := redis.ParseURL(rd.URL())
	cs.rdb = redis.NewClient(opt)
	t.Cleanup(func() { cs.rdb.Close() })

	dir := t.TempDir()
	store, err := gate.OpenFileStore(filepath.Join(dir, "state.json"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	upURL, _ := url.Parse(up.URL)
	g, err := gate.New(context.Background(), gate.Options{
		Site: "prod", Upstream: upURL, Store: store, OpsToken: checkToken,
		Checks: config.ChecksConfig{
			Redis:       config.SecretURL(rd.URL()),
			Solr:        config.SecretURL(solr.URL + "/solr/ckan"),
			StoragePath: dir,
			Interval:    config.Duration{Duration: 1}, // no cache: every call probes
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(g)
	t.Cleanup(srv.Close)
	cs.sites = writeSites(t, dir, srv.URL)
	return cs
}

func writeSites(t *testing.T, dir, gateURL string) string {
	t.Helper()
	tok := filepath.Join(dir, "ops.token")
	os.WriteFile(tok, []byte(checkToken+"\n"), 0o600)
	sites := filepath.Join(dir, "sites.toml")
	os.WriteFile(sites, []byte(fmt.Sprintf("[[site]]\nname = \"prod\"\nurl = %q\ntoken_file = %q\n", gateURL, tok)), 0o600)
	return sites
}

func TestCheckCommand(t *testing.T) {
	cs := newCheckSite(t)

	// All ok (the databases are not configured: shown as such, no failure).
	code, out, errOut := runCLI(t, "check", "--config", cs.sites, "prod")
	if code != 0 {
		t.Fatalf("all ok: exit %d\n%s\n%s", code, out, errOut)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) < 8 || strings.Join(strings.Fields(lines[0]), " ") != "NAME STATUS SUMMARY" {
		t.Fatalf("table:\n%s", out)
	}
	rows := map[string]string{}
	for _, l := range lines[1:8] {
		f := strings.Fields(l)
		rows[f[0]] = f[1]
	}
	want := map[string]string{"gate": "ok", "ckan": "ok", "ckan_db": "-", "datastore_db": "-", "redis": "ok", "solr": "ok", "storage": "ok"}
	for name, status := range want {
		if rows[name] != status {
			t.Errorf("%s: %q, want %q\n%s", name, rows[name], status, out)
		}
	}
	if !strings.Contains(out, "not configured: set ckan_db") {
		t.Errorf("not configured is not said:\n%s", out)
	}

	// A warning: RQ's workers are suspended.
	cs.rdb.Set(context.Background(), checks.RQSuspendedKey, 1, 0)
	code, out, errOut = runCLI(t, "check", "--config", cs.sites, "prod")
	if code != 1 || !strings.Contains(out, "RQ workers are suspended") || !strings.Contains(errOut, "1 check(s) warn: redis") {
		t.Errorf("warn: exit %d\n%s\n%s", code, out, errOut)
	}

	// A failure beats a warning.
	cs.solrFails.Store(true)
	code, out, errOut = runCLI(t, "check", "--json", "--config", cs.sites, "prod")
	if code != 2 || !strings.Contains(errOut, "1 check(s) failed: solr") {
		t.Errorf("fail: exit %d\n%s\n%s", code, out, errOut)
	}
	var rep api.Report
	if err := json.Unmarshal([]byte(out), &rep); err != nil || rep.Site != "prod" || len(rep.Checks) != 7 {
		t.Fatalf("--json: %v\n%s", err, out)
	}
	for _, c := range rep.Checks {
		if c.Name == "solr" && (c.Status != api.CheckFail || !strings.Contains(c.Summary, "Error opening new searcher")) {
			t.Errorf("solr in --json: %+v", c)
		}
	}
}

func TestCheckCommandUnreachableAndUsage(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close()
	sites := writeSites(t, t.TempDir(), "http://"+addr)

	code, out, errOut := runCLI(t, "check", "--json", "--config", sites, "prod")
	var e checkError
	if code != 2 || json.Unmarshal([]byte(out), &e) != nil || e.Site != "prod" || e.Error == "" || !strings.Contains(errOut, "no checks report") {
		t.Errorf("unreachable: exit %d\n%s\n%s", code, out, errOut)
	}
	code, _, errOut = runCLI(t, "check", "--config", sites)
	if code != 2 || !strings.Contains(errOut, "give exactly one SITE") {
		t.Errorf("no SITE: exit %d, %s", code, errOut)
	}
	code, _, errOut = runCLI(t, "check", "--config", sites, "nosuchsite")
	if code != 2 || !strings.Contains(errOut, "nosuchsite") {
		t.Errorf("unknown site: exit %d, %s", code, errOut)
	}
	code, out, _ = runCLI(t, "check", "--help")
	if code != 0 || !strings.Contains(out, "Exit status: 0 every check is ok; 1 a check warns; 2 a check failed") {
		t.Errorf("help: exit %d\n%s", code, out)
	}
}
