package tui

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	tea "charm.land/bubbletea/v2"

	"github.com/ckanops/ckanops/api"
	"github.com/ckanops/ckanops/ckanclient"
	"github.com/ckanops/ckanops/internal/human"
)

// Planned maintenance windows (api.Schedule) and overruns: how the
// dashboard and the site view show them, and the dialogs that plan (w)
// and cancel (W) a window. The plan column also holds a maintenance a
// trigger set (trigger.go).

// windowWords says where a site's planned window stands, for the
// dashboard: "window in 2h10m", "window in 2h10m, announced" once pages
// announce it, "window due" once its start has passed and the gates have
// not started it yet; "" when none is planned.
func windowWords(sc *api.Schedule, now time.Time) string {
	if sc == nil {
		return ""
	}
	if sc.Due(now) {
		return "window due"
	}
	w := "window in " + human.Ago(sc.At.Sub(now))
	if sc.Announcing(now) {
		w += ", announced"
	}
	return w
}

// overrunWords is the dashboard's word for a maintenance past its
// planned end: "OVERRUN by 25m".
func overrunWords(st *api.Status, now time.Time) string {
	if st.Until == nil {
		return "OVERRUN"
	}
	return "OVERRUN by " + human.Ago(now.Sub(*st.Until))
}

// planWords is the dashboard's cell for what a site is doing or is
// planned to do: an overrun first, then a maintenance a trigger set,
// then its active runbook (after either: "OVERRUN, FAILED at migrate",
// "TRIGGERED, running at drain"), then its planned window; "" when none.
func planWords(r ranked, now time.Time) string {
	rb := runbookWords(r.runbook)
	st := r.status
	trig := triggerWords(st)
	switch {
	case st != nil && st.Overrun && rb != "":
		return "OVERRUN, " + rb
	case st != nil && st.Overrun && trig != "":
		return "OVERRUN, " + trig
	case st != nil && st.Overrun:
		return overrunWords(st, now)
	case trig != "" && rb != "":
		return "TRIGGERED, " + rb
	case trig != "":
		return trig
	case rb != "":
		return rb
	case st != nil:
		return windowWords(st.Schedule, now)
	}
	return ""
}

// planHeader names the dashboard's plan column after what it holds: a
// maintenance a trigger set counts as a window (one nobody planned).
func planHeader(rows []ranked) string {
	var runbooks, windows bool
	for _, r := range rows {
		if runbookWords(r.runbook) != "" {
			runbooks = true
		}
		if st := r.status; st != nil && (st.Overrun || st.Schedule != nil || triggerWords(st) != "") {
			windows = true
		}
	}
	switch {
	case runbooks && windows:
		return "RUNBOOK/WINDOW"
	case windows:
		return "WINDOW"
	}
	return "RUNBOOK"
}

// overrunText says how far a maintenance is past its planned end:
// "planned end 14:00 passed 25m ago: still read-only".
func overrunText(st *api.Status, now time.Time, loc *time.Location) string {
	text := "past its planned end"
	if st.Until != nil {
		text = fmt.Sprintf("planned end %s passed %s ago", shortTime(*st.Until, now, loc), human.Ago(now.Sub(*st.Until)))
	}
	return text + ": still " + string(st.Mode)
}

// windowSpan writes a window's mode, start, length and end:
// "read-only from 17:10 for 2h, until 19:10".
func windowSpan(sc *api.Schedule, now time.Time, loc *time.Location) string {
	return fmt.Sprintf("%s from %s for %s, until %s", sc.Mode, shortTime(sc.At, now, loc),
		windowLength(sc), shortTime(sc.End(), now, loc))
}

