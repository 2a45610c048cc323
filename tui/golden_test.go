package tui

import (
	"strings"
	"testing"
	"time"

	"github.com/ckanops/ckanops/api"

	tea "charm.land/bubbletea/v2"
	"github.com/charmbracelet/x/ansi"
	"github.com/charmbracelet/x/exp/golden"

	"github.com/ckanops/ckanops/ckanclient"
)

// frame renders m as the terminal would show it, without colour.
func frameOf(t *testing.T, m *Model) string {
	t.Helper()
	v := m.View()
	if !v.AltScreen {
		t.Error("the view does not ask for the alternate screen")
	}
	checkFrame(t, m, v.Content)
	return v.Content
}

// checkFrame checks that a frame fills the terminal exactly, without
// escape codes.
func checkFrame(t *testing.T, m *Model, content string) {
	t.Helper()
	lines := strings.Split(content, "\n")
	if len(lines) != m.height {
		t.Errorf("frame has %d lines, want %d", len(lines), m.height)
	}
	for i, l := range lines {
		if w := len([]rune(l)); w > m.width {
			t.Errorf("line %d is %d cells wide, more than %d: %q", i, w, m.width, l)
		}
	}
	if strings.Contains(content, "\x1b") {
		t.Errorf("NoColor frame holds escape codes: %q", content)
	}
}

func TestDashboard(t *testing.T) {
	for _, size := range []struct {
		name string
		w, h int
	}{{"80x24", 80, 24}, {"140x40", 140, 40}} {
		t.Run(size.name, func(t *testing.T) {
			m, _ := fourSitesModel(size.w, size.h)
			golden.RequireEqual(t, frameOf(t, m))
		})
	}
}

func TestDashboardOrder(t *testing.T) {
	m, _ := fourSitesModel(140, 40)
	order := func() string {
		var names []string
		for _, r := range m.sortedSites() {
			names = append(names, r.Name)
		}
		return strings.Join(names, " ")
	}
	// By name by default, so rows do not move while read.
	if got, want := order(), "archive data prod staging"; got != want {
		t.Errorf("order %q, want %q", got, want)
	}
	// t: archive is unreachable; data drains and staging is stale; prod is healthy.
	press(m, "t")
	if got, want := order(), "archive data staging prod"; got != want {
		t.Errorf("trouble order %q, want %q", got, want)
	}
	press(m, "t")
	if got, want := order(), "archive data prod staging"; got != want {
		t.Errorf("t again: order %q, want %q", got, want)
	}
}

func TestDashboardFilter(t *testing.T) {
	m, _ := fourSitesModel(80, 24)
	press(m, "/", "ta")
	if !m.filtering {
		t.Fatal("/ does not open the filter")
	}
	content := frameOf(t, m)
	for _, want := range []string{"staging", "data"} {
		if !strings.Contains(content, want) {
			t.Errorf("filter %q hides %s", "ta", want)
		}
	}
	if strings.Contains(content, "prod ") || strings.Contains(content, "archive ") {
		t.Errorf("filter %q lets other sites through:\n%s", "ta", content)
	}
	if c := m.View().Cursor; c == nil || c.Position.Y != 1 {
		t.Errorf("the cursor is not in the filter field: %+v", c)
	}
	press(m, "enter")
	if m.filtering || m.filter.Value() != "ta" {
		t.Errorf("enter does not keep the filter: filtering=%v value=%q", m.filtering, m.filter.Value())
	}
	press(m, "/", "esc")
	if m.filter.Value() != "" {
		t.Errorf("esc does not clear the filter")
	}
}

func TestSiteView(t *testing.T) {
	m, _ := fourSitesModel(80, 40)
	m.selected = "data"
	cmds := press(m, "enter")
	if m.view != viewSite || m.current.Name != "data" {
		t.Fatalf("enter does not open the site view")
	}
	feed(m, run(cmds[0])) // the last runbook: none
	golden.RequireEqual(t, frameOf(t, m))
	press(m, "esc")
	if m.view != viewDashboard {
		t.Errorf("esc does not go back to the dashboard")
	}
}

