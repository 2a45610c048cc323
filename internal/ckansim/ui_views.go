package ckansim

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
)

// fixedViews answer endpoints that name no catalogue object, or that read
// the request themselves. They lock the catalogue as they need.
var fixedViews map[string]func(*exchange) answer

// getViews answer GETs of pages other than lists and forms. They run with
// the catalogue's read lock held, after resolve and guard.
var getViews map[string]func(*exchange, subject) answer

// postViews answer form POSTs by running actions (which lock for
// themselves). The request's form is in x.form and x.files.
var postViews map[string]func(*exchange, ids) answer

func init() {
	fixedViews = map[string]func(*exchange) answer{
		"home.index":                             (*exchange).homePage,
		"home.about":                             (*exchange).aboutPage,
		"home.robots_txt":                        (*exchange).robotsTxt,
		"home.redirect_locale":                   (*exchange).redirectLocale,
		"static":                                 (*exchange).asset,
		"webassets.index":                        (*exchange).asset,
		"api.get_api":                            (*exchange).apiVersion,
		"api.i18n_js_translations":               (*exchange).jsTranslations,
		"api.dataset_autocomplete":               (*exchange).autocomplete,
		"api.tag_autocomplete":                   (*exchange).autocomplete,
		"api.format_autocomplete":                (*exchange).autocomplete,
		"api.user_autocomplete":                  (*exchange).autocomplete,
		"api.group_autocomplete":                 (*exchange).autocomplete,
		"api.organization_autocomplete":          (*exchange).autocomplete,
		"api.snippet":                            (*exchange).snippet,
		"util.primer":                            (*exchange).primerPage,
		"util.internal_redirect":                 (*exchange).internalRedirect,
		"user.login":                             (*exchange).login,
		"user.logout":                            (*exchange).logout,
		"user.logged_out_page":                   (*exchange).loggedOutPage,
		"user.me":                                func(x *exchange) answer { return redirectTo("/dashboard/datasets") },
		"dataset.search":                         (*exchange).searchPage,
		"group.index":                            (*exchange).groupIndex,
		"organization.index":                     (*exchange).groupIndex,
		"user.index":                             (*exchange).userIndex,
		"feeds.general":                          (*exchange).feed,
		"feeds.custom":                           (*exchange).feed,
		"activity.package_changes_multiple":      (*exchange).changesPage,
		"activity.group_changes_multiple":        (*exchange).changesPage,
		"activity.organization_changes_multiple": (*exchange).changesPage,
		"datatablesview.ajax":                    (*exchange).datatables,
		"datatablesview.filtered_download":       (*exchange).datatables,
		// CKAN 2.12's file downloads: with no storage configured (the
		// default) there is no file to serve, so each view aborts 404.
		"file.download":         (*exchange).noFile,
		"file.trusted_download": (*exchange).noFile,
		"file.public_download":  (*exchange).noFile,
		"datastore.api_info":    (*exchange).apiInfo,
	}
	getViews = map[string]func(*exchange, subject) answer{
		"dataset.read":              (*exchange).datasetPage,
		"dataset_resource.read":     (*exchange).resourcePage,
		"resource.read":             (*exchange).resourcePage,
		"dataset_resource.download": (*exchange).download,
		"resource.download":         (*exchange).download,
		"datastore.dump":            (*exchange).dump,
		"group.member_dump":         (*exchange).memberDump,
		"organization.member_dump":  (*exchange).memberDump,
		"feeds.group":               (*exchange).subjectFeed,
		"feeds.organization":        (*exchange).subjectFeed,
		"feeds.tag":                 (*exchange).subjectFeed,
	}
	postViews = map[string]func(*exchange, ids) answer{
		"dataset.new":             (*exchange).postDatasetNew,
		"dataset.edit":            (*exchange).postDatasetEdit,
		"dataset.delete":          (*exchange).postDatasetDelete,
		"dataset_resource.new":    (*exchange).postResourceNew,
		"resource.new":            (*exchange).postResourceNew,
		"dataset_resource.edit":   (*exchange).postResourceEdit,
		"resource.edit":           (*exchange).postResourceEdit,
		"dataset_resource.delete": (*exchange).postResourceDelete,
		"resource.delete":         (*exchange).postResourceDelete,
		"group.new":               (*exchange).postGroupNew,
		"organization.new":        (*exchange).postGroupNew,
		"group.edit":              (*exchange).postGroupEdit,
		"organization.edit":       (*exchange).postGroupEdit,
		"group.delete":            (*exchange).postGroupDelete,
		"organization.delete":     (*exchange).postGroupDelete,
		"dataset.follow":          (*exchange).postFollow,
		"dataset.unfollow":        (*exchange).postFollow,
		"group.follow":            (*exchange).postFollow,
		"group.unfollow":          (*exchange).postFollow,
		"organization.follow":     (*exchange).postFollow,
		"organization.unfollow":   (*exchange).postFollow,
		"user.follow":             (*exchange).postFollow,
		"user.unfollow":           (*exchange).postFollow,
		"admin.config":            (*exchange).postConfig,
		"admin.trash":             (*exchange).postTrash,
		"user.edit":               (*exchange).postUserEdit,
		"user.register":           (*exchange).postRegister,
		"user.api_tokens":         (*exchange).postAPIToken,
		"user.api_token_revoke":   (*exchange).postAPITokenRevoke,
		"user.api_tokens_revoke":  (*exchange).postAPITokensRevoke,
	}
}

