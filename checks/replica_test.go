package checks

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/ckanops/ckanops/api"
	"github.com/ckanops/ckanops/config"
	"github.com/ckanops/ckanops/internal/testpg"
)

// replayLagWanted is how far a paused standby's replay lag must grow: past
// the probe's own noise (a fraction of a second), yet short for a test.
const replayLagWanted = 2.0

// condition parses a trigger's "when" on check, or fails the test.
func condition(t *testing.T, check, when string) api.Condition {
	t.Helper()
	c, err := api.ParseCondition(check, when)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// evalHolds checks a trigger's condition against a real result.
func evalHolds(t *testing.T, c api.Condition, res api.CheckResult, wantHolds, wantKnown bool) {
	t.Helper()
	holds, known, value := c.Eval(res)
	if holds != wantHolds || known != wantKnown {
		t.Errorf("%s on %s: holds %v, known %v (value %q); want holds %v, known %v", c, res.Name, holds, known, value, wantHolds, wantKnown)
	}
}

// The Postgres probe on a real streaming standby: in_recovery, and a
// replay_lag_seconds that grows while replay is paused and the primary
// commits, and falls back once the standby has replayed a fresh commit.
// On the primary: not in recovery, lag null.
func TestPostgresReplica(t *testing.T) {
	cl := testpg.Start(t)
	dsn := cl.CreateDB(t, "ckan")
	primary := pgConnect(t, dsn)
	pgExec(t, primary, "CREATE TABLE package (id int)")
	sb := cl.Standby(t)
	sdsn := sb.URL("ckan")
	standby := pgConnect(t, sdsn)
	ctx := context.Background()

	inRecovery := condition(t, api.ProbeCKANDB, "in_recovery == true")
	lagging := condition(t, api.ProbeCKANDB, "replay_lag_seconds > 1")

	// The primary.
	res := runProbe(t, NewPostgres(api.ProbeCKANDB, config.SecretURL(dsn), PostgresLimits{}), 5*time.Second)
	if res.Status != api.CheckOK {
		t.Fatalf("primary: %s: %s", res.Status, res.Summary)
	}
	if known(t, "in_recovery", res.Postgres.InRecovery) || res.Postgres.ReplayLagSeconds != (api.ReplayLag{Read: true}) {
		t.Errorf("primary: in_recovery %v, replay_lag_seconds %+v; want false, null", *res.Postgres.InRecovery, res.Postgres.ReplayLagSeconds)
	}
	if strings.Contains(res.Summary, "replica") {
		t.Errorf("primary: summary %q", res.Summary)
	}
	evalHolds(t, inRecovery, res, false, true)
	evalHolds(t, lagging, res, false, false) // null: a trigger on it is blind
	if res.Postgres.WALReceiver != nil {
		t.Errorf("primary: wal_receiver %v, want null", *res.Postgres.WALReceiver)
	}

	// The standby, caught up on a fresh commit: in recovery, a small lag.
	probe := NewPostgres(api.ProbeCKANDB, config.SecretURL(sdsn), PostgresLimits{})
	committed := time.Now()
	pgExec(t, primary, "INSERT INTO package VALUES (1)")
	sb.WaitCaughtUp(t)
	res = runProbe(t, probe, 5*time.Second)
	if res.Status != api.CheckOK {
		t.Fatalf("standby: %s: %s", res.Status, res.Summary)
	}
	if !known(t, "in_recovery", res.Postgres.InRecovery) {
		t.Fatalf("standby: in_recovery false")
	}
	lag := res.Postgres.ReplayLagSeconds
	if !lag.Read || lag.Seconds == nil || *lag.Seconds < 0 || *lag.Seconds > time.Since(committed).Seconds() {
		t.Fatalf("standby, caught up: replay_lag_seconds %+v, want at most the %.3fs since the commit", lag, time.Since(committed).Seconds())
	}
	if !strings.Contains(res.Summary, "replica, replay lag ") || strings.Contains(res.Summary, "replay lag unknown") {
		t.Errorf("standby: summary %q", res.Summary)
	}
	evalHolds(t, inRecovery, res, true, true)
	evalHolds(t, lagging, res, false, true)
	w := wireDetails(t, res)
	if w["in_recovery"] != true || w["replay_lag_seconds"] == nil || w["wal_receiver"] != true {
		t.Errorf("standby: details on the wire: %v", w)
	}

	// Replay paused, the primary still committing: the standby receives
	// the WAL but does not replay it, and the lag grows.
	sb.PauseReplay(t)
	paused := time.Now()
	pgExec(t, primary, "INSERT INTO package VALUES (2)")
	waitFor(t, "WAL received and not replayed", func() bool { // within wal_writer_delay (async commit)
		var pending bool
		err := standby.QueryRow(ctx, "SELECT pg_last_wal_receive_lsn() > pg_last_wal_replay_lsn()").Scan(&pending)
		return err == nil && pending
	})
	var last float64
	for i := 3; ; i++ {
		pgExec(t, primary, "INSERT INTO package VALUES ($1)", i)
		began := time.Now()
		res = runProbe(t, probe, 5*time.Second)
		if res.Status != api.CheckOK || res.Postgres.ReplayLagSeconds.Seconds == nil {
			t.Fatalf("standby, paused: %s: %s (%+v)", res.Status, res.Summary, res.Postgres.ReplayLagSeconds)
		}
		lag := *res.Postgres.ReplayLagSeconds.Seconds
		// The last replayed commit came before the pause, and after
		// committed: the lag is at least the time since the pause.
		if floor := began.Sub(paused).Seconds(); lag < floor || lag > time.Since(committed).Seconds() {
			t.Fatalf("standby, paused: replay_lag_seconds %.3f; the pause was %.3fs before the probe, the last replayed commit at most %.3fs", lag, floor, time.Since(committed).Seconds())
		}
		if lag < last {
			t.Fatalf("standby, paused: replay_lag_seconds fell from %.3f to %.3f", last, lag)
		}
		last = lag
		if lag > replayLagWanted {
			break
		}
		if time.Since(paused) > 15*time.Second {
			t.Fatalf("standby, paused: replay_lag_seconds still %.3f after %v", lag, time.Since(paused))
		}
		time.Sleep(100 * time.Millisecond) // one probe and one commit a tenth of a second
	}
	t.Logf("paused standby: %s (after %v)", res.Summary, time.Since(paused).Round(time.Millisecond))
	evalHolds(t, lagging, res, true, true)
	evalHolds(t, condition(t, api.ProbeCKANDB, "replay_lag_seconds > 3600"), res, false, true)
	// The lag is real: none of the rows committed since the pause is
	// visible.
	var rows int
	if err := standby.QueryRow(ctx, "SELECT count(*) FROM package").Scan(&rows); err != nil {
		t.Fatal(err)
	}
	if rows != 1 {
		t.Errorf("standby, paused: %d rows visible, want 1", rows)
	}

	// Resumed, and caught up on a fresh commit: the lag falls back.
	sb.ResumeReplay(t)
	committed = time.Now()
	pgExec(t, primary, "INSERT INTO package VALUES (0)")
	sb.WaitCaughtUp(t)
	res = runProbe(t, probe, 5*time.Second)
	if lag := res.Postgres.ReplayLagSeconds.Seconds; lag == nil || *lag > time.Since(committed).Seconds() || *lag >= last {
		t.Errorf("standby, resumed: replay_lag_seconds %v, want at most the %.3fs since the last commit", res.Postgres.ReplayLagSeconds, time.Since(committed).Seconds())
	}
	evalHolds(t, lagging, res, false, true)

	// The primary gone: the standby's WAL receiver stops, and what it last
	// received is all replayed. That is no lag of zero: the lag is the
	// time since the last replayed commit, and grows; wal_receiver is
	// false, and the probe warns.
	lastCommit := time.Now()
	pgExec(t, primary, "INSERT INTO package VALUES (99)")
	sb.WaitCaughtUp(t)
	cl.Stop(t)
	stopped := time.Now()
	notStreaming := condition(t, api.ProbeCKANDB, "wal_receiver == false")
	waitFor(t, "the standby's WAL receiver gone", func() bool {
		res = runProbe(t, probe, 5*time.Second)
		return res.Postgres != nil && res.Postgres.WALReceiver != nil && !*res.Postgres.WALReceiver
	})
	for time.Since(stopped) < 1500*time.Millisecond {
		time.Sleep(100 * time.Millisecond)
	}
	res = runProbe(t, probe, 5*time.Second)
	if lag := res.Postgres.ReplayLagSeconds.Seconds; lag == nil || *lag < time.Since(stopped).Seconds()-0.5 || *lag > time.Since(lastCommit).Seconds() {
		t.Errorf("standby, primary stopped: replay_lag_seconds %v, want the time since the last commit (%.3fs; the primary stopped %.3fs ago)",
			res.Postgres.ReplayLagSeconds, time.Since(lastCommit).Seconds(), time.Since(stopped).Seconds())
	}
	if res.Status != api.CheckWarn || !strings.Contains(res.Summary, "replica without a WAL receiver") {
		t.Errorf("standby, primary stopped: %s: %s", res.Status, res.Summary)
	}
	evalHolds(t, notStreaming, res, true, true)
	evalHolds(t, lagging, res, true, true)
}
