package main

// End-to-end, the A/B runbook: `ckanops runbook prod --ab` on the real
// gate processes of A (prod) and B (prod-b, started read-only), each in
// front of its own simulated CKAN, with A's and B's databases on a
// throwaway PostgreSQL cluster (the restore into B is the real
// pg_restore), and the real nginx with the shipped switch
// (deploy/nginx/ckanops-switch: its files and its script). The public URL
// the runbook checks is a plain-HTTP server block the test adds to nginx
// beside the shipped TLS one: the same upstream (ckanops_gate), without
// the test's self-signed certificate and Host name. The simulated CKANs do
// not read the databases: B's CKAN serves the same seeded catalogue as A's.

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ckanops/ckanops/api"
	"github.com/ckanops/ckanops/internal/ckansim"
	"github.com/ckanops/ckanops/internal/testpg"
)

// abCLI runs the CLI for site s, with a longer bound than cliIn's.
func abCLI(t *testing.T, s *site, args ...string) (int, string, string) {
	t.Helper()
	return s.cliWithin(4*time.Minute, "", args...)
}

// abE2E is the A/B runbook's world: A's and B's gates, their databases,
// nginx with the shipped switch, and the public URL.
type abE2E struct {
	a, b          *site
	ng            *testNginx
	plain         string // nginx's plain-HTTP server: the public URL
	aCKAN, bCKAN  string
	sideAtMigrate string
	prepared      string
}

// newABE2E starts it all. misroute installs nginx's ckan_b.conf pointing
// at A's gate, as a mistaken switch configuration would.
func newABE2E(t *testing.T, misroute bool) *abE2E {
	bin := nginxBinary(t)
	cl := testpg.Start(t)
	ctx := context.Background()
	sql := func(db string, stmts ...string) {
		t.Helper()
		c, err := pgx.Connect(ctx, db)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close(ctx)
		for _, s := range stmts {
			if _, err := c.Exec(ctx, s); err != nil {
				t.Fatalf("%s: %v", s, err)
			}
		}
	}
	aCKAN, aDS := cl.CreateDB(t, "ckan_a"), cl.CreateDB(t, "datastore_a")
	sql(aCKAN, `CREATE TABLE package (id text PRIMARY KEY, name text)`, `INSERT INTO package VALUES ('p1', 'trees'), ('p2', 'rivers')`)
	sql(aDS, `CREATE TABLE "9d2c7c3e-res" (_id serial, species text)`, `INSERT INTO "9d2c7c3e-res" (species) VALUES ('oak'), ('ash')`)
	bCKAN, bDS := cl.CreateDB(t, "ckan_b"), cl.CreateDB(t, "datastore_b")

	// B: read-only from its first start.
	b := newTitledSite(t, "prod-b", "Site B (read-only copy)", "initial_mode = \"read-only\"\ninitial_message = \"A read-only copy during an upgrade.\"\n", "")
	b.startGate()

	ng := newTestNginx(t, bin)
	plain := freePort(t)
	nginxWriteFile(t, filepath.Join(ng.dir, "conf.d", "zz-test-plain.conf"), fmt.Sprintf(`# The test's own: the shipped upstream over plain HTTP, as the runbook's public URL.
server {
    listen %s;
    location / {
        proxy_pass http://ckanops_gate;
        proxy_set_header Host $host;
    }
}
`, plain), 0o644)

	// A: the runbook's gate, with [ab].
	work := t.TempDir()
	deploy, err := filepath.Abs(deployDir)
	if err != nil {
		t.Fatal(err)
	}
	script := func(name, body string) string {
		p := filepath.Join(work, name)
		must(t, os.WriteFile(p, []byte("#!/bin/sh\nset -e\n"+body), 0o755))
		return p
	}
	sideAtMigrate := filepath.Join(work, "side-at-migrate")
	migrate := script("migrate.sh", fmt.Sprintf("cat %s/active.conf > %s\n%s/psql -X -q --set ON_ERROR_STOP=1 '%s' -c 'ALTER TABLE package ADD COLUMN plugin_data text'\nsleep 1 # a migration takes a while: readers are on B meanwhile\necho migrated\n",
		ng.switchDir, sideAtMigrate, cl.BinDir(), aCKAN))
	prepared := filepath.Join(work, "prepared")
	prepare := script("prepare.sh", "echo \"prepare B ($CKANOPS_B_URL) for $CKANOPS_PUBLIC_URL\" > "+prepared+"\n")
	switchWait := "20s"
	if misroute {
		switchWait = "3s" // B is never reached: no need to wait long
	}
	sw := script("switch.sh", fmt.Sprintf("CKANOPS_SWITCH_DIR=%s CKANOPS_NGINX=%s exec sh %s/nginx/ckanops-switch/ckanops-switch \"$@\"\n", ng.switchDir, ng.wrapper, deploy))
	a := newTitledSite(t, "prod", "Site A", "", fmt.Sprintf(`
[checks]
ckan_db = %q
datastore_db = %q
storage_path = "storage"

[snapshot]
dir = "snapshots"
pg_dump = %q

[runbook]
poll_interval = "50ms"

[[migrate]]
name = "schema"
argv = [%q]
timeout = "1m"

[ab]
b_url = %q
public_url = "http://%s"
ckan_db = %q
datastore_db = %q
storage_path = "b-storage"
switch_wait = %q

[[ab.prepare]]
name = "prepare B"
argv = [%q]

[[ab.switch_to_b]]
name = "nginx to B"
argv = [%q, "b"]

[[ab.switch_to_a]]
name = "nginx to A"
argv = [%q, "a"]
`, aCKAN, aDS, filepath.Join(cl.BinDir(), "pg_dump"), migrate, b.gateURL, plain, bCKAN, bDS, switchWait, prepare, sw, sw))
	must(t, os.MkdirAll(filepath.Join(a.dir, "storage", "resources", "9d2"), 0o755))
	must(t, os.WriteFile(filepath.Join(a.dir, "storage", "resources", "9d2", "3e-res"), []byte("species\noak\nash\n"), 0o644))
	must(t, os.Mkdir(filepath.Join(a.dir, "snapshots"), 0o750))
	a.startGate()
	if misroute {
		ng.installSwitch(a, a)
	} else {
		ng.installSwitch(a, b)
	}
	ng.start()
	w := &abE2E{a: a, b: b, ng: ng, plain: plain, aCKAN: aCKAN, bCKAN: bCKAN, sideAtMigrate: sideAtMigrate, prepared: prepared}
	if got := w.publicSite(); got != "prod" {
		t.Fatalf("the public URL serves %q before the runbook", got)
	}
	return w
}

