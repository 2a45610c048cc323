package annotate

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"golang.org/x/net/html"
	"golang.org/x/net/html/atom"
)

// announceOptions announce testWindow on a page at pageURL, with the
// notice script.
func announceOptions(pageURL string) Options {
	return Options{Notice: testNotice, WouldRefuse: gatePolicy(pageURL), Announce: &testWindow, Script: testScript}
}

// testAnnounce is what goes after <body> with announceOptions: the
// announce banner and the script tag.
var testAnnounce = announceAt(testNotice.SiteTitle, testWindow, testNow) +
	`<script src="/-/ckanops/notice.js" defer data-ckanops-poll="30"></script>`

func TestAnnounceBanner(t *testing.T) {
	b := announceAt("Data Portal", testWindow, testNow)
	for _, want := range []string{
		`<div role="status" class="ckanops-banner" data-ckanops-mode="announce" style="`,
		`<strong>Data Portal will be read-only for maintenance</strong> from <time datetime="2025-06-01T15:20:00Z">2025-06-01T15:20:00Z</time>` +
			` for 2h (ends <time datetime="2025-06-01T17:20:00Z">2025-06-01T17:20:00Z</time>)`,
		`<span class="ckanops-eta">(starts in 3h20m)</span>`,
		`>Upgrading to CKAN 2.12 &lt;soon&gt;.</span>`,
		`browse and download data`,
	} {
		if !strings.Contains(b, want) {
			t.Errorf("announce banner lacks %q:\n%s", want, b)
		}
	}
	if !strings.HasSuffix(b, "</div>") || strings.Count(b, "<div") != 1 {
		t.Errorf("announce banner is not one <div>:\n%s", b)
	}

	down := Window{At: testNow.Add(90 * time.Minute), End: testNow.Add(90*time.Minute + 26*time.Hour), Mode: "down"}
	b = announceAt("", down, testNow)
	for _, want := range []string{`<strong>This site will be down for maintenance</strong>`, ` for 1d2h (ends `, `(starts in 1h30m)`, `will not be available`} {
		if !strings.Contains(b, want) {
			t.Errorf("down announce banner lacks %q:\n%s", want, b)
		}
	}
	if strings.Contains(b, "ckanops-message") {
		t.Errorf("an empty message is shown:\n%s", b)
	}

	// No end (or an end before the start): no length, no end. A start
	// that has passed (the switch is late): "starts shortly".
	b = announceAt("X", Window{At: testNow.Add(-time.Second), Mode: "read-only"}, testNow)
	if strings.Contains(b, "</time> for ") || strings.Contains(b, "(ends") || !strings.Contains(b, "(starts shortly)") {
		t.Errorf("announce banner without an end:\n%s", b)
	}
}

func TestOverrunBanner(t *testing.T) {
	until := testNow.Add(-20 * time.Minute)
	n := Notice{SiteTitle: "Data Portal", Message: "Upgrade", Until: &until, Mode: "read-only", Overrun: true}
	b := bannerAt(n, testNow)
	want := `<span class="ckanops-eta">Expected back <time datetime="2025-06-01T11:40:00Z">2025-06-01T11:40:00Z</time> &#8212; the work is taking longer than planned.</span></div>`
	if !strings.Contains(b, want) || strings.Contains(b, "shortly") {
		t.Errorf("overrun banner lacks %q:\n%s", want, b)
	}
	if !strings.Contains(b, `data-ckanops-mode="read-only"`) {
		t.Errorf("overrun banner's mode:\n%s", b)
	}
	// The form notice says so too.
	if f := formNoticeAt(n, testNow); !strings.Contains(f, "taking longer than planned") {
		t.Errorf("overrun form notice:\n%s", f)
	}
	// Overrun without an ETA.
	n.Until = nil
	if b := bannerAt(n, testNow); !strings.Contains(b, `<span class="ckanops-eta">The work is taking longer than planned.</span>`) {
		t.Errorf("overrun banner without an ETA:\n%s", b)
	}
	// Not overrun: unchanged.
	if b := bannerAt(testNotice, testNow); strings.Contains(b, "longer") || !strings.Contains(b, "(in 1h30m)") {
		t.Errorf("banner:\n%s", b)
	}
}

