package ckansim

import (
	"bytes"
	"embed"
	"fmt"
	"html/template"
	"net/http"
	"regexp"
	"strings"
)

//go:embed templates/*.html
var templateFiles embed.FS

// pages holds one parsed template per page kind, each made of base.html
// (CKAN's page.html: header, site search form, footer) and its "main".
type pages struct {
	byName map[string]*template.Template
}

func loadPages() (*pages, error) {
	p := &pages{byName: map[string]*template.Template{}}
	for _, name := range []string{"home", "list", "dataset", "resource", "form", "error"} {
		t, err := template.ParseFS(templateFiles, "templates/base.html", "templates/"+name+".html")
		if err != nil {
			return nil, fmt.Errorf("ckansim: templates: %w", err)
		}
		p.byName[name] = t
	}
	return p, nil
}

// page is what a template renders. Views fill it from the catalogue while
// holding its lock; templates never touch the catalogue.
type page struct {
	Site         string
	CKANVersion  string
	Title        string // the subtitle before " - Site"
	CSRF         string
	Flash        string
	User         *viewer
	LogoutByPost bool

	Heading string
	Lead    string
	Empty   string
	Items   []item

	Dataset  *datasetPage
	Resource *resourcePage
	Form     *form

	Status    int  // error pages
	LoginLink bool // error pages: "You might need to login"
}

type viewer struct {
	Name        string
	DisplayName string
	Sysadmin    bool
}

type item struct {
	Href string
	Text string
	Note string
}

type datasetPage struct {
	Name, Title, Notes, State  string
	Private                    bool
	OrgName, OrgTitle, License string
	Created, Modified          string
	Tags                       []string
	Resources                  []resourcePage
}

type resourcePage struct {
	ID, Name, Description, Format string
	URL, Page, Download           string
	Size, Modified                string
	Datastore                     bool
}

type form struct {
	ID        string
	Action    string
	Multipart bool
	Fields    []formField
	Submit    string
	Cancel    string
	Errors    []string
}

type formField struct {
	Name, Label, Type, Value string
	Checked                  bool
}

// newPage starts a page for this request: site, user and CSRF token.
func (x *exchange) newPage(title string) *page {
	p := &page{
		Site:         x.siteTitle,
		CKANVersion:  x.sim.ckanVersion,
		Title:        title,
		CSRF:         randomHex(20),
		LogoutByPost: x.sim.surface.Version != "2.10",
	}
	if x.who.session != nil {
		p.CSRF = x.who.session.csrf
	}
	p.User = x.viewer
	return p
}

func (s *Sim) siteTitle() string {
	s.cat.mu.RLock()
	defer s.cat.mu.RUnlock()
	return s.cat.config["ckan.site_title"]
}

// render writes a page as text/html.
func (x *exchange) render(status int, name string, p *page) {
	var buf bytes.Buffer
	if err := x.sim.pages.byName[name].ExecuteTemplate(&buf, "base", p); err != nil {
		x.sim.log.Error("ckansim: render", "page", name, "err", err)
		status, buf = http.StatusInternalServerError, *bytes.NewBufferString("Internal server error")
	}
	x.w.Header().Set("Content-Type", "text/html; charset=utf-8")
	x.w.WriteHeader(status)
	x.w.Write(x.sim.rootLinks(buf.Bytes()))
}

// rootURLAttr is a root-relative URL in an href, src or action attribute
// as the templates write them (double-quoted, "/" then not a second "/").
var rootURLAttr = regexp.MustCompile(`(\s(?:href|src|action)=")/([^/])`)

// rootLinks puts the root path in front of every root-relative link, form
// action and script or stylesheet URL of a rendered page, as CKAN's
// url_for and url_for_static do (ckan/lib/helpers.py, _local_url).
// Absolute URLs are built from siteURL, which already has it.
func (s *Sim) rootLinks(page []byte) []byte {
	if s.root == "" {
		return page
	}
	return rootURLAttr.ReplaceAll(page, []byte("${1}"+strings.ReplaceAll(s.root, "$", "$$")+"/${2}"))
}

// errorDescriptions are Werkzeug's default descriptions, which CKAN's
// error page shows when a view gives none.
var errorDescriptions = map[int]string{
	400: "The browser (or proxy) sent a request that this server could not understand.",
	403: "You don't have the permission to access the requested resource. It is either read-protected or not readable by the server.",
	404: "The requested URL was not found on the server. If you entered the URL manually please check your spelling and try again.",
	405: "The method is not allowed for the requested URL.",
	415: "The server does not support the media type transmitted in the request.",
	500: "Internal server error",
}

func (x *exchange) errorPage(status int, message string) { x.send(x.fail(status, message)) }

// nginxTitles are what nginx shows when uwsgi is down (502), refuses
// (503) or is too slow (504).
var nginxTitles = map[int]string{
	502: "502 Bad Gateway",
	503: "503 Service Temporarily Unavailable",
	504: "504 Gateway Time-out",
}

// serveFailure answers a request FailNext marked: CKAN's own error page
// for a 500, nginx's for anything else.
func (s *Sim) serveFailure(rw *response, status int) {
	if status == http.StatusInternalServerError {
		p := &page{Site: s.siteTitle(), CKANVersion: s.ckanVersion, Title: "Error 500", Status: 500,
			Heading: http.StatusText(500), Lead: errorDescriptions[500], CSRF: randomHex(20)}
		var buf bytes.Buffer
		if err := s.pages.byName["error"].ExecuteTemplate(&buf, "base", p); err == nil {
			rw.Header().Set("Content-Type", "text/html; charset=utf-8")
			rw.WriteHeader(status)
			rw.Write(s.rootLinks(buf.Bytes()))
			return
		}
	}
	title := nginxTitles[status]
	if title == "" {
		title = fmt.Sprintf("%d %s", status, http.StatusText(status))
	}
	rw.Header().Set("Content-Type", "text/html")
	rw.Header().Set("Server", "nginx")
	rw.WriteHeader(status)
	fmt.Fprintf(rw, "<html>\r\n<head><title>%s</title></head>\r\n<body>\r\n<center><h1>%s</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n", title, title)
}

// humanSize formats a byte count as CKAN's SI file size helper does.
func humanSize(n *int64) string {
	if n == nil {
		return "unknown"
	}
	size := float64(*n)
	for _, unit := range []string{"bytes", "KB", "MB", "GB"} {
		if size < 1000 || unit == "GB" {
			if unit == "bytes" {
				return fmt.Sprintf("%d bytes", *n)
			}
			return strings.TrimSuffix(strings.TrimSuffix(fmt.Sprintf("%.1f", size), "0"), ".") + " " + unit
		}
		size /= 1000
	}
	return ""
}
