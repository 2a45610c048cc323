package annotate

import (
	"html"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"
)

// Notice is what the banner and the form notices say.
type Notice struct {
	SiteTitle string
	Message   string     // the operator's message: untrusted text, always escaped
	Until     *time.Time // expected end of the maintenance, optional
	Mode      string     // "read-only" (the refusal pages also pass "down")
}

// Inline styles: the fragments must look acceptable on any CKAN theme (and on
// the gate's own refusal pages) without a stylesheet.
const (
	bannerStyle = "box-sizing:border-box;margin:0;padding:10px 16px;" +
		"background:#fff3cd;color:#3d2f00;border-bottom:2px solid #d9a400;" +
		"font:15px/1.4 system-ui,-apple-system,'Segoe UI',sans-serif;text-align:center"
	noticeStyle = "box-sizing:border-box;margin:1em 0;padding:12px 16px;" +
		"background:#fff3cd;color:#3d2f00;border:1px solid #d9a400;border-radius:4px;" +
		"font:15px/1.4 system-ui,-apple-system,'Segoe UI',sans-serif"
	messageStyle = "white-space:pre-line"
	// The note before a disabled submit button is a <span> (phrasing
	// content, valid wherever a button is, and closing no <p>) shown as a
	// block.
	submitNoticeStyle = "display:block;box-sizing:border-box;margin:.5em 0;padding:6px 10px;" +
		"background:#fff3cd;color:#3d2f00;border:1px solid #d9a400;border-radius:4px;" +
		"font:14px/1.4 system-ui,-apple-system,'Segoe UI',sans-serif"
)

// Banner returns the banner HTML fragment: a <div role="status"
// class="ckanops-banner"> with the site title, the mode, the operator's
// message (escaped) and, when Until is set, the ETA as RFC 3339 and as a
// duration from now ("in 1h30m"). The gate's refusal pages use it too.
func Banner(n Notice) string {
	return bannerAt(n, clock())
}

// clock is time.Now; the tests pin it.
var clock = time.Now

func bannerAt(n Notice, now time.Time) string {
	var b strings.Builder
	b.WriteString(`<div role="status" class="ckanops-banner" data-ckanops-mode="`)
	writeText(&b, n.Mode)
	b.WriteString(`" style="`)
	b.WriteString(bannerStyle)
	b.WriteString(`"><strong>`)
	writeText(&b, siteName(n, "This site"))
	switch n.Mode {
	case "read-only":
		b.WriteString(` is in read-only mode for maintenance.</strong> You can browse and download data, but changes cannot be saved right now.`)
	case "down":
		b.WriteString(` is down for maintenance.</strong>`)
	default:
		b.WriteString(` is under maintenance.</strong>`)
	}
	writeMessageAndETA(&b, n, now)
	b.WriteString(`</div>`)
	return b.String()
}

// fragments returns bannerAt(n, now) and formNoticeAt(n, now) as bytes that
// are never written to. Every page in a maintenance gets the same two
// fragments until the notice or the ETA's wording changes, so the last pair
// is kept and handed out again while its key matches.
func fragments(n Notice, now time.Time) (banner, notice []byte) {
	key := fragmentKey{site: n.SiteTitle, message: n.Message, mode: n.Mode}
	if n.Until != nil {
		key.until, key.hasUntil, key.eta = *n.Until, true, etaKey(n.Until.Sub(now))
	}
	if f := lastFragments.Load(); f != nil && f.key == key {
		return f.banner, f.notice
	}
	f := &fragmentPair{key: key, banner: []byte(bannerAt(n, now)), notice: []byte(formNoticeAt(n, now))}
	lastFragments.Store(f)
	return f.banner, f.notice
}

// fragmentKey is what bannerAt and formNoticeAt depend on. Two equal keys
// give the same fragments; two different ones may too (a time.Time in
// another location), which only costs a rebuild.
type fragmentKey struct {
	site, message, mode string
	until               time.Time
	hasUntil            bool
	eta                 int64 // etaKey of the time left
}

type fragmentPair struct {
	key            fragmentKey
	banner, notice []byte
}

var lastFragments atomic.Pointer[fragmentPair]

// etaKey is equal for two durations exactly when humanUntil says the same
// of them.
func etaKey(d time.Duration) int64 {
	switch {
	case d <= 0:
		return -2
	case d < time.Minute:
		return -1
	}
	return int64((d + time.Minute - 1) / time.Minute)
}

// formNoticeAt is the block that stands in for a refused form.
func formNoticeAt(n Notice, now time.Time) string {
	var b strings.Builder
	b.WriteString(`<div class="ckanops-form-notice" role="note" style="`)
	b.WriteString(noticeStyle)
	b.WriteString(`"><strong>Editing is paused for maintenance.</strong> This form is hidden while `)
	writeText(&b, siteName(n, "this site"))
	b.WriteString(` is read-only: changes cannot be saved until the maintenance is over.`)
	writeMessageAndETA(&b, n, now)
	b.WriteString(`</div>`)
	return b.String()
}

