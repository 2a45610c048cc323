package api

// The typed details of the checks report (CheckResult), one struct per
// kind of probe, and CheckResult's JSON. A check's kind follows from its
// name (ProbeKind); the JSON of every kind is the object the probes have
// always written, key for key.
//
// What a probe could not learn is nil (a pointer, a nil slice or map) and
// is left out of the JSON; a report decoded from JSON that lacks a key, or
// has a value of another type there, leaves that field nil too. Nil is
// never zero: the runbook's drain reads a nil count as "unknown" and waits.
//
// Fields are declared in the order of their JSON keys, so a details object
// is written byte for byte as the maps of earlier versions were.

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"time"
)

// Names of the checks the gate reports, in its order (GET /-/ckanops/health).
const (
	ProbeGate        = "gate"
	ProbeCKAN        = "ckan"
	ProbeCKANDB      = "ckan_db"
	ProbeDatastoreDB = "datastore_db"
	ProbeRedis       = "redis"
	ProbeSolr        = "solr"
	ProbeStorage     = "storage"
)

// ProbeDatabasePrefix starts the name of the check of each of the site's
// other Postgres databases (gate.toml's [[database]]): "db:<name>",
// reported after datastore_db, with PostgresDetails.
const ProbeDatabasePrefix = "db:"

// ProbeDatabase is the name of the check of the [[database]] called name.
func ProbeDatabase(name string) string { return ProbeDatabasePrefix + name }

// IsDatabaseProbe reports whether a check of this name is a Postgres
// database's (ckan_db, datastore_db, db:<name>): what the drain waits on.
func IsDatabaseProbe(name string) bool { return ProbeKind(name) == KindPostgres }

// Kinds of check details: which of CheckResult's details fields a check's
// details decode into.
const (
	KindGate     = "gate"
	KindCKAN     = "ckan"
	KindPostgres = "postgres"
	KindRQ       = "rq"
	KindSolr     = "solr"
	KindStorage  = "storage"
)

// ProbeKind is the kind of details a check of this name carries, or ""
// for a name this version does not know (its details stay raw, in Other).
func ProbeKind(name string) string {
	switch name {
	case ProbeGate:
		return KindGate
	case ProbeCKAN:
		return KindCKAN
	case ProbeCKANDB, ProbeDatastoreDB:
		return KindPostgres
	case ProbeRedis:
		return KindRQ
	case ProbeSolr:
		return KindSolr
	case ProbeStorage:
		return KindStorage
	}
	if strings.HasPrefix(name, ProbeDatabasePrefix) && len(name) > len(ProbeDatabasePrefix) {
		return KindPostgres
	}
	return ""
}

// GateDetails are the gate's own check: its mode record as it enforces it.
type GateDetails struct {
	GateID string `json:"gate_id"`
	// GatesApplied and GatesLive are set when more than one gate shares
	// the site's store: how many live gates have applied the mode's
	// version, of how many; GatesLagging names those that have not.
	GatesApplied *int     `json:"gates_applied,omitzero"`
	GatesLagging []string `json:"gates_lagging,omitempty"`
	GatesLive    *int     `json:"gates_live,omitzero"`
	InFlight     int      `json:"in_flight"` // writes this gate is forwarding
	Mode         Mode     `json:"mode"`
	Phase        Phase    `json:"phase"`
	Store        string   `json:"store"` // the state store's kind: file, redis
	StoreOK      bool     `json:"store_ok"`
	Version      int64    `json:"version"`
}

// CKANDetails are the ckan check's: CKAN's status_show, called on CKAN
// itself. Version, Plugins, SiteTitle and SiteURL are nil when
// status_show did not answer.
type CKANDetails struct {
	LatencyMS *float64 `json:"latency_ms,omitzero"`
	Plugins   []string `json:"plugins,omitzero"`
	SiteTitle *string  `json:"site_title,omitzero"`
	SiteURL   *string  `json:"site_url,omitzero"`
	Version   *string  `json:"version,omitzero"`
}

