package tui

import (
	"fmt"
	"strings"
	"testing"
	"time"

	tea "charm.land/bubbletea/v2"
	"github.com/charmbracelet/x/ansi"
	"github.com/charmbracelet/x/exp/golden"

	"github.com/ckanops/ckanops/api"
	"github.com/ckanops/ckanops/ckanclient"
)

// windowSites is a dashboard of planned windows and overruns: prod has
// a window in 2h10m not announced yet, stats one tomorrow that pages
// announce already (run by the runbook), geo is read-only 25m past its
// planned end, lib is down past its end with its runbook interrupted,
// data drains under a running runbook, and archive is plain live.
func windowSites(w, h int) (*Model, map[string]*fakeGate) {
	gates := map[string]*fakeGate{}
	var sites []Site
	for _, name := range []string{"prod", "stats", "data", "archive", "lib", "geo"} {
		g := newFakeGate()
		gates[name] = g
		g.status = liveStatus(name, 4)
		g.report = report(name, "2.10.4", 10, 100, 0.2, 0, 0, "ok")
		sites = append(sites, Site{Name: name, URL: "https://" + name + ".example.org", Gate: g, Timeout: 5 * time.Second})
	}
	gates["prod"].status = liveStatus("prod", 7)
	gates["prod"].status.Schedule = &api.Schedule{At: t0.Add(2*time.Hour + 10*time.Minute), For: "2h", Mode: api.ModeReadOnly,
		AnnounceFrom: t0.Add(time.Hour + 10*time.Minute), Message: "Upgrading to CKAN 2.11", Actor: "ssh:alice (SHA256:x) via ops-token", Reason: "CKAN 2.11"}

	gates["stats"].status.Schedule = &api.Schedule{At: t0.Add(20 * time.Hour), For: "1h30m0s", Mode: api.ModeDown,
		AnnounceFrom: t0.Add(-4 * time.Hour), Runbook: true}

	gates["data"].status = drainingStatus("data")
	gates["data"].runbook = midDrainRunbook()

	geo := liveStatus("geo", 9)
	geo.Mode, geo.Phase, geo.Since = api.ModeReadOnly, api.PhaseQuiesced, t0.Add(-2*time.Hour-25*time.Minute)
	geo.Until, geo.Overrun, geo.Message = ptrTime(t0.Add(-25*time.Minute)), true, "Reindexing; back by 14:35"
	gates["geo"].status = geo

	lib := liveStatus("lib", 5)
	lib.Mode, lib.Phase, lib.Since = api.ModeDown, api.PhaseQuiesced, t0.Add(-5*time.Hour)
	lib.Until, lib.Overrun = ptrTime(t0.Add(-2*time.Hour)), true
	gates["lib"].status = lib
	gates["lib"].runbook = runbookAt("lib", api.RunbookInterrupted, api.StepMigrate)

	m, _ := newTestModel(sites, w, h)
	for _, s := range sites {
		g := gates[s.Name]
		feed(m, []tea.Msg{refreshedMsg{site: s.Name, status: g.status, report: g.report, rb: g.runbook, at: t0.Add(-time.Second)}})
	}
	return m, gates
}

// rowOf is the dashboard row of site in a frame.
func rowOf(content, site string) string {
	for _, l := range strings.Split(content, "\n") {
		if strings.HasPrefix(strings.TrimLeft(l, " >!"), site+" ") || strings.TrimLeft(l, " >!") == site {
			return l
		}
	}
	return ""
}