func TestScriptTag(t *testing.T) {
	for _, c := range []struct {
		poll time.Duration
		want string
	}{
		{0, "30"}, {time.Second, "1"}, {100 * time.Millisecond, "1"}, {1500 * time.Millisecond, "2"},
		{5 * time.Minute, "300"}, {-time.Second, "1"},
	} {
		got := scriptTag("/data/-/ckanops/notice.js", c.poll)
		want := `<script src="/data/-/ckanops/notice.js" defer data-ckanops-poll="` + c.want + `"></script>`
		if got != want {
			t.Errorf("poll %v: %s, want %s", c.poll, got, want)
		}
	}
	// Right after the banner, in both modes; never without a banner.
	opts := testOptions()
	opts.Script, opts.ScriptPoll = "/-/ckanops/notice.js", time.Second
	tag := `<script src="/-/ckanops/notice.js" defer data-ckanops-poll="1"></script>`
	for _, c := range []struct{ in, want string }{
		{`<!DOCTYPE html><html><head><title>t</title></head><body class=x><p>a</p></body></html>`,
			`<!DOCTYPE html><html><head><title>t</title></head><body class=x>{B}` + tag + `<p>a</p></body></html>`},
		{`<html><p>no body tag`, `<html>{B}` + tag + `<p>no body tag`},
		{`<p>a fragment gets neither`, `<p>a fragment gets neither`},
		{`<html><frameset><frame src=a></frameset></html>`, `<html><frameset><frame src=a></frameset></html>`},
	} {
		want := strings.ReplaceAll(c.want, "{B}", testBanner)
		assertSame(t, c.in, rewrite(t, strings.NewReader(c.in), opts), want)
	}
	// The URL is escaped (the gate builds it from its root path).
	if got := scriptTag(`/x"><script>alert(1)</script>`, 0); strings.Count(got, "<script") != 1 || !strings.Contains(got, `src="/x&#34;&gt;&lt;script&gt;alert(1)&lt;/script&gt;"`) {
		t.Errorf("script URL not escaped: %s", got)
	}
}

// announceCases: with Announce, nothing is hidden or disabled; what would
// be refused is marked ({W} is " data-ckanops-write"). {A} is testAnnounce.
var announceCases = []struct{ name, in, want string }{
	{"refused form: marked, contents kept",
		`<body><form method=post action=/dataset/edit/x><input name=title value="a"><button>Save</button></form><p>after`,
		`<body>{A}<form{W} method=post action=/dataset/edit/x><input name=title value="a"><button>Save</button></form><p>after`},
	{"kept forms are not marked",
		`<body><form action="/user/login" method="post"><input name=login></form><form action=/dataset/ method=get><input name=q></form><form class="lang-select" action="/util/redirect" method="POST"></form>`,
		`<body>{A}<form action="/user/login" method="post"><input name=login></form><form action=/dataset/ method=get><input name=q></form><form class="lang-select" action="/util/redirect" method="POST"></form>`},
	{"htmx form",
		`<body><form hx-post="/user/x/api-tokens"><input name=name><button>Create</button></form>`,
		`<body>{A}<form{W} hx-post="/user/x/api-tokens"><input name=name><button>Create</button></form>`},
	{"uppercase, self-closing and slash-separated tags",
		`<BODY><FORM METHOD=POST ACTION=/x/><A/HX-POST=/y>f</A><INPUT TYPE=SUBMIT FORMACTION=/z/></FORM>`,
		`<BODY>{A}<FORM{W} METHOD=POST ACTION=/x/><A{W}/HX-POST=/y>f</A><INPUT{W} TYPE=SUBMIT FORMACTION=/z/></FORM>`},
	{"controls: marked, contents kept",
		`<body><div><a class="btn" hx-post="/dataset/follow/1"><i></i> Follow</a> <a href="/dataset/collaborators/x/delete/bob" data-module="confirm-action">Delete</a></div>`,
		`<body>{A}<div><a{W} class="btn" hx-post="/dataset/follow/1"><i></i> Follow</a> <a{W} href="/dataset/collaborators/x/delete/bob" data-module="confirm-action">Delete</a></div>`},
	{"a control inside a marked form is marked too",
		`<body><form method=post action=/dataset/edit/x><a href="/dataset/delete/x" data-module="confirm-action">Delete</a><button name=save>Save</button></form>`,
		`<body>{A}<form{W} method=post action=/dataset/edit/x><a{W} href="/dataset/delete/x" data-module="confirm-action">Delete</a><button name=save>Save</button></form>`},
	{"submit buttons: marked, not disabled, no note",
		`<body><form action=/dataset/><button formmethod=post formaction=/dataset/delete/x>Delete</button><button>Search</button></form>`,
		`<body>{A}<form action=/dataset/><button{W} formmethod=post formaction=/dataset/delete/x>Delete</button><button>Search</button></form>`},
	{"a marked form owns its buttons",
		`<body><form id=f method=post action=/dataset/new><button formaction=/user/login>Log in</button><button formmethod=get formaction=/dataset/>Search</button></form><button form=f formmethod=post>Out</button>`,
		`<body>{A}<form{W} id=f method=post action=/dataset/new><button formaction=/user/login>Log in</button><button formmethod=get formaction=/dataset/>Search</button></form><button{W} form=f formmethod=post>Out</button>`},
	{"an unclosed marked form is not cut",
		`<body><div><form method=post action=/x></div><p>after</p></body></html>`,
		`<body>{A}<div><form{W} method=post action=/x></div><p>after</p></body></html>`},
	{"banner before the first content",
		`<html><form method=post action=/x>`, `<html>{A}<form{W} method=post action=/x>`},
	{"a fragment: marks, no banner",
		`<a hx-post="/x">a</a><form method=post action=/y></form>`, `<a{W} hx-post="/x">a</a><form{W} method=post action=/y></form>`},
	{"tags in a script or a textarea are text",
		`<body><script>"<form method=post>"</script><textarea><form method=post></textarea>`,
		`<body>{A}<script>"<form method=post>"</script><textarea><form method=post></textarea>`},
}

