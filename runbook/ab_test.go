package runbook

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ckanops/ckanops/api"
	"github.com/ckanops/ckanops/config"
	"github.com/ckanops/ckanops/internal/ckansim"
)

// abWorld is an A/B runbook's surroundings in one process: A is the fake
// site (its CKAN a ckansim), B a ckansim behind a stand-in for B's gate
// (its status: site prod-b, the mode the test sets), and the public URL
// a stand-in for nginx (NOT nginx: its status is the status of the side
// named in the file "active", which the switch scripts rewrite, as
// deploy/nginx/ckanops-switch rewrites active.conf). The switch commands
// and [[ab.prepare]] are shell scripts in a temporary directory.
type abWorld struct {
	site     *fakeSite
	dir      string
	active   string // the file naming the side the public URL serves: "a" or "b"
	bStorage string
	calls    string // the file every script appends its name to

	mu       sync.Mutex
	bMode    api.Mode
	bSearch  http.HandlerFunc // replaces B's package_search when set
	ab       config.ABConfig
	migrated string // the file the migrate script writes the side it saw
}

func newABWorld(t *testing.T) *abWorld {
	t.Helper()
	w := &abWorld{site: newFakeSite(t), dir: t.TempDir(), bMode: api.ModeReadOnly}
	w.active = filepath.Join(w.dir, "active")
	w.calls = filepath.Join(w.dir, "calls")
	w.bStorage = filepath.Join(w.dir, "b-storage")
	w.migrated = filepath.Join(w.dir, "migrated")
	if err := os.WriteFile(w.active, []byte("a\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	bsim, err := ckansim.New(ckansim.Options{})
	if err != nil {
		t.Fatal(err)
	}
	b := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		w.mu.Lock()
		mode, search := w.bMode, w.bSearch
		w.mu.Unlock()
		switch {
		case r.URL.Path == api.PathStatus:
			writeStatus(rw, "prod-b", mode)
		case search != nil && strings.HasSuffix(r.URL.Path, "/package_search"):
			search(rw, r)
		default:
			bsim.ServeHTTP(rw, r)
		}
	}))
	t.Cleanup(b.Close)
	pub := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		side, _ := os.ReadFile(w.active)
		switch strings.TrimSpace(string(side)) {
		case "a":
			writeStatus(rw, "prod", w.site.mode())
		case "b":
			w.mu.Lock()
			mode := w.bMode
			w.mu.Unlock()
			writeStatus(rw, "prod-b", mode)
		default:
			http.Error(rw, "502 Bad Gateway", http.StatusBadGateway)
		}
	}))
	t.Cleanup(pub.Close)
	w.ab = config.ABConfig{
		BURL: b.URL, PublicURL: pub.URL, StoragePath: w.bStorage,
		Prepare:    []config.Command{w.script(t, "prepare", "echo preparing B at $CKANOPS_B_URL for $CKANOPS_PUBLIC_URL\n")},
		SwitchToB:  []config.Command{w.script(t, "to-b", "echo b > "+w.active+"\n")},
		SwitchToA:  []config.Command{w.script(t, "to-a", "echo a > "+w.active+"\n")},
		SwitchWait: config.Duration{Duration: 2 * time.Second},
	}
	return w
}

func writeStatus(rw http.ResponseWriter, site string, mode api.Mode) {
	rw.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(rw).Encode(api.Status{Site: site, Mode: mode, Phase: api.PhaseQuiesced, Version: 1, Since: time.Now().UTC()})
}

// script is a command running body, which first notes its name in calls.
func (w *abWorld) script(t *testing.T, name, body string) config.Command {
	t.Helper()
	p := filepath.Join(w.dir, name+".sh")
	writeScript(t, p, "echo "+name+" >> "+w.calls+"\n"+body)
	return config.Command{Name: name, Argv: []string{p}, Timeout: config.Duration{Duration: time.Minute}}
}

