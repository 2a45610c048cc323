package annotate

import (
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"testing/iotest"
	"time"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden from the current output")

// testNow and testNotice fix the banner's text so outputs are comparable.
var (
	testNow    = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	testUntil  = testNow.Add(90 * time.Minute)
	testNotice = Notice{
		SiteTitle: "Example Open Data",
		Message:   "Upgrading to CKAN 2.11.\nBack soon.",
		Until:     &testUntil,
		Mode:      "read-only",
	}
	testBanner     = bannerAt(testNotice, testNow)
	testFormNotice = formNoticeAt(testNotice, testNow)

	// testWindow is a window announced 3h20m ahead, for 2h.
	testWindow = Window{
		At:      testNow.Add(3*time.Hour + 20*time.Minute),
		End:     testNow.Add(5*time.Hour + 20*time.Minute),
		Mode:    "read-only",
		Message: "Upgrading to CKAN 2.12 <soon>.",
	}
	testScript = "/-/ckanops/notice.js"
)

// policy is a stand-in for the gate's FormWouldBeRefused: the action is
// resolved against the page's URL, and every POST is refused except the
// login and logout routes (docs/architecture.md, "What counts as a write").
func policy(pageURL string) func(method, action string) bool {
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
		case "/user/login", "/login_generic", "/user/_logout", "/user/logout":
			return false
		}
		return true
	}
}

func TestMain(m *testing.M) {
	clock = func() time.Time { return testNow }
	os.Exit(m.Run())
}

func testOptions() Options {
	return Options{Notice: testNotice, WouldRefuse: policy("https://data.example.org/dataset/edit/climate-observations")}
}

func rewrite(t testing.TB, r io.Reader, opts Options) string {
	t.Helper()
	w := newRewriter(r, opts, testNow, maxTokenBytes)
	out, err := io.ReadAll(w)
	if err != nil {
		t.Fatalf("rewrite: %v", err)
	}
	if err := w.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	return string(out)
}

// span names a stretch of the input that the rewriter must replace by the
// form notice: from the first occurrence of from (after the previous span) to
// the end of the first occurrence of to after it, or to its start when keepTo
// (the tag that ended an unclosed form stays), or to the end of the input
// when to is empty.
type span struct {
	from, to string
	keepTo   bool
}

// placement says where the banner goes: "body" (right after the first
// <body ...> tag), "before:<text>" or "none".
type pageCase struct {
	file   string
	banner string
	spans  []span
}

var pageCases = []pageCase{
	{"dataset_edit.html", "body", []span{
		{from: `<form id="dataset-edit"`, to: "</div>\n</form>"}, // the textarea holds a "</form>" too
		{from: `<form class="form-inline form-select lang-select"`, to: `</form>`},
	}},
	{"resource_new.html", "body", []span{{from: `<form id="resource-edit"`, to: `</form>`}}},
	{"login.html", "body", nil},
	{"listing.html", "body", []span{{from: `<form class="form-inline form-select lang-select"`, to: `</form>`}}},
	{"script_form.html", "body", []span{
		{from: `<form method="post" action="/dataset/new"><input name="t">`, to: `</form>`},
		{from: `<form method="post" action="/dataset/new"><input name="after-scripts">`, to: `</form>`},
	}},
	{"uppercase.html", "body", []span{{from: `<FORM METHOD=POST ACTION=/organization/new`, to: `</FORM>`}}},
	{"unquoted.html", "body", []span{
		{from: `<form method=post action=/group/new`, to: `</form>`},
		{from: `<form method=post><input name=no-action`, to: `</form>`},
		{from: `<form method="&#80;OST"`, to: `</form>`},
		{from: `<form method=post action=/dataset/new method=get>`, to: `</form>`},
	}},
	{"missing_form_end.html", "body", []span{
		{from: `<form id="dataset-edit"`, to: "</div>\n<div class=\"sidebar\">", keepTo: true},
		{from: `<form method="post" action="/group/member_new/x">`, to: `</section>`, keepTo: true},
		{from: `<form method="post" action="/organization/edit/y">`, to: `</body>`, keepTo: true},
	}},
	{"nested_forms.html", "body", []span{
		{from: `<form id="outer"`, to: `</form>`},
		{from: `<form id="inner-post"`, to: `</form>`},
	}},
	{"unclosed_tags.html", "body", []span{{from: `<form method="post" action="/dataset/new">`, to: `</form>`}}},
	{"unclosed_title.html", "none", nil},
	{"no_body.html", `before:<div class="main">`, []span{{from: `<form method="post" action="/dataset/new">`, to: `</form>`}}},
	{"no_body_text.html", "before:\nPlain text", nil},
	{"fragment.html", "none", []span{{from: `<form method="post" action="/dataset/follow/`, to: `</form>`}}},
	{"frameset.html", "none", nil},
}

