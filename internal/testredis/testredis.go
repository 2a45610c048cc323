// Package testredis gives a test a throwaway redis-server: Start wraps
// throwaway.StartRedis with what only tests need, and nothing else. It
// imports `testing`, so no production package may import it; `ckanops demo`
// uses package throwaway directly.
//
// t.Cleanup kills the server and removes its directory, whether the test
// passes, fails or panics, and shows the server log when the test failed.
// Without redis-server the test is skipped with a line saying what to
// install, or fails with it when CI=true.
//
// There is no shared server: every Start costs one redis-server start, a
// few tens of milliseconds. Persistence is off: a restarted server is
// always empty.
package testredis

import (
	"errors"
	"os"
	"sync"
	"testing"

	"github.com/ckanops/ckanops/internal/throwaway"
)

// Server is a test's throwaway redis-server.
type Server struct {
	rd *throwaway.Redis

	mu       sync.Mutex
	logShown bool // a failure message already holds the server log
}

// Start starts a server for a test. t.Cleanup kills it and removes its
// directory, whether the test passes, fails or panics, and shows the server
// log when the test failed. Without redis-server the test is skipped, or
// fails when CI=true.
func Start(t testing.TB) *Server {
	t.Helper()
	rd, err := throwaway.StartRedis(throwaway.RedisOptions{})
	if errors.Is(err, throwaway.ErrRedisNotInstalled) {
		if os.Getenv("CI") == "true" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{rd: rd}
	t.Cleanup(func() { s.cleanup(t) })
	return s
}

// Addr returns the server's host:port; it survives Restart.
func (s *Server) Addr() string { return s.rd.Addr() }

// URL returns the server's URL, database 0, as go-redis's ParseURL reads it.
func (s *Server) URL() string { return s.rd.URL() }

// Pid returns the server's process id (0 when killed), for a test that
// pauses it with SIGSTOP and SIGCONT.
func (s *Server) Pid() int { return s.rd.Pid() }

// Kill kills the server with SIGKILL, an outage: commands fail until
// Restart. Killing a killed server does nothing.
func (s *Server) Kill(t testing.TB) {
	t.Helper()
	if err := s.rd.Kill(); err != nil {
		t.Fatal(err)
	}
}

// Restart starts the server again on the same port, empty. A running server
// is killed first.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	if err := s.rd.Restart(); err != nil {
		s.mu.Lock()
		s.logShown = true // err holds it
		s.mu.Unlock()
		t.Fatal(err)
	}
}

// cleanup closes the server for a test, which also gets the server log when
// it failed.
func (s *Server) cleanup(t testing.TB) {
	if err := s.rd.Close(); err != nil {
		t.Error(err)
	}
	s.mu.Lock()
	logShown := s.logShown
	s.mu.Unlock()
	if t.Failed() && !logShown {
		if tail := s.rd.Log(); tail != "" {
			t.Logf("testredis: server log (%s):\n%s", s.rd.LogPath(), tail)
		}
	}
}