func TestDashboardWindows(t *testing.T) {
	for _, size := range []struct{ w, h int }{{140, 40}, {80, 24}, {60, 20}, {40, 15}} {
		name := fmt.Sprintf("%dx%d", size.w, size.h)
		t.Run(name, func(t *testing.T) {
			m, _ := windowSites(size.w, size.h)
			m.selected = "geo"
			content := frameOf(t, m)
			for site, want := range map[string]string{
				"prod":    "window in 2h10m",
				"stats":   "window in 20h00m, announced",
				"geo":     "OVERRUN by 25m",
				"lib":     "OVERRUN, INTERRUPTED at",
				"data":    "running at drain",
				"archive": "",
			} {
				row := rowOf(content, site)
				if row == "" {
					t.Errorf("no row for %s:\n%s", site, content)
					continue
				}
				if size.w < 80 && len(want) > 15 {
					want = want[:15] // narrow: the cell may be cut
				}
				if !strings.Contains(row, want) {
					t.Errorf("%s row %q lacks %q", site, row, want)
				}
			}
			if !strings.Contains(strings.Split(content, "\n")[1], "RUNBOOK/WINDOW") && size.w >= 60 {
				t.Errorf("the plan column is not headed RUNBOOK/WINDOW:\n%s", content)
			}
			if size.w >= 80 && !strings.Contains(content, "6 sites · 1 need you · 2 to look at") {
				t.Errorf("the title does not count the overrun as something to look at:\n%s", content)
			}
			// The selected site's note says what the overrun is.
			if !strings.Contains(strings.Join(strings.Fields(content), " "), "geo: OVERRUN, planned end 14:35 passed 25m ago: still read-only") {
				t.Errorf("the note does not explain the overrun:\n%s", content)
			}
			golden.RequireEqual(t, content)
		})
	}
}

// The plan column at widths where it is cut, and the views for tiny
// terminals, still say OVERRUN and window.
func TestDashboardWindowsNarrow(t *testing.T) {
	for _, size := range []struct{ w, h int }{{30, 10}, {60, 5}, {15, 4}} {
		m, _ := windowSites(size.w, size.h)
		m.selected = "archive"
		content := m.View().Content
		checkFrame(t, m, content)
		for site, want := range map[string]string{"geo": "OVER", "prod": "wind", "lib": "OVER"} {
			row := rowOf(content, site)
			if size.w < 20 {
				continue // the tiny list shows as many sites, and as much of each, as fit
			}
			if !strings.Contains(row, want) {
				t.Errorf("%dx%d: %s row %q lacks %q:\n%s", size.w, size.h, site, row, want, content)
			}
		}
	}
}

// Only the cell, at the widths the layout gives it.
func TestPlanCell(t *testing.T) {
	m, _ := windowSites(140, 40)
	rows := m.sortedSites()
	cell := map[string]string{}
	for _, r := range rows {
		cell[r.Name] = planWords(r, t0)
	}
	for site, want := range map[string]string{
		"archive": "",
		"data":    "running at drain",
		"geo":     "OVERRUN by 25m",
		"lib":     "OVERRUN, INTERRUPTED at migrate",
		"prod":    "window in 2h10m",
		"stats":   "window in 20h00m, announced",
	} {
		if cell[site] != want {
			t.Errorf("%s: %q, want %q", site, cell[site], want)
		}
	}
	// Once its start has passed (the gates have not started it yet).
	if got := windowWords(m.byName["prod"].status.Schedule, t0.Add(3*time.Hour)); got != "window due" {
		t.Errorf("a window past its start: %q", got)
	}
	// Announced from AnnounceFrom on.
	if got := windowWords(m.byName["prod"].status.Schedule, t0.Add(90*time.Minute)); got != "window in 40m, announced" {
		t.Errorf("an announced window: %q", got)
	}
	for _, w := range []int{140, 80, 60, 40, 30} {
		cols := layout(w, rows, t0)
		var plan *column
		for i := range cols {
			if strings.HasPrefix(cols[i].name, "RUNBOOK") || cols[i].name == "WINDOW" {
				plan = &cols[i]
			}
		}
		if plan == nil {
			t.Errorf("width %d: no plan column", w)
			continue
		}
		if plan.name != "RUNBOOK/WINDOW" {
			t.Errorf("width %d: plan column named %q", w, plan.name)
		}
		if got := fit(cellPlan(m, ranked{siteState: m.byName["geo"]}, t0), plan.width); !strings.HasPrefix(got, "OVERRUN"[:min(7, plan.width-1)]) {
			t.Errorf("width %d: geo's cell %q", w, got)
		}
	}
	// Windows only: the column is headed WINDOW.
	only := []ranked{{siteState: m.byName["prod"]}, {siteState: m.byName["archive"]}}
	if got := planHeader(only); got != "WINDOW" {
		t.Errorf("header with windows only: %q", got)
	}
	if got := planHeader([]ranked{{siteState: m.byName["data"]}}); got != "RUNBOOK" {
		t.Errorf("header with runbooks only: %q", got)
	}
}

