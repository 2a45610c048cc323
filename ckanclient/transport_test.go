package ckanclient_test

import (
	"context"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/ckanops/ckanops/api"

	"github.com/ckanops/ckanops/ckanclient"
)

// closedPort returns a loopback address nothing listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return addr
}

// hanging returns a server whose handler blocks until the test ends, and
// a channel that receives once per request that reached the handler.
func hanging(t *testing.T) (*server, <-chan struct{}) {
	t.Helper()
	release := make(chan struct{})
	entered := make(chan struct{}, 16)
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		entered <- struct{}{}
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	t.Cleanup(func() { close(release) }) // runs before srv.Close
	return srv, entered
}

func TestConnectionRefused(t *testing.T) {
	addr := closedPort(t)
	for _, retries := range []int{-1, 2} {
		c := newClient(t, "http://"+addr, ckanclient.Options{Token: testToken, Retries: retries})
		for name, call := range map[string]func() error{
			"Get":    func() error { return c.Get(ctx(t), "status_show", nil, nil) },
			"Call":   func() error { return c.Call(ctx(t), "package_create", nil, nil) },
			"Status": func() error { _, err := c.Status(ctx(t)); return err },
			"SetMode": func() error {
				_, err := c.SetMode(ctx(t), api.ModeRequest{Mode: api.ModeLive})
				return err
			},
			"StatusShow": func() error { _, err := c.StatusShow(ctx(t)); return err },
		} {
			err := call()
			te := as[*ckanclient.TransportError](t, err)
			if te.Timeout() || errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("%s: a refused connection reported as a timeout: %v", name, err)
			}
			t.Log(err)
			checkErrText(t, err, "nothing is listening at http://"+addr, "is the gate/CKAN running")
		}
	}
}

func TestTimeout(t *testing.T) {
	srv, _ := hanging(t)
	c := newClient(t, srv.URL, ckanclient.Options{Token: testToken, Timeout: 200 * time.Millisecond, Retries: -1})
	for name, call := range map[string]func() error{
		"Get":    func() error { return c.Get(ctx(t), "status_show", nil, nil) },
		"Call":   func() error { return c.Call(ctx(t), "package_create", nil, nil) },
		"Status": func() error { _, err := c.Status(ctx(t)); return err },
		"Health": func() error { _, err := c.Health(ctx(t)); return err },
	} {
		err := call()
		te := as[*ckanclient.TransportError](t, err)
		if !te.Timeout() || !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
			t.Errorf("%s: want a timeout, got %v", name, err)
		}
		t.Log(err)
		checkErrText(t, err, "no answer within 200ms", srv.URL)
	}
}

func TestTimeoutWhileReadingBody(t *testing.T) {
	release := make(chan struct{})
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", jsonCT)
		w.WriteHeader(200)
		_, _ = w.Write([]byte(`{"success": true, "result": {`))
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	t.Cleanup(func() { close(release) })
	c := newClient(t, srv.URL, ckanclient.Options{Timeout: 200 * time.Millisecond, Retries: -1})
	err := c.Get(ctx(t), "status_show", nil, &ckanclient.CKANStatus{})
	as[*ckanclient.TransportError](t, err)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("want DeadlineExceeded, got %v", err)
	}
}

func TestCallerDeadline(t *testing.T) {
	srv, _ := hanging(t)
	c := newClient(t, srv.URL, ckanclient.Options{Timeout: time.Minute})
	cx, cancel := context.WithTimeout(ctx(t), 100*time.Millisecond)
	defer cancel()
	err := c.Get(cx, "status_show", nil, nil)
	as[*ckanclient.TransportError](t, err)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("want DeadlineExceeded, got %v", err)
	}
	t.Log(err)
	checkErrText(t, err, "before the caller's deadline")
}

func TestCancel(t *testing.T) {
	for _, method := range []string{"Get", "Call", "Status", "SetMode"} {
		t.Run(method, func(t *testing.T) {
			srv, entered := hanging(t)
			// Timeout and retries large: only the cancellation can end the call.
			c := newClient(t, srv.URL, ckanclient.Options{Timeout: time.Hour, Retries: 5})
			cx, cancel := context.WithCancel(ctx(t))
			go func() {
				<-entered
				cancel()
			}()
			var err error
			switch method {
			case "Get":
				err = c.Get(cx, "status_show", nil, nil)
			case "Call":
				err = c.Call(cx, "package_create", nil, nil)
			case "Status":
				_, err = c.Status(cx)
			case "SetMode":
				_, err = c.SetMode(cx, api.ModeRequest{Mode: api.ModeDown})
			}
			te := as[*ckanclient.TransportError](t, err)
			if !errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) || te.Timeout() {
				t.Errorf("want Canceled, got %v", err)
			}
			checkErrText(t, err, "cancelled")
			if n := srv.hits.Load(); n != 1 {
				t.Errorf("server hit %d times after cancel, want 1", n)
			}
		})
	}
}

