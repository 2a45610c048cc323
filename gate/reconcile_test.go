package gate

import (
	"context"
	"errors"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ckanops/ckanops/api"
)

// lateStore is a store whose compare-and-set writes, then answers as if
// it had timed out; with cutAfterWrite, its loads fail from that write on
// until failLoads is cleared.
type lateStore struct {
	*FileStore
	cutAfterWrite atomic.Bool
	failLoads     atomic.Bool
}

var errLate = errors.New("i/o timeout (after the write)")

func (s *lateStore) CompareAndSwap(ctx context.Context, expect int64, next Record) error {
	if err := s.FileStore.CompareAndSwap(ctx, expect, next); err != nil {
		return err
	}
	if s.cutAfterWrite.Load() {
		s.failLoads.Store(true)
	}
	return errLate
}

func (s *lateStore) Load(ctx context.Context) (Record, bool, error) {
	if s.failLoads.Load() {
		return Record{}, false, errLate
	}
	return s.FileStore.Load(ctx)
}

func lateGate(t *testing.T) (*Gate, *lateStore, string) {
	t.Helper()
	dir := t.TempDir()
	fs, err := OpenFileStore(filepath.Join(dir, "s.json"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fs.Close() })
	audit, err := OpenAuditLog(filepath.Join(dir, "audit.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { audit.Close() })
	store := &lateStore{FileStore: fs}
	g, err := New(context.Background(), Options{Site: "t", Upstream: mustURL(t, "http://127.0.0.1:1"), Store: store, Audit: audit, OpsToken: opsToken})
	if err != nil {
		t.Fatal(err)
	}
	return g, store, filepath.Join(dir, "audit.jsonl")
}

func auditModeEntries(t *testing.T, path string) int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Count(string(b), `"event":"mode"`)
}

// A compare-and-set that failed after it ran is found by its change id:
// the change is answered as made, enforced and audited once.
func TestTimedOutCompareAndSetIsReconciled(t *testing.T) {
	g, _, auditPath := lateGate(t)
	st, err := g.changeMode(context.Background(), api.ModeRequest{Mode: api.ModeReadOnly, Reason: "snapshot"}, "ops-token", "127.0.0.1")
	if err != nil {
		t.Fatalf("the change ran but was answered %v", err)
	}
	if st.Mode != api.ModeReadOnly || g.Mode().Mode != api.ModeReadOnly {
		t.Fatalf("answer %s, enforced %s", st.Mode, g.Mode().Mode)
	}
	if n := auditModeEntries(t, auditPath); n != 1 {
		t.Fatalf("%d mode entries in the audit log, want 1", n)
	}
}

// When the store cannot even be asked, the change is answered as failed;
// if it turns out to have run, the gate audits it when it reads it back.
func TestUnknownOutcomeIsAuditedWhenReadBack(t *testing.T) {
	g, store, auditPath := lateGate(t)
	store.cutAfterWrite.Store(true)
	if _, err := g.changeMode(context.Background(), api.ModeRequest{Mode: api.ModeDown, Reason: "upgrade"}, "ops-token", "127.0.0.1"); !errors.Is(err, errStoreDown) ||
		!strings.Contains(err.Error(), "applies and audits it when it reads it back") {
		t.Fatalf("err %v", err)
	}
	if n := auditModeEntries(t, auditPath); n != 0 {
		t.Fatalf("an unknown outcome was audited at once (%d entries)", n)
	}
	store.failLoads.Store(false)
	rec, _, err := store.Load(context.Background())
	if err != nil || rec.Mode != api.ModeDown {
		t.Fatalf("the store holds %+v, %v", rec, err)
	}
	g.apply(rec) // what the sync loop does with a newer record
	g.apply(rec)
	if n := auditModeEntries(t, auditPath); n != 1 {
		t.Fatalf("%d mode entries after reading it back, want exactly 1", n)
	}
	if g.Mode().Mode != api.ModeDown {
		t.Fatalf("enforced %s", g.Mode().Mode)
	}
}

func mustURL(t *testing.T, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// A window's start, and a change of the window, whose compare-and-set ran
// but was answered as failed are found by their change id too: made,
// enforced and audited once (the scheduler's path used to release its
// lock twice here).
func TestScheduleChangesAreReconciled(t *testing.T) {
	g, _, auditPath := lateGate(t)
	at := time.Now().Add(time.Hour).UTC().Truncate(time.Second)
	st, err := g.setSchedule(context.Background(), api.ScheduleRequest{At: at, For: "1h"}, "ops-token", "127.0.0.1")
	if err != nil || st.Schedule == nil {
		t.Fatalf("schedule: %v %+v", err, st)
	}
	g.clock = func() time.Time { return at }
	if err := g.startSchedule(context.Background()); err != nil {
		t.Fatalf("the window's start ran but was answered %v", err)
	}
	if rec := g.Mode(); rec.Mode != api.ModeReadOnly || rec.Actor != ScheduleActor || rec.Schedule != nil {
		t.Fatalf("after the start: %+v", rec)
	}
	if n := auditModeEntries(t, auditPath); n != 1 {
		t.Fatalf("%d mode entries in the audit log, want 1", n)
	}
}
