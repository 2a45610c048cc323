package ckansim

import (
	"bytes"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestFileActions212 runs CKAN 2.12's file API as a stock site answers it
// with its default configuration (no storage configured: see
// actions_file.go and data/2.12/CHANGES.md): every call gets one of CKAN's
// error envelopes, in CKAN's order (validation, then auth, then storage or
// database), except file_owner_scan's empty list for those who may list.
func TestFileActions212(t *testing.T) {
	s := newSim(t, "2.12")
	const (
		sys  = SysadminToken
		ed   = EditorToken
		anon = ""
	)
	cases := []struct {
		name, token, body string
		status            int
		field, message    string // a Validation Error's field and message, or the error message
	}{
		{"file_show", sys, `{}`, 409, "id", "Missing value"},
		{"file_show", anon, `{}`, 409, "id", "Missing value"},
		{"file_show", sys, `{"id": 3}`, 409, "id", "Must be a Unicode string value"},
		{"file_show", sys, `{"id": "f1"}`, 404, "", "Not found: file"},
		{"file_show", ed, `{"id": "f1"}`, 403, "", "Access denied: Not allowed to read file"},
		{"file_show", anon, `{"id": "f1"}`, 403, "", "Access denied: Not allowed to read file"},
		{"file_owner_scan", sys, `{}`, 200, "", ""},
		{"file_owner_scan", ed, `{}`, 200, "", ""},
		{"file_owner_scan", ed, `{"owner_id": "editor"}`, 200, "", ""},
		{"file_owner_scan", ed, `{"owner_id": "admin"}`, 403, "", "Access denied: Not allowed to list files"},
		{"file_owner_scan", ed, `{"owner_type": "package", "owner_id": "` + seedDataset + `"}`, 403, "", "Access denied: Not allowed to list files"},
		{"file_owner_scan", anon, `{}`, 403, "", "Access denied: Not allowed to list files"},
		{"file_owner_scan", sys, `{"rows": "ten"}`, 409, "rows", "Invalid integer"},
		{"file_owner_scan", sys, `{"sort": "owner"}`, 409, "sort", "Invalid sort field: owner"},
		{"file_owner_scan", sys, `{"sort": [["size", "up"]]}`, 409, "sort", "Invalid sort direction: up"},
		{"file_owner_scan", sys, `{"sort": [["size", "desc"], "name"]}`, 200, "", ""},
		{"file_create", anon, `{}`, 409, "upload", "Missing value"},
		{"file_create", anon, `{"upload": "hello", "name": "a.txt"}`, 403, "", "Access denied: Action file_create requires an authenticated user"},
		{"file_create", ed, `{"upload": "hello", "name": "a.txt"}`, 403, "", "Access denied: Not allowed to manage files"},
		{"file_create", sys, `{"upload": "hello", "name": "a.txt"}`, 409, "storage", "Storage default is not configured"},
		{"file_create", sys, `{"upload": "hello", "storage": "s3"}`, 409, "storage", "Storage s3 is not configured"},
		{"file_register", sys, `{}`, 409, "location", "Missing value"},
		{"file_register", ed, `{"location": "a.txt"}`, 403, "", "Access denied: Not allowed to manage files"},
		{"file_register", sys, `{"location": "a.txt"}`, 409, "storage", "Storage default is not configured"},
		{"file_delete", sys, `{"id": ""}`, 409, "id", "Missing value"},
		{"file_delete", anon, `{"id": "f1"}`, 403, "", "Access denied: Action file_delete requires an authenticated user"},
		{"file_delete", ed, `{"id": "f1"}`, 403, "", "Access denied: Not allowed to delete file"},
		{"file_delete", sys, `{"id": "f1"}`, 404, "", "Not found: file id not found"},
		{"file_rename", sys, `{"id": "f1"}`, 409, "name", "Missing value"},
		{"file_rename", ed, `{"id": "f1", "name": "b.txt"}`, 403, "", "Access denied: Not allowed to edit file"},
		{"file_rename", sys, `{"id": "f1", "name": "b.txt"}`, 404, "", "Not found: file"},
		{"file_pin", sys, `{"id": "f1"}`, 404, "", "Not found: file"},
		{"file_unpin", ed, `{"id": "f1"}`, 403, "", "Access denied: Not allowed to edit file"},
		{"file_unpin", anon, `{"id": "f1"}`, 403, "", "Access denied: Action file_unpin requires an authenticated user"},
		{"file_ownership_transfer", sys, `{"id": "f1"}`, 409, "owner_id", "Missing value"},
		{"file_ownership_transfer", ed, `{"id": "f1", "owner_id": "x", "owner_type": "user"}`, 403, "", "Access denied: File is pinned"},
		{"file_ownership_transfer", sys, `{"id": "f1", "owner_id": "x", "owner_type": "user", "force": "maybe"}`, 404, "", "Not found: file"},
		{"activity_delete", ed, `{}`, 403, "", "Access denied"},
		{"activity_delete_counts", ed, `{}`, 403, "", "Access denied"},
	}
	for _, c := range cases {
		where := c.name + " " + c.body
		w := action(s, c.name, c.token, c.body)
		e := decodeEnvelope(t, w, c.name)
		if w.Code != c.status {
			t.Errorf("%s: %d %s, want %d", where, w.Code, w.Body, c.status)
			continue
		}
		switch {
		case c.status == 200:
			res, _ := e.Result.(map[string]any)
			if c.name == "file_owner_scan" && (res["count"] != float64(0) || len(res["results"].([]any)) != 0) {
				t.Errorf("%s: %v, want no files", where, e.Result)
			}
		case c.field != "":
			if msgs, _ := e.Error[c.field].([]any); len(msgs) != 1 || msgs[0] != c.message {
				t.Errorf("%s: %v, want %s: [%s]", where, e.Error, c.field, c.message)
			}
		case e.Error["message"] != c.message:
			t.Errorf("%s: message %q, want %q", where, e.Error["message"], c.message)
		}
		if got, want := last(s).Write, !s.Surface().Actions[c.name].SideEffectFree; got != want {
			t.Errorf("%s: journal Write=%v, want %v", where, got, want)
		}
	}
}

// TestFileActionsByGET212: file_show and file_owner_scan are
// side_effect_free, so GET runs them; the file writes answer GET with
// CKAN's bare-string 400, as any write action does.
func TestFileActionsByGET212(t *testing.T) {
	s := newSim(t, "2.12")
	w := call(s, http.MethodGet, "/api/3/action/file_show?id=f1", "", "", "")
	if e := decodeEnvelope(t, w, "file_show"); w.Code != 403 || e.Error["message"] != "Access denied: Not allowed to read file" {
		t.Errorf("GET file_show: %d %s", w.Code, w.Body)
	}
	w = call(s, http.MethodGet, "/api/action/file_owner_scan?rows=5", SysadminToken, "", "")
	if decodeEnvelope(t, w, "file_owner_scan"); w.Code != 200 || !strings.Contains(w.Body.String(), `"result": {"count": 0, "results": []}`) {
		t.Errorf("GET file_owner_scan: %d %s", w.Code, w.Body)
	}
	if last(s).Write {
		t.Error("GET file_owner_scan journalled as a write")
	}
	for _, name := range []string{"file_create", "file_register", "file_delete", "file_rename", "file_pin", "file_unpin", "file_ownership_transfer", "activity_delete", "activity_delete_all", "activity_delete_counts"} {
		w := call(s, http.MethodGet, "/api/3/action/"+name, SysadminToken, "", "")
		if w.Code != http.StatusBadRequest || w.Body.String() != writeOnGETRefusal {
			t.Errorf("GET %s: %d %s, want the bare-string 400", name, w.Code, w.Body)
		}
	}
}

// TestFileCreateUpload212: a real multipart upload gets as far as the
// storage, which is not configured.
func TestFileCreateUpload212(t *testing.T) {
	s := newSim(t, "2.12")
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	fw, _ := mw.CreateFormFile("upload", "hello.txt")
	fw.Write([]byte("hello world"))
	mw.Close()
	w := call(s, http.MethodPost, "/api/3/action/file_create", SysadminToken, mw.FormDataContentType(), body.String())
	e := decodeEnvelope(t, w, "file_create")
	if msgs, _ := e.Error["storage"].([]any); w.Code != 409 || len(msgs) != 1 || msgs[0] != "Storage default is not configured" {
		t.Errorf("multipart file_create: %d %s", w.Code, w.Body)
	}
	if !last(s).Write {
		t.Error("file_create not journalled as a write")
	}
}

// TestRoutes212 checks the 2.12 route changes of CHANGES.md.
func TestRoutes212(t *testing.T) {
	s := newSim(t, "2.12")
	for _, path := range []string{"/file/download/f1", "/file/trusted-download/tok", "/file/public-download/public/a/b.txt"} {
		w := call(s, http.MethodGet, path, SysadminToken, "", "")
		if w.Code != http.StatusNotFound || !strings.HasPrefix(w.Header().Get("Content-Type"), "text/html") {
			t.Errorf("GET %s: %d, want CKAN's 404 page (no storage configured)", path, w.Code)
		}
		checkCKANPage(t, path, w.Body.String())
	}
	// api.snippet is gone in 2.12: only the static files route matches.
	if call(s, http.MethodGet, "/api/util/snippet/follow_button.html", "", "", ""); last(s).Endpoint == "api.snippet" {
		t.Error("2.12 still routes /api/util/snippet/")
	}
	if w := call(newSim(t, "2.11"), http.MethodGet, "/api/util/snippet/follow_button.html", "", "", ""); w.Code != http.StatusOK {
		t.Errorf("2.11 snippet: %d", w.Code)
	}

	// /ckan-admin/activities: sysadmins only; its POST deletes activities.
	if w := call(s, http.MethodGet, "/ckan-admin/activities", EditorToken, "", ""); w.Code != http.StatusForbidden {
		t.Errorf("editor GET /ckan-admin/activities: %d, want 403", w.Code)
	}
	if w := call(s, http.MethodGet, "/ckan-admin/activities", SysadminToken, "", ""); w.Code != http.StatusOK || last(s).Write {
		t.Errorf("sysadmin GET /ckan-admin/activities: %d write=%v", w.Code, last(s).Write)
	}
	if w := call(s, http.MethodPost, "/ckan-admin/activities", SysadminToken, "application/x-www-form-urlencoded", "action=delete_all"); w.Code/100 != 3 || !last(s).Write {
		t.Errorf("sysadmin POST /ckan-admin/activities: %d write=%v, want a redirect and a write", w.Code, last(s).Write)
	}

	// GET /datastore/api_info/<resource_id>: a page.
	if w := call(s, http.MethodGet, "/datastore/api_info/"+seedCSV, SysadminToken, "", ""); w.Code != http.StatusOK {
		t.Errorf("GET /datastore/api_info: %d", w.Code)
	}

	// POST /user/<id>/api-tokens/revoke revokes every posted token id.
	e := decodeEnvelope(t, action(s, "api_token_list", SysadminToken, `{"user_id": "editor"}`), "api_token_list")
	if toks, _ := e.Result.([]any); len(toks) != 1 {
		t.Fatalf("editor's seeded tokens: %v", e.Result)
	}
	w := call(s, http.MethodPost, "/user/editor/api-tokens/revoke", EditorToken, "application/x-www-form-urlencoded", "token=no-such-token&token=ckansim-editor-token")
	if w.Code != http.StatusOK || !last(s).Write || last(s).Endpoint != "user.api_tokens_revoke" {
		t.Errorf("POST /user/editor/api-tokens/revoke: %d %+v", w.Code, last(s))
	}
	e = decodeEnvelope(t, action(s, "api_token_list", SysadminToken, `{"user_id": "editor"}`), "api_token_list")
	if toks, _ := e.Result.([]any); len(toks) != 0 {
		t.Errorf("editor's tokens after the revoke: %v", e.Result)
	}
	// The 2.11 per-token rule is gone.
	if call(s, http.MethodPost, "/user/admin/api-tokens/ckansim-admin-token/revoke", SysadminToken, "application/x-www-form-urlencoded", ""); last(s).Endpoint == "user.api_token_revoke" {
		t.Error("2.12 still routes /user/<id>/api-tokens/<jti>/revoke")
	}
	// An anonymous revoke of someone's token is refused.
	s = newSim(t, "2.12")
	if w := call(s, http.MethodPost, "/user/admin/api-tokens/revoke", "", "application/x-www-form-urlencoded", "token=ckansim-admin-token"); w.Code != http.StatusForbidden {
		t.Errorf("anonymous revoke: %d, want 403", w.Code)
	}
}

// TestDatastoreRowCountCache212: CKAN 2.12's datastore_search inserts the
// table's cached row count into _table_stats when it is missing, which
// datastore_create, _upsert and _delete make it (data/2.12/CHANGES.md):
// without an RQ worker to refill it, the next plain search writes, even a
// GET by an anonymous caller; a search with q, filters, distinct or
// include_total=false does not. /datastore/api_info and the DataTables
// view search the same way. 2.11 never writes on a search.
func TestDatastoreRowCountCache212(t *testing.T) {
	search := "/api/3/action/datastore_search?resource_id=" + seedCSV
	for _, v := range []string{"2.12", "2.11"} {
		s := newSim(t, v)
		writes := v == "2.12"
		step := func(what string, want bool, do func() *httptest.ResponseRecorder) {
			t.Helper()
			w := do()
			if w.Code != http.StatusOK {
				t.Fatalf("%s %s: %d %.300s", v, what, w.Code, w.Body)
			}
			if got := last(s).Write; got != want {
				t.Errorf("%s %s: journal Write=%v, want %v", v, what, got, want)
			}
		}
		get := func(path string) func() *httptest.ResponseRecorder {
			return func() *httptest.ResponseRecorder { return call(s, http.MethodGet, path, "", "", "") }
		}
		clear := func() *httptest.ResponseRecorder {
			return action(s, "datastore_create", SysadminToken, `{"resource_id": "`+seedCSV+`"}`)
		}
		step("seeded table, plain search", false, get(search))
		step("datastore_create", true, clear)
		step("search with q", false, get(search+"&q=no2"))
		step("search with filters", false, func() *httptest.ResponseRecorder {
			return action(s, "datastore_search", "", `{"resource_id": "`+seedCSV+`", "filters": {"_id": 1}}`)
		})
		step("search with include_total=false", false, get(search+"&include_total=false"))
		step("first plain search after the write", writes, get(search))
		step("second plain search", false, get(search))
		step("datastore_delete with filters", true, func() *httptest.ResponseRecorder {
			return action(s, "datastore_delete", SysadminToken, `{"resource_id": "`+seedCSV+`", "filters": {"_id": 999999}}`)
		})
		step("plain search after the delete", writes, get(search))
		if v == "2.12" { // api_info is new in 2.12
			step("datastore_upsert", true, func() *httptest.ResponseRecorder {
				return action(s, "datastore_upsert", SysadminToken, `{"resource_id": "`+seedCSV+`", "records": [], "method": "insert"}`)
			})
			step("api_info", true, get("/datastore/api_info/"+seedCSV))
			step("api_info again", false, get("/datastore/api_info/"+seedCSV))
			step("datastore_create", true, clear)
			step("DataTables ajax", true, func() *httptest.ResponseRecorder {
				return call(s, http.MethodPost, "/datatables/ajax/"+seedView, "", "application/x-www-form-urlencoded", "draw=1")
			})
			step("DataTables ajax again", false, func() *httptest.ResponseRecorder {
				return call(s, http.MethodPost, "/datatables/ajax/"+seedView, "", "application/x-www-form-urlencoded", "draw=2")
			})
		}
	}
	s := newSim(t, "2.12")
	if w := call(s, http.MethodGet, "/datastore/api_info/no-such-resource", "", "", ""); w.Code != http.StatusNotFound || last(s).Write {
		t.Errorf("api_info of an unknown resource: %d write=%v", w.Code, last(s).Write)
	}
}
