package ckanclient_test

import (
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/ckanops/ckanops/api"

	"github.com/ckanops/ckanops/ckanclient"
)

const opsTokenForTest = "0f3c9a7e5b1d2468ace0b2d4f6a8c1e3579bdf02468ace13579bdf0a2c4e6f81"

// actorSite is a gate in front of CKAN that answers every call it knows
// and records, per request, the method, the path and the Ckanops-Actor
// headers it carried.
type actorSite struct {
	*server
	mu   sync.Mutex
	seen []seenActor
}

type seenActor struct {
	method, path string
	actors       []string
}

const statusJSON = `{"site":"prod","mode":"live","phase":"live","message":"","since":"2026-11-29T12:00:00Z","until":null,"version":3}`

func newActorSite(t *testing.T) *actorSite {
	s := &actorSite{}
	s.server = newServer(t, func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.seen = append(s.seen, seenActor{r.Method, r.URL.Path, r.Header.Values(api.ActorHeader)})
		s.mu.Unlock()
		p := r.URL.Path
		switch {
		case p == api.PathStatus || p == api.PathMode:
			fixed(200, "application/json", statusJSON)(w, r)
		case p == api.PathHealth:
			fixed(200, "application/json", `{"site":"prod","checks":[]}`)(w, r)
		case p == api.PathAudit:
			fixed(200, "application/json", `{"entries":[]}`)(w, r)
		case p == api.PathJobsSuspend:
			fixed(200, "application/json", `{"suspended":true,"changed":true,"until":null,"check":{"name":"redis","status":"warn","summary":"suspended"}}`)(w, r)
		case p == "/-/ckanops/metrics":
			fixed(200, "text/plain; version=0.0.4", "ckanops_in_flight_writes 0\n")(w, r)
		case p == api.PathRunbookEvents:
			fixed(200, "text/event-stream", "")(w, r) // the runbook has ended
		case strings.HasPrefix(p, "/api/3/action/"):
			fixed(200, "application/json", `{"help":"h","success":true,"result":{"ckan_version":"2.11.5"}}`)(w, r)
		default:
			fixed(404, "application/json", `{"error":"no such endpoint"}`)(w, r)
		}
	})
	return s
}

func (s *actorSite) requests() []seenActor {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]seenActor(nil), s.seen...)
}

