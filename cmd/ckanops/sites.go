package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/ckanops/ckanops/api"

	"github.com/ckanops/ckanops/ckanclient"
	"github.com/ckanops/ckanops/config"
	"github.com/ckanops/ckanops/internal/human"
	flag "github.com/spf13/pflag"
)

// siteClient is a configured site and its client.
type siteClient struct {
	site   config.Site
	client *ckanclient.Client
	// err keeps a site whose client could not be built (its token file
	// is missing, say) among all sites, as a row with its error: one bad
	// entry must not hide the others. Only with every site listed.
	err error
}

// loadSites reads sites.toml (from --config, else the usual places) and
// returns a client for every site, or for the one named.
func loadSites(e *env, path, only string) ([]siteClient, error) {
	if e.sitesPath != "" {
		path = e.sitesPath // the SSH console's host: refuseOverSSH keeps --config out
	}
	if path == "" {
		p, err := config.SitesPath()
		if err != nil {
			return nil, err
		}
		path = p
	}
	cfg, warns, err := config.LoadSites(path)
	if err != nil {
		return nil, err
	}
	for _, w := range warns {
		fmt.Fprintf(e.stderr, "warning: %s\n", w)
	}
	sites := cfg.Sites
	if only != "" {
		s, err := cfg.Find(only)
		if err != nil {
			return nil, err
		}
		sites = []config.Site{s}
	}
	out := make([]siteClient, 0, len(sites))
	for _, s := range sites {
		tok, warns, err := s.Token()
		for _, w := range warns {
			fmt.Fprintf(e.stderr, "warning: %s\n", w)
		}
		var c *ckanclient.Client
		if err == nil {
			style := ckanclient.AuthBearer
			if s.CKANAPIKeyHeader {
				style = ckanclient.AuthAPIKey
			}
			c, err = ckanclient.New(s.URL, ckanclient.Options{Token: tok, TokenStyle: style, Timeout: s.Timeout.Duration, UserAgent: "ckanops/" + buildVersion(),
				Actor: e.actor, ReadOnly: e.readOnly})
			if err != nil {
				err = fmt.Errorf("site %s: %w", s.Name, err)
			}
		}
		if err != nil {
			if only != "" {
				return nil, err
			}
			out = append(out, siteClient{site: s, err: err})
			continue
		}
		out = append(out, siteClient{site: s, client: c})
	}
	return out, nil
}

// oneSite is loadSites for the single SITE argument of fs.
func oneSite(e *env, fs *flag.FlagSet, path string) (siteClient, error) {
	if fs.NArg() != 1 {
		return siteClient{}, usageErr("give exactly one SITE (the name of a [[site]] in sites.toml)")
	}
	if err := e.stopIfDry(); err != nil {
		return siteClient{}, err
	}
	s, err := loadSites(e, path, fs.Arg(0))
	if err != nil {
		return siteClient{}, err
	}
	return s[0], nil
}

// siteStatus is one row of `status --json`.
type siteStatus struct {
	Site   string      `json:"site"`
	URL    string      `json:"url"`
	Status *api.Status `json:"status,omitempty"`
	Error  string      `json:"error,omitempty"`
}

// runStatus asks every site at once; one dead site never holds up the rest
// beyond its own timeout.
func runStatus(e *env, sites []siteClient, asJSON bool) error {
	rows := make([]siteStatus, len(sites))
	var wg sync.WaitGroup
	for i, s := range sites {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rows[i] = siteStatus{Site: s.site.Name, URL: s.site.URL}
			if s.err != nil {
				rows[i].Error = s.err.Error()
				return
			}
			st, err := s.client.Status(e.context())
			if err != nil {
				rows[i].Error = err.Error()
				return
			}
			rows[i].Status = st
		}()
	}
	wg.Wait()
	failed := 0
	for _, r := range rows {
		if r.Error != "" {
			failed++
		}
	}
	if asJSON {
		enc := json.NewEncoder(e.stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rows); err != nil {
			return err
		}
	} else {
		printStatus(e, rows)
	}
	if failed > 0 {
		return &exitError{code: exitFail, err: fmt.Errorf("%d of %d sites did not answer (or could not be asked: see their rows)", failed, len(rows))}
	}
	return nil
}