func TestCancelledBeforeCall(t *testing.T) {
	srv := newServer(t, fixed(200, jsonCT, `{"success": true, "result": {}}`))
	c := newClient(t, srv.URL, ckanclient.Options{})
	cx, cancel := context.WithCancel(ctx(t))
	cancel()
	err := c.Get(cx, "status_show", nil, nil)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("want Canceled, got %v", err)
	}
	if n := srv.hits.Load(); n != 0 {
		t.Errorf("server hit %d times", n)
	}
}

func TestTLSFailure(t *testing.T) {
	srv := quietTLSServer(t)
	c := newClient(t, srv.URL, ckanclient.Options{Token: testToken}) // does not trust the test CA
	err := c.Get(ctx(t), "status_show", nil, nil)
	as[*ckanclient.TransportError](t, err)
	t.Log(err)
	checkErrText(t, err, "TLS with https://127.0.0.1", "certificate")

	// The same server trusted: it works.
	c = newClient(t, srv.URL, ckanclient.Options{HTTPClient: srv.Client()})
	if err := c.Get(ctx(t), "status_show", nil, nil); err != nil {
		t.Fatal(err)
	}
}

func TestHTTPToHTTPSPort(t *testing.T) {
	srv := quietTLSServer(t)
	// http:// to a TLS port: the server answers 400 in plain text.
	c := newClient(t, strings.Replace(srv.URL, "https://", "http://", 1), ckanclient.Options{Retries: -1})
	err := c.Get(ctx(t), "status_show", nil, nil)
	e := as[*ckanclient.HTTPError](t, err)
	if e.Status != 400 {
		t.Errorf("got %+v", e)
	}
}

func TestDNSFailure(t *testing.T) {
	hc := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return nil, &net.OpError{Op: "dial", Net: network, Err: &net.DNSError{Err: "no such host", Name: "ckan.example.org", IsNotFound: true}}
		},
	}}
	c := newClient(t, "https://ckan.example.org", ckanclient.Options{HTTPClient: hc})
	err := c.Get(ctx(t), "status_show", nil, nil)
	as[*ckanclient.TransportError](t, err)
	t.Log(err)
	checkErrText(t, err, "cannot resolve the host of https://ckan.example.org", "DNS")
}

func TestConnectionDropped(t *testing.T) {
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		conn, _, err := w.(http.Hijacker).Hijack()
		if err != nil {
			t.Error(err)
			return
		}
		_ = conn.Close()
	})
	c := newClient(t, srv.URL, ckanclient.Options{})
	err := c.Call(ctx(t), "package_create", nil, nil)
	as[*ckanclient.TransportError](t, err)
	t.Log(err)
	checkErrText(t, err, "closed before a full answer")
	if n := srv.hits.Load(); n != 1 {
		t.Errorf("POST sent %d times, want 1", n)
	}
	srv.hits.Store(0)
	err = c.Get(ctx(t), "status_show", nil, nil)
	as[*ckanclient.TransportError](t, err)
	if n := srv.hits.Load(); n != 3 {
		t.Errorf("GET sent %d times, want 3 (2 retries)", n)
	}
}

func TestNewRejectsBadURLs(t *testing.T) {
	for _, u := range []string{
		"", "data.example.org", "ftp://data.example.org", "http://", "https://data.example.org/?x=1",
		"https://data.example.org/api/3/action", "https://data.example.org/api/3/action/",
		"http://[::1",
	} {
		if _, err := ckanclient.New(u, ckanclient.Options{}); err == nil {
			t.Errorf("New(%q) accepted", u)
		}
	}
	if _, err := ckanclient.New("https://data.example.org", ckanclient.Options{Token: "x", TokenStyle: ckanclient.TokenStyle(9)}); err == nil {
		t.Error("New accepted an unknown token style")
	}
	for in, want := range map[string]string{
		"https://data.example.org/":       "https://data.example.org",
		"https://data.example.org/data//": "https://data.example.org/data",
		" http://127.0.0.1:5000 ":         "http://127.0.0.1:5000",
	} {
		c, err := ckanclient.New(in, ckanclient.Options{})
		if err != nil {
			t.Errorf("New(%q): %v", in, err)
			continue
		}
		if c.BaseURL() != want {
			t.Errorf("New(%q).BaseURL() = %q, want %q", in, c.BaseURL(), want)
		}
	}
}

// quietTLSServer is a TLS server that does not log failed handshakes.
func quietTLSServer(t *testing.T) *httptest.Server {
	srv := httptest.NewUnstartedServer(fixed(200, jsonCT, `{"success": true, "result": {}}`))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv
}

// With retries, a timeout says how long the call took in all, not only
// the limit of one try.
func TestTimeoutWithRetriesSaysTheTotal(t *testing.T) {
	srv, _ := hanging(t)
	c := newClient(t, srv.URL, ckanclient.Options{Token: testToken, Timeout: 200 * time.Millisecond, Retries: 2})
	_, err := c.Status(ctx(t))
	as[*ckanclient.TransportError](t, err)
	checkErrText(t, err, "no answer within 200ms a try (", "in all, with retries)")
}
