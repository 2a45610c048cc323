package throwaway

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// startPostgres starts a cluster that the test's end closes, if the test
// did not.
func startPostgres(t *testing.T) *Postgres {
	t.Helper()
	c, err := StartPostgres(PostgresOptions{})
	if errors.Is(err, ErrPostgresNotInstalled) {
		skipOrFail(t, err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestPostgres runs a cluster the way `ckanops demo` does: StartPostgres,
// CreateDatabase, Close; with a Stop and a Restart in between.
func TestPostgres(t *testing.T) {
	began := time.Now()
	c := startPostgres(t)
	t.Logf("cluster started in %v (bin %s, port %d)", time.Since(began).Round(time.Millisecond), c.BinDir(), c.Port())

	if want := fmt.Sprintf("postgres://postgres@127.0.0.1:%d/demo?sslmode=disable", c.Port()); c.URL("demo") != want {
		t.Errorf("URL(demo) = %q, want %q", c.URL("demo"), want)
	}
	if !isExecutable(filepath.Join(c.BinDir(), "pg_dump")) {
		t.Errorf("BinDir %s has no pg_dump", c.BinDir())
	}
	if c.LogPath() != filepath.Join(c.Dir(), "server.log") {
		t.Errorf("LogPath() = %s, want server.log in %s", c.LogPath(), c.Dir())
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dbURL, err := c.CreateDatabase(ctx, "demo")
	if err != nil {
		t.Fatal(err)
	}
	if dbURL != c.URL("demo") {
		t.Errorf("CreateDatabase returned %q, want %q", dbURL, c.URL("demo"))
	}
	if _, err := c.CreateDatabase(ctx, "demo"); err == nil || !strings.Contains(err.Error(), `create database "demo"`) {
		t.Errorf("CreateDatabase of an existing database: %v, want an error naming it", err)
	}
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	var db string
	if err := conn.QueryRow(ctx, "SELECT current_database()").Scan(&db); err != nil || db != "demo" {
		t.Fatalf("current_database() = %q, %v; want demo", db, err)
	}
	if _, err := conn.Exec(ctx, "CREATE TABLE site (id int PRIMARY KEY); INSERT INTO site VALUES (1), (2)"); err != nil {
		t.Fatal(err)
	}

	port := c.Port()
	if err := c.Stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if c.Pid() != 0 {
		t.Errorf("Pid() = %d after Stop, want 0", c.Pid())
	}
	if err := conn.Ping(ctx); err == nil {
		t.Error("ping on an open connection succeeded after Stop")
	}
	conn.Close(ctx)
	if err := c.Stop(); err != nil {
		t.Errorf("second Stop: %v", err)
	}
	if err := c.Restart(); err != nil {
		t.Fatalf("Restart: %v", err)
	}
	if c.Port() != port {
		t.Errorf("port after Restart = %d, want %d", c.Port(), port)
	}
	conn, err = pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatalf("connect after Restart: %v", err)
	}
	var n int
	err = conn.QueryRow(ctx, "SELECT count(*) FROM site").Scan(&n)
	conn.Close(ctx)
	if err != nil || n != 2 {
		t.Errorf("rows after Restart = %d, %v; want 2", n, err)
	}

	pid, dir, addr := c.Pid(), c.Dir(), net.JoinHostPort("127.0.0.1", strconv.Itoa(c.Port()))
	if !alive(pid) {
		t.Fatalf("postmaster %d not running", pid)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if alive(pid) {
		t.Errorf("postmaster %d still running after Close", pid)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("cluster directory %s still exists after Close (%v)", dir, err)
	}
	if conn, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		conn.Close()
		t.Errorf("%s still accepts connections after Close", addr)
	}
	if log := c.Log(); !strings.Contains(log, "database system is ready to accept connections") {
		t.Errorf("Log() after Close = %q, want the server log", log)
	}
	if err := c.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestStartPostgresNotInstalled(t *testing.T) {
	t.Setenv("PG_BIN", t.TempDir()) // explicit, and empty
	c, err := StartPostgres(PostgresOptions{})
	if err == nil {
		c.Close()
		t.Fatal("StartPostgres succeeded without PostgreSQL binaries")
	}
	if !errors.Is(err, ErrPostgresNotInstalled) {
		t.Errorf("StartPostgres error %q does not wrap ErrPostgresNotInstalled", err)
	}
	if n := strings.Count(err.Error(), pgInstallHint); n != 1 {
		t.Errorf("StartPostgres error %q mentions %q %d times, want once", err, pgInstallHint, n)
	}
}

// TestKilledProgramLeavesNoPostgres kills a program that has a cluster
// running and checks that the postmaster and its children die with it.
func TestKilledProgramLeavesNoPostgres(t *testing.T) {
	if _, ok := findPGBinDir(); !ok {
		skipOrFail(t, fmt.Errorf("PostgreSQL server binaries not found: %s", pgInstallHint))
	}
	procs := killServerOwner(t, "TestChildPostgres", "postgres")
	if len(procs) < 2 {
		t.Errorf("postmaster %d had no children; was it really running?", procs[0])
	}
	checkDead(t, procs)
}

func TestChildPostgres(t *testing.T) {
	if os.Getenv(childEnv) != "postgres" {
		t.Skip("runs only as a subprocess of TestKilledProgramLeavesNoPostgres")
	}
	c, err := StartPostgres(PostgresOptions{})
	if err != nil {
		t.Fatal(err)
	}
	fmt.Printf("SERVER pid=%d dir=%s\n", c.Pid(), c.Dir())
	time.Sleep(time.Minute) // the parent kills us long before
}
