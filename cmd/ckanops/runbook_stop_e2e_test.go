package main

// A runbook that stops (a failed step, an interrupted runbook) never
// leaves `ckanops runbook` hanging: without a terminal or with --yes it
// exits 1 at once and says how to go on; on a terminal it asks. Ctrl-C at
// a prompt detaches at once.

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ckanops/ckanops/api"
)

// failingMigration fails until the file fixed exists.
func failingMigration(fixed string) string {
	return `["sh", "-c", "echo migrating; if [ -e ` + fixed + ` ]; then echo fixed; else echo 'relation \"package\" is locked' >&2; exit 3; fi"]`
}

func TestRunbookCLIFailedStepExitsAtOnce(t *testing.T) {
	fixed := filepath.Join(t.TempDir(), "fixed")
	s := runbookSiteMigrating(t, failingMigration(fixed))
	code, out, errb := s.cli("runbook", "--yes", "e2e")
	if code != 1 {
		t.Fatalf("exit %d, want 1\n%s\n%s", code, out, errb)
	}
	for _, want := range []string{"step migrate failed", "the site is read-only", "Next, one of:",
		"ckanops runbook e2e --retry", "ckanops runbook e2e --skip migrate", "ckanops runbook e2e --abort", "ckanops runbook e2e --disable-now"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	// The same without --yes and without a terminal (answers on stdin):
	// attaching to the failed runbook ends at once too.
	code, out, errb = s.cliIn("e2e\n", "runbook", "e2e")
	if code != 1 || !strings.Contains(out, "attaching to runbook") || !strings.Contains(out, "step migrate failed") {
		t.Fatalf("attach to the failed runbook: exit %d\n%s\n%s", code, out, errb)
	}
	// --json ends with a "stopped" event.
	code, out, _ = s.cli("runbook", "--json", "e2e")
	if code != 1 {
		t.Fatalf("--json: exit %d", code)
	}
	var last api.RunbookEvent
	for sc := bufio.NewScanner(strings.NewReader(out)); sc.Scan(); {
		if err := json.Unmarshal(sc.Bytes(), &last); err != nil {
			t.Fatalf("not a JSON event: %s", sc.Text())
		}
	}
	if last.Kind != api.EventStopped || last.State != string(api.RunbookFailed) || last.Step != api.StepMigrate ||
		!strings.Contains(last.Message, "--disable-now") {
		t.Fatalf("last event %+v", last)
	}
	// Fixed: --retry goes on to the end.
	os.WriteFile(fixed, nil, 0o644)
	if code, out, errb := s.cli("runbook", "--retry", "--yes", "e2e"); code != 0 || !strings.Contains(out, "DONE") {
		t.Fatalf("retry: exit %d\n%s\n%s", code, out, errb)
	}
}

func TestRunbookCLIInconsistentSnapshotExits(t *testing.T) {
	// A writer behind the gate's back during the snapshot: the storage
	// changes while it is archived.
	s := runbookSiteMigrating(t, `["true"]`)
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			os.WriteFile(filepath.Join(s.dir, "storage", "resources", "abc", "data.csv"), []byte(fmt.Sprintf("a,b\n%d,2\n", i)), 0o644)
			time.Sleep(time.Millisecond)
		}
	}()
	code, out, errb := s.cli("runbook", "--yes", "e2e")
	close(stop)
	<-done
	if code != 1 {
		t.Fatalf("exit %d, want 1\n%s\n%s", code, out, errb)
	}
	if !strings.Contains(out, "inconsistent") {
		t.Fatalf("the output does not say the snapshot is inconsistent:\n%s", out)
	}
}

