package snapshot

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ckanops/ckanops/config"
	"github.com/ckanops/ckanops/internal/human"
)

// ApplicationName is the application_name of every session the snapshot
// opens: pg_dump's and the counters'.
const ApplicationName = "ckanops-snapshot"

const (
	// stderrTail is how many of pg_dump's last stderr lines an error
	// carries.
	stderrTail = 20
	// countersTimeout bounds one reading of the counters: connect and query.
	countersTimeout = 30 * time.Second
	// killWait is how long Wait waits for the pipes once pg_dump is dead.
	killWait = 5 * time.Second
)

// database is one configured database, ready to be counted and dumped.
type database struct {
	source   string // SourceCKANDB or SourceDatastoreDB
	secret   config.SecretURL
	name     string // the database's name, for messages and the manifest
	conn     *pgx.ConnConfig
	dumpURL  string // the URL without its password: pg_dump's --dbname
	password string // for PGPASSWORD; "" leaves the environment's
}

// newDatabase parses a configured URL. Errors name the source and show
// the URL redacted.
func newDatabase(source string, secret config.SecretURL) (*database, error) {
	u, err := url.Parse(secret.Reveal())
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		return nil, fmt.Errorf("%s %s is not a postgres:// URL", source, secret)
	}
	cfg, err := pgx.ParseConfig(secret.Reveal())
	if err != nil {
		return nil, fmt.Errorf("%s %s is not a Postgres URL the snapshot can use: %s", source, secret, scrub(err.Error(), secret))
	}
	cfg.RuntimeParams["application_name"] = ApplicationName
	cfg.DefaultQueryExecMode = pgx.QueryExecModeSimpleProtocol
	cfg.StatementCacheCapacity, cfg.DescriptionCacheCapacity = 0, 0

	db := &database{source: source, secret: secret, name: cfg.Database, conn: cfg}
	if u.User != nil {
		if pw, ok := u.User.Password(); ok {
			db.password = pw
			u.User = url.User(u.User.Username())
		}
	}
	if q := u.Query(); q.Has("password") {
		if db.password == "" {
			db.password = q.Get("password")
		}
		q.Del("password")
		u.RawQuery = q.Encode()
	}
	db.dumpURL = u.String()
	return db, nil
}

// what names the database in messages: "ckan_db (database ckan)".
func (db *database) what() string {
	return fmt.Sprintf("%s (database %s)", db.source, db.name)
}

// Reading the counters.
//
// Since PostgreSQL 15 the statistics live in shared memory. A backend
// counts its row changes locally and publishes them when it goes idle
// after a transaction, at most once per PGSTAT_MIN_INTERVAL (1 s); when
// that is too soon, it publishes on its idle timer, PGSTAT_IDLE_INTERVAL
// (10 s) later, or when it next goes idle, or when it exits. So a row
// committed during the snapshot may show in pg_stat_user_tables only up
// to 10 s later: a session that commits twice within a second and then
// stays idle shows the second commit after 10 s (measured on PG 15).
//
// When neither proof of proof.go holds (the transaction-id horizon, the
// WAL), Take therefore waits Spec.StatsSettle (1.1 s by default: enough for a
// session whose previous publication is more than a second old), and
// then, database by database, looks at the other sessions
// (pg_stat_activity): one that has done nothing since the "before"
// reading has nothing to publish; one idle for 10 s has published
// everything; for any other it waits until it has been idle for 10 s, at
// most publishWait. What remains uncovered: a session that commits during
// the snapshot and is still busy in one long statement or transaction
// publishWait after the dumps end.
//
// Within a transaction a backend also caches the statistics it read
// (stats_fetch_consistency = cache), so the reading clears that snapshot
// (pg_stat_clear_snapshot) and runs outside any explicit transaction, on
// a connection of its own. The counters see INSERT, UPDATE and DELETE
// (and COPY), not TRUNCATE or schema changes: the catalog reading below
// does.

