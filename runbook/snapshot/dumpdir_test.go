package snapshot

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/ckanops/ckanops/api"
	"github.com/ckanops/ckanops/config"
)

// databaseSize is pg_database_size of db.
func databaseSize(t *testing.T, db config.SecretURL) int64 {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, db.Reveal())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var n int64
	if err := conn.QueryRow(ctx, "SELECT pg_database_size(current_database())").Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// A database above the threshold is dumped with pg_dump -Fd -j into
// <name>.dir/, every file of which the manifest lists; one below stays
// -Fc. Both dumps' progress has the database's size as its total. verify
// checks every file and lists the directory with pg_restore; restore uses
// pg_restore -j (not one transaction) for the directory and gives the
// same rows; a tampered file fails verify and the restore is refused.
func TestParallelDump(t *testing.T) {
	fx := newFixture(t)
	ctx := context.Background()
	// Make ckan_db clearly the larger of the two.
	fx.sql(t, fx.ckan, `INSERT INTO tracking_raw SELECT 'k' || i, 'http://example.org/' || i, 'page' FROM generate_series(1, 20000) i`)
	ckanSize, dsSize := databaseSize(t, fx.ckan), databaseSize(t, fx.datastore)
	if ckanSize <= dsSize {
		t.Fatalf("ckan_db (%d bytes) is not larger than datastore_db (%d bytes)", ckanSize, dsSize)
	}

	dumpLog := filepath.Join(t.TempDir(), "pg_dump.log")
	out := &lines{}
	var mu sync.Mutex
	first := map[string]api.Progress{}
	spec := fx.spec(t.TempDir(), "", out)
	spec.PGDump = pgRestoreLogger(t, fx.pgDump, dumpLog) // logs argv, runs the real pg_dump
	spec.ParallelThreshold = dsSize                      // ckan_db above, datastore_db not
	spec.Jobs = 2
	spec.Progress = func(p api.Progress) {
		mu.Lock()
		defer mu.Unlock()
		if _, ok := first[p.Part]; !ok {
			first[p.Part] = p
		}
	}
	m, err := Take(ctx, spec)
	noSecret(t, err, out)
	t.Logf("output:\n%s", strings.Join(out.all(), "\n"))
	if err != nil {
		t.Fatal(err)
	}
	if m.Verdict != Consistent || m.Format != FormatDumpDir {
		t.Fatalf("verdict %s (%q), format %d; want consistent, format %d", m.Verdict, m.Changed, m.Format, FormatDumpDir)
	}

	// pg_dump's argv: -Fd -j 2 for ckan_db, -Fc for datastore_db.
	b, err := os.ReadFile(dumpLog)
	if err != nil {
		t.Fatal(err)
	}
	var dirArgv, customArgv int
	for _, l := range strings.Split(string(b), "\n") {
		switch {
		case strings.Contains(l, "--format=directory --jobs=2 ") && strings.Contains(l, "/ckan?") || strings.Contains(l, "--format=directory --jobs=2 ") && strings.HasSuffix(l, "/ckan"):
			dirArgv++
		case strings.Contains(l, "--format=custom") && strings.Contains(l, "datastore"):
			customArgv++
		case strings.HasPrefix(l, "argv"):
			t.Errorf("unexpected pg_dump run: %s", l)
		}
	}
	if dirArgv != 1 || customArgv != 1 {
		t.Errorf("pg_dump runs: %d directory, %d custom; want 1 each:\n%s", dirArgv, customArgv, b)
	}

	// The manifest lists every file of ckan_db.dir, and datastore_db.dump.
	dir := filepath.Join(m.Dir, DumpDirName(SourceCKANDB))
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var onDisk, listed []string
	for _, e := range entries {
		onDisk = append(onDisk, DumpDirName(SourceCKANDB)+"/"+e.Name())
	}
	for _, f := range m.DumpFiles(SourceCKANDB) {
		if f.Kind != KindPGDumpDir || f.Source != SourceCKANDB {
			t.Errorf("ckan_db's file %+v", f)
		}
		size, sum := sha256File(t, filepath.Join(m.Dir, f.Name))
		if size != f.Size || sum != f.SHA256 {
			t.Errorf("%s: %d bytes %s on disk, manifest %d %s", f.Name, size, sum, f.Size, f.SHA256)
		}
		if fi, err := os.Stat(filepath.Join(m.Dir, f.Name)); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v (%v), want 0600", f.Name, fi.Mode(), err)
		}
		listed = append(listed, f.Name)
	}
	slices.Sort(onDisk)
	if len(onDisk) < 2 || !slices.Contains(onDisk, DumpDirName(SourceCKANDB)+"/toc.dat") || !reflect.DeepEqual(onDisk, listed) {
		t.Errorf("ckan_db.dir holds %q, the manifest lists %q", onDisk, listed)
	}
	if ds := m.DumpFiles(SourceDatastoreDB); len(ds) != 1 || ds[0].Kind != KindPGDump || ds[0].Name != DumpFileName(SourceDatastoreDB) {
		t.Errorf("datastore_db's files: %+v", ds)
	}
	if _, err := os.Stat(filepath.Join(m.Dir, DumpFileName(SourceCKANDB))); !os.IsNotExist(err) {
		t.Errorf("ckan_db.dump exists beside ckan_db.dir: %v", err)
	}

	// Progress: each dump's total is its database's size.
	for part, want := range map[string]int64{"pg_dump " + SourceCKANDB: ckanSize, "pg_dump " + SourceDatastoreDB: dsSize} {
		p, ok := first[part]
		if !ok || p.TotalBytes <= 0 {
			t.Errorf("%s: first progress %+v (reported %v), want a total", part, p, ok)
			continue
		}
		// The database may have grown a little between the two readings.
		if p.TotalBytes < want/2 || p.TotalBytes > want*2 {
			t.Errorf("%s: total %d, database size %d", part, p.TotalBytes, want)
		}
	}

	// It loads back; verify passes.
	if _, err := Load(m.Dir); err != nil {
		t.Fatal(err)
	}
	rep, err := Verify(ctx, m.Dir, fx.pgRestore)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK || len(rep.Files) != len(m.Files) {
		t.Fatalf("verify: %+v", rep)
	}

	// Restore: pg_restore -j 2 for the directory, one transaction for the
	// custom dump; the same rows.
	restoreLog := filepath.Join(t.TempDir(), "pg_restore.log")
	ckan := withPassword(t, fx.cl.CreateDB(t, "ckan_parallel"))
	ds := withPassword(t, fx.cl.CreateDB(t, "datastore_parallel"))
	rout := &lines{}
	rrep, err := Restore(ctx, RestoreSpec{Dir: m.Dir, CKANDB: ckan, DatastoreDB: ds, Jobs: 2,
		PGRestore: pgRestoreLogger(t, fx.pgRestore, restoreLog), Output: rout.add})
	noSecret(t, err, rout)
	t.Logf("restore output:\n%s", strings.Join(rout.all(), "\n"))
	if err != nil {
		t.Fatal(err)
	}
	if len(rrep.Databases) != 2 || !rrep.Databases[0].Done || rrep.Databases[0].File != DumpDirName(SourceCKANDB) || rrep.Databases[0].Tables != 6 {
		t.Errorf("restore report: %+v", rrep.Databases)
	}
	if got, want := tableState(t, ckan), tableState(t, fx.ckan); !reflect.DeepEqual(got, want) {
		t.Errorf("ckan_db restored:\n%v\nsource:\n%v", got, want)
	}
	if got, want := tableState(t, ds), tableState(t, fx.datastore); !reflect.DeepEqual(got, want) {
		t.Errorf("datastore_db restored:\n%v\nsource:\n%v", got, want)
	}
	b, err = os.ReadFile(restoreLog)
	if err != nil {
		t.Fatal(err)
	}
	var parallel, single int
	for _, l := range strings.Split(string(b), "\n") {
		if !strings.HasPrefix(l, "argv") {
			continue
		}
		switch {
		case strings.Contains(l, "--jobs=2") && !strings.Contains(l, "--single-transaction") && strings.HasSuffix(l, DumpDirName(SourceCKANDB)):
			parallel++
		case strings.Contains(l, "--single-transaction") && !strings.Contains(l, "--jobs") && strings.HasSuffix(l, DumpFileName(SourceDatastoreDB)):
			single++
		case strings.Contains(l, "--list"):
		default:
			t.Errorf("unexpected pg_restore run: %s", l)
		}
	}
	if parallel != 1 || single != 1 {
		t.Errorf("pg_restore runs: %d parallel, %d single; want 1 each:\n%s", parallel, single, b)
	}

	// A file the manifest does not list fails verify, on toc.dat's check.
	stray := filepath.Join(dir, "9999.dat.gz")
	if err := os.WriteFile(stray, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	rep, err = Verify(ctx, m.Dir, fx.pgRestore)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range rep.Files {
		isTOC := c.Name == DumpDirName(SourceCKANDB)+"/toc.dat"
		if c.OK == isTOC || (isTOC && !strings.Contains(c.Problem, "does not list: 9999.dat.gz")) {
			t.Errorf("verify with a stray file: %+v", c)
		}
	}
	if err := os.Remove(stray); err != nil {
		t.Fatal(err)
	}

	// A tampered file of the directory fails verify, and the restore is
	// refused.
	var data string
	for _, f := range m.DumpFiles(SourceCKANDB) {
		if !strings.HasSuffix(f.Name, "/toc.dat") && f.Size > 0 {
			data = f.Name
		}
	}
	if data == "" {
		t.Fatal("ckan_db.dir holds no data file")
	}
	flip(t, filepath.Join(m.Dir, data))
	rep, err = Verify(ctx, m.Dir, fx.pgRestore)
	if err != nil {
		t.Fatal(err)
	}
	if rep.OK {
		t.Fatalf("verify passed a tampered %s", data)
	}
	for _, c := range rep.Files {
		if c.OK == (c.Name == data) || (c.Name == data && !strings.Contains(c.Problem, "sha256")) {
			t.Errorf("verify: %+v", c)
		}
	}
	ckan2 := withPassword(t, fx.cl.CreateDB(t, "ckan_parallel2"))
	rrep, err = Restore(ctx, RestoreSpec{Dir: m.Dir, CKANDB: ckan2, PGRestore: fx.pgRestore})
	wantRefused(t, rrep, err, data)
	if n := tableCount(t, ckan2); n != 0 {
		t.Errorf("a refused restore wrote %d tables", n)
	}
}

