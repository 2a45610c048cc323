package tui

import (
	"errors"
	"fmt"
	"time"

	"github.com/ckanops/ckanops/api"

	tea "charm.land/bubbletea/v2"
)

func ptrTime(t time.Time) *time.Time { return &t }

// report is a checks report with every check configured.
func report(site, version string, conns, maxConns int, longest float64, queued, running int, solr api.CheckStatus) *api.Report {
	at := t0.Add(-2 * time.Second)
	return &api.Report{Site: site, Checks: []api.CheckResult{
		{Name: "gate", Status: "ok", Summary: "gate answers", ObservedAt: at},
		{Name: "ckan", Status: "ok", Summary: "CKAN " + version + ", 12 plugins, 41.0 ms", ObservedAt: at,
			CKAN: &api.CKANDetails{Version: new(version), LatencyMS: new(41.0)}},
		{Name: "ckan_db", Status: "ok", Summary: fmt.Sprintf("%d/%d connections, no write transaction, ping 0.8 ms", conns, maxConns), ObservedAt: at,
			Postgres: &api.PostgresDetails{Connections: new(conns), MaxConnections: new(maxConns), LongestTransactionSeconds: new(longest),
				WriteTransactions: new(0), IdleInTransaction: new(0), WaitingOnLocks: new(0)}},
		{Name: "datastore_db", Status: "ok", Summary: "4/100 connections, no write transaction, ping 0.9 ms", ObservedAt: at,
			Postgres: &api.PostgresDetails{Connections: new(4), MaxConnections: new(100), LongestTransactionSeconds: new(0.4)}},
		{Name: "redis", Status: "ok", Summary: fmt.Sprintf("%d queued, %d running, 2 worker(s), ping 0.3 ms", queued, running), ObservedAt: at,
			RQ: &api.RQDetails{Queued: new(int64(queued)), Running: new(int64(running)), Workers: new(int64(2)), Suspended: new(false)}},
		{Name: "solr", Status: solr, Summary: "Solr answers its ping, 3.0 ms", ObservedAt: at, Solr: &api.SolrDetails{LatencyMS: new(3.0)}},
		{Name: "storage", Status: "ok", Summary: "/var/lib/ckan: 40% free", ObservedAt: at,
			Storage: &api.StorageDetails{FreeBytes: new(uint64(40e9)), TotalBytes: new(uint64(100e9))}},
	}}
}

func liveStatus(site string, version int64) *api.Status {
	return &api.Status{
		Site: site, Mode: api.ModeLive, Phase: api.PhaseLive,
		Since: t0.Add(-72 * time.Hour), Version: version, Actor: "ckan:admin", Reason: "upgrade done",
		Gates: []api.GateInfo{
			{ID: "web-1", Version: version, Phase: "live", Seen: t0.Add(-time.Second)},
			{ID: "web-2", Version: version, Phase: "live", Seen: t0.Add(-2 * time.Second)},
		},
		Store: &api.StoreHealth{Kind: "redis", OK: true},
	}
}

func drainingStatus(site string) *api.Status {
	return &api.Status{
		Site: site, Mode: api.ModeReadOnly, Phase: api.PhaseDraining,
		Message: "Upgrading to CKAN 2.11; back by 17:00", Since: t0.Add(-20 * time.Second),
		Until: ptrTime(t0.Add(2 * time.Hour)), Version: 8, Actor: "ckan:admin", Reason: "upgrade",
		InFlight: []api.InFlightWrite{
			{Method: "POST", Path: "/api/3/action/package_update", AgeMS: 12500, Remote: "10.0.0.5"},
			{Method: "POST", Path: "/dataset/edit/water-quality", AgeMS: 3100, Remote: "10.0.0.9"},
		},
		Gates: []api.GateInfo{
			{ID: "web-1", Version: 8, Phase: "draining", InFlight: 2, Seen: t0.Add(-time.Second)},
			{ID: "web-2", Version: 8, Phase: "quiesced", Seen: t0.Add(-time.Second)},
			{ID: "web-3", Version: 7, Phase: "live", Seen: t0.Add(-3 * time.Second)},
		},
		Store: &api.StoreHealth{Kind: "redis", OK: true},
	}
}

