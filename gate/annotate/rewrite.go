package annotate

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/net/html"
	"golang.org/x/net/html/atom"
)

// Options configures a rewrite.
type Options struct {
	Notice Notice
	// WouldRefuse reports whether a form submission with this method and
	// (unresolved) action would be refused by the gate; the base URL is the
	// page's request URL. The gate passes its classifier's
	// FormWouldBeRefused. GET forms and the login form must stay. A nil
	// WouldRefuse refuses nothing: only the banner is inserted.
	WouldRefuse func(method, action string) bool
}

// maxTokenBytes caps the one token the rewriter holds. A longer token (a
// megabyte of inline script, say) makes the rewriter stop rewriting and copy
// the rest of the page through verbatim: annotation is a courtesy, and a page
// copied through is always correct.
const maxTokenBytes = 1 << 20

// maxFormDepth caps the elements tracked inside a refused form (see
// rewriter.open). Past it, only </form>, </body>, </html> or the end of the
// page end the form.
const maxFormDepth = 256

var errClosed = errors.New("annotate: read after Close")

// NewReader returns the rewritten page read from r. Close closes r when r is
// an io.Closer. The reader holds at most one token of r at a time.
func NewReader(r io.Reader, opts Options) io.ReadCloser {
	return newRewriter(r, opts, clock(), maxTokenBytes)
}

// rewriter is the io.Reader transform. It splits the page into tokens
// exactly as golang.org/x/net/html's Tokenizer does (see lexer) and decides
// token by token, as it always has; only where every token goes out as it
// is (after the banner, outside a refused form) does it skip ahead over
// runs of tokens (skip). Output is a queue of at most two segments that
// point either into the lexer's buffer (the current token's raw bytes, or a
// run of them) or at the inserted fragments; the next token is read only
// once the queue is drained.
//
// The banner goes right after the first <body> start tag. A page without one
// gets it before its first body content (a start tag that does not belong in
// <head>, or text that is not white space, outside raw text and <template>),
// provided the page is a whole document (a doctype, <html>, <head>, </head>
// or <title> came first); a fragment, such as an htmx or AJAX snippet, gets
// none. A frameset page gets none.
//
// A refused form is dropped from its start tag to the first of:
//   - the first </form>, dropped with it: browsers ignore a <form> start tag
//     inside an open form, and the first </form> closes the outer one;
//   - an end tag that closes nothing opened inside the form, which closes
//     the form's parent (an unclosed form ends there, as far as what is shown
//     goes); </p>, </br> and void elements' end tags do not count, and past
//     maxFormDepth open elements only the other rules apply;
//   - </body>, </html> or a <body> start tag: never hide past the body;
//   - the end of the page.
//
// The tag that ends an unclosed form is kept, and so is everything after it.
type rewriter struct {
	src    io.Reader
	z      lexer
	refuse func(method, action string) bool
	banner []byte
	notice []byte

	segs       [2][]byte
	iseg, nseg int
	err        error // sticky: returned once the queue is drained
	closed     atomic.Bool

	bannerDone  bool // inserted, or given up on; never twice
	document    bool // seen a doctype, <html>, <head>, </head> or <title>
	inRaw       bool // inside a raw-text element's content (script, style, title...)
	templates   int  // open <template> elements (inert content)
	suppress    bool // inside a refused form
	open        []uint64
	deep        bool // open overflowed: stop guessing where the form ends
	passthrough bool // a token was too long: copy the rest as it is
}

func newRewriter(r io.Reader, opts Options, now time.Time, maxToken int) *rewriter {
	w := &rewriter{src: r, refuse: opts.WouldRefuse}
	w.banner, w.notice = fragments(opts.Notice, now)
	w.z.init(r, maxToken)
	return w
}

// Read fills p with rewritten bytes. It keeps tokenizing while the input
// buffered holds whole tokens, and returns what it has rather than wait on r
// for more.
func (w *rewriter) Read(p []byte) (int, error) {
	if w.closed.Load() {
		return 0, errClosed
	}
	n := 0
	for n < len(p) {
		if w.iseg < w.nseg {
			c := copy(p[n:], w.segs[w.iseg])
			n += c
			if w.segs[w.iseg] = w.segs[w.iseg][c:]; len(w.segs[w.iseg]) == 0 {
				w.iseg++
			}
			continue
		}
		if w.err != nil {
			break
		}
		if w.passthrough {
			if n > 0 {
				break
			}
			w.z.release() // the queue held its last bytes
			m, err := w.src.Read(p)
			if err != nil {
				w.err = err
			}
			return m, err
		}
		if !w.advance(n == 0) {
			break // the next token needs a read from r: hand over what we have
		}
	}
	if w.iseg == w.nseg && w.err != nil {
		w.z.release()
		return n, w.err
	}
	return n, nil
}

