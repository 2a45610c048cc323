package ckansim

import (
	"fmt"
	"mime"
	"path"
	"regexp"
	"slices"
	"sort"
	"strings"
)

// Dataset, resource, group and organization actions.

func (c *actionCall) packageList() (any, error) {
	limit, err := c.integer("limit", -1)
	if err != nil {
		return nil, err
	}
	offset, err := c.integer("offset", 0)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, d := range c.cat.visibleDatasets(nil, false) {
		names = append(names, d.Name)
	}
	sort.Strings(names)
	names = pageOf(names, offset, limit)
	out := make([]any, len(names))
	for i, n := range names {
		out[i] = n
	}
	return out, nil
}

// pageOf returns list[offset:offset+limit]; a negative limit means no limit.
func pageOf[T any](list []T, offset, limit int) []T {
	if offset >= len(list) {
		return nil
	}
	list = list[offset:]
	if limit >= 0 && limit < len(list) {
		list = list[:limit]
	}
	return list
}

// searchFacets are the facet fields package_search knows.
var searchFacets = []string{"organization", "groups", "tags", "res_format", "license_id"}

// packageSearch is a small Solr: q is matched word by word against the
// text of each dataset, fq takes field:value terms, rows/start page, sort
// takes name, title_string, metadata_modified or metadata_created.
func (c *actionCall) packageSearch() (any, error) {
	rows, err := c.integer("rows", 10)
	if err != nil {
		return nil, err
	}
	start, err := c.integer("start", 0)
	if err != nil {
		return nil, err
	}
	rows = min(rows, 1000)
	all := c.cat.visibleDatasets(c.who.user, c.boolean("include_private", false))
	var hits []*dataset
	for _, d := range all {
		if c.cat.matchesQuery(d, c.str("q")) && c.cat.matchesFilter(d, c.str("fq")) {
			hits = append(hits, d)
		}
	}
	order := c.str("sort")
	if order == "" {
		order = "score desc, metadata_modified desc"
	}
	sortDatasets(hits, order)

	facets, searchFacets := map[string]any{}, map[string]any{}
	for _, f := range c.list("facet.field") {
		counts := map[string]int{}
		for _, d := range hits {
			for _, v := range c.cat.facetValues(d, f) {
				counts[v]++
			}
		}
		items := []any{}
		fc := map[string]any{}
		for v, n := range counts {
			fc[v] = n
			items = append(items, map[string]any{"name": v, "display_name": v, "count": n})
		}
		sort.Slice(items, func(i, j int) bool {
			a, b := items[i].(map[string]any), items[j].(map[string]any)
			if a["count"] != b["count"] {
				return a["count"].(int) > b["count"].(int)
			}
			return a["name"].(string) < b["name"].(string)
		})
		facets[f] = fc
		searchFacets[f] = map[string]any{"title": f, "items": items}
	}
	results := []any{}
	for _, d := range pageOf(hits, start, rows) {
		results = append(results, c.cat.packageDict(d, c.site))
	}
	return map[string]any{
		"count": len(hits), "results": results, "sort": order,
		"facets": facets, "search_facets": searchFacets,
	}, nil
}

func (c *catalogue) searchText(d *dataset) string {
	parts := []string{d.Name, d.Title, d.Notes, d.Author, d.Maintainer}
	parts = append(parts, d.Tags...)
	for _, r := range d.activeResources() {
		parts = append(parts, r.Name, r.Description, r.Format)
	}
	if org := c.groupByID(d.OwnerOrg); org != nil {
		parts = append(parts, org.Name, org.Title)
	}
	return strings.ToLower(strings.Join(parts, " "))
}

func (c *catalogue) matchesQuery(d *dataset, q string) bool {
	q = strings.TrimSpace(q)
	if q == "" || q == "*:*" {
		return true
	}
	text := c.searchText(d)
	for _, term := range strings.Fields(strings.ToLower(q)) {
		if field, value, ok := strings.Cut(term, ":"); ok {
			if !slices.Contains(c.facetValues(d, field), strings.Trim(value, `"`)) {
				return false
			}
			continue
		}
		if !strings.Contains(text, term) {
			return false
		}
	}
	return true
}

