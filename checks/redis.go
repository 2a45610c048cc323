package checks

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/ckanops/ckanops/api"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"

	"github.com/ckanops/ckanops/config"
)

// RQ's key names, as RQ (rq/keys.py, rq/registry.py, rq/suspension.py)
// and CKAN (ckan/lib/jobs.py) lay them out. CKAN prefixes its queue names
// with ckan:<ckan.site_id>:, so its default queue is RQ's queue
// ckan:default:default, a list at rq:queue:ckan:default:default.
const (
	RQSuspendedKey = "rq:suspended" // set (to "1") while workers are suspended
	RQWorkersKey   = "rq:workers"   // the set of every registered worker's key
)

// RQQueueName is RQ's name of the CKAN queue queue on site siteID.
func RQQueueName(siteID, queue string) string { return "ckan:" + siteID + ":" + queue }

// RQQueueKey is the list of the queue's waiting job ids.
func RQQueueKey(name string) string { return "rq:queue:" + name }

// RQStartedKey is the queue's started-job registry: a sorted set of the
// jobs being executed, scored by the time their lease expires (+inf for no
// timeout). RQ 1.x (CKAN 2.11 and earlier) writes one member per job, the
// bare job id; RQ 2.x (CKAN 2.12) one per execution of a job,
// "<job_id>:<execution_id>" (RQStartedJobID reads both). CKAN's job_list
// shows only queued jobs, never these.
func RQStartedKey(name string) string { return "rq:wip:" + name }

// RQScheduledKey is the queue's scheduled-job registry: a sorted set of
// the ids of jobs to be put on the queue later, scored by when (epoch
// seconds). RQ's scheduler (started by 'ckan jobs worker' from CKAN 2.12
// on, unless --no-scheduler) moves them onto the queue once due. CKAN
// 2.12's DataStore schedules <resource_id>_calculate-record-count there.
func RQScheduledKey(name string) string { return "rq:scheduled:" + name }

// rqExecutionIDLen is the length of an RQ 2.x execution id: uuid4().hex,
// 32 lowercase hex digits (rq/executions.py).
const rqExecutionIDLen = 32

// RQStartedJobID is the job id of a member of a started registry
// (RQStartedKey): RQ 2.x's "<job_id>:<execution_id>" gives <job_id>, and a
// bare job id (RQ 1.x) is itself. Only a member that ends in a colon and
// 32 lowercase hex digits, after a non-empty job id, is read as RQ 2.x's:
// RQ 1.x let a job id hold colons, so the first colon proves nothing.
func RQStartedJobID(member string) string {
	i := len(member) - rqExecutionIDLen - 1
	if i <= 0 || member[i] != ':' {
		return member
	}
	for _, c := range []byte(member[i+1:]) {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return member
		}
	}
	return member[:i]
}

// rqStartedRead is how many members of each part of a started registry
// (leases live, leases expired) the probe reads to count distinct jobs.
// A worker runs one job at a time, so a live part this long is far beyond
// any CKAN site; members past it are counted one job each
// (countStarted).
const rqStartedRead = 1000

// countStarted counts the distinct jobs of a started registry, in either
// RQ's format: running, those with a live lease; stale, those whose every
// lease expired (a job with an expired execution and a live one is
// running). live and expired are the members read, liveN and expiredN the
// parts' sizes (ZCOUNT): members beyond those read count one job each, so
// the counts may err high but never low, and running is 0 exactly when no
// lease is live, which is what the drain waits for.
func countStarted(live, expired []string, liveN, expiredN int64) (running, stale int64) {
	jobs := make(map[string]bool, len(live))
	for _, m := range live {
		jobs[RQStartedJobID(m)] = true
	}
	running = int64(len(jobs)) + max(0, liveN-int64(len(live)))
	staleJobs := make(map[string]bool, len(expired))
	for _, m := range expired {
		if id := RQStartedJobID(m); !jobs[id] {
			staleJobs[id] = true
		}
	}
	stale = int64(len(staleJobs)) + max(0, expiredN-int64(len(expired)))
	return running, stale
}

