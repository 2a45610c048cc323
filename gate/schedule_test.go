package gate

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

	"github.com/ckanops/ckanops/api"
	"github.com/ckanops/ckanops/config"
	"github.com/ckanops/ckanops/internal/ckansim"
	"github.com/ckanops/ckanops/internal/testredis"
	"github.com/ckanops/ckanops/runbook"
)

// testClock is a clock the test moves.
type testClock struct{ ns atomic.Int64 }

func newTestClock(t time.Time) *testClock {
	c := &testClock{}
	c.ns.Store(t.UnixNano())
	return c
}
func (c *testClock) now() time.Time    { return time.Unix(0, c.ns.Load()).UTC() }
func (c *testClock) set(t time.Time)   { c.ns.Store(t.UnixNano()) }
func withClock(c *testClock) rigOption { return func(o *Options) { o.Clock = c.now } }
func (r *rig) tick()                   { r.gate.scheduleTick(context.Background()) }
func (r *rig) auth() []string          { return []string{"Authorization", "Bearer " + opsToken} }
func (r *rig) schedule(body string) resp {
	return r.do("POST", "/-/ckanops/schedule", strings.NewReader(body), r.auth()...)
}
func (r *rig) cancelSchedule(q string) resp {
	return r.do("DELETE", "/-/ckanops/schedule"+q, nil, r.auth()...)
}
func windowBody(at time.Time, rest string) string {
	return fmt.Sprintf(`{"at": %q, %s}`, at.Format(time.RFC3339), rest)
}

var t0Schedule = time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)

