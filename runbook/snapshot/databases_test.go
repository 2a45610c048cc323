package snapshot

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/ckanops/ckanops/config"
)

// otherDatabases adds two of the site's other databases to fx's cluster,
// as [[database]] would name them: DataPusher's jobs and a harvester's.
func otherDatabases(t *testing.T, fx *fixture) []config.Database {
	t.Helper()
	dp := withPassword(t, fx.cl.CreateDB(t, "datapusher_jobs"))
	hv := withPassword(t, fx.cl.CreateDB(t, "harvest"))
	fx.sql(t, dp,
		`CREATE TABLE jobs (job_id text PRIMARY KEY, status text, data text)`,
		`INSERT INTO jobs SELECT 'job-' || i, 'complete', 'x' FROM generate_series(1, 50) i`,
	)
	fx.sql(t, hv,
		`CREATE TABLE harvest_source (id text PRIMARY KEY, url text)`,
		`INSERT INTO harvest_source VALUES ('s1', 'http://example.org/csw')`,
	)
	return []config.Database{{Name: "datapusher", DSN: dp}, {Name: "harvest-csw", DSN: hv}}
}

func TestTakeOtherDatabases(t *testing.T) {
	fx := newFixture(t)
	dbs := otherDatabases(t, fx)
	ctx := context.Background()

	t.Run("nothing changes: consistent, every database dumped and recorded", func(t *testing.T) {
		out := &lines{}
		s := fx.spec(t.TempDir(), "", out)
		s.Databases = dbs
		m, err := Take(ctx, s)
		noSecret(t, err, out)
		if err != nil {
			t.Fatal(err)
		}
		if m.Verdict != Consistent || len(m.Changed) != 0 || m.Format != FormatDatabases {
			t.Fatalf("verdict %s, changed %q, format %d", m.Verdict, m.Changed, m.Format)
		}
		var names []string
		for _, d := range m.Databases {
			names = append(names, d.Name+"="+d.Database)
		}
		if want := []string{"ckan_db=ckan", "datastore_db=datastore", "datapusher=datapusher_jobs", "harvest-csw=harvest"}; !reflect.DeepEqual(names, want) {
			t.Errorf("databases %q, want %q", names, want)
		}
		dp := m.DatabaseByName("datapusher")
		if dp.Before["public.jobs"].Inserts != 50 || dp.After["public.jobs"] != dp.Before["public.jobs"] {
			t.Errorf("datapusher counters: before %+v, after %+v", dp.Before, dp.After)
		}
		if dp.Relfilenodes == nil || dp.Relfilenodes.Before["public.jobs"] == 0 || dp.Relfilenodes.Before["public.jobs"] != dp.Relfilenodes.After["public.jobs"] {
			t.Errorf("datapusher relfilenodes %+v", dp.Relfilenodes)
		}
		if dp.Schema == nil || len(dp.Schema.Before) != 64 || dp.Schema.Before != dp.Schema.After {
			t.Errorf("datapusher schema %+v", dp.Schema)
		}
		if hv := m.DatabaseByName("harvest-csw"); hv.Schema.Before == dp.Schema.Before {
			t.Errorf("two databases of different tables have one schema digest")
		}
		for _, name := range []string{"datapusher", "harvest-csw"} {
			f, ok := fileByName(m.Files, name+".dump")
			if !ok || f.Kind != KindPGDump || f.Source != name {
				t.Fatalf("files %+v lack %s.dump", m.Files, name)
			}
			if size, sum := sha256File(t, filepath.Join(m.Dir, f.Name)); size != f.Size || sum != f.SHA256 {
				t.Errorf("%s: size %d sha256 %s; manifest %d %s", f.Name, size, sum, f.Size, f.SHA256)
			}
		}
		b, _ := os.ReadFile(filepath.Join(m.Dir, ManifestName))
		if !strings.Contains(string(b), `"format": 3`) || !strings.Contains(string(b), `"name": "datapusher"`) {
			t.Errorf("manifest:\n%s", b)
		}
		if !containsLine(out.all(), "pg_dump datapusher: done") {
			t.Errorf("output:\n%s", strings.Join(out.all(), "\n"))
		}

		// verify checks the other databases' dumps like the others.
		vr, err := Verify(ctx, m.Dir, fx.pgRestore)
		if err != nil || !vr.OK || len(vr.Files) != 4 {
			t.Fatalf("verify: %v %+v", err, vr)
		}
		dump := filepath.Join(m.Dir, "harvest-csw.dump")
		fh, err := os.OpenFile(dump, os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		fh.WriteAt([]byte("X"), 100)
		fh.Close()
		vr, err = Verify(ctx, m.Dir, fx.pgRestore)
		if err != nil || vr.OK {
			t.Fatalf("verify of a damaged dump: %v %+v", err, vr)
		}
		for _, c := range vr.Files {
			if c.OK != (c.Name != "harvest-csw.dump") {
				t.Errorf("%s: ok %v (%s)", c.Name, c.OK, c.Problem)
			}
		}
	})

	t.Run("a writer behind the gate's back: inconsistent, naming the database", func(t *testing.T) {
		out := &lines{}
		s := fx.spec(t.TempDir(), "", out)
		s.Databases = dbs
		s.afterBefore = func() {
			fx.sql(t, dbs[0].DSN, `INSERT INTO jobs VALUES ('job-new', 'pending', 'y')`)
			fx.sql(t, dbs[1].DSN, `ALTER TABLE harvest_source ADD COLUMN title text`)
		}
		m, err := Take(ctx, s)
		noSecret(t, err, out)
		if err != nil {
			t.Fatal(err)
		}
		want := []string{ // database by database, in the order configured
			"datapusher table public.jobs: 1 insert(s)",
			"harvest-csw table public.harvest_source: the schema changed during the snapshot (DDL: columns, indexes, constraints, triggers or privileges)",
		}
		if m.Verdict != Inconsistent || !reflect.DeepEqual(m.Changed, want) {
			t.Errorf("verdict %s, changed %q; want inconsistent, %q", m.Verdict, m.Changed, want)
		}
		if m.DatabaseByName("harvest-csw").Schema.Before == m.DatabaseByName("harvest-csw").Schema.After {
			t.Errorf("the schema digest did not move")
		}
	})

	t.Run("a truncate in another database", func(t *testing.T) {
		s := fx.spec(t.TempDir(), "", &lines{})
		s.CKANDB, s.DatastoreDB = "", ""
		s.Databases = dbs[:1]
		s.afterBefore = func() { fx.sql(t, dbs[0].DSN, `TRUNCATE jobs`) }
		m, err := Take(ctx, s)
		if err != nil {
			t.Fatal(err)
		}
		if m.Verdict != Inconsistent || len(m.Changed) != 1 || !strings.HasPrefix(m.Changed[0], "datapusher table public.jobs: rewritten during the snapshot") {
			t.Errorf("verdict %s, changed %q", m.Verdict, m.Changed)
		}
		if !slices.Equal(m.NotConfigured, []string{SourceCKANDB, SourceDatastoreDB, SourceStorage}) {
			t.Errorf("not configured %q", m.NotConfigured)
		}
	})

	t.Run("refused", func(t *testing.T) {
		for _, c := range []struct {
			name string
			dbs  []config.Database
			want string
		}{
			{"reserved", []config.Database{{Name: "ckan_db", DSN: dbs[0].DSN}}, `database name "ckan_db" is not valid`},
			{"twice", []config.Database{dbs[0], dbs[0]}, `database name "datapusher" is given twice`},
			{"a file name", []config.Database{{Name: "../x", DSN: dbs[0].DSN}}, `database name "../x" is not valid`},
			{"CKAN's again", []config.Database{{Name: "copy", DSN: fx.ckan}}, "ckan_db and copy are the same database (ckan)"},
		} {
			t.Run(c.name, func(t *testing.T) {
				parent := t.TempDir()
				out := &lines{}
				s := fx.spec(parent, "", out)
				s.Databases = c.dbs
				_, err := Take(ctx, s)
				noSecret(t, err, out)
				if err == nil || !strings.Contains(err.Error(), c.want) {
					t.Fatalf("error %v, want %q", err, c.want)
				}
				assertNothingKept(t, parent)
			})
		}
	})
}

// Restore puts another database's dump back into the database given for
// it by name, and refuses a name the snapshot has no dump of.
func TestRestoreOtherDatabase(t *testing.T) {
	fx := newFixture(t)
	dbs := otherDatabases(t, fx)
	ctx := context.Background()
	s := fx.spec(t.TempDir(), "", &lines{})
	s.Databases = dbs
	m, err := Take(ctx, s)
	if err != nil {
		t.Fatal(err)
	}
	target := withPassword(t, fx.cl.CreateDB(t, "datapusher_restored"))

	rep, err := Restore(ctx, RestoreSpec{Dir: m.Dir, Databases: map[string]config.SecretURL{"nosuch": target}, PGRestore: fx.pgRestore})
	wantRefused(t, rep, err, "a nosuch target was given, but the snapshot holds no nosuch dump (it holds ckan_db, datastore_db, datapusher, harvest-csw)")
	rep, err = Restore(ctx, RestoreSpec{Dir: m.Dir, Databases: map[string]config.SecretURL{"datapusher": dbs[0].DSN}, PGRestore: fx.pgRestore})
	wantRefused(t, rep, err, "the datapusher target, database datapusher_jobs, is not empty")
	_, err = Restore(ctx, RestoreSpec{Dir: m.Dir, CKANDB: target, Databases: map[string]config.SecretURL{"datapusher": target}, PGRestore: fx.pgRestore})
	if err == nil || !strings.Contains(err.Error(), "the ckan_db and datapusher targets are the same database (datapusher_restored)") {
		t.Errorf("one target twice: %v", err)
	}

	out := &lines{}
	rep, err = Restore(ctx, RestoreSpec{Dir: m.Dir, Databases: map[string]config.SecretURL{"datapusher": target}, PGRestore: fx.pgRestore, Output: out.add})
	noSecret(t, err, out)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Databases) != 1 || rep.Databases[0].Name != "datapusher" || !rep.Databases[0].Done || rep.Databases[0].Tables != 1 || len(rep.Databases[0].Missing) != 0 {
		t.Errorf("report %+v", rep.Databases)
	}
	if got, want := tableState(t, target), tableState(t, dbs[0].DSN); !reflect.DeepEqual(got, want) {
		t.Errorf("restored %v, want %v", got, want)
	}
	if len(rep.Notes) != 1 || !strings.HasPrefix(rep.Notes[0], "datapusher: the restored objects belong to the role pg_restore connected as") {
		t.Errorf("notes %q", rep.Notes)
	}
}

