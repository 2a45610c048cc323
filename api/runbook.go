package api

// Wire types of the gate's runbook API (/-/ckanops/runbook*): the gate
// encodes them, the CLI and the console decode them.

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Paths of the runbook API.
const (
	PathRunbook        = "/-/ckanops/runbook"         // GET: the current (or last) runbook; POST: start one
	PathRunbookConfirm = "/-/ckanops/runbook/confirm" // POST RunbookAction: confirm the waiting step
	PathRunbookRetry   = "/-/ckanops/runbook/retry"   // POST RunbookAction: run a failed or interrupted step again
	PathRunbookResume  = "/-/ckanops/runbook/resume"  // POST RunbookAction: continue an interrupted runbook where it stood
	PathRunbookSkip    = "/-/ckanops/runbook/skip"    // POST RunbookAction: skip the step (only where safe)
	PathRunbookAbort   = "/-/ckanops/runbook/abort"   // POST RunbookAction: stop; with disable, also reopen writes
	// PathRunbookGateStopped: POST RunbookAction with Gate: the operator
	// says a gone gate is stopped, so the drain may stop waiting for it.
	PathRunbookGateStopped = "/-/ckanops/runbook/gate-stopped"
	PathRunbookEvents      = "/-/ckanops/runbook/events" // GET: Server-Sent Events of the journal (?since=SEQ or Last-Event-ID)
)

// The runbook's steps, in order.
const (
	StepPreflight = "preflight"
	StepEnable    = "enable"
	StepDrain     = "drain"
	StepSnapshot  = "snapshot"
	StepMigrate   = "migrate"
	StepVerify    = "verify"
	StepDisable   = "disable"
)

// The A/B runbook's own steps (RunbookOptions.AB): B, a read-only copy
// built from the snapshot, serves the public URL while A migrates.
const (
	StepRestoreB  = "restore_b"   // the snapshot restored into B's databases and storage ([ab])
	StepPrepareB  = "prepare_b"   // [[ab.prepare]]: permissions, search index, B's CKAN and gate
	StepVerifyB   = "verify_b"    // B's gate read-only, its content the snapshot's
	StepSwitchToB = "switch_to_b" // [[ab.switch_to_b]]; the public URL then reaches B
	StepSwitchToA = "switch_to_a" // [[ab.switch_to_a]]; the public URL then reaches A
)

// Steps lists the steps in the order they run.
var Steps = []string{StepPreflight, StepEnable, StepDrain, StepSnapshot, StepMigrate, StepVerify, StepDisable}

// ABSteps lists the A/B runbook's steps in the order they run.
var ABSteps = []string{StepPreflight, StepEnable, StepDrain, StepSnapshot, StepRestoreB, StepPrepareB, StepVerifyB,
	StepSwitchToB, StepMigrate, StepVerify, StepSwitchToA, StepDisable}

// StepsFor is the step list of a runbook: ABSteps for an A/B runbook,
// Steps otherwise.
func StepsFor(ab bool) []string {
	if ab {
		return ABSteps
	}
	return Steps
}

// StepList is the step list of a runbook started with these options.
func (o RunbookOptions) StepList() []string { return StepsFor(o.AB) }

// StepState is where one step of a runbook stands.
type StepState string

// States of one step.
const (
	StepPending     StepState = "pending"     // not reached yet
	StepWaiting     StepState = "waiting"     // reached; waits for the operator's confirmation
	StepRunning     StepState = "running"     // its action runs
	StepDone        StepState = "done"        // its action succeeded
	StepFailed      StepState = "failed"      // its action failed: the runbook stopped here
	StepSkipped     StepState = "skipped"     // the operator (or an option) skipped it
	StepInterrupted StepState = "interrupted" // the gate stopped while it ran or waited
)

// RunbookState is where a runbook as a whole stands.
type RunbookState string

// States of a runbook as a whole.
const (
	RunbookRunning     RunbookState = "running"     // a step runs
	RunbookWaiting     RunbookState = "waiting"     // a step waits for confirmation
	RunbookFailed      RunbookState = "failed"      // a step failed; retry, abort, or disable now
	RunbookInterrupted RunbookState = "interrupted" // the gate restarted mid-runbook or lost the lock's lease; resume, retry, or abort
	RunbookAborted     RunbookState = "aborted"     // stopped by an operator
	RunbookDone        RunbookState = "done"        // every step done or skipped
)

// Decision is what an operator tells a runbook: the last segment of the
// action's path, /-/ckanops/runbook/<decision>.
type Decision string