func TestScheduleSetShowAndCancel(t *testing.T) {
	clk := newTestClock(t0Schedule)
	r := newRig(t, withClock(clk))
	at := t0Schedule.Add(3 * time.Hour)

	// Bad requests change nothing and say so.
	for _, body := range []string{
		windowBody(t0Schedule.Add(-time.Minute), `"for": "2h"`),
		windowBody(at, `"for": "soon"`),
		windowBody(at, `"for": "2h", "mode": "live"`),
		windowBody(at, `"for": "2h", "colour": "red"`),
		windowBody(at, `"for": "30s"`),
		windowBody(at, `"for": "2h", "skip_migrate": true`),
	} {
		if res := r.schedule(body); res.status != 400 || !strings.Contains(res.body, "nothing was changed") {
			t.Errorf("%s: %d %s", body, res.status, res.body)
		}
	}
	if st := r.status(true); st.Version != 0 || st.Schedule != nil {
		t.Fatalf("a bad request changed the record: %+v", st)
	}
	// Anonymous callers may not plan.
	if res := r.do("POST", "/-/ckanops/schedule", strings.NewReader(windowBody(at, `"for": "2h"`))); res.status != 401 {
		t.Fatalf("anonymous schedule: %d %s", res.status, res.body)
	}

	res := r.schedule(windowBody(at, `"for": "2h", "message": "Upgrade to CKAN 2.11", "announce": "1h", "reason": "ticket 7"`))
	if res.status != 200 {
		t.Fatalf("schedule: %d %s", res.status, res.body)
	}
	var st api.Status
	json.Unmarshal([]byte(res.body), &st)
	s := st.Schedule
	if s == nil || !s.At.Equal(at) || s.For != "2h" || s.Mode != api.ModeReadOnly || !s.AnnounceFrom.Equal(at.Add(-time.Hour)) ||
		s.Actor != "ops-token" || s.Reason != "ticket 7" || st.Mode != api.ModeLive || st.Version != 1 {
		t.Fatalf("the answer: %+v %+v", st, s)
	}
	// The public status shows the window, not who planned it.
	pub := r.status(false)
	if pub.Schedule == nil || pub.Schedule.Actor != "" || pub.Schedule.Reason != "" || !pub.Schedule.At.Equal(at) {
		t.Fatalf("public status: %+v", pub.Schedule)
	}
	raw := r.do("GET", "/-/ckanops/status", nil).body
	for _, key := range []string{`"at"`, `"for"`, `"message"`, `"mode"`, `"announce_from"`} {
		if !strings.Contains(raw, key) {
			t.Errorf("the public status's schedule lacks %s: %s", key, raw)
		}
	}
	// GET /-/ckanops/schedule.
	got := r.do("GET", "/-/ckanops/schedule", nil, r.auth()...)
	var ss api.ScheduleState
	if got.status != 200 || json.Unmarshal([]byte(got.body), &ss) != nil || ss.Schedule == nil || ss.Version != 1 {
		t.Fatalf("GET schedule: %d %s", got.status, got.body)
	}
	// A mode change keeps the window planned.
	r.mustMode(api.ModeReadOnly, "quick fix")
	r.mustMode(api.ModeLive, "")
	if st := r.status(true); st.Schedule == nil || st.Version != 3 {
		t.Fatalf("after a mode change: %+v", st)
	}
	// Cancelling is a compare-and-set too.
	if res := r.cancelSchedule("?expect_version=1"); res.status != 409 || !strings.Contains(res.body, "nothing was changed") {
		t.Fatalf("a stale cancel: %d %s", res.status, res.body)
	}
	if res := r.cancelSchedule("?expect_version=3&reason=postponed"); res.status != 200 {
		t.Fatalf("cancel: %d %s", res.status, res.body)
	}
	if st := r.status(true); st.Schedule != nil || st.Version != 4 {
		t.Fatalf("after cancel: %+v", st)
	}
	// Cancelling nothing changes nothing.
	if res := r.cancelSchedule(""); res.status != 200 || r.status(true).Version != 4 {
		t.Fatalf("cancel of nothing: %d %s", res.status, res.body)
	}
	var events []string
	for _, e := range r.auditTail("10") {
		events = append(events, e.Event+":"+e.Actor)
		if e.Event == "schedule" && (e.To != "read-only at 2026-12-06T15:00:00Z for 2h" || e.Reason != "ticket 7") {
			t.Errorf("schedule audit entry: %+v", e)
		}
		if e.Event == "schedule-cancel" && e.Reason != "postponed" {
			t.Errorf("cancel audit entry: %+v", e)
		}
	}
	if got := strings.Join(events, " "); got != "schedule:ops-token mode:ops-token mode:ops-token schedule-cancel:ops-token" {
		t.Fatalf("audit: %s", got)
	}
}

