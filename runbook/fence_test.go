package runbook

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/ckanops/ckanops/api"
	"github.com/ckanops/ckanops/config"
	"github.com/ckanops/ckanops/internal/testredis"
	"github.com/ckanops/ckanops/runbook/snapshot"
)

// recordingSite is a fakeSite that keeps the engine's audit entries and
// the reasons of its changes to the site.
type recordingSite struct {
	*fakeSite

	mu      sync.Mutex
	entries []string // "event: message"
	reasons []string // of SetMode, SuspendJobs and ResumeJobs
}

func (s *recordingSite) Audit(event, actor, from, to, message, reason string) {
	s.fakeSite.Audit(event, actor, from, to, message, reason)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.entries = append(s.entries, event+": "+message)
}

func (s *recordingSite) reason(r string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reasons = append(s.reasons, r)
}

func (s *recordingSite) SetMode(ctx context.Context, req api.ModeRequest, actor string) (api.Status, error) {
	s.reason(req.Reason)
	return s.fakeSite.SetMode(ctx, req, actor)
}

func (s *recordingSite) SuspendJobs(ctx context.Context, actor, reason string) (api.JobsState, error) {
	s.reason(reason)
	return s.fakeSite.SuspendJobs(ctx, actor, reason)
}

func (s *recordingSite) ResumeJobs(ctx context.Context, actor, reason string) (api.JobsState, error) {
	s.reason(reason)
	return s.fakeSite.ResumeJobs(ctx, actor, reason)
}

func (s *recordingSite) audited() ([]string, []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.entries), slices.Clone(s.reasons)
}

// gateOn opens an engine of the gate id on site, locking in rdb with lease.
func gateOn(t *testing.T, site Site, rdb *redis.Client, id string, lease time.Duration, mod func(*Options)) *Engine {
	t.Helper()
	e, _ := testEngine(t, nil, func(o *Options) {
		o.Site = site
		o.Lock = NewRedisLock(rdb, "prod", lease)
		o.Holder = id
		if mod != nil {
			mod(o)
		}
	})
	return e
}

// runnerEnded reports whether e's runner has returned: nothing more can
// happen to the site until an operator acts.
func runnerEnded(e *Engine) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.runner == nil
}

// interruptedByLoss waits until the runbook stops interrupted by a lost
// lease, and its runner has returned.
func interruptedByLoss(t *testing.T, e *Engine) *api.Runbook {
	t.Helper()
	rb := waitFor(t, e, "the runbook to stop on the lost lease", func(rb *api.Runbook) bool {
		return rb.State == api.RunbookInterrupted && runnerEnded(e)
	})
	if !strings.HasPrefix(rb.Error, "lease lost: ") {
		t.Fatalf("error %q", rb.Error)
	}
	if s := stepState(rb, rb.Step); s != api.StepInterrupted {
		t.Fatalf("step %s is %s", rb.Step, s)
	}
	evs := events(t, e)
	last := evs[len(evs)-1]
	if last.Kind != api.EventInterrupted || !strings.HasPrefix(last.Message, "lease lost: ") || last.Fence != rb.Fence {
		t.Fatalf("last event %+v", last)
	}
	return rb
}

