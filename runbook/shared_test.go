package runbook

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/ckanops/ckanops/api"
	"github.com/ckanops/ckanops/config"
	"github.com/ckanops/ckanops/internal/testredis"
)

// sharedGate opens an engine of gate id sharing the site's runbook in
// srv, with a Redis client of its own (closing it cuts the gate off).
func sharedGate(t *testing.T, site Site, srv *testredis.Server, id string, lease time.Duration, mod func(*Options)) (*Engine, *redis.Client) {
	t.Helper()
	rdb := redisClient(t, srv)
	return gateOn(t, site, rdb, id, lease, func(o *Options) {
		o.Shared = NewShared(rdb, "prod")
		if mod != nil {
			mod(o)
		}
	}), rdb
}

// eventKeys lists seq and kind of the runbook's events, as a gate serves
// them.
func eventKeys(e *Engine) []string {
	evs, _, _ := e.Events(0)
	keys := make([]string, len(evs))
	for i, ev := range evs {
		keys[i] = fmt.Sprintf("%d:%s:%s", ev.Seq, ev.Kind, ev.Step)
	}
	return keys
}

// waitEvents waits until every gate serves the same events as want's,
// ending with the runbook's last.
func waitEvents(t *testing.T, want *Engine, gates ...*Engine) []string {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		w := eventKeys(want)
		same := true
		for _, g := range gates {
			same = same && slices.Equal(eventKeys(g), w)
		}
		if same {
			return w
		}
		if time.Now().After(deadline) {
			for _, g := range gates {
				t.Logf("a gate: %v", eventKeys(g))
			}
			t.Fatalf("the gates' events differ from %v", w)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Three gates share one runbook: it starts on one, every gate shows it and
// its events, and confirmations sent to the others reach its runner.
func TestSharedRunbookServedByEveryGate(t *testing.T) {
	srv := testredis.Start(t)
	site := newFakeSite(t)
	a, _ := sharedGate(t, site, srv, "web-1", 3*time.Second, nil)
	b, _ := sharedGate(t, site, srv, "web-2", 3*time.Second, nil)
	c, _ := sharedGate(t, site, srv, "web-3", 3*time.Second, nil)

	if _, err := b.Current(); !errors.Is(err, ErrNoRunbook) {
		t.Fatalf("before any runbook: %v", err)
	}
	rb, err := a.Start(context.Background(), api.RunbookOptions{Message: "upgrade"}, "alice")
	if err != nil {
		t.Fatal(err)
	}
	// Every gate shows it at once (GET reads Redis), and refuses another.
	for _, g := range []*Engine{b, c} {
		cur, err := g.Current()
		if err != nil || cur.ID != rb.ID {
			t.Fatalf("another gate shows %+v, %v", cur, err)
		}
		if _, err := g.Start(context.Background(), api.RunbookOptions{}, "bob"); !errors.Is(err, ErrConflict) {
			t.Fatalf("a second start on another gate: %v", err)
		}
	}
	waitFor(t, b, "enable to wait, seen from web-2", waitingAt(api.StepEnable))
	// A wrong name is refused by the runner's gate, through web-2.
	if _, err := b.Confirm(api.RunbookAction{SiteName: "prd"}, "bob"); err == nil || !strings.Contains(err.Error(), "type prod exactly") {
		t.Fatalf("confirm with a wrong name through another gate: %v", err)
	}
	got, err := b.Confirm(api.RunbookAction{SiteName: "prod"}, "bob")
	if err != nil {
		t.Fatalf("confirm through another gate: %v", err)
	}
	if got.ID != rb.ID || got.State != api.RunbookRunning {
		t.Fatalf("the answer: %s %s", got.ID, got.State)
	}
	if site.mode() == api.ModeLive {
		waitFor(t, a, "the mode to change", func(*api.Runbook) bool { return site.mode() != api.ModeLive })
	}
	waitFor(t, c, "disable to wait, seen from web-3", waitingAt(api.StepDisable))
	// Every gate answers with the confirmation the stream announced.
	waitEvents(t, a, b, c)
	evs := events(t, a)
	ask := evs[len(evs)-1]
	if ask.Kind != api.EventConfirm || ask.Step != api.StepDisable {
		t.Fatalf("the last event: %+v", ask)
	}
	for i, g := range []*Engine{a, b, c} {
		if cur, err := g.Current(); err != nil || cur.Waiting == nil || cur.Waiting.Seq != ask.Seq {
			t.Fatalf("gate %d: waiting %+v (the confirm event is %d), %v", i, cur.Waiting, ask.Seq, err)
		}
	}
	if _, err := c.Confirm(api.RunbookAction{}, "carol"); err != nil {
		t.Fatalf("confirm disable through web-3: %v", err)
	}
	for _, g := range []*Engine{a, b, c} {
		if rb := waitFor(t, g, "the end, on every gate", ended); rb.State != api.RunbookDone {
			t.Fatalf("ended %s: %s", rb.State, rb.Error)
		}
	}
	waitEvents(t, a, b, c)
	// Numbered without gaps, each once.
	evs, _, done := b.Events(0)
	for i := 1; i < len(evs); i++ {
		if evs[i].Seq != evs[i-1].Seq+1 {
			t.Fatalf("gap or duplicate between %d and %d", evs[i-1].Seq, evs[i].Seq)
		}
	}
	if !done {
		t.Fatal("web-2's event stream does not end with the runbook")
	}
	// Reconnecting to another gate after seq n gives exactly the rest.
	n := evs[len(evs)/2].Seq
	rest, _, _ := c.Events(n)
	if len(rest) != len(evs)-len(evs)/2-1 || rest[0].Seq != n+1 {
		t.Fatalf("events after %d from web-3: %d, from %d", n, len(rest), rest[0].Seq)
	}
	// A gate started later shows the same.
	d, _ := sharedGate(t, site, srv, "web-4", 3*time.Second, nil)
	if cur, err := d.Current(); err != nil || cur.ID != rb.ID || cur.State != api.RunbookDone {
		t.Fatalf("a new gate shows %+v, %v", cur, err)
	}
	waitEvents(t, a, d)
}

// The gate running the runbook dies mid-migration: another gate shows it
// interrupted once the lease has run out, and a resume through a third
// gate continues it there.
func TestSharedRunbookTakenOverWhenItsGateDies(t *testing.T) {
	srv := testredis.Start(t)
	site := newFakeSite(t)
	dir := t.TempDir()
	gate := filepath.Join(dir, "hang")
	pidFile := filepath.Join(dir, "pid")
	writeScript(t, filepath.Join(dir, "migrate.sh"), fmt.Sprintf("if [ -e %s ]; then echo $$ > %s; exec sleep 30; fi\necho migrated\n", gate, pidFile))
	if err := os.WriteFile(gate, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	mig := func(o *Options) {
		o.Migrate = []config.Command{{Name: "db upgrade", Argv: []string{filepath.Join(dir, "migrate.sh")}, Timeout: config.Duration{Duration: time.Minute}}}
	}
	// a's lease is short: its death is noticed soon.
	a, cut := sharedGate(t, site, srv, "web-1", time.Second, mig)
	b, _ := sharedGate(t, site, srv, "web-2", time.Second, mig)
	c, _ := sharedGate(t, site, srv, "web-3", time.Second, mig)

	rb, err := a.Start(context.Background(), api.RunbookOptions{AutoConfirm: true}, "alice")
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, b, "migrate to run, seen from web-2", func(rb *api.Runbook) bool {
		return rb.Step == api.StepMigrate && stepState(rb, api.StepMigrate) == api.StepRunning
	})
	var pid int
	waitFor(t, a, "the migration to run", func(*api.Runbook) bool {
		b, _ := os.ReadFile(pidFile)
		_, err := fmt.Sscan(string(b), &pid)
		return err == nil && pid > 0
	})
	// The migration's running note, with its process group, is in Redis:
	// the other gates know what web-1 may leave running.
	waitFor(t, b, "the migration's running note, seen from web-2", func(rb *api.Runbook) bool {
		for _, ev := range rb.StepByName(api.StepMigrate).Evidence {
			if ev.Details[detailPGID] != nil {
				return true
			}
		}
		return false
	})
	modes := slices.Clone(site.modes)
	// The gate is cut off from Redis, as a killed one would be for the
	// others: no more renewals, nothing more written; its key lapses with
	// the lease (and it stops its migration on its own).
	cut.Close()
	os.Remove(gate)
	// The cut-off gate stops on its own: its migration killed, the site
	// left as it was.
	interruptedByLoss(t, a)
	if syscall.Kill(pid, 0) == nil {
		t.Fatalf("the migration %d outlived its gate's lease", pid)
	}
	if !slices.Equal(site.modes, modes) {
		t.Fatalf("mode changes after the gate was cut off: %v, then %v", modes, site.modes)
	}

	got := waitFor(t, c, "web-3 to show the runbook interrupted", func(rb *api.Runbook) bool { return rb.State == api.RunbookInterrupted })
	if got.ID != rb.ID || got.Step != api.StepMigrate || stepState(got, api.StepMigrate) != api.StepInterrupted {
		t.Fatalf("interrupted at %s (%s)", got.Step, stepState(got, got.Step))
	}
	if got.Fence <= rb.Fence {
		t.Fatalf("the taking gate's fence %d, the dead one's %d", got.Fence, rb.Fence)
	}
	// Resumed, it is refused: whether web-1's migration still runs (as it
	// would had web-1's process died on a host that lives on) cannot be
	// seen from here, and a second migration beside it could break CKAN.
	for _, g := range []*Engine{b, c} {
		_, err := g.Resume(api.RunbookAction{}, "bob")
		if !errors.Is(err, ErrConflict) || !strings.Contains(err.Error(), "its command db upgrade: "+filepath.Join(dir, "migrate.sh")+" was started by gate web-1 (process group ") {
			t.Fatalf("resume after the takeover: %v", err)
		}
	}
	// Retried (the operator checked web-1's host) through both other
	// gates: the one that took it over runs it, the other sends it there;
	// the second retry finds nothing to do.
	retried := 0
	for _, g := range []*Engine{b, c} {
		_, err := g.Retry(api.RunbookAction{}, "bob")
		switch {
		case err == nil:
			retried++
		case !errors.Is(err, ErrConflict):
			t.Fatalf("retry: %v", err)
		}
	}
	if retried != 1 {
		t.Fatalf("%d retries took", retried)
	}
	for _, g := range []*Engine{b, c} {
		waitFor(t, g, "the resumed runbook to finish", func(rb *api.Runbook) bool { return rb.State == api.RunbookDone })
	}
	evs := events(t, c)
	var kinds []string
	for _, ev := range evs {
		kinds = append(kinds, ev.Kind)
	}
	if !slices.Contains(kinds, api.EventInterrupted) || !slices.Contains(kinds, api.EventRetry) {
		t.Fatalf("the journal lacks the takeover: %v", kinds)
	}
	waitEvents(t, b, c)
}

// A gate whose lease was lost cannot write over what the next holder
// wrote; a batch sent twice is written once.
func TestSharedPublishIsFenced(t *testing.T) {
	srv := testredis.Start(t)
	rdb := redisClient(t, srv)
	s := NewShared(rdb, "prod")
	ctx := context.Background()
	rdb.Set(ctx, s.fenceKey, 7, 0)
	ev := func(seq int64) sharedEvent {
		return sharedEvent{seq: seq, line: fmt.Appendf(nil, `{"seq":%d,"runbook":"r1","kind":"step"}`+"\n", seq)}
	}
	rec := []byte(`{"id":"r1","seq":2,"state":"running"}`)
	if err := s.publish(ctx, 7, []sharedEvent{ev(1), ev(2)}, rec); err != nil {
		t.Fatal(err)
	}
	if err := s.publish(ctx, 7, []sharedEvent{ev(1), ev(2), ev(3)}, nil); err != nil {
		t.Fatal(err)
	}
	if err := s.publish(ctx, 6, []sharedEvent{ev(4)}, []byte(`{"id":"r1","seq":4,"state":"done"}`)); !errors.Is(err, errFenced) {
		t.Fatalf("a stale fence: %v", err)
	}
	got, last, err := s.record(ctx)
	if err != nil || got.State != api.RunbookRunning || last != 3 {
		t.Fatalf("record %+v, last %d, %v", got, last, err)
	}
	evs, err := s.events(ctx, "r1")
	if err != nil || len(evs) != 3 || evs[2].Seq != 3 {
		t.Fatalf("events %+v, %v", evs, err)
	}
}

// The gate named by the lock never takes the action (it hangs, or died
// with its key still in Redis): the operator is told which gate, that
// nothing was done, and to ask again; the action is taken back.
func TestSharedActionToAHungHolder(t *testing.T) {
	old := forwardWait
	forwardWait = 300 * time.Millisecond
	t.Cleanup(func() { forwardWait = old })
	srv := testredis.Start(t)
	site := newFakeSite(t)
	b, rdb := sharedGate(t, site, srv, "web-2", time.Second, nil)
	sh := NewShared(rdb, "prod")
	if err := rdb.Set(context.Background(), sh.lockKey, "web-9 runbook r1", time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	_, err := b.Confirm(api.RunbookAction{}, "bob")
	if err == nil || !strings.Contains(err.Error(), "(web-9) did not answer") || !strings.Contains(err.Error(), "nothing was done") {
		t.Fatalf("confirm through a hung holder: %v", err)
	}
	if n, _ := rdb.LLen(context.Background(), sh.actionsKey).Result(); n != 0 {
		t.Fatalf("%d action(s) left queued for the hung gate", n)
	}
}
