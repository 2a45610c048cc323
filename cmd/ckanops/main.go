// Command ckanops is CKAN's read-only maintenance mode and its console.
//
// One binary, two roles: `ckanops gate` is the reverse proxy that runs in
// front of each CKAN web node and enforces the mode; every other subcommand
// is the operator's console (TUI and CLI), which talks only to gates.
//
// This package parses flags and dispatches; the work lives in the gate, tui,
// runbook, checks, ckanclient and config packages.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"

	"github.com/charmbracelet/x/term"
	flag "github.com/spf13/pflag"
)

// command is one subcommand: its name, a one-line summary for the list,
// usage text, and the function that runs it.
type command struct {
	name    string
	summary string
	usage   string // shown by `ckanops NAME --help`, after the flags
	run     func(env *env, args []string) error
}

// env is what a subcommand may touch of the process: its streams and the
// environment. Tests supply their own.
type env struct {
	stdin          io.Reader // nil reads as empty
	stdout, stderr io.Writer
	getenv         func(string) string
	// dryRun makes a command stop with errDryRun once its command line is
	// parsed and checked, before it reads a file or calls a gate: the
	// tests parse the command lines the docs and the demo print.
	dryRun bool

	// The SSH console (serve.go) runs commands for the people connected:
	// ctx ends with their session (nil: the process's, ended by its
	// signals); sitesPath is the host's sites.toml (--config is refused);
	// actor names the person to the gates; readOnly, for a viewer, makes
	// the gate clients refuse every change with this reason.
	ctx       context.Context
	sitesPath string
	actor     string
	readOnly  string
	// terminal says stdin is a person's terminal though not a local one
	// (an SSH session with a PTY): the runbook may ask.
	terminal bool
}

// context returns the context a command's calls run under.
func (e *env) context() context.Context {
	if e.ctx != nil {
		return e.ctx
	}
	return context.Background()
}

// interruptible returns a context that ends with the command: on SIGINT
// or SIGTERM for the process, or with the SSH session (whose signals are
// not the process's).
func (e *env) interruptible() (context.Context, context.CancelFunc) {
	if e.ctx != nil {
		return context.WithCancel(e.ctx)
	}
	return signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
}

// errDryRun is what a command returns in a dry run once its command line
// is known good; run reports it as success.
var errDryRun = errors.New("dry run: the command line parses")

// stopIfDry returns errDryRun in a dry run, else nil.
func (e *env) stopIfDry() error {
	if e.dryRun {
		return errDryRun
	}
	return nil
}

// isTerminal reports whether r is a terminal (a person may answer).
func isTerminal(r io.Reader) bool {
	f, ok := r.(*os.File)
	return ok && term.IsTerminal(f.Fd())
}

// exitError carries a specific exit code out of a command.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// Exit codes: 0 ok, 1 the operation failed, 2 bad usage or not available.
const (
	exitFail  = 1
	exitUsage = 2
)

func usageErr(format string, a ...any) error {
	return &exitError{code: exitUsage, err: fmt.Errorf(format, a...)}
}

// notImplemented is the honest answer of a subcommand whose work has not
// landed yet: exit code 2 and where it is tracked.
func notImplemented(what, issue string) error {
	return &exitError{code: exitUsage, err: fmt.Errorf("%s is not implemented in this build yet (tracked in %s)", what, issue)}
}

var commands = map[string]*command{}

func register(c *command) { commands[c.name] = c }

func main() {
	e := &env{stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr, getenv: os.Getenv}
	os.Exit(run(e, os.Args[1:]))
}

// run executes the command line and returns the process exit code.
func run(e *env, args []string) int {
	if len(args) == 0 {
		// With no arguments the console opens its TUI, as `ckanops demo`
		// does for the embedded sites.
		args = []string{"tui"}
	}
	name := args[0]
	switch name {
	case "-h", "-help", "--help", "help", "-v", "--version":
	default:
		if strings.HasPrefix(name, "-") { // `ckanops --config FILE`: the console's flags
			args = append([]string{"tui"}, args...)
			name = "tui"
		}
	}
	switch name {
	case "-h", "-help", "--help", "help":
		if len(args) > 1 {
			if c, ok := commands[args[1]]; ok {
				_ = c.run(e, []string{"--help"})
				return 0
			}
		}
		printUsage(e.stdout)
		return 0
	case "-v", "--version":
		name = "version"
	}
	c, ok := commands[name]
	if !ok {
		fmt.Fprintf(e.stderr, "ckanops: unknown command %q\n\n", name)
		printUsage(e.stderr)
		return exitUsage
	}
	err := c.run(e, args[1:])
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp), errors.Is(err, errDryRun):
		return 0
	}
	fmt.Fprintf(e.stderr, "ckanops %s: %v\n", name, err)
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	return exitFail
}

