package tui

import (
	"context"
	"sync"
	"time"

	"github.com/ckanops/ckanops/api"

	tea "charm.land/bubbletea/v2"

	"github.com/ckanops/ckanops/ckanclient"
)

// fakeGate is a Gate whose answers a test sets, and which counts calls.
type fakeGate struct {
	mu    sync.Mutex
	calls map[string]int

	status    *api.Status
	statusErr error
	statusFn  func(ctx context.Context) (*api.Status, error) // overrides status
	report    *api.Report
	healthErr error
	delay     time.Duration // every read waits this long (or until ctx ends)

	modeReqs []api.ModeRequest
	modeErr  error

	scheduleReqs []api.ScheduleRequest
	cancels      []*int64 // the expected version of every CancelSchedule
	scheduleErr  error    // the answer of SetSchedule and CancelSchedule

	runbook   *api.Runbook
	rbActions []string
	events    chan api.RunbookEvent // RunbookEvents sends what arrives here
	sinces    []int64               // the since of every RunbookEvents call
	started   []api.RunbookOptions
	audit     []api.AuditEntry

	// counters are what successive Metrics calls answer, one each; the
	// last is repeated. None: the gate serves no metrics (404).
	counters   []ckanclient.GateCounters
	metricsErr error
}

func newFakeGate() *fakeGate { return &fakeGate{calls: map[string]int{}} }

func (g *fakeGate) count(name string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.calls[name]++
}

// n is how many times the named call was made.
func (g *fakeGate) n(name string) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.calls[name]
}

func (g *fakeGate) total() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	n := 0
	for _, c := range g.calls {
		n += c
	}
	return n
}

