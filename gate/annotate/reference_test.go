package annotate

import (
	"io"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/net/html"
	"golang.org/x/net/html/atom"
)

// refRewriter is the rewriter as it was before the lexer: driven by
// golang.org/x/net/html's Tokenizer, token by token. It is the reference the
// rewriter must match byte for byte (FuzzFastMatchesReference); keep it as it
// is. Its comments are those of the original, but for the submit buttons
// (formmethod, formaction), which were added to both rewriters at once:
// here on the Tokenizer's TagName and TagAttr, with no prefilter
// (mayBeSubmitter) and no fast path. The same goes for the htmx forms and
// the controls (hx-post and the like, CKAN's confirm-action module), added
// to both rewriters at once: here every start tag's attributes are read,
// with no prefilter (mayBeControl).
//
// The same again for the announce mode (Options.Announce: mark, with
// data-ckanops-write, what would be refused, and hide nothing), added to
// both rewriters at once; the banner and notices come from the same
// functions as the rewriter's (insertAt, formNoticeAt), without its cache.
//
// The original said: rewriter is the io.Reader transform. Output is a queue
// of at most two segments that point either into the tokenizer's buffer (the
// current token's raw bytes, valid until the next call to Next) or at the
// inserted fragments; the next token is read only once the queue is drained.
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
type refRewriter struct {
	src    io.Reader
	z      *html.Tokenizer
	refuse func(method, action string) bool
	banner []byte
	notice []byte

	segs       [][]byte
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

	ctrl     bool // what is hidden is a control element, not a form
	snote    []byte
	cnote    []byte
	note     Notice
	mark     bool     // Options.Announce
	owner    *refForm // the output's form element pointer
	formByID map[string]*refForm
	nIDs     int
}

// refForm is a kept form that submit buttons may belong to.
type refForm struct {
	method string // "get", "post" or "dialog"
	action string
	known  bool
}

func newReference(r io.Reader, opts Options, now time.Time, maxToken int) *refRewriter {
	z := html.NewTokenizer(r)
	z.SetMaxBuf(maxToken)
	return &refRewriter{
		src:      r,
		z:        z,
		refuse:   opts.WouldRefuse,
		banner:   []byte(insertAt(&opts, now)),
		mark:     opts.Announce != nil,
		notice:   []byte(formNoticeAt(opts.Notice, now)),
		snote:    []byte(submitNoticeAt(opts.Notice)),
		note:     opts.Notice,
		formByID: map[string]*refForm{},
	}
}

// Read fills p with rewritten bytes. It keeps tokenizing while the tokenizer
// has input buffered, and returns what it has rather than wait on r for more.
func (w *refRewriter) Read(p []byte) (int, error) {
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
			m, err := w.src.Read(p)
			if err != nil {
				w.err = err
			}
			return m, err
		}
		if n > 0 && len(w.z.Buffered()) == 0 {
			break // the next token needs a read from r: hand over what we have
		}
		w.advance()
	}
	if w.iseg == w.nseg && w.err != nil {
		return n, w.err
	}
	return n, nil
}

// Close closes the source when it is an io.Closer. It may be called while a
// Read is blocked on the source (it only touches the source and a flag).
func (w *refRewriter) Close() error {
	if w.closed.Swap(true) {
		return nil
	}
	if c, ok := w.src.(io.Closer); ok {
		return c.Close()
	}
	return nil
}

func (w *refRewriter) emit(s []byte) {
	w.emitAll(s)
}

func (w *refRewriter) emit2(a, b []byte) {
	w.emitAll(a, b)
}

// emitAll queues any number of segments (a disabled submit button needs
// five).
func (w *refRewriter) emitAll(segs ...[]byte) {
	w.segs = w.segs[:0]
	w.segs = append(w.segs, segs...)
	w.iseg, w.nseg = 0, len(segs)
}

