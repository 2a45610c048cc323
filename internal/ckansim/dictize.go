package ckansim

import (
	"crypto/md5"
	"encoding/hex"
	"net/url"
	"slices"
	"strings"
)

// The functions here turn catalogue objects into the dictionaries CKAN's
// model_dictize returns. site is the site URL ("http://host"), used where
// CKAN builds absolute links.

func (c *catalogue) packageDict(d *dataset, site string) map[string]any {
	lic, known := c.license(d.LicenseID)
	tags := make([]any, 0, len(d.Tags))
	for _, t := range d.Tags {
		tags = append(tags, map[string]any{"id": c.tagIDs[t], "name": t, "display_name": t, "state": "active", "vocabulary_id": nil})
	}
	groups := make([]any, 0, len(d.Groups))
	for _, id := range d.Groups {
		if g := c.groupByID(id); g != nil {
			groups = append(groups, map[string]any{
				"id": g.ID, "name": g.Name, "title": g.Title, "display_name": g.Title,
				"description": g.Description, "image_display_url": g.ImageURL,
			})
		}
	}
	resources := make([]any, 0, len(d.Resources))
	for _, r := range d.activeResources() {
		resources = append(resources, c.resourceDict(d, r, site))
	}
	extras := make([]any, 0, len(d.Extras))
	for _, e := range d.Extras {
		extras = append(extras, map[string]any{"key": e.Key, "value": e.Value})
	}
	m := map[string]any{
		"id":                       d.ID,
		"name":                     d.Name,
		"title":                    d.Title,
		"notes":                    d.Notes,
		"type":                     "dataset",
		"state":                    d.State,
		"private":                  d.Private,
		"owner_org":                nullable(d.OwnerOrg),
		"license_id":               nullable(d.LicenseID),
		"isopen":                   known && lic.isOpen(),
		"url":                      d.URL,
		"version":                  nullable(d.Version),
		"author":                   nullable(d.Author),
		"author_email":             nullable(d.AuthorEmail),
		"maintainer":               nullable(d.Maintainer),
		"maintainer_email":         nullable(d.MaintainerEmail),
		"creator_user_id":          d.CreatorUserID,
		"metadata_created":         ckanTime(d.Created),
		"metadata_modified":        ckanTime(d.Modified),
		"num_resources":            len(resources),
		"num_tags":                 len(tags),
		"tags":                     tags,
		"groups":                   groups,
		"extras":                   extras,
		"resources":                resources,
		"organization":             nil,
		"relationships_as_object":  []any{},
		"relationships_as_subject": []any{},
	}
	if known {
		m["license_title"] = lic.Title
		if lic.URL != "" {
			m["license_url"] = lic.URL
		}
	} else if d.LicenseID != "" {
		m["license_title"] = d.LicenseID
	}
	if org := c.groupByID(d.OwnerOrg); org != nil {
		m["organization"] = map[string]any{
			"id": org.ID, "name": org.Name, "title": org.Title, "type": "organization",
			"description": org.Description, "image_url": org.ImageURL, "created": ckanTime(org.Created),
			"is_organization": true, "approval_status": "approved", "state": org.State,
		}
	}
	return m
}

func (d *dataset) activeResources() []*resource {
	var out []*resource
	for _, r := range d.Resources {
		if r.State != "deleted" {
			out = append(out, r)
		}
	}
	return out
}

