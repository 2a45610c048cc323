// Package testpg starts throwaway PostgreSQL clusters for tests.
//
// Each call to Start runs initdb in a fresh temporary directory and starts a
// postmaster on a free port of 127.0.0.1, with durability turned off
// (fsync, full_page_writes and synchronous_commit are off) because nothing a
// test writes needs to survive the machine. The cluster is torn down by
// t.Cleanup: an immediate shutdown (SIGQUIT, what `pg_ctl stop -m immediate`
// sends), SIGKILL as a fallback, then the directory is removed.
//
// There is no shared cluster: every Start costs one initdb plus one server
// start, about 1-2 s on a small machine. Tests that need several databases
// should start one cluster and call CreateDB.
//
// It must never touch a PostgreSQL it did not start: it listens only on
// 127.0.0.1 on a port it picked, and keeps its Unix socket in its own
// directory.
//
// Binaries are looked up in $PG_BIN when set, otherwise in
// /usr/lib/postgresql/*/bin (newest version first), `pg_config --bindir` and
// PATH. When they are missing the test is skipped with a line saying what to
// install, or fails with that line when CI=true.
//
// PostgreSQL refuses to run as root. When the test runs as root, initdb and
// the server run as the `postgres` system user, in a directory created under
// os.TempDir() and owned by that user.
//
// The postmaster is started directly (not through `pg_ctl start`, which
// detaches it) in its own process group with a parent-death signal, so a test
// binary that is killed outright takes its servers with it and leaves at most
// a temporary directory.
package testpg

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// Superuser is the role initdb creates and URL connects as.
const Superuser = "postgres"

const (
	readyTimeout = 30 * time.Second // server start until a ping succeeds
	stopTimeout  = 15 * time.Second // shutdown signal until the postmaster exits
	startTries   = 5                // ports tried when another process takes ours
	installHint  = "apt-get install postgresql"
)

// Cluster is a running (or stopped) throwaway PostgreSQL cluster.
type Cluster struct {
	binDir  string
	dir     string // owned by the server's user: data/, sockets, server.log
	dataDir string
	logPath string
	cred    *syscall.Credential // nil unless running as root

	mu       sync.Mutex
	port     int
	proc     *process // nil while stopped
	logShown bool     // a failure message already holds the server log
}

// process is one run of the postmaster.
type process struct {
	cmd    *exec.Cmd
	exited chan struct{} // closed once cmd.Wait returns
	err    error         // cmd.Wait's result, valid after exited is closed
}

// Start initialises and starts a cluster. t.Cleanup stops it and removes its
// directory, whether the test passes, fails or panics.
func Start(t testing.TB) *Cluster {
	t.Helper()
	binDir, ok := findBinDir()
	if !ok {
		missing(t, "testpg: PostgreSQL server binaries (initdb, postgres) not found in $PG_BIN, /usr/lib/postgresql/*/bin, `pg_config --bindir` or PATH: "+installHint)
	}
	cred, err := serverCredential()
	if err != nil {
		missing(t, "testpg: running as root needs the `postgres` system user to run the server ("+err.Error()+"): "+installHint+" creates it")
	}
	dir, err := makeDir(cred)
	if err != nil {
		t.Fatalf("testpg: %v", err)
	}
	c := &Cluster{
		binDir:  binDir,
		dir:     dir,
		dataDir: filepath.Join(dir, "data"),
		logPath: filepath.Join(dir, "server.log"),
		cred:    cred,
	}
	// Registered before any process exists, so a Fatal anywhere below
	// still tears everything down.
	t.Cleanup(func() { c.cleanup(t) })

	if out, err := c.command("initdb",
		"-D", c.dataDir, "-U", Superuser, "-A", "trust",
		"-E", "UTF8", "--locale=C", "--no-sync",
	).CombinedOutput(); err != nil {
		t.Fatalf("testpg: initdb: %v\n%s", err, out)
	}

	var lastErr error
	for range startTries {
		port, err := freePort()
		if err != nil {
			t.Fatalf("testpg: %v", err)
		}
		c.mu.Lock()
		c.port = port
		lastErr = c.start()
		c.mu.Unlock()
		if lastErr == nil {
			return c
		}
		if !errors.Is(lastErr, errPortTaken) {
			break
		}
	}
	c.mu.Lock()
	c.logShown = true // lastErr holds it
	c.mu.Unlock()
	t.Fatalf("testpg: start server: %v", lastErr)
	return nil
}

// URL returns the URL of database db, as the superuser, over TCP.
func (c *Cluster) URL(db string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	u := url.URL{
		Scheme:   "postgres",
		User:     url.User(Superuser),
		Host:     net.JoinHostPort("127.0.0.1", strconv.Itoa(c.port)),
		Path:     "/" + db,
		RawQuery: "sslmode=disable",
	}
	return u.String()
}

