package ckansim

import (
	"net/http"
	"strings"
	"testing"
)

// TestEveryActionAnswers walks every action of the surface, in both CKAN
// versions, with GET, HEAD and POST, as a sysadmin and anonymously: each
// gets CKAN's envelope (or, for GET on a write action, CKAN's bare-string
// 400), and the journal marks as writes exactly the runs of actions that
// are not side_effect_free.
func TestEveryActionAnswers(t *testing.T) {
	for _, v := range versions() {
		t.Run(v, func(t *testing.T) {
			s := newSim(t, v)
			for _, name := range s.Surface().ActionNames() {
				act := s.Surface().Actions[name]

				w := call(s, http.MethodGet, "/api/3/action/"+name, SysadminToken, "", "")
				if act.SideEffectFree {
					decodeEnvelope(t, w, name)
				} else if w.Code != http.StatusBadRequest || w.Body.String() != writeOnGETRefusal {
					t.Errorf("GET %s: %d %s, want the bare-string 400", name, w.Code, w.Body)
				}
				if e := last(s); e.Write || e.Endpoint != "api.action" || e.Action != name {
					t.Errorf("GET %s: journal %+v, want api.action %s and no write", name, e, name)
				}

				// HEAD is not GET to CKAN: the action runs, writes included.
				call(s, http.MethodHead, "/api/3/action/"+name, SysadminToken, "", "")
				if e := last(s); e.Write != !act.SideEffectFree {
					t.Errorf("HEAD %s: Write=%v, want %v", name, e.Write, !act.SideEffectFree)
				}

				decodeEnvelope(t, action(s, name, SysadminToken, `{}`), name)
				if e := last(s); e.Write != !act.SideEffectFree {
					t.Errorf("POST %s: Write=%v, want %v", name, e.Write, !act.SideEffectFree)
				}

				_, onlySysadmins := sysadminOnly[name]
				env := decodeEnvelope(t, action(s, name, EditorToken, `{}`), name)
				if onlySysadmins && env.Error["__type"] != "Authorization Error" {
					t.Errorf("editor's %s: %v, want an Authorization Error", name, env.Error)
				}
				env = decodeEnvelope(t, action(s, name, "", `{}`), name)
				if onlySysadmins && env.Error["__type"] != "Authorization Error" {
					t.Errorf("anonymous %s: %v, want an Authorization Error", name, env.Error)
				}
				if e := last(s); e.Write != !act.SideEffectFree {
					t.Errorf("anonymous POST %s: Write=%v, want %v (refused runs write too)", name, e.Write, !act.SideEffectFree)
				}
			}
		})
	}
}

// TestActionSetFollowsVersion checks the answered actions come from the
// surface: site_read exists in 2.10 only, datastore_records_delete from
// 2.11, the file API from 2.12.
func TestActionSetFollowsVersion(t *testing.T) {
	cases := []struct {
		version, action string
		known           bool
	}{
		{"2.10", "site_read", true},
		{"2.11", "site_read", false},
		{"2.11", "datastore_records_delete", true},
		{"2.10", "datastore_records_delete", false},
		{"2.12", "file_show", true},
		{"2.12", "file_create", true},
		{"2.12", "activity_delete_counts", true},
		{"2.11", "file_show", false},
		{"2.11", "activity_delete", false},
		{"2.12", "site_read", false},
	}
	for _, c := range cases {
		s := newSim(t, c.version)
		w := action(s, c.action, SysadminToken, `{}`)
		unknown := w.Code == http.StatusBadRequest && w.Body.String() == `"Bad request - Action name not known: `+c.action+`"`
		if unknown == c.known {
			t.Errorf("CKAN %s %s: %d %s, known=%v", c.version, c.action, w.Code, w.Body, c.known)
		}
	}
}

func TestStatusShowMatchesSurface(t *testing.T) {
	for v, want := range map[string]string{"2.12": "2.12.0", "2.11": "2.11.5", "2.10": "2.10.10"} {
		s := newSim(t, v)
		e := decodeEnvelope(t, call(s, http.MethodGet, "/api/3/action/status_show", "", "", ""), "status_show")
		res := e.Result.(map[string]any)
		if res["ckan_version"] != want || res["site_title"] != "CKAN Demo" || res["site_url"] != "http://"+testHost {
			t.Errorf("%s: status_show %v", v, res)
		}
		ext := res["extensions"].([]any)
		if len(ext) != 5 || ext[0] != "activity" || ext[1] != "datastore" {
			t.Errorf("%s: extensions %v, want the plugins of the surface header", v, ext)
		}
	}
}

