package runbook

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ckanops/ckanops/api"
	"github.com/ckanops/ckanops/ckanclient"
)

// failingSite is a fakeSite whose RQ calls can fail, whose other gate
// "web-2" can lag behind live mode, and whose CKAN client can be swapped.
type failingSite struct {
	*fakeSite
	suspendErr, resumeErr error
	lagLive               atomic.Bool // web-2 keeps the version before live mode
	ckan                  atomic.Pointer[ckanclient.Client]
}

func (s *failingSite) SuspendJobs(ctx context.Context, actor, reason string) (api.JobsState, error) {
	if s.suspendErr != nil {
		return api.JobsState{}, s.suspendErr
	}
	return s.fakeSite.SuspendJobs(ctx, actor, reason)
}

func (s *failingSite) ResumeJobs(ctx context.Context, actor, reason string) (api.JobsState, error) {
	if s.resumeErr != nil {
		return api.JobsState{}, s.resumeErr
	}
	return s.fakeSite.ResumeJobs(ctx, actor, reason)
}

// Status adds web-2, which applies every maintenance mode at once but,
// while lagLive is set, not a live one.
func (s *failingSite) Status(ctx context.Context) api.Status {
	st := s.fakeSite.Status(ctx)
	g := api.GateInfo{ID: "web-2", Version: st.Version, Phase: st.Phase, Seen: time.Now()}
	if st.Mode == api.ModeLive && s.lagLive.Load() {
		g.Version, g.Phase = st.Version-1, api.PhaseQuiesced
	}
	st.Gates = append(st.Gates, g)
	return st
}

func (s *failingSite) CKAN() *ckanclient.Client {
	if c := s.ckan.Load(); c != nil {
		return c
	}
	return s.fakeSite.CKAN()
}

// siteState is the fake site's mode, its mode changes and RQ's
// suspension, read under its lock.
func siteState(f *fakeSite) (mode api.Mode, modes []api.Mode, suspended bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.st.Mode, slices.Clone(f.modes), f.suspended
}

// verify checks CKAN's version through the gate against [runbook]
// expect_ckan_version: another version fails the step, naming both, and
// the site stays in maintenance (read-only, RQ suspended), never reopened.
func TestVerifyWrongCKANVersionKeepsMaintenance(t *testing.T) {
	site := newFakeSite(t)
	s, err := site.ckan.StatusShow(context.Background())
	if err != nil || s.CKANVersion == "" || s.CKANVersion == "2.12.0" {
		t.Fatalf("the simulated CKAN's version %+v, %v", s, err)
	}
	e, _ := testEngine(t, site, func(o *Options) { o.ExpectCKAN = "2.12.0" })
	if _, err := e.Start(context.Background(), api.RunbookOptions{AutoConfirm: true}, "ops-token"); err != nil {
		t.Fatal(err)
	}
	rb := failedAt(t, e, api.StepVerify)
	for _, want := range []string{"CKAN reports version " + s.CKANVersion, "expect_ckan_version", "2.12.0"} {
		if !strings.Contains(rb.Error, want) {
			t.Errorf("error %q lacks %q", rb.Error, want)
		}
	}
	if stepState(rb, api.StepDisable) != api.StepPending {
		t.Errorf("disable is %s", stepState(rb, api.StepDisable))
	}
	mode, modes, suspended := siteState(site)
	if mode != api.ModeReadOnly || slices.Contains(modes, api.ModeLive) || !suspended {
		t.Fatalf("mode %s, changes %v, RQ suspended %v: want read-only, never live, suspended", mode, modes, suspended)
	}
}

