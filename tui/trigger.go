package tui

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"charm.land/lipgloss/v2"

	"github.com/ckanops/ckanops/api"
	"github.com/ckanops/ckanops/internal/human"
)

// Triggers (gate.toml's [[trigger]], api.TriggerState): a site a trigger
// put in maintenance is TRIGGERED on the dashboard (a look, not an
// alarm that needs you), and the site view lists every trigger of the
// site. The data is in the status the console polls already.

// triggeredBy names the trigger that put the site in maintenance: the
// mode record's actor is trigger:NAME and the mode holds writes back.
// ok is false otherwise (a trigger that put the site back to live is
// not worth a look).
func triggeredBy(st *api.Status) (name string, ok bool) {
	if st == nil || !st.Mode.Maintenance() {
		return "", false
	}
	name, ok = strings.CutPrefix(st.Actor, api.TriggerActorPrefix)
	return name, ok && name != ""
}

// triggerOf is the site's trigger called name, or nil when its gate
// lists none of that name.
func triggerOf(st *api.Status, name string) *api.TriggerState {
	for i := range st.Triggers {
		if st.Triggers[i].Name == name {
			return &st.Triggers[i]
		}
	}
	return nil
}

// triggerWords is the dashboard's word for a maintenance a trigger set:
// "TRIGGERED by replica-lag"; "" when no trigger did.
func triggerWords(st *api.Status) string {
	name, ok := triggeredBy(st)
	if !ok {
		return ""
	}
	return "TRIGGERED by " + name
}

// triggerEnding says where the trigger that holds the mode stands and
// how the maintenance ends: "now 45.1; back to live by itself once clear
// for its recover time (if set), or d disables". A trigger that stays
// clear for its recover time reopens the site; one without a recover
// time never does (the gate's note says so once it is clear).
func triggerEnding(st *api.Status, name string, now time.Time) string {
	ts := triggerOf(st, name)
	if ts == nil {
		return "its gate lists no trigger " + name + " now: ending it is your call, d disables"
	}
	var parts []string
	how := "no recover set: ending it is your call, d disables"
	if ts.Recover != "" {
		how = "back to live by itself after " + ts.Recover + " clear, or d disables"
	}
	switch ts.State {
	case api.TriggerFired:
		if ts.Value != "" {
			parts = append(parts, "now "+shortValue(ts.Value))
		}
	case api.TriggerRecovering:
		clear := "clear"
		if ts.Since != nil {
			clear += " since " + human.Ago(now.Sub(*ts.Since))
		}
		if ts.Value != "" {
			clear += " (now " + shortValue(ts.Value) + ")"
		}
		parts = append(parts, clear)
		if ts.Note != "" { // no recover time, another trigger holds, ...
			how = "d disables"
		}
	default: // it no longer manages the mode
		parts = append(parts, "the trigger is "+triggerStateWord(ts.State))
		how = "ending it is your call: d disables"
	}
	if ts.Note != "" {
		parts = append(parts, oneLine(ts.Note))
	}
	return strings.Join(append(parts, how), "; ")
}

// triggeredText is the dashboard's note on a maintenance a trigger set:
// "TRIGGERED by replica-lag: replay_lag_seconds = 42.5 > 30 on ckan_db
// for 30s; now 45.1; back to live by itself ..., or d disables".
func triggeredText(st *api.Status, name string, now time.Time) string {
	text := "TRIGGERED by " + name
	if st.Reason != "" {
		text += ": " + oneLine(st.Reason)
	}
	return text + "; " + triggerEnding(st, name, now)
}

// triggeredLines is the site view's line on a maintenance a trigger
// set, labelled TRIGGERED (the mode record says what it saw already).
func triggeredLines(st *api.Status, now time.Time) [][2]string {
	name, ok := triggeredBy(st)
	if !ok {
		return nil
	}
	return [][2]string{{"TRIGGERED", "by " + name + "; " + triggerEnding(st, name, now)}}
}

// triggerStateWord spells a state that has nothing to add.
func triggerStateWord(state string) string {
	if state == api.TriggerStood {
		return "stood down"
	}
	return state
}

// triggerState says where one trigger stands, for the site view:
// "armed", "pending since 12s", "FIRED at 14:02 on 42.5", "recovering
// since 3m", "blind: NOTE", "stood down". noted is true when the text
// holds the trigger's note already.
func triggerState(ts api.TriggerState, now time.Time, loc *time.Location) (text string, noted bool) {
	since := func() string {
		if ts.Since == nil {
			return ""
		}
		return " since " + human.Ago(now.Sub(*ts.Since))
	}
	switch ts.State {
	case api.TriggerPending, api.TriggerRecovering:
		return ts.State + since(), false
	case api.TriggerFired:
		text = "FIRED"
		at := ts.FiredAt
		if at == nil {
			at = ts.Since
		}
		if at != nil {
			text += " at " + shortTime(at.Truncate(time.Minute), now, loc)
		}
		if ts.FiredValue != "" {
			text += " on " + shortValue(ts.FiredValue)
		}
		return text, false
	case api.TriggerBlind:
		if ts.Note != "" {
			return "blind: " + oneLine(ts.Note), true
		}
		return "blind" + since(), false
	}
	return triggerStateWord(ts.State), false
}