// TestEnvelopeBytes compares an answer byte for byte with the one recorded
// from a real CKAN 2.11 in the surface's jobs.txt.
func TestEnvelopeBytes(t *testing.T) {
	s := newSim(t, "2.11")
	want := `{"help": "http://127.0.0.1:5000/api/3/action/help_show?name=job_list", "error": {"__type": "Authorization Error", "message": "Access denied"}, "success": false}`
	for _, token := range []string{"", EditorToken} {
		w := action(s, "job_list", token, `{}`)
		if w.Code != http.StatusForbidden || w.Body.String() != want {
			t.Errorf("job_list with token %q: %d %s\nwant 403 %s", token, w.Code, w.Body, want)
		}
	}
	e := decodeEnvelope(t, action(s, "job_list", SysadminToken, `{}`), "job_list")
	if list, ok := e.Result.([]any); !ok || len(list) != 0 {
		t.Errorf("job_list as sysadmin: %v, want []", e.Result)
	}
}

func TestRequestData(t *testing.T) {
	s := newSim(t, "2.11")
	cases := []struct {
		name, method, path, ctype, body string
		status                          int
		want                            string // substring of the body
	}{
		{"query string on GET", "GET", "/api/3/action/package_show?id=" + seedDataset, "", "", 200, `"name": "air-quality-2024"`},
		{"legacy /api/action path", "GET", "/api/action/package_show?id=" + seedDataset, "", "", 200, `"success": true`},
		{"int converter takes 03", "GET", "/api/03/action/package_show?id=" + seedDataset, "", "", 200, `"success": true`},
		{"locale prefix", "GET", "/fr/api/3/action/package_show?id=" + seedDataset, "", "", 200, `"success": true`},
		{"form fields", "POST", "/api/3/action/package_show", "application/x-www-form-urlencoded", "id=" + seedDataset, 200, `"success": true`},
		{"JSON as the one form key", "POST", "/api/3/action/package_show", "application/x-www-form-urlencoded", `{"id": "air-quality-2024"}`, 200, `"success": true`},
		{"bad JSON", "POST", "/api/3/action/package_show", "application/json", `{"id": `, 400,
			`"Bad request - JSON Error: Error decoding JSON data. Error: <BadRequest '400: Bad Request'> JSON data extracted from the request: {}"`},
		{"JSON that is not a dictionary", "POST", "/api/3/action/package_show", "application/json", `[1, "a"]`, 400,
			`"Bad request - JSON Error: Request data JSON decoded to [1, 'a'] but it needs to be a dictionary."`},
		{"unknown action", "POST", "/api/3/action/no_such_action", "application/json", `{}`, 400, `"Bad request - Action name not known: no_such_action"`},
		{"2.11 refuses a non-JSON body", "POST", "/api/3/action/package_show", "text/plain", `{"id": "x"}`, 415, `415 Unsupported Media Type`},
		{"JSONP", "GET", "/api/3/action/status_show?callback=cb", "", "", 200, `cb({"help": `},
	}
	for _, c := range cases {
		w := call(s, c.method, c.path, "", c.ctype, c.body)
		if w.Code != c.status || !strings.Contains(w.Body.String(), c.want) {
			t.Errorf("%s: %d %.300s\nwant %d containing %s", c.name, w.Code, w.Body, c.status, c.want)
		}
	}
	// CKAN 2.10 (Werkzeug 2.0) reads a non-JSON body as None instead.
	w := call(newSim(t, "2.10"), "POST", "/api/3/action/package_show", "", "text/plain", `{"id": "x"}`)
	if want := `"Bad request - JSON Error: Request data JSON decoded to None but it needs to be a dictionary."`; w.Code != 400 || w.Body.String() != want {
		t.Errorf("2.10 text/plain body: %d %s, want 400 %s", w.Code, w.Body, want)
	}
}

