package api

// Wire types of the gate's control API (/-/ckanops/*). The gate encodes
// them and the console decodes them, so the JSON names here are the
// contract of docs/architecture.md, "Control and status API".

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Paths of the gate's control API, below the site URL.
const (
	PathStatus      = "/-/ckanops/status"
	PathMode        = "/-/ckanops/mode"
	PathHealth      = "/-/ckanops/health"
	PathJobsSuspend = "/-/ckanops/jobs/suspend"
	PathJobsResume  = "/-/ckanops/jobs/resume"
	PathAudit       = "/-/ckanops/audit"
	// PathActions lists the actions the gate knows and the unknown ones
	// it has seen (ActionList); PathActionsLearn asks CKAN about the
	// unknown ones (POST).
	PathActions      = "/-/ckanops/actions"
	PathActionsLearn = "/-/ckanops/actions/learn"
)

// Mode is what a site lets through.
type Mode string

// Modes a site can be in.
const (
	ModeLive     Mode = "live"      // reads and writes pass
	ModeReadOnly Mode = "read-only" // reads pass, writes are refused (503)
	ModeDown     Mode = "down"      // everything is refused except the control API and bypass clients
)

// Valid reports whether m is one of the three modes.
func (m Mode) Valid() bool { return m == ModeLive || m == ModeReadOnly || m == ModeDown }

// Maintenance reports whether m holds writes back (read-only or down).
func (m Mode) Maintenance() bool { return m == ModeReadOnly || m == ModeDown }

// Phases of a mode change. Entering read-only or down from live passes
// through draining (new writes refused, admitted writes finishing) to
// quiesced (no write left in flight).
type Phase string

const (
	PhaseLive     Phase = "live"
	PhaseDraining Phase = "draining"
	PhaseQuiesced Phase = "quiesced"
)

// CheckStatus is the outcome of one health check.
type CheckStatus string

// Statuses of one health check.
const (
	CheckOK      CheckStatus = "ok"
	CheckWarn    CheckStatus = "warn"
	CheckFail    CheckStatus = "fail"
	CheckUnknown CheckStatus = "unknown"
)

// Status is the gate's mode record, as served by GET /-/ckanops/status and
// returned by POST /-/ckanops/mode. Anonymous callers get the first seven
// fields; authenticated callers also get InFlight, Gates and Store.
type Status struct {
	Site    string     `json:"site"`
	Mode    Mode       `json:"mode"`
	Phase   Phase      `json:"phase"`
	Message string     `json:"message"`
	Since   time.Time  `json:"since"`
	Until   *time.Time `json:"until"` // the operator's ETA; null when none was given
	// Version increases by one with every change; a change may name the
	// version it expects (ModeRequest.ExpectVersion) to detect a race.
	Version int64 `json:"version"`

	// QuiescedAt is when the last write admitted before the switch finished.
	QuiescedAt *time.Time `json:"quiesced_at,omitempty"`

	InFlight []InFlightWrite `json:"in_flight,omitempty"`
	Gates    []GateInfo      `json:"gates,omitempty"`
	Store    *StoreHealth    `json:"store,omitempty"`

	// Actor and Reason say who made the change that produced this record and why.
	Actor  string `json:"actor,omitempty"`
	Reason string `json:"reason,omitempty"`

	// Audit is set only on the answer of a mode change whose audit log
	// entry could not be written: "failed: " and the error. The change
	// itself was made.
	Audit string `json:"audit,omitempty"`

	// Surface says which CKAN surface the gate's rules come from, and why.
	Surface *SurfaceInfo `json:"surface,omitempty"`
	// UnknownActions are action names seen in traffic that the gate does
	// not know (refused in read-only mode), most seen first, at most 20;
	// UnknownActionCount counts them all. GET /-/ckanops/actions has the
	// rest, and ckanops actions --learn asks CKAN about them.
	UnknownActions     []string `json:"unknown_actions,omitempty"`
	UnknownActionCount int      `json:"unknown_action_count,omitempty"`

	// Schedule is the planned maintenance window, while one is set (in
	// the public status too).
	Schedule *Schedule `json:"schedule,omitempty"`
	// Overrun is true while the site is in maintenance past its planned
	// end (Until): the work takes longer than planned. Nothing switches
	// back by itself.
	Overrun bool `json:"overrun,omitempty"`
	// Triggers are gate.toml's [[trigger]] as this gate sees them (with a
	// token; none when none is configured).
	Triggers []TriggerState `json:"triggers,omitempty"`
}

