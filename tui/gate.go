package tui

import (
	"context"
	"fmt"
	"time"

	"github.com/ckanops/ckanops/api"

	"github.com/ckanops/ckanops/ckanclient"
	"github.com/ckanops/ckanops/config"
)

// Gate is what the console asks of one site's gate. *ckanclient.Client
// satisfies it; tests use fakes.
type Gate interface {
	Status(ctx context.Context) (*api.Status, error)
	Health(ctx context.Context) (*api.Report, error)
	SetMode(ctx context.Context, req api.ModeRequest) (*api.Status, error)
	// SetSchedule plans a maintenance window and CancelSchedule drops it;
	// both answer the site's status. The planned window itself comes
	// with every status (api.Status.Schedule).
	SetSchedule(ctx context.Context, req api.ScheduleRequest) (*api.Status, error)
	CancelSchedule(ctx context.Context, expect *int64, reason string) (*api.Status, error)
	SuspendJobs(ctx context.Context, req api.JobsRequest) (*api.JobsState, error)
	ResumeJobs(ctx context.Context, req api.JobsRequest) (*api.JobsState, error)

	Runbook(ctx context.Context) (*api.Runbook, error)
	StartRunbook(ctx context.Context, o api.RunbookOptions) (*api.Runbook, error)
	ConfirmStep(ctx context.Context, a api.RunbookAction) (*api.Runbook, error)
	RetryStep(ctx context.Context, a api.RunbookAction) (*api.Runbook, error)
	ResumeRunbook(ctx context.Context, a api.RunbookAction) (*api.Runbook, error)
	SkipStep(ctx context.Context, a api.RunbookAction) (*api.Runbook, error)
	AbortRunbook(ctx context.Context, a api.RunbookAction) (*api.Runbook, error)
	RunbookEvents(ctx context.Context, since int64, fn func(api.RunbookEvent) error) error

	AuditTail(ctx context.Context, n int) ([]api.AuditEntry, error)
	// Metrics reads the gate's counters; nil and no error when the gate
	// serves no metrics (an older gate).
	Metrics(ctx context.Context) (*ckanclient.GateCounters, error)
}

var _ Gate = (*ckanclient.Client)(nil)

// Site is one site the console shows: its name (what an operator types
// to confirm a dangerous action), its gate, and the timeout of each call.
type Site struct {
	Name string
	URL  string // shown in the site view; may be empty
	Gate Gate
	// Timeout bounds each call to the gate; zero means
	// config.DefaultSiteTimeout.
	Timeout time.Duration
	// Warnings about the site's configuration (such as a token file
	// others may read), shown in the site view.
	Warnings []string
}

// SitesFromConfig returns a Site for every [[site]] of sites.toml, with
// a ckanclient.Client as its gate, the token sent as the CLI sends it
// (Bearer, or X-CKAN-API-Key when ckan_api_key_header is set). A site
// whose token cannot be read, or whose client cannot be built, is still
// returned, with a gate that answers every call with that error, so one
// broken site never stops the console.
//
// base gives the clients' common options (UserAgent, Actor, ReadOnly);
// each site's token, token style, timeout and retries are its own.
func SitesFromConfig(sites *config.Sites, base ckanclient.Options) []Site {
	out := make([]Site, 0, len(sites.Sites))
	for _, s := range sites.Sites {
		timeout := s.Timeout.Duration
		if timeout <= 0 {
			timeout = sites.Defaults.Timeout.Duration
		}
		if timeout <= 0 {
			timeout = config.DefaultSiteTimeout
		}
		site := Site{Name: s.Name, URL: s.URL, Timeout: timeout}
		tok, warns, err := s.Token()
		for _, w := range warns {
			site.Warnings = append(site.Warnings, w.String())
		}
		if err != nil {
			site.Gate = brokenGate{err}
			out = append(out, site)
			continue
		}
		style := ckanclient.AuthBearer
		if s.CKANAPIKeyHeader {
			style = ckanclient.AuthAPIKey
		}
		o := base
		o.Token, o.TokenStyle, o.Timeout, o.Retries = tok, style, timeout, -1
		c, err := ckanclient.New(s.URL, o)
		if err != nil {
			site.Gate = brokenGate{fmt.Errorf("site %s: %w", s.Name, err)}
		} else {
			site.Gate = c
		}
		out = append(out, site)
	}
	return out
}

// brokenGate answers every call with the error that kept the console
// from building the site's client.
type brokenGate struct{ err error }

func (g brokenGate) Status(context.Context) (*api.Status, error) { return nil, g.err }
func (g brokenGate) Health(context.Context) (*api.Report, error) { return nil, g.err }
func (g brokenGate) SetMode(context.Context, api.ModeRequest) (*api.Status, error) {
	return nil, g.err
}
func (g brokenGate) SetSchedule(context.Context, api.ScheduleRequest) (*api.Status, error) {
	return nil, g.err
}
func (g brokenGate) CancelSchedule(context.Context, *int64, string) (*api.Status, error) {
	return nil, g.err
}
func (g brokenGate) SuspendJobs(context.Context, api.JobsRequest) (*api.JobsState, error) {
	return nil, g.err
}
func (g brokenGate) ResumeJobs(context.Context, api.JobsRequest) (*api.JobsState, error) {
	return nil, g.err
}
func (g brokenGate) Runbook(context.Context) (*api.Runbook, error) { return nil, g.err }
func (g brokenGate) StartRunbook(context.Context, api.RunbookOptions) (*api.Runbook, error) {
	return nil, g.err
}
func (g brokenGate) ConfirmStep(context.Context, api.RunbookAction) (*api.Runbook, error) {
	return nil, g.err
}
func (g brokenGate) RetryStep(context.Context, api.RunbookAction) (*api.Runbook, error) {
	return nil, g.err
}
func (g brokenGate) ResumeRunbook(context.Context, api.RunbookAction) (*api.Runbook, error) {
	return nil, g.err
}
func (g brokenGate) SkipStep(context.Context, api.RunbookAction) (*api.Runbook, error) {
	return nil, g.err
}
func (g brokenGate) AbortRunbook(context.Context, api.RunbookAction) (*api.Runbook, error) {
	return nil, g.err
}
func (g brokenGate) RunbookEvents(context.Context, int64, func(api.RunbookEvent) error) error {
	return g.err
}
func (g brokenGate) AuditTail(context.Context, int) ([]api.AuditEntry, error) {
	return nil, g.err
}
func (g brokenGate) Metrics(context.Context) (*ckanclient.GateCounters, error) {
	return nil, g.err
}
