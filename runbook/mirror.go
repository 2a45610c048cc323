package runbook

// How an engine with a shared store (shared.go) keeps up with the site's
// runbook when another gate runs it, sends operator actions there, and
// takes the runbook over when its holder is gone.

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/ckanops/ckanops/api"
)

// Timings of the shared store's loops.
var (
	followBlock  = 2 * time.Second  // how long one read of the stream waits
	followRetry  = time.Second      // the pause after Redis failed
	inboxBlock   = time.Second      // how long one wait for an action lasts
	forwardWait  = 15 * time.Second // how long a forwarded action is waited for
	refreshLimit = time.Second      // how long Current waits for Redis
)

// writing says whether this engine writes the runbook: it holds the lock
// with a trusted lease, or its runner has not yet ended. Call with mu held.
func (e *Engine) writing() bool {
	return e.runner != nil || e.leaseErr() == nil
}

// applyRecordLocked makes rec the runbook shown, when this engine does not
// write it and rec is newer (or another runbook). force applies it even
// so (a fenced writer giving way). Call with mu held.
func (e *Engine) applyRecordLocked(rec *api.Runbook, force bool) {
	if rec == nil || (!force && e.writing()) {
		return
	}
	if !force && e.rb != nil && rec.ID == e.rb.ID && rec.Seq <= e.rb.Seq {
		return
	}
	if e.rb == nil || rec.ID != e.rb.ID {
		e.events = nil
	}
	e.rb = rec
	e.fence.Store(rec.Fence)
	e.notifyLocked()
}

// applyEventsLocked adds the events of the runbook shown that this engine
// has not seen. Call with mu held.
func (e *Engine) applyEventsLocked(evs []api.RunbookEvent) {
	added := false
	for _, ev := range evs {
		if ev.Seq <= e.seq {
			continue
		}
		e.seq = ev.Seq
		e.shown = max(e.shown, ev.Seq)
		if e.rb == nil || ev.Runbook != e.rb.ID {
			continue
		}
		if !streamed(ev.Kind) || len(e.events) < maxEvents {
			e.events = append(e.events, ev)
			added = true
		}
	}
	if added {
		e.notifyLocked()
	}
}

// refresh reads the record from Redis into the engine, if another gate
// writes it. Errors leave the engine as it was (the mirror catches up).
func (e *Engine) refresh(ctx context.Context) {
	e.mu.Lock()
	w := e.writing()
	e.mu.Unlock()
	if e.o.Shared == nil || w {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, refreshLimit)
	defer cancel()
	rec, _, err := e.o.Shared.record(ctx)
	if err != nil {
		return
	}
	e.mu.Lock()
	e.applyRecordLocked(rec, false)
	e.mu.Unlock()
}

// reloadLocked replaces the engine's runbook with Redis's, events
// included, and moves seq past everything Redis holds. Call with mu held
// (it is called right after the lock is taken: nobody else writes).
func (e *Engine) reloadLocked(ctx context.Context) error {
	rec, last, err := e.o.Shared.record(ctx)
	if err != nil {
		return fmt.Errorf("runbook: read the site's runbook from Redis: %w", err)
	}
	e.seq = max(e.seq, last)
	if rec == nil {
		return nil // Redis lost it (or never had it): the engine's own stands
	}
	evs, err := e.o.Shared.events(ctx, rec.ID)
	if err != nil {
		return fmt.Errorf("runbook: read the site's runbook events from Redis: %w", err)
	}
	fence := int64(0)
	if e.rb != nil {
		fence = e.rb.Fence
	}
	e.rb = rec
	e.events = evs
	e.seq = max(e.seq, rec.Seq)
	e.shown = max(e.shown, e.seq)
	if l := e.lease.Load(); l != nil && l.Err() == nil {
		fence = l.Fence
	}
	if fence > rec.Fence {
		e.rb.Fence = fence
	}
	e.fence.Store(e.rb.Fence)
	e.notifyLocked()
	return nil
}

// onFenced is called by the writer when Redis refused its events: another
// gate took the lock. The engine shows Redis's runbook again.
func (e *Engine) onFenced(err error) {
	e.resync.Store(true)
	e.log.Warn("this gate's runbook events were refused by Redis: it shows the site's runbook as Redis holds it", "err", err.Error())
}

// follow mirrors the site's runbook from Redis until the engine closes,
// and takes it over when it is running without a holder.
func (e *Engine) follow(ctx context.Context, after int64) {
	defer e.loops.Done()
	failing := false
	for ctx.Err() == nil {
		if e.resync.Swap(false) {
			e.mu.Lock()
			if !e.writing() {
				rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
				if err := e.reloadLocked(rctx); err != nil {
					e.resync.Store(true)
				}
				cancel()
				after = e.seq
			}
			e.mu.Unlock()
		}
		evs, err := e.o.Shared.read(ctx, after, followBlock)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			if !failing {
				e.log.Warn("runbook: cannot read the site's runbook events from Redis; this gate shows its last copy", "err", err.Error())
			}
			failing = true
			sleepCtx(ctx, followRetry)
			continue
		}
		if failing {
			e.log.Info("runbook: reading the site's runbook events from Redis again")
			failing = false
		}
		if len(evs) > 0 {
			after = evs[len(evs)-1].Seq
			if needsRecord(evs) {
				e.refresh(ctx)
			}
			e.mu.Lock()
			e.applyEventsLocked(evs)
			e.mu.Unlock()
			continue
		}
		e.refresh(ctx)
		e.adoptOrphan(ctx)
	}
}

