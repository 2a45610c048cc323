package gate

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/ckanops/ckanops/api"

	"github.com/redis/go-redis/v9"

	"github.com/ckanops/ckanops/checks"
	"github.com/ckanops/ckanops/config"
	"github.com/ckanops/ckanops/internal/testredis"
)

func (r *rig) jobs(action, body string, hdr ...string) (resp, api.JobsState) {
	r.t.Helper()
	if len(hdr) == 0 {
		hdr = []string{"Authorization", "Bearer " + opsToken}
	}
	var rd *strings.Reader
	if body != "" {
		rd = strings.NewReader(body)
	} else {
		rd = strings.NewReader("")
	}
	res := r.do("POST", "/-/ckanops/jobs/"+action, rd, append(hdr, "Content-Type", "application/json")...)
	var st api.JobsState
	if res.status == 200 {
		if err := json.Unmarshal([]byte(res.body), &st); err != nil {
			r.t.Fatalf("jobs %s: %v\n%s", action, err, res.body)
		}
	}
	return res, st
}

type auditLine struct {
	Event, Actor, From, To, Message, Reason, Remote string
}

func (r *rig) auditEvents(prefix string) []auditLine {
	r.t.Helper()
	b, err := os.ReadFile(r.audit)
	if err != nil {
		r.t.Fatal(err)
	}
	var out []auditLine
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var a auditLine
		if json.Unmarshal([]byte(line), &a) == nil && strings.HasPrefix(a.Event, prefix) {
			out = append(out, a)
		}
	}
	return out
}

// Suspend and resume RQ's workers through the gate, as `rq suspend` and
// `rq resume` do; both audited with the actor; the health report follows.
func TestJobsSuspendResume(t *testing.T) {
	rd := testredis.Start(t)
	opt, _ := redis.ParseURL(rd.URL())
	rdb := redis.NewClient(opt)
	defer rdb.Close()
	ctx := context.Background()
	// One job running, as RQ records it, and a worker on CKAN's default queue.
	rdb.ZAdd(ctx, checks.RQStartedKey("ckan:default:default"), redis.Z{Score: float64(time.Now().Add(time.Hour).Unix()), Member: "job-1"})
	rdb.SAdd(ctx, checks.RQWorkersKey, "rq:worker:w1")
	rdb.SAdd(ctx, checks.RQQueueWorkersKey("ckan:default:default"), "rq:worker:w1")

	r := newRig(t, withChecks(config.ChecksConfig{Redis: config.SecretURL(rd.URL()), Interval: config.Duration{Duration: time.Hour}}))
	if c := byName(r.health())["redis"]; c.Status != api.CheckOK || suspended(c) != "false" {
		t.Fatalf("before: %s: %s", c.Status, c.Summary)
	}

	// No token: nothing happens.
	if res, _ := r.jobs("suspend", "", "X-Nothing", "x"); res.status != 401 {
		t.Fatalf("suspend without a token: %d %s", res.status, res.body)
	}
	if rdb.Exists(ctx, checks.RQSuspendedKey).Val() != 0 {
		t.Fatal("suspended without a token")
	}

	res, st := r.jobs("suspend", `{"reason": "snapshot"}`)
	if res.status != 200 || !st.Suspended || !st.Changed || st.Until != nil {
		t.Fatalf("suspend: %d %s", res.status, res.body)
	}
	if v := rdb.Get(ctx, checks.RQSuspendedKey).Val(); v != "1" || rdb.TTL(ctx, checks.RQSuspendedKey).Val() != -1 {
		t.Errorf("rq:suspended = %q, TTL %v; want \"1\" with no expiry", v, rdb.TTL(ctx, checks.RQSuspendedKey).Val())
	}
	if c := st.Check; c.Name != "redis" || suspended(c) != "true" || c.RQ.Running == nil || *c.RQ.Running != 1 {
		t.Errorf("the answer's check: %+v", st.Check)
	}
	// The cached report does not hide the change.
	if c := byName(r.health())["redis"]; c.Status != api.CheckWarn || suspended(c) != "true" {
		t.Errorf("health after suspend: %s: %s", c.Status, c.Summary)
	}

	res, st = r.jobs("suspend", `{"for": "2h"}`)
	if res.status != 200 || st.Changed || st.Until == nil || st.Until.Sub(time.Now()) < 119*time.Minute {
		t.Fatalf("suspend for 2h: %d %s", res.status, res.body)
	}
	if ttl := rdb.TTL(ctx, checks.RQSuspendedKey).Val(); ttl < 119*time.Minute || ttl > 2*time.Hour {
		t.Errorf("TTL %v, want 2h", ttl)
	}

	res, st = r.jobs("resume", "")
	if res.status != 200 || st.Suspended || !st.Changed || suspended(st.Check) != "false" {
		t.Fatalf("resume: %d %s", res.status, res.body)
	}
	if rdb.Exists(ctx, checks.RQSuspendedKey).Val() != 0 {
		t.Error("rq:suspended is still set after resume")
	}

	got := r.auditEvents("rq-")
	want := []auditLine{
		{Event: "rq-suspend", Actor: "ops-token", From: "resumed", To: "suspended", Reason: "snapshot"},
		{Event: "rq-suspend", Actor: "ops-token", From: "suspended", To: "suspended", Message: "for 2h0m0s"},
		{Event: "rq-resume", Actor: "ops-token", From: "suspended", To: "resumed"},
	}
	if len(got) != len(want) {
		t.Fatalf("audit: %+v", got)
	}
	for i := range want {
		g := got[i]
		if g.Remote == "" {
			t.Errorf("audit %d has no remote", i)
		}
		g.Remote = ""
		if g != want[i] {
			t.Errorf("audit %d: %+v, want %+v", i, g, want[i])
		}
	}

	// Down mode: the control API still answers.
	r.mustMode(api.ModeDown, "")
	if res, _ := r.jobs("suspend", ""); res.status != 200 {
		t.Errorf("suspend in down mode: %d %s", res.status, res.body)
	}
}

