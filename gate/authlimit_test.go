package gate

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ckanops/ckanops/internal/ckansim"
)

// authClock is a clock the test moves by hand.
type authClock struct {
	mu sync.Mutex
	t  time.Time
}

func newAuthClock() *authClock {
	return &authClock{t: time.Date(2026, 11, 29, 16, 0, 0, 0, time.UTC)}
}

func (c *authClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *authClock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// authHeaders are the headers of a request from client (through the
// trusted loopback proxy) carrying the given credentials.
func authHeaders(client string, cred ...string) []string {
	return append([]string{"X-Forwarded-For", client}, cred...)
}

// auditEntries reads the rig's audit log.
func auditEntries(t *testing.T, path string) []AuditEntry {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []AuditEntry
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var e AuditEntry
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("audit line %q: %v", sc.Text(), err)
		}
		out = append(out, e)
	}
	return out
}

// scrapeAuthMetric returns the value of one series of the gate's metrics,
// read as a scraper on [gate] metrics_listen does: without a token, which
// the rate limit would refuse from the test's address.
func scrapeAuthMetric(t *testing.T, r *rig, series string) string {
	t.Helper()
	rec := httptest.NewRecorder()
	r.gate.MetricsHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body := rec.Body.String()
	for _, l := range strings.Split(body, "\n") {
		if v, ok := strings.CutPrefix(l, series+" "); ok {
			return v
		}
	}
	t.Fatalf("no series %s in:\n%s", series, body)
	return ""
}

