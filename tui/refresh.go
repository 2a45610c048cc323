package tui

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/ckanops/ckanops/api"

	tea "charm.land/bubbletea/v2"

	"github.com/ckanops/ckanops/ckanclient"
	"github.com/ckanops/ckanops/internal/human"
)

// siteState is what the console knows of one site.
type siteState struct {
	Site

	status   *api.Status // the last record read; kept when the site stops answering
	statusAt time.Time   // when it was read
	err      error       // why the last refresh failed; nil after a success
	errAt    time.Time

	report    *api.Report // the last checks report read
	reportAt  time.Time
	reportErr error // why the last health call failed

	failures int       // refreshes failed in a row
	fetching bool      // a refresh is in flight
	again    bool      // refresh again as soon as the one in flight ends (it may predate an action)
	gen      int       // the refresh schedule's generation: older ticks are ignored
	nextAt   time.Time // when the next refresh is due

	pending string // an action sent and not answered yet ("read-only", ...)

	runbook       *api.Runbook // the current or last runbook, once read
	runbookErr    error
	runbookLoaded bool

	audit       []api.AuditEntry // the gate's audit tail, for the site view
	auditErr    error
	auditLoaded bool

	traffic traffic // rates from the gate's metrics, writes in flight
}

// refreshDueMsg says a site's next refresh is due.
type refreshDueMsg struct {
	site string
	gen  int
}

// refreshedMsg carries the answers of one refresh.
type refreshedMsg struct {
	site      string
	status    *api.Status
	err       error
	report    *api.Report
	reportErr error
	rb        *api.Runbook // the site's runbook record; nil: none ever ran (404)
	rbErr     error        // why it could not be read; the last record read is kept
	at        time.Time
	canceled  bool // the console is closing

	// The gate's counters, read at metricsAt; neither they nor
	// metricsErr nor noMetrics: not read this round.
	metrics    *ckanclient.GateCounters
	metricsAt  time.Time
	metricsErr error
	noMetrics  bool // the gate serves no metrics (404)
}

// startRefresh marks s as refreshing and returns the command that asks
// its gate; nil if a refresh is already in flight.
func (m *Model) startRefresh(s *siteState) tea.Cmd {
	if s.fetching {
		return nil
	}
	s.fetching = true
	s.gen++ // any tick already scheduled is now stale
	return fetch(m.ctx, m.sem, s.Site, m.clock)
}

// fetch reads a site's status, checks report, runbook record and
// metrics, concurrently, within the site's timeout, once a slot of sem
// is free. It touches no model state.
func fetch(ctx context.Context, sem chan struct{}, site Site, clock func() time.Time) tea.Cmd {
	return func() tea.Msg {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			return refreshedMsg{site: site.Name, canceled: true}
		}
		defer func() { <-sem }()
		cctx, cancel := context.WithTimeout(ctx, site.Timeout)
		defer cancel()
		var (
			wg        sync.WaitGroup
			rep       *api.Report
			reportErr error
			rb        *api.Runbook
			rbErr     error
			mc        *ckanclient.GateCounters
			mcAt      time.Time
			mcErr     error
		)
		wg.Add(3)
		go func() {
			defer wg.Done()
			rep, reportErr = site.Gate.Health(cctx)
		}()
		go func() {
			defer wg.Done()
			rb, rbErr = site.Gate.Runbook(cctx)
		}()
		go func() {
			defer wg.Done()
			mc, mcErr = site.Gate.Metrics(cctx)
			mcAt = clock()
		}()
		st, err := site.Gate.Status(cctx)
		wg.Wait()
		if ctx.Err() != nil {
			return refreshedMsg{site: site.Name, canceled: true}
		}
		if err == nil && st == nil {
			err = errors.New("gate status: empty answer")
		}
		return refreshedMsg{
			site: site.Name, status: st, err: timeoutError(err, site.Timeout),
			report: rep, reportErr: timeoutError(reportErr, site.Timeout),
			rb: rb, rbErr: timeoutError(rbErr, site.Timeout), at: clock(),
			metrics: mc, metricsAt: mcAt, metricsErr: mcErr, noMetrics: mc == nil && mcErr == nil,
		}
	}
}

