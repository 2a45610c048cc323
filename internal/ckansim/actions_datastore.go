package ckansim

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
)

// DataStore actions (ckanext.datastore), over in-memory tables.

// datastoreTable finds the table named by resource_id (or id) and checks
// the caller's right to read it, or to write it (package_update on the
// resource's dataset).
func (c *actionCall) datastoreTable(write bool) (*dataset, *resource, *table, error) {
	id := c.str("resource_id")
	if id == "" {
		id = c.str("id")
	}
	if id == "" {
		return nil, nil, nil, missing("resource_id")
	}
	d, r := c.cat.resource(id)
	t := c.cat.tables[id]
	if r == nil || t == nil {
		return nil, nil, nil, notFound(fmt.Sprintf("Resource \"%s\" was not found.", id))
	}
	if err := c.datastoreAuth(d, r, write); err != nil {
		return nil, nil, nil, err
	}
	return d, r, t, nil
}

func (c *actionCall) datastoreAuth(d *dataset, r *resource, write bool) error {
	if write && !c.cat.canEdit(c.who.user, d.OwnerOrg) {
		return denied(fmt.Sprintf("User %s not authorized to update resource %s", c.who.name(), r.ID))
	}
	if !write && !c.cat.canRead(c.who.user, d) {
		return denied(fmt.Sprintf("User %s not authorized to read resource %s", c.who.name(), r.ID))
	}
	return nil
}

func (t *table) hasField(id string) bool {
	return id == "_id" || slices.ContainsFunc(t.Fields, func(f field) bool { return f.ID == id })
}

func (t *table) fieldList() []any {
	out := []any{map[string]any{"id": "_id", "type": "int"}}
	for _, f := range t.Fields {
		m := map[string]any{"id": f.ID, "type": f.Type}
		if f.Info != nil {
			m["info"] = f.Info
		}
		out = append(out, m)
	}
	return out
}

func notInTable(key, field string) error {
	return invalid(map[string]any{key: []any{fmt.Sprintf("field \"%s\" not in table", field)}})
}

// cachesRowCounts: CKAN 2.12's datastore_search keeps table row counts in
// the DataStore's _table_stats (data/2.12/CHANGES.md).
func (s *Sim) cachesRowCounts() bool { return s.surface.Version == "2.12" }

func (c *actionCall) datastoreSearch() (any, error) {
	_, r, t, err := c.datastoreTable(false)
	if err != nil {
		return nil, err
	}
	limit, err := c.integer("limit", 100)
	if err != nil {
		return nil, err
	}
	offset, err := c.integer("offset", 0)
	if err != nil {
		return nil, err
	}
	filters, _ := c.data["filters"].(map[string]any)
	for f := range filters {
		if !t.hasField(f) {
			return nil, notInTable("filters", f)
		}
	}
	fields := c.list("fields")
	for _, f := range fields {
		if !t.hasField(f) {
			return nil, notInTable("fields", f)
		}
	}
	q := strings.ToLower(c.str("q"))
	var hits []map[string]any
	for _, rec := range t.Records {
		if matchesFilters(rec, filters) && (q == "" || recordContains(rec, q)) {
			hits = append(hits, rec)
		}
	}
	if err := sortRecords(t, hits, c.str("sort")); err != nil {
		return nil, err
	}
	records := []any{}
	for _, rec := range pageOf(hits, offset, limit) {
		records = append(records, project(rec, fields))
	}
	includeTotal := c.boolean("include_total", true)
	if c.sim.cachesRowCounts() && includeTotal && len(filters) == 0 && q == "" && !c.boolean("distinct", false) {
		c.wrote = t.countRows()
	}
	result := map[string]any{
		"resource_id": r.ID, "fields": t.fieldList(), "records": records,
		"limit": limit, "include_total": includeTotal, "records_format": "objects",
		"total": len(hits), "total_was_estimated": false, "total_estimation_threshold": nil,
		"_links": map[string]any{
			"start": "/api/action/datastore_search?resource_id=" + r.ID,
			"next":  fmt.Sprintf("/api/action/datastore_search?offset=%d&resource_id=%s", offset+limit, r.ID),
		},
	}
	if filters != nil {
		result["filters"] = filters
	}
	if q != "" {
		result["q"] = c.str("q")
	}
	return result, nil
}

func matchesFilters(rec map[string]any, filters map[string]any) bool {
	for f, want := range filters {
		got := fmt.Sprint(rec[f])
		if list, ok := want.([]any); ok {
			if !slices.ContainsFunc(list, func(w any) bool { return fmt.Sprint(w) == got }) {
				return false
			}
		} else if fmt.Sprint(want) != got {
			return false
		}
	}
	return true
}

