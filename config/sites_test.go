package config

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestLoadSitesFull(t *testing.T) {
	s, warns, err := LoadSites("testdata/sites_full.toml")
	if err != nil {
		t.Fatal(err)
	}
	if len(warns) != 0 {
		t.Errorf("warnings: %v", warns)
	}
	file := "testdata/sites_full.toml"
	dir, _ := filepath.Abs("testdata")
	want := &Sites{
		Path:     file,
		Defaults: ConsoleDefaults{Refresh: dur(10 * time.Second), Timeout: dur(8 * time.Second)},
		Serve:    defaultServe(dir), // no [serve]: the defaults, Present false
		Sites: []Site{
			{Name: "prod", URL: "https://data.example.org", TokenFile: "/etc/ckanops/prod.token",
				Timeout: dur(3 * time.Second), CKANAPIKeyHeader: true, file: file},
			{Name: "staging-2", URL: "http://127.0.0.1:8080", TokenEnv: "CKANOPS_STAGING_TOKEN",
				Timeout: dur(8 * time.Second), file: file}, // console.timeout
		},
	}
	if !reflect.DeepEqual(s, want) {
		t.Errorf("got  %#v\nwant %#v", s, want)
	}
}

func TestLoadSitesDefaults(t *testing.T) {
	s, _, err := LoadSites("testdata/sites_minimal.toml")
	if err != nil {
		t.Fatal(err)
	}
	if s.Defaults.Refresh != dur(5*time.Second) || s.Defaults.Timeout != dur(5*time.Second) {
		t.Errorf("defaults %+v", s.Defaults)
	}
	if len(s.Sites) != 1 || s.Sites[0].Timeout != dur(5*time.Second) || s.Sites[0].CKANAPIKeyHeader {
		t.Errorf("sites %+v", s.Sites)
	}
}

var sitesErrorCases = []struct {
	file string
	want []string
}{
	{"sites_unknown_key.toml", []string{
		"testdata/sites_unknown_key.toml:6: site.token_file: set one of token_file (a file holding the token) or token_env (an environment variable holding it)",
		"testdata/sites_unknown_key.toml:9: site.tokn_file: unknown key; did you mean token_file?",
	}},
	{"sites_both_tokens.toml", []string{
		"testdata/sites_both_tokens.toml:5: site.token_env: set only one of token_file and token_env",
	}},
	{"sites_no_token.toml", []string{
		"testdata/sites_no_token.toml:1: site.token_file: set one of token_file ...",
	}},
	{"sites_duplicate.toml", []string{
		`testdata/sites_duplicate.toml:7: site.name: duplicate site name "prod" (first on line 2); names must be unique`,
	}},
	{"sites_missing.toml", []string{
		"testdata/sites_missing.toml: site: no [[site]] entries; ...",
	}},
	{"sites_wrong_shape.toml", []string{
		"testdata/sites_wrong_shape.toml:1: site: expected an array of tables ([[site]]), found a table",
	}},
	{"sites_syntax.toml", []string{
		"testdata/sites_syntax.toml:3:32: syntax error: ...",
	}},
	{"sites_inline.toml", []string{
		"testdata/sites_inline.toml:3: site.colour: unknown key (known keys here: name, url, token_file, token_env, timeout, ckan_api_key_header)",
		"testdata/sites_inline.toml:4: site: entry 3: expected a table, found a string",
	}},
	{"sites_bad_values.toml", []string{
		`testdata/sites_bad_values.toml:2: console.refresh: invalid duration "often": ...`,
		`testdata/sites_bad_values.toml:5: site.name: "Prod" is not a valid site name: use lowercase letters, digits, '-' and '_' ...`,
		"testdata/sites_bad_values.toml:6: site.url: has no scheme; it must be an http or https URL, such as https://data.example.org",
		"testdata/sites_bad_values.toml:7: site.token_env: must name an environment variable (letters, digits and '_', such as CKANOPS_PROD_TOKEN), not hold the token itself",
		`testdata/sites_bad_values.toml:8: site.timeout: expected a duration string with a unit, such as "5s", found an integer`,
		"testdata/sites_bad_values.toml:10: site.name: required key is missing",
		"testdata/sites_bad_values.toml:11: site.url: must not hold a user name or password",
		"testdata/sites_bad_values.toml:13: site.ckan_api_key_header: expected a boolean (true or false), found a string",
	}},
}

func TestLoadSitesErrors(t *testing.T) {
	for _, c := range sitesErrorCases {
		t.Run(c.file, func(t *testing.T) {
			s, _, err := LoadSites(filepath.Join("testdata", c.file))
			if s != nil {
				t.Errorf("got Sites along with the error")
			}
			checkProblems(t, err, c.want)
		})
	}
}

func TestLoadSitesHidesSecrets(t *testing.T) {
	_, _, err := LoadSites("testdata/sites_bad_values.toml")
	for _, secret := range []string{"3f9a8b7c6d5e4f3a2b1c", "sitepw"} {
		if strings.Contains(err.Error(), secret) {
			t.Errorf("error holds %q:\n%v", secret, err)
		}
	}
}

func TestLoadSitesNoFile(t *testing.T) {
	_, _, err := LoadSites(filepath.Join(t.TempDir(), "sites.toml"))
	if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "$CKANOPS_CONFIG") {
		t.Fatalf("err = %v", err)
	}
}

