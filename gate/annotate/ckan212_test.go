package annotate

import (
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/iotest"
)

// The pages in testdata/ckan212_*.html are shaped like what CKAN 2.12
// (dev-v2.12) renders, with its default templates and with the Midnight
// Blue theme (ckan.base_templates_folder = templates-midnight-blue):
// written for these tests, not copied from CKAN. What matters to the
// rewriter is kept as 2.12 has it:
//
//   - a plain <body> (2.12 moved the site-root data attributes to <meta>
//     tags) and <html class="js"> without IE conditional comments;
//   - the edit form (POST, CSRF field first, 2.12's new Unpublish submit
//     button, the Delete link with data-module="confirm-action" inside the
//     form); Midnight Blue wraps the fields in one more container;
//   - the sidebar's Follow/Unfollow button on the edit page: in 2.12 an
//     <a hx-post="/dataset/follow/ID"> outside any form, in both themes
//     (the info snippet ignores hide_follow_button);
//   - the logout button, a POST form to /user/_logout in the account
//     masthead (both themes), and the language selector, a POST form to
//     /util/redirect in the footer: both are let through by the gate;
//   - the login form, <form action="" method="post"> (the login page does
//     not pass an action, so the form posts to the page's own URL); in
//     Midnight Blue it sits in a .login-main / .login-form layout with the
//     flash messages inside the form's column;
//   - the organization edit form (Midnight Blue), which has no action;
//   - the dataset search page (Midnight Blue): a GET search form that htmx
//     boosts, facet and pagination links with hx-boost;
//   - the API tokens page: forms with hx-post and no method attribute
//     (htmx posts them; a browser without htmx would GET);
//   - the collaborators list: Delete links with confirm-action outside any
//     form (the module posts to the link's href).

// gatePolicy is a stand-in for the gate's FormWouldBeRefused with its
// built-in allowances (docs/architecture.md, "What counts as a write"): a
// POST passes only to login, logout and /util/redirect (the language
// selector). The action is resolved against the page's URL.
func gatePolicy(pageURL string) func(method, action string) bool {
	base, err := url.Parse(pageURL)
	if err != nil {
		panic(err)
	}
	return func(method, action string) bool {
		if !strings.EqualFold(method, "POST") {
			return false
		}
		u, err := base.Parse(action)
		if err != nil {
			return true
		}
		switch u.Path {
		case "/user/login", "/login_generic", "/user/_logout", "/user/logout", "/util/redirect":
			return false
		}
		return true
	}
}

var testControlNotice = controlNoticeAt(testNotice)

// cut names a stretch of a page that the rewriter replaces by text: from
// the first occurrence of from (after the previous cut) to the end of the
// first occurrence of to after it.
type cut struct {
	from, to string
	text     string // testFormNotice or testControlNotice
}

type page212 struct {
	file, pageURL string
	cuts          []cut
	kept          []string // must come out byte for byte
}

const (
	editURL    = "https://data.example.org/dataset/edit/climate-observations"
	loginURL   = "https://data.example.org/user/login?came_from=%2Fdataset%2Fedit%2Fclimate-observations"
	tokensURL  = "https://data.example.org/user/alice/api-tokens"
	collabURL  = "https://data.example.org/dataset/collaborators/climate-observations"
	searchURL  = "https://data.example.org/dataset/?q=rainfall"
	orgEditURL = "https://data.example.org/organization/edit/met-office-example"
)

var (
	logoutForm = "<form action=\"/user/_logout\" method=\"post\">"
	searchForm = "<form class=\"d-flex site-search\" action=\"/dataset/\" method=\"get\">\n" +
		"              <label class=\"d-none\" for=\"field-sitewide-search\">Search Datasets...</label>\n" +
		"              <input id=\"field-sitewide-search\" class=\"form-control me-2\"  type=\"text\" name=\"q\" placeholder=\"Search\" aria-label=\"Search datasets...\"/>\n" +
		"              <button class=\"btn\" type=\"submit\" aria-label=\"Submit\"><i class=\"fa fa-search\"></i></button>\n" +
		"          </form>"
	langForm  = `<form class="lang-select" action="/util/redirect" data-module="select-switch" method="POST">`
	loginForm = "<form action=\"\" method=\"post\">"
	loginBtn  = `<button class="btn btn-primary" type="submit">Login</button>`
)

