package gate

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ckanops/ckanops/api"
)

// seen is what a recording upstream received.
type seen struct {
	method, path string
	header       http.Header
	trailer      http.Header
	body         string
	bodyErr      error
}

// recorder is an upstream that records each request it gets, its body
// read to the end (or to the error that stopped it).
type recorder struct {
	mu  sync.Mutex
	got []seen
	ch  chan seen
}

func newRecorder() *recorder { return &recorder{ch: make(chan seen, 64)} }

func (rc *recorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, err := io.ReadAll(r.Body)
	s := seen{method: r.Method, path: r.URL.Path, header: r.Header.Clone(), trailer: r.Trailer.Clone(), body: string(b), bodyErr: err}
	rc.mu.Lock()
	rc.got = append(rc.got, s)
	rc.mu.Unlock()
	rc.ch <- s
	if err != nil {
		return
	}
	w.Header().Set("Content-Type", "application/json")
	io.WriteString(w, `{"success": true, "result": "ok"}`)
}

func (rc *recorder) all() []seen {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]seen(nil), rc.got...)
}

// gateTo starts a gate in front of upstream and returns it with its URL.
func gateTo(t *testing.T, upstream http.Handler, opts ...rigOption) (*Gate, *httptest.Server) {
	t.Helper()
	up := httptest.NewServer(upstream)
	t.Cleanup(up.Close)
	u, _ := url.Parse(up.URL)
	store, err := OpenFileStore(filepath.Join(t.TempDir(), "s.json"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	o := Options{Site: "t", Upstream: u, Store: store, OpsToken: opsToken}
	for _, f := range opts {
		f(&o)
	}
	g, err := New(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(g)
	t.Cleanup(srv.Close)
	return g, srv
}

func setGateMode(t *testing.T, srv *httptest.Server, mode api.Mode) {
	t.Helper()
	req, _ := http.NewRequest("POST", srv.URL+"/-/ckanops/mode", strings.NewReader(`{"mode": "`+string(mode)+`", "reason": "test"}`))
	req.Header.Set("Authorization", "Bearer "+opsToken)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 200 {
		t.Fatalf("set mode %s: %d %s", mode, res.StatusCode, b)
	}
}

// rawExchange writes raw to the server at addr, half-closes when asked,
// and reads one response.
func rawExchange(t *testing.T, addr, raw string, halfClose bool) *http.Response {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	if halfClose {
		c.(*net.TCPConn).CloseWrite()
	}
	res, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("no response to %q: %v", raw, err)
	}
	t.Cleanup(func() { res.Body.Close() })
	return res
}

func metricValue(t *testing.T, srv *httptest.Server, series string) string {
	t.Helper()
	req, _ := http.NewRequest("GET", srv.URL+"/-/ckanops/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+opsToken)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			return v
		}
	}
	return ""
}

func TestRoutingHeadersNeverReachCKAN(t *testing.T) {
	rc := newRecorder()
	_, srv := gateTo(t, rc)
	addr := srv.Listener.Addr().String()
	raw := "GET /dataset/ HTTP/1.1\r\nHost: data.example.org\r\n" +
		"SCRIPT_NAME: /x\r\nScript_Name: /y\r\nPATH_INFO: /api/3/action/package_create\r\nX_Forwarded_Prefix: /z\r\n" +
		"X-Original-URL: /api/3/action/package_create\r\nx-rewrite-url: /api/3/action/package_create\r\n" +
		"X-Forwarded-Prefix: /p\r\nX-Script-Name: /s\r\nScript-Name: /s\r\nPath-Info: /p\r\n" +
		"X-Keep: yes\r\nConnection: close\r\n\r\n"
	res := rawExchange(t, addr, raw, false)
	if res.StatusCode != 200 {
		t.Fatalf("status %d", res.StatusCode)
	}
	got := rc.all()
	if len(got) != 1 {
		t.Fatalf("upstream got %d requests", len(got))
	}
	for name := range got[0].header {
		if strings.Contains(name, "_") || isRoutingHeader(name) {
			t.Errorf("header %s reached CKAN: %v", name, got[0].header)
		}
	}
	if got[0].header.Get("X-Keep") != "yes" {
		t.Errorf("an ordinary header was dropped: %v", got[0].header)
	}
	// SCRIPT_NAME and Script_Name are one header to Go (Script_name).
	if v := metricValue(t, srv, `ckanops_dropped_headers_total{reason="underscore"}`); v != "3" {
		t.Errorf("underscore drops counted %q, want 3", v)
	}
	if v := metricValue(t, srv, `ckanops_dropped_headers_total{reason="routing"}`); v != "6" {
		t.Errorf("routing drops counted %q, want 6", v)
	}

	// From a trusted proxy the routing headers pass (it set them), but a
	// name with '_' never does.
	rc2 := newRecorder()
	_, srv2 := gateTo(t, rc2, func(o *Options) { o.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")} })
	rawExchange(t, srv2.Listener.Addr().String(), raw, false)
	h := rc2.all()[0].header
	if h.Get("X-Forwarded-Prefix") != "/p" || h.Get("X-Original-Url") == "" {
		t.Errorf("a trusted proxy's routing headers were dropped: %v", h)
	}
	for name := range h {
		if strings.Contains(name, "_") {
			t.Errorf("header %s reached CKAN from a trusted proxy", name)
		}
	}
}

func TestRequestTrailersAreNotForwarded(t *testing.T) {
	rc := newRecorder()
	_, srv := gateTo(t, rc)
	raw := "POST /api/3/action/package_show HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTrailer: Script-Name\r\nConnection: close\r\n\r\n" +
		"2\r\n{}\r\n0\r\nScript-Name: /api/3/action\r\nSCRIPT_NAME: /x\r\n\r\n"
	res := rawExchange(t, srv.Listener.Addr().String(), raw, false)
	if res.StatusCode != 200 {
		t.Fatalf("status %d", res.StatusCode)
	}
	s := rc.all()[0]
	if s.body != "{}" || len(s.trailer) != 0 {
		t.Fatalf("upstream got body %q trailers %v", s.body, s.trailer)
	}
}

func TestUpgradeRefusedUnlessLive(t *testing.T) {
	t.Run("anyone", func(t *testing.T) { upgradeRefused(t, false) })
	// A bypass client passes down mode, but gets no tunnel either: it
	// would outlive the switch to maintenance.
	t.Run("bypass client", func(t *testing.T) { upgradeRefused(t, true) })
}

func upgradeRefused(t *testing.T, bypass bool) {
	rc := newRecorder()
	_, srv := gateTo(t, rc, func(o *Options) {
		if bypass {
			o.BypassCIDRs = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")} // the test's address
		}
	})
	base := 0
	if bypass {
		setGateMode(t, srv, api.ModeDown)
		if res := rawExchange(t, srv.Listener.Addr().String(), "GET /dataset/ HTTP/1.1\r\nHost: x\r\n\r\n", false); res.StatusCode != http.StatusOK || len(rc.all()) != 1 {
			t.Fatalf("a bypass client's page in down mode: %d, %d request(s) upstream", res.StatusCode, len(rc.all()))
		}
		base = 1
	}
	for _, mode := range []api.Mode{api.ModeReadOnly, api.ModeDown} {
		setGateMode(t, srv, mode)
		for _, raw := range []string{
			"GET /api/3/action/status_show HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
			"GET /dataset/ HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n",
			"GET /dataset/ HTTP/1.1\r\nHost: x\r\nupgrade: WebSocket\r\n\r\n", // no Connection: upgrade
		} {
			res := rawExchange(t, srv.Listener.Addr().String(), raw, false)
			if res.StatusCode != http.StatusServiceUnavailable || res.Header.Get("Retry-After") == "" {
				t.Errorf("%s: upgrade answered %d (Retry-After %q), want 503", mode, res.StatusCode, res.Header.Get("Retry-After"))
			}
			if strings.Contains(raw, "/api/") {
				var env struct {
					Error struct {
						Type string `json:"__type"`
					} `json:"error"`
				}
				if err := json.NewDecoder(res.Body).Decode(&env); err != nil || env.Error.Type != "Maintenance Error" {
					t.Errorf("%s: API upgrade refusal not in CKAN's envelope: %v %+v", mode, err, env)
				}
			}
		}
	}
	if n := len(rc.all()) - base; n != 0 {
		t.Fatalf("%d upgrade requests reached CKAN while not live", n)
	}
}

// tunnelUpstream switches every request to an echo tunnel, as a WebSocket
// server would.
type tunnelUpstream struct{ opened chan struct{} }

func (u tunnelUpstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	c, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return
	}
	defer c.Close()
	brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
	brw.Flush()
	u.opened <- struct{}{}
	io.Copy(c, brw) // echo until the gate closes its side
}

func TestSwitchAwayFromLiveClosesTunnels(t *testing.T) {
	up := tunnelUpstream{opened: make(chan struct{}, 1)}
	g, srv := gateTo(t, up)
	c, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c, "GET /socket HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
	br := bufio.NewReader(c)
	res, err := http.ReadResponse(br, nil)
	if err != nil || res.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("live tunnel not opened: %v %v", err, res)
	}
	<-up.opened
	io.WriteString(c, "ping\n")
	if line, err := br.ReadString('\n'); err != nil || line != "ping\n" {
		t.Fatalf("echo through the tunnel: %q %v", line, err)
	}
	if n := g.state.inFlightCount(); n != 1 {
		t.Fatalf("an open tunnel counts %d in-flight writes, want 1", n)
	}
	if p, _ := g.state.phase(); p != api.PhaseLive {
		t.Fatalf("phase %s", p)
	}

	setGateMode(t, srv, api.ModeReadOnly)
	if _, err := br.ReadString('\n'); err == nil {
		t.Fatal("the tunnel is still open after the switch to read-only")
	}
	waitFor(t, "the tunnel to leave the in-flight writes", func() bool { return g.state.inFlightCount() == 0 })
	if p, _ := g.state.phase(); p != api.PhaseQuiesced {
		t.Fatalf("after the tunnel closed: phase %s, want quiesced", p)
	}
}

func TestMalformedBodiesGet400AndNeverACompleteRequestUpstream(t *testing.T) {
	cases := []struct {
		name      string
		raw       string
		halfClose bool
		want      int
	}{
		{"bad chunk size", "POST /api/3/action/package_show HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" +
			"2\r\n{}\r\nzz\r\nmore\r\n0\r\n\r\n", false, 400},
		{"chunk size overflow", "POST /api/3/action/package_show HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" +
			"2\r\n{}\r\nffffffffffffffffff\r\nx\r\n", false, 400},
		{"chunk data longer than its size", "POST /api/3/action/package_show HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" +
			"2\r\n{}xx\r\n0\r\n\r\n", false, 400},
		{"truncated chunk", "POST /api/3/action/package_show HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" +
			"10\r\n{\"id\"", true, 400},
		{"no last chunk", "POST /api/3/action/package_show HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" +
			"2\r\n{}\r\n", true, 400},
		{"shorter than Content-Length", "POST /api/3/action/package_show HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n" +
			`{"id": "x"}`, true, 400},
		{"bad Content-Length", "POST /api/3/action/package_show HTTP/1.1\r\nHost: x\r\nContent-Length: 1x\r\n\r\n{}", false, 400},
		{"two Content-Lengths", "POST /api/3/action/package_show HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}x", false, 400},
		{"unknown transfer coding", "POST /api/3/action/package_show HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", false, 501},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rc := newRecorder()
			_, srv := gateTo(t, rc)
			res := rawExchange(t, srv.Listener.Addr().String(), tc.raw, tc.halfClose)
			if res.StatusCode != tc.want {
				b, _ := io.ReadAll(res.Body)
				t.Fatalf("status %d, want %d: %s", res.StatusCode, tc.want, b)
			}
			if tc.want == 400 && res.Header.Get("Content-Type") == "application/json;charset=utf-8" {
				var env struct {
					Success bool `json:"success"`
					Error   struct {
						Type    string `json:"__type"`
						Message string `json:"message"`
					} `json:"error"`
				}
				if err := json.NewDecoder(res.Body).Decode(&env); err != nil || env.Success || env.Error.Type == "" {
					t.Errorf("400 body: %v %+v", err, env)
				}
			}
			// Whatever reached CKAN must have broken off: never a request
			// CKAN could take for complete.
			deadline := time.After(500 * time.Millisecond)
			for _, s := range rc.all() {
				if s.bodyErr == nil {
					t.Fatalf("CKAN got a complete request: body %q", s.body)
				}
			}
			select {
			case s := <-rc.ch:
				if s.bodyErr == nil {
					t.Fatalf("CKAN got a complete request: body %q", s.body)
				}
			case <-deadline:
			}
		})
	}
}

func TestMalformedBodyAnswerIsCounted(t *testing.T) {
	rc := newRecorder()
	_, srv := gateTo(t, rc)
	rawExchange(t, srv.Listener.Addr().String(), "POST /dataset/new HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\nqq\r\n", false)
	if v := metricValue(t, srv, "ckanops_bad_request_bodies_total"); v != "1" {
		t.Fatalf("bad bodies counted %q, want 1", v)
	}
	if v := metricValue(t, srv, "ckanops_upstream_errors_total"); v != "0" {
		t.Fatalf("a client's malformed body counted as an upstream error: %q", v)
	}
}

// The shipped nginx config clears every routing header: nginx is a trusted
// proxy, and it passes on what clients send unless told otherwise.
func TestNginxClearsTheRoutingHeaders(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "deploy", "nginx", "ckan.conf"))
	if err != nil {
		t.Fatal(err)
	}
	conf := strings.ToLower(string(b))
	for _, h := range routingHeaders {
		if !strings.Contains(conf, "proxy_set_header "+strings.ToLower(h)+` "";`) {
			t.Errorf(`deploy/nginx/ckan.conf does not clear %s: add proxy_set_header %s "";`, h, h)
		}
	}
}
