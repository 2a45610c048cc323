package config

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
)

// Files are parsed by the TOML library into plain maps, then walked here
// against the schema, key by key. Walking ourselves (instead of decoding
// into structs) lets one pass report every problem rather than the first,
// match keys exactly (the library matches struct fields case-
// insensitively), and give each problem its line.

// decoder collects the problems and warnings of one file.
type decoder struct {
	file  string         // as the caller named it, for messages
	dir   string         // absolute directory of file, for relative paths
	lines map[string]int // by pathKey, from locateKeys
	probs []Problem
	warns []Warning
}

// parse reads and parses path. A read or syntax error is returned at
// once: nothing else can be checked.
// missing says what to do when the file does not exist.
func parse(path, missing string) (*decoder, map[string]any, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, readError(path, missing, err)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, nil, fmt.Errorf("config: %s: %w", path, err)
	}
	d := &decoder{file: path, dir: filepath.Dir(abs)}
	root := map[string]any{}
	if _, err := toml.Decode(string(data), &root); err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) {
			line, col := errorPosition(data, pe.Position)
			return nil, nil, &Error{Problems: []Problem{{
				File: path, Line: line, Column: col,
				Message: "syntax error: " + pe.Message,
			}}}
		}
		return nil, nil, &Error{Problems: []Problem{{File: path, Message: "syntax error: " + err.Error()}}}
	}
	d.lines = locateKeys(string(data))
	return d, root, nil
}

// errorPosition returns the line and column of a syntax error. They are
// computed from the error's byte offset: the library counts a newline
// into the next line, so an error found at the end of a line ("[auth"
// with no "]") would otherwise be reported on the line after it.
func errorPosition(data []byte, p toml.Position) (line, col int) {
	start := p.Start
	if start >= len(data) {
		start = len(data) - 1
	}
	if start < 0 || (p.Start == 0 && p.Line > 1) {
		return p.Line, p.Col
	}
	lineStart := bytes.LastIndexByte(data[:start], '\n') + 1
	return bytes.Count(data[:start], []byte("\n")) + 1, start - lineStart + 1
}

// err returns the problems found, or nil.
func (d *decoder) err() error {
	if len(d.probs) == 0 {
		return nil
	}
	sortProblems(d.probs)
	return &Error{Problems: d.probs}
}

// line is the line of path, or of its nearest ancestor that has one (a
// missing key is reported on its table's line).
func (d *decoder) line(path []string) int {
	for n := len(path); n > 0; n-- {
		if ln, ok := d.lines[pathKey(path[:n])]; ok {
			return ln
		}
	}
	return 0
}

// dotted is the key as an operator writes it: "policy.bypass_cidrs",
// "site.name" (array elements are not numbered; the line tells them
// apart).
func dotted(path []string) string {
	var k toml.Key
	for _, s := range path {
		if !isElem(s) {
			k = append(k, s)
		}
	}
	return k.String()
}

func (d *decoder) problem(path []string, format string, args ...any) {
	d.probs = append(d.probs, Problem{
		File: d.file, Line: d.line(path), Key: dotted(path),
		Message: fmt.Sprintf(format, args...),
	})
}

func (d *decoder) warn(path []string, format string, args ...any) {
	d.warns = append(d.warns, Warning{File: d.file, Key: dotted(path), Message: fmt.Sprintf(format, args...)})
}

// keyRecorder, when set (by tests), is told of every key the loaders
// read, so that the documented keys can be compared with the code's.
var keyRecorder func(file string, path []string, key string)

// table is one TOML table being read. Every key read through it is
// known; done reports the others as unknown.
type table struct {
	d     *decoder
	path  []string
	m     map[string]any // nil when the table is absent
	known []string
}

func (d *decoder) root(m map[string]any) *table { return &table{d: d, m: m} }

func (t *table) sub(key string) []string {
	return append(append([]string(nil), t.path...), key)
}

func (t *table) lookup(key string) (any, bool) {
	t.known = append(t.known, key)
	if keyRecorder != nil {
		keyRecorder(t.d.file, t.path, key)
	}
	v, ok := t.m[key]
	return v, ok
}

func (t *table) has(key string) bool {
	_, ok := t.m[key]
	return ok
}

