package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/ckanops/ckanops/api"
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

On a runbook that stopped (failed, or interrupted by a gate restart):
--retry runs its step again, --resume continues where it stood, --skip
skips its step (preflight, migrate, verify, disable only), --abort stops
it, and --disable-now stops it and reopens writes.

Exit status: 0 the runbook finished and its snapshot is consistent; 1 it
stopped (failed, aborted, declined, or detached); 2 bad usage.`,
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
			if err := parse(e, fs, args); err != nil {
				return err
			}
			n := 0
			for _, b := range []bool{o.retry, o.resume, o.skip != "", o.abort, o.disableNow} {
				if b {
					n++
				}
			}
			if n > 1 {
				return usageErr("give at most one of --retry, --resume, --skip, --abort, --disable-now")
			}
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
	skip                             string
}

// runbookUI prints the journal and asks the confirmations.
type runbookUI struct {
	e      *env
	site   siteClient
	o      runbookFlags
	in     *bufio.Reader
	enc    *json.Encoder
	prompt io.Writer // where questions go: stdout, or stderr with --json
}

func runRunbook(e *env, site siteClient, o runbookFlags) error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	in := e.stdin
	if in == nil {
		in = strings.NewReader("")
	}
	ui := &runbookUI{e: e, site: site, o: o, in: bufio.NewReader(in), prompt: e.stdout}
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
	act := api.RunbookAction{Reason: o.opts.Reason}
	if rb != nil {
		act.ID = rb.ID
	}
	switch {
	case o.retry || o.resume || o.skip != "" || o.abort || o.disableNow:
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
			ui.note("detached: the runbook goes on on the gate; 'ckanops runbook " + site.site.Name + "' re-attaches")
			return &exitError{code: exitFail, err: errors.New("detached")}
		}
		var d declined
		if errors.As(err, &d) {
			ui.note(string(d))
			return &exitError{code: exitFail, err: errors.New("not confirmed")}
		}
		cur, gerr := c.Runbook(ctx)
		if gerr == nil && cur != nil && cur.ID == id && !cur.Active() {
			ui.summary(cur)
			return ui.exit(cur)
		}
		if gerr == nil && cur != nil && cur.ID == id && (cur.State == api.RunbookFailed || cur.State == api.RunbookInterrupted) && err == nil {
			ui.summary(cur)
			return ui.exit(cur)
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

func (ui *runbookUI) note(s string) {
	if ui.o.json {
		fmt.Fprintln(ui.e.stderr, s)
		return
	}
	fmt.Fprintln(ui.e.stdout, s)
}

// event prints one journal event and answers a confirmation.
func (ui *runbookUI) event(ctx context.Context, ev api.RunbookEvent) error {
	if ui.enc != nil {
		if err := ui.enc.Encode(ev); err != nil {
			return err
		}
	} else {
		fmt.Fprintln(ui.e.stdout, formatEvent(ev))
	}
	if ev.Kind != api.EventConfirm || ev.Confirmation == nil || ui.o.yes {
		return nil
	}
	// Replayed history holds confirmations answered long ago: ask only
	// the one the runbook waits on now.
	rb, err := ui.site.client.Runbook(ctx)
	if err != nil || rb == nil || rb.Waiting == nil || rb.Waiting.Seq != ev.Seq {
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
		mark := "  "
		if ev.Evidence != nil && ev.Evidence.OK {
			mark = "ok"
		} else {
			mark = "--"
		}
		return fmt.Sprintf("%s %s %s %s", t, step, mark, ev.Message)
	default:
		return fmt.Sprintf("%s %s [%s] %s", t, step, ev.Kind, ev.Message)
	}
}

// confirm asks the operator and sends the answer. A "no" leaves the
// runbook waiting at the step.
func (ui *runbookUI) confirm(ctx context.Context, ev api.RunbookEvent) error {
	conf := ev.Confirmation
	name := ui.site.site.Name
	w := ui.prompt
	fmt.Fprintln(w)
	fmt.Fprintln(w, conf.Prompt)
	for _, warn := range conf.Warnings {
		fmt.Fprintln(w, "  warning: "+warn)
	}
	act := api.RunbookAction{ID: ev.Runbook, Step: conf.Step}
	for tries := 0; ; tries++ {
		if conf.TypeSiteName {
			fmt.Fprintf(w, "Type the site's name (%s) to confirm, or press Enter to stop here: ", name)
		} else {
			fmt.Fprint(w, "Go on? [y/N] ")
		}
		line, err := ui.in.ReadString('\n')
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

// summary prints where the runbook ended.
func (ui *runbookUI) summary(rb *api.Runbook) {
	if ui.o.json {
		return // the finished event says it all
	}
	w := ui.e.stdout
	fmt.Fprintf(w, "\nrunbook %s: %s", rb.ID, strings.ToUpper(string(rb.State)))
	if rb.Error != "" {
		fmt.Fprintf(w, ": %s", rb.Error)
	}
	fmt.Fprintln(w)
	for _, s := range rb.Steps {
		fmt.Fprintf(w, "  %-9s %s\n", s.Name, s.State)
	}
	if s := rb.Snapshot; s != nil {
		fmt.Fprintf(w, "snapshot %s: %s (%d bytes)\n", s.Dir, s.Verdict, s.Bytes)
		for _, c := range s.Changed {
			fmt.Fprintf(w, "  changed: %s\n", c)
		}
	}
	switch rb.State {
	case api.RunbookFailed, api.RunbookInterrupted:
		n := ui.site.site.Name
		fmt.Fprintf(w, "The site stays in maintenance. Next: 'ckanops runbook %s --retry', '--skip %s' (if allowed), '--abort', or '--disable-now'.\n", n, rb.Step)
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
