package annotate

import (
	"bytes"
	"errors"
	"io"
	"sync"

	"golang.org/x/net/html"
)

// lexer splits a page into exactly the tokens golang.org/x/net/html's
// Tokenizer returns (same types, same raw bytes, same errors, the same
// maxBuf cap), without decoding anything: no tag names, attributes or text
// are copied out. The rewriter only needs each token's raw bytes and type;
// the attributes of a <form> tag are read by formRefused.
//
// Each scanning method below is a port of the Tokenizer method of the same
// name (x/net v0.62.0, html/token.go) that keeps the byte-for-byte reading
// order, including the look-ahead and backing up, so that a token ends, and
// the cap is reached, at the same byte. The additions are fast paths that
// run the same steps where nothing can go wrong: within lim, the bytes
// readByte returns without reading from the source or reaching the cap.
// Where the Tokenizer reads byte after byte without changing state (text up
// to '<', a quoted attribute value, a comment between dashes, a bogus
// comment up to '>'), the lexer jumps with bytes.IndexByte; a tag that ends
// within lim is read by tagEnd on a plain slice; and quick, for the
// rewriter's fast path, consumes runs of text and tags the same way.
//
// Like the Tokenizer, next reads more from the source when a token goes on
// past the buffered input (moving the token to the start of the buffer;
// positions kept across reads are offsets from the token's start). Unlike
// it, next can be told not to wait on the source: the rewriter hands over
// what it has before it waits for more. Then, when the buffered input ends
// inside the token, next reports needInput and forgets the partial token,
// which a later next scans again from its start. A token is a function of
// its bytes (and of the source's error once the source is exhausted), so
// the second scan gives what the Tokenizer would have given by reading on.
// The rewriter asks for that in skip and in a Read that already has bytes
// to return; a Read with nothing to return yet then lets next wait on the
// source in the middle of the token. So a token is given up a few times at
// most, and scanning stays linear in the page however it arrives.
//
// The other difference, which the rewriter cannot see: a self-closing start
// tag is reported as a StartTagToken.
//
// FuzzFastMatchesReference checks the rewriter built on it against the one
// built on the Tokenizer.
type lexer struct {
	src    io.Reader
	buf    []byte // buf[start:pos] is the current token, buf[pos:] input not yet tokenized
	start  int
	pos    int
	lim    int // buf[pos:lim] can be read without a refill or reaching maxBuf
	maxBuf int

	err     error // sticky, as Tokenizer.err
	readErr error // the source's error, once it has returned one
	block   bool  // the current scan may read from the source
	short   bool  // the current scan ran past the buffered input, and may not read
	tt      html.TokenType

	rawTag     string // as Tokenizer.rawTag: the raw-text element whose content comes next
	prevRawTag string // rawTag before the current token (for unread)
	nameEnd    int    // end of the tag name in the current tag, from start
}

// needInput is what next(false) returns when the buffered input ends inside
// the next token and the source has not ended.
const needInput html.TokenType = 1 << 30

// errShort marks a scan that ran out of buffered input; it never leaves next.
var errShort = errors.New("annotate: token continues past the buffered input")

// lexBufSize is the size of the lexer's buffer, which is also the most it
// reads from the source at once. Reads as large as the proxy's copy buffer
// keep the number of writes (each flushed, the length being unknown) low.
// Longer tokens grow it, as they grow the Tokenizer's.
const lexBufSize = 32 << 10

var lexBufs = sync.Pool{New: func() any { b := make([]byte, 0, lexBufSize); return &b }}

func (z *lexer) init(r io.Reader, maxBuf int) {
	z.src = r
	z.maxBuf = maxBuf
}

// release gives the buffer back to the pool; nothing may point into it and
// the lexer is not used again.
func (z *lexer) release() {
	z.putBuf(z.buf)
	z.buf = nil
	z.start, z.pos, z.lim = 0, 0, 0
}

func (z *lexer) putBuf(b []byte) {
	if cap(b) == lexBufSize {
		b = b[:0]
		lexBufs.Put(&b)
	}
}

