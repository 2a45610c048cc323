package ckansim

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestHTMLErrors(t *testing.T) {
	s := newSim(t, "2.11")
	cases := []struct {
		method, path string
		status       int
		want         string
	}{
		{"GET", "/no-such-page", 404, "404 Not Found"},
		{"GET", "/dataset/no-such-dataset", 404, "Dataset not found"},
		{"GET", "/base/css/no-such.css", 404, "404 Not Found"},
		{"DELETE", "/dataset/" + seedDataset, 405, "405 Method Not Allowed"},
		{"PUT", "/api/3/action/package_create", 405, "405 Method Not Allowed"},
		{"GET", "/ckan-admin/", 403, "Need to be system administrator to administer"},
		// As in Werkzeug, GET on a POST-only rule falls through to the
		// static files rule: a 404, not a 405.
		{"GET", "/dataset/follow/" + seedDataset, 404, "404 Not Found"},
	}
	for _, c := range cases {
		w := call(s, c.method, c.path, "", "", "")
		if w.Code != c.status || !strings.Contains(w.Body.String(), c.want) {
			t.Errorf("%s %s: %d, want %d with %q", c.method, c.path, w.Code, c.status, c.want)
			continue
		}
		p := checkCKANPage(t, c.path, w.Body.String())
		if title := fmt.Sprintf("Error %d - CKAN Demo", c.status); p.title() != title {
			t.Errorf("%s %s: title %q, want %q", c.method, c.path, p.title(), title)
		}
	}
	if w := call(s, "DELETE", "/dataset/x", "", "", ""); w.Header().Get("Allow") != "GET, HEAD, OPTIONS" {
		t.Errorf("405 Allow: %q", w.Header().Get("Allow"))
	}
	w := call(s, "OPTIONS", "/api/3/action/package_create", "", "", "")
	if w.Code != 200 || w.Header().Get("Allow") != "GET, HEAD, OPTIONS, POST" || last(s).Write {
		t.Errorf("OPTIONS: %d Allow %q write %v", w.Code, w.Header().Get("Allow"), last(s).Write)
	}
}

func TestRedirects(t *testing.T) {
	s := newSim(t, "2.11")
	cases := []struct{ path, status, location string }{
		{"/dataset", "308", "http://" + testHost + "/dataset/"},
		{"/dataset//" + seedDataset, "308", "http://" + testHost + "/dataset/" + seedDataset},
		{"/zh_CN/dataset/", "308", "http://" + testHost + "/zh_Hans_CN/dataset/"},
		{"/user/me", "302", "http://" + testHost + "/dashboard/datasets"},
		{"/dashboard/datasets", "302", "http://" + testHost + "/user/login"},
		{"/dataset/" + seedLinkDataset + "/resource/11aef636-7b55-4e24-a615-958989c4f051/download", "302", "https://gis.example.org/bus-stops.geojson"},
	}
	for _, c := range cases {
		w := call(s, "GET", c.path, "", "", "")
		if fmt.Sprint(w.Code) != c.status || w.Header().Get("Location") != c.location {
			t.Errorf("%s: %d %q, want %s %q", c.path, w.Code, w.Header().Get("Location"), c.status, c.location)
		}
	}
	// A redirect's target is served: the new locale name is stripped.
	if w := call(s, "GET", "/zh_Hans_CN/dataset/", "", "", ""); w.Code != 200 || last(s).Endpoint != "dataset.search" {
		t.Errorf("/zh_Hans_CN/dataset/: %d %s", w.Code, last(s).Endpoint)
	}
}

