package classify

import (
	"net/http"
	"net/url"
	"path"
	"strings"
	"testing"
	"unicode"

	"golang.org/x/net/http/httpguts"

	"github.com/ckanops/ckanops/internal/surface"
)

// The oracle below models, independently of the classifier and as simply
// as it can, what CKAN would run for a request, and errs towards "write":
//
//   - the path is the request-URI's path decoded once (what the WSGI server
//     puts in PATH_INFO);
//   - CKAN may route it as it is or with its first segment dropped (a
//     locale), and something on the way may have merged slashes, resolved
//     dot segments, dropped ";params" or a trailing slash: every one of
//     those paths is a candidate;
//   - the request may run as its real method or as any method an override
//     header names (upper-cased, as middleware does); OPTIONS runs as GET
//     (Flask would answer it itself, but the oracle does not rely on that).
//     An override header is X-HTTP-Method-Override, X-HTTP-Method or
//     X-Method-Override with its name in any case and any '-' spelt '_'
//     (a CGI or WSGI server turns both into '_', and middleware reads the
//     environ), in any number of copies; every comma-separated token of
//     every copy counts (oracleOverrides);
//   - /api/action/NAME and /api/ANY/action/NAME run action NAME: a read only
//     for GET, HEAD or POST and a known side_effect_free action other than
//     get_site_user; any other path is dispatched with surface.Lookup (as
//     Werkzeug would): no route or a method the route refuses runs nothing;
//     a GET route runs a read except the views found to write on GET
//     (getWriters, from reading CKAN 2.10's views); a POST runs a write
//     except login and logout. POST /_tracking is a write before routing.

// getWriters are the endpoints whose view writes when reached by GET:
// CKAN 2.10's group and organization follow/unfollow views call the
// follow actions whatever the method.
var getWriters = map[string]bool{
	"group.follow": true, "group.unfollow": true,
	"organization.follow": true, "organization.unfollow": true,
}

// oracleRead reports whether CKAN with surface s would run only reads for
// method (plus the methods named in overrides) on request-URI uri.
func oracleRead(s *surface.Surface, method string, overrides []string, uri string) (bool, string) {
	return oracleReadRoot(s, "", method, overrides, uri)
}

// oracleReadRoot is oracleRead for a site mounted under root ("/data",
// "" for none): the web server in front of CKAN strips root, when the
// path starts with its segments, before CKAN sees the path, and CKAN
// then strips a locale; or the path reaches CKAN as it is.
func oracleReadRoot(s *surface.Surface, root, method string, overrides []string, uri string) (bool, string) {
	p, ok := oraclePath(uri)
	if !ok {
		return false, "cannot model the request-URI"
	}
	decoded, err := url.PathUnescape(p)
	if err != nil {
		return false, "bad escape"
	}
	ms := []string{method}
	for _, o := range overrides {
		for _, tok := range strings.Split(o, ",") {
			if tok = strings.TrimSpace(tok); tok != "" {
				ms = append(ms, strings.ToUpper(tok))
			}
		}
	}
	for _, m := range ms {
		if m == "OPTIONS" {
			m = "GET"
		}
		if m != "GET" && m != "HEAD" && m != "POST" {
			return false, "method " + m
		}
		for _, cand := range oracleCandidatesRoot(decoded, root) {
			if ok, why := oracleRoute(s, m, cand); !ok {
				return false, m + " " + cand + ": " + why
			}
		}
	}
	return true, ""
}

// oracleOverrideNames are the method-override headers middleware honours,
// lower-cased with '-' for '_'.
var oracleOverrideNames = map[string]bool{
	"x-http-method-override": true,
	"x-http-method":          true,
	"x-method-override":      true,
}

// oracleOverrides returns the values of every header in h that middleware
// would take for a method override: the names are compared after lowering
// them and turning every '_' into '-', as a CGI environ makes them equal.
func oracleOverrides(h http.Header) []string {
	var out []string
	for k, vs := range h {
		if oracleOverrideNames[strings.ReplaceAll(strings.ToLower(k), "_", "-")] {
			out = append(out, vs...)
		}
	}
	return out
}

// oraclePath takes the path out of a request-URI, reading it as RFC 3986
// does: an optional scheme, an optional //authority, the path, a query.
func oraclePath(uri string) (string, bool) {
	if i := strings.IndexByte(uri, ':'); i > 0 && !strings.ContainsAny(uri[:i], "/?#") {
		scheme := strings.ToLower(uri[:i])
		if scheme != "http" && scheme != "https" {
			return "", false
		}
		uri = uri[i+1:]
		if rest, ok := strings.CutPrefix(uri, "//"); ok {
			j := strings.IndexAny(rest, "/?")
			if j < 0 {
				j = len(rest)
			}
			uri = rest[j:]
		}
	}
	if i := strings.IndexByte(uri, '?'); i >= 0 {
		uri = uri[:i]
	}
	if uri == "" {
		uri = "/"
	}
	if !strings.HasPrefix(uri, "/") {
		return "", false
	}
	return uri, true
}

