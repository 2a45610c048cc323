package gate

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
)

// What the gate forwards. The classifier judges the method and the path of
// the request line; CKAN must route exactly that request. A WSGI server or a
// middleware in front of CKAN may take the path it routes from elsewhere:
//
//   - gunicorn maps a header named SCRIPT_NAME onto the WSGI variable
//     (cutting it off PATH_INFO), and headers whose names hold '_' and '-'
//     collide in the CGI environ (Foo_Bar and Foo-Bar are both HTTP_FOO_BAR);
//   - frameworks and rewriting middlewares read X-Original-URL,
//     X-Rewrite-URL, X-Forwarded-Prefix (Werkzeug's ProxyFix), X-Script-Name
//     and the like.
//
// So the gate drops every request header whose name contains '_' (nginx's
// default, underscores_in_headers off), whoever sent it, and the routing
// headers below unless a trusted proxy sent them. It forwards no request
// trailers. The rule is the same in every mode: the path CKAN routes is
// the one the gate judged.

// routingHeaders may change the path a WSGI server or framework routes.
// Matched case-insensitively; names with '_' are dropped anyway.
// deploy/nginx/ckan.conf clears the same list (nginx is a trusted proxy
// that passes on what clients send): a test keeps the two in step.
var routingHeaders = []string{
	"X-Original-URL", "X-Original-URI", "X-Rewrite-URL", "X-Forwarded-Prefix",
	"X-Forwarded-Path", "X-Forwarded-URI", "X-Script-Name", "Script-Name",
	"Path-Info", "Request-URI", "X-Envoy-Original-Path",
}

// isRoutingHeader reports whether name is one of routingHeaders.
func isRoutingHeader(name string) bool {
	for _, h := range routingHeaders {
		if strings.EqualFold(name, h) {
			return true
		}
	}
	return false
}

// scrubHeaders removes from out what could make CKAN route another request
// than the one judged: underscore names always, routing headers unless the
// peer is a trusted proxy. It returns the names it dropped, for the log.
func scrubHeaders(out http.Header, trustedPeer bool) (underscore, routing []string) {
	for name := range out {
		switch {
		case strings.IndexByte(name, '_') >= 0:
			underscore = append(underscore, name)
			delete(out, name)
		case !trustedPeer && isRoutingHeader(name):
			routing = append(routing, name)
			delete(out, name)
		}
	}
	return underscore, routing
}

// errLeftLive is the cause with which a switch away from live mode closes
// an open tunnel.
var errLeftLive = errors.New("the site left live mode: tunnel closed")

// isUpgrade reports whether r asks for another protocol on its connection
// (WebSocket, h2c): after the switch, the bytes on it are never classified.
func isUpgrade(r *http.Request) bool {
	_, ok := r.Header["Upgrade"]
	return ok
}

// bodyWatch remembers why the client's request body could not be read to
// its end: a malformed chunk, a truncated chunk, fewer bytes than
// Content-Length. The transport then aborts the request upstream (it sends
// no closing chunk and drops the connection), and the gate answers the
// client 400 instead of calling CKAN unreachable.
type bodyWatch struct {
	rc io.ReadCloser

	mu  sync.Mutex
	err error
}

func (b *bodyWatch) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	if err != nil && err != io.EOF {
		b.mu.Lock()
		if b.err == nil {
			b.err = err
		}
		b.mu.Unlock()
	}
	return n, err
}

func (b *bodyWatch) Close() error { return b.rc.Close() }

// failed returns the first error reading the body, or nil.
func (b *bodyWatch) failed() error {
	if b == nil {
		return nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.err
}

// watchBody wraps r's body, if it has one.
func watchBody(r *http.Request) *bodyWatch {
	if r.Body == nil || r.Body == http.NoBody {
		return nil
	}
	w := &bodyWatch{rc: r.Body}
	r.Body = w
	return w
}

// clientGone reports whether err or the request's context says that the
// client went away before an answer could be given.
func clientGone(r *http.Request, err error) bool {
	return errors.Is(err, context.Canceled) || r.Context().Err() != nil
}
