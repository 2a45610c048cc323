package runbook

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ckanops/ckanops/api"
)

// journalIDs are runbook ids in the order newID makes them.
func journalID(i int) string { return fmt.Sprintf("20261129T16%04dZ-0000%02x", i, i) }

// writeRunbook journals n events of runbook id: started, then output lines
// (every 1000th a step change), and saves its record in state.
func writeRunbook(t *testing.T, j *journal, id string, n int, state api.RunbookState) *api.Runbook {
	t.Helper()
	rb := &api.Runbook{ID: id, Site: "prod", State: state, Step: api.StepMigrate, Started: time.Now().UTC()}
	for _, name := range api.Steps {
		st := api.StepDone
		if name == api.StepMigrate {
			st = api.StepRunning
		}
		rb.Steps = append(rb.Steps, api.RunbookStep{Name: name, State: st, Evidence: []api.Evidence{}})
	}
	for seq := int64(1); seq <= int64(n); seq++ {
		ev := api.RunbookEvent{Seq: seq, Runbook: id, Kind: api.EventOutput, Step: api.StepMigrate, Message: fmt.Sprint("line ", seq)}
		switch {
		case seq == 1:
			ev.Kind, ev.Message = api.EventStarted, "started"
		case seq%1000 == 0:
			ev.Kind, ev.State, ev.Message = api.EventStep, string(api.StepRunning), "step"
			rb.Seq = seq
		}
		if err := j.append(ev, false); err != nil {
			t.Fatal(err)
		}
	}
	if err := j.save(rb); err != nil {
		t.Fatal(err)
	}
	return rb
}

// Reading a runbook's events back keeps what the engine keeps in memory
// (past maxEvents, no program output), never the whole file, and its last
// event, so that numbering goes on after the highest seq on disk.
func TestJournalReloadIsBounded(t *testing.T) {
	dir := t.TempDir()
	j, err := openJournal(dir)
	if err != nil {
		t.Fatal(err)
	}
	n := maxEvents + 5500
	rb := writeRunbook(t, j, journalID(1), n, api.RunbookRunning)
	j.close()

	j, err = openJournal(dir)
	if err != nil {
		t.Fatal(err)
	}
	evs, err := j.events(rb.ID)
	j.close()
	if err != nil {
		t.Fatal(err)
	}
	// maxEvents first events, the 5 step changes after them, and the last
	// output line.
	if want := maxEvents + 5 + 1; len(evs) != want {
		t.Fatalf("%d events read back, want %d", len(evs), want)
	}
	if !slices.IsSortedFunc(evs, func(a, b api.RunbookEvent) int { return int(a.Seq - b.Seq) }) {
		t.Fatal("events out of order")
	}
	if evs[maxEvents-1].Seq != maxEvents || evs[maxEvents].Kind != api.EventStep || evs[len(evs)-1].Seq != int64(n) {
		t.Fatalf("kept %d, then %+v, last %+v", evs[maxEvents-1].Seq, evs[maxEvents], evs[len(evs)-1])
	}

	// The engine numbers on after the last event on disk (the record's
	// seq is its last state change's).
	site := newFakeSite(t)
	e, _ := testEngine(t, site, func(o *Options) { o.JournalDir = dir })
	got := events(t, e)
	if len(got) != len(evs)+1 || got[len(got)-1].Kind != api.EventInterrupted || got[len(got)-1].Seq != int64(n)+1 {
		t.Fatalf("the engine holds %d events, last %+v", len(got), got[len(got)-1])
	}
}

// A line longer than any the engine writes (damage) is skipped; it does
// not stop the reading.
func TestJournalSkipsOverlongLines(t *testing.T) {
	dir := t.TempDir()
	j, err := openJournal(dir)
	if err != nil {
		t.Fatal(err)
	}
	id := journalID(1)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(j.append(api.RunbookEvent{Seq: 1, Runbook: id, Kind: api.EventStarted}, true))
	_, err = j.f.WriteString(`{"seq":2,"runbook":"` + id + `","kind":"output","message":"` + strings.Repeat("x", maxJournalLine) + "\"}\n")
	must(err)
	must(j.append(api.RunbookEvent{Seq: 3, Runbook: id, Kind: api.EventStep}, true))
	// A torn last line.
	_, err = j.f.WriteString(`{"seq":4,"runbook":"` + id + `","ki`)
	must(err)
	evs, err := j.events(id)
	j.close()
	if err != nil || len(evs) != 2 || evs[0].Seq != 1 || evs[1].Seq != 3 {
		t.Fatalf("%v: %+v", err, evs)
	}
}

func journalFiles(t *testing.T, dir string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, "journal*.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	for i := range m {
		m[i] = filepath.Base(m[i])
	}
	slices.Sort(m)
	return m
}

