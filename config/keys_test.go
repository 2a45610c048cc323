package config

import (
	"bufio"
	"os"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
)

// Every key the loaders read is documented in docs/config.md, in the
// table of its file and section, and every documented key is read.
func TestDocumentedKeysAreTheCodesKeys(t *testing.T) {
	code := map[string]map[string]bool{"gate.toml": {}, "sites.toml": {}}
	var current string
	keyRecorder = func(_ string, path []string, key string) {
		var parts []string
		for _, p := range path {
			if !isElem(p) { // drop array indexes
				parts = append(parts, p)
			}
		}
		code[current][strings.Join(append(parts, key), ".")] = true
	}
	defer func() { keyRecorder = nil }()
	current = "gate.toml"
	if _, _, err := LoadGate("testdata/gate_full.toml"); err != nil {
		t.Fatal(err)
	}
	// [ab]'s storage_path and [[ab.storage]] exclude each other: the
	// second is read from a file of its own.
	if _, _, err := LoadGate("testdata/gate_ab_storages.toml"); err != nil {
		t.Fatal(err)
	}
	current = "sites.toml"
	if _, _, err := LoadSites("testdata/sites_full.toml"); err != nil {
		t.Fatal(err)
	}
	doc := documentedKeys(t, "../docs/config.md")
	for file, keys := range code {
		var leaves []string
		for k := range keys {
			if !isTable(k, keys) {
				leaves = append(leaves, k)
			}
		}
		sort.Strings(leaves)
		for _, k := range leaves {
			if file == "gate.toml" && slices.ContainsFunc(renamedChecks, func(r [2]string) bool { return "checks."+r[0] == k }) {
				continue // read only to say its new name (documented in prose)
			}
			if !doc[file][k] {
				t.Errorf("%s: key %s is read by the code but not documented in docs/config.md", file, k)
			}
		}
		for k := range doc[file] {
			if !slices.Contains(leaves, k) {
				t.Errorf("%s: key %s is documented but the code never reads it", file, k)
			}
		}
	}
}

// isTable says whether k names a table (other keys lie below it).
func isTable(k string, keys map[string]bool) bool {
	for o := range keys {
		if strings.HasPrefix(o, k+".") {
			return true
		}
	}
	return false
}

var (
	fileHeading    = regexp.MustCompile("^## (gate\\.toml|sites\\.toml)")
	sectionHeading = regexp.MustCompile("^### (.*)")
	tableName      = regexp.MustCompile("`\\[\\[?([a-z_.]+)\\]\\]?`")
	keyRow         = regexp.MustCompile("^\\| `([a-z_]+)` \\|")
)

// documentedKeys reads the key tables of docs/config.md: per file, the
// dotted keys of every "| `key` |" row, prefixed by its section's table.
func documentedKeys(t *testing.T, path string) map[string]map[string]bool {
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string]map[string]bool{"gate.toml": {}, "sites.toml": {}}
	file := ""
	var tables []string // the section's tables; "" for the top level
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if m := fileHeading.FindStringSubmatch(line); m != nil {
			file, tables = m[1], nil
			continue
		}
		if strings.HasPrefix(line, "## ") {
			file, tables = "", nil
			continue
		}
		if m := sectionHeading.FindStringSubmatch(line); m != nil {
			tables = nil
			if strings.HasPrefix(m[1], "Top level") {
				tables = []string{""}
			}
			for _, tm := range tableName.FindAllStringSubmatch(m[1], -1) {
				tables = append(tables, tm[1])
			}
			continue
		}
		m := keyRow.FindStringSubmatch(line)
		if m == nil || file == "" {
			continue
		}
		for _, tb := range tables {
			if strings.Contains(line, "(`[[") && !strings.Contains(line, "`[["+tb+"]]` only") {
				continue // a row for one of the section's tables only
			}
			k := m[1]
			if tb != "" {
				k = tb + "." + k
			}
			out[file][k] = true
		}
	}
	return out
}
