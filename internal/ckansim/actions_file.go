package ckansim

import (
	"fmt"
	"strconv"
	"strings"
)

// This file is CKAN 2.12's file API (ckan/logic/action/file.py,
// ckan/logic/auth/file.py, ckan/logic/schema/file.py at dev-v2.12
// 39175aab) as a stock site answers it: with the default configuration no
// storage is configured (no ckan.files.storage.* options; collect_storages
// then builds none), so no file can ever be created and the file table is
// empty. Each action still runs in CKAN's order: its schema's validation
// (@logic.validate, before anything else), then check_access, then the
// storage or the database:
//
//   - file_create, file_register: a sysadmin gets the ValidationError of
//     get_storage ("Storage default is not configured"); anyone else the
//     auth function's refusal (permission_manage_files).
//   - file_show, file_delete, file_rename, file_pin, file_unpin,
//     file_ownership_transfer: a sysadmin gets NotFound (no such file);
//     anyone else the refusal of the permission_* auth function, which
//     finds no file either.
//   - file_owner_scan: {"count": 0, "results": []} for whoever may list
//     the owner's files (a sysadmin, or a user listing their own), the
//     refusal for anyone else.
//
// Anonymous callers of auth functions without auth_allow_anonymous_access
// get authz.is_authorized's "Action NAME requires an authenticated user".

// defaultStorage is ckan.files.default_storages.default's default.
const defaultStorage = "default"

// fieldErrors collects a schema's errors, as navl's validate does.
type fieldErrors map[string]any

func (e fieldErrors) add(key, msg string) { e[key] = []any{msg} }

func (e fieldErrors) err() error {
	if len(e) == 0 {
		return nil
	}
	return invalid(e)
}

// notEmpty is the not_empty, unicode_only pair of the file schemas: a
// missing or empty value is "Missing value", a non-string one "Must be a
// Unicode string value".
func (c *actionCall) notEmpty(errs fieldErrors, keys ...string) {
	for _, k := range keys {
		v, ok := c.data[k]
		if s, isStr := v.(string); !ok || v == nil || (isStr && s == "") {
			errs.add(k, "Missing value")
			continue
		}
		if _, isStr := v.(string); !isStr {
			errs.add(k, "Must be a Unicode string value")
		}
	}
}

// unicodeOr is default(def), unicode_only: the value, or def when absent.
func (c *actionCall) unicodeOr(errs fieldErrors, key, def string) string {
	v, ok := c.data[key]
	if !ok || v == nil || v == "" {
		return def
	}
	s, isStr := v.(string)
	if !isStr {
		errs.add(key, "Must be a Unicode string value")
	}
	return s
}

// requiresUser is authz.is_authorized's answer to an anonymous caller of
// an auth function without auth_allow_anonymous_access.
func (c *actionCall) requiresUser() error {
	if c.who.user == nil {
		return denied("Action " + c.name + " requires an authenticated user")
	}
	return nil
}

// manageFiles is check_access for file_create and file_register:
// permission_manage_files refuses everyone but sysadmins (and
// ckan.files.authenticated_uploads.allow is off by default).
func (c *actionCall) manageFiles() error {
	if c.who.sysadmin() {
		return nil
	}
	if err := c.requiresUser(); err != nil {
		return err
	}
	return denied("Not allowed to manage files")
}

func (c *actionCall) fileCreate() (any, error) {
	errs := fieldErrors{}
	storage := c.unicodeOr(errs, "storage", defaultStorage)
	if _, ok := c.data["upload"]; !ok {
		errs.add("upload", "Missing value")
	}
	if _, ok := c.data["name"]; ok {
		c.unicodeOr(errs, "name", "")
	}
	if err := errs.err(); err != nil {
		return nil, err
	}
	if err := c.manageFiles(); err != nil {
		return nil, err
	}
	return nil, invalid(map[string]any{"storage": []any{"Storage " + storage + " is not configured"}})
}

func (c *actionCall) fileRegister() (any, error) {
	errs := fieldErrors{}
	storage := c.unicodeOr(errs, "storage", defaultStorage)
	if _, ok := c.data["location"]; !ok {
		errs.add("location", "Missing value")
	} else {
		c.unicodeOr(errs, "location", "")
	}
	if err := errs.err(); err != nil {
		return nil, err
	}
	if err := c.manageFiles(); err != nil {
		return nil, err
	}
	return nil, invalid(map[string]any{"storage": []any{"Storage " + storage + " is not configured"}})
}

// fileShow: file_show's auth allows anonymous access, and so does
// permission_read_file, which finds no file and refuses.
func (c *actionCall) fileShow() (any, error) {
	errs := fieldErrors{}
	c.notEmpty(errs, "id")
	if err := errs.err(); err != nil {
		return nil, err
	}
	if !c.who.sysadmin() {
		return nil, denied("Not allowed to read file")
	}
	return nil, notFound("file")
}

