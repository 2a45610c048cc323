package main

// `ckanops serve` as a process in front of a real gate process, reached
// with golang.org/x/crypto/ssh as the client: commands and the console,
// operators and viewers, strangers, and what the gate audits.

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"github.com/ckanops/ckanops/api"
)

// sshPerson is a key and its owner's name.
type sshPerson struct {
	name   string
	signer gossh.Signer
}

func newSSHPerson(t *testing.T, name string) sshPerson {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := gossh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return sshPerson{name, s}
}

func (p sshPerson) authorized() string {
	return strings.TrimSpace(string(gossh.MarshalAuthorizedKey(p.signer.PublicKey()))) + " " + p.name + "\n"
}

func (p sshPerson) actor() string {
	return "ssh:" + p.name + " (" + gossh.FingerprintSHA256(p.signer.PublicKey()) + ")"
}

// serveProc is a running `ckanops serve`.
type serveProc struct {
	t    *testing.T
	addr string
	cmd  *exec.Cmd
	logs *syncBuffer
}

// startServe runs `ckanops serve` with the given sites.toml and the keys
// files in dir, listening on addr (a free port when "").
func startServe(t *testing.T, sites, dir, addr string, extra ...string) *serveProc {
	t.Helper()
	if addr == "" {
		addr = freePort(t)
	}
	p := &serveProc{t: t, addr: addr, logs: &syncBuffer{}}
	args := append([]string{"serve", "--config", sites, "--listen", p.addr,
		"--host-key", filepath.Join(dir, "ssh_host_ed25519"),
		"--operators", filepath.Join(dir, "operators.keys"), "--viewers", filepath.Join(dir, "viewers.keys")}, extra...)
	p.cmd = exec.Command(binPath, args...)
	p.cmd.Stdout, p.cmd.Stderr = p.logs, p.logs
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	cmd := p.cmd
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
	})
	for deadline := time.Now().Add(30 * time.Second); !strings.Contains(p.logs.String(), "listening on"); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("ckanops serve did not start:\n%s", p.logs)
		}
	}
	return p
}

func (p *serveProc) dial(who sshPerson) (*gossh.Client, error) {
	return gossh.Dial("tcp", p.addr, &gossh.ClientConfig{User: "oncall", Auth: []gossh.AuthMethod{gossh.PublicKeys(who.signer)},
		HostKeyCallback: gossh.InsecureIgnoreHostKey(), Timeout: 10 * time.Second})
}