// matchesFilter applies fq terms such as `organization:demo-org
// +tags:"air"`. A term on an unknown field matches nothing.
func (c *catalogue) matchesFilter(d *dataset, fq string) bool {
	for _, term := range strings.Fields(fq) {
		field, value, ok := strings.Cut(strings.TrimPrefix(term, "+"), ":")
		if !ok {
			continue
		}
		if !slices.Contains(c.facetValues(d, field), strings.Trim(value, `"`)) {
			return false
		}
	}
	return true
}

// facetValues returns the values a dataset has for a Solr field.
func (c *catalogue) facetValues(d *dataset, field string) []string {
	switch field {
	case "organization", "owner_org":
		if org := c.groupByID(d.OwnerOrg); org != nil {
			if field == "owner_org" {
				return []string{org.ID}
			}
			return []string{org.Name}
		}
	case "groups":
		var out []string
		for _, id := range d.Groups {
			if g := c.groupByID(id); g != nil {
				out = append(out, g.Name)
			}
		}
		return out
	case "tags":
		return d.Tags
	case "res_format":
		var out []string
		for _, r := range d.activeResources() {
			if r.Format != "" && !slices.Contains(out, r.Format) {
				out = append(out, r.Format)
			}
		}
		return out
	case "license_id":
		return []string{d.LicenseID}
	case "name":
		return []string{d.Name}
	case "id":
		return []string{d.ID}
	case "private":
		return []string{fmt.Sprint(d.Private)}
	case "state":
		return []string{d.State}
	}
	return nil
}

func sortDatasets(list []*dataset, order string) {
	field, dir, _ := strings.Cut(strings.TrimSpace(strings.Split(order, ",")[0]), " ")
	var cmp func(a, b *dataset) int
	switch field {
	case "name":
		cmp = func(a, b *dataset) int { return strings.Compare(a.Name, b.Name) }
	case "title_string":
		cmp = func(a, b *dataset) int { return strings.Compare(strings.ToLower(a.Title), strings.ToLower(b.Title)) }
	case "metadata_created":
		cmp = func(a, b *dataset) int { return a.Created.Compare(b.Created) }
	default: // score desc, metadata_modified desc: newest change first
		cmp, dir = func(a, b *dataset) int { return a.Modified.Compare(b.Modified) }, "desc"
	}
	if strings.TrimSpace(dir) == "desc" {
		slices.SortStableFunc(list, func(a, b *dataset) int { return cmp(b, a) })
	} else {
		slices.SortStableFunc(list, cmp)
	}
}

// findPackage looks up the dataset named by id (or name_or_id) and checks
// that the caller may read it, as package_show does.
func (c *actionCall) findPackage() (*dataset, error) {
	id := c.str("id")
	if id == "" {
		id = c.str("name_or_id")
	}
	if id == "" {
		return nil, missing("name_or_id")
	}
	d := c.cat.dataset(id)
	if d == nil {
		return nil, notFound("")
	}
	if !c.cat.canRead(c.who.user, d) {
		return nil, denied(fmt.Sprintf("User %s not authorized to read package %s", c.who.name(), d.ID))
	}
	return d, nil
}

func (c *actionCall) packageShow() (any, error) {
	d, err := c.findPackage()
	if err != nil {
		return nil, err
	}
	return c.cat.packageDict(d, c.site), nil
}

