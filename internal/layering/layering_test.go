package layering

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/ckanops/ckanops"

// rule is one row of the table: what a package may import directly (of
// the module's packages), and what it must never depend on.
type rule struct {
	row      int
	stdOnly  bool
	anyOwn   bool            // "everything above"
	allowed  map[string]bool // module packages, relative to the module
	never    []string        // import paths, at any depth
	packages []string
}

// thirdParty names the modules the table calls by their short names.
var thirdParty = map[string]string{
	"pgx": "github.com/jackc/pgx/v5", "go-redis": "github.com/redis/go-redis/v9", "testing": "testing",
}

var backticked = regexp.MustCompile("`([^`]+)`")

// readTable parses the "Package layering" table of docs/architecture.md.
func readTable(t *testing.T, own map[string]bool) map[string]*rule {
	t.Helper()
	f, err := os.Open(filepath.Join("..", "..", "docs", "architecture.md"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rules := map[string]*rule{}
	in := false
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if strings.HasPrefix(line, "## ") {
			in = line == "## Package layering"
			continue
		}
		if !in || !strings.HasPrefix(line, "| `") {
			continue
		}
		cols := strings.Split(strings.Trim(line, "|"), " | ")
		if len(cols) != 3 {
			t.Fatalf("architecture.md:%d: a layering row has 3 columns: %s", n, line)
		}
		r := &rule{row: n, allowed: map[string]bool{}}
		for _, m := range backticked.FindAllStringSubmatch(cols[0], -1) {
			r.packages = append(r.packages, m[1])
		}
		may, never, _ := strings.Cut(cols[2], "Never ")
		may, _, _ = strings.Cut(may, ";")
		switch {
		case strings.Contains(may, "the standard library only"):
			r.stdOnly = true
		case strings.Contains(may, "everything above"):
			r.anyOwn = true
		}
		except := ""
		if r.anyOwn {
			_, except, _ = strings.Cut(may, "except")
		}
		for _, m := range backticked.FindAllStringSubmatch(may, -1) {
			if own[m[1]] && !strings.Contains(except, "`"+m[1]+"`") {
				r.allowed[m[1]] = true
			}
		}
		for _, m := range backticked.FindAllStringSubmatch(except, -1) {
			r.never = append(r.never, module+"/"+m[1])
		}
		for _, word := range strings.FieldsFunc(never, func(c rune) bool { return strings.ContainsRune(" ,`.", c) }) {
			switch {
			case thirdParty[word] != "":
				r.never = append(r.never, thirdParty[word])
			case own[word]:
				r.never = append(r.never, module+"/"+word)
			}
		}
		for _, p := range r.packages {
			rules[p] = r
		}
	}
	if len(rules) == 0 {
		t.Fatal("docs/architecture.md has no \"## Package layering\" table")
	}
	return rules
}

type pkg struct {
	path    string
	imports []string
	deps    []string
}

func listPackages(t *testing.T) []pkg {
	t.Helper()
	cmd := exec.Command("go", "list", "-f", "{{.ImportPath}}|{{join .Imports \",\"}}|{{join .Deps \",\"}}", module+"/...")
	cmd.Dir = filepath.Join("..", "..")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	var ps []pkg
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Split(line, "|")
		ps = append(ps, pkg{path: f[0], imports: strings.Split(f[1], ","), deps: strings.Split(f[2], ",")})
	}
	return ps
}

func isStd(path string) bool { return !strings.Contains(strings.SplitN(path, "/", 2)[0], ".") }

func TestImportsFollowTheLayeringTable(t *testing.T) {
	ps := listPackages(t)
	own := map[string]bool{}
	for _, p := range ps {
		own[strings.TrimPrefix(p.path, module+"/")] = true
	}
	rules := readTable(t, own)
	for _, p := range ps {
		rel := strings.TrimPrefix(p.path, module+"/")
		if strings.HasPrefix(rel, "bench/") || rel == "internal/layering" {
			continue
		}
		r := rules[rel]
		if r == nil {
			t.Errorf("%s has no row in docs/architecture.md's package layering table: add one", rel)
			continue
		}
		for _, imp := range p.imports {
			if imp == "" {
				continue
			}
			if r.stdOnly && !isStd(imp) {
				t.Errorf("%s imports %s, but architecture.md:%d allows the standard library only", rel, imp, r.row)
			}
			if ir, ok := strings.CutPrefix(imp, module+"/"); ok && !r.anyOwn && !r.allowed[ir] {
				t.Errorf("%s imports %s, which architecture.md:%d does not allow", rel, ir, r.row)
			}
			if ir, ok := strings.CutPrefix(imp, module+"/"); ok && r.anyOwn && slices.Contains(r.never, module+"/"+ir) {
				t.Errorf("%s imports %s, which architecture.md:%d excludes", rel, ir, r.row)
			}
		}
		for _, bad := range r.never {
			for _, d := range p.deps {
				if d == bad || strings.HasPrefix(d, bad+"/") {
					t.Errorf("%s depends on %s (directly or not), which architecture.md:%d says never", rel, d, r.row)
					break
				}
			}
		}
	}
}

// The table's promises that matter most, stated without the table, so
// that editing the doc cannot quietly drop them.
func TestTheBinaryAndTheConsoleStayLean(t *testing.T) {
	for _, p := range listPackages(t) {
		switch strings.TrimPrefix(p.path, module+"/") {
		case "cmd/ckanops":
			if slices.Contains(p.deps, "testing") {
				t.Error("the ckanops binary links package testing")
			}
		case "tui":
			for _, d := range p.deps {
				if strings.HasPrefix(d, "github.com/jackc/pgx") || strings.HasPrefix(d, "github.com/redis/go-redis") {
					t.Errorf("the console links %s", d)
				}
			}
		case "api":
			for _, d := range p.deps {
				if !isStd(d) {
					t.Errorf("api depends on %s: it is the standard library only", d)
				}
			}
		}
	}
}