func TestAnnounceMarks(t *testing.T) {
	opts := announceOptions("https://data.example.org/dataset/x")
	r := strings.NewReplacer("{A}", testAnnounce, "{W}", string(writeAttr))
	for _, c := range announceCases {
		t.Run(c.name, func(t *testing.T) {
			want := r.Replace(c.want)
			assertSame(t, "whole", rewrite(t, strings.NewReader(c.in), opts), want)
			assertSame(t, "one byte per Read", rewrite(t, iotest.OneByteReader(strings.NewReader(c.in)), opts), want)
			ref, err := io.ReadAll(newReference(strings.NewReader(c.in), opts, testNow, maxTokenBytes))
			if err != nil {
				t.Fatal(err)
			}
			assertSame(t, "reference", string(ref), want)
			// Nothing refused: nothing marked.
			nothing := opts
			nothing.WouldRefuse = nil
			if got := rewrite(t, strings.NewReader(c.in), nothing); strings.Replace(got, testAnnounce, "", 1) != c.in {
				t.Errorf("with a nil WouldRefuse: %q", got)
			}
		})
	}
}

// TestAnnounceCKAN212Pages: announcing, every 2.12 page comes out as it
// went in but for the banner, the script and the marks; the marks are on
// the tags read-only mode hides (and, as nothing is hidden, on the
// controls inside the forms it hides).
func TestAnnounceCKAN212Pages(t *testing.T) {
	marked := map[string][]string{
		"ckan212_dataset_edit.html": {
			`<a class="btn btn-success" hx-post="/dataset/follow/`,
			`<form id="dataset-edit"`,
			`<a class="btn btn-danger pull-left" href="/dataset/delete/`,
		},
		"ckan212_midnight_dataset_edit.html": {
			`<a class="btn btn-danger" hx-post="/dataset/unfollow/`,
			`<form id="dataset-edit"`,
			`<a class="btn btn-danger pull-left" href="/dataset/delete/`,
		},
		"ckan212_midnight_organization_edit.html": {
			`<form id='organization-edit-form'`,
			`<a class="btn btn-danger pull-left" href="/organization/delete/`,
		},
		"ckan212_midnight_api_tokens.html": {
			`<form hx-post="/user/8f2a5a8e-0f55-4cb4-9d57-07c4c4a0b0d1/api-tokens"`,
			`<form hx-post="/user/alice/api-tokens/revoke"`,
			// confirm-action without href: it posts to the page.
			`<button id="revoke-tokens-button" type="submit"`,
		},
		"ckan212_midnight_collaborators.html": {
			`<a class="btn btn-success" hx-post="/dataset/follow/`,
			`<a class="btn btn-danger btn-sm" href="/dataset/collaborators/climate-observations/delete/bob"`,
			`<a class="btn btn-danger btn-sm" href="/dataset/collaborators/climate-observations/delete/carol"`,
		},
	}
	for _, p := range pages212 {
		t.Run(p.file, func(t *testing.T) {
			in := readPage(t, p.file)
			opts := announceOptions(p.pageURL)
			got := rewrite(t, strings.NewReader(in), opts)
			assertSame(t, "one byte per Read", rewrite(t, iotest.OneByteReader(strings.NewReader(in)), opts), got)
			ref, err := io.ReadAll(newReference(strings.NewReader(in), opts, testNow, maxTokenBytes))
			if err != nil {
				t.Fatal(err)
			}
			assertSame(t, "reference", string(ref), got)

			// The banner and the script right after <body>.
			loc := bodyTag.FindStringIndex(in)
			if !strings.HasPrefix(got[loc[1]:], testAnnounce) {
				t.Fatalf("no announce banner and script after <body>")
			}
			// Nothing else but the marks.
			if back := strings.ReplaceAll(strings.Replace(got, testAnnounce, "", 1), string(writeAttr), ""); back != in {
				assertSame(t, "without the banner and the marks", back, in)
			}
			var want []string
			for _, m := range marked[p.file] {
				i := strings.Index(m, " ")
				want = append(want, m[:i]+string(writeAttr)+m[i:])
			}
			if n := strings.Count(got, string(writeAttr)); n != len(want) {
				t.Errorf("%d marks, want %d", n, len(want))
			}
			for _, w := range want {
				if !strings.Contains(got, w) {
					t.Errorf("not marked: %q", w)
				}
			}
			for _, notice := range []string{"ckanops-form-notice", "ckanops-control-notice", "ckanops-submit-notice", " disabled"} {
				if strings.Contains(got, notice) && !strings.Contains(in, notice) {
					t.Errorf("announcing, the page has %q", notice)
				}
			}
		})
	}
}