// next scans the next token, as Tokenizer.Next does. Unless block is set,
// it does not read from the source, and returns needInput rather than wait.
func (z *lexer) next(block bool) html.TokenType {
	z.start = z.pos
	if z.err != nil {
		z.tt = html.ErrorToken
		return z.tt
	}
	z.prevRawTag = z.rawTag
	z.lim = z.limit(z.start)
	z.block = block
	tt := z.scan()
	if z.short {
		z.unread()
		return needInput
	}
	z.tt = tt
	return tt
}

// unread forgets the token just scanned (next returned it, and nothing since
// has failed): the following next scans it again. Also used by next itself
// to forget a partial token.
func (z *lexer) unread() {
	z.pos = z.start
	z.err = nil
	z.short = false
	z.rawTag = z.prevRawTag
}

// fill reads more input in the middle of a token, keeping the token. Like
// the Tokenizer, it moves the token to the start of the buffer and doubles
// the buffer when the token fills more than half of it. Nothing else may
// point into the buffer: next(true) is called with the rewriter's queue
// drained.
func (z *lexer) fill() {
	if z.buf == nil {
		z.buf = *lexBufs.Get().(*[]byte)
	}
	d := len(z.buf) - z.start
	buf := z.buf
	if 2*d > cap(buf) {
		buf = make([]byte, d, 2*cap(buf))
	}
	copy(buf[:d], z.buf[z.start:])
	if cap(buf) != cap(z.buf) {
		z.putBuf(z.buf)
	}
	z.pos -= z.start
	z.start, z.buf = 0, buf[:d]
	n, err := readAtLeastOneByte(z.src, buf[d:cap(buf)])
	z.buf = buf[:d+n]
	z.readErr = err
	z.lim = z.limit(0)
}

// readAtLeastOneByte is the Tokenizer's: a source that keeps returning
// (0, nil) ends with io.ErrNoProgress.
func readAtLeastOneByte(r io.Reader, b []byte) (int, error) {
	for i := 0; i < 100; i++ {
		if n, err := r.Read(b); n != 0 || err != nil {
			return n, err
		}
	}
	return 0, io.ErrNoProgress
}

// Raw returns the current token's bytes, valid until the next fill.
func (z *lexer) Raw() []byte { return z.buf[z.start:z.pos] }

// Buffered returns the input read but not yet tokenized.
func (z *lexer) Buffered() []byte { return z.buf[z.pos:] }

// Err returns the error of the last ErrorToken.
func (z *lexer) Err() error {
	if z.tt != html.ErrorToken {
		return nil
	}
	return z.err
}

// limit returns the lim of a token that starts at start.
func (z *lexer) limit(start int) int {
	if z.maxBuf > 0 && start+z.maxBuf-1 < len(z.buf) {
		// Reading the byte at start+maxBuf-1 makes the token maxBuf long:
		// that one goes through readByteSlow, which reports the cap.
		return start + z.maxBuf - 1
	}
	return len(z.buf)
}

// quick is next's fast path for the most common tokens, for the rewriter's
// skip: from a token boundary with no raw text pending, it consumes text
// that a tag ends, start tags and end tags, as long as each token (and the
// bytes next would read past it) lies within the token's lim. It stops, and
// leaves the rest to next, at anything else (comments, doctypes, the end of
// the buffered input, the cap), at a <form> start tag, a </form> end tag,
// a submit button candidate (mayBeSubmitter) or a control candidate
// (mayBeControl), and after a start tag whose content is raw text. It
// reports whether it consumed anything. It runs next's steps on the same
// bytes, leaving out the cases that cannot occur within lim (refill, cap,
// end of input).
func (z *lexer) quick() bool {
	buf, maxBuf := z.buf, z.maxBuf
	pos := z.pos
	for {
		start := pos
		lim := len(buf)
		if maxBuf > 0 && start+maxBuf-1 < lim {
			lim = start + maxBuf - 1
		}
		b := buf[:lim]
		i := start
		for {
			// Text up to a '<' that starts a tag, a comment or a doctype;
			// next reads that '<' and the byte after it, then backs up.
			if i+1 < lim && b[i] == '<' {
				// Most often, right away.
			} else if k := bytes.IndexByte(b[i:], '<'); k < 0 || i+k+1 >= lim {
				goto done
			} else {
				i += k
			}
			if startsToken[b[i+1]] {
				break
			}
			i++
		}
		if i > start {
			pos = i // a text token
			continue
		}
		c := b[i+1]
		switch {
		case isLetter(c):
			end, nameEnd, keys := tagEnd(b[i+2:])
			if end < 0 {
				goto done
			}
			end += i + 2
			// mayBeControl looks for its attribute names anywhere in the
			// tag; only a tag with a name that can be one (keys) needs it.
			if isFormTag(b[i:end]) || submitterTag(b[i:end], 1+nameEnd) || keys&mayControl != 0 && mayBeControl(b[i:end]) {
				goto done
			}
			pos = end
			if raw := rawTextName(b[i+1 : i+2+nameEnd]); raw != "" {
				z.rawTag = raw
				goto done
			}
		case c == '/' && i+2 < lim && isLetter(b[i+2]):
			end, _, _ := tagEnd(b[i+3:])
			if end < 0 || isFormEndTag(b[i:i+3+end]) {
				goto done
			}
			pos = i + 3 + end
		default:
			goto done
		}
	}
done:
	moved := pos != z.pos
	z.pos = pos
	return moved
}

