package runbook

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"
)

// maxPending bounds the events waiting for the writer that program output
// may add: past it, output waits (outside the engine's mu) for the disk.
const maxPending = 10000

// pendingEvent is an event waiting to be written, marshalled when it was
// emitted (so the engine's state may change meanwhile).
type pendingEvent struct {
	runbook string
	seq     int64
	fence   int64  // the runbook's fence when it was emitted (for the shared store)
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

	// With a shared store, each batch is then published to Redis
	// (shared.go); what could not be is kept (unpub) and sent again with
	// the next batch or a second later. A publish refused by the fence
	// drops it and calls fenced: another gate holds the runbook now.
	shared    *Shared
	fenced    func(error)
	shown     func(seq int64) // called, without mu, once the events up to seq are written
	unpub     []sharedEvent
	unpubRec  []byte
	unpubFnc  int64
	pubErr    error // the last publish's error while unpub is not empty
	retryDue  bool
	retryTime *time.Timer

	mu      sync.Mutex
	cond    *sync.Cond // signalled when queue grows, written advances or closing is set
	queue   []pendingEvent
	queued  int64 // events ever queued
	written int64 // events ever written (synced, for state events), errors logged
	closing bool  // close was called: write what is queued, then stop
	done    chan struct{}
}

func startWriter(j *journal, log *slog.Logger, shared *Shared, fenced func(error), shown func(int64)) *writer {
	w := &writer{j: j, log: log, shared: shared, fenced: fenced, shown: shown, done: make(chan struct{})}
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
		for len(w.queue) == 0 && !w.closing && !w.retryDue {
			w.cond.Wait()
		}
		batch := w.queue
		w.queue = nil
		w.retryDue = false
		w.mu.Unlock()
		if len(batch) == 0 && w.closing {
			w.publish(nil) // a last try
			return         // closing, and all written
		}
		w.write(batch)
		w.publish(batch)
		if n := len(batch); n > 0 && w.shown != nil {
			w.shown(batch[n-1].seq)
		}
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

// maxUnpublished bounds the events kept for Redis while it cannot be
// written; beyond it the oldest program output goes first.
const maxUnpublished = 2 * maxPending

// publish sends the batch, after what earlier batches could not send, to
// the shared store. Called by the writer's goroutine only.
func (w *writer) publish(batch []pendingEvent) {
	if w.shared == nil {
		return
	}
	for _, p := range batch {
		if p.line != nil {
			w.unpub = append(w.unpub, sharedEvent{seq: p.seq, line: p.line})
		}
		if p.record != nil {
			w.unpubRec = p.record
		}
		w.unpubFnc = p.fence
	}
	if len(w.unpub) == 0 && w.unpubRec == nil {
		return
	}
	if n := len(w.unpub) - maxUnpublished; n > 0 {
		w.unpub = w.unpub[n:]
		w.log.Warn("runbook events dropped from Redis's copy: it could not be written for too long", "events", n)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	err := w.shared.publish(ctx, w.unpubFnc, w.unpub, w.unpubRec)
	cancel()
	w.mu.Lock()
	defer w.mu.Unlock()
	switch {
	case err == nil:
		if w.pubErr != nil {
			w.log.Info("runbook record written to Redis again")
		}
		w.unpub, w.unpubRec, w.pubErr = nil, nil, nil
	case errors.Is(err, errFenced):
		w.unpub, w.unpubRec, w.pubErr = nil, nil, nil
		w.log.Error("runbook events not written to Redis: another gate holds the runbook now", "err", err.Error())
		if w.fenced != nil {
			go w.fenced(err)
		}
	default:
		if w.pubErr == nil {
			w.log.Error("runbook record not written to Redis: other gates do not see it yet; trying again every second", "err", err.Error())
		}
		w.pubErr = fmt.Errorf("the runbook's record could not be written to Redis, so other gates would not see it: %w", err)
		if w.retryTime == nil && !w.closing {
			w.retryTime = time.AfterFunc(time.Second, func() {
				w.mu.Lock()
				w.retryTime = nil
				w.retryDue = true
				w.cond.Broadcast()
				w.mu.Unlock()
			})
		}
	}
}

// publishErr is why events are waiting to be written to Redis; nil when
// none are.
func (w *writer) publishErr() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.pubErr
}
