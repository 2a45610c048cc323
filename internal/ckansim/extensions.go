package ckansim

import (
	"fmt"

	"github.com/ckanops/ckanops/internal/surface"
)

// harvestActions are ckanext-harvest's actions and their side_effect_free
// flags, read off ckan/ckanext-harvest at 1a9a987: plugin.py's
// get_actions registers every public function of
// ckanext/harvest/logic/action/{get,create,update,patch,delete}.py, and the
// @side_effect_free decorators are on get.py's readers and on update.py's
// two reindexing actions (which write the search index all the same).
// get.py's harvest_get_notifications_recipients, and update.py's mail
// helpers, registered the same way, are left out: nobody calls them over
// HTTP.
var harvestActions = map[string]bool{
	"harvest_source_show":               true,
	"harvest_source_show_status":        true,
	"harvest_source_list":               true,
	"harvest_job_show":                  true,
	"harvest_job_report":                true,
	"harvest_job_list":                  true,
	"harvest_object_show":               true,
	"harvest_object_list":               true,
	"harvesters_info_show":              true,
	"harvest_log_list":                  true,
	"harvest_sources_reindex":           true,
	"harvest_source_reindex":            true,
	"harvest_source_create":             false,
	"harvest_job_create":                false,
	"harvest_job_create_all":            false,
	"harvest_object_create":             false,
	"harvest_source_update":             false,
	"harvest_source_clear":              false,
	"harvest_abort_failed_jobs":         false,
	"harvest_sources_job_history_clear": false,
	"harvest_source_job_history_clear":  false,
	"harvest_source_index_clear":        false,
	"harvest_objects_import":            false,
	"harvest_jobs_run":                  false,
	"harvest_send_job_to_gather_queue":  false,
	"harvest_job_abort":                 false,
	"harvest_source_patch":              false,
	"harvest_source_delete":             false,
}

// addExtensions registers the extensions' actions in the surface the
// simulator answers from (a copy of its own: Load parses afresh). They run
// ckansim's generic action (actionCall.generic).
func addExtensions(sf *surface.Surface, exts []string) error {
	for _, ext := range exts {
		switch ext {
		case "harvest":
			for name, sef := range harvestActions {
				sf.Actions[name] = surface.Action{Name: name, Module: "ckanext.harvest.logic.action", SideEffectFree: sef}
			}
		default:
			return fmt.Errorf("ckansim: no extension %q (have: harvest)", ext)
		}
	}
	return nil
}
