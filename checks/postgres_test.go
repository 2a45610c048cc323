package checks

import (
	"context"
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

func num(t *testing.T, d map[string]any, key string) float64 {
	t.Helper()
	switch v := d[key].(type) {
	case int:
		return float64(v)
	case int64:
		return float64(v)
	case float64:
		return v
	}
	t.Fatalf("detail %s = %#v (%T), not a number", key, d[key], d[key])
	return 0
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
	d := res.Details
	wantInts := map[string]float64{
		"write_transactions":   1, // the INSERT; the reader and the waiter (SHARE lock) have no xid
		"idle_in_transaction":  2, // the writer and the reader
		"waiting_on_locks":     1,
		"connections":          5, // setup, writer, reader, waiter, otherDB: not the probe
		"database_connections": 4,
		"hidden_sessions":      0,
	}
	for k, want := range wantInts {
		if got := num(t, d, k); got != want {
			t.Errorf("%s = %v, want %v", k, got, want)
		}
	}
	var maxConns int
	setup.QueryRow(context.Background(), "SELECT current_setting('max_connections')::int").Scan(&maxConns)
	if got := num(t, d, "max_connections"); got != float64(maxConns) || maxConns == 0 {
		t.Errorf("max_connections = %v, want %d", got, maxConns)
	}
	byState := d["by_state"].(map[string]int)
	if byState["idle in transaction"] != 2 || byState["active"] != 1 || byState["idle"] != 1 {
		t.Errorf("by_state = %v", byState)
	}
	age := num(t, d, "oldest_write_transaction_seconds")
	if age < 0.2 || age > elapsed+1 {
		t.Errorf("the write transaction's age is %vs; it began %.3fs before the probe ended", age, elapsed)
	}
	if l := num(t, d, "longest_transaction_seconds"); l < age {
		t.Errorf("longest_transaction_seconds %v < the write transaction's age %v", l, age)
	}
	if num(t, d, "idle_in_transaction_longest_seconds") < 0.2 {
		t.Errorf("idle_in_transaction_longest_seconds = %v", d["idle_in_transaction_longest_seconds"])
	}
	if d["in_recovery"] != false || d["replay_lag_seconds"] != (*float64)(nil) {
		t.Errorf("in_recovery %v, replay_lag_seconds %v", d["in_recovery"], d["replay_lag_seconds"])
	}
	if num(t, d, "size_bytes") <= 0 || num(t, d, "latency_ms") <= 0 {
		t.Errorf("size_bytes %v, latency_ms %v", d["size_bytes"], d["latency_ms"])
	}
	txs := d["transactions"].([]pgTransaction)
	if len(txs) != 3 || txs[0].PID != int(writerPID) || !txs[0].Writing || txs[1].Writing || txs[2].Writing {
		t.Errorf("transactions (oldest first, the writer writing) = %+v; writer pid %d", txs, writerPID)
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
	if got := num(t, res.Details, "write_transactions"); got != 0 || num(t, res.Details, "waiting_on_locks") != 0 {
		t.Errorf("after COMMIT: write_transactions %v, waiting_on_locks %v", got, res.Details["waiting_on_locks"])
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
		num(t, res.Details, "hidden_sessions") != 1 {
		t.Fatalf("%s: %s (%v)", res.Status, res.Summary, res.Details)
	}
	pgExec(t, admin, "COMMIT")
	pgExec(t, admin, "GRANT pg_read_all_stats TO probe")
	res = runProbe(t, NewPostgres("ckan_db", config.SecretURL(u.String()), PostgresLimits{}), 5*time.Second)
	if res.Status != api.CheckOK || num(t, res.Details, "hidden_sessions") != 0 {
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
			if strings.Contains(res.Summary, c.secret) || strings.Contains(fmt.Sprint(res.Details), c.secret) {
				t.Errorf("the result shows the password: %s %v", res.Summary, res.Details)
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
