package config

import (
	"slices"
	"strings"
)

// ABConfig is the optional [ab] table: what the A/B runbook (ckanops
// runbook SITE --ab) needs of B, the read-only copy of the site built from
// its snapshot that serves the public URL while A migrates.
type ABConfig struct {
	// BURL is b_url: B's gate (a ckanops gate started read-only, its own
	// site name), reached directly, not through the public URL.
	BURL string
	// PublicURL is public_url: the URL readers use (nginx's); its
	// /-/ckanops/status names the site of the gate that serves it.
	PublicURL string
	// CKANDB and DatastoreDB are ckan_db and datastore_db: B's empty
	// databases, the targets of the restore of A's ckan_db and
	// datastore_db. Required when [checks] sets A's.
	CKANDB      SecretURL
	DatastoreDB SecretURL
	// Databases are the [[ab.database]] tables: for each [[database]] of
	// the site, by its name, B's empty database (dsn).
	Databases []Database
	// StoragePath is storage_path: the directory B's CKAN keeps its files
	// in, the target of the snapshot's only storage (as `ckanops snapshot
	// restore --storage PATH`). Storages are the [[ab.storage]] tables
	// (name, path), one per storage of a site with several (--storage
	// NAME=PATH). Give one or the other when the snapshot holds storages.
	StoragePath string
	Storages    []Storage
	// Prepare, SwitchToB and SwitchToA are [[ab.prepare]],
	// [[ab.switch_to_b]] and [[ab.switch_to_a]]: commands read as
	// [[migrate]]'s (name, argv, dir, timeout; no mode).
	Prepare   []Command
	SwitchToB []Command
	SwitchToA []Command
	// SwitchWait is switch_wait: how long, after the switch commands, the
	// public URL may take to reach the other side (nginx's reload is
	// graceful), and how long verify_b waits for B's gate to answer.
	SwitchWait Duration
}

// Configured reports whether gate.toml has an [ab] table.
func (a ABConfig) Configured() bool { return a.BURL != "" }

