package gate

import (
	"errors"
	"fmt"
	"time"

	"github.com/ckanops/ckanops/api"
)

// Record is a site's mode record: what its state store holds and what every
// gate of the site enforces. A change is compare-and-set on Version.
type Record struct {
	Mode    api.Mode   `json:"mode"`
	Message string     `json:"message"`
	Since   time.Time  `json:"since"`
	Until   *time.Time `json:"until"`
	Version int64      `json:"version"`
	Actor   string     `json:"actor,omitempty"`
	Reason  string     `json:"reason,omitempty"`
	// Change names the request that wrote the record (random, per change):
	// a gate whose compare-and-set timed out finds by it whether the write
	// ran after all, and audits it once.
	Change string `json:"change,omitempty"`
	// Schedule is the site's planned maintenance window, if any
	// (schedule.go). Mode changes keep it; it goes when it starts, when
	// it is cancelled, or when it is missed.
	Schedule *api.Schedule `json:"schedule,omitempty"`
	// Format is RecordFormat in a record written by a gate that keeps a
	// planned window (Schedule) when it writes; 0 (absent) in one written
	// by an older gate, which drops the fields it does not know: a window
	// gone from such a record was dropped, not cancelled (restoreSchedule).
	Format int `json:"format,omitempty"`
}

// RecordFormat is the Format of the records this gate writes.
const RecordFormat = 2

// overrun reports whether the record is a maintenance past its planned end.
func (r Record) overrun(now time.Time) bool {
	return r.maintenance() && r.Until != nil && now.After(*r.Until)
}

// initialRecord is the record of a site whose store has never been written:
// live, version 0.
func initialRecord(now time.Time) Record {
	return Record{Mode: api.ModeLive, Since: now.UTC()}
}

// ErrConflict is returned by a store when the expected version is not the
// stored one. The ConflictError carries the current record.
var ErrConflict = errors.New("mode record changed meanwhile")

// ConflictError is a failed compare-and-set: Current is what the store holds.
type ConflictError struct{ Current Record }

func (e *ConflictError) Error() string {
	return fmt.Sprintf("gate: mode record is at version %d (changed by %s): re-read and retry", e.Current.Version, actorOr(e.Current.Actor))
}

func (e *ConflictError) Unwrap() error { return ErrConflict }

func actorOr(a string) string {
	if a == "" {
		return "someone else"
	}
	return a
}

// validate checks a record read from a store: a store holding garbage must
// stop the gate rather than let it guess.
func (r Record) validate() error {
	switch r.Mode {
	case api.ModeLive, api.ModeReadOnly, api.ModeDown:
	default:
		return fmt.Errorf("unknown mode %q", r.Mode)
	}
	if r.Version < 0 {
		return fmt.Errorf("negative version %d", r.Version)
	}
	if r.Since.IsZero() {
		return errors.New("since is missing")
	}
	if s := r.Schedule; s != nil {
		if s.At.IsZero() || s.Duration() <= 0 || (s.Mode != api.ModeReadOnly && s.Mode != api.ModeDown) {
			return fmt.Errorf("the schedule is malformed (at %v, for %q, mode %q)", s.At, s.For, s.Mode)
		}
	}
	return nil
}

// maintenance reports whether the record's mode refuses writes.
func (r Record) maintenance() bool { return r.Mode != api.ModeLive }

// retryAfter is the Retry-After value for a refusal: whole seconds to Until
// when it is in the future, else def.
func (r Record) retryAfter(now time.Time, def time.Duration) int {
	if r.Until != nil {
		if d := r.Until.Sub(now); d > 0 {
			return int((d + time.Second - 1) / time.Second)
		}
	}
	return int(def / time.Second)
}