func (c *actionCall) fileDelete() (any, error) {
	errs := fieldErrors{}
	c.notEmpty(errs, "id")
	if err := errs.err(); err != nil {
		return nil, err
	}
	if !c.who.sysadmin() {
		if err := c.requiresUser(); err != nil {
			return nil, err
		}
		return nil, denied("Not allowed to delete file")
	}
	return nil, notFound("file id not found")
}

func (c *actionCall) fileRename() (any, error) {
	errs := fieldErrors{}
	c.notEmpty(errs, "id", "name")
	if err := errs.err(); err != nil {
		return nil, err
	}
	return c.editMissingFile()
}

// fileEdit is file_pin and file_unpin.
func (c *actionCall) fileEdit() (any, error) {
	errs := fieldErrors{}
	c.notEmpty(errs, "id")
	if err := errs.err(); err != nil {
		return nil, err
	}
	return c.editMissingFile()
}

// editMissingFile is check_access through permission_edit_file, then the
// lookup of a file that does not exist.
func (c *actionCall) editMissingFile() (any, error) {
	if !c.who.sysadmin() {
		if err := c.requiresUser(); err != nil {
			return nil, err
		}
		return nil, denied("Not allowed to edit file")
	}
	return nil, notFound("file")
}

// fileOwnershipTransfer: its auth function looks the file up first and,
// finding none, answers "File is pinned".
func (c *actionCall) fileOwnershipTransfer() (any, error) {
	errs := fieldErrors{}
	c.notEmpty(errs, "id", "owner_id", "owner_type") // force and pin: boolean_validator never fails
	if err := errs.err(); err != nil {
		return nil, err
	}
	if !c.who.sysadmin() {
		if err := c.requiresUser(); err != nil {
			return nil, err
		}
		return nil, denied("File is pinned")
	}
	return nil, notFound("file")
}

// fileColumns are the columns _file_search sorts and filters on.
var fileColumns = map[string]bool{
	"name": true, "storage": true, "location": true, "size": true, "hash": true, "created": true,
	"storage_data": true, "plugin_data": true, "owner_id": true, "owner_type": true, "pinned": true,
}

// fileOwnerScan lists the owner's files, of which there are none. Only
// owner type "user" is judged as CKAN does (ckan.files.owner.scan_as_update
// is on by default, so user_update decides: a user may list their own
// files); for any other owner type ckansim refuses everyone but sysadmins.
func (c *actionCall) fileOwnerScan() (any, error) {
	errs := fieldErrors{}
	ownerID := c.unicodeOr(errs, "owner_id", "")
	ownerType := c.unicodeOr(errs, "owner_type", "user")
	for _, k := range []string{"start", "rows"} {
		if v, ok := c.data[k]; ok && v != nil && v != "" {
			if _, err := strconv.Atoi(strings.TrimSpace(c.str(k))); err != nil {
				errs.add(k, "Invalid integer")
			}
		}
	}
	if err := errs.err(); err != nil {
		return nil, err
	}
	if ownerID == "" && ownerType == "user" && c.who.user != nil {
		ownerID = c.who.user.ID
	}
	if !c.who.sysadmin() {
		allowed := false
		if u := c.who.user; u != nil && ownerType == "user" {
			target := c.cat.userByName(ownerID)
			allowed = target != nil && target.Name == u.Name
		}
		if !allowed {
			return nil, denied("Not allowed to list files")
		}
	}
	if err := fileSort(c.data["sort"]); err != nil {
		return nil, err
	}
	return map[string]any{"count": 0, "results": []any{}}, nil
}

// fileSort checks a sort parameter as _process_sort does: a column name,
// or a list of names and [name, direction] pairs.
func fileSort(v any) error {
	bad := func(msg string) error { return invalid(map[string]any{"sort": []any{msg}}) }
	parts := []any{v}
	switch v := v.(type) {
	case nil:
		return nil
	case []any:
		parts = v
	}
	for _, p := range parts {
		field, dir := "", "asc"
		switch p := p.(type) {
		case string:
			field = p
		case []any:
			var f, d string
			ok := len(p) == 2
			if ok {
				f, ok = p[0].(string)
			}
			if ok {
				d, ok = p[1].(string)
			}
			if !ok {
				return bad(fmt.Sprintf("Invalid sort value: %s", pyRepr(p)))
			}
			field, dir = f, d
		default:
			return bad(fmt.Sprintf("Invalid sort value: %s", pyRepr(p)))
		}
		if dir != "asc" && dir != "desc" {
			return bad("Invalid sort direction: " + dir)
		}
		if !fileColumns[field] {
			return bad("Invalid sort field: " + field)
		}
	}
	return nil
}
