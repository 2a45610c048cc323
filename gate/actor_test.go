package gate

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/ckanops/ckanops/api"

	"github.com/redis/go-redis/v9"

	"github.com/ckanops/ckanops/ckanclient"
	"github.com/ckanops/ckanops/config"
	"github.com/ckanops/ckanops/internal/ckansim"
	"github.com/ckanops/ckanops/internal/testredis"
	"github.com/ckanops/ckanops/runbook"
)

// alice is how the console served over SSH names an operator.
const alice = "ssh:alice (SHA256:AbCdEf0123456789+/xyzXYZ)"

var aliceVia = alice + " via ops-token"

func opsAs(actor string) []string {
	return []string{"Authorization", "Bearer " + opsToken, api.ActorHeader, actor}
}

// The ops token naming a person: the mode record, the answer, the status
// and the audit log all say "<person> via ops-token"; the reads take the
// header too; a request without it is the ops token, as ever.
func TestActorHeaderWithTheOpsToken(t *testing.T) {
	r := newRig(t)
	res := r.setMode(`{"mode": "read-only", "message": "upgrade", "reason": "issue 18"}`, opsAs(alice)...)
	if res.status != 200 {
		t.Fatalf("mode with %s: %d %s", api.ActorHeader, res.status, res.body)
	}
	var st api.Status
	must(t, json.Unmarshal([]byte(res.body), &st))
	if st.Actor != aliceVia {
		t.Errorf("the answer's actor %q, want %q", st.Actor, aliceVia)
	}
	if st := r.status(true); st.Actor != aliceVia || st.Version != 1 {
		t.Errorf("status: actor %q at version %d, want %q at 1", st.Actor, st.Version, aliceVia)
	}
	rec, ok, err := r.store.Load(context.Background())
	if err != nil || !ok || rec.Actor != aliceVia {
		t.Errorf("the stored record: %+v (ok %v, err %v), want actor %q", rec, ok, err, aliceVia)
	}
	modes := r.auditEvents("mode")
	if len(modes) != 1 || modes[0].Actor != aliceVia || modes[0].To != "read-only" || modes[0].Reason != "issue 18" {
		t.Fatalf("audit: %+v", modes)
	}

	// A conflict names who changed the record.
	res = r.setMode(`{"mode": "down", "expect_version": 0}`, opsAs("ssh:bob (SHA256:XyZ)")...)
	if res.status != http.StatusConflict || !strings.Contains(res.body, "changed by "+aliceVia) {
		t.Errorf("conflict: %d %s", res.status, res.body)
	}

	// Reads take the header.
	for _, path := range []string{api.PathStatus, api.PathHealth, api.PathAudit, api.PathActions} {
		if res := r.do("GET", path, nil, opsAs(alice)...); res.status != 200 {
			t.Errorf("GET %s with %s: %d %s", path, api.ActorHeader, res.status, res.body)
		}
	}

	// CKAN's envelope too (ckanapi with the ops token).
	res = r.do("POST", "/api/3/action/maintenance_mode_update", strings.NewReader(`{"mode": "down"}`),
		append(opsAs("ssh:bob (SHA256:XyZ)"), "Content-Type", "application/json")...)
	if res.status != 200 || !strings.Contains(res.body, `"actor":"ssh:bob (SHA256:XyZ) via ops-token"`) {
		t.Errorf("maintenance_mode_update: %d %s", res.status, res.body)
	}

	// Without the header: the ops token, as before.
	r.mustMode(api.ModeLive, "")
	if st := r.status(true); st.Actor != "ops-token" {
		t.Errorf("actor without the header: %q", st.Actor)
	}
	got := r.auditEvents("mode")
	var actors []string
	for _, a := range got {
		actors = append(actors, a.Actor)
	}
	if want := []string{aliceVia, "ssh:bob (SHA256:XyZ) via ops-token", "ops-token"}; strings.Join(actors, "|") != strings.Join(want, "|") {
		t.Errorf("audited actors %q, want %q", actors, want)
	}
}