// PostgresDetails are the details of ckan_db, datastore_db and db:<name>. Host,
// Database and User come from the configured URL; everything else is read
// from the server (pg_stat_activity, in one query) and is nil when the
// probe could not read it. Counts are of this database's client sessions
// other than the probes' own, except Connections and MaxConnections, which
// are the whole server's.
type PostgresDetails struct {
	ByState             map[string]int `json:"by_state,omitzero"` // sessions by state
	Connections         *int           `json:"connections,omitzero"`
	Database            string         `json:"database"`
	DatabaseConnections *int           `json:"database_connections,omitzero"`
	// HiddenSessions are sessions of other roles the probe's user may not
	// see in full (no pg_read_all_stats): their transactions are not counted.
	HiddenSessions                  *int      `json:"hidden_sessions,omitzero"`
	Host                            string    `json:"host"`
	IdleInTransaction               *int      `json:"idle_in_transaction,omitzero"`
	IdleInTransactionLongestSeconds *float64  `json:"idle_in_transaction_longest_seconds,omitzero"`
	InRecovery                      *bool     `json:"in_recovery,omitzero"` // a replica
	LatencyMS                       *float64  `json:"latency_ms,omitzero"`
	LongestTransactionSeconds       *float64  `json:"longest_transaction_seconds,omitzero"`
	MaxConnections                  *int      `json:"max_connections,omitzero"`
	OldestWriteTransactionSeconds   *float64  `json:"oldest_write_transaction_seconds,omitzero"`
	ReplayLagSeconds                ReplayLag `json:"replay_lag_seconds,omitzero"`
	SizeBytes                       *int64    `json:"size_bytes,omitzero"`
	// Transactions are the open transactions, oldest first, at most 10.
	Transactions []PostgresTransaction `json:"transactions,omitzero"`
	User         string                `json:"user"`
	// WaitingOnLocks counts sessions waiting on a lock.
	WaitingOnLocks *int `json:"waiting_on_locks,omitzero"`
	// WALReceiver says, on a replica, whether a WAL receiver runs
	// (pg_stat_wal_receiver has a row): false when it is not streaming
	// from its primary. nil on a primary.
	WALReceiver *bool `json:"wal_receiver,omitzero"`
	// WriteTransactions counts transactions that have written (they hold
	// a transaction id): what the drain waits on.
	WriteTransactions *int `json:"write_transactions,omitzero"`
}

// PostgresTransaction is one open transaction.
type PostgresTransaction struct {
	PID             int     `json:"pid"`
	User            string  `json:"user"`
	ApplicationName string  `json:"application_name"`
	State           string  `json:"state"`
	Writing         bool    `json:"writing"` // it has written (backend_xid is set)
	AgeSeconds      float64 `json:"age_seconds"`
	StateSeconds    float64 `json:"state_seconds"`
	WaitingOnLock   bool    `json:"waiting_on_lock"`
}

// ReplayLag is a Postgres replica's replay lag: 0 while it has replayed
// all the WAL it received (an idle primary is no lag), else the time since
// the last transaction it replayed. Its JSON is a number of seconds, or
// null on a primary (or a replica with WAL to replay and no transaction
// replayed yet); the zero ReplayLag is not read, and left out (omitzero).
type ReplayLag struct {
	Read    bool     // the probe read it: the key is present, maybe null
	Seconds *float64 // nil: a primary, or nothing replayed yet
}

// IsZero reports whether the lag was not read (for omitzero).
func (l ReplayLag) IsZero() bool { return !l.Read }

// MarshalJSON writes the seconds, or null.
func (l ReplayLag) MarshalJSON() ([]byte, error) { return json.Marshal(l.Seconds) }

// UnmarshalJSON reads a number of seconds, or null.
func (l *ReplayLag) UnmarshalJSON(b []byte) error {
	var s *float64
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	*l = ReplayLag{Read: true, Seconds: s}
	return nil
}

// RQDetails are the redis check's: Redis and CKAN's RQ queues of site
// SiteID. Everything but SiteID is nil when Redis did not answer; the
// memory also when Redis refuses INFO to the probe's user.
type RQDetails struct {
	LatencyMS      *float64  `json:"latency_ms,omitzero"`
	MaxmemoryBytes *int64    `json:"maxmemory_bytes,omitzero"`
	Queued         *int64    `json:"queued,omitzero"` // jobs waiting, on every queue
	Queues         []RQQueue `json:"queues,omitzero"`
	// Running counts the started jobs whose lease has not expired, on
	// every queue: what the drain waits on.
	Running *int64 `json:"running,omitzero"`
	// Scheduled counts the jobs RQ's scheduler will put on a queue later
	// (rq:scheduled:<queue>, every queue; CKAN 2.12 schedules some).
	Scheduled    *int64 `json:"scheduled,omitzero"`
	SiteID       string `json:"site_id"`
	StaleStarted *int64 `json:"stale_started,omitzero"` // started jobs past their lease (a worker died?)
	// Suspended: RQ's suspension flag (rq:suspended) is set; workers start
	// no new job.
	Suspended           *bool    `json:"suspended,omitzero"`
	SuspendedForSeconds *float64 `json:"suspended_for_seconds,omitzero"` // when the suspension ends by itself
	UsedMemoryBytes     *int64   `json:"used_memory_bytes,omitzero"`
	Workers             *int64   `json:"workers,omitzero"` // registered workers, of every queue and site
}

