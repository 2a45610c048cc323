package gate

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ckanops/ckanops/api"

	"github.com/ckanops/ckanops/internal/ckansim"
	"github.com/ckanops/ckanops/internal/testredis"
)

// cluster is several gates of one site sharing a Redis, in front of one
// simulated CKAN.
type cluster struct {
	t     *testing.T
	redis *testredis.Server
	sim   *ckansim.Sim
	up    *httptest.Server
	gates map[string]*member
}

type member struct {
	id     string
	gate   *Gate
	srv    *httptest.Server
	cancel context.CancelFunc
	done   chan struct{}
	local  *FileStore
	store  *RedisStore
	dir    string
}

const syncEvery = 100 * time.Millisecond

func newCluster(t *testing.T, ids ...string) *cluster {
	sim, err := ckansim.New(ckansim.Options{})
	if err != nil {
		t.Fatal(err)
	}
	c := &cluster{t: t, redis: testredis.Start(t), sim: sim, up: httptest.NewServer(sim), gates: map[string]*member{}}
	t.Cleanup(c.up.Close)
	for _, id := range ids {
		c.start(id, t.TempDir())
	}
	return c
}

func (c *cluster) start(id, dir string) *member {
	t := c.t
	t.Helper()
	local, err := OpenFileStore(filepath.Join(dir, "site.state.json"))
	if err != nil {
		t.Fatal(err)
	}
	rs, err := OpenRedisStore(c.redis.URL(), "multi")
	if err != nil {
		t.Fatal(err)
	}
	up, _ := url.Parse(c.up.URL)
	g, err := New(context.Background(), Options{
		Site: "multi", Upstream: up, Store: rs, Local: local, OpsToken: opsToken,
		GateID: id, SyncInterval: syncEvery,
	})
	if err != nil {
		local.Close()
		rs.Close()
		t.Fatalf("gate %s: %v", id, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	m := &member{id: id, gate: g, srv: httptest.NewServer(g), cancel: cancel, done: make(chan struct{}), local: local, store: rs, dir: dir}
	go func() { defer close(m.done); g.Sync(ctx) }()
	c.gates[id] = m
	t.Cleanup(m.stop)
	return m
}

// stop kills the member: no more heartbeats, its listener closed.
func (m *member) stop() {
	if m.srv == nil {
		return
	}
	m.cancel()
	<-m.done
	m.srv.Close()
	m.store.Close()
	m.local.Close()
	m.srv = nil
}

func (m *member) post(t *testing.T, path, body string, hdr ...string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("POST", m.srv.URL+path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

func (m *member) setMode(t *testing.T, body string) (int, string) {
	return m.post(t, "/-/ckanops/mode", body, "Authorization", "Bearer "+opsToken)
}

func (m *member) write(t *testing.T) int {
	code, _ := m.post(t, "/api/3/action/package_create", `{"name": "x-`+m.id+`", "owner_org": "demo-org"}`, "Authorization", ckansim.SysadminToken)
	return code
}

func (m *member) status(t *testing.T) api.Status {
	t.Helper()
	req, _ := http.NewRequest("GET", m.srv.URL+"/-/ckanops/status", nil)
	req.Header.Set("Authorization", "Bearer "+opsToken)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var st api.Status
	json.NewDecoder(res.Body).Decode(&st)
	return st
}

func TestRedisSwitchThroughOneGateIsEnforcedByAll(t *testing.T) {
	c := newCluster(t, "a", "b", "c")
	code, body := c.gates["a"].setMode(t, `{"mode": "read-only", "message": "snapshot"}`)
	if code != 200 {
		t.Fatalf("set through a: %d %s", code, body)
	}
	for _, id := range []string{"b", "c"} {
		g := c.gates[id].gate
		waitFor(t, "gate "+id+" to apply read-only", func() bool { return g.Mode().Mode == api.ModeReadOnly })
	}
	c.sim.ResetJournal()
	if code := c.gates["c"].write(t); code != 503 {
		t.Fatalf("write through c after the switch through a: %d", code)
	}
	if n := len(c.sim.Writes()); n != 0 {
		t.Fatalf("%d writes reached CKAN", n)
	}
	// Every live gate reports the version: applied 3/3.
	waitFor(t, "all gates to heartbeat version 1", func() bool {
		st := c.gates["a"].status(t)
		applied, live, _ := st.Applied()
		return applied == 3 && live == 3
	})
}

func TestRedisConcurrentChangesThroughTwoGatesOneWins(t *testing.T) {
	c := newCluster(t, "a", "b")
	for round := 0; round < 5; round++ {
		v := c.gates["a"].gate.Mode().Version
		waitFor(t, "b to catch up", func() bool { return c.gates["b"].gate.Mode().Version == v })
		mode := []string{"read-only", "live"}[round%2]
		var wg sync.WaitGroup
		codes := make([]int, 2)
		for i, id := range []string{"a", "b"} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				codes[i], _ = c.gates[id].setMode(t, fmt.Sprintf(`{"mode": %q, "reason": "from %s", "expect_version": %d}`, mode, id, v))
			}()
		}
		wg.Wait()
		if !(codes[0] == 200 && codes[1] == 409 || codes[0] == 409 && codes[1] == 200) {
			t.Fatalf("round %d: statuses %v, want exactly one 200 and one 409", round, codes)
		}
		waitFor(t, "both gates at the winner's version", func() bool {
			return c.gates["a"].gate.Mode().Version == v+1 && c.gates["b"].gate.Mode().Version == v+1
		})
	}
}

func TestRedisOutageKeepsEveryGateReadOnly(t *testing.T) {
	c := newCluster(t, "a", "b", "c")
	if code, body := c.gates["a"].setMode(t, `{"mode": "read-only"}`); code != 200 {
		t.Fatalf("%d %s", code, body)
	}
	for _, m := range c.gates {
		waitFor(t, m.id+" read-only", func() bool { return m.gate.Mode().Mode == api.ModeReadOnly })
	}
	c.redis.Kill(t)
	for _, m := range c.gates {
		waitFor(t, m.id+" to see the store down", func() bool { ok, _ := m.gate.storeState.get(); return !ok })
	}
	c.sim.ResetJournal()
	// For the whole outage (several sync periods), every gate refuses writes.
	for i := 0; i < 5; i++ {
		for _, m := range c.gates {
			if code := m.write(t); code != 503 {
				t.Fatalf("gate %s let a write through during the outage: %d", m.id, code)
			}
		}
		time.Sleep(syncEvery)
	}
	if n := len(c.sim.Writes()); n != 0 {
		t.Fatalf("%d writes reached CKAN during the outage", n)
	}
	st := c.gates["b"].status(t)
	if st.Store == nil || st.Store.OK || st.Store.StaleSince == nil || st.Mode != api.ModeReadOnly {
		t.Fatalf("status during the outage: %+v", st)
	}
	m := c.gates["b"].gate.metrics
	if !strings.Contains(scrape(t, c.gates["b"]), "ckanops_store_ok 0") || m == nil {
		t.Fatal("metrics do not show the store as stale")
	}
	// Mode changes are refused while the store is down: no split brain.
	if code, body := c.gates["a"].setMode(t, `{"mode": "live"}`); code != 503 {
		t.Fatalf("mode change during the outage: %d %s", code, body)
	}
	if c.gates["a"].gate.Mode().Mode != api.ModeReadOnly {
		t.Fatal("a refused change reopened writes")
	}
}

func scrape(t *testing.T, m *member) string {
	req, _ := http.NewRequest("GET", m.srv.URL+"/-/ckanops/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+opsToken)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return string(b)
}

func TestRedisRestartedEmptyKeepsTheWindow(t *testing.T) {
	c := newCluster(t, "a", "b", "c")
	c.gates["a"].setMode(t, `{"mode": "read-only", "message": "long upgrade"}`)
	c.gates["b"].setMode(t, `{"mode": "read-only", "message": "long upgrade, step 2"}`)
	for _, m := range c.gates {
		waitFor(t, m.id+" at version 2", func() bool { return m.gate.Mode().Version == 2 })
	}
	c.redis.Kill(t)
	c.redis.Restart(t) // empty: it keeps nothing on disk
	for _, m := range c.gates {
		waitFor(t, m.id+" to reconnect", func() bool { ok, _ := m.gate.storeState.get(); return ok })
	}
	rec, ok, err := c.gates["c"].store.Load(context.Background())
	if err != nil || !ok || rec.Version != 2 || rec.Mode != api.ModeReadOnly || rec.Message != "long upgrade, step 2" {
		t.Fatalf("store after the restart: %+v ok=%v err=%v", rec, ok, err)
	}
	for _, m := range c.gates {
		if code := m.write(t); code != 503 {
			t.Fatalf("gate %s: write after Redis restarted empty: %d", m.id, code)
		}
	}
	// The version goes on from 2, never reset.
	code, body := c.gates["c"].setMode(t, `{"mode": "live", "expect_version": 2}`)
	if code != 200 || !strings.Contains(body, `"version":3`) {
		t.Fatalf("change after the restart: %d %s", code, body)
	}
}

func TestRedisGateStartedDuringOutageUsesLocalState(t *testing.T) {
	c := newCluster(t, "a")
	c.gates["a"].setMode(t, `{"mode": "down", "message": "db upgrade"}`)
	dir := c.gates["a"].dir
	c.gates["a"].stop()
	c.redis.Kill(t)
	m := c.start("a2", dir) // same local state file, Redis down
	if got := m.gate.Mode(); got.Mode != api.ModeDown || got.Version != 1 {
		t.Fatalf("gate started during the outage: %+v", got)
	}
	if ok, _ := m.gate.storeState.get(); ok {
		t.Fatal("store reported healthy while down")
	}
	// Without a local state file it refuses to start rather than guess.
	if _, err := New(context.Background(), Options{Site: "multi", Upstream: m.gate.opts.Upstream, Store: m.store,
		Local: mustFileStore(t, filepath.Join(t.TempDir(), "s.json")), OpsToken: opsToken}); err == nil || !strings.Contains(err.Error(), "will not guess") {
		t.Fatalf("gate with neither store nor local state: %v", err)
	}
}

func mustFileStore(t *testing.T, path string) *FileStore {
	s, err := OpenFileStore(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestRedisStoppedGateShownAsGone(t *testing.T) {
	c := newCluster(t, "a", "b", "c")
	waitFor(t, "three gates", func() bool { return len(c.gates["a"].status(t).Gates) == 3 })
	c.gates["c"].stop()
	waitFor(t, "c shown as gone", func() bool {
		for _, g := range c.gates["a"].status(t).Gates {
			if g.ID == "c" {
				return g.Gone
			}
		}
		return false
	})
	c.gates["a"].setMode(t, `{"mode": "read-only"}`)
	waitFor(t, "applied 2/2 live gates", func() bool {
		applied, live, lagging := c.gates["a"].status(t).Applied()
		return applied == 2 && live == 2 && len(lagging) == 0
	})
}