// startWhenFree starts a runbook on e, retrying while the lock is held
// (a key that Redis keeps until its lease runs out), for at most 10s.
func startWhenFree(t *testing.T, e *Engine) *api.Runbook {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		rb, err := e.Start(context.Background(), api.RunbookOptions{AutoConfirm: true}, "ops-token")
		if err == nil {
			return rb
		}
		if !errors.Is(err, ErrConflict) || time.Now().After(deadline) {
			t.Fatalf("start on the other gate: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Redis restarted empty while a migration runs: the runner kills the
// program and stops interrupted before its next change; another gate
// can then start, with a greater fence, and the first resumes only after.
func TestRunbookStopsWhenRedisForgetsTheLock(t *testing.T) {
	srv := testredis.Start(t)
	rdb := redisClient(t, srv)
	site := newFakeSite(t)
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "pid")
	script := filepath.Join(dir, "migrate.sh")
	writeScript(t, script, fmt.Sprintf("echo $$ > %s\nexec sleep 30\n", pidFile))
	a := gateOn(t, site, rdb, "web-1", time.Second, func(o *Options) {
		o.Migrate = []config.Command{
			{Name: "db upgrade", Argv: []string{script}, Timeout: config.Duration{Duration: time.Minute}},
			{Name: "search index", Argv: []string{"true"}, Mode: api.ModeDown},
		}
	})
	b := gateOn(t, site, rdb, "web-2", time.Second, nil)

	rb, err := a.Start(context.Background(), api.RunbookOptions{AutoConfirm: true}, "ops-token")
	if err != nil {
		t.Fatal(err)
	}
	fenceA := rb.Fence
	if fenceA == 0 {
		t.Fatal("no fence")
	}
	var pid int
	waitFor(t, a, "the migration to run", func(*api.Runbook) bool {
		b, _ := os.ReadFile(pidFile)
		_, err := fmt.Sscan(string(b), &pid)
		return err == nil && pid > 0
	})
	if _, err := b.Start(context.Background(), api.RunbookOptions{}, "x"); !errors.Is(err, ErrConflict) || !strings.Contains(err.Error(), "web-1 runbook "+rb.ID) {
		t.Fatalf("start on the other gate while the lock is held: %v", err)
	}
	modes := slices.Clone(site.modes)

	srv.Restart(t)
	rb = interruptedByLoss(t, a)
	if rb.Step != api.StepMigrate || !strings.Contains(rb.Error, "is gone from Redis") {
		t.Fatalf("interrupted at %s: %s", rb.Step, rb.Error)
	}
	ev := rb.StepByName(api.StepMigrate).Evidence
	if last := ev[len(ev)-1]; last.Kind != api.EvidenceRun || !strings.Contains(last.Summary, "lease lost") {
		t.Fatalf("the migration's evidence: %+v", last)
	}
	deadline := time.Now().Add(10 * time.Second)
	for syscall.Kill(pid, 0) == nil {
		if time.Now().After(deadline) {
			t.Fatalf("the migration %d outlived the lease", pid)
		}
		time.Sleep(10 * time.Millisecond)
	}
	// The next change (down, for the second command) never came.
	if !slices.Equal(site.modes, modes) {
		t.Fatalf("mode changes after the loss: %v, then %v", modes, site.modes)
	}

	// Another gate takes the site, with a greater fence.
	rbB := startWhenFree(t, b)
	if rbB.Fence <= fenceA {
		t.Fatalf("the other gate's fence %d, after %d", rbB.Fence, fenceA)
	}
	if _, err := a.Resume(api.RunbookAction{}, "ops-token"); !errors.Is(err, ErrConflict) || !strings.Contains(err.Error(), "web-2") {
		t.Fatalf("resume while the other gate holds the lock: %v", err)
	}
	if rbB = waitFor(t, b, "the other gate's runbook to end", ended); rbB.State != api.RunbookDone {
		t.Fatalf("the other gate's runbook: %s (%s)", rbB.State, rbB.Error)
	}
	// Then the first resumes, with a greater fence again.
	rb, err = a.Resume(api.RunbookAction{}, "ops-token")
	if err != nil {
		t.Fatal(err)
	}
	if rb.Fence <= rbB.Fence || rb.Error != "" || rb.State != api.RunbookRunning {
		t.Fatalf("resumed with fence %d (the other's %d), state %s, error %q", rb.Fence, rbB.Fence, rb.State, rb.Error)
	}
	evs := events(t, a)
	if i := slices.IndexFunc(evs, func(ev api.RunbookEvent) bool { return ev.Kind == api.EventResumed }); i < 0 || evs[i].Fence != rb.Fence {
		t.Fatalf("no resumed event with fence %d", rb.Fence)
	}
	if _, err := a.Abort(context.Background(), api.RunbookAction{}, "ops-token"); err != nil {
		t.Fatal(err)
	}
}

// Redis stops answering (paused) while the drain waits: the runner stops
// before Redis could let the key expire, and does not go on to the
// snapshot; once Redis answers, another gate takes the site with a
// greater fence.
func TestRunbookStopsWhenRedisStalls(t *testing.T) {
	srv := testredis.Start(t)
	rdb := redisClient(t, srv)
	site := newFakeSite(t)
	site.set(func(f *fakeSite) { f.inFlight = 1 })
	const lease = 1500 * time.Millisecond
	a := gateOn(t, site, rdb, "web-1", lease, nil)
	b := gateOn(t, site, rdb, "web-2", lease, nil)
	rb, err := a.Start(context.Background(), api.RunbookOptions{AutoConfirm: true}, "ops-token")
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, a, "the drain to wait", func(rb *api.Runbook) bool {
		return rb.Step == api.StepDrain && len(rb.StepByName(api.StepDrain).Evidence) > 1
	})
	modes := slices.Clone(site.modes)

	paused := time.Now()
	cont := pause(t, srv)
	rb = interruptedByLoss(t, a)
	// The writes end now: the runner has returned, so nothing finishes
	// the drain or starts the snapshot.
	site.set(func(f *fakeSite) { f.inFlight = 0 })
	if d := time.Since(paused); d >= lease {
		t.Fatalf("stopped %s after Redis stopped answering: not before the key could expire (%s)", d, lease)
	}
	if rb.Step != api.StepDrain || !strings.Contains(rb.Error, "Redis has not confirmed the runbook lock") {
		t.Fatalf("interrupted at %s: %s", rb.Step, rb.Error)
	}
	if s := stepState(rb, api.StepSnapshot); s != api.StepPending || rb.Snapshot != nil {
		t.Fatalf("the snapshot is %s: %+v", s, rb.Snapshot)
	}
	if !slices.Equal(site.modes, modes) {
		t.Fatalf("mode changes after the loss: %v, then %v", modes, site.modes)
	}
	cont()

	rbB := startWhenFree(t, b)
	if rbB.Fence <= rb.Fence {
		t.Fatalf("the other gate's fence %d, after %d", rbB.Fence, rb.Fence)
	}
	waitFor(t, b, "the other gate's runbook to end", ended)
}

// A healthy Redis: the lease is renewed through a step longer than
// several leases, and the runbook keeps its fence to the end.
func TestRunbookLeaseRenewedThroughALongStep(t *testing.T) {
	srv := testredis.Start(t)
	rdb := redisClient(t, srv)
	site := newFakeSite(t)
	const lease = time.Second
	e := gateOn(t, site, rdb, "web-1", lease, func(o *Options) {
		o.Migrate = []config.Command{{Name: "slow", Argv: []string{"sleep", "3"}, Timeout: config.Duration{Duration: time.Minute}}}
	})
	rb, err := e.Start(context.Background(), api.RunbookOptions{AutoConfirm: true}, "ops-token")
	if err != nil {
		t.Fatal(err)
	}
	fence := rb.Fence
	waitFor(t, e, "the migration to run", func(rb *api.Runbook) bool { return stepState(rb, api.StepMigrate) == api.StepRunning })
	if v, _ := rdb.Get(context.Background(), "ckanops:prod:runbook").Result(); v != "web-1 runbook "+rb.ID {
		t.Fatalf("the lock key holds %q", v)
	}
	rb = waitFor(t, e, "the end", ended)
	if rb.State != api.RunbookDone || rb.Fence != fence {
		t.Fatalf("state %s (%s), fence %d (was %d)", rb.State, rb.Error, rb.Fence, fence)
	}
	if d := *rb.StepByName(api.StepMigrate).Ended; d.Sub(*rb.StepByName(api.StepMigrate).Started) < 3*lease {
		t.Fatalf("the migration took only %s", d.Sub(*rb.StepByName(api.StepMigrate).Started))
	}
	evs := events(t, e)
	for _, ev := range evs {
		if ev.Kind == api.EventInterrupted {
			t.Fatalf("interrupted: %s", ev.Message)
		}
	}
	m, err := snapshot.Load(rb.Snapshot.Dir)
	if err != nil {
		t.Fatal(err)
	}
	if m.Fence != fence {
		t.Fatalf("the manifest's fence %d, the runbook's %d", m.Fence, fence)
	}
	if err := rdb.Get(context.Background(), "ckanops:prod:runbook").Err(); !errors.Is(err, redis.Nil) {
		t.Fatalf("the lock outlived the runbook: %v", err)
	}
}

// The fence increases with every acquisition, across gate restarts, and
// is recorded in the runbook, the journal, the audit log, the reasons of
// the runbook's changes to the site, and the snapshot's manifest.
func TestRunbookFenceRecorded(t *testing.T) {
	site := &recordingSite{fakeSite: newFakeSite(t)}
	e, o := testEngine(t, nil, func(o *Options) { o.Site = site })

	var ids []string
	for want := int64(1); want <= 2; want++ {
		rb, err := e.Start(context.Background(), api.RunbookOptions{AutoConfirm: true}, "ops-token")
		if err != nil {
			t.Fatal(err)
		}
		if rb.Fence != want {
			t.Fatalf("runbook %d: fence %d", want, rb.Fence)
		}
		if rb = waitFor(t, e, "the end", ended); rb.State != api.RunbookDone || rb.Fence != want {
			t.Fatalf("runbook %d: %s (%s), fence %d", want, rb.State, rb.Error, rb.Fence)
		}
		ids = append(ids, rb.ID)
		m, err := snapshot.Load(rb.Snapshot.Dir)
		if err != nil {
			t.Fatal(err)
		}
		if m.Fence != want {
			t.Fatalf("runbook %d: the manifest's fence %d", want, m.Fence)
		}
		evs := events(t, e)
		if evs[0].Kind != api.EventStarted || evs[0].Fence != want {
			t.Fatalf("runbook %d: first event %+v", want, evs[0])
		}
	}
	// On disk: the record and the journal.
	var rec api.Runbook
	b, err := os.ReadFile(filepath.Join(o.JournalDir, recordName))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &rec); err != nil || rec.Fence != 2 {
		t.Fatalf("runbook.json: fence %d, %v", rec.Fence, err)
	}
	evs, err := e.j.events(ids[0])
	if err != nil || evs[0].Kind != api.EventStarted || evs[0].Fence != 1 {
		t.Fatalf("the journal's first runbook: %+v, %v", evs, err)
	}
	entries, reasons := site.audited()
	for _, want := range []string{"runbook-start: fence 2", "runbook-step: ", "runbook-done: runbook finished; snapshot "} {
		i := slices.IndexFunc(entries, func(s string) bool {
			return strings.HasPrefix(s, want) && strings.HasSuffix(s, "fence 2)") || s == want
		})
		if i < 0 {
			t.Errorf("no audit entry %q with fence 2 in %q", want, entries)
		}
	}
	for _, r := range reasons {
		if !strings.HasSuffix(r, " (fence 1)") && !strings.HasSuffix(r, " (fence 2)") {
			t.Errorf("a change to the site without its fence: %q", r)
		}
	}

	// A gate restart mid-runbook takes the lock again: a greater fence,
	// on the interrupted event, kept by the resume.
	site.set(func(f *fakeSite) { f.inFlight = 1 })
	if _, err := e.Start(context.Background(), api.RunbookOptions{AutoConfirm: true}, "ops-token"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, e, "the drain to wait", func(rb *api.Runbook) bool { return rb.Step == api.StepDrain && rb.Fence == 3 })
	e2 := reopen(t, e, o)
	rb, _ := e2.Current()
	evs = events(t, e2)
	if last := evs[len(evs)-1]; rb.State != api.RunbookInterrupted || rb.Fence != 4 || last.Kind != api.EventInterrupted || last.Fence != 4 {
		t.Fatalf("after the restart: %s, fence %d, last event %+v", rb.State, rb.Fence, last)
	}
	site.set(func(f *fakeSite) { f.inFlight = 0 })
	if rb, err = e2.Resume(api.RunbookAction{}, "ops-token"); err != nil || rb.Fence != 4 {
		t.Fatalf("resume: fence %d, %v", rb.Fence, err)
	}
	if rb = waitFor(t, e2, "the end", ended); rb.State != api.RunbookDone || rb.Fence != 4 {
		t.Fatalf("%s (%s), fence %d", rb.State, rb.Error, rb.Fence)
	}
}