// RQQueue is one RQ queue's counts.
type RQQueue struct {
	Queue   string `json:"queue"`   // RQ's name: ckan:<site_id>:<queue>
	Queued  int64  `json:"queued"`  // waiting in rq:queue:<name>
	Running int64  `json:"running"` // in the started registry, lease not expired
	Stale   int64  `json:"stale"`   // in the started registry, lease expired
	Workers int64  `json:"workers"` // registered on this queue
}

// SolrDetails are the solr check's: Solr's ping handler. HTTPStatus and
// LatencyMS are nil when Solr did not answer; SolrStatus and QTimeMS when
// its answer was not Solr's JSON.
type SolrDetails struct {
	HTTPStatus *int     `json:"http_status,omitzero"`
	LatencyMS  *float64 `json:"latency_ms,omitzero"`
	QTimeMS    *int     `json:"qtime_ms,omitzero"`
	SolrStatus *string  `json:"solr_status,omitzero"` // "OK" when healthy
	URL        string   `json:"url"`                  // the ping's URL, password redacted
}

// StorageDetails are the storage check's: CKAN's file storage. Each field
// is nil when the probe did not get that far: Exists when the path could
// not be looked at, Readable when it is no directory, the space when
// statfs failed, the walk's results when the directory cannot be read.
type StorageDetails struct {
	EntriesScanned *int       `json:"entries_scanned,omitzero"`
	Exists         *bool      `json:"exists,omitzero"`
	FreeBytes      *uint64    `json:"free_bytes,omitzero"` // available to the gate's user
	NewestModified *time.Time `json:"newest_modified,omitzero"`
	NewestPath     string     `json:"newest_path,omitempty"` // relative to Path
	Path           string     `json:"path"`
	Readable       *bool      `json:"readable,omitzero"`
	TotalBytes     *uint64    `json:"total_bytes,omitzero"`
	Unreadable     *int       `json:"unreadable,omitzero"`    // entries the walk could not read
	WalkComplete   *bool      `json:"walk_complete,omitzero"` // false: it stopped at a limit (WalkStopped)
	WalkStopped    string     `json:"walk_stopped,omitempty"`
}

// detailConfigured is the key of a "not configured" result's details.
const detailConfigured = "configured"

// NotConfiguredResult is the result of a probe of something gate.toml does
// not name (key): "unknown", saying which key to set, never a failure. Its
// details are {"configured": false}.
func NotConfiguredResult(key string) CheckResult {
	return CheckResult{
		Status:        CheckUnknown,
		Summary:       "not configured: set " + key + " in gate.toml's [checks] to probe it",
		NotConfigured: true,
	}
}

// IsNotConfigured reports whether r is the result of a probe that is not
// configured (also after a JSON round trip).
func (r CheckResult) IsNotConfigured() bool { return r.NotConfigured }

// checkResultWire is CheckResult on the wire.
type checkResultWire struct {
	Name       string          `json:"name"`
	Status     CheckStatus     `json:"status"`
	Summary    string          `json:"summary"`
	Details    json.RawMessage `json:"details,omitempty"`
	ObservedAt time.Time       `json:"observed_at"`
	DurationMS int64           `json:"duration_ms"`
}

// MarshalJSON writes Duration as "duration_ms" and the details that are
// set as "details": Other as it is, else the one typed details field, else
// {"configured": false} for NotConfigured. Typed details of two kinds, or
// of a kind other than the check's name calls for, are an error.
func (r CheckResult) MarshalJSON() ([]byte, error) {
	details, err := r.detailsJSON()
	if err != nil {
		return nil, err
	}
	return json.Marshal(checkResultWire{r.Name, r.Status, r.Summary, details, r.ObservedAt, r.Duration.Milliseconds()})
}

