package gate

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ckanops/ckanops/api"
)

// The WSGI differential test: real gunicorn, real uWSGI (its HTTP socket,
// and its HTTP router as CKAN's Docker images run it) behind a real gate,
// each answering with what its WSGI app received (testdata/wsgi/echo.py).
// Requests go on raw sockets, so header names are spelt exactly as written
// here. A decision of the classifier holds only if the app routes the very
// request the gate judged, so for every request that reaches the app:
//
//   - SCRIPT_NAME is empty, and SCRIPT_NAME+PATH_INFO are, byte for byte,
//     the r.URL.Path the gate judged, and REQUEST_METHOD its method;
//   - no HTTP_* variable (nor uWSGI's CONTENT_TYPE/CONTENT_LENGTH) came from
//     a request header whose name holds '_', from a routing header
//     (wsgiRoutingHeaders) sent by an untrusted peer, or from a trailer;
//   - in read-only mode, the gate judged it a read.
//
// Three differences are the servers' own, modelled exactly and logged, not
// tolerated loosely: uWSGI resolves dot segments in PATH_INFO (uwsgiPathInfo),
// gunicorn upper-cases the method, and a target without a path ("A:") goes
// out as "/". For each, the classifier must judge the request as routed no
// more leniently than the request judged.
//
// Facts behind it (Debian bookworm: gunicorn 20.1.0, uWSGI 2.0.21):
// gunicorn upper-cases header names and sets SCRIPT_NAME from a header
// named SCRIPT_NAME in any case (Script_Name, script_name), from any peer,
// then cuts PATH_INFO after the first occurrence of that value in the raw
// path, so "GET /xapi/3/action/package_create" with "SCRIPT_NAME: /x" routes
// "api/3/action/package_create" (and a value not in the path is a 500);
// both servers map Foo_Bar and Foo-Bar to the same HTTP_FOO_BAR and join
// the values; uWSGI maps Content_Type and Content_Length to CONTENT_TYPE and
// CONTENT_LENGTH (its router frames the body by the latter).
//
// Without the servers installed the test is skipped, except in CI (CI=true)
// where it fails: .ci/run installs them.

// wsgiRoutingHeaders are the headers servers and middlewares re-route a
// request by: the gate forwards them only from a trusted proxy.
var wsgiRoutingHeaders = []string{
	"X-Original-URL", "X-Original-URI", "X-Rewrite-URL", "X-Forwarded-Prefix", "X-Script-Name", "Script-Name",
	"Path-Info", "Request-URI", "X-Forwarded-Path", "X-Forwarded-Uri", "X-Envoy-Original-Path",
}

// wsgiSpellings are the routing headers as a client may spell them: with
// '_' for '-', in any case, and under the names of WSGI variables.
var wsgiSpellings = []string{
	"SCRIPT_NAME", "Script_Name", "script_name", "SCRIPT-NAME", "Script-Name", "X-Script-Name", "X_SCRIPT_NAME",
	"PATH_INFO", "Path-Info", "Path_Info",
	"X-Original-URL", "X_Original_URL", "X-Original-URI", "X-Rewrite-URL",
	"X-Forwarded-Prefix", "X_Forwarded_Prefix", "X-Forwarded-Path", "X-Forwarded-Uri", "X-Envoy-Original-Path",
	"REQUEST_URI", "Request-Uri", "RAW_URI",
}

// wsgiHopHeaders must never reach the app as HTTP_* whatever the client
// sent: the proxy owns the connection, and it forwards no trailers.
var wsgiHopHeaders = map[string]bool{"Te": true, "Trailer": true, "Keep-Alive": true, "Proxy-Connection": true}

// wsgiGateAdded are the HTTP_* variables the gate itself sends.
var wsgiGateAdded = map[string]bool{
	"HTTP_X_FORWARDED_FOR": true, "HTTP_X_FORWARDED_HOST": true, "HTTP_X_FORWARDED_PROTO": true,
	"HTTP_TRANSFER_ENCODING": true, // Go's transport, for a chunked body
}

const wsgiCaseHeader = "X-Wsgi-Case"

type wsgiHeader struct{ name, value string }

// wsgiCase is one request, written on the socket exactly as spelt here.
type wsgiCase struct {
	from    string // where it comes from, for failure messages
	tag     string // the header spelling it tries, for the summary ("" for none)
	method  string
	target  string
	header  []wsgiHeader
	trailer []wsgiHeader // sent with a chunked, empty body
}

func (c wsgiCase) raw(id string) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: ckan.example\r\n%s: %s\r\n", c.method, c.target, wsgiCaseHeader, id)
	for _, h := range c.header {
		fmt.Fprintf(&b, "%s: %s\r\n", h.name, h.value)
	}
	b.WriteString("Connection: close\r\n")
	switch {
	case len(c.trailer) > 0:
		names := make([]string, len(c.trailer))
		for i, h := range c.trailer {
			names[i] = h.name
		}
		fmt.Fprintf(&b, "Transfer-Encoding: chunked\r\nTrailer: %s\r\n\r\n0\r\n", strings.Join(names, ", "))
		for _, h := range c.trailer {
			fmt.Fprintf(&b, "%s: %s\r\n", h.name, h.value)
		}
	case c.method == "POST" || c.method == "PUT" || c.method == "PATCH":
		b.WriteString("Content-Length: 0\r\n")
	}
	b.WriteString("\r\n")
	return b.Bytes()
}