// advance reads one token and queues what goes out for it.
func (w *refRewriter) advance() {
	tt := w.z.Next()
	raw := w.z.Raw()
	if w.bannerDone && !w.suppress {
		// The common case, most of every page: only a <form>, a </form>
		// and buttons and inputs matter.
		switch tt {
		case html.TextToken, html.CommentToken, html.DoctypeToken:
			w.emit(raw)
			return
		case html.EndTagToken:
			if name, _ := w.z.TagName(); string(name) == "form" {
				w.owner = nil
			}
			w.emit(raw)
			return
		case html.StartTagToken, html.SelfClosingTagToken:
			// Any start tag may be a control: on to startTag.
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

func (w *refRewriter) startTag(raw []byte) {
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
	attrs := w.attrs()
	if a == atom.Form && w.formRefused(attrs) {
		if w.mark {
			w.emitMarked(pre, raw, name)
			return
		}
		w.suppress, w.ctrl = true, false
		w.open = w.open[:0]
		w.deep = false
		w.emit2(pre, w.notice)
		return
	}
	switch a {
	case atom.Form, atom.Html, atom.Head, atom.Body, atom.Frameset, atom.Template, atom.Script, atom.Style:
	default:
		if w.controlRefused(attrs) {
			if w.mark {
				w.emitMarked(pre, raw, name)
				return
			}
			if w.cnote == nil {
				w.cnote = []byte(controlNoticeAt(w.note))
			}
			if !isVoid(a) {
				w.suppress, w.ctrl = true, true
				w.open = []uint64{hashName(name)}
				w.deep = false
			}
			w.emit2(pre, w.cnote)
			return
		}
	}
	if (a == atom.Button || a == atom.Input) && w.submitterRefused(a, attrs) {
		if w.mark {
			w.emitMarked(pre, raw, name)
			return
		}
		n := 1 + len(tagName(raw, 1))
		w.emitAll(pre, w.snote, raw[:n], []byte(" disabled"), raw[n:])
		return
	}
	w.emit2(pre, raw)
}

// emitMarked queues pre and the start tag raw with " data-ckanops-write"
// after its name.
func (w *refRewriter) emitMarked(pre, raw, name []byte) {
	n := 1 + len(name)
	w.emitAll(pre, raw[:n], []byte(" data-ckanops-write"), raw[n:])
}

func (w *refRewriter) endTag(raw []byte) {
	name := tagName(raw, 2)
	a := lookup(name)
	w.inRaw = false
	if w.suppress {
		switch {
		case a == atom.Form && !w.ctrl:
			w.endForm() // the form's own end tag goes with it
			return
		case a == atom.Form:
			w.endForm() // a </form> in a hidden control is kept
		case a == atom.Body || a == atom.Html:
			// The form was never closed. Never hide past the end of the body.
			w.endForm()
		case w.pop(name, a):
			if w.ctrl && len(w.open) == 0 && !w.deep {
				w.endForm() // the control's own end tag goes with it
			}
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
	case atom.Form:
		w.owner = nil
	}
	w.emit(raw)
}

// contentStarts is called at the first token that belongs in the body of a
// page without a <body> tag. It returns the banner to insert before that
// token when the page is a whole document; a fragment (an htmx or AJAX
// snippet) gets no banner at all.
func (w *refRewriter) contentStarts() []byte {
	w.bannerDone = true
	if w.document {
		return w.banner
	}
	return nil
}

// formRefused reads the current <form> tag's method and action. A kept
// form becomes the owner of the buttons that follow, unless one is open;
// so does a refused one that is only marked (mark).
func (w *refRewriter) formRefused(attrs map[string]string) bool {
	if w.refuse == nil {
		return false
	}
	// A missing or invalid method is GET; "dialog" submits nothing.
	method := refMethod(attrs["method"])
	refused := method == "post" && w.refuse("POST", attrs["action"]) || w.htmxRefused(attrs)
	if refused && !w.mark {
		return true
	}
	if w.owner == nil {
		f := &refForm{method: method, action: attrs["action"], known: true}
		w.owner = f
		if id, ok := attrs["id"]; ok && id != "" && len(id) <= maxFormIDBytes && w.nIDs < maxFormIDs && w.formByID[id] == nil {
			w.nIDs++
			g := *f
			if len(g.action) > maxFormActionBytes {
				g.action, g.known = "", false
			}
			w.formByID[id] = &g
		}
	}
	return refused
}

// attrs returns the current tag's attributes; the tokenizer lowers the
// names, and the first of duplicates is kept, as browsers do.
func (w *refRewriter) attrs() map[string]string {
	m := map[string]string{}
	for {
		key, val, more := w.z.TagAttr()
		if _, dup := m[string(key)]; !dup && key != nil {
			m[string(key)] = string(val)
		}
		if !more {
			return m
		}
	}
}

func refMethod(v string) string {
	switch {
	case strings.EqualFold(v, "post"):
		return "post"
	case asciiLower(v) == "dialog":
		return "dialog"
	}
	return "get"
}

// submitterRefused reads the current <button> or <input> tag: a submit
// button whose formmethod or formaction sends a refused POST.
func (w *refRewriter) submitterRefused(a atom.Atom, attrs map[string]string) bool {
	if w.refuse == nil {
		return false
	}
	typ, hasType := attrs["type"]
	typ = asciiLower(typ)
	if a == atom.Button {
		if hasType && (typ == "reset" || typ == "button") {
			return false
		}
	} else if typ != "submit" && typ != "image" {
		return false
	}
	fm, hasFM := attrs["formmethod"]
	fa, hasFA := attrs["formaction"]
	if !hasFM && !hasFA {
		return false
	}
	var form *refForm
	if id, ok := attrs["form"]; ok {
		form = w.formByID[id]
	} else if w.owner != nil {
		form = w.owner
	} else {
		return false
	}
	if hasFM && slices.Contains([]string{"put", "patch", "delete"}, asciiLower(fm)) {
		return true // htmx sends these as they are
	}
	method := "post" // an unknown form: at worst a POST
	if hasFM {
		method = refMethod(fm)
	} else if form != nil {
		method = form.method
	}
	if method != "post" {
		return false
	}
	if hasFA {
		return w.refuse("POST", fa)
	}
	if form != nil && form.known {
		return w.refuse("POST", form.action)
	}
	return true
}

// htmxRefused: a PUT, PATCH or DELETE verb attribute is refused outright;
// hx-post, then data-hx-post, is asked about.
func (w *refRewriter) htmxRefused(attrs map[string]string) bool {
	for _, k := range []string{"hx-put", "data-hx-put", "hx-patch", "data-hx-patch", "hx-delete", "data-hx-delete"} {
		if _, ok := attrs[k]; ok {
			return true
		}
	}
	for _, k := range []string{"hx-post", "data-hx-post"} {
		if v, ok := attrs[k]; ok && w.refuse("POST", v) {
			return true
		}
	}
	return false
}

// controlRefused: an element with htmx verbs, or whose data-module names
// confirm-action (which posts to its href).
func (w *refRewriter) controlRefused(attrs map[string]string) bool {
	if w.refuse == nil {
		return false
	}
	if w.htmxRefused(attrs) {
		return true
	}
	mod, ok := attrs["data-module"]
	return ok && slices.Contains(strings.Fields(mod), "confirm-action") && w.refuse("POST", attrs["href"])
}

func asciiLower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

func (w *refRewriter) endForm() {
	w.suppress, w.ctrl = false, false
	w.open = w.open[:0]
	w.deep = false
}

// push records an element opened inside the refused form.
func (w *refRewriter) push(name []byte) {
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
func (w *refRewriter) pop(name []byte, a atom.Atom) bool {
	if w.deep || a == atom.P && !w.ctrl || a == atom.Br || isVoid(a) {
		return true
	}
	h := hashName(name)
	for i := len(w.open) - 1; i >= 0; i-- {
		if w.open[i] == h {
			w.open = w.open[:i]
			return true
		}
	}
	return a == atom.P
}
