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
)

// The site's usual triggers, all armed: replica lag, connections and
// disk, as in docs/config.md.
func armedTriggers() []api.TriggerState {
	return []api.TriggerState{
		{Name: "replica-lag", Check: "ckan_db", When: "replay_lag_seconds > 30", Mode: api.ModeReadOnly, State: api.TriggerArmed,
			For: "30s", Recover: "10m", Since: ptrTime(t0.Add(-3 * time.Hour)), Value: "0.4", Leader: true},
		{Name: "connections", Check: "ckan_db", When: "connections_ratio >= 0.95", Mode: api.ModeReadOnly, State: api.TriggerArmed,
			Since: ptrTime(t0.Add(-3 * time.Hour)), Value: "0.23456789", Leader: true},
		{Name: "disk", Check: "storage", When: "free_ratio < 0.05", Mode: api.ModeDown, State: api.TriggerArmed,
			Since: ptrTime(t0.Add(-3 * time.Hour)), Value: "0.4", Leader: true},
	}
}

// triggeredStatus is site put in read-only by its trigger replica-lag at
// 14:02:13 on a replay lag of 42.5s; the lag is 45.1s now, and the
// connections trigger is pending.
func triggeredStatus(site string) *api.Status {
	st := liveStatus(site, 11)
	fired := t0.Add(-57*time.Minute - 47*time.Second)
	st.Mode, st.Phase, st.Since, st.QuiescedAt = api.ModeReadOnly, api.PhaseQuiesced, fired, ptrTime(fired.Add(2*time.Second))
	st.Actor, st.Reason = api.TriggerActor("replica-lag"), "replay_lag_seconds = 42.5 > 30 on ckan_db for 30s"
	st.Message = "The database is catching up; editing is paused."
	st.Triggers = armedTriggers()
	lag := &st.Triggers[0]
	lag.State, lag.Since, lag.FiredAt, lag.Value, lag.FiredValue = api.TriggerFired, ptrTime(fired), ptrTime(fired), "45.1", "42.5"
	conns := &st.Triggers[1]
	conns.State, conns.Since, conns.Value = api.TriggerPending, ptrTime(t0.Add(-12*time.Second)), "0.96"
	return st
}

// triggerSites is a dashboard of triggers: lag is read-only by its
// trigger replica-lag (fired), jobs read-only by its trigger queue (clear
// for 3m, and without a recover time), geo read-only by a trigger with
// its runbook failed, disk live with a blind trigger, edit read-only by a
// person after a trigger fired (stood down), prod live with its triggers
// armed, and archive live with none.
func triggerSites(w, h int) (*Model, map[string]*fakeGate) {
	gates := map[string]*fakeGate{}
	var sites []Site
	for _, name := range []string{"prod", "lag", "jobs", "geo", "disk", "edit", "archive"} {
		g := newFakeGate()
		gates[name] = g
		g.status = liveStatus(name, 4)
		g.status.Triggers = armedTriggers()
		g.report = report(name, "2.10.4", 10, 100, 0.2, 0, 0, "ok")
		sites = append(sites, Site{Name: name, URL: "https://" + name + ".example.org", Gate: g, Timeout: 5 * time.Second})
	}
	gates["archive"].status.Triggers = nil

	gates["lag"].status = triggeredStatus("lag")

	jobs := liveStatus("jobs", 6)
	jobs.Mode, jobs.Phase, jobs.Since = api.ModeReadOnly, api.PhaseQuiesced, t0.Add(-40*time.Minute)
	jobs.Actor, jobs.Reason = api.TriggerActor("queue"), "queued = 5200 > 5000 on redis for 1m0s"
	jobs.Triggers = []api.TriggerState{{Name: "queue", Check: "redis", When: "queued > 5000", Mode: api.ModeReadOnly,
		State: api.TriggerRecovering, Since: ptrTime(t0.Add(-3 * time.Minute)), Value: "12",
		FiredAt: ptrTime(t0.Add(-40 * time.Minute)), FiredValue: "5200", Leader: true,
		Note: "clear now; the trigger has no recover: an operator ends the maintenance"}}
	gates["jobs"].status = jobs

	geo := triggeredStatus("geo")
	geo.Phase = api.PhaseDraining
	geo.InFlight = []api.InFlightWrite{{Method: "POST", Path: "/api/3/action/package_patch", AgeMS: 4100, Remote: "10.0.0.7"}}
	gates["geo"].status = geo
	gates["geo"].runbook = runbookAt("geo", api.RunbookFailed, api.StepSnapshot)
	gates["geo"].runbook.Error = "pg_dump: connection refused"

	disk := gates["disk"].status
	disk.Triggers[2].State, disk.Triggers[2].Since, disk.Triggers[2].Value = api.TriggerBlind, ptrTime(t0.Add(-90*time.Second)), ""
	disk.Triggers[2].Note = "the probe does not report free_ratio (statvfs /var/lib/ckan: permission denied): the trigger leaves the mode alone"

	edit := liveStatus("edit", 14)
	edit.Mode, edit.Phase, edit.Since = api.ModeReadOnly, api.PhaseQuiesced, t0.Add(-10*time.Minute)
	edit.Actor, edit.Reason = "ssh:alice (SHA256:x) via ops-token", "keep it read-only while we look"
	edit.Triggers = armedTriggers()
	edit.Triggers[0].State, edit.Triggers[0].Since, edit.Triggers[0].Value = api.TriggerStood, ptrTime(t0.Add(-10*time.Minute)), "38"
	edit.Triggers[0].FiredAt, edit.Triggers[0].FiredValue = ptrTime(t0.Add(-20*time.Minute)), "31.2"
	edit.Triggers[0].Note = "ssh:alice (SHA256:x) via ops-token changed the mode since the trigger set it: it no longer manages it"
	gates["edit"].status = edit

	m, _ := newTestModel(sites, w, h)
	for _, s := range sites {
		g := gates[s.Name]
		feed(m, []tea.Msg{refreshedMsg{site: s.Name, status: g.status, report: g.report, rb: g.runbook, at: t0.Add(-time.Second)}})
	}
	return m, gates
}

