package tui

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ckanops/ckanops/api"

	tea "charm.land/bubbletea/v2"
	"github.com/charmbracelet/x/exp/golden"

	"github.com/ckanops/ckanops/ckanclient"
)

func TestRate(t *testing.T) {
	for _, tc := range []struct {
		name       string
		prev, cur  float64
		dt         time.Duration
		want       float64
		wantGapped bool
	}{
		{"steady", 100, 150, 5 * time.Second, 10, false},
		{"idle", 100, 100, 5 * time.Second, 0, false},
		{"fractional", 7, 8, 4 * time.Second, 0.25, false},
		// The gate restarted: its counter began again at zero and is now 20.
		{"reset", 5000, 20, 10 * time.Second, 2, false},
		{"same instant", 100, 150, 0, 0, true},
		{"clock went back", 100, 150, -time.Second, 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := rate(tc.prev, tc.cur, tc.dt)
			if tc.wantGapped {
				if !math.IsNaN(got) {
					t.Errorf("rate = %v, want a gap (NaN)", got)
				}
				return
			}
			if got != tc.want {
				t.Errorf("rate(%v, %v, %s) = %v, want %v", tc.prev, tc.cur, tc.dt, got, tc.want)
			}
		})
	}
}

// values formats a series for comparison: gaps as "_".
func values(vs []float64) string {
	var parts []string
	for _, v := range vs {
		if math.IsNaN(v) {
			parts = append(parts, "_")
		} else {
			parts = append(parts, fmt.Sprint(v))
		}
	}
	return strings.Join(parts, " ")
}

func TestTrafficRates(t *testing.T) {
	var tr traffic
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	read := func(s int, req, refused float64) {
		tr.addCounters(&ckanclient.GateCounters{Requests: req, RefusedWrites: refused}, at(s))
	}
	read(0, 1000, 10) // the first read only sets where the rates start
	if tr.requests.n != 0 {
		t.Fatalf("one read gave %d points, want none", tr.requests.n)
	}
	read(5, 1050, 10)
	read(10, 1150, 15)
	tr.metricsFailed() // at 15: a gap; the counters read at 10 stay
	read(20, 1350, 15) // the rate spans the gap: 200 in 10s
	read(25, 30, 0)    // the gate restarted
	if got, want := values(tr.requests.values()), "10 20 _ 20 6"; got != want {
		t.Errorf("requests/s %s, want %s", got, want)
	}
	if got, want := values(tr.refused.values()), "0 1 _ 0 0"; got != want {
		t.Errorf("refused/s %s, want %s", got, want)
	}

	// A gate without the endpoint: the rates go, the writes in flight stay.
	tr.inFlight.push(3)
	tr.metricsMissing()
	if !tr.noMetrics || tr.requests.n != 0 || tr.prev != nil || tr.inFlight.n != 1 {
		t.Errorf("after a 404: %+v", tr)
	}
	// It is upgraded: the rates start again.
	read(30, 10, 0)
	read(35, 20, 0)
	if got, want := values(tr.requests.values()), "2"; tr.noMetrics || got != want {
		t.Errorf("after the upgrade: noMetrics=%v requests/s %s, want %s", tr.noMetrics, got, want)
	}
}

func TestRingBound(t *testing.T) {
	var r ring
	for i := range 3 {
		r.push(float64(i))
	}
	if got, want := values(r.values()), "0 1 2"; got != want {
		t.Errorf("3 points: %s, want %s", got, want)
	}
	for i := 3; i < 150; i++ {
		r.push(float64(i))
	}
	vs := r.values()
	if len(vs) != sparkPoints {
		t.Fatalf("the ring holds %d points after 150, want %d", len(vs), sparkPoints)
	}
	for i, v := range vs {
		if want := float64(150 - sparkPoints + i); v != want {
			t.Fatalf("point %d is %v, want %v (the newest %d, oldest first)", i, v, want, sparkPoints)
		}
	}
	r.gap()
	if v, ok := r.last(); !ok || v != 149 {
		t.Errorf("last = %v, %v; want 149 (the newest that is not a gap)", v, ok)
	}
}

func TestSparkline(t *testing.T) {
	nan := math.NaN()
	for _, tc := range []struct {
		name  string
		vs    []float64
		width int
		want  string
	}{
		{"ramp", []float64{0, 1, 2, 3, 4, 5, 6, 7}, 8, "▁▂▃▄▅▆▇█"},
		{"scaled to the largest", []float64{10, 20, 40, 80}, 4, "▂▃▅█"},
		{"small is not zero", []float64{0, 0.01, 100}, 3, "▁▂█"},
		{"all zero", []float64{0, 0, 0}, 3, "▁▁▁"},
		{"padded on the left", []float64{1, 2}, 5, "   ▅█"},
		{"gaps", []float64{4, nan, 8, nan}, 4, "▅ █ "},
		{"only the newest", []float64{100, 100, 1, 2}, 2, "▅█"},
		{"nothing", nil, 3, "   "},
		{"no room", []float64{1}, 0, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := sparkline(tc.vs, tc.width); got != tc.want {
				t.Errorf("sparkline(%v, %d) = %q, want %q", tc.vs, tc.width, got, tc.want)
			}
		})
	}
}

