package gate

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/ckanops/ckanops/ckanclient"
)

const controlPrefix = "/-/ckanops/"

// Limits on what a mode change may carry.
const (
	maxModeBody   = 64 << 10
	maxMessageLen = 2000
	maxReasonLen  = 500
)

func (g *Gate) controlMux() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+controlPrefix+"status", g.serveStatus)
	mux.HandleFunc("POST "+controlPrefix+"mode", g.serveMode)
	mux.HandleFunc("GET "+controlPrefix+"health", g.serveHealth)
	mux.HandleFunc("POST "+controlPrefix+"jobs/suspend", g.serveJobsSuspend)
	mux.HandleFunc("POST "+controlPrefix+"jobs/resume", g.serveJobsResume)
	mux.HandleFunc("GET "+controlPrefix+"audit", g.serveAudit)
	mux.Handle("GET "+controlPrefix+"metrics", g.metrics.handler())
	mux.HandleFunc(controlPrefix+"runbook", g.serveRunbook)
	mux.HandleFunc(controlPrefix+"runbook/", g.serveRunbook)
	mux.HandleFunc(controlPrefix, func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "no such control endpoint: see GET /-/ckanops/status, POST /-/ckanops/mode, GET /-/ckanops/health, GET /-/ckanops/metrics, POST /-/ckanops/jobs/suspend, POST /-/ckanops/jobs/resume, GET /-/ckanops/audit, GET/POST /-/ckanops/runbook, GET /-/ckanops/runbook/events"})
	})
	return mux
}

// authError is a failed authentication: 401 (no or wrong credentials) or
// 403 (a valid CKAN user who is not a sysadmin), or 503 (CKAN could not
// be asked).
type authError struct {
	status int
	msg    string
}

func (e *authError) Error() string { return e.msg }

// authenticate returns the actor behind the request's credentials.
func (g *Gate) authenticate(r *http.Request) (string, *authError) {
	authz := strings.TrimSpace(r.Header.Get("Authorization"))
	apiKey := strings.TrimSpace(r.Header.Get("X-CKAN-API-Key"))
	if authz == "" && apiKey == "" {
		return "", &authError{http.StatusUnauthorized, "authentication required: send the ops token as 'Authorization: Bearer <token>', or a sysadmin's CKAN API token"}
	}
	if tok, ok := strings.CutPrefix(authz, "Bearer "); ok {
		if tokenEqual(strings.TrimSpace(tok), g.opts.OpsToken) {
			return "ops-token", nil
		}
		authz = strings.TrimSpace(tok) // perhaps a CKAN token sent as Bearer
	}
	tok := authz
	if tok == "" {
		tok = apiKey // CKAN 2.9/2.10 clients send the token here
	}
	// A wrong ops token must not be forwarded to CKAN as if it were a
	// CKAN token, and must cost the same as a right one.
	if tokenEqual(tok, g.opts.OpsToken) {
		return "ops-token", nil
	}
	u, err := g.admins.check(r.Context(), tok)
	if err != nil {
		return "", err
	}
	return "ckan:" + u, nil
}

// tokenEqual compares two secrets in constant time, whatever their lengths.
func tokenEqual(a, b string) bool {
	ha, hb := sha256.Sum256([]byte(a)), sha256.Sum256([]byte(b))
	return subtle.ConstantTimeCompare(ha[:], hb[:]) == 1 && a != "" && b != ""
}

// sysadminCache remembers, for a short while, which CKAN tokens belong to
// sysadmins. It is keyed by the token's hash: tokens are never kept.
type sysadminCache struct {
	upstream *url.URL
	ttl      time.Duration
	clock    func() time.Time

	mu      sync.Mutex
	entries map[[32]byte]adminEntry
}

type adminEntry struct {
	user     string
	sysadmin bool
	exp      time.Time
}

func newSysadminCache(upstream *url.URL, ttl time.Duration, clock func() time.Time) *sysadminCache {
	return &sysadminCache{upstream: upstream, ttl: ttl, clock: clock, entries: map[[32]byte]adminEntry{}}
}