// startsToken marks the bytes after a '<' that end a text token.
var startsToken = func() (t [256]bool) {
	for c := 'a'; c <= 'z'; c++ {
		t[c], t[c-'a'+'A'] = true, true
	}
	t['/'], t['!'], t['?'] = true, true, true
	return t
}()

func isLetter(c byte) bool { return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' }

// readByte is Tokenizer.readByte: the next byte, reading more from the
// source when needed, or 0 with z.err set (the source's error at its end,
// html.ErrBufferExceeded when the token reaches maxBuf bytes). When the scan
// may not read from the source, it sets errShort instead, for good: the scan
// is void from there on.
func (z *lexer) readByte() byte {
	if z.pos < z.lim {
		z.pos++
		return z.buf[z.pos-1]
	}
	return z.readByteSlow()
}

// readByteSlow is kept out of readByte so that readByte inlines.
//
//go:noinline
func (z *lexer) readByteSlow() byte {
	if z.short {
		z.err = errShort
		return 0
	}
	if z.pos >= len(z.buf) {
		if z.readErr == nil && z.block {
			z.fill()
		}
		if z.pos >= len(z.buf) {
			if z.readErr != nil {
				z.err = z.readErr
				return 0
			}
			z.short, z.lim, z.err = true, 0, errShort
			return 0
		}
	}
	x := z.buf[z.pos]
	z.pos++
	if z.maxBuf > 0 && z.pos-z.start >= z.maxBuf {
		z.err = html.ErrBufferExceeded
		return 0
	}
	return x
}

// avail returns the bytes readByte would return without an error.
func (z *lexer) avail() []byte {
	if z.pos >= z.lim {
		return nil
	}
	return z.buf[z.pos:z.lim]
}

// skipTo moves to the next c in avail, or past avail when there is none.
func (z *lexer) skipTo(c byte) {
	a := z.avail()
	if i := bytes.IndexByte(a, c); i >= 0 {
		z.pos += i
	} else {
		z.pos += len(a)
	}
}

func (z *lexer) skipWhiteSpace() {
	if z.err != nil {
		return
	}
	for {
		c := z.readByte()
		if z.err != nil {
			return
		}
		switch c {
		case ' ', '\n', '\r', '\t', '\f':
		default:
			z.pos--
			return
		}
	}
}

// scan is the body of Tokenizer.Next after its prologue.
func (z *lexer) scan() html.TokenType {
	if z.rawTag != "" {
		if z.rawTag == "plaintext" {
			// Read everything up to EOF.
			for z.err == nil {
				z.pos = max(z.pos, z.lim)
				z.readByte()
			}
		} else {
			z.readRawOrRCDATA()
		}
		if z.pos > z.start {
			return html.TextToken
		}
	}
loop:
	for {
		z.skipTo('<')
		c := z.readByte()
		if z.err != nil {
			break loop
		}
		if c != '<' {
			continue loop
		}
		c = z.readByte()
		if z.err != nil {
			break loop
		}
		var tokenType html.TokenType
		switch {
		case 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z':
			tokenType = html.StartTagToken
		case c == '/':
			tokenType = html.EndTagToken
		case c == '!' || c == '?':
			tokenType = html.CommentToken
		default:
			z.pos--
			continue
		}
		if x := z.pos - len("<a"); z.start < x {
			z.pos = x
			return html.TextToken
		}
		switch tokenType {
		case html.StartTagToken:
			return z.readStartTag()
		case html.EndTagToken:
			c = z.readByte()
			if z.err != nil {
				break loop
			}
			if c == '>' {
				return html.CommentToken // "</>"
			}
			if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' {
				z.readTag()
				if z.err != nil {
					return html.ErrorToken
				}
				return html.EndTagToken
			}
			z.pos--
			z.readUntilCloseAngle()
			return html.CommentToken
		case html.CommentToken:
			if c == '!' {
				return z.readMarkupDeclaration()
			}
			z.pos--
			z.readUntilCloseAngle()
			return html.CommentToken
		}
	}
	if z.start < z.pos {
		return html.TextToken
	}
	return html.ErrorToken
}

