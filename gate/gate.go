// Package gate is ckanops' reverse proxy in front of one CKAN web node. It
// enforces the site's mode (live, read-only, down), counts and drains the
// writes in flight, annotates pages in read-only mode, and serves the
// control API under /-/ckanops/ on the same listener.
//
// The gate is one http.Handler composed of small steps: classify (package
// classify), admit or refuse, forward (httputil.ReverseProxy), annotate
// (package annotate). In live mode it never touches a byte of a response.
// It must not log tokens or hold a request or response body in memory.
package gate

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ckanops/ckanops/api"

	"github.com/ckanops/ckanops/config"
	"github.com/ckanops/ckanops/gate/annotate"
	"github.com/ckanops/ckanops/gate/classify"
	"github.com/ckanops/ckanops/internal/surface"
	"github.com/ckanops/ckanops/runbook"
)

// Options configure a Gate. cmd/ckanops builds them from gate.toml.
type Options struct {
	Site      string
	SiteTitle string     // shown on refusal pages and banners; default Site
	Upstream  *url.URL   // CKAN's WSGI server
	Store     Store      // the mode record: a FileStore, or a SharedStore for several gates
	Local     *FileStore // with a SharedStore: the gate's last known record, on local disk
	Audit     *AuditLog
	OpsToken  string // compared in constant time; never logged

	Surface *surface.Surface // with CKANVersion "": the surface applied; default CKAN 2.11's
	// CKANVersion is [policy] ckan_version: "auto" follows CKAN's
	// version (WatchVersion), "2.11" pins that surface, "" applies
	// Surface (version.go).
	CKANVersion string
	// LearnedFile is [policy] learned_file: what CKAN said of actions the
	// surface does not know (actions.go). Empty: kept in memory only.
	LearnedFile string
	// RootPath is [gate] root_path: "/data" when CKAN is mounted there,
	// "/" none, "" learned from status_show (WatchVersion).
	RootPath       string
	Policy         classify.Policy
	BypassCIDRs    []netip.Prefix // clients served as in live while the site is down
	TrustedProxies []netip.Prefix // peers whose X-Forwarded-For is believed

	RetryAfter       time.Duration // Retry-After when no ETA is set; default 300s
	SysadminCacheTTL time.Duration // how long a CKAN token's sysadmin check is trusted; 0: 60s, negative: not cached
	UpstreamTimeout  time.Duration // response-header timeout towards CKAN; default 5m
	// UpstreamMaxConns bounds the connections to CKAN; requests beyond it
	// wait for one. CKAN's WSGI server runs far fewer requests at once, and
	// every connection costs the gate two goroutines and their buffers.
	// Default 256.
	UpstreamMaxConns int

	// Checks is gate.toml's [checks]: what GET /-/ckanops/health probes
	// besides the gate and CKAN, and the Redis of /-/ckanops/jobs/*.
	Checks config.ChecksConfig

	// InitialMode is the mode a site whose store holds no record starts in
	// (gate.toml's [state] initial_mode): read-only for a stand-in site
	// built from a snapshot. A record in the store always wins. Empty: live.
	InitialMode    api.Mode
	InitialMessage string

	GateID       string        // names this gate among the site's gates; default the host name
	SyncInterval time.Duration // with a SharedStore: how often to re-read and heartbeat; default 2s
	HeartbeatTTL time.Duration // a gate silent for longer is shown as gone; default 3 x SyncInterval

	// NoticePoll is how often the notice script of announced and
	// annotated pages polls the status ([gate] notice_poll); default 30s.
	NoticePoll time.Duration
	// Triggers are gate.toml's [[trigger]] (trigger.go); TriggerTick is
	// how often they look (default [checks] interval, else 15s);
	// TriggerLease, with several gates, makes one of them act (nil: this
	// gate alone, always acting).
	Triggers     []config.Trigger
	TriggerTick  time.Duration
	TriggerLease TriggerLease
	// ScheduleTick is how often RunSchedule looks for a window to start;
	// default 1s.
	ScheduleTick time.Duration

	Transport http.RoundTripper // default: a tuned http.Transport
	Logger    *slog.Logger
	Clock     func() time.Time
}