// RQQueueWorkersKey is the set of the workers listening on the queue.
func RQQueueWorkersKey(name string) string { return "rq:workers:" + name }

// Redis probes CKAN's Redis and its RQ queues.
type Redis struct {
	url      config.SecretURL
	siteID   string
	queues   []string
	commands atomic.Int64
}

// NewRedis returns the probe of the Redis at url, counting the jobs of
// CKAN's queues (CKAN's unprefixed names) of site siteID.
func NewRedis(url config.SecretURL, siteID string, queues []string) *Redis {
	if siteID == "" {
		siteID = config.DefaultCKANSiteID
	}
	if len(queues) == 0 {
		queues = []string{config.DefaultRQQueue}
	}
	return &Redis{url: url, siteID: siteID, queues: queues}
}

func (p *Redis) Name() string { return api.ProbeRedis }

// Commands is how many Redis commands the probe has sent, in all.
func (p *Redis) Commands() int64 { return p.commands.Load() }

// Check pings Redis and counts jobs and workers in one pipeline.
func (p *Redis) Check(ctx context.Context) api.CheckResult {
	res := api.CheckResult{Status: api.CheckFail}
	rdb, where, err := openRedis(ctx, p.url)
	if err != nil {
		res.Summary = err.Error()
		return res
	}
	defer rdb.Close()
	d := &api.RQDetails{SiteID: p.siteID}
	res.RQ = d

	t0 := time.Now()
	p.commands.Add(1)
	if err := rdb.Ping(ctx).Err(); err != nil {
		res.Summary = describeRedis(ctx, where, p.url, err)
		return res
	}
	latency := time.Since(t0)

	now := strconv.FormatFloat(float64(time.Now().UnixMicro())/1e6, 'f', 6, 64)
	pipe := rdb.Pipeline()
	info := pipe.Info(ctx, "memory")
	workers := pipe.SCard(ctx, RQWorkersKey)
	suspended := pipe.Exists(ctx, RQSuspendedKey)
	suspendedTTL := pipe.PTTL(ctx, RQSuspendedKey)
	type queueCmds struct {
		queued, liveN, expiredN, workers, scheduled *redis.IntCmd
		live, expired                               *redis.StringSliceCmd
	}
	qc := make([]queueCmds, len(p.queues))
	for i, q := range p.queues {
		name := RQQueueName(p.siteID, q)
		started := RQStartedKey(name)
		qc[i] = queueCmds{
			queued:    pipe.LLen(ctx, RQQueueKey(name)),
			live:      pipe.ZRangeByScore(ctx, started, &redis.ZRangeBy{Min: "(" + now, Max: "+inf", Count: rqStartedRead}),
			liveN:     pipe.ZCount(ctx, started, "("+now, "+inf"),
			expired:   pipe.ZRangeByScore(ctx, started, &redis.ZRangeBy{Min: "-inf", Max: now, Count: rqStartedRead}),
			expiredN:  pipe.ZCount(ctx, started, "-inf", now),
			workers:   pipe.SCard(ctx, RQQueueWorkersKey(name)),
			scheduled: pipe.ZCard(ctx, RQScheduledKey(name)),
		}
	}
	p.commands.Add(int64(pipe.Len()))
	_, _ = pipe.Exec(ctx) // each command's error is looked at below
	// INFO may be refused to CKAN's Redis user (ACL): then the memory is
	// unknown, and the rest still counts. So are the scheduled jobs when
	// their registry cannot be read.
	essential := []redis.Cmder{workers, suspended, suspendedTTL}
	for _, c := range qc {
		essential = append(essential, c.queued, c.live, c.liveN, c.expired, c.expiredN, c.workers)
	}
	for _, c := range essential {
		if err := c.Err(); err != nil {
			res.Summary = describeRedis(ctx, where, p.url, err)
			return res
		}
	}

	mem := parseInfo(info.Val())
	used, _ := strconv.ParseInt(mem["used_memory"], 10, 64)
	maxMem, _ := strconv.ParseInt(mem["maxmemory"], 10, 64)
	queues := make([]api.RQQueue, len(p.queues))
	var queued, running, stale, scheduled int64
	scheduledKnown := true
	for i, q := range p.queues {
		c := qc[i]
		qRunning, qStale := countStarted(c.live.Val(), c.expired.Val(), c.liveN.Val(), c.expiredN.Val())
		queues[i] = api.RQQueue{Queue: RQQueueName(p.siteID, q), Queued: c.queued.Val(), Running: qRunning,
			Stale: qStale, Workers: c.workers.Val()}
		queued += queues[i].Queued
		running += queues[i].Running
		stale += queues[i].Stale
		scheduled += c.scheduled.Val()
		scheduledKnown = scheduledKnown && c.scheduled.Err() == nil
	}
	isSuspended := suspended.Val() > 0
	d.LatencyMS = new(ms(latency))
	if info.Err() == nil {
		d.UsedMemoryBytes = new(used)
		d.MaxmemoryBytes = new(maxMem)
	}
	d.Queues = queues
	d.Queued = new(queued)
	d.Running = new(running)
	if scheduledKnown {
		d.Scheduled = new(scheduled)
	}
	d.StaleStarted = new(stale)
	d.Workers = new(workers.Val())
	d.Suspended = new(isSuspended)
	if ttl := suspendedTTL.Val(); isSuspended && ttl > 0 {
		d.SuspendedForSeconds = new(seconds(ttl))
	}

	res.Status = api.CheckOK
	var warns []string
	if isSuspended {
		until := "until resumed"
		if ttl := suspendedTTL.Val(); ttl > 0 {
			until = "for another " + ttl.Round(time.Second).String()
		}
		warns = append(warns, fmt.Sprintf("RQ workers are suspended (%s %s): they start no new job; resume with POST /-/ckanops/jobs/resume or 'rq resume'", RQSuspendedKey, until))
	}
	for _, q := range queues {
		if q.Queued > 0 && q.Workers == 0 {
			warns = append(warns, fmt.Sprintf("%d job(s) wait on %s and no worker listens on it: start 'ckan jobs worker'", q.Queued, q.Queue))
		}
		if q.Stale > 0 {
			warns = append(warns, fmt.Sprintf("%d started job(s) of %s are past their lease: their worker probably died", q.Stale, q.Queue))
		}
	}
	if maxMem > 0 && float64(used) >= 0.9*float64(maxMem) {
		warns = append(warns, fmt.Sprintf("Redis uses %d%% of its maxmemory", used*100/maxMem))
	}
	counts := fmt.Sprintf("%d queued, %d running, %d worker(s)", queued, running, workers.Val())
	if scheduledKnown && scheduled > 0 {
		counts = fmt.Sprintf("%d queued, %d running, %d scheduled, %d worker(s)", queued, running, scheduled, workers.Val())
	}
	if len(warns) > 0 {
		res.Status = api.CheckWarn
		res.Summary = strings.Join(warns, "; ") + "; " + counts
		return res
	}
	res.Summary = fmt.Sprintf("%s, ping %.1f ms", counts, ms(latency))
	return res
}

