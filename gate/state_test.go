package gate

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ckanops/ckanops/api"
)

var t0 = time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)

func rec(mode api.Mode, version int64, since time.Time) Record {
	return Record{Mode: mode, Since: since, Version: version}
}

func liveOnly(r Record) bool { return r.Mode == api.ModeLive }

func TestDrainPhases(t *testing.T) {
	s := newModeState(rec(api.ModeLive, 1, t0))
	if p, _ := s.phase(); p != api.PhaseLive {
		t.Fatalf("phase %s, want live", p)
	}
	_, doneA := s.admitWrite(liveOnly, "POST", "/api/action/package_create", "10.0.0.1", t0, nil)
	_, doneB := s.admitWrite(liveOnly, "POST", "/dataset/new", "10.0.0.2", t0.Add(time.Second), nil)
	if doneA == nil || doneB == nil {
		t.Fatal("writes in live mode must be admitted")
	}
	s.set(rec(api.ModeReadOnly, 2, t0.Add(2*time.Second)))
	if got, done := s.admitWrite(liveOnly, "POST", "/x", "r", t0.Add(3*time.Second), nil); done != nil || got.Version != 2 {
		t.Fatalf("a write after the switch was admitted (or judged on version %d)", got.Version)
	}
	v := s.view(t0.Add(4 * time.Second))
	if v.phase != api.PhaseDraining || len(v.writes) != 2 {
		t.Fatalf("phase %s with %d writes, want draining with 2", v.phase, len(v.writes))
	}
	if v.writes[0].AgeMS != 4000 || v.writes[0].Path != "/api/action/package_create" || v.writes[0].Remote != "10.0.0.1" {
		t.Fatalf("oldest in-flight write: %+v", v.writes[0])
	}
	doneA(t0.Add(5 * time.Second))
	if p, _ := s.phase(); p != api.PhaseDraining {
		t.Fatalf("phase %s with one write left, want draining", p)
	}
	doneB(t0.Add(6 * time.Second))
	p, q := s.phase()
	if p != api.PhaseQuiesced || !q.Equal(t0.Add(6*time.Second)) {
		t.Fatalf("phase %s at %v, want quiesced at the last write's end", p, q)
	}
	doneB(t0.Add(7 * time.Second)) // a second call is harmless
	if s.inFlightCount() != 0 {
		t.Fatal("in-flight count not zero")
	}
	// read-only -> down: still quiesced, since unchanged.
	s.set(rec(api.ModeDown, 3, t0.Add(8*time.Second)))
	if p, q := s.phase(); p != api.PhaseQuiesced || !q.Equal(t0.Add(6*time.Second)) {
		t.Fatalf("after read-only -> down: %s %v", p, q)
	}
	s.set(rec(api.ModeLive, 4, t0.Add(9*time.Second)))
	if p, _ := s.phase(); p != api.PhaseLive {
		t.Fatalf("phase %s after going live", p)
	}
}

func TestSwitchWithNoWritesIsQuiescedAtOnce(t *testing.T) {
	s := newModeState(rec(api.ModeLive, 1, t0))
	s.set(rec(api.ModeReadOnly, 2, t0.Add(time.Minute)))
	if p, q := s.phase(); p != api.PhaseQuiesced || !q.Equal(t0.Add(time.Minute)) {
		t.Fatalf("%s %v, want quiesced at the switch", p, q)
	}
	// A gate restarted in maintenance starts quiesced.
	s = newModeState(rec(api.ModeReadOnly, 7, t0))
	if p, _ := s.phase(); p != api.PhaseQuiesced {
		t.Fatalf("restarted in read-only: %s", p)
	}
}

func TestBypassWritesDoNotHoldTheDrain(t *testing.T) {
	s := newModeState(rec(api.ModeDown, 1, t0))
	_, done := s.admitWrite(func(Record) bool { return true }, "POST", "/dataset/edit/x", "10.9.0.1", t0, nil)
	if done == nil {
		t.Fatal("bypass write refused")
	}
	if p, _ := s.phase(); p != api.PhaseQuiesced {
		t.Fatalf("a bypass write in down mode made the phase %s", p)
	}
	if s.inFlightCount() != 1 {
		t.Fatal("bypass write not counted in flight")
	}
	// Back to live and into read-only again while it runs: now it was
	// admitted before the switch and must be drained.
	s.set(rec(api.ModeLive, 2, t0))
	s.set(rec(api.ModeReadOnly, 3, t0))
	if p, _ := s.phase(); p != api.PhaseDraining {
		t.Fatalf("phase %s, want draining", p)
	}
	done(t0.Add(time.Second))
	if p, _ := s.phase(); p != api.PhaseQuiesced {
		t.Fatalf("phase %s, want quiesced", p)
	}
}