func printStatus(e *env, rows []siteStatus) {
	tw := tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SITE\tMODE\tPHASE\tSINCE\tUNTIL\tWRITES\tGATES\tVERSION\tMESSAGE")
	now := time.Now()
	for _, r := range rows {
		if r.Error != "" {
			fmt.Fprintf(tw, "%s\t?\t?\t\t\t\t\t\t%s\n", r.Site, oneLine(r.Error, 100))
			continue
		}
		st := r.Status
		until := "-"
		if st.Until != nil {
			until = st.Until.Local().Format("Jan 2 15:04")
		}
		writes := "-"
		if st.InFlight != nil || st.Store != nil {
			writes = fmt.Sprint(len(st.InFlight))
		}
		gates := "-"
		if len(st.Gates) > 0 {
			applied, live, _ := st.Applied()
			gates = fmt.Sprintf("%d/%d", applied, live)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s ago\t%s\t%s\t%s\t%d\t%s\n", r.Site, st.Mode, st.Phase,
			human.Ago(now.Sub(st.Since)), until, writes, gates, st.Version, oneLine(st.Message, 60))
	}
	tw.Flush()
	// What an operator must look at: gates that lag or are gone, a stale store.
	for _, r := range rows {
		if r.Status == nil {
			continue
		}
		st := r.Status
		if _, _, lagging := st.Applied(); len(lagging) > 0 {
			fmt.Fprintf(e.stdout, "%s: applied %s; lagging: %s\n", r.Site, appliedText(st), strings.Join(lagging, ", "))
		}
		for _, g := range st.Gates {
			if g.Gone {
				fmt.Fprintf(e.stdout, "%s: gate %s is gone (no heartbeat since %s ago)\n", r.Site, g.ID, human.Ago(now.Sub(g.Seen)))
			}
		}
		for _, line := range triggerLines(st, now) {
			fmt.Fprintf(e.stdout, "%s: %s\n", r.Site, line)
		}
		for _, line := range windowLines(st, now) {
			if line != "no window planned" {
				fmt.Fprintf(e.stdout, "%s: %s\n", r.Site, line)
			}
		}
		if st.Store != nil && !st.Store.OK {
			since := ""
			if st.Store.StaleSince != nil {
				since = " for " + human.Ago(now.Sub(*st.Store.StaleSince))
			}
			fmt.Fprintf(e.stdout, "%s: state store (%s) unreachable%s: gates enforce the last mode they knew; mode changes are refused\n", r.Site, st.Store.Kind, since)
		}
	}
}

func appliedText(st *api.Status) string {
	applied, live, _ := st.Applied()
	return fmt.Sprintf("%d/%d gates", applied, live)
}

