package annotate

import (
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ckanops/ckanops/gate/classify"
	"github.com/ckanops/ckanops/internal/surface"
)

// A site mounted under a path prefix (ckan.root_path = /data/{{LANG}}):
// testdata/ckan212_root_*.html are the 2.12 login and dataset edit pages
// as CKAN renders them there. CKAN puts the prefix in every URL it builds
// (ckan/lib/helpers.py, _local_url; url_for_static too), so every
// root-relative href, src, form action and hx-post starts with /data, the
// language selector's options with /data/<locale>, and the site-root and
// locale-root meta tags end in /data/. The login form keeps its empty
// action (it posts to the page's own URL, /data/user/login?came_from=...).
//
// These pages are judged by the real classifier with Policy.RootPath set,
// exactly as the gate wires it (gate.go, modifyResponse): WouldRefuse is
// FormWouldBeRefused with the page's request URL as the base.

const (
	rootEditURL  = "https://data.example.org/data/dataset/edit/climate-observations"
	rootLoginURL = "https://data.example.org/data/user/login?came_from=%2Fdata%2Fdataset%2Fedit%2Fclimate-observations"
)

// classifierPolicy is the gate's WouldRefuse for a page at pageURL: the
// classifier for CKAN 2.12 with policy p, the page's URL as the base.
func classifierPolicy(t testing.TB, p classify.Policy, pageURL string) func(method, action string) bool {
	t.Helper()
	c, err := classify.New(surface.MustLoad("2.12"), p)
	if err != nil {
		t.Fatal(err)
	}
	base, err := url.Parse(pageURL)
	if err != nil {
		t.Fatal(err)
	}
	return func(method, action string) bool { return c.FormWouldBeRefused(method, action, base) }
}

var rootPolicy = classify.Policy{RootPath: "/data"}

var pagesRoot = []page212{
	{"ckan212_root_dataset_edit.html", rootEditURL, []cut{
		{`<a class="btn btn-success" hx-post="/data/dataset/follow/`, `</a>`, testControlNotice},
		{`<form id="dataset-edit"`, "</div>\n</form>", testFormNotice},
	}, []string{
		`<form action="/data/user/_logout" method="post">`,
		`<form class="d-flex site-search" action="/data/dataset/" method="get">`,
		`<form class="lang-select" action="/data/util/redirect" data-module="select-switch" method="POST">`,
	}},
	{"ckan212_root_login.html", rootLoginURL, nil, []string{
		loginForm, loginBtn,
		`<form class="lang-select" action="/data/util/redirect" data-module="select-switch" method="POST">`,
	}},
}

func TestRootPathPages(t *testing.T) {
	for _, p := range pagesRoot {
		t.Run(p.file, func(t *testing.T) {
			in := readPage(t, p.file)
			opts := Options{Notice: testNotice, WouldRefuse: classifierPolicy(t, rootPolicy, p.pageURL)}
			want := expected212(t, in, p)
			got := rewrite(t, strings.NewReader(in), opts)
			assertSame(t, "whole input", got, want)
			ref, err := io.ReadAll(newReference(strings.NewReader(in), opts, testNow, maxTokenBytes))
			if err != nil {
				t.Fatal(err)
			}
			assertSame(t, "reference rewriter", string(ref), want)
			for _, k := range p.kept {
				if !strings.Contains(in, k) {
					t.Fatalf("kept markup not in the input: %q", k)
				}
				if !strings.Contains(got, k) {
					t.Errorf("not kept byte for byte: %q", k)
				}
			}
			for _, gone := range []string{`id="dataset-edit"`, `hx-post=`, `data-module="confirm-action"`} {
				if strings.Contains(got, gone) {
					t.Errorf("output still holds %q", gone)
				}
			}
		})
	}
}

