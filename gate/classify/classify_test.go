package classify

import (
	"bufio"
	"flag"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/ckanops/ckanops/internal/surface"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden from the reference rules in this file (then review the diff)")

// methods are the methods every action and route is classified for.
var methods = []string{"GET", "HEAD", "POST", "OPTIONS", "PUT", "DELETE"}

func classifier(t testing.TB, version string, p Policy) *Classifier {
	t.Helper()
	c, err := New(surface.MustLoad(version), p)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// readRequest parses a request the way the gate's net/http server does, so
// the URL carries Path and RawPath exactly as in production.
func readRequest(method, uri string, headers []string) (*http.Request, error) {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: ckan.example\r\n", method, uri)
	for _, h := range headers {
		b.WriteString(h + "\r\n")
	}
	b.WriteString("\r\n")
	return http.ReadRequest(bufio.NewReader(strings.NewReader(b.String())))
}

func mustRequest(t testing.TB, method, uri string, headers ...string) *http.Request {
	t.Helper()
	r, err := readRequest(method, uri, headers)
	if err != nil {
		t.Fatalf("%s %s: %v", method, uri, err)
	}
	return r
}

func classify(t testing.TB, c *Classifier, method, uri string, headers ...string) Decision {
	t.Helper()
	r := mustRequest(t, method, uri, headers...)
	return c.Classify(r.Method, r.Header, r.URL)
}

// corpusLine is one request of testdata/obfuscation.txt or cases.txt:
// method, headers ("-" or "Name: value" entries joined by " | "), the
// request-URI as it appears on the request line (Go-quoted when it starts
// with a double quote), the expected class ("400": net/http rejects the
// request line itself) and, optionally, the expected reason.
type corpusLine struct {
	line                int
	method, uri, expect string
	headers             []string
	reason              string
}

func readCorpus(t testing.TB, name string) []corpusLine {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	var out []corpusLine
	for i, text := range strings.Split(string(data), "\n") {
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		f := strings.Split(text, "\t")
		if len(f) < 4 || len(f) > 5 {
			t.Fatalf("%s:%d: want 4 or 5 tab-separated fields, got %d", name, i+1, len(f))
		}
		l := corpusLine{line: i + 1, method: f[0], uri: f[2], expect: f[3]}
		if f[1] != "-" {
			l.headers = strings.Split(f[1], " | ")
		}
		if strings.HasPrefix(l.uri, `"`) {
			if l.uri, err = strconv.Unquote(l.uri); err != nil {
				t.Fatalf("%s:%d: %v", name, i+1, err)
			}
		}
		if len(f) == 5 {
			l.reason = f[4]
		}
		switch l.expect {
		case "read", "write", "login", "tracking", "400":
		default:
			t.Fatalf("%s:%d: unknown expected class %q", name, i+1, l.expect)
		}
		out = append(out, l)
	}
	if len(out) == 0 {
		t.Fatalf("%s: empty", name)
	}
	return out
}

func checkCorpus(t *testing.T, name string, mustRefuse bool) {
	checkCorpusPolicy(t, name, mustRefuse, Policy{})
}

func checkCorpusPolicy(t *testing.T, name string, mustRefuse bool, p Policy) {
	t.Helper()
	cs := map[string]*Classifier{}
	for _, v := range surface.Versions {
		cs[v] = classifier(t, v, p)
	}
	for _, l := range readCorpus(t, name) {
		if mustRefuse && (l.expect == "read" || l.expect == "login") {
			t.Errorf("%s:%d: %s %s is expected to pass, but nothing in this corpus may pass", name, l.line, l.method, l.uri)
			continue
		}
		r, err := readRequest(l.method, l.uri, l.headers)
		if l.expect == "400" {
			if err == nil {
				t.Errorf("%s:%d: %s %q: net/http accepted a request line it should reject", name, l.line, l.method, l.uri)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s:%d: %s %q: net/http rejects it (%v): mark it 400", name, l.line, l.method, l.uri, err)
			continue
		}
		for _, v := range surface.Versions {
			d := cs[v].Classify(r.Method, r.Header, r.URL)
			if d.Class.String() != l.expect || (mustRefuse && d.Pass()) {
				t.Errorf("%s:%d: CKAN %s: %s %q %v = %v (%s), want %s", name, l.line, v, l.method, l.uri, l.headers, d.Class, d.Reason, l.expect)
			}
			if l.reason != "" && d.Reason != l.reason {
				t.Errorf("%s:%d: CKAN %s: %s %q: reason %q, want %q", name, l.line, v, l.method, l.uri, d.Reason, l.reason)
			}
		}
	}
}

// TestObfuscation: every request in testdata/obfuscation.txt must be
// refused.
func TestObfuscation(t *testing.T) { checkCorpus(t, "obfuscation.txt", true) }

// TestCases: reads, logins, refusals and their reasons.
func TestCases(t *testing.T) { checkCorpus(t, "cases.txt", false) }

// rootPolicy is the policy of testdata/cases_root.txt: a site mounted
// under /data (ckan.root_path = /data/{{LANG}}), with one allow_posts
// entry.
var rootPolicy = Policy{RootPath: "/data", AllowPosts: []string{"/datatables/filtered-download"}}

// TestCasesRoot: the same under a root path.
func TestCasesRoot(t *testing.T) { checkCorpusPolicy(t, "cases_root.txt", false, rootPolicy) }

// TestObfuscationRoot: a root path lets none of the obfuscation corpus
// pass, nor any of it under the root path (with and without a locale).
func TestObfuscationRoot(t *testing.T) {
	checkCorpusPolicy(t, "obfuscation.txt", true, rootPolicy)
	cs := map[string]*Classifier{}
	for _, v := range surface.Versions {
		cs[v] = classifier(t, v, rootPolicy)
	}
	for _, l := range readCorpus(t, "obfuscation.txt") {
		if !strings.HasPrefix(l.uri, "/") {
			continue
		}
		for _, prefix := range []string{"/data", "/data/fr"} {
			r, err := readRequest(l.method, prefix+l.uri, l.headers)
			if err != nil {
				continue
			}
			for v, c := range cs {
				if d := c.Classify(r.Method, r.Header, r.URL); d.Pass() {
					t.Errorf("obfuscation.txt:%d: CKAN %s: %s %q passes as %v (%s)", l.line, v, l.method, prefix+l.uri, d.Class, d.Reason)
				}
			}
		}
	}
}

// TestRootPathPolicy: how Policy.RootPath is read.
func TestRootPathPolicy(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", ""}, {"/", ""}, {"/data", "/data"}, {"/data/", "/data"}, {"/ckan/portal", "/ckan/portal"},
		{"/od", "/od"}, {"/od/data", "/od/data"}, {"/portal/dataset", "/portal/dataset"},
	} {
		if got := classifier(t, "2.11", Policy{RootPath: tc.in}).RootPath(); got != tc.want {
			t.Errorf("RootPath %q: RootPath() = %q, want %q", tc.in, got, tc.want)
		}
	}
	for _, bad := range []string{
		"data", "/data//x", "/data/../x", "/./data", "/data/{{LANG}}", "/{{LANG}}/data", "/da%74a",
		"/da ta", "/data;x", "/data?x", "/data#x", "/data/*", "/da\\ta", "/da\tta", "/\u00adata", "/ｄata",
		"/dataset", "/api", "/user", "/api/x", "/fr/dataset", "/pt_BR/api",
	} {
		if _, err := New(surface.MustLoad("2.11"), Policy{RootPath: bad}); err == nil {
			t.Errorf("RootPath %q accepted", bad)
		}
	}
}

// TestRootPathTargets: under a root path, the POST targets pass exactly
// under it (whole segments, in case), with or without a locale after it,
// and nowhere else that they did not pass before.
func TestRootPathTargets(t *testing.T) {
	rooted := map[string]*Classifier{}
	plain := map[string]*Classifier{}
	for _, v := range surface.Versions {
		rooted[v] = classifier(t, v, Policy{RootPath: "/ckan/portal"})
		plain[v] = classifier(t, v, Policy{})
	}
	cases := []struct {
		method, uri string
		want        Class
	}{
		{"POST", "/ckan/portal/user/login", Login},
		{"POST", "/ckan/portal/fr/user/login", Login},
		{"POST", "/ckan/portal/pt_BR/user/_logout", Login},
		{"POST", "/ckan/portal/util/redirect", Read},
		{"POST", "/ckan/portal/fr/util/redirect", Read},
		{"POST", "/ckan/portal/api/3/action/package_search", Read},
		{"POST", "/ckan/portal/fr/api/action/package_show", Read},
		{"POST", "/ckan/user/login", Write},
		{"POST", "/portal/user/login", Write},
		{"POST", "/ckan/portals/user/login", Write},
		{"POST", "/ckan/Portal/user/login", Write},
		{"POST", "/ckan/portal/fr/fr/user/login", Write},
		{"POST", "/ckan/portal/api/user/login", Write},
		{"POST", "/ckan/portal/user/login/", Write},
		{"POST", "/ckan//portal/user/login", Write},
		{"POST", "/ckan/portal/../portal/user/login", Write},
		{"POST", "/ckan/portal/;x/user/login", Write},
		{"POST", "/ckan/portal;x/user/login", Write},
		{"POST", "/ckan/portal/dataset/new", Write},
		{"POST", "/ckan/portal/fr/dataset/new", Write},
		{"POST", "/ckan/portal/api/action/package_create", Write},
		{"GET", "/ckan/portal/api/action/package_create", Write},
		{"GET", "/ckan/portal/fr/api/3/action/package_create", Write},
		{"GET", "/ckan/portal/group/follow/abc", Write},
		{"GET", "/ckan/portal/dataset/abc", Read},
		{"POST", "/ckan/portal/_tracking", Tracking},
		{"POST", "/ckan/portal/fr/_tracking", Tracking},
		{"GET", "/ckan/portal/_tracking", Tracking},
		{"POST", "/ckan/_tracking", Write},
		{"PUT", "/ckan/portal/user/login", Write},
		{"POST", "/user/login", Login}, // still, as before
		{"POST", "/fr/user/login", Login},
	}
	for _, tc := range cases {
		for _, v := range surface.Versions {
			d := classify(t, rooted[v], tc.method, tc.uri)
			if d.Class != tc.want {
				t.Errorf("CKAN %s, root /ckan/portal: %s %s = %v (%s), want %v", v, tc.method, tc.uri, d.Class, d.Reason, tc.want)
			}
			// A root path only ever lets through what is under it.
			if p := classify(t, plain[v], tc.method, tc.uri); p.Pass() && !d.Pass() && d.Class != Tracking {
				t.Errorf("CKAN %s: %s %s passes without a root path but not with one", v, tc.method, tc.uri)
			}
		}
	}
}

// refAction is the reference rule for an action call, written from
// docs/architecture.md independently of the classifier: only GET, HEAD, POST
// and OPTIONS, only side_effect_free actions, never get_site_user.
func refAction(s *surface.Surface, method, name string) Class {
	if method != "GET" && method != "HEAD" && method != "POST" && method != "OPTIONS" {
		return Write
	}
	if a, ok := s.Actions[name]; !ok || !a.SideEffectFree || name == "get_site_user" {
		return Write
	}
	return Read
}

// refRoute is the reference rule for a route's example path: reads for
// GET, HEAD and OPTIONS except the 2.10 GET routes that write; POST only to
// login and logout, and to util.internal_redirect (the language selector on
// every page posts there; it only redirects); the examples' action name
// ("example-logic_function") is unknown, so a write.
func refRoute(r surface.Route, method string) Class {
	if method == "PUT" || method == "DELETE" || r.Endpoint == "api.action" {
		return Write
	}
	if method == "POST" {
		if r.Endpoint == "user.login" || r.Endpoint == "user.logout" {
			return Login
		}
		if r.Endpoint == "util.internal_redirect" {
			return Read
		}
		return Write
	}
	switch r.Rule {
	case "/group/follow/<id>", "/group/unfollow/<id>", "/organization/follow/<id>", "/organization/unfollow/<id>":
		return Write
	}
	return Read
}

// golden compares rows (the classifier's answers, keyed by their leading
// columns) with testdata/name, or writes want (the reference rule's
// answers) there with -update.
func golden(t *testing.T, name, header string, got, want []string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		text := header + strings.Join(want, "\n") + "\n"
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	var file []string
	for _, l := range strings.Split(string(data), "\n") {
		if l != "" && !strings.HasPrefix(l, "#") {
			file = append(file, l)
		}
	}
	if len(file) != len(got) {
		t.Errorf("%s has %d rows, the data gives %d: run -update and review", name, len(file), len(got))
	}
	for i := 0; i < len(file) && i < len(got); i++ {
		if file[i] != got[i] {
			t.Errorf("%s row %d:\n file %s\n got  %s", name, i+1, file[i], got[i])
		}
	}
}

// TestActionsTable classifies every action of both versions' actions.tsv,
// for every method, on /api/action/NAME, /api/3/action/NAME and behind a
// locale, against testdata/actions.golden.
func TestActionsTable(t *testing.T) {
	var got, want []string
	for _, v := range surface.Versions {
		s := surface.MustLoad(v)
		c := classifier(t, v, Policy{})
		for _, name := range s.ActionNames() {
			for _, path := range []string{"/api/action/" + name, "/api/3/action/" + name, "/fr/api/3/action/" + name} {
				g := []string{v, path}
				w := []string{v, path}
				for _, m := range methods {
					d := classify(t, c, m, path)
					if d.Action != name {
						t.Errorf("%s %s %s: Action %q, want %q", v, m, path, d.Action, name)
					}
					g = append(g, d.Class.String())
					w = append(w, refAction(s, m, name).String())
				}
				got = append(got, strings.Join(g, "\t"))
				want = append(want, strings.Join(w, "\t"))
			}
		}
	}
	golden(t, "actions.golden", "# Generated with -update from refAction in classify_test.go, then reviewed.\n# version\tpath\t"+strings.Join(methods, "\t")+"\n", got, want)
}

// TestRoutesTable classifies every rule of both versions' routes.tsv (its
// Example path, as is and behind a locale) for every method, against
// testdata/routes.golden.
func TestRoutesTable(t *testing.T) {
	var got, want []string
	for _, v := range surface.Versions {
		s := surface.MustLoad(v)
		c := classifier(t, v, Policy{})
		for _, r := range s.Routes {
			for _, path := range []string{r.Example(), "/fr" + r.Example()} {
				g := []string{v, r.Rule, r.Endpoint, path}
				w := slices.Clone(g)
				for _, m := range methods {
					g = append(g, classify(t, c, m, path).Class.String())
					w = append(w, refRoute(r, m).String())
				}
				got = append(got, strings.Join(g, "\t"))
				want = append(want, strings.Join(w, "\t"))
			}
		}
	}
	golden(t, "routes.golden", "# Generated with -update from refRoute in classify_test.go, then reviewed.\n# version\trule\tendpoint\tpath\t"+strings.Join(methods, "\t")+"\n", got, want)
}

// TestDefaultDenyGetFromData derives the GET routes that write from the
// surface data: a rule that accepts GET in one version but only POST in
// the other is a view that writes whatever the method (CKAN 2.11 closed
// GET on it). The built-in deny_get list must be exactly those.
func TestDefaultDenyGetFromData(t *testing.T) {
	byRule := map[string]map[string][]string{} // rule -> version -> methods
	for _, v := range surface.Versions {
		for _, r := range surface.MustLoad(v).Routes {
			if byRule[r.Rule] == nil {
				byRule[r.Rule] = map[string][]string{}
			}
			byRule[r.Rule][v] = r.Methods
		}
	}
	var derived []string
	for rule, vs := range byRule {
		if len(vs) != len(surface.Versions) {
			continue
		}
		get, postOnly := false, false
		for _, ms := range vs {
			get = get || slices.Contains(ms, "GET")
			postOnly = postOnly || slices.Equal(ms, []string{"POST"})
		}
		if get && postOnly {
			derived = append(derived, rule)
		}
	}
	if len(derived) == 0 {
		t.Fatal("no rule changed from GET to POST-only between versions: data changed?")
	}
	c := classifier(t, "2.10", Policy{})
	for _, rule := range derived {
		var route surface.Route
		for _, r := range surface.MustLoad("2.10").Routes {
			if r.Rule == rule {
				route = r
			}
		}
		if d := classify(t, c, "GET", route.Example()); d.Pass() {
			t.Errorf("rule %s accepts GET in one version and only POST in another, but GET %s passes: add it to defaultDenyGet", rule, route.Example())
		}
	}
	for _, p := range defaultDenyGet {
		found := false
		for _, rule := range derived {
			found = found || strings.TrimSuffix(p, "/*")+"/<id>" == rule
		}
		if !found {
			t.Errorf("defaultDenyGet has %s, which the data does not show as a GET that writes", p)
		}
	}
}

func TestPolicy(t *testing.T) {
	cases := []struct {
		name   string
		policy Policy
		method string
		uri    string
		want   Class
		reason string
	}{
		{"unknown action is a write", Policy{}, "GET", "/api/3/action/ext_thing_show", Write, "unknown action ext_thing_show"},
		{"allow_actions: extension action", Policy{AllowActions: []string{"ext_thing_show"}}, "GET", "/api/3/action/ext_thing_show", Read, "action ext_thing_show is in allow_actions"},
		{"allow_actions: extension action, POST", Policy{AllowActions: []string{"ext_thing_show"}}, "POST", "/api/action/ext_thing_show", Read, ""},
		{"allow_actions: still no PUT", Policy{AllowActions: []string{"ext_thing_show"}}, "PUT", "/api/action/ext_thing_show", Write, "PUT never passes"},
		{"deny_actions beats the data", Policy{DenyActions: []string{"package_search"}}, "GET", "/api/3/action/package_search", Write, "action package_search is in deny_actions"},
		{"deny_actions behind a locale", Policy{DenyActions: []string{"package_search"}}, "POST", "/fr/api/3/action/package_search", Write, ""},
		{"deny_actions beats allow_actions", Policy{AllowActions: []string{"ext_x"}, DenyActions: []string{"ext_x"}}, "GET", "/api/action/ext_x", Write, "action ext_x is in deny_actions"},
		{"deny_actions beats allow_actions, either order", Policy{DenyActions: []string{"package_show"}, AllowActions: []string{"package_show"}}, "GET", "/api/action/package_show", Write, ""},
		{"allow_actions beats the get_site_user default", Policy{AllowActions: []string{"get_site_user"}}, "GET", "/api/action/get_site_user", Read, ""},
		{"get_site_user default", Policy{}, "GET", "/api/action/get_site_user", Write, "action get_site_user is a write by default (it creates the site user)"},
		{"allow_posts wildcard", Policy{AllowPosts: []string{"/datatables/ajax/*"}}, "POST", "/datatables/ajax/abc", Read, "allow_posts /datatables/ajax/*"},
		{"allow_posts wildcard, deeper", Policy{AllowPosts: []string{"/datatables/ajax/*"}}, "POST", "/datatables/ajax/abc/def", Read, ""},
		{"allow_posts wildcard needs a segment", Policy{AllowPosts: []string{"/datatables/ajax/*"}}, "POST", "/datatables/ajax", Write, ""},
		{"allow_posts behind a locale", Policy{AllowPosts: []string{"/datatables/ajax/*"}}, "POST", "/fr/datatables/ajax/abc", Read, ""},
		{"allow_posts is case-sensitive", Policy{AllowPosts: []string{"/datatables/ajax/*"}}, "POST", "/Datatables/ajax/abc", Write, ""},
		{"allow_posts not after any prefix", Policy{AllowPosts: []string{"/datatables/ajax/*"}}, "POST", "/dataset/datatables/ajax/abc", Write, ""},
		{"allow_posts exact", Policy{AllowPosts: []string{"/ext/search"}}, "POST", "/ext/search", Read, "allow_posts /ext/search"},
		{"allow_posts exact, not below", Policy{AllowPosts: []string{"/ext/search"}}, "POST", "/ext/search/x", Write, ""},
		{"allow_posts exact, not with a trailing slash", Policy{AllowPosts: []string{"/ext/search"}}, "POST", "/ext/search/", Write, ""},
		{"allow_posts does not open an action", Policy{AllowPosts: []string{"/api/action/package_create"}}, "POST", "/api/action/package_create", Write, "action package_create is not side_effect_free"},
		{"allow_posts does not open PUT", Policy{AllowPosts: []string{"/ext/search"}}, "PUT", "/ext/search", Write, ""},
		{"allow_posts does not open a deny_get path", Policy{AllowPosts: []string{"/group/follow/*"}}, "POST", "/group/follow/abc", Write, "deny_get /group/follow/*"},
		{"deny_get exact", Policy{DenyGet: []string{"/ext/do-something"}}, "GET", "/ext/do-something", Write, "deny_get /ext/do-something"},
		{"deny_get exact, HEAD", Policy{DenyGet: []string{"/ext/do-something"}}, "HEAD", "/ext/do-something", Write, ""},
		{"deny_get exact, OPTIONS", Policy{DenyGet: []string{"/ext/do-something"}}, "OPTIONS", "/ext/do-something", Write, ""},
		{"deny_get ignores case", Policy{DenyGet: []string{"/ext/do-something"}}, "GET", "/EXT/Do-Something", Write, ""},
		{"deny_get behind a locale", Policy{DenyGet: []string{"/ext/do-something"}}, "GET", "/fr/ext/do-something", Write, "locale-stripped reading /ext/do-something is a write: deny_get /ext/do-something"},
		{"deny_get exact, not below", Policy{DenyGet: []string{"/ext/do-something"}}, "GET", "/ext/do-something/else", Read, ""},
		{"deny_get wildcard", Policy{DenyGet: []string{"/ext/*"}}, "GET", "/ext/a/b", Write, "deny_get /ext/*"},
		{"deny_get wildcard needs a segment", Policy{DenyGet: []string{"/ext/*"}}, "GET", "/ext", Read, ""},
		{"deny_get extends the defaults", Policy{DenyGet: []string{"/ext/*"}}, "GET", "/group/follow/abc", Write, "deny_get /group/follow/*"},
		{"deny_get refuses POST too", Policy{DenyGet: []string{"/user/login"}}, "POST", "/user/login", Write, "deny_get /user/login"},
		{"deny_get slash-star refuses every non-root GET", Policy{DenyGet: []string{"/*"}}, "GET", "/dataset", Write, ""},
		{"deny_get slash-star leaves the root", Policy{DenyGet: []string{"/*"}}, "GET", "/", Read, ""},
	}
	for _, tc := range cases {
		for _, v := range surface.Versions {
			d := classify(t, classifier(t, v, tc.policy), tc.method, tc.uri)
			if d.Class != tc.want || (tc.reason != "" && d.Reason != tc.reason) {
				t.Errorf("%s (CKAN %s): %s %s = %v (%s), want %v (%s)", tc.name, v, tc.method, tc.uri, d.Class, d.Reason, tc.want, tc.reason)
			}
		}
	}
}

func TestNewRejectsBadPolicy(t *testing.T) {
	bad := []struct {
		policy Policy
		entry  string
	}{
		{Policy{AllowPosts: []string{""}}, `allow_posts entry ""`},
		{Policy{AllowPosts: []string{"datatables/ajax"}}, `"datatables/ajax"`},
		{Policy{AllowPosts: []string{"/*"}}, `allow_posts entry "/*"`},
		{Policy{AllowPosts: []string{"/a//b"}}, `"/a//b"`},
		{Policy{AllowPosts: []string{"/a/"}}, `"/a/"`},
		{Policy{AllowPosts: []string{"/a/*/b"}}, `"/a/*/b"`},
		{Policy{AllowPosts: []string{"/a*"}}, `"/a*"`},
		{Policy{AllowPosts: []string{"/a/%2F"}}, `"/a/%2F"`},
		{Policy{AllowPosts: []string{"/a/../b"}}, `"/a/../b"`},
		{Policy{AllowPosts: []string{"/a/./b"}}, `"/a/./b"`},
		{Policy{AllowPosts: []string{"/a;x"}}, `"/a;x"`},
		{Policy{AllowPosts: []string{"/a?x"}}, `"/a?x"`},
		{Policy{AllowPosts: []string{"/a#x"}}, `"/a#x"`},
		{Policy{AllowPosts: []string{`/a\b`}}, `"/a\\b"`},
		{Policy{AllowPosts: []string{"/a b"}}, `"/a b"`},
		{Policy{AllowPosts: []string{"/a\x00"}}, `"/a\x00"`},
		{Policy{DenyGet: []string{"group/follow/*"}}, `deny_get entry "group/follow/*"`},
		{Policy{DenyGet: []string{"/group/follow/**"}}, `"/group/follow/**"`},
		{Policy{DenyGet: []string{"/group//follow"}}, `"/group//follow"`},
		{Policy{AllowActions: []string{""}}, `allow_actions entry ""`},
		{Policy{AllowActions: []string{"a/b"}}, `allow_actions entry "a/b"`},
		{Policy{DenyActions: []string{"a b"}}, `deny_actions entry "a b"`},
		{Policy{DenyActions: []string{"a;b"}}, `deny_actions entry "a;b"`},
	}
	for _, b := range bad {
		_, err := New(surface.MustLoad("2.11"), b.policy)
		if err == nil {
			t.Errorf("New(%+v) accepted a bad entry", b.policy)
		} else if !strings.Contains(err.Error(), b.entry) {
			t.Errorf("New(%+v): error %q does not name the entry %s", b.policy, err, b.entry)
		}
	}
	if _, err := New(nil, Policy{}); err == nil {
		t.Error("New(nil) accepted no surface")
	}
	good := Policy{AllowPosts: []string{"/", "/ext/search", "/datatables/ajax/*", "/données/*"}, DenyGet: []string{"/*", "/ext/*"}, AllowActions: []string{"ext_show"}, DenyActions: []string{"package_search"}}
	if _, err := New(surface.MustLoad("2.10"), good); err != nil {
		t.Errorf("New(%+v): %v", good, err)
	}
}

func TestURLEdges(t *testing.T) {
	c := classifier(t, "2.11", Policy{})
	long := "/dataset/" + strings.Repeat("a", maxPathBytes)
	deep := strings.Repeat("/a", maxSegments+1)
	ok64 := strings.Repeat("/a", maxSegments)
	cases := []struct {
		name string
		u    *url.URL
		want Class
		why  string
	}{
		{"nil URL", nil, Write, "no URL"},
		{"opaque", &url.URL{Scheme: "http", Opaque: "api/action/package_create"}, Write, "opaque URL"},
		{"raw path with a bad escape", &url.URL{Path: "/dataset", RawPath: "/data%zzset"}, Write, "bad percent-escape in path"},
		{"raw path disagrees with path", &url.URL{Path: "/dataset", RawPath: "/api/action/package_create"}, Write, "URL path and raw path disagree"},
		{"raw path agrees", &url.URL{Path: "/dataset/a/b", RawPath: "/dataset/a%2Fb"}, Read, ""},
		{"empty path is the root", &url.URL{}, Read, ""},
		{"relative path", &url.URL{Path: "dataset"}, Write, "path does not start with /"},
		{"too long", &url.URL{Path: long}, Write, "path too long"},
		{"too many segments", &url.URL{Path: deep}, Write, "too many path segments"},
		{"as many segments as allowed", &url.URL{Path: ok64}, Read, ""},
		{"fragment is ignored", &url.URL{Path: "/dataset", Fragment: "/api/action/package_create"}, Read, ""},
		{"query is ignored", &url.URL{Path: "/api/action/package_show", RawQuery: "x=/api/action/package_create"}, Read, ""},
	}
	for _, tc := range cases {
		d := c.Classify("GET", nil, tc.u)
		if d.Class != tc.want || (tc.why != "" && d.Reason != tc.why) {
			t.Errorf("%s: %v (%s), want %v (%s)", tc.name, d.Class, d.Reason, tc.want, tc.why)
		}
	}
}

func TestDecisionAndClass(t *testing.T) {
	if (Decision{}).Pass() || (Decision{}).Class != Write {
		t.Error("the zero Decision must refuse")
	}
	for class, pass := range map[Class]bool{Read: true, Login: true, Write: false, Tracking: false} {
		if (Decision{Class: class}).Pass() != pass {
			t.Errorf("%v: Pass() = %v", class, !pass)
		}
	}
	for class, name := range map[Class]string{Read: "read", Write: "write", Login: "login", Tracking: "tracking", Class(9): "Class(9)"} {
		if class.String() != name {
			t.Errorf("Class(%d).String() = %q, want %q", int(class), class.String(), name)
		}
	}
}

func TestOverrideHeaderNames(t *testing.T) {
	c := classifier(t, "2.11", Policy{})
	for _, h := range []string{
		"X-HTTP-Method-Override", "X-Http-Method-Override", "x-http-method-override", "X_HTTP_METHOD_OVERRIDE",
		"X-HTTP-Method", "x_http_method", "X-Method-Override", "X_Method-Override",
	} {
		u := &url.URL{Path: "/dataset/abc"}
		d := c.Classify("GET", http.Header{h: {"DELETE"}}, u)
		if d.Class != Write || !strings.HasPrefix(d.Reason, "method override ") {
			t.Errorf("header %s: DELETE: %v (%s), want a write by override", h, d.Class, d.Reason)
		}
		if d := c.Classify("GET", http.Header{h: {"GET"}}, u); d.Class != Read {
			t.Errorf("header %s: GET: %v (%s), want read", h, d.Class, d.Reason)
		}
		if d := c.Classify("GET", http.Header{h: {""}}, u); d.Class != Read {
			t.Errorf("header %s: empty value: %v (%s), want read", h, d.Class, d.Reason)
		}
	}
	// Look-alike names are not override headers.
	for _, h := range []string{"X-HTTP-Method-Overrides", "X-HTTP-Methods", "Method-Override"} {
		if d := c.Classify("GET", http.Header{h: {"DELETE"}}, &url.URL{Path: "/dataset"}); d.Class != Read {
			t.Errorf("header %s is not an override, got %v (%s)", h, d.Class, d.Reason)
		}
	}
	// The reason does not depend on map order.
	h := http.Header{"X-HTTP-Method": {"PUT"}, "X-Method-Override": {"DELETE"}, "X-HTTP-Method-Override": {"PATCH"}}
	first := c.Classify("GET", h, &url.URL{Path: "/x"}).Reason
	for range 50 {
		if r := c.Classify("GET", h, &url.URL{Path: "/x"}).Reason; r != first {
			t.Fatalf("reason changes between calls: %q, %q", first, r)
		}
	}
}

func TestFormWouldBeRefused(t *testing.T) {
	c := classifier(t, "2.11", Policy{})
	base, _ := url.Parse("https://ckan.example/dataset/edit/abc")
	loginPage, _ := url.Parse("https://ckan.example/fr/user/login?came_from=/dashboard")
	cases := []struct {
		method, action string
		base           *url.URL
		want           bool
	}{
		{"post", "", base, true}, // posts to the page itself
		{"POST", "/dataset/edit/abc", base, true},
		{"Post", "/dataset/new", base, true},
		{" post ", " /dataset/new ", base, true},
		{"post", "../api/action/package_create", base, true},
		{"post", "/api/3/action/package_search", base, false},
		{"post", "/user/login", base, false},
		{"post", "/fr/user/login?came_from=/dashboard", base, false},
		{"post", "", loginPage, false},
		{"post", "/user/_logout", base, false},
		{"post", "https://other.example/user/login", base, false}, // host ignored: judged by its path
		{"post", "https://other.example/dataset/new", base, true},
		{"post", "/_tracking", base, true},
		{"post", "%zz", base, true},
		{"post", "/dataset/new", nil, true},
		{"post", "dataset/new", nil, true},
		{"get", "/dataset/new", base, false},
		{"GET", "/api/action/package_create", base, false},
		{"", "/dataset/new", base, false},
		{"dialog", "/dataset/new", base, false},
		{"put", "/dataset/new", base, false}, // HTML submits an unknown method as GET
	}
	for _, tc := range cases {
		if got := c.FormWouldBeRefused(tc.method, tc.action, tc.base); got != tc.want {
			t.Errorf("FormWouldBeRefused(%q, %q, %v) = %v, want %v", tc.method, tc.action, tc.base, got, tc.want)
		}
	}
}

func TestIsAPI(t *testing.T) {
	c := classifier(t, "2.11", Policy{})
	browser := "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
	cases := []struct {
		uri, accept string
		want        bool
	}{
		{"/api/3/action/package_show", "", true},
		{"/api", "", true},
		{"/api/action/package_show", browser, true},
		{"/fr/api/action/package_show", "", true},
		{"/API/action/package_show", "", true},
		{"//api//action/x/", "", true},
		{"/dataset/../api/action/x", "", true},
		{"/api/action/x%00", "", true}, // too broken to normalise: falls back to the prefix
		{"/apiary", "", false},
		{"/dataset", "", false},
		{"/dataset", browser, false},
		{"/dataset", "application/json", true},
		{"/dataset", "application/json, text/javascript, */*; q=0.01", true},
		{"/dataset", "text/html;q=0.9, application/json", true},
		{"/dataset", "application/json;q=0.5, text/html", false},
		{"/dataset", "application/vnd.api+json", true},
		{"/dataset", "text/json", true},
		{"/dataset", "*/*", false},
		{"/dataset", "application/*", false},
		{"/dataset", "application/json;q=0", false},
		{"/dataset", "application/json;q=2", false},
		{"/dataset", "application/json;q=abc", false},
		{"/dataset", "application/json;q=0.001", true},
		{"/dataset", "text/html, application/json", false},
		{"/dataset", "application/json, text/html", true},
		{"/dataset", "application/json ; q=1.000 , text/html ; q=0.999", true},
	}
	for _, tc := range cases {
		var h []string
		if tc.accept != "" {
			h = []string{"Accept: " + tc.accept}
		}
		r := mustRequest(t, "GET", tc.uri, h...)
		if got := c.IsAPI(r.URL, r.Header); got != tc.want {
			t.Errorf("IsAPI(%s, Accept: %s) = %v, want %v", tc.uri, tc.accept, got, tc.want)
		}
	}
	if c.IsAPI(nil, nil) {
		t.Error("IsAPI(nil, nil) = true")
	}
	if !c.IsAPI(nil, http.Header{"Accept": {"application/json"}}) {
		t.Error("IsAPI(nil, json) = false")
	}
	// Repeated Accept headers count together.
	if !c.IsAPI(&url.URL{Path: "/x"}, http.Header{"Accept": {"text/html;q=0.5", "application/json"}}) {
		t.Error("repeated Accept headers: JSON at 1 beats HTML at 0.5")
	}
}

// TestConcurrent runs the corpora from several goroutines at once (with
// -race): a Classifier must be safe for concurrent use.
func TestConcurrent(t *testing.T) {
	c := classifier(t, "2.11", Policy{AllowPosts: []string{"/datatables/ajax/*"}})
	var reqs []*http.Request
	for _, name := range []string{"obfuscation.txt", "cases.txt"} {
		for _, l := range readCorpus(t, name) {
			if r, err := readRequest(l.method, l.uri, l.headers); err == nil {
				reqs = append(reqs, r)
			}
		}
	}
	want := make([]Decision, len(reqs))
	for i, r := range reqs {
		want[i] = c.Classify(r.Method, r.Header, r.URL)
	}
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for i, r := range reqs {
				if d := c.Classify(r.Method, r.Header, r.URL); d != want[i] {
					t.Errorf("%s %s: %+v, sequentially %+v", r.Method, r.URL, d, want[i])
				}
				c.IsAPI(r.URL, r.Header)
			}
		})
	}
	wg.Wait()
}

