// Package testpg starts throwaway PostgreSQL clusters, for tests (Start) and
// for `ckanops demo` (Launch).
//
// Each cluster is initialised by initdb in a fresh temporary directory and
// served by a postmaster on a free port of 127.0.0.1, with durability turned
// off (fsync, full_page_writes and synchronous_commit are off) because
// nothing written to it needs to survive the machine. Close tears it down,
// and Start has t.Cleanup call it: an immediate shutdown (SIGQUIT, what
// `pg_ctl stop -m immediate` sends), SIGKILL as a fallback, then the
// directory is removed.
//
// There is no shared cluster: every Start or Launch costs one initdb plus
// one server start, about 1-2 s on a small machine. Callers that need
// several databases should start one cluster and call CreateDB or
// CreateDatabase.
//
// It must never touch a PostgreSQL it did not start: it listens only on
// 127.0.0.1 on a port it picked, keeps its Unix socket in its own
// directory, and only ever signals the processes it started.
//
// Binaries are looked up in $PG_BIN when set, otherwise in
// /usr/lib/postgresql/*/bin (newest version first), `pg_config --bindir` and
// PATH. When they are missing Launch returns an error wrapping
// ErrNotInstalled that says what to install; Start skips the test with that
// line, or fails with it when CI=true.
//
// PostgreSQL refuses to run as root. When running as root, initdb and the
// server run as the `postgres` system user, in a directory created under
// os.TempDir() and owned by that user.
//
// The postmaster is started directly (not through `pg_ctl start`, which
// detaches it) in its own process group with a parent-death signal (see
// package testproc), so a program that is killed outright takes its servers
// with it and leaves at most a temporary directory.
package testpg

import (
	"context"
	"errors"
	"fmt"
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

	"github.com/ckanops/ckanops/internal/testproc"
)

// Superuser is the role initdb creates and URL connects as.
const Superuser = "postgres"

const (
	readyTimeout = 30 * time.Second // server start until a ping succeeds
	stopTimeout  = 15 * time.Second // shutdown signal until the postmaster exits
	startTries   = 5                // ports tried when another process takes ours
	installHint  = "apt-get install postgresql"
)

// ErrNotInstalled is wrapped by Launch's error when this machine lacks what
// the server needs (its binaries, or the `postgres` user when running as
// root), as opposed to a failure of a server that could run.
var ErrNotInstalled = errors.New("testpg: PostgreSQL not installed")

// Cluster is a running (or stopped) throwaway PostgreSQL cluster.
type Cluster struct {
	binDir  string
	dir     string // owned by the server's user: data/, sockets, server.log
	dataDir string
	logPath string
	cred    *syscall.Credential // nil unless running as root

	mu       sync.Mutex
	port     int
	proc     *testproc.Process // nil while stopped
	logShown bool              // a failure message already holds the server log
}

// LaunchOptions configures Launch. The zero value is the only configuration
// so far; fields may be added without breaking callers.
type LaunchOptions struct{}

// Launch initialises and starts a cluster. The caller must Close it. When
// the binaries are missing, the error wraps ErrNotInstalled and says what to
// install. On any error nothing is left running or on disk.
func Launch(opts LaunchOptions) (*Cluster, error) {
	binDir, ok := findBinDir()
	if !ok {
		return nil, fmt.Errorf("%w (server binaries initdb and postgres not found in $PG_BIN, /usr/lib/postgresql/*/bin, `pg_config --bindir` or PATH): %s", ErrNotInstalled, installHint)
	}
	cred, err := serverCredential()
	if err != nil {
		return nil, fmt.Errorf("%w (running as root needs the `postgres` system user to run the server: %v): %s creates it", ErrNotInstalled, err, installHint)
	}
	dir, err := makeDir(cred)
	if err != nil {
		return nil, fmt.Errorf("testpg: %w", err)
	}
	c := &Cluster{
		binDir:  binDir,
		dir:     dir,
		dataDir: filepath.Join(dir, "data"),
		logPath: filepath.Join(dir, "server.log"),
		cred:    cred,
	}
	if err := c.launch(); err != nil {
		return nil, errors.Join(err, c.Close())
	}
	return c, nil
}

// launch runs initdb and starts the server on a free port.
func (c *Cluster) launch() error {
	if out, err := c.command("initdb",
		"-D", c.dataDir, "-U", Superuser, "-A", "trust",
		"-E", "UTF8", "--locale=C", "--no-sync",
	).CombinedOutput(); err != nil {
		return fmt.Errorf("testpg: initdb: %v\n%s", err, out)
	}
	err := testproc.StartOnFreePort(startTries, func(port int) error {
		c.mu.Lock()
		defer c.mu.Unlock()
		c.port = port
		return c.start()
	})
	if err != nil {
		return fmt.Errorf("testpg: start server: %w", err) // with the server log
	}
	return nil
}

