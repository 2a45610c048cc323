package tui

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/ckanops/ckanops/api"

	tea "charm.land/bubbletea/v2"
	"github.com/charmbracelet/x/exp/golden"
)

// runbookAt is midDrainRunbook moved to step on site, in state; the steps
// before step are done.
func runbookAt(site string, state api.RunbookState, step string) *api.Runbook {
	rb := midDrainRunbook()
	rb.Site, rb.State, rb.Step = site, state, step
	past := true
	for i := range rb.Steps {
		st := &rb.Steps[i]
		st.Evidence = nil
		switch {
		case st.Name == step:
			past = false
			st.State = api.StepState(state)
		case past:
			st.State = api.StepDone
		default:
			st.State = api.StepPending
		}
	}
	return rb
}

// everyState is a dashboard with a site in every state: healthy (prod),
// a runbook running (data), one waiting for the operator (stats), one
// failed (geo), one interrupted (lib), and an unreachable site
// (archive). Configured out of name order, to see the sort.
func everyState(w, h int) (*Model, map[string]*fakeGate) {
	gates := map[string]*fakeGate{}
	var sites []Site
	for _, name := range []string{"prod", "stats", "data", "archive", "lib", "geo"} {
		g := newFakeGate()
		gates[name] = g
		g.status = liveStatus(name, 4)
		g.report = report(name, "2.10.4", 10, 100, 0.2, 0, 0, "ok")
		sites = append(sites, Site{Name: name, URL: "https://" + name + ".example.org", Gate: g, Timeout: 5 * time.Second})
	}
	gates["data"].status = drainingStatus("data")
	gates["data"].runbook = midDrainRunbook()

	gates["stats"].runbook = runbookAt("stats", api.RunbookWaiting, api.StepEnable)
	gates["stats"].runbook.Waiting = &api.Confirmation{Step: api.StepEnable, Prompt: "put stats in read-only now?", TypeSiteName: true}

	ro := liveStatus("geo", 9)
	ro.Mode, ro.Phase = api.ModeReadOnly, api.PhaseQuiesced
	gates["geo"].status = ro
	gates["geo"].runbook = runbookAt("geo", api.RunbookFailed, api.StepSnapshot)
	gates["geo"].runbook.Error = "pg_dump: could not write to output file: No space left on device"

	lib := liveStatus("lib", 5)
	lib.Mode, lib.Phase = api.ModeDown, api.PhaseQuiesced
	gates["lib"].status = lib
	gates["lib"].runbook = runbookAt("lib", api.RunbookInterrupted, api.StepMigrate)

	gates["archive"].statusErr = errors.New("gate status: nothing is listening at https://archive.example.org (connection refused)")

	m, _ := newTestModel(sites, w, h)
	for _, s := range sites {
		g := gates[s.Name]
		msg := refreshedMsg{site: s.Name, status: g.status, report: g.report, rb: g.runbook, at: t0.Add(-time.Second)}
		if g.statusErr != nil {
			msg = refreshedMsg{site: s.Name, err: g.statusErr, reportErr: g.statusErr, rbErr: g.statusErr, at: t0.Add(-time.Second)}
		}
		feed(m, []tea.Msg{msg})
	}
	return m, gates
}

func TestDashboardEveryState(t *testing.T) {
	for _, size := range []struct{ w, h int }{{140, 40}, {80, 24}, {60, 20}, {40, 15}} {
		name := fmt.Sprintf("%dx%d", size.w, size.h)
		t.Run(name, func(t *testing.T) {
			m, _ := everyState(size.w, size.h)
			m.selected = "stats"
			content := frameOf(t, m)
			lines := strings.Split(content, "\n")
			for site, want := range map[string]string{
				"data":    "running at drain",
				"stats":   "WAITING FOR YOU",
				"geo":     "FAILED at snapshot",
				"lib":     "INTERRUPTED at migrate",
				"archive": "",
				"prod":    "",
			} {
				var row string
				for _, l := range lines {
					if strings.HasPrefix(strings.TrimLeft(l, " >!"), site+" ") {
						row = l
						break
					}
				}
				if row == "" {
					t.Errorf("no row for %s:\n%s", site, content)
					continue
				}
				if f := strings.Fields(want); size.w < 80 && len(f) > 0 {
					want = f[0] // narrow: the runbook may be cut, but says its state
				}
				if !strings.Contains(row, want) {
					t.Errorf("%s row %q lacks %q", site, row, want)
				}
				needs := site == "stats" || site == "geo" || site == "lib" || site == "archive"
				if got := strings.Contains(row[:2], "!"); got != needs {
					t.Errorf("%s row %q: needs-you mark %v, want %v", site, row, got, needs)
				}
				if !strings.Contains(row, "LIVE") && !strings.Contains(row, "READ-ONLY") && !strings.Contains(row, "DOWN") && !strings.Contains(row, " ?") {
					t.Errorf("%s row %q shows no mode", site, row)
				}
			}
			if strings.Contains(content, "too small") {
				t.Errorf("the console refuses %s:\n%s", name, content)
			}
			golden.RequireEqual(t, content)
		})
	}
}

