package throwaway

// This file holds the throwaway streaming standby of a throwaway cluster.
//
// StartStandby copies a running cluster with `pg_basebackup -R -X stream`
// (as the server's user, over the primary's Unix socket, which pg_hba.conf
// lets replicate with trust: initdb's default, made sure of by
// allowLocalReplication) into a fresh directory, and starts the copy on its
// own port: a hot standby that streams the primary's WAL and replays it.
// It is a *Postgres like any other: URL, Stop, Restart, Close and Log work
// as for a primary; only writes fail (it is read-only).
//
// PauseReplay and ResumeReplay stop and restart the standby's replay
// (pg_wal_replay_pause / pg_wal_replay_resume) while it keeps receiving the
// primary's WAL, so a test can make replay lag real; WaitCaughtUp waits
// until the standby has replayed all the primary had written.

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

const (
	pgBaseBackupTimeout = 2 * time.Minute // pg_basebackup of a fresh cluster takes a second
	pgPollInterval      = 25 * time.Millisecond
)

// ErrNotStandby is returned by the replay methods of a cluster that is not
// a standby started by StartStandby.
var ErrNotStandby = errors.New("throwaway: not a standby")

// StartStandby starts a streaming standby of the running cluster c: it runs
// `pg_basebackup -R -X stream` into a fresh directory and starts the copy on
// its own free port of 127.0.0.1, then waits until it accepts connections,
// pg_is_in_recovery() is true and its WAL receiver is streaming from c. The
// caller must Close it (before or after c; a standby whose primary is gone
// keeps trying to reconnect until closed). On any error nothing of the
// standby is left running or on disk.
func (c *Postgres) StartStandby() (*Postgres, error) {
	c.mu.Lock()
	port, running, closed := c.port, c.proc != nil, c.closed
	c.mu.Unlock()
	if closed || !running {
		return nil, errors.New("throwaway: start standby: the primary is not running")
	}
	dir, err := makePGDir(c.cred)
	if err != nil {
		return nil, fmt.Errorf("throwaway: start standby: %w", err)
	}
	s := &Postgres{
		binDir:  c.binDir,
		dir:     dir,
		dataDir: filepath.Join(dir, "data"),
		logPath: filepath.Join(dir, "server.log"),
		cred:    c.cred,
		primary: c,
	}
	if err := s.launchStandby(port); err != nil {
		return nil, errors.Join(err, s.Close())
	}
	return s, nil
}

// launchStandby copies the primary listening on primaryPort (and on its
// Unix socket in s.primary.dir) into s.dataDir and starts the copy.
func (s *Postgres) launchStandby(primaryPort int) error {
	cmd := s.command("pg_basebackup",
		"-D", s.dataDir,
		"-h", s.primary.dir, // the primary's Unix socket: pg_hba.conf's "local replication"
		"-p", strconv.Itoa(primaryPort),
		"-U", PostgresSuperuser,
		"-w",           // never ask for a password
		"-R",           // write standby.signal and primary_conninfo
		"-X", "stream", // the WAL written meanwhile, over a second connection
		"-c", "fast", // an immediate checkpoint, not a spread one
		"--no-sync",
	)
	if out, err := runTimeout(cmd, pgBaseBackupTimeout); err != nil {
		return fmt.Errorf("throwaway: pg_basebackup: %v\n%s", err, out)
	}
	err := StartOnFreePort(startTries, func(port int) error {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.port = port
		return s.start()
	})
	if err != nil {
		return fmt.Errorf("throwaway: start standby: %w", err) // with the server log
	}
	ctx, cancel := context.WithTimeout(context.Background(), pgReadyTimeout)
	defer cancel()
	var inRecovery bool
	var status string
	err = s.poll(ctx, func(conn *pgx.Conn) (bool, error) {
		err := conn.QueryRow(ctx, `SELECT pg_is_in_recovery(), coalesce((SELECT status FROM pg_stat_wal_receiver), '')`).Scan(&inRecovery, &status)
		return inRecovery && status == "streaming", err
	})
	if err != nil {
		return fmt.Errorf("throwaway: start standby: not streaming (in recovery %v, WAL receiver %q): %w\nserver log (%s):\n%s",
			inRecovery, status, err, s.logPath, s.Log())
	}
	return nil
}

// Primary returns the cluster c is a standby of, nil when c is not a
// standby.
func (c *Postgres) Primary() *Postgres { return c.primary }

// PauseReplay asks the standby to stop replaying WAL
// (pg_wal_replay_pause()); it still receives the primary's WAL. From its
// return no further WAL record is replayed (the startup process checks
// the request before each one), so nothing the primary commits from then
// on becomes visible on the standby, and pg_last_xact_replay_timestamp()
// stays where it was, until ResumeReplay. pg_get_wal_replay_pause_state()
// turns from "pause requested" to "paused" a moment later.
func (c *Postgres) PauseReplay(ctx context.Context) error {
	return c.replayControl(ctx, "pg_wal_replay_pause")
}

