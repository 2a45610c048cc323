package main

// End-to-end: the real ckanops binary as a gate process in front of a
// simulated CKAN, driven by the real CLI.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ckanops/ckanops/api"

	"github.com/ckanops/ckanops/internal/ckansim"
)

var binPath string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "ckanops-e2e-")
	if err != nil {
		panic(err)
	}
	binPath = filepath.Join(dir, "ckanops")
	build := exec.Command("go", "build", "-race", "-o", binPath, ".")
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		// Without -race support (no cgo), build a plain binary.
		build = exec.Command("go", "build", "-o", binPath, ".")
		build.Stderr = os.Stderr
		if err := build.Run(); err != nil {
			fmt.Fprintln(os.Stderr, "e2e: cannot build ckanops:", err)
			os.Exit(1)
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// site is a simulated CKAN, the files a gate needs, and the console's
// sites.toml pointing at the gate.
type site struct {
	t        *testing.T
	sim      *ckansim.Sim
	dir      string
	gateURL  string
	gateConf string
	sites    string
	cmd      *exec.Cmd
	logs     *syncBuffer
}

// syncBuffer collects a process's output while the test reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

const e2eToken = "e2e-ops-token-9f8e7d6c5b4a39281706f5e4d3c2b1a0"

func freePort(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func newSite(t *testing.T) *site {
	sim, err := ckansim.New(ckansim.Options{})
	if err != nil {
		t.Fatal(err)
	}
	up := httptest.NewServer(sim)
	t.Cleanup(up.Close)
	dir := t.TempDir()
	listen := freePort(t)
	s := &site{t: t, sim: sim, dir: dir, gateURL: "http://" + listen}
	tokenFile := filepath.Join(dir, "ops.token")
	os.WriteFile(tokenFile, []byte(e2eToken+"\n"), 0o600)
	s.gateConf = filepath.Join(dir, "gate.toml")
	os.WriteFile(s.gateConf, []byte(fmt.Sprintf(`site = "e2e"
listen = %q
upstream = %q

[state]
file = "state/e2e.state.json"

[auth]
ops_token_file = "ops.token"

[gate]
shutdown_timeout = "5s"
`, listen, up.URL)), 0o600)
	s.sites = filepath.Join(dir, "sites.toml")
	os.WriteFile(s.sites, []byte(fmt.Sprintf(`[[site]]
name = "e2e"
url = %q
token_file = "ops.token"
`, s.gateURL)), 0o600)
	return s
}

// startGate runs `ckanops gate` and waits until it answers.
func (s *site) startGate() {
	t := s.t
	t.Helper()
	s.logs = &syncBuffer{}
	s.cmd = exec.Command(binPath, "gate", "--config", s.gateConf)
	s.cmd.Stdout, s.cmd.Stderr = s.logs, s.logs
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	cmd := s.cmd
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
	})
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); {
		res, err := http.Get(s.gateURL + "/-/ckanops/status")
		if err == nil {
			res.Body.Close()
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("the gate did not come up; its log:\n%s", s.logs)
}

func (s *site) cli(args ...string) (int, string, string) {
	s.t.Helper()
	return s.cliIn("", args...)
}

func (s *site) write(name string) int {
	s.t.Helper()
	req, _ := http.NewRequest("POST", s.gateURL+"/api/3/action/package_create",
		strings.NewReader(fmt.Sprintf(`{"name": %q, "owner_org": "demo-org"}`, name)))
	req.Header.Set("Authorization", ckansim.SysadminToken)
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	io.Copy(io.Discard, res.Body)
	res.Body.Close()
	return res.StatusCode
}

func TestGateProcessEndToEnd(t *testing.T) {
	s := newSite(t)
	s.startGate()

	if code := s.write("before-maintenance"); code != 200 {
		t.Fatalf("live write: %d", code)
	}
	code, out, errOut := s.cli("enable", "--message", "Snapshot then upgrade", "--for", "45m", "--reason", "e2e", "--wait", "e2e")
	if code != 0 || !strings.Contains(out, "read-only") {
		t.Fatalf("enable: exit %d\n%s\n%s", code, out, errOut)
	}
	s.sim.ResetJournal()
	if code := s.write("during-maintenance"); code != 503 {
		t.Fatalf("write in read-only: %d", code)
	}

	// status --json, through the CLI.
	code, out, errOut = s.cli("status", "--json")
	var rows []struct {
		Site   string     `json:"site"`
		Status api.Status `json:"status"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &rows) != nil || len(rows) != 1 ||
		rows[0].Status.Mode != api.ModeReadOnly || rows[0].Status.Phase != api.PhaseQuiesced || rows[0].Status.Until == nil {
		t.Fatalf("status --json: exit %d\n%s\n%s", code, out, errOut)
	}

	// SIGKILL: the gate comes back in the mode it had.
	s.cmd.Process.Kill()
	s.cmd.Wait()
	s.startGate()
	if code := s.write("after-restart"); code != 503 {
		t.Fatalf("write after a SIGKILL restart: %d (the gate forgot read-only)\n%s", code, s.logs)
	}
	if w := s.sim.Writes(); len(w) != 0 {
		t.Fatalf("writes reached CKAN in read-only: %+v", w)
	}

	code, out, errOut = s.cli("disable", "--reason", "done", "e2e")
	if code != 0 || !strings.Contains(out, "live") {
		t.Fatalf("disable: exit %d\n%s\n%s", code, out, errOut)
	}
	if code := s.write("after-disable"); code != 200 {
		t.Fatalf("write after disable: %d", code)
	}

	// The audit log has both changes.
	b, _ := os.ReadFile(filepath.Join(s.dir, "state", "audit.jsonl"))
	if n := strings.Count(string(b), `"event":"mode"`); n != 2 {
		t.Fatalf("audit log has %d mode changes, want 2:\n%s", n, b)
	}
	if strings.Contains(s.logs.String(), e2eToken) {
		t.Fatal("the ops token appeared in the gate's log")
	}

	// SIGTERM: a clean exit.
	s.cmd.Process.Signal(syscall.SIGTERM)
	if err := s.cmd.Wait(); err != nil {
		t.Fatalf("gate exit after SIGTERM: %v\n%s", err, s.logs)
	}
}

func TestSIGTERMLetsInFlightRequestsFinish(t *testing.T) {
	s := newSite(t)
	s.startGate()
	s.sim.SetLatency(0, 800*time.Millisecond)
	done := make(chan int, 1)
	go func() { done <- s.write("slow-write") }()
	for i := 0; i < 200 && len(clientRequests(s.sim)) == 0; i++ {
		time.Sleep(10 * time.Millisecond)
	}
	s.cmd.Process.Signal(syscall.SIGTERM)
	if code := <-done; code != 200 {
		t.Fatalf("in-flight write during shutdown: %d", code)
	}
	if err := s.cmd.Wait(); err != nil {
		t.Fatalf("gate exit: %v\n%s", err, s.logs)
	}
}

func TestCLIErrors(t *testing.T) {
	s := newSite(t)
	// Gate not running: a clear error, exit 1.
	code, _, errOut := s.cli("status", "e2e")
	if code != 1 || !strings.Contains(errOut, "did not answer") {
		t.Fatalf("status with the gate down: exit %d, %s", code, errOut)
	}
	code, _, errOut = s.cli("enable", "nosuchsite")
	if code == 0 || !strings.Contains(errOut, "nosuchsite") {
		t.Fatalf("unknown site: exit %d, %s", code, errOut)
	}
	code, _, errOut = s.cli("enable", "--mode", "live", "e2e")
	if code != 2 {
		t.Fatalf("enable --mode live: exit %d, %s", code, errOut)
	}
	code, _, errOut = s.cli("gate")
	if code != 2 || !strings.Contains(errOut, "--config") {
		t.Fatalf("gate without --config: exit %d, %s", code, errOut)
	}
	bad := filepath.Join(s.dir, "bad.toml")
	os.WriteFile(bad, []byte("site = \"x\"\nlisten = 8080\n"), 0o600)
	code, _, errOut = s.cli("gate", "--config", bad)
	if code != 1 || !strings.Contains(errOut, "bad.toml:2") || !strings.Contains(errOut, "listen") {
		t.Fatalf("bad gate.toml: exit %d, %s", code, errOut)
	}
}

// demoCommandLines returns the arguments of the `ckanops ...` lines the
// headless demo prints for another shell.
func demoCommandLines(t *testing.T, text string) [][]string {
	t.Helper()
	_, text, _ = strings.Cut(text, "In another shell:")
	var out [][]string
	for _, line := range strings.Split(text, "\n") {
		words, err := shellWords(strings.TrimSpace(line))
		if err != nil {
			t.Errorf("the demo prints %q: %v", line, err)
			continue
		}
		if len(words) > 0 && words[0] == "ckanops" {
			out = append(out, words[1:])
		}
	}
	return out
}

func TestDemoDrivenByTheCLI(t *testing.T) {
	// Without the throwaway Postgres and Redis: this drives the CLI; the
	// demo's backends are tested in internal/demo and by the tmux test.
	demo := exec.Command(binPath, "demo", "--headless", "--no-backends", "--stop-after", "120s")
	out := &syncBuffer{}
	demo.Stdout, demo.Stderr = out, out
	if err := demo.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { demo.Process.Signal(syscall.SIGTERM); demo.Wait() }()
	var cfg string
	for deadline := time.Now().Add(60 * time.Second); cfg == "" && time.Now().Before(deadline); {
		for _, line := range strings.Split(out.String(), "\n") {
			if v, ok := strings.CutPrefix(strings.TrimSpace(line), "export CKANOPS_CONFIG="); ok {
				cfg = v
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	if cfg == "" {
		t.Fatalf("the demo did not print its config:\n%s", out)
	}
	cli := func(args ...string) (int, string) {
		cmd := exec.Command(binPath, args...)
		cmd.Env = append(os.Environ(), "CKANOPS_CONFIG="+cfg)
		b, err := cmd.CombinedOutput()
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode(), string(b)
		}
		return 0, string(b)
	}
	code, text := cli("status")
	if code != 0 || strings.Count(text, "  live  live ") != 3 {
		t.Fatalf("status on the demo: exit %d\n%s", code, text)
	}
	if code, text := cli("enable", "--wait", "--timeout", "30s", "open-env"); code != 0 || !strings.Contains(text, "quiesced") {
		t.Fatalf("enable on the demo: exit %d\n%s", code, text)
	}
	if code, text := cli("disable", "open-env"); code != 0 || !strings.Contains(text, "live") {
		t.Fatalf("disable on the demo: exit %d\n%s", code, text)
	}

	// The command lines the demo prints parse, and its enable and disable
	// lines work as printed.
	lines := demoCommandLines(t, out.String())
	ran := 0
	for _, args := range lines {
		if code, errOut := dryRun(t, args); code != 0 {
			t.Errorf("the demo prints %q, which does not parse: exit %d\n%s", args, code, errOut)
		}
		if len(args) > 0 && (args[0] == "enable" || args[0] == "disable") {
			if code, text := cli(args...); code != 0 {
				t.Errorf("ckanops %s, as the demo prints it: exit %d\n%s", strings.Join(args, " "), code, text)
			}
			ran++
		}
	}
	if len(lines) < 4 || ran != 2 {
		t.Fatalf("found %d ckanops lines in the demo's text (%d enable or disable):\n%s", len(lines), ran, out)
	}
	demo.Process.Signal(syscall.SIGTERM)
	if err := demo.Wait(); err != nil {
		t.Fatalf("demo exit: %v\n%s", err, out)
	}
	dir := filepath.Dir(cfg)
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("the demo left %s behind", dir)
	}
}

// Without a terminal, ckanops prints the status and says how to get the
// console, instead of refusing.
func TestConsoleWithoutATerminalPrintsTheStatus(t *testing.T) {
	s := newSite(t)
	s.startGate()
	for _, args := range [][]string{nil, {"tui"}} {
		code, out, errb := s.cli(args...)
		if code != 0 || !strings.Contains(out, "e2e") || !strings.Contains(out, "live") || !strings.Contains(errb, "the console needs a terminal") {
			t.Errorf("%v: exit %d\n%s\n%s", args, code, out, errb)
		}
	}
}

// A sites.toml entry whose token file is missing shows as a row with its
// error; every other site is shown; the exit status says something failed.
func TestStatusWithABrokenSitesEntry(t *testing.T) {
	s := newSite(t)
	s.startGate()
	f, err := os.OpenFile(s.sites, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("\n[[site]]\nname = \"broken\"\nurl = \"http://127.0.0.1:1\"\ntoken_file = \"missing.token\"\n")
	f.Close()
	code, out, errb := s.cli("status")
	if code != 1 || !strings.Contains(out, "e2e") || !strings.Contains(out, "live") || !strings.Contains(out, "broken") || !strings.Contains(out, "missing.token") {
		t.Fatalf("exit %d\n%s\n%s", code, out, errb)
	}
	// One site asked by name still fails on its own error.
	if code, _, errb := s.cli("status", "broken"); code != 1 || !strings.Contains(errb, "missing.token") {
		t.Fatalf("status broken: exit %d %s", code, errb)
	}
	if code, out, _ := s.cli("status", "e2e"); code != 0 || !strings.Contains(out, "live") {
		t.Fatalf("status e2e: exit %d %s", code, out)
	}
}
