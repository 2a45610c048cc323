package main

import (
	"time"

	flag "github.com/spf13/pflag"

	"github.com/ckanops/ckanops/api"
)

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
			cfgPath, asJSON := consoleFlags(fs)
			if err := parse(e, fs, args); err != nil {
				return err
			}
			if fs.NArg() > 1 {
				return usageErr("give at most one SITE")
			}
			if err := e.stopIfDry(); err != nil {
				return err
			}
			sites, err := loadSites(e, *cfgPath, fs.Arg(0))
			if err != nil {
				return err
			}
			return runStatus(e, sites, *asJSON)
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
			cfgPath, asJSON := consoleFlags(fs)
			mode := fs.String("mode", "read-only", "maintenance mode: read-only or down")
			message := fs.String("message", "", "message shown to users and API clients")
			forDur := fs.String("for", "", "expected duration, e.g. 90m or 2h30m (sets the ETA)")
			until := fs.String("until", "", "expected end, RFC 3339 (instead of --for)")
			reason := fs.String("reason", "", "why, for the audit log")
			expect := fs.Int64("expect-version", -1, "refuse the change unless the site's mode record is at this version")
			wait := fs.Bool("wait", false, "wait until the site is quiesced")
			timeout := fs.Duration("timeout", 10*time.Minute, "with --wait, give up after this long")
			if err := parse(e, fs, args); err != nil {
				return err
			}
			if m := api.Mode(*mode); m != api.ModeReadOnly && m != api.ModeDown {
				return usageErr("--mode %q: want read-only or down (use 'ckanops disable' to go live)", *mode)
			}
			req := api.ModeRequest{Mode: api.Mode(*mode), Message: *message, For: *forDur, Reason: *reason}
			if *until != "" {
				t, err := time.Parse(time.RFC3339, *until)
				if err != nil {
					return usageErr("--until %q: want RFC 3339, e.g. 2026-11-29T15:00:00Z", *until)
				}
				req.Until = &t
			}
			if *expect >= 0 {
				req.ExpectVersion = expect
			}
			if err := req.Validate(); err != nil {
				return usageErr("%v", err)
			}
			site, err := oneSite(e, fs, *cfgPath)
			if err != nil {
				return err
			}
			return runSetMode(e, site, req, *asJSON, *wait, *timeout)
		},
	})
	register(&command{
		name:    "disable",
		summary: "take a site out of maintenance (back to live)",
		usage:   "disable [flags] SITE",
		run: func(e *env, args []string) error {
			fs := newFlags(e, commands["disable"])
			cfgPath, asJSON := consoleFlags(fs)
			reason := fs.String("reason", "", "why, for the audit log")
			expect := fs.Int64("expect-version", -1, "refuse the change unless the site's mode record is at this version")
			if err := parse(e, fs, args); err != nil {
				return err
			}
			site, err := oneSite(e, fs, *cfgPath)
			if err != nil {
				return err
			}
			req := api.ModeRequest{Mode: api.ModeLive, Reason: *reason}
			if *expect >= 0 {
				req.ExpectVersion = expect
			}
			return runSetMode(e, site, req, *asJSON, false, 0)
		},
	})
	register(&command{
		name:    "check",
		summary: "run a site's health checks (CKAN, Postgres, Redis/RQ, Solr, storage, gate)",
		usage: `check [--json] SITE
Asks the site's gate for its checks report (GET /-/ckanops/health) and
prints one line per check: NAME STATUS SUMMARY. A check whose key is not
set in the gate's [checks] shows "-" (not configured); it is no failure.
The gate reuses a round of checks for its checks.interval.

Exit status: 0 every check is ok; 1 a check warns; 2 a check failed, or
the gate could not be reached or asked (2 is also the exit status of bad
usage, such as a missing SITE).`,
		run: func(e *env, args []string) error {
			fs := newFlags(e, commands["check"])
			cfgPath, asJSON := consoleFlags(fs)
			if err := parse(e, fs, args); err != nil {
				return err
			}
			site, err := oneSite(e, fs, *cfgPath)
			if err != nil {
				return checkFailure(err)
			}
			return runCheck(e, site, *asJSON)
		},
	})
}