// windowLength writes a window's length without Go's zero units: "2h",
// "1h30m", "45m".
func windowLength(sc *api.Schedule) string {
	d := sc.Duration()
	if d <= 0 {
		return sc.For
	}
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// windowWhen says when a window starts: "in 2h10m", or that it is due.
func windowWhen(sc *api.Schedule, now time.Time) string {
	if sc.Due(now) {
		return "due " + human.Ago(now.Sub(sc.At)) + " ago: the gates start it by themselves"
	}
	return "starts in " + human.Ago(sc.At.Sub(now))
}

// announceWords says whether and since when a window is announced.
func announceWords(sc *api.Schedule, now time.Time, loc *time.Location) string {
	switch {
	case !sc.AnnounceFrom.Before(sc.At):
		return "not announced"
	case sc.Announcing(now):
		return "announced since " + shortTime(sc.AnnounceFrom, now, loc)
	case sc.Due(now):
		return "announced from " + shortTime(sc.AnnounceFrom, now, loc)
	}
	return fmt.Sprintf("announced from %s (in %s)", shortTime(sc.AnnounceFrom, now, loc), human.Ago(sc.AnnounceFrom.Sub(now)))
}

// windowRunbook says how a window is carried out.
func windowRunbook(sc *api.Schedule) string {
	if !sc.Runbook {
		return "a plain mode change (no runbook)"
	}
	if sc.SkipMigrate {
		return "the runbook runs it, confirming its own steps, migrate skipped"
	}
	return "the runbook runs it, confirming its own steps"
}

// windowLines are the site view's lines of an overrun (labelled
// OVERRUN) and of a planned window: a label and a text each.
func windowLines(st *api.Status, now time.Time, loc *time.Location) [][2]string {
	var out [][2]string
	if st.Overrun {
		out = append(out, [2]string{"OVERRUN", overrunText(st, now, loc) + "; ending maintenance stays your call: d disables"})
	}
	if sc := st.Schedule; sc != nil {
		parts := []string{
			windowSpan(sc, now, loc) + " (" + windowWhen(sc, now) + ")",
			announceWords(sc, now, loc),
			windowRunbook(sc),
		}
		if sc.Actor != "" {
			parts = append(parts, "planned by "+sc.Actor)
		}
		if sc.Reason != "" {
			parts = append(parts, fmt.Sprintf("reason %q", sc.Reason))
		}
		out = append(out, [2]string{"window", strings.Join(parts, " · ")})
		if sc.Message != "" {
			out = append(out, [2]string{"", "message: " + oneLine(sc.Message)})
		}
	}
	return out
}

// scheduleAnswerMsg is the gate's answer to planning or cancelling a
// window.
type scheduleAnswerMsg struct {
	site   string
	what   string // "plan window", "cancel window"
	status *api.Status
	err    error
	at     time.Time
}

// otherSiteRefusal says why an action is refused on a site whose gate
// says it is another site; "" when it does not.
func otherSiteRefusal(s *siteState) string {
	if s.status == nil || s.status.Site == "" || s.status.Site == s.Name {
		return ""
	}
	return fmt.Sprintf("refused: the gate at %s is site %q, not %s (traffic switched to a stand-in?): point %s's url at its own gate", s.URL, s.status.Site, s.Name, s.Name)
}

// windowKey handles w (plan a window) and W (cancel it) in the site view.
func (m *Model) windowKey(cancel bool, s *siteState) tea.Cmd {
	switch {
	case otherSiteRefusal(s) != "":
		m.setFlash(otherSiteRefusal(s), true)
		return nil
	case s.pending != "":
		m.setFlash(s.Name+": still waiting for the gate's answer ("+s.pending+")", true)
		return nil
	case s.status == nil:
		m.setFlash(s.Name+": its status is not known yet: a window is planned against the version you see; wait for the first answer", true)
		return nil
	case cancel && s.status.Schedule == nil:
		m.setFlash(s.Name+" has no planned window: nothing to cancel", false)
		return nil
	case cancel:
		return m.openDialog(m.cancelWindowForm(s))
	}
	return m.openDialog(m.windowForm(s))
}

// windowForm plans a window: start, length, message, announce lead
// time, mode, runbook or not, and the site's name typed.
func (m *Model) windowForm(s *siteState) *form {
	now := m.clock()
	lines := []string{m.nowLine(s)}
	if sc := s.status.Schedule; sc != nil {
		lines = append(lines, "Replaces the planned window: "+windowSpan(sc, now, m.loc)+".")
	}
	lines = append(lines, "At its start the gates switch by themselves; ending it stays your call.")
	f := &form{
		title: "Plan a maintenance window on " + s.Name,
		lines: lines,
		fields: []field{
			m.textFieldOf("start", "+2h, or "+exampleStart(now, m.loc), "RFC 3339, or +DURATION from now"),
			m.textFieldOf("for", "2h", "the planned length"),
			m.textFieldOf("message", "shown to visitors and API clients", ""),
			m.textFieldOf("announce", "24h", "lead time; empty: 24h, 0s: none"),
			{label: "mode", kind: choiceField, choices: []string{string(api.ModeReadOnly), string(api.ModeDown)}, hint: "←/→ to change"},
			{label: "runbook", kind: toggleField, hint: "space: the runbook runs it, confirming its own steps"},
			m.confirmField(s),
		},
	}
	f.submit = func(f *form) (tea.Cmd, string) {
		req, problem := m.checkWindowForm(f, s, m.clock())
		if problem != "" {
			return nil, problem
		}
		return m.sendWindow(s, req), ""
	}
	return f
}

// exampleStart is a start time in RFC 3339 for the dialog's hints: two
// hours from now, on the hour, in the console's time zone.
func exampleStart(now time.Time, loc *time.Location) string {
	return now.In(loc).Add(2 * time.Hour).Truncate(time.Hour).Format(time.RFC3339)
}

// parseStart reads a window's start: RFC 3339, or +DURATION from now.
func parseStart(s string, now time.Time, loc *time.Location) (time.Time, string) {
	if s == "" {
		return time.Time{}, "start is missing: give +DURATION from now (such as +2h) or a time in RFC 3339 (such as " + exampleStart(now, loc) + ")"
	}
	if rest, ok := strings.CutPrefix(s, "+"); ok {
		d, err := time.ParseDuration(rest)
		if err != nil || d <= 0 {
			return time.Time{}, fmt.Sprintf("start %q: after + give a duration from now, such as +2h or +90m", s)
		}
		return now.Add(d), ""
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, fmt.Sprintf("start %q is not a time: give it in RFC 3339 (such as %s) or as +DURATION from now (such as +2h)", s, exampleStart(now, loc))
	}
	return t, ""
}

// checkWindowForm reads the window dialog into a request, or says what
// is wrong with it: the start, the length, the announce lead time, and
// the site's name typed exactly.
func (m *Model) checkWindowForm(f *form, s *siteState, now time.Time) (api.ScheduleRequest, string) {
	at, problem := parseStart(f.value("start"), now, m.loc)
	if problem != "" {
		return api.ScheduleRequest{}, problem
	}
	if !at.After(now) {
		return api.ScheduleRequest{}, fmt.Sprintf("start %s is in the past (now %s): a window starts in the future",
			shortTime(at, now, m.loc), shortTime(now, now, m.loc))
	}
	req := api.ScheduleRequest{
		At: at, For: f.value("for"), Message: f.value("message"), Announce: f.value("announce"),
		Mode: api.Mode(f.value("mode")), Runbook: f.value("runbook") != "",
	}
	if req.For == "" {
		return req, "for is missing: the window's planned length, such as 2h or 90m"
	}
	if err := req.Validate(now); err != nil {
		return req, oneLine(strings.ReplaceAll(err.Error(), "\n", "; "))
	}
	if f.value("confirm") != s.Name {
		return req, "type " + s.Name + " exactly to confirm"
	}
	return req, ""
}

// cancelWindowForm cancels the planned window, the site's name typed.
func (m *Model) cancelWindowForm(s *siteState) *form {
	now := m.clock()
	sc := s.status.Schedule
	f := &form{
		title: "Cancel the planned window on " + s.Name,
		lines: []string{
			m.nowLine(s),
			"Planned: " + windowSpan(sc, now, m.loc) + " (" + windowWhen(sc, now) + "), " + announceWords(sc, now, m.loc) + ".",
			"Cancelling it: nothing switches at " + shortTime(sc.At, now, m.loc) + " and pages stop announcing it. The mode does not change.",
		},
		fields: []field{m.confirmField(s)},
	}
	f.submit = func(f *form) (tea.Cmd, string) {
		if f.value("confirm") != s.Name {
			return nil, "type " + s.Name + " exactly to confirm"
		}
		return m.sendCancelWindow(s), ""
	}
	return f
}

// expectSeen is the version of the status the operator saw, for a
// compare-and-set.
func expectSeen(s *siteState) *int64 {
	if s.status == nil {
		return nil
	}
	v := s.status.Version
	return &v
}

// sendWindow marks s as waiting and returns the command that plans the
// window, compare-and-set on the version the console showed.
func (m *Model) sendWindow(s *siteState, req api.ScheduleRequest) tea.Cmd {
	req.ExpectVersion = expectSeen(s)
	return m.sendSchedule(s, "plan window", func(ctx context.Context, g Gate) (*api.Status, error) {
		return g.SetSchedule(ctx, req)
	})
}

// sendCancelWindow marks s as waiting and returns the command that
// cancels its planned window, compare-and-set on the version shown.
func (m *Model) sendCancelWindow(s *siteState) tea.Cmd {
	expect := expectSeen(s)
	return m.sendSchedule(s, "cancel window", func(ctx context.Context, g Gate) (*api.Status, error) {
		return g.CancelSchedule(ctx, expect, "")
	})
}

func (m *Model) sendSchedule(s *siteState, what string, call func(context.Context, Gate) (*api.Status, error)) tea.Cmd {
	s.pending = what
	m.setFlash(fmt.Sprintf("%s: sending %s…", s.Name, what), false)
	ctx, g, name, timeout, clock := m.ctx, s.Gate, s.Name, s.Timeout, m.clock
	return func() tea.Msg {
		cctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		st, err := call(cctx, g)
		return scheduleAnswerMsg{site: name, what: what, status: st, err: timeoutError(err, timeout), at: clock()}
	}
}

func (m *Model) onScheduleAnswer(msg scheduleAnswerMsg) tea.Cmd {
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
		m.setFlash(fmt.Sprintf("%s: %s: %s", s.Name, msg.what, m.describeChangeError(s, err)), true)
		return m.afterChange(s)
	}
	st := msg.status
	s.status, s.statusAt, s.err = st, msg.at, nil
	now := m.clock()
	switch sc := st.Schedule; {
	case msg.what == "cancel window" && sc == nil:
		m.setFlash(fmt.Sprintf("%s: planned window cancelled, version %d", s.Name, st.Version), false)
	case sc != nil && msg.what == "plan window":
		m.setFlash(fmt.Sprintf("%s: window planned: %s (%s), %s, version %d", s.Name, windowSpan(sc, now, m.loc),
			windowWhen(sc, now), announceWords(sc, now, m.loc), st.Version), false)
	case sc != nil:
		m.setFlash(fmt.Sprintf("%s: the gate still shows a planned window (%s), version %d: look again", s.Name, windowSpan(sc, now, m.loc), st.Version), true)
	default:
		m.setFlash(fmt.Sprintf("%s: the gate answered without a planned window, version %d: look again", s.Name, st.Version), true)
	}
	return m.afterChange(s)
}

// describeChangeError phrases the error of a change to s for the flash
// line; a lost compare-and-set says that someone else changed the site
// meanwhile and that nothing was done.
func (m *Model) describeChangeError(s *siteState, err error) string {
	var ce *ckanclient.ConflictError
	if !errors.As(err, &ce) {
		return oneLine(err.Error())
	}
	cur := ce.Current
	var who []string
	if cur.Actor != "" {
		who = append(who, "by "+cur.Actor)
	}
	if !cur.Since.IsZero() {
		who = append(who, human.Ago(m.clock().Sub(cur.Since))+" ago")
	}
	text := "nothing was done: someone else changed " + s.Name + " meanwhile"
	if len(who) > 0 {
		text += " (" + strings.Join(who, ", ") + ")"
	}
	if cur.Mode != "" {
		text += fmt.Sprintf("; it is now %s, version %d", modeWord(cur.Mode), cur.Version)
		if ce.Expected != nil {
			text += fmt.Sprintf(" (you saw %d)", *ce.Expected)
		}
	}
	return text + "; look again, and retry if it still makes sense"
}