// Start launches a cluster for a test. t.Cleanup stops it and removes its
// directory, whether the test passes, fails or panics, and shows the server
// log when the test failed. Without PostgreSQL the test is skipped, or fails
// when CI=true.
func Start(t testing.TB) *Cluster {
	t.Helper()
	c, err := Launch(LaunchOptions{})
	if errors.Is(err, ErrNotInstalled) {
		missing(t, err.Error())
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.cleanup(t) })
	return c
}

// Close shuts the server down at once (an immediate shutdown, SIGKILL as a
// fallback) and removes the cluster's directory. The cluster cannot be
// used afterwards; closing it again does nothing.
func (c *Cluster) Close() error {
	return errors.Join(c.shutdown(), c.removeDir())
}

// shutdown stops the server at once.
func (c *Cluster) shutdown() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.stop(syscall.SIGQUIT); err != nil {
		return fmt.Errorf("testpg: close: %w", err)
	}
	return nil
}

// removeDir removes the cluster's directory.
func (c *Cluster) removeDir() error {
	if err := os.RemoveAll(c.dir); err != nil {
		return fmt.Errorf("testpg: close: %w", err)
	}
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

// CreateDatabase creates database name and returns its URL.
func (c *Cluster) CreateDatabase(ctx context.Context, name string) (string, error) {
	conn, err := pgx.Connect(ctx, c.URL("postgres"))
	if err != nil {
		return "", fmt.Errorf("testpg: create database %q: %w", name, err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		return "", fmt.Errorf("testpg: create database %q: %w", name, err)
	}
	return c.URL(name), nil
}

// CreateDB creates database name and returns its URL, or fails the test.
func (c *Cluster) CreateDB(t testing.TB, name string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	u, err := c.CreateDatabase(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	return u
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
	if err := testproc.RetryPortTaken(5*time.Second, c.start); err != nil {
		c.logShown = true // err holds it
		t.Fatalf("testpg: restart: %v", err)
	}
}

// pid returns the postmaster's process id, 0 when stopped.
func (c *Cluster) pid() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.proc == nil {
		return 0
	}
	return c.proc.Pid()
}

// start starts the postmaster on c.port and waits until it accepts a
// connection. c.mu is held.
func (c *Cluster) start() error {
	p, err := testproc.Start(c.command("postgres",
		"-D", c.dataDir,
		"-p", strconv.Itoa(c.port),
		"-k", c.dir,
		"-c", "listen_addresses=127.0.0.1",
		"-c", "fsync=off",
		"-c", "synchronous_commit=off",
		"-c", "full_page_writes=off",
	), c.logPath)
	if err != nil {
		return err
	}
	c.proc = p

	dsn := fmt.Sprintf("postgres://%s@127.0.0.1:%d/postgres?sslmode=disable&connect_timeout=2", Superuser, c.port)
	err = p.WaitReady(readyTimeout, 25*time.Millisecond, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, dsn)
		if err != nil {
			return err
		}
		defer conn.Close(ctx)
		return conn.Ping(ctx)
	})
	if err == nil {
		return nil
	}
	_ = c.stop(syscall.SIGQUIT)
	log := p.Log()
	if strings.Contains(log, "could not bind") || strings.Contains(log, "could not create any TCP/IP sockets") {
		return fmt.Errorf("%w: port %d\nserver log (%s):\n%s", testproc.ErrPortTaken, c.port, c.logPath, log)
	}
	return fmt.Errorf("%v\nserver log (%s):\n%s", err, c.logPath, log)
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
	return p.Stop(sig, stopTimeout)
}

// cleanup is Close for a test, which also gets the server log when it
// failed.
func (c *Cluster) cleanup(t testing.TB) {
	err := c.shutdown()
	if err != nil {
		t.Error(err)
	}
	c.mu.Lock()
	logShown := c.logShown
	c.mu.Unlock()
	if t.Failed() && !logShown {
		if tail := testproc.ReadLog(c.logPath, -16<<10); tail != "" {
			t.Logf("testpg: server log (%s):\n%s", c.logPath, tail)
		}
	}
	if err := c.removeDir(); err != nil {
		t.Error(err)
	}
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
// first.
func binDirCandidates() []string {
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
