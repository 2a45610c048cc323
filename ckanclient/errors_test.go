package ckanclient_test

import (
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/ckanops/ckanops/api"

	"github.com/ckanops/ckanops/ckanclient"
)

const jsonCT = "application/json;charset=utf-8" // what CKAN's _finish sends

// Envelopes byte for byte as CKAN 2.11 writes them (see
// internal/surface/data/jobs.txt).
const (
	envAuth = `{"help": "http://127.0.0.1:5000/api/3/action/help_show?name=job_list", "error": {"__type": "Authorization Error", "message": "Access denied"}, "success": false}`

	envNotFound = `{"help": "http://127.0.0.1:5000/api/3/action/help_show?name=package_show", "error": {"__type": "Not Found Error", "message": "Not found"}, "success": false}`

	envValidation = `{"help": "http://127.0.0.1:5000/api/3/action/help_show?name=package_create", "error": {"__type": "Validation Error", "name": ["Missing value"], "extras": [{}, {"key": ["There is a schema field with the same name"]}]}, "success": false}`

	envMaintenance = `{"help": "http://127.0.0.1:5000/api/3/action/help_show?name=package_update", "success": false, "error": {"__type": "Maintenance Error", "message": "Upgrading to CKAN 2.11", "mode": "read-only", "until": "2026-11-29T14:00:00Z"}}`

	envSearchError = `{"help": "http://127.0.0.1:5000/api/3/action/help_show?name=package_search", "error": {"__type": "Search Query Error", "message": "Search Query is invalid: \"Invalid Solr query\""}, "success": false}`
)