// noFile is ckan/views/file.py (2.12) with the default configuration: no
// storage, no file table row, base.abort(404).
func (x *exchange) noFile() answer { return x.fail(http.StatusNotFound, "") }

func (x *exchange) homePage() answer {
	x.sim.cat.mu.RLock()
	defer x.sim.cat.mu.RUnlock()
	p := x.newPage("Welcome")
	p.Heading, p.Lead = "Recently changed datasets", x.sim.cat.config["ckan.site_intro_text"]
	for _, d := range pageOf(x.sim.cat.visibleDatasets(x.who.user, false), 0, 5) {
		p.Items = append(p.Items, item{Href: "/dataset/" + d.Name, Text: d.Title, Note: ckanTime(d.Modified)})
	}
	return answer{template: "home", page: p}
}

func (x *exchange) aboutPage() answer {
	x.sim.cat.mu.RLock()
	defer x.sim.cat.mu.RUnlock()
	p := x.newPage("About")
	p.Heading, p.Lead = "About", x.sim.cat.config["ckan.site_about"]
	return answer{template: "list", page: p}
}

func (x *exchange) primerPage() answer {
	p := x.newPage("Primer")
	p.Heading, p.Lead = "Primer", "CKAN's style primer: the page elements of the theme."
	p.Items = []item{{Href: "/dataset/", Text: "Datasets"}, {Href: "/organization/", Text: "Organizations"}}
	return answer{template: "list", page: p}
}

func (x *exchange) robotsTxt() answer {
	body := "User-agent: *\nDisallow: /dataset/rate/\nDisallow: /revision/\nDisallow: /dataset/*/history\nDisallow: /api/\nCrawl-Delay: 10\n"
	return answer{ctype: "text/plain; charset=utf-8", body: strings.NewReader(body)}
}

// legacyLocales maps the old locale codes to those CKAN 2.10+ uses.
var legacyLocales = map[string]string{"zh_TW": "zh_Hant_TW", "zh_CN": "zh_Hans_CN", "no": "nb_NO"}

// redirectLocale is home.redirect_locale: a permanent redirect from a
// legacy locale code to its new name.
func (x *exchange) redirectLocale() answer {
	legacy, _, _ := strings.Cut(strings.TrimPrefix(x.route.Rule, "/"), "/")
	target := "/" + legacyLocales[legacy]
	if p := x.vars["path"]; p != "" {
		target += "/" + p
	}
	if x.r.URL.RawQuery != "" {
		target += "?" + x.r.URL.RawQuery
	}
	return answer{status: http.StatusPermanentRedirect, location: x.siteURL() + target}
}

