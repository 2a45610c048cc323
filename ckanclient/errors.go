package ckanclient

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/ckanops/ckanops/api"
)

// CKAN's error types ("__type" in the envelope's error object).
const (
	TypeAuthorization = "Authorization Error"
	TypeNotFound      = "Not Found Error"
	TypeValidation    = "Validation Error"
	TypeMaintenance   = "Maintenance Error" // the gate's refusal
	TypeGate          = "Gate Error"        // a gate error with no better name
)

// APIError is an error reported in CKAN's envelope
// ({"success": false, "error": {"__type": ..., "message": ...}}) or by the
// gate as {"error": "..."}.
type APIError struct {
	Status  int    // HTTP status
	Type    string // "__type": TypeAuthorization, TypeNotFound, TypeValidation, TypeMaintenance, ...
	Message string
	// Fields holds a Validation Error's messages by field; nested errors
	// are flattened to keys such as "resources[1].url".
	Fields map[string][]string

	// Set for a Maintenance Error (the gate's 503 refusal).
	Mode       api.Mode
	Until      *time.Time
	RetryAfter time.Duration // the Retry-After header; 0 when absent

	Action string // the action name ("package_show") or gate call ("gate mode")
	URL    string // the URL called, without query

	tokenSent bool   // the request carried a token
	hint      string // what to do next, when the caller knows better than the type
	gate      bool   // the answer came from the gate's control API
}

func (e *APIError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s at %s: ", e.Action, e.URL)
	detail := e.Message
	switch e.Type {
	case TypeAuthorization:
		switch {
		case e.Status == 401:
			fmt.Fprintf(&b, "the gate refused the request (401 %s) — the token is missing or wrong: set the site's token to the gate's ops token (sent as Bearer) or a sysadmin's CKAN API token", quoteDetail(detail))
		case !e.tokenSent:
			fmt.Fprintf(&b, "access denied (%d %s: %s) and no token was sent — configure a sysadmin's API token for this site", e.Status, e.Type, detail)
		case e.gate:
			fmt.Fprintf(&b, "access denied (%d %s) — the token was accepted but its user is not a sysadmin; use a sysadmin's API token or the gate's ops token", e.Status, quoteDetail(detail))
		default:
			fmt.Fprintf(&b, "access denied (%d %s: %s) — check that the token is valid (not expired or revoked) and that its user is a sysadmin", e.Status, e.Type, detail)
		}
	case TypeNotFound:
		fmt.Fprintf(&b, "not found (%d %s: %s)", e.Status, e.Type, detail)
		if e.hint != "" {
			b.WriteString(" — " + e.hint)
		} else {
			b.WriteString(" — check the id or name")
		}
	case TypeValidation:
		if len(e.Fields) == 0 {
			fmt.Fprintf(&b, "the request was rejected (%d %s: %s) — fix the request and retry", e.Status, e.Type, detail)
			break
		}
		fmt.Fprintf(&b, "the data was rejected (%d %s): %s", e.Status, e.Type, e.fieldList())
		if detail != "" {
			fmt.Fprintf(&b, " (%s)", detail)
		}
		b.WriteString(" — fix these fields and retry")
	case TypeMaintenance:
		mode := e.Mode
		if mode == "" {
			mode = "maintenance"
		}
		fmt.Fprintf(&b, "refused: the site is in %s mode", mode)
		if e.Until != nil {
			fmt.Fprintf(&b, " until %s", e.Until.UTC().Format(time.RFC3339))
		}
		fmt.Fprintf(&b, " (%d %s", e.Status, e.Type)
		if detail != "" {
			fmt.Fprintf(&b, ": %s", detail)
		}
		b.WriteString(") — nothing was changed; ")
		if e.RetryAfter > 0 {
			fmt.Fprintf(&b, "retry after %s or when the operator ends maintenance", e.RetryAfter)
		} else {
			b.WriteString("retry when the operator ends maintenance")
		}
	default:
		typ := e.Type
		if typ == "" {
			typ = "error"
		}
		fmt.Fprintf(&b, "%d %s", e.Status, typ)
		if detail != "" {
			fmt.Fprintf(&b, ": %s", detail)
		}
		if len(e.Fields) > 0 {
			fmt.Fprintf(&b, " (%s)", e.fieldList())
		}
		if e.Type == TypeGate && e.Status >= 500 {
			b.WriteString(" — see the gate's log")
		}
	}
	return b.String()
}