func TestFailNext(t *testing.T) {
	s := newSim(t, "2.11")
	s.FailNext(3, http.StatusBadGateway)
	for i := 0; i < 3; i++ {
		w := action(s, "package_create", SysadminToken, `{"name": "never-made", "owner_org": "demo-org"}`)
		if w.Code != 502 || !strings.Contains(w.Body.String(), "<center><h1>502 Bad Gateway</h1></center>") {
			t.Fatalf("failure %d: %d %s", i, w.Code, w.Body)
		}
	}
	if len(s.Writes()) != 0 {
		t.Errorf("failed requests wrote: %+v", s.Writes())
	}
	if w := call(s, "GET", "/api/3/action/package_show?id=never-made", "", "", ""); w.Code != 404 {
		t.Errorf("after the failures: %d, want 404 (nothing was created)", w.Code)
	}
	for status, want := range map[int]string{500: "500 Internal Server Error", 503: "503 Service Temporarily Unavailable", 504: "504 Gateway Time-out"} {
		s.FailNext(1, status)
		w := call(s, "GET", "/", "", "", "")
		if w.Code != status || !strings.Contains(w.Body.String(), want) || !strings.HasPrefix(w.Header().Get("Content-Type"), "text/html") {
			t.Errorf("FailNext(%d): %d %s", status, w.Code, w.Body)
		}
		if last(s).Status != status {
			t.Errorf("FailNext(%d): journal status %d", status, last(s).Status)
		}
	}
	if w := call(s, "GET", "/", "", "", ""); w.Code != 200 {
		t.Errorf("after FailNext ran out: %d", w.Code)
	}
}

func TestJournal(t *testing.T) {
	s := newSim(t, "2.11")
	r := newRequest("POST", "/api/3/action/package_patch", `{"id": "`+seedDataset+`", "notes": "x"}`)
	r.Header.Set("Authorization", SysadminToken)
	r.Header.Set("X-Forwarded-For", "203.0.113.9")
	r.Header.Set("X-Forwarded-Proto", "https")
	serveRequest(s, r)
	call(s, "GET", "/api/3/action/package_show?id="+seedDataset, "", "", "")
	j := s.Journal()
	if len(j) != 2 {
		t.Fatalf("journal has %d entries", len(j))
	}
	e := j[0]
	if e.Method != "POST" || e.Path != "/api/3/action/package_patch" || e.Endpoint != "api.action" || e.Action != "package_patch" ||
		!e.Write || e.Status != 200 || e.Remote == "" || e.Header.Get("X-Forwarded-For") != "203.0.113.9" || e.Time.IsZero() {
		t.Errorf("entry: %+v", e)
	}
	j[0].Header.Set("X-Forwarded-For", "changed")
	if s.Journal()[0].Header.Get("X-Forwarded-For") != "203.0.113.9" {
		t.Error("Journal shares its headers with callers")
	}
	if w := s.Writes(); len(w) != 1 || w[0].Action != "package_patch" {
		t.Errorf("Writes: %+v", w)
	}
	s.ResetJournal()
	if len(s.Journal()) != 0 {
		t.Error("ResetJournal kept entries")
	}
}

