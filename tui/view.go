package tui

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"charm.land/bubbles/v2/key"
	"charm.land/bubbles/v2/textinput"
	tea "charm.land/bubbletea/v2"
	"github.com/charmbracelet/x/ansi"

	"github.com/ckanops/ckanops/config"
)

// frame collects the lines of a screen and where the terminal's cursor
// goes, if a text field has the focus.
type frame struct {
	lines  []string
	cursor *tea.Cursor
}

// add appends lines (s may hold several).
func (f *frame) add(s string) {
	if !strings.Contains(s, "\n") {
		f.lines = append(f.lines, s)
		return
	}
	f.lines = append(f.lines, strings.Split(s, "\n")...)
}

// addInput appends a text field between prefix and suffix, padded to
// width cells when width > 0; if focused, the cursor is placed in it.
func (f *frame) addInput(prefix string, in textinput.Model, focused bool, w int, suffix string) {
	if focused {
		if c := in.Cursor(); c != nil {
			c.Position.X += width(prefix)
			c.Position.Y = len(f.lines)
			f.cursor = c
		}
	}
	v := in.View()
	if w > 0 {
		v = fit(v, w)
	}
	f.lines = append(f.lines, prefix+v+suffix)
}

// View renders the screen.
func (m *Model) View() tea.View {
	content, cursor := m.render()
	v := tea.NewView(content)
	v.AltScreen = true
	v.Cursor = cursor
	v.WindowTitle = "ckanops console"
	return v
}

// render builds the screen: the title line, the body of the current view
// (or the help, or a dialog over the body's lower part), the flash line
// and the key bar. Every line is cut to the width, and there are exactly
// height lines.
func (m *Model) render() (string, *tea.Cursor) {
	if m.tiny() {
		return m.renderTiny(), nil
	}
	var f frame
	now := m.clock()
	var all []ranked // every site's assessment, for the dashboard
	if !m.help && (m.view == viewDashboard || m.current == nil) {
		all = m.assessAll(now)
	}
	f.add(m.titleLine(all, now))
	flash := m.flashLines()
	bodyH := m.height - 2 - len(flash)

	var body frame
	switch {
	case m.help:
		m.helpBody(&body, bodyH)
	case m.view == viewSite && m.current != nil:
		m.siteBody(&body, bodyH)
	case m.view == viewRunbook && m.current != nil:
		m.runbookBody(&body, bodyH)
	default:
		m.dashboardBody(&body, bodyH, m.sortFilter(all), now)
	}
	if m.dialog != nil && !m.help {
		var d frame
		m.dialogBox(&d, m.width)
		keep := max(0, bodyH-len(d.lines))
		if len(body.lines) > keep {
			body.lines = body.lines[:keep]
		}
		if body.cursor != nil && body.cursor.Position.Y >= keep {
			body.cursor = nil
		}
		for len(body.lines) < keep {
			body.lines = append(body.lines, "")
		}
		if d.cursor != nil {
			d.cursor.Position.Y += len(body.lines)
			body.cursor = d.cursor
		}
		body.lines = append(body.lines, d.lines...)
	}
	if len(body.lines) > bodyH {
		body.lines = body.lines[:bodyH]
	}
	if body.cursor != nil && body.cursor.Position.Y < bodyH {
		body.cursor.Position.Y += len(f.lines)
		f.cursor = body.cursor
	}
	f.lines = append(f.lines, body.lines...)
	for len(f.lines) < m.height-1-len(flash) {
		f.lines = append(f.lines, "")
	}
	for _, l := range flash {
		f.add(l)
	}
	f.add(m.keyBar())

	var b strings.Builder
	b.Grow(m.height * (m.width + 8))
	for i, l := range f.lines {
		if i > 0 {
			b.WriteByte('\n')
		}
		if width(l) > m.width {
			l = ansi.Truncate(l, m.width, "…")
		}
		b.WriteString(strings.TrimRight(l, " "))
	}
	return b.String(), f.cursor
}

