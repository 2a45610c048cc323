package demo

import (
	"context"

	"github.com/ckanops/ckanops/config"
)

// backends are the throwaway Postgres and Redis the demo's sites share,
// when this machine has them: then the DB and RQ columns show real
// figures and snapshots hold real dumps. Without them those checks say
// "not configured".
type backends struct {
	pgDumpPath string
}

// checksFor adds the site's databases and Redis to c, when there are any.
func (b *backends) checksFor(_ context.Context, _ string, c config.ChecksConfig) config.ChecksConfig {
	return c
}

// pgDump is the pg_dump matching the throwaway server, or "" (the default).
func (b *backends) pgDump() string { return b.pgDumpPath }
