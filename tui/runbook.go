package tui

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/ckanops/ckanops/api"

	"charm.land/bubbles/v2/key"
	tea "charm.land/bubbletea/v2"

	"github.com/ckanops/ckanops/config"
	"github.com/ckanops/ckanops/internal/human"
)

// runbookView is the state of the runbook view.
type runbookView struct {
	back       view // where esc goes
	loading    bool
	offerStart bool // open the start form if the first read finds no active runbook
	log        []string
	logScroll  int                // lines scrolled up from the newest
	progress   []api.PartProgress // the running parts' last progress reports (progress.go)

	stream     *stream
	streamID   int
	streamNote string
	restarts   int // streams the gate ended in a row without an event
}

// stream is the runbook's event stream: a command runs it, and every
// event comes back through ch as one message.
type stream struct {
	id     int
	cancel context.CancelFunc
	ch     chan tea.Msg
}

const maxLog = 500

// Messages of the event stream; id names the stream they belong to, so
// messages of a stream already stopped are dropped.
type (
	streamEventMsg struct {
		id int
		ev api.RunbookEvent
	}
	streamErrorMsg struct {
		id      int
		err     error
		retryIn time.Duration
	}
	streamEndedMsg   struct{ id int } // the gate ended the stream
	streamClosedMsg  struct{ id int } // the stream's command returned
	streamRestartMsg struct{ site string }
)

// runbookAnswerMsg is the gate's answer to a runbook action.
type runbookAnswerMsg struct {
	site string
	what string
	rb   *api.Runbook
	err  error
}

// openRunbook shows the runbook view of s: it reads the runbook, then
// follows its journal if it is active, or offers to start one.
func (m *Model) openRunbook(s *siteState) tea.Cmd {
	back := m.view
	if back == viewRunbook {
		back = viewDashboard
	}
	m.stopStream()
	m.view, m.current = viewRunbook, s
	m.rb = runbookView{back: back, loading: true, offerStart: true, streamID: m.rb.streamID}
	return m.loadRunbook(s)
}

// stopStream ends the event stream, if one runs.
func (m *Model) stopStream() {
	if m.rb.stream != nil {
		m.rb.stream.cancel()
		m.rb.stream = nil
	}
}

func (m *Model) onRunbookLoaded(msg runbookLoadedMsg) tea.Cmd {
	s := m.byName[msg.site]
	if s == nil {
		return nil
	}
	s.runbookLoaded = true
	s.runbookErr = msg.err
	if msg.err == nil {
		s.runbook = newerRunbook(s.runbook, msg.rb)
	}
	if m.view != viewRunbook || m.current != s {
		return nil
	}
	m.rb.loading = false
	if msg.err != nil {
		return nil
	}
	rb := s.runbook
	if rb != nil && rb.Active() {
		m.rb.offerStart = false
		if m.rb.stream == nil {
			return m.startStream(s, rb.Seq)
		}
		return nil
	}
	if m.rb.offerStart {
		m.rb.offerStart = false
		if m.dialog == nil {
			return m.openDialog(m.startForm(s))
		}
	}
	return nil
}

// newerRunbook returns the record to keep: the new one, unless it is the
// same runbook at an older point of its journal.
func newerRunbook(cur, next *api.Runbook) *api.Runbook {
	if cur == nil || next == nil || cur.ID != next.ID || next.Seq >= cur.Seq {
		return cloneRunbook(next)
	}
	return cur
}

// cloneRunbook copies what applyEvent changes, so the record kept is the
// model's own.
func cloneRunbook(rb *api.Runbook) *api.Runbook {
	if rb == nil {
		return nil
	}
	c := *rb
	c.Steps = append([]api.RunbookStep(nil), rb.Steps...)
	for i := range c.Steps {
		c.Steps[i].Evidence = append([]api.Evidence(nil), c.Steps[i].Evidence...)
	}
	return &c
}

