package annotate

import (
	"bytes"
	"errors"
	"io"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"golang.org/x/net/html"
	"golang.org/x/net/html/atom"
)

// Options configures a rewrite.
type Options struct {
	Notice Notice
	// WouldRefuse reports whether a form submission with this method and
	// (unresolved) action would be refused by the gate; the base URL is the
	// page's request URL. The gate passes its classifier's
	// FormWouldBeRefused. GET forms and the login form must stay. It is
	// also asked about submit buttons whose formmethod or formaction send
	// a POST (method "POST", the button's formaction or its form's
	// action), about hx-post and data-hx-post values (method "POST", the
	// value as the action) and about the href of an element with CKAN's
	// confirm-action module. A nil WouldRefuse refuses nothing: only the
	// banner is inserted.
	//
	// The action is passed as the page wrote it (empty, relative,
	// root-relative or absolute): resolving it against the page's URL is
	// WouldRefuse's job. On a site mounted under a path prefix
	// (ckan.root_path) the page's URL carries the prefix, so the login
	// form's empty action is /data/user/login and a relative "new" is
	// under /data too; the classifier must then know the prefix
	// (classify.Policy.RootPath) to keep the login form.
	WouldRefuse func(method, action string) bool

	// Script, when not empty, is the URL of the gate's notice script (the
	// site's root path + "/-/ckanops/notice.js"): a
	// <script src="..." defer data-ckanops-poll="SECONDS"></script> is inserted
	// right after the banner. ScriptPoll is the poll interval it is given
	// (in whole seconds, rounded up; zero is DefaultScriptPoll).
	Script     string
	ScriptPoll time.Duration
	// Announce, when set, makes the banner announce a planned window instead
	// of a maintenance under way; nothing is hidden or disabled, but every
	// form, submit button and control that WouldRefuse says a read-only
	// site would refuse is marked with a data-ckanops-write attribute, for
	// the script. The banner then names Notice.SiteTitle and says what the
	// window says; Notice's other fields are not used.
	Announce *Window

	// Whole says the page is not a stream: its reader is not flushed to
	// the client after each Read (the gate, for a page whose upstream
	// length was known). Read then fills its buffer, waiting on the
	// source, rather than hand over what it has before it waits, so the
	// page goes out in as few writes as the caller's buffer allows.
	Whole bool
}

// maxTokenBytes caps the one token the rewriter holds. A longer token (a
// megabyte of inline script, say) makes the rewriter stop rewriting and copy
// the rest of the page through verbatim: annotation is a courtesy, and a page
// copied through is always correct.
const maxTokenBytes = 1 << 20

