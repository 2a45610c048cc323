package tui

import (
	"strings"
	"testing"
	"time"

	tea "charm.land/bubbletea/v2"

	"github.com/ckanops/ckanops/api"
)

// A read-only console (a viewer over SSH) shows everything, offers no
// key that changes a site, and refuses such keys before any dialog opens:
// nothing reaches the gate.
func TestReadOnlyConsoleChangesNothing(t *testing.T) {
	sites, gates := fourSites()
	gates["prod"].runbook = runbookAt("prod", api.RunbookWaiting, api.StepEnable)
	gates["prod"].runbook.Waiting = &api.Confirmation{Step: api.StepEnable, Prompt: "put prod in read-only now?", TypeSiteName: true}
	why := "bob is a viewer (changing a site needs the operator permission: a key in the operators file)"
	m := New(sites, Options{Clock: fixedClock, NoColor: true, Refresh: 5 * time.Second, Who: "bob (viewer)", ReadOnly: why})
	m.loc = time.UTC
	m.after = func(time.Duration, tea.Msg) tea.Cmd { return nil }
	m.Update(tea.WindowSizeMsg{Width: 140, Height: 30})
	m.Update(refreshedMsg{site: "prod", status: gates["prod"].status, report: gates["prod"].report, at: t0})

	view := viewText(m)
	if !strings.Contains(view, "bob (viewer)") {
		t.Fatalf("the title does not name the viewer:\n%s", view)
	}
	for _, k := range []string{"e enable", "d disable", "s RQ"} {
		if strings.Contains(lastLine(view), k) {
			t.Errorf("the key bar offers %q to a viewer: %s", k, lastLine(view))
		}
	}
	for _, k := range []string{"e", "d", "s"} {
		press(m, k)
		if m.dialog != nil {
			t.Fatalf("%s opened a dialog for a viewer", k)
		}
		if !strings.Contains(viewText(m), "needs the operator permission: a key in the operators file): nothing was changed") {
			t.Fatalf("%s: no refusal shown:\n%s", k, viewText(m))
		}
	}
	// The runbook view shows the waiting step, and c opens nothing.
	press(m, "down", "down") // archive, data, prod: sorted by name
	press(m, "r")
	m.Update(runbookLoadedMsg{site: "prod", rb: gates["prod"].runbook})
	if !strings.Contains(viewText(m), "prod › runbook") || !strings.Contains(viewText(m), "put prod in read-only now?") {
		t.Fatalf("the runbook view of prod is not shown:\n%s", viewText(m))
	}
	press(m, "c")
	if m.dialog != nil {
		t.Fatal("c opened the confirmation for a viewer")
	}
	if bar := lastLine(viewText(m)); strings.Contains(bar, "confirm") || strings.Contains(bar, "abort") {
		t.Errorf("the runbook bar offers changes to a viewer: %s", bar)
	}
	press(m, "n")
	if m.dialog != nil {
		t.Fatal("n opened the start form for a viewer")
	}
	for name, g := range gates {
		for _, call := range []string{"SetMode", "SuspendJobs", "ResumeJobs", "StartRunbook", "ConfirmStep:enable:", "ConfirmStep:enable:prod", "AbortRunbook"} {
			if g.n(call) != 0 {
				t.Errorf("%s: %s was called %d times", name, call, g.n(call))
			}
		}
	}
}

// What the SSH server says to a session shows on the message line.
func TestNoticeShows(t *testing.T) {
	m, _ := fourSitesModel(120, 30)
	m.Update(NoticeMsg{Text: "ckanops serve is shutting down: this session ends within 5s."})
	if !strings.Contains(viewText(m), "ckanops serve is shutting down") {
		t.Fatalf("the notice is not shown:\n%s", viewText(m))
	}
}

func viewText(m *Model) string { return m.View().Content }

func lastLine(s string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return lines[len(lines)-1]
}
