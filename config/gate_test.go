package config

import (
	"errors"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/ckanops/ckanops/api"
)

func dur(d time.Duration) Duration { return Duration{d} }

func prefixes(ss ...string) []netip.Prefix {
	var out []netip.Prefix
	for _, s := range ss {
		out = append(out, netip.MustParsePrefix(s))
	}
	return out
}

// copyTo copies a testdata file into dir with the given mode.
func copyTo(t *testing.T, src, dir string, mode fs.FileMode) string {
	t.Helper()
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(dir, filepath.Base(src))
	if err := os.WriteFile(dst, data, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dst, mode); err != nil { // umask
		t.Fatal(err)
	}
	return dst
}

func TestLoadGateFull(t *testing.T) {
	path := copyTo(t, "testdata/gate_full.toml", t.TempDir(), 0o600)
	g, warns, err := LoadGate(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(warns) != 0 {
		t.Errorf("warnings: %v", warns)
	}
	want := &Gate{
		Path:     path,
		Site:     "prod",
		Listen:   "127.0.0.1:8080",
		Upstream: "http://127.0.0.1:5000",
		State: StateConfig{File: "/srv/ckanops/prod.state.json", RedisURL: "redis://:statepw@127.0.0.1:6379/1",
			InitialMode: "read-only", InitialMessage: "This is a read-only copy while the site is upgraded."},
		Auth:  AuthConfig{OpsTokenFile: "/etc/ckanops/ops.token", SysadminCacheTTL: dur(2 * time.Minute)},
		Audit: AuditConfig{File: "/var/log/ckanops/audit.jsonl"},
		Policy: PolicyConfig{
			AllowActions:   []string{"ckanext_stats_show", "harvest_source_list"},
			DenyActions:    []string{"get_site_user"},
			AllowPosts:     []string{"/saml2/acs"},
			DenyGet:        []string{"/dataset/follow/*", "/harvest/refresh/*"},
			BypassCIDRs:    prefixes("10.1.0.0/16", "192.0.2.7/32", "2001:db8::/32"),
			TrustedProxies: prefixes("127.0.0.1/32", "::1/128"),
			CKANVersion:    "2.11",
			LearnedFile:    filepath.Join(filepath.Dir(path), "learned", "prod.json"),
		},
		Checks: ChecksConfig{
			CKANDB:      "postgresql://ckan:ckanpw@db.internal:5432/ckan",
			DatastoreDB: "postgres://datastore:dspw@db.internal:5432/datastore?sslmode=require",
			Redis:       "redis://127.0.0.1:6379/0",
			SiteID:      "prod_site",
			RQQueues:    []string{"default", "harvest"},
			Solr:        "http://solr.internal:8983/solr/ckan",
			StoragePath: "/var/lib/ckan",
			Storages: []Storage{
				{Name: "default", Path: "/var/lib/ckan"},
				{Name: "public", Path: "/var/lib/ckan-public", Type: "ckan:fs:public"},
				{Name: "cloud", Type: "ckan:s3"},
			},
			Databases: []Database{{Name: "datapusher", DSN: "postgresql://datapusher:dppw@db.internal:5432/datapusher_jobs"}},
			Timeout:   dur(2 * time.Second),
			Interval:  dur(30 * time.Second),

			WarnConnectionsRatio:  0.9,
			WarnIdleInTransaction: dur(2 * time.Minute),
			WarnTransactionAge:    dur(10 * time.Minute),
		},
		Snapshot: SnapshotConfig{
			Dir:                    "/backup/ckan",
			PGDump:                 "/usr/lib/postgresql/16/bin/pg_dump",
			StoragePath:            "/var/lib/ckan/resources",
			Incremental:            true,
			ParallelThresholdBytes: 10_000_000_000, Jobs: 4,
			Keep: 3,
			// storage_path replaces the local storages; cloud stays, excluded.
			ExcludeStorages: []string{"cloud"},
			Storages:        []Storage{{Name: "default", Path: "/var/lib/ckan/resources"}, {Name: "cloud", Type: "ckan:s3"}},
		},
		Gate: GateTuning{
			DrainTimeout:     dur(20 * time.Minute),
			ShutdownTimeout:  dur(45 * time.Second),
			RetryAfter:       dur(2 * time.Minute),
			NoticePoll:       dur(30 * time.Second),
			MaxUpstreamConns: 64,
			MetricsListen:    "127.0.0.1:9121",
			SiteTitle:        "Example Open Data",
			RootPath:         "/data",
		},
		Runbook: RunbookConfig{JournalDir: "/srv/ckanops/journal", ExpectCKANVersion: "2.11.3", PollInterval: dur(time.Second), Lease: dur(45 * time.Second)},
		Migrate: []Command{
			{Name: "db upgrade", Argv: []string{"ckan", "-c", "/etc/ckan/ckan.ini", "db", "upgrade"}, Timeout: dur(2 * time.Hour), Mode: "down"},
			{Name: "search index", Argv: []string{"ckan", "-c", "/etc/ckan/ckan.ini", "search-index", "rebuild"}, Dir: "/srv/ckan", Timeout: dur(time.Hour), Mode: "read-only"},
		},
		Verify: []Command{{Name: "front page", Argv: []string{"curl", "-fsS", "http://127.0.0.1:5000/"}, Timeout: dur(30 * time.Second)}},
		Triggers: []Trigger{{Name: "replica-lag", Check: "ckan_db", When: "replay_lag_seconds > 30",
			Cond: api.Condition{Key: "replay_lag_seconds", Op: ">", Num: 30, IsNum: true}, For: dur(45 * time.Second), Mode: api.ModeDown,
			Message: "The database is catching up; editing is paused.", Recover: dur(10 * time.Minute)}},
		AB: ABConfig{
			BURL: "http://10.0.0.12:8081", PublicURL: "https://data.example.org",
			CKANDB:      "postgresql://ckan:ckanpw@db.internal:5432/ckan_b",
			DatastoreDB: "postgresql://ckan:ckanpw@db.internal:5432/datastore_b",
			Databases:   []Database{{Name: "datapusher", DSN: "postgresql://datapusher:dppw@db.internal:5432/datapusher_jobs_b"}},
			StoragePath: "/var/lib/ckan-b",
			Prepare: []Command{{Name: "datastore permissions", Argv: []string{"/etc/ckanops/b-set-permissions.sh"}, Dir: "/srv/ckan",
				Timeout: dur(10 * time.Minute)}},
			SwitchToB:  []Command{{Name: "nginx to B", Argv: []string{"/usr/local/sbin/ckanops-switch", "b"}, Timeout: dur(time.Minute)}},
			SwitchToA:  []Command{{Name: "nginx to A", Argv: []string{"/usr/local/sbin/ckanops-switch", "a"}, Timeout: dur(30 * time.Second)}},
			SwitchWait: dur(time.Minute),
		},
	}
	if !reflect.DeepEqual(g, want) {
		t.Errorf("got  %#v\nwant %#v", g, want)
	}
}

func TestLoadGateDefaults(t *testing.T) {
	g, warns, err := LoadGate("testdata/gate_minimal.toml")
	if err != nil {
		t.Fatal(err)
	}
	if len(warns) != 0 {
		t.Errorf("warnings: %v", warns)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"state.file", g.State.File, "/var/lib/ckanops/prod.state.json"},
		{"state.redis_url", g.State.RedisURL, SecretURL("")},
		{"audit.file", g.Audit.File, "/var/lib/ckanops/audit.jsonl"},
		{"auth.sysadmin_cache_ttl", g.Auth.SysadminCacheTTL, dur(60 * time.Second)},
		{"checks.ckan_db", g.Checks.CKANDB, SecretURL("")},
		{"checks.datastore_db", g.Checks.DatastoreDB, SecretURL("")},
		{"checks.redis", g.Checks.Redis, SecretURL("")},
		{"checks.solr", g.Checks.Solr, SecretURL("")},
		{"checks.storage_path", g.Checks.StoragePath, "/var/lib/ckan"},
		{"checks.site_id", g.Checks.SiteID, "default"},
		{"checks.rq_queues", g.Checks.RQQueues, []string{"default"}},
		{"checks.timeout", g.Checks.Timeout, dur(3 * time.Second)},
		{"checks.interval", g.Checks.Interval, dur(15 * time.Second)},
		{"checks.warn_connections_ratio", g.Checks.WarnConnectionsRatio, 0.8},
		{"checks.warn_idle_in_transaction", g.Checks.WarnIdleInTransaction, dur(60 * time.Second)},
		{"checks.warn_transaction_age", g.Checks.WarnTransactionAge, dur(5 * time.Minute)},
		{"snapshot.dir", g.Snapshot.Dir, "/var/lib/ckanops/snapshots/prod"},
		{"snapshot.pg_dump", g.Snapshot.PGDump, "pg_dump"},
		{"snapshot.storage_path", g.Snapshot.StoragePath, "/var/lib/ckan"}, // = checks.storage_path
		{"snapshot.keep", g.Snapshot.Keep, 5},
		{"snapshot.parallel_threshold_bytes", g.Snapshot.ParallelThresholdBytes, int64(2_000_000_000)},
		{"snapshot.jobs", g.Snapshot.Jobs, DefaultSnapshotJobs()},
		{"gate.drain_timeout", g.Gate.DrainTimeout, dur(10 * time.Minute)},
		{"gate.shutdown_timeout", g.Gate.ShutdownTimeout, dur(30 * time.Second)},
		{"gate.retry_after", g.Gate.RetryAfter, dur(300 * time.Second)},
		{"gate.site_title", g.Gate.SiteTitle, "prod"},
		{"policy", g.Policy, PolicyConfig{CKANVersion: "auto", LearnedFile: "/var/lib/ckanops/prod.learned.json"}},
	}
	for _, c := range checks {
		if !reflect.DeepEqual(c.got, c.want) {
			t.Errorf("%s = %#v, want %#v", c.name, c.got, c.want)
		}
	}
}

