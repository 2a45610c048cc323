package throwaway

// This file holds the throwaway redis-server.
//
// Each server is its own redis-server on a free port of 127.0.0.1, in its own
// temporary directory, with persistence off (--save "", --appendonly no): a
// restarted server is always empty. Close kills it and removes the
// directory.
//
// There is no shared server: every StartRedis costs one redis-server start,
// a few tens of milliseconds.
//
// redis-server is looked up on PATH.

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
	"time"

	"github.com/redis/go-redis/v9"
)

const (
	redisReadyTimeout = 10 * time.Second // process start until PING answers
	redisStopTimeout  = 10 * time.Second // SIGKILL until the process is reaped
	redisInstallHint  = "apt-get install redis-server"
)

// ErrRedisNotInstalled is wrapped by StartRedis's error when redis-server is
// not on PATH, as opposed to a failure of a server that could run.
var ErrRedisNotInstalled = errors.New("throwaway: redis-server not installed")

// Redis is a running (or killed) throwaway redis-server.
type Redis struct {
	bin     string
	dir     string
	logPath string

	mu      sync.Mutex
	port    int
	proc    *Process // nil while killed
	closed  bool
	lastLog string // the log's end when Close removed it
}

// RedisOptions configures StartRedis. The zero value is the only
// configuration so far; fields may be added without breaking callers.
type RedisOptions struct{}

// StartRedis starts a server. The caller must Close it. When redis-server
// is missing, the error wraps ErrRedisNotInstalled and says what to install.
// On any error nothing is left running or on disk.
func StartRedis(opts RedisOptions) (*Redis, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, fmt.Errorf("%w (not found on PATH): %s", ErrRedisNotInstalled, redisInstallHint)
	}
	dir, err := os.MkdirTemp("", "throwaway-redis-")
	if err != nil {
		return nil, fmt.Errorf("throwaway: make server directory: %w", err)
	}
	s := &Redis{bin: bin, dir: dir, logPath: filepath.Join(dir, "server.log")}
	err = StartOnFreePort(startTries, func(port int) error {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.port = port
		return s.start()
	})
	if err != nil {
		// err holds the server log, which Close removes.
		return nil, errors.Join(fmt.Errorf("throwaway: start redis-server: %w", err), s.Close())
	}
	return s, nil
}

// Close kills the server and removes its directory, keeping the end of the
// server log for Log. The server cannot be used afterwards; closing it
// again does nothing.
func (s *Redis) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var errs []error
	if err := s.kill(); err != nil {
		errs = append(errs, fmt.Errorf("throwaway: close redis-server: %w", err))
	}
	if !s.closed {
		s.lastLog = ReadLog(s.logPath, -logTail)
		s.closed = true
	}
	if err := os.RemoveAll(s.dir); err != nil {
		errs = append(errs, fmt.Errorf("throwaway: close redis-server: %w", err))
	}
	return errors.Join(errs...)
}

// Addr returns the server's host:port; it survives Restart.
func (s *Redis) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port))
}

// URL returns the server's URL, database 0, as go-redis's ParseURL reads it.
func (s *Redis) URL() string { return "redis://" + s.Addr() + "/0" }

// Dir returns the server's directory (its working directory and log), which
// Close removes.
func (s *Redis) Dir() string { return s.dir }

// LogPath returns the path of the server log, in Dir.
func (s *Redis) LogPath() string { return s.logPath }

// Log returns the end of the server log (its last 16 KiB), trimmed of
// surrounding white space; after Close, as it was when Close removed it.
func (s *Redis) Log() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return s.lastLog
	}
	return ReadLog(s.logPath, -logTail)
}

// Pid returns the server's process id, 0 when killed.
func (s *Redis) Pid() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc == nil {
		return 0
	}
	return s.proc.Pid()
}

// Kill kills the server with SIGKILL, an outage: commands fail until
// Restart. Killing a killed server does nothing.
func (s *Redis) Kill() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.kill(); err != nil {
		return fmt.Errorf("throwaway: kill redis-server: %w", err)
	}
	return nil
}

// Restart starts the server again on the same port, empty. A running server
// is killed first. When the server does not start, the error holds its log.
func (s *Redis) Restart() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.kill(); err != nil {
		return fmt.Errorf("throwaway: restart redis-server: %w", err)
	}
	if err := RetryPortTaken(5*time.Second, s.start); err != nil {
		return fmt.Errorf("throwaway: restart redis-server: %w", err)
	}
	return nil
}

// start starts redis-server on s.port and waits until it answers PING.
// s.mu is held.
func (s *Redis) start() error {
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
	p, err := StartProcess(cmd, s.logPath)
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
	err = p.WaitReady(redisReadyTimeout, 10*time.Millisecond, func() error {
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
		return fmt.Errorf("%w: port %d\nserver log (%s):\n%s", ErrPortTaken, s.port, s.logPath, log)
	}
	return fmt.Errorf("%v\nserver log (%s):\n%s", err, s.logPath, log)
}

// kill kills the server's process group and reaps it. s.mu is held.
func (s *Redis) kill() error {
	p := s.proc
	if p == nil {
		return nil
	}
	s.proc = nil
	return p.Stop(syscall.SIGKILL, redisStopTimeout)
}
