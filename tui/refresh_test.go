package tui

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ckanops/ckanops/api"

	tea "charm.land/bubbletea/v2"
	"github.com/charmbracelet/x/ansi"
)

// A site whose gate never answers holds neither the screen nor the other
// sites: they are refreshed while it hangs, and it ends up shown as
// unreachable with a timeout.
func TestHungSiteDoesNotBlockOthers(t *testing.T) {
	var hungReturned atomic.Bool
	hung := newFakeGate()
	hung.statusFn = func(ctx context.Context) (*api.Status, error) {
		<-ctx.Done()
		hungReturned.Store(true)
		return nil, ctx.Err()
	}
	hung.healthErr = errors.New("no health either")
	var sites []Site
	for _, name := range []string{"alpha", "hung", "zulu"} {
		g := hung
		timeout := 2 * time.Second
		if name != "hung" {
			g = newFakeGate()
			g.status = liveStatus(name, 1)
			g.report = report(name, "2.10.4", 10, 100, 0, 0, 0, "ok")
			timeout = time.Minute
		}
		sites = append(sites, Site{Name: name, Gate: g, Timeout: timeout})
	}
	m, ticks := newTestModel(sites, 80, 24)

	batch, ok := m.Init()().(tea.BatchMsg)
	if !ok {
		t.Fatal("Init does not batch the refreshes")
	}
	msgs := make(chan tea.Msg, len(batch))
	n := 0
	for _, cmd := range batch {
		if cmd == nil {
			continue
		}
		n++
		go func() { msgs <- cmd() }()
	}
	if n != 3 {
		t.Fatalf("Init started %d refreshes, want 3", n)
	}

	// The two answering sites come back while the hung one still hangs.
	for range 2 {
		msg := (<-msgs).(refreshedMsg)
		if msg.site == "hung" {
			t.Fatal("the hung site answered before the others")
		}
		if hungReturned.Load() {
			t.Fatal("the others waited for the hung site")
		}
		feed(m, []tea.Msg{msg})
	}
	content := m.View().Content
	if !strings.Contains(content, "alpha    LIVE") || !strings.Contains(content, "zulu     LIVE") {
		t.Errorf("the answering sites are not shown:\n%s", content)
	}
	if s := m.byName["hung"]; !s.fetching || s.status != nil {
		t.Errorf("hung site: fetching=%v status=%v", s.fetching, s.status)
	}

	feed(m, []tea.Msg{<-msgs})
	s := m.byName["hung"]
	if !errors.Is(s.err, context.DeadlineExceeded) || !strings.Contains(s.err.Error(), "no answer within 2s (timeout)") {
		t.Errorf("hung site error: %v", s.err)
	}
	press(m, "t") // trouble first
	rows := m.sortedSites()
	if rows[0].Name != "hung" || rows[0].a.word != "unreach" {
		t.Errorf("the hung site is not first and unreachable: %s %s", rows[0].Name, rows[0].a.word)
	}
	m.selected = "hung"
	content = m.View().Content
	if !strings.Contains(content, "hung     ?") || !strings.Contains(content, "unreach") ||
		!strings.Contains(content, "hung: unreachable: no answer within 2s (timeout)") {
		t.Errorf("the hung site is not shown as unreachable with a timeout:\n%s", content)
	}
	// Every site has its next refresh scheduled.
	if len(*ticks) != 1+3 { // the clock and three refreshes
		t.Errorf("scheduled %d ticks, want 4: %v", len(*ticks), *ticks)
	}
}

func TestBackoff(t *testing.T) {
	m, _ := newTestModel(nil, 80, 24)
	m.opts.Refresh = 5 * time.Second
	want := []time.Duration{5, 5, 10, 20, 40, 60, 60}
	for failures, w := range want {
		if got := m.nextDelay(failures); got != w*time.Second {
			t.Errorf("after %d failures: wait %s, want %s", failures, got, w*time.Second)
		}
	}
}

