package throwaway

// This file holds the throwaway PostgreSQL cluster.
//
// Each cluster is initialised by initdb in a fresh temporary directory and
// served by a postmaster on a free port of 127.0.0.1, with durability turned
// off (fsync, full_page_writes and synchronous_commit are off) because
// nothing written to it needs to survive the machine. Close tears it down:
// an immediate shutdown (SIGQUIT, what `pg_ctl stop -m immediate` sends),
// SIGKILL as a fallback, then the directory is removed.
//
// There is no shared cluster: every StartPostgres costs one initdb plus one
// server start, about 1-2 s on a small machine. Callers that need several
// databases should start one cluster and call CreateDatabase.
//
// Binaries are looked up in $PG_BIN when set, otherwise in
// /usr/lib/postgresql/*/bin (newest version first), `pg_config --bindir` and
// PATH.
//
// PostgreSQL refuses to run as root. When running as root, initdb and the
// server run as the `postgres` system user, in a directory created under
// os.TempDir() and owned by that user.
//
// The postmaster is started directly (not through `pg_ctl start`, which
// detaches it), through StartProcess.
//
// A cluster can replicate: initdb's defaults (wal_level replica,
// max_wal_senders 10, a pg_hba.conf line letting local connections
// replicate with trust) are kept, and StartStandby (standby.go) starts a
// streaming standby of it.

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
	"time"

	"github.com/jackc/pgx/v5"
)

// PostgresSuperuser is the role initdb creates and URL connects as.
const PostgresSuperuser = "postgres"

const (
	pgReadyTimeout = 30 * time.Second // server start until a ping succeeds
	pgStopTimeout  = 15 * time.Second // shutdown signal until the postmaster exits
	pgInstallHint  = "apt-get install postgresql"
)

// ErrPostgresNotInstalled is wrapped by StartPostgres's error when this
// machine lacks what the server needs (its binaries, or the `postgres` user
// when running as root), as opposed to a failure of a server that could run.
var ErrPostgresNotInstalled = errors.New("throwaway: PostgreSQL not installed")

// Postgres is a running (or stopped) throwaway PostgreSQL cluster.
type Postgres struct {
	binDir  string
	dir     string // owned by the server's user: data/, sockets, server.log
	dataDir string
	logPath string
	cred    *syscall.Credential // nil unless running as root
	primary *Postgres           // the cluster this one streams from (StartStandby), nil for a primary

	mu      sync.Mutex
	port    int
	proc    *Process // nil while stopped
	closed  bool
	lastLog string // the log's end when Close removed it
}

// PostgresOptions configures StartPostgres. The zero value is the only
// configuration so far; fields may be added without breaking callers.
type PostgresOptions struct{}

// StartPostgres initialises and starts a cluster. The caller must Close it.
// When the binaries are missing, the error wraps ErrPostgresNotInstalled and
// says what to install. On any error nothing is left running or on disk.
func StartPostgres(opts PostgresOptions) (*Postgres, error) {
	binDir, ok := findPGBinDir()
	if !ok {
		return nil, fmt.Errorf("%w (server binaries initdb and postgres not found in $PG_BIN, /usr/lib/postgresql/*/bin, `pg_config --bindir` or PATH): %s", ErrPostgresNotInstalled, pgInstallHint)
	}
	cred, err := pgCredential()
	if err != nil {
		return nil, fmt.Errorf("%w (running as root needs the `postgres` system user to run the server: %v): %s creates it", ErrPostgresNotInstalled, err, pgInstallHint)
	}
	dir, err := makePGDir(cred)
	if err != nil {
		return nil, fmt.Errorf("throwaway: %w", err)
	}
	c := &Postgres{
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
func (c *Postgres) launch() error {
	if out, err := c.command("initdb",
		"-D", c.dataDir, "-U", PostgresSuperuser, "-A", "trust",
		"-E", "UTF8", "--locale=C", "--no-sync",
	).CombinedOutput(); err != nil {
		return fmt.Errorf("throwaway: initdb: %v\n%s", err, out)
	}
	if err := allowLocalReplication(c.dataDir); err != nil { // for StartStandby
		return fmt.Errorf("throwaway: initdb: %w", err)
	}
	err := StartOnFreePort(startTries, func(port int) error {
		c.mu.Lock()
		defer c.mu.Unlock()
		c.port = port
		return c.start()
	})
	if err != nil {
		return fmt.Errorf("throwaway: start postgres: %w", err) // with the server log
	}
	return nil
}

// Close shuts the server down at once (an immediate shutdown, SIGKILL as a
// fallback) and removes the cluster's directory, keeping the end of the
// server log for Log. The cluster cannot be used afterwards; closing it
// again does nothing.
func (c *Postgres) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	var errs []error
	if err := c.stop(syscall.SIGQUIT); err != nil {
		errs = append(errs, fmt.Errorf("throwaway: close postgres: %w", err))
	}
	if !c.closed {
		c.lastLog = ReadLog(c.logPath, -logTail)
		c.closed = true
	}
	if err := os.RemoveAll(c.dir); err != nil {
		errs = append(errs, fmt.Errorf("throwaway: close postgres: %w", err))
	}
	return errors.Join(errs...)
}

// URL returns the URL of database db, as the superuser, over TCP.
func (c *Postgres) URL(db string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	u := url.URL{
		Scheme:   "postgres",
		User:     url.User(PostgresSuperuser),
		Host:     net.JoinHostPort("127.0.0.1", strconv.Itoa(c.port)),
		Path:     "/" + db,
		RawQuery: "sslmode=disable",
	}
	return u.String()
}

// Port returns the TCP port the server listens on; it survives Restart.
func (c *Postgres) Port() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.port
}

