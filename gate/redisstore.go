package gate

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/ckanops/ckanops/api"

	"github.com/redis/go-redis/v9"
)

// SharedStore is a store several gates of one site share. Besides holding
// the record it carries change notices between gates and their heartbeats.
type SharedStore interface {
	Store
	// Watch calls notify for every change notice until ctx is done or the
	// connection fails (then it returns the error; the caller retries).
	// ready is called once the subscription is active.
	Watch(ctx context.Context, ready, notify func()) error
	// Restore writes rec unless the store holds the same or a newer
	// version: after the store lost its data, gates write back what they
	// know, so a maintenance window survives. It reports whether it wrote.
	Restore(ctx context.Context, rec Record) (bool, error)
	// Heartbeat records what this gate has applied.
	Heartbeat(ctx context.Context, g api.GateInfo) error
	// Gates returns every gate's last heartbeat, oldest first.
	Gates(ctx context.Context) ([]api.GateInfo, error)
}

// RedisStore keeps a site's record in Redis: a hash with the version and
// the record, changed only by compare-and-set scripts, and a pub/sub
// channel announcing each change.
type RedisStore struct {
	rdb                        *redis.Client
	site                       string
	keyRecord, keyGates, chMod string
}

// Keys, per site.
func redisKeys(site string) (record, gates, channel string) {
	p := "ckanops:" + site + ":"
	return p + "mode", p + "gates", p + "mode-changed"
}

// OpenRedisStore connects to the Redis at url (redis://...). It does not
// fail when Redis is down: a gate must be able to start on its local state.
func OpenRedisStore(url, site string) (*RedisStore, error) {
	opt, err := redis.ParseURL(url)
	if err != nil {
		return nil, fmt.Errorf("gate: [state] redis_url: %v", err)
	}
	opt.DialTimeout = 2 * time.Second
	opt.ReadTimeout = 2 * time.Second
	opt.WriteTimeout = 2 * time.Second
	opt.MaxRetries = 0 // the gate's own loop retries, with backoff
	s := &RedisStore{rdb: redis.NewClient(opt), site: site}
	s.keyRecord, s.keyGates, s.chMod = redisKeys(site)
	return s, nil
}

func (s *RedisStore) Kind() string { return "redis" }

func (s *RedisStore) Close() error { return s.rdb.Close() }

func (s *RedisStore) Load(ctx context.Context) (Record, bool, error) {
	b, err := s.rdb.HGet(ctx, s.keyRecord, "record").Bytes()
	if errors.Is(err, redis.Nil) {
		return Record{}, false, nil
	}
	if err != nil {
		return Record{}, false, fmt.Errorf("gate: redis: read %s: %w", s.keyRecord, err)
	}
	var rec Record
	if err := json.Unmarshal(b, &rec); err != nil {
		return Record{}, false, fmt.Errorf("gate: redis: %s holds a corrupt record: %v", s.keyRecord, err)
	}
	if err := rec.validate(); err != nil {
		return Record{}, false, fmt.Errorf("gate: redis: %s holds an invalid record: %v", s.keyRecord, err)
	}
	return rec, true, nil
}

// casScript sets the record if the stored version is ARGV[1] (0: absent),
// and announces the change. It returns 1, or 0 on a conflict.
var casScript = redis.NewScript(`
local v = tonumber(redis.call('HGET', KEYS[1], 'version') or '0')
if v ~= tonumber(ARGV[1]) then return 0 end
redis.call('HSET', KEYS[1], 'version', ARGV[2], 'record', ARGV[3])
redis.call('PUBLISH', KEYS[2], ARGV[2])
return 1
`)

// restoreScript sets the record if the stored version is older than
// ARGV[1] (or absent), and announces the change.
var restoreScript = redis.NewScript(`
local v = tonumber(redis.call('HGET', KEYS[1], 'version') or '-1')
if v >= tonumber(ARGV[1]) then return 0 end
redis.call('HSET', KEYS[1], 'version', ARGV[1], 'record', ARGV[2])
redis.call('PUBLISH', KEYS[2], ARGV[1])
return 1
`)

func (s *RedisStore) CompareAndSwap(ctx context.Context, expect int64, next Record) error {
	b, err := json.Marshal(next)
	if err != nil {
		return err
	}
	ok, err := casScript.Run(ctx, s.rdb, []string{s.keyRecord, s.chMod}, expect, next.Version, b).Int()
	if err != nil {
		return fmt.Errorf("gate: redis: compare-and-set %s: %w", s.keyRecord, err)
	}
	if ok == 1 {
		return nil
	}
	cur, _, err := s.Load(ctx)
	if err != nil {
		return err
	}
	return &ConflictError{Current: cur}
}

func (s *RedisStore) Restore(ctx context.Context, rec Record) (bool, error) {
	b, err := json.Marshal(rec)
	if err != nil {
		return false, err
	}
	n, err := restoreScript.Run(ctx, s.rdb, []string{s.keyRecord, s.chMod}, rec.Version, b).Int()
	if err != nil {
		return false, fmt.Errorf("gate: redis: restore %s: %w", s.keyRecord, err)
	}
	return n == 1, nil
}

func (s *RedisStore) Watch(ctx context.Context, ready, notify func()) error {
	sub := s.rdb.Subscribe(ctx, s.chMod)
	defer sub.Close()
	// A blocked Receive does not always notice ctx: closing the
	// subscription ends it.
	stop := context.AfterFunc(ctx, func() { sub.Close() })
	defer stop()
	if _, err := sub.Receive(ctx); err != nil { // the subscription confirmation
		return fmt.Errorf("gate: redis: subscribe %s: %w", s.chMod, err)
	}
	ready()
	for {
		msg, err := sub.Receive(ctx)
		if err != nil {
			return fmt.Errorf("gate: redis: %s: %w", s.chMod, err)
		}
		if _, ok := msg.(*redis.Message); ok {
			notify()
		}
	}
}

// gatesKeep is how long a silent gate stays listed (as gone).
const gatesKeep = time.Hour

func (s *RedisStore) Heartbeat(ctx context.Context, g api.GateInfo) error {
	b, err := json.Marshal(g)
	if err != nil {
		return err
	}
	if err := s.rdb.HSet(ctx, s.keyGates, g.ID, b).Err(); err != nil {
		return fmt.Errorf("gate: redis: heartbeat: %w", err)
	}
	return nil
}

func (s *RedisStore) Gates(ctx context.Context) ([]api.GateInfo, error) {
	all, err := s.rdb.HGetAll(ctx, s.keyGates).Result()
	if err != nil {
		return nil, fmt.Errorf("gate: redis: read %s: %w", s.keyGates, err)
	}
	out := make([]api.GateInfo, 0, len(all))
	var stale []string
	for id, v := range all {
		var g api.GateInfo
		if json.Unmarshal([]byte(v), &g) != nil {
			stale = append(stale, id)
			continue
		}
		if time.Since(g.Seen) > gatesKeep {
			stale = append(stale, id)
			continue
		}
		out = append(out, g)
	}
	if len(stale) > 0 {
		s.rdb.HDel(ctx, s.keyGates, stale...) // best effort
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}
