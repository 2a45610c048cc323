package throwaway

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// shell starts sh -c script through StartProcess, logging to log (in a fresh
// directory when ""), and kills its group at the end of the test.
func shell(t *testing.T, log, script string) *Process {
	t.Helper()
	if log == "" {
		log = filepath.Join(t.TempDir(), "server.log")
	}
	p, err := StartProcess(exec.Command("/bin/sh", "-c", script), log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Stop(syscall.SIGKILL, 5*time.Second) })
	return p
}

// waitFor polls cond for up to 10 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestStartOwnGroupAndLog(t *testing.T) {
	log := filepath.Join(t.TempDir(), "server.log")
	if err := os.WriteFile(log, []byte("earlier run\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	p := shell(t, log, "echo out; echo err >&2; exec sleep 60")
	if pgid, err := syscall.Getpgid(p.Pid()); err != nil || pgid != p.Pid() {
		t.Errorf("process group of %d = %d, %v; want its own", p.Pid(), pgid, err)
	}
	waitFor(t, "the output", func() bool { return strings.Contains(p.Log(), "err") })
	if got := p.Log(); got != "out\nerr" {
		t.Errorf("Log() = %q, want %q (this run only)", got, "out\nerr")
	}
	if got := ReadLog(log, 0); got != "earlier run\nout\nerr" {
		t.Errorf("log file = %q, want the earlier run kept", got)
	}
}

func TestStartKeepsCredentialAndFailsCleanly(t *testing.T) {
	cmd := exec.Command("/bin/sh", "-c", "exec sleep 60")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{
		Uid: uint32(os.Getuid()), Gid: uint32(os.Getgid()), NoSetGroups: true, // allowed to anyone
	}}
	p, err := StartProcess(cmd, filepath.Join(t.TempDir(), "server.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Stop(syscall.SIGKILL, 5*time.Second)
	if a := cmd.SysProcAttr; a.Credential == nil || !a.Setpgid || a.Pdeathsig != syscall.SIGKILL {
		t.Errorf("SysProcAttr = %+v, want Credential kept, Setpgid and Pdeathsig set", a)
	}

	if _, err := StartProcess(exec.Command(filepath.Join(t.TempDir(), "absent")), filepath.Join(t.TempDir(), "log")); err == nil {
		t.Error("StartProcess of a missing binary succeeded")
	}
	if _, err := StartProcess(exec.Command("/bin/true"), filepath.Join(t.TempDir(), "no", "such", "dir", "log")); err == nil {
		t.Error("StartProcess with an unwritable log succeeded")
	}
}

func TestStopGracefulSignal(t *testing.T) {
	p := shell(t, "", "exec sleep 60")
	began := time.Now()
	if err := p.Stop(syscall.SIGTERM, 5*time.Second); err != nil {
		t.Errorf("Stop(SIGTERM) = %v, want nil", err)
	}
	if d := time.Since(began); d > 2*time.Second {
		t.Errorf("Stop took %v for a process that exits on SIGTERM", d)
	}
	if err := p.Stop(syscall.SIGTERM, 5*time.Second); err != nil {
		t.Errorf("second Stop = %v, want nil", err)
	}
}

// TestStopKillsGroup checks that a process ignoring the signal is killed
// after the timeout, along with the rest of its group.
func TestStopKillsGroup(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGKILL} {
		t.Run(sig.String(), func(t *testing.T) {
			// The shell ignores SIGTERM, and so does its child, which it
			// waits for: only the SIGKILL of the group ends them.
			p := shell(t, "", "trap '' TERM; sleep 60 & echo child=$!; wait")
			var child int
			waitFor(t, "the child's pid", func() bool {
				_, err := fmt.Sscanf(p.Log(), "child=%d", &child)
				return err == nil
			})
			err := p.Stop(sig, 200*time.Millisecond)
			if sig == syscall.SIGKILL && err != nil {
				t.Errorf("Stop(SIGKILL) = %v, want nil", err)
			}
			if sig != syscall.SIGKILL && (err == nil || !strings.Contains(err.Error(), "killed it")) {
				t.Errorf("Stop(%v) = %v, want an error saying it was killed", sig, err)
			}
			if alive(p.Pid()) {
				t.Errorf("process %d alive after Stop", p.Pid())
			}
			// The child is reparented, then reaped, by init or a subreaper.
			waitFor(t, "the child to die", func() bool { return !alive(child) })
		})
	}
}

func TestWaitReady(t *testing.T) {
	t.Run("ready", func(t *testing.T) {
		p := shell(t, "", "exec sleep 60")
		var calls atomic.Int32
		err := p.WaitReady(5*time.Second, time.Millisecond, func() error {
			if calls.Add(1) < 3 {
				return errors.New("not yet")
			}
			return nil
		})
		if err != nil || calls.Load() != 3 {
			t.Errorf("WaitReady = %v after %d calls, want nil after 3", err, calls.Load())
		}
	})
	t.Run("exited", func(t *testing.T) {
		p := shell(t, "", "exit 3")
		err := p.WaitReady(5*time.Second, time.Millisecond, func() error { return errors.New("not yet") })
		if err == nil || !strings.Contains(err.Error(), "server exited: exit status 3") {
			t.Errorf("WaitReady = %v, want the exit status", err)
		}
		if err := p.Stop(syscall.SIGTERM, time.Second); err != nil {
			t.Errorf("Stop of an exited process = %v, want nil", err)
		}
	})
	t.Run("timeout", func(t *testing.T) {
		p := shell(t, "", "exec sleep 60")
		err := p.WaitReady(100*time.Millisecond, 10*time.Millisecond, func() error { return errors.New("refused") })
		if err == nil || !strings.Contains(err.Error(), "not ready after 100ms: refused") {
			t.Errorf("WaitReady = %v, want a timeout with the last error", err)
		}
	})
}

func TestReadLog(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log")
	if err := os.WriteFile(path, []byte("  one\ntwo\nthree\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		off  int64
		want string
	}{
		{0, "one\ntwo\nthree"},
		{6, "two\nthree"},
		{-6, "three"},
		{-1000, "one\ntwo\nthree"}, // shorter than asked: all of it
		{1000, "one\ntwo\nthree"},  // truncated since: all of it
	} {
		if got := ReadLog(path, tc.off); got != tc.want {
			t.Errorf("ReadLog(%d) = %q, want %q", tc.off, got, tc.want)
		}
	}
	if got := ReadLog(filepath.Join(t.TempDir(), "absent"), 0); got != "" {
		t.Errorf("ReadLog of a missing file = %q, want empty", got)
	}
}

func TestStartOnFreePort(t *testing.T) {
	taken := fmt.Errorf("bind: %w", ErrPortTaken)
	t.Run("retries while taken", func(t *testing.T) {
		var ports []int
		err := StartOnFreePort(5, func(port int) error {
			ports = append(ports, port)
			if len(ports) < 3 {
				return taken
			}
			return nil
		})
		if err != nil || len(ports) != 3 {
			t.Errorf("StartOnFreePort = %v after %d tries, want nil after 3", err, len(ports))
		}
		for _, p := range ports {
			if p <= 0 || p > 65535 {
				t.Errorf("port %d", p)
			}
		}
	})
	t.Run("gives up", func(t *testing.T) {
		n := 0
		err := StartOnFreePort(4, func(int) error { n++; return taken })
		if !errors.Is(err, ErrPortTaken) || n != 4 {
			t.Errorf("StartOnFreePort = %v after %d tries, want ErrPortTaken after 4", err, n)
		}
	})
	t.Run("other error", func(t *testing.T) {
		n := 0
		boom := errors.New("boom")
		err := StartOnFreePort(4, func(int) error { n++; return boom })
		if err != boom || n != 1 {
			t.Errorf("StartOnFreePort = %v after %d tries, want boom after 1", err, n)
		}
	})
}

func TestRetryPortTaken(t *testing.T) {
	taken := fmt.Errorf("bind: %w", ErrPortTaken)
	t.Run("frees", func(t *testing.T) {
		n := 0
		err := RetryPortTaken(5*time.Second, func() error {
			if n++; n < 3 {
				return taken
			}
			return nil
		})
		if err != nil || n != 3 {
			t.Errorf("RetryPortTaken = %v after %d tries, want nil after 3", err, n)
		}
	})
	t.Run("times out", func(t *testing.T) {
		began := time.Now()
		err := RetryPortTaken(250*time.Millisecond, func() error { return taken })
		if !errors.Is(err, ErrPortTaken) {
			t.Errorf("RetryPortTaken = %v, want ErrPortTaken", err)
		}
		if d := time.Since(began); d < 250*time.Millisecond || d > 2*time.Second {
			t.Errorf("RetryPortTaken gave up after %v, want about 250ms", d)
		}
	})
	t.Run("other error", func(t *testing.T) {
		n := 0
		boom := errors.New("boom")
		if err := RetryPortTaken(5*time.Second, func() error { n++; return boom }); err != boom || n != 1 {
			t.Errorf("RetryPortTaken = %v after %d tries, want boom after 1", err, n)
		}
	})
}

// childEnv selects, in a subprocess of this test binary, which child test
// runs.
const childEnv = "THROWAWAY_CHILD"

// TestParentDeathKillsProcess kills a program that has a process running
// and checks that the process dies with it.
func TestParentDeathKillsProcess(t *testing.T) {
	cmd := exec.Command(os.Args[0], "-test.run=^TestChildParentDeath$", "-test.v", "-test.count=1")
	// Without GORACE a -race child sleeps a second before exiting.
	cmd.Env = append(os.Environ(), childEnv+"=parent-death", "GORACE="+strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0"))
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	defer cmd.Process.Kill()

	var pid int
	var output strings.Builder
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		output.WriteString(sc.Text() + "\n")
		if _, err := fmt.Sscanf(sc.Text(), "PROCESS pid=%d", &pid); err == nil {
			break
		}
	}
	if pid == 0 {
		cmd.Wait()
		t.Fatalf("child did not report a process:\n%s", output.String())
	}
	if !alive(pid) {
		t.Fatalf("process %d not running", pid)
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	deadline := time.Now().Add(10 * time.Second)
	for alive(pid) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if alive(pid) {
		t.Errorf("process %d survived its parent", pid)
		syscall.Kill(pid, syscall.SIGKILL)
	}
}

func TestChildParentDeath(t *testing.T) {
	if os.Getenv(childEnv) != "parent-death" {
		t.Skip("runs only as a subprocess of TestParentDeathKillsProcess")
	}
	p, err := StartProcess(exec.Command("sleep", "60"), filepath.Join(t.TempDir(), "log"))
	if err != nil {
		t.Fatal(err)
	}
	fmt.Printf("PROCESS pid=%d\n", p.Pid())
	time.Sleep(time.Minute) // the parent kills us long before
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