// Gate is the proxy. Create it with New; it is an http.Handler.
type Gate struct {
	opts       Options
	log        *slog.Logger
	clock      func() time.Time
	rules      atomic.Pointer[rules] // the classifier in force (version.go)
	surfaces   surfaces
	seen       seenActions // unknown actions seen in traffic (actions.go)
	learned    *learned    // actions learned from CKAN
	learnMu    sync.Mutex  // one learning at a time
	proxy      *httputil.ReverseProxy
	control    http.Handler
	state      *modeState
	changeMu   sync.Mutex // serialises mode changes made through this gate
	admins     *sysadminCache
	metrics    *metrics
	storeState storeHealth
	probes     healthProbes // the checks Runner, built on first use (health.go)
	trig       *triggers    // [[trigger]] states (trigger.go)
	runbook    atomic.Pointer[runbook.Engine]
	// runbookDown says why this gate could not open its runbook engine
	// (its journal or record): the runbook API answers 503 with it and the
	// gate probe fails, while the proxy and the mode go on.
	runbookDown atomic.Pointer[string]
	pending     atomic.Pointer[pendingChange] // a change answered as failed that may have run
}

// ctxKey carries per-request facts from ServeHTTP to the proxy hooks.
type ctxKey struct{}

type reqInfo struct {
	rec    Record
	action string // the CKAN action called, if any (status_show gains the window)
	start  time.Time
	remote string
	body   *bodyWatch // nil without a body
}

