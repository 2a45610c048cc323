package gate

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ckanops/ckanops/api"
	"github.com/ckanops/ckanops/config"
	"github.com/ckanops/ckanops/internal/testfs"
	"github.com/ckanops/ckanops/internal/testpg"
	"github.com/ckanops/ckanops/internal/testredis"
	"github.com/ckanops/ckanops/runbook"
)

// trigger builds a [[trigger]] as config would.
func trigger(t *testing.T, name, check, when string, forDur, recover time.Duration) config.Trigger {
	t.Helper()
	c, err := api.ParseCondition(check, when)
	if err != nil {
		t.Fatal(err)
	}
	return config.Trigger{Name: name, Check: check, When: when, Cond: c, For: config.Duration{Duration: forDur},
		Mode: api.ModeReadOnly, Message: "The database is busy; editing is paused.", Recover: config.Duration{Duration: recover}}
}

func withTriggers(ts ...config.Trigger) rigOption { return func(o *Options) { o.Triggers = ts } }

// step moves the clock on and runs one trigger round (a fresh probe
// round: the clock is past the checks interval).
func (r *rig) step(clk *testClock, d time.Duration) {
	r.t.Helper()
	clk.set(clk.now().Add(d))
	r.gate.triggerRound(context.Background())
}

func (r *rig) trigger(name string) api.TriggerState {
	r.t.Helper()
	for _, ts := range r.status(true).Triggers {
		if ts.Name == name {
			return ts
		}
	}
	r.t.Fatalf("no trigger %s in the status", name)
	return api.TriggerState{}
}

// Connections crowding a real Postgres past a threshold put the site in
// read-only by itself, audited with what the trigger saw; once they are
// gone for recover, the site is back to live.
func TestTriggerOnCrowdedPostgres(t *testing.T) {
	pg := testpg.Start(t)
	dsn := pg.CreateDB(t, "ckan")
	ctx := context.Background()
	base, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer base.Close(ctx)
	var n int
	if err := base.QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'").Scan(&n); err != nil {
		t.Fatal(err)
	}
	limit := n + 6 // the probe's own session and ours, then some
	clk := newTestClock(time.Now().UTC())
	checks := config.ChecksConfig{CKANDB: config.SecretURL(dsn), Interval: config.Duration{Duration: time.Second}, Timeout: config.Duration{Duration: 3 * time.Second}}
	r := newRig(t, withClock(clk), withChecks(checks),
		withTriggers(trigger(t, "crowded", "ckan_db", "connections > "+strconv.Itoa(limit), 30*time.Second, 10*time.Minute)))

	r.step(clk, 2*time.Second)
	if ts := r.trigger("crowded"); ts.State != api.TriggerArmed || ts.Value == "" || !ts.Leader {
		t.Fatalf("a quiet database: %+v", ts)
	}
	var crowd []*pgx.Conn
	for range 10 {
		c, err := pgx.Connect(ctx, dsn)
		if err != nil {
			t.Fatal(err)
		}
		crowd = append(crowd, c)
	}
	r.step(clk, 2*time.Second)
	if ts := r.trigger("crowded"); ts.State != api.TriggerPending {
		t.Fatalf("crowded, before for: %+v", ts)
	}
	if st := r.status(false); st.Mode != api.ModeLive {
		t.Fatal("the trigger acted before its for")
	}
	r.step(clk, 20*time.Second)
	r.step(clk, 11*time.Second)
	st := r.status(true)
	if st.Mode != api.ModeReadOnly || st.Actor != "trigger:crowded" || !strings.Contains(st.Reason, "connections = ") ||
		!strings.Contains(st.Reason, "> "+strconv.Itoa(limit)+" on ckan_db for 3") {
		t.Fatalf("crowded for 33s: %+v", st)
	}
	if pub := r.status(false); pub.Message != "The database is busy; editing is paused." {
		t.Fatalf("the public status says %q", pub.Message)
	}
	if code := r.write(); code != 503 {
		t.Fatalf("a write while triggered: %d", code)
	}
	ts := r.trigger("crowded")
	if ts.State != api.TriggerFired || ts.FiredAt == nil || ts.FiredValue == "" {
		t.Fatalf("fired: %+v", ts)
	}
	for _, c := range crowd {
		c.Close(ctx)
	}
	waitFor(t, "the crowd gone", func() bool {
		base.QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'").Scan(&n)
		return n <= limit-2
	})
	r.step(clk, 2*time.Second)
	if ts := r.trigger("crowded"); ts.State != api.TriggerRecovering {
		t.Fatalf("clear, before recover: %+v", ts)
	}
	r.step(clk, 5*time.Minute)
	if st := r.status(false); st.Mode != api.ModeReadOnly {
		t.Fatal("back to live before recover")
	}
	r.step(clk, 5*time.Minute+time.Second)
	if st := r.status(true); st.Mode != api.ModeLive || st.Actor != "trigger:crowded" || !strings.Contains(st.Reason, "clear on ckan_db") {
		t.Fatalf("clear for recover: %+v", st)
	}
	var audit []string
	for _, e := range r.auditTail("5") {
		audit = append(audit, e.Actor+":"+e.From+">"+e.To)
	}
	if got := strings.Join(audit, " "); got != "trigger:crowded:live>read-only trigger:crowded:read-only>live" {
		t.Fatalf("audit: %s", got)
	}
	m := r.metrics()
	for _, want := range []string{`ckanops_trigger_switches_total{to="maintenance",trigger="crowded"} 1`, `ckanops_trigger_switches_total{to="live",trigger="crowded"} 1`,
		`ckanops_trigger_state{state="armed",trigger="crowded"} 1`, `ckanops_trigger_value{trigger="crowded"}`} {
		if !strings.Contains(m, want) {
			t.Errorf("the metrics lack %q", want)
		}
	}
}

