package tui

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/ckanops/ckanops/api"

	"charm.land/bubbles/v2/key"
	tea "charm.land/bubbletea/v2"

	"github.com/ckanops/ckanops/internal/human"
)

// Names of the checks the dashboard reads.
const (
	checkGate    = api.ProbeGate
	checkCKAN    = api.ProbeCKAN
	checkCKANDB  = api.ProbeCKANDB
	checkRedis   = api.ProbeRedis
	checkSolr    = api.ProbeSolr
	checkStorage = api.ProbeStorage
)

// column is one column of the dashboard.
type column struct {
	name  string
	width int
	prio  int // columns are kept in this order while the width allows
	right bool
	cell  func(m *Model, r ranked, now time.Time) string
	paint func(m *Model, r ranked, cell string) string // nil: plain
}

// columns lists the dashboard's columns in the order shown. The SITE
// column's width is set from the names; NOTE takes what is left.
var columns = []column{
	{name: "!", width: 1, prio: 0, cell: func(_ *Model, r ranked, _ time.Time) string {
		if r.a.needsYou {
			return "!"
		}
		return ""
	}, paint: func(m *Model, r ranked, c string) string { return m.st.paint(&m.st.fail, c) }},
	{name: "SITE", prio: 0, cell: func(_ *Model, r ranked, _ time.Time) string { return r.Name }},
	{name: "MODE", width: 9, prio: 1, cell: cellMode, paint: func(m *Model, r ranked, c string) string {
		if r.status == nil {
			return c
		}
		return m.st.paint(m.st.forMode(r.status.Mode), c)
	}},
	// The plan column: an overrun, a maintenance a trigger set, the
	// active runbook, or the planned window (planWords); headed RUNBOOK,
	// WINDOW or both (planHeader).
	{name: "RUNBOOK", width: 20, prio: 2, cell: cellPlan, paint: func(m *Model, r ranked, c string) string {
		switch {
		case r.status != nil && r.status.Overrun, triggerWords(r.status) != "":
			return m.st.paint(&m.st.fail, c)
		case r.runbook != nil && r.runbook.Active():
			if r.runbook.State == api.RunbookRunning {
				return m.st.paint(&m.st.warn, c)
			}
			return m.st.paint(&m.st.fail, c)
		case r.status != nil && r.status.Schedule != nil && r.status.Schedule.Due(m.clock()):
			return m.st.paint(&m.st.warn, c)
		}
		return c
	}},
	{name: "PHASE", width: 8, prio: 8, cell: func(_ *Model, r ranked, _ time.Time) string {
		if r.status == nil {
			return "-"
		}
		return string(r.status.Phase)
	}},
	{name: "HEALTH", width: 7, prio: 3, cell: func(_ *Model, r ranked, _ time.Time) string { return r.a.word },
		paint: func(m *Model, r ranked, c string) string { return m.st.paint(m.st.forStatus(r.a.status), c) }},
	{name: "SINCE/ETA", width: 11, prio: 10, cell: cellSince},
	{name: "WR", width: 3, prio: 4, right: true, cell: cellWrites},
	{name: "GATES", width: 5, prio: 9, right: true, cell: func(_ *Model, r ranked, _ time.Time) string {
		if r.status == nil || len(r.status.Gates) == 0 {
			return "-"
		}
		applied, live, _ := r.status.Applied()
		return fmt.Sprintf("%d/%d", applied, live)
	}},
	{name: "DB", width: 7, prio: 5, right: true, cell: cellDB},
	{name: "TX", width: 6, prio: 11, right: true, cell: cellTX},
	{name: "RQ", width: 10, prio: 6, cell: cellRQ},
	// The sparkline gives way first: it adds to what the row says.
	{name: "REQ/S", width: reqRateWidth, prio: 14, cell: cellReqRate},
	{name: "SOLR", width: 4, prio: 12, cell: cellSolr, paint: func(m *Model, r ranked, c string) string {
		if st := strings.TrimSpace(c); st != "-" {
			return m.st.paint(m.st.forStatus(api.CheckStatus(st)), c)
		}
		return c
	}},
	{name: "CKAN", width: 7, prio: 13, cell: cellCKAN},
	{name: "AGE", width: 9, prio: 7, right: true, cell: cellAge, paint: func(m *Model, r ranked, c string) string {
		if r.a.stale {
			return m.st.paint(&m.st.stale, c)
		}
		return c
	}},
}

