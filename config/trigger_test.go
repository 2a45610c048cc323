package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func loadGateText(t *testing.T, text string) (*Gate, error) {
	t.Helper()
	p := filepath.Join(t.TempDir(), "gate.toml")
	base := `site = "prod"
listen = "127.0.0.1:8080"
upstream = "http://127.0.0.1:5000"
[auth]
ops_token_file = "/etc/ckanops/ops.token"
[checks]
ckan_db = "postgresql://ckan@127.0.0.1/ckan"
storage_path = "/var/lib/ckan"
`
	if err := os.WriteFile(p, []byte(base+text), 0o600); err != nil {
		t.Fatal(err)
	}
	g, _, err := LoadGate(p)
	return g, err
}

func TestTriggerProblemsNameLineAndKey(t *testing.T) {
	for _, c := range []struct{ text, want string }{
		{"[[trigger]]\nname = \"lag\"\ncheck = \"ckan_db\"\nwhen = \"replay_lag > 30\"\n",
			`trigger.when: check "ckan_db" has no detail "replay_lag": it has `},
		{"[[trigger]]\nname = \"lag\"\ncheck = \"ckan_db\"\nwhen = \"replay_lag_seconds > soon\"\n",
			`trigger.when: replay_lag_seconds is a number: "soon" is not`},
		{"[[trigger]]\nname = \"ro\"\ncheck = \"ckan_db\"\nwhen = \"in_recovery > true\"\n",
			`compare it with == or !=`},
		{"[[trigger]]\nname = \"lag\"\ncheck = \"ckan_db\"\nwhen = \"replay_lag_seconds\"\n",
			`is not one comparison`},
		{"[[trigger]]\nname = \"q\"\ncheck = \"redis\"\nwhen = \"queued > 1000\"\n",
			`"redis" is not probed: set [checks] redis`},
		{"[[trigger]]\nname = \"g\"\ncheck = \"gate\"\nwhen = \"in_flight > 3\"\n",
			`"gate" is not a probe a trigger can watch`},
		{"[[trigger]]\nname = \"d\"\ncheck = \"db:jobs\"\nwhen = \"connections > 3\"\n",
			`names no [[database]] called "jobs"`},
		{"[[trigger]]\nname = \"Bad Name\"\ncheck = \"storage\"\nwhen = \"free_ratio < 0.1\"\n",
			`is not a trigger name`},
		{"[[trigger]]\nname = \"a\"\ncheck = \"storage\"\nwhen = \"free_ratio < 0.1\"\n[[trigger]]\nname = \"a\"\ncheck = \"storage\"\nwhen = \"free_ratio < 0.2\"\n",
			`duplicate trigger name "a"`},
		{"[[trigger]]\nname = \"a\"\ncheck = \"storage\"\nwhen = \"free_ratio < 0.1\"\nfor = \"0s\"\nrecover = \"0s\"\nmode = \"live\"\n",
			`trigger.mode: must be "read-only" or "down"`},
		{"[[trigger]]\nname = \"a\"\ncheck = \"storage\"\nwhen = \"free_ratio < 0.1\"\ncolour = \"red\"\n",
			`trigger.colour: unknown key`},
	} {
		_, err := loadGateText(t, c.text)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q:\n got %v\nwant %q", c.text, err, c.want)
		}
		if err != nil && !strings.Contains(err.Error(), "gate.toml:") {
			t.Errorf("the error does not name file and line: %v", err)
		}
	}
}

func TestTriggerDefaults(t *testing.T) {
	g, err := loadGateText(t, "[[trigger]]\nname = \"disk\"\ncheck = \"storage\"\nwhen = \"free_ratio < 0.05\"\n")
	if err != nil {
		t.Fatal(err)
	}
	tr := g.Triggers[0]
	if tr.Mode != "read-only" || tr.For.Duration != DefaultTriggerFor || tr.Recover.Duration != 0 || !tr.Cond.IsNum || tr.Cond.Num != 0.05 {
		t.Fatalf("%+v", tr)
	}
}