func recordContains(rec map[string]any, q string) bool {
	for k, v := range rec {
		if k != "_id" && strings.Contains(strings.ToLower(fmt.Sprint(v)), q) {
			return true
		}
	}
	return false
}

func project(rec map[string]any, fields []string) map[string]any {
	if len(fields) == 0 {
		return rec
	}
	out := map[string]any{}
	for _, f := range fields {
		out[f] = rec[f]
	}
	return out
}

// sortRecords orders records by a "field [asc|desc], ..." clause; the
// default is insertion order (_id).
func sortRecords(t *table, records []map[string]any, clause string) error {
	type key struct {
		field string
		desc  bool
	}
	var keys []key
	for _, part := range strings.Split(clause, ",") {
		f := strings.Fields(part)
		if len(f) == 0 {
			continue
		}
		name := strings.Trim(f[0], `"`)
		if !t.hasField(name) {
			return notInTable("sort", name)
		}
		keys = append(keys, key{name, len(f) > 1 && strings.EqualFold(f[1], "desc")})
	}
	slices.SortStableFunc(records, func(a, b map[string]any) int {
		for _, k := range keys {
			c := compareValues(a[k.field], b[k.field])
			if k.desc {
				c = -c
			}
			if c != 0 {
				return c
			}
		}
		return 0
	})
	return nil
}

func compareValues(a, b any) int {
	fa, aNum := number(a)
	fb, bNum := number(b)
	if aNum && bNum {
		switch {
		case fa < fb:
			return -1
		case fa > fb:
			return 1
		}
		return 0
	}
	return strings.Compare(fmt.Sprint(a), fmt.Sprint(b))
}

func number(v any) (float64, bool) {
	switch v := v.(type) {
	case float64:
		return v, true
	case int:
		return float64(v), true
	case json.Number:
		f, err := v.Float64()
		return f, err == nil
	}
	return 0, false
}

// records reads the records parameter: a list of dictionaries.
func (c *actionCall) records() ([]map[string]any, error) {
	v, given := c.data["records"]
	if !given {
		return nil, nil
	}
	list, ok := v.([]any)
	if !ok {
		return nil, invalid(map[string]any{"records": []any{"Records has to be a list of dicts"}})
	}
	out := make([]map[string]any, 0, len(list))
	for _, e := range list {
		m, ok := e.(map[string]any)
		if !ok {
			return nil, invalid(map[string]any{"records": []any{"The data was invalid (for example: a numeric value is out of range or was inserted into a text field)."}})
		}
		out = append(out, m)
	}
	return out, nil
}

func (c *actionCall) datastoreCreate() (any, error) {
	id := c.str("resource_id")
	if id == "" {
		spec, ok := c.data["resource"].(map[string]any)
		if !ok {
			return nil, missing("resource_id")
		}
		created, err := (&actionCall{sim: c.sim, cat: c.cat, who: c.who, name: "resource_create", data: spec, site: c.site}).resourceCreate()
		if err != nil {
			return nil, err
		}
		id = created.(map[string]any)["id"].(string)
	}
	d, r := c.cat.resource(id)
	if r == nil {
		return nil, notFound(fmt.Sprintf("Resource \"%s\" was not found.", id))
	}
	if err := c.datastoreAuth(d, r, true); err != nil {
		return nil, err
	}
	records, err := c.records()
	if err != nil {
		return nil, err
	}
	t := c.cat.tables[id]
	fresh := t == nil
	if fresh {
		t = &table{ResourceID: id}
	}
	if list, ok := c.data["fields"].([]any); ok {
		for _, e := range list {
			m, _ := e.(map[string]any)
			name, _ := m["id"].(string)
			if name == "" {
				return nil, invalid(map[string]any{"fields": []any{"\"id\" is required for every field"}})
			}
			if !t.hasField(name) {
				typ, _ := m["type"].(string)
				info, _ := m["info"].(map[string]any)
				t.Fields = append(t.Fields, field{ID: name, Type: typ, Info: info})
			}
		}
	}
	if pk := c.list("primary_key"); pk != nil {
		t.PrimaryKey = pk
	}
	if err := t.insert(records, "insert"); err != nil {
		return nil, err
	}
	if fresh {
		c.cat.tables[id] = t
	}
	t.countStale.Store(true) // clear_table_stats
	r.DatastoreActive = true
	result := map[string]any{"resource_id": id, "fields": t.fieldList()[1:], "method": "insert"}
	if len(t.PrimaryKey) > 0 {
		result["primary_key"] = t.PrimaryKey
	}
	return result, nil
}