// oracleCandidates lists every path CKAN might route: as decoded, cleaned
// in the usual ways, and each of those with a first (locale) segment
// dropped the way CKAN's handle_i18n does it.
func oracleCandidates(p string) []string {
	noParams := func(p string) string {
		segs := strings.Split(p, "/")
		for i, s := range segs {
			s, _, _ = strings.Cut(s, ";")
			segs[i] = s
		}
		return strings.Join(segs, "/")
	}
	base := []string{p, noParams(p), path.Clean(p), path.Clean(noParams(p)), strings.TrimSuffix(p, "/")}
	var out []string
	for _, b := range base {
		if b == "" {
			b = "/"
		}
		out = append(out, b)
		if parts := strings.Split(b, "/"); len(parts) > 1 {
			if len(parts) > 2 {
				out = append(out, "/"+strings.Join(parts[2:], "/"))
			} else {
				out = append(out, "/")
			}
		}
	}
	return out
}

// oracleCandidatesRoot is oracleCandidates, plus, for every path that
// starts with root's segments, the same path without them and its
// candidates.
func oracleCandidatesRoot(p, root string) []string {
	out := oracleCandidates(p)
	if root == "" {
		return out
	}
	for _, cand := range out {
		if cand == root {
			out = append(out, oracleCandidates("/")...)
		} else if rest, ok := strings.CutPrefix(cand, root+"/"); ok {
			out = append(out, oracleCandidates("/"+rest)...)
		}
	}
	return out
}

func oracleRoute(s *surface.Surface, method, p string) (bool, string) {
	if p == "/_tracking" && method == "POST" {
		return false, "tracking"
	}
	segs := strings.Split(strings.TrimPrefix(p, "/"), "/")
	name := ""
	switch {
	case len(segs) == 3 && segs[0] == "api" && segs[1] == "action":
		name = segs[2]
	case len(segs) == 4 && segs[0] == "api" && segs[2] == "action":
		name = segs[3]
	}
	if name != "" {
		a, known := s.Actions[name]
		if !known || !a.SideEffectFree || name == "get_site_user" {
			return false, "action " + name
		}
		return true, ""
	}
	r, _, methodOK, found := s.Lookup(method, p)
	if !found || !methodOK {
		return true, "" // 404 or 405: nothing runs
	}
	switch method {
	case "GET", "HEAD":
		if getWriters[r.Endpoint] {
			return false, "GET writer " + r.Endpoint
		}
		return true, ""
	}
	switch r.Endpoint {
	case "user.login", "user.logout", "util.internal_redirect": // the last only redirects
		return true, ""
	}
	return false, "POST to " + r.Endpoint
}

// TestOracle checks the oracle itself on requests whose answer is known, so
// that a broken oracle cannot make the fuzz target vacuous.
func TestOracle(t *testing.T) {
	s := surface.MustLoad("2.10")
	cases := []struct {
		method, override, uri string
		read                  bool
	}{
		{"GET", "", "/dataset/abc", true},
		{"GET", "", "/api/action/package_show", true},
		{"POST", "", "/api/3/action/package_search", true},
		{"POST", "", "/user/login", true},
		{"POST", "", "/fr/user/login", true},
		{"GET", "", "/api/action/package_create", false},
		{"HEAD", "", "/api/%D9%A3/action/package_create", false},
		{"GET", "", "/fr/api/action/package_create", false},
		{"GET", "", "/dataset/../api/action/package_create", false},
		{"GET", "", "/api/action/package_create;x", false},
		{"GET", "", "/api/action/package_create/", false},
		{"GET", "", "/api/action/get_site_user", false},
		{"GET", "", "/group/follow/abc", false},
		{"GET", "DELETE", "/dataset/abc", false},
		{"POST", "", "/dataset/new", false},
		{"POST", "", "/_tracking", false},
		{"PUT", "", "/dataset/abc", false},
		{"get", "", "/dataset/abc", false},
		{"OPTIONS", "", "*", false},
	}
	for _, tc := range cases {
		var o []string
		if tc.override != "" {
			o = []string{tc.override}
		}
		if got, why := oracleRead(s, tc.method, o, tc.uri); got != tc.read {
			t.Errorf("oracle(%s %s, override %q) = %v (%s), want %v", tc.method, tc.uri, tc.override, got, why, tc.read)
		}
	}
}

