package tui

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/ckanops/ckanops/api"

	tea "charm.land/bubbletea/v2"
)

// hundredSites is a model of 100 sites in every state: mostly healthy,
// some draining, stale or unreachable.
func hundredSites(b *testing.B, w, h int, noColor bool) *Model {
	b.Helper()
	var sites []Site
	var msgs []tea.Msg
	for i := range 100 {
		name := fmt.Sprintf("site-%03d", i)
		g := newFakeGate()
		sites = append(sites, Site{Name: name, Gate: g})
		msg := refreshedMsg{site: name, status: liveStatus(name, int64(i)), at: t0.Add(-time.Second),
			report: report(name, "2.10.4", i, 100, float64(i), i%7, i%3, "ok")}
		switch i % 10 {
		case 3:
			msg.status = drainingStatus(name)
		case 5:
			msg.at = t0.Add(-time.Minute)
		case 7:
			msg.status, msg.report = nil, nil
			msg.err = errors.New("gate status: no answer within 5s from https://" + name + ".example.org")
		}
		msgs = append(msgs, msg)
	}
	m := New(sites, Options{Clock: fixedClock, NoColor: noColor, Refresh: 5 * time.Second})
	m.loc = time.UTC
	m.after = func(time.Duration, tea.Msg) tea.Cmd { return nil }
	m.Update(tea.WindowSizeMsg{Width: w, Height: h})
	feed(m, msgs)
	return m
}

// BenchmarkDashboardView100 renders the dashboard of 100 sites.
func BenchmarkDashboardView100(b *testing.B) {
	for _, c := range []struct {
		name    string
		w, h    int
		noColor bool
	}{
		{"140x40", 140, 40, false},
		{"140x110-all-rows", 140, 110, false},
		{"140x110-all-rows-nocolor", 140, 110, true},
	} {
		b.Run(c.name, func(b *testing.B) {
			m := hundredSites(b, c.w, c.h, c.noColor)
			b.ReportAllocs()
			for b.Loop() {
				_ = m.View()
			}
		})
	}
}

// BenchmarkRefreshRound100 refreshes 100 sites whose gates each take
// 200 ms to answer, through the console's bounded concurrency: one
// iteration is one whole round.
func BenchmarkRefreshRound100(b *testing.B) {
	var sites []Site
	for i := range 100 {
		g := newFakeGate()
		g.delay = 200 * time.Millisecond
		name := fmt.Sprintf("site-%03d", i)
		g.status = liveStatus(name, 1)
		g.report = report(name, "2.10.4", 1, 100, 0, 0, 0, "ok")
		sites = append(sites, Site{Name: name, Gate: g, Timeout: 5 * time.Second})
	}
	m := New(sites, Options{Refresh: 5 * time.Second})
	m.after = func(time.Duration, tea.Msg) tea.Cmd { return nil }
	defer m.Close()
	for b.Loop() {
		var cmds []tea.Cmd
		for _, s := range m.sites {
			cmds = append(cmds, m.startRefresh(s))
		}
		msgs := make([]tea.Msg, len(cmds))
		var wg sync.WaitGroup
		for i, c := range cmds {
			wg.Add(1)
			go func() { defer wg.Done(); msgs[i] = c() }()
		}
		wg.Wait()
		feed(m, msgs)
		for _, s := range m.sites {
			if s.err != nil || s.status == nil || s.status.Mode != api.ModeLive {
				b.Fatalf("%s: %v", s.Name, s.err)
			}
		}
	}
}
