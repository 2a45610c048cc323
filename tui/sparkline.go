package tui

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/ckanops/ckanops/api"
	"github.com/ckanops/ckanops/ckanclient"
)

// sparkPoints is how many points a site keeps of each series: at the
// default refresh of 5s, the last five minutes.
const sparkPoints = 60

// ring holds the last sparkPoints values of a series, oldest first; NaN
// is a gap (a read that failed).
type ring struct {
	buf  [sparkPoints]float64
	head int // where the next value goes
	n    int
}

func (r *ring) push(v float64) {
	r.buf[r.head] = v
	r.head = (r.head + 1) % sparkPoints
	r.n = min(r.n+1, sparkPoints)
}

func (r *ring) gap() { r.push(math.NaN()) }

// values returns the values held, oldest first.
func (r *ring) values() []float64 {
	out := make([]float64, 0, r.n)
	for i := range r.n {
		out = append(out, r.buf[(r.head-r.n+i+sparkPoints)%sparkPoints])
	}
	return out
}

// last is the newest value that is not a gap.
func (r *ring) last() (float64, bool) {
	v := r.values()
	for i := len(v) - 1; i >= 0; i-- {
		if !math.IsNaN(v[i]) {
			return v[i], true
		}
	}
	return 0, false
}

// traffic is what a site's gate has been doing, from successive reads
// of its metrics (rates) and of its status (writes in flight).
type traffic struct {
	prev   *ckanclient.GateCounters // the last counters read, for the next rate
	prevAt time.Time

	requests ring // requests per second, every class but control
	refused  ring // refused writes per second
	inFlight ring // writes in flight, from the status
	// noMetrics: the gate has no metrics endpoint (404): no sparkline.
	noMetrics bool
}

// rate is the per-second increase of a counter between two reads. A
// counter lower than before was reset (the gate restarted): it counted
// from zero since, as Prometheus's rate() assumes.
func rate(prev, cur float64, dt time.Duration) float64 {
	if dt <= 0 {
		return math.NaN()
	}
	inc := cur - prev
	if cur < prev {
		inc = cur
	}
	return inc / dt.Seconds()
}

// addCounters records a metrics read made at `at`. The first read only
// sets where the rates start; a read at or before the previous one
// leaves a gap.
func (t *traffic) addCounters(c *ckanclient.GateCounters, at time.Time) {
	t.noMetrics = false
	if t.prev != nil {
		dt := at.Sub(t.prevAt)
		t.requests.push(rate(t.prev.Requests, c.Requests, dt))
		t.refused.push(rate(t.prev.RefusedWrites, c.RefusedWrites, dt))
	}
	cp := *c
	t.prev, t.prevAt = &cp, at
}

// metricsFailed leaves a gap in the rates. The counters last read are
// kept: the next rate spans the gap, so it is still the true average.
func (t *traffic) metricsFailed() {
	t.requests.gap()
	t.refused.gap()
}

// metricsMissing forgets the rates: the gate serves no metrics.
func (t *traffic) metricsMissing() {
	*t = traffic{inFlight: t.inFlight, noMetrics: true}
}

// sparkBars are the eight levels of a sparkline, lowest first.
var sparkBars = []rune("▁▂▃▄▅▆▇█")

// sparkline draws the last width values of vs, newest on the right,
// scaled to the largest of them: zero is the lowest bar, any other value
// at least the second, and a gap (NaN) a space. Fewer values than width
// are padded with spaces on the left.
func sparkline(vs []float64, width int) string {
	if width <= 0 {
		return ""
	}
	if len(vs) > width {
		vs = vs[len(vs)-width:]
	}
	top := 0.0
	for _, v := range vs {
		if !math.IsNaN(v) {
			top = max(top, v)
		}
	}
	var b strings.Builder
	b.WriteString(strings.Repeat(" ", width-len(vs)))
	for _, v := range vs {
		switch {
		case math.IsNaN(v):
			b.WriteByte(' ')
		case v <= 0 || top <= 0:
			b.WriteRune(sparkBars[0])
		default:
			i := int(math.Ceil(v / top * float64(len(sparkBars)-1)))
			b.WriteRune(sparkBars[min(max(i, 1), len(sparkBars)-1)])
		}
	}
	return b.String()
}

// cellReqRate is the dashboard's REQ/S cell: the sparkline of the
// site's requests per second; "-" when its gate serves no metrics, blank
// until two reads gave a rate.
func cellReqRate(_ *Model, r ranked, _ time.Time) string {
	if r.traffic.noMetrics {
		return "-"
	}
	return sparkline(r.traffic.requests.values(), reqRateWidth)
}

// reqRateWidth is the width of the dashboard's REQ/S column.
const reqRateWidth = 10

// trafficLines are the site view's sparklines, as wide as width allows:
// requests and refused writes per second, and the writes in flight while
// the site drains (or while the last points hold any) once two statuses
// were read. Nil when there is nothing to draw yet.
func (m *Model) trafficLines(s *siteState, width int) []string {
	t := &s.traffic
	const labelW, tailW = 14, 26
	points := min(sparkPoints, max(10, width-labelW-tailW))
	var out []string
	line := func(label string, r *ring, unit string) {
		tail := ""
		if v, ok := r.last(); ok {
			top := 0.0
			for _, x := range r.values() {
				if !math.IsNaN(x) {
					top = max(top, x)
				}
			}
			tail = fmt.Sprintf("%s%s now · max %s%s", amount(v), unit, amount(top), unit)
		}
		out = append(out, strings.TrimRight("  "+fit(label, labelW-2)+sparkline(r.values(), points)+"  "+tail, " "))
	}
	if t.requests.n > 0 {
		line("requests/s", &t.requests, "/s")
		line("refused/s", &t.refused, "/s")
	}
	draining := s.status != nil && s.status.Phase == api.PhaseDraining
	if t.inFlight.n > 1 && (draining || anyAbove(t.inFlight.values(), 0)) {
		line("in flight", &t.inFlight, "")
	}
	return out
}

// amount shows a rate or a count briefly: "0", "0.4", "12".
func amount(v float64) string {
	switch {
	case v == math.Trunc(v) || v >= 10:
		return strconv.FormatFloat(math.Round(v), 'f', -1, 64)
	}
	return strconv.FormatFloat(v, 'f', 1, 64)
}

func anyAbove(vs []float64, x float64) bool {
	for _, v := range vs {
		if v > x {
			return true
		}
	}
	return false
}