// TestOracleRoot checks the oracle's reading of a root path: the web
// server strips it, then CKAN strips a locale.
func TestOracleRoot(t *testing.T) {
	s := surface.MustLoad("2.11")
	cases := []struct {
		method, uri string
		read        bool
	}{
		{"POST", "/data/user/login", true},
		{"POST", "/data/fr/user/login", true},
		{"POST", "/data/dataset/new", false},
		{"POST", "/data/fr/dataset/new", false},
		{"GET", "/data/fr/api/action/package_create", false},
		{"GET", "/data/dataset/abc", true},
		{"POST", "/data", true},
		{"POST", "/data/_tracking", false},
	}
	for _, tc := range cases {
		if got, why := oracleReadRoot(s, "/data", tc.method, nil, tc.uri); got != tc.read {
			t.Errorf("oracle(root /data, %s %s) = %v (%s), want %v", tc.method, tc.uri, got, why, tc.read)
		}
	}
}

// TestOracleOverrides checks the oracle's reading of override headers, as
// net/http hands them over.
func TestOracleOverrides(t *testing.T) {
	s := surface.MustLoad("2.10")
	cases := []struct {
		header string
		read   bool
	}{
		{"X-HTTP-Method-Override: DELETE", false},
		{"x-http-method-override: delete", false},
		{"X_HTTP_Method_Override: PUT", false},
		{"x_http-method_override: PATCH", false},
		{"X-HTTP-METHOD: purge", false},
		{"X_Method_Override: DELETE", false},
		{"X-Method-Override: GET, ,  DELETE", false},
		{"X-Method-Override: \tget\t,head", true},
		{"X-HTTP-Method-Override: GET", true},
		{"X-HTTP-Method-Override: OPTIONS", true},
		{"X-HTTP-Method-Overrides: DELETE", true}, // not an override header
		{"X-Method: DELETE", true},
		{"X-HTTP-Method-Override-: DELETE", true},
	}
	for _, tc := range cases {
		r, err := readRequest("GET", "/dataset/abc", strings.Split(tc.header, "\n"))
		if err != nil {
			t.Fatalf("%q: %v", tc.header, err)
		}
		if got, why := oracleRead(s, "GET", oracleOverrides(r.Header), "/dataset/abc"); got != tc.read {
			t.Errorf("oracle(GET /dataset/abc, %q) = %v (%s), want %v", tc.header, got, why, tc.read)
		}
	}
}

// fuzzHeaderBases are the names fuzzHeader spells in its ways: the override
// headers and names close to them that are not.
var fuzzHeaderBases = [...]string{
	"X-HTTP-Method-Override", "X-HTTP-Method", "X-Method-Override", "X-HTTP-Method-Overrides",
	"X-Method", "HTTP-Method-Override", "X-HTTP-Override", "X-Http-Method-Override-",
}

// fuzzHeader spells a header name for FuzzClassify's header argument h
// (1 to 127; 1 is "X-HTTP-Method-Override"). With k = h-1, the low three
// bits of k pick a base name, bit 3 spells its '-' as '_', and bits 4 and 5
// keep its case, lower it, upper it or alternate the case of its letters.
func fuzzHeader(h uint8) string {
	k := h - 1
	name := []byte(fuzzHeaderBases[k&7])
	style := k >> 4 & 3
	for i, c := range name {
		if c == '-' && k&8 != 0 {
			c = '_'
		}
		switch lower := c | 0x20; {
		case lower < 'a' || lower > 'z':
		case style == 1 || style == 3 && i%2 == 1:
			c = lower
		case style == 2 || style == 3:
			c = lower - 0x20
		}
		name[i] = c
	}
	return string(name)
}

// fuzzHeaderLines turns FuzzClassify's header and override arguments into
// header lines: none for 0; "NAME: override" for 1 to 127, NAME from
// fuzzHeader; for 128 and up, override itself holds the lines, one a line,
// names and values as the fuzzer makes them.
func fuzzHeaderLines(h uint8, override string) []string {
	switch {
	case h == 0:
		return nil
	case h < 128:
		return []string{fuzzHeader(h) + ": " + override}
	}
	var lines []string
	for _, l := range strings.Split(override, "\n") {
		if l = strings.TrimSuffix(l, "\r"); l != "" {
			lines = append(lines, l)
		}
	}
	return lines
}

// fuzzValues are override values for the seeds: lists, odd cases, white
// space.
var fuzzValues = []string{
	"GET", "get", "Head", "OPTIONS", "POST", "pOsT", "DELETE", "delete", "PUT", "PATCH", "PURGE",
	"GET, DELETE", "get,put", "GET,,HEAD", " GET ,\tPOST ", "\tDELETE\t", "GET , ", ",", "",
	"G E T", "GET DELETE", "poſt", "GET;DELETE", "HEAD,OPTIONS,GET",
}

// fuzzRoots are the root paths FuzzClassify also classifies with (besides
// none): one segment and two.
var fuzzRoots = []string{"/data", "/ckan/portal"}

