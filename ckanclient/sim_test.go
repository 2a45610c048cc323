package ckanclient_test

// ckanclient against the simulated CKAN (internal/ckansim): every error
// type the client knows, produced by a CKAN that behaves like the real one.

import (
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/ckanops/ckanops/ckanclient"
	"github.com/ckanops/ckanops/internal/ckansim"
)

func newSim(t *testing.T, version string) (*ckansim.Sim, *httptest.Server) {
	t.Helper()
	sim, err := ckansim.New(ckansim.Options{Version: version})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(sim)
	t.Cleanup(srv.Close)
	return sim, srv
}

// checkNoSimToken fails if err's message holds either seeded token.
func checkNoSimToken(t *testing.T, err error) {
	t.Helper()
	if err == nil {
		return
	}
	for _, tok := range []string{ckansim.SysadminToken, ckansim.EditorToken} {
		if strings.Contains(err.Error(), tok) {
			t.Errorf("error message contains a token: %v", err)
		}
	}
}

func TestSimErrors(t *testing.T) {
	cases := []struct {
		name     string
		token    string
		path     string // appended to the sim's URL to make the site URL
		fail     int    // FailNext status, 0 for none
		call     func(c *ckanclient.Client) error
		wantHits int // requests the sim should have received
		check    func(t *testing.T, err error)
	}{
		{
			name:  "Authorization Error: editor calls job_list",
			token: ckansim.EditorToken,
			call:  func(c *ckanclient.Client) error { _, err := c.JobList(t.Context()); return err },
			check: func(t *testing.T, err error) {
				e := as[*ckanclient.APIError](t, err)
				if e.Status != 403 || !ckanclient.IsAuthorization(err) || e.Action != "job_list" {
					t.Errorf("got %+v", e)
				}
				checkErrText(t, err, "job_list at http://", "access denied", "sysadmin")
			},
		},
		{
			name: "Authorization Error: anonymous calls job_list",
			call: func(c *ckanclient.Client) error { _, err := c.JobList(t.Context()); return err },
			check: func(t *testing.T, err error) {
				as[*ckanclient.APIError](t, err)
				if !ckanclient.IsAuthorization(err) {
					t.Errorf("got %v", err)
				}
				checkErrText(t, err, "no token was sent")
			},
		},
		{
			name:  "Authorization Error: editor calls job_list with queues (POST)",
			token: ckansim.EditorToken,
			call:  func(c *ckanclient.Client) error { _, err := c.JobList(t.Context(), "default"); return err },
			check: func(t *testing.T, err error) {
				if !ckanclient.IsAuthorization(err) {
					t.Errorf("got %v", err)
				}
			},
		},
		{
			name:  "Not Found Error: package_show of a missing id",
			token: ckansim.SysadminToken,
			call:  func(c *ckanclient.Client) error { _, err := c.PackageShow(t.Context(), "no-such-dataset"); return err },
			check: func(t *testing.T, err error) {
				e := as[*ckanclient.APIError](t, err)
				if e.Status != 404 || !ckanclient.IsNotFound(err) {
					t.Errorf("got %+v", e)
				}
				checkErrText(t, err, "package_show", "not found", "check the id or name")
			},
		},
		{
			name:  "Not Found Error: user_show of an unrecognised token",
			token: ckansim.SysadminToken + "-revoked",
			call:  func(c *ckanclient.Client) error { _, err := c.UserShow(t.Context()); return err },
			check: func(t *testing.T, err error) {
				if !ckanclient.IsNotFound(err) {
					t.Errorf("got %v", err)
				}
				checkErrText(t, err, "user_show", "did not recognise the token")
			},
		},
		{
			name: "Not Found Error: user_show without a token",
			call: func(c *ckanclient.Client) error { _, err := c.UserShow(t.Context()); return err },
			check: func(t *testing.T, err error) {
				if !ckanclient.IsNotFound(err) {
					t.Errorf("got %v", err)
				}
				checkErrText(t, err, "no token was sent")
			},
		},
		{
			name:  "Validation Error: package_create without name",
			token: ckansim.SysadminToken,
			call: func(c *ckanclient.Client) error {
				return c.Call(t.Context(), "package_create", map[string]any{"title": "No name", "owner_org": "demo-org"}, nil)
			},
			check: func(t *testing.T, err error) {
				e := as[*ckanclient.APIError](t, err)
				if e.Status != 409 || !ckanclient.IsValidation(err) {
					t.Errorf("got %+v", e)
				}
				if got := e.Fields["name"]; !slices.Contains(got, "Missing value") {
					t.Errorf(`Fields["name"] = %q (all: %q)`, got, e.Fields)
				}
				checkErrText(t, err, "name: Missing value", "fix these fields")
			},
		},
		{
			name:  "bare-string 400: unknown action",
			token: ckansim.SysadminToken,
			call:  func(c *ckanclient.Client) error { return c.Call(t.Context(), "no_such_action", nil, nil) },
			check: func(t *testing.T, err error) {
				e := as[*ckanclient.BadRequestError](t, err)
				if e.Status != 400 || !ckanclient.IsUnknownAction(err) {
					t.Errorf("got %+v", e)
				}
				checkErrText(t, err, "Action name not known: no_such_action", "no such action")
			},
		},
		{
			name:  "bare-string 400: GET on package_create",
			token: ckansim.SysadminToken,
			call:  func(c *ckanclient.Client) error { return c.Get(t.Context(), "package_create", nil, nil) },
			check: func(t *testing.T, err error) {
				e := as[*ckanclient.BadRequestError](t, err)
				if e.Status != 400 || e.UnknownAction() {
					t.Errorf("got %+v", e)
				}
				checkErrText(t, err, "POST")
			},
		},
		{
			name:  "HTML 404: wrong base URL path (GET)",
			token: ckansim.SysadminToken,
			path:  "/not-ckan",
			call:  func(c *ckanclient.Client) error { _, err := c.StatusShow(t.Context()); return err },
			check: func(t *testing.T, err error) {
				e := as[*ckanclient.HTTPError](t, err)
				checkSimPage(t, e, 404)
				if ckanclient.IsNotFound(err) {
					t.Error("an HTML 404 is not CKAN's Not Found Error")
				}
				checkErrText(t, err, "HTML 404 page", "the URL is not a CKAN API", "check the site's url")
			},
		},
		{
			name:  "HTML 405: wrong base URL path (POST)",
			token: ckansim.SysadminToken,
			path:  "/not-ckan",
			call: func(c *ckanclient.Client) error {
				return c.Call(t.Context(), "package_create", map[string]any{"name": "x"}, nil)
			},
			check: func(t *testing.T, err error) {
				e := as[*ckanclient.HTTPError](t, err)
				checkSimPage(t, e, 405)
				checkErrText(t, err, "HTML 405 page", "does not accept POST")
			},
		},
		{
			name:  "FailNext 500: CKAN's error page",
			token: ckansim.SysadminToken,
			fail:  500,
			call:  func(c *ckanclient.Client) error { _, err := c.StatusShow(t.Context()); return err },
			check: func(t *testing.T, err error) {
				e := as[*ckanclient.HTTPError](t, err)
				checkSimPage(t, e, 500)
				checkErrText(t, err, "internal error", "CKAN's log")
			},
		},
		{
			name:  "FailNext 502: nginx without uwsgi",
			token: ckansim.SysadminToken,
			fail:  502,
			call:  func(c *ckanclient.Client) error { _, err := c.StatusShow(t.Context()); return err },
			check: func(t *testing.T, err error) {
				e := as[*ckanclient.HTTPError](t, err)
				checkSimPage(t, e, 502)
				checkErrText(t, err, "could not reach CKAN")
			},
		},
		{
			name:  "FailNext 503",
			token: ckansim.SysadminToken,
			fail:  503,
			call: func(c *ckanclient.Client) error {
				return c.Call(t.Context(), "package_create", map[string]any{"name": "x"}, nil)
			},
			check: func(t *testing.T, err error) {
				e := as[*ckanclient.HTTPError](t, err)
				checkSimPage(t, e, 503)
				if ckanclient.IsMaintenance(err) {
					t.Error("a proxy's 503 page is not the gate's Maintenance Error")
				}
				checkErrText(t, err, "unavailable")
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			sim, srv := newSim(t, "2.11")
			if tc.fail != 0 {
				sim.FailNext(100, tc.fail)
			}
			c := newClient(t, srv.URL+tc.path, ckanclient.Options{Token: tc.token, Retries: -1})
			err := tc.call(c)
			t.Log(err)
			tc.check(t, err)
			checkNoSimToken(t, err)
			if n := len(sim.Journal()); n != 1 {
				t.Errorf("the sim received %d requests, want 1", n)
			}
		})
	}
}

