package ckansim

import (
	"errors"
	"net/http"
	"strings"
)

// The form POSTs that change the catalogue. Each runs the actions CKAN's
// view runs, and answers with CKAN's redirect, or the form again with its
// errors.

// datasetFormKeys are the fields of the dataset form.
var datasetFormKeys = []string{"title", "name", "notes", "tag_string", "license_id", "owner_org",
	"private", "url", "version", "author", "author_email", "maintainer", "maintainer_email"}

func (x *exchange) postDatasetNew(ids) answer {
	data := x.formData(datasetFormKeys...)
	data["state"] = "draft" // CKAN's first stage; the resource form activates it
	res, err := x.act("package_create", data)
	if err != nil {
		return x.actionFailed(err, subject{})
	}
	return redirectTo("/dataset/" + res.(map[string]any)["name"].(string) + "/resource/new")
}

func (x *exchange) postDatasetEdit(id ids) answer {
	data := x.formData(datasetFormKeys...)
	data["id"] = id.dataset
	res, err := x.act("package_patch", data)
	if err != nil {
		return x.actionFailed(err, x.subjectAgain(id))
	}
	return redirectTo("/dataset/" + res.(map[string]any)["name"].(string))
}

func (x *exchange) postDatasetDelete(id ids) answer {
	if _, err := x.act("package_delete", map[string]any{"id": id.dataset}); err != nil {
		return x.actionFailed(err, x.subjectAgain(id))
	}
	return redirectTo("/dataset/")
}

func (x *exchange) postResourceNew(id ids) answer {
	data := x.formData("url", "name", "description", "format", "upload")
	data["package_id"] = id.dataset
	if _, err := x.act("resource_create", data); err != nil {
		return x.actionFailed(err, x.subjectAgain(id))
	}
	if id.draft {
		if _, err := x.act("package_patch", map[string]any{"id": id.dataset, "state": "active"}); err != nil {
			return x.actionFailed(err, x.subjectAgain(id))
		}
	}
	return redirectTo("/dataset/" + id.datasetName)
}

func (x *exchange) postResourceEdit(id ids) answer {
	data := x.formData("url", "name", "description", "format", "upload")
	data["id"] = id.resource
	if _, err := x.act("resource_patch", data); err != nil {
		return x.actionFailed(err, x.subjectAgain(id))
	}
	return redirectTo("/dataset/" + id.datasetName + "/resource/" + id.resource)
}

func (x *exchange) postResourceDelete(id ids) answer {
	if _, err := x.act("resource_delete", map[string]any{"id": id.resource}); err != nil {
		return x.actionFailed(err, x.subjectAgain(id))
	}
	return redirectTo("/dataset/" + id.datasetName)
}

// groupAction names the action of a group or organization view.
func (x *exchange) groupAction(verb string) string {
	blueprint, _, _ := strings.Cut(x.route.Endpoint, ".")
	return blueprint + "_" + verb
}

func (x *exchange) postGroupNew(ids) answer {
	res, err := x.act(x.groupAction("create"), x.formData("title", "name", "description", "image_url"))
	if err != nil {
		return x.actionFailed(err, subject{})
	}
	g := res.(map[string]any)
	return redirectTo("/" + g["type"].(string) + "/" + g["name"].(string))
}

func (x *exchange) postGroupEdit(id ids) answer {
	data := x.formData("title", "name", "description", "image_url")
	data["id"] = id.group
	res, err := x.act(x.groupAction("update"), data)
	if err != nil {
		return x.actionFailed(err, x.subjectAgain(id))
	}
	g := res.(map[string]any)
	return redirectTo("/" + g["type"].(string) + "/" + g["name"].(string))
}

func (x *exchange) postGroupDelete(id ids) answer {
	if _, err := x.act(x.groupAction("delete"), map[string]any{"id": id.group}); err != nil {
		return x.actionFailed(err, x.subjectAgain(id))
	}
	blueprint, _, _ := strings.Cut(x.route.Endpoint, ".")
	return redirectTo("/" + blueprint + "/")
}

// postFollow follows or unfollows the subject (the follow_* and
// unfollow_* actions), then shows its page.
func (x *exchange) postFollow(id ids) answer {
	object := id.dataset + id.group + id.user
	_, view, _ := strings.Cut(x.route.Endpoint, ".")
	c := x.sim.cat
	c.mu.Lock()
	if c.followers[object] == nil {
		c.followers[object] = map[string]bool{}
	}
	if view == "follow" {
		c.followers[object][x.who.user.ID] = true
	} else {
		delete(c.followers[object], x.who.user.ID)
	}
	c.mu.Unlock()
	return redirectTo(id.page)
}

func (x *exchange) postConfig(ids) answer {
	data := map[string]any{}
	for k, vs := range x.form {
		if strings.HasPrefix(k, "ckan.") {
			data[k] = vs[0]
		}
	}
	if _, err := x.act("config_option_update", data); err != nil {
		return x.actionFailed(err, subject{})
	}
	return redirectTo("/ckan-admin/config")
}