func (x *exchange) internalRedirect() answer {
	target := x.form.Get("url")
	if target == "" {
		target = x.r.URL.Query().Get("url")
	}
	switch {
	case target == "":
		return x.fail(http.StatusBadRequest, "Missing Value: url")
	case !localURL(target):
		return x.fail(http.StatusForbidden, "Redirecting to external site is not allowed.")
	}
	return redirectTo(target)
}

// login is user.login: the form on GET; on POST, a session for good
// credentials (bookkeeping, not a content write) and the dashboard.
func (x *exchange) login() answer {
	if x.who.user != nil {
		p := x.newPage("Logout")
		p.Heading, p.Lead = "You're already logged in", "You're already logged in as "+x.who.name()+". Logout first."
		return answer{template: "list", page: p}
	}
	if x.r.Method != http.MethodPost {
		return x.loginPage(nil)
	}
	x.sim.cat.mu.RLock()
	var u *user
	for _, cand := range x.sim.cat.users {
		if (cand.Name == x.form.Get("login") || (cand.Email != "" && cand.Email == x.form.Get("login"))) &&
			cand.Password != "" && cand.Password == x.form.Get("password") && cand.State == "active" {
			u = cand
		}
	}
	x.sim.cat.mu.RUnlock()
	if u == nil {
		a := x.loginPage([]string{"Login failed. Bad username or password."})
		a.page.Flash = "Login failed. Bad username or password."
		return a
	}
	sess := x.sim.sessions.start(u.ID)
	http.SetCookie(x.w, &http.Cookie{Name: sessionCookie, Value: sess.id, Path: "/", HttpOnly: true, SameSite: http.SameSiteLaxMode})
	next := x.r.URL.Query().Get("next")
	if next == "" || !localURL(next) {
		next = "/dashboard/datasets"
	}
	return redirectTo(next)
}

func (x *exchange) logout() answer {
	if x.who.user == nil {
		return redirectTo("/user/login")
	}
	if x.who.session != nil {
		x.sim.sessions.end(x.who.session.id)
	}
	http.SetCookie(x.w, &http.Cookie{Name: sessionCookie, Value: "", Path: "/", MaxAge: -1})
	if cameFrom := x.r.URL.Query().Get("came_from"); cameFrom != "" && localURL(cameFrom) {
		return redirectTo(cameFrom)
	}
	return redirectTo("/user/logged_out_redirect")
}

func (x *exchange) loggedOutPage() answer {
	p := x.newPage("Logged Out")
	p.Heading, p.Lead = "Logged Out", "You are now logged out."
	return answer{template: "list", page: p}
}

func (x *exchange) searchPage() answer {
	data := map[string]any{"q": x.r.URL.Query().Get("q"), "rows": "20", "include_private": "true",
		"start": "0", "facet.field": []any{"organization", "groups", "tags", "res_format", "license_id"}}
	var fq []string
	for _, f := range searchFacets {
		if v := x.r.URL.Query().Get(f); v != "" {
			fq = append(fq, f+":\""+v+"\"")
		}
	}
	data["fq"] = strings.Join(fq, " ")
	res, err := x.act("package_search", data)
	if err != nil {
		return x.fail(http.StatusBadRequest, "Invalid search query")
	}
	result := res.(map[string]any)
	p := x.newPage("Datasets")
	p.Heading, p.Empty = fmt.Sprintf("%d datasets found", result["count"]), "No datasets found"
	for _, r := range result["results"].([]any) {
		d := r.(map[string]any)
		p.Items = append(p.Items, item{Href: "/dataset/" + d["name"].(string), Text: d["title"].(string), Note: fmt.Sprint(d["notes"])})
	}
	return answer{template: "list", page: p}
}

