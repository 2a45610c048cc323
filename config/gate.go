package config

import (
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/ckanops/ckanops/api"
)

// Gate is a loaded and validated gate.toml. Paths are absolute; every
// default has been filled in.
type Gate struct {
	Path     string         // the file, as passed to LoadGate
	Site     string         // site: the site's name (lowercase letters, digits, '-', '_')
	Listen   string         // listen: host:port the gate serves on
	Upstream string         // upstream: CKAN's WSGI server, an http(s) URL without credentials
	State    StateConfig    // [state]
	Auth     AuthConfig     // [auth]
	Audit    AuditConfig    // [audit]
	Policy   PolicyConfig   // [policy]
	Checks   ChecksConfig   // [checks] (and [[storage]]: Checks.Storages; [[database]]: Checks.Databases)
	Snapshot SnapshotConfig // [snapshot]
	Gate     GateTuning     // [gate]
	Runbook  RunbookConfig  // [runbook]
	Migrate  []Command      // [[migrate]]: the runbook's migrate step, in order
	Verify   []Command      // [[verify]]: extra checks of the runbook's verify step, in order
	Triggers []Trigger      // [[trigger]]: automatic maintenance from the probes (opt-in)
	AB       ABConfig       // [ab]: the A/B runbook's B (optional; ab.go)
}

// Trigger is one [[trigger]]: when a probe's detail compares as When for
// For, the gate puts the site in Mode; once clear for Recover (if set),
// and only if the trigger still holds the mode, back to live.
type Trigger struct {
	Name    string        // name: unique; in the audit log (trigger:NAME), console, metrics
	Check   string        // check: a probe (ckan_db, datastore_db, db:NAME, redis, storage, solr, ckan)
	When    string        // when: one comparison on a detail of the probe
	Cond    api.Condition // When, parsed and checked against the probe's details
	For     Duration      // for: how long it must hold before acting
	Mode    api.Mode      // mode: read-only (default) or down
	Message string        // message: what users and API clients are told
	Recover Duration      // recover: back to live once clear this long; 0: never by itself
}

// RunbookConfig is the optional [runbook] table.
type RunbookConfig struct {
	JournalDir        string   // journal_dir: where the runbook's record and journal are kept
	ExpectCKANVersion string   // expect_ckan_version: the verify step checks status_show's ckan_version against it
	PollInterval      Duration // poll_interval: how often the drain looks again
	Lease             Duration // lease: the Redis runbook lock's lease (several gates)
}

// Command is one [[migrate]] or [[verify]] entry: a program run without a
// shell.
type Command struct {
	Name    string   // name: shown in the runbook
	Argv    []string // argv: the program and its arguments; argv[0] is looked up on $PATH if bare
	Dir     string   // dir: the working directory; default the gate's
	Timeout Duration // timeout: the command is killed (its whole process group) after this long
	Mode    api.Mode // mode (migrate only): "read-only" (default) or "down" for migrations that lock tables
}

// StateConfig is the [state] table: where the mode record is kept.
type StateConfig struct {
	File     string    // file: the JSON state file (the file store)
	RedisURL SecretURL // redis_url: when set, the mode is shared through Redis by several gates
	// initial_mode: the mode of a site whose store holds no record yet
	// (live, read-only or down); a stand-in site built from a snapshot
	// starts read-only. A record in the store always wins.
	InitialMode    api.Mode
	InitialMessage string // initial_message: the message of that initial mode
}

// AuthConfig is the [auth] table.
type AuthConfig struct {
	OpsTokenFile     string   // ops_token_file (required): holds the ops token on its first line
	SysadminCacheTTL Duration // sysadmin_cache_ttl: how long a CKAN token's sysadmin check is cached; 0s disables the cache
}

// AuditConfig is the [audit] table.
type AuditConfig struct {
	File string // file: the append-only audit log (JSON lines)
}

// PolicyConfig is the [policy] table. Its lists extend the gate's built-in
// lists.
type PolicyConfig struct {
	AllowActions   []string       // allow_actions: actions read-safe in read-only mode
	DenyActions    []string       // deny_actions: actions always refused (beats allow_actions)
	AllowPosts     []string       // allow_posts: non-action paths a POST may reach in read-only mode
	DenyGet        []string       // deny_get: GET paths that write (a trailing * matches any rest)
	BypassCIDRs    []netip.Prefix // bypass_cidrs: clients served as in live during down mode
	TrustedProxies []netip.Prefix // trusted_proxies: peers whose X-Forwarded-For is believed
	CKANVersion    string         // ckan_version: "auto" (read from status_show) or the surface to apply ("2.11")
	LearnedFile    string         // learned_file: the actions learned from CKAN, per CKAN version
}

// ChecksConfig is the [checks] table: what the health probes reach. A
// key left out means its probe is "not configured": it is reported as
// such, never as a failure.
type ChecksConfig struct {
	CKANDB      SecretURL // ckan_db: CKAN's database (postgres://), CKAN's sqlalchemy.url
	DatastoreDB SecretURL // datastore_db: the DataStore database (postgres://), ckan.datastore.write_url
	Redis       SecretURL // redis: CKAN's ckan.redis.url (RQ)
	SiteID      string    // site_id: CKAN's ckan.site_id, naming the RQ queues ckan:<site_id>:<queue>
	RQQueues    []string  // rq_queues: the CKAN queue names to watch (unprefixed)
	Solr        SecretURL // solr: CKAN's solr_url (the core)
	// StoragePath is the first local storage's directory: storage_path
	// when it is one path (CKAN's ckan.storage_path), else the first of
	// Storages that has a Path; "" when there is none.
	StoragePath string
	// Storages are the site's file storages: storage_path (one path,
	// named "default", or an array of paths, each named by its last
	// element) then every [[storage]] table, in order. Names are unique.
	Storages []Storage
	// Databases are the site's other Postgres databases, from the
	// [[database]] tables in order (DataPusher's, xloader's, harvest's,
	// an extension's own): each is probed like ckan_db, counted by the
	// drain, dumped into the snapshot and compared by its verdict.
	Databases []Database
	Timeout   Duration // timeout: per probe
	Interval  Duration // interval: how long a round of probes is reused (the cache period)

	WarnConnectionsRatio  float64  // warn_connections_ratio: warn when connections reach this share of max_connections
	WarnIdleInTransaction Duration // warn_idle_in_transaction: warn on a session idle in a transaction for longer
	WarnTransactionAge    Duration // warn_transaction_age: warn on a transaction open for longer
}

