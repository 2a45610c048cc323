package snapshot

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ckanops/ckanops/config"
	"github.com/ckanops/ckanops/internal/testpg"
)

// testPassword is in every test URL. The test cluster trusts every
// connection, so it is never checked, but it must never show up in an
// error, an output line or pg_dump's argv.
const testPassword = "s3cret-Pw9"

// datastoreTable is named like a DataStore table: a resource id.
const datastoreTable = "0e7d2a4e-579e-341f-2a3b-4c5d6e7f8091"

// fixture is a cluster with a CKAN database and a DataStore database.
type fixture struct {
	cl              *testpg.Cluster
	ckan, datastore config.SecretURL
	pgDump          string
	pgRestore       string
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	cl := testpg.Start(t)
	fx := &fixture{
		cl:        cl,
		ckan:      withPassword(t, cl.CreateDB(t, "ckan")),
		datastore: withPassword(t, cl.CreateDB(t, "datastore")),
		pgDump:    filepath.Join(cl.BinDir(), "pg_dump"),
		pgRestore: filepath.Join(cl.BinDir(), "pg_restore"),
	}
	fx.sql(t, fx.ckan,
		`CREATE TABLE package (id text PRIMARY KEY, name text NOT NULL, title text)`,
		`CREATE TABLE resource (id text PRIMARY KEY, package_id text REFERENCES package(id), url text)`,
		`CREATE TABLE "user" (id text PRIMARY KEY, name text NOT NULL, last_active timestamptz)`,
		`CREATE TABLE api_token (id text PRIMARY KEY, user_id text REFERENCES "user"(id), last_access timestamptz)`,
		`CREATE TABLE dashboard (user_id text PRIMARY KEY, activity_stream_last_viewed timestamptz)`,
		`CREATE TABLE tracking_raw (user_key text, url text, tracking_type text, access_timestamp timestamptz DEFAULT now())`,
		`INSERT INTO package SELECT 'pkg-' || i, 'dataset-' || i, 'Dataset ' || i FROM generate_series(1, 200) i`,
		`INSERT INTO resource SELECT 'res-' || i, 'pkg-' || (i % 200 + 1), 'http://example.org/' || i || '.csv' FROM generate_series(1, 400) i`,
		`INSERT INTO "user" VALUES ('u1', 'admin', now()), ('u2', 'editor', NULL)`,
		`INSERT INTO api_token VALUES ('t1', 'u1', NULL)`,
		`INSERT INTO dashboard VALUES ('u1', now())`,
	)
	fx.sql(t, fx.datastore,
		`CREATE TABLE "`+datastoreTable+`" (_id serial PRIMARY KEY, _full_text tsvector, city text, population int)`,
		`INSERT INTO "`+datastoreTable+`" (city, population) SELECT 'city ' || i, i * 1000 FROM generate_series(1, 500) i`,
	)
	return fx
}

// withPassword adds testPassword to a URL.
func withPassword(t testing.TB, raw string) config.SecretURL {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.UserPassword(u.User.Username(), testPassword)
	return config.SecretURL(u.String())
}

// sql runs statements on a connection of its own, then makes the server
// publish the connection's statistics before the last call returns
// (pg_stat_force_next_flush: the backend flushes as it goes idle, before
// it answers), so that what it did is in the counters, deterministically.
func (fx *fixture) sql(t testing.TB, db config.SecretURL, stmts ...string) {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, db.Reveal())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	for _, s := range append(stmts, "SELECT pg_stat_force_next_flush()") {
		if _, err := conn.Exec(ctx, s); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
}

// storageFile is one file of the test storage.
type storageFile struct {
	path    string
	content []byte
	mode    fs.FileMode
}

// mtime is every fixture file's modification time: whole seconds, which is
// what tar keeps.
var mtime = time.Date(2024, 2, 29, 12, 34, 56, 0, time.UTC)

// newStorage makes a CKAN-like storage tree: resources by id, uploads, a
// long name (PAX), a non-ASCII name, an empty directory and a symlink.
func newStorage(t *testing.T) (string, []storageFile) {
	t.Helper()
	root := t.TempDir()
	logo := make([]byte, 3<<20+123) // more than one copy buffer
	r := rand.New(rand.NewPCG(1, 2))
	for i := range logo {
		logo[i] = byte(r.Uint32())
	}
	files := []storageFile{
		{"resources/0e7/d2a/4e-579e-341f-2a3b-4c5d6e7f8091", []byte("city,population\nA,1000\n"), 0o644},
		{"resources/1aa/bbb/cc-0000-0000-0000-000000000000", []byte("x,y\n1,2\n"), 0o640},
		{"storage/uploads/group/2024-02-29-123456.logo.png", logo, 0o644},
		{"storage/uploads/user/" + strings.Repeat("long-name-", 15) + ".jpg", []byte("jpeg"), 0o644},
		{"storage/uploads/group/résumé.txt", []byte("unicode"), 0o600},
	}
	for _, f := range files {
		p := filepath.Join(root, f.path)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, f.content, f.mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, f.mode); err != nil { // past the umask
			t.Fatal(err)
		}
		if err := os.Chtimes(p, mtime, mtime); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(filepath.Join(root, "storage/uploads/admin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("resources/0e7/d2a/4e-579e-341f-2a3b-4c5d6e7f8091", filepath.Join(root, "latest.csv")); err != nil {
		t.Fatal(err)
	}
	return root, files
}

// lines collects Output.
type lines struct {
	mu sync.Mutex
	l  []string
}

func (c *lines) add(s string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.l = append(c.l, s)
}

func (c *lines) all() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.l...)
}