// wsgiEcho is what testdata/wsgi/echo.py saw.
type wsgiEcho struct {
	Echo          bool              `json:"echo"`
	ScriptNameHex *string           `json:"script_name_hex"`
	PathInfoHex   *string           `json:"path_info_hex"`
	RequestMethod string            `json:"request_method"`
	RequestURI    *string           `json:"request_uri"`
	RawURI        *string           `json:"raw_uri"`
	ContentType   *string           `json:"content_type"`
	ContentLength *string           `json:"content_length"`
	URLScheme     string            `json:"url_scheme"`
	HTTP          map[string]string `json:"http"`
}

func (e *wsgiEcho) String() string {
	b, _ := json.Marshal(map[string]any{
		"SCRIPT_NAME": wsgiHexText(e.ScriptNameHex), "PATH_INFO": wsgiHexText(e.PathInfoHex),
		"REQUEST_METHOD": e.RequestMethod, "REQUEST_URI": e.RequestURI, "RAW_URI": e.RawURI,
		"CONTENT_TYPE": e.ContentType, "CONTENT_LENGTH": e.ContentLength, "wsgi.url_scheme": e.URLScheme, "HTTP_*": e.HTTP,
	})
	return string(b)
}

// wsgiHexText shows a hex-encoded WSGI string Go-quoted (nil: absent).
func wsgiHexText(h *string) string {
	if h == nil {
		return "<absent>"
	}
	b, err := hex.DecodeString(*h)
	if err != nil {
		return "<bad hex " + *h + ">"
	}
	return strconv.Quote(string(b))
}

// wsgiCGIKeys are the environ keys a header name may become.
func wsgiCGIKeys(name string) []string {
	k := "HTTP_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
	switch k {
	case "HTTP_CONTENT_TYPE", "HTTP_CONTENT_LENGTH":
		return []string{k, strings.TrimPrefix(k, "HTTP_")} // uWSGI drops the prefix
	}
	return []string{k}
}

func (e *wsgiEcho) lookup(key string) (string, bool) {
	var p *string
	switch key {
	case "CONTENT_TYPE":
		p = e.ContentType
	case "CONTENT_LENGTH":
		p = e.ContentLength
	default:
		v, ok := e.HTTP[key]
		return v, ok
	}
	if p == nil {
		return "", false
	}
	return *p, true
}

// uwsgiPathInfo is PATH_INFO as uWSGI 2.0 builds it from a request
// target's path, in its HTTP socket and its HTTP router alike: a port of
// http_url_decode (core/utils.c), which decodes percent-escapes, removes
// dot segments spelt with literal dots (before decoding: %2E%2E stays) and
// stops at the first '#'. The odd conditions (i > 1, i > 2) are uWSGI's.
func uwsgiPathInfo(buf string) string {
	const (
		zero = iota
		percent1
		percent2
		slash
		dot
		dotdot
	)
	dst := make([]byte, 0, len(buf)+1)
	status, noSlash := zero, false
	if len(buf) > 0 && buf[0] != '/' {
		status, noSlash = slash, true
	}
	var hi byte
	// cut removes the last segment and the slash before it.
	cut := func() {
		n := len(dst)
		for n > 0 {
			n--
			if dst[n] == '/' {
				break
			}
		}
		dst = dst[:n]
	}
	for i := 0; i < len(buf); i++ {
		c := buf[i]
		if c == '#' {
			break
		}
		switch status {
		case zero:
			switch c {
			case '%':
				status = percent1
			case '/':
				status = slash
			default:
				dst = append(dst, c)
			}
		case percent1:
			if c == '%' {
				dst = append(dst, '%')
				status = zero
				break
			}
			hi, status = c, percent2
		case percent2:
			dst = append(dst, uwsgiHex2Num(hi, c))
			status = zero
		case slash:
			if c == '.' {
				status = dot
				break
			}
			if i > 0 || !noSlash {
				dst = append(dst, '/')
			}
			switch c {
			case '%':
				status = percent1
			case '/':
				status = slash
			default:
				dst = append(dst, c)
				status = zero
			}
		case dot:
			if c == '.' {
				status = dotdot
				break
			}
			if c == '/' {
				status = slash
				break
			}
			if i > 1 {
				dst = append(dst, '/')
			}
			dst = append(dst, '.')
			if c == '%' {
				status = percent1
				break
			}
			dst = append(dst, c)
			status = zero
		case dotdot:
			if c == '/' {
				cut()
				status = slash
				break
			}
			if i > 2 {
				dst = append(dst, '/')
			}
			dst = append(dst, '.', '.')
			if c == '%' {
				status = percent1
				break
			}
			dst = append(dst, c)
			status = zero
		}
	}
	switch status {
	case slash, dot:
		dst = append(dst, '/')
	case dotdot:
		n := len(dst)
		for n > 0 && dst[n-1] != '/' {
			n--
		}
		dst = dst[:n]
	}
	return string(dst)
}