// Rows stay in name order while states change; t sorts trouble first,
// needs-you before the rest.
func TestSortStableAndTrouble(t *testing.T) {
	m, gates := everyState(140, 40)
	order := func() string {
		var names []string
		for _, r := range m.sortedSites() {
			names = append(names, r.Name)
		}
		return strings.Join(names, " ")
	}
	byName := "archive data geo lib prod stats"
	if got := order(); got != byName {
		t.Errorf("default order %q, want %q", got, byName)
	}
	// prod starts failing: it does not move.
	rep := report("prod", "2.10.4", 10, 100, 0.2, 0, 0, "fail")
	feed(m, []tea.Msg{refreshedMsg{site: "prod", status: gates["prod"].status, report: rep, at: t0}})
	if got := order(); got != byName {
		t.Errorf("order after a change %q, want %q", got, byName)
	}
	press(m, "t")
	if got, want := order(), "archive geo lib stats prod data"; got != want {
		t.Errorf("trouble order %q, want %q", got, want)
	}
	if !strings.Contains(m.keyBar(), "t sort") {
		t.Errorf("the key bar does not show t: %q", m.keyBar())
	}
	press(m, "?")
	if !strings.Contains(frameOf(t, m), "sort by trouble") {
		t.Error("the help does not list t")
	}
	press(m, "?", "t")
	if got := order(); got != byName {
		t.Errorf("t again: order %q, want %q", got, byName)
	}
}