// timeoutError says plainly that a call ran out of time, unless the
// client's error already does.
func timeoutError(err error, limit time.Duration) error {
	var te *ckanclient.TransportError
	if err == nil || errors.As(err, &te) || !errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return fmt.Errorf("no answer within %s (timeout): %w", limit, err)
}

func (m *Model) onRefreshDue(msg refreshDueMsg) tea.Cmd {
	s := m.byName[msg.site]
	if s == nil || msg.gen != s.gen {
		return nil
	}
	return m.startRefresh(s)
}

func (m *Model) onRefreshed(msg refreshedMsg) tea.Cmd {
	s := m.byName[msg.site]
	if s == nil || msg.canceled {
		return nil
	}
	s.fetching = false
	if msg.err != nil {
		s.err, s.errAt = msg.err, msg.at
		s.failures++
	} else {
		s.status, s.statusAt = msg.status, msg.at
		s.err = nil
		s.failures = 0
	}
	switch {
	case msg.reportErr != nil:
		s.reportErr = msg.reportErr
	case msg.report != nil:
		s.report, s.reportAt, s.reportErr = msg.report, msg.at, nil
	}
	// The runbook is read every round, for the dashboard; a failed read
	// keeps the record last read (a gate without runbooks answers 404,
	// which the client turns into nil).
	if msg.rbErr == nil && msg.err == nil {
		s.runbook = newerRunbook(s.runbook, msg.rb)
		s.runbookLoaded, s.runbookErr = true, nil
	}
	s.recordTraffic(msg)
	d := m.nextDelay(s.failures)
	s.gen++
	s.nextAt = msg.at.Add(d)
	next := m.after(d, refreshDueMsg{site: s.Name, gen: s.gen})
	if s.again {
		s.again = false
		next = m.startRefresh(s)
	}
	// The site view's audit tail follows its site line.
	if m.view == viewSite && m.current == s && msg.err == nil {
		next = tea.Batch(next, m.loadAudit(s))
	}
	// A runbook view that follows no stream looks for a runbook someone
	// else started.
	if m.view == viewRunbook && m.current == s && m.rb.stream == nil && !m.rb.loading && m.dialog == nil {
		m.rb.loading = true
		return tea.Batch(next, m.loadRunbook(s))
	}
	return next
}

// afterChange is what follows an action's answer or a runbook event on
// s: its status, checks and runbook are read again at once (or as soon
// as the refresh in flight ends, since that one may predate the change),
// and the audit tail too when the site or runbook view shows s. One
// story per screen: nothing shown is older than the change.
func (m *Model) afterChange(s *siteState) tea.Cmd {
	cmd := m.startRefresh(s)
	if cmd == nil {
		s.again = true
	}
	if m.current == s && (m.view == viewSite || m.view == viewRunbook) {
		cmd = tea.Batch(cmd, m.loadAudit(s))
	}
	return cmd
}

// nextDelay is the wait before the next refresh: the refresh period, or,
// after failures, the period doubled for each failure but the first,
// capped at MaxBackoff.
func (m *Model) nextDelay(failures int) time.Duration {
	d := m.opts.Refresh
	for i := 1; i < failures && d < m.opts.MaxBackoff; i++ {
		d *= 2
	}
	return min(d, max(m.opts.MaxBackoff, m.opts.Refresh))
}

// refreshAllNow refreshes every site not already refreshing.
func (m *Model) refreshAllNow() tea.Cmd {
	var cmds []tea.Cmd
	for _, s := range m.sites {
		cmds = append(cmds, m.startRefresh(s))
	}
	m.setFlash("refreshing every site", false)
	return tea.Batch(cmds...)
}

