package checks

import (
	"context"
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/ckanops/ckanops/api"
	"github.com/ckanops/ckanops/config"
	"github.com/ckanops/ckanops/internal/testredis"
)

// The RQ probe against keys as RQ 1.x (CKAN 2.11) and RQ 2.x (CKAN 2.12)
// write them. The layouts follow what was read off running CKAN 2.11.5
// (rq 1.13) and 2.12.0b0 (rq 2.10): /work/shared/ckan-surface/jobs.txt and
// 2.12/jobs.txt, and rq's registry.py and executions.py.

// rqJob is one job of a layout.
type rqJob struct {
	id    string
	state string // queued, started, finished or scheduled
	// leases: started only, the lease expiry of each of the job's entries
	// in the started registry, in seconds from now (+Inf: no timeout).
	// RQ 1.x holds one entry per job, RQ 2.x one per execution.
	leases []float64
	runAt  float64 // scheduled only: seconds from now
}

// rqFormat is the RQ major version whose keys a layout writes.
type rqFormat int

const (
	rq1 rqFormat = 1 // CKAN 2.11 and earlier: started members are bare job ids
	rq2 rqFormat = 2 // CKAN 2.12: started members are <job_id>:<execution_id>
)

// execSeq makes execution ids of RQ 2.x's form, uuid4().hex.
var execSeq int

func executionID() string {
	execSeq++
	return fmt.Sprintf("b104b630c9c44618%016x", execSeq)
}

// writeRQJobs writes jobs on queue of site siteID as RQ of format f does,
// with one worker, busy when a job runs, listening on the queue.
func writeRQJobs(t *testing.T, rdb *redis.Client, f rqFormat, siteID, queue string, jobs []rqJob) {
	t.Helper()
	ctx := context.Background()
	name := RQQueueName(siteID, queue)
	now := float64(time.Now().Unix())
	pipe := rdb.Pipeline()
	pipe.SAdd(ctx, "rq:queues", RQQueueKey(name))
	current := ""
	for _, j := range jobs {
		jobKey := "rq:job:" + j.id
		pipe.HSet(ctx, jobKey, "status", j.state, "origin", name, "description", "ckan.lib.jobs.test_job('A test job')")
		switch j.state {
		case "queued":
			pipe.RPush(ctx, RQQueueKey(name), j.id)
		case "started":
			if f == rq1 && len(j.leases) != 1 {
				t.Fatalf("job %s: RQ 1.x has one started entry per job, not %d", j.id, len(j.leases))
			}
			for _, lease := range j.leases {
				score := now + lease
				if f == rq1 {
					pipe.ZAdd(ctx, RQStartedKey(name), redis.Z{Score: score, Member: j.id})
					continue
				}
				exec := executionID()
				pipe.ZAdd(ctx, RQStartedKey(name), redis.Z{Score: score, Member: j.id + ":" + exec})
				pipe.ZAdd(ctx, "rq:executions:"+j.id, redis.Z{Score: score, Member: exec})
				pipe.HSet(ctx, "rq:execution:"+j.id+":"+exec, "id", exec, "created_at", now, "last_heartbeat", now)
			}
			current = j.id
		case "finished":
			pipe.ZAdd(ctx, "rq:finished:"+name, redis.Z{Score: now + 500, Member: j.id})
			pipe.XAdd(ctx, &redis.XAddArgs{Stream: "rq:results:" + j.id, Values: []any{"type", "1", "return_value", "gAROLg=="}})
		case "scheduled":
			pipe.ZAdd(ctx, RQScheduledKey(name), redis.Z{Score: now + j.runAt, Member: j.id})
		default:
			t.Fatalf("job %s: state %q", j.id, j.state)
		}
	}
	worker := fmt.Sprintf("rq:worker:%s-%s-%d", siteID, queue, f)
	state := "idle"
	if current != "" {
		state = "busy"
	}
	pipe.HSet(ctx, worker, "queues", name, "state", state, "current_job", current)
	pipe.SAdd(ctx, RQWorkersKey, worker)
	pipe.SAdd(ctx, RQQueueWorkersKey(name), worker)
	if f == rq2 { // 'ckan jobs worker' starts RQ's scheduler from 2.12 on
		pipe.Set(ctx, "rq:scheduler-lock:"+name, "d19ca004017c4dc4bb02ac84ae2283e3", 0)
		pipe.HSet(ctx, "rq:scheduler:d19ca004017c4dc4bb02ac84ae2283e3", "name", "d19ca004017c4dc4bb02ac84ae2283e3", "queues", name)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		t.Fatal(err)
	}
}