// check returns the CKAN user behind token if it is a sysadmin's.
func (c *sysadminCache) check(ctx context.Context, token string) (string, *authError) {
	key := sha256.Sum256([]byte(token))
	now := c.clock()
	c.mu.Lock()
	e, ok := c.entries[key]
	c.mu.Unlock()
	if !ok || !now.Before(e.exp) {
		user, sysadmin, err := c.ask(ctx, token)
		if err != nil {
			return "", err
		}
		e = adminEntry{user: user, sysadmin: sysadmin, exp: now.Add(c.ttl)}
		if c.ttl > 0 {
			c.mu.Lock()
			if len(c.entries) > 10000 { // bound memory against token spraying
				clear(c.entries)
			}
			c.entries[key] = e
			c.mu.Unlock()
		}
	}
	if e.user == "" {
		return "", &authError{http.StatusUnauthorized, "the token is neither the ops token nor a valid CKAN API token"}
	}
	if !e.sysadmin {
		return "", &authError{http.StatusForbidden, fmt.Sprintf("CKAN user %q is not a sysadmin: maintenance mode needs a sysadmin's token or the ops token", e.user)}
	}
	return e.user, nil
}

// ask asks CKAN (user_show without an id) whose token this is. The token
// goes raw in Authorization whichever header the client used: CKAN 2.10
// and 2.11 both read it there (2.11 reads only there).
func (c *sysadminCache) ask(ctx context.Context, token string) (string, bool, *authError) {
	cl, err := ckanclient.New(c.upstream.String(), ckanclient.Options{Token: token, TokenStyle: ckanclient.AuthRaw, Timeout: 5 * time.Second, Retries: -1})
	if err != nil {
		return "", false, &authError{http.StatusInternalServerError, "cannot build a CKAN client: " + err.Error()}
	}
	u, err := cl.UserShow(ctx)
	switch {
	case err == nil:
		return u.Name, u.Sysadmin, nil
	case ckanclient.IsAuthorization(err), ckanclient.IsNotFound(err), ckanclient.IsValidation(err):
		return "", false, nil // CKAN does not know this token: cache the answer
	}
	return "", false, &authError{http.StatusServiceUnavailable, "cannot verify the CKAN token: CKAN did not answer user_show; use the ops token"}
}

// storeHealth tracks whether the state store answers.
type storeHealth struct {
	ok         atomic.Bool
	mu         sync.Mutex
	staleSince time.Time
}

func (s *storeHealth) set(ok bool, t time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ok.Store(ok)
	if ok {
		s.staleSince = time.Time{}
	} else if s.staleSince.IsZero() {
		s.staleSince = t
	}
}

func (s *storeHealth) get() (bool, time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ok.Load(), s.staleSince
}

// status builds the status record; full adds what only operators see.
func (g *Gate) status(ctx context.Context, full bool) ckanclient.Status {
	t := g.clock()
	v := g.state.view(t)
	st := ckanclient.Status{
		Site: g.opts.Site, Mode: v.rec.Mode, Phase: v.phase, Message: v.rec.Message,
		Since: v.rec.Since, Until: v.rec.Until, Version: v.rec.Version,
	}
	if !v.quiescedAt.IsZero() {
		q := v.quiescedAt
		st.QuiescedAt = &q
	}
	if !full {
		return st
	}
	st.Actor, st.Reason = v.rec.Actor, v.rec.Reason
	st.InFlight = v.writes
	ok, stale := g.storeState.get()
	sh := &ckanclient.StoreHealth{Kind: g.opts.Store.Kind(), OK: ok}
	if !stale.IsZero() {
		sh.StaleSince = &stale
	}
	st.Store = sh
	st.Gates = g.gates(ctx, ckanclient.GateInfo{ID: g.opts.GateID, Version: v.rec.Version, Phase: v.phase, InFlight: len(v.writes), Seen: t})
	return st
}

func (g *Gate) serveStatus(w http.ResponseWriter, r *http.Request) {
	if !hasCredentials(r) {
		writeJSON(w, http.StatusOK, g.status(r.Context(), false))
		return
	}
	if _, aerr := g.authenticate(r); aerr != nil {
		writeJSON(w, aerr.status, map[string]string{"error": aerr.msg})
		return
	}
	writeJSON(w, http.StatusOK, g.status(r.Context(), true))
}

func hasCredentials(r *http.Request) bool {
	return r.Header.Get("Authorization") != "" || r.Header.Get("X-CKAN-API-Key") != ""
}

