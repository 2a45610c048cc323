package gate

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ckanops/ckanops/api"
	"github.com/ckanops/ckanops/internal/ckansim"
)

func TestSeenActionsAreBounded(t *testing.T) {
	var s seenActions
	t0 := time.Now()
	for i := range maxSeenActions + 10 {
		s.record(fmt.Sprintf("ext_action_%d", i), false, t0.Add(time.Duration(i)))
	}
	s.record("ext_action_500", true, t0) // refused: counted, and now the most recent
	for _, bad := range []string{"", "a/b", "a b", strings.Repeat("x", maxActionNameLen+1), "naïve"} {
		s.record(bad, false, t0)
	}
	got := s.list()
	if len(got) != maxSeenActions {
		t.Fatalf("%d names kept, want %d", len(got), maxSeenActions)
	}
	if got[0].name != "ext_action_500" || got[0].seen != 1 || got[0].refused != 1 {
		t.Fatalf("the most recent: %+v", got[0])
	}
	names := map[string]bool{}
	for _, a := range got {
		names[a.name] = true
	}
	// The least recently seen went first: 0 to 9.
	for _, gone := range []string{"ext_action_0", "ext_action_4", "ext_action_9"} {
		if names[gone] {
			t.Errorf("%s is still kept", gone)
		}
	}
	if !names[fmt.Sprintf("ext_action_%d", maxSeenActions+9)] || !names["ext_action_10"] {
		t.Error("a recent name was dropped")
	}
}

// extensionCKAN is ckansim with two extension actions answered as CKAN's
// action view answers them (ckan/views/api.py): harvest_source_list is
// side_effect_free (a GET runs it), harvest_job_create is not (a GET gets
// 400 "Please use POST method" before it runs). It counts the runs.
type extensionCKAN struct {
	next    http.Handler // CKAN's own actions
	created atomic.Int64 // harvest_job_create runs
	listed  atomic.Int64 // harvest_source_list runs
}

func (x *extensionCKAN) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	bad := func(msg string) {
		w.Header().Set("Content-Type", "application/json;charset=utf-8")
		w.WriteHeader(http.StatusBadRequest)
		b, _ := json.Marshal("Bad request - " + msg)
		w.Write(b)
	}
	switch strings.TrimPrefix(r.URL.Path, "/api/3/action/") {
	case "harvest_source_list":
		x.listed.Add(1)
		w.Header().Set("Content-Type", "application/json;charset=utf-8")
		fmt.Fprint(w, `{"help": "h", "success": true, "result": []}`)
	case "harvest_job_create":
		if r.Method == http.MethodGet {
			bad("JSON Error: Invalid request. Please use POST method for your request")
			return
		}
		x.created.Add(1)
		w.Header().Set("Content-Type", "application/json;charset=utf-8")
		fmt.Fprint(w, `{"help": "h", "success": true, "result": {"id": "j1"}}`)
	default:
		x.next.ServeHTTP(w, r)
	}
}