// Operators' decisions.
const (
	DecisionConfirm Decision = "confirm" // run the waiting step
	DecisionRetry   Decision = "retry"   // run a failed or interrupted step again
	DecisionResume  Decision = "resume"  // continue an interrupted runbook where it stood
	DecisionSkip    Decision = "skip"    // skip the step (only where safe)
	DecisionAbort   Decision = "abort"   // stop; with disable, also reopen writes
)

// Decisions lists the decisions in the order the API documents them.
var Decisions = []Decision{DecisionConfirm, DecisionRetry, DecisionResume, DecisionSkip, DecisionAbort}

// Active reports whether the runbook still holds the site: only one
// active runbook may exist per site.
func (r *Runbook) Active() bool {
	switch r.State {
	case RunbookRunning, RunbookWaiting, RunbookFailed, RunbookInterrupted:
		return true
	}
	return false
}

// Snapshot verdicts.
const (
	VerdictConsistent   = "consistent"
	VerdictInconsistent = "inconsistent"
	// VerdictPartial: nothing moved, but a storage of the site (one the
	// gate cannot archive, not excluded) is not in the snapshot.
	VerdictPartial = "partial"
)

// RunbookOptions is the body of POST /-/ckanops/runbook.
type RunbookOptions struct {
	Mode    Mode       `json:"mode,omitempty"`    // ModeReadOnly (default) or ModeDown, for the enable step
	Message string     `json:"message,omitempty"` // shown to visitors while in maintenance
	Until   *time.Time `json:"until,omitempty"`   // the ETA; or For
	For     string     `json:"for,omitempty"`     // a Go duration, counted from the enable step
	Reason  string     `json:"reason,omitempty"`  // for the audit log

	SkipMigrate bool `json:"skip_migrate,omitempty"` // mark migrate skipped from the start
	// AutoConfirm runs every step without waiting for a confirmation,
	// preflight warnings included (they are still recorded).
	AutoConfirm bool `json:"auto_confirm,omitempty"`
	// StopBefore names a step the runbook stops before, for a scripted
	// partial run: when it comes to the first step at or after this one
	// (in Steps' order) that is not done or skipped, it waits there for a
	// confirmation (Confirmation.Stop), auto_confirm or not, leaving the
	// site as it is at that point. Confirming (or skipping) that step
	// clears it (or replaces it: RunbookAction.StopBefore). Any step but
	// preflight; empty: no stop.
	StopBefore string `json:"stop_before,omitempty"`
	// AB runs the A/B runbook (ABSteps) instead of the in-place one: after
	// the snapshot it is restored into B ([ab] in gate.toml), B is
	// prepared and verified through its own gate, the traffic goes to B
	// (confirmed) while A migrates and is verified, then back to A
	// (confirmed) before A reopens. B stays read-only throughout.
	AB bool `json:"ab,omitempty"`
}

// ValidStopBefore reports whether the in-place runbook can stop before
// step: any step but the first (stopping before preflight would run
// nothing). ValidStopBeforeIn checks against another step list.
func ValidStopBefore(step string) error { return ValidStopBeforeIn(Steps, step) }

// ValidStopBeforeIn reports whether a runbook of these steps can stop
// before step.
func ValidStopBeforeIn(steps []string, step string) error {
	if i := slices.Index(steps, step); i < 1 {
		return fmt.Errorf("stop_before %q is not a step a runbook can stop before: give one of %s", step, strings.Join(steps[1:], ", "))
	}
	return nil
}

// StepAfter is the step of the in-place runbook that runs after step, or
// "" after the last one (or for an unknown step).
func StepAfter(step string) string { return StepAfterIn(Steps, step) }

// StepAfterIn is StepAfter in another step list.
func StepAfterIn(steps []string, step string) string {
	if i := slices.Index(steps, step); i >= 0 && i+1 < len(steps) {
		return steps[i+1]
	}
	return ""
}

