package gate

import (
	"crypto/sha256"
	_ "embed"
	"encoding/base64"
	"net/http"
	"strings"
	"time"
)

// noticeScript is the script that annotated and announced pages load
// (annotate.Options.Script): it polls the public status and tells an open
// page when a maintenance starts, overruns or ends. See the file's
// comment for what it does to the page.
//
//go:embed assets/notice.js
var noticeScript string

// noticeScriptETag names this build's script: a strong validator over its
// bytes, so a browser's copy is revalidated for nothing after a restart
// and replaced after an upgrade.
var noticeScriptETag = func() string {
	sum := sha256.Sum256([]byte(noticeScript))
	return `"` + base64.RawURLEncoding.EncodeToString(sum[:18]) + `"`
}()

// serveNoticeScript answers GET and HEAD /-/ckanops/notice.js (public: no
// authentication) with the script: text/javascript, cacheable for five
// minutes by anyone (it holds nothing about the site or the reader), with
// an ETag for conditional requests and nosniff. Any other method is 405.
func serveNoticeScript(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		h.Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed: GET or HEAD", http.StatusMethodNotAllowed)
		return
	}
	h.Set("Content-Type", "text/javascript; charset=utf-8")
	h.Set("Cache-Control", "public, max-age=300")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Etag", noticeScriptETag)
	// ServeContent answers If-None-Match (304), ranges and HEAD.
	http.ServeContent(w, r, "notice.js", time.Time{}, strings.NewReader(noticeScript))
}
