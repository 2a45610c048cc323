package ckansim

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strings"
)

// This file dispatches the web UI's endpoints: it finds the objects a URL
// names, checks the caller may see or change them, and answers GETs with
// pages and form POSTs by running CKAN's actions.

// readOnlyPOSTs are the UI endpoints whose POST changes nothing (login and
// logout are bookkeeping).
var readOnlyPOSTs = map[string]bool{
	"user.login": true, "user.logout": true, "util.internal_redirect": true,
	"datatablesview.ajax": true, "datatablesview.filtered_download": true,
	"group.followers": true, "organization.followers": true,
	"group.members": true, "organization.members": true,
}

// writingGETs are the UI endpoints that change state on GET: CKAN 2.10's
// follow and unfollow of groups and organizations.
var writingGETs = map[string]bool{
	"group.follow": true, "group.unfollow": true,
	"organization.follow": true, "organization.unfollow": true,
}

// writesOn reports whether handling endpoint with method changes CKAN's
// state (the route is known to accept the method).
func writesOn(endpoint, method string) bool {
	switch method {
	case http.MethodGet, http.MethodHead:
		return writingGETs[endpoint]
	case http.MethodOptions:
		return false
	}
	return !readOnlyPOSTs[endpoint]
}

// answer is what a view returns: a page, a redirect or a raw body. Views
// build answers with the catalogue locked; send writes them after.
type answer struct {
	status   int
	template string
	page     *page
	location string
	ctype    string
	body     io.Reader
	header   map[string]string
}

func (x *exchange) send(a answer) {
	for k, v := range a.header {
		x.w.Header().Set(k, v)
	}
	switch {
	case a.location != "":
		x.redirect(cmp.Or(a.status, http.StatusFound), a.location)
	case a.page != nil:
		x.render(cmp.Or(a.status, http.StatusOK), a.template, a.page)
	default:
		x.w.Header().Set("Content-Type", a.ctype)
		x.w.WriteHeader(cmp.Or(a.status, http.StatusOK))
		if a.body != nil {
			io.Copy(x.w, a.body)
		}
	}
}

// fail is CKAN's error_document_template: "Error 404" in the title, "404
// Not Found" and the description (Werkzeug's default, or the view's) in the
// page.
func (x *exchange) fail(status int, message string) answer {
	if message == "" {
		message = errorDescriptions[status]
	}
	p := x.newPage(fmt.Sprintf("Error %d", status))
	p.Status, p.Heading, p.Lead = status, http.StatusText(status), message
	p.LoginLink = x.who.user == nil && status == http.StatusForbidden
	return answer{status: status, template: "error", page: p}
}

func redirectTo(location string) answer { return answer{location: location} }

// submits reports whether a request with method submits something (the
// routes accept no other such method than POST).
func submits(method string) bool {
	return method != http.MethodGet && method != http.MethodHead && method != http.MethodOptions
}

func (x *exchange) serveUI() {
	if submits(x.r.Method) {
		a, ok := x.readForm()
		if !x.ready() {
			return
		}
		if !ok {
			x.send(a)
			return
		}
	} else if !x.ready() {
		return
	}
	if view, fixed := fixedViews[x.route.Endpoint]; fixed {
		x.send(view(x))
		return
	}
	if submits(x.r.Method) || writingGETs[x.route.Endpoint] {
		x.send(x.submit())
		return
	}
	x.sim.cat.mu.RLock()
	a := x.show()
	x.sim.cat.mu.RUnlock()
	x.send(a)
}

// readForm reads a form POST (URL-encoded, or multipart with files
// streamed) and checks its CSRF token. CKAN checks the token only for
// users logged in by the session cookie: requests with an API token, and
// anonymous ones, are exempt (flask-login's request loader marks them).
func (x *exchange) readForm() (answer, bool) {
	mediaType, _, _ := mime.ParseMediaType(x.r.Header.Get("Content-Type"))
	var err error
	switch mediaType {
	case "multipart/form-data":
		x.form, x.files, err = readMultipart(x.r)
	default:
		var body []byte
		if body, err = readBody(x.r); err == nil && mediaType == "application/x-www-form-urlencoded" {
			x.form, _ = url.ParseQuery(string(body))
		}
	}
	if x.form == nil {
		x.form = url.Values{}
	}
	if err != nil {
		return x.fail(http.StatusBadRequest, ""), false
	}
	if x.who.session == nil {
		return answer{}, true
	}
	token := x.form.Get(csrfField)
	for _, h := range []string{"X-CSRFToken", "X-CSRF-Token"} {
		if token == "" {
			token = x.r.Header.Get(h)
		}
	}
	switch {
	case token == "":
		return x.fail(http.StatusBadRequest, "The CSRF token is missing."), false
	case token != x.who.session.csrf:
		return x.fail(http.StatusBadRequest, "The CSRF tokens do not match."), false
	}
	return answer{}, true
}

