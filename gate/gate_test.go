package gate

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ckanops/ckanops/api"

	"github.com/ckanops/ckanops/internal/ckansim"
)

// opsToken is as strong as config.CheckOpsToken wants (openssl rand -hex 32).
const opsToken = "0f3c9a7e5b1d2468ace0b2d4f6a8c1e3579bdf02468ace13579bdf0a2c4e6f81"

// rig is a gate in front of a simulated CKAN, both on loopback.
type rig struct {
	t     *testing.T
	sim   *ckansim.Sim
	up    *httptest.Server
	gate  *Gate
	srv   *httptest.Server
	state string
	audit string
	store *FileStore
	log   *AuditLog
}

type rigOption func(*Options)

func newRig(t *testing.T, opts ...rigOption) *rig {
	t.Helper()
	sim, err := ckansim.New(ckansim.Options{})
	if err != nil {
		t.Fatal(err)
	}
	r := &rig{t: t, sim: sim, up: httptest.NewServer(sim)}
	t.Cleanup(r.up.Close)
	dir := t.TempDir()
	r.state = filepath.Join(dir, "site.state.json")
	r.audit = filepath.Join(dir, "audit.jsonl")
	r.start(opts...)
	return r
}

// start (re)starts the gate on the rig's state file.
func (r *rig) start(opts ...rigOption) {
	t := r.t
	t.Helper()
	store, err := OpenFileStore(r.state)
	if err != nil {
		t.Fatal(err)
	}
	audit, err := OpenAuditLog(r.audit)
	if err != nil {
		t.Fatal(err)
	}
	up, _ := url.Parse(r.up.URL)
	o := Options{Site: "test", SiteTitle: "Test Data Portal", Upstream: up, Store: store, Audit: audit, OpsToken: opsToken}
	for _, f := range opts {
		f(&o)
	}
	g, err := New(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	r.gate, r.store, r.log = g, store, audit
	r.srv = httptest.NewServer(g)
	t.Cleanup(r.stop)
}

func (r *rig) stop() {
	if r.srv == nil {
		return
	}
	r.srv.Close()
	r.store.Close()
	r.log.Close()
	r.srv = nil
}

type resp struct {
	status int
	header http.Header
	body   string
}

func (r *rig) do(method, path string, body io.Reader, hdr ...string) resp {
	r.t.Helper()
	req, err := http.NewRequest(method, r.srv.URL+path, body)
	if err != nil {
		r.t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	res, err := r.srv.Client().Do(req)
	if err != nil {
		r.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return resp{res.StatusCode, res.Header, string(b)}
}

// metrics is what the gate's GET /-/ckanops/metrics answers the ops token.
func (r *rig) metrics() string {
	r.t.Helper()
	res := r.do("GET", "/-/ckanops/metrics", nil, "Authorization", "Bearer "+opsToken)
	if res.status != 200 {
		r.t.Fatalf("metrics: %d %s", res.status, res.body)
	}
	return res.body
}

func (r *rig) setMode(body string, hdr ...string) resp {
	r.t.Helper()
	if len(hdr) == 0 {
		hdr = []string{"Authorization", "Bearer " + opsToken}
	}
	return r.do("POST", "/-/ckanops/mode", strings.NewReader(body), append(hdr, "Content-Type", "application/json")...)
}

func (r *rig) mustMode(mode api.Mode, message string) api.Status {
	r.t.Helper()
	b, _ := json.Marshal(map[string]string{"mode": string(mode), "message": message, "reason": "test"})
	res := r.setMode(string(b))
	if res.status != 200 {
		r.t.Fatalf("set mode %s: %d %s", mode, res.status, res.body)
	}
	var st api.Status
	if err := json.Unmarshal([]byte(res.body), &st); err != nil {
		r.t.Fatal(err)
	}
	return st
}

func (r *rig) status(auth bool) api.Status {
	r.t.Helper()
	var hdr []string
	if auth {
		hdr = []string{"Authorization", "Bearer " + opsToken}
	}
	res := r.do("GET", "/-/ckanops/status", nil, hdr...)
	if res.status != 200 {
		r.t.Fatalf("status: %d %s", res.status, res.body)
	}
	var st api.Status
	if err := json.Unmarshal([]byte(res.body), &st); err != nil {
		r.t.Fatal(err)
	}
	return st
}

func TestReadOnlyRefusesEveryWriteActionAndPassesReads(t *testing.T) {
	r := newRig(t)
	r.mustMode(api.ModeReadOnly, "Upgrading to CKAN 2.11")
	r.sim.ResetJournal()
	surf := r.sim.Surface()
	for _, name := range surf.ActionNames() {
		a := surf.Actions[name]
		for _, method := range []string{"GET", "POST", "HEAD"} {
			res := r.do(method, "/api/3/action/"+name, strings.NewReader("{}"), "Content-Type", "application/json", "Authorization", ckansim.SysadminToken)
			refused := res.status == http.StatusServiceUnavailable
			write := !a.SideEffectFree || name == "get_site_user"
			if write != refused {
				t.Errorf("%s %s (side_effect_free=%v): status %d", method, name, a.SideEffectFree, res.status)
				continue
			}
			if refused && method != "HEAD" {
				var env struct {
					Success bool `json:"success"`
					Error   struct {
						Type    string  `json:"__type"`
						Message string  `json:"message"`
						Mode    string  `json:"mode"`
						Until   *string `json:"until"`
					} `json:"error"`
				}
				if err := json.Unmarshal([]byte(res.body), &env); err != nil || env.Success || env.Error.Type != "Maintenance Error" ||
					env.Error.Message != "Upgrading to CKAN 2.11" || env.Error.Mode != "read-only" {
					t.Errorf("%s %s: refusal body %s", method, name, res.body)
				}
				if res.header.Get("Retry-After") != "300" {
					t.Errorf("%s %s: Retry-After %q", method, name, res.header.Get("Retry-After"))
				}
			}
		}
	}
	if w := r.sim.Writes(); len(w) != 0 {
		t.Fatalf("%d writes reached CKAN in read-only mode, first: %+v", len(w), w[0])
	}
}

func TestReadOnlyServesEveryGETRoute(t *testing.T) {
	r := newRig(t)
	r.mustMode(api.ModeReadOnly, "")
	r.sim.ResetJournal()
	for _, rt := range r.sim.Surface().Routes {
		if !rt.Allows("GET") || rt.Endpoint == "api.action" {
			continue // action calls are judged by their action (see above)
		}
		p := rt.Example()
		res := r.do("GET", p, nil)
		if res.status == http.StatusServiceUnavailable {
			t.Errorf("GET %s (%s) refused in read-only", p, rt.Endpoint)
		}
	}
	if w := r.sim.Writes(); len(w) != 0 {
		t.Fatalf("GET routes wrote in read-only: %+v", w)
	}
}

func TestLiveForwardsWritesAndCountsThem(t *testing.T) {
	r := newRig(t)
	res := r.do("POST", "/api/3/action/package_create", strings.NewReader(`{"name": "live-write", "owner_org": "demo-org"}`),
		"Content-Type", "application/json", "Authorization", ckansim.SysadminToken)
	if res.status != 200 {
		t.Fatalf("live write: %d %s", res.status, res.body)
	}
	if len(r.sim.Writes()) != 1 {
		t.Fatalf("live write did not reach CKAN: %+v", r.sim.Journal())
	}
	m := r.metrics()
	if !strings.Contains(m, `ckanops_requests_total{class="write",outcome="forwarded"} 1`) {
		t.Errorf("metrics lack the forwarded write:\n%s", m)
	}
}

func TestForwardedHeaders(t *testing.T) {
	r := newRig(t, func(o *Options) { o.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")} })
	r.sim.ResetJournal()
	r.do("GET", "/dataset/", nil, "X-Forwarded-For", "203.0.113.9", "X-Forwarded-Proto", "https", "X-Forwarded-Host", "data.example.org")
	j := r.sim.Journal()
	if len(j) != 1 {
		t.Fatalf("journal: %+v", j)
	}
	h := j[0].Header
	if got := h.Get("X-Forwarded-For"); got != "203.0.113.9, 127.0.0.1" {
		t.Errorf("X-Forwarded-For %q", got)
	}
	if h.Get("X-Forwarded-Proto") != "https" || h.Get("X-Forwarded-Host") != "data.example.org" {
		t.Errorf("X-Forwarded-Proto/Host from a trusted proxy lost: %v", h)
	}

	// An untrusted peer cannot forge them.
	r2 := newRig(t)
	r2.sim.ResetJournal()
	r2.do("GET", "/dataset/", nil, "X-Forwarded-For", "10.9.9.9", "X-Forwarded-Proto", "https")
	h = r2.sim.Journal()[0].Header
	if h.Get("X-Forwarded-For") != "127.0.0.1" || h.Get("X-Forwarded-Proto") != "http" {
		t.Errorf("untrusted forwarding headers passed: %v", h)
	}
}

func TestDrainShowsInFlightWritesThenQuiesces(t *testing.T) {
	r := newRig(t)
	r.sim.SetLatency(0, 700*time.Millisecond)
	var wg sync.WaitGroup
	wg.Add(1)
	var writeStatus int
	go func() {
		defer wg.Done()
		req, _ := http.NewRequest("POST", r.srv.URL+"/api/action/package_create", strings.NewReader(`{"name": "drained-write", "owner_org": "demo-org"}`))
		req.Header.Set("Authorization", ckansim.SysadminToken)
		req.Header.Set("Content-Type", "application/json")
		res, err := http.DefaultClient.Do(req)
		if err == nil {
			writeStatus = res.StatusCode
			res.Body.Close()
		}
	}()
	waitFor(t, "the write to be in flight", func() bool { return r.gate.state.inFlightCount() == 1 })
	st := r.mustMode(api.ModeReadOnly, "snapshot")
	if st.Phase != api.PhaseDraining || len(st.InFlight) != 1 || st.InFlight[0].Path != "/api/action/package_create" || st.InFlight[0].Method != "POST" {
		t.Fatalf("right after the switch: %+v", st)
	}
	// A new write is refused at once while the old one drains.
	if res := r.do("POST", "/api/action/package_create", strings.NewReader(`{}`), "Authorization", ckansim.SysadminToken); res.status != 503 {
		t.Fatalf("new write during drain: %d", res.status)
	}
	wg.Wait()
	if writeStatus != 200 {
		t.Fatalf("the write admitted before the switch got %d, want 200 (it must finish)", writeStatus)
	}
	st = r.status(true)
	if st.Phase != api.PhaseQuiesced || st.QuiescedAt == nil || len(st.InFlight) != 0 {
		t.Fatalf("after the drain: %+v", st)
	}
	if n := len(r.sim.Writes()); n != 1 {
		t.Fatalf("%d writes reached CKAN, want exactly the drained one", n)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for i := 0; i < 500; i++ {
		if cond() {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("gave up waiting for %s", what)
}

func TestModeSurvivesRestart(t *testing.T) {
	r := newRig(t)
	r.mustMode(api.ModeReadOnly, "back soon")
	r.stop()
	r.start()
	st := r.status(false)
	if st.Mode != api.ModeReadOnly || st.Message != "back soon" || st.Version != 1 {
		t.Fatalf("after restart: %+v", st)
	}
	if res := r.do("POST", "/api/action/package_create", strings.NewReader(`{}`)); res.status != 503 {
		t.Fatalf("write after restart: %d", res.status)
	}
}

func TestCorruptStateStopsTheGate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.json")
	os.WriteFile(path, []byte("{not json"), 0o600)
	store, err := OpenFileStore(path)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	up, _ := url.Parse("http://127.0.0.1:1")
	_, err = New(context.Background(), Options{Site: "x", Upstream: up, Store: store, OpsToken: opsToken})
	if err == nil || !strings.Contains(err.Error(), "corrupt") {
		t.Fatalf("gate started on a corrupt state file: %v", err)
	}
}

func TestDownModeAndBypass(t *testing.T) {
	r := newRig(t, func(o *Options) {
		o.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
		o.BypassCIDRs = []netip.Prefix{netip.MustParsePrefix("10.9.0.0/16")}
	})
	r.mustMode(api.ModeDown, "Database upgrade")
	r.sim.ResetJournal()
	page := r.do("GET", "/dataset/", nil, "X-Forwarded-For", "198.51.100.7")
	if page.status != 503 || !strings.Contains(page.body, "Database upgrade") || !strings.Contains(page.body, "Test Data Portal") {
		t.Fatalf("down page: %d %s", page.status, page.body)
	}
	apiRes := r.do("GET", "/api/3/action/package_list", nil, "X-Forwarded-For", "198.51.100.7")
	if apiRes.status != 503 || !strings.Contains(apiRes.body, `"mode":"down"`) {
		t.Fatalf("down API: %d %s", apiRes.status, apiRes.body)
	}
	if n := len(r.sim.Journal()); n != 0 {
		t.Fatalf("%d requests reached CKAN in down mode", n)
	}
	// The control API still answers.
	if st := r.status(false); st.Mode != api.ModeDown {
		t.Fatalf("status in down: %+v", st)
	}
	// An operator in bypass_cidrs reads and writes as in live; writes are audited.
	if res := r.do("GET", "/dataset/", nil, "X-Forwarded-For", "10.9.1.2"); res.status != 200 {
		t.Fatalf("bypass read: %d", res.status)
	}
	res := r.do("POST", "/api/action/package_create", strings.NewReader(`{"name": "verify-upgrade", "owner_org": "demo-org"}`),
		"X-Forwarded-For", "10.9.1.2", "Authorization", ckansim.SysadminToken, "Content-Type", "application/json")
	if res.status != 200 {
		t.Fatalf("bypass write: %d %s", res.status, res.body)
	}
	b, _ := os.ReadFile(r.audit)
	if !strings.Contains(string(b), `"event":"bypass-write"`) || !strings.Contains(string(b), `"remote":"10.9.1.2"`) {
		t.Fatalf("bypass write not audited:\n%s", b)
	}
	// A client forging X-Forwarded-For through an untrusted peer gets nothing.
	r2 := newRig(t, func(o *Options) { o.BypassCIDRs = []netip.Prefix{netip.MustParsePrefix("10.9.0.0/16")} })
	r2.mustMode(api.ModeDown, "")
	if res := r2.do("GET", "/dataset/", nil, "X-Forwarded-For", "10.9.1.2"); res.status != 503 {
		t.Fatalf("forged X-Forwarded-For bypassed down mode: %d", res.status)
	}
}

func TestCompareAndSetConflict(t *testing.T) {
	r := newRig(t)
	st := r.mustMode(api.ModeReadOnly, "first")
	res := r.setMode(fmt.Sprintf(`{"mode": "live", "expect_version": %d}`, st.Version-1))
	if res.status != http.StatusConflict {
		t.Fatalf("stale expect_version: %d %s", res.status, res.body)
	}
	var body struct {
		Error   string     `json:"error"`
		Current api.Status `json:"current"`
	}
	json.Unmarshal([]byte(res.body), &body)
	if body.Current.Version != st.Version || body.Current.Mode != api.ModeReadOnly || body.Error == "" ||
		body.Current.Phase != api.PhaseQuiesced || body.Current.QuiescedAt == nil {
		t.Fatalf("409 body: %s", res.body)
	}
	if res := r.setMode(fmt.Sprintf(`{"mode": "live", "expect_version": %d}`, st.Version)); res.status != 200 {
		t.Fatalf("current expect_version: %d %s", res.status, res.body)
	}
}

func TestConcurrentModeChangesOneWins(t *testing.T) {
	r := newRig(t)
	var wg sync.WaitGroup
	codes := make(chan int, 8)
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequest("POST", r.srv.URL+"/-/ckanops/mode", strings.NewReader(`{"mode": "read-only", "expect_version": 0}`))
			req.Header.Set("Authorization", "Bearer "+opsToken)
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			res.Body.Close()
			codes <- res.StatusCode
		}()
	}
	wg.Wait()
	close(codes)
	wins := 0
	for c := range codes {
		switch c {
		case 200:
			wins++
		case 409:
		default:
			t.Errorf("unexpected status %d", c)
		}
	}
	if wins != 1 {
		t.Fatalf("%d changes won with the same expect_version, want exactly 1", wins)
	}
}

func TestControlAuth(t *testing.T) {
	r := newRig(t)
	body := `{"mode": "read-only"}`
	cases := []struct {
		name   string
		hdr    []string
		status int
	}{
		{"no credentials", []string{"X-Nothing", "x"}, 401},
		{"wrong ops token", []string{"Authorization", "Bearer nope"}, 401},
		{"editor CKAN token", []string{"Authorization", ckansim.EditorToken}, 403},
		{"editor CKAN token (X-CKAN-API-Key)", []string{"X-CKAN-API-Key", ckansim.EditorToken}, 403},
		{"unknown CKAN token", []string{"Authorization", "not-a-ckan-token"}, 401},
		{"sysadmin CKAN token", []string{"Authorization", ckansim.SysadminToken}, 200},
		{"sysadmin CKAN token (X-CKAN-API-Key)", []string{"X-CKAN-API-Key", ckansim.SysadminToken}, 200},
	}
	for _, c := range cases {
		res := r.setMode(body, c.hdr...)
		if res.status != c.status {
			t.Errorf("%s: %d %s, want %d", c.name, res.status, res.body, c.status)
		}
		if strings.Contains(res.body, opsToken) || strings.Contains(res.body, ckansim.EditorToken) {
			t.Errorf("%s: a token leaked into the answer", c.name)
		}
	}
	// Public status has no operator details; authenticated status does.
	pub := r.do("GET", "/-/ckanops/status", nil)
	if strings.Contains(pub.body, "in_flight") || strings.Contains(pub.body, "store") {
		t.Errorf("public status shows operator details: %s", pub.body)
	}
	if st := r.status(true); st.Store == nil || st.Store.Kind != "file" || !st.Store.OK {
		t.Errorf("authenticated status lacks the store: %+v", st)
	}
	if res := r.do("GET", "/-/ckanops/health", nil); res.status != 401 {
		t.Errorf("health without token: %d", res.status)
	}
	// The metrics tell how busy the site is and who failed to log in:
	// the public listener serves them to a token only.
	for _, hdr := range [][]string{nil, {"Authorization", "Bearer nope"}, {"Authorization", ckansim.EditorToken}} {
		if res := r.do("GET", "/-/ckanops/metrics", nil, hdr...); res.status/100 != 4 || strings.Contains(res.body, "ckanops_") {
			t.Errorf("metrics with %q: %d %s", hdr, res.status, res.body)
		}
	}
	if m := r.metrics(); !strings.Contains(m, "ckanops_mode{") {
		t.Errorf("metrics with the ops token:\n%s", m)
	}
	if res := r.do("GET", "/-/ckanops/metrics", nil, "Authorization", ckansim.SysadminToken); res.status != 200 || !strings.Contains(res.body, "ckanops_mode{") {
		t.Errorf("metrics with a sysadmin's CKAN token: %d", res.status)
	}
	b, _ := os.ReadFile(r.audit)
	if !strings.Contains(string(b), `"actor":"ckan:admin"`) {
		t.Errorf("sysadmin's change not audited with their name:\n%s", b)
	}
}

func TestMaintenanceModeActions(t *testing.T) {
	r := newRig(t)
	res := r.do("POST", "/api/3/action/maintenance_mode_update", strings.NewReader(`{"mode": "read-only", "message": "via ckanapi", "for": "90m"}`),
		"Authorization", ckansim.SysadminToken, "Content-Type", "application/json")
	if res.status != 200 || !strings.Contains(res.body, `"success":true`) || !strings.Contains(res.body, `"mode":"read-only"`) {
		t.Fatalf("maintenance_mode_update: %d %s", res.status, res.body)
	}
	res = r.do("GET", "/api/action/maintenance_mode_show", nil, "Authorization", ckansim.SysadminToken)
	var env struct {
		Success bool       `json:"success"`
		Result  api.Status `json:"result"`
	}
	if err := json.Unmarshal([]byte(res.body), &env); err != nil || !env.Success || env.Result.Message != "via ckanapi" || env.Result.Until == nil {
		t.Fatalf("maintenance_mode_show: %d %s", res.status, res.body)
	}
	res = r.do("GET", "/api/action/maintenance_mode_show", nil)
	if res.status != 401 || !strings.Contains(res.body, "Authorization Error") {
		t.Fatalf("anonymous maintenance_mode_show: %d %s", res.status, res.body)
	}
	// A refusal carries the ETA: Retry-After counts down to it.
	ref := r.do("POST", "/api/action/package_create", strings.NewReader(`{}`))
	if ra := ref.header.Get("Retry-After"); ra == "300" || ra == "" {
		t.Errorf("Retry-After %q ignores the 90m ETA", ra)
	}
}

func TestBadModeRequests(t *testing.T) {
	r := newRig(t)
	for _, body := range []string{
		`{"mode": "maintenance"}`,
		`{"mode": "read-only", "for": "soon"}`,
		`{"mode": "read-only", "until": "2001-01-01T00:00:00Z"}`,
		`{"mode": "read-only", "for": "1h", "until": "2099-01-01T00:00:00Z"}`,
		`{"mode": "read-only", "surprise": 1}`,
		`not json`,
		`{"mode": "read-only", "message": "` + strings.Repeat("x", 3000) + `"}`,
	} {
		if res := r.setMode(body); res.status != 400 {
			t.Errorf("%.60s: %d %s, want 400", body, res.status, res.body)
		}
	}
	if st := r.status(false); st.Mode != api.ModeLive || st.Version != 0 {
		t.Fatalf("a bad request changed the mode: %+v", st)
	}
}

func TestHostileMessageIsEscapedEverywhere(t *testing.T) {
	r := newRig(t)
	msg := `<script>alert(1)</script>"><img src=x onerror=alert(2)>` + "\r\nX-Injected: 1"
	b, _ := json.Marshal(map[string]string{"mode": "read-only", "message": msg})
	if res := r.setMode(string(b)); res.status != 200 {
		t.Fatalf("set: %d %s", res.status, res.body)
	}
	for _, p := range []string{"/dataset/edit/air-quality-2024", "/dataset/"} {
		page := r.do("GET", p, nil, "Authorization", ckansim.SysadminToken)
		if strings.Contains(page.body, "<script>alert(1)") || strings.Contains(page.body, "<img src=x") {
			t.Errorf("GET %s: the message came out as markup", p)
		}
		if !strings.Contains(page.body, "&lt;script&gt;alert(1)&lt;/script&gt;") {
			t.Errorf("GET %s: banner lacks the escaped message", p)
		}
	}
	form := r.do("POST", "/dataset/edit/air-quality-2024", strings.NewReader("title=x"), "Content-Type", "application/x-www-form-urlencoded")
	if strings.Contains(form.body, "<script>alert(1)") || strings.Contains(form.body, "<img src=x") {
		t.Errorf("refusal page: the message came out as markup")
	}
	apiRes := r.do("POST", "/api/action/package_create", strings.NewReader("{}"))
	if strings.Contains(apiRes.body, "<script>") || apiRes.header.Get("X-Injected") != "" {
		t.Errorf("API refusal: %v %s", apiRes.header, apiRes.body)
	}
	var env struct {
		Error struct{ Message string } `json:"error"`
	}
	if json.Unmarshal([]byte(apiRes.body), &env); env.Error.Message != msg {
		t.Errorf("API refusal changed the message: %q", env.Error.Message)
	}
}

func TestRefusedFormShowsTheUsersTextBack(t *testing.T) {
	r := newRig(t)
	r.mustMode(api.ModeReadOnly, "Snapshot in progress")
	r.sim.ResetJournal()
	form := url.Values{
		"title":       {"Rivers <of> Wales"},
		"notes":       {"A long description the user typed for ten minutes."},
		"_csrf_token": {"csrf-secret-value"},
		"password":    {"hunter2"},
	}
	res := r.do("POST", "/dataset/edit/air-quality-2024", strings.NewReader(form.Encode()), "Content-Type", "application/x-www-form-urlencoded")
	if res.status != 503 || !strings.Contains(res.body, "Nothing was saved") {
		t.Fatalf("refused form: %d %s", res.status, res.body)
	}
	if !strings.Contains(res.body, "Rivers &lt;of&gt; Wales") || !strings.Contains(res.body, "ten minutes") {
		t.Errorf("the user's text is not shown back (escaped):\n%s", res.body)
	}
	if strings.Contains(res.body, "hunter2") || strings.Contains(res.body, "csrf-secret-value") {
		t.Errorf("a password or CSRF token was shown back")
	}

	// Multipart: files are left out, text kept.
	var buf bytes.Buffer
	buf.WriteString("--XX\r\nContent-Disposition: form-data; name=\"name\"\r\n\r\nmy-resource\r\n")
	buf.WriteString("--XX\r\nContent-Disposition: form-data; name=\"upload\"; filename=\"data.csv\"\r\nContent-Type: text/csv\r\n\r\nsecret,file,content\r\n")
	buf.WriteString("--XX--\r\n")
	res = r.do("POST", "/dataset/air-quality-2024/resource/new", &buf, "Content-Type", "multipart/form-data; boundary=XX")
	if res.status != 503 || !strings.Contains(res.body, "my-resource") || strings.Contains(res.body, "secret,file,content") {
		t.Errorf("multipart refusal: %d %s", res.status, res.body)
	}
	if w := r.sim.Writes(); len(w) != 0 {
		t.Fatalf("refused forms reached CKAN: %+v", w)
	}
}

// What a refused form shows back is bounded: at most 100 fields and what
// the first MiB of the body holds; a larger body is refused all the same,
// promptly, and each field is cut at 64 KiB.
func TestRefusedFormEchoIsBounded(t *testing.T) {
	r := newRig(t)
	r.mustMode(api.ModeReadOnly, "")
	var b strings.Builder
	for i := range 150 {
		fmt.Fprintf(&b, "field%03d=value%03d&", i, i)
	}
	b.WriteString("long=" + strings.Repeat("x", 100<<10) + "&pad=" + strings.Repeat("p", 4<<20))
	res := r.do("POST", "/dataset/new", strings.NewReader(b.String()), "Content-Type", "application/x-www-form-urlencoded")
	if res.status != 503 || !strings.Contains(res.body, "Nothing was saved") {
		t.Fatalf("refused form: %d", res.status)
	}
	if !strings.Contains(res.body, "value099") || strings.Contains(res.body, "value100") {
		t.Errorf("the echo does not stop at 100 fields")
	}
	if len(res.body) > 1<<20 {
		t.Errorf("the refusal page is %d bytes", len(res.body))
	}

	// One field of 100 KiB among the first hundred: cut at 64 KiB.
	res = r.do("POST", "/dataset/new", strings.NewReader("long="+strings.Repeat("y", 100<<10)), "Content-Type", "application/x-www-form-urlencoded")
	if n := strings.Count(res.body, "y"); res.status != 503 || n < 64<<10 || n > 64<<10+1000 {
		t.Errorf("a 100 KiB field: %d, %d of its bytes shown", res.status, n)
	}
	// A field past the first MiB is never read.
	res = r.do("POST", "/dataset/new", strings.NewReader("big="+strings.Repeat("z", 1<<20)+"&after=past-the-first-mib"), "Content-Type", "application/x-www-form-urlencoded")
	if res.status != 503 || strings.Contains(res.body, "past-the-first-mib") {
		t.Errorf("a field past the first MiB: %d, shown %v", res.status, strings.Contains(res.body, "past-the-first-mib"))
	}
	if w := r.sim.Writes(); len(w) != 0 {
		t.Fatalf("refused forms reached CKAN: %+v", w)
	}
}

func TestReadOnlyAnnotatesPagesButLiveNeverTouchesThem(t *testing.T) {
	r := newRig(t)
	if livePage := r.do("GET", "/dataset/edit/air-quality-2024", nil); strings.Contains(livePage.body, "ckanops") {
		t.Fatalf("live mode rewrote a page")
	}
	r.mustMode(api.ModeReadOnly, "Back at 15:00")
	// Go's client decodes gzip itself when it asked for it: this checks the
	// rewriter re-encoded a valid stream.
	edit := r.do("GET", "/dataset/edit/air-quality-2024", nil, "Authorization", ckansim.SysadminToken)
	if edit.status != 200 || !strings.Contains(edit.body, `role="status"`) || !strings.Contains(edit.body, "Back at 15:00") {
		t.Fatalf("edit page lacks the banner: %d\n%s", edit.status, edit.body)
	}
	if cc := edit.header.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("an annotated page may be cached: Cache-Control %q", cc)
	}
	if strings.Contains(edit.body, `action="/dataset/edit/`) || !strings.Contains(edit.body, "ckanops-form-notice") {
		t.Errorf("the edit form was not replaced by a notice")
	}
	if !strings.Contains(edit.body, `action="/user/_logout"`) {
		t.Errorf("the logout form was removed: logging out works in read-only")
	}
	if !strings.Contains(strings.ToLower(edit.body), `method="get"`) {
		t.Errorf("the GET search form was removed")
	}
	login := r.do("GET", "/user/login", nil)
	if !strings.Contains(login.body, `action="/user/login"`) {
		t.Errorf("the login form was removed")
	}
	// Login still works in read-only.
	res := r.do("POST", "/user/login", strings.NewReader("login=admin&password=x"), "Content-Type", "application/x-www-form-urlencoded")
	if res.status == 503 {
		t.Errorf("login refused in read-only")
	}
}

func TestTracking(t *testing.T) {
	r := newRig(t)
	if res := r.do("POST", "/_tracking", strings.NewReader("url=/dataset/x&type=page")); res.status == 204 {
		t.Fatalf("live: /_tracking answered by the gate, want forwarded")
	}
	r.mustMode(api.ModeReadOnly, "")
	r.sim.ResetJournal()
	if res := r.do("POST", "/_tracking", strings.NewReader("url=/dataset/x&type=page")); res.status != 204 {
		t.Fatalf("read-only /_tracking: %d", res.status)
	}
	if n := len(r.sim.Journal()); n != 0 {
		t.Fatalf("/_tracking reached CKAN in read-only")
	}
}

func TestUpstreamDown(t *testing.T) {
	r := newRig(t)
	r.up.Close()
	apiRes := r.do("GET", "/api/3/action/package_list", nil)
	if apiRes.status != 502 || !strings.Contains(apiRes.body, `"success":false`) || strings.Contains(apiRes.body, "dial tcp") {
		t.Fatalf("API with CKAN down: %d %s", apiRes.status, apiRes.body)
	}
	page := r.do("GET", "/dataset/", nil)
	if page.status != 502 || !strings.Contains(page.body, "not answering") || strings.Contains(page.body, "connection refused") {
		t.Fatalf("page with CKAN down: %d %s", page.status, page.body)
	}
}

func TestMetricsReportModeAndRefusals(t *testing.T) {
	r := newRig(t)
	r.mustMode(api.ModeReadOnly, "")
	r.do("POST", "/api/action/package_create", strings.NewReader("{}"))
	m := r.metrics()
	for _, want := range []string{
		`ckanops_mode{mode="read-only"} 1`,
		`ckanops_mode{mode="live"} 0`,
		`ckanops_phase{phase="quiesced"} 1`,
		`ckanops_refusals_total{kind="api",mode="read-only"} 1`,
		`ckanops_in_flight_writes 0`,
		`ckanops_mode_version 1`,
	} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

// TestLiveNeverTouchesABody checks that live mode relays CKAN's bytes and
// framing headers exactly, compressed or not.
func TestLiveNeverTouchesABody(t *testing.T) {
	page := []byte("<!DOCTYPE html><html><body><form method=\"post\" action=\"/dataset/edit/x\"><input name=title></form></body></html>")
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(page)
	zw.Close()
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		body := page
		if r.URL.Path == "/gz" {
			w.Header().Set("Content-Encoding", "gzip")
			body = gz.Bytes()
		}
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.Write(body)
	}))
	defer up.Close()
	u, _ := url.Parse(up.URL)
	store, err := OpenFileStore(filepath.Join(t.TempDir(), "s.json"))
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	g, err := New(context.Background(), Options{Site: "t", Upstream: u, Store: store, OpsToken: opsToken})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(g)
	defer srv.Close()
	tr := &http.Transport{DisableCompression: true}
	defer tr.CloseIdleConnections()
	for path, want := range map[string][]byte{"/plain": page, "/gz": gz.Bytes()} {
		req, _ := http.NewRequest("GET", srv.URL+path, nil)
		req.Header.Set("Accept-Encoding", "gzip")
		res, err := tr.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if !bytes.Equal(got, want) || res.ContentLength != int64(len(want)) {
			t.Errorf("%s: live mode changed the body or its length (%d bytes, Content-Length %d; want %d)", path, len(got), res.ContentLength, len(want))
		}
	}
}

func TestDownloadsAreNeverAnnotated(t *testing.T) {
	r := newRig(t)
	r.mustMode(api.ModeReadOnly, "")
	for _, p := range []string{"/dataset/x/resource/y/download/page.html", "/fr/dataset/x/resource/y/download", "/datastore/dump/y"} {
		if !r.gate.isDownload(p) {
			t.Errorf("%s not seen as a download", p)
		}
	}
	for _, p := range []string{"/dataset/x", "/dataset/x/resource/y", "/"} {
		if r.gate.isDownload(p) {
			t.Errorf("%s seen as a download", p)
		}
	}
}

// TestLiveStreamsBodiesBothWays shows the gate holds no body whole: CKAN
// reads the start of an upload before the client has sent the rest, and
// the client reads the start of a response before CKAN has written the
// rest.
func TestLiveStreamsBodiesBothWays(t *testing.T) {
	const chunk = 1 << 20
	gotFirst := make(chan struct{})
	sendRest := make(chan struct{})
	var received int64
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/upload":
			buf := make([]byte, chunk)
			if _, err := io.ReadFull(r.Body, buf); err != nil {
				t.Errorf("upstream read: %v", err)
				return
			}
			close(gotFirst)
			n, _ := io.Copy(io.Discard, r.Body)
			received = int64(chunk) + n
			w.Write([]byte(`{"success": true}`))
		case "/download":
			w.Header().Set("Content-Type", "application/octet-stream")
			w.Write(make([]byte, chunk))
			w.(http.Flusher).Flush()
			<-sendRest
			w.Write(make([]byte, chunk))
		}
	}))
	defer up.Close()
	u, _ := url.Parse(up.URL)
	store, err := OpenFileStore(filepath.Join(t.TempDir(), "s.json"))
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	g, err := New(context.Background(), Options{Site: "t", Upstream: u, Store: store, OpsToken: opsToken})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(g)
	defer srv.Close()

	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		req, _ := http.NewRequest("POST", srv.URL+"/upload", pr)
		req.ContentLength = -1 // chunked
		res, err := http.DefaultClient.Do(req)
		if err == nil {
			res.Body.Close()
		}
		done <- err
	}()
	pw.Write(make([]byte, chunk))
	select {
	case <-gotFirst:
	case <-time.After(10 * time.Second):
		t.Fatal("CKAN got nothing of the upload before the client finished: the gate buffers request bodies")
	}
	pw.Write(make([]byte, 3*chunk))
	pw.Close()
	if err := <-done; err != nil || received != 4*chunk {
		t.Fatalf("upload: %v, %d bytes arrived", err, received)
	}

	res, err := http.Get(srv.URL + "/download")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	first := make([]byte, chunk)
	readDone := make(chan error, 1)
	go func() { _, err := io.ReadFull(res.Body, first); readDone <- err }()
	select {
	case err := <-readDone:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the client got nothing before CKAN finished: the gate buffers responses")
	}
	close(sendRest)
	if n, _ := io.Copy(io.Discard, res.Body); n != chunk {
		t.Fatalf("rest of the download: %d bytes", n)
	}
}

