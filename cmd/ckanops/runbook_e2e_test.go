package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ckanops/ckanops/api"
)

// runbookSite is an e2e site whose gate can run a runbook: a storage
// directory, a snapshot directory and one [[migrate]] command.
func runbookSite(t *testing.T) *site {
	return runbookSiteMigrating(t, `["sh", "-c", "echo migrating $CKANOPS_SITE; echo schema at head"]`)
}

// runbookSiteMigrating is runbookSite whose [[migrate]] runs argv (a TOML
// array).
func runbookSiteMigrating(t *testing.T, argv string) *site {
	s := newSite(t)
	storage := filepath.Join(s.dir, "storage", "resources", "abc")
	if err := os.MkdirAll(storage, 0o755); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(storage, "data.csv"), []byte("a,b\n1,2\n"), 0o644)
	os.Mkdir(filepath.Join(s.dir, "snapshots"), 0o750)
	f, err := os.OpenFile(s.gateConf, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(`
[checks]
storage_path = "storage"

[snapshot]
dir = "snapshots"

[runbook]
poll_interval = "50ms"

[[migrate]]
name = "schema"
argv = ` + argv + `
timeout = "1m"
`)
	f.Close()
	s.startGate()
	return s
}

// cliIn runs the CLI with stdin.
func (s *site) cliIn(stdin string, args ...string) (int, string, string) {
	s.t.Helper()
	return s.cliWithin(time.Minute, stdin, args...)
}

// cliWithin runs the CLI with stdin; past limit it gets SIGQUIT (a Go
// program prints its goroutines) and the test sees what it printed.
func (s *site) cliWithin(limit time.Duration, stdin string, args ...string) (int, string, string) {
	s.t.Helper()
	cmd := exec.Command(binPath, args...)
	cmd.Env = append(os.Environ(), "CKANOPS_CONFIG="+s.sites)
	cmd.Stdin = strings.NewReader(stdin)
	cmd.WaitDelay = time.Second
	timer := time.AfterFunc(limit, func() { cmd.Process.Signal(syscall.SIGQUIT) })
	defer timer.Stop()
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		s.t.Fatal(err)
	}
	return code, out.String(), errb.String()
}

var snapshotLine = regexp.MustCompile(`(?m)^snapshot (\S+): consistent`)

func TestRunbookCLIAsksAndFinishes(t *testing.T) {
	s := runbookSite(t)
	// A mistyped name asks again; the right one confirms; then migrate
	// asks for the name, and disable for y.
	code, out, errb := s.cliIn("etoe\ne2e\ne2e\ny\n", "runbook", "--message", "Upgrading", "--for", "1h", "e2e")
	if code != 0 {
		t.Fatalf("exit %d\n%s\n%s\ngate log:\n%s", code, out, errb, s.logs)
	}
	for _, want := range []string{`"etoe" is not e2e; nothing was done`, "Type the site's name (e2e) to confirm", "Go on? [y/N]",
		"migrate   | migrating e2e", "runbook ", "DONE", "preflight  - solr: unknown: not configured"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	m := snapshotLine.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no consistent snapshot in the output:\n%s", out)
	}
	code, vout, verr := s.cli("snapshot", "verify", m[1])
	// The storage is a tree by default ([snapshot] incremental).
	if code != 0 || !strings.Contains(vout, "ok    storage\n") || !strings.Contains(vout, "verdict: consistent") {
		t.Fatalf("snapshot verify: exit %d\n%s\n%s", code, vout, verr)
	}
	// Damage a file of the tree: verify says so and fails.
	var damaged string
	filepath.WalkDir(filepath.Join(m[1], "storage"), func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() && damaged == "" {
			damaged = p
		}
		return nil
	})
	b, err := os.ReadFile(damaged)
	if err != nil || len(b) == 0 {
		t.Fatalf("no file to damage in the tree: %q, %v", damaged, err)
	}
	b[len(b)/2] ^= 0xff
	os.WriteFile(damaged, b, 0o600)
	if code, vout, _ := s.cli("snapshot", "verify", m[1]); code != 1 || !strings.Contains(vout, "FAIL  storage") {
		t.Fatalf("verify of a damaged snapshot: exit %d\n%s", code, vout)
	}
	if code, out, _ := s.cli("status", "--json", "e2e"); code != 0 || !strings.Contains(out, `"mode": "live"`) {
		t.Fatalf("after the runbook: %d %s", code, out)
	}
}

func TestRunbookCLIJSONWithYes(t *testing.T) {
	s := runbookSite(t)
	code, out, errb := s.cli("runbook", "--yes", "--json", "--skip-migrate", "e2e")
	if code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, out, errb)
	}
	var last api.RunbookEvent
	sc := bufio.NewScanner(strings.NewReader(out))
	n := 0
	for sc.Scan() {
		if err := json.Unmarshal(sc.Bytes(), &last); err != nil {
			t.Fatalf("line %d is not a JSON event: %v: %s", n+1, err, sc.Text())
		}
		n++
	}
	if last.Kind != api.EventFinished || last.State != string(api.RunbookDone) || last.Snapshot == nil || last.Snapshot.Verdict != "consistent" {
		t.Fatalf("last event %+v", last)
	}
	if strings.Contains(out, "migrating") {
		t.Error("--skip-migrate ran the migration")
	}
}

