package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/charmbracelet/x/term"

	"github.com/ckanops/ckanops/api"
	"github.com/ckanops/ckanops/ckanclient"
	"github.com/ckanops/ckanops/internal/human"
)

func init() {
	register(&command{
		name:    "runbook",
		summary: "run or attach to a site's enable -> drain -> snapshot -> migrate -> verify -> disable runbook",
		usage: `runbook [flags] SITE
Starts a runbook on the site's gate, or attaches to the one already
running, and follows its journal. Without --yes, each step that changes the
site asks on the terminal: enable and migrate want the site's name typed,
disable wants y. The runbook runs on the gate: interrupting this command
(Ctrl-C, a dropped SSH session) leaves it running, and running the command
again re-attaches.

When a step fails or the runbook is interrupted, the command asks what to
do (retry, skip where allowed, abort, or detach) if it runs on a terminal
without --yes; otherwise it exits 1 at once, printing the step, the
reason, the site's mode and the commands that go on (with --json, a last
"stopped" event says so). Ctrl-C detaches at once and changes nothing.

Partial runs, for scripts: --stop-before STEP runs the runbook up to
STEP, excluding it; --until STEP runs it up to STEP, including it
(--until snapshot is --stop-before migrate; --until disable is the whole
runbook). The runbook then waits on the gate before that step, whatever
--yes says, leaving the site as it is at that point (read-only once
enable has run: it never reopens writes), and the command prints what was
done and the commands that go on, and exits 0. A step skipped (migrate
with --skip-migrate, or without [[migrate]] commands) is no place to
stop: the runbook stops before the next step that runs, so
--skip-migrate --until snapshot stops before verify, still read-only.
To go on, run the command again: it confirms the step the runbook waits
at (asking, or with --yes without asking) and follows the rest; with
--stop-before or --until, it stops again there. STEP is one of
preflight, enable, drain, snapshot, migrate, verify, disable (--stop-before:
not preflight); give one of the two flags, not both.

On a runbook that stopped (failed, or interrupted by a gate restart):
--retry runs its step again, --resume continues where it stood, --skip
skips its step (preflight, migrate, verify, disable only; in an A/B
runbook also restore_b, prepare_b), --abort stops
it, and --disable-now stops it and reopens writes. While the drain waits
for a gone gate (no heartbeat: it may still let writes through),
--gate-stopped ID says that gate is stopped.

Exit status: 0 the runbook finished and its snapshot is consistent, or it
waits where --stop-before or --until (or the runbook's stop_before) asked
it to stop; 1 it stopped otherwise (failed, aborted, declined, or left
stopped); 2 bad usage; 130 detached by Ctrl-C (the runbook goes on on the
gate).

A/B: --ab starts the A/B runbook, which needs [ab] in the gate's
gate.toml (docs/config.md): preflight (also B's empty targets, B's gate
read-only, the public URL on A, the switch commands' programs), enable,
drain, snapshot, restore_b (the snapshot into B's databases and storage),
prepare_b ([[ab.prepare]]), verify_b (through B's gate: read-only, A's
dataset count and sample, the snapshot's files), switch_to_b (the site's
name typed; [[ab.switch_to_b]], then the public URL must reach B, else the
traffic is switched back), migrate, verify (A through its own gate),
switch_to_a (confirmed; the public URL must reach A again), disable. B
stays read-only until its operator retires it. --stop-before and --until
take these steps too.`,
		run: func(e *env, args []string) error {
			fs := newFlags(e, commands["runbook"])
			cfgPath, asJSON := consoleFlags(fs)
			o := runbookFlags{}
			fs.BoolVar(&o.yes, "yes", false, "confirm every step without asking (preflight warnings included)")
			fs.BoolVar(&o.opts.SkipMigrate, "skip-migrate", false, "skip the migrate step")
			fs.StringVar((*string)(&o.opts.Mode), "mode", "read-only", "maintenance mode during the runbook: read-only or down")
			fs.StringVar(&o.opts.Message, "message", "", "message shown to users and API clients during maintenance")
			fs.StringVar(&o.opts.For, "for", "", "expected duration, e.g. 90m or 2h30m (sets the ETA)")
			fs.StringVar(&o.opts.Reason, "reason", "", "why, for the audit log")
			fs.BoolVar(&o.retry, "retry", false, "run the stopped runbook's step again")
			fs.BoolVar(&o.resume, "resume", false, "continue an interrupted runbook where it stood")
			fs.StringVar(&o.skip, "skip", "", "skip STEP of the stopped runbook")
			fs.BoolVar(&o.abort, "abort", false, "stop the runbook, leaving the mode as it is")
			fs.BoolVar(&o.disableNow, "disable-now", false, "stop the runbook and reopen writes (mode live, RQ resumed)")
			fs.StringVar(&o.gateStopped, "gate-stopped", "", "tell the drain that gone gate `ID` is stopped (audited), then follow the runbook")
			fs.StringVar(&o.stopBefore, "stop-before", "", "run up to `STEP`, excluding it, and exit 0 with the runbook waiting there (the site as it is: read-only after enable)")
			fs.StringVar(&o.until, "until", "", "run up to `STEP`, including it, and exit 0 with the runbook waiting before the next step")
			fs.BoolVar(&o.opts.AB, "ab", false, "start the A/B runbook: B, a read-only copy restored from the snapshot ([ab] in gate.toml), serves the public URL while the site migrates")
			if err := parse(e, fs, args); err != nil {
				return err
			}
			n := 0
			for _, b := range []bool{o.retry, o.resume, o.skip != "", o.abort, o.disableNow, o.gateStopped != ""} {
				if b {
					n++
				}
			}
			if n > 1 {
				return usageErr("give at most one of --retry, --resume, --skip, --abort, --disable-now, --gate-stopped")
			}
			stop, err := stopFlags(o.stopBefore, o.until, o.opts.StepList())
			if err != nil && !o.opts.AB {
				// A step of the A/B runbook: right for one this command
				// attaches to, checked against it then (runRunbook).
				if _, aerr := stopFlags(o.stopBefore, o.until, api.ABSteps); aerr == nil {
					stop, err = "", nil
				}
			}
			if err != nil {
				return err
			}
			if (o.stopBefore != "" || o.until != "") && n > 0 {
				return usageErr("--stop-before and --until start a runbook or go on with one that waits: not with --retry, --resume, --skip, --abort, --disable-now or --gate-stopped")
			}
			o.stop = stop
			o.opts.StopBefore = stop
			if err := o.opts.Validate(); err != nil {
				return usageErr("%v", err)
			}
			site, err := oneSite(e, fs, *cfgPath)
			if err != nil {
				return err
			}
			o.opts.AutoConfirm = o.yes
			o.json = *asJSON
			return runRunbook(e, site, o)
		},
	})
}

