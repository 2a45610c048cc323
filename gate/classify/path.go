package classify

import (
	"net/url"
	"strings"
	"unicode"
	"unicode/utf8"
)

const (
	maxPathBytes = 4096
	maxSegments  = 64
)

// reqPath is a request path cut into segments, twice: literally (split on
// '/', as Werkzeug routes it) and normalised. The segments are substrings
// of the URL's path, and a reqPath lives on the caller's stack, so parsing
// allocates nothing.
type reqPath struct {
	lit, norm, clean, bare     [maxSegments]string
	nLit, nNorm, nClean, nBare int
	// litDiffers is set when normalising changed anything, so the literal
	// reading must be judged as well.
	litDiffers bool
	// cleanDiffers is set when the cleaned reading (repeated slashes
	// merged and dot segments resolved as path.Clean does, but ";params"
	// kept: "..;" is then a name, not "..") is neither of the other two.
	cleanDiffers bool
	// bareDiffers is set when the literal reading holds ";params": the
	// bare reading drops them and keeps everything else as it is ("/api;/../x"
	// is also read as "/api/../x").
	bareDiffers bool
}

// parse fills p from u. It returns "" or, when the path is refused before
// any reading (it is malformed or looks like obfuscation), the reason.
func (p *reqPath) parse(u *url.URL) string {
	if u == nil {
		return "no URL"
	}
	if u.Opaque != "" {
		return "opaque URL"
	}
	if u.Scheme != "" && !strings.EqualFold(u.Scheme, "http") && !strings.EqualFold(u.Scheme, "https") {
		return "URL scheme is not http or https"
	}
	// u.Path is the path decoded once. When the client's escaping differs
	// from Go's default, RawPath holds what it sent: that must decode to
	// Path, or someone rewrote one without the other.
	if u.RawPath != "" {
		if len(u.RawPath) > 3*maxPathBytes {
			return "path too long"
		}
		same, bad := decodesTo(u.RawPath, u.Path)
		if bad {
			return "bad percent-escape in path"
		}
		if !same {
			return "URL path and raw path disagree"
		}
	}
	d := u.Path
	if d == "" {
		d = "/"
	}
	if len(d) > maxPathBytes {
		return "path too long"
	}
	if d[0] != '/' {
		return "path does not start with /"
	}
	if why := scanChars(d); why != "" {
		return why
	}
	n := 0
	if len(d) > 1 {
		for rest := d[1:]; ; {
			if n == maxSegments {
				return "too many path segments"
			}
			i := strings.IndexByte(rest, '/')
			if i < 0 {
				p.lit[n] = rest
				n++
				break
			}
			p.lit[n] = rest[:i]
			n++
			rest = rest[i+1:]
		}
	}
	p.nLit = n
	m, differs := 0, false
	for _, s := range p.lit[:n] {
		if i := strings.IndexByte(s, ';'); i >= 0 {
			s, differs = s[:i], true
		}
		switch s {
		case "", ".":
			differs = true
			continue
		case "..":
			differs = true
			if m > 0 {
				m--
			}
			continue
		}
		p.norm[m] = s
		m++
	}
	p.nNorm, p.litDiffers = m, differs

	c := 0
	for _, s := range p.lit[:n] {
		switch s {
		case "", ".":
			continue
		case "..":
			if c > 0 {
				c--
			}
			continue
		}
		p.clean[c] = s
		c++
	}
	p.nClean = c

	for i, s := range p.lit[:n] {
		if j := strings.IndexByte(s, ';'); j >= 0 {
			s, p.bareDiffers = s[:j], true
		}
		p.bare[i] = s
	}
	p.nBare = n
	p.cleanDiffers = !equalSegs(p.clean[:c], p.norm[:m]) && !equalSegs(p.clean[:c], p.lit[:n])
	return ""
}

// decodesTo reports whether percent-decoding raw once gives want, and
// whether raw holds a malformed escape.
func decodesTo(raw, want string) (same, bad bool) {
	j := 0
	same = true
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		if c == '%' {
			if i+2 >= len(raw) || !isHex(raw[i+1]) || !isHex(raw[i+2]) {
				return false, true
			}
			c = unhex(raw[i+1])<<4 | unhex(raw[i+2])
			i += 2
		}
		if j >= len(want) || want[j] != c {
			same = false
		}
		j++
	}
	return same && j == len(want), false
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case '0' <= c && c <= '9':
		return c - '0'
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10
	}
	return c - 'A' + 10
}

// scanChars refuses characters no honest client puts in a decoded CKAN
// path, and those that other software might read as a separator.
func scanChars(d string) string {
	high := false
	for i := 0; i < len(d); i++ {
		switch c := d[i]; {
		case c < 0x20 || c == 0x7f:
			return "control character in path"
		case c == '\\':
			return "backslash in path"
		case c == '?' || c == '#':
			return "encoded ? or # in path"
		case c == '%' && i+2 < len(d) && isHex(d[i+1]) && isHex(d[i+2]):
			return "percent-escape left after decoding once (double encoding)"
		case c >= 0x80:
			high = true
		}
	}
	if !high {
		return ""
	}
	for i := 0; i < len(d); {
		r, size := utf8.DecodeRuneInString(d[i:])
		if r == utf8.RuneError && size == 1 {
			return "invalid UTF-8 in path"
		}
		if suspiciousRune(r) {
			return "Unicode control, format or look-alike character in path"
		}
		i += size
	}
	return ""
}

// suspiciousRune reports C1 controls, format characters (zero-width,
// bidirectional overrides), line separators, and characters that NFKC or a
// careless parser turns into ASCII punctuation: fullwidth and small forms,
// division and fraction slashes, one-dot leaders.
func suspiciousRune(r rune) bool {
	switch {
	case r >= 0x80 && r <= 0x9f:
		return true
	case r >= 0xfe50 && r <= 0xfe6f, r >= 0xff00 && r <= 0xffef:
		return true
	}
	switch r {
	case 0x2024, 0x2025, 0x2026, 0x2044, 0x2215, 0x2216, 0x29f8, 0x29f9:
		return true
	}
	return unicode.In(r, unicode.Cf, unicode.Zl, unicode.Zp)
}