// maxFormIDs caps the kept forms remembered by id, for the submit buttons
// that name their form with a form attribute (see rewriter.forms); an id
// longer than maxFormIDBytes is not remembered, nor an action longer than
// maxFormActionBytes (the form is remembered with its action unknown).
const (
	maxFormIDs         = 32
	maxFormIDBytes     = 256
	maxFormActionBytes = 2048
)

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
//
// A control (see controlRefused) is dropped the same way, from its start
// tag, with its own name first on open: to the end tag that closes it
// (dropped with it; a </p> that closes no <p> opened inside is swallowed),
// or to the first </form>, an end tag that closes nothing opened inside it,
// </body>, </html>, a <body> start tag or the end of the page (that tag
// kept). A void control is just its tag. Where a refused form had the form
// notice, a control has the control notice.
//
// A submit button decides where its form goes: formmethod and formaction
// override the form's method and action for a submission by that button
// (and a form attribute names another form as the button's). The decision
// to hide a form is made at its start tag, before its buttons are seen, and
// the rewriter holds no more than one token; so a kept form (a GET form, or
// a POST form the gate lets through) is not hidden after the fact. Instead,
// each submit button (<button> of type submit, <input type=submit|image>)
// that has formmethod or formaction, and whose submission would be a POST
// that WouldRefuse refuses, gets the disabled attribute (inserted right after
// the tag name) and a note before it; the rest of the form, and the form's
// other buttons, stay as they are. A form that is hidden is hidden with all
// its buttons, whatever they say (a formmethod="get" does not bring a POST
// form back). See submitterRefused for how the button's form is found.
//
// Announcing (mark), nothing is hidden: a refused form, control or submit
// button is kept with writeAttr after its tag name, and the rewriter goes
// on into it as into any kept element (a marked form is a kept form: it
// sets owner and is remembered by id).
type rewriter struct {
	src    io.Reader
	z      lexer
	refuse func(method, action string) bool
	banner []byte
	notice []byte
	note   Notice // for the submit button note, built when first needed
	mark   bool   // Options.Announce: mark what would be refused, hide nothing
	whole  bool   // Options.Whole: fill each Read, waiting on the source
	snote  []byte // submitNoticeAt(note), or nil
	cnote  []byte // controlNoticeAt(note), or nil

	segs       [5][]byte
	iseg, nseg int
	err        error // sticky: returned once the queue is drained
	closed     atomic.Bool

	bannerDone  bool // inserted, or given up on; never twice
	document    bool // seen a doctype, <html>, <head>, </head> or <title>
	inRaw       bool // inside a raw-text element's content (script, style, title...)
	templates   int  // open <template> elements (inert content)
	suppress    bool // inside a refused form, or a hidden control (ctrl)
	ctrl        bool // what is hidden is a control element, not a form
	open        []uint64
	deep        bool // open overflowed: stop guessing where the form ends
	passthrough bool // a token was too long: copy the rest as it is

	// The form that a submit button without a form attribute belongs to in
	// the output: the HTML parser's form element pointer, set by a <form>
	// start tag when it is null and reset by any </form>. A hidden form is
	// not in the output and sets nothing; a <form> tag inside an open form
	// is ignored by browsers and sets nothing either. Unlike browsers, the
	// rewriter does not set the pointer aside inside <template> content:
	// a form in a template sets it and a </form> there resets it. That
	// errs, in a page that nests forms and templates oddly, either way.
	owner    formRef // owner.action is ownerAction
	hasOwner bool
	// ownerAction holds the owner's action, reused from form to form.
	ownerAction []byte
	// The kept forms that set owner, by id, first first (browsers give a
	// form attribute the first element with that id): at most maxFormIDs.
	forms []formID
}

// Methods of a form submission.
const (
	methodGet byte = iota
	methodPost
	methodDialog
)

// formRef is what a submission needs of a form.
type formRef struct {
	method byte
	action []byte
	known  bool // action is the form's (false: too long to be remembered)
}

type formID struct {
	id   string
	form formRef
}

func newRewriter(r io.Reader, opts Options, now time.Time, maxToken int) *rewriter {
	w := &rewriter{src: r, refuse: opts.WouldRefuse, note: opts.Notice, mark: opts.Announce != nil, whole: opts.Whole}
	w.banner, w.notice = fragments(&opts, now)
	w.z.init(r, maxToken)
	return w
}

