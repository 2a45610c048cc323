package main

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/ckanops/ckanops/api"
)

// A window planned with one command is shown, cancelled, planned again,
// and started by the gate process on time with nobody at the keyboard.
func TestScheduleCommandEndToEnd(t *testing.T) {
	s := newSite(t)
	s.startGate()

	if code, out, errOut := s.cli("schedule", "e2e"); code != 0 || !strings.Contains(out, "e2e: no window planned") {
		t.Fatalf("schedule show: %d %q %q", code, out, errOut)
	}
	for _, bad := range [][]string{
		{"schedule", "e2e", "--at", "+2h"},
		{"schedule", "e2e", "--at", "tomorrow", "--for", "1h"},
		{"schedule", "e2e", "--at", "+2h", "--for", "1h", "--mode", "live"},
		{"schedule", "e2e", "--cancel", "--at", "+2h"},
		{"schedule", "e2e", "--at", "+2h", "--for", "1h", "--skip-migrate"},
	} {
		if code, _, errOut := s.cli(bad...); code != exitUsage {
			t.Errorf("%q: exit %d, want 2\n%s", bad, code, errOut)
		}
	}
	code, out, errOut := s.cli("schedule", "e2e", "--at", "+3h", "--for", "2h", "--message", "Upgrade to CKAN 2.11", "--reason", "ticket 9")
	if code != 0 || !strings.Contains(out, "e2e: window planned, version 1") || !strings.Contains(out, "read-only window") ||
		!strings.Contains(out, "for 2h") || !strings.Contains(out, "announced since") || !strings.Contains(out, "planned by ops-token: ticket 9") {
		t.Fatalf("schedule: %d\n%s\n%s", code, out, errOut)
	}
	code, out, _ = s.cli("schedule", "e2e", "--json")
	var ss api.ScheduleState
	if code != 0 || json.Unmarshal([]byte(out), &ss) != nil || ss.Schedule == nil || ss.Schedule.For != "2h" || ss.Version != 1 {
		t.Fatalf("schedule --json: %d %s", code, out)
	}
	if code, out, _ := s.cli("status", "e2e"); code != 0 || !strings.Contains(out, "e2e: read-only window") {
		t.Fatalf("status does not show the window:\n%s", out)
	}
	// A stale cancel changes nothing; the right one does.
	if code, _, errOut := s.cli("schedule", "e2e", "--cancel", "--expect-version", "0"); code != exitFail || !strings.Contains(errOut, "version 1") {
		t.Fatalf("stale cancel: %d %s", code, errOut)
	}
	if code, out, _ := s.cli("schedule", "e2e", "--cancel", "--reason", "postponed"); code != 0 || !strings.Contains(out, "window cancelled, version 2") {
		t.Fatalf("cancel: %d %s", code, out)
	}
	if code, out, _ := s.cli("schedule", "e2e", "--cancel"); code != 0 || !strings.Contains(out, "no window planned: nothing was changed") {
		t.Fatalf("cancel of nothing: %d %s", code, out)
	}

	// A window two seconds away starts by itself.
	if code, out, errOut := s.cli("schedule", "e2e", "--at", "+2s", "--for", "1m", "--message", "Snapshot"); code != 0 {
		t.Fatalf("schedule +2s: %d %s %s", code, out, errOut)
	}
	var st api.Status
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		code, body := s.gateCall("GET", api.PathStatus, "")
		st = api.Status{}
		if code == 200 && json.Unmarshal([]byte(body), &st) == nil && st.Mode == api.ModeReadOnly {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the window did not start: %s\ngate log:\n%s", body, s.logs)
		}
	}
	if st.Actor != "schedule" || st.Message != "Snapshot" || st.Until == nil || st.Schedule != nil {
		t.Fatalf("the started window: %+v", st)
	}
	if code := s.write("during-window"); code != 503 {
		t.Fatalf("a write in the window: %d", code)
	}
	code, body := s.gateCall("GET", api.PathAudit+"?tail=3", "")
	if code != 200 || !strings.Contains(body, `"actor":"schedule"`) {
		t.Fatalf("the audit does not name the schedule: %s", body)
	}
}