// Unknown actions are counted, listed and refused; learning asks CKAN,
// which runs none but the side_effect_free one; a learned read then passes
// in read-only mode and a learned write stays refused; the answers are
// kept per CKAN version in the learned file, and audited.
func TestActionsSeenAndLearned(t *testing.T) {
	sim, err := ckansim.New(ckansim.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ext := &extensionCKAN{next: sim}
	up := httptest.NewServer(ext)
	t.Cleanup(up.Close)
	learnedFile := filepath.Join(t.TempDir(), "prod.learned.json")
	r := newRig(t, func(o *Options) {
		o.Upstream, _ = url.Parse(up.URL)
		o.LearnedFile = learnedFile
	})
	r.mustMode(api.ModeReadOnly, "upgrade")
	auth := []string{"Authorization", "Bearer " + opsToken}

	for _, path := range []string{"/api/3/action/harvest_source_list", "/api/3/action/harvest_source_list", "/api/3/action/nonexistent_action"} {
		if res := r.do("GET", path, nil); res.status != http.StatusServiceUnavailable {
			t.Fatalf("unknown %s in read-only: %d", path, res.status)
		}
	}
	if res := r.do("POST", "/api/3/action/harvest_job_create", strings.NewReader("{}"), "Content-Type", "application/json"); res.status != http.StatusServiceUnavailable {
		t.Fatalf("unknown write: %d", res.status)
	}
	if ext.listed.Load() != 0 || ext.created.Load() != 0 {
		t.Fatal("a refused action reached CKAN")
	}
	st := r.status(true)
	if st.UnknownActionCount != 3 || st.UnknownActions[0] != "harvest_source_list" {
		t.Fatalf("status: %v (%d)", st.UnknownActions, st.UnknownActionCount)
	}
	if res := r.do("GET", api.PathActions, nil); res.status != http.StatusUnauthorized {
		t.Fatalf("actions without a token: %d", res.status)
	}
	var list api.ActionList
	res := r.do("GET", api.PathActions, nil, auth...)
	if err := json.Unmarshal([]byte(res.body), &list); err != nil || res.status != 200 {
		t.Fatalf("actions: %d %s", res.status, res.body)
	}
	first := list.Actions[0]
	if first.Name != "harvest_source_list" || first.Class != api.ActionUnknown || first.Source != api.SourceUnknown || first.Seen != 2 || first.Refused != 2 || first.LastSeen == nil {
		t.Fatalf("first: %+v", first)
	}
	found := false
	for _, a := range list.Actions {
		if a.Name == "package_show" {
			found = a.Class == api.ActionRead && a.Source == api.SourceSurface
		}
	}
	if !found {
		t.Fatal("package_show is not listed as a read from the surface")
	}

	// Learn.
	res = r.do("POST", api.PathActionsLearn, nil, auth...)
	if res.status != 200 {
		t.Fatalf("learn: %d %s", res.status, res.body)
	}
	if err := json.Unmarshal([]byte(res.body), &list); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"harvest_source_list": api.ActionRead, "harvest_job_create": api.ActionWrite, "nonexistent_action": api.ActionUnknown}
	if len(list.Learned) != 3 {
		t.Fatalf("learned %+v", list.Learned)
	}
	for _, l := range list.Learned {
		if want[l.Name] != l.Class {
			t.Errorf("%s learned as %s (%s), want %s", l.Name, l.Class, l.Answer, want[l.Name])
		}
	}
	if ext.created.Load() != 0 {
		t.Fatal("learning ran the write action")
	}
	if ext.listed.Load() != 1 {
		t.Fatalf("the side_effect_free action ran %d times", ext.listed.Load())
	}
	// Applied at once: the learned read passes, the rest stays refused.
	if res := r.do("GET", "/api/3/action/harvest_source_list", nil); res.status != 200 {
		t.Fatalf("a learned read in read-only: %d %s", res.status, res.body)
	}
	if res := r.do("POST", "/api/3/action/harvest_job_create", strings.NewReader("{}"), "Content-Type", "application/json"); res.status != http.StatusServiceUnavailable {
		t.Fatalf("a learned write in read-only: %d", res.status)
	}
	if res := r.do("GET", "/api/3/action/nonexistent_action", nil); res.status != http.StatusServiceUnavailable {
		t.Fatalf("an action CKAN does not know: %d", res.status)
	}
	if st := r.status(true); st.UnknownActionCount != 0 {
		t.Fatalf("unknown after learning: %v", st.UnknownActions)
	}
	// Kept per CKAN version, and audited.
	b, err := os.ReadFile(learnedFile)
	if err != nil || !strings.Contains(string(b), `"2.11.5"`) || !strings.Contains(string(b), `"harvest_source_list": "read"`) {
		t.Fatalf("learned file: %v\n%s", err, b)
	}
	if log, _ := os.ReadFile(r.audit); !strings.Contains(string(log), `"event":"actions-learned"`) || !strings.Contains(string(log), "reads: harvest_source_list") {
		t.Fatalf("audit log:\n%s", log)
	}
	// A restarted gate applies what was learned.
	r.stop()
	r.start(func(o *Options) {
		o.Upstream, _ = url.Parse(up.URL)
		o.LearnedFile = learnedFile
	})
	if res := r.do("GET", "/api/3/action/harvest_source_list", nil); res.status != 200 {
		t.Fatalf("a learned read after a restart: %d", res.status)
	}
	// deny_actions still wins over what was learned.
	r.stop()
	r.start(func(o *Options) {
		o.Upstream, _ = url.Parse(up.URL)
		o.LearnedFile = learnedFile
		o.Policy.DenyActions = []string{"harvest_source_list"}
	})
	if res := r.do("GET", "/api/3/action/harvest_source_list", nil); res.status != http.StatusServiceUnavailable {
		t.Fatalf("a learned read in deny_actions: %d", res.status)
	}
}

func TestJudgeAnswer(t *testing.T) {
	for _, c := range []struct {
		status int
		body   string
		want   string
	}{
		{400, `"Bad request - JSON Error: Invalid request. Please use POST method for your request"`, api.ActionWrite},
		{400, `"Bad request - Action name not known: x"`, api.ActionUnknown},
		{200, `{"help": "h", "success": true, "result": 1}`, api.ActionRead},
		{409, `{"help": "h", "success": false, "error": {"id": ["Missing value"]}}`, api.ActionRead},
		{403, `{"help": "h", "success": false, "error": {"message": "Access denied"}}`, api.ActionRead},
		{502, `<html>bad gateway</html>`, api.ActionUnknown},
		{400, `"Bad request - something else"`, api.ActionUnknown},
	} {
		if got, why := judgeAnswer(c.status, []byte(c.body)); got != c.want {
			t.Errorf("%d %s: %s (%s), want %s", c.status, c.body, got, why, c.want)
		}
	}
}