// The problems each bad file must produce, all of them and in this order.
// A want line ending in "..." need only be a prefix of the line got.
var gateErrorCases = []struct {
	file string
	want []string
}{
	{"gate_unknown_key.toml", []string{
		"testdata/gate_unknown_key.toml:9: policy.alow_actions: unknown key; did you mean allow_actions?",
	}},
	{"gate_case.toml", []string{
		"testdata/gate_case.toml:2: Listen: unknown key; did you mean listen?",
		"testdata/gate_case.toml: listen: required key is missing",
	}},
	{"gate_wrong_type.toml", []string{
		"testdata/gate_wrong_type.toml:2: listen: expected a string, found an integer",
	}},
	{"gate_syntax.toml", []string{
		"testdata/gate_syntax.toml:5:6: syntax error: ...",
	}},
	{"gate_bad_duration.toml", []string{
		`testdata/gate_bad_duration.toml:9: checks.timeout: invalid duration "5 seconds": write a number with a unit, such as "90s" or "2h30m"`,
	}},
	{"gate_bad_cidr.toml", []string{
		`testdata/gate_bad_cidr.toml:11: policy.bypass_cidrs: entry 2: "10.0.0.0/33" is not a CIDR prefix such as 10.0.0.0/8 or 2001:db8::/32`,
	}},
	{"gate_bad_upstream.toml", []string{
		`testdata/gate_bad_upstream.toml:3: upstream: scheme "ftp" is not allowed; it must be an http or https URL`,
	}},
	{"gate_upstream_no_scheme.toml", []string{
		"testdata/gate_upstream_no_scheme.toml:3: upstream: has no scheme; it must be an http or https URL, such as http://127.0.0.1:5000",
	}},
	{"gate_self.toml", []string{
		`testdata/gate_self.toml:3: upstream: points at the gate itself (listen = ":8080"); it must be CKAN's own server`,
	}},
	{"gate_missing.toml", []string{
		"testdata/gate_missing.toml: site: required key is missing",
		"testdata/gate_missing.toml: listen: required key is missing",
		"testdata/gate_missing.toml: upstream: required key is missing",
		"testdata/gate_missing.toml: auth.ops_token_file: required key is missing",
	}},
	{"gate_empty_required.toml", []string{
		"testdata/gate_empty_required.toml:1: site: must not be empty ...",
		"testdata/gate_empty_required.toml:6: auth.ops_token_file: must not be empty ...",
	}},
	{"gate_tilde_user.toml", []string{
		`testdata/gate_tilde_user.toml:6: auth.ops_token_file: "~ckan/ops.token": only ~/ (your own home directory) is expanded; write the path in full`,
	}},
	{"gate_many.toml", []string{
		`testdata/gate_many.toml:1: site: "Prod Site" is not a valid site name: ...`,
		`testdata/gate_many.toml:2: listen: "localhost" is not host:port; ...`,
		"testdata/gate_many.toml:4: colour: unknown key (known keys here: site, listen, upstream, state, auth, audit, policy, checks, storage, database, snapshot, runbook, migrate, verify, trigger, gate, ab)",
		`testdata/gate_many.toml:8: auth.sysadmin_cache_ttl: expected a duration string with a unit, such as "1m", found an integer`,
		`testdata/gate_many.toml:11: policy.deny_get: entry 1: "group/follow/*" is not a path ...`,
		`testdata/gate_many.toml:12: policy.trusted_proxies: entry 1: "not-an-ip" is not an IP address or a CIDR prefix ...`,
		`testdata/gate_many.toml:15: checks.ckan_db: scheme "mysql" is not allowed; it must be a postgres:// or postgresql:// URL`,
		"testdata/gate_many.toml:16: checks.interval: must not be negative, found -5s",
		"testdata/gate_many.toml:19: snapshot.keep: must be at least 1 ...",
		"testdata/gate_many.toml:20: snapshot.jobs: must be at least 1 ...",
		`testdata/gate_many.toml:21: snapshot.parallel_threshold_bytes: expected an integer number of bytes, such as 2000000000 (no unit), found a string`,
		`testdata/gate_many.toml:24: gate.retry_after: invalid duration "soon": ...`,
		`testdata/gate_many.toml:25: gate.metrics_listen: "localhost:metrics" is not host:port with a numeric port; write it as 127.0.0.1:9121 (or :9121 for every interface)`,
	}},
	{"gate_conflicts.toml", []string{
		"testdata/gate_conflicts.toml:12: audit.file: is the state file; give the audit log its own file",
		"testdata/gate_conflicts.toml:18: snapshot.dir: is inside the storage path that is archived (/var/lib/ckan); the snapshot would contain itself",
		"testdata/gate_conflicts.toml:20: polcy: unknown table; did you mean policy?",
		"testdata/gate_conflicts.toml:23: gate: expected a table ([gate]), found an array of tables",
	}},
	{"gate_checks_bad.toml", []string{
		"testdata/gate_checks_bad.toml:9: checks.ckan_db_url: this key is now called ckan_db: rename it",
		`testdata/gate_checks_bad.toml:10: checks.site_id: "my site" must not contain white space or ':' (it is CKAN's ckan.site_id)`,
		`testdata/gate_checks_bad.toml:11: checks.rq_queues: entry 2: "ckan:default:harvest": give CKAN's name of the queue (such as default), not RQ's (ckan:<site_id>:default)`,
		`testdata/gate_checks_bad.toml:11: checks.rq_queues: entry 3: "bulk jobs" must not contain white space`,
		`testdata/gate_checks_bad.toml:11: checks.rq_queues: entry 4: "default" is listed twice`,
		"testdata/gate_checks_bad.toml:11: checks.rq_queues: entry 5: expected a string, found an integer",
		"testdata/gate_checks_bad.toml:12: checks.solr: has no scheme; it must be an http or https URL, such as http://127.0.0.1:8983/solr/ckan",
		"testdata/gate_checks_bad.toml:13: checks.warn_connections_ratio: must be above 0 and at most 1 (a share, such as 0.8 for 80%), found 80",
		"testdata/gate_checks_bad.toml:14: checks.warn_idle_in_transaction: must be more than 0s",
		`testdata/gate_checks_bad.toml:15: checks.warn_transaction_age: expected a duration string with a unit, such as "5m", found an integer`,
	}},
	{"gate_checks_empty_queues.toml", []string{
		`testdata/gate_checks_empty_queues.toml:9: checks.rq_queues: must list at least one queue (leave the key out to watch ["default"])`,
		"testdata/gate_checks_empty_queues.toml:10: checks.warn_connections_ratio: expected a number such as 0.8, found a string",
	}},
	{"gate_secrets.toml", []string{
		`testdata/gate_secrets.toml:12: checks.ckan_db: scheme "postgresql+psycopg2" is not allowed; it must be a postgres:// or postgresql:// URL; drop the SQLAlchemy driver (+...) from the scheme`,
		"testdata/gate_secrets.toml:13: checks.datastore_db: not a valid URL; ...",
		`testdata/gate_secrets.toml:14: checks.redis: scheme "http" is not allowed; it must be a redis://, rediss:// or unix:// URL`,
	}},
}

