package gate

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ckanops/ckanops/api"

	"github.com/ckanops/ckanops/config"
	"github.com/ckanops/ckanops/internal/testpg"
	"github.com/ckanops/ckanops/internal/testredis"
)

func withChecks(c config.ChecksConfig) rigOption {
	return func(o *Options) { o.Checks = c }
}

func (r *rig) health() api.Report {
	r.t.Helper()
	res := r.do("GET", "/-/ckanops/health", nil, "Authorization", "Bearer "+opsToken)
	if res.status != 200 {
		r.t.Fatalf("health: %d %s", res.status, res.body)
	}
	var rep api.Report
	if err := json.Unmarshal([]byte(res.body), &rep); err != nil {
		r.t.Fatalf("health: %v\n%s", err, res.body)
	}
	return rep
}

func byName(rep api.Report) map[string]api.CheckResult {
	m := map[string]api.CheckResult{}
	for _, c := range rep.Checks {
		m[c.Name] = c
	}
	return m
}

func names(rep api.Report) string {
	var n []string
	for _, c := range rep.Checks {
		n = append(n, c.Name)
	}
	return strings.Join(n, " ")
}

func solrOK(t *testing.T) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(`{"responseHeader":{"status":0,"QTime":1},"status":"OK"}`))
	}))
	t.Cleanup(srv.Close)
	return srv
}

// Every probe against live services: all ok, in order, with the gate's own
// probe first.
func TestHealthAllProbes(t *testing.T) {
	pg := testpg.Start(t)
	rd := testredis.Start(t)
	storage := t.TempDir()
	os.WriteFile(filepath.Join(storage, "file"), []byte("x"), 0o644)
	r := newRig(t, withChecks(config.ChecksConfig{
		CKANDB:      config.SecretURL(pg.CreateDB(t, "ckan_default")),
		DatastoreDB: config.SecretURL(pg.CreateDB(t, "datastore_default")),
		Redis:       config.SecretURL(rd.URL()),
		Solr:        config.SecretURL(solrOK(t).URL + "/solr/ckan"),
		StoragePath: storage,
	}))
	rep := r.health()
	if rep.Site != "test" || names(rep) != "gate ckan ckan_db datastore_db redis solr storage" {
		t.Fatalf("report: site %q, checks %s", rep.Site, names(rep))
	}
	for _, c := range rep.Checks {
		if c.Status != api.CheckOK || c.ObservedAt.IsZero() || c.Summary == "" {
			t.Errorf("%s: %s: %s", c.Name, c.Status, c.Summary)
		}
	}
	m := byName(rep)
	if ckan, gate := m["ckan"].CKAN, m["gate"].Gate; ckan == nil || ckan.Version == nil || *ckan.Version != "2.11.5" || gate == nil || gate.Mode != api.ModeLive {
		t.Errorf("details: ckan %+v, gate %+v", ckan, gate)
	}
	if db, ds := m["ckan_db"].Postgres, m["datastore_db"].Postgres; db == nil || db.Database != "ckan_default" || ds == nil || ds.Database != "datastore_default" ||
		db.WriteTransactions == nil || ds.WriteTransactions == nil {
		t.Errorf("databases: %+v / %+v", db, ds)
	}
	if rep.Overall() != api.CheckOK {
		t.Errorf("overall %s", rep.Overall())
	}
}

// Without [checks], only the gate and CKAN are probed; the rest say so.
func TestHealthNotConfigured(t *testing.T) {
	r := newRig(t)
	rep := r.health()
	if names(rep) != "gate ckan ckan_db datastore_db redis solr storage" {
		t.Fatalf("checks %s", names(rep))
	}
	for _, c := range rep.Checks[2:] {
		if c.Status != api.CheckUnknown || !c.IsNotConfigured() || !strings.HasPrefix(c.Summary, "not configured: set ") {
			t.Errorf("%s: %s: %s", c.Name, c.Status, c.Summary)
		}
	}
	if rep.Overall() != api.CheckOK {
		t.Errorf("overall %s: not configured is not a failure", rep.Overall())
	}
}