// New builds a gate and loads the mode from its store. A store that cannot
// be read stops the gate: it never guesses live.
func New(ctx context.Context, o Options) (*Gate, error) {
	if o.Upstream == nil || o.Upstream.Host == "" {
		return nil, errors.New("gate: upstream URL is required")
	}
	if o.Store == nil {
		return nil, errors.New("gate: a state store is required")
	}
	if err := config.CheckOpsToken(o.OpsToken); err != nil {
		return nil, fmt.Errorf("gate: %w; make one with: openssl rand -hex 32", err)
	}
	if o.SiteTitle == "" {
		o.SiteTitle = o.Site
	}
	if o.Surface == nil {
		o.Surface = surface.MustLoad("2.11")
	}
	if o.RetryAfter <= 0 {
		o.RetryAfter = 300 * time.Second
	}
	if o.SysadminCacheTTL == 0 {
		o.SysadminCacheTTL = 60 * time.Second
	}
	if o.UpstreamTimeout <= 0 {
		o.UpstreamTimeout = 5 * time.Minute
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Clock == nil {
		o.Clock = func() time.Time { return time.Now().UTC() }
	}
	if o.UpstreamMaxConns <= 0 {
		o.UpstreamMaxConns = 256
	}
	if o.Transport == nil {
		o.Transport = newTransport(o.UpstreamTimeout, o.UpstreamMaxConns)
	}
	if o.GateID == "" {
		o.GateID = hostname()
	}
	if o.NoticePoll <= 0 {
		o.NoticePoll = 30 * time.Second
	}
	if o.TriggerTick <= 0 {
		o.TriggerTick = cmp.Or(o.Checks.Interval.Duration, config.DefaultCheckInterval)
	}
	if o.ScheduleTick <= 0 {
		o.ScheduleTick = defaultScheduleTick
	}
	if o.SyncInterval <= 0 {
		o.SyncInterval = 2 * time.Second
	}
	if o.HeartbeatTTL <= 0 {
		o.HeartbeatTTL = 3 * o.SyncInterval
	}
	g := &Gate{opts: o, log: o.Logger.With("site", o.Site), clock: o.Clock, surfaces: surfaces{policy: o.Policy, given: o.Surface},
		trig: newTriggers(o.Triggers)}
	g.learned = loadLearned(o.LearnedFile)
	if err := g.learned.problem(); err != nil {
		g.log.Warn("learned actions not read: actions learned before stay refused until learned again", "file", o.LearnedFile, "err", err.Error())
	}
	if err := g.initialRules(); err != nil {
		return nil, fmt.Errorf("gate: policy: %w", err)
	}

	rec, storeOK, err := g.loadInitial(ctx)
	if err != nil {
		return nil, err
	}
	g.state = newModeState(rec)
	g.storeState.set(storeOK, g.clock())
	g.admins = newSysadminCache(o.Upstream, o.SysadminCacheTTL, g.clock)
	g.metrics = newMetrics(g)
	g.proxy = &httputil.ReverseProxy{
		Rewrite:        g.rewrite,
		Transport:      g.metrics.instrument(o.Transport),
		ModifyResponse: g.modifyResponse,
		ErrorHandler:   g.proxyError,
		ErrorLog:       slog.NewLogLogger(g.log.Handler(), slog.LevelWarn),
		BufferPool:     copyBuffers{},
	}
	g.control = g.controlMux()
	return g, nil
}

// loadInitial finds the mode to start in: the store's record; with a
// shared store that is down, or has lost its data, the local last known
// record. It never guesses live over a record it cannot read.
func (g *Gate) loadInitial(ctx context.Context) (rec Record, storeOK bool, err error) {
	o := g.opts
	_, shared := o.Store.(SharedStore)
	lctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	rec, ok, err := o.Store.Load(lctx)
	storeOK = err == nil
	if err != nil && !(shared && o.Local != nil) {
		return Record{}, false, err
	}
	if shared && o.Local != nil {
		local, lok, lerr := o.Local.Load(ctx)
		if lerr != nil {
			return Record{}, false, lerr
		}
		if err != nil {
			if !lok {
				return Record{}, false, fmt.Errorf("%v; and there is no local state file %s to start from: the gate will not guess the mode (start it when the store answers)", err, o.Local.Path())
			}
			g.log.Warn("state store unreachable: starting in the last known mode", "store", o.Store.Kind(), "mode", local.Mode, "version", local.Version, "err", err.Error())
			return local, false, nil
		}
		if lok && (!ok || local.Version > rec.Version) {
			g.log.Warn("the shared store's record is missing or older than the local one: starting in the local one", "mode", local.Mode, "version", local.Version)
			return local, true, nil // Sync writes it back
		}
	}
	if !ok {
		if o.InitialMode == "" || o.InitialMode == api.ModeLive {
			g.log.Info("no mode record yet: starting live", "store", o.Store.Kind())
			return initialRecord(g.clock()), true, nil
		}
		return g.startInInitialMode(ctx)
	}
	g.log.Info("mode restored", "mode", rec.Mode, "version", rec.Version, "since", rec.Since, "store", o.Store.Kind())
	return rec, true, nil
}

// startInInitialMode writes the configured initial mode as the store's
// first record (version 1), so that the console, the audit log and the
// other gates see it. If another gate wrote first, its record wins.
func (g *Gate) startInInitialMode(ctx context.Context) (Record, bool, error) {
	o := g.opts
	t := g.clock()
	rec := Record{Mode: o.InitialMode, Message: o.InitialMessage, Since: t, Version: 1,
		Actor: "gate.toml", Reason: "[state] initial_mode", Format: RecordFormat}
	if err := rec.validate(); err != nil {
		return Record{}, false, fmt.Errorf("gate: [state] initial_mode: %w", err)
	}
	wctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	err := o.Store.CompareAndSwap(wctx, 0, rec)
	var ce *ConflictError
	switch {
	case errors.As(err, &ce):
		g.log.Info("mode restored (written by another gate)", "mode", ce.Current.Mode, "version", ce.Current.Version)
		return ce.Current, true, nil
	case err != nil:
		return Record{}, false, fmt.Errorf("gate: write the initial mode %s: %w", rec.Mode, err)
	}
	g.audit(AuditEntry{Time: t, Event: "mode", Actor: rec.Actor, From: "", To: string(rec.Mode), Version: 1,
		Message: rec.Message, Reason: rec.Reason, Remote: "gate"})
	if o.Local != nil {
		if err := o.Local.Write(rec); err != nil {
			g.log.Warn("local state file not written", "err", err.Error())
		}
	}
	g.log.Info("no mode record yet: starting in [state] initial_mode", "mode", rec.Mode, "store", o.Store.Kind())
	return rec, true, nil
}

// copyBuffers recycles the buffers bodies are copied through, so that
// memory follows the requests in flight, not the requests served.
type copyBuffers struct{}

const copyBufferSize = 32 << 10

var copyBufferPool = sync.Pool{New: func() any { b := make([]byte, copyBufferSize); return &b }}

func (copyBuffers) Get() []byte { return *(copyBufferPool.Get().(*[]byte)) }

func (copyBuffers) Put(b []byte) {
	if cap(b) == copyBufferSize {
		b = b[:copyBufferSize]
		copyBufferPool.Put(&b)
	}
}

func newTransport(headerTimeout time.Duration, maxConns int) *http.Transport {
	return &http.Transport{
		Proxy:                 nil, // never send CKAN traffic through an environment proxy
		DialContext:           (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:          512,
		MaxIdleConnsPerHost:   maxConns,
		MaxConnsPerHost:       maxConns,
		IdleConnTimeout:       90 * time.Second,
		ResponseHeaderTimeout: headerTimeout,
		ExpectContinueTimeout: time.Second,
		DisableCompression:    true, // pass Accept-Encoding and bodies through untouched
	}
}

// Mode returns the record the gate enforces now.
func (g *Gate) Mode() Record { return g.state.current() }

// ServeHTTP is the gate: control API, or classify, admit or refuse, forward.
func (g *Gate) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := g.clock()
	if root := g.classifier().RootPath(); root != "" && strings.HasPrefix(r.URL.Path, root+controlPrefix) {
		// Clients that reach the site only under its prefix reach the
		// control API there too.
		r = r.Clone(r.Context())
		r.URL.Path = strings.TrimPrefix(r.URL.Path, root)
		r.URL.RawPath = ""
	}
	if strings.HasPrefix(r.URL.Path, controlPrefix) {
		g.metrics.request("control", "control")
		g.control.ServeHTTP(w, r)
		return
	}
	d := g.classifier().Classify(r.Method, r.Header, r.URL)
	if d.Action == "maintenance_mode_show" || d.Action == "maintenance_mode_update" {
		g.metrics.request("control", "control")
		g.serveMaintenanceAction(w, r, d.Action)
		return
	}
	g.sawAction(d.Action, false)
	remote := g.clientAddr(r)
	rec := g.state.current()

	bypass := false
	switch rec.Mode {
	case api.ModeDown:
		if !g.bypassed(remote) {
			g.refuse(w, r, rec, d, "down")
			return
		}
		bypass = true
	case api.ModeReadOnly:
		if d.Class == classify.Tracking {
			// Page-view analytics write to CKAN's database: swallow them.
			g.metrics.request(d.Class.String(), "tracking")
			w.WriteHeader(http.StatusNoContent)
			return
		}
	}

	ctx := r.Context()
	if !d.Pass() {
		// A write. Admit it only if the mode, read again under the lock
		// that mode switches take, still lets it through: then it is
		// either drained by a switch or refused after it. A tunnel
		// (protocol upgrade) is admitted in live mode only, and closed by
		// the switch away from it: it would carry writes unclassified.
		tunnel := isUpgrade(r)
		var closeTunnel func()
		if tunnel {
			var cancel context.CancelCauseFunc
			ctx, cancel = context.WithCancelCause(ctx)
			defer cancel(nil)
			closeTunnel = func() { cancel(errLeftLive) }
		}
		var done func(time.Time)
		rec, done = g.state.admitWrite(func(cur Record) bool {
			return cur.Mode == api.ModeLive || (cur.Mode == api.ModeDown && bypass && !tunnel)
		}, r.Method, r.URL.Path, remote, start, closeTunnel)
		if done == nil {
			g.refuse(w, r, rec, d, d.Reason)
			return
		}
		defer func() { done(g.clock()) }()
		if bypass {
			g.auditBypass(r, remote)
		}
	}
	outcome := "forwarded"
	if bypass {
		outcome = "bypass"
	}
	g.metrics.request(d.Class.String(), outcome)
	body := watchBody(r)
	ctx = context.WithValue(ctx, ctxKey{}, reqInfo{rec: rec, action: d.Action, start: start, remote: remote, body: body})
	g.proxy.ServeHTTP(w, r.WithContext(ctx))
}

// refuse answers a request the mode does not let through.
func (g *Gate) refuse(w http.ResponseWriter, r *http.Request, rec Record, d classify.Decision, why string) {
	g.sawAction(d.Action, true)
	t := g.clock()
	f := refusal{
		SiteTitle:  g.opts.SiteTitle,
		Heading:    "This site is in read-only maintenance",
		Message:    rec.Message,
		Mode:       rec.Mode,
		Until:      rec.Until,
		ETA:        formatETA(rec.Until, t),
		RetryAfter: rec.retryAfter(t, g.opts.RetryAfter),
		Status:     http.StatusServiceUnavailable,
	}
	if f.Message == "" {
		f.Message = defaultMessage
	}
	if rec.Mode == api.ModeDown {
		f.Heading = "This site is down for maintenance"
	}
	kind := "html"
	if g.classifier().IsAPI(r.URL, r.Header) {
		kind = "api"
		f.Help = g.helpURL(r, d.Action)
		writeAPIRefusal(w, f)
	} else {
		if isFormPost(r) && rec.Mode == api.ModeReadOnly {
			f.FormPost = true
			f.Fields = echoFields(r)
		}
		// The page learns when the maintenance is over (notice.js).
		f.Script = g.classifier().RootPath() + api.PathNoticeScript
		f.Poll = annotate.PollSeconds(g.opts.NoticePoll)
		f.Refused = "get"
		if r.Method == http.MethodPost {
			f.Refused = "post"
		}
		writeHTMLRefusal(w, f)
	}
	g.metrics.refusal(d.Class.String(), string(rec.Mode), kind)
	g.log.Debug("refused", "method", r.Method, "path", r.URL.Path, "mode", rec.Mode, "reason", why)
}

// rewrite prepares the outbound request: CKAN's address, the client's Host,
// and X-Forwarded-* so CKAN builds correct URLs. Forwarding headers from
// the client are believed only when the peer is a trusted proxy.
func (g *Gate) rewrite(pr *httputil.ProxyRequest) {
	pr.SetURL(g.opts.Upstream)
	pr.Out.Host = pr.In.Host
	if info, _ := pr.In.Context().Value(ctxKey{}).(reqInfo); info.action == "status_show" && (info.rec.Schedule != nil || info.rec.maintenance()) {
		// The answer gains the window (augmentStatusShow): ask for it
		// unencoded, so it can be read (it is a few hundred bytes).
		pr.Out.Header.Del("Accept-Encoding")
	}
	peer := peerAddr(pr.In)
	trusted := g.trusted(peer)
	// CKAN must route the request judged (forward.go): nothing that could
	// re-route it goes on, and no trailers follow the body.
	pr.Out.Trailer = nil
	if underscore, routing := scrubHeaders(pr.Out.Header, trusted); len(underscore)+len(routing) > 0 {
		g.metrics.droppedHeaders(len(underscore), len(routing))
		g.log.Debug("request headers dropped", "method", pr.In.Method, "path", pr.In.URL.Path,
			"underscore", underscore, "routing", routing)
	}
	if trusted {
		for _, h := range []string{"X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Host"} {
			if v, ok := pr.In.Header[h]; ok {
				pr.Out.Header[h] = v
			}
		}
		proto, host := pr.Out.Header.Get("X-Forwarded-Proto"), pr.Out.Header.Get("X-Forwarded-Host")
		pr.SetXForwarded() // appends the peer to X-Forwarded-For
		if proto != "" {
			pr.Out.Header.Set("X-Forwarded-Proto", proto)
		}
		if host != "" {
			pr.Out.Header.Set("X-Forwarded-Host", host)
		}
		return
	}
	pr.SetXForwarded()
}

// modifyResponse tells clients of the maintenance in the responses it
// lets through. In read-only mode it annotates HTML pages; while a
// planned window is announced (the site live) it puts the announcement
// on pages; in both, status_show gains result.maintenance and API
// responses the window header. Live without a window announced, and down
// (bypass), it returns at once: the response passes untouched.
func (g *Gate) modifyResponse(resp *http.Response) error {
	info, _ := resp.Request.Context().Value(ctxKey{}).(reqInfo)
	rec := info.rec
	var now time.Time
	announced := false
	switch rec.Mode {
	case api.ModeReadOnly:
		now = g.clock()
	case api.ModeLive:
		if rec.Schedule == nil {
			return nil
		}
		now = g.clock()
		if announced = rec.Schedule.Announcing(now); !announced {
			return nil
		}
	default:
		return nil
	}
	m := maintenanceOf(rec, now)
	if info.action == "status_show" {
		return augmentStatusShow(resp, m)
	}
	if !isHTML(resp.Header) {
		if info.action != "" || g.classifier().IsAPI(resp.Request.URL, resp.Request.Header) {
			resp.Header.Set(api.HeaderWindow, windowHeader(m))
		}
		return nil
	}
	if g.isDownload(resp.Request.URL.Path) {
		return nil
	}
	// A page with the maintenance banner must not outlive the maintenance
	// in a shared cache (nginx proxy_cache, a CDN).
	resp.Header.Set("Cache-Control", "no-store")
	base := resp.Request.URL
	opts := annotate.Options{
		Notice: annotate.Notice{
			SiteTitle: g.opts.SiteTitle,
			Message:   messageOr(rec.Message),
			Until:     rec.Until,
			Mode:      string(rec.Mode),
			Overrun:   m.Overrun,
		},
		WouldRefuse: func(method, action string) bool {
			return g.classifier().FormWouldBeRefused(method, action, base)
		},
		Script:     g.classifier().RootPath() + api.PathNoticeScript,
		ScriptPoll: g.opts.NoticePoll,
	}
	if announced {
		s := rec.Schedule
		opts.Notice.Message, opts.Notice.Until = s.Message, nil
		opts.Announce = &annotate.Window{At: s.At, End: s.End(), Mode: string(s.Mode), Message: s.Message}
	}
	known := resp.ContentLength > 0
	opts.Whole = known
	if err := annotate.Response(resp, opts); err != nil {
		return err
	}
	if known && resp.ContentLength == -1 {
		// Annotated: the length is no longer known, and httputil's
		// ReverseProxy flushes a response of unknown length after every
		// write, as it may be a stream. This one is not: upstream sent its
		// length, so it is a whole page, which the proxy forwards in live
		// mode without a flush until its end. Forward it the same way,
		// in reads as large as the proxy's buffer (opts.Whole): each
		// flushed chunk took three writes to the socket (a 52 KB page
		// nine, where live takes three; now five), and each response a
		// timer and a goroutine. A page of unknown length (a stream) is
		// still flushed as it goes.
		resp.ContentLength = wholeAnnotatedPage
	}
	return nil
}

// wholeAnnotatedPage is the ContentLength of an annotated page whose
// upstream length was known (modifyResponse): neither a length nor -1,
// the value for which ReverseProxy flushes after every write. The response
// goes out chunked all the same, as any response whose Content-Length
// header is gone; nothing else reads the field (TestAnnotatedPageFlushes).
const wholeAnnotatedPage = -2

// maintenanceOf is the window rec announces or is in at now.
func maintenanceOf(rec Record, now time.Time) api.Maintenance {
	if rec.maintenance() {
		return api.Maintenance{Active: true, Mode: rec.Mode, Message: rec.Message, Start: rec.Since, End: rec.Until, Overrun: rec.overrun(now)}
	}
	s := rec.Schedule
	end, from := s.End(), s.AnnounceFrom
	return api.Maintenance{Mode: s.Mode, Message: s.Message, Start: s.At, End: &end, AnnounceFrom: &from}
}

// windowHeader is the Ckanops-Maintenance-Window value for m:
// "mode=read-only; start=<RFC 3339>; end=<RFC 3339>; state=announced"
// (end left out when unknown; state announced, active or overrun).
func windowHeader(m api.Maintenance) string {
	h := "mode=" + string(m.Mode) + "; start=" + stamp(m.Start)
	if m.End != nil {
		h += "; end=" + stamp(*m.End)
	}
	switch {
	case m.Overrun:
		h += "; state=overrun"
	case m.Active:
		h += "; state=active"
	default:
		h += "; state=announced"
	}
	return h
}

// maxStatusShow bounds the status_show answer the gate rewrites; a
// larger one passes untouched.
const maxStatusShow = 1 << 20

// augmentStatusShow adds result.maintenance to CKAN's status_show answer,
// so API clients and harvesters learn of the window. Anything it cannot
// read as CKAN's JSON envelope (an error, another encoding, too large)
// passes as it came, with only the window header.
func augmentStatusShow(resp *http.Response, m api.Maintenance) error {
	resp.Header.Set(api.HeaderWindow, windowHeader(m))
	if resp.StatusCode != http.StatusOK || resp.Body == nil || resp.Body == http.NoBody ||
		(resp.Request != nil && resp.Request.Method == http.MethodHead) {
		return nil
	}
	if ce := resp.Header.Get("Content-Encoding"); ce != "" && !strings.EqualFold(ce, "identity") {
		return nil
	}
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxStatusShow+1))
	passThrough := func() error {
		resp.Body = readCloser{io.MultiReader(bytes.NewReader(raw), resp.Body), resp.Body}
		return nil
	}
	if err != nil || len(raw) > maxStatusShow {
		return passThrough()
	}
	var env map[string]json.RawMessage
	var result map[string]json.RawMessage
	if json.Unmarshal(raw, &env) != nil || json.Unmarshal(env["result"], &result) != nil || result == nil {
		return passThrough()
	}
	mj, _ := json.Marshal(m)
	result["maintenance"] = mj
	env["result"], _ = json.Marshal(result)
	out, err := json.Marshal(env)
	if err != nil {
		return passThrough()
	}
	resp.Body.Close()
	resp.Body = io.NopCloser(bytes.NewReader(out))
	resp.ContentLength = int64(len(out))
	resp.Header.Set("Content-Length", strconv.Itoa(len(out)))
	resp.Header.Del("Etag")
	resp.Header.Set("Cache-Control", "no-store")
	return nil
}

