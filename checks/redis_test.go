package checks

import (
	"context"
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ckanops/ckanops/api"

	"github.com/redis/go-redis/v9"

	"github.com/ckanops/ckanops/config"
	"github.com/ckanops/ckanops/internal/testredis"
)

func redisClient(t testing.TB, url string) *redis.Client {
	t.Helper()
	opt, err := redis.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	c := redis.NewClient(opt)
	t.Cleanup(func() { c.Close() })
	return c
}

// layOutRQ writes keys exactly as CKAN (ckan/lib/jobs.py) and RQ do for
// site siteID: waiting jobs on the queue list, started jobs in the started
// registry scored by lease expiry, registered workers.
type rqLayout struct {
	queued          int
	running, noTTL  int // leases in the future; leases of jobs without timeout (+inf)
	stale           int // leases in the past
	workers         int // registered on this queue
	otherWorkerKeys int // registered on other queues only
}

func layOutRQ(t *testing.T, rdb *redis.Client, siteID, queue string, l rqLayout) {
	t.Helper()
	ctx := context.Background()
	name := RQQueueName(siteID, queue)
	now := float64(time.Now().Unix())
	for i := range l.queued {
		id := fmt.Sprintf("%s-%s-q%d", siteID, queue, i)
		rdb.HSet(ctx, "rq:job:"+id, "status", "queued", "origin", name, "description", "ckan.lib.jobs.test_job")
		rdb.RPush(ctx, "rq:queue:"+name, id)
	}
	rdb.SAdd(ctx, "rq:queues", "rq:queue:"+name)
	for i := range l.running {
		rdb.ZAdd(ctx, "rq:wip:"+name, redis.Z{Score: now + 180, Member: fmt.Sprintf("%s-r%d", name, i)})
	}
	for i := range l.noTTL {
		rdb.ZAdd(ctx, "rq:wip:"+name, redis.Z{Score: float64(inf()), Member: fmt.Sprintf("%s-n%d", name, i)})
	}
	for i := range l.stale {
		rdb.ZAdd(ctx, "rq:wip:"+name, redis.Z{Score: now - 600, Member: fmt.Sprintf("%s-s%d", name, i)})
	}
	for i := range l.workers {
		key := fmt.Sprintf("rq:worker:%s-%s-w%d", siteID, queue, i)
		rdb.HSet(ctx, key, "queues", name, "state", "idle")
		rdb.SAdd(ctx, "rq:workers", key)
		rdb.SAdd(ctx, "rq:workers:"+name, key)
	}
	for i := range l.otherWorkerKeys {
		rdb.SAdd(ctx, "rq:workers", fmt.Sprintf("rq:worker:elsewhere-%d", i))
	}
}

func inf() float64 { f, _ := strconv.ParseFloat("+inf", 64); return f }

type rqQueueWant struct {
	queued, running, stale, workers int64
}

func TestRedisRQCounts(t *testing.T) {
	srv := testredis.Start(t)
	rdb := redisClient(t, srv.URL())
	layOutRQ(t, rdb, "default", "default", rqLayout{queued: 3, running: 1, noTTL: 1, workers: 2, otherWorkerKeys: 1})
	layOutRQ(t, rdb, "default", "harvest", rqLayout{queued: 0, running: 1, workers: 1})
	layOutRQ(t, rdb, "ckan210", "default", rqLayout{queued: 7, running: 4, workers: 1}) // another site on the same Redis

	p := NewRedis(config.SecretURL(srv.URL()), "default", []string{"default", "harvest"})
	res := runProbe(t, p, 5*time.Second)
	if res.Status != api.CheckOK {
		t.Fatalf("%s: %s", res.Status, res.Summary)
	}
	d := res.RQ
	queues := d.Queues
	want := map[string]rqQueueWant{
		"ckan:default:default": {queued: 3, running: 2, stale: 0, workers: 2},
		"ckan:default:harvest": {queued: 0, running: 1, stale: 0, workers: 1},
	}
	if len(queues) != len(want) {
		t.Fatalf("queues %+v", queues)
	}
	for _, q := range queues {
		w, ok := want[q.Queue]
		if !ok || (rqQueueWant{q.Queued, q.Running, q.Stale, q.Workers}) != w {
			t.Errorf("queue %+v, want %+v", q, w)
		}
	}
	for _, c := range []struct {
		key  string
		got  *int64
		want int64
	}{{"queued", d.Queued, 3}, {"running", d.Running, 3}, {"stale_started", d.StaleStarted, 0}, {"workers", d.Workers, 5}} {
		if got := known(t, c.key, c.got); got != c.want {
			t.Errorf("%s = %d, want %d", c.key, got, c.want)
		}
	}
	if known(t, "suspended", d.Suspended) || d.SuspendedForSeconds != nil {
		t.Errorf("suspended %v for %v", *d.Suspended, d.SuspendedForSeconds)
	}
	if known(t, "used_memory_bytes", d.UsedMemoryBytes) <= 0 || known(t, "latency_ms", d.LatencyMS) <= 0 {
		t.Errorf("used_memory_bytes %v latency_ms %v", *d.UsedMemoryBytes, *d.LatencyMS)
	}
	if !strings.HasPrefix(res.Summary, "3 queued, 3 running, 5 worker(s), ping ") {
		t.Errorf("summary %q", res.Summary)
	}
	if p.Commands() > 20 {
		t.Errorf("%d commands", p.Commands())
	}
}

