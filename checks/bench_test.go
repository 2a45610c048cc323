package checks

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"github.com/ckanops/ckanops/api"

	"github.com/jackc/pgx/v5"

	"github.com/ckanops/ckanops/config"
	"github.com/ckanops/ckanops/internal/ckansim"
	"github.com/ckanops/ckanops/internal/testpg"
	"github.com/ckanops/ckanops/internal/testredis"
)

// BenchmarkRound measures one full round of checks (no cache) against a
// local Postgres (CKAN and DataStore databases, with some sessions open)
// and Redis (RQ's keys laid out), and with CKAN (ckansim), Solr (a stub)
// and a storage tree. It reports:
//
//	round-ms          the wall time of a round
//	slowest-probe-ms  the slowest probe of the round
//	overhead-ms       round - slowest probe: what running them together costs
//	round/slowest     the same as a ratio
//	pg-queries/round, redis-cmds/round
//
// A round should cost the slowest probe plus a few milliseconds at most
// (the target is overhead-ms < 10).
func BenchmarkRound(b *testing.B) {
	pg := testpg.Start(b)
	ckanDB := pg.CreateDB(b, "ckan_default")
	dsDB := pg.CreateDB(b, "datastore_default")
	ctx := context.Background()
	for _, dsn := range []string{ckanDB, ckanDB, dsDB} { // idle sessions, as CKAN's pools keep
		c, err := pgx.Connect(ctx, dsn)
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close(ctx)
	}
	rd := testredis.Start(b)
	rdb := redisClient(b, rd.URL())
	for i, q := range []string{"default", "harvest"} {
		name := RQQueueName("default", q)
		for j := 0; j < 5*(i+1); j++ {
			rdb.RPush(ctx, RQQueueKey(name), "job")
		}
		rdb.SAdd(ctx, RQQueueWorkersKey(name), "rq:worker:w")
	}

	sim, err := ckansim.New(ckansim.Options{})
	if err != nil {
		b.Fatal(err)
	}
	up := httptest.NewServer(sim)
	defer up.Close()
	upURL, _ := url.Parse(up.URL)
	solr := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(`{"responseHeader":{"status":0,"QTime":1},"status":"OK"}`))
	}))
	defer solr.Close()
	storage, _ := storageTree(b, 500)

	limits := PostgresLimits{}
	pgCKAN := NewPostgres("ckan_db", config.SecretURL(ckanDB), limits)
	pgDS := NewPostgres("datastore_db", config.SecretURL(dsDB), limits)
	rq := NewRedis(config.SecretURL(rd.URL()), "default", []string{"default", "harvest"})
	ckan, err := NewCKAN(upURL, 3*time.Second)
	if err != nil {
		b.Fatal(err)
	}

	for _, bc := range []struct {
		name   string
		probes []Probe
	}{
		{"postgres+redis", []Probe{pgCKAN, pgDS, rq}},
		{"all", []Probe{ckan, pgCKAN, pgDS, rq, NewSolr(config.SecretURL(solr.URL + "/solr/ckan")), NewStorage(storage, 0, 0)}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			r := NewRunner(RunnerOptions{Site: "bench", Timeout: 3 * time.Second}, bc.probes...)
			q0, c0 := pgCKAN.Queries()+pgDS.Queries(), rq.Commands()
			var wall, slowest time.Duration
			b.ResetTimer()
			for b.Loop() {
				t0 := time.Now()
				rep := r.Fresh(ctx)
				w := time.Since(t0)
				var s time.Duration
				for _, c := range rep.Checks {
					if c.Status != api.CheckOK {
						b.Fatalf("%s: %s: %s", c.Name, c.Status, c.Summary)
					}
					s = max(s, c.Duration)
				}
				wall += w
				slowest += s
			}
			n := float64(b.N)
			b.ReportMetric(float64(wall.Microseconds())/1000/n, "round-ms")
			b.ReportMetric(float64(slowest.Microseconds())/1000/n, "slowest-probe-ms")
			b.ReportMetric(float64((wall-slowest).Microseconds())/1000/n, "overhead-ms")
			b.ReportMetric(float64(wall)/float64(slowest), "round/slowest")
			b.ReportMetric(float64(pgCKAN.Queries()+pgDS.Queries()-q0)/n, "pg-queries/round")
			b.ReportMetric(float64(rq.Commands()-c0)/n, "redis-cmds/round")
		})
	}
}
