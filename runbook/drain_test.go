package runbook

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ckanops/ckanops/api"
	"github.com/ckanops/ckanops/config"
)

// fromWire decodes a check as the console and a remote engine get it.
func fromWire(t *testing.T, js string) api.CheckResult {
	t.Helper()
	var c api.CheckResult
	if err := json.Unmarshal([]byte(js), &c); err != nil {
		t.Fatal(err)
	}
	return c
}

// A count the checks report does not know is never zero: the drain waits
// on it, says why, and records it as null.
func TestDrainUnknownIsNotZero(t *testing.T) {
	rq := func(suspended *bool, running *int64) api.CheckResult {
		return api.CheckResult{Name: api.ProbeRedis, Status: api.CheckWarn, Summary: "suspended",
			RQ: &api.RQDetails{SiteID: "default", Suspended: suspended, Running: running}}
	}
	db := func(name string, writes *int) api.CheckResult {
		return api.CheckResult{Name: name, Status: api.CheckOK, Summary: "fine",
			Postgres: &api.PostgresDetails{Host: "db:5432", Database: "ckan", User: "ckan", WriteTransactions: writes}}
	}
	idleRQ := rq(new(true), new(int64(0)))
	cases := []struct {
		name     string
		checks   []api.CheckResult
		ckanDB   config.SecretURL // [checks] ckan_db
		want     string           // "" for drained
		evidence map[string]any
	}{
		{name: "every count known and zero", checks: []api.CheckResult{idleRQ, db(api.ProbeCKANDB, new(0)), db(api.ProbeDatastoreDB, new(0))},
			evidence: map[string]any{"rq_running": int64(0), "ckan_db_write_transactions": 0, "datastore_db_write_transactions": 0}},
		{name: "not configured", checks: []api.CheckResult{idleRQ, {Name: api.ProbeCKANDB, NotConfigured: true, Status: api.CheckUnknown}}},
		{name: "write transactions", checks: []api.CheckResult{idleRQ, {Name: api.ProbeCKANDB, Status: api.CheckOK,
			Postgres: &api.PostgresDetails{WriteTransactions: new(2), Transactions: []api.PostgresTransaction{
				{PID: 7, User: "ckan", ApplicationName: "harvest", Writing: true, AgeSeconds: 12}}}}},
			want: `ckan_db: 2 write transaction(s) (oldest: pid 7, user ckan, application "harvest", 12s)`},

		{name: "the probe left the count out", checks: []api.CheckResult{idleRQ, db(api.ProbeCKANDB, nil)},
			want:     `ckan_db: its write transactions are unknown: the ckan_db check (ok) reports no "write_transactions"`,
			evidence: map[string]any{"ckan_db_write_transactions": nil}},
		{name: "no details at all", checks: []api.CheckResult{idleRQ, {Name: api.ProbeDatastoreDB, Status: api.CheckWarn, Summary: "slow"}},
			want: "datastore_db: its write transactions are unknown"},
		{name: "a check not reported in time", checks: []api.CheckResult{idleRQ, {Name: api.ProbeCKANDB, Status: api.CheckUnknown,
			Summary: "not reported: the request ended before the round of checks did"}},
			want: "ckan_db: its write transactions are unknown: the check is unknown: not reported"},
		{name: "a failed check", checks: []api.CheckResult{idleRQ, {Name: api.ProbeCKANDB, Status: api.CheckFail, Summary: "connection refused",
			Postgres: &api.PostgresDetails{Host: "db:5432"}}},
			want: "ckan_db cannot be read: connection refused"},
		{name: "a renamed key on the wire", checks: []api.CheckResult{idleRQ, fromWire(t,
			`{"name":"ckan_db","status":"ok","summary":"fine","details":{"host":"db:5432","write_transaction_count":0,"transactions":[]}}`)},
			want: `ckan_db: its write transactions are unknown: the ckan_db check (ok) reports no "write_transactions"`},
		{name: "a value of another type on the wire", checks: []api.CheckResult{idleRQ, fromWire(t,
			`{"name":"datastore_db","status":"ok","summary":"fine","details":{"write_transactions":"0"}}`)},
			want: `datastore_db: its write transactions are unknown: api: the details of check "datastore_db" do not decode: "write_transactions": json: cannot unmarshal string`},
		{name: "a configured database missing from the report", checks: []api.CheckResult{idleRQ}, ckanDB: "postgres://ckan@db/ckan",
			want: "ckan_db: its write transactions are unknown: the checks report has no ckan_db check"},

		{name: "RQ's running count left out", checks: []api.CheckResult{rq(new(true), nil)},
			want: `RQ's running jobs are unknown: the redis check (warn) reports no "running"`, evidence: map[string]any{"rq_running": nil}},
		{name: "RQ's suspension left out", checks: []api.CheckResult{rq(nil, new(int64(0)))},
			want: "whether RQ's workers are suspended is unknown"},
		{name: "RQ's running count renamed on the wire", checks: []api.CheckResult{fromWire(t,
			`{"name":"redis","status":"warn","summary":"suspended","details":{"site_id":"default","suspended":true,"jobs_running":0}}`)},
			want: `RQ's running jobs are unknown: the redis check (warn) reports no "running"`},
		{name: "RQ jobs running", checks: []api.CheckResult{rq(new(true), new(int64(3)))}, want: "3 RQ job(s) running"},
		{name: "sessions hidden from the probe", checks: []api.CheckResult{idleRQ, {Name: api.ProbeDatastoreDB, Status: api.CheckWarn,
			Postgres: &api.PostgresDetails{User: "ckan_default", WriteTransactions: new(0), HiddenSessions: new(3)}}},
			want: "datastore_db: its write transactions are unknown: 3 session(s) of other roles are hidden from ckan_default (as a superuser, run: GRANT pg_read_all_stats TO ckan_default;)"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			site := newFakeSite(t)
			site.noRQ = true // the case's checks are the whole report
			site.checks = c.checks
			site.st.Mode = api.ModeReadOnly
			e, _ := testEngine(t, site, func(o *Options) { o.Checks.CKANDB = c.ckanDB })
			busy, details := e.busy(context.Background())
			got := strings.Join(busy, "; ")
			switch {
			case c.want == "" && got != "":
				t.Errorf("busy: %s; want drained", got)
			case c.want != "" && !strings.Contains(got, c.want):
				t.Errorf("busy: %q\nwant it to say %q", got, c.want)
			}
			for k, want := range c.evidence {
				if v, ok := details[k]; !ok || v != want {
					t.Errorf("evidence %s = %#v (present %v), want %#v", k, v, ok, want)
				}
			}
		})
	}
}