// openRedis returns a client of one connection for one check: no retries,
// no pool to leak, bounded by ctx. Close it.
func openRedis(ctx context.Context, url config.SecretURL) (*redis.Client, string, error) {
	opt, err := redis.ParseURL(url.Reveal())
	if err != nil {
		return nil, "", fmt.Errorf("checks.redis is not a Redis URL the probe can use: %s", scrub(err.Error(), url))
	}
	timeout := timeoutOf(ctx)
	if dl, ok := ctx.Deadline(); ok {
		timeout = max(time.Until(dl), time.Millisecond)
	}
	opt.DialTimeout, opt.ReadTimeout, opt.WriteTimeout = timeout, timeout, timeout
	opt.ContextTimeoutEnabled = true
	opt.MaxRetries = -1
	opt.DialerRetries = 1
	// One connection is used; a pool of 2 keeps go-redis from starting a
	// background redialer after a failed dial (it does once every slot of
	// the pool has failed), which would outlive the check.
	opt.PoolSize, opt.MinIdleConns, opt.MaxIdleConns = 2, 0, 1
	opt.PoolTimeout = timeout
	opt.Protocol = 2
	opt.DisableIdentity = true
	opt.MaintNotificationsConfig = &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}
	where := fmt.Sprintf("Redis at %s (db %d)", opt.Addr, opt.DB)
	return redis.NewClient(opt), where, nil
}