// readAB reads [ab] against the site's databases and storages: every
// database and local storage the snapshot holds needs a target in B, and
// no target may be one of A's.
func readAB(t *table, c ChecksConfig, snap SnapshotConfig) ABConfig {
	var a ABConfig
	ab := t.table("ab")
	if ab.m == nil {
		return a
	}
	ab.need("b_url")
	a.BURL, _ = ab.url("b_url", httpURL)
	ab.need("public_url")
	a.PublicURL, _ = ab.url("public_url", httpURL)
	if a.BURL != "" && a.PublicURL != "" && strings.TrimSuffix(a.BURL, "/") == strings.TrimSuffix(a.PublicURL, "/") {
		ab.d.problem(ab.sub("public_url"), "is b_url: give B's gate as reached directly in b_url, and the URL readers use (nginx's) in public_url")
	}

	aDBs := []keyedURL{{[]string{"checks", "ckan_db"}, c.CKANDB}, {[]string{"checks", "datastore_db"}, c.DatastoreDB}}
	aDBs = append(aDBs, databaseSecrets(c.Databases)...)
	var bDBs []keyedURL
	target := func(key string, dsn string) SecretURL {
		for _, o := range aDBs {
			if o.url != "" && samePostgres(string(o.url), dsn) {
				ab.d.problem(ab.sub(key), "names one of A's databases (%s): B's databases must be others, empty, that the restore fills", dotted(o.key))
				return ""
			}
		}
		for _, o := range bDBs {
			if samePostgres(string(o.url), dsn) {
				ab.d.problem(ab.sub(key), "names the same database as %s; each of B's databases is its own", dotted(o.key))
				return ""
			}
		}
		bDBs = append(bDBs, keyedURL{ab.sub(key), SecretURL(dsn)})
		return SecretURL(dsn)
	}
	if s, ok := ab.url("ckan_db", postgresURL); ok {
		a.CKANDB = target("ckan_db", s)
	} else if c.CKANDB != "" && !ab.has("ckan_db") {
		ab.d.problem(ab.sub("ckan_db"), "required: [checks] ckan_db is set, so the snapshot holds CKAN's database, and B needs an empty database to restore it into")
	}
	if s, ok := ab.url("datastore_db", postgresURL); ok {
		a.DatastoreDB = target("datastore_db", s)
	} else if c.DatastoreDB != "" && !ab.has("datastore_db") {
		ab.d.problem(ab.sub("datastore_db"), "required: [checks] datastore_db is set, so the snapshot holds the DataStore, and B needs an empty database to restore it into")
	}
	if a.CKANDB != "" && c.CKANDB == "" {
		ab.d.problem(ab.sub("ckan_db"), "[checks] ckan_db is not set: the snapshot holds no CKAN database to restore into it")
	}
	if a.DatastoreDB != "" && c.DatastoreDB == "" {
		ab.d.problem(ab.sub("datastore_db"), "[checks] datastore_db is not set: the snapshot holds no DataStore to restore into it")
	}
	for _, e := range ab.tables("database") {
		var db Database
		e.need("name")
		if n, ok := e.string("name"); ok {
			switch {
			case !slices.ContainsFunc(c.Databases, func(o Database) bool { return o.Name == n }):
				e.d.problem(e.sub("name"), "%q names no [[database]] of the site (%s)", n, databaseNames(c.Databases))
			case slices.ContainsFunc(a.Databases, func(o Database) bool { return o.Name == n }):
				e.d.problem(e.sub("name"), "duplicate name %q: give each [[database]] one target", n)
			default:
				db.Name = n
			}
		}
		e.need("dsn")
		if s, ok := e.url("dsn", postgresURL); ok {
			for _, o := range aDBs {
				if o.url != "" && samePostgres(string(o.url), s) {
					e.d.problem(e.sub("dsn"), "names one of A's databases (%s): B's databases must be others, empty, that the restore fills", dotted(o.key))
					s = ""
					break
				}
			}
			for _, o := range bDBs {
				if s != "" && samePostgres(string(o.url), s) {
					e.d.problem(e.sub("dsn"), "names the same database as %s; each of B's databases is its own", dotted(o.key))
					s = ""
				}
			}
			if s != "" {
				db.DSN = SecretURL(s)
				bDBs = append(bDBs, keyedURL{e.sub("dsn"), db.DSN})
			}
		}
		e.done()
		if db.Name != "" && db.DSN != "" {
			a.Databases = append(a.Databases, db)
		}
	}
	for _, d := range c.Databases {
		if !slices.ContainsFunc(a.Databases, func(o Database) bool { return o.Name == d.Name }) {
			ab.d.problem(ab.sub("database"), "the site's [[database]] %q has no target in B: add [[ab.database]] name = %q, dsn = B's empty database", d.Name, d.Name)
		}
	}

	// Storages: the local ones the snapshot archives.
	var archived []Storage
	for _, s := range snap.Storages {
		if s.Local() && !contains(snap.ExcludeStorages, s.Name) {
			archived = append(archived, s)
		}
	}
	aPaths := func(key []string, p string) bool {
		for _, s := range c.Storages {
			if s.Local() && (within(p, s.Path) || within(s.Path, p)) {
				ab.d.problem(key, "%s is, holds or lies in A's storage %s (%s): B's files go to a directory of their own", p, s.Name, s.Path)
				return false
			}
		}
		if snap.Dir != "" && (within(p, snap.Dir) || within(snap.Dir, p)) {
			ab.d.problem(key, "%s is, holds or lies in the snapshot directory %s", p, snap.Dir)
			return false
		}
		return true
	}
	if p, ok := ab.filePath("storage_path"); ok && aPaths(ab.sub("storage_path"), p) {
		a.StoragePath = p
	}
	for _, e := range ab.tables("storage") {
		var s Storage
		e.need("name")
		if n, ok := e.string("name"); ok {
			switch {
			case !slices.ContainsFunc(archived, func(o Storage) bool { return o.Name == n }):
				names := make([]string, len(archived))
				for i, o := range archived {
					names[i] = o.Name
				}
				e.d.problem(e.sub("name"), "%q names no storage the snapshot holds (%s)", n, orElse(strings.Join(names, ", "), "none"))
			case slices.ContainsFunc(a.Storages, func(o Storage) bool { return o.Name == n }):
				e.d.problem(e.sub("name"), "duplicate name %q: give each storage one target", n)
			default:
				s.Name = n
			}
		}
		e.need("path")
		if p, ok := e.filePath("path"); ok && aPaths(e.sub("path"), p) {
			switch {
			case p == a.StoragePath || slices.ContainsFunc(a.Storages, func(o Storage) bool { return within(p, o.Path) || within(o.Path, p) }):
				e.d.problem(e.sub("path"), "%s is, holds or lies in another of B's storage targets", p)
			default:
				s.Path = p
			}
		}
		e.done()
		if s.Name != "" && s.Path != "" {
			a.Storages = append(a.Storages, s)
		}
	}
	switch {
	case a.StoragePath != "" && len(a.Storages) > 0:
		ab.d.problem(ab.sub("storage_path"), "give storage_path (the snapshot's only storage) or [[ab.storage]] tables (one per storage), not both")
	case a.StoragePath != "" && len(archived) > 1:
		ab.d.problem(ab.sub("storage_path"), "the snapshot holds %d storages: give each its target in an [[ab.storage]] table (name, path) instead", len(archived))
	case a.StoragePath != "" && len(archived) == 0:
		ab.d.problem(ab.sub("storage_path"), "the snapshot holds no storage ([checks] storage_path, [[storage]]) to restore into it")
	case a.StoragePath == "" && !ab.has("storage_path") && len(archived) == 1 && !ab.has("storage"):
		ab.d.problem(ab.sub("storage_path"), "required: the snapshot holds storage %s (%s), and B needs a directory of its own to restore it into", archived[0].Name, archived[0].Path)
	case a.StoragePath == "" && !ab.has("storage_path"):
		for _, s := range archived {
			if !slices.ContainsFunc(a.Storages, func(o Storage) bool { return o.Name == s.Name }) {
				ab.d.problem(ab.sub("storage"), "the snapshot's storage %q has no target in B: add [[ab.storage]] name = %q, path = B's directory", s.Name, s.Name)
			}
		}
	}

	a.Prepare = readCommands(ab, "prepare", DefaultABPrepareTimeout, false)
	a.SwitchToB = readCommands(ab, "switch_to_b", DefaultABSwitchTimeout, false)
	a.SwitchToA = readCommands(ab, "switch_to_a", DefaultABSwitchTimeout, false)
	if len(a.SwitchToB) == 0 {
		ab.d.problem(ab.sub("switch_to_b"), "required: at least one [[ab.switch_to_b]] command that sends the public URL's traffic to B (such as [\"/usr/local/sbin/ckanops-switch\", \"b\"])")
	}
	if len(a.SwitchToA) == 0 {
		ab.d.problem(ab.sub("switch_to_a"), "required: at least one [[ab.switch_to_a]] command that sends the public URL's traffic back to A (such as [\"/usr/local/sbin/ckanops-switch\", \"a\"])")
	}
	a.SwitchWait = ab.duration("switch_wait", DefaultABSwitchWait, false)
	ab.done()
	return a
}

// databaseNames lists the [[database]] names, for an error.
func databaseNames(dbs []Database) string {
	if len(dbs) == 0 {
		return "it has none"
	}
	names := make([]string, len(dbs))
	for i, d := range dbs {
		names[i] = d.Name
	}
	return "its databases are " + strings.Join(names, ", ")
}

// abSecrets are [ab]'s database URLs, for the file-mode warning.
func abSecrets(a ABConfig) []keyedURL {
	out := []keyedURL{{[]string{"ab", "ckan_db"}, a.CKANDB}, {[]string{"ab", "datastore_db"}, a.DatastoreDB}}
	for _, db := range a.Databases {
		out = append(out, keyedURL{[]string{"ab", "database", "dsn"}, db.DSN})
	}
	return out
}
