package testpg

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

func TestCluster(t *testing.T) {
	began := time.Now()
	c := Start(t)
	t.Logf("cluster started in %v (bin %s, port %d)", time.Since(began).Round(time.Millisecond), c.BinDir(), c.Port())

	if want := fmt.Sprintf("postgres://postgres@127.0.0.1:%d/app?sslmode=disable", c.Port()); c.URL("app") != want {
		t.Errorf("URL(app) = %q, want %q", c.URL("app"), want)
	}
	if fi, err := os.Stat(filepath.Join(c.BinDir(), "pg_dump")); err != nil || fi.Mode()&0o111 == 0 {
		t.Errorf("BinDir %s has no pg_dump", c.BinDir())
	}

	dbURL := c.CreateDB(t, "app")
	if dbURL != c.URL("app") {
		t.Errorf("CreateDB returned %q, want %q", dbURL, c.URL("app"))
	}
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)

	var db string
	if err := conn.QueryRow(ctx, "SELECT current_database()").Scan(&db); err != nil || db != "app" {
		t.Fatalf("current_database() = %q, %v; want app", db, err)
	}
	if _, err := conn.Exec(ctx, "CREATE TABLE site (id int PRIMARY KEY, name text NOT NULL)"); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, "INSERT INTO site VALUES (1, 'data.example.org'), (2, 'open.example.net')"); err != nil {
		t.Fatal(err)
	}
	var name string
	if err := conn.QueryRow(ctx, "SELECT name FROM site WHERE id = 2").Scan(&name); err != nil || name != "open.example.net" {
		t.Fatalf("select = %q, %v; want open.example.net", name, err)
	}
	var maxConns string
	if err := conn.QueryRow(ctx, "SHOW max_connections").Scan(&maxConns); err != nil {
		t.Fatal(err)
	}
	if n, err := strconv.Atoi(maxConns); err != nil || n < 1 {
		t.Errorf("max_connections = %q", maxConns)
	}

	port := c.Port()
	c.Stop(t)
	if err := conn.Ping(ctx); err == nil {
		t.Error("ping on an open connection succeeded after Stop")
	}
	shortCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if conn2, err := pgx.Connect(shortCtx, dbURL); err == nil {
		conn2.Close(ctx)
		t.Error("connect succeeded after Stop")
	}

	c.Restart(t)
	if c.Port() != port {
		t.Errorf("port after Restart = %d, want %d", c.Port(), port)
	}
	conn3, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatalf("connect after Restart: %v", err)
	}
	defer conn3.Close(ctx)
	var n int
	if err := conn3.QueryRow(ctx, "SELECT count(*) FROM site").Scan(&n); err != nil || n != 2 {
		t.Errorf("rows after Restart = %d, %v; want 2", n, err)
	}
}

func TestCleanupStopsServerAndRemovesDir(t *testing.T) {
	var pid int
	var dir string
	t.Run("cluster", func(t *testing.T) {
		c := Start(t)
		pid, dir = c.pg.Pid(), c.pg.Dir()
		if !alive(pid) {
			t.Fatalf("postmaster %d not running", pid)
		}
	})
	if pid == 0 {
		t.Skip("no cluster was started")
	}
	if alive(pid) {
		t.Errorf("postmaster %d still running after cleanup", pid)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("cluster directory %s still exists after cleanup (%v)", dir, err)
	}
}

// installHint is what the skip line says to install.
const installHint = "apt-get install postgresql"

// childEnv selects, in a subprocess of this test binary, which child test
// runs.
const childEnv = "TESTPG_CHILD"

func TestMissingBinaries(t *testing.T) {
	for _, tc := range []struct {
		ci       string
		wantFail bool
		wantLine string
	}{
		{ci: "", wantFail: false, wantLine: "--- SKIP: TestChildMissingBinaries"},
		{ci: "true", wantFail: true, wantLine: "--- FAIL: TestChildMissingBinaries"},
	} {
		t.Run("CI="+tc.ci, func(t *testing.T) {
			cmd := child("TestChildMissingBinaries", "missing", "CI="+tc.ci)
			out, err := cmd.CombinedOutput()
			failed := err != nil
			if _, ok := err.(*exec.ExitError); err != nil && !ok {
				t.Fatal(err)
			}
			if failed != tc.wantFail {
				t.Errorf("child failed = %v, want %v", failed, tc.wantFail)
			}
			if !strings.Contains(string(out), tc.wantLine) {
				t.Errorf("child output lacks %q", tc.wantLine)
			}
			if n := strings.Count(string(out), installHint); n != 1 {
				t.Errorf("child output mentions %q %d times, want once", installHint, n)
			}
			if t.Failed() {
				t.Logf("child output:\n%s", out)
			}
		})
	}
}

func TestChildMissingBinaries(t *testing.T) {
	if os.Getenv(childEnv) != "missing" {
		t.Skip("runs only as a subprocess of TestMissingBinaries")
	}
	t.Setenv("PG_BIN", t.TempDir())
	Start(t)
	t.Error("Start returned without PostgreSQL binaries")
}

// TestFailedTestShowsServerLog checks that a failing test gets the server
// log, read before Close removes it.
func TestFailedTestShowsServerLog(t *testing.T) {
	out, err := child("TestChildFailing", "failing").CombinedOutput()
	if strings.Contains(string(out), "--- SKIP: TestChildFailing") {
		t.Skip("no cluster was started")
	}
	if _, ok := err.(*exec.ExitError); !ok {
		t.Fatalf("child: %v, want a failure\n%s", err, out)
	}
	for _, want := range []string{"--- FAIL: TestChildFailing", "testpg: server log (", "database system is ready to accept connections"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("child output lacks %q", want)
		}
	}
	if t.Failed() {
		t.Logf("child output:\n%s", out)
	}
}

func TestChildFailing(t *testing.T) {
	if os.Getenv(childEnv) != "failing" {
		t.Skip("runs only as a subprocess of TestFailedTestShowsServerLog")
	}
	Start(t)
	t.Error("deliberate failure")
}

// child returns a command running one test of this binary with childEnv set
// to mode, plus env, without CI from our environment.
func child(test, mode string, env ...string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], "-test.run=^"+test+"$", "-test.v", "-test.count=1")
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "CI=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	// Without this a -race child sleeps a second before exiting.
	cmd.Env = append(cmd.Env, "GORACE="+strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0"), childEnv+"="+mode)
	cmd.Env = append(cmd.Env, env...)
	return cmd
}

// alive reports whether process pid exists and is not a zombie.
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(b)
	rest := s[strings.LastIndexByte(s, ')')+1:]
	fields := strings.Fields(rest)
	return len(fields) > 0 && fields[0] != "Z" && fields[0] != "X"
}