// BinDir returns the directory of the server's binaries, where pg_dump,
// pg_restore and psql of the same version live.
func (c *Postgres) BinDir() string { return c.binDir }

// Dir returns the cluster's directory (its data, Unix socket and server
// log), which Close removes.
func (c *Postgres) Dir() string { return c.dir }

// LogPath returns the path of the server log, in Dir.
func (c *Postgres) LogPath() string { return c.logPath }

// Log returns the end of the server log (its last 16 KiB), trimmed of
// surrounding white space; after Close, as it was when Close removed it.
func (c *Postgres) Log() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return c.lastLog
	}
	return ReadLog(c.logPath, -logTail)
}

// Pid returns the postmaster's process id, 0 when stopped.
func (c *Postgres) Pid() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.proc == nil {
		return 0
	}
	return c.proc.Pid()
}

// CreateDatabase creates database name and returns its URL.
func (c *Postgres) CreateDatabase(ctx context.Context, name string) (string, error) {
	conn, err := pgx.Connect(ctx, c.URL("postgres"))
	if err != nil {
		return "", fmt.Errorf("throwaway: create database %q: %w", name, err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		return "", fmt.Errorf("throwaway: create database %q: %w", name, err)
	}
	return c.URL(name), nil
}

// Stop shuts the server down the way `pg_ctl stop -m fast` does: open
// connections are dropped, and committed data survives Restart. Stopping a
// stopped cluster does nothing.
func (c *Postgres) Stop() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.stop(syscall.SIGINT); err != nil {
		return fmt.Errorf("throwaway: stop postgres: %w", err)
	}
	return nil
}

// Restart starts a stopped cluster again on the same port, with its data.
// A running cluster is stopped first. When the server does not start, the
// error holds its log.
func (c *Postgres) Restart() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.stop(syscall.SIGINT); err != nil {
		return fmt.Errorf("throwaway: restart postgres: %w", err)
	}
	if err := RetryPortTaken(5*time.Second, c.start); err != nil {
		return fmt.Errorf("throwaway: restart postgres: %w", err)
	}
	return nil
}

// start starts the postmaster on c.port and waits until it accepts a
// connection. c.mu is held.
func (c *Postgres) start() error {
	p, err := StartProcess(c.command("postgres",
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

	dsn := fmt.Sprintf("postgres://%s@127.0.0.1:%d/postgres?sslmode=disable&connect_timeout=2", PostgresSuperuser, c.port)
	err = p.WaitReady(pgReadyTimeout, 25*time.Millisecond, func() error {
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
		return fmt.Errorf("%w: port %d\nserver log (%s):\n%s", ErrPortTaken, c.port, c.logPath, log)
	}
	return fmt.Errorf("%v\nserver log (%s):\n%s", err, c.logPath, log)
}

// stop sends sig to the postmaster (SIGINT: fast shutdown, SIGQUIT:
// immediate) and waits for it to exit, killing its process group if it does
// not. c.mu is held.
func (c *Postgres) stop(sig syscall.Signal) error {
	p := c.proc
	if p == nil {
		return nil
	}
	c.proc = nil
	return p.Stop(sig, pgStopTimeout)
}

// command returns a command running binary name from the cluster's bin
// directory, as the server's user, in its own process group, killed when
// this program dies.
func (c *Postgres) command(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(filepath.Join(c.binDir, name), args...)
	cmd.Dir = c.dir
	cmd.Env = pgEnv()
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Setpgid:    true,
		Pdeathsig:  syscall.SIGKILL,
		Credential: c.cred,
	}
	return cmd
}

// pgEnv is this program's environment without PG* variables, which would
// otherwise redirect initdb or the server, with the C locale.
func pgEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "PG") || strings.HasPrefix(kv, "LC_") || strings.HasPrefix(kv, "LANG") {
			continue
		}
		env = append(env, kv)
	}
	return append(env, "LC_ALL=C")
}

// pgBinDirCandidates lists directories that may hold initdb and postgres,
// best first.
func pgBinDirCandidates() []string {
	if dir := os.Getenv("PG_BIN"); dir != "" {
		return []string{dir} // explicit: nothing else
	}
	var dirs []string
	matches, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.SliceStable(matches, func(i, j int) bool {
		return pgVersionOf(matches[i]) > pgVersionOf(matches[j])
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

// pgVersionOf returns N of /usr/lib/postgresql/N/bin, 0 if not a number.
func pgVersionOf(binDir string) float64 {
	v, _ := strconv.ParseFloat(filepath.Base(filepath.Dir(binDir)), 64)
	return v
}

// findPGBinDir returns the first candidate holding executable initdb and
// postgres.
func findPGBinDir() (string, bool) {
	for _, dir := range pgBinDirCandidates() {
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

// pgCredential returns the `postgres` user's identity when running as
// root, nil otherwise.
func pgCredential() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup(PostgresSuperuser)
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

// makePGDir creates the cluster's directory under os.TempDir(), owned by
// the server's user. A directory of the caller's (a test's t.TempDir, say)
// is not used: as root, its parents may not be traversable by that user.
func makePGDir(cred *syscall.Credential) (string, error) {
	parent := os.TempDir()
	if cred != nil && !traversable(parent) {
		parent = "/tmp"
	}
	dir, err := os.MkdirTemp(parent, "throwaway-postgres-")
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