func (r CheckResult) detailsJSON() (json.RawMessage, error) {
	if len(r.Other) > 0 {
		return r.Other, nil
	}
	var (
		kinds []string
		v     any
	)
	add := func(kind string, set bool, details any) {
		if set {
			kinds = append(kinds, kind)
			v = details
		}
	}
	add(KindGate, r.Gate != nil, r.Gate)
	add(KindCKAN, r.CKAN != nil, r.CKAN)
	add(KindPostgres, r.Postgres != nil, r.Postgres)
	add(KindRQ, r.RQ != nil, r.RQ)
	add(KindSolr, r.Solr != nil, r.Solr)
	add(KindStorage, r.Storage != nil, r.Storage)
	add("not configured", r.NotConfigured, map[string]bool{detailConfigured: false})
	switch {
	case len(kinds) == 0:
		return nil, nil
	case len(kinds) > 1:
		return nil, fmt.Errorf("api: check %q has details of %d kinds (%v): set one", r.Name, len(kinds), kinds)
	}
	if want := ProbeKind(r.Name); want != "" && !r.NotConfigured && kinds[0] != want {
		return nil, fmt.Errorf("api: check %q has %s details, but a check of that name has %s details", r.Name, kinds[0], want)
	}
	return json.Marshal(v)
}

// UnmarshalJSON reads "duration_ms" into Duration and "details" into the
// field of the check's kind (ProbeKind), key by key: a key that is absent
// or does not decode leaves its field nil (unknown), and the latter is
// said in DetailsErr; the result itself still decodes. Details of a name
// this version does not know, and details with keys or values the typed
// field does not hold, are also kept in Other.
func (r *CheckResult) UnmarshalJSON(b []byte) error {
	var w checkResultWire
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	*r = CheckResult{Name: w.Name, Status: w.Status, Summary: w.Summary, ObservedAt: w.ObservedAt,
		Duration: time.Duration(w.DurationMS) * time.Millisecond}
	r.readDetails(w.Details)
	return nil
}

func (r *CheckResult) readDetails(raw json.RawMessage) {
	if len(raw) == 0 || string(raw) == "null" {
		return
	}
	var nc map[string]json.RawMessage
	if json.Unmarshal(raw, &nc) == nil && string(nc[detailConfigured]) == "false" {
		r.NotConfigured = true
		return
	}
	var v any
	switch ProbeKind(r.Name) {
	case KindGate:
		r.Gate = new(GateDetails)
		v = r.Gate
	case KindCKAN:
		r.CKAN = new(CKANDetails)
		v = r.CKAN
	case KindPostgres:
		r.Postgres = new(PostgresDetails)
		v = r.Postgres
	case KindRQ:
		r.RQ = new(RQDetails)
		v = r.RQ
	case KindSolr:
		r.Solr = new(SolrDetails)
		v = r.Solr
	case KindStorage:
		r.Storage = new(StorageDetails)
		v = r.Storage
	default:
		r.Other = raw
		return
	}
	extra, err := decodeFields(raw, v)
	if err != nil {
		r.DetailsErr = fmt.Errorf("api: the details of check %q do not decode: %w", r.Name, err)
	}
	if err != nil || extra {
		r.Other = raw // encoded again as it came
	}
}

// decodeFields decodes the JSON object raw into the struct v points to,
// key by key, matching keys exactly: a key that is absent, or whose value
// does not decode into its field, leaves the field as it was (nil), where
// encoding/json would leave a zero behind a pointer it allocated. The
// error lists the keys that did not decode; extra reports keys the struct
// does not have.
func decodeFields(raw json.RawMessage, v any) (extra bool, err error) {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(raw, &obj); err != nil {
		return false, err
	}
	rv := reflect.ValueOf(v).Elem()
	var errs []error
	used := 0
	for i := range rv.NumField() {
		f := rv.Type().Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		val, ok := obj[name]
		if name == "" || name == "-" || !ok {
			continue
		}
		used++
		p := reflect.New(f.Type)
		if err := json.Unmarshal(val, p.Interface()); err != nil {
			errs = append(errs, fmt.Errorf("%q: %w", name, err))
			continue
		}
		rv.Field(i).Set(p.Elem())
	}
	return used < len(obj), errors.Join(errs...)
}
