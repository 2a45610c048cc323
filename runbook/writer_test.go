package runbook

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/ckanops/ckanops/api"
)

// journalHas says whether dir's journal.jsonl holds an event of kind.
func journalHas(t *testing.T, dir, kind string) bool {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, journalName))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range bytes.Split(b, []byte("\n")) {
		var ev api.RunbookEvent
		if json.Unmarshal(line, &ev) == nil && ev.Kind == kind {
			return true
		}
	}
	return false
}

// A slow disk stalls neither the runbook's readers nor its event streams;
// a mutating call still answers only once its events are on disk, and the
// runner changes the site only after that.
func TestJournalWritesDoNotBlockReaders(t *testing.T) {
	site := newFakeSite(t)
	e, o := testEngine(t, site, nil)
	if _, err := e.Start(context.Background(), api.RunbookOptions{}, "ckan:admin"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, e, "enable to wait", waitingAt(api.StepEnable))
	_ = events(t, e)

	// From now on every write blocks until the test releases it.
	release := make(chan struct{})
	blocked := make(chan struct{}, 1)
	hook := func() {
		select {
		case blocked <- struct{}{}:
		default:
		}
		<-release
	}
	e.j.beforeWrite.Store(&hook)
	released := false
	defer func() {
		if !released {
			close(release)
		}
	}()

	confirmed := make(chan error, 1)
	go func() {
		_, err := e.Confirm(api.RunbookAction{Step: api.StepEnable, SiteName: "prod"}, "ckan:admin")
		confirmed <- err
	}()
	const bound = 20 * time.Second // generous: only a deadlock reaches it
	select {
	case <-blocked:
	case <-time.After(bound):
		t.Fatal("the journal write never started")
	}

	// The write is blocked: readers answer all the same. The record
	// shows the step confirmed; the event stream shows only what is
	// written (a client must not see an event a crash could lose).
	read := make(chan []api.RunbookEvent, 1)
	var cur *api.Runbook
	go func() {
		var err error
		if cur, err = e.Current(); err != nil {
			t.Error(err)
		}
		evs, _, _ := e.Events(0) // what is shown now, without waiting
		read <- evs
	}()
	var evs []api.RunbookEvent
	select {
	case evs = <-read:
	case <-time.After(bound):
		t.Fatal("Current/Events wait for the blocked journal write")
	}
	if cur == nil || cur.Waiting != nil || cur.State != api.RunbookRunning {
		t.Fatalf("the record does not show the confirmation: %+v", cur)
	}
	hasConfirmed := func(evs []api.RunbookEvent) bool {
		return slices.ContainsFunc(evs, func(ev api.RunbookEvent) bool { return ev.Kind == api.EventConfirmed })
	}
	if hasConfirmed(evs) {
		t.Fatalf("the stream shows the confirmation before it is written: %+v", evs)
	}

	// Neither the confirmation's answer nor the mode change comes before
	// the event is on disk.
	time.Sleep(50 * time.Millisecond)
	select {
	case err := <-confirmed:
		t.Fatalf("Confirm answered (%v) before its event was written", err)
	default:
	}
	if journalHas(t, o.JournalDir, api.EventConfirmed) {
		t.Fatal("the confirmation is on disk although the write is blocked")
	}
	site.mu.Lock()
	modes := len(site.modes)
	site.mu.Unlock()
	if modes != 0 {
		t.Fatalf("the mode changed before the journal was written: %d change(s)", modes)
	}

	close(release)
	released = true
	select {
	case err := <-confirmed:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(bound):
		t.Fatal("Confirm did not answer once the write was released")
	}
	if !journalHas(t, o.JournalDir, api.EventConfirmed) {
		t.Fatal("Confirm answered, but the confirmation is not in the journal")
	}
	if !hasConfirmed(events(t, e)) {
		t.Fatal("the stream does not show the written confirmation")
	}
	rec, err := e.j.load()
	if err != nil {
		t.Fatal(err)
	}
	// The runbook goes on meanwhile: enable may be done already.
	if st := rec.StepByName(api.StepEnable).State; rec.State != api.RunbookRunning && rec.State != api.RunbookWaiting || st != api.StepRunning && st != api.StepDone {
		t.Fatalf("record after confirm: %s, enable %s", rec.State, rec.StepByName(api.StepEnable).State)
	}
}

// Close writes every event emitted before it.
func TestCloseFlushesTheJournal(t *testing.T) {
	site := newFakeSite(t)
	e, o := testEngine(t, site, nil)
	if _, err := e.Start(context.Background(), api.RunbookOptions{}, "ckan:admin"); err != nil {
		t.Fatal(err)
	}
	rb := waitFor(t, e, "enable to wait", waitingAt(api.StepEnable))
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	if !journalHas(t, o.JournalDir, api.EventConfirm) {
		t.Fatal("the confirm event is not in the journal after Close")
	}
	e2, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	defer e2.Close()
	evs := events(t, e2)
	// The confirm event and the interruption Open adds.
	if n := len(evs); n < 2 || evs[n-2].Seq != rb.Seq || evs[n-1].Kind != api.EventInterrupted {
		t.Fatalf("events after reopening: %+v (runbook seq was %d)", evs, rb.Seq)
	}
}
