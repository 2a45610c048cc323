package gate

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/ckanops/ckanops/api"
	"github.com/ckanops/ckanops/gate/annotate"
)

// These tests run the notice script (assets/notice.js) in Debian's
// headless Chromium: pages served through a gate in front of ckansim,
// and a page of annotate's output served alone with a status the test
// sets. Elsewhere than CI a missing chromium skips them; in CI
// (CI=true) it fails them: .ci/run installs it.

const chromiumPath = "/usr/bin/chromium"

// testPoll is the notice script's poll interval in these tests; a change
// shows within about two of them.
const testPoll = time.Second

// newChromium starts a headless Chromium with a profile of its own and
// returns a context to drive its tab with; the browser ends with the test.
func newChromium(t *testing.T) context.Context {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("chromium is needed for this test (apt-get install chromium): %v", err)
		}
		t.Skipf("no chromium (%v): apt-get install chromium to run this test", err)
	}
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(chromiumPath),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true), // tests run as root
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-quic", true),
		// /dev/shm is small in containers; Chromium crashes when it fills.
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.UserDataDir(t.TempDir()),
	)
	ctx, cancel := chromedp.NewContext(allocCtx, chromedp.WithLogf(t.Logf))
	t.Cleanup(func() {
		cancel()
		cancelAlloc()
	})
	// The first run starts the browser, with no timeout: a timeout there
	// would end the browser with the step (see chromedp.Run).
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return ctx
}

