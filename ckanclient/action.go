package ckanclient

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

func actionPath(action string) string { return "/api/3/action/" + url.PathEscape(action) }

// Call POSTs params as JSON to the action and decodes the envelope's
// result into result (which may be nil). It is never retried: use it for
// writes, or for reads whose parameters GET cannot carry.
func (c *Client) Call(ctx context.Context, action string, params any, result any) error {
	return c.post(ctx, action, params, result, false)
}

// Get calls a side_effect_free action with GET and query parameters,
// retrying on connection errors, timeouts and 502/503/504.
func (c *Client) Get(ctx context.Context, action string, query url.Values, result any) error {
	k := call{method: http.MethodGet, path: actionPath(action), name: action, query: query, retry: true}
	resp, err := c.do(ctx, k)
	if err != nil {
		return err
	}
	return c.decodeAction(answerOf(resp), k, result)
}

func (c *Client) post(ctx context.Context, action string, params any, result any, idempotent bool) error {
	body := []byte("{}")
	if params != nil {
		b, err := json.Marshal(params)
		if err != nil {
			return fmt.Errorf("%s: encode parameters: %w", action, err)
		}
		body = b
	}
	k := call{method: http.MethodPost, path: actionPath(action), name: action, body: body, retry: idempotent}
	resp, err := c.do(ctx, k)
	if err != nil {
		return err
	}
	return c.decodeAction(answerOf(resp), k, result)
}

// CKANStatus is status_show's result.
type CKANStatus struct {
	CKANVersion     string   `json:"ckan_version"`
	SiteTitle       string   `json:"site_title"`
	SiteURL         string   `json:"site_url"`
	SiteDescription string   `json:"site_description"`
	Extensions      []string `json:"extensions"` // the enabled plugins
	LocaleDefault   string   `json:"locale_default"`
}

// StatusShow calls status_show: CKAN's version and plugins.
func (c *Client) StatusShow(ctx context.Context) (*CKANStatus, error) {
	var s CKANStatus
	if err := c.Get(ctx, "status_show", nil, &s); err != nil {
		return nil, err
	}
	return &s, nil
}

// User is a CKAN user as user_show returns it (the fields ckanops uses).
type User struct {
	ID          string `json:"id"`
	Name        string `json:"name"`
	DisplayName string `json:"display_name"`
	Sysadmin    bool   `json:"sysadmin"`
	State       string `json:"state"`
}

// UserShow calls user_show without an id: the user the token belongs to
// (CKAN 2.10 and later; CKAN 2.9 answers Not Found). Without a token CKAN
// refuses or answers Not Found.
func (c *Client) UserShow(ctx context.Context) (*User, error) {
	var u User
	if err := c.Get(ctx, "user_show", nil, &u); err != nil {
		if e := asAPIError(err); e != nil && e.Type == TypeNotFound {
			if c.token == "" {
				e.hint = "no token was sent, so there is no own user to show: configure a sysadmin's API token for this site"
			} else {
				e.hint = "CKAN did not recognise the token (wrong or revoked, or sent in a header this CKAN does not read: CKAN 2.11 reads it raw in Authorization), or this is CKAN 2.9, whose user_show needs an id"
			}
		}
		return nil, err
	}
	return &u, nil
}

// PackageSearchParams are package_search's common parameters. Zero values
// are not sent, so CKAN's defaults apply (Rows: 10).
type PackageSearchParams struct {
	Q     string // Solr query, e.g. "name:foo" or "water"
	FQ    string // filter query, e.g. "organization:bar"
	Rows  int
	Start int
	Sort  string // e.g. "metadata_modified desc"
}

// PackageSearchResult is package_search's result.
type PackageSearchResult struct {
	Count   int       `json:"count"`
	Results []Package `json:"results"`
}

