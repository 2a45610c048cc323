package annotate

import (
	"bufio"
	"compress/flate"
	"compress/gzip"
	"compress/zlib"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/andybalholm/brotli"
	"github.com/andybalholm/brotli/matchfinder"
)

// Response rewrites resp (an upstream response about to be proxied) in place
// when it is an HTML page: resp.Body becomes a streaming rewriter,
// Content-Length goes (resp.ContentLength is -1), a gzip, deflate (zlib or
// raw) or br body is decoded, rewritten and encoded again the same way, and
// Vary lists Accept-Encoding (other Vary values are kept). ETag and
// Last-Modified go too: they describe upstream's bytes, and a conditional
// request after the maintenance must not revive an annotated copy with a 304.
// Everything else is left as it is.
//
// Untouched (same Body value, same headers): responses that are not
// text/html, responses to HEAD, 1xx/204/205/206/304 responses, bodies sent
// as attachments, empty bodies, and bodies in a Content-Encoding it does not
// know (or in several). Meant for httputil.ReverseProxy.ModifyResponse; it
// reads nothing from the body itself, so it never blocks and never fails.
func Response(resp *http.Response, opts Options) error {
	if !isPage(resp) {
		return nil
	}
	enc, ok := contentEncoding(resp.Header)
	if !ok {
		return nil
	}
	now := clock()
	if enc == encIdentity {
		w := newRewriter(resp.Body, opts, now, maxTokenBytes)
		resp.Body = w
	} else {
		resp.Body = &recoder{body: resp.Body, enc: enc, opts: opts, now: now}
	}
	resp.ContentLength = -1
	resp.Header.Del("Content-Length")
	resp.Header.Del("Etag")
	resp.Header.Del("Last-Modified")
	if !varies(resp.Header, "Accept-Encoding") {
		resp.Header.Add("Vary", "Accept-Encoding")
	}
	return nil
}

// isPage reports whether resp is an HTML page with a body to rewrite.
func isPage(resp *http.Response) bool {
	if resp.Body == nil || resp.Body == http.NoBody || resp.ContentLength == 0 {
		return false
	}
	if resp.Request != nil && resp.Request.Method == http.MethodHead {
		return false
	}
	switch s := resp.StatusCode; {
	case s < 200, s == http.StatusNoContent, s == http.StatusResetContent,
		s == http.StatusPartialContent, s == http.StatusNotModified:
		return false
	}
	if resp.Header.Get("Content-Range") != "" {
		return false
	}
	ct, _, _ := strings.Cut(resp.Header.Get("Content-Type"), ";")
	if !strings.EqualFold(strings.TrimSpace(ct), "text/html") {
		return false
	}
	if d, _, _ := strings.Cut(resp.Header.Get("Content-Disposition"), ";"); strings.EqualFold(strings.TrimSpace(d), "attachment") {
		return false // a downloaded file, not a page
	}
	return true
}

type encoding int

const (
	encIdentity encoding = iota
	encGzip
	encDeflate
	encBrotli
)

var encodingNames = [...]string{"identity", "gzip", "deflate", "br"}

func (e encoding) String() string { return encodingNames[e] }

// contentEncoding returns the single content coding of h, and false when
// there are several or one it does not know.
func contentEncoding(h http.Header) (encoding, bool) {
	values := h.Values("Content-Encoding")
	enc, seen := encIdentity, false
	for _, v := range values {
		for part := range strings.SplitSeq(v, ",") {
			part = strings.TrimSpace(part)
			var e encoding
			switch strings.ToLower(part) {
			case "", "identity":
				continue
			case "gzip", "x-gzip":
				e = encGzip
			case "deflate":
				e = encDeflate
			case "br":
				e = encBrotli
			default:
				return 0, false
			}
			if seen {
				return 0, false // stacked codings: leave them alone
			}
			enc, seen = e, true
		}
	}
	return enc, true
}

// varies reports whether h's Vary lists name (or "*").
func varies(h http.Header, name string) bool {
	for _, v := range h.Values("Vary") {
		for part := range strings.SplitSeq(v, ",") {
			part = strings.TrimSpace(part)
			if part == "*" || strings.EqualFold(part, name) {
				return true
			}
		}
	}
	return false
}