// The counters of prod and data over a minute, one read every 5s.
var (
	trafficRequests = map[string][]float64{
		"prod": {0, 50, 110, 150, 230, 300, 330, 400, 500, 550, 620, 700, 760},
		"data": {4000, 4100, 4180, 4300, 4380, 4400, 4420, 4450, 4470, 4480, 4500, 4510, 4520},
	}
	trafficRefused = map[string][]float64{
		"prod": make([]float64, 13),
		"data": {0, 0, 0, 0, 0, 0, 3, 9, 14, 18, 25, 30, 34},
	}
	trafficInFlight = []int{0, 1, 0, 2, 1, 6, 5, 4, 3, 3, 2, 2, 2}
)

// inFlightWrites are n writes in flight.
func inFlightWrites(n int) []api.InFlightWrite {
	out := []api.InFlightWrite{}
	for i := range n {
		out = append(out, api.InFlightWrite{Method: "POST", Path: "/api/3/action/package_update", AgeMS: int64(1000 * (i + 1)), Remote: "10.0.0.5"})
	}
	return out
}

// fourSitesTraffic is fourSitesModel after a minute of rounds of prod's
// traffic and of data's drain (writes refused, writes in flight going
// down); staging and archive gave no metrics.
func fourSitesTraffic(w, h int) (*Model, map[string]*fakeGate) {
	m, gates := fourSitesModel(w, h)
	for i := range trafficRequests["prod"] {
		at := t0.Add(-65*time.Second + time.Duration(i)*5*time.Second)
		for _, name := range []string{"prod", "data"} {
			st := *gates[name].status
			if name == "data" {
				st.InFlight = inFlightWrites(trafficInFlight[i])
			}
			feed(m, []tea.Msg{refreshedMsg{site: name, status: &st, report: gates[name].report, at: at,
				metrics: &ckanclient.GateCounters{Requests: trafficRequests[name][i], RefusedWrites: trafficRefused[name][i]}, metricsAt: at}})
		}
	}
	// The last answers, as fourSitesModel has them.
	for name, at := range map[string]time.Time{"prod": t0.Add(-time.Second), "data": t0.Add(-2 * time.Second)} {
		feed(m, []tea.Msg{refreshedMsg{site: name, status: gates[name].status, report: gates[name].report, at: at}})
	}
	return m, gates
}

func TestDashboardTraffic(t *testing.T) {
	m, _ := fourSitesTraffic(140, 40)
	screen := frameOf(t, m)
	golden.RequireEqual(t, screen)
	lines := strings.Split(screen, "\n")
	if !strings.Contains(lines[1], "REQ/S") {
		t.Errorf("no REQ/S column at 140 columns:\n%s", screen)
	}
	// prod: 10 12 8 16 14 6 14 20 10 14 16 12 requests/s; the last ten.
	if want := "▄▇▆▄▆█▅▆▇▆"; !strings.Contains(screen, "0q/1r      "+want+" ") {
		t.Errorf("prod's sparkline is not %s:\n%s", want, screen)
	}

	m.Update(tea.WindowSizeMsg{Width: 80, Height: 24})
	screen = frameOf(t, m)
	if strings.Contains(screen, "REQ/S") || strings.ContainsAny(screen, string(sparkBars)) {
		t.Errorf("the REQ/S column does not give way at 80 columns:\n%s", screen)
	}
	for _, want := range []string{"RQ", "AGE"} {
		if !strings.Contains(strings.Split(screen, "\n")[1], want) {
			t.Errorf("the sparkline took the place of %s at 80 columns:\n%s", want, screen)
		}
	}
}

func TestSiteViewTraffic(t *testing.T) {
	m, _ := fourSitesTraffic(100, 50)
	m.selected = "data"
	cmds := press(m, "enter")
	feed(m, run(cmds[0]))
	screen := frameOf(t, m)
	golden.RequireEqual(t, screen)
	for _, want := range []string{
		"requests/s", "2/s now · max 24/s", // 10 in the last 5s; 120 between the 3rd and 4th reads
		"refused/s", "0.8/s now · max 1.4/s",
		"in flight", "2 now · max 6",
	} {
		if !strings.Contains(screen, want) {
			t.Errorf("the site view lacks %q:\n%s", want, screen)
		}
	}

	// A live site with no write in flight in its points shows no in-flight line.
	m.selected = "prod"
	press(m, "esc")
	m.selected = "prod"
	cmds = press(m, "enter")
	feed(m, run(cmds[0]))
	screen = frameOf(t, m)
	if !strings.Contains(screen, "requests/s") || strings.Contains(screen, "in flight   ") {
		t.Errorf("prod's traffic:\n%s", screen)
	}
}