// SurfaceInfo is the CKAN surface (actions, routes) a gate applies.
type SurfaceInfo struct {
	// Applied is the surface's version ("2.12"), or "strictest of 2.10,
	// 2.11, 2.12": a request passes only if it is a read in every one.
	Applied string `json:"applied"`
	// CKANVersion is what status_show reported; empty when unknown.
	CKANVersion string `json:"ckan_version,omitempty"`
	Reason      string `json:"reason"`
	// Warning is set when the surface is not CKAN's own ("surface 2.12
	// applied to CKAN 2.13.0; unknown actions are refused").
	Warning string `json:"warning,omitempty"`
	// RootPath is the path prefix CKAN is mounted under ("/data"), from
	// [gate] root_path or learned from status_show; empty when none.
	RootPath string `json:"root_path,omitempty"`
}

// InFlightWrite is one write request the gate admitted and is still forwarding.
type InFlightWrite struct {
	Method string `json:"method"`
	Path   string `json:"path"`
	AgeMS  int64  `json:"age_ms"`
	Remote string `json:"remote"`
}

// GateInfo is what one gate sharing the site's state store last reported.
type GateInfo struct {
	ID       string    `json:"id"`
	Version  int64     `json:"version"` // the mode version this gate has applied
	Phase    Phase     `json:"phase"`
	InFlight int       `json:"in_flight"`
	Seen     time.Time `json:"seen"`           // its last heartbeat
	Gone     bool      `json:"gone,omitempty"` // no heartbeat for too long
}

// StoreHealth describes the gate's state store.
type StoreHealth struct {
	Kind       string     `json:"kind"` // "file" or "redis"
	OK         bool       `json:"ok"`
	StaleSince *time.Time `json:"stale_since"` // set while the store is unreachable
}

// ModeRequest is the body of POST /-/ckanops/mode. Give at most one of
// Until (an absolute ETA) and For (a Go duration such as "90m" or "2h30m",
// counted from when the gate applies the change).
type ModeRequest struct {
	Mode    Mode       `json:"mode"`
	Message string     `json:"message,omitempty"`
	Until   *time.Time `json:"until,omitempty"`
	For     string     `json:"for,omitempty"`
	Reason  string     `json:"reason,omitempty"`
	// ExpectVersion, when set, makes the change a compare-and-set: the gate
	// answers 409 with the current record if its version differs.
	ExpectVersion *int64 `json:"expect_version,omitempty"`
}

// Validate reports what is wrong with the request, if anything. The
// client calls it before sending; the gate may call it on what it receives.
func (r ModeRequest) Validate() error {
	var errs []error
	switch r.Mode {
	case ModeLive, ModeReadOnly, ModeDown:
	case "":
		errs = append(errs, errors.New("mode is missing (want live, read-only or down)"))
	default:
		errs = append(errs, fmt.Errorf("mode %q is not one of live, read-only, down", r.Mode))
	}
	if r.Until != nil && r.For != "" {
		errs = append(errs, errors.New("give until or for, not both"))
	}
	if r.For != "" {
		if d, err := time.ParseDuration(r.For); err != nil {
			errs = append(errs, fmt.Errorf("for %q is not a duration such as 90m or 2h30m", r.For))
		} else if d <= 0 {
			errs = append(errs, fmt.Errorf("for %q must be positive", r.For))
		}
	}
	return errors.Join(errs...)
}

// Report is the checks report served by GET /-/ckanops/health.
type Report struct {
	Site   string        `json:"site"`
	Checks []CheckResult `json:"checks"`
}

// CheckResult is the outcome of one probe.
//
// On the wire, Duration is encoded as "duration_ms", a whole number of
// milliseconds (truncated), and the details field that is set as
// "details" (see checks.go); every other field is encoded as its tag says.
type CheckResult struct {
	Name       string        `json:"name"`
	Status     CheckStatus   `json:"status"`
	Summary    string        `json:"summary"`
	ObservedAt time.Time     `json:"observed_at"`
	Duration   time.Duration `json:"-"` // see the type's comment: "duration_ms"

	// The details, typed by the check's kind (ProbeKind): at most one is
	// set. A nil field inside them is what the probe did not learn.
	Gate     *GateDetails     `json:"-"`
	CKAN     *CKANDetails     `json:"-"`
	Postgres *PostgresDetails `json:"-"` // ckan_db, datastore_db
	RQ       *RQDetails       `json:"-"` // redis
	Solr     *SolrDetails     `json:"-"`
	Storage  *StorageDetails  `json:"-"`
	// NotConfigured: the probe is not configured (NotConfiguredResult);
	// the details are {"configured": false}.
	NotConfigured bool `json:"-"`
	// Other holds details as JSON when no typed field holds them all: a
	// check this version does not know, keys its kind lacks (a newer
	// gate's; a crashed probe's stack), values that did not decode. When
	// set, it is what is encoded: a decoded result is encoded as it came.
	Other json.RawMessage `json:"-"`
	// DetailsErr says which received details did not decode; their fields
	// are nil (unknown).
	DetailsErr error `json:"-"`
}