// Compression levels for the re-encoded page: fast ones, as a proxy
// compressing on the fly would use (nginx's gzip_comp_level defaults to 1).
// On the 50 KB listing page: gzip level 1 runs at ~490 MB/s for 7.9 KB
// (level 6: ~80 MB/s, 6.6 KB); brotli's matchfinder encoder at level 3 at
// ~300 MB/s for 6.6 KB.
const (
	gzipLevel   = gzip.BestSpeed
	brotliLevel = 3
)

// recoder decodes the upstream body, rewrites it and encodes it again with
// the same content coding. It is pull-driven (no goroutine): each Read feeds
// the encoder from the rewriter until the encoder has produced output. The
// decoder and encoder are created on the first Read, so Response never reads
// the body. A decoding error is returned as it is, after the bytes encoded so
// far and without finishing the encoded stream: the proxy aborts the
// response and the client sees a broken download, not a well-formed
// truncated page.
type recoder struct {
	body io.ReadCloser
	enc  encoding
	opts Options
	now  time.Time

	started bool
	br      *bufio.Reader
	dec     io.Reader
	rw      *rewriter
	zw      compressor
	chunkp  *[]byte // pooled; chunk is *chunkp
	chunk   []byte
	outp    *[]byte // pooled; out grows from *outp
	out     []byte  // encoded bytes not yet read
	off     int
	err     error
	closed  atomic.Bool
}

// compressor is what the gzip, zlib, flate and brotli writers share.
type compressor interface {
	io.WriteCloser
	Reset(io.Writer)
}

const chunkSize = 32 << 10

var (
	gzipWriters   sync.Pool
	zlibWriters   sync.Pool
	flateWriters  sync.Pool
	brotliWriters sync.Pool
	gzipReaders   sync.Pool
	bufioReaders  sync.Pool
	chunks        = sync.Pool{New: func() any { b := make([]byte, chunkSize); return &b }}
	outs          = sync.Pool{New: func() any { b := make([]byte, 0, chunkSize/2); return &b }}
)

func (c *recoder) Read(p []byte) (int, error) {
	if c.closed.Load() {
		return 0, errClosed
	}
	if !c.started {
		c.start()
	}
	for {
		if c.off < len(c.out) {
			n := copy(p, c.out[c.off:])
			c.off += n
			return n, nil
		}
		if c.err != nil {
			if c.outp != nil { // all read out: give the buffer back
				*c.outp = c.out[:0]
				outs.Put(c.outp)
				c.outp, c.out, c.off = nil, nil, 0
			}
			return 0, c.err
		}
		c.out, c.off = c.out[:0], 0
		n, err := c.rw.Read(c.chunk)
		if n > 0 {
			if _, werr := c.zw.Write(c.chunk[:n]); werr != nil {
				c.fail(fmt.Errorf("annotate: encode %s: %w", c.enc, werr))
				continue
			}
		}
		switch {
		case err == io.EOF:
			if cerr := c.zw.Close(); cerr != nil {
				c.fail(fmt.Errorf("annotate: encode %s: %w", c.enc, cerr))
				continue
			}
			c.fail(io.EOF)
		case err != nil:
			c.fail(err)
		}
	}
}

// Write collects the encoder's output.
func (c *recoder) Write(p []byte) (int, error) {
	c.out = append(c.out, p...)
	return len(p), nil
}

