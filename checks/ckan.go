package checks

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/ckanops/ckanops/api"

	"github.com/ckanops/ckanops/ckanclient"
)

// CKAN probes the CKAN web application directly (the gate's upstream,
// never through the gate) with status_show: its version and plugins.
type CKAN struct {
	client *ckanclient.Client
}

// NewCKAN returns the probe of the CKAN at upstream, CKAN's own server.
// timeout bounds each request (the Runner's per-probe timeout also does).
func NewCKAN(upstream *url.URL, timeout time.Duration) (*CKAN, error) {
	if upstream == nil {
		return nil, fmt.Errorf("checks: CKAN probe: no upstream URL")
	}
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	tr := &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 1, IdleConnTimeout: 30 * time.Second, TLSHandshakeTimeout: timeout}
	c, err := ckanclient.New(upstream.String(), ckanclient.Options{
		Timeout: timeout, Retries: -1, UserAgent: "ckanops-probe",
		HTTPClient: &http.Client{Transport: tr},
	})
	if err != nil {
		return nil, fmt.Errorf("checks: CKAN probe: %w", err)
	}
	return &CKAN{client: c}, nil
}

func (p *CKAN) Name() string { return api.ProbeCKAN }

// Check calls status_show.
func (p *CKAN) Check(ctx context.Context) api.CheckResult {
	t0 := time.Now()
	s, err := p.client.StatusShow(ctx)
	latency := time.Since(t0)
	if err != nil {
		return api.CheckResult{Status: api.CheckFail, Summary: oneLine(err.Error(), 400),
			CKAN: &api.CKANDetails{LatencyMS: new(ms(latency))}}
	}
	return api.CheckResult{
		Status:  api.CheckOK,
		Summary: fmt.Sprintf("CKAN %s, %d plugins, %.0f ms", s.CKANVersion, len(s.Extensions), ms(latency)),
		CKAN: &api.CKANDetails{
			Version:   new(s.CKANVersion),
			Plugins:   s.Extensions,
			SiteTitle: new(s.SiteTitle),
			SiteURL:   new(s.SiteURL),
			LatencyMS: new(ms(latency)),
		},
	}
}
