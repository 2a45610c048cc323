package snapshot

import (
	"context"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// newProofFixture is newFixture without autovacuum (its ANALYZE would
// commit transactions at random and turn a quiet cluster busy), with
// pg_walinspect installed in both databases when wal is set.
func newProofFixture(t testing.TB, wal bool) *fixture {
	t.Helper()
	fx := newFixture(t)
	fx.sql(t, fx.ckan, `ALTER SYSTEM SET autovacuum = off`, `SELECT pg_reload_conf()`)
	if wal {
		fx.sql(t, fx.ckan, `CREATE EXTENSION pg_walinspect`)
		fx.sql(t, fx.datastore, `CREATE EXTENSION pg_walinspect`)
	}
	return fx
}

// methods lists each database's proof method.
func methods(m *Manifest) []string {
	var l []string
	for _, d := range m.Databases {
		if d.Proof == nil {
			l = append(l, "none")
			continue
		}
		l = append(l, d.Proof.Method)
	}
	return l
}

// waited says whether Take waited for the statistics.
func waited(out *lines) bool {
	for _, l := range out.all() {
		if strings.Contains(l, "waiting") {
			return true
		}
	}
	return false
}

// A site serving reads while the snapshot runs: its sessions work, but
// none writes. Take proves it by the transaction ids, without waiting
// the 10 s it waited for those sessions to publish their statistics.
func TestProofReadersNeedNoWait(t *testing.T) {
	ctx := context.Background()
	fx := newProofFixture(t, false)
	reader, err := pgx.Connect(ctx, fx.ckan.Reveal())
	if err != nil {
		t.Fatal(err)
	}
	defer reader.Close(ctx)
	out := &lines{}
	s := fx.spec(t.TempDir(), "", out)
	s.StatsSettle = 0 // the default: a wait would show
	s.afterBefore = func() {
		var n int
		if err := reader.QueryRow(ctx, `SELECT count(*) FROM package JOIN resource ON resource.package_id = package.id`).Scan(&n); err != nil {
			t.Error(err)
		}
	}
	started := time.Now()
	m, err := Take(ctx, s)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("took %v", time.Since(started))
	if m.Verdict != Consistent || len(m.Changed) != 0 {
		t.Errorf("verdict %s, changed %q", m.Verdict, m.Changed)
	}
	if got := methods(m); !reflect.DeepEqual(got, []string{MethodXIDHorizon, MethodXIDHorizon}) {
		t.Errorf("proofs %q, want the transaction-id horizon for both:\n%s", got, strings.Join(out.all(), "\n"))
	}
	if waited(out) {
		t.Errorf("Take waited:\n%s", strings.Join(out.all(), "\n"))
	}
	if !containsLine(out.all(), "ckan_db (database ckan): no transaction committed in its cluster during the snapshot") {
		t.Errorf("output does not say how it knows:\n%s", strings.Join(out.all(), "\n"))
	}
	loaded, err := Load(m.Dir)
	if err != nil {
		t.Fatal(err)
	}
	if p := loaded.Databases[0].Proof; p == nil || *p != (Proof{Method: MethodXIDHorizon}) {
		t.Errorf("manifest proof %+v", p)
	}
}

// Without pg_walinspect, a write anywhere in the cluster (here a
// neighbour database) sends the verdict back to the counters, and says
// why.
func TestProofFallsBackToTheCounters(t *testing.T) {
	ctx := context.Background()
	fx := newProofFixture(t, false)
	other := withPassword(t, fx.cl.CreateDB(t, "neighbour"))
	fx.sql(t, other, `CREATE TABLE orders (id int)`)
	out := &lines{}
	s := fx.spec(t.TempDir(), "", out)
	s.afterBefore = func() { fx.sql(t, other, `INSERT INTO orders VALUES (1)`) }
	m, err := Take(ctx, s)
	if err != nil {
		t.Fatal(err)
	}
	if m.Verdict != Consistent {
		t.Errorf("verdict %s, changed %q", m.Verdict, m.Changed)
	}
	p := m.Databases[0].Proof
	if p == nil || p.Method != MethodStatistics || p.Committed != -1 ||
		!strings.Contains(p.Why, "transaction(s) committed in the cluster during the snapshot, and the WAL cannot tell which database they wrote: pg_walinspect is not installed") {
		t.Errorf("proof %+v", p)
	}
	if !containsLine(out.all(), "ckan_db (database ckan): the row counters decide: ") {
		t.Errorf("output:\n%s", strings.Join(out.all(), "\n"))
	}
}

// With pg_walinspect, the WAL of the transactions that committed tells
// which tables they wrote: a content write is caught without waiting for
// a session that keeps its counts to itself, bookkeeping is told apart,
// and a neighbour database's writes are not the site's.
func TestProofByTheWAL(t *testing.T) {
	ctx := context.Background()
	fx := newProofFixture(t, true)
	other := withPassword(t, fx.cl.CreateDB(t, "neighbour"))
	fx.sql(t, other, `CREATE TABLE orders (id int)`)
	fx.sql(t, fx.datastore,
		`CREATE TABLE IF NOT EXISTS "_table_stats" ("resource_id" name PRIMARY KEY, "stats" jsonb NOT NULL)`)

	// A session that commits twice within a second and stays idle: its
	// counts would show only after 10 s.
	writer, err := pgx.Connect(ctx, fx.ckan.Reveal())
	if err != nil {
		t.Fatal(err)
	}
	defer writer.Close(ctx)
	exec := func(conn *pgx.Conn, q string, args ...any) {
		if _, err := conn.Exec(ctx, q, args...); err != nil {
			t.Errorf("%s: %v", q, err)
		}
	}

	for _, tc := range []struct {
		name        string
		during      func()
		changed     []string
		bookkeeping []string
	}{
		{
			name: "a writer that stays connected",
			during: func() {
				exec(writer, `INSERT INTO package VALUES ('pkg-w1', 'w1', 'W1')`)
				exec(writer, `INSERT INTO package VALUES ('pkg-w2', 'w2', 'W2')`)
				exec(writer, `UPDATE resource SET url = 'http://example.org/new' WHERE id = 'res-1'`)
			},
			changed: []string{
				"ckan_db table public.package: 2 insert(s)",
				"ckan_db table public.resource: 1 update(s)",
			},
		},
		{
			name: "bookkeeping only",
			during: func() {
				exec(writer, `UPDATE "user" SET last_active = now() WHERE id = 'u1'`)
				exec(writer, `INSERT INTO tracking_raw (user_key, url, tracking_type) VALUES ('k', '/dataset/x', 'page')`)
				fx.sql(t, fx.datastore, `INSERT INTO "_table_stats" VALUES ('`+datastoreTable+`', '{"rows": 500}') ON CONFLICT (resource_id) DO UPDATE SET stats = excluded.stats`)
			},
			bookkeeping: []string{
				"ckan_db table public.tracking_raw: 1 insert(s) (page-view tracking)",
				"ckan_db table public.user: 1 update(s) (user.last_active)",
				"datastore_db table public._table_stats: 1 insert(s) (DataStore row-count cache, written by datastore_search)",
			},
		},
		{
			// The row's xmin is the subtransaction's id; its commit is
			// listed in the parent's commit record.
			name: "a write in a subtransaction",
			during: func() {
				for _, q := range []string{`BEGIN`, `SELECT 1`, `SAVEPOINT a`, `INSERT INTO package VALUES ('pkg-sub', 'sub', 'Sub')`, `RELEASE a`, `COMMIT`} {
					exec(writer, q)
				}
			},
			changed: []string{"ckan_db table public.package: 1 insert(s)"},
		},
		{
			name:   "a neighbour database",
			during: func() { fx.sql(t, other, `INSERT INTO orders SELECT generate_series(1, 1000)`) },
		},
		{
			name: "a DataStore delete and a rolled-back write",
			during: func() {
				fx.sql(t, fx.datastore, `DELETE FROM "`+datastoreTable+`" WHERE city = 'city 7'`)
				exec(writer, `BEGIN`)
				exec(writer, `INSERT INTO package VALUES ('pkg-never', 'never', 'Never')`)
				exec(writer, `ROLLBACK`)
			},
			changed: []string{"datastore_db table public." + datastoreTable + ": 1 delete(s)"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := &lines{}
			s := fx.spec(t.TempDir(), "", out)
			s.StatsSettle = 0
			s.afterBefore = tc.during
			m, err := Take(ctx, s)
			if err != nil {
				t.Fatal(err)
			}
			verdict := Consistent
			if len(tc.changed) > 0 {
				verdict = Inconsistent
			}
			if m.Verdict != verdict || !reflect.DeepEqual(m.Changed, append([]string{}, tc.changed...)) ||
				!reflect.DeepEqual(m.Bookkeeping, append([]string{}, tc.bookkeeping...)) {
				t.Errorf("verdict %s, changed %q, bookkeeping %q; want %s, %q, %q\n%s",
					m.Verdict, m.Changed, m.Bookkeeping, verdict, tc.changed, tc.bookkeeping, strings.Join(out.all(), "\n"))
			}
			if got := methods(m); !reflect.DeepEqual(got, []string{MethodWAL, MethodWAL}) {
				t.Errorf("proofs %q:\n%s", got, strings.Join(out.all(), "\n"))
			}
			if p := m.Databases[0].Proof; p.Committed < 1 || p.WALBytes <= 0 {
				t.Errorf("proof %+v", p)
			}
			if waited(out) {
				t.Errorf("Take waited:\n%s", strings.Join(out.all(), "\n"))
			}
		})
	}
}

// A transaction that wrote before the snapshot began and commits while it
// runs has WAL records before the position the proof reads from: the WAL
// proof must not vouch for it, so the counters decide, and catch it.
func TestProofRefusesATransactionOpenAtTheStart(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for PostgreSQL's 10 s statistics timer")
	}
	ctx := context.Background()
	fx := newProofFixture(t, true)
	open, err := pgx.Connect(ctx, fx.ckan.Reveal())
	if err != nil {
		t.Fatal(err)
	}
	defer open.Close(ctx)
	for _, q := range []string{`BEGIN`, `INSERT INTO package VALUES ('pkg-early', 'early', 'Early')`} {
		if _, err := open.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	p, _ := catchesOneInsert(t, fx, func() {
		if _, err := open.Exec(ctx, `COMMIT`); err != nil {
			t.Error(err)
		}
	})
	if p == nil || p.Method != MethodStatistics || !strings.Contains(p.Why, "sessions held a transaction id as the snapshot began: pid ") {
		t.Errorf("proof %+v", p)
	}
}

// catchesOneInsert takes a snapshot of fx's CKAN database while during
// runs, which inserts one package, and checks the verdict caught it; it
// returns the database's proof and Take's output.
func catchesOneInsert(t *testing.T, fx *fixture, during func()) (*Proof, *lines) {
	t.Helper()
	out := &lines{}
	s := fx.spec(t.TempDir(), "", out)
	s.DatastoreDB = ""
	s.afterBefore = during
	m, err := Take(context.Background(), s)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"ckan_db table public.package: 1 insert(s)"}
	if m.Verdict != Inconsistent || !reflect.DeepEqual(m.Changed, want) {
		t.Errorf("verdict %s, changed %q; want inconsistent, %q\n%s", m.Verdict, m.Changed, want, strings.Join(out.all(), "\n"))
	}
	return m.Databases[0].Proof, out
}