// checkSimPage checks an HTTPError for one of the sim's error pages.
func checkSimPage(t *testing.T, e *ckanclient.HTTPError, status int) {
	t.Helper()
	if e.Status != status {
		t.Errorf("Status = %d, want %d", e.Status, status)
	}
	if !strings.Contains(e.ContentType, "html") {
		t.Errorf("ContentType = %q", e.ContentType)
	}
	if !strings.Contains(e.Snippet, strconv.Itoa(status)) || len([]rune(e.Snippet)) > 160 || strings.ContainsAny(e.Snippet, "<>") {
		t.Errorf("Snippet is not a short text: %q", e.Snippet)
	}
}

func TestSimRetries(t *testing.T) {
	for _, status := range []int{502, 503} {
		sim, srv := newSim(t, "2.11")
		c := newClient(t, srv.URL, ckanclient.Options{Token: ckansim.SysadminToken})

		// A read gets through after two failures (two retries).
		sim.FailNext(2, status)
		st, err := c.StatusShow(t.Context())
		if err != nil {
			t.Fatalf("%d: StatusShow after 2 failures: %v", status, err)
		}
		if st.CKANVersion == "" {
			t.Errorf("%d: empty status_show result", status)
		}
		if n := len(sim.Journal()); n != 3 {
			t.Errorf("%d: read: the sim received %d requests, want 3", status, n)
		}

		// A write is sent once, whatever the retry setting.
		sim.ResetJournal()
		sim.FailNext(1, status)
		err = c.Call(t.Context(), "package_create", map[string]any{"name": "retry-test", "owner_org": "demo-org"}, nil)
		if e := as[*ckanclient.HTTPError](t, err); e.Status != status {
			t.Errorf("%d: write: got %v", status, err)
		}
		if n := len(sim.Journal()); n != 1 {
			t.Errorf("%d: write: the sim received %d requests, want 1", status, n)
		}
		if w := sim.Writes(); len(w) != 0 {
			t.Errorf("%d: a failed request wrote: %+v", status, w)
		}
	}
}