// startStream follows the runbook's journal from since.
func (m *Model) startStream(s *siteState, since int64) tea.Cmd {
	m.stopStream()
	ctx, cancel := context.WithCancel(m.ctx)
	m.rb.streamID++
	st := &stream{id: m.rb.streamID, cancel: cancel, ch: make(chan tea.Msg, 16)}
	m.rb.stream = st
	m.rb.streamNote = fmt.Sprintf("following the journal from event %d", since)
	return tea.Batch(runStream(ctx, s.Gate, since, st.id, st.ch), waitStream(st.ch, st.id))
}

// runStream reads the event stream until ctx ends or the gate ends it,
// sending each event to ch; a broken stream is reopened, with backoff,
// from the last event seen. It closes ch when it returns.
func runStream(ctx context.Context, g Gate, since int64, id int, ch chan<- tea.Msg) tea.Cmd {
	return func() tea.Msg {
		defer close(ch)
		send := func(msg tea.Msg) bool {
			select {
			case ch <- msg:
				return true
			case <-ctx.Done():
				return false
			}
		}
		backoff := time.Second
		for {
			err := g.RunbookEvents(ctx, since, func(ev api.RunbookEvent) error {
				if ev.Seq > since {
					since = ev.Seq
				}
				backoff = time.Second
				if !send(streamEventMsg{id: id, ev: ev}) {
					return ctx.Err()
				}
				return nil
			})
			switch {
			case ctx.Err() != nil:
				return streamClosedMsg{id: id}
			case err == nil:
				send(streamEndedMsg{id: id})
				return streamClosedMsg{id: id}
			}
			if !send(streamErrorMsg{id: id, err: err, retryIn: backoff}) {
				return streamClosedMsg{id: id}
			}
			t := time.NewTimer(backoff)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return streamClosedMsg{id: id}
			}
			backoff = min(2*backoff, 30*time.Second)
		}
	}
}

// waitStream waits for the stream's next message; Update issues it again
// after each one.
func waitStream(ch <-chan tea.Msg, id int) tea.Cmd {
	return func() tea.Msg {
		msg, ok := <-ch
		if !ok {
			return streamClosedMsg{id: id}
		}
		return msg
	}
}

func (m *Model) onStream(msg tea.Msg) tea.Cmd {
	cur := m.rb.stream
	mine := func(id int) bool { return cur != nil && cur.id == id && m.view == viewRunbook }
	switch msg := msg.(type) {
	case streamEventMsg:
		if !mine(msg.id) {
			return nil
		}
		m.rb.restarts = 0
		m.rb.streamNote = fmt.Sprintf("following the journal (event %d)", msg.ev.Seq)
		cmds := []tea.Cmd{waitStream(cur.ch, cur.id), m.applyEvent(m.current, msg.ev)}
		switch msg.ev.Kind {
		case api.EventOutput, api.EventEvidence, api.EventProgress: // within a step: the next refresh will do
		default: // a step began or ended, or the runbook changed: the site line and audit follow
			cmds = append(cmds, m.afterChange(m.current))
		}
		return tea.Batch(cmds...)
	case streamErrorMsg:
		if !mine(msg.id) {
			return nil
		}
		m.rb.streamNote = fmt.Sprintf("stream broken, reconnecting in %s: %s", config.Duration{Duration: msg.retryIn}.String(), oneLine(msg.err.Error()))
		return waitStream(cur.ch, cur.id)
	case streamEndedMsg:
		if !mine(msg.id) {
			return nil
		}
		m.rb.stream = nil
		m.rb.streamNote = "the gate ended the stream"
		m.rb.restarts++
		if m.rb.restarts == 1 {
			return m.loadRunbook(m.current)
		}
		wait := min(time.Second<<min(m.rb.restarts, 5), 30*time.Second)
		return m.after(wait, streamRestartMsg{site: m.current.Name})
	case streamRestartMsg:
		if m.view == viewRunbook && m.current != nil && m.current.Name == msg.site && m.rb.stream == nil {
			return m.loadRunbook(m.current)
		}
	case streamClosedMsg:
		if cur != nil && cur.id == msg.id {
			m.rb.stream = nil
		}
	}
	return nil
}

