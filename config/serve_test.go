package config

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"
)

func testdataDir(t *testing.T) string {
	t.Helper()
	dir, err := filepath.Abs("testdata")
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestLoadSitesServe(t *testing.T) {
	home := t.TempDir()
	t.Setenv("HOME", home)
	dir := testdataDir(t)
	cases := []struct {
		file string
		want Serve
	}{
		// No [serve]: the defaults, with no operators file (the command
		// then wants --operators) and the host key beside sites.toml.
		{"sites_minimal.toml", Serve{
			Listen: "127.0.0.1:2222", HostKey: filepath.Join(dir, "ssh_host_ed25519"),
			IdleTimeout: dur(30 * time.Minute), MaxSessions: 32, ShutdownGrace: dur(5 * time.Second),
		}},
		{"sites_full.toml", Serve{
			Listen: "127.0.0.1:2222", HostKey: filepath.Join(dir, "ssh_host_ed25519"),
			IdleTimeout: dur(30 * time.Minute), MaxSessions: 32, ShutdownGrace: dur(5 * time.Second),
		}},
		// [serve] with only operators: the defaults for the rest.
		{"sites_serve_minimal.toml", Serve{
			Present: true, Listen: "127.0.0.1:2222", HostKey: filepath.Join(dir, "ssh_host_ed25519"),
			Operators:   "/etc/ckanops/operators.keys",
			IdleTimeout: dur(30 * time.Minute), MaxSessions: 32, ShutdownGrace: dur(5 * time.Second),
		}},
		{"sites_serve_full.toml", Serve{
			Present: true, Listen: "0.0.0.0:2222", HostKey: "/var/lib/ckanops/ssh_host_ed25519",
			Operators: "/etc/ckanops/operators.keys", Viewers: "/etc/ckanops/viewers.keys",
			IdleTimeout: dur(45 * time.Minute), MaxSessions: 64, ShutdownGrace: dur(0),
			MetricsListen: "127.0.0.1:9122",
		}},
		// Relative paths are relative to sites.toml's directory, "~/" is
		// the home directory.
		{"sites_serve_paths.toml", Serve{
			Present: true, Listen: "127.0.0.1:2222", HostKey: filepath.Join(dir, "keys", "host_ed25519"),
			Operators: filepath.Join(home, "ops", "operators.keys"), Viewers: filepath.Join(dir, "viewers.keys"),
			IdleTimeout: dur(30 * time.Minute), MaxSessions: 32, ShutdownGrace: dur(5 * time.Second),
		}},
	}
	for _, c := range cases {
		t.Run(c.file, func(t *testing.T) {
			s, warns, err := LoadSites(filepath.Join("testdata", c.file))
			if err != nil {
				t.Fatal(err)
			}
			if len(warns) != 0 {
				t.Errorf("warnings: %v", warns)
			}
			if s.Serve != c.want {
				t.Errorf("got  %+v\nwant %+v", s.Serve, c.want)
			}
		})
	}
}

// The defaults are the documented ones.
func TestServeDefaults(t *testing.T) {
	s := defaultServe("/etc/ckanops")
	if s.Listen != "127.0.0.1:2222" || s.HostKey != "/etc/ckanops/ssh_host_ed25519" || s.IdleTimeout != dur(30*time.Minute) ||
		s.MaxSessions != 32 || s.ShutdownGrace != dur(5*time.Second) || s.Present || s.Operators != "" || s.Viewers != "" || s.MetricsListen != "" {
		t.Errorf("defaults %+v", s)
	}
}

func TestLoadSitesServeErrors(t *testing.T) {
	dir := testdataDir(t)
	cases := []struct {
		file string
		want []string
	}{
		{"sites_serve_unknown_key.toml", []string{
			"testdata/sites_serve_unknown_key.toml:8: serve.max_session: unknown key; did you mean max_sessions?",
			"testdata/sites_serve_unknown_key.toml:9: serve.banner: unknown key (known keys here: listen, host_key, operators, viewers, idle_timeout, max_sessions, shutdown_grace, metrics_listen)",
		}},
		{"sites_serve_bad_listen.toml", []string{
			`testdata/sites_serve_bad_listen.toml:7: serve.listen: "2222" is not host:port with a numeric port; write it as 127.0.0.1:2222 (or :2222 for every interface)`,
			`testdata/sites_serve_bad_listen.toml:9: serve.metrics_listen: "localhost:metrics" is not host:port with a numeric port; write it as 127.0.0.1:9122 (or :9122 for every interface)`,
		}},
		{"sites_serve_same_addr.toml", []string{
			`testdata/sites_serve_same_addr.toml:9: serve.metrics_listen: "127.0.0.1:2222" clashes with listen (:2222): give /metrics a port of its own`,
		}},
		{"sites_serve_sessions_zero.toml", []string{
			"testdata/sites_serve_sessions_zero.toml:8: serve.max_sessions: must be from 1 to 1024, found 0",
		}},
		{"sites_serve_sessions_big.toml", []string{
			"testdata/sites_serve_sessions_big.toml:9: serve.max_sessions: must be from 1 to 1024, found 5000",
		}},
		{"sites_serve_idle_negative.toml", []string{
			"testdata/sites_serve_idle_negative.toml:8: serve.idle_timeout: must not be negative, found -5m",
		}},
		{"sites_serve_idle_zero.toml", []string{
			"testdata/sites_serve_idle_zero.toml:8: serve.idle_timeout: must be more than 0s",
		}},
		{"sites_serve_grace.toml", []string{
			"testdata/sites_serve_grace.toml:8: serve.shutdown_grace: must be at most 1m (how long sessions are given to finish on SIGTERM), found 2m",
		}},
		// A missing key is reported on its table's line.
		{"sites_serve_no_operators.toml", []string{
			"testdata/sites_serve_no_operators.toml:6: serve.operators: required: the authorized_keys file of the people who may change sites",
		}},
		{"sites_serve_same_keys.toml", []string{
			"testdata/sites_serve_same_keys.toml:8: serve.viewers: is the operators file too; viewers may only look, so their keys belong in a file of their own",
		}},
		{"sites_serve_host_key.toml", []string{
			"testdata/sites_serve_host_key.toml:7: serve.host_key: " + filepath.Join(dir, "operators.keys") + " is the operators file too; the server's private key must be a file of its own",
		}},
		{"sites_serve_wrong_types.toml", []string{
			"testdata/sites_serve_wrong_types.toml:7: serve.listen: expected a string, found an integer",
			"testdata/sites_serve_wrong_types.toml:8: serve.operators: must not be empty ...",
			`testdata/sites_serve_wrong_types.toml:9: serve.viewers: "~bob/viewers.keys": only ~/ (your own home directory) is expanded; write the path in full`,
			`testdata/sites_serve_wrong_types.toml:10: serve.idle_timeout: expected a duration string with a unit, such as "30m", found an integer`,
			"testdata/sites_serve_wrong_types.toml:11: serve.max_sessions: expected an integer, found a string",
			`testdata/sites_serve_wrong_types.toml:12: serve.shutdown_grace: invalid duration "soon": ...`,
		}},
		{"sites_serve_not_table.toml", []string{
			"testdata/sites_serve_not_table.toml:1: serve: expected a table ([serve]), found a string",
		}},
	}
	for _, c := range cases {
		t.Run(c.file, func(t *testing.T) {
			s, _, err := LoadSites(filepath.Join("testdata", c.file))
			if s != nil {
				t.Errorf("got Sites along with the error")
			}
			checkProblems(t, err, c.want)
		})
	}
}

// writeServeSites writes a sites.toml whose [serve] holds body, in a
// directory of its own, and returns its path.
func writeServeSites(t *testing.T, body string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "sites.toml")
	head := "[[site]]\nname = \"prod\"\nurl = \"https://data.example.org\"\ntoken_env = \"CKANOPS_PROD_TOKEN\"\n\n[serve]\n"
	if err := os.WriteFile(path, []byte(head+body), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// writeMode writes a file and gives it mode whatever the umask.
func writeMode(t *testing.T, path, body string, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}

// A keys file that group or others may write draws a warning: a stranger
// could add a key. Reading is fine (public keys), and a file that does
// not exist yet is left to the command.
func TestLoadSitesServeWritableKeys(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("no Unix permissions")
	}
	cases := []struct {
		name      string
		operators os.FileMode // 0: no file
		viewers   os.FileMode
		want      []string // keys warned about
	}{
		{"private", 0o600, 0o600, nil},
		{"world-readable", 0o644, 0o644, nil},
		{"missing files", 0, 0, nil},
		{"group-writable operators", 0o664, 0o644, []string{"operators"}},
		{"world-writable viewers", 0o644, 0o646, []string{"viewers"}},
		{"both", 0o620, 0o666, []string{"operators", "viewers"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := writeServeSites(t, "operators = \"ops.keys\"\nviewers = \"view.keys\"\n")
			dir := filepath.Dir(path)
			files := map[string]os.FileMode{"operators": c.operators, "viewers": c.viewers}
			names := map[string]string{"operators": "ops.keys", "viewers": "view.keys"}
			for key, mode := range files {
				if mode != 0 {
					writeMode(t, filepath.Join(dir, names[key]), "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGx alice\n", mode)
				}
			}
			s, warns, err := LoadSites(path)
			if err != nil {
				t.Fatal(err)
			}
			if s.Serve.Operators != filepath.Join(dir, "ops.keys") || s.Serve.Viewers != filepath.Join(dir, "view.keys") {
				t.Errorf("paths %q %q", s.Serve.Operators, s.Serve.Viewers)
			}
			if len(warns) != len(c.want) {
				t.Fatalf("warnings %v, want ones about %v", warns, c.want)
			}
			for i, key := range c.want {
				file := filepath.Join(dir, names[key])
				want := fmt.Sprintf("%s: serve.%s: %s file %s is writable by group or others (mode %04o): whoever can write it can add a key of their own; run: chmod go-w %s",
					path, key, key, file, files[key], file)
				if warns[i].String() != want {
					t.Errorf("warning %d:\ngot  %s\nwant %s", i+1, warns[i], want)
				}
			}
		})
	}
}

// The operators and viewers files are compared as files: a link to the
// operators file is no viewers file.
func TestLoadSitesServeSameKeysThroughLink(t *testing.T) {
	path := writeServeSites(t, "operators = \"ops.keys\"\nviewers = \"view.keys\"\n")
	dir := filepath.Dir(path)
	writeMode(t, filepath.Join(dir, "ops.keys"), "ssh-ed25519 AAAA alice\n", 0o644)
	if err := os.Symlink("ops.keys", filepath.Join(dir, "view.keys")); err != nil {
		t.Skip("no symbolic links:", err)
	}
	_, _, err := LoadSites(path)
	checkProblems(t, err, []string{path + ":8: serve.viewers: is the operators file too; ..."})
}
