package runbook

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/ckanops/ckanops/internal/testredis"
)

// redisClient is a client of srv as the gate configures one: no retries,
// short timeouts (a paused server must not hold a call for long).
func redisClient(t *testing.T, srv *testredis.Server) *redis.Client {
	t.Helper()
	opts, err := redis.ParseURL(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	opts.DialTimeout, opts.ReadTimeout, opts.WriteTimeout = 500*time.Millisecond, 500*time.Millisecond, 500*time.Millisecond
	opts.MaxRetries = -1
	rdb := redis.NewClient(opts)
	t.Cleanup(func() { rdb.Close() })
	return rdb
}

// pause stops srv with SIGSTOP, as a stalled host or a long partition
// would; the returned func (also run at cleanup) continues it.
func pause(t *testing.T, srv *testredis.Server) (cont func()) {
	t.Helper()
	pid := srv.Pid()
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	done := false
	cont = func() {
		if !done {
			done = true
			_ = syscall.Kill(pid, syscall.SIGCONT)
		}
	}
	t.Cleanup(cont)
	return cont
}

// lostWithin waits for the lease to be lost, at most d.
func lostWithin(t *testing.T, l *Lease, d time.Duration) error {
	t.Helper()
	select {
	case <-l.Lost():
	case <-time.After(d):
		t.Fatalf("the lease is still held after %s", d)
	}
	err := l.Err()
	if !errors.Is(err, ErrLeaseLost) || !strings.HasPrefix(err.Error(), "lease lost: ") {
		t.Fatalf("a lost lease's error: %v", err)
	}
	return err
}

func TestRedisLockOneHolderAtATime(t *testing.T) {
	srv := testredis.Start(t)
	rdb := redisClient(t, srv)
	ctx := context.Background()

	a := NewRedisLock(rdb, "prod", 600*time.Millisecond)
	b := NewRedisLock(rdb, "prod", 600*time.Millisecond)
	other := NewRedisLock(rdb, "staging", 600*time.Millisecond)
	la, err := a.Acquire(ctx, "web-1 runbook r1", 0)
	if err != nil {
		t.Fatal(err)
	}
	var le *ErrLocked
	if _, err := b.Acquire(ctx, "web-2 runbook r2", 0); !errors.As(err, &le) || le.Holder != "web-1 runbook r1" {
		t.Fatalf("second holder: %v", err)
	}
	if _, err := other.Acquire(ctx, "web-2 runbook r3", 0); err != nil {
		t.Fatalf("another site's lock: %v", err)
	}
	// Acquiring again while held is the same lease.
	if again, err := a.Acquire(ctx, "web-1 runbook r1", 0); err != nil || again != la {
		t.Fatalf("acquire while held: %v, %v", again, err)
	}
	// The lease is renewed while held: after several lease periods the
	// key is still a's and the lease is trusted.
	for range 3 {
		time.Sleep(600 * time.Millisecond)
		if v, _ := rdb.Get(ctx, "ckanops:prod:runbook").Result(); v != "web-1 runbook r1" {
			t.Fatalf("lease lapsed while held: %q", v)
		}
		if err := la.Err(); err != nil {
			t.Fatalf("the lease is not trusted while renewed: %v", err)
		}
	}
	// b's Release must not free a's lock.
	if err := b.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Acquire(ctx, "web-2 runbook r2", 0); err == nil {
		t.Fatal("b took a held lock")
	}
	if err := a.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if err := la.Err(); !errors.Is(err, ErrLeaseLost) {
		t.Fatalf("a released lease is still trusted: %v", err)
	}
	lb, err := b.Acquire(ctx, "web-2 runbook r2", 0)
	if err != nil {
		t.Fatalf("after release: %v", err)
	}
	if lb.Fence <= la.Fence {
		t.Fatalf("fence %d after %d", lb.Fence, la.Fence)
	}
	if f, _ := rdb.Get(ctx, "ckanops:prod:runbook:fence").Int64(); f != lb.Fence {
		t.Fatalf("the fence key holds %d, the lease %d", f, lb.Fence)
	}
	ttl, _ := rdb.PTTL(ctx, "ckanops:prod:runbook").Result()
	if ttl <= 0 || ttl > 600*time.Millisecond {
		t.Fatalf("the lock has no lease: %v", ttl)
	}
	// after: a fence greater than the caller's record, whatever the counter.
	b.Release(ctx)
	if l, err := b.Acquire(ctx, "web-2 runbook r4", lb.Fence+1000); err != nil || l.Fence != lb.Fence+1001 {
		t.Fatalf("acquire after %d: %v, %v", lb.Fence+1000, l, err)
	}
	b.Release(ctx)
	other.Release(ctx)
}

func TestRedisLockUnreachable(t *testing.T) {
	srv := testredis.Start(t)
	rdb := redisClient(t, srv)
	srv.Kill(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := NewRedisLock(rdb, "prod", 0).Acquire(ctx, "web-1", 0)
	if err == nil || !strings.Contains(err.Error(), "lock in Redis") {
		t.Fatalf("acquire with Redis down: %v", err)
	}
}

// A Redis restarted empty has lost the key: the next renewal finds it gone
// and the lease is lost; a new acquisition still gets a greater fence,
// although the counter was lost too.
func TestRedisLockLostWhenRedisForgets(t *testing.T) {
	srv := testredis.Start(t)
	rdb := redisClient(t, srv)
	ctx := context.Background()
	lock := NewRedisLock(rdb, "prod", time.Second)
	l1, err := lock.Acquire(ctx, "web-1 runbook r1", 0)
	if err != nil {
		t.Fatal(err)
	}
	srv.Restart(t)
	err = lostWithin(t, l1, time.Second)
	if !strings.Contains(err.Error(), "is gone from Redis") {
		t.Fatalf("why: %v", err)
	}
	// Another gate takes it, with a greater fence.
	l2, err := NewRedisLock(rdb, "prod", time.Second).Acquire(ctx, "web-2 runbook r2", 0)
	if err != nil {
		t.Fatal(err)
	}
	if l2.Fence <= l1.Fence {
		t.Fatalf("fence %d after %d, across a Redis that lost its data", l2.Fence, l1.Fence)
	}
	// The first lock, asked again, does not take it back.
	var le *ErrLocked
	if _, err := lock.Acquire(ctx, "web-1 runbook r1", l1.Fence); !errors.As(err, &le) || le.Holder != "web-2 runbook r2" {
		t.Fatalf("re-acquire of a lost lock held by another: %v", err)
	}
	// Its Release does not free the other's key.
	if err := lock.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if v, _ := rdb.Get(ctx, "ckanops:prod:runbook").Result(); v != "web-2 runbook r2" {
		t.Fatalf("the key after the loser's release: %q", v)
	}
}

func TestRedisLockLostToAnotherHolder(t *testing.T) {
	srv := testredis.Start(t)
	rdb := redisClient(t, srv)
	ctx := context.Background()
	lock := NewRedisLock(rdb, "prod", time.Second)
	l, err := lock.Acquire(ctx, "web-1 runbook r1", 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := rdb.Set(ctx, "ckanops:prod:runbook", "web-2 runbook r2", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if err := lostWithin(t, l, time.Second); !strings.Contains(err.Error(), `held by "web-2 runbook r2"`) {
		t.Fatalf("why: %v", err)
	}
	if v, _ := rdb.Get(ctx, "ckanops:prod:runbook").Result(); v != "web-2 runbook r2" {
		t.Fatalf("the renewal touched another's key: %q", v)
	}
	if pttl, _ := rdb.PTTL(ctx, "ckanops:prod:runbook").Result(); pttl != -1 {
		t.Fatalf("the renewal extended another's key: %v", pttl)
	}
}

// A Redis that does not answer (paused) for most of the lease: the lease
// is lost before the key can expire there, so before another gate can
// take the lock.
func TestRedisLockLostWhenRedisStalls(t *testing.T) {
	srv := testredis.Start(t)
	rdb := redisClient(t, srv)
	ctx := context.Background()
	const lease = 1500 * time.Millisecond
	lock := NewRedisLock(rdb, "prod", lease)
	l1, err := lock.Acquire(ctx, "web-1 runbook r1", 0)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(lease / 2) // a renewal or two went through
	paused := time.Now()
	cont := pause(t, srv)
	err = lostWithin(t, l1, lease)
	if !strings.Contains(err.Error(), "Redis has not confirmed the runbook lock since") {
		t.Fatalf("why: %v", err)
	}
	if d := time.Since(paused); d >= lease {
		t.Fatalf("lost %s after Redis stopped answering: not before the key could expire (%s)", d, lease)
	}
	cont()
	// Once Redis answers again, another gate can take it, with a greater
	// fence: at once, or, when a renewal sent during the pause reached
	// Redis as it resumed, when that renewal's lease runs out.
	deadline := time.Now().Add(5 * time.Second)
	for {
		l2, err := NewRedisLock(rdb, "prod", lease).Acquire(ctx, "web-2 runbook r2", 0)
		if err == nil {
			if l2.Fence <= l1.Fence {
				t.Fatalf("fence %d after %d", l2.Fence, l1.Fence)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the key did not expire after the pause: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := lock.Release(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestFileLockFence(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	var last int64
	for i := range 3 {
		lock := NewFileLock(dir) // as a restarted gate would: the count is on disk
		l, err := lock.Acquire(ctx, "prod runbook r", 0)
		if err != nil {
			t.Fatal(err)
		}
		if l.Fence != last+1 {
			t.Fatalf("acquisition %d: fence %d after %d", i, l.Fence, last)
		}
		if again, _ := lock.Acquire(ctx, "prod runbook r", 0); again != l {
			t.Fatal("acquire while held is not the same lease")
		}
		if l.Err() != nil {
			t.Fatalf("a held file lease: %v", l.Err())
		}
		last = l.Fence
		if err := lock.Release(ctx); err != nil {
			t.Fatal(err)
		}
		if !errors.Is(l.Err(), ErrLeaseLost) {
			t.Fatal("a released file lease is still trusted")
		}
	}
	lock := NewFileLock(dir)
	if l, err := lock.Acquire(ctx, "x", 10); err != nil || l.Fence != 11 {
		t.Fatalf("acquire after 10: %v, %v", l, err)
	}
	lock.Release(ctx)
	if err := os.WriteFile(filepath.Join(dir, fenceName), []byte("eleven\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	if _, err := lock.Acquire(ctx, "x", 0); err == nil || !strings.Contains(err.Error(), "is damaged") {
		t.Fatalf("a damaged counter: %v", err)
	}
	// A refused acquisition leaves the lock free.
	if err := os.WriteFile(filepath.Join(dir, fenceName), []byte("11\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	if l, err := lock.Acquire(ctx, "x", 0); err != nil || l.Fence != 12 {
		t.Fatalf("after the repair: %v, %v", l, err)
	}
	lock.Release(ctx)
}
