// Package demo runs ckanops' embedded default: simulated CKAN sites, each
// behind a real gate on loopback, with light synthetic traffic, and a
// sites.toml for the console pointing at them. Everything lives in one
// temporary directory that Close removes.
//
// It is for `ckanops demo` and for tests; it must never listen on anything
// but loopback.
package demo

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/ckanops/ckanops/config"
	"github.com/ckanops/ckanops/gate"
	"github.com/ckanops/ckanops/internal/ckansim"
	"github.com/ckanops/ckanops/runbook"
)

// Options shape a demo.
type Options struct {
	Sites   int  // how many sites; default 3
	Traffic bool // send synthetic reads and writes
	// Backends starts a throwaway Postgres and Redis for the sites' checks
	// and snapshots, when the machine has them (see Demo.Notes).
	Backends bool
	Logger   *slog.Logger  // nil: discard
	Pace     time.Duration // mean time between synthetic requests per site; default 300ms
}

// Site is one simulated site and its gate.
type Site struct {
	Name    string
	GateURL string
	CKANURL string
	Sim     *ckansim.Sim
	Gate    *gate.Gate
}

// Demo is a running demo.
type Demo struct {
	Dir       string // the temporary directory holding everything
	SitesFile string // sites.toml for the console
	Token     string // the ops token of every demo gate
	Sites     []*Site
	// InfoURL serves GET /sites: every site's URLs and what reached its
	// simulated CKAN (requests, writes), for end-to-end tests that drive
	// the demo from outside its process.
	InfoURL string
	// Notes say what the demo could not set up (a missing Postgres or
	// Redis), for its banner.
	Notes []string
	// Kept is set by Close when it left Dir in place because a runbook
	// took a snapshot there.
	Kept bool

	cancel   context.CancelFunc
	wg       sync.WaitGroup
	closers  []func()
	backends backends
}

var siteNames = []string{"data-city", "open-env", "stats-office", "transport", "health-data", "archive"}