func TestDashboardTriggers(t *testing.T) {
	for _, size := range []struct{ w, h int }{{140, 40}, {80, 24}, {60, 20}, {40, 15}} {
		t.Run(fmt.Sprintf("%dx%d", size.w, size.h), func(t *testing.T) {
			m, _ := triggerSites(size.w, size.h)
			m.selected = "lag"
			content := frameOf(t, m)
			for site, want := range map[string]string{
				"lag":     "TRIGGERED by replica-lag",
				"jobs":    "TRIGGERED by queue",
				"geo":     "TRIGGERED, FAILED at snaps", // cut at 28
				"disk":    "",
				"edit":    "",
				"prod":    "",
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
				if want == "" && strings.Contains(row, "TRIG") {
					t.Errorf("%s row %q says TRIGGERED", site, row)
				}
			}
			if size.w >= 60 && !strings.Contains(strings.Split(content, "\n")[1], "RUNBOOK/WINDOW") {
				t.Errorf("the plan column is not headed RUNBOOK/WINDOW:\n%s", content)
			}
			// geo's runbook failed: it needs you; lag, jobs and edit (read-only) are to look at.
			if size.w >= 80 && !strings.Contains(content, "7 sites · 1 need you · 3 to look at") {
				t.Errorf("the title does not count the triggered sites as something to look at:\n%s", content)
			}
			flat := strings.Join(strings.Fields(content), " ")
			if !strings.Contains(flat, "lag: TRIGGERED by replica-lag: replay_lag_seconds = 42.5 > 30 on ckan_db for 30s; now 45.1; back to") {
				t.Errorf("the note does not explain the trigger:\n%s", content)
			}
			golden.RequireEqual(t, content)
		})
	}
}