var bodyTag = regexp.MustCompile(`(?i)<body[^>]*>`)

// expected builds the output from the input by hand: the banner inserted
// where the case says and each span replaced by the form notice; every other
// byte is the input's.
func expected(t testing.TB, in string, c pageCase) string {
	t.Helper()
	type edit struct {
		at, end int
		text    string
	}
	var edits []edit
	switch {
	case c.banner == "body":
		loc := bodyTag.FindStringIndex(in)
		if loc == nil {
			t.Fatalf("%s: no <body> tag", c.file)
		}
		edits = append(edits, edit{loc[1], loc[1], testBanner})
	case strings.HasPrefix(c.banner, "before:"):
		i := strings.Index(in, strings.TrimPrefix(c.banner, "before:"))
		if i < 0 {
			t.Fatalf("%s: banner marker not found", c.file)
		}
		edits = append(edits, edit{i, i, testBanner})
	case c.banner != "none":
		t.Fatalf("bad banner placement %q", c.banner)
	}
	cursor := 0
	for _, s := range c.spans {
		i := strings.Index(in[cursor:], s.from)
		if i < 0 {
			t.Fatalf("%s: span start %q not found", c.file, s.from)
		}
		start := cursor + i
		end := len(in)
		if s.to != "" {
			j := strings.Index(in[start:], s.to)
			if j < 0 {
				t.Fatalf("%s: span end %q not found", c.file, s.to)
			}
			end = start + j
			if !s.keepTo {
				end += len(s.to)
			}
		}
		edits = append(edits, edit{start, end, testFormNotice})
		cursor = end
	}
	// Apply in input order (the banner may come before or after a span).
	for i := 1; i < len(edits); i++ {
		for j := i; j > 0 && edits[j].at < edits[j-1].at; j-- {
			edits[j], edits[j-1] = edits[j-1], edits[j]
		}
	}
	var b strings.Builder
	prev := 0
	for _, e := range edits {
		b.WriteString(in[prev:e.at])
		b.WriteString(e.text)
		prev = e.end
	}
	b.WriteString(in[prev:])
	return b.String()
}

