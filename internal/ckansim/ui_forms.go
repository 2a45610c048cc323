package ckansim

import (
	"fmt"
	"strings"
)

// The forms of CKAN's edit, new, delete and admin pages. Every form posts
// back to its own URL with the CSRF token, as CKAN's do.

// formPage renders the endpoint's form; errs are a failed submission's
// field errors. The caller holds the catalogue's lock.
func (x *exchange) formPage(s subject, errs []string) answer {
	heading, lead, f := x.formFor(s)
	f.Errors = errs
	if f.ID == "" {
		f.ID = strings.ReplaceAll(x.route.Endpoint, ".", "-")
	}
	f.Action = x.rooted // render puts the root path back
	p := x.newPage(heading)
	p.Heading, p.Lead, p.Form = heading, lead, f
	if x.route.Endpoint == "user.api_tokens" && s.user != nil {
		for _, t := range x.sim.cat.tokens {
			if t.UserID == s.user.ID {
				p.Items = append(p.Items, item{Text: t.Name, Note: "created " + ckanTime(t.Created)})
			}
		}
	}
	return answer{template: "form", page: p}
}

// field makes an input whose value is what was posted, else current.
func (x *exchange) field(name, label, typ, current string) formField {
	if vs, posted := x.form[name]; posted && typ != "password" && typ != "file" {
		current = vs[0]
	}
	return formField{Name: name, Label: label, Type: typ, Value: current}
}

