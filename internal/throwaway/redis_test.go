package throwaway

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// startRedis starts a server that the test's end closes, if the test did
// not.
func startRedis(t *testing.T) *Redis {
	t.Helper()
	s, err := StartRedis(RedisOptions{})
	if errors.Is(err, ErrRedisNotInstalled) {
		skipOrFail(t, err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// TestRedis runs a server the way `ckanops demo` does: StartRedis, Close;
// with a Kill and a Restart in between.
func TestRedis(t *testing.T) {
	began := time.Now()
	s := startRedis(t)
	t.Logf("server started in %v at %s", time.Since(began).Round(time.Millisecond), s.Addr())
	if want := "redis://" + s.Addr() + "/0"; s.URL() != want {
		t.Errorf("URL() = %q, want %q", s.URL(), want)
	}
	if !strings.HasPrefix(s.Addr(), "127.0.0.1:") {
		t.Errorf("Addr() = %q, want 127.0.0.1:PORT", s.Addr())
	}
	if s.LogPath() != filepath.Join(s.Dir(), "server.log") {
		t.Errorf("LogPath() = %s, want server.log in %s", s.LogPath(), s.Dir())
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	client := redis.NewClient(&redis.Options{Addr: s.Addr(), DialTimeout: time.Second, MaxRetries: -1})
	defer client.Close()
	if err := client.Set(ctx, "demo", "on", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if got, err := client.Get(ctx, "demo").Result(); err != nil || got != "on" {
		t.Errorf("GET demo = %q, %v; want on", got, err)
	}
	if cfg, err := client.ConfigGet(ctx, "save").Result(); err != nil || cfg["save"] != "" {
		t.Errorf("CONFIG GET save = %v, %v; want empty", cfg, err)
	}

	addr := s.Addr()
	if err := s.Kill(); err != nil {
		t.Fatalf("Kill: %v", err)
	}
	if s.Pid() != 0 {
		t.Errorf("Pid() = %d after Kill, want 0", s.Pid())
	}
	if err := client.Ping(ctx).Err(); err == nil {
		t.Error("PING succeeded after Kill")
	}
	if err := s.Kill(); err != nil {
		t.Errorf("second Kill: %v", err)
	}
	if err := s.Restart(); err != nil {
		t.Fatalf("Restart: %v", err)
	}
	if s.Addr() != addr {
		t.Errorf("Addr after Restart = %s, want %s", s.Addr(), addr)
	}
	if n, err := client.DBSize(ctx).Result(); err != nil || n != 0 {
		t.Errorf("DBSIZE after Restart = %d, %v; want 0 (an empty server)", n, err)
	}

	pid, dir := s.Pid(), s.Dir()
	if !alive(pid) {
		t.Fatalf("redis-server %d not running", pid)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if alive(pid) {
		t.Errorf("redis-server %d still running after Close", pid)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("server directory %s still exists after Close (%v)", dir, err)
	}
	if conn, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		conn.Close()
		t.Errorf("%s still accepts connections after Close", addr)
	}
	if log := s.Log(); !strings.Contains(log, "Ready to accept connections") {
		t.Errorf("Log() after Close = %q, want the server log", log)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestStartRedisNotInstalled(t *testing.T) {
	t.Setenv("PATH", t.TempDir()) // only an empty directory
	s, err := StartRedis(RedisOptions{})
	if err == nil {
		s.Close()
		t.Fatal("StartRedis succeeded without redis-server on PATH")
	}
	if !errors.Is(err, ErrRedisNotInstalled) {
		t.Errorf("StartRedis error %q does not wrap ErrRedisNotInstalled", err)
	}
	if n := strings.Count(err.Error(), redisInstallHint); n != 1 {
		t.Errorf("StartRedis error %q mentions %q %d times, want once", err, redisInstallHint, n)
	}
}

// TestKilledProgramLeavesNoRedis kills a program that has a server running
// and checks that the server dies with it.
func TestKilledProgramLeavesNoRedis(t *testing.T) {
	if _, err := exec.LookPath("redis-server"); err != nil {
		skipOrFail(t, fmt.Errorf("redis-server not found on PATH: %s", redisInstallHint))
	}
	procs := killServerOwner(t, "TestChildRedis", "redis")
	checkDead(t, procs)
}

func TestChildRedis(t *testing.T) {
	if os.Getenv(childEnv) != "redis" {
		t.Skip("runs only as a subprocess of TestKilledProgramLeavesNoRedis")
	}
	s, err := StartRedis(RedisOptions{})
	if err != nil {
		t.Fatal(err)
	}
	fmt.Printf("SERVER pid=%d dir=%s\n", s.Pid(), s.Dir())
	time.Sleep(time.Minute) // the parent kills us long before
}