// applyEvent brings the runbook record up to date with one journal event
// and logs it; events the record cannot follow cause a fresh read.
func (m *Model) applyEvent(s *siteState, ev api.RunbookEvent) tea.Cmd {
	m.rb.onProgressEvent(ev)
	if ev.Kind != api.EventProgress { // shown as bars, not logged
		m.logLine(ev.Time, m.eventText(ev))
	}
	rb := s.runbook
	if rb == nil || (ev.Runbook != "" && ev.Runbook != rb.ID) {
		return m.loadRunbook(s)
	}
	if ev.Seq > rb.Seq {
		rb.Seq = ev.Seq
	}
	step := rb.StepByName(ev.Step)
	switch ev.Kind {
	case api.EventStep:
		if step != nil {
			step.State = api.StepState(ev.State)
			if step.State == api.StepFailed && ev.Message != "" {
				step.Error = ev.Message
			}
		}
		if ev.Step != "" {
			rb.Step = ev.Step
		}
		switch api.StepState(ev.State) {
		case api.StepRunning:
			rb.State = api.RunbookRunning
		case api.StepWaiting:
			rb.State = api.RunbookWaiting
		case api.StepFailed:
			rb.State = api.RunbookFailed
		case api.StepInterrupted:
			rb.State = api.RunbookInterrupted
		}
		if api.StepState(ev.State) != api.StepWaiting {
			rb.Waiting = nil
		}
	case api.EventEvidence:
		if step != nil && ev.Evidence != nil {
			step.Evidence = append(step.Evidence, *ev.Evidence)
		}
	case api.EventConfirm:
		if ev.Confirmation != nil {
			rb.Waiting = ev.Confirmation
			rb.State = api.RunbookWaiting
			if st := rb.StepByName(ev.Confirmation.Step); st != nil {
				st.State = api.StepWaiting
				rb.Step = st.Name
			}
		}
	case api.EventConfirmed:
		rb.Waiting = nil
	case api.EventFinished:
		if ev.State != "" {
			rb.State = api.RunbookState(ev.State)
		}
		if ev.Snapshot != nil {
			rb.Snapshot = ev.Snapshot
		}
		rb.Waiting = nil
		return m.loadRunbook(s)
	case api.EventOutput, api.EventProgress:
	default: // started, skipped, retry, resumed, interrupted, aborted
		if ev.Kind == api.EventAborted {
			rb.State = api.RunbookAborted
			rb.Waiting = nil
		}
		return m.loadRunbook(s)
	}
	if ev.Snapshot != nil {
		rb.Snapshot = ev.Snapshot
	}
	return nil
}

// eventText is one log line for an event.
func (m *Model) eventText(ev api.RunbookEvent) string {
	by := ""
	if ev.Actor != "" {
		by = " by " + ev.Actor
	}
	msg := ""
	if ev.Message != "" {
		msg = ": " + oneLine(ev.Message)
	}
	switch ev.Kind {
	case api.EventStarted:
		return "runbook " + ev.Runbook + " started" + by
	case api.EventStep:
		return ev.Step + " " + ev.State + msg
	case api.EventEvidence:
		if ev.Evidence == nil {
			return ev.Step + " evidence"
		}
		return ev.Step + " " + evidenceMark(*ev.Evidence) + " " + oneLine(ev.Evidence.Summary)
	case api.EventOutput:
		return ev.Step + " | " + strings.TrimRight(ev.Message, "\n")
	case api.EventConfirm:
		prompt := ""
		if ev.Confirmation != nil {
			prompt = ": " + oneLine(ev.Confirmation.Prompt)
		}
		return ev.Step + " waits for confirmation" + prompt + " (press c)"
	case api.EventConfirmed:
		return ev.Step + " confirmed" + by
	case api.EventSkipped:
		return ev.Step + " skipped" + by
	case api.EventRetry:
		return ev.Step + " retried" + by
	case api.EventResumed:
		return "resumed" + by + msg
	case api.EventInterrupted:
		return "interrupted" + msg
	case api.EventAborted:
		return "aborted" + by + msg
	case api.EventFinished:
		t := "finished: " + ev.State + msg
		if ev.Snapshot != nil {
			t += "; snapshot " + ev.Snapshot.Verdict
		}
		return t
	}
	return ev.Kind + " " + ev.Step + msg
}

