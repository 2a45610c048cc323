package checks

import (
	"context"
	"encoding/json"
	"fmt"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ckanops/ckanops/api"
)

// Probe is one health check. Check must return within ctx's deadline (the
// Runner gives each probe its own); the Runner fills in the result's Name,
// ObservedAt and Duration.
type Probe interface {
	Name() string
	Check(ctx context.Context) api.CheckResult
}

// ProbeFunc makes a Probe of a function.
func ProbeFunc(name string, check func(ctx context.Context) api.CheckResult) Probe {
	return funcProbe{name, check}
}

type funcProbe struct {
	name  string
	check func(context.Context) api.CheckResult
}

func (p funcProbe) Name() string                              { return p.name }
func (p funcProbe) Check(ctx context.Context) api.CheckResult { return p.check(ctx) }

// DefaultTimeout is a probe's timeout when RunnerOptions sets none.
const DefaultTimeout = 3 * time.Second

// grace is how long past its timeout the Runner waits for a probe before
// reporting it as hanging: time for a probe that noticed its deadline to
// close its connection and return.
const grace = 250 * time.Millisecond

// RunnerOptions configure a Runner.
type RunnerOptions struct {
	Site    string        // the report's site
	Timeout time.Duration // each probe's own timeout; default DefaultTimeout
	Refresh time.Duration // how long a round is reused; 0 means every Run probes anew
	Clock   func() time.Time
}

// Runner runs a site's probes concurrently and caches the report. Many
// callers at once share one round in flight; a finished round is reused
// for the refresh period. It is safe for concurrent use.
type Runner struct {
	opts   RunnerOptions
	probes []*slot

	mu       sync.Mutex
	inflight *round
	last     *round // the newest finished round
}

// slot is one probe and whether a call of it is still running (a probe
// that hangs past its deadline is not started again until it returns).
type slot struct {
	probe Probe
	busy  atomic.Bool
	since atomic.Int64 // unix nanoseconds of the running call's start
}

type round struct {
	done     chan struct{}
	rep      api.Report
	finished time.Time
}

// NewRunner returns a Runner of probes, reported in the order given.
func NewRunner(o RunnerOptions, probes ...Probe) *Runner {
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.Clock == nil {
		o.Clock = func() time.Time { return time.Now().UTC() }
	}
	r := &Runner{opts: o}
	for _, p := range probes {
		r.probes = append(r.probes, &slot{probe: p})
	}
	return r
}

// Timeout is each probe's timeout.
func (r *Runner) Timeout() time.Duration { return r.opts.Timeout }

// Run returns the site's report: the last round's while it is younger than
// the refresh period, else a new round's (joining one already in flight).
// If ctx ends first, the probes not yet reported are "unknown"; the round
// goes on for later callers.
func (r *Runner) Run(ctx context.Context) api.Report {
	return r.run(ctx, false)
}

// Fresh is Run without the cache: it joins a round in flight, or starts
// one. The drain uses it, where a report a few seconds old is too old.
func (r *Runner) Fresh(ctx context.Context) api.Report {
	return r.run(ctx, true)
}

// Invalidate forgets the cached round, so the next Run probes anew (after
// a change the report would otherwise hide, such as suspending RQ).
func (r *Runner) Invalidate() {
	r.mu.Lock()
	r.last = nil
	r.mu.Unlock()
}

func (r *Runner) run(ctx context.Context, fresh bool) api.Report {
	r.mu.Lock()
	if !fresh && r.last != nil && r.opts.Clock().Sub(r.last.finished) < r.opts.Refresh {
		rep := r.last.rep
		r.mu.Unlock()
		return copyReport(rep)
	}
	rd := r.inflight
	if rd == nil {
		rd = &round{done: make(chan struct{})}
		r.inflight = rd
		// The round does not belong to this caller: others may join it,
		// so it runs on its own context, bounded by the probes' timeouts.
		go r.execute(rd)
	}
	r.mu.Unlock()
	select {
	case <-rd.done:
		return copyReport(rd.rep)
	case <-ctx.Done():
		return r.unreported(ctx, nil)
	}
}

// Some runs, at once and uncached, only the probes keep names, and
// returns their results (in the runner's order). The runbook's drain
// polls this way: Redis and the databases, not CKAN, Solr and a walk of
// the storage on every poll.
func (r *Runner) Some(ctx context.Context, keep func(name string) bool) api.Report {
	done := make(chan []api.CheckResult, 1)
	go func() { done <- r.roundOf(keep) }()
	select {
	case res := <-done:
		return api.Report{Site: r.opts.Site, Checks: res}
	case <-ctx.Done():
		return r.unreported(ctx, keep)
	}
}

