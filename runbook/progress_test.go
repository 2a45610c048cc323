package runbook

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ckanops/ckanops/api"
)

// The throttle lets one report per part through every interval, and every
// part's last one.
func TestProgressThrottle(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	th := newProgressThrottle(500 * time.Millisecond)
	th.now = func() time.Time { return now }
	passed := map[string]int{}
	for i := range 100 { // 1 s of reports every 10 ms, for two parts
		for _, part := range []string{"pg_dump ckan_db", "archive of storage"} {
			if th.pass(api.Progress{Part: part, DoneBytes: int64(i)}) {
				passed[part]++
			}
		}
		now = now.Add(10 * time.Millisecond)
	}
	for part, n := range passed {
		if n != 2 { // at 0 ms and 500 ms
			t.Errorf("%s: %d reports passed in 1 s, want 2", part, n)
		}
	}
	if !th.pass(api.Progress{Part: "archive of storage", Ended: true}) {
		t.Error("the last report of a part was held back")
	}
}

// A snapshot's progress goes out as progress events: the first at zero,
// the last (ended) with every byte, no closer together than progressEvery
// per part; they are streamed like output (numbered in order, journaled,
// kept out of the record), and the runbook still finishes.
func TestRunbookSnapshotProgress(t *testing.T) {
	site := newFakeSite(t)
	var storage string
	e, o := testEngine(t, site, func(o *Options) { storage = o.Snapshot.StoragePath })
	big := bytes.Repeat([]byte("0123456789abcdef"), 3<<20/16) // 3 MB: several writes
	var total int64 = 8                                       // data.csv
	for _, name := range []string{"a.bin", "b.bin"} {
		if err := os.WriteFile(filepath.Join(storage, name), big, 0o644); err != nil {
			t.Fatal(err)
		}
		total += int64(len(big))
	}
	if _, err := e.Start(context.Background(), api.RunbookOptions{AutoConfirm: true}, "x"); err != nil {
		t.Fatal(err)
	}
	rb := waitFor(t, e, "the end", ended)
	if rb.State != api.RunbookDone {
		t.Fatalf("%s at %s: %s", rb.State, rb.Step, rb.Error)
	}
	evs := events(t, e)
	var prog []api.RunbookEvent
	for i, ev := range evs {
		if i > 0 && ev.Seq != evs[i-1].Seq+1 {
			t.Fatalf("event %d has seq %d after %d", i, ev.Seq, evs[i-1].Seq)
		}
		if ev.Kind == api.EventProgress {
			if ev.Step != api.StepSnapshot || ev.Progress == nil || ev.Progress.Part != "archive of storage" {
				t.Fatalf("progress event %+v (progress %+v)", ev, ev.Progress)
			}
			prog = append(prog, ev)
		}
	}
	if len(prog) < 2 {
		t.Fatalf("%d progress event(s), want a first and a last", len(prog))
	}
	first, last := prog[0].Progress, prog[len(prog)-1].Progress
	if first.DoneBytes != 0 || first.Ended || first.TotalBytes != total || first.TotalFiles != 3 {
		t.Errorf("first progress %+v, want 0 of %d bytes, 3 files", first, total)
	}
	if !last.Ended || last.DoneBytes != total || last.DoneFiles != 3 {
		t.Errorf("last progress %+v, want ended with %d bytes, 3 files", last, total)
	}
	for i := 1; i < len(prog)-1; i++ {
		if gap := prog[i].Time.Sub(prog[i-1].Time); gap < progressEvery-10*time.Millisecond {
			t.Errorf("progress events %d and %d only %s apart", prog[i-1].Seq, prog[i].Seq, gap)
		}
	}
	for _, st := range rb.Steps {
		for _, ev := range st.Evidence {
			if bytes.Contains([]byte(ev.Summary), []byte("archive of storage: 3 files")) {
				t.Errorf("progress recorded as evidence: %+v", ev)
			}
		}
	}
	// Journaled: a reopened engine reads them back.
	e2 := reopen(t, e, o)
	back, _, _ := e2.Events(0)
	n := 0
	for _, ev := range back {
		if ev.Kind == api.EventProgress {
			n++
		}
	}
	if n != len(prog) {
		t.Errorf("journal holds %d progress events, the engine showed %d", n, len(prog))
	}
}