// The plan column's cell, its precedence and its header.
func TestTriggerCell(t *testing.T) {
	m, _ := triggerSites(140, 40)
	rows := m.sortedSites()
	for _, r := range rows {
		want := map[string]string{
			"lag":  "TRIGGERED by replica-lag",
			"jobs": "TRIGGERED by queue",
			"geo":  "TRIGGERED, FAILED at snapshot",
		}[r.Name]
		if got := planWords(r, t0); got != want {
			t.Errorf("%s: %q, want %q", r.Name, got, want)
		}
	}
	// An overrun stays first, with the trigger after it; so does a
	// runbook's state after the overrun.
	st := *m.byName["lag"].status
	st.Until, st.Overrun = ptrTime(t0.Add(-25*time.Minute)), true
	s := &siteState{Site: Site{Name: "x"}, status: &st}
	if got := planWords(ranked{siteState: s}, t0); got != "OVERRUN, TRIGGERED by replica-lag" {
		t.Errorf("overrun and trigger: %q", got)
	}
	s.runbook = runbookAt("x", api.RunbookInterrupted, api.StepMigrate)
	if got := planWords(ranked{siteState: s}, t0); got != "OVERRUN, INTERRUPTED at migrate" {
		t.Errorf("overrun, trigger and runbook: %q", got)
	}
	// A trigger over a planned window: the trigger.
	st = *m.byName["lag"].status
	st.Schedule = &api.Schedule{At: t0.Add(time.Hour), For: "1h", Mode: api.ModeReadOnly, AnnounceFrom: t0}
	if got := planWords(ranked{siteState: &siteState{status: &st}}, t0); got != "TRIGGERED by replica-lag" {
		t.Errorf("trigger and window: %q", got)
	}
	// A trigger that put the site back to live is nothing to show.
	st = *m.byName["lag"].status
	st.Mode, st.Phase, st.Reason = api.ModeLive, api.PhaseLive, "replay_lag_seconds = 3, clear on ckan_db for 10m0s"
	if got := planWords(ranked{siteState: &siteState{status: &st}}, t0); got != "" {
		t.Errorf("back to live by a trigger: %q", got)
	}
	// Header: a trigger's maintenance is a window nobody planned.
	if got := planHeader([]ranked{{siteState: m.byName["lag"]}, {siteState: m.byName["prod"]}}); got != "WINDOW" {
		t.Errorf("header with a triggered site only: %q", got)
	}
	if got := planHeader(rows); got != "RUNBOOK/WINDOW" {
		t.Errorf("header: %q", got)
	}
	// At every width the layout gives the column, the cell starts with
	// what it is.
	for _, w := range []int{140, 80, 60, 40, 30} {
		var plan *column
		for _, c := range layout(w, rows, t0) {
			if strings.HasPrefix(c.name, "RUNBOOK") || c.name == "WINDOW" {
				plan = &c
			}
		}
		if plan == nil {
			t.Errorf("width %d: no plan column", w)
			continue
		}
		got := fit(cellPlan(m, ranked{siteState: m.byName["lag"]}, t0), plan.width)
		if want := "TRIGGERED"[:min(9, plan.width-1)]; !strings.HasPrefix(got, want) {
			t.Errorf("width %d: lag's cell %q", w, got)
		}
	}
}

// The note of the selected site says who, what it saw, where the
// trigger stands and how the maintenance ends.
func TestTriggeredNote(t *testing.T) {
	m, _ := triggerSites(140, 40)
	note := func(site string) string {
		s := m.byName[site]
		return m.note(ranked{s, m.assess(s, t0)}, t0)
	}
	for site, want := range map[string]string{
		"lag": "TRIGGERED by replica-lag: replay_lag_seconds = 42.5 > 30 on ckan_db for 30s; now 45.1; " +
			"back to live by itself after 10m clear, or d disables",
		"jobs": "TRIGGERED by queue: queued = 5200 > 5000 on redis for 1m0s; clear since 3m (now 12); " +
			"clear now; the trigger has no recover: an operator ends the maintenance; d disables",
		// Still draining: the note says so after the trigger.
		"geo": "runbook FAILED at snapshot: pg_dump: connection refused (r opens it)",
		// A blind trigger is no alarm: nothing to say.
		"disk": "",
		"edit": "read-only, quiesced",
	} {
		if got := note(site); got != want {
			t.Errorf("%s:\n got %q\nwant %q", site, got, want)
		}
	}
	if a := m.assess(m.byName["geo"], t0); !a.triggered || !a.needsYou || a.rank != 0 {
		t.Errorf("geo: %+v", a)
	}
	// Without the failed runbook, geo's note is the trigger's, then the drain.
	m.byName["geo"].runbook = nil
	if got, want := note("geo"), "TRIGGERED by replica-lag: replay_lag_seconds = 42.5 > 30 on ckan_db for 30s; now 45.1; back to live by itself after 10m clear, or d disables; read-only, draining: 1 write in flight"; got != want {
		t.Errorf("geo without its runbook:\n got %q\nwant %q", got, want)
	}

	// The trigger is gone from gate.toml, or stood down, or has no reason.
	st := *m.byName["lag"].status
	st.Triggers, st.Reason, st.Message = nil, "", ""
	m.byName["lag"].status = &st
	if got, want := note("lag"), "TRIGGERED by replica-lag; its gate lists no trigger replica-lag now: ending it is your call, d disables"; got != want {
		t.Errorf("a trigger gone:\n got %q\nwant %q", got, want)
	}
	st.Triggers = []api.TriggerState{{Name: "replica-lag", State: api.TriggerArmed}}
	if got, want := note("lag"), "TRIGGERED by replica-lag; the trigger is armed; ending it is your call: d disables"; got != want {
		t.Errorf("an armed trigger that holds the mode:\n got %q\nwant %q", got, want)
	}
	// While it fires, a note of the gate's is said too.
	st.Triggers = []api.TriggerState{{Name: "replica-lag", State: api.TriggerFired, Recover: "10m", Note: "gate web-2 leads the triggers: it acts, this gate observes"}}
	if got, want := note("lag"), "TRIGGERED by replica-lag; gate web-2 leads the triggers: it acts, this gate observes; back to live by itself after 10m clear, or d disables"; got != want {
		t.Errorf("a fired trigger with a note:\n got %q\nwant %q", got, want)
	}
}