func (x *exchange) groupIndex() answer {
	org := x.route.Endpoint == "organization.index"
	x.sim.cat.mu.RLock()
	defer x.sim.cat.mu.RUnlock()
	p := x.newPage(map[bool]string{true: "Organizations", false: "Groups"}[org])
	p.Heading = p.Title
	for _, g := range x.sim.cat.groups {
		if g.IsOrganization == org && g.State == "active" {
			p.Items = append(p.Items, item{Href: "/" + g.kind() + "/" + g.Name, Text: g.Title, Note: g.Description})
		}
	}
	return answer{template: "list", page: p}
}

func (x *exchange) userIndex() answer {
	x.sim.cat.mu.RLock()
	defer x.sim.cat.mu.RUnlock()
	p := x.newPage("All Users")
	p.Heading = "Users"
	for _, u := range x.sim.cat.users {
		if u.State == "active" && u.Name != x.sim.siteID {
			p.Items = append(p.Items, item{Href: "/user/" + u.Name, Text: u.displayName()})
		}
	}
	return answer{template: "list", page: p}
}

func (x *exchange) changesPage() answer {
	p := x.newPage("Changes")
	p.Heading, p.Empty = "Changes", "Choose the activities to compare."
	return answer{template: "list", page: p}
}

func (x *exchange) datasetPage(s subject) answer {
	d, c := s.dataset, x.sim.cat
	dp := &datasetPage{Name: d.Name, Title: d.Title, Notes: d.Notes, State: d.State, Private: d.Private,
		License: d.LicenseID, Created: ckanTime(d.Created), Modified: ckanTime(d.Modified), Tags: d.Tags}
	if l, ok := c.license(d.LicenseID); ok {
		dp.License = l.Title
	}
	if org := c.groupByID(d.OwnerOrg); org != nil {
		dp.OrgName, dp.OrgTitle = org.Name, org.Title
	}
	for _, r := range d.activeResources() {
		dp.Resources = append(dp.Resources, x.resourceView(d, r))
	}
	p := x.newPage(d.Title)
	p.Dataset = dp
	return answer{template: "dataset", page: p}
}

func (x *exchange) resourceView(d *dataset, r *resource) resourcePage {
	return resourcePage{ID: r.ID, Name: r.Name, Description: r.Description, Format: r.Format,
		URL: r.downloadURL(x.siteURL()), Page: "/dataset/" + d.Name + "/resource/" + r.ID,
		Download: r.downloadURL(x.siteURL()), Size: humanSize(r.Size), Modified: ckanTime(r.Modified),
		Datastore: r.DatastoreActive}
}

func (x *exchange) resourcePage(s subject) answer {
	rp := x.resourceView(s.dataset, s.resource)
	p := x.newPage(s.resource.Name + " - " + s.dataset.Title)
	p.Resource = &rp
	return answer{template: "resource", page: p}
}

