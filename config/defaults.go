package config

import (
	"runtime"
	"strconv"
	"time"
)

// Every default of gate.toml and sites.toml is defined here and nowhere
// else. docs/config.md shows the same values; TestDefaultsDocumented
// fails when this file and the documentation differ.

// Where the console looks for sites.toml when --config is not given.
const (
	EnvConfig        = "CKANOPS_CONFIG"  // first: the path in this variable
	EnvXDGConfigHome = "XDG_CONFIG_HOME" // then $XDG_CONFIG_HOME/ckanops/sites.toml
	SitesFileName    = "sites.toml"      // else ~/.config/ckanops/sites.toml
)

// Gate defaults.
const (
	DefaultStateDir         = "/var/lib/ckanops"           // state.file is DefaultStateDir/<site>.state.json
	DefaultAuditName        = "audit.jsonl"                // audit.file is this name beside the state file
	DefaultSysadminCacheTTL = 60 * time.Second             // auth.sysadmin_cache_ttl
	DefaultCKANSiteID       = "default"                    // checks.site_id (CKAN's ckan.site_id)
	DefaultRQQueue          = "default"                    // checks.rq_queues is [DefaultRQQueue], CKAN's default queue
	DefaultCheckTimeout     = 3 * time.Second              // checks.timeout, per probe
	DefaultCheckInterval    = 15 * time.Second             // checks.interval, how long a round of probes is reused
	DefaultSnapshotRoot     = "/var/lib/ckanops/snapshots" // snapshot.dir is DefaultSnapshotRoot/<site>
	DefaultPGDump           = "pg_dump"                    // snapshot.pg_dump, looked up on $PATH
	DefaultSnapshotKeep     = 5                            // snapshot.keep
	// DefaultSnapshotIncremental is snapshot.incremental: storages kept as
	// trees whose unchanged files are hard links to the previous
	// snapshot's (measured on 5 GB: the first 0.79x a tar, the next after
	// 1% changed 0.017x the first).
	DefaultSnapshotIncremental = true
	DefaultDrainTimeout        = 10 * time.Minute       // gate.drain_timeout
	DefaultShutdownTimeout     = 30 * time.Second       // gate.shutdown_timeout
	DefaultRetryAfter          = 300 * time.Second      // gate.retry_after
	DefaultNoticePoll          = 30 * time.Second       // gate.notice_poll
	DefaultMaxUpstreamConns    = 256                    // gate.max_upstream_conns
	DefaultTriggerFor          = 30 * time.Second       // trigger.for
	DefaultInitialMode         = "live"                 // state.initial_mode
	DefaultPollInterval        = 500 * time.Millisecond // runbook.poll_interval
	DefaultLease               = 30 * time.Second       // runbook.lease
	DefaultCKANVersion         = "auto"                 // policy.ckan_version
	DefaultLearnedSuffix       = ".learned.json"        // policy.learned_file is <site> and this beside the state file
	DefaultMigrateTimeout      = time.Hour              // migrate.timeout
	DefaultVerifyTimeout       = 5 * time.Minute        // verify.timeout
	DefaultABPrepareTimeout    = time.Hour              // ab.prepare.timeout
	DefaultABSwitchTimeout     = time.Minute            // ab.switch_to_b.timeout and ab.switch_to_a.timeout
	DefaultABSwitchWait        = 30 * time.Second       // ab.switch_wait
)

// Gate defaults: the Postgres probes' warning thresholds.
const (
	DefaultWarnConnectionsRatio  = 0.8              // checks.warn_connections_ratio, a share of max_connections
	DefaultWarnIdleInTransaction = 60 * time.Second // checks.warn_idle_in_transaction
	DefaultWarnTransactionAge    = 5 * time.Minute  // checks.warn_transaction_age
)

// Console defaults.
const (
	DefaultRefresh     = 5 * time.Second // console.refresh
	DefaultSiteTimeout = 5 * time.Second // console.timeout, the default of each site's timeout
)

