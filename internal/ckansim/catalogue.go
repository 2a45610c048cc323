package ckansim

import (
	"crypto/rand"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// The catalogue is CKAN's database, in memory. Every field is guarded by
// mu: actions take the read lock when side_effect_free, the write lock
// otherwise, and work on the catalogue with the lock held.
type catalogue struct {
	mu        sync.RWMutex
	config    map[string]string // runtime-editable config options (config_option_update)
	users     []*user
	tokens    map[string]*apiToken // token text -> token
	groups    []*group             // groups and organizations
	datasets  []*dataset
	tables    map[string]*table // datastore tables by resource id
	views     []*resourceView
	activity  []*activity // newest last
	licenses  []license
	tagIDs    map[string]string
	followers map[string]map[string]bool // followed object id -> user ids
}

type user struct {
	ID       string    `json:"id"`
	Name     string    `json:"name"`
	Fullname string    `json:"fullname"`
	Email    string    `json:"email"`
	About    string    `json:"about"`
	Password string    `json:"password"`
	Sysadmin bool      `json:"sysadmin"`
	State    string    `json:"state"`
	Created  time.Time `json:"created"`
}

func (u *user) displayName() string {
	if u.Fullname != "" {
		return u.Fullname
	}
	return u.Name
}

type apiToken struct {
	ID       string // the jti
	Name     string
	UserID   string
	Created  time.Time
	LastUsed time.Time
}

type group struct {
	ID             string            `json:"id"`
	Name           string            `json:"name"`
	Title          string            `json:"title"`
	Description    string            `json:"description"`
	ImageURL       string            `json:"image_url"`
	IsOrganization bool              `json:"-"`
	State          string            `json:"state"`
	Created        time.Time         `json:"created"`
	Members        map[string]string `json:"members"` // user name -> capacity (admin, editor, member)
}

func (g *group) kind() string {
	if g.IsOrganization {
		return "organization"
	}
	return "group"
}

type extra struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

type dataset struct {
	ID              string      `json:"id"`
	Name            string      `json:"name"`
	Title           string      `json:"title"`
	Notes           string      `json:"notes"`
	OwnerOrg        string      `json:"owner_org"` // organization id (the seed names it)
	Private         bool        `json:"private"`
	LicenseID       string      `json:"license_id"`
	URL             string      `json:"url"`
	Version         string      `json:"version"`
	Author          string      `json:"author"`
	AuthorEmail     string      `json:"author_email"`
	Maintainer      string      `json:"maintainer"`
	MaintainerEmail string      `json:"maintainer_email"`
	State           string      `json:"state"`
	Tags            []string    `json:"tags"`
	Groups          []string    `json:"groups"` // group ids (the seed names them)
	Extras          []extra     `json:"extras"`
	Resources       []*resource `json:"resources"`
	CreatorUserID   string      `json:"creator"` // the seed names the user
	Created         time.Time   `json:"created"`
	Modified        time.Time   `json:"modified"`
}

type resource struct {
	ID              string         `json:"id"`
	PackageID       string         `json:"-"`
	Name            string         `json:"name"`
	Description     string         `json:"description"`
	Format          string         `json:"format"`
	URL             string         `json:"url"`
	URLType         string         `json:"url_type"`
	Mimetype        string         `json:"mimetype"`
	Size            *int64         `json:"-"`
	Hash            string         `json:"-"`
	SHA256          string         `json:"-"` // ckansim's own record of an upload's digest
	State           string         `json:"-"`
	DatastoreActive bool           `json:"-"`
	Created         time.Time      `json:"-"`
	Modified        time.Time      `json:"-"`
	Extras          map[string]any `json:"-"` // other keys, kept as CKAN keeps them
	Content         string         `json:"content"`
	// upload holds an uploaded file's bytes when small enough to keep
	// (see maxKeptUpload); larger uploads keep only size and digest.
	upload []byte
}

type resourceView struct {
	ID         string `json:"id"`
	ResourceID string `json:"resource_id"`
	Title      string `json:"title"`
	ViewType   string `json:"view_type"`
}

type activity struct {
	ID        string
	Timestamp time.Time
	UserID    string
	ObjectID  string
	Type      string // "new package", "changed package", "deleted package", ...
	Data      map[string]any
}

type license struct {
	ID             string `json:"id"`
	Title          string `json:"title"`
	URL            string `json:"url"`
	ODConformance  string `json:"od_conformance"`
	OSDConformance string `json:"osd_conformance"`
	Family         string `json:"family"`
	Status         string `json:"status"`
	Maintainer     string `json:"maintainer"`
	DomainContent  bool   `json:"domain_content"`
	DomainData     bool   `json:"domain_data"`
	DomainSoftware bool   `json:"domain_software"`
}

// isOpen reports whether CKAN would call the license open (isopen).
func (l license) isOpen() bool {
	return l.ODConformance == "approved" || l.OSDConformance == "approved"
}

type field struct {
	ID   string         `json:"id"`
	Type string         `json:"type"`
	Info map[string]any `json:"info,omitempty"`
}

type table struct {
	ResourceID string           `json:"resource_id"`
	Fields     []field          `json:"fields"`
	PrimaryKey []string         `json:"primary_key"`
	Records    []map[string]any `json:"records"`
	nextID     int

	// countStale: CKAN 2.12's cached row count (its _table_stats row) is
	// gone. datastore_create, _upsert and _delete clear it; the refill job
	// they schedule needs an RQ worker, which ckansim does not run, so the
	// next plain datastore_search inserts the row again: a write, even on
	// GET. Seeded tables start counted (their job ran long ago).
	countStale atomic.Bool
}

// countRows is 2.12's SELECT cached_table_row_count(:resource), run by a
// datastore_search that wants a total and has no filters, q or distinct:
// it reports whether it (re)inserted the cached count. Safe under the
// catalogue's read lock.
func (t *table) countRows() (wrote bool) { return t.countStale.CompareAndSwap(true, false) }

// newID returns a random UUID, as CKAN's make_uuid does.
func newID() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err) // crypto/rand never fails on supported platforms
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// now is CKAN's clock: naive UTC timestamps.
func now() time.Time { return time.Now().UTC() }

