// Package api is ckanops' vocabulary: the typed words (Mode, Phase,
// CheckStatus, StepState, RunbookState, Decision) and the wire structs of
// the gate's control and runbook APIs, with the methods that read them
// (Report.Overall, Status.Applied, Runbook.Active, ...).
//
// The gate encodes these structs and the CLI and the console decode them,
// so their JSON names are the contract of docs/architecture.md and
// docs/api.md. It depends on the standard library only, and holds no
// HTTP, no client and no behaviour beyond reading its own values: the
// gate, the runbook engine, the probes and the console share it instead
// of each other's internals.
package api