// TestRootPathLoginKept: the prefixed login page comes out as it went in
// but for the banner, also with a locale after the prefix; without the
// root path the classifier refuses its login form and language selector
// (what issue 16 fixes), so the page would lose them.
func TestRootPathLoginKept(t *testing.T) {
	in := readPage(t, "ckan212_root_login.html")
	for _, pageURL := range []string{rootLoginURL, "https://data.example.org/data/fr/user/login", "http://127.0.0.1:8080/data/user/login"} {
		got := rewrite(t, strings.NewReader(in), Options{Notice: testNotice, WouldRefuse: classifierPolicy(t, rootPolicy, pageURL)})
		if strings.Replace(got, testBanner, "", 1) != in {
			t.Errorf("%s: the login page changed beyond the banner", pageURL)
		}
	}
	got := rewrite(t, strings.NewReader(in), Options{Notice: testNotice, WouldRefuse: classifierPolicy(t, classify.Policy{}, rootLoginURL)})
	if n := strings.Count(got, `class="ckanops-form-notice"`); n != 2 {
		t.Errorf("without a root path: %d form notices, want 2 (the login form and the language selector)", n)
	}
}

// TestRootPathActions: form actions as written (relative, root-relative,
// absolute) resolve against the page's URL before they are judged.
func TestRootPathActions(t *testing.T) {
	cases := []struct {
		page, action string
		refused      bool
	}{
		{rootLoginURL, "", false},
		{rootLoginURL, "?came_from=/data/dashboard", false},
		{rootLoginURL, "login", false},
		{rootLoginURL, "./login", false},
		{rootLoginURL, "../util/redirect", false},
		{rootLoginURL, "_logout", false},
		{rootLoginURL, "login/", true},
		{rootLoginURL, "register", true},
		{rootLoginURL, "/data/user/login", false},
		{rootLoginURL, "/data/fr/user/login", false},
		{rootLoginURL, "/user/login", false},
		{rootLoginURL, "https://data.example.org/data/user/login", false},
		{rootLoginURL, "//data.example.org/data/util/redirect", false},
		{rootLoginURL, "/database/user/login", true},
		{rootLoginURL, "/Data/user/login", true},
		{"https://data.example.org/data/fr/user/login", "", false},
		{"https://data.example.org/data/fr/user/login", "../util/redirect", false},
		{rootEditURL, "", true},
		{rootEditURL, "new", true},
		{rootEditURL, "/data/dataset/new", true},
		{rootEditURL, "/data/dataset/edit/climate-observations", true},
		{rootEditURL, "../../user/_logout", false},
		{rootEditURL, "../../api/3/action/package_search", false},
		{rootEditURL, "../../api/3/action/package_update", true},
		{rootEditURL, "/data/api/action/package_create", true},
		{rootEditURL, "/data/fr/dataset/new", true},
		{rootEditURL, "/data/_tracking", true},
		{"https://data.example.org/data/", "dataset/new", true},
		{"https://data.example.org/data/", "user/login", false},
		// Without its slash, /data is a file name: this is /user/login,
		// which passes as it always has.
		{"https://data.example.org/data", "user/login", false},
		{"https://data.example.org/data", "dataset/new", true},
	}
	for _, tc := range cases {
		refuse := classifierPolicy(t, rootPolicy, tc.page)
		if got := refuse("post", tc.action); got != tc.refused {
			t.Errorf("page %s: POST to %q refused = %v, want %v", tc.page, tc.action, got, tc.refused)
		}
	}
}

// TestRootPathGolden pins the whole output of the prefixed pages; run with
// -update after an intended change and review the diff.
func TestRootPathGolden(t *testing.T) {
	for _, p := range pagesRoot {
		t.Run(p.file, func(t *testing.T) {
			opts := Options{Notice: testNotice, WouldRefuse: classifierPolicy(t, rootPolicy, p.pageURL)}
			got := rewrite(t, strings.NewReader(readPage(t, p.file)), opts)
			golden := filepath.Join("testdata", strings.TrimSuffix(p.file, ".html")+".golden")
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			assertSame(t, golden, got, string(want))
		})
	}
}