// assessment is how a site stands, for sorting and for its HEALTH word.
type assessment struct {
	rank   int             // 0: unreachable or failing; 1: needs a look; 2: healthy
	word   string          // unreach, fail, warn, ?, wait, ok
	status api.CheckStatus // the check status the word is styled as
	stale  bool            // the data shown is older than two refresh periods, or the site stopped answering
	age    time.Duration
	reason string // why, when not healthy
	// needsYou: an operator must act: the site is unreachable, or its
	// runbook waits for a confirmation, failed or was interrupted.
	needsYou bool
	// overrun: the site is in maintenance past its planned end; it
	// needs a look, and sorts first among those that do.
	overrun bool
	// triggered: a trigger put the site in maintenance; like an overrun,
	// it needs a look and sorts first among those that do.
	triggered bool
}

func (m *Model) assess(s *siteState, now time.Time) (a assessment) {
	a = assessment{rank: 2, word: "ok", status: api.CheckOK}
	if s.status != nil {
		a.age = now.Sub(s.statusAt)
		a.stale = a.age > 2*m.opts.Refresh
	}
	var reasons []string
	// trouble records a reason; only the reasons of the worst rank are kept.
	trouble := func(rank int, reason string) {
		if rank < a.rank {
			a.rank, reasons = rank, nil
		}
		if rank == a.rank && reason != "" {
			reasons = append(reasons, reason)
		}
	}
	word := func(w string, status api.CheckStatus) {
		if a.word == "ok" || a.word == "?" {
			a.word, a.status = w, status
		}
	}
	defer func() { a.reason = strings.Join(reasons, "; ") }()
	if rb := s.runbook; rb != nil && rb.Active() {
		switch rb.State {
		case api.RunbookWaiting, api.RunbookFailed, api.RunbookInterrupted:
			a.needsYou = true
		}
	}
	if s.err != nil {
		a.needsYou = true
		a.stale = s.status != nil
		a.word, a.status = "unreach", api.CheckFail
		trouble(0, "unreachable: "+oneLine(s.err.Error()))
		return a
	}
	if s.status == nil {
		a.word, a.status = "wait", api.CheckUnknown
		trouble(1, "waiting for the first answer")
		return a
	}
	st := s.status
	if rb := s.runbook; a.needsYou && rb != nil {
		r := "runbook " + runbookWords(rb)
		if rb.Waiting != nil && rb.Waiting.Prompt != "" {
			r += ": " + oneLine(rb.Waiting.Prompt)
		} else if rb.Error != "" {
			r += ": " + oneLine(rb.Error)
		}
		trouble(0, r+" (r opens it)")
	}
	if s.report != nil {
		switch s.report.Overall() {
		case api.CheckFail:
			a.word, a.status = "fail", api.CheckFail
			trouble(0, worstCheck(s.report, api.CheckFail))
		case api.CheckWarn:
			a.word, a.status = "warn", api.CheckWarn
		}
	} else if s.reportErr != nil {
		a.word, a.status = "?", api.CheckUnknown
	}
	if st.Overrun {
		a.overrun = true
		trouble(1, "OVERRUN, "+overrunText(st, now, m.loc)+" (ending it stays your call: d disables)")
	}
	name, triggered := triggeredBy(st)
	if triggered {
		a.triggered = true
		trouble(1, triggeredText(st, name, now))
	}
	// An overrun says the mode already; so does a trigger's maintenance
	// (the MODE column), unless it is still draining.
	if st.Mode != api.ModeLive && !st.Overrun && (!triggered || st.Phase == api.PhaseDraining) {
		r := string(st.Mode)
		switch st.Phase {
		case api.PhaseDraining:
			r += fmt.Sprintf(", draining: %s in flight", plural(len(st.InFlight), "write", "writes"))
		case api.PhaseQuiesced:
			r += ", quiesced"
		}
		trouble(1, r)
	}
	if _, _, lagging := st.Applied(); len(lagging) > 0 {
		word("warn", api.CheckWarn)
		trouble(1, "gates lagging: "+strings.Join(lagging, ", "))
	}
	if st.Store != nil && !st.Store.OK {
		word("warn", api.CheckWarn)
		trouble(1, "state store ("+st.Store.Kind+") unreachable: mode changes are refused")
	}
	if n := st.UnknownActionCount; n > 0 {
		trouble(1, plural(n, "unknown action", "unknown actions")+" refused in read-only")
	}
	if st.Surface != nil && st.Surface.Warning != "" {
		word("warn", api.CheckWarn)
		trouble(1, st.Surface.Warning)
	}
	if a.stale {
		trouble(1, "stale: last answer "+human.Ago(a.age)+" ago")
	}
	switch {
	case a.word == "warn" && s.report != nil:
		trouble(1, worstCheck(s.report, api.CheckWarn))
	case s.reportErr != nil:
		trouble(1, "health: "+oneLine(s.reportErr.Error()))
	}
	return a
}