// t sorts an overrun with the trouble: after those that need you, first
// among those to look at.
func TestOverrunSortsWithTrouble(t *testing.T) {
	m, _ := windowSites(140, 40)
	order := func() string {
		var names []string
		for _, r := range m.sortedSites() {
			names = append(names, r.Name)
		}
		return strings.Join(names, " ")
	}
	if got, want := order(), "archive data geo lib prod stats"; got != want {
		t.Errorf("order %q, want %q", got, want)
	}
	press(m, "t")
	if got, want := order(), "lib geo data archive prod stats"; got != want {
		t.Errorf("trouble order %q, want %q", got, want)
	}
	if a := m.assess(m.byName["geo"], t0); a.rank != 1 || !a.overrun || a.needsYou {
		t.Errorf("geo: %+v", a)
	}
}

func TestSiteViewWindow(t *testing.T) {
	m, gates := windowSites(80, 30)
	m.selected = "prod"
	feed(m, run(press(m, "enter")[0]))
	content := frameOf(t, m)
	flat := strings.Join(strings.Fields(content), " ")
	for _, want := range []string{
		"window read-only from 17:10 for 2h, until 19:10 (starts in 2h10m)",
		"announced from 16:10 (in 1h10m)",
		"a plain mode change (no runbook) · planned by ssh:alice (SHA256:x) via ops-token · reason \"CKAN 2.11\"",
		"message: Upgrading to CKAN 2.11",
		"w window W cancel",
	} {
		if !strings.Contains(flat, want) {
			t.Errorf("the site view lacks %q:\n%s", want, content)
		}
	}
	golden.RequireEqual(t, content)

	// stats: tomorrow, announced, by the runbook.
	press(m, "esc")
	m.selected = "stats"
	feed(m, run(press(m, "enter")[0]))
	flat = strings.Join(strings.Fields(frameOf(t, m)), " ")
	for _, want := range []string{"down from Mar 15 11:00 for 1h30m, until Mar 15 12:30 (starts in 20h00m)",
		"announced since 11:00", "the runbook runs it, confirming its own steps"} {
		if !strings.Contains(flat, want) {
			t.Errorf("stats' site view lacks %q:\n%s", want, frameOf(t, m))
		}
	}
	// Without a window, no W in the key bar.
	press(m, "esc")
	m.selected = "archive"
	feed(m, run(press(m, "enter")[0]))
	if bar := lastLine(frameOf(t, m)); !strings.Contains(bar, "w window") || strings.Contains(bar, "W cancel") {
		t.Errorf("archive's key bar: %q", bar)
	}
	_ = gates
}

func TestSiteViewOverrun(t *testing.T) {
	m, _ := windowSites(80, 30)
	m.selected = "geo"
	feed(m, run(press(m, "enter")[0]))
	content := frameOf(t, m)
	flat := strings.Join(strings.Fields(content), " ")
	want := "OVERRUN planned end 14:35 passed 25m ago: still read-only; ending maintenance stays your call: d disables"
	if !strings.Contains(flat, want) {
		t.Errorf("the site view lacks %q:\n%s", want, content)
	}
	golden.RequireEqual(t, content)
}

// openWindowDialog opens prod's site view and its window dialog.
func openWindowDialog(t *testing.T) (*Model, *fakeGate) {
	t.Helper()
	m, gates := windowSites(80, 30)
	m.selected = "prod"
	feed(m, run(press(m, "enter")[0]))
	press(m, "w")
	if m.dialog == nil || !strings.Contains(m.dialog.title, "Plan a maintenance window on prod") {
		t.Fatalf("w does not open the window dialog: %+v", m.dialog)
	}
	return m, gates["prod"]
}

// fill types the window dialog: start, for, message, announce; then the
// mode (right: down), the runbook toggle (space) and the name.
func fill(m *Model, start, length, message, announce string, down, runbook bool, name string) []tea.Cmd {
	keys := []string{start, "tab", length, "tab", message, "tab", announce, "tab"}
	if down {
		keys = append(keys, "right")
	}
	keys = append(keys, "tab")
	if runbook {
		keys = append(keys, "space")
	}
	keys = append(keys, "tab", name, "enter")
	var cmds []tea.Cmd
	for _, k := range keys {
		if k == "" {
			continue
		}
		cmds = append(cmds, press(m, k)...)
	}
	return cmds
}

