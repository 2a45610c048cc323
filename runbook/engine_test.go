package runbook

import (
	"context"
	"errors"
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ckanops/ckanops/api"

	"github.com/ckanops/ckanops/ckanclient"
	"github.com/ckanops/ckanops/config"
	"github.com/ckanops/ckanops/internal/ckansim"
)

// fakeSite is a gate as the engine sees it: a mode record, gates with
// writes in flight, checks, RQ suspension, and an audit log in memory.
type fakeSite struct {
	ckan *ckanclient.Client

	mu        sync.Mutex
	st        api.Status
	inFlight  int
	rqRunning int64
	suspended bool
	noRQ      bool
	checks    []api.CheckResult
	modes     []api.Mode // every SetMode's mode, in order
	// otherGates are the site's other gates, as the status reports them.
	otherGates []api.GateInfo
	audit      []string // event names
	setErr     error
}

func newFakeSite(t *testing.T) *fakeSite {
	sim, err := ckansim.New(ckansim.Options{})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(sim)
	t.Cleanup(srv.Close)
	c, err := ckanclient.New(srv.URL, ckanclient.Options{Retries: -1})
	if err != nil {
		t.Fatal(err)
	}
	return &fakeSite{ckan: c, st: api.Status{Site: "prod", Mode: api.ModeLive, Phase: api.PhaseLive, Version: 1, Since: time.Now().UTC()}}
}

func (f *fakeSite) Name() string { return "prod" }

func (f *fakeSite) SetMode(ctx context.Context, req api.ModeRequest, actor string) (api.Status, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := ctx.Err(); err != nil {
		return api.Status{}, err // as a store write would
	}
	if f.setErr != nil {
		return api.Status{}, f.setErr
	}
	f.modes = append(f.modes, req.Mode)
	f.st.Mode, f.st.Version, f.st.Actor, f.st.Since = req.Mode, f.st.Version+1, actor, time.Now().UTC()
	f.st.Phase = api.PhaseLive
	if req.Mode != api.ModeLive {
		f.st.Phase = api.PhaseDraining
	}
	return f.st, nil
}

func (f *fakeSite) Status(context.Context) api.Status {
	f.mu.Lock()
	defer f.mu.Unlock()
	st := f.st
	if st.Mode != api.ModeLive {
		st.Phase = api.PhaseDraining
		if f.inFlight == 0 {
			st.Phase = api.PhaseQuiesced
		}
	}
	st.Gates = []api.GateInfo{{ID: "web-1", Version: st.Version, Phase: st.Phase, InFlight: f.inFlight, Seen: time.Now()}}
	st.Gates = append(st.Gates, f.otherGates...)
	return st
}

func (f *fakeSite) Health(context.Context, bool) api.Report {
	f.mu.Lock()
	defer f.mu.Unlock()
	rep := api.Report{Site: "prod", Checks: slices.Clone(f.checks)}
	if !f.noRQ {
		rep.Checks = append(rep.Checks, api.CheckResult{Name: "redis", Status: api.CheckOK, Summary: "rq",
			RQ: &api.RQDetails{Suspended: new(f.suspended), Running: new(f.rqRunning)}})
	}
	return rep
}

func (f *fakeSite) SuspendJobs(context.Context, string, string) (api.JobsState, error) {
	return f.jobs(true)
}

func (f *fakeSite) ResumeJobs(context.Context, string, string) (api.JobsState, error) {
	return f.jobs(false)
}

func (f *fakeSite) jobs(s bool) (api.JobsState, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.noRQ {
		return api.JobsState{}, ErrNotConfigured
	}
	f.suspended = s
	return api.JobsState{Suspended: s}, nil
}

func (f *fakeSite) CKAN() *ckanclient.Client { return f.ckan }

func (f *fakeSite) Audit(event, _, _, _, _, _ string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.audit = append(f.audit, event)
}

func (f *fakeSite) set(fn func(*fakeSite)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f)
}

func (f *fakeSite) mode() api.Mode {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.st.Mode
}

