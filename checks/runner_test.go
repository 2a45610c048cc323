package checks

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ckanops/ckanops/api"
)

func okProbe(name string) Probe {
	return ProbeFunc(name, func(context.Context) api.CheckResult {
		return api.CheckResult{Status: api.CheckOK, Summary: "fine"}
	})
}

// runProbe runs one probe through a Runner, as the gate does, and returns
// its result.
func runProbe(t testing.TB, p Probe, timeout time.Duration) api.CheckResult {
	t.Helper()
	rep := NewRunner(RunnerOptions{Site: "test", Timeout: timeout}, p).Fresh(context.Background())
	if len(rep.Checks) != 1 || rep.Checks[0].Name != p.Name() {
		t.Fatalf("report %+v, want one result named %s", rep, p.Name())
	}
	return rep.Checks[0]
}

// Probes run at once: each waits until all have started, which never
// happens if they run one after another.
func TestRunnerRunsProbesConcurrently(t *testing.T) {
	const n = 5
	var started sync.WaitGroup
	started.Add(n)
	all := make(chan struct{})
	go func() { started.Wait(); close(all) }()
	var probes []Probe
	for i := range n {
		probes = append(probes, ProbeFunc(string(rune('a'+i)), func(ctx context.Context) api.CheckResult {
			started.Done()
			select {
			case <-all:
				return api.CheckResult{Status: api.CheckOK}
			case <-ctx.Done():
				return api.CheckResult{Status: api.CheckFail, Summary: "alone"}
			}
		}))
	}
	rep := NewRunner(RunnerOptions{Site: "s", Timeout: 5 * time.Second}, probes...).Run(context.Background())
	if rep.Site != "s" || len(rep.Checks) != n {
		t.Fatalf("report %+v", rep)
	}
	for i, c := range rep.Checks {
		if c.Status != api.CheckOK || c.Name != string(rune('a'+i)) {
			t.Errorf("check %d: %+v (probes did not run concurrently, or out of order)", i, c)
		}
		if c.ObservedAt.IsZero() || c.Duration <= 0 {
			t.Errorf("check %d: no observed_at or duration: %+v", i, c)
		}
	}
}

// A probe that ignores its deadline fails the round on its own; the
// others report; the next round does not start it again while it hangs.
func TestRunnerHangingProbe(t *testing.T) {
	release := make(chan struct{})
	var calls atomic.Int32
	hang := ProbeFunc("hang", func(context.Context) api.CheckResult {
		calls.Add(1)
		<-release // ignores ctx
		return api.CheckResult{Status: api.CheckOK}
	})
	r := NewRunner(RunnerOptions{Timeout: 100 * time.Millisecond}, okProbe("a"), hang, okProbe("b"))
	rep := r.Fresh(context.Background())
	if rep.Checks[0].Status != api.CheckOK || rep.Checks[2].Status != api.CheckOK {
		t.Errorf("the other probes: %+v", rep.Checks)
	}
	if h := rep.Checks[1]; h.Status != api.CheckFail || h.Name != "hang" || h.Summary != "no answer within 100ms" {
		t.Errorf("hanging probe: %+v", h)
	}
	rep = r.Fresh(context.Background())
	if h := rep.Checks[1]; h.Status != api.CheckFail || !strings.Contains(h.Summary, "has not returned") {
		t.Errorf("hanging probe, second round: %+v", h)
	}
	if n := calls.Load(); n != 1 {
		t.Errorf("the hanging probe was started %d times", n)
	}
	close(release)
	for i := 0; i < 100 && r.probes[1].busy.Load(); i++ {
		time.Sleep(10 * time.Millisecond)
	}
	if rep = r.Fresh(context.Background()); rep.Checks[1].Status != api.CheckOK {
		t.Errorf("after it returned: %+v", rep.Checks[1])
	}
}

// Rounds back to back: a probe that returned is never taken for one still
// running.
func TestRunnerBackToBack(t *testing.T) {
	var probes []Probe
	for i := range 20 {
		probes = append(probes, okProbe(fmt.Sprint("p", i)))
	}
	r := NewRunner(RunnerOptions{Timeout: time.Second}, probes...)
	for i := range 1000 {
		for _, c := range r.Fresh(context.Background()).Checks {
			if c.Status != api.CheckOK {
				t.Fatalf("round %d: %s: %s", i, c.Name, c.Summary)
			}
		}
	}
}

func TestRunnerPanickingProbe(t *testing.T) {
	res := runProbe(t, ProbeFunc("boom", func(context.Context) api.CheckResult { panic("kaboom") }), time.Second)
	if res.Status != api.CheckFail || !strings.Contains(res.Summary, "kaboom") {
		t.Errorf("%+v", res)
	}
}