func TestWindowDialogRefuses(t *testing.T) {
	for _, c := range []struct {
		name, start, length, announce, confirm, want string
	}{
		{"bad start", "tomorrow 5pm", "2h", "", "prod", `start "tomorrow 5pm" is not a time: give it in RFC 3339 (such as 2026-03-14T17:00:00Z) or as +DURATION from now`},
		{"bad relative start", "+2 hours", "2h", "", "prod", `start "+2 hours": after + give a duration from now`},
		{"start in the past", "2026-03-14T14:00:00Z", "2h", "", "prod", "start 14:00 is in the past (now 15:00): a window starts in the future"},
		{"no start", "", "2h", "", "prod", "start is missing"},
		{"no length", "+2h", "", "", "prod", "for is missing"},
		{"bad length", "+2h", "2 hours", "", "prod", `for "2 hours" is not a duration`},
		{"too long", "+2h", "200h", "", "prod", "a window lasts at most"},
		{"bad announce", "+2h", "2h", "a day", "prod", `announce "a day" is not a duration`},
		{"wrong name", "+2h", "2h", "", "prdo", "type prod exactly to confirm"},
	} {
		t.Run(c.name, func(t *testing.T) {
			m, g := openWindowDialog(t)
			fill(m, c.start, c.length, "", c.announce, false, false, c.confirm)
			if m.dialog == nil {
				t.Fatal("the dialog closed")
			}
			if !strings.Contains(m.dialog.err, c.want) {
				t.Errorf("error %q, want it to hold %q", m.dialog.err, c.want)
			}
			if !strings.Contains(frameOf(t, m), "✗ "+m.dialog.err[:20]) {
				t.Errorf("the error is not shown:\n%s", frameOf(t, m))
			}
			if n := g.n("SetSchedule"); n != 0 {
				t.Errorf("%d SetSchedule sent", n)
			}
			if m.byName["prod"].pending != "" {
				t.Errorf("pending %q", m.byName["prod"].pending)
			}
		})
	}
}

func TestWindowDialogGolden(t *testing.T) {
	m, _ := openWindowDialog(t)
	fill(m, "2026-03-14T14:00:00Z", "2h", "Upgrading to CKAN 2.12", "", true, true, "prod")
	golden.RequireEqual(t, frameOf(t, m))
}

func TestWindowPlan(t *testing.T) {
	m, g := openWindowDialog(t)
	cmds := fill(m, "+3h", "90m", "Upgrading to CKAN 2.12", "2h", true, true, "prod")
	send := cmds[len(cmds)-1]
	if m.dialog != nil || send == nil {
		t.Fatalf("the dialog did not send: %+v", m.dialog)
	}
	if s := m.byName["prod"]; s.pending != "plan window" || s.status.Version != 7 {
		t.Errorf("before the answer: pending %q, version %d", s.pending, s.status.Version)
	}
	if n := g.n("SetSchedule"); n != 0 {
		t.Fatalf("Update sent %d SetSchedule itself", n)
	}
	msgs := run(send)
	if n := g.n("SetSchedule"); n != 1 {
		t.Fatalf("%d SetSchedule sent", n)
	}
	req := g.scheduleReqs[0]
	if !req.At.Equal(t0.Add(3*time.Hour)) || req.For != "90m" || req.Mode != api.ModeDown || !req.Runbook ||
		req.Announce != "2h" || req.Message != "Upgrading to CKAN 2.12" || req.ExpectVersion == nil || *req.ExpectVersion != 7 {
		t.Errorf("request %+v (expect %v)", req, req.ExpectVersion)
	}
	before := g.n("Status")
	follow := feed(m, msgs)[0]
	content := frameOf(t, m)
	if !strings.Contains(content, "prod: window planned: down from 18:00 for 1h30m, until 19:30 (starts in 3h00m)") {
		t.Errorf("the answer is not shown:\n%s", content)
	}
	if s := m.byName["prod"]; s.pending != "" || s.status.Version != 8 || s.status.Schedule == nil {
		t.Errorf("after the answer: pending %q, status %+v", s.pending, s.status)
	}
	if follow == nil {
		t.Fatal("the answer is not followed by a refresh")
	}
	feed(m, run(follow))
	if g.n("Status") != before+1 || g.n("AuditTail") < 2 {
		t.Errorf("after the answer: %d status reads, %d audit reads", g.n("Status")-before, g.n("AuditTail"))
	}
}

