package snapshot

import (
	"fmt"
	"io/fs"
	"reflect"
	"strings"
	"testing"

	"github.com/ckanops/ckanops/config"
)

func TestCompareCounters(t *testing.T) {
	base := map[string]Counters{
		"public.package":                     {Inserts: 10, Updates: 5},
		"public.resource":                    {Inserts: 20},
		"public.user":                        {Inserts: 3, Updates: 7},
		"public.api_token":                   {Inserts: 2},
		"public.dashboard":                   {Inserts: 3},
		"public.tracking_raw":                {Inserts: 100},
		"public.tracking_summary":            {Inserts: 4},
		"ckan.user":                          {Updates: 2},
		"public._table_stats":                {Inserts: 3, Updates: 1, Deletes: 1},
		"public.file":                        {Inserts: 2},
		"public.file_owner":                  {Inserts: 2},
		"public.file_owner_transfer_history": {},
	}
	with := func(changes map[string]Counters) map[string]Counters {
		out := map[string]Counters{}
		for k, v := range base {
			out[k] = v
		}
		for k, v := range changes {
			if v == (Counters{Inserts: -1, Updates: -1, Deletes: -1}) {
				delete(out, k)
				continue
			}
			out[k] = v
		}
		return out
	}
	gone := Counters{Inserts: -1, Updates: -1, Deletes: -1}
	for _, tc := range []struct {
		name        string
		source      string
		after       map[string]Counters
		changed     []string
		bookkeeping []string
	}{
		{name: "nothing moved", source: "ckan_db", after: with(nil)},
		{
			name: "content insert and update", source: "ckan_db",
			after:   with(map[string]Counters{"public.package": {Inserts: 11, Updates: 7}}),
			changed: []string{"ckan_db table public.package: 1 insert(s), 2 update(s)"},
		},
		{
			name: "delete", source: "ckan_db",
			after:   with(map[string]Counters{"public.resource": {Inserts: 20, Deletes: 3}}),
			changed: []string{"ckan_db table public.resource: 3 delete(s)"},
		},
		{
			name: "user last_active is bookkeeping", source: "ckan_db",
			after:       with(map[string]Counters{"public.user": {Inserts: 3, Updates: 9}}),
			bookkeeping: []string{"ckan_db table public.user: 2 update(s) (user.last_active)"},
		},
		{
			name: "a new user is content", source: "ckan_db",
			after:   with(map[string]Counters{"public.user": {Inserts: 4, Updates: 8}}),
			changed: []string{"ckan_db table public.user: 1 insert(s), 1 update(s)"},
		},
		{
			name: "a deleted api token is content", source: "ckan_db",
			after:   with(map[string]Counters{"public.api_token": {Inserts: 2, Deletes: 1}}),
			changed: []string{"ckan_db table public.api_token: 1 delete(s)"},
		},
		{
			name: "api_token last_access, dashboard, tracking are bookkeeping", source: "ckan_db",
			after: with(map[string]Counters{
				"public.api_token":        {Inserts: 2, Updates: 1},
				"public.dashboard":        {Inserts: 4, Updates: 1, Deletes: 1},
				"public.tracking_raw":     {Inserts: 150},
				"public.tracking_summary": {Inserts: 5, Deletes: 4},
			}),
			bookkeeping: []string{
				"ckan_db table public.api_token: 1 update(s) (api_token.last_access)",
				"ckan_db table public.dashboard: 1 insert(s), 1 update(s), 1 delete(s) (dashboard activity)",
				"ckan_db table public.tracking_raw: 50 insert(s) (page-view tracking)",
				"ckan_db table public.tracking_summary: 1 insert(s), 4 delete(s) (page-view tracking)",
			},
		},
		{
			name: "bookkeeping names only count in CKAN's database", source: "datastore_db",
			after:   with(map[string]Counters{"public.user": {Inserts: 3, Updates: 8}}),
			changed: []string{"datastore_db table public.user: 1 update(s)"},
		},
		{
			name: "_table_stats is the DataStore's row-count cache", source: "datastore_db",
			after:       with(map[string]Counters{"public._table_stats": {Inserts: 5, Updates: 2, Deletes: 2}}),
			bookkeeping: []string{"datastore_db table public._table_stats: 2 insert(s), 1 update(s), 1 delete(s) (DataStore row-count cache, written by datastore_search)"},
		},
		{
			name: "_table_stats is content in CKAN's database", source: "ckan_db",
			after:   with(map[string]Counters{"public._table_stats": {Inserts: 4, Updates: 1, Deletes: 1}}),
			changed: []string{"ckan_db table public._table_stats: 1 insert(s)"},
		},
		{
			name: "CKAN 2.12's file tables are content", source: "ckan_db",
			after:   with(map[string]Counters{"public.file": {Inserts: 3}, "public.file_owner": {Inserts: 2, Updates: 1}, "public.file_owner_transfer_history": {Inserts: 1}}),
			changed: []string{"ckan_db table public.file: 1 insert(s)", "ckan_db table public.file_owner: 1 update(s)", "ckan_db table public.file_owner_transfer_history: 1 insert(s)"},
		},
		{
			name: "any schema", source: "ckan_db",
			after:       with(map[string]Counters{"ckan.user": {Updates: 5}}),
			bookkeeping: []string{"ckan_db table ckan.user: 3 update(s) (user.last_active)"},
		},
		{
			name: "created and dropped", source: "datastore_db",
			after: func() map[string]Counters {
				m := with(map[string]Counters{"public.resource": gone})
				// A table that appears is a change, whatever its name.
				m["public.3c1a5b0e-0000-4000-8000-000000000001"] = Counters{}
				m["public.tracking_raw_2"] = Counters{}
				return m
			}(),
			changed: []string{
				"datastore_db table public.3c1a5b0e-0000-4000-8000-000000000001: created during the snapshot",
				"datastore_db table public.resource: dropped during the snapshot",
				"datastore_db table public.tracking_raw_2: created during the snapshot",
			},
		},
		{
			name: "counters reset", source: "ckan_db",
			after:   with(map[string]Counters{"public.package": {}, "public.user": {}}),
			changed: []string{"ckan_db table public.package: its counters went back (statistics reset?), so changes cannot be ruled out", "ckan_db table public.user: its counters went back (statistics reset?), so changes cannot be ruled out"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			changed, kept := compareCounters(tc.source, base, tc.after)
			if !reflect.DeepEqual(changed, tc.changed) {
				t.Errorf("changed:\n got %q\nwant %q", changed, tc.changed)
			}
			if !reflect.DeepEqual(kept, tc.bookkeeping) {
				t.Errorf("bookkeeping:\n got %q\nwant %q", kept, tc.bookkeeping)
			}
			wantVerdict := Consistent
			if len(tc.changed) > 0 {
				wantVerdict = Inconsistent
			}
			if v := verdictOf(changed, nil); v != wantVerdict {
				t.Errorf("verdict %s, want %s", v, wantVerdict)
			}
		})
	}
}