func (z *lexer) readRawOrRCDATA() {
	if z.rawTag == "script" {
		z.readScript()
		z.rawTag = ""
		return
	}
loop:
	for {
		z.skipTo('<')
		c := z.readByte()
		if z.err != nil {
			break loop
		}
		if c != '<' {
			continue loop
		}
		c = z.readByte()
		if z.err != nil {
			break loop
		}
		if c != '/' {
			z.pos--
			continue loop
		}
		if z.readRawEndTag() || z.err != nil {
			break loop
		}
	}
	z.rawTag = ""
}

func (z *lexer) readRawEndTag() bool {
	for i := 0; i < len(z.rawTag); i++ {
		c := z.readByte()
		if z.err != nil {
			return false
		}
		if c != z.rawTag[i] && c != z.rawTag[i]-('a'-'A') {
			z.pos--
			return false
		}
	}
	c := z.readByte()
	if z.err != nil {
		return false
	}
	switch c {
	case ' ', '\n', '\r', '\t', '\f', '/', '>':
		z.pos -= 3 + len(z.rawTag)
		return true
	}
	z.pos--
	return false
}

func (z *lexer) readScript() {
	var c byte

scriptData:
	z.skipTo('<')
	c = z.readByte()
	if z.err != nil {
		return
	}
	if c == '<' {
		goto scriptDataLessThanSign
	}
	goto scriptData

scriptDataLessThanSign:
	c = z.readByte()
	if z.err != nil {
		return
	}
	switch c {
	case '/':
		goto scriptDataEndTagOpen
	case '!':
		goto scriptDataEscapeStart
	}
	z.pos--
	goto scriptData

scriptDataEndTagOpen:
	if z.readRawEndTag() || z.err != nil {
		return
	}
	goto scriptData

scriptDataEscapeStart:
	c = z.readByte()
	if z.err != nil {
		return
	}
	if c == '-' {
		goto scriptDataEscapeStartDash
	}
	z.pos--
	goto scriptData

scriptDataEscapeStartDash:
	c = z.readByte()
	if z.err != nil {
		return
	}
	if c == '-' {
		goto scriptDataEscapedDashDash
	}
	z.pos--
	goto scriptData

scriptDataEscaped:
	c = z.readByte()
	if z.err != nil {
		return
	}
	switch c {
	case '-':
		goto scriptDataEscapedDash
	case '<':
		goto scriptDataEscapedLessThanSign
	}
	goto scriptDataEscaped

scriptDataEscapedDash:
	c = z.readByte()
	if z.err != nil {
		return
	}
	switch c {
	case '-':
		goto scriptDataEscapedDashDash
	case '<':
		goto scriptDataEscapedLessThanSign
	}
	goto scriptDataEscaped

scriptDataEscapedDashDash:
	c = z.readByte()
	if z.err != nil {
		return
	}
	switch c {
	case '-':
		goto scriptDataEscapedDashDash
	case '<':
		goto scriptDataEscapedLessThanSign
	case '>':
		goto scriptData
	}
	goto scriptDataEscaped

scriptDataEscapedLessThanSign:
	c = z.readByte()
	if z.err != nil {
		return
	}
	if c == '/' {
		goto scriptDataEscapedEndTagOpen
	}
	if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' {
		goto scriptDataDoubleEscapeStart
	}
	z.pos--
	goto scriptData

scriptDataEscapedEndTagOpen:
	if z.readRawEndTag() || z.err != nil {
		return
	}
	goto scriptDataEscaped

