package throwaway

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// startStandby starts a standby of c that the test's end closes, if the
// test did not.
func startStandby(t *testing.T, c *Postgres) *Postgres {
	t.Helper()
	began := time.Now()
	s, err := c.StartStandby()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	t.Logf("standby started in %v (port %d)", time.Since(began).Round(time.Millisecond), s.Port())
	return s
}

func connect(t *testing.T, ctx context.Context, url string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

func count(t *testing.T, ctx context.Context, conn *pgx.Conn) int {
	t.Helper()
	var n int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM site").Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestStandby streams a primary's writes to a standby, pauses and resumes
// its replay, restarts it and closes it.
func TestStandby(t *testing.T) {
	c := startPostgres(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dbURL, err := c.CreateDatabase(ctx, "demo")
	if err != nil {
		t.Fatal(err)
	}
	primary := connect(t, ctx, dbURL)
	if _, err := primary.Exec(ctx, "CREATE TABLE site (id int PRIMARY KEY); INSERT INTO site VALUES (1)"); err != nil {
		t.Fatal(err)
	}

	s := startStandby(t, c)
	if s.Primary() != c || c.Primary() != nil {
		t.Errorf("Primary() = %p on the standby, %p on the primary; want %p and nil", s.Primary(), c.Primary(), c)
	}
	if s.Port() == c.Port() || s.Dir() == c.Dir() || s.BinDir() != c.BinDir() {
		t.Errorf("standby port %d dir %s bin %s; primary port %d dir %s bin %s", s.Port(), s.Dir(), s.BinDir(), c.Port(), c.Dir(), c.BinDir())
	}
	if _, err := os.Stat(filepath.Join(s.Dir(), "data", "standby.signal")); err != nil {
		t.Errorf("no standby.signal: %v", err)
	}
	standby := connect(t, ctx, s.URL("demo"))
	var inRecovery bool
	if err := standby.QueryRow(ctx, "SELECT pg_is_in_recovery()").Scan(&inRecovery); err != nil || !inRecovery {
		t.Fatalf("pg_is_in_recovery() on the standby = %v, %v", inRecovery, err)
	}
	if _, err := standby.Exec(ctx, "INSERT INTO site VALUES (99)"); err == nil || !strings.Contains(err.Error(), "read-only") {
		t.Errorf("a write on the standby: %v, want a read-only error", err)
	}
	if n := count(t, ctx, standby); n != 1 {
		t.Errorf("%d rows on the standby, want the base backup's 1", n)
	}

	// Streaming: a write on the primary shows up.
	if _, err := primary.Exec(ctx, "INSERT INTO site VALUES (2)"); err != nil {
		t.Fatal(err)
	}
	if err := s.WaitCaughtUp(ctx); err != nil {
		t.Fatal(err)
	}
	if n := count(t, ctx, standby); n != 2 {
		t.Errorf("%d rows on the standby after WaitCaughtUp, want 2", n)
	}

	// Paused: received, not replayed.
	if err := s.PauseReplay(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := primary.Exec(ctx, "INSERT INTO site VALUES (3)"); err != nil {
		t.Fatal(err)
	}
	var plsn string
	if err := primary.QueryRow(ctx, "SELECT pg_current_wal_insert_lsn()::text").Scan(&plsn); err != nil {
		t.Fatal(err)
	}
	var received bool
	waitFor(t, "the standby to receive the primary's WAL", func() bool {
		err := standby.QueryRow(ctx, "SELECT pg_last_wal_receive_lsn() >= $1::pg_lsn", plsn).Scan(&received)
		return err == nil && received
	})
	short, cancelShort := context.WithTimeout(ctx, 300*time.Millisecond)
	err = s.WaitCaughtUp(short)
	cancelShort()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("WaitCaughtUp with replay paused: %v, want the deadline", err)
	}
	waitFor(t, "the pause state with WAL to replay to be paused", func() bool {
		var state string
		err := standby.QueryRow(ctx, "SELECT pg_get_wal_replay_pause_state()").Scan(&state)
		return err == nil && state == "paused"
	})
	if n := count(t, ctx, standby); n != 2 {
		t.Errorf("%d rows on the standby with replay paused, want 2", n)
	}
	if err := s.ResumeReplay(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.WaitCaughtUp(ctx); err != nil {
		t.Fatal(err)
	}
	if n := count(t, ctx, standby); n != 3 {
		t.Errorf("%d rows on the standby after ResumeReplay, want 3", n)
	}

	// The replay methods are a standby's.
	if err := c.PauseReplay(ctx); !errors.Is(err, ErrNotStandby) {
		t.Errorf("PauseReplay on the primary: %v, want ErrNotStandby", err)
	}
	if err := c.WaitCaughtUp(ctx); !errors.Is(err, ErrNotStandby) {
		t.Errorf("WaitCaughtUp on the primary: %v, want ErrNotStandby", err)
	}

	// A restarted standby streams again.
	standby.Close(ctx)
	if err := s.Restart(); err != nil {
		t.Fatal(err)
	}
	if _, err := primary.Exec(ctx, "INSERT INTO site VALUES (4)"); err != nil {
		t.Fatal(err)
	}
	if err := s.WaitCaughtUp(ctx); err != nil {
		t.Fatal(err)
	}
	standby = connect(t, ctx, s.URL("demo"))
	if n := count(t, ctx, standby); n != 4 {
		t.Errorf("%d rows on the restarted standby, want 4", n)
	}
	standby.Close(ctx)

	// Close: the standby is gone, the primary is not.
	pid, dir := s.Pid(), s.Dir()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if alive(pid) {
		t.Errorf("standby postmaster %d still running after Close", pid)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("standby directory %s still exists after Close (%v)", dir, err)
	}
	if err := primary.Ping(ctx); err != nil {
		t.Errorf("the primary after the standby's Close: %v", err)
	}
}

func TestStandbyOfStoppedPrimary(t *testing.T) {
	c := startPostgres(t)
	if err := c.Stop(); err != nil {
		t.Fatal(err)
	}
	before, _ := filepath.Glob(filepath.Join(filepath.Dir(c.Dir()), "throwaway-postgres-*"))
	s, err := c.StartStandby()
	if err == nil {
		s.Close()
		t.Fatal("StartStandby of a stopped primary succeeded")
	}
	after, _ := filepath.Glob(filepath.Join(filepath.Dir(c.Dir()), "throwaway-postgres-*"))
	if len(after) > len(before) {
		t.Errorf("StartStandby left a directory behind: %v, was %v", after, before)
	}
}

// A standby whose base backup fails leaves nothing running or on disk.
func TestStandbyFailsCleanly(t *testing.T) {
	c := startPostgres(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn := connect(t, ctx, c.URL("postgres"))
	if _, err := conn.Exec(ctx, "ALTER SYSTEM SET max_wal_senders = 0"); err != nil {
		t.Fatal(err)
	}
	conn.Close(ctx)
	if err := c.Restart(); err != nil { // max_wal_senders needs a restart
		t.Fatal(err)
	}
	before, _ := filepath.Glob(filepath.Join(filepath.Dir(c.Dir()), "throwaway-postgres-*"))
	s, err := c.StartStandby()
	if err == nil {
		s.Close()
		t.Fatal("StartStandby succeeded with max_wal_senders = 0")
	}
	if !strings.Contains(err.Error(), "pg_basebackup") {
		t.Errorf("error %q does not name pg_basebackup", err)
	}
	after, _ := filepath.Glob(filepath.Join(filepath.Dir(c.Dir()), "throwaway-postgres-*"))
	if len(after) > len(before) {
		t.Errorf("StartStandby left a directory behind: %v, was %v", after, before)
	}
}

func TestAllowLocalReplication(t *testing.T) {
	dir := t.TempDir()
	hba := filepath.Join(dir, "pg_hba.conf")
	for _, tc := range []struct {
		name, in string
		added    bool
	}{
		{"present", "local   all  all  trust\nlocal   replication     all   trust\n", false},
		{"commented", "local   all  all  trust\n#local   replication     all   trust\n", true},
		{"absent", "local   all  all  trust\nhost replication all 127.0.0.1/32 trust\n", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := os.WriteFile(hba, []byte(tc.in), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := allowLocalReplication(dir); err != nil {
				t.Fatal(err)
			}
			b, _ := os.ReadFile(hba)
			if added := len(b) > len(tc.in); added != tc.added || !strings.HasPrefix(string(b), tc.in) {
				t.Errorf("added %v, want %v:\n%s", added, tc.added, b)
			}
			if tc.added && !strings.HasSuffix(string(b), "local   replication     all                                     trust\n") {
				t.Errorf("appended:\n%s", b)
			}
		})
	}
}