// SnapshotConfig is the [snapshot] table.
type SnapshotConfig struct {
	Dir    string // dir: where snapshots are written, one directory each
	PGDump string // pg_dump: the pg_dump program (a bare name is looked up on $PATH)
	// StoragePath is storage_path: the one directory to archive in place
	// of the local storages; default checks.StoragePath (the first local
	// storage).
	StoragePath string
	Keep        int // keep: how many snapshots to keep (at least 1)
	// Incremental is incremental: each storage is kept as a directory
	// tree whose unchanged files are hard links to the previous
	// consistent snapshot's copies (runbook/snapshot's tree layout).
	Incremental bool
	// ParallelThresholdBytes is parallel_threshold_bytes: a database
	// larger than this (pg_database_size) is dumped in pg_dump's
	// directory format with Jobs parallel jobs; smaller ones in the
	// custom format. 0 (a Gate not loaded from a file): the default.
	ParallelThresholdBytes int64
	// Jobs is jobs: pg_dump's parallel jobs for a large database
	// (--jobs); default the number of CPUs. 0: the default.
	Jobs int
	// ExcludeStorages is exclude_storages: names of storages the
	// snapshot leaves out on purpose (backed up otherwise). They are
	// listed in the manifest as excluded and do not make it partial.
	ExcludeStorages []string
	// Storages is what a snapshot covers, resolved by LoadGate: the local
	// storages (or, when storage_path is set, that one directory in their
	// place) and the storages the gate cannot archive (no Path), in
	// order. Empty when the Gate was not loaded from a file: the snapshot
	// then archives StoragePath alone, as "default".
	Storages []Storage
}

// Storage is one of the site's file storages: CKAN 2.12's
// ckan.files.storage.<name>, or ckan.storage_path.
type Storage struct {
	Name string // name: CKAN's name of the storage; "default" for a lone [checks] storage_path
	// Path is the local directory the storage keeps its files in (type
	// "ckan:fs" or "ckan:fs:public", or no type); "" for a storage the
	// gate cannot archive (a cloud bucket...).
	Path string
	Type string // type: CKAN's adapter, such as "ckan:fs" or "ckan:s3"; "" when not given (a local path)
}

// Local reports whether the gate can archive the storage: it has a
// directory.
func (s Storage) Local() bool { return s.Path != "" }

// StorageNameDefault names [checks] storage_path when it is one path, and
// the one directory of [snapshot] storage_path; CKAN's default storage
// (ckan.files.default_storages.default) has the same name.
const StorageNameDefault = "default"

// LocalStorageTypes are CKAN's adapters that keep files in a local
// directory (ckan.files.storage.<name>.path): a storage of one of these
// types, or with a path and no type, is archived by the snapshot.
var LocalStorageTypes = []string{"ckan:fs", "ckan:fs:public"}

// storageNameRE is a storage name: it names a file of the snapshot
// (storage-<name>.tar).
var storageNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$`)

// Database is one [[database]] table: another Postgres database of the
// site, besides CKAN's (ckan_db) and the DataStore's (datastore_db).
type Database struct {
	// Name names the database in the health report (check "db:<name>"),
	// the drain and the snapshot (<name>.dump, its manifest record):
	// letters, digits, '_' and '-', unique, not a reserved name
	// (ReservedDatabaseNames).
	Name string
	DSN  SecretURL // dsn: a postgres:// or postgresql:// URL
}

// ReservedDatabaseNames cannot name a [[database]]: the databases of
// [checks] (ckan_db, datastore_db) and the storage's source in a
// snapshot's manifest (storage).
var ReservedDatabaseNames = []string{"ckan_db", "datastore_db", "storage"}

// DatabaseNameRE is a [[database]] name: it names a file of the snapshot
// (<name>.dump) and a check (db:<name>).
var DatabaseNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$`)

// GateTuning is the optional [gate] table.
type GateTuning struct {
	DrainTimeout     Duration // drain_timeout: how long a drain may wait for writes in flight
	ShutdownTimeout  Duration // shutdown_timeout: how long a stopping gate waits for requests to finish
	RetryAfter       Duration // retry_after: Retry-After on refusals when no until is set (whole seconds, rounded up)
	NoticePoll       Duration // notice_poll: how often announced and annotated pages poll the status
	MaxUpstreamConns int      // max_upstream_conns: connections to CKAN at most; requests beyond wait for one
	MetricsListen    string   // metrics_listen: host:port serving /metrics (Prometheus) without a token, or "" (off)
	SiteTitle        string   // site_title: the name shown on refusal pages
	RootPath         string   // root_path: the path CKAN is mounted under ("/data"); "/" none; "" learned from status_show (its help URL, else site_url's path)
}

