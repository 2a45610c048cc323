package runbook

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ckanops/ckanops/api"
	"github.com/ckanops/ckanops/config"
)

// stopEngine is a test engine with one [[migrate]] command that leaves a
// file behind when it runs: the proof that migrate ran.
func stopEngine(t *testing.T, site *fakeSite) (*Engine, Options, string) {
	t.Helper()
	ran := filepath.Join(t.TempDir(), "migrated")
	script := filepath.Join(t.TempDir(), "migrate.sh")
	writeScript(t, script, "echo migrating\ntouch "+ran+"\n")
	e, o := testEngine(t, site, func(o *Options) {
		o.Migrate = []config.Command{{Name: "db upgrade", Argv: []string{script}, Timeout: config.Duration{Duration: time.Minute}}}
	})
	return e, o, ran
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// stop_before migrate, auto-confirmed: the runbook stops after the
// snapshot, the site read-only, and migrate has not run. It waits there,
// across a gate restart, until confirmed; confirming runs the rest.
func TestRunbookStopBeforeMigrate(t *testing.T) {
	site := newFakeSite(t)
	e, o, ran := stopEngine(t, site)
	rb, err := e.Start(context.Background(), api.RunbookOptions{AutoConfirm: true, StopBefore: api.StepMigrate}, "ops-token")
	if err != nil {
		t.Fatal(err)
	}
	if rb.Options.StopBefore != api.StepMigrate {
		t.Fatalf("options %+v", rb.Options)
	}
	rb = waitFor(t, e, "the stop before migrate", waitingAt(api.StepMigrate))
	if !rb.Waiting.Stop || !rb.Waiting.TypeSiteName || !strings.Contains(rb.Waiting.Prompt, "Stopped before migrate") {
		t.Fatalf("waiting %+v", rb.Waiting)
	}
	for _, s := range []string{api.StepPreflight, api.StepEnable, api.StepDrain, api.StepSnapshot} {
		if st := stepState(rb, s); st != api.StepDone {
			t.Errorf("step %s is %s, want done", s, st)
		}
	}
	for _, s := range []string{api.StepVerify, api.StepDisable} {
		if st := stepState(rb, s); st != api.StepPending {
			t.Errorf("step %s is %s, want pending", s, st)
		}
	}
	if rb.Snapshot == nil || rb.Snapshot.Verdict != api.VerdictConsistent || !exists(filepath.Join(rb.Snapshot.Dir, "manifest.json")) {
		t.Fatalf("snapshot %+v", rb.Snapshot)
	}
	time.Sleep(50 * time.Millisecond) // it stays stopped
	if exists(ran) {
		t.Fatal("migrate ran")
	}
	if site.mode() != api.ModeReadOnly || !slices.Equal(site.modes, []api.Mode{api.ModeReadOnly}) {
		t.Fatalf("mode %s, changes %v", site.mode(), site.modes)
	}
	if !site.suspended {
		t.Error("RQ resumed while stopped before migrate")
	}

	// A gate restart: the stop holds (interrupted, then resumed: it waits again).
	e = reopen(t, e, o)
	if _, err := e.Resume(api.RunbookAction{}, "ops-token"); err != nil {
		t.Fatal(err)
	}
	rb = waitFor(t, e, "the stop again", waitingAt(api.StepMigrate))
	if !rb.Waiting.Stop || exists(ran) {
		t.Fatalf("after resume: waiting %+v, migrated %v", rb.Waiting, exists(ran))
	}

	// Confirming goes on: the stop is passed, auto_confirm does the rest.
	if _, err := e.Confirm(api.RunbookAction{Step: api.StepMigrate, SiteName: "prod"}, "ops-token"); err != nil {
		t.Fatal(err)
	}
	rb = waitFor(t, e, "the end", ended)
	if rb.State != api.RunbookDone || !exists(ran) || rb.Options.StopBefore != "" {
		t.Fatalf("state %s (%s), migrated %v, stop_before %q", rb.State, rb.Error, exists(ran), rb.Options.StopBefore)
	}
	if !slices.Equal(site.modes, []api.Mode{api.ModeReadOnly, api.ModeLive}) {
		t.Errorf("mode changes %v", site.modes)
	}
}

// Confirming a stop may set the next one: the A/B upgrade's second leg
// (migrate and verify, then stop before reopening writes).
func TestRunbookStopBeforeMovedOnConfirm(t *testing.T) {
	site := newFakeSite(t)
	e, _, ran := stopEngine(t, site)
	if _, err := e.Start(context.Background(), api.RunbookOptions{AutoConfirm: true, StopBefore: api.StepMigrate}, "ops-token"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, e, "the stop before migrate", waitingAt(api.StepMigrate))
	// The new stop must come after the confirmed step.
	for _, bad := range []string{api.StepMigrate, api.StepDrain, api.StepPreflight, "nope"} {
		_, err := e.Confirm(api.RunbookAction{Step: api.StepMigrate, SiteName: "prod", StopBefore: bad}, "ops-token")
		var br *badRequest
		if !errors.As(err, &br) {
			t.Errorf("stop_before %q on confirming migrate: %v, want a bad request", bad, err)
		}
	}
	if exists(ran) {
		t.Fatal("a refused confirmation ran migrate")
	}
	if _, err := e.Confirm(api.RunbookAction{Step: api.StepMigrate, SiteName: "prod", StopBefore: api.StepDisable}, "ops-token"); err != nil {
		t.Fatal(err)
	}
	rb := waitFor(t, e, "the stop before disable", waitingAt(api.StepDisable))
	if !rb.Waiting.Stop || !exists(ran) || stepState(rb, api.StepVerify) != api.StepDone {
		t.Fatalf("waiting %+v, migrated %v, verify %s", rb.Waiting, exists(ran), stepState(rb, api.StepVerify))
	}
	if site.mode() != api.ModeReadOnly {
		t.Fatalf("mode %s before disable", site.mode())
	}
	if _, err := e.Confirm(api.RunbookAction{Step: api.StepDisable}, "ops-token"); err != nil {
		t.Fatal(err)
	}
	if rb = waitFor(t, e, "the end", ended); rb.State != api.RunbookDone || site.mode() != api.ModeLive {
		t.Fatalf("state %s, mode %s", rb.State, site.mode())
	}
}

// With migrate skipped, a stop before migrate (--until snapshot) stops
// before the next step that runs: verify. The site stays read-only:
// --skip-migrate alone would reopen it at once.
func TestRunbookStopBeforeSkippedStep(t *testing.T) {
	site := newFakeSite(t)
	e, _, ran := stopEngine(t, site)
	if _, err := e.Start(context.Background(), api.RunbookOptions{AutoConfirm: true, SkipMigrate: true, StopBefore: api.StepMigrate}, "ops-token"); err != nil {
		t.Fatal(err)
	}
	rb := waitFor(t, e, "the stop", waitingAt(api.StepVerify))
	if !rb.Waiting.Stop || rb.Waiting.TypeSiteName || !strings.Contains(rb.Waiting.Prompt, "migrate is skipped") {
		t.Fatalf("waiting %+v", rb.Waiting)
	}
	if stepState(rb, api.StepSnapshot) != api.StepDone || stepState(rb, api.StepMigrate) != api.StepSkipped || exists(ran) {
		t.Fatalf("steps %+v", rb.Steps)
	}
	if site.mode() != api.ModeReadOnly {
		t.Fatalf("mode %s", site.mode())
	}
	// Skipping the step the runbook stopped before passes the stop too.
	if _, err := e.Skip(api.RunbookAction{Step: api.StepVerify}, "ops-token"); err != nil {
		t.Fatal(err)
	}
	if rb = waitFor(t, e, "the end", ended); rb.State != api.RunbookDone || stepState(rb, api.StepVerify) != api.StepSkipped {
		t.Fatalf("state %s, verify %s", rb.State, stepState(rb, api.StepVerify))
	}
}

// A stop before a step that would wait anyway (enable, without
// auto_confirm) is that step's confirmation, marked; preflight is no step
// to stop before.
func TestRunbookStopBeforeOptions(t *testing.T) {
	site := newFakeSite(t)
	e, _, _ := stopEngine(t, site)
	for _, bad := range []string{api.StepPreflight, "migrat", "MIGRATE"} {
		_, err := e.Start(context.Background(), api.RunbookOptions{StopBefore: bad}, "ops-token")
		var br *badRequest
		if !errors.As(err, &br) || !strings.Contains(err.Error(), "enable, drain, snapshot, migrate, verify, disable") {
			t.Errorf("stop_before %q: %v, want a bad request naming the steps", bad, err)
		}
	}
	if _, err := e.Start(context.Background(), api.RunbookOptions{StopBefore: api.StepEnable}, "ops-token"); err != nil {
		t.Fatal(err)
	}
	rb := waitFor(t, e, "the stop before enable", waitingAt(api.StepEnable))
	if !rb.Waiting.Stop || !rb.Waiting.TypeSiteName || stepState(rb, api.StepPreflight) != api.StepDone || site.mode() != api.ModeLive {
		t.Fatalf("waiting %+v, mode %s", rb.Waiting, site.mode())
	}
	if _, err := e.Abort(context.Background(), api.RunbookAction{}, "ops-token"); err != nil {
		t.Fatal(err)
	}
	if len(site.modes) != 0 {
		t.Errorf("mode changes %v", site.modes)
	}
}

// The API: stop_before travels in the start body and in a confirmation;
// a bad one is a 400 naming the steps, and nothing starts.
func TestRunbookStopBeforeAPI(t *testing.T) {
	site := newFakeSite(t)
	e, _, _ := stopEngine(t, site)
	post := func(path, body string) (int, string) {
		rec := httptest.NewRecorder()
		e.ServeRunbook(rec, httptest.NewRequest("POST", path, strings.NewReader(body)), "ops-token")
		return rec.Code, rec.Body.String()
	}
	if code, body := post(api.PathRunbook, `{"auto_confirm": true, "stop_before": "preflight"}`); code != http.StatusBadRequest ||
		!strings.Contains(body, "enable, drain, snapshot, migrate, verify, disable") {
		t.Fatalf("stop_before preflight: %d %s", code, body)
	}
	if _, err := e.Current(); !errors.Is(err, ErrNoRunbook) {
		t.Fatalf("a runbook started: %v", err)
	}
	if code, body := post(api.PathRunbook, `{"auto_confirm": true, "stop_before": "snapshot"}`); code != http.StatusCreated ||
		!strings.Contains(body, `"stop_before":"snapshot"`) {
		t.Fatalf("start: %d %s", code, body)
	}
	rb := waitFor(t, e, "the stop before snapshot", waitingAt(api.StepSnapshot))
	if !rb.Waiting.Stop || rb.Snapshot != nil || stepState(rb, api.StepDrain) != api.StepDone || site.mode() != api.ModeReadOnly {
		t.Fatalf("waiting %+v, snapshot %+v, mode %s", rb.Waiting, rb.Snapshot, site.mode())
	}
	if code, body := post(api.PathRunbookConfirm, `{"step": "snapshot", "stop_before": "verify"}`); code != http.StatusOK ||
		!strings.Contains(body, `"stop_before":"verify"`) {
		t.Fatalf("confirm: %d %s", code, body)
	}
	// migrate comes before the new stop: auto_confirm runs it.
	rb = waitFor(t, e, "the stop before verify", waitingAt(api.StepVerify))
	if !rb.Waiting.Stop || rb.Snapshot == nil || stepState(rb, api.StepMigrate) != api.StepDone {
		t.Fatalf("waiting %+v, steps %+v", rb.Waiting, rb.Steps)
	}
}