// ResumeReplay undoes PauseReplay (pg_wal_replay_resume()).
func (c *Postgres) ResumeReplay(ctx context.Context) error {
	return c.replayControl(ctx, "pg_wal_replay_resume")
}

func (c *Postgres) replayControl(ctx context.Context, fn string) error {
	if c.primary == nil {
		return fmt.Errorf("%w: %s", ErrNotStandby, fn)
	}
	conn, err := pgx.Connect(ctx, c.URL("postgres"))
	if err != nil {
		return fmt.Errorf("throwaway: %s: %w", fn, err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, "SELECT "+fn+"()"); err != nil {
		return fmt.Errorf("throwaway: %s: %w", fn, err)
	}
	return nil
}

// WaitCaughtUp waits until the standby has replayed everything the primary
// had written when it was called, or ctx ends. With replay paused it waits
// for ctx. "Written" is the primary's WAL insert position
// (pg_current_wal_insert_lsn()), not pg_current_wal_lsn(): the throwaway
// primary commits asynchronously (synchronous_commit off), so a commit can
// lie past what it has written out (and sent) for up to wal_writer_delay.
func (c *Postgres) WaitCaughtUp(ctx context.Context) error {
	if c.primary == nil {
		return fmt.Errorf("%w: wait until caught up", ErrNotStandby)
	}
	pconn, err := pgx.Connect(ctx, c.primary.URL("postgres"))
	if err != nil {
		return fmt.Errorf("throwaway: wait until caught up: primary: %w", err)
	}
	var target string
	err = pconn.QueryRow(ctx, "SELECT pg_current_wal_insert_lsn()::text").Scan(&target)
	pconn.Close(context.Background())
	if err != nil {
		return fmt.Errorf("throwaway: wait until caught up: primary: %w", err)
	}
	var replayed string
	err = c.poll(ctx, func(conn *pgx.Conn) (bool, error) {
		var done bool
		err := conn.QueryRow(ctx, "SELECT coalesce(pg_last_wal_replay_lsn()::text, ''), coalesce(pg_last_wal_replay_lsn() >= $1::pg_lsn, false)", target).Scan(&replayed, &done)
		return done, err
	})
	if err != nil {
		return fmt.Errorf("throwaway: wait until caught up: replayed up to %q of %s: %w", replayed, target, err)
	}
	return nil
}

// poll connects to the cluster and calls cond every pgPollInterval until
// it returns true, ctx ends, or the server exits; a connection lost in
// between is made again. The error is ctx's, with cond's last error.
func (c *Postgres) poll(ctx context.Context, cond func(*pgx.Conn) (bool, error)) error {
	var conn *pgx.Conn
	defer func() {
		if conn != nil {
			conn.Close(context.Background())
		}
	}()
	var lastErr error
	for {
		if conn == nil {
			conn, lastErr = pgx.Connect(ctx, c.URL("postgres"))
		}
		if conn != nil {
			var ok bool
			ok, lastErr = cond(conn)
			if ok && lastErr == nil {
				return nil
			}
			if lastErr != nil {
				conn.Close(context.Background())
				conn = nil
			}
		}
		select {
		case <-ctx.Done():
			if lastErr != nil {
				return fmt.Errorf("%w (last error: %v)", ctx.Err(), lastErr)
			}
			return ctx.Err()
		case <-time.After(pgPollInterval):
		}
	}
}

// runTimeout runs cmd (made by command: the leader of its own process
// group) and returns its combined output; past timeout it kills the group
// (pg_basebackup forks a child to stream WAL).
func runTimeout(cmd *exec.Cmd, timeout time.Duration) ([]byte, error) {
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	var mu sync.Mutex
	reaped, killed := false, false
	timer := time.AfterFunc(timeout, func() {
		mu.Lock()
		defer mu.Unlock()
		if !reaped { // else its pid, and group id, may belong to another now
			killed = true
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		}
	})
	err := cmd.Wait()
	timer.Stop()
	mu.Lock()
	reaped = true
	if killed {
		err = fmt.Errorf("killed after %v: %v", timeout, err)
	}
	mu.Unlock()
	return out.Bytes(), err
}

// allowLocalReplication makes sure pg_hba.conf in dataDir lets local
// (Unix socket) connections replicate with trust, as initdb -A trust
// writes it since PostgreSQL 10: it appends the line only when no
// uncommented "local replication" line is there.
func allowLocalReplication(dataDir string) error {
	path := filepath.Join(dataDir, "pg_hba.conf")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_APPEND, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 2 && fields[0] == "local" && fields[1] == "replication" {
			return nil
		}
	}
	if err := sc.Err(); err != nil {
		return err
	}
	_, err = f.WriteString("\n# throwaway: streaming standbys (StartStandby)\nlocal   replication     all                                     trust\n")
	return err
}