// postTrash purges every deleted dataset, group and organization.
func (x *exchange) postTrash(ids) answer {
	c := x.sim.cat
	c.mu.Lock()
	kept := c.datasets[:0]
	for _, d := range c.datasets {
		if d.State != "deleted" {
			kept = append(kept, d)
		}
	}
	c.datasets = kept
	groups := c.groups[:0]
	for _, g := range c.groups {
		if g.State != "deleted" {
			groups = append(groups, g)
		}
	}
	c.groups = groups
	c.mu.Unlock()
	return redirectTo("/ckan-admin/trash")
}

func (x *exchange) postUserEdit(id ids) answer {
	c := x.sim.cat
	c.mu.Lock()
	u := c.userByName(id.user)
	if u == nil {
		u = x.who.user
	}
	for key, field := range map[string]*string{"fullname": &u.Fullname, "email": &u.Email, "about": &u.About} {
		if vs, ok := x.form[key]; ok {
			*field = vs[0]
		}
	}
	if p := x.form.Get("password1"); p != "" && p == x.form.Get("password2") {
		u.Password = p
	}
	name := u.Name
	c.mu.Unlock()
	return redirectTo("/user/" + name)
}

// postRegister creates the account (user_create as the web form does,
// which ckan.auth.create_user_via_web allows) and logs it in.
func (x *exchange) postRegister(ids) answer {
	name, password := x.form.Get("name"), x.form.Get("password1")
	var errs []string
	c := x.sim.cat
	c.mu.Lock()
	switch {
	case !validName(name):
		errs = append(errs, "Username: Must be purely lowercase alphanumeric (ascii) characters and these symbols: -_")
	case c.userByName(name) != nil:
		errs = append(errs, "Username: That login name is not available.")
	}
	switch {
	case len(password) < 8:
		errs = append(errs, "Password: Your password must be 8 characters or longer")
	case password != x.form.Get("password2"):
		errs = append(errs, "Password: The passwords you entered do not match")
	}
	var u *user
	if len(errs) == 0 {
		u = &user{ID: newID(), Name: name, Fullname: x.form.Get("fullname"), Email: x.form.Get("email"),
			Password: password, State: "active", Created: now()}
		c.users = append(c.users, u)
	}
	c.mu.Unlock()
	if u == nil {
		x.sim.cat.mu.RLock()
		defer x.sim.cat.mu.RUnlock()
		return x.formPage(subject{}, errs)
	}
	sess := x.sim.sessions.start(u.ID)
	http.SetCookie(x.w, &http.Cookie{Name: sessionCookie, Value: sess.id, Path: "/", HttpOnly: true, SameSite: http.SameSiteLaxMode})
	return redirectTo("/dashboard/datasets")
}

func (x *exchange) postAPIToken(id ids) answer {
	res, err := x.act("api_token_create", map[string]any{"user": id.user, "name": x.form.Get("name")})
	if err != nil {
		return x.actionFailed(err, x.subjectAgain(id))
	}
	x.sim.cat.mu.RLock()
	defer x.sim.cat.mu.RUnlock()
	a := x.formPage(x.subjectLocked(id), nil)
	a.page.Flash = "API Token created: " + res.(map[string]any)["token"].(string)
	return a
}

func (x *exchange) postAPITokenRevoke(id ids) answer {
	if _, err := x.act("api_token_revoke", map[string]any{"jti": x.vars["jti"]}); err != nil {
		return x.actionFailed(err, x.subjectAgain(id))
	}
	return redirectTo(id.page + "/api-tokens")
}

// postAPITokensRevoke is CKAN 2.12's user.api_tokens_revoke: it revokes
// every token id posted in the repeated field "token" as the caller,
// ignores those already gone, answers 403 on the first it may not revoke,
// and renders the list of posted ids.
func (x *exchange) postAPITokensRevoke(id ids) answer {
	tokens := x.form["token"]
	for _, jti := range tokens {
		_, err := x.act("api_token_revoke", map[string]any{"jti": jti})
		var ae *actionError
		switch {
		case err == nil:
		case errors.As(err, &ae) && ae.status == http.StatusNotFound:
		case errors.As(err, &ae) && ae.status == http.StatusForbidden:
			return x.fail(http.StatusForbidden, "Unauthorized to revoke API tokens.")
		default:
			return x.actionFailed(err, x.subjectAgain(id))
		}
	}
	p := x.newPage("API tokens revoked")
	p.Heading = "API tokens revoked"
	for _, jti := range tokens {
		p.Items = append(p.Items, item{Text: jti})
	}
	return answer{template: "list", page: p}
}

// subjectAgain looks the subject up again after an action ran.
func (x *exchange) subjectAgain(id ids) subject {
	x.sim.cat.mu.RLock()
	defer x.sim.cat.mu.RUnlock()
	return x.subjectLocked(id)
}

func (x *exchange) subjectLocked(id ids) subject {
	c := x.sim.cat
	var s subject
	if id.dataset != "" {
		s.dataset = c.dataset(id.dataset)
	}
	if id.resource != "" {
		_, s.resource = c.resource(id.resource)
	}
	if id.group != "" {
		s.group = c.groupByID(id.group)
	}
	if id.user != "" {
		s.user = c.userByName(id.user)
	}
	return s
}