func TestRefreshSchedule(t *testing.T) {
	g := newFakeGate()
	g.status = liveStatus("prod", 1)
	m, ticks := newTestModel([]Site{{Name: "prod", Gate: g}}, 80, 24)
	s := m.byName["prod"]

	if cmd := m.startRefresh(s); cmd == nil {
		t.Fatal("no refresh started")
	}
	if cmd := m.startRefresh(s); cmd != nil {
		t.Fatal("a second refresh started while one is in flight")
	}
	fail := refreshedMsg{site: "prod", err: errors.New("gate status: connection refused"), at: t0}
	feed(m, []tea.Msg{fail})
	due := (*ticks)[len(*ticks)-1].(refreshDueMsg)
	if s.failures != 1 || s.nextAt != t0.Add(5*time.Second) {
		t.Errorf("failures %d, next at %s", s.failures, s.nextAt)
	}
	// A tick of an older schedule is ignored.
	if cmd := feed(m, []tea.Msg{refreshDueMsg{site: "prod", gen: due.gen - 1}})[0]; cmd != nil {
		t.Error("a stale tick started a refresh")
	}
	if cmd := feed(m, []tea.Msg{due})[0]; cmd == nil {
		t.Error("the due tick did not start a refresh")
	}
	fail.at = t0.Add(5 * time.Second)
	feed(m, []tea.Msg{fail})
	if s.failures != 2 || s.nextAt != t0.Add(15*time.Second) {
		t.Errorf("after 2 failures: next at %s, want 10s later", s.nextAt)
	}
}

func TestStale(t *testing.T) {
	g := newFakeGate()
	m, _ := newTestModel([]Site{{Name: "prod", Gate: g}}, 80, 24)
	s := m.byName["prod"]
	s.status = liveStatus("prod", 1)
	for _, c := range []struct {
		age   time.Duration
		stale bool
	}{{9 * time.Second, false}, {10 * time.Second, false}, {11 * time.Second, true}} {
		s.statusAt = t0.Add(-c.age)
		if a := m.assess(s, t0); a.stale != c.stale || (c.stale && a.rank != 1) {
			t.Errorf("data %s old: stale=%v rank=%d", c.age, a.stale, a.rank)
		}
	}
}

// Update does no I/O: key presses and messages make no call to any gate;
// calls happen only when the returned commands run.
func TestUpdateDoesNoIO(t *testing.T) {
	sites, gates := fourSites()
	gates["data"].runbook = midDrainRunbook()
	gates["data"].runbook.Waiting = &api.Confirmation{Step: "drain", Prompt: "go on?"}
	m, _ := newTestModel(sites, 100, 30)
	var cmds []tea.Cmd
	cmds = append(cmds, m.Init())
	for name, g := range gates {
		feed(m, []tea.Msg{refreshedMsg{site: name, status: g.status, report: g.report, at: t0}})
	}
	keys := [][]string{
		{"down", "up", "j", "k", "/", "pro", "enter", "/", "esc", "?", "?", "ctrl+r"},
		{"enter", "down", "up", "esc"},
		{"e", "right", "tab", "msg", "tab", "2h", "tab", "prod", "enter"},
		{"e", "esc", "d", "y", "s", "y", "d", "n"},
	}
	for _, ks := range keys {
		cmds = append(cmds, press(m, ks...)...)
	}
	m.selected = "data"
	cmds = append(cmds, press(m, "r")...)
	m.byName["data"].runbook = midDrainRunbook()
	m.byName["data"].runbookLoaded = true
	m.byName["data"].runbook.Waiting = &api.Confirmation{Step: "drain"}
	cmds = append(cmds, press(m, "c", "y", "S", "a", "n", "D", "y", "R", "u", "up", "down", "esc")...)
	_, cmd := m.Update(tea.WindowSizeMsg{Width: 140, Height: 40})
	cmds = append(cmds, cmd)
	_ = m.View()

	for name, g := range gates {
		if n := g.total(); n != 0 {
			t.Errorf("%s: Update made %d calls: %v", name, n, g.calls)
		}
	}
	sent := 0
	for _, c := range cmds {
		if c != nil {
			sent++
		}
	}
	if sent == 0 {
		t.Fatal("no command was returned at all")
	}
	// Running a command is what calls a gate.
	press(m, "esc")
	m.selected = "data"
	cmds = press(m, "d", "y")
	run(cmds[1])
	if gates["data"].n("SetMode") != 1 {
		t.Errorf("running the command did not call the gate")
	}
}

