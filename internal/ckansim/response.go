package ckansim

import (
	"compress/gzip"
	"mime"
	"net/http"
	"strings"
)

// response wraps the client's ResponseWriter: it remembers the status for
// the journal and gzips text answers for clients that accept it, as CKAN
// behind its usual front end does.
type response struct {
	http.ResponseWriter
	status      int
	acceptsGzip bool
	gz          *gzip.Writer
	wroteHeader bool
}

func newResponse(w http.ResponseWriter, r *http.Request) *response {
	return &response{ResponseWriter: w, acceptsGzip: acceptsGzip(r.Header.Get("Accept-Encoding"))}
}

// acceptsGzip reports whether an Accept-Encoding value admits gzip.
func acceptsGzip(header string) bool {
	for _, part := range strings.Split(header, ",") {
		coding, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		if !strings.EqualFold(strings.TrimSpace(coding), "gzip") {
			continue
		}
		q := strings.ReplaceAll(strings.TrimSpace(params), " ", "")
		return q != "q=0" && q != "q=0.0" && q != "q=0.00" && q != "q=0.000"
	}
	return false
}

// compressible reports whether a content type is one the front end gzips.
func compressible(contentType string) bool {
	mt, _, _ := mime.ParseMediaType(contentType)
	switch mt {
	case "text/html", "application/json", "text/css", "text/javascript",
		"application/javascript", "application/atom+xml":
		return true
	}
	return false
}

func (rw *response) WriteHeader(code int) {
	if rw.wroteHeader {
		return
	}
	rw.wroteHeader, rw.status = true, code
	h := rw.Header()
	if compressible(h.Get("Content-Type")) && code != http.StatusNoContent && code != http.StatusNotModified {
		h.Add("Vary", "Accept-Encoding")
		if rw.acceptsGzip {
			h.Set("Content-Encoding", "gzip")
			h.Del("Content-Length")
			rw.gz = gzip.NewWriter(rw.ResponseWriter)
		}
	}
	rw.ResponseWriter.WriteHeader(code)
}

func (rw *response) Write(p []byte) (int, error) {
	if !rw.wroteHeader {
		rw.WriteHeader(http.StatusOK)
	}
	if rw.gz != nil {
		return rw.gz.Write(p)
	}
	return rw.ResponseWriter.Write(p)
}

// finish flushes the gzip stream, if any, and settles the status of an
// answer that wrote nothing.
func (rw *response) finish() {
	if rw.gz != nil {
		rw.gz.Close()
	}
	if rw.status == 0 {
		rw.status = http.StatusOK
	}
}