func TestActionErrors(t *testing.T) {
	until := time.Date(2026, 11, 29, 14, 0, 0, 0, time.UTC)
	cases := []struct {
		name    string
		handler http.HandlerFunc
		token   string
		post    bool // Call (POST) instead of Get
		check   func(t *testing.T, err error)
	}{
		{
			name:    "403 Authorization Error with a token",
			handler: fixed(403, jsonCT, envAuth),
			token:   testToken,
			check: func(t *testing.T, err error) {
				e := as[*ckanclient.APIError](t, err)
				if e.Status != 403 || e.Type != ckanclient.TypeAuthorization || e.Message != "Access denied" {
					t.Errorf("got %+v", e)
				}
				if !ckanclient.IsAuthorization(err) || ckanclient.IsNotFound(err) {
					t.Error("IsAuthorization false or IsNotFound true")
				}
				checkErrText(t, err, "job_list at http://", "/api/3/action/job_list", "Access denied", "sysadmin", "token is valid")
			},
		},
		{
			name:    "403 Authorization Error without a token",
			handler: fixed(403, jsonCT, envAuth),
			check: func(t *testing.T, err error) {
				as[*ckanclient.APIError](t, err)
				checkErrText(t, err, "no token was sent", "sysadmin")
			},
		},
		{
			name:    "404 Not Found Error",
			handler: fixed(404, jsonCT, envNotFound),
			token:   testToken,
			check: func(t *testing.T, err error) {
				e := as[*ckanclient.APIError](t, err)
				if e.Status != 404 || !ckanclient.IsNotFound(err) {
					t.Errorf("got %+v", e)
				}
				checkErrText(t, err, "not found", "check the id or name")
			},
		},
		{
			name:    "409 Validation Error with fields",
			handler: fixed(409, jsonCT, envValidation),
			token:   testToken,
			post:    true,
			check: func(t *testing.T, err error) {
				e := as[*ckanclient.APIError](t, err)
				if !ckanclient.IsValidation(err) || e.Status != 409 {
					t.Errorf("got %+v", e)
				}
				if got := e.Fields["name"]; len(got) != 1 || got[0] != "Missing value" {
					t.Errorf("Fields[name] = %q", got)
				}
				if got := e.Fields["extras[1].key"]; len(got) != 1 {
					t.Errorf("Fields[extras[1].key] = %q (all: %q)", got, e.Fields)
				}
				checkErrText(t, err, "name: Missing value", "extras[1].key: There is a schema field", "fix these fields")
			},
		},
		{
			name:    "503 Maintenance Error from the gate",
			handler: fixed(503, "application/json", envMaintenance, "Retry-After", "120"),
			token:   testToken,
			post:    true,
			check: func(t *testing.T, err error) {
				e := as[*ckanclient.APIError](t, err)
				if !ckanclient.IsMaintenance(err) || e.Mode != api.ModeReadOnly || e.RetryAfter != 2*time.Minute {
					t.Errorf("got %+v", e)
				}
				if e.Until == nil || !e.Until.Equal(until) {
					t.Errorf("Until = %v, want %v", e.Until, until)
				}
				checkErrText(t, err, "read-only mode until 2026-11-29T14:00:00Z", "Upgrading to CKAN 2.11", "nothing was changed", "retry after 2m0s")
			},
		},
		{
			name:    "other envelope types kept as they are",
			handler: fixed(400, jsonCT, envSearchError),
			check: func(t *testing.T, err error) {
				e := as[*ckanclient.APIError](t, err)
				if e.Type != "Search Query Error" || e.Status != 400 {
					t.Errorf("got %+v", e)
				}
				checkErrText(t, err, "400 Search Query Error", "Invalid Solr query")
			},
		},
		{
			name:    "bare-string 400: unknown action",
			handler: fixed(400, jsonCT, `"Bad request - Action name not known: foo"`),
			post:    true,
			check: func(t *testing.T, err error) {
				e := as[*ckanclient.BadRequestError](t, err)
				if e.Status != 400 || e.Message != "Bad request - Action name not known: foo" || !e.UnknownAction() {
					t.Errorf("got %+v", e)
				}
				if !ckanclient.IsUnknownAction(err) {
					t.Error("IsUnknownAction false")
				}
				checkErrText(t, err, "Action name not known: foo", "no such action", "plugin")
			},
		},
		{
			name:    "bare-string 400: GET on a write action",
			handler: fixed(400, jsonCT, `"Bad request - JSON Error: Invalid request. Please use POST method for your request"`),
			check: func(t *testing.T, err error) {
				e := as[*ckanclient.BadRequestError](t, err)
				if e.UnknownAction() {
					t.Error("UnknownAction true")
				}
				checkErrText(t, err, "Please use POST", "call it with POST")
			},
		},
		{
			name:    "bare-string 400: bad JSON body",
			handler: fixed(400, jsonCT, `"Bad request - JSON Error: Error decoding JSON data. Error: JSONDecodeError('Expecting value: line 1 column 1 (char 0)') JSON data extracted from the request: 'x'"`),
			post:    true,
			check: func(t *testing.T, err error) {
				as[*ckanclient.BadRequestError](t, err)
				checkErrText(t, err, "JSON Error", "could not read the request's parameters")
			},
		},
		{
			name:    "HTML 404 from nginx",
			handler: fixed(404, "text/html", page(t, "nginx_404.html"), "Server", "nginx/1.24.0 (Ubuntu)"),
			check: func(t *testing.T, err error) {
				e := as[*ckanclient.HTTPError](t, err)
				if e.Status != 404 || e.ContentType != "text/html" || e.Snippet != "404 Not Found nginx/1.24.0 (Ubuntu)" {
					t.Errorf("got %+v", e)
				}
				if ckanclient.IsNotFound(err) {
					t.Error("an HTML 404 is a wrong URL, not CKAN's Not Found")
				}
				checkErrText(t, err, "got an HTML 404 page from nginx", "the URL is not a CKAN API", "check the site's url")
			},
		},
		{
			name:    "HTML 404 page of CKAN",
			handler: fixed(404, "text/html; charset=utf-8", page(t, "ckan_404.html")),
			check: func(t *testing.T, err error) {
				e := as[*ckanclient.HTTPError](t, err)
				if !strings.HasPrefix(e.Snippet, "Error 404 - CKAN: 404 Not Found The requested URL was not found") {
					t.Errorf("Snippet = %q", e.Snippet)
				}
				if len([]rune(e.Snippet)) > 160 || strings.Contains(e.Snippet, "<") || strings.Contains(e.Snippet, "csrf") {
					t.Errorf("Snippet is not a short text: %q", e.Snippet)
				}
				checkErrText(t, err, "got an HTML 404 page", "not a CKAN API")
			},
		},
		{
			name:    "HTML 405 from Werkzeug",
			handler: fixed(405, "text/html; charset=utf-8", page(t, "werkzeug_405.html"), "Allow", "GET, HEAD, OPTIONS"),
			post:    true,
			check: func(t *testing.T, err error) {
				e := as[*ckanclient.HTTPError](t, err)
				if e.Status != 405 || e.Snippet != "405 Method Not Allowed: Method Not Allowed The method is not allowed for the requested URL." {
					t.Errorf("got %+v", e)
				}
				checkErrText(t, err, "HTML 405 page", "does not accept POST")
			},
		},
		{
			name:    "HTML 405 from nginx",
			handler: fixed(405, "text/html", page(t, "nginx_405.html")),
			post:    true,
			check: func(t *testing.T, err error) {
				e := as[*ckanclient.HTTPError](t, err)
				if e.Snippet != "405 Not Allowed nginx/1.24.0 (Ubuntu)" {
					t.Errorf("Snippet = %q", e.Snippet)
				}
			},
		},
		{
			name:    "HTML 500 from uWSGI",
			handler: fixed(500, "text/html", page(t, "uwsgi_500.html")),
			check: func(t *testing.T, err error) {
				e := as[*ckanclient.HTTPError](t, err)
				if e.Status != 500 || e.Snippet != "uWSGI Error Python application not found" {
					t.Errorf("got %+v", e)
				}
				checkErrText(t, err, "internal error", "CKAN's log")
			},
		},
		{
			name:    "HTML 500 page of CKAN",
			handler: fixed(500, "text/html; charset=utf-8", page(t, "ckan_500.html")),
			check: func(t *testing.T, err error) {
				e := as[*ckanclient.HTTPError](t, err)
				if !strings.HasPrefix(e.Snippet, "Error 500 - CKAN: 500 Internal Server Error") {
					t.Errorf("Snippet = %q", e.Snippet)
				}
			},
		},
		{
			name:    "text/plain 500",
			handler: fixed(500, "text/plain", "Internal Server Error"),
			check: func(t *testing.T, err error) {
				e := as[*ckanclient.HTTPError](t, err)
				if e.Snippet != "Internal Server Error" {
					t.Errorf("Snippet = %q", e.Snippet)
				}
				checkErrText(t, err, "got a text/plain 500 page")
			},
		},
		{
			name:    "HTML 502 from nginx",
			handler: fixed(502, "text/html", page(t, "nginx_502.html")),
			post:    true,
			check: func(t *testing.T, err error) {
				e := as[*ckanclient.HTTPError](t, err)
				if e.Status != 502 || e.Snippet != "502 Bad Gateway nginx/1.24.0 (Ubuntu)" {
					t.Errorf("got %+v", e)
				}
				checkErrText(t, err, "could not reach CKAN", "uwsgi")
			},
		},
		{
			name:    "HTML 503 from nginx",
			handler: fixed(503, "text/html", page(t, "nginx_503.html")),
			post:    true,
			check: func(t *testing.T, err error) {
				e := as[*ckanclient.HTTPError](t, err)
				if e.Status != 503 || ckanclient.IsMaintenance(err) {
					t.Errorf("got %+v", e)
				}
				checkErrText(t, err, "503 Service Temporarily Unavailable", "unavailable")
			},
		},
		{
			name:    "HTML 504 from nginx",
			handler: fixed(504, "text/html", page(t, "nginx_504.html")),
			post:    true,
			check: func(t *testing.T, err error) {
				as[*ckanclient.HTTPError](t, err)
				checkErrText(t, err, "gave up waiting")
			},
		},
		{
			name:    "HTML 200: the URL is a web page",
			handler: fixed(200, "text/html; charset=utf-8", "<!doctype html><html><head><title>Welcome - Example</title></head><body><h1>Welcome</h1></body></html>"),
			check: func(t *testing.T, err error) {
				e := as[*ckanclient.HTTPError](t, err)
				if e.Status != 200 {
					t.Errorf("got %+v", e)
				}
				checkErrText(t, err, "serves a web page, not CKAN's API")
			},
		},
		{
			name:    "truncated JSON with 200",
			handler: fixed(200, jsonCT, `{"help": "http://127.0.0.1:5000/api/3/action/help_show?name=status_show", "success": true, "result": {"ckan_version": "2.1`),
			check: func(t *testing.T, err error) {
				e := as[*ckanclient.DecodeError](t, err)
				if e.Status != 200 || e.Action != "status_show" || !strings.HasSuffix(e.URL, "/api/3/action/status_show") {
					t.Errorf("got %+v", e)
				}
				checkErrText(t, err, "status_show at http://", "/api/3/action/status_show", "cannot read the answer", "unexpected end of JSON input", "cut short")
			},
		},
		{
			name:    "JSON that is not an envelope",
			handler: fixed(200, "application/json", `{"ckan_version": "2.11.5"}`),
			check: func(t *testing.T, err error) {
				as[*ckanclient.DecodeError](t, err)
				checkErrText(t, err, `no "success" field`)
			},
		},
		{
			name:    "empty 200",
			handler: fixed(200, "", ""),
			check: func(t *testing.T, err error) {
				as[*ckanclient.DecodeError](t, err)
				checkErrText(t, err, "empty body")
			},
		},
		{
			name:    "result of the wrong shape",
			handler: fixed(200, jsonCT, `{"help": "h", "success": true, "result": ["not", "an", "object"]}`),
			check: func(t *testing.T, err error) {
				e := as[*ckanclient.DecodeError](t, err)
				if e.Err == nil || !strings.Contains(e.Err.Error(), "result") {
					t.Errorf("Err = %v", e.Err)
				}
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv := newServer(t, tc.handler)
			c := newClient(t, srv.URL, ckanclient.Options{Token: tc.token, Retries: -1})
			var result ckanclient.CKANStatus
			var err error
			action := "status_show"
			switch {
			case strings.Contains(tc.name, "Authorization"):
				action = "job_list"
			case strings.Contains(tc.name, "Not Found"):
				action = "package_show"
			}
			if tc.post {
				err = c.Call(ctx(t), action, map[string]any{"name": ""}, &result)
			} else {
				err = c.Get(ctx(t), action, nil, &result)
			}
			tc.check(t, err)
			t.Log(err)
			checkErrText(t, err)
			if n := srv.hits.Load(); n != 1 {
				t.Errorf("server hit %d times, want 1", n)
			}
		})
	}
}

