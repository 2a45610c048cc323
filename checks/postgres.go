package checks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/ckanops/ckanops/api"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/ckanops/ckanops/config"
)

// ProbeApplicationName is the application_name the Postgres probes
// connect with; they leave their own session out of every count.
const ProbeApplicationName = "ckanops-probe"

// PostgresLimits are the thresholds above which a Postgres probe warns.
// Zero values take the config package's defaults.
type PostgresLimits struct {
	ConnectionsRatio  float64       // connections in use / max_connections
	IdleInTransaction time.Duration // a session idle in a transaction for longer
	TransactionAge    time.Duration // a transaction open for longer
}

func (l PostgresLimits) withDefaults() PostgresLimits {
	if l.ConnectionsRatio <= 0 {
		l.ConnectionsRatio = config.DefaultWarnConnectionsRatio
	}
	if l.IdleInTransaction <= 0 {
		l.IdleInTransaction = config.DefaultWarnIdleInTransaction
	}
	if l.TransactionAge <= 0 {
		l.TransactionAge = config.DefaultWarnTransactionAge
	}
	return l
}

// Postgres probes one database: it connects, pings, and reads the server's
// activity in one query, then disconnects. Two queries per check.
type Postgres struct {
	name    string // the check's name: ckan_db, datastore_db, db:<name>
	key     string // where gate.toml sets its URL, for messages: "checks.ckan_db", "[[database]] datapusher's dsn"
	dsn     config.SecretURL
	limits  PostgresLimits
	queries atomic.Int64
}

// NewPostgres returns the probe of the database at dsn, named name (the
// [checks] key it comes from).
func NewPostgres(name string, dsn config.SecretURL, limits PostgresLimits) *Postgres {
	return &Postgres{name: name, key: "checks." + name, dsn: dsn, limits: limits.withDefaults()}
}

// NewDatabase returns the probe of one of the site's other databases
// (gate.toml's [[database]] db): the same probe, named db:<name>.
func NewDatabase(db config.Database, limits PostgresLimits) *Postgres {
	return &Postgres{name: api.ProbeDatabase(db.Name), key: "[[database]] " + db.Name + "'s dsn", dsn: db.DSN, limits: limits.withDefaults()}
}

func (p *Postgres) Name() string { return p.name }

// Queries is how many queries the probe has sent, in all.
func (p *Postgres) Queries() int64 { return p.queries.Load() }

// activityQuery reads everything the probe reports in one round trip.
// "here" is this database's client sessions other than the probes' own
// (this one's, and those of other gates or rounds, which are ours and
// fleeting); connections and max_connections are the whole server's. A session the
// probe's user may not see in full (another role's, without
// pg_read_all_stats) shows only its database: it is counted as hidden.
const activityQuery = `
WITH act AS (
  SELECT pid, datname, state, backend_xid, xact_start, state_change, wait_event_type, usename, application_name,
         backend_type IS NULL AS hidden
  FROM pg_stat_activity
  WHERE (backend_type = 'client backend' OR (backend_type IS NULL AND datname IS NOT NULL))
    AND pid <> pg_backend_pid() AND application_name IS DISTINCT FROM '` + ProbeApplicationName + `'
), here AS (SELECT * FROM act WHERE datname = current_database())
SELECT
  current_setting('max_connections')::int,
  (SELECT count(*) FROM act)::int,
  (SELECT count(*) FROM here)::int,
  (SELECT coalesce(json_object_agg(s, n), '{}')::text
     FROM (SELECT coalesce(state, 'unknown') AS s, count(*) AS n FROM here WHERE NOT hidden GROUP BY 1) x),
  (SELECT count(*) FROM here WHERE hidden)::int,
  (SELECT count(*) FROM here WHERE state LIKE 'idle in transaction%')::int,
  coalesce((SELECT extract(epoch FROM max(now() - state_change)) FROM here WHERE state LIKE 'idle in transaction%'), 0)::float8,
  (SELECT count(*) FROM here WHERE backend_xid IS NOT NULL)::int,
  coalesce((SELECT extract(epoch FROM max(now() - xact_start)) FROM here WHERE backend_xid IS NOT NULL), 0)::float8,
  coalesce((SELECT extract(epoch FROM max(now() - xact_start)) FROM here), 0)::float8,
  (SELECT count(*) FROM here WHERE wait_event_type = 'Lock')::int,
  pg_is_in_recovery(),
  CASE WHEN pg_is_in_recovery() THEN EXISTS (SELECT 1 FROM pg_stat_wal_receiver) END,
  CASE WHEN pg_is_in_recovery() THEN
    CASE WHEN EXISTS (SELECT 1 FROM pg_stat_wal_receiver)
              AND pg_last_wal_receive_lsn() IS NOT DISTINCT FROM pg_last_wal_replay_lsn() THEN 0
         ELSE extract(epoch FROM now() - pg_last_xact_replay_timestamp()) END
  END::float8,
  pg_database_size(current_database()),
  (SELECT coalesce(json_agg(t ORDER BY t.age_seconds DESC), '[]')::text FROM (
     SELECT pid, usename AS "user", application_name, state, backend_xid IS NOT NULL AS writing,
            round(extract(epoch FROM now() - xact_start)::numeric, 3)::float8 AS age_seconds,
            round(extract(epoch FROM now() - state_change)::numeric, 3)::float8 AS state_seconds,
            coalesce(wait_event_type = 'Lock', false) AS waiting_on_lock
     FROM here WHERE xact_start IS NOT NULL ORDER BY xact_start LIMIT 10) t)`

