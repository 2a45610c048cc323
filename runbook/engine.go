package runbook

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ckanops/ckanops/api"

	"github.com/ckanops/ckanops/ckanclient"
	"github.com/ckanops/ckanops/config"
)

// Site is what the engine needs from the gate it runs on. Every change it
// makes to the site goes through here, audited by the gate.
type Site interface {
	// Name is the site's name (gate.toml's site).
	Name() string
	// SetMode changes the mode as POST /-/ckanops/mode does.
	SetMode(ctx context.Context, req api.ModeRequest, actor string) (api.Status, error)
	// Status is the full status record: in-flight writes, every gate, the store.
	Status(ctx context.Context) api.Status
	// Health runs the checks; fresh skips the cache.
	Health(ctx context.Context, fresh bool) api.Report
	// SuspendJobs and ResumeJobs change RQ's suspension. They return
	// ErrNotConfigured when the gate has no Redis for RQ.
	SuspendJobs(ctx context.Context, actor, reason string) (api.JobsState, error)
	ResumeJobs(ctx context.Context, actor, reason string) (api.JobsState, error)
	// CKAN is a client for CKAN's Action API through the gate itself.
	CKAN() *ckanclient.Client
	// Audit appends to the gate's audit log.
	Audit(event, actor, from, to, message, reason string)
}

// DrainProber is a Site that can probe, fresh, only what the drain waits
// on (Redis and the databases). The drain polls through it when the Site
// has it, and through Health otherwise.
type DrainProber interface {
	DrainHealth(ctx context.Context) api.Report
}

// ErrNotConfigured is returned by Site.SuspendJobs and ResumeJobs when RQ is
// not configured.
var ErrNotConfigured = errors.New("not configured")

// Options configure an Engine.
type Options struct {
	Site       Site
	JournalDir string
	Lock       Lock   // default: a FileLock in JournalDir
	Holder     string // names this gate in the lock; default the site's name
	// Shared, if set, keeps the runbook in Redis for every gate of the
	// site (shared.go); Lock should then be the RedisLock of the same
	// Redis.
	Shared *Shared

	Snapshot config.SnapshotConfig
	Checks   config.ChecksConfig // the databases and storage the snapshot covers
	Migrate  []config.Command
	Verify   []config.Command
	// AB is gate.toml's [ab]: B's targets, its gate and the public URL,
	// for a runbook started with ab (ab.go). Zero: such a runbook is
	// refused.
	AB          config.ABConfig
	ExpectCKAN  string        // the CKAN version verify expects; empty: any
	Drain       time.Duration // how long the drain may wait; default 10m
	Poll        time.Duration // how often the drain looks; default 500ms
	StatsSettle time.Duration // passed to the snapshot; 0: its default

	// OnOutput, if set, is called with each line of a step's output (the
	// snapshot's progress, the commands' output) before it is journaled,
	// synchronously: it must be quick and must not call the Engine.
	OnOutput func(step, line string)

	Logger *slog.Logger
	Clock  func() time.Time
}

// Errors of the API, mapped to HTTP statuses by the handler.
var (
	ErrNoRunbook = errors.New("no runbook has run on this site")
	ErrConflict  = errors.New("conflict")
)

// conflict is a refused operation: the runbook is not in a state that
// allows it (409).
func conflict(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrConflict, fmt.Sprintf(format, a...))
}

// badRequest is a malformed or invalid request (400).
type badRequest struct{ msg string }

func (e *badRequest) Error() string { return e.msg }

// Engine runs the site's runbooks. Create it with Open; it is safe for
// concurrent use.
type Engine struct {
	o   Options
	log *slog.Logger
	j   *journal
	w   *writer // writes j, outside mu; nil before Open loads the record

	mu        sync.Mutex
	rb        *api.Runbook // the current or last runbook; nil if none ever
	events    []api.RunbookEvent
	seq       int64
	shown     int64         // events up to here are written (and, with a shared store, sent): readers see no further
	changed   chan struct{} // closed and replaced on every event
	wake      chan decision // to a runner waiting for confirmation
	cancel    context.CancelFunc
	runner    chan struct{} // closed when the runner goroutine ends; nil if none
	finishing chan struct{} // closed once an ended runbook's lock is released (releaseLocked); nil if none
	closed    bool          // the journal is closed
	stopping  bool          // Close was called: no new runbook starts
	base      context.Context
	stop      context.CancelFunc
	lease     atomic.Pointer[Lease] // the lock's last lease; nil before the first acquisition (fence.go)
	fence     atomic.Int64          // the current runbook's fence, for leasedSite's audit entries
	resync    atomic.Bool           // the writer was fenced: show Redis's runbook again (mirror.go)
	loops     sync.WaitGroup        // the shared store's loops (mirror.go)

	onOutput func(step, line string) // tests: called with each output line, synchronously
}

// decision is an operator's answer to a waiting step.
type decision struct {
	kind  string // "confirm", "skip", "abort"
	actor string
}