func quoteDetail(s string) string {
	if s == "" {
		return "no detail"
	}
	return fmt.Sprintf("%q", s)
}

// fieldList renders Fields as "name: Missing value; url: Missing value".
func (e *APIError) fieldList() string {
	keys := make([]string, 0, len(e.Fields))
	for k := range e.Fields {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, k+": "+strings.Join(e.Fields[k], ", "))
	}
	return strings.Join(parts, "; ")
}

// BadRequestError is CKAN's 400 answer whose body is a bare JSON string,
// such as "Bad request - Action name not known: foo".
type BadRequestError struct {
	Status  int
	Message string // the string, as sent
	Action  string
	URL     string
}

func (e *BadRequestError) Error() string {
	next := ""
	switch {
	case e.UnknownAction():
		next = " — this CKAN has no such action: check its name and that the plugin providing it is enabled"
	case strings.Contains(e.Message, "use POST"):
		next = " — this action changes data: call it with POST, not GET"
	case strings.Contains(e.Message, "JSON Error"):
		next = " — CKAN could not read the request's parameters"
	}
	return fmt.Sprintf("%s at %s: CKAN answered %d %q%s", e.Action, e.URL, e.Status, e.Message, next)
}

// UnknownAction reports whether CKAN said the action does not exist.
func (e *BadRequestError) UnknownAction() bool {
	return strings.Contains(e.Message, "Action name not known")
}

// HTTPError is an answer that is neither CKAN's JSON nor the gate's: an
// HTML or text page from CKAN, uwsgi, nginx, the gate or something else.
type HTTPError struct {
	Status      int
	ContentType string
	Server      string // the Server header, when sent
	Snippet     string // the page's title and first text, shortened
	Method      string
	Action      string
	URL         string

	gate bool // the request was to the gate's control API
}

func (e *HTTPError) Error() string {
	kind := "an HTML"
	if !strings.Contains(strings.ToLower(e.ContentType), "html") {
		if e.ContentType == "" {
			kind = "a"
		} else {
			kind = "a " + mediaType(e.ContentType)
		}
	}
	from := ""
	if e.Server != "" {
		from = " from " + e.Server
	}
	what := fmt.Sprintf("got %s %d page%s", kind, e.Status, from)
	if e.Snippet != "" {
		what += fmt.Sprintf(" (%q)", e.Snippet)
	}
	var next string
	switch {
	case e.Status >= 200 && e.Status < 300:
		next = "the URL serves a web page, not CKAN's API: check the site's url (CKAN's root, without /api)"
		if e.gate {
			next = "no ckanops gate answered at this URL: check that the site's url points at the gate"
		}
	case e.Status == 404 && e.gate:
		next = "no ckanops gate answers at this URL: is the gate running in front of CKAN, and is the site's url the gate's?"
	case e.Status == 404:
		next = "the URL is not a CKAN API: check the site's url (CKAN's root, e.g. https://data.example.org, without /api)"
	case e.Status == 405:
		next = fmt.Sprintf("the server does not accept %s here, so the URL does not reach CKAN's API: check the site's url", e.Method)
	case e.Status == 401 || e.Status == 403:
		next = "a proxy or server in front of CKAN refused access (basic auth or an IP allow-list?)"
	case e.Status == 500:
		next = "the server failed with an internal error: see CKAN's log (uwsgi/gunicorn) for the traceback"
	case e.Status == 502:
		next = "the proxy could not reach CKAN: is CKAN's WSGI server (uwsgi/gunicorn) or the gate running?"
	case e.Status == 503:
		next = "the service is unavailable: CKAN is starting, overloaded, or behind a maintenance page; try again later"
	case e.Status == 504:
		next = "the proxy gave up waiting for CKAN: CKAN is overloaded or a request is stuck"
	default:
		next = "this is not an answer from CKAN's API: check the site's url"
	}
	return fmt.Sprintf("%s at %s: %s — %s", e.Action, e.URL, what, next)
}

