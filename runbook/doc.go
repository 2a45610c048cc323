// Package runbook is the maintenance runbook a gate runs for its site:
// preflight -> enable -> drain -> snapshot -> migrate -> verify -> disable.
//
// An Engine holds at most one active runbook per site (a lock: a file lock
// for a lone gate, a Redis key when several gates share the mode). Each
// step records its evidence (what was checked or run, exit codes,
// durations, output tails) in the runbook's record and in an append-only
// journal on disk, so a gate restarted mid-runbook shows the runbook as
// interrupted at its step, and an operator can resume it, retry the step,
// or disable maintenance.
//
// The engine changes the site only through its Site (the gate it runs
// on). It never reopens writes after a failure: a failed step stops the
// runbook with the site still in maintenance, until an operator says
// otherwise. It must not log secrets: database URLs go through
// config.SecretURL.
package runbook