func TestSimSuccess(t *testing.T) {
	sim, srv := newSim(t, "2.11")
	admin := newClient(t, srv.URL, ckanclient.Options{Token: ckansim.SysadminToken})
	editor := newClient(t, srv.URL, ckanclient.Options{Token: ckansim.EditorToken})
	anon := newClient(t, srv.URL, ckanclient.Options{})

	st, err := anon.StatusShow(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(st.CKANVersion, "2.11") || !slices.Contains(st.Extensions, "datastore") || st.SiteTitle == "" {
		t.Errorf("StatusShow: %+v", st)
	}

	u, err := admin.UserShow(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if u.Name != "admin" || !u.Sysadmin || u.ID == "" || u.State != "active" {
		t.Errorf("UserShow(sysadmin): %+v", u)
	}
	u, err = editor.UserShow(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if u.Name != "editor" || u.Sysadmin {
		t.Errorf("UserShow(editor): %+v", u)
	}

	res, err := anon.PackageSearch(t.Context(), ckanclient.PackageSearchParams{Rows: 10, Sort: "name asc"})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, p := range res.Results {
		names = append(names, p.Name)
	}
	if res.Count < 2 || res.Count != len(res.Results) || !slices.Contains(names, "bus-stops") || slices.Contains(names, "council-budget-draft") {
		t.Errorf("PackageSearch: count %d, names %v (the private dataset must not show)", res.Count, names)
	}
	res, err = anon.PackageSearch(t.Context(), ckanclient.PackageSearchParams{Q: "name:bus-stops"})
	if err != nil {
		t.Fatal(err)
	}
	if res.Count != 1 || len(res.Results) != 1 || res.Results[0].Name != "bus-stops" {
		t.Errorf("PackageSearch(q=name:bus-stops): %+v", res)
	}

	p, err := anon.PackageShow(t.Context(), "bus-stops")
	if err != nil {
		t.Fatal(err)
	}
	if p.Name != "bus-stops" || p.ID == "" || len(p.Raw) == 0 {
		t.Errorf("PackageShow: %+v", p)
	}

	jobs, err := admin.JobList(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if jobs == nil {
		t.Error("JobList returned nil, want an empty list")
	}
	if _, err := admin.JobList(t.Context(), "default"); err != nil {
		t.Fatal(err)
	}

	// None of these reads wrote.
	if w := sim.Writes(); len(w) != 0 {
		t.Errorf("reads wrote: %+v", w)
	}
	for _, e := range sim.Journal() {
		if e.Status != http.StatusOK {
			t.Errorf("%s %s: %d", e.Method, e.Path, e.Status)
		}
	}
}

func TestSimTokenStyles(t *testing.T) {
	// The header each CKAN version reads the token from (see ckansim's identify).
	cases := []struct {
		version string
		style   ckanclient.TokenStyle
	}{
		{"2.11", ckanclient.AuthRaw},
		{"2.10", ckanclient.AuthRaw},
		{"2.10", ckanclient.AuthAPIKey},
	}
	for _, tc := range cases {
		t.Run(tc.version+"/"+tc.style.String(), func(t *testing.T) {
			_, srv := newSim(t, tc.version)
			c := newClient(t, srv.URL, ckanclient.Options{Token: ckansim.SysadminToken, TokenStyle: tc.style})
			u, err := c.UserShow(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			if !u.Sysadmin || u.Name != "admin" {
				t.Errorf("UserShow: %+v", u)
			}
		})
	}
}

func TestSimCreateThenShow(t *testing.T) {
	sim, srv := newSim(t, "2.11")
	c := newClient(t, srv.URL, ckanclient.Options{Token: ckansim.SysadminToken})
	var created ckanclient.Package
	if err := c.Call(t.Context(), "package_create", map[string]any{"name": "client-made", "title": "Made by ckanclient", "owner_org": "demo-org"}, &created); err != nil {
		t.Fatal(err)
	}
	if created.Name != "client-made" || created.ID == "" {
		t.Fatalf("package_create: %+v", created)
	}
	p, err := c.PackageShow(t.Context(), created.ID)
	if err != nil {
		t.Fatal(err)
	}
	if p.Title != "Made by ckanclient" {
		t.Errorf("PackageShow: %+v", p)
	}
	if w := sim.Writes(); len(w) != 1 || w[0].Action != "package_create" {
		t.Errorf("writes: %+v", w)
	}
}
