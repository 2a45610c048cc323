package main

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/ckanops/ckanops/api"
	"github.com/ckanops/ckanops/internal/human"
)

func init() {
	register(&command{
		name:    "schedule",
		summary: "plan a site's maintenance window: announced ahead, started on time by the gates",
		usage: `schedule [flags] SITE
With --at and --for, plans the window: from --announce before it (24h by
default) pages carry an announcement banner, status_show gains
result.maintenance and API responses the Ckanops-Maintenance-Window header;
at TIME the gates switch the site to --mode by themselves (or, with
--runbook, start the runbook, which confirms its steps by itself), with the
window's end as its ETA. Past the end the site shows an overrun; nothing
switches back by itself. TIME is RFC 3339 (2026-12-24T20:00:00Z) or
+DURATION from now (+2h).

Without --at, shows the planned window; --cancel cancels it.`,
		run: runSchedule,
	})
}

func runSchedule(e *env, args []string) error {
	fs := newFlags(e, commands["schedule"])
	cfgPath, asJSON := consoleFlags(fs)
	at := fs.String("at", "", "the window's start: RFC 3339, or +DURATION from now (`TIME`)")
	forDur := fs.String("for", "", "the window's planned length, e.g. 90m or 2h")
	message := fs.String("message", "", "what users and API clients are told, before and during the window")
	announce := fs.String("announce", "24h", "announce the window this long before it starts (0s: not at all)")
	mode := fs.String("mode", "read-only", "the window's mode: read-only or down")
	withRunbook := fs.Bool("runbook", false, "start the runbook at TIME instead of a plain mode change (it confirms its steps by itself)")
	skipMigrate := fs.Bool("skip-migrate", false, "with --runbook: skip the migrate step")
	cancel := fs.Bool("cancel", false, "cancel the planned window")
	reason := fs.String("reason", "", "why, for the audit log")
	expect := fs.Int64("expect-version", -1, "refuse the change unless the site's mode record is at this version")
	if err := parse(e, fs, args); err != nil {
		return err
	}
	setting := *at != "" || *forDur != "" || *message != "" || *withRunbook || *skipMigrate || fs.Changed("announce") || fs.Changed("mode")
	if *cancel && setting {
		return usageErr("--cancel takes no window flags (only --reason and --expect-version)")
	}
	var expectPtr *int64
	if *expect >= 0 {
		expectPtr = expect
	}
	var req api.ScheduleRequest
	if setting {
		if *at == "" || *forDur == "" {
			return usageErr("a window needs --at TIME and --for DURATION")
		}
		t, err := parseWhen(*at, time.Now())
		if err != nil {
			return usageErr("--at %q: %v", *at, err)
		}
		req = api.ScheduleRequest{At: t, For: *forDur, Message: *message, Mode: api.Mode(*mode), Announce: *announce,
			Runbook: *withRunbook, SkipMigrate: *skipMigrate, Reason: *reason, ExpectVersion: expectPtr}
		if err := req.Validate(time.Now()); err != nil {
			return usageErr("%v", err)
		}
	} else if !*cancel && (*reason != "" || expectPtr != nil) {
		return usageErr("--reason and --expect-version go with --at or --cancel")
	}
	site, err := oneSite(e, fs, *cfgPath)
	if err != nil {
		return err
	}
	ctx := e.context()
	var st *api.Status
	switch {
	case setting:
		if err := checkSiteIdentity(ctx, site); err != nil {
			return err
		}
		st, err = site.client.SetSchedule(ctx, req)
	case *cancel:
		if err := checkSiteIdentity(ctx, site); err != nil {
			return err
		}
		before, serr := site.client.Schedule(ctx)
		if serr != nil {
			return serr
		}
		st, err = site.client.CancelSchedule(ctx, expectPtr, *reason)
		if err == nil && before.Schedule == nil && !*asJSON {
			fmt.Fprintf(e.stdout, "%s: no window planned: nothing was changed\n", site.site.Name)
			return nil
		}
	default:
		st, err = site.client.Status(ctx)
	}
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(e.stdout)
		enc.SetIndent("", "  ")
		if setting || *cancel {
			return enc.Encode(st)
		}
		return enc.Encode(api.ScheduleState{Schedule: st.Schedule, Version: st.Version, Overrun: st.Overrun})
	}
	now := time.Now()
	switch {
	case setting:
		fmt.Fprintf(e.stdout, "%s: window planned, version %d\n", site.site.Name, st.Version)
	case *cancel:
		fmt.Fprintf(e.stdout, "%s: window cancelled, version %d\n", site.site.Name, st.Version)
	}
	for _, line := range windowLines(st, now) {
		fmt.Fprintf(e.stdout, "%s: %s\n", site.site.Name, line)
	}
	return nil
}

// parseWhen reads a time as RFC 3339 or +DURATION from now.
func parseWhen(s string, now time.Time) (time.Time, error) {
	if rest, ok := strings.CutPrefix(s, "+"); ok {
		d, err := time.ParseDuration(rest)
		if err != nil || d <= 0 {
			return time.Time{}, fmt.Errorf("want +DURATION, such as +2h or +90m")
		}
		return now.Add(d).Truncate(time.Second), nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("want RFC 3339 (2026-12-24T20:00:00Z) or +DURATION (+2h)")
	}
	return t, nil
}

// windowLines says what st plans, or its overrun.
func windowLines(st *api.Status, now time.Time) []string {
	var out []string
	if st.Overrun && st.Until != nil {
		out = append(out, fmt.Sprintf("OVERRUN: %s past the planned end (%s), still %s; ending it is your call: ckanops disable %s",
			human.Ago(now.Sub(*st.Until)), when(*st.Until, now), st.Mode, st.Site))
	}
	s := st.Schedule
	if s == nil {
		if !st.Overrun {
			out = append(out, "no window planned")
		}
		return out
	}
	what := string(s.Mode)
	if s.Runbook {
		what = "runbook (" + what + ")"
		if s.SkipMigrate {
			what += ", migrate skipped"
		}
	}
	out = append(out, fmt.Sprintf("%s window %s for %s, until %s", what, when(s.At, now), s.For, when(s.End(), now)))
	switch {
	case s.Announcing(now):
		out = append(out, "announced since "+when(s.AnnounceFrom, now))
	case now.Before(s.AnnounceFrom):
		out = append(out, "announced from "+when(s.AnnounceFrom, now))
	case s.Due(now):
		out = append(out, "due: the gates start it within a second (the state store must answer)")
	}
	if s.Message != "" {
		out = append(out, "message: "+oneLine(s.Message, 100))
	}
	if s.Actor != "" {
		by := "planned by " + s.Actor
		if s.Reason != "" {
			by += ": " + oneLine(s.Reason, 80)
		}
		out = append(out, by)
	}
	return out
}

// when shows a time with how far it is from now.
func when(t, now time.Time) string {
	stamp := t.Local().Format("2006-01-02 15:04 MST")
	if d := t.Sub(now); d >= 0 {
		return stamp + " (in " + human.Ago(d) + ")"
	}
	return stamp + " (" + human.Ago(now.Sub(t)) + " ago)"
}
