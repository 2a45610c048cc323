package main

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
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

// storageSnapshot writes a storage-only snapshot (a.txt, d/b.txt) with a
// manifest that matches it, and returns its directory.
func storageSnapshot(t *testing.T, verdict string) string {
	t.Helper()
	return storagesSnapshot(t, verdict, nil, "default")
}

// storagesSnapshot writes a storage-only snapshot of the storages named,
// one tar each (storage.tar for "default", storage-<name>.tar else), each
// holding a.txt, d/ and d/b.txt ("beta-<name>" for a storage other than
// default), with a manifest that matches them and lists notIncluded.
func storagesSnapshot(t *testing.T, verdict string, notIncluded []snapshot.StorageNotIncluded, names ...string) string {
	t.Helper()
	started := time.Date(2024, 3, 1, 11, 2, 3, 0, time.UTC)
	dir := filepath.Join(t.TempDir(), "data-city-"+started.Format(snapshot.TimeLayout))
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	m := snapshot.Manifest{
		Format: snapshot.FormatVersion, Site: "data-city", CKANVersion: "2.12.0",
		Times:         snapshot.Times{Started: started, Ended: started.Add(time.Minute)},
		Files:         []snapshot.File{},
		Databases:     []snapshot.Database{},
		Storages:      []snapshot.Storage{},
		NotConfigured: []string{snapshot.SourceCKANDB, snapshot.SourceDatastoreDB},
		Verdict:       verdict, Changed: []string{}, Bookkeeping: []string{},

		StoragesNotIncluded: append([]snapshot.StorageNotIncluded{}, notIncluded...),
	}
	for _, name := range names {
		beta := "beta"
		if name != "default" {
			beta += "-" + name
		}
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		for _, f := range []struct{ name, body string }{{"a.txt", "alpha"}, {"d/", ""}, {"d/b.txt", beta}} {
			hdr := &tar.Header{Name: f.name, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(f.body)), ModTime: started}
			if strings.HasSuffix(f.name, "/") {
				hdr.Typeflag, hdr.Mode = tar.TypeDir, 0o755
			}
			if err := tw.WriteHeader(hdr); err != nil {
				t.Fatal(err)
			}
			tw.Write([]byte(f.body))
		}
		if err := tw.Close(); err != nil {
			t.Fatal(err)
		}
		file := snapshot.StorageFileName(name)
		if err := os.WriteFile(filepath.Join(dir, file), buf.Bytes(), 0o600); err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(buf.Bytes())
		m.Files = append(m.Files, snapshot.File{Name: file, Kind: snapshot.KindTar, Source: snapshot.SourceStorage, Size: int64(buf.Len()), SHA256: hex.EncodeToString(sum[:])})
		m.Storages = append(m.Storages, snapshot.Storage{Name: name, Path: "/srv/ckan/" + name, File: file})
	}
	if verdict == snapshot.Inconsistent {
		m.Changed = []string{"storage file d/b.txt modified"}
	}
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, snapshot.ManifestName), b, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := snapshot.Load(dir); err != nil {
		t.Fatalf("the hand-made snapshot does not load: %v", err)
	}
	return dir
}

func TestSnapshotCommandUsage(t *testing.T) {
	for _, args := range [][]string{{"snapshot"}, {"snapshot", "frobnicate"}} {
		code, _, errOut := runCLI(t, args...)
		if code != exitUsage || !strings.Contains(errOut, "ckanops snapshot verify DIR") || !strings.Contains(errOut, "ckanops snapshot restore DIR") {
			t.Errorf("%v: exit %d, stderr %q", args, code, errOut)
		}
	}
	code, out, _ := runCLI(t, "snapshot", "--help")
	if code != 0 || !strings.Contains(out, "Usage: ckanops snapshot verify|restore [flags] DIR") || !strings.Contains(out, "--clean") || !strings.Contains(out, "--force") {
		t.Errorf("snapshot --help: exit %d:\n%s", code, out)
	}
	code, out, _ = runCLI(t, "snapshot", "restore", "--help")
	if code != 0 || !strings.Contains(out, "Usage: ckanops snapshot restore DIR") {
		t.Errorf("snapshot restore --help: exit %d:\n%s", code, out)
	}
	for _, f := range []string{"-ckan-db URL", "-datastore-db URL", "-storage PATH", "-force", "-clean", "-pg-restore PROGRAM", "-json", "PGPASSWORD or ~/.pgpass", "Exit status: 0 restored"} {
		if !strings.Contains(out, f) {
			t.Errorf("snapshot restore --help lacks %q", f)
		}
	}
	code, out, _ = runCLI(t, "snapshot", "verify", "--help")
	if code != 0 || !strings.Contains(out, "Usage: ckanops snapshot verify") || !strings.Contains(out, "-pg-restore") {
		t.Errorf("snapshot verify --help: exit %d:\n%s", code, out)
	}
}