func (g *Gate) serveMode(w http.ResponseWriter, r *http.Request) {
	actor, aerr := g.authenticate(r)
	if aerr != nil {
		writeJSON(w, aerr.status, map[string]string{"error": aerr.msg})
		return
	}
	req, err := decodeModeRequest(r.Body)
	if err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
		return
	}
	st, err := g.changeMode(r.Context(), req, actor, g.clientAddr(r))
	var ce *ConflictError
	switch {
	case errors.As(err, &ce):
		writeJSON(w, http.StatusConflict, map[string]any{"error": ce.Error(), "current": g.recordStatus(ce.Current)})
	case errors.Is(err, errStoreDown):
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": err.Error()})
	case err != nil:
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
	default:
		writeJSON(w, http.StatusOK, st)
	}
}

// recordStatus renders a record that is not (yet) the enforced one.
// When the record is the one this gate enforces, its phase is the real
// one; otherwise the gate has not applied it yet and the phase is what it
// will start in (draining for maintenance).
func (g *Gate) recordStatus(rec Record) ckanclient.Status {
	st := ckanclient.Status{Site: g.opts.Site, Mode: rec.Mode, Message: rec.Message, Since: rec.Since,
		Until: rec.Until, Version: rec.Version, Actor: rec.Actor, Reason: rec.Reason, Phase: ckanclient.PhaseLive}
	if g.state.current().Version == rec.Version {
		phase, q := g.state.phase()
		st.Phase = phase
		if !q.IsZero() {
			st.QuiescedAt = &q
		}
	} else if rec.maintenance() {
		st.Phase = ckanclient.PhaseDraining
	}
	return st
}