// Open loads the journal. A runbook that was running or waiting when the
// gate stopped is marked interrupted.
func Open(o Options) (*Engine, error) {
	if o.Site == nil {
		return nil, errors.New("runbook: a site is required")
	}
	if o.JournalDir == "" {
		return nil, errors.New("runbook: a journal directory is required ([runbook] journal_dir)")
	}
	if o.Lock == nil {
		o.Lock = NewFileLock(o.JournalDir)
	}
	if o.Holder == "" {
		o.Holder = o.Site.Name()
	}
	if o.Drain <= 0 {
		o.Drain = config.DefaultDrainTimeout
	}
	if o.Poll <= 0 {
		o.Poll = config.DefaultPollInterval
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Clock == nil {
		o.Clock = func() time.Time { return time.Now().UTC() }
	}
	j, err := openJournal(o.JournalDir)
	if err != nil {
		return nil, err
	}
	e := &Engine{o: o, log: o.Logger.With("component", "runbook"), j: j, changed: make(chan struct{})}
	e.o.Site = leasedSite{Site: o.Site, e: e}
	e.base, e.stop = context.WithCancel(context.Background())
	rb, err := j.load()
	if err != nil {
		j.close()
		return nil, err
	}
	e.w = startWriter(j, e.log, o.Shared, e.onFenced, e.showUpTo)
	if rb != nil {
		e.rb = rb
		e.seq = rb.Seq
		e.fence.Store(rb.Fence)
		if evs, err := j.events(rb.ID); err == nil {
			e.events = evs
			if n := len(evs); n > 0 && evs[n-1].Seq > e.seq {
				e.seq = evs[n-1].Seq
			}
		}
	}
	e.shown = e.seq // what the journal holds is on disk
	if o.Shared != nil {
		// The site's runbook is Redis's, when Redis has one; this gate's
		// own record stands only if Redis lost it.
		ctx, cancel := context.WithTimeout(e.base, 10*time.Second)
		e.mu.Lock()
		err := e.reloadLocked(ctx)
		e.mu.Unlock()
		cancel()
		if err != nil {
			e.log.Warn("runbook: Redis did not answer: this gate shows its own record until it does", "err", err.Error())
			e.resync.Store(true)
		}
	}
	if rb := e.rb; rb != nil && rb.Active() {
		// Another live gate (or gate process) may be running it: then
		// this one only shows it, and must not call it interrupted.
		e.mu.Lock()
		err := e.acquireLocked(e.base)
		if err == nil && o.Shared != nil {
			err = e.reloadLocked(e.base) // what the last holder wrote is final now
		}
		if err != nil {
			e.log.Warn("the site's runbook lock is held elsewhere: showing the runbook as its record says", "runbook", rb.ID, "err", err.Error())
		} else if e.rb.State == api.RunbookRunning || e.rb.State == api.RunbookWaiting {
			e.interrupted()
		}
		e.mu.Unlock()
	}
	e.w.wait()
	if o.Shared != nil {
		e.loops.Add(2)
		go e.follow(e.base, e.seq)
		go e.serveInbox(e.base)
	}
	return e, nil
}

// Close stops a running step (the runbook shows as interrupted on the next
// Open) and closes the journal.
func (e *Engine) Close() error {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return nil
	}
	e.stopping = true
	runner := e.runner
	e.mu.Unlock()
	e.stop()
	if runner != nil {
		<-runner
	}
	e.loops.Wait()
	e.mu.Lock()
	e.closed = true
	// As a process exit would: the runbook stays active in its record, and
	// the next Open takes the lock back.
	_ = e.o.Lock.Release(context.Background())
	e.mu.Unlock()
	e.w.close() // what was emitted before is written; later events stay in memory
	return e.j.close()
}

// durable waits, without mu, until the events emitted so far are on disk
// (the journal synced, the record saved): a mutating call answers, and the
// runner changes the site, only then.
func (e *Engine) durable() { e.w.wait() }

func (e *Engine) holder() string {
	if e.rb == nil {
		return e.o.Holder
	}
	return e.o.Holder + " runbook " + e.rb.ID
}

// interrupted marks the loaded runbook as interrupted at its step.
func (e *Engine) interrupted() {
	rb := e.rb
	step := rb.StepByName(rb.Step)
	was := rb.State
	rb.State = api.RunbookInterrupted
	msg := fmt.Sprintf("the gate stopped while step %s was %s: resume, retry the step, or abort (optionally disabling maintenance)", rb.Step, was)
	if step != nil && (step.State == api.StepRunning || step.State == api.StepWaiting) {
		if step.State == api.StepRunning {
			rb.Waiting = nil
		}
		step.State = api.StepInterrupted
	}
	e.emit(api.RunbookEvent{Kind: api.EventInterrupted, Step: rb.Step, State: string(api.StepInterrupted), Message: msg, Fence: rb.Fence})
	e.log.Warn("runbook interrupted", "runbook", rb.ID, "step", rb.Step)
}

// Current returns a copy of the current (or last) runbook.
func (e *Engine) Current() (*api.Runbook, error) {
	e.refresh(e.base) // another gate may run it
	e.mu.Lock()
	defer e.mu.Unlock()
	// An ended runbook is shown once its lock is free (releaseLocked):
	// who reads "done" may start the next one at once.
	for e.finishing != nil {
		ch := e.finishing
		e.mu.Unlock()
		<-ch
		e.mu.Lock()
	}
	if e.rb == nil {
		return nil, ErrNoRunbook
	}
	return e.copyLocked(), nil
}

func (e *Engine) copyLocked() *api.Runbook {
	c := *e.rb
	c.Steps = make([]api.RunbookStep, len(e.rb.Steps))
	for i, s := range e.rb.Steps {
		s.Evidence = slices.Clone(s.Evidence)
		c.Steps[i] = s
	}
	if e.rb.Waiting != nil {
		w := *e.rb.Waiting
		c.Waiting = &w
	}
	if e.rb.Snapshot != nil {
		s := *e.rb.Snapshot
		c.Snapshot = &s
	}
	if e.rb.AB != nil {
		ab := *e.rb.AB
		c.AB = &ab
	}
	return &c
}

// Events returns the current runbook's events after seq, and a channel
// closed when more arrive. done is true when the runbook is no longer
// active and every event has been returned.
func (e *Engine) Events(seq int64) (evs []api.RunbookEvent, more <-chan struct{}, done bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	i, j := firstAfter(e.events, seq), firstAfter(e.events, e.shown)
	evs = slices.Clone(e.events[i:max(i, j)])
	// Events are shown once written (so that a client never sees one a
	// crash could lose, nor, with a shared store, one another gate cannot
	// show yet); a mirror (mirror.go) may have the record before its last
	// events.
	done = e.rb == nil || (!e.rb.Active() && e.runner == nil && e.shown >= e.rb.Seq)
	return evs, e.changed, done
}

// firstAfter is the index of the first event after seq in evs (in seq
// order).
func firstAfter(evs []api.RunbookEvent, seq int64) int {
	i, _ := slices.BinarySearchFunc(evs, seq+1, func(ev api.RunbookEvent, s int64) int {
		return cmp.Compare(ev.Seq, s)
	})
	return i
}

