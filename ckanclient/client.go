// Package ckanclient talks to one site over HTTP: CKAN's Action API
// (/api/3/action/NAME) and the ckanops gate's control API (/-/ckanops/*).
//
// Every failure comes back as one of a few typed errors (APIError,
// BadRequestError, ConflictError, HTTPError, TransportError, DecodeError,
// ReadOnlyError) whose message says what happened, where, and what to do
// next. Reads are retried with backoff on connection errors, timeouts and
// 502/503/504; writes (POST) never are.
//
// The package must not log or return the token: resty's debug output stays
// off, requests are logged without headers, and server text quoted in an
// error has the token scrubbed out.
package ckanclient

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/go-resty/resty/v2"

	"github.com/ckanops/ckanops/api"
)

// TokenStyle says how the token is sent.
type TokenStyle int

const (
	// AuthRaw sends the token as the whole Authorization header, as CKAN
	// 2.10 and 2.11 clients send an API token.
	AuthRaw TokenStyle = iota
	// AuthAPIKey sends the token in X-CKAN-API-Key (CKAN 2.9 and 2.10).
	AuthAPIKey
	// AuthBearer sends "Authorization: Bearer <token>": the gate's ops token.
	AuthBearer
)

// String returns the name ParseTokenStyle accepts.
func (s TokenStyle) String() string {
	switch s {
	case AuthRaw:
		return "raw"
	case AuthAPIKey:
		return "api-key"
	case AuthBearer:
		return "bearer"
	}
	return fmt.Sprintf("TokenStyle(%d)", int(s))
}

// ParseTokenStyle reads "raw", "api-key" (or "x-ckan-api-key") and "bearer".
func ParseTokenStyle(s string) (TokenStyle, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "raw", "":
		return AuthRaw, nil
	case "api-key", "apikey", "x-ckan-api-key":
		return AuthAPIKey, nil
	case "bearer":
		return AuthBearer, nil
	}
	return 0, fmt.Errorf("ckanclient: token style %q is not one of raw, api-key, bearer", s)
}

// Defaults for Options.
const (
	DefaultTimeout = 5 * time.Second
	// SlowCallTimeout bounds a gate call that does work of its own
	// (learning actions asks CKAN about each).
	SlowCallTimeout  = 5 * time.Minute
	DefaultRetries   = 2
	DefaultRetryWait = 100 * time.Millisecond
	DefaultUserAgent = "ckanops-ckanclient"

	maxRetryWait     = 2 * time.Second
	maxResponseBytes = 128 << 20
)

// Options configure a Client. The zero value is usable.
type Options struct {
	// Token is a CKAN API token or the gate's ops token; empty sends none.
	Token      string
	TokenStyle TokenStyle
	// Timeout bounds each HTTP request (each attempt, body included).
	// Zero means DefaultTimeout.
	Timeout time.Duration
	// Retries is how many times an idempotent read is retried after a
	// connection error, a timeout or a 502/503/504. Zero means
	// DefaultRetries; a negative value disables retries. Writes are never
	// retried.
	Retries int
	// RetryWait is the first backoff wait (doubled each retry, with
	// jitter, capped at 2s). Zero means DefaultRetryWait.
	RetryWait time.Duration
	// UserAgent; empty means DefaultUserAgent.
	UserAgent string
	// HTTPClient is copied (never modified): its Transport and Jar are
	// used; Timeout is replaced by Options.Timeout.
	HTTPClient *http.Client
	// Logger receives one debug record per attempt (method, URL, status,
	// duration; never headers or bodies). Nil discards.
	Logger *slog.Logger
	// StreamIdle is how long an event stream may stay silent before the
	// connection is taken for half-open and dropped. The gate sends a
	// keep-alive comment every 15s. Zero means DefaultStreamIdle.
	StreamIdle time.Duration
	// Actor names the person behind this client's calls, for the gate's
	// audit log (a console serving several people with one ops token):
	// every call to the gate's control API carries it as the
	// Ckanops-Actor header (api.ActorHeader), and the gate records
	// "<Actor> via ops-token". Calls to CKAN's own API never carry it.
	// The gate refuses it (403) with any credentials but the ops token.
	// Empty sends none; New refuses a value api.CheckActor refuses.
	Actor string
	// ReadOnly, when not empty, makes the client refuse every call to the
	// gate's control API that is not a GET or HEAD, before anything is
	// sent, with a *ReadOnlyError whose Reason is ReadOnly (say, "ssh:bob
	// is a viewer (changing a site needs the operator permission: a key
	// in operators.keys)"). Calls to CKAN's own API are unaffected.
	ReadOnly string
}

