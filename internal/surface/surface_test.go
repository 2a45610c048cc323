package surface

import "testing"

func TestLoadEveryVersion(t *testing.T) {
	for _, v := range Versions {
		s, err := Load(v)
		if err != nil {
			t.Fatal(err)
		}
		if len(s.Actions) < 150 || len(s.Routes) < 130 || len(s.Auth) < 150 {
			t.Fatalf("%s: %d actions, %d routes, %d auth functions: data files truncated?", v, len(s.Actions), len(s.Routes), len(s.Auth))
		}
		if !s.Actions["package_show"].SideEffectFree || s.Actions["package_create"].SideEffectFree {
			t.Fatalf("%s: side_effect_free flags misread", v)
		}
	}
	if _, err := Load("2.8"); err == nil {
		t.Fatal("Load(2.8) should fail: no data")
	}
	if s := MustLoad(""); s.Version != "2.11" {
		t.Fatalf(`Load("") = %s, want 2.11 (callers rely on it)`, s.Version)
	}
}

func TestLookup(t *testing.T) {
	s := MustLoad("2.11")
	cases := []struct {
		method, path, endpoint string
		methodOK               bool
		vars                   map[string]string
	}{
		{"GET", "/", "home.index", true, nil},
		{"GET", "/dataset/", "dataset.search", true, nil},
		{"GET", "/dataset/abc", "dataset.read", true, map[string]string{"id": "abc"}},
		{"GET", "/dataset/edit/abc", "dataset.edit", true, map[string]string{"id": "abc"}},
		{"POST", "/dataset/edit/abc", "dataset.edit", true, nil},
		{"GET", "/api/3/action/package_show", "api.action", true, map[string]string{"ver": "3", "logic_function": "package_show"}},
		{"POST", "/api/action/package_create", "api.action", true, map[string]string{"logic_function": "package_create"}},
		{"GET", "/api/03/action/x", "api.action", true, map[string]string{"ver": "03"}},
		{"GET", "/api/2/util/tag/autocomplete", "api.tag_autocomplete", true, nil},
		{"GET", "/base/css/main.css", "static", true, map[string]string{"filename": "base/css/main.css"}},
		{"POST", "/dataset/follow/abc", "dataset.follow", true, nil},
		// As in Werkzeug, a less specific rule that accepts the method wins
		// over a more specific one that does not: GET on a POST-only route
		// falls through to the static files route (and so to a 404).
		{"GET", "/dataset/follow/abc", "static", true, nil},
		{"DELETE", "/dataset/follow/abc", "dataset.follow", false, nil},
		{"HEAD", "/dataset/abc", "dataset.read", true, nil},
		{"DELETE", "/dataset/abc", "dataset.read", false, nil},
		{"GET", "/zh_CN/dataset", "home.redirect_locale", true, map[string]string{"path": "dataset"}},
	}
	for _, c := range cases {
		r, vars, ok, found := s.Lookup(c.method, c.path)
		if !found || r.Endpoint != c.endpoint || ok != c.methodOK {
			t.Errorf("%s %s: got %q methodOK=%v found=%v, want %q methodOK=%v", c.method, c.path, r.Endpoint, ok, found, c.endpoint, c.methodOK)
			continue
		}
		for k, v := range c.vars {
			if vars[k] != v {
				t.Errorf("%s %s: var %s = %q, want %q", c.method, c.path, k, vars[k], v)
			}
		}
	}
	if r, _, _, _ := s.Lookup("GET", "/api/4/action/x"); r.Endpoint != "static" {
		t.Errorf("/api/4/action/x routed to %q: ver is 3 only, so only the static route matches", r.Endpoint)
	}
}

func TestEveryRuleMatchesAnExample(t *testing.T) {
	for _, v := range Versions {
		s := MustLoad(v)
		for _, r := range s.Routes {
			p := r.Example()
			if _, ok := r.Match(p); !ok {
				t.Errorf("%s: rule %q does not match its own example %q", v, r.Rule, p)
			}
		}
	}
}
