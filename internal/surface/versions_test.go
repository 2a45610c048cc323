package surface

import (
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden (then review the diff)")

// TestSurface212 checks what CHANGES.md (data/2.12/CHANGES.md) says 2.12
// changed against the parsed data.
func TestSurface212(t *testing.T) {
	s11, s12 := MustLoad("2.11"), MustLoad("2.12")
	if len(s12.Actions) != 168 || len(s12.Routes) != 151 || len(s12.Auth) != 183 {
		t.Fatalf("2.12: %d actions, %d routes, %d auth functions, want 168, 151, 183 (CHANGES.md)", len(s12.Actions), len(s12.Routes), len(s12.Auth))
	}
	var added []string
	for _, name := range s12.ActionNames() {
		if _, ok := s11.Actions[name]; !ok {
			added = append(added, name)
		}
		if a11, ok := s11.Actions[name]; ok && a11.SideEffectFree != s12.Actions[name].SideEffectFree {
			t.Errorf("%s: side_effect_free changed from 2.11, CHANGES.md says none did", name)
		}
	}
	want := []string{"activity_delete", "activity_delete_all", "activity_delete_counts", "file_create", "file_delete",
		"file_owner_scan", "file_ownership_transfer", "file_pin", "file_register", "file_rename", "file_show", "file_unpin"}
	if !slices.Equal(added, want) {
		t.Errorf("actions added in 2.12: %v, want %v", added, want)
	}
	for _, name := range added {
		sef := name == "file_show" || name == "file_owner_scan"
		if a := s12.Actions[name]; a.SideEffectFree != sef {
			t.Errorf("2.12 %s: side_effect_free %v, want %v", name, a.SideEffectFree, sef)
		}
		if _, ok := s12.Auth[name]; !ok {
			t.Errorf("2.12 %s: no auth function", name)
		}
	}
	for name, anon := range map[string]bool{"file_show": true, "file_owner_scan": true, "file_create": false, "permission_read_file": true, "permission_manage_files": false} {
		if f, ok := s12.Auth[name]; !ok || f.AllowAnonymousAccess != anon {
			t.Errorf("2.12 auth %s: %+v, want anonymous access %v", name, f, anon)
		}
	}
	cases := []struct {
		version, method, path, endpoint string
		methodOK                        bool
	}{
		{"2.12", "GET", "/file/download/abc", "file.download", true},
		{"2.12", "GET", "/file/trusted-download/tok", "file.trusted_download", true},
		{"2.12", "GET", "/file/public-download/public/a/b.txt", "file.public_download", true},
		{"2.12", "GET", "/datastore/api_info/abc", "datastore.api_info", true},
		{"2.12", "POST", "/ckan-admin/activities", "activity.admin_activities", true},
		{"2.12", "POST", "/user/editor/api-tokens/revoke", "user.api_tokens_revoke", true},
		{"2.12", "GET", "/testing/dashboard", "activity.dashboard_testing", true},
		// Removed in 2.12: only the static files route is left to match.
		{"2.12", "GET", "/api/util/snippet/x.html", "static", true},
		{"2.11", "GET", "/api/util/snippet/x.html", "api.snippet", true},
		{"2.12", "POST", "/user/editor/api-tokens/jti/revoke", "static", false},
		{"2.11", "POST", "/user/editor/api-tokens/jti/revoke", "user.api_token_revoke", true},
		{"2.11", "GET", "/file/download/abc", "static", true},
	}
	for _, c := range cases {
		r, _, ok, found := MustLoad(c.version).Lookup(c.method, c.path)
		if !found || r.Endpoint != c.endpoint || ok != c.methodOK {
			t.Errorf("%s %s %s: %q methodOK=%v, want %q methodOK=%v", c.version, c.method, c.path, r.Endpoint, ok, c.endpoint, c.methodOK)
		}
	}
	if b, err := VersionFile("2.12", "CHANGES.md"); err != nil || !strings.Contains(string(b), "2.12") {
		t.Errorf("VersionFile(2.12, CHANGES.md): %v", err)
	}
	if b, err := VersionFile("", "actions.tsv"); err != nil || !strings.HasPrefix(string(b), "# CKAN 2.11.5;") {
		t.Errorf("VersionFile(\"\", actions.tsv) is not 2.11's: %v", err)
	}
	if _, err := VersionFile("2.9", "actions.tsv"); err == nil {
		t.Error("VersionFile(2.9) should fail")
	}
}

func all() []*Surface {
	var ss []*Surface
	for _, v := range Versions {
		ss = append(ss, MustLoad(v))
	}
	return ss
}

func TestStrictest(t *testing.T) {
	ss := all()
	st := Strictest(ss...)
	if st.Version != "strictest of 2.10, 2.11, 2.12" {
		t.Errorf("Version %q", st.Version)
	}
	if Strictest(ss[2], ss[0], ss[1]).Version != st.Version {
		t.Error("Version depends on the argument order")
	}
	// Every action of every version, against the rule: read iff read in all.
	for _, s := range ss {
		for name := range s.Actions {
			want := true
			for _, o := range ss {
				want = want && o.Actions[name].SideEffectFree
			}
			a, ok := st.Actions[name]
			if !ok || a.SideEffectFree != want || a.Name != name {
				t.Errorf("%s: in result %v, side_effect_free %v, want %v", name, ok, a.SideEffectFree, want)
			}
		}
	}
	n := 0
	for name := range st.Actions {
		found := false
		for _, s := range ss {
			_, ok := s.Actions[name]
			found = found || ok
		}
		if !found {
			t.Errorf("%s in the result but in no version", name)
		}
		n++
	}
	for name, sef := range map[string]bool{"file_show": false, "file_owner_scan": false, "file_create": false, "site_read": false,
		"datastore_records_delete": false, "package_show": true, "package_search": true, "package_create": false} {
		if a, ok := st.Actions[name]; !ok || a.SideEffectFree != sef {
			t.Errorf("strictest %s: %+v (present %v), want side_effect_free %v", name, a, ok, sef)
		}
	}
	if st.Actions["file_show"].Module != "ckan.logic.action.file" {
		t.Errorf("file_show's module %q: want the newest version's", st.Actions["file_show"].Module)
	}
	// Routes: the union, deduplicated.
	seen := map[string]bool{}
	for _, r := range st.Routes {
		key := r.Rule + " " + strings.Join(r.Methods, ",") + " " + r.Endpoint
		if seen[key] {
			t.Errorf("route %s twice", key)
		}
		seen[key] = true
		if _, ok := r.Match(r.Example()); !ok {
			t.Errorf("route %s lost its parsed rule", key)
		}
	}
	for _, s := range ss {
		for _, r := range s.Routes {
			if !seen[r.Rule+" "+strings.Join(r.Methods, ",")+" "+r.Endpoint] {
				t.Errorf("%s route %s %v missing from the strictest", s.Version, r.Rule, r.Methods)
			}
		}
		for name := range s.Auth {
			if _, ok := st.Auth[name]; !ok {
				t.Errorf("%s auth %s missing from the strictest", s.Version, name)
			}
		}
	}
	// Both follow rules of 2.10 (GET,POST) and 2.11 (POST) are kept.
	var follow []string
	for _, r := range st.Routes {
		if r.Rule == "/group/follow/<id>" {
			follow = append(follow, strings.Join(r.Methods, ","))
		}
	}
	if len(follow) != 2 {
		t.Errorf("/group/follow/<id> rules in the strictest: %v, want 2.10's and 2.11's", follow)
	}
	// The inputs are untouched.
	if !MustLoad("2.12").Actions["file_show"].SideEffectFree || !ss[0].Actions["file_show"].SideEffectFree {
		t.Error("Strictest changed its input")
	}
	if Strictest() != nil || Strictest(nil) != nil {
		t.Error("Strictest of nothing should be nil")
	}
	if one := Strictest(ss[0]); one.Version != "strictest of 2.12" || len(one.Actions) != len(ss[0].Actions) || len(one.Routes) != len(ss[0].Routes) {
		t.Errorf("Strictest of one: %s, %d actions, %d routes", one.Version, len(one.Actions), len(one.Routes))
	}
}

func TestMatch(t *testing.T) {
	cases := []struct {
		ckan, want string
		exact      bool
	}{
		{"2.12.0", "2.12", true},
		{"2.12.0b0", "2.12", true},
		{"2.12", "2.12", true},
		{"2.12.3", "2.12", true},
		{"2.11.5", "2.11", true},
		{"2.11.0rc1", "2.11", true},
		{"2.10.10", "2.10", true},
		{" 2.10.1 ", "2.10", true},
		{"2.10.0+local", "2.10", true},
		{"2.13.1", "2.12", false},
		{"2.20.0", "2.12", false},
		{"3.0.0", "2.12", false},
		{"2.9.9", "2.10", false},
		{"2.8", "2.10", false},
		{"1.8.2", "2.10", false},
		{"", "", false},
		{"2", "", false},
		{"latest", "", false},
		{"v2.11.5", "", false},
		{"2.x", "", false},
		{"2.", "", false},
		{".11", "", false},
		{"+2.11", "", false},
		{"2.11/5", "", false},
	}
	for _, c := range cases {
		got, exact := Match(c.ckan)
		if got != c.want || exact != c.exact {
			t.Errorf("Match(%q) = %q, %v; want %q, %v", c.ckan, got, exact, c.want, c.exact)
		}
		if got != "" {
			if _, err := Load(got); err != nil {
				t.Errorf("Match(%q) = %q, which does not load: %v", c.ckan, got, err)
			}
		}
	}
}

// TestActionsGolden lists every action of every version with its class in
// each version and in the strictest combination, against
// testdata/actions.golden: a new surface shows up here as a reviewable diff.
func TestActionsGolden(t *testing.T) {
	ss := all()
	st := Strictest(ss...)
	header := "# Generated with -update, then reviewed. read: side_effect_free; write: not; -: no such action.\n# action"
	for _, s := range ss {
		header += "\t" + s.Version
	}
	header += "\tstrictest\n"
	var rows []string
	for _, name := range st.ActionNames() {
		row := []string{name}
		for _, s := range append(ss, st) {
			a, ok := s.Actions[name]
			switch {
			case !ok:
				row = append(row, "-")
			case a.SideEffectFree:
				row = append(row, "read")
			default:
				row = append(row, "write")
			}
		}
		rows = append(rows, strings.Join(row, "\t"))
	}
	got := header + strings.Join(rows, "\n") + "\n"
	path := filepath.Join("testdata", "actions.golden")
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if string(want) != got {
		wl, gl := strings.Split(string(want), "\n"), strings.Split(got, "\n")
		for i := 0; i < len(wl) || i < len(gl); i++ {
			var w, g string
			if i < len(wl) {
				w = wl[i]
			}
			if i < len(gl) {
				g = gl[i]
			}
			if w != g {
				t.Errorf("%s line %d:\n file %s\n got  %s", path, i+1, w, g)
			}
		}
	}
}
