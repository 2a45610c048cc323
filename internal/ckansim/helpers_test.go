package ckansim

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"golang.org/x/net/html"

	"github.com/ckanops/ckanops/internal/surface"
)

// Seeded objects the tests name.
const (
	seedDataset       = "air-quality-2024"
	seedDatasetID     = "1983e105-1446-48a4-98a7-a8fecffac448"
	seedCSV           = "dc7657df-167c-4776-81bd-7d9d23102187" // upload with a DataStore table
	seedLinkDataset   = "bus-stops"
	seedPrivate       = "council-budget-draft"
	seedView          = "34ab4652-5adb-425c-b70a-e2b186b08838"
	seedPassword      = "demo-password"
	testHost          = "127.0.0.1:5000"
	jsonContentType   = "application/json;charset=utf-8"
	htmlContentType   = "text/html; charset=utf-8"
	writeOnGETRefusal = `"Bad request - JSON Error: Invalid request. Please use POST method for your request"`
)

func newSim(t *testing.T, version string) *Sim {
	t.Helper()
	s, err := New(Options{Version: version})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// newRequest makes a request to the test host; a body is JSON.
func newRequest(method, path, body string) *http.Request {
	r := httptest.NewRequest(method, "http://"+testHost+path, strings.NewReader(body))
	if body != "" {
		r.Header.Set("Content-Type", "application/json")
	}
	return r
}

func serveRequest(s *Sim, r *http.Request) *httptest.ResponseRecorder {
	w := httptest.NewRecorder()
	s.ServeHTTP(w, r)
	return w
}

// call sends one request straight to the handler.
func call(s *Sim, method, path, token, contentType, body string) *httptest.ResponseRecorder {
	r := newRequest(method, path, body)
	r.Header.Set("Content-Type", contentType)
	if token != "" {
		r.Header.Set("Authorization", token)
	}
	return serveRequest(s, r)
}

// action POSTs a JSON body to the Action API.
func action(s *Sim, name, token, body string) *httptest.ResponseRecorder {
	return call(s, http.MethodPost, "/api/3/action/"+name, token, "application/json", body)
}

// envelope is CKAN's answer from the Action API.
type envelope struct {
	Help    string         `json:"help"`
	Success *bool          `json:"success"`
	Result  any            `json:"result"`
	Error   map[string]any `json:"error"`
}

// decodeEnvelope checks the answer is a well-formed CKAN envelope for
// action name and returns it.
func decodeEnvelope(t *testing.T, w *httptest.ResponseRecorder, name string) envelope {
	t.Helper()
	if ct := w.Header().Get("Content-Type"); ct != jsonContentType {
		t.Fatalf("%s: Content-Type %q, want %q", name, ct, jsonContentType)
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(w.Body.Bytes(), &raw); err != nil {
		t.Fatalf("%s: status %d, body is not a JSON object: %v\n%s", name, w.Code, err, w.Body)
	}
	var e envelope
	if err := json.Unmarshal(w.Body.Bytes(), &e); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	if want := "http://" + testHost + "/api/3/action/help_show?name=" + name; e.Help != want {
		t.Fatalf("%s: help %q, want %q", name, e.Help, want)
	}
	if e.Success == nil {
		t.Fatalf("%s: no success key: %s", name, w.Body)
	}
	if *e.Success {
		if _, ok := raw["result"]; !ok || w.Code != http.StatusOK {
			t.Fatalf("%s: success with status %d and no result: %s", name, w.Code, w.Body)
		}
		return e
	}
	typ, _ := e.Error["__type"].(string)
	wantStatus := map[string]int{"Authorization Error": 403, "Not Found Error": 404, "Validation Error": 409}[typ]
	if wantStatus == 0 || w.Code != wantStatus {
		t.Fatalf("%s: error %q with status %d: %s", name, typ, w.Code, w.Body)
	}
	if _, ok := e.Error["message"]; !ok && typ != "Validation Error" {
		t.Fatalf("%s: %s without message: %s", name, typ, w.Body)
	}
	return e
}

func last(s *Sim) Entry {
	j := s.Journal()
	return j[len(j)-1]
}

type htmlNode = html.Node

// parsedPage is a parsed HTML answer.
type parsedPage struct {
	root *html.Node
}

func parsePage(t *testing.T, body string) parsedPage {
	t.Helper()
	root, err := html.Parse(strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	return parsedPage{root}
}

func attr(n *html.Node, key string) string {
	for _, a := range n.Attr {
		if a.Key == key {
			return a.Val
		}
	}
	return ""
}

// all returns the elements named tag for which keep is true.
func (p parsedPage) all(tag string, keep func(*html.Node) bool) []*html.Node {
	var out []*html.Node
	var walk func(*html.Node)
	walk = func(n *html.Node) {
		if n.Type == html.ElementNode && n.Data == tag && (keep == nil || keep(n)) {
			out = append(out, n)
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(p.root)
	return out
}

// within returns the elements named tag under n.
func within(n *html.Node, tag string) []*html.Node {
	return parsedPage{n}.all(tag, nil)
}

func (p parsedPage) title() string {
	for _, t := range p.all("title", nil) {
		if t.FirstChild != nil {
			return t.FirstChild.Data
		}
	}
	return ""
}

// postForms returns the page's POST forms.
func (p parsedPage) postForms() []*html.Node {
	return p.all("form", func(n *html.Node) bool { return strings.EqualFold(attr(n, "method"), "post") })
}

// checkCKANPage checks the page has CKAN's frame: doctype, head with a
// title and a stylesheet, body with header, the site search form and a
// footer.
func checkCKANPage(t *testing.T, where, body string) parsedPage {
	t.Helper()
	if !strings.HasPrefix(body, "<!DOCTYPE html>") {
		t.Fatalf("%s: no doctype: %.80q", where, body)
	}
	p := parsePage(t, body)
	if p.title() == "" {
		t.Errorf("%s: no <title>", where)
	}
	if len(p.all("link", func(n *html.Node) bool { return attr(n, "rel") == "stylesheet" })) == 0 {
		t.Errorf("%s: no stylesheet link", where)
	}
	search := p.all("form", func(n *html.Node) bool {
		return strings.EqualFold(attr(n, "method"), "get") && attr(n, "action") == "/dataset/"
	})
	if len(search) == 0 || len(within(search[0], "input")) == 0 {
		t.Errorf("%s: no site search form", where)
	}
	for _, tag := range []string{"body", "header", "footer"} {
		if len(p.all(tag, nil)) == 0 {
			t.Errorf("%s: no <%s>", where, tag)
		}
	}
	return p
}

// hasCSRFInput reports whether a form carries the hidden CSRF token.
func hasCSRFInput(form *html.Node) bool {
	for _, in := range within(form, "input") {
		if attr(in, "type") == "hidden" && attr(in, "name") == csrfField && attr(in, "value") != "" {
			return true
		}
	}
	return false
}

func readAll(t *testing.T, r io.Reader) string {
	t.Helper()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func versions() []string { return surface.Versions }