// needsRecord says whether the events change the record (any but program
// output and progress).
func needsRecord(evs []api.RunbookEvent) bool {
	for _, ev := range evs {
		if !streamed(ev.Kind) {
			return true
		}
	}
	return false
}

func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// adoptOrphan takes over a runbook that shows running or waiting while
// no gate holds the lock (its gate died): it becomes interrupted, held by
// this gate, which any gate can then resume.
func (e *Engine) adoptOrphan(ctx context.Context) {
	e.mu.Lock()
	orphan := e.rb != nil && !e.writing() && !e.stopping &&
		(e.rb.State == api.RunbookRunning || e.rb.State == api.RunbookWaiting)
	e.mu.Unlock()
	if !orphan {
		return
	}
	hctx, cancel := context.WithTimeout(ctx, refreshLimit)
	h, err := e.o.Shared.holder(hctx)
	cancel()
	if err != nil || h != "" {
		return
	}
	if err := e.takeOver(ctx); err != nil {
		var le *ErrLocked
		if !errors.As(err, &le) {
			e.log.Warn("runbook: cannot take over the runbook its gate left", "err", err.Error())
		}
		return
	}
	e.durable()
}

// takeOver takes the site's runbook lock for this gate and the runbook as
// Redis holds it; a step its dead holder left running or waiting becomes
// interrupted. It fails with *ErrLocked when another gate holds the lock.
func (e *Engine) takeOver(ctx context.Context) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.stopping {
		return conflict("the gate is stopping")
	}
	if e.writing() {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	rec, _, err := e.o.Shared.record(ctx)
	if err != nil {
		return fmt.Errorf("runbook: read the site's runbook from Redis: %w", err)
	}
	if rec == nil && e.rb == nil {
		return nil // nothing to take over
	}
	if rec != nil {
		e.applyRecordLocked(rec, true)
	}
	if err := e.acquireLocked(ctx); err != nil {
		return err
	}
	// Nobody else writes now: Redis's copy is final.
	if err := e.reloadLocked(ctx); err != nil {
		_ = e.o.Lock.Release(context.Background())
		return err
	}
	if l := e.lease.Load(); l != nil {
		e.rb.Fence = l.Fence
		e.fence.Store(l.Fence)
	}
	if e.rb.State == api.RunbookRunning || e.rb.State == api.RunbookWaiting {
		e.interrupted()
		e.o.Site.Audit("runbook-interrupted", "gate", e.rb.ID, e.rb.Step, "taken over by "+e.o.Holder+": the gate that ran it stopped", "")
	}
	e.log.Info("runbook taken over", "runbook", e.rb.ID, "state", e.rb.State, "fence", e.rb.Fence)
	return nil
}

// route decides where an operator action runs. done is false when it runs
// here: there is no shared store, this gate holds the runbook, or nobody
// holds the runbook and this gate took it over. Otherwise the action is sent to the gate holding the lock, and
// its answer returned.
func (e *Engine) route(ctx context.Context, op string, a api.RunbookAction, actor string) (rb *api.Runbook, err error, done bool) {
	if e.o.Shared == nil {
		return nil, nil, false
	}
	e.mu.Lock()
	w := e.writing()
	e.mu.Unlock()
	if w {
		return nil, nil, false
	}
	wait := e.leaseTerm() + forwardWait // a dead holder's lease runs out, and the action runs elsewhere
	if op == opAbort {
		wait += abortTimeout
	}
	deadline := time.Now().Add(wait)
	var r reply
	for {
		h, err := e.holderOrTakeOver(ctx)
		if err != nil {
			return nil, err, true
		}
		if h == "" {
			return nil, nil, false // taken over: it runs here
		}
		var answered bool
		r, answered, err = e.forward(ctx, h, action{Op: op, Action: a, Actor: actor, Deadline: deadline})
		if err != nil {
			return nil, err, true
		}
		if answered {
			break
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("the gate running the runbook (%s) did not answer within %s, and its lease did not end: nothing was done; ask again",
				holderGate(h), wait), true
		}
		// The holder changed before taking the action: ask again.
	}
	if r.Runbook != nil {
		e.mu.Lock()
		e.applyRecordLocked(r.Runbook, false)
		e.mu.Unlock()
	}
	switch r.Status {
	case http.StatusOK:
		return r.Runbook, nil, true
	case http.StatusNotFound:
		return nil, ErrNoRunbook, true
	case http.StatusBadRequest:
		return nil, &badRequest{r.Error}, true
	case http.StatusConflict:
		return nil, conflict("%s", r.Error), true
	}
	return r.Runbook, errors.New(r.Error), true
}

