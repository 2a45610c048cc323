package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/ckanops/ckanops/api"
	"github.com/ckanops/ckanops/config"
)

func init() {
	register(&command{
		name:    "config",
		summary: "check a gate.toml or sites.toml and show what it would do (config check FILE)",
		usage: `config check [--json] FILE
Loads FILE as the gate or the console would (telling a gate.toml from a
sites.toml by its keys), prints every problem with its line and key, and
what the configuration would do: the upstream, the state store, the
probes configured, the snapshot and runbook settings, and whether each
token file exists with safe permissions; for a sites.toml, each site and
what ckanops serve would do ([serve]: its address, host key and the keys
in its operators and viewers files). Secrets are never printed.

Exit status: 0 valid (warnings are printed); 1 invalid; 2 bad usage.`,
		run: func(e *env, args []string) error {
			args = checkFirst(args)
			if len(args) == 0 || args[0] != "check" {
				if len(args) > 0 && (args[0] == "-h" || args[0] == "--help" || args[0] == "-help") {
					return parse(e, newFlags(e, commands["config"]), args)
				}
				return usageErr("want 'ckanops config check FILE'")
			}
			fs := newFlags(e, commands["config"])
			asJSON := fs.Bool("json", false, "print the findings as JSON")
			kind := fs.String("kind", "", "gate or sites, when the file's keys do not tell")
			if err := parse(e, fs, args[1:]); err != nil {
				return err
			}
			if fs.NArg() != 1 {
				return usageErr("give exactly one configuration FILE")
			}
			if err := e.stopIfDry(); err != nil {
				return err
			}
			return runConfigCheck(e, fs.Arg(0), *kind, *asJSON)
		},
	})
}

// checkFirst moves the word check to the front when only flags come
// before it (config --json check FILE), so that they are read as check's.
func checkFirst(args []string) []string {
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "check":
			if i == 0 {
				return args
			}
			return append([]string{"check"}, append(append([]string{}, args[:i]...), args[i+1:]...)...)
		case a == "--kind" || a == "-kind":
			i++ // its value
		case strings.HasPrefix(a, "-"):
		default:
			return args // an operand before check: not check's usage
		}
	}
	return args
}

// configReport is what `config check` found.
type configReport struct {
	File     string      `json:"file"`
	Kind     string      `json:"kind"`
	Valid    bool        `json:"valid"`
	Problems []string    `json:"problems,omitempty"`
	Warnings []string    `json:"warnings,omitempty"`
	Facts    [][2]string `json:"facts,omitempty"` // what it would do, in order
}

func runConfigCheck(e *env, path, kind string, asJSON bool) error {
	if kind == "" {
		kind = config.Kind(path)
	}
	rep := configReport{File: path, Kind: kind}
	switch kind {
	case config.KindGate:
		g, warns, err := config.LoadGate(path)
		rep.add(warns, err)
		if g != nil {
			rep.Facts = gateFacts(g, &rep)
		}
	case config.KindSites:
		s, warns, err := config.LoadSites(path)
		rep.add(warns, err)
		if s != nil {
			rep.Facts = sitesFacts(s, &rep)
		}
	default:
		if _, err := os.Stat(path); err != nil {
			return &exitError{code: exitFail, err: fmt.Errorf("%s: %w", path, errors.Unwrap(err))}
		}
		// Let the gate's loader say what is wrong (syntax, missing keys).
		_, _, err := config.LoadGate(path)
		rep.add(nil, err)
		if err == nil {
			rep.Problems = append(rep.Problems, "cannot tell a gate.toml from a sites.toml: pass --kind gate or --kind sites")
		}
	}
	rep.Valid = len(rep.Problems) == 0
	if asJSON {
		enc := json.NewEncoder(e.stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			return err
		}
	} else {
		printConfigReport(e, rep)
	}
	if !rep.Valid {
		return &exitError{code: exitFail, err: fmt.Errorf("%s is not valid (%d problem(s))", path, len(rep.Problems))}
	}
	return nil
}

func (r *configReport) add(warns []config.Warning, err error) {
	for _, w := range warns {
		r.Warnings = append(r.Warnings, w.String())
	}
	var ce *config.Error
	switch {
	case errors.As(err, &ce):
		for _, p := range ce.Problems {
			r.Problems = append(r.Problems, p.String())
		}
	case err != nil:
		r.Problems = append(r.Problems, err.Error())
	}
}

