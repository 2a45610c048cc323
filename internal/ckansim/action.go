package ckansim

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/ckanops/ckanops/internal/surface"
)

// actionCall is one run of an action function: CKAN's context (who, the
// catalogue) and data_dict.
type actionCall struct {
	sim  *Sim
	cat  *catalogue
	who  caller
	name string
	data map[string]any
	site string // site URL, for the links CKAN builds (with the root path)
	// siteURL is ckan.site_url for status_show; "" means site.
	siteURL string

	wrote bool // a side_effect_free action changed state (2.12's datastore_search)
}

// actionFunc is an action ckansim implements over its catalogue. It runs
// with the catalogue locked (read lock for side_effect_free actions).
type actionFunc func(*actionCall) (any, error)

// implemented lists the actions with real behaviour; every other action in
// the surface gets generic's plausible answer.
var implemented map[string]actionFunc

func init() {
	implemented = map[string]actionFunc{
		"status_show":           (*actionCall).statusShow,
		"site_read":             (*actionCall).siteRead,
		"help_show":             (*actionCall).helpShow,
		"license_list":          (*actionCall).licenseList,
		"tag_list":              (*actionCall).tagList,
		"job_list":              (*actionCall).jobList,
		"get_site_user":         (*actionCall).getSiteUser,
		"package_list":          (*actionCall).packageList,
		"package_search":        (*actionCall).packageSearch,
		"package_show":          (*actionCall).packageShow,
		"package_create":        (*actionCall).packageCreate,
		"package_update":        (*actionCall).packageUpdate,
		"package_patch":         (*actionCall).packagePatch,
		"package_delete":        (*actionCall).packageDelete,
		"resource_show":         (*actionCall).resourceShow,
		"resource_create":       (*actionCall).resourceCreate,
		"resource_update":       (*actionCall).resourceUpdate,
		"resource_patch":        (*actionCall).resourcePatch,
		"resource_delete":       (*actionCall).resourceDelete,
		"organization_list":     func(c *actionCall) (any, error) { return c.groupList(true) },
		"group_list":            func(c *actionCall) (any, error) { return c.groupList(false) },
		"organization_show":     func(c *actionCall) (any, error) { return c.groupShow(true) },
		"group_show":            func(c *actionCall) (any, error) { return c.groupShow(false) },
		"group_create":          func(c *actionCall) (any, error) { return c.groupCreate(false) },
		"organization_create":   func(c *actionCall) (any, error) { return c.groupCreate(true) },
		"group_update":          func(c *actionCall) (any, error) { return c.groupUpdate(false) },
		"organization_update":   func(c *actionCall) (any, error) { return c.groupUpdate(true) },
		"group_delete":          func(c *actionCall) (any, error) { return c.groupDelete(false) },
		"organization_delete":   func(c *actionCall) (any, error) { return c.groupDelete(true) },
		"user_show":             (*actionCall).userShow,
		"user_list":             (*actionCall).userList,
		"api_token_create":      (*actionCall).apiTokenCreate,
		"api_token_list":        (*actionCall).apiTokenList,
		"api_token_revoke":      (*actionCall).apiTokenRevoke,
		"config_option_show":    (*actionCall).configOptionShow,
		"config_option_list":    (*actionCall).configOptionList,
		"config_option_update":  (*actionCall).configOptionUpdate,
		"package_activity_list": (*actionCall).packageActivityList,
		"resource_view_list":    (*actionCall).resourceViewList,
		"resource_view_show":    (*actionCall).resourceViewShow,
		"datastore_search":      (*actionCall).datastoreSearch,
		"datastore_create":      (*actionCall).datastoreCreate,
		"datastore_upsert":      (*actionCall).datastoreUpsert,
		"datastore_delete":      (*actionCall).datastoreDelete,
		"datastore_info":        (*actionCall).datastoreInfo,
		// CKAN 2.12's file API (actions_file.go).
		"file_create":             (*actionCall).fileCreate,
		"file_register":           (*actionCall).fileRegister,
		"file_show":               (*actionCall).fileShow,
		"file_delete":             (*actionCall).fileDelete,
		"file_rename":             (*actionCall).fileRename,
		"file_pin":                (*actionCall).fileEdit,
		"file_unpin":              (*actionCall).fileEdit,
		"file_ownership_transfer": (*actionCall).fileOwnershipTransfer,
		"file_owner_scan":         (*actionCall).fileOwnerScan,
	}
}

// run runs one action of the surface with the catalogue locked.
func (s *Sim) run(c *actionCall) (any, error) {
	act := s.surface.Actions[c.name]
	if act.SideEffectFree {
		s.cat.mu.RLock()
		defer s.cat.mu.RUnlock()
	} else {
		s.cat.mu.Lock()
		defer s.cat.mu.Unlock()
	}
	c.sim, c.cat = s, s.cat
	if c.data == nil {
		c.data = map[string]any{}
	}
	if fn, ok := implemented[c.name]; ok {
		return fn(c)
	}
	return c.generic(act)
}

