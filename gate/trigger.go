package gate

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/ckanops/ckanops/api"
	"github.com/ckanops/ckanops/config"
)

// Triggers: gate.toml's [[trigger]], opt-in automatic maintenance from the
// health probes. Every probe round each trigger compares its detail; when
// the comparison has held for "for", the gate that leads the site's
// triggers (the only one, with Redis: a lease) changes the mode by the
// same compare-and-set as any change, with the actor trigger:NAME and
// the value it saw. Once clear for "recover" it puts the site back to live,
// but only while the record is still the one it wrote.
//
// The rules that keep a trigger from fighting people:
//   - it acts only on a live site: a maintenance set by a person or a
//     schedule is never overridden, and never undone;
//   - a change by anyone else while it holds the mode takes over: the
//     trigger stands down until its condition clears;
//   - a detail it cannot read (the probe failed, a replica that has
//     replayed nothing) never fires it, nor counts as clear;
//   - it switches at most once per triggerMinGap, waits "for" before
//     acting and "recover" before returning, and does not return the site
//     to live while another trigger's condition holds.

// triggerMinGap bounds the automatic switches of one trigger.
const triggerMinGap = 5 * time.Minute

// TriggerLease is the site-wide leadership of the triggers: only its
// holder acts. Acquire takes or renews it and reports whether this gate
// holds it; its error means it is not known.
type TriggerLease interface {
	Acquire(ctx context.Context) (bool, error)
	Release(ctx context.Context)
	Holder(ctx context.Context) string
}

// triggers holds each trigger's state on this gate.
type triggers struct {
	mu     sync.Mutex
	rules  []config.Trigger
	st     map[string]*triggerState
	leader bool
	round  time.Time // when the last round was evaluated
}

type triggerState struct {
	state        string
	since        time.Time
	value        string
	firedAt      time.Time
	firedValue   string
	lastSwitch   time.Time
	note         string
	holds, known bool
}

func newTriggers(rules []config.Trigger) *triggers {
	t := &triggers{rules: rules, st: map[string]*triggerState{}}
	for _, r := range rules {
		t.st[r.Name] = &triggerState{state: api.TriggerArmed}
	}
	return t
}

