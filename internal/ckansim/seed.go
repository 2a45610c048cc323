package ckansim

import (
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"encoding/json"
	"fmt"
)

//go:embed seed/catalogue.json
var seedJSON []byte

// seedFile is the shape of seed/catalogue.json. Organizations, groups and
// users are named there; loadSeed turns the names into ids.
type seedFile struct {
	Config        map[string]string `json:"config"`
	Users         []*user           `json:"users"`
	Organizations []*group          `json:"organizations"`
	Groups        []*group          `json:"groups"`
	Datasets      []*dataset        `json:"datasets"`
	Datastore     []*table          `json:"datastore"`
	Views         []*resourceView   `json:"views"`
	Licenses      []license         `json:"licenses"`
}

// seededTokens maps the exported tokens to their users and token ids.
var seededTokens = map[string]struct{ user, jti string }{
	SysadminToken: {"admin", "ckansim-admin-token"},
	EditorToken:   {"editor", "ckansim-editor-token"},
}

// loadSeed builds the starting catalogue. The site user (CKAN's internal
// sysadmin, named after the site id) is added here.
func loadSeed(siteID, siteTitle string) (*catalogue, error) {
	var f seedFile
	if err := json.Unmarshal(seedJSON, &f); err != nil {
		return nil, fmt.Errorf("ckansim: seed/catalogue.json: %w", err)
	}
	c := &catalogue{
		config:    f.Config,
		users:     f.Users,
		tokens:    map[string]*apiToken{},
		tables:    map[string]*table{},
		views:     f.Views,
		licenses:  f.Licenses,
		tagIDs:    map[string]string{},
		followers: map[string]map[string]bool{},
	}
	c.config["ckan.site_title"] = siteTitle
	started := now()
	c.users = append(c.users, &user{ID: newID(), Name: siteID, Sysadmin: true, State: "active", Created: started})
	for token, t := range seededTokens {
		u := c.userByName(t.user)
		if u == nil {
			return nil, fmt.Errorf("ckansim: seed: token for unknown user %q", t.user)
		}
		c.tokens[token] = &apiToken{ID: t.jti, Name: "ckansim", UserID: u.ID, Created: u.Created}
	}
	for _, g := range f.Organizations {
		g.IsOrganization = true
	}
	c.groups = append(f.Organizations, f.Groups...)
	for _, d := range f.Datasets {
		if err := c.seedDataset(d); err != nil {
			return nil, fmt.Errorf("ckansim: seed: dataset %s: %w", d.Name, err)
		}
	}
	for _, t := range f.Datastore {
		_, r := c.resource(t.ResourceID)
		if r == nil {
			return nil, fmt.Errorf("ckansim: seed: datastore table for unknown resource %s", t.ResourceID)
		}
		for _, rec := range t.Records {
			t.nextID++
			rec["_id"] = t.nextID
		}
		c.tables[t.ResourceID] = t
		r.DatastoreActive = true
	}
	return c, nil
}

func (c *catalogue) seedDataset(d *dataset) error {
	org := c.group(d.OwnerOrg, true)
	creator := c.userByName(d.CreatorUserID)
	if org == nil || creator == nil {
		return fmt.Errorf("unknown organization %q or creator %q", d.OwnerOrg, d.CreatorUserID)
	}
	d.OwnerOrg, d.CreatorUserID = org.ID, creator.ID
	for i, name := range d.Groups {
		g := c.group(name, false)
		if g == nil {
			return fmt.Errorf("unknown group %q", name)
		}
		d.Groups[i] = g.ID
	}
	for _, t := range d.Tags {
		c.tagID(t)
	}
	for _, r := range d.Resources {
		r.PackageID, r.State, r.Created, r.Modified = d.ID, "active", d.Created, d.Modified
		if r.URLType == "upload" {
			r.setUpload([]byte(r.Content), int64(len(r.Content)), sha256.Sum256([]byte(r.Content)))
		}
	}
	c.datasets = append(c.datasets, d)
	c.activity = append(c.activity, &activity{
		ID: newID(), Timestamp: d.Created, UserID: d.CreatorUserID, ObjectID: d.ID,
		Type: "new package", Data: map[string]any{"package": map[string]any{"name": d.Name, "title": d.Title}},
	})
	return nil
}

// setUpload records an uploaded file on the resource: its size and digest,
// and its bytes when they were kept.
func (r *resource) setUpload(kept []byte, size int64, digest [sha256.Size]byte) {
	r.upload = kept
	r.Size = &size
	r.SHA256 = hex.EncodeToString(digest[:])
}

// lastModified is the resource's last_modified: when its file changed.
func (r *resource) lastModified() any {
	if r.URLType != "upload" || r.Modified.IsZero() {
		return nil
	}
	return ckanTime(r.Modified)
}