// listPage is every other page: a heading and a list of what the page is
// about. The caller holds the catalogue's read lock.
func (x *exchange) listPage(s subject) answer {
	c, u := x.sim.cat, x.who.user
	_, view, _ := strings.Cut(x.route.Endpoint, ".")
	title := titleCase(view)
	var items []item
	datasetItems := func(keep func(*dataset) bool) {
		for _, d := range c.visibleDatasets(u, true) {
			if keep(d) {
				items = append(items, item{Href: "/dataset/" + d.Name, Text: d.Title})
			}
		}
	}
	activityItems := func(objectID string) {
		for _, a := range c.activitiesOf(objectID) {
			who := "Someone"
			if actor := c.userByName(a.UserID); actor != nil {
				who = actor.displayName()
			}
			items = append(items, item{Text: fmt.Sprintf("%s: %s", who, a.Type), Note: ckanTime(a.Timestamp)})
		}
	}
	switch {
	case s.activity != nil:
		title = "Activity " + s.activity.Type
		items = append(items, item{Text: s.activity.Type, Note: ckanTime(s.activity.Timestamp)})
	case s.view != nil:
		title = s.view.Title
		items = append(items, item{Href: "/dataset/" + s.dataset.Name + "/resource/" + s.resource.ID, Text: s.resource.Name, Note: s.view.ViewType})
	case s.resource != nil: // views
		title = "Views - " + s.resource.Name
		for _, v := range c.views {
			if v.ResourceID == s.resource.ID {
				items = append(items, item{Href: "/dataset/" + s.dataset.Name + "/resource/" + s.resource.ID + "/view/" + v.ID, Text: v.Title, Note: v.ViewType})
			}
		}
	case s.dataset != nil && strings.Contains(view, "activity"):
		title = "Activity Stream - " + s.dataset.Title
		activityItems(s.dataset.ID)
	case s.dataset != nil && view == "followers":
		title = "Followers - " + s.dataset.Title
		items = c.followerItems(s.dataset.ID)
	case s.dataset != nil: // resources
		title = "Resources - " + s.dataset.Title
		for _, r := range s.dataset.activeResources() {
			items = append(items, item{Href: "/dataset/" + s.dataset.Name + "/resource/" + r.ID, Text: r.Name, Note: r.Format})
		}
	case s.group != nil && strings.Contains(view, "activity"):
		title = "Activity Stream - " + s.group.Title
		activityItems(s.group.ID)
	case s.group != nil && (view == "members" || view == "followers"):
		title = titleCase(view) + " - " + s.group.Title
		if view == "followers" {
			items = c.followerItems(s.group.ID)
			break
		}
		for _, m := range c.users {
			if role := s.group.Members[m.Name]; role != "" {
				items = append(items, item{Href: "/user/" + m.Name, Text: m.displayName(), Note: role})
			}
		}
	case s.group != nil: // read, about
		title = s.group.Title
		g := s.group
		datasetItems(func(d *dataset) bool { return d.OwnerOrg == g.ID || slices.Contains(d.Groups, g.ID) })
	case s.user != nil && view == "user_activity":
		title = "Activity Stream - " + s.user.displayName()
		for _, a := range c.activitiesOf("") {
			if a.UserID == s.user.ID {
				items = append(items, item{Text: a.Type, Note: ckanTime(a.Timestamp)})
			}
		}
	case s.user != nil && (view == "read_groups" || view == "read_organizations"):
		title = s.user.displayName()
		for _, g := range c.groups {
			if g.Members[s.user.Name] != "" && g.IsOrganization == (view == "read_organizations") {
				items = append(items, item{Href: "/" + g.kind() + "/" + g.Name, Text: g.Title})
			}
		}
	case s.user != nil && view == "followers":
		title = "Followers - " + s.user.displayName()
		items = c.followerItems(s.user.ID)
	case s.user != nil: // read
		title = s.user.displayName()
		su := s.user
		datasetItems(func(d *dataset) bool { return d.CreatorUserID == su.ID })
	case x.route.Endpoint == "activity.dashboard":
		title = "Dashboard"
		activityItems("")
	case strings.HasPrefix(x.route.Endpoint, "dashboard."):
		title = "Dashboard - " + title
		for _, g := range c.groups {
			if g.Members[u.Name] != "" && g.IsOrganization == (view == "organizations") && view != "datasets" {
				items = append(items, item{Href: "/" + g.kind() + "/" + g.Name, Text: g.Title})
			}
		}
		if view == "datasets" {
			datasetItems(func(d *dataset) bool { return d.CreatorUserID == u.ID })
		}
	case x.route.Endpoint == "admin.index":
		title = "Sysadmin settings"
		items = []item{{Href: "/ckan-admin/config", Text: "Config"}, {Href: "/ckan-admin/trash", Text: "Trash"}}
	}
	p := x.newPage(title)
	p.Heading, p.Items = title, items
	return answer{template: "list", page: p}
}

func (c *catalogue) followerItems(objectID string) []item {
	var items []item
	for id := range c.followers[objectID] {
		if f := c.userByName(id); f != nil {
			items = append(items, item{Href: "/user/" + f.Name, Text: f.displayName()})
		}
	}
	slices.SortFunc(items, func(a, b item) int { return strings.Compare(a.Text, b.Text) })
	return items
}
