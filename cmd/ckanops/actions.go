package main

import (
	"context"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/ckanops/ckanops/api"
	"github.com/ckanops/ckanops/ckanclient"
	"github.com/ckanops/ckanops/internal/human"
)

func init() {
	register(&command{
		name:    "actions",
		summary: "list the actions a site's gate does not know (an extension's), and let CKAN class them",
		usage: `actions [--json] [--all] [--learn] SITE
Lists the CKAN actions the site's gate has seen in traffic without knowing
them (an extension's: harvest, dcat, scheming...; the gate refuses them in
read-only mode), with how often each was seen and refused, then those it
learned from CKAN and those [policy] lists. --all lists the actions of the
surface data too.

--learn makes the gate ask CKAN about each unknown action first, by a GET
on /api/3/action/NAME with no parameters: CKAN answers "use POST" for an
action that is not side_effect_free without running it, "Action name not
known" for one it does not have, and runs only side_effect_free ones. A
learned read then passes in read-only mode; a learned write, and an action
CKAN does not know, stay refused. What CKAN said is kept for its version
([policy] learned_file) and audited.

Exit status: 0 no action is unknown (after learning, with --learn); 1 some
are, or the gate could not be reached or asked.`,
		run: func(e *env, args []string) error {
			fs := newFlags(e, commands["actions"])
			cfgPath, asJSON := consoleFlags(fs)
			all := fs.Bool("all", false, "list the surface data's actions too")
			learn := fs.Bool("learn", false, "ask CKAN about the unknown actions first")
			if err := parse(e, fs, args); err != nil {
				return err
			}
			site, err := oneSite(e, fs, *cfgPath)
			if err != nil {
				return err
			}
			return runActions(e, site, *asJSON, *all, *learn)
		},
	})
}

func runActions(e *env, s siteClient, asJSON, all, learn bool) error {
	var (
		l   *api.ActionList
		err error
	)
	if learn {
		ctx, cancel := context.WithTimeout(e.context(), ckanclient.SlowCallTimeout)
		defer cancel()
		if err := checkSiteIdentity(ctx, s); err != nil {
			return &exitError{code: exitFail, err: err}
		}
		l, err = s.client.LearnActions(ctx)
	} else {
		l, err = s.client.Actions(e.context())
	}
	if err != nil {
		return &exitError{code: exitFail, err: fmt.Errorf("site %s: %w", s.site.Name, err)}
	}
	unknown, asked := 0, 0
	for _, a := range l.Actions {
		if a.Class == api.ActionUnknown {
			unknown++
			if a.Source == api.SourceLearned {
				asked++
			}
		}
	}
	if asJSON {
		if err := writeIndented(e, l); err != nil {
			return err
		}
	} else {
		printActions(e, l, all)
	}
	if unknown > 0 {
		hint := "'ckanops actions --learn " + s.site.Name + "' asks CKAN about them"
		if asked == unknown {
			hint = "CKAN could not class them (see each one's answer); allow_actions in gate.toml's [policy] lets a read through"
		}
		return &exitError{code: exitFail, err: fmt.Errorf("site %s: %d unknown action(s), refused in read-only mode: %s", s.site.Name, unknown, hint)}
	}
	return nil
}

func printActions(e *env, l *api.ActionList, all bool) {
	fmt.Fprintf(e.stdout, "site %s: rules of CKAN surface %s", l.Site, l.Surface)
	if l.CKANVersion != "" {
		fmt.Fprintf(e.stdout, " (CKAN %s)", l.CKANVersion)
	}
	fmt.Fprintln(e.stdout)
	if len(l.Learned) > 0 {
		fmt.Fprintf(e.stdout, "asked CKAN about %d action(s):\n", len(l.Learned))
		tw := tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', 0)
		for _, a := range l.Learned {
			fmt.Fprintf(tw, "  %s\t%s\t%s\n", a.Name, a.Class, a.Answer)
		}
		tw.Flush()
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ACTION\tCLASS\tSOURCE\tSEEN\tREFUSED\tLAST SEEN")
	surface, shown := 0, 0
	now := time.Now()
	for _, a := range l.Actions {
		if a.Source == api.SourceSurface && !all {
			surface++
			continue
		}
		last := "-"
		if a.LastSeen != nil {
			last = human.Ago(now.Sub(*a.LastSeen)) + " ago"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%s\n", a.Name, a.Class, a.Source, a.Seen, a.Refused, last)
		shown++
	}
	if shown > 0 {
		tw.Flush()
	} else {
		fmt.Fprintln(e.stdout, "no action beyond the surface data's was seen, learned or listed in [policy]")
	}
	if surface > 0 {
		fmt.Fprintf(e.stdout, "(%d action(s) of the surface data not listed: --all lists them)\n", surface)
	}
}
