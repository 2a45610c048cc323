package tui

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ckanops/ckanops/api"

	"charm.land/bubbles/v2/key"
	tea "charm.land/bubbletea/v2"

	"github.com/ckanops/ckanops/ckanclient"
	"github.com/ckanops/ckanops/internal/human"
)

// modeAnswerMsg is the gate's answer to a mode change.
type modeAnswerMsg struct {
	site   string
	req    api.ModeRequest
	status *api.Status
	err    error
	at     time.Time
}

// jobsAnswerMsg is the gate's answer to suspending or resuming RQ.
type jobsAnswerMsg struct {
	site    string
	suspend bool
	state   *api.JobsState
	err     error
	at      time.Time
}

// actionKey handles the keys that act on a site, from the dashboard or
// the site view.
func (m *Model) actionKey(k tea.KeyPressMsg, s *siteState) tea.Cmd {
	switch {
	case key.Matches(k, m.keys.Enable, m.keys.Disable, m.keys.Jobs, m.keys.Runbook) && otherSiteRefusal(s) != "":
		m.setFlash(otherSiteRefusal(s), true)
		return nil
	case key.Matches(k, m.keys.Enable, m.keys.Disable, m.keys.Jobs) && s.pending != "":
		m.setFlash(s.Name+": still waiting for the gate's answer ("+s.pending+")", true)
		return nil
	case key.Matches(k, m.keys.Enable):
		return m.openDialog(m.enableForm(s))
	case key.Matches(k, m.keys.Disable):
		if s.status != nil && s.status.Mode == api.ModeLive && s.err == nil {
			m.setFlash(s.Name+" is live already: nothing to disable", false)
			return nil
		}
		return m.openDialog(m.disableForm(s))
	case key.Matches(k, m.keys.Jobs):
		return m.openDialog(m.jobsForm(s))
	case key.Matches(k, m.keys.Runbook):
		return m.openRunbook(s)
	}
	return nil
}

// nowLine says what a site is now, for the dialogs.
func (m *Model) nowLine(s *siteState) string {
	if s.status == nil {
		if s.err != nil {
			return s.Name + " is not answering; its mode is unknown."
		}
		return s.Name + ": its mode is not known yet."
	}
	st := s.status
	line := fmt.Sprintf("%s is %s", s.Name, modeWord(st.Mode))
	if st.Phase == api.PhaseDraining {
		line += " (draining)"
	}
	if !st.Since.IsZero() {
		line += " since " + human.Ago(m.clock().Sub(st.Since)) + " ago"
	}
	if st.Actor != "" {
		line += " (by " + st.Actor + ")"
	}
	return line + fmt.Sprintf(", version %d.", st.Version)
}

// enableForm asks for the mode, message and duration, and for the
// site's name to be typed.
func (m *Model) enableForm(s *siteState) *form {
	f := &form{
		title:  "Enable maintenance on " + s.Name,
		lines:  []string{m.nowLine(s) + " Writes are refused at once; writes in flight finish."},
		fields: append(m.maintenanceFields(), m.confirmField(s)),
	}
	f.submit = func(f *form) (tea.Cmd, string) {
		if problem := checkMaintenanceForm(f, s); problem != "" {
			return nil, problem
		}
		req := api.ModeRequest{Mode: api.Mode(f.value("mode")), Message: f.value("message"), For: f.value("for")}
		return m.sendMode(s, req), ""
	}
	return f
}

// checkDuration says what is wrong with an optional duration.
// maintenanceFields are the fields of a maintenance request: mode,
// message and duration (the enable and runbook forms).
func (m *Model) maintenanceFields() []field {
	return []field{
		{label: "mode", kind: choiceField, choices: []string{string(api.ModeReadOnly), string(api.ModeDown)}, hint: "←/→ to change"},
		m.textFieldOf("message", "shown to visitors and API clients", ""),
		m.textFieldOf("for", "optional", "e.g. 90m or 2h30m; sets the ETA"),
	}
}

// confirmField asks for the site's name to be typed.
func (m *Model) confirmField(s *siteState) field {
	return m.textFieldOf("confirm", "type "+s.Name+" to confirm", "")
}

// checkMaintenanceForm checks a form of maintenanceFields and
// confirmField: the duration, and the site's name typed exactly.
func checkMaintenanceForm(f *form, s *siteState) string {
	if problem := checkDuration(f.value("for")); problem != "" {
		return problem
	}
	if f.value("confirm") != s.Name {
		return "type " + s.Name + " exactly to confirm"
	}
	return ""
}

func checkDuration(s string) string {
	if s == "" {
		return ""
	}
	if d, err := time.ParseDuration(s); err != nil || d <= 0 {
		return fmt.Sprintf("for %q: give a duration such as 90m or 2h30m, or leave it empty", s)
	}
	return ""
}

func (m *Model) disableForm(s *siteState) *form {
	f := &form{
		title: "Disable maintenance on " + s.Name,
		yesNo: true,
		lines: []string{m.nowLine(s), "Put " + s.Name + " back to live: writes pass again."},
	}
	f.submit = func(*form) (tea.Cmd, string) {
		return m.sendMode(s, api.ModeRequest{Mode: api.ModeLive}), ""
	}
	return f
}

// rqSuspended reports whether the site's RQ workers are suspended, as
// its last checks report says.
func rqSuspended(s *siteState) (suspended, known bool) {
	if c := check(s.report, checkRedis); c != nil && c.RQ != nil && c.RQ.Suspended != nil {
		return *c.RQ.Suspended, true
	}
	return false, false
}

