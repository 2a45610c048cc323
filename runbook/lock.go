package runbook

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
)

// Lock makes a runbook the only one of its site. Acquire fails with an
// *ErrLocked naming the holder when another runbook holds it.
type Lock interface {
	Acquire(ctx context.Context, holder string) error
	Release(ctx context.Context) error
}

// ErrLocked says who holds the site's runbook lock.
type ErrLocked struct{ Holder string }

func (e *ErrLocked) Error() string {
	if e.Holder == "" {
		return "another runbook holds this site"
	}
	return "another runbook holds this site: " + e.Holder
}

// FileLock is the lock of a lone gate: an flock on a file in the journal
// directory, so that two gate processes sharing the directory cannot both
// run a runbook.
type FileLock struct {
	Path string

	mu sync.Mutex
	f  *os.File
}

// NewFileLock returns the lock file of a journal directory.
func NewFileLock(dir string) *FileLock { return &FileLock{Path: filepath.Join(dir, lockName)} }

func (l *FileLock) Acquire(_ context.Context, holder string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f != nil {
		return nil // this process holds it already (an interrupted runbook resumed)
	}
	if err := os.MkdirAll(filepath.Dir(l.Path), 0o750); err != nil {
		return fmt.Errorf("runbook: lock: %w", err)
	}
	f, err := os.OpenFile(l.Path, os.O_CREATE|os.O_RDWR, 0o640)
	if err != nil {
		return fmt.Errorf("runbook: lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		b := make([]byte, 512)
		n, _ := f.ReadAt(b, 0)
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return &ErrLocked{Holder: string(b[:n])}
		}
		return fmt.Errorf("runbook: lock %s: %w", l.Path, err)
	}
	_ = f.Truncate(0)
	_, _ = f.WriteAt([]byte(holder), 0)
	l.f = f
	return nil
}

func (l *FileLock) Release(context.Context) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return nil
	}
	_ = l.f.Truncate(0)
	err := l.f.Close() // closing drops the flock
	l.f = nil
	return err
}

// RedisLock is the lock of several gates sharing a Redis store: the key
// ckanops:<site>:runbook holds the holder's name with a lease, renewed
// while the runbook is active. A gate that dies lets the lease lapse.
type RedisLock struct {
	rdb   *redis.Client
	key   string
	lease time.Duration

	mu     sync.Mutex
	holder string
	stop   context.CancelFunc
	done   chan struct{}
}

// NewRedisLock returns the runbook lock of site in rdb.
func NewRedisLock(rdb *redis.Client, site string, lease time.Duration) *RedisLock {
	if lease <= 0 {
		lease = 30 * time.Second
	}
	return &RedisLock{rdb: rdb, key: "ckanops:" + site + ":runbook", lease: lease}
}

// renew extends the lease only if we still hold it; release deletes only
// our own key.
var (
	renewScript   = redis.NewScript(`if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end return 0`)
	releaseScript = redis.NewScript(`if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0`)
)

func (l *RedisLock) Acquire(ctx context.Context, holder string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.stop != nil {
		return nil
	}
	ok, err := l.rdb.SetNX(ctx, l.key, holder, l.lease).Result()
	if err != nil {
		return fmt.Errorf("runbook: lock in Redis: %w", err)
	}
	if !ok {
		cur, _ := l.rdb.Get(ctx, l.key).Result()
		if cur != holder {
			return &ErrLocked{Holder: cur}
		}
	}
	l.holder = holder
	rctx, cancel := context.WithCancel(context.Background())
	l.stop, l.done = cancel, make(chan struct{})
	go l.renew(rctx, holder, l.done)
	return nil
}

func (l *RedisLock) renew(ctx context.Context, holder string, done chan struct{}) {
	defer close(done)
	t := time.NewTicker(l.lease / 3)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			c, cancel := context.WithTimeout(ctx, l.lease/3)
			_ = renewScript.Run(c, l.rdb, []string{l.key}, holder, l.lease.Milliseconds()).Err()
			cancel()
		}
	}
}

func (l *RedisLock) Release(ctx context.Context) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.stop == nil {
		return nil
	}
	l.stop()
	<-l.done
	l.stop = nil
	err := releaseScript.Run(ctx, l.rdb, []string{l.key}, l.holder).Err()
	if err != nil {
		return fmt.Errorf("runbook: release lock in Redis: %w", err)
	}
	return nil
}
