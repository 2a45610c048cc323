package checks

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/ckanops/ckanops/api"

	"github.com/ckanops/ckanops/config"
)

// Solr probes CKAN's Solr core with its ping handler.
type Solr struct {
	url    config.SecretURL
	client *http.Client
}

// NewSolr returns the probe of the Solr core at url (CKAN's solr_url; a
// user name and password in it are sent as basic auth).
func NewSolr(url config.SecretURL) *Solr {
	return &Solr{url: url, client: &http.Client{
		Transport: probeTransport(),
		// Solr answers the ping itself; a redirect is a misconfiguration
		// worth seeing, not following.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

func (p *Solr) Name() string { return api.ProbeSolr }

// probeTransport is an HTTP transport for probes: no environment proxy,
// no idle connection kept between rounds.
func probeTransport() *http.Transport {
	return &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{KeepAlive: -1}).DialContext,
		DisableKeepAlives:   true,
		TLSHandshakeTimeout: DefaultTimeout,
	}
}

// Check calls <solr>/admin/ping?wt=json.
func (p *Solr) Check(ctx context.Context) api.CheckResult {
	res := api.CheckResult{Status: api.CheckFail}
	u, err := url.Parse(p.url.Reveal())
	if err != nil || u.Host == "" {
		res.Summary = "checks.solr is not a URL the probe can use"
		return res
	}
	u.Path = strings.TrimSuffix(u.Path, "/") + "/admin/ping"
	u.RawPath = ""
	q := u.Query()
	q.Set("wt", "json")
	u.RawQuery = q.Encode()
	shown := u.Host + u.Path
	where := "Solr at " + shown
	d := &api.SolrDetails{URL: config.Redact(u.String())}
	res.Solr = d

	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		res.Summary = scrub(err.Error(), p.url)
		return res
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "ckanops-probe")
	t0 := time.Now()
	resp, err := p.client.Do(req)
	if err != nil {
		if s := netProblem(ctx, where, timeoutOf(ctx), err); s != "" {
			res.Summary = scrub(s, p.url)
		} else {
			res.Summary = scrub(fmt.Sprintf("%s: %v", where, err), p.url)
		}
		return res
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	latency := time.Since(t0)
	d.LatencyMS = new(ms(latency))
	d.HTTPStatus = new(resp.StatusCode)
	if err != nil {
		res.Summary = scrub(fmt.Sprintf("%s: reading its answer: %v", where, netProblemOr(ctx, where, err)), p.url)
		return res
	}
	var ping struct {
		Status         string `json:"status"`
		ResponseHeader struct {
			QTime int `json:"QTime"`
		} `json:"responseHeader"`
		Error struct {
			Msg string `json:"msg"`
		} `json:"error"`
	}
	jsonErr := json.Unmarshal(body, &ping)
	if resp.StatusCode != http.StatusOK {
		msg := ""
		if jsonErr == nil && ping.Error.Msg != "" {
			msg = ": " + oneLine(ping.Error.Msg, 200)
		}
		switch resp.StatusCode {
		case http.StatusUnauthorized, http.StatusForbidden:
			res.Summary = fmt.Sprintf("%s answered %s: put Solr's user and password in checks.solr (http://USER:PASSWORD@host:8983/solr/ckan)", where, resp.Status)
		case http.StatusNotFound:
			res.Summary = fmt.Sprintf("%s answered 404: no such core; checks.solr must name the core, as CKAN's solr_url does (e.g. http://127.0.0.1:8983/solr/ckan)%s", where, msg)
		default:
			res.Summary = fmt.Sprintf("%s answered %s%s", where, resp.Status, msg)
		}
		res.Summary = scrub(res.Summary, p.url)
		return res
	}
	if jsonErr != nil {
		res.Summary = fmt.Sprintf("%s answered 200 but not with Solr's JSON: is checks.solr Solr's address?", where)
		return res
	}
	d.SolrStatus = new(ping.Status)
	d.QTimeMS = new(ping.ResponseHeader.QTime)
	if !strings.EqualFold(ping.Status, "OK") {
		res.Summary = fmt.Sprintf("%s: ping status %q, not OK", where, ping.Status)
		return res
	}
	res.Status = api.CheckOK
	res.Summary = fmt.Sprintf("ping OK, %.1f ms", ms(latency))
	return res
}

func netProblemOr(ctx context.Context, where string, err error) string {
	if s := netProblem(ctx, where, timeoutOf(ctx), err); s != "" {
		return s
	}
	return err.Error()
}