// holderOrTakeOver names the gate holding the site's runbook lock, or
// takes the runbook over when nobody holds it ("": this gate holds it).
func (e *Engine) holderOrTakeOver(ctx context.Context) (string, error) {
	hctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	h, err := e.o.Shared.holder(hctx)
	cancel()
	if err != nil {
		return "", fmt.Errorf("runbook: the site's runbook is in Redis, which did not answer (nothing was done): %w", err)
	}
	if h != "" {
		return h, nil
	}
	err = e.takeOver(ctx)
	var le *ErrLocked
	switch {
	case err == nil:
		return "", nil
	case errors.As(err, &le) && le.Holder != "":
		return le.Holder, nil // taken meanwhile: send it there
	}
	return "", err
}

// forward sends an action to holder h and waits for the answer until
// a.Deadline. answered is false when the lock changed hands before any
// gate took the action, which is then taken back.
func (e *Engine) forward(ctx context.Context, h string, a action) (r reply, answered bool, err error) {
	msg, err := e.o.Shared.push(ctx, &a)
	if err != nil {
		return reply{}, false, fmt.Errorf("runbook: cannot reach the gate running the runbook through Redis (nothing was done): %w", err)
	}
	for {
		left := time.Until(a.Deadline)
		r, ok, err := e.o.Shared.awaitReply(ctx, a.ID, min(max(left, 10*time.Millisecond), time.Second))
		if err != nil {
			return reply{}, false, fmt.Errorf("runbook: waiting for the gate running the runbook through Redis: %w", err)
		}
		if ok {
			return r, true, nil
		}
		cur, herr := e.o.Shared.holder(ctx)
		if left <= 0 || (herr == nil && cur != h) {
			taken, rerr := e.o.Shared.retract(context.WithoutCancel(ctx), msg)
			if rerr == nil && taken {
				return reply{}, false, nil
			}
			if left <= 0 {
				return reply{}, false, nil
			}
			// Taken by a gate: its answer comes.
		}
	}
}

// holderGate is the gate part of a lock holder ("<gate id> runbook <id>").
func holderGate(h string) string {
	g, _, _ := strings.Cut(h, " runbook ")
	return g
}

// leaseTerm is how long a dead holder's lease may last.
func (e *Engine) leaseTerm() time.Duration {
	if rl, ok := e.o.Lock.(*RedisLock); ok {
		return rl.lease
	}
	return 30 * time.Second
}

// Operator actions, as forwarded.
const (
	opConfirm     = "confirm"
	opRetry       = "retry"
	opResume      = "resume"
	opSkip        = "skip"
	opAbort       = "abort"
	opGateStopped = "gate-stopped"
)

// serveInbox answers the actions other gates send while this gate holds
// the runbook, until the engine closes.
func (e *Engine) serveInbox(ctx context.Context) {
	defer e.loops.Done()
	for ctx.Err() == nil {
		e.mu.Lock()
		w := e.writing()
		e.mu.Unlock()
		if !w {
			sleepCtx(ctx, inboxBlock/2)
			continue
		}
		a, err := e.o.Shared.receive(ctx, inboxBlock)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			sleepCtx(ctx, followRetry)
			continue
		}
		if a == nil {
			continue
		}
		if time.Now().After(a.Deadline) {
			e.log.Warn("runbook: an action from another gate came too late and was dropped", "op", a.Op, "actor", a.Actor)
			continue
		}
		e.loops.Add(1)
		go func() {
			defer e.loops.Done()
			rb, err := e.do(ctx, a.Op, a.Action, a.Actor) // here, never sent on
			r := reply{Status: http.StatusOK, Runbook: rb}
			if err != nil {
				r.Status, r.Error = errorStatus(err), strings.TrimPrefix(err.Error(), ErrConflict.Error()+": ")
				if r.Runbook == nil {
					r.Runbook, _ = e.Current()
				}
			}
			actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			if err := e.o.Shared.answer(actx, a.ID, r); err != nil {
				e.log.Warn("runbook: the answer to another gate's action was not sent", "op", a.Op, "err", err.Error())
			}
		}()
	}
}

// do runs an operator action.
func (e *Engine) do(ctx context.Context, op string, a api.RunbookAction, actor string) (*api.Runbook, error) {
	switch op {
	case opConfirm:
		return e.confirm(ctx, a, actor)
	case opRetry:
		return e.restart(ctx, a, actor, true)
	case opResume:
		return e.restart(ctx, a, actor, false)
	case opSkip:
		return e.skip(ctx, a, actor)
	case opAbort:
		return e.abort(ctx, a, actor)
	case opGateStopped:
		return e.ackGateStopped(ctx, a, actor)
	}
	return nil, &badRequest{fmt.Sprintf("no runbook action %q", op)}
}

// errorStatus is the HTTP status of an engine error.
func errorStatus(err error) int {
	var br *badRequest
	switch {
	case errors.Is(err, ErrNoRunbook):
		return http.StatusNotFound
	case errors.As(err, &br):
		return http.StatusBadRequest
	case errors.Is(err, ErrConflict):
		return http.StatusConflict
	}
	return http.StatusInternalServerError
}