// Close closes the source when it is an io.Closer. It may be called while a
// Read is blocked on the source (it only touches the source and a flag).
func (w *rewriter) Close() error {
	if w.closed.Swap(true) {
		return nil
	}
	if c, ok := w.src.(io.Closer); ok {
		return c.Close()
	}
	return nil
}

func (w *rewriter) emit(s []byte) {
	w.segs[0] = s
	w.iseg, w.nseg = 0, 1
}

func (w *rewriter) emit2(a, b []byte) {
	w.segs[0], w.segs[1] = a, b
	w.iseg, w.nseg = 0, 2
}

// advance queues what goes out for the next token, or for a run of tokens
// that go out as they are. It reads from r only when block is set, and
// reports false when it would have had to.
func (w *rewriter) advance(block bool) bool {
	if w.bannerDone && !w.suppress && w.skip() {
		return true
	}
	tt := w.z.next(block)
	if tt == needInput {
		return false
	}
	w.token(tt, w.z.Raw())
	return true
}

// skip is the fast path, for most of every page: once the banner is placed
// and while no form is hidden, every token but a <form> start tag (and the
// end of input) goes out as it is, and the tokens are contiguous. skip
// queues the longest such run the buffered input holds, and reports false
// when it is empty. It leaves the token that ends the run unread, for token.
func (w *rewriter) skip() bool {
	z := &w.z
	from := z.pos
	for z.err == nil {
		if z.rawTag == "" && z.quick() {
			continue
		}
		tt := z.next(false)
		if tt == needInput {
			break
		}
		if tt == html.ErrorToken || tt == html.StartTagToken && isFormTag(z.Raw()) {
			z.unread()
			break
		}
	}
	if z.pos == from {
		return false
	}
	w.emit(z.buf[from:z.pos])
	return true
}

// token queues what goes out for one token.
func (w *rewriter) token(tt html.TokenType, raw []byte) {
	if w.bannerDone && !w.suppress {
		// The common case, most of every page: only a <form> matters.
		switch tt {
		case html.TextToken, html.CommentToken, html.DoctypeToken, html.EndTagToken:
			w.emit(raw)
			return
		case html.StartTagToken, html.SelfClosingTagToken:
			if !isFormTag(raw) {
				w.emit(raw)
				return
			}
		}
	}
	switch tt {
	case html.ErrorToken:
		err := w.z.Err()
		if err == html.ErrBufferExceeded {
			// raw (the token so far) and Buffered() are contiguous: copy
			// them, then the rest of src, as they are.
			if w.suppress {
				w.endForm()
				raw = nil // the start of a token inside the refused form
			}
			w.passthrough = true
			w.emit2(raw, w.z.Buffered())
			return
		}
		if err == nil {
			err = io.ErrUnexpectedEOF // cannot happen; never loop on it
		}
		w.err = err
		if !w.suppress {
			w.emit(raw) // a tag cut short by the end of input is content too
		}
	case html.TextToken:
		if w.suppress {
			return
		}
		var pre []byte
		if !w.bannerDone && !w.inRaw && w.templates == 0 && !isBlank(raw) {
			pre = w.contentStarts()
		}
		w.emit2(pre, raw)
	case html.CommentToken:
		if !w.suppress {
			w.emit(raw)
		}
	case html.DoctypeToken:
		if !w.suppress {
			w.document = true
			w.emit(raw)
		}
	case html.StartTagToken, html.SelfClosingTagToken:
		w.startTag(raw)
	case html.EndTagToken:
		w.endTag(raw)
	}
}

func (w *rewriter) startTag(raw []byte) {
	name := tagName(raw, 1)
	a := lookup(name)
	if isRawText(a) {
		// The tokenizer reads the content as raw text up to the matching end
		// tag (even for <script/>); the next token is that text or that tag.
		w.inRaw = true
	}
	if w.suppress {
		if a != atom.Body {
			// Inside the refused form. A nested <form> is ignored by
			// browsers (the first </form> closes the outer one), so it is not
			// an element; void elements have no end tag.
			if a != atom.Form && !isVoid(a) {
				w.push(name)
			}
			return
		}
		w.endForm() // a <body> never belongs to a form: stop hiding
	}

	var pre []byte
	if !w.bannerDone {
		switch a {
		case atom.Body:
			w.bannerDone = true
			w.emit2(raw, w.banner)
			return
		case atom.Html, atom.Head, atom.Title:
			w.document = true
		case atom.Frameset:
			w.bannerDone = true // a frameset page has no body to put it in
		case atom.Base, atom.Basefont, atom.Bgsound, atom.Link, atom.Meta,
			atom.Noframes, atom.Noscript, atom.Script, atom.Style:
			// head content
		case atom.Template:
			// inert content, wherever it is
		default:
			if w.templates == 0 {
				pre = w.contentStarts()
			}
		}
	}
	if a == atom.Template {
		w.templates++
	}
	if a == atom.Form && w.formRefused(raw) {
		w.suppress = true
		w.open = w.open[:0]
		w.deep = false
		w.emit2(pre, w.notice)
		return
	}
	w.emit2(pre, raw)
}

