package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ckanops/ckanops/config"
	"github.com/ckanops/ckanops/internal/testpg"
	"github.com/ckanops/ckanops/runbook/snapshot"
)

// A database dumped in parallel (above [snapshot] parallel_threshold_bytes):
// verify lists its directory and checks every file of it; restore --jobs
// restores it with pg_restore -j; a tampered file fails verify.
func TestSnapshotParallelDumpCLI(t *testing.T) {
	cl := testpg.Start(t)
	ctx := context.Background()
	src := cl.CreateDB(t, "datapusher_jobs")
	conn, err := pgx.Connect(ctx, src)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{
		`CREATE TABLE jobs (job_id text PRIMARY KEY, status text)`,
		`CREATE TABLE logs (id serial PRIMARY KEY, job_id text REFERENCES jobs(job_id), message text)`,
		`INSERT INTO jobs SELECT 'job-' || i, 'complete' FROM generate_series(1, 40) i`,
		`INSERT INTO logs (job_id, message) SELECT 'job-' || (i % 40 + 1), 'line ' || i FROM generate_series(1, 400) i`,
		`SELECT pg_stat_force_next_flush()`,
	} {
		if _, err := conn.Exec(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	conn.Close(ctx)
	m, err := snapshot.Take(ctx, snapshot.Spec{
		Site: "data-city", Dir: t.TempDir(), PGDump: filepath.Join(cl.BinDir(), "pg_dump"),
		Databases:   []config.Database{{Name: "datapusher", DSN: config.SecretURL(src)}},
		StatsSettle: time.Millisecond, ParallelThreshold: 1, Jobs: 2,
	})
	if err != nil {
		t.Fatal(err)
	}
	if m.Format != snapshot.FormatDumpDir {
		t.Fatalf("format %d, want %d", m.Format, snapshot.FormatDumpDir)
	}
	files := m.DumpFiles("datapusher")
	pgRestore := filepath.Join(cl.BinDir(), "pg_restore")

	code, out, errOut := runCLI(t, "snapshot", "verify", "--pg-restore", pgRestore, m.Dir)
	wants := []string{"database datapusher: datapusher_jobs (datapusher.dir/, ", "files, dumped in parallel, 2 tables)", "ok    datapusher.dir/toc.dat"}
	for _, f := range files {
		wants = append(wants, "ok    "+f.Name)
	}
	for _, w := range wants {
		if code != 0 || !strings.Contains(out, w) {
			t.Errorf("verify: exit %d, lacks %q: %s %s", code, w, out, errOut)
		}
	}

	dst := cl.CreateDB(t, "datapusher_restored")
	code, out, errOut = runCLI(t, "snapshot", "restore", m.Dir, "--db", "datapusher="+dst, "--pg-restore", pgRestore, "--jobs", "0")
	if code != exitUsage || !strings.Contains(errOut, "--jobs 0: give at least 1") {
		t.Errorf("--jobs 0: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	code, out, errOut = runCLI(t, "snapshot", "restore", m.Dir, "--db", "datapusher="+dst, "--pg-restore", pgRestore, "--jobs", "2")
	if code != 0 || !strings.Contains(out, "with 2 parallel jobs") {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	conn, err = pgx.Connect(ctx, dst)
	if err != nil {
		t.Fatal(err)
	}
	var jobs, logs int
	if err := conn.QueryRow(ctx, `SELECT (SELECT count(*) FROM jobs), (SELECT count(*) FROM logs)`).Scan(&jobs, &logs); err != nil {
		t.Fatal(err)
	}
	conn.Close(ctx)
	if jobs != 40 || logs != 400 {
		t.Errorf("restored %d jobs, %d logs; want 40, 400", jobs, logs)
	}

	// Tamper with a data file of the directory.
	var data string
	for _, f := range files {
		if !strings.HasSuffix(f.Name, "/toc.dat") && f.Size > 0 {
			data = f.Name
		}
	}
	p := filepath.Join(m.Dir, data)
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0xff
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, errOut = runCLI(t, "snapshot", "verify", "--pg-restore", pgRestore, m.Dir)
	if code != exitFail || !strings.Contains(out, data) || !strings.Contains(out, "sha256") {
		t.Errorf("verify of a tampered %s: exit %d, stdout %q, stderr %q", data, code, out, errOut)
	}
}
