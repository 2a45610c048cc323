package ckansim

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/ckanops/ckanops/internal/surface"
)

// Options configures a Sim. The zero value simulates CKAN 2.11 with site id
// "default" and no added latency.
type Options struct {
	Version      string        // "2.11" (default), "2.12" or "2.10": one of surface.Versions
	SiteID       string        // default "default"
	SiteTitle    string        // default "CKAN Demo"
	Latency      time.Duration // added to every request
	WriteLatency time.Duration // added to requests that write (slow writes, to show drains)
	Logger       *slog.Logger  // nil: discard
	// RootPath simulates a site mounted below "/" (ckan.root_path =
	// "/data/{{LANG}}" behind a web server that serves it at /data/):
	// "/data" answers CKAN's routes under /data (and /data/<locale>),
	// CKAN's 404 page everywhere else, and puts the prefix in every link,
	// form action and redirect it builds. "" or "/": none.
	RootPath string
	// Extensions adds the actions of CKAN extensions (extensions.go):
	// "harvest" for ckanext-harvest's. Their actions answer as CKAN's
	// action view answers any: a GET on one that is not side_effect_free
	// gets 400 "Please use POST method" and never runs.
	Extensions []string
	// SiteURLWithRootPath makes status_show's site_url end in the root
	// path ("http://host/data"). CKAN's documentation says ckan.site_url
	// must not include the mount point, so by default it does not; CKAN
	// works either way (it takes only the scheme and host of site_url
	// when it builds a URL), and some sites set it so. The action API's
	// "help" URL always includes the root path, as CKAN builds it with
	// url_for(_external=True).
	SiteURLWithRootPath bool
}

// API tokens of the two seeded users. They look like CKAN's JWT tokens but
// their signatures are not checked: ckansim only compares them.
const (
	// SysadminToken belongs to user "admin", a sysadmin.
	SysadminToken = "eyJ0eXAiOiJKV1QiLCJhbGciOiJIUzI1NiJ9.eyJqdGkiOiJja2Fuc2ltLWFkbWluLXRva2VuIiwiaWF0IjoxNzM1Njg5NjAwfQ.ozAsD-I-nDcFmVUOHAC-yksS3ckWkfUbB4v7TZ4bIFU"
	// EditorToken belongs to user "editor", an editor of organization
	// "demo-org" and not a sysadmin.
	EditorToken = "eyJ0eXAiOiJKV1QiLCJhbGciOiJIUzI1NiJ9.eyJqdGkiOiJja2Fuc2ltLWVkaXRvci10b2tlbiIsImlhdCI6MTczNTY4OTYwMH0.E-aaA-K5fRx0uTs_nnpgEM1GzKlez1OjRLnpBjGuPdQ"
)

// Sim is a simulated CKAN site. It is an http.Handler; all its methods are
// safe for concurrent use.
type Sim struct {
	surface     *surface.Surface
	ckanVersion string   // e.g. "2.11.5", from the surface data's header
	plugins     []string // ckan.plugins, from the surface data's header
	siteID      string
	root        string // Options.RootPath: "/data", or "" for none
	siteURLRoot bool   // Options.SiteURLWithRootPath
	log         *slog.Logger
	cat         *catalogue
	pages       *pages
	journal     journal
	sessions    sessions

	mu           sync.Mutex
	latency      time.Duration
	writeLatency time.Duration
	failures     int // how many of the next requests fail
	failStatus   int
}