// The WAL from the "before" position is gone by the time the proof
// reads it (two checkpoints recycled its segment): reading it fails, and
// the counters decide, saying why; a write in the window is still caught.
func TestProofWALGoneFallsBackToTheCounters(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for PostgreSQL's 10 s statistics timer")
	}
	fx := newProofFixture(t, true)
	p, out := catchesOneInsert(t, fx, func() {
		fx.sql(t, fx.ckan, `INSERT INTO package VALUES ('pkg-late', 'late', 'Late')`)
		for range 2 {
			fx.sql(t, fx.ckan, `SELECT pg_switch_wal()`, `CHECKPOINT`)
		}
	})
	if p == nil || p.Method != MethodStatistics || p.Committed != -1 ||
		!strings.Contains(p.Why, "transaction(s) committed in the cluster during the snapshot, and reading the WAL failed: ") {
		t.Errorf("proof %+v\n%s", p, strings.Join(out.all(), "\n"))
	}
	if !containsLine(out.all(), "ckan_db (database ckan): the row counters decide: ") {
		t.Errorf("output:\n%s", strings.Join(out.all(), "\n"))
	}
}

// What keeps the WAL proof from being used, seen from the "before"
// reading.
func TestProofWALPreconditions(t *testing.T) {
	ctx := context.Background()
	fx := newProofFixture(t, true)
	why := func(t *testing.T, url string) string {
		t.Helper()
		conn, err := pgx.Connect(ctx, url)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(ctx)
		h := readHorizon(ctx, conn)
		if h.why != "" {
			t.Fatalf("no horizon: %s", h.why)
		}
		h.checkWAL(ctx, conn)
		if h.walinspect == "" && h.walWhy == "" || h.walinspect != "" && h.walWhy != "" {
			t.Fatalf("walinspect %q, walWhy %q", h.walinspect, h.walWhy)
		}
		return h.walWhy
	}
	if w := why(t, fx.ckan.Reveal()); w != "" {
		t.Errorf("the superuser cannot use the WAL proof: %s", w)
	}

	fx.sql(t, fx.ckan, `CREATE ROLE ckan_default LOGIN PASSWORD 'pw'`, `DROP EXTENSION pg_walinspect`)
	siteURL := strings.Replace(fx.cl.URL("ckan"), "postgres@", "ckan_default:pw@", 1)
	if w := why(t, siteURL); !strings.Contains(w, "pg_walinspect is not installed") {
		t.Errorf("no pg_walinspect: %q", w)
	}
	fx.sql(t, fx.ckan, `CREATE EXTENSION pg_walinspect`)
	if w := why(t, siteURL); !strings.Contains(w, "the role may not read the WAL") {
		t.Errorf("a plain role: %q", w)
	}
	// What docs/deploy.md tells the operator to run.
	fx.sql(t, fx.ckan, docSQL(t, "A snapshot's verdict without waiting: pg_walinspect")...)
	if w := why(t, siteURL); w != "" {
		t.Errorf("a role with pg_read_server_files: %q", w)
	}

	holder, err := pgx.Connect(ctx, fx.ckan.Reveal())
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Close(ctx)
	for _, q := range []string{`BEGIN`, `UPDATE "user" SET last_active = now() WHERE id = 'u2'`} {
		if _, err := holder.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	if w := why(t, siteURL); !strings.Contains(w, "sessions held a transaction id as the snapshot began: pid ") {
		t.Errorf("a session holding a transaction id: %q", w)
	}
	if _, err := holder.Exec(ctx, `ROLLBACK`); err != nil {
		t.Fatal(err)
	}

	fx.sql(t, fx.ckan, `CREATE UNLOGGED TABLE scratch (id int)`)
	if w := why(t, siteURL); w != "unlogged tables write no WAL: public.scratch" {
		t.Errorf("an unlogged table: %q", w)
	}
}

// docSQL returns the statements of the sql block in docs/deploy.md's
// section named section.
func docSQL(t *testing.T, section string) []string {
	t.Helper()
	b, err := os.ReadFile("../../docs/deploy.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(b), "\n## "+section+"\n")
	if !ok {
		t.Fatalf("docs/deploy.md has no section %q", section)
	}
	rest, _, _ = strings.Cut(rest, "\n## ")
	_, block, ok := strings.Cut(rest, "```sql\n")
	block, _, ok2 := strings.Cut(block, "```")
	if !ok || !ok2 {
		t.Fatalf("section %q has no sql block", section)
	}
	var stmts []string
	for _, s := range strings.Split(block, ";") {
		if s = strings.TrimSpace(s); s != "" {
			stmts = append(stmts, s)
		}
	}
	return stmts
}

func TestHeapOp(t *testing.T) {
	for kind, want := range map[string]string{
		"Heap/INSERT":             "insert",
		"Heap/INSERT+INIT":        "insert",
		"Heap2/MULTI_INSERT+INIT": "insert",
		"Heap/HOT_UPDATE":         "update",
		"Heap/UPDATE+INIT":        "update",
		"Heap/DELETE":             "delete",
		"Heap/LOCK":               "",
		"Heap2/PRUNE":             "",
		"Heap2/VISIBLE":           "",
		"Heap/TRUNCATE":           "of type Heap/TRUNCATE",
		"Heap2/REWRITE":           "of type Heap2/REWRITE",
		"Heap/SOMETHING_NEW":      "of type Heap/SOMETHING_NEW",
	} {
		if got := heapOp(kind); got != want {
			t.Errorf("heapOp(%q) = %q, want %q", kind, got, want)
		}
	}
}

func TestLoadRejectsAnUnknownProof(t *testing.T) {
	m := fakeManifest("data-city", time.Date(2024, 3, 1, 11, 0, 0, 0, time.UTC))
	m.Databases = []Database{{Name: SourceCKANDB, Database: "ckan", Proof: &Proof{Method: "guess"}}}
	if err := m.validate(); err == nil || !strings.Contains(err.Error(), `proof method "guess"`) {
		t.Errorf("validate: %v", err)
	}
}