func TestFailedAuthIsRateLimited(t *testing.T) {
	clk := newAuthClock()
	r := newRig(t, func(o *Options) {
		o.Clock = clk.now
		o.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
	})
	const attacker, other = "198.51.100.7", "198.51.100.8"
	wrong := "Bearer wrong-" + opsToken[:40]
	good := []string{"Authorization", "Bearer " + opsToken}

	// Ten failures within a minute, a success among them: it does not
	// wipe the count.
	for i := range 10 {
		if i == 5 {
			if res := r.do("GET", "/-/ckanops/health", nil, authHeaders(attacker, good...)...); res.status != 200 {
				t.Fatalf("ops token after 5 failures: %d %s", res.status, res.body)
			}
		}
		res := r.do("GET", "/-/ckanops/health", nil, authHeaders(attacker, "Authorization", wrong)...)
		if res.status != 401 || res.header.Get("Retry-After") != "" {
			t.Fatalf("failure %d: %d %s", i+1, res.status, res.body)
		}
		clk.add(time.Second)
	}
	// Now even the right token is refused, without being checked.
	res := r.do("GET", "/-/ckanops/health", nil, authHeaders(attacker, good...)...)
	if res.status != 429 || res.header.Get("Retry-After") != "50" {
		t.Fatalf("11th try: %d Retry-After %q %s", res.status, res.header.Get("Retry-After"), res.body)
	}
	var body map[string]string
	if err := json.Unmarshal([]byte(res.body), &body); err != nil || !strings.Contains(body["error"], "too many failed authentications from "+attacker) {
		t.Fatalf("429 body: %s", res.body)
	}
	// Every credentialed request, of every endpoint and the maintenance
	// actions (in CKAN's envelope).
	if res := r.setMode(`{"mode": "read-only"}`, authHeaders(attacker, good...)...); res.status != 429 {
		t.Errorf("mode change: %d", res.status)
	}
	res = r.do("POST", "/api/3/action/maintenance_mode_update", strings.NewReader(`{"mode": "read-only"}`),
		authHeaders(attacker, "Authorization", ckansim.SysadminToken, "Content-Type", "application/json")...)
	if res.status != 429 || res.header.Get("Retry-After") != "50" || !strings.Contains(res.body, `"__type":"Authorization Error"`) {
		t.Errorf("maintenance_mode_update: %d Retry-After %q %s", res.status, res.header.Get("Retry-After"), res.body)
	}
	// The anonymous status still answers; other addresses are not limited.
	if res := r.do("GET", "/-/ckanops/status", nil, authHeaders(attacker)...); res.status != 200 {
		t.Errorf("anonymous status: %d", res.status)
	}
	if res := r.do("GET", "/-/ckanops/health", nil, authHeaders(other, good...)...); res.status != 200 {
		t.Errorf("another address: %d %s", res.status, res.body)
	}
	// The window frees with the oldest failure: one more try then.
	clk.add(49 * time.Second) // t0+59s: the first failure (t0) is 59s old
	if res := r.do("GET", "/-/ckanops/health", nil, authHeaders(attacker, good...)...); res.status != 429 || res.header.Get("Retry-After") != "1" {
		t.Fatalf("a second early: %d Retry-After %q", res.status, res.header.Get("Retry-After"))
	}
	clk.add(20 * time.Second) // t0+79s: all ten are over a minute old
	if res := r.do("GET", "/-/ckanops/health", nil, authHeaders(attacker, good...)...); res.status != 200 {
		t.Fatalf("after the window: %d %s", res.status, res.body)
	}

	if v := scrapeAuthMetric(t, r, `ckanops_auth_failures_total{reason="not-token"}`); v != "10" {
		t.Errorf("failures counted %s, want 10", v)
	}
	if v := scrapeAuthMetric(t, r, "ckanops_auth_rate_limited_total"); v != "4" {
		t.Errorf("refusals counted %s, want 4", v)
	}
	// Audited: the first failure and the limit, once each, with the
	// address; never a token nor its hash.
	var events []string
	for _, e := range auditEntries(t, r.audit) {
		if !strings.HasPrefix(e.Event, "auth-") {
			continue
		}
		events = append(events, e.Event)
		if e.Remote != attacker || e.Actor != attacker || e.Path != "/-/ckanops/health" || e.Reason == "" {
			t.Errorf("audit entry %+v", e)
		}
	}
	if strings.Join(events, ",") != "auth-failed,auth-rate-limited" {
		t.Errorf("audited %v, want the first failure and the limit", events)
	}
	raw, _ := os.ReadFile(r.audit)
	for _, secret := range []string{opsToken, strings.TrimPrefix(wrong, "Bearer "), ckansim.SysadminToken} {
		sum := sha256.Sum256([]byte(secret))
		for _, s := range []string{secret, hex.EncodeToString(sum[:]), base64.StdEncoding.EncodeToString(sum[:])} {
			if strings.Contains(string(raw), s) {
				t.Errorf("the audit log holds a token or its hash:\n%s", raw)
			}
		}
	}
}

func TestAuthLimiterCountsChecksUnderWay(t *testing.T) {
	l := newAuthLimiter(10, time.Minute, 100)
	now := newAuthClock().now()
	var tickets []*authTicket
	for i := range 10 {
		tk, _, ok := l.begin("192.0.2.1", now)
		if !ok {
			t.Fatalf("check %d refused", i+1)
		}
		tickets = append(tickets, tk)
	}
	if _, wait, ok := l.begin("192.0.2.1", now); ok || wait != time.Second {
		t.Fatalf("11th concurrent check: admitted %v, wait %s", ok, wait)
	}
	for i, tk := range tickets {
		out := tk.end(true, now.Add(time.Duration(i)*time.Second))
		if out.auditFailure != (i == 0) || out.auditLimit != (i == 9) || out.failures != i+1 {
			t.Errorf("end %d: %+v", i, out)
		}
		tk.end(true, now) // a second end is ignored
	}
	if _, wait, ok := l.begin("192.0.2.1", now.Add(10*time.Second)); ok || wait != 50*time.Second {
		t.Fatalf("after 10 failures: admitted %v, wait %s", ok, wait)
	}
	// A success leaves nothing behind.
	tk, _, _ := l.begin("192.0.2.2", now)
	tk.end(false, now)
	if n := l.size(); n != 1 {
		t.Errorf("%d addresses remembered, want 1", n)
	}
}

