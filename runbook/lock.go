package runbook

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/ckanops/ckanops/internal/atomicfile"
)

// Lock makes a runbook the only one of its site. Acquire fails with an
// *ErrLocked naming the holder when another runbook holds it.
//
// Every acquisition returns a Lease whose fencing number (Fence) is
// greater than every fence the lock handed out before, and greater than
// after, the highest fence the caller has recorded. While this Lock holds
// the site with a lease still trusted, Acquire returns that lease again.
// Once the lease is lost, Acquire takes the lock afresh, with a new fence.
type Lock interface {
	Acquire(ctx context.Context, holder string, after int64) (*Lease, error)
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

// ErrLeaseLost is what a lost lease's Err wraps: the lock may be someone
// else's now, so the holder must not change the site any more.
var ErrLeaseLost = errors.New("lease lost")

// errReleased is a released lease's Err.
var errReleased = fmt.Errorf("%w: the runbook lock was released", ErrLeaseLost)

// Lease is one acquisition of a Lock: its fencing number, and whether the
// holder may still act on it. A lease once lost stays lost.
type Lease struct {
	// Fence increases with every acquisition of the site's lock, by any
	// gate: what a holder did can be told from what a later one did.
	Fence int64

	lost chan struct{} // closed when lost

	mu      sync.Mutex
	until   time.Time   // trusted until then; zero: until released (a FileLock)
	timer   *time.Timer // loses the lease at until
	lastErr error       // the last failed renewal, for the message
	err     error       // why it was lost; nil while held
}

func newLease(fence int64, until time.Time) *Lease {
	l := &Lease{Fence: fence, lost: make(chan struct{}), until: until}
	if !until.IsZero() {
		l.mu.Lock() // the timer may fire at once
		l.timer = time.AfterFunc(time.Until(until), l.expire)
		l.mu.Unlock()
	}
	return l
}

// Err is nil while the lease is held and trusted, and otherwise says why
// not ("lease lost: ...", wrapping ErrLeaseLost).
func (l *Lease) Err() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.expireLocked() // the timer may not have run yet
	return l.err
}

// Lost is closed when the lease is lost (or released).
func (l *Lease) Lost() <-chan struct{} { return l.lost }

func (l *Lease) expire() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.expireLocked()
}

func (l *Lease) expireLocked() {
	if l.err != nil || l.until.IsZero() || time.Now().Before(l.until) {
		return
	}
	why := "no renewal answered"
	if l.lastErr != nil {
		why = "the last renewal failed: " + l.lastErr.Error()
	}
	l.loseLocked(fmt.Errorf("%w: Redis has not confirmed the runbook lock since %s (%s)",
		ErrLeaseLost, l.until.Format("15:04:05.000"), why))
}

// extend trusts the lease until then, unless it is lost already.
func (l *Lease) extend(until time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.err != nil || !until.After(l.until) {
		return
	}
	l.until = until
	l.lastErr = nil
	l.timer.Reset(time.Until(until))
}

func (l *Lease) failed(err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lastErr = err
}

func (l *Lease) lose(err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.loseLocked(err)
}

func (l *Lease) loseLocked(err error) {
	if l.err != nil {
		return
	}
	l.err = err
	if l.timer != nil {
		l.timer.Stop()
	}
	close(l.lost)
}

// FileLock is the lock of a lone gate: an flock on a file in the journal
// directory, so that two gate processes sharing the directory cannot both
// run a runbook. Its fencing numbers are counted in a file beside it
// (runbook.fence); its lease is lost only when released.
type FileLock struct {
	Path string

	mu    sync.Mutex
	f     *os.File
	lease *Lease
}

// fenceName is the FileLock's fence counter, beside its lock file.
const fenceName = "runbook.fence"

// NewFileLock returns the lock file of a journal directory.
func NewFileLock(dir string) *FileLock { return &FileLock{Path: filepath.Join(dir, lockName)} }

func (l *FileLock) Acquire(_ context.Context, holder string, after int64) (*Lease, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f != nil {
		return l.lease, nil // this process holds it already (an interrupted runbook resumed)
	}
	if err := os.MkdirAll(filepath.Dir(l.Path), 0o750); err != nil {
		return nil, fmt.Errorf("runbook: lock: %w", err)
	}
	f, err := os.OpenFile(l.Path, os.O_CREATE|os.O_RDWR, 0o640)
	if err != nil {
		return nil, fmt.Errorf("runbook: lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		b := make([]byte, 512)
		n, _ := f.ReadAt(b, 0)
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, &ErrLocked{Holder: string(b[:n])}
		}
		return nil, fmt.Errorf("runbook: lock %s: %w", l.Path, err)
	}
	fence, err := l.nextFence(after)
	if err != nil {
		f.Close() // drops the flock
		return nil, err
	}
	_ = f.Truncate(0)
	_, _ = f.WriteAt([]byte(holder), 0)
	l.f = f
	l.lease = newLease(fence, time.Time{})
	return l.lease, nil
}

// nextFence counts one more acquisition in the fence file, durably,
// above after. Call with the flock held.
func (l *FileLock) nextFence(after int64) (int64, error) {
	path := filepath.Join(filepath.Dir(l.Path), fenceName)
	var n int64
	b, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return 0, fmt.Errorf("runbook: read the fence counter: %w", err)
	default:
		n, err = strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
		if err != nil || n < 0 {
			return 0, fmt.Errorf("runbook: the fence counter %s is damaged (%q): write into it the highest \"fence\" of %s",
				path, b, filepath.Join(filepath.Dir(l.Path), journalName))
		}
	}
	n = max(n, after) + 1
	if err := atomicfile.Write(path, []byte(strconv.FormatInt(n, 10)+"\n"), 0o640); err != nil {
		return 0, fmt.Errorf("runbook: write the fence counter: %w", err)
	}
	return n, nil
}

