// Package surface holds facts read off a running CKAN: every registered
// action with its side_effect_free flag, every Flask URL rule with its
// methods, and every auth function. The data files under data/ are copies of
// shared/ckan-surface (see data/README.md for their provenance).
//
// The gate builds its classification rules from these facts and ckansim
// builds its simulated CKAN from them. This package only parses and matches;
// it must not decide what a write is (that is the gate's job).
package surface

import (
	"bufio"
	"embed"
	"fmt"
	"io"
	"io/fs"
	"sort"
	"strings"
)

//go:embed data
var files embed.FS

// Versions lists the CKAN versions whose surface is embedded, newest first.
var Versions = []string{"2.12", "2.11", "2.10"}

// DefaultVersion is the surface Load("") returns: CKAN 2.11, whose files sit
// at the top of data/.
const DefaultVersion = "2.11"

// dataDirs maps each embedded version to its folder under the embedded FS.
var dataDirs = map[string]string{"2.12": "data/2.12", "2.11": "data", "2.10": "data/2.10"}

// Action is one registered CKAN action function.
type Action struct {
	Name            string
	Module          string
	SideEffectFree  bool // CKAN allows GET on /api/action/NAME only for these
	AuthAuditExempt bool
	ChainedOver     []string
}

// Route is one Flask URL rule. Methods never lists HEAD or OPTIONS: Flask
// adds HEAD to every GET rule and answers OPTIONS itself.
type Route struct {
	Rule     string
	Methods  []string
	Endpoint string

	parts []segment
}

// AuthFunc is one registered auth function.
type AuthFunc struct {
	Name                 string
	Module               string
	AllowAnonymousAccess bool
	SysadminsCheck       bool
}

// Surface is the HTTP surface of one CKAN version (or, from Strictest, of
// several combined).
type Surface struct {
	Version string
	Actions map[string]Action
	Routes  []Route
	Auth    map[string]AuthFunc
}

// Load parses the embedded surface of a CKAN version (one of Versions, as
// major.minor). "" means DefaultVersion (2.11).
func Load(version string) (*Surface, error) {
	if version == "" {
		version = DefaultVersion
	}
	dir, ok := dataDirs[version]
	if !ok {
		return nil, fmt.Errorf("surface: no data for CKAN %q (have %s)", version, strings.Join(Versions, ", "))
	}
	s := &Surface{Version: version, Actions: map[string]Action{}, Auth: map[string]AuthFunc{}}
	if err := readTSV(dir+"/actions.tsv", 5, func(f []string) error {
		a := Action{Name: f[0], Module: f[1], SideEffectFree: f[2] == "true", AuthAuditExempt: f[3] == "true"}
		if f[4] != "" {
			a.ChainedOver = strings.Split(f[4], ",")
		}
		s.Actions[a.Name] = a
		return nil
	}); err != nil {
		return nil, err
	}
	if err := readTSV(dir+"/routes.tsv", 3, func(f []string) error {
		parts, err := parseRule(f[0])
		if err != nil {
			return err
		}
		s.Routes = append(s.Routes, Route{Rule: f[0], Methods: strings.Split(f[1], ","), Endpoint: f[2], parts: parts})
		return nil
	}); err != nil {
		return nil, err
	}
	if err := readTSV(dir+"/auth.tsv", 4, func(f []string) error {
		s.Auth[f[0]] = AuthFunc{Name: f[0], Module: f[1], AllowAnonymousAccess: f[2] == "true", SysadminsCheck: f[3] == "true"}
		return nil
	}); err != nil {
		return nil, err
	}
	return s, nil
}

// MustLoad is Load for the embedded data, which is known good: it panics
// only if the repository's own data files are broken.
func MustLoad(version string) *Surface {
	s, err := Load(version)
	if err != nil {
		panic(err)
	}
	return s
}

