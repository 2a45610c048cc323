package checks

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ckanops/ckanops/api"
)

// Some runs only the probes it keeps, fresh, and leaves the cached round
// alone.
func TestRunnerSomeRunsOnlyTheKeptProbes(t *testing.T) {
	var calls [3]atomic.Int32
	probe := func(i int, name string) Probe {
		return ProbeFunc(name, func(context.Context) api.CheckResult {
			calls[i].Add(1)
			return api.CheckResult{Status: api.CheckOK, Summary: name}
		})
	}
	r := NewRunner(RunnerOptions{Site: "s", Timeout: time.Second, Refresh: time.Hour},
		probe(0, "ckan"), probe(1, "ckan_db"), probe(2, "redis"))
	r.Run(context.Background()) // a cached round of all three
	for range 3 {
		rep := r.Some(context.Background(), func(n string) bool { return n != "ckan" })
		if len(rep.Checks) != 2 || rep.Checks[0].Name != "ckan_db" || rep.Checks[1].Name != "redis" {
			t.Fatalf("Some: %+v", rep.Checks)
		}
	}
	if got := [3]int32{calls[0].Load(), calls[1].Load(), calls[2].Load()}; got != [3]int32{1, 4, 4} {
		t.Fatalf("calls (ckan, ckan_db, redis): %v, want [1 4 4]", got)
	}
	if rep := r.Run(context.Background()); len(rep.Checks) != 3 || calls[0].Load() != 1 {
		t.Fatalf("the cached round was disturbed: %+v", rep.Checks)
	}
}
