package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writeFile(t *testing.T, path, body string, mode os.FileMode) string {
	t.Helper()
	if err := os.WriteFile(path, []byte(body), mode); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestConfigCheckGate(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "ops.token"), "s3cret-ops-token-5e0d1c2b3a49f8e7d6c5b4a39281706f\n", 0o600)
	gate := writeFile(t, filepath.Join(dir, "gate.toml"), `site = "prod"
listen = "127.0.0.1:8080"
upstream = "http://127.0.0.1:5000"

[state]
file = "state/prod.state.json"
initial_mode = "read-only"
initial_message = "Read-only copy"

[auth]
ops_token_file = "ops.token"

[checks]
ckan_db = "postgres://ckan:hunter2pw@db.internal/ckan"
storage_path = "storage"

[snapshot]
dir = "snapshots"
pg_dump = "/nonexistent/pg_dump"

[[migrate]]
name = "db upgrade"
argv = ["ckan", "db", "upgrade"]
mode = "down"
`, 0o600)
	code, out, errOut := runCLI(t, "config", "check", gate)
	if code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, out, errOut)
	}
	for _, want := range []string{"(gate): valid", "upstream", "http://127.0.0.1:5000", "file " + filepath.Join(dir, "state", "prod.state.json"),
		`read-only ("Read-only copy")`, "ops.token: readable, mode 0600", "postgres://ckan:xxxxx@db.internal/ckan",
		"probe redis", "not configured", "(does not exist yet)", "/nonexistent/pg_dump (NOT found)",
		"warning: snapshot.pg_dump", "db upgrade: ckan db upgrade (timeout 1h, mode down)"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	for _, secret := range []string{"hunter2pw", "s3cret-ops-token"} {
		if strings.Contains(out+errOut, secret) {
			t.Errorf("a secret is printed: %s", secret)
		}
	}
	// --json carries the same findings.
	code, out, _ = runCLI(t, "config", "check", "--json", gate)
	var rep configReport
	if code != 0 || json.Unmarshal([]byte(out), &rep) != nil || rep.Kind != "gate" || !rep.Valid || len(rep.Facts) < 10 {
		t.Fatalf("--json: exit %d\n%s", code, out)
	}
	// Its flags may come before the word check.
	for _, args := range [][]string{{"config", "--json", "check", gate}, {"config", "--kind", "gate", "--json", "check", gate}} {
		if code, again, errOut := runCLI(t, args...); code != 0 || again != out {
			t.Errorf("%q: exit %d, %s\n%s", args, code, errOut, again)
		}
	}
	if code, _, errOut := runCLI(t, "config", gate, "check"); code != 2 || !strings.Contains(errOut, "want 'ckanops config check FILE'") {
		t.Errorf("config FILE check: exit %d, %s", code, errOut)
	}
}

func TestConfigCheckProblems(t *testing.T) {
	dir := t.TempDir()
	// The ops token file is missing: the gate would not start.
	gate := writeFile(t, filepath.Join(dir, "gate.toml"), `site = "prod"
listen = "127.0.0.1:8080"
upstream = "http://127.0.0.1:5000"
[auth]
ops_token_file = "missing.token"
`, 0o600)
	code, out, _ := runCLI(t, "config", "check", gate)
	if code != 1 || !strings.Contains(out, "NOT valid") || !strings.Contains(out, "missing.token") {
		t.Fatalf("missing token: exit %d\n%s", code, out)
	}
	code, out, _ = runCLI(t, "config", "check", filepath.Join("..", "..", "config", "testdata", "gate_many.toml"))
	if code != 1 || !strings.Contains(out, "gate_many.toml:4: colour: unknown key") {
		t.Fatalf("gate_many: exit %d\n%s", code, out)
	}
	sites := writeFile(t, filepath.Join(dir, "sites.toml"), `[[site]]
name = "prod"
url = "https://data.example.org"
token_env = "CKANOPS_TEST_NO_SUCH_VAR"
`, 0o600)
	code, out, _ = runCLI(t, "config", "check", sites)
	if code != 1 || !strings.Contains(out, "(sites)") || !strings.Contains(out, "CKANOPS_TEST_NO_SUCH_VAR") {
		t.Fatalf("sites: exit %d\n%s", code, out)
	}
	if code, _, errOut := runCLI(t, "config", "lint", sites); code != 2 || !strings.Contains(errOut, "config check FILE") {
		t.Fatalf("bad usage: %d %s", code, errOut)
	}
	if code, _, _ := runCLI(t, "config", "check", filepath.Join(dir, "nope.toml")); code != 1 {
		t.Fatalf("missing file: %d", code)
	}
}

// A weak ops token stops both `config check` and `gate`, with the file
// and how to make a strong one.
func TestWeakOpsTokenRefused(t *testing.T) {
	dir := t.TempDir()
	tok := writeFile(t, filepath.Join(dir, "ops.token"), "changeme\n", 0o600)
	gate := writeFile(t, filepath.Join(dir, "gate.toml"), `site = "prod"
listen = "127.0.0.1:0"
upstream = "http://127.0.0.1:5000"
[state]
file = "state/prod.state.json"
[auth]
ops_token_file = "ops.token"
`, 0o600)
	want := []string{"auth.ops_token_file: token file " + tok, "is 8 characters long: it must be at least 32",
		"make one with: openssl rand -hex 32 > " + tok + " && chmod 600 " + tok}
	code, out, errOut := runCLI(t, "config", "check", gate)
	if code != 1 || !strings.Contains(out, "NOT valid") || !strings.Contains(out, tok+": NOT usable") {
		t.Fatalf("config check: exit %d\n%s%s", code, out, errOut)
	}
	for _, w := range want {
		if !strings.Contains(out, w) {
			t.Errorf("config check output lacks %q:\n%s", w, out)
		}
	}
	code, out, errOut = runCLI(t, "gate", "--config", gate)
	if code == 0 {
		t.Fatalf("gate started with a weak token:\n%s%s", out, errOut)
	}
	for _, w := range want {
		if !strings.Contains(errOut, w) {
			t.Errorf("gate's error lacks %q:\n%s", w, errOut)
		}
	}
	if strings.Contains(out+errOut, "changeme") {
		t.Error("the token is printed")
	}
	if _, err := os.Stat(filepath.Join(dir, "state")); err == nil {
		t.Error("the gate created its state before refusing the token")
	}
}