const (
	// idleInterval is PGSTAT_IDLE_INTERVAL with a margin: a session idle
	// this long has published its counts.
	idleInterval = 10*time.Second + 300*time.Millisecond
	// publishWait bounds the wait for sessions to publish.
	publishWait = idleInterval
)

// countersQuery reads the cumulative row counters of every user table.
// Temporary tables (schemas pg_temp_N) are left out: pg_dump does not dump
// them, and another session's come and go with it.
const countersQuery = `SELECT schemaname, relname, n_tup_ins, n_tup_upd, n_tup_del FROM pg_stat_user_tables
WHERE schemaname !~ '^pg_temp_'`

// Reading the catalog.
//
// The counters miss what rewrites a table or changes its shape: TRUNCATE,
// VACUUM FULL, CLUSTER, ALTER TABLE (a rewrite or not), CREATE or DROP
// INDEX, constraints, triggers, views. So each reading also takes, for
// every relation of the user schemas (the counters' schemas, without
// temporary ones), its relfilenode (ordinary tables only: a TRUNCATE or a
// rewrite gives the table a new one; autovacuum, plain VACUUM and ANALYZE
// do not) and an MD5 of its definition: columns (name, type, typmod,
// NOT NULL, collation, identity, default), indexes, constraints, triggers,
// rules (a view's query), owner, privileges, options and partition bound.
// Statistics that VACUUM and ANALYZE update (reltuples, relpages,
// relfrozenxid, attstattarget...) are left out, so maintenance is not a
// change. The definition is read from the catalogs' columns (pg_node_tree
// as text), not through pg_get_indexdef and friends: plain MVCC reads,
// which a concurrent DROP cannot turn into a "cache lookup failed" error.
// A materialized view's relfilenode is not compared: pg_dump keeps its
// query, not its rows, so a REFRESH changes nothing the dump holds.
// Functions, types, sequences' state and schemas themselves are not read.

// catalogQuery reads every relation of the user schemas: its schema, name,
// relkind, relfilenode (0 but for ordinary tables) and the MD5 of its
// definition.
const catalogQuery = `SELECT n.nspname, c.relname, c.relkind::text,
  (CASE WHEN c.relkind = 'r' THEN c.relfilenode ELSE 0 END)::int8,
  md5(concat_ws(E'\n', c.relkind, c.relpersistence, c.relowner, c.reloftype, c.relacl::text,
    c.reloptions::text, c.relispartition, c.relpartbound::text,
    (SELECT string_agg(concat_ws(' ', a.attnum, a.attname, a.atttypid, a.atttypmod, a.attnotnull,
        a.attcollation, a.attidentity, d.adbin::text), E'\n' ORDER BY a.attnum)
      FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
      WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped),
    (SELECT string_agg(concat_ws(' ', ic.relname, ic.relam, i.indisunique, i.indisprimary, i.indkey,
        i.indclass, i.indexprs::text, i.indpred::text), E'\n' ORDER BY ic.relname)
      FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid WHERE i.indrelid = c.oid),
    (SELECT string_agg(concat_ws(' ', co.conname, co.contype, co.conkey, co.confrelid, co.confkey,
        co.conbin::text, co.condeferrable, co.condeferred, co.convalidated, co.confupdtype,
        co.confdeltype), E'\n' ORDER BY co.conname)
      FROM pg_constraint co WHERE co.conrelid = c.oid),
    (SELECT string_agg(concat_ws(' ', t.tgname, t.tgfoid, t.tgtype, t.tgenabled, t.tgattr, t.tgargs,
        t.tgqual::text), E'\n' ORDER BY t.tgname)
      FROM pg_trigger t WHERE t.tgrelid = c.oid),
    (SELECT string_agg(concat_ws(' ', r.rulename, r.ev_type, r.ev_enabled, r.is_instead,
        md5(r.ev_qual::text), md5(r.ev_action::text)), E'\n' ORDER BY r.rulename)
      FROM pg_rewrite r WHERE r.ev_class = c.oid)))
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f') AND c.relpersistence <> 't'
  AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_toast'`