func TestEnableFlow(t *testing.T) {
	m, gates := fourSitesModel(80, 24)
	g := gates["prod"]
	m.selected = "prod"

	var cmds []tea.Cmd
	cmds = append(cmds, press(m, "e", "right", "tab", "Upgrading to CKAN 2.11", "tab", "2h", "tab", "prdo", "enter")...)
	for _, c := range cmds {
		run(c)
	}
	if m.dialog == nil {
		t.Fatal("a wrongly typed name closed the dialog")
	}
	if n := g.n("SetMode"); n != 0 {
		t.Fatalf("a wrongly typed name sent %d SetMode", n)
	}
	t.Run("1_wrong_name", func(t *testing.T) {
		content := frameOf(t, m)
		if !strings.Contains(content, "type prod exactly to confirm") {
			t.Errorf("no error for the wrong name")
		}
		golden.RequireEqual(t, content)
	})

	cmds = press(m, "backspace", "backspace", "backspace", "backspace", "prod", "enter")
	send := cmds[len(cmds)-1]
	if m.dialog != nil || send == nil {
		t.Fatal("the right name does not send the change")
	}
	for _, c := range cmds[:len(cmds)-1] {
		run(c)
	}
	if n := g.n("SetMode"); n != 0 {
		t.Fatalf("typing sent %d SetMode", n)
	}
	t.Run("2_sending", func(t *testing.T) {
		content := frameOf(t, m)
		if !strings.Contains(content, "prod: sending down…") {
			t.Errorf("no sending state")
		}
		if s := m.byName["prod"]; s.status.Mode != api.ModeLive {
			t.Errorf("the mode changed on screen before the gate answered")
		}
		golden.RequireEqual(t, content)
	})

	msgs := run(send)
	if n := g.n("SetMode"); n != 1 {
		t.Fatalf("%d SetMode sent, want 1", n)
	}
	req := g.modeReqs[0]
	if req.Mode != api.ModeDown || req.Message != "Upgrading to CKAN 2.11" || req.For != "2h" ||
		req.ExpectVersion == nil || *req.ExpectVersion != 7 {
		t.Errorf("request %+v", req)
	}
	feed(m, msgs)
	t.Run("3_answered", func(t *testing.T) {
		content := frameOf(t, m)
		if !strings.Contains(content, "prod: now DOWN (quiesced), version 8") {
			t.Errorf("the gate's answer is not shown")
		}
		golden.RequireEqual(t, content)
	})
}

func TestEnableConflict(t *testing.T) {
	m, gates := fourSitesModel(80, 24)
	g := gates["prod"]
	g.modeErr = &ckanclient.ConflictError{Current: api.Status{
		Mode: api.ModeReadOnly, Version: 9, Actor: "ckan:admin", Since: t0.Add(-20 * time.Second)}}
	m.selected = "prod"
	cmds := press(m, "e", "tab", "tab", "tab", "prod", "enter")
	feed(m, run(cmds[len(cmds)-1]))
	content := frameOf(t, m)
	if !strings.Contains(content, "not changed: the mode was changed by ckan:admin 20s ago") {
		t.Errorf("conflict not phrased as wanted:\n%s", content)
	}
	if s := m.byName["prod"]; s.status.Mode != api.ModeLive || s.pending != "" {
		t.Errorf("after a conflict: mode %s, pending %q", s.status.Mode, s.pending)
	}
}

func TestDisableAndJobs(t *testing.T) {
	m, gates := fourSitesModel(80, 24)
	m.selected = "data"
	press(m, "d")
	if m.dialog == nil || !m.dialog.yesNo {
		t.Fatal("d does not ask y/N")
	}
	cmds := press(m, "enter") // the default is no
	if m.dialog != nil || cmds[0] != nil {
		t.Fatal("enter on y/N does not cancel")
	}
	press(m, "d")
	cmds = press(m, "y")
	feed(m, run(cmds[0]))
	g := gates["data"]
	if len(g.modeReqs) != 1 || g.modeReqs[0].Mode != api.ModeLive {
		t.Fatalf("disable sent %+v", g.modeReqs)
	}
	if s := m.byName["data"]; s.status.Mode != api.ModeLive {
		t.Errorf("mode after disable: %s", s.status.Mode)
	}

	press(m, "s")
	if m.dialog == nil || !strings.Contains(m.dialog.title, "Suspend RQ") {
		t.Fatalf("s does not ask to suspend RQ: %+v", m.dialog)
	}
	cmds = press(m, "y")
	feed(m, run(cmds[0]))
	if g.n("SuspendJobs") != 1 {
		t.Errorf("SuspendJobs calls: %d", g.n("SuspendJobs"))
	}
}

func TestRunbookMidDrain(t *testing.T) {
	m, gates := fourSitesModel(80, 24)
	g := gates["data"]
	g.runbook = midDrainRunbook()
	g.events = make(chan api.RunbookEvent, 10)
	m.selected = "data"

	cmds := press(m, "r")
	if m.view != viewRunbook {
		t.Fatal("r does not open the runbook view")
	}
	cmd := feed(m, run(cmds[0]))[0] // the record; it is active, so the stream starts
	batch, ok := cmd().(tea.BatchMsg)
	if !ok || len(batch) != 2 {
		t.Fatalf("attaching returned %T, want the stream and its waiter", cmd())
	}
	done := make(chan tea.Msg)
	go func() { done <- batch[0]() }()
	wait := batch[1]
	for _, ev := range drainEvents() {
		g.events <- ev
		_, wait = m.Update(streamNext(wait))
	}
	content := frameOf(t, m)
	if !strings.Contains(content, "drain      waiting: 2 writes in flight on gate web-1") {
		t.Errorf("the drain's latest evidence is not shown")
	}
	golden.RequireEqual(t, content)

	// Leaving ends the stream's command.
	press(m, "esc")
	if _, ok := (<-done).(streamClosedMsg); !ok {
		t.Error("the stream did not end when the view was left")
	}
	if m.view != viewDashboard {
		t.Errorf("esc went to view %d", m.view)
	}
}

