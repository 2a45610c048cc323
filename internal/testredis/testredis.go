// Package testredis starts throwaway redis-server processes for tests.
//
// Each call to Start runs its own redis-server on a free port of 127.0.0.1,
// in its own temporary directory, with persistence off (--save "",
// --appendonly no): a restarted server is always empty. t.Cleanup kills it.
//
// There is no shared server: every Start costs one redis-server start, a few
// tens of milliseconds.
//
// It must never touch a Redis it did not start: it binds only 127.0.0.1 on a
// port it picked.
//
// redis-server is looked up on PATH. When it is missing the test is skipped
// with a line saying what to install, or fails with that line when CI=true.
//
// The server runs in its own process group with a parent-death signal, so a
// test binary that is killed outright takes its servers with it and leaves at
// most a temporary directory.
package testredis

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
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
)

const (
	readyTimeout = 10 * time.Second // process start until PING answers
	stopTimeout  = 10 * time.Second // SIGKILL until the process is reaped
	startTries   = 5                // ports tried when another process takes ours
	installHint  = "apt-get install redis-server"
)

// Server is a running (or killed) throwaway redis-server.
type Server struct {
	bin     string
	dir     string
	logPath string

	mu       sync.Mutex
	port     int
	proc     *process // nil while killed
	logShown bool     // a failure message already holds the server log
}

// process is one run of redis-server.
type process struct {
	cmd    *exec.Cmd
	exited chan struct{} // closed once cmd.Wait returns
	err    error         // cmd.Wait's result, valid after exited is closed
}

// Start starts a server. t.Cleanup kills it and removes its directory,
// whether the test passes, fails or panics.
func Start(t testing.TB) *Server {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		line := "testredis: redis-server not found on PATH: " + installHint
		if os.Getenv("CI") == "true" {
			t.Fatal(line)
		}
		t.Skip(line)
	}
	dir := t.TempDir() // removed after the cleanup below has run
	s := &Server{bin: bin, dir: dir, logPath: filepath.Join(dir, "server.log")}
	t.Cleanup(func() { s.cleanup(t) })

	var lastErr error
	for range startTries {
		port, err := freePort()
		if err != nil {
			t.Fatalf("testredis: %v", err)
		}
		s.mu.Lock()
		s.port = port
		lastErr = s.start()
		s.mu.Unlock()
		if lastErr == nil {
			return s
		}
		if !errors.Is(lastErr, errPortTaken) {
			break
		}
	}
	s.mu.Lock()
	s.logShown = true // lastErr holds it
	s.mu.Unlock()
	t.Fatalf("testredis: start server: %v", lastErr)
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
	// The port was ours a moment ago; wait a little for it to free rather
	// than move the server.
	deadline := time.Now().Add(5 * time.Second)
	for {
		err := s.start()
		if err == nil {
			return
		}
		if !errors.Is(err, errPortTaken) || time.Now().After(deadline) {
			s.logShown = true // err holds it
			t.Fatalf("testredis: restart: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// pid returns the server's process id, 0 when killed.
func (s *Server) pid() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc == nil {
		return 0
	}
	return s.proc.cmd.Process.Pid
}

// errPortTaken means the server could not bind its port.
var errPortTaken = errors.New("port already in use")

// start starts redis-server on s.port and waits until it answers PING.
// s.mu is held.
func (s *Server) start() error {
	logFile, err := os.OpenFile(s.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logFile.Close() // the child has its own copy
	logStart, _ := logFile.Seek(0, io.SeekEnd)

	cmd := exec.Command(s.bin,
		"--port", strconv.Itoa(s.port),
		"--bind", "127.0.0.1",
		"--save", "",
		"--appendonly", "no",
		"--dir", s.dir,
		"--daemonize", "no",
		"--logfile", "", // stdout, which is logFile
	)
	cmd.Dir = s.dir
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return err
	}
	p := &process{cmd: cmd, exited: make(chan struct{})}
	go func() { p.err = cmd.Wait(); close(p.exited) }()
	s.proc = p

	err = s.waitReady(p)
	if err == nil {
		return nil
	}
	_ = s.kill()
	log := s.logSince(logStart)
	if strings.Contains(log, "Address already in use") {
		return fmt.Errorf("%w: port %d\nserver log (%s):\n%s", errPortTaken, s.port, s.logPath, log)
	}
	return fmt.Errorf("%v\nserver log (%s):\n%s", err, s.logPath, log)
}

// waitReady sends PING until the server answers, exits, or readyTimeout.
func (s *Server) waitReady(p *process) error {
	client := redis.NewClient(&redis.Options{
		Addr:        net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)),
		DialTimeout: time.Second,
		MaxRetries:  -1,
		PoolSize:    1,
	})
	defer client.Close()
	deadline := time.Now().Add(readyTimeout)
	var lastErr error
	for time.Now().Before(deadline) {
		select {
		case <-p.exited:
			return fmt.Errorf("server exited: %v", p.err)
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := client.Ping(ctx).Err()
		cancel()
		if err == nil {
			return nil
		}
		lastErr = err
		select {
		case <-p.exited:
			return fmt.Errorf("server exited: %v", p.err)
		case <-time.After(10 * time.Millisecond):
		}
	}
	return fmt.Errorf("server not ready after %v: %v", readyTimeout, lastErr)
}

// kill kills the server's process group and reaps it. s.mu is held.
func (s *Server) kill() error {
	p := s.proc
	if p == nil {
		return nil
	}
	s.proc = nil
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	select {
	case <-p.exited:
		return nil
	case <-time.After(stopTimeout):
		return fmt.Errorf("server pid %d survived SIGKILL", p.cmd.Process.Pid)
	}
}

// cleanup kills the server; t.TempDir removes the directory afterwards.
func (s *Server) cleanup(t testing.TB) {
	s.mu.Lock()
	err := s.kill()
	logShown := s.logShown
	s.mu.Unlock()
	if err != nil {
		t.Errorf("testredis: cleanup: %v", err)
	}
	if t.Failed() && !logShown {
		if tail := s.logSince(-16 << 10); tail != "" {
			t.Logf("testredis: server log (%s):\n%s", s.logPath, tail)
		}
	}
}

// logSince returns the server log from byte offset off, or its last -off
// bytes when off is negative.
func (s *Server) logSince(off int64) string {
	b, err := os.ReadFile(s.logPath)
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

// freePort returns a TCP port of 127.0.0.1 that was free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("pick a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