func TestJobsErrors(t *testing.T) {
	rd := testredis.Start(t)
	r := newRig(t, withChecks(config.ChecksConfig{Redis: config.SecretURL("redis://:Rq-pw-3456@" + rd.Addr() + "/0")}))
	for _, c := range []struct {
		action, body string
		status       int
		want         string
	}{
		{"suspend", `{"for": "soon"}`, 400, `for "soon" is not a duration`},
		{"suspend", `{"ttl": 5}`, 400, "bad jobs request body"},
		{"resume", `{"for": "1h"}`, 400, `"for" is for suspend only`},
		{"suspend", `{"reason": "` + strings.Repeat("x", maxReasonLen+1) + `"}`, 400, "reason is"},
	} {
		res, _ := r.jobs(c.action, c.body)
		var e struct{ Error string }
		json.Unmarshal([]byte(res.body), &e)
		if res.status != c.status || !strings.Contains(e.Error, c.want) {
			t.Errorf("%s %s: %d %s", c.action, c.body, res.status, res.body)
		}
	}
	// Redis down (and asked for a password it does not know): 503, why, no password.
	rd.Kill(t)
	res, _ := r.jobs("suspend", "")
	if res.status != 503 || !strings.Contains(res.body, "connection refused") || strings.Contains(res.body, "Rq-pw-3456") {
		t.Errorf("Redis down: %d %s", res.status, res.body)
	}
	if n := len(r.auditEvents("rq-")); n != 0 {
		t.Errorf("%d audit entries for changes that did not happen", n)
	}

	// Not configured: 409, what to set.
	bare := newRig(t)
	res, _ = bare.jobs("resume", "")
	if res.status != 409 || !strings.Contains(res.body, "set redis") {
		t.Errorf("not configured: %d %s", res.status, res.body)
	}
	if res, _ = bare.jobs("resume", "", "Authorization", "Bearer wrong"); res.status != 401 {
		t.Errorf("wrong token: %d %s", res.status, res.body)
	}
}

// suspended is what a redis check says of RQ's suspension: "true",
// "false" or "unknown".
func suspended(c api.CheckResult) string {
	if c.RQ == nil || c.RQ.Suspended == nil {
		return "unknown"
	}
	return fmt.Sprint(*c.RQ.Suspended)
}
