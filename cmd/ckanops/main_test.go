package main

import (
	"bytes"
	"io"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ckanops/ckanops/api"
)

func runCLI(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	e := &env{stdout: &out, stderr: &errb, getenv: func(string) string { return "" }}
	code = run(e, args)
	return code, out.String(), errb.String()
}

var documented = []string{"gate", "status", "check", "enable", "disable", "runbook", "snapshot", "config", "tui", "demo", "version"}

func TestHelpListsEveryCommand(t *testing.T) {
	for _, args := range [][]string{{"--help"}, {"help"}, {"-h"}} {
		code, out, _ := runCLI(t, args...)
		if code != 0 {
			t.Fatalf("%v: exit %d", args, code)
		}
		for _, c := range documented {
			if !strings.Contains(out, "\n  "+c+" ") {
				t.Errorf("%v: help does not list %q:\n%s", args, c, out)
			}
		}
	}
}

func TestCommandHelp(t *testing.T) {
	for _, c := range documented {
		code, out, errOut := runCLI(t, c, "--help")
		if code != 0 || !strings.Contains(out, "Usage: ckanops "+c) {
			t.Errorf("%s --help: exit %d, stdout %q, stderr %q", c, code, out, errOut)
		}
	}
	_, out, _ := runCLI(t, "enable", "--help")
	for _, f := range []string{"-mode", "-message", "-for", "-until", "-reason", "-wait", "-json", "-config"} {
		if !strings.Contains(out, f) {
			t.Errorf("enable --help lacks %s", f)
		}
	}
	_, out, _ = runCLI(t, "help", "gate")
	if !strings.Contains(out, "-config") {
		t.Errorf("help gate lacks -config:\n%s", out)
	}
}

func TestVersion(t *testing.T) {
	for _, args := range [][]string{{"version"}, {"--version"}} {
		code, out, _ := runCLI(t, args...)
		if code != 0 || !strings.HasPrefix(out, "ckanops ") {
			t.Errorf("%v: exit %d, %q", args, code, out)
		}
	}
}

func TestUnknownCommandAndBadFlag(t *testing.T) {
	code, _, errOut := runCLI(t, "frobnicate")
	if code != exitUsage || !strings.Contains(errOut, `unknown command "frobnicate"`) {
		t.Errorf("unknown command: exit %d, stderr %q", code, errOut)
	}
	code, _, errOut = runCLI(t, "status", "--no-such-flag")
	if code != exitUsage || !strings.Contains(errOut, "no-such-flag") {
		t.Errorf("bad flag: exit %d, stderr %q", code, errOut)
	}
}

func TestStatusTextShowsGatesApplied(t *testing.T) {
	now := time.Now()
	stale := now.Add(-90 * time.Second)
	st := &api.Status{
		Site: "prod", Mode: "read-only", Phase: "quiesced", Since: now.Add(-time.Hour), Version: 7,
		Gates: []api.GateInfo{
			{ID: "web1", Version: 7, Seen: now},
			{ID: "web2", Version: 6, Seen: now},
			{ID: "web3", Version: 7, Seen: now},
			{ID: "web4", Version: 5, Seen: now.Add(-time.Hour), Gone: true},
		},
		Store: &api.StoreHealth{Kind: "redis", OK: false, StaleSince: &stale},
	}
	var out bytes.Buffer
	printStatus(&env{stdout: &out}, []siteStatus{{Site: "prod", Status: st}, {Site: "dead", Error: "nothing is listening"}})
	text := out.String()
	for _, want := range []string{" 2/3 ", "prod: applied 2/3 gates; lagging: web2", "gate web4 is gone", "state store (redis) unreachable for 1m", "dead", "nothing is listening"} {
		if !strings.Contains(text, want) {
			t.Errorf("status text lacks %q:\n%s", want, text)
		}
	}
}

func TestConsoleWithoutConfigShowsAnExample(t *testing.T) {
	missing := t.TempDir() + "/nope/sites.toml"
	for _, args := range [][]string{{"--config", missing}, {"tui", "--config", missing}} {
		code, _, errOut := runCLI(t, args...)
		if code != exitUsage || !strings.Contains(errOut, missing) || !strings.Contains(errOut, "[[site]]") || !strings.Contains(errOut, "ckanops demo") {
			t.Errorf("%v: exit %d, stderr:\n%s", args, code, errOut)
		}
	}
	bad := t.TempDir() + "/sites.toml"
	if err := os.WriteFile(bad, []byte("[[site]]\nname = \"prod\"\nurl = \"https://data.example.org\"\ntoken_file = \"/t\"\ncolour = \"red\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, _, errOut := runCLI(t, "--config", bad)
	if code != exitUsage || !strings.Contains(errOut, "sites.toml:5: site.colour: unknown key") {
		t.Errorf("bad config: exit %d, stderr:\n%s", code, errOut)
	}
}

// Flags stand anywhere among the positional arguments; "--" ends them;
// -json, the spelling of Go's flag package, still means --json.
func TestFlagsAnywhere(t *testing.T) {
	for _, c := range []struct {
		args []string
		pos  []string
		msg  string
		json bool
	}{
		{args: []string{"data-city", "--message", "M", "--json"}, pos: []string{"data-city"}, msg: "M", json: true},
		{args: []string{"--json", "data-city", "--message=M"}, pos: []string{"data-city"}, msg: "M", json: true},
		{args: []string{"-json", "data-city", "-message", "M"}, pos: []string{"data-city"}, msg: "M", json: true},
		{args: []string{"-message=M", "data-city"}, pos: []string{"data-city"}, msg: "M"},
		// A value is never taken for a flag, nor what follows "--".
		{args: []string{"data-city", "--message", "-json"}, pos: []string{"data-city"}, msg: "-json"},
		{args: []string{"-message", "--json", "data-city"}, pos: []string{"data-city"}, msg: "--json"},
		{args: []string{"--json", "--", "-json", "--message"}, pos: []string{"-json", "--message"}, json: true},
		{args: []string{"data-city", "--", "--", "x"}, pos: []string{"data-city", "--", "x"}},
	} {
		e := &env{stdout: io.Discard, stderr: io.Discard}
		fs := newFlags(e, commands["enable"])
		asJSON := fs.Bool("json", false, "")
		msg := fs.String("message", "", "")
		if err := parse(e, fs, c.args); err != nil {
			t.Errorf("%q: %v", c.args, err)
			continue
		}
		if !slices.Equal(fs.Args(), c.pos) || *msg != c.msg || *asJSON != c.json {
			t.Errorf("%q: args %q, --message %q, --json %v; want %q, %q, %v", c.args, fs.Args(), *msg, *asJSON, c.pos, c.msg, c.json)
		}
	}
}
