package ckanclient_test

import (
	"context"
	"net/http"
	"sync/atomic"
	"testing"

	"github.com/ckanops/ckanops/api"

	"github.com/ckanops/ckanops/ckanclient"
)

func TestRetries(t *testing.T) {
	nginx502 := page(t, "nginx_502.html")
	html502 := fixed(502, "text/html", nginx502)
	cases := []struct {
		name     string
		handler  http.HandlerFunc
		retries  int
		call     func(c *ckanclient.Client) error
		wantHits int64
		wantErr  bool
	}{
		{"GET read on 502: retried twice", html502, 0, get, 3, true},
		{"GET read on 503 HTML: retried", fixed(503, "text/html", page(t, "nginx_503.html")), 0, get, 3, true},
		{"GET read on 504: retried", fixed(504, "text/html", page(t, "nginx_504.html")), 0, get, 3, true},
		{"GET read, Retries 4", html502, 4, get, 5, true},
		{"GET read, retries off", html502, -1, get, 1, true},
		{"GET read on 500: not retried", fixed(500, "text/html", page(t, "uwsgi_500.html")), 0, get, 1, true},
		{"GET read on 404 envelope: not retried", fixed(404, jsonCT, envNotFound), 0, get, 1, true},
		{"GET read on the gate's maintenance 503: not retried", fixed(503, "application/json", envMaintenance, "Retry-After", "300"), 0, get, 1, true},
		{"POST write on 502: never retried", html502, 0, post, 1, true},
		{"POST write on 502, Retries 4: never retried", html502, 4, post, 1, true},
		{"POST write on 503: never retried", fixed(503, "text/html", page(t, "nginx_503.html")), 0, post, 1, true},
		{"typed read StatusShow on 502: retried", html502, 0, func(c *ckanclient.Client) error { _, err := c.StatusShow(t.Context()); return err }, 3, true},
		{"JobList with queues (POST of a read) on 502: retried", html502, 0, func(c *ckanclient.Client) error { _, err := c.JobList(t.Context(), "default"); return err }, 3, true},
		{"gate Status on 502: retried", html502, 0, func(c *ckanclient.Client) error { _, err := c.Status(t.Context()); return err }, 3, true},
		{"gate Health on 502: retried", html502, 0, func(c *ckanclient.Client) error { _, err := c.Health(t.Context()); return err }, 3, true},
		{"gate SetMode on 502: never retried", html502, 0, func(c *ckanclient.Client) error {
			_, err := c.SetMode(t.Context(), api.ModeRequest{Mode: api.ModeReadOnly})
			return err
		}, 1, true},
		{"GET read: 502 then success", failFirst(1, 502, nginx502), 0, get, 2, false},
		{"GET read: 502 twice then success", failFirst(2, 502, nginx502), 0, get, 3, false},
		{"GET read: 502 three times: gives up", failFirst(3, 502, nginx502), 0, get, 3, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv := newServer(t, tc.handler)
			c := newClient(t, srv.URL, ckanclient.Options{Token: testToken, TokenStyle: ckanclient.AuthBearer, Retries: tc.retries})
			err := tc.call(c)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, want error: %v", err, tc.wantErr)
			}
			if err != nil {
				checkErrText(t, err)
			}
			if got := srv.hits.Load(); got != tc.wantHits {
				t.Errorf("server hit %d times, want %d", got, tc.wantHits)
			}
		})
	}
}

func get(c *ckanclient.Client) error {
	return c.Get(context.Background(), "status_show", nil, &ckanclient.CKANStatus{})
}

func post(c *ckanclient.Client) error {
	return c.Call(context.Background(), "package_create", map[string]string{"name": "x"}, nil)
}

// failFirst answers n requests with an error page, then with status_show's
// envelope.
func failFirst(n int64, status int, body string) http.HandlerFunc {
	var seen atomic.Int64
	return func(w http.ResponseWriter, r *http.Request) {
		if seen.Add(1) <= n {
			fixed(status, "text/html", body)(w, r)
			return
		}
		switch r.URL.Path {
		case api.PathStatus, api.PathHealth:
			fixed(200, "application/json", `{}`)(w, r)
		default:
			fixed(200, jsonCT, `{"help": "h", "success": true, "result": {"ckan_version": "2.11.5"}}`)(w, r)
		}
	}
}
