package annotate

import (
	"bytes"
	"compress/flate"
	"compress/gzip"
	"compress/zlib"
	"io"
	"log"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/andybalholm/brotli"
)

// codec is one content coding as the tests produce and check it.
type codec struct {
	name, header string
	encode       func([]byte) []byte
	decode       func(io.Reader) (io.Reader, error)
}

var codecs = []codec{
	{"identity", "", func(b []byte) []byte { return b }, func(r io.Reader) (io.Reader, error) { return r, nil }},
	{"gzip", "gzip", func(b []byte) []byte {
		var buf bytes.Buffer
		w := gzip.NewWriter(&buf)
		w.Write(b)
		w.Close()
		return buf.Bytes()
	}, func(r io.Reader) (io.Reader, error) { return gzip.NewReader(r) }},
	{"deflate (zlib)", "deflate", func(b []byte) []byte {
		var buf bytes.Buffer
		w := zlib.NewWriter(&buf)
		w.Write(b)
		w.Close()
		return buf.Bytes()
	}, func(r io.Reader) (io.Reader, error) { return zlib.NewReader(r) }},
	{"deflate (raw)", "deflate", func(b []byte) []byte {
		var buf bytes.Buffer
		w, _ := flate.NewWriter(&buf, flate.BestCompression)
		w.Write(b)
		w.Close()
		return buf.Bytes()
	}, func(r io.Reader) (io.Reader, error) { return flate.NewReader(r), nil }},
	{"br", "br", func(b []byte) []byte {
		var buf bytes.Buffer
		w := brotli.NewWriter(&buf)
		w.Write(b)
		w.Close()
		return buf.Bytes()
	}, func(r io.Reader) (io.Reader, error) { return brotli.NewReader(r), nil }},
}

// upstream builds the response the proxy got from CKAN.
func upstream(body []byte, header http.Header) *http.Response {
	h := http.Header{
		"Content-Type":   {"text/html; charset=utf-8"},
		"Content-Length": {strconv.Itoa(len(body))},
		"Cache-Control":  {"private"},
		"Set-Cookie":     {"ckan=abc; Path=/; HttpOnly"},
	}
	maps.Copy(h, header)
	return &http.Response{
		StatusCode:    http.StatusOK,
		Header:        h,
		Body:          &closeRecorder{Reader: bytes.NewReader(body)},
		ContentLength: int64(len(body)),
		Request:       httptest.NewRequest(http.MethodGet, "https://data.example.org/dataset/edit/climate-observations", nil),
	}
}

// readResponse rewrites resp with the test options and decodes its body.
func readResponse(t *testing.T, resp *http.Response, c codec) string {
	t.Helper()
	if err := Response(resp, testOptions()); err != nil {
		t.Fatal(err)
	}
	if got := resp.Header.Get("Content-Encoding"); got != c.header {
		t.Fatalf("Content-Encoding = %q, want %q", got, c.header)
	}
	encoded, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	if err := resp.Body.Close(); err != nil {
		t.Fatal(err)
	}
	dec, err := c.decode(bytes.NewReader(encoded))
	if err != nil {
		t.Fatalf("output is not %s: %v", c.name, err)
	}
	plain, err := io.ReadAll(dec)
	if err != nil {
		t.Fatalf("output is not %s: %v", c.name, err)
	}
	return string(plain)
}

func TestResponseCodecs(t *testing.T) {
	for _, c := range codecs {
		for _, pc := range pageCases {
			t.Run(c.name+"/"+pc.file, func(t *testing.T) {
				in := readPage(t, pc.file)
				want := expected(t, in, pc)
				resp := upstream(c.encode([]byte(in)), http.Header{"Content-Encoding": {c.header}})
				if c.header == "" {
					delete(resp.Header, "Content-Encoding")
				}
				got := readResponse(t, resp, c)
				assertSame(t, c.name, got, want)
			})
		}
	}
}

// TestResponseDeflateInKind: zlib-wrapped deflate comes back zlib-wrapped,
// raw deflate comes back raw.
func TestResponseDeflateInKind(t *testing.T) {
	page := []byte(readPage(t, "login.html"))
	for _, c := range codecs[2:4] {
		resp := upstream(c.encode(page), http.Header{"Content-Encoding": {"deflate"}})
		Response(resp, testOptions())
		out, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		_, zerr := zlib.NewReader(bytes.NewReader(out))
		if isZ := zerr == nil; isZ != (c.name == "deflate (zlib)") {
			t.Errorf("%s: output zlib-wrapped = %v", c.name, isZ)
		}
	}
}