func TestWindowConflict(t *testing.T) {
	m, g := openWindowDialog(t)
	g.scheduleErr = &ckanclient.ConflictError{Expected: new(int64(7)), Current: api.Status{
		Mode: api.ModeReadOnly, Version: 9, Actor: "ckan:admin", Since: t0.Add(-20 * time.Second)}}
	cmds := fill(m, "+3h", "2h", "", "", false, false, "prod")
	feed(m, run(cmds[len(cmds)-1]))
	content := frameOf(t, m)
	want := "prod: plan window: nothing was done: someone else changed prod meanwhile (by ckan:admin, 20s ago); it is now READ-ONLY, version 9 (you saw 7)"
	if !strings.Contains(m.flash.text, want) || !m.flash.err {
		t.Errorf("flash %q, want %q", m.flash.text, want)
	}
	if !strings.Contains(content, "prod: plan window: nothing was done: someone else changed prod") {
		t.Errorf("the conflict is not shown:\n%s", content)
	}
	if s := m.byName["prod"]; s.pending != "" || s.status.Version != 7 {
		t.Errorf("after a conflict: pending %q, version %d", s.pending, s.status.Version)
	}
}

func TestWindowCancel(t *testing.T) {
	m, gates := windowSites(80, 30)
	// archive has no window: W says so and opens nothing.
	m.selected = "archive"
	feed(m, run(press(m, "enter")[0]))
	press(m, "W")
	if m.dialog != nil || !strings.Contains(m.flash.text, "archive has no planned window: nothing to cancel") {
		t.Fatalf("W without a window: dialog %+v, flash %q", m.dialog, m.flash.text)
	}
	press(m, "esc")

	m.selected = "prod"
	feed(m, run(press(m, "enter")[0]))
	press(m, "W")
	if m.dialog == nil || !strings.Contains(m.dialog.title, "Cancel the planned window on prod") {
		t.Fatalf("W does not open the cancel dialog: %+v", m.dialog)
	}
	if !strings.Contains(strings.Join(m.dialog.lines, "\n"), "Planned: read-only from 17:10 for 2h, until 19:10 (starts in 2h10m), announced from 16:10 (in 1h10m).") {
		t.Errorf("the dialog does not say what is planned:\n%s", frameOf(t, m))
	}
	press(m, "prdo", "enter")
	if m.dialog == nil || m.dialog.err != "type prod exactly to confirm" {
		t.Fatalf("a wrong name: dialog %+v", m.dialog)
	}
	g := gates["prod"]
	if g.n("CancelSchedule") != 0 {
		t.Fatal("a wrong name sent the cancel")
	}
	cmds := press(m, "backspace", "backspace", "backspace", "backspace", "prod", "enter")
	msgs := run(cmds[len(cmds)-1])
	if g.n("CancelSchedule") != 1 || g.cancels[0] == nil || *g.cancels[0] != 7 {
		t.Fatalf("cancels %v", g.cancels)
	}
	feed(m, msgs)
	if !strings.Contains(m.flash.text, "prod: planned window cancelled, version 8") {
		t.Errorf("flash %q", m.flash.text)
	}
	if s := m.byName["prod"]; s.status.Schedule != nil || s.pending != "" {
		t.Errorf("after cancelling: %+v, pending %q", s.status.Schedule, s.pending)
	}
	if bar := lastLine(frameOf(t, m)); strings.Contains(bar, "W cancel") {
		t.Errorf("the key bar offers W without a window: %q", bar)
	}

	// A conflict on cancel says nothing was done.
	g.mu.Lock()
	g.status.Schedule = &api.Schedule{At: t0.Add(time.Hour), For: "1h", Mode: api.ModeReadOnly, AnnounceFrom: t0}
	g.mu.Unlock()
	feed(m, []tea.Msg{refreshedMsg{site: "prod", status: g.status, report: g.report, at: t0}})
	g.scheduleErr = &ckanclient.ConflictError{Current: api.Status{Mode: api.ModeLive, Version: 12}}
	cmds = press(m, "W", "prod", "enter")
	feed(m, run(cmds[len(cmds)-1]))
	if !strings.Contains(m.flash.text, "prod: cancel window: nothing was done: someone else changed prod meanwhile; it is now LIVE, version 12") {
		t.Errorf("flash %q", m.flash.text)
	}
}

