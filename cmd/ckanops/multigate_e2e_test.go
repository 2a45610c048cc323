package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ckanops/ckanops/internal/ckansim"
	"github.com/ckanops/ckanops/internal/testpg"
	"github.com/ckanops/ckanops/internal/testredis"
)

// roundRobin is a load balancer as a site's would be: each request to the
// next gate, and to the one after when a gate refuses the connection
// (nginx's proxy_next_upstream error). Streams are passed on as they come.
type roundRobin struct {
	gates []*url.URL
	next  atomic.Uint64

	mu   sync.Mutex
	hits map[string]int // requests answered, by gate
}

func (rr *roundRobin) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	start := int(rr.next.Add(1))
	for i := range rr.gates {
		g := rr.gates[(start+i)%len(rr.gates)]
		out := r.Clone(r.Context())
		out.URL.Scheme, out.URL.Host, out.Host, out.RequestURI = g.Scheme, g.Host, g.Host, ""
		out.Body = io.NopCloser(bytes.NewReader(body))
		res, err := http.DefaultTransport.RoundTrip(out)
		var op *net.OpError
		if errors.As(err, &op) && op.Op == "dial" {
			continue // that gate is down: the next one
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		rr.mu.Lock()
		rr.hits[g.Host]++
		rr.mu.Unlock()
		defer res.Body.Close()
		for k, v := range res.Header {
			w.Header()[k] = v
		}
		w.WriteHeader(res.StatusCode)
		rc := http.NewResponseController(w)
		buf := make([]byte, 32<<10)
		for {
			n, err := res.Body.Read(buf)
			if n > 0 {
				if _, werr := w.Write(buf[:n]); werr != nil {
					return
				}
				_ = rc.Flush()
			}
			if err != nil {
				return
			}
		}
	}
	http.Error(w, "no gate answers", http.StatusBadGateway)
}