// uwsgiHex2Num is uWSGI's hex2num: 0 for a byte that is not a hex digit.
func uwsgiHex2Num(a, b byte) byte {
	digit := func(c byte) (byte, bool) {
		switch {
		case '0' <= c && c <= '9':
			return c - '0', true
		case 'a' <= c && c <= 'f':
			return c - 'a' + 10, true
		case 'A' <= c && c <= 'F':
			return c - 'A' + 10, true
		}
		return 0, false
	}
	h, ok := digit(a)
	if !ok {
		return 0
	}
	l, ok := digit(b)
	if !ok {
		return 0
	}
	return h<<4 | l
}

// wsgiJudged is what the gate saw of one request.
type wsgiJudged struct {
	method, path, rawPath string
	header                http.Header
	pass                  bool
	class, reason         string
}

type wsgiJudgeLog struct {
	mu sync.Mutex
	m  map[string]wsgiJudged
}

func (l *wsgiJudgeLog) get(id string) (wsgiJudged, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	j, ok := l.m[id]
	return j, ok
}

// wsgiOutput collects a server's output for failure messages.
type wsgiOutput struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *wsgiOutput) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.b.Len() < 64<<10 {
		l.b.Write(p)
	}
	return len(p), nil
}

func (l *wsgiOutput) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

type wsgiServer struct {
	name   string
	url    *url.URL
	out    *wsgiOutput
	exited chan struct{}
}

func wsgiMissing(t *testing.T, what string) {
	t.Helper()
	msg := what + ": install Debian's gunicorn, uwsgi and uwsgi-plugin-python3 (apt-get install gunicorn uwsgi uwsgi-plugin-python3) to run the WSGI differential test"
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

// startWSGI starts a server in its own process group, killed on cleanup.
// It does not wait for it: see wait.
func startWSGI(t *testing.T, name string, argv []string, port int) *wsgiServer {
	t.Helper()
	cmd := exec.Command(argv[0], argv[1:]...)
	// gunicorn takes SCRIPT_NAME from its environment; uWSGI reads any
	// UWSGI_* variable as an option: neither must leak in.
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); k == "SCRIPT_NAME" || k == "GUNICORN_CMD_ARGS" || strings.HasPrefix(k, "UWSGI_") {
			continue
		}
		cmd.Env = append(cmd.Env, kv)
	}
	cmd.Env = append(cmd.Env, "PYTHONDONTWRITEBYTECODE=1") // no __pycache__ in testdata
	s := &wsgiServer{name: name, out: &wsgiOutput{}, exited: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = s.out, s.out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	go func() { _ = cmd.Wait(); close(s.exited) }()
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // the master and its workers
		select {
		case <-s.exited:
		case <-time.After(10 * time.Second):
			t.Errorf("%s (pid %d) did not exit after SIGKILL", name, cmd.Process.Pid)
		}
	})
	s.url = &url.URL{Scheme: "http", Host: net.JoinHostPort("127.0.0.1", strconv.Itoa(port))}
	return s
}

