package runbook

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/ckanops/ckanops/api"
	"github.com/ckanops/ckanops/internal/testredis"
)

// waitingAtEnable starts a runbook on a and waits until b shows it waiting
// at enable.
func waitingAtEnable(t *testing.T, a, b *Engine) *api.Runbook {
	t.Helper()
	rb, err := a.Start(context.Background(), api.RunbookOptions{Message: "upgrade"}, "alice")
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, b, "enable to wait, seen from "+b.o.Holder, waitingAt(api.StepEnable))
	return rb
}

// breakPublishing makes the runbook's fence key, which the publishing
// script reads first, a list: Redis refuses the runbook's events while
// the lock's renewals (another key) go on. repair puts the fence back.
func breakPublishing(t *testing.T, rdb *redis.Client, sh *Shared) (repair func()) {
	t.Helper()
	ctx := context.Background()
	fence, err := rdb.Get(ctx, sh.fenceKey).Result()
	if err != nil {
		t.Fatal(err)
	}
	if err := rdb.Del(ctx, sh.fenceKey).Err(); err != nil {
		t.Fatal(err)
	}
	if err := rdb.RPush(ctx, sh.fenceKey, "not a fence").Err(); err != nil {
		t.Fatal(err)
	}
	return func() {
		if err := rdb.Set(ctx, sh.fenceKey, fence, 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
}

// countKind counts the events of kind.
func countKind(evs []api.RunbookEvent, kind string) int {
	n := 0
	for _, ev := range evs {
		if ev.Kind == kind {
			n++
		}
	}
	return n
}

// Redis takes the lock's renewals but not the runbook's events (the
// fence key the publishing script checks is of the wrong type): the
// runner does not change the site while its events are not in Redis, the
// other gate keeps showing the runbook as Redis last had it, and once the
// key is repaired the events kept back reach it (sent again every
// second, with nothing new emitted); a retry then changes the mode, once.
func TestSharedSiteUnchangedWhileEventsNotInRedis(t *testing.T) {
	srv := testredis.Start(t)
	site := newFakeSite(t)
	// A long lease: nothing here waits for one to end, and a loaded
	// machine must not lose it.
	a, _ := sharedGate(t, site, srv, "web-1", 10*time.Second, nil)
	b, _ := sharedGate(t, site, srv, "web-2", 10*time.Second, nil)
	rdb := redisClient(t, srv)
	sh := NewShared(rdb, "prod")

	rb := waitingAtEnable(t, a, b)
	a.durable() // the confirm event is written and in Redis
	before := waitEvents(t, a, b)

	// Break only the publishing: the lease lives on the lock key, which
	// renewals still extend.
	repair := breakPublishing(t, rdb, sh)

	if _, err := a.Confirm(api.RunbookAction{SiteName: "prod"}, "alice"); err != nil {
		t.Fatalf("confirm enable: %v", err)
	}
	// The mode change is refused: the step fails, saying why, and the site
	// is as it was.
	got := waitFor(t, a, "enable to stop", func(rb *api.Runbook) bool { return ended(rb) && runnerEnded(a) })
	if got.State != api.RunbookFailed || got.Step != api.StepEnable || !strings.Contains(got.Error, "could not be written to Redis") {
		t.Fatalf("with Redis refusing the events: %s at %s: %q", got.State, got.Step, got.Error)
	}
	if mode, modes, _ := siteState(site); mode != api.ModeLive || len(modes) != 0 {
		t.Fatalf("the site changed while its events were not in Redis: mode %s, changes %v", mode, modes)
	}
	if err := a.leaseErr(); err != nil {
		t.Fatalf("the lease was lost, not only the publishing: %v", err)
	}
	// web-2 still shows what Redis holds: enable waiting, nothing newer.
	if cur, err := b.Current(); err != nil || !waitingAt(api.StepEnable)(cur) || !slices.Equal(eventKeys(b), before) {
		t.Fatalf("web-2 shows %+v (%v), events %v (before: %v)", cur, err, eventKeys(b), before)
	}

	// Repaired once every event is written and tried in Redis, the kept
	// events reach web-2 with nothing new from the runner (it has ended):
	// the writer sends them again on its own.
	a.durable()
	repair()
	waitFor(t, b, "the failure, seen from web-2", func(rb *api.Runbook) bool { return rb.State == api.RunbookFailed })
	waitEvents(t, a, b)

	// Retried through web-2, the runbook goes on: the mode changes once.
	if _, err := b.Retry(api.RunbookAction{ID: rb.ID}, "bob"); err != nil {
		t.Fatalf("retry through web-2: %v", err)
	}
	waitFor(t, b, "disable to wait, seen from web-2", waitingAt(api.StepDisable))
	if _, modes, _ := siteState(site); !slices.Equal(modes, []api.Mode{api.ModeReadOnly}) {
		t.Fatalf("mode changes %v", modes)
	}
	waitEvents(t, a, b)
}

// An operator's retry is sent through web-2 to web-1, which holds the
// lock but is cut off from Redis: it never takes the action. Once web-1's
// lease lapses another gate holds the runbook, and the action, taken back
// or taken from the queue, is done there exactly once: one retry event,
// one mode change, nothing left queued.
func TestSharedActionGoesToTheNextHolder(t *testing.T) {
	srv := testredis.Start(t)
	site := newFakeSite(t)
	a, cut := sharedGate(t, site, srv, "web-1", 3*time.Second, nil)
	b, _ := sharedGate(t, site, srv, "web-2", 3*time.Second, nil)
	c, _ := sharedGate(t, site, srv, "web-3", 3*time.Second, nil)
	rdb := redisClient(t, srv)
	sh := NewShared(rdb, "prod")
	ctx := context.Background()

	rb := waitingAtEnable(t, a, b)
	cut.Close()

	type answer struct {
		rb  *api.Runbook
		err error
	}
	res := make(chan answer, 1)
	go func() {
		rb, err := b.Retry(api.RunbookAction{ID: rb.ID}, "bob")
		res <- answer{rb, err}
	}()
	// The retry is queued while web-1 still holds the lock (its key has
	// up to 3 s to live).
	deadline := time.Now().Add(20 * time.Second)
	for {
		n, _ := rdb.LLen(ctx, sh.actionsKey).Result()
		h, _ := sh.holder(ctx)
		if n == 1 && holderGate(h) == "web-1" {
			break
		}
		if time.Now().After(deadline) || holderGate(h) != "web-1" {
			t.Fatalf("the retry was not queued for web-1 (queued %d, holder %q)", n, h)
		}
		time.Sleep(2 * time.Millisecond)
	}

	var got answer
	select {
	case got = <-res:
	case <-time.After(40 * time.Second):
		t.Fatal("no answer to the retry")
	}
	if got.err != nil {
		t.Fatalf("retry through web-2 across the handover: %v", got.err)
	}
	h, err := sh.holder(ctx)
	if err != nil || (holderGate(h) != "web-2" && holderGate(h) != "web-3") {
		t.Fatalf("the lock after the handover: %q, %v", h, err)
	}
	// web-1 stopped on its own without acting.
	interruptedByLoss(t, a)

	waitFor(t, c, "disable to wait, seen from web-3", waitingAt(api.StepDisable))
	waitEvents(t, b, c)
	evs := events(t, c)
	if n := countKind(evs, api.EventRetry); n != 1 {
		t.Fatalf("%d retry events: %v", n, eventKeys(c))
	}
	if _, modes, _ := siteState(site); !slices.Equal(modes, []api.Mode{api.ModeReadOnly}) {
		t.Fatalf("mode changes %v: the retried step ran more or less than once", modes)
	}
	if n, _ := rdb.LLen(ctx, sh.actionsKey).Result(); n != 0 {
		t.Fatalf("%d action(s) left queued", n)
	}
}

// A runbook that ends (aborted here) while Redis refuses its events keeps
// the site's lock until they are in: released at once, another gate could
// take the lock, and its fence would refuse them for good, leaving every
// other gate showing the runbook as Redis last had it. The abort itself
// answers at once.
func TestSharedLockKeptUntilTheEndIsInRedis(t *testing.T) {
	srv := testredis.Start(t)
	site := newFakeSite(t)
	a, _ := sharedGate(t, site, srv, "web-1", 10*time.Second, nil)
	b, _ := sharedGate(t, site, srv, "web-2", 10*time.Second, nil)
	rdb := redisClient(t, srv)
	sh := NewShared(rdb, "prod")
	ctx := context.Background()
	const lockKey = "ckanops:prod:runbook"

	rb := waitingAtEnable(t, a, b)
	a.durable()
	repair := breakPublishing(t, rdb, sh)

	done := make(chan error, 1)
	go func() { _, err := a.Abort(ctx, api.RunbookAction{ID: rb.ID}, "alice"); done <- err }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the abort waited for Redis")
	}
	// For over a second (the writer tries again every second), the lock
	// stays web-1's and web-2 shows the runbook as Redis has it.
	for end := time.Now().Add(1500 * time.Millisecond); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		if h, err := rdb.Get(ctx, lockKey).Result(); err != nil || !strings.HasPrefix(h, "web-1 ") {
			t.Fatalf("the lock was given up with the abort not in Redis: %q, %v", h, err)
		}
	}
	if cur, _ := b.Current(); cur.State != api.RunbookWaiting {
		t.Fatalf("web-2 shows %s", cur.State)
	}

	// Repaired: the abort reaches web-2, then the lock goes.
	repair()
	waitFor(t, b, "the abort, seen from web-2", func(rb *api.Runbook) bool { return rb.State == api.RunbookAborted })
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if _, err := rdb.Get(ctx, lockKey).Result(); err == redis.Nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the lock was not given up once the abort was in Redis")
		}
	}
}