// A CKAN sysadmin acts as itself: naming another actor is a 403, nothing
// changes, and it does not count as a failed authentication.
func TestActorHeaderFromACKANSysadminIsRefused(t *testing.T) {
	r := newRig(t)
	want := "only the ops token may name another actor (Ckanops-Actor); ckan:admin acts as itself: nothing was changed"
	for i := range authLimit + 2 {
		res := r.setMode(`{"mode": "read-only"}`, "Authorization", ckansim.SysadminToken, api.ActorHeader, alice)
		var body map[string]string
		if res.status != http.StatusForbidden || json.Unmarshal([]byte(res.body), &body) != nil || body["error"] != want {
			t.Fatalf("request %d: %d %s", i+1, res.status, res.body)
		}
	}
	res := r.do("POST", "/api/3/action/maintenance_mode_update", strings.NewReader(`{"mode": "down"}`),
		"X-CKAN-API-Key", ckansim.SysadminToken, api.ActorHeader, alice, "Content-Type", "application/json")
	if res.status != http.StatusForbidden || !strings.Contains(res.body, `"__type":"Authorization Error"`) || !strings.Contains(res.body, "acts as itself") {
		t.Errorf("maintenance_mode_update: %d %s", res.status, res.body)
	}
	if res := r.do("GET", api.PathHealth, nil, "Authorization", ckansim.SysadminToken, api.ActorHeader, alice); res.status != http.StatusForbidden {
		t.Errorf("health: %d %s", res.status, res.body)
	}
	if st := r.status(true); st.Mode != api.ModeLive || st.Version != 0 {
		t.Errorf("the mode changed: %s at version %d", st.Mode, st.Version)
	}
	for _, e := range auditEntries(t, r.audit) {
		t.Errorf("audited: %+v", e)
	}
	if v := scrapeAuthMetric(t, r, "ckanops_auth_rate_limited_total"); v != "0" {
		t.Errorf("rate limited %s times", v)
	}
	// The same token without the header still works, as itself.
	if res := r.setMode(`{"mode": "read-only"}`, "Authorization", ckansim.SysadminToken); res.status != 200 || !strings.Contains(res.body, `"actor":"ckan:admin"`) {
		t.Fatalf("sysadmin without the header: %d %s", res.status, res.body)
	}
}

