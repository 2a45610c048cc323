package ckanclient_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/ckanops/ckanops/ckanclient"
)

// gateMetricsText is what a gate's /-/ckanops/metrics serves, in
// Prometheus's text format (trimmed).
const gateMetricsText = `# HELP ckanops_in_flight_writes Write requests admitted and not yet finished.
# TYPE ckanops_in_flight_writes gauge
ckanops_in_flight_writes 3
# HELP ckanops_mode 1 for the mode the gate enforces, 0 for the others.
# TYPE ckanops_mode gauge
ckanops_mode{mode="down"} 0
ckanops_mode{mode="live"} 1
ckanops_mode{mode="read-only"} 0
# HELP ckanops_refusals_total Requests refused, by the mode that refused them and the answer's kind (api or html).
# TYPE ckanops_refusals_total counter
ckanops_refusals_total{kind="api",mode="read-only"} 7
# HELP ckanops_requests_total Requests by class (read, write, login, tracking, control) and outcome (forwarded, refused, bypass, tracking, control).
# TYPE ckanops_requests_total counter
ckanops_requests_total{class="control",outcome="control"} 1000
ckanops_requests_total{class="login",outcome="forwarded"} 5
ckanops_requests_total{class="read",outcome="forwarded"} 120
ckanops_requests_total{class="write",outcome="forwarded"} 30
ckanops_requests_total{class="write",outcome="refused"} 7
ckanops_requests_total{class="tracking",outcome="tracking"} 2.5e+01
# HELP ckanops_upstream_duration_seconds Time from forwarding a request to CKAN until its response headers arrived.
# TYPE ckanops_upstream_duration_seconds histogram
ckanops_upstream_duration_seconds_bucket{le="+Inf"} 155
ckanops_upstream_duration_seconds_sum 1.5
ckanops_upstream_duration_seconds_count 155
`

func TestMetrics(t *testing.T) {
	var accept, auth string
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/-/ckanops/metrics" {
			http.NotFound(w, r)
			return
		}
		accept, auth = r.Header.Get("Accept"), r.Header.Get("Authorization")
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		_, _ = w.Write([]byte(gateMetricsText))
	})
	c := newClient(t, srv.URL, ckanclient.Options{Token: testToken, TokenStyle: ckanclient.AuthBearer})
	got, err := c.Metrics(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := ckanclient.GateCounters{Requests: 120 + 5 + 30 + 7 + 25, RefusedWrites: 7, InFlightWrites: 3}
	if got == nil || *got != want {
		t.Errorf("Metrics = %+v, want %+v", got, want)
	}
	if !strings.HasPrefix(accept, "text/plain") {
		t.Errorf("Accept %q, want text/plain", accept)
	}
	if auth != "Bearer "+testToken {
		t.Errorf("the token is not sent: Authorization %q", auth)
	}
}

func TestMetricsMissing(t *testing.T) {
	for _, tc := range []struct {
		name string
		h    http.HandlerFunc
	}{
		// A gate older than the endpoint answers its control 404 in JSON.
		{"gate 404", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusNotFound)
			_, _ = w.Write([]byte(`{"error": "no such control endpoint"}`))
		}},
		{"plain 404", http.NotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := newServer(t, tc.h)
			got, err := newClient(t, srv.URL, ckanclient.Options{}).Metrics(context.Background())
			if got != nil || err != nil {
				t.Errorf("Metrics = %+v, %v; want nil, nil (no endpoint)", got, err)
			}
		})
	}
}

func TestMetricsErrors(t *testing.T) {
	for _, tc := range []struct {
		name, ct, body string
		status         int
		want           any
	}{
		{"html page", "text/html", "<html><title>Welcome</title></html>", 200, new(*ckanclient.DecodeError)},
		{"bad value", "text/plain", "ckanops_in_flight_writes three\n", 200, new(*ckanclient.DecodeError)},
		{"open labels", "text/plain", `ckanops_requests_total{class="read" 3` + "\n", 200, new(*ckanclient.DecodeError)},
		{"unauthorized", "application/json", `{"error": "a token is needed"}`, 401, new(*ckanclient.APIError)},
		{"proxy 500", "text/html", "<h1>oops</h1>", 500, new(*ckanclient.HTTPError)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", tc.ct)
				w.WriteHeader(tc.status)
				_, _ = w.Write([]byte(tc.body))
			})
			got, err := newClient(t, srv.URL, ckanclient.Options{Retries: -1}).Metrics(context.Background())
			if err == nil {
				t.Fatalf("Metrics = %+v, want an error", got)
			}
			switch w := tc.want.(type) {
			case **ckanclient.DecodeError:
				if !errors.As(err, w) {
					t.Errorf("error %T %v, want a DecodeError", err, err)
				}
			case **ckanclient.APIError:
				if !errors.As(err, w) {
					t.Errorf("error %T %v, want an APIError", err, err)
				}
			case **ckanclient.HTTPError:
				if !errors.As(err, w) {
					t.Errorf("error %T %v, want an HTTPError", err, err)
				}
			}
		})
	}
}
