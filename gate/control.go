package gate

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
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

	"github.com/ckanops/ckanops/api"

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
	mux.HandleFunc("GET "+controlPrefix+"actions", g.serveActions)
	mux.HandleFunc("POST "+controlPrefix+"actions/learn", g.serveActionsLearn)
	mux.HandleFunc("GET "+controlPrefix+"metrics", g.serveMetrics)
	mux.HandleFunc(controlPrefix+"schedule", g.serveSchedule)
	mux.HandleFunc("GET "+api.PathNoticeScript, serveNoticeScript) // public: pages load it
	mux.HandleFunc(controlPrefix+"runbook", g.serveRunbook)
	mux.HandleFunc(controlPrefix+"runbook/", g.serveRunbook)
	mux.HandleFunc(controlPrefix, func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "no such control endpoint: see GET /-/ckanops/status, GET /-/ckanops/notice.js, POST /-/ckanops/mode, GET/POST/DELETE /-/ckanops/schedule, GET /-/ckanops/health, GET /-/ckanops/metrics, POST /-/ckanops/jobs/suspend, POST /-/ckanops/jobs/resume, GET /-/ckanops/audit, GET /-/ckanops/actions, POST /-/ckanops/actions/learn, GET/POST /-/ckanops/runbook, GET /-/ckanops/runbook/events"})
	})
	return g.limitAuth(mux)
}

// authError is a failed authentication: 401 (no or wrong credentials),
// 403 (a valid CKAN user who is not a sysadmin, or a CKAN sysadmin naming
// another actor), 429 (the client's address failed too often: see
// authlimit.go), 503 (CKAN could not be asked), or 400 (a bad
// Ckanops-Actor header: see actorFor).
type authError struct {
	status     int
	msg        string
	reason     string        // for a failure that counts: not-token, unknown-token, not-sysadmin
	user       string        // the CKAN user of a not-sysadmin failure
	retryAfter time.Duration // with 429
	ckanType   string        // the __type of CKAN's envelope, when not "Authorization Error"
}

func (e *authError) Error() string { return e.msg }

// Why a failed authentication failed: the label of
// ckanops_auth_failures_total and the audit entry's reason.
const (
	failNotToken    = "not-token"     // neither the ops token nor shaped like a CKAN API token or key
	failUnknown     = "unknown-token" // a CKAN token CKAN does not know
	failNotSysadmin = "not-sysadmin"  // a CKAN user who is not a sysadmin
)

const authHowTo = "send the ops token as 'Authorization: Bearer <token>', or a sysadmin's CKAN API token (raw in Authorization, or in X-CKAN-API-Key)"

// writeAuthError answers a failed authentication of the control API.
func writeAuthError(w http.ResponseWriter, aerr *authError) {
	setRetryAfter(w, aerr)
	writeJSON(w, aerr.status, map[string]string{"error": aerr.msg})
}

func setRetryAfter(w http.ResponseWriter, aerr *authError) {
	if aerr.status == http.StatusTooManyRequests {
		w.Header().Set("Retry-After", strconv.Itoa(retrySeconds(aerr.retryAfter)))
	}
}

// retrySeconds rounds a wait up to whole seconds, at least one.
func retrySeconds(d time.Duration) int {
	return max(1, int((d+time.Second-1)/time.Second))
}

// authTicketKey carries the request's admitted check (an *authTicket)
// from limitAuth to authenticate.
type authTicketKey struct{}

// limitAuth refuses, before any handler looks at them, the credentials of
// a client address that failed too often; it admits the others, and the
// handler's authenticate settles the admission.
func (g *Gate) limitAuth(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r, tk, aerr := g.admitAuth(r)
		if aerr != nil {
			writeAuthError(w, aerr)
			return
		}
		defer func() { tk.end(false, g.clock()) }() // a handler that never authenticated
		next.ServeHTTP(w, r)
	})
}