func (c *actionCall) packageCreate() (any, error) {
	orgRef := c.str("owner_org")
	if u := c.who.user; u == nil || !u.Sysadmin {
		if !c.cat.canCreateSomewhere(u) {
			return nil, denied(fmt.Sprintf("User %s not authorized to create packages", c.who.name()))
		}
		if org := c.cat.group(orgRef, true); orgRef != "" && (org == nil || !c.cat.canEdit(u, org.ID)) {
			return nil, denied(fmt.Sprintf("User %s not authorized to add dataset to this organization", c.who.name()))
		}
	}
	t := now()
	d := &dataset{ID: newID(), State: "active", Created: t, Modified: t}
	if c.who.user != nil {
		d.CreatorUserID = c.who.user.ID
	}
	if errs := c.savePackage(d, true); len(errs) > 0 {
		return nil, invalid(errs)
	}
	c.cat.datasets = append(c.cat.datasets, d)
	c.cat.record(c.who.user, d.ID, "new package", map[string]any{"package": c.cat.packageDict(d, c.site)})
	return c.cat.packageDict(d, c.site), nil
}

func (c *actionCall) packageUpdate() (any, error) {
	id := c.str("id")
	if id == "" {
		id = c.str("name")
	}
	if id == "" {
		return nil, invalid(map[string]any{"id": "Missing value"})
	}
	d := c.cat.dataset(id)
	if d == nil {
		return nil, notFound("Package was not found.")
	}
	if !c.cat.canEdit(c.who.user, d.OwnerOrg) {
		return nil, denied(fmt.Sprintf("User %s not authorized to edit package %s", c.who.name(), d.ID))
	}
	// Validate on a copy, so that a refused update changes nothing.
	updated := *d
	updated.Resources = slices.Clone(d.Resources)
	if errs := c.savePackage(&updated, false); len(errs) > 0 {
		return nil, invalid(errs)
	}
	updated.Modified = now()
	*d = updated
	c.cat.record(c.who.user, d.ID, "changed package", map[string]any{"package": c.cat.packageDict(d, c.site)})
	return c.cat.packageDict(d, c.site), nil
}

// packagePatch is package_update over the dataset's current values.
func (c *actionCall) packagePatch() (any, error) {
	d, err := c.findPackage()
	if err != nil {
		return nil, err
	}
	current := c.cat.packageDict(d, c.site)
	delete(current, "resources")
	for k, v := range c.data {
		current[k] = v
	}
	current["id"] = d.ID
	c.data = current
	return c.packageUpdate()
}

func (c *actionCall) packageDelete() (any, error) {
	id := c.str("id")
	if id == "" {
		return nil, missing("id")
	}
	d := c.cat.dataset(id)
	if d == nil {
		return nil, notFound("Package was not found.")
	}
	if !c.cat.canEdit(c.who.user, d.OwnerOrg) {
		return nil, denied(fmt.Sprintf("User %s not authorized to delete package %s", c.who.name(), d.ID))
	}
	d.State, d.Modified = "deleted", now()
	c.cat.record(c.who.user, d.ID, "deleted package", map[string]any{"package": c.cat.packageDict(d, c.site)})
	return nil, nil
}

// packageScalars are the plain text fields of a dataset; package_update
// empties those it is not given.
func packageScalars(d *dataset) map[string]*string {
	return map[string]*string{
		"title": &d.Title, "notes": &d.Notes, "url": &d.URL, "version": &d.Version,
		"author": &d.Author, "author_email": &d.AuthorEmail, "maintainer": &d.Maintainer,
		"maintainer_email": &d.MaintainerEmail, "license_id": &d.LicenseID,
	}
}