// stepNeedsConfirm says whether step waits for an operator before it runs.
// Steps that change the site do: enable and migrate (the site's name must
// be typed), disable; preflight only when it found warnings; in an A/B
// runbook, switch_to_b (the name typed) and switch_to_a.
func stepNeedsConfirm(step string) bool {
	switch step {
	case api.StepEnable, api.StepMigrate, api.StepDisable, api.StepSwitchToB, api.StepSwitchToA:
		return true
	}
	return false
}

// stopsBefore says whether the runbook must stop before step: its
// stop_before names step or a step before it (one skipped, or done).
func (e *Engine) stopsBefore(step string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	sb := e.rb.Options.StopBefore
	steps := e.rb.Options.StepList()
	return sb != "" && slices.Index(steps, step) >= slices.Index(steps, sb)
}

// stopConfirmation is what the runbook asks where stop_before stops it
// before step: the step's own confirmation, if it has one, marked Stop.
func (e *Engine) stopConfirmation(step string, conf *api.Confirmation) *api.Confirmation {
	sb := e.rbOptions().StopBefore
	why := fmt.Sprintf("Stopped before %s, as asked (stop_before %s)", step, sb)
	if sb != step {
		why = fmt.Sprintf("Stopped before %s, as asked (stop_before %s; %s is %s)", step, sb, sb, e.stepState(sb))
	}
	if conf != nil {
		c := *conf
		c.Stop = true
		c.Prompt = why + ". " + c.Prompt
		return &c
	}
	return &api.Confirmation{Step: step, Stop: true, Prompt: why + fmt.Sprintf(". Run %s and go on?", step)}
}

func (e *Engine) stepState(step string) api.StepState {
	e.mu.Lock()
	defer e.mu.Unlock()
	if st := e.rb.StepByName(step); st != nil {
		return st.State
	}
	return ""
}

// skippable says which steps may be skipped: none whose absence would
// make the snapshot unsafe (enable, drain, snapshot), nor, in an A/B
// runbook, what proves B fit to serve (verify_b) or moves the traffic
// (switch_to_b, switch_to_a). restore_b and prepare_b may be, when an
// operator did their work by hand: verify_b still checks B.
func skippable(step string) bool {
	switch step {
	case api.StepPreflight, api.StepMigrate, api.StepVerify, api.StepDisable, api.StepRestoreB, api.StepPrepareB:
		return true
	}
	return false
}

func newID(t time.Time) string {
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	return t.UTC().Format("20060102T150405Z") + "-" + hex.EncodeToString(b)
}

// Start begins a runbook with opts on behalf of actor. It fails with a
// conflict when a runbook is active.
func (e *Engine) Start(ctx context.Context, opts api.RunbookOptions, actor string) (*api.Runbook, error) {
	defer e.durable() // after mu is released: the answer waits for its events on disk
	if err := opts.Validate(); err != nil {
		return nil, &badRequest{err.Error()}
	}
	if opts.Mode == "" {
		opts.Mode = api.ModeReadOnly
	}
	if opts.AB && !e.o.AB.Configured() {
		return nil, &badRequest{"an A/B runbook (ab) needs [ab] in the gate's gate.toml: B's gate (b_url), the public URL, B's databases and storage, and the switch commands (docs/config.md); nothing was started"}
	}
	e.refresh(ctx) // another gate may run one
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.stopping {
		return nil, conflict("the gate is stopping")
	}
	e.settleLocked()
	if e.rb != nil && (e.rb.Active() || e.runner != nil) {
		return nil, conflict("runbook %s is %s at step %s (started by %s): finish or abort it first", e.rb.ID, e.rb.State, e.rb.Step, e.rb.Actor)
	}
	t := e.o.Clock()
	rb := &api.Runbook{ID: newID(t), Site: e.o.Site.Name(), State: api.RunbookRunning,
		Step: api.StepPreflight, Actor: actor, Options: opts, Started: t}
	if opts.AB && e.o.AB.Configured() {
		rb.AB = &api.RunbookAB{BURL: e.o.AB.BURL, PublicURL: e.o.AB.PublicURL}
	}
	for _, name := range opts.StepList() {
		rb.Steps = append(rb.Steps, api.RunbookStep{Name: name, State: api.StepPending, Skippable: skippable(name), Evidence: []api.Evidence{}})
	}
	prev := e.rb
	e.rb = rb
	if err := e.acquireLocked(ctx); err != nil {
		e.rb = prev
		var le *ErrLocked
		if errors.As(err, &le) {
			return nil, conflict("%s", le.Error())
		}
		return nil, err
	}
	if e.o.Shared != nil {
		// The lock is this gate's: Redis's record is final, and must not
		// be an active runbook (started and left by a gate that died).
		cur, last, err := e.o.Shared.record(ctx)
		if err == nil && cur != nil && cur.Active() {
			err = conflict("runbook %s is %s at step %s (started by %s): finish or abort it first", cur.ID, cur.State, cur.Step, cur.Actor)
			e.applyRecordLocked(cur, true)
		}
		if err != nil {
			if e.rb == rb {
				e.rb = prev
			}
			_ = e.o.Lock.Release(context.Background())
			return nil, err
		}
		e.seq = max(e.seq, last)
		if cur != nil {
			e.seq = max(e.seq, cur.Seq)
		}
	}
	e.events = nil
	started := fmt.Sprintf("runbook %s started by %s", rb.ID, actor)
	if opts.AB {
		started += "; A/B: B (" + e.o.AB.BURL + ") serves " + e.o.AB.PublicURL + " while this site migrates"
	}
	if opts.StopBefore != "" {
		started += "; it stops before " + opts.StopBefore + " (stop_before)"
	}
	e.emit(api.RunbookEvent{Kind: api.EventStarted, Actor: actor, Message: started, Fence: rb.Fence})
	e.o.Site.Audit("runbook-start", actor, "", rb.ID, opts.Message, opts.Reason)
	if opts.SkipMigrate {
		e.setStep(api.StepMigrate, api.StepSkipped, "skipped at start (--skip-migrate)")
	} else if len(e.o.Migrate) == 0 {
		e.setStep(api.StepMigrate, api.StepSkipped, "no [[migrate]] commands in gate.toml")
	}
	e.log.Info("runbook started", "runbook", rb.ID, "actor", actor, "mode", opts.Mode, "auto_confirm", opts.AutoConfirm, "stop_before", opts.StopBefore)
	e.startRunner(0, false, actor)
	return e.copyLocked(), nil
}