// ReadOnlyError is a gate control call that a client made with
// Options.ReadOnly refused to send: it would change the site.
type ReadOnlyError struct {
	Method string // the call's method (POST)
	Path   string // the call's path below the site URL (/-/ckanops/mode)
	Reason string // Options.ReadOnly: why this client may not change the site
}

func (e *ReadOnlyError) Error() string {
	return fmt.Sprintf("%s: %s %s would change the site; nothing was sent", e.Reason, e.Method, e.Path)
}

// DefaultStreamIdle is three of the gate's keep-alive periods.
const DefaultStreamIdle = 45 * time.Second

// Client talks to one site. It is safe for concurrent use.
type Client struct {
	base    *url.URL // scheme://host[/root_path], no trailing slash
	baseStr string
	token   string
	timeout time.Duration
	log     *slog.Logger

	read  *resty.Client // retries idempotent requests
	write *resty.Client // never retries
	slow  *resty.Client // never retries; SlowCallTimeout

	stream *http.Client  // for event streams: no overall timeout
	idle   time.Duration // an event stream silent this long is dropped
	// headers are sent with every event stream request (a gate call):
	// those of every request, and the actor's (Options.Actor).
	headers map[string]string

	actor    string // Options.Actor: sent with every gate call
	readOnly string // Options.ReadOnly: gate calls that change the site are refused
}