func (c *catalogue) resourceDict(d *dataset, r *resource, site string) map[string]any {
	position := 0
	for i, x := range d.activeResources() {
		if x == r {
			position = i
		}
	}
	m := map[string]any{
		"id":                 r.ID,
		"package_id":         d.ID,
		"name":               r.Name,
		"description":        r.Description,
		"format":             r.Format,
		"url":                r.downloadURL(site),
		"url_type":           nullable(r.URLType),
		"mimetype":           nullable(r.Mimetype),
		"mimetype_inner":     nil,
		"size":               nil,
		"hash":               r.Hash,
		"state":              r.State,
		"position":           position,
		"created":            ckanTime(r.Created),
		"last_modified":      r.lastModified(),
		"metadata_modified":  ckanTime(r.Modified),
		"cache_url":          nil,
		"cache_last_updated": nil,
		"resource_type":      nil,
		"datastore_active":   r.DatastoreActive,
	}
	if r.Size != nil {
		m["size"] = *r.Size
	}
	if r.SHA256 != "" {
		m["sha256"] = r.SHA256
	}
	for k, v := range r.Extras {
		if _, core := m[k]; !core {
			m[k] = v
		}
	}
	return m
}

// downloadURL is the resource's url as resource_show shows it: uploads get
// CKAN's download route, with the stored file name.
func (r *resource) downloadURL(site string) string {
	if r.URLType != "upload" {
		return r.URL
	}
	return site + "/dataset/" + r.PackageID + "/resource/" + r.ID + "/download/" + url.PathEscape(r.URL)
}

func (c *catalogue) groupDict(g *group, site string, withMembers bool) map[string]any {
	count := 0
	for _, d := range c.datasets {
		if d.State == "active" && !d.Private && (d.OwnerOrg == g.ID || slices.Contains(d.Groups, g.ID)) {
			count++
		}
	}
	m := map[string]any{
		"id":                g.ID,
		"name":              g.Name,
		"title":             g.Title,
		"display_name":      g.Title,
		"description":       g.Description,
		"image_url":         g.ImageURL,
		"image_display_url": g.ImageURL,
		"created":           ckanTime(g.Created),
		"is_organization":   g.IsOrganization,
		"type":              g.kind(),
		"approval_status":   "approved",
		"state":             g.State,
		"package_count":     count,
		"num_followers":     len(c.followers[g.ID]),
	}
	if withMembers {
		users := []any{}
		for _, u := range c.users {
			if role := g.Members[u.Name]; role != "" {
				d := c.userDict(u, nil, site)
				d["capacity"] = role
				users = append(users, d)
			}
		}
		m["users"], m["extras"], m["groups"], m["tags"] = users, []any{}, []any{}, []any{}
	}
	return m
}

// userDict is user_dictize: the e-mail address only for the user and
// sysadmins.
func (c *catalogue) userDict(u *user, viewer *user, site string) map[string]any {
	created := 0
	for _, d := range c.datasets {
		if d.CreatorUserID == u.ID && d.State == "active" && !d.Private {
			created++
		}
	}
	m := map[string]any{
		"id":                                   u.ID,
		"name":                                 u.Name,
		"fullname":                             nullable(u.Fullname),
		"display_name":                         u.displayName(),
		"about":                                nullable(u.About),
		"created":                              ckanTime(u.Created),
		"last_active":                          nil,
		"state":                                u.State,
		"sysadmin":                             u.Sysadmin,
		"activity_streams_email_notifications": false,
		"image_url":                            nil,
		"image_display_url":                    nil,
		"email_hash":                           md5hex(strings.ToLower(strings.TrimSpace(u.Email))),
		"number_created_packages":              created,
	}
	if viewer != nil && (viewer.ID == u.ID || viewer.Sysadmin) {
		m["email"], m["apikey"] = u.Email, nil
	}
	return m
}

func (c *catalogue) activityDict(a *activity) map[string]any {
	return map[string]any{
		"id": a.ID, "timestamp": ckanTime(a.Timestamp), "user_id": a.UserID,
		"object_id": a.ObjectID, "activity_type": a.Type, "data": a.Data,
	}
}

func md5hex(s string) string {
	sum := md5.Sum([]byte(s))
	return hex.EncodeToString(sum[:])
}

// nullable turns an empty string into JSON null, as CKAN shows unset
// optional columns.
func nullable(s string) any {
	if s == "" {
		return nil
	}
	return s
}
