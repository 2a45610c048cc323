package main

import (
	"strings"
	"testing"
	"time"

	"github.com/ckanops/ckanops/api"
)

// ckanops status says what each trigger does, and keeps quiet about the
// armed ones with nothing to say.
func TestTriggerLines(t *testing.T) {
	now := time.Date(2026, 12, 6, 14, 0, 0, 0, time.UTC)
	ago := func(d time.Duration) *time.Time { t := now.Add(-d); return &t }
	st := &api.Status{Triggers: []api.TriggerState{
		{Name: "quiet", Check: "storage", When: "free_ratio < 0.05", State: api.TriggerArmed},
		{Name: "lag", Check: "ckan_db", When: "replay_lag_seconds > 30", State: api.TriggerFired, Mode: api.ModeReadOnly, FiredAt: ago(3 * time.Minute), FiredValue: "42.5"},
		{Name: "conns", Check: "ckan_db", When: "connections_ratio >= 0.95", State: api.TriggerPending, Since: ago(10 * time.Second), Value: "0.97",
			Note: "the site is read-only (set by trigger:lag): the trigger leaves it alone"},
		{Name: "solr", Check: "solr", When: "qtime_ms > 500", State: api.TriggerBlind, Since: ago(time.Minute), Note: "the probe does not report qtime_ms"},
	}}
	got := strings.Join(triggerLines(st, now), "\n")
	for _, want := range []string{
		"trigger lag (ckan_db: replay_lag_seconds > 30): FIRED 3m ago on 42.5, the site is read-only",
		"trigger conns (ckan_db: connections_ratio >= 0.95): pending since 10s ago, value 0.97 (the site is read-only (set by trigger:lag): the trigger leaves it alone)",
		"trigger solr (solr: qtime_ms > 500): blind since 1m ago (the probe does not report qtime_ms)",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("lacks %q in:\n%s", want, got)
		}
	}
	if strings.Contains(got, "quiet") {
		t.Errorf("an armed trigger with nothing to say is listed:\n%s", got)
	}
}