// Overall is a report's worst status: fail, then warn, then ok. Probes
// that are not configured do not count; any other unknown counts as warn.
// An empty report is unknown.
func (rep Report) Overall() CheckStatus {
	worst, any := CheckOK, false
	for _, c := range rep.Checks {
		if c.IsNotConfigured() {
			continue
		}
		any = true
		switch c.Status {
		case CheckFail:
			return CheckFail
		case CheckOK:
		default: // warn, unknown, anything unexpected
			worst = CheckWarn
		}
	}
	if !any {
		return CheckUnknown
	}
	return worst
}

// Applied reports how many of the site's live gates have applied the
// record's version, how many gates are live (gone ones are not counted),
// and which live gates lag behind. A change counts as applied when
// applied == live.
func (s Status) Applied() (applied, live int, lagging []string) {
	for _, g := range s.Gates {
		if g.Gone {
			continue
		}
		live++
		if g.Version >= s.Version {
			applied++
		} else {
			lagging = append(lagging, g.ID)
		}
	}
	return applied, live, lagging
}

// JobsRequest is the optional body of the jobs calls.
type JobsRequest struct {
	// For (suspend only) is a Go duration after which RQ resumes by itself
	// (RQ's suspend ttl); empty: until resumed.
	For    string `json:"for,omitempty"`
	Reason string `json:"reason,omitempty"`
}

// JobsState answers the jobs calls.
type JobsState struct {
	Suspended bool       `json:"suspended"`
	Changed   bool       `json:"changed"` // false when the workers already were so
	Until     *time.Time `json:"until"`   // when a suspension given "for" ends by itself
	// Check is the redis check right after the change: queued and running
	// jobs, workers, suspension.
	Check CheckResult `json:"check"`
}

// AuditEntry is one line of a gate's audit log, as GET /-/ckanops/audit
// serves it.
type AuditEntry struct {
	Time    time.Time `json:"time"`
	Event   string    `json:"event"` // "mode", "rq-suspend", "runbook-start", "bypass-write", ...
	Actor   string    `json:"actor"`
	From    string    `json:"from,omitempty"`
	To      string    `json:"to,omitempty"`
	Version int64     `json:"version,omitempty"`
	Message string    `json:"message,omitempty"`
	Reason  string    `json:"reason,omitempty"`
	Method  string    `json:"method,omitempty"`
	Path    string    `json:"path,omitempty"`
	Remote  string    `json:"remote"`
}

// AuditTail answers GET /-/ckanops/audit.
type AuditTail struct {
	Entries []AuditEntry `json:"entries"` // oldest first
}

// Action classes and sources of ActionInfo.
const (
	ActionRead    = "read"    // passes in read-only mode
	ActionWrite   = "write"   // refused in read-only mode
	ActionUnknown = "unknown" // not known to the gate: refused as a write

	SourceSurface = "surface" // the CKAN surface data (side_effect_free)
	SourcePolicy  = "policy"  // [policy] allow_actions / deny_actions
	SourceLearned = "learned" // asked of CKAN (ckanops actions --learn)
	SourceUnknown = "unknown" // seen in traffic only
)

// ActionList is GET /-/ckanops/actions: every action the gate knows and
// every unknown one seen in traffic, unknown ones first.
type ActionList struct {
	Site string `json:"site"`
	// Surface and CKANVersion say which rules apply (Status.Surface).
	Surface     string       `json:"surface"`
	CKANVersion string       `json:"ckan_version,omitempty"`
	Actions     []ActionInfo `json:"actions"`
	// Learned is set on the answer of POST /-/ckanops/actions/learn:
	// what CKAN said of each action asked about.
	Learned []LearnedAction `json:"learned,omitempty"`
}

// ActionInfo is one action: how the gate classes it and why, and, for an
// action the surface data does not know, how often it was seen.
type ActionInfo struct {
	Name     string     `json:"name"`
	Class    string     `json:"class"`  // ActionRead, ActionWrite or ActionUnknown
	Source   string     `json:"source"` // SourceSurface, SourcePolicy, SourceLearned or SourceUnknown
	Seen     int64      `json:"seen"`
	Refused  int64      `json:"refused"`
	LastSeen *time.Time `json:"last_seen,omitempty"`
	Note     string     `json:"note,omitempty"` // what CKAN answered, for a learned one
}

// LearnedAction is CKAN's answer about one action.
type LearnedAction struct {
	Name   string `json:"name"`
	Class  string `json:"class"`  // ActionRead, ActionWrite, or ActionUnknown (CKAN does not know it, or could not be asked)
	Answer string `json:"answer"` // what CKAN answered, shortened
}