// Port returns the TCP port the server listens on; it survives Restart.
func (c *Cluster) Port() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.port
}

// BinDir returns the directory of the server's binaries, where pg_dump,
// pg_restore and psql of the same version live.
func (c *Cluster) BinDir() string { return c.binDir }

// CreateDB creates database name and returns its URL.
func (c *Cluster) CreateDB(t testing.TB, name string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, c.URL("postgres"))
	if err != nil {
		t.Fatalf("testpg: create database %q: %v", name, err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		t.Fatalf("testpg: create database %q: %v", name, err)
	}
	return c.URL(name)
}

// Stop shuts the server down the way `pg_ctl stop -m fast` does: open
// connections are dropped, and committed data survives Restart. Stopping a
// stopped cluster does nothing.
func (c *Cluster) Stop(t testing.TB) {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.stop(syscall.SIGINT); err != nil {
		t.Fatalf("testpg: stop: %v", err)
	}
}

// Restart starts a stopped cluster again on the same port, with its data.
// A running cluster is stopped first.
func (c *Cluster) Restart(t testing.TB) {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.stop(syscall.SIGINT); err != nil {
		t.Fatalf("testpg: restart: %v", err)
	}
	// The port was ours a moment ago; if something else holds it, wait a
	// little for it to go rather than move the cluster.
	deadline := time.Now().Add(5 * time.Second)
	for {
		err := c.start()
		if err == nil {
			return
		}
		if !errors.Is(err, errPortTaken) || time.Now().After(deadline) {
			c.logShown = true // err holds it
			t.Fatalf("testpg: restart: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// pid returns the postmaster's process id, 0 when stopped.
func (c *Cluster) pid() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.proc == nil {
		return 0
	}
	return c.proc.cmd.Process.Pid
}

// errPortTaken means the server could not bind its port.
var errPortTaken = errors.New("port already in use")

// start starts the postmaster on c.port and waits until it accepts a
// connection. c.mu is held.
func (c *Cluster) start() error {
	logFile, err := os.OpenFile(c.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logFile.Close() // the child has its own copy
	logStart, _ := logFile.Seek(0, io.SeekEnd)

	cmd := c.command("postgres",
		"-D", c.dataDir,
		"-p", strconv.Itoa(c.port),
		"-k", c.dir,
		"-c", "listen_addresses=127.0.0.1",
		"-c", "fsync=off",
		"-c", "synchronous_commit=off",
		"-c", "full_page_writes=off",
	)
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	if err := cmd.Start(); err != nil {
		return err
	}
	p := &process{cmd: cmd, exited: make(chan struct{})}
	go func() { p.err = cmd.Wait(); close(p.exited) }()
	c.proc = p

	err = c.waitReady(p)
	if err == nil {
		return nil
	}
	_ = c.stop(syscall.SIGQUIT)
	log := c.logSince(logStart)
	if strings.Contains(log, "could not bind") || strings.Contains(log, "could not create any TCP/IP sockets") {
		return fmt.Errorf("%w: port %d\nserver log (%s):\n%s", errPortTaken, c.port, c.logPath, log)
	}
	return fmt.Errorf("%v\nserver log (%s):\n%s", err, c.logPath, log)
}

// waitReady pings the server until it answers, it exits, or readyTimeout.
func (c *Cluster) waitReady(p *process) error {
	dsn := fmt.Sprintf("postgres://%s@127.0.0.1:%d/postgres?sslmode=disable&connect_timeout=2", Superuser, c.port)
	deadline := time.Now().Add(readyTimeout)
	var lastErr error
	for time.Now().Before(deadline) {
		select {
		case <-p.exited:
			return fmt.Errorf("server exited: %v", p.err)
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		conn, err := pgx.Connect(ctx, dsn)
		if err == nil {
			err = conn.Ping(ctx)
			conn.Close(ctx)
		}
		cancel()
		if err == nil {
			return nil
		}
		lastErr = err
		select {
		case <-p.exited:
			return fmt.Errorf("server exited: %v", p.err)
		case <-time.After(25 * time.Millisecond):
		}
	}
	return fmt.Errorf("server not ready after %v: %v", readyTimeout, lastErr)
}

// stop sends sig to the postmaster (SIGINT: fast shutdown, SIGQUIT:
// immediate) and waits for it to exit, killing its process group if it does
// not. c.mu is held.
func (c *Cluster) stop(sig syscall.Signal) error {
	p := c.proc
	if p == nil {
		return nil
	}
	c.proc = nil
	_ = p.cmd.Process.Signal(sig)
	select {
	case <-p.exited:
		return nil
	case <-time.After(stopTimeout):
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	select {
	case <-p.exited:
		return fmt.Errorf("server ignored %v for %v, killed it", sig, stopTimeout)
	case <-time.After(stopTimeout):
		return fmt.Errorf("server pid %d survived SIGKILL", p.cmd.Process.Pid)
	}
}

// cleanup stops the server at once and removes the directory.
func (c *Cluster) cleanup(t testing.TB) {
	c.mu.Lock()
	err := c.stop(syscall.SIGQUIT)
	logShown := c.logShown
	c.mu.Unlock()
	if err != nil {
		t.Errorf("testpg: cleanup: %v", err)
	}
	if t.Failed() && !logShown {
		if tail := c.logSince(-16 << 10); tail != "" {
			t.Logf("testpg: server log (%s):\n%s", c.logPath, tail)
		}
	}
	if err := os.RemoveAll(c.dir); err != nil {
		t.Errorf("testpg: cleanup: %v", err)
	}
}

// logSince returns the server log from byte offset off, or its last -off
// bytes when off is negative.
func (c *Cluster) logSince(off int64) string {
	b, err := os.ReadFile(c.logPath)
	if err != nil {
		return ""
	}
	switch {
	case off < 0 && int64(len(b)) > -off:
		b = b[int64(len(b))+off:]
	case off >= 0 && off <= int64(len(b)):
		b = b[off:]
	}
	return string(bytes.TrimSpace(b))
}

// command returns a command running binary name from the cluster's bin
// directory, as the server's user, in its own process group, killed when
// the test binary dies.
func (c *Cluster) command(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(filepath.Join(c.binDir, name), args...)
	cmd.Dir = c.dir
	cmd.Env = serverEnv()
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Setpgid:    true,
		Pdeathsig:  syscall.SIGKILL,
		Credential: c.cred,
	}
	return cmd
}

// serverEnv is the test's environment without PG* variables, which would
// otherwise redirect initdb or the server, with the C locale.
func serverEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "PG") || strings.HasPrefix(kv, "LC_") || strings.HasPrefix(kv, "LANG") {
			continue
		}
		env = append(env, kv)
	}
	return append(env, "LC_ALL=C")
}

// missing reports absent prerequisites: a skip, or a failure under CI.
func missing(t testing.TB, line string) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatal(line)
	}
	t.Skip(line)
}

