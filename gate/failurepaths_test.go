package gate

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ckanops/ckanops/api"
	"github.com/ckanops/ckanops/config"
	"github.com/ckanops/ckanops/internal/ckansim"
)

// A trigger that fired, with recover, whose probe then goes blind (the
// storage is gone: free_ratio unknown) never counts the blindness as
// clear: the site stays in the trigger's maintenance well past recover
// and the minimum gap. Blindness in the middle of recovering starts the
// recover count over; only a clear seen for recover returns the site.
func TestBlindFiredTriggerDoesNotRecover(t *testing.T) {
	clk := newTestClock(time.Now().UTC())
	dir := filepath.Join(t.TempDir(), "storage")
	must(t, os.Mkdir(dir, 0o755))
	checks := config.ChecksConfig{StoragePath: dir, Interval: config.Duration{Duration: time.Second}}
	r := newRig(t, withClock(clk), withChecks(checks), withTriggers(storageTrigger(t, "disk", true, time.Minute)))
	r.step(clk, 2*time.Second)
	r.step(clk, 11*time.Second)
	st := r.status(true)
	if st.Mode != api.ModeReadOnly || st.Actor != "trigger:disk" {
		t.Fatalf("the trigger did not fire: %+v", st)
	}
	v := st.Version

	// Blind for 15 minutes: neither clear nor a reason to switch.
	must(t, os.RemoveAll(dir))
	for range 3 {
		r.step(clk, 5*time.Minute)
	}
	if ts := r.trigger("disk"); ts.State != api.TriggerFired || !strings.Contains(ts.Note, "the trigger leaves the mode alone") {
		t.Fatalf("a fired trigger gone blind: %+v", ts)
	}
	if st := r.status(true); st.Mode != api.ModeReadOnly || st.Version != v || st.Actor != "trigger:disk" {
		t.Fatalf("a blind trigger counted as clear and changed the mode: %+v", st)
	}

	// Clear for 32 s, blind for 30 s, clear again: 62 s since it was first
	// seen clear, but not seen clear for recover (1m): still read-only.
	must(t, os.Mkdir(dir, 0o755))
	r.gate.trig.rules[0].Cond.Op = ">" // the condition clears
	r.step(clk, 2*time.Second)
	r.step(clk, 30*time.Second)
	if ts := r.trigger("disk"); ts.State != api.TriggerRecovering {
		t.Fatalf("clear: %+v", ts)
	}
	must(t, os.RemoveAll(dir))
	r.step(clk, 30*time.Second)
	if ts := r.trigger("disk"); ts.State != api.TriggerFired {
		t.Fatalf("blind while recovering: %+v, want fired (not seen clear: start over)", ts)
	}
	must(t, os.Mkdir(dir, 0o755))
	r.step(clk, 2*time.Second)
	if st := r.status(true); st.Mode != api.ModeReadOnly || st.Version != v {
		t.Fatalf("blindness counted towards recover: %+v", st)
	}
	r.step(clk, 61*time.Second)
	if st := r.status(true); st.Mode != api.ModeLive || st.Actor != "trigger:disk" {
		t.Fatalf("clear for recover after the blindness: %+v", st)
	}
}

