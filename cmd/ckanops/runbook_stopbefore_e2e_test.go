package main

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ckanops/ckanops/api"
)

// A scripted A/B upgrade's legs against a real gate process, each with
// --yes: up to the snapshot (the site read-only, migrate not run), then
// migrate and verify (still read-only), then the rest.
func TestRunbookCLIStopBeforeMigrate(t *testing.T) {
	marker := filepath.Join(t.TempDir(), "migrated")
	s := runbookSiteMigrating(t, `["touch", "`+marker+`"]`)
	migrated := func() bool { _, err := os.Stat(marker); return err == nil }

	code, out, errb := s.cli("runbook", "e2e", "--yes", "--stop-before", "migrate", "--message", "Upgrading")
	if code != 0 {
		t.Fatalf("exit %d\n%s\n%s\ngate log:\n%s", code, out, errb, s.logs)
	}
	t.Logf("first leg:\n%s", out)
	for _, want := range []string{"stopped before migrate, as asked (stop_before migrate); the site is read-only",
		"ckanops runbook e2e --yes ", "ckanops runbook e2e --yes --stop-before STEP", "go on, and stop again before STEP: verify, disable",
		"ckanops runbook e2e --disable-now", "WAITING"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	m := snapshotLine.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no consistent snapshot in the output:\n%s", out)
	}
	if _, err := os.Stat(filepath.Join(m[1], "manifest.json")); err != nil {
		t.Fatalf("the snapshot: %v", err)
	}
	if migrated() {
		t.Fatal("migrate ran")
	}
	if got := s.mode(t); got != api.ModeReadOnly {
		t.Fatalf("mode %s after --stop-before migrate", got)
	}
	if code := s.write("during-stop"); code != http.StatusServiceUnavailable {
		t.Errorf("a write while stopped: %d", code)
	}
	rb := s.runbook(t)
	if rb.State != api.RunbookWaiting || rb.Waiting == nil || !rb.Waiting.Stop || rb.Waiting.Step != api.StepMigrate || rb.Options.StopBefore != api.StepMigrate {
		t.Fatalf("runbook %+v waiting %+v", rb, rb.Waiting)
	}

	// Going on with a new stop: migrate and verify run, disable does not.
	code, out, errb = s.cli("runbook", "e2e", "--yes", "--stop-before", "disable")
	if code != 0 {
		t.Fatalf("second leg: exit %d\n%s\n%s", code, out, errb)
	}
	if !migrated() || !strings.Contains(out, "stopped before disable, as asked (stop_before disable)") {
		t.Fatalf("second leg: migrated %v\n%s", migrated(), out)
	}
	if got := s.mode(t); got != api.ModeReadOnly {
		t.Fatalf("mode %s before disable", got)
	}
	// Asking again for the stop it waits at changes nothing and says so.
	if code, out, _ = s.cli("runbook", "e2e", "--yes", "--until", "verify"); code != 0 || !strings.Contains(out, "stopped before disable") {
		t.Fatalf("--until verify at the stop: exit %d\n%s", code, out)
	}
	if got := s.mode(t); got != api.ModeReadOnly {
		t.Fatalf("mode %s after --until verify", got)
	}

	code, out, errb = s.cli("runbook", "e2e", "--yes")
	if code != 0 || !strings.Contains(out, "DONE") {
		t.Fatalf("last leg: exit %d\n%s\n%s", code, out, errb)
	}
	if got := s.mode(t); got != api.ModeLive {
		t.Fatalf("mode %s at the end", got)
	}
}

// --until snapshot with --skip-migrate and --json: the runbook stops
// before verify (the next step that runs), read-only, and the command's
// last line is a "stopped" event that names the commands to go on.
func TestRunbookCLIUntilSnapshotSkipMigrateJSON(t *testing.T) {
	s := runbookSite(t)
	code, out, errb := s.cli("runbook", "--yes", "--json", "--skip-migrate", "--until", "snapshot", "e2e")
	if code != 0 {
		t.Fatalf("exit %d\n%s\n%s\ngate log:\n%s", code, out, errb, s.logs)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	var last api.RunbookEvent
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &last); err != nil {
		t.Fatalf("last line %q: %v", lines[len(lines)-1], err)
	}
	if last.Kind != api.EventStopped || last.State != string(api.RunbookWaiting) || last.Step != api.StepVerify ||
		!strings.Contains(last.Message, "stop_before migrate") || !strings.Contains(last.Message, "ckanops runbook e2e --yes") {
		t.Fatalf("last event %+v", last)
	}
	if got := s.mode(t); got != api.ModeReadOnly {
		t.Fatalf("mode %s: --skip-migrate --until snapshot must not reopen", got)
	}
	rb := s.runbook(t)
	if rb.StepByName(api.StepSnapshot).State != api.StepDone || rb.StepByName(api.StepMigrate).State != api.StepSkipped ||
		rb.StepByName(api.StepVerify).State != api.StepWaiting {
		t.Fatalf("steps %+v", rb.Steps)
	}
	// --abort leaves it read-only, as the stop said.
	if code, out, _ := s.cli("runbook", "e2e", "--abort"); code != 1 || s.mode(t) != api.ModeReadOnly {
		t.Fatalf("--abort: exit %d, mode %s\n%s", code, s.mode(t), out)
	}
}