// A manifest with other databases is format 3, each with its dump; a
// format 2 manifest has none.
func TestLoadOtherDatabasesStrict(t *testing.T) {
	sum := strings.Repeat("0", 64)
	good := `{"format":3,"site":"s","ckan_version":"","mode_version":0,"times":{"started":"2024-01-01T00:00:00Z","ended":"2024-01-01T00:01:00Z"},` +
		`"files":[{"name":"datapusher.dump","kind":"pg_dump","source":"datapusher","size":1,"sha256":"` + sum + `"}],` +
		`"databases":[{"name":"datapusher","database":"jobs","before":{},"after":{}}],"storages":[],"storages_not_included":[],"not_configured":["ckan_db","datastore_db","storage"],"verdict":"consistent","changed":[],"bookkeeping":[]}`
	for _, tc := range []struct{ name, text, want string }{
		{"good", good, ""},
		{"format 2", strings.Replace(good, `"format":3`, `"format":2`, 1), `database record "datapusher" is not ckan_db or datastore_db (format 2 has no others)`},
		{"no dump", strings.Replace(good, `"name":"datapusher.dump"`, `"name":"other.dump"`, 1), "database record datapusher: the files list no datapusher.dump or datapusher.dir dump of it"},
		{"dump of another source", strings.Replace(good, `"source":"datapusher"`, `"source":"ckan_db"`, 1), "the files list no datapusher.dump or datapusher.dir dump of it"},
		{"reserved name", strings.ReplaceAll(good, `datapusher`, `storage`), `database record "storage": not a database name`},
		{"twice", strings.Replace(good, `"databases":[{"name":"datapusher","database":"jobs","before":{},"after":{}}]`, `"databases":[{"name":"datapusher","database":"jobs","before":{},"after":{}},{"name":"datapusher","database":"jobs","before":{},"after":{}}]`, 1), "listed twice"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, ManifestName), []byte(tc.text), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := Load(dir)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("Load: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("Load error %v, want one with %q", err, tc.want)
			}
		})
	}
}