func TestHelp(t *testing.T) {
	m, _ := fourSitesModel(80, 24)
	press(m, "?")
	content := frameOf(t, m)
	for _, b := range append(append(m.keys.global(), m.keys.dashboard()...), m.keys.runbook()...) {
		if !strings.Contains(content, b.Help().Key) {
			t.Errorf("help lacks %s", b.Help().Key)
		}
	}
	golden.RequireEqual(t, content)
	press(m, "?")
	if m.help {
		t.Error("? does not close the help")
	}
}

// Below 80x24 the console degrades instead of refusing: the dashboard
// keeps the columns that fit, and a tiny terminal lists the sites.
func TestTooSmall(t *testing.T) {
	m, _ := fourSitesModel(79, 24)
	content := frameOf(t, m)
	if strings.Contains(content, "too small") || !strings.Contains(content, "archive") {
		t.Errorf("79x24 is refused:\n%s", content)
	}
	golden.RequireEqual(t, content)
	for _, size := range [][2]int{{100, 23}, {39, 12}, {19, 5}, {10, 3}} {
		m.Update(tea.WindowSizeMsg{Width: size[0], Height: size[1]})
		content := frameOf(t, m)
		if strings.Contains(content, "too small") || !strings.Contains(content, "data") {
			t.Errorf("%dx%d is refused:\n%s", size[0], size[1], content)
		}
	}
}

// With colour, every frame still fits the terminal, and the mode reads
// as a word too.
func TestColorFrameFits(t *testing.T) {
	sites, gates := fourSites()
	gates["data"].runbook = midDrainRunbook()
	m := New(sites, Options{Clock: fixedClock, Refresh: 5 * time.Second})
	defer m.Close()
	m.after = func(time.Duration, tea.Msg) tea.Cmd { return nil }
	for name, g := range gates {
		feed(m, []tea.Msg{refreshedMsg{site: name, status: g.status, report: g.report, at: t0}})
	}
	m.Update(tea.WindowSizeMsg{Width: 80, Height: 24})
	check := func(what string) {
		t.Helper()
		content := m.View().Content
		if !strings.Contains(content, "\x1b[") {
			t.Errorf("%s: no colour at all", what)
		}
		lines := strings.Split(content, "\n")
		if len(lines) != 24 {
			t.Errorf("%s: %d lines", what, len(lines))
		}
		for i, l := range lines {
			if w := ansi.StringWidth(l); w > 80 {
				t.Errorf("%s: line %d is %d wide", what, i, w)
			}
		}
	}
	check("dashboard")
	if !strings.Contains(ansi.Strip(m.View().Content), "READ-ONLY") {
		t.Error("the mode is not spelled out")
	}
	m.selected = "data"
	press(m, "e")
	check("enable dialog")
	press(m, "esc", "enter")
	check("site view")
	press(m, "esc", "r")
	feed(m, []tea.Msg{runbookLoadedMsg{site: "data", rb: midDrainRunbook()}})
	check("runbook view")
	press(m, "?")
	check("help")
}

// A site whose gate has seen actions it does not know, and applies a
// surface that is not CKAN's own: the site view says both, and the
// dashboard marks the site.
func TestSiteViewUnknownActionsAndSurfaceWarning(t *testing.T) {
	sites, gates := fourSites()
	st := *gates["prod"].status
	st.UnknownActions = []string{"harvest_source_list", "dcat_catalog_show"}
	st.UnknownActionCount = 3
	st.Surface = &api.SurfaceInfo{Applied: "2.12", CKANVersion: "2.13.0", Reason: "status_show reports CKAN 2.13.0, which has no surface of its own",
		Warning: "surface 2.12 applied to CKAN 2.13.0; unknown actions are refused"}
	m, _ := newTestModel(sites, 100, 40)
	feed(m, []tea.Msg{refreshedMsg{site: "prod", status: &st, report: gates["prod"].report, at: t0}})
	m.selected = "prod"
	dash := frameOf(t, m)
	if !strings.Contains(dash, "3 unknown actions") {
		t.Errorf("the dashboard does not mark the site:\n%s", dash)
	}
	cmds := press(m, "enter")
	feed(m, run(cmds[0]))
	view := frameOf(t, m)
	for _, want := range []string{"3 unknown, refused in read-only: harvest_source_list, dcat_catalog_show and 1 more",
		"ckanops actions --learn prod", "WARNING surface 2.12 applied to CKAN 2.13.0"} {
		if !strings.Contains(strings.Join(strings.Fields(view), " "), want) {
			t.Errorf("the site view lacks %q:\n%s", want, view)
		}
	}
}