// runbookWords says where a site's runbook stands, for the dashboard:
// "running at drain", "WAITING FOR YOU at enable", "FAILED at snapshot",
// "INTERRUPTED at migrate"; "" when none ran or the last one ended.
func runbookWords(rb *api.Runbook) string {
	if rb == nil || !rb.Active() {
		return ""
	}
	switch rb.State {
	case api.RunbookRunning:
		return "running at " + rb.Step
	case api.RunbookWaiting:
		return "WAITING FOR YOU at " + rb.Step
	case api.RunbookFailed:
		return "FAILED at " + rb.Step
	case api.RunbookInterrupted:
		return "INTERRUPTED at " + rb.Step
	}
	return string(rb.State) + " at " + rb.Step
}

func cellPlan(_ *Model, r ranked, now time.Time) string { return planWords(r, now) }

// noteColumn holds the reason a site needs a look, or its message, when
// the width leaves room for it.
var noteColumn = column{name: "NOTE", prio: 99, cell: func(m *Model, r ranked, now time.Time) string { return m.note(r, now) }}

// note says what is going on with a site: an action waiting for the
// gate's answer, why the site needs a look, or the operator's message;
// and its planned window.
func (m *Model) note(r ranked, now time.Time) string {
	text := r.a.reason
	if text == "" && r.status != nil && r.status.Message != "" {
		text = "message: " + oneLine(r.status.Message)
	}
	if r.status != nil && r.status.Schedule != nil {
		sc := r.status.Schedule
		w := "window planned: " + windowSpan(sc, now, m.loc) + ", " + announceWords(sc, now, m.loc)
		text = strings.TrimPrefix(text+"; "+w, "; ")
	}
	if r.pending != "" {
		text = strings.TrimSuffix("sending "+r.pending+", waiting for the gate's answer; "+text, "; ")
	}
	return text
}

const minNote = 12

// layout picks the columns that fit in width, by priority, and sizes
// SITE, RUNBOOK and NOTE. RUNBOOK (the plan column: runbooks, planned
// windows, overruns, a maintenance a trigger set) is left out when no
// row has any of them, and takes what is left when its full width does
// not fit.
func layout(width int, rows []ranked, now time.Time) []column {
	siteW, rbW := 8, 0
	for _, r := range rows {
		siteW = max(siteW, len([]rune(r.Name)))
		rbW = max(rbW, len([]rune(planWords(r, now))))
	}
	siteW = min(siteW, 20)
	planName := "RUNBOOK"
	if rbW > 0 {
		planName = planHeader(rows)
		rbW = min(max(rbW, len(planName)), 28)
	}
	keep := make([]bool, len(columns))
	widths := make([]int, len(columns))
	used := 1 // the selection marker
	for prio := 0; prio < len(columns); prio++ {
		for i, c := range columns {
			if c.prio != prio {
				continue
			}
			w := c.width
			switch c.name {
			case "SITE":
				w = siteW
			case "RUNBOOK":
				if rbW == 0 {
					continue
				}
				w = rbW
				if rest := width - used - 1; used+w+1 > width && rest >= 6 {
					w = rest
				}
			}
			if used+w+1 <= width {
				keep[i], widths[i] = true, w
				used += w + 1
			}
		}
	}
	var out []column
	for i, c := range columns {
		if !keep[i] {
			continue
		}
		c.width = widths[i]
		if c.name == "RUNBOOK" {
			c.name = planName
		}
		out = append(out, c)
	}
	if rest := width - used - 1; rest >= minNote {
		n := noteColumn
		n.width = rest
		out = append(out, n)
	}
	return out
}

func cellMode(_ *Model, r ranked, _ time.Time) string {
	if r.status == nil {
		return "?"
	}
	return modeWord(r.status.Mode)
}

// modeWord spells a mode so that it reads without colour.
func modeWord(mode api.Mode) string {
	switch mode {
	case api.ModeLive:
		return "LIVE"
	case api.ModeReadOnly:
		return "READ-ONLY"
	case api.ModeDown:
		return "DOWN"
	case "":
		return "?"
	}
	return strings.ToUpper(string(mode))
}

func cellSince(_ *Model, r ranked, now time.Time) string {
	if r.status == nil || r.status.Since.IsZero() {
		return "-"
	}
	return human.Ago(now.Sub(r.status.Since)) + "/" + eta(r.status.Until, now)
}

// eta is the time left until the operator's ETA: "1h40m", "late", or "-".
func eta(until *time.Time, now time.Time) string {
	switch {
	case until == nil:
		return "-"
	case !until.After(now):
		return "late"
	}
	return human.Ago(until.Sub(now))
}