// A drain whose database count is unknown keeps waiting, saying so, and
// ends once the count is known to be zero.
func TestDrainWaitsOnUnknown(t *testing.T) {
	site := newFakeSite(t)
	site.checks = []api.CheckResult{fromWire(t,
		`{"name":"ckan_db","status":"ok","summary":"fine","details":{"host":"db:5432","database":"ckan","user":"ckan","write_transaction_count":0}}`)}
	e, _ := testEngine(t, site, nil)
	if _, err := e.Start(context.Background(), api.RunbookOptions{AutoConfirm: true, SkipMigrate: true}, "ops-token"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, e, "the drain to wait on the unknown count", func(rb *api.Runbook) bool {
		for _, ev := range rb.StepByName(api.StepDrain).Evidence {
			if strings.HasPrefix(ev.Summary, "waiting: ckan_db: its write transactions are unknown") && !ev.OK {
				return true
			}
		}
		return false
	})
	if rb, _ := e.Current(); stepState(rb, api.StepDrain) != api.StepRunning || stepState(rb, api.StepSnapshot) != api.StepPending {
		t.Fatalf("drain %s, snapshot %s: the drain passed on an unknown count", stepState(rb, api.StepDrain), stepState(rb, api.StepSnapshot))
	}
	site.set(func(f *fakeSite) {
		f.checks = []api.CheckResult{{Name: api.ProbeCKANDB, Status: api.CheckOK, Postgres: &api.PostgresDetails{WriteTransactions: new(0)}}}
	})
	rb := waitFor(t, e, "the drain to end", func(rb *api.Runbook) bool { return stepState(rb, api.StepDrain) == api.StepDone })
	var drained *api.Evidence
	for i, ev := range rb.StepByName(api.StepDrain).Evidence {
		if ev.OK && ev.Details["drained_at"] != nil {
			drained = &rb.StepByName(api.StepDrain).Evidence[i]
		}
	}
	if drained == nil || drained.Details["ckan_db_write_transactions"] != 0 {
		t.Fatalf("drained evidence %+v", drained)
	}
}

// A gate that stopped heartbeating may still let writes through: the
// drain waits for it until an operator says, by its id, that it is
// stopped; that word is journaled and audited.
func TestDrainWaitsForAGoneGate(t *testing.T) {
	site := newFakeSite(t)
	site.otherGates = []api.GateInfo{{ID: "web-2", Version: 1, Phase: api.PhaseLive, Seen: time.Now().Add(-time.Hour), Gone: true}}
	e, _ := testEngine(t, site, nil)
	rb, err := e.Start(context.Background(), api.RunbookOptions{AutoConfirm: true, SkipMigrate: true}, "ops-token")
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, e, "the drain to wait for the gone gate", func(rb *api.Runbook) bool {
		for _, ev := range rb.StepByName(api.StepDrain).Evidence {
			if strings.Contains(ev.Summary, "gate web-2 is gone") && strings.Contains(ev.Summary, "--gate-stopped web-2") {
				return true
			}
		}
		return false
	})
	if _, err := e.AckGateStopped(api.RunbookAction{ID: rb.ID}, "ops-token"); err == nil {
		t.Fatal("an acknowledgement without a gate id was taken")
	}
	// Another gate's id does not release this one.
	if _, err := e.AckGateStopped(api.RunbookAction{ID: rb.ID, Gate: "web-3"}, "ops-token"); err != nil {
		t.Fatal(err)
	}
	if cur, _ := e.Current(); stepState(cur, api.StepDrain) != api.StepRunning {
		t.Fatalf("the drain passed with web-2 gone and unconfirmed: %s", stepState(cur, api.StepDrain))
	}
	if _, err := e.AckGateStopped(api.RunbookAction{ID: rb.ID, Gate: "web-2", Reason: "powered off"}, "ckan:admin"); err != nil {
		t.Fatal(err)
	}
	rb = waitFor(t, e, "the drain to end", func(rb *api.Runbook) bool { return stepState(rb, api.StepDrain) == api.StepDone })
	if !slices.Contains(rb.StoppedGates, "web-2") {
		t.Errorf("stopped gates %v", rb.StoppedGates)
	}
	site.mu.Lock()
	defer site.mu.Unlock()
	if !slices.Contains(site.audit, "runbook-gate-stopped") {
		t.Errorf("not audited: %v", site.audit)
	}
}