type rqLayoutPart struct {
	format rqFormat
	queue  string
	jobs   []rqJob
}

type rqWant struct{ queued, running, stale, scheduled int64 }

func TestRedisRQFormats(t *testing.T) {
	noTimeout := math.Inf(1)
	cases := []struct {
		name  string
		parts []rqLayoutPart
		want  map[string]rqWant // by unprefixed queue, site "s1"
	}{{
		name: "CKAN 2.11 (RQ 1.x)",
		parts: []rqLayoutPart{{rq1, "default", []rqJob{
			{id: "q1", state: "queued"},
			{id: "d818c645-4396-4f9c-bf10-87aba7d1aaaa", state: "started", leases: []float64{90}},
			{id: "r-notimeout", state: "started", leases: []float64{noTimeout}},
			{id: "harvest:42", state: "started", leases: []float64{90}}, // RQ 1.x let a job id hold colons
			{id: "dead-worker", state: "started", leases: []float64{-600}},
			{id: "done", state: "finished"},
		}}},
		want: map[string]rqWant{"default": {queued: 1, running: 3, stale: 1}},
	}, {
		name: "CKAN 2.12 (RQ 2.x)",
		parts: []rqLayoutPart{{rq2, "default", []rqJob{
			{id: "99ed85ef-a22b-486a-b01b-1a7ec6a3ca99", state: "queued"},
			{id: "a9c89751-9205-427b-8dfb-fe3f24280d9e", state: "started", leases: []float64{90}},
			{id: "retried", state: "started", leases: []float64{-600, 90}},    // an abandoned execution, and a live one
			{id: "twice", state: "started", leases: []float64{90, noTimeout}}, // two live executions: one job
			{id: "abandoned", state: "started", leases: []float64{-600, -30}},
			{id: "done", state: "finished"},
			{id: "a55d2680-e5cd-40e3-92c8-ab5c18b1d25a_calculate-record-count", state: "scheduled", runAt: 5},
			{id: "overdue", state: "scheduled", runAt: -30},
		}}, {rq2, "harvest", []rqJob{
			{id: "h1", state: "started", leases: []float64{noTimeout}},
			{id: "h2", state: "scheduled", runAt: 3600},
		}}},
		want: map[string]rqWant{
			"default": {queued: 1, running: 3, stale: 1, scheduled: 2},
			"harvest": {running: 1, scheduled: 1},
		},
	}, {
		name: "CKAN 2.12, nothing running",
		parts: []rqLayoutPart{{rq2, "default", []rqJob{
			{id: "done-1", state: "finished"},
			{id: "done-2", state: "finished"},
			{id: "abandoned", state: "started", leases: []float64{-5}},
			{id: "b6e1f0b2-0c8e-4f3a-9a57-2f7d7d3c1e10_calculate-record-count", state: "scheduled", runAt: 5},
		}}},
		want: map[string]rqWant{"default": {running: 0, stale: 1, scheduled: 1}},
	}, {
		name: "CKAN 2.11 upgraded to 2.12 in place",
		parts: []rqLayoutPart{
			{rq1, "default", []rqJob{
				{id: "left-by-1x", state: "started", leases: []float64{90}},
				{id: "rerun", state: "started", leases: []float64{-600}},
			}},
			{rq2, "default", []rqJob{
				{id: "rerun", state: "started", leases: []float64{90}},
				{id: "new", state: "started", leases: []float64{-600}},
			}},
		},
		want: map[string]rqWant{"default": {running: 2, stale: 1}},
	}, {
		name:  "nothing at all",
		parts: nil,
		want:  map[string]rqWant{"default": {}},
	}}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			srv := testredis.Start(t)
			rdb := redisClient(t, srv.URL())
			for _, p := range c.parts {
				writeRQJobs(t, rdb, p.format, "s1", p.queue, p.jobs)
			}
			// Another site on the same Redis, and another queue of this
			// one: neither is counted.
			writeRQJobs(t, rdb, rq2, "other", "default", []rqJob{
				{id: "o1", state: "started", leases: []float64{90}},
				{id: "o2", state: "scheduled", runAt: 5},
				{id: "o3", state: "queued"},
			})
			writeRQJobs(t, rdb, rq2, "s1", "unwatched", []rqJob{
				{id: "u1", state: "started", leases: []float64{90}},
				{id: "u2", state: "scheduled", runAt: 5},
			})

			queues := slices.Sorted(maps.Keys(c.want))
			res := runProbe(t, NewRedis(config.SecretURL(srv.URL()), "s1", queues), 5*time.Second)
			if res.Status == api.CheckFail {
				t.Fatalf("%s: %s", res.Status, res.Summary)
			}
			d := res.RQ
			var total rqWant
			if len(d.Queues) != len(queues) {
				t.Fatalf("queues %+v", d.Queues)
			}
			for i, q := range d.Queues {
				w := c.want[queues[i]]
				if q.Queue != "ckan:s1:"+queues[i] || q.Queued != w.queued || q.Running != w.running || q.Stale != w.stale {
					t.Errorf("queue %+v, want %s %+v", q, queues[i], w)
				}
				total.queued += w.queued
				total.running += w.running
				total.stale += w.stale
				total.scheduled += w.scheduled
			}
			got := rqWant{known(t, "queued", d.Queued), known(t, "running", d.Running), known(t, "stale_started", d.StaleStarted), known(t, "scheduled", d.Scheduled)}
			if got != total {
				t.Errorf("details %+v, want %+v", got, total)
			}
			w := wireDetails(t, res)
			if w["running"] != float64(total.running) || w["scheduled"] != float64(total.scheduled) || w["stale_started"] != float64(total.stale) {
				t.Errorf("wire details %v", w)
			}
			counts := fmt.Sprintf("%d queued, %d running, ", total.queued, total.running)
			if total.scheduled > 0 {
				counts += fmt.Sprintf("%d scheduled, ", total.scheduled)
			}
			if !strings.Contains(res.Summary, counts) {
				t.Errorf("summary %q lacks %q", res.Summary, counts)
			}
			// The drain's "no RQ job running" holds exactly when no job
			// has a live lease.
			if (*d.Running == 0) != (total.running == 0) {
				t.Errorf("running %d, want %d", *d.Running, total.running)
			}
		})
	}
}

