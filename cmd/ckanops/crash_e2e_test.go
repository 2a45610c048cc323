package main

import (
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ckanops/ckanops/internal/ckansim"
)

// A gate killed while its migrate command runs (SIGKILL: it cannot end the
// command, nor write its result) leaves the command running. Restarted,
// it does not run the migration a second time beside the first: --resume
// is refused with the process group and how to end it; once it has
// ended, --resume runs the step again and the runbook finishes.
func TestRunbookResumeAfterACrashWaitsForTheMigration(t *testing.T) {
	dir := t.TempDir()
	pidFile, ran := filepath.Join(dir, "pid"), filepath.Join(dir, "ran")
	script := filepath.Join(dir, "migrate.sh")
	// The first run records its pid (its process group's) and sleeps; the
	// second finishes at once.
	body := "#!/bin/sh\n[ -e " + ran + " ] && exit 0\ntouch " + ran + "\necho $$ > " + pidFile + ".tmp && mv " + pidFile + ".tmp " + pidFile + "\nexec sleep 60\n"
	if err := os.WriteFile(script, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	s := runbookSiteMigrating(t, "["+strconv.Quote(script)+"]")

	run := exec.Command(binPath, "runbook", "--yes", "e2e")
	run.Env = append(os.Environ(), "CKANOPS_CONFIG="+s.sites)
	if err := run.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { run.Process.Kill(); run.Wait() })
	var pgid int
	for deadline := time.Now().Add(30 * time.Second); pgid == 0; time.Sleep(20 * time.Millisecond) {
		if b, err := os.ReadFile(pidFile); err == nil {
			pgid, _ = strconv.Atoi(strings.TrimSpace(string(b)))
		}
		if time.Now().After(deadline) {
			t.Fatalf("the migration did not start; gate log:\n%s", s.logs)
		}
	}
	t.Cleanup(func() { syscall.Kill(-pgid, syscall.SIGKILL) })

	s.cmd.Process.Signal(syscall.SIGKILL)
	s.cmd.Wait()
	if err := syscall.Kill(-pgid, 0); err != nil {
		t.Fatalf("the migration did not outlive the gate (%v): the test shows nothing", err)
	}
	s.startGate()
	code, out, errb := s.cli("runbook", "--resume", "--yes", "e2e")
	pg := strconv.Itoa(pgid)
	if code == 0 || !strings.Contains(out+errb, "started by this gate before it stopped, is still running") || !strings.Contains(out+errb, "kill -TERM -- -"+pg) {
		t.Fatalf("resume beside the running migration: exit %d\n%s\n%s", code, out, errb)
	}

	// On a terminal, the refusal is shown and the question asked again.
	xs := runInTmux(t, s, "runbook e2e")
	prompt := "r[e]sume, [r]etry, [s]kip, [a]bort, or [d]etach (default)?"
	xs.waitScreen(prompt)
	xs.keys(true, "e")
	xs.keys(false, "Enter")
	xs.waitScreen("refused: step migrate: its command schema: ")
	waitCount(t, xs, prompt, 2)

	syscall.Kill(-pgid, syscall.SIGTERM)
	for deadline := time.Now().Add(10 * time.Second); syscall.Kill(-pgid, 0) == nil; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the migration did not end")
		}
	}
	// Ended: resumed, the migration runs again and the runbook (started
	// with --yes) goes on to the end.
	xs.keys(true, "e")
	xs.keys(false, "Enter")
	xs.waitScreen("EXIT=0")
	if !strings.Contains(xs.screen(), "migrate   DONE") || !strings.Contains(xs.screen(), "disable   DONE") {
		t.Fatalf("the resumed runbook:\n%s", xs.screen())
	}
}

// A request that outlasts [gate] shutdown_timeout does not hold a stopping
// gate: after the timeout the gate closes it, says so in its log, and
// exits; the client gets an error, not a hang.
func TestSIGTERMGivesUpAfterShutdownTimeout(t *testing.T) {
	s := newSite(t)
	b, err := os.ReadFile(s.gateConf)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(s.gateConf, []byte(strings.Replace(string(b), `shutdown_timeout = "5s"`, `shutdown_timeout = "1s"`, 1)), 0o600)
	s.startGate()
	s.sim.SetLatency(0, time.Minute)
	done := make(chan error, 1)
	go func() {
		req, _ := http.NewRequest("POST", s.gateURL+"/api/3/action/package_create", strings.NewReader(`{"name": "slow", "owner_org": "demo-org"}`))
		req.Header.Set("Authorization", ckansim.SysadminToken)
		req.Header.Set("Content-Type", "application/json")
		res, err := http.DefaultClient.Do(req)
		if err == nil {
			res.Body.Close()
		}
		done <- err
	}()
	for i := 0; i < 500 && len(clientRequests(s.sim)) == 0; i++ {
		time.Sleep(10 * time.Millisecond)
	}
	s.cmd.Process.Signal(syscall.SIGTERM)
	exited := make(chan error, 1)
	go func() { exited <- s.cmd.Wait() }()
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("gate exit: %v\n%s", err, s.logs)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("the gate waited on a request past shutdown_timeout (1s):\n%s", s.logs)
	}
	if err := <-done; err == nil {
		t.Error("the request held past the shutdown answered as if whole")
	}
	if !strings.Contains(s.logs.String(), "shutdown timeout: closing the requests still in flight") {
		t.Errorf("the log does not say it cut requests off:\n%s", s.logs)
	}
}