// evidenceMark is ✓ for a condition met, - for a check that is not
// configured (preflight counts it as passed, but nothing was probed), and
// · for a condition not met yet, or a fact.
func evidenceMark(e api.Evidence) string {
	switch {
	case e.Kind == api.EvidenceCheck && strings.Contains(e.Summary, ": not configured"):
		return "-"
	case e.OK:
		return "✓"
	}
	return "·"
}

func (m *Model) logLine(t time.Time, text string) {
	if t.IsZero() {
		t = m.clock()
	}
	for _, l := range strings.Split(text, "\n") {
		m.rb.log = append(m.rb.log, clockTime(t, m.loc)+" "+l)
		if m.rb.logScroll > 0 { // paused: the lines shown stay put
			m.rb.logScroll++
		}
	}
	if over := len(m.rb.log) - maxLog; over > 0 {
		m.rb.log = append([]string(nil), m.rb.log[over:]...)
		m.rb.logScroll = min(m.rb.logScroll, max(0, len(m.rb.log)-1))
	}
}

// runbookKey handles a key of the runbook view.
func (m *Model) runbookKey(k tea.KeyPressMsg) tea.Cmd {
	s := m.current
	rb := s.runbook
	active := rb != nil && rb.Active()
	switch {
	case key.Matches(k, m.keys.Back):
		m.stopStream()
		m.view = m.rb.back
		if m.view == viewDashboard {
			m.current = nil
		}
		return nil
	case key.Matches(k, m.keys.Up):
		m.rb.logScroll = min(m.rb.logScroll+1, max(0, len(m.rb.log)-1))
		return nil
	case key.Matches(k, m.keys.Down):
		m.rb.logScroll = max(0, m.rb.logScroll-1)
		return nil
	case key.Matches(k, m.keys.Follow):
		m.rb.logScroll = 0
		return nil
	case key.Matches(k, m.keys.NewRunbook):
		if active {
			m.setFlash(s.Name+": a runbook is active already; one per site at a time", true)
			return nil
		}
		return m.openDialog(m.startForm(s))
	}
	if !active {
		if key.Matches(k, m.keys.Confirm, m.keys.Retry, m.keys.Resume, m.keys.Skip, m.keys.Abort, m.keys.DisableNow) {
			m.setFlash(s.Name+": no active runbook (n starts one; d on the dashboard disables maintenance)", true)
		}
		return nil
	}
	step := rb.StepByName(rb.Step)
	act := api.RunbookAction{ID: rb.ID, Step: rb.Step}
	switch {
	case key.Matches(k, m.keys.Confirm):
		if rb.Waiting == nil {
			m.setFlash("nothing waits for confirmation", true)
			return nil
		}
		return m.openDialog(m.confirmForm(s, rb))
	case key.Matches(k, m.keys.Retry):
		if step == nil || (step.State != api.StepFailed && step.State != api.StepInterrupted) {
			m.setFlash("only a failed or interrupted step can be retried", true)
			return nil
		}
		return m.openDialog(m.runbookYesNo(s, "Retry "+rb.Step+" on "+s.Name, "Run "+rb.Step+" again?", "retry "+rb.Step,
			func(ctx context.Context, g Gate) (*api.Runbook, error) { return g.RetryStep(ctx, act) }))
	case key.Matches(k, m.keys.Resume):
		if rb.State != api.RunbookInterrupted {
			m.setFlash("only an interrupted runbook can be resumed", true)
			return nil
		}
		return m.openDialog(m.runbookYesNo(s, "Resume the runbook on "+s.Name, "Continue at "+rb.Step+", where it stood?", "resume",
			func(ctx context.Context, g Gate) (*api.Runbook, error) {
				return g.ResumeRunbook(ctx, api.RunbookAction{ID: rb.ID})
			}))
	case key.Matches(k, m.keys.Skip):
		if step == nil || !step.Skippable {
			m.setFlash(rb.Step+" cannot be skipped", true)
			return nil
		}
		return m.openDialog(m.runbookYesNo(s, "Skip "+rb.Step+" on "+s.Name, "Mark "+rb.Step+" skipped and go on?", "skip "+rb.Step,
			func(ctx context.Context, g Gate) (*api.Runbook, error) { return g.SkipStep(ctx, act) }))
	case key.Matches(k, m.keys.Abort):
		return m.openDialog(m.runbookYesNo(s, "Abort the runbook on "+s.Name,
			"Stop the runbook. The mode stays as it is ("+m.modeNow(s)+"); D instead also puts the site back to live.", "abort",
			func(ctx context.Context, g Gate) (*api.Runbook, error) {
				return g.AbortRunbook(ctx, api.RunbookAction{ID: rb.ID})
			}))
	case key.Matches(k, m.keys.DisableNow):
		return m.openDialog(m.runbookYesNo(s, "Disable maintenance on "+s.Name+" now",
			"Abort the runbook, put "+s.Name+" back to live and resume RQ.", "disable now",
			func(ctx context.Context, g Gate) (*api.Runbook, error) {
				return g.AbortRunbook(ctx, api.RunbookAction{ID: rb.ID, Disable: true})
			}))
	}
	return nil
}

