package ckansim

import (
	"bytes"
	"embed"
	"encoding/csv"
	"encoding/xml"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
)

// Endpoints that answer with something other than a page: static files,
// downloads, dumps, feeds and the small JSON utilities under /api.

//go:embed assets
var assetFiles embed.FS

// assets maps the static and webassets paths ckansim serves to its files;
// any other static path is CKAN's 404.
var assets = map[string]struct{ file, ctype string }{
	"static:base/css/main.css":              {"assets/main.css", "text/css; charset=utf-8"},
	"static:base/javascript/main.js":        {"assets/main.js", "text/javascript; charset=utf-8"},
	"webassets.index:base/ckansim_main.css": {"assets/main.css", "text/css; charset=utf-8"},
	"webassets.index:base/ckansim_main.js":  {"assets/main.js", "text/javascript; charset=utf-8"},
}

func (x *exchange) asset() answer {
	name := x.vars["filename"]
	if name == "" {
		name = x.vars["path"]
	}
	a, ok := assets[x.route.Endpoint+":"+name]
	if !ok {
		return x.fail(http.StatusNotFound, "")
	}
	b, err := assetFiles.ReadFile(a.file)
	if err != nil {
		return x.fail(http.StatusNotFound, "")
	}
	return answer{ctype: a.ctype, body: bytes.NewReader(b), header: map[string]string{"Cache-Control": "public, max-age=43200"}}
}

// jsonAnswer is api.py's _finish_ok for the util endpoints.
func jsonAnswer(v any) answer {
	b, _ := pythonJSON(v)
	return answer{ctype: "application/json;charset=utf-8", body: bytes.NewReader(b)}
}

func (x *exchange) apiVersion() answer {
	ver := 1
	if v, err := strconv.Atoi(x.vars["ver"]); err == nil {
		ver = v
	}
	return jsonAnswer(map[string]any{"version": ver})
}

func (x *exchange) jsTranslations() answer {
	lang := x.vars["lang"]
	if !slices.Contains(locales, lang) {
		b, _ := pythonJSON("Bad request - Unknown locale: " + lang)
		return answer{status: http.StatusBadRequest, ctype: "application/json;charset=utf-8", body: bytes.NewReader(b)}
	}
	return jsonAnswer(map[string]any{})
}

// autocomplete answers the /api/util/*/autocomplete endpoints by running
// the matching *_autocomplete action.
func (x *exchange) autocomplete() answer {
	q := x.r.URL.Query()
	kind := strings.TrimSuffix(strings.TrimPrefix(x.route.Endpoint, "api."), "_autocomplete")
	term := q.Get("q")
	if kind == "dataset" || kind == "tag" || kind == "format" {
		term = q.Get("incomplete")
	}
	var found []string
	if term != "" {
		term = strings.ToLower(term)
		x.sim.cat.mu.RLock()
		c := x.sim.cat
		switch kind {
		case "dataset":
			for _, d := range c.visibleDatasets(x.who.user, false) {
				if strings.Contains(strings.ToLower(d.Name+" "+d.Title), term) {
					found = append(found, d.Name)
				}
			}
		case "tag":
			for t := range c.tagIDs {
				if strings.Contains(strings.ToLower(t), term) {
					found = append(found, t)
				}
			}
		case "format":
			for _, d := range c.visibleDatasets(x.who.user, false) {
				for _, f := range c.facetValues(d, "res_format") {
					if strings.Contains(strings.ToLower(f), term) && !slices.Contains(found, f) {
						found = append(found, f)
					}
				}
			}
		case "user":
			for _, u := range c.users {
				if u.Name != x.sim.siteID && strings.Contains(strings.ToLower(u.Name+" "+u.Fullname), term) {
					found = append(found, u.Name)
				}
			}
		case "group", "organization":
			for _, g := range c.groups {
				if g.IsOrganization == (kind == "organization") && strings.Contains(strings.ToLower(g.Name+" "+g.Title), term) {
					found = append(found, g.Name)
				}
			}
		}
		x.sim.cat.mu.RUnlock()
		slices.Sort(found)
	}
	list := []any{}
	for _, f := range found {
		switch kind {
		case "dataset":
			list = append(list, map[string]any{"name": f, "match_field": "name", "match_displayed": f, "title": f})
		case "tag":
			list = append(list, map[string]any{"Name": f})
		case "format":
			list = append(list, map[string]any{"Format": f})
		default:
			list = append(list, map[string]any{"name": f, "title": f})
		}
	}
	if kind == "dataset" || kind == "tag" || kind == "format" {
		return jsonAnswer(map[string]any{"ResultSet": map[string]any{"Result": list}})
	}
	return jsonAnswer(list)
}

