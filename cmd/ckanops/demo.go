package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/charmbracelet/x/term"

	"github.com/ckanops/ckanops/config"
	"github.com/ckanops/ckanops/internal/demo"
	"github.com/ckanops/ckanops/tui"
)

func init() {
	register(&command{
		name:    "demo",
		summary: "simulated CKAN sites behind real gates, to try ckanops with no setup",
		usage: `demo [flags]
Starts simulated CKAN sites in this process, a real gate in front of each,
with light synthetic traffic (reads, and slow writes so a drain shows), and
opens the console on them. Each gate runs its runbook (snapshots go to a
temporary directory). With --headless (or without a terminal) it prints how
to drive the sites with the CLI instead. Quitting the console (q), or
Ctrl-C, stops the demo and removes its temporary directory.`,
		run: func(e *env, args []string) error {
			fs := newFlags(e, commands["demo"])
			n := fs.Int("sites", 3, "how many simulated sites")
			quiet := fs.Bool("quiet", false, "no synthetic traffic")
			stopAfter := fs.Duration("stop-after", 0, "stop by itself after this long (0: run until Ctrl-C)")
			headless := fs.Bool("headless", false, "print how to drive the sites with the CLI instead of opening the console")
			noBackends := fs.Bool("no-backends", false, "do not start a throwaway Postgres and Redis (the DB and RQ columns then say \"not configured\")")
			infoFile := fs.String("info", "", "write the demo's sites.toml path and info URL to this file as JSON (for scripts and tests)")
			if err := parse(e, fs, args); err != nil {
				return err
			}
			if err := e.stopIfDry(); err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
			defer stop()
			if *stopAfter > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, *stopAfter)
				defer cancel()
			}
			d, err := demo.Start(ctx, demo.Options{Sites: *n, Traffic: !*quiet, Backends: !*noBackends})
			if err != nil {
				return err
			}
			defer func() {
				d.Close()
				if d.Kept {
					fmt.Fprintf(e.stderr, "ckanops demo: kept %s: it holds the snapshots your runbooks took (remove it when done)\n", d.Dir)
				}
			}()
			if *infoFile != "" {
				b, _ := json.Marshal(map[string]string{"sites_file": d.SitesFile, "info_url": d.InfoURL, "dir": d.Dir, "token": d.Token})
				if err := os.WriteFile(*infoFile, b, 0o600); err != nil {
					return err
				}
			}
			if !*headless && term.IsTerminal(os.Stdin.Fd()) && term.IsTerminal(os.Stdout.Fd()) {
				sites, _, err := config.LoadSites(d.SitesFile)
				if err != nil {
					return err
				}
				return tui.Run(ctx, sites, tui.Options{UserAgent: "ckanops-demo/" + buildVersion()})
			}
			w := e.stdout
			fmt.Fprintf(w, "ckanops demo: %d simulated CKAN sites, each behind a real gate (headless).\n", len(d.Sites))
			for _, n := range d.Notes {
				fmt.Fprintf(w, "  note: %s\n", n)
			}
			fmt.Fprintln(w)
			for _, s := range d.Sites {
				fmt.Fprintf(w, "  %-14s gate %s   (CKAN %s behind it at %s)\n", s.Name, s.GateURL, s.Sim.Surface().Version, s.CKANURL)
			}
			fmt.Fprintf(w, "\nIn another shell:\n")
			fmt.Fprintf(w, "  export CKANOPS_CONFIG=%s\n", d.SitesFile)
			fmt.Fprintf(w, "  ckanops status\n")
			fmt.Fprintf(w, "  ckanops enable %s --message \"Snapshot in progress\" --for 30m --wait\n", d.Sites[0].Name)
			fmt.Fprintf(w, "  curl -i -X POST %s/api/3/action/package_create     # 503, CKAN's envelope\n", d.Sites[0].GateURL)
			fmt.Fprintf(w, "  ckanops disable %s\n", d.Sites[0].Name)
			fmt.Fprintf(w, "  ckanops runbook %s                                  # enable, drain, snapshot, migrate, verify, disable\n", d.Sites[0].Name)
			fmt.Fprintf(w, "  ckanops                                               # the console\n")
			fmt.Fprintf(w, "\nCtrl-C stops the demo and removes %s.\n", d.Dir)
			<-ctx.Done()
			fmt.Fprintln(w, "\nckanops demo: stopping.")
			return nil
		},
	})
}