// readCloser reads from r and closes c.
type readCloser struct {
	io.Reader
	c io.Closer
}

func (r readCloser) Close() error { return r.c.Close() }

// isHTML reports whether a response is a page (the only kind annotated).
func isHTML(h http.Header) bool {
	ct := strings.TrimSpace(h.Get("Content-Type"))
	return len(ct) >= 9 && strings.EqualFold(ct[:9], "text/html")
}

// downloadEndpoints serve users' files: an uploaded HTML resource is data,
// not a page, and is never annotated.
var downloadEndpoints = map[string]bool{
	"dataset_resource.download": true, "resource.download": true, "datastore.dump": true,
	// CKAN 2.12's file storages (2.12/routes.tsv).
	"file.download": true, "file.trusted_download": true, "file.public_download": true,
}

// isDownload reports whether CKAN routes path (or path without a locale
// prefix), below the root path if any, to a download.
func (g *Gate) isDownload(path string) bool {
	r := g.rules.Load()
	if root := r.cl.RootPath(); root != "" {
		if rest, ok := strings.CutPrefix(path, root); ok && (rest == "" || rest[0] == '/') {
			path = cmp.Or(rest, "/")
		}
	}
	dl := downloadRoutesOf(r.sf)
	for _, p := range []string{path, dropFirstSegment(path)} {
		// The route CKAN picks is one of those that match: when no
		// download route does, it is no download, and the full lookup
		// (every route tried, a map for each match) is not needed.
		if !anyMatch(dl, p) {
			continue
		}
		if route, _, _, found := r.sf.Lookup(http.MethodGet, p); found && downloadEndpoints[route.Endpoint] {
			return true
		}
	}
	return false
}

