package main

import "flag"

// consoleFlags adds the flags every console subcommand shares.
func consoleFlags(fs *flag.FlagSet) (config *string, asJSON *bool) {
	config = fs.String("config", "", "path to sites.toml (default $CKANOPS_CONFIG, else $XDG_CONFIG_HOME/ckanops/sites.toml)")
	asJSON = fs.Bool("json", false, "print machine-readable JSON instead of text")
	return config, asJSON
}

func init() {
	register(&command{
		name:    "status",
		summary: "show the mode, phase and in-flight writes of every site (or one)",
		usage:   "status [--json] [SITE]",
		run: func(e *env, args []string) error {
			fs := newFlags(e, commands["status"])
			consoleFlags(fs)
			if err := parse(e, fs, args); err != nil {
				return err
			}
			return notImplemented("status", "issue 3")
		},
	})
	register(&command{
		name:    "check",
		summary: "run a site's health checks (CKAN, Postgres, Redis/RQ, Solr, storage, gate)",
		usage:   "check [--json] SITE",
		run: func(e *env, args []string) error {
			fs := newFlags(e, commands["check"])
			consoleFlags(fs)
			if err := parse(e, fs, args); err != nil {
				return err
			}
			return notImplemented("check", "the checks issue")
		},
	})
	register(&command{
		name:    "enable",
		summary: "put a site into maintenance (read-only by default)",
		usage: `enable [flags] SITE
Writes are refused at once; writes already admitted finish (the site drains).
With --wait, return only when the site is quiesced (or --timeout passes).`,
		run: func(e *env, args []string) error {
			fs := newFlags(e, commands["enable"])
			consoleFlags(fs)
			fs.String("mode", "read-only", "maintenance mode: read-only or down")
			fs.String("message", "", "message shown to users and API clients")
			fs.Duration("for", 0, "expected duration, e.g. 90m or 2h30m (sets the ETA)")
			fs.String("until", "", "expected end, RFC 3339 (instead of --for)")
			fs.String("reason", "", "why, for the audit log")
			fs.Bool("wait", false, "wait until the site is quiesced")
			fs.Duration("timeout", 0, "with --wait, give up after this long (default: the gate's drain timeout)")
			if err := parse(e, fs, args); err != nil {
				return err
			}
			return notImplemented("enable", "issue 3")
		},
	})
	register(&command{
		name:    "disable",
		summary: "take a site out of maintenance (back to live)",
		usage:   "disable [flags] SITE",
		run: func(e *env, args []string) error {
			fs := newFlags(e, commands["disable"])
			consoleFlags(fs)
			fs.String("reason", "", "why, for the audit log")
			if err := parse(e, fs, args); err != nil {
				return err
			}
			return notImplemented("disable", "issue 3")
		},
	})
	register(&command{
		name:    "runbook",
		summary: "run or attach to a site's enable -> drain -> snapshot -> migrate -> verify -> disable runbook",
		usage:   "runbook [flags] SITE",
		run: func(e *env, args []string) error {
			fs := newFlags(e, commands["runbook"])
			consoleFlags(fs)
			if err := parse(e, fs, args); err != nil {
				return err
			}
			return notImplemented("runbook", "the runbook issue")
		},
	})
	register(&command{
		name:    "demo",
		summary: "open the console on simulated CKAN sites behind real gates (no setup needed)",
		usage: `demo [flags]
Starts simulated CKAN sites in this process, a real gate in front of each,
and opens the console on them. Nothing is written outside a temp dir.`,
		run: func(e *env, args []string) error {
			fs := newFlags(e, commands["demo"])
			fs.Int("sites", 3, "how many simulated sites")
			if err := parse(e, fs, args); err != nil {
				return err
			}
			return notImplemented("demo", "the gate and TUI issues; until then 'make demo' says so")
		},
	})
	register(&command{
		name: "tui",
		run: func(e *env, args []string) error {
			fs := newFlags(e, commands["tui"])
			consoleFlags(fs)
			if err := parse(e, fs, args); err != nil {
				return err
			}
			return notImplemented("the console TUI", "the TUI issue; 'ckanops --help' lists what works now")
		},
	})
}
