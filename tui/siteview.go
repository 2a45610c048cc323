package tui

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/ckanops/ckanops/api"

	"charm.land/bubbles/v2/key"
	tea "charm.land/bubbletea/v2"

	"github.com/ckanops/ckanops/internal/human"
)

// runbookLoadedMsg carries a site's runbook record (nil: none ever ran).
type runbookLoadedMsg struct {
	site string
	rb   *api.Runbook
	err  error
}

// auditLoadedMsg carries a site's audit tail.
type auditLoadedMsg struct {
	site    string
	entries []api.AuditEntry
	err     error
}

// auditTail is how many audit entries the site view shows.
const auditTail = 10

// openSite shows the site view of s and reads its last runbook and the
// tail of its audit log.
func (m *Model) openSite(s *siteState) tea.Cmd {
	m.stopStream()
	m.view, m.current, m.siteScroll = viewSite, s, 0
	return tea.Batch(m.loadRunbook(s), m.loadAudit(s))
}

// loadAudit returns the command that reads a site's audit tail.
func (m *Model) loadAudit(s *siteState) tea.Cmd {
	ctx, g, name, timeout := m.ctx, s.Gate, s.Name, s.Timeout
	return func() tea.Msg {
		cctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		entries, err := g.AuditTail(cctx, auditTail)
		return auditLoadedMsg{site: name, entries: entries, err: timeoutError(err, timeout)}
	}
}

func (m *Model) onAuditLoaded(msg auditLoadedMsg) tea.Cmd {
	s := m.byName[msg.site]
	if s == nil {
		return nil
	}
	s.auditLoaded = true
	s.auditErr = msg.err
	if msg.err == nil {
		s.audit = msg.entries
	}
	return nil
}

// loadRunbook returns the command that reads a site's runbook record.
func (m *Model) loadRunbook(s *siteState) tea.Cmd {
	ctx, g, name, timeout := m.ctx, s.Gate, s.Name, s.Timeout
	return func() tea.Msg {
		cctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		rb, err := g.Runbook(cctx)
		return runbookLoadedMsg{site: name, rb: rb, err: timeoutError(err, timeout)}
	}
}

func (m *Model) siteKey(k tea.KeyPressMsg) tea.Cmd {
	switch {
	case key.Matches(k, m.keys.Back):
		m.view, m.current = viewDashboard, nil
		return nil
	case key.Matches(k, m.keys.Up):
		m.siteScroll = max(0, m.siteScroll-1)
		return nil
	case key.Matches(k, m.keys.Down):
		m.siteScroll++
		return nil
	case key.Matches(k, m.keys.Schedule, m.keys.Unschedule):
		return m.windowKey(key.Matches(k, m.keys.Unschedule), m.current)
	}
	return m.actionKey(k, m.current)
}

// siteBody renders everything the console knows of the current site,
// scrolled by siteScroll.
func (m *Model) siteBody(f *frame, height int) {
	lines := m.siteLines(m.current)
	scroll := min(m.siteScroll, max(0, len(lines)-height))
	end := min(len(lines), scroll+height)
	for _, l := range lines[scroll:end] {
		f.add(l)
	}
}