// publicSite is the site the public URL's status names.
func (w *abE2E) publicSite() string {
	res, err := http.Get("http://" + w.plain + api.PathStatus)
	if err != nil {
		return "error: " + err.Error()
	}
	defer res.Body.Close()
	var st api.Status
	if json.NewDecoder(res.Body).Decode(&st) != nil {
		return fmt.Sprintf("status %d", res.StatusCode)
	}
	return st.Site
}

func TestRunbookABEndToEnd(t *testing.T) {
	w := newABE2E(t, false)
	a, b, ng, plain := w.a, w.b, w.ng, w.plain
	aCKAN, bCKAN, sideAtMigrate, prepared := w.aCKAN, w.bCKAN, w.sideAtMigrate, w.prepared
	ctx := context.Background()
	publicSite := w.publicSite

	// A goes read-only first (the runbook's enable keeps it so), and
	// writers try, all along: through nginx and at each gate. None may be
	// accepted until A reopens. (A write A accepted before would be in
	// A's databases, so in B's after the restore; but the simulated CKANs
	// do not read them: it would only make their catalogues differ.)
	a.mustCLI("enable", "--message", "Upgrading", "--wait", "prod")
	var stop atomic.Bool
	var wg sync.WaitGroup
	var accepted, readErrors atomic.Int64
	var lastReadError atomic.Value
	tries := 0
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; !stop.Load(); i++ {
			for _, u := range []string{"http://" + plain, a.gateURL, b.gateURL} {
				req, _ := http.NewRequest("POST", u+"/api/3/action/package_create", strings.NewReader(fmt.Sprintf(`{"name": "w-%d", "owner_org": "demo-org"}`, i)))
				req.Header.Set("Authorization", ckansim.SysadminToken)
				req.Header.Set("Content-Type", "application/json")
				if res, err := http.DefaultClient.Do(req); err == nil {
					if res.StatusCode == 200 {
						accepted.Add(1)
					}
					res.Body.Close()
				}
			}
			// Readers, through nginx, never see an error: A, then B while A
			// migrates, then A again.
			if res, err := http.Get("http://" + plain + "/api/3/action/package_search?q=water"); err != nil || res.StatusCode != 200 {
				readErrors.Add(1)
				if err == nil {
					lastReadError.Store(res.Status)
					res.Body.Close()
				} else {
					lastReadError.Store(err.Error())
				}
			} else {
				res.Body.Close()
			}
			tries++
			time.Sleep(100 * time.Millisecond)
		}
	}()

	// Everything up to A's reopening, confirmed by --yes (the typed names
	// included): then A waits before disable, read-only, the traffic back.
	code, out, errOut := abCLI(t, a, "runbook", "prod", "--ab", "--yes", "--stop-before", "disable", "--message", "Upgrading")
	stop.Store(true)
	wg.Wait()
	if code != 0 {
		t.Fatalf("runbook --ab: exit %d\n%s\n%s\nA's gate:\n%s\nB's gate:\n%s\n%s", code, out, errOut, a.logs, b.logs, ng.log())
	}
	t.Logf("runbook --ab:\n%s", out)
	readersOnB := 0
	for _, e := range b.sim.Journal() {
		if strings.HasSuffix(e.Path, "/package_search") && e.Header.Get("User-Agent") == "Go-http-client/1.1" {
			readersOnB++ // the test's reader, not verify_b (ckanops-gate-runbook-ab)
		}
	}
	if readersOnB == 0 {
		t.Error("no reader reached B's CKAN through nginx while A migrated")
	}
	if readErrors.Load() != 0 {
		t.Errorf("%d of %d reads through nginx failed (last: %v)", readErrors.Load(), tries, lastReadError.Load())
	}
	if tries == 0 || accepted.Load() != 0 || len(a.sim.Writes()) != 0 || len(b.sim.Writes()) != 0 {
		t.Fatalf("writes accepted while A was read-only: %d of %d rounds; A's CKAN %d, B's %d", accepted.Load(), tries, len(a.sim.Writes()), len(b.sim.Writes()))
	}
	rb := a.runbook(t)
	if rb.State != api.RunbookWaiting || rb.Waiting == nil || rb.Waiting.Step != api.StepDisable {
		t.Fatalf("runbook %s at %s: %s", rb.State, rb.Step, rb.Error)
	}
	for _, s := range api.ABSteps[:len(api.ABSteps)-1] {
		if st := rb.StepByName(s).State; st != api.StepDone {
			t.Errorf("step %s is %s", s, st)
		}
	}
	// The traffic was on B while A migrated, and is back on A.
	if side, _ := os.ReadFile(sideAtMigrate); !strings.Contains(string(side), "ckan_b.conf") {
		t.Errorf("while A migrated, nginx's active.conf was %q", side)
	}
	if got := publicSite(); got != "prod" {
		t.Errorf("the public URL serves %q after switch_to_a", got)
	}
	// B holds A's data: the restore, into B's own databases and storage.
	var name string
	c, err := pgx.Connect(ctx, bCKAN)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	if err := c.QueryRow(ctx, `SELECT name FROM package WHERE id = 'p2'`).Scan(&name); err != nil || name != "rivers" {
		t.Errorf("B's ckan_db: %q, %v", name, err)
	}
	var n int
	if err := c.QueryRow(ctx, `SELECT count(*) FROM information_schema.columns WHERE table_name = 'package' AND column_name = 'plugin_data'`).Scan(&n); err != nil || n != 0 {
		t.Errorf("B's schema was migrated too: %d, %v", n, err)
	}
	c2, err := pgx.Connect(ctx, aCKAN)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close(ctx)
	if err := c2.QueryRow(ctx, `SELECT count(*) FROM information_schema.columns WHERE table_name = 'package' AND column_name = 'plugin_data'`).Scan(&n); err != nil || n != 1 {
		t.Errorf("A's schema not migrated: %d, %v", n, err)
	}
	if data, err := os.ReadFile(filepath.Join(a.dir, "b-storage", "resources", "9d2", "3e-res")); err != nil || string(data) != "species\noak\nash\n" {
		t.Errorf("B's storage: %q, %v", data, err)
	}
	if p, err := os.ReadFile(prepared); err != nil || !strings.Contains(string(p), "prepare B ("+b.gateURL+") for http://"+plain) {
		t.Errorf("prepare: %q, %v", p, err)
	}

	// The rest: A reopens; B stays read-only, and the runbook says so.
	code, out, errOut = abCLI(t, a, "runbook", "prod", "--yes")
	if code != 0 {
		t.Fatalf("runbook (the rest): exit %d\n%s\n%s", code, out, errOut)
	}
	if !strings.Contains(out, "stays read-only until its operator retires it") {
		t.Errorf("the end does not say how to retire B:\n%s", out)
	}
	if res := ng.write("after-the-upgrade"); res.code != 200 {
		t.Errorf("a write through nginx after the runbook: %d %s", res.code, res.body)
	}
	if len(a.sim.Writes()) != 1 || len(b.sim.Writes()) != 0 {
		t.Errorf("writes: A's CKAN %d, B's %d", len(a.sim.Writes()), len(b.sim.Writes()))
	}
	code, out, _ = abCLI(t, b, "status", "--json", "prod-b")
	if code != 0 || !strings.Contains(out, `"mode": "read-only"`) && !strings.Contains(out, `"mode":"read-only"`) {
		t.Errorf("B after the runbook: exit %d\n%s", code, out)
	}
}