// Bad values, and more than one header, are a 400 that changes nothing,
// never echoes the raw value, and is no failed authentication.
func TestBadActorHeaderIsRefused(t *testing.T) {
	r := newRig(t)
	cases := []struct {
		name   string
		values []string
		want   string
	}{
		{"CRLF", []string{"alice\r\nX-Evil: 1"}, "control character"},
		{"LF", []string{"alice\nbob"}, "control character"},
		{"tab", []string{"al\tice"}, "control character"},
		{"escape", []string{"alice\x1b[2J\x1b[31m"}, "control character"},
		{"NUL", []string{"alice\x00"}, "control character"},
		{"bidi override", []string{"alice\u202egnp"}, "bidirectional"},
		{"201 bytes", []string{strings.Repeat("a", 201)}, "201 bytes long"},
		{"empty", []string{""}, "empty"},
		{"leading space", []string{" alice"}, "starts with a space"},
		{"trailing space", []string{"alice "}, "ends with a space"},
		{"invalid UTF-8", []string{"alice\xff"}, "not valid UTF-8"},
		{"two headers", []string{"alice", "bob"}, "2 Ckanops-Actor headers"},
	}
	for _, c := range cases {
		for _, target := range []string{api.PathMode, "/api/3/action/maintenance_mode_update", api.PathJobsSuspend, api.PathRunbook, api.PathActionsLearn} {
			// Straight to the handler: Go's client and server refuse
			// control characters in a header before the gate sees them.
			req := httptest.NewRequest("POST", target, strings.NewReader(`{"mode": "down"}`))
			req.Header.Set("Authorization", "Bearer "+opsToken)
			req.Header.Set("Content-Type", "application/json")
			req.Header[api.ActorHeader] = c.values
			w := httptest.NewRecorder()
			r.gate.ServeHTTP(w, req)
			body := w.Body.String()
			if w.Code != http.StatusBadRequest || !strings.Contains(body, c.want) || !strings.Contains(body, "nothing was changed") {
				t.Errorf("%s to %s: %d %s, want 400 saying %q", c.name, target, w.Code, body, c.want)
			}
			// What a client shows: the decoded message.
			var ans struct {
				Error json.RawMessage `json:"error"`
			}
			var env struct {
				Message string `json:"message"`
			}
			msg := ""
			if json.Unmarshal(w.Body.Bytes(), &ans) != nil || (json.Unmarshal(ans.Error, &msg) != nil && json.Unmarshal(ans.Error, &env) != nil) {
				t.Fatalf("%s to %s: %s", c.name, target, body)
			}
			if msg == "" {
				msg = env.Message
			}
			if msg == "" || strings.ContainsAny(msg, "\r\n\t\x1b\x00\u202e") || !utf8.ValidString(msg) {
				t.Errorf("%s to %s: the message carries the raw value: %q", c.name, target, msg)
			}
			if strings.Contains(target, "maintenance_mode_update") && !strings.Contains(body, `"__type":"Validation Error"`) {
				t.Errorf("%s to %s: %s", c.name, target, body)
			}
			if len(body) > 600 {
				t.Errorf("%s to %s: a %d-byte answer", c.name, target, len(body))
			}
		}
	}
	// Through real HTTP: an empty value, a long one, two headers.
	for _, hdr := range [][]string{{""}, {strings.Repeat("x", 201)}, {"alice", "alice"}} {
		req, _ := http.NewRequest("POST", r.srv.URL+api.PathMode, strings.NewReader(`{"mode": "down"}`))
		req.Header.Set("Authorization", "Bearer "+opsToken)
		req.Header[api.ActorHeader] = hdr
		res, err := r.srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusBadRequest {
			t.Errorf("%d-byte value x%d over HTTP: %d", len(hdr[0]), len(hdr), res.StatusCode)
		}
	}
	if st := r.status(true); st.Mode != api.ModeLive || st.Version != 0 {
		t.Errorf("the mode changed: %s at version %d", st.Mode, st.Version)
	}
	if es := auditEntries(t, r.audit); len(es) != 0 {
		t.Errorf("audited: %+v", es)
	}
	if v := scrapeAuthMetric(t, r, "ckanops_auth_rate_limited_total"); v != "0" {
		t.Errorf("rate limited %s times", v)
	}
	if res := r.setMode(`{"mode": "read-only"}`, opsAs(alice)...); res.status != 200 {
		t.Fatalf("a good value afterwards: %d %s", res.status, res.body)
	}
}

// RQ suspend and resume record the person.
func TestActorHeaderOnJobs(t *testing.T) {
	rd := testredis.Start(t)
	r := newRig(t, withChecks(config.ChecksConfig{Redis: config.SecretURL(rd.URL()), Interval: config.Duration{Duration: time.Hour}}))
	if res, _ := r.jobs("suspend", `{"reason": "snapshot"}`, opsAs(alice)...); res.status != 200 {
		t.Fatalf("suspend: %d %s", res.status, res.body)
	}
	if res, _ := r.jobs("resume", "", opsAs("ssh:bob (SHA256:XyZ)")...); res.status != 200 {
		t.Fatalf("resume: %d %s", res.status, res.body)
	}
	if res, _ := r.jobs("suspend", "", "Authorization", ckansim.SysadminToken, api.ActorHeader, alice); res.status != http.StatusForbidden {
		t.Fatalf("suspend by a sysadmin naming another: %d %s", res.status, res.body)
	}
	got := r.auditEvents("rq-")
	if len(got) != 2 || got[0].Event != "rq-suspend" || got[0].Actor != aliceVia ||
		got[1].Event != "rq-resume" || got[1].Actor != "ssh:bob (SHA256:XyZ) via ops-token" {
		t.Fatalf("audit: %+v", got)
	}
}

// Learning actions records the person.
func TestActorHeaderOnActionsLearn(t *testing.T) {
	r := newRig(t, func(o *Options) { o.LearnedFile = filepath.Join(t.TempDir(), "test.learned.json") })
	r.mustMode(api.ModeReadOnly, "")
	if res := r.do("GET", "/api/3/action/nonexistent_action", nil); res.status != http.StatusServiceUnavailable {
		t.Fatalf("unknown action: %d", res.status)
	}
	if res := r.do("POST", api.PathActionsLearn, nil, opsAs(alice)...); res.status != 200 {
		t.Fatalf("learn: %d %s", res.status, res.body)
	}
	got := r.auditEvents("actions-learned")
	if len(got) != 1 || got[0].Actor != aliceVia {
		t.Fatalf("audit: %+v", got)
	}
}

