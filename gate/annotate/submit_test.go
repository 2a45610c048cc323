package annotate

import (
	"fmt"
	"io"
	"strings"
	"testing"
	"testing/iotest"

	"golang.org/x/net/html"
	"golang.org/x/net/html/atom"
)

// testSubmitNotice is the note before a disabled submit button.
var testSubmitNotice = submitNoticeAt(testNotice)

// TestSubmitters covers submit buttons whose formmethod or formaction send a
// write: {B} stands for the banner, {N} for the form notice and {S} for the
// submit button note in want. The policy is the gate's stand-in: every POST
// is refused except the login and logout routes.
func TestSubmitters(t *testing.T) {
	cases := []struct{ name, in, want string }{
		// GET forms: the buttons that post.
		{"button posts to the form's action",
			`<body><form action=/dataset/><button formmethod=post>x</button></form>`,
			`<body>{B}<form action=/dataset/>{S}<button disabled formmethod=post>x</button></form>`},
		{"button posts to its formaction",
			`<body><form method=get action=/dataset/><button formmethod="post" formaction="/dataset/delete/x">x</button></form>`,
			`<body>{B}<form method=get action=/dataset/>{S}<button disabled formmethod="post" formaction="/dataset/delete/x">x</button></form>`},
		{"input type=submit",
			`<body><form><input type=submit formmethod=post></form>`,
			`<body>{B}<form>{S}<input disabled type=submit formmethod=post></form>`},
		{"input type=image",
			`<body><form><input type="image" src=a.png formmethod='post'></form>`,
			`<body>{B}<form>{S}<input disabled type="image" src=a.png formmethod='post'></form>`},
		{"self-closing input",
			`<body><form><input type=submit formmethod=post/></form>`, // "post/" is not post
			`<body>{B}<form><input type=submit formmethod=post/></form>`},
		{"self-closing input, quoted",
			`<body><form><input type=submit formmethod="post"/></form>`,
			`<body>{B}<form>{S}<input disabled type=submit formmethod="post"/></form>`},
		{"uppercase names and values",
			`<BODY><FORM ACTION=/x><BUTTON FORMMETHOD=POST>x</BUTTON><INPUT TYPE=IMAGE FORMMETHOD=Post></FORM>`,
			`<BODY>{B}<FORM ACTION=/x>{S}<BUTTON disabled FORMMETHOD=POST>x</BUTTON>{S}<INPUT disabled TYPE=IMAGE FORMMETHOD=Post></FORM>`},
		{"formaction to a read-safe path",
			`<body><form><button formmethod=post formaction=/user/login>x</button></form>`,
			`<body>{B}<form><button formmethod=post formaction=/user/login>x</button></form>`},
		{"entity-encoded formmethod",
			`<body><form><button formmethod="&#112;ost">x</button></form>`,
			`<body>{B}<form>{S}<button disabled formmethod="&#112;ost">x</button></form>`},
		{"a disabled attribute already there",
			`<body><form><button disabled formmethod=post>x</button></form>`,
			`<body>{B}<form>{S}<button disabled disabled formmethod=post>x</button></form>`},
		{"no attribute after the name",
			`<body><form><button/formmethod="post">x</button></form>`,
			`<body>{B}<form>{S}<button disabled/formmethod="post">x</button></form>`},
		{"button of type button or reset submits nothing",
			`<body><form><button type=button formmethod=post>a</button><button type=RESET formmethod=post>b</button></form>`,
			`<body>{B}<form><button type=button formmethod=post>a</button><button type=RESET formmethod=post>b</button></form>`},
		{"invalid button type is submit",
			`<body><form><button type=go formmethod=post>a</button></form>`,
			`<body>{B}<form>{S}<button disabled type=go formmethod=post>a</button></form>`},
		{"input that is not a button",
			`<body><form><input formmethod=post><input type=text formmethod=post><input type=button formmethod=post></form>`,
			`<body>{B}<form><input formmethod=post><input type=text formmethod=post><input type=button formmethod=post></form>`},
		{"formmethod get, dialog or invalid",
			`<body><form><button formmethod=get>a</button><button formmethod=dialog>b</button><button formmethod=posts>c</button></form>`,
			`<body>{B}<form><button formmethod=get>a</button><button formmethod=dialog>b</button><button formmethod=posts>c</button></form>`},
		{"formaction alone in a GET form is a GET",
			`<body><form><button formaction=/dataset/new>a</button></form>`,
			`<body>{B}<form><button formaction=/dataset/new>a</button></form>`},
		{"formaction alone in a dialog form submits nothing",
			`<body><form method=dialog><button formaction=/dataset/new>a</button></form>`,
			`<body>{B}<form method=dialog><button formaction=/dataset/new>a</button></form>`},
		{"plain buttons stay",
			`<body><form><button>a</button><input type=submit class="form-control" value=form></form>`,
			`<body>{B}<form><button>a</button><input type=submit class="form-control" value=form></form>`},

		// POST forms.
		{"kept POST form, button aimed at a write",
			`<body><form method=post action=/user/login><button formaction=/dataset/new>a</button><button>b</button></form>`,
			`<body>{B}<form method=post action=/user/login>{S}<button disabled formaction=/dataset/new>a</button><button>b</button></form>`},
		{"kept POST form, button aimed at a read-safe path",
			`<body><form method=post action=/user/login><button formaction=/user/logout>a</button></form>`,
			`<body>{B}<form method=post action=/user/login><button formaction=/user/logout>a</button></form>`},
		{"kept POST form, GET button",
			`<body><form method=post action=/user/login><button formmethod=get formaction=/dataset/new>a</button></form>`,
			`<body>{B}<form method=post action=/user/login><button formmethod=get formaction=/dataset/new>a</button></form>`},
		{"refused POST form with a GET button stays hidden",
			`<body><form method=post action=/dataset/new><button formmethod=get formaction=/dataset/>a</button></form><p>after`,
			`<body>{B}{N}<p>after`},

		// Which form a button belongs to.
		{"no form: the button submits nothing",
			`<body><button formmethod=post formaction=/dataset/new>a</button>`,
			`<body>{B}<button formmethod=post formaction=/dataset/new>a</button>`},
		{"after the form's end tag",
			`<body><form action=/x></form><button formmethod=post>a</button>`,
			`<body>{B}<form action=/x></form><button formmethod=post>a</button>`},
		{"unclosed form: later buttons are still its own",
			`<body><div><form action=/x></div><button formmethod=post>a</button>`,
			`<body>{B}<div><form action=/x></div>{S}<button disabled formmethod=post>a</button>`},
		{"a form inside a form is ignored, the outer one owns the buttons",
			`<body><form action=/user/login method=post><form action=/x><button formmethod=post>a</button></form><button formmethod=post>b</button>`,
			`<body>{B}<form action=/user/login method=post><form action=/x><button formmethod=post>a</button></form><button formmethod=post>b</button>`},
		{"a hidden form inside a kept one leaves the kept one open",
			`<body><form action=/s><form method=post action=/x></form><button formmethod=post>a</button></form>`,
			`<body>{B}<form action=/s>{N}{S}<button disabled formmethod=post>a</button></form>`},
		{"a hidden form ended by its parent leaves no form open",
			`<body><div><form method=post action=/x></div><button formmethod=post formaction=/y>a</button>`,
			`<body>{B}<div>{N}</div><button formmethod=post formaction=/y>a</button>`},
		{"form attribute names an earlier form",
			`<body><form id=f action=/user/login method=post></form><button form=f formaction=/dataset/new>a</button><button form=f formmethod=post>b</button>`,
			`<body>{B}<form id=f action=/user/login method=post></form>{S}<button disabled form=f formaction=/dataset/new>a</button><button form=f formmethod=post>b</button>`},
		{"form attribute overrides the enclosing form",
			`<body><form id=g action=/dataset/></form><form method=post action=/user/login><button form=g formaction=/dataset/new>a</button></form>`,
			`<body>{B}<form id=g action=/dataset/></form><form method=post action=/user/login><button form=g formaction=/dataset/new>a</button></form>`},
		{"form attribute: the first form with the id",
			`<body><form id=f action=/user/login method=post></form><form id=f method=post action=/user/logout></form><button form=f formmethod=post>a</button>`,
			`<body>{B}<form id=f action=/user/login method=post></form><form id=f method=post action=/user/logout></form><button form=f formmethod=post>a</button>`},
		{"form attribute names a later form: no formmethod is taken as POST",
			`<body><button form=later formaction=/dataset/new>a</button><button form=later formaction=/user/login>b</button><form id=later></form>`,
			`<body>{B}{S}<button disabled form=later formaction=/dataset/new>a</button><button form=later formaction=/user/login>b</button><form id=later></form>`},
		{"form attribute names a later form: no formaction is refused",
			`<body><button form=later formmethod=post>a</button><button form=later formmethod=get>b</button><form id=later></form>`,
			`<body>{B}{S}<button disabled form=later formmethod=post>a</button><button form=later formmethod=get>b</button><form id=later></form>`},
		{"form attribute names a hidden form",
			`<body><form id=h method=post action=/x></form><button form=h formmethod=get>a</button><button form=h formaction=/user/login>b</button>`,
			`<body>{B}{N}<button form=h formmethod=get>a</button><button form=h formaction=/user/login>b</button>`},

		// Where the banner goes, and what hides the button.
		{"banner before the first content",
			`<html><button form=x formmethod=post>a</button>`,
			`<html>{B}{S}<button disabled form=x formmethod=post>a</button>`},
		{"buttons in a hidden form are hidden with it",
			`<body><form method=post action=/x><button formmethod=post formaction=/user/login>a</button></form>`,
			`<body>{B}{N}`},
		{"button text in a script",
			`<body><form><script>"<button formmethod=post>"</script></form>`,
			`<body>{B}<form><script>"<button formmethod=post>"</script></form>`},
	}
	opts := testOptions()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			want := strings.NewReplacer("{B}", testBanner, "{N}", testFormNotice, "{S}", testSubmitNotice).Replace(c.want)
			assertSame(t, "whole", rewrite(t, strings.NewReader(c.in), opts), want)
			assertSame(t, "one byte per Read", rewrite(t, iotest.OneByteReader(strings.NewReader(c.in)), opts), want)
			ref := newReference(strings.NewReader(c.in), opts, testNow, maxTokenBytes)
			var b strings.Builder
			buf := make([]byte, 7)
			for {
				n, err := ref.Read(buf)
				b.WriteString(string(buf[:n]))
				if err != nil {
					break
				}
			}
			assertSame(t, "reference", b.String(), want)
			// Nothing refused, nothing changed but the banner.
			if got := rewrite(t, strings.NewReader(c.in), Options{Notice: testNotice}); strings.Contains(got, "ckanops-submit-notice") || strings.Contains(got, "disabled") && !strings.Contains(c.in, "disabled") {
				t.Errorf("with a nil WouldRefuse: %q", got)
			}
		})
	}
}