func readPage(t testing.TB, file string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", file))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// assertSame fails with the first difference and some context around it.
func assertSame(t testing.TB, what, got, want string) {
	t.Helper()
	if got == want {
		return
	}
	i := 0
	for i < len(got) && i < len(want) && got[i] == want[i] {
		i++
	}
	lo := max(0, i-80)
	t.Fatalf("%s: output differs at byte %d (got %d bytes, want %d)\n got: %q\nwant: %q",
		what, i, len(got), len(want), got[lo:min(len(got), i+120)], want[lo:min(len(want), i+120)])
}

func TestPages(t *testing.T) {
	for _, c := range pageCases {
		t.Run(c.file, func(t *testing.T) {
			in := readPage(t, c.file)
			want := expected(t, in, c)
			got := rewrite(t, strings.NewReader(in), testOptions())
			assertSame(t, "whole input", got, want)

			// The same page arriving one byte at a time, or in odd pieces,
			// and read back one byte at a time.
			assertSame(t, "one byte per Read", rewrite(t, iotest.OneByteReader(strings.NewReader(in)), testOptions()), want)
			assertSame(t, "half reads", rewrite(t, iotest.HalfReader(strings.NewReader(in)), testOptions()), want)
			w := newRewriter(strings.NewReader(in), testOptions(), testNow, maxTokenBytes)
			small, err := io.ReadAll(iotest.OneByteReader(w))
			if err != nil {
				t.Fatal(err)
			}
			assertSame(t, "read back one byte at a time", string(small), want)

			if n := strings.Count(got, `class="ckanops-banner"`); c.banner == "none" && n != 0 || c.banner != "none" && n != 1 {
				t.Errorf("%d banners", n)
			}
			if n := strings.Count(got, `class="ckanops-form-notice"`); n != len(c.spans) {
				t.Errorf("%d form notices, want %d", n, len(c.spans))
			}
		})
	}
}

// TestFormsKept checks, independently of the expected-output builder, that
// the GET and login forms come out exactly as they went in.
func TestFormsKept(t *testing.T) {
	kept := map[string][]string{
		"login.html": {
			"<form action=\"/user/login\" method=\"post\" class=\"form-horizontal\">",
			"<form class=\"d-flex site-search\" action=\"/dataset/\" method=\"get\">",
		},
		"listing.html":     {`<form id="dataset-search-form" class="search-form" method="get" data-module="select-switch">`},
		"uppercase.html":   {`<FORM METHOD=get ACTION=/dataset/><INPUT NAME=q></FORM>`, `<Form Method="Post" Action='/user/login'><Input Name=login></Form>`},
		"unquoted.html":    {`<form method=post action=/user/login><input name=login><input type=password name=password></form>`, `<form method="post " action=/dataset/new><input name=invalid-method-is-get></form>`},
		"script_form.html": {"<form method=\"get\" action=\"/dataset/\">\n  <textarea name=\"q\"><form method=\"post\" action=\"/x\"></form></textarea>\n  <button>Search</button>\n</form>"},
	}
	for file, forms := range kept {
		in := readPage(t, file)
		got := rewrite(t, strings.NewReader(in), testOptions())
		for _, f := range forms {
			if !strings.Contains(in, f) {
				t.Fatalf("%s: test form not in input: %q", file, f)
			}
			if !strings.Contains(got, f) {
				t.Errorf("%s: form not kept byte for byte: %q", file, f)
			}
		}
	}
}

// TestWouldRefuseArguments: the rewriter asks about POST forms only, with
// the action as written (entities decoded, not resolved).
func TestWouldRefuseArguments(t *testing.T) {
	var asked []string
	opts := Options{Notice: testNotice, WouldRefuse: func(method, action string) bool {
		asked = append(asked, method+" "+action)
		return action != "/user/login"
	}}
	rewrite(t, strings.NewReader(readPage(t, "unquoted.html")), opts)
	want := []string{"POST /group/new", "POST /user/login", "POST ", "POST /dataset/new", "POST /dataset/new"}
	if fmt.Sprint(asked) != fmt.Sprint(want) {
		t.Errorf("asked %q, want %q", asked, want)
	}
}

func TestNilWouldRefuseKeepsForms(t *testing.T) {
	in := readPage(t, "dataset_edit.html")
	got := rewrite(t, strings.NewReader(in), Options{Notice: testNotice})
	assertSame(t, "nil WouldRefuse", got, expected(t, in, pageCase{file: "dataset_edit.html", banner: "body"}))
}

// TestSmallCases covers the edges one at a time; {B} stands for the banner
// and {N} for the form notice in want. Every POST form is refused here.
func TestSmallCases(t *testing.T) {
	cases := []struct{ name, in, want string }{
		{"empty", "", ""},
		{"text only is a fragment", "hello", "hello"},
		{"body with > in an attribute", `<!DOCTYPE html><body data-x="a>b" class=y>x</body>`, `<!DOCTYPE html><body data-x="a>b" class=y>{B}x</body>`},
		{"uppercase body", "<HTML><BODY>x", "<HTML><BODY>{B}x"},
		{"self-closing body", "<html><body/>x", "<html><body/>{B}x"},
		{"two bodies, one banner", "<html><body>a<body>b", "<html><body>{B}a<body>b"},
		{"body in a comment does not count", "<html><!-- <body> --><body>x", "<html><!-- <body> --><body>{B}x"},
		{"body in a script string does not count", `<html><head><script>"<body>"</script></head><body>x`, `<html><head><script>"<body>"</script></head><body>{B}x`},
		{"byte order mark then doctype", "\ufeff<!DOCTYPE html><p>x", "\ufeff<!DOCTYPE html>{B}<p>x"},
		{"blank text before head content", "<html>\n  <meta charset=utf-8>\n  <div>", "<html>\n  <meta charset=utf-8>\n  {B}<div>"},
		{"title makes a document", "<title>t</title>\n<p>x", "<title>t</title>\n{B}<p>x"},
		{"template content is not the body", "<html><template><p>t</p></template><p>x", "<html><template><p>t</p></template>{B}<p>x"},
		{"refused form first in a bodiless document", `<html><form method=post action=/x><input></form>`, `<html>{B}{N}`},
		{"self-closing form tag still opens a form", `<body><form method=post action=/x /><input name=a></form><p>after`, `<body>{B}{N}<p>after`},
		{"form cut by the end of input", `<body><form method=post action=/x><input name=a>`, `<body>{B}{N}`},
		{"form without end, body ends it", `<body><form method=post action=/x><p>a</body></html>`, `<body>{B}{N}</body></html>`},
		{"form without end, html end tag ends it", `<body><form method=post action=/x><p>a</html>`, `<body>{B}{N}</html>`},
		{"a body start tag ends hiding", `<div><form method=post action=/x><body>after`, `<div>{N}<body>after`},
		{"stray end tags inside the form", `<body><div><form method=post action=/x></p></br></img><input></input></form><i>kept</i></div>`, `<body>{B}<div>{N}<i>kept</i></div>`},
		{"parent end tag ends an unclosed form", `<body><div><form method=post action=/x><span>a</div><p>shown`, `<body>{B}<div>{N}</div><p>shown`},
		{"custom elements are tracked by name", `<body><x-a><form method=post action=/x><x-b>in</x-b></x-a>out`, `<body>{B}<x-a>{N}</x-a>out`},
		{"textarea with an end tag in it", `<body><form method=post action=/x><textarea></form></div></textarea></form>out`, `<body>{B}{N}out`},
		{"script in a form", `<body><form method=post action=/x><script>"</form></body>"</script></form>out`, `<body>{B}{N}out`},
		{"nested form, first end tag closes", `<body><form method=post action=/x><form method=get action=/y><i>in</i></form><b>out</b></form>`, `<body>{B}{N}<b>out</b></form>`},
		{"tag cut by the end of input", `<body><p>a<div cla`, `<body>{B}<p>a<div cla`},
		{"comment cut by the end of input", `<body><!-- a`, `<body>{B}<!-- a`},
		{"end tag cut", `<body></di`, `<body>{B}</di`},
		{"lone lt", `<body>a < b <3 </ > </>`, `<body>{B}a < b <3 </ > </>`},
		{"nul bytes pass", "<body>a\x00b<p\x00>", "<body>{B}a\x00b<p\x00>"},
		{"cdata is a bogus comment", `<body><![CDATA[<form method=post action=/x>]]>`, `<body>{B}<![CDATA[<form method=post action=/x>]]>`},
		{"plaintext swallows the rest", `<body><plaintext><form method=post action=/x>`, `<body>{B}<plaintext><form method=post action=/x>`},
		{"processing instruction", `<?xml version="1.0"?><html><body>x`, `<?xml version="1.0"?><html><body>{B}x`},
		{"get form in a fragment", `<form action=/dataset/><input name=q></form>`, `<form action=/dataset/><input name=q></form>`},
		{"dialog method is not post", `<body><form method=dialog action=/x></form>`, `<body>{B}<form method=dialog action=/x></form>`},
		{"frameset page", `<html><frameset><frame src=a></frameset><body>x`, `<html><frameset><frame src=a></frameset><body>x`},
	}
	refuseAll := Options{Notice: testNotice, WouldRefuse: func(string, string) bool { return true }}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			want := strings.NewReplacer("{B}", testBanner, "{N}", testFormNotice).Replace(c.want)
			assertSame(t, "whole", rewrite(t, strings.NewReader(c.in), refuseAll), want)
			assertSame(t, "one byte per Read", rewrite(t, iotest.OneByteReader(strings.NewReader(c.in)), refuseAll), want)
		})
	}
}