func cellWrites(_ *Model, r ranked, _ time.Time) string {
	if r.status == nil || (r.status.InFlight == nil && r.status.Store == nil) {
		return "-"
	}
	return strconv.Itoa(len(r.status.InFlight))
}

// check returns the named check of a report, or nil when the report
// lacks it or it is not configured.
func check(rep *api.Report, name string) *api.CheckResult {
	if rep == nil {
		return nil
	}
	for i := range rep.Checks {
		if rep.Checks[i].Name == name {
			if rep.Checks[i].IsNotConfigured() {
				return nil
			}
			return &rep.Checks[i]
		}
	}
	return nil
}

func cellDB(_ *Model, r ranked, _ time.Time) string {
	c := check(r.report, checkCKANDB)
	if c == nil {
		return "-"
	}
	d := c.Postgres
	if d == nil || d.Connections == nil || d.MaxConnections == nil {
		return string(c.Status)
	}
	return fmt.Sprintf("%d/%d", *d.Connections, *d.MaxConnections)
}

// longestTx is the age of the oldest transaction open on any database of
// the site (CKAN's, the DataStore's, each [[database]]).
func longestTx(rep *api.Report) (time.Duration, bool) {
	var longest time.Duration
	found := false
	if rep == nil {
		return 0, false
	}
	for _, c := range rep.Checks {
		if !api.IsDatabaseProbe(c.Name) {
			continue
		}
		if !c.IsNotConfigured() && c.Postgres != nil && c.Postgres.LongestTransactionSeconds != nil {
			found = true
			longest = max(longest, seconds(*c.Postgres.LongestTransactionSeconds))
		}
	}
	return longest, found
}

func cellTX(_ *Model, r ranked, _ time.Time) string {
	d, ok := longestTx(r.report)
	if !ok {
		return "-"
	}
	return span(d)
}

func cellRQ(_ *Model, r ranked, _ time.Time) string {
	c := check(r.report, checkRedis)
	if c == nil {
		return "-"
	}
	d := c.RQ
	if d == nil || d.Queued == nil || d.Running == nil {
		return string(c.Status)
	}
	s := fmt.Sprintf("%dq/%dr", *d.Queued, *d.Running)
	if d.Suspended != nil && *d.Suspended {
		s += " susp"
	}
	return s
}

func cellSolr(_ *Model, r ranked, _ time.Time) string {
	if c := check(r.report, checkSolr); c != nil {
		return string(c.Status)
	}
	return "-"
}

func cellCKAN(_ *Model, r ranked, _ time.Time) string {
	if c := check(r.report, checkCKAN); c != nil {
		if d := c.CKAN; d != nil && d.Version != nil && *d.Version != "" {
			return *d.Version
		}
		return string(c.Status)
	}
	return "-"
}

func cellAge(_ *Model, r ranked, _ time.Time) string {
	if r.status == nil {
		return "-"
	}
	if r.a.stale {
		return human.Ago(r.a.age) + " stale"
	}
	return human.Ago(r.a.age)
}