// binDirCandidates lists directories that may hold initdb and postgres, best
// first. Tests replace it to simulate a machine without PostgreSQL.
var binDirCandidates = func() []string {
	if dir := os.Getenv("PG_BIN"); dir != "" {
		return []string{dir} // explicit: nothing else
	}
	var dirs []string
	matches, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.SliceStable(matches, func(i, j int) bool {
		return versionOf(matches[i]) > versionOf(matches[j])
	})
	dirs = append(dirs, matches...)
	if out, err := exec.Command("pg_config", "--bindir").Output(); err == nil {
		dirs = append(dirs, strings.TrimSpace(string(out)))
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		dirs = append(dirs, filepath.Dir(p))
	}
	return dirs
}

// versionOf returns N of /usr/lib/postgresql/N/bin, 0 if not a number.
func versionOf(binDir string) float64 {
	v, _ := strconv.ParseFloat(filepath.Base(filepath.Dir(binDir)), 64)
	return v
}

// findBinDir returns the first candidate holding executable initdb and
// postgres.
func findBinDir() (string, bool) {
	for _, dir := range binDirCandidates() {
		if isExecutable(filepath.Join(dir, "initdb")) && isExecutable(filepath.Join(dir, "postgres")) {
			return dir, true
		}
	}
	return "", false
}

func isExecutable(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0
}

// serverCredential returns the `postgres` user's identity when running as
// root, nil otherwise.
func serverCredential() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup(Superuser)
	if err != nil {
		return nil, err
	}
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return nil, err
	}
	gid, err := strconv.ParseUint(u.Gid, 10, 32)
	if err != nil {
		return nil, err
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

// makeDir creates the cluster's directory under os.TempDir(), owned by the
// server's user. t.TempDir is not used: as root, its parents may not be
// traversable by that user.
func makeDir(cred *syscall.Credential) (string, error) {
	parent := os.TempDir()
	if cred != nil && !traversable(parent) {
		parent = "/tmp"
	}
	dir, err := os.MkdirTemp(parent, "testpg-")
	if err != nil {
		return "", fmt.Errorf("make cluster directory: %w", err)
	}
	if cred != nil {
		if err := os.Chown(dir, int(cred.Uid), int(cred.Gid)); err != nil {
			os.RemoveAll(dir)
			return "", fmt.Errorf("make cluster directory: %w", err)
		}
	}
	return dir, nil
}

// traversable reports whether any user may traverse dir and its parents.
func traversable(dir string) bool {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return false
	}
	for {
		fi, err := os.Stat(dir)
		if err != nil || fi.Mode().Perm()&0o001 == 0 {
			return false
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return true
		}
		dir = parent
	}
}

// freePort returns a TCP port of 127.0.0.1 that was free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("pick a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