var pages212 = []page212{
	{"ckan212_dataset_edit.html", editURL, []cut{
		{`<a class="btn btn-success" hx-post="/dataset/follow/`, `</a>`, testControlNotice},
		// The description's textarea holds a "</form>" too.
		{`<form id="dataset-edit"`, "</div>\n</form>", testFormNotice},
	}, []string{logoutForm, searchForm, langForm, `<button class="btn btn-secondary btn-sm dropdown-toggle" type="button"`}},
	{"ckan212_login.html", loginURL, nil, []string{searchForm, langForm, loginForm, loginBtn}},
	{"ckan212_midnight_dataset_edit.html", editURL, []cut{
		{`<a class="btn btn-danger" hx-post="/dataset/unfollow/`, `</a>`, testControlNotice},
		{`<form id="dataset-edit"`, `</form>`, testFormNotice},
	}, []string{logoutForm, langForm}},
	{"ckan212_midnight_login.html", loginURL, nil, []string{langForm, loginForm, loginBtn}},
	// The form has no action: it posts to the page's own URL.
	{"ckan212_midnight_organization_edit.html", orgEditURL, []cut{
		{`<form id='organization-edit-form'`, `</form>`, testFormNotice},
	}, nil},
	// The search form is htmx's (hx-boost, hx-trigger) and GET.
	{"ckan212_midnight_dataset_search.html", searchURL, nil, []string{
		`<form id="dataset-search-form" class="search-form" hx-boost="true" hx-disinherit="hx-boost" method="get" hx-trigger="change, submit">`,
		`<div hx-boost="true">`, `<a hx-boost="true" href="/dataset/?organization=met-office-example"`}},
	{"ckan212_midnight_api_tokens.html", tokensURL, []cut{
		{`<form hx-post="/user/8f2a5a8e-0f55-4cb4-9d57-07c4c4a0b0d1/api-tokens"`, `</form>`, testFormNotice},
		{`<form hx-post="/user/alice/api-tokens/revoke"`, `</form>`, testFormNotice},
	}, []string{logoutForm}},
	{"ckan212_midnight_collaborators.html", collabURL, []cut{
		{`<a class="btn btn-success" hx-post="/dataset/follow/`, `</a>`, testControlNotice},
		{`<a class="btn btn-danger btn-sm" href="/dataset/collaborators/climate-observations/delete/bob"`, `</a>`, testControlNotice},
		{`<a class="btn btn-danger btn-sm" href="/dataset/collaborators/climate-observations/delete/carol"`, `</a>`, testControlNotice},
	}, []string{`<a class="btn btn-secondary btn-sm" href="/dataset/collaborators/climate-observations/new?user_id=bob"`}},
}

// expected212 builds a page's output by hand: the banner right after
// <body>, each cut replaced; every other byte is the input's.
func expected212(t *testing.T, in string, p page212) string {
	t.Helper()
	loc := bodyTag.FindStringIndex(in)
	if loc == nil {
		t.Fatalf("%s: no <body> tag", p.file)
	}
	var b strings.Builder
	b.WriteString(in[:loc[1]])
	b.WriteString(testBanner)
	prev := loc[1]
	for _, c := range p.cuts {
		i := strings.Index(in[prev:], c.from)
		if i < 0 {
			t.Fatalf("%s: cut start %q not found", p.file, c.from)
		}
		start := prev + i
		j := strings.Index(in[start:], c.to)
		if j < 0 {
			t.Fatalf("%s: cut end %q not found", p.file, c.to)
		}
		b.WriteString(in[prev:start])
		b.WriteString(c.text)
		prev = start + j + len(c.to)
	}
	b.WriteString(in[prev:])
	return b.String()
}

func options212(pageURL string) Options {
	return Options{Notice: testNotice, WouldRefuse: gatePolicy(pageURL)}
}