// admitAuth admits a request carrying credentials to have them checked,
// unless its client address is over the limit of failures. The returned
// request carries the ticket for authenticate.
func (g *Gate) admitAuth(r *http.Request) (*http.Request, *authTicket, *authError) {
	if !hasCredentials(r) {
		return r, nil, nil
	}
	remote := g.clientAddr(r)
	tk, wait, ok := g.admins.limit.begin(remote, g.clock())
	if !ok {
		g.metrics.authRateLimited()
		return r, nil, &authError{status: http.StatusTooManyRequests, retryAfter: wait,
			msg: fmt.Sprintf("too many failed authentications from %s: try again in %ds", remote, retrySeconds(wait))}
	}
	return r.WithContext(context.WithValue(r.Context(), authTicketKey{}, tk)), tk, nil
}

// authenticate returns the actor behind the request's credentials. A
// failure counts against the client's address (authlimit.go); a request
// without credentials, or one CKAN could not be asked about, does not.
func (g *Gate) authenticate(r *http.Request) (string, *authError) {
	if !hasCredentials(r) {
		return "", &authError{status: http.StatusUnauthorized, msg: "authentication required: " + authHowTo}
	}
	tk, _ := r.Context().Value(authTicketKey{}).(*authTicket)
	if tk == nil { // not admitted by limitAuth
		var aerr *authError
		if r, tk, aerr = g.admitAuth(r); aerr != nil {
			return "", aerr
		}
	}
	actor, aerr := g.checkCredentials(r)
	if aerr == nil || aerr.reason == "" {
		tk.end(false, g.clock())
		if aerr == nil {
			return g.actorFor(r, actor)
		}
		return actor, aerr
	}
	g.authFailed(r, tk, aerr)
	return "", aerr
}

// opsTokenActor is the actor of the ops token.
const opsTokenActor = api.OpsTokenActor

// actorFor returns the actor of an authenticated request whose
// credentials are actor's: actor itself, or, when the request names the
// person behind it in a Ckanops-Actor header (api.ActorHeader) and the
// credentials are the ops token, "<name> via ops-token". The header is
// refused, and nothing is done, when the credentials are a CKAN
// sysadmin's (403: a CKAN user acts as itself), when it is sent more than
// once, or when its value is not one api.CheckActor accepts (400). None
// of these counts as a failed authentication: the credentials were good.
func (g *Gate) actorFor(r *http.Request, actor string) (string, *authError) {
	names := r.Header.Values(api.ActorHeader)
	if len(names) == 0 {
		return actor, nil
	}
	remote := g.clientAddr(r)
	if actor != opsTokenActor {
		g.log.Warn("a "+api.ActorHeader+" header refused: only the ops token may name another actor",
			"actor", actor, "remote", remote, "method", r.Method, "path", r.URL.Path)
		return "", &authError{status: http.StatusForbidden,
			msg: fmt.Sprintf("only the ops token may name another actor (%s); %s acts as itself: nothing was changed", api.ActorHeader, actor)}
	}
	if len(names) > 1 {
		g.log.Warn("a "+api.ActorHeader+" header refused: sent more than once",
			"count", len(names), "remote", remote, "method", r.Method, "path", r.URL.Path)
		return "", &authError{status: http.StatusBadRequest, ckanType: "Validation Error",
			msg: fmt.Sprintf("%d %s headers: send one, naming the person behind the change: nothing was changed", len(names), api.ActorHeader)}
	}
	if err := api.CheckActor(names[0]); err != nil {
		// The error quotes a bounded, escaped prefix of the value only.
		g.log.Warn("a "+api.ActorHeader+" header refused", "err", err.Error(), "remote", remote, "method", r.Method, "path", r.URL.Path)
		return "", &authError{status: http.StatusBadRequest, ckanType: "Validation Error",
			msg: fmt.Sprintf("bad %s header: %v: nothing was changed", api.ActorHeader, err)}
	}
	return api.ActorViaOpsToken(names[0]), nil
}