// A stand-in site starts read-only from its configuration; the record it
// writes then wins over the configuration on every restart.
func TestInitialModeFromConfig(t *testing.T) {
	initial := func(o *Options) {
		o.InitialMode, o.InitialMessage = api.ModeReadOnly, "A read-only copy during the upgrade"
	}
	r := newRig(t, initial)
	st := r.status(true)
	if st.Mode != api.ModeReadOnly || st.Version != 1 || st.Message != "A read-only copy during the upgrade" || st.Phase != api.PhaseQuiesced {
		t.Fatalf("status %+v", st)
	}
	if res := r.do("POST", "/api/3/action/package_create", strings.NewReader(`{"name":"x"}`), "Authorization", ckansim.SysadminToken); res.status != 503 {
		t.Fatalf("write on a stand-in: %d", res.status)
	}
	if len(r.sim.Writes()) != 0 {
		t.Fatal("a write reached CKAN")
	}
	audit, _ := os.ReadFile(r.audit)
	if !strings.Contains(string(audit), `"actor":"gate.toml","to":"read-only","version":1`) {
		t.Errorf("audit log: %s", audit)
	}
	// The operator opens it; a restart with the same config stays live.
	r.mustMode(api.ModeLive, "")
	r.stop()
	r.start(initial)
	if st := r.status(true); st.Mode != api.ModeLive || st.Version != 2 {
		t.Fatalf("after restart: %+v", st)
	}
}