// A scheduled-job registry the probe cannot read leaves the scheduled
// count unknown (nil), and everything else counted.
func TestRedisRQScheduledUnreadable(t *testing.T) {
	srv := testredis.Start(t)
	rdb := redisClient(t, srv.URL())
	writeRQJobs(t, rdb, rq2, "s1", "default", []rqJob{{id: "a", state: "started", leases: []float64{90}}})
	writeRQJobs(t, rdb, rq2, "s1", "harvest", []rqJob{{id: "b", state: "scheduled", runAt: 5}})
	rdb.Set(context.Background(), RQScheduledKey(RQQueueName("s1", "default")), "not a zset", 0)

	res := runProbe(t, NewRedis(config.SecretURL(srv.URL()), "s1", []string{"default", "harvest"}), 5*time.Second)
	if res.Status != api.CheckOK {
		t.Fatalf("%s: %s", res.Status, res.Summary)
	}
	if res.RQ.Scheduled != nil || known(t, "running", res.RQ.Running) != 1 {
		t.Errorf("scheduled %v, running %v", res.RQ.Scheduled, *res.RQ.Running)
	}
	if w := wireDetails(t, res); w["scheduled"] != nil {
		t.Errorf("scheduled on the wire: %v", w["scheduled"])
	}
	if strings.Contains(res.Summary, "scheduled") {
		t.Errorf("summary %q", res.Summary)
	}
}

