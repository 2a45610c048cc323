package runbook

import (
	"log/slog"
	"sync"
)

// maxPending bounds the events waiting for the writer that program output
// may add: past it, output waits (outside the engine's mu) for the disk.
const maxPending = 10000

// pendingEvent is an event waiting to be written, marshalled when it was
// emitted (so the engine's state may change meanwhile).
type pendingEvent struct {
	runbook string
	line    []byte // the event's JSON and a newline
	sync    bool   // a state change: synced, then record saved
	record  []byte // the record as of the event; nil for output
}

// writer writes the journal and the record in a goroutine of its own, in
// the order the events were emitted, so that the engine's mu (which every
// read needs) is never held while the disk works. Events are queued under
// the engine's mu; callers that must not go on before their events are on
// disk call wait once they released it.
type writer struct {
	j   *journal
	log *slog.Logger

	mu      sync.Mutex
	cond    *sync.Cond // signalled when queue grows, written advances or closing is set
	queue   []pendingEvent
	queued  int64 // events ever queued
	written int64 // events ever written (synced, for state events), errors logged
	closing bool  // close was called: write what is queued, then stop
	done    chan struct{}
}

func startWriter(j *journal, log *slog.Logger) *writer {
	w := &writer{j: j, log: log, done: make(chan struct{})}
	w.cond = sync.NewCond(&w.mu)
	go w.loop()
	return w
}

// add queues an event. It never waits for the disk.
func (w *writer) add(p pendingEvent) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closing {
		return // not reached: the engine stops queuing once closed
	}
	w.queue = append(w.queue, p)
	w.queued++
	w.cond.Broadcast()
}

// wait returns once every event queued before the call is written (or the
// writer has stopped).
func (w *writer) wait() {
	w.mu.Lock()
	defer w.mu.Unlock()
	target := w.queued
	for w.written < target {
		w.cond.Wait()
	}
}

// throttle waits while more than max events wait to be written.
func (w *writer) throttle(max int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for w.queued-w.written > int64(max) {
		w.cond.Wait()
	}
}

// close writes what is queued and stops the writer.
func (w *writer) close() {
	w.mu.Lock()
	w.closing = true
	w.cond.Broadcast()
	w.mu.Unlock()
	<-w.done
}

func (w *writer) loop() {
	defer close(w.done)
	for {
		w.mu.Lock()
		for len(w.queue) == 0 && !w.closing {
			w.cond.Wait()
		}
		batch := w.queue
		w.queue = nil
		w.mu.Unlock()
		if len(batch) == 0 {
			return // closing, and all written
		}
		w.write(batch)
		w.mu.Lock()
		w.written += int64(len(batch))
		w.cond.Broadcast()
		w.mu.Unlock()
	}
}

// write appends a batch of events in order, syncs the journal once if any
// of them is a state change, then saves the latest record: the record is
// never ahead of the journal on disk.
func (w *writer) write(batch []pendingEvent) {
	sync := false
	var record []byte
	for _, p := range batch {
		if p.line != nil {
			if err := w.j.appendLine(p.runbook, p.line); err != nil {
				w.log.Error("runbook journal not written", "err", err.Error())
			}
		}
		if p.sync {
			sync = true
			if p.record != nil {
				record = p.record
			}
		}
	}
	if sync {
		if err := w.j.sync(); err != nil {
			w.log.Error("runbook journal not written", "err", err.Error())
		}
	}
	if record != nil {
		if err := w.j.saveRecord(record); err != nil {
			w.log.Error("runbook record not saved", "err", err.Error())
		}
	}
}