// snippets are the templates under ckan/templates/ajax_snippets.
var snippets = []string{"custom_fields.html", "follow_button.html"}

// snippet renders an ajax snippet; an unknown template is CKAN's 500
// (TemplateNotFound is not an HTTP error).
func (x *exchange) snippet() answer {
	name := x.vars["snippet_path"]
	if !slices.Contains(snippets, name) {
		return x.fail(http.StatusInternalServerError, "")
	}
	body := fmt.Sprintf("<div class=\"snippet\" data-snippet=\"%s\"></div>\n", htmlEscape(name))
	return answer{ctype: "text/html; charset=utf-8", body: strings.NewReader(body)}
}

// fillerReader stands in for an upload too large to have been kept: the
// right number of bytes, not the original ones.
type fillerReader struct{}

func (fillerReader) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = 'x'
	}
	return len(p), nil
}

// download is resource.download: the uploaded file, or a redirect to a
// linked one.
func (x *exchange) download(s subject) answer {
	r := s.resource
	if r.URLType != "upload" {
		if r.URL == "" {
			return x.fail(http.StatusNotFound, "No download is available")
		}
		return redirectTo(r.URL)
	}
	var body io.Reader
	switch {
	case r.upload != nil:
		body = bytes.NewReader(r.upload)
	case r.Size != nil:
		body = io.LimitReader(fillerReader{}, *r.Size)
	default:
		return x.fail(http.StatusNotFound, "Resource data not found")
	}
	name := x.vars["filename"]
	if name == "" {
		name = r.URL
	}
	a := answer{ctype: r.Mimetype, body: body, header: map[string]string{
		"Content-Disposition": fmt.Sprintf("inline; filename=%s", name),
	}}
	if a.ctype == "" {
		a.ctype = "application/octet-stream"
	}
	if r.Size != nil {
		a.header["Content-Length"] = strconv.FormatInt(*r.Size, 10)
	}
	return a
}

// dump is datastore.dump: the table as CSV (or TSV, JSON).
func (x *exchange) dump(s subject) answer {
	t := x.sim.cat.tables[s.resource.ID]
	if t == nil {
		return x.fail(http.StatusNotFound, fmt.Sprintf("DataStore resource not found: %s", s.resource.ID))
	}
	columns := []string{"_id"}
	for _, f := range t.Fields {
		columns = append(columns, f.ID)
	}
	format := x.r.URL.Query().Get("format")
	if format == "json" {
		records := make([]any, 0, len(t.Records))
		for _, rec := range t.Records {
			row := make([]any, len(columns))
			for i, col := range columns {
				row[i] = rec[col]
			}
			records = append(records, row)
		}
		b, _ := pythonJSON(map[string]any{"fields": t.fieldList(), "records": records})
		return answer{ctype: "application/json; charset=utf-8", body: bytes.NewReader(b),
			header: map[string]string{"Content-Disposition": fmt.Sprintf(`attachment; filename="%s.json"`, s.resource.ID)}}
	}
	var buf bytes.Buffer
	w := csv.NewWriter(&buf)
	ctype, ext := "text/csv; charset=utf-8", "csv"
	if format == "tsv" {
		w.Comma, ctype, ext = '\t', "text/tab-separated-values; charset=utf-8", "tsv"
	}
	w.Write(columns)
	for _, rec := range t.Records {
		row := make([]string, len(columns))
		for i, col := range columns {
			if v, ok := rec[col]; ok && v != nil {
				row[i] = fmt.Sprint(v)
			}
		}
		w.Write(row)
	}
	w.Flush()
	return answer{ctype: ctype, body: &buf,
		header: map[string]string{"Content-Disposition": fmt.Sprintf(`attachment; filename="%s.%s"`, s.resource.ID, ext)}}
}

func (x *exchange) memberDump(s subject) answer {
	var buf bytes.Buffer
	w := csv.NewWriter(&buf)
	w.Write([]string{"Username", "Email", "Name", "Role"})
	for _, u := range x.sim.cat.users {
		if role := s.group.Members[u.Name]; role != "" {
			w.Write([]string{u.Name, u.Email, u.Fullname, role})
		}
	}
	w.Flush()
	return answer{ctype: "text/csv; charset=utf-8", body: &buf,
		header: map[string]string{"Content-Disposition": fmt.Sprintf(`attachment; filename="%s-members.csv"`, s.group.Name)}}
}

