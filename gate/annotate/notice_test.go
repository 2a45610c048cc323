package annotate

import (
	"strings"
	"testing"
	"time"

	"golang.org/x/net/html"
	"golang.org/x/net/html/atom"
)

func TestHumanUntil(t *testing.T) {
	cases := []struct {
		d    time.Duration
		want string
	}{
		{-time.Minute, "shortly"},
		{0, "shortly"},
		{30 * time.Second, "in under a minute"},
		{time.Minute, "in 1m"},
		{61 * time.Second, "in 2m"}, // rounded up: never promise earlier than the ETA
		{45 * time.Minute, "in 45m"},
		{90 * time.Minute, "in 1h30m"},
		{2 * time.Hour, "in 2h"},
		{26*time.Hour + 10*time.Minute, "in 1d2h"},
		{72 * time.Hour, "in 3d"},
	}
	for _, c := range cases {
		if got := humanUntil(c.d); got != c.want {
			t.Errorf("humanUntil(%v) = %q, want %q", c.d, got, c.want)
		}
	}
}

func TestBannerContent(t *testing.T) {
	until := time.Date(2025, 6, 1, 15, 30, 0, 0, time.FixedZone("CEST", 2*3600))
	now := until.Add(-90 * time.Minute)
	b := bannerAt(Notice{SiteTitle: "Data Portal", Message: "Back soon", Until: &until, Mode: "read-only"}, now)
	for _, want := range []string{
		`<div role="status" class="ckanops-banner"`,
		`Data Portal is in read-only mode`,
		`>Back soon</span>`,
		`<time datetime="2025-06-01T15:30:00+02:00">2025-06-01T15:30:00+02:00</time> (in 1h30m)`,
	} {
		if !strings.Contains(b, want) {
			t.Errorf("banner lacks %q:\n%s", want, b)
		}
	}
	// Optional parts are left out, not left empty.
	b = bannerAt(Notice{Mode: "down"}, now)
	if !strings.Contains(b, "This site is down for maintenance.") || strings.Contains(b, "ckanops-message") || strings.Contains(b, "<time") {
		t.Errorf("banner without title, message and ETA:\n%s", b)
	}
	if b := Banner(Notice{Mode: "read-only"}); !strings.HasPrefix(b, `<div role="status" class="ckanops-banner"`) {
		t.Errorf("Banner = %s", b)
	}
}

// hostile is untrusted text meant to break out of every context the
// fragments put it in.
var hostile = Notice{
	SiteTitle: `Portal</strong><script>alert("title")</script>`,
	Message: "<script>alert(1)</script>\n" +
		`"><img src=x onerror=alert(2)>` + "\r\n" +
		`'><svg onload=alert(3)>` + "\n" +
		"</div></div></body><iframe src=javascript:alert(4)>\n" +
		"&lt;script&gt; &amp; \u00e9\u4e2d \u0085\x00\x07\xff end",
	Mode: `read-only" onmouseover="alert(5)`,
	Until: func() *time.Time {
		u := time.Date(2025, 6, 1, 13, 30, 0, 0, time.UTC)
		return &u
	}(),
}