func (w *rewriter) endTag(raw []byte) {
	name := tagName(raw, 2)
	a := lookup(name)
	w.inRaw = false
	if w.suppress {
		switch {
		case a == atom.Form:
			w.endForm() // the form's own end tag goes with it
			return
		case a == atom.Body || a == atom.Html:
			// The form was never closed. Never hide past the end of the body.
			w.endForm()
		case w.pop(name, a):
			return
		default:
			// The end tag of an element opened before the form: the form's
			// parent is closing, and the form with it (for what is shown).
			w.endForm()
		}
	}
	switch a {
	case atom.Template:
		if w.templates > 0 {
			w.templates--
		}
	case atom.Head:
		w.document = true
	}
	w.emit(raw)
}

// contentStarts is called at the first token that belongs in the body of a
// page without a <body> tag. It returns the banner to insert before that
// token when the page is a whole document; a fragment (an htmx or AJAX
// snippet) gets no banner at all.
func (w *rewriter) contentStarts() []byte {
	w.bannerDone = true
	if w.document {
		return w.banner
	}
	return nil
}

// formRefused reads a <form> start tag's method and action (raw is the
// whole tag). A tag that needs decoding (character references, NUL, CR) is
// handed to a Tokenizer of its own, which decodes it exactly as the page's
// Tokenizer would have: a start tag is tokenized the same wherever it
// starts.
func (w *rewriter) formRefused(raw []byte) bool {
	if w.refuse == nil || !mayBePost(raw) {
		return false
	}
	var method, action string
	if m, a, ok := plainFormAttrs(raw); ok {
		method, action = string(m), string(a)
	} else {
		z := html.NewTokenizer(bytes.NewReader(raw))
		z.Next()
		// The tokenizer keeps the first of duplicate attributes, as
		// browsers do.
		for {
			key, val, more := z.TagAttr()
			switch string(key) {
			case "method":
				method = string(val)
			case "action":
				action = string(val)
			}
			if !more {
				break
			}
		}
	}
	// A missing or invalid method is GET; "dialog" submits nothing.
	if !strings.EqualFold(method, "post") {
		return false
	}
	return w.refuse("POST", action)
}

// plainFormAttrs returns the method and action of a <form> start tag (its
// raw bytes, up to its '>') as Tokenizer.TagAttr gives them, without a
// Tokenizer, when they need no decoding: when the tag holds no character
// reference (&), NUL or CR, TagAttr's values are the bytes as written. It
// reads the attributes with the Tokenizer's steps (those of tagEnd) and, as
// the Tokenizer, keeps the first of attributes whose names differ only in
// case. ok is false when the tag needs decoding.
func plainFormAttrs(raw []byte) (method, action []byte, ok bool) {
	if len(raw) < 2 || bytes.ContainsAny(raw, "&\x00\r") {
		return nil, nil, false
	}
	b := raw[2:] // after "<f"
	n, i := len(b), 0
	for i < n && tagByte[b[i]]&endsName == 0 {
		i++
	}
	if i < n && tagByte[b[i]]&isSpace != 0 {
		i++
	}
	var seenMethod, seenAction bool
	for {
		for i < n && tagByte[b[i]]&isSpace != 0 {
			i++
		}
		if i == n || b[i] == '>' {
			return method, action, true
		}
		k := i
		if b[i] == '=' {
			i++ // an '=' before the name begins is part of the name
		}
		for i < n && tagByte[b[i]]&endsKey == 0 {
			i++
		}
		key := b[k:i] // empty for "/", and then skipped as the Tokenizer does
		var val []byte
		for i < n && tagByte[b[i]]&isSpace != 0 {
			i++
		}
		if i < n && b[i] == '/' {
			i++
		} else if i < n && b[i] == '=' {
			for i++; i < n && tagByte[b[i]]&isSpace != 0; i++ {
			}
			if i < n {
				switch q := b[i]; q {
				case '>':
				case '\'', '"':
					if k := bytes.IndexByte(b[i+1:], q); k >= 0 {
						val, i = b[i+1:i+1+k], i+1+k+1
					} else {
						val, i = b[i+1:], n
					}
				default:
					v := i
					for i++; i < n && tagByte[b[i]]&(isSpace|isGT) == 0; i++ {
					}
					val = b[v:i]
					if i < n && tagByte[b[i]]&isSpace != 0 {
						i++
					}
				}
			}
		}
		switch {
		case !seenMethod && equalLower(key, "method"):
			method, seenMethod = val, true
		case !seenAction && equalLower(key, "action"):
			action, seenAction = val, true
		}
	}
}