// Check connects, pings and reads the server's activity.
func (p *Postgres) Check(ctx context.Context) api.CheckResult {
	res := api.CheckResult{Status: api.CheckFail}
	cfg, err := pgx.ParseConfig(p.dsn.Reveal())
	if err != nil {
		res.Summary = fmt.Sprintf("%s is not a Postgres URL the probe can use: %s", p.key, scrub(err.Error(), p.dsn))
		return res
	}
	// Only application_name: PgBouncer refuses other startup parameters
	// (statement_timeout, ...). The deadline is ctx's: pgx cancels the
	// query on the server and drops the connection when it passes.
	cfg.RuntimeParams["application_name"] = ProbeApplicationName
	// A fresh connection each time: no statement cache, one round trip a
	// query, and nothing PgBouncer's transaction mode would trip on.
	cfg.DefaultQueryExecMode = pgx.QueryExecModeSimpleProtocol
	cfg.StatementCacheCapacity, cfg.DescriptionCacheCapacity = 0, 0
	where := fmt.Sprintf("Postgres at %s (database %s, user %s)", hostPort(cfg.Host, cfg.Port), cfg.Database, cfg.User)
	d := &api.PostgresDetails{Host: hostPort(cfg.Host, cfg.Port), Database: cfg.Database, User: cfg.User}
	res.Postgres = d

	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		res.Summary = p.describe(ctx, where, cfg, err)
		return res
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		conn.Close(cctx)
	}()

	t0 := time.Now()
	p.queries.Add(1)
	if err := conn.Ping(ctx); err != nil {
		res.Summary = p.describe(ctx, where, cfg, err)
		return res
	}
	latency := time.Since(t0)

	var (
		maxConns, conns, dbConns, hidden, idleTx, writeTx, lockWaits int
		idleTxLongest, writeOldest, longest                          float64
		byStateJSON, txJSON                                          string
		inRecovery                                                   bool
		receiving                                                    *bool
		replayLag                                                    *float64
		size                                                         int64
	)
	p.queries.Add(1)
	err = conn.QueryRow(ctx, activityQuery).Scan(&maxConns, &conns, &dbConns, &byStateJSON, &hidden,
		&idleTx, &idleTxLongest, &writeTx, &writeOldest, &longest, &lockWaits,
		&inRecovery, &receiving, &replayLag, &size, &txJSON)
	if err != nil {
		res.Summary = p.describe(ctx, where, cfg, err)
		return res
	}
	// Postgres wrote both: a failure to read them is this code's bug, and
	// then the counts stay unknown rather than read as none.
	byState := map[string]int{}
	if err := json.Unmarshal([]byte(byStateJSON), &byState); err != nil {
		res.Summary = fmt.Sprintf("%s: cannot read the sessions by state: %v", where, err)
		return res
	}
	txs := []api.PostgresTransaction{}
	if err := json.Unmarshal([]byte(txJSON), &txs); err != nil {
		res.Summary = fmt.Sprintf("%s: cannot read the open transactions: %v", where, err)
		return res
	}

	d.LatencyMS = new(ms(latency))
	d.Connections = new(conns)
	d.MaxConnections = new(maxConns)
	d.DatabaseConnections = new(dbConns)
	d.ByState = byState
	d.IdleInTransaction = new(idleTx)
	d.IdleInTransactionLongestSeconds = new(idleTxLongest)
	d.WriteTransactions = new(writeTx)
	d.OldestWriteTransactionSeconds = new(writeOldest)
	d.LongestTransactionSeconds = new(longest)
	d.WaitingOnLocks = new(lockWaits)
	d.InRecovery = new(inRecovery)
	d.WALReceiver = receiving                                          // null on a primary
	d.ReplayLagSeconds = api.ReplayLag{Read: true, Seconds: replayLag} // null on a primary
	d.SizeBytes = new(size)
	d.HiddenSessions = new(hidden)
	d.Transactions = txs

	res.Status = api.CheckOK
	var warns []string
	if maxConns > 0 && float64(conns) >= p.limits.ConnectionsRatio*float64(maxConns) {
		warns = append(warns, fmt.Sprintf("%d of %d connections in use (warns at %.0f%%)", conns, maxConns, p.limits.ConnectionsRatio*100))
	}
	if idleTx > 0 && idleTxLongest >= p.limits.IdleInTransaction.Seconds() {
		warns = append(warns, fmt.Sprintf("a session has been idle in a transaction for %s%s", secs(idleTxLongest), who(txs, func(t api.PostgresTransaction) bool { return strings.HasPrefix(t.State, "idle in transaction") })))
	}
	if longest >= p.limits.TransactionAge.Seconds() {
		warns = append(warns, fmt.Sprintf("a transaction has been open for %s%s", secs(longest), who(txs, func(api.PostgresTransaction) bool { return true })))
	}
	if receiving != nil && !*receiving {
		warns = append(warns, "replica without a WAL receiver: it is not streaming from its primary (disconnected, or fed from the archive only), so its data may be old")
	}
	if hidden > 0 {
		warns = append(warns, fmt.Sprintf("%d session(s) of other roles are hidden from user %s, so their transactions are not counted: GRANT pg_read_all_stats TO %s", hidden, cfg.User, cfg.User))
	}
	if len(warns) > 0 {
		res.Status = api.CheckWarn
		res.Summary = strings.Join(warns, "; ")
		return res
	}
	parts := []string{fmt.Sprintf("%d/%d connections", conns, maxConns)}
	switch {
	case writeTx > 0:
		parts = append(parts, fmt.Sprintf("%d write transaction(s), oldest %s", writeTx, secs(writeOldest)))
	default:
		parts = append(parts, "no write transaction")
	}
	if lockWaits > 0 {
		parts = append(parts, fmt.Sprintf("%d waiting on locks", lockWaits))
	}
	if inRecovery {
		lag := "unknown"
		if replayLag != nil {
			lag = secs(*replayLag)
		}
		parts = append(parts, "replica, replay lag "+lag)
	}
	parts = append(parts, fmt.Sprintf("ping %.1f ms", ms(latency)))
	res.Summary = strings.Join(parts, ", ")
	return res
}