// Without a trusted lease, the engine's Site refuses every change to the
// site, whatever step asks: a runner that has not yet seen its context
// cancelled still cannot act.
func TestLeasedSiteRefusesWithoutTheLease(t *testing.T) {
	site := newFakeSite(t)
	e, _ := testEngine(t, site, nil)
	ctx := context.Background()
	check := func(what string) {
		t.Helper()
		if _, err := e.o.Site.SetMode(ctx, api.ModeRequest{Mode: api.ModeDown}, "x"); !errors.Is(err, ErrLeaseLost) {
			t.Errorf("%s: SetMode: %v", what, err)
		}
		if _, err := e.o.Site.SuspendJobs(ctx, "x", "r"); !errors.Is(err, ErrLeaseLost) {
			t.Errorf("%s: SuspendJobs: %v", what, err)
		}
		if _, err := e.o.Site.ResumeJobs(ctx, "x", "r"); !errors.Is(err, ErrLeaseLost) {
			t.Errorf("%s: ResumeJobs: %v", what, err)
		}
		if len(site.modes) != 0 || site.suspended {
			t.Fatalf("%s: the site changed: %v, suspended %v", what, site.modes, site.suspended)
		}
	}
	check("never acquired")
	lost := newLease(7, time.Now().Add(time.Hour))
	lost.lose(fmt.Errorf("%w: test", ErrLeaseLost))
	e.lease.Store(lost)
	check("lost")
	e.lease.Store(newLease(8, time.Now().Add(-time.Millisecond))) // its timer has not run yet
	check("expired")
}
