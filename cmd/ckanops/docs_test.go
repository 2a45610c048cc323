package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// Every `ckanops ...` command line in the README and docs/*.md parses:
// it names a command that exists, with flags that command takes, in the
// order printed (flags after the SITE included), and the positional
// arguments the command wants. Each runs as a dry run: parsed and checked,
// stopped before it reads a file or calls a gate. The docs cannot drift
// from the CLI.
func TestDocumentedCommandLinesParse(t *testing.T) {
	files, _ := filepath.Glob("../../docs/*.md")
	files = append(files, "../../README.md")
	n := 0
	for _, f := range files {
		for _, cl := range commandLines(t, f) {
			t.Logf("%s:%d: %s", f, cl.line, cl.text)
			if code, errOut := dryRun(t, cl.args); code != 0 {
				t.Errorf("%s:%d: %q does not parse: exit %d\n%s", f, cl.line, cl.text, code, errOut)
			}
			n++
		}
	}
	if n < 10 {
		t.Fatalf("only %d command lines found in the docs: is the extraction broken?", n)
	}
}

// The README's first shell commands, as printed, parse (flags after the
// SITE: Go's flag package stopped at the SITE, issue 17).
func TestReadmeEnableLineParses(t *testing.T) {
	var found bool
	for _, cl := range commandLines(t, "../../README.md") {
		if len(cl.args) > 1 && cl.args[0] == "enable" && !strings.HasPrefix(cl.args[1], "-") && slices.Contains(cl.args, "--wait") {
			found = true
			if code, errOut := dryRun(t, cl.args); code != 0 {
				t.Errorf("README.md:%d: %q: exit %d\n%s", cl.line, cl.text, code, errOut)
			}
		}
	}
	if !found {
		t.Fatal("the README prints no 'ckanops enable SITE ... --wait' line")
	}
}

// The dry run is what the docs test trusts: a bad line fails it.
func TestDryRunRefusesBadCommandLines(t *testing.T) {
	for _, args := range [][]string{
		{"enable", "data-city", "--no-such-flag"},
		{"enable", "data-city", "other-site", "--wait"},
		{"enable", "--wait"},
		{"status", "data-city", "--json", "extra"},
		{"snapshot", "verify"},
		{"config", "check", "--json"},
		{"disable", "data-city", "--message"},
		{"frobnicate"},
	} {
		if code, _ := dryRun(t, args); code != exitUsage {
			t.Errorf("%q: exit %d, want %d", args, code, exitUsage)
		}
	}
}

// dryRun parses a command line as run would, stopping before any work.
func dryRun(t *testing.T, args []string) (code int, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	e := &env{stdout: &out, stderr: &errb, getenv: func(string) string { return "" }, dryRun: true}
	return run(e, args), errb.String()
}

type commandLine struct {
	line int
	text string   // as printed, comments dropped
	args []string // the arguments after "ckanops", shell quotes removed
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
		words, err := shellWords(cur.String())
		cur.Reset()
		if err != nil {
			t.Errorf("%s:%d: %v", path, start, err)
			continue
		}
		if len(words) > 0 && words[0] == "ckanops" {
			out = append(out, commandLine{start, strings.Join(words, " "), words[1:]})
		}
	}
	return out
}

// shellWords splits a shell command line into words as sh would for the
// simple lines the docs print: '...' and "..." quote, # starts a comment,
// and a word that is a pipe, a redirection or a command separator ends
// the command.
func shellWords(line string) ([]string, error) {
	var words []string
	var w strings.Builder
	inWord := false
	var quote rune
	for _, r := range line {
		switch {
		case quote != 0:
			if r == quote {
				quote = 0
			} else {
				w.WriteRune(r)
			}
		case r == '\'' || r == '"':
			quote, inWord = r, true
		case r == '#' && !inWord:
			return words, nil
		case r == ' ' || r == '\t':
			if inWord {
				words = append(words, w.String())
				w.Reset()
				inWord = false
			}
		default:
			w.WriteRune(r)
			inWord = true
		}
	}
	if quote != 0 {
		return nil, fmt.Errorf("unterminated %c quote in %q", quote, line)
	}
	if inWord {
		words = append(words, w.String())
	}
	for i, word := range words {
		switch word {
		case "|", "||", "&&", ";", "&", ">", ">>", "2>", "2>&1", "<":
			return words[:i], nil
		}
	}
	return words, nil
}