scriptDataDoubleEscapeStart:
	z.pos--
	for i := 0; i < len("script"); i++ {
		c = z.readByte()
		if z.err != nil {
			return
		}
		if c != "script"[i] && c != "SCRIPT"[i] {
			z.pos--
			goto scriptDataEscaped
		}
	}
	c = z.readByte()
	if z.err != nil {
		return
	}
	switch c {
	case ' ', '\n', '\r', '\t', '\f', '/', '>':
		goto scriptDataDoubleEscaped
	}
	z.pos--
	goto scriptDataEscaped

scriptDataDoubleEscaped:
	c = z.readByte()
	if z.err != nil {
		return
	}
	switch c {
	case '-':
		goto scriptDataDoubleEscapedDash
	case '<':
		goto scriptDataDoubleEscapedLessThanSign
	}
	goto scriptDataDoubleEscaped

scriptDataDoubleEscapedDash:
	c = z.readByte()
	if z.err != nil {
		return
	}
	switch c {
	case '-':
		goto scriptDataDoubleEscapedDashDash
	case '<':
		goto scriptDataDoubleEscapedLessThanSign
	}
	goto scriptDataDoubleEscaped

scriptDataDoubleEscapedDashDash:
	c = z.readByte()
	if z.err != nil {
		return
	}
	switch c {
	case '-':
		goto scriptDataDoubleEscapedDashDash
	case '<':
		goto scriptDataDoubleEscapedLessThanSign
	case '>':
		goto scriptData
	}
	goto scriptDataDoubleEscaped

scriptDataDoubleEscapedLessThanSign:
	c = z.readByte()
	if z.err != nil {
		return
	}
	if c == '/' {
		goto scriptDataDoubleEscapeEnd
	}
	z.pos--
	goto scriptDataDoubleEscaped

scriptDataDoubleEscapeEnd:
	if z.readRawEndTag() {
		z.pos += len("</script>")
		goto scriptDataEscaped
	}
	if z.err != nil {
		return
	}
	goto scriptDataDoubleEscaped
}

// readComment reads a comment after its "<!--".
func (z *lexer) readComment() {
	var dashCount int
	beginning := true
	for {
		if dashCount == 0 && !beginning {
			// Anything but '-' leaves the state as it is ('>' and '!'
			// only count after two dashes).
			z.skipTo('-')
		}
		c := z.readByte()
		if z.err != nil {
			return
		}
		switch c {
		case '-':
			dashCount++
			continue
		case '>':
			if dashCount >= 2 || beginning {
				return
			}
		case '!':
			if dashCount >= 2 {
				c = z.readByte()
				if z.err != nil {
					return
				} else if c == '>' {
					return
				} else if c == '-' {
					dashCount = 1
					beginning = false
					continue
				}
			}
		}
		dashCount = 0
		beginning = false
	}
}

func (z *lexer) readUntilCloseAngle() {
	for {
		z.skipTo('>')
		c := z.readByte()
		if z.err != nil {
			return
		}
		if c == '>' {
			return
		}
	}
}

// readMarkupDeclaration reads a token after its "<!": a comment, a doctype
// or a bogus comment (the Tokenizer only reads CDATA when AllowCDATA is set,
// which the rewriter never does).
func (z *lexer) readMarkupDeclaration() html.TokenType {
	dataStart := z.pos - z.start // an offset: reading may move the token
	var c [2]byte
	for i := 0; i < 2; i++ {
		c[i] = z.readByte()
		if z.err != nil {
			return html.CommentToken
		}
	}
	if c[0] == '-' && c[1] == '-' {
		z.readComment()
		return html.CommentToken
	}
	z.pos -= 2
	if z.readDoctype(dataStart) {
		return html.DoctypeToken
	}
	z.readUntilCloseAngle()
	return html.CommentToken
}

func (z *lexer) readDoctype(dataStart int) bool { // dataStart is from z.start
	const s = "DOCTYPE"
	for i := 0; i < len(s); i++ {
		c := z.readByte()
		if z.err != nil {
			if z.err == io.EOF {
				// As the Tokenizer: read the fragment again as a bogus
				// comment, which meets the end of input again.
				z.pos = z.start + dataStart
				z.err = nil
			}
			return false
		}
		if c != s[i] && c != s[i]+('a'-'A') {
			z.pos = z.start + dataStart
			return false
		}
	}
	if z.skipWhiteSpace(); z.err != nil {
		return true
	}
	z.readUntilCloseAngle()
	return true
}