// renderTiny is the screen of a terminal too small for any view: one
// line per site (its needs-you mark, name, mode and runbook), as many as
// fit. The keys still work.
func (m *Model) renderTiny() string {
	w, h := max(m.width, 1), max(m.height, 1)
	now := m.clock()
	rows := m.sortFilter(m.assessAll(now))
	sel := m.selectedIndex(rows)
	first := 0
	if sel >= h {
		first = sel - h + 1
	}
	lines := make([]string, 0, h)
	for i := first; i < len(rows) && len(lines) < h; i++ {
		r := rows[i]
		mark := " "
		if i == sel {
			mark = ">"
		}
		if r.a.needsYou {
			mark += "!"
		} else {
			mark += " "
		}
		line := mark + r.Name + " " + cellMode(m, r, time.Time{})
		if rb := planWords(r, now); rb != "" {
			line += " " + rb
		}
		lines = append(lines, cut(line, w))
	}
	for len(lines) < h {
		lines = append(lines, "")
	}
	return strings.Join(lines, "\n")
}

// titleLine names the view and counts the sites in trouble.
func (m *Model) titleLine(all []ranked, now time.Time) string {
	left := "ckanops console"
	switch {
	case m.help:
		left += " › help"
	case m.view == viewSite && m.current != nil:
		left += " › " + m.current.Name
	case m.view == viewRunbook && m.current != nil:
		left += " › " + m.current.Name + " › runbook"
	default:
		var needYou, unreach, failing, look int
		for _, r := range all {
			a := r.a
			switch {
			case a.word == "unreach":
				unreach++
			case a.needsYou:
				needYou++
			case a.rank == 0:
				failing++
			case a.rank == 1:
				look++
			}
		}
		parts := []string{plural(len(m.sites), "site", "sites")}
		if needYou > 0 {
			parts = append(parts, fmt.Sprintf("%d need you", needYou))
		}
		if unreach > 0 {
			parts = append(parts, fmt.Sprintf("%d unreachable", unreach))
		}
		if failing > 0 {
			parts = append(parts, fmt.Sprintf("%d failing", failing))
		}
		if look > 0 {
			parts = append(parts, fmt.Sprintf("%d to look at", look))
		}
		left += " · " + strings.Join(parts, " · ")
	}
	right := fmt.Sprintf("refresh %s · %s", config.Duration{Duration: m.opts.Refresh}.String(), clockTime(now, m.loc))
	if m.opts.Who != "" {
		right = m.opts.Who + " · " + right
	}
	gap := m.width - width(left) - width(right)
	if gap < 1 {
		return m.st.paint(&m.st.title, cut(left, m.width))
	}
	return m.st.paint(&m.st.title, left) + strings.Repeat(" ", gap) + right
}

// maxFlashLines is how many lines an error on the flash line may take:
// a refusal's remedy (the command to run) comes at its end.
const maxFlashLines = 6

// flashLines shows the answer to the last action, or an error, for
// flashTTL or until the next key: always at least one line (empty when
// there is nothing to show); an error that does not fit is wrapped over
// at most maxFlashLines, taken from the body.
func (m *Model) flashLines() []string {
	fl := m.flash
	if fl.text == "" || m.clock().Sub(fl.at) > flashTTL {
		return []string{""}
	}
	t := oneLine(fl.text)
	if !fl.err {
		return []string{cut(t, m.width)}
	}
	lines := wrap(t, m.width)
	if n := min(maxFlashLines, max(1, m.height-6)); len(lines) > n {
		lines = lines[:n]
		lines[n-1] = cut(lines[n-1]+" …", m.width)
	}
	for i, l := range lines {
		lines[i] = m.st.paint(&m.st.errText, cut(l, m.width))
	}
	return lines
}

// changes reports whether b is a key that changes a site (a read-only
// console does not offer it).
func (m *Model) changes(b key.Binding) bool {
	k := m.keys
	for _, c := range []key.Binding{k.Enable, k.Disable, k.Jobs, k.Schedule, k.Unschedule, k.Confirm, k.Retry, k.Resume, k.Skip, k.Abort, k.DisableNow, k.NewRunbook} {
		if slices.Equal(b.Keys(), c.Keys()) {
			return true
		}
	}
	return false
}