// Act runs an operator action (confirm, retry, resume, skip, abort,
// gate-stopped): here, or, with a shared store, on the gate that runs the
// runbook (mirror.go).
func (e *Engine) Act(ctx context.Context, op string, a api.RunbookAction, actor string) (*api.Runbook, error) {
	if rb, err, done := e.route(ctx, op, a, actor); done {
		return rb, err
	}
	return e.do(ctx, op, a, actor)
}

// Confirm answers the step waiting for confirmation.
func (e *Engine) Confirm(a api.RunbookAction, actor string) (*api.Runbook, error) {
	return e.Act(context.Background(), opConfirm, a, actor)
}

func (e *Engine) confirm(_ context.Context, a api.RunbookAction, actor string) (*api.Runbook, error) {
	defer e.durable() // after mu is released: the answer waits for its events on disk
	e.mu.Lock()
	defer e.mu.Unlock()
	if err := e.checkAction(a); err != nil {
		return nil, err
	}
	w := e.rb.Waiting
	if e.rb.State != api.RunbookWaiting || w == nil || e.wake == nil {
		return nil, conflict("runbook %s waits for no confirmation (it is %s at step %s)", e.rb.ID, e.rb.State, e.rb.Step)
	}
	if a.Step != "" && a.Step != w.Step {
		return nil, conflict("runbook %s waits at step %s, not %s", e.rb.ID, w.Step, a.Step)
	}
	if w.TypeSiteName && a.SiteName != e.o.Site.Name() {
		return nil, &badRequest{fmt.Sprintf("step %s needs the site's name typed to confirm: type %s exactly (nothing was done)", w.Step, e.o.Site.Name())}
	}
	if a.StopBefore != "" {
		steps := e.rb.Options.StepList()
		if err := api.ValidStopBeforeIn(steps, a.StopBefore); err != nil {
			return nil, &badRequest{err.Error() + " (nothing was done)"}
		}
		if slices.Index(steps, a.StopBefore) <= slices.Index(steps, w.Step) {
			return nil, &badRequest{fmt.Sprintf("stop_before %s does not come after step %s, the one confirmed: give one of %s (nothing was done)",
				a.StopBefore, w.Step, strings.Join(steps[slices.Index(steps, w.Step)+1:], ", "))}
		}
	}
	e.wake <- decision{kind: "confirm", actor: actor}
	e.wake = nil
	// The answer shows the step going on, as the runner is about to.
	e.rb.Waiting = nil
	e.rb.State = api.RunbookRunning
	msg := fmt.Sprintf("%s confirmed by %s", w.Step, actor)
	switch {
	case a.StopBefore != "":
		e.rb.Options.StopBefore = a.StopBefore
		msg += "; the runbook stops again before " + a.StopBefore
	case w.Stop:
		e.rb.Options.StopBefore = "" // the stop asked for is passed
	}
	e.emit(api.RunbookEvent{Kind: api.EventConfirmed, Step: w.Step, Actor: actor, Message: msg})
	if w.Step != api.StepPreflight {
		e.setStep(w.Step, api.StepRunning, "")
	}
	e.o.Site.Audit("runbook-confirm", actor, e.rb.ID, w.Step, "", a.Reason)
	return e.copyLocked(), nil
}

// Skip skips the waiting or failed step, where that is safe.
func (e *Engine) Skip(a api.RunbookAction, actor string) (*api.Runbook, error) {
	return e.Act(context.Background(), opSkip, a, actor)
}

func (e *Engine) skip(ctx context.Context, a api.RunbookAction, actor string) (*api.Runbook, error) {
	defer e.durable() // after mu is released: the answer waits for its events on disk
	e.mu.Lock()
	defer e.mu.Unlock()
	if err := e.checkAction(a); err != nil {
		return nil, err
	}
	step := e.rb.StepByName(e.rb.Step)
	if a.Step != "" && a.Step != e.rb.Step {
		return nil, conflict("runbook %s stands at step %s, not %s", e.rb.ID, e.rb.Step, a.Step)
	}
	if !skippable(step.Name) {
		return nil, conflict("step %s cannot be skipped: without it the snapshot would not be consistent (abort instead)", step.Name)
	}
	msg := fmt.Sprintf("%s skipped by %s", step.Name, actor)
	if a.Reason != "" {
		msg += ": " + a.Reason
	}
	if w := e.rb.Waiting; w != nil && w.Stop && w.Step == step.Name {
		e.rb.Options.StopBefore = "" // skipping the step passes the stop before it
	}
	switch {
	case e.rb.State == api.RunbookWaiting && e.wake != nil:
		e.wake <- decision{kind: "skip", actor: actor}
		e.wake = nil
	case e.runner == nil && (step.State == api.StepFailed || step.State == api.StepInterrupted || step.State == api.StepWaiting):
		if err := e.acquireLocked(ctx); err != nil {
			return nil, conflict("cannot take the site's runbook lock back: %v", err)
		}
		e.setStep(step.Name, api.StepSkipped, msg)
		idx := slices.Index(e.rb.Options.StepList(), step.Name)
		e.rb.Error = ""
		e.startRunner(idx+1, false, actor)
	default:
		return nil, conflict("step %s is %s: only a waiting, failed or interrupted step can be skipped", step.Name, step.State)
	}
	e.emit(api.RunbookEvent{Kind: api.EventSkipped, Step: step.Name, Actor: actor, Message: msg, Fence: e.rb.Fence})
	e.o.Site.Audit("runbook-skip", actor, e.rb.ID, step.Name, "", a.Reason)
	return e.copyLocked(), nil
}

// AckGateStopped records an operator's word that a gone gate (no
// heartbeat: it may still enforce an older mode, possibly live) is
// stopped, so that the drain stops waiting for it. The gate's id must be
// typed exactly; the acknowledgement is journaled and audited.
func (e *Engine) AckGateStopped(a api.RunbookAction, actor string) (*api.Runbook, error) {
	return e.Act(context.Background(), opGateStopped, a, actor)
}