func TestResponseHeaders(t *testing.T) {
	page := []byte(readPage(t, "login.html"))
	resp := upstream(codecs[1].encode(page), http.Header{
		"Content-Encoding": {"gzip"},
		"Vary":             {"Cookie"},
		"Etag":             {`"abc"`},
		"Last-Modified":    {"Sun, 01 Jun 2025 10:00:00 GMT"},
	})
	before := resp.Header.Clone()
	if err := Response(resp, testOptions()); err != nil {
		t.Fatal(err)
	}
	if resp.ContentLength != -1 || resp.Header.Get("Content-Length") != "" {
		t.Errorf("Content-Length kept: %d %q", resp.ContentLength, resp.Header.Get("Content-Length"))
	}
	if got := resp.Header.Values("Vary"); strings.Join(got, ",") != "Cookie,Accept-Encoding" {
		t.Errorf("Vary = %q", got)
	}
	for _, h := range []string{"Etag", "Last-Modified"} {
		if v := resp.Header.Get(h); v != "" {
			t.Errorf("%s kept: %q", h, v)
		}
	}
	for _, h := range []string{"Content-Type", "Content-Encoding", "Cache-Control", "Set-Cookie"} {
		if got, want := resp.Header.Values(h), before.Values(h); strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("%s = %q, want %q", h, got, want)
		}
	}
	// An existing Vary: Accept-Encoding (or *) is not repeated.
	for _, v := range []string{"accept-encoding", "Cookie, Accept-Encoding", "*"} {
		resp := upstream(page, http.Header{"Vary": {v}})
		Response(resp, testOptions())
		if got := resp.Header.Values("Vary"); len(got) != 1 || got[0] != v {
			t.Errorf("Vary %q became %q", v, got)
		}
	}
}

// TestResponseUntouched: anything that is not an HTML page to rewrite keeps
// its body (the same value) and its headers.
func TestResponseUntouched(t *testing.T) {
	page := []byte(readPage(t, "login.html"))
	cases := []struct {
		name   string
		modify func(*http.Response)
	}{
		{"json", func(r *http.Response) { r.Header.Set("Content-Type", "application/json") }},
		{"css", func(r *http.Response) { r.Header.Set("Content-Type", "text/css") }},
		{"no content type", func(r *http.Response) { r.Header.Del("Content-Type") }},
		{"xhtml", func(r *http.Response) { r.Header.Set("Content-Type", "application/xhtml+xml") }},
		{"html-ish prefix", func(r *http.Response) { r.Header.Set("Content-Type", "text/htmlx") }},
		{"HEAD", func(r *http.Response) { r.Request.Method = http.MethodHead }},
		{"100", func(r *http.Response) { r.StatusCode = http.StatusContinue }},
		{"204", func(r *http.Response) { r.StatusCode = http.StatusNoContent }},
		{"206", func(r *http.Response) {
			r.StatusCode = http.StatusPartialContent
			r.Header.Set("Content-Range", "bytes 0-99/2865")
		}},
		{"304", func(r *http.Response) { r.StatusCode = http.StatusNotModified }},
		{"attachment", func(r *http.Response) { r.Header.Set("Content-Disposition", `attachment; filename="page.html"`) }},
		{"unknown encoding", func(r *http.Response) { r.Header.Set("Content-Encoding", "compress") }},
		{"zstd", func(r *http.Response) { r.Header.Set("Content-Encoding", "zstd") }},
		{"stacked encodings", func(r *http.Response) { r.Header.Set("Content-Encoding", "gzip, br") }},
		{"empty body", func(r *http.Response) {
			r.Body, r.ContentLength = http.NoBody, 0
			r.Header.Set("Content-Length", "0")
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			resp := upstream(page, nil)
			c.modify(resp)
			body, header, length := resp.Body, resp.Header.Clone(), resp.ContentLength
			if err := Response(resp, testOptions()); err != nil {
				t.Fatal(err)
			}
			if resp.Body != body {
				t.Error("body replaced")
			}
			if resp.ContentLength != length {
				t.Errorf("ContentLength = %d, want %d", resp.ContentLength, length)
			}
			if !maps.EqualFunc(resp.Header, header, func(a, b []string) bool { return strings.Join(a, "\n") == strings.Join(b, "\n") }) {
				t.Errorf("headers changed:\n got %v\nwant %v", resp.Header, header)
			}
		})
	}
	// Error pages are pages: a 404 or 500 in HTML gets the banner.
	for _, status := range []int{http.StatusNotFound, http.StatusInternalServerError, http.StatusServiceUnavailable} {
		resp := upstream(page, nil)
		resp.StatusCode = status
		body := resp.Body
		Response(resp, testOptions())
		if resp.Body == body {
			t.Errorf("%d page not annotated", status)
		}
	}
}

func TestResponseCloseReleasesUpstream(t *testing.T) {
	page := []byte(readPage(t, "login.html"))
	for _, c := range codecs {
		for _, readFirst := range []bool{false, true} {
			resp := upstream(c.encode(page), http.Header{"Content-Encoding": {c.header}})
			if c.header == "" {
				delete(resp.Header, "Content-Encoding")
			}
			up := resp.Body.(*closeRecorder)
			Response(resp, testOptions())
			if readFirst {
				if _, err := resp.Body.Read(make([]byte, 10)); err != nil {
					t.Fatal(err)
				}
			}
			if err := resp.Body.Close(); err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if up.closed != 1 {
				t.Errorf("%s (read first %v): upstream closed %d times", c.name, readFirst, up.closed)
			}
			if _, err := resp.Body.Read(make([]byte, 10)); err == nil {
				t.Errorf("%s: Read after Close succeeded", c.name)
			}
		}
	}
}

