package snapshot

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ckanops/ckanops/config"
)

// lchtimes sets a path's times without following a link.
func lchtimes(t *testing.T, p string, when time.Time) {
	t.Helper()
	d, err := os.Open(filepath.Dir(p))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if err := lutimesAt(int(d.Fd()), filepath.Base(p), when); err != nil {
		t.Fatal(err)
	}
}

// restorableStorage is newStorage with the link's time in whole seconds
// too, so that the restored tree's digest can equal the manifest's (tar
// keeps seconds).
func restorableStorage(t *testing.T) (string, []storageFile) {
	t.Helper()
	root, files := newStorage(t)
	lchtimes(t, filepath.Join(root, "latest.csv"), mtime)
	return root, files
}

// tableState is, per user table of a database, its row count and a
// digest of its rows.
func tableState(t *testing.T, db config.SecretURL) map[string]string {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, db.Reveal())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, `SELECT schemaname, tablename FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1, 2`)
	if err != nil {
		t.Fatal(err)
	}
	type tbl struct{ schema, name string }
	tables, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (tbl, error) {
		var x tbl
		return x, r.Scan(&x.schema, &x.name)
	})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, tb := range tables {
		id := pgx.Identifier{tb.schema, tb.name}.Sanitize()
		var n int64
		var sum string
		if err := conn.QueryRow(ctx, `SELECT count(*), coalesce(md5(string_agg(t::text, '|' ORDER BY t::text)), '') FROM `+id+` t`).Scan(&n, &sum); err != nil {
			t.Fatal(err)
		}
		out[tb.schema+"."+tb.name] = fmt.Sprintf("%d rows %s", n, sum)
	}
	return out
}

// tableCount is how many user tables a database holds.
func tableCount(t *testing.T, db config.SecretURL) int {
	t.Helper()
	return len(tableState(t, db))
}

// dirState is every entry under dir: kind, size, time, mode and content
// digest, to show that nothing changed.
func dirState(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		s := fmt.Sprintf("%v %d %d", info.Mode(), info.Size(), info.ModTime().UnixNano())
		if info.Mode().IsRegular() {
			_, sum := sha256File(t, p)
			s += " " + sum
		}
		out[p] = s
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// pgRestoreLogger is a pg_restore that logs its argv, and whether it got
// PGPASSWORD, to log, then runs the real one.
func pgRestoreLogger(t *testing.T, real, log string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "pg_restore")
	script := fmt.Sprintf("#!/bin/sh\nprintf 'argv %%s\\n' \"$*\" >> %s\n[ -n \"$PGPASSWORD\" ] && echo \"PGPASSWORD $PGPASSWORD\" >> %s\nexec %s \"$@\"\n", log, log, real)
	if err := os.WriteFile(p, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func wantRefused(t *testing.T, rep *RestoreReport, err error, want ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("Restore succeeded: %+v", rep)
	}
	t.Logf("error: %v", err)
	if !errors.Is(err, ErrRefused) {
		t.Errorf("error does not wrap ErrRefused: %v", err)
	}
	if rep != nil {
		t.Errorf("a refusal returned a report: %+v", rep)
	}
	if !strings.HasPrefix(err.Error(), "snapshot: restore refused: ") || !strings.HasSuffix(err.Error(), "(nothing was restored)") {
		t.Errorf("error: %v", err)
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error lacks %q", w)
		}
	}
}

