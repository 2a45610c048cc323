package snapshot

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// Proving what was written while the snapshot ran, without waiting.
//
// The row counters (pg_stat_user_tables) are published late: up to 10 s
// after a session commits (see "Reading the counters"), so a verdict
// resting on them waits. Take first tries two proofs that rest on what
// Postgres records synchronously, database by database; only when
// neither holds does it wait for the counters.
//
//  1. The transaction-id horizon (MethodXIDHorizon). Every change to a
//     table's rows (INSERT, UPDATE, DELETE, COPY, TRUNCATE, DDL) runs in
//     a transaction that has been assigned a transaction id; reads never
//     are. The "before" reading keeps pg_current_snapshot(): its xmax and
//     its in-progress ids. The "after" reading asks pg_xact_status of
//     every id from that xmax up to the new xmax, and of the ids then in
//     progress. None committed: nothing in the whole cluster wrote while
//     the snapshot ran, so nothing did in this database. Transaction ids
//     are the cluster's, so a busy neighbour database defeats this proof
//     (the next one tells them apart).
//
//  2. The write-ahead log (MethodWAL), where pg_walinspect is installed in
//     the database and the snapshot's role may use it (superuser or
//     pg_read_server_files): the WAL records from the "before" reading's
//     insert position to the "after" one, of the transactions that
//     committed, name the blocks each changed (rel tablespace/database/
//     filenode). Those of this database's user tables are counted as
//     inserts, updates and deletes per table and judged by the same rules
//     as the counters (bookkeeping). For this to see every record of
//     every transaction that committed during the snapshot, no other
//     session of the database may hold a transaction id at the "before"
//     reading (pg_stat_activity.backend_xid, shown to every role), nor a
//     prepared transaction: a transaction assigned its id later writes
//     all its records after the position read. One that committed between
//     the "before" reading and that check committed before pg_dump's
//     snapshot, so its records seen are only a cautious extra. Unlogged
//     tables write no WAL: a database with one cannot use this proof.
//     Index, TOAST and catalog records are not counted (a row's change
//     always writes its table's record; DDL and TRUNCATE are the catalog
//     reading's); a record of a relation the catalog no longer knows is a
//     change.
//
//  3. Otherwise (MethodStatistics) the counters, after their wait.
//
// Measured (bench/RESULTS.md, "Snapshot verdict without the statistics
// wait"): the horizon costs a few milliseconds; the WAL reading about
// 150 MB of WAL a second, and a snapshot writes little WAL; the wait,
// on a site whose readers used the database during the snapshot, 10 s.

// The methods of a Proof.
const (
	MethodXIDHorizon = "xid-horizon"
	MethodWAL        = "wal"
	MethodStatistics = "statistics"
)

const (
	// maxProofXIDs bounds the transaction ids a proof looks at: a cluster
	// that assigned more while the snapshot ran is busy with something
	// else, and the counters decide.
	maxProofXIDs = 200_000
	// proofTimeout bounds the proofs' readings of one database.
	proofTimeout = 30 * time.Second
	// commitFlushWait bounds the wait for asynchronous commits to reach
	// the flushed WAL: a few times wal_writer_delay's default.
	commitFlushWait = 3 * time.Second
	// firstNormalOID is FirstNormalObjectId: relations below it are the
	// system's.
	firstNormalOID = 16384
)

// horizon is what the "before" reading keeps for the proofs.
type horizon struct {
	why        string   // not "": no proof can be tried, and why
	xmax       uint64   // pg_snapshot_xmax(pg_current_snapshot())
	xip        []uint64 // pg_snapshot_xip: the ids then in progress
	lsn        string   // pg_current_wal_insert_lsn(), read first
	dbOID      uint32   // the database's oid
	walinspect string   // the schema of a usable pg_walinspect; "" with walWhy
	walWhy     string   // why the WAL proof cannot be used
}