// What needs an operator: suspended workers, jobs nobody will run, leases
// of dead workers.
func TestRedisRQWarnings(t *testing.T) {
	srv := testredis.Start(t)
	rdb := redisClient(t, srv.URL())
	ctx := context.Background()
	layOutRQ(t, rdb, "prod", "default", rqLayout{queued: 2, running: 1, stale: 1, workers: 0})
	rdb.Set(ctx, RQSuspendedKey, 1, 0)

	res := runProbe(t, NewRedis(config.SecretURL(srv.URL()), "prod", nil), 5*time.Second)
	if res.Status != api.CheckWarn {
		t.Fatalf("%s: %s", res.Status, res.Summary)
	}
	for _, want := range []string{
		"RQ workers are suspended (rq:suspended until resumed)",
		"2 job(s) wait on ckan:prod:default and no worker listens on it",
		"1 started job(s) of ckan:prod:default are past their lease",
		"2 queued, 1 running, 0 worker(s)",
	} {
		if !strings.Contains(res.Summary, want) {
			t.Errorf("summary %q lacks %q", res.Summary, want)
		}
	}
	if w := wireDetails(t, res); w["suspended"] != true || w["stale_started"] != 1.0 {
		t.Errorf("details %v", w)
	}
}

// SuspendRQ and ResumeRQ do what `rq suspend` and `rq resume` do.
func TestSuspendResumeRQ(t *testing.T) {
	srv := testredis.Start(t)
	rdb := redisClient(t, srv.URL())
	ctx := context.Background()
	url := config.SecretURL(srv.URL())

	was, err := SuspendRQ(ctx, url, 0)
	if err != nil || was {
		t.Fatalf("suspend: was %v, %v", was, err)
	}
	if v, _ := rdb.Get(ctx, RQSuspendedKey).Result(); v != "1" {
		t.Errorf("rq:suspended = %q, want \"1\"", v)
	}
	if ttl := rdb.TTL(ctx, RQSuspendedKey).Val(); ttl != -1 {
		t.Errorf("TTL %v, want none", ttl)
	}
	if was, err = SuspendRQ(ctx, url, 90*time.Minute); err != nil || !was {
		t.Fatalf("suspend again: was %v, %v", was, err)
	}
	if ttl := rdb.TTL(ctx, RQSuspendedKey).Val(); ttl < 89*time.Minute || ttl > 90*time.Minute {
		t.Errorf("TTL %v, want 90m", ttl)
	}
	res := runProbe(t, NewRedis(url, "default", nil), 5*time.Second)
	if !strings.Contains(res.Summary, "rq:suspended for another 1h") || known(t, "suspended_for_seconds", res.RQ.SuspendedForSeconds) < 89*60 {
		t.Errorf("probe: %s %+v", res.Summary, res.RQ)
	}
	if was, err = ResumeRQ(ctx, url); err != nil || !was {
		t.Fatalf("resume: was %v, %v", was, err)
	}
	if n := rdb.Exists(ctx, RQSuspendedKey).Val(); n != 0 {
		t.Error("rq:suspended is still there")
	}
	if was, err = ResumeRQ(ctx, url); err != nil || was {
		t.Fatalf("resume again: was %v, %v", was, err)
	}
	if _, err := SuspendRQ(ctx, "", 0); err == nil || !strings.Contains(err.Error(), "set redis") {
		t.Errorf("not configured: %v", err)
	}
}