// savePackage validates the data as package_create (isNew) or
// package_update would and applies it to d; it returns the field errors
// and leaves d half-changed when there are some (callers work on a copy
// or discard d).
func (c *actionCall) savePackage(d *dataset, isNew bool) map[string]any {
	errs := map[string]any{}
	if _, given := c.data["name"]; isNew || given {
		name := c.str("name")
		switch other := c.cat.dataset(name); {
		case name == "":
			errs["name"] = []any{"Missing value"}
		case len(name) < 2:
			errs["name"] = []any{"Must be at least 2 characters long"}
		case len(name) > 100:
			errs["name"] = []any{"Name must be a maximum of 100 characters long"}
		case !validName(name):
			errs["name"] = []any{"Must be purely lowercase alphanumeric (ascii) characters and these symbols: -_"}
		case other != nil && other.ID != d.ID:
			errs["name"] = []any{"That URL is already in use."}
		default:
			d.Name = name
		}
	}
	if _, given := c.data["owner_org"]; isNew || given {
		ref := c.str("owner_org")
		org := c.cat.group(ref, true)
		switch {
		case ref == "":
			errs["owner_org"] = []any{"An organization must be provided"}
		case org == nil:
			errs["owner_org"] = []any{"Organization does not exist"}
		case !c.cat.canEdit(c.who.user, org.ID):
			errs["owner_org"] = []any{"You cannot add a dataset to this organization"}
		default:
			d.OwnerOrg = org.ID
		}
	}
	if _, given := c.data["groups"]; given {
		d.Groups = nil
		for _, ref := range refs(c.data["groups"], "id", "name") {
			g := c.cat.group(ref, false)
			if g == nil {
				errs["groups"] = []any{"That group name or ID does not exist."}
				continue
			}
			d.Groups = append(d.Groups, g.ID)
		}
	}
	if _, given := c.data["tags"]; given {
		d.Tags = refs(c.data["tags"], "name")
	} else if _, given := c.data["tag_string"]; given {
		d.Tags = c.list("tag_string")
	}
	for _, t := range d.Tags {
		c.cat.tagID(t)
	}
	for key, field := range packageScalars(d) {
		*field = c.str(key)
	}
	if c.str("title") == "" {
		d.Title = d.Name
	}
	d.Private = c.boolean("private", false)
	if state := c.str("state"); state == "draft" || state == "active" {
		d.State = state
	}
	d.Extras = nil
	if list, ok := c.data["extras"].([]any); ok {
		for _, e := range list {
			if m, ok := e.(map[string]any); ok {
				d.Extras = append(d.Extras, extra{Key: fmt.Sprint(m["key"]), Value: fmt.Sprint(m["value"])})
			}
		}
	}
	if len(errs) > 0 {
		return errs
	}
	if list, ok := c.data["resources"].([]any); ok {
		var kept []*resource
		for i, e := range list {
			m, ok := e.(map[string]any)
			if !ok {
				errs["resources"] = []any{fmt.Sprintf("resource %d is not a dictionary", i)}
				continue
			}
			r := d.resourceByID(fmt.Sprint(m["id"]))
			if r == nil {
				r = &resource{ID: newID(), PackageID: d.ID, State: "active", Created: now()}
			}
			(&actionCall{cat: c.cat, data: m}).applyResource(r, false)
			kept = append(kept, r)
		}
		for _, r := range d.Resources {
			if !slices.Contains(kept, r) {
				r.State = "deleted"
				kept = append(kept, r)
			}
		}
		d.Resources = kept
	}
	return errs
}

func (d *dataset) resourceByID(id string) *resource {
	for _, r := range d.Resources {
		if r.ID == id {
			return r
		}
	}
	return nil
}

// refs reads a list of references given as strings or as dictionaries
// with one of keys (CKAN's [{"name": ...}] lists).
func refs(v any, keys ...string) []string {
	var out []string
	list, _ := v.([]any)
	if s, ok := v.(string); ok {
		list = []any{s}
	}
	for _, e := range list {
		switch e := e.(type) {
		case string:
			out = append(out, e)
		case map[string]any:
			for _, k := range keys {
				if s, ok := e[k].(string); ok && s != "" {
					out = append(out, s)
					break
				}
			}
		}
	}
	return out
}

// resourceCore are the keys applyResource handles itself; any other key is
// kept as a resource extra, as CKAN does.
var resourceCore = []string{"id", "package_id", "name", "description", "format", "url", "url_type",
	"mimetype", "upload", "clear_upload", "size", "hash", "sha256", "state", "position", "created",
	"last_modified", "metadata_modified", "datastore_active", "mimetype_inner", "cache_url",
	"cache_last_updated", "resource_type", "save", csrfField}

