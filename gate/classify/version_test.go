package classify

import (
	"net/url"
	"slices"
	"testing"

	"github.com/ckanops/ckanops/internal/surface"
)

// versionClassifier builds a classifier with the default policy.
func versionClassifier(t *testing.T, s *surface.Surface) *Classifier {
	t.Helper()
	c, err := New(s, Policy{})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// actionDecision classifies a call of an action with no headers.
func actionDecision(c *Classifier, method, path string) Decision {
	return c.Classify(method, nil, &url.URL{Path: path})
}

// actionPaths are the spellings of an action call each test tries.
func actionPaths(name string) []string {
	return []string{"/api/3/action/" + name, "/api/action/" + name, "/fr/api/3/action/" + name}
}

// TestCKAN212Actions: with CKAN 2.12's surface, its new reads (file_show,
// file_owner_scan) pass by GET and POST, and every action that 2.12's
// actions.tsv does not mark side_effect_free is refused, the new file and
// activity writes among them.
func TestCKAN212Actions(t *testing.T) {
	s := surface.MustLoad("2.12")
	c := versionClassifier(t, s)
	for _, name := range []string{"file_show", "file_owner_scan", "package_show"} {
		if !s.Actions[name].SideEffectFree {
			t.Fatalf("2.12's data does not mark %s side_effect_free", name)
		}
		for _, path := range actionPaths(name) {
			for _, m := range []string{"GET", "POST", "HEAD"} {
				if d := actionDecision(c, m, path); d.Class != Read || d.Action != name {
					t.Errorf("CKAN 2.12 %s %s: %v (%s), want read", m, path, d.Class, d.Reason)
				}
			}
		}
	}
	var writes []string
	for _, name := range s.ActionNames() {
		if s.Actions[name].SideEffectFree {
			continue
		}
		writes = append(writes, name)
		for _, path := range actionPaths(name) {
			for _, m := range []string{"GET", "POST", "HEAD"} {
				if d := actionDecision(c, m, path); d.Pass() || d.Class != Write {
					t.Errorf("CKAN 2.12 %s %s: %v (%s), want write", m, path, d.Class, d.Reason)
				}
			}
		}
	}
	for _, name := range []string{"file_create", "file_register", "file_delete", "file_rename", "file_pin", "file_unpin",
		"file_ownership_transfer", "activity_delete", "activity_delete_all", "activity_delete_counts"} {
		if !slices.Contains(writes, name) {
			t.Errorf("%s is not among 2.12's writes", name)
		}
		if d := actionDecision(c, "POST", "/api/3/action/"+name); d.Reason != "action "+name+" is not side_effect_free" {
			t.Errorf("POST %s: reason %q", name, d.Reason)
		}
	}
	// The same actions are unknown, so writes, to 2.11's classifier.
	c11 := versionClassifier(t, surface.MustLoad("2.11"))
	for _, name := range []string{"file_show", "file_owner_scan"} {
		if d := actionDecision(c11, "GET", "/api/3/action/"+name); d.Pass() || d.Reason != "unknown action "+name {
			t.Errorf("CKAN 2.11 GET %s: %v (%s), want a write as an unknown action", name, d.Class, d.Reason)
		}
	}
}

func allSurfaces() []*surface.Surface {
	var ss []*surface.Surface
	for _, v := range surface.Versions {
		ss = append(ss, surface.MustLoad(v))
	}
	return ss
}

// TestStrictestSurface: file_show, a read in 2.12 only, is refused by the
// classifier of the strictest combination, while package_show, a read in
// every version, passes.
func TestStrictestSurface(t *testing.T) {
	ss := allSurfaces()
	if len(ss) < 3 {
		t.Fatalf("embedded versions %v: want at least 2.10, 2.11 and 2.12", surface.Versions)
	}
	c := versionClassifier(t, surface.Strictest(ss...))
	for _, path := range actionPaths("file_show") {
		for _, m := range []string{"GET", "POST"} {
			if d := actionDecision(c, m, path); d.Pass() {
				t.Errorf("strictest %s %s: %v (%s), want refused (unknown in 2.10 and 2.11)", m, path, d.Class, d.Reason)
			}
		}
	}
	for _, path := range actionPaths("package_show") {
		for _, m := range []string{"GET", "POST"} {
			if d := actionDecision(c, m, path); d.Class != Read {
				t.Errorf("strictest %s %s: %v (%s), want read", m, path, d.Class, d.Reason)
			}
		}
	}
}

// TestStrictestEveryAction classifies every action of every version with
// the strictest classifier: a read if and only if it is side_effect_free
// in every version (and not get_site_user, a write by default).
func TestStrictestEveryAction(t *testing.T) {
	ss := allSurfaces()
	c := versionClassifier(t, surface.Strictest(ss...))
	own := map[string]*Classifier{}
	names := map[string]bool{}
	for _, s := range ss {
		own[s.Version] = versionClassifier(t, s)
		for name := range s.Actions {
			names[name] = true
		}
	}
	if len(names) == 0 {
		t.Fatal("no actions")
	}
	reads := 0
	for name := range names {
		read := name != "get_site_user"
		for _, s := range ss {
			read = read && s.Actions[name].SideEffectFree
		}
		want := Write
		if read {
			want = Read
			reads++
		}
		for _, m := range []string{"GET", "HEAD", "POST"} {
			if d := actionDecision(c, m, "/api/3/action/"+name); d.Class != want {
				t.Errorf("strictest %s %s: %v (%s), want %v", m, name, d.Class, d.Reason, want)
			}
		}
		// Each version's own classifier agrees wherever the strictest
		// says read.
		for _, s := range ss {
			if d := actionDecision(own[s.Version], "GET", "/api/3/action/"+name); read && d.Class != Read {
				t.Errorf("CKAN %s GET %s: %v, but the strictest reads it", s.Version, name, d.Class)
			}
		}
	}
	if reads == 0 {
		t.Error("the strictest classifier reads nothing")
	}
}
