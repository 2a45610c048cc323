package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/charmbracelet/x/term"

	"github.com/ckanops/ckanops/config"
	"github.com/ckanops/ckanops/tui"
)

// sitesExample is shown when the console has no usable sites.toml.
const sitesExample = `A minimal sites.toml:

    [[site]]
    name = "prod"
    url = "https://data.example.org"              # the site's gate
    token_file = "~/.config/ckanops/prod.token"   # the gate's ops token (chmod 600)

Put it at $XDG_CONFIG_HOME/ckanops/sites.toml (or ~/.config/ckanops/sites.toml),
or point --config or $CKANOPS_CONFIG at it. To try ckanops without a site:
'ckanops demo'.`

func init() {
	register(&command{
		name:    "tui",
		summary: "open the console on every site of sites.toml (what 'ckanops' with no command does)",
		usage: `tui [--config FILE]
Every site at a glance; enter opens one, e enables maintenance, d disables
it, s suspends or resumes RQ, r runs the runbook, ? lists every key.`,
		run: func(e *env, args []string) error {
			fs := newFlags(e, commands["tui"])
			cfgPath := fs.String("config", "", "path to sites.toml (default $CKANOPS_CONFIG, else $XDG_CONFIG_HOME/ckanops/sites.toml)")
			if err := parse(e, fs, args); err != nil {
				return err
			}
			if fs.NArg() > 0 {
				return usageErr("the console takes no arguments (did you mean 'ckanops %s'?)", fs.Arg(0))
			}
			if err := e.stopIfDry(); err != nil {
				return err
			}
			path := *cfgPath
			if path == "" {
				p, err := config.SitesPath()
				if err != nil {
					return usageErr("%v\n\n%s", err, sitesExample)
				}
				path = p
			}
			sites, warns, err := config.LoadSites(path)
			if err != nil {
				return usageErr("%v\n\n%s", err, sitesExample)
			}
			for _, w := range warns {
				fmt.Fprintf(e.stderr, "warning: %s\n", w)
			}
			return openConsole(e, sites, path)
		},
	})
}

// openConsole runs the TUI until the operator quits or a signal comes.
// Without a terminal (or with TERM=dumb, which cannot draw it) it prints
// what 'ckanops status' prints, and says how to get the console.
func openConsole(e *env, sites *config.Sites, path string) error {
	if !term.IsTerminal(os.Stdin.Fd()) || !term.IsTerminal(os.Stdout.Fd()) || os.Getenv("TERM") == "dumb" {
		fmt.Fprintln(e.stderr, "ckanops: the console needs a terminal that can draw it (not TERM=dumb): here is 'ckanops status' instead. Scripts use 'ckanops status', 'enable', 'disable', 'check' and 'runbook', all with --json.")
		clients, err := loadSites(e, path, "")
		if err != nil {
			return err
		}
		return runStatus(e, clients, false)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGHUP)
	defer stop()
	var active []string
	err := tui.Run(ctx, sites, tui.Options{
		UserAgent: "ckanops/" + buildVersion(),
		OnQuit:    func(summary []string) { active = summary },
	})
	for _, line := range active {
		fmt.Fprintln(e.stderr, line)
	}
	return err
}
