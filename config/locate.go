package config

import (
	"strconv"
	"strings"
)

// The TOML library reports a line for syntax errors, but does not expose
// where each key was defined (and, for arrays of tables, it keeps only the
// last element's position). locateKeys finds those lines itself: it walks
// a document that the library has already parsed, following only its
// structure (table headers, keys, and the extent of each value), and
// records the line on which every key, table header and array element
// starts.
//
// A path is the key's segments; an element of an array (or of an array of
// tables) adds a segment made by elem. pathKey joins a path into the map
// key.

// elem is the path segment for the i-th element (from 0) of an array.
func elem(i int) string { return "\x01" + strconv.Itoa(i) }

func isElem(seg string) bool { return strings.HasPrefix(seg, "\x01") }

func pathKey(path []string) string { return strings.Join(path, "\x00") }

// locateKeys returns the line (from 1) of every key in src, by pathKey.
func locateKeys(src string) map[string]int {
	l := &locator{s: src, line: 1, lines: map[string]int{}, aot: map[string]int{}}
	l.document()
	return l.lines
}

type locator struct {
	s     string
	i     int
	line  int
	lines map[string]int
	aot   map[string]int // array of tables (by pathKey) -> elements seen
}

func (l *locator) peek() byte {
	if l.i < len(l.s) {
		return l.s[l.i]
	}
	return 0
}

func (l *locator) hasPrefix(p string) bool { return strings.HasPrefix(l.s[l.i:], p) }

// record notes the current line for path, and for each of its prefixes
// that has no line yet (a dotted key or header creates its parents).
func (l *locator) record(path []string) {
	for n := 1; n < len(path); n++ {
		k := pathKey(path[:n])
		if _, ok := l.lines[k]; !ok {
			l.lines[k] = l.line
		}
	}
	if len(path) > 0 {
		l.lines[pathKey(path)] = l.line
	}
}

// skipSpace skips blanks within a line.
func (l *locator) skipSpace() {
	for l.i < len(l.s) && (l.s[l.i] == ' ' || l.s[l.i] == '\t' || l.s[l.i] == '\r') {
		l.i++
	}
}

// skipBlank skips blanks, newlines and comments.
func (l *locator) skipBlank() {
	for l.i < len(l.s) {
		switch l.s[l.i] {
		case ' ', '\t', '\r':
			l.i++
		case '\n':
			l.line++
			l.i++
		case '#':
			for l.i < len(l.s) && l.s[l.i] != '\n' {
				l.i++
			}
		default:
			return
		}
	}
}

// skipLine skips to the end of the current line (leaving the newline).
func (l *locator) skipLine() {
	for l.i < len(l.s) && l.s[l.i] != '\n' {
		l.i++
	}
}

func (l *locator) document() {
	var table []string
	for l.i < len(l.s) {
		l.skipBlank()
		if l.i >= len(l.s) {
			return
		}
		start := l.i
		if l.peek() == '[' {
			table = l.header()
		} else {
			l.keyValue(table)
		}
		if l.i == start {
			l.skipLine() // not TOML we understand; never loop
		}
	}
}

// header reads "[a.b]" or "[[a.b]]" and returns the table's path.
func (l *locator) header() []string {
	double := l.hasPrefix("[[")
	if double {
		l.i += 2
	} else {
		l.i++
	}
	l.skipSpace()
	key := l.key()
	l.skipSpace()
	if double && l.hasPrefix("]]") {
		l.i += 2
	} else if l.peek() == ']' {
		l.i++
	}
	var path []string
	for n, seg := range key {
		path = append(path, seg)
		k := pathKey(path)
		if n == len(key)-1 && double {
			count := l.aot[k]
			l.aot[k] = count + 1
			if count == 0 {
				l.record(path) // the array itself is on its first header's line
			}
			path = append(path, elem(count))
			break
		}
		if count := l.aot[k]; count > 0 {
			path = append(path, elem(count-1))
		}
	}
	l.record(path)
	return path
}

// keyValue reads "key = value" inside table.
func (l *locator) keyValue(table []string) {
	key := l.key()
	if len(key) == 0 {
		return
	}
	l.skipSpace()
	if l.peek() != '=' {
		l.skipLine()
		return
	}
	l.i++
	l.skipSpace()
	path := append(append([]string(nil), table...), key...)
	l.record(path)
	l.value(path)
}

