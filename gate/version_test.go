package gate

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ckanops/ckanops/api"
	"github.com/ckanops/ckanops/config"
	"github.com/ckanops/ckanops/internal/ckansim"
	"github.com/ckanops/ckanops/runbook"
)

// upgradingCKAN is a simulated CKAN that an upgrade moves from one
// version to another: two simulators, and which one answers.
type upgradingCKAN struct {
	sims map[string]*ckansim.Sim
	cur  atomic.Pointer[string]
	over atomic.Pointer[http.HandlerFunc] // answers instead, when set
	srv  *httptest.Server
}

func newUpgradingCKAN(t *testing.T, versions ...string) *upgradingCKAN {
	t.Helper()
	u := &upgradingCKAN{sims: map[string]*ckansim.Sim{}}
	for _, v := range versions {
		sim, err := ckansim.New(ckansim.Options{Version: v})
		if err != nil {
			t.Fatal(err)
		}
		u.sims[v] = sim
	}
	u.set(versions[0])
	u.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if h := u.over.Load(); h != nil {
			(*h)(w, r)
			return
		}
		u.sims[*u.cur.Load()].ServeHTTP(w, r)
	}))
	t.Cleanup(u.srv.Close)
	return u
}

func (u *upgradingCKAN) set(v string) { u.cur.Store(&v) }

func (u *upgradingCKAN) url() *url.URL {
	p, _ := url.Parse(u.srv.URL)
	return p
}

// fastVersionWatch makes the version watch look often, for the test.
func fastVersionWatch(t *testing.T) {
	oldV, oldM := versionInterval, migrateInterval
	versionInterval, migrateInterval = 100*time.Millisecond, 20*time.Millisecond
	t.Cleanup(func() { versionInterval, migrateInterval = oldV, oldM })
}

func watch(t *testing.T, g *Gate) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		g.WatchVersion(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
}

func (r *rig) waitSurface(what string, cond func(api.SurfaceInfo) bool) api.SurfaceInfo {
	r.t.Helper()
	var last api.SurfaceInfo
	waitFor(r.t, what, func() bool {
		st := r.status(true)
		if st.Surface == nil {
			return false
		}
		last = *st.Surface
		return cond(last)
	})
	return last
}

func applied(v string) func(api.SurfaceInfo) bool {
	return func(s api.SurfaceInfo) bool { return s.Applied == v }
}

const fileShow = "/api/3/action/file_show?id=x"

// The gate follows CKAN's version: the strictest rules until it is known,
// then that version's; 2.12's new reads pass in read-only only once 2.12
// is known; a newer CKAN gets the newest surface with a warning.
func TestRulesFollowCKANsVersion(t *testing.T) {
	fastVersionWatch(t)
	ckan := newUpgradingCKAN(t, "2.11", "2.12")
	r := newRig(t, func(o *Options) { o.Upstream, o.CKANVersion = ckan.url(), VersionAuto })
	r.mustMode(api.ModeReadOnly, "upgrade")

	// Not known yet: a read only if it is one in every version.
	if s := r.status(true).Surface; s == nil || !strings.HasPrefix(s.Applied, "strictest of ") || s.Reason != "CKAN's version is not known yet" {
		t.Fatalf("before the version is read: %+v", s)
	}
	if res := r.do("GET", fileShow, nil); res.status != http.StatusServiceUnavailable {
		t.Fatalf("file_show before the version is known: %d %s", res.status, res.body)
	}
	if res := r.do("GET", "/api/3/action/package_show?id=x", nil); res.status == http.StatusServiceUnavailable {
		t.Fatalf("package_show refused under the strictest rules: %s", res.body)
	}

	watch(t, r.gate)
	s := r.waitSurface("surface 2.11", applied("2.11"))
	if s.CKANVersion == "" || !strings.HasPrefix(s.Reason, "status_show reports CKAN 2.11") || s.Warning != "" {
		t.Fatalf("2.11: %+v", s)
	}
	if res := r.do("GET", fileShow, nil); res.status != http.StatusServiceUnavailable {
		t.Fatalf("file_show on 2.11 (an unknown action there): %d", res.status)
	}

	ckan.set("2.12")
	r.waitSurface("surface 2.12", applied("2.12"))
	if res := r.do("GET", fileShow, nil); res.status == http.StatusServiceUnavailable {
		t.Fatalf("file_show refused on 2.12: %s", res.body)
	}
	if res := r.do("POST", "/api/3/action/file_create", strings.NewReader("{}"), "Content-Type", "application/json"); res.status != http.StatusServiceUnavailable {
		t.Fatalf("file_create on 2.12 in read-only: %d", res.status)
	}

	// A CKAN newer than any surface: the newest, and a warning everywhere.
	newer := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/status_show") {
			fmt.Fprint(w, `{"success": true, "result": {"ckan_version": "2.13.1"}}`)
			return
		}
		ckan.sims["2.12"].ServeHTTP(w, r)
	})
	ckan.over.Store(&newer)
	s = r.waitSurface("a warning for 2.13", func(s api.SurfaceInfo) bool { return s.Warning != "" })
	if s.Applied != "2.12" || s.Warning != "surface 2.12 applied to CKAN 2.13.1; unknown actions are refused" {
		t.Fatalf("2.13: %+v", s)
	}
	rep := r.gate.Health(context.Background(), true)
	if c := rep.Checks[0]; c.Name != api.ProbeGate || c.Status != api.CheckWarn || !strings.Contains(c.Summary, s.Warning) {
		t.Fatalf("the gate probe: %+v", c)
	}

	// CKAN unreachable: the strictest rules again, saying why.
	down := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "bad gateway", http.StatusBadGateway)
	})
	ckan.over.Store(&down)
	s = r.waitSurface("the strictest rules", func(s api.SurfaceInfo) bool { return strings.HasPrefix(s.Applied, "strictest of ") })
	if !strings.Contains(s.Reason, "could not be read") {
		t.Fatalf("unreadable: %+v", s)
	}
}