func TestRunbookCLIDeclineRestartResume(t *testing.T) {
	s := runbookSite(t)
	// No answer: the runbook waits at enable and the command says how to go on.
	code, out, errb := s.cliIn("", "runbook", "e2e")
	if code != 1 || !strings.Contains(out+errb, "the runbook waits at enable") {
		t.Fatalf("exit %d\n%s\n%s", code, out, errb)
	}
	// A second start attaches instead of starting another.
	code, out, _ = s.cliIn("\n", "runbook", "e2e")
	if code != 1 || !strings.Contains(out, "attaching to runbook") {
		t.Fatalf("second run: exit %d\n%s", code, out)
	}
	// The gate dies; it comes back with the runbook interrupted.
	s.cmd.Process.Signal(syscall.SIGKILL)
	s.cmd.Wait()
	s.startGate()
	code, out, _ = s.cliIn("e2e\ne2e\ny\n", "runbook", "--resume", "e2e")
	if code != 0 {
		t.Fatalf("resume: exit %d\n%s\ngate log:\n%s", code, out, s.logs)
	}
	if !strings.Contains(out, "[interrupted]") || !strings.Contains(out, "[resumed]") {
		t.Errorf("the journal does not show the interruption:\n%s", out)
	}
	// Acting on a finished runbook is refused.
	if code, _, errb := s.cli("runbook", "--abort", "e2e"); code != 1 || !strings.Contains(errb, "no active runbook") {
		t.Fatalf("abort after the end: %d %s", code, errb)
	}
}

// A sites.toml entry whose url reaches another site's gate (the public URL
// during an A/B switch) changes nothing.
func TestCLIRefusesTheWrongSitesGate(t *testing.T) {
	s := newSite(t)
	s.startGate()
	other := filepath.Join(s.dir, "other-sites.toml")
	os.WriteFile(other, []byte(`[[site]]
name = "prod"
url = "`+s.gateURL+`"
token_file = "ops.token"
`), 0o600)
	for _, args := range [][]string{{"enable", "--config", other, "prod"}, {"disable", "--config", other, "prod"}, {"runbook", "--config", other, "--yes", "prod"}} {
		code, _, errb := s.cli(args...)
		if code != 1 || !strings.Contains(errb, `the gate there is site "e2e"`) || !strings.Contains(errb, "nothing was changed") {
			t.Errorf("%v: exit %d, %s", args, code, errb)
		}
	}
	if code, out, _ := s.cli("status", "--json", "e2e"); code != 0 || !strings.Contains(out, `"mode": "live"`) || strings.Contains(out, `"version": 1`) {
		t.Fatalf("the gate changed: %s", out)
	}
}

// --skip and --disable-now act on the runbook waiting on the gate.
func TestRunbookCLISkipAndDisableNow(t *testing.T) {
	s := runbookSite(t)
	// Confirm enable, then stop at the migrate confirmation.
	code, out, _ := s.cliIn("e2e\n\n", "runbook", "e2e")
	if code != 1 || !strings.Contains(out, "the runbook waits at migrate") {
		t.Fatalf("stop at migrate: exit %d\n%s", code, out)
	}
	// Enable cannot be skipped; migrate can, and the runbook goes on to
	// disable, which asks y/N.
	if code, _, errb := s.cli("runbook", "--skip", "enable", "e2e"); code != 1 || !strings.Contains(errb, "stands at step migrate") {
		t.Fatalf("skip enable: exit %d %s", code, errb)
	}
	code, out, _ = s.cliIn("y\n", "runbook", "--skip", "migrate", "e2e")
	if code != 0 || strings.Contains(out, "| migrating") || !strings.Contains(out, "migrate   SKIPPED") {
		t.Fatalf("skip migrate: exit %d\n%s", code, out)
	}
	// A second runbook, stopped at enable's confirmation... then enabled
	// and stopped at migrate: --disable-now aborts it and reopens writes.
	if code, _, _ := s.cliIn("e2e\n\n", "runbook", "e2e"); code != 1 {
		t.Fatalf("second runbook: exit %d", code)
	}
	if code, out, _ := s.cli("status", "--json", "e2e"); code != 0 || !strings.Contains(out, `"mode": "read-only"`) {
		t.Fatalf("before disable-now: %s", out)
	}
	code, out, errb := s.cli("runbook", "--disable-now", "e2e")
	if code != 1 || !strings.Contains(out, "ABORTED") || !strings.Contains(errb, "runbook aborted") {
		t.Fatalf("disable-now: exit %d\n%s\n%s", code, out, errb)
	}
	if code, out, _ := s.cli("status", "--json", "e2e"); code != 0 || !strings.Contains(out, `"mode": "live"`) {
		t.Fatalf("after disable-now: %s", out)
	}
}
