package snapshot

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// BenchmarkVerdict measures what each way of knowing that nothing wrote
// during a snapshot costs, on a CKAN database of about 100 MB whose
// readers keep working while the snapshot runs (bench/RESULTS.md,
// "Snapshot verdict without the statistics wait"):
//
//   - statistics: the row counters, after waiting for the sessions that
//     worked to publish them (what Take did before the proofs);
//   - xid-horizon: no transaction committed in the cluster;
//   - wal-N: a neighbour database writes N MB of WAL during the snapshot,
//     and the WAL of its transactions is read (pg_walinspect);
//   - xmin-scan: not a Take: one scan of every table of the site for
//     rows written since a transaction id, the per-table check, against
//     which the others compare.
//
// Compare ns/op between sub-benchmarks of one run:
//
//	go test -run='^$' -bench=Verdict -benchtime=3x ./runbook/snapshot/
func BenchmarkVerdict(b *testing.B) {
	ctx := context.Background()
	fx := newProofFixture(b, true)
	fx.sql(b, fx.ckan,
		`CREATE TABLE activity (id text PRIMARY KEY, user_id text, data text)`,
		`INSERT INTO activity SELECT 'act-' || i, 'u1', repeat(md5(i::text), 8) FROM generate_series(1, 250000) i`,
		`VACUUM ANALYZE`)
	other := withPassword(b, fx.cl.CreateDB(b, "neighbour"))
	fx.sql(b, other, `CREATE TABLE orders (id int, note text)`)
	var size int64
	conn, err := pgx.Connect(ctx, fx.ckan.Reveal())
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close(ctx)
	if err := conn.QueryRow(ctx, "SELECT pg_database_size(current_database())").Scan(&size); err != nil {
		b.Fatal(err)
	}
	b.Logf("ckan database: %d MB", size>>20)
	reader, err := pgx.Connect(ctx, fx.ckan.Reveal())
	if err != nil {
		b.Fatal(err)
	}
	defer reader.Close(ctx)
	read := func() {
		var n int
		if err := reader.QueryRow(ctx, `SELECT count(*) FROM package JOIN resource ON resource.package_id = package.id`).Scan(&n); err != nil {
			b.Error(err)
		}
	}
	// take reports, besides the whole Take, verdict-ms: from the dump's
	// end to the verdict, the part the proofs change.
	take := func(b *testing.B, noProof bool, during func(), want string) {
		var verdict time.Duration
		for b.Loop() {
			var dumped, judged time.Time
			s := fx.spec(b.TempDir(), "", &lines{})
			s.Output = func(l string) {
				switch {
				case strings.HasPrefix(l, "pg_dump ckan_db: done"):
					dumped = time.Now()
				case strings.HasPrefix(l, "verdict: "):
					judged = time.Now()
				}
			}
			s.StatsSettle = 0
			s.DatastoreDB = ""
			s.noProof = noProof
			s.afterBefore = during
			m, err := Take(ctx, s)
			if err != nil {
				b.Fatal(err)
			}
			if got := m.Databases[0].Proof.Method; got != want || m.Verdict != Consistent {
				b.Fatalf("proof %s, verdict %s %q; want %s, consistent", got, m.Verdict, m.Changed, want)
			}
			verdict += judged.Sub(dumped)
		}
		b.ReportMetric(float64(verdict.Milliseconds())/float64(b.N), "verdict-ms")
	}
	b.Run("statistics", func(b *testing.B) { take(b, true, read, MethodStatistics) })
	b.Run("xid-horizon", func(b *testing.B) { take(b, false, read, MethodXIDHorizon) })
	for _, mb := range []int{1, 64} {
		rows := mb << 20 / 100 // about 100 bytes of WAL a row
		b.Run(fmt.Sprintf("wal-%dMB", mb), func(b *testing.B) {
			take(b, false, func() {
				read()
				fx.sql(b, other, fmt.Sprintf(`INSERT INTO orders SELECT i, 'n' FROM generate_series(1, %d) i`, rows))
			}, MethodWAL)
		})
	}
	b.Run("xmin-scan", func(b *testing.B) {
		var verdict time.Duration
		defer func() { b.ReportMetric(float64(verdict.Milliseconds())/float64(b.N), "verdict-ms") }()
		for b.Loop() {
			start := time.Now()
			var xmax string
			if err := conn.QueryRow(ctx, "SELECT pg_snapshot_xmax(pg_current_snapshot())::text").Scan(&xmax); err != nil {
				b.Fatal(err)
			}
			tables, err := strings1(ctx, conn, `SELECT format('%I.%I', schemaname, relname) FROM pg_stat_user_tables`)
			if err != nil {
				b.Fatal(err)
			}
			for _, t := range tables {
				var n int64
				if err := conn.QueryRow(ctx, `SELECT count(*) FROM `+t+` WHERE xmin::text::int8 >= $1`, xmax).Scan(&n); err != nil {
					b.Fatal(err)
				}
			}
			verdict += time.Since(start)
		}
	})
}