type runbookFlags struct {
	opts                             api.RunbookOptions
	yes, json                        bool
	retry, resume, abort, disableNow bool
	skip, gateStopped                string
	stopBefore, until                string // as given
	stop                             string // the step to stop before: --stop-before, or the one after --until's
}

// stopFlags checks --stop-before and --until and returns the step the
// runbook is to stop before ("" for none: no flag, or --until disable).
func stopFlags(stopBefore, until string, steps []string) (string, error) {
	switch {
	case stopBefore != "" && until != "":
		return "", usageErr("give --stop-before or --until, not both (--until STEP is --stop-before the step after STEP)")
	case stopBefore != "":
		if api.ValidStopBeforeIn(steps, stopBefore) != nil {
			return "", usageErr("--stop-before %q: not a step the runbook can stop before; give one of %s", stopBefore, strings.Join(steps[1:], ", "))
		}
		return stopBefore, nil
	case until != "":
		if !slices.Contains(steps, until) {
			return "", usageErr("--until %q: not a step of the runbook; give one of %s", until, strings.Join(steps, ", "))
		}
		return api.StepAfterIn(steps, until), nil
	}
	return "", nil
}

// runbookUI prints the journal and asks the confirmations.
type runbookUI struct {
	e        *env
	site     siteClient
	o        runbookFlags
	in       *bufio.Reader
	lines    chan lineRead // the terminal's lines, read by one goroutine
	inErr    error         // why stdin ended, once it has
	terminal bool          // stdin is a terminal: a stopped runbook may ask what to do
	enc      *json.Encoder
	prompt   io.Writer // where questions go: stdout, or stderr with --json
	progress *progressView
	// goOnSeq is the confirmation the runbook waited at when this command
	// attached: this command answers it (it is how one goes on), while a
	// stop reached later ends the command.
	goOnSeq int64
	// attachStop is the stop asked for when attaching: it goes with the
	// confirmation this command sends (the runbook's own was set at start).
	attachStop string
}

// stoppedAsAsked says the runbook waits before a step where its
// stop_before stopped it: the command ends with exit 0.
type stoppedAsAsked struct{ rb *api.Runbook }

func (s stoppedAsAsked) Error() string { return "runbook stopped before " + s.rb.Step + ", as asked" }

type lineRead struct {
	line string
	err  error
}

// exitDetached is the exit status of a command detached by Ctrl-C, as a
// shell reports a process ended by SIGINT.
const exitDetached = 130

