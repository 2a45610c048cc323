package main

import (
	"path/filepath"
	"strings"
	"testing"
)

// config check lists the site's other databases, their URLs redacted, and
// warns that pg_dump is missing for them alone; a bad [[database]] is a
// problem in FILE:LINE: KEY: form.
func TestConfigCheckDatabases(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "ops.token"), "s3cret-ops-token-5e0d1c2b3a49f8e7d6c5b4a39281706f\n", 0o600)
	gate := writeFile(t, filepath.Join(dir, "gate.toml"), `site = "prod"
listen = "127.0.0.1:8080"
upstream = "http://127.0.0.1:5000"

[auth]
ops_token_file = "ops.token"

[[database]]
name = "datapusher"
dsn = "postgresql://datapusher:hunter2pw@db.internal/datapusher_jobs"

[[database]]
name = "harvest"
dsn = "postgres://harvest@db.internal:5433/harvest"

[snapshot]
dir = "snapshots"
pg_dump = "/nonexistent/pg_dump"
`, 0o600)
	code, out, errOut := runCLI(t, "config", "check", gate)
	if code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, out, errOut)
	}
	for _, want := range []string{
		"probe db:datapusher", "postgresql://datapusher:xxxxx@db.internal/datapusher_jobs ([[database]] datapusher: drained, snapshotted as datapusher.dump)",
		"probe db:harvest", "postgres://harvest@db.internal:5433/harvest ([[database]] harvest",
		"warning: snapshot.pg_dump",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out+errOut, "hunter2pw") {
		t.Errorf("the password is printed:\n%s%s", out, errOut)
	}

	bad := writeFile(t, filepath.Join(dir, "bad.toml"), `site = "prod"
listen = "127.0.0.1:8080"
upstream = "http://127.0.0.1:5000"

[auth]
ops_token_file = "ops.token"

[[database]]
name = "datastore_db"
dsn = "postgresql://ds:hunter2pw@db.internal/datastore"
`, 0o600)
	code, out, errOut = runCLI(t, "config", "check", bad)
	if code == 0 || !strings.Contains(out+errOut, `bad.toml:9: database.name: "datastore_db" is reserved`) || strings.Contains(out+errOut, "hunter2pw") {
		t.Errorf("exit %d\n%s\n%s", code, out, errOut)
	}
}