// Each refresh round reads the metrics with the other calls, and the
// rates come from successive reads; a failed read is a gap, never an
// error; a gate without the endpoint has no sparkline.
func TestMetricsEachRound(t *testing.T) {
	var (
		mu  sync.Mutex
		now = t0
	)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	step := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }

	served, failing, old := newFakeGate(), newFakeGate(), newFakeGate()
	for name, g := range map[string]*fakeGate{"served": served, "failing": failing, "old": old} {
		g.status = liveStatus(name, 1)
		g.report = report(name, "2.11.0", 5, 100, 0, 0, 0, "ok")
	}
	served.counters = []ckanclient.GateCounters{{Requests: 100}, {Requests: 150, RefusedWrites: 0}, {Requests: 250, RefusedWrites: 5}}
	failing.counters = []ckanclient.GateCounters{{Requests: 10}}
	failing.metricsErr = errors.New("gate metrics: connection reset")
	// old serves no counters: a gate without the endpoint (404).
	sites := []Site{
		{Name: "failing", Gate: failing, Timeout: time.Second},
		{Name: "old", Gate: old, Timeout: time.Second},
		{Name: "served", Gate: served, Timeout: time.Second},
	}
	m, _ := newTestModel(sites, 140, 20)
	m.clock = clock
	round := func() {
		t.Helper()
		for _, s := range m.sites {
			cmd := m.startRefresh(s)
			if cmd == nil {
				t.Fatalf("%s: a refresh is still in flight", s.Name)
			}
			feed(m, run(cmd))
		}
	}
	for range 3 {
		round()
		step(5 * time.Second)
	}
	for _, g := range []*fakeGate{served, failing, old} {
		if n := g.n("Metrics"); n != 3 {
			t.Errorf("Metrics read %d times in 3 rounds, want 3", n)
		}
	}
	srv := m.byName["served"]
	if got, want := values(srv.traffic.requests.values()), "10 20"; got != want {
		t.Errorf("served: requests/s %s, want %s", got, want)
	}
	if got, want := values(srv.traffic.refused.values()), "0 1"; got != want {
		t.Errorf("served: refused/s %s, want %s", got, want)
	}
	fl := m.byName["failing"]
	if got, want := values(fl.traffic.requests.values()), "_ _ _"; got != want {
		t.Errorf("failing: requests/s %s, want gaps %s", got, want)
	}
	rows := m.sortedSites()
	for _, r := range rows {
		if r.a.word != "ok" || r.a.reason != "" || r.err != nil {
			t.Errorf("%s: the metrics read made the site look bad: %q %q %v", r.Name, r.a.word, r.a.reason, r.err)
		}
	}
	cells := map[string]string{}
	for _, r := range rows {
		cells[r.Name] = cellReqRate(m, r, t0)
	}
	if want := "        ▅█"; cells["served"] != want {
		t.Errorf("served's REQ/S cell %q, want %q", cells["served"], want)
	}
	if want := "-"; cells["old"] != want {
		t.Errorf("old's REQ/S cell %q, want %q (no metrics endpoint)", cells["old"], want)
	}
	if strings.TrimSpace(cells["failing"]) != "" {
		t.Errorf("failing's REQ/S cell %q, want blank (gaps)", cells["failing"])
	}

	// The failing gate answers again: the rate spans the gap.
	failing.mu.Lock()
	failing.metricsErr, failing.counters = nil, []ckanclient.GateCounters{{Requests: 40}}
	failing.mu.Unlock()
	round()
	step(5 * time.Second)
	failing.mu.Lock()
	failing.counters = []ckanclient.GateCounters{{Requests: 90}}
	failing.mu.Unlock()
	round()
	if got, want := values(fl.traffic.requests.values()), "_ _ _ 10"; got != want {
		t.Errorf("failing, then answering: requests/s %s, want %s", got, want)
	}
}

// A metrics read that hangs is bounded by the site's timeout, like the
// other reads, and leaves a gap.
func TestMetricsTimeout(t *testing.T) {
	g := &hangingMetrics{fakeGate: newFakeGate()}
	g.status = liveStatus("slow", 1)
	m, _ := newTestModel([]Site{{Name: "slow", Gate: g, Timeout: 50 * time.Millisecond}}, 80, 24)
	s := m.sites[0]
	start := time.Now()
	feed(m, run(m.startRefresh(s)))
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("the refresh took %s with a 50ms timeout", d)
	}
	if s.err != nil || s.status == nil {
		t.Errorf("a hanging metrics read failed the refresh: %v", s.err)
	}
	if got, want := values(s.traffic.requests.values()), "_"; got != want {
		t.Errorf("requests/s %s, want a gap", got)
	}
}

type hangingMetrics struct{ *fakeGate }

func (g *hangingMetrics) Metrics(ctx context.Context) (*ckanclient.GateCounters, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}