// ActionNames returns every action name, sorted.
func (s *Surface) ActionNames() []string {
	names := make([]string, 0, len(s.Actions))
	for n := range s.Actions {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// File returns one embedded data file (for example "actions.tsv"), for tools
// that want the raw facts. Names are relative to data/, whose top level is
// CKAN 2.11; VersionFile finds a file by version.
func File(name string) ([]byte, error) { return fs.ReadFile(files, "data/"+name) }

// VersionFile returns one embedded data file of a CKAN version, for example
// VersionFile("2.12", "actions.tsv"). "" means DefaultVersion.
func VersionFile(version, name string) ([]byte, error) {
	if version == "" {
		version = DefaultVersion
	}
	dir, ok := dataDirs[version]
	if !ok {
		return nil, fmt.Errorf("surface: no data for CKAN %q (have %s)", version, strings.Join(Versions, ", "))
	}
	return fs.ReadFile(files, dir+"/"+name)
}

func readTSV(name string, cols int, row func([]string) error) error {
	f, err := files.Open(name)
	if err != nil {
		return fmt.Errorf("surface: %w", err)
	}
	defer f.Close()
	return scanTSV(name, f, cols, row)
}

func scanTSV(name string, r io.Reader, cols int, row func([]string) error) error {
	sc := bufio.NewScanner(r)
	line := 0
	for sc.Scan() {
		line++
		text := sc.Text()
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		f := strings.Split(text, "\t")
		if len(f) < cols {
			f = append(f, make([]string, cols-len(f))...)
		}
		if err := row(f[:cols]); err != nil {
			return fmt.Errorf("surface: %s:%d: %w", name, line, err)
		}
	}
	return sc.Err()
}

// Allows reports whether the rule accepts method. GET rules accept HEAD, and
// every rule accepts OPTIONS, as in Flask.
func (r Route) Allows(method string) bool {
	if method == "OPTIONS" {
		return true
	}
	for _, m := range r.Methods {
		if m == method || (m == "GET" && method == "HEAD") {
			return true
		}
	}
	return false
}

// segment is one piece of a Werkzeug rule: literal text, or a variable with
// its converter.
type segment struct {
	literal   string
	name      string
	converter string // "", "default", "string", "path", "int"
	min, max  int
	hasMin    bool
	hasMax    bool
}

// parseRule splits a Werkzeug rule such as
// "/api/<int(min=1, max=2):ver>/util/<path:x>" into segments.
func parseRule(rule string) ([]segment, error) {
	var out []segment
	for rest := rule; rest != ""; {
		i := strings.IndexByte(rest, '<')
		if i < 0 {
			out = append(out, segment{literal: rest})
			break
		}
		if i > 0 {
			out = append(out, segment{literal: rest[:i]})
		}
		j := strings.IndexByte(rest, '>')
		if j < i {
			return nil, fmt.Errorf("bad rule %q", rule)
		}
		v, err := parseVar(rest[i+1 : j])
		if err != nil {
			return nil, fmt.Errorf("bad rule %q: %w", rule, err)
		}
		out = append(out, v)
		rest = rest[j+1:]
	}
	return out, nil
}

func parseVar(s string) (segment, error) {
	conv, name, ok := strings.Cut(s, ":")
	if !ok {
		return segment{name: s, converter: "default"}, nil
	}
	seg := segment{name: name}
	args := ""
	if k := strings.IndexByte(conv, '('); k >= 0 {
		args = strings.TrimSuffix(conv[k+1:], ")")
		conv = conv[:k]
	}
	seg.converter = conv
	switch conv {
	case "string", "path", "int", "default":
	default:
		return seg, fmt.Errorf("unknown converter %q", conv)
	}
	for _, kv := range strings.Split(args, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(kv), "=")
		if !ok {
			continue
		}
		var n int
		if _, err := fmt.Sscanf(v, "%d", &n); err != nil {
			return seg, fmt.Errorf("converter argument %q: %w", kv, err)
		}
		switch k {
		case "min":
			seg.min, seg.hasMin = n, true
		case "max":
			seg.max, seg.hasMax = n, true
		}
	}
	return seg, nil
}

// Match reports whether path (already percent-decoded) matches the rule, and
// the values of its variables. Matching follows Werkzeug: a default or string
// variable takes one non-empty segment, a path variable takes the rest of
// the path including slashes, an int variable takes digits within its range.
func (r Route) Match(path string) (map[string]string, bool) {
	var vars map[string]string // allocated only on a match
	if matchParts(r.parts, path, &vars) {
		if vars == nil {
			vars = map[string]string{}
		}
		return vars, true
	}
	return nil, false
}

func matchParts(parts []segment, path string, vars *map[string]string) bool {
	if len(parts) == 0 {
		return path == ""
	}
	p := parts[0]
	if p.converter == "" {
		if !strings.HasPrefix(path, p.literal) {
			return false
		}
		return matchParts(parts[1:], path[len(p.literal):], vars)
	}
	// A variable: try every candidate length, longest first for path.
	limit := len(path)
	if p.converter != "path" {
		if k := strings.IndexByte(path, '/'); k >= 0 {
			limit = k
		}
	}
	for n := limit; n >= 1; n-- {
		v := path[:n]
		if p.converter == "int" && !intInRange(v, p) {
			continue
		}
		if matchParts(parts[1:], path[n:], vars) {
			if *vars == nil {
				*vars = map[string]string{}
			}
			(*vars)[p.name] = v
			return true
		}
	}
	return false
}

// intInRange reports whether v is an integer Werkzeug's IntegerConverter
// would accept within the segment's bounds. Werkzeug accepts leading zeros
// ("03") and Unicode decimal digits; we accept leading zeros and ASCII digits
// here and leave non-ASCII digits to the gate's stricter judgement.
func intInRange(v string, p segment) bool {
	n := 0
	for _, c := range v {
		if c < '0' || c > '9' {
			return false
		}
		n = n*10 + int(c-'0')
		if n > 1<<20 {
			return false
		}
	}
	if p.hasMin && n < p.min {
		return false
	}
	if p.hasMax && n > p.max {
		return false
	}
	return true
}

// Lookup finds the route CKAN would dispatch path to. Like Werkzeug, it
// prefers the most specific matching rule: rules without a path converter
// before those with one, then more static text, then fewer variables; ties
// keep the listed order. When no matching rule accepts method, it returns the
// best match with methodOK false (so callers can answer 405).
func (s *Surface) Lookup(method, path string) (r Route, vars map[string]string, methodOK bool, found bool) {
	best, bestOK := -1, false
	for i := range s.Routes {
		v, ok := s.Routes[i].Match(path)
		if !ok {
			continue
		}
		allows := s.Routes[i].Allows(method)
		if best < 0 || (allows && !bestOK) || (allows == bestOK && s.Routes[i].moreSpecific(s.Routes[best])) {
			best, bestOK, vars = i, allows, v
		}
	}
	if best < 0 {
		return Route{}, nil, false, false
	}
	return s.Routes[best], vars, bestOK, true
}

func (r Route) weight() (pathVars, static, vars int) {
	for _, p := range r.parts {
		switch p.converter {
		case "":
			static += len(p.literal)
		case "path":
			pathVars++
			vars++
		default:
			vars++
		}
	}
	return
}

func (r Route) moreSpecific(o Route) bool {
	ap, as, av := r.weight()
	bp, bs, bv := o.weight()
	if ap != bp {
		return ap < bp
	}
	if as != bs {
		return as > bs
	}
	return av < bv
}

// Example returns a concrete path the rule matches, with every variable
// filled in: an int with its minimum (or 1), a path with "example/file.txt",
// anything else with "example-NAME". Tests walk the surface with it.
func (r Route) Example() string { return r.Fill(nil) }

// Fill returns a concrete path for the rule, taking variable values from
// vals and falling back to Example's values.
func (r Route) Fill(vals map[string]string) string {
	var b strings.Builder
	for _, p := range r.parts {
		if p.converter == "" {
			b.WriteString(p.literal)
			continue
		}
		if v, ok := vals[p.name]; ok {
			b.WriteString(v)
			continue
		}
		switch p.converter {
		case "int":
			n := 1
			if p.hasMin {
				n = p.min
			}
			fmt.Fprintf(&b, "%d", n)
		case "path":
			b.WriteString("example/file.txt")
		default:
			b.WriteString("example-" + p.name)
		}
	}
	return b.String()
}