// A migrate step that failed leaves CKAN maybe half upgraded: the gate
// keeps the strictest rules while the runbook stands failed there, even
// though CKAN now reports another version, and reads the version again
// only once the runbook is aborted.
func TestRulesStayStrictestAfterAFailedMigrateStep(t *testing.T) {
	r, ckan, e := upgradeRunbook(t, "echo 'relation already exists' >&2\nexit 1\n")
	waitFor(t, "the migrate step to fail", func() bool {
		rb, err := e.Current()
		return err == nil && rb.State == api.RunbookFailed
	})
	if rb, _ := e.Current(); rb.Step != api.StepMigrate || rb.StepByName(api.StepMigrate).State != api.StepFailed {
		t.Fatalf("the runbook failed elsewhere: step %s, %s", rb.Step, rb.Error)
	}
	ckan.set("2.12") // half upgraded: CKAN already says 2.12
	s := r.waitSurface("the strictest rules after the failed migration", func(s api.SurfaceInfo) bool { return strings.HasPrefix(s.Applied, "strictest of ") })
	if !strings.Contains(s.Reason, "migrate step") {
		t.Fatalf("after the failed migration: %+v", s)
	}
	// For many rounds of the version watch, nothing loosens the rules.
	for deadline := time.Now().Add(40 * migrateInterval); time.Now().Before(deadline); time.Sleep(migrateInterval) {
		if s := r.status(true).Surface; s == nil || !strings.HasPrefix(s.Applied, "strictest of ") {
			t.Fatalf("the rules loosened while the migrate step stands failed: %+v", s)
		}
	}
	if st := r.status(false); st.Mode != api.ModeReadOnly {
		t.Fatalf("the runbook's maintenance: %+v", st)
	}
	if res := r.do("GET", fileShow, nil); res.status != http.StatusServiceUnavailable {
		t.Fatalf("file_show (a 2.12 read) while the migrate step stands failed: %d", res.status)
	}
	// Aborted: the version is read again, and 2.12's rules apply.
	if _, err := e.Abort(context.Background(), api.RunbookAction{Reason: "test"}, "ops"); err != nil {
		t.Fatal(err)
	}
	r.waitSurface("surface 2.12 after the abort", applied("2.12"))
}

// distinctJWT is a JWT-shaped token CKAN does not know, a new one per i.
func distinctJWT(i int) string {
	enc := base64.RawURLEncoding.EncodeToString
	return enc([]byte(`{"typ":"JWT","alg":"HS256"}`)) + "." + enc([]byte(fmt.Sprintf(`{"jti":"made-up-%d"}`, i))) + "." + enc([]byte("not-a-real-signature-0123456789"))
}

// CKAN tokens sent while CKAN cannot be reached are answered 503, and do
// not count as failed authentications: 15 of them from one address never
// reach the limit of 10, and that address's sysadmin token works once
// CKAN is back.
func TestUnreachableCKANDoesNotCountAsFailedAuth(t *testing.T) {
	var down atomic.Bool
	down.Store(true)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := l.Addr().String() // nothing listens there: connection refused
	l.Close()
	tr := newTransport(5*time.Second, 4)
	r := newRig(t, func(o *Options) {
		target := o.Upstream.Host
		tr.DialContext = func(ctx context.Context, network, _ string) (net.Conn, error) {
			addr := target
			if down.Load() {
				addr = closed
			}
			return (&net.Dialer{}).DialContext(ctx, network, addr)
		}
		o.Transport = tr
		o.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
	})
	const client = "198.51.100.7"
	for i := range 15 {
		res := r.do("GET", "/-/ckanops/health", nil, authHeaders(client, "Authorization", distinctJWT(i))...)
		if res.status != http.StatusServiceUnavailable || !strings.Contains(res.body, "cannot verify the CKAN token") {
			t.Fatalf("token %d with CKAN unreachable: %d %s, want 503", i+1, res.status, res.body)
		}
	}
	for _, series := range []string{"ckanops_auth_rate_limited_total", `ckanops_auth_failures_total{reason="unknown-token"}`} {
		if v := scrapeAuthMetric(t, r, series); v != "0" {
			t.Errorf("%s is %s after the 503s, want 0", series, v)
		}
	}
	down.Store(false)
	tr.CloseIdleConnections()
	if res := r.do("GET", "/-/ckanops/health", nil, authHeaders(client, "Authorization", ckansim.SysadminToken)...); res.status != 200 {
		t.Fatalf("sysadmin token with CKAN back: %d %s", res.status, res.body)
	}
}

