// Package tui is the console's terminal user interface: a dashboard of
// every configured site (its mode, its runbook or planned maintenance
// window, an overrun or a maintenance a trigger set, and whether it
// needs the operator), a site view (checks, in-flight writes, gates, the
// mode record, the planned window, the site's triggers, the last
// runbook), the runbook view (checklist, live log, confirmations) and
// the dialogs that change a site's mode or plan and cancel its
// maintenance window.
//
// It knows a site only through its gate's control API (package
// ckanclient), behind the Gate interface so tests use fakes; it never
// imports package gate. Bubble Tea's rules hold throughout: Update does
// no I/O and never blocks: every call to a gate runs in a tea.Cmd that
// returns a message, refreshes are bounded in number and each has the
// site's own timeout, so one dead site never freezes the screen. High
// impact actions ask for the site's name to be typed; the mode shown
// changes only when the gate has answered.
package tui
