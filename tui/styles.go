package tui

import (
	"charm.land/bubbles/v2/textinput"
	"charm.land/lipgloss/v2"
	"github.com/ckanops/ckanops/api"
)

// styles holds every style of the console, so the look changes in one
// place and NO_COLOR is handled once: with noColor, paint returns its
// text untouched and no escape code is ever written.
type styles struct {
	noColor bool
	cache   map[paintKey]string // painted texts: the dashboard repeats the same cells

	title, heading, faint, selected lipgloss.Style
	ok, warn, fail, stale           lipgloss.Style
	live, readOnly, down            lipgloss.Style
	key, errText, dialogBorder      lipgloss.Style
}

// paintKey is a style and a text painted in it.
type paintKey struct {
	st   *lipgloss.Style
	text string
}

const maxPaintCache = 4096

func newStyles(noColor bool) styles {
	s := styles{noColor: noColor, cache: map[paintKey]string{}}
	if noColor {
		return s
	}
	n := lipgloss.NewStyle
	s.title = n().Bold(true)
	s.heading = n().Bold(true).Underline(true)
	s.faint = n().Faint(true)
	s.selected = n().Reverse(true)
	s.ok = n().Foreground(lipgloss.Green)
	s.warn = n().Foreground(lipgloss.Yellow)
	s.fail = n().Foreground(lipgloss.Red).Bold(true)
	s.stale = n().Foreground(lipgloss.Yellow).Faint(true)
	s.live = n().Foreground(lipgloss.Green).Bold(true)
	s.readOnly = n().Foreground(lipgloss.Black).Background(lipgloss.Yellow).Bold(true)
	s.down = n().Foreground(lipgloss.BrightWhite).Background(lipgloss.Red).Bold(true)
	s.key = n().Bold(true)
	s.errText = n().Foreground(lipgloss.Red)
	s.dialogBorder = n().Foreground(lipgloss.Cyan)
	return s
}

// paint renders text in st, or returns it as is without colour.
func (s *styles) paint(st *lipgloss.Style, text string) string {
	if s.noColor || text == "" {
		return text
	}
	k := paintKey{st, text}
	if v, ok := s.cache[k]; ok {
		return v
	}
	if len(s.cache) >= maxPaintCache {
		clear(s.cache)
	}
	v := st.Render(text)
	s.cache[k] = v
	return v
}

// forStatus is the style of a check status (ok, warn, fail, unknown).
func (s *styles) forStatus(status api.CheckStatus) *lipgloss.Style {
	switch status {
	case "ok":
		return &s.ok
	case "warn", "unknown":
		return &s.warn
	}
	return &s.fail
}

// forMode is the style of a mode.
func (s *styles) forMode(mode api.Mode) *lipgloss.Style {
	switch mode {
	case "live":
		return &s.live
	case "read-only":
		return &s.readOnly
	case "down":
		return &s.down
	}
	return &s.faint
}

// newInput returns a text field without a virtual cursor (the terminal's
// own cursor is placed through tea.View) and, without colour, unstyled.
func (s styles) newInput(prompt, placeholder string) textinput.Model {
	in := textinput.New()
	in.Prompt = prompt
	in.Placeholder = placeholder
	in.SetVirtualCursor(false)
	st := in.Styles()
	if s.noColor {
		plain := lipgloss.NewStyle()
		st.Focused = textinput.StyleState{Text: plain, Placeholder: plain, Suggestion: plain, Prompt: plain}
		st.Blurred = st.Focused
		st.Cursor.Color = nil
	}
	st.Cursor.Blink = false
	in.SetStyles(st)
	return in
}