// LoadGate reads, validates and completes the gate configuration at path.
// The error, if any, lists every problem found (it is an *Error when the
// file could be parsed). Warnings are things that work but should be
// looked at.
func LoadGate(path string) (*Gate, []Warning, error) {
	d, root, err := parse(path, "pass the gate's configuration with --config (see docs/config.md)")
	if err != nil {
		return nil, nil, err
	}
	g := &Gate{Path: path}
	t := d.root(root)

	t.need("site")
	if s, ok := t.string("site"); ok {
		if msg := checkName(s); msg != "" {
			d.problem([]string{"site"}, "%s", msg)
		} else {
			g.Site = s
		}
	}
	t.need("listen")
	if s, ok := t.string("listen"); ok {
		if msg := checkListen(s); msg != "" {
			d.problem([]string{"listen"}, "%s", msg)
		} else {
			g.Listen = s
		}
	}
	t.need("upstream")
	g.Upstream, _ = t.url("upstream", httpURL)

	state := t.table("state")
	g.State.File, _ = state.filePath("file")
	redis, _ := state.url("redis_url", redisURL)
	g.State.RedisURL = SecretURL(redis)
	g.State.InitialMode = DefaultInitialMode
	if m, ok := state.string("initial_mode"); ok {
		switch m {
		case "live", ckanReadOnly, ckanDown:
			g.State.InitialMode = api.Mode(m)
		default:
			state.d.problem(state.sub("initial_mode"), "must be \"live\", \"read-only\" or \"down\"")
		}
	}
	g.State.InitialMessage, _ = state.string("initial_message")
	if g.State.InitialMessage != "" && g.State.InitialMode == "live" {
		state.d.warn(state.sub("initial_message"), "initial_message is only shown when initial_mode is read-only or down")
	}
	state.done()

	auth := t.table("auth")
	auth.need("ops_token_file")
	g.Auth.OpsTokenFile, _ = auth.filePath("ops_token_file")
	g.Auth.SysadminCacheTTL = auth.duration("sysadmin_cache_ttl", DefaultSysadminCacheTTL, true)
	auth.done()

	audit := t.table("audit")
	g.Audit.File, _ = audit.filePath("file")
	audit.done()

	g.Policy = readPolicy(t.table("policy"))
	g.Checks = readChecks(t.table("checks"))
	g.Checks.Storages = append(g.Checks.Storages, readStorages(t, g.Checks.Storages)...)
	g.Checks.Databases = readDatabases(t, g.Checks)
	for _, s := range g.Checks.Storages {
		if s.Local() {
			g.Checks.StoragePath = s.Path
			break
		}
	}

	snap := t.table("snapshot")
	g.Snapshot.Dir, _ = snap.filePath("dir")
	if s, ok := snap.string("pg_dump"); ok {
		// A bare name is looked up on $PATH; anything else is a path.
		if strings.ContainsRune(s, '/') || strings.HasPrefix(s, "~") {
			s, _ = snap.resolve("pg_dump", s)
		}
		g.Snapshot.PGDump = s
	}
	g.Snapshot.StoragePath, _ = snap.filePath("storage_path")
	g.Snapshot.Keep = snap.integer("keep", DefaultSnapshotKeep, 1)
	g.Snapshot.Incremental = snap.boolean("incremental", DefaultSnapshotIncremental)
	g.Snapshot.ParallelThresholdBytes = snap.bytes("parallel_threshold_bytes", DefaultSnapshotParallelThreshold)
	g.Snapshot.Jobs = snap.integer("jobs", DefaultSnapshotJobs(), 1)
	g.Snapshot.ExcludeStorages = readExclude(snap, g.Checks.Storages)
	snap.done()

	rb := t.table("runbook")
	g.Runbook.JournalDir, _ = rb.filePath("journal_dir")
	g.Runbook.ExpectCKANVersion, _ = rb.string("expect_ckan_version")
	g.Runbook.PollInterval = rb.duration("poll_interval", DefaultPollInterval, false)
	g.Runbook.Lease = rb.duration("lease", DefaultLease, false)
	if g.Runbook.Lease.Duration < time.Second {
		d.problem([]string{"runbook", "lease"}, "must be at least 1s (a gate renews it every third of it), found %s", g.Runbook.Lease)
		g.Runbook.Lease = Duration{DefaultLease}
	}
	rb.done()
	g.Migrate = readCommands(t, "migrate", DefaultMigrateTimeout, true)
	g.Verify = readCommands(t, "verify", DefaultVerifyTimeout, false)
	g.Triggers = readTriggers(t, g.Checks)

	tune := t.table("gate")
	g.Gate.DrainTimeout = tune.duration("drain_timeout", DefaultDrainTimeout, false)
	g.Gate.ShutdownTimeout = tune.duration("shutdown_timeout", DefaultShutdownTimeout, false)
	g.Gate.RetryAfter = tune.duration("retry_after", DefaultRetryAfter, false)
	g.Gate.NoticePoll = tune.duration("notice_poll", DefaultNoticePoll, false)
	g.Gate.MaxUpstreamConns = tune.integer("max_upstream_conns", DefaultMaxUpstreamConns, 1)
	if v, ok := tune.string("metrics_listen"); ok {
		if msg := checkServeAddr(v, "127.0.0.1:9121"); msg != "" {
			tune.d.problem(tune.sub("metrics_listen"), "%s", msg)
		} else if g.Listen != "" && sameListenAddr(g.Listen, v) {
			tune.d.problem(tune.sub("metrics_listen"), "%q clashes with listen (%s): give /metrics a port of its own", v, g.Listen)
		} else {
			g.Gate.MetricsListen = v
		}
	}
	if p := g.Gate.NoticePoll.Duration; tune.has("notice_poll") && (p < time.Second || p > time.Hour) {
		tune.d.problem(tune.sub("notice_poll"), "must be from 1s to 1h, found %s", g.Gate.NoticePoll)
	}
	g.Gate.SiteTitle, _ = tune.string("site_title")
	if v, ok := tune.string("root_path"); ok {
		if msg := checkRootPath(v); msg != "" {
			tune.d.problem(tune.sub("root_path"), "%s", msg)
		} else {
			g.Gate.RootPath = strings.TrimSuffix(v, "/")
			if g.Gate.RootPath == "" {
				g.Gate.RootPath = "/"
			}
		}
	}
	tune.done()

	g.fillDefaults()
	// After fillDefaults: [ab] is checked against what the snapshot holds.
	g.AB = readAB(t, g.Checks, g.Snapshot)
	t.done()
	g.crossCheck(d)
	if err := d.err(); err != nil {
		return nil, d.warns, err
	}
	return g, d.warns, nil
}