func TestFileStoreRoundTripAndConflict(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state", "prod.state.json")
	fs, err := OpenFileStore(path)
	if err != nil {
		t.Fatal(err)
	}
	defer fs.Close()
	ctx := context.Background()
	if _, ok, err := fs.Load(ctx); ok || err != nil {
		t.Fatalf("empty store: ok=%v err=%v", ok, err)
	}
	until := t0.Add(time.Hour)
	r1 := Record{Mode: api.ModeReadOnly, Message: "snapshot", Since: t0, Until: &until, Version: 1, Actor: "ops-token"}
	if err := fs.CompareAndSwap(ctx, 0, r1); err != nil {
		t.Fatal(err)
	}
	err = fs.CompareAndSwap(ctx, 0, Record{Mode: api.ModeLive, Since: t0, Version: 1})
	var ce *ConflictError
	if !errors.As(err, &ce) || ce.Current.Version != 1 || !errors.Is(err, ErrConflict) {
		t.Fatalf("stale CAS: %v", err)
	}
	got, ok, err := fs.Load(ctx)
	if err != nil || !ok || got.Mode != api.ModeReadOnly || got.Message != "snapshot" || !got.Until.Equal(until) {
		t.Fatalf("Load: %+v %v %v", got, ok, err)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm()&0o007 != 0 {
		t.Errorf("state file mode %v is world-accessible", fi.Mode())
	}
	if ents, _ := os.ReadDir(filepath.Dir(path)); len(ents) != 2 { // the file and its lock
		t.Errorf("temp files left behind: %v", ents)
	}
}

func TestFileStoreRefusesCorruptState(t *testing.T) {
	for name, content := range map[string]string{
		"truncated":    `{"mode": "read-on`,
		"unknown mode": `{"mode": "maintenance", "since": "2026-11-29T12:00:00Z", "version": 3}`,
		"no since":     `{"mode": "read-only", "version": 3}`,
		"empty":        ``,
	} {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "s.json")
			os.WriteFile(path, []byte(content), 0o600)
			fs, err := OpenFileStore(path)
			if err != nil {
				t.Fatal(err)
			}
			defer fs.Close()
			_, _, err = fs.Load(context.Background())
			if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "will not guess") {
				t.Fatalf("corrupt state file accepted or unclear error: %v", err)
			}
		})
	}
}

func TestFileStoreLockedByOneGate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.json")
	a, err := OpenFileStore(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := OpenFileStore(path); err == nil || !strings.Contains(err.Error(), "in use by another gate") {
		t.Fatalf("second open: %v", err)
	}
	a.Close()
	b, err := OpenFileStore(path)
	if err != nil {
		t.Fatalf("open after close: %v", err)
	}
	b.Close()
}

func TestAuditLogAppendsLines(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	for i := 0; i < 2; i++ { // reopen: appends, never truncates
		a, err := OpenAuditLog(path)
		if err != nil {
			t.Fatal(err)
		}
		if err := a.Append(AuditEntry{Time: t0, Event: "mode", Actor: "ops-token", From: "live", To: "read-only", Version: int64(i + 1), Remote: "127.0.0.1"}); err != nil {
			t.Fatal(err)
		}
		a.Close()
	}
	b, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) != 2 || !strings.Contains(lines[1], `"version":2`) || !strings.Contains(lines[0], `"from":"live"`) {
		t.Fatalf("audit log:\n%s", b)
	}
}

func TestRetryAfter(t *testing.T) {
	until := t0.Add(90*time.Second + 300*time.Millisecond)
	r := Record{Until: &until}
	if got := r.retryAfter(t0, 300*time.Second); got != 91 {
		t.Errorf("retryAfter to a future ETA = %d, want 91", got)
	}
	if got := r.retryAfter(t0.Add(time.Hour), 300*time.Second); got != 300 {
		t.Errorf("retryAfter past the ETA = %d, want the default 300", got)
	}
	if got := (Record{}).retryAfter(t0, 120*time.Second); got != 120 {
		t.Errorf("retryAfter without ETA = %d, want 120", got)
	}
}

func TestTokenEqual(t *testing.T) {
	if !tokenEqual("s3cret", "s3cret") || tokenEqual("s3cret", "s3cre") || tokenEqual("", "") || tokenEqual("a", "") {
		t.Fatal("tokenEqual is wrong")
	}
}

func TestHumanDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		30 * time.Second: "1m", 45 * time.Minute: "45m", 2 * time.Hour: "2h",
		90*time.Minute + 10*time.Second: "1h30m", 10 * time.Second: "less than a minute",
	} {
		if got := humanDuration(d); got != want {
			t.Errorf("humanDuration(%v) = %q, want %q", d, got, want)
		}
	}
}
