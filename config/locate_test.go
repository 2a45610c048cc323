package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"
)

const tricky = `# comment [not] a = 1
top = "x" # trailing = comment
"quoted key" = 1
dotted.inner = 'lit'
ml = """
fake = 1
[fake]
"""
ml2 = '''
[[fake2]]
'''
arr = [
  "a",   # comment ]
  { k = 1, j = [1, 2] },
  [3, 4],
]
inline = { a = 1, b.c = "}" }
date = 1979-05-27 07:32:00
after_date = 2

[table]
x = 1
[table.sub]
y = 2

[[aot]]
n = 1
[aot.child]
c = 1
[[aot]]
n = "a\"b"
[[aot.nested]]
m = 1
[[aot.nested]]
m = 2
`

func TestLocateKeys(t *testing.T) {
	var m map[string]any
	if _, err := toml.Decode(tricky, &m); err != nil {
		t.Fatalf("the test document is not TOML: %v", err)
	}
	lines := locateKeys(tricky)
	e0, e1, e2 := elem(0), elem(1), elem(2)
	want := []struct {
		path []string
		line int
	}{
		{[]string{"top"}, 2},
		{[]string{"quoted key"}, 3},
		{[]string{"dotted"}, 4},
		{[]string{"dotted", "inner"}, 4},
		{[]string{"ml"}, 5},
		{[]string{"ml2"}, 9},
		{[]string{"arr"}, 12},
		{[]string{"arr", e0}, 13},
		{[]string{"arr", e1}, 14},
		{[]string{"arr", e1, "k"}, 14},
		{[]string{"arr", e1, "j", e1}, 14},
		{[]string{"arr", e2}, 15},
		{[]string{"inline", "a"}, 17},
		{[]string{"inline", "b", "c"}, 17},
		{[]string{"date"}, 18},
		{[]string{"after_date"}, 19},
		{[]string{"table"}, 21},
		{[]string{"table", "x"}, 22},
		{[]string{"table", "sub"}, 23},
		{[]string{"table", "sub", "y"}, 24},
		{[]string{"aot"}, 26},
		{[]string{"aot", e0}, 26},
		{[]string{"aot", e0, "n"}, 27},
		{[]string{"aot", e0, "child"}, 28},
		{[]string{"aot", e0, "child", "c"}, 29},
		{[]string{"aot", e1}, 30},
		{[]string{"aot", e1, "n"}, 31},
		{[]string{"aot", e1, "nested", e0}, 32},
		{[]string{"aot", e1, "nested", e0, "m"}, 33},
		{[]string{"aot", e1, "nested", e1, "m"}, 35},
	}
	for _, w := range want {
		if got := lines[pathKey(w.path)]; got != w.line {
			t.Errorf("%s: line %d, want %d", dotted(w.path), got, w.line)
		}
	}
	for _, bogus := range []string{"fake", "fake2", "not", "a", "07:32:00"} {
		if ln, ok := lines[bogus]; ok {
			t.Errorf("found key %q (line %d) that is not in the document", bogus, ln)
		}
	}
}

// Every key the TOML library finds in the test files has a line.
func TestLocateKeysFindsEveryKey(t *testing.T) {
	files, _ := filepath.Glob("testdata/*.toml")
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		md, err := toml.Decode(string(data), &m)
		if err != nil {
			continue // syntax-error cases
		}
		found := map[string]bool{}
		for k := range locateKeys(string(data)) {
			found[dotted(strings.Split(k, "\x00"))] = true
		}
		for _, k := range md.Keys() {
			if !found[k.String()] {
				t.Errorf("%s: no line for %s", f, k)
			}
		}
	}
}
