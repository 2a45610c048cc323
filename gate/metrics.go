package gate

import (
	"net/http"
	"sync/atomic"
	"time"

	"github.com/ckanops/ckanops/api"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// metrics are the gate's Prometheus series, in a registry of its own (so
// tests and several gates in one process never collide).
type metrics struct {
	reg       *prometheus.Registry
	text      http.Handler // the registry in Prometheus's text format, built once
	auth      *authMetrics // failed and rate-limited authentications (control.go)
	requests  *prometheus.CounterVec
	refusals  *prometheus.CounterVec
	upstream  prometheus.Histogram
	upErrors  prometheus.Counter
	dropped   *prometheus.CounterVec
	badBodies prometheus.Counter
	overruns  prometheus.Counter
	trigSw    *prometheus.CounterVec
	// overrunSeen is the version of the last record counted as overrun
	// (each maintenance counts once).
	overrunSeen atomic.Int64
}

func newMetrics(g *Gate) *metrics {
	m := &metrics{reg: prometheus.NewRegistry()}
	m.auth = newAuthMetrics(m.reg)
	m.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "ckanops_requests_total", Help: "Requests by class (read, write, login, tracking, control) and outcome (forwarded, refused, bypass, tracking, control).",
	}, []string{"class", "outcome"})
	m.refusals = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "ckanops_refusals_total", Help: "Requests refused, by the mode that refused them and the answer's kind (api or html).",
	}, []string{"mode", "kind"})
	m.upstream = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "ckanops_upstream_duration_seconds", Help: "Time from forwarding a request to CKAN until its response headers arrived.",
		Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
	})
	m.upErrors = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "ckanops_upstream_errors_total", Help: "Requests answered 502 because CKAN could not be reached.",
	})
	m.dropped = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "ckanops_dropped_headers_total", Help: "Request headers not forwarded to CKAN because they could re-route the request: a name with '_' (underscore), or a routing header from an untrusted peer (routing).",
	}, []string{"reason"})
	m.badBodies = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "ckanops_bad_request_bodies_total", Help: "Requests answered 400 because their body was malformed or cut off (aborted upstream, never completed).",
	})
	m.overruns = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "ckanops_overruns_total", Help: "Maintenances that went past their planned end (until) while still on; each counts once.",
	})
	m.trigSw = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "ckanops_trigger_switches_total", Help: "Mode changes made by a trigger, by trigger and direction (maintenance, live).",
	}, []string{"trigger", "to"})
	for _, t := range g.opts.Triggers {
		m.trigSw.WithLabelValues(t.Name, "maintenance")
		m.trigSw.WithLabelValues(t.Name, "live")
	}
	m.reg.MustRegister(triggerCollector{g: g,
		state: prometheus.NewDesc("ckanops_trigger_state", "1 for each trigger's state (armed, pending, fired, recovering, blind, stood-down), 0 for the others.", []string{"trigger", "state"}, nil),
		value: prometheus.NewDesc("ckanops_trigger_value", "The value each trigger last read of its detail (true: 1, false: 0); absent while unknown.", []string{"trigger"}, nil),
	})
	m.reg.MustRegister(m.requests, m.refusals, m.upstream, m.upErrors, m.dropped, m.badBodies, m.overruns, m.trigSw,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "ckanops_overrun", Help: "1 while the site is in maintenance past its planned end (until)."},
			func() float64 { return b2f(g.state.current().overrun(g.clock())) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "ckanops_schedule_start_timestamp_seconds", Help: "Start of the planned maintenance window (Unix time); 0 when none is planned."},
			func() float64 {
				if s := g.state.current().Schedule; s != nil {
					return float64(s.At.Unix())
				}
				return 0
			}),
		enumGauge{
			desc:    prometheus.NewDesc("ckanops_mode", "1 for the mode the gate enforces, 0 for the others.", []string{"mode"}, nil),
			values:  []string{string(api.ModeLive), string(api.ModeReadOnly), string(api.ModeDown)},
			current: func() string { return string(g.state.current().Mode) },
		},
		enumGauge{
			desc:    prometheus.NewDesc("ckanops_phase", "1 for the current phase (live, draining, quiesced), 0 for the others.", []string{"phase"}, nil),
			values:  []string{string(api.PhaseLive), string(api.PhaseDraining), string(api.PhaseQuiesced)},
			current: func() string { p, _ := g.state.phase(); return string(p) },
		},
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "ckanops_mode_version", Help: "Version of the enforced mode record."},
			func() float64 { return float64(g.state.current().Version) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "ckanops_in_flight_writes", Help: "Write requests admitted and not yet finished."},
			func() float64 { return float64(g.state.inFlightCount()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "ckanops_store_ok", Help: "1 while the state store answers, 0 while the gate runs on its last known mode."},
			func() float64 { ok, _ := g.storeState.get(); return b2f(ok) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "ckanops_audit_failures_total", Help: "Audit log entries that could not be written (or went to a rotated file the gate could not replace); the change they record was made."},
			func() float64 { return float64(g.opts.Audit.state().failures) }),
	)
	m.text = promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
	return m
}