func (w *abWorld) side(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(w.active)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

func (w *abWorld) ran(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile(w.calls)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	return strings.Fields(string(b))
}

// engine opens the engine of A with [ab] and a migrate command that
// records which side the public URL served while it ran.
func (w *abWorld) engine(t *testing.T, mod func(*Options)) (*Engine, Options) {
	t.Helper()
	return testEngine(t, w.site, func(o *Options) {
		o.AB = w.ab
		o.Migrate = []config.Command{w.script(t, "migrate", "cat "+w.active+" > "+w.migrated+"\n")}
		if mod != nil {
			mod(o)
		}
	})
}

func stepError(rb *api.Runbook, step string) string { return rb.StepByName(step).Error }

// The whole A/B runbook, auto-confirmed: B is restored and checked, the
// traffic goes to B while A migrates, then back to A, and A reopens. B
// stays read-only throughout.
func TestABRunbookAutoConfirm(t *testing.T) {
	w := newABWorld(t)
	e, _ := w.engine(t, nil)
	rb, err := e.Start(context.Background(), api.RunbookOptions{AB: true, AutoConfirm: true}, "ops-token")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range rb.Steps {
		names = append(names, s.Name)
	}
	if !slices.Equal(names, api.ABSteps) {
		t.Fatalf("steps %v", names)
	}
	rb = waitFor(t, e, "the end", ended)
	if rb.State != api.RunbookDone {
		t.Fatalf("state %s, error %q", rb.State, rb.Error)
	}
	for _, s := range rb.Steps {
		if s.State != api.StepDone {
			t.Errorf("step %s is %s", s.Name, s.State)
		}
	}
	if got := w.ran(t); !slices.Equal(got, []string{"prepare", "to-b", "migrate", "to-a"}) {
		t.Errorf("commands ran %v", got)
	}
	if b, _ := os.ReadFile(w.migrated); strings.TrimSpace(string(b)) != "b" {
		t.Errorf("while A migrated, the public URL served %q, not B", b)
	}
	if w.side(t) != "a" {
		t.Errorf("the public URL serves %s at the end", w.side(t))
	}
	if got := w.site.modes; !slices.Equal(got, []api.Mode{"read-only", "live"}) {
		t.Errorf("A's mode changes %v", got)
	}
	if data, err := os.ReadFile(filepath.Join(w.bStorage, "resources", "ab", "data.csv")); err != nil || string(data) != "a,b\n1,2\n" {
		t.Errorf("B's storage: %q, %v", data, err)
	}
	summaries := func(step string) string {
		var out []string
		for _, ev := range rb.StepByName(step).Evidence {
			out = append(out, ev.Summary)
		}
		return strings.Join(out, "\n")
	}
	for step, want := range map[string][]string{
		api.StepPreflight: {"B's gate answers: site prod-b, read-only", "is served by prod", "B's storage directory " + w.bStorage + " is missing"},
		api.StepSnapshot:  {"a/b: A serves"},
		api.StepRestoreB:  {"restored into B"},
		api.StepPrepareB:  {"prepare: exit 0"},
		api.StepVerifyB:   {"B's gate answers", "(recorded at the snapshot)", "answers through B's gate", "storage default: 1/1 file(s)"},
		api.StepSwitchToB: {"reaches prod-b"},
		api.StepSwitchToA: {"reaches prod"},
		api.StepDisable:   {"stays read-only until its operator retires it"},
	} {
		got := summaries(step)
		for _, s := range want {
			if !strings.Contains(got, s) {
				t.Errorf("step %s evidence lacks %q:\n%s", step, s, got)
			}
		}
	}
	// prepare got B's and the public URL.
	if tail := rb.StepByName(api.StepPrepareB).Evidence; !strings.Contains(tail[len(tail)-1].OutputTail, "preparing B at "+w.ab.BURL+" for "+w.ab.PublicURL) {
		t.Errorf("prepare's output %q", tail[len(tail)-1].OutputTail)
	}
	evs := events(t, e)
	if last := evs[len(evs)-1]; last.Kind != api.EventFinished || !strings.Contains(last.Message, "stays read-only until its operator retires it: stop B's gate and CKAN") {
		t.Errorf("last event %+v", last)
	}
}

// Confirmations: switch_to_b wants the site's name typed, switch_to_a a
// plain confirmation; until then the traffic stays where it is.
func TestABRunbookConfirmations(t *testing.T) {
	w := newABWorld(t)
	e, _ := w.engine(t, nil)
	if _, err := e.Start(context.Background(), api.RunbookOptions{AB: true}, "ops-token"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, e, "enable", waitingAt(api.StepEnable))
	if _, err := e.Confirm(api.RunbookAction{SiteName: "prod"}, "ops-token"); err != nil {
		t.Fatal(err)
	}
	rb := waitFor(t, e, "switch_to_b", waitingAt(api.StepSwitchToB))
	if !rb.Waiting.TypeSiteName || !strings.Contains(rb.Waiting.Prompt, "to-b.sh") {
		t.Fatalf("switch_to_b asks %+v", rb.Waiting)
	}
	for _, s := range []string{api.StepRestoreB, api.StepPrepareB, api.StepVerifyB} {
		if st := stepState(rb, s); st != api.StepDone {
			t.Errorf("%s is %s", s, st)
		}
	}
	if w.side(t) != "a" {
		t.Fatal("switched before the confirmation")
	}
	// The runbook says where the public URL leads, for the console.
	if ab := rb.AB; ab == nil || ab.BSite != "prod-b" || ab.PublicSite != "prod" || rb.Serving() != "A" || ab.PublicChecked == nil || ab.BURL == "" || ab.PublicURL == "" {
		t.Fatalf("before switch_to_b: ab %+v, serving %q", rb.AB, rb.Serving())
	}
	var br *badRequest
	if _, err := e.Confirm(api.RunbookAction{SiteName: "prod-b"}, "ops-token"); !errors.As(err, &br) {
		t.Fatalf("a wrong name: %v", err)
	}
	if _, err := e.Confirm(api.RunbookAction{SiteName: "prod"}, "ops-token"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, e, "migrate", waitingAt(api.StepMigrate))
	if w.side(t) != "b" {
		t.Fatal("the traffic is not on B at migrate")
	}
	if _, err := e.Confirm(api.RunbookAction{SiteName: "prod"}, "ops-token"); err != nil {
		t.Fatal(err)
	}
	rb = waitFor(t, e, "switch_to_a", waitingAt(api.StepSwitchToA))
	if rb.Waiting.TypeSiteName || !strings.Contains(rb.Waiting.Prompt, "to-a.sh") {
		t.Fatalf("switch_to_a asks %+v", rb.Waiting)
	}
	if rb.Serving() != "B" {
		t.Fatalf("while A migrated: ab %+v, serving %q", rb.AB, rb.Serving())
	}
	if w.side(t) != "b" || w.site.mode() != api.ModeReadOnly {
		t.Fatalf("side %s, mode %s before switch_to_a", w.side(t), w.site.mode())
	}
	if _, err := e.Confirm(api.RunbookAction{}, "ops-token"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, e, "disable", waitingAt(api.StepDisable))
	if w.side(t) != "a" || w.site.mode() != api.ModeReadOnly {
		t.Fatalf("side %s, mode %s before disable", w.side(t), w.site.mode())
	}
	if _, err := e.Confirm(api.RunbookAction{}, "ops-token"); err != nil {
		t.Fatal(err)
	}
	if rb := waitFor(t, e, "the end", ended); rb.State != api.RunbookDone || rb.Serving() != "A" {
		t.Fatalf("state %s: %s; serving %q", rb.State, rb.Error, rb.Serving())
	}
}

// An A/B runbook needs [ab]; its steps take stop_before, the in-place
// runbook's do not take the A/B steps.
func TestABRunbookStartChecks(t *testing.T) {
	site := newFakeSite(t)
	e, _ := testEngine(t, site, nil)
	var br *badRequest
	if _, err := e.Start(context.Background(), api.RunbookOptions{AB: true}, "x"); !errors.As(err, &br) || !strings.Contains(err.Error(), "[ab]") {
		t.Fatalf("without [ab]: %v", err)
	}
	if _, err := e.Start(context.Background(), api.RunbookOptions{StopBefore: api.StepSwitchToB}, "x"); !errors.As(err, &br) {
		t.Fatalf("in place, stop before switch_to_b: %v", err)
	}
	if _, err := e.Current(); !errors.Is(err, ErrNoRunbook) {
		t.Fatalf("a runbook was started: %v", err)
	}

	w := newABWorld(t)
	e, _ = w.engine(t, nil)
	if _, err := e.Start(context.Background(), api.RunbookOptions{AB: true, AutoConfirm: true, StopBefore: api.StepSwitchToB}, "x"); err != nil {
		t.Fatal(err)
	}
	rb := waitFor(t, e, "the stop", waitingAt(api.StepSwitchToB))
	if !rb.Waiting.Stop || w.side(t) != "a" || stepState(rb, api.StepVerifyB) != api.StepDone {
		t.Fatalf("waiting %+v, side %s", rb.Waiting, w.side(t))
	}
	// A stop_before given with a confirmation must come later in the A/B list.
	if _, err := e.Confirm(api.RunbookAction{SiteName: "prod", StopBefore: api.StepRestoreB}, "x"); !errors.As(err, &br) {
		t.Fatalf("stop before an earlier step: %v", err)
	}
	if _, err := e.Confirm(api.RunbookAction{SiteName: "prod", StopBefore: api.StepSwitchToA}, "x"); err != nil {
		t.Fatal(err)
	}
	rb = waitFor(t, e, "the second stop", waitingAt(api.StepSwitchToA))
	if !rb.Waiting.Stop || w.side(t) != "b" {
		t.Fatalf("waiting %+v, side %s", rb.Waiting, w.side(t))
	}
}

// Preflight refuses to start what could not end well, before A is touched.
func TestABRunbookPreflightFails(t *testing.T) {
	for _, c := range []struct {
		name  string
		setup func(t *testing.T, w *abWorld)
		want  string
	}{
		{"B live", func(t *testing.T, w *abWorld) { w.bMode = api.ModeLive }, "B must be read-only"},
		{"B's storage not empty", func(t *testing.T, w *abWorld) {
			if err := os.MkdirAll(filepath.Join(w.bStorage, "old"), 0o755); err != nil {
				t.Fatal(err)
			}
		}, "holds 1 entr(ies)"},
		{"switch program missing", func(t *testing.T, w *abWorld) {
			w.ab.SwitchToA = []config.Command{{Name: "to-a", Argv: []string{filepath.Join(w.dir, "no-such-switch")}}}
		}, `[[ab.switch_to_a]] "to-a": ` + "/"},
		{"traffic already on B", func(t *testing.T, w *abWorld) {
			if err := os.WriteFile(w.active, []byte("b\n"), 0o644); err != nil {
				t.Fatal(err)
			}
		}, "is served by site prod-b, not prod"},
		{"b_url is A", func(t *testing.T, w *abWorld) { w.ab.BURL = w.ab.PublicURL }, "answers as site prod, this site"},
	} {
		t.Run(c.name, func(t *testing.T) {
			w := newABWorld(t)
			c.setup(t, w)
			e, _ := w.engine(t, nil)
			if _, err := e.Start(context.Background(), api.RunbookOptions{AB: true, AutoConfirm: true}, "x"); err != nil {
				t.Fatal(err)
			}
			rb := failedAt(t, e, api.StepPreflight)
			if msg := stepError(rb, api.StepPreflight); !strings.Contains(msg, c.want) || !strings.Contains(msg, "nothing was changed: the traffic goes to A") {
				t.Errorf("error %q lacks %q", msg, c.want)
			}
			if len(w.site.modes) != 0 || len(w.ran(t)) != 0 {
				t.Errorf("A touched: modes %v, commands %v", w.site.modes, w.ran(t))
			}
		})
	}
}

// B's gate not answering at preflight is a warning, to acknowledge:
// [[ab.prepare]] may start it (verify_b waits for it, up to switch_wait).
func TestABRunbookPreflightWarnsBDown(t *testing.T) {
	w := newABWorld(t)
	srv := httptest.NewUnstartedServer(nil)
	w.ab.BURL = "http://" + srv.Listener.Addr().String() // nothing answers yet
	srv.Close()
	e, _ := w.engine(t, nil)
	if _, err := e.Start(context.Background(), api.RunbookOptions{AB: true}, "x"); err != nil {
		t.Fatal(err)
	}
	rb := waitFor(t, e, "preflight's warning", waitingAt(api.StepPreflight))
	if len(rb.Waiting.Warnings) != 1 || !strings.Contains(rb.Waiting.Warnings[0], "[[ab.prepare]] must start it") {
		t.Fatalf("warnings %q", rb.Waiting.Warnings)
	}
	if _, err := e.Abort(context.Background(), api.RunbookAction{}, "x"); err != nil {
		t.Fatal(err)
	}
}

// A failing [[ab.prepare]] stops the runbook with the traffic on A, A
// read-only; retried once fixed, it goes on.
func TestABRunbookPrepareFails(t *testing.T) {
	w := newABWorld(t)
	fixed := filepath.Join(w.dir, "fixed")
	w.ab.Prepare = []config.Command{w.script(t, "prepare", "[ -e "+fixed+" ] || { echo 'permission denied for schema public' >&2; exit 4; }\n")}
	e, _ := w.engine(t, func(o *Options) { o.AB.Prepare[0].Timeout = config.Duration{Duration: time.Minute} })
	if _, err := e.Start(context.Background(), api.RunbookOptions{AB: true, AutoConfirm: true}, "x"); err != nil {
		t.Fatal(err)
	}
	rb := failedAt(t, e, api.StepPrepareB)
	msg := stepError(rb, api.StepPrepareB)
	for _, want := range []string{"exited with status 4", "the traffic still goes to A", "ckanops runbook prod --retry"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q lacks %q", msg, want)
		}
	}
	ev := rb.StepByName(api.StepPrepareB).Evidence
	if last := ev[len(ev)-1]; !strings.Contains(last.OutputTail, "permission denied") {
		t.Errorf("evidence %+v", last)
	}
	if w.site.mode() != api.ModeReadOnly || w.side(t) != "a" {
		t.Fatalf("mode %s, side %s", w.site.mode(), w.side(t))
	}
	if err := os.WriteFile(fixed, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Retry(api.RunbookAction{}, "x"); err != nil {
		t.Fatal(err)
	}
	if rb := waitFor(t, e, "the end", ended); rb.State != api.RunbookDone {
		t.Fatalf("after the retry: %s at %s: %s", rb.State, rb.Step, rb.Error)
	}
}

// restore_b refuses a B storage directory filled after preflight: nothing
// written, the traffic on A.
func TestABRunbookRestoreRefused(t *testing.T) {
	w := newABWorld(t)
	e, _ := w.engine(t, nil)
	if _, err := e.Start(context.Background(), api.RunbookOptions{AB: true, AutoConfirm: true, StopBefore: api.StepRestoreB}, "x"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, e, "the stop", waitingAt(api.StepRestoreB))
	if err := os.MkdirAll(filepath.Join(w.bStorage, "resources"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(w.bStorage, "resources", "stray"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Confirm(api.RunbookAction{}, "x"); err != nil {
		t.Fatal(err)
	}
	rb := failedAt(t, e, api.StepRestoreB)
	msg := stepError(rb, api.StepRestoreB)
	if !strings.Contains(msg, "refused to start, nothing was written") || !strings.Contains(msg, "the traffic still goes to A") {
		t.Errorf("error %q", msg)
	}
	if _, err := os.Stat(filepath.Join(w.bStorage, "resources", "ab")); err == nil {
		t.Error("the refused restore wrote into B's storage")
	}
}

// verify_b fails when B does not serve what A served at the snapshot, or
// when B is not read-only; the traffic stays on A.
func TestABRunbookVerifyBFails(t *testing.T) {
	for _, c := range []struct {
		name  string
		setup func(w *abWorld, e *Engine)
		want  string
	}{
		{"dataset count", func(w *abWorld, _ *Engine) {
			w.bSearch = func(rw http.ResponseWriter, _ *http.Request) {
				rw.Header().Set("Content-Type", "application/json")
				_, _ = rw.Write([]byte(`{"success": true, "result": {"count": 1, "results": []}}`))
			}
		}, "B serves 1 dataset(s), A"},
		{"B live", func(w *abWorld, _ *Engine) { w.bMode = api.ModeLive }, "is live, not read-only"},
		{"storage file gone", func(w *abWorld, _ *Engine) {
			_ = os.Remove(filepath.Join(w.bStorage, "resources", "ab", "data.csv"))
		}, "lacks 1 file(s) of the snapshot (first: resources/ab/data.csv: missing)"},
	} {
		t.Run(c.name, func(t *testing.T) {
			w := newABWorld(t)
			e, _ := w.engine(t, nil)
			if _, err := e.Start(context.Background(), api.RunbookOptions{AB: true, AutoConfirm: true, StopBefore: api.StepVerifyB}, "x"); err != nil {
				t.Fatal(err)
			}
			waitFor(t, e, "the stop", waitingAt(api.StepVerifyB))
			w.mu.Lock()
			c.setup(w, e)
			w.mu.Unlock()
			if _, err := e.Confirm(api.RunbookAction{}, "x"); err != nil {
				t.Fatal(err)
			}
			rb := failedAt(t, e, api.StepVerifyB)
			if msg := stepError(rb, api.StepVerifyB); !strings.Contains(msg, c.want) || !strings.Contains(msg, "the traffic still goes to A") {
				t.Errorf("error %q lacks %q", msg, c.want)
			}
			if w.side(t) != "a" || w.site.mode() != api.ModeReadOnly {
				t.Errorf("side %s, mode %s", w.side(t), w.site.mode())
			}
		})
	}
}

// switch_to_b ran, but the public URL still reaches A (or the switch
// failed half-way): the traffic is switched back, the step fails, A
// stays read-only and migrate never runs.
func TestABRunbookSwitchToBNotReached(t *testing.T) {
	for _, c := range []struct {
		name string
		toB  string
		want string
	}{
		{"public URL still reaches A", "echo 'reloaded (but the upstream was not changed)'\n", "still reaches site prod, not B (prod-b)"},
		{"switch fails half-way", "echo b > ACTIVE\necho 'nginx -s reload failed' >&2\nexit 1\n", `switch_to_b "to-b" exited with status 1`},
	} {
		t.Run(c.name, func(t *testing.T) {
			w := newABWorld(t)
			w.ab.SwitchToB = []config.Command{w.script(t, "to-b", strings.ReplaceAll(c.toB, "ACTIVE", w.active))}
			w.ab.SwitchWait = config.Duration{Duration: 300 * time.Millisecond}
			e, _ := w.engine(t, nil)
			if _, err := e.Start(context.Background(), api.RunbookOptions{AB: true, AutoConfirm: true}, "x"); err != nil {
				t.Fatal(err)
			}
			rb := failedAt(t, e, api.StepSwitchToB)
			msg := stepError(rb, api.StepSwitchToB)
			for _, want := range []string{c.want, "the traffic was switched back: the public URL reaches A again, which stays read-only", "ckanops runbook prod --retry"} {
				if !strings.Contains(msg, want) {
					t.Errorf("error %q lacks %q", msg, want)
				}
			}
			if got := w.ran(t); !slices.Equal(got, []string{"prepare", "to-b", "to-a"}) {
				t.Errorf("commands %v", got)
			}
			if w.side(t) != "a" || w.site.mode() != api.ModeReadOnly || stepState(rb, api.StepMigrate) != api.StepPending {
				t.Errorf("side %s, mode %s, migrate %s", w.side(t), w.site.mode(), stepState(rb, api.StepMigrate))
			}
		})
	}
}

// When switching back fails too, the error says to switch by hand.
func TestABRunbookSwitchBackFails(t *testing.T) {
	w := newABWorld(t)
	w.ab.SwitchToB = []config.Command{w.script(t, "to-b", "echo none > "+w.active+"\n")}
	w.ab.SwitchToA = []config.Command{w.script(t, "to-a", "exit 2\n")}
	w.ab.SwitchWait = config.Duration{Duration: 300 * time.Millisecond}
	e, _ := w.engine(t, nil)
	if _, err := e.Start(context.Background(), api.RunbookOptions{AB: true, AutoConfirm: true}, "x"); err != nil {
		t.Fatal(err)
	}
	rb := failedAt(t, e, api.StepSwitchToB)
	msg := stepError(rb, api.StepSwitchToB)
	for _, want := range []string{"still reaches no gate", "switching the traffic back to A failed too", "run " + w.ab.SwitchToA[0].Argv[0] + " by hand", "A stays read-only"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q lacks %q", msg, want)
		}
	}
	if w.site.mode() != api.ModeReadOnly {
		t.Errorf("mode %s", w.site.mode())
	}
}

// A migration that fails leaves the traffic on B and A in maintenance;
// the error names the retry and the command that switches back.
func TestABRunbookMigrateFails(t *testing.T) {
	w := newABWorld(t)
	e, _ := w.engine(t, func(o *Options) {
		o.Migrate = []config.Command{w.script(t, "migrate", "echo 'column already exists' >&2\nexit 5\n")}
	})
	if _, err := e.Start(context.Background(), api.RunbookOptions{AB: true, AutoConfirm: true}, "x"); err != nil {
		t.Fatal(err)
	}
	rb := failedAt(t, e, api.StepMigrate)
	msg := stepError(rb, api.StepMigrate)
	for _, want := range []string{"exited with status 5", "the traffic goes to B (read-only)", "ckanops runbook prod --retry", "send readers back to A as it is with: " + w.ab.SwitchToA[0].Argv[0]} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q lacks %q", msg, want)
		}
	}
	if w.side(t) != "b" || w.site.mode() != api.ModeReadOnly {
		t.Errorf("side %s, mode %s", w.side(t), w.site.mode())
	}
	// Aborted there, the runbook says the traffic may still go to B.
	rb, err := e.Abort(context.Background(), api.RunbookAction{}, "x")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(rb.Error, "the public URL's traffic may still go to B (read-only): send it back to A with "+w.ab.SwitchToA[0].Argv[0]) {
		t.Errorf("abort error %q", rb.Error)
	}
}

// Aborted from a gate whose gate.toml lacks the runbook's [ab] while the
// traffic may be on B, the runbook names the [ab] whose commands send it
// back, not this gate's (it has none).
func TestABRunbookAbortedElsewhereNamesTheRunbooksAB(t *testing.T) {
	w := newABWorld(t)
	e, o := w.engine(t, func(o *Options) {
		o.Migrate = []config.Command{w.script(t, "migrate", "exit 5\n")}
	})
	if _, err := e.Start(context.Background(), api.RunbookOptions{AB: true, AutoConfirm: true}, "x"); err != nil {
		t.Fatal(err)
	}
	failedAt(t, e, api.StepMigrate)
	o.AB, o.Holder = config.ABConfig{}, "gate-2"
	e = reopen(t, e, o)
	rb, err := e.Abort(context.Background(), api.RunbookAction{}, "x")
	if err != nil {
		t.Fatal(err)
	}
	want := `the public URL's traffic may still go to B (read-only): send it back to A with the [[ab.switch_to_a]] commands of a gate whose [ab] has b_url = "` + w.ab.BURL + `", public_url = "` + w.ab.PublicURL + `"`
	if !strings.Contains(rb.Error, want) {
		t.Errorf("abort error %q", rb.Error)
	}
	if w.side(t) != "b" || w.site.mode() != api.ModeReadOnly {
		t.Errorf("side %s, mode %s", w.side(t), w.site.mode())
	}
}

// A switch_to_a that does not bring the traffic back fails, says where it
// is, and A stays read-only; retried once fixed, the runbook ends.
func TestABRunbookSwitchToAFails(t *testing.T) {
	w := newABWorld(t)
	fixed := filepath.Join(w.dir, "fixed")
	w.ab.SwitchToA = []config.Command{w.script(t, "to-a", "[ -e "+fixed+" ] || { echo 'nginx -t failed' >&2; exit 1; }\necho a > "+w.active+"\n")}
	e, _ := w.engine(t, nil)
	if _, err := e.Start(context.Background(), api.RunbookOptions{AB: true, AutoConfirm: true}, "x"); err != nil {
		t.Fatal(err)
	}
	rb := failedAt(t, e, api.StepSwitchToA)
	msg := stepError(rb, api.StepSwitchToA)
	for _, want := range []string{"exited with status 1", "the public URL reaches site prod-b (A and B are both read-only)", "ckanops runbook prod --retry"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q lacks %q", msg, want)
		}
	}
	if w.side(t) != "b" || w.site.mode() != api.ModeReadOnly {
		t.Fatalf("side %s, mode %s", w.side(t), w.site.mode())
	}
	if err := os.WriteFile(fixed, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Retry(api.RunbookAction{}, "x"); err != nil {
		t.Fatal(err)
	}
	rb = waitFor(t, e, "the end", ended)
	if rb.State != api.RunbookDone || w.side(t) != "a" || w.site.mode() != api.ModeLive {
		t.Fatalf("state %s (%s), side %s, mode %s", rb.State, rb.Error, w.side(t), w.site.mode())
	}
}

// verify of A failing (A checked through its own gate) leaves the traffic
// on B and A in maintenance, and says how to go on or switch back.
func TestABRunbookVerifyFails(t *testing.T) {
	w := newABWorld(t)
	e, _ := w.engine(t, func(o *Options) {
		o.Verify = []config.Command{w.script(t, "front-page", "echo 'HTTP 500' >&2\nexit 22\n")}
	})
	if _, err := e.Start(context.Background(), api.RunbookOptions{AB: true, AutoConfirm: true}, "x"); err != nil {
		t.Fatal(err)
	}
	rb := failedAt(t, e, api.StepVerify)
	msg := stepError(rb, api.StepVerify)
	for _, want := range []string{"exited with status 22", "the traffic goes to B (read-only); A stays in maintenance", "ckanops runbook prod --retry"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q lacks %q", msg, want)
		}
	}
	if w.side(t) != "b" || w.site.mode() != api.ModeReadOnly || stepState(rb, api.StepSwitchToA) != api.StepPending {
		t.Errorf("side %s, mode %s, switch_to_a %s", w.side(t), w.site.mode(), stepState(rb, api.StepSwitchToA))
	}
	if evs := events(t, e); !strings.Contains(evs[len(evs)-1].Message, "the step's error says where the traffic is") {
		t.Errorf("finished event %q", evs[len(evs)-1].Message)
	}
}

