package snapshot

import (
	"fmt"
	"io/fs"
	"sort"
	"strings"
)

// maxNamedFiles is how many changed storage entries the verdict names
// before it says "and N more".
const maxNamedFiles = 20

// bookkeeping says whether a change d to table relname of database source
// (SourceCKANDB or SourceDatastoreDB) is one CKAN makes while read-only,
// serving reads, and why. The rules are per database: a table of that
// name in the other database is content.
//
// CKAN 2.12 adds four tables. What follows is from the 2.12 surface's
// CHANGES.md (internal/surface/data/2.12/CHANGES.md: "GET routes and
// side_effect_free actions in 2.12 that write to a database", "New tables
// in the CKAN DB") and CKAN's ckanext/datastore/set_permissions.sql:
//
//   - _table_stats, in the DataStore's database: a cache of each resource
//     table's row count. A plain datastore_search (include_total, no
//     filters, q or distinct), GET /datastore/api_info/<id> and the
//     datatables view's ajax POST run cached_table_row_count(), which
//     INSERTs the count (ON CONFLICT DO UPDATE) when the cache has no row
//     for the resource, even for an anonymous GET; datastore_create,
//     upsert and delete DELETE the row, and a delayed RQ job refills it.
//     Bookkeeping, whatever the change: what it holds is derived from the
//     resource tables, which pg_dump reads in the same transaction, and a
//     write that would make it stale moves the resource table's own
//     counters, which are content.
//   - file, file_owner and file_owner_transfer_history, in CKAN's
//     database (migration 9445ce34fc23): the records of uploaded files and
//     of who owns them. Only file_create, file_register, file_delete,
//     file_rename, file_pin, file_unpin and file_ownership_transfer write
//     them, none side-effect free, all refused by a read-only gate; the
//     reads (file_show, file_owner_scan, the file downloads) only SELECT.
//     Content: a change to them is a real write and spoils the verdict.
//     So they have no case here.
func bookkeeping(source, relname string, d Counters) (why string, ok bool) {
	switch source {
	case SourceCKANDB:
		onlyUpdates := d.Inserts == 0 && d.Deletes == 0
		switch relname {
		case "user":
			return "user.last_active", onlyUpdates
		case "api_token":
			return "api_token.last_access", onlyUpdates
		case "dashboard":
			return "dashboard activity", true
		case "tracking_raw", "tracking_summary":
			return "page-view tracking", true
		}
	case SourceDatastoreDB:
		switch relname {
		case "_table_stats":
			return "DataStore row-count cache, written by datastore_search", true
		}
	}
	return "", false
}

// compareCounters names the tables of database source whose counters
// differ between before and after: changes to content go to changed,
// bookkeeping (see bookkeeping) to kept. Both come out sorted by table.
func compareCounters(source string, before, after map[string]Counters) (changed, kept []string) {
	for _, t := range sortedKeys(before, after) {
		b, inBefore := before[t]
		a, inAfter := after[t]
		what := source + " table " + t
		switch {
		case !inAfter:
			changed = append(changed, what+": dropped during the snapshot")
			continue
		case !inBefore:
			changed = append(changed, what+": created during the snapshot")
			continue
		}
		d := Counters{Inserts: a.Inserts - b.Inserts, Updates: a.Updates - b.Updates, Deletes: a.Deletes - b.Deletes}
		if d == (Counters{}) {
			continue
		}
		if d.Inserts < 0 || d.Updates < 0 || d.Deletes < 0 {
			changed = append(changed, what+": its counters went back (statistics reset?), so changes cannot be ruled out")
			continue
		}
		if line, ok := judge(source, t, d); ok {
			kept = append(kept, line)
		} else {
			changed = append(changed, line)
		}
	}
	return changed, kept
}

// judgeChanges is compareCounters for the rows a proof saw change (by
// "schema.table"), sorted by table.
func judgeChanges(source string, changes map[string]Counters) (changed, kept []string) {
	for _, t := range sortedKeys(changes, nil) {
		if changes[t] == (Counters{}) {
			continue
		}
		if line, ok := judge(source, t, changes[t]); ok {
			kept = append(kept, line)
		} else {
			changed = append(changed, line)
		}
	}
	return changed, kept
}

// judge describes change d to table t ("schema.table") of database
// source, and says whether it is bookkeeping.
func judge(source, t string, d Counters) (line string, isBookkeeping bool) {
	line = source + " table " + t + ": " + describeCounts(d)
	_, relname, _ := strings.Cut(t, ".")
	if why, ok := bookkeeping(source, relname, d); ok {
		return line + " (" + why + ")", true
	}
	return line, false
}

