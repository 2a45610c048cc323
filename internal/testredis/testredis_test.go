package testredis

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

func newClient(t *testing.T, s *Server) *redis.Client {
	t.Helper()
	opts, err := redis.ParseURL(s.URL())
	if err != nil {
		t.Fatal(err)
	}
	opts.DialTimeout = time.Second
	opts.MaxRetries = -1
	client := redis.NewClient(opts)
	t.Cleanup(func() { client.Close() })
	return client
}

func TestSetGet(t *testing.T) {
	began := time.Now()
	s := Start(t)
	t.Logf("server started in %v at %s", time.Since(began).Round(time.Millisecond), s.Addr())
	if want := "redis://" + s.Addr() + "/0"; s.URL() != want {
		t.Errorf("URL() = %q, want %q", s.URL(), want)
	}
	if !strings.HasPrefix(s.Addr(), "127.0.0.1:") {
		t.Errorf("Addr() = %q, want 127.0.0.1:PORT", s.Addr())
	}
	ctx := context.Background()
	client := newClient(t, s)
	if err := client.Set(ctx, "mode", "read-only", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if got, err := client.Get(ctx, "mode").Result(); err != nil || got != "read-only" {
		t.Errorf("GET mode = %q, %v; want read-only", got, err)
	}
	cfg, err := client.ConfigGet(ctx, "save").Result()
	if err != nil || cfg["save"] != "" {
		t.Errorf("CONFIG GET save = %v, %v; want empty", cfg, err)
	}
}

func TestPublishSubscribe(t *testing.T) {
	s := Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	client := newClient(t, s)
	sub := client.Subscribe(ctx, "phase")
	defer sub.Close()
	if _, err := sub.Receive(ctx); err != nil { // the subscription confirmation
		t.Fatal(err)
	}
	if n, err := client.Publish(ctx, "phase", "draining").Result(); err != nil || n != 1 {
		t.Fatalf("PUBLISH = %d, %v; want 1 receiver", n, err)
	}
	msg, err := sub.ReceiveMessage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if msg.Channel != "phase" || msg.Payload != "draining" {
		t.Errorf("message = %s %q, want phase \"draining\"", msg.Channel, msg.Payload)
	}
}

func TestKillRestart(t *testing.T) {
	s := Start(t)
	addr := s.Addr()
	ctx := context.Background()
	client := newClient(t, s)
	if err := client.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}

	s.Kill(t)
	shortCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := client.Get(shortCtx, "k").Err(); err == nil {
		t.Error("GET succeeded after Kill")
	}
	if err := client.Ping(shortCtx).Err(); err == nil {
		t.Error("PING succeeded after Kill")
	}
	s.Kill(t) // killing twice is harmless

	s.Restart(t)
	if s.Addr() != addr {
		t.Errorf("Addr after Restart = %s, want %s", s.Addr(), addr)
	}
	if err := client.Get(ctx, "k").Err(); !errors.Is(err, redis.Nil) {
		t.Errorf("GET k after Restart = %v, want redis.Nil (empty server)", err)
	}
	if n, err := client.DBSize(ctx).Result(); err != nil || n != 0 {
		t.Errorf("DBSIZE after Restart = %d, %v; want 0", n, err)
	}
	if err := client.Set(ctx, "k", "v2", 0).Err(); err != nil {
		t.Errorf("SET after Restart: %v", err)
	}
}

func TestCleanupKillsServer(t *testing.T) {
	var pid int
	var dir string
	t.Run("server", func(t *testing.T) {
		s := Start(t)
		pid, dir = s.rd.Pid(), s.rd.Dir()
		if !alive(pid) {
			t.Fatalf("redis-server %d not running", pid)
		}
	})
	if pid == 0 {
		t.Skip("no server was started")
	}
	if alive(pid) {
		t.Errorf("redis-server %d still running after cleanup", pid)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("server directory %s still exists after cleanup (%v)", dir, err)
	}
}

// installHint is what the skip line says to install.
const installHint = "apt-get install redis-server"

// childEnv selects, in a subprocess of this test binary, which child test
// runs.
const childEnv = "TESTREDIS_CHILD"

func TestMissingBinary(t *testing.T) {
	for _, tc := range []struct {
		ci       string
		wantFail bool
		wantLine string
	}{
		{ci: "", wantFail: false, wantLine: "--- SKIP: TestChildMissingBinary"},
		{ci: "true", wantFail: true, wantLine: "--- FAIL: TestChildMissingBinary"},
	} {
		t.Run("CI="+tc.ci, func(t *testing.T) {
			// A PATH holding only an empty directory: the real lookup fails.
			cmd := child("TestChildMissingBinary", "missing", "CI="+tc.ci, "PATH="+t.TempDir())
			out, err := cmd.CombinedOutput()
			failed := err != nil
			if _, ok := err.(*exec.ExitError); err != nil && !ok {
				t.Fatal(err)
			}
			if failed != tc.wantFail {
				t.Errorf("child failed = %v, want %v", failed, tc.wantFail)
			}
			if !strings.Contains(string(out), tc.wantLine) {
				t.Errorf("child output lacks %q", tc.wantLine)
			}
			if n := strings.Count(string(out), installHint); n != 1 {
				t.Errorf("child output mentions %q %d times, want once", installHint, n)
			}
			if t.Failed() {
				t.Logf("child output:\n%s", out)
			}
		})
	}
}

func TestChildMissingBinary(t *testing.T) {
	if os.Getenv(childEnv) != "missing" {
		t.Skip("runs only as a subprocess of TestMissingBinary")
	}
	Start(t)
	t.Error("Start returned without redis-server")
}

// TestFailedTestShowsServerLog checks that a failing test gets the server
// log, read before Close removes it.
func TestFailedTestShowsServerLog(t *testing.T) {
	out, err := child("TestChildFailing", "failing").CombinedOutput()
	if strings.Contains(string(out), "--- SKIP: TestChildFailing") {
		t.Skip("no server was started")
	}
	if _, ok := err.(*exec.ExitError); !ok {
		t.Fatalf("child: %v, want a failure\n%s", err, out)
	}
	for _, want := range []string{"--- FAIL: TestChildFailing", "testredis: server log (", "Ready to accept connections"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("child output lacks %q", want)
		}
	}
	if t.Failed() {
		t.Logf("child output:\n%s", out)
	}
}

func TestChildFailing(t *testing.T) {
	if os.Getenv(childEnv) != "failing" {
		t.Skip("runs only as a subprocess of TestFailedTestShowsServerLog")
	}
	Start(t)
	t.Error("deliberate failure")
}

// child returns a command running one test of this binary with childEnv set
// to mode, plus env, without CI from our environment.
func child(test, mode string, env ...string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], "-test.run=^"+test+"$", "-test.v", "-test.count=1")
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "CI=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	// Without this a -race child sleeps a second before exiting.
	cmd.Env = append(cmd.Env, "GORACE="+strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0"), childEnv+"="+mode)
	cmd.Env = append(cmd.Env, env...)
	return cmd
}

// alive reports whether process pid exists and is not a zombie.
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(b)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	return len(fields) > 0 && fields[0] != "Z" && fields[0] != "X"
}