func (t *table) wrongType(path []string, want string, v any) {
	t.d.problem(path, "expected %s, found %s", want, typeName(v))
}

// done reports every key of the table that was not read as unknown,
// suggesting the known key it was probably meant to be.
func (t *table) done() {
	var known []string
	for _, k := range t.known {
		if !contains(known, k) {
			known = append(known, k)
		}
	}
	t.known = known
	var keys []string
	for k := range t.m {
		if !contains(t.known, k) {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		what := "unknown key"
		switch t.m[k].(type) {
		case map[string]any, []map[string]any:
			what = "unknown table"
		}
		if s := suggest(k, t.known); s != "" {
			t.d.problem(t.sub(k), "%s; did you mean %s?", what, s)
		} else {
			t.d.problem(t.sub(k), "%s (known keys here: %s)", what, strings.Join(t.known, ", "))
		}
	}
}

// string reads an optional string. ok is false when the key is absent or
// its value is wrong (a problem has then been recorded). No string may be
// empty: an optional key is left out to get its default.
func (t *table) string(key string) (string, bool) {
	v, present := t.lookup(key)
	if !present {
		return "", false
	}
	s, isString := v.(string)
	if !isString {
		t.wrongType(t.sub(key), "a string", v)
		return "", false
	}
	if strings.TrimSpace(s) == "" {
		t.d.problem(t.sub(key), "must not be empty (leave the key out to get its default)")
		return "", false
	}
	return s, true
}

// need records a problem when key is absent; read the key afterwards as
// usual.
func (t *table) need(key string) {
	if !t.has(key) {
		t.known = append(t.known, key)
		t.d.problem(t.sub(key), "required key is missing")
	}
}

// strings reads an optional array of strings; check, when given, vets
// each entry and returns a problem message or "".
func (t *table) strings(key string, check func(string) string) []string {
	v, present := t.lookup(key)
	if !present {
		return nil
	}
	arr, isArray := v.([]any)
	if !isArray {
		t.wrongType(t.sub(key), "an array of strings", v)
		return nil
	}
	out := make([]string, 0, len(arr))
	for i, e := range arr {
		p := append(t.sub(key), elem(i))
		s, isString := e.(string)
		switch {
		case !isString:
			t.d.problem(p, "entry %d: expected a string, found %s", i+1, typeName(e))
		case strings.TrimSpace(s) == "":
			t.d.problem(p, "entry %d: must not be empty", i+1)
		default:
			if check != nil {
				if msg := check(s); msg != "" {
					t.d.problem(p, "entry %d: %s", i+1, msg)
					continue
				}
			}
			out = append(out, s)
		}
	}
	return out
}

func (t *table) boolean(key string, def bool) bool {
	v, present := t.lookup(key)
	if !present {
		return def
	}
	b, isBool := v.(bool)
	if !isBool {
		t.wrongType(t.sub(key), "a boolean (true or false)", v)
		return def
	}
	return b
}

// integer reads an optional integer of at least lowest.
func (t *table) integer(key string, def, lowest int) int {
	v, present := t.lookup(key)
	if !present {
		return def
	}
	n, isInt := v.(int64)
	if !isInt {
		t.wrongType(t.sub(key), "an integer", v)
		return def
	}
	if n < int64(lowest) || n > math.MaxInt32 {
		t.d.problem(t.sub(key), "must be at least %d (and not absurdly large), found %d", lowest, n)
		return def
	}
	return int(n)
}

// duration reads an optional duration; zero is allowed only when
// allowZero is set, negative never.
func (t *table) duration(key string, def time.Duration, allowZero bool) Duration {
	v, present := t.lookup(key)
	if !present {
		return Duration{def}
	}
	s, isString := v.(string)
	if !isString {
		switch v.(type) {
		case int64, float64:
			t.d.problem(t.sub(key), "expected a duration string with a unit, such as \"%s\", found %s", shortDuration(def), typeName(v))
		default:
			t.wrongType(t.sub(key), "a duration string such as \""+shortDuration(def)+"\"", v)
		}
		return Duration{def}
	}
	var d Duration
	if err := d.UnmarshalText([]byte(s)); err != nil {
		t.d.problem(t.sub(key), "%v", err)
		return Duration{def}
	}
	switch {
	case d.Duration < 0:
		t.d.problem(t.sub(key), "must not be negative, found %s", d)
		return Duration{def}
	case d.Duration == 0 && !allowZero:
		t.d.problem(t.sub(key), "must be more than 0s")
		return Duration{def}
	}
	return d
}

// table reads an optional sub-table. An absent table reads as empty.
func (t *table) table(key string) *table {
	sub := &table{d: t.d, path: t.sub(key)}
	v, present := t.lookup(key)
	if !present {
		return sub
	}
	m, isTable := v.(map[string]any)
	if !isTable {
		t.wrongType(sub.path, "a table (["+dotted(sub.path)+"])", v)
		return sub
	}
	sub.m = m
	return sub
}

// tables reads an optional array of tables ([[key]]).
func (t *table) tables(key string) []*table {
	v, present := t.lookup(key)
	if !present {
		return nil
	}
	var ms []map[string]any
	switch v := v.(type) {
	case []map[string]any:
		ms = v
	case []any: // key = [{...}, {...}]
		for i, e := range v {
			m, isTable := e.(map[string]any)
			if !isTable {
				t.d.problem(append(t.sub(key), elem(i)), "entry %d: expected a table, found %s", i+1, typeName(e))
				continue
			}
			ms = append(ms, m)
		}
	default:
		t.wrongType(t.sub(key), "an array of tables ([["+dotted(t.sub(key))+"]])", v)
		return nil
	}
	out := make([]*table, len(ms))
	for i, m := range ms {
		out[i] = &table{d: t.d, path: append(t.sub(key), elem(i)), m: m}
	}
	return out
}

// filePath reads an optional file path: "~/" is the home directory, and a
// relative path is relative to the configuration file's directory.
func (t *table) filePath(key string) (string, bool) {
	s, ok := t.string(key)
	if !ok {
		return "", false
	}
	return t.resolve(key, s)
}

// resolve resolves the path s read from key, as filePath does.
func (t *table) resolve(key, s string) (string, bool) {
	p, err := resolvePath(t.d.dir, s)
	if err != nil {
		t.d.problem(t.sub(key), "%v", err)
		return "", false
	}
	return p, true
}

// resolvePath expands "~" and makes p absolute against dir.
func resolvePath(dir, p string) (string, error) {
	if p == "~" || strings.HasPrefix(p, "~/") {
		home, err := os.UserHomeDir()
		if err != nil || home == "" {
			return "", errors.New("cannot expand ~: the home directory is unknown ($HOME is not set); write the path in full")
		}
		return filepath.Join(home, strings.TrimPrefix(p, "~")), nil
	}
	if strings.HasPrefix(p, "~") {
		return "", fmt.Errorf("%q: only ~/ (your own home directory) is expanded; write the path in full", p)
	}
	if filepath.IsAbs(p) {
		return filepath.Clean(p), nil
	}
	return filepath.Join(dir, p), nil
}

// urlRules say what a URL key accepts.
type urlRules struct {
	schemes     []string // lower case
	needHost    bool
	noUserinfo  bool // credentials are refused (they would be printed)
	noQuery     bool
	description string // "an http or https URL"
	example     string
}

var (
	httpURL = urlRules{schemes: []string{"http", "https"}, needHost: true, noUserinfo: true, noQuery: true,
		description: "an http or https URL", example: "http://127.0.0.1:5000"}
	siteURL = urlRules{schemes: []string{"http", "https"}, needHost: true, noUserinfo: true, noQuery: true,
		description: "an http or https URL", example: "https://data.example.org"}
	solrURL = urlRules{schemes: []string{"http", "https"}, needHost: true,
		description: "an http or https URL", example: "http://127.0.0.1:8983/solr/ckan"}
	postgresURL = urlRules{schemes: []string{"postgres", "postgresql"},
		description: "a postgres:// or postgresql:// URL", example: "postgresql://ckan:PASSWORD@127.0.0.1:5432/ckan"}
	redisURL = urlRules{schemes: []string{"redis", "rediss", "unix"},
		description: "a redis://, rediss:// or unix:// URL", example: "redis://127.0.0.1:6379/0"}
)

// url reads an optional URL. Problems never quote the URL itself, which
// may hold a password.
func (t *table) url(key string, r urlRules) (string, bool) {
	s, ok := t.string(key)
	if !ok {
		return "", false
	}
	if msg := checkURL(s, r); msg != "" {
		t.d.problem(t.sub(key), "%s", msg)
		return "", false
	}
	return s, true
}

func checkURL(s string, r urlRules) string {
	if !strings.Contains(s, "://") {
		return "has no scheme; it must be " + r.description + ", such as " + r.example
	}
	u, err := url.Parse(s)
	if err != nil {
		return "not a valid URL; it must be " + r.description +
			" (characters such as @ : / # ? % in a user name or password must be percent-encoded)"
	}
	scheme := strings.ToLower(u.Scheme)
	switch {
	case u.Scheme == "" || u.Opaque != "":
		return "has no scheme; it must be " + r.description + ", such as " + r.example
	case !contains(r.schemes, scheme):
		hint := ""
		if strings.Contains(scheme, "+") {
			hint = "; drop the SQLAlchemy driver (+...) from the scheme"
		}
		return fmt.Sprintf("scheme %q is not allowed; it must be %s%s", u.Scheme, r.description, hint)
	case r.needHost && u.Host == "":
		return "has no host; it must be " + r.description + ", such as " + r.example
	case r.noUserinfo && u.User != nil:
		return "must not hold a user name or password"
	case r.noQuery && (u.RawQuery != "" || u.ForceQuery):
		return "must not have a query (?...)"
	case u.Fragment != "":
		return "must not have a fragment (#...)"
	}
	if u.Port() != "" {
		if _, err := netip.ParseAddrPort("127.0.0.1:" + u.Port()); err != nil {
			return "has a bad port"
		}
	}
	return ""
}

// prefix parses a CIDR prefix or a bare IP address (a /32 or /128).
func parsePrefix(s string) (netip.Prefix, string) {
	s = strings.TrimSpace(s)
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, fmt.Sprintf("%q is not a CIDR prefix such as 10.0.0.0/8 or 2001:db8::/32", s)
		}
		return p.Masked(), ""
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Sprintf("%q is not an IP address or a CIDR prefix such as 10.0.0.0/8", s)
	}
	if a.Zone() != "" {
		return netip.Prefix{}, fmt.Sprintf("%q: an address with a zone cannot be matched; drop the %%zone", s)
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), ""
}