// fillDefaults sets every optional value that was left out.
func (g *Gate) fillDefaults() {
	if g.State.File == "" && g.Site != "" {
		g.State.File = filepath.Join(DefaultStateDir, g.Site+".state.json")
	}
	if g.Audit.File == "" && g.State.File != "" {
		g.Audit.File = filepath.Join(filepath.Dir(g.State.File), DefaultAuditName)
	}
	if g.Policy.LearnedFile == "" && g.State.File != "" && g.Site != "" {
		g.Policy.LearnedFile = filepath.Join(filepath.Dir(g.State.File), g.Site+DefaultLearnedSuffix)
	}
	if g.Snapshot.Dir == "" && g.Site != "" {
		g.Snapshot.Dir = filepath.Join(DefaultSnapshotRoot, g.Site)
	}
	if g.Snapshot.PGDump == "" {
		g.Snapshot.PGDump = DefaultPGDump
	}
	override := g.Snapshot.StoragePath != ""
	if !override {
		g.Snapshot.StoragePath = g.Checks.StoragePath
	}
	g.Snapshot.Storages = snapshotStorages(g.Checks.Storages, g.Snapshot.StoragePath, override)
	if g.Runbook.JournalDir == "" && g.State.File != "" && g.Site != "" {
		g.Runbook.JournalDir = filepath.Join(filepath.Dir(g.State.File), g.Site+".runbook")
	}
	if g.Gate.SiteTitle == "" {
		g.Gate.SiteTitle = g.Site
	}
}

// crossCheck looks for problems between keys.
func (g *Gate) crossCheck(d *decoder) {
	if g.Listen != "" && g.Upstream != "" {
		if u, err := url.Parse(g.Upstream); err == nil && sameAddr(g.Listen, u) {
			d.problem([]string{"upstream"}, "points at the gate itself (listen = %q); it must be CKAN's own server", g.Listen)
		}
	}
	for _, k := range []struct{ key, u, why string }{
		{"public_url", g.AB.PublicURL, "the URL readers use (nginx's), which reaches this gate or B's"},
		{"b_url", g.AB.BURL, "B's gate, another gate than this one"},
	} {
		if u, err := url.Parse(k.u); k.u != "" && g.Listen != "" && err == nil && sameAddr(g.Listen, u) {
			d.problem([]string{"ab", k.key}, "points at this gate itself (listen = %q); it must be %s", g.Listen, k.why)
		}
	}
	if g.State.File != "" && g.State.File == g.Audit.File {
		d.problem([]string{"audit", "file"}, "is the state file; give the audit log its own file")
	}
	for _, s := range g.Snapshot.Storages {
		if g.Snapshot.Dir != "" && s.Local() && !contains(g.Snapshot.ExcludeStorages, s.Name) && within(g.Snapshot.Dir, s.Path) {
			d.problem([]string{"snapshot", "dir"}, "is inside the storage path that is archived (%s); the snapshot would contain itself", s.Path)
			break
		}
	}
	if g.Snapshot.StoragePath != "" && g.Snapshot.StoragePath != g.Checks.StoragePath {
		// The override is archived under the name of the storage whose
		// directory it is, else "default": no storage the gate cannot
		// archive may have that name.
		for _, s := range g.Snapshot.Storages {
			if s.Local() {
				for _, o := range g.Checks.Storages {
					if !o.Local() && o.Name == s.Name {
						d.problem([]string{"snapshot", "storage_path"}, "is archived as storage %q, which is also the name of the storage of type %q: name that storage otherwise in [[storage]]", s.Name, o.Type)
					}
				}
			}
		}
	}
	if c := g.Checks; c.Timeout.Duration >= c.Interval.Duration {
		d.warn([]string{"checks", "timeout"}, "checks.timeout (%s) is not shorter than checks.interval (%s); slow probes will overlap", c.Timeout, c.Interval)
	}
	if g.Gate.RetryAfter.Duration > 0 && g.Gate.RetryAfter.Duration%1e9 != 0 {
		d.warn([]string{"gate", "retry_after"}, "Retry-After is sent in whole seconds; %s is rounded up", g.Gate.RetryAfter)
	}
	if h, _, err := net.SplitHostPort(g.Gate.MetricsListen); err == nil && (h == "" || h == "0.0.0.0" || h == "::") {
		d.warn([]string{"gate", "metrics_listen"}, "%q serves the metrics without a token on every interface: bind it to an address only the scraper reaches", g.Gate.MetricsListen)
	}
	for _, p := range g.Policy.BypassCIDRs {
		if p.Bits() == 0 {
			d.warn([]string{"policy", "bypass_cidrs"}, "%s lets every client bypass down mode", p)
		}
	}
	for _, p := range g.Policy.TrustedProxies {
		if p.Bits() == 0 {
			d.warn([]string{"policy", "trusted_proxies"}, "%s trusts X-Forwarded-For from every client, so any client can claim a bypass address", p)
		}
	}
	for _, a := range g.Policy.AllowActions {
		if contains(g.Policy.DenyActions, a) {
			d.warn([]string{"policy", "allow_actions"}, "%s is also in deny_actions, which wins", a)
		}
	}
	// The file holds passwords: others should not read it.
	for _, u := range append([]keyedURL{
		{[]string{"state", "redis_url"}, g.State.RedisURL},
		{[]string{"checks", "ckan_db"}, g.Checks.CKANDB},
		{[]string{"checks", "datastore_db"}, g.Checks.DatastoreDB},
		{[]string{"checks", "redis"}, g.Checks.Redis},
		{[]string{"checks", "solr"}, g.Checks.Solr},
	}, append(databaseSecrets(g.Checks.Databases), abSecrets(g.AB)...)...) {
		if hasSecret(string(u.url)) {
			if fi, err := os.Stat(g.Path); err == nil && fi.Mode().Perm()&0o004 != 0 {
				d.warn(u.key, "holds a password and others can read %s (mode %04o); run: chmod 640 %s", g.Path, fi.Mode().Perm(), g.Path)
			}
			break
		}
	}
}