// A gate restarted mid-A/B-runbook keeps its step list: resumed, it waits
// again where it stood, and goes on through the A/B steps; verify_b then
// compares B with A's count recorded before the restart (read back from
// the journal).
func TestABRunbookSurvivesRestart(t *testing.T) {
	w := newABWorld(t)
	e, o := w.engine(t, nil)
	if _, err := e.Start(context.Background(), api.RunbookOptions{AB: true, AutoConfirm: true, StopBefore: api.StepVerifyB}, "x"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, e, "the stop", waitingAt(api.StepVerifyB))
	e = reopen(t, e, o)
	rb, err := e.Current()
	if err != nil || rb.State != api.RunbookInterrupted || !rb.Options.AB || len(rb.Steps) != len(api.ABSteps) {
		t.Fatalf("reloaded: %+v, %v", rb, err)
	}
	if _, err := e.Resume(api.RunbookAction{}, "x"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, e, "the stop again", waitingAt(api.StepVerifyB))
	if _, err := e.Confirm(api.RunbookAction{Step: api.StepVerifyB}, "x"); err != nil {
		t.Fatal(err)
	}
	rb = waitFor(t, e, "the end", ended)
	if rb.State != api.RunbookDone || w.side(t) != "a" || w.site.mode() != api.ModeLive {
		t.Fatalf("state %s (%s), side %s, mode %s", rb.State, rb.Error, w.side(t), w.site.mode())
	}
	found := false
	for _, ev := range rb.StepByName(api.StepVerifyB).Evidence {
		found = found || strings.Contains(ev.Summary, "(recorded at the snapshot)") && ev.OK
	}
	if !found {
		t.Errorf("verify_b did not use the count recorded at the snapshot: %+v", rb.StepByName(api.StepVerifyB).Evidence)
	}
	if got := w.ran(t); !slices.Equal(got, []string{"prepare", "to-b", "migrate", "to-a"}) {
		t.Errorf("commands %v", got)
	}
}

