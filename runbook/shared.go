package runbook

// A site's gates that share a Redis store share its runbook: the record,
// the events and the lock live in Redis, so that every gate answers every
// runbook call and streams every event, whichever of them runs the steps.
//
//	ckanops:<site>:runbook:record   the current (or last) runbook (JSON), as of its last state event
//	ckanops:<site>:runbook:events   the events, a stream capped near maxEvents; entry id <seq>-0, field e: the event (JSON)
//	ckanops:<site>:runbook:actions  operator actions for the gate holding the lock (a list of JSON messages)
//	ckanops:<site>:runbook:reply:<id>  the answer to one action (a list, 60 s TTL)
//
// The gate holding the lock (lock.go) is the only writer: its writer
// (writer.go) appends its events and saves the record in one script that
// first checks the site's fence is still the holder's, so a gate whose
// lease was lost cannot overwrite what a later holder wrote. Every other
// gate mirrors the stream into its engine (follow), and sends operator
// actions to the holder through the actions list (forward); when no gate
// holds the lock (its holder died), the gate asked takes the runbook over:
// it takes the lock, marks a running step interrupted, and acts itself.

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/ckanops/ckanops/api"
)

// Shared is a site's runbook in Redis. Create it with NewShared; it is
// safe for concurrent use.
type Shared struct {
	rdb        *redis.Client
	lockKey    string
	fenceKey   string
	recordKey  string
	eventsKey  string
	actionsKey string
	replyKey   string // + the action's id
}

// NewShared returns the runbook of site in rdb.
func NewShared(rdb *redis.Client, site string) *Shared {
	k := "ckanops:" + site + ":runbook"
	return &Shared{rdb: rdb, lockKey: k, fenceKey: k + ":fence", recordKey: k + ":record",
		eventsKey: k + ":events", actionsKey: k + ":actions", replyKey: k + ":reply:"}
}

// errFenced is a publish refused because another acquisition of the lock
// came after the writer's.
var errFenced = errors.New("fenced: another gate took the site's runbook lock since")

// sharedEvent is one event to publish.
type sharedEvent struct {
	seq  int64
	line []byte // its JSON (a trailing newline is dropped)
}

// publishScript appends events to the stream (KEYS[3]) and saves the
// record (KEYS[2]) if the fence (KEYS[1]) is still ARGV[1]. ARGV[2] is
// the record ("" for none), ARGV[3] the stream's cap, then pairs of seq
// and event. Events at or below the stream's last seq are skipped, so a
// batch sent again (after a timeout that hid its success) is not doubled.
var publishScript = redis.NewScript(`
local f = redis.call('GET', KEYS[1])
if f ~= ARGV[1] then return redis.error_reply('FENCED ' .. tostring(f)) end
local last = 0
local top = redis.call('XREVRANGE', KEYS[3], '+', '-', 'COUNT', 1)
if #top > 0 then last = tonumber(string.match(top[1][1], '^(%d+)')) end
for i = 4, #ARGV, 2 do
  if tonumber(ARGV[i]) > last then
    redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[3], ARGV[i] .. '-0', 'e', ARGV[i+1])
  end
end
if ARGV[2] ~= '' then redis.call('SET', KEYS[2], ARGV[2]) end
return 1`)

// publish appends evs and saves record (nil: keep it) under fence.
func (s *Shared) publish(ctx context.Context, fence int64, evs []sharedEvent, record []byte) error {
	args := make([]any, 0, 3+2*len(evs))
	args = append(args, strconv.FormatInt(fence, 10), string(record), maxEvents)
	for _, ev := range evs {
		args = append(args, ev.seq, strings.TrimSuffix(string(ev.line), "\n"))
	}
	err := publishScript.Run(ctx, s.rdb, []string{s.fenceKey, s.recordKey, s.eventsKey}, args...).Err()
	if err != nil && strings.HasPrefix(err.Error(), "FENCED") {
		return fmt.Errorf("%w (the site's fence is %s, this gate's %d)", errFenced, strings.TrimSpace(strings.TrimPrefix(err.Error(), "FENCED")), fence)
	}
	return err
}

// record reads the runbook record (nil if there is none) and the stream's
// last seq.
func (s *Shared) record(ctx context.Context) (*api.Runbook, int64, error) {
	pipe := s.rdb.Pipeline()
	get := pipe.Get(ctx, s.recordKey)
	top := pipe.XRevRangeN(ctx, s.eventsKey, "+", "-", 1)
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, 0, err
	}
	var last int64
	if msgs, err := top.Result(); err == nil && len(msgs) > 0 {
		last = streamSeq(msgs[0].ID)
	}
	b, err := get.Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, last, nil
	}
	if err != nil {
		return nil, last, err
	}
	var rb api.Runbook
	if err := json.Unmarshal(b, &rb); err != nil {
		return nil, last, fmt.Errorf("the runbook record in Redis (%s) is damaged: %w", s.recordKey, err)
	}
	return &rb, last, nil
}