func decodeModeRequest(body io.Reader) (ckanclient.ModeRequest, error) {
	var req ckanclient.ModeRequest
	dec := json.NewDecoder(io.LimitReader(body, maxModeBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return req, fmt.Errorf("bad mode request body (want JSON {\"mode\", \"message\", \"until\" or \"for\", \"reason\", \"expect_version\"}): %v", err)
	}
	return req, nil
}

var errStoreDown = errors.New("the state store is unreachable: mode changes are refused until it is back (the gate keeps enforcing the last mode it knew)")

// changeMode validates req, compare-and-sets the new record in the store,
// audits it and enforces it.
func (g *Gate) changeMode(ctx context.Context, req ckanclient.ModeRequest, actor, remote string) (ckanclient.Status, error) {
	if err := req.Validate(); err != nil {
		return ckanclient.Status{}, err
	}
	if err := checkText("message", req.Message, maxMessageLen); err != nil {
		return ckanclient.Status{}, err
	}
	if err := checkText("reason", req.Reason, maxReasonLen); err != nil {
		return ckanclient.Status{}, err
	}
	t := g.clock()
	var until *time.Time
	switch {
	case req.Until != nil:
		if !req.Until.After(t) {
			return ckanclient.Status{}, fmt.Errorf("until %s is in the past", req.Until.UTC().Format(time.RFC3339))
		}
		u := req.Until.UTC()
		until = &u
	case req.For != "":
		d, _ := time.ParseDuration(req.For) // Validate checked it
		u := t.Add(d).Truncate(time.Second)
		until = &u
	}

	g.changeMu.Lock()
	defer g.changeMu.Unlock()
	cur, ok, err := g.opts.Store.Load(ctx)
	if err != nil {
		g.storeState.set(false, t)
		g.log.Error("state store unreachable", "store", g.opts.Store.Kind(), "err", err.Error())
		return ckanclient.Status{}, fmt.Errorf("%w: %v", errStoreDown, err)
	}
	g.storeState.set(true, t)
	if !ok {
		cur = g.state.current()
	}
	if req.ExpectVersion != nil && *req.ExpectVersion != cur.Version {
		return ckanclient.Status{}, &ConflictError{Current: cur}
	}
	next := Record{
		Mode: req.Mode, Message: req.Message, Since: cur.Since, Until: until,
		Version: cur.Version + 1, Actor: actor, Reason: req.Reason,
	}
	if next.Mode != cur.Mode || next.Since.IsZero() {
		next.Since = t
	}
	expect := cur.Version
	if !ok {
		expect = 0
	}
	if err := g.opts.Store.CompareAndSwap(ctx, expect, next); err != nil {
		var ce *ConflictError
		if errors.As(err, &ce) {
			return ckanclient.Status{}, err
		}
		g.storeState.set(false, t)
		return ckanclient.Status{}, fmt.Errorf("%w: %v", errStoreDown, err)
	}
	g.audit(AuditEntry{Time: t, Event: "mode", Actor: actor, From: cur.Mode, To: next.Mode,
		Version: next.Version, Message: next.Message, Reason: next.Reason, Remote: remote})
	g.state.set(next)
	g.saveLocal(next)
	g.log.Info("mode changed", "from", cur.Mode, "to", next.Mode, "version", next.Version, "actor", actor, "remote", remote)
	return g.status(ctx, true), nil
}

// checkText bounds free text that ends up in pages, JSON and the audit log.
func checkText(name, s string, max int) error {
	if len(s) > max {
		return fmt.Errorf("%s is %d bytes long: at most %d", name, len(s), max)
	}
	if !utf8.ValidString(s) {
		return fmt.Errorf("%s is not valid UTF-8", name)
	}
	return nil
}

func (g *Gate) serveHealth(w http.ResponseWriter, r *http.Request) {
	if _, aerr := g.authenticate(r); aerr != nil {
		writeJSON(w, aerr.status, map[string]string{"error": aerr.msg})
		return
	}
	writeJSON(w, http.StatusOK, g.health(r.Context()))
}

// maxAuditTail bounds GET /-/ckanops/audit?tail=N.
const maxAuditTail = 500

// serveAudit answers the last entries of the audit log (?tail=N, default 20).
func (g *Gate) serveAudit(w http.ResponseWriter, r *http.Request) {
	if _, aerr := g.authenticate(r); aerr != nil {
		writeJSON(w, aerr.status, map[string]string{"error": aerr.msg})
		return
	}
	n := 20
	if s := r.URL.Query().Get("tail"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v < 1 || v > maxAuditTail {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": fmt.Sprintf("tail must be a number of entries from 1 to %d", maxAuditTail)})
			return
		}
		n = v
	}
	if g.opts.Audit == nil {
		writeJSON(w, http.StatusOK, ckanclient.AuditTail{Entries: []ckanclient.AuditEntry{}})
		return
	}
	entries, err := g.opts.Audit.Tail(n)
	if err != nil {
		writeJSON(w, http.StatusInternalServerError, map[string]string{"error": err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, ckanclient.AuditTail{Entries: entries})
}

// serveMaintenanceAction answers maintenance_mode_show and
// maintenance_mode_update in CKAN's envelope, so ckanapi and scripts work.
func (g *Gate) serveMaintenanceAction(w http.ResponseWriter, r *http.Request, action string) {
	fail := func(status int, typ, msg string) {
		writeJSON(w, status, ckanEnvelope{Help: helpURL(r, action), Error: &ckanError{Type: typ, Message: msg, Mode: g.state.current().Mode}})
	}
	actor, aerr := g.authenticate(r)
	if aerr != nil {
		fail(aerr.status, "Authorization Error", aerr.msg)
		return
	}
	if action == "maintenance_mode_show" {
		if r.Method != http.MethodGet && r.Method != http.MethodPost && r.Method != http.MethodHead {
			fail(http.StatusMethodNotAllowed, "Validation Error", "use GET or POST")
			return
		}
		writeJSON(w, http.StatusOK, ckanEnvelope{Help: helpURL(r, action), Success: true, Result: g.status(r.Context(), true)})
		return
	}
	if r.Method != http.MethodPost {
		fail(http.StatusBadRequest, "Validation Error", "Bad request - JSON Error: Invalid request. Please use POST method for your request")
		return
	}
	req, err := decodeModeRequest(r.Body)
	if err != nil {
		fail(http.StatusBadRequest, "Validation Error", err.Error())
		return
	}
	st, err := g.changeMode(r.Context(), req, actor, g.clientAddr(r))
	var ce *ConflictError
	switch {
	case errors.As(err, &ce):
		fail(http.StatusConflict, "Validation Error", ce.Error())
	case errors.Is(err, errStoreDown):
		fail(http.StatusServiceUnavailable, "Maintenance Error", err.Error())
	case err != nil:
		fail(http.StatusConflict, "Validation Error", err.Error())
	default:
		writeJSON(w, http.StatusOK, ckanEnvelope{Help: helpURL(r, action), Success: true, Result: st})
	}
}