// TestRunbookThroughABalancerOfThreeGates runs a whole runbook through a
// round-robin balancer in front of three gate processes sharing Redis:
// start, confirmations and events all land on whichever gate. The gate
// running it is killed (SIGKILL) in the middle of the snapshot's pg_dump;
// another gate shows the runbook interrupted, and a resume through the
// balancer finishes it with a consistent snapshot.
func TestRunbookThroughABalancerOfThreeGates(t *testing.T) {
	rd := testredis.Start(t)
	pg := testpg.Start(t)
	dbURL := pg.CreateDB(t, "ckan")
	if out, err := exec.Command(filepath.Join(pg.BinDir(), "psql"), dbURL, "-c", "CREATE TABLE package (id text); INSERT INTO package VALUES ('a')").CombinedOutput(); err != nil {
		t.Fatalf("psql: %v\n%s", err, out)
	}
	sim, err := ckansim.New(ckansim.Options{})
	if err != nil {
		t.Fatal(err)
	}
	up := httptest.NewServer(sim)
	t.Cleanup(up.Close)

	dir := t.TempDir()
	storage := filepath.Join(dir, "storage", "resources", "abc")
	os.MkdirAll(storage, 0o755)
	os.WriteFile(filepath.Join(storage, "data.csv"), []byte("a,b\n1,2\n"), 0o644)
	os.Mkdir(filepath.Join(dir, "snapshots"), 0o750)
	os.WriteFile(filepath.Join(dir, "ops.token"), []byte(e2eToken+"\n"), 0o600)
	// pg_dump hangs while the flag is there, after saying who runs it.
	flag := filepath.Join(dir, "hang")
	os.WriteFile(flag, nil, 0o600)
	dumpPid := filepath.Join(dir, "pg_dump.pid")
	wrapper := filepath.Join(dir, "pg_dump")
	os.WriteFile(wrapper, []byte(fmt.Sprintf("#!/bin/sh\nif [ -e %s ]; then echo $$ $PPID > %s; sleep 60; fi\nexec %s \"$@\"\n",
		flag, dumpPid, filepath.Join(pg.BinDir(), "pg_dump"))), 0o755)

	type gateProc struct {
		url  string
		cmd  *exec.Cmd
		logs *syncBuffer
	}
	gates := make([]*gateProc, 3)
	rr := &roundRobin{hits: map[string]int{}}
	for i := range gates {
		listen := freePort(t)
		conf := filepath.Join(dir, fmt.Sprintf("gate-%d.toml", i))
		os.WriteFile(conf, []byte(fmt.Sprintf(`site = "e2e"
listen = %q
upstream = %q

[state]
file = "state-%d/e2e.state.json"
redis_url = %q

[auth]
ops_token_file = "ops.token"

[checks]
ckan_db = %q
storage_path = "storage"

[snapshot]
dir = "snapshots"
pg_dump = %q

[runbook]
poll_interval = "50ms"
lease = "2s"

[gate]
shutdown_timeout = "5s"

[[migrate]]
name = "schema"
argv = ["sh", "-c", "echo migrating on $CKANOPS_SITE"]
`, listen, up.URL, i, rd.URL(), dbURL, wrapper)), 0o600)
		g := &gateProc{url: "http://" + listen, logs: &syncBuffer{}}
		g.cmd = exec.Command(binPath, "gate", "--config", conf)
		g.cmd.Stdout, g.cmd.Stderr = g.logs, g.logs
		if err := g.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		cmd := g.cmd
		t.Cleanup(func() {
			if cmd.ProcessState == nil {
				cmd.Process.Kill()
				cmd.Wait()
			}
		})
		gates[i] = g
		u, _ := url.Parse(g.url)
		rr.gates = append(rr.gates, u)
	}
	allLogs := func() string {
		var b strings.Builder
		for i, g := range gates {
			fmt.Fprintf(&b, "--- gate %d (%s):\n%s\n", i, g.url, g.logs)
		}
		return b.String()
	}
	for _, g := range gates {
		waitUp(t, g.url, allLogs)
	}
	lb := httptest.NewServer(rr)
	t.Cleanup(lb.Close)
	s := &site{t: t, dir: dir, gateURL: lb.URL, sites: filepath.Join(dir, "sites.toml")}
	os.WriteFile(s.sites, []byte(fmt.Sprintf("[[site]]\nname = \"e2e\"\nurl = %q\ntoken_file = \"ops.token\"\n", lb.URL)), 0o600)

	// Start through the balancer and confirm enable; the snapshot hangs
	// in pg_dump on the gate that runs the runbook.
	type result struct {
		code      int
		out, errb string
	}
	first := make(chan result, 1)
	go func() {
		code, out, errb := s.cliIn("e2e\n", "runbook", "--message", "Upgrading", "e2e")
		first <- result{code, out, errb}
	}()
	var pid, holderPid int
	for deadline := time.Now().Add(45 * time.Second); ; {
		b, _ := os.ReadFile(dumpPid)
		if _, err := fmt.Sscan(string(b), &pid, &holderPid); err == nil && holderPid > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the snapshot's pg_dump never ran\n%s", allLogs())
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Cleanup(func() { syscall.Kill(pid, syscall.SIGKILL) })
	// pg_dump's parent is the gate (the runbook runs it directly).
	var holder *gateProc
	for _, g := range gates {
		if g.cmd.Process.Pid == holderPid {
			holder = g
		}
	}
	if holder == nil {
		t.Fatalf("pg_dump (%d) was started by %d, none of the gates", pid, holderPid)
	}
	if err := holder.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	holder.cmd.Wait()
	syscall.Kill(pid, syscall.SIGKILL)
	os.Remove(flag)

	// The attached CLI, whose stream went through the balancer, sees the
	// runbook interrupted by another gate, and ends with what to do.
	var r result
	select {
	case r = <-first:
	case <-time.After(60 * time.Second):
		t.Fatalf("the attached CLI did not end after its gate died\n%s", allLogs())
	}
	if r.code != exitFail || !strings.Contains(r.out+r.errb, "interrupted") || !strings.Contains(r.out+r.errb, "--resume") {
		t.Fatalf("the attached CLI: exit %d\n%s\n%s\n%s", r.code, r.out, r.errb, allLogs())
	}
	// Every remaining gate answers the runbook, interrupted at the snapshot.
	for _, g := range gates {
		if g == holder {
			continue
		}
		req, _ := http.NewRequest("GET", g.url+"/-/ckanops/runbook", nil)
		req.Header.Set("Authorization", "Bearer "+e2eToken)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != 200 || !strings.Contains(string(b), `"state":"interrupted"`) || !strings.Contains(string(b), `"step":"snapshot"`) {
			t.Fatalf("gate %s: %d %s", g.url, res.StatusCode, b)
		}
	}

	// Resumed through the balancer: the snapshot is taken again, migrate
	// and disable are confirmed, and the runbook ends consistent.
	code, out, errb := s.cliIn("e2e\ny\n", "runbook", "--resume", "e2e")
	if code != 0 {
		t.Fatalf("resume: exit %d\n%s\n%s\n%s", code, out, errb, allLogs())
	}
	for _, want := range []string{"[interrupted]", "[resumed]", "migrating on e2e", "DONE"} {
		if !strings.Contains(out, want) {
			t.Errorf("the resumed run's output lacks %q:\n%s", want, out)
		}
	}
	m := snapshotLine.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no consistent snapshot:\n%s", out)
	}
	if code, vout, _ := s.cli("snapshot", "verify", m[1]); code != 0 || !strings.Contains(vout, "verdict: consistent") {
		t.Fatalf("verify: %d\n%s", code, vout)
	}
	if code, sout, _ := s.cli("status", "--json", "e2e"); code != 0 || !strings.Contains(sout, `"mode": "live"`) {
		t.Fatalf("after the runbook: %d %s", code, sout)
	}
	// Both live gates answered the CLI's calls.
	rr.mu.Lock()
	defer rr.mu.Unlock()
	for _, g := range gates {
		if g != holder && rr.hits[strings.TrimPrefix(g.url, "http://")] == 0 {
			t.Errorf("gate %s never answered through the balancer: %v", g.url, rr.hits)
		}
	}
}

// waitUp waits until a gate answers.
func waitUp(t *testing.T, u string, logs func() string) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); {
		res, err := http.Get(u + "/-/ckanops/status")
		if err == nil {
			res.Body.Close()
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("the gate %s did not come up\n%s", u, logs())
}
