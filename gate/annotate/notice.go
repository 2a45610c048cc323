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
	// Overrun: the maintenance is past its planned end (Until) and still
	// on. The banner says the work is taking longer than planned instead
	// of how far away the end is.
	Overrun bool
}

// Window is a planned maintenance window, as the announce banner shows it
// (Options.Announce).
type Window struct {
	At, End time.Time // the planned start and end (End zero: not given)
	Mode    string    // what the site will be: "read-only" or "down"
	Message string    // the operator's message: untrusted text, always escaped
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
	// The announce banner: the same shape as the maintenance banner, in
	// blue, which says "coming" rather than "now".
	announceStyle = "box-sizing:border-box;margin:0;padding:10px 16px;" +
		"background:#e7f1fb;color:#0b2e4f;border-bottom:2px solid #3b82c4;" +
		"font:15px/1.4 system-ui,-apple-system,'Segoe UI',sans-serif;text-align:center"
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

// fragments returns insertAt(opts, now) (the banner and the script tag)
// and, unless opts.Announce is set, formNoticeAt(opts.Notice, now), as
// bytes that are never written to. Every page in a maintenance (or of an
// announced window) gets the same fragments until the options or the
// wording of the time left change, so the last pair is kept and handed out
// again while its key matches.
func fragments(opts *Options, now time.Time) (banner, notice []byte) {
	n := &opts.Notice
	key := fragmentKey{site: n.SiteTitle, script: opts.Script, poll: PollSeconds(opts.ScriptPoll)}
	if a := opts.Announce; a != nil {
		key.announce, key.at, key.end, key.mode, key.message = true, a.At, a.End, a.Mode, a.Message
		key.eta = etaKey(a.At.Sub(now))
	} else {
		key.mode, key.message, key.overrun = n.Mode, n.Message, n.Overrun
		if n.Until != nil {
			key.end, key.hasUntil, key.eta = *n.Until, true, etaKey(n.Until.Sub(now))
		}
	}
	if f := lastFragments.Load(); f != nil && f.key == key {
		return f.banner, f.notice
	}
	f := &fragmentPair{key: key, banner: []byte(insertAt(opts, now))}
	if opts.Announce == nil {
		f.notice = []byte(formNoticeAt(*n, now))
	}
	lastFragments.Store(f)
	return f.banner, f.notice
}

// fragmentKey is what insertAt and formNoticeAt depend on. Two equal keys
// give the same fragments; two different ones may too (a time.Time in
// another location), which only costs a rebuild. With announce, at, end,
// mode and message are the window's; without, end is the notice's Until
// (when hasUntil).
type fragmentKey struct {
	site, message, mode string
	script              string
	poll                int64
	at, end             time.Time
	hasUntil            bool
	announce, overrun   bool
	eta                 int64 // etaKey of the time left (to Until, or to the window's start)
}

type fragmentPair struct {
	key            fragmentKey
	banner, notice []byte
}

var lastFragments atomic.Pointer[fragmentPair]

// insertAt is what goes right after <body>: the banner (the announce
// banner when opts.Announce is set) and, when opts.Script is set, the
// notice script's tag.
func insertAt(opts *Options, now time.Time) string {
	var s string
	if opts.Announce != nil {
		s = announceAt(opts.Notice.SiteTitle, *opts.Announce, now)
	} else {
		s = bannerAt(opts.Notice, now)
	}
	if opts.Script != "" {
		s += scriptTag(opts.Script, opts.ScriptPoll)
	}
	return s
}

// DefaultScriptPoll is the poll interval the notice script is given when
// Options.ScriptPoll is zero.
const DefaultScriptPoll = 30 * time.Second

// PollSeconds is the notice script's poll interval in whole seconds, rounded up, at least
// one; zero is DefaultScriptPoll.
func PollSeconds(d time.Duration) int64 {
	if d == 0 {
		d = DefaultScriptPoll
	}
	return max(1, int64((d+time.Second-1)/time.Second))
}

// scriptTag is the notice script's tag: deferred, so it runs once the page
// is parsed, whatever the page's own scripts do.
func scriptTag(src string, poll time.Duration) string {
	var b strings.Builder
	b.WriteString(`<script src="`)
	writeText(&b, src)
	b.WriteString(`" defer data-ckanops-poll="`)
	b.WriteString(strconv.FormatInt(PollSeconds(poll), 10))
	b.WriteString(`"></script>`)
	return b.String()
}

// announceAt is the announce banner: a <div role="status"
// class="ckanops-banner" data-ckanops-mode="announce"> that says when the
// window starts (RFC 3339, and how far away), how long it lasts and when
// it ends, what the site will be, and the operator's message (escaped).
func announceAt(site string, win Window, now time.Time) string {
	var b strings.Builder
	b.WriteString(`<div role="status" class="ckanops-banner" data-ckanops-mode="announce" style="`)
	b.WriteString(announceStyle)
	b.WriteString(`"><strong>`)
	writeText(&b, siteName(Notice{SiteTitle: site}, "This site"))
	if win.Mode == "down" {
		b.WriteString(` will be down for maintenance`)
	} else {
		b.WriteString(` will be read-only for maintenance`)
	}
	b.WriteString(`</strong> from `)
	writeTime(&b, win.At)
	if d := win.End.Sub(win.At); !win.End.IsZero() && d > 0 {
		b.WriteString(` for `)
		b.WriteString(humanDuration(d))
		b.WriteString(` (ends `)
		writeTime(&b, win.End)
		b.WriteString(`)`)
	}
	b.WriteString(` <span class="ckanops-eta">(starts `)
	b.WriteString(humanUntil(win.At.Sub(now)))
	b.WriteString(`)</span>.`)
	if win.Mode == "down" {
		b.WriteString(` The site will not be available until the maintenance is over.`)
	} else {
		b.WriteString(` You will still be able to browse and download data, but changes cannot be saved during the maintenance: save your work before it starts.`)
	}
	if strings.TrimSpace(win.Message) != "" {
		b.WriteString(` <span class="ckanops-message" style="`)
		b.WriteString(messageStyle)
		b.WriteString(`">`)
		writeText(&b, win.Message)
		b.WriteString(`</span>`)
	}
	b.WriteString(`</div>`)
	return b.String()
}

// writeTime writes t as a <time> element, RFC 3339 inside and out.
func writeTime(b *strings.Builder, t time.Time) {
	stamp := t.Format(time.RFC3339)
	b.WriteString(`<time datetime="`)
	writeText(b, stamp)
	b.WriteString(`">`)
	writeText(b, stamp)
	b.WriteString(`</time>`)
}

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
	switch {
	case n.Until != nil:
		b.WriteString(` <span class="ckanops-eta">Expected back `)
		writeTime(b, *n.Until)
		if n.Overrun {
			b.WriteString(` &#8212; the work is taking longer than planned.</span>`)
		} else {
			b.WriteString(` (`)
			b.WriteString(humanUntil(n.Until.Sub(now)))
			b.WriteString(`).</span>`)
		}
	case n.Overrun:
		b.WriteString(` <span class="ckanops-eta">The work is taking longer than planned.</span>`)
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
	return "in " + humanDuration(d)
}

// humanDuration says how long d is, in whole minutes rounded up: "1h30m",
// "45m", "2d3h" (a day's minutes are left out), "1m" for less than a
// minute.
func humanDuration(d time.Duration) string {
	mins := max(1, int64((d+time.Minute-1)/time.Minute)) // round up
	days, hours, minutes := mins/(24*60), mins/60%24, mins%60
	var b strings.Builder
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