// checkCredentials finds whose credentials r carries: the ops token, or a
// CKAN API token that CKAN says is a sysadmin's. Only a value shaped like
// a CKAN API token or key is ever sent to CKAN: never Basic credentials,
// never a mistyped ops token.
func (g *Gate) checkCredentials(r *http.Request) (string, *authError) {
	authz := strings.TrimSpace(r.Header.Get("Authorization"))
	tok := authz
	if scheme, rest, ok := strings.Cut(authz, " "); ok && strings.EqualFold(scheme, "Bearer") {
		tok = strings.TrimSpace(rest) // the ops token, or a CKAN token sent as Bearer
	}
	if tok == "" {
		tok = strings.TrimSpace(r.Header.Get("X-CKAN-API-Key")) // CKAN 2.9/2.10 clients send the token here
	}
	// Compared in constant time, whatever the value's shape.
	if tokenEqual(tok, g.opts.OpsToken) {
		return opsTokenActor, nil
	}
	if scheme, _, _ := strings.Cut(authz, " "); strings.EqualFold(scheme, "Basic") {
		return "", &authError{status: http.StatusUnauthorized, reason: failNotToken,
			msg: "HTTP Basic credentials are not accepted: " + authHowTo}
	}
	if !ckanTokenShaped(tok) {
		return "", &authError{status: http.StatusUnauthorized, reason: failNotToken,
			msg: "the credentials are neither the ops token nor a CKAN API token: " + authHowTo}
	}
	u, err := g.admins.check(r.Context(), g.opts.Transport, tok)
	if err != nil {
		return "", err
	}
	return "ckan:" + u, nil
}

// authFailed counts a failed authentication and audits it: the address's
// first failure of a window, and the failure that reaches the limit.
// Neither the credentials nor anything derived from them is written.
func (g *Gate) authFailed(r *http.Request, tk *authTicket, aerr *authError) {
	t := g.clock()
	out := tk.end(true, t)
	g.metrics.authFailure(aerr.reason)
	if !out.auditFailure && !out.auditLimit {
		return
	}
	remote := g.clientAddr(r)
	actor := remote
	if aerr.user != "" {
		actor = "ckan:" + aerr.user
	}
	why := map[string]string{
		failNotToken:    "neither the ops token nor a CKAN API token",
		failUnknown:     "a CKAN API token CKAN does not know",
		failNotSysadmin: "CKAN user " + aerr.user + " is not a sysadmin",
	}[aerr.reason]
	if out.auditFailure {
		g.audit(AuditEntry{Time: t, Event: "auth-failed", Actor: actor, Method: r.Method, Path: r.URL.Path, Remote: remote, Reason: why,
			Message: fmt.Sprintf("failed authentication; more from this address within %s are counted in ckanops_auth_failures_total, not audited", authWindow)})
		g.log.Warn("authentication failed", "remote", remote, "reason", aerr.reason, "method", r.Method, "path", r.URL.Path)
	}
	if out.auditLimit {
		g.audit(AuditEntry{Time: t, Event: "auth-rate-limited", Actor: actor, Method: r.Method, Path: r.URL.Path, Remote: remote, Reason: why,
			Message: fmt.Sprintf("%d failed authentications within %s: this address's credentials are refused with 429 for %ds", out.failures, authWindow, retrySeconds(out.wait))})
		g.log.Warn("authentication rate-limited", "remote", remote, "failures", out.failures, "retry_after", retrySeconds(out.wait))
	}
}

// tokenEqual compares two secrets in constant time, whatever their lengths.
func tokenEqual(a, b string) bool {
	ha, hb := sha256.Sum256([]byte(a)), sha256.Sum256([]byte(b))
	return subtle.ConstantTimeCompare(ha[:], hb[:]) == 1 && a != "" && b != ""
}

// maxCKANToken bounds what may be sent to CKAN (its tokens are a few
// hundred bytes).
const maxCKANToken = 4096

// ckanTokenShaped reports whether tok could be a CKAN credential: an API
// token, which CKAN (ckan/lib/api_token.py, with PyJWT) writes as a JWT,
// three base64url segments whose first is a JSON header naming its "alg";
// or a legacy API key, a UUID (8-4-4-4-12 hex digits).
func ckanTokenShaped(tok string) bool {
	return len(tok) <= maxCKANToken && (isUUID(tok) || isJWT(tok))
}

func isUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
				return false
			}
		}
	}
	return true
}

func isJWT(s string) bool {
	parts := strings.Split(s, ".")
	if len(parts) != 3 {
		return false
	}
	for _, p := range parts {
		if p == "" || strings.ContainsFunc(p, func(r rune) bool {
			return !('a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' || r == '-' || r == '_')
		}) {
			return false
		}
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[0])
	if err != nil {
		return false
	}
	var h map[string]any
	if json.Unmarshal(b, &h) != nil {
		return false
	}
	alg, _ := h["alg"].(string)
	if alg == "" || strings.EqualFold(alg, "none") {
		return false
	}
	if typ, ok := h["typ"]; ok {
		if s, _ := typ.(string); !strings.EqualFold(s, "JWT") {
			return false
		}
	}
	return true
}

// sysadminCache remembers, for a short while, what CKAN said of a token:
// whose it is and whether a sysadmin's. It is keyed by the token's hash:
// tokens are never kept. Sysadmins' tokens are kept apart from the other
// answers (other users' tokens, tokens CKAN does not know, which are
// cached too), so that spraying made-up tokens, which fills the latter,
// never evicts the former: the sysadmins' entries come only from holders
// of sysadmins' tokens. Each map holds at most maxCachedTokens entries;
// when one is full its expired entries go, and if that is not enough, all
// of them.
//
// It also holds the per-address count of failed authentications (limit),
// the other thing the gate remembers about credentials.
type sysadminCache struct {
	upstream *url.URL
	ttl      time.Duration
	clock    func() time.Time
	limit    *authLimiter

	mu     sync.Mutex
	admins map[[32]byte]adminEntry // sysadmins' tokens
	others map[[32]byte]adminEntry // everything else CKAN answered
}

const maxCachedTokens = 10000

type adminEntry struct {
	user     string
	sysadmin bool
	exp      time.Time
}

func newSysadminCache(upstream *url.URL, ttl time.Duration, clock func() time.Time) *sysadminCache {
	return &sysadminCache{upstream: upstream, ttl: ttl, clock: clock,
		limit:  newAuthLimiter(authLimit, authWindow, authClients),
		admins: map[[32]byte]adminEntry{}, others: map[[32]byte]adminEntry{}}
}

// check returns the CKAN user behind token if it is a sysadmin's, asking
// CKAN through rt (the gate's own transport: never an environment proxy)
// when the answer is not cached.
func (c *sysadminCache) check(ctx context.Context, rt http.RoundTripper, token string) (string, *authError) {
	key := sha256.Sum256([]byte(token))
	now := c.clock()
	c.mu.Lock()
	e, ok := c.admins[key]
	if !ok {
		e, ok = c.others[key]
	}
	c.mu.Unlock()
	if !ok || !now.Before(e.exp) {
		user, sysadmin, err := c.ask(ctx, rt, token)
		if err != nil {
			return "", err
		}
		e = adminEntry{user: user, sysadmin: sysadmin, exp: now.Add(c.ttl)}
		if c.ttl > 0 {
			c.mu.Lock()
			m, stale := c.others, c.admins
			if sysadmin {
				m, stale = c.admins, c.others
			}
			delete(stale, key)
			if len(m) >= maxCachedTokens {
				for k, v := range m {
					if !now.Before(v.exp) {
						delete(m, k)
					}
				}
				if len(m) >= maxCachedTokens {
					clear(m)
				}
			}
			m[key] = e
			c.mu.Unlock()
		}
	}
	if e.user == "" {
		return "", &authError{status: http.StatusUnauthorized, reason: failUnknown,
			msg: "the token is neither the ops token nor a valid CKAN API token"}
	}
	if !e.sysadmin {
		return "", &authError{status: http.StatusForbidden, reason: failNotSysadmin, user: e.user,
			msg: fmt.Sprintf("CKAN user %q is not a sysadmin: maintenance mode needs a sysadmin's token or the ops token", e.user)}
	}
	return e.user, nil
}