// run runs one command line over SSH: stdout, stderr, exit status.
func (p *serveProc) run(who sshPerson, cmdline string) (string, string, int) {
	p.t.Helper()
	c, err := p.dial(who)
	if err != nil {
		p.t.Fatalf("ssh as %s: %v", who.name, err)
	}
	defer c.Close()
	s, err := c.NewSession()
	if err != nil {
		p.t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	s.Stdout, s.Stderr = &out, &errOut
	err = s.Run(cmdline)
	var exit *gossh.ExitError
	switch {
	case err == nil:
		return out.String(), errOut.String(), 0
	case errors.As(err, &exit):
		return out.String(), errOut.String(), exit.ExitStatus()
	}
	p.t.Fatalf("ssh %s %q: %v", who.name, cmdline, err)
	return "", "", 0
}

func TestServeOverSSH(t *testing.T) {
	s := newSite(t)
	s.startGate()
	alice, bob, eve := newSSHPerson(t, "alice"), newSSHPerson(t, "bob"), newSSHPerson(t, "eve")
	os.WriteFile(filepath.Join(s.dir, "operators.keys"), []byte(alice.authorized()), 0o600)
	os.WriteFile(filepath.Join(s.dir, "viewers.keys"), []byte(bob.authorized()), 0o600)
	metricsAddr := freePort(t)
	srv := startServe(t, s.sites, s.dir, "", "--metrics-listen", metricsAddr)

	// A stranger cannot connect.
	if _, err := srv.dial(eve); err == nil {
		t.Fatal("eve, whose key is in no file, connected")
	}

	// help lists what is served, and says what a viewer may not run.
	if out, _, code := srv.run(bob, "help"); code != 0 || !strings.Contains(out, "enable    put a site into maintenance (read-only by default) (operators only)") || strings.Contains(out, "demo") {
		t.Fatalf("bob's help: %d\n%s", code, out)
	}
	// The viewer looks, and is refused every change, naming the permission.
	out, _, code := srv.run(bob, "status --json")
	var rows []siteStatus
	if code != 0 || json.Unmarshal([]byte(out), &rows) != nil || len(rows) != 1 || rows[0].Status == nil || rows[0].Status.Mode != api.ModeLive {
		t.Fatalf("bob's status: %d %s", code, out)
	}
	if _, errOut, code := srv.run(bob, "schedule e2e"); code != 0 {
		t.Errorf("bob may look at the schedule: exit %d %s", code, errOut)
	}
	for _, cl := range []string{"enable e2e --message hi", "disable e2e", "runbook e2e --yes", "actions e2e --learn",
		"schedule e2e --at +2h --for 1h", "schedule e2e --cancel"} {
		_, errOut, code := srv.run(bob, cl)
		if code != exitUsage || !strings.Contains(errOut, "bob is a viewer") || !strings.Contains(errOut, "needs the operator permission") {
			t.Errorf("bob %q: exit %d, %q", cl, code, errOut)
		}
	}
	if code, body := s.gateCall("GET", api.PathStatus, ""); code != 200 || !strings.Contains(body, `"mode":"live"`) {
		t.Fatalf("a viewer changed the site: %s", body)
	}
	// Commands that run on the console host, and --config, are not served.
	for _, cl := range []string{"snapshot verify /", "gate --config /etc/passwd", "status --config /etc/passwd", "demo"} {
		if _, errOut, code := srv.run(alice, cl); code != exitUsage || strings.Contains(errOut, "root:") {
			t.Errorf("alice %q: exit %d, %q", cl, code, errOut)
		}
	}

	// The operator changes the mode; the gate audits her by name.
	out, errOut, code := srv.run(alice, "enable e2e --message 'upgrade to 2.11' --for 30m --reason 'ticket 42' --json")
	if code != 0 {
		t.Fatalf("alice's enable: %d\n%s\n%s\nserve's log:\n%s", code, out, errOut, srv.logs)
	}
	var st api.Status
	if err := json.Unmarshal([]byte(out), &st); err != nil || st.Mode != api.ModeReadOnly || st.Message != "upgrade to 2.11" {
		t.Fatalf("enable --json: %v %s", err, out)
	}
	wantActor := alice.actor() + " via ops-token"
	if st.Actor != wantActor {
		t.Fatalf("the mode record's actor is %q, want %q", st.Actor, wantActor)
	}
	code, body := s.gateCall("GET", api.PathAudit+"?tail=5", "")
	var tail api.AuditTail
	if code != 200 || json.Unmarshal([]byte(body), &tail) != nil {
		t.Fatalf("audit tail: %d %s", code, body)
	}
	found := false
	for _, e := range tail.Entries {
		if e.Event == "mode" && e.To == "read-only" && e.Actor == wantActor && e.Reason == "ticket 42" {
			found = true
		}
	}
	if !found {
		t.Fatalf("no audit entry naming alice: %s", body)
	}
	// The exit status comes back: a failing command exits 1.
	if _, errOut, code := srv.run(alice, "enable no-such-site"); code != exitFail || !strings.Contains(errOut, `no site "no-such-site"`) {
		t.Fatalf("enable no-such-site: %d %q", code, errOut)
	}

	// The console: alice's name on the title line; a viewer's change
	// refused in the console too.
	screen := consoleScreen(t, srv, bob, "e", "xterm-256color")
	if !strings.Contains(screen, "bob (viewer)") || !strings.Contains(screen, "needs the operator permission") {
		t.Fatalf("bob's console after e:\n%s", screen)
	}

	// Colour follows the client's terminal: a 256-colour terminal gets
	// colours, one with NO_COLOR gets none, nor does a dumb one.
	colour := regexp.MustCompile(`\x1b\[[0-9;]*(3[0-7]|38;[25];[0-9;]+|9[0-7])m`)
	if !colour.MatchString(screen) {
		t.Errorf("no colour for an xterm-256color client:\n%q", screen)
	}
	for _, plain := range []string{consoleScreen(t, srv, alice, "", "xterm-256color", "NO_COLOR=1"), consoleScreen(t, srv, alice, "", "dumb")} {
		if colour.MatchString(plain) {
			t.Errorf("colour sent to a client that wants none:\n%q", plain)
		}
	}

	// The metrics count the sessions and the stranger.
	res, err := http.Get("http://" + metricsAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	mb, _ := io.ReadAll(res.Body)
	res.Body.Close()
	for _, want := range []string{`ckanops_serve_refused_total{reason="authentication"} 1`, `ckanops_serve_keys{role="operator"} 1`,
		`ckanops_serve_sessions{kind="command",role="operator"} 0`} {
		if !strings.Contains(string(mb), want) {
			t.Errorf("the metrics lack %q:\n%s", want, mb)
		}
	}
	if !regexp.MustCompile(`ckanops_serve_sessions_total\{kind="command",role="viewer"\} [1-9]`).Match(mb) {
		t.Errorf("no viewer command session counted:\n%s", mb)
	}

	// The log: who, from where, what, how long.
	logs := srv.logs.String()
	for _, want := range []string{"user=alice role=operator", "remote=127.0.0.1:", `command="enable e2e --message upgrade to 2.11`, "exit=0", "duration=",
		"ssh connection refused: no authorized key"} {
		if !strings.Contains(logs, want) {
			t.Errorf("serve's log lacks %q:\n%s", want, logs)
		}
	}

	// SIGTERM ends the server cleanly.
	srv.cmd.Process.Signal(syscall.SIGTERM)
	if err := srv.cmd.Wait(); err != nil {
		t.Fatalf("serve after SIGTERM: %v\n%s", err, srv.logs)
	}
}

// consoleScreen opens the console as who, presses keys once it is drawn,
// and returns what it showed.
// env is the client's environment (NAME=VALUE), as SendEnv sends it.
func consoleScreen(t *testing.T, srv *serveProc, who sshPerson, keys, term string, env ...string) string {
	t.Helper()
	c, err := srv.dial(who)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	sess, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	out := &syncBuffer{}
	sess.Stdout, sess.Stderr = out, out
	in, _ := sess.StdinPipe()
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		if err := sess.Setenv(k, v); err != nil {
			t.Fatal(err)
		}
	}
	if err := sess.RequestPty(term, 30, 140, gossh.TerminalModes{}); err != nil {
		t.Fatal(err)
	}
	if err := sess.Shell(); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the console drawn", func() bool {
		return strings.Contains(out.String(), "ckanops console") && strings.Contains(out.String(), "e2e")
	})
	in.Write([]byte(keys))
	time.Sleep(500 * time.Millisecond)
	in.Write([]byte("q"))
	done := make(chan error, 1)
	go func() { done <- sess.Wait() }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("q did not end the console")
	}
	return out.String()
}