// unreported is the report of a caller whose ctx ended before the probes
// keep names (nil: all) did: each "unknown", saying why.
func (r *Runner) unreported(ctx context.Context, keep func(name string) bool) api.Report {
	rep := api.Report{Site: r.opts.Site}
	t := r.opts.Clock()
	for _, s := range r.probes {
		if keep == nil || keep(s.probe.Name()) {
			rep.Checks = append(rep.Checks, api.CheckResult{
				Name: s.probe.Name(), Status: api.CheckUnknown, ObservedAt: t,
				Summary: "not reported: the request ended before the round of checks did (" + ctx.Err().Error() + ")",
			})
		}
	}
	return rep
}

// execute runs one round and publishes it.
func (r *Runner) execute(rd *round) {
	rep := api.Report{Site: r.opts.Site, Checks: r.round()}
	r.mu.Lock()
	rd.rep = rep
	rd.finished = r.opts.Clock()
	r.last = rd
	r.inflight = nil
	r.mu.Unlock()
	close(rd.done)
}

type indexed struct {
	i   int
	res api.CheckResult
}

// round runs every probe at once and waits for all of them, at most the
// timeout and a grace period. A probe still running then is reported as
// failed; its goroutine ends when the probe returns, and the probe is not
// started again before that.
func (r *Runner) round() []api.CheckResult { return r.roundOf(nil) }

// roundOf is round for the probes keep names (nil: all).
func (r *Runner) roundOf(keep func(name string) bool) []api.CheckResult {
	start := r.opts.Clock()
	results := make([]api.CheckResult, len(r.probes))
	have := make([]bool, len(r.probes))
	skip := make([]bool, len(r.probes))
	ch := make(chan indexed, len(r.probes)) // buffered: a late probe never blocks
	started := 0
	for i, s := range r.probes {
		if keep != nil && !keep(s.probe.Name()) {
			skip[i] = true
			continue
		}
		if !s.busy.CompareAndSwap(false, true) {
			since := time.Unix(0, s.since.Load())
			results[i] = api.CheckResult{
				Name: s.probe.Name(), Status: api.CheckFail, ObservedAt: start,
				Summary: fmt.Sprintf("the previous check has not returned after %s, though its timeout is %s: the probe hangs (look for a stuck mount or firewall)", time.Since(since).Round(time.Second), r.opts.Timeout),
			}
			have[i] = true
			continue
		}
		s.since.Store(time.Now().UnixNano())
		started++
		go func() {
			res := r.runOne(s.probe, start)
			s.busy.Store(false) // before the result is seen: the next round may start at once
			ch <- indexed{i, res}
		}()
	}
	timer := time.NewTimer(r.opts.Timeout + grace)
	defer timer.Stop()
collect:
	for got := 0; got < started; got++ {
		select {
		case x := <-ch:
			results[x.i], have[x.i] = x.res, true
		case <-timer.C:
			break collect
		}
	}
	out := results[:0:0]
	for i, s := range r.probes {
		switch {
		case skip[i]:
			continue
		case !have[i]:
			results[i] = api.CheckResult{
				Name: s.probe.Name(), Status: api.CheckFail, ObservedAt: start, Duration: r.opts.Timeout + grace,
				Summary: fmt.Sprintf("no answer within %s", r.opts.Timeout),
			}
		}
		out = append(out, results[i])
	}
	return out
}

// runOne runs one probe under its own timeout. A panicking probe is a
// failed check, never a crashed gate.
func (r *Runner) runOne(p Probe, observed time.Time) (res api.CheckResult) {
	ctx, cancel := context.WithTimeout(context.WithValue(context.Background(), timeoutKey{}, r.opts.Timeout), r.opts.Timeout)
	defer cancel()
	t0 := time.Now()
	defer func() {
		if v := recover(); v != nil {
			stack, _ := json.Marshal(map[string]string{"stack": string(debug.Stack())})
			res = api.CheckResult{Status: api.CheckFail,
				Summary: fmt.Sprintf("the probe crashed: %v", v), Other: stack}
		}
		res.Name = p.Name()
		res.ObservedAt = observed
		res.Duration = time.Since(t0)
		if res.Status == "" {
			res.Status = api.CheckUnknown
		}
		if ctx.Err() != nil && res.Status == api.CheckOK {
			// Answered, but too late to be trusted as healthy.
			res.Status = api.CheckWarn
			res.Summary += fmt.Sprintf(" (took longer than the %s timeout)", r.opts.Timeout)
		}
	}()
	return p.Check(ctx)
}

func copyReport(rep api.Report) api.Report {
	rep.Checks = append([]api.CheckResult(nil), rep.Checks...)
	return rep
}

// NotConfigured is the probe of something gate.toml does not name: its
// result is "unknown" with a summary saying which key to set, never a
// failure.
func NotConfigured(name, key string) Probe {
	return ProbeFunc(name, func(context.Context) api.CheckResult {
		return api.NotConfiguredResult(key)
	})
}