func TestUploadStreams(t *testing.T) {
	s := newSim(t, "2.11")
	srv := httptest.NewServer(s)
	defer srv.Close()

	const size = 5<<20 + 123 // several MB, larger than what ckansim keeps
	pr, pw := io.Pipe()
	mw := multipart.NewWriter(pw)
	sum := sha256.New()
	go func() {
		mw.WriteField("package_id", seedDataset)
		mw.WriteField("name", "Big upload")
		part, err := mw.CreateFormFile("upload", "big data.bin")
		if err != nil {
			pw.CloseWithError(err)
			return
		}
		chunk := bytes.Repeat([]byte("0123456789abcdef"), 4096)
		for left := size; left > 0; {
			n := min(left, len(chunk))
			part.Write(chunk[:n])
			sum.Write(chunk[:n])
			left -= n
		}
		pw.CloseWithError(mw.Close())
	}()
	req, _ := http.NewRequest("POST", srv.URL+"/api/3/action/resource_create", pr)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	req.Header.Set("Authorization", EditorToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body := readAll(t, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("resource_create: %d %s", resp.StatusCode, body)
	}
	want := hex.EncodeToString(sum.Sum(nil))
	for _, key := range []string{`"size": 5243003`, `"sha256": "` + want + `"`, `"url_type": "upload"`, `/download/big-data.bin"`} {
		if !strings.Contains(body, key) {
			t.Errorf("resource_create result lacks %s: %.600s", key, body)
		}
	}
	if e := last(s); !e.Write || e.Action != "resource_create" {
		t.Errorf("journal: %+v", e)
	}

	// The download has the file's length (its bytes were not kept).
	var res struct {
		Result struct{ ID, URL string }
	}
	decodeJSON([]byte(body), &res)
	resp, err = http.Get(strings.Replace(res.Result.URL, "http://"+srv.Listener.Addr().String(), srv.URL, 1))
	if err != nil {
		t.Fatal(err)
	}
	n, _ := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || n != size {
		t.Errorf("download: %d, %d bytes, want %d", resp.StatusCode, n, size)
	}
}

func TestSmallUploadRoundTrip(t *testing.T) {
	s := newSim(t, "2.11")
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	mw.WriteField("package_id", seedDataset)
	fw, _ := mw.CreateFormFile("upload", "notes.txt")
	fw.Write([]byte("hello, ckan\n"))
	mw.Close()
	w := call(s, "POST", "/api/3/action/resource_create", EditorToken, mw.FormDataContentType(), buf.String())
	e := decodeEnvelope(t, w, "resource_create")
	res := e.Result.(map[string]any)
	u, _ := url.Parse(res["url"].(string))
	d := call(s, "GET", u.Path, "", "", "")
	if d.Code != 200 || d.Body.String() != "hello, ckan\n" || d.Header().Get("Content-Type") != "text/plain" || res["format"] != "TXT" {
		t.Errorf("download: %d %q %q, format %v", d.Code, d.Body, d.Header().Get("Content-Type"), res["format"])
	}
}

func TestGzip(t *testing.T) {
	s := newSim(t, "2.11")
	srv := httptest.NewServer(s)
	defer srv.Close()
	client := &http.Client{Transport: &http.Transport{DisableCompression: true}}
	for _, path := range []string{"/dataset/" + seedDataset, "/api/3/action/status_show"} {
		for _, accept := range []string{"gzip, deflate, br", ""} {
			req, _ := http.NewRequest("GET", srv.URL+path, nil)
			if accept != "" {
				req.Header.Set("Accept-Encoding", accept)
			}
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			var r io.Reader = resp.Body
			gzipped := resp.Header.Get("Content-Encoding") == "gzip"
			if gzipped != (accept != "") || resp.Header.Get("Vary") != "Accept-Encoding" {
				t.Errorf("%s Accept-Encoding %q: Content-Encoding %q, Vary %q", path, accept, resp.Header.Get("Content-Encoding"), resp.Header.Get("Vary"))
			}
			if gzipped {
				zr, err := gzip.NewReader(resp.Body)
				if err != nil {
					t.Fatal(err)
				}
				r = zr
			}
			body := readAll(t, r)
			resp.Body.Close()
			if !strings.Contains(body, "CKAN Demo") {
				t.Errorf("%s Accept-Encoding %q: body %.100q", path, accept, body)
			}
		}
	}
}

// TestConcurrentRequests mixes reads, writes and page views from many
// goroutines (run it with -race).
func TestConcurrentRequests(t *testing.T) {
	s := newSim(t, "2.11")
	const workers, each = 16, 20
	var wg sync.WaitGroup
	for i := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range each {
				switch j % 5 {
				case 0:
					action(s, "package_create", EditorToken, fmt.Sprintf(`{"name": "ds-%d-%d", "owner_org": "demo-org"}`, i, j))
				case 1:
					action(s, "package_search", "", `{"q": "ds", "rows": 5}`)
				case 2:
					call(s, "GET", "/dataset/"+seedDataset, "", "", "")
				case 3:
					action(s, "datastore_upsert", EditorToken, fmt.Sprintf(`{"resource_id": "%s", "records": [{"station": "S%d", "date": "2024-03-%02d", "pm25": %d}]}`, seedCSV, i, j%28+1, j))
				case 4:
					s.Journal()
					s.SetLatency(0, 0)
				}
			}
		}()
	}
	wg.Wait()
	if n := len(s.Journal()); n != workers*each*4/5 {
		t.Errorf("journal has %d entries, want %d", n, workers*each*4/5)
	}
	if n := len(s.Writes()); n != workers*each*2/5 {
		t.Errorf("%d writes, want %d", n, workers*each*2/5)
	}
	e := decodeEnvelope(t, action(s, "package_list", "", `{}`), "package_list")
	if got := len(e.Result.([]any)); got != 2+workers*each/5 {
		t.Errorf("%d public datasets, want the 2 seeded and %d created", got, workers*each/5)
	}
}