// lastDownloadRoutes holds the download routes (routes to
// downloadEndpoints) of the surface last asked about: the surface in force
// changes rarely. One entry, so rebuilt surfaces are never kept.
var lastDownloadRoutes atomic.Pointer[downloadRouteSet]

type downloadRouteSet struct {
	sf     *surface.Surface
	routes []surface.Route
}

func downloadRoutesOf(sf *surface.Surface) []surface.Route {
	if d := lastDownloadRoutes.Load(); d != nil && d.sf == sf {
		return d.routes
	}
	d := &downloadRouteSet{sf: sf}
	for _, route := range sf.Routes {
		if downloadEndpoints[route.Endpoint] {
			d.routes = append(d.routes, route)
		}
	}
	lastDownloadRoutes.Store(d)
	return d.routes
}

func anyMatch(routes []surface.Route, path string) bool {
	for _, route := range routes {
		if _, ok := route.Match(path); ok {
			return true
		}
	}
	return false
}

func dropFirstSegment(p string) string {
	if i := strings.IndexByte(strings.TrimPrefix(p, "/"), '/'); i >= 0 {
		return p[i+1:]
	}
	return p
}

func messageOr(m string) string {
	if m == "" {
		return defaultMessage
	}
	return m
}

// proxyError answers when CKAN could not be reached or the response could
// not be relayed: a clear 502, never a Go error string.
func (g *Gate) proxyError(w http.ResponseWriter, r *http.Request, err error) {
	info, _ := r.Context().Value(ctxKey{}).(reqInfo)
	if berr := info.body.failed(); berr != nil {
		// The client's body broke off or was malformed: CKAN got a cut-off
		// request on a connection the transport then dropped, so it saved
		// nothing. The fault is the client's, not CKAN's.
		g.metrics.badBody()
		g.log.Info("malformed request body: the request was aborted upstream", "method", r.Method, "path", r.URL.Path,
			"remote", info.remote, "err", berr.Error())
		g.badRequest(w, r, "The request body was malformed or cut off ("+berr.Error()+"); nothing was saved. Send the request again.")
		return
	}
	if context.Cause(r.Context()) == errLeftLive {
		// A tunnel still being set up when the site left live mode.
		g.refuse(w, r, g.state.current(), classify.Decision{Class: classify.Write, Reason: "tunnel closed: the site left live mode"}, "tunnel closed")
		return
	}
	if clientGone(r, err) {
		// The client went away; nobody is left to answer.
		g.log.Debug("client gone", "method", r.Method, "path", r.URL.Path)
		return
	}
	g.metrics.upstreamError()
	g.log.Warn("upstream error", "method", r.Method, "path", r.URL.Path, "err", err.Error())
	g.answerError(w, r, http.StatusBadGateway, "Gateway Error", "The site is not answering",
		"The gate could not reach the CKAN application behind it. Please try again in a moment.")
}