func runRunbook(e *env, site siteClient, o runbookFlags) error {
	ctx, stop := e.interruptible()
	defer stop()
	in := e.stdin
	if in == nil {
		in = strings.NewReader("")
	}
	ui := &runbookUI{e: e, site: site, o: o, in: bufio.NewReader(in), prompt: e.stdout, terminal: e.terminal || isTerminal(in),
		progress: newProgressView(e.stdout)}
	if o.json {
		ui.enc = json.NewEncoder(e.stdout)
		ui.prompt = e.stderr
	}
	c := site.client
	if err := checkSiteIdentity(ctx, site); err != nil {
		return err
	}

	rb, err := c.Runbook(ctx)
	if err != nil {
		return &exitError{code: exitFail, err: err}
	}
	if o.stopBefore != "" || o.until != "" {
		// The step to stop before, in the list of the runbook it is for:
		// the active one (in place or A/B), else the one to start.
		steps := o.opts.StepList()
		if rb != nil && rb.Active() {
			steps = rb.Options.StepList()
		}
		stop, err := stopFlags(o.stopBefore, o.until, steps)
		if err != nil {
			return err
		}
		o.stop, o.opts.StopBefore = stop, stop
		ui.o = o
	}
	act := api.RunbookAction{Reason: o.opts.Reason}
	if rb != nil {
		act.ID = rb.ID
	}
	switch {
	case o.retry || o.resume || o.skip != "" || o.abort || o.disableNow || o.gateStopped != "":
		if rb == nil || !rb.Active() {
			return &exitError{code: exitFail, err: fmt.Errorf("site %s has no active runbook to act on", site.site.Name)}
		}
		switch {
		case o.retry:
			rb, err = c.RetryStep(ctx, act)
		case o.resume:
			rb, err = c.ResumeRunbook(ctx, act)
		case o.skip != "":
			act.Step = o.skip
			rb, err = c.SkipStep(ctx, act)
		case o.gateStopped != "":
			act.Gate = o.gateStopped
			rb, err = c.AckGateStopped(ctx, act)
		default:
			act.Disable = o.disableNow
			rb, err = c.AbortRunbook(ctx, act)
		}
		if err != nil {
			return &exitError{code: exitFail, err: err}
		}
		if o.abort || o.disableNow {
			ui.summary(rb)
			return ui.exit(rb)
		}
	case rb != nil && rb.Active():
		if o.opts.AB && !rb.Options.AB {
			return &exitError{code: exitFail, err: fmt.Errorf("runbook %s on %s is an in-place runbook (%s at step %s): --ab starts a new, A/B, runbook; finish or abort this one first ('ckanops runbook %s' follows it)",
				rb.ID, site.site.Name, rb.State, rb.Step, site.site.Name)}
		}
		if o.stop != "" {
			if err := ui.checkAttachStop(rb); err != nil {
				var done stoppedAsAsked
				if errors.As(err, &done) {
					ui.stoppedAsAsked(ctx, done.rb)
					return nil
				}
				return err
			}
			ui.attachStop = o.stop
		}
		if rb.State == api.RunbookWaiting && rb.Waiting != nil {
			ui.goOnSeq = rb.Waiting.Seq
		}
		ui.note(fmt.Sprintf("attaching to runbook %s (%s at step %s, started by %s)", rb.ID, rb.State, rb.Step, rb.Actor))
	default:
		rb, err = c.StartRunbook(ctx, o.opts)
		if err != nil {
			return &exitError{code: exitFail, err: err}
		}
		ui.note(fmt.Sprintf("runbook %s started on %s", rb.ID, site.site.Name))
	}
	id := rb.ID

	// Follow the journal from the runbook's first event; reconnect on a
	// broken stream, from the last event seen.
	var seq int64
	for attempt := 0; ; {
		err := c.RunbookEvents(ctx, seq, func(ev api.RunbookEvent) error {
			attempt = 0
			seq = ev.Seq
			if ev.Runbook != id {
				return nil
			}
			return ui.event(ctx, ev)
		})
		if ctx.Err() != nil {
			ui.note("detached: nothing was changed, the runbook goes on on the gate; 'ckanops runbook " + site.site.Name + "' re-attaches")
			return &exitError{code: exitDetached, err: errors.New("detached")}
		}
		var d declined
		if errors.As(err, &d) {
			ui.note(string(d))
			return &exitError{code: exitFail, err: errors.New("not confirmed")}
		}
		var asked stoppedAsAsked
		if errors.As(err, &asked) {
			ui.stoppedAsAsked(ctx, asked.rb)
			return nil
		}
		var halt stopped
		if errors.As(err, &halt) {
			goOn, err := ui.stopped(ctx, halt.rb)
			if err != nil || !goOn {
				if ctx.Err() != nil {
					continue // detached at the prompt: said above, on the next turn
				}
				return err
			}
			attempt = 0
			continue // the runbook runs again: follow it from where we were
		}
		cur, gerr := c.Runbook(ctx)
		if gerr == nil && cur != nil && cur.ID == id && !cur.Active() {
			ui.summary(cur)
			return ui.exit(cur)
		}
		if gerr == nil && cur != nil && cur.ID == id && (cur.State == api.RunbookFailed || cur.State == api.RunbookInterrupted) {
			goOn, err := ui.stopped(ctx, cur)
			if err != nil || !goOn {
				if ctx.Err() != nil {
					continue
				}
				return err
			}
			attempt = 0
			continue
		}
		attempt++
		if attempt > 5 {
			if err == nil {
				err = gerr
			}
			return &exitError{code: exitFail, err: fmt.Errorf("lost the gate's event stream: %v; the runbook goes on: 'ckanops runbook %s' re-attaches", err, site.site.Name)}
		}
		if err != nil {
			ui.note(fmt.Sprintf("event stream broken (%v); reconnecting", err))
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Duration(attempt) * time.Second):
		}
	}
}

