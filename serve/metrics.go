package serve

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// metrics are the server's Prometheus metrics.
type metrics struct {
	reg      *prometheus.Registry
	open     *prometheus.GaugeVec
	total    *prometheus.CounterVec
	refusals *prometheus.CounterVec
	endings  *prometheus.CounterVec
	keys     *prometheus.GaugeVec
}

func newMetrics() *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		open: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "ckanops_serve_sessions",
			Help: "SSH sessions open now, by role (operator, viewer) and kind (console, command)."}, []string{"role", "kind"}),
		total: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ckanops_serve_sessions_total",
			Help: "SSH sessions started, by role and kind."}, []string{"role", "kind"}),
		refusals: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ckanops_serve_refused_total",
			Help: "Connections or sessions refused, by reason: authentication (no authorized key), connections or sessions (a limit)."}, []string{"reason"}),
		endings: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ckanops_serve_sessions_ended_total",
			Help: "Sessions the server ended itself, by reason: idle, revoked, rights-changed."}, []string{"reason"}),
		keys: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "ckanops_serve_keys",
			Help: "Keys authorized now, by role."}, []string{"role"}),
	}
	m.reg.MustRegister(m.open, m.total, m.refusals, m.endings, m.keys)
	for _, r := range []string{"authentication", "connections", "sessions"} {
		m.refusals.WithLabelValues(r)
	}
	for _, r := range []string{"idle", "revoked", "rights-changed"} {
		m.endings.WithLabelValues(r)
	}
	for _, role := range []Role{RoleOperator, RoleViewer} {
		for _, kind := range []string{"console", "command"} {
			m.open.WithLabelValues(string(role), kind)
			m.total.WithLabelValues(string(role), kind)
		}
	}
	return m
}

func (m *metrics) handler() http.Handler { return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{}) }

func (m *metrics) started(r Role, kind string) {
	m.open.WithLabelValues(string(r), kind).Inc()
	m.total.WithLabelValues(string(r), kind).Inc()
}

func (m *metrics) stopped(r Role, kind string) { m.open.WithLabelValues(string(r), kind).Dec() }

func (m *metrics) refused(reason string) { m.refusals.WithLabelValues(reason).Inc() }

func (m *metrics) ended(reason string) { m.endings.WithLabelValues(reason).Inc() }

func (m *metrics) setKeys(c map[Role]int) {
	for _, role := range []Role{RoleOperator, RoleViewer} {
		m.keys.WithLabelValues(string(role)).Set(float64(c[role]))
	}
}