// key reads a possibly dotted, possibly quoted key.
func (l *locator) key() []string {
	var segs []string
	for {
		l.skipSpace()
		var seg string
		switch l.peek() {
		case '"':
			start := l.i
			l.i++
			for l.i < len(l.s) && l.s[l.i] != '"' && l.s[l.i] != '\n' {
				if l.s[l.i] == '\\' {
					l.i++
				}
				l.i++
			}
			if l.i < len(l.s) && l.s[l.i] == '"' {
				l.i++
			}
			raw := l.s[start:min(l.i, len(l.s))]
			if u, err := strconv.Unquote(raw); err == nil {
				seg = u
			} else {
				seg = strings.Trim(raw, `"`)
			}
		case '\'':
			l.i++
			start := l.i
			for l.i < len(l.s) && l.s[l.i] != '\'' && l.s[l.i] != '\n' {
				l.i++
			}
			seg = l.s[start:l.i]
			if l.peek() == '\'' {
				l.i++
			}
		default:
			start := l.i
			for l.i < len(l.s) && !strings.ContainsRune(" \t\r\n=.[]{},\"'#", rune(l.s[l.i])) {
				l.i++
			}
			if l.i == start {
				return segs
			}
			seg = l.s[start:l.i]
		}
		segs = append(segs, seg)
		l.skipSpace()
		if l.peek() != '.' {
			return segs
		}
		l.i++
	}
}

// value skips one value, recording the keys of inline tables and the
// elements of arrays under path.
func (l *locator) value(path []string) {
	switch {
	case l.hasPrefix(`"""`):
		l.multiline(`"""`, true)
	case l.hasPrefix(`'''`):
		l.multiline(`'''`, false)
	case l.peek() == '"':
		l.i++
		for l.i < len(l.s) && l.s[l.i] != '"' && l.s[l.i] != '\n' {
			if l.s[l.i] == '\\' {
				l.i++
			}
			l.i++
		}
		if l.peek() == '"' {
			l.i++
		}
	case l.peek() == '\'':
		l.i++
		for l.i < len(l.s) && l.s[l.i] != '\'' && l.s[l.i] != '\n' {
			l.i++
		}
		if l.peek() == '\'' {
			l.i++
		}
	case l.peek() == '[':
		l.i++
		for n := 0; l.i < len(l.s); {
			l.skipBlank()
			switch l.peek() {
			case ']':
				l.i++
				return
			case ',':
				l.i++
				continue
			case 0:
				return
			}
			p := append(append([]string(nil), path...), elem(n))
			l.record(p)
			start := l.i
			l.value(p)
			if l.i == start {
				l.i++
			}
			n++
		}
	case l.peek() == '{':
		l.i++
		for l.i < len(l.s) {
			l.skipBlank()
			switch l.peek() {
			case '}':
				l.i++
				return
			case ',':
				l.i++
				continue
			case 0:
				return
			}
			start := l.i
			key := l.key()
			l.skipSpace()
			if len(key) > 0 && l.peek() == '=' {
				l.i++
				l.skipSpace()
				p := append(append([]string(nil), path...), key...)
				l.record(p)
				l.value(p)
			}
			if l.i == start {
				l.i++
			}
		}
	default: // number, boolean, date-time
		start := l.i
		l.scalar()
		// A date-time may have a space between date and time.
		if l.i-start == 10 && l.s[start+4] == '-' && l.hasPrefix(" ") && l.i+1 < len(l.s) && isDigit(l.s[l.i+1]) {
			l.i++
			l.scalar()
		}
	}
}

func (l *locator) scalar() {
	for l.i < len(l.s) && !strings.ContainsRune(" \t\r\n,]}#", rune(l.s[l.i])) {
		l.i++
	}
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// multiline skips a multi-line string opened by delim.
func (l *locator) multiline(delim string, escapes bool) {
	l.i += len(delim)
	for l.i < len(l.s) {
		c := l.s[l.i]
		switch {
		case c == '\n':
			l.line++
			l.i++
		case escapes && c == '\\':
			l.i++
			if l.peek() == '\n' {
				l.line++
			}
			l.i++
		case l.hasPrefix(delim):
			l.i += len(delim)
			// Up to two more quote characters belong to the string.
			for extra := 0; extra < 2 && l.peek() == delim[0]; extra++ {
				l.i++
			}
			return
		default:
			l.i++
		}
	}
}