func printUsage(w io.Writer) {
	fmt.Fprintln(w, "ckanops: read-only maintenance mode for CKAN, and its console")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Usage: ckanops <command> [flags] [args]")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Commands:")
	names := make([]string, 0, len(commands))
	for n, c := range commands {
		if c.summary != "" {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-9s %s\n", n, commands[n].summary)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Run 'ckanops <command> --help' for a command's flags.")
	fmt.Fprintln(w, "With no command, ckanops opens the console for the sites in sites.toml.")
}

// newFlags returns a FlagSet for a subcommand whose --help prints the
// command's usage, its flags and its notes to stdout. Flags may stand
// before, between and after the positional arguments (`enable SITE
// --wait`); "--" ends them.
func newFlags(e *env, c *command) *flag.FlagSet {
	fs := flag.NewFlagSet("ckanops "+c.name, flag.ContinueOnError)
	fs.SetInterspersed(true)
	fs.SetOutput(e.stderr)
	fs.Usage = func() {
		out := fs.Output()
		fmt.Fprintf(out, "%s\n\n", c.summary)
		fmt.Fprintf(out, "Usage: ckanops %s\n", strings.TrimSpace(firstLine(c.usage)))
		if fs.HasFlags() {
			fmt.Fprintln(out, "\nFlags:")
			// pflag writes a switch as "--json[=true|false]"; "--json" is
			// how the docs spell it (the column stays aligned).
			const boolValue = "[=true|false]"
			fmt.Fprint(out, strings.ReplaceAll(fs.FlagUsages(), boolValue, strings.Repeat(" ", len(boolValue))))
		}
		if rest := restLines(c.usage); rest != "" {
			fmt.Fprintf(out, "\n%s\n", rest)
		}
	}
	return fs
}

// parse parses args, sending --help to stdout (it was asked for) and
// errors to stderr with exit code 2.
func parse(e *env, fs *flag.FlagSet, args []string) error {
	for _, a := range args {
		if a == "-h" || a == "-help" || a == "--help" {
			fs.SetOutput(e.stdout)
			fs.Usage()
			return flag.ErrHelp
		}
		if a == "--" {
			break
		}
	}
	if err := fs.Parse(singleDashLongFlags(fs, args)); err != nil {
		return &exitError{code: exitUsage, err: fmt.Errorf("%w (see '%s --help')", err, fs.Name())}
	}
	return nil
}

// singleDashLongFlags spells -json and -config=FILE, which ckanops took
// before its flags were pflag's, as --json and --config=FILE: pflag would
// read "-json" as the one-letter flags j, s, o and n. Only the names of
// fs's flags are rewritten, never a flag's value or what follows "--".
func singleDashLongFlags(fs *flag.FlagSet, args []string) []string {
	out := make([]string, 0, len(args))
	valueNext := false // the previous argument is a flag that takes this one as its value
	for i, a := range args {
		if a == "--" {
			return append(out, args[i:]...)
		}
		if valueNext {
			valueNext = false
			out = append(out, a)
			continue
		}
		name, _, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		f := fs.Lookup(name)
		if f != nil && len(name) > 1 && strings.HasPrefix(a, "-") && !strings.HasPrefix(a, "--") {
			a = "-" + a
		}
		if f != nil && strings.HasPrefix(a, "--") && !hasValue && f.NoOptDefVal == "" {
			valueNext = true
		}
		out = append(out, a)
	}
	return out
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}

func restLines(s string) string {
	_, rest, _ := strings.Cut(s, "\n")
	return strings.TrimSpace(rest)
}