// compareCatalogs names, sorted by name, the relations of database source
// that the counters cannot vouch for: a table given a new relfilenode
// (TRUNCATE or a rewrite), a relation whose definition changed (DDL), and
// a relation the counters do not list (a view...) that was created or
// dropped. counted says whether the counters list a name; their own
// "created" and "dropped" are not repeated. Even bookkeeping tables are
// named: CKAN's reads never TRUNCATE nor alter them. (The manifest's
// schema digest is made of the same definitions, so it differs exactly
// when a relation is named here or created or dropped.)
func compareCatalogs(source string, before, after map[string]relation, counted func(string) bool) []string {
	var changed []string
	for _, k := range sortedKeys(before, after) {
		b, inBefore := before[k]
		a, inAfter := after[k]
		switch {
		case !inAfter || !inBefore:
			if counted(k) {
				continue
			}
			verb, rel := "created", a
			if !inAfter {
				verb, rel = "dropped", b
			}
			changed = append(changed, fmt.Sprintf("%s %s %s: %s during the snapshot", source, kindWord(rel.kind), k, verb))
			continue
		}
		what := source + " " + kindWord(a.kind) + " " + k
		if a.filenode != b.filenode {
			changed = append(changed, what+": rewritten during the snapshot (TRUNCATE, VACUUM FULL, CLUSTER or an ALTER TABLE that rewrites it), which its row counters do not show")
		}
		if a.def != b.def || a.kind != b.kind {
			changed = append(changed, what+": the schema changed during the snapshot (DDL: columns, indexes, constraints, triggers or privileges)")
		}
	}
	return changed
}

// kindWord names a relkind in a verdict.
func kindWord(relkind string) string {
	switch relkind {
	case "v":
		return "view"
	case "m":
		return "materialized view"
	case "f":
		return "foreign table"
	}
	return "table"
}

// describeCounts says "1 insert(s), 2 update(s)", leaving zeros out.
func describeCounts(d Counters) string {
	var parts []string
	if d.Inserts != 0 {
		parts = append(parts, fmt.Sprintf("%d insert(s)", d.Inserts))
	}
	if d.Updates != 0 {
		parts = append(parts, fmt.Sprintf("%d update(s)", d.Updates))
	}
	if d.Deletes != 0 {
		parts = append(parts, fmt.Sprintf("%d delete(s)", d.Deletes))
	}
	return strings.Join(parts, ", ")
}

// entry is what a walk records of one storage entry.
type entry struct {
	size  int64 // 0 for directories
	mtime int64 // Unix nanoseconds; 0 for directories
	mode  fs.FileMode
}

// compareStorage names the storage entries added, removed or modified
// between two walks, sorted by path, at most maxNamedFiles of them. Each
// line starts with prefix: "storage" for the storage "default", "storage
// <name>:" for the others.
func compareStorage(prefix string, before, after map[string]entry) []string {
	var lines []string
	n := 0
	add := func(s string) {
		n++
		if n <= maxNamedFiles {
			lines = append(lines, s)
		}
	}
	for _, p := range sortedKeys(before, after) {
		b, inBefore := before[p]
		a, inAfter := after[p]
		switch {
		case !inAfter:
			add(fmt.Sprintf("%s %s %s removed", prefix, kindOf(b.mode), p))
		case !inBefore:
			add(fmt.Sprintf("%s %s %s added", prefix, kindOf(a.mode), p))
		case a.mode.Type() != b.mode.Type():
			add(fmt.Sprintf("%s %s changed from a %s to a %s", prefix, p, kindOf(b.mode), kindOf(a.mode)))
		case a != b:
			add(fmt.Sprintf("%s %s %s modified", prefix, kindOf(a.mode), p))
		}
	}
	if n > maxNamedFiles {
		lines = append(lines, fmt.Sprintf("%s and %d more change(s)", strings.TrimSuffix(prefix, ":")+":", n-maxNamedFiles))
	}
	return lines
}

func kindOf(m fs.FileMode) string {
	switch {
	case m.IsRegular():
		return "file"
	case m.IsDir():
		return "dir"
	case m&fs.ModeSymlink != 0:
		return "symlink"
	}
	return "entry"
}

// verdictOf is the verdict given what changed and the storages missing
// (not included, not excluded): Inconsistent wins over Partial.
func verdictOf(changed []string, missing []StorageNotIncluded) string {
	switch {
	case len(changed) > 0:
		return Inconsistent
	case len(missing) > 0:
		return Partial
	}
	return Consistent
}

// sortedKeys is every key of before and after, sorted, each once.
func sortedKeys[V any](before, after map[string]V) []string {
	keys := make([]string, 0, len(after))
	for k := range before {
		keys = append(keys, k)
	}
	for k := range after {
		if _, ok := before[k]; !ok {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	return keys
}
