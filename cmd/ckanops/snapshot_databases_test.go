package main

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ckanops/ckanops/config"
	"github.com/ckanops/ckanops/internal/testpg"
	"github.com/ckanops/ckanops/runbook/snapshot"
)

// The site's other databases ([[database]]): verify lists them and checks
// their dumps; restore takes each by --db NAME=URL, in one transaction,
// refusing a non-empty target unless --clean.
func TestSnapshotRestoreOtherDatabaseCLI(t *testing.T) {
	cl := testpg.Start(t)
	ctx := context.Background()
	src := cl.CreateDB(t, "datapusher_jobs")
	conn, err := pgx.Connect(ctx, src)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{
		`CREATE TABLE jobs (job_id text PRIMARY KEY, status text)`,
		`INSERT INTO jobs SELECT 'job-' || i, 'complete' FROM generate_series(1, 40) i`,
		`SELECT pg_stat_force_next_flush()`,
	} {
		if _, err := conn.Exec(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	conn.Close(ctx)
	m, err := snapshot.Take(ctx, snapshot.Spec{
		Site: "data-city", Dir: t.TempDir(), PGDump: filepath.Join(cl.BinDir(), "pg_dump"),
		Databases: []config.Database{{Name: "datapusher", DSN: config.SecretURL(src)}}, StatsSettle: time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	pgRestore := filepath.Join(cl.BinDir(), "pg_restore")

	code, out, errOut := runCLI(t, "snapshot", "verify", "--pg-restore", pgRestore, m.Dir)
	for _, w := range []string{"database datapusher: datapusher_jobs (datapusher.dump, 1 tables)", "ok    datapusher.dump"} {
		if code != 0 || !strings.Contains(out, w) {
			t.Errorf("verify: exit %d, lacks %q: %s %s", code, w, out, errOut)
		}
	}

	dst := cl.CreateDB(t, "datapusher_restored")
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--db", "datapusher"}, exitUsage, "--db datapusher: give NAME=URL"},
		{[]string{"--db", "ckan_db=" + dst}, exitUsage, `"ckan_db" is not the name of one of the site's other databases`},
		{[]string{"--db", "datapusher=" + dst, "--db", "datapusher=" + dst}, exitUsage, "the database datapusher is given twice"},
		{[]string{"--db", "datapusher=mysql://dp:hunter2222@db/x"}, exitUsage, "--db datapusher mysql://dp:xxxxx@db/x is not a postgres:// URL"},
		{[]string{"--db", "harvest=" + dst, "--pg-restore", pgRestore}, exitFail, "a harvest target was given, but the snapshot holds no harvest dump (it holds datapusher)"},
	} {
		code, out, errOut := runCLI(t, append([]string{"snapshot", "restore", m.Dir}, tc.args...)...)
		if code != tc.code || !strings.Contains(errOut, tc.want) || strings.Contains(out+errOut, "hunter2222") {
			t.Errorf("%v: exit %d (want %d), stdout %q, stderr %q", tc.args, code, tc.code, out, errOut)
		}
	}

	code, out, errOut = runCLI(t, "snapshot", "restore", m.Dir, "--db", "datapusher="+dst, "--pg-restore", pgRestore, "--json")
	if code != 0 {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	var rep struct {
		OK        bool `json:"ok"`
		Databases []struct {
			Name     string `json:"name"`
			Database string `json:"database"`
			File     string `json:"file"`
			Done     bool   `json:"done"`
			Tables   int    `json:"tables"`
		} `json:"databases"`
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("%v:\n%s", err, out)
	}
	if d := rep.Databases; !rep.OK || len(d) != 1 || d[0].Name != "datapusher" || d[0].Database != "datapusher_restored" || d[0].File != "datapusher.dump" || !d[0].Done || d[0].Tables != 1 {
		t.Errorf("report:\n%s", out)
	}
	conn, err = pgx.Connect(ctx, dst)
	if err != nil {
		t.Fatal(err)
	}
	var n int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM jobs WHERE status = 'complete'`).Scan(&n); err != nil || n != 40 {
		t.Errorf("restored jobs: %d rows, %v", n, err)
	}
	conn.Close(ctx)

	// Again: the target holds tables; --clean drops and recreates them.
	code, _, errOut = runCLI(t, "snapshot", "restore", m.Dir, "--db", "datapusher="+dst, "--pg-restore", pgRestore)
	if code != exitFail || !strings.Contains(errOut, "the datapusher target, database datapusher_restored, is not empty: it holds public.jobs") {
		t.Errorf("second restore: exit %d, stderr %q", code, errOut)
	}
	code, out, errOut = runCLI(t, "snapshot", "restore", m.Dir, "--db", "datapusher="+dst, "--pg-restore", pgRestore, "--clean")
	if code != 0 || !strings.Contains(out, "datapusher   database datapusher_restored: 1 tables") {
		t.Errorf("--clean: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
}
