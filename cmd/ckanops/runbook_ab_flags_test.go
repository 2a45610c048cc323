package main

import (
	"testing"

	"github.com/ckanops/ckanops/api"
)

// --stop-before and --until take the steps of the runbook they act on:
// the A/B runbook's with --ab; without it, an A/B step is left for the
// active runbook to judge (one this command attaches to may be A/B); a
// step of neither is bad usage.
func TestRunbookABFlags(t *testing.T) {
	for until, stop := range map[string]string{"snapshot": api.StepRestoreB, "verify_b": api.StepSwitchToB, "verify": api.StepSwitchToA, "switch_to_a": api.StepDisable, "disable": ""} {
		if got, err := stopFlags("", until, api.ABSteps); err != nil || got != stop {
			t.Errorf("--ab --until %s: stop before %q, %v; want %q", until, got, err, stop)
		}
	}
	if _, err := stopFlags(api.StepSwitchToB, "", api.Steps); err == nil {
		t.Error("--stop-before switch_to_b accepted for an in-place runbook")
	}
	for _, args := range [][]string{
		{"runbook", "e2e", "--ab"},
		{"runbook", "e2e", "--ab", "--yes", "--stop-before", "switch_to_b"},
		{"runbook", "e2e", "--ab", "--until", "verify_b", "--json"},
		{"runbook", "e2e", "--yes", "--stop-before", "switch_to_a"}, // attaching to an A/B runbook
	} {
		if code, errOut := dryRun(t, args); code != 0 {
			t.Errorf("%q: exit %d\n%s", args, code, errOut)
		}
	}
	for _, args := range [][]string{
		{"runbook", "e2e", "--ab", "--stop-before", "preflight"},
		{"runbook", "e2e", "--stop-before", "restore"},
		{"runbook", "e2e", "--retry", "--stop-before", "switch_to_a"},
	} {
		if code, _ := dryRun(t, args); code != 2 {
			t.Errorf("%q: exit %d, want 2 (bad usage)", args, code)
		}
	}
}