func TestStreamReconnects(t *testing.T) {
	g := &streamGate{}
	ch := make(chan tea.Msg, 16)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan tea.Msg)
	go func() { done <- runStream(ctx, g, 40, 7, ch)() }()

	var got []string
	for msg := range ch {
		switch msg := msg.(type) {
		case streamEventMsg:
			got = append(got, "event")
			if msg.id != 7 {
				t.Errorf("event of stream %d", msg.id)
			}
		case streamErrorMsg:
			got = append(got, "error "+msg.retryIn.String())
		case streamEndedMsg:
			got = append(got, "ended")
		}
	}
	if want := "event error 1s event ended"; strings.Join(got, " ") != want {
		t.Errorf("stream sent %q, want %q", strings.Join(got, " "), want)
	}
	if want := []int64{40, 41}; len(g.sinces) != 2 || g.sinces[0] != want[0] || g.sinces[1] != want[1] {
		t.Errorf("reconnected with since %v, want %v", g.sinces, want)
	}
	if _, ok := (<-done).(streamClosedMsg); !ok {
		t.Error("the stream's command did not end")
	}
}

// streamGate breaks its first stream after one event, then ends the second.
type streamGate struct {
	fakeGate
	sinces []int64
}

func (g *streamGate) RunbookEvents(ctx context.Context, since int64, fn func(api.RunbookEvent) error) error {
	g.sinces = append(g.sinces, since)
	if err := fn(api.RunbookEvent{Seq: since + 1, Kind: api.EventOutput}); err != nil {
		return err
	}
	if len(g.sinces) == 1 {
		return errors.New("gate runbook events: stream broken: unexpected EOF")
	}
	return nil
}

// Leaving the runbook view and coming back reads the runbook again and
// streams from its Seq.
func TestRunbookReattach(t *testing.T) {
	m, gates := fourSitesModel(80, 24)
	g := gates["data"]
	g.runbook = midDrainRunbook()
	m.selected = "data"
	for round, seq := range []int64{40, 45} {
		g.mu.Lock()
		g.runbook.Seq = seq
		g.mu.Unlock()
		cmds := press(m, "r")
		batch := feed(m, run(cmds[0]))[0]().(tea.BatchMsg)
		done := make(chan tea.Msg)
		go func() { done <- batch[0]() }()
		for g.n("RunbookEvents") != round+1 {
			time.Sleep(time.Millisecond)
		}
		press(m, "esc")
		<-done
		if got := g.sinces[round]; got != seq {
			t.Errorf("attach %d streamed from %d, want %d", round, got, seq)
		}
	}
	if g.n("Runbook") != 2 {
		t.Errorf("Runbook read %d times, want 2", g.n("Runbook"))
	}
}

func TestRunbookConfirmTypesName(t *testing.T) {
	m, gates := fourSitesModel(80, 24)
	g := gates["data"]
	rb := midDrainRunbook()
	rb.State, rb.Step = api.RunbookWaiting, api.StepMigrate
	rb.StepByName("drain").State = "done"
	rb.StepByName("snapshot").State = "done"
	rb.StepByName("migrate").State = "waiting"
	rb.Waiting = &api.Confirmation{Step: "migrate", Prompt: "run the migration now?", TypeSiteName: true}
	g.runbook = rb
	m.selected = "data"
	cmds := press(m, "r")
	cmd := feed(m, run(cmds[0]))[0]
	if cmd == nil {
		t.Fatal("no stream for an active runbook")
	}
	defer m.Close()

	press(m, "c", "dta", "enter")
	if m.dialog == nil || m.dialog.err != "type data exactly to confirm" {
		t.Fatalf("a wrong name was taken: %+v", m.dialog)
	}
	cmds = press(m, "backspace", "backspace", "backspace", "data", "enter")
	run(cmds[len(cmds)-1])
	if g.n("ConfirmStep:migrate:data") != 1 {
		t.Errorf("confirm calls: %v", g.calls)
	}
	// S skips only skippable steps: migrate is.
	press(m, "S")
	if m.dialog == nil || !strings.Contains(m.dialog.title, "Skip migrate") {
		t.Errorf("S does not offer to skip migrate")
	}
	cmds = press(m, "esc", "D", "y")
	if m.dialog != nil {
		t.Error("D y leaves a dialog open")
	}
	run(cmds[2])
	if g.n("AbortRunbook:disable") != 1 {
		t.Errorf("D y did not abort with disable: %v", g.calls)
	}
}