// relation is what a reading of the catalog keeps of one relation.
type relation struct {
	kind     string // pg_class.relkind: r, p, v, m or f
	filenode uint32 // relfilenode of an ordinary table; 0 for the others
	def      string // MD5 (hex) of its definition
}

// sessionsQuery lists the other sessions of the database that may hold
// counts they have not published, with how long each has been idle (-1
// when it is not): an idle one that went idle since $1 (the "before"
// reading); a busy one whose transaction began since then (one that began
// before has committed nothing since); one whose activity this role cannot
// see (state NULL, or 'disabled' without track_activities). The
// snapshot's and the gate's probes' own sessions only read.
const sessionsQuery = `SELECT pid, coalesce(application_name, ''), coalesce(state, 'hidden'),
  coalesce(CASE WHEN state = 'idle' THEN extract(epoch FROM clock_timestamp() - state_change) END, -1)::float8
FROM pg_stat_activity
WHERE datname = current_database() AND pid <> pg_backend_pid()
  AND (backend_type = 'client backend' OR backend_type IS NULL)
  AND application_name IS DISTINCT FROM '` + ApplicationName + `'
  AND application_name IS DISTINCT FROM '` + probeApplicationName + `'
  AND CASE state WHEN 'idle' THEN state_change >= $1
                 WHEN 'disabled' THEN true
                 ELSE coalesce(xact_start >= $1, true) END`

// probeApplicationName is checks.ProbeApplicationName, the gate's health
// probes' sessions, which only read. (Not imported: the snapshot needs
// nothing else of the probes.)
const probeApplicationName = "ckanops-probe"

// reading is one reading of a database's counters and catalog.
type reading struct {
	counters  map[string]Counters // keyed by "schema.table"
	relations map[string]relation // keyed by "schema.relation"
	tracking  bool                // track_counts is on; off, the counters prove nothing
	at        time.Time           // the server's clock when read
	size      int64               // pg_database_size(current_database()), bytes
	horizon   horizon             // the "before" reading's, for the proofs
}

// relfilenodes are the relfilenodes of r's ordinary tables.
func (r reading) relfilenodes() map[string]uint32 {
	m := make(map[string]uint32, len(r.relations))
	for k, rel := range r.relations {
		if rel.kind == "r" {
			m[k] = rel.filenode
		}
	}
	return m
}