func printConfigReport(e *env, r configReport) {
	w := e.stdout
	state := "valid"
	if len(r.Problems) > 0 {
		state = "NOT valid"
	}
	kind := r.Kind
	if kind == "" {
		kind = "configuration"
	}
	fmt.Fprintf(w, "%s (%s): %s\n", r.File, kind, state)
	for _, p := range r.Problems {
		fmt.Fprintf(w, "  problem: %s\n", p)
	}
	for _, x := range r.Warnings {
		fmt.Fprintf(w, "  warning: %s\n", x)
	}
	if len(r.Facts) > 0 {
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		for _, f := range r.Facts {
			fmt.Fprintf(tw, "  %s\t%s\n", f[0], f[1])
		}
		tw.Flush()
	}
}

func orNone(s string) string {
	if s == "" {
		return "not configured"
	}
	return s
}

// gateFacts says what the gate would do. It reads the token file (never
// printing it) and looks up pg_dump, as the gate and the runbook would.
func gateFacts(g *config.Gate, r *configReport) [][2]string {
	f := [][2]string{
		{"site", g.Site},
		{"listen", g.Listen},
		{"upstream", g.Upstream},
	}
	if g.State.RedisURL != "" {
		f = append(f, [2]string{"state", "redis " + g.State.RedisURL.String() + " (shared by the site's gates; last known record in " + g.State.File + ")"})
	} else {
		f = append(f, [2]string{"state", "file " + g.State.File})
	}
	initial := string(g.State.InitialMode)
	if g.State.InitialMessage != "" {
		initial += fmt.Sprintf(" (%q)", g.State.InitialMessage)
	}
	f = append(f, [2]string{"initial mode", initial + ", until a mode is recorded"}, [2]string{"audit log", g.Audit.File})
	if _, warns, err := g.OpsToken(); err != nil {
		r.Problems = append(r.Problems, err.Error())
		f = append(f, [2]string{"ops token", g.Auth.OpsTokenFile + ": NOT usable"})
	} else {
		r.add(warns, nil)
		f = append(f, [2]string{"ops token", g.Auth.OpsTokenFile + ": readable" + permNote(g.Auth.OpsTokenFile)})
	}
	c := g.Checks
	f = append(f,
		[2]string{"probe ckan_db", orNone(c.CKANDB.String())},
		[2]string{"probe datastore_db", orNone(c.DatastoreDB.String())},
	)
	for _, db := range c.Databases {
		f = append(f, [2]string{"probe " + api.ProbeDatabase(db.Name), db.DSN.String() + " ([[database]] " + db.Name + ": drained, snapshotted as " + db.Name + ".dump)"})
	}
	f = append(f,
		[2]string{"probe redis", orNone(c.Redis.String()) + rqNote(c)},
		[2]string{"probe solr", orNone(c.Solr.String())},
		[2]string{"probe storage", storagesLine(c.Storages, c.StoragePath, nil)},
	)
	pgDump := g.Snapshot.PGDump
	if p, err := exec.LookPath(pgDump); err != nil {
		if c.CKANDB != "" || c.DatastoreDB != "" || len(c.Databases) > 0 {
			r.Warnings = append(r.Warnings, fmt.Sprintf("snapshot.pg_dump: %s cannot be run here (%v): the runbook's snapshot step would fail", pgDump, errors.Unwrap(err)))
		}
		pgDump += " (NOT found)"
	} else {
		pgDump = p
	}
	f = append(f,
		[2]string{"snapshot dir", g.Snapshot.Dir + dirNote(g.Snapshot.Dir)},
		[2]string{"snapshot", fmt.Sprintf("pg_dump %s; storage %s; keep %d", pgDump, storagesLine(g.Snapshot.Storages, g.Snapshot.StoragePath, g.Snapshot.ExcludeStorages), g.Snapshot.Keep)},
		[2]string{"runbook journal", g.Runbook.JournalDir},
		[2]string{"drain timeout", g.Gate.DrainTimeout.String()},
	)
	for _, m := range g.Migrate {
		f = append(f, [2]string{"migrate", fmt.Sprintf("%s: %s (timeout %s, mode %s)", m.Name, strings.Join(m.Argv, " "), m.Timeout, m.Mode)})
	}
	for _, v := range g.Verify {
		f = append(f, [2]string{"verify", fmt.Sprintf("%s: %s (timeout %s)", v.Name, strings.Join(v.Argv, " "), v.Timeout)})
	}
	if g.Runbook.ExpectCKANVersion != "" {
		f = append(f, [2]string{"verify", "CKAN reports version " + g.Runbook.ExpectCKANVersion})
	}
	for _, t := range g.Triggers {
		back := "never by itself (an operator ends it)"
		if t.Recover.Duration > 0 {
			back = "after " + t.Recover.String() + " clear"
		}
		f = append(f, [2]string{"trigger", fmt.Sprintf("%s: %s when %s for %s; back to live %s", t.Name, t.Mode, t.Check+" "+t.Cond.String(), t.For, back)})
	}
	f = append(f, abFacts(g.AB, r)...)
	p := g.Policy
	f = append(f, [2]string{"policy", fmt.Sprintf("%d allowed and %d denied action(s), %d allowed POST path(s), %d denied GET path(s), %d bypass CIDR(s), %d trusted prox(ies) beyond the built-in lists",
		len(p.AllowActions), len(p.DenyActions), len(p.AllowPosts), len(p.DenyGet), len(p.BypassCIDRs), len(p.TrustedProxies))})
	return f
}

