package gate

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
)

// TestAnnotatedPageFlushes: an annotated page whose upstream length was
// known goes out as the live proxy sends it, without a flush after each
// write (modifyResponse, wholeAnnotatedPage); a page of unknown length (a
// stream) is still flushed as it goes. Both are annotated all the same.
func TestAnnotatedPageFlushes(t *testing.T) {
	page := "<!doctype html><html><head><title>t</title></head><body><p>" + strings.Repeat("x", 64<<10) + "</p>" +
		`<form method="post" action="/dataset/new"><input name="x"></form></body></html>`
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		if r.URL.Path == "/stream/" {
			w.Write([]byte(page[:100]))
			w.(http.Flusher).Flush() // no Content-Length: chunked
			w.Write([]byte(page[100:]))
			return
		}
		w.Header().Set("Content-Length", strconv.Itoa(len(page)))
		w.Write([]byte(page))
	}))
	defer up.Close()
	target, _ := url.Parse(up.URL)
	g := benchGate(t, target, "read-only")
	for _, c := range []struct {
		path    string
		flushed bool
	}{
		{"/dataset/", false},
		{"/stream/", true},
	} {
		rec := httptest.NewRecorder()
		g.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, c.path, nil))
		body := rec.Body.String()
		if rec.Code != http.StatusOK || !strings.Contains(body, `class="ckanops-banner"`) || strings.Contains(body, `action="/dataset/new"`) ||
			!strings.Contains(body, strings.Repeat("x", 64<<10)) {
			t.Fatalf("%s: %d, %d bytes: not the annotated page", c.path, rec.Code, len(body))
		}
		if rec.Header().Get("Content-Length") != "" {
			t.Errorf("%s: Content-Length %q on an annotated page", c.path, rec.Header().Get("Content-Length"))
		}
		if rec.Flushed != c.flushed {
			t.Errorf("%s: flushed %v, want %v", c.path, rec.Flushed, c.flushed)
		}
	}
}