// The dashboard's note at several widths: wrapped in at most three lines,
// cut with … past them.
func TestTriggeredNoteWidths(t *testing.T) {
	for _, w := range []int{140, 100, 80, 60, 40} {
		m, _ := triggerSites(w, 24)
		m.selected = "lag"
		content := frameOf(t, m)
		lines := strings.Split(content, "\n")
		var note []string
		for _, l := range lines {
			if strings.HasPrefix(l, "  lag: ") || (len(note) > 0 && strings.HasPrefix(l, "  ") && l != "") {
				note = append(note, strings.TrimSpace(l))
			}
		}
		if len(note) == 0 || len(note) > 3 {
			t.Errorf("width %d: note in %d lines:\n%s", w, len(note), content)
			continue
		}
		flat := strings.Join(note, " ")
		if !strings.HasPrefix(flat, "lag: TRIGGERED by replica-lag: replay_lag_seconds = 42.5") {
			t.Errorf("width %d: note %q", w, flat)
		}
		if w < 60 && !strings.HasSuffix(flat, "…") {
			t.Errorf("width %d: a cut note does not end in …: %q", w, flat)
		}
		if w >= 60 && !strings.HasSuffix(flat, "or d disables") {
			t.Errorf("width %d: the note lacks how it ends: %q", w, flat)
		}
	}
}

// t sorts a triggered site with the trouble: after those that need you,
// first among those to look at, with overruns.
func TestTriggeredSortsWithTrouble(t *testing.T) {
	m, _ := triggerSites(140, 40)
	order := func() string {
		var names []string
		for _, r := range m.sortedSites() {
			names = append(names, r.Name)
		}
		return strings.Join(names, " ")
	}
	if got, want := order(), "archive disk edit geo jobs lag prod"; got != want {
		t.Errorf("order %q, want %q", got, want)
	}
	press(m, "t")
	if got, want := order(), "geo jobs lag edit archive disk prod"; got != want {
		t.Errorf("trouble order %q, want %q", got, want)
	}
	if a := m.assess(m.byName["lag"], t0); a.rank != 1 || !a.triggered || a.needsYou || a.overrun {
		t.Errorf("lag: %+v", a)
	}
	if a := m.assess(m.byName["disk"], t0); a.rank != 2 || a.triggered || a.reason != "" {
		t.Errorf("disk (a blind trigger): %+v", a)
	}
}

func TestSiteViewTriggered(t *testing.T) {
	m, _ := triggerSites(80, 30)
	m.selected = "lag"
	feed(m, run(press(m, "enter")[0]))
	content := frameOf(t, m)
	flat := strings.Join(strings.Fields(content), " ")
	for _, want := range []string{
		`by trigger:replica-lag · reason "replay_lag_seconds = 42.5 > 30 on ckan_db for 30s"`,
		"TRIGGERED by replica-lag; now 45.1; back to live by itself after 10m clear, or d disables",
		"TRIGGERS (3: 1 fired, 1 pending)",
		// At 80 columns a trigger's condition goes below its state.
		"replica-lag FIRED at 14:02 on 42.5 now 45.1 ckan_db: replay_lag_seconds > 30 → read-only",
		"connections pending since 12s now 0.96 ckan_db: connections_ratio >= 0.95 → read-only",
		"disk armed now 0.4 · storage: free_ratio < 0.05 → down",
	} {
		if !strings.Contains(flat, want) {
			t.Errorf("the site view lacks %q:\n%s", want, content)
		}
	}
	golden.RequireEqual(t, content)
}