func TestAuthLimiterIsBounded(t *testing.T) {
	l := newAuthLimiter(10, time.Minute, 100)
	now := newAuthClock().now()
	for i := range 5000 {
		addr := fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255)
		tk, _, ok := l.begin(addr, now)
		if !ok {
			t.Fatalf("%s refused", addr)
		}
		tk.end(true, now)
		if n := l.size(); n > 100 {
			t.Fatalf("%d addresses remembered, bound 100", n)
		}
	}
	// The most recent are kept: the last address is still counted.
	c := l.clients[authKey("10.0.19.135")].Value.(*authClient)
	if len(c.failures) != 1 {
		t.Errorf("the last address's failures: %v", c.failures)
	}
	if newSysadminCache(&url.URL{}, time.Minute, time.Now).limit.max != 10000 {
		t.Error("the gate's limiter is not bounded at 10,000 addresses")
	}
}

func TestAuthKey(t *testing.T) {
	for addr, want := range map[string]string{
		"192.0.2.1":               "192.0.2.1",
		"::ffff:192.0.2.1":        "192.0.2.1",
		"2001:db8::1":             "2001:db8::/64",
		"2001:db8::ffff:1":        "2001:db8::/64",
		"2001:db8:0:1::1":         "2001:db8:0:1::/64",
		"fe80::1%eth0":            "fe80::/64",
		"not an address":          "not an address",
		strings.Repeat("x", 1000): strings.Repeat("x", 64),
	} {
		if got := authKey(addr); got != want {
			t.Errorf("authKey(%q) = %q, want %q", addr, got, want)
		}
	}
}

// recordingCKAN wraps ckansim, recording the credentials of every request
// that reached it.
type recordingCKAN struct {
	sim   *ckansim.Sim
	mu    sync.Mutex
	creds []string
}

func (c *recordingCKAN) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	c.mu.Lock()
	c.creds = append(c.creds, r.Header.Get("Authorization")+"|"+r.Header.Get("X-CKAN-API-Key"))
	c.mu.Unlock()
	c.sim.ServeHTTP(w, r)
}

func (c *recordingCKAN) seen() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.creds...)
}

// jwtShaped makes a JWT-shaped token that CKAN does not know.
func jwtShaped(header string) string {
	enc := base64.RawURLEncoding.EncodeToString
	return enc([]byte(header)) + "." + enc([]byte(`{"jti":"made-up","iat":1735689600}`)) + "." + enc([]byte("not-a-real-signature-0123456789"))
}