// runSetMode changes a site's mode and, with wait, follows the drain.
func runSetMode(e *env, s siteClient, req api.ModeRequest, asJSON, wait bool, timeout time.Duration) error {
	ctx := e.context()
	before, err := identifiedStatus(ctx, s)
	if err != nil {
		return err
	}
	st, err := s.client.SetMode(ctx, req)
	if err != nil {
		return err
	}
	if req.Mode == api.ModeLive && before.Mode == api.ModeLive && st.Version == before.Version && !asJSON {
		fmt.Fprintf(e.stdout, "%s: live already, version %d: nothing was changed\n", s.site.Name, st.Version)
		return nil
	}
	if wait && st.Phase == api.PhaseDraining {
		if !asJSON {
			fmt.Fprintf(e.stderr, "%s: %s, draining %d write(s) in flight...\n", s.site.Name, st.Mode, len(st.InFlight))
		}
		st, err = waitQuiesced(ctx, s.client, timeout)
		if err != nil {
			return err
		}
	}
	if asJSON {
		enc := json.NewEncoder(e.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(st)
	}
	fmt.Fprintf(e.stdout, "%s: %s (%s), version %d, applied: %s\n", s.site.Name, st.Mode, st.Phase, st.Version, appliedText(st))
	if st.Phase == api.PhaseDraining {
		for _, w := range st.InFlight {
			fmt.Fprintf(e.stdout, "  in flight: %s %s (%s, from %s)\n", w.Method, w.Path, time.Duration(w.AgeMS)*time.Millisecond, w.Remote)
		}
	}
	return nil
}

var errDrainTimeout = errors.New("writes are still in flight")

func waitQuiesced(ctx context.Context, c *ckanclient.Client, timeout time.Duration) (*api.Status, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	var last *api.Status
	for {
		st, err := c.Status(ctx)
		if err == nil {
			last = st
			if st.Phase != api.PhaseDraining {
				return st, nil
			}
		}
		select {
		case <-ctx.Done():
			if last == nil {
				return nil, fmt.Errorf("waiting for the drain: %w", err)
			}
			paths := make([]string, 0, len(last.InFlight))
			for _, w := range last.InFlight {
				paths = append(paths, w.Method+" "+w.Path)
			}
			return nil, &exitError{code: exitFail, err: fmt.Errorf("%w after %s: %s (the site stays in %s; writes finish on their own)", errDrainTimeout, timeout, strings.Join(paths, ", "), last.Mode)}
		case <-tick.C:
		}
	}
}

func oneLine(s string, max int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len([]rune(s)) > max {
		s = string([]rune(s)[:max-1]) + "…"
	}
	return s
}

// checkSiteIdentity refuses to act when the gate at the site's url says it
// is another site: during an A/B switch the public URL may reach the
// stand-in, and disabling maintenance there would open the wrong site.
func checkSiteIdentity(ctx context.Context, s siteClient) error {
	_, err := identifiedStatus(ctx, s)
	return err
}

// identifiedStatus is checkSiteIdentity that also returns the status read.
func identifiedStatus(ctx context.Context, s siteClient) (*api.Status, error) {
	st, err := s.client.Status(ctx)
	if err != nil {
		return nil, err
	}
	if st.Site != "" && st.Site != s.site.Name {
		return nil, &exitError{code: exitFail, err: fmt.Errorf("refused: sites.toml's %s has url %s, but the gate there is site %q (traffic switched to a stand-in?): nothing was changed; point %s's url at its own gate", s.site.Name, s.site.URL, st.Site, s.site.Name)}
	}
	return st, nil
}

// triggerLines says what each [[trigger]] of the site does now; an armed
// trigger with nothing to say is left out.
func triggerLines(st *api.Status, now time.Time) []string {
	var out []string
	for _, ts := range st.Triggers {
		head := fmt.Sprintf("trigger %s (%s: %s)", ts.Name, ts.Check, ts.When)
		ago := func(t *time.Time) string {
			if t == nil {
				return ""
			}
			return " " + human.Ago(now.Sub(*t)) + " ago"
		}
		var line string
		switch ts.State {
		case api.TriggerArmed:
			if ts.Note == "" {
				continue
			}
			line = head + ": armed"
		case api.TriggerPending:
			line = head + ": pending since" + ago(ts.Since) + ", value " + ts.Value
		case api.TriggerFired:
			line = head + ": FIRED" + ago(ts.FiredAt) + " on " + ts.FiredValue + ", the site is " + string(ts.Mode)
		case api.TriggerRecovering:
			line = head + ": recovering, clear since" + ago(ts.Since)
		case api.TriggerBlind:
			line = head + ": blind since" + ago(ts.Since)
		case api.TriggerStood:
			line = head + ": stood down"
		default:
			line = head + ": " + ts.State
		}
		if ts.Note != "" {
			line += " (" + ts.Note + ")"
		}
		out = append(out, line)
	}
	return out
}