func init() {
	gateErrorCases = append(gateErrorCases, struct {
		file string
		want []string
	}{"gate_commands_bad.toml", []string{
		"testdata/gate_commands_bad.toml:9: runbook.poll_interval: ...",
		"testdata/gate_commands_bad.toml:10: runbook.lease: must be at least 1s (a gate renews it every third of it), found 500ms",
		"testdata/gate_commands_bad.toml:14: migrate.argv: expected an array of strings, ...",
		"testdata/gate_commands_bad.toml:17: migrate.name: duplicate migrate name \"db upgrade\"; names must be unique",
		"testdata/gate_commands_bad.toml:18: migrate.argv: must hold the program and its arguments, ...",
		"testdata/gate_commands_bad.toml:19: migrate.mode: must be \"read-only\" or \"down\" ...",
		"testdata/gate_commands_bad.toml:21: verify.name: required key is missing",
		"testdata/gate_commands_bad.toml:23: verify.shell: unknown key ...",
		"testdata/gate_commands_bad.toml:26: state.initial_mode: must be \"live\", \"read-only\" or \"down\"",
		`testdata/gate_commands_bad.toml:29: gate.root_path: must start with /, such as "/data", found "data/../x"`,
		`testdata/gate_commands_bad.toml:30: gate.metrics_listen: ":8080" clashes with listen (127.0.0.1:8080): give /metrics a port of its own`,
	}})
}

