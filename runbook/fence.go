package runbook

// The runner acts on the site only while it holds the site's runbook lock
// with a trusted lease. The lease can be lost while a step runs (Redis lost
// the key, gave it to another gate, or could not be reached for most of
// the lease): then the runner's context is cancelled with the loss as its
// cause (a running program's process group is killed, a partial snapshot
// removed), every change to the site through leasedSite is refused, and
// the runbook stops interrupted at its step, with the error "lease lost:
// ...". Resuming it takes the lock again, with a new fence.

import (
	"context"
	"fmt"
	"strconv"

	"github.com/ckanops/ckanops/api"
)

// leasedSite is the Site as the engine uses it: the changes a runbook makes
// to the site (the mode, RQ's suspension) are refused unless the engine
// holds the site's runbook lock with a trusted lease, and carry the
// lease's fence in their reason; the engine's audit entries carry it in
// their message. They are made only once the events emitted so far are on
// disk (never with the engine's mu held).
type leasedSite struct {
	Site
	e *Engine
}

// ready refuses a change to the site without a trusted lease, and
// otherwise waits until what the runbook recorded is on disk; with a
// shared store, also in Redis, so that every gate shows it before the
// site changes (shared.go).
func (s leasedSite) ready() error {
	if err := s.e.leaseErr(); err != nil {
		return err
	}
	s.e.durable()
	return s.e.w.publishErr()
}

func (s leasedSite) SetMode(ctx context.Context, req api.ModeRequest, actor string) (api.Status, error) {
	if err := s.ready(); err != nil {
		return api.Status{}, err
	}
	req.Reason = withFence(req.Reason, s.e.fence.Load())
	return s.Site.SetMode(ctx, req, actor)
}

func (s leasedSite) SuspendJobs(ctx context.Context, actor, reason string) (api.JobsState, error) {
	if err := s.ready(); err != nil {
		return api.JobsState{}, err
	}
	return s.Site.SuspendJobs(ctx, actor, withFence(reason, s.e.fence.Load()))
}

func (s leasedSite) ResumeJobs(ctx context.Context, actor, reason string) (api.JobsState, error) {
	if err := s.ready(); err != nil {
		return api.JobsState{}, err
	}
	return s.Site.ResumeJobs(ctx, actor, withFence(reason, s.e.fence.Load()))
}

// Audit may be called with the engine's mu held: it reads only the fence.
func (s leasedSite) Audit(event, actor, from, to, message, reason string) {
	s.Site.Audit(event, actor, from, to, withFence(message, s.e.fence.Load()), reason)
}

// withFence appends "(fence N)" to an audit text; fence 0 (never
// acquired) adds nothing.
func withFence(s string, fence int64) string {
	if fence == 0 {
		return s
	}
	f := "fence " + strconv.FormatInt(fence, 10)
	if s == "" {
		return f
	}
	return s + " (" + f + ")"
}

// acquireLocked takes the site's runbook lock for the current runbook (the
// same lease again while this engine holds it and the lease is trusted)
// and records the lease's fence in the runbook. Call with mu held.
func (e *Engine) acquireLocked(ctx context.Context) error {
	l, err := e.o.Lock.Acquire(ctx, e.holder(), e.fence.Load())
	if err != nil {
		return err
	}
	e.lease.Store(l)
	e.fence.Store(l.Fence)
	e.rb.Fence = l.Fence
	return nil
}

// leaseErr is nil while this engine holds the site's runbook lock with a
// trusted lease; otherwise it says why not (wrapping ErrLeaseLost).
func (e *Engine) leaseErr() error {
	l := e.lease.Load()
	if l == nil {
		return fmt.Errorf("%w: this gate does not hold the site's runbook lock", ErrLeaseLost)
	}
	return l.Err()
}

// watchLease cancels ctx with the lease's loss as its cause, if it is lost
// before ctx ends.
func watchLease(ctx context.Context, l *Lease, cancel context.CancelCauseFunc) {
	if l == nil {
		cancel(fmt.Errorf("%w: this gate does not hold the site's runbook lock", ErrLeaseLost))
		return
	}
	go func() {
		select {
		case <-l.Lost():
			cancel(l.Err())
		case <-ctx.Done():
		}
	}()
}

// leaseLostLocked stops the runbook at its step, interrupted: its lease
// was lost (err), so another gate may hold the site by now. Call with mu
// held, once the runner has returned.
func (e *Engine) leaseLostLocked(err error, actor string) {
	rb := e.rb
	was := rb.State
	rb.State = api.RunbookInterrupted
	rb.Error = err.Error()
	if step := rb.StepByName(rb.Step); step != nil && (step.State == api.StepRunning || step.State == api.StepWaiting) {
		if step.State == api.StepRunning {
			rb.Waiting = nil // it had been confirmed: a resume runs it again
		}
		step.State = api.StepInterrupted
	}
	msg := fmt.Sprintf("%v: the runbook stopped while step %s was %s, before changing the site again: resume it (which takes the lock again, with a new fence), retry the step, or abort",
		err, rb.Step, was)
	e.emit(api.RunbookEvent{Kind: api.EventInterrupted, Step: rb.Step, State: string(api.StepInterrupted), Message: msg, Fence: rb.Fence})
	e.o.Site.Audit("runbook-interrupted", actor, rb.ID, rb.Step, err.Error(), "")
	e.log.Error("runbook interrupted: lease lost", "runbook", rb.ID, "step", rb.Step, "fence", rb.Fence, "err", err.Error())
}