// keyBar lists the keys of the current context on one line.
func (m *Model) keyBar() string {
	k := m.keys
	var bs []key.Binding
	switch {
	case m.dialog != nil && m.dialog.yesNo:
		bs = []key.Binding{k.Yes, k.No, k.Back}
	case m.dialog != nil:
		bs = []key.Binding{k.NextField, k.Change, k.Submit, k.Back}
	case m.filtering:
		bs = []key.Binding{k.FilterApply, k.FilterClear}
	case m.help:
		bs = []key.Binding{k.Back, k.Quit}
	case m.view == viewSite:
		bs = []key.Binding{k.Back, k.Enable, k.Disable, k.Jobs, k.Runbook, k.Schedule}
		if m.current != nil && m.current.status != nil && m.current.status.Schedule != nil {
			bs = append(bs, k.Unschedule) // only when there is a window to cancel
		}
		bs = append(bs, k.Help, k.Quit)
	case m.view == viewRunbook:
		bs = m.runbookBar()
	default:
		bs = []key.Binding{k.Open, k.Filter, k.Sort, k.Enable, k.Disable, k.Jobs, k.Runbook, k.Help, k.Quit}
	}
	if m.opts.ReadOnly != "" {
		bs = slices.DeleteFunc(bs, m.changes)
	}
	var parts []string
	for _, b := range bs {
		h := b.Help()
		desc, ok := barWords[h.Desc]
		if !ok {
			desc = h.Desc
		}
		parts = append(parts, m.st.paint(&m.st.key, h.Key)+" "+desc)
	}
	bar := strings.Join(parts, "  ")
	if width(bar) > m.width {
		bar = strings.Join(parts, " ")
	}
	return cut(bar, m.width)
}

// helpBody lists every key.
func (m *Model) helpBody(f *frame, height int) {
	k := m.keys
	type section struct {
		title string
		binds []key.Binding
		extra [][2]string
	}
	left := []section{
		{"Everywhere", k.global(), nil},
		{"Dashboard", k.dashboard(), [][2]string{{"enter, esc", "keep, clear the filter"}}},
		{"Site view", []key.Binding{k.Schedule, k.Unschedule}, [][2]string{{"e d s r ↑/↓", "as on the dashboard"}}},
	}
	right := []section{
		{"Runbook view", k.runbook(), nil},
		{"Dialogs", []key.Binding{k.NextField, k.PrevField, k.Change, k.Submit, k.Yes, k.No}, [][2]string{{"esc", "cancel: nothing is sent"}}},
	}
	render := func(ss []section, w int) []string {
		var out []string
		for _, s := range ss {
			out = append(out, m.st.paint(&m.st.heading, s.title))
			for _, b := range s.binds {
				h := b.Help()
				out = append(out, "  "+fit(h.Key, 11)+" "+cut(h.Desc, w-14))
			}
			for _, e := range s.extra {
				out = append(out, "  "+fit(e[0], 11)+" "+cut(e[1], w-14))
			}
		}
		return out
	}
	colW := m.width / 2
	l, r := render(left, colW), render(right, m.width-colW)
	if len(l)+len(r)+1 <= height || m.width < 2*40 {
		for _, line := range append(append(l, ""), r...) {
			f.add(line)
		}
		return
	}
	for i := 0; i < max(len(l), len(r)); i++ {
		var a, b string
		if i < len(l) {
			a = l[i]
		}
		if i < len(r) {
			b = r[i]
		}
		f.add(fit(a, colW) + b)
	}
}

// barWords shortens help texts for the key bar.
var barWords = map[string]string{
	"open the site":              "open",
	"filter by name":             "filter",
	"follow the log again":       "follow",
	"sort by trouble / by name":  "sort",
	"enable maintenance":         "enable",
	"disable maintenance (y/N)":  "disable",
	"suspend/resume RQ (y/N)":    "RQ jobs",
	"confirm the waiting step":   "confirm",
	"retry the failed step":      "retry",
	"resume the runbook":         "resume",
	"skip the step (if allowed)": "skip",
	"abort the runbook (y/N)":    "abort",
	"disable maintenance now":    "disable now",
	"start a runbook":            "new runbook",
	"plan a maintenance window":  "window",
	"cancel the planned window":  "cancel",
	"next field":                 "next",
	"change a choice":            "change",
	"next field, or send":        "next/send",
	"no (the default)":           "no",
	"keep the filter":            "keep",
	"clear the filter":           "clear",
}