// A round is reused for the refresh period; Fresh and Invalidate probe anew.
func TestRunnerCache(t *testing.T) {
	var calls atomic.Int32
	p := ProbeFunc("count", func(context.Context) api.CheckResult {
		calls.Add(1)
		return api.CheckResult{Status: api.CheckOK}
	})
	var mu sync.Mutex
	now := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	r := NewRunner(RunnerOptions{Timeout: time.Second, Refresh: 15 * time.Second, Clock: clock}, p)
	ctx := context.Background()
	steps := []struct {
		do   func()
		want int32
	}{
		{func() { r.Run(ctx) }, 1},
		{func() { r.Run(ctx) }, 1},
		{func() { advance(14 * time.Second); r.Run(ctx) }, 1},
		{func() { advance(time.Second); r.Run(ctx) }, 2},
		{func() { r.Run(ctx) }, 2},
		{func() { r.Fresh(ctx) }, 3},
		{func() { r.Invalidate(); r.Run(ctx) }, 4},
		{func() { r.Run(ctx) }, 4},
	}
	for i, s := range steps {
		s.do()
		if got := calls.Load(); got != s.want {
			t.Fatalf("step %d: %d rounds, want %d", i, got, s.want)
		}
	}
	// Callers get copies: changing one does not change the cache.
	rep := r.Run(ctx)
	rep.Checks[0].Status = "changed"
	if r.Run(ctx).Checks[0].Status != api.CheckOK {
		t.Error("a caller's change reached the cache")
	}
}

// Many callers at once share one round.
func TestRunnerSharesRoundInFlight(t *testing.T) {
	var calls atomic.Int32
	release := make(chan struct{})
	p := ProbeFunc("slow", func(ctx context.Context) api.CheckResult {
		calls.Add(1)
		select {
		case <-release:
		case <-ctx.Done():
		}
		return api.CheckResult{Status: api.CheckOK}
	})
	r := NewRunner(RunnerOptions{Timeout: 5 * time.Second}, p)
	var wg sync.WaitGroup
	reps := make([]api.Report, 20)
	for i := range reps {
		wg.Add(1)
		go func() { defer wg.Done(); reps[i] = r.Fresh(context.Background()) }()
	}
	for i := 0; i < 500 && calls.Load() == 0; i++ {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(20 * time.Millisecond) // let every caller join
	close(release)
	wg.Wait()
	if n := calls.Load(); n != 1 {
		t.Errorf("%d rounds for 20 callers at once, want 1", n)
	}
	for i, rep := range reps {
		if len(rep.Checks) != 1 || rep.Checks[0].Status != api.CheckOK {
			t.Errorf("caller %d: %+v", i, rep)
		}
	}
}

// A caller that gives up gets "unknown"; the round goes on for the next.
func TestRunnerCallerGivesUp(t *testing.T) {
	release := make(chan struct{})
	var calls atomic.Int32
	p := ProbeFunc("slow", func(ctx context.Context) api.CheckResult {
		calls.Add(1)
		<-release
		return api.CheckResult{Status: api.CheckOK, Summary: "done"}
	})
	r := NewRunner(RunnerOptions{Timeout: 5 * time.Second, Refresh: time.Minute}, p)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	rep := r.Run(ctx)
	if c := rep.Checks[0]; c.Status != api.CheckUnknown || !strings.Contains(c.Summary, "request ended") {
		t.Errorf("abandoned: %+v", c)
	}
	close(release)
	rep = r.Run(context.Background())
	if c := rep.Checks[0]; c.Status != api.CheckOK || calls.Load() != 1 {
		t.Errorf("the round did not go on: %+v, %d calls", c, calls.Load())
	}
}

func TestNotConfiguredAndOverall(t *testing.T) {
	res := runProbe(t, NotConfigured("solr", "solr"), time.Second)
	if res.Status != api.CheckUnknown || res.Summary != "not configured: set solr in gate.toml's [checks] to probe it" {
		t.Errorf("%+v", res)
	}
	b, _ := json.Marshal(res)
	var back api.CheckResult
	if err := json.Unmarshal(b, &back); err != nil || !back.IsNotConfigured() {
		t.Errorf("after JSON (%s): not configured = %v, %v", b, back.IsNotConfigured(), err)
	}
	if (api.CheckResult{Status: api.CheckUnknown}).IsNotConfigured() {
		t.Error("a plain unknown is not 'not configured'")
	}

	nc := res
	c := func(status api.CheckStatus) api.CheckResult { return api.CheckResult{Status: status} }
	for _, tc := range []struct {
		checks []api.CheckResult
		want   api.CheckStatus
	}{
		{[]api.CheckResult{c("ok"), nc}, "ok"},
		{[]api.CheckResult{c("ok"), c("warn"), nc}, "warn"},
		{[]api.CheckResult{c("ok"), c("unknown")}, "warn"},
		{[]api.CheckResult{c("warn"), c("fail"), c("ok")}, "fail"},
		{[]api.CheckResult{nc}, "unknown"},
		{nil, "unknown"},
	} {
		if got := (api.Report{Checks: tc.checks}).Overall(); got != tc.want {
			t.Errorf("Overall(%v) = %s, want %s", tc.checks, got, tc.want)
		}
	}
}