// Below the threshold (the default), every database stays -Fc, the
// manifest's format does not change, and a dump's progress has a total.
func TestSmallDumpStaysCustom(t *testing.T) {
	fx := newFixture(t)
	out := &lines{}
	var mu sync.Mutex
	totals := map[string]int64{}
	spec := fx.spec(t.TempDir(), "", out)
	spec.Progress = func(p api.Progress) {
		mu.Lock()
		defer mu.Unlock()
		totals[p.Part] = p.TotalBytes
	}
	m, err := Take(context.Background(), spec)
	if err != nil {
		t.Fatal(err)
	}
	if m.Format != FormatVersion {
		t.Errorf("format %d, want %d", m.Format, FormatVersion)
	}
	for _, f := range m.Files {
		if f.Kind != KindPGDump {
			t.Errorf("file %+v", f)
		}
	}
	for _, src := range []string{SourceCKANDB, SourceDatastoreDB} {
		if totals["pg_dump "+src] <= 0 {
			t.Errorf("pg_dump %s: progress total %d, want the database's size", src, totals["pg_dump "+src])
		}
	}
}

// A directory dump needs format 5; a ckanops that reads up to format 4
// refuses format 5 by its number (as this one refuses format 6).
func TestManifestDumpDir(t *testing.T) {
	base := func(format int, files string) string {
		return fmt.Sprintf(`{"format": %d, "site": "s", "ckan_version": "", "mode_version": 1, "fence": 0,
"times": {"started": "2024-03-01T11:00:00Z", "ended": "2024-03-01T11:01:00Z"},
"files": [%s], "databases": [], "storages": [], "storages_not_included": [], "not_configured": ["datastore_db", "storage"],
"verdict": "consistent", "changed": [], "bookkeeping": []}`, format, files)
	}
	sum := strings.Repeat("ab", 32)
	toc := `{"name": "ckan_db.dir/toc.dat", "kind": "pg_dump_dir", "source": "ckan_db", "size": 10, "sha256": "` + sum + `"}`
	data := `{"name": "ckan_db.dir/3001.dat.gz", "kind": "pg_dump_dir", "source": "ckan_db", "size": 10, "sha256": "` + sum + `"}`
	m, err := decodeManifest([]byte(base(FormatDumpDir, toc+","+data)))
	if err != nil {
		t.Fatal(err)
	}
	if fs := m.DumpFiles(SourceCKANDB); len(fs) != 2 {
		t.Errorf("DumpFiles: %+v", fs)
	}
	for _, c := range []struct{ json, want string }{
		{base(FormatTree, toc+","+data), `kind "pg_dump_dir" needs format 5`},
		{base(FormatDumpDir, data), "lists no toc.dat"},
		{base(FormatDumpDir, strings.Replace(toc, "ckan_db.dir/", "other.dir/", 1)), "not a file of ckan_db.dir"},
		{base(FormatDumpDir+1, toc), "format 6 is not one this ckanops reads"},
	} {
		if _, err := decodeManifest([]byte(c.json)); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("error %v, want %q", err, c.want)
		}
	}
}