func readPolicy(t *table) PolicyConfig {
	var p PolicyConfig
	p.AllowActions = t.strings("allow_actions", checkAction)
	p.DenyActions = t.strings("deny_actions", checkAction)
	p.AllowPosts = t.strings("allow_posts", checkRoute)
	p.DenyGet = t.strings("deny_get", checkRoute)
	p.BypassCIDRs = t.prefixes("bypass_cidrs")
	p.TrustedProxies = t.prefixes("trusted_proxies")
	p.LearnedFile, _ = t.filePath("learned_file")
	p.CKANVersion = DefaultCKANVersion
	if v, ok := t.string("ckan_version"); ok {
		if v != DefaultCKANVersion && !ckanVersionRE.MatchString(v) {
			t.d.problem(t.sub("ckan_version"), "must be \"auto\" or a CKAN version such as \"2.11\", found %q", v)
		} else {
			p.CKANVersion = v
		}
	}
	t.done()
	return p
}

// ckanVersionRE is a pinned [policy] ckan_version: major.minor.
var ckanVersionRE = regexp.MustCompile(`^[0-9]+\.[0-9]+$`)

// renamedChecks are [checks] keys of earlier versions and their names now.
var renamedChecks = [][2]string{
	{"ckan_db_url", "ckan_db"},
	{"datastore_db_url", "datastore_db"},
	{"redis_url", "redis"},
	{"ckan_site_id", "site_id"},
	{"solr_url", "solr"},
}

// snapshotStorages is what a snapshot covers: the local storages, or the
// one directory path in their place when it overrides them, then the
// storages the gate cannot archive.
func snapshotStorages(storages []Storage, path string, override bool) []Storage {
	var out []Storage
	if override {
		s := Storage{Name: StorageNameDefault, Path: path}
		for _, o := range storages {
			if o.Local() && o.Path == path {
				s = o
				break
			}
		}
		out = append(out, s)
	}
	for _, s := range storages {
		if !override || !s.Local() {
			out = append(out, s)
		}
	}
	if len(out) == 0 && path != "" {
		out = append(out, Storage{Name: StorageNameDefault, Path: path})
	}
	return out
}

// readStoragePath reads [checks] storage_path: one path (the storage
// "default") or an array of paths (each named by its last element).
func readStoragePath(t *table) []Storage {
	v, present := t.lookup("storage_path")
	if !present {
		return nil
	}
	switch v := v.(type) {
	case string:
		p, ok := t.filePath("storage_path")
		if !ok {
			return nil
		}
		return []Storage{{Name: StorageNameDefault, Path: p}}
	case []any:
		if len(v) == 0 {
			t.d.problem(t.sub("storage_path"), "must list at least one directory (leave the key out when CKAN keeps no files here)")
			return nil
		}
		var out []Storage
		t.strings("storage_path", func(s string) string {
			p, err := resolvePath(t.d.dir, s)
			if err != nil {
				return err.Error()
			}
			name := filepath.Base(p)
			switch {
			case !storageNameRE.MatchString(name):
				return fmt.Sprintf("%q: its last element %q cannot name a storage (letters, digits, '.', '-' and '_'): give it a [[storage]] table with a name", s, name)
			case slices.ContainsFunc(out, func(o Storage) bool { return o.Path == p }):
				return fmt.Sprintf("%q is listed twice", s)
			case slices.ContainsFunc(out, func(o Storage) bool { return o.Name == name }):
				return fmt.Sprintf("%q: another path also ends in %q, which names the storage: give them [[storage]] tables with names", s, name)
			}
			out = append(out, Storage{Name: name, Path: p})
			return ""
		})
		return out
	default:
		t.wrongType(t.sub("storage_path"), "a path or an array of paths", v)
		return nil
	}
}

// readStorages reads the [[storage]] tables: each has a name and either a
// path (a local directory, of no type or a local one) or a type the gate
// cannot archive. Names and paths must differ from each other and from
// those of earlier (storage_path's).
func readStorages(t *table, earlier []Storage) []Storage {
	var out []Storage
	for _, e := range t.tables("storage") {
		var s Storage
		e.need("name")
		if n, ok := e.string("name"); ok {
			switch {
			case !storageNameRE.MatchString(n):
				e.d.problem(e.sub("name"), "%q is not a storage name: use CKAN's (ckan.files.storage.<name>): letters, digits, '.', '-' and '_', at most 63", n)
			case slices.ContainsFunc(earlier, func(o Storage) bool { return o.Name == n }) || slices.ContainsFunc(out, func(o Storage) bool { return o.Name == n }):
				what := ""
				if n == StorageNameDefault {
					what = " (checks.storage_path, one path, is the storage \"default\")"
				}
				e.d.problem(e.sub("name"), "duplicate storage name %q; names must be unique%s", n, what)
			default:
				s.Name = n
			}
		}
		path, hasPath := e.filePath("path")
		s.Type, _ = e.string("type")
		local := s.Type == "" || contains(LocalStorageTypes, s.Type)
		switch {
		case hasPath && !local:
			e.d.problem(e.sub("type"), "%q is not a local type (%s) but the storage has a path: a storage of another type has no path, and the gate cannot archive it", s.Type, strings.Join(LocalStorageTypes, ", "))
		case !hasPath && e.has("path"):
			// Its problem is reported.
		case !hasPath && s.Type == "":
			e.d.problem(e.sub("path"), "a storage needs a path (a local directory) or a type (such as \"ckan:s3\", which the gate cannot archive)")
		case !hasPath && local:
			e.d.problem(e.sub("path"), "required for a storage of type %q (CKAN's ckan.files.storage.<name>.path)", s.Type)
		case hasPath && (slices.ContainsFunc(earlier, func(o Storage) bool { return o.Path == path }) || slices.ContainsFunc(out, func(o Storage) bool { return o.Path == path })):
			e.d.problem(e.sub("path"), "%s is the directory of another storage too; list it once", path)
		default:
			s.Path = path
		}
		e.done()
		if s.Name != "" {
			out = append(out, s)
		}
	}
	return out
}

