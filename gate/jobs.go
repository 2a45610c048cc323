package gate

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/ckanops/ckanops/api"

	"github.com/ckanops/ckanops/checks"
)

// RQ's workers are CKAN's background writers. The drain stops them the
// way `rq suspend` does, through the Redis of [checks] redis:
//
//	POST /-/ckanops/jobs/suspend   body (optional) {"for": "2h", "reason": "..."}
//	POST /-/ckanops/jobs/resume    body (optional) {"reason": "..."}
//
// A suspended worker finishes the job it runs and starts no other, so a
// drain also waits for the running count of the redis check to reach 0.
// Both calls need the token and are audited.

func (g *Gate) serveJobsSuspend(w http.ResponseWriter, r *http.Request) { g.serveJobs(w, r, true) }
func (g *Gate) serveJobsResume(w http.ResponseWriter, r *http.Request)  { g.serveJobs(w, r, false) }

func (g *Gate) serveJobs(w http.ResponseWriter, r *http.Request, suspend bool) {
	actor, aerr := g.authenticate(r)
	if aerr != nil {
		writeJSON(w, aerr.status, map[string]string{"error": aerr.msg})
		return
	}
	req, ttl, err := decodeJobsRequest(r.Body, suspend)
	if err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
		return
	}
	st, err := g.setJobs(r.Context(), suspend, ttl, actor, req.Reason, g.clientAddr(r))
	switch {
	case errors.Is(err, errRQNotConfigured):
		writeJSON(w, http.StatusConflict, map[string]string{"error": err.Error()})
		return
	case err != nil:
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, st)
}

var errRQNotConfigured = errors.New("RQ is not configured: set redis (CKAN's ckan.redis.url) in gate.toml's [checks]")

// setJobs suspends or resumes RQ's workers, audits the change, and
// returns the state after it with a fresh redis check.
func (g *Gate) setJobs(ctx context.Context, suspend bool, ttl time.Duration, actor, reason, remote string) (api.JobsState, error) {
	url := g.opts.Checks.Redis
	if url == "" {
		return api.JobsState{}, errRQNotConfigured
	}
	timeout := g.healthRunners().runner.Timeout()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	t := g.clock()
	var was bool
	var err error
	if suspend {
		was, err = checks.SuspendRQ(ctx, url, ttl)
	} else {
		was, err = checks.ResumeRQ(ctx, url)
	}
	if err != nil {
		g.log.Error("RQ suspension not changed", "suspend", suspend, "actor", actor, "err", err.Error())
		return api.JobsState{}, fmt.Errorf("RQ's workers were not %s: %w", rqState(suspend), err)
	}
	event := "rq-resume"
	msg := ""
	st := api.JobsState{Suspended: suspend, Changed: was != suspend}
	if suspend {
		event = "rq-suspend"
		if ttl > 0 {
			u := t.Add(ttl).Truncate(time.Second)
			st.Until = &u
			msg = "for " + ttl.String()
		}
	}
	g.audit(AuditEntry{Time: t, Event: event, Actor: actor, From: rqState(was), To: rqState(suspend),
		Message: msg, Reason: reason, Remote: remote})
	g.log.Info("RQ workers "+rqState(suspend), "was", rqState(was), "actor", actor, "remote", remote, "for", msg)

	g.healthRunners().runner.Invalidate() // the cached report would show the old state
	rep := g.healthRunners().rq.Fresh(ctx)
	if len(rep.Checks) == 1 {
		st.Check = rep.Checks[0]
	}
	return st, nil
}

// rqState names the state of RQ's workers in the audit log.
func rqState(suspended bool) string {
	if suspended {
		return "suspended"
	}
	return "resumed"
}

func decodeJobsRequest(body io.Reader, suspend bool) (api.JobsRequest, time.Duration, error) {
	var req api.JobsRequest
	dec := json.NewDecoder(io.LimitReader(body, maxModeBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil && !errors.Is(err, io.EOF) {
		return req, 0, fmt.Errorf("bad jobs request body (want nothing, or JSON {\"for\": \"2h\", \"reason\": \"...\"}): %v", err)
	}
	if err := checkText("reason", req.Reason, maxReasonLen); err != nil {
		return req, 0, err
	}
	if req.For == "" {
		return req, 0, nil
	}
	if !suspend {
		return req, 0, errors.New(`"for" is for suspend only`)
	}
	d, err := time.ParseDuration(req.For)
	if err != nil || d < time.Second {
		return req, 0, fmt.Errorf("for %q is not a duration of at least 1s, such as 90m or 2h30m", req.For)
	}
	return req, d, nil
}