// formFor returns the heading, lead text and form of the endpoint's page.
func (x *exchange) formFor(s subject) (heading, lead string, f *form) {
	ep := x.route.Endpoint
	blueprint, view, _ := strings.Cut(ep, ".")
	f = &form{Submit: "Save"}
	switch {
	case ep == "dataset.new" || ep == "dataset.edit":
		d := s.dataset
		if d == nil {
			d = &dataset{}
		}
		heading, f.ID, f.Submit = "Create Dataset", "dataset-edit", "Next: Add Data"
		if ep == "dataset.edit" {
			heading, f.Submit, f.Cancel = "Edit Dataset", "Update Dataset", "/dataset/"+d.Name
		}
		org := ""
		if g := x.sim.cat.groupByID(d.OwnerOrg); g != nil {
			org = g.Name
		}
		f.Fields = []formField{
			x.field("title", "Title", "text", d.Title),
			x.field("name", "URL", "text", d.Name),
			x.field("notes", "Description", "textarea", d.Notes),
			x.field("tag_string", "Tags", "text", strings.Join(d.Tags, ",")),
			x.field("license_id", "License", "text", d.LicenseID),
			x.field("owner_org", "Organization", "text", org),
			x.field("private", "Private", "text", map[bool]string{true: "True", false: "False"}[d.Private]),
			x.field("url", "Source", "text", d.URL),
			x.field("version", "Version", "text", d.Version),
			x.field("author", "Author", "text", d.Author),
			x.field("author_email", "Author Email", "text", d.AuthorEmail),
			x.field("maintainer", "Maintainer", "text", d.Maintainer),
			x.field("maintainer_email", "Maintainer Email", "text", d.MaintainerEmail),
		}
	case (blueprint == "resource" || blueprint == "dataset_resource") && (view == "new" || view == "edit"):
		r := s.resource
		if r == nil {
			r = &resource{}
		}
		heading, f.ID, f.Multipart, f.Submit = "Add data to the dataset", "resource-edit", true, "Add"
		if view == "edit" {
			heading, f.Submit = "Edit resource", "Update Resource"
		}
		f.Cancel = "/dataset/" + s.dataset.Name
		f.Fields = []formField{
			{Name: "upload", Label: "Data: Upload", Type: "file"},
			x.field("url", "Data: Link", "text", r.URL),
			x.field("name", "Name", "text", r.Name),
			x.field("description", "Description", "textarea", r.Description),
			x.field("format", "Format", "text", r.Format),
		}
	case view == "edit_view":
		v := s.view
		if v == nil {
			v = &resourceView{ViewType: x.r.URL.Query().Get("view_type")}
		}
		heading, f.Submit = "Edit view", "Update"
		f.Fields = []formField{
			x.field("title", "Title", "text", v.Title),
			x.field("description", "Description", "textarea", ""),
			{Name: "view_type", Type: "hidden", Value: v.ViewType},
		}
	case view == "delete" || view == "member_delete" || ep == "admin.reset_config" || ep == "admin.trash":
		heading, f.ID, f.Submit = "Confirm Delete", "confirm-delete", "Confirm Delete"
		what := x.r.URL.Path
		switch {
		case s.resource != nil:
			what = "resource - " + s.resource.Name
		case s.dataset != nil:
			what = "dataset - " + s.dataset.Title
		case s.group != nil:
			what = s.group.kind() + " - " + s.group.Title
		case s.user != nil:
			what = "user - " + s.user.Name
		}
		lead = fmt.Sprintf("Are you sure you want to delete %s?", what)
		switch ep {
		case "admin.reset_config":
			heading, f.Submit, lead = "Reset", "Confirm Reset", "Are you sure you want to reset the config?"
		case "admin.trash":
			heading, f.Submit, lead = "Trash", "Purge all", "Purge all deleted datasets, groups and organizations?"
		}
	case (blueprint == "group" || blueprint == "organization") && (view == "new" || view == "edit"):
		g := s.group
		if g == nil {
			g = &group{}
		}
		kind := map[bool]string{true: "Organization", false: "Group"}[blueprint == "organization"]
		heading, f.ID, f.Submit = "Create an "+kind, "group-edit", "Create "+kind
		if view == "edit" {
			heading, f.Submit = "Edit "+kind, "Update "+kind
		}
		f.Fields = []formField{
			x.field("title", "Name", "text", g.Title),
			x.field("name", "URL", "text", g.Name),
			x.field("description", "Description", "textarea", g.Description),
			x.field("image_url", "Image URL", "text", g.ImageURL),
		}
	case ep == "admin.config":
		heading, f.ID, f.Submit = "Sysadmin settings", "admin-config-form", "Update Config"
		cfg := x.sim.cat.config
		f.Fields = []formField{
			x.field("ckan.site_title", "Site Title", "text", cfg["ckan.site_title"]),
			x.field("ckan.theme", "Style", "text", cfg["ckan.theme"]),
			x.field("ckan.site_description", "Site Tag Line", "text", cfg["ckan.site_description"]),
			x.field("ckan.site_logo", "Site Tag Logo", "text", cfg["ckan.site_logo"]),
			x.field("ckan.site_about", "About", "textarea", cfg["ckan.site_about"]),
			x.field("ckan.site_intro_text", "Intro Text", "textarea", cfg["ckan.site_intro_text"]),
			x.field("ckan.site_custom_css", "Custom CSS", "textarea", cfg["ckan.site_custom_css"]),
			x.field("ckan.homepage_style", "Homepage", "text", cfg["ckan.homepage_style"]),
		}
	case ep == "user.edit":
		u := s.user
		if u == nil {
			u = x.who.user
		}
		heading, f.ID, f.Submit = "Change details", "user-edit-form", "Update Profile"
		f.Fields = []formField{
			x.field("name", "Username", "text", u.Name),
			x.field("fullname", "Full name", "text", u.Fullname),
			x.field("email", "Email", "text", u.Email),
			x.field("about", "About", "textarea", u.About),
			x.field("old_password", "Old Password", "password", ""),
			x.field("password1", "Password", "password", ""),
			x.field("password2", "Confirm Password", "password", ""),
		}
	case ep == "user.register":
		heading, f.ID, f.Submit = "Register for an Account", "user-register-form", "Create Account"
		f.Fields = []formField{
			x.field("name", "Username", "text", ""),
			x.field("fullname", "Full Name", "text", ""),
			x.field("email", "Email", "text", ""),
			x.field("password1", "Password", "password", ""),
			x.field("password2", "Confirm", "password", ""),
		}
	case ep == "user.request_reset":
		heading, f.ID, f.Submit = "Reset your password", "user-reset-form", "Request Reset"
		f.Fields = []formField{x.field("user", "Email or username", "text", "")}
	case ep == "user.perform_reset":
		heading, f.ID, f.Submit = "Reset Your Password", "user-reset-form", "Update Password"
		f.Fields = []formField{x.field("password1", "Password", "password", ""), x.field("password2", "Confirm", "password", "")}
	case ep == "user.api_tokens":
		heading, f.ID, f.Submit = "API Tokens", "api-token-form", "Create API Token"
		f.Fields = []formField{x.field("name", "Name", "text", "")}
	case view == "member_new":
		heading, f.Submit = "Add Member", "Add Member"
		f.Fields = []formField{x.field("username", "Existing User", "text", ""), x.field("role", "Role", "text", "member")}
	case ep == "datastore.dictionary":
		heading, f.Submit = "Data Dictionary", "Save"
		if t := x.sim.cat.tables[s.resource.ID]; t != nil {
			for i, fl := range t.Fields {
				label, _ := fl.Info["label"].(string)
				notes, _ := fl.Info["notes"].(string)
				f.Fields = append(f.Fields,
					x.field(fmt.Sprintf("info__%d__label", i), fl.ID+": Label", "text", label),
					x.field(fmt.Sprintf("info__%d__notes", i), fl.ID+": Description", "textarea", notes))
			}
		}
	default: // admins, manage_members, bulk_process, dataset.groups
		heading = titleCase(view)
		f.Fields = []formField{x.field("name", "Name", "text", ""), x.field("notes", "Notes", "textarea", "")}
	}
	return heading, lead, f
}

// loginPage is user/login.html with user/snippets/login_form.html.
func (x *exchange) loginPage(errs []string) answer {
	p := x.newPage("Login")
	p.Heading = "Login"
	p.Form = &form{ID: "login-form", Action: x.localePrefix() + "/user/login", Submit: "Login", Errors: errs, Fields: []formField{
		{Name: "login", Label: "Username or Email", Type: "text"},
		{Name: "password", Label: "Password", Type: "password"},
		{Name: "remember", Label: "Remember me", Type: "checkbox", Value: "63072000", Checked: true},
	}}
	return answer{template: "form", page: p}
}

// localePrefix is the request's locale segment ("/fr"), or "".
func (x *exchange) localePrefix() string {
	if x.path == x.rooted {
		return ""
	}
	segment, _, _ := strings.Cut(strings.TrimPrefix(x.rooted, "/"), "/")
	return "/" + segment
}

// titleCase turns a view name such as "manage_members" into "Manage Members".
func titleCase(name string) string {
	words := strings.Fields(strings.ReplaceAll(name, "_", " "))
	for i, w := range words {
		words[i] = strings.ToUpper(w[:1]) + w[1:]
	}
	return strings.Join(words, " ")
}