func (m *Model) modeNow(s *siteState) string {
	if s.status == nil {
		return "unknown"
	}
	return string(s.status.Mode)
}

// runbookYesNo is a y/N dialog that sends one runbook action.
func (m *Model) runbookYesNo(s *siteState, title, question, what string, call func(context.Context, Gate) (*api.Runbook, error)) *form {
	f := &form{title: title, yesNo: true, lines: []string{question}}
	f.submit = func(*form) (tea.Cmd, string) { return m.sendRunbook(s, what, call), "" }
	return f
}

// confirmForm confirms the waiting step; enable and migrate ask for the
// site's name to be typed, preflight lists its warnings.
func (m *Model) confirmForm(s *siteState, rb *api.Runbook) *form {
	w := rb.Waiting
	f := &form{title: "Confirm " + w.Step + " on " + s.Name}
	if w.Prompt != "" {
		f.lines = append(f.lines, w.Prompt)
	}
	for _, warn := range w.Warnings {
		f.lines = append(f.lines, "warning: "+warn)
	}
	if len(w.Warnings) > 0 {
		f.lines = append(f.lines, "Confirming acknowledges these warnings.")
	}
	a := api.RunbookAction{ID: rb.ID, Step: w.Step}
	call := func(a api.RunbookAction) func(context.Context, Gate) (*api.Runbook, error) {
		return func(ctx context.Context, g Gate) (*api.Runbook, error) { return g.ConfirmStep(ctx, a) }
	}
	if !w.TypeSiteName {
		f.yesNo = true
		f.lines = append(f.lines, "Run "+w.Step+" now?")
		f.submit = func(*form) (tea.Cmd, string) { return m.sendRunbook(s, "confirm "+w.Step, call(a)), "" }
		return f
	}
	f.fields = []field{m.textFieldOf("confirm", "type "+s.Name+" to confirm", "")}
	f.submit = func(f *form) (tea.Cmd, string) {
		if f.value("confirm") != s.Name {
			return nil, "type " + s.Name + " exactly to confirm"
		}
		a.SiteName = s.Name
		return m.sendRunbook(s, "confirm "+w.Step, call(a)), ""
	}
	return f
}