// keyedURL is a secret URL and the key it was read from.
type keyedURL struct {
	key []string
	url SecretURL
}

func databaseSecrets(dbs []Database) []keyedURL {
	var out []keyedURL
	for _, db := range dbs {
		out = append(out, keyedURL{[]string{"database", "dsn"}, db.DSN})
	}
	return out
}

// readDatabases reads the [[database]] tables: each a name (unique, not
// reserved) and a dsn (a postgres:// URL) naming a database that neither
// [checks] nor another table names.
func readDatabases(t *table, c ChecksConfig) []Database {
	var out []Database
	others := []keyedURL{{[]string{"checks", "ckan_db"}, c.CKANDB}, {[]string{"checks", "datastore_db"}, c.DatastoreDB}}
	for _, e := range t.tables("database") {
		var db Database
		e.need("name")
		if n, ok := e.string("name"); ok {
			switch {
			case !DatabaseNameRE.MatchString(n):
				e.d.problem(e.sub("name"), "%q is not a database name: letters, digits, '_' and '-', at most 63, such as \"datapusher\" (it names the check db:<name> and the snapshot's <name>.dump)", n)
			case contains(ReservedDatabaseNames, n):
				e.d.problem(e.sub("name"), "%q is reserved (%s): give CKAN's database as [checks] ckan_db and the DataStore's as [checks] datastore_db, and name the others otherwise", n, strings.Join(ReservedDatabaseNames, ", "))
			case slices.ContainsFunc(out, func(o Database) bool { return o.Name == n }):
				e.d.problem(e.sub("name"), "duplicate database name %q; names must be unique", n)
			default:
				db.Name = n
			}
		}
		e.need("dsn")
		if dsn, ok := e.url("dsn", postgresURL); ok {
			db.DSN = SecretURL(dsn)
			for _, o := range others {
				if o.url != "" && samePostgres(string(o.url), dsn) {
					e.d.problem(e.sub("dsn"), "names the same database as %s (%s); list each database once", dotted(o.key), o.url)
					db.DSN = ""
					break
				}
			}
			if db.DSN != "" && db.Name != "" {
				others = append(others, keyedURL{[]string{"database " + db.Name}, db.DSN})
			}
		}
		e.done()
		if db.Name != "" && db.DSN != "" {
			out = append(out, db)
		}
	}
	return out
}

// samePostgres reports whether two postgres:// URLs name the same
// database: the same host, port (5432 when left out) and database name.
func samePostgres(a, b string) bool {
	key := func(s string) string {
		u, err := url.Parse(s)
		if err != nil {
			return s
		}
		port := u.Port()
		if port == "" {
			port = "5432"
		}
		return strings.ToLower(u.Hostname()) + ":" + port + "/" + strings.TrimPrefix(u.Path, "/")
	}
	return key(a) == key(b)
}

// readExclude reads [snapshot] exclude_storages: names of storages.
func readExclude(t *table, storages []Storage) []string {
	var seen []string
	return t.strings("exclude_storages", func(n string) string {
		switch {
		case contains(seen, n):
			return fmt.Sprintf("%q is listed twice", n)
		case !slices.ContainsFunc(storages, func(s Storage) bool { return s.Name == n }):
			var names []string
			for _, s := range storages {
				names = append(names, s.Name)
			}
			known := "none is configured"
			if len(names) > 0 {
				known = "the storages are " + strings.Join(names, ", ")
			}
			return fmt.Sprintf("%q names no storage ([checks] storage_path or [[storage]]): %s", n, known)
		}
		seen = append(seen, n)
		return ""
	})
}

func readChecks(t *table) ChecksConfig {
	var c ChecksConfig
	for _, r := range renamedChecks {
		if _, present := t.lookup(r[0]); present {
			t.d.problem(t.sub(r[0]), "this key is now called %s: rename it", r[1])
		}
	}
	s, _ := t.url("ckan_db", postgresURL)
	c.CKANDB = SecretURL(s)
	s, _ = t.url("datastore_db", postgresURL)
	c.DatastoreDB = SecretURL(s)
	s, _ = t.url("redis", redisURL)
	c.Redis = SecretURL(s)
	c.SiteID = DefaultCKANSiteID
	if s, ok := t.string("site_id"); ok {
		if strings.ContainsFunc(s, func(r rune) bool { return unicode.IsSpace(r) || r == ':' }) {
			t.d.problem(t.sub("site_id"), "%q must not contain white space or ':' (it is CKAN's ckan.site_id)", s)
		} else {
			c.SiteID = s
		}
	}
	c.RQQueues = []string{DefaultRQQueue}
	if t.has("rq_queues") {
		var seen []string
		qs := t.strings("rq_queues", func(q string) string {
			switch {
			case strings.ContainsFunc(q, unicode.IsSpace):
				return fmt.Sprintf("%q must not contain white space", q)
			case strings.HasPrefix(q, "ckan:") || strings.HasPrefix(q, "rq:"):
				return fmt.Sprintf("%q: give CKAN's name of the queue (such as default), not RQ's (ckan:<site_id>:default)", q)
			case contains(seen, q):
				return fmt.Sprintf("%q is listed twice", q)
			}
			seen = append(seen, q)
			return ""
		})
		if len(qs) > 0 {
			c.RQQueues = qs
		} else if arr, isArray := t.m["rq_queues"].([]any); isArray && len(arr) == 0 {
			t.d.problem(t.sub("rq_queues"), "must list at least one queue (leave the key out to watch [%q])", DefaultRQQueue)
		}
	}
	s, _ = t.url("solr", solrURL)
	c.Solr = SecretURL(s)
	c.Storages = readStoragePath(t)
	c.Timeout = t.duration("timeout", DefaultCheckTimeout, false)
	c.Interval = t.duration("interval", DefaultCheckInterval, false)
	c.WarnConnectionsRatio = readRatio(t, "warn_connections_ratio", DefaultWarnConnectionsRatio)
	c.WarnIdleInTransaction = t.duration("warn_idle_in_transaction", DefaultWarnIdleInTransaction, false)
	c.WarnTransactionAge = t.duration("warn_transaction_age", DefaultWarnTransactionAge, false)
	t.done()
	return c
}