func TestCKAN212Pages(t *testing.T) {
	for _, p := range pages212 {
		t.Run(p.file, func(t *testing.T) {
			in := readPage(t, p.file)
			opts := options212(p.pageURL)
			want := expected212(t, in, p)
			got := rewrite(t, strings.NewReader(in), opts)
			assertSame(t, "whole input", got, want)
			assertSame(t, "one byte per Read", rewrite(t, iotest.OneByteReader(strings.NewReader(in)), opts), want)
			ref, err := io.ReadAll(newReference(strings.NewReader(in), opts, testNow, maxTokenBytes))
			if err != nil {
				t.Fatal(err)
			}
			assertSame(t, "reference rewriter", string(ref), want)

			if n := strings.Count(got, `class="ckanops-banner"`); n != 1 {
				t.Errorf("%d banners", n)
			}
			forms, controls := 0, 0
			for _, c := range p.cuts {
				if c.text == testFormNotice {
					forms++
				} else {
					controls++
				}
			}
			if n := strings.Count(got, `class="ckanops-form-notice"`); n != forms {
				t.Errorf("%d form notices, want %d", n, forms)
			}
			if n := strings.Count(got, `class="ckanops-control-notice"`); n != controls {
				t.Errorf("%d control notices, want %d", n, controls)
			}
			// The banner is the first thing in the body: before the skip
			// link, the masthead and the flash messages.
			if i, j := strings.Index(got, testBanner), strings.Index(got, `class="flash-messages`); i < 0 || j < i {
				t.Errorf("banner at %d, flash messages at %d", i, j)
			}
			for _, k := range p.kept {
				if !strings.Contains(in, k) {
					t.Fatalf("kept markup not in the input: %q", k)
				}
				if !strings.Contains(got, k) {
					t.Errorf("not kept byte for byte: %q", k)
				}
			}
			// Nothing that writes is left usable: no edit form's CSRF
			// token outside the kept forms, no hx-post, no confirm-action.
			for _, gone := range []string{`id="dataset-edit"`, `hx-post=`, `data-module="confirm-action"`, `value="go-metadata-unpublish"`} {
				if strings.Contains(got, gone) {
					t.Errorf("output still holds %q", gone)
				}
			}
		})
	}
}

// TestCKAN212ReadPagesKept: the login pages come out as they went in, but for
// the banner: login must keep working in read-only mode. So does the
// search page (GET forms only).
func TestCKAN212ReadPagesKept(t *testing.T) {
	for _, file := range []string{"ckan212_login.html", "ckan212_midnight_login.html", "ckan212_midnight_dataset_search.html"} {
		in := readPage(t, file)
		got := rewrite(t, strings.NewReader(in), options212(loginURL))
		if strings.Replace(got, testBanner, "", 1) != in {
			t.Errorf("%s: the login page changed beyond the banner", file)
		}
	}
}

