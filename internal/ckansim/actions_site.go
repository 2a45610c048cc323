package ckansim

import (
	"cmp"
	"encoding/base64"
	"fmt"
	"slices"
	"sort"
	"strings"
)

// Site-wide actions: status, help, licenses, tags, jobs, users, API tokens
// and runtime config options.

func (c *actionCall) statusShow() (any, error) {
	return map[string]any{
		"site_title":       c.cat.config["ckan.site_title"],
		"site_description": c.cat.config["ckan.site_description"],
		"site_url":         cmp.Or(c.siteURL, c.site),
		"error_emails_to":  nil,
		"locale_default":   c.cat.config["ckan.locale_default"],
		"extensions":       slices.Clone(c.sim.plugins),
		"ckan_version":     c.sim.ckanVersion,
	}, nil
}

func (c *actionCall) siteRead() (any, error) { return true, nil }

func (c *actionCall) helpShow() (any, error) {
	name := c.str("name")
	if name == "" {
		return nil, missing("name")
	}
	act, ok := c.sim.surface.Actions[name]
	if !ok {
		return nil, notFound("Action function not found")
	}
	method := "POST"
	if act.SideEffectFree {
		method = "GET or POST"
	}
	return fmt.Sprintf("%s (defined in %s)\n\n    Call with %s on /api/3/action/%s.\n    (ckansim keeps no docstrings; see CKAN's API documentation.)\n", name, act.Module, method, name), nil
}

func (c *actionCall) licenseList() (any, error) {
	out := make([]any, 0, len(c.cat.licenses))
	for _, l := range c.cat.licenses {
		out = append(out, map[string]any{
			"id": l.ID, "title": l.Title, "url": l.URL, "od_conformance": l.ODConformance,
			"osd_conformance": l.OSDConformance, "family": l.Family, "status": l.Status,
			"maintainer": l.Maintainer, "domain_content": l.DomainContent,
			"domain_data": l.DomainData, "domain_software": l.DomainSoftware,
			"is_generic": strings.HasPrefix(l.ID, "other-"), "is_okd_compliant": l.ODConformance == "approved",
			"is_osi_compliant": l.OSDConformance == "approved",
		})
	}
	return out, nil
}

func (c *actionCall) tagList() (any, error) {
	query := strings.ToLower(c.str("query"))
	seen := map[string]bool{}
	for _, d := range c.cat.visibleDatasets(nil, false) {
		for _, t := range d.Tags {
			if strings.Contains(strings.ToLower(t), query) {
				seen[t] = true
			}
		}
	}
	names := make([]string, 0, len(seen))
	for t := range seen {
		names = append(names, t)
	}
	sort.Strings(names)
	out := make([]any, len(names))
	for i, t := range names {
		if c.boolean("all_fields", false) {
			out[i] = map[string]any{"id": c.cat.tagIDs[t], "name": t, "display_name": t, "vocabulary_id": nil}
		} else {
			out[i] = t
		}
	}
	return out, nil
}

// jobList answers job_list. Jobs live in Redis, which ckansim does not
// see: the queue is always empty.
func (c *actionCall) jobList() (any, error) {
	if err := c.authorize(); err != nil {
		return nil, err
	}
	return []any{}, nil
}

func (c *actionCall) getSiteUser() (any, error) {
	if err := c.authorize(); err != nil {
		return nil, err
	}
	u := c.cat.userByName(c.sim.siteID)
	return c.cat.userDict(u, u, c.site), nil
}

// userShow shows the user named by id, or the caller when there is none;
// anonymous without an id is Not Found, as in CKAN.
func (c *actionCall) userShow() (any, error) {
	id := c.str("id")
	if _, given := c.data["id"]; !given {
		id = c.who.name()
	}
	var u *user
	if id != "" {
		u = c.cat.userByName(id)
	}
	if u == nil || (u.State == "deleted" && !c.who.sysadmin()) {
		return nil, notFound("")
	}
	return c.cat.userDict(u, c.who.user, c.site), nil
}