// TestTokens checks where each version reads the API token from.
func TestTokens(t *testing.T) {
	cases := []struct {
		version, header, value string
		sysadmin               bool // else anonymous: user_show without id is Not Found
	}{
		{"2.11", "Authorization", SysadminToken, true},
		{"2.11", "Authorization", "Bearer " + SysadminToken, false},
		{"2.11", "X-CKAN-API-Key", SysadminToken, false},
		{"2.11", "Authorization", "not-a-token", false},
		{"2.10", "Authorization", SysadminToken, true},
		{"2.10", "X-CKAN-API-Key", SysadminToken, true},
		{"2.10", "X-CKAN-API-Key", "not-a-token", false},
	}
	for _, c := range cases {
		s := newSim(t, c.version)
		req := newRequest("POST", "/api/3/action/user_show", `{}`)
		req.Header.Set(c.header, c.value)
		w := serveRequest(s, req)
		e := decodeEnvelope(t, w, "user_show")
		if c.sysadmin {
			res, _ := e.Result.(map[string]any)
			if res["name"] != "admin" || res["sysadmin"] != true {
				t.Errorf("%s %s: %v, want admin, sysadmin", c.version, c.header, e.Result)
			}
		} else if w.Code != http.StatusNotFound || e.Error["message"] != "Not found" {
			t.Errorf("%s %s %.20q: %d %v, want anonymous (404 Not found)", c.version, c.header, c.value, w.Code, e.Error)
		}
	}
	s := newSim(t, "2.11")
	e := decodeEnvelope(t, action(s, "user_show", EditorToken, `{}`), "user_show")
	if res := e.Result.(map[string]any); res["name"] != "editor" || res["sysadmin"] != false || res["email"] != "editor@example.org" {
		t.Errorf("editor's user_show: %v", res)
	}
	e = decodeEnvelope(t, action(s, "user_show", EditorToken, `{"id": "admin"}`), "user_show")
	if _, shown := e.Result.(map[string]any)["email"]; shown {
		t.Errorf("editor sees admin's e-mail: %v", e.Result)
	}
}

func TestPackageLifecycle(t *testing.T) {
	s := newSim(t, "2.11")
	create := `{"name": "noise-map", "title": "Noise Map", "owner_org": "demo-org", "tags": [{"name": "noise"}], "resources": [{"url": "http://x.example/n.csv", "format": "CSV"}]}`

	// The editor may create in demo-org, not in city-council.
	e := decodeEnvelope(t, action(s, "package_create", EditorToken, strings.Replace(create, "demo-org", "city-council", 1)), "package_create")
	if e.Error["__type"] != "Authorization Error" || e.Error["message"] != "Access denied: User editor not authorized to add dataset to this organization" {
		t.Errorf("editor in city-council: %v", e.Error)
	}
	e = decodeEnvelope(t, action(s, "package_create", "", create), "package_create")
	if e.Error["message"] != "Access denied: User  not authorized to create packages" {
		t.Errorf("anonymous package_create: %v", e.Error)
	}
	e = decodeEnvelope(t, action(s, "package_create", EditorToken, create), "package_create")
	pkg, _ := e.Result.(map[string]any)
	if pkg["name"] != "noise-map" || pkg["num_resources"] != 1.0 || pkg["state"] != "active" {
		t.Fatalf("package_create: %v %v", e.Error, e.Result)
	}

	// Field errors, as CKAN's Validation Error shows them.
	e = decodeEnvelope(t, action(s, "package_create", EditorToken, create), "package_create")
	if got := e.Error["name"]; e.Error["__type"] != "Validation Error" || len(got.([]any)) != 1 || got.([]any)[0] != "That URL is already in use." {
		t.Errorf("duplicate name: %v", e.Error)
	}
	e = decodeEnvelope(t, action(s, "package_create", SysadminToken, `{"title": "x"}`), "package_create")
	if got, _ := e.Error["name"].([]any); len(got) != 1 || got[0] != "Missing value" {
		t.Errorf("missing name: %v", e.Error)
	}
	e = decodeEnvelope(t, action(s, "package_update", SysadminToken, `{}`), "package_update")
	if e.Error["id"] != "Missing value" {
		t.Errorf("package_update without id: %v", e.Error)
	}

	e = decodeEnvelope(t, action(s, "package_patch", EditorToken, `{"id": "noise-map", "notes": "Updated"}`), "package_patch")
	if res := e.Result.(map[string]any); res["notes"] != "Updated" || res["title"] != "Noise Map" {
		t.Errorf("package_patch: %v", e.Result)
	}
	e = decodeEnvelope(t, action(s, "package_search", "", `{"q": "noise", "fq": "organization:demo-org", "facet.field": ["tags"]}`), "package_search")
	res := e.Result.(map[string]any)
	if res["count"] != 1.0 || res["facets"].(map[string]any)["tags"].(map[string]any)["noise"] != 1.0 {
		t.Errorf("package_search: %v", res)
	}
	for _, key := range []string{"count", "results", "facets", "search_facets", "sort"} {
		if _, ok := res[key]; !ok {
			t.Errorf("package_search result has no %q", key)
		}
	}

	if w := action(s, "package_delete", EditorToken, `{"id": "noise-map"}`); w.Code != 200 {
		t.Fatalf("package_delete: %d %s", w.Code, w.Body)
	}
	e = decodeEnvelope(t, action(s, "package_list", "", `{}`), "package_list")
	for _, n := range e.Result.([]any) {
		if n == "noise-map" || n == seedPrivate {
			t.Errorf("package_list lists %v", n)
		}
	}
	e = decodeEnvelope(t, action(s, "package_show", SysadminToken, `{"id": "noise-map"}`), "package_show")
	if e.Result.(map[string]any)["state"] != "deleted" {
		t.Errorf("deleted dataset: %v", e.Result)
	}
	e = decodeEnvelope(t, action(s, "package_show", "", `{"id": "no-such-dataset"}`), "package_show")
	if e.Error["__type"] != "Not Found Error" || e.Error["message"] != "Not found" {
		t.Errorf("unknown dataset: %v", e.Error)
	}
	e = decodeEnvelope(t, action(s, "package_show", EditorToken, `{"id": "`+seedPrivate+`"}`), "package_show")
	if e.Error["__type"] != "Authorization Error" {
		t.Errorf("editor reads city-council's private dataset: %v", e)
	}
}