func rqNote(c config.ChecksConfig) string {
	if c.Redis == "" {
		return ""
	}
	return fmt.Sprintf(" (RQ queues %s of site_id %s)", strings.Join(c.RQQueues, ", "), c.SiteID)
}

func permNote(path string) string {
	fi, err := os.Stat(path)
	if err != nil {
		return ""
	}
	return fmt.Sprintf(", mode %04o", fi.Mode().Perm())
}

func dirNote(dir string) string {
	fi, err := os.Stat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return " (does not exist yet)"
	case err != nil:
		return " (" + err.Error() + ")"
	case !fi.IsDir():
		return " (NOT a directory)"
	}
	return ""
}

// sitesFacts lists the console's sites and whether each token is usable.
func sitesFacts(s *config.Sites, r *configReport) [][2]string {
	f := [][2]string{{"refresh", s.Defaults.Refresh.String()}}
	for _, site := range s.Sites {
		tok := "token_env " + site.TokenEnv
		if site.TokenFile != "" {
			tok = "token_file " + site.TokenFile
		}
		_, warns, err := site.Token()
		r.add(warns, nil)
		if err != nil {
			r.Problems = append(r.Problems, err.Error())
			tok += ": NOT usable"
		} else {
			tok += ": ok"
		}
		f = append(f, [2]string{site.Name, fmt.Sprintf("%s (timeout %s), %s", site.URL, site.Timeout, tok)})
	}
	return append(f, serveFacts(s, r)...)
}

// serveFacts says what `ckanops serve` would do with the [serve] table:
// where it listens, its host key, and how many keys each authorized_keys
// file holds. A keys file that is named but missing or unreadable is a
// problem (the command would not start); a host key that others may read
// is a warning.
func serveFacts(s *config.Sites, r *configReport) [][2]string {
	sv := s.Serve
	if !sv.Present {
		return [][2]string{{"serve", "not configured (no [serve]; ckanops serve would need --operators)"}}
	}
	f := [][2]string{
		{"serve listen", sv.Listen + " (ssh)"},
		{"serve host key", hostKeyNote(s.Path, sv.HostKey, r)},
		{"serve operators", keysNote(s.Path, sv.Operators, "serve.operators", r)},
	}
	if sv.Viewers != "" {
		f = append(f, [2]string{"serve viewers", keysNote(s.Path, sv.Viewers, "serve.viewers", r)})
	} else {
		f = append(f, [2]string{"serve viewers", "none (only operators may log in)"})
	}
	metrics := "off"
	if sv.MetricsListen != "" {
		metrics = "/metrics on " + sv.MetricsListen
	}
	return append(f,
		[2]string{"serve idle timeout", sv.IdleTimeout.String()},
		[2]string{"serve max sessions", fmt.Sprint(sv.MaxSessions)},
		[2]string{"serve shutdown grace", sv.ShutdownGrace.String()},
		[2]string{"serve metrics", metrics},
	)
}

// hostKeyNote describes the SSH host key, warning when group or others
// may read or write it.
func hostKeyNote(file, path string, r *configReport) string {
	fi, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return path + ": does not exist yet (made on first start)"
	case err != nil:
		r.Problems = append(r.Problems, fmt.Sprintf("%s: serve.host_key: %v", file, err))
		return path + ": NOT usable"
	case !fi.Mode().IsRegular():
		r.Problems = append(r.Problems, fmt.Sprintf("%s: serve.host_key: %s is not a regular file", file, path))
		return path + ": NOT a regular file"
	}
	mode := fi.Mode().Perm()
	if mode&0o077 != 0 {
		r.Warnings = append(r.Warnings, config.Warning{File: file, Key: "serve.host_key",
			Message: fmt.Sprintf("host key %s is open to group or others (mode %04o): whoever reads it can pose as this server; run: chmod 600 %s", path, mode, path)}.String())
		return fmt.Sprintf("%s: exists, mode %04o (too open)", path, mode)
	}
	return fmt.Sprintf("%s: exists, mode %04o", path, mode)
}

