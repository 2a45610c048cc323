package ckanclient_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/ckanops/ckanops/ckanclient"
)

// envelope wraps a result as CKAN does.
func envelope(action, result string) string {
	return `{"help": "http://127.0.0.1:5000/api/3/action/help_show?name=` + action + `", "success": true, "result": ` + result + `}`
}

func TestTypedActions(t *testing.T) {
	type request struct {
		method, path string
		query        url.Values
		body         map[string]any
	}
	var (
		mu      sync.Mutex
		lastReq request
	)
	results := map[string]string{
		"status_show":    `{"ckan_version": "2.11.5", "site_title": "CKAN", "site_url": "http://127.0.0.1:5000", "site_description": "", "error_emails_to": null, "locale_default": "en", "extensions": ["activity", "datastore", "datatables_view", "text_view", "image_view"]}`,
		"user_show":      `{"id": "0b6d2a5e-7a44-4c8f-9d0e-1f7f4b1c2d3e", "name": "admin", "fullname": "Site Admin", "display_name": "Site Admin", "sysadmin": true, "state": "active", "email_hash": "x", "number_created_packages": 0}`,
		"package_search": `{"count": 2, "facets": {}, "results": [{"id": "p1", "name": "water", "title": "Water", "type": "dataset", "state": "active", "private": false, "owner_org": "o1", "metadata_modified": "2026-11-29T12:00:00.123456", "num_resources": 1, "resources": [{"id": "r1", "name": "csv", "url": "http://x/r.csv", "format": "CSV", "state": "active"}], "extras": [{"key": "k", "value": "v"}]}, {"id": "p2", "name": "air"}], "sort": "score desc, metadata_modified desc", "search_facets": {}}`,
		"package_show":   `{"id": "p1", "name": "water", "title": "Water", "num_resources": 0, "resources": []}`,
		"job_list":       `[{"id": "d818c645-4396-4f9c-bf10-87aba7d1aaaa", "title": "A test job", "created": "2026-11-29T12:22:14", "queue": "default"}]`,
	}
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		action := r.URL.Path[len("/api/3/action/"):]
		req := request{method: r.Method, path: r.URL.Path, query: r.URL.Query()}
		if r.Method == http.MethodPost {
			b, _ := io.ReadAll(r.Body)
			_ = json.Unmarshal(b, &req.body)
		}
		mu.Lock()
		lastReq = req
		mu.Unlock()
		fixed(200, jsonCT, envelope(action, results[action]))(w, r)
	})
	c := newClient(t, srv.URL, ckanclient.Options{Token: testToken})
	var last request
	seen := func() {
		mu.Lock()
		defer mu.Unlock()
		last = lastReq
	}

	st, err := c.StatusShow(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	seen()
	wantSt := ckanclient.CKANStatus{CKANVersion: "2.11.5", SiteTitle: "CKAN", SiteURL: "http://127.0.0.1:5000", LocaleDefault: "en",
		Extensions: []string{"activity", "datastore", "datatables_view", "text_view", "image_view"}}
	if !reflect.DeepEqual(*st, wantSt) || last.method != http.MethodGet || last.path != "/api/3/action/status_show" {
		t.Errorf("StatusShow: %+v via %+v", st, last)
	}

	u, err := c.UserShow(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	seen()
	wantU := ckanclient.User{ID: "0b6d2a5e-7a44-4c8f-9d0e-1f7f4b1c2d3e", Name: "admin", DisplayName: "Site Admin", Sysadmin: true, State: "active"}
	if *u != wantU || last.method != http.MethodGet || len(last.query) != 0 {
		t.Errorf("UserShow: %+v via %+v (user_show must be called without an id)", u, last)
	}

	sr, err := c.PackageSearch(ctx(t), ckanclient.PackageSearchParams{Q: "water", FQ: "organization:o1", Rows: 5, Start: 10, Sort: "name asc"})
	if err != nil {
		t.Fatal(err)
	}
	seen()
	wantQ := url.Values{"q": {"water"}, "fq": {"organization:o1"}, "rows": {"5"}, "start": {"10"}, "sort": {"name asc"}}
	if !reflect.DeepEqual(last.query, wantQ) || last.method != http.MethodGet {
		t.Errorf("PackageSearch sent %v via %s, want %v", last.query, last.method, wantQ)
	}
	if sr.Count != 2 || len(sr.Results) != 2 || sr.Results[0].Name != "water" || sr.Results[0].MetadataModified != "2026-11-29T12:00:00.123456" ||
		len(sr.Results[0].Resources) != 1 || sr.Results[0].Resources[0].Format != "CSV" || sr.Results[1].Name != "air" {
		t.Errorf("PackageSearch: %+v", sr)
	}
	var raw map[string]any
	if err := json.Unmarshal(sr.Results[0].Raw, &raw); err != nil || raw["extras"] == nil {
		t.Errorf("Raw lacks the fields ckanclient does not model: %s", sr.Results[0].Raw)
	}

	_, _ = c.PackageSearch(ctx(t), ckanclient.PackageSearchParams{})
	seen()
	if len(last.query) != 0 {
		t.Errorf("zero PackageSearchParams sent %v", last.query)
	}

	p, err := c.PackageShow(ctx(t), "water")
	if err != nil {
		t.Fatal(err)
	}
	seen()
	if p.ID != "p1" || last.query.Get("id") != "water" {
		t.Errorf("PackageShow: %+v via %+v", p, last)
	}

	jobs, err := c.JobList(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	seen()
	wantJobs := []ckanclient.Job{{ID: "d818c645-4396-4f9c-bf10-87aba7d1aaaa", Title: "A test job",
		Created: time.Date(2026, 11, 29, 12, 22, 14, 0, time.UTC), Queue: "default"}}
	if !reflect.DeepEqual(jobs, wantJobs) || last.method != http.MethodGet {
		t.Errorf("JobList: %+v via %+v", jobs, last)
	}
	if _, err := c.JobList(ctx(t), "default", "priority"); err != nil {
		t.Fatal(err)
	}
	seen()
	if last.method != http.MethodPost || !reflect.DeepEqual(last.body, map[string]any{"queues": []any{"default", "priority"}}) {
		t.Errorf("JobList(queues) sent %+v", last)
	}

	// Call POSTs its parameters as JSON; nil parameters are {}.
	var got ckanclient.Package
	if err := c.Call(ctx(t), "package_show", map[string]string{"id": "water"}, &got); err != nil {
		t.Fatal(err)
	}
	seen()
	if last.method != http.MethodPost || last.body["id"] != "water" || got.Name != "water" {
		t.Errorf("Call: %+v via %+v", got, last)
	}
	if err := c.Call(ctx(t), "status_show", nil, nil); err != nil {
		t.Fatal(err)
	}
	seen()
	if last.body == nil || len(last.body) != 0 {
		t.Errorf("Call(nil) sent %v, want {}", last.body)
	}
}

func TestEmptyJobList(t *testing.T) {
	srv := newServer(t, fixed(200, jsonCT, envelope("job_list", "[]")))
	c := newClient(t, srv.URL, ckanclient.Options{})
	jobs, err := c.JobList(ctx(t))
	if err != nil || jobs == nil || len(jobs) != 0 {
		t.Errorf("JobList = %#v, %v; want an empty list", jobs, err)
	}
}

func TestSiteBelowRootPath(t *testing.T) {
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/data/api/3/action/status_show" && r.URL.Path != "/data/-/ckanops/status" {
			t.Errorf("path %s", r.URL.Path)
		}
		if r.URL.Path == "/data/-/ckanops/status" {
			fixed(200, "application/json", `{"site": "prod"}`)(w, r)
			return
		}
		fixed(200, jsonCT, envelope("status_show", `{}`))(w, r)
	})
	c := newClient(t, srv.URL+"/data/", ckanclient.Options{})
	if _, err := c.StatusShow(ctx(t)); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Status(ctx(t)); err != nil {
		t.Fatal(err)
	}
}