func TestRestore(t *testing.T) {
	fx := newFixture(t)
	ctx := context.Background()

	storage, files := restorableStorage(t)
	out := &lines{}
	m, err := Take(ctx, fx.spec(t.TempDir(), storage, out))
	if err != nil {
		t.Fatal(err)
	}
	if m.Verdict != Consistent {
		t.Fatalf("the fixture's snapshot is %s: %q", m.Verdict, m.Changed)
	}
	n := 0
	fresh := func(t *testing.T) (ckan, datastore config.SecretURL) {
		n++
		return withPassword(t, fx.cl.CreateDB(t, fmt.Sprintf("ckan_%d", n))), withPassword(t, fx.cl.CreateDB(t, fmt.Sprintf("datastore_%d", n)))
	}

	t.Run("into fresh targets", func(t *testing.T) {
		srcCKAN, srcDS := tableState(t, fx.ckan), tableState(t, fx.datastore)
		srcStorage := dirState(t, storage)
		snap := dirState(t, m.Dir)
		_, srcTree, err := walkStorage(ctx, storage)
		if err != nil {
			t.Fatal(err)
		}

		ckan, ds := fresh(t)
		target := filepath.Join(t.TempDir(), "storage")
		log := filepath.Join(t.TempDir(), "pg_restore.log")
		out := &lines{}
		rep, err := Restore(ctx, RestoreSpec{
			Dir: m.Dir, CKANDB: ckan, DatastoreDB: ds, StoragePath: target,
			PGRestore: pgRestoreLogger(t, fx.pgRestore, log), Output: out.add,
		})
		noSecret(t, err, out)
		t.Logf("output:\n%s", strings.Join(out.all(), "\n"))
		if err != nil {
			t.Fatal(err)
		}

		// The report.
		if rep.Dir != m.Dir || rep.Site != "data-city" || rep.Verdict != Consistent || rep.Forced || len(rep.Databases) != 2 || rep.Storage == nil {
			t.Fatalf("report: %+v", rep)
		}
		for i, want := range []struct {
			name   string
			tables int
		}{{SourceCKANDB, 6}, {SourceDatastoreDB, 1}} {
			d := rep.Databases[i]
			if d.Name != want.name || !d.Done || d.Tables != want.tables || len(d.Missing) != 0 || d.Extra != 0 || d.TablesBefore != 0 || d.Clean || d.Seconds <= 0 {
				t.Errorf("database %d: %+v", i, d)
			}
		}
		var total int64
		for _, f := range files {
			total += int64(len(f.content))
		}
		st := rep.Storage
		if !st.Done || !st.Created || st.OverExisting || st.Files != int64(len(files)) || st.Symlinks != 1 || st.Dirs != 10 || st.Bytes != total || st.Replaced != 0 || st.Unrelated != 0 || st.Owners != (os.Geteuid() == 0) {
			t.Errorf("storage: %+v", st)
		}
		if len(rep.Notes) == 0 || !strings.Contains(strings.Join(rep.Notes, "\n"), "ckan datastore set-permissions") {
			t.Errorf("notes: %q", rep.Notes)
		}
		b, _ := json.Marshal(rep)
		if bytes.Contains(b, []byte(testPassword)) {
			t.Errorf("the report's JSON holds the password: %s", b)
		}

		// The databases hold what the sources hold, table by table, row
		// by row.
		if got := tableState(t, ckan); !reflect.DeepEqual(got, srcCKAN) {
			t.Errorf("ckan_db restored:\n%v\nsource:\n%v", got, srcCKAN)
		}
		if got := tableState(t, ds); !reflect.DeepEqual(got, srcDS) {
			t.Errorf("datastore_db restored:\n%v\nsource:\n%v", got, srcDS)
		}
		// The storage: the same tree, by the package's own digest.
		_, tree, err := walkStorage(ctx, target)
		if err != nil {
			t.Fatal(err)
		}
		if tree != m.Storages[0].After || tree != srcTree {
			t.Errorf("restored storage %+v, manifest %+v", tree, m.Storages[0].After)
		}
		for _, f := range files {
			b, err := os.ReadFile(filepath.Join(target, f.path))
			if err != nil || !bytes.Equal(b, f.content) {
				t.Errorf("%s: %d bytes, %v", f.path, len(b), err)
			}
		}
		if l, err := os.Readlink(filepath.Join(target, "latest.csv")); err != nil || l != "resources/0e7/d2a/4e-579e-341f-2a3b-4c5d6e7f8091" {
			t.Errorf("link: %q, %v", l, err)
		}
		filepath.WalkDir(target, func(p string, d fs.DirEntry, err error) error {
			if err == nil && strings.HasPrefix(d.Name(), tempRestorePrefix) {
				t.Errorf("temporary file left: %s", p)
			}
			return nil
		})

		// pg_restore got the password in its environment, never in argv,
		// and restored in one transaction.
		logged, err := os.ReadFile(log)
		if err != nil {
			t.Fatal(err)
		}
		var restores int
		for line := range strings.Lines(string(logged)) {
			if strings.HasPrefix(line, "argv ") && strings.Contains(line, testPassword) {
				t.Errorf("pg_restore's argv holds the password: %s", line)
			}
			if strings.HasPrefix(line, "argv --no-owner --no-privileges --exit-on-error --single-transaction --no-password --dbname=postgres://postgres@127.0.0.1:") {
				restores++
			}
		}
		if restores != 2 || strings.Count(string(logged), "PGPASSWORD "+testPassword) != 2 {
			t.Errorf("pg_restore log:\n%s", logged)
		}

		// Nothing of the source changed, nor the snapshot.
		if got := tableState(t, fx.ckan); !reflect.DeepEqual(got, srcCKAN) {
			t.Errorf("the source ckan_db changed")
		}
		if got := tableState(t, fx.datastore); !reflect.DeepEqual(got, srcDS) {
			t.Errorf("the source datastore_db changed")
		}
		if got := dirState(t, storage); !reflect.DeepEqual(got, srcStorage) {
			t.Errorf("the source storage changed")
		}
		if got := dirState(t, m.Dir); !reflect.DeepEqual(got, snap) {
			t.Errorf("the snapshot changed:\n%v\n%v", got, snap)
		}
	})

	t.Run("inconsistent snapshot", func(t *testing.T) {
		storage, _ := restorableStorage(t)
		s := fx.spec(t.TempDir(), storage, &lines{})
		s.DatastoreDB = ""
		s.afterBefore = func() {
			p := filepath.Join(storage, "new.txt")
			if err := os.WriteFile(p, []byte("written during the snapshot"), 0o644); err != nil {
				t.Error(err)
			}
			os.Chtimes(p, mtime, mtime)
		}
		im, err := Take(ctx, s)
		if err != nil {
			t.Fatal(err)
		}
		if im.Verdict != Inconsistent {
			t.Fatalf("verdict %s", im.Verdict)
		}
		ckan, _ := fresh(t)
		target := filepath.Join(t.TempDir(), "storage")
		spec := RestoreSpec{Dir: im.Dir, CKANDB: ckan, StoragePath: target, PGRestore: fx.pgRestore}
		rep, err := Restore(ctx, spec)
		wantRefused(t, rep, err, "is inconsistent", "storage file new.txt added", "--force")
		if _, err := os.Lstat(target); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("storage target: %v", err)
		}
		if n := tableCount(t, ckan); n != 0 {
			t.Errorf("refused, yet the target holds %d tables", n)
		}

		out := &lines{}
		spec.Force, spec.Output = true, out.add
		rep, err = Restore(ctx, spec)
		if err != nil {
			t.Fatal(err)
		}
		if !rep.Forced || rep.Verdict != Inconsistent || !reflect.DeepEqual(rep.Changed, im.Changed) || !rep.Databases[0].Done || !rep.Storage.Done {
			t.Errorf("report: %+v", rep)
		}
		if !containsLine(out.all(), "warning: restoring an inconsistent snapshot (forced") {
			t.Errorf("no warning: %q", out.all())
		}
		if got, want := tableState(t, ckan), tableState(t, fx.ckan); !reflect.DeepEqual(got, want) {
			t.Errorf("ckan_db restored:\n%v\nsource:\n%v", got, want)
		}
		if b, err := os.ReadFile(filepath.Join(target, "new.txt")); err != nil || string(b) != "written during the snapshot" {
			t.Errorf("new.txt: %q, %v", b, err)
		}
	})

	t.Run("targets not empty", func(t *testing.T) {
		busy, ds := fresh(t)
		fx.sql(t, busy,
			`CREATE TABLE package (id text PRIMARY KEY, name text NOT NULL, title text)`,
			`INSERT INTO package VALUES ('old', 'old-dataset', 'Old')`,
			`CREATE TABLE local_notes (note text)`,
			`INSERT INTO local_notes VALUES ('keep me')`,
		)
		busyBefore := tableState(t, busy)
		target := t.TempDir()
		res := "resources/0e7/d2a/4e-579e-341f-2a3b-4c5d6e7f8091"
		os.MkdirAll(filepath.Join(target, filepath.Dir(res)), 0o755)
		os.WriteFile(filepath.Join(target, res), []byte("stale"), 0o644)
		os.WriteFile(filepath.Join(target, "unrelated.txt"), []byte("not the snapshot's"), 0o644)
		targetBefore := dirState(t, target)

		// Both databases are checked before either is written.
		spec := RestoreSpec{Dir: m.Dir, CKANDB: busy, DatastoreDB: ds, PGRestore: fx.pgRestore}
		rep, err := Restore(ctx, spec)
		wantRefused(t, rep, err, "the ckan_db target, database ckan_", "is not empty: it holds public.local_notes; public.package", "--clean")
		if n := tableCount(t, ds); n != 0 {
			t.Errorf("refused, yet the empty target got %d tables", n)
		}
		if got := tableState(t, busy); !reflect.DeepEqual(got, busyBefore) {
			t.Errorf("refused, yet the busy target changed")
		}

		rep, err = Restore(ctx, RestoreSpec{Dir: m.Dir, StoragePath: target})
		wantRefused(t, rep, err, "storage target "+target+" is not empty (2 entries)", "--clean")
		if got := dirState(t, target); !reflect.DeepEqual(got, targetBefore) {
			t.Errorf("refused, yet the storage target changed")
		}

		// With Clean: the snapshot's objects and files replace theirs;
		// the rest stays.
		out := &lines{}
		spec.Clean, spec.StoragePath, spec.Output = true, target, out.add
		rep, err = Restore(ctx, spec)
		t.Logf("output:\n%s", strings.Join(out.all(), "\n"))
		if err != nil {
			t.Fatal(err)
		}
		got, src := tableState(t, busy), tableState(t, fx.ckan)
		if got["public.local_notes"] != busyBefore["public.local_notes"] {
			t.Errorf("local_notes: %s, want %s", got["public.local_notes"], busyBefore["public.local_notes"])
		}
		delete(got, "public.local_notes")
		if !reflect.DeepEqual(got, src) {
			t.Errorf("ckan_db restored with --clean:\n%v\nsource:\n%v", got, src)
		}
		d := rep.Databases[0]
		if !d.Done || !d.Clean || d.TablesBefore != 2 || d.Tables != 7 || d.Extra != 1 || len(d.Missing) != 0 {
			t.Errorf("ckan_db: %+v", d)
		}
		st := rep.Storage
		if !st.Done || st.Created || !st.OverExisting || st.Replaced != 1 || st.Unrelated != 1 || !reflect.DeepEqual(st.UnrelatedNames, []string{"unrelated.txt"}) {
			t.Errorf("storage: %+v", st)
		}
		if b, _ := os.ReadFile(filepath.Join(target, res)); string(b) != "city,population\nA,1000\n" {
			t.Errorf("%s not replaced: %q", res, b)
		}
		if b, _ := os.ReadFile(filepath.Join(target, "unrelated.txt")); string(b) != "not the snapshot's" {
			t.Errorf("unrelated.txt: %q", b)
		}
		if !strings.Contains(strings.Join(rep.Notes, "\n"), "1 entries of "+target+" that the snapshot does not hold were left in place (unrelated.txt)") {
			t.Errorf("notes: %q", rep.Notes)
		}
	})

	t.Run("a failed restore rolls back", func(t *testing.T) {
		ckan, _ := fresh(t)
		// A view on package: --clean cannot drop package, so pg_restore
		// fails after it has dropped and restored other objects.
		fx.sql(t, ckan,
			`CREATE TABLE package (id text PRIMARY KEY, name text NOT NULL, title text)`,
			`INSERT INTO package VALUES ('old', 'old-dataset', 'Old')`,
			`CREATE VIEW package_names AS SELECT name FROM package`,
		)
		before := tableState(t, ckan)
		target := filepath.Join(t.TempDir(), "storage")
		out := &lines{}
		rep, err := Restore(ctx, RestoreSpec{Dir: m.Dir, CKANDB: ckan, StoragePath: target, PGRestore: fx.pgRestore, Clean: true, Output: out.add})
		noSecret(t, err, out)
		if err == nil {
			t.Fatal("Restore succeeded")
		}
		t.Logf("error: %v", err)
		if errors.Is(err, ErrRefused) || rep == nil {
			t.Fatalf("a failure, not a refusal, with a report: %v, %+v", err, rep)
		}
		for _, w := range []string{"pg_restore of ckan_db.dump into ckan_db (database ckan_", "failed with exit status 1", "its single transaction rolled back: the database is as it was", "package", "not restored: ckan_db, storage"} {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("error lacks %q", w)
			}
		}
		if rep.Databases[0].Done || rep.Storage == nil || rep.Storage.Done {
			t.Errorf("report: %+v", rep)
		}
		if got := tableState(t, ckan); !reflect.DeepEqual(got, before) {
			t.Errorf("after the failed restore:\n%v\nbefore:\n%v", got, before)
		}
		if _, err := os.Lstat(target); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("storage unpacked after a failed restore: %v", err)
		}
	})

	t.Run("corrupted dump", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), filepath.Base(m.Dir))
		if err := os.CopyFS(dir, os.DirFS(m.Dir)); err != nil {
			t.Fatal(err)
		}
		flip(t, filepath.Join(dir, ckanDumpName))
		ckan, ds := fresh(t)
		target := filepath.Join(t.TempDir(), "storage")
		rep, err := Restore(ctx, RestoreSpec{Dir: dir, CKANDB: ckan, DatastoreDB: ds, StoragePath: target, PGRestore: fx.pgRestore})
		wantRefused(t, rep, err, "does not match its manifest: ckan_db.dump: sha256 ", "restore another snapshot")
		if tableCount(t, ckan) != 0 || tableCount(t, ds) != 0 {
			t.Error("refused, yet a target got tables")
		}
		if _, err := os.Lstat(target); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("storage target: %v", err)
		}
	})

	t.Run("target database missing", func(t *testing.T) {
		rep, err := Restore(ctx, RestoreSpec{Dir: m.Dir, CKANDB: withPassword(t, fx.cl.URL("no_such_db")), PGRestore: fx.pgRestore})
		if err == nil || rep != nil || !strings.Contains(err.Error(), "create it first (createdb -O OWNER no_such_db)") || strings.Contains(err.Error(), testPassword) {
			t.Errorf("Restore: %+v, %v", rep, err)
		}
	})

	t.Run("pg_restore fails", func(t *testing.T) {
		ckan, ds := fresh(t)
		script := filepath.Join(t.TempDir(), "pg_restore")
		os.WriteFile(script, []byte(`#!/bin/sh
case "$1" in --list) exec `+fx.pgRestore+` "$@";; esac
case "$*" in *datastore_*) ;; *) exec `+fx.pgRestore+` "$@";; esac
echo "pg_restore: error: connection failed: password `+testPassword+` rejected" >&2
exit 1
`), 0o755)
		out := &lines{}
		rep, err := Restore(ctx, RestoreSpec{Dir: m.Dir, CKANDB: ckan, DatastoreDB: ds, PGRestore: script, Output: out.add})
		noSecret(t, err, out)
		if err == nil || rep == nil {
			t.Fatalf("Restore: %+v, %v", rep, err)
		}
		t.Logf("error: %v", err)
		for _, w := range []string{"pg_restore of datastore_db.dump into datastore_db", "password xxxxx rejected", "; restored: ckan_db; not restored: datastore_db"} {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("error lacks %q", w)
			}
		}
		if !rep.Databases[0].Done || rep.Databases[1].Done {
			t.Errorf("report: %+v", rep.Databases)
		}
	})
}

