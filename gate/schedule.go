package gate

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/ckanops/ckanops/api"
)

// Planned maintenance windows. A window lives in the site's mode record
// (Record.Schedule), so it is shared by every gate of the site, survives
// restarts, and changes by compare-and-set with the mode: setting,
// cancelling and starting one are record changes like a mode change.
//
// At its start every gate's scheduler sees it due; each tries the
// compare-and-set from the version that holds it, and exactly one wins:
// that gate switches the site (or starts the runbook) and audits it with
// the actor "schedule". A gate that was down across the start starts the
// window late if it is not over yet, and drops it as missed if it is.
// Nothing ever switches back by itself: past its planned end a
// maintenance is an overrun (status, banner, probe, metric) until an
// operator ends it.

// ScheduleActor is the actor of the changes the scheduler makes.
const ScheduleActor = "schedule"

// defaultScheduleTick is how often the scheduler looks at the record.
const defaultScheduleTick = time.Second

// RunSchedule starts planned windows on time until ctx is done.
func (g *Gate) RunSchedule(ctx context.Context) {
	tick := time.NewTicker(g.opts.ScheduleTick)
	defer tick.Stop()
	for {
		g.scheduleTick(ctx)
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// scheduleTick starts the planned window if it is due, and counts an
// overrun once per record.
func (g *Gate) scheduleTick(ctx context.Context) {
	now := g.clock()
	rec := g.state.current()
	g.metrics.setOverrun(rec, now)
	if rec.Schedule == nil || !rec.Schedule.Due(now) {
		return
	}
	if err := g.startSchedule(ctx); err != nil {
		g.log.Warn("scheduled window not started yet", "err", err.Error())
	}
}

// startSchedule takes the due window off the record by compare-and-set
// and, if this gate won, switches the site (or starts its runbook). It
// reads the store afresh: another gate may have started it already.
func (g *Gate) startSchedule(ctx context.Context) error {
	s, t, runbook, err := g.takeSchedule(ctx)
	if err == nil && runbook {
		g.startScheduledRunbook(ctx, s, t)
	}
	return err
}

// takeSchedule is startSchedule's change of the record, under changeMu:
// it reports the window taken and whether its runbook is to start.
func (g *Gate) takeSchedule(ctx context.Context) (api.Schedule, time.Time, bool, error) {
	g.changeMu.Lock()
	defer g.changeMu.Unlock()
	t := g.clock()
	cur, ok, err := g.opts.Store.Load(ctx)
	if err != nil {
		g.storeState.set(false, t)
		return api.Schedule{}, t, false, fmt.Errorf("%w: %v", errStoreDown, err)
	}
	g.storeState.set(true, t)
	if !ok || cur.Schedule == nil || !cur.Schedule.Due(t) {
		return api.Schedule{}, t, false, nil // started (or cancelled) elsewhere; the sync brings it
	}
	s := *cur.Schedule
	end := s.End()
	next := cur
	next.Version, next.Change, next.Schedule = cur.Version+1, newChangeID(), nil
	entry := AuditEntry{Time: t, Actor: ScheduleActor, From: string(cur.Mode), Version: next.Version, Message: s.Message,
		Reason: plannedBy(s)}
	switch {
	case !t.Before(end):
		entry.Event, entry.To = "schedule-missed", string(cur.Mode)
		entry.Message = fmt.Sprintf("the window %s to %s passed while no gate could start it: nothing was changed", stamp(s.At), stamp(end))
	case cur.maintenance():
		entry.Event, entry.To = "schedule-skipped", string(cur.Mode)
		entry.Message = fmt.Sprintf("the site was already %s (since %s, by %s) when the window began: the mode is left as it is", cur.Mode, stamp(cur.Since), actorOr(cur.Actor))
	case s.Runbook:
		entry.Event, entry.To = "schedule-start", "runbook"
	default:
		until := end
		next.Mode, next.Message, next.Since, next.Until = s.Mode, s.Message, t, &until
		next.Actor, next.Reason = ScheduleActor, plannedBy(s)
		entry.Event, entry.To = "mode", string(s.Mode)
	}
	if err := g.storeRecord(ctx, cur.Version, next, t); err != nil {
		var ce *ConflictError
		if errors.As(err, &ce) {
			return s, t, false, nil // another gate won: it switches, the sync tells us
		}
		return s, t, false, fmt.Errorf("%w: %v", errStoreDown, err)
	}
	_ = g.appendAudit(entry)
	g.state.set(next)
	g.saveLocal(next)
	g.log.Info("scheduled window", "event", entry.Event, "mode", next.Mode, "version", next.Version, "at", stamp(s.At), "for", s.For)
	return s, t, entry.Event == "schedule-start", nil
}

// startScheduledRunbook starts the runbook a window asked for, confirming
// its steps by itself. If it cannot start, the site is put in the
// window's mode anyway (what the window promised), and the reason is
// audited: a failure leaves the site in maintenance, never live by
// surprise.
func (g *Gate) startScheduledRunbook(ctx context.Context, s api.Schedule, t time.Time) {
	left := s.End().Sub(t).Round(time.Minute)
	if left < time.Minute {
		left = time.Minute
	}
	opts := api.RunbookOptions{Mode: s.Mode, Message: s.Message, For: left.String(), Reason: plannedBy(s),
		SkipMigrate: s.SkipMigrate, AutoConfirm: true}
	var err error
	if e := g.runbook.Load(); e == nil {
		err = errors.New("this gate runs no runbook engine: " + g.runbookProblem())
	} else {
		_, err = e.Start(ctx, opts, ScheduleActor)
	}
	if err == nil {
		return
	}
	g.log.Error("the scheduled runbook did not start: putting the site in the window's mode instead", "err", err.Error())
	until := s.End()
	_, merr := g.changeMode(ctx, api.ModeRequest{Mode: s.Mode, Message: s.Message, Until: &until,
		Reason: "the scheduled runbook did not start (" + err.Error() + "); " + plannedBy(s)}, ScheduleActor, "gate")
	if merr != nil {
		g.log.Error("the scheduled window's mode could not be set either", "err", merr.Error())
	}
}

func plannedBy(s api.Schedule) string {
	r := "scheduled window"
	if s.Actor != "" {
		r += ", planned by " + s.Actor
	}
	if s.Reason != "" {
		r += ": " + s.Reason
	}
	return r
}

func stamp(t time.Time) string { return t.UTC().Format(time.RFC3339) }

// serveSchedule answers GET, POST and DELETE /-/ckanops/schedule.
func (g *Gate) serveSchedule(w http.ResponseWriter, r *http.Request) {
	actor, aerr := g.authenticate(r)
	if aerr != nil {
		writeAuthError(w, aerr)
		return
	}
	var (
		st  api.Status
		err error
	)
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		t := g.clock()
		rec := g.state.current()
		writeJSON(w, http.StatusOK, api.ScheduleState{Schedule: rec.Schedule, Version: rec.Version, Overrun: rec.overrun(t)})
		return
	case http.MethodPost:
		var req api.ScheduleRequest
		dec := json.NewDecoder(io.LimitReader(r.Body, maxModeBody))
		dec.DisallowUnknownFields()
		if derr := dec.Decode(&req); derr != nil {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": fmt.Sprintf("bad schedule request body (want JSON {\"at\", \"for\", \"message\", \"mode\", \"announce\", \"runbook\", \"skip_migrate\", \"reason\", \"expect_version\"}): %v: nothing was changed", derr)})
			return
		}
		st, err = g.setSchedule(r.Context(), req, actor, g.clientAddr(r))
	case http.MethodDelete:
		q := r.URL.Query()
		var expect *int64
		if v := q.Get("expect_version"); v != "" {
			n, perr := strconv.ParseInt(v, 10, 64)
			if perr != nil || n < 0 {
				writeJSON(w, http.StatusBadRequest, map[string]string{"error": "expect_version must be a version number: nothing was changed"})
				return
			}
			expect = &n
		}
		st, err = g.cancelSchedule(r.Context(), expect, q.Get("reason"), actor, g.clientAddr(r))
	default:
		w.Header().Set("Allow", "GET, POST, DELETE")
		writeJSON(w, http.StatusMethodNotAllowed, map[string]string{"error": "use GET to read the schedule, POST to set it, DELETE to cancel it"})
		return
	}
	var ce *ConflictError
	switch {
	case errors.As(err, &ce):
		writeJSON(w, http.StatusConflict, map[string]any{"error": ce.Error() + ": nothing was changed", "current": g.recordStatus(ce.Current)})
	case errors.Is(err, errStoreDown):
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": err.Error()})
	case err != nil:
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error() + ": nothing was changed"})
	default:
		writeJSON(w, http.StatusOK, st)
	}
}