// Start brings up the demo. Call Close to stop it and remove its files.
func Start(ctx context.Context, o Options) (*Demo, error) {
	if o.Sites <= 0 {
		o.Sites = 3
	}
	if o.Sites > 50 {
		return nil, errors.New("demo: at most 50 sites")
	}
	if o.Pace <= 0 {
		o.Pace = 300 * time.Millisecond
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	dir, err := os.MkdirTemp("", "ckanops-demo-")
	if err != nil {
		return nil, fmt.Errorf("demo: %w", err)
	}
	ctx, cancel := context.WithCancel(ctx)
	d := &Demo{Dir: dir, cancel: cancel}
	d.closers = append(d.closers, func() {
		// Snapshots an operator took are kept: the demo says where.
		if d.snapshotsTaken() {
			d.Kept = true
			return
		}
		os.RemoveAll(dir)
	})
	if err := d.start(ctx, o); err != nil {
		d.Close()
		return nil, err
	}
	return d, nil
}

func (d *Demo) start(ctx context.Context, o Options) error {
	if o.Backends {
		if err := d.startBackends(); err != nil {
			return err
		}
		d.Notes = d.backends.notes
	}
	tok := make([]byte, 32) // as openssl rand -hex 32: config.CheckOpsToken wants 32 characters at least
	crand.Read(tok)
	d.Token = hex.EncodeToString(tok)
	tokenFile := filepath.Join(d.Dir, "ops.token")
	if err := os.WriteFile(tokenFile, []byte(d.Token+"\n"), 0o600); err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	var toml strings.Builder
	toml.WriteString("# ckanops demo: simulated CKAN sites behind real gates on loopback.\n[console]\nrefresh = \"2s\"\n")
	for i := 0; i < o.Sites; i++ {
		name := siteNames[i%len(siteNames)]
		if i >= len(siteNames) {
			name = fmt.Sprintf("%s-%d", name, i/len(siteNames)+1)
		}
		s, err := d.startSite(ctx, name, i, o)
		if err != nil {
			return err
		}
		d.Sites = append(d.Sites, s)
		fmt.Fprintf(&toml, "\n[[site]]\nname = %q\nurl = %q\ntoken_file = %q\n", s.Name, s.GateURL, tokenFile)
	}
	info, err := d.serve(http.HandlerFunc(d.serveInfo))
	if err != nil {
		return err
	}
	d.InfoURL = info
	d.SitesFile = filepath.Join(d.Dir, "sites.toml")
	if err := os.WriteFile(d.SitesFile, []byte(toml.String()), 0o600); err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	return nil
}

func (d *Demo) startSite(ctx context.Context, name string, i int, o Options) (*Site, error) {
	// The sites take turns at the embedded surfaces: 2.11, 2.12, 2.10.
	version := [...]string{"2.11", "2.12", "2.10"}[i%3]
	sim, err := ckansim.New(ckansim.Options{Version: version, SiteTitle: titleOf(name), WriteLatency: 1500 * time.Millisecond})
	if err != nil {
		return nil, err
	}
	simURL, err := d.serve(sim)
	if err != nil {
		return nil, err
	}
	store, err := gate.OpenFileStore(filepath.Join(d.Dir, name, "state.json"))
	if err != nil {
		return nil, err
	}
	d.closers = append(d.closers, func() { store.Close() })
	audit, err := gate.OpenAuditLog(filepath.Join(d.Dir, name, "audit.jsonl"))
	if err != nil {
		return nil, err
	}
	d.closers = append(d.closers, func() { audit.Close() })
	up, _ := url.Parse(simURL)
	storage, err := seedStorage(filepath.Join(d.Dir, name, "storage"), i)
	if err != nil {
		return nil, err
	}
	checks := config.ChecksConfig{StoragePath: storage}
	checks, err = d.backends.checksFor(ctx, name, i, checks)
	if err != nil {
		return nil, err
	}
	g, err := gate.New(ctx, gate.Options{
		Site: name, SiteTitle: titleOf(name), Upstream: up, Store: store, Audit: audit,
		OpsToken: d.Token, Surface: sim.Surface(), Logger: o.Logger.With("site", name), GateID: name + "-web1",
		Checks: checks,
	})
	if err != nil {
		return nil, err
	}
	ln, gateURL, err := d.listen()
	if err != nil {
		return nil, err
	}
	// The gate runs its runbook: snapshots go to the demo's directory.
	rsite, err := g.RunbookSite(gateURL)
	if err != nil {
		return nil, err
	}
	snaps := filepath.Join(d.Dir, name, "snapshots")
	if err := os.MkdirAll(snaps, 0o750); err != nil {
		return nil, fmt.Errorf("demo: %w", err)
	}
	eng, err := runbook.Open(runbook.Options{
		Site: rsite, JournalDir: filepath.Join(d.Dir, name, "runbook"), Holder: name + "-web1",
		Snapshot: config.SnapshotConfig{Dir: snaps, PGDump: d.backends.pgDump(), StoragePath: storage, Keep: 3},
		Checks:   checks, Migrate: demoMigrate, Drain: 2 * time.Minute, Logger: o.Logger.With("site", name),
	})
	if err != nil {
		return nil, err
	}
	g.AttachRunbook(eng)
	d.serveOn(ln, g)
	d.closers = append(d.closers, func() { eng.Close() }) // before the server stops: ends event streams
	s := &Site{Name: name, GateURL: gateURL, CKANURL: simURL, Sim: sim, Gate: g}
	if o.Traffic {
		d.wg.Add(1)
		go func() {
			defer d.wg.Done()
			traffic(ctx, s, o.Pace)
		}()
	}
	return s, nil
}

// SiteInfo is one site as GET InfoURL/sites shows it.
type SiteInfo struct {
	Name     string `json:"name"`
	GateURL  string `json:"gate_url"`
	CKANURL  string `json:"ckan_url"`
	Requests int    `json:"requests"` // requests that reached the simulated CKAN
	Writes   int    `json:"writes"`   // of which writes
}

func (d *Demo) serveInfo(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/sites" || r.Method != http.MethodGet {
		http.NotFound(w, r)
		return
	}
	out := make([]SiteInfo, len(d.Sites))
	for i, s := range d.Sites {
		out[i] = SiteInfo{Name: s.Name, GateURL: s.GateURL, CKANURL: s.CKANURL, Requests: len(s.Sim.Journal()), Writes: len(s.Sim.Writes())}
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(out)
}

// serve runs h on a loopback port until Close.
func (d *Demo) serve(h http.Handler) (string, error) {
	ln, u, err := d.listen()
	if err != nil {
		return "", err
	}
	d.serveOn(ln, h)
	return u, nil
}

// listen takes a loopback port.
func (d *Demo) listen() (net.Listener, string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, "", fmt.Errorf("demo: %w", err)
	}
	return ln, "http://" + ln.Addr().String(), nil
}

