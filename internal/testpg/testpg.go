// Package testpg gives a test a throwaway PostgreSQL cluster: Start wraps
// throwaway.StartPostgres with what only tests need, and nothing else. It
// imports `testing`, so no production package may import it; `ckanops demo`
// uses package throwaway directly.
//
// t.Cleanup closes the cluster (an immediate shutdown, then its directory is
// removed), whether the test passes, fails or panics, and shows the server
// log when the test failed. Without PostgreSQL the test is skipped with a
// line saying what to install, or fails with it when CI=true.
//
// There is no shared cluster: every Start costs one initdb plus one server
// start, about 1-2 s on a small machine. Tests that need several databases
// should start one cluster and call CreateDB.
//
// Standby starts a streaming replica of a cluster (about 1 s more), closed
// the same way; PauseReplay, ResumeReplay and WaitCaughtUp make its replay
// lag what a test needs.
package testpg

import (
	"context"
	"errors"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/ckanops/ckanops/internal/throwaway"
)

// Cluster is a test's throwaway PostgreSQL cluster.
type Cluster struct {
	pg *throwaway.Postgres

	mu       sync.Mutex
	logShown bool // a failure message already holds the server log
}

// Start starts a cluster for a test. t.Cleanup stops it and removes its
// directory, whether the test passes, fails or panics, and shows the server
// log when the test failed. Without PostgreSQL the test is skipped, or fails
// when CI=true.
func Start(t testing.TB) *Cluster {
	t.Helper()
	pg, err := throwaway.StartPostgres(throwaway.PostgresOptions{})
	if errors.Is(err, throwaway.ErrPostgresNotInstalled) {
		missing(t, err.Error())
	}
	if err != nil {
		t.Fatal(err)
	}
	c := &Cluster{pg: pg}
	t.Cleanup(func() { c.cleanup(t) })
	return c
}

// URL returns the URL of database db, as the superuser, over TCP.
func (c *Cluster) URL(db string) string { return c.pg.URL(db) }

// Port returns the TCP port the server listens on; it survives Restart.
func (c *Cluster) Port() int { return c.pg.Port() }

// BinDir returns the directory of the server's binaries, where pg_dump,
// pg_restore and psql of the same version live.
func (c *Cluster) BinDir() string { return c.pg.BinDir() }

// CreateDB creates database name and returns its URL, or fails the test.
func (c *Cluster) CreateDB(t testing.TB, name string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	u, err := c.pg.CreateDatabase(ctx, name)
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
	if err := c.pg.Stop(); err != nil {
		t.Fatal(err)
	}
}

// Restart starts a stopped cluster again on the same port, with its data.
// A running cluster is stopped first.
func (c *Cluster) Restart(t testing.TB) {
	t.Helper()
	if err := c.pg.Restart(); err != nil {
		c.mu.Lock()
		c.logShown = true // err holds it
		c.mu.Unlock()
		t.Fatal(err)
	}
}

// Standby starts a streaming standby of the cluster (pg_basebackup into a
// fresh directory, started on its own port) and returns it once it is in
// recovery and streaming. Its URL is read-only: the primary's databases,
// as far as it has replayed them. t.Cleanup closes it, before the primary
// (cleanups run last in, first out), whether the test passes, fails or
// panics, and shows its server log when the test failed. About 1 s.
func (c *Cluster) Standby(t testing.TB) *Cluster {
	t.Helper()
	pg, err := c.pg.StartStandby()
	if err != nil {
		t.Fatal(err)
	}
	s := &Cluster{pg: pg}
	t.Cleanup(func() { s.cleanup(t) })
	return s
}

// PauseReplay stops a standby's replay of the primary's WAL (it keeps
// receiving it): nothing the primary commits from now on is visible on the
// standby, and its pg_last_xact_replay_timestamp() stays put, until
// ResumeReplay.
func (c *Cluster) PauseReplay(t testing.TB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.pg.PauseReplay(ctx); err != nil {
		t.Fatal(err)
	}
}

// ResumeReplay undoes PauseReplay.
func (c *Cluster) ResumeReplay(t testing.TB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.pg.ResumeReplay(ctx); err != nil {
		t.Fatal(err)
	}
}

// WaitCaughtUp waits until a standby has replayed everything its primary
// had committed when it was called, or fails the test after 30 s (replay
// paused, say).
func (c *Cluster) WaitCaughtUp(t testing.TB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.pg.WaitCaughtUp(ctx); err != nil {
		t.Fatal(err)
	}
}

// cleanup closes the cluster for a test, which also gets the server log
// when it failed.
func (c *Cluster) cleanup(t testing.TB) {
	if err := c.pg.Close(); err != nil {
		t.Error(err)
	}
	c.mu.Lock()
	logShown := c.logShown
	c.mu.Unlock()
	if t.Failed() && !logShown {
		if tail := c.pg.Log(); tail != "" {
			t.Logf("testpg: server log (%s):\n%s", c.pg.LogPath(), tail)
		}
	}
}

// missing reports absent prerequisites: a skip, or a failure under CI.
func missing(t testing.TB, line string) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatal(line)
	}
	t.Skip(line)
}