// events reads the stream's events of runbook id, in order.
func (s *Shared) events(ctx context.Context, id string) ([]api.RunbookEvent, error) {
	msgs, err := s.rdb.XRange(ctx, s.eventsKey, "-", "+").Result()
	if err != nil {
		return nil, err
	}
	var evs []api.RunbookEvent
	for _, ev := range decodeStream(msgs) {
		if ev.Runbook == id {
			evs = append(evs, ev)
		}
	}
	return evs, nil
}

// read waits up to block for events after seq.
func (s *Shared) read(ctx context.Context, after int64, block time.Duration) ([]api.RunbookEvent, error) {
	res, err := s.rdb.XRead(ctx, &redis.XReadArgs{Streams: []string{s.eventsKey, strconv.FormatInt(after, 10) + "-0"},
		Count: 1000, Block: block}).Result()
	if errors.Is(err, redis.Nil) {
		return nil, nil // nothing within block
	}
	if err != nil || len(res) == 0 {
		return nil, err
	}
	return decodeStream(res[0].Messages), nil
}

func decodeStream(msgs []redis.XMessage) []api.RunbookEvent {
	evs := make([]api.RunbookEvent, 0, len(msgs))
	for _, m := range msgs {
		raw, _ := m.Values["e"].(string)
		var ev api.RunbookEvent
		if json.Unmarshal([]byte(raw), &ev) != nil {
			continue
		}
		ev.Seq = streamSeq(m.ID)
		evs = append(evs, ev)
	}
	return evs
}

// streamSeq is the seq of a stream entry id "<seq>-0".
func streamSeq(id string) int64 {
	ms, _, _ := strings.Cut(id, "-")
	n, _ := strconv.ParseInt(ms, 10, 64)
	return n
}

// holder is the lock's holder, "" when nobody holds it.
func (s *Shared) holder(ctx context.Context) (string, error) {
	h, err := s.rdb.Get(ctx, s.lockKey).Result()
	if errors.Is(err, redis.Nil) {
		return "", nil
	}
	return h, err
}

// action is an operator's action sent to the gate holding the lock.
type action struct {
	ID       string            `json:"id"`
	Op       string            `json:"op"` // confirm, retry, resume, skip, abort, gate-stopped
	Action   api.RunbookAction `json:"action"`
	Actor    string            `json:"actor"`
	Deadline time.Time         `json:"deadline"` // the sender stops waiting then: later, it is dropped
}

// reply is the holder's answer to an action.
type reply struct {
	Status  int          `json:"status"` // 200, or the HTTP status of the error
	Error   string       `json:"error,omitempty"`
	Runbook *api.Runbook `json:"runbook,omitempty"`
}

// replyTTL keeps an answer nobody waits for any more from staying.
const replyTTL = time.Minute

// push queues an action for the holder; it returns the message, by which
// retract finds it.
func (s *Shared) push(ctx context.Context, a *action) ([]byte, error) {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	a.ID = hex.EncodeToString(b)
	msg, err := json.Marshal(a)
	if err != nil {
		return nil, err
	}
	return msg, s.rdb.RPush(ctx, s.actionsKey, msg).Err()
}

// awaitReply waits up to wait for the answer to action id; ok is false
// when none came.
func (s *Shared) awaitReply(ctx context.Context, id string, wait time.Duration) (r reply, ok bool, err error) {
	res, err := s.rdb.BLPop(ctx, wait, s.replyKey+id).Result()
	if errors.Is(err, redis.Nil) {
		return reply{}, false, nil
	}
	if err != nil {
		return reply{}, false, err
	}
	if err := json.Unmarshal([]byte(res[1]), &r); err != nil {
		return reply{}, false, fmt.Errorf("a damaged answer from the gate holding the runbook: %w", err)
	}
	return r, true, nil
}

// retract takes back an action no gate has taken yet; false when one has.
func (s *Shared) retract(ctx context.Context, msg []byte) (bool, error) {
	n, err := s.rdb.LRem(ctx, s.actionsKey, 1, msg).Result()
	return n == 1, err
}

// receive waits up to block for the next action.
func (s *Shared) receive(ctx context.Context, block time.Duration) (*action, error) {
	res, err := s.rdb.BLPop(ctx, block, s.actionsKey).Result()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var a action
	if err := json.Unmarshal([]byte(res[1]), &a); err != nil || a.ID == "" {
		return nil, nil // not ours to answer: dropped
	}
	return &a, nil
}

// answer sends the reply to action id.
func (s *Shared) answer(ctx context.Context, id string, r reply) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	pipe := s.rdb.TxPipeline()
	pipe.RPush(ctx, s.replyKey+id, b)
	pipe.Expire(ctx, s.replyKey+id, replyTTL)
	_, err = pipe.Exec(ctx)
	return err
}
