package ckanclient

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/ckanops/ckanops/api"
)

// Names of gate calls, as errors show them.
const (
	gateStatusCall   = "gate status"
	gateModeCall     = "gate mode"
	gateHealthCall   = "gate health"
	gateJobsCall     = "gate jobs"
	gateAuditCall    = "gate audit"
	gateActionsCall  = "gate actions"
	gateScheduleCall = "gate schedule"
)

// Status reads the gate's mode record (GET /-/ckanops/status). It sends
// the token when one is set, and then gets the in-flight writes, the
// per-gate versions and the store's health too.
func (c *Client) Status(ctx context.Context) (*api.Status, error) {
	var s api.Status
	if err := c.gateCall(ctx, call{method: http.MethodGet, path: api.PathStatus, name: gateStatusCall, retry: true}, &s); err != nil {
		return nil, err
	}
	return &s, nil
}

// SetMode asks the gate to change the mode (POST /-/ckanops/mode) and
// returns the new record. It is never retried. If req.ExpectVersion is set
// and someone changed the mode since, the error is a *ConflictError
// holding the current record.
func (c *Client) SetMode(ctx context.Context, req api.ModeRequest) (*api.Status, error) {
	if err := req.Validate(); err != nil {
		return nil, fmt.Errorf("%s at %s: %w", gateModeCall, redactURL(c.urlFor(api.PathMode)), err)
	}
	body, err := json.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("%s: encode request: %w", gateModeCall, err)
	}
	var s api.Status
	k := call{method: http.MethodPost, path: api.PathMode, name: gateModeCall, body: body, expect: req.ExpectVersion}
	if err := c.gateCall(ctx, k, &s); err != nil {
		return nil, err
	}
	return &s, nil
}

// Schedule reads the site's planned window (GET /-/ckanops/schedule;
// needs the token).
func (c *Client) Schedule(ctx context.Context) (*api.ScheduleState, error) {
	var s api.ScheduleState
	if err := c.gateCall(ctx, call{method: http.MethodGet, path: api.PathSchedule, name: gateScheduleCall, retry: true}, &s); err != nil {
		return nil, err
	}
	return &s, nil
}

// SetSchedule plans a maintenance window (POST /-/ckanops/schedule) and
// returns the site's status with it; never retried. With
// req.ExpectVersion, a concurrent change is a *ConflictError.
func (c *Client) SetSchedule(ctx context.Context, req api.ScheduleRequest) (*api.Status, error) {
	if err := req.Validate(time.Now()); err != nil {
		return nil, fmt.Errorf("%s at %s: %w", gateScheduleCall, redactURL(c.urlFor(api.PathSchedule)), err)
	}
	body, err := json.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("%s: encode request: %w", gateScheduleCall, err)
	}
	var s api.Status
	k := call{method: http.MethodPost, path: api.PathSchedule, name: gateScheduleCall, body: body, expect: req.ExpectVersion}
	if err := c.gateCall(ctx, k, &s); err != nil {
		return nil, err
	}
	return &s, nil
}

// CancelSchedule drops the site's planned window (DELETE
// /-/ckanops/schedule); expect, when not nil, makes it a compare-and-set.
// Never retried.
func (c *Client) CancelSchedule(ctx context.Context, expect *int64, reason string) (*api.Status, error) {
	q := url.Values{}
	if expect != nil {
		q.Set("expect_version", strconv.FormatInt(*expect, 10))
	}
	if reason != "" {
		q.Set("reason", reason)
	}
	var s api.Status
	k := call{method: http.MethodDelete, path: api.PathSchedule, name: gateScheduleCall, query: q, expect: expect}
	if err := c.gateCall(ctx, k, &s); err != nil {
		return nil, err
	}
	return &s, nil
}

// SuspendJobs suspends CKAN's RQ workers through the gate (POST
// /-/ckanops/jobs/suspend), as RQ's own "rq suspend" does; never retried.
func (c *Client) SuspendJobs(ctx context.Context, req api.JobsRequest) (*api.JobsState, error) {
	return c.jobs(ctx, api.PathJobsSuspend, req)
}

// ResumeJobs resumes CKAN's RQ workers (POST /-/ckanops/jobs/resume).
func (c *Client) ResumeJobs(ctx context.Context, req api.JobsRequest) (*api.JobsState, error) {
	return c.jobs(ctx, api.PathJobsResume, req)
}

func (c *Client) jobs(ctx context.Context, path string, req api.JobsRequest) (*api.JobsState, error) {
	body, err := json.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("%s: encode request: %w", gateJobsCall, err)
	}
	var s api.JobsState
	if err := c.gateCall(ctx, call{method: http.MethodPost, path: path, name: gateJobsCall, body: body}, &s); err != nil {
		return nil, err
	}
	return &s, nil
}

// Health reads the gate's checks report (GET /-/ckanops/health; needs the token).
func (c *Client) Health(ctx context.Context) (*api.Report, error) {
	var r api.Report
	if err := c.gateCall(ctx, call{method: http.MethodGet, path: api.PathHealth, name: gateHealthCall, retry: true}, &r); err != nil {
		return nil, err
	}
	return &r, nil
}

func (c *Client) gateCall(ctx context.Context, k call, result any) error {
	k.isGate = true
	resp, err := c.do(ctx, k)
	if err != nil {
		return err
	}
	return c.decodeGate(answerOf(resp), k, result)
}

// AuditTail reads the last n entries of the gate's audit log (GET
// /-/ckanops/audit?tail=N; needs the token), oldest first.
func (c *Client) AuditTail(ctx context.Context, n int) ([]api.AuditEntry, error) {
	var a api.AuditTail
	k := call{method: http.MethodGet, path: api.PathAudit, name: gateAuditCall, retry: true, query: url.Values{"tail": {strconv.Itoa(n)}}}
	if err := c.gateCall(ctx, k, &a); err != nil {
		return nil, err
	}
	return a.Entries, nil
}

// Actions lists the actions the gate knows and the unknown ones it has
// seen (GET /-/ckanops/actions).
func (c *Client) Actions(ctx context.Context) (*api.ActionList, error) {
	var l api.ActionList
	if err := c.gateCall(ctx, call{method: http.MethodGet, path: api.PathActions, name: gateActionsCall, retry: true}, &l); err != nil {
		return nil, err
	}
	return &l, nil
}

// LearnActions makes the gate ask CKAN about every unknown action it has
// seen (POST /-/ckanops/actions/learn); it may take minutes.
func (c *Client) LearnActions(ctx context.Context) (*api.ActionList, error) {
	var l api.ActionList
	if err := c.gateCall(ctx, call{method: http.MethodPost, path: api.PathActionsLearn, name: gateActionsCall, slow: true}, &l); err != nil {
		return nil, err
	}
	return &l, nil
}