func (c *actionCall) datastoreUpsert() (any, error) {
	_, r, t, err := c.datastoreTable(true)
	if err != nil {
		return nil, err
	}
	method := c.str("method")
	if method == "" {
		method = "upsert"
	}
	if !slices.Contains([]string{"upsert", "insert", "update"}, method) {
		return nil, invalid(map[string]any{"method": []any{fmt.Sprintf("\"%s\" is not a valid method", method)}})
	}
	records, err := c.records()
	if err != nil {
		return nil, err
	}
	if err := t.insert(records, method); err != nil {
		return nil, err
	}
	t.countStale.Store(true) // clear_table_stats
	return map[string]any{"resource_id": r.ID, "method": method}, nil
}

// insert adds or updates records by the table's primary key, as the
// datastore's insert, upsert and update methods do. It checks every record
// before changing any.
func (t *table) insert(records []map[string]any, method string) error {
	if method != "insert" && len(t.PrimaryKey) == 0 {
		return invalid(map[string]any{"table": []any{"table does not have a unique key defined"}})
	}
	type change struct {
		existing map[string]any // nil: a new record
		rec      map[string]any
	}
	var changes []change
	for _, rec := range records {
		existing := t.byKey(rec)
		switch {
		case method == "insert" && existing != nil:
			return invalid(map[string]any{"constraints": []any{"Cannot insert records or create index because of uniqueness constraint"}})
		case method == "update" && existing == nil:
			return invalid(map[string]any{"key": []any{fmt.Sprintf("key \"%v\" not found", t.keyOf(rec))}})
		}
		changes = append(changes, change{existing, rec})
	}
	for _, ch := range changes {
		for k, v := range ch.rec {
			if !t.hasField(k) {
				t.Fields = append(t.Fields, field{ID: k, Type: guessType(v)})
			}
		}
		if ch.existing != nil {
			for k, v := range ch.rec {
				if k != "_id" {
					ch.existing[k] = v
				}
			}
			continue
		}
		t.nextID++
		rec := map[string]any{"_id": t.nextID}
		for k, v := range ch.rec {
			if k != "_id" {
				rec[k] = v
			}
		}
		t.Records = append(t.Records, rec)
	}
	return nil
}

func (t *table) keyOf(rec map[string]any) []string {
	key := make([]string, len(t.PrimaryKey))
	for i, k := range t.PrimaryKey {
		key[i] = fmt.Sprint(rec[k])
	}
	return key
}

func (t *table) byKey(rec map[string]any) map[string]any {
	if len(t.PrimaryKey) == 0 {
		return nil
	}
	want := t.keyOf(rec)
	for _, existing := range t.Records {
		if slices.Equal(t.keyOf(existing), want) {
			return existing
		}
	}
	return nil
}

func guessType(v any) string {
	if _, ok := number(v); ok {
		return "numeric"
	}
	return "text"
}

func (c *actionCall) datastoreDelete() (any, error) {
	_, r, t, err := c.datastoreTable(true)
	if err != nil {
		return nil, err
	}
	filters, given := c.data["filters"].(map[string]any)
	if !given {
		delete(c.cat.tables, r.ID)
		r.DatastoreActive = false
		return map[string]any{"resource_id": r.ID}, nil
	}
	for f := range filters {
		if !t.hasField(f) {
			return nil, notInTable("filters", f)
		}
	}
	t.Records = slices.DeleteFunc(t.Records, func(rec map[string]any) bool { return matchesFilters(rec, filters) })
	t.countStale.Store(true) // clear_table_stats
	return map[string]any{"resource_id": r.ID, "filters": filters}, nil
}

func (c *actionCall) datastoreInfo() (any, error) {
	id := c.str("resource_id")
	if id == "" {
		id = c.str("id")
	}
	if id == "" {
		return nil, missing("resource_id")
	}
	d, r := c.cat.resource(id)
	t := c.cat.tables[id]
	if r == nil || t == nil {
		return nil, notFound(fmt.Sprintf("Resource/Alias \"%s\" was not found.", id))
	}
	if err := c.datastoreAuth(d, r, false); err != nil {
		return nil, err
	}
	fields := []any{}
	for _, f := range t.Fields {
		fields = append(fields, map[string]any{
			"id": f.ID, "type": f.Type,
			"schema": map[string]any{"native_type": f.Type, "index_name": nil, "is_index": false,
				"notnull": false, "uniquekey": slices.Contains(t.PrimaryKey, f.ID)},
		})
	}
	size := 8192 * (1 + len(t.Records)/64)
	return map[string]any{
		"meta": map[string]any{
			"id": r.ID, "count": len(t.Records), "table_type": "BASE TABLE", "aliases": []any{},
			"size": size, "idx_size": 16384, "db_size": 7704111,
		},
		"fields": fields,
	}, nil
}