// schemaDigest is the SHA-256 (hex) of one line per relation, sorted by
// name: the quoted "schema.relation", its relkind and the MD5 of its
// definition.
func (r reading) schemaDigest() string {
	h := sha256.New()
	for _, k := range sortedKeys(r.relations, nil) {
		rel := r.relations[k]
		fmt.Fprintf(h, "%s %s %s\n", strconv.Quote(k), rel.kind, rel.def)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// readCounters connects and reads the counters, then the catalog (see
// "Reading the catalog"). The "before" reading (before true) also reads
// the horizon for the proofs (proof.go): the WAL position and the
// transaction snapshot first, who holds a transaction id last. With a
// non-zero since (the "before" reading's time), it first waits for the
// sessions that worked since then to publish their counts (see above).
func readCounters(ctx context.Context, db *database, before bool, since time.Time, out *output) (reading, error) {
	var r reading
	ctx, cancel := context.WithTimeout(ctx, countersTimeout+publishWait)
	defer cancel()
	fail := func(err error) (reading, error) {
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		return reading{}, fmt.Errorf("read row counters of %s: %s", db.what(), scrub(err.Error(), db.secret))
	}
	conn, err := pgx.ConnectConfig(ctx, db.conn)
	if err != nil {
		return fail(err)
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		conn.Close(cctx)
	}()
	if before {
		r.horizon = readHorizon(ctx, conn)
	}
	if !since.IsZero() {
		if err := awaitPublish(ctx, conn, db, since, out); err != nil {
			return fail(err)
		}
	}
	if _, err := conn.Exec(ctx, "SELECT pg_stat_clear_snapshot()"); err != nil {
		return fail(err)
	}
	if err := conn.QueryRow(ctx, "SELECT current_setting('track_counts')::bool, clock_timestamp(), pg_database_size(current_database())").Scan(&r.tracking, &r.at, &r.size); err != nil {
		return fail(err)
	}
	rows, err := conn.Query(ctx, countersQuery)
	if err != nil {
		return fail(err)
	}
	r.counters = map[string]Counters{}
	for rows.Next() {
		var schema, table string
		var c Counters
		if err := rows.Scan(&schema, &table, &c.Inserts, &c.Updates, &c.Deletes); err != nil {
			rows.Close()
			return fail(err)
		}
		r.counters[schema+"."+table] = c
	}
	if err := rows.Err(); err != nil {
		return fail(err)
	}
	if r.relations, err = readCatalog(ctx, conn); err != nil {
		return fail(fmt.Errorf("catalog: %w", err))
	}
	if before {
		r.horizon.checkWAL(ctx, conn)
	}
	return r, nil
}

// readCatalog reads the relations of the user schemas (see "Reading the
// catalog").
func readCatalog(ctx context.Context, conn *pgx.Conn) (map[string]relation, error) {
	rows, err := conn.Query(ctx, catalogQuery)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	rels := map[string]relation{}
	for rows.Next() {
		var schema, name string
		var rel relation
		var filenode int64
		if err := rows.Scan(&schema, &name, &rel.kind, &filenode, &rel.def); err != nil {
			return nil, err
		}
		rel.filenode = uint32(filenode)
		rels[schema+"."+name] = rel
	}
	return rels, rows.Err()
}

// awaitPublish waits until the sessions that worked since since have
// been idle for idleInterval, at most publishWait.
func awaitPublish(ctx context.Context, conn *pgx.Conn, db *database, since time.Time, out *output) error {
	rows, err := conn.Query(ctx, sessionsQuery, since)
	if err != nil {
		return err
	}
	var wait time.Duration
	var who []string
	for rows.Next() {
		var pid int32
		var app, state string
		var idle float64
		if err := rows.Scan(&pid, &app, &state, &idle); err != nil {
			rows.Close()
			return err
		}
		left := publishWait // busy, or unseen: it may publish any time
		if idle >= 0 {
			left = idleInterval - time.Duration(idle*float64(time.Second))
		}
		if left > 0 {
			wait = max(wait, min(left, publishWait))
			if app == "" {
				app = "no application_name"
			}
			who = append(who, fmt.Sprintf("pid %d (%s, %s)", pid, app, state))
		}
	}
	if err := rows.Err(); err != nil {
		return err
	}
	if wait <= 0 {
		return nil
	}
	out.line("waiting %v for the sessions of %s that worked during the snapshot to publish their statistics: %s",
		wait.Round(100*time.Millisecond), db.what(), names(who))
	timer := time.NewTimer(wait)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-timer.C:
		return nil
	}
}

// dumpEnv is pg_dump's environment: ours, with the password (when the URL
// has one) and the application name.
func (db *database) dumpEnv() []string { return db.toolEnv(ApplicationName) }

// toolEnv is the environment of a Postgres client program (pg_dump,
// pg_restore): ours, with the password (when the URL has one, so that it
// never shows in argv) and the application name app.
func (db *database) toolEnv(app string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "PGAPPNAME=") || (db.password != "" && strings.HasPrefix(kv, "PGPASSWORD=")) {
			continue
		}
		env = append(env, kv)
	}
	env = append(env, "PGAPPNAME="+app)
	if db.password != "" {
		env = append(env, "PGPASSWORD="+db.password)
	}
	return env
}

// dumpArgs is pg_dump's argv after the program: never the password.
func (db *database) dumpArgs() []string {
	return []string{"--format=custom", "--no-password", "--dbname=" + db.dumpURL}
}