// declined is the operator's no: the runbook waits, the command ends.
type declined string

func (d declined) Error() string { return string(d) }

// stopped says the runbook halted at a failed or interrupted step: the
// command stops following it and says what can be done.
type stopped struct{ rb *api.Runbook }

func (s stopped) Error() string { return "runbook " + string(s.rb.State) + " at " + s.rb.Step }

// halted reports whether the runbook ev belongs to has stopped at a
// failed or interrupted step now (not only in replayed history).
func (ui *runbookUI) halted(ctx context.Context, ev api.RunbookEvent) *api.Runbook {
	stopping := ev.Kind == api.EventInterrupted ||
		ev.Kind == api.EventStep && (ev.State == string(api.StepFailed) || ev.State == string(api.StepInterrupted))
	if !stopping {
		return nil
	}
	rb, err := ui.site.client.Runbook(ctx)
	if err != nil || rb == nil || rb.ID != ev.Runbook {
		return nil
	}
	if rb.State != api.RunbookFailed && rb.State != api.RunbookInterrupted {
		return nil // retried or resumed since: history
	}
	return rb
}

// readLine reads one line of the terminal, or gives up when ctx ends
// (Ctrl-C): a read of stdin cannot be interrupted, so one goroutine reads
// and the prompt waits on it or on ctx.
func (ui *runbookUI) readLine(ctx context.Context) (string, error) {
	if ui.inErr != nil {
		return "", ui.inErr
	}
	if ui.lines == nil {
		ui.lines = make(chan lineRead)
		go func() {
			for {
				line, err := ui.in.ReadString('\n')
				ui.lines <- lineRead{line, err}
				if err != nil {
					return
				}
			}
		}()
	}
	select {
	case <-ctx.Done():
		return "", ctx.Err()
	case r := <-ui.lines:
		ui.inErr = r.err // the reader has stopped: later reads end at once
		return r.line, r.err
	}
}

// stopped tells the operator where the runbook stopped and what can be
// done, and on a terminal without --yes asks. It reports whether the
// runbook runs again (retried, skipped or resumed) and should be followed.
func (ui *runbookUI) stopped(ctx context.Context, rb *api.Runbook) (bool, error) {
	ui.progress.clear()
	name := ui.site.site.Name
	step := rb.StepByName(rb.Step)
	reason := rb.Error
	if step != nil && step.Error != "" {
		reason = step.Error // rb.Error says the step again
	}
	if reason == "" {
		reason = "no reason recorded"
	}
	mode := ui.siteMode(ctx)
	skippable := step != nil && step.Skippable
	next := []string{"ckanops runbook " + name + " --retry"}
	if rb.State == api.RunbookInterrupted {
		next = append([]string{"ckanops runbook " + name + " --resume"}, next...)
	}
	if skippable {
		next = append(next, "ckanops runbook "+name+" --skip "+rb.Step)
	}
	next = append(next, "ckanops runbook "+name+" --abort", "ckanops runbook "+name+" --disable-now")
	msg := fmt.Sprintf("step %s %s: %s; the site is %s", rb.Step, rb.State, reason, mode)

	if ui.terminal && !ui.o.yes {
		return ui.askStopped(ctx, rb, msg, next, skippable)
	}

	if ui.enc != nil {
		_ = ui.enc.Encode(api.RunbookEvent{Kind: api.EventStopped, Runbook: rb.ID, Step: rb.Step, State: string(rb.State),
			Time: time.Now().UTC(), Message: msg + "; next: " + strings.Join(next, " | ")})
	} else {
		ui.summary(rb)
		fmt.Fprintf(ui.e.stdout, "%s.\nNext, one of:\n", msg)
		for _, c := range next {
			fmt.Fprintln(ui.e.stdout, "  "+c)
		}
	}
	return false, &exitError{code: exitFail, err: errors.New(msg)}
}