// A new runbook's first event moves the last one's journal to
// journal-<id>.jsonl; the ten newest are kept.
func TestJournalRotatesPerRunbook(t *testing.T) {
	dir := t.TempDir()
	j, err := openJournal(dir)
	if err != nil {
		t.Fatal(err)
	}
	writeRunbook(t, j, journalID(1), 3, api.RunbookDone)
	if got := journalFiles(t, dir); !slices.Equal(got, []string{"journal.jsonl"}) {
		t.Fatalf("files: %v", got)
	}
	writeRunbook(t, j, journalID(2), 3, api.RunbookDone)
	if got := journalFiles(t, dir); !slices.Equal(got, []string{"journal-" + journalID(1) + ".jsonl", "journal.jsonl"}) {
		t.Fatalf("files: %v", got)
	}
	b, _ := os.ReadFile(filepath.Join(dir, "journal.jsonl"))
	if bytes.Contains(b, []byte(journalID(1))) || bytes.Count(b, []byte("\n")) != 3 {
		t.Fatalf("journal.jsonl:\n%s", b)
	}
	// A gate restart: the journal knows whose events its file holds.
	j.close()
	j, err = openJournal(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { j.close() }()
	if err := j.append(api.RunbookEvent{Seq: 4, Runbook: journalID(2), Kind: api.EventFinished}, true); err != nil {
		t.Fatal(err)
	}
	if got := len(journalFiles(t, dir)); got != 2 {
		t.Fatalf("an event of the same runbook rotated the journal: %v", journalFiles(t, dir))
	}
	for i := 3; i <= 14; i++ {
		writeRunbook(t, j, journalID(i), 3, api.RunbookDone)
	}
	want := []string{}
	for i := 4; i <= 13; i++ {
		want = append(want, "journal-"+journalID(i)+".jsonl")
	}
	want = append(want, "journal.jsonl")
	if got := journalFiles(t, dir); !slices.Equal(got, want) {
		t.Fatalf("files:\n%v\nwant\n%v", got, want)
	}
	// Every kept runbook reads back whole.
	for i := 4; i <= 14; i++ {
		evs, err := j.events(journalID(i))
		if err != nil || len(evs) != 3 {
			t.Fatalf("runbook %d: %v, %d events", i, err, len(evs))
		}
	}
}

// A crash after the journal was moved away and before the next runbook's
// record was saved: the record's runbook reads back from its rotated file.
func TestJournalReadsARotatedRunbook(t *testing.T) {
	dir := t.TempDir()
	j, err := openJournal(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { j.close() }()
	writeRunbook(t, j, journalID(1), 3, api.RunbookDone)
	if err := j.rotate(); err != nil {
		t.Fatal(err)
	}
	evs, err := j.events(journalID(1))
	if err != nil || len(evs) != 3 {
		t.Fatalf("%v, %d events", err, len(evs))
	}
	// The name never comes from the path, and never overwrites.
	if got := rotatedName("../x"); strings.Contains(got, "/") || !strings.HasPrefix(got, "journal-") {
		t.Fatalf("rotatedName: %q", got)
	}
	j.cur = journalID(1)
	if err := j.append(api.RunbookEvent{Seq: 4, Runbook: journalID(2), Kind: api.EventStarted}, true); err != nil {
		t.Fatal(err)
	}
	if got := journalFiles(t, dir); len(got) != 3 {
		t.Fatalf("files: %v", got)
	}
}

// Through the engine: starting a runbook after a finished one rotates the
// journal, and the new runbook's events are its own.
func TestEngineRotatesTheJournalOnStart(t *testing.T) {
	dir := t.TempDir()
	j, err := openJournal(dir)
	if err != nil {
		t.Fatal(err)
	}
	old := writeRunbook(t, j, journalID(1), 5, api.RunbookDone)
	j.close()
	e, _ := testEngine(t, newFakeSite(t), func(o *Options) { o.JournalDir = dir })
	rb, err := e.Start(context.Background(), api.RunbookOptions{}, "ops-token")
	if err != nil {
		t.Fatal(err)
	}
	if got := journalFiles(t, dir); !slices.Equal(got, []string{"journal-" + old.ID + ".jsonl", "journal.jsonl"}) {
		t.Fatalf("files: %v", got)
	}
	b, _ := os.ReadFile(filepath.Join(dir, "journal-"+old.ID+".jsonl"))
	if bytes.Count(b, []byte("\n")) != 5 || bytes.Contains(b, []byte(rb.ID)) {
		t.Fatalf("the old runbook's journal:\n%s", b)
	}
	b, _ = os.ReadFile(filepath.Join(dir, "journal.jsonl"))
	if bytes.Contains(b, []byte(old.ID)) || !bytes.Contains(b, []byte(rb.ID)) {
		t.Fatalf("journal.jsonl:\n%s", b)
	}
}
