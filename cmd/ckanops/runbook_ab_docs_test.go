package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ckanops/ckanops/config"
)

// The [ab] docs/upgrade.md shows for A's gate.toml loads with
// deploy/gate/prod.toml (A's example): B's targets are not A's, and
// every key is one the gate reads.
func TestUpgradeDocABConfigLoads(t *testing.T) {
	prod, err := os.ReadFile(filepath.Join(deployDir, "gate", "prod.toml"))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, b := range docBlocks(t, "../../docs/upgrade.md", "## A/B", "toml") {
		if !strings.Contains(b.text, "[ab]") {
			continue
		}
		n++
		path := filepath.Join(t.TempDir(), "prod.toml")
		text := string(prod) + "\n" + b.text
		if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		g, _, err := config.LoadGate(path)
		if err != nil {
			t.Fatalf("docs/upgrade.md:%d: [ab] with deploy/gate/prod.toml: %v", b.line, err)
		}
		if !g.AB.Configured() || g.AB.StoragePath != "/var/lib/ckan-b" || len(g.AB.Prepare) != 3 || len(g.AB.SwitchToB) != 1 || len(g.AB.SwitchToA) != 1 {
			t.Errorf("docs/upgrade.md:%d: [ab] read as %+v", b.line, g.AB)
		}
	}
	if n != 1 {
		t.Fatalf("docs/upgrade.md's A/B section shows [ab] %d times, want once", n)
	}
}