// triggerStyle is the colour of a trigger's state: fired in the failure
// colour, pending and recovering as a warning, blind and stood down
// faint (worth a mention, not an alarm).
func (s *styles) triggerStyle(state string) *lipgloss.Style {
	switch state {
	case api.TriggerFired:
		return &s.fail
	case api.TriggerPending, api.TriggerRecovering:
		return &s.warn
	case api.TriggerBlind, api.TriggerStood:
		return &s.faint
	}
	return nil
}

// shortValue writes a detail's value with at most three decimals:
// "0.123456789" as "0.123"; anything else as the gate sent it.
func shortValue(v string) string {
	i := strings.IndexByte(v, '.')
	if i < 0 || len(v)-i-1 <= 3 || strings.ContainsAny(v, "eE") {
		return v
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil {
		return v
	}
	s := strings.TrimRight(strconv.FormatFloat(f, 'f', 3, 64), "0")
	return strings.TrimSuffix(s, ".")
}

// maxTriggerName and maxTriggerState bound the site view's columns of
// trigger names and states; a longer name is cut, a longer state pushes
// the rest of its line.
const (
	maxTriggerName  = 20
	maxTriggerState = 24
)

// triggerBlock is the site view's TRIGGERS block, w cells wide: a
// heading that counts the triggers not armed, then a line per trigger:
// its name, its state, the last value read, its check, condition and
// mode, and the gate's note, continued below (under the states) when
// the width is too small for it. A note every trigger shares (the leader
// lease's, say) is said once, under the heading. Nothing when the site
// has no trigger.
func (m *Model) triggerBlock(st *api.Status, now time.Time, w int) (heading string, lines []string) {
	if st == nil || len(st.Triggers) == 0 {
		return "", nil
	}
	counts := map[string]int{}
	var order []string
	nameW, stateW := 0, 0
	states := make([]string, len(st.Triggers))
	noted := make([]bool, len(st.Triggers))
	for i, ts := range st.Triggers {
		if counts[ts.State] == 0 {
			order = append(order, ts.State)
		}
		counts[ts.State]++
		states[i], noted[i] = triggerState(ts, now, m.loc)
		nameW = max(nameW, width(ts.Name))
		stateW = max(stateW, min(width(states[i]), maxTriggerState))
	}
	nameW = min(nameW, maxTriggerName)
	var tally []string
	for _, s := range []string{api.TriggerFired, api.TriggerRecovering, api.TriggerPending, api.TriggerBlind, api.TriggerStood} {
		if n := counts[s]; n > 0 {
			tally = append(tally, fmt.Sprintf("%d %s", n, triggerStateWord(s)))
		}
	}
	for _, s := range order { // states this console does not know
		switch s {
		case api.TriggerArmed, api.TriggerFired, api.TriggerRecovering, api.TriggerPending, api.TriggerBlind, api.TriggerStood:
		default:
			tally = append(tally, fmt.Sprintf("%d %s", counts[s], s))
		}
	}
	heading = fmt.Sprintf("TRIGGERS (%d)", len(st.Triggers))
	if len(tally) > 0 {
		heading = fmt.Sprintf("TRIGGERS (%d: %s)", len(st.Triggers), strings.Join(tally, ", "))
	}

	// A note every trigger shares (but the blind ones, whose note is
	// their state) is said once.
	shared, sharers := "", 0
	for i, ts := range st.Triggers {
		if noted[i] {
			continue
		}
		if ts.Note == "" || (shared != "" && ts.Note != shared) {
			shared, sharers = "", 0
			break
		}
		shared = ts.Note
		sharers++
	}
	if sharers < 2 {
		shared = ""
	}
	if shared != "" {
		for _, l := range wrap(oneLine(shared), w-2) {
			lines = append(lines, "  "+l)
		}
	}

	prefix := "  " + strings.Repeat(" ", nameW+1)
	for i, ts := range st.Triggers {
		state := states[i]
		pad := max(0, stateW-width(state))
		if style := m.st.triggerStyle(ts.State); style != nil {
			state = m.st.paint(style, state)
		}
		if ts.Value != "" {
			state += strings.Repeat(" ", pad) + " now " + shortValue(ts.Value)
		}
		segs := []string{state, ts.Check + ": " + ts.When + " → " + string(ts.Mode)}
		if ts.Note != "" && !noted[i] && ts.Note != shared {
			segs = append(segs, oneLine(ts.Note))
		}
		for j, l := range pack(segs, " · ", w-width(prefix)) {
			if j == 0 {
				l = "  " + fit(ts.Name, nameW) + " " + l
			} else {
				l = prefix + l
			}
			lines = append(lines, cut(l, w))
		}
	}
	return heading, lines
}

// pack joins segments with sep into lines of at most w cells, a segment
// kept whole on a line where it fits, and wrapped at spaces where it
// does not.
func pack(segs []string, sep string, w int) []string {
	w = max(w, 10)
	var out []string
	line := ""
	for _, s := range segs {
		switch {
		case line == "":
		case width(line)+width(sep)+width(s) <= w:
			line += sep + s
			continue
		default:
			out = append(out, line)
		}
		line = s
		if width(s) > w {
			parts := wrap(s, w)
			out = append(out, parts[:len(parts)-1]...)
			line = parts[len(parts)-1]
		}
	}
	return append(out, line)
}