// spec is a Spec of both databases and storage into parent.
func (fx *fixture) spec(parent, storage string, out *lines) Spec {
	return Spec{
		Site:        "data-city",
		Dir:         parent,
		PGDump:      fx.pgDump,
		CKANDB:      fx.ckan,
		DatastoreDB: fx.datastore,
		StoragePath: storage,
		CKANVersion: "2.10.4",
		ModeVersion: 7,
		EnabledAt:   time.Date(2024, 3, 1, 11, 0, 0, 0, time.UTC),
		QuiescedAt:  time.Date(2024, 3, 1, 11, 1, 0, 0, time.UTC),
		Output:      out.add,
		// The tests' writers flush their statistics before the hook
		// returns (fixture.sql), so no wait is needed.
		StatsSettle: time.Millisecond,
	}
}

// noSecret fails if the password shows in err or the output.
func noSecret(t *testing.T, err error, out *lines) {
	t.Helper()
	if err != nil && strings.Contains(err.Error(), testPassword) {
		t.Errorf("error holds the password: %v", err)
	}
	for _, l := range out.all() {
		if strings.Contains(l, testPassword) {
			t.Errorf("output line holds the password: %s", l)
		}
	}
}

// assertNothingKept fails if parent holds a temporary directory or a
// manifest anywhere: after a failure, nothing may look complete.
func assertNothingKept(t *testing.T, parent string) {
	t.Helper()
	filepath.WalkDir(parent, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		if strings.HasPrefix(d.Name(), tempPrefix) {
			t.Errorf("temporary directory left: %s", path)
		}
		if d.Name() == ManifestName {
			t.Errorf("manifest left: %s", path)
		}
		return nil
	})
}

func sha256File(t *testing.T, path string) (int64, string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := sha256.Sum256(b)
	return int64(len(b)), hex.EncodeToString(s[:])
}