// applyResource applies resource fields, and an uploaded file when there
// is one, to r; with patch, absent fields are left alone.
func (c *actionCall) applyResource(r *resource, patch bool) {
	for key, field := range map[string]*string{"name": &r.Name, "description": &r.Description, "format": &r.Format, "mimetype": &r.Mimetype} {
		if _, given := c.data[key]; given || !patch {
			*field = c.str(key)
		}
	}
	if up, ok := c.data["upload"].(*upload); ok && up.Filename != "" {
		r.URLType, r.URL = "upload", mungeFilename(up.Filename)
		r.setUpload(up.kept, up.Size, up.SHA256)
		ext := path.Ext(r.URL)
		if r.Mimetype == "" {
			if r.Mimetype = mime.TypeByExtension(ext); r.Mimetype == "" {
				r.Mimetype = up.ContentType
			}
			r.Mimetype, _, _ = strings.Cut(r.Mimetype, ";")
		}
		if r.Format == "" && ext != "" {
			r.Format = strings.ToUpper(ext[1:])
		}
	} else if _, given := c.data["url"]; given || !patch {
		urlType, typeGiven := c.data["url_type"].(string)
		switch {
		case r.URLType == "upload" && (!typeGiven || urlType == "upload"):
			// An upload keeps its file; clients send back the download URL.
			r.URL = path.Base(c.str("url"))
		default:
			r.URLType, r.URL = urlType, c.str("url")
			r.upload, r.Size, r.SHA256 = nil, nil, ""
		}
	}
	for k, v := range c.data {
		if !slices.Contains(resourceCore, k) {
			if r.Extras == nil {
				r.Extras = map[string]any{}
			}
			r.Extras[k] = v
		}
	}
	r.Modified = now()
}

var unsafeFilename = regexp.MustCompile(`[^a-zA-Z0-9_. -]`)

