package ckanclient

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"
)

const (
	// pathMetrics is the gate's Prometheus endpoint.
	pathMetrics     = "/-/ckanops/metrics"
	gateMetricsCall = "gate metrics"
)

// GateCounters are the few of the gate's Prometheus series the console
// draws, each summed over its label values. Counters only grow, except
// when the gate restarts; a rate is the difference between two reads.
type GateCounters struct {
	// Requests is ckanops_requests_total over every class but control:
	// the site's traffic, without the console's own calls.
	Requests float64
	// RefusedWrites is ckanops_requests_total{class="write",outcome="refused"}.
	RefusedWrites float64
	// InFlightWrites is the gauge ckanops_in_flight_writes.
	InFlightWrites float64
}

// Metrics reads the gate's Prometheus metrics (GET /-/ckanops/metrics,
// text format) and returns the counters the console draws. It returns
// nil and no error when the gate has no metrics endpoint (404: a gate
// older than the endpoint).
func (c *Client) Metrics(ctx context.Context) (*GateCounters, error) {
	k := call{method: http.MethodGet, path: pathMetrics, name: gateMetricsCall, retry: true, isGate: true,
		accept: "text/plain;version=0.0.4"}
	resp, err := c.do(ctx, k)
	if err != nil {
		return nil, err
	}
	a := answerOf(resp)
	switch {
	case a.status == http.StatusNotFound:
		return nil, nil
	case !a.ok():
		if a.looksJSON() {
			return nil, c.decodeGate(a, k, nil)
		}
		return nil, c.notAPIAnswer(a, k, redactURL(c.urlFor(k.path)))
	}
	gc, err := parseCounters(a.body)
	if err != nil {
		return nil, c.decodeError(a, k, redactURL(c.urlFor(k.path)), err)
	}
	return gc, nil
}

// parseCounters reads the series of GateCounters from Prometheus's text
// exposition format. It reads only sample lines (name, optional labels,
// value, optional timestamp) and skips comments. A body holding no
// ckanops_ series is not the gate's.
func parseCounters(body []byte) (*GateCounters, error) {
	var gc GateCounters
	seen := false
	sc := bufio.NewScanner(bytes.NewReader(body))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		name, labels, value, err := parseSample(line)
		if err != nil {
			return nil, fmt.Errorf("metrics line %d: %w", n, err)
		}
		if strings.HasPrefix(name, "ckanops_") {
			seen = true
		}
		if math.IsNaN(value) {
			continue
		}
		switch name {
		case "ckanops_requests_total":
			if labels["class"] != "control" {
				gc.Requests += value
			}
			if labels["class"] == "write" && labels["outcome"] == "refused" {
				gc.RefusedWrites += value
			}
		case "ckanops_in_flight_writes":
			gc.InFlightWrites += value
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	if !seen {
		return nil, errors.New("no ckanops_ series: not the gate's metrics")
	}
	return &gc, nil
}

// parseSample splits `name{a="x",b="y"} value [timestamp]`.
func parseSample(line string) (name string, labels map[string]string, value float64, err error) {
	i := strings.IndexAny(line, "{ \t")
	if i <= 0 {
		return "", nil, 0, errors.New("no value")
	}
	name, rest := line[:i], line[i:]
	if rest[0] == '{' {
		labels, rest, err = parseLabels(rest[1:])
		if err != nil {
			return "", nil, 0, fmt.Errorf("%s: %w", name, err)
		}
	}
	fields := strings.Fields(rest)
	if len(fields) == 0 || len(fields) > 2 {
		return "", nil, 0, fmt.Errorf("%s: want a value and an optional timestamp", name)
	}
	value, err = strconv.ParseFloat(fields[0], 64)
	if err != nil {
		return "", nil, 0, fmt.Errorf("%s: value %q: %w", name, fields[0], err)
	}
	return name, labels, value, nil
}

// parseLabels reads `a="x",b="y"}` and returns what follows the brace.
func parseLabels(s string) (map[string]string, string, error) {
	labels := map[string]string{}
	for {
		s = strings.TrimLeft(s, " \t,")
		if s == "" {
			return nil, "", errors.New("labels not closed")
		}
		if s[0] == '}' {
			return labels, s[1:], nil
		}
		eq := strings.IndexByte(s, '=')
		if eq <= 0 || eq+1 >= len(s) || s[eq+1] != '"' {
			return nil, "", errors.New("bad label")
		}
		key := strings.TrimSpace(s[:eq])
		var v strings.Builder
		j := eq + 2
		for ; j < len(s) && s[j] != '"'; j++ {
			if s[j] == '\\' && j+1 < len(s) {
				j++
				switch s[j] {
				case 'n':
					v.WriteByte('\n')
				default:
					v.WriteByte(s[j])
				}
				continue
			}
			v.WriteByte(s[j])
		}
		if j >= len(s) {
			return nil, "", errors.New("label value not closed")
		}
		labels[key] = v.String()
		s = s[j+1:]
	}
}
