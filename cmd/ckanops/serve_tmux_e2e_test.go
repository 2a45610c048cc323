package main

// The SSH console end to end, as an on-call engineer meets it: the real
// OpenSSH client in tmux, `ssh -t` to `ckanops serve` in front of the
// demo's gates, the whole runbook driven by keystrokes; the gate's audit
// names the engineer. The host key survives a restart of the server
// (StrictHostKeyChecking=yes against the first run's known_hosts).

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ckanops/ckanops/api"
	"github.com/ckanops/ckanops/ckanclient"
)

func requireSSH(t *testing.T) {
	t.Helper()
	for _, bin := range []string{"ssh", "ssh-keygen"} {
		if _, err := exec.LookPath(bin); err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("%s not found: apt-get install openssh-client", bin)
			}
			t.Skipf("%s not found: apt-get install openssh-client", bin)
		}
	}
}

// sshKey makes a key pair with ssh-keygen; its comment is the name.
func sshKey(t *testing.T, dir, name string) (keyFile, authorized string) {
	t.Helper()
	keyFile = filepath.Join(dir, name)
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", keyFile).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v\n%s", err, out)
	}
	pub, err := os.ReadFile(keyFile + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	return keyFile, string(pub)
}

func sshArgs(addr, key, knownHosts, strict string) []string {
	host, port, _ := strings.Cut(addr, ":")
	return []string{"-p", port, "-i", key, "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
		"-o", "UserKnownHostsFile=" + knownHosts, "-o", "StrictHostKeyChecking=" + strict,
		"-o", "LogLevel=ERROR", "-F", "/dev/null", "oncall@" + host}
}