// wait returns when the app answers, and fails the test at the deadline or
// if the server exits.
func (s *wsgiServer) wait(t *testing.T) {
	t.Helper()
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(30 * time.Second)
	for {
		res, err := client.Get(s.url.String() + "/")
		if err == nil {
			_, _ = io.Copy(io.Discard, res.Body)
			res.Body.Close()
			if res.Header.Get("X-Echo") != "" {
				return
			}
			err = fmt.Errorf("status %s without X-Echo", res.Status)
		}
		select {
		case <-s.exited:
			t.Fatalf("%s exited before answering (%v):\n%s", s.name, err, s.out)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not answer within 30s (%v):\n%s", s.name, err, s.out)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func wsgiFreePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func startWSGIServers(t *testing.T) []*wsgiServer {
	t.Helper()
	gunicorn, err := exec.LookPath("gunicorn")
	if err != nil {
		wsgiMissing(t, "gunicorn is not installed")
	}
	uwsgi, err := exec.LookPath("uwsgi")
	if err != nil {
		wsgiMissing(t, "uwsgi is not installed")
	}
	// Debian's uWSGI is modular: the Python 3 plugin is a package of its
	// own, the HTTP router a plugin of uwsgi-core. A uWSGI without a
	// plugin directory (pip's) has both built in.
	var python, router []string
	const pluginDir = "/usr/lib/uwsgi/plugins"
	if _, err := os.Stat(pluginDir); err == nil {
		for _, p := range []string{"python3", "http"} {
			if _, err := os.Stat(filepath.Join(pluginDir, p+"_plugin.so")); err != nil {
				wsgiMissing(t, "uWSGI's "+p+" plugin is not installed ("+pluginDir+"/"+p+"_plugin.so)")
			}
		}
		python, router = []string{"--plugin", "python3"}, []string{"--plugin", "http"}
	}
	dir, err := filepath.Abs(filepath.Join("testdata", "wsgi"))
	if err != nil {
		t.Fatal(err)
	}
	uwsgiApp := []string{"--chdir", dir, "--wsgi-file", "echo.py", "--callable", "app",
		"--master", "--processes", "2", "--need-app", "--disable-logging", "--die-on-term",
		// uWSGI answers HTTP/1.1 without keep-alive and without saying so;
		// the gate's transport would pool the connection and lose a POST
		// sent on it as uWSGI closes it (a 502). Say so.
		"--add-header", "Connection: close"}
	gp, hp, rp := wsgiFreePort(t), wsgiFreePort(t), wsgiFreePort(t)
	servers := []*wsgiServer{
		startWSGI(t, "gunicorn", []string{gunicorn,
			"--bind", "127.0.0.1:" + strconv.Itoa(gp), "--chdir", dir, "--workers", "2",
			"--log-level", "warning", "echo:app"}, gp),
		// --http-socket: the workers parse HTTP themselves.
		startWSGI(t, "uwsgi", slices.Concat([]string{uwsgi, "--strict"}, python,
			[]string{"--http-socket", "127.0.0.1:" + strconv.Itoa(hp)}, uwsgiApp), hp),
		// --http: the HTTP router in front of the workers, as CKAN's
		// Docker images run it (ckan-docker-base, start_ckan.sh).
		startWSGI(t, "uwsgi-router", slices.Concat([]string{uwsgi, "--strict"}, router, python,
			[]string{"--http", "127.0.0.1:" + strconv.Itoa(rp), "--socket", filepath.Join(t.TempDir(), "uwsgi.sock")}, uwsgiApp), rp),
	}
	for _, s := range servers {
		s.wait(t)
	}
	return servers
}

// wsgiGate is a gate in front of upstream, with a recorder of what it
// judged in front of it.
func wsgiGate(t *testing.T, upstream *url.URL, mode api.Mode, trusted []netip.Prefix) (*Gate, string, *wsgiJudgeLog) {
	t.Helper()
	store, err := OpenFileStore(filepath.Join(t.TempDir(), "site.state.json"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	g, err := New(context.Background(), Options{
		Site: "wsgi", Upstream: upstream, Store: store, OpsToken: opsToken,
		InitialMode: mode, TrustedProxies: trusted,
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := g.Mode().Mode; got != mode {
		t.Fatalf("gate in %s mode, want %s", got, mode)
	}
	log := &wsgiJudgeLog{m: map[string]wsgiJudged{}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		d := g.classifier().Classify(r.Method, r.Header, r.URL)
		log.mu.Lock()
		log.m[r.Header.Get(wsgiCaseHeader)] = wsgiJudged{
			method: r.Method, path: r.URL.Path, rawPath: r.URL.RawPath, header: r.Header.Clone(),
			pass: d.Pass(), class: d.Class.String(), reason: d.Reason,
		}
		log.mu.Unlock()
		g.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return g, srv.Listener.Addr().String(), log
}

// wsgiObfuscation reads ../classify/testdata/obfuscation.txt (format: see
// that file and classify_test.go's readCorpus).
func wsgiObfuscation(t *testing.T) []wsgiCase {
	t.Helper()
	const name = "obfuscation.txt"
	data, err := os.ReadFile(filepath.Join("classify", "testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	var out []wsgiCase
	for i, text := range strings.Split(string(data), "\n") {
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		f := strings.Split(text, "\t")
		if len(f) < 4 {
			t.Fatalf("%s:%d: want 4 or 5 tab-separated fields", name, i+1)
		}
		c := wsgiCase{from: fmt.Sprintf("%s:%d", name, i+1), method: f[0], target: f[2]}
		if strings.HasPrefix(c.target, `"`) {
			if c.target, err = strconv.Unquote(c.target); err != nil {
				t.Fatalf("%s:%d: %v", name, i+1, err)
			}
		}
		if f[1] != "-" {
			for _, h := range strings.Split(f[1], " | ") {
				n, v, ok := strings.Cut(h, ":")
				if !ok {
					t.Fatalf("%s:%d: header %q", name, i+1, h)
				}
				c.header = append(c.header, wsgiHeader{n, strings.TrimSpace(v)})
			}
		}
		out = append(out, c)
	}
	if len(out) < 100 {
		t.Fatalf("%s: only %d requests", name, len(out))
	}
	return out
}

// wsgiFirstSegment is "/" and the first segment of a request target's path:
// the value of a SCRIPT_NAME that cuts the path in two.
func wsgiFirstSegment(target string) string {
	if i := strings.Index(target, "://"); i >= 0 {
		rest := target[i+3:]
		if j := strings.IndexByte(rest, '/'); j >= 0 {
			target = rest[j:]
		}
	}
	target, _, _ = strings.Cut(target, "?")
	if !strings.HasPrefix(target, "/") {
		return "/x"
	}
	if j := strings.IndexByte(target[1:], '/'); j > 0 {
		return target[:j+1]
	}
	if len(target) > 1 {
		return target
	}
	return "/x"
}

// wsgiAttacks are reads whose path, cut by a SCRIPT_NAME as gunicorn cuts
// it or rewritten by a routing header, is a write: a request line the gate
// lets through in read-only mode, with the value that would re-route it.
var wsgiAttacks = []struct{ method, target, value string }{
	{"GET", "/xapi/3/action/package_create", "/x"},
	{"GET", "/x%61pi/3/action/package_create", "/x"},
	{"GET", "/xapi%2F3/action/package_create", "/x"},
	{"GET", "/fr/xapi/3/action/package_create", "/fr/x"},
	{"GET", "/pt_BR/xapi/3/action/package_create", "/pt_BR/x"},
	{"GET", "http://ckan.example/xapi/3/action/package_create", "/x"},
	{"HEAD", "/xapi/3/action/package_delete", "/x"},
	{"GET", "/xgroup/follow/abc", "/x"},
	{"GET", "/dataset", "/api/3/action/package_create"},
	{"POST", "/api/3/action/package_show", "/api/3/action/package_delete"},
	// In live mode too: a write judged on one path, routed on another.
	{"GET", "/api/3/action/package_create", "/api/3/action"},
	{"POST", "/api/action/package_create", "/api"},
}

// wsgiExtras: duplicates, headers that collide with ones the gate sends,
// uWSGI's CONTENT_* mapping, method overrides, trailers, upgrades.
func wsgiExtras() []wsgiCase {
	h := func(kv ...string) []wsgiHeader {
		var out []wsgiHeader
		for i := 0; i+1 < len(kv); i += 2 {
			out = append(out, wsgiHeader{kv[i], kv[i+1]})
		}
		return out
	}
	const p = "/xapi/3/action/package_create"
	return []wsgiCase{
		{from: "duplicate", tag: "SCRIPT_NAME x2", method: "GET", target: p, header: h("SCRIPT_NAME", "/nope", "SCRIPT_NAME", "/x")},
		{from: "duplicate", tag: "SCRIPT_NAME x2", method: "GET", target: p, header: h("SCRIPT_NAME", "/x", "SCRIPT_NAME", "/x")},
		{from: "duplicate", tag: "Script-Name+SCRIPT_NAME", method: "GET", target: p, header: h("Script-Name", "/y", "SCRIPT_NAME", "/x")},
		{from: "duplicate", tag: "Script_Name+script_name", method: "GET", target: p, header: h("Script_Name", "/x", "script_name", "/x")},
		{from: "duplicate", tag: "X-Forwarded-Prefix+X_Forwarded_Prefix", method: "GET", target: p, header: h("X-Forwarded-Prefix", "/x", "X_Forwarded_Prefix", "/x")},
		{from: "duplicate", tag: "X-Original-URL x2", method: "GET", target: "/dataset", header: h("X-Original-URL", "/dataset", "X-Original-URL", "/api/3/action/package_create")},
		{from: "not in the path", tag: "SCRIPT_NAME", method: "GET", target: "/dataset", header: h("SCRIPT_NAME", "/nope")},
		{from: "empty", tag: "SCRIPT_NAME", method: "GET", target: "/dataset", header: h("SCRIPT_NAME", "")},
		{from: "collides with the gate's", tag: "X_Forwarded_For", method: "GET", target: "/dataset", header: h("X_Forwarded_For", "6.6.6.6")},
		{from: "collides with the gate's", tag: "X_Forwarded_Host", method: "GET", target: "/dataset", header: h("X_Forwarded_Host", "evil.example")},
		{from: "collides with the gate's", tag: "X_Forwarded_Proto", method: "GET", target: "/dataset", header: h("X_Forwarded_Proto", "https")},
		{from: "uWSGI CONTENT_*", tag: "Content_Type", method: "POST", target: "/api/3/action/package_show", header: h("Content_Type", "text/x-smuggled")},
		{from: "uWSGI CONTENT_*", tag: "Content_Length", method: "GET", target: "/dataset", header: h("Content_Length", "7")},
		{from: "framing", tag: "Transfer_Encoding", method: "GET", target: "/dataset", header: h("Transfer_Encoding", "chunked")},
		{from: "method override", tag: "X_HTTP_Method_Override", method: "GET", target: "/dataset/abc", header: h("X_HTTP_Method_Override", "DELETE")},
		{from: "method override", tag: "X_HTTP_Method_Override", method: "POST", target: "/api/3/action/package_show", header: h("X_HTTP_Method_Override", "PUT")},
		{from: "method override", tag: "x_http_method", method: "GET", target: "/dataset/abc", header: h("x_http_method", "PATCH")},
		{from: "uWSGI variables", tag: "UWSGI_SCRIPT", method: "GET", target: "/dataset", header: h("UWSGI_SCRIPT", "nope", "UWSGI_APPID", "nope", "UWSGI_FILE", "/etc/passwd")},
		{from: "trailer", tag: "trailer", method: "POST", target: "/api/3/action/package_show", trailer: h("SCRIPT_NAME", "/api", "X-Original-URL", "/api/3/action/package_create", "X-Wsgi-Trailer", "t")},
		{from: "upgrade", tag: "Upgrade", method: "GET", target: "/dataset", header: h("Connection", "Upgrade", "Upgrade", "websocket", "Sec-WebSocket-Version", "13", "Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")},
		{from: "upgrade", tag: "Upgrade", method: "GET", target: "/dataset", header: h("Connection", "Upgrade, HTTP2-Settings", "Upgrade", "h2c", "HTTP2-Settings", "AAMAAABkAAQCAAAAAAIAAAAA")},
	}
}

// wsgiCorpus builds the requests for one run: the first attacks of
// wsgiAttacks, each plain and with every routing-header spelling, the
// extras, and if obfuscation, every obfuscation.txt request (with its own
// headers) and a spelling, round-robin, cutting its path at its first
// segment.
func wsgiCorpus(t *testing.T, attacks int, obfuscation bool) []wsgiCase {
	t.Helper()
	var out []wsgiCase
	for _, a := range wsgiAttacks[:attacks] {
		out = append(out, wsgiCase{from: "attack", method: a.method, target: a.target})
		for _, s := range wsgiSpellings {
			out = append(out, wsgiCase{from: "attack", tag: s, method: a.method, target: a.target, header: []wsgiHeader{{s, a.value}}})
		}
	}
	out = append(out, wsgiExtras()...)
	if obfuscation {
		for i, c := range wsgiObfuscation(t) {
			s := wsgiSpellings[i%len(wsgiSpellings)]
			c.tag = s
			c.header = append(c.header, wsgiHeader{s, wsgiFirstSegment(c.target)})
			out = append(out, c)
		}
	}
	return out
}

// wsgiFailure is one difference, kept for the message and the summary.
type wsgiFailure struct {
	kind, tag, msg string
}

type wsgiRun struct {
	t        *testing.T
	gate     *Gate
	server   string
	uwsgi    bool // PATH_INFO as uWSGI builds it
	mode     api.Mode
	trusted  bool
	addr     string
	judged   *wsgiJudgeLog
	mu       sync.Mutex
	failures []wsgiFailure
	counts   map[string]int
	notes    []string
}

func (r *wsgiRun) count(what string) {
	r.mu.Lock()
	r.counts[what]++
	r.mu.Unlock()
}

func (r *wsgiRun) note(s string) {
	r.mu.Lock()
	r.notes = append(r.notes, s)
	r.mu.Unlock()
}

func (r *wsgiRun) fail(c wsgiCase, raw []byte, kind, detail string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.failures = append(r.failures, wsgiFailure{kind: kind, tag: c.tag, msg: fmt.Sprintf("%s (%s): %s\n    request: %q\n    %s", kind, c.from, c.tag, raw, detail)})
}

// allowed reports whether the gate may forward a client's header.
func (r *wsgiRun) allowed(name string) bool {
	if strings.Contains(name, "_") || wsgiHopHeaders[http.CanonicalHeaderKey(name)] {
		return false
	}
	if r.trusted {
		return true
	}
	for _, h := range wsgiRoutingHeaders {
		if strings.EqualFold(h, name) {
			return false
		}
	}
	return true
}

func (r *wsgiRun) do(id int, c wsgiCase) {
	sid := strconv.Itoa(id)
	raw := c.raw(sid)
	res, err := wsgiSend(r.addr, raw, c.method)
	if err != nil {
		r.fail(c, raw, "no response", err.Error())
		return
	}
	j, seen := r.judged.get(sid)
	if !seen {
		// net/http answered before the gate saw it: 400 for a request
		// line it rejects, 200 for "OPTIONS *".
		r.count(fmt.Sprintf("answered %d by the gate's net/http", res.code))
		if res.echo != nil {
			r.fail(c, raw, "unexpected answer", fmt.Sprintf("the gate never saw it, yet the app did: %v", res.echo))
		}
		return
	}
	judgedAs := fmt.Sprintf("gate judged %s %q (RawPath %q): %s, %s", j.method, j.path, j.rawPath, j.class, j.reason)
	e := res.echo
	if e == nil {
		switch {
		case r.mode != api.ModeLive && !j.pass && (res.code == http.StatusServiceUnavailable || res.code == http.StatusNoContent):
			r.count("refused by the gate")
		case res.code == http.StatusBadRequest:
			r.count("rejected by " + r.server)
			r.note(fmt.Sprintf("%s answered %s to %q (%s)", r.server, res.status, raw, judgedAs))
		default:
			r.fail(c, raw, "the app did not answer", fmt.Sprintf("%s\n    %s; body %q", judgedAs, res.status, res.body))
		}
		return
	}
	r.count("reached the app")
	saw := "app saw " + e.String()
	if r.mode != api.ModeLive && !j.pass {
		r.fail(c, raw, "a write reached the app", judgedAs+"\n    "+saw)
	}
	if e.ScriptNameHex == nil || e.PathInfoHex == nil {
		r.fail(c, raw, "SCRIPT_NAME or PATH_INFO missing", judgedAs+"\n    "+saw)
		return
	}
	if *e.ScriptNameHex != "" {
		r.fail(c, raw, "SCRIPT_NAME set", judgedAs+"\n    "+saw)
	}
	// The path as the gate sent it.
	sent := (&url.URL{Path: j.path, RawPath: j.rawPath}).EscapedPath()
	if sent == "" {
		sent = "/"
	}
	fwd, err := url.PathUnescape(sent)
	if err != nil || fwd != j.path {
		if j.path == "" && sent == "/" && !j.pass {
			// A target without a path ("GET A: HTTP/1.1", a URL of another
			// scheme): judged a write, so refused but in live mode, where
			// the proxy sends it as "/".
			r.count("no path, sent as /")
			r.note(fmt.Sprintf("%s %q: no path, judged %s, sent as %q", j.method, c.target, j.class, sent))
		} else {
			r.fail(c, raw, "forwarded path differs", fmt.Sprintf("the gate sent %q\n    %s\n    %s", sent, judgedAs, saw))
		}
	}
	// The request as this server routes it. gunicorn decodes the path and
	// upper-cases the method (message.py: bits[0].upper()); uWSGI keeps
	// the method and resolves dot segments (core/utils.c http_url_decode).
	routed, method := fwd, j.method
	if r.uwsgi {
		routed = uwsgiPathInfo(sent)
	} else {
		method = strings.ToUpper(j.method)
	}
	if got := *e.ScriptNameHex + *e.PathInfoHex; got != hex.EncodeToString([]byte(routed)) {
		r.fail(c, raw, "routed path differs", fmt.Sprintf("expected %q\n    %s\n    %s", routed, judgedAs, saw))
	}
	if e.RequestMethod != method {
		r.fail(c, raw, "routed method differs", fmt.Sprintf("expected %q\n    %s\n    %s", method, judgedAs, saw))
	}
	if routed != fwd || method != j.method {
		// The server routes another request than the one judged, for a
		// reason of its own: the decision must hold for the one it routes.
		if routed != fwd {
			r.count("dot segments resolved by uWSGI")
			r.note(fmt.Sprintf("uWSGI resolved %q to %q (gate: %s)", j.path, routed, j.class))
		}
		if method != j.method {
			r.count("method upper-cased by gunicorn")
			r.note(fmt.Sprintf("gunicorn upper-cased %q (gate: %s, %s)", j.method, j.class, j.reason))
		}
		if d := r.gate.classifier().Classify(method, j.header, &url.URL{Path: routed}); j.pass && !d.Pass() {
			r.fail(c, raw, "routes a write judged a read", fmt.Sprintf("%s routes %s %q: %s, %s\n    %s\n    %s", r.server, method, routed, d.Class, d.Reason, judgedAs, saw))
		}
	}
	if e.HTTP["HTTP_X_WSGI_CASE"] != sid {
		r.fail(c, raw, "case header lost", judgedAs+"\n    "+saw)
	}

	// Which environ keys a forwarded header may explain, and which values.
	legit := map[string][]string{"HTTP_HOST": {"ckan.example"}, "HTTP_X_WSGI_CASE": {sid}}
	var forbidden []wsgiHeader
	for _, h := range c.header {
		if r.allowed(h.name) {
			for _, k := range wsgiCGIKeys(h.name) {
				legit[k] = append(legit[k], h.value)
			}
		} else {
			forbidden = append(forbidden, h)
		}
	}
	forbidden = append(forbidden, c.trailer...)
	if len(c.trailer) > 0 {
		forbidden = append(forbidden, wsgiHeader{"Trailer", ""})
	}
	reported := map[string]bool{} // one failure per variable
	for _, f := range forbidden {
		for _, k := range wsgiCGIKeys(f.name) {
			v, ok := e.lookup(k)
			if !ok || reported[k] {
				continue
			}
			vals, isLegit := legit[k]
			if !isLegit && !wsgiGateAdded[k] {
				reported[k] = true
				r.fail(c, raw, "header reached the app", fmt.Sprintf("%q became %s=%q\n    %s\n    %s", f.name, k, v, judgedAs, saw))
				continue
			}
			explained := f.value == ""
			for _, lv := range vals {
				explained = explained || strings.Contains(lv, f.value)
			}
			if !explained && strings.Contains(v, f.value) {
				reported[k] = true
				r.fail(c, raw, "header reached the app", fmt.Sprintf("%q: %q is in %s=%q\n    %s\n    %s", f.name, f.value, k, v, judgedAs, saw))
			}
		}
	}
	for k := range e.HTTP {
		if _, ok := legit[k]; !ok && !wsgiGateAdded[k] && !reported[k] {
			r.fail(c, raw, "unexpected variable", fmt.Sprintf("%s=%q, from no header the gate may forward\n    %s\n    %s", k, e.HTTP[k], judgedAs, saw))
		}
	}
}

type wsgiResponse struct {
	code   int
	status string
	body   string
	echo   *wsgiEcho
}

// wsgiSend writes raw on a new connection and reads one response.
func wsgiSend(addr string, raw []byte, method string) (wsgiResponse, error) {
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return wsgiResponse{}, err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(15 * time.Second))
	if _, err := conn.Write(raw); err != nil {
		return wsgiResponse{}, err
	}
	res, err := http.ReadResponse(bufio.NewReader(conn), &http.Request{Method: method})
	if err != nil {
		return wsgiResponse{}, err
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(res.Body, 300))
	out := wsgiResponse{code: res.StatusCode, status: res.Status, body: string(body)}
	if h := res.Header.Get("X-Echo"); h != "" {
		b, err := hex.DecodeString(h)
		if err != nil {
			return out, fmt.Errorf("X-Echo: %v", err)
		}
		var e wsgiEcho
		if err := json.Unmarshal(b, &e); err != nil || !e.Echo {
			return out, fmt.Errorf("X-Echo %s: %v", b, err)
		}
		out.echo = &e
	}
	return out, nil
}

func (r *wsgiRun) run(cases []wsgiCase) {
	const workers = 4
	next := make(chan int)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for i := range next {
				r.do(i, cases[i])
			}
		})
	}
	for i := range cases {
		next <- i
	}
	close(next)
	wg.Wait()
}

func (r *wsgiRun) report() {
	t := r.t
	keys := make([]string, 0, len(r.counts))
	for k := range r.counts {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var cs []string
	for _, k := range keys {
		cs = append(cs, fmt.Sprintf("%s %d", k, r.counts[k]))
	}
	t.Logf("%s, %s mode (trusted peer: %v): %s", r.server, r.mode, r.trusted, strings.Join(cs, ", "))
	slices.Sort(r.notes)
	for _, n := range slices.Compact(r.notes) {
		t.Log(n)
	}
	if len(r.failures) == 0 {
		return
	}
	// The summary first: which spellings did what.
	type key struct{ tag, kind string }
	sum := map[key]int{}
	for _, f := range r.failures {
		sum[key{f.tag, f.kind}]++
	}
	ks := make([]key, 0, len(sum))
	for k := range sum {
		ks = append(ks, k)
	}
	sort.Slice(ks, func(i, j int) bool {
		if ks[i].tag != ks[j].tag {
			return ks[i].tag < ks[j].tag
		}
		return ks[i].kind < ks[j].kind
	})
	var b strings.Builder
	fmt.Fprintf(&b, "%s, %s mode (trusted peer: %v): %d differences between the request judged and the request routed\n", r.server, r.mode, r.trusted, len(r.failures))
	for _, k := range ks {
		tag := k.tag
		if tag == "" {
			tag = "(no header)"
		}
		fmt.Fprintf(&b, "  %-40s %-32s %d\n", tag, k.kind, sum[k])
	}
	const show = 25
	for i, f := range r.failures {
		if i == show {
			fmt.Fprintf(&b, "... and %d more\n", len(r.failures)-show)
			break
		}
		fmt.Fprintf(&b, "- %s\n", f.msg)
	}
	t.Error(b.String())
}

// TestWSGIRoutesThePathJudged is the differential test against real WSGI
// servers: see the comment at the top of this file.
func TestWSGIRoutesThePathJudged(t *testing.T) {
	servers := startWSGIServers(t)
	loopback := []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}
	runs := []struct {
		mode    api.Mode
		trusted []netip.Prefix
		cases   []wsgiCase
	}{
		{api.ModeLive, nil, wsgiCorpus(t, len(wsgiAttacks), true)},
		// Every obfuscation.txt request is a write: in read-only mode the
		// reads are the attacks.
		{api.ModeReadOnly, nil, wsgiCorpus(t, len(wsgiAttacks), false)},
		// From a trusted proxy, routing headers without '_' go on; none of
		// them moves SCRIPT_NAME or PATH_INFO in these servers.
		{api.ModeLive, loopback, wsgiCorpus(t, 3, false)},
	}
	for _, s := range servers {
		t.Run(s.name, func(t *testing.T) {
			for _, rc := range runs {
				name := string(rc.mode)
				if rc.trusted != nil {
					name += "-trusted"
				}
				t.Run(name, func(t *testing.T) {
					g, addr, log := wsgiGate(t, s.url, rc.mode, rc.trusted)
					r := &wsgiRun{t: t, gate: g, server: s.name, uwsgi: strings.HasPrefix(s.name, "uwsgi"), mode: rc.mode, trusted: rc.trusted != nil, addr: addr, judged: log, counts: map[string]int{}}
					r.run(rc.cases)
					r.report()
					if r.counts["reached the app"] == 0 {
						t.Errorf("no request reached the app")
					}
				})
			}
		})
	}
}