func TestSnapshotRestoreBadUsage(t *testing.T) {
	dir := storageSnapshot(t, snapshot.Consistent)
	target := filepath.Join(t.TempDir(), "storage")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--storage", target}, "give exactly one snapshot DIR"},
		{[]string{dir, dir, "--storage", target}, "give exactly one snapshot DIR"},
		{[]string{dir}, "nothing to restore: give --ckan-db URL, --datastore-db URL, --db NAME=URL or --storage PATH"},
		{[]string{dir, "--ckan-db", "mysql://ckan:hunter2222@db/ckan"}, "--ckan-db mysql://ckan:xxxxx@db/ckan is not a postgres:// URL"},
		{[]string{dir, "--datastore-db", "host=db password=hunter2222"}, "is not a postgres:// URL"},
		{[]string{t.TempDir(), "--storage", target}, "has no manifest.json: not a complete snapshot"},
		{[]string{dir, "--no-such-flag"}, "no-such-flag"},
	} {
		code, out, errOut := runCLI(t, append([]string{"snapshot", "restore"}, tc.args...)...)
		if code != exitUsage || !strings.Contains(errOut, tc.want) || strings.Contains(errOut+out, "hunter2222") {
			t.Errorf("%v: exit %d, stdout %q, stderr %q", tc.args, code, out, errOut)
		}
	}
	if _, err := os.Lstat(target); err == nil {
		t.Error("bad usage wrote the target")
	}
}