func TestSSHConsoleRunsTheRunbookInTmux(t *testing.T) {
	requireTmux(t)
	requireSSH(t)
	dir := t.TempDir()

	// The demo's sites, headless: the gates run their runbooks with real
	// Postgres, pg_dump and tar.
	infoFile := filepath.Join(dir, "info.json")
	demoLog := &syncBuffer{}
	demoCmd := exec.Command(binPath, "demo", "--headless", "--quiet", "--info", infoFile)
	demoCmd.Stdout, demoCmd.Stderr = demoLog, demoLog
	if err := demoCmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		demoCmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { demoCmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			demoCmd.Process.Kill()
		}
	})
	var info struct {
		SitesFile string `json:"sites_file"`
		InfoURL   string `json:"info_url"`
		Token     string `json:"token"`
	}
	waitUntil(t, "the demo's info file", func() bool {
		b, err := os.ReadFile(infoFile)
		return err == nil && json.Unmarshal(b, &info) == nil && info.SitesFile != ""
	})
	target := demoSites(t, info.InfoURL)[0] // the first row, where the cursor starts
	gate, err := ckanclient.New(target.GateURL, ckanclient.Options{Retries: -1, Token: info.Token, TokenStyle: ckanclient.AuthBearer})
	if err != nil {
		t.Fatal(err)
	}

	aliceKey, alicePub := sshKey(t, dir, "alice")
	bobKey, bobPub := sshKey(t, dir, "bob")
	eveKey, _ := sshKey(t, dir, "eve")
	os.WriteFile(filepath.Join(dir, "operators.keys"), []byte(alicePub), 0o600)
	os.WriteFile(filepath.Join(dir, "viewers.keys"), []byte(bobPub), 0o600)
	known := filepath.Join(dir, "known_hosts")
	srv := startServe(t, info.SitesFile, dir, "")

	// Scripts: the real client carries stdout and the exit status.
	ssh := func(key, strict string, args ...string) (string, int) {
		out, err := exec.Command("ssh", append(sshArgs(srv.addr, key, known, strict), args...)...).CombinedOutput()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return string(out), code
	}
	if out, code := ssh(aliceKey, "accept-new", "status", target.Name); code != 0 || !strings.Contains(out, target.Name) {
		t.Fatalf("ssh status: %d\n%s", code, out)
	}
	if out, code := ssh(bobKey, "yes", "enable", target.Name); code != exitUsage || !strings.Contains(out, "needs the operator permission") {
		t.Fatalf("bob's enable over ssh: %d\n%s", code, out)
	}
	if out, code := ssh(eveKey, "yes", "status"); code != 255 || !strings.Contains(out, "Permission denied") {
		t.Fatalf("eve over ssh: %d\n%s", code, out)
	}

	// The server restarts; the client still trusts it (same host key).
	srv.cmd.Process.Signal(syscall.SIGTERM)
	if err := srv.cmd.Wait(); err != nil {
		t.Fatalf("serve after SIGTERM: %v\n%s", err, srv.logs)
	}
	srv = startServe(t, info.SitesFile, dir, srv.addr)

	// The console over `ssh -t`, driven by keystrokes.
	name := fmt.Sprintf("ckanops-e2e-ssh-%d", os.Getpid())
	xs := tmux{t: t, sock: name, session: name}
	cmdline := "ssh -t " + strings.Join(sshArgs(srv.addr, aliceKey, known, "yes"), " ") + "; echo ssh-exited-$?; sleep 600"
	xs.run("new-session", "-d", "-s", name, "-x", "140", "-y", "40", cmdline)
	t.Cleanup(func() { exec.Command("tmux", "-L", name, "kill-server").Run() })
	xs.waitScreen("ckanops console · 3 sites")
	xs.waitScreen("alice (operator)")
	xs.waitCursorOn(target.Name)

	xs.keys(false, "r")
	xs.waitScreen("runbook")
	xs.keys(false, "n")
	xs.waitScreen("Start a runbook on " + target.Name)
	xs.keys(false, "Tab")
	xs.keys(true, "ssh runbook")
	for range 4 { // for, skip migrate, A/B, the name
		xs.keys(false, "Tab")
	}
	xs.keys(true, target.Name)
	xs.keys(false, "Enter")

	// Confirm each step as it waits: the site's name where it is wanted,
	// y elsewhere; until the runbook ends.
	deadline := time.Now().Add(3 * time.Minute)
	confirmed := map[string]bool{}
	var rb *api.Runbook
	for {
		rb, err = gate.Runbook(t.Context())
		if err == nil && rb != nil && !rb.Active() && rb.State != "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the runbook did not end: %+v %v\nscreen:\n%s", rb, err, xs.screen())
		}
		if err == nil && rb != nil && rb.Waiting != nil && !confirmed[rb.Waiting.Step] {
			w := rb.Waiting
			// The console learns of the wait from its own event stream,
			// a moment after the gate: c before that confirms nothing.
			xs.waitScreen("WAITING FOR YOU: " + w.Step)
			xs.keys(false, "c")
			xs.waitScreen("Confirm " + w.Step + " on " + target.Name)
			if w.TypeSiteName {
				xs.keys(true, target.Name)
				xs.keys(false, "Enter")
			} else {
				xs.keys(false, "y")
			}
			confirmed[w.Step] = true
		}
		time.Sleep(200 * time.Millisecond)
	}
	if rb.State != api.RunbookDone {
		t.Fatalf("the runbook ended %s, not done: %+v\nscreen:\n%s", rb.State, rb, xs.screen())
	}
	for _, step := range []string{"enable", "migrate", "disable"} {
		if !confirmed[step] {
			t.Errorf("step %s was never confirmed by keystrokes (confirmed: %v)", step, confirmed)
		}
	}
	wantActor := "ssh:alice (SHA256:"
	if !strings.HasPrefix(rb.Actor, wantActor) || !strings.HasSuffix(rb.Actor, ") via ops-token") {
		t.Errorf("the runbook's actor is %q, want alice by her key, via the ops token", rb.Actor)
	}
	entries, err := gate.AuditTail(t.Context(), 50)
	if err != nil {
		t.Fatal(err)
	}
	var modes int
	for _, e := range entries {
		if e.Event == "mode" {
			modes++
			if !strings.HasPrefix(e.Actor, wantActor) {
				t.Errorf("a mode change audited as %q, not alice: %+v", e.Actor, e)
			}
		}
	}
	if modes < 2 {
		t.Errorf("the audit holds %d mode changes, want enable and disable: %+v", modes, entries)
	}
	if st, err := gate.Status(t.Context()); err != nil || st.Mode != api.ModeLive {
		t.Fatalf("after the runbook: %+v %v", st, err)
	}

	// q ends the session, not the server.
	xs.keys(false, "q")
	xs.waitScreen("ssh-exited-0")
	if out, code := ssh(aliceKey, "yes", "status", target.Name); code != 0 || !strings.Contains(out, "live") {
		t.Fatalf("after q, ssh status: %d\n%s", code, out)
	}
}