func (g *fakeGate) wait(ctx context.Context) error {
	if g.delay <= 0 {
		return nil
	}
	t := time.NewTimer(g.delay)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (g *fakeGate) Status(ctx context.Context) (*api.Status, error) {
	g.count("Status")
	if g.statusFn != nil {
		return g.statusFn(ctx)
	}
	if err := g.wait(ctx); err != nil {
		return nil, err
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.statusErr != nil {
		return nil, g.statusErr
	}
	st := *g.status
	return &st, nil
}

func (g *fakeGate) Health(ctx context.Context) (*api.Report, error) {
	g.count("Health")
	if err := g.wait(ctx); err != nil {
		return nil, err
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.healthErr != nil || g.report == nil {
		return nil, g.healthErr
	}
	r := *g.report
	return &r, nil
}

func (g *fakeGate) SetMode(_ context.Context, req api.ModeRequest) (*api.Status, error) {
	g.count("SetMode")
	g.mu.Lock()
	defer g.mu.Unlock()
	g.modeReqs = append(g.modeReqs, req)
	if g.modeErr != nil {
		return nil, g.modeErr
	}
	st := *g.status
	st.Mode, st.Message, st.Since, st.Until = req.Mode, req.Message, t0, nil
	if req.For != "" {
		d, _ := time.ParseDuration(req.For)
		st.Until = ptrTime(t0.Add(d))
	}
	st.Version++
	switch {
	case req.Mode == api.ModeLive:
		st.Phase, st.InFlight = api.PhaseLive, nil
	case len(st.InFlight) > 0:
		st.Phase = api.PhaseDraining
	default:
		st.Phase = api.PhaseQuiesced
	}
	st.Gates = append([]api.GateInfo(nil), st.Gates...)
	for i := range st.Gates {
		st.Gates[i].Version, st.Gates[i].Phase = st.Version, st.Phase
	}
	g.status = &st
	out := st
	return &out, nil
}

// SetSchedule plans the window as the gate would at t0.
func (g *fakeGate) SetSchedule(_ context.Context, req api.ScheduleRequest) (*api.Status, error) {
	g.count("SetSchedule")
	g.mu.Lock()
	defer g.mu.Unlock()
	g.scheduleReqs = append(g.scheduleReqs, req)
	if g.scheduleErr != nil {
		return nil, g.scheduleErr
	}
	st := *g.status
	sc := req.Schedule(t0)
	st.Schedule = &sc
	st.Version++
	g.status = &st
	out := st
	return &out, nil
}

func (g *fakeGate) CancelSchedule(_ context.Context, expect *int64, _ string) (*api.Status, error) {
	g.count("CancelSchedule")
	g.mu.Lock()
	defer g.mu.Unlock()
	g.cancels = append(g.cancels, expect)
	if g.scheduleErr != nil {
		return nil, g.scheduleErr
	}
	st := *g.status
	st.Schedule = nil
	st.Version++
	g.status = &st
	out := st
	return &out, nil
}

func (g *fakeGate) SuspendJobs(context.Context, api.JobsRequest) (*api.JobsState, error) {
	g.count("SuspendJobs")
	return &api.JobsState{Suspended: true, Changed: true}, nil
}

func (g *fakeGate) ResumeJobs(context.Context, api.JobsRequest) (*api.JobsState, error) {
	g.count("ResumeJobs")
	return &api.JobsState{Suspended: false, Changed: true}, nil
}

func (g *fakeGate) AuditTail(_ context.Context, n int) ([]api.AuditEntry, error) {
	g.count("AuditTail")
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.audit[max(0, len(g.audit)-n):], nil
}

func (g *fakeGate) Metrics(ctx context.Context) (*ckanclient.GateCounters, error) {
	g.count("Metrics")
	if err := g.wait(ctx); err != nil {
		return nil, err
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.metricsErr != nil {
		return nil, g.metricsErr
	}
	if len(g.counters) == 0 {
		return nil, nil
	}
	c := g.counters[0]
	if len(g.counters) > 1 {
		g.counters = g.counters[1:]
	}
	return &c, nil
}

func (g *fakeGate) Runbook(context.Context) (*api.Runbook, error) {
	g.count("Runbook")
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.runbook == nil {
		return nil, nil
	}
	rb := *g.runbook
	return &rb, nil
}

func (g *fakeGate) rbAction(name string) (*api.Runbook, error) {
	g.count(name)
	g.mu.Lock()
	defer g.mu.Unlock()
	g.rbActions = append(g.rbActions, name)
	if g.runbook == nil {
		return nil, nil
	}
	rb := *g.runbook
	return &rb, nil
}

func (g *fakeGate) StartRunbook(_ context.Context, o api.RunbookOptions) (*api.Runbook, error) {
	g.mu.Lock()
	g.started = append(g.started, o)
	rb := midDrainRunbook()
	rb.Options, rb.State, rb.Step, rb.Seq = o, api.RunbookRunning, api.StepPreflight, 50
	for i := range rb.Steps {
		rb.Steps[i].State, rb.Steps[i].Evidence = api.StepPending, nil
	}
	rb.Steps[0].State = api.StepRunning
	g.runbook = rb
	g.mu.Unlock()
	return g.rbAction("StartRunbook")
}
func (g *fakeGate) ConfirmStep(_ context.Context, a api.RunbookAction) (*api.Runbook, error) {
	return g.rbAction("ConfirmStep:" + a.Step + ":" + a.SiteName)
}
func (g *fakeGate) RetryStep(_ context.Context, a api.RunbookAction) (*api.Runbook, error) {
	return g.rbAction("RetryStep")
}
func (g *fakeGate) ResumeRunbook(_ context.Context, a api.RunbookAction) (*api.Runbook, error) {
	return g.rbAction("ResumeRunbook")
}
func (g *fakeGate) SkipStep(_ context.Context, a api.RunbookAction) (*api.Runbook, error) {
	return g.rbAction("SkipStep")
}
func (g *fakeGate) AbortRunbook(_ context.Context, a api.RunbookAction) (*api.Runbook, error) {
	if a.Disable {
		return g.rbAction("AbortRunbook:disable")
	}
	return g.rbAction("AbortRunbook")
}

func (g *fakeGate) RunbookEvents(ctx context.Context, since int64, fn func(api.RunbookEvent) error) error {
	g.count("RunbookEvents")
	g.mu.Lock()
	g.sinces = append(g.sinces, since)
	g.mu.Unlock()
	if g.events == nil {
		<-ctx.Done()
		return ctx.Err()
	}
	for {
		select {
		case ev, ok := <-g.events:
			if !ok {
				return nil
			}
			if ev.Seq <= since {
				continue
			}
			if err := fn(ev); err != nil {
				return err
			}
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// The fixed time of the tests.
var t0 = time.Date(2026, 3, 14, 15, 0, 0, 0, time.UTC)

func fixedClock() time.Time { return t0 }

// newTestModel builds a model for sites with a fixed clock, no colour,
// UTC, and commands from m.after recorded instead of run.
func newTestModel(sites []Site, w, h int) (*Model, *[]tea.Msg) {
	m := New(sites, Options{Clock: fixedClock, NoColor: true, Refresh: 5 * time.Second})
	m.loc = time.UTC
	var ticks []tea.Msg
	m.after = func(_ time.Duration, msg tea.Msg) tea.Cmd {
		ticks = append(ticks, msg)
		return nil
	}
	m.Update(tea.WindowSizeMsg{Width: w, Height: h})
	return m, &ticks
}

// keys sends each key to m; a string of several runes is typed.
func press(m *Model, keys ...string) []tea.Cmd {
	var cmds []tea.Cmd
	for _, k := range keys {
		var msg tea.KeyPressMsg
		switch k {
		case "enter":
			msg = tea.KeyPressMsg{Code: tea.KeyEnter}
		case "esc":
			msg = tea.KeyPressMsg{Code: tea.KeyEscape}
		case "tab":
			msg = tea.KeyPressMsg{Code: tea.KeyTab}
		case "shift+tab":
			msg = tea.KeyPressMsg{Code: tea.KeyTab, Mod: tea.ModShift}
		case "up":
			msg = tea.KeyPressMsg{Code: tea.KeyUp}
		case "down":
			msg = tea.KeyPressMsg{Code: tea.KeyDown}
		case "left":
			msg = tea.KeyPressMsg{Code: tea.KeyLeft}
		case "right":
			msg = tea.KeyPressMsg{Code: tea.KeyRight}
		case "space":
			msg = tea.KeyPressMsg{Code: tea.KeySpace, Text: " "}
		case "backspace":
			msg = tea.KeyPressMsg{Code: tea.KeyBackspace}
		case "ctrl+c":
			msg = tea.KeyPressMsg{Code: 'c', Mod: tea.ModCtrl}
		default:
			runes := []rune(k)
			if len(runes) > 1 {
				for _, r := range runes {
					_, cmd := m.Update(tea.KeyPressMsg{Code: r, Text: string(r)})
					cmds = append(cmds, cmd)
				}
				continue
			}
			msg = tea.KeyPressMsg{Code: runes[0], Text: k}
		}
		_, cmd := m.Update(msg)
		cmds = append(cmds, cmd)
	}
	return cmds
}

// run executes cmd and every command of a batch, concurrently, and
// returns their messages, leaving out what m.after recorded (nil
// commands). It waits for every command.
func run(cmd tea.Cmd) []tea.Msg {
	if cmd == nil {
		return nil
	}
	msg := cmd()
	batch, ok := msg.(tea.BatchMsg)
	if !ok {
		if msg == nil {
			return nil
		}
		return []tea.Msg{msg}
	}
	var (
		mu  sync.Mutex
		out []tea.Msg
		wg  sync.WaitGroup
	)
	for _, c := range batch {
		if c == nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			msgs := run(c)
			mu.Lock()
			out = append(out, msgs...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	return out
}

// feed gives every message to m and returns the commands it answered with.
func feed(m *Model, msgs []tea.Msg) []tea.Cmd {
	var cmds []tea.Cmd
	for _, msg := range msgs {
		_, cmd := m.Update(msg)
		cmds = append(cmds, cmd)
	}
	return cmds
}

// streamNext returns the next stream message of the runbook view, given
// the command Update answered the last one with: the stream's waiter,
// alone or in a batch with refreshes (whose answers are dropped).
func streamNext(cmd tea.Cmd) tea.Msg {
	msg := cmd()
	b, ok := msg.(tea.BatchMsg)
	if !ok {
		return msg
	}
	ch := make(chan tea.Msg, len(b))
	for _, c := range b {
		if c != nil {
			go func() { ch <- c() }()
		}
	}
	for msg := range ch {
		switch msg.(type) {
		case streamEventMsg, streamErrorMsg, streamEndedMsg, streamClosedMsg:
			return msg
		}
	}
	return nil
}
