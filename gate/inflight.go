package gate

import (
	"sort"
	"sync"
	"time"

	"github.com/ckanops/ckanops/api"
)

// modeState is the mode a gate enforces and the writes it has in flight,
// under one lock, so that every write is either admitted before a mode
// switch (and drained) or refused after it: never lost between the two.
//
// Reads never take the lock: they load the record through current().
type modeState struct {
	mu         sync.Mutex
	rec        Record
	nextID     uint64
	writes     map[uint64]*inFlight
	preSwitch  int       // writes in flight that were admitted in live mode
	quiescedAt time.Time // when the last pre-switch write finished (zero while draining or live)

	snapshot atomicRecord
}

// inFlight is one admitted write.
type inFlight struct {
	method, path, remote string
	start                time.Time
	live                 bool   // admitted while the mode was live
	close                func() // a tunnel's: closes it when the site leaves live mode
}

func newModeState(rec Record) *modeState {
	s := &modeState{rec: rec, writes: map[uint64]*inFlight{}}
	if rec.maintenance() {
		s.quiescedAt = rec.Since
	}
	s.snapshot.Store(rec)
	return s
}

// current returns the enforced record without locking.
func (s *modeState) current() Record { return s.snapshot.Load() }

// admitWrite registers a write if admit(rec) says the current record lets
// it through, atomically with respect to set. It returns the record the
// decision was made on and, when admitted, a done function to call when the
// write has finished. A tunnel passes close, which set calls when the site
// leaves live mode; nil for a plain write.
func (s *modeState) admitWrite(admit func(Record) bool, method, path, remote string, t time.Time, close func()) (Record, func(time.Time)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rec := s.rec
	if !admit(rec) {
		return rec, nil
	}
	s.nextID++
	id := s.nextID
	w := &inFlight{method: method, path: path, remote: remote, start: t, live: !rec.maintenance(), close: close}
	s.writes[id] = w
	if w.live {
		s.preSwitch++
	}
	return rec, func(end time.Time) { s.finish(id, end) }
}

func (s *modeState) finish(id uint64, end time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	w, ok := s.writes[id]
	if !ok {
		return
	}
	delete(s.writes, id)
	if w.live {
		s.preSwitch--
		if s.preSwitch == 0 && s.rec.maintenance() && s.quiescedAt.IsZero() {
			s.quiescedAt = end
		}
	}
}

// set makes rec the enforced record. Writes admitted under live stay in
// flight and are drained; from here on admission follows rec.
func (s *modeState) set(rec Record) {
	s.mu.Lock()
	defer s.mu.Unlock()
	prev := s.rec
	s.rec = rec
	s.snapshot.Store(rec)
	switch {
	case !rec.maintenance():
		s.quiescedAt = time.Time{}
		// Writes admitted now are live again; those still in flight from
		// before count as admitted in live mode for the next switch.
		for _, w := range s.writes {
			if !w.live {
				w.live = true
				s.preSwitch++
			}
		}
	case !prev.maintenance():
		// Open tunnels would carry writes unclassified: close them. Each
		// stays in flight until its handler has returned.
		for _, w := range s.writes {
			if w.close != nil {
				w.close()
			}
		}
		if s.preSwitch == 0 {
			s.quiescedAt = rec.Since
		} else {
			s.quiescedAt = time.Time{}
		}
	}
}

// phase reports the phase and, when quiesced, since when.
func (s *modeState) phase() (api.Phase, time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.phaseLocked()
}

func (s *modeState) phaseLocked() (api.Phase, time.Time) {
	switch {
	case !s.rec.maintenance():
		return api.PhaseLive, time.Time{}
	case s.preSwitch > 0:
		return api.PhaseDraining, time.Time{}
	default:
		return api.PhaseQuiesced, s.quiescedAt
	}
}

// view is a consistent picture of the mode, phase and in-flight writes.
type view struct {
	rec        Record
	phase      api.Phase
	quiescedAt time.Time
	writes     []api.InFlightWrite
}

func (s *modeState) view(t time.Time) view {
	s.mu.Lock()
	defer s.mu.Unlock()
	v := view{rec: s.rec}
	v.phase, v.quiescedAt = s.phaseLocked()
	v.writes = make([]api.InFlightWrite, 0, len(s.writes))
	for _, w := range s.writes {
		v.writes = append(v.writes, api.InFlightWrite{
			Method: w.method, Path: w.path, Remote: w.remote,
			AgeMS: t.Sub(w.start).Milliseconds(),
		})
	}
	sort.Slice(v.writes, func(i, j int) bool { return v.writes[i].AgeMS > v.writes[j].AgeMS })
	return v
}

// inFlightCount returns how many writes are in flight.
func (s *modeState) inFlightCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.writes)
}