func TestCompareCatalogs(t *testing.T) {
	base := map[string]relation{
		"public.package":       {kind: "r", filenode: 16384, def: "a"},
		"public.resource":      {kind: "r", filenode: 16390, def: "b"},
		"public._table_stats":  {kind: "r", filenode: 16400, def: "c"},
		"public.parted":        {kind: "p", def: "d"},
		"public._table_meta":   {kind: "v", def: "e"},
		"public.package_stats": {kind: "m", def: "f"},
	}
	with := func(changes map[string]*relation) map[string]relation {
		out := map[string]relation{}
		for k, v := range base {
			out[k] = v
		}
		for k, v := range changes {
			if v == nil {
				delete(out, k)
				continue
			}
			out[k] = *v
		}
		return out
	}
	// The counters list the tables that were there before (and would list
	// the new ones too; here they do not, to show what is named then).
	counted := func(name string) bool { k := base[name].kind; return k == "r" || k == "p" || k == "m" }
	for _, tc := range []struct {
		name    string
		after   map[string]relation
		changed []string
	}{
		{name: "nothing changed", after: with(nil)},
		{
			name:    "truncated",
			after:   with(map[string]*relation{"public.resource": {kind: "r", filenode: 16500, def: "b"}}),
			changed: []string{"ckan_db table public.resource: rewritten during the snapshot (TRUNCATE, VACUUM FULL, CLUSTER or an ALTER TABLE that rewrites it), which its row counters do not show"},
		},
		{
			name:    "a bookkeeping table truncated is still named",
			after:   with(map[string]*relation{"public._table_stats": {kind: "r", filenode: 16501, def: "c"}}),
			changed: []string{"ckan_db table public._table_stats: rewritten during the snapshot (TRUNCATE, VACUUM FULL, CLUSTER or an ALTER TABLE that rewrites it), which its row counters do not show"},
		},
		{
			name: "altered, and a column's type changed (rewritten too)",
			after: with(map[string]*relation{
				"public.package":  {kind: "r", filenode: 16384, def: "a2"},
				"public.resource": {kind: "r", filenode: 16501, def: "b2"},
				"public.parted":   {kind: "p", def: "d2"},
			}),
			changed: []string{
				"ckan_db table public.package: the schema changed during the snapshot (DDL: columns, indexes, constraints, triggers or privileges)",
				"ckan_db table public.parted: the schema changed during the snapshot (DDL: columns, indexes, constraints, triggers or privileges)",
				"ckan_db table public.resource: rewritten during the snapshot (TRUNCATE, VACUUM FULL, CLUSTER or an ALTER TABLE that rewrites it), which its row counters do not show",
				"ckan_db table public.resource: the schema changed during the snapshot (DDL: columns, indexes, constraints, triggers or privileges)",
			},
		},
		{
			name: "created and dropped: named here only when the counters do not list them",
			after: with(map[string]*relation{
				"public._table_meta": nil,
				"public.v2":          {kind: "v", def: "g"},
				"public.package":     nil,
				"public.new_table":   {kind: "r", filenode: 17000, def: "h"},
			}),
			changed: []string{
				"ckan_db view public._table_meta: dropped during the snapshot",
				"ckan_db table public.new_table: created during the snapshot",
				"ckan_db view public.v2: created during the snapshot",
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			changed := compareCatalogs("ckan_db", base, tc.after, counted)
			if !reflect.DeepEqual(changed, tc.changed) {
				t.Errorf("changed:\n got %q\nwant %q", changed, tc.changed)
			}
			same := (reading{relations: base}).schemaDigest() == (reading{relations: tc.after}).schemaDigest()
			if defChanged := tc.name != "nothing changed" && !strings.Contains(tc.name, "truncated"); same == defChanged {
				t.Errorf("schema digest same=%v, want %v", same, !defChanged)
			}
		})
	}
}

