package config

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"strings"
	"testing"
)

// defaults.go, its doc comment table and docs/config.md must agree: every
// Default constant is in the defaults table, and every row of that table
// is in the comment and in the documentation (and nothing more is).
func TestDefaultsDocumented(t *testing.T) {
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, "defaults.go", nil, parser.ParseComments)
	if err != nil {
		t.Fatal(err)
	}
	var consts []string
	var table *ast.ValueSpec
	var comment string
	for _, decl := range f.Decls {
		gd, ok := decl.(*ast.GenDecl)
		if !ok {
			continue
		}
		for _, spec := range gd.Specs {
			vs, ok := spec.(*ast.ValueSpec)
			if !ok {
				continue
			}
			for _, n := range vs.Names {
				if gd.Tok == token.CONST && strings.HasPrefix(n.Name, "Default") {
					consts = append(consts, n.Name)
				}
				if gd.Tok == token.VAR && n.Name == "defaults" {
					table = vs
					comment = gd.Doc.Text()
				}
			}
		}
	}
	if table == nil || len(consts) == 0 {
		t.Fatal("defaults.go has no defaults table or no Default constants")
	}
	used := map[string]bool{}
	ast.Inspect(table, func(n ast.Node) bool {
		if id, ok := n.(*ast.Ident); ok {
			used[id.Name] = true
		}
		return true
	})
	for _, c := range consts {
		if !used[c] {
			t.Errorf("%s is not in the defaults table (so not documented)", c)
		}
	}

	doc, err := os.ReadFile("../docs/config.md")
	if err != nil {
		t.Fatal(err)
	}
	docRows := 0
	for _, line := range strings.Split(string(doc), "\n") {
		if strings.HasPrefix(line, "| gate.toml | `") || strings.HasPrefix(line, "| sites.toml | `") {
			docRows++
		}
	}
	if docRows != len(defaults) {
		t.Errorf("docs/config.md has %d rows of defaults, defaults.go %d", docRows, len(defaults))
	}
	commentRows := map[string]bool{}
	for _, line := range strings.Split(comment, "\n") {
		commentRows[strings.Join(strings.Fields(line), " ")] = true
	}
	for _, d := range defaults {
		row := "| " + d.File + " | `" + d.Key + "` | `" + d.Value + "` |"
		if !strings.Contains(string(doc), row+"\n") {
			t.Errorf("docs/config.md lacks the row %s", row)
		}
		if !commentRows[d.File+" "+d.Key+" "+d.Value] {
			t.Errorf("the comment on defaults in defaults.go lacks %s %s %s", d.File, d.Key, d.Value)
		}
	}
}