// mungeFilename is CKAN's munge_filename: no path, only safe characters,
// spaces as dashes.
func mungeFilename(name string) string {
	name = path.Base(strings.ReplaceAll(name, `\`, "/"))
	name = unsafeFilename.ReplaceAllString(strings.TrimSpace(name), "")
	name = regexp.MustCompile(`-+`).ReplaceAllString(strings.ReplaceAll(name, " ", "-"), "-")
	if name == "" || name == "." {
		name = "file"
	}
	return name
}

// findResource looks up the resource named by id and checks that the
// caller may read its dataset.
func (c *actionCall) findResource() (*dataset, *resource, error) {
	id := c.str("id")
	if id == "" {
		return nil, nil, missing("id")
	}
	d, r := c.cat.resource(id)
	if r == nil {
		return nil, nil, notFound("Resource was not found.")
	}
	if !c.cat.canRead(c.who.user, d) {
		return nil, nil, denied(fmt.Sprintf("User %s not authorized to read resource %s", c.who.name(), r.ID))
	}
	return d, r, nil
}

func (c *actionCall) resourceShow() (any, error) {
	d, r, err := c.findResource()
	if err != nil {
		return nil, err
	}
	return c.cat.resourceDict(d, r, c.site), nil
}

func (c *actionCall) resourceCreate() (any, error) {
	pkgID := c.str("package_id")
	if pkgID == "" {
		return nil, missing("package_id")
	}
	d := c.cat.dataset(pkgID)
	if d == nil {
		return nil, notFound("")
	}
	if !c.cat.canEdit(c.who.user, d.OwnerOrg) {
		return nil, denied(fmt.Sprintf("User %s not authorized to create resources on dataset %s", c.who.name(), d.ID))
	}
	r := &resource{ID: newID(), PackageID: d.ID, State: "active", Created: now()}
	c.applyResource(r, false)
	d.Resources = append(d.Resources, r)
	c.changedPackage(d)
	return c.cat.resourceDict(d, r, c.site), nil
}

// changedPackage records a change to a dataset's resources.
func (c *actionCall) changedPackage(d *dataset) {
	d.Modified = now()
	c.cat.record(c.who.user, d.ID, "changed package", map[string]any{"package": c.cat.packageDict(d, c.site)})
}

func (c *actionCall) resourceUpdate() (any, error) { return c.changeResource(false) }
func (c *actionCall) resourcePatch() (any, error)  { return c.changeResource(true) }

func (c *actionCall) changeResource(patch bool) (any, error) {
	id := c.str("id")
	if id == "" {
		return nil, missing("id")
	}
	d, r := c.cat.resource(id)
	if r == nil {
		return nil, notFound("Resource was not found.")
	}
	if !c.cat.canEdit(c.who.user, d.OwnerOrg) {
		return nil, denied(fmt.Sprintf("User %s not authorized to edit resource %s", c.who.name(), r.ID))
	}
	c.applyResource(r, patch)
	c.changedPackage(d)
	return c.cat.resourceDict(d, r, c.site), nil
}

func (c *actionCall) resourceDelete() (any, error) {
	id := c.str("id")
	if id == "" {
		return nil, missing("id")
	}
	d, r := c.cat.resource(id)
	if r == nil {
		return nil, notFound("Resource was not found.")
	}
	if !c.cat.canEdit(c.who.user, d.OwnerOrg) {
		return nil, denied(fmt.Sprintf("User %s not authorized to delete resource %s", c.who.name(), r.ID))
	}
	r.State = "deleted"
	delete(c.cat.tables, r.ID)
	c.changedPackage(d)
	return nil, nil
}

func (c *actionCall) groupList(org bool) (any, error) {
	limit, err := c.integer("limit", -1)
	if err != nil {
		return nil, err
	}
	offset, err := c.integer("offset", 0)
	if err != nil {
		return nil, err
	}
	var list []*group
	for _, g := range c.cat.groups {
		if g.IsOrganization == org && g.State == "active" {
			list = append(list, g)
		}
	}
	switch c.str("sort") {
	case "name", "name asc":
		slices.SortFunc(list, func(a, b *group) int { return strings.Compare(a.Name, b.Name) })
	default: // ckan.default_group_sort: title
		slices.SortFunc(list, func(a, b *group) int { return strings.Compare(a.Title, b.Title) })
	}
	out := []any{}
	for _, g := range pageOf(list, offset, limit) {
		if c.boolean("all_fields", false) {
			out = append(out, c.cat.groupDict(g, c.site, false))
		} else {
			out = append(out, g.Name)
		}
	}
	return out, nil
}

func (c *actionCall) groupShow(org bool) (any, error) {
	id := c.str("id")
	if id == "" {
		return nil, missing("id")
	}
	g := c.cat.group(id, org)
	if g == nil || (g.State == "deleted" && !c.who.sysadmin()) {
		return nil, notFound("")
	}
	m := c.cat.groupDict(g, c.site, true)
	if c.boolean("include_datasets", false) {
		packages := []any{}
		for _, d := range c.cat.visibleDatasets(c.who.user, false) {
			if d.OwnerOrg == g.ID || slices.Contains(d.Groups, g.ID) {
				packages = append(packages, c.cat.packageDict(d, c.site))
			}
		}
		m["packages"] = packages
	}
	return m, nil
}

func (c *actionCall) packageActivityList() (any, error) {
	d, err := c.findPackage()
	if err != nil {
		return nil, err
	}
	limit, err := c.integer("limit", 31)
	if err != nil {
		return nil, err
	}
	offset, err := c.integer("offset", 0)
	if err != nil {
		return nil, err
	}
	out := []any{}
	for _, a := range pageOf(c.cat.activitiesOf(d.ID), offset, limit) {
		out = append(out, c.cat.activityDict(a))
	}
	return out, nil
}

func (c *actionCall) resourceViewList() (any, error) {
	d, r, err := c.findResource()
	if err != nil {
		return nil, err
	}
	out := []any{}
	for _, v := range c.cat.views {
		if v.ResourceID == r.ID {
			out = append(out, viewDict(d, v))
		}
	}
	return out, nil
}

func (c *actionCall) resourceViewShow() (any, error) {
	id := c.str("id")
	if id == "" {
		return nil, missing("id")
	}
	v := c.cat.view(id)
	if v == nil {
		return nil, notFound("")
	}
	d, _ := c.cat.resource(v.ResourceID)
	if d == nil {
		return nil, notFound("")
	}
	if !c.cat.canRead(c.who.user, d) {
		return nil, denied("")
	}
	return viewDict(d, v), nil
}

func viewDict(d *dataset, v *resourceView) map[string]any {
	return map[string]any{"id": v.ID, "resource_id": v.ResourceID, "package_id": d.ID,
		"title": v.Title, "description": "", "view_type": v.ViewType, "position": 0}
}

// groupCreate is group_create and organization_create: any logged-in user
// may create one (ckan.auth.user_create_groups and
// user_create_organizations default to true) and becomes its admin.
func (c *actionCall) groupCreate(org bool) (any, error) {
	kind := map[bool]string{true: "organizations", false: "groups"}[org]
	if c.who.user == nil {
		return nil, denied(fmt.Sprintf("User %s not authorized to create %s", c.who.name(), kind))
	}
	g := &group{ID: newID(), IsOrganization: org, State: "active", Created: now(), Members: map[string]string{c.who.user.Name: "admin"}}
	if errs := c.saveGroup(g, true); len(errs) > 0 {
		return nil, invalid(errs)
	}
	c.cat.groups = append(c.cat.groups, g)
	c.cat.record(c.who.user, g.ID, "new "+g.kind(), map[string]any{"group": c.cat.groupDict(g, c.site, false)})
	return c.cat.groupDict(g, c.site, true), nil
}

// findGroup finds the group or organization an update or delete names,
// and checks the caller administers it.
func (c *actionCall) findGroup(org bool, verb string) (*group, error) {
	id := c.str("id")
	if id == "" {
		return nil, missing("id")
	}
	g := c.cat.group(id, org)
	if g == nil {
		return nil, notFound("Group was not found.")
	}
	if !canAdminGroup(c.who.user, g) {
		return nil, denied(fmt.Sprintf("User %s not authorized to %s group %s", c.who.name(), verb, g.ID))
	}
	return g, nil
}

func (c *actionCall) groupUpdate(org bool) (any, error) {
	g, err := c.findGroup(org, "edit")
	if err != nil {
		return nil, err
	}
	updated := *g
	if errs := c.saveGroup(&updated, false); len(errs) > 0 {
		return nil, invalid(errs)
	}
	*g = updated
	c.cat.record(c.who.user, g.ID, "changed "+g.kind(), map[string]any{"group": c.cat.groupDict(g, c.site, false)})
	return c.cat.groupDict(g, c.site, true), nil
}

func (c *actionCall) groupDelete(org bool) (any, error) {
	g, err := c.findGroup(org, "delete")
	if err != nil {
		return nil, err
	}
	g.State = "deleted"
	c.cat.record(c.who.user, g.ID, "deleted "+g.kind(), map[string]any{"group": c.cat.groupDict(g, c.site, false)})
	return nil, nil
}

// saveGroup validates and applies a group's fields.
func (c *actionCall) saveGroup(g *group, isNew bool) map[string]any {
	errs := map[string]any{}
	if _, given := c.data["name"]; isNew || given {
		name := c.str("name")
		other := c.cat.group(name, g.IsOrganization)
		switch {
		case name == "":
			errs["name"] = []any{"Missing value"}
		case !validName(name):
			errs["name"] = []any{"Must be purely lowercase alphanumeric (ascii) characters and these symbols: -_"}
		case other != nil && other.ID != g.ID:
			errs["name"] = []any{"Group name already exists in database"}
		default:
			g.Name = name
		}
	}
	for key, field := range map[string]*string{"title": &g.Title, "description": &g.Description, "image_url": &g.ImageURL} {
		if _, given := c.data[key]; given || isNew {
			*field = c.str(key)
		}
	}
	if g.Title == "" {
		g.Title = g.Name
	}
	return errs
}