// TestResponseDecodeErrors: a body that fails to decode makes Read fail, and
// what was sent before the failure is not a complete encoded stream (the
// client cannot take a truncated page for a whole one).
func TestResponseDecodeErrors(t *testing.T) {
	page := []byte(readPage(t, "listing.html"))
	for _, c := range codecs[1:] {
		enc := c.encode(page)
		corrupt := bytes.Clone(enc)
		for i := len(corrupt) / 2; i < len(corrupt)/2+64; i++ {
			corrupt[i] ^= 0x5a
		}
		for name, body := range map[string][]byte{
			"truncated": enc[:len(enc)*2/3],
			"corrupt":   corrupt,
			"garbage":   []byte("this is not compressed at all, although the header says so"),
		} {
			t.Run(c.name+"/"+name, func(t *testing.T) {
				resp := upstream(body, http.Header{"Content-Encoding": {c.header}})
				if err := Response(resp, testOptions()); err != nil {
					t.Fatal(err)
				}
				out, err := io.ReadAll(resp.Body)
				if err == nil {
					t.Fatalf("no error from a %s body (%d bytes out)", name, len(out))
				}
				if dec, derr := c.decode(bytes.NewReader(out)); derr == nil {
					if _, derr = io.ReadAll(dec); derr == nil {
						t.Errorf("the output is a complete %s stream despite the error %v", c.name, err)
					}
				}
			})
		}
	}
}

// TestResponseOneByteUpstream: the upstream body arriving a byte at a time
// makes no difference.
func TestResponseOneByteUpstream(t *testing.T) {
	in := readPage(t, "dataset_edit.html")
	want := expected(t, in, pageCases[0])
	for _, c := range codecs {
		resp := upstream(c.encode([]byte(in)), http.Header{"Content-Encoding": {c.header}})
		if c.header == "" {
			delete(resp.Header, "Content-Encoding")
		}
		resp.Body = io.NopCloser(iotest.OneByteReader(resp.Body))
		assertSame(t, c.name, readResponse(t, resp, c), want)
	}
}

// TestThroughReverseProxy runs the gate's arrangement: a ReverseProxy whose
// ModifyResponse calls Response, in front of an upstream that compresses.
func TestThroughReverseProxy(t *testing.T) {
	page := []byte(readPage(t, "listing.html"))
	gz := codecs[1].encode(page)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/api/3/action/status_show":
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, `{"success": true}`)
		case "/broken":
			w.Header().Set("Content-Type", "text/html")
			w.Header().Set("Content-Encoding", "gzip")
			w.Write(gz[:len(gz)/2])
			w.(http.Flusher).Flush()
			panic(http.ErrAbortHandler) // the upstream dies mid-body
		default:
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			w.Header().Set("Content-Encoding", "gzip")
			w.Header().Set("Content-Length", strconv.Itoa(len(gz)))
			w.Write(gz)
		}
	}))
	defer up.Close()
	target, _ := url.Parse(up.URL)
	proxy := httputil.NewSingleHostReverseProxy(target)
	proxy.ErrorLog = discardLogger()
	proxy.ModifyResponse = func(resp *http.Response) error { return Response(resp, testOptions()) }
	gate := httptest.NewServer(proxy)
	defer gate.Close()
	client := &http.Client{Transport: &http.Transport{DisableCompression: true}}

	req, _ := http.NewRequest(http.MethodGet, gate.URL+"/dataset/?q=climate", nil)
	req.Header.Set("Accept-Encoding", "gzip")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.Header.Get("Content-Encoding") != "gzip" || resp.ContentLength != -1 {
		t.Errorf("Content-Encoding %q, ContentLength %d", resp.Header.Get("Content-Encoding"), resp.ContentLength)
	}
	got := readResponseBody(t, resp, codecs[1])
	assertSame(t, "through the proxy", got, expected(t, string(page), pageCases[3]))

	resp, err = client.Get(gate.URL + "/api/3/action/status_show")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != `{"success": true}` || resp.ContentLength != int64(len(body)) {
		t.Errorf("API response changed: %q, length %d", body, resp.ContentLength)
	}

	req, _ = http.NewRequest(http.MethodGet, gate.URL+"/broken", nil)
	req.Header.Set("Accept-Encoding", "gzip")
	resp, err = client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, err = io.ReadAll(resp.Body)
	resp.Body.Close()
	if err == nil {
		t.Error("a body broken upstream reached the client as a complete response")
	}
}

func readResponseBody(t *testing.T, resp *http.Response, c codec) string {
	t.Helper()
	defer resp.Body.Close()
	dec, err := c.decode(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(dec)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func discardLogger() *log.Logger { return log.New(io.Discard, "", 0) }