// TestCKAN212Golden pins the whole output of the 2.12 pages; run with
// -update after an intended change and review the diff.
func TestCKAN212Golden(t *testing.T) {
	for _, p := range pages212 {
		t.Run(p.file, func(t *testing.T) {
			got := rewrite(t, strings.NewReader(readPage(t, p.file)), options212(p.pageURL))
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

// controlCases cover the controls and htmx forms one at a time; {B} is the
// banner, {N} the form notice, {C} the control notice. Every POST is
// refused but to /user/login.
var controlCases = []struct{ name, in, want string }{
	{"htmx form without method",
		`<body><form hx-post="/user/x/api-tokens"><input name=name><button>Create</button></form><p>after`,
		`<body>{B}{N}<p>after`},
	{"htmx form, data- prefix",
		`<body><form data-hx-post="/x"><input></form>`, `<body>{B}{N}`},
	{"htmx put, patch and delete forms are refused without asking",
		`<body><form hx-put="/user/login"></form><form hx-patch=/user/login></form><form HX-DELETE="/user/login"></form><form data-hx-delete=""></form>`,
		`<body>{B}{N}{N}{N}{N}`},
	{"htmx post to a passing URL is kept",
		`<body><form hx-post="/user/login"><input name=login></form>`,
		`<body>{B}<form hx-post="/user/login"><input name=login></form>`},
	{"hx-post to a passing URL does not save a refused POST form",
		`<body><form method=post action=/dataset/new hx-post="/user/login"></form>`, `<body>{B}{N}`},
	{"a refused hx-post hides a GET form",
		`<body><form method=get action=/dataset/ hx-post="/dataset/new"><input name=q></form>`, `<body>{B}{N}`},
	{"hx-get form is a GET form",
		`<body><form hx-get="/dataset/" hx-trigger="change"><input name=q></form>`,
		`<body>{B}<form hx-get="/dataset/" hx-trigger="change"><input name=q></form>`},
	{"follow link",
		`<body><div><a class="btn btn-success" hx-post="/dataset/follow/1" hx-target="#package-info"><i class="fa-solid fa-circle-plus"></i> Follow</a> <span>3</span></div>`,
		`<body>{B}<div>{C} <span>3</span></div>`},
	{"uppercase attribute and entity in the value",
		`<body><A HX-POST="/dataset/follow/&#49;">Follow</A>after`, `<body>{B}{C}after`},
	{"hx-post button in a kept form",
		`<body><form action=/dataset/><input name=q><button hx-post="/dataset/new">New</button><button>Search</button></form>`,
		`<body>{B}<form action=/dataset/><input name=q>{C}<button>Search</button></form>`},
	{"hx-delete on a void element",
		`<body><input type=button hx-delete="/api/x" value=Delete><p>after`, `<body>{B}{C}<p>after`},
	{"hx-post to a passing URL is kept",
		`<body><a hx-post="/user/login">Log in</a>`, `<body>{B}<a hx-post="/user/login">Log in</a>`},
	{"hx-get is kept",
		`<body><a hx-get="/dataset/?page=2" hx-target="#r">More</a>`, `<body>{B}<a hx-get="/dataset/?page=2" hx-target="#r">More</a>`},
	{"nested elements in a control",
		`<body><div hx-post="/x"><div><p>a</p><br></div><img src=a></div><p>after</p>`, `<body>{B}{C}<p>after</p>`},
	{"a p control ends at its own end tag",
		`<body><div><p hx-post="/x">a<i>b</i></p>after</div>`, `<body>{B}<div>{C}after</div>`},
	{"a stray p end tag does not end a control",
		`<body><a hx-post="/x">a</p>b</a>after`, `<body>{B}{C}after`},
	{"an unclosed control ends with its parent",
		`<body><div><a hx-post="/x">a</div><p>after`, `<body>{B}<div>{C}</div><p>after`},
	{"a form end tag in a control is kept",
		`<body><form action=/dataset/><span hx-post="/x">a</form><p>after`, `<body>{B}<form action=/dataset/>{C}</form><p>after`},
	{"body end tag ends a control",
		`<body><a hx-post="/x">a</body></html>`, `<body>{B}{C}</body></html>`},
	{"control cut by the end of input",
		`<body><a hx-post="/x">a`, `<body>{B}{C}`},
	{"the body is never a control",
		`<html><body hx-post="/x"><p>a`, `<html><body hx-post="/x">{B}<p>a`},
	{"a control in a hidden form goes with the form",
		`<body><form method=post action=/x><a hx-post="/y">a</a></form>after`, `<body>{B}{N}after`},
	{"confirm-action link outside a form",
		`<body><a class="btn btn-danger" href="/dataset/collaborators/x/delete/bob" data-module="confirm-action" data-module-content="Sure?"><i class="fa fa-times"></i></a>after`,
		`<body>{B}{C}after`},
	{"confirm-action among other modules",
		`<body><a href="/x" data-module="tooltip  confirm-action">x</a>`, `<body>{B}{C}`},
	{"confirm-action with an entity in the value",
		`<body><a href="/x" data-module="confirm&#45;action">x</a>`, `<body>{B}{C}`},
	{"confirm-action without href posts to the page",
		`<body><button data-module="confirm-action" type=button>Reset</button>`, `<body>{B}{C}`},
	{"confirm-action to a passing URL is kept",
		`<body><a href="/user/_logout" data-module="confirm-action">Log out</a>`, `<body>{B}<a href="/user/_logout" data-module="confirm-action">Log out</a>`},
	{"other modules are kept",
		`<body><a href="/x" data-module="confirm-action-not" data-module-content="confirm-action">x</a>`,
		`<body>{B}<a href="/x" data-module="confirm-action-not" data-module-content="confirm-action">x</a>`},
	{"hx- in a value is not an attribute",
		`<body><a class="hx-post" title='x hx-post="/x"'>x</a>`, `<body>{B}<a class="hx-post" title='x hx-post="/x"'>x</a>`},
	{"control before the body in a document",
		`<html><a hx-post="/x">a</a><p>b`, `<html>{B}{C}<p>b`},
	{"htmx sends a submitter's formmethod put, patch or delete as it is",
		`<body><form hx-get=/dataset/><button formmethod=DELETE>x</button><input type=submit formmethod=patch><button formmethod=put form=nowhere>y</button><button formmethod=get>z</button></form>`,
		`<body>{B}<form hx-get=/dataset/>{S}<button disabled formmethod=DELETE>x</button>{S}<input disabled type=submit formmethod=patch>{S}<button disabled formmethod=put form=nowhere>y</button><button formmethod=get>z</button></form>`},
	{"control in a fragment",
		`<a hx-post="/x">a</a><p>b`, `{C}<p>b`},
}

func TestControls(t *testing.T) {
	opts := Options{Notice: testNotice, WouldRefuse: gatePolicy("https://data.example.org/dataset/x")}
	r := strings.NewReplacer("{B}", testBanner, "{N}", testFormNotice, "{C}", testControlNotice, "{S}", submitNoticeAt(testNotice))
	for _, c := range controlCases {
		t.Run(c.name, func(t *testing.T) {
			want := r.Replace(c.want)
			assertSame(t, "whole", rewrite(t, strings.NewReader(c.in), opts), want)
			assertSame(t, "one byte per Read", rewrite(t, iotest.OneByteReader(strings.NewReader(c.in)), opts), want)
			ref, err := io.ReadAll(newReference(strings.NewReader(c.in), opts, testNow, maxTokenBytes))
			if err != nil {
				t.Fatal(err)
			}
			assertSame(t, "reference", string(ref), want)
			for j := range uint64(8) {
				runDiff(t, c.in, j)
			}
		})
	}
}

// TestControlsNilWouldRefuse: with nothing refused, no control is hidden.
func TestControlsNilWouldRefuse(t *testing.T) {
	for _, c := range controlCases {
		got := rewrite(t, strings.NewReader(c.in), Options{Notice: testNotice})
		if strings.Replace(got, testBanner, "", 1) != c.in {
			t.Errorf("%s: output is not the input and a banner: %q", c.name, got)
		}
	}
}

// TestHTMXWouldRefuseArguments: hx-post's value is asked about as a POST's
// action, after the form's own method and action; PUT, PATCH and DELETE
// are never asked about.
func TestHTMXWouldRefuseArguments(t *testing.T) {
	var asked []string
	opts := Options{Notice: testNotice, WouldRefuse: func(method, action string) bool {
		asked = append(asked, method+" "+action)
		return false
	}}
	in := `<body><form method=post action=/a hx-post=/b data-hx-post=/c></form>` +
		`<form hx-delete=/d hx-post=/e></form>` +
		`<a hx-post="/f" data-module="confirm-action" href="/g">x</a>` +
		`<a data-module="confirm-action">y</a>`
	rewrite(t, strings.NewReader(in), opts)
	want := "[POST /a POST /b POST /c POST /f POST /g POST ]"
	if got := "[" + strings.Join(asked, " ") + "]"; got != want {
		t.Errorf("asked %s, want %s", got, want)
	}
}

// TestMayBeControl: the prefilter never misses a tag that controlRefused
// refuses (checked on the cases above by the reference rewriter, which has
// no prefilter) and lets the common tags through.
func TestMayBeControl(t *testing.T) {
	for _, tag := range []string{`<a hx-post=/x>`, `<a HX-DELETE=/x>`, `<a data-hx-patch=/x>`, `<a hx-put=/x>`, `<a data-module="confirm-action">`, `<a DATA-MODULE=confirm-action>`, `<a data-module="confirm&#45;action">`, `<a data-module=tooltip class="confirm-action">`} {
		if !mayBeControl([]byte(tag)) {
			t.Errorf("mayBeControl(%q) = false", tag)
		}
	}
	for _, tag := range []string{`<a href="/dataset/x">`, `<div class="module-content">`, `<a hx-get="/x" hx-target="#r" hx-boost="true">`, `<input name="q">`,
		`<select id="field-license" name="license_id" data-module="autocomplete">`} {
		if mayBeControl([]byte(tag)) {
			t.Errorf("mayBeControl(%q) = true", tag)
		}
	}
}

// TestControlsMatchReference runs odd control markup through the
// rewriter and the reference with many token caps, refusal choices and
// read sizes (runDiff).
func TestControlsMatchReference(t *testing.T) {
	for i, in := range []string{
		`<body><textarea hx-post=/x></div></textarea>after`,
		`<body><template><a hx-post=/x>t</a></template>after`,
		`<body><a hx-post=/x><a href=/y>inner</a>tail</a>after</p>`,
		`<body><select><option hx-post=/x>a<option>b</select>after`,
		`<body><div hx-post=/x><form method=post action=/y></form>z</div>after`,
		`<body><form action=/q><p hx-delete=/x>a<p>b</p>c</form>d`,
		`<body><a data-module="confirm-action" href=/x hx-get=/y>a</a><a/hx-post=/z/>b</a>`,
		`<body><svg><a hx-post=/x><path/></a></svg><math><mi hx-put=/y>x</mi></math>`,
		`<body><button hx-post=/x form=f formaction=/y formmethod=post>a</button><form id=f action=/z></form>`,
		`<body><input type=submit formmethod=post hx-post=/user/login formaction=/dataset/new>`,
	} {
		for j := range uint64(40) {
			runDiff(t, in, uint64(i)<<32|j)
		}
	}
}