func TestCompareStorage(t *testing.T) {
	file := func(size, mtime int64) entry { return entry{size: size, mtime: mtime, mode: 0o644} }
	dir := entry{mode: fs.ModeDir | 0o755}
	link := entry{size: 5, mtime: 1, mode: fs.ModeSymlink | 0o777}
	before := map[string]entry{
		"resources":          dir,
		"resources/ab":       dir,
		"resources/ab/x.csv": file(10, 100),
		"resources/ab/y.csv": file(20, 100),
		"storage/uploads":    dir,
		"latest":             link,
	}
	clone := func() map[string]entry {
		m := map[string]entry{}
		for k, v := range before {
			m[k] = v
		}
		return m
	}

	if got := compareStorage("storage", before, clone()); len(got) != 0 {
		t.Errorf("no change: got %q", got)
	}

	after := clone()
	after["resources/ab/x.csv"] = file(10, 200)                // touched
	after["resources/ab/z.csv"] = file(1, 300)                 // added
	delete(after, "resources/ab/y.csv")                        // removed
	after["latest"] = file(5, 1)                               // link replaced by a file
	after["storage/uploads"] = entry{mode: fs.ModeDir | 0o700} // chmod
	want := []string{
		"storage latest changed from a symlink to a file",
		"storage file resources/ab/x.csv modified",
		"storage file resources/ab/y.csv removed",
		"storage file resources/ab/z.csv added",
		"storage dir storage/uploads modified",
	}
	if got := compareStorage("storage", before, after); !reflect.DeepEqual(got, want) {
		t.Errorf("got  %q\nwant %q", got, want)
	}

	many := clone()
	for i := range 25 {
		many[fmt.Sprintf("new/%02d", i)] = file(1, 1)
	}
	got := compareStorage("storage", before, many)
	if len(got) != maxNamedFiles+1 {
		t.Fatalf("%d lines, want %d: %q", len(got), maxNamedFiles+1, got)
	}
	if got[0] != "storage file new/00 added" || got[maxNamedFiles] != "storage: and 5 more change(s)" {
		t.Errorf("first %q, last %q", got[0], got[maxNamedFiles])
	}
}

