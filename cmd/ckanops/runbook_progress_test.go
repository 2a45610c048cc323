package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/ckanops/ckanops/api"
)

// progressEvents are a snapshot's progress events: two parts reporting
// every 500 ms for 30 s, then ending.
func progressEvents() []api.RunbookEvent {
	t0 := time.Date(2026, 12, 6, 11, 0, 0, 0, time.UTC)
	var evs []api.RunbookEvent
	seq := int64(10)
	for i := 0; i <= 60; i++ {
		for _, part := range []string{"pg_dump ckan_db", "archive of storage uploads"} {
			p := api.NewProgress(part, int64(i)<<20, 0, time.Duration(i)*500*time.Millisecond)
			if part != "pg_dump ckan_db" {
				p = api.NewProgress(part, int64(i)<<20, 60<<20, time.Duration(i)*500*time.Millisecond)
			}
			p.Ended = i == 60
			seq++
			evs = append(evs, api.RunbookEvent{Seq: seq, Time: t0.Add(time.Duration(i) * 500 * time.Millisecond),
				Runbook: "rb", Kind: api.EventProgress, Step: api.StepSnapshot, Progress: &p, Message: p.String()})
		}
	}
	return evs
}

// Not on a terminal (a log): no \r, one line per part every
// progressLogEvery of the reports' time, and each part's last.
func TestRunbookProgressPlainLines(t *testing.T) {
	var out bytes.Buffer
	ui := &runbookUI{e: &env{stdout: &out}, progress: newProgressView(&out)}
	for _, ev := range progressEvents() {
		if err := ui.event(context.Background(), ev); err != nil {
			t.Fatal(err)
		}
	}
	s := out.String()
	if strings.Contains(s, "\r") {
		t.Fatalf("\\r in a log:\n%q", s)
	}
	lines := strings.Split(strings.TrimSuffix(s, "\n"), "\n")
	// Each part: at 0 s, 10 s, 20 s, and its last at 30 s.
	if len(lines) != 8 {
		t.Fatalf("%d lines, want 8:\n%s", len(lines), s)
	}
	for _, w := range []string{
		"snapshot  > archive of storage uploads: 0 B of 62.9 MB (0%)",
		"snapshot  > archive of storage uploads: 21.0 MB of 62.9 MB (33%), 2.1 MB/s, ETA 20s",
		"snapshot  > pg_dump ckan_db: 62.9 MB, 2.1 MB/s, ended",
	} {
		if !strings.Contains(s, w) {
			t.Errorf("output lacks %q:\n%s", w, s)
		}
	}
}

// On a terminal: one line rewritten with \r, within the width, cleared
// before other output and gone once the parts end.
func TestRunbookProgressTerminalLine(t *testing.T) {
	var out bytes.Buffer
	v := newProgressView(&out)
	v.terminal = true
	ui := &runbookUI{e: &env{stdout: &out}, progress: v}
	evs := progressEvents()
	for _, ev := range evs[:42] {
		if err := ui.event(context.Background(), ev); err != nil {
			t.Fatal(err)
		}
	}
	s := out.String()
	if strings.Contains(s, "\n") {
		t.Fatalf("the progress line took new lines:\n%q", s)
	}
	frames := strings.Split(s, "\r")
	last := frames[len(frames)-1]
	if want := "pg_dump ckan_db 21.0 MB 2.1 MB/s | storage uploads 33% 21.0 MB 2.1 MB/s ETA 20s"; last != want || utf8.RuneCountInString(last) > 79 {
		t.Fatalf("last frame %q, want %q within 79 columns", last, want)
	}
	out.Reset()
	if err := ui.event(context.Background(), api.RunbookEvent{Seq: 99, Kind: api.EventOutput, Step: api.StepSnapshot, Message: "pg_dump ckan_db: 21.0 MB"}); err != nil {
		t.Fatal(err)
	}
	s = out.String()
	if !strings.HasPrefix(s, "\r"+strings.Repeat(" ", 79)+"\r") || !strings.Contains(s, "| pg_dump ckan_db: 21.0 MB\n") || !strings.HasSuffix(s, "\rpg_dump ckan_db 21.0 MB 2.1 MB/s | storage uploads 33% 21.0 MB 2.1 MB/s ETA 20s") {
		t.Fatalf("output line not printed above the progress line: %q", s)
	}
	out.Reset()
	for _, ev := range evs[42:] {
		if err := ui.event(context.Background(), ev); err != nil {
			t.Fatal(err)
		}
	}
	frames = strings.Split(out.String(), "\r")
	if last := frames[len(frames)-1]; last != "" {
		t.Fatalf("after every part ended, the line shows %q", last)
	}
}