// setSchedule plans (or replans) the site's window.
func (g *Gate) setSchedule(ctx context.Context, req api.ScheduleRequest, actor, remote string) (api.Status, error) {
	t := g.clock()
	if err := req.Validate(t); err != nil {
		return api.Status{}, err
	}
	if err := checkText("message", req.Message, maxMessageLen); err != nil {
		return api.Status{}, err
	}
	if err := checkText("reason", req.Reason, maxReasonLen); err != nil {
		return api.Status{}, err
	}
	s := req.Schedule(t)
	s.Actor = actor
	return g.changeRecord(ctx, req.ExpectVersion, actor, remote, func(cur Record) (Record, AuditEntry, bool) {
		next := cur
		next.Schedule = &s
		e := AuditEntry{Event: "schedule", From: windowText(cur.Schedule), To: windowText(&s), Message: s.Message, Reason: s.Reason}
		return next, e, true
	})
}

// cancelSchedule drops the planned window; with none, nothing changes.
func (g *Gate) cancelSchedule(ctx context.Context, expect *int64, reason, actor, remote string) (api.Status, error) {
	if err := checkText("reason", reason, maxReasonLen); err != nil {
		return api.Status{}, err
	}
	return g.changeRecord(ctx, expect, actor, remote, func(cur Record) (Record, AuditEntry, bool) {
		if cur.Schedule == nil {
			return cur, AuditEntry{}, false
		}
		next := cur
		next.Schedule = nil
		return next, AuditEntry{Event: "schedule-cancel", From: windowText(cur.Schedule), To: "none", Message: cur.Schedule.Message, Reason: reason}, true
	})
}