// everyTriggerState is a status with a trigger in every state.
func everyTriggerState() *api.Status {
	st := triggeredStatus("every")
	since := func(d time.Duration) *time.Time { return ptrTime(t0.Add(-d)) }
	st.Triggers = append(st.Triggers[:2:2],
		api.TriggerState{Name: "disk", Check: "storage", When: "free_ratio < 0.05", Mode: api.ModeDown, State: api.TriggerArmed,
			Since: since(3 * time.Hour), Value: "0.4"},
		api.TriggerState{Name: "queue", Check: "redis", When: "queued > 5000", Mode: api.ModeReadOnly, State: api.TriggerRecovering,
			Since: since(3 * time.Minute), Value: "12", FiredAt: since(40 * time.Minute), FiredValue: "5200"},
		api.TriggerState{Name: "solr-down", Check: "solr", When: "ok == false", Mode: api.ModeReadOnly, State: api.TriggerBlind,
			Since: since(90 * time.Second), Note: "the probe does not report ok (Solr: connection refused): the trigger leaves the mode alone"},
		api.TriggerState{Name: "datastore-lag", Check: "datastore_db", When: "replay_lag_seconds > 60", Mode: api.ModeReadOnly, State: api.TriggerStood,
			Since: since(10 * time.Minute), Value: "75", FiredAt: since(20 * time.Minute), FiredValue: "61",
			Note: "ssh:alice (SHA256:x) via ops-token changed the mode since the trigger set it: it no longer manages it"},
	)
	st.Triggers[1].Note = "held for 45s, but the trigger switched 2m0s ago: at most one switch per 5m0s"
	return st
}

func TestSiteViewTriggerStates(t *testing.T) {
	sites, gates := fourSites()
	gates["prod"].status = everyTriggerState()
	m, _ := newTestModel(sites, 120, 40)
	feed(m, []tea.Msg{refreshedMsg{site: "prod", status: gates["prod"].status, report: gates["prod"].report, at: t0}})
	m.selected = "prod"
	feed(m, run(press(m, "enter")[0]))
	content := frameOf(t, m)
	flat := strings.Join(strings.Fields(content), " ")
	for _, want := range []string{
		"TRIGGERS (6: 1 fired, 1 recovering, 1 pending, 1 blind, 1 stood down)",
		"replica-lag FIRED at 14:02 on 42.5 now 45.1 · ckan_db: replay_lag_seconds > 30 → read-only",
		"connections pending since 12s now 0.96 · ckan_db: connections_ratio >= 0.95 → read-only held for 45s, but the trigger switched 2m0s ago",
		"disk armed now 0.4 · storage: free_ratio < 0.05 → down",
		"queue recovering since 3m now 12 · redis: queued > 5000 → read-only",
		"solr-down blind: the probe does not report ok (Solr: connection refused): the trigger leaves the mode alone solr: ok == false → read-only",
		"datastore-lag stood down now 75 · datastore_db: replay_lag_seconds > 60 → read-only ssh:alice (SHA256:x) via ops-token changed the mode",
	} {
		if !strings.Contains(flat, want) {
			t.Errorf("the site view lacks %q:\n%s", want, content)
		}
	}
	golden.RequireEqual(t, content)
}