// keysNote describes an authorized_keys file: how many keys it holds
// (its lines that are neither blank nor comments; they are not parsed
// here).
func keysNote(file, path, key string, r *configReport) string {
	n, err := countKeys(path)
	if err != nil {
		r.Problems = append(r.Problems, fmt.Sprintf("%s: %s: %v: ckanops serve would not start", file, key, err))
		return path + ": NOT usable"
	}
	note := fmt.Sprintf("%s: %d key(s)%s", path, n, permNote(path))
	if n == 0 {
		r.Warnings = append(r.Warnings, fmt.Sprintf("%s: %s: %s holds no keys: nobody could log in with it", file, key, path))
	}
	return note
}

// maxKeysFile bounds how much of an authorized_keys file is read.
const maxKeysFile = 1 << 20

// countKeys counts the lines of an authorized_keys file that are neither
// blank nor comments.
func countKeys(path string) (int, error) {
	fi, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return 0, fmt.Errorf("%s does not exist", path)
	case err != nil:
		return 0, err
	case !fi.Mode().IsRegular():
		return 0, fmt.Errorf("%s is not a regular file", path)
	case fi.Size() > maxKeysFile:
		return 0, fmt.Errorf("%s is larger than %d bytes; is it an authorized_keys file?", path, maxKeysFile)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, line := range strings.Split(string(data), "\n") {
		if l := strings.TrimSpace(line); l != "" && !strings.HasPrefix(l, "#") {
			n++
		}
	}
	return n, nil
}

// storagesLine names the site's storages: "name path" for a local one,
// "name (type, not archived)" or "(type, excluded)" for the others; the
// lone path when there are no named storages.
func storagesLine(storages []config.Storage, path string, excluded []string) string {
	if len(storages) == 0 {
		return orNone(path)
	}
	var parts []string
	for _, s := range storages {
		switch {
		case s.Local():
			parts = append(parts, s.Name+" "+s.Path)
		case slices.Contains(excluded, s.Name):
			parts = append(parts, s.Name+" ("+s.Type+", excluded)")
		default:
			parts = append(parts, s.Name+" ("+s.Type+", not a local directory)")
		}
	}
	return strings.Join(parts, ", ")
}

// abFacts says what the A/B runbook (runbook --ab) would use: B's gate,
// the public URL, B's targets and the commands, whose programs it looks
// up as the runbook's preflight would.
func abFacts(a config.ABConfig, r *configReport) [][2]string {
	if !a.Configured() {
		return [][2]string{{"a/b runbook", "not configured (no [ab]): runbook --ab is refused"}}
	}
	f := [][2]string{
		{"a/b: B's gate", a.BURL + " (must be read-only, its own site name)"},
		{"a/b: public URL", a.PublicURL + " (its status names the side serving it; wait " + a.SwitchWait.String() + ")"},
		{"a/b: B's ckan_db", orNone(a.CKANDB.String())},
		{"a/b: B's datastore_db", orNone(a.DatastoreDB.String())},
	}
	for _, db := range a.Databases {
		f = append(f, [2]string{"a/b: B's db " + db.Name, db.DSN.String()})
	}
	if a.StoragePath != "" {
		f = append(f, [2]string{"a/b: B's storage", a.StoragePath})
	}
	for _, s := range a.Storages {
		f = append(f, [2]string{"a/b: B's storage " + s.Name, s.Path})
	}
	for _, l := range []struct {
		key  string
		cmds []config.Command
	}{{"prepare", a.Prepare}, {"switch_to_b", a.SwitchToB}, {"switch_to_a", a.SwitchToA}} {
		for _, c := range l.cmds {
			note := ""
			if _, err := exec.LookPath(c.Argv[0]); err != nil {
				note = " (NOT found)"
				r.Warnings = append(r.Warnings, fmt.Sprintf("ab.%s %q: %s cannot be run here (%v): the A/B runbook's preflight would fail", l.key, c.Name, c.Argv[0], errors.Unwrap(err)))
			}
			f = append(f, [2]string{"a/b: " + l.key, fmt.Sprintf("%s: %s%s (timeout %s)", c.Name, strings.Join(c.Argv, " "), note, c.Timeout)})
		}
	}
	return f
}