// The drain gives up after [gate] drain_timeout while a write stays in
// flight: the step fails naming drain_timeout and what is still busy, no
// sooner than the timeout, and the site stays read-only.
func TestDrainTimeoutKeepsReadOnly(t *testing.T) {
	site := newFakeSite(t)
	site.set(func(f *fakeSite) { f.inFlight = 1 }) // never ends
	const timeout = 200 * time.Millisecond
	e, _ := testEngine(t, site, func(o *Options) { o.Drain = timeout })
	if _, err := e.Start(context.Background(), api.RunbookOptions{AutoConfirm: true}, "ops-token"); err != nil {
		t.Fatal(err)
	}
	rb := failedAt(t, e, api.StepDrain)
	for _, want := range []string{"drain timed out after 200ms", "[gate] drain_timeout", "1 write(s) in flight on gate web-1"} {
		if !strings.Contains(rb.Error, want) {
			t.Errorf("error %q lacks %q", rb.Error, want)
		}
	}
	d := rb.StepByName(api.StepDrain)
	if d.Started == nil || d.Ended == nil || d.Ended.Sub(*d.Started) < timeout {
		t.Errorf("drain ran from %v to %v: gave up before drain_timeout", d.Started, d.Ended)
	}
	if stepState(rb, api.StepSnapshot) != api.StepPending {
		t.Errorf("snapshot is %s", stepState(rb, api.StepSnapshot))
	}
	if mode, modes, _ := siteState(site); mode != api.ModeReadOnly || slices.Contains(modes, api.ModeLive) {
		t.Fatalf("mode %s, changes %v: want read-only, never live", mode, modes)
	}
}

// RQ's workers that cannot be suspended fail the drain at once, saying
// so; the site stays read-only.
func TestDrainRQNotSuspendedFails(t *testing.T) {
	site := &failingSite{fakeSite: newFakeSite(t), suspendErr: errors.New("redis: connection refused")}
	e, _ := testEngine(t, site.fakeSite, func(o *Options) { o.Site = site })
	if _, err := e.Start(context.Background(), api.RunbookOptions{AutoConfirm: true}, "ops-token"); err != nil {
		t.Fatal(err)
	}
	rb := failedAt(t, e, api.StepDrain)
	if !strings.Contains(rb.Error, "RQ workers could not be suspended: redis: connection refused") {
		t.Errorf("error %q", rb.Error)
	}
	for _, ev := range rb.StepByName(api.StepDrain).Evidence {
		if strings.HasPrefix(ev.Summary, "waiting:") || strings.HasPrefix(ev.Summary, "drained at") {
			t.Errorf("the drain went on without RQ suspended: %q", ev.Summary)
		}
	}
	if mode, modes, _ := siteState(site.fakeSite); mode != api.ModeReadOnly || slices.Contains(modes, api.ModeLive) {
		t.Fatalf("mode %s, changes %v: want read-only, never live", mode, modes)
	}
}

// disable sets live, then resumes RQ: a resume that fails fails the step,
// saying writes are open but RQ's workers were not resumed, and how to
// resume them.
func TestDisableRQResumeFails(t *testing.T) {
	site := &failingSite{fakeSite: newFakeSite(t), resumeErr: errors.New("redis: connection refused")}
	e, _ := testEngine(t, site.fakeSite, func(o *Options) { o.Site = site })
	if _, err := e.Start(context.Background(), api.RunbookOptions{AutoConfirm: true}, "ops-token"); err != nil {
		t.Fatal(err)
	}
	rb := failedAt(t, e, api.StepDisable)
	for _, want := range []string{"writes are open but RQ's workers were not resumed", "redis: connection refused", "POST /-/ckanops/jobs/resume"} {
		if !strings.Contains(rb.Error, want) {
			t.Errorf("error %q lacks %q", rb.Error, want)
		}
	}
	mode, _, suspended := siteState(site.fakeSite)
	if mode != api.ModeLive || !suspended {
		t.Fatalf("mode %s, RQ suspended %v: want live (writes open), RQ still suspended", mode, suspended)
	}
	ev := rb.StepByName(api.StepDisable).Evidence
	if len(ev) == 0 || ev[len(ev)-1].OK || !strings.Contains(ev[len(ev)-1].Summary, "RQ workers not resumed") {
		t.Errorf("disable's evidence %+v", ev)
	}
}

