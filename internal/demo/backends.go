package demo

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ckanops/ckanops/config"
	"github.com/ckanops/ckanops/internal/throwaway"
)

// backends are the throwaway Postgres and Redis the demo's sites share,
// when this machine has them (initdb and redis-server): then the DB and RQ
// columns show real figures and snapshots hold real dumps. Without them
// those checks say "not configured".
type backends struct {
	pg    *throwaway.Postgres
	redis *throwaway.Redis
	notes []string // what is missing, for the demo's banner
}

// startBackends launches what it can. A missing program is a note, not an
// error; a program that fails to start is an error.
func (d *Demo) startBackends() error {
	b := &d.backends
	pg, err := throwaway.StartPostgres(throwaway.PostgresOptions{})
	switch {
	case errors.Is(err, throwaway.ErrPostgresNotInstalled):
		b.notes = append(b.notes, "no Postgres on this machine: the DB columns say \"not configured\" (apt-get install postgresql)")
	case err != nil:
		return fmt.Errorf("demo: %w", err)
	default:
		b.pg = pg
		d.closers = append(d.closers, func() { pg.Close() })
	}
	rd, err := throwaway.StartRedis(throwaway.RedisOptions{})
	switch {
	case errors.Is(err, throwaway.ErrRedisNotInstalled):
		b.notes = append(b.notes, "no redis-server on this machine: the RQ column says \"not configured\" (apt-get install redis-server)")
	case err != nil:
		return fmt.Errorf("demo: %w", err)
	default:
		b.redis = rd
		d.closers = append(d.closers, func() { rd.Close() })
	}
	return nil
}

// checksFor gives site i its own two databases (with a few of CKAN's
// tables) and its own Redis database, when the backends run.
func (b *backends) checksFor(ctx context.Context, name string, i int, c config.ChecksConfig) (config.ChecksConfig, error) {
	if b.pg != nil {
		db := strings.ReplaceAll(name, "-", "_")
		ckanURL, err := b.pg.CreateDatabase(ctx, db+"_ckan")
		if err != nil {
			return c, fmt.Errorf("demo: %w", err)
		}
		dsURL, err := b.pg.CreateDatabase(ctx, db+"_datastore")
		if err != nil {
			return c, fmt.Errorf("demo: %w", err)
		}
		if err := seedDatabases(ctx, ckanURL, dsURL); err != nil {
			return c, fmt.Errorf("demo: seed %s's databases: %w", name, err)
		}
		c.CKANDB, c.DatastoreDB = config.SecretURL(ckanURL), config.SecretURL(dsURL)
	}
	if b.redis != nil && i < 16 { // Redis has 16 databases; RQ's keys are per database
		c.Redis = config.SecretURL(fmt.Sprintf("redis://%s/%d", b.redis.Addr(), i))
		c.SiteID = strings.ReplaceAll(name, "-", "_")
	}
	return c, nil
}

// pgDump is the pg_dump of the throwaway server's version, or "" (the
// default, on PATH).
func (b *backends) pgDump() string {
	if b.pg == nil {
		return ""
	}
	return filepath.Join(b.pg.BinDir(), "pg_dump")
}

// seedDatabases creates a few of CKAN's tables with rows, and a DataStore
// table, so that a snapshot holds something real.
func seedDatabases(ctx context.Context, ckanURL, dsURL string) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for _, s := range []struct{ url, sql string }{
		{ckanURL, `
CREATE TABLE package (id text PRIMARY KEY, name text UNIQUE NOT NULL, title text, metadata_modified timestamp);
CREATE TABLE resource (id text PRIMARY KEY, package_id text REFERENCES package(id), url text);
CREATE TABLE "user" (id text PRIMARY KEY, name text UNIQUE, sysadmin boolean, last_active timestamp);
CREATE TABLE api_token (id text PRIMARY KEY, user_id text REFERENCES "user"(id), last_access timestamp);
CREATE TABLE dashboard (user_id text PRIMARY KEY, activity_stream_last_viewed timestamp);
CREATE TABLE tracking_raw (user_key text, url text, tracking_type text, access_timestamp timestamp);
INSERT INTO package VALUES ('p1', 'air-quality-2024', 'Air quality 2024', now()), ('p2', 'bus-stops', 'Bus stops', now());
INSERT INTO resource VALUES ('3f2c1a9b-44d1-8f0e-1a2b3c4d5e6f', 'p1', 'pm10.csv');
INSERT INTO "user" VALUES ('u1', 'admin', true, now()), ('u2', 'editor', false, now());
INSERT INTO api_token VALUES ('t1', 'u1', now());`},
		{dsURL, `
CREATE TABLE "3f2c1a9b-44d1-8f0e-1a2b3c4d5e6f" (_id serial PRIMARY KEY, year int, pm10 numeric, no2 numeric);
INSERT INTO "3f2c1a9b-44d1-8f0e-1a2b3c4d5e6f" (year, pm10, no2) VALUES (2023, 19, 31), (2024, 17, 29);`},
	} {
		conn, err := pgx.Connect(ctx, s.url)
		if err != nil {
			return err
		}
		_, err = conn.Exec(ctx, s.sql)
		conn.Close(ctx)
		if err != nil {
			return err
		}
	}
	return nil
}
