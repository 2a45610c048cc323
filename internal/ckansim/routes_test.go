package ckansim

import (
	"net/http"
	"strings"
	"testing"

	"github.com/ckanops/ckanops/internal/surface"
)

// seededPath fills a rule's variables with objects of the seed catalogue.
func seededPath(s *Sim, r surface.Route) string {
	vals := map[string]string{
		"resource_id": seedCSV, "view_id": seedView, "resource_view_id": seedView,
		"activity_id": s.cat.activity[0].ID, "filename": "readings.csv", "snippet_path": "follow_button.html",
		"lang": "fr", "jti": "ckansim-editor-token", "logic_function": "status_show", "path": "dataset/",
	}
	switch idKind(r.Endpoint) {
	case "dataset":
		vals["id"] = seedDataset
	case "group":
		vals["id"] = "environment"
	case "organization":
		vals["id"] = "demo-org"
	case "user":
		vals["id"] = "admin"
	case "activity":
		vals["id"] = s.cat.activity[0].ID
	case "tag":
		vals["id"] = "air"
	}
	switch r.Endpoint {
	case "static":
		vals["filename"] = "base/css/main.css"
	case "webassets.index":
		vals["path"] = "base/ckansim_main.css"
	}
	return r.Fill(vals)
}

// routeAnswer is what a GET of a route's seeded path gives a sysadmin,
// when it is not a 200 CKAN page.
type routeAnswer struct {
	status int
	ctype  string // prefix of the Content-Type
}

func expectedAnswer(r surface.Route) (routeAnswer, bool) {
	if strings.HasPrefix(r.Rule, "/no/") {
		// "no" is also a folder of ckan/i18n, so CKAN's I18nMiddleware
		// strips it before routing: /no/dataset/ is the dataset search.
		return routeAnswer{}, false
	}
	switch r.Endpoint {
	case "home.redirect_locale":
		return routeAnswer{http.StatusPermanentRedirect, htmlContentType}, true
	case "user.me", "user.logout":
		return routeAnswer{http.StatusFound, htmlContentType}, true
	case "util.internal_redirect": // no url parameter: CKAN's 400 page
		return routeAnswer{http.StatusBadRequest, htmlContentType}, true
	case "static", "webassets.index":
		return routeAnswer{http.StatusOK, "text/css"}, true
	case "api.snippet":
		return routeAnswer{http.StatusOK, "text/html"}, true
	case "home.robots_txt":
		return routeAnswer{http.StatusOK, "text/plain"}, true
	case "file.download", "file.trusted_download", "file.public_download":
		// CKAN 2.12 with its default config: no storage, so 404
		// (data/2.12/CHANGES.md).
		return routeAnswer{http.StatusNotFound, htmlContentType}, true
	case "datastore.dump", "group.member_dump", "organization.member_dump",
		"dataset_resource.download", "resource.download":
		return routeAnswer{http.StatusOK, "text/csv"}, true
	}
	if writingGETs[r.Endpoint] { // CKAN 2.10's follow on GET
		return routeAnswer{http.StatusFound, htmlContentType}, true
	}
	if strings.HasPrefix(r.Endpoint, "feeds.") {
		return routeAnswer{http.StatusOK, "application/atom+xml"}, true
	}
	if strings.HasPrefix(r.Endpoint, "api.") {
		return routeAnswer{http.StatusOK, "application/json"}, true
	}
	return routeAnswer{}, false
}

// formEndpoints are the GET,POST endpoints whose page edits something with
// text: their form has a text input and a textarea.
func hasTextForm(endpoint string) bool {
	_, view, _ := strings.Cut(endpoint, ".")
	switch view {
	case "new", "edit", "edit_view", "config", "admins", "bulk_process", "manage_members", "groups", "dictionary":
		return true
	}
	return false
}