// prefixes reads an optional array of CIDR prefixes.
func (t *table) prefixes(key string) []netip.Prefix {
	var out []netip.Prefix
	t.strings(key, func(s string) string {
		p, msg := parsePrefix(s)
		if msg == "" {
			out = append(out, p)
		}
		return msg
	})
	return out
}

var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)

// checkName vets a site name: it becomes file names and Redis keys.
func checkName(s string) string {
	if nameRE.MatchString(s) {
		return ""
	}
	return fmt.Sprintf("%q is not a valid site name: use lowercase letters, digits, '-' and '_' (at most 63, starting with a letter or digit); it becomes file names and Redis keys", s)
}

func typeName(v any) string {
	switch v.(type) {
	case string:
		return "a string"
	case int64:
		return "an integer"
	case float64:
		return "a float"
	case bool:
		return "a boolean"
	case time.Time:
		return "a date-time"
	case []map[string]any:
		return "an array of tables"
	case []any:
		return "an array"
	case map[string]any:
		return "a table"
	}
	return fmt.Sprintf("a %T", v)
}

func contains(list []string, s string) bool {
	for _, e := range list {
		if e == s {
			return true
		}
	}
	return false
}

// suggest returns the known key closest to k, if it is close enough to be
// a typo.
func suggest(k string, known []string) string {
	best, bestDist := "", 3
	for _, c := range known {
		if strings.EqualFold(c, k) {
			return c
		}
		if d := editDistance(k, c); d < bestDist {
			best, bestDist = c, d
		}
	}
	return best
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// readError says what to do about a file that cannot be read.
func readError(path, what string, err error) error {
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("config: %s: no such file; %s: %w", path, what, err)
	}
	return fmt.Errorf("config: %w", err)
}
