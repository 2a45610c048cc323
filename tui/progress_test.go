package tui

import (
	"strings"
	"testing"
	"time"

	tea "charm.land/bubbletea/v2"
	"github.com/charmbracelet/x/exp/golden"

	"github.com/ckanops/ckanops/api"
)

// snapshotRunbook is midDrainRunbook once the drain is done and the
// snapshot runs.
func snapshotRunbook() *api.Runbook {
	rb := midDrainRunbook()
	rb.Step, rb.Seq = api.StepSnapshot, 50
	rb.Steps[2].State, rb.Steps[2].Ended = api.StepDone, ptrTime(t0.Add(-2*time.Minute))
	rb.Steps[3].State, rb.Steps[3].Started, rb.Steps[3].Attempts = api.StepRunning, ptrTime(t0.Add(-time.Minute)), 1
	return rb
}

func progressEvent(seq int64, part string, done, total int64, ended bool) api.RunbookEvent {
	p := api.NewProgress(part, done, total, 10*time.Second)
	p.Ended = ended
	return api.RunbookEvent{Seq: seq, Time: t0, Runbook: "rb-20260314-1455", Kind: api.EventProgress,
		Step: api.StepSnapshot, Progress: &p, Message: p.String()}
}

// The runbook view shows a bar per running part of the snapshot, under
// its step, with bytes, rate and ETA; a part that ends loses its bar.
func TestRunbookProgressBars(t *testing.T) {
	m, gates := fourSitesModel(80, 24)
	g := gates["data"]
	g.runbook = snapshotRunbook()
	g.events = make(chan api.RunbookEvent, 10)
	m.selected = "data"

	cmds := press(m, "r")
	cmd := feed(m, run(cmds[0]))[0]
	batch, ok := cmd().(tea.BatchMsg)
	if !ok || len(batch) != 2 {
		t.Fatalf("attaching returned %T, want the stream and its waiter", cmd())
	}
	go batch[0]()
	wait := batch[1]
	send := func(evs ...api.RunbookEvent) {
		for _, ev := range evs {
			g.events <- ev
			_, wait = m.Update(streamNext(wait))
		}
	}
	send(
		progressEvent(51, "pg_dump ckan_db", 0, 0, false),
		progressEvent(52, "archive of storage", 0, 60<<20, false),
		progressEvent(53, "pg_dump ckan_db", 21<<20, 0, false),
		progressEvent(54, "archive of storage", 20<<20, 60<<20, false),
	)
	content := frameOf(t, m)
	for _, w := range []string{
		"  pg_dump ckan_db        [  size unknown      ] 22.0 MB, 2.2 MB/s",
		"  storage                [███████░░░░░░░░░░░░░]  33% 21.0 MB, 2.1 MB/s, ETA 20s",
	} {
		if !strings.Contains(content, w+"\n") {
			t.Errorf("the view lacks %q:\n%s", w, content)
		}
	}
	if strings.Contains(content, "progress") {
		t.Errorf("progress events were logged:\n%s", content)
	}
	golden.RequireEqual(t, content)

	send(progressEvent(55, "archive of storage", 60<<20, 60<<20, true))
	content = frameOf(t, m)
	if strings.Contains(content, "storage                [") || !strings.Contains(content, "pg_dump ckan_db        [") {
		t.Errorf("after the archive ended:\n%s", content)
	}
	send(api.RunbookEvent{Seq: 56, Time: t0, Runbook: "rb-20260314-1455", Kind: api.EventStep, Step: api.StepSnapshot, State: string(api.StepDone)})
	if content = frameOf(t, m); strings.Contains(content, "█") || strings.Contains(content, "size unknown") {
		t.Errorf("bars left after the step ended:\n%s", content)
	}
}