// sysadminOnly lists the actions whose auth function refuses everyone
// (so only sysadmins, who skip auth functions, pass), read off
// ckan/logic/auth/*.py and the plugins' auth modules of CKAN 2.11 (and, for
// the activity_delete* actions, ckanext/activity/logic/auth.py of 2.12),
// with the message each gives ("%s" is the user name). The surface's
// auth_sysadmins_check column does not say this: it is false for every
// auth function.
var sysadminOnly = map[string]string{
	"activity_create":              "",
	"activity_delete":              "",
	"activity_delete_all":          "",
	"activity_delete_counts":       "",
	"config_option_list":           "",
	"config_option_show":           "",
	"config_option_update":         "",
	"dataset_follower_list":        "Not authorized",
	"dataset_purge":                "",
	"datastore_analyze":            "",
	"datastore_function_create":    "",
	"datastore_function_delete":    "",
	"datastore_run_triggers":       "",
	"get_site_user":                "Only internal services allowed to use this action",
	"group_follower_list":          "Not authorized",
	"group_purge":                  "",
	"job_cancel":                   "",
	"job_clear":                    "",
	"job_list":                     "",
	"job_show":                     "",
	"organization_follower_list":   "Not authorized",
	"organization_purge":           "",
	"package_owner_org_update":     "",
	"resource_view_clear":          "",
	"send_email_notifications":     "",
	"tag_create":                   "",
	"tag_delete":                   "",
	"task_status_delete":           "",
	"task_status_update":           "User %s not authorized to update task_status table",
	"task_status_update_many":      "User %s not authorized to update task_status table",
	"term_translation_update":      "User %s not authorized to update term_translation table",
	"term_translation_update_many": "User %s not authorized to update term_translation table",
	"user_create":                  "User %s not authorized to create users via the API",
	"user_delete":                  "",
	"user_follower_list":           "Not authorized",
	"vocabulary_create":            "",
	"vocabulary_delete":            "",
	"vocabulary_update":            "",
}

// authorize is check_access with CKAN's defaults: sysadmins pass;
// sysadmin-only actions refuse everyone else; an auth function that does
// not allow anonymous access refuses anonymous callers.
func (c *actionCall) authorize() error {
	if c.who.sysadmin() {
		return nil
	}
	if msg, only := sysadminOnly[c.name]; only {
		if strings.Contains(msg, "%s") {
			msg = fmt.Sprintf(msg, c.who.name())
		}
		return denied(msg)
	}
	if c.who.user == nil {
		if af, ok := c.sim.surface.Auth[c.name]; ok && !af.AllowAnonymousAccess {
			return denied("")
		}
	}
	return nil
}

// generic answers an action ckansim does not implement: after the auth
// check, a read returns an empty value of the shape its name promises (or
// Not Found for a *_show), and a write returns what CKAN's write actions
// usually return ({} or, for deletions, null) without changing anything.
func (c *actionCall) generic(act surface.Action) (any, error) {
	if err := c.authorize(); err != nil {
		return nil, err
	}
	name := act.Name
	if act.SideEffectFree {
		switch {
		case strings.HasSuffix(name, "_count"):
			return 0, nil
		case strings.HasPrefix(name, "am_following_"):
			return false, nil
		case strings.HasSuffix(name, "_search"):
			return map[string]any{"count": 0, "results": []any{}}, nil
		case strings.Contains(name, "_list") || strings.HasSuffix(name, "_autocomplete") ||
			name == "current_package_list_with_resources" || name == "group_package_show":
			return []any{}, nil
		}
		return nil, notFound("")
	}
	for _, suffix := range []string{"_delete", "_purge", "_clear", "_revoke", "_cancel"} {
		if strings.HasSuffix(name, suffix) {
			return nil, nil
		}
	}
	if strings.HasPrefix(name, "bulk_update_") || name == "send_email_notifications" {
		return nil, nil
	}
	return map[string]any{}, nil
}

// str returns a data value as a string ("" when absent or not scalar).
func (c *actionCall) str(key string) string {
	switch v := c.data[key].(type) {
	case string:
		return v
	case json.Number:
		return v.String()
	case bool:
		return strconv.FormatBool(v)
	}
	return ""
}

// boolean is CKAN's asbool of a data value.
func (c *actionCall) boolean(key string, def bool) bool {
	switch v := c.data[key].(type) {
	case bool:
		return v
	case nil:
		return def
	}
	switch strings.ToLower(strings.TrimSpace(c.str(key))) {
	case "true", "yes", "on", "y", "t", "1":
		return true
	case "false", "no", "off", "n", "f", "0", "":
		return false
	}
	return def
}

// integer reads a non-negative integer parameter; a bad value is CKAN's
// "Invalid integer" validation error.
func (c *actionCall) integer(key string, def int) (int, error) {
	if _, ok := c.data[key]; !ok || c.str(key) == "" {
		return def, nil
	}
	n, err := strconv.Atoi(strings.TrimSpace(c.str(key)))
	if err != nil {
		return 0, invalid(map[string]any{key: []any{"Invalid integer"}})
	}
	if n < 0 {
		return 0, invalid(map[string]any{key: []any{"Must be a natural number"}})
	}
	return n, nil
}

// list returns a list parameter given as a JSON list or as a
// comma-separated string.
func (c *actionCall) list(key string) []string {
	switch v := c.data[key].(type) {
	case []any:
		var out []string
		for _, e := range v {
			if s, ok := e.(string); ok {
				out = append(out, s)
			}
		}
		return out
	case string:
		var out []string
		for _, s := range strings.Split(v, ",") {
			if s = strings.TrimSpace(s); s != "" {
				out = append(out, s)
			}
		}
		return out
	}
	return nil
}