// describeRedis turns a Redis error into what an operator does next.
func describeRedis(ctx context.Context, where string, url config.SecretURL, err error) string {
	msg := err.Error()
	switch {
	case strings.Contains(msg, "NOAUTH"):
		return fmt.Sprintf("%s wants a password: put it in checks.redis (redis://:PASSWORD@host:6379/0), as in CKAN's ckan.redis.url", where)
	case strings.Contains(msg, "WRONGPASS"), strings.Contains(msg, "invalid password"), strings.Contains(msg, "invalid username-password"):
		return fmt.Sprintf("%s refused the password (or user) in checks.redis: %s", where, scrub(oneLine(msg, 200), url))
	case strings.Contains(msg, "LOADING"):
		return fmt.Sprintf("%s is loading its data set into memory; try again shortly", where)
	case strings.Contains(msg, "DB index is out of range"):
		return fmt.Sprintf("%s: no such database number; check checks.redis", where)
	}
	var rerr redis.Error
	if errors.As(err, &rerr) {
		return scrub(fmt.Sprintf("%s: %s", where, oneLine(msg, 200)), url)
	}
	if s := netProblem(ctx, where, timeoutOf(ctx), err); s != "" {
		return scrub(s, url)
	}
	return scrub(fmt.Sprintf("%s: %s", where, oneLine(msg, 300)), url)
}

// parseInfo reads the key:value lines of INFO.
func parseInfo(s string) map[string]string {
	m := map[string]string{}
	for _, line := range strings.Split(s, "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), ":"); ok && !strings.HasPrefix(k, "#") {
			m[k] = v
		}
	}
	return m
}

// SuspendRQ suspends the RQ workers of the Redis at url the way `rq
// suspend` does: it sets rq:suspended to 1, for ttl when ttl > 0, else
// until resumed. Workers finish the job they are running and then start
// no other. It reports whether they were suspended already.
func SuspendRQ(ctx context.Context, url config.SecretURL, ttl time.Duration) (was bool, err error) {
	return setSuspended(ctx, url, true, ttl)
}

// ResumeRQ resumes RQ's workers the way `rq resume` does: it deletes
// rq:suspended. It reports whether they were suspended.
func ResumeRQ(ctx context.Context, url config.SecretURL) (was bool, err error) {
	return setSuspended(ctx, url, false, 0)
}

func setSuspended(ctx context.Context, url config.SecretURL, suspend bool, ttl time.Duration) (bool, error) {
	if url == "" {
		return false, errors.New("RQ is not configured: set redis (CKAN's ckan.redis.url) in gate.toml's [checks]")
	}
	rdb, where, err := openRedis(ctx, url)
	if err != nil {
		return false, err
	}
	defer rdb.Close()
	var existed *redis.IntCmd
	_, err = rdb.TxPipelined(ctx, func(pipe redis.Pipeliner) error {
		existed = pipe.Exists(ctx, RQSuspendedKey)
		switch {
		case !suspend:
			pipe.Del(ctx, RQSuspendedKey)
		case ttl > 0:
			pipe.Set(ctx, RQSuspendedKey, 1, ttl)
		default:
			pipe.Set(ctx, RQSuspendedKey, 1, 0)
		}
		return nil
	})
	if err != nil {
		return false, errors.New(describeRedis(ctx, where, url, err))
	}
	return existed.Val() > 0, nil
}
