// Package checks probes a CKAN site's health: CKAN itself (status_show),
// its CKAN and DataStore databases (Postgres), Redis and the RQ queues,
// Solr, and the file storage. The gate serves the probes' report at
// GET /-/ckanops/health and its runbook's drain waits on them.
//
// Every probe returns one result type, api.CheckResult: a name, a
// status (ok, warn, fail, unknown), a summary an operator can act on, the
// details typed by the probe's kind (api.PostgresDetails, api.RQDetails,
// ...), when it was observed and how long it took. What a probe could not
// learn stays nil in its details, never zero: the drain reads nil as
// unknown. Sizes in summaries are written as the rest of ckanops writes
// them (internal/human). A Runner runs the
// probes of a site concurrently, each under its own timeout, and reuses a
// round for a while, so that many consoles do not multiply the load on the
// site.
//
// A probe must answer within its timeout whatever the fault (unreachable
// host, wrong password, missing database, a server that accepts and never
// answers), must not leak its connection, and must never print a password:
// summaries name hosts, databases and users, never a DSN. Probes only read;
// the one write in this package is SuspendRQ/ResumeRQ, which set and delete
// RQ's own suspension flag as `rq suspend` and `rq resume` do.
package checks