func TestTokenNeverInErrors(t *testing.T) {
	// A server that echoes the request's headers into its answer.
	echo := func(status int, ct, format string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			v := r.Header.Get("Authorization") + r.Header.Get("X-CKAN-API-Key")
			w.Header().Set("Content-Type", ct)
			w.WriteHeader(status)
			_, _ = w.Write([]byte(strings.ReplaceAll(format, "TOKEN", v)))
		}
	}
	cases := []struct {
		name    string
		handler http.HandlerFunc
	}{
		{"HTML page", echo(500, "text/html", "<html><head><title>Error</title></head><body><h1>Bad header TOKEN</h1></body></html>")},
		{"envelope message", echo(403, jsonCT, `{"success": false, "error": {"__type": "Authorization Error", "message": "Access denied: token TOKEN"}}`)},
		{"validation field", echo(409, jsonCT, `{"success": false, "error": {"__type": "Validation Error", "name": ["bad TOKEN"]}}`)},
		{"bare string", echo(400, jsonCT, `"Bad request - Action name not known: TOKEN"`)},
		{"gate error", echo(401, "application/json", `{"error": "token TOKEN is not known"}`)},
		{"truncated JSON", echo(200, jsonCT, `{"success": true, "result": "TOKEN`)},
	}
	for _, style := range []ckanclient.TokenStyle{ckanclient.AuthRaw, ckanclient.AuthAPIKey, ckanclient.AuthBearer} {
		for _, tc := range cases {
			t.Run(style.String()+"/"+tc.name, func(t *testing.T) {
				srv := newServer(t, tc.handler)
				c := newClient(t, srv.URL, ckanclient.Options{Token: testToken, TokenStyle: style, Retries: -1})
				err := c.Call(ctx(t), "package_create", nil, nil)
				if err == nil {
					t.Fatal("want an error")
				}
				checkErrText(t, err, "[token]")
				var api *ckanclient.APIError
				if errors.As(err, &api) {
					for _, msgs := range api.Fields {
						for _, m := range msgs {
							if strings.Contains(m, testToken) {
								t.Errorf("field message holds the token: %q", m)
							}
						}
					}
				}
				_, err = c.Status(ctx(t))
				checkErrText(t, err)
			})
		}
	}
}