// askStopped asks what to do with a stopped runbook, on a terminal. An
// action the gate refuses (409: a command left running, say) is shown
// and asked again, rather than ending the command.
func (ui *runbookUI) askStopped(ctx context.Context, rb *api.Runbook, msg string, next []string, skippable bool) (bool, error) {
	w := ui.prompt
	fmt.Fprintf(w, "\n%s.\n", msg)
	choices := "[r]etry"
	if rb.State == api.RunbookInterrupted {
		choices = "r[e]sume, [r]etry"
	}
	if skippable {
		choices += ", [s]kip"
	}
	choices += ", [a]bort, or [d]etach (default)? "
	for {
		fmt.Fprint(w, choices)
		line, err := ui.readLine(ctx)
		if err != nil && ctx.Err() != nil {
			return false, err
		}
		again, err := ui.actOnStopped(ctx, rb, line, next)
		var refused *ckanclient.APIError
		if errors.As(err, &refused) && refused.Status == http.StatusConflict {
			fmt.Fprintf(w, "refused: %s\n", refused.Message)
			continue
		}
		return again, err
	}
}

// actOnStopped does what the operator answered at askStopped's prompt.
func (ui *runbookUI) actOnStopped(ctx context.Context, rb *api.Runbook, line string, next []string) (bool, error) {
	w := ui.prompt
	var err error
	act := api.RunbookAction{ID: rb.ID, Reason: ui.o.opts.Reason}
	switch strings.ToLower(strings.TrimSpace(line)) {
	case "r", "retry":
		_, err = ui.site.client.RetryStep(ctx, act)
	case "e", "resume":
		_, err = ui.site.client.ResumeRunbook(ctx, act)
	case "s", "skip":
		act.Step = rb.Step
		_, err = ui.site.client.SkipStep(ctx, act)
	case "a", "abort":
		fmt.Fprint(w, "Also reopen writes now (mode live, RQ resumed)? [y/N] ")
		yn, rerr := ui.readLine(ctx)
		if rerr != nil && ctx.Err() != nil {
			return false, rerr
		}
		act.Disable = strings.EqualFold(strings.TrimSpace(yn), "y") || strings.EqualFold(strings.TrimSpace(yn), "yes")
		cur, aerr := ui.site.client.AbortRunbook(ctx, act)
		if aerr != nil {
			return false, &exitError{code: exitFail, err: aerr}
		}
		ui.summary(cur)
		return false, ui.exit(cur)
	default:
		ui.note("detached: the runbook stays " + string(rb.State) + "; next: " + strings.Join(next, " | "))
		return false, &exitError{code: exitFail, err: errors.New("runbook " + string(rb.State))}
	}
	if err != nil {
		return false, &exitError{code: exitFail, err: err}
	}
	return true, nil
}

func (ui *runbookUI) note(s string) {
	ui.progress.clear()
	if ui.o.json {
		fmt.Fprintln(ui.e.stderr, s)
		return
	}
	fmt.Fprintln(ui.e.stdout, s)
}