// r on a site without an active runbook offers to start one; the site's
// name must be typed.
func TestRunbookStart(t *testing.T) {
	m, gates := fourSitesModel(80, 24)
	g := gates["prod"]
	m.selected = "prod"
	cmds := press(m, "r")
	feed(m, run(cmds[0]))
	if m.dialog == nil || m.dialog.title != "Start a runbook on prod" {
		t.Fatalf("no start form: %+v", m.dialog)
	}
	press(m, "tab", "Upgrading", "tab", "90m", "tab", "space", "tab", "space", "tab", "prod!", "enter")
	if m.dialog == nil || m.dialog.err != "type prod exactly to confirm" {
		t.Fatalf("a wrong name was taken: %+v", m.dialog)
	}
	cmds = press(m, "backspace", "enter")
	if m.dialog != nil {
		t.Fatalf("the right name did not start: %q", m.dialog.err)
	}
	stream := feed(m, run(cmds[1]))[0]
	defer m.Close()
	if g.n("StartRunbook") != 1 {
		t.Fatalf("StartRunbook calls %d", g.n("StartRunbook"))
	}
	o := g.started[0]
	if o.Mode != api.ModeReadOnly || o.Message != "Upgrading" || o.For != "90m" || !o.SkipMigrate || !o.AB {
		t.Errorf("options %+v", o)
	}
	if stream == nil || m.rb.stream == nil {
		t.Error("the started runbook is not followed")
	}
	if !strings.Contains(m.View().Content, "▶ running     preflight") {
		t.Errorf("the checklist does not show the start:\n%s", m.View().Content)
	}
}

func TestQuitEndsStream(t *testing.T) {
	m, gates := fourSitesModel(80, 24)
	gates["data"].runbook = midDrainRunbook()
	m.selected = "data"
	cmds := press(m, "r")
	batch := feed(m, run(cmds[0]))[0]().(tea.BatchMsg)
	done := make(chan tea.Msg)
	go func() { done <- batch[0]() }()
	cmds = press(m, "ctrl+c")
	if _, ok := cmds[0]().(tea.QuitMsg); !ok {
		t.Error("ctrl+c does not quit")
	}
	if _, ok := (<-done).(streamClosedMsg); !ok {
		t.Error("the stream did not end on quit")
	}
}

// A site whose url reaches another site's gate (the public URL after an
// A/B switch) cannot be changed from the console.
func TestActionsRefuseAnotherSitesGate(t *testing.T) {
	m, gates := fourSitesModel(100, 30)
	st := *gates["prod"].status
	st.Site = "prod-b"
	feed(m, []tea.Msg{refreshedMsg{site: "prod", status: &st, report: gates["prod"].report, at: t0}})
	m.selected = "prod"
	for _, k := range []string{"e", "d", "s", "r"} {
		cmds := press(m, k)
		if m.dialog != nil || m.view != viewDashboard {
			t.Fatalf("%s opened a dialog or view on the wrong site's gate", k)
		}
		for _, c := range cmds {
			run(c)
		}
		if !strings.Contains(m.flash.text, `is site "prod-b", not prod`) {
			t.Fatalf("%s: flash %q", k, m.flash.text)
		}
	}
	if n := gates["prod"].total(); n != 0 {
		t.Fatalf("%d gate calls", n)
	}
}

// An A/B runbook's view shows both sites side by side, B's state from the
// console's own site of that name, and which one the public URL leads to.
func TestRunbookViewShowsBothSitesOfAnABRun(t *testing.T) {
	for _, width := range []int{120, 60} {
		m, _ := fourSitesModel(width, 40)
		rb := midDrainRunbook()
		rb.Options.AB = true
		rb.Steps = nil
		for _, name := range api.ABSteps {
			state := api.StepDone
			if name == api.StepMigrate {
				state = api.StepRunning
			} else if i, j := slices.Index(api.ABSteps, name), slices.Index(api.ABSteps, api.StepMigrate); i > j {
				state = api.StepPending
			}
			rb.Steps = append(rb.Steps, api.RunbookStep{Name: name, State: state})
		}
		rb.Step = api.StepMigrate
		rb.AB = &api.RunbookAB{BURL: "http://127.0.0.1:8081", PublicURL: "https://data.example.org",
			BSite: "staging", PublicSite: "staging", PublicChecked: ptrTime(t0.Add(-time.Minute))}
		m.selected = "data"
		press(m, "r")
		feed(m, []tea.Msg{runbookLoadedMsg{site: "data", rb: rb}})
		view := ansi.Strip(m.View().Content)
		for _, want := range []string{"A/B · public URL https://data.example.org → B, seen ", "  A data · ", "▶ B staging · ", "http://127.0.0.1:8081", "restore_b", "switch_to_a"} {
			if !strings.Contains(view, want) {
				t.Errorf("width %d: the view lacks %q:\n%s", width, want, view)
			}
		}
		if strings.Contains(view, "not in sites.toml") {
			t.Errorf("width %d: B is in sites.toml:\n%s", width, view)
		}
	}
}
