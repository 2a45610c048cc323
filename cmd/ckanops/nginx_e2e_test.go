package main

// End-to-end through nginx: the files shipped in deploy/nginx/ (only their
// ports and paths replaced), run by the system's nginx as a child process,
// in front of two gate processes, each in front of its own simulated CKAN.
// This is the A/B upgrade's traffic switch as docs/deploy.md describes it.

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ckanops/ckanops/config"
	"github.com/ckanops/ckanops/gate"
	"github.com/ckanops/ckanops/internal/ckansim"
	"github.com/ckanops/ckanops/internal/throwaway"
)

// deployDir is the repository's deploy/ directory (tests run in
// cmd/ckanops).
var deployDir = filepath.Join("..", "..", "deploy")

// publicHost is the server_name of deploy/nginx/ckan.conf: the test sends
// it as Host and as the TLS server name.
const publicHost = "data.example.org"

// nginxBinary finds nginx, or skips the test (fails it when CI=true, as
// internal/testpg does for PostgreSQL).
func nginxBinary(t *testing.T) string {
	t.Helper()
	if _, err := os.Stat("/usr/sbin/nginx"); err == nil {
		return "/usr/sbin/nginx" // Debian's, outside a non-root PATH
	}
	if p, err := exec.LookPath("nginx"); err == nil {
		return p
	}
	msg := "nginx not found (/usr/sbin/nginx or PATH): apt-get install nginx"
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// newTitledSite is newSite with a site name of its own and a simulated
// CKAN whose site_title tells the two sides apart. Its gate trusts nginx
// (127.0.0.1) as a proxy, as docs/deploy.md says to. state is added to
// [state], extra after [gate].
func newTitledSite(t *testing.T, name, title, state, extra string) *site {
	sim, err := ckansim.New(ckansim.Options{SiteTitle: title})
	if err != nil {
		t.Fatal(err)
	}
	up := httptest.NewServer(sim)
	t.Cleanup(up.Close)
	dir := t.TempDir()
	listen := freePort(t)
	s := &site{t: t, sim: sim, dir: dir, gateURL: "http://" + listen}
	must(t, os.WriteFile(filepath.Join(dir, "ops.token"), []byte(e2eToken+"\n"), 0o600))
	s.gateConf = filepath.Join(dir, "gate.toml")
	must(t, os.WriteFile(s.gateConf, []byte(fmt.Sprintf(`site = %q
listen = %q
upstream = %q

[state]
file = "state/%s.state.json"
%s
[auth]
ops_token_file = "ops.token"

[policy]
trusted_proxies = ["127.0.0.1/32"]

[gate]
shutdown_timeout = "5s"
site_title = %q
%s`, name, listen, up.URL, name, state, title, extra)), 0o600))
	s.sites = filepath.Join(dir, "sites.toml")
	must(t, os.WriteFile(s.sites, []byte(fmt.Sprintf("[[site]]\nname = %q\nurl = %q\ntoken_file = \"ops.token\"\n", name, s.gateURL)), 0o600))
	return s
}

func (s *site) addr() string { return strings.TrimPrefix(s.gateURL, "http://") }

// mustCLI runs the CLI and fails the test unless it exits 0.
func (s *site) mustCLI(args ...string) string {
	s.t.Helper()
	code, out, errOut := s.cli(args...)
	if code != 0 {
		s.t.Fatalf("ckanops %s: exit %d\n%s\n%s", strings.Join(args, " "), code, out, errOut)
	}
	return out
}

// testNginx is one nginx master process with its own prefix directory:
// configuration, pid file, logs and temporary files all live in dir.
type testNginx struct {
	t         *testing.T
	bin, dir  string
	wrapper   string // runs bin with this instance's -p, -c and -g, then its own arguments
	switchDir string // the test's /etc/nginx/ckanops
	https     string // 127.0.0.1:port of ckan.conf's TLS server
	http      string // 127.0.0.1:port of its port-80 redirect
	client    *http.Client
	proc      *throwaway.Process
}

// newTestNginx lays out a prefix directory shaped like Debian's /etc/nginx:
// a main nginx.conf (the test's own: logs, temporary paths and the worker
// user) that includes conf.d/*.conf and sites-enabled/*.conf, where the
// shipped files go. It also makes the TLS certificate ckan.conf names.
func newTestNginx(t *testing.T, bin string) *testNginx {
	dir := t.TempDir()
	for _, d := range []string{"conf.d", "sites-enabled", "ckanops", "tmp", "tls"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if strings.ContainsAny(dir, "'\" ;\\") {
		t.Fatalf("temporary directory %q cannot be written into nginx.conf", dir)
	}
	ng := &testNginx{t: t, bin: bin, dir: dir, switchDir: filepath.Join(dir, "ckanops"),
		https: freePort(t), http: freePort(t)}

	// When the master runs as root its workers drop to nobody, who may not
	// enter the test's temporary directories (mode 0700): keep them root.
	user := ""
	if os.Geteuid() == 0 {
		user = "user root;"
	}
	main := fmt.Sprintf(`# The test's main configuration, in place of Debian's /etc/nginx/nginx.conf.
%[2]s
worker_processes 1;
events { worker_connections 256; }
http {
    access_log %[1]s/access.log;
    client_body_temp_path %[1]s/tmp/body;
    proxy_temp_path %[1]s/tmp/proxy;
    fastcgi_temp_path %[1]s/tmp/fastcgi;
    uwsgi_temp_path %[1]s/tmp/uwsgi;
    scgi_temp_path %[1]s/tmp/scgi;
    include %[1]s/conf.d/*.conf;
    include %[1]s/sites-enabled/*.conf;
}
`, dir, user)
	nginxWriteFile(t, filepath.Join(dir, "nginx.conf"), main, 0o644)
	wrapper := fmt.Sprintf("#!/bin/sh\nexec '%s' -p '%s/' -c '%s/nginx.conf' -g 'daemon off; pid %s/nginx.pid; error_log stderr notice;' \"$@\"\n",
		bin, dir, dir, dir)
	ng.wrapper = filepath.Join(dir, "nginx")
	nginxWriteFile(t, ng.wrapper, wrapper, 0o755)

	certPEM, keyPEM, cert := selfSignedCert(t, publicHost)
	nginxWriteFile(t, filepath.Join(dir, "tls", "fullchain.pem"), certPEM, 0o644)
	nginxWriteFile(t, filepath.Join(dir, "tls", "privkey.pem"), keyPEM, 0o600)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	ng.client = &http.Client{
		Timeout: 15 * time.Second,
		Transport: &http.Transport{
			TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: publicHost},
			// A fresh connection per request: after a reload the answer
			// comes from the new workers, never an old worker's idle
			// connection.
			DisableKeepAlives: true,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}

	// The server block, as shipped.
	ng.install("sites-enabled/ckan.conf", "nginx/ckan.conf",
		"listen 80;", "listen "+ng.http+";",
		"listen 443 ssl http2;", "listen "+ng.https+" ssl http2;",
		"/etc/letsencrypt/live/data.example.org/", dir+"/tls/",
	)
	return ng
}

// install renders a file shipped in deploy/ into the prefix directory,
// replacing each old string with its new one. Every old string must occur
// in the file, and no /etc/ path may be left: a change to the shipped file
// fails the test instead of going untested.
func (ng *testNginx) install(to, from string, oldNew ...string) {
	t := ng.t
	t.Helper()
	b, err := os.ReadFile(filepath.Join(deployDir, from))
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	for i := 0; i+1 < len(oldNew); i += 2 {
		if !strings.Contains(s, oldNew[i]) {
			t.Fatalf("deploy/%s no longer holds %q: update the test with the file", from, oldNew[i])
		}
		s = strings.ReplaceAll(s, oldNew[i], oldNew[i+1])
	}
	for _, line := range strings.Split(s, "\n") {
		if l := strings.TrimSpace(line); !strings.HasPrefix(l, "#") && strings.Contains(l, "/etc/") {
			t.Fatalf("deploy/%s: %q still names a system path after substitution", from, l)
		}
	}
	nginxWriteFile(t, filepath.Join(ng.dir, to), s, 0o644)
}

// installSwitch installs the explicit A/B switch of deploy/nginx/ckanops-switch.
func (ng *testNginx) installSwitch(a, b *site) {
	sw := "/etc/nginx/ckanops/"
	to := ng.switchDir + "/"
	ng.install("conf.d/ckanops-upstream.conf", "nginx/ckanops-switch/switch.conf", sw, to)
	ng.install("ckanops/active.conf", "nginx/ckanops-switch/active.conf", sw, to)
	ng.install("ckanops/ckan_a.conf", "nginx/ckanops-switch/ckan_a.conf", "127.0.0.1:8080", a.addr())
	ng.install("ckanops/ckan_b.conf", "nginx/ckanops-switch/ckan_b.conf", "127.0.0.1:8081", b.addr())
}

// start runs the nginx master (not as a daemon) and waits until the TLS
// server answers.
func (ng *testNginx) start() {
	t := ng.t
	t.Helper()
	if out, err := exec.Command(ng.wrapper, "-t").CombinedOutput(); err != nil {
		t.Fatalf("nginx -t: %v\n%s", err, out)
	}
	p, err := throwaway.StartProcess(exec.Command(ng.wrapper), filepath.Join(ng.dir, "nginx.log"))
	if err != nil {
		t.Fatal(err)
	}
	ng.proc = p
	t.Cleanup(func() {
		if err := p.Stop(syscall.SIGQUIT, 10*time.Second); err != nil {
			t.Errorf("stopping nginx: %v", err)
		}
	})
	err = p.WaitReady(15*time.Second, 20*time.Millisecond, func() error {
		res, err := ng.do("GET", "/-/ckanops/status", nil, nil)
		if err != nil {
			return err
		}
		if res.code != 200 {
			return fmt.Errorf("status %d", res.code)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("nginx did not come up: %v\n%s", err, p.Log())
	}
}

type nginxAnswer struct {
	code   int
	header http.Header
	body   []byte
}

// do sends one request to ckan.conf's TLS server, as a client of the
// public site would.
func (ng *testNginx) do(method, path string, body io.Reader, header map[string]string) (nginxAnswer, error) {
	req, err := http.NewRequest(method, "https://"+ng.https+path, body)
	if err != nil {
		return nginxAnswer{}, err
	}
	req.Host = publicHost
	for k, v := range header {
		req.Header.Set(k, v)
	}
	res, err := ng.client.Do(req)
	if err != nil {
		return nginxAnswer{}, err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	return nginxAnswer{res.StatusCode, res.Header, b}, err
}

func (ng *testNginx) mustDo(method, path string, body io.Reader, header map[string]string) nginxAnswer {
	ng.t.Helper()
	a, err := ng.do(method, path, body, header)
	if err != nil {
		ng.t.Fatalf("%s %s through nginx: %v\n%s", method, path, err, ng.log())
	}
	return a
}

func (ng *testNginx) log() string {
	if ng.proc == nil {
		return ""
	}
	return "nginx's log:\n" + ng.proc.Log()
}

// siteTitle asks the site which CKAN answers: status_show's site_title.
func (ng *testNginx) siteTitle() (string, error) {
	a, err := ng.do("GET", "/api/3/action/status_show", nil, nil)
	if err != nil {
		return "", err
	}
	var env struct {
		Success bool `json:"success"`
		Result  struct {
			SiteTitle string `json:"site_title"`
		} `json:"result"`
	}
	if a.code != 200 || json.Unmarshal(a.body, &env) != nil || !env.Success {
		return "", fmt.Errorf("status_show: %d %s", a.code, a.body)
	}
	return env.Result.SiteTitle, nil
}

// waitSiteTitle polls until the site answers with title: a reload takes
// effect when nginx's new workers start, after `nginx -s reload` returns.
func (ng *testNginx) waitSiteTitle(title string) {
	ng.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	var got string
	var err error
	for time.Now().Before(deadline) {
		if got, err = ng.siteTitle(); err == nil && got == title {
			return
		}
		time.Sleep(25 * time.Millisecond)
	}
	ng.t.Fatalf("the site never answered as %q (last: %q, %v)\n%s", title, got, err, ng.log())
}

// write tries package_create through nginx as the sysadmin.
func (ng *testNginx) write(name string) nginxAnswer {
	ng.t.Helper()
	return ng.mustDo("POST", "/api/3/action/package_create",
		strings.NewReader(fmt.Sprintf(`{"name": %q, "owner_org": "demo-org"}`, name)),
		map[string]string{"Authorization": ckansim.SysadminToken, "Content-Type": "application/json"})
}

// switchTo runs the shipped ckanops-switch script against this nginx.
func (ng *testNginx) switchTo(args ...string) string {
	ng.t.Helper()
	cmd := exec.Command("sh", append([]string{filepath.Join(deployDir, "nginx", "ckanops-switch", "ckanops-switch")}, args...)...)
	cmd.Env = append(os.Environ(), "CKANOPS_SWITCH_DIR="+ng.switchDir, "CKANOPS_NGINX="+ng.wrapper)
	out, err := cmd.CombinedOutput()
	if err != nil {
		ng.t.Fatalf("ckanops-switch %s: %v\n%s\n%s", strings.Join(args, " "), err, out, ng.log())
	}
	if strings.Contains(string(out), "invalid socket number") {
		ng.t.Errorf("ckanops-switch %s passed NGINX on to nginx:\n%s", strings.Join(args, " "), out)
	}
	return strings.TrimSpace(string(out))
}

// TestNginxSwitchesBetweenGates runs the A/B upgrade's traffic switch:
// site A goes read-only, its stand-in B is read-only, traffic moves to B
// while A is upgraded (a request in flight on A finishes there), then back
// to A, and A reopens writes.
func TestNginxSwitchesBetweenGates(t *testing.T) {
	bin := nginxBinary(t)
	a := newTitledSite(t, "site-a", "Site A", "", "")
	b := newTitledSite(t, "site-b", "Site B (stand-in)", "", "")
	a.startGate()
	b.startGate()
	ng := newTestNginx(t, bin)
	ng.installSwitch(a, b)
	ng.start()

	// Live, on A: reads and writes reach A's CKAN with nginx's forwarding
	// headers; nothing reaches B's.
	ng.waitSiteTitle("Site A")
	if res := ng.write("written-through-nginx"); res.code != 200 {
		t.Fatalf("live write through nginx: %d %s", res.code, res.body)
	}
	if w := a.sim.Writes(); len(w) != 1 {
		t.Fatalf("A's CKAN has %d writes, want 1", len(w))
	} else if h := w[0].Header; h.Get("X-Forwarded-Proto") != "https" || !strings.Contains(h.Get("X-Forwarded-For"), "127.0.0.1") {
		t.Fatalf("forwarding headers that reached CKAN: %v", h)
	}
	for _, e := range clientRequests(a.sim) {
		if e.Header.Get("X-Forwarded-Proto") != "https" {
			t.Fatalf("%s %s reached CKAN without X-Forwarded-Proto: https", e.Method, e.Path)
		}
	}
	if n := len(clientRequests(b.sim)); n != 0 {
		t.Fatalf("B's CKAN got %d requests while A was active", n)
	}
	// Plain HTTP is sent to HTTPS.
	req, _ := http.NewRequest("GET", "http://"+ng.http+"/dataset?q=air", nil)
	req.Host = publicHost
	res, err := ng.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if loc := res.Header.Get("Location"); res.StatusCode != 301 || loc != "https://"+publicHost+"/dataset?q=air" {
		t.Fatalf("port 80: %d, Location %q", res.StatusCode, loc)
	}

	// The workflow: A goes read-only (then is snapshotted, not here); B,
	// built from the snapshot, is read-only before it gets any traffic.
	a.mustCLI("enable", "--message", "Upgrading to CKAN 2.11", "--for", "2h", "--wait", "site-a")
	b.mustCLI("enable", "--message", "A read-only copy while the site is upgraded", "--for", "2h", "--wait", "site-b")
	if res := ng.write("refused-by-a"); res.code != 503 {
		t.Fatalf("write through nginx, A read-only: %d %s", res.code, res.body)
	}

	// A slow read is in flight on A when the switch happens.
	a.sim.SetLatency(3*time.Second, 0)
	a.sim.ResetJournal()
	inflight := make(chan nginxAnswer, 1)
	go func() {
		res, err := ng.do("GET", "/api/3/action/package_show?id=air-quality-2024", nil, nil)
		if err != nil {
			res = nginxAnswer{code: -1, body: []byte(err.Error())}
		}
		inflight <- res
	}()
	for i := 0; len(clientRequests(a.sim)) == 0; i++ {
		if i == 500 {
			t.Fatal("the slow read never reached A's CKAN")
		}
		time.Sleep(10 * time.Millisecond)
	}

	// Switch to B, the documented way.
	if out := ng.switchTo("b"); !strings.Contains(out, "ckan_b") {
		t.Fatalf("ckanops-switch b said: %s", out)
	}
	select {
	case res := <-inflight:
		t.Fatalf("the slow read finished before the switch was made (%d): the test proves nothing", res.code)
	default:
	}
	ng.waitSiteTitle("Site B (stand-in)")
	if side := ng.switchTo(); side != "b" {
		t.Fatalf("ckanops-switch (no argument) says %q, want b", side)
	}
	// The read in flight on A finished there, after the reload: graceful.
	if res := <-inflight; res.code != 200 || !strings.Contains(string(res.body), `"air-quality-2024"`) {
		t.Fatalf("the read in flight during the switch: %d %s\n%s", res.code, res.body, ng.log())
	}
	a.sim.SetLatency(0, 0)

	// On B: every request reaches B's CKAN, none A's; a write is refused by
	// B's gate with CKAN's envelope and reaches no CKAN.
	a.sim.ResetJournal()
	b.sim.ResetJournal()
	for i := 0; i < 5; i++ {
		if title, err := ng.siteTitle(); err != nil || title != "Site B (stand-in)" {
			t.Fatalf("read %d on B: %q, %v", i, title, err)
		}
	}
	res2 := ng.write("refused-by-b")
	if res2.code != 503 || !strings.HasPrefix(res2.header.Get("Content-Type"), "application/json") || res2.header.Get("Retry-After") == "" {
		t.Fatalf("write through nginx on B: %d %v %s", res2.code, res2.header, res2.body)
	}
	var env struct {
		Success *bool `json:"success"`
		Error   struct {
			Type    string `json:"__type"`
			Message string `json:"message"`
			Mode    string `json:"mode"`
		} `json:"error"`
	}
	if err := json.Unmarshal(res2.body, &env); err != nil || env.Success == nil || *env.Success ||
		env.Error.Type != "Maintenance Error" || env.Error.Mode != "read-only" || !strings.Contains(env.Error.Message, "read-only copy") {
		t.Fatalf("B's refusal is not CKAN's envelope with B's message: %v\n%s", err, res2.body)
	}
	if n := len(clientRequests(a.sim)); n != 0 {
		t.Fatalf("A's CKAN got %d requests while B was active: %+v", n, clientRequests(a.sim))
	}
	if n := len(clientRequests(b.sim)); n != 5 {
		t.Fatalf("B's CKAN got %d requests, want the 5 reads (the write is refused by B's gate)", n)
	}
	if w := append(a.sim.Writes(), b.sim.Writes()...); len(w) != 0 {
		t.Fatalf("writes reached a CKAN during the upgrade: %+v", w)
	}

	// A is upgraded: back to A, still read-only until verified, then live.
	ng.switchTo("a")
	ng.waitSiteTitle("Site A")
	b.sim.ResetJournal()
	if res := ng.write("refused-by-a-again"); res.code != 503 {
		t.Fatalf("write through nginx, back on A (read-only): %d %s", res.code, res.body)
	}
	a.mustCLI("disable", "--reason", "upgrade verified", "site-a")
	if res := ng.write("after-the-upgrade"); res.code != 200 {
		t.Fatalf("write through nginx after disable: %d %s", res.code, res.body)
	}
	if w := a.sim.Writes(); len(w) != 1 || w[0].Action != "package_create" {
		t.Fatalf("A's CKAN has writes %+v since the switch back, want the one package_create after disable", w)
	}
	if n := len(clientRequests(b.sim)); n != 0 {
		t.Fatalf("B's CKAN got %d requests after the switch back to A", n)
	}

	// nginx stops gracefully (SIGQUIT) and said nothing alarming.
	if err := ng.proc.Stop(syscall.SIGQUIT, 10*time.Second); err != nil {
		t.Fatalf("nginx stop: %v\n%s", err, ng.log())
	}
	if l := ng.proc.Log(); strings.Contains(l, "[emerg]") || strings.Contains(l, "[alert]") || strings.Contains(l, "[crit]") {
		t.Fatalf("nginx logged a serious problem:\n%s", l)
	}
}

// TestNginxBackupUpstreamTakesOverOnlyWhenAStops runs the failover variant
// (deploy/nginx/ckanops-switch/failover.conf) and shows its caveat: a site
// in maintenance still answers, so B gets traffic only while A's gate is
// stopped.
func TestNginxBackupUpstreamTakesOverOnlyWhenAStops(t *testing.T) {
	bin := nginxBinary(t)
	a := newTitledSite(t, "site-a", "Site A", "", "")
	b := newTitledSite(t, "site-b", "Site B (stand-in)", "", "")
	a.startGate()
	b.startGate()
	ng := newTestNginx(t, bin)
	ng.install("conf.d/ckanops-upstream.conf", "nginx/ckanops-switch/failover.conf",
		"127.0.0.1:8080", a.addr(), "127.0.0.1:8081", b.addr())
	ng.start()
	ng.waitSiteTitle("Site A")

	a.mustCLI("enable", "--message", "Upgrading", "--wait", "site-a")
	b.mustCLI("enable", "--message", "A read-only copy", "--wait", "site-b")
	for i := 0; i < 3; i++ {
		if title, err := ng.siteTitle(); err != nil || title != "Site A" {
			t.Fatalf("A in read-only mode: read %d answered by %q (%v): it should stay on A", i, title, err)
		}
	}
	if res := ng.write("refused-by-a"); res.code != 503 {
		t.Fatalf("write, A read-only: %d", res.code)
	}
	if n := len(clientRequests(b.sim)); n != 0 {
		t.Fatalf("B's CKAN got %d requests while A's gate was up", n)
	}

	// Stopping A's gate sends traffic to B at once (A refuses connections).
	a.cmd.Process.Signal(syscall.SIGTERM)
	if err := a.cmd.Wait(); err != nil {
		t.Fatalf("gate A exit: %v\n%s", err, a.logs)
	}
	if title, err := ng.siteTitle(); err != nil || title != "Site B (stand-in)" {
		t.Fatalf("A's gate stopped: answered by %q (%v), want B\n%s", title, err, ng.log())
	}
	if res := ng.write("refused-by-b"); res.code != 503 {
		t.Fatalf("write on B: %d %s", res.code, res.body)
	}

	// A's gate back: nginx tries A again after fail_timeout.
	a.startGate()
	ng.waitSiteTitle("Site A")
}

// TestNginxOneGate runs deploy/nginx/upstream.conf (one gate) and checks
// what the gate learns through nginx: with trusted_proxies naming nginx,
// the client's own address (not nginx's, and not what the client claims
// in X-Forwarded-For) goes to the audit log; the mode is changed through
// the public URL with the ops token, as the console does.
func TestNginxOneGate(t *testing.T) {
	bin := nginxBinary(t)
	s := newTitledSite(t, "prod", "Example Open Data", "", "")
	s.startGate()
	ng := newTestNginx(t, bin)
	ng.install("conf.d/ckanops-upstream.conf", "nginx/upstream.conf", "127.0.0.1:8080", s.addr())
	// The client comes from 127.0.0.2: another address than nginx's.
	ng.client.Transport.(*http.Transport).DialContext = (&net.Dialer{
		LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)},
	}).DialContext
	ng.start()
	ng.waitSiteTitle("Example Open Data")

	res := ng.mustDo("POST", "/-/ckanops/mode",
		strings.NewReader(`{"mode": "read-only", "message": "Snapshot", "for": "30m", "reason": "through nginx"}`),
		map[string]string{"Authorization": "Bearer " + e2eToken, "Content-Type": "application/json",
			"X-Forwarded-For": "203.0.113.7"})
	if res.code != 200 {
		t.Fatalf("POST /-/ckanops/mode through nginx: %d %s", res.code, res.body)
	}
	b, err := os.ReadFile(filepath.Join(s.dir, "state", "audit.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	var rec struct {
		Event, To, Remote string
	}
	if err := json.Unmarshal(b, &rec); err != nil || rec.Event != "mode" || rec.To != "read-only" || rec.Remote != "127.0.0.2" {
		t.Fatalf("audit log (want the change, remote 127.0.0.2: the client, not nginx nor the forged X-Forwarded-For): %v\n%s", err, b)
	}
	if res := ng.write("refused"); res.code != 503 || !strings.Contains(string(res.body), `"Maintenance Error"`) {
		t.Fatalf("write through nginx, read-only: %d %s", res.code, res.body)
	}
	// An HTML page still comes through, with the gate's banner.
	page := ng.mustDo("GET", "/dataset/", nil, map[string]string{"Accept": "text/html"})
	if page.code != 200 || !strings.Contains(string(page.body), `role="status"`) {
		t.Fatalf("dataset page in read-only, through nginx: %d\n%.400s", page.code, page.body)
	}
}

// TestNginxDocShowsTheShippedFiles holds docs/deploy.md to deploy/nginx:
// every file the doc shows in an nginx block (a part that starts with a
// "# /etc/nginx/..." line) has the directives of a shipped file, and every
// shipped file is shown. Comments and white space do not count.
func TestNginxDocShowsTheShippedFiles(t *testing.T) {
	shipped := map[string]string{} // directives -> file
	err := filepath.WalkDir(filepath.Join(deployDir, "nginx"), func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".conf") {
			return err
		}
		b, err := os.ReadFile(path)
		shipped[nginxDirectives(string(b))] = path
		return err
	})
	if err != nil || len(shipped) < 7 {
		t.Fatalf("deploy/nginx: %v, %d files", err, len(shipped))
	}
	doc, err := os.ReadFile(filepath.Join("..", "..", "docs", "deploy.md"))
	if err != nil {
		t.Fatal(err)
	}
	shown := map[string]bool{}
	for _, block := range strings.Split(string(doc), "```nginx\n")[1:] {
		block, _, _ = strings.Cut(block, "```")
		var parts []string
		for _, line := range strings.SplitAfter(block, "\n") {
			if strings.HasPrefix(strings.TrimSpace(line), "# /etc/nginx/") {
				parts = append(parts, "")
			}
			if len(parts) > 0 {
				parts[len(parts)-1] += line
			}
		}
		for _, part := range parts {
			d := nginxDirectives(part)
			if _, ok := shipped[d]; !ok {
				t.Errorf("docs/deploy.md shows a file that deploy/nginx does not ship:\n%s", part)
			}
			shown[d] = true
		}
	}
	for d, path := range shipped {
		if !shown[d] {
			t.Errorf("docs/deploy.md does not show %s", path)
		}
	}
}

// nginxDirectives is an nginx file without comments, blank lines and
// indentation.
func nginxDirectives(s string) string {
	var out []string
	for _, line := range strings.Split(s, "\n") {
		line, _, _ = strings.Cut(line, "#")
		if line = strings.Join(strings.Fields(line), " "); line != "" {
			out = append(out, line)
		}
	}
	return strings.Join(out, "\n")
}

// TestDeployGateConfigLoads loads the gate.toml examples shipped in
// deploy/gate/ and deploy/docker/ (and shown in docs/deploy.md): no unknown
// key, no bad value.
func TestDeployGateConfigLoads(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join(deployDir, "gate", "*.toml"))
	docker, _ := filepath.Glob(filepath.Join(deployDir, "docker", "*.toml"))
	files = append(files, docker...)
	if len(files) < 3 {
		t.Fatalf("deploy/gate/*.toml and deploy/docker/*.toml: %v", files)
	}
	for _, f := range files {
		cfg, warns, err := config.LoadGate(f)
		if err != nil {
			t.Errorf("%s: %v", f, err)
			continue
		}
		for _, w := range warns {
			t.Logf("%s: warning: %s", f, w.Message)
		}
		if len(cfg.Policy.TrustedProxies) == 0 {
			t.Errorf("%s: no trusted_proxies: behind nginx the gate would see every client as nginx", f)
		}
	}
}

func nginxWriteFile(t *testing.T, path string, content string, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
}

// selfSignedCert makes a certificate for host and its key, in PEM.
func selfSignedCert(t *testing.T, host string) (certPEM, keyPEM string, cert *x509.Certificate) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: host},
		DNSNames:              []string{host},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err = x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})),
		string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder})), cert
}

