package checks

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/ckanops/ckanops/api"

	"github.com/jackc/pgx/v5"

	"github.com/ckanops/ckanops/config"
	"github.com/ckanops/ckanops/internal/testpg"
)

func pgConnect(t *testing.T, dsn string) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

func pgExec(t *testing.T, c *pgx.Conn, sql string, args ...any) {
	t.Helper()
	if _, err := c.Exec(context.Background(), sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

// known is a detail the probe must have learned.
func known[T any](t *testing.T, key string, v *T) T {
	t.Helper()
	if v == nil {
		t.Fatalf("detail %s is unknown (nil)", key)
		var zero T
		return zero
	}
	return *v
}

// wireDetails is the result's "details" as the gate serves them.
func wireDetails(t testing.TB, res api.CheckResult) map[string]any {
	t.Helper()
	b, err := json.Marshal(res)
	if err != nil {
		t.Fatal(err)
	}
	var w struct {
		Details map[string]any `json:"details"`
	}
	if err := json.Unmarshal(b, &w); err != nil {
		t.Fatal(err)
	}
	return w.Details
}

// waitFor polls cond until it holds (the server sees a session's state
// change a moment after the client's call returns).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for i := 0; i < 500; i++ {
		if cond() {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s", what)
}

// The probe sees what CKAN's sessions are doing: an uncommitted INSERT
// (a write transaction, with its age), a session idle in a transaction,
// a session waiting on a lock, and the connection counts; its own session
// is never counted.
func TestPostgresActivity(t *testing.T) {
	cl := testpg.Start(t)
	dsn := cl.CreateDB(t, "ckan")
	cl.CreateDB(t, "other")

	setup := pgConnect(t, dsn)
	pgExec(t, setup, "CREATE TABLE package (id int)")

	writer := pgConnect(t, dsn)
	pgExec(t, writer, "BEGIN")
	began := time.Now()
	pgExec(t, writer, "INSERT INTO package VALUES (1)")
	writerPID := writer.PgConn().PID()

	reader := pgConnect(t, dsn)
	pgExec(t, reader, "BEGIN")
	pgExec(t, reader, "SELECT count(*) FROM pg_class")

	waiter := pgConnect(t, dsn)
	pgExec(t, waiter, "BEGIN")
	waitDone := make(chan error, 1)
	go func() {
		_, err := waiter.Exec(context.Background(), "LOCK TABLE package IN SHARE MODE")
		waitDone <- err
	}()
	waitFor(t, "the lock wait", func() bool {
		var n int
		setup.QueryRow(context.Background(), "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'").Scan(&n)
		return n == 1
	})
	otherDB := pgConnect(t, strings.Replace(dsn, "/ckan?", "/other?", 1)) // another database, same server
	_ = otherDB
	time.Sleep(200 * time.Millisecond) // let the transactions age

	p := NewPostgres("ckan_db", config.SecretURL(dsn), PostgresLimits{})
	res := runProbe(t, p, 5*time.Second)
	elapsed := time.Since(began).Seconds()
	if res.Status != api.CheckOK {
		t.Fatalf("status %s: %s", res.Status, res.Summary)
	}
	d := res.Postgres
	for _, c := range []struct {
		key  string
		got  *int
		want int
	}{
		{"write_transactions", d.WriteTransactions, 1},  // the INSERT; the reader and the waiter (SHARE lock) have no xid
		{"idle_in_transaction", d.IdleInTransaction, 2}, // the writer and the reader
		{"waiting_on_locks", d.WaitingOnLocks, 1},
		{"connections", d.Connections, 5}, // setup, writer, reader, waiter, otherDB: not the probe
		{"database_connections", d.DatabaseConnections, 4},
		{"hidden_sessions", d.HiddenSessions, 0},
	} {
		if got := known(t, c.key, c.got); got != c.want {
			t.Errorf("%s = %v, want %v", c.key, got, c.want)
		}
	}
	var maxConns int
	setup.QueryRow(context.Background(), "SELECT current_setting('max_connections')::int").Scan(&maxConns)
	if got := known(t, "max_connections", d.MaxConnections); got != maxConns || maxConns == 0 {
		t.Errorf("max_connections = %v, want %d", got, maxConns)
	}
	if byState := d.ByState; byState["idle in transaction"] != 2 || byState["active"] != 1 || byState["idle"] != 1 {
		t.Errorf("by_state = %v", byState)
	}
	age := known(t, "oldest_write_transaction_seconds", d.OldestWriteTransactionSeconds)
	if age < 0.2 || age > elapsed+1 {
		t.Errorf("the write transaction's age is %vs; it began %.3fs before the probe ended", age, elapsed)
	}
	if l := known(t, "longest_transaction_seconds", d.LongestTransactionSeconds); l < age {
		t.Errorf("longest_transaction_seconds %v < the write transaction's age %v", l, age)
	}
	if l := known(t, "idle_in_transaction_longest_seconds", d.IdleInTransactionLongestSeconds); l < 0.2 {
		t.Errorf("idle_in_transaction_longest_seconds = %v", l)
	}
	if known(t, "in_recovery", d.InRecovery) || d.ReplayLagSeconds != (api.ReplayLag{Read: true}) {
		t.Errorf("in_recovery %v, replay_lag_seconds %+v", *d.InRecovery, d.ReplayLagSeconds)
	}
	if known(t, "size_bytes", d.SizeBytes) <= 0 || known(t, "latency_ms", d.LatencyMS) <= 0 {
		t.Errorf("size_bytes %v, latency_ms %v", *d.SizeBytes, *d.LatencyMS)
	}
	txs := d.Transactions
	if len(txs) != 3 || txs[0].PID != int(writerPID) || !txs[0].Writing || txs[1].Writing || txs[2].Writing {
		t.Errorf("transactions (oldest first, the writer writing) = %+v; writer pid %d", txs, writerPID)
	}
	// On the wire: the keys the probe has always written.
	w := wireDetails(t, res)
	if w["replay_lag_seconds"] != nil || w["write_transactions"] != 1.0 || len(w) != 19 {
		t.Errorf("details on the wire: %v", w)
	}
	if _, ok := w["replay_lag_seconds"]; !ok {
		t.Errorf("replay_lag_seconds is not null but absent: %v", w)
	}
	for _, want := range []string{"5/", "1 write transaction(s)", "1 waiting on locks"} {
		if !strings.Contains(res.Summary, want) {
			t.Errorf("summary %q lacks %q", res.Summary, want)
		}
	}
	if p.Queries() > 3 {
		t.Errorf("%d queries, want at most 3", p.Queries())
	}

	// Thresholds: the same sessions, strict limits.
	strict := NewPostgres("ckan_db", config.SecretURL(dsn), PostgresLimits{
		ConnectionsRatio: 5.0 / float64(maxConns), IdleInTransaction: 100 * time.Millisecond, TransactionAge: 150 * time.Millisecond,
	})
	res = runProbe(t, strict, 5*time.Second)
	if res.Status != api.CheckWarn {
		t.Fatalf("strict limits: %s: %s", res.Status, res.Summary)
	}
	for _, want := range []string{
		fmt.Sprintf("5 of %d connections in use", maxConns),
		"idle in a transaction for",
		"a transaction has been open for",
		fmt.Sprintf("(pid %d, user postgres)", writerPID),
	} {
		if !strings.Contains(res.Summary, want) {
			t.Errorf("summary %q lacks %q", res.Summary, want)
		}
	}

	// Commit: no write transaction left; the waiter gets its lock.
	pgExec(t, writer, "COMMIT")
	if err := <-waitDone; err != nil {
		t.Fatal(err)
	}
	pgExec(t, waiter, "COMMIT")
	pgExec(t, reader, "COMMIT")
	res = runProbe(t, p, 5*time.Second)
	if got, locks := known(t, "write_transactions", res.Postgres.WriteTransactions), known(t, "waiting_on_locks", res.Postgres.WaitingOnLocks); got != 0 || locks != 0 {
		t.Errorf("after COMMIT: write_transactions %v, waiting_on_locks %v", got, locks)
	}
}

// A probe user who may not see other roles' sessions says so.
func TestPostgresHiddenSessions(t *testing.T) {
	cl := testpg.Start(t)
	dsn := cl.CreateDB(t, "ckan")
	admin := pgConnect(t, dsn)
	pgExec(t, admin, "CREATE ROLE probe LOGIN")
	pgExec(t, admin, "BEGIN")
	pgExec(t, admin, "CREATE TABLE t (id int)") // a write transaction of another role

	u, _ := url.Parse(dsn)
	u.User = url.User("probe")
	res := runProbe(t, NewPostgres("ckan_db", config.SecretURL(u.String()), PostgresLimits{}), 5*time.Second)
	if res.Status != api.CheckWarn || !strings.Contains(res.Summary, "GRANT pg_read_all_stats TO probe") ||
		known(t, "hidden_sessions", res.Postgres.HiddenSessions) != 1 {
		t.Fatalf("%s: %s (%+v)", res.Status, res.Summary, res.Postgres)
	}
	pgExec(t, admin, "COMMIT")
	pgExec(t, admin, "GRANT pg_read_all_stats TO probe")
	res = runProbe(t, NewPostgres("ckan_db", config.SecretURL(u.String()), PostgresLimits{}), 5*time.Second)
	if res.Status != api.CheckOK || known(t, "hidden_sessions", res.Postgres.HiddenSessions) != 0 {
		t.Fatalf("after the grant: %s: %s", res.Status, res.Summary)
	}
}

// requirePasswords makes the cluster ask every TCP client but the
// superuser for a password.
func requirePasswords(t *testing.T, admin *pgx.Conn) {
	t.Helper()
	var hba string
	if err := admin.QueryRow(context.Background(), "SHOW hba_file").Scan(&hba); err != nil {
		t.Fatal(err)
	}
	rules := "local all all trust\nhost all postgres 127.0.0.1/32 trust\nhost all all 127.0.0.1/32 scram-sha-256\n"
	if err := os.WriteFile(hba, []byte(rules), 0o600); err != nil {
		t.Fatal(err)
	}
	pgExec(t, admin, "SELECT pg_reload_conf()")
	time.Sleep(100 * time.Millisecond) // the postmaster rereads the file on SIGHUP
}

// Every fault is a failure an operator can act on, within the timeout,
// and no summary holds a password.
func TestPostgresFaults(t *testing.T) {
	cl := testpg.Start(t)
	dsn := cl.CreateDB(t, "ckan")
	admin := pgConnect(t, dsn)
	pgExec(t, admin, "CREATE ROLE ckan_default LOGIN PASSWORD 'Right-pw-4711'")
	requirePasswords(t, admin)
	port := cl.Port()

	refused := func() int { // a port nothing listens on
		ln, _ := net.Listen("tcp", "127.0.0.1:0")
		defer ln.Close()
		return ln.Addr().(*net.TCPAddr).Port
	}()
	silent, _ := net.Listen("tcp", "127.0.0.1:0") // accepts, never answers
	defer silent.Close()
	go func() {
		for {
			c, err := silent.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()

	cases := []struct {
		name, dsn, want, secret string
	}{
		{"wrong password", fmt.Sprintf("postgres://ckan_default:Wr0ng-pw-0815@127.0.0.1:%d/ckan?sslmode=disable", port),
			`password authentication failed for user "ckan_default" at Postgres 127.0.0.1:` + fmt.Sprint(port) + `, database ckan: check the password in checks.ckan_db`, "Wr0ng-pw-0815"},
		{"missing database", fmt.Sprintf("postgres://ckan_default:Right-pw-4711@127.0.0.1:%d/nosuchdb?sslmode=disable", port),
			`database "nosuchdb" does not exist`, "Right-pw-4711"},
		{"nothing listening", fmt.Sprintf("postgres://ckan_default:Right-pw-4711@127.0.0.1:%d/ckan?sslmode=disable", refused),
			"connection refused", "Right-pw-4711"},
		{"never answers", fmt.Sprintf("postgres://ckan_default:Right-pw-4711@%s/ckan?sslmode=disable", silent.Addr()),
			"no answer from Postgres at " + silent.Addr().String() + " (database ckan, user ckan_default) within 500ms", "Right-pw-4711"},
		{"unknown host", "postgres://ckan_default:Right-pw-4711@no-such-host.invalid:5432/ckan?sslmode=disable",
			`"no-such-host.invalid" does not resolve`, "Right-pw-4711"},
		{"not a URL", "postgres://ckan_default:Right-pw-4711@127.0.0.1:99999/ckan",
			"checks.ckan_db is not a Postgres URL the probe can use", "Right-pw-4711"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t0 := time.Now()
			res := runProbe(t, NewPostgres("ckan_db", config.SecretURL(c.dsn), PostgresLimits{}), 500*time.Millisecond)
			if res.Status != api.CheckFail || !strings.Contains(res.Summary, c.want) {
				t.Errorf("%s: %s\nwant a failure saying %q", res.Status, res.Summary, c.want)
			}
			if b, _ := json.Marshal(res); strings.Contains(string(b), c.secret) {
				t.Errorf("the result shows the password: %s", b)
			}
			if d := res.Postgres; d != nil && (d.WriteTransactions != nil || d.Connections != nil) {
				t.Errorf("counts of a server the probe could not read: %+v", d)
			}
			if d := time.Since(t0); d > 5*time.Second { // a hang detector, not a timing test
				t.Errorf("took %s", d)
			}
		})
	}

	// The right password works: the probe is fine once the DSN is.
	res := runProbe(t, NewPostgres("ckan_db", config.SecretURL(fmt.Sprintf("postgres://ckan_default:Right-pw-4711@127.0.0.1:%d/ckan?sslmode=disable", port)), PostgresLimits{}), 5*time.Second)
	if res.Status == api.CheckFail {
		t.Errorf("right password: %s", res.Summary)
	}
}

// A Postgres that goes away: fail; back: ok. No probe session is left
// behind and no goroutine leaks, whatever happened.
func TestPostgresNoLeaks(t *testing.T) {
	cl := testpg.Start(t)
	dsn := cl.CreateDB(t, "ckan")
	p := NewPostgres("ckan_db", config.SecretURL(dsn), PostgresLimits{})
	before := runtime.NumGoroutine()
	for range 10 {
		if res := runProbe(t, p, 5*time.Second); res.Status != api.CheckOK {
			t.Fatalf("%s: %s", res.Status, res.Summary)
		}
	}
	cl.Stop(t)
	res := runProbe(t, p, time.Second)
	if res.Status != api.CheckFail || !strings.Contains(res.Summary, "connection refused") {
		t.Errorf("server stopped: %s: %s", res.Status, res.Summary)
	}
	cl.Restart(t)
	if res := runProbe(t, p, 5*time.Second); res.Status != api.CheckOK {
		t.Errorf("server back: %s: %s", res.Status, res.Summary)
	}
	admin := pgConnect(t, dsn)
	var n int
	waitFor(t, "no probe session left", func() bool {
		admin.QueryRow(context.Background(), "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1", ProbeApplicationName).Scan(&n)
		return n == 0
	})
	waitFor(t, "the probes' goroutines to end", func() bool { return runtime.NumGoroutine() <= before+1 })
}