// readStartTag reads a start tag after its "<a" and notes whether raw text
// comes next.
func (z *lexer) readStartTag() html.TokenType {
	nameStart := z.pos - 1 - z.start // an offset: reading may move the token
	z.readTag()
	if z.err != nil {
		return html.ErrorToken
	}
	z.rawTag = rawTextName(z.buf[z.start+nameStart : z.start+z.nameEnd])
	return html.StartTagToken
}

// rawTextName returns the lower-case name when name is, in any case, one of
// the elements whose content the Tokenizer reads as raw text or RCDATA
// (Tokenizer.readStartTag's list), and "" otherwise.
func rawTextName(name []byte) string {
	var cands []string
	switch len(name) {
	case 3:
		cands = rawNames3
	case 5:
		cands = rawNames5
	case 6:
		cands = rawNames6
	case 7:
		cands = rawNames7
	case 8:
		cands = rawNames8
	case 9:
		cands = rawNames9
	default:
		return ""
	}
	for _, s := range cands {
		if equalLower(name, s) {
			return s
		}
	}
	return ""
}

var (
	rawNames3 = []string{"xmp"}
	rawNames5 = []string{"style", "title"}
	rawNames6 = []string{"iframe", "script"}
	rawNames7 = []string{"noembed"}
	rawNames8 = []string{"noframes", "noscript", "textarea"}
	rawNames9 = []string{"plaintext"}
)