// Options.Actor goes with every call to the gate's control API, and never
// with a call to CKAN's own API.
func TestActorHeaderOnGateCallsOnly(t *testing.T) {
	s := newActorSite(t)
	const actor = "ssh:alice (SHA256:AbCdEf0123456789)"
	c := newClient(t, s.URL, ckanclient.Options{Token: opsTokenForTest, TokenStyle: ckanclient.AuthBearer, Actor: actor})

	if _, err := c.Status(ctx(t)); err != nil {
		t.Fatal(err)
	}
	if _, err := c.SetMode(ctx(t), api.ModeRequest{Mode: api.ModeReadOnly, Reason: "test"}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Health(ctx(t)); err != nil {
		t.Fatal(err)
	}
	if _, err := c.AuditTail(ctx(t), 5); err != nil {
		t.Fatal(err)
	}
	if _, err := c.SuspendJobs(ctx(t), api.JobsRequest{Reason: "test"}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Metrics(ctx(t)); err != nil {
		t.Fatal(err)
	}
	if err := c.RunbookEvents(ctx(t), 0, func(api.RunbookEvent) error { return nil }); err != nil {
		t.Fatal(err)
	}
	if _, err := c.StatusShow(ctx(t)); err != nil {
		t.Fatal(err)
	}
	if err := c.Call(ctx(t), "package_patch", map[string]string{"id": "x"}, nil); err != nil {
		t.Fatal(err)
	}

	reqs := s.requests()
	if len(reqs) != 9 {
		t.Fatalf("%d requests reached the server, want 9: %+v", len(reqs), reqs)
	}
	for _, r := range reqs {
		gate := strings.HasPrefix(r.path, "/-/ckanops/")
		switch {
		case gate && (len(r.actors) != 1 || r.actors[0] != actor):
			t.Errorf("%s %s: Ckanops-Actor %q, want exactly %q", r.method, r.path, r.actors, actor)
		case !gate && len(r.actors) != 0:
			t.Errorf("%s %s (CKAN's API): Ckanops-Actor %q sent", r.method, r.path, r.actors)
		}
	}

	// Without Actor, no call carries the header.
	s2 := newActorSite(t)
	c2 := newClient(t, s2.URL, ckanclient.Options{Token: opsTokenForTest, TokenStyle: ckanclient.AuthBearer})
	if _, err := c2.Status(ctx(t)); err != nil {
		t.Fatal(err)
	}
	if err := c2.RunbookEvents(ctx(t), 0, func(api.RunbookEvent) error { return nil }); err != nil {
		t.Fatal(err)
	}
	for _, r := range s2.requests() {
		if len(r.actors) != 0 {
			t.Errorf("%s %s: Ckanops-Actor %q sent without Options.Actor", r.method, r.path, r.actors)
		}
	}
}

// New refuses an actor the gate would refuse, before any request.
func TestBadActorFailsInNew(t *testing.T) {
	for _, bad := range []string{"alice\r\nX-Evil: 1", "alice\x1b[2J", strings.Repeat("a", api.MaxActorLen+1), " alice", "alice\t"} {
		_, err := ckanclient.New("http://127.0.0.1:1", ckanclient.Options{Actor: bad})
		if err == nil {
			t.Errorf("New accepted actor %q", bad)
			continue
		}
		if msg := err.Error(); !strings.Contains(msg, api.ActorHeader) || strings.ContainsAny(msg, "\r\n\t\x1b") {
			t.Errorf("actor %q: error %q", bad, msg)
		}
	}
	if _, err := ckanclient.New("http://127.0.0.1:1", ckanclient.Options{Actor: "ssh:alice (SHA256:AbC)"}); err != nil {
		t.Errorf("a good actor refused: %v", err)
	}
}

// A read-only client refuses, before anything is sent, every gate call
// that would change the site; it reads, and CKAN's API is unaffected.
func TestReadOnlyClientRefusesChangesBeforeSending(t *testing.T) {
	s := newActorSite(t)
	const why = "ssh:bob is a viewer (changing a site needs the operator permission: a key in operators.keys)"
	c := newClient(t, s.URL, ckanclient.Options{Token: opsTokenForTest, TokenStyle: ckanclient.AuthBearer,
		Actor: "ssh:bob (SHA256:XyZ)", ReadOnly: why})

	changes := []struct {
		name string
		path string
		call func() error
	}{
		{"SetMode", api.PathMode, func() error {
			_, err := c.SetMode(ctx(t), api.ModeRequest{Mode: api.ModeReadOnly})
			return err
		}},
		{"SuspendJobs", api.PathJobsSuspend, func() error { _, err := c.SuspendJobs(ctx(t), api.JobsRequest{}); return err }},
		{"ResumeJobs", api.PathJobsResume, func() error { _, err := c.ResumeJobs(ctx(t), api.JobsRequest{}); return err }},
		{"LearnActions", api.PathActionsLearn, func() error { _, err := c.LearnActions(ctx(t)); return err }},
		{"StartRunbook", api.PathRunbook, func() error { _, err := c.StartRunbook(ctx(t), api.RunbookOptions{}); return err }},
		{"ConfirmStep", api.PathRunbookConfirm, func() error {
			_, err := c.ConfirmStep(ctx(t), api.RunbookAction{Step: api.StepEnable, SiteName: "prod"})
			return err
		}},
		{"AbortRunbook", api.PathRunbookAbort, func() error {
			_, err := c.AbortRunbook(ctx(t), api.RunbookAction{Disable: true})
			return err
		}},
	}
	for _, ch := range changes {
		err := ch.call()
		ro := as[*ckanclient.ReadOnlyError](t, err)
		if ro.Method != http.MethodPost || ro.Path != ch.path || ro.Reason != why {
			t.Errorf("%s: %+v", ch.name, ro)
		}
		if want := why + ": POST " + ch.path + " would change the site; nothing was sent"; err.Error() != want {
			t.Errorf("%s: error %q, want %q", ch.name, err.Error(), want)
		}
	}
	if n := s.hits.Load(); n != 0 {
		t.Fatalf("%d requests reached the server from a read-only client's changes", n)
	}

	// Reads go through, and CKAN's API is unaffected, POST included.
	if _, err := c.Status(ctx(t)); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Health(ctx(t)); err != nil {
		t.Fatal(err)
	}
	if err := c.RunbookEvents(ctx(t), 0, func(api.RunbookEvent) error { return nil }); err != nil {
		t.Fatal(err)
	}
	if err := c.Call(ctx(t), "package_patch", map[string]string{"id": "x"}, nil); err != nil {
		t.Fatal(err)
	}
	if n := s.hits.Load(); n != 4 {
		t.Fatalf("%d requests reached the server, want 4 (three gate reads and one CKAN call)", n)
	}
}