func TestSnapshotRestoreRefusesAndRestores(t *testing.T) {
	inconsistent := storageSnapshot(t, snapshot.Inconsistent)
	target := filepath.Join(t.TempDir(), "storage")

	// Refused: inconsistent.
	code, out, errOut := runCLI(t, "snapshot", "restore", inconsistent, "--storage", target)
	if code != exitFail || !strings.Contains(errOut, "restore refused") || !strings.Contains(errOut, "storage file d/b.txt modified") || !strings.Contains(errOut, "--force") || !strings.Contains(errOut, "nothing was restored") {
		t.Errorf("inconsistent: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	if _, err := os.Lstat(target); err == nil {
		t.Fatal("a refused restore wrote the target")
	}
	// The same, as JSON.
	code, out, _ = runCLI(t, "snapshot", "restore", "--json", inconsistent, "--storage", target)
	var res struct {
		OK      bool   `json:"ok"`
		Refused bool   `json:"refused"`
		Error   string `json:"error"`
		Storage *struct {
			Done  bool  `json:"done"`
			Files int64 `json:"files"`
		} `json:"storage"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("--json: %v:\n%s", err, out)
	}
	if code != exitFail || res.OK || !res.Refused || !strings.Contains(res.Error, "--force") || res.Storage != nil {
		t.Errorf("--json refused: exit %d: %+v", code, res)
	}

	// Forced: restored, and said so.
	code, out, errOut = runCLI(t, "snapshot", "restore", inconsistent, "--storage", target, "--force")
	if code != 0 {
		t.Fatalf("--force: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	for _, w := range []string{"warning: restoring an inconsistent snapshot (forced", "storage: done, 2 files", "restored snapshot " + inconsistent + " (site data-city, inconsistent, forced)", "storage      " + target + ": 2 files (9 B), 1 directories, 0 links"} {
		if !strings.Contains(out, w) {
			t.Errorf("--force output lacks %q:\n%s", w, out)
		}
	}
	if b, err := os.ReadFile(filepath.Join(target, "d", "b.txt")); err != nil || string(b) != "beta" {
		t.Errorf("d/b.txt: %q, %v", b, err)
	}

	// Refused: the target is no longer empty; --clean unpacks over it.
	consistent := storageSnapshot(t, snapshot.Consistent)
	code, _, errOut = runCLI(t, "snapshot", "restore", consistent, "--storage", target)
	if code != exitFail || !strings.Contains(errOut, "is not empty") || !strings.Contains(errOut, "--clean") {
		t.Errorf("non-empty target: exit %d, stderr %q", code, errOut)
	}
	code, out, errOut = runCLI(t, "snapshot", "restore", consistent, "--storage", target, "--clean", "--json")
	res.OK, res.Refused, res.Error, res.Storage = false, false, "", nil
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("--json: %v:\n%s", err, out)
	}
	if code != 0 || !res.OK || res.Refused || res.Error != "" || res.Storage == nil || !res.Storage.Done || res.Storage.Files != 2 {
		t.Errorf("--clean --json: exit %d, %+v, stderr %q", code, res, errOut)
	}
	if !strings.Contains(errOut, "storage: done") {
		t.Errorf("--json progress is not on stderr: %q", errOut)
	}

	// A password on the command line: warned about, never shown. The
	// snapshot has no dump, so the restore is refused before connecting.
	code, out, errOut = runCLI(t, "snapshot", "restore", consistent, "--ckan-db", "postgres://ckan:hunter2222@127.0.0.1:1/ckan", "--pg-restore", "/bin/true")
	if code != exitFail || !strings.Contains(errOut, "warning: the --ckan-db URL holds a password, which other users can read in ps") ||
		!strings.Contains(errOut, "the snapshot holds no ckan_db dump (it was not configured when the snapshot was taken)") || strings.Contains(out+errOut, "hunter2222") {
		t.Errorf("password: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
}

func TestSnapshotRestoreCLIWithPostgres(t *testing.T) {
	cl := testpg.Start(t)
	ctx := context.Background()
	src := cl.CreateDB(t, "ckan")
	conn, err := pgx.Connect(ctx, src)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{
		`CREATE TABLE package (id text PRIMARY KEY, name text NOT NULL)`,
		`INSERT INTO package SELECT 'pkg-' || i, 'dataset-' || i FROM generate_series(1, 150) i`,
		`SELECT pg_stat_force_next_flush()`,
	} {
		if _, err := conn.Exec(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	conn.Close(ctx)
	storage := t.TempDir()
	os.WriteFile(filepath.Join(storage, "logo.png"), []byte("png"), 0o644)
	m, err := snapshot.Take(ctx, snapshot.Spec{
		Site: "data-city", Dir: t.TempDir(), PGDump: filepath.Join(cl.BinDir(), "pg_dump"),
		CKANDB: config.SecretURL(src), StoragePath: storage, StatsSettle: time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}

	dst := cl.CreateDB(t, "ckan_restored")
	target := filepath.Join(t.TempDir(), "storage")
	code, out, errOut := runCLI(t, "snapshot", "restore", m.Dir, "--ckan-db", dst, "--storage", target,
		"--pg-restore", filepath.Join(cl.BinDir(), "pg_restore"), "--json")
	if code != 0 {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	var rep struct {
		OK        bool `json:"ok"`
		Databases []struct {
			Name   string `json:"name"`
			Done   bool   `json:"done"`
			Tables int    `json:"tables"`
		} `json:"databases"`
		Storage struct {
			Files int64 `json:"files"`
		} `json:"storage"`
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("%v:\n%s", err, out)
	}
	if !rep.OK || len(rep.Databases) != 1 || rep.Databases[0].Name != "ckan_db" || !rep.Databases[0].Done || rep.Databases[0].Tables != 1 || rep.Storage.Files != 1 {
		t.Errorf("report:\n%s", out)
	}
	conn, err = pgx.Connect(ctx, dst)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var n int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM package`).Scan(&n); err != nil || n != 150 {
		t.Errorf("restored package: %d rows, %v", n, err)
	}
	if b, err := os.ReadFile(filepath.Join(target, "logo.png")); err != nil || string(b) != "png" {
		t.Errorf("logo.png: %q, %v", b, err)
	}

	// Again: the target now holds tables.
	code, _, errOut = runCLI(t, "snapshot", "restore", m.Dir, "--ckan-db", dst, "--pg-restore", filepath.Join(cl.BinDir(), "pg_restore"))
	if code != exitFail || !strings.Contains(errOut, "the ckan_db target, database ckan_restored, is not empty: it holds public.package") {
		t.Errorf("second restore: exit %d, stderr %q", code, errOut)
	}
}
