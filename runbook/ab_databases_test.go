package runbook

import (
	"context"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ckanops/ckanops/api"
	"github.com/ckanops/ckanops/checks"
	"github.com/ckanops/ckanops/config"
	"github.com/ckanops/ckanops/internal/testpg"
)

// abPGWorld is an abWorld whose A has Postgres databases (ckan_db,
// datastore_db, a [[database]]) on a throwaway cluster, and B empty
// databases of its own there: restore_b runs the real pg_restore.
func abPGWorld(t *testing.T) (*abWorld, *testpg.Cluster, func(*Options)) {
	t.Helper()
	cl := testpg.Start(t)
	aCKAN := config.SecretURL(cl.CreateDB(t, "ckan_a"))
	aDS := config.SecretURL(cl.CreateDB(t, "datastore_a"))
	aDP := config.Database{Name: "datapusher", DSN: config.SecretURL(cl.CreateDB(t, "datapusher_a"))}
	for db, stmts := range map[config.SecretURL][]string{
		aCKAN:   {`CREATE TABLE package (id text PRIMARY KEY, name text)`, `INSERT INTO package VALUES ('p1', 'water'), ('p2', 'air')`},
		aDS:     {`CREATE TABLE "res-1" (_id serial, v int)`, `INSERT INTO "res-1" (v) VALUES (1), (2), (3)`},
		aDP.DSN: {`CREATE TABLE jobs (id int)`, `INSERT INTO jobs VALUES (7)`},
	} {
		execSQL(t, db, stmts...)
	}
	w := newABWorld(t)
	w.ab.CKANDB = config.SecretURL(cl.CreateDB(t, "ckan_b"))
	w.ab.DatastoreDB = config.SecretURL(cl.CreateDB(t, "datastore_b"))
	w.ab.Databases = []config.Database{{Name: "datapusher", DSN: config.SecretURL(cl.CreateDB(t, "datapusher_b"))}}
	cc := config.ChecksConfig{CKANDB: aCKAN, DatastoreDB: aDS, Databases: []config.Database{aDP}, Timeout: config.Duration{Duration: 5 * time.Second}}
	up, _ := url.Parse("http://127.0.0.1:1")
	probes, err := checks.Probes(cc, up)
	if err != nil {
		t.Fatal(err)
	}
	w.site.noRQ = true
	site := &probedSite{fakeSite: w.site, runner: checks.NewRunner(checks.RunnerOptions{Site: "prod", Timeout: 5 * time.Second}, probes[1:]...)}
	return w, cl, func(o *Options) {
		o.Site = site
		o.Checks = cc
		o.Snapshot.PGDump = filepath.Join(cl.BinDir(), "pg_dump")
		o.StatsSettle = time.Millisecond
		o.Poll = 50 * time.Millisecond
	}
}

func execSQL(t *testing.T, db config.SecretURL, stmts ...string) {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, db.Reveal())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	for _, s := range stmts {
		if _, err := conn.Exec(ctx, s); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
}

func count(t *testing.T, db config.SecretURL, table string) int {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, db.Reveal())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var n int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM "+table).Scan(&n); err != nil {
		t.Fatalf("count %s: %v", table, err)
	}
	return n
}

// restore_b restores A's three databases into B's with the real
// pg_restore, after preflight found B's empty.
func TestABRunbookRestoresDatabases(t *testing.T) {
	w, _, mod := abPGWorld(t)
	e, _ := w.engine(t, mod)
	if _, err := e.Start(context.Background(), api.RunbookOptions{AB: true, AutoConfirm: true, StopBefore: api.StepSwitchToB}, "x"); err != nil {
		t.Fatal(err)
	}
	rb := waitFor(t, e, "the stop before switch_to_b", func(rb *api.Runbook) bool {
		return ended(rb) || waitingAt(api.StepSwitchToB)(rb)
	})
	if rb.State != api.RunbookWaiting {
		t.Fatalf("%s at %s: %s", rb.State, rb.Step, rb.Error)
	}
	var pre []string
	for _, ev := range rb.StepByName(api.StepPreflight).Evidence {
		pre = append(pre, ev.Summary)
	}
	for _, want := range []string{"B's database for ckan_db (ckan_b) is empty", "B's database for datastore_db (datastore_b) is empty", "B's database for datapusher (datapusher_b) is empty"} {
		if !strings.Contains(strings.Join(pre, "\n"), want) {
			t.Errorf("preflight lacks %q:\n%s", want, strings.Join(pre, "\n"))
		}
	}
	for db, want := range map[string]int{string(w.ab.CKANDB) + "|package": 2, string(w.ab.DatastoreDB) + `|"res-1"`: 3, string(w.ab.Databases[0].DSN) + "|jobs": 1} {
		u, table, _ := strings.Cut(db, "|")
		if n := count(t, config.SecretURL(u), table); n != want {
			t.Errorf("B's %s: %d rows, want %d", table, n, want)
		}
	}
	if w.side(t) != "a" || w.site.mode() != api.ModeReadOnly {
		t.Errorf("side %s, mode %s", w.side(t), w.site.mode())
	}
	if _, err := e.Abort(context.Background(), api.RunbookAction{}, "x"); err != nil {
		t.Fatal(err)
	}
}

// Preflight refuses B databases that hold tables.
func TestABRunbookPreflightBDatabaseNotEmpty(t *testing.T) {
	w, _, mod := abPGWorld(t)
	execSQL(t, w.ab.DatastoreDB, `CREATE TABLE leftover (id int)`)
	e, _ := w.engine(t, mod)
	if _, err := e.Start(context.Background(), api.RunbookOptions{AB: true, AutoConfirm: true}, "x"); err != nil {
		t.Fatal(err)
	}
	rb := failedAt(t, e, api.StepPreflight)
	if msg := stepError(rb, api.StepPreflight); !strings.Contains(msg, "B's database for datastore_db") || !strings.Contains(msg, "holds 1 table(s)") {
		t.Errorf("error %q", msg)
	}
	if len(w.site.modes) != 0 {
		t.Errorf("A's mode changed: %v", w.site.modes)
	}
}

// B's database missing: preflight fails, names it and says to create it,
// and A's mode is left alone.
func TestABRunbookPreflightBDatabaseMissing(t *testing.T) {
	w, _, mod := abPGWorld(t)
	u, err := url.Parse(string(w.ab.DatastoreDB))
	if err != nil {
		t.Fatal(err)
	}
	u.Path = "/datastore_b_never_created"
	w.ab.DatastoreDB = config.SecretURL(u.String())
	e, _ := w.engine(t, mod)
	if _, err := e.Start(context.Background(), api.RunbookOptions{AB: true, AutoConfirm: true}, "x"); err != nil {
		t.Fatal(err)
	}
	rb := failedAt(t, e, api.StepPreflight)
	if msg := stepError(rb, api.StepPreflight); !strings.Contains(msg, "B's database for datastore_db cannot be read") ||
		!strings.Contains(msg, "create it first (createdb -O OWNER datastore_b_never_created)") {
		t.Errorf("error %q", msg)
	}
	if len(w.site.modes) != 0 {
		t.Errorf("A's mode changed: %v", w.site.modes)
	}
}