// actorRunbookGate is a gate in front of ckansim with a light runbook
// engine (no databases), sharing the site's runbook through rdb if set.
func actorRunbookGate(t *testing.T, rdb *redis.Client, holder string) (*rig, *runbook.Engine) {
	t.Helper()
	dir := t.TempDir()
	storage := filepath.Join(dir, "storage")
	must(t, os.MkdirAll(filepath.Join(storage, "resources"), 0o755))
	snaps := filepath.Join(dir, "snapshots")
	must(t, os.Mkdir(snaps, 0o750))
	checks := config.ChecksConfig{StoragePath: storage}
	r := newRig(t, withChecks(checks))
	site, err := r.gate.RunbookSite(r.srv.URL)
	must(t, err)
	o := runbook.Options{Site: site, JournalDir: filepath.Join(dir, "journal"), Holder: holder,
		Snapshot: config.SnapshotConfig{Dir: snaps, StoragePath: storage, Keep: 3}, Checks: checks, Poll: 20 * time.Millisecond}
	if rdb != nil {
		o.Shared, o.Lock = runbook.NewShared(rdb, "test"), runbook.NewRedisLock(rdb, "test", 3*time.Second)
	}
	e, err := runbook.Open(o)
	must(t, err)
	t.Cleanup(func() { e.Close() })
	r.gate.AttachRunbook(e)
	return r, e
}

// actorClient is a console's client of r that names its operator.
func actorClient(t *testing.T, r *rig, actor string) *ckanclient.Client {
	t.Helper()
	c, err := ckanclient.New(r.srv.URL, ckanclient.Options{Token: opsToken, TokenStyle: ckanclient.AuthBearer, Retries: -1, Actor: actor})
	must(t, err)
	return c
}