// TestGolden pins the whole output of a few pages, banner and notice text
// included; run with -update after an intended change and review the diff.
func TestGolden(t *testing.T) {
	for _, file := range []string{"dataset_edit.html", "missing_form_end.html", "script_form.html", "formmethod.html"} {
		t.Run(file, func(t *testing.T) {
			got := rewrite(t, strings.NewReader(readPage(t, file)), testOptions())
			golden := filepath.Join("testdata", strings.TrimSuffix(file, ".html")+".golden")
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

// TestLongToken: a token longer than the cap stops the rewriting; the rest of
// the page is copied through as it is, never dropped.
func TestLongToken(t *testing.T) {
	const limit = 64
	long := strings.Repeat("x", 200)
	cases := []struct{ name, in, want string }{
		{"long text before the body: no banner, no rewriting after",
			"<html><head><script>" + long + "</script></head><body><form method=post action=/x></form>",
			"<html><head><script>" + long + "</script></head><body><form method=post action=/x></form>"},
		{"long text after the banner",
			"<html><body><p>" + long + "</p><form method=post action=/x></form><p>end",
			"<html><body>{B}<p>" + long + "</p><form method=post action=/x></form><p>end"},
		{"long tag",
			"<html><body><img src=\"data:" + long + "\"><p>end",
			"<html><body>{B}<img src=\"data:" + long + "\"><p>end"},
		// Inside a refused form the part of the long token already read is
		// dropped and the rest copied through: the page is never swallowed.
		{"long tag in a refused form",
			"<html><body><form method=post action=/x><img src=\"data:" + long + "\"></form><p>end",
			"<html><body>{B}{N}" + ("<img src=\"data:" + long + "\">")[limit:] + "</form><p>end"},
		{"long textarea in a refused form",
			"<html><body><form method=post action=/x><textarea>" + long + "</textarea></form><p>end",
			"<html><body>{B}{N}" + long[limit:] + "</textarea></form><p>end"},
	}
	refuseAll := Options{Notice: testNotice, WouldRefuse: func(string, string) bool { return true }}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			want := strings.NewReplacer("{B}", testBanner, "{N}", testFormNotice).Replace(c.want)
			for _, r := range []io.Reader{strings.NewReader(c.in), iotest.OneByteReader(strings.NewReader(c.in))} {
				w := newRewriter(r, refuseAll, testNow, limit)
				got, err := io.ReadAll(w)
				if err != nil {
					t.Fatal(err)
				}
				assertSame(t, c.name, string(got), want)
			}
		})
	}
}

// TestReadErrors: an error from the source comes out of Read (after the
// bytes before it) and is not turned into a clean end of page.
func TestReadErrors(t *testing.T) {
	boom := fmt.Errorf("upstream broke")
	src := io.MultiReader(strings.NewReader("<html><body><p>part"), iotest.ErrReader(boom))
	w := NewReader(src, testOptions())
	got, err := io.ReadAll(w)
	if err != boom {
		t.Fatalf("err = %v, want %v", err, boom)
	}
	if !strings.HasPrefix(string(got), "<html><body><div role=\"status\"") || !strings.HasSuffix(string(got), "<p>part") {
		t.Errorf("output before the error: %q", got)
	}
	if n, err := w.Read(make([]byte, 10)); n != 0 || err != boom {
		t.Errorf("Read after the error = %d, %v", n, err)
	}
}

type closeRecorder struct {
	io.Reader
	closed int
}

func (c *closeRecorder) Close() error { c.closed++; return nil }

func TestCloseReleasesSource(t *testing.T) {
	src := &closeRecorder{Reader: strings.NewReader("<html><body>x")}
	w := NewReader(src, testOptions())
	if _, err := w.Read(make([]byte, 4)); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if src.closed != 1 {
		t.Errorf("source closed %d times, want 1", src.closed)
	}
	if _, err := w.Read(make([]byte, 4)); err == nil {
		t.Error("Read after Close succeeded")
	}
}

// FuzzRewrite checks on arbitrary input that: with nothing refused the
// output is the input plus at most one banner; the output is the reference
// rewriter's (reference_test.go) and does not depend on how the input is
// split into reads; a tiny token cap only stops rewriting.
func FuzzRewrite(f *testing.F) {
	for _, c := range pageCases {
		b, err := os.ReadFile(filepath.Join("testdata", c.file))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(string(b))
	}
	f.Add("<body><form method=post action=/x><div></span></form>")
	f.Add(readPage(f, "formmethod.html"))
	f.Add("<body><form action=/x><button formmethod=post>a</button><input type=submit formaction=/y formmethod=post></form>")
	f.Fuzz(func(t *testing.T, in string) {
		keep := Options{Notice: testNotice}
		got := rewrite(t, strings.NewReader(in), keep)
		if strings.Count(got, testBanner) > 1 || strings.Replace(got, testBanner, "", 1) != in {
			t.Fatalf("with nothing refused, output is not input + one banner:\n in: %q\nout: %q", in, got)
		}
		refuseAll := Options{Notice: testNotice, WouldRefuse: func(string, string) bool { return true }}
		whole := rewrite(t, strings.NewReader(in), refuseAll)
		ref, err := io.ReadAll(newReference(strings.NewReader(in), refuseAll, testNow, maxTokenBytes))
		if err != nil {
			t.Fatal(err)
		}
		if whole != string(ref) {
			t.Fatalf("output differs from the reference rewriter's:\n in: %q\n got: %q\nwant: %q", in, whole, ref)
		}
		// One-byte reads make the tokenizer copy the current token on every
		// byte (quadratic in the token's length): keep fuzzed inputs short.
		r := iotest.OneByteReader(strings.NewReader(in))
		if len(in) > 4096 {
			r = iotest.HalfReader(strings.NewReader(in))
		}
		split := rewrite(t, r, refuseAll)
		if whole != split {
			t.Fatalf("output depends on read sizes:\n in: %q\nwhole: %q\nsplit: %q", in, whole, split)
		}
		w := newRewriter(iotest.HalfReader(strings.NewReader(in)), keep, testNow, 16)
		capped, err := io.ReadAll(w)
		if err != nil {
			t.Fatal(err)
		}
		if string(capped) != in && strings.Replace(string(capped), testBanner, "", 1) != in {
			t.Fatalf("with a tiny token cap, bytes were lost:\n in: %q\nout: %q", in, capped)
		}
	})
}

// streamSource hands out its chunks one per Read and records whether the
// rewriter asked for the next chunk before it had returned what it could
// already produce.
type streamSource struct {
	chunks   []string
	returned *bool
	early    bool
}

func (s *streamSource) Read(p []byte) (int, error) {
	if len(s.chunks) == 0 {
		return 0, io.EOF
	}
	if len(s.chunks) == 1 && !*s.returned {
		s.early = true
	}
	n := copy(p, s.chunks[0])
	s.chunks = s.chunks[1:]
	return n, nil
}

// TestStreams: the rewriter hands over what it can as soon as it can,
// instead of waiting on the upstream for more (a slow upstream's first bytes
// reach the browser).
func TestStreams(t *testing.T) {
	var returned bool
	src := &streamSource{chunks: []string{"<html><body><p>first</p>", "<p>second</p>"}, returned: &returned}
	w := newRewriter(src, testOptions(), testNow, maxTokenBytes)
	buf := make([]byte, 64<<10)
	n, err := w.Read(buf)
	returned = true
	if err != nil || !strings.HasSuffix(string(buf[:n]), "<p>first</p>") {
		t.Fatalf("first Read = %q, %v", buf[:n], err)
	}
	if src.early {
		t.Error("the rewriter waited for the upstream's next chunk before returning the first")
	}
	rest, err := io.ReadAll(w)
	if err != nil || string(rest) != "<p>second</p>" {
		t.Errorf("rest = %q, %v", rest, err)
	}
}
