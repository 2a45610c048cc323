package checks

import (
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/ckanops/ckanops/api"

	"github.com/ckanops/ckanops/config"
	"github.com/ckanops/ckanops/internal/ckansim"
)

// fakeSolr answers /solr/ckan/admin/ping as Solr does.
func fakeSolr(t *testing.T, h http.HandlerFunc) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

func TestSolr(t *testing.T) {
	okPing := func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/solr/ckan/admin/ping" || r.URL.Query().Get("wt") != "json" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"responseHeader":{"zkConnected":null,"status":0,"QTime":3,"params":{"q":"{!lucene}*:*","distrib":"false","df":"text","rows":"10","echoParams":"all","rid":"-1","wt":"json"}},"status":"OK"}`))
	}
	block := make(chan struct{})
	t.Cleanup(func() { close(block) })
	cases := []struct {
		name    string
		handler http.HandlerFunc
		path    string
		status  api.CheckStatus
		want    string
	}{
		{"ok", okPing, "/solr/ckan", api.CheckOK, "ping OK, "},
		{"ok, trailing slash", okPing, "/solr/ckan/", api.CheckOK, "ping OK, "},
		{"500", func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(500)
			w.Write([]byte(`{"responseHeader":{"status":500,"QTime":1},"error":{"metadata":["error-class","org.apache.solr.common.SolrException"],"msg":"Ping query caused exception: Error opening new searcher","code":500}}`))
		}, "/solr/ckan", api.CheckFail, "answered 500 Internal Server Error: Ping query caused exception: Error opening new searcher"},
		{"no such core", okPing, "/solr/nocore", api.CheckFail, "answered 404: no such core; checks.solr must name the core"},
		{"needs credentials", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(401) }, "/solr/ckan", api.CheckFail, "answered 401 Unauthorized: put Solr's user and password in checks.solr"},
		{"not Solr", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("<html>hello</html>")) }, "/solr/ckan", api.CheckFail, "answered 200 but not with Solr's JSON"},
		{"ping not OK", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte(`{"status":"DISABLED"}`)) }, "/solr/ckan", api.CheckFail, `ping status "DISABLED", not OK`},
		{"hangs", func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-block:
			case <-r.Context().Done():
			}
		}, "/solr/ckan", api.CheckFail, "within 300ms"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			srv := fakeSolr(t, c.handler)
			res := runProbe(t, NewSolr(config.SecretURL(srv.URL+c.path)), 300*time.Millisecond)
			if res.Status != c.status || !strings.Contains(res.Summary, c.want) {
				t.Errorf("%s: %s\nwant %s saying %q", res.Status, res.Summary, c.status, c.want)
			}
		})
	}
}

// Basic auth from the URL reaches Solr; the password never reaches the result.
func TestSolrCredentials(t *testing.T) {
	var gotUser, gotPass string
	srv := fakeSolr(t, func(w http.ResponseWriter, r *http.Request) {
		gotUser, gotPass, _ = r.BasicAuth()
		w.WriteHeader(500)
		w.Write([]byte(`{"error":{"msg":"boom"}}`))
	})
	u, _ := url.Parse(srv.URL + "/solr/ckan")
	u.User = url.UserPassword("solr", "S0lr-secret-pw")
	res := runProbe(t, NewSolr(config.SecretURL(u.String())), time.Second)
	if gotUser != "solr" || gotPass != "S0lr-secret-pw" {
		t.Errorf("basic auth %q %q", gotUser, gotPass)
	}
	if res.Status != api.CheckFail || strings.Contains(res.Summary+res.Solr.URL, "S0lr-secret-pw") || known(t, "http_status", res.Solr.HTTPStatus) != 500 {
		t.Errorf("%s: %s %+v", res.Status, res.Summary, res.Solr)
	}

	// Nothing listening.
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close()
	res = runProbe(t, NewSolr(config.SecretURL("http://solr:S0lr-secret-pw@"+addr+"/solr/ckan")), time.Second)
	if res.Status != api.CheckFail || !strings.Contains(res.Summary, "cannot reach Solr at "+addr+"/solr/ckan/admin/ping: connection refused") ||
		strings.Contains(res.Summary, "S0lr-secret-pw") {
		t.Errorf("refused: %s", res.Summary)
	}
}

func TestCKAN(t *testing.T) {
	sim, err := ckansim.New(ckansim.Options{})
	if err != nil {
		t.Fatal(err)
	}
	up := httptest.NewServer(sim)
	defer up.Close()
	u, _ := url.Parse(up.URL)
	p, err := NewCKAN(u, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	res := runProbe(t, p, time.Second)
	if res.Status != api.CheckOK || known(t, "version", res.CKAN.Version) != "2.11.5" || !strings.HasPrefix(res.Summary, "CKAN 2.11.5, ") {
		t.Fatalf("%s: %s %+v", res.Status, res.Summary, res.CKAN)
	}
	if len(res.CKAN.Plugins) == 0 {
		t.Errorf("plugins: %v", res.CKAN.Plugins)
	}
	sim.SetLatency(2*time.Second, 0)
	if res := runProbe(t, p, 200*time.Millisecond); res.Status != api.CheckFail {
		t.Errorf("slow CKAN: %s: %s", res.Status, res.Summary)
	}
	up.Close()
	if res := runProbe(t, p, time.Second); res.Status != api.CheckFail || !strings.Contains(res.Summary, "refused") {
		t.Errorf("CKAN down: %s: %s", res.Status, res.Summary)
	}
}