// TestReadsDoNotAllocate: the hot path of every request.
func TestReadsDoNotAllocate(t *testing.T) {
	c := classifier(t, "2.11", Policy{AllowPosts: []string{"/datatables/ajax/*"}, RootPath: "/data"})
	for _, uri := range []string{"/", "/dataset/some-name", "/fr/dataset/", "/api/3/action/package_search?q=x", "/base/css/main.css", "/dataset/%C3%A9t%C3%A9",
		"/data/fr/user/login", "/data/util/redirect", "/data/api/3/action/package_search"} {
		for _, m := range []string{"GET", "HEAD", "POST"} {
			r := mustRequest(t, m, uri, "Accept: text/html", "User-Agent: test", "Cookie: a=b")
			want := c.Classify(r.Method, r.Header, r.URL)
			if n := testing.AllocsPerRun(100, func() { c.Classify(r.Method, r.Header, r.URL) }); n != 0 && want.Pass() {
				t.Errorf("%s %s: %v allocations per passing Classify", m, uri, n)
			}
			if n := testing.AllocsPerRun(100, func() { c.IsAPI(r.URL, r.Header) }); n != 0 {
				t.Errorf("%s %s: %v allocations per IsAPI", m, uri, n)
			}
		}
	}
}

// A whole-segment * may stand in deny_get (it can only refuse more), never
// in allow_posts.
func TestPatternSegmentWildcard(t *testing.T) {
	c := classifier(t, "2.11", Policy{DenyGet: []string{"/showcase/*/delete"}})
	if d := classify(t, c, "GET", "/showcase/x/delete"); d.Pass() {
		t.Error("GET /showcase/x/delete passes")
	}
	if d := classify(t, c, "GET", "/showcase/x/y/delete"); !d.Pass() {
		t.Error("* matched two segments")
	}
	if _, err := New(surface.MustLoad("2.11"), Policy{AllowPosts: []string{"/a/*/b"}}); err == nil {
		t.Error("allow_posts took a * segment")
	}
}