// dashboardBody renders the dashboard's table and the selected site's
// note into f, in height lines.
func (m *Model) dashboardBody(f *frame, height int, rows []ranked, now time.Time) {
	sel := m.selectedIndex(rows)

	if m.filtering || m.filter.Value() != "" {
		f.addInput("", m.filter, m.filtering, 0, "")
		height--
	}
	cols := layout(m.width, rows, now)
	var hdr strings.Builder
	hdr.WriteString(" ")
	for i, c := range cols {
		if i > 0 {
			hdr.WriteByte(' ')
		}
		name := c.name
		if name == "!" { // the needs-you mark needs no heading
			name = ""
		}
		if c.right {
			hdr.WriteString(fitRight(name, c.width))
		} else {
			hdr.WriteString(fit(name, c.width))
		}
	}
	f.add(m.st.paint(&m.st.heading, strings.TrimRight(hdr.String(), " ")))
	height--

	// The selected site's note: what is wrong with it, in full.
	var noteLines []string
	if sel >= 0 {
		r := rows[sel]
		if text := m.note(r, now); text != "" {
			noteLines = wrap(r.Name+": "+text, m.width-2)
			if len(noteLines) > 3 {
				noteLines = noteLines[:3]
				noteLines[2] = cut(noteLines[2]+" …", m.width-2)
			}
		}
	}
	// The rows come first: the note gets what they leave, up to 3 lines.
	if room := height - len(rows) - 1; len(noteLines) > room {
		noteLines = noteLines[:max(0, room)]
		if n := len(noteLines); n > 0 {
			noteLines[n-1] = cut(noteLines[n-1]+" …", m.width-2)
		}
	}
	tableH := height
	if len(noteLines) > 0 {
		tableH = height - len(noteLines) - 1
	}
	tableH = max(tableH, 1)

	if len(rows) == 0 {
		if m.filter.Value() != "" {
			f.add("  no site matches the filter")
		} else {
			f.add("  no sites configured")
		}
		return
	}
	first := 0
	if sel >= tableH {
		first = sel - tableH + 1
	}
	last := min(len(rows), first+tableH)
	var b strings.Builder
	for i := first; i < last; i++ {
		r := rows[i]
		b.Reset()
		if i == sel {
			b.WriteString(">")
		} else {
			b.WriteString(" ")
		}
		for j, c := range cols {
			if j > 0 {
				b.WriteByte(' ')
			}
			cell := c.cell(m, r, now)
			if c.right {
				cell = fitRight(cell, c.width)
			} else {
				cell = fit(cell, c.width)
			}
			if c.paint != nil {
				cell = c.paint(m, r, cell)
			}
			if i == sel && c.name == "SITE" {
				cell = m.st.paint(&m.st.selected, cell)
			}
			b.WriteString(cell)
		}
		f.add(strings.TrimRight(b.String(), " "))
	}
	if len(noteLines) > 0 {
		for i := last - first; i < tableH; i++ {
			f.add("")
		}
		f.add("")
		for _, l := range noteLines {
			f.add("  " + l)
		}
	}
}

// selectedIndex is the index of the selected site in rows; the first
// row when the selected site is filtered out; -1 when rows is empty.
func (m *Model) selectedIndex(rows []ranked) int {
	for i, r := range rows {
		if r.Name == m.selected {
			return i
		}
	}
	if len(rows) == 0 {
		return -1
	}
	return 0
}

// selectedSite is the site the dashboard's actions apply to.
func (m *Model) selectedSite() *siteState {
	rows := m.sortedSites()
	if i := m.selectedIndex(rows); i >= 0 {
		return rows[i].siteState
	}
	return nil
}

func (m *Model) dashboardKey(k tea.KeyPressMsg) tea.Cmd {
	switch {
	case key.Matches(k, m.keys.Up, m.keys.Down):
		rows := m.sortedSites()
		i := m.selectedIndex(rows)
		if i < 0 {
			return nil
		}
		if key.Matches(k, m.keys.Up) {
			i = max(0, i-1)
		} else {
			i = min(len(rows)-1, i+1)
		}
		m.selected = rows[i].Name
		return nil
	case key.Matches(k, m.keys.Filter):
		m.filtering = true
		return m.filter.Focus()
	case key.Matches(k, m.keys.Sort):
		m.troubleFirst = !m.troubleFirst
		if m.troubleFirst {
			m.setFlash("sorted trouble first (t: by name)", false)
		} else {
			m.setFlash("sorted by name (t: trouble first)", false)
		}
		return nil
	case key.Matches(k, m.keys.Open):
		if s := m.selectedSite(); s != nil {
			return m.openSite(s)
		}
		return nil
	case key.Matches(k, m.keys.Back):
		if m.filter.Value() != "" {
			m.pinSelection()
			m.filter.Reset()
		}
		return nil
	}
	if s := m.selectedSite(); s != nil {
		return m.actionKey(k, s)
	}
	return nil
}

// filterKey edits the name filter.
func (m *Model) filterKey(k tea.KeyPressMsg) tea.Cmd {
	switch {
	case key.Matches(k, m.keys.FilterApply):
		m.filtering = false
		m.filter.Blur()
		m.pinSelection()
		return nil
	case key.Matches(k, m.keys.FilterClear):
		m.filtering = false
		m.pinSelection()
		m.filter.Reset()
		m.filter.Blur()
		return nil
	}
	var cmd tea.Cmd
	m.filter, cmd = m.filter.Update(k)
	m.pinSelection()
	return cmd
}

// pinSelection makes the row shown selected the selected site, so that
// clearing the filter keeps the selection where the operator saw it.
func (m *Model) pinSelection() {
	rows := m.sortedSites()
	if i := m.selectedIndex(rows); i >= 0 {
		m.selected = rows[i].Name
	}
}