// readRatio reads an optional number above 0 and at most 1, such as 0.8.
func readRatio(t *table, key string, def float64) float64 {
	v, present := t.lookup(key)
	if !present {
		return def
	}
	var f float64
	switch n := v.(type) {
	case float64:
		f = n
	case int64:
		f = float64(n)
	default:
		t.wrongType(t.sub(key), "a number such as "+strconv.FormatFloat(def, 'g', -1, 64), v)
		return def
	}
	if !(f > 0 && f <= 1) { // also refuses NaN
		t.d.problem(t.sub(key), "must be above 0 and at most 1 (a share, such as %s for %s%%), found %s",
			strconv.FormatFloat(def, 'g', -1, 64), strconv.FormatFloat(def*100, 'g', -1, 64), strconv.FormatFloat(f, 'g', -1, 64))
		return def
	}
	return f
}

var actionRE = regexp.MustCompile(`^[A-Za-z0-9_]+$`)

func checkAction(s string) string {
	if actionRE.MatchString(s) {
		return ""
	}
	return fmt.Sprintf("%q is not an action name (such as package_show)", s)
}

func checkRoute(s string) string {
	if !strings.HasPrefix(s, "/") || strings.ContainsAny(s, " \t\r\n?#") {
		return fmt.Sprintf("%q is not a path such as /dataset/follow/* (it must start with / and hold no query)", s)
	}
	return ""
}