// waitCount waits until the screen holds want n times.
func waitCount(t *testing.T, xs tmux, want string, n int) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for strings.Count(xs.screen(), want) < n {
		if time.Now().After(deadline) {
			t.Fatalf("the screen never showed %q %d times; it shows:\n%s", want, n, xs.screen())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// runInTmux runs the CLI in a terminal; the shell prints EXIT=<status>
// when it ends.
func runInTmux(t *testing.T, s *site, args string) tmux {
	requireTmux(t)
	name := fmt.Sprintf("ckanops-rb-%d-%s", os.Getpid(), strings.ReplaceAll(t.Name(), "/", "-"))
	xs := tmux{t: t, sock: name, session: name}
	xs.run("new-session", "-d", "-s", name, "-x", "150", "-y", "50",
		fmt.Sprintf("CKANOPS_CONFIG=%s %s %s; echo EXIT=$?; sleep 600", s.sites, binPath, args))
	t.Cleanup(func() { exec.Command("tmux", "-L", name, "kill-server").Run() })
	return xs
}

func TestRunbookCLIAsksOnATerminalWhenAStepFails(t *testing.T) {
	s := runbookSiteMigrating(t, failingMigration(filepath.Join(t.TempDir(), "fixed")))
	xs := runInTmux(t, s, "runbook e2e")
	xs.waitScreen("Type the site's name (e2e) to confirm")
	xs.keys(true, "e2e")
	xs.keys(false, "Enter")
	// The second prompt is migrate's.
	waitCount(t, xs, "Type the site's name (e2e) to confirm", 2)
	xs.keys(true, "e2e")
	xs.keys(false, "Enter")
	xs.waitScreen("[r]etry, [s]kip, [a]bort, or [d]etach (default)?")
	if !strings.Contains(xs.screen(), "step migrate failed") || !strings.Contains(xs.screen(), "the site is read-only") {
		t.Fatalf("the prompt does not say what failed:\n%s", xs.screen())
	}
	// Skip it: the runbook goes on to disable, which asks y/N.
	xs.keys(true, "s")
	xs.keys(false, "Enter")
	xs.waitScreen("Go on? [y/N]")
	xs.keys(true, "y")
	xs.keys(false, "Enter")
	xs.waitScreen("EXIT=0")
}

func TestRunbookCLICtrlCAtAPromptDetaches(t *testing.T) {
	s := runbookSite(t)
	xs := runInTmux(t, s, "runbook e2e")
	xs.waitScreen("Type the site's name (e2e) to confirm")
	xs.keys(false, "C-c")
	xs.waitScreen("EXIT=130")
	if !strings.Contains(xs.screen(), "detached: nothing was changed") {
		t.Fatalf("Ctrl-C did not say it detached:\n%s", xs.screen())
	}
	if code, out, _ := s.cli("status", "--json", "e2e"); code != 0 || !strings.Contains(out, `"mode": "live"`) {
		t.Fatalf("Ctrl-C changed the site: %s", out)
	}
}

// A journal that cannot be opened makes the runbook unavailable, not the
// gate: the proxy and the mode go on, and the runbook API says why.
func TestGateServesWhenItsRunbookJournalCannotBeOpened(t *testing.T) {
	s := newSite(t)
	blocker := filepath.Join(s.dir, "not-a-dir")
	os.WriteFile(blocker, []byte("x"), 0o600)
	f, err := os.OpenFile(s.gateConf, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("\n[runbook]\njournal_dir = \"not-a-dir/journal\"\n")
	f.Close()
	s.startGate()
	if code := s.write("still-served"); code != 200 {
		t.Fatalf("a write through the live gate: %d\n%s", code, s.logs)
	}
	code, _, errb := s.cli("runbook", "--yes", "e2e")
	if code != 1 || !strings.Contains(errb, "the runbook is unavailable on this gate") || !strings.Contains(errb, "not-a-dir") {
		t.Fatalf("runbook: exit %d: %s", code, errb)
	}
	if code, out, _ := s.cli("enable", "e2e"); code != 0 {
		t.Fatalf("the mode cannot be changed without the runbook: %d %s", code, out)
	}
	if code, out, _ := s.cli("check", "e2e"); code != 2 || !strings.Contains(out, "the runbook is unavailable on this gate") {
		t.Errorf("check: exit %d, want 2 with the gate probe failing:\n%s", code, out)
	}
	if !strings.Contains(s.logs.String(), "runbook unavailable") {
		t.Errorf("the log does not say it:\n%s", s.logs)
	}
}