// TestHostileMessage parses the annotated page and checks that the message
// and title became text, in the banner and in each notice, and that no
// element or attribute came from them.
func TestHostileMessage(t *testing.T) {
	in := readPage(t, "dataset_edit.html")
	opts := testOptions()
	opts.Notice = hostile
	out := rewrite(t, strings.NewReader(in), opts)

	for _, frag := range []string{bannerAt(hostile, testNow), formNoticeAt(hostile, testNow)} {
		for i := 0; i < len(frag); i++ {
			if frag[i] >= 0x80 {
				t.Fatalf("fragment is not ASCII at %d: %q", i, frag)
			}
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
	for _, a := range []atom.Atom{atom.Script, atom.Img, atom.Svg, atom.Iframe} {
		if got, want := count(outDoc, a), count(inDoc, a); got != want {
			t.Errorf("%d <%s> elements in the output, %d in the input", got, a, want)
		}
	}
	for n := range outDoc.Descendants() {
		for _, attr := range n.Attr {
			if strings.HasPrefix(attr.Key, "on") {
				t.Errorf("event handler attribute %s=%q on <%s>", attr.Key, attr.Val, n.Data)
			}
		}
	}

	// What a reader sees: the message, intact, as text.
	wantMessage := strings.NewReplacer("\r\n", "\n", "\x00", " ", "\x07", " ", "\u0085", "\ufffd", "\xff", "\ufffd").Replace(hostile.Message)
	var banners, notices int
	for n := range outDoc.Descendants() {
		if n.Type != html.ElementNode || n.DataAtom != atom.Div {
			continue
		}
		switch class := attr(n, "class"); class {
		case "ckanops-banner", "ckanops-form-notice":
			if class == "ckanops-banner" {
				banners++
				if n.Parent.DataAtom != atom.Body || n.PrevSibling != nil {
					t.Errorf("banner is not the body's first child")
				}
				if got := attr(n, "data-ckanops-mode"); got != hostile.Mode {
					t.Errorf("mode attribute = %q", got)
				}
			} else {
				notices++
			}
			var msg *html.Node
			for d := range n.Descendants() {
				if d.Type == html.ElementNode && attr(d, "class") == "ckanops-message" {
					msg = d
				}
				if d.Type == html.ElementNode && !allowedInFragment[d.DataAtom] {
					t.Errorf("<%s> inside the %s", d.Data, class)
				}
			}
			if msg == nil || text(msg) != wantMessage {
				t.Errorf("%s message text = %q, want %q", class, text(msg), wantMessage)
			}
			if !strings.Contains(text(n), hostile.SiteTitle) {
				t.Errorf("%s does not show the site title as text: %q", class, text(n))
			}
		}
	}
	if banners != 1 || notices != 2 {
		t.Errorf("%d banners and %d notices, want 1 and 2", banners, notices)
	}

	// Banner alone, as the refusal pages use it.
	frag, err := html.ParseFragment(strings.NewReader(Banner(hostile)), &html.Node{Type: html.ElementNode, Data: "body", DataAtom: atom.Body})
	if err != nil {
		t.Fatal(err)
	}
	if len(frag) != 1 {
		t.Fatalf("Banner parses as %d nodes, want 1", len(frag))
	}
	for d := range frag[0].Descendants() {
		if d.Type == html.ElementNode && !allowedInFragment[d.DataAtom] {
			t.Errorf("<%s> inside Banner()", d.Data)
		}
	}
}

var allowedInFragment = map[atom.Atom]bool{atom.Strong: true, atom.Span: true, atom.Time: true}

func count(doc *html.Node, a atom.Atom) int {
	n := 0
	for d := range doc.Descendants() {
		if d.Type == html.ElementNode && d.DataAtom == a {
			n++
		}
	}
	return n
}

func attr(n *html.Node, key string) string {
	for _, a := range n.Attr {
		if a.Key == key {
			return a.Val
		}
	}
	return ""
}

func text(n *html.Node) string {
	if n == nil {
		return ""
	}
	var b strings.Builder
	for d := range n.Descendants() {
		if d.Type == html.TextNode {
			b.WriteString(d.Data)
		}
	}
	return b.String()
}

// TestFragments: the cached fragments are always what insertAt and
// formNoticeAt write for the options and the time at hand.
func TestFragments(t *testing.T) {
	until := testNow.Add(90 * time.Minute)
	later := until.Add(time.Hour)
	base := Notice{SiteTitle: "Example", Message: "Back soon.", Until: &until, Mode: "read-only"}
	win := Window{At: until, End: later, Mode: "read-only", Message: "Upgrade"}
	with := func(f func(o *Options)) Options {
		o := Options{Notice: base}
		f(&o)
		return o
	}
	steps := []struct {
		o   Options
		now time.Time
	}{
		{Options{Notice: base}, testNow},
		{Options{Notice: base}, testNow.Add(10 * time.Second)}, // same wording
		{Options{Notice: base}, testNow.Add(time.Minute)},      // one minute less
		{Options{Notice: base}, until.Add(-30 * time.Second)},  // under a minute
		{Options{Notice: base}, until.Add(time.Second)},        // shortly
		{Options{Notice: Notice{SiteTitle: "Example", Message: "Back soon.", Until: &later, Mode: "read-only"}}, testNow},
		{Options{Notice: Notice{SiteTitle: "Example", Message: "Back later.", Until: &until, Mode: "read-only"}}, testNow},
		{Options{Notice: Notice{SiteTitle: "Other", Message: "Back soon.", Mode: "read-only"}}, testNow},
		{Options{Notice: Notice{SiteTitle: "Other", Message: "Back soon.", Mode: "down"}}, testNow},
		{Options{Notice: Notice{SiteTitle: "Other", Message: "Back soon.", Mode: "down", Overrun: true}}, testNow},
		{with(func(o *Options) { o.Notice.Overrun = true }), until.Add(time.Minute)},
		{with(func(o *Options) { o.Script = "/-/ckanops/notice.js" }), testNow},
		{with(func(o *Options) { o.Script = "/data/-/ckanops/notice.js" }), testNow},
		{with(func(o *Options) { o.Script = "/data/-/ckanops/notice.js"; o.ScriptPoll = time.Second }), testNow},
		{with(func(o *Options) { o.Announce = &win }), testNow},
		{with(func(o *Options) { o.Announce = &win }), testNow.Add(time.Minute)},
		{with(func(o *Options) { o.Announce = &win; o.Script = "/-/ckanops/notice.js" }), testNow},
		{with(func(o *Options) { w := win; w.Mode = "down"; o.Announce = &w }), testNow},
		{with(func(o *Options) { w := win; w.Message = "Other"; o.Announce = &w }), testNow},
		{with(func(o *Options) { w := win; w.End = until.Add(3 * time.Hour); o.Announce = &w }), testNow},
		{with(func(o *Options) { w := win; w.At = testNow.Add(time.Hour); o.Announce = &w }), testNow},
		{with(func(o *Options) { o.Announce = &win; o.Notice.Mode = "down"; o.Notice.Overrun = true }), testNow}, // Notice's mode is not used
		{Options{Notice: base}, testNow},
	}
	for i, s := range steps {
		for range 2 {
			banner, notice := fragments(&s.o, s.now)
			if string(banner) != insertAt(&s.o, s.now) {
				t.Fatalf("step %d: banner differs from insertAt:\n%s\n%s", i, banner, insertAt(&s.o, s.now))
			}
			if s.o.Announce == nil && string(notice) != formNoticeAt(s.o.Notice, s.now) {
				t.Fatalf("step %d: notice differs from formNoticeAt", i)
			}
		}
	}
}