func (l *FileLock) Release(context.Context) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return nil
	}
	l.lease.lose(errReleased)
	l.lease = nil
	_ = l.f.Truncate(0)
	err := l.f.Close() // closing drops the flock
	l.f = nil
	return err
}

// RedisLock is the lock of several gates sharing a Redis store: the key
// ckanops:<site>:runbook holds the holder's name with a lease (the key's
// TTL), extended every lease/3 only while the key is still the holder's.
// A gate that dies lets the lease lapse.
//
// The lease is lost, and Lost closed, when a renewal finds the key gone
// (Redis restarted without persistence, or evicted it) or someone else's,
// or when no renewal has been confirmed for 4/5 of the lease: before the
// key can have expired in Redis, so that the holder stops before another
// gate can take the lock.
//
// Every acquisition increments ckanops:<site>:runbook:fence (INCR, no
// TTL). When that key is missing (Redis lost its data), it starts again
// from the time in milliseconds, so fences still increase across the loss
// (as long as the clocks of the gates do not go back).
type RedisLock struct {
	rdb      *redis.Client
	key      string
	fenceKey string
	lease    time.Duration // the key's TTL
	renew    time.Duration // how often the lease is extended
	trust    time.Duration // how long after a renewal was sent the lease is trusted

	mu     sync.Mutex
	holder string
	cur    *Lease
	stop   context.CancelFunc
	done   chan struct{}
}

// NewRedisLock returns the runbook lock of site in rdb, with a lease of
// lease (default 30s).
func NewRedisLock(rdb *redis.Client, site string, lease time.Duration) *RedisLock {
	if lease <= 0 {
		lease = 30 * time.Second
	}
	key := "ckanops:" + site + ":runbook"
	return &RedisLock{rdb: rdb, key: key, fenceKey: key + ":fence",
		lease: lease, renew: lease / 3, trust: lease * 4 / 5}
}

var (
	// acquireScript takes the lock (KEYS[1]) for ARGV[1] with a TTL of
	// ARGV[2] ms unless someone else holds it, and counts the fence
	// (KEYS[2]) up from at least ARGV[3] (ARGV[4] when the counter is
	// missing). It answers {fence, holder}; fence 0: someone else holds it.
	acquireScript = redis.NewScript(`
local cur = redis.call('GET', KEYS[1])
if cur and cur ~= ARGV[1] then return {0, cur} end
local f = redis.call('GET', KEYS[2])
local floor = ARGV[3]
if not f then floor = ARGV[4] end
if not f or tonumber(f) < tonumber(floor) then redis.call('SET', KEYS[2], floor) end
local n = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return {n, ARGV[1]}`)
	// renewScript extends the lease only if the key is still ours: 1;
	// 0 when the key is gone; otherwise its holder.
	renewScript = redis.NewScript(`
local cur = redis.call('GET', KEYS[1])
if cur == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) return 1 end
if not cur then return 0 end
return cur`)
	// releaseScript deletes only our own key.
	releaseScript = redis.NewScript(`if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0`)
)

func (l *RedisLock) Acquire(ctx context.Context, holder string, after int64) (*Lease, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.cur != nil {
		if l.cur.Err() == nil {
			return l.cur, nil
		}
		l.stopLocked() // lost: take it afresh
	}
	sent := time.Now()
	res, err := acquireScript.Run(ctx, l.rdb, []string{l.key, l.fenceKey},
		holder, l.lease.Milliseconds(), after, max(after, sent.UnixMilli())).Slice()
	if err != nil {
		return nil, fmt.Errorf("runbook: lock in Redis: %w", err)
	}
	fence, _ := res[0].(int64)
	if fence == 0 {
		cur, _ := res[1].(string)
		return nil, &ErrLocked{Holder: cur}
	}
	l.holder = holder
	l.cur = newLease(fence, sent.Add(l.trust))
	rctx, cancel := context.WithCancel(context.Background())
	l.stop, l.done = cancel, make(chan struct{})
	go l.keep(rctx, l.cur, holder, l.done)
	return l.cur, nil
}

// keep renews the lease every l.renew until ctx ends or the lease is lost.
func (l *RedisLock) keep(ctx context.Context, lease *Lease, holder string, done chan struct{}) {
	defer close(done)
	t := time.NewTicker(l.renew)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-lease.Lost():
			return
		case <-t.C:
		}
		sent := time.Now()
		c, cancel := context.WithTimeout(ctx, l.renew)
		res, err := renewScript.Run(c, l.rdb, []string{l.key}, holder, l.lease.Milliseconds()).Result()
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			lease.failed(err) // the lease's timer loses it if this goes on
			continue
		}
		switch v := res.(type) {
		case int64:
			if v == 1 {
				lease.extend(sent.Add(l.trust))
				continue
			}
			lease.lose(fmt.Errorf("%w: the runbook lock %s is gone from Redis (restarted without persistence, or the key was evicted)", ErrLeaseLost, l.key))
			return
		case string:
			lease.lose(fmt.Errorf("%w: the runbook lock %s is held by %q now", ErrLeaseLost, l.key, v))
			return
		}
	}
}

// stopLocked stops renewing and forgets the lease, which is released.
// Call with mu held.
func (l *RedisLock) stopLocked() {
	l.stop()
	<-l.done
	l.cur.lose(errReleased)
	l.cur, l.stop, l.done = nil, nil, nil
}

func (l *RedisLock) Release(ctx context.Context) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.cur == nil {
		return nil
	}
	l.stopLocked()
	if err := releaseScript.Run(ctx, l.rdb, []string{l.key}, l.holder).Err(); err != nil {
		return fmt.Errorf("runbook: release lock in Redis: %w", err)
	}
	return nil
}