// switch_to_b runs (nginx reloads), but the public URL still reaches A:
// here nginx's ckan_b.conf points at A's gate. The runbook switches the
// traffic back with the shipped script, fails at switch_to_b, and A stays
// read-only, unmigrated; --retry after fixing nginx goes on.
func TestRunbookABEndToEndSwitchNotReached(t *testing.T) {
	w := newABE2E(t, true)
	code, out, errOut := abCLI(t, w.a, "runbook", "prod", "--ab", "--yes")
	if code != 1 {
		t.Fatalf("runbook --ab: exit %d, want 1\n%s\n%s", code, out, errOut)
	}
	for _, want := range []string{
		"step switch_to_b failed: after [[ab.switch_to_b]], the public URL http://" + w.plain + " still reaches site prod, not B (prod-b)",
		"the traffic was switched back: the public URL reaches A again, which stays read-only",
		"ckanops runbook prod --retry",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	rb := w.a.runbook(t)
	if rb.State != api.RunbookFailed || rb.Step != api.StepSwitchToB || rb.StepByName(api.StepMigrate).State != api.StepPending {
		t.Fatalf("runbook %s at %s; migrate %s", rb.State, rb.Step, rb.StepByName(api.StepMigrate).State)
	}
	if active, _ := os.ReadFile(filepath.Join(w.ng.switchDir, "active.conf")); !strings.Contains(string(active), "ckan_a.conf") {
		t.Errorf("nginx's active.conf: %q", active)
	}
	if got := w.publicSite(); got != "prod" {
		t.Errorf("the public URL serves %q", got)
	}
	if m := gateMode(t, w.a); m != api.ModeReadOnly {
		t.Errorf("A is %s", m)
	}
	if _, err := os.Stat(w.sideAtMigrate); err == nil {
		t.Error("A was migrated")
	}

	// Fixed: ckan_b.conf points at B's gate; the retry goes on to the end.
	w.ng.install("ckanops/ckan_b.conf", "nginx/ckanops-switch/ckan_b.conf", "127.0.0.1:8081", w.b.addr())
	code, out, errOut = abCLI(t, w.a, "runbook", "prod", "--retry", "--yes")
	if code != 0 {
		t.Fatalf("runbook --retry: exit %d\n%s\n%s", code, out, errOut)
	}
	if side, _ := os.ReadFile(w.sideAtMigrate); !strings.Contains(string(side), "ckan_b.conf") {
		t.Errorf("while A migrated, nginx's active.conf was %q", side)
	}
	if got := w.publicSite(); got != "prod" {
		t.Errorf("the public URL serves %q at the end", got)
	}
}

// gateMode is the mode s's gate reports.
func gateMode(t *testing.T, s *site) api.Mode {
	t.Helper()
	res, err := http.Get(s.gateURL + api.PathStatus)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var st api.Status
	if err := json.NewDecoder(res.Body).Decode(&st); err != nil {
		t.Fatal(err)
	}
	return st.Mode
}