func mediaType(ct string) string {
	if i := strings.IndexByte(ct, ';'); i >= 0 {
		ct = ct[:i]
	}
	return strings.TrimSpace(ct)
}

// DecodeError is an answer that claims success (or an error) but cannot be
// read: truncated or malformed JSON, or JSON without CKAN's envelope.
type DecodeError struct {
	Status      int
	ContentType string
	Snippet     string // the start of the body
	Action      string
	URL         string
	Err         error // what the decoder said
}

func (e *DecodeError) Error() string {
	return fmt.Sprintf("%s at %s: cannot read the answer (%d, %s, starting %q): %v — the answer was cut short or did not come from CKAN or the gate; check the site's url and any proxy in front of it",
		e.Action, e.URL, e.Status, orNone(mediaType(e.ContentType)), e.Snippet, e.Err)
}

func (e *DecodeError) Unwrap() error { return e.Err }

func orNone(s string) string {
	if s == "" {
		return "no content type"
	}
	return s
}

// ConflictError is the gate's 409 answer to a mode change whose
// ExpectVersion no longer matches: someone else changed the mode first.
type ConflictError struct {
	Current  api.Status // the gate's record now
	Expected *int64     // the version the request expected
	Message  string     // the gate's error text, if any
	URL      string
}

func (e *ConflictError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "gate mode at %s: not changed: the mode was changed meanwhile", e.URL)
	if e.Current.Actor != "" {
		fmt.Fprintf(&b, " by %s", e.Current.Actor)
	}
	if !e.Current.Since.IsZero() {
		fmt.Fprintf(&b, " at %s", e.Current.Since.UTC().Format(time.RFC3339))
	}
	if e.Current.Mode != "" {
		fmt.Fprintf(&b, " to %s", e.Current.Mode)
	}
	if e.Current.Reason != "" {
		fmt.Fprintf(&b, " (reason: %q)", e.Current.Reason)
	}
	fmt.Fprintf(&b, "; it is now version %d", e.Current.Version)
	if e.Expected != nil {
		fmt.Fprintf(&b, ", you expected %d", *e.Expected)
	}
	b.WriteString(" — re-read the status, check that the change still makes sense, and retry")
	return b.String()
}

// TransportError is a request that got no HTTP answer: connection refused,
// DNS, TLS, a timeout, or cancellation. errors.Is(err,
// context.DeadlineExceeded) holds for timeouts and errors.Is(err,
// context.Canceled) for cancellation.
type TransportError struct {
	Op  string // the action or gate call
	URL string
	Err error

	kind  transportKind
	limit time.Duration // the per-request timeout, for the message
	spent time.Duration // how long the call took in all, retries included
}

type transportKind int

const (
	kindOther transportKind = iota
	kindRefused
	kindDNS
	kindTLS
	kindTimeout
	kindDeadline // the caller's context deadline
	kindCanceled
	kindReset
)