func TestQuitSummary(t *testing.T) {
	m, _ := everyState(80, 24)
	want := []string{
		"still running at drain on data; `ckanops runbook data` re-attaches",
		"still active, failed at snapshot on geo; `ckanops runbook geo` re-attaches",
		"still active, interrupted at migrate on lib; `ckanops runbook lib` re-attaches",
		"still waiting for you at enable on stats; `ckanops runbook stats` re-attaches",
	}
	if got := m.QuitSummary(); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("summary:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	// A runbook that ended is not summed up.
	rb := runbookAt("data", api.RunbookDone, api.StepDisable)
	feed(m, []tea.Msg{refreshedMsg{site: "data", status: liveStatus("data", 9), rb: rb, at: t0}})
	if got := m.QuitSummary(); len(got) != 3 || strings.Contains(strings.Join(got, "\n"), "on data") {
		t.Errorf("summary after data's runbook ended: %q", got)
	}
	// None at all: nil.
	m2, _ := fourSitesModel(80, 24)
	if got := m2.QuitSummary(); got != nil {
		t.Errorf("summary without runbooks: %q", got)
	}
}

// A refresh whose runbook read fails keeps the runbook last read; 404
// (nil) clears it.
func TestRefreshRunbookErrorsTolerated(t *testing.T) {
	m, gates := everyState(80, 24)
	feed(m, []tea.Msg{refreshedMsg{site: "geo", status: gates["geo"].status, rbErr: errors.New("gate runbook: 502"), at: t0}})
	if s := m.byName["geo"]; s.runbook == nil || s.runbook.State != api.RunbookFailed || s.err != nil {
		t.Errorf("geo after a failed runbook read: runbook %+v, err %v", s.runbook, s.err)
	}
	feed(m, []tea.Msg{refreshedMsg{site: "geo", status: gates["geo"].status, at: t0}})
	if s := m.byName["geo"]; s.runbook != nil {
		t.Errorf("geo's runbook was not cleared by a 404: %+v", s.runbook)
	}
}

// Messages on the flash line go after flashTTL, or at the next key.
func TestFlashExpires(t *testing.T) {
	m, _ := fourSitesModel(80, 24)
	now := t0
	m.clock = func() time.Time { return now }
	m.setFlash("prod: now DOWN", false)
	if !strings.Contains(frameOf(t, m), "prod: now DOWN") {
		t.Fatal("the message is not shown")
	}
	now = t0.Add(9 * time.Second)
	if !strings.Contains(frameOf(t, m), "prod: now DOWN") {
		t.Error("the message went before 10s")
	}
	now = t0.Add(11 * time.Second)
	if strings.Contains(frameOf(t, m), "prod: now DOWN") {
		t.Error("the message is still shown after 11s")
	}
	m.setFlash("prod: refused", true)
	press(m, "down")
	if strings.Contains(frameOf(t, m), "prod: refused") {
		t.Error("a key does not clear the message")
	}
}

// An error too long for the flash line is wrapped over a few lines taken
// from the body, so its end (usually the command that gets the operator
// out) is read, not cut off; the frame keeps its height and key bar.
func TestLongErrorFlashWraps(t *testing.T) {
	m, _ := fourSitesModel(80, 24)
	m.clock = func() time.Time { return t0 }
	msg := "resume: gate runbook at http://10.0.0.5:8080/-/ckanops/runbook/resume: 409 Gate Error: step migrate: its command schema: alembic upgrade head (process group 4242), started by this gate before it stopped, is still running: running the step again now would run it twice at once. Let it end, or stop it (check with: ps -o pid,args -g 4242; then: kill -TERM -- -4242), then: ckanops runbook prod --resume"
	m.setFlash(msg, true)
	f := frameOf(t, m) // checks 24 lines of at most 80 cells
	if flat := strings.Join(strings.Fields(f), " "); !strings.Contains(flat, "ckanops runbook prod --resume") || !strings.Contains(flat, "kill -TERM -- -4242") {
		t.Errorf("the error's end is cut off:\n%s", f)
	}
	lines := strings.Split(f, "\n")
	if !strings.Contains(lines[len(lines)-1], "quit") {
		t.Errorf("the key bar is not the last line:\n%s", f)
	}
	// Longer than six lines: the sixth ends with an ellipsis.
	m.setFlash(strings.Repeat(msg+" ", 3), true)
	f = frameOf(t, m)
	lines = strings.Split(f, "\n")
	if !strings.HasSuffix(strings.TrimSpace(lines[len(lines)-2]), "…") || !strings.HasPrefix(lines[len(lines)-7], "resume: gate runbook") {
		t.Errorf("a very long error:\n%s", f)
	}
}

// Scrolling the log up pauses it: new lines do not move it, the LOG
// heading says so, and G follows again.
func TestRunbookLogPaused(t *testing.T) {
	m, gates := fourSitesModel(80, 24)
	gates["data"].runbook = midDrainRunbook()
	m.selected = "data"
	press(m, "r")
	feed(m, []tea.Msg{runbookLoadedMsg{site: "data", rb: midDrainRunbook()}})
	for i := range 30 {
		m.logLine(t0, fmt.Sprintf("line %d", i))
	}
	if strings.Contains(frameOf(t, m), "paused") {
		t.Fatal("paused before scrolling")
	}
	press(m, "up", "up")
	content := frameOf(t, m)
	if !strings.Contains(content, "paused") || strings.Contains(content, "line 29") || !strings.Contains(content, "line 27") {
		t.Errorf("scrolled up two lines:\n%s", content)
	}
	m.logLine(t0, "line 30")
	content = frameOf(t, m)
	if strings.Contains(content, "line 30") || !strings.Contains(content, "line 27") {
		t.Errorf("a new line moved the paused log:\n%s", content)
	}
	if !strings.Contains(m.keyBar(), "G/end") {
		t.Errorf("the key bar does not offer G: %q", m.keyBar())
	}
	press(m, "G")
	content = frameOf(t, m)
	if strings.Contains(content, "paused") || !strings.Contains(content, "line 30") {
		t.Errorf("G does not follow again:\n%s", content)
	}
	press(m, "up")
	m.Update(tea.KeyPressMsg{Code: tea.KeyEnd})
	if m.rb.logScroll != 0 {
		t.Error("end does not follow again")
	}
}

// After an action's answer, the site view reads the site's status,
// checks, runbook and audit tail again.
func TestRefreshAfterAction(t *testing.T) {
	m, gates := fourSitesModel(100, 40)
	g := gates["data"]
	m.selected = "data"
	feed(m, run(press(m, "enter")[0]))
	if m.view != viewSite {
		t.Fatal("enter does not open the site view")
	}
	before := map[string]int{"Status": g.n("Status"), "Health": g.n("Health"), "Runbook": g.n("Runbook"), "AuditTail": g.n("AuditTail")}
	g.mu.Lock()
	g.audit = append(g.audit, api.AuditEntry{Time: t0, Event: "mode", Actor: "ops-token", From: "read-only", To: "live", Version: 13, Reason: "console"})
	g.mu.Unlock()
	cmds := press(m, "d", "y")
	answer := run(cmds[1])
	if len(answer) != 1 {
		t.Fatalf("the disable sent %d answers", len(answer))
	}
	follow := feed(m, answer)[0]
	if follow == nil {
		t.Fatal("the answer is not followed by a refresh")
	}
	feed(m, run(follow))
	for call, n := range before {
		if g.n(call) != n+1 {
			t.Errorf("%s called %d times after the action, want %d", call, g.n(call)-n, 1)
		}
	}
	content := frameOf(t, m)
	if !strings.Contains(content, "read-only→live") {
		t.Errorf("the audit tail is not read again:\n%s", content)
	}
	if s := m.byName["data"]; s.fetching || s.statusAt != t0 {
		t.Errorf("data: fetching %v, read at %v", s.fetching, s.statusAt)
	}
}

// A change while a refresh is in flight: another follows at once.
func TestRefreshAgainAfterChange(t *testing.T) {
	m, _ := fourSitesModel(80, 24)
	s := m.byName["prod"]
	if m.startRefresh(s) == nil {
		t.Fatal("no refresh started")
	}
	if cmd := m.afterChange(s); cmd != nil {
		t.Fatalf("a second refresh started while one is in flight")
	}
	cmd := feed(m, []tea.Msg{refreshedMsg{site: "prod", status: liveStatus("prod", 7), at: t0}})[0]
	if cmd == nil || !s.fetching {
		t.Error("the refresh that may predate the change is not followed by another")
	}
}

// Clearing the filter keeps the row that was shown selected.
func TestFilterKeepsSelection(t *testing.T) {
	m, _ := fourSitesModel(80, 24)
	m.selected = "prod"
	press(m, "/", "ta") // staging and data; prod is hidden, data shown selected
	if got := m.selectedSite().Name; got != "data" {
		t.Fatalf("selected %s under the filter, want data", got)
	}
	press(m, "esc")
	if got := m.selectedSite().Name; got != "data" {
		t.Errorf("selected %s after clearing the filter, want data", got)
	}
	press(m, "/", "stag", "enter", "esc")
	if got := m.selectedSite().Name; got != "staging" {
		t.Errorf("selected %s after esc on the dashboard, want staging", got)
	}
}

// Below 80x24 the keys still work: down moves, enter opens.
func TestSmallTerminalKeysWork(t *testing.T) {
	for _, size := range []struct{ w, h int }{{60, 20}, {30, 10}, {15, 4}} {
		m, _ := everyState(size.w, size.h)
		m.selected = "archive"
		press(m, "down")
		if m.selected != "data" {
			t.Errorf("%dx%d: down selected %s", size.w, size.h, m.selected)
		}
		content := m.View().Content
		if len(strings.Split(content, "\n")) != size.h {
			t.Errorf("%dx%d: frame of %d lines", size.w, size.h, len(strings.Split(content, "\n")))
		}
		for i, l := range strings.Split(content, "\n") {
			if w := len([]rune(l)); w > size.w {
				t.Errorf("%dx%d: line %d is %d wide", size.w, size.h, i, w)
			}
		}
		if !strings.Contains(content, "data") {
			t.Errorf("%dx%d: no site listed:\n%s", size.w, size.h, content)
		}
		press(m, "enter")
		if m.view != viewSite || m.current.Name != "data" {
			t.Errorf("%dx%d: enter does not open the site", size.w, size.h)
		}
	}
}

// A check that is not configured is no pass: the log marks it -.
func TestEvidenceNotConfigured(t *testing.T) {
	m, _ := fourSitesModel(80, 24)
	for _, c := range []struct {
		ev   api.Evidence
		want string
	}{
		{api.Evidence{Kind: api.EvidenceCheck, OK: true, Summary: "solr: unknown: not configured: set solr in gate.toml's [checks] to probe it"}, "preflight - solr: unknown: not configured"},
		{api.Evidence{Kind: api.EvidenceCheck, OK: true, Summary: "redis: ok: 0 queued"}, "preflight ✓ redis: ok"},
		{api.Evidence{Kind: api.EvidenceCheck, Summary: "ckan: warn: slow"}, "preflight · ckan: warn"},
	} {
		ev := c.ev
		got := m.eventText(api.RunbookEvent{Kind: api.EventEvidence, Step: "preflight", Evidence: &ev})
		if !strings.HasPrefix(got, c.want) {
			t.Errorf("%q, want it to begin %q", got, c.want)
		}
	}
}