// With the Redis store another gate may resume or retry an A/B runbook.
// One whose gate.toml has no [ab], or an [ab] naming another B or public
// URL, fails the step before asking anything or acting, says where the
// traffic is and how to go on; a gate with the runbook's [ab] then
// finishes it.
func TestABRunbookNeedsTheSameAB(t *testing.T) {
	w := newABWorld(t)
	e, o := w.engine(t, nil)
	if _, err := e.Start(context.Background(), api.RunbookOptions{AB: true, AutoConfirm: true, StopBefore: api.StepSwitchToB}, "x"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, e, "the stop", waitingAt(api.StepSwitchToB))

	other := o
	other.AB = config.ABConfig{}
	other.Holder = "gate-2"
	moved := o
	moved.AB.BURL = "http://127.0.0.1:1"
	moved.Holder = "gate-3"
	for _, tc := range []struct {
		name string
		o    Options
		want string
	}{
		{"no [ab]", other, "this gate (gate-2) has no [ab] in its gate.toml: it cannot run this A/B runbook's steps and changed nothing ("},
		{"another B", moved, "this gate's (gate-3) [ab] names B http://127.0.0.1:1 and the public URL " + w.ab.PublicURL + ", not the runbook's B " + w.ab.BURL},
	} {
		e = reopen(t, e, tc.o)
		act := e.Resume // the first: interrupted by the reopening; then failed
		if rb, _ := e.Current(); rb.State == api.RunbookFailed {
			act = e.Retry
		}
		if _, err := act(api.RunbookAction{}, "x"); err != nil {
			t.Fatal(err)
		}
		rb := waitFor(t, e, tc.name+": the failure", ended)
		msg := stepError(rb, api.StepSwitchToB)
		if rb.State != api.RunbookFailed || !strings.Contains(msg, tc.want) ||
			!strings.Contains(msg, "led to prod when last looked, at ") ||
			!strings.Contains(msg, `Retry through a gate whose [ab] has b_url = "`+w.ab.BURL+`", public_url = "`+w.ab.PublicURL+`"`) ||
			!strings.HasSuffix(msg, "ckanops runbook prod --retry") {
			t.Errorf("%s: state %s, error %q", tc.name, rb.State, msg)
		}
		if w.side(t) != "a" || w.site.mode() != api.ModeReadOnly {
			t.Errorf("%s: side %s, mode %s", tc.name, w.side(t), w.site.mode())
		}
	}
	if got := w.ran(t); !slices.Equal(got, []string{"prepare"}) {
		t.Errorf("commands %v, want only B's prepare", got)
	}

	e = reopen(t, e, o)
	if _, err := e.Retry(api.RunbookAction{}, "x"); err != nil {
		t.Fatal(err)
	}
	rb := confirmToTheEnd(t, e) // stop_before holds every step from switch_to_b on
	if rb.State != api.RunbookDone || w.side(t) != "a" || w.site.mode() != api.ModeLive {
		t.Fatalf("state %s (%s), side %s, mode %s", rb.State, rb.Error, w.side(t), w.site.mode())
	}
	if got := w.ran(t); !slices.Equal(got, []string{"prepare", "to-b", "migrate", "to-a"}) {
		t.Errorf("commands %v", got)
	}
}