// Package is a dataset: the fields ckanops reads, plus Raw, the whole
// object as CKAN sent it.
type Package struct {
	ID               string     `json:"id"`
	Name             string     `json:"name"`
	Title            string     `json:"title"`
	Type             string     `json:"type"`
	State            string     `json:"state"`
	Private          bool       `json:"private"`
	OwnerOrg         string     `json:"owner_org"`
	Notes            string     `json:"notes"`
	MetadataCreated  string     `json:"metadata_created"`  // CKAN's naive UTC timestamp, as sent
	MetadataModified string     `json:"metadata_modified"` // CKAN's naive UTC timestamp, as sent
	NumResources     int        `json:"num_resources"`
	Resources        []Resource `json:"resources"`

	Raw json.RawMessage `json:"-"`
}

// UnmarshalJSON keeps the whole object in Raw.
func (p *Package) UnmarshalJSON(b []byte) error {
	type fields Package
	var f fields
	if err := json.Unmarshal(b, &f); err != nil {
		return err
	}
	*p = Package(f)
	p.Raw = append(json.RawMessage(nil), b...)
	return nil
}

// Resource is one of a dataset's resources.
type Resource struct {
	ID     string `json:"id"`
	Name   string `json:"name"`
	URL    string `json:"url"`
	Format string `json:"format"`
	State  string `json:"state"`
}

// PackageSearch calls package_search.
func (c *Client) PackageSearch(ctx context.Context, p PackageSearchParams) (*PackageSearchResult, error) {
	q := url.Values{}
	set := func(k, v string) {
		if v != "" {
			q.Set(k, v)
		}
	}
	set("q", p.Q)
	set("fq", p.FQ)
	set("sort", p.Sort)
	if p.Rows > 0 {
		q.Set("rows", strconv.Itoa(p.Rows))
	}
	if p.Start > 0 {
		q.Set("start", strconv.Itoa(p.Start))
	}
	var r PackageSearchResult
	if err := c.Get(ctx, "package_search", q, &r); err != nil {
		return nil, err
	}
	return &r, nil
}

// PackageShow calls package_show for a dataset id or name.
func (c *Client) PackageShow(ctx context.Context, id string) (*Package, error) {
	var p Package
	if err := c.Get(ctx, "package_show", url.Values{"id": {id}}, &p); err != nil {
		return nil, err
	}
	return &p, nil
}

// Job is a background job waiting in an RQ queue, as job_list shows it
// (job_list shows only queued jobs, not running ones).
type Job struct {
	ID      string    `json:"id"`
	Title   string    `json:"title"`
	Created time.Time `json:"created"` // UTC; CKAN sends it without a zone
	Queue   string    `json:"queue"`   // unprefixed: "default", not "ckan:default:default"
}

// UnmarshalJSON reads CKAN's zone-less "created" as UTC.
func (j *Job) UnmarshalJSON(b []byte) error {
	var w struct {
		ID      string `json:"id"`
		Title   string `json:"title"`
		Created string `json:"created"`
		Queue   string `json:"queue"`
	}
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	*j = Job{ID: w.ID, Title: w.Title, Queue: w.Queue}
	if w.Created != "" {
		t, err := parseCKANTime(w.Created)
		if err != nil {
			return fmt.Errorf("job %s: created: %w", w.ID, err)
		}
		j.Created = t
	}
	return nil
}

// parseCKANTime reads CKAN's timestamps: ISO 8601 without a zone (UTC),
// with or without fractional seconds, or RFC 3339.
func parseCKANTime(s string) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	if strings.Contains(s, " ") && !strings.Contains(s, "T") {
		s = strings.Replace(s, " ", "T", 1)
	}
	return time.ParseInLocation("2006-01-02T15:04:05.999999999", s, time.UTC)
}

// JobList calls job_list (sysadmins only) for the given queues, or all
// queues when none is given.
func (c *Client) JobList(ctx context.Context, queues ...string) ([]Job, error) {
	var jobs []Job
	var err error
	if len(queues) == 0 {
		err = c.Get(ctx, "job_list", nil, &jobs)
	} else {
		// A single GET value would reach job_list as a string, not a list:
		// POST the list. job_list is side_effect_free, so it may be retried.
		err = c.post(ctx, "job_list", map[string]any{"queues": queues}, &jobs, true)
	}
	if err != nil {
		return nil, err
	}
	if jobs == nil {
		jobs = []Job{}
	}
	return jobs, nil
}
