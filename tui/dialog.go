package tui

import (
	"strings"

	"charm.land/bubbles/v2/key"
	"charm.land/bubbles/v2/textinput"
	tea "charm.land/bubbletea/v2"
)

// fieldKind is what a dialog field holds.
type fieldKind int

const (
	textField   fieldKind = iota
	choiceField           // one of choices
	toggleField           // on or off
)

// field is one field of a dialog.
type field struct {
	label   string
	kind    fieldKind
	input   textinput.Model
	choices []string
	choice  int
	on      bool
	hint    string // shown after the field
}

// form is a dialog: either a y/N question or a few fields, the last of
// which, for actions that change a site, asks for its name to be typed.
type form struct {
	title  string
	lines  []string // what the dialog says above its fields
	fields []field
	focus  int
	err    string // why the last submit was refused
	yesNo  bool
	// submit checks the dialog and returns the command to send; a
	// problem keeps the dialog open and nothing is sent.
	submit func(f *form) (cmd tea.Cmd, problem string)
}

// value returns the text of the field labelled label.
func (f *form) value(label string) string {
	for _, fl := range f.fields {
		if fl.label == label {
			switch fl.kind {
			case choiceField:
				return fl.choices[fl.choice]
			case toggleField:
				if fl.on {
					return "on"
				}
				return ""
			}
			return strings.TrimSpace(fl.input.Value())
		}
	}
	return ""
}

// textFieldOf returns a text field.
func (m *Model) textFieldOf(label, placeholder, hint string) field {
	in := m.st.newInput("", placeholder)
	return field{label: label, kind: textField, input: in, hint: hint}
}

// openDialog shows f and focuses its first field.
// Every dialog changes a site; a read-only console opens none.
func (m *Model) openDialog(f *form) tea.Cmd {
	if m.opts.ReadOnly != "" {
		m.setFlash(m.opts.ReadOnly+": nothing was changed", true)
		return nil
	}
	m.dialog = f
	f.resize(m.width)
	return f.setFocus(0)
}

func (f *form) setFocus(i int) tea.Cmd {
	if len(f.fields) == 0 {
		return nil
	}
	if f.focus < len(f.fields) && f.fields[f.focus].kind == textField {
		f.fields[f.focus].input.Blur()
	}
	f.focus = (i + len(f.fields)) % len(f.fields)
	if f.fields[f.focus].kind == textField {
		return f.fields[f.focus].input.Focus()
	}
	return nil
}

// dialogKey handles a key while a dialog is open.
func (m *Model) dialogKey(k tea.KeyPressMsg) tea.Cmd {
	f := m.dialog
	if f.yesNo {
		switch {
		case key.Matches(k, m.keys.Yes):
			cmd, problem := f.submit(f)
			if problem != "" {
				f.err = problem
				return nil
			}
			m.dialog = nil
			return cmd
		case key.Matches(k, m.keys.No, m.keys.Back):
			m.dialog = nil
			m.setFlash("cancelled: nothing was sent", false)
		}
		return nil
	}
	switch {
	case key.Matches(k, m.keys.Back):
		m.dialog = nil
		m.setFlash("cancelled: nothing was sent", false)
		return nil
	case key.Matches(k, m.keys.NextField):
		return f.setFocus(f.focus + 1)
	case key.Matches(k, m.keys.PrevField):
		return f.setFocus(f.focus - 1)
	case key.Matches(k, m.keys.Submit):
		if f.focus < len(f.fields)-1 {
			return f.setFocus(f.focus + 1)
		}
		cmd, problem := f.submit(f)
		if problem != "" {
			f.err = problem
			return nil
		}
		m.dialog = nil
		return cmd
	}
	if len(f.fields) == 0 {
		return nil
	}
	fl := &f.fields[f.focus]
	switch fl.kind {
	case choiceField:
		if key.Matches(k, m.keys.Change) {
			if k.String() == "left" {
				fl.choice = (fl.choice + len(fl.choices) - 1) % len(fl.choices)
			} else {
				fl.choice = (fl.choice + 1) % len(fl.choices)
			}
		}
		return nil
	case toggleField:
		if key.Matches(k, m.keys.Change) {
			fl.on = !fl.on
		}
		return nil
	}
	var cmd tea.Cmd
	fl.input, cmd = fl.input.Update(k)
	f.err = ""
	return cmd
}

// dialogBox draws the dialog in a box width cells wide.
func (m *Model) dialogBox(d *frame, boxW int) {
	f := m.dialog
	inner := boxW - 4
	border := func(s string) string { return m.st.paint(&m.st.dialogBorder, s) }
	title := " " + f.title + " "
	top := "╭─" + title + strings.Repeat("─", max(0, boxW-3-width(title))) + "╮"
	d.add(border(cut(top, boxW)))
	row := func(s string) { d.add(border("│") + " " + fit(s, inner) + " " + border("│")) }
	for _, l := range f.lines {
		for _, w := range wrap(l, inner) {
			row(w)
		}
	}
	labelW := f.labelWidth()
	for i, fl := range f.fields {
		mark := "  "
		if i == f.focus {
			mark = "› "
		}
		prefix := mark + fit(fl.label, labelW) + "  "
		switch fl.kind {
		case textField:
			w, hint := f.inputWidth(i, boxW)
			d.addInput(border("│")+" "+prefix, fl.input, i == f.focus, w, m.st.paint(&m.st.faint, hint)+" "+border("│"))
		case choiceField:
			var parts []string
			for j, c := range fl.choices {
				if j == fl.choice {
					parts = append(parts, "(x) "+c)
				} else {
					parts = append(parts, "( ) "+c)
				}
			}
			row(prefix + strings.Join(parts, "  ") + hintOf(fl))
		case toggleField:
			box := "[ ]"
			if fl.on {
				box = "[x]"
			}
			row(prefix + box + hintOf(fl))
		}
	}
	if f.yesNo {
		row("")
		row("y: yes, send it   n/enter/esc: no, send nothing")
	}
	if f.err != "" {
		row("")
		for _, l := range wrap("✗ "+f.err, inner) {
			row(m.st.paint(&m.st.errText, l))
		}
	}
	d.add(border("╰" + strings.Repeat("─", max(0, boxW-2)) + "╯"))
}

func hintOf(fl field) string {
	if fl.hint == "" {
		return ""
	}
	return "   " + fl.hint
}

func (f *form) labelWidth() int {
	w := 0
	for _, fl := range f.fields {
		w = max(w, width(fl.label))
	}
	return w
}

// inputWidth is the width of text field i in a dialog width cells wide,
// and the hint shown after it.
func (f *form) inputWidth(i, screenW int) (int, string) {
	w := screenW - 4 - 2 - f.labelWidth() - 2
	hint := ""
	if h := f.fields[i].hint; h != "" && w-width(h)-2 > 24 {
		hint = "  " + h
		w -= width(hint)
	}
	return max(w, 1), hint
}

// resize fits the dialog's text fields to a screen width cells wide.
func (f *form) resize(screenW int) {
	for i := range f.fields {
		if f.fields[i].kind == textField {
			w, _ := f.inputWidth(i, screenW)
			f.fields[i].input.SetWidth(max(1, w-1))
		}
	}
}
