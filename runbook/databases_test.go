package runbook

import (
	"context"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ckanops/ckanops/api"
	"github.com/ckanops/ckanops/checks"
	"github.com/ckanops/ckanops/config"
	"github.com/ckanops/ckanops/internal/testpg"
	"github.com/ckanops/ckanops/runbook/snapshot"
)

// probedSite is a fakeSite whose health report comes from the real
// probes of its [checks] and [[database]] tables, as the gate's does.
type probedSite struct {
	*fakeSite
	runner *checks.Runner
}

func (p *probedSite) Health(ctx context.Context, _ bool) api.Report { return p.runner.Fresh(ctx) }

// A write transaction in one of the site's other databases ([[database]])
// holds the drain, which names it; once it commits, the site drains and
// the snapshot holds that database's dump, consistent.
func TestDrainWaitsOnOtherDatabase(t *testing.T) {
	cl := testpg.Start(t)
	ckanDB := config.SecretURL(cl.CreateDB(t, "ckan"))
	dp := config.Database{Name: "datapusher", DSN: config.SecretURL(cl.CreateDB(t, "datapusher_jobs"))}
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dp.DSN.Reveal())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	for _, s := range []string{`CREATE TABLE jobs (id int)`, `BEGIN`, `INSERT INTO jobs VALUES (1)`} {
		if _, err := conn.Exec(ctx, s); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}

	cc := config.ChecksConfig{CKANDB: ckanDB, Databases: []config.Database{dp}, Timeout: config.Duration{Duration: 5 * time.Second}}
	up, _ := url.Parse("http://127.0.0.1:1")
	probes, err := checks.Probes(cc, up)
	if err != nil {
		t.Fatal(err)
	}
	probes = probes[1:] // not the ckan probe: no CKAN here
	fake := newFakeSite(t)
	fake.noRQ = true
	site := &probedSite{fakeSite: fake, runner: checks.NewRunner(checks.RunnerOptions{Site: "prod", Timeout: 5 * time.Second}, probes...)}
	e, _ := testEngine(t, nil, func(o *Options) {
		o.Site = site
		o.Checks = cc
		o.Snapshot.PGDump = filepath.Join(cl.BinDir(), "pg_dump")
		o.StatsSettle = time.Millisecond
		o.Poll = 50 * time.Millisecond
	})
	if _, err := e.Start(ctx, api.RunbookOptions{AutoConfirm: true, SkipMigrate: true}, "ops-token"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, e, "the drain to wait on the datapusher write", func(rb *api.Runbook) bool {
		if ended(rb) {
			t.Fatalf("the runbook ended: %s at %s: %s", rb.State, rb.Step, rb.Error)
		}
		for _, ev := range rb.StepByName(api.StepDrain).Evidence {
			if strings.HasPrefix(ev.Summary, "waiting: db:datapusher: 1 write transaction(s) (oldest: pid ") && !ev.OK {
				return true
			}
		}
		return false
	})
	if rb, _ := e.Current(); stepState(rb, api.StepDrain) != api.StepRunning {
		t.Fatalf("drain %s with a write transaction open in datapusher", stepState(rb, api.StepDrain))
	}
	// The statistics are published before the server answers: the
	// snapshot's two readings of the counters both see the insert.
	if _, err := conn.Exec(ctx, "COMMIT; SELECT pg_stat_force_next_flush()"); err != nil {
		t.Fatal(err)
	}
	rb := waitFor(t, e, "the end", ended)
	if rb.State != api.RunbookDone || rb.Snapshot == nil || rb.Snapshot.Verdict != snapshot.Consistent {
		t.Fatalf("%s at %s: %s; snapshot %+v", rb.State, rb.Step, rb.Error, rb.Snapshot)
	}
	var drained *api.Evidence
	for i, ev := range rb.StepByName(api.StepDrain).Evidence {
		if ev.OK && ev.Details["drained_at"] != nil {
			drained = &rb.StepByName(api.StepDrain).Evidence[i]
		}
	}
	if drained == nil || drained.Details["db:datapusher_write_transactions"] != 0 || drained.Details["ckan_db_write_transactions"] != 0 {
		t.Fatalf("drained evidence %+v", drained)
	}
	m, err := snapshot.Load(rb.Snapshot.Dir)
	if err != nil {
		t.Fatal(err)
	}
	if d := m.DatabaseByName("datapusher"); d == nil || d.Database != "datapusher_jobs" || d.Before["public.jobs"].Inserts != 1 || d.After["public.jobs"].Inserts != 1 {
		t.Fatalf("databases %+v", m.Databases)
	}
}

// An other database's check that is unknown, or missing from the report,
// keeps the drain waiting, as for ckan_db.
func TestDrainOtherDatabaseUnknown(t *testing.T) {
	dp := config.Database{Name: "harvest", DSN: "postgres://h@db/harvest"}
	for _, c := range []struct {
		name   string
		checks []api.CheckResult
		want   string
	}{
		{"missing from the report", nil, "db:harvest: its write transactions are unknown: the checks report has no db:harvest check"},
		{"hidden sessions", []api.CheckResult{{Name: "db:harvest", Status: api.CheckWarn,
			Postgres: &api.PostgresDetails{User: "probe", WriteTransactions: new(0), HiddenSessions: new(2)}}},
			"db:harvest: its write transactions are unknown: 2 session(s) of other roles are hidden from probe (as a superuser, run: GRANT pg_read_all_stats TO probe;)"},
		{"a failed check", []api.CheckResult{{Name: "db:harvest", Status: api.CheckFail, Summary: "connection refused"}},
			"db:harvest cannot be read: connection refused"},
		{"from the wire, without the count", []api.CheckResult{fromWire(t, `{"name":"db:harvest","status":"ok","summary":"fine","details":{"host":"db:5432","database":"harvest","user":"h"}}`)},
			`db:harvest: its write transactions are unknown: the db:harvest check (ok) reports no "write_transactions"`},
		{"known and zero", []api.CheckResult{{Name: "db:harvest", Status: api.CheckOK, Postgres: &api.PostgresDetails{WriteTransactions: new(0)}}}, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			site := newFakeSite(t)
			site.noRQ = true
			site.checks = c.checks
			site.st.Mode = api.ModeReadOnly
			e, _ := testEngine(t, site, func(o *Options) { o.Checks.Databases = []config.Database{dp} })
			busy, _ := e.busy(context.Background())
			got := strings.Join(busy, "; ")
			if c.want == "" && got != "" || c.want != "" && !strings.Contains(got, c.want) {
				t.Errorf("busy %q, want %q", got, c.want)
			}
		})
	}
}