func TestOnlyTokenShapedCredentialsReachCKAN(t *testing.T) {
	sim, err := ckansim.New(ckansim.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ckan := &recordingCKAN{sim: sim}
	up := httptest.NewServer(ckan)
	defer up.Close()
	r := newRig(t, func(o *Options) {
		o.Upstream, _ = url.Parse(up.URL)
		o.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
	})

	unknownJWT := jwtShaped(`{"typ":"JWT","alg":"HS256"}`)
	otherJWT := jwtShaped(`{"alg":"HS256","typ":"JWT"}`)
	mistypedOps := opsToken[:63] + "0"
	cases := []struct {
		name   string
		hdr    []string
		status int
		sent   string // what CKAN must have got, "" for nothing
	}{
		{"Basic", []string{"Authorization", "Basic " + base64.StdEncoding.EncodeToString([]byte("admin:"+ckansim.SysadminToken))}, 401, ""},
		{"mistyped ops token", []string{"Authorization", "Bearer " + mistypedOps}, 401, ""},
		{"mistyped ops token, raw", []string{"Authorization", mistypedOps}, 401, ""},
		{"mistyped ops token in X-CKAN-API-Key", []string{"X-CKAN-API-Key", mistypedOps}, 401, ""},
		{"a word", []string{"Authorization", "hunter2"}, 401, ""},
		{"JWT with alg none", []string{"Authorization", jwtShaped(`{"typ":"JWT","alg":"none"}`)}, 401, ""},
		{"JWT of another type", []string{"Authorization", jwtShaped(`{"typ":"at+jwt","alg":"HS256"}`)}, 401, ""},
		{"three segments, header not JSON", []string{"Authorization", "abc.def.ghi"}, 401, ""},
		{"JWT and more", []string{"Authorization", unknownJWT + "\tx"}, 401, ""},
		{"unknown JWT-shaped", []string{"Authorization", unknownJWT}, 401, unknownJWT},
		{"unknown JWT-shaped as Bearer", []string{"Authorization", "bearer " + otherJWT}, 401, otherJWT},
		{"legacy API key shape", []string{"X-CKAN-API-Key", "0b6f1e2c-3d4a-4b5c-8d6e-7f8091a2b3c4"}, 401, "0b6f1e2c-3d4a-4b5c-8d6e-7f8091a2b3c4"},
		{"sysadmin token", []string{"Authorization", ckansim.SysadminToken}, 200, ckansim.SysadminToken},
	}
	for i, c := range cases {
		before := len(ckan.seen())
		// Each from its own address: together they are more failures
		// than one address may make.
		res := r.do("GET", "/-/ckanops/status", nil, authHeaders(fmt.Sprintf("192.0.2.%d", i+1), c.hdr...)...)
		if res.status != c.status {
			t.Errorf("%s: %d %s, want %d", c.name, res.status, res.body, c.status)
		}
		if c.sent == "" && res.status == 401 && !strings.Contains(res.body, "neither the ops token nor a CKAN API token") && !strings.Contains(res.body, "Basic credentials are not accepted") {
			t.Errorf("%s: the answer does not say why: %s", c.name, res.body)
		}
		asked := ckan.seen()[before:]
		switch {
		case c.sent == "" && len(asked) != 0:
			t.Errorf("%s: CKAN was sent %q", c.name, asked)
		case c.sent != "" && (len(asked) != 1 || asked[0] != c.sent+"|"):
			t.Errorf("%s: CKAN was sent %q, want the token raw in Authorization", c.name, asked)
		}
	}
	if v := scrapeAuthMetric(t, r, `ckanops_auth_failures_total{reason="not-token"}`); v != "9" {
		t.Errorf("not-token failures: %s, want 9", v)
	}
	if v := scrapeAuthMetric(t, r, `ckanops_auth_failures_total{reason="unknown-token"}`); v != "3" {
		t.Errorf("unknown-token failures: %s, want 3", v)
	}
}

func TestCKANTokenShape(t *testing.T) {
	for tok, want := range map[string]bool{
		ckansim.SysadminToken:                    true,
		ckansim.EditorToken:                      true,
		jwtShaped(`{"alg":"HS256"}`):             true, // typ is optional
		jwtShaped(`{"alg":"RS256","typ":"jwt"}`): true,
		"0B6F1E2C-3D4A-4B5C-8D6E-7F8091A2B3C4":   true,
		jwtShaped(`{"typ":"JWT"}`):               false,
		jwtShaped(`["alg"]`):                     false,
		jwtShaped(`{"alg":""}`):                  false,
		"0b6f1e2c3d4a4b5c8d6e7f8091a2b3c4":       false, // hex, no dashes
		"0b6f1e2c-3d4a-4b5c-8d6e-7f8091a2b3cg":   false,
		opsToken:                                 false,
		"":                                       false,
		strings.Replace(ckansim.SysadminToken, ".", "..", 1):        false,
		ckansim.SysadminToken + "=":                                 false,
		jwtShaped(`{"alg":"HS256"}`) + strings.Repeat("A", 5000):    false,
		"Basic " + base64.StdEncoding.EncodeToString([]byte("a:b")): false,
	} {
		if got := ckanTokenShaped(tok); got != want {
			t.Errorf("ckanTokenShaped(%.60q) = %v, want %v", tok, got, want)
		}
	}
}

// TestSysadminCheckIgnoresEnvProxy: with HTTP_PROXY and HTTPS_PROXY set,
// the sysadmin check still asks CKAN directly, through the gate's own
// transport.
func TestSysadminCheckIgnoresEnvProxy(t *testing.T) {
	var proxied atomic.Int32
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		proxied.Add(1)
		http.Error(w, "this proxy must not be used", http.StatusBadGateway)
	}))
	defer proxy.Close()
	t.Setenv("HTTP_PROXY", proxy.URL)
	t.Setenv("HTTPS_PROXY", proxy.URL)
	t.Setenv("http_proxy", proxy.URL)
	t.Setenv("https_proxy", proxy.URL)
	t.Setenv("NO_PROXY", "")
	t.Setenv("no_proxy", "")

	sim, err := ckansim.New(ckansim.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ckan := &recordingCKAN{sim: sim}
	up := httptest.NewServer(ckan)
	defer up.Close()
	tr := newTransport(5*time.Second, 4)
	if tr.Proxy != nil {
		t.Fatal("the gate's default transport uses a proxy")
	}
	// Go never proxies loopback: CKAN goes by a name that is not, which
	// only the gate's transport knows how to reach.
	target := up.Listener.Addr().String()
	tr.DialContext = func(ctx context.Context, network, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, network, target)
	}
	r := newRig(t, func(o *Options) {
		o.Upstream, _ = url.Parse("http://ckan.internal.example")
		o.Transport = tr
	})
	res := r.do("GET", "/-/ckanops/status", nil, "Authorization", ckansim.SysadminToken)
	if res.status != 200 {
		t.Fatalf("sysadmin token: %d %s", res.status, res.body)
	}
	if n := proxied.Load(); n != 0 {
		t.Fatalf("the environment's proxy got %d request(s)", n)
	}
	if got := ckan.seen(); len(got) != 1 || got[0] != ckansim.SysadminToken+"|" {
		t.Fatalf("CKAN got %q, want one user_show with the token", got)
	}
}