func TestScheduleStartsOnTimeThenOverruns(t *testing.T) {
	clk := newTestClock(t0Schedule)
	r := newRig(t, withClock(clk))
	at := t0Schedule.Add(2 * time.Hour)
	if res := r.schedule(windowBody(at, `"for": "90m", "message": "Upgrade", "announce": "1h"`)); res.status != 200 {
		t.Fatalf("schedule: %d %s", res.status, res.body)
	}
	clk.set(at.Add(-time.Second))
	r.tick()
	if st := r.status(true); st.Mode != api.ModeLive {
		t.Fatalf("started early: %+v", st)
	}
	clk.set(at)
	r.tick()
	st := r.status(true)
	end := at.Add(90 * time.Minute)
	if st.Mode != api.ModeReadOnly || st.Message != "Upgrade" || st.Until == nil || !st.Until.Equal(end) || st.Actor != ScheduleActor ||
		st.Schedule != nil || st.Overrun || !strings.Contains(st.Reason, "planned by ops-token") {
		t.Fatalf("at the window's start: %+v", st)
	}
	if code := r.write(); code != 503 {
		t.Fatalf("a write in the window: %d", code)
	}
	res := r.do("POST", "/api/3/action/package_create", strings.NewReader(`{"name": "x"}`), "Authorization", ckansim.SysadminToken)
	if ra := res.header.Get("Retry-After"); ra != "5400" {
		t.Errorf("Retry-After %q, want the window's end (5400 s)", ra)
	}
	r.tick() // a second tick changes nothing
	if v := r.status(true).Version; v != st.Version {
		t.Fatalf("a second tick made version %d", v)
	}

	// Past the planned end: an overrun, nothing switches back.
	clk.set(end.Add(25 * time.Minute))
	r.tick()
	st = r.status(false)
	if !st.Overrun || st.Mode != api.ModeReadOnly {
		t.Fatalf("past the end: %+v", st)
	}
	if raw := r.do("GET", "/-/ckanops/status", nil).body; !strings.Contains(raw, `"overrun":true`) {
		t.Fatalf("public status: %s", raw)
	}
	h := r.gate.gateCheck(context.Background())
	if h.Status != api.CheckWarn || !strings.Contains(h.Summary, "overrun: 25m0s past its planned end") {
		t.Fatalf("gate probe: %s %s", h.Status, h.Summary)
	}
	r.tick()
	m := r.metrics()
	for _, want := range []string{"ckanops_overrun 1", "ckanops_overruns_total 1"} {
		if !strings.Contains(m, want+"\n") {
			t.Errorf("metrics lack %q", want)
		}
	}
	page := r.do("GET", "/dataset/", nil)
	if !strings.Contains(page.body, "longer than planned") {
		t.Errorf("the banner does not say the work takes longer than planned:\n%.2000s", page.body)
	}
	var audit []string
	for _, e := range r.auditTail("5") {
		audit = append(audit, e.Event+":"+e.Actor+":"+e.To)
	}
	if got := strings.Join(audit, " "); got != "schedule:ops-token:read-only at 2026-12-06T14:00:00Z for 1h30m mode:schedule:read-only" {
		t.Fatalf("audit: %s", got)
	}
	// The operator ends it.
	r.mustMode(api.ModeLive, "")
	if st := r.status(false); st.Overrun {
		t.Fatal("still an overrun once live")
	}
}

func (r *rig) write() int {
	r.t.Helper()
	return r.do("POST", "/api/3/action/package_create", strings.NewReader(`{"name": "announced-write", "owner_org": "demo-org"}`), "Authorization", ckansim.SysadminToken, "Content-Type", "application/json").status
}

// While a window is announced the site stays live, and tells: pages carry
// the announcement, status_show gains result.maintenance, API responses
// the window header. Outside the announcement nothing is added.
func TestAnnouncedWindow(t *testing.T) {
	clk := newTestClock(t0Schedule)
	r := newRig(t, withClock(clk))
	at := t0Schedule.Add(3 * time.Hour)
	if res := r.schedule(windowBody(at, `"for": "2h", "message": "Upgrade <b>now</b>", "announce": "1h"`)); res.status != 200 {
		t.Fatalf("schedule: %d %s", res.status, res.body)
	}
	// Before the announcement: untouched.
	before := r.do("GET", "/api/3/action/status_show", nil)
	if strings.Contains(before.body, "maintenance") || before.header.Get(api.HeaderWindow) != "" {
		t.Fatalf("status_show before the announcement: %s %v", before.body, before.header)
	}
	if page := r.do("GET", "/dataset/", nil); strings.Contains(page.body, "ckanops-banner") {
		t.Fatal("a page was annotated before the announcement")
	}

	clk.set(at.Add(-30 * time.Minute))
	res := r.do("GET", "/api/3/action/status_show", nil)
	var env struct {
		Success bool `json:"success"`
		Result  struct {
			CKANVersion string          `json:"ckan_version"`
			Maintenance api.Maintenance `json:"maintenance"`
		} `json:"result"`
	}
	if res.status != 200 || json.Unmarshal([]byte(res.body), &env) != nil || !env.Success || env.Result.CKANVersion == "" {
		t.Fatalf("status_show: %d %s", res.status, res.body)
	}
	m := env.Result.Maintenance
	if m.Active || m.Mode != api.ModeReadOnly || !m.Start.Equal(at) || m.End == nil || !m.End.Equal(at.Add(2*time.Hour)) ||
		m.Message != "Upgrade <b>now</b>" || m.AnnounceFrom == nil {
		t.Fatalf("result.maintenance: %+v", m)
	}
	want := "mode=read-only; start=2026-12-06T15:00:00Z; end=2026-12-06T17:00:00Z; state=announced"
	if h := res.header.Get(api.HeaderWindow); h != want {
		t.Fatalf("status_show's window header %q, want %q", h, want)
	}
	if h := r.do("GET", "/api/3/action/package_list", nil).header.Get(api.HeaderWindow); h != want {
		t.Fatalf("package_list's window header %q", h)
	}
	page := r.do("GET", "/dataset/", nil)
	for _, want := range []string{`data-ckanops-mode="announce"`, "Upgrade &lt;b&gt;now&lt;/b&gt;", `src="/-/ckanops/notice.js"`} {
		if !strings.Contains(page.body, want) {
			t.Errorf("the announced page lacks %q", want)
		}
	}
	if page.header.Get("Cache-Control") != "no-store" {
		t.Errorf("an announced page may be cached: %q", page.header.Get("Cache-Control"))
	}
	// Writes still pass: the site is live.
	if code := r.write(); code != 200 {
		t.Fatalf("a write while announced: %d", code)
	}
	// In the window, status_show says so too.
	clk.set(at)
	r.tick()
	res = r.do("GET", "/api/3/action/status_show", nil)
	json.Unmarshal([]byte(res.body), &env)
	if !env.Result.Maintenance.Active || res.header.Get(api.HeaderWindow) != "mode=read-only; start=2026-12-06T15:00:00Z; end=2026-12-06T17:00:00Z; state=active" {
		t.Fatalf("in the window: %+v %q", env.Result.Maintenance, res.header.Get(api.HeaderWindow))
	}
}