// waitEnable waits until the runbook waits at enable, confirming
// preflight (its warnings) on the way.
func waitEnable(t *testing.T, c *ckanclient.Client) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		rb, err := c.Runbook(context.Background())
		must(t, err)
		switch {
		case rb.State == api.RunbookWaiting && rb.Waiting != nil && rb.Waiting.Step == api.StepEnable:
			return
		case rb.State == api.RunbookWaiting && rb.Waiting != nil && rb.Waiting.Step == api.StepPreflight:
			_, err := c.ConfirmStep(context.Background(), api.RunbookAction{Step: api.StepPreflight})
			must(t, err)
		case rb.State != api.RunbookRunning && rb.State != api.RunbookWaiting, time.Now().After(deadline):
			t.Fatalf("the runbook does not wait at enable: %+v", rb)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// eventBy reports whether the journal holds an event of kind (at step, if
// not empty) by actor whose message names actor.
func eventBy(e *runbook.Engine, kind, step, actor string) bool {
	evs, _, _ := e.Events(0)
	for _, ev := range evs {
		if ev.Kind == kind && (step == "" || ev.Step == step) && ev.Actor == actor && strings.Contains(ev.Message, actor) {
			return true
		}
	}
	return false
}

const bob = "ssh:bob (SHA256:XyZ)"

var bobVia = bob + " via ops-token"

// A runbook started and confirmed through a console that names its
// operators (ckanclient's Actor): the runbook, its events, the mode the
// confirmed enable step sets and the audit log all name the person.
func TestActorHeaderOnTheRunbook(t *testing.T) {
	r, e := actorRunbookGate(t, nil, "")
	ac, bc := actorClient(t, r, alice), actorClient(t, r, bob)
	ctx := context.Background()
	rb, err := ac.StartRunbook(ctx, api.RunbookOptions{Message: "upgrade", SkipMigrate: true})
	must(t, err)
	if rb.Actor != aliceVia {
		t.Errorf("the runbook's actor %q, want %q", rb.Actor, aliceVia)
	}
	waitEnable(t, bc)
	_, err = bc.ConfirmStep(ctx, api.RunbookAction{Step: api.StepEnable, SiteName: "test", Reason: "go"})
	must(t, err)
	waitFor(t, "the enable step's mode change", func() bool { return r.status(true).Mode == api.ModeReadOnly })
	if st := r.status(true); st.Actor != bobVia {
		t.Errorf("the mode record's actor %q, want the confirmer, %q", st.Actor, bobVia)
	}
	if !eventBy(e, api.EventStarted, "", aliceVia) || !eventBy(e, api.EventConfirmed, api.StepEnable, bobVia) {
		evs, _, _ := e.Events(0)
		t.Errorf("no start by alice or enable confirmed by bob: %+v", evs)
	}
	var confirmAudited, modeAudited bool
	for _, a := range r.auditEvents("") {
		switch {
		case a.Event == "runbook-confirm" && a.To == api.StepEnable:
			confirmAudited = a.Actor == bobVia && a.Reason == "go"
		case a.Event == "mode" && a.To == "read-only":
			modeAudited = a.Actor == bobVia
		}
	}
	if !confirmAudited || !modeAudited {
		t.Errorf("audit (confirm %v, mode %v): %+v", confirmAudited, modeAudited, r.auditEvents(""))
	}

	// A CKAN sysadmin may not act on the runbook in another's name.
	res := r.do("POST", api.PathRunbookAbort, strings.NewReader(`{"disable": true}`),
		"Authorization", ckansim.SysadminToken, api.ActorHeader, alice, "Content-Type", "application/json")
	if res.status != http.StatusForbidden {
		t.Errorf("abort by a sysadmin naming another: %d %s", res.status, res.body)
	}
	if _, err := ac.AbortRunbook(ctx, api.RunbookAction{Disable: true, Reason: "test over"}); err != nil {
		t.Fatal(err)
	}
	waitRunbookRests(t, e)
	if !eventBy(e, api.EventAborted, "", aliceVia) {
		evs, _, _ := e.Events(0)
		t.Errorf("no abort by alice: %+v", evs)
	}
}

// Two gates share the site's runbook through Redis: an action sent to the
// gate that does not run it is forwarded to the one that does, with the
// actor the first gate authenticated.
func TestActorHeaderOnAForwardedRunbookAction(t *testing.T) {
	srv := testredis.Start(t)
	rdbA := redis.NewClient(must1(t, redis.ParseURL)(srv.URL()))
	rdbB := redis.NewClient(must1(t, redis.ParseURL)(srv.URL()))
	t.Cleanup(func() { rdbA.Close(); rdbB.Close() })
	ra, ea := actorRunbookGate(t, rdbA, "gate-a")
	rb, eb := actorRunbookGate(t, rdbB, "gate-b")
	ctx := context.Background()
	if _, err := actorClient(t, ra, alice).StartRunbook(ctx, api.RunbookOptions{Message: "upgrade", SkipMigrate: true}); err != nil {
		t.Fatal(err)
	}
	bc := actorClient(t, rb, bob) // to the gate that does not run it
	waitEnable(t, bc)
	if _, err := bc.ConfirmStep(ctx, api.RunbookAction{Step: api.StepEnable, SiteName: "test"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the enable step's mode change on gate-a", func() bool { return ra.status(true).Mode == api.ModeReadOnly })
	if st := ra.status(true); st.Actor != bobVia {
		t.Errorf("the mode record's actor %q, want %q", st.Actor, bobVia)
	}
	if !eventBy(ea, api.EventConfirmed, api.StepEnable, bobVia) {
		evs, _, _ := ea.Events(0)
		t.Errorf("no enable confirmed by bob on the running gate: %+v", evs)
	}
	if _, err := actorClient(t, rb, alice).AbortRunbook(ctx, api.RunbookAction{Disable: true}); err != nil {
		t.Fatal(err)
	}
	waitRunbookRests(t, ea)
	waitRunbookRests(t, eb)
	if !eventBy(ea, api.EventAborted, "", aliceVia) {
		evs, _, _ := ea.Events(0)
		t.Errorf("no abort by alice on the running gate: %+v", evs)
	}
}

// must1 returns f's value, failing t on its error.
func must1[A, V any](t *testing.T, f func(A) (V, error)) func(A) V {
	return func(a A) V {
		t.Helper()
		v, err := f(a)
		must(t, err)
		return v
	}
}