// The block: one line per trigger at every width, each cut to it; a
// note every trigger shares is said once; nothing without triggers.
func TestTriggerBlock(t *testing.T) {
	m, _ := triggerSites(80, 24)
	st := everyTriggerState()
	for _, w := range []int{300, 140, 100, 80, 60, 40} {
		head, lines := m.triggerBlock(st, t0, w)
		if head != "TRIGGERS (6: 1 fired, 1 recovering, 1 pending, 1 blind, 1 stood down)" {
			t.Errorf("width %d: heading %q", w, head)
		}
		// A line per trigger where the width allows; each trigger's
		// name starts a line, continued below its state otherwise.
		if w >= 300 && len(lines) != len(st.Triggers) {
			t.Errorf("width %d: %d lines for %d triggers:\n%s", w, len(lines), len(st.Triggers), strings.Join(lines, "\n"))
		}
		var starts []int
		for i, l := range lines {
			if width(l) > w {
				t.Errorf("width %d: line %d is %d wide: %q", w, i, width(l), l)
			}
			if !strings.HasPrefix(l, "   ") {
				starts = append(starts, i)
			}
		}
		if len(starts) != len(st.Triggers) {
			t.Fatalf("width %d: %d lines start a trigger, want %d:\n%s", w, len(starts), len(st.Triggers), strings.Join(lines, "\n"))
		}
		for i, at := range starts {
			if name := st.Triggers[i].Name; !strings.HasPrefix(lines[at], "  "+name) {
				t.Errorf("width %d: line %q does not start with %s", w, lines[at], name)
			}
		}
		// The states line up.
		if col := strings.Index(lines[starts[0]], "FIRED"); col < 0 || strings.Index(lines[starts[2]], "armed") != col {
			t.Errorf("width %d: states not aligned:\n%s", w, strings.Join(lines, "\n"))
		}
		// Nothing is lost: every condition is there whole.
		flat := strings.Join(strings.Fields(strings.Join(lines, " ")), " ")
		for _, ts := range st.Triggers {
			if w >= 60 && !strings.Contains(flat, ts.Check+": "+ts.When+" → "+string(ts.Mode)) {
				t.Errorf("width %d: %s's condition is cut:\n%s", w, ts.Name, strings.Join(lines, "\n"))
			}
		}
	}
	if head, lines := m.triggerBlock(liveStatus("x", 1), t0, 80); head != "" || lines != nil {
		t.Errorf("no triggers: %q %q", head, lines)
	}
	if head, _ := m.triggerBlock(&api.Status{Triggers: armedTriggers()}, t0, 80); head != "TRIGGERS (3)" {
		t.Errorf("all armed: heading %q", head)
	}

	// Another gate leads: its note, the same on every trigger, is said
	// once; a blind trigger keeps its own.
	st = &api.Status{Triggers: armedTriggers()}
	lead := "gate web-2 leads the triggers: it acts, this gate observes"
	for i := range st.Triggers {
		st.Triggers[i].Leader, st.Triggers[i].Note = false, lead
	}
	st.Triggers[2].State, st.Triggers[2].Note = api.TriggerBlind, "the probe does not report free_ratio: the trigger leaves the mode alone"
	_, lines := m.triggerBlock(st, t0, 200)
	if len(lines) != 4 || lines[0] != "  "+lead || strings.Count(strings.Join(lines, "\n"), lead) != 1 {
		t.Errorf("a shared note:\n%s", strings.Join(lines, "\n"))
	}
	if !strings.Contains(lines[3], "blind: the probe does not report free_ratio") {
		t.Errorf("the blind trigger's note: %q", lines[3])
	}
	// A note of one trigger only stays on its line.
	st.Triggers[1].Note = "held for 45s, but the trigger switched 2m0s ago: at most one switch per 5m0s"
	_, lines = m.triggerBlock(st, t0, 200)
	if len(lines) != 3 || !strings.HasSuffix(lines[0], "· "+lead) || !strings.Contains(lines[1], "held for 45s") {
		t.Errorf("different notes:\n%s", strings.Join(lines, "\n"))
	}
}

// A site without triggers has no TRIGGERS block.
func TestSiteViewWithoutTriggers(t *testing.T) {
	m, _ := triggerSites(80, 60)
	m.selected = "archive"
	feed(m, run(press(m, "enter")[0]))
	if content := frameOf(t, m); strings.Contains(content, "TRIGGERS") || strings.Contains(content, "TRIGGERED") {
		t.Errorf("archive shows triggers:\n%s", content)
	}
}