// enumGauge exports a one-of-n state as n series, the current one at 1.
type enumGauge struct {
	desc    *prometheus.Desc
	values  []string
	current func() string
}

func (e enumGauge) Describe(ch chan<- *prometheus.Desc) { ch <- e.desc }

func (e enumGauge) Collect(ch chan<- prometheus.Metric) {
	cur := e.current()
	for _, v := range e.values {
		ch <- prometheus.MustNewConstMetric(e.desc, prometheus.GaugeValue, b2f(v == cur), v)
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func (m *metrics) triggerSwitch(name, to string) { m.trigSw.WithLabelValues(name, to).Inc() }

// setOverrun counts rec once when it is an overrun at now.
func (m *metrics) setOverrun(rec Record, now time.Time) {
	if !rec.overrun(now) {
		return
	}
	if prev := m.overrunSeen.Load(); prev != rec.Version && m.overrunSeen.CompareAndSwap(prev, rec.Version) {
		m.overruns.Inc()
	}
}

func (m *metrics) request(class, outcome string) { m.requests.WithLabelValues(class, outcome).Inc() }

func (m *metrics) refusal(class, mode, kind string) {
	m.requests.WithLabelValues(class, "refused").Inc()
	m.refusals.WithLabelValues(mode, kind).Inc()
}

func (m *metrics) upstreamError() { m.upErrors.Inc() }

func (m *metrics) droppedHeaders(underscore, routing int) {
	if underscore > 0 {
		m.dropped.WithLabelValues("underscore").Add(float64(underscore))
	}
	if routing > 0 {
		m.dropped.WithLabelValues("routing").Add(float64(routing))
	}
}

func (m *metrics) badBody() { m.badBodies.Inc() }

// instrument wraps the upstream transport to time each round trip.
func (m *metrics) instrument(rt http.RoundTripper) http.RoundTripper {
	return roundTripFunc(func(r *http.Request) (*http.Response, error) {
		start := time.Now()
		resp, err := rt.RoundTrip(r)
		m.upstream.Observe(time.Since(start).Seconds())
		return resp, err
	})
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// authMetrics count the control API's failed authentications.
type authMetrics struct {
	failures *prometheus.CounterVec
	limited  prometheus.Counter
}

func newAuthMetrics(reg *prometheus.Registry) *authMetrics {
	a := &authMetrics{
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ckanops_auth_failures_total", Help: "Failed authentications to the control API, by reason: not-token (neither the ops token nor shaped like a CKAN API token), unknown-token (CKAN does not know it), not-sysadmin.",
		}, []string{"reason"}),
		limited: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ckanops_auth_rate_limited_total", Help: "Requests with credentials answered 429 because their client address failed authentication too often.",
		}),
	}
	for _, r := range []string{failNotToken, failUnknown, failNotSysadmin} {
		a.failures.WithLabelValues(r) // every reason shows, at 0
	}
	reg.MustRegister(a.failures, a.limited)
	return a
}

func (m *metrics) authFailure(reason string) { m.auth.failures.WithLabelValues(reason).Inc() }

func (m *metrics) authRateLimited() { m.auth.limited.Inc() }