func (m *Model) siteLines(s *siteState) []string {
	now := m.clock()
	a := m.assess(s, now)
	w := m.width
	var out []string
	add := func(format string, args ...any) { out = append(out, fmt.Sprintf(format, args...)) }
	heading := func(t string) { out = append(out, "", m.st.paint(&m.st.heading, t)) }
	label := func(l string) string { return fit(l, 9) + " " }
	wrapped := func(prefix, text string) {
		for i, l := range wrap(text, w-len([]rune(prefix))) {
			if i > 0 {
				prefix = strings.Repeat(" ", len([]rune(prefix)))
			}
			out = append(out, prefix+l)
		}
	}

	head := m.st.paint(&m.st.title, s.Name)
	if s.URL != "" {
		head += "  " + s.URL
	}
	out = append(out, head)

	// The mode record.
	if st := s.status; st != nil {
		mode := m.st.paint(m.st.forMode(st.Mode), modeWord(st.Mode))
		line := fmt.Sprintf("%s%s · %s · version %d", label("mode"), mode, st.Phase, st.Version)
		if !st.Since.IsZero() {
			line += fmt.Sprintf(" · since %s (%s ago)", dateTime(st.Since, now, m.loc), human.Ago(now.Sub(st.Since)))
		}
		out = append(out, line)
		var rec []string
		if st.Actor != "" {
			rec = append(rec, "by "+st.Actor)
		}
		if st.Reason != "" {
			rec = append(rec, fmt.Sprintf("reason %q", st.Reason))
		}
		if st.Until != nil {
			rec = append(rec, fmt.Sprintf("until %s (%s)", dateTime(*st.Until, now, m.loc), etaWords(*st.Until, now)))
		}
		if st.QuiescedAt != nil {
			rec = append(rec, "quiesced at "+dateTime(*st.QuiescedAt, now, m.loc))
		}
		if len(rec) > 0 {
			wrapped(label(""), strings.Join(rec, " · "))
		}
		if st.Message != "" {
			wrapped(label("message"), oneLine(st.Message))
		}
		for _, l := range append(triggeredLines(st, now), windowLines(st, now, m.loc)...) {
			n := len(out)
			wrapped(label(l[0]), l[1])
			if l[0] == "OVERRUN" || l[0] == "TRIGGERED" { // in the failure colour, line by line
				for i := n; i < len(out); i++ {
					out[i] = m.st.paint(&m.st.fail, out[i])
				}
			}
		}
		if st.Store != nil {
			store := st.Store.Kind + ", ok"
			if !st.Store.OK {
				store = st.Store.Kind + ", UNREACHABLE: gates enforce the last mode they knew; mode changes are refused"
				if st.Store.StaleSince != nil {
					store += " (since " + human.Ago(now.Sub(*st.Store.StaleSince)) + " ago)"
				}
			}
			wrapped(label("store"), store)
		}
		if n := st.UnknownActionCount; n > 0 {
			names := strings.Join(st.UnknownActions, ", ")
			if n > len(st.UnknownActions) {
				names += fmt.Sprintf(" and %d more", n-len(st.UnknownActions))
			}
			wrapped(label("actions"), fmt.Sprintf("%d unknown, refused in read-only: %s · 'ckanops actions --learn %s' asks CKAN", n, names, st.Site))
		}
		if sf := st.Surface; sf != nil {
			rules := sf.Applied + ": " + sf.Reason
			if sf.Warning != "" {
				rules = "WARNING " + sf.Warning + " · " + rules
			}
			wrapped(label("rules"), rules)
		}
	}
	switch {
	case s.err != nil:
		data := "UNREACHABLE: " + oneLine(s.err.Error())
		if s.status != nil {
			data += fmt.Sprintf(" · last answer %s ago, shown as stale", human.Ago(now.Sub(s.statusAt)))
		}
		if !s.nextAt.IsZero() {
			data += " · next try in " + human.Ago(s.nextAt.Sub(now))
		}
		wrapped(label("data"), data)
	case s.status == nil:
		add("%swaiting for the first answer", label("data"))
	default:
		data := fmt.Sprintf("read %s ago", human.Ago(now.Sub(s.statusAt)))
		if a.stale {
			data += " · STALE (older than two refresh periods)"
		}
		add("%s%s", label("data"), data)
	}
	if s.pending != "" {
		add("%ssending %s… (the mode shown changes when the gate answers)", label("action"), s.pending)
	}

	// The triggers: what each watches and where it stands (before the
	// traffic: a trigger that fired is why the site is in maintenance).
	if head, lines := m.triggerBlock(s.status, now, w); len(lines) > 0 {
		heading(head)
		out = append(out, lines...)
	}

	if lines := m.trafficLines(s, w); len(lines) > 0 {
		heading("TRAFFIC (a point per refresh, newest on the right)")
		out = append(out, lines...)
	}

	if st := s.status; st != nil {
		if st.InFlight != nil || st.Store != nil {
			heading(fmt.Sprintf("IN-FLIGHT WRITES (%d)", len(st.InFlight)))
			inflight := append([]api.InFlightWrite(nil), st.InFlight...)
			sort.SliceStable(inflight, func(i, j int) bool { return inflight[i].AgeMS > inflight[j].AgeMS })
			for _, wr := range inflight {
				age := time.Duration(wr.AgeMS) * time.Millisecond
				add("  %s %s %s  %s", fit(wr.Method, 6), fitRight(span(age), 7), fit(wr.Remote, 15), cut(wr.Path, max(10, w-36)))
			}
			if len(inflight) == 0 {
				add("  none")
			}
		}
		if len(st.Gates) > 0 {
			applied, live, lagging := st.Applied()
			head := fmt.Sprintf("GATES (%d/%d applied version %d)", applied, live, st.Version)
			if len(lagging) > 0 {
				head += " lagging: " + strings.Join(lagging, ", ")
			}
			heading(head)
			for _, g := range st.Gates {
				gone := ""
				if g.Gone {
					gone = "  GONE (no heartbeat)"
				}
				add("  %s v%-4d %s %s  seen %s ago%s", fit(g.ID, 16), g.Version, fit(string(g.Phase), 8),
					fit(plural(g.InFlight, "write", "writes")+" in flight", 18), human.Ago(now.Sub(g.Seen)), gone)
			}
		}
	}

	// Checks.
	switch {
	case s.report != nil:
		heading(fmt.Sprintf("CHECKS (read %s ago)", human.Ago(now.Sub(s.reportAt))))
		for _, c := range s.report.Checks {
			status := c.Status
			if c.IsNotConfigured() {
				status = "-"
			}
			word := fit(string(status), 7)
			if status != "-" {
				word = m.st.paint(m.st.forStatus(status), word)
			}
			prefix := "  " + word + " " + fit(c.Name, 13) + " "
			wrapped(prefix, oneLine(c.Summary))
			if d := keyDetails(c); d != "" {
				wrapped(strings.Repeat(" ", 24), d)
			}
		}
		if s.reportErr != nil {
			wrapped("  ", "the last health call failed: "+oneLine(s.reportErr.Error()))
		}
	case s.reportErr != nil:
		heading("CHECKS")
		wrapped("  ", "not available: "+oneLine(s.reportErr.Error()))
	}

	heading("LAST RUNBOOK")
	switch {
	case s.runbookErr != nil:
		wrapped("  ", "cannot read it: "+oneLine(s.runbookErr.Error()))
	case !s.runbookLoaded:
		add("  reading…")
	case s.runbook == nil:
		add("  none has run on this site (r starts one)")
	default:
		for _, l := range m.runbookSummary(s.runbook, now) {
			wrapped("  ", l)
		}
	}
	heading(fmt.Sprintf("AUDIT (last %d)", auditTail))
	switch {
	case s.auditErr != nil:
		wrapped("  ", "cannot read it: "+oneLine(s.auditErr.Error()))
	case !s.auditLoaded:
		add("  reading…")
	case len(s.audit) == 0:
		add("  empty")
	}
	for i := len(s.audit) - 1; i >= 0; i-- { // newest first
		e := s.audit[i]
		what := e.Event
		if e.From != "" || e.To != "" {
			what += " " + e.From + "→" + e.To
		}
		if e.Method != "" {
			what += " " + e.Method + " " + e.Path
		}
		if e.Reason != "" {
			what += fmt.Sprintf(" (%s)", e.Reason)
		}
		wrapped("  "+fit(dateTime(e.Time, now, m.loc), 14)+" "+fit(e.Actor, 14)+" ", oneLine(what))
	}
	if len(s.Warnings) > 0 {
		heading("CONFIGURATION WARNINGS")
		for _, wn := range s.Warnings {
			wrapped("  ", wn)
		}
	}
	return out
}