// browserDo runs browser actions with a timeout.
func browserDo(t *testing.T, ctx context.Context, what string, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := chromedp.Do(sctx, actions...); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// browserEval returns a JavaScript expression's value, decoded into T.
func browserEval[T any](t *testing.T, ctx context.Context, expr string) T {
	t.Helper()
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	v, err := chromedp.Run(sctx, chromedp.Evaluate[T](expr))
	if err != nil {
		t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

// browserWait waits until a JavaScript expression is true: within a few poll
// intervals of the notice script. It fails with the page's state when not.
func browserWait(t *testing.T, ctx context.Context, what, expr string) {
	t.Helper()
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	_, err := chromedp.Run(sctx, chromedp.Poll[chromedp.Void](expr,
		chromedp.WithPollingInterval(50*time.Millisecond), chromedp.WithPollingTimeout(5*testPoll)))
	if err != nil {
		t.Fatalf("%s: %v (within %s)\npage state: %s", what, err, 5*testPoll, browserState(t, ctx))
	}
}

// editState is what the tests read of the dataset edit page.
type editState struct {
	Banners    int    `json:"banners"`
	Mode       string `json:"mode"`   // the banner's data-ckanops-mode
	Banner     string `json:"banner"` // its text
	Marked     bool   `json:"marked"` // the edit form has data-ckanops-write
	HasForm    bool   `json:"hasForm"`
	Disabled   bool   `json:"disabled"` // the edit form's submit button
	Note       string `json:"note"`     // the note right before it
	Notes      int    `json:"notes"`    // .ckanops-submit-notice elements
	Typed      string `json:"typed"`    // the description field's value
	FormNotice bool   `json:"formNotice"`
	Script     string `json:"script"` // the notice script's data-ckanops-poll
}

const editStateJS = `(() => {
	const b = document.querySelectorAll('.ckanops-banner');
	const f = document.getElementById('dataset-edit');
	const btn = f && f.querySelector('button[type=submit]');
	const prev = btn && btn.previousElementSibling;
	const notes = document.getElementById('field-notes');
	const s = document.querySelector('script[src$="/-/ckanops/notice.js"]');
	return {
		banners: b.length,
		mode: b.length ? b[0].getAttribute('data-ckanops-mode') : '',
		banner: b.length ? b[0].textContent : '',
		marked: !!f && f.hasAttribute('data-ckanops-write'),
		hasForm: !!f,
		disabled: !!btn && btn.disabled,
		note: prev && prev.classList.contains('ckanops-submit-notice') ? prev.getAttribute('role') + ': ' + prev.textContent : '',
		notes: document.querySelectorAll('.ckanops-submit-notice').length,
		typed: notes ? notes.value : '',
		formNotice: !!document.querySelector('.ckanops-form-notice'),
		script: s ? s.getAttribute('data-ckanops-poll') : '',
	};
})()`

func browserState(t *testing.T, ctx context.Context) string {
	sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	v, err := chromedp.Run(sctx, chromedp.Evaluate[editState](editStateJS))
	if err != nil {
		return err.Error()
	}
	return fmt.Sprintf("%+v", v)
}

const pausedNote = "note: Saving is paused for maintenance. Nothing you typed is lost: keep this page open and save once the site is back."

// TestChromiumNoticeScript: pages that the gate announces or annotates
// learn of a mode change while they are open.
func TestChromiumNoticeScript(t *testing.T) {
	ctx := newChromium(t)
	r := newRig(t, func(o *Options) { o.NoticePoll = testPoll })
	front := r.srv.URL
	if res := r.do("GET", api.PathNoticeScript, nil); res.status != http.StatusOK || res.header.Get("Content-Type") != "text/javascript; charset=utf-8" {
		t.Fatalf("GET %s through the gate: %d %s", api.PathNoticeScript, res.status, res.header.Get("Content-Type"))
	}

	// Log in as ckansim's sysadmin (the edit page needs a user) and hand
	// the session cookie to the browser.
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	res, err := noRedirect.PostForm(front+"/user/login", url.Values{"login": {"admin"}, "password": {"demo-password"}})
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	var session *http.Cookie
	for _, c := range res.Cookies() {
		if c.Name == "ckan" {
			session = c
		}
	}
	if session == nil {
		t.Fatalf("login: %d, no session cookie", res.StatusCode)
	}
	browserDo(t, ctx, "set the session cookie", chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		_, err := cdp.Call(ctx, tg, network.SetCookie, network.SetCookieParams{Name: session.Name, Value: session.Value, URL: front})
		return err
	}))
	editURL := front + "/dataset/edit/air-quality-2024"
	const typed = "Typed while the window was announced: keep me."

	t.Run("announced, then read-only, then live", func(t *testing.T) {
		at := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
		body := fmt.Sprintf(`{"at": %q, "for": "2h", "message": "Upgrade", "announce": "24h"}`, at)
		if res := r.do("POST", api.PathSchedule, strings.NewReader(body), "Authorization", "Bearer "+opsToken, "Content-Type", "application/json"); res.status != http.StatusOK {
			t.Fatalf("POST %s: %d %s", api.PathSchedule, res.status, res.body)
		}
		browserDo(t, ctx, "open the edit page", chromedp.Navigate(editURL), chromedp.WaitReady(chromedp.CSS("#field-notes")))
		st := browserEval[editState](t, ctx, editStateJS)
		if st.Banners != 1 || st.Mode != "announce" || !st.Marked || st.Disabled || st.Notes != 0 || st.Script != "1" {
			t.Fatalf("announced page: %+v", st)
		}
		for _, want := range []string{"Test Data Portal will be read-only for maintenance from", "for 2h (ends", "(starts in ", "Upgrade"} {
			if !strings.Contains(st.Banner, want) {
				t.Errorf("announce banner lacks %q: %q", want, st.Banner)
			}
		}
		if v := browserEval[string](t, ctx, `document.visibilityState`); v != "visible" {
			t.Fatalf("the page is %s: the script does not poll a hidden page", v)
		}

		browserDo(t, ctx, "type into the description", chromedp.Clear(chromedp.CSS("#field-notes")), chromedp.SendKeys(chromedp.CSS("#field-notes"), typed))

		r.mustMode(api.ModeReadOnly, "Upgrade under way")
		browserWait(t, ctx, "the read-only banner replaces the announce banner",
			`document.querySelectorAll('.ckanops-banner').length === 1 && document.querySelector('.ckanops-banner').getAttribute('data-ckanops-mode') === 'read-only'`)
		browserWait(t, ctx, "the submit button is disabled", `document.querySelector('#dataset-edit button[type=submit]').disabled`)
		st = browserEval[editState](t, ctx, editStateJS)
		if !st.Disabled || st.Note != pausedNote || st.Typed != typed || !strings.Contains(st.Banner, "read-only mode for maintenance") || !strings.Contains(st.Banner, "Upgrade under way") {
			t.Fatalf("after the switch to read-only: %+v", st)
		}
		// A marked form cannot be sent (Enter in a field, a script).
		sent := browserEval[bool](t, ctx, `(() => { const f = document.getElementById('dataset-edit'); const e = new Event('submit', {bubbles: true, cancelable: true}); return f.dispatchEvent(e); })()`)
		if sent {
			t.Errorf("a submit event on the marked form was not cancelled during the maintenance")
		}

		r.mustMode(api.ModeLive, "")
		browserWait(t, ctx, "the banner and the notes go", `!document.querySelector('.ckanops-banner') && !document.querySelector('.ckanops-submit-notice')`)
		st = browserEval[editState](t, ctx, editStateJS)
		if st.Disabled || st.Banners != 0 || st.Notes != 0 || st.Typed != typed || !st.HasForm {
			t.Fatalf("back live: %+v", st)
		}
	})

	t.Run("loaded read-only, then live", func(t *testing.T) {
		r.mustMode(api.ModeReadOnly, "Snapshot")
		browserDo(t, ctx, "open the edit page", chromedp.Navigate(editURL), chromedp.WaitReady(chromedp.CSS(".ckanops-banner")))
		st := browserEval[editState](t, ctx, editStateJS)
		if st.Mode != "read-only" || st.HasForm || !st.FormNotice || st.Script != "1" {
			t.Fatalf("read-only page: %+v", st)
		}
		// A poll that says the same changes nothing: the gate's banner stays.
		browserWait(t, ctx, "the script has polled", `performance.getEntriesByType('resource').some(e => e.name.endsWith('/-/ckanops/status'))`)
		if b := browserEval[string](t, ctx, `document.querySelector('.ckanops-banner').textContent`); b != st.Banner {
			t.Errorf("a poll that says the same changed the banner: %q", b)
		}

		r.mustMode(api.ModeLive, "")
		browserWait(t, ctx, "the reload note", `(() => { const b = document.querySelector('.ckanops-banner'); return b && b.textContent === 'Maintenance is over: reload the page to edit.' && !!b.querySelector('a[href]'); })()`)

		browserDo(t, ctx, "follow the reload link", chromedp.Click(chromedp.CSS(".ckanops-banner a")), chromedp.WaitReady(chromedp.CSS("#dataset-edit")))
		st = browserEval[editState](t, ctx, editStateJS)
		if !st.HasForm || st.FormNotice || st.Mode != "announce" {
			t.Fatalf("reloaded live (the window still announced): %+v", st)
		}
	})
}

// TestChromiumNoticeScriptAlone runs the script on a page of annotate's
// output served with a strict Content-Security-Policy, against a status
// the test sets: the gate's own banner is kept while the status says what
// it says, the banner follows an overrun (styled despite the policy), the
// buttons the gate disabled are enabled when it is over and disabled
// again if the maintenance comes back, and failed polls do not stop it.
func TestChromiumNoticeScriptAlone(t *testing.T) {
	ctx := newChromium(t)
	until := time.Now().Add(time.Hour).UTC().Truncate(time.Second)
	var mu sync.Mutex
	status := map[string]any{"mode": "read-only", "message": "Reindexing", "until": until.Format(time.RFC3339)}
	broken := false
	set := func(f func()) {
		mu.Lock()
		defer mu.Unlock()
		f()
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /-/ckanops/notice.js", serveNoticeScript)
	mux.HandleFunc("GET /-/ckanops/status", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		if r.Header.Get("Cookie") != "" {
			t.Errorf("the status poll sent cookies: %q", r.Header.Get("Cookie"))
		}
		if broken {
			http.Error(w, "gate restarting", http.StatusBadGateway)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		json.NewEncoder(w).Encode(status)
	})
	page := `<!DOCTYPE html><html><head><title>Search</title></head><body>` +
		`<form id="search" action="/dataset/" method="get"><textarea id="q" name="q"></textarea>` +
		`<button type="submit">Search</button>` +
		`<button id="bulk" type="submit" formmethod="post" formaction="/dataset/bulk_process/x">Delete selected</button></form>` +
		`</body></html>`
	mux.HandleFunc("GET /dataset/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Set-Cookie", "session=secret; Path=/")
		w.Header().Set("Content-Security-Policy", "default-src 'self'; script-src 'self'; style-src 'self'")
		rw := annotate.NewReader(strings.NewReader(page), annotate.Options{
			Notice: annotate.Notice{SiteTitle: "Alone", Message: "Reindexing", Until: &until, Mode: "read-only"},
			WouldRefuse: func(method, action string) bool {
				return method == "POST"
			},
			Script: api.PathNoticeScript, ScriptPoll: testPoll,
		})
		defer rw.Close()
		buf := make([]byte, 4096)
		for {
			n, err := rw.Read(buf)
			w.Write(buf[:n])
			if err != nil {
				return
			}
		}
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()

	browserDo(t, ctx, "open the page", chromedp.Navigate(srv.URL+"/dataset/"), chromedp.WaitReady(chromedp.CSS("#bulk")))
	state := `(() => {
		const b = document.querySelector('.ckanops-banner'), bulk = document.getElementById('bulk');
		const prev = bulk.previousElementSibling;
		return {banners: document.querySelectorAll('.ckanops-banner').length, mode: b ? b.getAttribute('data-ckanops-mode') : '',
			banner: b ? b.textContent : '', disabled: bulk.disabled, notes: document.querySelectorAll('.ckanops-submit-notice').length,
			note: prev && prev.classList.contains('ckanops-submit-notice') ? prev.textContent : '',
			typed: document.getElementById('q').value,
			background: b ? getComputedStyle(b).backgroundColor : ''};
	})()`
	type aloneState struct {
		Banners    int    `json:"banners"`
		Mode       string `json:"mode"`
		Banner     string `json:"banner"`
		Disabled   bool   `json:"disabled"`
		Notes      int    `json:"notes"`
		Note       string `json:"note"`
		Typed      string `json:"typed"`
		Background string `json:"background"`
	}
	st := browserEval[aloneState](t, ctx, state)
	gateBanner := st.Banner
	if st.Mode != "read-only" || !st.Disabled || st.Notes != 1 || !strings.Contains(gateBanner, "Alone is in read-only mode") {
		t.Fatalf("annotated page: %+v", st)
	}
	browserDo(t, ctx, "type a query", chromedp.SendKeys(chromedp.CSS("#q"), "rainfall"))

	// Polls that say what the page says keep the gate's banner.
	browserWait(t, ctx, "two polls", `performance.getEntriesByType('resource').filter(e => e.name.endsWith('/-/ckanops/status')).length >= 2`)
	if st := browserEval[aloneState](t, ctx, state); st.Banner != gateBanner || !st.Disabled {
		t.Fatalf("a poll that says the same changed the page: %+v", st)
	}

	// Overrun: the banner says so, styled through the CSSOM (the policy
	// blocks the gate's style attributes, not the script's styles).
	set(func() { status["overrun"] = true })
	browserWait(t, ctx, "the overrun banner", `document.querySelector('.ckanops-banner').textContent.includes('the work is taking longer than planned')`)
	st = browserEval[aloneState](t, ctx, state)
	if st.Banners != 1 || st.Mode != "read-only" || !strings.Contains(st.Banner, "Reindexing") || st.Background != "rgb(255, 243, 205)" || !st.Disabled {
		t.Fatalf("overrun: %+v", st)
	}

	// The gate does not answer for a while: nothing changes, and polling
	// goes on (backing off) until it answers again.
	const pollsJS = `performance.getEntriesByType('resource').filter(e => e.name.endsWith('/-/ckanops/status')).length`
	n := browserEval[int](t, ctx, pollsJS)
	set(func() { broken = true })
	browserWait(t, ctx, "a failed poll", fmt.Sprintf("%s >= %d", pollsJS, n+1))
	set(func() { broken = false; status = map[string]any{"mode": "live", "message": ""} })

	browserWait(t, ctx, "the reload note", `(() => { const b = document.querySelector('.ckanops-banner'); return b && b.textContent === 'Maintenance is over: reload the page to edit.'; })()`)
	st = browserEval[aloneState](t, ctx, state)
	if st.Disabled || st.Notes != 0 || st.Typed != "rainfall" {
		t.Fatalf("over: the gate's button is not enabled again, or its note stayed: %+v", st)
	}

	// The maintenance comes back: the button the script enabled is
	// disabled again, with the script's note.
	set(func() { status = map[string]any{"mode": "down", "message": "Back soon"} })
	browserWait(t, ctx, "the down banner", `document.querySelector('.ckanops-banner').getAttribute('data-ckanops-mode') === 'down'`)
	st = browserEval[aloneState](t, ctx, state)
	if !st.Disabled || st.Notes != 1 || "note: "+st.Note != pausedNote || !strings.Contains(st.Banner, "down for maintenance") || st.Typed != "rainfall" {
		t.Fatalf("down again: %+v", st)
	}
}

// TestChromiumRefusalPageLearnsTheEnd: the gate's own refusal pages load
// the notice script under their strict policy, and tell the reader when the
// maintenance is over: after a refused form, to go back to it and send it
// again (a reload would send it unseen); after a refused page, to reload.
func TestChromiumRefusalPageLearnsTheEnd(t *testing.T) {
	ctx := newChromium(t)
	r := newRig(t, func(o *Options) { o.NoticePoll = testPoll })
	front := r.srv.URL
	const over = `(() => { const b = document.querySelector('.ckanops-banner'); return b && !b.hidden && b.getAttribute('data-ckanops-mode') === 'live' ? b.textContent : ''; })()`

	t.Run("a refused form", func(t *testing.T) {
		r.mustMode(api.ModeReadOnly, "Snapshot")
		browserDo(t, ctx, "open the listing", chromedp.Navigate(front+"/dataset/"), chromedp.WaitReady(chromedp.CSS("body")))
		// Sent once the evaluation has returned: a navigation under way
		// would cut it short.
		browserEval[bool](t, ctx, `(() => {
			const f = document.createElement('form');
			f.method = 'POST';
			f.action = '/dataset/edit/air-quality-2024';
			const i = document.createElement('input');
			i.name = 'notes';
			i.value = 'typed before the refusal';
			f.appendChild(i);
			document.body.appendChild(f);
			setTimeout(() => f.submit(), 0);
			return true;
		})()`)
		browserWaitNav(t, ctx, "the refusal page", `document.body && document.body.textContent.includes('Nothing was saved') && !!document.querySelector('script[data-ckanops-refused="post"]')`)
		browserWait(t, ctx, "the script has polled", `performance.getEntriesByType('resource').some(e => e.name.endsWith('/-/ckanops/status'))`)
		if b := browserEval[string](t, ctx, over); b != "" {
			t.Fatalf("a banner while read-only: %q", b)
		}
		r.mustMode(api.ModeLive, "")
		browserWait(t, ctx, "the end of the maintenance", over+` === 'Maintenance is over: go back to the form and send it again.'`)
		if v := browserEval[string](t, ctx, `document.querySelector('textarea').value`); v != "typed before the refusal" {
			t.Errorf("the text shown back: %q", v)
		}
		browserDo(t, ctx, "go back", chromedp.Click(chromedp.CSS(".ckanops-banner a")))
		browserWaitNav(t, ctx, "the listing again", `location.pathname === '/dataset/' && !document.querySelector('script[data-ckanops-refused]')`)
	})

	t.Run("a refused page", func(t *testing.T) {
		r.mustMode(api.ModeDown, "Database upgrade")
		browserDo(t, ctx, "open the listing", chromedp.Navigate(front+"/dataset/"), chromedp.WaitReady(chromedp.CSS("script[data-ckanops-refused=get]")))
		r.mustMode(api.ModeLive, "")
		browserWait(t, ctx, "the end of the maintenance", over+` === 'Maintenance is over: reload the page.'`)
		browserDo(t, ctx, "reload", chromedp.Click(chromedp.CSS(".ckanops-banner a")))
		browserWaitNav(t, ctx, "the listing", `!document.querySelector('script[data-ckanops-refused]') && !document.querySelector('.ckanops-banner') && document.title !== ''`)
	})
}

// browserWaitNav is browserWait across a navigation: while the page is
// replaced, an evaluation fails (its context is gone) and is tried again.
func browserWaitNav(t *testing.T, ctx context.Context, what, expr string) {
	t.Helper()
	deadline := time.Now().Add(5 * testPoll)
	var err error
	for time.Now().Before(deadline) {
		sctx, cancel := context.WithTimeout(ctx, time.Second)
		var ok bool
		ok, err = chromedp.Run(sctx, chromedp.Evaluate[bool](expr))
		cancel()
		if err == nil && ok {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s: not true within %s (last error: %v)\npage state: %s", what, 5*testPoll, err, browserState(t, ctx))
}