// FuzzClassify: whenever Classify lets a request pass, the oracle must say
// that CKAN would run only reads for it, for a site at "/" and for sites
// mounted under fuzzRoots.
//
// header chooses the request's headers (fuzzHeaderLines): none, one header
// whose name fuzzHeader spells with override as its value, or any headers
// written out in override.
func FuzzClassify(f *testing.F) {
	for _, l := range readCorpus(f, "obfuscation.txt") {
		f.Add(l.method, uint8(0), "", l.uri)
		if len(l.headers) > 0 {
			f.Add(l.method, uint8(128), strings.Join(l.headers, "\n"), l.uri)
		}
	}
	for _, l := range readCorpus(f, "cases.txt") {
		f.Add(l.method, uint8(0), "", l.uri)
		if len(l.headers) > 0 {
			f.Add(l.method, uint8(128), strings.Join(l.headers, "\n"), l.uri)
		}
	}
	for _, v := range surface.Versions {
		for _, r := range surface.MustLoad(v).Routes {
			f.Add("GET", uint8(0), "", r.Example())
			f.Add("POST", uint8(1), "GET", "/fr"+r.Example())
			f.Add("POST", uint8(0), "", fuzzRoots[0]+r.Example())
			f.Add("POST", uint8(0), "", fuzzRoots[1]+"/fr"+r.Example())
		}
	}
	for _, l := range readCorpus(f, "cases_root.txt") {
		f.Add(l.method, uint8(0), "", l.uri)
	}
	for i, v := range fuzzValues {
		for _, uri := range []string{"/dataset/abc", "/api/action/package_show", "/user/login", "/fr/group/abc"} {
			for _, m := range []string{"GET", "HEAD", "POST"} {
				f.Add(m, uint8(1+(i*37)%127), v, uri)
			}
			f.Add("GET", uint8(128), "X_HTTP_Method_Override: "+v+"\nx-http-method-override: GET", uri)
			f.Add("GET", uint8(128), "X-HTTP-Method: GET\nX-Method-Override: "+v+"\nX-Custom_Header: "+v, uri)
			f.Add("HEAD", uint8(128), "x_method_override:"+v, uri)
			f.Add("POST", uint8(128), "X_HTTP-Method_Override: "+v+"\nX-Http_Method:"+v, uri)
		}
	}
	type rooted struct{ version, root string }
	cs := map[rooted]*Classifier{}
	ss := map[string]*surface.Surface{}
	for _, v := range surface.Versions {
		ss[v] = surface.MustLoad(v)
		for _, root := range append([]string{""}, fuzzRoots...) {
			cs[rooted{v, root}] = classifier(f, v, Policy{RootPath: root})
		}
	}
	f.Fuzz(func(t *testing.T, method string, header uint8, override, uri string) {
		headers := fuzzHeaderLines(header, override)
		r, err := readRequest(method, uri, headers)
		if err != nil {
			return // net/http would answer 400 itself
		}
		for k, vs := range r.Header {
			// The checks net/http's server adds to ReadRequest's.
			if !httpguts.ValidHeaderFieldName(k) {
				return
			}
			for _, v := range vs {
				if !httpguts.ValidHeaderFieldValue(v) {
					return
				}
			}
		}
		// What net/http kept of the headers is what the gate sees.
		overrides := oracleOverrides(r.Header)
		for k, c := range cs {
			d := c.Classify(r.Method, r.Header, r.URL)
			if !d.Pass() {
				continue
			}
			if ok, why := oracleReadRoot(ss[k.version], k.root, r.Method, overrides, uri); !ok {
				t.Fatalf("CKAN %s, root path %q: %q %q (headers %q) passes as %v (%s), but CKAN would write: %s", k.version, k.root, method, uri, headers, d.Class, d.Reason, why)
			}
			if strings.IndexFunc(uri, unicode.IsControl) >= 0 {
				t.Fatalf("CKAN %s, root path %q: %q %q passes with a control character in the request-URI", k.version, k.root, method, uri)
			}
		}
	})
}

// TestFuzzHeader: the spellings cover the override names in '_' and in
// every case style.
func TestFuzzHeader(t *testing.T) {
	seen := map[string]bool{}
	for h := 1; h < 128; h++ {
		seen[fuzzHeader(uint8(h))] = true
	}
	for _, want := range []string{
		"X-HTTP-Method-Override", "x-http-method-override", "X_HTTP_METHOD_OVERRIDE", "x_http_method_override",
		"X-HTTP-Method", "x_http_method", "X-Method-Override", "X_METHOD_OVERRIDE", "X-HtTp-mEtHoD-OvErRiDe", "X_HTTP_Method_Override",
	} {
		if !seen[want] {
			t.Errorf("fuzzHeader never spells %q", want)
		}
	}
}
