package tui

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"charm.land/bubbles/v2/key"
	tea "charm.land/bubbletea/v2"
	"github.com/charmbracelet/x/exp/teatest/v2"

	"github.com/ckanops/ckanops/api"
	"github.com/ckanops/ckanops/ckanclient"
	"github.com/ckanops/ckanops/config"
)

// The console as a real Bubble Tea program: the first refresh runs, the
// operator opens a site, goes back and quits.
func TestProgram(t *testing.T) {
	sites, gates := fourSites()
	gates["archive"].statusErr = &testErr{"gate status: nothing is listening"}
	m := New(sites, Options{Clock: fixedClock, NoColor: true, Refresh: time.Hour})
	m.loc = time.UTC
	tm := teatest.NewTestModel(t, m, teatest.WithInitialTermSize(120, 30))
	waitFor := func(what string) {
		t.Helper()
		teatest.WaitFor(t, tm.Output(), func(b []byte) bool { return bytes.Contains(b, []byte(what)) },
			teatest.WithDuration(10*time.Second), teatest.WithCheckInterval(10*time.Millisecond))
	}
	waitFor("READ-ONLY")
	tm.Send(tea.KeyPressMsg{Code: tea.KeyEnter})
	waitFor("LAST RUNBOOK")
	tm.Send(tea.KeyPressMsg{Code: tea.KeyEscape})
	tm.Type("q")
	final := tm.FinalModel(t, teatest.WithFinalTimeout(10*time.Second)).(*Model)

	if final.view != viewDashboard {
		t.Errorf("final view %d, want the dashboard", final.view)
	}
	for _, s := range final.sites {
		if s.fetching {
			t.Errorf("%s is still refreshing", s.Name)
		}
		if s.Name == "archive" {
			if s.err == nil {
				t.Error("archive is not unreachable")
			}
		} else if s.status == nil {
			t.Errorf("%s has no status", s.Name)
		}
	}
	if final.ctx.Err() == nil {
		t.Error("quitting did not stop the model's commands")
	}
}

type testErr struct{ s string }

func (e *testErr) Error() string { return e.s }

// No two bindings of one context share a key.
func TestKeysDoNotCollide(t *testing.T) {
	k := newKeyMap()
	contexts := map[string][]key.Binding{
		"dashboard": append(k.global(), k.dashboard()...),
		"site":      append(k.global(), k.site()...),
		"runbook":   append(k.global(), k.runbook()...),
		"form":      k.form(),
		"y/N":       k.yesNo(),
		"filter":    k.filter(),
	}
	for name, bs := range contexts {
		seen := map[string]string{}
		for _, b := range bs {
			for _, key := range b.Keys() {
				if other, dup := seen[key]; dup {
					t.Errorf("%s: key %q is bound to %q and %q", name, key, other, b.Help().Desc)
				}
				seen[key] = b.Help().Desc
			}
		}
	}
}

func TestSitesFromConfig(t *testing.T) {
	t.Setenv("CKANOPS_TEST_TOKEN", "s3cret")
	cfg := &config.Sites{
		Sites: []config.Site{
			{Name: "prod", URL: "https://prod.example.org", TokenEnv: "CKANOPS_TEST_TOKEN"},
			{Name: "notoken", URL: "https://x.example.org", TokenEnv: "CKANOPS_TEST_UNSET"},
		},
		Defaults: config.ConsoleDefaults{Timeout: config.Duration{Duration: 3 * time.Second}},
	}
	sites := SitesFromConfig(cfg, ckanclient.Options{UserAgent: "test"})
	if len(sites) != 2 {
		t.Fatalf("%d sites", len(sites))
	}
	if sites[0].Timeout != 3*time.Second {
		t.Errorf("timeout %s, want the [console] default", sites[0].Timeout)
	}
	if _, ok := sites[0].Gate.(brokenGate); ok {
		t.Errorf("prod has a broken gate")
	}
	if _, err := sites[1].Gate.Status(t.Context()); err == nil || !strings.Contains(err.Error(), "CKANOPS_TEST_UNSET") {
		t.Errorf("a site without token: %v", err)
	}
}

// The console learns each site's runbook from its refresh rounds: the
// dashboard shows it, and quitting sums up the ones still active.
func TestProgramQuitSummary(t *testing.T) {
	sites, gates := fourSites()
	gates["data"].runbook = midDrainRunbook()
	m := New(sites, Options{Clock: fixedClock, NoColor: true, Refresh: time.Hour})
	m.loc = time.UTC
	tm := teatest.NewTestModel(t, m, teatest.WithInitialTermSize(120, 30))
	teatest.WaitFor(t, tm.Output(), func(b []byte) bool { return bytes.Contains(b, []byte("running at drain")) },
		teatest.WithDuration(10*time.Second), teatest.WithCheckInterval(10*time.Millisecond))
	tm.Type("q")
	final := tm.FinalModel(t, teatest.WithFinalTimeout(10*time.Second)).(*Model)
	want := "still running at drain on data; `ckanops runbook data` re-attaches"
	if got := final.QuitSummary(); len(got) != 1 || got[0] != want {
		t.Errorf("quit summary %q, want [%q]", got, want)
	}
	if n := gates["prod"].n("Runbook"); n != 1 {
		t.Errorf("prod's runbook read %d times in one round, want 1", n)
	}
}

// The console as a program: after an action's answer, the site's status,
// checks and audit tail are read again, so the screen tells one story.
func TestProgramRefreshesAfterAnAction(t *testing.T) {
	sites, gates := fourSites()
	g := gates["data"]
	m := New(sites, Options{Clock: fixedClock, NoColor: true, Refresh: time.Hour})
	m.loc = time.UTC
	tm := teatest.NewTestModel(t, m, teatest.WithInitialTermSize(120, 40))
	waitFor := func(what string) {
		t.Helper()
		teatest.WaitFor(t, tm.Output(), func(b []byte) bool { return bytes.Contains(b, []byte(what)) },
			teatest.WithDuration(10*time.Second), teatest.WithCheckInterval(10*time.Millisecond))
	}
	waitFor("READ-ONLY")
	tm.Send(tea.KeyPressMsg{Code: tea.KeyDown}) // rows by name: archive, then data
	tm.Send(tea.KeyPressMsg{Code: tea.KeyEnter})
	waitFor("LAST RUNBOOK")
	statusReads, auditReads := g.n("Status"), g.n("AuditTail")
	g.mu.Lock()
	g.audit = append(g.audit, api.AuditEntry{Time: t0, Event: "mode", Actor: "ops-token", From: "read-only", To: "live", Version: 13, Reason: "from the console"})
	g.mu.Unlock()
	tm.Type("d")
	waitFor("y: yes, send it")
	tm.Type("y")
	waitFor("from the console") // the audit tail, read again after the answer
	tm.Type("q")
	tm.FinalModel(t, teatest.WithFinalTimeout(10*time.Second))
	if g.n("Status") <= statusReads || g.n("AuditTail") <= auditReads {
		t.Errorf("after the action: status read %d more times, audit %d more", g.n("Status")-statusReads, g.n("AuditTail")-auditReads)
	}
}