func (m *Model) jobsForm(s *siteState) *form {
	suspended, known := rqSuspended(s)
	f := &form{yesNo: true}
	counts := ""
	if c := check(s.report, checkRedis); c != nil && c.RQ != nil && c.RQ.Queued != nil && c.RQ.Running != nil {
		counts = fmt.Sprintf(" Now: %d queued, %d running.", *c.RQ.Queued, *c.RQ.Running)
	}
	if suspended {
		f.title = "Resume RQ workers on " + s.Name
		f.lines = []string{"The workers are suspended: resume them, so they start queued jobs again." + counts}
	} else {
		f.title = "Suspend RQ workers on " + s.Name
		f.lines = []string{"Workers finish the job they run and start no new one, until resumed." + counts}
		if !known {
			f.lines = append(f.lines, "(The redis check is not known, so whether they are suspended now is not known.)")
		}
	}
	f.submit = func(*form) (tea.Cmd, string) { return m.sendJobs(s, !suspended), "" }
	return f
}

// sendMode marks s as waiting and returns the command that asks the gate
// to change the mode. The change is compare-and-set on the version the
// console showed, so a change someone made meanwhile is never overwritten.
func (m *Model) sendMode(s *siteState, req api.ModeRequest) tea.Cmd {
	if s.status != nil {
		v := s.status.Version
		req.ExpectVersion = &v
	}
	s.pending = string(req.Mode)
	m.setFlash(fmt.Sprintf("%s: sending %s…", s.Name, req.Mode), false)
	ctx, g, name, timeout, clock := m.ctx, s.Gate, s.Name, s.Timeout, m.clock
	return func() tea.Msg {
		cctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		st, err := g.SetMode(cctx, req)
		return modeAnswerMsg{site: name, req: req, status: st, err: timeoutError(err, timeout), at: clock()}
	}
}

func (m *Model) onModeAnswer(msg modeAnswerMsg) tea.Cmd {
	s := m.byName[msg.site]
	if s == nil {
		return nil
	}
	s.pending = ""
	if msg.err != nil || msg.status == nil {
		err := msg.err
		if err == nil {
			err = errors.New("the gate sent an empty answer")
		}
		m.setFlash(fmt.Sprintf("%s: %s: %s", s.Name, msg.req.Mode, m.describeError(err)), true)
		return m.afterChange(s)
	}
	st := msg.status
	s.status, s.statusAt, s.err = st, msg.at, nil
	text := fmt.Sprintf("%s: now %s (%s), version %d", s.Name, modeWord(st.Mode), st.Phase, st.Version)
	if st.Phase == api.PhaseDraining {
		text += fmt.Sprintf(", %s in flight", plural(len(st.InFlight), "write", "writes"))
	}
	m.setFlash(text, false)
	return m.afterChange(s)
}

// describeError phrases an error for the flash line; a lost
// compare-and-set says who changed the mode and when.
func (m *Model) describeError(err error) string {
	var ce *ckanclient.ConflictError
	if errors.As(err, &ce) {
		cur := ce.Current
		who := cur.Actor
		if who == "" {
			who = "someone else"
		}
		text := "not changed: the mode was changed by " + who
		if !cur.Since.IsZero() {
			text += " " + human.Ago(m.clock().Sub(cur.Since)) + " ago"
		}
		if cur.Mode != "" {
			text += fmt.Sprintf(" (now %s, version %d)", cur.Mode, cur.Version)
		}
		return text + "; look again, and retry if it still makes sense"
	}
	return oneLine(err.Error())
}

func (m *Model) sendJobs(s *siteState, suspend bool) tea.Cmd {
	s.pending = "RQ resume"
	if suspend {
		s.pending = "RQ suspend"
	}
	m.setFlash(fmt.Sprintf("%s: sending %s…", s.Name, s.pending), false)
	ctx, g, name, timeout, clock := m.ctx, s.Gate, s.Name, s.Timeout, m.clock
	return func() tea.Msg {
		cctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		var (
			js  *api.JobsState
			err error
		)
		if suspend {
			js, err = g.SuspendJobs(cctx, api.JobsRequest{})
		} else {
			js, err = g.ResumeJobs(cctx, api.JobsRequest{})
		}
		return jobsAnswerMsg{site: name, suspend: suspend, state: js, err: timeoutError(err, timeout), at: clock()}
	}
}

func (m *Model) onJobsAnswer(msg jobsAnswerMsg) tea.Cmd {
	s := m.byName[msg.site]
	if s == nil {
		return nil
	}
	what := s.pending
	s.pending = ""
	if msg.err != nil || msg.state == nil {
		err := msg.err
		if err == nil {
			err = errors.New("the gate sent an empty answer")
		}
		m.setFlash(fmt.Sprintf("%s: %s: %s", s.Name, what, m.describeError(err)), true)
		return m.afterChange(s)
	}
	js := msg.state
	state := "running"
	if js.Suspended {
		state = "suspended"
	}
	text := fmt.Sprintf("%s: RQ workers %s", s.Name, state)
	if !js.Changed {
		text += " (they already were)"
	}
	if js.Check.Summary != "" {
		text += ": " + oneLine(js.Check.Summary)
	}
	m.setFlash(text, false)
	if s.report != nil && js.Check.Status != "" {
		rep := *s.report
		rep.Checks = append([]api.CheckResult(nil), rep.Checks...)
		for i := range rep.Checks {
			if rep.Checks[i].Name == checkRedis {
				c := js.Check
				c.Name = checkRedis
				rep.Checks[i] = c
			}
		}
		s.report = &rep
	}
	return m.afterChange(s)
}