// subject is what a UI URL names.
type subject struct {
	dataset  *dataset
	resource *resource
	group    *group
	user     *user
	view     *resourceView
	activity *activity
	tag      string
}

// idKind says what the <id> of an endpoint's rule names.
func idKind(endpoint string) string {
	blueprint, view, _ := strings.Cut(endpoint, ".")
	switch {
	case strings.HasSuffix(view, "_changes") && blueprint == "activity":
		return "activity"
	case blueprint == "dataset", blueprint == "dataset_resource", blueprint == "resource",
		blueprint == "datastore", strings.HasPrefix(view, "package_"), view == "resource_history":
		return "dataset"
	case blueprint == "group", strings.HasPrefix(view, "group_"), endpoint == "feeds.group":
		return "group"
	case blueprint == "organization", strings.HasPrefix(view, "organization_"), endpoint == "feeds.organization":
		return "organization"
	case blueprint == "user", view == "user_activity":
		return "user"
	case endpoint == "feeds.tag":
		return "tag"
	}
	return ""
}

// resolve finds the objects the URL's variables name, as the views'
// *_show calls do; a missing or invisible one is the view's 404. The
// caller holds the catalogue's lock.
func (x *exchange) resolve() (subject, *answer) {
	var s subject
	c, u := x.sim.cat, x.who.user
	notFound := func(what string) (subject, *answer) {
		a := x.fail(http.StatusNotFound, what+" not found")
		return s, &a
	}
	if id, ok := x.vars["id"]; ok {
		switch idKind(x.route.Endpoint) {
		case "dataset":
			if s.dataset = c.dataset(id); s.dataset == nil || !c.canRead(u, s.dataset) {
				return notFound("Dataset")
			}
		case "group", "organization":
			org := idKind(x.route.Endpoint) == "organization"
			if s.group = c.group(id, org); s.group == nil || s.group.State != "active" {
				return notFound(map[bool]string{true: "Organization", false: "Group"}[org])
			}
		case "user":
			if s.user = c.userByName(id); s.user == nil || (s.user.State != "active" && (u == nil || !u.Sysadmin)) {
				return notFound("User")
			}
		case "activity":
			if s.activity = c.activityByID(id); s.activity == nil {
				return notFound("Activity")
			}
		case "tag":
			if _, ok := c.tagIDs[id]; !ok {
				return notFound("Tag")
			}
			s.tag = id
		}
	}
	if rid, ok := x.vars["resource_id"]; ok {
		d, r := c.resource(rid)
		if r == nil || (s.dataset != nil && d != s.dataset) || !c.canRead(u, d) {
			return notFound("Resource")
		}
		s.dataset, s.resource = d, r
	}
	for _, key := range []string{"view_id", "resource_view_id"} {
		if vid, ok := x.vars[key]; ok {
			s.view = c.view(vid)
			if s.view == nil || (s.resource != nil && s.view.ResourceID != s.resource.ID) {
				return notFound("View")
			}
			if s.resource == nil {
				d, r := c.resource(s.view.ResourceID)
				if r == nil || !c.canRead(u, d) {
					return notFound("Resource")
				}
				s.dataset, s.resource = d, r
			}
		}
	}
	if aid, ok := x.vars["activity_id"]; ok {
		if s.activity = c.activityByID(aid); s.activity == nil {
			return notFound("Activity")
		}
	}
	return s, nil
}

// guard checks the caller may use the endpoint on s, as the view's
// check_access calls do: nil when allowed, else the 403 page (or, for the
// dashboard, the login redirect). The caller holds the catalogue's lock.
func (x *exchange) guard(s subject) *answer {
	c, u := x.sim.cat, x.who.user
	ep := x.route.Endpoint
	blueprint, view, _ := strings.Cut(ep, ".")
	deny := func(msg string) *answer {
		a := x.fail(http.StatusForbidden, msg)
		return &a
	}
	switch {
	case blueprint == "admin" || ep == "user.sysadmin" || ep == "activity.admin_activities":
		if !x.who.sysadmin() {
			return deny("Need to be system administrator to administer")
		}
	case blueprint == "dashboard" || ep == "activity.dashboard":
		if u == nil {
			a := redirectTo("/user/login")
			return &a
		}
	case ep == "dataset.new":
		if !c.canCreateSomewhere(u) {
			return deny("Unauthorized to create a package")
		}
	case strings.HasSuffix(view, "follow"):
		if u == nil {
			return deny("You must be logged in to follow")
		}
	case s.dataset != nil && editViews[view]:
		if !c.canEdit(u, s.dataset.OwnerOrg) {
			return deny(fmt.Sprintf("User %s not authorized to edit %s", x.who.name(), s.dataset.ID))
		}
	case (blueprint == "group" || blueprint == "organization") && view == "new":
		if u == nil {
			return deny("Unauthorized to create a group")
		}
	case s.group != nil && editViews[view]:
		if !canAdminGroup(u, s.group) {
			return deny(fmt.Sprintf("User %s not authorized to edit %s", x.who.name(), s.group.Name))
		}
	case blueprint == "user" && editViews[view]:
		target := s.user
		if target == nil {
			target = u
		}
		if u == nil || (!u.Sysadmin && target != u) {
			return deny("Unauthorized to edit a user.")
		}
	}
	return nil
}