// storageTrigger always holds (free_ratio is below 2) or never does.
func storageTrigger(t *testing.T, name string, holds bool, recover time.Duration) config.Trigger {
	when := "free_ratio < 2"
	if !holds {
		when = "free_ratio > 2"
	}
	return trigger(t, name, "storage", when, 10*time.Second, recover)
}

// A trigger never overrides a person's maintenance, never undoes it, and
// stands down when a person changes the mode it set.
func TestTriggerNeverFightsAPerson(t *testing.T) {
	clk := newTestClock(time.Now().UTC())
	dir := t.TempDir()
	checks := config.ChecksConfig{StoragePath: dir, Interval: config.Duration{Duration: time.Second}}
	r := newRig(t, withClock(clk), withChecks(checks), withTriggers(storageTrigger(t, "disk", true, time.Minute)))

	r.mustMode(api.ModeReadOnly, "hand-set")
	v := r.status(true).Version
	for range 5 {
		r.step(clk, 10*time.Second)
	}
	st := r.status(true)
	if st.Version != v || st.Actor != "ops-token" {
		t.Fatalf("the trigger touched a hand-set maintenance: %+v", st)
	}
	if ts := r.trigger("disk"); ts.State != api.TriggerPending || !strings.Contains(ts.Note, "the trigger leaves it alone") {
		t.Fatalf("the trigger's note: %+v", ts)
	}
	// Live again: the trigger fires (it still holds).
	r.mustMode(api.ModeLive, "")
	r.step(clk, time.Second)
	if st := r.status(true); st.Mode != api.ModeReadOnly || st.Actor != "trigger:disk" {
		t.Fatalf("the trigger did not fire on a live site: %+v", st)
	}
	// A person takes over: the trigger stands down, and never undoes it.
	r.mustMode(api.ModeReadOnly, "I am on it")
	v = r.status(true).Version
	r.step(clk, time.Second)
	if ts := r.trigger("disk"); ts.State != api.TriggerStood {
		t.Fatalf("after a person's change: %+v", ts)
	}
	r.gate.trig.rules[0].Cond.Op = ">" // the condition clears
	for range 3 {
		r.step(clk, 10*time.Minute)
	}
	if st := r.status(true); st.Version != v || st.Mode != api.ModeReadOnly || st.Message != "I am on it" {
		t.Fatalf("the trigger undid a person's maintenance: %+v", st)
	}
	if ts := r.trigger("disk"); ts.State != api.TriggerArmed {
		t.Fatalf("clear again: %+v", ts)
	}
}

// Flapping is bounded: at most one switch per trigger per 5 minutes,
// whatever for and recover say.
func TestTriggerFlappingIsBounded(t *testing.T) {
	clk := newTestClock(time.Now().UTC())
	checks := config.ChecksConfig{StoragePath: t.TempDir(), Interval: config.Duration{Duration: time.Second}}
	tr := storageTrigger(t, "disk", true, 2*time.Second)
	tr.For = config.Duration{Duration: time.Second}
	r := newRig(t, withClock(clk), withChecks(checks), withTriggers(tr))
	flip := func(holds bool) {
		if holds {
			r.gate.trig.rules[0].Cond.Op = "<"
		} else {
			r.gate.trig.rules[0].Cond.Op = ">"
		}
	}
	r.step(clk, 2*time.Second)
	r.step(clk, 2*time.Second)
	if r.status(false).Mode != api.ModeReadOnly {
		t.Fatal("did not fire")
	}
	fired := clk.now()
	// The condition comes and goes every 10 seconds for 12 minutes.
	switches := 0
	last := api.ModeReadOnly
	for clk.now().Sub(fired) < 12*time.Minute {
		flip(int(clk.now().Sub(fired)/(10*time.Second))%2 == 1)
		r.step(clk, 3*time.Second)
		if m := r.status(false).Mode; m != last {
			switches++
			last = m
		}
	}
	if switches > 2 {
		t.Fatalf("%d switches in 12 minutes: at most one per 5 minutes", switches)
	}
	if switches == 0 {
		t.Fatal("the trigger never returned the site to live in 12 minutes of a flapping condition")
	}
}