// serveOn serves h on ln until Close.
func (d *Demo) serveOn(ln net.Listener, h http.Handler) {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	d.closers = append(d.closers, func() {
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	})
}

// demoMigrate is the demo's [[migrate]]: a migration that takes a few
// seconds and says what it does, as `ckan db upgrade` would.
var demoMigrate = []config.Command{{
	Name:    "db upgrade (simulated)",
	Argv:    []string{"sh", "-c", "for r in 3f2c1a9b 7d8e4b21 c0ffee42; do echo \"Running upgrade $r\"; sleep 1; done; echo 'Database at head'"},
	Timeout: config.Duration{Duration: time.Minute},
	Mode:    "read-only",
}}

// seedStorage writes a small CKAN-like storage tree (uploaded resources
// and a group logo).
func seedStorage(dir string, i int) (string, error) {
	files := map[string]string{
		"resources/3f2/c1a/9b-44d1-8f0e-1a2b3c4d5e6f":      "year,pm10,no2\n2023,19,31\n2024,17,29\n",
		"resources/7d8/e4b/21-5c6d-4e7f-8a9b-0c1d2e3f4a5b": strings.Repeat("stop_id,lat,lon\n", 50+i),
		"storage/uploads/group/logo.svg":                   "<svg xmlns='http://www.w3.org/2000/svg'/>\n",
	}
	for name, body := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o750); err != nil {
			return "", fmt.Errorf("demo: %w", err)
		}
		if err := os.WriteFile(p, []byte(body), 0o640); err != nil {
			return "", fmt.Errorf("demo: %w", err)
		}
	}
	return dir, nil
}

// snapshotsTaken reports whether a runbook left a snapshot in the demo's
// directory.
func (d *Demo) snapshotsTaken() bool {
	m, _ := filepath.Glob(filepath.Join(d.Dir, "*", "snapshots", "*", "manifest.json"))
	return len(m) > 0
}

// Close stops the traffic, the gates and the sites, and removes the files,
// unless a snapshot was taken: then the directory stays and Kept says so.
func (d *Demo) Close() {
	d.cancel()
	d.wg.Wait()
	for i := len(d.closers) - 1; i >= 0; i-- {
		d.closers[i]()
	}
}

func titleOf(name string) string {
	words := strings.Split(name, "-")
	for i, w := range words {
		words[i] = strings.ToUpper(w[:1]) + w[1:]
	}
	return strings.Join(words, " ") + " Portal"
}

// traffic sends what a quiet CKAN site sees: mostly page views, searches
// and API reads, now and then a dataset edit (slow, so a drain shows).
func traffic(ctx context.Context, s *Site, pace time.Duration) {
	client := &http.Client{Timeout: 10 * time.Second}
	reads := []string{"/", "/dataset/", "/dataset/air-quality-2024", "/organization/", "/api/3/action/package_search?q=air",
		"/api/3/action/status_show", "/api/3/action/package_show?id=bus-stops", "/group/"}
	n := 0
	for {
		wait := time.Duration(rand.Int64N(int64(2 * pace)))
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		n++
		var req *http.Request
		if n%7 == 0 {
			body := fmt.Sprintf(`{"id": "air-quality-2024", "notes": "Updated by the demo at %s"}`, time.Now().Format(time.TimeOnly))
			req, _ = http.NewRequestWithContext(ctx, "POST", s.GateURL+"/api/3/action/package_patch", strings.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Authorization", ckansim.SysadminToken)
		} else {
			req, _ = http.NewRequestWithContext(ctx, "GET", s.GateURL+reads[rand.IntN(len(reads))], nil)
		}
		res, err := client.Do(req)
		if err != nil {
			continue
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
	}
}