// startForm starts a runbook: mode, message, duration, skip migrate, and
// the site's name typed.
func (m *Model) startForm(s *siteState) *form {
	f := &form{
		title: "Start a runbook on " + s.Name,
		lines: []string{"preflight → enable → drain → snapshot → migrate → verify → disable. Steps that change the site wait for your confirmation."},
		fields: append(m.maintenanceFields(),
			field{label: "skip migrate", kind: toggleField, hint: "space to change"},
			field{label: "A/B", kind: toggleField, hint: "space: B, restored from the snapshot, serves readers while this site migrates ([ab] in gate.toml)"},
			m.confirmField(s)),
	}
	f.submit = func(f *form) (tea.Cmd, string) {
		if problem := checkMaintenanceForm(f, s); problem != "" {
			return nil, problem
		}
		o := api.RunbookOptions{Mode: api.Mode(f.value("mode")), Message: f.value("message"), For: f.value("for"),
			SkipMigrate: f.value("skip migrate") != "", AB: f.value("A/B") != ""}
		return m.sendRunbook(s, "start", func(ctx context.Context, g Gate) (*api.Runbook, error) {
			return g.StartRunbook(ctx, o)
		}), ""
	}
	return f
}

// sendRunbook returns the command that sends one runbook action.
func (m *Model) sendRunbook(s *siteState, what string, call func(context.Context, Gate) (*api.Runbook, error)) tea.Cmd {
	m.setFlash(fmt.Sprintf("%s: sending %s…", s.Name, what), false)
	ctx, g, name, timeout := m.ctx, s.Gate, s.Name, s.Timeout
	return func() tea.Msg {
		cctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		rb, err := call(cctx, g)
		return runbookAnswerMsg{site: name, what: what, rb: rb, err: timeoutError(err, timeout)}
	}
}

func (m *Model) onRunbookAnswer(msg runbookAnswerMsg) tea.Cmd {
	s := m.byName[msg.site]
	if s == nil {
		return nil
	}
	if msg.err != nil {
		m.setFlash(fmt.Sprintf("%s: %s: %s", s.Name, msg.what, m.describeError(msg.err)), true)
		return m.afterChange(s)
	}
	var cmds []tea.Cmd
	if msg.rb != nil {
		s.runbook = newerRunbook(s.runbook, msg.rb)
		s.runbookLoaded, s.runbookErr = true, nil
		m.setFlash(fmt.Sprintf("%s: %s: the runbook is %s at %s", s.Name, msg.what, s.runbook.State, s.runbook.Step), false)
		if m.view == viewRunbook && m.current == s && s.runbook.Active() && m.rb.stream == nil {
			cmds = append(cmds, m.startStream(s, s.runbook.Seq))
		}
	}
	// Aborting with disable, starting and confirming change the mode.
	cmds = append(cmds, m.afterChange(s))
	return tea.Batch(cmds...)
}

var stepSymbols = map[api.StepState]string{
	api.StepPending:     "·",
	api.StepWaiting:     "?",
	api.StepRunning:     "▶",
	api.StepDone:        "✓",
	api.StepFailed:      "✗",
	api.StepSkipped:     "↷",
	api.StepInterrupted: "!",
}

// stepMark is a step state's symbol and word, so it reads without colour.
func stepMark(state api.StepState) string {
	sym := stepSymbols[state]
	if sym == "" {
		sym = " "
	}
	return sym + " " + fit(string(state), 11)
}

func (m *Model) stepStyle(state api.StepState) func(string) string {
	switch state {
	case api.StepDone:
		return func(s string) string { return m.st.paint(&m.st.ok, s) }
	case api.StepFailed, api.StepInterrupted:
		return func(s string) string { return m.st.paint(&m.st.fail, s) }
	case api.StepRunning, api.StepWaiting:
		return func(s string) string { return m.st.paint(&m.st.warn, s) }
	case api.StepPending, api.StepSkipped:
		return func(s string) string { return m.st.paint(&m.st.faint, s) }
	}
	return func(s string) string { return s }
}