// readHorizon reads the WAL position and the transaction snapshot, in that
// order, on conn. Call it before the counters.
func readHorizon(ctx context.Context, conn *pgx.Conn) horizon {
	var h horizon
	var version int
	var recovery bool
	if err := conn.QueryRow(ctx, `SELECT current_setting('server_version_num')::int, pg_is_in_recovery(),
  (SELECT oid::int8 FROM pg_database WHERE datname = current_database())`).Scan(&version, &recovery, &h.dbOID); err != nil {
		return horizon{why: "reading the server's version: " + err.Error()}
	}
	switch {
	case version < 130000:
		return horizon{why: fmt.Sprintf("PostgreSQL %d.%d has no pg_current_snapshot (13 and later have)", version/10000, version/100%100)}
	case recovery:
		return horizon{why: "the server is a standby"}
	}
	// The position first: a transaction assigned its id after the
	// snapshot writes all its records after it.
	if err := conn.QueryRow(ctx, "SELECT pg_current_wal_insert_lsn()::text").Scan(&h.lsn); err != nil {
		return horizon{why: err.Error()}
	}
	var xmax string
	var xip []string
	if err := conn.QueryRow(ctx, `SELECT pg_snapshot_xmax(s)::text, coalesce(array(SELECT x::text FROM pg_snapshot_xip(s) x), '{}')
FROM pg_current_snapshot() s`).Scan(&xmax, &xip); err != nil {
		return horizon{why: err.Error()}
	}
	ids, err := parseXIDs(append(xip, xmax))
	if err != nil {
		return horizon{why: "pg_current_snapshot: " + err.Error()}
	}
	h.xip, h.xmax = ids[:len(xip)], ids[len(xip)]
	return h
}

// parseXIDs reads full transaction ids (xid8) as Postgres writes them.
func parseXIDs(texts []string) ([]uint64, error) {
	ids := make([]uint64, len(texts))
	for i, s := range texts {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return nil, err
		}
		ids[i] = n
	}
	return ids, nil
}

// holdersQuery names the other sessions of the database holding a
// transaction id, and its prepared transactions. An autovacuum worker's id
// (ANALYZE writing pg_statistic) writes only catalogs, which the proof
// does not count; its backend_type shows only to privileged roles, so to
// the others it is a holder.
const holdersQuery = `SELECT format('pid %s (%s)', pid, coalesce(nullif(application_name, ''), 'no application_name'))
FROM pg_stat_activity
WHERE datid = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND pid <> pg_backend_pid() AND backend_xid IS NOT NULL
  AND backend_type IS DISTINCT FROM 'autovacuum worker'
UNION ALL
SELECT format('prepared transaction %L', gid) FROM pg_prepared_xacts WHERE database = current_database()`

// unloggedQuery names the unlogged user tables.
const unloggedQuery = `SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relpersistence = 'u' AND c.relkind IN ('r', 'p', 'm')
  AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_toast'
ORDER BY 1`

// walinspectQuery finds pg_walinspect's schema and whether the role may
// run it.
const walinspectQuery = `SELECT n.nspname,
  has_function_privilege(format('%I.pg_get_wal_records_info(pg_lsn, pg_lsn)', n.nspname), 'EXECUTE')
    AND (pg_has_role('pg_read_server_files', 'USAGE') OR (SELECT rolsuper FROM pg_roles WHERE rolname = current_user))
FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'pg_walinspect'`

// checkWAL decides, at the end of the "before" reading (after the
// position and the snapshot), whether the WAL proof can be used.
func (h *horizon) checkWAL(ctx context.Context, conn *pgx.Conn) {
	if h.why != "" {
		return
	}
	var schema string
	var usable bool
	switch err := conn.QueryRow(ctx, walinspectQuery).Scan(&schema, &usable); {
	case errors.Is(err, pgx.ErrNoRows):
		h.walWhy = "pg_walinspect is not installed in the database (CREATE EXTENSION pg_walinspect, PostgreSQL 15 and later)"
		return
	case err != nil:
		h.walWhy = "looking for pg_walinspect: " + err.Error()
		return
	case !usable:
		h.walWhy = "the role may not read the WAL (it needs pg_read_server_files and EXECUTE on pg_walinspect's functions)"
		return
	}
	unlogged, err := strings1(ctx, conn, unloggedQuery)
	if err != nil {
		h.walWhy = "listing unlogged tables: " + err.Error()
		return
	}
	if len(unlogged) > 0 {
		h.walWhy = "unlogged tables write no WAL: " + names(unlogged)
		return
	}
	holders, err := strings1(ctx, conn, holdersQuery)
	if err != nil {
		h.walWhy = "listing the sessions holding a transaction id: " + err.Error()
		return
	}
	if len(holders) > 0 {
		h.walWhy = "sessions held a transaction id as the snapshot began: " + names(holders)
		return
	}
	h.walinspect = schema
}

// names joins at most five names, then says how many more.
func names(l []string) string {
	if len(l) > 5 {
		l = append(l[:5:5], fmt.Sprintf("%d more", len(l)-5))
	}
	return strings.Join(l, ", ")
}

// strings1 runs a query of one text column.
func strings1(ctx context.Context, conn *pgx.Conn, q string) ([]string, error) {
	rows, err := conn.Query(ctx, q)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}