// event prints one journal event and answers a confirmation.
func (ui *runbookUI) event(ctx context.Context, ev api.RunbookEvent) error {
	switch {
	case ui.enc != nil:
		if err := ui.enc.Encode(ev); err != nil {
			return err
		}
	case ev.Kind == api.EventProgress:
		if ev.Progress != nil {
			ui.progress.update(ev.Step, *ev.Progress, ev.Time)
		}
	default:
		ui.progress.clear()
		fmt.Fprintln(ui.e.stdout, formatEvent(ev))
		switch {
		case ev.Kind == api.EventFinished || ev.Kind == api.EventAborted || ev.Kind == api.EventInterrupted:
			ui.progress.active = nil
		case ev.Kind == api.EventStep && ev.State != string(api.StepRunning):
			ui.progress.stepEnded(ev.Step)
		}
		ui.progress.draw()
	}
	if rb := ui.halted(ctx, ev); rb != nil {
		return stopped{rb}
	}
	if ev.Kind != api.EventConfirm || ev.Confirmation == nil {
		return nil
	}
	// Replayed history holds confirmations answered long ago: ask only
	// the one the runbook waits on now.
	rb, err := ui.site.client.Runbook(ctx)
	if err != nil || rb == nil || rb.Waiting == nil || rb.Waiting.Seq != ev.Seq {
		return nil
	}
	if rb.Waiting.Stop && ev.Seq != ui.goOnSeq {
		return stoppedAsAsked{rb}
	}
	if ui.o.yes {
		// A runbook started with --yes confirms itself (auto_confirm) and
		// waits only where it was asked to stop; one attached to with
		// --yes that waits is confirmed here, as --yes confirms every step.
		act := api.RunbookAction{ID: ev.Runbook, Step: ev.Confirmation.Step, StopBefore: ui.attachStop, Reason: ui.o.opts.Reason}
		if ev.Confirmation.TypeSiteName {
			act.SiteName = ui.site.site.Name
		}
		if _, err := ui.site.client.ConfirmStep(ctx, act); err != nil {
			return &exitError{code: exitFail, err: fmt.Errorf("confirm %s: %w", ev.Confirmation.Step, err)}
		}
		ui.note(fmt.Sprintf("%s confirmed (--yes)", ev.Confirmation.Step))
		return nil
	}
	if err := ui.confirm(ctx, ev); err != nil {
		var d declined
		if errors.As(err, &d) {
			return err
		}
		ui.note(err.Error()) // e.g. someone else confirmed first; the stream goes on
	}
	return nil
}

func formatEvent(ev api.RunbookEvent) string {
	t := ev.Time.Local().Format("15:04:05")
	step := fmt.Sprintf("%-9s", ev.Step)
	switch ev.Kind {
	case api.EventOutput:
		return fmt.Sprintf("%s %s | %s", t, step, ev.Message)
	case api.EventStep:
		s := fmt.Sprintf("%s %s %s", t, step, strings.ToUpper(ev.State))
		if ev.Message != "" && ev.State != string(api.StepRunning) {
			s += ": " + ev.Message
		}
		return s
	case api.EventEvidence:
		mark := "--"
		switch {
		case ev.Evidence != nil && ev.Evidence.Kind == api.EvidenceCheck && strings.Contains(ev.Evidence.Summary, ": not configured"):
			mark = " -" // not configured: neither passed nor failed
		case ev.Evidence != nil && ev.Evidence.OK:
			mark = "ok"
		}
		return fmt.Sprintf("%s %s %s %s", t, step, mark, ev.Message)
	default:
		return fmt.Sprintf("%s %s [%s] %s", t, step, ev.Kind, ev.Message)
	}
}

// confirm asks the operator and sends the answer. A "no" leaves the
// runbook waiting at the step.
func (ui *runbookUI) confirm(ctx context.Context, ev api.RunbookEvent) error {
	ui.progress.clear()
	conf := ev.Confirmation
	name := ui.site.site.Name
	w := ui.prompt
	fmt.Fprintln(w)
	fmt.Fprintln(w, conf.Prompt)
	for _, warn := range conf.Warnings {
		fmt.Fprintln(w, "  warning: "+warn)
	}
	act := api.RunbookAction{ID: ev.Runbook, Step: conf.Step, StopBefore: ui.attachStop}
	if ui.attachStop != "" {
		fmt.Fprintf(w, "(then the runbook stops again before %s)\n", ui.attachStop)
	}
	for tries := 0; ; tries++ {
		if conf.TypeSiteName {
			fmt.Fprintf(w, "Type the site's name (%s) to confirm, or press Enter to stop here: ", name)
		} else {
			fmt.Fprint(w, "Go on? [y/N] ")
		}
		line, err := ui.readLine(ctx)
		if ctx.Err() != nil {
			return err // Ctrl-C: detach, nothing confirmed
		}
		line = strings.TrimSpace(line)
		if err != nil && line == "" {
			return declined(fmt.Sprintf("no answer on the terminal: the runbook waits at %s; 'ckanops runbook %s' re-attaches, --yes confirms without asking", conf.Step, name))
		}
		if conf.TypeSiteName {
			if line == "" {
				return declined(fmt.Sprintf("not confirmed: the runbook waits at %s; 'ckanops runbook %s' re-attaches, '--abort' stops it", conf.Step, name))
			}
			if line != name {
				fmt.Fprintf(w, "%q is not %s; nothing was done.\n", line, name)
				if tries >= 2 {
					return declined(fmt.Sprintf("not confirmed: the runbook waits at %s", conf.Step))
				}
				continue
			}
			act.SiteName = line
		} else if !strings.EqualFold(line, "y") && !strings.EqualFold(line, "yes") {
			return declined(fmt.Sprintf("not confirmed: the runbook waits at %s; 'ckanops runbook %s' re-attaches, '--abort' stops it", conf.Step, name))
		}
		break
	}
	if _, err := ui.site.client.ConfirmStep(ctx, act); err != nil {
		return fmt.Errorf("confirm %s: %w", conf.Step, err)
	}
	return nil
}