// runbookBody renders the checklist, the waiting confirmation and the log.
func (m *Model) runbookBody(f *frame, height int) {
	s := m.current
	now := m.clock()
	rb := s.runbook
	var top []string
	switch {
	case s.runbookErr != nil && rb == nil:
		top = append(top, wrap("cannot read the runbook: "+oneLine(s.runbookErr.Error()), m.width-2)...)
	case rb == nil && (m.rb.loading || !s.runbookLoaded):
		top = append(top, "reading the runbook…")
	case rb == nil:
		top = append(top, "no runbook has run on "+s.Name+": n starts one.")
	default:
		head := fmt.Sprintf("%s · %s at %s", rb.ID, strings.ToUpper(string(rb.State)), rb.Step)
		if !rb.Started.IsZero() {
			head += " · started " + dateTime(rb.Started, now, m.loc)
		}
		if rb.Actor != "" {
			head += " by " + rb.Actor
		}
		o := rb.Options
		if o.Mode != "" {
			head += " · " + string(o.Mode)
		}
		if o.SkipMigrate {
			head += " · skip migrate"
		}
		if o.AB {
			head += " · A/B"
		}
		top = append(top, m.st.paint(&m.st.title, cut(head, m.width)))
		if rb.Error != "" {
			for _, l := range wrap("error: "+oneLine(rb.Error), m.width-2) {
				top = append(top, m.st.paint(&m.st.errText, l))
			}
		}
		if !rb.Active() {
			top = append(top, "this runbook has ended: n starts a new one")
		}
		top = append(top, "")
		steps := rb.Steps
		if len(steps) == 0 {
			for _, name := range rb.Options.StepList() {
				steps = append(steps, api.RunbookStep{Name: name, State: api.StepPending})
			}
		}
		nameW := 10 // the in-place runbook's longest step name; an A/B one's are longer
		for _, st := range steps {
			nameW = max(nameW, len(st.Name))
		}
		evW := max(10, m.width-2-13-1-nameW-1)
		for _, st := range steps {
			ev := ""
			if st.State == api.StepFailed && st.Error != "" {
				ev = "error: " + oneLine(st.Error)
			} else if n := len(st.Evidence); n > 0 {
				ev = oneLine(st.Evidence[n-1].Summary)
			}
			if st.Attempts > 1 {
				ev = fmt.Sprintf("(attempt %d) %s", st.Attempts, ev)
			}
			cur := "  "
			if st.Name == rb.Step && rb.Active() {
				cur = "> "
			}
			top = append(top, cur+m.stepStyle(st.State)(stepMark(st.State))+" "+fit(st.Name, nameW)+" "+cut(ev, evW))
			top = append(top, progressLines(m.rb.progress, st.Name, m.width)...)
		}
		if st := s.status; st != nil {
			line := "site: " + m.st.paint(m.st.forMode(st.Mode), modeWord(st.Mode)) + " · " + string(st.Phase)
			if st.InFlight != nil || st.Store != nil {
				line += " · " + plural(len(st.InFlight), "write", "writes") + " in flight"
			}
			if s.err != nil {
				line += " · UNREACHABLE, data " + human.Ago(now.Sub(s.statusAt)) + " old"
			}
			top = append(top, "", cut(line, m.width))
		}
		top = append(top, m.abLines(s, rb)...)
		if sn := rb.Snapshot; sn != nil {
			top = append(top, "")
			top = append(top, wrap(fmt.Sprintf("snapshot %s · %s · %s", strings.ToUpper(sn.Verdict), human.Bytes(sn.Bytes), sn.Dir), m.width)...)
			if len(sn.Changed) > 0 {
				for _, l := range wrap("changed during the snapshot: "+strings.Join(sn.Changed, ", "), m.width-2) {
					top = append(top, "  "+l)
				}
			}
		}
		if w := rb.Waiting; w != nil && rb.Active() {
			top = append(top, "")
			ask := "WAITING FOR YOU: " + w.Step
			if w.Prompt != "" {
				ask += ": " + oneLine(w.Prompt)
			}
			if w.TypeSiteName {
				ask += " (c, then type " + s.Name + ")"
			} else {
				ask += " (c to confirm)"
			}
			for _, l := range wrap(ask, m.width-2) {
				top = append(top, m.st.paint(&m.st.warn, l))
			}
			for _, warn := range w.Warnings {
				top = append(top, cut("  warning: "+oneLine(warn), m.width))
			}
		}
	}
	for _, l := range top {
		f.add(l)
	}
	rest := height - len(top) - 2
	if rest < 1 {
		return
	}
	f.add("")
	note := m.rb.streamNote
	if note == "" {
		note = "not following"
	}
	if m.rb.logScroll > 0 {
		note = fmt.Sprintf("paused, %d newer lines below (G/end follows again) · %s", m.rb.logScroll, note)
	}
	f.add(m.st.paint(&m.st.heading, "LOG") + " " + m.st.paint(&m.st.faint, cut(note, m.width-5)))
	log := m.rb.log
	end := max(0, len(log)-m.rb.logScroll)
	start := max(0, end-rest)
	for _, l := range log[start:end] {
		f.add("  " + cut(l, m.width-2))
	}
	if len(log) == 0 {
		f.add("  (new events appear here)")
	}
}