// TestSysadminCacheSurvivesATokenFlood: made-up tokens fill only the cache
// of other answers; sysadmins' answers stay, and CKAN is not asked again.
func TestSysadminCacheSurvivesATokenFlood(t *testing.T) {
	r := newRig(t)
	if res := r.do("GET", "/-/ckanops/status", nil, "Authorization", ckansim.SysadminToken); res.status != 200 {
		t.Fatalf("sysadmin token: %d %s", res.status, res.body)
	}
	c := r.gate.admins
	c.mu.Lock()
	for i := 0; len(c.others) < maxCachedTokens; i++ {
		c.others[sha256.Sum256([]byte(fmt.Sprint(i)))] = adminEntry{exp: time.Now().Add(time.Hour)}
	}
	c.mu.Unlock()
	if res := r.do("GET", "/-/ckanops/status", nil, "Authorization", jwtShaped(`{"alg":"HS256","typ":"JWT"}`)); res.status != 401 {
		t.Fatalf("unknown token: %d %s", res.status, res.body)
	}
	c.mu.Lock()
	others, admins := len(c.others), len(c.admins)
	c.mu.Unlock()
	if others != 1 || admins != 1 {
		t.Fatalf("after the overflow: %d other answers (want 1), %d sysadmins (want 1)", others, admins)
	}
	r.sim.ResetJournal()
	if res := r.do("GET", "/-/ckanops/status", nil, "Authorization", ckansim.SysadminToken); res.status != 200 {
		t.Fatalf("sysadmin token again: %d %s", res.status, res.body)
	}
	for _, e := range r.sim.Journal() {
		if e.Action == "user_show" {
			t.Fatal("CKAN was asked again about a cached sysadmin's token")
		}
	}
}