func TestTriggerState(t *testing.T) {
	since := func(d time.Duration) *time.Time { return ptrTime(t0.Add(-d)) }
	for _, c := range []struct {
		ts        api.TriggerState
		want      string
		wantNoted bool
	}{
		{api.TriggerState{State: api.TriggerArmed, Since: since(time.Hour)}, "armed", false},
		{api.TriggerState{State: api.TriggerPending, Since: since(12 * time.Second)}, "pending since 12s", false},
		{api.TriggerState{State: api.TriggerPending}, "pending", false},
		{api.TriggerState{State: api.TriggerFired, Since: since(58 * time.Minute), FiredAt: ptrTime(t0.Add(-57*time.Minute - 47*time.Second)), FiredValue: "42.5"}, "FIRED at 14:02 on 42.5", false},
		{api.TriggerState{State: api.TriggerFired, Since: since(26 * time.Hour)}, "FIRED at Mar 13 13:00", false},
		{api.TriggerState{State: api.TriggerFired, FiredValue: "true"}, "FIRED on true", false},
		{api.TriggerState{State: api.TriggerRecovering, Since: since(3 * time.Minute)}, "recovering since 3m", false},
		{api.TriggerState{State: api.TriggerBlind, Since: since(time.Minute), Note: "the probe does not report x"}, "blind: the probe does not report x", true},
		{api.TriggerState{State: api.TriggerBlind, Since: since(time.Minute)}, "blind since 1m", false},
		{api.TriggerState{State: api.TriggerStood, Since: since(time.Minute)}, "stood down", false},
		{api.TriggerState{State: "resting"}, "resting", false},
	} {
		got, noted := triggerState(c.ts, t0, time.UTC)
		if got != c.want || noted != c.wantNoted {
			t.Errorf("%s: %q %v, want %q %v", c.ts.State, got, noted, c.want, c.wantNoted)
		}
	}
}

func TestShortValue(t *testing.T) {
	for in, want := range map[string]string{"42.5": "42.5", "0.23456789": "0.235", "0.95": "0.95", "0.10000001": "0.1",
		"5200": "5200", "true": "true", "": "", "1e-07": "1e-07", "3.000": "3.000", "12.0001": "12"} {
		if got := shortValue(in); got != want {
			t.Errorf("%q: %q, want %q", in, got, want)
		}
	}
}

// The triggers come with the status the console polls: a refresh that
// carries a trigger's maintenance turns the row TRIGGERED, and Update
// calls no gate to learn it.
func TestTriggeredFromRefresh(t *testing.T) {
	sites, gates := fourSites()
	m, _ := newTestModel(sites, 100, 24)
	g := gates["prod"]
	feed(m, []tea.Msg{refreshedMsg{site: "prod", status: g.status, report: g.report, at: t0}})
	if row := rowOf(frameOf(t, m), "prod"); strings.Contains(row, "TRIGGERED") {
		t.Fatalf("prod is triggered before: %q", row)
	}
	before := g.total()
	feed(m, []tea.Msg{refreshedMsg{site: "prod", status: triggeredStatus("prod"), report: g.report, at: t0}})
	if row := rowOf(frameOf(t, m), "prod"); !strings.Contains(row, "TRIGGERED by replica-lag") {
		t.Errorf("prod's row after the refresh: %q", row)
	}
	if n := g.total() - before; n != 0 {
		t.Errorf("Update made %d gate calls", n)
	}
}

// With colour, the triggers dashboard and site view still fit the
// terminal, and the states read as words.
func TestTriggerColorFrameFits(t *testing.T) {
	m, _ := triggerSites(80, 24)
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
	if !strings.Contains(ansi.Strip(m.View().Content), "TRIGGERED by replica-lag") {
		t.Errorf("the dashboard does not say TRIGGERED:\n%s", ansi.Strip(m.View().Content))
	}
	m.selected = "lag"
	press(m, "enter")
	check("triggered site view")
	plain := ansi.Strip(m.View().Content)
	for _, want := range []string{"TRIGGERED by replica-lag", "replica-lag FIRED at 14:02 on 42.5 now 45.1", "connections pending since 12s"} {
		if !strings.Contains(strings.Join(strings.Fields(plain), " "), want) {
			t.Errorf("the colour site view lacks %q:\n%s", want, plain)
		}
	}
}

// At widths where the plan column is cut, and in the tiny list, a
// triggered site still says so.
func TestDashboardTriggersNarrow(t *testing.T) {
	for _, size := range []struct{ w, h int }{{30, 10}, {60, 5}, {40, 4}} {
		m, _ := triggerSites(size.w, size.h)
		m.selected = "lag"
		content := m.View().Content
		checkFrame(t, m, content)
		if row := rowOf(content, "lag"); !strings.Contains(row, "TRIG") {
			t.Errorf("%dx%d: lag row %q lacks TRIG:\n%s", size.w, size.h, row, content)
		}
	}
	// The tiny list (under 6 lines) names the trigger when it fits.
	m, _ := triggerSites(50, 4)
	m.selected = "lag"
	if row := rowOf(m.View().Content, "lag"); !strings.Contains(row, "lag READ-ONLY TRIGGERED by replica-lag") {
		t.Errorf("tiny: lag row %q", row)
	}
}
