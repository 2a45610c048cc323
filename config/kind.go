package config

import (
	"os"

	"github.com/BurntSushi/toml"
)

// Kinds of configuration file.
const (
	KindGate  = "gate"  // gate.toml
	KindSites = "sites" // sites.toml (the console's)
)

// Kind tells a gate.toml from a sites.toml by its keys: a [[site]] array
// makes a console configuration; site, listen or upstream at the top make
// a gate's. It returns "" when it cannot tell (including a file that does
// not parse: loading it then says why).
func Kind(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	var root map[string]any
	if _, err := toml.Decode(string(b), &root); err != nil {
		return ""
	}
	if _, ok := root["site"].([]map[string]any); ok {
		return KindSites
	}
	for _, k := range []string{"console", "serve"} {
		if _, ok := root[k]; ok {
			return KindSites
		}
	}
	for _, k := range []string{"site", "listen", "upstream", "auth", "state"} {
		if _, ok := root[k]; ok {
			return KindGate
		}
	}
	return ""
}
