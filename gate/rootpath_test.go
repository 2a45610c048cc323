package gate

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/ckanops/ckanops/api"
	"github.com/ckanops/ckanops/internal/ckansim"
)

// A site mounted under /data ([gate] root_path), the gate in front of the
// web server that strips the prefix: in read-only mode logins and the
// language selector work under the prefix, writes are refused, the login
// page keeps its form and an edit page loses its own, and the control API
// answers under the prefix too.
func TestRootPath(t *testing.T) {
	sim, err := ckansim.New(ckansim.Options{RootPath: "/data"})
	if err != nil {
		t.Fatal(err)
	}
	up := httptest.NewServer(sim)
	t.Cleanup(up.Close)
	r := newRig(t, func(o *Options) {
		o.Upstream, _ = url.Parse(up.URL)
		o.Policy.RootPath, o.RootPath = "/data", "/data"
	})
	r.mustMode(api.ModeReadOnly, "upgrade")
	form := func(path, body string) resp {
		return r.do("POST", path, strings.NewReader(body), "Content-Type", "application/x-www-form-urlencoded")
	}
	for _, p := range []string{"/data/user/login", "/data/fr/user/login"} {
		if res := form(p, "login=admin&password=wrong"); res.status == http.StatusServiceUnavailable {
			t.Errorf("POST %s refused in read-only: %s", p, res.body)
		}
	}
	if res := form("/data/util/redirect", "url=/data/fr/"); res.status == http.StatusServiceUnavailable {
		t.Errorf("the language selector refused: %s", res.body)
	}
	if res := form("/data/dataset/new", "name=x"); res.status != http.StatusServiceUnavailable {
		t.Errorf("a write under the prefix: %d", res.status)
	}
	if res := r.do("GET", "/data/api/3/action/package_create", nil); res.status != http.StatusServiceUnavailable || !strings.Contains(res.body, `"success":false`) || !strings.Contains(res.body, "/data/api/3/action/help_show?name=package_create") {
		t.Errorf("an API write under the prefix: %d %s", res.status, res.body)
	}
	if res := r.do("GET", "/data/user/login", nil); res.status != 200 || !strings.Contains(res.body, "ckanops-banner") || !strings.Contains(res.body, `name="password"`) {
		t.Errorf("the login page under the prefix: %d\n%s", res.status, res.body)
	}
	if res := r.do("GET", "/data/dataset/new", nil, "Authorization", ckansim.SysadminToken); res.status != 200 || !strings.Contains(res.body, "ckanops-form-notice") {
		t.Errorf("the new dataset page under the prefix keeps its form: %d", res.status)
	}
	if st := r.status(true); st.Surface == nil || st.Surface.RootPath != "/data" {
		t.Fatalf("status: %+v", st.Surface)
	}
	res := r.do("GET", "/data/-/ckanops/status", nil, "Authorization", "Bearer "+opsToken)
	if res.status != 200 || !strings.Contains(res.body, `"mode":"read-only"`) && !strings.Contains(res.body, `"mode": "read-only"`) {
		t.Fatalf("the control API under the prefix: %d %s", res.status, res.body)
	}
}

// With no [gate] root_path, the gate learns it from status_show's help
// URL (CKAN builds it with the root path), here in the other topology:
// the web server strips the prefix before the gate.
func TestRootPathLearnedFromStatusShow(t *testing.T) {
	fastVersionWatch(t)
	sim, err := ckansim.New(ckansim.Options{})
	if err != nil {
		t.Fatal(err)
	}
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/api/3/action/status_show" {
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintf(w, `{"help": "https://data.example.org/data/api/3/action/help_show?name=status_show", "success": true, "result": {"ckan_version": "2.11.5", "site_url": "https://data.example.org"}}`)
			return
		}
		sim.ServeHTTP(w, r)
	}))
	t.Cleanup(up.Close)
	r := newRig(t, func(o *Options) { o.Upstream, _ = url.Parse(up.URL) })
	watch(t, r.gate)
	r.waitSurface("the root path learned", func(s api.SurfaceInfo) bool { return s.RootPath == "/data" })
	r.mustMode(api.ModeReadOnly, "upgrade")
	if res := r.do("POST", "/data/user/login", strings.NewReader("login=a&password=b"), "Content-Type", "application/x-www-form-urlencoded"); res.status == http.StatusServiceUnavailable {
		t.Fatalf("a login under the learned prefix: %s", res.body)
	}
	if res := r.do("POST", "/data/dataset/new", strings.NewReader("name=x"), "Content-Type", "application/x-www-form-urlencoded"); res.status != http.StatusServiceUnavailable {
		t.Fatalf("a write under the learned prefix: %d", res.status)
	}
}

func TestRootFromStatus(t *testing.T) {
	for _, c := range []struct{ help, site, want string }{
		{"https://x.org/data/api/3/action/help_show?name=status_show", "https://x.org", "/data"},
		{"https://x.org/api/3/action/help_show?name=status_show", "https://x.org", "/"},
		{"", "https://x.org/portal/", "/portal"},
		{"", "https://x.org", ""},
		{"not a url\x7f", "", ""},
	} {
		if got := rootFromStatus(c.help, c.site); got != c.want {
			t.Errorf("%q %q: %q, want %q", c.help, c.site, got, c.want)
		}
	}
}