// Learning needs CKAN's version: what is learned holds for one.
func TestLearnWithoutCKANsVersion(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "down", http.StatusBadGateway)
	}))
	t.Cleanup(up.Close)
	r := newRig(t, func(o *Options) { o.Upstream, _ = url.Parse(up.URL) })
	r.do("GET", "/api/3/action/ext_show", nil)
	if _, err := r.gate.Learn(context.Background(), "ops"); err == nil || !strings.Contains(err.Error(), "CKAN's version could not be read") {
		t.Fatalf("learn: %v", err)
	}
}

// After an upgrade, what was learned for the previous version is asked
// again of the new one.
func TestActionsLearnedAgainAfterAnUpgrade(t *testing.T) {
	fastVersionWatch(t)
	ckan := newUpgradingCKAN(t, "2.11", "2.12")
	ext := &extensionCKAN{next: ckan.srv.Config.Handler}
	up := httptest.NewServer(ext)
	t.Cleanup(up.Close)
	learnedFile := filepath.Join(t.TempDir(), "prod.learned.json")
	r := newRig(t, func(o *Options) {
		o.Upstream, _ = url.Parse(up.URL)
		o.LearnedFile, o.CKANVersion = learnedFile, VersionAuto
	})
	watch(t, r.gate)
	r.waitSurface("surface 2.11", applied("2.11"))
	r.mustMode(api.ModeReadOnly, "upgrade")
	r.do("GET", "/api/3/action/harvest_source_list", nil)
	if _, err := r.gate.Learn(context.Background(), "ops"); err != nil {
		t.Fatal(err)
	}
	if res := r.do("GET", "/api/3/action/harvest_source_list", nil); res.status != 200 {
		t.Fatalf("learned on 2.11: %d", res.status)
	}
	ckan.set("2.12")
	r.waitSurface("surface 2.12", applied("2.12"))
	waitFor(t, "the actions to be learned for 2.12", func() bool {
		b, _ := os.ReadFile(learnedFile)
		return strings.Contains(string(b), `"2.12.0"`)
	})
	waitFor(t, "the learned read to pass on 2.12", func() bool {
		return r.do("GET", "/api/3/action/harvest_source_list", nil).status == 200
	})
	if n := ext.listed.Load(); n < 2 {
		t.Fatalf("CKAN was asked %d times", n)
	}
}

// Learning against ckansim with ckanext-harvest's actions, on CKAN's own
// rule: the GETs that learn run nothing that writes; the reindexing
// actions, which say side_effect_free, stay refused.
func TestActionsLearnedFromASimulatedExtension(t *testing.T) {
	sim, err := ckansim.New(ckansim.Options{Extensions: []string{"harvest"}})
	if err != nil {
		t.Fatal(err)
	}
	up := httptest.NewServer(sim)
	t.Cleanup(up.Close)
	r := newRig(t, func(o *Options) { o.Upstream, _ = url.Parse(up.URL) })
	r.mustMode(api.ModeReadOnly, "upgrade")
	for _, p := range []string{"/api/3/action/harvest_source_list", "/api/3/action/harvest_job_create", "/api/3/action/harvest_sources_reindex"} {
		if res := r.do("GET", p, nil); res.status != http.StatusServiceUnavailable {
			t.Fatalf("%s before learning: %d", p, res.status)
		}
	}
	sim.ResetJournal()
	list, err := r.gate.Learn(context.Background(), "ops")
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, l := range list.Learned {
		got[l.Name] = l.Class
	}
	if got["harvest_source_list"] != api.ActionRead || got["harvest_job_create"] != api.ActionWrite || got["harvest_sources_reindex"] != api.ActionRead {
		t.Fatalf("learned %v", got)
	}
	if w := sim.Writes(); len(w) != 0 {
		t.Fatalf("learning ran a write: %+v", w)
	}
	if res := r.do("GET", "/api/3/action/harvest_source_list", nil); res.status != 200 {
		t.Fatalf("a learned read: %d", res.status)
	}
	if res := r.do("GET", "/api/3/action/harvest_sources_reindex", nil); res.status != http.StatusServiceUnavailable {
		t.Fatalf("a reindexing action CKAN calls side_effect_free: %d", res.status)
	}
	for _, a := range r.gate.actionList().Actions {
		if a.Name == "harvest_sources_reindex" && (a.Class != api.ActionWrite || a.Source != api.SourceLearned) {
			t.Fatalf("listed as %+v", a)
		}
	}
}

// What was learned is handed out as a copy: rules are built from it while
// a learning stores new answers (go test -race).
func TestLearnedCopiesWhileStoring(t *testing.T) {
	l := loadLearned("")
	l.store("2.11.5", []api.LearnedAction{{Name: "a", Class: api.ActionRead}}, time.Now())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 200 {
			l.store("2.11.5", []api.LearnedAction{{Name: fmt.Sprintf("x%d", i), Class: api.ActionWrite}}, time.Now())
		}
	}()
	for range 200 {
		for range l.forVersion("2.11.5") {
		}
		for range l.forVersion("") {
		}
	}
	<-done
	if n := len(l.forVersion("2.11.5")); n != 201 {
		t.Fatalf("%d actions learned", n)
	}
}
