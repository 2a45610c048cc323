package gate

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/ckanops/ckanops/api"

	"github.com/ckanops/ckanops/ckanclient"
	"github.com/ckanops/ckanops/runbook"
)

// The gate runs its site's runbook (package runbook). It serves the
// runbook API behind its own authentication, and lends the engine its
// mode changes, checks, RQ control and audit log through runbookSite.

// AttachRunbook makes the gate serve e's API under /-/ckanops/runbook.
func (g *Gate) AttachRunbook(e *runbook.Engine) { g.runbook.Store(e) }

// RunbookUnavailable records why the runbook engine could not be opened:
// the runbook API answers 503 with the reason and the gate probe fails,
// while the proxy and the mode keep working.
func (g *Gate) RunbookUnavailable(err error) {
	msg := err.Error()
	g.runbookDown.Store(&msg)
}

// runbookProblem is why the runbook is unavailable, or "".
func (g *Gate) runbookProblem() string {
	if p := g.runbookDown.Load(); p != nil {
		return *p
	}
	return ""
}

// RunbookSite returns the gate as the runbook engine's Site. selfURL is
// where the gate itself listens: the verify and disable steps ask CKAN
// through it, as a client would.
func (g *Gate) RunbookSite(selfURL string) (runbook.Site, error) {
	c, err := ckanclient.New(selfURL, ckanclient.Options{Timeout: 30 * time.Second, Retries: -1,
		UserAgent: "ckanops-gate-runbook", Logger: g.log})
	if err != nil {
		return nil, err
	}
	return &runbookSite{g: g, ckan: c}, nil
}

func (g *Gate) serveRunbook(w http.ResponseWriter, r *http.Request) {
	actor, aerr := g.authenticate(r)
	if aerr != nil {
		writeJSON(w, aerr.status, map[string]string{"error": aerr.msg})
		return
	}
	e := g.runbook.Load()
	if why := g.runbookProblem(); e == nil && why != "" {
		w.Header().Set("Retry-After", "60")
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "the runbook is unavailable on this gate: " + why +
			"; the proxy and the mode work. Fix it and restart the gate"})
		return
	}
	if e == nil {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "this gate runs no runbook engine"})
		return
	}
	e.ServeRunbook(w, r, actor)
}

type runbookSite struct {
	g    *Gate
	ckan *ckanclient.Client
}

func (s *runbookSite) Name() string { return s.g.opts.Site }

func (s *runbookSite) SetMode(ctx context.Context, req api.ModeRequest, actor string) (api.Status, error) {
	st, err := s.g.changeMode(ctx, req, actor, "runbook")
	if err != nil {
		return st, err
	}
	// The change's own answer; the full status adds the gates.
	full := s.g.status(ctx, true)
	if full.Version == st.Version {
		return full, nil
	}
	return st, nil
}

func (s *runbookSite) Status(ctx context.Context) api.Status { return s.g.status(ctx, true) }

func (s *runbookSite) Health(ctx context.Context, fresh bool) api.Report {
	return s.g.Health(ctx, fresh)
}

// DrainHealth probes, fresh, only what the drain waits on: Redis (RQ's
// running jobs) and the databases (their write transactions).
func (s *runbookSite) DrainHealth(ctx context.Context) api.Report {
	rep := s.g.healthRunners().runner.Some(ctx, func(name string) bool {
		return name == api.ProbeRedis || api.IsDatabaseProbe(name)
	})
	rep.Site = s.g.opts.Site
	return rep
}

func (s *runbookSite) SuspendJobs(ctx context.Context, actor, reason string) (api.JobsState, error) {
	return s.jobs(ctx, true, actor, reason)
}

func (s *runbookSite) ResumeJobs(ctx context.Context, actor, reason string) (api.JobsState, error) {
	return s.jobs(ctx, false, actor, reason)
}

func (s *runbookSite) jobs(ctx context.Context, suspend bool, actor, reason string) (api.JobsState, error) {
	st, err := s.g.setJobs(ctx, suspend, 0, actor, reason, "runbook")
	if errors.Is(err, errRQNotConfigured) {
		return st, runbook.ErrNotConfigured
	}
	return st, err
}

func (s *runbookSite) CKAN() *ckanclient.Client { return s.ckan }

func (s *runbookSite) Audit(event, actor, from, to, message, reason string) {
	s.g.audit(AuditEntry{Time: s.g.clock(), Event: event, Actor: actor, From: from, To: to,
		Message: message, Reason: reason, Remote: "runbook"})
}