func (e *Engine) ackGateStopped(_ context.Context, a api.RunbookAction, actor string) (*api.Runbook, error) {
	defer e.durable() // after mu is released: the answer waits for its events on disk
	e.mu.Lock()
	defer e.mu.Unlock()
	if err := e.checkAction(a); err != nil {
		return nil, err
	}
	if !e.rb.Active() {
		return nil, conflict("runbook %s is %s: there is no drain to tell", e.rb.ID, e.rb.State)
	}
	if a.Gate == "" || len(a.Gate) > 200 {
		return nil, &badRequest{"name the stopped gate: {\"gate\": \"<its id, as the drain shows it>\"}"}
	}
	if !slices.Contains(e.rb.StoppedGates, a.Gate) {
		e.rb.StoppedGates = append(e.rb.StoppedGates, a.Gate)
	}
	msg := fmt.Sprintf("gate %s confirmed stopped by %s", a.Gate, actor)
	if a.Reason != "" {
		msg += ": " + a.Reason
	}
	e.evidenceLocked(api.StepDrain, api.Evidence{Kind: api.EvidenceNote, OK: true, Summary: msg})
	e.o.Site.Audit("runbook-gate-stopped", actor, e.rb.ID, a.Gate, "", a.Reason)
	return e.copyLocked(), nil
}

// stoppedGates returns the gates operators said are stopped.
func (e *Engine) stoppedGates() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.rb == nil {
		return nil
	}
	return slices.Clone(e.rb.StoppedGates)
}

// Retry runs the failed or interrupted step again. Asking for it is the
// confirmation.
func (e *Engine) Retry(a api.RunbookAction, actor string) (*api.Runbook, error) {
	return e.Act(context.Background(), opRetry, a, actor)
}

// Resume continues an interrupted runbook where it stood: a step that was
// waiting waits again; a step that was running runs again.
func (e *Engine) Resume(a api.RunbookAction, actor string) (*api.Runbook, error) {
	return e.Act(context.Background(), opResume, a, actor)
}

func (e *Engine) restart(ctx context.Context, a api.RunbookAction, actor string, retry bool) (*api.Runbook, error) {
	defer e.durable() // after mu is released: the answer waits for its events on disk
	e.mu.Lock()
	defer e.mu.Unlock()
	if err := e.checkAction(a); err != nil {
		return nil, err
	}
	if a.Step != "" && a.Step != e.rb.Step {
		return nil, conflict("runbook %s stands at step %s, not %s", e.rb.ID, e.rb.Step, a.Step)
	}
	step := e.rb.StepByName(e.rb.Step)
	if e.runner != nil {
		return nil, conflict("step %s is %s: nothing to %s", step.Name, step.State, map[bool]string{true: "retry", false: "resume"}[retry])
	}
	switch {
	case retry && (e.rb.State == api.RunbookFailed || e.rb.State == api.RunbookInterrupted):
	case !retry && e.rb.State == api.RunbookInterrupted:
	default:
		if retry {
			return nil, conflict("runbook %s is %s: only a failed or interrupted step can be retried", e.rb.ID, e.rb.State)
		}
		return nil, conflict("runbook %s is %s: only an interrupted runbook can be resumed", e.rb.ID, e.rb.State)
	}
	left, err := e.commandLeftLocked(retry)
	if err != nil {
		return nil, conflict("%v", err)
	}
	if err := e.acquireLocked(ctx); err != nil {
		return nil, conflict("cannot take the site's runbook lock back: %v", err)
	}
	if left != "" {
		e.evidenceLocked(step.Name, api.Evidence{Kind: api.EvidenceNote, Summary: left + "; retried by " + actor})
	}
	kind := api.EventRetry
	confirmed := true
	if !retry {
		kind = api.EventResumed
		confirmed = e.rb.Waiting == nil // it was running: it had been confirmed
	}
	e.rb.Error = ""
	e.emit(api.RunbookEvent{Kind: kind, Step: step.Name, Actor: actor, Message: fmt.Sprintf("%s of step %s asked by %s", kind, step.Name, actor), Fence: e.rb.Fence})
	e.o.Site.Audit("runbook-"+kind, actor, e.rb.ID, step.Name, "", a.Reason)
	e.startRunner(slices.Index(e.rb.Options.StepList(), step.Name), confirmed, actor)
	return e.copyLocked(), nil
}

// abortTimeout bounds an abort: stopping the runner (its programs killed,
// a partial snapshot removed) and, with disable, reopening writes.
const abortTimeout = 5 * time.Minute

// Abort stops the runbook. The mode stays as it is unless a.Disable asks to
// reopen writes ("disable maintenance now"). It runs detached from ctx (a
// client that gives up waiting must not leave the site half reopened),
// under abortTimeout; the client that left learns the outcome from the
// runbook and the status.
func (e *Engine) Abort(ctx context.Context, a api.RunbookAction, actor string) (*api.Runbook, error) {
	return e.Act(ctx, opAbort, a, actor)
}