// TestLatencyHonoursCancellation checks a client that gives up frees the
// handler at once, and that WriteLatency delays writes only.
func TestLatencyHonoursCancellation(t *testing.T) {
	s := newSim(t, "2.11")
	s.SetLatency(0, time.Hour)
	srv := httptest.NewServer(s)
	defer srv.Close()

	if w := call(s, "GET", "/api/3/action/package_list", "", "", ""); w.Code != 200 {
		t.Fatalf("a read waited for the write latency: %d", w.Code)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "POST", srv.URL+"/api/3/action/package_create", strings.NewReader(`{"name": "slow-one", "owner_org": "demo-org"}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", SysadminToken)
	done := make(chan error, 1)
	go func() {
		_, err := http.DefaultClient.Do(req)
		done <- err
	}()

	// While it waits, the write is in the journal, unanswered.
	waitFor(t, "the slow write to arrive", func() bool { return len(s.Journal()) == 2 })
	if e := last(s); e.Status != 0 || !e.Write || e.Action != "package_create" {
		t.Errorf("write in flight: %+v", e)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("slow write: err %v, want the client's cancellation", err)
	}
	// The handler must return soon after the client left (the hour-long
	// latency would otherwise hold it).
	waitFor(t, "the handler to give up", func() bool { return last(s).Status != 0 })
	if e := last(s); e.Status != statusClientClosed || !e.Write {
		t.Errorf("cancelled write: %+v", e)
	}
	s.SetLatency(0, 0)
	if w := call(s, "GET", "/api/3/action/package_show?id=slow-one", "", "", ""); w.Code != 404 {
		t.Errorf("the cancelled write ran: %d", w.Code)
	}
}

// waitFor polls cond until it holds, failing after a generous deadline.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

func TestUIForms(t *testing.T) {
	s := newSim(t, "2.11")
	srv := httptest.NewServer(s)
	defer srv.Close()
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	post := func(path string, form url.Values, cookie *http.Cookie) *http.Response {
		req, _ := http.NewRequest("POST", srv.URL+path, strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if cookie != nil {
			req.AddCookie(cookie)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}

	// Logging in is bookkeeping: a session cookie and a redirect.
	resp := post("/user/login", url.Values{"login": {"editor"}, "password": {"wrong"}}, nil)
	if resp.StatusCode != 200 || len(resp.Cookies()) != 0 {
		t.Errorf("bad login: %d %v", resp.StatusCode, resp.Cookies())
	}
	resp = post("/user/login", url.Values{"login": {"editor"}, "password": {seedPassword}}, nil)
	if resp.StatusCode != 302 || len(resp.Cookies()) == 0 || last(s).Write {
		t.Fatalf("login: %d %v write=%v", resp.StatusCode, resp.Cookies(), last(s).Write)
	}
	cookie := resp.Cookies()[0]

	// The session's CSRF token is on the form page, and required.
	req, _ := http.NewRequest("GET", srv.URL+"/dataset/new", nil)
	req.AddCookie(cookie)
	page, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	p := parsePage(t, readAll(t, page.Body))
	page.Body.Close()
	var token string
	for _, f := range p.postForms() {
		for _, in := range within(f, "input") {
			if attr(in, "name") == csrfField {
				token = attr(in, "value")
			}
		}
	}
	newDataset := url.Values{"name": {"from-the-form"}, "title": {"From the form"}, "notes": {"Typed in a browser"}, "owner_org": {"demo-org"}}
	if resp := post("/dataset/new", newDataset, cookie); resp.StatusCode != 400 || last(s).Write {
		t.Errorf("POST without CSRF token: %d write=%v", resp.StatusCode, last(s).Write)
	}
	newDataset.Set(csrfField, token)
	resp = post("/dataset/new", newDataset, cookie)
	if resp.StatusCode != 302 || !strings.HasSuffix(resp.Header.Get("Location"), "/dataset/from-the-form/resource/new") || !last(s).Write {
		t.Fatalf("dataset new: %d %q write=%v", resp.StatusCode, resp.Header.Get("Location"), last(s).Write)
	}
	e := decodeEnvelope(t, action(s, "package_show", EditorToken, `{"id": "from-the-form"}`), "package_show")
	if res := e.Result.(map[string]any); res["state"] != "draft" || res["notes"] != "Typed in a browser" {
		t.Errorf("created by the form: %v", res)
	}

	// With an API token, CKAN skips the CSRF check.
	req, _ = http.NewRequest("POST", srv.URL+"/dataset/edit/"+seedDataset, strings.NewReader(url.Values{"title": {"Edited by token"}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Authorization", EditorToken)
	resp, err = client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if !last(s).Write {
		t.Error("dataset edit is not journalled as a write")
	}
	e = decodeEnvelope(t, action(s, "package_show", "", `{"id": "`+seedDataset+`"}`), "package_show")
	if resp.StatusCode != 302 || e.Result.(map[string]any)["title"] != "Edited by token" {
		t.Errorf("dataset edit: %d, title %v", resp.StatusCode, e.Result.(map[string]any)["title"])
	}

	// The resource form is multipart; adding data activates the draft.
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	mw.WriteField("name", "Levels")
	fw, _ := mw.CreateFormFile("upload", "levels.csv")
	fw.Write([]byte("db\n55\n"))
	mw.Close()
	req, _ = http.NewRequest("POST", srv.URL+"/dataset/from-the-form/resource/new", &buf)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	req.Header.Set("Authorization", EditorToken)
	if resp, err = client.Do(req); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if e := last(s); e.Endpoint != "dataset_resource.new" || !e.Write {
		t.Errorf("resource form journalled as %+v", e)
	}
	e = decodeEnvelope(t, action(s, "package_show", "", `{"id": "from-the-form"}`), "package_show")
	res := e.Result.(map[string]any)
	if resp.StatusCode != 302 || res["state"] != "active" || res["num_resources"] != 1.0 ||
		res["resources"].([]any)[0].(map[string]any)["size"] != 6.0 {
		t.Errorf("resource form: %d %v", resp.StatusCode, res)
	}

	// Page-view tracking is a write CKAN's middleware answers.
	if resp := post("/_tracking", url.Values{"url": {"/dataset/x"}, "type": {"page"}}, nil); resp.StatusCode != 200 || !last(s).Write || last(s).Endpoint != "" {
		t.Errorf("/_tracking: %d %+v", resp.StatusCode, last(s))
	}
	// Logging out is bookkeeping too.
	if resp := post("/user/_logout", url.Values{csrfField: {token}}, cookie); resp.StatusCode != 302 || last(s).Write {
		t.Errorf("logout: %d write=%v", resp.StatusCode, last(s).Write)
	}
}

// TestFollowOnGET checks CKAN 2.10's GET follow routes write, and that in
// 2.11 (POST only) the same GET writes nothing.
func TestFollowOnGET(t *testing.T) {
	s := newSim(t, "2.10")
	if w := call(s, "GET", "/organization/follow/demo-org", EditorToken, "", ""); w.Code != 302 || !last(s).Write {
		t.Errorf("2.10 GET follow: %d write=%v", w.Code, last(s).Write)
	}
	s = newSim(t, "2.11")
	if w := call(s, "GET", "/organization/follow/demo-org", EditorToken, "", ""); w.Code != 404 || last(s).Write {
		t.Errorf("2.11 GET follow: %d write=%v", w.Code, last(s).Write)
	}
}