// w and W need a known status (the version a change expects), and wait
// for an answer in flight.
func TestWindowKeysGuarded(t *testing.T) {
	m, _ := windowSites(80, 30)
	m.selected = "prod"
	feed(m, run(press(m, "enter")[0]))
	s := m.byName["prod"]
	s.pending = "read-only"
	press(m, "w")
	if m.dialog != nil || !strings.Contains(m.flash.text, "still waiting for the gate's answer") {
		t.Errorf("w while an answer is pending: dialog %v, flash %q", m.dialog != nil, m.flash.text)
	}
	s.pending = ""
	st := s.status
	s.status = nil
	press(m, "w")
	if m.dialog != nil || !strings.Contains(m.flash.text, "its status is not known yet") {
		t.Errorf("w without a status: dialog %v, flash %q", m.dialog != nil, m.flash.text)
	}
	other := *st
	other.Site = "prod-b"
	s.status = &other
	press(m, "W")
	if m.dialog != nil || !strings.Contains(m.flash.text, `is site "prod-b", not prod`) {
		t.Errorf("W on another site's gate: dialog %v, flash %q", m.dialog != nil, m.flash.text)
	}
}

// A read-only console offers neither key and opens no dialog.
func TestWindowReadOnlyConsole(t *testing.T) {
	sites, gates := fourSites()
	gates["prod"].status.Schedule = &api.Schedule{At: t0.Add(time.Hour), For: "1h", Mode: api.ModeReadOnly, AnnounceFrom: t0}
	m := New(sites, Options{Clock: fixedClock, NoColor: true, Refresh: 5 * time.Second, ReadOnly: "bob is a viewer"})
	m.loc = time.UTC
	m.after = func(time.Duration, tea.Msg) tea.Cmd { return nil }
	m.Update(tea.WindowSizeMsg{Width: 140, Height: 30})
	m.Update(refreshedMsg{site: "prod", status: gates["prod"].status, report: gates["prod"].report, at: t0})
	m.selected = "prod"
	press(m, "enter")
	if bar := lastLine(viewText(m)); strings.Contains(bar, "w window") || strings.Contains(bar, "W cancel") {
		t.Errorf("the key bar offers w/W to a viewer: %q", bar)
	}
	for _, k := range []string{"w", "W"} {
		press(m, k)
		if m.dialog != nil {
			t.Fatalf("%s opened a dialog for a viewer", k)
		}
		if !strings.Contains(m.flash.text, "bob is a viewer: nothing was changed") {
			t.Errorf("%s: flash %q", k, m.flash.text)
		}
	}
	if n := gates["prod"].n("SetSchedule") + gates["prod"].n("CancelSchedule"); n != 0 {
		t.Errorf("%d schedule calls from a viewer", n)
	}
}

func TestWindowLength(t *testing.T) {
	for in, want := range map[string]string{"2h": "2h", "2h0m0s": "2h", "90m": "1h30m", "45m": "45m", "1m30s": "1m30s", "bogus": "bogus"} {
		if got := windowLength(&api.Schedule{For: in}); got != want {
			t.Errorf("%s: %q, want %q", in, got, want)
		}
	}
}

func TestHelpListsWindowKeys(t *testing.T) {
	m, _ := fourSitesModel(80, 24)
	press(m, "?")
	content := frameOf(t, m)
	for _, want := range []string{"w           plan a maintenance window", "W           cancel the planned window"} {
		if !strings.Contains(content, want) {
			t.Errorf("the help lacks %q:\n%s", want, content)
		}
	}
}

// With colour, the windows dashboard, an overrun's site view and the
// window dialog still fit the terminal.
func TestWindowColorFrameFits(t *testing.T) {
	m, _ := windowSites(80, 24)
	m.st = newStyles(false)
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
	m.selected = "geo"
	press(m, "enter")
	check("overrun site view")
	if !strings.Contains(ansi.Strip(m.View().Content), "OVERRUN   planned end 14:35 passed 25m ago") {
		t.Errorf("the overrun is not shown:\n%s", ansi.Strip(m.View().Content))
	}
	press(m, "w")
	check("window dialog")
}