// TestSubmitterWouldRefuseArguments: the rewriter asks about a submit
// button's POST with the button's formaction, or its form's action, as
// written (entities decoded, not resolved).
func TestSubmitterWouldRefuseArguments(t *testing.T) {
	var asked []string
	opts := Options{Notice: testNotice, WouldRefuse: func(method, action string) bool {
		asked = append(asked, method+" "+action)
		return policy("https://data.example.org/dataset/")(method, action)
	}}
	rewrite(t, strings.NewReader(readPage(t, "formmethod.html")), opts)
	want := []string{
		"POST /dataset/bulk_process/x", // the search form
		"POST /dataset/",
		"POST /dataset/",
		"POST /dataset/delete/x",
		"POST /dataset/new/",
		"POST /user/login",
		"POST /dataset/new?a=1&b=2",
		"POST /dataset/",
		"POST /organization/delete/y", // the uppercase form
		"POST /organization/",
		"POST /organization/new",
		"POST /group/new",
		"POST /user/login", // the login form itself
		"POST /dataset/new",
		"POST /user/logout",
		"POST /dataset/edit/x", // the hidden form
		"POST /dataset/",       // buttons outside their forms
		"POST /user/login",
		"POST /group/new",
		"POST /user/login", // the later form's, taken as a POST; the next one is refused unasked
	}
	if fmt.Sprint(asked) != fmt.Sprint(want) {
		t.Errorf("asked\n%q\nwant\n%q", asked, want)
	}
}

