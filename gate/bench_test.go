package gate

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/ckanops/ckanops/api"
	"github.com/ckanops/ckanops/bench/fixture"
)

// BenchmarkProxy compares, in one run and against one in-process upstream
// serving fixed bytes, the contenders the gate's speed targets are stated
// against:
//
//	direct          the upstream itself (what the client and upstream cost)
//	naive-httputil  httputil.NewSingleHostReverseProxy with every default
//	gate-live       the gate in live mode (no rewriting)
//	gate-readonly   the gate in read-only mode (pages annotated)
//
// for the ~50 KB CKAN listing page and the package_show JSON answer
// (bench/fixture). Each contender listens on loopback and is driven by a
// real HTTP client with keep-alive, 16 goroutines per P (32 on 2 cores, as
// bench/run.sh's wrk -c32). ns/op is wall time per request across all
// goroutines, so ns/op ratios within one run are throughput ratios; req/s
// says the same the other way up. allocs/op and B/op count the whole
// process (client and upstream too, identical for every contender): the
// differences between contenders are the proxy's.
//
//	go test -run='^$' -bench=Proxy -benchmem ./gate/
//	go test -run='^$' -bench='Proxy/page/gate-live' -cpuprofile cpu.out ./gate/
func BenchmarkProxy(b *testing.B) {
	page := fixture.Page()
	js, err := fixture.PackageShow()
	if err != nil {
		b.Fatal(err)
	}
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, ctype := page, "text/html; charset=utf-8"
		if strings.HasPrefix(r.URL.Path, "/api/") {
			body, ctype = js, "application/json;charset=utf-8"
		}
		w.Header().Set("Content-Type", ctype)
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.Write(body)
	}))
	b.Cleanup(up.Close)
	target, _ := url.Parse(up.URL)

	contenders := []struct {
		name string
		url  string
	}{
		{"direct", up.URL},
		{"naive-httputil", serve(b, httputil.NewSingleHostReverseProxy(target))},
		{"gate-live", serve(b, benchGate(b, target, ""))},
		{"gate-readonly", serve(b, benchGate(b, target, "read-only"))},
	}
	targets := []struct {
		name string
		path string
		body []byte
	}{
		{"page", fixture.PagePath, page},
		{"json", fixture.JSONPath, js},
	}

	// Check every contender answers as it should before timing anything:
	// live passes bytes untouched, read-only annotates the page.
	for _, c := range contenders {
		for _, t := range targets {
			got := fetch(b, c.url+t.path)
			switch annotated := c.name == "gate-readonly" && t.name == "page"; {
			case annotated:
				// The listing's POST forms (logout, language) both stay.
				for _, want := range []string{`class="ckanops-banner"`, `action="/user/_logout"`, `action="/util/redirect"`} {
					if !bytes.Contains(got, []byte(want)) {
						b.Fatalf("%s %s: the annotated page lacks %s", c.name, t.name, want)
					}
				}
			case !bytes.Equal(got, t.body):
				b.Fatalf("%s %s: got %d bytes, not the upstream's %d", c.name, t.name, len(got), len(t.body))
			}
		}
	}

	for _, t := range targets {
		for _, c := range contenders {
			b.Run(t.name+"/"+c.name, func(b *testing.B) {
				client := &http.Client{Transport: &http.Transport{
					MaxIdleConnsPerHost: 256,
					DisableCompression:  true,
				}}
				defer client.CloseIdleConnections()
				u := c.url + t.path
				b.SetBytes(int64(len(t.body)))
				b.ReportAllocs()
				b.SetParallelism(16)
				b.ResetTimer()
				b.RunParallel(func(pb *testing.PB) {
					req, err := http.NewRequest(http.MethodGet, u, nil)
					if err != nil {
						b.Error(err)
						return
					}
					for pb.Next() {
						resp, err := client.Do(req)
						if err != nil {
							b.Error(err)
							return
						}
						_, err = io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
						if err != nil || resp.StatusCode != http.StatusOK {
							b.Errorf("%s: status %d, %v", u, resp.StatusCode, err)
							return
						}
					}
				})
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
			})
		}
	}
}

// benchGate is a gate in front of target with its own state file, switched
// to mode through the control API unless mode is "".
func benchGate(b testing.TB, target *url.URL, mode api.Mode) http.Handler {
	b.Helper()
	store, err := OpenFileStore(filepath.Join(b.TempDir(), "bench.state.json"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { store.Close() })
	g, err := New(context.Background(), Options{
		Site: "bench", SiteTitle: "Example Open Data", Upstream: target, Store: store, OpsToken: opsToken,
	})
	if err != nil {
		b.Fatal(err)
	}
	if mode != "" {
		req := httptest.NewRequest(http.MethodPost, "/-/ckanops/mode",
			strings.NewReader(`{"mode": "`+string(mode)+`", "message": "Benchmark: the catalogue is read-only.", "reason": "benchmark"}`))
		req.Header.Set("Authorization", "Bearer "+opsToken)
		rec := httptest.NewRecorder()
		g.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK || g.Mode().Mode != mode {
			b.Fatalf("switching the gate to %s: %d %s", mode, rec.Code, rec.Body)
		}
	}
	return g
}

func serve(b *testing.B, h http.Handler) string {
	srv := httptest.NewServer(h)
	b.Cleanup(srv.Close)
	return srv.URL
}

func fetch(b *testing.B, u string) []byte {
	b.Helper()
	resp, err := http.Get(u)
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		b.Fatalf("GET %s: status %d, %v", u, resp.StatusCode, err)
	}
	return body
}