// ask asks CKAN (user_show without an id) whose token this is. The token
// goes raw in Authorization whichever header the client used: CKAN 2.10
// and 2.11 both read it there (2.11 reads only there).
func (c *sysadminCache) ask(ctx context.Context, rt http.RoundTripper, token string) (string, bool, *authError) {
	cl, err := ckanclient.New(c.upstream.String(), ckanclient.Options{Token: token, TokenStyle: ckanclient.AuthRaw,
		Timeout: 5 * time.Second, Retries: -1, HTTPClient: &http.Client{Transport: rt}})
	if err != nil {
		return "", false, &authError{status: http.StatusInternalServerError, msg: "cannot build a CKAN client: " + err.Error()}
	}
	u, err := cl.UserShow(ctx)
	switch {
	case err == nil:
		return u.Name, u.Sysadmin, nil
	case ckanclient.IsAuthorization(err), ckanclient.IsNotFound(err), ckanclient.IsValidation(err):
		return "", false, nil // CKAN does not know this token: cache the answer
	}
	return "", false, &authError{status: http.StatusServiceUnavailable, msg: "cannot verify the CKAN token: CKAN did not answer user_show; use the ops token"}
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

// maxStatusUnknownActions bounds the unknown actions a status names.
const maxStatusUnknownActions = 20

// status builds the status record; full adds what only operators see.
func (g *Gate) status(ctx context.Context, full bool) api.Status {
	t := g.clock()
	v := g.state.view(t)
	st := api.Status{
		Site: g.opts.Site, Mode: v.rec.Mode, Phase: v.phase, Message: v.rec.Message,
		Since: v.rec.Since, Until: v.rec.Until, Version: v.rec.Version,
	}
	if !v.quiescedAt.IsZero() {
		q := v.quiescedAt
		st.QuiescedAt = &q
	}
	st.Overrun = v.rec.overrun(t)
	if s := v.rec.Schedule; s != nil {
		sc := *s
		if !full {
			sc = sc.Public()
		}
		st.Schedule = &sc
	}
	if !full {
		return st
	}
	st.Actor, st.Reason = v.rec.Actor, v.rec.Reason
	st.InFlight = v.writes
	ok, stale := g.storeState.get()
	sh := &api.StoreHealth{Kind: g.opts.Store.Kind(), OK: ok}
	if !stale.IsZero() {
		sh.StaleSince = &stale
	}
	st.Store = sh
	st.Gates = g.gates(ctx, api.GateInfo{ID: g.opts.GateID, Version: v.rec.Version, Phase: v.phase, InFlight: len(v.writes), Seen: t})
	si := g.surfaceInfo()
	st.Surface = &si
	st.Triggers = g.triggerStates()
	if u := g.unknownActions(); len(u) > 0 {
		st.UnknownActionCount = len(u)
		st.UnknownActions = u[:min(len(u), maxStatusUnknownActions)]
	}
	return st
}

func (g *Gate) serveStatus(w http.ResponseWriter, r *http.Request) {
	if !hasCredentials(r) {
		writeJSON(w, http.StatusOK, g.status(r.Context(), false))
		return
	}
	if _, aerr := g.authenticate(r); aerr != nil {
		writeAuthError(w, aerr)
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
		writeAuthError(w, aerr)
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
func (g *Gate) recordStatus(rec Record) api.Status {
	st := api.Status{Site: g.opts.Site, Mode: rec.Mode, Message: rec.Message, Since: rec.Since,
		Until: rec.Until, Version: rec.Version, Actor: rec.Actor, Reason: rec.Reason, Phase: api.PhaseLive,
		Schedule: rec.Schedule, Overrun: rec.overrun(g.clock())}
	if g.state.current().Version == rec.Version {
		phase, q := g.state.phase()
		st.Phase = phase
		if !q.IsZero() {
			st.QuiescedAt = &q
		}
	} else if rec.maintenance() {
		st.Phase = api.PhaseDraining
	}
	return st
}

func decodeModeRequest(body io.Reader) (api.ModeRequest, error) {
	var req api.ModeRequest
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
func (g *Gate) changeMode(ctx context.Context, req api.ModeRequest, actor, remote string) (api.Status, error) {
	if err := req.Validate(); err != nil {
		return api.Status{}, err
	}
	if err := checkText("message", req.Message, maxMessageLen); err != nil {
		return api.Status{}, err
	}
	if err := checkText("reason", req.Reason, maxReasonLen); err != nil {
		return api.Status{}, err
	}
	t := g.clock()
	var until *time.Time
	switch {
	case req.Until != nil:
		if !req.Until.After(t) {
			return api.Status{}, fmt.Errorf("until %s is in the past", req.Until.UTC().Format(time.RFC3339))
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
		return api.Status{}, fmt.Errorf("%w: %v", errStoreDown, err)
	}
	g.storeState.set(true, t)
	if !ok {
		cur = g.state.current()
	}
	if req.ExpectVersion != nil && *req.ExpectVersion != cur.Version {
		return api.Status{}, &ConflictError{Current: cur}
	}
	if req.Mode == api.ModeLive && cur.Mode == api.ModeLive {
		// Nothing to reopen: no new version, nothing audited; the
		// answer's unchanged version says so.
		g.log.Info("mode change to live on a live site: nothing changed", "version", cur.Version, "actor", actor, "remote", remote)
		return g.status(ctx, true), nil
	}
	next := Record{
		Mode: req.Mode, Message: req.Message, Since: cur.Since, Until: until,
		Version: cur.Version + 1, Actor: actor, Reason: req.Reason, Change: newChangeID(),
		Schedule: cur.Schedule, // a planned window stays planned
	}
	if next.Mode != cur.Mode || next.Since.IsZero() {
		next.Since = t
	}
	expect := cur.Version
	if !ok {
		expect = 0
	}
	if err := g.storeRecord(ctx, expect, next, t); err != nil {
		var ce *ConflictError
		if errors.As(err, &ce) {
			return api.Status{}, err
		}
		// Not known to have run: if it did, the sync that reads it
		// audits it (pending.audit).
		g.pending.Store(&pendingChange{rec: next, from: cur.Mode, actor: actor, remote: remote, at: t})
		return api.Status{}, fmt.Errorf("%w: %v (if the change reached the store after all, the gate applies and audits it when it reads it back)", errStoreDown, err)
	}
	auditErr := g.appendAudit(AuditEntry{Time: t, Event: "mode", Actor: actor, From: string(cur.Mode), To: string(next.Mode),
		Version: next.Version, Message: next.Message, Reason: next.Reason, Remote: remote})
	g.state.set(next)
	g.saveLocal(next)
	g.log.Info("mode changed", "from", cur.Mode, "to", next.Mode, "version", next.Version, "actor", actor, "remote", remote)
	st := g.status(ctx, true)
	if auditErr != nil {
		// The change stands (the store has it); the answer says it is not
		// in the audit log.
		st.Audit = "failed: " + auditErr.Error()
	}
	return st, nil
}

// pendingChange is a mode change whose compare-and-set failed without
// saying whether it ran (a timeout after the store acted, a connection
// lost before its answer).
type pendingChange struct {
	rec    Record
	from   api.Mode
	actor  string
	remote string
	at     time.Time
}

// newChangeID names one mode change.
func newChangeID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// storeRecord compare-and-sets next over version expect. It returns nil
// when next is in the store (written, or found there by reconcile after
// a failed answer), the *ConflictError of a version mismatch, or the
// store's error when next is not known to have been written; the store
// is then marked unreachable.
func (g *Gate) storeRecord(ctx context.Context, expect int64, next Record, t time.Time) error {
	next.Format = RecordFormat
	err := g.opts.Store.CompareAndSwap(ctx, expect, next)
	if err == nil {
		return nil
	}
	var ce *ConflictError
	if errors.As(err, &ce) {
		return err
	}
	if !g.reconcile(next) {
		g.storeState.set(false, t)
		return err
	}
	g.log.Warn("a change whose compare-and-set failed had been written: reconciled by its change id", "version", next.Version, "change", next.Change, "err", err.Error())
	return nil
}

// reconcile asks the store, afresh, whether next was written after all.
func (g *Gate) reconcile(next Record) bool {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	rec, ok, err := g.opts.Store.Load(ctx)
	return err == nil && ok && rec.Change == next.Change
}

// auditPending audits, once, a change of this gate's whose outcome was
// unknown when it was answered and that the store turns out to hold.
func (g *Gate) auditPending(rec Record) {
	p := g.pending.Load()
	if p == nil || rec.Change == "" || rec.Change != p.rec.Change || !g.pending.CompareAndSwap(p, nil) {
		return
	}
	g.log.Warn("a mode change answered as failed had reached the store: audited now", "version", rec.Version, "change", rec.Change)
	g.audit(AuditEntry{Time: p.at, Event: "mode", Actor: p.actor, From: string(p.from), To: string(rec.Mode),
		Version: rec.Version, Message: rec.Message, Reason: rec.Reason, Remote: p.remote})
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

// serveMetrics answers the metrics to a token holder: the gate's own
// listener is the site's public face, and the metrics tell anyone how
// busy it is, what it refuses and who failed to log in. A scraper without
// the token reads them on [gate] metrics_listen (MetricsHandler).
func (g *Gate) serveMetrics(w http.ResponseWriter, r *http.Request) {
	if _, aerr := g.authenticate(r); aerr != nil {
		writeAuthError(w, aerr)
		return
	}
	g.metrics.text.ServeHTTP(w, r)
}

// MetricsHandler serves the metrics without a token: for [gate]
// metrics_listen, a listener of its own on an internal address.
func (g *Gate) MetricsHandler() http.Handler { return g.metrics.text }

func (g *Gate) serveHealth(w http.ResponseWriter, r *http.Request) {
	if _, aerr := g.authenticate(r); aerr != nil {
		writeAuthError(w, aerr)
		return
	}
	writeJSON(w, http.StatusOK, g.health(r.Context()))
}

// maxAuditTail bounds GET /-/ckanops/audit?tail=N.
const maxAuditTail = 500

// serveAudit answers the last entries of the audit log (?tail=N, default 20).
func (g *Gate) serveAudit(w http.ResponseWriter, r *http.Request) {
	if _, aerr := g.authenticate(r); aerr != nil {
		writeAuthError(w, aerr)
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
		writeJSON(w, http.StatusOK, api.AuditTail{Entries: []api.AuditEntry{}})
		return
	}
	entries, err := g.opts.Audit.Tail(n)
	if err != nil {
		writeJSON(w, http.StatusInternalServerError, map[string]string{"error": err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, api.AuditTail{Entries: entries})
}

// serveMaintenanceAction answers maintenance_mode_show and
// maintenance_mode_update in CKAN's envelope, so ckanapi and scripts work.
func (g *Gate) serveMaintenanceAction(w http.ResponseWriter, r *http.Request, action string) {
	fail := func(status int, typ, msg string) {
		writeJSON(w, status, ckanEnvelope{Help: g.helpURL(r, action), Error: &ckanError{Type: typ, Message: msg, Mode: g.state.current().Mode}})
	}
	actor, aerr := g.authenticate(r)
	if aerr != nil {
		setRetryAfter(w, aerr)
		typ := "Authorization Error"
		if aerr.ckanType != "" {
			typ = aerr.ckanType
		}
		fail(aerr.status, typ, aerr.msg)
		return
	}
	if action == "maintenance_mode_show" {
		if r.Method != http.MethodGet && r.Method != http.MethodPost && r.Method != http.MethodHead {
			fail(http.StatusMethodNotAllowed, "Validation Error", "use GET or POST")
			return
		}
		writeJSON(w, http.StatusOK, ckanEnvelope{Help: g.helpURL(r, action), Success: true, Result: g.status(r.Context(), true)})
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
		writeJSON(w, http.StatusOK, ckanEnvelope{Help: g.helpURL(r, action), Success: true, Result: st})
	}
}