// editViews are the view names whose pages edit their subject.
var editViews = map[string]bool{
	"edit": true, "delete": true, "new": true, "groups": true, "edit_view": true,
	"dictionary": true, "admins": true, "bulk_process": true, "manage_members": true,
	"member_new": true, "member_delete": true, "api_tokens": true, "api_token_revoke": true,
}

// show answers a GET: the subject's page, or its form for GET,POST rules.
// The caller holds the catalogue's read lock.
func (x *exchange) show() answer {
	s, miss := x.resolve()
	if miss != nil {
		return *miss
	}
	if a := x.guard(s); a != nil {
		return *a
	}
	if view, ok := getViews[x.route.Endpoint]; ok {
		return view(x, s)
	}
	if x.route.Allows(http.MethodPost) && !readOnlyPOSTs[x.route.Endpoint] {
		return x.formPage(s, nil)
	}
	return x.listPage(s)
}

// submit answers a form POST (and CKAN 2.10's writing GETs) by running the
// actions CKAN's view would run.
func (x *exchange) submit() answer {
	x.sim.cat.mu.RLock()
	s, miss := x.resolve()
	var refused *answer
	if miss == nil {
		refused = x.guard(s)
	}
	ids := subjectIDs(s)
	x.sim.cat.mu.RUnlock()
	if miss != nil {
		return *miss
	}
	x.entry.Write = writesOn(x.route.Endpoint, x.r.Method)
	if refused != nil {
		return *refused
	}
	if handle, ok := postViews[x.route.Endpoint]; ok {
		return handle(x, ids)
	}
	// Other writes change nothing ckansim models: back to the page, or to
	// the subject's own page for POST-only routes.
	if x.route.Allows(http.MethodGet) {
		return redirectTo(x.r.URL.Path)
	}
	return redirectTo(ids.page)
}

// subjectIDs keeps what submit needs of a subject once the lock is gone.
type ids struct {
	dataset, datasetName, resource, group, user, page string
	draft                                             bool
}

func subjectIDs(s subject) ids {
	var out ids
	switch {
	case s.dataset != nil:
		out.dataset, out.datasetName, out.draft = s.dataset.ID, s.dataset.Name, s.dataset.State == "draft"
		out.page = "/dataset/" + s.dataset.Name
	case s.group != nil:
		out.group = s.group.ID
		out.page = "/" + s.group.kind() + "/" + s.group.Name
	case s.user != nil:
		out.user, out.page = s.user.ID, "/user/"+s.user.Name
	default:
		out.page = "/"
	}
	if s.resource != nil {
		out.resource = s.resource.ID
	}
	return out
}

// act runs an action for a view; the view turns its errors into pages.
func (x *exchange) act(name string, data map[string]any) (any, error) {
	if _, ok := x.sim.surface.Actions[name]; !ok {
		return nil, fmt.Errorf("ckansim: action %s is not in CKAN %s", name, x.sim.surface.Version)
	}
	return x.sim.run(&actionCall{who: x.who, name: name, data: data, site: x.siteURL()})
}

// formData is the POSTed form as request data, with the uploads.
func (x *exchange) formData(keys ...string) map[string]any {
	data := map[string]any{}
	for k, vs := range x.form {
		if k == csrfField || k == "save" || (len(keys) > 0 && !slices.Contains(keys, k)) {
			continue
		}
		data[k] = vs[0]
	}
	for k, f := range x.files {
		data[k] = f
	}
	return data
}

// actionFailed turns an action's error into what a view shows: its form
// again with the field errors for a validation error, else an error page.
func (x *exchange) actionFailed(err error, s subject) answer {
	var ae *actionError
	if !errors.As(err, &ae) {
		x.sim.log.Error("ckansim: view action failed", "endpoint", x.route.Endpoint, "err", err)
		return x.fail(http.StatusInternalServerError, "")
	}
	if ae.status != http.StatusConflict {
		return x.fail(ae.status, fmt.Sprint(ae.body["message"]))
	}
	var msgs []string
	for k, v := range ae.body {
		if k != "__type" {
			msgs = append(msgs, fmt.Sprintf("%s: %v", strings.ReplaceAll(k, "_", " "), strings.Trim(fmt.Sprint(v), "[]")))
		}
	}
	slices.Sort(msgs)
	x.sim.cat.mu.RLock()
	defer x.sim.cat.mu.RUnlock()
	return x.formPage(s, msgs)
}