// A pinned version is applied whatever CKAN says; an unknown one stops
// the gate.
func TestPinnedCKANVersion(t *testing.T) {
	ckan := newUpgradingCKAN(t, "2.11")
	r := newRig(t, func(o *Options) { o.Upstream, o.CKANVersion = ckan.url(), "2.12" })
	if s := r.status(true).Surface; s == nil || s.Applied != "2.12" || s.Reason != "pinned by [policy] ckan_version" {
		t.Fatalf("pinned: %+v", s)
	}
	store, err := OpenFileStore(filepath.Join(t.TempDir(), "s.json"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = New(context.Background(), Options{Site: "x", Upstream: ckan.url(), Store: store, OpsToken: opsToken, CKANVersion: "2.8"})
	if err == nil || !strings.Contains(err.Error(), `ckan_version "2.8": no surface for it`) {
		t.Fatalf("an unknown pinned version: %v", err)
	}
}

// upgradeRunbook is a gate (its rules from CKAN's version, watched) in
// front of a CKAN at 2.11 that an upgrade moves to 2.12, running a
// runbook whose migrate command is the shell script body, auto-confirmed.
func upgradeRunbook(t *testing.T, body string) (*rig, *upgradingCKAN, *runbook.Engine) {
	t.Helper()
	fastVersionWatch(t)
	ckan := newUpgradingCKAN(t, "2.11", "2.12")
	r := newRig(t, func(o *Options) { o.Upstream, o.CKANVersion = ckan.url(), VersionAuto })
	watch(t, r.gate)
	r.waitSurface("surface 2.11", applied("2.11"))

	dir := t.TempDir()
	storage := filepath.Join(dir, "storage")
	must(t, os.MkdirAll(storage, 0o755))
	must(t, os.WriteFile(filepath.Join(storage, "a.csv"), []byte("a\n"), 0o644))
	must(t, os.Mkdir(filepath.Join(dir, "snapshots"), 0o750))
	script := filepath.Join(dir, "upgrade.sh")
	must(t, os.WriteFile(script, []byte("#!/bin/sh\n"+body), 0o755))
	site, err := r.gate.RunbookSite(r.srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	e, err := runbook.Open(runbook.Options{
		Site: site, JournalDir: filepath.Join(dir, "journal"),
		Snapshot: config.SnapshotConfig{Dir: filepath.Join(dir, "snapshots"), StoragePath: storage, Keep: 2},
		Checks:   config.ChecksConfig{StoragePath: storage},
		Migrate:  []config.Command{{Name: "db upgrade", Argv: []string{script}, Timeout: config.Duration{Duration: time.Minute}}},
		Poll:     10 * time.Millisecond, Drain: time.Minute,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	r.gate.AttachRunbook(e)
	if _, err := e.Start(context.Background(), api.RunbookOptions{AutoConfirm: true}, "ops"); err != nil {
		t.Fatal(err)
	}
	return r, ckan, e
}

// A 2.11 -> 2.12 upgrade through the runbook: the strictest rules while
// the migrate step runs, 2.12's right after it.
func TestRulesFollowTheUpgradeAcrossTheMigrateStep(t *testing.T) {
	dir := t.TempDir()
	started, proceed := filepath.Join(dir, "started"), filepath.Join(dir, "go")
	r, ckan, e := upgradeRunbook(t, fmt.Sprintf("touch %s\nwhile [ ! -e %s ]; do sleep 0.02; done\necho upgraded\n", started, proceed))
	waitFor(t, "the migration to start", func() bool { _, err := os.Stat(started); return err == nil })
	s := r.waitSurface("the strictest rules during the migration", func(s api.SurfaceInfo) bool { return strings.HasPrefix(s.Applied, "strictest of ") })
	if !strings.Contains(s.Reason, "migrate step runs") {
		t.Fatalf("during the migration: %+v", s)
	}
	if res := r.do("GET", fileShow, nil); res.status != http.StatusServiceUnavailable {
		t.Fatalf("file_show during the migration: %d", res.status)
	}
	ckan.set("2.12") // the upgrade
	must(t, os.WriteFile(proceed, nil, 0o600))
	s = r.waitSurface("surface 2.12 after the migration", applied("2.12"))
	if !strings.HasPrefix(s.Reason, "status_show reports CKAN 2.12") {
		t.Fatalf("after the migration: %+v", s)
	}
	waitFor(t, "the runbook to end", func() bool {
		rb, err := e.Current()
		return err == nil && !rb.Active()
	})
	if rb, _ := e.Current(); rb.State != api.RunbookDone {
		t.Fatalf("the runbook: %s %s", rb.State, rb.Error)
	}
}