// dump runs pg_dump into dir/<source>.dump, hashing its output on the way.
// Cancelling ctx kills pg_dump (its whole process group).
// exited is called when pg_dump has exited, before its file is synced.
// estimate is the database's size (pg_database_size, read with the
// "before" counters), the total of the dump's progress so that the
// console and the CLI can show an ETA; 0: unknown. It over-estimates: a
// custom-format dump is compressed and holds no indexes, only their
// definitions, so the dump usually ends well short of it.
func dump(ctx context.Context, db *database, pgDump, dir string, estimate int64, out *output, exited func()) (File, error) {
	name := DumpFileName(db.source)
	f := File{Name: name, Kind: KindPGDump, Source: db.source}
	s, err := createSink(filepath.Join(dir, name))
	if err != nil {
		return f, fmt.Errorf("pg_dump of %s: %w", db.what(), err)
	}
	defer s.abort()
	mt := out.meter("pg_dump "+db.source, max(estimate, 0), 0)
	defer func() { mt.end(s.n, 0) }()

	cmd := exec.CommandContext(ctx, pgDump, db.dumpArgs()...)
	cmd.Env = db.dumpEnv()
	// Its own process group, so that a kill reaches anything it started;
	// and killed if the process that started it dies.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = killWait
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return f, err
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return f, err
	}
	if err := cmd.Start(); err != nil {
		return f, fmt.Errorf("pg_dump of %s: cannot run %s: %w", db.what(), pgDump, err)
	}
	kill := func() { _ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }

	tail := make(chan []string, 1)
	go func() { tail <- readStderr(stderr, db, out) }()

	copyErr := copyOut(s, stdout, db, out, mt)
	if copyErr != nil {
		kill() // it would block on a full pipe otherwise
		copyErr = writeHint(copyErr, filepath.Dir(dir))
	}
	lines := <-tail
	waitErr := cmd.Wait()
	if exited != nil {
		exited()
	}

	switch {
	case copyErr != nil:
		return f, fmt.Errorf("pg_dump of %s: writing %s: %w", db.what(), name, copyErr)
	case ctx.Err() != nil:
		return f, ctx.Err()
	case waitErr != nil:
		msg := fmt.Sprintf("pg_dump of %s failed with %v", db.what(), waitErr)
		if len(lines) > 0 {
			msg += ": " + strings.Join(lines, "; ")
		}
		return f, errors.New(msg)
	case s.n == 0:
		return f, fmt.Errorf("pg_dump of %s wrote nothing, yet exited 0", db.what())
	}
	if f.Size, f.SHA256, err = s.finish(); err != nil {
		return f, fmt.Errorf("pg_dump of %s: writing %s: %w", db.what(), name, writeHint(err, filepath.Dir(dir)))
	}
	out.line("pg_dump %s: done, %s", db.source, human.Bytes(f.Size))
	return f, nil
}

// copyOut streams pg_dump's output into s, reporting the size now and then.
// Only read errors of the pipe end the copy without error (pg_dump died;
// Wait says why).
func copyOut(s *sink, stdout io.Reader, db *database, out *output, mt *meter) error {
	buf := make([]byte, copyBufferSize)
	last := time.Now()
	for {
		n, rerr := stdout.Read(buf)
		if n > 0 {
			if _, err := s.Write(buf[:n]); err != nil {
				return err
			}
			mt.update(s.n, 0)
			if time.Since(last) >= progressEvery {
				last = time.Now()
				out.line("pg_dump %s: %s", db.source, human.Bytes(s.n))
			}
		}
		if rerr != nil {
			return nil
		}
	}
}

// readStderr passes pg_dump's stderr to the output, line by line, with
// the password scrubbed, and returns its last stderrTail lines.
func readStderr(r io.Reader, db *database, out *output) []string {
	var tail []string
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(scrub(sc.Text(), db.secret))
		if db.password != "" && len(db.password) >= 3 {
			line = strings.ReplaceAll(line, db.password, "xxxxx")
		}
		if line == "" {
			continue
		}
		out.line("pg_dump %s: %s", db.source, line)
		if len(tail) == stderrTail {
			tail = tail[1:]
		}
		tail = append(tail, line)
	}
	_, _ = io.Copy(io.Discard, r) // a line too long: drain, so pg_dump never blocks
	return tail
}
