// Package testredis starts throwaway redis-server processes, for tests
// (Start) and for `ckanops demo` (Launch).
//
// Each server is its own redis-server on a free port of 127.0.0.1, in its own
// temporary directory, with persistence off (--save "", --appendonly no): a
// restarted server is always empty. Close kills it and removes the
// directory, and Start has t.Cleanup call it.
//
// There is no shared server: every Start or Launch costs one redis-server
// start, a few tens of milliseconds.
//
// It must never touch a Redis it did not start: it binds only 127.0.0.1 on a
// port it picked, and only ever signals the processes it started.
//
// redis-server is looked up on PATH. When it is missing Launch returns an
// error wrapping ErrNotInstalled that says what to install; Start skips the
// test with that line, or fails with it when CI=true.
//
// The server runs in its own process group with a parent-death signal (see
// package testproc), so a program that is killed outright takes its servers
// with it and leaves at most a temporary directory.
package testredis

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/ckanops/ckanops/internal/testproc"
)

const (
	readyTimeout = 10 * time.Second // process start until PING answers
	stopTimeout  = 10 * time.Second // SIGKILL until the process is reaped
	startTries   = 5                // ports tried when another process takes ours
	installHint  = "apt-get install redis-server"
)

// ErrNotInstalled is wrapped by Launch's error when redis-server is not on
// PATH, as opposed to a failure of a server that could run.
var ErrNotInstalled = errors.New("testredis: redis-server not installed")

// Server is a running (or killed) throwaway redis-server.
type Server struct {
	bin     string
	dir     string
	logPath string

	mu       sync.Mutex
	port     int
	proc     *testproc.Process // nil while killed
	logShown bool              // a failure message already holds the server log
}

// Launch starts a server. The caller must Close it. When redis-server is
// missing, the error wraps ErrNotInstalled and says what to install. On any
// error nothing is left running or on disk.
func Launch() (*Server, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, fmt.Errorf("%w (not found on PATH): %s", ErrNotInstalled, installHint)
	}
	dir, err := os.MkdirTemp("", "testredis-")
	if err != nil {
		return nil, fmt.Errorf("testredis: make server directory: %w", err)
	}
	s := &Server{bin: bin, dir: dir, logPath: filepath.Join(dir, "server.log")}
	err = testproc.StartOnFreePort(startTries, func(port int) error {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.port = port
		return s.start()
	})
	if err != nil {
		// err holds the server log, which Close removes.
		return nil, errors.Join(fmt.Errorf("testredis: start server: %w", err), s.Close())
	}
	return s, nil
}

// Start launches a server for a test. t.Cleanup kills it and removes its
// directory, whether the test passes, fails or panics, and shows the server
// log when the test failed. Without redis-server the test is skipped, or
// fails when CI=true.
func Start(t testing.TB) *Server {
	t.Helper()
	s, err := Launch()
	if errors.Is(err, ErrNotInstalled) {
		if os.Getenv("CI") == "true" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.cleanup(t) })
	return s
}

// Close kills the server and removes its directory. The server cannot be
// used afterwards; closing it again does nothing.
func (s *Server) Close() error {
	return errors.Join(s.shutdown(), s.removeDir())
}

// shutdown kills the server.
func (s *Server) shutdown() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.kill(); err != nil {
		return fmt.Errorf("testredis: close: %w", err)
	}
	return nil
}

// removeDir removes the server's directory.
func (s *Server) removeDir() error {
	if err := os.RemoveAll(s.dir); err != nil {
		return fmt.Errorf("testredis: close: %w", err)
	}
	return nil
}

// Addr returns the server's host:port; it survives Restart.
func (s *Server) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port))
}

// URL returns the server's URL, database 0, as go-redis's ParseURL reads it.
func (s *Server) URL() string { return "redis://" + s.Addr() + "/0" }

// Kill kills the server with SIGKILL, an outage: commands fail until
// Restart. Killing a killed server does nothing.
func (s *Server) Kill(t testing.TB) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.kill(); err != nil {
		t.Fatalf("testredis: kill: %v", err)
	}
}

// Restart starts the server again on the same port, empty. A running server
// is killed first.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.kill(); err != nil {
		t.Fatalf("testredis: restart: %v", err)
	}
	if err := testproc.RetryPortTaken(5*time.Second, s.start); err != nil {
		s.logShown = true // err holds it
		t.Fatalf("testredis: restart: %v", err)
	}
}

// pid returns the server's process id, 0 when killed.
func (s *Server) pid() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc == nil {
		return 0
	}
	return s.proc.Pid()
}

// start starts redis-server on s.port and waits until it answers PING.
// s.mu is held.
func (s *Server) start() error {
	cmd := exec.Command(s.bin,
		"--port", strconv.Itoa(s.port),
		"--bind", "127.0.0.1",
		"--save", "",
		"--appendonly", "no",
		"--dir", s.dir,
		"--daemonize", "no",
		"--logfile", "", // stdout, which is the log file
	)
	cmd.Dir = s.dir
	p, err := testproc.Start(cmd, s.logPath)
	if err != nil {
		return err
	}
	s.proc = p

	client := redis.NewClient(&redis.Options{
		Addr:        net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)),
		DialTimeout: time.Second,
		MaxRetries:  -1,
		PoolSize:    1,
	})
	defer client.Close()
	err = p.WaitReady(readyTimeout, 10*time.Millisecond, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		return client.Ping(ctx).Err()
	})
	if err == nil {
		return nil
	}
	_ = s.kill()
	log := p.Log()
	if strings.Contains(log, "Address already in use") {
		return fmt.Errorf("%w: port %d\nserver log (%s):\n%s", testproc.ErrPortTaken, s.port, s.logPath, log)
	}
	return fmt.Errorf("%v\nserver log (%s):\n%s", err, s.logPath, log)
}

// kill kills the server's process group and reaps it. s.mu is held.
func (s *Server) kill() error {
	p := s.proc
	if p == nil {
		return nil
	}
	s.proc = nil
	return p.Stop(syscall.SIGKILL, stopTimeout)
}

// cleanup is Close for a test, which also gets the server log when it
// failed.
func (s *Server) cleanup(t testing.TB) {
	if err := s.shutdown(); err != nil {
		t.Error(err)
	}
	s.mu.Lock()
	logShown := s.logShown
	s.mu.Unlock()
	if t.Failed() && !logShown {
		if tail := testproc.ReadLog(s.logPath, -16<<10); tail != "" {
			t.Logf("testredis: server log (%s):\n%s", s.logPath, tail)
		}
	}
	if err := s.removeDir(); err != nil {
		t.Error(err)
	}
}
