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

	"github.com/ckanops/ckanops/serve"
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
	return programLines(t, path, "ckanops")
}

// programLines is commandLines for the lines that run prog.
func programLines(t *testing.T, path, prog string) []commandLine {
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
		if len(words) > 0 && words[0] == prog {
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

// Every `ssh -p 2222 ... HOST COMMAND` line the docs print (port 2222 is
// the console's; other ssh lines reach other hosts) runs over `ckanops
// serve` for an operator: the command is served over SSH and its command
// line parses. A line without a command opens the console.
func TestDocumentedSSHLinesAreServed(t *testing.T) {
	files, _ := filepath.Glob("../../docs/*.md")
	files = append(files, "../../README.md")
	operator := serve.Identity{Name: "alice", Role: serve.RoleOperator}
	n := 0
	for _, f := range files {
		for _, cl := range programLines(t, f, "ssh") {
			if !slices.Contains(cl.args, "2222") {
				continue
			}
			args := cl.args
			for len(args) > 0 && strings.HasPrefix(args[0], "-") {
				if slices.Contains([]string{"-p", "-i", "-o", "-l", "-F", "-L", "-R", "-J"}, args[0]) {
					args = args[1:]
				}
				args = args[1:]
			}
			if len(args) == 0 {
				t.Errorf("%s:%d: %q names no host", f, cl.line, cl.text)
				continue
			}
			cmd := args[1:]
			n++
			if len(cmd) == 0 {
				continue // the console
			}
			if why := refuseOverSSH(operator, cmd); why != "" {
				t.Errorf("%s:%d: %q is not served: %s", f, cl.line, cl.text, why)
			}
			if code, errOut := dryRun(t, cmd); code != 0 {
				t.Errorf("%s:%d: %q does not parse: exit %d\n%s", f, cl.line, cl.text, code, errOut)
			}
		}
	}
	if n < 3 {
		t.Fatalf("only %d ssh lines found in the docs: is the extraction broken?", n)
	}
}