// A gate down across the start starts the window late, while it lasts;
// past its end the window is dropped as missed. A window meeting a site
// already in maintenance leaves the mode alone.
func TestScheduleAcrossRestarts(t *testing.T) {
	clk := newTestClock(t0Schedule)
	r := newRig(t, withClock(clk))
	at := t0Schedule.Add(time.Hour)
	r.schedule(windowBody(at, `"for": "2h"`))
	r.stop()
	clk.set(at.Add(30 * time.Minute))
	r.start(withClock(clk))
	r.tick()
	if st := r.status(true); st.Mode != api.ModeReadOnly || st.Until == nil || !st.Until.Equal(at.Add(2*time.Hour)) {
		t.Fatalf("restarted inside the window: %+v", st)
	}
	r.mustMode(api.ModeLive, "")

	at = clk.now().Add(time.Hour)
	r.schedule(windowBody(at, `"for": "1h"`))
	r.stop()
	clk.set(at.Add(2 * time.Hour))
	r.start(withClock(clk))
	r.tick()
	if st := r.status(true); st.Mode != api.ModeLive || st.Schedule != nil {
		t.Fatalf("restarted after the window: %+v", st)
	}
	tail := r.auditTail("1")
	if tail[0].Event != "schedule-missed" || !strings.Contains(tail[0].Message, "nothing was changed") {
		t.Fatalf("missed window audit: %+v", tail[0])
	}

	at = clk.now().Add(time.Hour)
	r.schedule(windowBody(at, `"for": "1h", "mode": "down"`))
	r.mustMode(api.ModeReadOnly, "started early by hand")
	clk.set(at)
	r.tick()
	st := r.status(true)
	if st.Mode != api.ModeReadOnly || st.Message != "started early by hand" || st.Schedule != nil {
		t.Fatalf("a window over a hand-set maintenance: %+v", st)
	}
	if tail := r.auditTail("1"); tail[0].Event != "schedule-skipped" {
		t.Fatalf("skipped window audit: %+v", tail[0])
	}
}