// equalLower reports whether b, with A-Z lowered, is lower (all lower case).
func equalLower(b []byte, lower string) bool {
	if len(b) != len(lower) {
		return false
	}
	for i := range len(b) {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}

// readTag reads a start or end tag's name and attributes after its "<a" or
// "</a", as Tokenizer.readTag, without keeping the attributes.
func (z *lexer) readTag() {
	if end, nameEnd, _ := tagEnd(z.avail()); end >= 0 {
		z.nameEnd = z.pos + nameEnd - z.start
		z.pos += end
		return
	}
	z.readTagName()
	if z.skipWhiteSpace(); z.err != nil {
		return
	}
	for {
		c := z.readByte()
		if z.err != nil || c == '>' {
			break
		}
		z.pos--
		z.readTagAttrKey()
		z.readTagAttrVal()
		if z.skipWhiteSpace(); z.err != nil {
			break
		}
	}
}

func (z *lexer) readTagName() {
	for {
		c := z.readByte()
		if z.err != nil {
			z.nameEnd = z.pos - z.start
			return
		}
		switch c {
		case ' ', '\n', '\r', '\t', '\f':
			z.nameEnd = z.pos - 1 - z.start
			return
		case '/', '>':
			z.pos--
			z.nameEnd = z.pos - z.start
			return
		}
	}
}

func (z *lexer) readTagAttrKey() {
	start := z.pos - z.start // an offset: reading may move the token
	for {
		c := z.readByte()
		if z.err != nil {
			return
		}
		switch c {
		case '=':
			if z.start+start+1 == z.pos {
				// An '=' before the name begins is part of the name.
				continue
			}
			fallthrough
		case ' ', '\n', '\r', '\t', '\f', '/', '>':
			z.pos--
			return
		}
	}
}

func (z *lexer) readTagAttrVal() {
	if z.skipWhiteSpace(); z.err != nil {
		return
	}
	c := z.readByte()
	if z.err != nil {
		return
	}
	if c == '/' {
		return
	}
	if c != '=' {
		z.pos--
		return
	}
	if z.skipWhiteSpace(); z.err != nil {
		return
	}
	quote := z.readByte()
	if z.err != nil {
		return
	}
	switch quote {
	case '>':
		z.pos--
		return

	case '\'', '"':
		for {
			z.skipTo(quote)
			c := z.readByte()
			if z.err != nil {
				return
			}
			if c == quote {
				return
			}
		}

	default:
		for {
			c := z.readByte()
			if z.err != nil {
				return
			}
			switch c {
			case ' ', '\n', '\r', '\t', '\f':
				return
			case '>':
				z.pos--
				return
			}
		}
	}
}

// tagEnd is readTag's fast path, for a tag that ends within b (bytes that
// readByte returns without an error): it runs the same steps on b and
// returns the offsets of the byte after the closing '>' and of the end of
// the name, or -1 when the tag does not end within b (then readTag reads it
// byte by byte). readTag never reads past the closing '>', so a tag that
// ends within b is read the same either way. keys tells what the tag's
// attribute names begin with: mayControl when one may be an htmx verb
// attribute or data-module (keyMayControl).
func tagEnd(b []byte) (end, nameEnd int, keys uint8) {
	n := len(b)
	i := 0
	// readTagName: up to white space (read) or '/' or '>' (not read).
	for ; ; i++ {
		if i == n {
			return -1, 0, 0
		}
		if k := tagByte[b[i]]; k&endsName != 0 {
			nameEnd = i
			if k&isSpace != 0 {
				i++
			}
			break
		}
	}
	for {
		// skipWhiteSpace, then the closing '>' or an attribute.
		for i < n && tagByte[b[i]]&isSpace != 0 {
			i++
		}
		if i == n {
			return -1, 0, 0
		}
		if b[i] == '>' {
			return i + 1, nameEnd, keys
		}
		// readTagAttrKey: up to '=' (unless it is the key's first byte),
		// white space, '/' or '>', none of them read.
		if keyStarts[b[i]] != 0 && keyMayControl(b[i:]) {
			keys |= mayControl
		}
		if b[i] == '=' {
			i++
		}
		for ; ; i++ {
			if i == n {
				return -1, 0, 0
			}
			if tagByte[b[i]]&endsKey != 0 {
				break
			}
		}
		// readTagAttrVal.
		for i < n && tagByte[b[i]]&isSpace != 0 {
			i++
		}
		if i == n {
			return -1, 0, 0
		}
		switch b[i] {
		case '/':
			i++
			continue
		case '=':
			i++
		default:
			continue
		}
		for i < n && tagByte[b[i]]&isSpace != 0 {
			i++
		}
		if i == n {
			return -1, 0, 0
		}
		switch q := b[i]; q {
		case '>':
			continue
		case '\'', '"':
			k := bytes.IndexByte(b[i+1:], q)
			if k < 0 {
				return -1, 0, 0
			}
			i += 1 + k + 1
		default:
			// Unquoted: up to white space (read) or '>' (not read).
			for i++; ; i++ {
				if i == n {
					return -1, 0, 0
				}
				if k := tagByte[b[i]]; k&isSpace != 0 {
					i++
					break
				} else if k&isGT != 0 {
					break
				}
			}
		}
	}
}

// tagByte classifies the bytes that end a run in a tag.
var tagByte = func() (t [256]uint8) {
	for _, c := range []byte(" \n\r\t\f") {
		t[c] = isSpace
	}
	t['/'], t['>'], t['='] = isSlash, isGT, isEq
	return t
}()

const (
	isSpace = 1 << iota // the Tokenizer's white space: ' ', '\n', '\r', '\t', '\f'
	isSlash
	isGT
	isEq

	endsName = isSpace | isSlash | isGT
	endsKey  = isSpace | isSlash | isGT | isEq
)

// mayControl is tagEnd's keys bit for an attribute name that may be one of
// the names mayBeControl looks for (keyMayControl). A tag without one is no
// control.
const mayControl = 1

// keyStarts marks the first bytes of the names keyMayControl looks at.
var keyStarts = func() (t [256]uint8) {
	t['h'], t['H'], t['d'], t['D'] = 1, 1, 1, 1
	return t
}()

// keyMayControl reports whether an attribute name that starts b (in any
// case) begins with "hx-", "data-hx-" or "data-module": every name of
// htmxKeys and data-module does. Names are never decoded (see
// mayBeControl), so a name that begins otherwise is none of them.
func keyMayControl(b []byte) bool {
	if len(b) < 3 {
		return false
	}
	switch b[0] | 0x20 {
	case 'h':
		return b[1]|0x20 == 'x' && b[2] == '-'
	case 'd':
		return b[1]|0x20 == 'a' && (hasPrefixLower(b, "data-hx-") || hasPrefixLower(b, "data-module"))
	}
	return false
}

// hasPrefixLower reports whether b begins with lower, A-Z lowered.
func hasPrefixLower(b []byte, lower string) bool {
	return len(b) >= len(lower) && equalLower(b[:len(lower)], lower)
}