// disable waits until every gate has applied live mode: a gate that has
// not within the wait fails the step, named with the mode's version.
func TestDisableGateLagsLiveFails(t *testing.T) {
	site := &failingSite{fakeSite: newFakeSite(t)}
	site.lagLive.Store(true)
	const wait = 300 * time.Millisecond // min([gate] drain_timeout, 1m)
	e, _ := testEngine(t, site.fakeSite, func(o *Options) { o.Site = site; o.Drain = wait })
	if _, err := e.Start(context.Background(), api.RunbookOptions{AutoConfirm: true}, "ops-token"); err != nil {
		t.Fatal(err)
	}
	rb := failedAt(t, e, api.StepDisable)
	st := site.Status(context.Background())
	if want := "gates web-2 have not applied live mode (version " + itoa(st.Version) + ")"; !strings.Contains(rb.Error, want) {
		t.Errorf("error %q lacks %q", rb.Error, want)
	}
	if strings.Contains(rb.Error, "web-1") {
		t.Errorf("error %q names web-1, which applied live mode", rb.Error)
	}
	d := rb.StepByName(api.StepDisable)
	if d.Started == nil || d.Ended == nil || d.Ended.Sub(*d.Started) < wait {
		t.Errorf("disable ran from %v to %v: gave up before the wait", d.Started, d.Ended)
	}
}

// A gate that applies live mode while disable waits lets it finish.
func TestDisableWaitsForLaggingGate(t *testing.T) {
	site := &failingSite{fakeSite: newFakeSite(t)}
	site.lagLive.Store(true)
	e, _ := testEngine(t, site.fakeSite, func(o *Options) { o.Site = site })
	if _, err := e.Start(context.Background(), api.RunbookOptions{AutoConfirm: true}, "ops-token"); err != nil {
		t.Fatal(err)
	}
	// disable has set live and waits on web-2.
	waitFor(t, e, "disable to wait on web-2", func(rb *api.Runbook) bool {
		return stepState(rb, api.StepDisable) == api.StepRunning && site.mode() == api.ModeLive
	})
	if rb, _ := e.Current(); ended(rb) {
		t.Fatalf("disable did not wait for web-2: %s (%s)", rb.State, rb.Error)
	}
	site.lagLive.Store(false)
	rb := waitFor(t, e, "the end", ended)
	if rb.State != api.RunbookDone {
		t.Fatalf("state %s, error %q", rb.State, rb.Error)
	}
	found := false
	for _, ev := range rb.StepByName(api.StepDisable).Evidence {
		found = found || (ev.OK && strings.HasPrefix(ev.Summary, "live on 2/2 gate(s)"))
	}
	if !found {
		t.Errorf("disable's evidence lacks live on 2/2 gates: %+v", rb.StepByName(api.StepDisable).Evidence)
	}
}

// With writes open, a status_show through the gate that fails fails
// disable, saying writes are open.
func TestDisableStatusShowFails(t *testing.T) {
	site := &failingSite{fakeSite: newFakeSite(t)}
	e, _ := testEngine(t, site.fakeSite, func(o *Options) { o.Site = site })
	if _, err := e.Start(context.Background(), api.RunbookOptions{AutoConfirm: true, StopBefore: api.StepDisable}, "ops-token"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, e, "the stop before disable", waitingAt(api.StepDisable))
	dead, err := ckanclient.New("http://127.0.0.1:1", ckanclient.Options{Retries: -1})
	if err != nil {
		t.Fatal(err)
	}
	site.ckan.Store(dead)
	if _, err := e.Confirm(api.RunbookAction{Step: api.StepDisable}, "ops-token"); err != nil {
		t.Fatal(err)
	}
	rb := failedAt(t, e, api.StepDisable)
	if !strings.Contains(rb.Error, "writes are open, but status_show through the gate failed") {
		t.Errorf("error %q", rb.Error)
	}
	if site.mode() != api.ModeLive {
		t.Errorf("mode %s", site.mode())
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