// clientRequests is what reached CKAN from clients, through the gate: the
// gate's own requests (its version reads) left out.
func clientRequests(sim *ckansim.Sim) []ckansim.Entry {
	var out []ckansim.Entry
	for _, e := range sim.Journal() {
		if e.Header.Get("User-Agent") != gate.GateUserAgent {
			out = append(out, e)
		}
	}
	return out
}

// The switch script finds nginx in CKANOPS_NGINX, or in NGINX as before,
// and never passes NGINX on: nginx reads that variable itself (a binary
// upgrade's listening sockets) and complains at every run.
func TestSwitchScriptKeepsNGINXFromNginx(t *testing.T) {
	for _, variable := range []string{"CKANOPS_NGINX", "NGINX"} {
		t.Run(variable, func(t *testing.T) {
			dir := t.TempDir()
			record := filepath.Join(dir, "calls")
			fake := filepath.Join(dir, "fake-nginx")
			if err := os.WriteFile(fake, []byte("#!/bin/sh\necho \"$* NGINX=${NGINX-unset}\" >> "+record+"\n"), 0o755); err != nil {
				t.Fatal(err)
			}
			for _, side := range []string{"a", "b"} {
				if err := os.WriteFile(filepath.Join(dir, "ckan_"+side+".conf"), []byte("server 127.0.0.1:1;\n"), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			cmd := exec.Command("sh", filepath.Join(deployDir, "nginx", "ckanops-switch", "ckanops-switch"), "b")
			cmd.Env = append(os.Environ(), "CKANOPS_SWITCH_DIR="+dir, variable+"="+fake)
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("ckanops-switch b: %v\n%s", err, out)
			}
			b, err := os.ReadFile(record)
			if want := "-t -q NGINX=unset\n-s reload NGINX=unset\n"; err != nil || string(b) != want {
				t.Errorf("nginx ran as %q (%v), want %q", b, err, want)
			}
			if b, _ := os.ReadFile(filepath.Join(dir, "active.conf")); !strings.Contains(string(b), "ckan_b.conf") {
				t.Errorf("active.conf: %q", b)
			}
		})
	}
}
