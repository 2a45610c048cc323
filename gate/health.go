package gate

import (
	"context"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/ckanops/ckanops/api"

	"github.com/ckanops/ckanops/checks"
)

// healthProbes holds the site's checks Runner: CKAN (status_show on the
// upstream, never through the gate) and whatever [checks] configures. It
// is built on first use and lives as long as the gate; its rounds are
// cached for [checks] interval, so many consoles cost one round.
type healthProbes struct {
	once   sync.Once
	runner *checks.Runner // ckan, ckan_db, datastore_db, redis, solr, storage
	rq     *checks.Runner // redis alone, uncached: the answer of /-/ckanops/jobs/*
}

func (g *Gate) healthRunners() *healthProbes {
	h := &g.probes
	h.once.Do(func() {
		o := checks.RunnerOptionsFor(g.opts.Site, g.opts.Checks)
		o.Clock = g.clock
		probes, err := checks.Probes(g.opts.Checks, g.opts.Upstream)
		if err != nil {
			g.log.Error("health probes", "err", err.Error())
			probes = []checks.Probe{checks.ProbeFunc("ckan", func(context.Context) api.CheckResult {
				return api.CheckResult{Status: api.CheckFail, Summary: err.Error()}
			})}
		}
		h.runner = checks.NewRunner(o, probes...)
		var rq checks.Probe = checks.NotConfigured("redis", "redis")
		if c := g.opts.Checks; c.Redis != "" {
			rq = checks.NewRedis(c.Redis, c.SiteID, c.RQQueues)
		}
		h.rq = checks.NewRunner(checks.RunnerOptions{Site: g.opts.Site, Timeout: o.Timeout, Clock: g.clock}, rq)
	})
	return h
}

// Health returns the site's checks report: the gate's own probe, always
// current, then the others from the last round while it is younger than
// [checks] interval (fresh: a new round, for a drain). It returns within
// the probes' timeout, whatever they meet.
func (g *Gate) Health(ctx context.Context, fresh bool) api.Report {
	r := g.healthRunners().runner
	var rep api.Report
	if fresh {
		rep = r.Fresh(ctx)
	} else {
		rep = r.Run(ctx)
	}
	rep.Site = g.opts.Site
	rep.Checks = append([]api.CheckResult{g.gateCheck(ctx)}, rep.Checks...)
	return rep
}

// health is what GET /-/ckanops/health serves.
func (g *Gate) health(ctx context.Context) api.Report { return g.Health(ctx, false) }

// gateCheck reads the gate's own state: mode, phase, writes in flight,
// whether its state store answers, and whether its audit log can be
// written (it warns from a failed append until one succeeds).
func (g *Gate) gateCheck(ctx context.Context) api.CheckResult {
	t0 := time.Now()
	t := g.clock()
	st := g.status(ctx, true)
	d := &api.GateDetails{Mode: st.Mode, Phase: st.Phase, Version: st.Version, InFlight: len(st.InFlight),
		GateID: g.opts.GateID, Store: st.Store.Kind, StoreOK: st.Store.OK}
	res := api.CheckResult{
		Name: api.ProbeGate, Status: api.CheckOK, ObservedAt: t, Gate: d,
		Summary: fmt.Sprintf("%s (%s), %d write(s) in flight", st.Mode, st.Phase, len(st.InFlight)),
	}
	if len(st.Gates) > 1 {
		applied, live, lagging := st.Applied()
		d.GatesApplied, d.GatesLive = new(applied), new(live)
		d.GatesLagging = lagging // left out when none lags
	}
	if !st.Store.OK {
		res.Status = api.CheckWarn
		res.Summary += "; state store unreachable, enforcing the last known mode"
	}
	if a := g.opts.Audit.state(); !a.since.IsZero() {
		res.Status = api.CheckWarn
		res.Summary += fmt.Sprintf("; the audit log cannot be written since %s (%d failed append(s) in all), last error: %v",
			a.since.UTC().Format(time.RFC3339), a.failures, a.err)
	}
	if err := g.learned.problem(); err != nil {
		res.Status = api.CheckWarn
		res.Summary += "; learned actions not read: " + err.Error()
	}
	if st.Overrun && st.Until != nil {
		res.Status = api.CheckWarn
		res.Summary += fmt.Sprintf("; overrun: %s past its planned end (%s), still %s; ending it is an operator's call",
			t.Sub(*st.Until).Round(time.Second), st.Until.UTC().Format(time.RFC3339), st.Mode)
	}
	if s := st.Schedule; s != nil && s.Due(t) {
		res.Status = api.CheckWarn
		res.Summary += fmt.Sprintf("; the window planned for %s has not started yet (the state store must answer for it to start)", s.At.UTC().Format(time.RFC3339))
	}
	for _, ts := range st.Triggers {
		switch ts.State {
		case api.TriggerFired, api.TriggerRecovering:
			res.Status = api.CheckWarn
			res.Summary += fmt.Sprintf("; trigger %s holds the site %s (%s, fired on %s)", ts.Name, ts.Mode, ts.When, ts.FiredValue)
		case api.TriggerBlind:
			res.Status = api.CheckWarn
			res.Summary += "; trigger " + ts.Name + " is blind: " + ts.Note
		}
	}
	if w := st.Surface.Warning; w != "" {
		res.Status = api.CheckWarn
		res.Summary += "; " + w
	}
	if why := g.runbookProblem(); why != "" {
		res.Status = api.CheckFail
		res.Summary += "; the runbook is unavailable on this gate: " + why
	}
	res.Duration = time.Since(t0)
	return res
}

var hostnameOnce = sync.OnceValue(func() string {
	h, err := os.Hostname()
	if err != nil || h == "" {
		return "gate"
	}
	return h
})

func hostname() string { return hostnameOnce() }
