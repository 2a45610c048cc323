package ckansim

import (
	"io"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"

	"github.com/ckanops/ckanops/internal/surface"
)

// exchange is one request being answered: where it routed, who sent it,
// and the journal entry it fills in.
type exchange struct {
	sim   *Sim
	w     *response
	r     *http.Request
	entry *Entry
	who   caller

	siteTitle string             // ckan.site_title when the request arrived
	viewer    *viewer            // the logged-in user as pages show them
	form      url.Values         // a UI POST's form fields
	files     map[string]*upload // and its files

	rooted     string // the path the web server hands CKAN: r.URL.Path without the root path
	outside    bool   // the path is not under the root path: nothing routes it
	path       string // the path CKAN routes: rooted without a locale prefix
	route      surface.Route
	vars       map[string]string
	methodOK   bool
	found      bool
	redirectTo string // Werkzeug's slash redirect, when it applies
	tracking   bool   // a page-view beacon for the tracking middleware
	settled    bool   // ready has run
}

func (s *Sim) newExchange(rw *response, r *http.Request, e *Entry) *exchange {
	x := &exchange{sim: s, w: rw, r: r, entry: e}
	x.rooted, x.outside = s.stripRoot(r.URL.Path)
	x.path = stripLocale(x.rooted)
	if !x.outside {
		x.route, x.vars, x.methodOK, x.found = s.surface.Lookup(r.Method, x.path)
	}
	// CKAN's tracking middleware (ckan.tracking_enabled in 2.10, the
	// tracking plugin in 2.11) answers this before Flask routes anything.
	x.tracking = !x.outside && x.rooted == "/_tracking" && r.Method == http.MethodPost
	if !x.tracking && !x.outside {
		x.redirectTo = x.slashRedirect()
	}
	if x.found && x.redirectTo == "" && !x.tracking {
		e.Endpoint = x.route.Endpoint
		if e.Endpoint == "api.action" {
			e.Action = x.vars["logic_function"]
		}
	}
	s.cat.mu.RLock()
	x.who = s.identify(r)
	x.siteTitle = s.cat.config["ckan.site_title"]
	if u := x.who.user; u != nil {
		x.viewer = &viewer{Name: u.Name, DisplayName: u.displayName(), Sysadmin: u.Sysadmin}
	}
	s.cat.mu.RUnlock()
	return x
}

// stripRoot returns p as the web server in front of CKAN hands it over
// when CKAN is mounted under the root path: without the root path's
// segments (whole segments: "/database" is not under "/data"; "/data"
// itself is "/", as uWSGI's mount gives an empty PATH_INFO that Flask
// routes as "/"). outside reports a path not under the root path, which
// no route answers. CKAN itself never strips the prefix (CKAN 2.10-2.12,
// ckan/config/middleware/common_middleware.py: RootPathMiddleware only
// empties SCRIPT_NAME); it only adds it to the URLs it builds
// (ckan/lib/helpers.py, _local_url).
func (s *Sim) stripRoot(p string) (rooted string, outside bool) {
	if s.root == "" {
		return p, false
	}
	rest, ok := strings.CutPrefix(p, s.root)
	switch {
	case !ok:
		return p, true
	case rest == "":
		return "/", false
	case rest[0] != '/':
		return p, true
	}
	return rest, false
}

// locales are the locale codes CKAN's I18nMiddleware strips from the
// front of a path: "en" and the folders of ckan/i18n in CKAN 2.10 and 2.11
// (the same list). The legacy "zh_CN" and "zh_TW" are not among them, so
// home.redirect_locale answers those; "no" is (ckan/i18n keeps both "no"
// and "nb_NO"), so /no/... is stripped before its redirect rule can match.
var locales = strings.Fields(`en am ar bg bs ca cs_CZ da_DK de el en_AU en_GB es es_AR eu fa_IR fi
	fr gl gl_ES he hr hu id is it ja km ko_KR lt lv mk mn_MN my_MM nb_NO ne nl no pl pt_BR pt_PT
	ro ru sk sl sq sr sr_Latn sv th tl tr uk uk_UA vi zh_Hans_CN zh_Hant_TW`)

// stripLocale drops a leading locale segment, as CKAN's I18nMiddleware does
// before routing ("/fr/dataset" routes as "/dataset", "/fr" as "/").
func stripLocale(p string) string {
	parts := strings.SplitN(p, "/", 3)
	if len(parts) < 2 || !slices.Contains(locales, parts[1]) {
		return p
	}
	if len(parts) == 2 {
		return "/"
	}
	return "/" + parts[2]
}

var repeatedSlashes = regexp.MustCompile(`//+`)

// slashRedirect returns where Werkzeug would redirect (308) before any
// view runs: repeated slashes merged, or a trailing slash added when only
// the catch-all static rule matches the path as it is but a real rule
// matches it with the slash.
func (x *exchange) slashRedirect() string {
	p := x.r.URL.Path
	switch {
	case strings.Contains(p, "//"):
		p = repeatedSlashes.ReplaceAllString(p, "/")
	case strings.HasSuffix(x.path, "/") || (x.found && x.route.Endpoint != "static"):
		return ""
	default:
		r, _, methodOK, found := x.sim.surface.Lookup(x.r.Method, x.path+"/")
		if !found || !methodOK || r.Endpoint == "static" {
			return ""
		}
		p += "/"
	}
	if x.r.URL.RawQuery != "" {
		p += "?" + x.r.URL.RawQuery
	}
	return p
}

