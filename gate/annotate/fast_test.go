package annotate

import (
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The rewriter runs on its own lexer, with a fast path for the stretches that
// go out as they are; refRewriter (reference_test.go) is the rewriter as it
// was, on golang.org/x/net/html's Tokenizer. These tests hold the first to
// the second, byte for byte, on the same input read in the same pieces.

// edgeCases are inputs where a scanner that is only nearly the Tokenizer
// would differ from it. Every POST form in them is a candidate for refusal.
var edgeCases = []string{
	// script data, its escapes and its end tag
	`<body><script>a</script >b<form method=post action=/x>c</form>`,
	`<body><script>a</SCRIPT>b<form method=post action=/x>c</form>`,
	`<body><script>a</scripty><form method=post action=/x></script><form method=post action=/y>`,
	`<body><script>a</script/><form method=post action=/x></form>`,
	`<body><script><!--<script></script><form method=post action=/x>--></script><form method=post action=/y></form>`,
	`<body><script><!--<script>--></script><form method=post action=/x>`,
	`<body><script><!--</script><form method=post action=/x></form>`,
	`<body><script><!-- --><form method=post action=/x></script><form method=post action=/y>`,
	`<body><script><!--<SCRIPT></script>-></script><form method=post action=/x>`,
	`<body><script><!--<script>-<script>--</script>x</script><form method=post>`,
	`<body><script><!-<form method=post></script><form method=post>`,
	`<body><script><!--<scripx></script><form method=post>`,
	`<body><script><`,
	`<body><script><!--`,
	`<body><script><!--<script>`,
	`<body><script>a</script`,
	`<body><script>a</scr`,
	`<body><script/><form method=post action=/x></script><form method=post action=/y>`,
	// the other raw-text and RCDATA elements
	`<body><style></style x><form method=post action=/x>`,
	`<body><textarea></form></textarea ><form method=post action=/x>`,
	`<body><TITLE>a</TiTlE>b<form method=post action=/x>`,
	`<body><xmp><form method=post></xmp><form method=post action=/x>`,
	`<body><iframe><form method=post></iframe><form method=post action=/x>`,
	`<body><noembed><form method=post></noembed><form method=post action=/x>`,
	`<body><noframes><form method=post></noframes><form method=post action=/x>`,
	`<body><noscript><form method=post></noscript><form method=post action=/x>`,
	`<body><plaintext></plaintext><form method=post action=/x>`,
	`<body><form method=post action=/x><plaintext></form>`,
	`<html><title>a`,
	`<html><title></title><p>x`,
	// comments and bogus comments
	`<body><!-- a --!><form method=post action=/x>`,
	`<body><!-- a --!-><form method=post action=/x>-->`,
	`<body><!-- a --!!><form method=post action=/x>-->`,
	`<body><!--><form method=post action=/x>`,
	`<body><!---><form method=post action=/x>`,
	`<body><!----><form method=post action=/x>`,
	`<body><!-----><form method=post action=/x>`,
	`<body><!-- -- ><form method=post action=/x>-->`,
	`<body><!-- --- ><form method=post action=/x>--->`,
	`<body><!-x><form method=post action=/x>`,
	`<body><!x><form method=post action=/x>`,
	`<body><!><form method=post action=/x>`,
	`<body></ x><form method=post action=/x>`,
	`<body></><form method=post action=/x>`,
	`<body><?x><form method=post action=/x>`,
	`<body><![CDATA[<form method=post action=/x>]]><form method=post action=/y>`,
	`<body><svg><![CDATA[</svg><form method=post action=/x>]]></svg>`,
	`<body><!--`, `<body><!-`, `<body><!`, `<body><!--a--`, `<body><!--a--!`, `<body><?`, `<body></`, `<body></ x`,
	`<!-- <body> --><body><form method=post action=/x>`,
	`<html><!-- <body> --><form method=post action=/x>`,
	// doctypes
	`<!DOCTYPE html><p>x`, `<!doctype html><p>x`, `<!DocType>x`, `<!DOCTYPEhtml><p>`, `<!DOCTYP`, `<!DOCTYPE`, `<!DOCTYPE `, `<!DOCTYPE html`,
	"\ufeff<!DOCTYPE html><form method=post action=/x>",
	`<body><form method=post action=/x><!DOCTYPE html><p>a</form>b`,
	`<body><form method=post action=/x><!doctype>x<!DOCTYPE`,
	// attributes
	`<body><a title="a>b"><form method=post action=/x>`,
	`<body><a title='a>b' x=y><form method=post action=/x>`,
	`<body><a title="<form method=post action=/x>">`,
	`<body><a title=<form method=post action=/x>>`,
	`<body><a b= = "x>"><form method=post action=/x>">`,
	`<body><a =">"><form method=post action=/x>`,
	`<body><a =' x='><form method=post action=/x>'>`,
	`<body><a b =' x='><form method=post action=/x>'>`,
	`<body><a b= =' x='><form method=post action=/x>'>`,
	`<body><a b"c>d<form method=post action=/x>`,
	`<body><a b=/><p a=/><br/><form method=post action=/x/>`,
	`<body><a/b/c><form/method=post/action=/x>`,
	`<body><a title="`, `<body><a title='x`, `<body><a title=x`, `<body><a title=`, `<body><a title`, `<body><a `, `<body><a`,
	// tag names
	`<BODY><FORM METHOD=POST ACTION=/x></FORM>`,
	`<BoDy><FoRm MeThOd=PoSt AcTiOn=/x></fOrM>`,
	`<body><form/method=post action=/x></form>`,
	`<body><formx method=post action=/x></formx>`,
	`<bodyx><body><form method=post action=/x>`,
	`<html><bodyx><form method=post action=/x>`,
	`<body><form method=post action=/x /><input></form>`,
	`<body><form	method=post action=/x>`,
	"<body><form\fmethod=post action=/x>",
	"<body><form\x00 method=post action=/x>",
	"<body><fo\x00rm method=post action=/x>",
	"<body>a\x00<form method=po\x00st action=/x>",
	"<body><form method=\"po\rst\">",
	"<body><form method=post action=\"/x\r\ny\rz\"></form><form method=post action=a\x00b></form>",
	"<body><form method=post action=/x?a=1&b=2&amp=3&lt=4&lt;></form>",
	// methods
	`<body><form method=poſt action=/x></form>`,
	`<body><form method=&#80;ost action=/x></form>`,
	`<body><form method="po&#x73;t" action="/x?a=1&amp;b=2"></form>`,
	`<body><form method=post method=get action=/x action=/y></form>`,
	`<body><form METHOD=get method=post></form>`,
	`<body><form method="post " action=/x></form>`,
	`<body><form method='POST' action='/user/login'></form>`,
	// forms that end in odd places
	`<body><div><form method=post action=/x><span>a</div><p>shown`,
	`<body><form method=post action=/x><body>after`,
	`<body><form method=post action=/x><p>a</html>b`,
	`<body><form method=post action=/x></p></br></img><input></input></form>`,
	`<body><form method=post action=/x><form method=get action=/y></form>out</form>`,
	`<body><form method=post action=/x>` + strings.Repeat("<div>", 300) + `</span><form method=post action=/y></form>`,
	// submit buttons with formmethod, formaction and form
	`<body><form action=/x><button formmethod=post>a</button><input type=submit formmethod=post formaction=/y></form>`,
	`<body><form method=post action=/user/login><button formaction=/x>a</button><button formmethod=get>b</button></form>`,
	`<body><form method=post action=/x><button formmethod=get>a</button></form><button formmethod=post>b</button>`,
	`<body><FORM ACTION=/x><BUTTON FORMMETHOD=POST>a</BUTTON><INPUT TYPE=IMAGE FORMMETHOD=Post FORMACTION=/y></FORM>`,
	`<body><form><button/formmethod=post/formaction=/x>a</button><button/formaction="/x"/formmethod="post">b</button>`,
	`<body><form><input type=submit formmethod=post/><input type=submit formmethod="post"/><input type="&#115;ubmit" formmethod=post>`,
	"<body><form><button formmethod=\"po&#x73;t\" formaction=\"/x?a=1&amp;b=2\">a</button><button formmethod=post formaction=\"/x\r\ny\">b</button>",
	"<body><form><button formmethod=post form\x00action=/x>a</button><button form\x00method=post>b</button><button formmethod=po\x00st>c</button>",
	`<body><form><button type=button formmethod=post>a</button><button type=reset formmethod=post><button type=x formmethod=post><input formmethod=post>`,
	`<body><form><button formmethod=post formmethod=get>a</button><button FORMMETHOD=get formmethod=post>b</button><button formmethod=dialog>c</button>`,
	`<body><form id=a action=/x></form><form id=b method=post action=/user/login></form><button form=a formmethod=post>a</button><button form=b formaction=/y>b</button><button form=c formmethod=post>c</button><button form=c formaction=/z>d</button><form id=c></form>`,
	`<body><form id=a method=post action=/x></form><button form=a formmethod=get>a</button><button form=a formaction=/user/login>b</button>`,
	`<body><div><form action=/x></div><button formmethod=post>a</button></form><button formmethod=post>b</button>`,
	`<body><form action=/s><form method=post action=/x></form><button formmethod=post>a</button></form><button formmethod=post>b</button>`,
	`<body><div><form method=post action=/x></div><button formmethod=post>a</button></form><button formmethod=post>b</button>`,
	`<html><button form=x formmethod=post>a</button>`,
	`<html><form><button formmethod=post>a`,
	`<body><form><button formmethod=post`,
	`<body><form><input class="form-control" value='form m' name=form-q><button a="x"formaction=/y><button a='x'form=f formmethod=post>`,
	`<body><form><script>"<button formmethod=post>"</script><textarea><button formmethod=post></textarea></form>`,
	`<body><form><button formmethod=post><button formmethod=post></form></FORM></form >`,
	`<body></form x><form action=/x></form/><button formmethod=post>`,
	// pages without <body>
	`<html><p>x<form method=post action=/x>`,
	`<html><template><p>t</template><form method=post action=/x>`,
	`<html><frameset><frame src=a></frameset><body>x`,
	`<title>t</title>  text`,
	`<head></head>text<form method=post action=/x>`,
	`<form method=post action=/x>fragment</form>`,
	``, `<`, `<<`, `a<b`, `<3`, `<body>a < b <3 </ > </>`,
}

// choices derives, from the seed, the token cap, which POST forms are
// refused, how the source hands out the input and how the output is read.
type choices struct {
	maxToken  int
	refuse    func(method, action string) bool
	chunk     func() int // size of the next chunk the source returns
	withEOF   bool       // the last chunk comes with io.EOF
	endErr    error      // what the source returns at its end
	zeroReads bool       // the source sometimes returns (0, nil)
	maxRead   int
	readSize  func() int // size of the next Read on the rewriter, ≤ maxRead
	announce  bool       // Options.Announce: mark instead of hiding
	desc      string
}

var errUpstream = errors.New("upstream broke")

func makeChoices(in string, seed uint64) choices {
	return makeChoicesChunk(in, seed, 0)
}

// makeChoicesChunk is makeChoices with the source's chunks all of size
// chunk, when chunk > 0.
func makeChoicesChunk(in string, seed uint64, chunk int) choices {
	rng := rand.New(rand.NewPCG(seed, seed>>32^0x9e3779b97f4a7c15))
	var c choices
	switch rng.IntN(8) {
	case 0:
		c.maxToken = 1 + rng.IntN(16)
	case 1:
		c.maxToken = 1 + rng.IntN(len(in)+2)
	case 2:
		c.maxToken = 4096 + rng.IntN(8)
	default:
		c.maxToken = maxTokenBytes
	}
	mode := rng.IntN(4)
	salt := rng.Uint64()
	switch mode {
	case 0:
		c.refuse = nil
	case 1:
		c.refuse = func(string, string) bool { return true }
	case 2:
		c.refuse = policy("https://data.example.org/dataset/edit/x")
	case 3:
		c.refuse = func(method, action string) bool {
			h := fnv.New64a()
			h.Write([]byte(action))
			return (h.Sum64()^salt)&1 == 0
		}
	}
	sizes := []int{1, 2, 3, 7, 64, 1000, 4096, 5000, 1 << 16}
	if len(in) > 4096 {
		// Small reads make the Tokenizer copy the current token on every
		// read (quadratic in the token's length).
		sizes = sizes[5:]
	}
	if len(in) > maxTokenBytes/2 {
		c.maxToken = maxTokenBytes
	}
	maxChunk := sizes[rng.IntN(len(sizes))]
	c.chunk = func() int { return 1 + rng.IntN(maxChunk) }
	if chunk > 0 {
		maxChunk = chunk
		c.chunk = func() int { return chunk }
	}
	c.withEOF = rng.IntN(2) == 0
	c.endErr = io.EOF
	if rng.IntN(8) == 0 {
		c.endErr = errUpstream
	}
	c.zeroReads = rng.IntN(8) == 0
	c.maxRead = sizes[rng.IntN(len(sizes))]
	c.readSize = func() int { return 1 + rng.IntN(c.maxRead) }
	c.announce = rng.IntN(4) == 0
	c.desc = fmt.Sprintf("cap %d, refuse mode %d, chunks ≤ %d (EOF with data %v, end %v, zero reads %v), reads ≤ %d, announce %v",
		c.maxToken, mode, maxChunk, c.withEOF, c.endErr, c.zeroReads, c.maxRead, c.announce)
	return c
}

// chunkedSource hands out in as the choices say; two made from the same
// seed hand out the same pieces.
type chunkedSource struct {
	in    string
	c     choices
	rng   *rand.Rand
	zeros int
}

func newSource(in string, seed uint64, chunk int) *chunkedSource {
	// Its own copy of the choices, so both rewriters' sources draw the same.
	return &chunkedSource{in: in, c: makeChoicesChunk(in, seed, chunk), rng: rand.New(rand.NewPCG(seed, 1))}
}

func (s *chunkedSource) Read(p []byte) (int, error) {
	if s.c.zeroReads && s.zeros < 3 && s.rng.IntN(4) == 0 {
		s.zeros++
		return 0, nil
	}
	s.zeros = 0
	if len(s.in) == 0 {
		return 0, s.c.endErr
	}
	n := copy(p, s.in[:min(len(s.in), s.c.chunk())])
	s.in = s.in[n:]
	if len(s.in) == 0 && s.c.withEOF {
		return n, s.c.endErr
	}
	return n, nil
}

// call is one WouldRefuse question and its answer.
type call struct {
	method, action string
	refused        bool
}

// drain reads r with the read sizes of c until an error.
func drain(t testing.TB, r io.Reader, in string, c choices) (string, error) {
	t.Helper()
	var out strings.Builder
	buf := make([]byte, min(c.maxRead, 2*len(in)+8192))
	idle := 0
	for {
		n, err := r.Read(buf[:min(len(buf), c.readSize())])
		out.Write(buf[:n])
		if err != nil {
			return out.String(), err
		}
		if idle++; n > 0 {
			idle = 0
		} else if idle > 1000 {
			t.Fatalf("Read keeps returning (0, nil)")
		}
	}
}

// runDiff rewrites in with both rewriters and fails on any difference in the
// output, the final error or the questions asked.
func runDiff(t testing.TB, in string, seed uint64) {
	t.Helper()
	runDiffChunk(t, in, seed, 0)
}

// runDiffChunk is runDiff with the source's chunks all of size chunk, when
// chunk > 0.
func runDiffChunk(t testing.TB, in string, seed uint64, chunk int) {
	t.Helper()
	run := func(reference bool) (string, error, []call) {
		c := makeChoicesChunk(in, seed, chunk)
		var calls []call
		// Whole changes only how much each Read waits for: half the runs
		// fill every Read, and the output must not differ.
		opts := Options{Notice: testNotice, Whole: seed&1 == 1}
		if c.announce {
			opts.Announce, opts.Script = &testWindow, testScript
		}
		if c.refuse != nil {
			opts.WouldRefuse = func(method, action string) bool {
				r := c.refuse(method, action)
				calls = append(calls, call{method, action, r})
				return r
			}
		}
		src := newSource(in, seed, chunk)
		var r io.Reader
		if reference {
			r = newReference(src, opts, testNow, c.maxToken)
		} else {
			r = newRewriter(src, opts, testNow, c.maxToken)
		}
		out, err := drain(t, r, in, c)
		return out, err, calls
	}
	want, wantErr, wantCalls := run(true)
	got, gotErr, gotCalls := run(false)
	desc := makeChoicesChunk(in, seed, chunk).desc
	if got != want {
		assertSame(t, fmt.Sprintf("input %q, %s", in, desc), got, want)
	}
	if gotErr != wantErr {
		t.Fatalf("input %q, %s: error %v, reference %v", in, desc, gotErr, wantErr)
	}
	if fmt.Sprint(gotCalls) != fmt.Sprint(wantCalls) {
		t.Fatalf("input %q, %s: WouldRefuse asked %v, reference %v", in, desc, gotCalls, wantCalls)
	}
}

// fuzzSeeds are the testdata pages, FuzzRewrite's seeds and edgeCases.
func fuzzSeeds(t testing.TB) []string {
	files, err := filepath.Glob(filepath.Join("testdata", "*"))
	if err != nil {
		t.Fatal(err)
	}
	var seeds []string
	for _, f := range files {
		if fi, err := os.Stat(f); err != nil || fi.IsDir() {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		seeds = append(seeds, string(b))
	}
	seeds = append(seeds, "<body><form method=post action=/x><div></span></form>")
	return append(seeds, edgeCases...)
}

// FuzzFastMatchesReference: on any input, with any token cap, any refusal
// choices and any read sizes, the rewriter's output is the reference's.
func FuzzFastMatchesReference(f *testing.F) {
	for i, s := range fuzzSeeds(f) {
		f.Add(s, uint64(i))
	}
	f.Fuzz(func(t *testing.T, in string, seed uint64) {
		if len(in) > 16<<10 {
			// Whole pages run in TestFastMatchesReference; here, many
			// small inputs find more than a few large ones.
			in = in[:16<<10]
		}
		runDiff(t, in, seed)
	})
}

// TestFastMatchesReference runs every seed with many choices, and the long
// token cases at the real cap.
func TestFastMatchesReference(t *testing.T) {
	seeds := fuzzSeeds(t)
	for i, s := range seeds {
		n := uint64(40)
		if len(s) > 4096 {
			n = 8
		}
		for j := range n {
			runDiff(t, s, uint64(i)<<32|j)
		}
	}
	// Every short case with every small chunk size: a token that the
	// buffered input ends in the middle of, at every offset.
	for i, s := range edgeCases {
		for chunk := 1; chunk <= 12; chunk++ {
			for j := range uint64(4) {
				runDiffChunk(t, s, uint64(i)<<32|uint64(chunk)<<8|j, chunk)
			}
		}
	}
	long := strings.Repeat("x", maxTokenBytes)
	for _, in := range []string{
		"<html><body><p>" + long + "<form method=post action=/x></form>",
		"<html><body><form method=post action=/x>" + long + "</form><p>end",
		"<html><script>" + long + "</script><body><form method=post action=/x></form>",
		"<html><body><!--" + long + "--><form method=post action=/x></form>",
		"<html><body><img alt=\"" + long + "\"><form method=post action=/x></form>",
		"<html><body><form method=post action=/x><textarea>" + long[:maxTokenBytes-3] + "</textarea></form><p>end",
	} {
		for j := range uint64(3) {
			runDiff(t, in, j)
		}
	}
}