// TestAnnounceHostile: the window's message, the site title and the script
// URL are text and an attribute value, never markup.
func TestAnnounceHostile(t *testing.T) {
	in := readPage(t, "dataset_edit.html")
	win := Window{At: testWindow.At, End: testWindow.End, Mode: `down" onmouseover="alert(5)`, Message: hostile.Message}
	src := `/x"><img src=x onerror=alert(6)>`
	opts := testOptions()
	opts.Notice, opts.Announce, opts.Script = hostile, &win, src
	out := rewrite(t, strings.NewReader(in), opts)
	frag := insertAt(&opts, testNow)
	for i := 0; i < len(frag); i++ {
		if frag[i] >= 0x80 {
			t.Fatalf("fragment is not ASCII at %d: %q", i, frag)
		}
	}
	inDoc, err := html.Parse(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	outDoc, err := html.Parse(strings.NewReader(out))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		a    atom.Atom
		more int
	}{{atom.Script, 1}, {atom.Img, 0}, {atom.Svg, 0}, {atom.Iframe, 0}} {
		if got, want := count(outDoc, c.a), count(inDoc, c.a)+c.more; got != want {
			t.Errorf("%d <%s> elements in the output, want %d", got, c.a, want)
		}
	}
	var banner *html.Node
	for n := range outDoc.Descendants() {
		for _, a := range n.Attr {
			if strings.HasPrefix(a.Key, "on") {
				t.Errorf("event handler attribute %s=%q on <%s>", a.Key, a.Val, n.Data)
			}
		}
		if n.Type == html.ElementNode && attr(n, "class") == "ckanops-banner" {
			banner = n
		}
	}
	if banner == nil || banner.Parent.DataAtom != atom.Body || banner.PrevSibling != nil {
		t.Fatalf("no banner first in the body")
	}
	if s := banner.NextSibling; s == nil || s.DataAtom != atom.Script || attr(s, "src") != src || attr(s, "data-ckanops-poll") != "30" {
		t.Errorf("the script does not follow the banner with its URL")
	}
	if attr(banner, "data-ckanops-mode") != "announce" {
		t.Errorf("banner mode %q", attr(banner, "data-ckanops-mode"))
	}
	wantMessage := strings.NewReplacer("\r\n", "\n", "\x00", " ", "\x07", " ", "\u0085", "\ufffd", "\xff", "\ufffd").Replace(hostile.Message)
	for d := range banner.Descendants() {
		if d.Type == html.ElementNode && !allowedInFragment[d.DataAtom] {
			t.Errorf("<%s> inside the banner", d.Data)
		}
		if d.Type == html.ElementNode && attr(d, "class") == "ckanops-message" && text(d) != wantMessage {
			t.Errorf("message text = %q, want %q", text(d), wantMessage)
		}
	}
	if !strings.Contains(text(banner), hostile.SiteTitle+" will be read-only") {
		t.Errorf("banner does not show the site title as text: %q", text(banner))
	}
}

