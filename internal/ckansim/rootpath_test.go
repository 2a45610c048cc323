package ckansim

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"golang.org/x/net/html"

	"github.com/ckanops/ckanops/gate/classify"
)

func newRootSim(t *testing.T, version string, opts Options) *Sim {
	t.Helper()
	opts.Version = version
	if opts.RootPath == "" {
		opts.RootPath = "/data"
	}
	s, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestRootPathRoutes: under a root path, CKAN's routes answer under it
// (and under it with a locale), and nothing answers outside it.
func TestRootPathRoutes(t *testing.T) {
	for _, v := range versions() {
		s := newRootSim(t, v, Options{})
		cases := []struct {
			method, path string
			status       int
			endpoint     string
		}{
			{"GET", "/data/", 200, "home.index"},
			{"GET", "/data", 200, "home.index"},
			{"GET", "/data/dataset/" + seedDataset, 200, "dataset.read"},
			{"GET", "/data/fr/dataset/" + seedDataset, 200, "dataset.read"},
			{"GET", "/data/user/login", 200, "user.login"},
			{"GET", "/data/api/3/action/status_show", 200, "api.action"},
			{"GET", "/data/fr/api/action/package_show?id=" + seedDataset, 200, "api.action"},
			{"GET", "/", 404, ""},
			{"GET", "/dataset/" + seedDataset, 404, ""},
			{"GET", "/api/3/action/status_show", 404, ""},
			{"GET", "/database/dataset/" + seedDataset, 404, ""},
			{"GET", "/Data/dataset/" + seedDataset, 404, ""},
			{"POST", "/user/login", 404, ""},
			{"POST", "/api/3/action/package_create", 404, ""},
			{"POST", "/_tracking", 404, ""},
			{"GET", "/fr/data/dataset/" + seedDataset, 404, ""},
		}
		for _, tc := range cases {
			w := serveRequest(s, newRequest(tc.method, tc.path, ""))
			e := last(s)
			if w.Code != tc.status || e.Endpoint != tc.endpoint || e.Write {
				t.Errorf("CKAN %s, root /data: %s %s = %d, endpoint %q, write %v; want %d, %q", v, tc.method, tc.path, w.Code, e.Endpoint, e.Write, tc.status, tc.endpoint)
			}
			if e.Path != strings.SplitN(tc.path, "?", 2)[0] {
				t.Errorf("%s %s: journalled as %q, want the path as received", tc.method, tc.path, e.Path)
			}
		}
		// Writes under the root path are writes, outside it nothing runs.
		w := call(s, "POST", "/data/api/3/action/package_create", SysadminToken, "application/json", `{"name": "under-root", "owner_org": "demo-org"}`)
		if w.Code != 200 || !last(s).Write {
			t.Errorf("CKAN %s: package_create under /data = %d, write %v", v, w.Code, last(s).Write)
		}
		w = call(s, "POST", "/data/_tracking", "", "application/x-www-form-urlencoded", "url=x&type=page")
		if !last(s).Write {
			t.Errorf("CKAN %s: /data/_tracking = %d, not journalled as a write", v, w.Code)
		}
	}
}

// TestRootPathPages: every root-relative link, form action and asset URL
// of a page carries the root path, as CKAN's url_for builds them.
func TestRootPathPages(t *testing.T) {
	for _, v := range versions() {
		s := newRootSim(t, v, Options{})
		for _, path := range []string{"/data/", "/data/dataset/" + seedDataset, "/data/user/login", "/data/dataset/new", "/data/nothing-here", "/"} {
			r := newRequest("GET", path, "")
			r.Header.Set("Authorization", SysadminToken)
			w := serveRequest(s, r)
			body := readAll(t, w.Body)
			doc, err := html.Parse(strings.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			n := 0
			var walk func(*html.Node)
			walk = func(node *html.Node) {
				if node.Type == html.ElementNode {
					for _, a := range node.Attr {
						if a.Key != "href" && a.Key != "src" && a.Key != "action" {
							continue
						}
						u, err := url.Parse(a.Val)
						if err != nil || (u.Host != "" && u.Host != testHost) || strings.HasPrefix(a.Val, "#") {
							continue
						}
						n++
						if u.Path != "/data" && !strings.HasPrefix(u.Path, "/data/") {
							t.Errorf("CKAN %s: %s: <%s %s=%q> is not under /data", v, path, node.Data, a.Key, a.Val)
						}
						if strings.HasPrefix(u.Path, "/data/data/") {
							t.Errorf("CKAN %s: %s: <%s %s=%q>: root path twice", v, path, node.Data, a.Key, a.Val)
						}
					}
				}
				for c := node.FirstChild; c != nil; c = c.NextSibling {
					walk(c)
				}
			}
			walk(doc)
			if n < 5 {
				t.Errorf("CKAN %s: %s: only %d local URLs checked", v, path, n)
			}
		}
		// The form posts back to its page, under the root path.
		w := serveRequest(s, newRequest("GET", "/data/user/login", ""))
		p := parsePage(t, readAll(t, w.Body))
		found := false
		for _, f := range p.postForms() {
			if attr(f, "action") == "/data/user/login" {
				found = true
			}
		}
		if !found {
			t.Errorf("CKAN %s: no login form posting to /data/user/login", v)
		}
	}
}

// TestRootPathStatusShow: status_show's site_url is ckan.site_url, which
// CKAN's documentation says must not hold the mount point; the envelope's
// help URL, which CKAN builds with url_for(_external=True), holds it.
func TestRootPathStatusShow(t *testing.T) {
	for _, withRoot := range []bool{false, true} {
		s := newRootSim(t, "2.11", Options{SiteURLWithRootPath: withRoot})
		w := call(s, "GET", "/data/api/3/action/status_show", "", "", "")
		var e envelope
		if err := json.Unmarshal(w.Body.Bytes(), &e); err != nil || w.Code != 200 {
			t.Fatalf("status_show: %d %v %s", w.Code, err, w.Body)
		}
		want := "http://" + testHost
		if withRoot {
			want += "/data"
		}
		if got := e.Result.(map[string]any)["site_url"]; got != want {
			t.Errorf("SiteURLWithRootPath %v: site_url %v, want %q", withRoot, got, want)
		}
		if want := "http://" + testHost + "/data/api/3/action/help_show?name=status_show"; e.Help != want {
			t.Errorf("help %q, want %q", e.Help, want)
		}
		// Download URLs are built with the root path.
		w = call(s, "GET", "/data/api/3/action/resource_show?id="+seedCSV, "", "", "")
		var env struct {
			Result struct {
				URL string `json:"url"`
			} `json:"result"`
		}
		if err := json.Unmarshal(w.Body.Bytes(), &env); err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(env.Result.URL, "http://"+testHost+"/data/dataset/") {
			t.Errorf("resource url %q is not under the root path", env.Result.URL)
		}
	}
	// Without a root path, nothing changes.
	e := decodeEnvelope(t, action(newSim(t, "2.11"), "status_show", "", "{}"), "status_show")
	if got := e.Result.(map[string]any)["site_url"]; got != "http://"+testHost {
		t.Errorf("no root path: site_url %v", got)
	}
}

// TestRootPathRedirects: redirects CKAN builds carry the root path once.
func TestRootPathRedirects(t *testing.T) {
	s := newRootSim(t, "2.11", Options{})
	cases := []struct {
		method, path, body, want string
	}{
		{"GET", "/data/dashboard/datasets", "", "/data/user/login"},
		{"GET", "/data/dataset//" + seedDataset, "", "/data/dataset/" + seedDataset},
		{"POST", "/data/util/redirect", "url=%2Fdata%2Ffr%2Fdataset%2F", "/data/fr/dataset/"},
		{"POST", "/data/util/redirect", "url=%2Ffr%2Fdataset%2F", "/data/fr/dataset/"},
		{"POST", "/data/user/login", "login=editor&password=" + seedPassword, "/data/dashboard/datasets"},
	}
	for _, tc := range cases {
		w := call(s, tc.method, tc.path, "", "application/x-www-form-urlencoded", tc.body)
		if loc := w.Header().Get("Location"); w.Code/100 != 3 || loc != "http://"+testHost+tc.want {
			t.Errorf("%s %s: %d Location %q, want %q", tc.method, tc.path, w.Code, loc, "http://"+testHost+tc.want)
		}
	}
}

func TestRootPathOptions(t *testing.T) {
	for _, tc := range []struct{ in, want string }{{"", ""}, {"/", ""}, {"/data", "/data"}, {"/data/", "/data"}, {"/a/b", "/a/b"}} {
		s, err := New(Options{RootPath: tc.in})
		if err != nil || s.RootPath() != tc.want {
			t.Errorf("RootPath %q: %v, %v; want %q", tc.in, s, err, tc.want)
		}
	}
	for _, bad := range []string{"data", "/data//x", "/data/../x", "/da ta", "/data/{{LANG}}", "/da%74a"} {
		if _, err := New(Options{RootPath: bad}); err == nil {
			t.Errorf("RootPath %q accepted", bad)
		}
	}
	if w := serveRequest(newSim(t, "2.11"), newRequest(http.MethodGet, "/data/dataset/"+seedDataset, "")); w.Code != 404 {
		t.Errorf("no root path: /data/dataset/... = %d, want 404", w.Code)
	}
}

// TestRootPathWithClassifier: the gate's classifier, told the root path,
// keeps the rooted site's login form and refuses its edit forms, judging
// each form's action against the page's URL as the annotator asks it to.
func TestRootPathWithClassifier(t *testing.T) {
	for _, v := range versions() {
		s := newRootSim(t, v, Options{})
		c, err := classify.New(s.Surface(), classify.Policy{RootPath: s.RootPath()})
		if err != nil {
			t.Fatal(err)
		}
		for _, tc := range []struct {
			path    string
			refused map[string]bool // form action -> refused
		}{
			{"/data/user/login", map[string]bool{"/data/user/login": false}},
			{"/data/fr/user/login", map[string]bool{"/data/fr/user/login": false}},
			{"/data/dataset/new", map[string]bool{"/data/dataset/new": true}},
		} {
			r := newRequest("GET", tc.path, "")
			if !strings.Contains(tc.path, "/user/login") {
				r.Header.Set("Authorization", SysadminToken)
			}
			w := serveRequest(s, r)
			base, _ := url.Parse("http://" + testHost + tc.path)
			p := parsePage(t, readAll(t, w.Body))
			seen := 0
			for _, f := range p.postForms() {
				action := attr(f, "action")
				want, ok := tc.refused[action]
				if !ok {
					continue
				}
				seen++
				if got := c.FormWouldBeRefused("post", action, base); got != want {
					t.Errorf("CKAN %s: %s: form to %q refused = %v, want %v", v, tc.path, action, got, want)
				}
				// And the request the form sends.
				if d := c.Classify("POST", nil, base.ResolveReference(&url.URL{Path: action})); d.Pass() == want {
					t.Errorf("CKAN %s: POST %s: %v (%s)", v, action, d.Class, d.Reason)
				}
			}
			if seen != len(tc.refused) {
				t.Errorf("CKAN %s: %s: %d of the forms %v found", v, tc.path, seen, tc.refused)
			}
		}
	}
}
