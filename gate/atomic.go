package gate

import "sync/atomic"

// atomicRecord is a Record behind an atomic pointer: the hot path reads the
// enforced mode without a lock.
type atomicRecord struct{ p atomic.Pointer[Record] }

func (a *atomicRecord) Load() Record {
	if r := a.p.Load(); r != nil {
		return *r
	}
	return Record{}
}

func (a *atomicRecord) Store(r Record) { a.p.Store(&r) }