// abLines show both sites of an A/B runbook side by side, and which one
// the public URL led to when the runbook last looked. B's mode comes from
// the console's own site of that name, when sites.toml has one.
func (m *Model) abLines(s *siteState, rb *api.Runbook) []string {
	ab := rb.AB
	if ab == nil {
		return nil
	}
	now := m.clock()
	serving := rb.Serving()
	head := "A/B · public URL " + ab.PublicURL + " → "
	switch {
	case ab.PublicChecked == nil:
		head += "not looked at yet"
	case serving == "":
		head += "neither site"
		if ab.PublicSite != "" {
			head += " (site " + ab.PublicSite + ")"
		}
	default:
		head += serving
	}
	if ab.PublicChecked != nil {
		head += ", seen " + dateTime(*ab.PublicChecked, now, m.loc)
	}
	side := func(letter, name, where string, st *api.Status, known bool) string {
		mark := "  "
		if serving == letter {
			mark = "▶ "
		}
		mode := "not in sites.toml"
		if known {
			mode = "unknown"
			if st != nil {
				mode = m.st.paint(m.st.forMode(st.Mode), modeWord(st.Mode))
			}
		}
		if name == "" {
			name = "?"
		}
		return mark + letter + " " + name + " · " + mode + " · " + where
	}
	a := side("A", s.Name, "this site", s.status, true)
	var bStatus *api.Status
	bKnown := false
	for _, o := range m.sites {
		if o != s && ab.BSite != "" && (o.Name == ab.BSite || (o.status != nil && o.status.Site == ab.BSite)) {
			bStatus, bKnown = o.status, true
			break
		}
	}
	b := side("B", ab.BSite, ab.BURL, bStatus, bKnown)
	out := []string{"", m.st.paint(&m.st.heading, cut(head, m.width))}
	if half := (m.width - 3) / 2; half >= 36 {
		return append(out, cut(fit(a, half)+" │ "+b, m.width))
	}
	return append(out, cut(a, m.width), cut(b, m.width))
}

// runbookBar lists the runbook keys that work now.
func (m *Model) runbookBar() []key.Binding {
	k := m.keys
	bs := []key.Binding{k.Back}
	if m.rb.logScroll > 0 {
		bs = append(bs, k.Follow)
	}
	rb := m.current.runbook
	if rb == nil || !rb.Active() {
		return append(bs, k.NewRunbook, k.Help, k.Quit)
	}
	if rb.Waiting != nil {
		bs = append(bs, k.Confirm)
	}
	if st := rb.StepByName(rb.Step); st != nil {
		if st.State == api.StepFailed || st.State == api.StepInterrupted {
			bs = append(bs, k.Retry)
		}
		if st.Skippable {
			bs = append(bs, k.Skip)
		}
	}
	if rb.State == api.RunbookInterrupted {
		bs = append(bs, k.Resume)
	}
	return append(bs, k.DisableNow, k.Abort, k.Help, k.Quit)
}