// proof is what proveWrites found of one database.
type proof struct {
	Proof
	changes map[string]Counters // the WAL proof's rows changed, by "schema.table"
	unknown []string            // the WAL proof's writes it cannot place
}

// proveWrites tries the proofs for each database of dbs, given their
// "before" horizons. A database gets MethodStatistics, with why, when
// neither proof holds; the error is for a database that cannot be read at
// all.
func proveWrites(ctx context.Context, dbs []*database, hs []horizon) ([]proof, error) {
	ctx, cancel := context.WithTimeout(ctx, proofTimeout)
	defer cancel()
	proofs := make([]proof, len(dbs))
	stats := func(why string) proof {
		return proof{Proof: Proof{Method: MethodStatistics, Committed: -1, Why: why}}
	}
	for i, db := range dbs {
		h := hs[i]
		if h.why != "" {
			proofs[i] = stats(h.why)
			continue
		}
		err := withConn(ctx, db, func(conn *pgx.Conn) error {
			ids, why, err := committedSince(ctx, conn, h)
			switch {
			case err != nil:
				proofs[i] = stats("reading the transactions' status: " + scrub(err.Error(), db.secret))
			case why != "":
				proofs[i] = stats(why)
			case len(ids) == 0:
				proofs[i] = proof{Proof: Proof{Method: MethodXIDHorizon}}
			case h.walinspect == "":
				proofs[i] = stats(fmt.Sprintf("%d transaction(s) committed in the cluster during the snapshot, and the WAL cannot tell which database they wrote: %s", len(ids), h.walWhy))
			default:
				p, err := readWAL(ctx, conn, h, ids)
				if err != nil {
					p = stats(fmt.Sprintf("%d transaction(s) committed in the cluster during the snapshot, and reading the WAL failed: %s", len(ids), scrub(err.Error(), db.secret)))
				}
				proofs[i] = p
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	return proofs, nil
}

// withConn runs f on a connection of its own to db.
func withConn(ctx context.Context, db *database, f func(*pgx.Conn) error) error {
	conn, err := pgx.ConnectConfig(ctx, db.conn)
	if err != nil {
		return fmt.Errorf("prove the writes of %s: %s", db.what(), scrub(err.Error(), db.secret))
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		conn.Close(cctx)
	}()
	return f(conn)
}

// committedSince returns the transaction ids that committed since the
// horizon h: of those then in progress, and of every one assigned since.
// why is not "" when there are too many to look at.
func committedSince(ctx context.Context, conn *pgx.Conn, h horizon) (ids []uint64, why string, err error) {
	var xmaxText string
	if err := conn.QueryRow(ctx, "SELECT pg_snapshot_xmax(pg_current_snapshot())::text").Scan(&xmaxText); err != nil {
		return nil, "", err
	}
	xmax, err := strconv.ParseUint(xmaxText, 10, 64)
	if err != nil {
		return nil, "", err
	}
	if xmax < h.xmax {
		return nil, "the transaction ids went back (a restored or different server?)", nil
	}
	if n := xmax - h.xmax + uint64(len(h.xip)); n > maxProofXIDs {
		return nil, fmt.Sprintf("%d transaction ids were assigned in the cluster during the snapshot, more than the %d a proof looks at", n, maxProofXIDs), nil
	}
	xip := make([]string, len(h.xip))
	for i, x := range h.xip {
		xip[i] = strconv.FormatUint(x, 10)
	}
	rows, err := conn.Query(ctx, `SELECT x::text FROM (
  SELECT unnest($1::text[])::xid8
  UNION ALL SELECT g::text::xid8 FROM generate_series($2::int8, $3::int8 - 1) g
) ids(x) WHERE pg_xact_status(x) = 'committed'`, xip, int64(h.xmax), int64(xmax))
	if err != nil {
		return nil, "", err
	}
	texts, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, "", err
	}
	ids, err = parseXIDs(texts)
	return ids, "", err
}

// blockRef matches one block reference of pg_walinspect's block_ref.
var blockRef = regexp.MustCompile(`rel (\d+)/(\d+)/(\d+) fork (\w+) blk`)

// subxacts finds the subtransactions a commit record's description lists.
var subxacts = regexp.MustCompile(`subxacts:((?: \d+)+)`)

// relfile is a relation's file: tablespace and filenode.
type relfile struct{ spc, node uint32 }

// walKey is a relation file of this database and a heap record type
// (resource manager/record type, as pg_walinspect names them).
type walKey struct {
	file relfile
	kind string
}

// scanWAL reads the WAL from the horizon's position to end: the heap
// records of transactions xids on this database's relation files, counted
// by file and record type, and which of xids it saw commit (a commit
// record's own, and the subtransactions it lists).
func scanWAL(ctx context.Context, conn *pgx.Conn, h horizon, end string, xids []int64) (map[walKey]int64, map[int64]bool, error) {
	counts, seen := map[walKey]int64{}, map[int64]bool{}
	rows, err := conn.Query(ctx, `SELECT resource_manager, record_type, block_ref,
  CASE resource_manager WHEN 'Transaction' THEN xid::text::int8 ELSE 0 END,
  CASE resource_manager WHEN 'Transaction' THEN description ELSE '' END, count(*)::int8
FROM `+pgx.Identifier{h.walinspect, "pg_get_wal_records_info"}.Sanitize()+`($1::pg_lsn, $2::pg_lsn)
WHERE xid::text::int8 = ANY($3::int8[])
  AND (resource_manager IN ('Heap', 'Heap2') AND block_ref <> ''
    OR resource_manager = 'Transaction' AND record_type IN ('COMMIT', 'COMMIT_PREPARED'))
GROUP BY 1, 2, 3, 4, 5`, h.lsn, end, xids)
	if err != nil {
		return nil, nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var rmgr, kind, refs, desc string
		var xid, n int64
		if err := rows.Scan(&rmgr, &kind, &refs, &xid, &desc, &n); err != nil {
			return nil, nil, err
		}
		if rmgr == "Transaction" {
			seen[xid] = true
			if m := subxacts.FindStringSubmatch(desc); m != nil {
				for _, f := range strings.Fields(m[1]) {
					if x, err := strconv.ParseInt(f, 10, 64); err == nil {
						seen[x] = true
					}
				}
			}
			continue
		}
		files := map[relfile]bool{}
		for _, m := range blockRef.FindAllStringSubmatch(refs, -1) {
			spc, _ := strconv.ParseUint(m[1], 10, 32)
			dbOID, _ := strconv.ParseUint(m[2], 10, 32)
			node, _ := strconv.ParseUint(m[3], 10, 32)
			if uint32(dbOID) != h.dbOID || m[4] != "main" {
				continue
			}
			f := relfile{uint32(spc), uint32(node)}
			if !files[f] { // an UPDATE to another page names the table twice
				files[f] = true
				counts[walKey{f, rmgr + "/" + kind}] += n
			}
		}
	}
	return counts, seen, rows.Err()
}

// readWAL counts the heap records of the committed transactions from the
// horizon's position on, by table of this database.
//
// It reads the WAL up to the flushed position (pg_walinspect reads no
// further) once that holds the commit record of every committed
// transaction (or, for a subtransaction, its parent's, which lists it):
// a transaction's records all come before its commit. A synchronous
// commit is flushed before it shows as committed; an asynchronous one
// (synchronous_commit off) within wal_writer_delay (200 ms by default),
// which readWAL waits for, at most commitFlushWait.
func readWAL(ctx context.Context, conn *pgx.Conn, h horizon, committed []uint64) (proof, error) {
	p := proof{Proof: Proof{Method: MethodWAL, Committed: len(committed)}, changes: map[string]Counters{}}
	// pg_walinspect's xid is 32 bits: the low half of the full id.
	xids := make([]int64, len(committed))
	for i, x := range committed {
		xids[i] = int64(uint32(x))
	}
	var counts map[walKey]int64
	deadline := time.Now().Add(commitFlushWait)
	for {
		var end string
		var past bool // the flushed WAL reaches past the start
		if err := conn.QueryRow(ctx, "SELECT pg_current_wal_flush_lsn()::text, pg_current_wal_flush_lsn() > $1::pg_lsn, (pg_current_wal_flush_lsn() - $1::pg_lsn)::int8",
			h.lsn).Scan(&end, &past, &p.WALBytes); err != nil {
			return p, err
		}
		missing := int64(-1)
		if past {
			var seen map[int64]bool
			var err error
			if counts, seen, err = scanWAL(ctx, conn, h, end, xids); err != nil {
				return p, err
			}
			for _, x := range xids {
				if !seen[x] {
					missing = x
					break
				}
			}
			if missing < 0 {
				break
			}
		}
		if time.Now().After(deadline) {
			what := "the WAL"
			if missing >= 0 {
				what = fmt.Sprintf("the commit of transaction %d", missing)
			}
			return p, fmt.Errorf("%s is not in the flushed WAL (up to %s) after %v", what, end, commitFlushWait)
		}
		select {
		case <-ctx.Done():
			return p, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	if len(counts) == 0 {
		return p, nil
	}
	files := map[relfile]bool{}
	for k := range counts {
		files[k.file] = true
	}
	rels, err := placeFiles(ctx, conn, files)
	if err != nil {
		return p, err
	}
	var unknown []string
	for k, n := range counts {
		r := rels[k.file]
		switch {
		case r.name == "" && k.file.node < firstNormalOID:
			continue // the system's
		case r.name == "":
			unknown = append(unknown, fmt.Sprintf("a relation no longer in the catalog (filenode %d) was written during the snapshot", k.file.node))
			continue
		case !r.user:
			continue // an index, a TOAST table, a catalog: the table's own record counts
		}
		c := p.changes[r.name]
		switch op := heapOp(k.kind); op {
		case "insert":
			c.Inserts += n
		case "update":
			c.Updates += n
		case "delete":
			c.Deletes += n
		case "":
			continue
		default:
			unknown = append(unknown, fmt.Sprintf("table %s: %d WAL record(s) %s during the snapshot", r.name, n, op))
			continue
		}
		p.changes[r.name] = c
	}
	sort.Strings(unknown)
	p.unknown = compactStrings(unknown)
	return p, nil
}

// compactStrings drops repeats from a sorted list.
func compactStrings(l []string) []string {
	out := l[:0]
	for i, s := range l {
		if i == 0 || s != l[i-1] {
			out = append(out, s)
		}
	}
	return out
}

// heapOp says what a heap record (resource manager/type, as pg_walinspect
// names them) did to a table's rows: "insert", "update" or "delete"; ""
// for what changes no row (a lock, pruning, freezing, visibility); for
// any other, a phrase naming it, counted as a change.
func heapOp(kind string) string {
	rmgr, typ, _ := strings.Cut(kind, "/")
	typ, _, _ = strings.Cut(typ, "+") // INSERT+INIT
	switch rmgr + "/" + typ {
	case "Heap/INSERT", "Heap2/MULTI_INSERT":
		return "insert"
	case "Heap/UPDATE", "Heap/HOT_UPDATE":
		return "update"
	case "Heap/DELETE":
		return "delete"
	case "Heap/LOCK", "Heap2/LOCK_UPDATED", "Heap/HEAP_CONFIRM", "Heap/INPLACE",
		"Heap2/PRUNE", "Heap2/VACUUM", "Heap2/FREEZE_PAGE", "Heap2/VISIBLE",
		"Heap2/NEW_CID", "Heap2/CLEANUP_INFO",
		// PostgreSQL 17's names for pruning.
		"Heap2/PRUNE_ON_ACCESS", "Heap2/PRUNE_VACUUM_SCAN", "Heap2/PRUNE_VACUUM_CLEANUP":
		return ""
	}
	return "of type " + kind
}

// placedRel is what a relation file is.
type placedRel struct {
	name string // "schema.table"; "" when the catalog has no such file
	user bool   // a table, partitioned table or materialized view of the user schemas
}

// placeFiles names the relations of this database's files.
func placeFiles(ctx context.Context, conn *pgx.Conn, files map[relfile]bool) (map[relfile]placedRel, error) {
	var spcs, nodes []int64
	for f := range files {
		spcs = append(spcs, int64(f.spc))
		nodes = append(nodes, int64(f.node))
	}
	rows, err := conn.Query(ctx, `SELECT f.spc, f.node, coalesce(n.nspname, ''), coalesce(c.relname, ''), coalesce(c.relkind::text, '')
FROM unnest($1::int8[], $2::int8[]) AS f(spc, node)
LEFT JOIN pg_class c ON c.oid = pg_filenode_relation(f.spc::oid, f.node::oid)
LEFT JOIN pg_namespace n ON n.oid = c.relnamespace`, spcs, nodes)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[relfile]placedRel{}
	for rows.Next() {
		var spc, node int64
		var schema, name, kind string
		if err := rows.Scan(&spc, &node, &schema, &name, &kind); err != nil {
			return nil, err
		}
		r := placedRel{}
		if name != "" {
			r.name = schema + "." + name
			system := schema == "pg_catalog" || schema == "information_schema" || strings.HasPrefix(schema, "pg_toast") || strings.HasPrefix(schema, "pg_temp_")
			r.user = !system && (kind == "r" || kind == "p" || kind == "m")
		}
		out[relfile{uint32(spc), uint32(node)}] = r
	}
	return out, rows.Err()
}