// wouldWrite reports, before anything runs, whether answering the request
// writes: the Sim adds WriteLatency to such requests.
func (x *exchange) wouldWrite() bool {
	if x.tracking {
		return true
	}
	if !x.found || !x.methodOK || x.redirectTo != "" || x.r.Method == http.MethodOptions {
		return false
	}
	if x.route.Endpoint == "api.action" {
		a, ok := x.sim.surface.Actions[x.entry.Action]
		return ok && !a.SideEffectFree && x.r.Method != http.MethodGet
	}
	return writesOn(x.route.Endpoint, x.r.Method)
}

func (x *exchange) serve() {
	dispatched := !x.tracking && x.redirectTo == "" && x.found && x.methodOK && x.r.Method != http.MethodOptions
	switch {
	case dispatched && x.route.Endpoint == "api.action":
		x.serveAction()
		return
	case dispatched:
		x.serveUI()
		return
	}
	if x.tracking {
		readBody(x.r)
	}
	if !x.ready() {
		return
	}
	switch {
	case x.tracking:
		// The middleware inserts a row into tracking_raw: a write.
		x.entry.Write = true
		x.writeText(http.StatusOK, "text/html", nil)
	case x.redirectTo != "":
		x.redirect(http.StatusPermanentRedirect, x.redirectTo)
	case !x.found:
		x.errorPage(http.StatusNotFound, "")
	case x.r.Method == http.MethodOptions:
		// Flask answers OPTIONS itself; no view runs.
		x.w.Header().Set("Allow", x.allowedMethods())
		x.w.Header().Set("Content-Type", "text/html; charset=utf-8")
		x.w.WriteHeader(http.StatusOK)
	default:
		x.w.Header().Set("Allow", x.allowedMethods())
		x.errorPage(http.StatusMethodNotAllowed, "")
	}
}

// ready is called once the request has been read, before anything runs or
// is answered: it reads what is left of the body (so that the server
// notices a client that goes away) and waits out the Sim's latency. It
// reports false when the client left meanwhile; the request is then
// journalled with status 499 and nothing runs.
func (x *exchange) ready() bool {
	if x.settled {
		return true
	}
	x.settled = true
	io.Copy(io.Discard, io.LimitReader(x.r.Body, maxBody))
	write := x.wouldWrite()
	if err := sleep(x.r.Context(), x.sim.delay(write)); err != nil {
		// Real CKAN would not notice the client leaving; the journal keeps
		// the conservative view that the request may have written.
		x.entry.Write = write
		x.w.status = statusClientClosed
		return false
	}
	return true
}

// allowedMethods lists the methods of every rule matching the path, as
// Werkzeug's Allow header does.
func (x *exchange) allowedMethods() string {
	set := map[string]bool{"OPTIONS": true}
	for _, r := range x.sim.surface.Routes {
		if _, ok := r.Match(x.path); ok {
			for _, m := range r.Methods {
				set[m] = true
				if m == "GET" {
					set["HEAD"] = true
				}
			}
		}
	}
	list := make([]string, 0, len(set))
	for m := range set {
		list = append(list, m)
	}
	slices.Sort(list)
	return strings.Join(list, ", ")
}

// hostURL is the scheme and host of ckan.site_url as this request sees
// it. Real CKAN takes it from its configuration; ckansim takes the host
// the client asked for.
func (x *exchange) hostURL() string {
	scheme := "http"
	if x.r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + x.r.Host
}

// siteURL is where CKAN's absolute URLs start (url_for with
// _external=True): hostURL and the root path.
func (x *exchange) siteURL() string { return x.hostURL() + x.sim.root }

// configuredSiteURL is ckan.site_url, as status_show reports it: without
// the root path unless Options.SiteURLWithRootPath.
func (x *exchange) configuredSiteURL() string {
	if x.sim.siteURLRoot {
		return x.siteURL()
	}
	return x.hostURL()
}

// underRoot reports whether a root-relative URL path already starts with
// the root path.
func (s *Sim) underRoot(p string) bool {
	rest, ok := strings.CutPrefix(p, s.root)
	return s.root != "" && ok && (rest == "" || rest[0] == '/' || rest[0] == '?')
}

func (x *exchange) redirect(status int, location string) {
	if strings.HasPrefix(location, "/") && !strings.HasPrefix(location, "//") {
		if x.sim.underRoot(location) {
			location = x.hostURL() + location
		} else {
			location = x.siteURL() + location
		}
	}
	x.w.Header().Set("Location", location)
	x.w.Header().Set("Content-Type", "text/html; charset=utf-8")
	x.w.WriteHeader(status)
	// The body Werkzeug's redirect() sends.
	x.w.Write([]byte("<!doctype html>\n<html lang=en>\n<title>Redirecting...</title>\n<h1>Redirecting...</h1>\n<p>You should be redirected automatically to the target URL: <a href=\"" +
		htmlEscape(location) + "\">" + htmlEscape(location) + "</a>. If not, click the link.\n"))
}

func (x *exchange) writeText(status int, contentType string, body []byte) {
	x.w.Header().Set("Content-Type", contentType)
	x.w.WriteHeader(status)
	x.w.Write(body)
}

func htmlEscape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&#34;", "'", "&#39;").Replace(s)
}

// localURL reports whether a redirect target stays on the site (CKAN's
// url_is_local).
func localURL(s string) bool {
	u, err := url.Parse(s)
	return err == nil && u.Scheme == "" && u.Host == "" && strings.HasPrefix(u.Path, "/") && !strings.HasPrefix(s, "//")
}