// worstCheck names the first check with status, and its summary.
func worstCheck(rep *api.Report, status api.CheckStatus) string {
	for _, c := range rep.Checks {
		if c.IsNotConfigured() {
			continue
		}
		if c.Status == status || (status == api.CheckWarn && c.Status == api.CheckUnknown) {
			return c.Name + ": " + oneLine(c.Summary)
		}
	}
	return ""
}

// ranked is a site and its assessment.
type ranked struct {
	*siteState
	a assessment
}

// sortedSites returns the sites the filter lets through, by name; or,
// when the operator asked (key t), trouble first: those that need you,
// then unreachable or failing, then those that need a look (overruns
// and maintenance a trigger set first), then healthy ones, by name
// within each group.
func (m *Model) sortedSites() []ranked {
	return m.sortFilter(m.assessAll(m.clock()))
}

// assessAll assesses every site, in configuration order.
func (m *Model) assessAll(now time.Time) []ranked {
	out := make([]ranked, len(m.sites))
	for i, s := range m.sites {
		out[i] = ranked{s, m.assess(s, now)}
	}
	return out
}

// sortFilter returns the sites of all the filter lets through, sorted.
func (m *Model) sortFilter(all []ranked) []ranked {
	f := strings.ToLower(strings.TrimSpace(m.filter.Value()))
	out := make([]ranked, 0, len(all))
	for _, r := range all {
		if f != "" && !strings.Contains(strings.ToLower(r.Name), f) {
			continue
		}
		out = append(out, r)
	}
	sort.SliceStable(out, func(i, j int) bool {
		if !m.troubleFirst {
			return out[i].Name < out[j].Name
		}
		if out[i].a.needsYou != out[j].a.needsYou {
			return out[i].a.needsYou
		}
		if out[i].a.rank != out[j].a.rank {
			return out[i].a.rank < out[j].a.rank
		}
		if ai, aj := out[i].a.overrun || out[i].a.triggered, out[j].a.overrun || out[j].a.triggered; ai != aj {
			return ai
		}
		return out[i].Name < out[j].Name
	})
	return out
}

// recordTraffic adds a refresh round's points to the site's sparklines:
// the rates since the last metrics read (a gap when the read failed) and
// the writes in flight (a gap when the status could not be read).
func (s *siteState) recordTraffic(msg refreshedMsg) {
	t := &s.traffic
	switch {
	case msg.noMetrics:
		t.metricsMissing()
	case msg.metricsErr != nil:
		t.metricsFailed()
	case msg.metrics != nil:
		t.addCounters(msg.metrics, msg.metricsAt)
	}
	switch {
	case msg.err != nil:
		t.inFlight.gap()
	case msg.status != nil && (msg.status.InFlight != nil || msg.status.Store != nil):
		t.inFlight.push(float64(len(msg.status.InFlight)))
	}
}