// datatables answers the DataTables view's POSTs: a page of rows as JSON,
// or the rows as CSV.
func (x *exchange) datatables() answer {
	x.sim.cat.mu.RLock()
	defer x.sim.cat.mu.RUnlock()
	s, miss := x.resolve()
	if miss != nil {
		return *miss
	}
	t := x.sim.cat.tables[s.resource.ID]
	if t == nil {
		return x.fail(http.StatusNotFound, "DataStore resource not found")
	}
	if x.route.Endpoint == "datatablesview.filtered_download" {
		return x.dump(s)
	}
	// The view counts rows through datastore_search (limit 0, no filters
	// here): in 2.12 that may insert the cached count.
	if x.sim.cachesRowCounts() && t.countRows() {
		x.entry.Write = true
	}
	rows := []any{}
	for _, rec := range t.Records {
		row := []any{rec["_id"]}
		for _, f := range t.Fields {
			row = append(row, rec[f.ID])
		}
		rows = append(rows, row)
	}
	draw, _ := strconv.Atoi(x.form.Get("draw"))
	return jsonAnswer(map[string]any{"draw": draw, "iTotalRecords": len(t.Records),
		"iTotalDisplayRecords": len(t.Records), "aaData": rows})
}

// apiInfo is CKAN 2.12's datastore.api_info: it runs datastore_search
// (limit 0, include_total left on) as the caller, answers 404 when that
// fails, and renders the API snippet. The search may insert the cached
// row count.
func (x *exchange) apiInfo() answer {
	x.sim.cat.mu.RLock()
	defer x.sim.cat.mu.RUnlock()
	id := x.vars["resource_id"]
	d, r := x.sim.cat.resource(id)
	t := x.sim.cat.tables[id]
	if r == nil || t == nil || !x.sim.cat.canRead(x.who.user, d) {
		return x.fail(http.StatusNotFound, "DataStore resource not found")
	}
	if t.countRows() {
		x.entry.Write = true
	}
	p := x.newPage("DataStore API")
	p.Heading, p.Lead = "CKAN Data API", "Access resource data via a web API with powerful query support."
	p.Items = []item{
		{Href: "/api/3/action/datastore_search?resource_id=" + id, Text: "Query: datastore_search?resource_id=" + id},
		{Href: "/api/3/action/datastore_search_sql", Text: "Query with SQL: datastore_search_sql"},
	}
	return answer{template: "list", page: p}
}

type atomFeed struct {
	XMLName xml.Name    `xml:"http://www.w3.org/2005/Atom feed"`
	Lang    string      `xml:"xml:lang,attr"`
	Title   string      `xml:"title"`
	ID      string      `xml:"id"`
	Updated string      `xml:"updated"`
	Link    atomLink    `xml:"link"`
	Entries []atomEntry `xml:"entry"`
}

type atomLink struct {
	Href string `xml:"href,attr"`
	Rel  string `xml:"rel,attr"`
}

type atomEntry struct {
	Title   string   `xml:"title"`
	ID      string   `xml:"id"`
	Updated string   `xml:"updated"`
	Link    atomLink `xml:"link"`
	Summary string   `xml:"summary"`
}

// feed answers /feeds/dataset.atom and /feeds/custom.atom.
func (x *exchange) feed() answer {
	x.sim.cat.mu.RLock()
	defer x.sim.cat.mu.RUnlock()
	return x.atom("Recently changed datasets", func(*dataset) bool { return true })
}

// subjectFeed answers the group, organization and tag feeds. The caller
// holds the catalogue's lock.
func (x *exchange) subjectFeed(s subject) answer {
	if s.tag != "" {
		return x.atom("Recently changed datasets tagged "+s.tag, func(d *dataset) bool { return slices.Contains(d.Tags, s.tag) })
	}
	g := s.group
	return x.atom(g.Title+" - Recently changed datasets", func(d *dataset) bool {
		return d.OwnerOrg == g.ID || slices.Contains(d.Groups, g.ID)
	})
}

func (x *exchange) atom(title string, keep func(*dataset) bool) answer {
	site := x.siteURL()
	f := atomFeed{Lang: "en", Title: x.siteTitle + " - " + title, ID: site + x.rooted,
		Updated: ckanTime(now()) + "Z", Link: atomLink{Href: site + x.rooted, Rel: "self"}}
	for _, d := range x.sim.cat.visibleDatasets(nil, false) {
		if keep(d) {
			f.Entries = append(f.Entries, atomEntry{Title: d.Title, ID: site + "/dataset/" + d.ID,
				Updated: ckanTime(d.Modified) + "Z", Link: atomLink{Href: site + "/dataset/" + d.Name, Rel: "alternate"}, Summary: d.Notes})
		}
	}
	b, err := xml.MarshalIndent(f, "", "  ")
	if err != nil {
		return x.fail(http.StatusInternalServerError, "")
	}
	body := append([]byte(xml.Header), b...)
	return answer{ctype: "application/atom+xml", body: bytes.NewReader(body)}
}