func (e *Engine) abort(ctx context.Context, a api.RunbookAction, actor string) (*api.Runbook, error) {
	defer e.durable() // after mu is released: the answer waits for its events on disk
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), abortTimeout)
	defer cancel()
	e.mu.Lock()
	if err := e.checkAction(a); err != nil {
		e.mu.Unlock()
		return nil, err
	}
	if !e.rb.Active() && e.runner == nil {
		e.mu.Unlock()
		return nil, conflict("runbook %s is %s already", e.rb.ID, e.rb.State)
	}
	if a.Disable {
		// Reopening writes is a change to the site: only under the lock.
		if err := e.acquireLocked(ctx); err != nil {
			e.mu.Unlock()
			return nil, conflict("cannot disable maintenance now without the site's runbook lock: %v (abort without disable, or wait for the lock)", err)
		}
	}
	step := e.rb.Step
	if e.wake != nil {
		e.wake <- decision{kind: "abort", actor: actor}
		e.wake = nil
	}
	if e.cancel != nil {
		e.cancel()
	}
	runner := e.runner
	e.mu.Unlock()
	if runner != nil {
		<-runner // the step's programs are killed, a partial snapshot removed
	}

	e.mu.Lock()
	t := e.o.Clock()
	if s := e.rb.StepByName(step); s != nil && (s.State == api.StepRunning || s.State == api.StepWaiting || s.State == api.StepInterrupted) {
		s.State = api.StepFailed
		s.Error = "aborted by " + actor
		s.Ended = &t
		e.emit(api.RunbookEvent{Kind: api.EventStep, Step: step, State: string(api.StepFailed), Message: s.Error})
	}
	e.rb.State = api.RunbookAborted
	e.rb.Waiting = nil
	e.rb.Ended = &t
	e.rb.Error = "aborted at step " + step + " by " + actor
	if a.Reason != "" {
		e.rb.Error += ": " + a.Reason
	}
	if note := e.abAbortNoteLocked(); note != "" {
		e.rb.Error += "; " + note
	}
	e.emit(api.RunbookEvent{Kind: api.EventAborted, Step: step, Actor: actor, Message: e.rb.Error, Fence: e.rb.Fence})
	e.o.Site.Audit("runbook-abort", actor, e.rb.ID, step, "", a.Reason)
	e.log.Warn("runbook aborted", "runbook", e.rb.ID, "step", step, "actor", actor, "disable", a.Disable)
	e.mu.Unlock()

	var derr error
	if a.Disable {
		derr = e.disableNow(ctx, actor)
	}

	e.mu.Lock()
	e.emit(api.RunbookEvent{Kind: api.EventFinished, State: string(api.RunbookAborted), Message: e.rb.Error, Snapshot: e.rb.Snapshot})
	rb := e.copyLocked()
	e.releaseLocked()
	e.mu.Unlock()
	if derr != nil {
		return rb, fmt.Errorf("runbook aborted, but maintenance was not disabled: %w", derr)
	}
	return rb, nil
}

// releaseLocked gives the site's runbook lock up once the events emitted
// so far are written (with a shared store, in Redis under this gate's
// fence: no later holder can have refused them). Until then nothing here
// takes the lock again (settleLocked waits). Events Redis refused are
// waited for in the background (awaitPublished), the lock kept meanwhile.
// Call with mu held; it returns with mu held, having released it
// meanwhile.
func (e *Engine) releaseLocked() {
	done := make(chan struct{})
	e.finishing = done
	background := !e.stopping // Close waits for e.loops: Add only before it does
	if background {
		e.loops.Add(1)
	}
	e.mu.Unlock()
	e.durable()
	release := func() {
		_ = e.o.Lock.Release(context.Background())
		e.mu.Lock()
		e.finishing = nil
		close(done)
	}
	if background && e.w.publishErr() != nil {
		go func() {
			defer e.loops.Done()
			e.awaitPublished()
			release()
			e.mu.Unlock()
		}()
		e.mu.Lock()
		return
	}
	if background {
		e.loops.Done()
	}
	release()
}

// publishWait bounds how long an ended runbook keeps the site's lock for
// events Redis has not taken.
const publishWait = time.Minute

// awaitPublished keeps the lock (its lease renewed) while the writer sends
// again the events Redis refused: released before, another gate could take
// the lock, its fence would refuse them for good, and every other gate
// would go on showing the runbook as Redis last had it (running, say).
// It gives up after publishWait, when the lease is lost, or when the
// engine closes.
func (e *Engine) awaitPublished() {
	err := e.w.publishErr()
	if err == nil {
		return
	}
	e.log.Warn("runbook ended with events not in Redis yet: the runbook lock is kept while they are sent again", "runbook", e.id(), "err", err.Error())
	deadline := time.Now().Add(publishWait)
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for e.w.publishErr() != nil && e.leaseErr() == nil && time.Now().Before(deadline) {
		select {
		case <-e.base.Done():
			return
		case <-t.C:
		}
	}
	if err := e.w.publishErr(); err != nil {
		e.log.Error("runbook lock released with events not in Redis: other gates may show the runbook as it was", "runbook", e.id(), "err", err.Error())
	}
}

// checkAction checks that a runbook exists and is the one a names. A
// runner that has stopped the runbook (failed) but not yet exited is
// waited for, so that the answer sees the runbook at rest. Call with mu
// held.
func (e *Engine) checkAction(a api.RunbookAction) error {
	if e.rb == nil {
		return ErrNoRunbook
	}
	e.settleLocked()
	if a.ID != "" && a.ID != e.rb.ID {
		return conflict("runbook %s is not the current one (%s)", a.ID, e.rb.ID)
	}
	if steps := e.rb.Options.StepList(); a.Step != "" && !slices.Contains(steps, a.Step) {
		return &badRequest{fmt.Sprintf("no step %q (steps: %s)", a.Step, strings.Join(steps, ", "))}
	}
	return nil
}

// settleLocked waits for a runner that has ended its runbook (done or
// failed) but not yet exited. Call with mu held.
func (e *Engine) settleLocked() {
	for {
		var wait chan struct{}
		switch {
		case e.finishing != nil:
			wait = e.finishing
		case e.runner != nil && e.rb != nil && e.rb.State != api.RunbookRunning && e.rb.State != api.RunbookWaiting:
			wait = e.runner
		default:
			return
		}
		e.mu.Unlock()
		<-wait
		e.mu.Lock()
	}
}

// startRunner runs the steps from index i in a goroutine. Call with mu held.
//
// The runner's context is cancelled when the lock's lease is lost; the
// runbook then stops interrupted (fence.go).
func (e *Engine) startRunner(i int, confirmed bool, actor string) {
	ctx, cancel := context.WithCancelCause(e.base)
	done := make(chan struct{})
	e.cancel, e.runner = func() { cancel(context.Canceled) }, done
	e.rb.State = api.RunbookRunning
	lease := e.lease.Load()
	go func() {
		defer close(done)
		defer cancel(nil)
		watchLease(ctx, lease, cancel)
		e.run(ctx, i, confirmed, actor)
		e.mu.Lock()
		if e.runner == done {
			e.runner, e.cancel = nil, nil
		}
		if err := e.leaseErr(); err != nil && (e.rb.State == api.RunbookRunning || e.rb.State == api.RunbookWaiting) {
			e.leaseLostLocked(err, actor)
		}
		// Wake event readers: the runner's end may end their stream.
		e.notifyLocked()
		e.mu.Unlock()
	}()
}