// ckanTime formats a timestamp as CKAN's dictization does (isoformat of a
// naive datetime).
func ckanTime(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000000") }

func (c *catalogue) userByName(idOrName string) *user {
	for _, u := range c.users {
		if u.ID == idOrName || u.Name == idOrName {
			return u
		}
	}
	return nil
}

func (c *catalogue) group(idOrName string, org bool) *group {
	for _, g := range c.groups {
		if g.IsOrganization == org && (g.ID == idOrName || g.Name == idOrName) {
			return g
		}
	}
	return nil
}

func (c *catalogue) groupByID(id string) *group {
	for _, g := range c.groups {
		if g.ID == id {
			return g
		}
	}
	return nil
}

func (c *catalogue) dataset(idOrName string) *dataset {
	for _, d := range c.datasets {
		if d.ID == idOrName || d.Name == idOrName {
			return d
		}
	}
	return nil
}

// resource finds a resource that is not deleted, with its dataset.
func (c *catalogue) resource(id string) (*dataset, *resource) {
	for _, d := range c.datasets {
		for _, r := range d.Resources {
			if r.ID == id && r.State != "deleted" {
				return d, r
			}
		}
	}
	return nil, nil
}

func (c *catalogue) view(id string) *resourceView {
	for _, v := range c.views {
		if v.ID == id {
			return v
		}
	}
	return nil
}

func (c *catalogue) activityByID(id string) *activity {
	for _, a := range c.activity {
		if a.ID == id {
			return a
		}
	}
	return nil
}

func (c *catalogue) license(id string) (license, bool) {
	for _, l := range c.licenses {
		if l.ID == id {
			return l, true
		}
	}
	return license{}, false
}

func (c *catalogue) tagID(name string) string {
	if id, ok := c.tagIDs[name]; ok {
		return id
	}
	id := newID()
	c.tagIDs[name] = id
	return id
}

// capacity returns u's role in the organization or group g ("" if none).
func capacity(g *group, u *user) string {
	if g == nil || u == nil {
		return ""
	}
	return g.Members[u.Name]
}

// canRead reports whether u may see dataset d (CKAN's package_show auth).
func (c *catalogue) canRead(u *user, d *dataset) bool {
	if u != nil && u.Sysadmin {
		return true
	}
	member := capacity(c.groupByID(d.OwnerOrg), u) != ""
	switch d.State {
	case "deleted":
		return false
	case "draft":
		return member || (u != nil && d.CreatorUserID == u.ID)
	}
	return !d.Private || member
}

// canEdit reports whether u may update datasets of the organization with id
// orgID (CKAN's update_dataset permission: editors and admins).
func (c *catalogue) canEdit(u *user, orgID string) bool {
	if u == nil {
		return false
	}
	if u.Sysadmin {
		return true
	}
	switch capacity(c.groupByID(orgID), u) {
	case "admin", "editor":
		return true
	}
	return false
}

// canCreateSomewhere reports whether u may create a dataset in at least one
// organization.
func (c *catalogue) canCreateSomewhere(u *user) bool {
	if u == nil {
		return false
	}
	return u.Sysadmin || slices.ContainsFunc(c.groups, func(g *group) bool {
		return g.IsOrganization && c.canEdit(u, g.ID)
	})
}

// canAdminGroup reports whether u may edit the group or organization g.
func canAdminGroup(u *user, g *group) bool {
	return u != nil && (u.Sysadmin || capacity(g, u) == "admin")
}

// record appends an activity, as ckanext-activity does after a change.
func (c *catalogue) record(u *user, objectID, kind string, data map[string]any) {
	a := &activity{ID: newID(), Timestamp: now(), ObjectID: objectID, Type: kind, Data: data}
	if u != nil {
		a.UserID = u.ID
	}
	c.activity = append(c.activity, a)
}

// activitiesOf returns the activities on one object, newest first.
func (c *catalogue) activitiesOf(objectID string) []*activity {
	var out []*activity
	for i := len(c.activity) - 1; i >= 0; i-- {
		if a := c.activity[i]; objectID == "" || a.ObjectID == objectID {
			out = append(out, a)
		}
	}
	return out
}

// visibleDatasets returns the active datasets u may see, newest change
// first; private ones only when includePrivate is set.
func (c *catalogue) visibleDatasets(u *user, includePrivate bool) []*dataset {
	var out []*dataset
	for _, d := range c.datasets {
		if d.State != "active" || !c.canRead(u, d) || (d.Private && !includePrivate) {
			continue
		}
		out = append(out, d)
	}
	slices.SortStableFunc(out, func(a, b *dataset) int { return b.Modified.Compare(a.Modified) })
	return out
}

// validName reports whether s is a valid CKAN name (name_validator).
func validName(s string) bool {
	if len(s) < 2 || len(s) > 100 {
		return false
	}
	return strings.Trim(s, "abcdefghijklmnopqrstuvwxyz0123456789-_") == ""
}
