package api

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// PathSchedule is the schedule endpoint: GET shows the site's planned
// window, POST sets it (a ScheduleRequest), DELETE cancels it
// (?expect_version=N&reason=R).
const PathSchedule = "/-/ckanops/schedule"

// PathNoticeScript is the script announced and annotated pages load: it
// polls the public status and tells an open page when maintenance starts
// or ends.
const PathNoticeScript = "/-/ckanops/notice.js"

// HeaderWindow names a planned window on API responses while it is
// announced: `at=<RFC 3339>; for=<duration>; mode=<mode>`.
const HeaderWindow = "Ckanops-Maintenance-Window"

// DefaultAnnounce is how long before its start a window is announced when
// the request does not say.
const DefaultAnnounce = 24 * time.Hour

// Schedule is a planned maintenance window, kept in the site's mode record
// (so it is shared by every gate, survives restarts, and changes by
// compare-and-set with the mode). At At the gates switch to Mode by
// themselves (or start the runbook), with Until set to At + For.
type Schedule struct {
	At  time.Time `json:"at"`
	For string    `json:"for"` // a Go duration: "2h", "90m"
	// Message is shown while the window is announced and during it.
	Message string `json:"message,omitempty"`
	Mode    Mode   `json:"mode"` // read-only or down
	// AnnounceFrom is when pages, status_show and API responses start to
	// announce the window.
	AnnounceFrom time.Time `json:"announce_from"`
	// Runbook starts the site's runbook at At instead of a plain mode
	// change; it confirms its steps by itself (AutoConfirm).
	Runbook     bool `json:"runbook,omitempty"`
	SkipMigrate bool `json:"skip_migrate,omitempty"`
	// Actor and Reason say who planned the window and why; only operators
	// see them (the public status leaves them out).
	Actor  string `json:"actor,omitempty"`
	Reason string `json:"reason,omitempty"`
}

// Public is the window as anyone may see it: without Actor and Reason.
func (s Schedule) Public() Schedule {
	s.Actor, s.Reason = "", ""
	return s
}

// Duration is For as a duration (zero when it does not parse).
func (s Schedule) Duration() time.Duration {
	d, _ := time.ParseDuration(s.For)
	return d
}

// End is when the window is planned to end.
func (s Schedule) End() time.Time { return s.At.Add(s.Duration()) }

// Announcing reports whether the window is announced at now: from
// AnnounceFrom until it starts.
func (s Schedule) Announcing(now time.Time) bool {
	return !now.Before(s.AnnounceFrom) && now.Before(s.At)
}

// Due reports whether the window should have started by now.
func (s Schedule) Due(now time.Time) bool { return !now.Before(s.At) }

// ScheduleRequest sets a site's planned window (POST /-/ckanops/schedule).
type ScheduleRequest struct {
	At      time.Time `json:"at"`
	For     string    `json:"for"`
	Message string    `json:"message,omitempty"`
	Mode    Mode      `json:"mode,omitempty"` // default read-only
	// Announce is how long before At the window is announced (a Go
	// duration, "0s" for not at all); empty means DefaultAnnounce.
	Announce    string `json:"announce,omitempty"`
	Runbook     bool   `json:"runbook,omitempty"`
	SkipMigrate bool   `json:"skip_migrate,omitempty"`
	Reason      string `json:"reason,omitempty"`
	// ExpectVersion makes the change a compare-and-set on the mode
	// record's version, as for ModeRequest.
	ExpectVersion *int64 `json:"expect_version,omitempty"`
}

// MaxWindow bounds a window's length: a maintenance planned for longer is
// a mistake of units.
const MaxWindow = 7 * 24 * time.Hour

// MaxScheduleAhead bounds how far ahead a window may be planned.
const MaxScheduleAhead = 366 * 24 * time.Hour

// Validate reports what is wrong with the request at now.
func (r ScheduleRequest) Validate(now time.Time) error {
	var errs []error
	switch r.Mode {
	case "", ModeReadOnly, ModeDown:
	default:
		errs = append(errs, fmt.Errorf("mode %q: a window is read-only or down", r.Mode))
	}
	if r.At.IsZero() {
		errs = append(errs, errors.New("at is missing (the window's start, RFC 3339)"))
	} else if !r.At.After(now) {
		errs = append(errs, fmt.Errorf("at %s is not in the future", r.At.UTC().Format(time.RFC3339)))
	} else if r.At.Sub(now) > MaxScheduleAhead {
		errs = append(errs, fmt.Errorf("at %s is more than a year ahead", r.At.UTC().Format(time.RFC3339)))
	}
	switch d, err := time.ParseDuration(r.For); {
	case r.For == "":
		errs = append(errs, errors.New("for is missing (the window's planned length, such as 2h)"))
	case err != nil:
		errs = append(errs, fmt.Errorf("for %q is not a duration (such as 90m or 2h)", r.For))
	case d < time.Minute:
		errs = append(errs, fmt.Errorf("for %s: a window lasts at least a minute", r.For))
	case d > MaxWindow:
		errs = append(errs, fmt.Errorf("for %s: a window lasts at most %s", r.For, MaxWindow))
	}
	if r.Announce != "" {
		if d, err := time.ParseDuration(r.Announce); err != nil || d < 0 {
			errs = append(errs, fmt.Errorf("announce %q is not a duration of zero or more (such as 24h)", r.Announce))
		}
	}
	if r.SkipMigrate && !r.Runbook {
		errs = append(errs, errors.New("skip_migrate is for a scheduled runbook (runbook: true)"))
	}
	return errors.Join(errs...)
}

// Schedule returns the window the request sets, its announce time
// clamped to now (announcing starts at once when it is due already).
func (r ScheduleRequest) Schedule(now time.Time) Schedule {
	mode := r.Mode
	if mode == "" {
		mode = ModeReadOnly
	}
	announce := DefaultAnnounce
	if r.Announce != "" {
		announce, _ = time.ParseDuration(r.Announce)
	}
	at := r.At.UTC().Truncate(time.Second)
	from := at.Add(-announce)
	if from.Before(now) {
		from = now.UTC().Truncate(time.Second)
	}
	d, _ := time.ParseDuration(r.For)
	return Schedule{At: at, For: shortDuration(d), Message: r.Message, Mode: mode, AnnounceFrom: from,
		Runbook: r.Runbook, SkipMigrate: r.SkipMigrate, Reason: r.Reason}
}

// ScheduleState answers GET /-/ckanops/schedule: the planned window, if
// any, and the mode record's version (for expect_version).
type ScheduleState struct {
	Schedule *Schedule `json:"schedule"`
	Version  int64     `json:"version"`
	// Overrun is true once a maintenance is past its planned end (Until)
	// and still on.
	Overrun bool `json:"overrun"`
}

// Maintenance is what CKAN's status_show answer gains through the gate, as
// result.maintenance: the window announced (Active false) or under way
// (Active true), so that API clients and harvesters can learn of it.
type Maintenance struct {
	Active  bool   `json:"active"`
	Mode    Mode   `json:"mode"`
	Message string `json:"message,omitempty"`
	// Start is when the window starts (announced) or started (under way).
	Start time.Time `json:"start"`
	// End is the planned end; null when none was given.
	End          *time.Time `json:"end"`
	AnnounceFrom *time.Time `json:"announce_from,omitempty"`
	// Overrun: under way past End.
	Overrun bool `json:"overrun,omitempty"`
}

// shortDuration is d as Go writes it, without zero units: "2h", "1h30m".
func shortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}