// maintenance_mode_update while Redis is down answers CKAN's envelope
// with a Maintenance Error 503, and changes nothing: not the gate's mode,
// nor, once Redis is back, the shared record.
func TestMaintenanceActionWhileStoreIsDown(t *testing.T) {
	c := newCluster(t, "a")
	m := c.gates["a"]
	if code, body := m.setMode(t, `{"mode": "read-only", "message": "upgrade"}`); code != 200 {
		t.Fatalf("%d %s", code, body)
	}
	c.redis.Kill(t)
	waitFor(t, "the store seen down", func() bool { ok, _ := m.gate.storeState.get(); return !ok })
	code, body := m.post(t, "/api/3/action/maintenance_mode_update", `{"mode": "live"}`, "Authorization", ckansim.SysadminToken)
	var env struct {
		Success bool `json:"success"`
		Error   struct {
			Type    string   `json:"__type"`
			Message string   `json:"message"`
			Mode    api.Mode `json:"mode"`
		} `json:"error"`
	}
	if err := json.Unmarshal([]byte(body), &env); err != nil || code != http.StatusServiceUnavailable || env.Success ||
		env.Error.Type != "Maintenance Error" || !strings.Contains(env.Error.Message, "state store is unreachable") || env.Error.Mode != api.ModeReadOnly {
		t.Fatalf("maintenance_mode_update with the store down: %d %s", code, body)
	}
	if got := m.gate.Mode(); got.Mode != api.ModeReadOnly || got.Version != 1 {
		t.Fatalf("the refused change moved the gate: %+v", got)
	}
	if code := m.write(t); code != 503 {
		t.Fatalf("a write after the refused change: %d", code)
	}
	c.redis.Restart(t)
	waitFor(t, "the record written back", func() bool {
		rec, ok, err := m.store.Load(context.Background())
		return err == nil && ok && rec.Version == 1
	})
	if rec, _, _ := m.store.Load(context.Background()); rec.Mode != api.ModeReadOnly || rec.Message != "upgrade" {
		t.Fatalf("the shared record after the outage: %+v", rec)
	}
}

// Redis holding an older version of the record (a stale copy put back)
// gets the gates' newer one written back; the restore script never writes
// an older or equal version over what Redis holds.
func TestRestoreWritesOnlyOverAnOlderVersion(t *testing.T) {
	c := newCluster(t, "a", "b")
	c.gates["a"].setMode(t, `{"mode": "read-only", "message": "step 1"}`)
	c.gates["a"].setMode(t, `{"mode": "read-only", "message": "step 2"}`)
	for _, m := range c.gates {
		waitFor(t, m.id+" at version 2", func() bool { return m.gate.Mode().Version == 2 })
	}
	ctx := context.Background()
	rs := c.gates["a"].store
	older := c.gates["a"].gate.Mode()
	older.Version, older.Mode, older.Message = 1, api.ModeLive, ""
	b, err := json.Marshal(older)
	if err != nil {
		t.Fatal(err)
	}
	must(t, rs.rdb.HSet(ctx, rs.keyRecord, "version", 1, "record", b).Err())
	waitFor(t, "the gates to write version 2 back", func() bool {
		rec, ok, err := rs.Load(ctx)
		return err == nil && ok && rec.Version == 2
	})
	if rec, _, _ := rs.Load(ctx); rec.Mode != api.ModeReadOnly || rec.Message != "step 2" {
		t.Fatalf("written back: %+v", rec)
	}
	for _, m := range c.gates {
		if got := m.gate.Mode(); got.Mode != api.ModeReadOnly || got.Version != 2 {
			t.Fatalf("gate %s applied the older record: %+v", m.id, got)
		}
	}
	// A restore of an older or the same version writes nothing.
	before, err := rs.rdb.HGetAll(ctx, rs.keyRecord).Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range []int64{1, 2} {
		rec := older
		rec.Version = v
		wrote, err := rs.Restore(ctx, rec)
		if err != nil || wrote {
			t.Fatalf("restore of version %d over version 2: wrote=%v err=%v", v, wrote, err)
		}
	}
	after, err := rs.rdb.HGetAll(ctx, rs.keyRecord).Result()
	if err != nil {
		t.Fatal(err)
	}
	if after["version"] != "2" || after["record"] != before["record"] {
		t.Fatalf("a refused restore changed Redis: %v, was %v", after, before)
	}
}