// run executes steps from index i on. It returns when the runbook
// finishes, a step fails, an operator aborts, or the engine closes.
func (e *Engine) run(ctx context.Context, i int, confirmed bool, actor string) {
	steps := e.rbOptions().StepList()
	for ; i < len(steps); i++ {
		name := steps[i]
		e.mu.Lock()
		st := e.rb.StepByName(name)
		if st.State == api.StepSkipped || st.State == api.StepDone {
			e.mu.Unlock()
			continue
		}
		e.rb.Step = name
		e.mu.Unlock()

		if err := e.abConfigErr(); err != nil {
			// Before its confirmation, which would name this gate's [ab].
			e.mu.Lock()
			t := e.o.Clock()
			st = e.rb.StepByName(name)
			st.Started, st.Ended = &t, &t
			e.failStepLocked(name, actor, err)
			e.mu.Unlock()
			return
		}
		if !confirmed {
			conf := e.confirmation(ctx, name)
			hold := e.stopsBefore(name)
			if hold {
				conf = e.stopConfirmation(name, conf)
			}
			if conf != nil && (hold || !e.rbOptions().AutoConfirm) {
				d, ok := e.wait(ctx, name, conf)
				if !ok || d.kind == "abort" {
					return
				}
				if d.kind == "skip" {
					e.mu.Lock()
					e.setStep(name, api.StepSkipped, name+" skipped by "+d.actor)
					e.rb.State = api.RunbookRunning
					e.mu.Unlock()
					continue
				}
				actor = d.actor
			} else if conf != nil && len(conf.Warnings) > 0 {
				e.evidence(name, api.Evidence{Kind: api.EvidenceNote, OK: true,
					Summary: fmt.Sprintf("%d warning(s) acknowledged by auto-confirm", len(conf.Warnings))})
			}
		}
		confirmed = false

		e.mu.Lock()
		started := e.o.Clock()
		st = e.rb.StepByName(name)
		st.Attempts++
		st.Started, st.Ended, st.Error = &started, nil, ""
		e.rb.State = api.RunbookRunning
		e.setStep(name, api.StepRunning, "")
		e.mu.Unlock()
		e.durable() // the step shows running on disk before it changes anything
		e.log.Info("runbook step started", "runbook", e.id(), "step", name, "actor", actor)

		if e.leaseErr() != nil {
			return // before the step changes anything; the runner's end marks it interrupted
		}
		err := e.runStep(ctx, name, actor)

		e.mu.Lock()
		if ctx.Err() != nil || errors.Is(err, ErrLeaseLost) {
			// Aborted (Abort records it), the gate is stopping (the
			// next Open marks it interrupted) or the lease was lost
			// (the runner's end marks it interrupted): record nothing here.
			e.mu.Unlock()
			return
		}
		endedAt := e.o.Clock()
		st = e.rb.StepByName(name)
		st.Ended = &endedAt
		if errors.Is(err, errSkipped) {
			e.setStep(name, api.StepSkipped, name+" skipped by an operator")
			e.mu.Unlock()
			continue
		}
		if err != nil {
			e.failStepLocked(name, actor, err)
			e.mu.Unlock()
			return
		}
		e.setStep(name, api.StepDone, "")
		e.o.Site.Audit("runbook-step", actor, e.rb.ID, name+": done", lastEvidence(st), "")
		e.mu.Unlock()
		e.log.Info("runbook step done", "runbook", e.id(), "step", name)
	}
	// The runbook's end is written (and in Redis, under this gate's
	// fence) before the lock goes (releaseLocked); a crash before it is
	// written leaves the runbook interrupted at its last, done, step:
	// resuming finishes it.
	e.durable()
	e.mu.Lock()
	defer e.mu.Unlock()
	t := e.o.Clock()
	e.rb.State = api.RunbookDone
	e.rb.Ended = &t
	msg := "runbook finished"
	if s := e.rb.Snapshot; s != nil {
		msg += "; snapshot " + s.Dir + " is " + s.Verdict
	}
	if e.rb.Options.AB {
		msg += "; " + e.retireB()
	}
	e.emit(api.RunbookEvent{Kind: api.EventFinished, State: string(api.RunbookDone), Message: msg, Snapshot: e.rb.Snapshot})
	e.o.Site.Audit("runbook-done", actor, e.rb.ID, "", msg, "")
	e.releaseLocked()
	e.log.Info("runbook finished", "runbook", e.rb.ID)
}

// failStepLocked ends the runbook at step name, failed with err (the
// caller sets the step's times). Call with mu held.
func (e *Engine) failStepLocked(name, actor string, err error) {
	e.rb.StepByName(name).Error = err.Error()
	e.setStep(name, api.StepFailed, err.Error())
	e.rb.State = api.RunbookFailed
	e.rb.Error = fmt.Sprintf("step %s failed: %v", name, err)
	e.emit(api.RunbookEvent{Kind: api.EventFinished, Step: name, State: string(api.RunbookFailed),
		Message: e.rb.Error + " (" + e.failedNoteLocked() + ")", Snapshot: e.rb.Snapshot})
	e.o.Site.Audit("runbook-failed", actor, e.rb.ID, name, err.Error(), "")
	e.log.Error("runbook step failed", "runbook", e.rb.ID, "step", name, "err", err.Error())
}

// lastEvidence is a step's last evidence summary, for the audit log.
func lastEvidence(st *api.RunbookStep) string {
	if n := len(st.Evidence); n > 0 {
		return st.Evidence[n-1].Summary
	}
	return ""
}

func (e *Engine) id() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.rb.ID
}

func (e *Engine) rbOptions() api.RunbookOptions {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.rb.Options
}