func TestDatastore(t *testing.T) {
	s := newSim(t, "2.11")
	e := decodeEnvelope(t, action(s, "datastore_search", "", `{"resource_id": "`+seedCSV+`", "filters": {"station": "Central"}, "sort": "pm25 desc"}`), "datastore_search")
	res := e.Result.(map[string]any)
	recs := res["records"].([]any)
	if res["total"] != 2.0 || len(recs) != 2 || recs[0].(map[string]any)["pm25"] != 15.1 {
		t.Fatalf("datastore_search: %v", res)
	}
	upsert := `{"resource_id": "` + seedCSV + `", "records": [{"station": "Central", "date": "2024-01-01", "pm25": 99}, {"station": "Dock", "date": "2024-01-01", "pm25": 1}]}`
	if e := decodeEnvelope(t, action(s, "datastore_upsert", "", upsert), "datastore_upsert"); e.Error["__type"] != "Authorization Error" {
		t.Errorf("anonymous upsert: %v", e)
	}
	decodeEnvelope(t, action(s, "datastore_upsert", EditorToken, upsert), "datastore_upsert")
	e = decodeEnvelope(t, action(s, "datastore_info", "", `{"id": "`+seedCSV+`"}`), "datastore_info")
	if e.Result.(map[string]any)["meta"].(map[string]any)["count"] != 6.0 {
		t.Errorf("datastore_info after upsert: %v", e.Result)
	}
	decodeEnvelope(t, action(s, "datastore_create", EditorToken, `{"resource_id": "`+seedCSV+`", "records": [{"station": "Zoo", "date": "2024-02-01"}]}`), "datastore_create")
	decodeEnvelope(t, action(s, "datastore_delete", EditorToken, `{"resource_id": "`+seedCSV+`", "filters": {"station": "Zoo"}}`), "datastore_delete")
	decodeEnvelope(t, action(s, "datastore_delete", EditorToken, `{"resource_id": "`+seedCSV+`"}`), "datastore_delete")
	e = decodeEnvelope(t, action(s, "datastore_search", "", `{"resource_id": "`+seedCSV+`"}`), "datastore_search")
	if e.Error["message"] != `Not found: Resource "`+seedCSV+`" was not found.` {
		t.Errorf("search after delete: %v", e.Error)
	}
}