func TestLoadGateErrors(t *testing.T) {
	for _, c := range gateErrorCases {
		t.Run(c.file, func(t *testing.T) {
			g, _, err := LoadGate(filepath.Join("testdata", c.file))
			if g != nil {
				t.Errorf("got a Gate along with the error")
			}
			checkProblems(t, err, c.want)
		})
	}
}

// checkProblems checks that err is an *Error whose lines are want.
func checkProblems(t *testing.T, err error, want []string) {
	t.Helper()
	if err == nil {
		t.Fatal("no error")
	}
	var ce *Error
	if !errors.As(err, &ce) {
		t.Fatalf("error is %T, not *Error: %v", err, err)
	}
	got := strings.Split(err.Error(), "\n")
	if len(got) != len(want) || len(ce.Problems) != len(want) {
		t.Fatalf("got %d problems, want %d:\n%s", len(got), len(want), err)
	}
	for i := range want {
		w, prefix := strings.CutSuffix(want[i], "...")
		if prefix && !strings.HasPrefix(got[i], w) || !prefix && got[i] != w {
			t.Errorf("problem %d:\ngot  %s\nwant %s", i+1, got[i], want[i])
		}
	}
}

func TestLoadGateNoFile(t *testing.T) {
	_, _, err := LoadGate(filepath.Join(t.TempDir(), "gate.toml"))
	if !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("err = %v, want one that is fs.ErrNotExist", err)
	}
	if !strings.Contains(err.Error(), "--config") {
		t.Errorf("error does not say what to do: %v", err)
	}
}