// Validate reports what is wrong with the options, if anything.
func (o RunbookOptions) Validate() error {
	var errs []error
	switch o.Mode {
	case "", ModeReadOnly, ModeDown:
	default:
		errs = append(errs, fmt.Errorf("mode %q is not read-only or down (a runbook puts the site in maintenance)", o.Mode))
	}
	if o.Until != nil && o.For != "" {
		errs = append(errs, errors.New("give until or for, not both"))
	}
	if o.For != "" {
		if d, err := time.ParseDuration(o.For); err != nil || d <= 0 {
			errs = append(errs, fmt.Errorf("for %q is not a positive duration such as 90m or 2h30m", o.For))
		}
	}
	if o.StopBefore != "" {
		if err := ValidStopBeforeIn(o.StepList(), o.StopBefore); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// RunbookAction is the body of confirm, retry, resume, skip and abort.
type RunbookAction struct {
	// ID names the runbook; when given and not the current one, the gate
	// answers 409 (the runbook changed under the caller).
	ID string `json:"id,omitempty"`
	// Step names the step the caller means: confirm and skip refuse
	// (409) when the runbook waits at another step.
	Step string `json:"step,omitempty"`
	// SiteName is what the operator typed, for the steps that ask for the
	// site's name (enable and migrate; switch_to_b in an A/B runbook): it
	// must equal the site's name.
	SiteName string `json:"site_name,omitempty"`
	Reason   string `json:"reason,omitempty"`
	// Disable (abort only): also put the site back to live and resume RQ,
	// "disable maintenance now". Without it, an abort leaves the mode as it is.
	Disable bool `json:"disable,omitempty"`
	// Gate (gate-stopped only) is the id of a gone gate the operator has
	// found stopped, typed as the drain shows it.
	Gate string `json:"gate,omitempty"`
	// StopBefore (confirm only) replaces the runbook's stop_before: the
	// runbook goes on and stops again before this step, which must come
	// after the confirmed one.
	StopBefore string `json:"stop_before,omitempty"`
}

// Runbook is the record of one runbook, as GET /-/ckanops/runbook serves it.
type Runbook struct {
	ID      string         `json:"id"`
	Site    string         `json:"site"`
	State   RunbookState   `json:"state"`
	Step    string         `json:"step"`  // the current (or last) step
	Actor   string         `json:"actor"` // who started it
	Options RunbookOptions `json:"options"`
	Started time.Time      `json:"started"`
	Ended   *time.Time     `json:"ended"`
	Error   string         `json:"error,omitempty"` // why it failed or was aborted
	Steps   []RunbookStep  `json:"steps"`
	// Waiting is set while a step waits for confirmation.
	Waiting *Confirmation `json:"waiting,omitempty"`
	// Snapshot is the snapshot this runbook took, once taken.
	Snapshot *SnapshotSummary `json:"snapshot,omitempty"`
	// AB is, for an A/B runbook, its two sites and where the public URL
	// was last seen to lead.
	AB *RunbookAB `json:"ab,omitempty"`
	// Fence is the fencing number of the site's runbook lock as this
	// runbook last acquired it (at start, resume, retry, ...): it
	// increases with every acquisition, by any gate.
	Fence int64 `json:"fence,omitempty"`
	// Seq is the sequence number of the runbook's last journal event.
	Seq int64 `json:"seq"`
	// StoppedGates are gone gates an operator said are stopped: the drain
	// no longer waits for them.
	StoppedGates []string `json:"stopped_gates,omitempty"`
}

// RunbookAB is what an A/B runbook knows of its sites ([ab] in gate.toml).
type RunbookAB struct {
	BURL      string `json:"b_url"`
	PublicURL string `json:"public_url"`
	// BSite is B's site name as B's gate's status gave it; "" until the
	// runbook has read it.
	BSite string `json:"b_site,omitempty"`
	// PublicSite is the site the public URL's status named when the
	// runbook last looked (preflight, and after each switch), at
	// PublicChecked; "" before it looked, or when no gate answered there.
	PublicSite    string     `json:"public_site,omitempty"`
	PublicChecked *time.Time `json:"public_checked,omitempty"`
}

// Serving says which site the public URL led to when last looked: "A",
// "B", or "" (not known).
func (r *Runbook) Serving() string {
	switch {
	case r.AB == nil || r.AB.PublicSite == "":
		return ""
	case r.AB.PublicSite == r.Site:
		return "A"
	case r.AB.PublicSite == r.AB.BSite:
		return "B"
	}
	return ""
}

// StepByName returns the named step, or nil.
func (r *Runbook) StepByName(name string) *RunbookStep {
	for i := range r.Steps {
		if r.Steps[i].Name == name {
			return &r.Steps[i]
		}
	}
	return nil
}

// RunbookStep is one step of a runbook and its evidence.
type RunbookStep struct {
	Name     string     `json:"name"`
	State    StepState  `json:"state"`
	Started  *time.Time `json:"started"`
	Ended    *time.Time `json:"ended"`
	Attempts int        `json:"attempts"`
	Error    string     `json:"error,omitempty"`
	// Skippable says whether the gate would let this step be skipped.
	Skippable bool       `json:"skippable"`
	Evidence  []Evidence `json:"evidence"`
}

// Kinds of evidence.
const (
	EvidenceCheck = "check" // a condition looked at (a probe, a count)
	EvidenceRun   = "run"   // a program run: argv, exit code, output tail
	EvidenceMode  = "mode"  // a mode change and the gate's answer
	EvidenceNote  = "note"  // anything else worth keeping
)

// Evidence is one fact a step recorded: what was checked or run, and how it went.
type Evidence struct {
	Time       time.Time      `json:"time"`
	Kind       string         `json:"kind"` // Evidence*
	Summary    string         `json:"summary"`
	OK         bool           `json:"ok"`
	Argv       []string       `json:"argv,omitempty"`
	ExitCode   *int           `json:"exit_code,omitempty"`
	DurationMS int64          `json:"duration_ms,omitempty"`
	OutputTail string         `json:"output_tail,omitempty"`
	Details    map[string]any `json:"details,omitempty"`
}

// Confirmation is what a waiting step asks of the operator.
type Confirmation struct {
	Step   string `json:"step"`
	Prompt string `json:"prompt"`
	// TypeSiteName: the confirmation must carry the site's name as typed
	// by the operator (RunbookAction.SiteName).
	TypeSiteName bool `json:"type_site_name"`
	// Warnings to acknowledge (preflight).
	Warnings []string `json:"warnings,omitempty"`
	// Stop: the runbook stopped before this step because its options said
	// so (stop_before), not only because the step asks. It waits until
	// confirmed, even with auto_confirm.
	Stop bool `json:"stop,omitempty"`
	// Seq is the sequence number of the confirm event that asked: a
	// client replaying the journal answers only the confirm event whose
	// Seq is the runbook's Waiting.Seq.
	Seq int64 `json:"seq"`
}

// SnapshotSummary is what a runbook record says about its snapshot.
type SnapshotSummary struct {
	Dir     string   `json:"dir"`
	Verdict string   `json:"verdict"` // VerdictConsistent, VerdictInconsistent or VerdictPartial
	Changed []string `json:"changed,omitempty"`
	Bytes   int64    `json:"bytes"`
}

// Kinds of journal events.
const (
	EventStarted     = "started"     // a runbook started (Runbook set)
	EventStep        = "step"        // a step changed state (Step, State)
	EventEvidence    = "evidence"    // a step recorded evidence (Step, Evidence)
	EventOutput      = "output"      // a line of a program's output (Step, Message)
	EventProgress    = "progress"    // how far one part of a step has come (Step, Progress); not a state change, like output
	EventConfirm     = "confirm"     // a step waits for confirmation (Confirmation)
	EventConfirmed   = "confirmed"   // an operator confirmed (Step, Actor)
	EventSkipped     = "skipped"     // an operator skipped a step
	EventRetry       = "retry"       // an operator asked for a step again
	EventResumed     = "resumed"     // an operator resumed an interrupted runbook
	EventInterrupted = "interrupted" // the gate restarted mid-runbook, or lost the site's runbook lock
	EventAborted     = "aborted"     // an operator aborted
	EventFinished    = "finished"    // the runbook ended (State: done or failed)

	// EventStopped is not in the journal: 'ckanops runbook --json' ends
	// with it when it stops following a runbook halted at a failed or
	// interrupted step (State), or waiting where --stop-before or --until
	// asked it to stop (State "waiting"), saying why and the commands that
	// go on.
	EventStopped = "stopped"
)

// RunbookEvent is one line of the journal, and one Server-Sent Event.
type RunbookEvent struct {
	Seq          int64         `json:"seq"`
	Time         time.Time     `json:"time"`
	Runbook      string        `json:"runbook"` // the runbook's ID
	Kind         string        `json:"kind"`    // Event*
	Step         string        `json:"step,omitempty"`
	State        string        `json:"state,omitempty"` // the step's (EventStep) or the runbook's (EventFinished) new state
	Actor        string        `json:"actor,omitempty"`
	Message      string        `json:"message,omitempty"`
	Evidence     *Evidence     `json:"evidence,omitempty"`
	Confirmation *Confirmation `json:"confirmation,omitempty"`
	// Snapshot; on the finished event, the runbook's snapshot.
	Snapshot *SnapshotSummary `json:"snapshot,omitempty"`
	// Fence, on started, retry, resumed, skipped, aborted and interrupted
	// events, is the fencing number of the site's runbook lock as the
	// runbook holds it (on an interrupted event for a lost lease, the one
	// it lost).
	Fence int64 `json:"fence,omitempty"`
	// Progress, on progress events, is how far one part of the step has
	// come (each database's dump, each storage's archive).
	Progress *Progress `json:"progress,omitempty"`
}

// Progress is how far one part of a long step (a database's dump, a
// storage's archive) has come. A runbook sends at most a few per second
// per part, and always the part's last one (Ended).
type Progress struct {
	// Part names the part: "pg_dump ckan_db", "archive of storage uploads".
	Part       string `json:"part"`
	DoneBytes  int64  `json:"done_bytes"`
	TotalBytes int64  `json:"total_bytes"` // 0: unknown (a dump's size is known only at its end)
	DoneFiles  int64  `json:"done_files,omitempty"`
	TotalFiles int64  `json:"total_files,omitempty"`
	// RateBytesPerS is the part's average rate since it started.
	RateBytesPerS float64 `json:"rate_bytes_per_s"`
	// ETAS is the seconds left at that rate; 0 when the total is unknown.
	ETAS float64 `json:"eta_s"`
	// Ended: the part is over (done or failed); its last report.
	Ended bool `json:"ended,omitempty"`
}

// NewProgress is the report of a part that has done done of total bytes
// (total 0: unknown) in elapsed, with its rate and ETA.
func NewProgress(part string, done, total int64, elapsed time.Duration) Progress {
	p := Progress{Part: part, DoneBytes: done, TotalBytes: total}
	if s := elapsed.Seconds(); s > 0 {
		p.RateBytesPerS = float64(done) / s
	}
	if total > done && p.RateBytesPerS > 0 {
		p.ETAS = float64(total-done) / p.RateBytesPerS
	}
	return p
}

// Fraction is how much of the part is done, from 0 to 1; -1 when its
// total is unknown.
func (p Progress) Fraction() float64 {
	if p.TotalBytes <= 0 {
		return -1
	}
	return min(1, max(0, float64(p.DoneBytes)/float64(p.TotalBytes)))
}

// Figures is the report without the part's name: "120/300 files, 12.3 MB
// of 40.0 MB (31%), 5.1 MB/s, ETA 6s".
func (p Progress) Figures() string {
	var parts []string
	if p.TotalFiles > 0 {
		parts = append(parts, fmt.Sprintf("%d/%d files", p.DoneFiles, p.TotalFiles))
	}
	if f := p.Fraction(); f >= 0 {
		parts = append(parts, fmt.Sprintf("%s of %s (%d%%)", sizeText(p.DoneBytes), sizeText(p.TotalBytes), int(f*100)))
	} else {
		parts = append(parts, sizeText(p.DoneBytes))
	}
	if p.RateBytesPerS > 0 {
		parts = append(parts, sizeText(int64(p.RateBytesPerS))+"/s")
	}
	switch {
	case p.Ended:
		parts = append(parts, "ended")
	case p.ETAS > 0:
		parts = append(parts, "ETA "+spanText(time.Duration(p.ETAS*float64(time.Second))))
	}
	return strings.Join(parts, ", ")
}

// String is the report as one line: "archive of storage: 120/300 files,
// 12.3 MB of 40.0 MB (31%), 5.1 MB/s, ETA 6s".
func (p Progress) String() string { return p.Part + ": " + p.Figures() }

// sizeText and spanText write sizes and durations as internal/human does
// (decimal units: 12.3 MB; 45s, 20m, 2h05m, 3d): package api is the
// standard library only, so it keeps its own copy of these two.
func sizeText(n int64) string {
	const unit = 1000
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for v := n / unit; v >= unit; v /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %cB", float64(n)/float64(div), "kMGTPE"[exp])
}

func spanText(d time.Duration) string {
	switch {
	case d < 0:
		return "0s"
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
	}
	return fmt.Sprintf("%dd", int(d.Hours()/24))
}

// PartProgress is the last progress report of one running part of a step.
type PartProgress struct {
	Step string
	Progress
}

// TrackProgress applies a report of step's part to parts, the parts still
// running, and returns them: the part's last report is replaced, a new
// part is added, and an ended one goes.
func TrackProgress(parts []PartProgress, step string, p Progress) []PartProgress {
	i := slices.IndexFunc(parts, func(pp PartProgress) bool { return pp.Step == step && pp.Part == p.Part })
	switch {
	case p.Ended && i >= 0:
		return slices.Delete(parts, i, i+1)
	case p.Ended:
		return parts
	case i >= 0:
		parts[i].Progress = p
		return parts
	}
	return append(parts, PartProgress{step, p})
}

// ForgetStep drops the parts of a step that no longer runs.
func ForgetStep(parts []PartProgress, step string) []PartProgress {
	return slices.DeleteFunc(parts, func(pp PartProgress) bool { return pp.Step == step })
}