// etaWords says how far off an ETA is: "in 1h40m" or "5m ago: overdue".
func etaWords(until, now time.Time) string {
	if until.After(now) {
		return "in " + human.Ago(until.Sub(now))
	}
	return human.Ago(now.Sub(until)) + " ago: overdue"
}

// runbookSummary describes a runbook record in a few lines.
func (m *Model) runbookSummary(rb *api.Runbook, now time.Time) []string {
	line := fmt.Sprintf("%s · %s at %s", rb.ID, strings.ToUpper(string(rb.State)), rb.Step)
	if !rb.Started.IsZero() {
		line += " · started " + dateTime(rb.Started, now, m.loc)
	}
	if rb.Actor != "" {
		line += " by " + rb.Actor
	}
	if rb.Ended != nil {
		line += " · ended " + dateTime(*rb.Ended, now, m.loc)
	}
	out := []string{line}
	if rb.Error != "" {
		out = append(out, "error: "+oneLine(rb.Error))
	}
	if sn := rb.Snapshot; sn != nil {
		snap := fmt.Sprintf("snapshot %s · verdict %s · %s", sn.Dir, strings.ToUpper(sn.Verdict), human.Bytes(sn.Bytes))
		if len(sn.Changed) > 0 {
			snap += " · changed during the snapshot: " + strings.Join(sn.Changed, ", ")
		}
		out = append(out, snap)
	} else {
		out = append(out, "no snapshot taken")
	}
	return out
}

// keyDetails picks the details of a check an operator looks at, those its
// summary does not say already (the storage check's free space is in its
// summary).
func keyDetails(c api.CheckResult) string {
	if c.IsNotConfigured() {
		return ""
	}
	var parts []string
	count := func(n *int, format string) {
		if n != nil && *n > 0 {
			parts = append(parts, fmt.Sprintf(format, *n))
		}
	}
	if d := c.Postgres; d != nil {
		if d.Connections != nil && d.MaxConnections != nil {
			parts = append(parts, fmt.Sprintf("connections %d/%d", *d.Connections, *d.MaxConnections))
		}
		if d.LongestTransactionSeconds != nil {
			parts = append(parts, "longest transaction "+span(seconds(*d.LongestTransactionSeconds)))
		}
		count(d.WriteTransactions, "%d write transaction(s)")
		count(d.IdleInTransaction, "%d idle in transaction")
		count(d.WaitingOnLocks, "%d waiting on locks")
	}
	if d := c.RQ; d != nil && d.Suspended != nil && *d.Suspended {
		parts = append(parts, "workers SUSPENDED")
	}
	return strings.Join(parts, " · ")
}
