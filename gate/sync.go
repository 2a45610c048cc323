package gate

import (
	"context"
	"fmt"
	"time"

	"github.com/ckanops/ckanops/api"
)

// Sync keeps a gate on a shared store in step with the site's other gates
// until ctx is done: it applies a newer record as soon as a change notice
// arrives, re-reads the store every SyncInterval as a safety net,
// heartbeats what it has applied, writes its record back when the store
// has lost it, and while the store is unreachable keeps enforcing the last
// mode it knew, reporting the store as stale. For a store that is not
// shared it only waits for ctx.
func (g *Gate) Sync(ctx context.Context) {
	shared, ok := g.opts.Store.(SharedStore)
	if !ok {
		<-ctx.Done()
		return
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		g.watch(ctx, shared)
	}()
	tick := time.NewTicker(g.opts.SyncInterval)
	defer tick.Stop()
	for {
		g.refresh(ctx, shared)
		g.heartbeat(ctx, shared)
		select {
		case <-ctx.Done():
			<-done
			return
		case <-tick.C:
		}
	}
}

// watch follows change notices, reconnecting with backoff.
func (g *Gate) watch(ctx context.Context, shared SharedStore) {
	backoff := g.opts.SyncInterval / 4
	for ctx.Err() == nil {
		err := shared.Watch(ctx, func() {
			backoff = g.opts.SyncInterval / 4
			g.refresh(ctx, shared) // catch up on what was missed while away
		}, func() { g.refresh(ctx, shared) })
		if ctx.Err() != nil {
			return
		}
		g.log.Debug("change notices interrupted; retrying", "err", err.Error(), "in", backoff.String())
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 8*g.opts.SyncInterval)
	}
}

// refresh reads the store and applies what is newer; it writes back the
// gate's record when the store holds an older one or none.
func (g *Gate) refresh(ctx context.Context, shared SharedStore) {
	rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	rec, ok, err := shared.Load(rctx)
	if err != nil {
		if ctx.Err() == nil {
			g.storeFailed(err)
		}
		return
	}
	g.storeAnswered()
	cur := g.state.current()
	if !ok || rec.Version < cur.Version {
		cur.Format = RecordFormat
		if wrote, err := shared.Restore(rctx, cur); err != nil {
			g.storeFailed(err)
		} else if wrote {
			g.log.Warn("state store had lost the mode record: wrote back the gate's own", "mode", cur.Mode, "version", cur.Version)
		}
		return
	}
	g.apply(rec)
}

// apply enforces rec if it is newer than what the gate has: a gate never
// goes back to an older version.
func (g *Gate) apply(rec Record) {
	g.changeMu.Lock()
	defer g.changeMu.Unlock()
	cur := g.state.current()
	if rec.Version <= cur.Version {
		return
	}
	g.auditPending(rec)
	g.state.set(rec)
	g.saveLocal(rec)
	g.log.Info("mode applied from the shared store", "from", cur.Mode, "to", rec.Mode, "version", rec.Version, "actor", rec.Actor)
	if s := cur.Schedule; s != nil && rec.Schedule == nil && rec.Format < RecordFormat && g.clock().Before(s.End()) {
		// An older gate wrote the record and dropped the window it does
		// not know of: put it back (not under changeMu, held here).
		g.log.Warn("a gate older than this one wrote the mode record and dropped the planned maintenance window: putting it back (upgrade every gate of the site)",
			"version", rec.Version, "actor", rec.Actor, "window_at", s.At)
		go g.restoreSchedule(*s, rec.Version)
	}
}

// restoreSchedule puts window s back into the record, if the record is
// still version at and holds no window (apply).
func (g *Gate) restoreSchedule(s api.Schedule, at int64) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := g.changeRecord(ctx, &at, ScheduleActor, "gate", func(cur Record) (Record, AuditEntry, bool) {
		if cur.Schedule != nil || !g.clock().Before(s.End()) {
			return cur, AuditEntry{}, false
		}
		next := cur
		next.Schedule = &s
		return next, AuditEntry{Event: "schedule-restored", To: string(cur.Mode),
			Message: fmt.Sprintf("the window at %s was dropped by a gate that does not know maintenance windows (version %d, by %s): put back", stamp(s.At), cur.Version, actorOr(cur.Actor))}, true
	})
	if err != nil {
		g.log.Warn("the dropped maintenance window could not be put back", "err", err.Error())
	}
}

// saveLocal keeps the gate's last known record on local disk, so that a
// gate started while the shared store is down comes up in it.
func (g *Gate) saveLocal(rec Record) {
	if g.opts.Local == nil {
		return
	}
	if err := g.opts.Local.Write(rec); err != nil {
		g.log.Error("cannot save the last known mode locally", "err", err.Error())
	}
}

func (g *Gate) heartbeat(ctx context.Context, shared SharedStore) {
	rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	v := g.state.view(g.clock())
	err := shared.Heartbeat(rctx, api.GateInfo{
		ID: g.opts.GateID, Version: v.rec.Version, Phase: v.phase, InFlight: len(v.writes), Seen: g.clock(),
	})
	if err != nil && ctx.Err() == nil {
		g.storeFailed(err)
	}
}

func (g *Gate) storeFailed(err error) {
	if ok, _ := g.storeState.get(); ok {
		g.log.Error("state store unreachable: enforcing the last known mode", "store", g.opts.Store.Kind(), "mode", g.state.current().Mode, "err", err.Error())
	}
	g.storeState.set(false, g.clock())
}

func (g *Gate) storeAnswered() {
	if ok, since := g.storeState.get(); !ok {
		g.log.Info("state store reachable again", "store", g.opts.Store.Kind(), "stale_for", g.clock().Sub(since).Round(time.Second).String())
	}
	g.storeState.set(true, g.clock())
}

// gates returns every gate of the site, marking those whose heartbeat is
// older than the TTL as gone. Without a shared store it is this gate.
func (g *Gate) gates(ctx context.Context, self api.GateInfo) []api.GateInfo {
	shared, ok := g.opts.Store.(SharedStore)
	if !ok {
		return []api.GateInfo{self}
	}
	rctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	all, err := shared.Gates(rctx)
	if err != nil {
		return []api.GateInfo{self}
	}
	t := g.clock()
	found := false
	for i := range all {
		if all[i].ID == self.ID {
			all[i], found = self, true
			continue
		}
		all[i].Gone = t.Sub(all[i].Seen) > g.opts.HeartbeatTTL
	}
	if !found {
		all = append(all, self)
	}
	return all
}
