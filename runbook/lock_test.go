package runbook

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/ckanops/ckanops/internal/testredis"
)

func TestRedisLockOneHolderAtATime(t *testing.T) {
	srv := testredis.Start(t)
	opts, err := redis.ParseURL(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(opts)
	defer rdb.Close()
	ctx := context.Background()

	a := NewRedisLock(rdb, "prod", 600*time.Millisecond)
	b := NewRedisLock(rdb, "prod", 600*time.Millisecond)
	other := NewRedisLock(rdb, "staging", 600*time.Millisecond)
	if err := a.Acquire(ctx, "web-1 runbook r1"); err != nil {
		t.Fatal(err)
	}
	var le *ErrLocked
	if err := b.Acquire(ctx, "web-2 runbook r2"); !errors.As(err, &le) || le.Holder != "web-1 runbook r1" {
		t.Fatalf("second holder: %v", err)
	}
	if err := other.Acquire(ctx, "web-2 runbook r3"); err != nil {
		t.Fatalf("another site's lock: %v", err)
	}
	// The lease is renewed while held: after several lease periods the
	// key is still a's.
	for range 3 {
		time.Sleep(600 * time.Millisecond)
		if v, _ := rdb.Get(ctx, "ckanops:prod:runbook").Result(); v != "web-1 runbook r1" {
			t.Fatalf("lease lapsed while held: %q", v)
		}
	}
	// b's Release must not free a's lock.
	if err := b.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if err := b.Acquire(ctx, "web-2 runbook r2"); err == nil {
		t.Fatal("b took a held lock")
	}
	if err := a.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if err := b.Acquire(ctx, "web-2 runbook r2"); err != nil {
		t.Fatalf("after release: %v", err)
	}
	ttl, _ := rdb.PTTL(ctx, "ckanops:prod:runbook").Result()
	if ttl <= 0 || ttl > 600*time.Millisecond {
		t.Fatalf("the lock has no lease: %v", ttl)
	}
	b.Release(ctx)
	other.Release(ctx)
}

func TestRedisLockUnreachable(t *testing.T) {
	srv := testredis.Start(t)
	opts, _ := redis.ParseURL(srv.URL())
	rdb := redis.NewClient(opts)
	defer rdb.Close()
	srv.Kill(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := NewRedisLock(rdb, "prod", 0).Acquire(ctx, "web-1")
	if err == nil || !strings.Contains(err.Error(), "lock in Redis") {
		t.Fatalf("acquire with Redis down: %v", err)
	}
}