// tarItem is one entry of a hand-made archive.
type tarItem struct {
	name string
	typ  byte
	body string
	link string
}

// handSnapshot writes a storage-only snapshot of the items, with a
// manifest that matches, so that Verify passes whatever the items are.
func handSnapshot(t *testing.T, verdict string, items ...tarItem) (string, *Manifest) {
	t.Helper()
	started := time.Date(2024, 3, 1, 11, 2, 3, 0, time.UTC)
	dir := filepath.Join(t.TempDir(), "hand-"+started.Format(TimeLayout))
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, it := range items {
		hdr := &tar.Header{Name: it.name, Typeflag: it.typ, Linkname: it.link, Size: int64(len(it.body)),
			Mode: 0o644, ModTime: mtime, Uid: 65534, Gid: 65534, Format: tar.FormatPAX}
		if it.typ == tar.TypeDir {
			hdr.Mode = 0o750
		}
		if it.typ != tar.TypeReg {
			hdr.Size = 0
		}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		if hdr.Size > 0 {
			tw.Write([]byte(it.body))
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, storageTarName), buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(buf.Bytes())
	// Format 1, as ckanops wrote before several storages: its one
	// "storage" loads as the storage "default" (storage.tar).
	m := &Manifest{
		Format: formatOneStorage, Site: "hand",
		Times:         Times{Started: started, Ended: started.Add(time.Minute)},
		Files:         []File{{Name: storageTarName, Kind: KindTar, Source: SourceStorage, Size: int64(buf.Len()), SHA256: hex.EncodeToString(sum[:])}},
		Databases:     []Database{},
		Storage:       &Storage{Path: "/srv/ckan/storage"},
		NotConfigured: []string{SourceCKANDB, SourceDatastoreDB},
		Verdict:       verdict, Changed: []string{}, Bookkeeping: []string{},
	}
	if verdict == Inconsistent {
		m.Changed = []string{"storage file x added"}
	}
	if err := writeManifest(dir, m); err != nil {
		t.Fatal(err)
	}
	if r, err := Verify(context.Background(), dir, ""); err != nil || !r.OK {
		t.Fatalf("the hand-made snapshot does not verify: %+v, %v", r, err)
	}
	m.Dir = dir
	return dir, m
}

func TestRestoreStorageWithoutPostgres(t *testing.T) {
	ctx := context.Background()
	good := []tarItem{
		{name: "d/", typ: tar.TypeDir},
		{name: "d/f.txt", typ: tar.TypeReg, body: "hello"},
		{name: "d/e/", typ: tar.TypeDir},
		{name: "d/e/up", typ: tar.TypeSymlink, link: "../f.txt"},
		{name: "top", typ: tar.TypeSymlink, link: "d/e"},
		{name: "self", typ: tar.TypeSymlink, link: "."},
	}

	t.Run("unpacks", func(t *testing.T) {
		dir, _ := handSnapshot(t, Consistent, good...)
		target := filepath.Join(t.TempDir(), "storage")
		out := &lines{}
		rep, err := Restore(ctx, RestoreSpec{Dir: dir, StoragePath: target, Output: out.add})
		t.Logf("output:\n%s", strings.Join(out.all(), "\n"))
		if err != nil {
			t.Fatal(err)
		}
		if st := rep.Storage; st.Files != 1 || st.Dirs != 2 || st.Symlinks != 3 || st.Bytes != 5 {
			t.Errorf("storage: %+v", st)
		}
		if b, err := os.ReadFile(filepath.Join(target, "top", "up")); err != nil || string(b) != "hello" {
			t.Errorf("top/up: %q, %v", b, err)
		}
		fi, err := os.Lstat(filepath.Join(target, "d"))
		if err != nil || fi.Mode() != fs.ModeDir|0o750 || !fi.ModTime().Equal(mtime) {
			t.Errorf("d: %v %v, %v", fi.Mode(), fi.ModTime(), err)
		}
		fi, err = os.Lstat(filepath.Join(target, "d/e/up"))
		if err != nil || fi.Mode()&fs.ModeSymlink == 0 || !fi.ModTime().Equal(mtime) {
			t.Errorf("d/e/up: %v %v, %v", fi.Mode(), fi.ModTime(), err)
		}
		fi, err = os.Lstat(filepath.Join(target, "d/f.txt"))
		if err != nil || fi.Mode() != 0o644 || !fi.ModTime().Equal(mtime) {
			t.Errorf("d/f.txt: %v %v, %v", fi.Mode(), fi.ModTime(), err)
		}
		if os.Geteuid() == 0 {
			if st := fi.Sys().(*syscall.Stat_t); st.Uid != 65534 || st.Gid != 65534 || !rep.Storage.Owners {
				t.Errorf("owner %d:%d, want 65534:65534 from the archive", st.Uid, st.Gid)
			}
		}
	})

	t.Run("inconsistent", func(t *testing.T) {
		dir, _ := handSnapshot(t, Inconsistent, good...)
		target := filepath.Join(t.TempDir(), "storage")
		rep, err := Restore(ctx, RestoreSpec{Dir: dir, StoragePath: target})
		wantRefused(t, rep, err, "is inconsistent (changed while it was taken: storage file x added)", "--force")
		rep, err = Restore(ctx, RestoreSpec{Dir: dir, StoragePath: target, Force: true})
		if err != nil || !rep.Forced || !rep.Storage.Done {
			t.Errorf("forced: %+v, %v", rep, err)
		}
	})

	t.Run("unsafe archives", func(t *testing.T) {
		for _, tc := range []struct {
			name  string
			items []tarItem
			want  string
		}{
			{"dot-dot", []tarItem{{name: "ok.txt", typ: tar.TypeReg, body: "x"}, {name: "../evil", typ: tar.TypeReg, body: "evil"}}, `entry "../evil" leaves the storage directory`},
			{"dot-dot inside", []tarItem{{name: "a/../../evil", typ: tar.TypeReg, body: "evil"}}, `entry "a/../../evil" leaves the storage directory`},
			{"absolute", []tarItem{{name: "/tmp/evil", typ: tar.TypeReg, body: "evil"}}, `entry "/tmp/evil" is an absolute path`},
			{"unclean", []tarItem{{name: "a/./b", typ: tar.TypeReg, body: "x"}}, `entry "a/./b" is not a clean relative path`},
			{"link up", []tarItem{{name: "esc", typ: tar.TypeSymlink, link: "../outside"}}, "symbolic link esc -> ../outside points outside"},
			{"link absolute", []tarItem{{name: "passwd", typ: tar.TypeSymlink, link: "/etc/passwd"}}, "symbolic link passwd -> /etc/passwd points outside"},
			{"link through a link", []tarItem{{name: "s", typ: tar.TypeSymlink, link: "."}, {name: "a", typ: tar.TypeSymlink, link: "s/.."}}, "symbolic link a -> s/.. points outside"},
			{"link loop", []tarItem{{name: "l1", typ: tar.TypeSymlink, link: "l2"}, {name: "l2", typ: tar.TypeSymlink, link: "l1"}}, "symbolic link l1 -> l2 points outside"},
			{"beneath a link", []tarItem{{name: "d/", typ: tar.TypeDir}, {name: "l", typ: tar.TypeSymlink, link: "d"}, {name: "l/f", typ: tar.TypeReg, body: "x"}}, "entry l/f lies beneath the symbolic link l of the archive"},
			{"beneath a file", []tarItem{{name: "f", typ: tar.TypeReg, body: "x"}, {name: "f/g", typ: tar.TypeReg, body: "x"}}, "entry f/g lies beneath the file f of the archive"},
			{"hard link", []tarItem{{name: "f", typ: tar.TypeReg, body: "x"}, {name: "h", typ: tar.TypeLink, link: "f"}}, `entry "h" is a hard link`},
			{"device", []tarItem{{name: "null", typ: tar.TypeChar}}, `entry "null" is a character device`},
			{"twice", []tarItem{{name: "f", typ: tar.TypeReg, body: "x"}, {name: "f", typ: tar.TypeReg, body: "y"}}, `entry "f" appears twice`},
		} {
			t.Run(tc.name, func(t *testing.T) {
				dir, _ := handSnapshot(t, Consistent, tc.items...)
				parent := t.TempDir()
				os.Mkdir(filepath.Join(parent, "sub"), 0o755)
				target := filepath.Join(parent, "sub", "storage")
				rep, err := Restore(ctx, RestoreSpec{Dir: dir, StoragePath: target})
				wantRefused(t, rep, err, "storage.tar cannot be unpacked safely into "+target+": ", tc.want)
				des, _ := os.ReadDir(filepath.Join(parent, "sub"))
				top, _ := os.ReadDir(parent)
				if len(des) != 0 || len(top) != 1 {
					t.Errorf("something was written: %v, %v", des, top)
				}
				if _, err := os.Lstat("/tmp/evil"); err == nil {
					t.Error("/tmp/evil exists")
				}
			})
		}
	})

	t.Run("unsafe over existing entries", func(t *testing.T) {
		outside := t.TempDir()
		for _, tc := range []struct {
			name  string
			setup func(target string)
			items []tarItem
			want  string
		}{
			{"through an existing link", func(target string) { os.Symlink(outside, filepath.Join(target, "d")) },
				[]tarItem{{name: "d/", typ: tar.TypeDir}, {name: "d/f", typ: tar.TypeReg, body: "x"}}, "d is a symbolic link in "},
			{"beneath an existing link", func(target string) { os.Symlink(outside, filepath.Join(target, "d")) },
				[]tarItem{{name: "d/f", typ: tar.TypeReg, body: "x"}}, "entry d/f lies beneath d, a symbolic link in "},
			{"via an existing link", func(target string) { os.Symlink("/", filepath.Join(target, "root")) },
				[]tarItem{{name: "shadow", typ: tar.TypeSymlink, link: "root/etc/shadow"}}, "symbolic link shadow -> root/etc/shadow points outside"},
			{"file over a directory", func(target string) { os.Mkdir(filepath.Join(target, "f"), 0o755) },
				[]tarItem{{name: "f", typ: tar.TypeReg, body: "x"}}, "f is a directory in "},
		} {
			t.Run(tc.name, func(t *testing.T) {
				dir, _ := handSnapshot(t, Consistent, tc.items...)
				target := t.TempDir()
				tc.setup(target)
				before, outBefore := dirState(t, target), dirState(t, outside)
				rep, err := Restore(ctx, RestoreSpec{Dir: dir, StoragePath: target, Clean: true})
				wantRefused(t, rep, err, tc.want)
				if !reflect.DeepEqual(dirState(t, target), before) || !reflect.DeepEqual(dirState(t, outside), outBefore) {
					t.Error("something was written")
				}
			})
		}
	})

	t.Run("refusals before anything", func(t *testing.T) {
		dir, _ := handSnapshot(t, Consistent, good...)
		for _, tc := range []struct {
			name string
			spec RestoreSpec
			want string
		}{
			{"part missing", RestoreSpec{Dir: dir, CKANDB: "postgres://ckan:" + testPassword + "@127.0.0.1:1/ckan", PGRestore: "/bin/true"},
				"a ckan_db target was given, but the snapshot holds no ckan_db dump (it was not configured when the snapshot was taken): leave that target out"},
			{"target inside the snapshot", RestoreSpec{Dir: dir, StoragePath: filepath.Join(dir, "storage")}, "overlap"},
			{"snapshot inside the target", RestoreSpec{Dir: dir, StoragePath: filepath.Dir(filepath.Dir(dir)), Clean: true}, "overlap"},
			{"target a file", RestoreSpec{Dir: dir, StoragePath: filepath.Join(dir, ManifestName)}, "is not a directory"},
			{"target's parent missing", RestoreSpec{Dir: dir, StoragePath: "/nonexistent/a/b"}, "does not exist, nor does its parent /nonexistent/a"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				rep, err := Restore(ctx, tc.spec)
				wantRefused(t, rep, err, tc.want)
				if strings.Contains(err.Error(), testPassword) {
					t.Errorf("error shows the password")
				}
			})
		}
		for _, tc := range []struct {
			spec RestoreSpec
			want string
		}{
			{RestoreSpec{Dir: dir}, "nothing to restore"},
			{RestoreSpec{Dir: dir, CKANDB: "mysql://u:" + testPassword + "@h/db"}, "is not a postgres:// URL"},
			{RestoreSpec{Dir: dir, CKANDB: "postgres://h/db", DatastoreDB: "postgres://u@h/db"}, "are the same database (db)"},
			{RestoreSpec{Dir: dir, CKANDB: "postgres://h/db", PGRestore: "/nonexistent/pg_restore"}, "pg_restore /nonexistent/pg_restore cannot be run"},
			{RestoreSpec{Dir: t.TempDir(), StoragePath: t.TempDir()}, "no manifest.json"},
		} {
			rep, err := Restore(ctx, tc.spec)
			if err == nil || rep != nil || errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), testPassword) {
				t.Errorf("%+v: %v", tc.spec, err)
			}
		}
	})
}

func TestResolvesInside(t *testing.T) {
	links := map[string]string{"s": ".", "deep": "a/b/c", "abs": "/etc", "l1": "l2", "l2": "l1", "d/up": ".."}
	lookup := func(p string) (string, bool) { l, ok := links[p]; return l, ok }
	for _, tc := range []struct {
		name, link string
		inside     bool
	}{
		{"x", "a/b", true},
		{"x", ".", true},
		{"x", "..", false},
		{"a/x", "..", true},
		{"a/x", "../..", false},
		{"x", "s/..", false},         // s is the root itself
		{"x", "deep/..", true},       // a/b
		{"x", "deep/../../..", true}, // the root
		{"x", "deep/../../../..", false},
		{"x", "deep/../..", true}, // a
		{"x", "abs", false},
		{"x", "l1", false},
		{"x", "d/up/..", false}, // d/up is the root
		{"x", "d/up", true},
		{"x", "", false},
		{"x", "/", false},
	} {
		if got := resolvesInside(tc.name, tc.link, lookup); got != tc.inside {
			t.Errorf("%s -> %s: inside %v, want %v", tc.name, tc.link, got, tc.inside)
		}
	}
}