func TestLoadSitesWarnsPlainHTTP(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sites.toml")
	body := `[[site]]
name = "a"
url = "http://data.example.org"
token_env = "A"

[[site]]
name = "b"
url = "http://localhost:8080"
token_env = "B"
`
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	_, warns, err := LoadSites(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(warns) != 1 || warns[0].String() != path+`: site.url: site "a": plain http sends the token in clear text; use https` {
		t.Errorf("warnings %v", warns)
	}
}

func TestLoadSitesPaths(t *testing.T) {
	home := t.TempDir()
	t.Setenv("HOME", home)
	s, _, err := LoadSites("testdata/sites_paths.toml")
	if err != nil {
		t.Fatal(err)
	}
	dir, _ := filepath.Abs("testdata")
	if got, want := s.Sites[0].TokenFile, filepath.Join(home, "tokens", "a.token"); got != want {
		t.Errorf("~ path: %q, want %q", got, want)
	}
	if got, want := s.Sites[1].TokenFile, filepath.Join(dir, "tokens", "b.token"); got != want {
		t.Errorf("relative path: %q, want %q", got, want)
	}
}

func TestSitesPath(t *testing.T) {
	home := t.TempDir()
	cases := []struct {
		name, config, xdg, want string
	}{
		{"CKANOPS_CONFIG wins", "/etc/ckanops/sites.toml", "/xdg", "/etc/ckanops/sites.toml"},
		{"CKANOPS_CONFIG with ~", "~/my.toml", "", filepath.Join(home, "my.toml")},
		{"XDG_CONFIG_HOME", "", "/xdg", "/xdg/ckanops/sites.toml"},
		{"relative XDG_CONFIG_HOME is ignored", "", "xdg", filepath.Join(home, ".config/ckanops/sites.toml")},
		{"home", "", "", filepath.Join(home, ".config/ckanops/sites.toml")},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Setenv("HOME", home)
			t.Setenv("CKANOPS_CONFIG", c.config)
			t.Setenv("XDG_CONFIG_HOME", c.xdg)
			got, err := SitesPath()
			if err != nil || got != c.want {
				t.Errorf("SitesPath() = %q, %v; want %q", got, err, c.want)
			}
		})
	}
}

func TestFind(t *testing.T) {
	s, _, err := LoadSites("testdata/sites_full.toml")
	if err != nil {
		t.Fatal(err)
	}
	site, err := s.Find("staging-2")
	if err != nil || site.URL != "http://127.0.0.1:8080" {
		t.Errorf("Find(staging-2) = %+v, %v", site, err)
	}
	_, err = s.Find("nope")
	if err == nil || !strings.Contains(err.Error(), `no site "nope"`) || !strings.Contains(err.Error(), "known sites: prod, staging-2") {
		t.Errorf("Find(nope) err = %v", err)
	}
	_, err = (&Sites{Path: "x.toml"}).Find("nope")
	if err == nil || !strings.Contains(err.Error(), "lists no sites") {
		t.Errorf("Find on no sites: %v", err)
	}
}

func TestSiteTokenFile(t *testing.T) {
	for _, c := range tokenCases {
		t.Run(c.name, func(t *testing.T) {
			path := writeToken(t, c.content, c.mode)
			s := Site{Name: "prod", TokenFile: path, file: "sites.toml"}
			token, warns, err := s.Token()
			expectToken(t, token, warns, err, c.token, c.errHas, c.warn, path)
			if c.warn && warns[0].String() != `sites.toml: site.token_file: site "prod": `+exposedMessage(path, c.mode) {
				t.Errorf("warning %q", warns[0])
			}
		})
	}
	t.Run("missing", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "prod.token")
		_, _, err := Site{Name: "prod", TokenFile: path}.Token()
		if err == nil || !strings.Contains(err.Error(), path+" does not exist") || !strings.Contains(err.Error(), `site "prod"`) {
			t.Errorf("err = %v", err)
		}
	})
}

func TestSiteTokenEnv(t *testing.T) {
	cases := []struct {
		name   string
		site   Site
		set    bool
		value  string
		token  string
		errHas string
	}{
		{"set", Site{Name: "p", TokenEnv: "CKANOPS_TEST_TOKEN"}, true, " " + secretToken + "\n", secretToken, ""},
		{"empty", Site{Name: "p", TokenEnv: "CKANOPS_TEST_TOKEN"}, true, "", "", "CKANOPS_TEST_TOKEN is not set or empty"},
		{"blank", Site{Name: "p", TokenEnv: "CKANOPS_TEST_TOKEN"}, true, "  ", "", "CKANOPS_TEST_TOKEN is not set or empty"},
		{"unset", Site{Name: "p", TokenEnv: "CKANOPS_TEST_TOKEN"}, false, "", "", "CKANOPS_TEST_TOKEN is not set or empty"},
		{"control characters", Site{Name: "p", TokenEnv: "CKANOPS_TEST_TOKEN"}, true, secretToken + "\x07x", "", "control characters"},
		{"neither", Site{Name: "p"}, false, "", "", "no token: set token_file or token_env"},
		{"both", Site{Name: "p", TokenEnv: "CKANOPS_TEST_TOKEN", TokenFile: "/x"}, true, secretToken, "", "set only one of token_file and token_env"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Setenv("CKANOPS_TEST_TOKEN", c.value)
			if !c.set {
				os.Unsetenv("CKANOPS_TEST_TOKEN")
			}
			token, warns, err := c.site.Token()
			if len(warns) != 0 {
				t.Errorf("warnings %v", warns)
			}
			if c.errHas == "" {
				if err != nil || token != c.token {
					t.Fatalf("token %q, err %v", token, err)
				}
				return
			}
			if err == nil || token != "" || !strings.Contains(err.Error(), c.errHas) {
				t.Fatalf("token %q, err %v; want an error saying %q", token, err, c.errHas)
			}
			if strings.Contains(err.Error(), "7c1d2e9f") {
				t.Errorf("error holds the token: %v", err)
			}
		})
	}
}
