package gate

import (
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"strings"
	"testing"
)

func TestNoticeScriptHandler(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("/-/ckanops/notice.js", serveNoticeScript)
	srv := httptest.NewServer(mux)
	defer srv.Close()
	onDisk, err := os.ReadFile("assets/notice.js")
	if err != nil {
		t.Fatal(err)
	}

	do := func(method string, hdr ...string) (*http.Response, string) {
		t.Helper()
		req, _ := http.NewRequest(method, srv.URL+"/-/ckanops/notice.js", nil)
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		res, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res, string(b)
	}

	res, body := do("GET")
	if res.StatusCode != 200 || body != string(onDisk) {
		t.Fatalf("GET: %d, %d bytes (want the %d of assets/notice.js)", res.StatusCode, len(body), len(onDisk))
	}
	want := map[string]string{
		"Content-Type":           "text/javascript; charset=utf-8",
		"Cache-Control":          "public, max-age=300",
		"X-Content-Type-Options": "nosniff",
	}
	for k, v := range want {
		if got := res.Header.Get(k); got != v {
			t.Errorf("GET: %s = %q, want %q", k, got, v)
		}
	}
	etag := res.Header.Get("Etag")
	if !regexp.MustCompile(`^"[A-Za-z0-9_-]{24}"$`).MatchString(etag) {
		t.Errorf("ETag %q is not a strong validator", etag)
	}
	if res.Header.Get("Set-Cookie") != "" || res.Header.Get("Last-Modified") != "" {
		t.Errorf("unexpected headers: %v", res.Header)
	}

	res, body = do("HEAD")
	if res.StatusCode != 200 || body != "" || res.Header.Get("Etag") != etag || res.Header.Get("Content-Type") != want["Content-Type"] {
		t.Errorf("HEAD: %d %q %v", res.StatusCode, body, res.Header)
	}

	res, body = do("GET", "If-None-Match", etag)
	if res.StatusCode != http.StatusNotModified || body != "" || res.Header.Get("Etag") != etag {
		t.Errorf("GET If-None-Match: %d %q", res.StatusCode, body)
	}
	res, body = do("GET", "If-None-Match", `"other"`)
	if res.StatusCode != 200 || body != string(onDisk) {
		t.Errorf("GET with another ETag: %d", res.StatusCode)
	}

	for _, m := range []string{"POST", "PUT", "DELETE"} {
		res, _ := do(m)
		if res.StatusCode != http.StatusMethodNotAllowed || res.Header.Get("Allow") != "GET, HEAD" {
			t.Errorf("%s: %d, Allow %q", m, res.StatusCode, res.Header.Get("Allow"))
		}
	}
}

// TestNoticeScriptIsPlain holds the script to what a strict
// Content-Security-Policy and old browsers allow: no eval, no inline
// handlers or style attributes, no HTML from text, nothing past ES2017.
func TestNoticeScriptIsPlain(t *testing.T) {
	var code strings.Builder
	for _, line := range strings.Split(noticeScript, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(line), "//") {
			code.WriteString(line + "\n")
		}
	}
	src := code.String()
	for _, bad := range []string{"innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function",
		"setAttribute('style'", `setAttribute("style"`, ".cssText", "setAttribute('on", "?.", "??", "import(", "setTimeout('", "setInterval("} {
		if strings.Contains(src, bad) {
			t.Errorf("notice.js uses %q", bad)
		}
	}
	for _, need := range []string{"'/-/ckanops/notice.js'", "data-ckanops-poll", "data-ckanops-write", "cache: 'no-store'", "credentials: 'omit'",
		"document.hidden", "visibilitychange", "ckanops-submit-notice", "textContent",
		"Saving is paused for maintenance. Nothing you typed is lost: keep this page open and save once the site is back.",
		"Maintenance is over:", "reload the page", "the work is taking longer than planned"} {
		if !strings.Contains(src, need) {
			t.Errorf("notice.js lacks %q", need)
		}
	}
}