// A started registry longer than the probe reads: the jobs past what it
// read count one each, so running is never under-counted.
func TestRedisRQManyStarted(t *testing.T) {
	srv := testredis.Start(t)
	rdb := redisClient(t, srv.URL())
	const jobs = rqStartedRead // two live executions each: twice the members read
	var js []rqJob
	for i := range jobs {
		js = append(js, rqJob{id: fmt.Sprintf("job-%04d", i), state: "started", leases: []float64{90, 120}})
	}
	writeRQJobs(t, rdb, rq2, "s1", "default", js)
	res := runProbe(t, NewRedis(config.SecretURL(srv.URL()), "s1", nil), 5*time.Second)
	if got := known(t, "running", res.RQ.Running); got < jobs || got > 2*jobs {
		t.Errorf("running %d, want between %d and %d", got, jobs, 2*jobs)
	}
	if got := known(t, "stale_started", res.RQ.StaleStarted); got != 0 {
		t.Errorf("stale %d", got)
	}
}

func TestRQStartedJobID(t *testing.T) {
	hex := "b104b630c9c44618ab93cd826e310118"
	for _, c := range []struct{ member, want string }{
		{"d818c645-4396-4f9c-bf10-87aba7d1aaaa", "d818c645-4396-4f9c-bf10-87aba7d1aaaa"},        // RQ 1.x
		{"a9c89751-9205-427b-8dfb-fe3f24280d9e:" + hex, "a9c89751-9205-427b-8dfb-fe3f24280d9e"}, // RQ 2.x
		{"a55d2680_calculate-record-count:" + hex, "a55d2680_calculate-record-count"},           // RQ 2.x, a custom id
		{"harvest:42", "harvest:42"},                                   // RQ 1.x, a colon in the id
		{"ckan:default:default-r0", "ckan:default:default-r0"},         // RQ 1.x
		{"harvest:42:" + hex, "harvest:42"},                            // RQ 2.0 to 2.7 did not check ids
		{":" + hex, ":" + hex},                                         // no job id
		{hex, hex},                                                     // a bare id that is hex
		{"job:" + hex[:31], "job:" + hex[:31]},                         // too short
		{"job:" + strings.ToUpper(hex), "job:" + strings.ToUpper(hex)}, // not uuid4().hex
		{"job:" + hex[:31] + "g", "job:" + hex[:31] + "g"},             // not hex
		{"job:x" + hex, "job:x" + hex},                                 // too long
		{"", ""},
	} {
		if got := RQStartedJobID(c.member); got != c.want {
			t.Errorf("RQStartedJobID(%q) = %q, want %q", c.member, got, c.want)
		}
	}
}

func TestCountStarted(t *testing.T) {
	e := func(id string, n int) string { return fmt.Sprintf("%s:%032x", id, n) }
	for _, c := range []struct {
		name                string
		live, expired       []string
		liveN, expiredN     int64
		wantRunning, wantSt int64
	}{
		{"empty", nil, nil, 0, 0, 0, 0},
		{"RQ 1.x", []string{"a", "b"}, []string{"c"}, 2, 1, 2, 1},
		{"RQ 2.x, one job twice", []string{e("a", 1), e("a", 2), e("b", 3)}, nil, 3, 0, 2, 0},
		{"an expired execution of a running job", []string{e("a", 2)}, []string{e("a", 1), e("c", 3), e("c", 4)}, 1, 3, 1, 1},
		{"both formats", []string{"a", e("a", 1), e("b", 2)}, []string{"b", "d"}, 3, 2, 2, 1},
		{"more members than read", []string{e("a", 1), e("a", 2)}, []string{e("c", 3)}, 5, 4, 4, 4},
		{"a member gone since the count", []string{"a", "b"}, nil, 1, 0, 2, 0},
	} {
		r, s := countStarted(c.live, c.expired, c.liveN, c.expiredN)
		if r != c.wantRunning || s != c.wantSt {
			t.Errorf("%s: running %d stale %d, want %d %d", c.name, r, s, c.wantRunning, c.wantSt)
		}
	}
}