// Console defaults: `ckanops serve`, the [serve] table of sites.toml.
const (
	DefaultServeListen        = "127.0.0.1:2222"   // serve.listen
	DefaultServeHostKeyName   = "ssh_host_ed25519" // serve.host_key is this name beside sites.toml
	DefaultServeIdleTimeout   = 30 * time.Minute   // serve.idle_timeout
	DefaultServeMaxSessions   = 32                 // serve.max_sessions
	DefaultServeShutdownGrace = 5 * time.Second    // serve.shutdown_grace
)

// defaultEntry is one row of the defaults table.
type defaultEntry struct {
	File, Key, Value string
}

// defaults is the table of every default, as docs/config.md shows it:
//
//	file        key                             default
//	gate.toml   state.file                      /var/lib/ckanops/<site>.state.json
//	gate.toml   state.initial_mode              live
//	gate.toml   audit.file                      <directory of state.file>/audit.jsonl
//	gate.toml   auth.sysadmin_cache_ttl         1m
//	gate.toml   checks.site_id                  default
//	gate.toml   checks.rq_queues                ["default"]
//	gate.toml   checks.timeout                  3s
//	gate.toml   checks.interval                 15s
//	gate.toml   checks.warn_connections_ratio   0.8
//	gate.toml   checks.warn_idle_in_transaction 1m
//	gate.toml   checks.warn_transaction_age     5m
//	gate.toml   snapshot.dir                    /var/lib/ckanops/snapshots/<site>
//	gate.toml   snapshot.pg_dump                pg_dump
//	gate.toml   snapshot.storage_path           <checks.storage_path>
//	gate.toml   snapshot.keep                   5
//	gate.toml   snapshot.incremental            true
//	gate.toml   snapshot.parallel_threshold_bytes 2000000000
//	gate.toml   snapshot.jobs                   <number of CPUs>
//	gate.toml   gate.drain_timeout              10m
//	gate.toml   gate.shutdown_timeout           30s
//	gate.toml   gate.retry_after                5m
//	gate.toml   gate.notice_poll                30s
//	gate.toml   gate.max_upstream_conns         256
//	gate.toml   trigger.for                     30s
//	gate.toml   trigger.mode                    read-only
//	gate.toml   gate.site_title                 <site>
//	gate.toml   runbook.journal_dir             <directory of state.file>/<site>.runbook
//	gate.toml   runbook.poll_interval           500ms
//	gate.toml   runbook.lease                   30s
//	gate.toml   policy.ckan_version             auto
//	gate.toml   policy.learned_file             <directory of state.file>/<site>.learned.json
//	gate.toml   gate.root_path                  <from status_show>
//	gate.toml   migrate.timeout                 1h
//	gate.toml   migrate.mode                    read-only
//	gate.toml   verify.timeout                  5m
//	gate.toml   ab.prepare.timeout              1h
//	gate.toml   ab.switch_to_b.timeout          1m
//	gate.toml   ab.switch_to_a.timeout          1m
//	gate.toml   ab.switch_wait                  30s
//	sites.toml  console.refresh                 5s
//	sites.toml  console.timeout                 5s
//	sites.toml  site.timeout                    <console.timeout>
//	sites.toml  site.ckan_api_key_header        false
//	sites.toml  serve.listen                    127.0.0.1:2222
//	sites.toml  serve.host_key                  <directory of sites.toml>/ssh_host_ed25519
//	sites.toml  serve.idle_timeout              30m
//	sites.toml  serve.max_sessions              32
//	sites.toml  serve.shutdown_grace            5s
var defaults = []defaultEntry{
	{"gate.toml", "state.file", DefaultStateDir + "/<site>.state.json"},
	{"gate.toml", "state.initial_mode", DefaultInitialMode},
	{"gate.toml", "audit.file", "<directory of state.file>/" + DefaultAuditName},
	{"gate.toml", "auth.sysadmin_cache_ttl", shortDuration(DefaultSysadminCacheTTL)},
	{"gate.toml", "checks.site_id", DefaultCKANSiteID},
	{"gate.toml", "checks.rq_queues", `["` + DefaultRQQueue + `"]`},
	{"gate.toml", "checks.timeout", shortDuration(DefaultCheckTimeout)},
	{"gate.toml", "checks.interval", shortDuration(DefaultCheckInterval)},
	{"gate.toml", "checks.warn_connections_ratio", strconv.FormatFloat(DefaultWarnConnectionsRatio, 'g', -1, 64)},
	{"gate.toml", "checks.warn_idle_in_transaction", shortDuration(DefaultWarnIdleInTransaction)},
	{"gate.toml", "checks.warn_transaction_age", shortDuration(DefaultWarnTransactionAge)},
	{"gate.toml", "snapshot.dir", DefaultSnapshotRoot + "/<site>"},
	{"gate.toml", "snapshot.pg_dump", DefaultPGDump},
	{"gate.toml", "snapshot.storage_path", "<checks.storage_path>"},
	{"gate.toml", "snapshot.keep", strconv.Itoa(DefaultSnapshotKeep)},
	{"gate.toml", "snapshot.incremental", strconv.FormatBool(DefaultSnapshotIncremental)},
	{"gate.toml", "snapshot.parallel_threshold_bytes", strconv.Itoa(DefaultSnapshotParallelThreshold)},
	{"gate.toml", "snapshot.jobs", "<number of CPUs>"},
	{"gate.toml", "gate.drain_timeout", shortDuration(DefaultDrainTimeout)},
	{"gate.toml", "gate.shutdown_timeout", shortDuration(DefaultShutdownTimeout)},
	{"gate.toml", "gate.retry_after", shortDuration(DefaultRetryAfter)},
	{"gate.toml", "gate.notice_poll", shortDuration(DefaultNoticePoll)},
	{"gate.toml", "gate.max_upstream_conns", strconv.Itoa(DefaultMaxUpstreamConns)},
	{"gate.toml", "trigger.for", shortDuration(DefaultTriggerFor)},
	{"gate.toml", "trigger.mode", "read-only"},
	{"gate.toml", "gate.site_title", "<site>"},
	{"gate.toml", "runbook.journal_dir", "<directory of state.file>/<site>.runbook"},
	{"gate.toml", "runbook.poll_interval", shortDuration(DefaultPollInterval)},
	{"gate.toml", "runbook.lease", shortDuration(DefaultLease)},
	{"gate.toml", "policy.ckan_version", DefaultCKANVersion},
	{"gate.toml", "policy.learned_file", "<directory of state.file>/<site>" + DefaultLearnedSuffix},
	{"gate.toml", "gate.root_path", "<from status_show>"},
	{"gate.toml", "migrate.timeout", shortDuration(DefaultMigrateTimeout)},
	{"gate.toml", "migrate.mode", ckanReadOnly},
	{"gate.toml", "verify.timeout", shortDuration(DefaultVerifyTimeout)},
	{"gate.toml", "ab.prepare.timeout", shortDuration(DefaultABPrepareTimeout)},
	{"gate.toml", "ab.switch_to_b.timeout", shortDuration(DefaultABSwitchTimeout)},
	{"gate.toml", "ab.switch_to_a.timeout", shortDuration(DefaultABSwitchTimeout)},
	{"gate.toml", "ab.switch_wait", shortDuration(DefaultABSwitchWait)},
	{"sites.toml", "console.refresh", shortDuration(DefaultRefresh)},
	{"sites.toml", "console.timeout", shortDuration(DefaultSiteTimeout)},
	{"sites.toml", "site.timeout", "<console.timeout>"},
	{"sites.toml", "site.ckan_api_key_header", "false"},
	{"sites.toml", "serve.listen", DefaultServeListen},
	{"sites.toml", "serve.host_key", "<directory of sites.toml>/" + DefaultServeHostKeyName},
	{"sites.toml", "serve.idle_timeout", shortDuration(DefaultServeIdleTimeout)},
	{"sites.toml", "serve.max_sessions", strconv.Itoa(DefaultServeMaxSessions)},
	{"sites.toml", "serve.shutdown_grace", shortDuration(DefaultServeShutdownGrace)},
}

// DefaultSnapshotParallelThreshold is snapshot.parallel_threshold_bytes:
// larger databases are dumped in parallel (pg_dump -Fd -j).
const DefaultSnapshotParallelThreshold = 2_000_000_000

// DefaultSnapshotJobs is snapshot.jobs: the number of CPUs, at least 1.
func DefaultSnapshotJobs() int { return max(1, runtime.NumCPU()) }