// TestSubmittersParsed parses the annotated formmethod.html as a browser
// would and checks that every submit button the rewriter disabled comes right
// after a note, that every note comes right before such a button, and that
// the buttons the policy lets through are neither.
func TestSubmittersParsed(t *testing.T) {
	in := readPage(t, "formmethod.html")
	out := rewrite(t, strings.NewReader(in), testOptions())
	doc, err := html.Parse(strings.NewReader(out))
	if err != nil {
		t.Fatal(err)
	}
	disabled, notes := 0, 0
	for n := range doc.Descendants() {
		if n.Type != html.ElementNode {
			continue
		}
		switch {
		case n.DataAtom == atom.Span && attr(n, "class") == "ckanops-submit-notice":
			notes++
			next := n.NextSibling
			if next == nil || next.Type != html.ElementNode || next.DataAtom != atom.Button && next.DataAtom != atom.Input || !hasAttr(next, "disabled") {
				t.Errorf("a note not followed by a disabled button: %+v", next)
			}
			for d := range n.Descendants() {
				if d.Type == html.ElementNode && !allowedInFragment[d.DataAtom] {
					t.Errorf("<%s> inside the note", d.Data)
				}
			}
		case (n.DataAtom == atom.Button || n.DataAtom == atom.Input) && hasAttr(n, "disabled"):
			disabled++
			prev := n.PrevSibling
			if prev == nil || prev.Type != html.ElementNode || attr(prev, "class") != "ckanops-submit-notice" {
				t.Errorf("disabled <%s> %v without a note before it", n.Data, n.Attr)
			}
			if fa, ok := attrOK(n, "formaction"); ok && (fa == "/user/login" || fa == "/user/logout") {
				t.Errorf("a button aimed at a read-safe path was disabled: %v", n.Attr)
			}
		}
	}
	if want := strings.Count(out, `class="ckanops-submit-notice"`); disabled != want || notes != want || want != 15 {
		t.Errorf("%d disabled buttons and %d notes, %d in the output, want 15", disabled, notes, want)
	}
	// The form that is kept keeps its buttons: nothing but the notes and the
	// disabled attributes was added.
	back := strings.ReplaceAll(strings.ReplaceAll(out, testSubmitNotice, ""), " disabled", "")
	assertSame(t, "the output less the notes and the disabled attributes", back,
		expected(t, in, pageCase{file: "formmethod.html", banner: "body", spans: []span{{from: `<form id="hidden"`, to: `</form>`}}}))
}

