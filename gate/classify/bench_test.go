package classify

import (
	"net/http"
	"testing"
)

// benchRequests is a mixed corpus: pages and assets a browser fetches, API
// reads, and writes the gate refuses, with a browser's or a client's
// headers.
var benchRequests = []struct {
	kind, method, uri string
	headers           []string
}{
	{"page", "GET", "/", browserHeaders},
	{"page", "GET", "/dataset/", browserHeaders},
	{"page", "GET", "/dataset/some-dataset-name", browserHeaders},
	{"page", "GET", "/fr/dataset/some-dataset-name/resource/0b6f8e0c-8d2e-4d3c-9b9a-5a1f3c2e7d10", browserHeaders},
	{"page", "GET", "/organization/some-org?page=2", browserHeaders},
	{"page", "GET", "/base/css/main.min.css", browserHeaders},
	{"page", "GET", "/webassets/ckanext-datatablesview/datatablesview.js", browserHeaders},
	{"page", "HEAD", "/dataset/x/resource/y/download/donn%C3%A9es.csv", browserHeaders},
	{"api-read", "GET", "/api/3/action/package_search?q=water&rows=10", clientHeaders},
	{"api-read", "GET", "/api/action/package_show?id=some-dataset", clientHeaders},
	{"api-read", "POST", "/api/3/action/datastore_search", clientHeaders},
	{"api-read", "GET", "/api/2/util/tag/autocomplete?incomplete=wa", clientHeaders},
	{"login", "POST", "/user/login", browserHeaders},
	{"write", "POST", "/api/3/action/package_create", clientHeaders},
	{"write", "POST", "/dataset/edit/some-dataset", browserHeaders},
	{"write", "HEAD", "/api/action/package_update", clientHeaders},
	{"write", "DELETE", "/dataset/some-dataset", clientHeaders},
	{"write", "GET", "/group/follow/some-group", browserHeaders},
	{"write", "GET", "/api/action/package_cre%61te", clientHeaders},
	{"write", "GET", "/fr/api/action/package_create", clientHeaders},
}

var browserHeaders = []string{
	"User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
	"Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
	"Accept-Language: en-GB,en;q=0.5",
	"Accept-Encoding: gzip, deflate, br",
	"Cookie: ckan=0123456789abcdef; _ga=GA1.1.1",
	"Referer: https://ckan.example/dataset/",
	"Connection: keep-alive",
	"Upgrade-Insecure-Requests: 1",
	"Sec-Fetch-Dest: document",
	"Sec-Fetch-Mode: navigate",
}

var clientHeaders = []string{
	"User-Agent: ckanapi/4.7",
	"Accept: application/json",
	"Authorization: eyJ0eXAiOiJKV1QiLCJhbGciOiJIUzI1NiJ9.e30.x",
	"Content-Type: application/json",
}

func benchCorpus(b *testing.B, kind string) []*http.Request {
	var reqs []*http.Request
	for _, r := range benchRequests {
		if kind == "" || r.kind == kind {
			reqs = append(reqs, mustRequest(b, r.method, r.uri, r.headers...))
		}
	}
	return reqs
}

// BenchmarkClassify classifies the mixed corpus (one op is one request) and
// each kind of request on its own.
func BenchmarkClassify(b *testing.B) {
	c := classifier(b, "2.11", Policy{AllowPosts: []string{"/datatables/ajax/*"}, DenyGet: []string{"/ext/do/*"}})
	for _, kind := range []string{"", "page", "api-read", "login", "write"} {
		name := kind
		if name == "" {
			name = "mixed"
		}
		reqs := benchCorpus(b, kind)
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				r := reqs[i%len(reqs)]
				c.Classify(r.Method, r.Header, r.URL)
				i++
			}
		})
	}
}

func BenchmarkIsAPI(b *testing.B) {
	c := classifier(b, "2.11", Policy{})
	reqs := benchCorpus(b, "")
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		r := reqs[i%len(reqs)]
		c.IsAPI(r.URL, r.Header)
		i++
	}
}