func (c *actionCall) userList() (any, error) {
	if c.str("email") != "" && !c.who.sysadmin() {
		return nil, denied("")
	}
	q := strings.ToLower(c.str("q"))
	var out []any
	users := slices.Clone(c.cat.users)
	sort.Slice(users, func(i, j int) bool { return users[i].displayName() < users[j].displayName() })
	for _, u := range users {
		if u.Name == c.sim.siteID || u.State != "active" {
			continue
		}
		if q != "" && !strings.Contains(strings.ToLower(u.Name+" "+u.Fullname), q) {
			continue
		}
		if c.boolean("all_fields", true) {
			out = append(out, c.cat.userDict(u, c.who.user, c.site))
		} else {
			out = append(out, u.Name)
		}
	}
	if out == nil {
		out = []any{}
	}
	return out, nil
}

// apiTokenCreate issues a new token. It is shaped like CKAN's JWT but,
// like the seeded ones, only compared.
func (c *actionCall) apiTokenCreate() (any, error) {
	var absent []string
	for _, k := range []string{"user", "name"} {
		if c.str(k) == "" {
			absent = append(absent, k)
		}
	}
	if len(absent) > 0 {
		return nil, missing(absent...)
	}
	u := c.cat.userByName(c.str("user"))
	if u == nil {
		return nil, notFound("User not found")
	}
	if !c.who.sysadmin() && c.who.user != u {
		return nil, denied("")
	}
	t := &apiToken{ID: randomHex(16), Name: c.str("name"), UserID: u.ID, Created: now()}
	b64 := base64.RawURLEncoding.EncodeToString
	token := b64([]byte(`{"typ":"JWT","alg":"HS256"}`)) + "." +
		b64(fmt.Appendf(nil, `{"jti":%q,"iat":%d}`, t.ID, t.Created.Unix())) + "." + b64([]byte(randomHex(16)))
	c.cat.tokens[token] = t
	return map[string]any{"token": token}, nil
}

func (c *actionCall) apiTokenList() (any, error) {
	id := c.str("user_id")
	if id == "" {
		id = c.str("user")
	}
	if id == "" {
		return nil, missing("user_id")
	}
	u := c.cat.userByName(id)
	if u == nil {
		return nil, notFound("User not found")
	}
	if !c.who.sysadmin() && c.who.user != u {
		return nil, denied("")
	}
	out := []any{}
	for _, t := range c.cat.tokens {
		if t.UserID == u.ID {
			out = append(out, map[string]any{"id": t.ID, "name": t.Name, "user_id": u.ID, "created_at": ckanTime(t.Created), "last_access": nil})
		}
	}
	sort.Slice(out, func(i, j int) bool {
		return out[i].(map[string]any)["created_at"].(string) < out[j].(map[string]any)["created_at"].(string)
	})
	return out, nil
}

func (c *actionCall) apiTokenRevoke() (any, error) {
	token, jti := c.str("token"), c.str("jti")
	if token == "" && jti == "" {
		return nil, invalid(map[string]any{"token": []any{"Either token or jti parameter must be provided"}})
	}
	if c.who.user == nil {
		return nil, denied("")
	}
	for text, t := range c.cat.tokens {
		if text == token || t.ID == jti {
			if !c.who.sysadmin() && t.UserID != c.who.user.ID {
				return nil, denied("")
			}
			delete(c.cat.tokens, text)
		}
	}
	return nil, nil
}

// editableConfig lists the runtime-editable options (config_option_list).
func (c *actionCall) editableConfig() []string {
	var keys []string
	for k := range c.cat.config {
		if k != "ckan.locale_default" {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	return keys
}

func (c *actionCall) configOptionList() (any, error) {
	if err := c.authorize(); err != nil {
		return nil, err
	}
	return c.editableConfig(), nil
}

func (c *actionCall) configOptionShow() (any, error) {
	if err := c.authorize(); err != nil {
		return nil, err
	}
	key := c.str("key")
	if key == "" {
		return nil, missing("key")
	}
	if !slices.Contains(c.editableConfig(), key) {
		return nil, invalid(map[string]any{"key": []any{fmt.Sprintf("Configuration option '%s' can not be shown", key)}})
	}
	return c.cat.config[key], nil
}

func (c *actionCall) configOptionUpdate() (any, error) {
	if err := c.authorize(); err != nil {
		return nil, err
	}
	editable := c.editableConfig()
	out := map[string]any{}
	for k := range c.data {
		if !slices.Contains(editable, k) {
			return nil, invalid(map[string]any{k: []any{fmt.Sprintf("Configuration option '%s' can not be updated", k)}})
		}
	}
	for k := range c.data {
		c.cat.config[k] = c.str(k)
		out[k] = c.cat.config[k]
	}
	return out, nil
}