func hasAttr(n *html.Node, key string) bool {
	_, ok := attrOK(n, key)
	return ok
}

func attrOK(n *html.Node, key string) (string, bool) {
	for _, a := range n.Attr {
		if a.Key == key {
			return a.Val, true
		}
	}
	return "", false
}

// TestMayBeSubmitter: the prefilter lets through every tag that has a
// formmethod, formaction or form attribute, and few others.
func TestMayBeSubmitter(t *testing.T) {
	yes := []string{
		`<button formmethod=post>`, `<BUTTON FORMACTION=/x>`, `<input form=f>`, `<input type=submit form>`,
		`<button/formmethod=post>`, `<button a="x"formaction=/y>`, `<button a='x'form=f>`, "<input\tFormMethod\n=post>",
		`<button a/form>`, `<input value='form m'>`,
	}
	no := []string{
		`<button>`, `<input class="form-control">`, `<input name=form-q>`, `<button placeholder="form">`,
		`<form method=post>`, `<select form=f>`, `<buttons formmethod=post>`, `<button =formmethod=post>`,
		`<input formenctype=x formtarget=y formnovalidate>`, `<button data-formmethod=post>`,
	}
	for _, s := range yes {
		if !mayBeSubmitter([]byte(s)) {
			t.Errorf("mayBeSubmitter(%q) = false", s)
		}
	}
	for _, s := range no {
		if mayBeSubmitter([]byte(s)) {
			t.Errorf("mayBeSubmitter(%q) = true", s)
		}
	}
}