// TestAnnounceGolden pins the announce banner with the script and the
// marks, the overrun banner with the script, on the 2.12 pages and the
// submit buttons' page; run with -update after an intended change and
// review the diff.
func TestAnnounceGolden(t *testing.T) {
	overrun := func(pageURL string) Options {
		until := testNow.Add(-25 * time.Minute)
		n := testNotice
		n.Until, n.Overrun = &until, true
		return Options{Notice: n, WouldRefuse: gatePolicy(pageURL), Script: "/data/-/ckanops/notice.js", ScriptPoll: 15 * time.Second}
	}
	formmethod := announceOptions("https://data.example.org/dataset/")
	formmethod.WouldRefuse = policy("https://data.example.org/dataset/")
	for _, c := range []struct {
		page, golden string
		opts         Options
	}{
		{"ckan212_dataset_edit.html", "ckan212_dataset_edit.announce.golden", announceOptions(editURL)},
		{"ckan212_midnight_dataset_edit.html", "ckan212_midnight_dataset_edit.announce.golden", announceOptions(editURL)},
		{"ckan212_midnight_api_tokens.html", "ckan212_midnight_api_tokens.announce.golden", announceOptions(tokensURL)},
		{"ckan212_midnight_collaborators.html", "ckan212_midnight_collaborators.announce.golden", announceOptions(collabURL)},
		{"formmethod.html", "formmethod.announce.golden", formmethod},
		{"ckan212_dataset_edit.html", "ckan212_dataset_edit.overrun.golden", overrun(editURL)},
	} {
		t.Run(c.golden, func(t *testing.T) {
			got := rewrite(t, strings.NewReader(readPage(t, c.page)), c.opts)
			golden := filepath.Join("testdata", c.golden)
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

// TestAnnounceMatchesReference runs the announce cases through both
// rewriters with many token caps and read sizes (runDiff picks the
// announce mode for about a quarter of the seeds: here, every seed is
// tried until both modes were).
func TestAnnounceMatchesReference(t *testing.T) {
	for i, c := range announceCases {
		for j := range uint64(40) {
			runDiff(t, c.in, uint64(i)<<32|j)
		}
	}
	seen := map[bool]int{}
	for j := range uint64(64) {
		seen[makeChoices("x", j).announce]++
	}
	if seen[true] == 0 || seen[false] == 0 {
		t.Fatalf("runDiff's choices never (or always) announce: %v", seen)
	}
}

// TestHasModule: hasModule splits as bytes.Fields does.
func TestHasModule(t *testing.T) {
	for _, v := range []string{"", " ", "confirm-action", " confirm-action ", "a\tconfirm-action\nb", "a\vconfirm-action", "confirm-actions", "xconfirm-action",
		"a\u00a0confirm-action", "a\u0085confirm-action\u3000b", "\u00e9 confirm-action", "confirm-action\u00e9", "a\fconfirm-action\r"} {
		want := false
		for _, f := range strings.Fields(v) {
			want = want || f == "confirm-action"
		}
		if got := hasModule([]byte(v), "confirm-action"); got != want {
			t.Errorf("hasModule(%q) = %v, want %v", v, got, want)
		}
	}
}

// TestMayBeControlDecoded: a tag that needs decoding is passed on when its
// data-module can decode to confirm-action or it may have htmx verbs.
func TestMayBeControlDecoded(t *testing.T) {
	for tag, want := range map[string]bool{
		`<input data-module="slug-preview-slug" data-module-placeholder="&lt;dataset&gt;">`: false,
		`<a href="/x?a=1&amp;b=2" data-module="tooltip">`:                                   false,
		`<a href="/x?a=1&amp;b=2">`:                                                         false,
		`<a data-module="confirm&#45;action">`:                                              true,
		`<a data-module="confirm-action" title="&amp;">`:                                    true,
		`<a title="&amp;" hx-post="/x">`:                                                    true,
		`<a title="&amp;" HX-DELETE="/x">`:                                                  true,
		`<a data-module=tooltip DATA-MODULE="confirm-action" title="&amp;">`:                false, // the first one counts
		`<a DATA-MODULE="x" title="&amp; data-module=confirm-action">`:                      false,
		"<a data-module=\"confirm-action\r\" title=x>":                                      true,
		`<a data-module="confirm-action">`:                                                  true, // needs no decoding
	} {
		if got := mayBeControlDecoded([]byte(tag)); got != want {
			t.Errorf("mayBeControlDecoded(%q) = %v, want %v", tag, got, want)
		}
	}
}