// New builds a Sim for opts.Version from the embedded surface data and the
// seed catalogue.
func New(opts Options) (*Sim, error) {
	if opts.Version == "" {
		opts.Version = "2.11"
	}
	if opts.SiteID == "" {
		opts.SiteID = "default"
	}
	if opts.SiteTitle == "" {
		opts.SiteTitle = "CKAN Demo"
	}
	if opts.Latency < 0 || opts.WriteLatency < 0 {
		return nil, fmt.Errorf("ckansim: negative latency (%v, %v)", opts.Latency, opts.WriteLatency)
	}
	root, err := checkRootPath(opts.RootPath)
	if err != nil {
		return nil, err
	}
	sf, err := surface.Load(opts.Version)
	if err != nil {
		return nil, fmt.Errorf("ckansim: %w", err)
	}
	if err := addExtensions(sf, opts.Extensions); err != nil {
		return nil, err
	}
	ckanVersion, plugins, err := dataHeader(sf.Version)
	if err != nil {
		return nil, err
	}
	cat, err := loadSeed(opts.SiteID, opts.SiteTitle)
	if err != nil {
		return nil, err
	}
	pg, err := loadPages()
	if err != nil {
		return nil, err
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Sim{
		surface:      sf,
		ckanVersion:  ckanVersion,
		plugins:      plugins,
		siteID:       opts.SiteID,
		root:         root,
		siteURLRoot:  opts.SiteURLWithRootPath,
		log:          logger,
		cat:          cat,
		pages:        pg,
		sessions:     sessions{byID: map[string]*session{}},
		latency:      opts.Latency,
		writeLatency: opts.WriteLatency,
	}, nil
}

// checkRootPath checks Options.RootPath and returns it without a trailing
// slash ("" for none).
func checkRootPath(p string) (string, error) {
	p = strings.TrimSuffix(p, "/")
	if p == "" {
		return "", nil
	}
	if !strings.HasPrefix(p, "/") || strings.ContainsAny(p, "?#%\\ \t{}") {
		return "", fmt.Errorf("ckansim: root path %q: want a plain path such as /data", p)
	}
	for _, seg := range strings.Split(p[1:], "/") {
		if seg == "" || seg == "." || seg == ".." {
			return "", fmt.Errorf("ckansim: root path %q: empty or dot segment", p)
		}
	}
	return p, nil
}

// RootPath returns the root path the Sim serves under ("/data"), or "".
func (s *Sim) RootPath() string { return s.root }

// dataHeader reads the CKAN version and plugin list off the first line of
// the surface's actions.tsv ("# CKAN 2.11.5; plugins: a b c; ...").
func dataHeader(version string) (ckanVersion string, plugins []string, err error) {
	b, err := surface.VersionFile(version, "actions.tsv")
	if err != nil {
		return "", nil, fmt.Errorf("ckansim: %w", err)
	}
	line, _, _ := bytes.Cut(b, []byte("\n"))
	for _, part := range strings.Split(strings.TrimPrefix(string(line), "#"), ";") {
		part = strings.TrimSpace(part)
		if v, ok := strings.CutPrefix(part, "CKAN "); ok {
			if f := strings.Fields(v); len(f) > 0 {
				ckanVersion = release(f[0])
			}
		}
		if v, ok := strings.CutPrefix(part, "plugins:"); ok {
			plugins = strings.Fields(v)
		}
	}
	if ckanVersion == "" || plugins == nil {
		return "", nil, fmt.Errorf("ckansim: %s actions.tsv: no CKAN version or plugins in header %q", version, line)
	}
	return ckanVersion, plugins, nil
}

// release is the release a pre-release's facts stand for: the 2.12 data
// was read off 2.12.0b0 ("# CKAN 2.12.0b0 (branch dev-v2.12, ...)"), and
// ckansim simulates 2.12.0, so status_show reports "2.12.0".
func release(v string) string {
	for i := 0; i < len(v); i++ {
		if c := v[i]; c != '.' && (c < '0' || c > '9') {
			return v[:i]
		}
	}
	return v
}

// Surface returns the surface data the Sim was built from.
func (s *Sim) Surface() *surface.Surface { return s.surface }

// Journal returns a copy of every request received, in order.
func (s *Sim) Journal() []Entry { return s.journal.entries(false) }

// Writes returns the journal entries with Write set.
func (s *Sim) Writes() []Entry { return s.journal.entries(true) }

// ResetJournal forgets every recorded request.
func (s *Sim) ResetJournal() { s.journal.reset() }

// SetLatency changes the latency added to every request and, on top of it,
// to requests that write.
func (s *Sim) SetLatency(all, write time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.latency, s.writeLatency = max(all, 0), max(write, 0)
}

// FailNext makes the next n requests fail with status (500: CKAN's own error
// page; 502, 503, 504: the page nginx shows when uwsgi is gone or
// overloaded). Nothing is run for a failed request.
func (s *Sim) FailNext(n int, status int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failures, s.failStatus = max(n, 0), status
}

func (s *Sim) takeFailure() (status int, fail bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failures == 0 {
		return 0, false
	}
	s.failures--
	return s.failStatus, true
}

func (s *Sim) delay(write bool) time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	if write {
		return s.latency + s.writeLatency
	}
	return s.latency
}

// statusClientClosed is recorded for a request whose client went away
// while the Sim was still waiting out its latency (nginx's convention).
const statusClientClosed = 499

// ServeHTTP answers one request as CKAN would and records it.
func (s *Sim) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	e := Entry{
		Time:   time.Now(),
		Method: r.Method,
		Path:   r.URL.Path,
		Remote: r.RemoteAddr,
		Header: r.Header.Clone(),
	}
	rw := newResponse(w, r)
	if status, fail := s.takeFailure(); fail {
		p := s.journal.begin(e)
		s.serveFailure(rw, status)
		s.answered(p, e, rw)
		return
	}
	x := s.newExchange(rw, r, &e)
	e.Write = x.wouldWrite()
	p := s.journal.begin(e)
	e.Write = false
	defer func() { s.answered(p, e, rw) }()
	x.serve()
}

// answered completes a request's journal entry.
func (s *Sim) answered(p place, e Entry, rw *response) {
	rw.finish()
	e.Status = rw.status
	s.journal.finish(p, e)
	s.log.Debug("ckansim", "method", e.Method, "path", e.Path, "endpoint", e.Endpoint,
		"action", e.Action, "status", e.Status, "write", e.Write)
}

// sleep waits for d or until ctx is done, whichever comes first.
func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