// checkAttachStop checks --stop-before or --until given to a runbook
// already active: the stop goes with the confirmation of the step it
// waits at, so it must wait, before a step that comes before the stop. A
// runbook already waiting where that stop would have stopped it is
// stoppedAsAsked.
func (ui *runbookUI) checkAttachStop(rb *api.Runbook) error {
	stop := ui.o.stop
	name := ui.site.site.Name
	if rb.State != api.RunbookWaiting || rb.Waiting == nil {
		return &exitError{code: exitFail, err: fmt.Errorf("runbook %s is %s at step %s: --stop-before and --until act on a runbook that waits for a confirmation (they go with it); without them, 'ckanops runbook %s' follows it",
			rb.ID, rb.State, rb.Step, name)}
	}
	steps := rb.Options.StepList()
	if !slices.Contains(steps, stop) {
		return usageErr("runbook %s has no step %s (its steps: %s)", rb.ID, stop, strings.Join(steps, ", "))
	}
	w := slices.Index(steps, rb.Waiting.Step)
	if s := slices.Index(steps, stop); s > w {
		return nil
	}
	if rb.Waiting.Stop && rb.Options.StopBefore != "" && slices.Index(steps, rb.Options.StopBefore) <= slices.Index(steps, stop) {
		return stoppedAsAsked{rb} // it waits there already
	}
	return usageErr("runbook %s waits at step %s: the step to stop before must come after it (--stop-before one of %s)",
		rb.ID, rb.Waiting.Step, strings.Join(steps[w+1:], ", "))
}

// siteMode is the site's mode as its gate says it now, for a message.
func (ui *runbookUI) siteMode(ctx context.Context) string {
	if st, err := ui.site.client.Status(ctx); err == nil {
		return string(st.Mode)
	}
	return "unknown (the gate did not answer)"
}

// stoppedAsAsked reports a runbook waiting where its stop_before stopped
// it: what was done, the site's mode, and the commands that go on.
func (ui *runbookUI) stoppedAsAsked(ctx context.Context, rb *api.Runbook) {
	ui.progress.clear()
	name := ui.site.site.Name
	mode := ui.siteMode(ctx)
	step := rb.Step
	if rb.Waiting != nil {
		step = rb.Waiting.Step
	}
	msg := fmt.Sprintf("stopped before %s, as asked (stop_before %s); the site is %s, and nothing more runs until you go on", step, rb.Options.StopBefore, mode)
	var later []string
	if steps := rb.Options.StepList(); slices.Index(steps, step) >= 0 {
		later = steps[slices.Index(steps, step)+1:]
	}
	type goOn struct{ cmd, why string }
	rn := "ckanops runbook " + name
	next := []goOn{
		{rn, "go on: confirm " + step + " (asking), then follow the rest"},
		{rn + " --yes", "go on without asking"},
	}
	if len(later) > 0 {
		next = append(next, goOn{rn + " --yes --stop-before STEP", "go on, and stop again before STEP: " + strings.Join(later, ", ")})
	}
	next = append(next, goOn{rn + " --abort", "stop the runbook; the site stays " + mode},
		goOn{rn + " --disable-now", "stop the runbook and reopen writes"})
	if ui.enc != nil {
		cmds := make([]string, len(next))
		for i, n := range next {
			cmds[i] = n.cmd
		}
		_ = ui.enc.Encode(api.RunbookEvent{Kind: api.EventStopped, Runbook: rb.ID, Step: step, State: string(api.RunbookWaiting),
			Time: time.Now().UTC(), Message: msg + "; next: " + strings.Join(cmds, " | ")})
		return
	}
	ui.summary(rb)
	fmt.Fprintf(ui.e.stdout, "%s.\nNext, one of:\n", msg)
	for _, n := range next {
		fmt.Fprintf(ui.e.stdout, "  %-46s # %s\n", n.cmd, n.why)
	}
}

