package ckansim

import (
	"net/http"
	"sync"
	"time"
)

// Entry records one request the Sim received.
type Entry struct {
	Time     time.Time
	Method   string
	Path     string // as received (r.URL.Path)
	Endpoint string // the Flask endpoint it dispatched to ("api.action", "dataset.edit", "" if none)
	Action   string // for api.action, the action name
	// Write is true when CKAN would have changed state: a
	// non-side_effect_free action was run (whatever the outcome), or a
	// mutating form POST (or GET) route was handled. While the request is
	// being answered it says whether the request is expected to write.
	Write  bool
	Status int // 0 while the request is being answered
	Remote string
	Header http.Header // a copy (tests check X-Forwarded-* headers)
}

// journal is the record of requests, in the order they arrived. An entry
// is added when its request arrives and completed when it is answered.
type journal struct {
	mu    sync.Mutex
	list  []Entry
	epoch int // counts resets, so that a request begun before one is not filed after it
}

// place is where begin filed an entry.
type place struct{ epoch, index int }

// begin records an arriving request.
func (j *journal) begin(e Entry) place {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.list = append(j.list, e)
	return place{j.epoch, len(j.list) - 1}
}

// finish completes the entry begin filed at p.
func (j *journal) finish(p place, e Entry) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if p.epoch == j.epoch {
		j.list[p.index] = e
	}
}

// entries returns a deep copy of the journal, or of its writes only.
func (j *journal) entries(writesOnly bool) []Entry {
	j.mu.Lock()
	defer j.mu.Unlock()
	out := make([]Entry, 0, len(j.list))
	for _, e := range j.list {
		if writesOnly && !e.Write {
			continue
		}
		e.Header = e.Header.Clone()
		out = append(out, e)
	}
	return out
}

func (j *journal) reset() {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.list = nil
	j.epoch++
}