// Faults everywhere: each probe fails on its own, within its timeout,
// with a summary an operator can act on; the proxy keeps serving.
func TestHealthFaultsNeverBlock(t *testing.T) {
	rd := testredis.Start(t)
	rd.Kill(t)
	silent, _ := net.Listen("tcp", "127.0.0.1:0") // accepts, never answers
	t.Cleanup(func() { silent.Close() })
	go func() {
		for {
			c, err := silent.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { c.Close() })
		}
	}()
	closed, _ := net.Listen("tcp", "127.0.0.1:0")
	closedAddr := closed.Addr().String()
	closed.Close()
	solr := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(500)
		w.Write([]byte(`{"error":{"msg":"Error opening new searcher","code":500}}`))
	}))
	t.Cleanup(solr.Close)
	missing := filepath.Join(t.TempDir(), "gone")

	r := newRig(t, withChecks(config.ChecksConfig{
		CKANDB:      config.SecretURL("postgres://ckan_default:Db-pw-1234@" + silent.Addr().String() + "/ckan_default"),
		DatastoreDB: config.SecretURL("postgres://datastore_default:Ds-pw-5678@" + closedAddr + "/datastore_default"),
		Redis:       config.SecretURL("redis://:Rq-pw-9012@" + rd.Addr() + "/0"),
		Solr:        config.SecretURL(solr.URL + "/solr/ckan"),
		StoragePath: missing,
		Timeout:     config.Duration{Duration: 400 * time.Millisecond},
	}))

	// The proxy serves while a round of failing probes runs.
	done := make(chan api.Report)
	go func() { done <- r.health() }()
	var wg sync.WaitGroup
	for range 5 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := http.Get(r.srv.URL + "/api/3/action/status_show")
			if err != nil || res.StatusCode != 200 {
				t.Errorf("proxy during the checks: %v %v", res, err)
			}
			if res != nil {
				res.Body.Close()
			}
		}()
	}
	wg.Wait()
	rep := <-done

	m := byName(rep)
	want := map[string]string{
		"ckan_db":      "no answer from Postgres at " + silent.Addr().String() + " (database ckan_default, user ckan_default) within 400ms",
		"datastore_db": "cannot reach Postgres at " + closedAddr + " (database datastore_default, user datastore_default): connection refused",
		"redis":        "cannot reach Redis at " + rd.Addr() + " (db 0): connection refused",
		"solr":         "answered 500 Internal Server Error: Error opening new searcher",
		"storage":      missing + " does not exist",
	}
	for name, w := range want {
		c := m[name]
		if c.Status != api.CheckFail || !strings.Contains(c.Summary, w) {
			t.Errorf("%s: %s: %s\nwant a failure saying %q", name, c.Status, c.Summary, w)
		}
	}
	if m["gate"].Status != api.CheckOK || m["ckan"].Status != api.CheckOK {
		t.Errorf("gate %s, ckan %s: a fault elsewhere spoilt them", m["gate"].Status, m["ckan"].Status)
	}
	raw := fmt.Sprint(rep)
	for _, pw := range []string{"Db-pw-1234", "Ds-pw-5678", "Rq-pw-9012"} {
		if strings.Contains(raw, pw) {
			t.Errorf("the report shows password %s", pw)
		}
	}
	if rep.Overall() != api.CheckFail {
		t.Errorf("overall %s", rep.Overall())
	}
}

// A round is reused for [checks] interval: many consoles, one status_show.
func TestHealthCached(t *testing.T) {
	r := newRig(t, withChecks(config.ChecksConfig{Interval: config.Duration{Duration: time.Hour}}))
	r.sim.ResetJournal()
	first := r.health()
	var wg sync.WaitGroup
	for range 10 {
		wg.Add(1)
		go func() { defer wg.Done(); r.health() }()
	}
	wg.Wait()
	again := r.health()
	if !byName(first)["ckan"].ObservedAt.Equal(byName(again)["ckan"].ObservedAt) {
		t.Errorf("ckan observed at %v, then %v: not cached", byName(first)["ckan"].ObservedAt, byName(again)["ckan"].ObservedAt)
	}
	calls := 0
	for _, e := range r.sim.Journal() {
		if strings.Contains(e.Path, "status_show") {
			calls++
		}
	}
	if calls != 1 {
		t.Errorf("status_show reached CKAN %d times for 12 health calls", calls)
	}
	// The gate's own probe is always current.
	r.mustMode(api.ModeReadOnly, "")
	if g := byName(r.health())["gate"]; g.Gate == nil || g.Gate.Mode != api.ModeReadOnly {
		t.Errorf("gate probe after the mode change: %+v", g.Gate)
	}
	// Fresh (the drain's) is not cached.
	if rep := r.gate.Health(t.Context(), true); byName(rep)["ckan"].ObservedAt.Equal(byName(first)["ckan"].ObservedAt) {
		t.Error("Health(fresh) returned the cached round")
	}
}