var hostRE = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$`)

// checkListen vets a host:port.
func checkListen(s string) string {
	bad := fmt.Sprintf("%q is not host:port; write it as 127.0.0.1:8080 (or :8080 for every interface)", s)
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return bad
	}
	if _, err := netip.ParseAddrPort("127.0.0.1:" + port); err != nil {
		return bad
	}
	if host != "" && !hostRE.MatchString(host) {
		if _, err := netip.ParseAddr(host); err != nil {
			return bad
		}
	}
	return ""
}

// sameAddr reports whether upstream u names the listen address.
func sameAddr(listen string, u *url.URL) bool {
	lh, lp, err := net.SplitHostPort(listen)
	if err != nil {
		return false
	}
	up := u.Port()
	if up == "" {
		up = map[string]string{"http": "80", "https": "443"}[strings.ToLower(u.Scheme)]
	}
	if up != lp {
		return false
	}
	uh := u.Hostname()
	norm := func(h string) string {
		switch strings.ToLower(h) {
		case "localhost", "127.0.0.1", "::1":
			return "loopback"
		}
		return strings.ToLower(h)
	}
	if lh == "" || lh == "0.0.0.0" || lh == "::" {
		return norm(uh) == "loopback"
	}
	return norm(lh) == norm(uh)
}

// within reports whether path is dir or inside it.
func within(path, dir string) bool {
	rel, err := filepath.Rel(dir, path)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator))
}

// OpsToken reads the ops token: the first line of auth.ops_token_file,
// with surrounding white space trimmed. A missing or empty file, or a
// token too weak to guard the site (CheckOpsToken), is an error; a file
// that group or others may read is a warning.
func (g *Gate) OpsToken() (string, []Warning, error) {
	if g.Auth.OpsTokenFile == "" {
		return "", nil, fmt.Errorf("config: %s: auth.ops_token_file is not set", g.Path)
	}
	token, exposed, mode, err := readTokenFile(g.Auth.OpsTokenFile)
	var warns []Warning
	if exposed {
		warns = append(warns, Warning{File: orElse(g.Path, g.Auth.OpsTokenFile), Key: "auth.ops_token_file",
			Message: exposedMessage(g.Auth.OpsTokenFile, mode)})
	}
	if err != nil {
		return "", warns, fmt.Errorf("config: %s: auth.ops_token_file: %w", orElse(g.Path, "gate"), err)
	}
	if err := CheckOpsToken(token); err != nil {
		return "", warns, fmt.Errorf("config: %s: auth.ops_token_file: token file %s: %w; %s",
			orElse(g.Path, "gate"), g.Auth.OpsTokenFile, err, makeOpsToken(g.Auth.OpsTokenFile))
	}
	return token, warns, nil
}

func orElse(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// readCommands reads an array of tables of commands ([[migrate]] or
// [[verify]]).
func readCommands(t *table, key string, defTimeout time.Duration, withMode bool) []Command {
	var out []Command
	names := map[string]bool{}
	for _, e := range t.tables(key) {
		var c Command
		e.need("name")
		c.Name, _ = e.string("name")
		if c.Name != "" {
			if names[c.Name] {
				e.d.problem(e.sub("name"), "duplicate %s name %q; names must be unique", key, c.Name)
			}
			names[c.Name] = true
		}
		e.need("argv")
		c.Argv = e.strings("argv", nil)
		if v, ok := e.lookup("argv"); ok && isEmptyArray(v) {
			e.d.problem(e.sub("argv"), "must hold the program and its arguments, such as [\"ckan\", \"-c\", \"/etc/ckan/ckan.ini\", \"db\", \"upgrade\"] (no shell is used)")
		}
		c.Dir, _ = e.filePath("dir")
		c.Timeout = e.duration("timeout", defTimeout, false)
		if withMode {
			c.Mode = ckanReadOnly
			if m, ok := e.string("mode"); ok {
				switch m {
				case ckanReadOnly, ckanDown:
					c.Mode = api.Mode(m)
				default:
					e.d.problem(e.sub("mode"), "must be \"read-only\" or \"down\" (down refuses reads too, for migrations that lock tables)")
				}
			}
		}
		e.done()
		out = append(out, c)
	}
	return out
}

// The maintenance modes a migrate command may run in.
const (
	ckanReadOnly = "read-only"
	ckanDown     = "down"
)

// checkRootPath checks [gate] root_path: CKAN's ckan.root_path without its
// {{LANG}} part, such as "/data"; "/" says the site has none.
func checkRootPath(v string) string {
	switch {
	case !strings.HasPrefix(v, "/"):
		return fmt.Sprintf("must start with /, such as \"/data\", found %q", v)
	case len(v) > 200:
		return "must be at most 200 bytes"
	case strings.ContainsAny(v, "?#%\\ \t{}"):
		return fmt.Sprintf("must be a plain path (no ?, #, %%, \\, spaces or {LANG}), found %q", v)
	}
	for _, seg := range strings.Split(strings.Trim(v, "/"), "/") {
		if seg == "." || seg == ".." || (seg == "" && strings.Trim(v, "/") != "") {
			return fmt.Sprintf("must not hold empty, . or .. segments, found %q", v)
		}
	}
	return ""
}

// triggerNameRE is what a trigger may be called: it becomes a metric label
// and part of the audit actor.
var triggerNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)

// MinTriggerFor is the shortest "for" a trigger may have: at least one
// probe round must see the condition.
const MinTriggerFor = time.Second

// readTriggers reads [[trigger]], checking each "when" against the details
// its check reports and each check against what [checks] configures.
func readTriggers(t *table, c ChecksConfig) []Trigger {
	var out []Trigger
	names := map[string]bool{}
	for _, e := range t.tables("trigger") {
		var tr Trigger
		e.need("name")
		if n, ok := e.string("name"); ok {
			switch {
			case !triggerNameRE.MatchString(n):
				e.d.problem(e.sub("name"), "%q is not a trigger name: lowercase letters, digits, '_' and '-', at most 63, such as \"replica-lag\"", n)
			case names[n]:
				e.d.problem(e.sub("name"), "duplicate trigger name %q; names must be unique", n)
			default:
				tr.Name = n
			}
			names[n] = true
		}
		e.need("check")
		if ck, ok := e.string("check"); ok {
			if msg := triggerCheck(ck, c); msg != "" {
				e.d.problem(e.sub("check"), "%s", msg)
			} else {
				tr.Check = ck
			}
		}
		e.need("when")
		if w, ok := e.string("when"); ok {
			tr.When = w
			if tr.Check != "" {
				cond, err := api.ParseCondition(tr.Check, w)
				if err != nil {
					e.d.problem(e.sub("when"), "%v", err)
				} else {
					tr.Cond = cond
				}
			}
		}
		tr.For = e.duration("for", DefaultTriggerFor, false)
		if e.has("for") && tr.For.Duration < MinTriggerFor {
			e.d.problem(e.sub("for"), "must be at least %s (the condition must be seen holding), found %s", MinTriggerFor, tr.For)
		}
		tr.Mode = api.ModeReadOnly
		if m, ok := e.string("mode"); ok {
			switch m {
			case ckanReadOnly, ckanDown:
				tr.Mode = api.Mode(m)
			default:
				e.d.problem(e.sub("mode"), "must be \"read-only\" or \"down\"")
			}
		}
		tr.Message, _ = e.string("message")
		tr.Recover = e.duration("recover", 0, false)
		if e.has("recover") && tr.Recover.Duration <= 0 {
			e.d.problem(e.sub("recover"), "must be more than 0s; leave it out for a trigger that never returns the site to live by itself")
		}
		e.done()
		out = append(out, tr)
	}
	return out
}

// triggerCheck says what is wrong with a trigger's check, or "".
func triggerCheck(ck string, c ChecksConfig) string {
	if api.TriggerDetails(ck) == nil {
		return fmt.Sprintf("%q is not a probe a trigger can watch: ckan_db, datastore_db, db:NAME (a [[database]]), redis, storage, solr or ckan", ck)
	}
	unset := func(key string) string {
		return fmt.Sprintf("%q is not probed: set [checks] %s, or the trigger could never see anything", ck, key)
	}
	switch {
	case ck == api.ProbeCKANDB && c.CKANDB == "":
		return unset("ckan_db")
	case ck == api.ProbeDatastoreDB && c.DatastoreDB == "":
		return unset("datastore_db")
	case ck == api.ProbeRedis && c.Redis == "":
		return unset("redis")
	case ck == api.ProbeSolr && c.Solr == "":
		return unset("solr")
	case ck == api.ProbeStorage && c.StoragePath == "" && len(c.Storages) == 0:
		return unset("storage_path")
	case strings.HasPrefix(ck, api.ProbeDatabasePrefix):
		name := strings.TrimPrefix(ck, api.ProbeDatabasePrefix)
		for _, d := range c.Databases {
			if d.Name == name {
				return ""
			}
		}
		return fmt.Sprintf("%q names no [[database]] called %q", ck, name)
	}
	return ""
}

// bytes reads an optional size in bytes: an integer, at least 1, which
// may exceed what integer allows (2^31).
func (t *table) bytes(key string, def int64) int64 {
	v, present := t.lookup(key)
	if !present {
		return def
	}
	n, isInt := v.(int64)
	if !isInt {
		t.wrongType(t.sub(key), "an integer number of bytes, such as "+strconv.FormatInt(def, 10)+" (no unit)", v)
		return def
	}
	if n < 1 {
		t.d.problem(t.sub(key), "must be at least 1 (bytes), found %d", n)
		return def
	}
	return n
}