// windowText names a window in the audit log's from and to.
func windowText(s *api.Schedule) string {
	if s == nil {
		return "none"
	}
	kind := string(s.Mode)
	if s.Runbook {
		kind = "runbook (" + kind + ")"
	}
	return fmt.Sprintf("%s at %s for %s", kind, stamp(s.At), s.For)
}

// changeRecord compare-and-sets the record change mutate makes (mode,
// since and until untouched), audits it and enforces it. mutate says
// whether there is anything to change; when not, the answer is the
// status as it is.
func (g *Gate) changeRecord(ctx context.Context, expect *int64, actor, remote string, mutate func(cur Record) (Record, AuditEntry, bool)) (api.Status, error) {
	g.changeMu.Lock()
	defer g.changeMu.Unlock()
	t := g.clock()
	cur, ok, err := g.opts.Store.Load(ctx)
	if err != nil {
		g.storeState.set(false, t)
		return api.Status{}, fmt.Errorf("%w: %v", errStoreDown, err)
	}
	g.storeState.set(true, t)
	if !ok {
		cur = g.state.current()
	}
	if expect != nil && *expect != cur.Version {
		return api.Status{}, &ConflictError{Current: cur}
	}
	next, entry, change := mutate(cur)
	if !change {
		g.log.Info("schedule: nothing to change", "version", cur.Version, "actor", actor, "remote", remote)
		return g.status(ctx, true), nil
	}
	next.Version, next.Change = cur.Version+1, newChangeID()
	from := cur.Version
	if !ok {
		from = 0
	}
	if err := g.storeRecord(ctx, from, next, t); err != nil {
		var ce *ConflictError
		if errors.As(err, &ce) {
			return api.Status{}, err
		}
		return api.Status{}, fmt.Errorf("%w: %v (if the change reached the store after all, the gate applies it when it reads it back)", errStoreDown, err)
	}
	entry.Time, entry.Actor, entry.Version, entry.Remote = t, actor, next.Version, remote
	auditErr := g.appendAudit(entry)
	g.state.set(next)
	g.saveLocal(next)
	g.log.Info("schedule changed", "event", entry.Event, "from", entry.From, "to", entry.To, "version", next.Version, "actor", actor, "remote", remote)
	st := g.status(ctx, true)
	if auditErr != nil {
		st.Audit = "failed: " + auditErr.Error()
	}
	return st, nil
}