// Bad step names and bad combinations are usage errors naming the steps,
// before any gate is called.
func TestRunbookStopFlagsUsage(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"runbook", "e2e", "--stop-before", "migration"}, "give one of enable, drain, snapshot, migrate, verify, disable"},
		{[]string{"runbook", "e2e", "--stop-before", "preflight"}, "give one of enable, drain, snapshot, migrate, verify, disable"},
		{[]string{"runbook", "e2e", "--until", "snap"}, "give one of preflight, enable, drain, snapshot, migrate, verify, disable"},
		{[]string{"runbook", "e2e", "--until", "snapshot", "--stop-before", "migrate"}, "not both"},
		{[]string{"runbook", "e2e", "--stop-before", "migrate", "--abort"}, "not with --retry"},
		{[]string{"runbook", "e2e", "--until", "verify", "--skip", "migrate"}, "not with --retry"},
	} {
		code, errOut := dryRun(t, tc.args)
		if code != exitUsage || !strings.Contains(errOut, tc.want) {
			t.Errorf("%q: exit %d, want %d and %q:\n%s", tc.args, code, exitUsage, tc.want, errOut)
		}
	}
	for _, args := range [][]string{
		{"runbook", "e2e", "--yes", "--stop-before", "migrate"},
		{"runbook", "e2e", "--until", "disable"},
		{"runbook", "e2e", "--skip-migrate", "--until", "snapshot", "--json"},
	} {
		if code, errOut := dryRun(t, args); code != 0 {
			t.Errorf("%q: exit %d\n%s", args, code, errOut)
		}
	}
	for until, stop := range map[string]string{"preflight": "enable", "snapshot": "migrate", "verify": "disable", "disable": ""} {
		if got, err := stopFlags("", until, api.Steps); err != nil || got != stop {
			t.Errorf("--until %s: stop before %q, %v; want %q", until, got, err, stop)
		}
	}
}

// mode is the site's mode, as the gate's status says.
func (s *site) mode(t *testing.T) api.Mode {
	t.Helper()
	code, out, errb := s.cli("status", "--json", "e2e")
	if code != 0 {
		t.Fatalf("status: exit %d\n%s\n%s", code, out, errb)
	}
	var st []struct {
		Status struct {
			Mode api.Mode `json:"mode"`
		} `json:"status"`
	}
	if err := json.Unmarshal([]byte(out), &st); err != nil || len(st) != 1 {
		t.Fatalf("status %q: %v", out, err)
	}
	return st[0].Status.Mode
}

// runbook is the site's current runbook, from the gate's API.
func (s *site) runbook(t *testing.T) *api.Runbook {
	t.Helper()
	req, _ := http.NewRequest("GET", s.gateURL+api.PathRunbook, nil)
	req.Header.Set("Authorization", "Bearer "+e2eToken)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var rb api.Runbook
	if err := json.NewDecoder(res.Body).Decode(&rb); err != nil {
		t.Fatal(err)
	}
	return &rb
}

// Without --yes: the command asks as always (the site's name for enable),
// stops before migrate instead of asking for it, and exits 0; run again,
// it asks for migrate and disable, and the runbook finishes.
func TestRunbookCLIStopBeforeInteractive(t *testing.T) {
	marker := filepath.Join(t.TempDir(), "migrated")
	s := runbookSiteMigrating(t, `["touch", "`+marker+`"]`)
	code, out, errb := s.cliIn("e2e\n", "runbook", "e2e", "--until", "snapshot")
	if code != 0 || !strings.Contains(out, "Type the site's name (e2e) to confirm") || !strings.Contains(out, "stopped before migrate, as asked") {
		t.Fatalf("exit %d\n%s\n%s", code, out, errb)
	}
	if _, err := os.Stat(marker); err == nil || s.mode(t) != api.ModeReadOnly {
		t.Fatalf("after --until snapshot: migrated %v, mode %s", err == nil, s.mode(t))
	}
	code, out, errb = s.cliIn("e2e\ny\n", "runbook", "e2e")
	if code != 0 || !strings.Contains(out, "Stopped before migrate, as asked") || !strings.Contains(out, "Go on? [y/N]") || !strings.Contains(out, "DONE") {
		t.Fatalf("going on: exit %d\n%s\n%s", code, out, errb)
	}
	if _, err := os.Stat(marker); err != nil || s.mode(t) != api.ModeLive {
		t.Fatalf("at the end: migrated %v, mode %s", err == nil, s.mode(t))
	}
}