func TestLoadGatePaths(t *testing.T) {
	home := t.TempDir()
	t.Setenv("HOME", home)
	g, _, err := LoadGate("testdata/gate_paths.toml")
	if err != nil {
		t.Fatal(err)
	}
	dir, err := filepath.Abs("testdata")
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct{ name, got, want string }{
		{"state.file (relative)", g.State.File, filepath.Join(dir, "state", "prod.json")},
		{"audit.file (beside the state file)", g.Audit.File, filepath.Join(dir, "state", "audit.jsonl")},
		{"auth.ops_token_file (~)", g.Auth.OpsTokenFile, filepath.Join(home, "ops.token")},
		{"checks.storage_path (..)", g.Checks.StoragePath, filepath.Join(filepath.Dir(dir), "storage")},
		{"snapshot.dir (~)", g.Snapshot.Dir, filepath.Join(home, "snapshots")},
		{"snapshot.pg_dump (relative)", g.Snapshot.PGDump, filepath.Join(dir, "bin", "pg_dump")},
		{"snapshot.storage_path (default)", g.Snapshot.StoragePath, filepath.Join(filepath.Dir(dir), "storage")},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %q, want %q", c.name, c.got, c.want)
		}
	}
}

func TestLoadGateWarnings(t *testing.T) {
	cases := []struct {
		name string
		body string
		want []string // substrings, one warning each
	}{
		{"none", "", nil},
		{"bypass everyone", "[policy]\nbypass_cidrs = [\"0.0.0.0/0\"]\n",
			[]string{"policy.bypass_cidrs: 0.0.0.0/0 lets every client bypass down mode"}},
		{"trust everyone", "[policy]\ntrusted_proxies = [\"::/0\"]\n",
			[]string{"policy.trusted_proxies: ::/0 trusts X-Forwarded-For from every client"}},
		{"allowed and denied", "[policy]\nallow_actions = [\"x_show\"]\ndeny_actions = [\"x_show\"]\n",
			[]string{"policy.allow_actions: x_show is also in deny_actions, which wins"}},
		{"metrics for everyone", "[gate]\nmetrics_listen = \":9121\"\n",
			[]string{`gate.metrics_listen: ":9121" serves the metrics without a token on every interface`}},
		{"metrics inside", "[gate]\nmetrics_listen = \"10.0.0.5:9121\"\n", nil},
		{"slow probes", "[checks]\ntimeout = \"20s\"\ninterval = \"20s\"\n",
			[]string{"checks.timeout: checks.timeout (20s) is not shorter than checks.interval (20s)"}},
	}
	head := "site = \"prod\"\nlisten = \"127.0.0.1:8080\"\nupstream = \"http://127.0.0.1:5000\"\n[auth]\nops_token_file = \"/x\"\n"
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "gate.toml")
			if err := os.WriteFile(path, []byte(head+c.body), 0o600); err != nil {
				t.Fatal(err)
			}
			_, warns, err := LoadGate(path)
			if err != nil {
				t.Fatal(err)
			}
			if len(warns) != len(c.want) {
				t.Fatalf("warnings %v, want %d", warns, len(c.want))
			}
			for i, w := range c.want {
				if !strings.HasPrefix(warns[i].String(), path+": "+w) {
					t.Errorf("warning %q, want it to start %q", warns[i], path+": "+w)
				}
			}
		})
	}
}