// TestEveryGETRoute walks every GET rule of the surface, in both versions,
// on seeded objects, as a sysadmin.
func TestEveryGETRoute(t *testing.T) {
	for _, v := range versions() {
		t.Run(v, func(t *testing.T) {
			s := newSim(t, v)
			for _, r := range s.Surface().Routes {
				if !r.Allows(http.MethodGet) {
					continue
				}
				path := seededPath(s, r)
				where := r.Endpoint + " " + path
				w := call(s, http.MethodGet, path, SysadminToken, "", "")
				// resource.* rules repeat dataset_resource.*'s, which win.
				if e := last(s); e.Endpoint != r.Endpoint && !strings.HasPrefix(r.Endpoint, "resource.") && !strings.HasPrefix(r.Rule, "/no/") {
					t.Errorf("%s: journal endpoint %q", where, e.Endpoint)
				}
				want, special := expectedAnswer(r)
				if !special {
					want = routeAnswer{http.StatusOK, htmlContentType}
				}
				if w.Code != want.status || !strings.HasPrefix(w.Header().Get("Content-Type"), want.ctype) {
					t.Errorf("%s: %d %q, want %d %q\n%.300s", where, w.Code, w.Header().Get("Content-Type"), want.status, want.ctype, w.Body)
					continue
				}
				if e := last(s); e.Write != writingGETs[r.Endpoint] {
					t.Errorf("%s: Write=%v", where, e.Write)
				}
				if special && (want.ctype != htmlContentType || want.status/100 == 3) {
					continue
				}
				p := checkCKANPage(t, where, w.Body.String())
				if !r.Allows(http.MethodPost) || readOnlyPOSTs[r.Endpoint] || r.Endpoint == "user.login" || w.Code != http.StatusOK {
					continue
				}
				var form = p.postForms()
				var own bool
				for _, f := range form {
					if attr(f, "action") != path {
						continue
					}
					own = true
					if !hasCSRFInput(f) {
						t.Errorf("%s: the form has no CSRF token", where)
					}
					if hasTextForm(r.Endpoint) && (len(within(f, "textarea")) == 0 || len(p.all("input", func(n *htmlNode) bool { return attr(n, "type") == "text" })) == 0) {
						t.Errorf("%s: the form has no text input or no textarea", where)
					}
					_, view, _ := strings.Cut(r.Endpoint, ".")
					isResourceForm := strings.HasSuffix(r.Endpoint, "resource."+view) && (view == "new" || view == "edit")
					if isResourceForm && (attr(f, "enctype") != "multipart/form-data" ||
						len(parsedPage{f}.all("input", func(n *htmlNode) bool { return attr(n, "type") == "file" })) == 0) {
						t.Errorf("%s: the resource form is not a multipart form with a file input", where)
					}
				}
				if !own {
					t.Errorf("%s: no POST form to %s", where, path)
				}
			}
		})
	}
}

// TestExamplePaths walks every GET rule with Route.Example()'s values,
// which name nothing in the catalogue, anonymously: CKAN's 404s, login
// redirects and refusals, always on a CKAN page.
func TestExamplePaths(t *testing.T) {
	allowed := map[int]bool{200: true, 302: true, 308: true, 400: true, 403: true, 404: true}
	for _, v := range versions() {
		s := newSim(t, v)
		for _, r := range s.Surface().Routes {
			if !r.Allows(http.MethodGet) {
				continue
			}
			w := call(s, http.MethodGet, r.Example(), "", "", "")
			where := v + " " + r.Endpoint + " " + r.Example()
			if !allowed[w.Code] && !(r.Endpoint == "api.snippet" && w.Code == 500) {
				t.Errorf("%s: status %d", where, w.Code)
			}
			if idKind(r.Endpoint) != "" && strings.Contains(r.Rule, "<id>") && !writingGETs[r.Endpoint] &&
				!strings.HasPrefix(r.Endpoint, "activity.") && w.Code != http.StatusNotFound && w.Code != http.StatusForbidden {
				t.Errorf("%s: %d, want 404 for an unknown id", where, w.Code)
			}
			if w.Header().Get("Content-Type") == htmlContentType && w.Code != http.StatusFound && w.Code != http.StatusPermanentRedirect {
				checkCKANPage(t, where, w.Body.String())
			}
		}
	}
}

func TestLoginPage(t *testing.T) {
	for _, v := range versions() {
		s := newSim(t, v)
		w := call(s, http.MethodGet, "/user/login", "", "", "")
		p := checkCKANPage(t, v+" /user/login", w.Body.String())
		var found bool
		for _, f := range p.postForms() {
			if attr(f, "action") != "/user/login" {
				continue
			}
			names := map[string]string{}
			for _, in := range within(f, "input") {
				names[attr(in, "name")] = attr(in, "type")
			}
			found = names["login"] == "text" && names["password"] == "password" && names[csrfField] == "hidden"
		}
		if !found {
			t.Errorf("%s: no login form with login, password and CSRF fields", v)
		}
	}
}