// A window that asks for the runbook on a gate without one still puts the
// site in maintenance, and says why.
func TestScheduledRunbookWithoutEngineFallsBackToTheMode(t *testing.T) {
	clk := newTestClock(t0Schedule)
	r := newRig(t, withClock(clk))
	at := t0Schedule.Add(time.Hour)
	if res := r.schedule(windowBody(at, `"for": "1h", "runbook": true, "message": "Upgrade"`)); res.status != 200 {
		t.Fatalf("schedule: %d %s", res.status, res.body)
	}
	clk.set(at)
	r.tick()
	st := r.status(true)
	if st.Mode != api.ModeReadOnly || st.Actor != ScheduleActor || !strings.Contains(st.Reason, "the scheduled runbook did not start") {
		t.Fatalf("after a runbook window without an engine: %+v", st)
	}
}

// With Redis, every gate sees the window due at once; the record changes
// once.
func TestScheduleStartsOnceAcrossGates(t *testing.T) {
	c := newCluster(t, "a", "b", "c")
	a := c.gates["a"]
	at := time.Now().Add(2 * time.Second).UTC().Truncate(time.Second).Add(time.Second)
	code, body := a.post(t, "/-/ckanops/schedule", windowBody(at, `"for": "1h"`), "Authorization", "Bearer "+opsToken)
	if code != 200 {
		t.Fatalf("schedule: %d %s", code, body)
	}
	var before api.Status
	json.Unmarshal([]byte(body), &before)
	for _, m := range c.gates {
		waitFor(t, "gate "+m.id+" sees the window", func() bool { return m.gate.state.current().Schedule != nil })
	}
	time.Sleep(time.Until(at)) // the gates run on the real clock
	var wg sync.WaitGroup
	for round := 0; round < 5; round++ {
		for _, m := range c.gates {
			wg.Add(1)
			go func() {
				defer wg.Done()
				m.gate.scheduleTick(context.Background())
			}()
		}
	}
	wg.Wait()
	rec, _, err := c.gates["b"].store.Load(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if rec.Version != before.Version+1 || rec.Mode != api.ModeReadOnly || rec.Actor != ScheduleActor || rec.Schedule != nil {
		t.Fatalf("the shared record after 15 racing ticks: %+v (before: version %d)", rec, before.Version)
	}
	for _, m := range c.gates {
		waitFor(t, "gate "+m.id+" enforces the window", func() bool { return m.gate.state.current().Mode == api.ModeReadOnly })
	}
}

// A runbook window starts the runbook at its start, which confirms its
// steps by itself and ends with the site live again; the runbook names
// the schedule as its actor.
func TestScheduledRunbookRuns(t *testing.T) {
	rd := testredis.Start(t)
	dir := t.TempDir()
	storage := filepath.Join(dir, "storage")
	must(t, os.MkdirAll(filepath.Join(storage, "resources"), 0o755))
	must(t, os.WriteFile(filepath.Join(storage, "resources", "a.csv"), []byte("a\n1\n"), 0o644))
	checks := config.ChecksConfig{Redis: config.SecretURL(rd.URL()), StoragePath: storage}
	clk := newTestClock(time.Now().UTC())
	r := newRig(t, withChecks(checks), withClock(clk))
	site, err := r.gate.RunbookSite(r.srv.URL)
	must(t, err)
	e, err := runbook.Open(runbook.Options{Site: site, JournalDir: filepath.Join(dir, "journal"),
		Snapshot: config.SnapshotConfig{Dir: filepath.Join(dir, "snapshots"), StoragePath: storage, Keep: 3}, Checks: checks, Poll: 20 * time.Millisecond})
	must(t, err)
	t.Cleanup(func() { e.Close() })
	r.gate.AttachRunbook(e)

	at := clk.now().Add(time.Hour).Truncate(time.Second)
	if res := r.schedule(windowBody(at, `"for": "2h", "runbook": true, "skip_migrate": true, "message": "Nightly snapshot"`)); res.status != 200 {
		t.Fatalf("schedule: %d %s", res.status, res.body)
	}
	clk.set(at)
	r.tick()
	var rb *api.Runbook
	waitFor(t, "the scheduled runbook to end", func() bool {
		rb, err = e.Current()
		return err == nil && rb != nil && !rb.Active()
	})
	if rb.State != api.RunbookDone || rb.Actor != ScheduleActor || rb.Options.Message != "Nightly snapshot" || !rb.Options.SkipMigrate {
		t.Fatalf("the scheduled runbook: %s by %s, %+v", rb.State, rb.Actor, rb.Options)
	}
	if st := r.status(true); st.Mode != api.ModeLive || st.Schedule != nil {
		t.Fatalf("after the runbook: %+v", st)
	}
	var events []string
	for _, e := range r.auditTail("20") {
		if strings.HasPrefix(e.Event, "schedule") || e.Event == "runbook-start" {
			events = append(events, e.Event+":"+e.Actor)
		}
	}
	if got := strings.Join(events, " "); got != "schedule:ops-token schedule-start:schedule runbook-start:schedule" {
		t.Fatalf("audit: %s", got)
	}
}

// A gate older than the windows drops a record's window when it writes
// (it does not know the field, nor the record's format): the gates put
// the window back, once, keeping what the older gate wrote. A window a
// gate of this version cancels stays cancelled.
func TestAWindowDroppedByAnOlderGateIsPutBack(t *testing.T) {
	c := newCluster(t, "a", "b")
	a := c.gates["a"]
	ctx := context.Background()
	at := time.Now().Add(time.Hour).UTC().Truncate(time.Second)
	if code, body := a.post(t, "/-/ckanops/schedule", windowBody(at, `"for": "1h", "message": "Upgrade"`), "Authorization", "Bearer "+opsToken); code != 200 {
		t.Fatalf("schedule: %d %s", code, body)
	}
	for _, m := range c.gates {
		waitFor(t, "gate "+m.id+" sees the window", func() bool { return m.gate.state.current().Schedule != nil })
	}
	cur, _, err := a.store.Load(ctx)
	if err != nil || cur.Format != RecordFormat {
		t.Fatalf("the record: %+v, %v; want format %d", cur, err, RecordFormat)
	}
	// What an older gate writes when someone enables read-only through it.
	old := Record{Mode: api.ModeReadOnly, Message: "by an old gate", Since: time.Now().UTC(), Version: cur.Version + 1, Actor: "ops-token", Change: "old"}
	if err := a.store.CompareAndSwap(ctx, cur.Version, old); err != nil {
		t.Fatal(err)
	}
	back := func() bool {
		rec, _, err := a.store.Load(ctx)
		return err == nil && rec.Schedule != nil && rec.Schedule.At.Equal(at)
	}
	waitFor(t, "the window back in the store", back)
	time.Sleep(5 * syncEvery)
	rec, _, _ := a.store.Load(ctx)
	if rec.Version != cur.Version+2 || rec.Mode != api.ModeReadOnly || rec.Message != "by an old gate" || rec.Actor != "ops-token" || rec.Format != RecordFormat {
		t.Fatalf("after the window was put back: %+v (the older gate wrote version %d)", rec, cur.Version+1)
	}
	for _, m := range c.gates {
		waitFor(t, "gate "+m.id+" sees the window again", func() bool {
			s := m.gate.state.current().Schedule
			return s != nil && s.At.Equal(at) && m.gate.state.current().Mode == api.ModeReadOnly
		})
	}

	// A cancel by a gate of this version is a cancel.
	req, _ := http.NewRequest("DELETE", a.srv.URL+"/-/ckanops/schedule", nil)
	req.Header.Set("Authorization", "Bearer "+opsToken)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 200 {
		t.Fatalf("cancel: %d", res.StatusCode)
	}
	time.Sleep(5 * syncEvery)
	if rec, _, _ := a.store.Load(ctx); rec.Schedule != nil {
		t.Fatalf("a cancelled window came back: %+v", rec)
	}
}