// testEngine opens an engine on a fake site with a storage-only snapshot.
func testEngine(t *testing.T, site *fakeSite, mod func(*Options)) (*Engine, Options) {
	t.Helper()
	dir := t.TempDir()
	storage := filepath.Join(dir, "storage")
	if err := os.MkdirAll(filepath.Join(storage, "resources", "ab"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(storage, "resources", "ab", "data.csv"), []byte("a,b\n1,2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "snapshots"), 0o750); err != nil {
		t.Fatal(err)
	}
	o := Options{
		Site:       site,
		JournalDir: filepath.Join(dir, "journal"),
		Snapshot:   config.SnapshotConfig{Dir: filepath.Join(dir, "snapshots"), StoragePath: storage, Keep: 2},
		Poll:       5 * time.Millisecond,
		Drain:      time.Minute,
	}
	if mod != nil {
		mod(&o)
	}
	e, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	return e, o
}

// waitFor polls the engine until cond holds of the runbook (the runner is
// another goroutine); it fails the test after a generous bound.
func waitFor(t *testing.T, e *Engine, what string, cond func(*api.Runbook) bool) *api.Runbook {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		rb, err := e.Current()
		if err == nil && cond(rb) {
			return rb
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s; runbook: %+v", what, rb)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// events returns the runbook's events once the last of them is shown
// (readers see an event once it is written: this waits for the writer).
func events(t *testing.T, e *Engine) []api.RunbookEvent {
	t.Helper()
	rb, err := e.Current()
	deadline := time.Now().Add(30 * time.Second) // generous: a loaded machine
	for {
		evs, _, _ := e.Events(0)
		if err != nil || (len(evs) > 0 && evs[len(evs)-1].Seq >= rb.Seq) || time.Now().After(deadline) {
			return evs
		}
		time.Sleep(time.Millisecond)
	}
}

func stepState(rb *api.Runbook, step string) api.StepState { return rb.StepByName(step).State }

// failedAt waits for the runbook to end and requires it failed at step.
func failedAt(t *testing.T, e *Engine, step string) *api.Runbook {
	t.Helper()
	rb := waitFor(t, e, "the failure", ended)
	if rb.State != api.RunbookFailed || rb.Step != step || stepState(rb, step) != api.StepFailed {
		t.Fatalf("state %s at %s (step %s), error %q, want failed at %s", rb.State, rb.Step, stepState(rb, rb.Step), rb.Error, step)
	}
	return rb
}

func waitingAt(step string) func(*api.Runbook) bool {
	return func(rb *api.Runbook) bool {
		return rb.State == api.RunbookWaiting && rb.Waiting != nil && rb.Waiting.Step == step
	}
}

func ended(rb *api.Runbook) bool {
	return rb.State != api.RunbookRunning && rb.State != api.RunbookWaiting
}

func TestRunbookAutoConfirm(t *testing.T) {
	site := newFakeSite(t)
	e, o := testEngine(t, site, nil)
	rb, err := e.Start(context.Background(), api.RunbookOptions{AutoConfirm: true, Message: "upgrade"}, "ops-token")
	if err != nil {
		t.Fatal(err)
	}
	rb = waitFor(t, e, "the end", ended)
	if rb.State != api.RunbookDone {
		t.Fatalf("state %s, error %q", rb.State, rb.Error)
	}
	for _, s := range rb.Steps {
		want := api.StepDone
		if s.Name == api.StepMigrate {
			want = api.StepSkipped // no [[migrate]]
		}
		if s.State != want {
			t.Errorf("step %s is %s, want %s", s.Name, s.State, want)
		}
	}
	if rb.Snapshot == nil || rb.Snapshot.Verdict != api.VerdictConsistent {
		t.Fatalf("snapshot %+v", rb.Snapshot)
	}
	if !strings.HasPrefix(rb.Snapshot.Dir, o.Snapshot.Dir) {
		t.Errorf("snapshot in %s, not below %s", rb.Snapshot.Dir, o.Snapshot.Dir)
	}
	if got := site.modes; !slices.Equal(got, []api.Mode{"read-only", "live"}) {
		t.Errorf("mode changes %v", got)
	}
	if site.suspended {
		t.Error("RQ still suspended at the end")
	}
	for _, ev := range []string{"runbook-start", "runbook-done"} {
		if !slices.Contains(site.audit, ev) {
			t.Errorf("audit lacks %s: %v", ev, site.audit)
		}
	}
	// The record and the journal are on disk.
	e2 := reopen(t, e, o)
	rb2, err := e2.Current()
	if err != nil || rb2.ID != rb.ID || rb2.State != api.RunbookDone {
		t.Fatalf("reloaded %+v, %v", rb2, err)
	}
	evs, _, done := e2.Events(0)
	if !done || len(evs) == 0 || evs[len(evs)-1].Kind != api.EventFinished {
		t.Fatalf("reloaded journal: done=%v, %d events", done, len(evs))
	}
}

// reopen closes e and opens a new engine on the same journal, as a gate
// restart does.
func reopen(t *testing.T, e *Engine, o Options) *Engine {
	t.Helper()
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	o.Lock = nil
	e2, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e2.Close() })
	return e2
}

func TestRunbookConfirmationsAndDrain(t *testing.T) {
	site := newFakeSite(t)
	script := filepath.Join(t.TempDir(), "migrate.sh")
	writeScript(t, script, "echo migrating $CKANOPS_SITE\necho done >&2\n")
	e, _ := testEngine(t, site, func(o *Options) {
		o.Migrate = []config.Command{{Name: "db upgrade", Argv: []string{script}, Timeout: config.Duration{Duration: time.Minute}, Mode: "read-only"}}
	})
	if _, err := e.Start(context.Background(), api.RunbookOptions{}, "ckan:admin"); err != nil {
		t.Fatal(err)
	}
	rb := waitFor(t, e, "enable to wait", waitingAt(api.StepEnable))
	if !rb.Waiting.TypeSiteName || stepState(rb, api.StepPreflight) != api.StepDone {
		t.Fatalf("waiting %+v, preflight %s", rb.Waiting, stepState(rb, api.StepPreflight))
	}
	// The confirmation names the journal event that asked it.
	evs := events(t, e)
	if last := evs[len(evs)-1]; last.Kind != api.EventConfirm || last.Seq != rb.Waiting.Seq || last.Seq != rb.Seq {
		t.Fatalf("last event %+v, waiting seq %d, runbook seq %d", last, rb.Waiting.Seq, rb.Seq)
	}
	// A wrongly typed name confirms nothing.
	_, err := e.Confirm(api.RunbookAction{Step: api.StepEnable, SiteName: "prdo"}, "ckan:admin")
	var br *badRequest
	if !errors.As(err, &br) || !strings.Contains(err.Error(), "type prod exactly") {
		t.Fatalf("wrong name: %v", err)
	}
	if len(site.modes) != 0 {
		t.Fatalf("mode changed on a wrong name: %v", site.modes)
	}
	// Confirming another step than the waiting one is a conflict.
	if _, err := e.Confirm(api.RunbookAction{Step: api.StepMigrate, SiteName: "prod"}, "ckan:admin"); !errors.Is(err, ErrConflict) {
		t.Fatalf("confirm of another step: %v", err)
	}
	site.set(func(f *fakeSite) { f.inFlight, f.rqRunning = 2, 1 })
	if _, err := e.Confirm(api.RunbookAction{Step: api.StepEnable, SiteName: "prod"}, "ckan:admin"); err != nil {
		t.Fatal(err)
	}
	rb = waitFor(t, e, "the drain to wait on writes", func(rb *api.Runbook) bool {
		for _, ev := range rb.StepByName(api.StepDrain).Evidence {
			if strings.Contains(ev.Summary, "waiting: 2 write(s) in flight on gate web-1") && strings.Contains(ev.Summary, "1 RQ job(s) running") {
				return true
			}
		}
		return false
	})
	if site.mode() != api.ModeReadOnly || !site.suspended {
		t.Fatalf("mode %s, suspended %v", site.mode(), site.suspended)
	}
	if s := stepState(rb, api.StepDrain); s != api.StepRunning {
		t.Fatalf("drain %s", s)
	}
	site.set(func(f *fakeSite) { f.inFlight, f.rqRunning = 0, 0 })
	rb = waitFor(t, e, "migrate to wait", waitingAt(api.StepMigrate))
	if !rb.Waiting.TypeSiteName || !strings.Contains(rb.Waiting.Prompt, "db upgrade") {
		t.Fatalf("migrate confirmation %+v", rb.Waiting)
	}
	if stepState(rb, api.StepSnapshot) != api.StepDone {
		t.Fatalf("snapshot %s", stepState(rb, api.StepSnapshot))
	}
	if _, err := e.Confirm(api.RunbookAction{SiteName: "prod"}, "ckan:admin"); err != nil {
		t.Fatal(err)
	}
	rb = waitFor(t, e, "disable to wait", waitingAt(api.StepDisable))
	if rb.Waiting.TypeSiteName {
		t.Error("disable asks for the site name; it asks y/N")
	}
	var run *api.Evidence
	for i, ev := range rb.StepByName(api.StepMigrate).Evidence {
		if ev.Kind == api.EvidenceRun {
			run = &rb.StepByName(api.StepMigrate).Evidence[i]
		}
	}
	if run == nil || run.ExitCode == nil || *run.ExitCode != 0 || run.OutputTail != "migrating prod\ndone" {
		t.Fatalf("migrate evidence %+v", run)
	}
	if site.mode() != api.ModeReadOnly {
		t.Fatal("writes reopened before disable was confirmed")
	}
	if _, err := e.Confirm(api.RunbookAction{}, "ckan:admin"); err != nil {
		t.Fatal(err)
	}
	rb = waitFor(t, e, "the end", ended)
	if rb.State != api.RunbookDone || site.mode() != api.ModeLive {
		t.Fatalf("state %s (%s), mode %s", rb.State, rb.Error, site.mode())
	}
	// Output lines went to the journal as they came.
	evs = events(t, e)
	var lines []string
	for _, ev := range evs {
		if ev.Kind == api.EventOutput && ev.Step == api.StepMigrate {
			lines = append(lines, ev.Message)
		}
	}
	if !slices.Equal(lines, []string{"migrating prod", "done"}) {
		t.Errorf("output events %q", lines)
	}
}

func writeScript(t *testing.T, path, body string) {
	t.Helper()
	if err := os.WriteFile(path, []byte("#!/bin/sh\n"+body), 0o755); err != nil {
		t.Fatal(err)
	}
}

func TestRunbookMigrateFailsThenRetry(t *testing.T) {
	site := newFakeSite(t)
	dir := t.TempDir()
	flag := filepath.Join(dir, "fixed")
	script := filepath.Join(dir, "migrate.sh")
	writeScript(t, script, fmt.Sprintf("echo step one\nif [ ! -e %s ]; then echo 'relation missing' >&2; exit 3; fi\necho ok\n", flag))
	e, _ := testEngine(t, site, func(o *Options) {
		o.Migrate = []config.Command{{Name: "db upgrade", Argv: []string{script}, Timeout: config.Duration{Duration: time.Minute}, Mode: "down"}}
	})
	if _, err := e.Start(context.Background(), api.RunbookOptions{AutoConfirm: true}, "ops-token"); err != nil {
		t.Fatal(err)
	}
	rb := failedAt(t, e, api.StepMigrate)
	if !strings.Contains(rb.Error, "exited with status 3") {
		t.Errorf("error %q", rb.Error)
	}
	// Never reopened: the site stays down, as the blocking migration left it.
	if site.mode() != api.ModeDown || slices.Contains(site.modes, api.ModeLive) {
		t.Fatalf("mode %s, changes %v", site.mode(), site.modes)
	}
	ev := rb.StepByName(api.StepMigrate).Evidence
	last := ev[len(ev)-1]
	if last.ExitCode == nil || *last.ExitCode != 3 || !strings.Contains(last.OutputTail, "relation missing") {
		t.Fatalf("evidence %+v", last)
	}
	// Only a failed step can be retried; confirm has nothing to confirm.
	if _, err := e.Confirm(api.RunbookAction{}, "x"); !errors.Is(err, ErrConflict) {
		t.Fatalf("confirm on a failed runbook: %v", err)
	}
	if err := os.WriteFile(flag, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Retry(api.RunbookAction{Step: api.StepMigrate}, "ops-token"); err != nil {
		t.Fatal(err)
	}
	rb = waitFor(t, e, "the end", ended)
	if rb.State != api.RunbookDone {
		t.Fatalf("after retry: %s (%s)", rb.State, rb.Error)
	}
	if got := rb.StepByName(api.StepMigrate).Attempts; got != 2 {
		t.Errorf("attempts %d", got)
	}
	if !slices.Equal(site.modes, []api.Mode{"read-only", "down", "read-only", "live"}) {
		t.Errorf("mode changes %v", site.modes)
	}
}

func TestRunbookMigrateTimeoutKillsTheGroup(t *testing.T) {
	site := newFakeSite(t)
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "child.pid")
	script := filepath.Join(dir, "hang.sh")
	// The script's child would outlive a kill of the script alone.
	writeScript(t, script, fmt.Sprintf("sleep 300 &\necho $! > %s\necho started\nwait\n", pidFile))
	e, _ := testEngine(t, site, func(o *Options) {
		o.Migrate = []config.Command{{Name: "hangs", Argv: []string{script}, Timeout: config.Duration{Duration: 300 * time.Millisecond}, Mode: "read-only"}}
	})
	if _, err := e.Start(context.Background(), api.RunbookOptions{AutoConfirm: true}, "ops-token"); err != nil {
		t.Fatal(err)
	}
	rb := waitFor(t, e, "the failure", ended)
	if rb.State != api.RunbookFailed || rb.Step != api.StepMigrate || !strings.Contains(rb.Error, "killed after its timeout of 300ms") {
		t.Fatalf("state %s at %s: %s", rb.State, rb.Step, rb.Error)
	}
	if site.mode() != api.ModeReadOnly {
		t.Fatalf("mode %s", site.mode())
	}
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	var pid int
	fmt.Sscan(string(b), &pid)
	deadline := time.Now().Add(10 * time.Second)
	for syscall.Kill(pid, 0) == nil {
		if time.Now().After(deadline) {
			t.Fatalf("the script's child %d outlived the timeout", pid)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestRunbookAbortDisableNow(t *testing.T) {
	site := newFakeSite(t)
	site.set(func(f *fakeSite) { f.inFlight = 1 }) // the drain cannot finish
	e, o := testEngine(t, site, nil)
	rb, err := e.Start(context.Background(), api.RunbookOptions{AutoConfirm: true}, "ops-token")
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, e, "the drain", func(rb *api.Runbook) bool {
		return rb.Step == api.StepDrain && len(rb.StepByName(api.StepDrain).Evidence) > 1
	})
	// Another runbook cannot start meanwhile, here or from another engine
	// sharing the journal directory.
	if _, err := e.Start(context.Background(), api.RunbookOptions{}, "x"); !errors.Is(err, ErrConflict) {
		t.Fatalf("second start: %v", err)
	}
	o2 := o
	o2.Lock = nil
	other, err := Open(o2)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := other.Start(context.Background(), api.RunbookOptions{}, "x"); !errors.Is(err, ErrConflict) {
		t.Fatalf("start from a second engine: %v", err)
	}
	// It shows the runbook as running, not interrupted: it is not its own.
	if cur, _ := other.Current(); cur.State != api.RunbookRunning {
		t.Fatalf("the second engine sees %s", cur.State)
	}
	other.Close()
	// The lock itself refuses a second holder, naming the first.
	if _, err := NewFileLock(o.JournalDir).Acquire(context.Background(), "x", 0); !strings.Contains(fmt.Sprint(err), "another runbook holds this site: prod runbook "+rb.ID) {
		t.Fatalf("second lock: %v", err)
	}

	// The client gives up at once (its request's context is cancelled):
	// the abort and the reopening go on, detached from it.
	gone, cancel := context.WithCancel(context.Background())
	cancel()
	rb, err = e.Abort(gone, api.RunbookAction{ID: rb.ID, Disable: true, Reason: "users complain"}, "ckan:admin")
	if err != nil {
		t.Fatal(err)
	}
	if rb.State != api.RunbookAborted || !strings.Contains(rb.Error, "aborted at step drain by ckan:admin: users complain") {
		t.Fatalf("%s: %s", rb.State, rb.Error)
	}
	if site.mode() != api.ModeLive || site.suspended {
		t.Fatalf("after disable-now: mode %s, suspended %v", site.mode(), site.suspended)
	}
	if !slices.Contains(site.audit, "runbook-abort") {
		t.Errorf("audit %v", site.audit)
	}
	// The lock is free again.
	site.set(func(f *fakeSite) { f.inFlight = 0 })
	if _, err := e.Start(context.Background(), api.RunbookOptions{AutoConfirm: true}, "x"); err != nil {
		t.Fatalf("start after abort: %v", err)
	}
	waitFor(t, e, "the end", ended)
}

func TestRunbookAbortKeepsMaintenance(t *testing.T) {
	site := newFakeSite(t)
	site.set(func(f *fakeSite) { f.inFlight = 1 })
	e, _ := testEngine(t, site, nil)
	if _, err := e.Start(context.Background(), api.RunbookOptions{AutoConfirm: true}, "ops-token"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, e, "the drain", func(rb *api.Runbook) bool { return rb.Step == api.StepDrain })
	rb, err := e.Abort(context.Background(), api.RunbookAction{}, "ops-token")
	if err != nil {
		t.Fatal(err)
	}
	if rb.State != api.RunbookAborted || site.mode() != api.ModeReadOnly {
		t.Fatalf("%s, mode %s", rb.State, site.mode())
	}
	if _, err := e.Abort(context.Background(), api.RunbookAction{}, "ops-token"); !errors.Is(err, ErrConflict) {
		t.Fatalf("second abort: %v", err)
	}
}

func TestRunbookSkipRules(t *testing.T) {
	site := newFakeSite(t)
	e, _ := testEngine(t, site, func(o *Options) {
		o.Migrate = []config.Command{{Name: "never", Argv: []string{"false"}, Timeout: config.Duration{Duration: time.Minute}}}
	})
	if _, err := e.Start(context.Background(), api.RunbookOptions{}, "ops-token"); err != nil {
		t.Fatal(err)
	}
	rb := waitFor(t, e, "enable", waitingAt(api.StepEnable))
	if rb.StepByName(api.StepEnable).Skippable {
		t.Error("enable says it is skippable")
	}
	if _, err := e.Skip(api.RunbookAction{}, "ops-token"); !errors.Is(err, ErrConflict) || !strings.Contains(err.Error(), "cannot be skipped") {
		t.Fatalf("skip enable: %v", err)
	}
	if _, err := e.Confirm(api.RunbookAction{SiteName: "prod"}, "ops-token"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, e, "migrate", waitingAt(api.StepMigrate))
	if _, err := e.Skip(api.RunbookAction{Step: api.StepMigrate, Reason: "no schema change"}, "ops-token"); err != nil {
		t.Fatal(err)
	}
	rb = waitFor(t, e, "disable", waitingAt(api.StepDisable))
	if s := stepState(rb, api.StepMigrate); s != api.StepSkipped {
		t.Fatalf("migrate %s", s)
	}
	if s := stepState(rb, api.StepVerify); s != api.StepDone {
		t.Fatalf("verify %s", s)
	}
	if _, err := e.Confirm(api.RunbookAction{}, "ops-token"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, e, "the end", ended)
}

func TestRunbookInterruptedThenResumed(t *testing.T) {
	site := newFakeSite(t)
	e, o := testEngine(t, site, nil)
	rb, err := e.Start(context.Background(), api.RunbookOptions{}, "ops-token")
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, e, "enable", waitingAt(api.StepEnable))
	if _, err := e.Confirm(api.RunbookAction{SiteName: "prod"}, "ops-token"); err != nil {
		t.Fatal(err)
	}
	site.set(func(f *fakeSite) { f.inFlight = 1 })
	waitFor(t, e, "the drain", func(rb *api.Runbook) bool {
		return rb.Step == api.StepDrain && stepState(rb, api.StepDrain) == api.StepRunning
	})
	e2 := reopen(t, e, o) // the gate restarts mid-drain
	got, err := e2.Current()
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != rb.ID || got.State != api.RunbookInterrupted || stepState(got, api.StepDrain) != api.StepInterrupted {
		t.Fatalf("after restart: %s, drain %s", got.State, stepState(got, api.StepDrain))
	}
	// The site is still held: no new runbook.
	if _, err := e2.Start(context.Background(), api.RunbookOptions{}, "x"); !errors.Is(err, ErrConflict) {
		t.Fatalf("start over an interrupted runbook: %v", err)
	}
	if _, err := e2.Retry(api.RunbookAction{Step: api.StepSnapshot}, "x"); !errors.Is(err, ErrConflict) {
		t.Fatalf("retry of another step: %v", err)
	}
	site.set(func(f *fakeSite) { f.inFlight = 0 })
	if _, err := e2.Resume(api.RunbookAction{}, "ops-token"); err != nil {
		t.Fatal(err)
	}
	got = waitFor(t, e2, "disable", waitingAt(api.StepDisable))
	if stepState(got, api.StepSnapshot) != api.StepDone || got.Snapshot == nil {
		t.Fatalf("snapshot %s", stepState(got, api.StepSnapshot))
	}
	if _, err := e2.Confirm(api.RunbookAction{}, "ops-token"); err != nil {
		t.Fatal(err)
	}
	got = waitFor(t, e2, "the end", ended)
	if got.State != api.RunbookDone {
		t.Fatalf("%s: %s", got.State, got.Error)
	}
	kinds := map[string]bool{}
	evs := events(t, e2)
	for _, ev := range evs {
		kinds[ev.Kind] = true
	}
	for _, k := range []string{api.EventStarted, api.EventConfirmed, api.EventInterrupted, api.EventResumed, api.EventFinished} {
		if !kinds[k] {
			t.Errorf("journal lacks a %s event", k)
		}
	}
}

func TestRunbookInterruptedWhileWaitingWaitsAgain(t *testing.T) {
	site := newFakeSite(t)
	e, o := testEngine(t, site, nil)
	if _, err := e.Start(context.Background(), api.RunbookOptions{}, "ops-token"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, e, "enable", waitingAt(api.StepEnable))
	e2 := reopen(t, e, o)
	if _, err := e2.Resume(api.RunbookAction{}, "ops-token"); err != nil {
		t.Fatal(err)
	}
	// Resuming a step that waited does not confirm it.
	waitFor(t, e2, "enable again", waitingAt(api.StepEnable))
	if len(site.modes) != 0 {
		t.Fatalf("mode changed: %v", site.modes)
	}
	if _, err := e2.Abort(context.Background(), api.RunbookAction{}, "ops-token"); err != nil {
		t.Fatal(err)
	}
}

func TestRunbookPreflight(t *testing.T) {
	t.Run("a failing check stops it before anything changes", func(t *testing.T) {
		site := newFakeSite(t)
		site.checks = []api.CheckResult{{Name: "ckan_db", Status: api.CheckFail, Summary: "connection refused"}}
		e, _ := testEngine(t, site, nil)
		if _, err := e.Start(context.Background(), api.RunbookOptions{AutoConfirm: true}, "x"); err != nil {
			t.Fatal(err)
		}
		rb := waitFor(t, e, "the failure", ended)
		if rb.State != api.RunbookFailed || rb.Step != api.StepPreflight || !strings.Contains(rb.Error, "ckan_db: connection refused") {
			t.Fatalf("%s at %s: %s", rb.State, rb.Step, rb.Error)
		}
		if len(site.modes) != 0 {
			t.Fatalf("mode changed: %v", site.modes)
		}
	})
	t.Run("snapshot dir missing", func(t *testing.T) {
		site := newFakeSite(t)
		e, _ := testEngine(t, site, func(o *Options) { o.Snapshot.Dir = "/nonexistent/ckanops/snapshots" })
		if _, err := e.Start(context.Background(), api.RunbookOptions{AutoConfirm: true}, "x"); err != nil {
			t.Fatal(err)
		}
		rb := waitFor(t, e, "the failure", ended)
		if rb.State != api.RunbookFailed || rb.Step != api.StepPreflight || !strings.Contains(rb.Error, "/nonexistent/ckanops/snapshots does not exist") {
			t.Fatalf("%s at %s: %s", rb.State, rb.Step, rb.Error)
		}
	})
	t.Run("pg_dump missing", func(t *testing.T) {
		site := newFakeSite(t)
		e, _ := testEngine(t, site, func(o *Options) {
			o.Checks.CKANDB = "postgres://ckan@127.0.0.1:1/ckan"
			o.Snapshot.PGDump = "/nonexistent/pg_dump"
		})
		if _, err := e.Start(context.Background(), api.RunbookOptions{AutoConfirm: true}, "x"); err != nil {
			t.Fatal(err)
		}
		rb := waitFor(t, e, "the failure", ended)
		if rb.State != api.RunbookFailed || !strings.Contains(rb.Error, "pg_dump /nonexistent/pg_dump cannot be run") {
			t.Fatalf("%s at %s: %s", rb.State, rb.Step, rb.Error)
		}
	})
	t.Run("warnings wait for an acknowledgement", func(t *testing.T) {
		site := newFakeSite(t)
		site.checks = []api.CheckResult{{Name: "solr", Status: api.CheckWarn, Summary: "slow ping"}}
		e, _ := testEngine(t, site, nil)
		if _, err := e.Start(context.Background(), api.RunbookOptions{}, "x"); err != nil {
			t.Fatal(err)
		}
		rb := waitFor(t, e, "preflight", waitingAt(api.StepPreflight))
		if !slices.Equal(rb.Waiting.Warnings, []string{"solr: slow ping"}) || rb.Waiting.TypeSiteName {
			t.Fatalf("confirmation %+v", rb.Waiting)
		}
		if _, err := e.Confirm(api.RunbookAction{}, "ckan:admin"); err != nil {
			t.Fatal(err)
		}
		rb = waitFor(t, e, "enable", waitingAt(api.StepEnable))
		if s := stepState(rb, api.StepPreflight); s != api.StepDone {
			t.Fatalf("preflight %s", s)
		}
		if _, err := e.Abort(context.Background(), api.RunbookAction{}, "x"); err != nil {
			t.Fatal(err)
		}
	})
}

func TestRunbookInconsistentSnapshotStops(t *testing.T) {
	site := newFakeSite(t)
	var storage string
	e, _ := testEngine(t, site, func(o *Options) { storage = o.Snapshot.StoragePath })
	// A writer behind the gate's back adds a file once the snapshot has
	// digested the storage ("storage ...: N files") and before it looks again.
	var once sync.Once
	e.onOutput = func(step, line string) {
		if step == api.StepSnapshot && strings.HasPrefix(line, "storage ") {
			once.Do(func() {
				if err := os.WriteFile(filepath.Join(storage, "resources", "ab", "late.csv"), []byte("x"), 0o644); err != nil {
					t.Error(err)
				}
			})
		}
	}
	if _, err := e.Start(context.Background(), api.RunbookOptions{AutoConfirm: true}, "x"); err != nil {
		t.Fatal(err)
	}
	rb := waitFor(t, e, "the end", ended)
	if rb.State != api.RunbookFailed || rb.Step != api.StepSnapshot {
		t.Fatalf("%s at %s: %s", rb.State, rb.Step, rb.Error)
	}
	if !strings.Contains(rb.Error, "inconsistent") || !strings.Contains(rb.Error, "late.csv") {
		t.Fatalf("error %q", rb.Error)
	}
	if rb.Snapshot == nil || rb.Snapshot.Verdict != api.VerdictInconsistent {
		t.Fatalf("snapshot %+v", rb.Snapshot)
	}
	if site.mode() != api.ModeReadOnly || slices.Contains(site.modes, api.ModeLive) {
		t.Fatalf("mode %s after an inconsistent snapshot", site.mode())
	}
}