// RunTriggers evaluates the triggers every probe round until ctx is done.
// Without triggers it returns at once.
func (g *Gate) RunTriggers(ctx context.Context) {
	if len(g.trig.rules) == 0 {
		return
	}
	tick := time.NewTicker(g.opts.TriggerTick)
	defer tick.Stop()
	defer func() {
		if g.opts.TriggerLease != nil {
			rctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			g.opts.TriggerLease.Release(rctx)
			cancel()
		}
	}()
	for {
		g.triggerRound(ctx)
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// triggerRound reads a probe round and moves every trigger on.
func (g *Gate) triggerRound(ctx context.Context) {
	rep := g.healthRunners().runner.Run(ctx)
	if ctx.Err() != nil {
		return
	}
	leader := true
	note := ""
	if l := g.opts.TriggerLease; l != nil {
		ok, err := l.Acquire(ctx)
		leader = err == nil && ok
		switch {
		case err != nil:
			note = "the leader lease cannot be read (" + err.Error() + "): no gate acts until it can"
		case !ok:
			note = "gate " + l.Holder(ctx) + " leads the triggers: it acts, this gate observes"
		}
	}
	now := g.clock()
	results := map[string]api.CheckResult{}
	for _, r := range rep.Checks {
		results[r.Name] = r
	}
	t := g.trig
	t.mu.Lock()
	t.leader, t.round = leader, now
	for _, r := range t.rules {
		s := t.st[r.Name]
		res, ok := results[r.Check]
		s.holds, s.known, s.value = false, false, ""
		if ok {
			s.holds, s.known, s.value = r.Cond.Eval(res)
		}
		s.note = note
		if !s.known {
			why := "the probe does not report " + r.Cond.Key
			if ok && res.Summary != "" {
				why += " (" + res.Summary + ")"
			}
			s.note = why + ": the trigger leaves the mode alone"
		}
	}
	// Decide with the lock released: a switch goes through the store.
	type act struct {
		rule config.Trigger
		to   api.Mode
		rec  Record
		why  string
	}
	var acts []act
	rec := g.state.current()
	for _, r := range t.rules {
		s := t.st[r.Name]
		actor := api.TriggerActor(r.Name)
		held := rec.Actor == actor && rec.maintenance()
		if rec.Actor == actor && rec.Since.After(s.lastSwitch) {
			s.lastSwitch = rec.Since // a switch of this trigger's, maybe by another gate
		}
		if held && s.firedAt.IsZero() {
			s.firedAt = rec.Since
			s.firedValue = firedValueOf(rec.Reason)
		}
		gap := now.Sub(s.lastSwitch)
		switch {
		case s.state == api.TriggerFired || s.state == api.TriggerRecovering:
			if !held {
				s.set(api.TriggerStood, now)
				s.note = fmt.Sprintf("%s changed the mode since the trigger set it: it no longer manages it", actorOr(rec.Actor))
				continue
			}
		case held: // fired elsewhere (another gate, or before a restart)
			s.set(api.TriggerFired, s.firedAt)
		}
		switch {
		case !s.known:
			if s.state != api.TriggerFired && s.state != api.TriggerRecovering && s.state != api.TriggerStood {
				s.set(api.TriggerBlind, now)
			} else if s.state == api.TriggerRecovering {
				s.set(api.TriggerFired, s.firedAt) // not seen clear: start over
			}
		case s.holds && held:
			s.set(api.TriggerFired, s.firedAt)
		case s.holds && s.state == api.TriggerStood:
			// stays stood down until the condition clears
		case s.holds:
			s.set(api.TriggerPending, now)
			if now.Sub(s.since) < r.For.Duration {
				continue
			}
			switch {
			case rec.maintenance():
				s.note = fmt.Sprintf("the site is %s (set by %s): the trigger leaves it alone", rec.Mode, actorOr(rec.Actor))
			case gap < triggerMinGap:
				s.note = fmt.Sprintf("held for %s, but the trigger switched %s ago: at most one switch per %s", round(now.Sub(s.since)), round(gap), triggerMinGap)
			case leader:
				acts = append(acts, act{r, r.Mode, rec, fmt.Sprintf("%s = %s %s %s on %s for %s", r.Cond.Key, s.value, r.Cond.Op, r.Cond.Literal(), r.Check, round(now.Sub(s.since)))})
			}
		case held: // clear, while the trigger holds the mode
			s.set(api.TriggerRecovering, now)
			if r.Recover.Duration <= 0 {
				s.note = "clear now; the trigger has no recover: an operator ends the maintenance"
				continue
			}
			if now.Sub(s.since) < r.Recover.Duration {
				continue
			}
			if other := g.otherHolding(r.Name); other != "" {
				s.note = "clear, but trigger " + other + "'s condition holds: the site stays in maintenance"
				continue
			}
			switch {
			case gap < triggerMinGap:
				s.note = fmt.Sprintf("clear for %s, but the trigger switched %s ago: at most one switch per %s", round(now.Sub(s.since)), round(gap), triggerMinGap)
			case leader:
				acts = append(acts, act{r, api.ModeLive, rec, fmt.Sprintf("%s = %s, clear on %s for %s", r.Cond.Key, s.value, r.Check, round(now.Sub(s.since)))})
			}
		default:
			s.set(api.TriggerArmed, now)
		}
	}
	t.mu.Unlock()
	for _, a := range acts {
		g.triggerSwitch(ctx, a.rule, a.to, a.rec, a.why, now)
	}
}

// otherHolding names another trigger whose condition holds, or "".
// t.mu is held.
func (g *Gate) otherHolding(name string) string {
	for _, r := range g.trig.rules {
		if s := g.trig.st[r.Name]; r.Name != name && s.known && s.holds {
			return r.Name
		}
	}
	return ""
}

// triggerSwitch changes the mode for a trigger, by compare-and-set on the
// record it judged: if anyone changed it meanwhile, nothing happens.
func (g *Gate) triggerSwitch(ctx context.Context, r config.Trigger, to api.Mode, rec Record, why string, now time.Time) {
	v := rec.Version
	req := api.ModeRequest{Mode: to, Reason: why, ExpectVersion: &v}
	if to != api.ModeLive {
		req.Message = r.Message
	}
	actor := api.TriggerActor(r.Name)
	_, err := g.changeMode(ctx, req, actor, "gate")
	t := g.trig
	t.mu.Lock()
	defer t.mu.Unlock()
	s := t.st[r.Name]
	var ce *ConflictError
	switch {
	case errors.As(err, &ce):
		s.note = "the mode changed while the trigger acted: it looks again next round"
		return
	case err != nil:
		s.note = "the switch failed: " + err.Error()
		g.log.Error("trigger could not switch the mode", "trigger", r.Name, "to", to, "err", err.Error())
		return
	}
	s.lastSwitch = now
	if to == api.ModeLive {
		s.set(api.TriggerArmed, now)
		s.firedAt, s.firedValue = time.Time{}, ""
		g.metrics.triggerSwitch(r.Name, "live")
	} else {
		s.set(api.TriggerFired, now)
		s.firedAt, s.firedValue = now, s.value
		g.metrics.triggerSwitch(r.Name, "maintenance")
	}
	s.note = ""
	g.log.Warn("trigger switched the mode", "trigger", r.Name, "to", to, "why", why)
}

// set moves to state, keeping since while the state stays.
func (s *triggerState) set(state string, since time.Time) {
	if s.state != state {
		s.state, s.since = state, since
	}
}

func round(d time.Duration) string { return d.Round(time.Second).String() }

// firedValueOf reads the value out of a trigger's reason ("KEY = V ...").
func firedValueOf(reason string) string {
	_, rest, ok := strings.Cut(reason, " = ")
	if !ok {
		return ""
	}
	v, _, _ := strings.Cut(rest, " ")
	return strings.TrimSuffix(v, ",")
}

// triggerStates is Status.Triggers.
func (g *Gate) triggerStates() []api.TriggerState {
	t := g.trig
	if len(t.rules) == 0 {
		return nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]api.TriggerState, 0, len(t.rules))
	for _, r := range t.rules {
		s := t.st[r.Name]
		ts := api.TriggerState{Name: r.Name, Check: r.Check, When: r.Cond.String(), Mode: r.Mode, State: s.state, For: r.For.String(),
			Value: s.value, FiredValue: s.firedValue, Note: s.note, Leader: t.leader}
		if r.Recover.Duration > 0 {
			ts.Recover = r.Recover.String()
		}
		if !s.since.IsZero() {
			since := s.since
			ts.Since = &since
		}
		if !s.firedAt.IsZero() {
			at := s.firedAt
			ts.FiredAt = &at
		}
		out = append(out, ts)
	}
	return out
}

// triggerCollector exports each trigger's state and last value.
type triggerCollector struct {
	g            *Gate
	state, value *prometheus.Desc
}

func (c triggerCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.state; ch <- c.value }

func (c triggerCollector) Collect(ch chan<- prometheus.Metric) {
	for _, ts := range c.g.triggerStates() {
		for _, st := range []string{api.TriggerArmed, api.TriggerPending, api.TriggerFired, api.TriggerRecovering, api.TriggerBlind, api.TriggerStood} {
			ch <- prometheus.MustNewConstMetric(c.state, prometheus.GaugeValue, b2f(ts.State == st), ts.Name, st)
		}
		if v, ok := triggerMetricValue(ts.Value); ok {
			ch <- prometheus.MustNewConstMetric(c.value, prometheus.GaugeValue, v, ts.Name)
		}
	}
}

func triggerMetricValue(s string) (float64, bool) {
	switch s {
	case "":
		return 0, false
	case "true":
		return 1, true
	case "false":
		return 0, true
	}
	var v float64
	_, err := fmt.Sscan(s, &v)
	return v, err == nil
}

// RedisTriggerLease is the triggers' leader lease in Redis:
// ckanops:<site>:triggers:leader holds the leading gate's ID with a TTL
// that the leader renews every round.
type RedisTriggerLease struct {
	rdb redis.UniversalClient
	key string
	id  string
	ttl time.Duration
}

// NewRedisTriggerLease returns the lease for site, held as id for ttl.
func NewRedisTriggerLease(rdb redis.UniversalClient, site, id string, ttl time.Duration) *RedisTriggerLease {
	return &RedisTriggerLease{rdb: rdb, key: "ckanops:" + site + ":triggers:leader", id: id, ttl: ttl}
}

var renewLease = redis.NewScript(`
if redis.call("GET", KEYS[1]) == ARGV[1] then
  redis.call("PEXPIRE", KEYS[1], ARGV[2])
  return 1
end
return redis.call("SET", KEYS[1], ARGV[1], "NX", "PX", ARGV[2]) and 1 or 0
`)

func (l *RedisTriggerLease) Acquire(ctx context.Context) (bool, error) {
	n, err := renewLease.Run(ctx, l.rdb, []string{l.key}, l.id, l.ttl.Milliseconds()).Int()
	return n == 1, err
}

var releaseLease = redis.NewScript(`
if redis.call("GET", KEYS[1]) == ARGV[1] then return redis.call("DEL", KEYS[1]) end
return 0
`)

func (l *RedisTriggerLease) Release(ctx context.Context) {
	_ = releaseLease.Run(ctx, l.rdb, []string{l.key}, l.id).Err()
}

func (l *RedisTriggerLease) Holder(ctx context.Context) string {
	h, err := l.rdb.Get(ctx, l.key).Result()
	if err != nil {
		return "(unknown)"
	}
	return h
}