// mayBePost reports false when a <form> tag's method cannot be POST: its raw
// bytes hold no "post" in any case, no character reference (&) and no
// non-ASCII byte (strings.EqualFold folds "ſ", U+017F, to "s").
func mayBePost(raw []byte) bool {
	for i, c := range raw {
		switch {
		case c == '&' || c >= 0x80:
			return true
		case c|0x20 == 'p' && i+3 < len(raw) && raw[i+1]|0x20 == 'o' && raw[i+2]|0x20 == 's' && raw[i+3]|0x20 == 't':
			return true
		}
	}
	return false
}

func (w *rewriter) endForm() {
	w.suppress = false
	w.open = w.open[:0]
	w.deep = false
}

// push records an element opened inside the refused form.
func (w *rewriter) push(name []byte) {
	if w.deep {
		return
	}
	if len(w.open) == maxFormDepth {
		w.deep = true
		return
	}
	w.open = append(w.open, hashName(name))
}

// pop handles an end tag inside the refused form. It reports false when the
// tag closes nothing opened inside the form, which means it closes one of the
// form's ancestors: an unclosed form ends there (for display; browsers keep
// associating later controls with it, but those are not shown as its
// content). End tags that browsers never treat as closing an ancestor (</p>,
// </br>, void elements) are swallowed.
func (w *rewriter) pop(name []byte, a atom.Atom) bool {
	if w.deep || a == atom.P || a == atom.Br || isVoid(a) {
		return true
	}
	h := hashName(name)
	for i := len(w.open) - 1; i >= 0; i-- {
		if w.open[i] == h {
			w.open = w.open[:i]
			return true
		}
	}
	return false
}

// tagName returns the name in a tag's raw bytes, as written ("<FORM" gives
// "FORM"); skip is 1 for start tags and 2 for end tags. It does not use
// Tokenizer.TagName, which allocates.
func tagName(raw []byte, skip int) []byte {
	if len(raw) < skip {
		return nil
	}
	raw = raw[skip:]
	for i, c := range raw {
		switch c {
		case ' ', '\n', '\r', '\t', '\f', '/', '>':
			return raw[:i]
		}
	}
	return raw
}

// isFormTag reports whether a start tag's raw bytes are a <form> tag.
func isFormTag(raw []byte) bool {
	if len(raw) < 6 || raw[1]|0x20 != 'f' || raw[2]|0x20 != 'o' || raw[3]|0x20 != 'r' || raw[4]|0x20 != 'm' {
		return false
	}
	switch raw[5] {
	case ' ', '\n', '\r', '\t', '\f', '/', '>':
		return true
	}
	return false
}

// lookup returns the atom of a tag name in any case, or 0.
func lookup(name []byte) atom.Atom {
	var buf [16]byte
	if len(name) > len(buf) {
		return 0
	}
	for i, c := range name {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		buf[i] = c
	}
	return atom.Lookup(buf[:len(name)])
}

// hashName is FNV-1a of the lower-cased name.
func hashName(name []byte) uint64 {
	h := uint64(14695981039346656037)
	for _, c := range name {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		h ^= uint64(c)
		h *= 1099511628211
	}
	return h
}

// isRawText lists the elements whose content the tokenizer reads as text.
func isRawText(a atom.Atom) bool {
	switch a {
	case atom.Iframe, atom.Noembed, atom.Noframes, atom.Noscript, atom.Plaintext,
		atom.Script, atom.Style, atom.Textarea, atom.Title, atom.Xmp:
		return true
	}
	return false
}

func isVoid(a atom.Atom) bool {
	switch a {
	case atom.Area, atom.Base, atom.Basefont, atom.Bgsound, atom.Br, atom.Col,
		atom.Embed, atom.Frame, atom.Hr, atom.Image, atom.Img, atom.Input,
		atom.Keygen, atom.Link, atom.Meta, atom.Param, atom.Source, atom.Track,
		atom.Wbr:
		return true
	}
	return false
}

// isBlank reports whether text is only white space (and a byte order mark).
func isBlank(text []byte) bool {
	text = bytes.TrimPrefix(text, []byte("\xef\xbb\xbf"))
	for _, c := range text {
		switch c {
		case ' ', '\t', '\n', '\r', '\f':
		default:
			return false
		}
	}
	return true
}
