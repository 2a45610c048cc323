package config

import (
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
)

// Sites is a loaded and validated sites.toml: the gates the console
// talks to.
type Sites struct {
	Path     string          // the file, as passed to LoadSites
	Sites    []Site          // [[site]], in file order
	Defaults ConsoleDefaults // [console]
	Serve    Serve           // [serve]: `ckanops serve`, the console over SSH
}

// ConsoleDefaults is the optional [console] table.
type ConsoleDefaults struct {
	Refresh Duration // refresh: how often the console polls each gate; data older than two periods is stale
	Timeout Duration // timeout: the request timeout of a site that sets none
}

// Site is one [[site]] of sites.toml.
type Site struct {
	Name             string   // name: lowercase letters, digits, '-', '_'
	URL              string   // url: the gate's URL (the site's public URL)
	TokenFile        string   // token_file: absolute, "~" expanded; exactly one of TokenFile and TokenEnv is set
	TokenEnv         string   // token_env: the environment variable holding the token
	Timeout          Duration // timeout: per request
	CKANAPIKeyHeader bool     // ckan_api_key_header: send CKAN tokens as X-CKAN-API-Key (CKAN 2.9/2.10)

	file string // the sites.toml it came from, for warnings
}

// SitesPath returns where sites.toml is when --config is not given:
// $CKANOPS_CONFIG, else $XDG_CONFIG_HOME/ckanops/sites.toml, else
// ~/.config/ckanops/sites.toml. It does not check that the file exists.
func SitesPath() (string, error) {
	if p := os.Getenv(EnvConfig); p != "" {
		if p == "~" || strings.HasPrefix(p, "~/") {
			return resolvePath("", p)
		}
		return p, nil
	}
	if x := os.Getenv(EnvXDGConfigHome); x != "" && filepath.IsAbs(x) {
		return filepath.Join(x, "ckanops", SitesFileName), nil
	}
	home, err := os.UserHomeDir()
	if err != nil || home == "" {
		return "", fmt.Errorf("config: cannot find %s: the home directory is unknown; pass --config or set $%s", SitesFileName, EnvConfig)
	}
	return filepath.Join(home, ".config", "ckanops", SitesFileName), nil
}

// LoadSites reads and validates the console's sites.toml at path. The
// error, if any, lists every problem found (it is an *Error when the file
// could be parsed). Tokens are not read here: Site.Token reads each one
// when it is needed, so one unreadable token does not stop the console.
func LoadSites(path string) (*Sites, []Warning, error) {
	d, root, err := parse(path, "create it (see docs/config.md), or point --config or $"+EnvConfig+" at one")
	if err != nil {
		return nil, nil, err
	}
	s := &Sites{Path: path}
	t := d.root(root)

	con := t.table("console")
	s.Defaults.Refresh = con.duration("refresh", DefaultRefresh, false)
	s.Defaults.Timeout = con.duration("timeout", DefaultSiteTimeout, false)
	con.done()

	s.Serve = readServe(t.table("serve"))

	entries := t.tables("site")
	if v, ok := root["site"]; !ok || isEmptyArray(v) {
		d.problem([]string{"site"}, "no [[site]] entries; add one per gate (name, url, and token_file or token_env)")
	}
	firstLine := map[string]int{}
	for _, e := range entries {
		site, ok := readSite(e, s.Defaults.Timeout)
		if !ok {
			continue
		}
		site.file = path
		if ln, dup := firstLine[site.Name]; dup {
			at := ""
			if ln > 0 {
				at = fmt.Sprintf(" (first on line %d)", ln)
			}
			d.problem(e.sub("name"), "duplicate site name %q%s; names must be unique", site.Name, at)
			continue
		}
		firstLine[site.Name] = d.line(e.sub("name"))
		s.Sites = append(s.Sites, site)
	}
	t.done()

	if err := d.err(); err != nil {
		return nil, d.warns, err
	}
	return s, d.warns, nil
}

func isEmptyArray(v any) bool {
	switch v := v.(type) {
	case []any:
		return len(v) == 0
	case []map[string]any:
		return len(v) == 0
	}
	return false
}

var envNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// readSite reads one [[site]]; ok is false when it has a problem.
func readSite(t *table, defTimeout Duration) (Site, bool) {
	before := len(t.d.probs)
	var s Site
	t.need("name")
	if name, ok := t.string("name"); ok {
		if msg := checkName(name); msg != "" {
			t.d.problem(t.sub("name"), "%s", msg)
		} else {
			s.Name = name
		}
	}
	t.need("url")
	s.URL, _ = t.url("url", siteURL)
	hasFile, hasEnv := t.has("token_file"), t.has("token_env")
	s.TokenFile, _ = t.filePath("token_file")
	if env, ok := t.string("token_env"); ok {
		if !envNameRE.MatchString(env) {
			// Never quote it: people paste the token itself here.
			t.d.problem(t.sub("token_env"), "must name an environment variable (letters, digits and '_', such as CKANOPS_PROD_TOKEN), not hold the token itself")
		} else {
			s.TokenEnv = env
		}
	}
	switch {
	case hasFile && hasEnv:
		t.d.problem(t.sub("token_env"), "set only one of token_file and token_env")
	case !hasFile && !hasEnv:
		t.d.problem(t.sub("token_file"), "set one of token_file (a file holding the token) or token_env (an environment variable holding it)")
	}
	s.Timeout = t.duration("timeout", defTimeout.Duration, false)
	s.CKANAPIKeyHeader = t.boolean("ckan_api_key_header", false)
	t.done()

	if s.URL != "" {
		if u, err := url.Parse(s.URL); err == nil && strings.EqualFold(u.Scheme, "http") && !isLoopback(u.Hostname()) {
			t.d.warn(t.sub("url"), "site %q: plain http sends the token in clear text; use https", s.Name)
		}
	}
	return s, len(t.d.probs) == before
}

func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Find returns the site called name; the error lists the known names.
func (s *Sites) Find(name string) (Site, error) {
	names := make([]string, 0, len(s.Sites))
	for _, site := range s.Sites {
		if site.Name == name {
			return site, nil
		}
		names = append(names, site.Name)
	}
	if len(names) == 0 {
		return Site{}, fmt.Errorf("config: no site %q: %s lists no sites", name, orElse(s.Path, "the configuration"))
	}
	return Site{}, fmt.Errorf("config: no site %q in %s; known sites: %s", name, orElse(s.Path, "the configuration"), strings.Join(names, ", "))
}

// Token returns the site's token: the first line of token_file (surrounding
// white space trimmed), or the value of the variable token_env names. It
// fails when neither (or both) is set, or the token is missing or empty,
// and warns when the token file may be read by group or others. Neither
// errors nor warnings ever hold the token.
func (s Site) Token() (string, []Warning, error) {
	what := fmt.Sprintf("site %q", s.Name)
	switch {
	case s.TokenFile != "" && s.TokenEnv != "":
		return "", nil, fmt.Errorf("config: %s: set only one of token_file and token_env", what)
	case s.TokenFile != "":
		token, exposed, mode, err := readTokenFile(s.TokenFile)
		var warns []Warning
		if exposed {
			warns = append(warns, Warning{File: orElse(s.file, s.TokenFile), Key: "site.token_file",
				Message: what + ": " + exposedMessage(s.TokenFile, mode)})
		}
		if err != nil {
			return "", warns, fmt.Errorf("config: %s: %w", what, err)
		}
		return token, warns, nil
	case s.TokenEnv != "":
		token := strings.TrimSpace(os.Getenv(s.TokenEnv))
		if token == "" {
			return "", nil, fmt.Errorf("config: %s: environment variable %s is not set or empty; export it with the site's token", what, s.TokenEnv)
		}
		if msg := checkToken(token); msg != "" {
			return "", nil, fmt.Errorf("config: %s: environment variable %s: %s", what, s.TokenEnv, msg)
		}
		return token, nil, nil
	}
	return "", nil, fmt.Errorf("config: %s: no token: set token_file or token_env in %s", what, orElse(s.file, "sites.toml"))
}
