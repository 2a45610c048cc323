package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const serveSitesHead = `[[site]]
name = "prod"
url = "https://data.example.org"
token_env = "CKANOPS_TEST_SERVE_TOKEN"
`

// chmodFile gives path mode whatever the umask.
func chmodFile(t *testing.T, path string, mode os.FileMode) {
	t.Helper()
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}

func TestConfigCheckServe(t *testing.T) {
	t.Setenv("CKANOPS_TEST_SERVE_TOKEN", "3f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c")
	dir := t.TempDir()
	ops := writeFile(t, filepath.Join(dir, "operators.keys"), `# the operators
ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA1 alice

ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA2 bob
  # bob's laptop
ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQ carol
`, 0o600)
	chmodFile(t, ops, 0o644)
	view := writeFile(t, filepath.Join(dir, "viewers.keys"), "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA3 dave\n", 0o600)
	chmodFile(t, view, 0o664) // group-writable: a warning from the loader
	sites := writeFile(t, filepath.Join(dir, "sites.toml"), serveSitesHead+`
[serve]
listen = "0.0.0.0:2222"
operators = "operators.keys"
viewers = "viewers.keys"
idle_timeout = "45m"
max_sessions = 8
shutdown_grace = "10s"
metrics_listen = "127.0.0.1:9122"
`, 0o600)
	hostKey := filepath.Join(dir, "ssh_host_ed25519")

	code, out, errOut := runCLI(t, "config", "check", sites)
	if code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, out, errOut)
	}
	for _, want := range []string{
		"(sites): valid",
		"serve listen", "0.0.0.0:2222 (ssh)",
		"serve host key", hostKey + ": does not exist yet (made on first start)",
		"serve operators", ops + ": 3 key(s), mode 0644",
		"serve viewers", view + ": 1 key(s), mode 0664",
		"warning: " + sites + ": serve.viewers: viewers file " + view + " is writable by group or others (mode 0664)",
		"serve idle timeout", "45m",
		"serve max sessions", "8",
		"serve shutdown grace", "10s",
		"serve metrics", "/metrics on 127.0.0.1:9122",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Count(out, "warning:") != 1 {
		t.Errorf("want one warning:\n%s", out)
	}

	// The host key exists: its mode is shown; wider than 0600 is a warning.
	writeFile(t, hostKey, "-----BEGIN OPENSSH PRIVATE KEY-----\n", 0o600)
	code, out, _ = runCLI(t, "config", "check", sites)
	if code != 0 || !strings.Contains(out, hostKey+": exists, mode 0600\n") || strings.Contains(out, "serve.host_key") {
		t.Errorf("host key 0600: exit %d\n%s", code, out)
	}
	chmodFile(t, hostKey, 0o640)
	code, out, _ = runCLI(t, "config", "check", sites)
	if code != 0 || !strings.Contains(out, hostKey+": exists, mode 0640 (too open)") ||
		!strings.Contains(out, "warning: "+sites+": serve.host_key: host key "+hostKey+" is open to group or others (mode 0640)") ||
		!strings.Contains(out, "run: chmod 600 "+hostKey) {
		t.Errorf("host key 0640: exit %d\n%s", code, out)
	}
	if strings.Contains(out, "BEGIN OPENSSH") {
		t.Error("the host key is printed")
	}

	// --json carries the same facts.
	code, out, _ = runCLI(t, "config", "check", "--json", sites)
	var rep configReport
	if code != 0 || json.Unmarshal([]byte(out), &rep) != nil || !rep.Valid {
		t.Fatalf("--json: exit %d\n%s", code, out)
	}
	facts := map[string]string{}
	for _, f := range rep.Facts {
		facts[f[0]] = f[1]
	}
	if facts["serve listen"] != "0.0.0.0:2222 (ssh)" || facts["serve max sessions"] != "8" || facts["serve operators"] != ops+": 3 key(s), mode 0644" {
		t.Errorf("--json facts %v", facts)
	}
}

// A named keys file that is missing stops `ckanops serve`, so it is a
// problem; an empty one is a warning; without [serve] one line says so.
func TestConfigCheckServeProblems(t *testing.T) {
	t.Setenv("CKANOPS_TEST_SERVE_TOKEN", "3f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c")
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "operators.keys"), "# nobody yet\n\n", 0o600)
	sites := writeFile(t, filepath.Join(dir, "sites.toml"), serveSitesHead+`
[serve]
operators = "operators.keys"
viewers = "missing.keys"
`, 0o600)
	code, out, _ := runCLI(t, "config", "check", sites)
	missing := filepath.Join(dir, "missing.keys")
	for _, want := range []string{
		"NOT valid",
		"problem: " + sites + ": serve.viewers: " + missing + " does not exist: ckanops serve would not start",
		"serve viewers", missing + ": NOT usable",
		"warning: " + sites + ": serve.operators: " + filepath.Join(dir, "operators.keys") + " holds no keys",
		"serve listen", "127.0.0.1:2222 (ssh)",
		"serve metrics", "off",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if code != 1 {
		t.Errorf("exit %d, want 1", code)
	}

	// A bad [serve] is reported by line and key, like every other key.
	bad := writeFile(t, filepath.Join(dir, "bad.toml"), serveSitesHead+`
[serve]
operators = "operators.keys"
max_sessions = 0
`, 0o600)
	code, out, _ = runCLI(t, "config", "check", bad)
	if code != 1 || !strings.Contains(out, "problem: "+bad+":8: serve.max_sessions: must be from 1 to 1024, found 0") {
		t.Errorf("bad: exit %d\n%s", code, out)
	}

	plain := writeFile(t, filepath.Join(dir, "plain.toml"), serveSitesHead, 0o600)
	code, out, _ = runCLI(t, "config", "check", plain)
	if code != 0 || !strings.Contains(out, "serve  ") || !strings.Contains(out, "not configured (no [serve]; ckanops serve would need --operators)") ||
		strings.Contains(out, "serve listen") {
		t.Errorf("no [serve]: exit %d\n%s", code, out)
	}
}