func TestTake(t *testing.T) {
	fx := newFixture(t)
	ctx := context.Background()

	t.Run("full snapshot", func(t *testing.T) {
		parent := t.TempDir()
		storage, files := newStorage(t)
		out := &lines{}
		s := fx.spec(parent, storage, out)
		s.Clock = func() time.Time { return time.Date(2024, 3, 1, 11, 2, 3, 0, time.UTC) }
		m, err := Take(ctx, s)
		noSecret(t, err, out)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("output:\n%s", strings.Join(out.all(), "\n"))
		if m.Verdict != Consistent || len(m.Changed) != 0 || len(m.Bookkeeping) != 0 {
			t.Errorf("verdict %s, changed %q, bookkeeping %q", m.Verdict, m.Changed, m.Bookkeeping)
		}
		if want := filepath.Join(parent, "data-city-20240301T110203Z"); m.Dir != want {
			t.Errorf("Dir %s, want %s", m.Dir, want)
		}
		if fi, err := os.Stat(m.Dir); err != nil || fi.Mode().Perm() != 0o700 {
			t.Errorf("snapshot dir: %v, %v", fi, err)
		}
		des, _ := os.ReadDir(parent)
		if len(des) != 1 {
			t.Errorf("parent holds %d entries, want 1 (no temporary directory left)", len(des))
		}

		// The manifest on disk is the one returned, and says what it should.
		loaded, err := Load(m.Dir)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(loaded, m) {
			t.Errorf("manifest on disk differs from the one returned:\n%+v\n%+v", loaded, m)
		}
		if m.Site != "data-city" || m.CKANVersion != "2.10.4" || m.ModeVersion != 7 || m.Format != FormatVersion {
			t.Errorf("manifest header: %+v", m)
		}
		if !m.Times.Enabled.Equal(s.EnabledAt) || !m.Times.Quiesced.Equal(s.QuiescedAt) || m.Times.Started.IsZero() || m.Times.Ended.IsZero() {
			t.Errorf("times: %+v", m.Times)
		}
		if len(m.NotConfigured) != 0 {
			t.Errorf("not configured: %q", m.NotConfigured)
		}
		var names []string
		for _, f := range m.Files {
			names = append(names, f.Name+":"+f.Kind+":"+f.Source)
			size, sum := sha256File(t, filepath.Join(m.Dir, f.Name))
			if size != f.Size || sum != f.SHA256 {
				t.Errorf("%s: manifest says %d bytes %s, disk has %d bytes %s", f.Name, f.Size, f.SHA256, size, sum)
			}
		}
		if want := []string{"ckan_db.dump:pg_dump:ckan_db", "datastore_db.dump:pg_dump:datastore_db", "storage.tar:tar:storage"}; !reflect.DeepEqual(names, want) {
			t.Errorf("files %q, want %q", names, want)
		}
		if len(m.Databases) != 2 || m.Databases[0].Database != "ckan" || m.Databases[1].Database != "datastore" {
			t.Fatalf("databases: %+v", m.Databases)
		}
		if c := m.Databases[0].Before["public.package"]; c.Inserts != 200 {
			t.Errorf("public.package before: %+v, want 200 inserts", c)
		}
		if c := m.Databases[1].After["public."+datastoreTable]; c.Inserts != 500 {
			t.Errorf("datastore table after: %+v, want 500 inserts", c)
		}
		for _, d := range m.Databases {
			// Nothing happened: the tables kept their files, the schema
			// its digest.
			if d.Relfilenodes == nil || d.Schema == nil {
				t.Fatalf("%s: relfilenodes %+v, schema %+v", d.Name, d.Relfilenodes, d.Schema)
			}
			if len(d.Relfilenodes.Before) != len(d.Before) || !reflect.DeepEqual(d.Relfilenodes.Before, d.Relfilenodes.After) {
				t.Errorf("%s: relfilenodes %+v", d.Name, d.Relfilenodes)
			}
			if len(d.Schema.Before) != 64 || d.Schema.Before != d.Schema.After {
				t.Errorf("%s: schema digest %+v", d.Name, d.Schema)
			}
		}
		if n := m.Databases[0].Relfilenodes.Before["public.package"]; n == 0 {
			t.Errorf("public.package has no relfilenode: %+v", m.Databases[0].Relfilenodes)
		}
		st := m.StorageByName("default")
		if st == nil || len(m.Storages) != 1 || st.File != "storage.tar" || st.Path != storage || st.Before != st.After || st.Before.Files != int64(len(files)) || len(st.Before.Digest) != 64 {
			t.Errorf("storage: %+v", st)
		}

		// pg_restore accepts the dumps; every hash holds.
		r, err := Verify(ctx, m.Dir, fx.pgRestore)
		if err != nil {
			t.Fatal(err)
		}
		if !r.OK || len(r.Files) != 3 {
			t.Errorf("Verify: %+v", r)
		}

		// The archive holds the storage as it is.
		checkTar(t, filepath.Join(m.Dir, storageTarName), files)
	})

	t.Run("only CKAN's database", func(t *testing.T) {
		parent := t.TempDir()
		out := &lines{}
		s := fx.spec(parent, "", out)
		s.DatastoreDB = ""
		m, err := Take(ctx, s)
		noSecret(t, err, out)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(m.NotConfigured, []string{SourceDatastoreDB, SourceStorage}) || len(m.Files) != 1 || len(m.Storages) != 0 || len(m.StoragesNotIncluded) != 0 || len(m.Databases) != 1 {
			t.Errorf("manifest: not configured %q, files %+v, storages %+v, databases %d", m.NotConfigured, m.Files, m.Storages, len(m.Databases))
		}
		if m.Verdict != Consistent {
			t.Errorf("verdict %s: %q", m.Verdict, m.Changed)
		}
	})

	t.Run("a writer during the snapshot", func(t *testing.T) {
		parent := t.TempDir()
		storage, _ := newStorage(t)
		out := &lines{}
		s := fx.spec(parent, storage, out)
		s.afterBefore = func() {
			fx.sql(t, fx.ckan, `INSERT INTO package VALUES ('pkg-new', 'new', 'New')`)
			fx.sql(t, fx.datastore, `INSERT INTO "`+datastoreTable+`" (city, population) VALUES ('x', 1), ('y', 2)`)
		}
		m, err := Take(ctx, s)
		noSecret(t, err, out)
		if err != nil {
			t.Fatal(err)
		}
		want := []string{
			"ckan_db table public.package: 1 insert(s)",
			"datastore_db table public." + datastoreTable + ": 2 insert(s)",
		}
		if m.Verdict != Inconsistent || !reflect.DeepEqual(m.Changed, want) {
			t.Errorf("verdict %s, changed %q; want inconsistent, %q", m.Verdict, m.Changed, want)
		}
		if !containsLine(out.all(), "verdict: inconsistent: ckan_db table public.package: 1 insert(s)") {
			t.Errorf("output does not give the verdict:\n%s", strings.Join(out.all(), "\n"))
		}
	})

	// A session that commits twice within a second and stays idle: the
	// server publishes the second commit's counts only on the session's
	// 10 s idle timer. No flush is forced here: Take must wait for it.
	// (This case takes about 10 s.)
	t.Run("a writer that stays connected", func(t *testing.T) {
		if testing.Short() {
			t.Skip("waits for PostgreSQL's 10 s statistics timer")
		}
		parent := t.TempDir()
		out := &lines{}
		s := fx.spec(parent, "", out)
		s.DatastoreDB = ""
		conn, err := pgx.Connect(ctx, fx.ckan.Reveal())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(ctx)
		s.afterBefore = func() {
			for _, id := range []string{"pkg-idle-1", "pkg-idle-2"} {
				if _, err := conn.Exec(ctx, `INSERT INTO package VALUES ($1, $1, $1)`, id); err != nil {
					t.Error(err)
				}
			}
		}
		m, err := Take(ctx, s)
		if err != nil {
			t.Fatal(err)
		}
		want := []string{"ckan_db table public.package: 2 insert(s)"}
		if m.Verdict != Inconsistent || !reflect.DeepEqual(m.Changed, want) {
			t.Errorf("verdict %s, changed %q; want inconsistent, %q", m.Verdict, m.Changed, want)
		}
		waited := false
		for _, l := range out.all() {
			if strings.Contains(l, "to publish their statistics: pid ") {
				t.Log(l)
				waited = true
			}
		}
		if !waited {
			t.Errorf("Take did not wait for the session:\n%s", strings.Join(out.all(), "\n"))
		}
	})

	t.Run("a file changed during the snapshot", func(t *testing.T) {
		parent := t.TempDir()
		storage, files := newStorage(t)
		out := &lines{}
		s := fx.spec(parent, storage, out)
		s.afterBefore = func() {
			if err := os.WriteFile(filepath.Join(storage, "resources/0e7/d2a/new.csv"), []byte("new"), 0o644); err != nil {
				t.Error(err)
			}
			touched := filepath.Join(storage, files[1].path)
			later := mtime.Add(time.Second)
			if err := os.Chtimes(touched, later, later); err != nil {
				t.Error(err)
			}
		}
		m, err := Take(ctx, s)
		if err != nil {
			t.Fatal(err)
		}
		want := []string{
			"storage file resources/0e7/d2a/new.csv added",
			"storage file " + files[1].path + " modified",
		}
		if m.Verdict != Inconsistent || !reflect.DeepEqual(m.Changed, want) {
			t.Errorf("verdict %s, changed %q; want inconsistent, %q", m.Verdict, m.Changed, want)
		}
		if st := m.Storages[0]; st.Before.Digest == st.After.Digest || st.After.Files != st.Before.Files+1 {
			t.Errorf("storage: %+v", st)
		}
	})

	t.Run("only bookkeeping during the snapshot", func(t *testing.T) {
		parent := t.TempDir()
		out := &lines{}
		s := fx.spec(parent, "", out)
		s.afterBefore = func() {
			fx.sql(t, fx.ckan,
				`UPDATE "user" SET last_active = now() WHERE id = 'u1'`,
				`UPDATE api_token SET last_access = now()`,
				`INSERT INTO tracking_raw (user_key, url, tracking_type) VALUES ('k', '/dataset/x', 'page')`,
				`UPDATE dashboard SET activity_stream_last_viewed = now()`,
			)
		}
		m, err := Take(ctx, s)
		if err != nil {
			t.Fatal(err)
		}
		want := []string{
			"ckan_db table public.api_token: 1 update(s) (api_token.last_access)",
			"ckan_db table public.dashboard: 1 update(s) (dashboard activity)",
			"ckan_db table public.tracking_raw: 1 insert(s) (page-view tracking)",
			"ckan_db table public.user: 1 update(s) (user.last_active)",
		}
		if m.Verdict != Consistent || len(m.Changed) != 0 || !reflect.DeepEqual(m.Bookkeeping, want) {
			t.Errorf("verdict %s, changed %q, bookkeeping %q; want consistent, %q", m.Verdict, m.Changed, m.Bookkeeping, want)
		}
	})

	// CKAN 2.12's datastore_search inserts the row count of a resource
	// into _table_stats when it has none: a read, even anonymous.
	t.Run("only the DataStore's row-count cache during the snapshot", func(t *testing.T) {
		fx.sql(t, fx.datastore,
			// As ckanext/datastore/set_permissions.sql of CKAN 2.12 makes it.
			`CREATE TABLE IF NOT EXISTS "_table_stats" ("resource_id" name PRIMARY KEY, "stats" jsonb NOT NULL)`,
			`DELETE FROM "_table_stats"`,
		)
		parent := t.TempDir()
		out := &lines{}
		s := fx.spec(parent, "", out)
		s.afterBefore = func() {
			fx.sql(t, fx.datastore, `INSERT INTO "_table_stats" VALUES ('`+datastoreTable+`', jsonb_build_object('rows', 500))`)
		}
		m, err := Take(ctx, s)
		if err != nil {
			t.Fatal(err)
		}
		want := []string{"datastore_db table public._table_stats: 1 insert(s) (DataStore row-count cache, written by datastore_search)"}
		if m.Verdict != Consistent || len(m.Changed) != 0 || !reflect.DeepEqual(m.Bookkeeping, want) {
			t.Errorf("verdict %s, changed %q, bookkeeping %q; want consistent, %q", m.Verdict, m.Changed, m.Bookkeeping, want)
		}
	})

	t.Run("a TRUNCATE during the snapshot", func(t *testing.T) {
		fx.sql(t, fx.ckan,
			`CREATE TABLE activity (id text PRIMARY KEY, data text)`,
			`INSERT INTO activity SELECT 'a' || i, 'x' FROM generate_series(1, 50) i`,
		)
		parent := t.TempDir()
		out := &lines{}
		s := fx.spec(parent, "", out)
		s.afterBefore = func() { fx.sql(t, fx.ckan, `TRUNCATE activity`) }
		m, err := Take(ctx, s)
		if err != nil {
			t.Fatal(err)
		}
		want := []string{"ckan_db table public.activity: rewritten during the snapshot (TRUNCATE, VACUUM FULL, CLUSTER or an ALTER TABLE that rewrites it), which its row counters do not show"}
		if m.Verdict != Inconsistent || !reflect.DeepEqual(m.Changed, want) {
			t.Errorf("verdict %s, changed %q; want inconsistent, %q", m.Verdict, m.Changed, want)
		}
		if rf := m.Databases[0].Relfilenodes; rf.Before["public.activity"] == rf.After["public.activity"] {
			t.Errorf("relfilenodes: %+v", rf)
		}
		if d := m.Databases[0]; d.Schema.Before != d.Schema.After {
			t.Errorf("a TRUNCATE changed the schema digest: %+v", d.Schema)
		}
	})

	// datastore_create adding a field to a resource's table does this.
	t.Run("an ALTER TABLE during the snapshot", func(t *testing.T) {
		parent := t.TempDir()
		out := &lines{}
		s := fx.spec(parent, "", out)
		s.afterBefore = func() {
			fx.sql(t, fx.datastore, `ALTER TABLE "`+datastoreTable+`" ADD COLUMN country text`)
		}
		m, err := Take(ctx, s)
		if err != nil {
			t.Fatal(err)
		}
		want := []string{"datastore_db table public." + datastoreTable + ": the schema changed during the snapshot (DDL: columns, indexes, constraints, triggers or privileges)"}
		if m.Verdict != Inconsistent || !reflect.DeepEqual(m.Changed, want) {
			t.Errorf("verdict %s, changed %q; want inconsistent, %q", m.Verdict, m.Changed, want)
		}
		if d := m.Databases[1]; d.Schema.Before == d.Schema.After || !reflect.DeepEqual(d.Relfilenodes.Before, d.Relfilenodes.After) {
			t.Errorf("schema %+v, relfilenodes %+v", d.Schema, d.Relfilenodes)
		}
	})

	t.Run("VACUUM, ANALYZE and a temporary table are no change", func(t *testing.T) {
		parent := t.TempDir()
		out := &lines{}
		s := fx.spec(parent, "", out)
		// A session that keeps its temporary table past the snapshot. It
		// takes the probes' name, so that Take does not wait 10 s for
		// its statistics: it flushes them itself.
		cfg, err := pgx.ParseConfig(fx.ckan.Reveal())
		if err != nil {
			t.Fatal(err)
		}
		cfg.RuntimeParams["application_name"] = probeApplicationName
		conn, err := pgx.ConnectConfig(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(ctx)
		s.afterBefore = func() {
			fx.sql(t, fx.ckan, `VACUUM package`, `ANALYZE resource`, `VACUUM (ANALYZE) "user"`)
			fx.sql(t, fx.datastore, `VACUUM`)
			for _, q := range []string{
				`CREATE TEMP TABLE scratch (id int PRIMARY KEY, v text)`,
				`INSERT INTO scratch SELECT i, 'x' FROM generate_series(1, 10) i`,
				`SELECT pg_stat_force_next_flush()`,
			} {
				if _, err := conn.Exec(ctx, q); err != nil {
					t.Errorf("%s: %v", q, err)
				}
			}
		}
		m, err := Take(ctx, s)
		if err != nil {
			t.Fatal(err)
		}
		if m.Verdict != Consistent || len(m.Changed) != 0 || len(m.Bookkeeping) != 0 {
			t.Errorf("verdict %s, changed %q, bookkeeping %q; want consistent", m.Verdict, m.Changed, m.Bookkeeping)
		}
	})

	t.Run("pg_dump gets the password in its environment only", func(t *testing.T) {
		parent := t.TempDir()
		record := t.TempDir()
		out := &lines{}
		s := fx.spec(parent, "", out)
		s.PGDump = writeScript(t, `printf '%s\n' "$0" "$@" > `+record+`/argv.$$
printf 'PGPASSWORD=%s\nPGAPPNAME=%s\n' "$PGPASSWORD" "$PGAPPNAME" > `+record+`/env.$$
exec `+fx.pgDump+` "$@"`)
		m, err := Take(ctx, s)
		noSecret(t, err, out)
		if err != nil {
			t.Fatal(err)
		}
		if r, err := Verify(ctx, m.Dir, fx.pgRestore); err != nil || !r.OK {
			t.Errorf("Verify: %+v, %v", r, err)
		}
		argvs, _ := filepath.Glob(filepath.Join(record, "argv.*"))
		envs, _ := filepath.Glob(filepath.Join(record, "env.*"))
		if len(argvs) != 2 || len(envs) != 2 {
			t.Fatalf("pg_dump ran %d times (%d environments), want 2", len(argvs), len(envs))
		}
		for _, p := range argvs {
			b, _ := os.ReadFile(p)
			if strings.Contains(string(b), testPassword) {
				t.Errorf("argv holds the password:\n%s", b)
			}
			if !strings.Contains(string(b), "--format=custom\n--no-password\n--dbname=postgres://postgres@127.0.0.1:") {
				t.Errorf("argv:\n%s", b)
			}
		}
		for _, p := range envs {
			b, _ := os.ReadFile(p)
			if want := "PGPASSWORD=" + testPassword + "\nPGAPPNAME=" + ApplicationName + "\n"; string(b) != want {
				t.Errorf("environment:\n%s\nwant\n%s", b, want)
			}
		}
	})

	t.Run("verify finds damage", func(t *testing.T) {
		parent := t.TempDir()
		storage, _ := newStorage(t)
		out := &lines{}
		m, err := Take(ctx, fx.spec(parent, storage, out))
		if err != nil {
			t.Fatal(err)
		}
		// A byte flipped in the middle of CKAN's dump, the archive cut in
		// half, the DataStore's dump cut to its first 100 bytes.
		flip(t, filepath.Join(m.Dir, ckanDumpName))
		cut(t, filepath.Join(m.Dir, storageTarName), 0.5)
		cutTo(t, filepath.Join(m.Dir, datastoreDumpName), 100)
		r, err := Verify(ctx, m.Dir, fx.pgRestore)
		if err != nil {
			t.Fatal(err)
		}
		if r.OK || len(r.Files) != 3 {
			t.Fatalf("Verify: %+v", r)
		}
		problems := map[string]string{}
		for _, f := range r.Files {
			if f.OK {
				t.Errorf("%s reported OK", f.Name)
			}
			problems[f.Name] = f.Problem
		}
		for name, want := range map[string]*regexp.Regexp{
			ckanDumpName:      regexp.MustCompile(`^sha256 [0-9a-f]{64}, the manifest says [0-9a-f]{64}`),
			storageTarName:    regexp.MustCompile(`size \d+, the manifest says \d+; not a readable tar: .*; sha256`),
			datastoreDumpName: regexp.MustCompile(`size 100, the manifest says \d+; sha256 .*`),
		} {
			if !want.MatchString(problems[name]) {
				t.Errorf("%s: problem %q, want it to match %s", name, problems[name], want)
			}
		}

		os.Remove(filepath.Join(m.Dir, datastoreDumpName))
		r, _ = Verify(ctx, m.Dir, fx.pgRestore)
		if r.Files[1].Problem != "missing" {
			t.Errorf("a missing file: %+v", r.Files[1])
		}
		r, _ = Verify(ctx, m.Dir, "/nonexistent/pg_restore")
		if !strings.Contains(r.Files[0].Problem, "cannot check with pg_restore: /nonexistent/pg_restore cannot be run") {
			t.Errorf("without pg_restore: %+v", r.Files[0])
		}
		os.Remove(filepath.Join(m.Dir, ManifestName))
		if _, err := Verify(ctx, m.Dir, fx.pgRestore); err == nil || !strings.Contains(err.Error(), "no manifest.json") {
			t.Errorf("Verify without a manifest: %v", err)
		}
	})

	t.Run("faults", func(t *testing.T) { testFaults(t, fx) })
}

func containsLine(lines []string, prefix string) bool {
	for _, l := range lines {
		if strings.HasPrefix(l, prefix) {
			return true
		}
	}
	return false
}

// checkTar reads the archive and compares it with the storage fixture.
func checkTar(t *testing.T, path string, files []storageFile) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tr := tar.NewReader(f)
	got := map[string]*tar.Header{}
	content := map[string][]byte{}
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		got[hdr.Name] = hdr
		content[hdr.Name] = b
	}
	for _, sf := range files {
		hdr := got[sf.path]
		if hdr == nil {
			t.Errorf("archive lacks %s", sf.path)
			continue
		}
		if hdr.Typeflag != tar.TypeReg || !bytes.Equal(content[sf.path], sf.content) {
			t.Errorf("%s: type %c, %d bytes; want a file of %d bytes", sf.path, hdr.Typeflag, len(content[sf.path]), len(sf.content))
		}
		if fs.FileMode(hdr.Mode).Perm() != sf.mode || !hdr.ModTime.Equal(mtime) {
			t.Errorf("%s: mode %o, mtime %v; want %o, %v", sf.path, hdr.Mode, hdr.ModTime, sf.mode, mtime)
		}
	}
	if hdr := got["latest.csv"]; hdr == nil || hdr.Typeflag != tar.TypeSymlink || hdr.Linkname != "resources/0e7/d2a/4e-579e-341f-2a3b-4c5d6e7f8091" {
		t.Errorf("symlink: %+v", hdr)
	}
	for _, d := range []string{"resources/", "storage/uploads/admin/"} {
		if hdr := got[d]; hdr == nil || hdr.Typeflag != tar.TypeDir {
			t.Errorf("directory %s: %+v", d, hdr)
		}
	}
	for name := range got {
		if strings.HasPrefix(name, "/") || strings.HasPrefix(name, "..") {
			t.Errorf("archive name %q is not relative to the storage", name)
		}
	}
	if n := len(got); n != len(files)+1+10 { // files, the link, 10 directories
		t.Errorf("archive holds %d entries", n)
	}
}