func waitUntil(t *testing.T, what string, ok func() bool) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); !ok(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// `ssh -t host runbook SITE` asks its questions: the session's terminal
// gives the runbook the lines typed (Enter is CR on a raw client
// terminal), echoed; Ctrl-C at a prompt detaches, changing nothing.
func TestServeRunbookAsksOverSSH(t *testing.T) {
	s := runbookSite(t)
	s.startGate()
	alice := newSSHPerson(t, "alice")
	os.WriteFile(filepath.Join(s.dir, "operators.keys"), []byte(alice.authorized()), 0o600)
	os.WriteFile(filepath.Join(s.dir, "viewers.keys"), nil, 0o600)
	srv := startServe(t, s.sites, s.dir, "")

	session := func(cmdline string) (*gossh.Session, io.Writer, *syncBuffer, chan error) {
		c, err := srv.dial(alice)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		sess, err := c.NewSession()
		if err != nil {
			t.Fatal(err)
		}
		out := &syncBuffer{}
		sess.Stdout, sess.Stderr = out, out
		in, _ := sess.StdinPipe()
		if err := sess.RequestPty("xterm", 40, 120, gossh.TerminalModes{}); err != nil {
			t.Fatal(err)
		}
		if err := sess.Start(cmdline); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- sess.Wait() }()
		return sess, in, out, done
	}
	exitOf := func(done chan error) int {
		select {
		case err := <-done:
			var exit *gossh.ExitError
			if errors.As(err, &exit) {
				return exit.ExitStatus()
			}
			if err != nil {
				t.Fatal(err)
			}
			return 0
		case <-time.After(time.Minute):
			t.Fatal("the session did not end")
		}
		return -1
	}
	prompts := func(out *syncBuffer, n int) func() bool {
		return func() bool {
			return strings.Count(out.String(), "Type the site's name (e2e) to confirm")+strings.Count(out.String(), "Go on? [y/N]") >= n
		}
	}

	// Ctrl-C at the first prompt: detached, nothing changed.
	_, in, out, done := session("runbook e2e --message Upgrading --for 1h")
	waitUntil(t, "the first question", prompts(out, 1))
	in.Write([]byte("e2\x03"))
	if code := exitOf(done); code != exitDetached || !strings.Contains(out.String(), "e2^C\r\n") {
		t.Fatalf("Ctrl-C: exit %d\n%q", code, out.String())
	}

	// Answered by typing: a typo corrected with backspace, Enter as CR.
	_, in, out, done = session("runbook e2e")
	for i, answer := range []string{"e2x\x7fe\r", "e2e\r", "y\r"} {
		waitUntil(t, fmt.Sprintf("question %d", i+1), prompts(out, i+1))
		in.Write([]byte(answer))
	}
	if code := exitOf(done); code != 0 || !strings.Contains(out.String(), "DONE") || !strings.Contains(out.String(), "e2x\b \be\r\n") {
		t.Fatalf("the runbook over ssh -t: exit %d\n%s\nserve's log:\n%s", code, out.String(), srv.logs)
	}
	if code, body := s.gateCall("GET", api.PathStatus, ""); code != 200 || !strings.Contains(body, `"mode":"live"`) {
		t.Fatalf("after the runbook: %s", body)
	}
}