// Reopening a live site changes nothing: no new version, no audit entry.
func TestLiveToLiveIsANoOp(t *testing.T) {
	r := newRig(t)
	before := r.status(true)
	st := r.mustMode(api.ModeLive, "")
	if st.Version != before.Version || st.Mode != api.ModeLive {
		t.Fatalf("live to live: version %d -> %d", before.Version, st.Version)
	}
	if b, _ := os.ReadFile(r.audit); strings.Contains(string(b), `"to":"live"`) {
		t.Fatalf("live to live was audited:\n%s", b)
	}
	r.mustMode(api.ModeReadOnly, "upgrade")
	if st := r.mustMode(api.ModeLive, ""); st.Version != before.Version+2 {
		t.Fatalf("read-only then live: version %d", st.Version)
	}
}

// A refusal page loads the notice script, so that the reader learns when
// the maintenance is over; its policy lets that script (and its polls of
// the status) run, and nothing else. The API's refusal and the gate's own
// error pages are unchanged.
func TestRefusalPageLoadsTheNoticeScript(t *testing.T) {
	r := newRig(t, func(o *Options) { o.NoticePoll = 7 * time.Second })
	const csp = "default-src 'none'; style-src 'unsafe-inline'; script-src 'self'; connect-src 'self'"
	for _, tc := range []struct {
		mode                  api.Mode
		method, path, refused string
	}{
		{api.ModeReadOnly, "POST", "/dataset/edit/air-quality-2024", "post"},
		{api.ModeDown, "GET", "/dataset/", "get"},
	} {
		r.mustMode(tc.mode, "Snapshot in progress")
		var body io.Reader
		hdr := []string{}
		if tc.method == "POST" {
			body = strings.NewReader("title=x")
			hdr = []string{"Content-Type", "application/x-www-form-urlencoded"}
		}
		res := r.do(tc.method, tc.path, body, hdr...)
		if res.status != 503 {
			t.Fatalf("%s %s: %d, want a refusal", tc.method, tc.path, res.status)
		}
		script := `<script src="` + api.PathNoticeScript + `" defer data-ckanops-poll="7" data-ckanops-refused="` + tc.refused + `"></script>`
		if !strings.Contains(res.body, script) || !strings.Contains(res.body, `<div class="ckanops-banner" data-ckanops-mode="`+string(tc.mode)+`" hidden></div>`) {
			t.Errorf("%s %s: the page lacks the script or its marker:\n%s", tc.method, tc.path, res.body)
		}
		if got := res.header.Get("Content-Security-Policy"); got != csp {
			t.Errorf("%s %s: Content-Security-Policy %q, want %q", tc.method, tc.path, got, csp)
		}
	}
	res := r.do("POST", "/api/3/action/package_create", strings.NewReader(`{"name": "x"}`), "Content-Type", "application/json")
	if res.status != 503 || strings.Contains(res.body, "notice.js") {
		t.Errorf("API refusal: %d %s", res.status, res.body)
	}
}
