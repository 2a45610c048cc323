package tui

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/ckanops/ckanops/api"
)

// The console reads the typed details of a report as it gets it, JSON
// from the gate. A detail the report lacks (a renamed key, a failed
// probe) is shown as unknown, never as zero.
func TestDetailsFromTheWire(t *testing.T) {
	decode := func(js string) *api.Report {
		t.Helper()
		var rep api.Report
		if err := json.Unmarshal([]byte(js), &rep); err != nil {
			t.Fatal(err)
		}
		return &rep
	}
	known := decode(`{"site":"prod","checks":[
		{"name":"ckan","status":"ok","summary":"CKAN 2.11.5","details":{"version":"2.11.5","plugins":["datastore"],"latency_ms":4.2}},
		{"name":"ckan_db","status":"ok","summary":"fine","details":{"host":"db:5432","connections":41,"max_connections":100,
			"longest_transaction_seconds":192.5,"write_transactions":2,"idle_in_transaction":0,"waiting_on_locks":1}},
		{"name":"redis","status":"warn","summary":"suspended","details":{"site_id":"default","queued":12,"running":0,"suspended":true}},
		{"name":"storage","status":"ok","summary":"40.0 GB free of 100.0 GB, newest change 3s ago (a)","details":{"path":"/srv","free_bytes":40000000000,"total_bytes":100000000000}}]}`)
	renamed := decode(`{"site":"prod","checks":[
		{"name":"ckan","status":"fail","summary":"refused","details":{"latency_ms":1.0}},
		{"name":"ckan_db","status":"ok","summary":"fine","details":{"host":"db:5432","conns":41,"max_connections":100}},
		{"name":"redis","status":"ok","summary":"fine","details":{"site_id":"default","queued":12,"jobs_running":0,"suspended":"yes"}}]}`)
	r := func(rep *api.Report) ranked { return ranked{siteState: &siteState{report: rep}} }
	now := time.Now()
	for _, c := range []struct {
		name string
		cell func(*Model, ranked, time.Time) string
		rep  *api.Report
		want string
	}{
		{"CKAN", cellCKAN, known, "2.11.5"},
		{"DB", cellDB, known, "41/100"},
		{"TX", cellTX, known, "3m12s"},
		{"RQ", cellRQ, known, "12q/0r susp"},
		{"CKAN unknown", cellCKAN, renamed, "fail"},
		{"DB unknown", cellDB, renamed, "ok"},
		{"TX unknown", cellTX, renamed, "-"},
		{"RQ unknown", cellRQ, renamed, "ok"},
	} {
		if got := c.cell(nil, r(c.rep), now); got != c.want {
			t.Errorf("%s: %q, want %q", c.name, got, c.want)
		}
	}

	for _, c := range []struct {
		check string
		rep   *api.Report
		want  string
	}{
		{"ckan_db", known, "connections 41/100 · longest transaction 3m12s · 2 write transaction(s) · 1 waiting on locks"},
		{"redis", known, "workers SUSPENDED"},
		{"storage", known, ""}, // the summary says the free space: not again
		{"ckan_db", renamed, ""},
		{"redis", renamed, ""},
	} {
		if got := keyDetails(*check(c.rep, c.check)); got != c.want {
			t.Errorf("%s: key details %q, want %q", c.check, got, c.want)
		}
	}
	if c := check(renamed, "redis"); c.DetailsErr == nil || !strings.Contains(c.DetailsErr.Error(), `"suspended"`) {
		t.Errorf("redis: details error %v", c.DetailsErr)
	}

	s := &siteState{report: renamed}
	if suspended, known := rqSuspended(s); suspended || known {
		t.Errorf("RQ suspended %v, known %v: want unknown", suspended, known)
	}
}
