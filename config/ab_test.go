package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const abBase = `site = "prod"
listen = "127.0.0.1:8080"
upstream = "http://127.0.0.1:5000"

[auth]
ops_token_file = "/etc/ckanops/ops.token"

[checks]
ckan_db = "postgresql://ckan@db/ckan"
datastore_db = "postgresql://ckan@db/datastore"
storage_path = "/var/lib/ckan"

[[database]]
name = "datapusher"
dsn = "postgresql://dp@db/datapusher"
`

const abSwitches = `
[[ab.switch_to_b]]
name = "to B"
argv = ["ckanops-switch", "b"]

[[ab.switch_to_a]]
name = "to A"
argv = ["ckanops-switch", "a"]
`

// [ab] is checked strictly, with the file, line and key of each problem:
// B's targets must cover what the snapshot holds and never be A's.
func TestLoadGateABErrors(t *testing.T) {
	for _, c := range []struct {
		name string
		ab   string
		want []string // each "line: key: text" (line 0: any)
	}{
		{"required", "[ab]\nb_url = \"http://127.0.0.1:8081\"\n", []string{
			"17: ab.public_url: required key is missing",
			"ab.ckan_db: required: [checks] ckan_db is set",
			"ab.datastore_db: required: [checks] datastore_db is set",
			`ab.database: the site's [[database]] "datapusher" has no target in B`,
			"ab.storage_path: required: the snapshot holds storage default (/var/lib/ckan)",
			"ab.switch_to_b: required: at least one [[ab.switch_to_b]] command",
			"ab.switch_to_a: required: at least one [[ab.switch_to_a]] command",
		}},
		{"A's targets", `[ab]
b_url = "http://127.0.0.1:8081"
public_url = "http://127.0.0.1:8081/"
ckan_db = "postgres://other@db:5432/ckan"
datastore_db = "postgresql://ckan@db/ckan_b"
storage_path = "/var/lib/ckan/b"

[[ab.database]]
name = "datapusher"
dsn = "postgresql://ckan@db/ckan_b"

[[ab.database]]
name = "harvest"
dsn = "postgresql://ckan@db/harvest_b"
` + abSwitches, []string{
			"19: ab.public_url: is b_url",
			"20: ab.ckan_db: names one of A's databases (checks.ckan_db)",
			"22: ab.storage_path: /var/lib/ckan/b is, holds or lies in A's storage default (/var/lib/ckan)",
			"26: ab.database.dsn: names the same database as ab.datastore_db",
			`29: ab.database.name: "harvest" names no [[database]] of the site (its databases are datapusher)`,
			`24: ab.database: the site's [[database]] "datapusher" has no target in B`,
		}},
		{"this gate", `[ab]
b_url = "http://127.0.0.1:8080"
public_url = "http://localhost:8080/"
ckan_db = "postgresql://ckan@db/ckan_b"
datastore_db = "postgresql://ckan@db/datastore_b"
storage_path = "/var/lib/ckan-b"

[[ab.database]]
name = "datapusher"
dsn = "postgresql://dp@db/datapusher_b"
` + abSwitches, []string{
			`18: ab.b_url: points at this gate itself (listen = "127.0.0.1:8080"); it must be B's gate, another gate than this one`,
			`19: ab.public_url: points at this gate itself (listen = "127.0.0.1:8080"); it must be the URL readers use`,
		}},
		{"unknown key and bad command", `[ab]
b_url = "http://127.0.0.1:8081"
public_url = "https://data.example.org"
ckan_db = "postgresql://ckan@db/ckan_b"
datastore_db = "postgresql://ckan@db/datastore_b"
storage_path = "/var/lib/ckan-b"
swich_wait = "1m"

[[ab.database]]
name = "datapusher"
dsn = "postgresql://dp@db/datapusher_b"

[[ab.prepare]]
name = "perms"
argv = []
mode = "down"
` + abSwitches, []string{
			"23: ab.swich_wait: unknown key; did you mean switch_wait?",
			"31: ab.prepare.argv: must hold the program and its arguments",
			"32: ab.prepare.mode: unknown key (known keys here: name, argv, dir, timeout)",
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "gate.toml")
			if err := os.WriteFile(path, []byte(abBase+"\n"+c.ab), 0o600); err != nil {
				t.Fatal(err)
			}
			_, _, err := LoadGate(path)
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range c.want {
				want := w // no line number: the key's table has none to give
				if line, rest, _ := strings.Cut(w, ": "); !strings.HasPrefix(line, "ab.") {
					want = path + ":" + line + ": " + rest
				}
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error lacks %q:\n%v", want, err)
				}
			}
			if strings.Contains(err.Error(), "ckanpw") {
				t.Error("a password shown")
			}
		})
	}
}

// A complete [ab], with several storages: one target each.
func TestLoadGateABStorages(t *testing.T) {
	g, warns, err := LoadGate("testdata/gate_ab_storages.toml")
	if err != nil || len(warns) != 0 {
		t.Fatalf("%v, %v", err, warns)
	}
	if !g.AB.Configured() || len(g.AB.Storages) != 2 || g.AB.Storages[1] != (Storage{Name: "ckan-public", Path: "/var/lib/ckan-b-public"}) || g.AB.SwitchWait.Duration != DefaultABSwitchWait {
		t.Fatalf("ab %+v", g.AB)
	}
	g, _, err = LoadGate("testdata/gate_minimal.toml")
	if err != nil || g.AB.Configured() {
		t.Fatalf("minimal: %+v, %v", g.AB, err)
	}
}
