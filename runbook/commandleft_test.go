package runbook

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ckanops/ckanops/api"
	"github.com/ckanops/ckanops/config"
)

// A command's "running" evidence says where it runs: its process group
// and the gate that started it, read back from the journal as well.
func TestCommandEvidenceNamesItsProcessGroup(t *testing.T) {
	site := newFakeSite(t)
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "pid")
	script := filepath.Join(dir, "migrate.sh")
	writeScript(t, script, "echo $$ > "+pidFile+"\n")
	e, o := testEngine(t, site, func(o *Options) {
		o.Holder = "gate-1"
		o.Migrate = []config.Command{{Name: "schema", Argv: []string{script}, Timeout: config.Duration{Duration: time.Minute}}}
	})
	if _, err := e.Start(context.Background(), api.RunbookOptions{AutoConfirm: true}, "x"); err != nil {
		t.Fatal(err)
	}
	if rb := waitFor(t, e, "the end", ended); rb.State != api.RunbookDone {
		t.Fatalf("state %s: %s", rb.State, rb.Error)
	}
	pid := readInt(t, pidFile)
	e = reopen(t, e, o)
	rb, _ := e.Current()
	var got *api.Evidence
	for i, ev := range rb.StepByName(api.StepMigrate).Evidence {
		if ev.Kind == api.EvidenceNote && strings.HasPrefix(ev.Summary, "running schema: ") {
			got = &rb.StepByName(api.StepMigrate).Evidence[i]
		}
	}
	if got == nil {
		t.Fatalf("no running evidence: %+v", rb.StepByName(api.StepMigrate).Evidence)
	}
	if n, ok := detailInt(got.Details[detailPGID]); !ok || n != pid || got.Details[detailGate] != "gate-1" {
		t.Errorf("details %v, want pgid %d on gate-1", got.Details, pid)
	}
}

// A gate that stopped without seeing its migrate command end (a crash, a
// SIGKILL: it never wrote the result) may have left it running. Resumed
// or retried, the step is not run again while its process group is there;
// started by another gate, it cannot be seen, so resume says how to check
// on that gate's host and retry (the operator's word) goes on, noted.
func TestRestartRefusesACommandLeftRunning(t *testing.T) {
	e := interruptedAtMigrate(t)

	// What a crash leaves: migrate's command started, no result.
	left := exec.Command("sleep", "60")
	left.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := left.Start(); err != nil {
		t.Fatal(err)
	}
	defer left.Process.Kill()
	pgid := left.Process.Pid
	leave := func(gate string) {
		e.mu.Lock()
		e.evidenceLocked(api.StepMigrate, api.Evidence{Kind: api.EvidenceNote, OK: true, Summary: "running schema: alembic upgrade head",
			Details: map[string]any{detailPGID: float64(pgid), detailGate: gate}})
		e.mu.Unlock()
	}
	leave("gate-1")
	pg := strconv.Itoa(pgid)
	for _, act := range []func(api.RunbookAction, string) (*api.Runbook, error){e.Resume, e.Retry} {
		_, err := act(api.RunbookAction{}, "x")
		if err == nil || !strings.Contains(err.Error(), "step migrate: its command schema: alembic upgrade head (process group "+pg+"), started by this gate before it stopped, is still running") ||
			!strings.Contains(err.Error(), "kill -TERM -- -"+pg) || !strings.HasSuffix(err.Error(), "ckanops runbook prod --resume") {
			t.Errorf("with the group running: %v", err)
		}
	}
	if rb, _ := e.Current(); rb.State != api.RunbookInterrupted {
		t.Fatalf("state %s", rb.State)
	}

	// Started by another gate: resume refuses, retry goes on.
	leave("gate-2")
	_, err := e.Resume(api.RunbookAction{}, "x")
	if err == nil || !strings.Contains(err.Error(), "its command schema: alembic upgrade head was started by gate gate-2 (process group "+pg+"), which stopped without seeing it end: it may still be running on that gate's host") ||
		!strings.HasSuffix(err.Error(), "once it is not running: ckanops runbook prod --retry") {
		t.Errorf("another gate's, resumed: %v", err)
	}

	// Its own, gone: resume goes on and runs the step.
	left.Process.Kill()
	left.Wait()
	leave("gate-1")
	if _, err := e.Resume(api.RunbookAction{}, "x"); err != nil {
		t.Fatalf("with the group gone: %v", err)
	}
	waitFor(t, e, "migrate's confirmation", waitingAt(api.StepMigrate))
	if _, err := e.Abort(context.Background(), api.RunbookAction{}, "x"); err != nil {
		t.Fatal(err)
	}
}

// Retried by the operator after checking another gate's host, the step
// runs and its evidence keeps what could not be checked.
func TestRetryGoesOnPastAnotherGatesCommand(t *testing.T) {
	e := interruptedAtMigrate(t)
	e.mu.Lock()
	e.evidenceLocked(api.StepMigrate, api.Evidence{Kind: api.EvidenceNote, OK: true, Summary: "running schema: true",
		Details: map[string]any{detailPGID: float64(999999), detailGate: "gate-2"}})
	e.mu.Unlock()
	if _, err := e.Retry(api.RunbookAction{}, "ops"); err != nil {
		t.Fatal(err)
	}
	rb := confirmToTheEnd(t, e) // stop_before holds every step from migrate on
	if rb.State != api.RunbookDone {
		t.Fatalf("state %s: %s", rb.State, rb.Error)
	}
	found := false
	for _, ev := range rb.StepByName(api.StepMigrate).Evidence {
		found = found || ev.Summary == "step migrate: its command schema: true was started by gate gate-2 (process group 999999), which stopped without seeing it end; it may still have been running there; retried by ops"
	}
	if !found {
		t.Errorf("evidence %+v", rb.StepByName(api.StepMigrate).Evidence)
	}
}

// interruptedAtMigrate is the engine of gate-1, reopened with its runbook
// interrupted before migrate (whose command is true).
func interruptedAtMigrate(t *testing.T) *Engine {
	t.Helper()
	site := newFakeSite(t)
	e, o := testEngine(t, site, func(o *Options) {
		o.Holder = "gate-1"
		o.Migrate = []config.Command{{Name: "schema", Argv: []string{"true"}, Timeout: config.Duration{Duration: time.Minute}}}
	})
	if _, err := e.Start(context.Background(), api.RunbookOptions{AutoConfirm: true, StopBefore: api.StepMigrate}, "x"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, e, "the stop", waitingAt(api.StepMigrate))
	e = reopen(t, e, o)
	return e
}

// confirmToTheEnd confirms every step the runbook waits at (typing the
// site's name) until it ends, and returns it.
func confirmToTheEnd(t *testing.T, e *Engine) *api.Runbook {
	t.Helper()
	rb := waitFor(t, e, "a stop or the end", func(rb *api.Runbook) bool { return ended(rb) || rb.State == api.RunbookWaiting })
	for rb.State == api.RunbookWaiting {
		step := rb.Waiting.Step
		if _, err := e.Confirm(api.RunbookAction{Step: step, SiteName: "prod"}, "x"); err != nil {
			t.Fatal(err)
		}
		rb = waitFor(t, e, "past "+step, func(rb *api.Runbook) bool {
			return ended(rb) || rb.State == api.RunbookWaiting && rb.Waiting.Step != step
		})
	}
	return rb
}

func readInt(t *testing.T, path string) int {
	t.Helper()
	var n int
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		b, err := os.ReadFile(path)
		if err == nil {
			if n, err = strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
				return n
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", path, err)
		}
	}
}