// TestFormIDsBounded: the rewriter remembers at most maxFormIDs forms by id,
// and a form's action only when it is short; a button naming a form whose
// action it does not know is judged at its worst.
func TestFormIDsBounded(t *testing.T) {
	var b strings.Builder
	b.WriteString("<body>")
	long := "/user/login?" + strings.Repeat("x", maxFormActionBytes)
	fmt.Fprintf(&b, "<form id=long method=post action=%s></form>", long)
	for i := range maxFormIDs {
		fmt.Fprintf(&b, "<form id=f%d method=post action=/user/login></form>", i)
	}
	fmt.Fprintf(&b, "<form id=%s method=post action=/user/login></form>", strings.Repeat("i", maxFormIDBytes+1))
	b.WriteString("<button form=f0 formmethod=post>a</button>")
	fmt.Fprintf(&b, "<button form=f%d formmethod=post>b</button>", maxFormIDs-2)
	fmt.Fprintf(&b, "<button form=f%d formmethod=post>c</button>", maxFormIDs-1) // past the table
	b.WriteString("<button form=long formmethod=post>d</button>")
	fmt.Fprintf(&b, "<button form=%s formmethod=post>e</button>", strings.Repeat("i", maxFormIDBytes+1))
	in := b.String()
	asked := 0
	opts := Options{Notice: testNotice, WouldRefuse: func(method, action string) bool {
		asked++
		return !strings.HasPrefix(action, "/user/login")
	}}
	got := rewrite(t, strings.NewReader(in), opts)
	for _, want := range []string{
		`<button form=f0 formmethod=post>a</button>`,
		fmt.Sprintf(`<button form=f%d formmethod=post>b</button>`, maxFormIDs-2),
		testSubmitNotice + fmt.Sprintf(`<button disabled form=f%d formmethod=post>c</button>`, maxFormIDs-1),
		testSubmitNotice + `<button disabled form=long formmethod=post>d</button>`,
		testSubmitNotice + `<button disabled form=iii`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	// The forms, then the two buttons whose form is known.
	if want := 1 + maxFormIDs + 1 + 2; asked != want {
		t.Errorf("WouldRefuse asked %d times, want %d", asked, want)
	}
	w := newRewriter(strings.NewReader(in), opts, testNow, maxTokenBytes)
	if _, err := io.Copy(io.Discard, w); err != nil {
		t.Fatal(err)
	}
	if len(w.forms) != maxFormIDs || w.forms[0].form.known || len(w.forms[0].form.action) != 0 {
		t.Errorf("%d forms remembered (want %d), the first with its action known %v", len(w.forms), maxFormIDs, w.forms[0].form.known)
	}
}

// TestSubmitNoticeHostile: the site title in the note before a disabled
// button is text, and the note is ASCII.
func TestSubmitNoticeHostile(t *testing.T) {
	frag := submitNoticeAt(hostile)
	for i := 0; i < len(frag); i++ {
		if frag[i] >= 0x80 {
			t.Fatalf("note is not ASCII at %d: %q", i, frag)
		}
	}
	opts := testOptions()
	opts.Notice = hostile
	out := rewrite(t, strings.NewReader(`<body><p><form action=/dataset/><button formmethod=post>x</button></form>`), opts)
	doc, err := html.Parse(strings.NewReader(out))
	if err != nil {
		t.Fatal(err)
	}
	notes := 0
	for n := range doc.Descendants() {
		if n.Type == html.ElementNode && attr(n, "class") == "ckanops-submit-notice" {
			notes++
			if !strings.Contains(text(n), hostile.SiteTitle) {
				t.Errorf("the note does not show the site title as text: %q", text(n))
			}
			for d := range n.Descendants() {
				if d.Type == html.ElementNode && !allowedInFragment[d.DataAtom] {
					t.Errorf("<%s> inside the note", d.Data)
				}
			}
		}
		if n.Type == html.ElementNode && n.DataAtom == atom.Script {
			t.Errorf("a <script> element in the output")
		}
	}
	if notes != 1 {
		t.Errorf("%d notes, want 1", notes)
	}
}