func TestDigest(t *testing.T) {
	a := map[string]entry{"a": {size: 1, mtime: 2, mode: 0o644}, "a/b": {mode: fs.ModeDir | 0o755}, "a.txt": {size: 3, mtime: 4, mode: 0o600}}
	b := map[string]entry{"a.txt": {size: 3, mtime: 4, mode: 0o600}, "a/b": {mode: fs.ModeDir | 0o755}, "a": {size: 1, mtime: 2, mode: 0o644}}
	if digest(a) != digest(b) {
		t.Error("digest depends on map order")
	}
	b["a.txt"] = entry{size: 3, mtime: 5, mode: 0o600}
	if digest(a) == digest(b) {
		t.Error("digest ignores mtime")
	}
	// Quoting keeps a newline in a name from forging another line.
	c := map[string]entry{"x\n\"y\" 0 0 644": {}}
	d := map[string]entry{"x": {}, "y": {size: 0, mtime: 0, mode: 0o644}}
	if digest(c) == digest(d) {
		t.Error("names are not quoted")
	}
}

func TestScrub(t *testing.T) {
	u := config.SecretURL("postgres://ckan:s3cr%2Fet-pw@db.example.org:5432/ckan?sslmode=disable")
	msg := `pg_dump: error: connection to server at "db.example.org" failed for postgres://ckan:s3cr%2Fet-pw@db.example.org:5432/ckan?sslmode=disable, password s3cr/et-pw`
	got := scrub(msg, u)
	for _, secret := range []string{"s3cr/et-pw", "s3cr%2Fet-pw"} {
		if strings.Contains(got, secret) {
			t.Errorf("scrubbed message still has %q: %s", secret, got)
		}
	}
	if !strings.Contains(got, "db.example.org") {
		t.Errorf("scrub removed the host: %s", got)
	}
}

func TestNewDatabaseKeepsThePasswordOutOfArgv(t *testing.T) {
	for _, tc := range []struct {
		url, password, dbname string
	}{
		{"postgres://ckan:pa55word@db:5432/ckan_default?sslmode=require", "pa55word", "postgres://ckan@db:5432/ckan_default?sslmode=require"},
		{"postgresql://ckan@db/ckan?password=qu3ry-pw&sslmode=disable", "qu3ry-pw", "postgresql://ckan@db/ckan?sslmode=disable"},
		{"postgres://ckan@db/datastore", "", "postgres://ckan@db/datastore"},
	} {
		db, err := newDatabase(SourceCKANDB, config.SecretURL(tc.url))
		if err != nil {
			t.Fatalf("%s: %v", config.SecretURL(tc.url), err)
		}
		if db.password != tc.password {
			t.Errorf("%s: password %q, want %q", config.SecretURL(tc.url), db.password, tc.password)
		}
		args := strings.Join(db.dumpArgs(), " ")
		if want := "--format=custom --no-password --dbname=" + tc.dbname; args != want {
			t.Errorf("args %q, want %q", args, want)
		}
		env := strings.Join(db.dumpEnv(), "\n")
		if !strings.Contains(env, "PGAPPNAME="+ApplicationName) {
			t.Errorf("env lacks PGAPPNAME")
		}
		if tc.password != "" && !strings.Contains(env, "PGPASSWORD="+tc.password) {
			t.Errorf("env lacks PGPASSWORD")
		}
	}
	for _, bad := range []string{"host=db dbname=ckan password=kv-secret", "mysql://u:p@h/db"} {
		_, err := newDatabase(SourceCKANDB, config.SecretURL(bad))
		if err == nil {
			t.Errorf("%q accepted", bad)
		} else if strings.Contains(err.Error(), "kv-secret") {
			t.Errorf("error shows the password: %v", err)
		}
	}
}
