package testpg

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

func TestStandby(t *testing.T) {
	c := Start(t)
	dbURL := c.CreateDB(t, "app")
	ctx := context.Background()
	primary, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer primary.Close(ctx)
	if _, err := primary.Exec(ctx, "CREATE TABLE site (id int)"); err != nil {
		t.Fatal(err)
	}

	s := c.Standby(t)
	if s.Port() == c.Port() || s.BinDir() != c.BinDir() {
		t.Errorf("standby port %d bin %s; primary port %d bin %s", s.Port(), s.BinDir(), c.Port(), c.BinDir())
	}
	standby, err := pgx.Connect(ctx, s.URL("app"))
	if err != nil {
		t.Fatal(err)
	}
	defer standby.Close(ctx)
	rows := func() (n int) {
		t.Helper()
		if err := standby.QueryRow(ctx, "SELECT count(*) FROM site").Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	var inRecovery bool
	if err := standby.QueryRow(ctx, "SELECT pg_is_in_recovery()").Scan(&inRecovery); err != nil || !inRecovery {
		t.Fatalf("pg_is_in_recovery() = %v, %v", inRecovery, err)
	}

	if _, err := primary.Exec(ctx, "INSERT INTO site VALUES (1)"); err != nil {
		t.Fatal(err)
	}
	s.WaitCaughtUp(t)
	if n := rows(); n != 1 {
		t.Errorf("%d rows on the standby, want 1", n)
	}
	s.PauseReplay(t)
	if _, err := primary.Exec(ctx, "INSERT INTO site VALUES (2)"); err != nil {
		t.Fatal(err)
	}
	var lsn string
	if err := primary.QueryRow(ctx, "SELECT pg_current_wal_insert_lsn()::text").Scan(&lsn); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for received := false; !received; time.Sleep(10 * time.Millisecond) { // the WAL reaches the standby
		if err := standby.QueryRow(ctx, "SELECT pg_last_wal_receive_lsn() >= $1::pg_lsn", lsn).Scan(&received); err != nil {
			t.Fatal(err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("the standby has not received %s after 10 s", lsn)
		}
	}
	if n := rows(); n != 1 {
		t.Errorf("%d rows on the standby with replay paused, want 1", n)
	}
	s.ResumeReplay(t)
	s.WaitCaughtUp(t)
	if n := rows(); n != 2 {
		t.Errorf("%d rows on the standby after ResumeReplay, want 2", n)
	}
}

// TestFailedTestClosesStandby checks that a failing test's cleanup stops
// its standby and primary, removes their directories, and shows the
// standby's server log.
func TestFailedTestClosesStandby(t *testing.T) {
	out, err := child("TestChildFailingStandby", "failing-standby").CombinedOutput()
	if strings.Contains(string(out), "--- SKIP: TestChildFailingStandby") {
		t.Skip("no cluster was started")
	}
	if _, ok := err.(*exec.ExitError); !ok {
		t.Fatalf("child: %v, want a failure\n%s", err, out)
	}
	var found int
	for _, line := range strings.Split(string(out), "\n") {
		var pid int
		var dir string
		if _, err := fmt.Sscanf(strings.TrimSpace(line), "SERVER pid=%d dir=%s", &pid, &dir); err != nil {
			continue
		}
		found++
		if alive(pid) {
			t.Errorf("postmaster %d still running after the failed test", pid)
			syscall.Kill(pid, syscall.SIGKILL)
		}
		if _, err := os.Stat(dir); !os.IsNotExist(err) {
			t.Errorf("directory %s still exists after the failed test (%v)", dir, err)
			os.RemoveAll(dir)
		}
	}
	if found != 2 {
		t.Errorf("child reported %d servers, want 2", found)
	}
	for _, want := range []string{"--- FAIL: TestChildFailingStandby", "testpg: server log (", "started streaming WAL from primary"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("child output lacks %q", want)
		}
	}
	if t.Failed() {
		t.Logf("child output:\n%s", out)
	}
}

func TestChildFailingStandby(t *testing.T) {
	if os.Getenv(childEnv) != "failing-standby" {
		t.Skip("runs only as a subprocess of TestFailedTestClosesStandby")
	}
	c := Start(t)
	s := c.Standby(t)
	for _, cl := range []*Cluster{c, s} {
		fmt.Printf("SERVER pid=%d dir=%s\n", cl.pg.Pid(), cl.pg.Dir())
	}
	t.Error("deliberate failure")
}