// A gate.toml holding passwords should not be readable by others.
func TestLoadGatePasswordFileMode(t *testing.T) {
	for _, c := range []struct {
		mode fs.FileMode
		warn bool
	}{{0o600, false}, {0o640, false}, {0o644, true}} {
		path := copyTo(t, "testdata/gate_full.toml", t.TempDir(), c.mode)
		_, warns, err := LoadGate(path)
		if err != nil {
			t.Fatal(err)
		}
		if got := len(warns) == 1 && strings.Contains(warns[0].String(), "chmod 640 "+path); got != c.warn || len(warns) > 1 {
			t.Errorf("mode %04o: warnings %v, want a chmod 640 warning: %v", c.mode, warns, c.warn)
		}
		for _, w := range warns {
			for _, pw := range []string{"statepw", "ckanpw", "dspw"} {
				if strings.Contains(w.String(), pw) {
					t.Errorf("warning holds a password: %s", w)
				}
			}
		}
	}
}

func writeToken(t *testing.T, content string, mode fs.FileMode) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "ops.token")
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
	return path
}

const secretToken = "tok-7c1d2e9f4a5b6c3d8e0f1a2b3c4d5e6f7a8b9c0d1e2f3a4b"

// tokenCases are shared by OpsToken and Site.Token: the token file's
// content and mode, and what reading it gives.
var tokenCases = []struct {
	name    string
	content string
	mode    fs.FileMode
	token   string // "" when an error is wanted
	errHas  string
	warn    bool
}{
	{"0600", secretToken + "\n", 0o600, secretToken, "", false},
	{"trimmed, first line only", "  " + secretToken + " \r\nsecond line\n", 0o600, secretToken, "", false},
	{"no newline", secretToken, 0o400, secretToken, "", false},
	{"world-readable", secretToken + "\n", 0o644, secretToken, "", true},
	{"group-readable", secretToken + "\n", 0o640, secretToken, "", true},
	{"empty", "", 0o600, "", "is empty", false},
	{"blank first line", "   \n" + secretToken + "\n", 0o600, "", "is empty", false},
	{"empty and world-readable", "\n", 0o604, "", "is empty", true},
	{"control characters", "tok\x07" + secretToken + "\n", 0o600, "", "control characters", false},
}

