package ckanclient_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ckanops/ckanops/ckanclient"
)

// testToken looks like a CKAN API token; no error or log may contain it.
const testToken = "eyJ0eXAiOiJKV1QiLCJhbGciOiJIUzI1NiJ9.tok-5f3a9c1e"

// server is an httptest.Server that counts the requests it answered.
type server struct {
	*httptest.Server
	hits atomic.Int64
}

func newServer(t *testing.T, h http.HandlerFunc) *server {
	t.Helper()
	s := &server{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.hits.Add(1)
		h(w, r)
	}))
	t.Cleanup(s.Close)
	return s
}

// fixed answers every request with the same status, headers and body.
func fixed(status int, contentType, body string, headers ...string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if contentType != "" {
			w.Header().Set("Content-Type", contentType)
		}
		for i := 0; i+1 < len(headers); i += 2 {
			w.Header().Set(headers[i], headers[i+1])
		}
		w.WriteHeader(status)
		_, _ = w.Write([]byte(body))
	}
}

func page(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "pages", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func wire(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "wire", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// newClient returns a client with the test token, quick retries and a
// logger whose output the test checks for the token at the end.
func newClient(t *testing.T, baseURL string, opts ckanclient.Options) *ckanclient.Client {
	t.Helper()
	if opts.RetryWait == 0 {
		opts.RetryWait = time.Millisecond
	}
	if opts.Logger == nil {
		buf := &lockedBuffer{}
		opts.Logger = slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
		t.Cleanup(func() {
			if opts.Token != "" && strings.Contains(buf.String(), opts.Token) {
				t.Errorf("the log contains the token:\n%s", buf.String())
			}
		})
	}
	c, err := ckanclient.New(baseURL, opts)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// checkErrText fails if err's message lacks any of want or holds the token.
func checkErrText(t *testing.T, err error, want ...string) {
	t.Helper()
	if err == nil {
		t.Fatal("want an error, got nil")
	}
	msg := err.Error()
	if strings.Contains(msg, testToken) {
		t.Errorf("error message contains the token: %s", msg)
	}
	for _, w := range want {
		if !strings.Contains(msg, w) {
			t.Errorf("error message lacks %q:\n%s", w, msg)
		}
	}
}

func as[T error](t *testing.T, err error) T {
	t.Helper()
	var target T
	if !errors.As(err, &target) {
		t.Fatalf("want %T, got %T: %v", target, err, err)
	}
	return target
}

func ctx(t *testing.T) context.Context { return t.Context() }