// who names the oldest matching transaction's session, for a summary.
func who(txs []api.PostgresTransaction, match func(api.PostgresTransaction) bool) string {
	for _, t := range txs { // oldest first
		if match(t) {
			app := ""
			if t.ApplicationName != "" {
				app = ", " + t.ApplicationName
			}
			return fmt.Sprintf(" (pid %d, user %s%s)", t.PID, t.User, app)
		}
	}
	return ""
}

// describe turns a connection or query error into what an operator does next.
func (p *Postgres) describe(ctx context.Context, where string, cfg *pgx.ConnConfig, err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		msg := oneLine(pe.Message, 200)
		at := fmt.Sprintf("at Postgres %s, database %s", hostPort(cfg.Host, cfg.Port), cfg.Database)
		switch pe.Code {
		case "28P01": // invalid_password
			return fmt.Sprintf("%s %s: check the password in %s", msg, at, p.key)
		case "28000": // invalid_authorization_specification: pg_hba.conf, a role that may not log in
			return fmt.Sprintf("%s %s: the server refuses this user from the gate's host; see its pg_hba.conf", msg, at)
		case "3D000": // invalid_catalog_name
			return fmt.Sprintf("%s %s: check the database name in %s", msg, at, p.key)
		case "53300": // too_many_connections
			return fmt.Sprintf("%s %s: the server is out of connections", msg, at)
		case "57014": // query_canceled: pgx cancelled it at the deadline
			return fmt.Sprintf("no answer from %s within %s: the activity query was cancelled", where, timeoutOf(ctx))
		}
		return scrub(fmt.Sprintf("%s %s (SQLSTATE %s)", msg, at, pe.Code), p.dsn)
	}
	if s := netProblem(ctx, where, timeoutOf(ctx), err); s != "" {
		return scrub(s, p.dsn)
	}
	return scrub(fmt.Sprintf("%s: %s", where, oneLine(err.Error(), 300)), p.dsn)
}

// timeoutOf is the probe's timeout, as far as ctx tells.
func timeoutOf(ctx context.Context) time.Duration {
	if t, ok := ctx.Value(timeoutKey{}).(time.Duration); ok {
		return t
	}
	return DefaultTimeout
}

type timeoutKey struct{}

func hostPort(host string, port uint16) string {
	if strings.HasPrefix(host, "/") {
		return host // a Unix socket directory
	}
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	return host + ":" + strconv.Itoa(int(port))
}

// secs writes a number of seconds as a short duration: 42s, 5m3s, 1h2m.
func secs(s float64) string {
	d := time.Duration(s * float64(time.Second))
	switch {
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	case d < time.Hour:
		return d.Round(time.Second).String()
	}
	return d.Round(time.Minute).String()
}