func TestOpsToken(t *testing.T) {
	for _, c := range tokenCases {
		t.Run(c.name, func(t *testing.T) {
			path := writeToken(t, c.content, c.mode)
			g := &Gate{Path: "gate.toml", Auth: AuthConfig{OpsTokenFile: path}}
			token, warns, err := g.OpsToken()
			expectToken(t, token, warns, err, c.token, c.errHas, c.warn, path)
			if c.warn && warns[0].String() != "gate.toml: auth.ops_token_file: "+exposedMessage(path, c.mode) {
				t.Errorf("warning %q", warns[0])
			}
		})
	}
	t.Run("weak", func(t *testing.T) {
		for _, c := range []struct{ token, errHas string }{
			{"7c1d2e9f4a5b6c3d", "is 16 characters long: it must be at least 32"},
			{strings.Repeat("7c1d2e9f", 4)[:31], "is 31 characters long"},
			{strings.Repeat("a", 64), "repeats 1 distinct character(s): it must hold at least 8"},
			{strings.Repeat("7c1d", 10), "repeats 4 distinct"},
		} {
			path := writeToken(t, "  "+c.token+"\n", 0o600)
			g := &Gate{Path: "gate.toml", Auth: AuthConfig{OpsTokenFile: path}}
			token, _, err := g.OpsToken()
			if err == nil || token != "" {
				t.Fatalf("%d-character token accepted", len(c.token))
			}
			for _, want := range []string{"gate.toml: auth.ops_token_file: token file " + path + ": ", c.errHas,
				"make one with: openssl rand -hex 32 > " + path + " && chmod 600 " + path} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q lacks %q", err, want)
				}
			}
			if strings.Contains(err.Error(), c.token) {
				t.Errorf("error holds the token: %v", err)
			}
		}
		// 32 characters, 8 distinct, after trimming: enough.
		path := writeToken(t, " 0123456701234567012345670123456\t\n", 0o600)
		g := &Gate{Path: "gate.toml", Auth: AuthConfig{OpsTokenFile: path}}
		if _, _, err := g.OpsToken(); err == nil || !strings.Contains(err.Error(), "31 characters") {
			t.Errorf("31 characters after trimming: %v", err)
		}
		path = writeToken(t, " 01234567012345670123456701234567\t\n", 0o600)
		g = &Gate{Path: "gate.toml", Auth: AuthConfig{OpsTokenFile: path}}
		if tok, _, err := g.OpsToken(); err != nil || len(tok) != 32 {
			t.Errorf("32 characters, 8 distinct: %q %v", tok, err)
		}
	})
	t.Run("missing", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "ops.token")
		g := &Gate{Path: "gate.toml", Auth: AuthConfig{OpsTokenFile: path}}
		_, _, err := g.OpsToken()
		if err == nil || !strings.Contains(err.Error(), path+" does not exist") || !strings.Contains(err.Error(), "auth.ops_token_file") {
			t.Errorf("err = %v", err)
		}
	})
	t.Run("unset", func(t *testing.T) {
		if _, _, err := (&Gate{Path: "gate.toml"}).OpsToken(); err == nil {
			t.Error("no error")
		}
	})
}

func expectToken(t *testing.T, token string, warns []Warning, err error, want, errHas string, warn bool, path string) {
	t.Helper()
	if want != "" {
		if err != nil || token != want {
			t.Fatalf("token %q, err %v; want %q", token, err, want)
		}
	} else {
		if err == nil || !strings.Contains(err.Error(), errHas) || token != "" {
			t.Fatalf("token %q, err %v; want an error saying %q", token, err, errHas)
		}
		if !strings.Contains(err.Error(), path) {
			t.Errorf("error does not name the file: %v", err)
		}
		if strings.Contains(err.Error(), secretToken) || strings.Contains(err.Error(), "7c1d2e9f") {
			t.Errorf("error holds the token: %v", err)
		}
	}
	if warn {
		if len(warns) != 1 || !strings.Contains(warns[0].Message, "chmod 600 "+path) || !strings.Contains(warns[0].Message, "token file "+path) {
			t.Fatalf("warnings %v, want one naming %s and saying chmod 600", warns, path)
		}
	} else if len(warns) != 0 {
		t.Fatalf("warnings %v, want none", warns)
	}
	for _, w := range warns {
		if strings.Contains(w.String(), secretToken) {
			t.Errorf("warning holds the token: %v", w)
		}
	}
}