// New returns a Client for the site at baseURL: CKAN's root URL (with
// ckan.root_path if CKAN is mounted below /), which is also where the gate
// listens.
func New(baseURL string, opts Options) (*Client, error) {
	u, err := url.Parse(strings.TrimSpace(baseURL))
	if err != nil {
		return nil, fmt.Errorf("ckanclient: site url %q: %w", baseURL, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("ckanclient: site url %q: want an http:// or https:// URL", baseURL)
	}
	if u.Host == "" {
		return nil, fmt.Errorf("ckanclient: site url %q: no host", baseURL)
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("ckanclient: site url %q: remove the query or fragment", baseURL)
	}
	u.Path = strings.TrimRight(u.Path, "/")
	u.RawPath = ""
	if strings.HasSuffix(u.Path, "/api/3/action") || strings.HasSuffix(u.Path, "/api/action") || strings.HasSuffix(u.Path, "/api/3") {
		return nil, fmt.Errorf("ckanclient: site url %q: give CKAN's root URL, without /api/...", baseURL)
	}

	if opts.Actor != "" {
		if err := api.CheckActor(opts.Actor); err != nil {
			return nil, fmt.Errorf("ckanclient: actor (Options.Actor, sent to the gate as %s): %w", api.ActorHeader, err)
		}
	}

	c := &Client{
		base:     u,
		baseStr:  u.String(),
		token:    opts.Token,
		timeout:  opts.Timeout,
		log:      opts.Logger,
		actor:    opts.Actor,
		readOnly: opts.ReadOnly,
	}
	if c.timeout <= 0 {
		c.timeout = DefaultTimeout
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	retries := opts.Retries
	switch {
	case retries == 0:
		retries = DefaultRetries
	case retries < 0:
		retries = 0
	}
	wait := opts.RetryWait
	if wait <= 0 {
		wait = DefaultRetryWait
	}
	ua := opts.UserAgent
	if ua == "" {
		ua = DefaultUserAgent
	}

	hc := &http.Client{}
	if opts.HTTPClient != nil {
		copied := *opts.HTTPClient
		hc = &copied
	}
	hc.Timeout = c.timeout
	hc.CheckRedirect = dropAPIKeyOnRedirect(hc.CheckRedirect)

	headers := map[string]string{
		"Accept":     "application/json",
		"User-Agent": ua,
	}
	if opts.Token != "" {
		switch opts.TokenStyle {
		case AuthRaw:
			headers["Authorization"] = opts.Token
		case AuthAPIKey:
			headers[headerAPIKey] = opts.Token
		case AuthBearer:
			headers["Authorization"] = "Bearer " + opts.Token
		default:
			return nil, fmt.Errorf("ckanclient: unknown token style %d", int(opts.TokenStyle))
		}
	}

	var newRestyOn func(hc *http.Client, retries int) *resty.Client
	newResty := func(retries int) *resty.Client { return newRestyOn(hc, retries) }
	newRestyOn = func(hc *http.Client, retries int) *resty.Client {
		r := resty.NewWithClient(hc).
			SetLogger(restyLogger{c.log}).
			SetDebug(false).
			SetDisableWarn(true).
			SetHeaders(headers).
			SetResponseBodyLimit(maxResponseBytes).
			SetRetryCount(retries).
			SetRetryWaitTime(wait).
			SetRetryMaxWaitTime(maxRetryWait)
		if retries > 0 {
			r.AddRetryCondition(retryable)
			r.AddRetryHook(func(resp *resty.Response, err error) {
				c.log.Debug("ckanclient: retrying", "url", redactURL(requestURL(resp)), "reason", retryReason(resp, err))
			})
		}
		return r
	}
	c.read = newResty(retries)
	c.write = newResty(0)
	slowClient := *hc
	slowClient.Timeout = SlowCallTimeout
	c.slow = newRestyOn(&slowClient, 0)
	streamClient := *hc
	streamClient.Timeout = 0 // a stream lasts as long as its context
	c.stream = &streamClient
	c.idle = opts.StreamIdle
	if c.idle <= 0 {
		c.idle = DefaultStreamIdle
	}
	// The event stream is a gate call: it carries the actor too. Every
	// other request gets it in do, for gate calls only.
	c.headers = maps.Clone(headers)
	if c.actor != "" {
		c.headers[api.ActorHeader] = c.actor
	}
	return c, nil
}

// BaseURL returns the site URL the client was made for.
func (c *Client) BaseURL() string { return c.baseStr }

const headerAPIKey = "X-Ckan-Api-Key"

// dropAPIKeyOnRedirect keeps X-CKAN-API-Key from following a redirect to
// another host (net/http already drops Authorization in that case).
func dropAPIKeyOnRedirect(next func(*http.Request, []*http.Request) error) func(*http.Request, []*http.Request) error {
	return func(req *http.Request, via []*http.Request) error {
		if len(via) > 0 && req.URL.Host != via[0].URL.Host {
			req.Header.Del(headerAPIKey)
		}
		if next != nil {
			return next(req, via)
		}
		if len(via) >= 10 {
			return errors.New("stopped after 10 redirects")
		}
		return nil
	}
}

// call is one HTTP exchange.
type call struct {
	method string
	path   string // below the base URL, starting with "/"
	name   string // for errors: the action name or "gate status"
	query  url.Values
	body   []byte // JSON; nil for none
	retry  bool   // idempotent: may be retried
	slow   bool   // the gate may take long (SlowCallTimeout): never retried
	isGate bool   // the gate's control API, not CKAN's Action API
	expect *int64 // SetMode's ExpectVersion, for ConflictError
	accept string // the Accept header, when not JSON
}

func (k call) gate() bool { return k.isGate }

func (c *Client) urlFor(path string) string { return c.baseStr + path }

// do sends the request and returns the response, or a *TransportError.
func (c *Client) do(ctx context.Context, k call) (*resty.Response, error) {
	if ctx == nil {
		ctx = context.Background()
	}
	if k.isGate && c.readOnly != "" && k.method != http.MethodGet && k.method != http.MethodHead {
		return nil, &ReadOnlyError{Method: k.method, Path: k.path, Reason: c.readOnly}
	}
	rc := c.write
	switch {
	case k.slow:
		rc = c.slow
	case k.retry:
		rc = c.read
	}
	req := rc.R().SetContext(ctx)
	if k.query != nil {
		req.SetQueryParamsFromValues(k.query)
	}
	if k.body != nil {
		req.SetHeader("Content-Type", "application/json").SetBody(k.body)
	}
	if k.accept != "" {
		req.SetHeader("Accept", k.accept)
	}
	if k.isGate && c.actor != "" {
		req.SetHeader(api.ActorHeader, c.actor)
	}
	u := c.urlFor(k.path)
	start := time.Now()
	resp, err := req.Execute(k.method, u)
	status := 0
	if resp != nil && resp.RawResponse != nil {
		status = resp.StatusCode()
	}
	c.log.Debug("ckanclient: request", "method", k.method, "url", redactURL(u), "call", k.name,
		"status", status, "duration", time.Since(start), "err", errString(err))
	if err != nil {
		te := c.transportError(ctx, k, u, err)
		if t, ok := te.(*TransportError); ok {
			t.spent = time.Since(start)
		}
		return nil, te
	}
	return resp, nil
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// restyLogger routes resty's own messages to slog at debug level.
type restyLogger struct{ l *slog.Logger }

func (r restyLogger) Errorf(format string, v ...any) { r.debug(format, v...) }
func (r restyLogger) Warnf(format string, v ...any)  { r.debug(format, v...) }
func (r restyLogger) Debugf(format string, v ...any) { r.debug(format, v...) }

func (r restyLogger) debug(format string, v ...any) {
	r.l.Debug("resty: " + fmt.Sprintf(format, v...))
}

func requestURL(resp *resty.Response) string {
	if resp == nil || resp.Request == nil {
		return ""
	}
	return resp.Request.URL
}

// redactURL drops user info, query and fragment: what an error or log may show.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return s
	}
	u.User = nil
	u.RawQuery = ""
	u.ForceQuery = false
	u.Fragment = ""
	return u.String()
}