func flip(t *testing.T, path string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0xff
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func cut(t *testing.T, path string, fraction float64) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	cutTo(t, path, int64(float64(fi.Size())*fraction))
}

func cutTo(t *testing.T, path string, size int64) {
	t.Helper()
	if err := os.Truncate(path, size); err != nil {
		t.Fatal(err)
	}
}

// writeScript writes an executable shell script and returns its path.
func writeScript(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "pg_dump")
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func testFaults(t *testing.T, fx *fixture) {
	ctx := context.Background()
	storage, _ := newStorage(t)

	// Each case gets a fresh parent directory and a spec of everything;
	// setup may change both. Every case must fail with an error holding
	// want, and leave nothing that looks like a snapshot.
	for _, tc := range []struct {
		name  string
		setup func(t *testing.T, parent string, s *Spec) (dir string)
		want  []string
	}{
		{
			name: "dir and its parent missing",
			setup: func(t *testing.T, parent string, s *Spec) string {
				s.Dir = filepath.Join(parent, "missing", "snapshots")
				return parent
			},
			want: []string{"snapshot dir ", "missing/snapshots does not exist, nor does its parent", "create it or set [snapshot] dir"},
		},
		{
			name: "dir is a file",
			setup: func(t *testing.T, parent string, s *Spec) string {
				s.Dir = filepath.Join(parent, "file")
				os.WriteFile(s.Dir, []byte("x"), 0o600)
				return parent
			},
			want: []string{"/file is not a directory: set [snapshot] dir to a directory"},
		},
		{
			name: "dir not writable",
			setup: func(t *testing.T, parent string, s *Spec) string {
				if os.Geteuid() == 0 {
					t.Skip("running as root, which permission bits do not stop: the dir-is-a-file case stands in")
				}
				os.Chmod(parent, 0o555)
				t.Cleanup(func() { os.Chmod(parent, 0o755) })
				return parent
			},
			want: []string{"is not writable", "fix its permissions or set [snapshot] dir"},
		},
		{
			name: "dir inside the storage",
			setup: func(t *testing.T, parent string, s *Spec) string {
				s.Dir = filepath.Join(storage, "snapshots")
				return storage
			},
			want: []string{"lies inside storage_path", "set [snapshot] dir elsewhere"},
		},
		{
			name: "dir inside the storage through a link",
			setup: func(t *testing.T, parent string, s *Spec) string {
				os.Symlink(filepath.Join(storage, "storage"), filepath.Join(parent, "link"))
				s.Dir = filepath.Join(parent, "link", "uploads")
				return storage
			},
			want: []string{"lies inside storage_path"},
		},
		{
			name: "storage missing",
			setup: func(t *testing.T, parent string, s *Spec) string {
				s.StoragePath = filepath.Join(parent, "no-storage")
				return parent
			},
			want: []string{"storage_path ", "no-storage does not exist"},
		},
		{
			name: "pg_dump missing (path)",
			setup: func(t *testing.T, parent string, s *Spec) string {
				s.PGDump = "/nonexistent/pg_dump"
				return parent
			},
			want: []string{"pg_dump /nonexistent/pg_dump cannot be run (no such file or directory): install postgresql-client or set [snapshot] pg_dump"},
		},
		{
			name: "pg_dump missing (PATH)",
			setup: func(t *testing.T, parent string, s *Spec) string {
				s.PGDump = "pg_dump-not-installed-here"
				return parent
			},
			want: []string{"pg_dump-not-installed-here not found on PATH: install postgresql-client or set [snapshot] pg_dump"},
		},
		{
			name: "database missing",
			setup: func(t *testing.T, parent string, s *Spec) string {
				s.DatastoreDB = withPassword(t, fx.cl.URL("no_such_db"))
				return parent
			},
			want: []string{"read row counters of datastore_db (database no_such_db)", "no_such_db", "the snapshot was not kept"},
		},
		{
			name: "pg_dump fails",
			setup: func(t *testing.T, parent string, s *Spec) string {
				s.DatastoreDB = "" // one failing dump, so that the error is its
				s.PGDump = writeScript(t, `head -c 5000 /dev/zero
echo "pg_dump: error: connection to server at \"127.0.0.1\" failed: FATAL:  password authentication failed (password `+testPassword+`)" >&2
exit 1`)
				return parent
			},
			want: []string{
				`pg_dump of ckan_db (database ckan) failed with exit status 1: pg_dump: error: connection to server at "127.0.0.1" failed: FATAL:  password authentication failed (password xxxxx)`,
				"the snapshot was not kept",
			},
		},
		{
			name: "pg_dump writes nothing",
			setup: func(t *testing.T, parent string, s *Spec) string {
				s.PGDump = writeScript(t, `exit 0`)
				return parent
			},
			want: []string{"wrote nothing, yet exited 0"},
		},
		{
			name: "disk full",
			setup: func(t *testing.T, parent string, s *Spec) string {
				if os.Geteuid() != 0 {
					t.Skip("disk full needs a small tmpfs, and mounting one needs root")
				}
				mnt := filepath.Join(parent, "small")
				os.Mkdir(mnt, 0o755)
				if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", mnt).CombinedOutput(); err != nil {
					t.Skipf("cannot mount a 2 MiB tmpfs to fill (%v: %s): the disk-full case needs it", err, bytes.TrimSpace(out))
				}
				t.Cleanup(func() {
					if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
						t.Errorf("umount %s: %v: %s", mnt, err, out)
					}
				})
				s.Dir = mnt
				s.DatastoreDB, s.StoragePath = "", ""
				// A stand-in: only the size of what it writes matters.
				s.PGDump = writeScript(t, `head -c 4000000 /dev/urandom`)
				return mnt
			},
			want: []string{"pg_dump of ckan_db (database ckan): writing ckan_db.dump", "no space left on device", "is full: free space there or set [snapshot] dir to a larger one"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			parent := t.TempDir()
			out := &lines{}
			s := fx.spec(parent, storage, out)
			check := tc.setup(t, parent, &s)
			m, err := Take(ctx, s)
			noSecret(t, err, out)
			if err == nil {
				t.Fatalf("Take succeeded: %s", m.Dir)
			}
			t.Logf("error: %v", err)
			if !strings.HasPrefix(err.Error(), "snapshot: ") {
				t.Errorf("error does not start with snapshot: %v", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q", w)
				}
			}
			assertNothingKept(t, check)
			if tc.name == "disk full" {
				des, _ := os.ReadDir(check)
				if len(des) != 0 {
					t.Errorf("the full file system still holds %d entries", len(des))
				}
			}
		})
	}

	t.Run("cancelled mid-dump", func(t *testing.T) {
		parent := t.TempDir()
		out := &lines{}
		s := fx.spec(parent, storage, out)
		// Some output, then the pid on stderr, then a long sleep as the
		// same process: the test cancels when it reads the pid.
		s.PGDump = writeScript(t, `head -c 100000 /dev/zero
echo "sleeping pid $$" >&2
exec sleep 600`)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		var pids []int
		var mu sync.Mutex
		s.Output = func(line string) {
			out.add(line)
			if _, rest, ok := strings.Cut(line, "sleeping pid "); ok {
				pid, err := strconv.Atoi(rest)
				if err != nil {
					t.Errorf("pid line %q", line)
				}
				mu.Lock()
				pids = append(pids, pid)
				mu.Unlock()
				cancel()
			}
		}
		_, err := Take(ctx, s)
		noSecret(t, err, out)
		if err == nil {
			t.Fatal("Take succeeded")
		}
		t.Logf("error: %v", err)
		if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "cancelled while the dumps ran") || !strings.Contains(err.Error(), "the snapshot was not kept") {
			t.Errorf("error: %v", err)
		}
		mu.Lock()
		defer mu.Unlock()
		if len(pids) == 0 {
			t.Fatal("no pg_dump reported its pid")
		}
		for _, pid := range pids {
			if cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid)); err == nil && bytes.Contains(cmdline, []byte("sleep")) {
				t.Errorf("pg_dump stand-in %d still runs: %q", pid, cmdline)
			}
		}
		assertNothingKept(t, parent)
		if des, _ := os.ReadDir(parent); len(des) != 0 {
			t.Errorf("parent holds %d entries after a cancelled snapshot", len(des))
		}
	})

	t.Run("creates dir when its parent exists", func(t *testing.T) {
		parent := t.TempDir()
		out := &lines{}
		s := fx.spec(filepath.Join(parent, "snapshots"), storage, out)
		s.CKANDB, s.DatastoreDB = "", ""
		m, err := Take(ctx, s)
		if err != nil {
			t.Fatal(err)
		}
		if filepath.Dir(m.Dir) != s.Dir || !containsLine(out.all(), "created snapshot dir ") {
			t.Errorf("dir %s; output %q", m.Dir, out.all())
		}
		if !reflect.DeepEqual(m.NotConfigured, []string{SourceCKANDB, SourceDatastoreDB}) {
			t.Errorf("not configured: %q", m.NotConfigured)
		}
	})

	t.Run("two snapshots in one second", func(t *testing.T) {
		parent := t.TempDir()
		out := &lines{}
		s := fx.spec(parent, storage, out)
		s.CKANDB, s.DatastoreDB = "", ""
		s.Clock = func() time.Time { return time.Date(2024, 3, 1, 11, 2, 3, 0, time.UTC) }
		m1, err := Take(ctx, s)
		if err != nil {
			t.Fatal(err)
		}
		m2, err := Take(ctx, s)
		if err != nil {
			t.Fatal(err)
		}
		if m1.Dir == m2.Dir || m2.Dir != m1.Dir+"-2" {
			t.Errorf("dirs %s and %s", m1.Dir, m2.Dir)
		}
		entries, err := List(parent)
		if err != nil || len(entries) != 2 {
			t.Errorf("List: %d entries, %v", len(entries), err)
		}
	})
}