// fourSites is the dashboard of the golden tests: a healthy site, a
// stale one, an unreachable one and a draining one.
func fourSites() ([]Site, map[string]*fakeGate) {
	gates := map[string]*fakeGate{}
	var sites []Site
	for _, name := range []string{"prod", "staging", "archive", "data"} {
		g := newFakeGate()
		gates[name] = g
		sites = append(sites, Site{Name: name, URL: "https://" + name + ".example.org", Gate: g, Timeout: 5 * time.Second})
	}
	gates["prod"].status = liveStatus("prod", 7)
	gates["prod"].report = report("prod", "2.10.4", 23, 100, 1.2, 0, 1, "ok")
	gates["staging"].status = liveStatus("staging", 3)
	gates["staging"].report = report("staging", "2.11.0", 5, 100, 0.1, 3, 0, "ok")
	gates["archive"].status = liveStatus("archive", 12)
	gates["archive"].report = report("archive", "2.9.11", 8, 50, 0, 0, 0, "ok")
	gates["data"].status = drainingStatus("data")
	gates["data"].report = report("data", "2.10.4", 41, 100, 192, 12, 2, "warn")
	gates["data"].audit = []api.AuditEntry{
		{Time: t0.Add(-3 * time.Hour), Event: "mode", Actor: "ckan:admin", From: "read-only", To: "live", Version: 11, Reason: "harvest done", Remote: "10.0.0.5"},
		{Time: t0.Add(-25 * time.Second), Event: "rq-suspend", Actor: "ops-token", From: "resumed", To: "suspended", Remote: "runbook"},
		{Time: t0.Add(-20 * time.Second), Event: "mode", Actor: "ops-token", From: "live", To: "read-only", Version: 12, Reason: "runbook rb-20260314-1455: enable", Remote: "runbook"},
	}
	return sites, gates
}

// fourSitesModel is the model of fourSites with every site refreshed:
// prod and data just now, staging 40s ago, archive 3m ago and then not
// reachable.
func fourSitesModel(w, h int) (*Model, map[string]*fakeGate) {
	sites, gates := fourSites()
	m, _ := newTestModel(sites, w, h)
	ok := func(name string, at time.Time) tea.Msg {
		g := gates[name]
		return refreshedMsg{site: name, status: g.status, report: g.report, at: at}
	}
	feed(m, []tea.Msg{
		ok("prod", t0.Add(-time.Second)),
		ok("staging", t0.Add(-40*time.Second)),
		ok("archive", t0.Add(-3*time.Minute)),
		refreshedMsg{site: "archive", at: t0.Add(-4 * time.Second),
			err:       errors.New("gate status: nothing is listening at https://archive.example.org — is the gate/CKAN running, and is the site's url right? (connection refused)"),
			reportErr: errors.New("gate health: connection refused")},
		ok("data", t0.Add(-2*time.Second)),
	})
	return m, gates
}

// midDrainRunbook is a runbook on site data that has enabled read-only
// and drains; its journal is at event 40.
func midDrainRunbook() *api.Runbook {
	started := t0.Add(-5 * time.Minute)
	at := func(d time.Duration) *time.Time { return ptrTime(started.Add(d)) }
	ev := func(d time.Duration, kind, summary string) api.Evidence {
		return api.Evidence{Time: *at(d), Kind: kind, Summary: summary, OK: true}
	}
	return &api.Runbook{
		ID: "rb-20260314-1455", Site: "data", State: api.RunbookRunning, Step: api.StepDrain,
		Actor: "ckan:admin", Started: started, Seq: 40,
		Options: api.RunbookOptions{Mode: api.ModeReadOnly, Message: "Upgrading to CKAN 2.11", For: "2h"},
		Steps: []api.RunbookStep{
			{Name: "preflight", State: "done", Started: at(0), Ended: at(20 * time.Second), Attempts: 1,
				Evidence: []api.Evidence{ev(10*time.Second, "check", "7 checks: 6 ok, 1 warning (solr) acknowledged")}},
			{Name: "enable", State: "done", Started: at(time.Minute), Ended: at(time.Minute + time.Second), Attempts: 1,
				Evidence: []api.Evidence{ev(time.Minute, "mode", "read-only, version 8, applied by 3/3 gates")}},
			{Name: "drain", State: "running", Started: at(4*time.Minute + 40*time.Second), Attempts: 1},
			{Name: "snapshot", State: "pending"},
			{Name: "migrate", State: "pending", Skippable: true},
			{Name: "verify", State: "pending"},
			{Name: "disable", State: "pending"},
		},
	}
}

// drainEvents are the journal events after midDrainRunbook's.
func drainEvents() []api.RunbookEvent {
	id := "rb-20260314-1455"
	ev := func(seq int64, d time.Duration, kind string, e *api.RunbookEvent) api.RunbookEvent {
		e.Seq, e.Time, e.Runbook, e.Kind = seq, t0.Add(-d), id, kind
		return *e
	}
	evid := func(s string) *api.Evidence {
		return &api.Evidence{Time: t0, Kind: "check", Summary: s}
	}
	return []api.RunbookEvent{
		ev(41, 20*time.Second, api.EventStep, &api.RunbookEvent{Step: "drain", State: "running"}),
		ev(42, 15*time.Second, api.EventEvidence, &api.RunbookEvent{Step: "drain", Evidence: evid("waiting: 3 writes in flight on gate web-1; RQ: 1 job running")}),
		ev(43, 10*time.Second, api.EventEvidence, &api.RunbookEvent{Step: "drain", Evidence: evid("waiting: 2 writes in flight on gate web-1; RQ: no job running")}),
		ev(44, 5*time.Second, api.EventEvidence, &api.RunbookEvent{Step: "drain", Evidence: evid("waiting: 2 writes in flight on gate web-1")}),
	}
}