// badRequest answers 400 for a request the gate cannot forward as sent.
func (g *Gate) badRequest(w http.ResponseWriter, r *http.Request, msg string) {
	g.answerError(w, r, http.StatusBadRequest, "Bad Request", "The request could not be read", msg)
}

// answerError answers a request the gate could not pass to CKAN, in CKAN's
// envelope for the API and as a page otherwise.
func (g *Gate) answerError(w http.ResponseWriter, r *http.Request, status int, typ, heading, msg string) {
	mode := g.state.current().Mode
	if g.classifier().IsAPI(r.URL, r.Header) {
		writeJSON(w, status, ckanEnvelope{Help: g.helpURL(r, ""), Error: &ckanError{Type: typ, Message: msg, Mode: mode}})
		return
	}
	writeHTMLRefusal(w, refusal{SiteTitle: g.opts.SiteTitle, Heading: heading, Message: msg, Mode: mode, Status: status})
}

// clientAddr is the client's address: the peer, or for a trusted proxy
// the right-most untrusted address of X-Forwarded-For.
func (g *Gate) clientAddr(r *http.Request) string {
	peer := peerAddr(r)
	if !g.trusted(peer) {
		return addrString(peer, r.RemoteAddr)
	}
	hops := r.Header.Values("X-Forwarded-For")
	var all []string
	for _, h := range hops {
		for _, p := range strings.Split(h, ",") {
			if p = strings.TrimSpace(p); p != "" {
				all = append(all, p)
			}
		}
	}
	for i := len(all) - 1; i >= 0; i-- {
		a, err := netip.ParseAddr(all[i])
		if err != nil {
			return addrString(peer, r.RemoteAddr) // garbage: trust nothing beyond the peer
		}
		a = a.Unmap()
		if !g.trusted(a) {
			return a.String()
		}
	}
	return addrString(peer, r.RemoteAddr)
}

func addrString(a netip.Addr, fallback string) string {
	if a.IsValid() {
		return a.String()
	}
	return fallback
}

func peerAddr(r *http.Request) netip.Addr {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

func (g *Gate) trusted(a netip.Addr) bool { return inPrefixes(a, g.opts.TrustedProxies) }

func (g *Gate) bypassed(remote string) bool {
	a, err := netip.ParseAddr(remote)
	return err == nil && inPrefixes(a.Unmap(), g.opts.BypassCIDRs)
}

func inPrefixes(a netip.Addr, ps []netip.Prefix) bool {
	if !a.IsValid() {
		return false
	}
	for _, p := range ps {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// auditBypass records a write let through in down mode.
func (g *Gate) auditBypass(r *http.Request, remote string) {
	g.audit(AuditEntry{Time: g.clock(), Event: "bypass-write", Actor: "bypass:" + remote, Method: r.Method, Path: r.URL.Path, Remote: remote})
}

// audit appends e, where a failure is logged and counted (appendAudit)
// but does not stop what the entry records.
func (g *Gate) audit(e AuditEntry) { _ = g.appendAudit(e) }
