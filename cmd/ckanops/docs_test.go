package main

import (
	"bufio"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// Every `ckanops ...` command line in the README and docs/*.md names a
// command that exists, with flags that command takes: the docs cannot
// drift from the CLI.
func TestDocumentedCommandLinesParse(t *testing.T) {
	files, _ := filepath.Glob("../../docs/*.md")
	files = append(files, "../../README.md")
	flagsOf := map[string]map[string]bool{}
	flagRE := regexp.MustCompile(`(?m)^  -([a-z][a-z0-9-]*)`)
	n := 0
	for _, f := range files {
		for _, cl := range commandLines(t, f) {
			args := strings.Fields(cl.text)[1:]
			name := "tui"
			if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
				name, args = args[0], args[1:]
			}
			if _, ok := commands[name]; !ok {
				t.Errorf("%s:%d: %q: no command %q", f, cl.line, cl.text, name)
				continue
			}
			// A command with subcommands (snapshot verify, config check)
			// lists its flags under the subcommand's --help.
			key, help := name, []string{name, "--help"}
			if len(args) > 0 && !strings.HasPrefix(args[0], "-") && (name == "snapshot" || name == "config") {
				key, help = name+" "+args[0], []string{name, args[0], "--help"}
			}
			if flagsOf[key] == nil {
				code, out, _ := runCLI(t, help...)
				if code != 0 {
					t.Errorf("%s:%d: %q: 'ckanops %s' fails: exit %d", f, cl.line, cl.text, strings.Join(help, " "), code)
				}
				flagsOf[key] = map[string]bool{}
				for _, m := range flagRE.FindAllStringSubmatch(out, -1) {
					flagsOf[key][m[1]] = true
				}
			}
			for _, a := range args {
				if !strings.HasPrefix(a, "-") {
					continue
				}
				fl, _, _ := strings.Cut(strings.TrimLeft(a, "-"), "=")
				if !flagsOf[key][fl] {
					t.Errorf("%s:%d: %q: 'ckanops %s' has no flag -%s", f, cl.line, cl.text, key, fl)
				}
			}
			n++
		}
	}
	if n < 10 {
		t.Fatalf("only %d command lines found in the docs: is the extraction broken?", n)
	}
}

type commandLine struct {
	line int
	text string
}

// commandLines returns the `ckanops ...` lines of a file's ```sh blocks,
// with backslash continuations joined and comments and quoted text
// (which may hold anything) dropped.
func commandLines(t *testing.T, path string) []commandLine {
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	quoted := regexp.MustCompile(`"[^"]*"|'[^']*'`)
	var out []commandLine
	in := false
	var cur strings.Builder
	start := 0
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		l := strings.TrimSpace(sc.Text())
		switch {
		case strings.HasPrefix(l, "```"):
			in = l == "```sh"
			continue
		case !in:
			continue
		}
		if cur.Len() == 0 {
			start = n
		}
		cont := strings.HasSuffix(strings.TrimSpace(l), "\\")
		cur.WriteString(strings.TrimSuffix(strings.TrimSpace(l), "\\") + " ")
		if cont {
			continue
		}
		text := quoted.ReplaceAllString(cur.String(), "X")
		text, _, _ = strings.Cut(text, "#")
		cur.Reset()
		text = strings.TrimSpace(text)
		if strings.HasPrefix(text, "ckanops ") || text == "ckanops" {
			out = append(out, commandLine{start, text})
		}
	}
	return out
}