// Read fills p with rewritten bytes. It keeps tokenizing while the input
// buffered holds whole tokens, and returns what it has rather than wait on r
// for more; with Options.Whole it waits, until p is full or r ends.
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
		if !w.advance(n == 0 || w.whole) {
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

func (w *rewriter) emit5(a, b, c, d, e []byte) {
	w.segs = [5][]byte{a, b, c, d, e}
	w.iseg, w.nseg = 0, 5
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
// and while no form is hidden, every token but a <form> start tag, a
// </form> end tag, a submit button candidate (mayBeSubmitter), a control
// candidate (mayBeControl) and the end of input goes out as it is, and the
// tokens are contiguous. skip queues the longest such run the buffered
// input holds, and reports false when it is empty. It leaves the token that ends the run unread, for token.
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
		if tt == html.ErrorToken || tt == html.StartTagToken && (isFormTag(z.Raw()) || mayBeSubmitter(z.Raw()) || mayBeControl(z.Raw())) ||
			tt == html.EndTagToken && isFormEndTag(z.Raw()) {
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
		// The common case, most of every page: only a <form>, a </form>,
		// submit buttons and controls matter.
		switch tt {
		case html.TextToken, html.CommentToken, html.DoctypeToken:
			w.emit(raw)
			return
		case html.EndTagToken:
			if isFormEndTag(raw) {
				w.hasOwner = false
			}
			w.emit(raw)
			return
		case html.StartTagToken, html.SelfClosingTagToken:
			if !isFormTag(raw) && !mayBeSubmitter(raw) && !mayBeControl(raw) {
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
	switch a {
	case atom.Form:
		if w.refuse == nil {
			break
		}
		var vals [len(formKeys)][]byte
		var has [len(formKeys)]bool
		tagAttrs(raw, formKeys[:], vals[:], has[:])
		method, action, id := parseMethod(vals[0]), vals[1], vals[2]
		refused := method == methodPost && w.refuse("POST", string(action)) || w.htmxRefused(vals[3:], has[3:])
		if refused && !w.mark {
			w.suppress, w.ctrl = true, false
			w.open = w.open[:0]
			w.deep = false
			w.emit2(pre, w.notice)
			return
		}
		// Kept (or, announcing, kept and marked).
		if !w.hasOwner {
			w.ownerAction = append(w.ownerAction[:0], action...)
			w.owner, w.hasOwner = formRef{method: method, action: w.ownerAction, known: true}, true
			w.remember(id, method, action)
		}
		if refused {
			w.emitMarked(pre, raw, len(name))
			return
		}
	case atom.Html, atom.Head, atom.Body, atom.Frameset, atom.Template, atom.Script, atom.Style:
		// Never hidden as a control.
	default:
		if w.controlRefused(raw) {
			if w.mark {
				w.emitMarked(pre, raw, len(name))
				return
			}
			if w.cnote == nil {
				w.cnote = []byte(controlNoticeAt(w.note))
			}
			if !isVoid(a) {
				w.suppress, w.ctrl = true, true
				w.open = append(w.open[:0], hashName(name))
				w.deep = false
			}
			w.emit2(pre, w.cnote)
			return
		}
		if (a == atom.Button || a == atom.Input) && w.submitterRefused(raw) {
			if w.mark {
				w.emitMarked(pre, raw, len(name))
				return
			}
			if w.snote == nil {
				w.snote = []byte(submitNoticeAt(w.note))
			}
			n := 1 + len(tagName(raw, 1))
			w.emit5(pre, w.snote, raw[:n], disabledAttr, raw[n:])
			return
		}
	}
	w.emit2(pre, raw)
}

// disabledAttr is inserted right after the tag name of a submit button that
// would submit a refused write: there it cannot end or extend another
// attribute's value, and if the tag has a disabled attribute already, either
// one disables it.
var disabledAttr = []byte(" disabled")

// writeAttr marks, while a window is announced (Options.Announce), a form,
// submit button or control that would send a write a read-only site
// refuses; it goes right after the tag name, as disabledAttr does.
var writeAttr = []byte(" data-ckanops-write")

// emitMarked queues pre and a start tag (raw, whose name is n bytes long)
// with writeAttr after its name.
func (w *rewriter) emitMarked(pre, raw []byte, n int) {
	w.emit5(pre, raw[:1+n], writeAttr, raw[1+n:], nil)
}

func (w *rewriter) endTag(raw []byte) {
	name := tagName(raw, 2)
	a := lookup(name)
	w.inRaw = false
	if w.suppress {
		switch {
		case a == atom.Form && !w.ctrl:
			w.endForm() // the form's own end tag goes with it
			return
		case a == atom.Form:
			// A </form> in a hidden control closes a form around it:
			// stop hiding, keep the tag.
			w.endForm()
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
		w.hasOwner = false
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

// formKeys are the attributes read from a <form> start tag. A missing or
// invalid method is GET. The rest are htmxKeys: htmx submits a form that
// has one of them by AJAX, with that method, whatever the form's own.
var formKeys = [...]string{"method", "action", "id",
	"hx-post", "data-hx-post", "hx-put", "data-hx-put", "hx-patch", "data-hx-patch", "hx-delete", "data-hx-delete"}

// htmxKeys are the htmx attributes that make an element send a request
// that may write (htmx reads each also with a data- prefix). hx-get is
// not among them: a GET is judged by the gate like any link.
var htmxKeys = [...]string{"hx-post", "data-hx-post", "hx-put", "data-hx-put", "hx-patch", "data-hx-patch", "hx-delete", "data-hx-delete"}

// controlKeys are the attributes read from a start tag that may be a
// control (mayBeControl): htmxKeys, then CKAN's data-module and the href
// its confirm-action module posts to.
var controlKeys = [...]string{"hx-post", "data-hx-post", "hx-put", "data-hx-put", "hx-patch", "data-hx-patch", "hx-delete", "data-hx-delete",
	"data-module", "href"}

// htmxRefused reports whether the htmx attributes read for htmxKeys (vals
// and has, in htmxKeys' order) make an element send a write the gate would
// refuse. htmx sends a request for each verb attribute the element has. A
// PUT, PATCH or DELETE is refused without asking: the gate never lets one
// through. A POST is refused when WouldRefuse refuses it (its URL is the
// attribute's value; an empty one is the page's URL, as for a form's
// action); hx-post is asked about before data-hx-post.
func (w *rewriter) htmxRefused(vals [][]byte, has []bool) bool {
	for i := 2; i < len(htmxKeys); i++ {
		if has[i] {
			return true
		}
	}
	return has[0] && w.refuse("POST", string(vals[0])) || has[1] && w.refuse("POST", string(vals[1]))
}

// controlRefused reports whether a start tag (raw is the whole tag) that is
// not a <form>, outside any hidden form, is a control that would send a
// write the gate would refuse: an element with htmx verb attributes
// (htmxRefused), such as CKAN 2.12's Follow button (<a hx-post=...>), or
// one whose data-module names CKAN's confirm-action module, which on click
// builds a POST form aimed at the element's href and submits it. (With
// data-module-with-data, confirm-action submits the enclosing form instead;
// the href is judged all the same, at its worst.)
func (w *rewriter) controlRefused(raw []byte) bool {
	if w.refuse == nil || !mayBeControl(raw) {
		return false
	}
	var vals [len(controlKeys)][]byte
	var has [len(controlKeys)]bool
	if !plainAttrs(raw, controlKeys[:], vals[:], has[:]) {
		// The tag needs decoding, by a Tokenizer of its own: only when
		// it may be a control after all.
		if !mayBeControlDecoded(raw) {
			return false
		}
		tagAttrs(raw, controlKeys[:], vals[:], has[:])
	}
	if w.htmxRefused(vals[:len(htmxKeys)], has[:len(htmxKeys)]) {
		return true
	}
	module, href := len(htmxKeys), len(htmxKeys)+1
	return has[module] && hasModule(vals[module], "confirm-action") && w.refuse("POST", string(vals[href]))
}

// mayBeControlDecoded reports false when a tag that mayBeControl let
// through cannot be a control after all, without decoding it: a tag that
// needs decoding (see plainAttrs) and has no htmx verb attribute is a
// control only when its data-module value names confirm-action, which its
// raw value does literally or through a character reference ('&'). NUL
// and CR decode to U+FFFD and a newline, which make no letters. A tag
// whose attribute names may be htmx verbs, or that needs no decoding, is
// left to controlRefused.
func mayBeControlDecoded(raw []byte) bool {
	if len(raw) < 2 || !bytes.ContainsAny(raw, "&\x00\r") || hasHTMXName(raw) {
		return true
	}
	var vals [1][]byte
	var has [1]bool
	rawAttrs(raw, moduleKey[:], vals[:], has[:])
	return has[0] && (bytes.IndexByte(vals[0], '&') >= 0 || bytes.Contains(vals[0], []byte("confirm-action")))
}

var moduleKey = [...]string{"data-module"}

// hasHTMXName reports whether raw holds "hx-p" or "hx-d" (in any case),
// as an htmx verb attribute's name does (see mayBeControl).
func hasHTMXName(raw []byte) bool {
	for i := 0; ; {
		j := bytes.IndexByte(raw[i:], '-')
		if j < 0 {
			return false
		}
		j += i
		if j >= 2 && j+1 < len(raw) && raw[j-2]|0x20 == 'h' && raw[j-1]|0x20 == 'x' && (raw[j+1]|0x20 == 'p' || raw[j+1]|0x20 == 'd') {
			return true
		}
		i = j + 1
	}
}

// hasModule reports whether a data-module value (module names separated by
// white space, as bytes.Fields splits them) names module. An ASCII value
// is split without allocating.
func hasModule(v []byte, module string) bool {
	for _, c := range v {
		if c >= utf8.RuneSelf {
			for _, f := range bytes.Fields(v) { // Unicode white space too
				if string(f) == module {
					return true
				}
			}
			return false
		}
	}
	for len(v) > 0 {
		i := 0
		for i < len(v) && asciiSpace(v[i]) {
			i++
		}
		j := i
		for j < len(v) && !asciiSpace(v[j]) {
			j++
		}
		if j > i && string(v[i:j]) == module {
			return true
		}
		v = v[j:]
	}
	return false
}

// asciiSpace is bytes.Fields' white space in ASCII.
func asciiSpace(c byte) bool {
	switch c {
	case ' ', '\t', '\n', '\v', '\f', '\r':
		return true
	}
	return false
}

// mayBeControl reports false when a start tag's raw bytes cannot be a
// control that controlRefused refuses: no attribute name in it can be one
// of htmxKeys (none holds "hx-p" or "hx-d" in any case), and it has no
// data-module attribute whose value can name confirm-action. Attribute
// names are never decoded, so a name is there as it is written; a value
// is too when the tag holds no '&' (NUL and CR decode to other bytes), so
// a tag with data-module (CKAN puts one on many elements) but neither
// "confirm-action" nor '&' is let through.
func mayBeControl(raw []byte) bool {
	// Both spellings hold a '-': look only around each (IndexByte is
	// fast, and most tags hold few), and first at the byte before it,
	// which is an 'x' or an 'a' (CKAN's class names hold many a '-').
	module := false
	for i := 0; ; {
		j := bytes.IndexByte(raw[i:], '-')
		if j < 0 {
			break
		}
		j += i
		i = j + 1
		if j < 2 || j+1 >= len(raw) {
			continue
		}
		switch raw[j-1] | 0x20 {
		case 'x':
			if raw[j-2]|0x20 == 'h' && (raw[j+1]|0x20 == 'p' || raw[j+1]|0x20 == 'd') {
				return true
			}
		case 'a':
			if !module && raw[j+1]|0x20 == 'm' && j >= 4 && j+len("module") < len(raw) && equalLower(raw[j-4:j+1+len("module")], "data-module") {
				module = true
			}
		}
	}
	return module && (bytes.Contains(raw, []byte("confirm-action")) || bytes.IndexByte(raw, '&') >= 0)
}

// parseMethod reads a method or formmethod attribute's value. Anything that
// strings.EqualFold matches with "post" is POST (a broader match than the
// browsers' ASCII one: "poſt" counts, and the form is hidden rather than
// kept); "dialog" submits nothing; anything else is GET.
func parseMethod(v []byte) byte {
	switch {
	case bytes.EqualFold(v, []byte("post")):
		return methodPost
	case equalLower(v, "dialog"):
		return methodDialog
	}
	return methodGet
}

// remember records a kept form that set owner under its id, for the submit
// buttons that name it in a form attribute.
func (w *rewriter) remember(id []byte, method byte, action []byte) {
	if len(id) == 0 || len(id) > maxFormIDBytes || len(w.forms) == maxFormIDs {
		return
	}
	for _, f := range w.forms {
		if f.id == string(id) {
			return // the first element with the id is the one
		}
	}
	f := formID{id: string(id), form: formRef{method: method, known: len(action) <= maxFormActionBytes}}
	if f.form.known {
		f.form.action = bytes.Clone(action)
	}
	w.forms = append(w.forms, f)
}

var submitterKeys = [...]string{"type", "formmethod", "formaction", "form"}

// submitterRefused reports whether a <button> or <input> start tag (raw is
// the whole tag) outside any hidden form is a submit button with a
// formmethod or formaction that make it submit a POST WouldRefuse refuses.
// A button with neither submits as its form does, and its form was judged
// at its start tag.
//
// The button's form is the one its form attribute names, if it has one, and
// owner otherwise; a button without either submits nothing. A form
// attribute is looked up among the kept forms seen so far (forms). When it
// names none of them (a form later in the page, a form past maxFormIDs, an
// id that names no form), the button is judged by what it says alone, and
// what it does not say is taken at its worst: no formmethod means POST, and
// no formaction means an action that is refused without asking WouldRefuse.
// The same goes for a remembered form whose action was too long to keep.
// A formmethod of put, patch or delete is refused outright: browsers
// submit it as GET, but htmx (CKAN 2.12 loads it on every page) sends it
// as it is when the form is htmx's.
//
// A note and a disabled attribute on a button that turns out to submit
// nothing, or to a form that was hidden, do no harm.
func (w *rewriter) submitterRefused(raw []byte) bool {
	if w.refuse == nil || !mayBeSubmitter(raw) {
		return false
	}
	var vals [4][]byte
	var has [4]bool
	tagAttrs(raw, submitterKeys[:], vals[:], has[:])
	typ, hasType := vals[0], has[0]
	if equalLower(tagName(raw, 1), "button") {
		// A missing or invalid type is submit.
		if hasType && (equalLower(typ, "reset") || equalLower(typ, "button")) {
			return false
		}
	} else if !hasType || !equalLower(typ, "submit") && !equalLower(typ, "image") {
		return false
	}
	if !has[1] && !has[2] {
		return false
	}
	var form formRef
	found := false
	switch {
	case has[3]:
		for _, f := range w.forms {
			if f.id == string(vals[3]) {
				form, found = f.form, true
				break
			}
		}
	case w.hasOwner:
		form, found = w.owner, true
	default:
		return false // no form: the button submits nothing
	}
	if has[1] && isHTMXWriteVerb(vals[1]) {
		// Browsers submit these as GET, but htmx, which takes a
		// submitter's formmethod when one of its verbs, sends them as
		// they are: a write the gate never lets through.
		return true
	}
	method := methodPost
	if has[1] {
		method = parseMethod(vals[1])
	} else if found {
		method = form.method
	}
	if method != methodPost {
		return false
	}
	switch {
	case has[2]:
		return w.refuse("POST", string(vals[2]))
	case found && form.known:
		return w.refuse("POST", string(form.action))
	}
	return true
}

// isHTMXWriteVerb reports whether a formmethod value is a method that htmx
// sends as it is and the gate always refuses: PUT, PATCH or DELETE.
func isHTMXWriteVerb(v []byte) bool {
	return equalLower(v, "put") || equalLower(v, "patch") || equalLower(v, "delete")
}

// tagAttrs reads the attributes named by keys (lower case) from a start
// tag's raw bytes, as Tokenizer.TagAttr gives them: names with A-Z lowered,
// values decoded, the first of attributes whose names differ only in case
// kept, as browsers do. has[i] reports whether keys[i] is there, vals[i] is
// its value: a part of raw, or a new slice when the tag needs decoding. A
// tag that needs decoding (character references, NUL, CR) is handed to a
// Tokenizer of its own, which decodes it exactly as the page's Tokenizer
// would have: a start tag is tokenized the same wherever it starts.
func tagAttrs(raw []byte, keys []string, vals [][]byte, has []bool) {
	if plainAttrs(raw, keys, vals, has) {
		return
	}
	clear(vals)
	clear(has)
	z := html.NewTokenizer(bytes.NewReader(raw))
	z.Next()
	for {
		key, val, more := z.TagAttr()
		for i, k := range keys {
			if !has[i] && string(key) == k {
				vals[i], has[i] = val, true
			}
		}
		if !more {
			break
		}
	}
}

// plainAttrs is tagAttrs without a Tokenizer, when the attributes need no
// decoding: when the tag holds no character reference (&), NUL or CR,
// TagAttr's values are the bytes as written. It reads the attributes with
// the Tokenizer's steps (those of tagEnd). It reports false, having set
// nothing it can be trusted with, when the tag needs decoding.
func plainAttrs(raw []byte, keys []string, vals [][]byte, has []bool) bool {
	if len(raw) < 2 || bytes.ContainsAny(raw, "&\x00\r") {
		return false
	}
	rawAttrs(raw, keys, vals, has)
	return true
}

// rawAttrs is plainAttrs without the check: the values are the bytes as
// written, not decoded. Where each attribute begins and ends does not
// depend on decoding, so the attributes found are the Tokenizer's, and a
// value is its decoded value's source. raw is at least 2 bytes long.
func rawAttrs(raw []byte, keys []string, vals [][]byte, has []bool) {
	b := raw[2:] // after "<x"
	n, i := len(b), 0
	for i < n && tagByte[b[i]]&endsName == 0 {
		i++
	}
	if i < n && tagByte[b[i]]&isSpace != 0 {
		i++
	}
	for {
		for i < n && tagByte[b[i]]&isSpace != 0 {
			i++
		}
		if i == n || b[i] == '>' {
			return
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
		for j, name := range keys {
			if !has[j] && equalLower(key, name) {
				vals[j], has[j] = val, true
			}
		}
	}
}

func (w *rewriter) endForm() {
	w.suppress, w.ctrl = false, false
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
//
// In a hidden control (ctrl), whose own name is at the bottom of open, a
// </p> closes a <p> opened there (the control may be one), and is swallowed
// otherwise.
func (w *rewriter) pop(name []byte, a atom.Atom) bool {
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

// isFormEndTag reports whether an end tag's raw bytes are a </form> tag.
func isFormEndTag(raw []byte) bool {
	return len(raw) >= 7 && raw[0] == '<' && raw[1] == '/' && isFormTag(raw[1:])
}

// mayBeSubmitter reports false when a start tag's raw bytes cannot be a
// submit button with a formmethod, formaction or form attribute: it is
// not a <button> or <input> tag, or no attribute name in it can begin with
// "form" (in any case) and be one of those. An attribute name begins after
// white space, '/' or a quote that ends a value (see tagEnd); so
// class="form-control" does not count.
func mayBeSubmitter(raw []byte) bool {
	return submitterTag(raw, len(tagName(raw, 1)))
}

// submitterTag is mayBeSubmitter for a tag whose name is n bytes long.
func submitterTag(raw []byte, n int) bool {
	if n != 5 && n != 6 || n == 5 && !equalLower(raw[1:6], "input") || n == 6 && !equalLower(raw[1:7], "button") {
		return false
	}
	return hasFormAttr(raw[1+n:])
}

// hasFormAttr reports whether b holds "form" (in any case) after white
// space, '/' or a quote, and before the end of b or a byte that can follow
// "form" in "formmethod", "formaction" or "form" as an attribute name.
func hasFormAttr(b []byte) bool {
	for i := 1; i+4 <= len(b); i++ {
		if b[i]|0x20 != 'f' || b[i+1]|0x20 != 'o' || b[i+2]|0x20 != 'r' || b[i+3]|0x20 != 'm' {
			continue
		}
		switch b[i-1] {
		case ' ', '\n', '\r', '\t', '\f', '/', '"', '\'':
		default:
			continue
		}
		if i+4 == len(b) {
			return true
		}
		switch b[i+4] {
		case 'm', 'M', 'a', 'A', '=', ' ', '\n', '\r', '\t', '\f', '/', '>':
			return true
		}
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