// A probe that fails never fires a trigger.
func TestBlindTriggerLeavesTheModeAlone(t *testing.T) {
	clk := newTestClock(time.Now().UTC())
	checks := config.ChecksConfig{CKANDB: "postgresql://ckan@127.0.0.1:1/ckan?connect_timeout=1", Interval: config.Duration{Duration: time.Second},
		Timeout: config.Duration{Duration: time.Second}}
	r := newRig(t, withClock(clk), withChecks(checks), withTriggers(trigger(t, "lag", "ckan_db", "connections_ratio > 0.5", time.Second, 0)))
	for range 4 {
		r.step(clk, 5*time.Second)
	}
	ts := r.trigger("lag")
	if ts.State != api.TriggerBlind || !strings.Contains(ts.Note, "leaves the mode alone") || r.status(false).Mode != api.ModeLive {
		t.Fatalf("a failing probe: %+v", ts)
	}
}

// With Redis, the site's gates all see the condition; one acts.
func TestOneGateActsForTheTriggers(t *testing.T) {
	rd := testredis.Start(t)
	sim := newRig(t) // its upstream (the simulated CKAN) serves both gates
	up, _ := url.Parse(sim.up.URL)
	clk := newTestClock(time.Now().UTC())
	checks := config.ChecksConfig{StoragePath: t.TempDir(), Interval: config.Duration{Duration: time.Second}}
	var gates []*Gate
	for _, id := range []string{"web1", "web2", "web3"} {
		local, err := OpenFileStore(filepath.Join(t.TempDir(), "state.json"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { local.Close() })
		rs, err := OpenRedisStore(rd.URL(), "trig")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { rs.Close() })
		g, err := New(context.Background(), Options{Site: "trig", Upstream: up, Store: rs, Local: local, OpsToken: opsToken, GateID: id,
			Clock: clk.now, Checks: checks, Triggers: []config.Trigger{storageTrigger(t, "disk", true, 0)},
			TriggerLease: NewRedisTriggerLease(rs.rdb, "trig", id, time.Minute)})
		if err != nil {
			t.Fatal(err)
		}
		gates = append(gates, g)
	}
	for round := 0; round < 4; round++ {
		clk.set(clk.now().Add(6 * time.Second))
		var wg sync.WaitGroup
		for _, g := range gates {
			wg.Add(1)
			go func() { defer wg.Done(); g.triggerRound(context.Background()) }()
		}
		wg.Wait()
	}
	rec, _, err := gates[0].opts.Store.Load(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if rec.Mode != api.ModeReadOnly || rec.Version != 1 || rec.Actor != "trigger:disk" {
		t.Fatalf("the shared record: %+v", rec)
	}
	leaders := 0
	for _, g := range gates {
		if ts := g.triggerStates()[0]; ts.Leader {
			leaders++
		} else if !strings.Contains(ts.Note, "leads the triggers") {
			t.Errorf("an observing gate's note: %+v", ts)
		}
	}
	if leaders != 1 {
		t.Fatalf("%d gates lead the triggers", leaders)
	}
}

// A real streaming replica (pg_basebackup into a throwaway standby): CKAN
// talking to a database in recovery, and replay falling behind, each
// puts the site in read-only by itself.
func TestTriggersOnARealReplica(t *testing.T) {
	primary := testpg.Start(t)
	dsn := primary.CreateDB(t, "ckan")
	ctx := context.Background()
	pc, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close(ctx)
	if _, err := pc.Exec(ctx, "CREATE TABLE ticks (n int)"); err != nil {
		t.Fatal(err)
	}
	standby := primary.Standby(t)
	// One transaction replayed: the standby knows when it replayed last.
	if _, err := pc.Exec(ctx, "INSERT INTO ticks VALUES (0)"); err != nil {
		t.Fatal(err)
	}
	standby.WaitCaughtUp(t)
	clk := newTestClock(time.Now().UTC())
	checks := config.ChecksConfig{CKANDB: config.SecretURL(standby.URL("ckan")), Interval: config.Duration{Duration: time.Second},
		Timeout: config.Duration{Duration: 3 * time.Second}}
	lag := trigger(t, "replica-lag", "ckan_db", "replay_lag_seconds > 2", time.Second, 0)
	ro := trigger(t, "in-recovery", "ckan_db", "in_recovery == true", time.Second, 0)

	// Caught up: the lag trigger stays armed (an idle replica is no lag).
	r := newRig(t, withClock(clk), withChecks(checks), withTriggers(lag))
	r.step(clk, 2*time.Second)
	r.step(clk, 2*time.Second)
	if ts := r.trigger("replica-lag"); ts.State != api.TriggerArmed || ts.Value == "" {
		t.Fatalf("a caught-up replica: %+v", ts)
	}
	// Replay paused while the primary commits: the lag grows past 2 s.
	standby.PauseReplay(t)
	defer standby.ResumeReplay(t)
	deadline := time.Now().Add(30 * time.Second)
	for r.status(false).Mode == api.ModeLive {
		if time.Now().After(deadline) {
			t.Fatalf("replay paused, no read-only: %+v", r.trigger("replica-lag"))
		}
		if _, err := pc.Exec(ctx, "INSERT INTO ticks VALUES (1)"); err != nil {
			t.Fatal(err)
		}
		time.Sleep(200 * time.Millisecond) // the lag is real time on the standby
		r.step(clk, 2*time.Second)
	}
	st := r.status(true)
	if st.Actor != "trigger:replica-lag" || !strings.Contains(st.Reason, "replay_lag_seconds = ") {
		t.Fatalf("replay behind: %+v", st)
	}
	r.stop()

	// CKAN's database is a replica in recovery (a failover gone wrong).
	r2 := newRig(t, withClock(clk), withChecks(checks), withTriggers(ro))
	r2.step(clk, 2*time.Second)
	r2.step(clk, 2*time.Second)
	if st := r2.status(true); st.Mode != api.ModeReadOnly || st.Actor != "trigger:in-recovery" || !strings.Contains(st.Reason, "in_recovery = true") {
		t.Fatalf("CKAN's database in recovery: %+v", st)
	}
}

// Storage filling up on a small tmpfs (where the machine lets a test mount
// one; checks/storage_tmpfs_test.go covers the comparison either way).
func TestTriggerOnAFillingDisk(t *testing.T) {
	dir := testfs.Tmpfs(t, 8<<20)
	clk := newTestClock(time.Now().UTC())
	checks := config.ChecksConfig{StoragePath: dir, Interval: config.Duration{Duration: time.Second}}
	r := newRig(t, withClock(clk), withChecks(checks), withTriggers(trigger(t, "disk", "storage", "free_ratio < 0.25", time.Second, 0)))
	r.step(clk, 2*time.Second)
	if ts := r.trigger("disk"); ts.State != api.TriggerArmed {
		t.Fatalf("an empty disk: %+v", ts)
	}
	if err := os.WriteFile(filepath.Join(dir, "upload.bin"), make([]byte, 7<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	r.step(clk, 2*time.Second)
	r.step(clk, 2*time.Second)
	if st := r.status(true); st.Mode != api.ModeReadOnly || st.Actor != "trigger:disk" || !strings.Contains(st.Reason, "free_ratio = 0.") {
		t.Fatalf("a full disk: %+v", st)
	}
}

// The drain polls Redis and the databases only: no status_show to CKAN, no
// Solr ping, no walk of the storage on every poll.
func TestDrainProbesOnlyWhatItWaitsOn(t *testing.T) {
	pg := testpg.Start(t)
	var solrHits atomic.Int32
	solr := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		solrHits.Add(1)
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"status":"OK","responseHeader":{"QTime":1}}`))
	}))
	t.Cleanup(solr.Close)
	checks := config.ChecksConfig{CKANDB: config.SecretURL(pg.CreateDB(t, "ckan")), Solr: config.SecretURL(solr.URL + "/solr/ckan"),
		StoragePath: t.TempDir(), Timeout: config.Duration{Duration: 3 * time.Second}}
	r := newRig(t, withChecks(checks))
	site, err := r.gate.RunbookSite(r.srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	dp, ok := site.(runbook.DrainProber)
	if !ok {
		t.Fatal("the gate's runbook site does not probe for the drain alone")
	}
	r.sim.ResetJournal()
	for range 3 {
		rep := dp.DrainHealth(context.Background())
		var names []string
		for _, c := range rep.Checks {
			names = append(names, c.Name)
			if c.Name == api.ProbeCKANDB && c.Status != api.CheckOK {
				t.Fatalf("ckan_db: %+v", c)
			}
		}
		if got := strings.Join(names, " "); got != "ckan_db datastore_db redis" {
			t.Fatalf("the drain's probes: %s (want Redis and the databases only)", got)
		}
	}
	if n := solrHits.Load(); n != 0 {
		t.Errorf("the drain pinged Solr %d times", n)
	}
	if j := r.sim.Journal(); len(j) != 0 {
		t.Errorf("the drain asked CKAN: %+v", j)
	}
}