// start builds the decoder, the rewriter and the encoder.
func (c *recoder) start() {
	c.started = true
	c.br = getBufio(c.body)
	if _, err := c.br.Peek(1); err != nil {
		c.fail(err) // io.EOF: an empty body stays empty
		return
	}
	switch c.enc {
	case encGzip:
		zr, _ := gzipReaders.Get().(*gzip.Reader)
		var err error
		if zr == nil {
			zr, err = gzip.NewReader(c.br)
		} else {
			err = zr.Reset(c.br)
		}
		if err != nil {
			c.fail(fmt.Errorf("annotate: decode gzip: %w", err))
			return
		}
		c.dec = zr
		c.zw = getWriter(&gzipWriters, c, func(w io.Writer) compressor {
			zw, _ := gzip.NewWriterLevel(w, gzipLevel)
			return zw
		})
	case encDeflate:
		// HTTP's "deflate" is zlib (RFC 1950) by the spec and in practice,
		// but some servers send raw deflate (RFC 1951). Answer in kind.
		if isZlib(c.br) {
			zr, err := zlib.NewReader(c.br)
			if err != nil {
				c.fail(fmt.Errorf("annotate: decode deflate: %w", err))
				return
			}
			c.dec = zr
			c.zw = getWriter(&zlibWriters, c, func(w io.Writer) compressor {
				zw, _ := zlib.NewWriterLevel(w, gzipLevel)
				return zw
			})
		} else {
			c.dec = flate.NewReader(c.br)
			c.zw = getWriter(&flateWriters, c, func(w io.Writer) compressor {
				zw, _ := flate.NewWriter(w, gzipLevel)
				return zw
			})
		}
	case encBrotli:
		c.dec = brotli.NewReader(c.br)
		c.zw = getWriter(&brotliWriters, c, func(w io.Writer) compressor {
			return brotli.NewWriterV2(w, brotliLevel)
		})
	}
	c.rw = newRewriter(decodeErrors{c.dec, c.enc}, c.opts, c.now, maxTokenBytes)
	c.chunkp = chunks.Get().(*[]byte)
	c.chunk = *c.chunkp
	c.outp = outs.Get().(*[]byte)
	c.out = (*c.outp)[:0]
}

// fail records the terminal error and gives pooled state back.
func (c *recoder) fail(err error) {
	c.err = err
	c.release()
}

func (c *recoder) release() {
	if c.zw != nil {
		c.zw.Reset(io.Discard)
		switch c.zw.(type) {
		case *gzip.Writer:
			gzipWriters.Put(c.zw)
		case *zlib.Writer:
			zlibWriters.Put(c.zw)
		case *flate.Writer:
			flateWriters.Put(c.zw)
		case *matchfinder.Writer:
			brotliWriters.Put(c.zw)
		}
		c.zw = nil
	}
	if zr, ok := c.dec.(*gzip.Reader); ok {
		gzipReaders.Put(zr)
	}
	c.dec = nil
	if c.br != nil {
		c.br.Reset(nil)
		bufioReaders.Put(c.br)
		c.br = nil
	}
	if c.chunkp != nil {
		chunks.Put(c.chunkp)
		c.chunkp, c.chunk = nil, nil
	}

	c.rw = nil
}

// Close closes the upstream body. Like the rewriter's, it may be called
// while a Read is blocked upstream; pooled state is given back by Read only.
func (c *recoder) Close() error {
	if c.closed.Swap(true) {
		return nil
	}
	return c.body.Close()
}

func getWriter(pool *sync.Pool, dst io.Writer, make func(io.Writer) compressor) compressor {
	if zw, ok := pool.Get().(compressor); ok {
		zw.Reset(dst)
		return zw
	}
	return make(dst)
}

func getBufio(r io.Reader) *bufio.Reader {
	if br, ok := bufioReaders.Get().(*bufio.Reader); ok {
		br.Reset(r)
		return br
	}
	return bufio.NewReaderSize(r, 4096)
}

// isZlib reports whether the stream starts with a zlib header: deflate
// method, a window of at most 32 KiB and a valid check value.
func isZlib(br *bufio.Reader) bool {
	h, err := br.Peek(2)
	if err != nil {
		return false
	}
	return h[0]&0x0f == 8 && h[0]>>4 <= 7 && (uint16(h[0])<<8|uint16(h[1]))%31 == 0
}

// decodeErrors names the coding in decoding errors (io.EOF passes as is).
type decodeErrors struct {
	r   io.Reader
	enc encoding
}

func (d decodeErrors) Read(p []byte) (int, error) {
	n, err := d.r.Read(p)
	if err != nil && err != io.EOF {
		err = fmt.Errorf("annotate: decode %s: %w", d.enc, err)
	}
	return n, err
}