func TestRedisFaults(t *testing.T) {
	srv := testredis.Start(t)
	rdb := redisClient(t, srv.URL())
	ctx := context.Background()
	addr := srv.Addr()

	if err := rdb.ConfigSet(ctx, "requirepass", "Rq-pass-2468").Err(); err != nil {
		t.Fatal(err)
	}
	cases := []struct{ name, url, want string }{
		{"no password", "redis://" + addr + "/0", "wants a password: put it in checks.redis"},
		{"wrong password", "redis://:Wr0ng-rq-pw@" + addr + "/0", "refused the password (or user) in checks.redis"},
		{"not a Redis URL", "redis://:Wr0ng-rq-pw@" + addr + "/notadb", "checks.redis is not a Redis URL the probe can use"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			res := runProbe(t, NewRedis(config.SecretURL(c.url), "default", nil), time.Second)
			if res.Status != api.CheckFail || !strings.Contains(res.Summary, c.want) {
				t.Errorf("%s: %s\nwant %q", res.Status, res.Summary, c.want)
			}
			if strings.Contains(res.Summary, "Wr0ng-rq-pw") || strings.Contains(res.Summary, "Rq-pass-2468") {
				t.Errorf("the summary shows a password: %s", res.Summary)
			}
			if d := res.RQ; d != nil && (d.Running != nil || d.Suspended != nil || d.Queued != nil) {
				t.Errorf("counts of a Redis the probe could not read: %+v", d)
			}
		})
	}
	res := runProbe(t, NewRedis(config.SecretURL("redis://:Rq-pass-2468@"+addr+"/0"), "default", nil), time.Second)
	if res.Status != api.CheckOK {
		t.Errorf("right password: %s: %s", res.Status, res.Summary)
	}

	srv.Kill(t)
	before := runtime.NumGoroutine()
	res = runProbe(t, NewRedis(config.SecretURL("redis://:Rq-pass-2468@"+addr+"/0"), "default", nil), time.Second)
	if res.Status != api.CheckFail || res.Summary != "cannot reach Redis at "+addr+" (db 0): connection refused (is it running, on that host and port?)" {
		t.Errorf("Redis down: %s: %s", res.Status, res.Summary)
	}
	if _, err := SuspendRQ(ctx, config.SecretURL("redis://"+addr+"/0"), 0); err == nil || !strings.Contains(err.Error(), "connection refused") {
		t.Errorf("suspend with Redis down: %v", err)
	}
	// Nothing is left redialling the dead Redis.
	waitFor(t, "the probes' goroutines to end", func() bool { return runtime.NumGoroutine() <= before })
}

// CKAN's Redis user may be refused INFO (an ACL): the memory is then
// unknown, and the jobs are still counted.
func TestRedisWithoutINFO(t *testing.T) {
	srv := testredis.Start(t)
	rdb := redisClient(t, srv.URL())
	ctx := context.Background()
	if err := rdb.Do(ctx, "ACL", "SETUSER", "ckan", "on", ">Ckan-rq-pw", "~*", "&*", "+@all", "-info").Err(); err != nil {
		t.Fatal(err)
	}
	layOutRQ(t, rdb, "default", "default", rqLayout{queued: 2, workers: 1})
	res := runProbe(t, NewRedis(config.SecretURL("redis://ckan:Ckan-rq-pw@"+srv.Addr()+"/0"), "default", nil), 5*time.Second)
	if res.Status != api.CheckOK || known(t, "queued", res.RQ.Queued) != 2 {
		t.Fatalf("%s: %s %+v", res.Status, res.Summary, res.RQ)
	}
	if w := wireDetails(t, res); w["used_memory_bytes"] != nil || w["maxmemory_bytes"] != nil || w["running"] != 0.0 {
		t.Errorf("memory reported though INFO was refused: %v", w)
	}
}