func (e *TransportError) Error() string {
	host := e.URL
	if u, err := url.Parse(e.URL); err == nil && u.Host != "" {
		host = u.Scheme + "://" + u.Host
	}
	switch e.kind {
	case kindRefused:
		return fmt.Sprintf("%s: nothing is listening at %s — is the gate/CKAN running, and is the site's url right? (%v)", e.Op, host, e.Err)
	case kindDNS:
		return fmt.Sprintf("%s: cannot resolve the host of %s — check the site's url and DNS (%v)", e.Op, host, e.Err)
	case kindTLS:
		return fmt.Sprintf("%s: TLS with %s failed — check the certificate, or whether the site speaks http rather than https (%v)", e.Op, host, e.Err)
	case kindTimeout:
		within := e.limit.String()
		if e.spent >= 2*e.limit {
			within += fmt.Sprintf(" a try (%s in all, with retries)", e.spent.Round(100*time.Millisecond))
		}
		return fmt.Sprintf("%s: no answer within %s from %s — CKAN or the gate is hanging or overloaded; check it or raise the timeout", e.Op, within, e.URL)
	case kindDeadline:
		return fmt.Sprintf("%s: no answer from %s before the caller's deadline — CKAN or the gate is slow or hanging", e.Op, e.URL)
	case kindCanceled:
		return fmt.Sprintf("%s: request to %s cancelled", e.Op, e.URL)
	case kindReset:
		return fmt.Sprintf("%s: the connection to %s closed before a full answer — a proxy, the gate or CKAN dropped it; check their logs (%v)", e.Op, host, e.Err)
	}
	return fmt.Sprintf("%s: request to %s failed: %v", e.Op, e.URL, e.Err)
}

func (e *TransportError) Unwrap() error { return e.Err }

// Is makes errors.Is(err, context.DeadlineExceeded) true for every
// timeout, whichever layer reported it.
func (e *TransportError) Is(target error) bool {
	switch target {
	case context.DeadlineExceeded:
		return e.kind == kindTimeout || e.kind == kindDeadline
	case context.Canceled:
		return e.kind == kindCanceled
	}
	return false
}

// Timeout reports whether the request timed out.
func (e *TransportError) Timeout() bool { return e.kind == kindTimeout || e.kind == kindDeadline }

func (c *Client) transportError(ctx context.Context, k call, u string, err error) error {
	te := &TransportError{Op: k.name, URL: redactURL(u), Err: err, limit: c.timeout}
	var dnsErr *net.DNSError
	var ne net.Error
	switch {
	case errors.Is(ctx.Err(), context.Canceled) || errors.Is(err, context.Canceled):
		te.kind = kindCanceled
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		te.kind = kindDeadline
	case errors.Is(err, syscall.ECONNREFUSED):
		te.kind = kindRefused
	case errors.As(err, &dnsErr):
		te.kind = kindDNS
	case isTLSError(err):
		te.kind = kindTLS
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		te.kind = kindTimeout
	case retryableErr(err):
		te.kind = kindReset
	}
	return te
}

func asAPIError(err error) *APIError {
	var e *APIError
	if errors.As(err, &e) {
		return e
	}
	return nil
}

// IsAuthorization reports whether err is an Authorization Error: a missing
// or wrong token (401) or a user who may not do this (403).
func IsAuthorization(err error) bool {
	e := asAPIError(err)
	return e != nil && e.Type == TypeAuthorization
}

// IsNotFound reports whether err is CKAN's Not Found Error (the object
// does not exist; not an HTML 404, which means a wrong URL).
func IsNotFound(err error) bool {
	e := asAPIError(err)
	return e != nil && e.Type == TypeNotFound
}

// IsValidation reports whether err is a Validation Error.
func IsValidation(err error) bool {
	e := asAPIError(err)
	return e != nil && e.Type == TypeValidation
}

// IsMaintenance reports whether err is the gate's maintenance refusal.
func IsMaintenance(err error) bool {
	e := asAPIError(err)
	return e != nil && e.Type == TypeMaintenance
}

// IsConflict reports whether err is a mode change lost to another change.
func IsConflict(err error) bool {
	var e *ConflictError
	return errors.As(err, &e)
}

// IsUnknownAction reports whether CKAN said the action does not exist.
func IsUnknownAction(err error) bool {
	var e *BadRequestError
	return errors.As(err, &e) && e.UnknownAction()
}