// summary prints where the runbook ended.
func (ui *runbookUI) summary(rb *api.Runbook) {
	if ui.o.json {
		return // the finished event says it all
	}
	ui.progress.clear()
	w := ui.e.stdout
	fmt.Fprintf(w, "\nrunbook %s: %s", rb.ID, strings.ToUpper(string(rb.State)))
	if rb.Error != "" {
		fmt.Fprintf(w, ": %s", rb.Error)
	}
	fmt.Fprintln(w)
	width := 9 // the in-place runbook's longest step name; an A/B runbook's are longer
	for _, s := range rb.Steps {
		width = max(width, len(s.Name))
	}
	for _, s := range rb.Steps {
		fmt.Fprintf(w, "  %-*s %s\n", width, s.Name, s.State)
	}
	if s := rb.Snapshot; s != nil {
		fmt.Fprintf(w, "snapshot %s: %s (%d bytes)\n", s.Dir, s.Verdict, s.Bytes)
		for _, c := range s.Changed {
			fmt.Fprintf(w, "  changed: %s\n", c)
		}
	}
}

// exit is 0 only for a finished runbook with a consistent snapshot.
func (ui *runbookUI) exit(rb *api.Runbook) error {
	if rb.State == api.RunbookDone && rb.Snapshot != nil && rb.Snapshot.Verdict == api.VerdictConsistent {
		return nil
	}
	why := "runbook " + string(rb.State)
	if rb.State == api.RunbookDone {
		why = "runbook done, but its snapshot is not consistent"
	}
	return &exitError{code: exitFail, err: errors.New(why)}
}

// progressLogEvery is how often, at most, a part's progress is printed
// when the output is not a terminal (a log): its last report always is.
const progressLogEvery = 10 * time.Second

// progressView shows progress reports (api.Progress). On a terminal, the
// active parts share one line, rewritten with \r, which other output
// clears first; otherwise each part gets a plain line at most every
// progressLogEvery of its reports' time, and one for its last report.
type progressView struct {
	w        io.Writer
	terminal bool
	width    int // the terminal's columns
	active   []api.PartProgress
	drawn    bool                 // the progress line is on the screen
	logged   map[string]time.Time // per part: the time of its last printed report
}

// newProgressView writes to w, rewriting one line if w is a terminal.
func newProgressView(w io.Writer) *progressView {
	v := &progressView{w: w, width: 80, logged: map[string]time.Time{}}
	if f, ok := w.(*os.File); ok && term.IsTerminal(f.Fd()) {
		v.terminal = true
		if cols, _, err := term.GetSize(f.Fd()); err == nil && cols > 20 {
			v.width = cols
		}
	}
	return v
}

// update takes one report of step's part p, sent at t.
func (v *progressView) update(step string, p api.Progress, t time.Time) {
	v.active = api.TrackProgress(v.active, step, p)
	if v.terminal {
		v.draw()
		return
	}
	key := step + "\x00" + p.Part
	if last, ok := v.logged[key]; ok && !p.Ended && t.Sub(last) < progressLogEvery {
		return
	}
	v.logged[key] = t
	fmt.Fprintf(v.w, "%s %-9s > %s\n", t.Local().Format("15:04:05"), step, p)
}

// stepEnded forgets the parts of a step that is no longer running.
func (v *progressView) stepEnded(step string) {
	n := len(v.active)
	v.active = api.ForgetStep(v.active, step)
	if v.terminal && len(v.active) != n {
		v.draw()
	}
}

// clear takes the progress line off the screen, before other output.
func (v *progressView) clear() {
	if v.drawn {
		fmt.Fprintf(v.w, "\r%s\r", strings.Repeat(" ", v.width-1))
		v.drawn = false
	}
}

// draw writes the progress line of the active parts, if any, cut to the
// terminal's width.
func (v *progressView) draw() {
	v.clear()
	if !v.terminal || len(v.active) == 0 {
		return
	}
	parts := make([]string, len(v.active))
	for i, a := range v.active {
		parts[i] = progressShort(a.Progress)
	}
	line := []rune(strings.Join(parts, " | "))
	if len(line) > v.width-1 {
		line = append(line[:v.width-2], '…')
	}
	fmt.Fprint(v.w, "\r"+string(line))
	v.drawn = true
}

// progressShort is one part in a few words: "storage uploads 31% 12.3 MB
// 5.1 MB/s ETA 6s" (an archive is named by its storage).
func progressShort(p api.Progress) string {
	s := strings.TrimPrefix(p.Part, "archive of ")
	if f := p.Fraction(); f >= 0 {
		s += fmt.Sprintf(" %d%%", int(f*100))
	}
	s += " " + human.Bytes(p.DoneBytes)
	if p.RateBytesPerS > 0 {
		s += " " + human.Bytes(int64(p.RateBytesPerS)) + "/s"
	}
	if p.ETAS > 0 {
		s += " ETA " + human.Ago(time.Duration(p.ETAS*float64(time.Second)))
	}
	return s
}
