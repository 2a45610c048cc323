package tui

import "charm.land/bubbles/v2/key"

// keyMap holds every key binding, grouped by where it works. The help
// screen and the key bar are made from it, and a test checks that no two
// bindings of one context share a key.
type keyMap struct {
	// Everywhere (outside text fields, which take printable keys).
	Help, Quit, ForceQuit, Back, RefreshNow key.Binding

	// Dashboard.
	Up, Down, Open, Filter, Sort key.Binding
	// Dashboard and site view.
	Enable, Disable, Jobs, Runbook key.Binding
	// Site view: plan or cancel a maintenance window.
	Schedule, Unschedule key.Binding

	// Runbook view.
	Confirm, Retry, Resume, Skip, Abort, DisableNow, NewRunbook, Follow key.Binding

	// Dialogs.
	NextField, PrevField, Change, Submit, Yes, No key.Binding

	// Filter field.
	FilterApply, FilterClear key.Binding
}

func newKeyMap() keyMap {
	b := func(keys []string, help, desc string) key.Binding {
		return key.NewBinding(key.WithKeys(keys...), key.WithHelp(help, desc))
	}
	return keyMap{
		Help:       b([]string{"?"}, "?", "help"),
		Quit:       b([]string{"q"}, "q", "quit"),
		ForceQuit:  b([]string{"ctrl+c"}, "ctrl+c", "quit, even while typing"),
		Back:       b([]string{"esc"}, "esc", "back"),
		RefreshNow: b([]string{"ctrl+r"}, "ctrl+r", "refresh every site now"),

		Up:     b([]string{"up", "k"}, "↑/k", "up"),
		Down:   b([]string{"down", "j"}, "↓/j", "down"),
		Open:   b([]string{"enter"}, "enter", "open the site"),
		Filter: b([]string{"/"}, "/", "filter by name"),
		Sort:   b([]string{"t"}, "t", "sort by trouble / by name"),

		Enable:  b([]string{"e"}, "e", "enable maintenance"),
		Disable: b([]string{"d"}, "d", "disable maintenance (y/N)"),
		Jobs:    b([]string{"s"}, "s", "suspend/resume RQ (y/N)"),
		Runbook: b([]string{"r"}, "r", "runbook"),

		Schedule:   b([]string{"w"}, "w", "plan a maintenance window"),
		Unschedule: b([]string{"W"}, "W", "cancel the planned window"),

		Confirm:    b([]string{"c"}, "c", "confirm the waiting step"),
		Retry:      b([]string{"R"}, "R", "retry the failed step"),
		Resume:     b([]string{"u"}, "u", "resume the runbook"),
		Skip:       b([]string{"S"}, "S", "skip the step (if allowed)"),
		Abort:      b([]string{"a"}, "a", "abort the runbook (y/N)"),
		DisableNow: b([]string{"D"}, "D", "disable maintenance now"),
		NewRunbook: b([]string{"n"}, "n", "start a runbook"),
		Follow:     b([]string{"G", "end"}, "G/end", "follow the log again"),

		NextField: b([]string{"tab", "down"}, "tab/↓", "next field"),
		PrevField: b([]string{"shift+tab", "up"}, "shift+tab/↑", "previous field"),
		Change:    b([]string{"left", "right", "space"}, "←/→/space", "change a choice"),
		Submit:    b([]string{"enter"}, "enter", "next field, or send"),
		Yes:       b([]string{"y", "Y"}, "y", "yes"),
		No:        b([]string{"n", "N", "enter"}, "n/enter", "no (the default)"),

		FilterApply: b([]string{"enter"}, "enter", "keep the filter"),
		FilterClear: b([]string{"esc"}, "esc", "clear the filter"),
	}
}

// Key contexts, for the help screen, the key bar and the collision test.
func (k keyMap) global() []key.Binding {
	return []key.Binding{k.Help, k.Quit, k.ForceQuit, k.Back, k.RefreshNow}
}

func (k keyMap) dashboard() []key.Binding {
	return []key.Binding{k.Up, k.Down, k.Open, k.Filter, k.Sort, k.Enable, k.Disable, k.Jobs, k.Runbook}
}

func (k keyMap) site() []key.Binding {
	return []key.Binding{k.Up, k.Down, k.Enable, k.Disable, k.Jobs, k.Runbook, k.Schedule, k.Unschedule}
}

func (k keyMap) runbook() []key.Binding {
	return []key.Binding{k.Up, k.Down, k.Confirm, k.Retry, k.Resume, k.Skip, k.Abort, k.DisableNow, k.NewRunbook, k.Follow}
}

func (k keyMap) form() []key.Binding {
	return []key.Binding{k.NextField, k.PrevField, k.Change, k.Submit, k.Back, k.ForceQuit}
}

func (k keyMap) yesNo() []key.Binding {
	return []key.Binding{k.Yes, k.No, k.Back, k.ForceQuit}
}

func (k keyMap) filter() []key.Binding {
	return []key.Binding{k.FilterApply, k.FilterClear, k.ForceQuit}
}
