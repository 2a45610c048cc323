package main

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/ckanops/ckanops/api"
)

// ckanops actions lists what the gate refused without knowing it, and
// --learn asks CKAN (here: an action CKAN does not have, which stays
// unknown and refused).
func TestActionsCommand(t *testing.T) {
	s := newSite(t)
	s.startGate()
	if code, _, errb := s.cli("enable", "--message", "upgrade", "e2e"); code != 0 {
		t.Fatalf("enable: %d %s", code, errb)
	}
	for i := 0; i < 2; i++ {
		res, err := http.Get(s.gateURL + "/api/3/action/harvest_source_list")
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusServiceUnavailable {
			t.Fatalf("an unknown action in read-only: %d", res.StatusCode)
		}
	}
	code, out, errb := s.cli("actions", "e2e")
	if code != 1 || !strings.Contains(out, "harvest_source_list") || !strings.Contains(errb, "1 unknown action(s)") || !strings.Contains(errb, "ckanops actions --learn e2e") {
		t.Fatalf("actions: exit %d\n%s\n%s", code, out, errb)
	}
	if !strings.Contains(out, "action(s) of the surface data not listed") {
		t.Errorf("the surface's actions are not summed up:\n%s", out)
	}
	code, out, _ = s.cli("actions", "--json", "--all", "e2e")
	var l api.ActionList
	if err := json.Unmarshal([]byte(out), &l); err != nil || code != 1 {
		t.Fatalf("--json: exit %d, %v\n%s", code, err, out)
	}
	if l.Actions[0].Name != "harvest_source_list" || l.Actions[0].Seen != 2 || len(l.Actions) < 100 {
		t.Fatalf("--json --all: %d actions, first %+v", len(l.Actions), l.Actions[0])
	}
	code, out, errb = s.cli("actions", "--learn", "e2e")
	if code != 1 || !strings.Contains(out, "asked CKAN about 1 action(s)") || !strings.Contains(out, "CKAN does not know it") || !strings.Contains(errb, "CKAN could not class them") {
		t.Fatalf("--learn: exit %d\n%s\n%s", code, out, errb)
	}
	if code, out, _ := s.cli("actions", "e2e"); code != 1 || !strings.Contains(out, "harvest_source_list  unknown  learned") {
		t.Fatalf("after learning: exit %d\n%s", code, out)
	}
}
