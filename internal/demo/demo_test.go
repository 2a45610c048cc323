package demo

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ckanops/ckanops/api"

	"github.com/ckanops/ckanops/ckanclient"
	"github.com/ckanops/ckanops/config"
	"github.com/ckanops/ckanops/internal/ckansim"
)

func TestDemoSitesAreRealGates(t *testing.T) {
	d, err := Start(context.Background(), Options{Sites: 3, Traffic: true})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		d.Close()
		if _, err := os.Stat(d.Dir); !os.IsNotExist(err) {
			t.Errorf("Close left %s behind", d.Dir)
		}
	}()
	sites, _, err := config.LoadSites(d.SitesFile)
	if err != nil {
		t.Fatalf("the demo's sites.toml does not load: %v", err)
	}
	if len(sites.Sites) != 3 {
		t.Fatalf("%d sites", len(sites.Sites))
	}
	s0, err := sites.Find(d.Sites[0].Name)
	if err != nil {
		t.Fatal(err)
	}
	tok, warns, err := s0.Token()
	if err != nil || len(warns) != 0 {
		t.Fatalf("token: %v %v", err, warns)
	}
	c, err := ckanclient.New(s0.URL, ckanclient.Options{Token: tok, TokenStyle: ckanclient.AuthBearer})
	if err != nil {
		t.Fatal(err)
	}
	st, err := c.SetMode(context.Background(), api.ModeRequest{Mode: api.ModeReadOnly, Message: "demo"})
	if err != nil || st.Mode != api.ModeReadOnly {
		t.Fatalf("enable through the demo's config: %+v %v", st, err)
	}
	for i, s := range d.Sites[:2] {
		req, _ := http.NewRequest("POST", s.GateURL+"/api/3/action/package_patch", strings.NewReader(`{"id": "bus-stops", "notes": "x"}`))
		req.Header.Set("Authorization", ckansim.SysadminToken)
		req.Header.Set("Content-Type", "application/json")
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		want := []int{503, 200}[i]
		if res.StatusCode != want {
			t.Errorf("%s: write got %d, want %d", s.Name, res.StatusCode, want)
		}
	}
}

// With Postgres and Redis on the machine, the demo's sites have real
// databases and RQ, and their runbook takes a real, consistent snapshot.
func TestDemoWithBackendsRunsARunbook(t *testing.T) {
	d, err := Start(context.Background(), Options{Sites: 2, Backends: true})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if len(d.Notes) > 0 {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI has Postgres and Redis, but: %v", d.Notes)
		}
		t.Skip(strings.Join(d.Notes, "; "))
	}
	c, err := ckanclient.New(d.Sites[1].GateURL, ckanclient.Options{Token: d.Token, TokenStyle: ckanclient.AuthBearer, Retries: -1})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	rep, err := c.Health(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, ch := range rep.Checks {
		switch ch.Name {
		case "ckan_db", "datastore_db", "redis", "storage":
			if ch.Status != api.CheckOK {
				t.Errorf("%s: %s: %s", ch.Name, ch.Status, ch.Summary)
			}
		}
	}
	if _, err := c.StartRunbook(ctx, api.RunbookOptions{AutoConfirm: true, Message: "demo"}); err != nil {
		t.Fatal(err)
	}
	var rb *api.Runbook
	for rb == nil || rb.State == api.RunbookRunning || rb.State == api.RunbookWaiting {
		time.Sleep(20 * time.Millisecond)
		if rb, err = c.Runbook(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if rb.State != api.RunbookDone || rb.Snapshot == nil || rb.Snapshot.Verdict != api.VerdictConsistent {
		t.Fatalf("%s at %s: %s; snapshot %+v", rb.State, rb.Step, rb.Error, rb.Snapshot)
	}
	ents, err := os.ReadDir(rb.Snapshot.Dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	if got := strings.Join(names, " "); got != "ckan_db.dump datastore_db.dump manifest.json storage.tar" {
		t.Fatalf("snapshot holds %s", got)
	}
}

// TestDemoSiteVersions: the sites take turns at CKAN 2.11, 2.12 and 2.10,
// and each gate judges with its site's surface: in read-only, 2.12's
// file_show passes the gate (CKAN answers it) and file_create is refused.
func TestDemoSiteVersions(t *testing.T) {
	d, err := Start(context.Background(), Options{Sites: 3})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	var got []string
	for _, s := range d.Sites {
		got = append(got, s.Sim.Surface().Version)
	}
	if strings.Join(got, " ") != "2.11 2.12 2.10" {
		t.Fatalf("site versions %v, want 2.11 2.12 2.10", got)
	}
	s := d.Sites[1]
	c, err := ckanclient.New(s.GateURL, ckanclient.Options{Token: d.Token, TokenStyle: ckanclient.AuthBearer})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.SetMode(context.Background(), api.ModeRequest{Mode: api.ModeReadOnly, Message: "demo"}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		status int
	}{
		{"file_show", http.StatusForbidden}, // passed by the gate; CKAN refuses the anonymous read of a file that does not exist
		{"file_create", http.StatusServiceUnavailable},
	} {
		res, err := http.Post(s.GateURL+"/api/3/action/"+tc.name, "application/json", strings.NewReader(`{"id": "f1", "upload": "x"}`))
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != tc.status {
			t.Errorf("%s on the 2.12 site in read-only: %d, want %d", tc.name, res.StatusCode, tc.status)
		}
	}
	for _, e := range s.Sim.Writes() {
		t.Errorf("a write reached CKAN: %+v", e)
	}
}

// The demo's directory outlives the demo when a runbook took a snapshot.
func TestDemoKeepsItsSnapshots(t *testing.T) {
	d, err := Start(context.Background(), Options{Sites: 1})
	if err != nil {
		t.Fatal(err)
	}
	snap := filepath.Join(d.Dir, d.Sites[0].Name, "snapshots", "x-20261206T000000Z")
	if err := os.MkdirAll(snap, 0o750); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(snap, "manifest.json"), []byte("{}"), 0o640)
	d.Close()
	t.Cleanup(func() { os.RemoveAll(d.Dir) })
	if !d.Kept {
		t.Fatal("Kept not set")
	}
	if _, err := os.Stat(snap); err != nil {
		t.Fatalf("the snapshot went: %v", err)
	}
	d2, err := Start(context.Background(), Options{Sites: 1})
	if err != nil {
		t.Fatal(err)
	}
	d2.Close()
	if _, err := os.Stat(d2.Dir); !os.IsNotExist(err) || d2.Kept {
		t.Fatalf("a demo without snapshots left %s (%v)", d2.Dir, err)
	}
}