// wait parks the runner until an operator decides. ok is false when the
// engine closes.
func (e *Engine) wait(ctx context.Context, step string, conf *api.Confirmation) (decision, bool) {
	ch := make(chan decision, 1)
	e.mu.Lock()
	e.rb.State = api.RunbookWaiting
	e.rb.Waiting = conf
	e.wake = ch
	e.setStep(step, api.StepWaiting, "")
	conf.Seq = e.seq + 1 // the confirm event's, emitted next
	e.emit(api.RunbookEvent{Kind: api.EventConfirm, Step: step, Confirmation: conf, Message: conf.Prompt})
	e.mu.Unlock()
	select {
	case d := <-ch:
		e.mu.Lock()
		e.rb.Waiting = nil
		e.mu.Unlock()
		return d, true
	case <-ctx.Done():
		e.mu.Lock()
		if e.wake == ch {
			e.wake = nil
		}
		e.mu.Unlock()
		return decision{}, false
	}
}

// setStep changes a step's state and records the event. Call with mu held.
func (e *Engine) setStep(name string, state api.StepState, msg string) {
	st := e.rb.StepByName(name)
	if st.State == state && msg == "" {
		return
	}
	st.State = state
	if state == api.StepSkipped && msg != "" {
		st.Evidence = append(st.Evidence, api.Evidence{Time: e.o.Clock(), Kind: api.EvidenceNote, Summary: msg, OK: true})
	}
	e.emit(api.RunbookEvent{Kind: api.EventStep, Step: name, State: string(state), Message: msg})
}

// evidence records one fact of a step.
// As every state change of the runner's, it is on disk before the runner
// goes on (it may be about to change the site or run a program).
func (e *Engine) evidence(step string, ev api.Evidence) {
	e.mu.Lock()
	e.evidenceLocked(step, ev)
	e.mu.Unlock()
	e.durable()
}

// evidenceLocked is evidence with mu held.
func (e *Engine) evidenceLocked(step string, ev api.Evidence) {
	if ev.Time.IsZero() {
		ev.Time = e.o.Clock()
	}
	st := e.rb.StepByName(step)
	st.Evidence = append(st.Evidence, ev)
	e.emit(api.RunbookEvent{Kind: api.EventEvidence, Step: step, Evidence: &ev, Message: ev.Summary})
}

// output streams one line of a program's output into the journal.
func (e *Engine) output(step, line string) {
	if e.onOutput != nil {
		e.onOutput(step, line)
	}
	if e.o.OnOutput != nil {
		e.o.OnOutput(step, line)
	}
	e.mu.Lock()
	e.emit(api.RunbookEvent{Kind: api.EventOutput, Step: step, Message: line})
	closed := e.closed
	e.mu.Unlock()
	if !closed {
		// A program faster than the disk waits here, outside mu, rather
		// than fill memory.
		e.w.throttle(maxPending)
	}
}

// progress streams how far one part of a step has come into the journal,
// as output lines are: not synced, not a state change.
func (e *Engine) progress(step string, p api.Progress) {
	e.mu.Lock()
	e.emit(api.RunbookEvent{Kind: api.EventProgress, Step: step, Progress: &p, Message: p.String()})
	closed := e.closed
	e.mu.Unlock()
	if !closed {
		e.w.throttle(maxPending)
	}
}

// progressEvery is how often, at most, the runbook emits the progress
// of one part (its last report, Ended, always goes).
const progressEvery = 500 * time.Millisecond

// progressThrottle passes on at most one report per part every
// progressEvery, and every part's last. Not safe for concurrent use (a
// snapshot's reports never overlap).
type progressThrottle struct {
	every time.Duration
	now   func() time.Time
	last  map[string]time.Time
}

func newProgressThrottle(every time.Duration) *progressThrottle {
	return &progressThrottle{every: every, now: time.Now, last: map[string]time.Time{}}
}

// pass says whether p should go out, and if so counts it as sent.
func (t *progressThrottle) pass(p api.Progress) bool {
	now := t.now()
	if last, ok := t.last[p.Part]; ok && !p.Ended && now.Sub(last) < t.every {
		return false
	}
	t.last[p.Part] = now
	return true
}

// streamed says whether events of kind are streamed rather than state
// changes: program output and progress. They are journaled without a
// sync and without the record, and kept in memory only up to maxEvents.
func streamed(kind string) bool {
	return kind == api.EventOutput || kind == api.EventProgress
}

// maxEvents bounds the events kept in memory for one runbook; beyond it,
// output lines and progress reports are only in the journal file.
const maxEvents = 20000

// emit numbers an event, queues it for the journal (synced unless it is
// program output or progress) with, for a state change, the record to save, and wakes
// the readers. It does not wait for the disk: the writer (writer.go) writes
// in order, outside mu; see durable. Call with mu held.
func (e *Engine) emit(ev api.RunbookEvent) {
	e.seq++
	ev.Seq = e.seq
	ev.Time = e.o.Clock()
	ev.Runbook = e.rb.ID
	e.rb.Seq = e.seq
	output := streamed(ev.Kind)
	if !output || len(e.events) < maxEvents {
		e.events = append(e.events, ev)
	}
	if e.closed {
		e.shown = e.seq
		e.notifyLocked()
		return
	}
	p := pendingEvent{runbook: ev.Runbook, seq: ev.Seq, fence: e.rb.Fence, sync: !output}
	b, err := json.Marshal(ev)
	if err != nil {
		e.log.Error("runbook journal not written", "err", err.Error())
	} else {
		p.line = append(b, '\n')
	}
	if !output {
		// The record as it is now, as today's would be saved: marshalled
		// here, so that later changes cannot reach the writer.
		if p.record, err = json.MarshalIndent(e.rb, "", "  "); err != nil {
			e.log.Error("runbook record not saved", "err", err.Error())
		}
	}
	e.w.add(p) // even without a line: the writer shows it when its turn comes
	e.notifyLocked()
}

// showUpTo lets readers see the events up to seq: the writer has written
// them.
func (e *Engine) showUpTo(seq int64) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if seq > e.shown {
		e.shown = seq
		e.notifyLocked()
	}
}

func (e *Engine) notifyLocked() {
	close(e.changed)
	e.changed = make(chan struct{})
}

// failedNoteLocked is what the finished event of a failed runbook adds.
// Call with mu held.
func (e *Engine) failedNoteLocked() string {
	if e.rb.Options.AB {
		return "the site stays in maintenance; the step's error says where the traffic is: retry the step, skip it if allowed, or abort"
	}
	return "the site stays as it is: retry the step, skip it if allowed, or abort"
}