// submitNoticeAt is the note put before a submit button that the rewriter
// disables: a button whose formmethod or formaction makes it submit a write
// that the gate would refuse, in a form that is kept. The banner already
// carries the message and the ETA; the note names the site only.
func submitNoticeAt(n Notice) string {
	var b strings.Builder
	b.WriteString(`<span class="ckanops-submit-notice" role="note" style="`)
	b.WriteString(submitNoticeStyle)
	b.WriteString(`"><strong>Saving is paused for maintenance.</strong> The button below is disabled while `)
	writeText(&b, siteName(n, "this site"))
	b.WriteString(` is read-only.</span>`)
	return b.String()
}

// controlNoticeAt is the note that stands in for a control the rewriter
// hides: an element outside any hidden form whose htmx attributes
// (hx-post, hx-put, hx-patch, hx-delete) or confirm-action module would
// send a write that the gate would refuse, such as CKAN 2.12's Follow
// button. Like the submit button's note it is a <span>, valid wherever the
// control was, and names the site only.
func controlNoticeAt(n Notice) string {
	var b strings.Builder
	b.WriteString(`<span class="ckanops-control-notice" role="note" style="`)
	b.WriteString(submitNoticeStyle)
	b.WriteString(`"><strong>Editing is paused for maintenance.</strong> This control is hidden while `)
	writeText(&b, siteName(n, "this site"))
	b.WriteString(` is read-only.</span>`)
	return b.String()
}

func siteName(n Notice, unnamed string) string {
	if strings.TrimSpace(n.SiteTitle) == "" {
		return unnamed
	}
	return n.SiteTitle
}

func writeMessageAndETA(b *strings.Builder, n Notice, now time.Time) {
	if strings.TrimSpace(n.Message) != "" {
		b.WriteString(` <span class="ckanops-message" style="`)
		b.WriteString(messageStyle)
		b.WriteString(`">`)
		writeText(b, n.Message)
		b.WriteString(`</span>`)
	}
	if n.Until != nil {
		stamp := n.Until.Format(time.RFC3339)
		b.WriteString(` <span class="ckanops-eta">Expected back <time datetime="`)
		writeText(b, stamp)
		b.WriteString(`">`)
		writeText(b, stamp)
		b.WriteString(`</time> (`)
		b.WriteString(humanUntil(n.Until.Sub(now)))
		b.WriteString(`).</span>`)
	}
}

// writeText writes untrusted text for use in element content or in a quoted
// attribute value: html.EscapeString first, then everything outside printable
// ASCII as a numeric character reference (so the fragment is the same in any
// ASCII-compatible charset), C0 controls other than tab and newline as a
// space, and CR LF / CR as a newline.
func writeText(b *strings.Builder, s string) {
	s = html.EscapeString(s)
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == '\r':
			b.WriteByte('\n')
			i++
			if i < len(s) && s[i] == '\n' {
				i++
			}
			continue
		case c == '\t' || c == '\n':
			b.WriteByte(c)
		case c < 0x20 || c == 0x7f:
			b.WriteByte(' ')
		case c < 0x80:
			b.WriteByte(c)
		default:
			r, size := decodeRune(s[i:])
			b.WriteString("&#")
			b.WriteString(strconv.Itoa(int(r)))
			b.WriteByte(';')
			i += size
			continue
		}
		i++
	}
}

// decodeRune is utf8.DecodeRuneInString with C1 controls mapped to U+FFFD
// (invalid bytes already are), so that no reference names a character HTML
// forbids.
func decodeRune(s string) (rune, int) {
	r, size := utf8.DecodeRuneInString(s)
	if r >= 0x80 && r < 0xA0 {
		r = utf8.RuneError
	}
	return r, size
}

// humanUntil says how far away the ETA is: "in 1h30m", "in 45m", "in 2d3h",
// "in under a minute", or "shortly" once it has passed.
func humanUntil(d time.Duration) string {
	if d <= 0 {
		return "shortly"
	}
	if d < time.Minute {
		return "in under a minute"
	}
	mins := int64((d + time.Minute - 1) / time.Minute) // round up
	days, hours, minutes := mins/(24*60), mins/60%24, mins%60
	var b strings.Builder
	b.WriteString("in ")
	if days > 0 {
		b.WriteString(strconv.FormatInt(days, 10) + "d")
		if hours > 0 {
			b.WriteString(strconv.FormatInt(hours, 10) + "h")
		}
		return b.String()
	}
	if hours > 0 {
		b.WriteString(strconv.FormatInt(hours, 10) + "h")
	}
	if minutes > 0 {
		b.WriteString(strconv.FormatInt(minutes, 10) + "m")
	}
	return b.String()
}
