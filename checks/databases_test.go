package checks

import (
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/ckanops/ckanops/api"
	"github.com/ckanops/ckanops/config"
	"github.com/ckanops/ckanops/internal/testpg"
)

// Each [[database]] is probed like ckan_db, as the check db:<name>,
// reported after datastore_db; its details are Postgres's, also after a
// round trip through JSON; a fault names the table to fix.
func TestDatabaseProbes(t *testing.T) {
	cl := testpg.Start(t)
	dsn := cl.CreateDB(t, "datapusher_jobs")
	up, _ := url.Parse("http://127.0.0.1:1")
	dbs := []config.Database{{Name: "datapusher", DSN: config.SecretURL(dsn)}, {Name: "harvest", DSN: "postgres://a@h/harvest"}}
	ps, err := Probes(config.ChecksConfig{Databases: dbs}, up)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, p := range ps {
		names = append(names, p.Name())
	}
	if got := strings.Join(names, " "); got != "ckan ckan_db datastore_db db:datapusher db:harvest redis solr storage" {
		t.Fatalf("probes %s", got)
	}
	probe := ps[3]

	setup := pgConnect(t, dsn)
	pgExec(t, setup, "CREATE TABLE jobs (id int)")
	writer := pgConnect(t, dsn)
	pgExec(t, writer, "BEGIN")
	pgExec(t, writer, "INSERT INTO jobs VALUES (1)")

	res := runProbe(t, probe, 5*time.Second)
	if res.Status != api.CheckOK || res.Postgres == nil {
		t.Fatalf("%s: %s (%+v)", res.Status, res.Summary, res)
	}
	if n := known(t, "write_transactions", res.Postgres.WriteTransactions); n != 1 || res.Postgres.Database != "datapusher_jobs" {
		t.Errorf("write transactions %d, database %q", n, res.Postgres.Database)
	}
	if !strings.Contains(res.Summary, "1 write transaction(s)") {
		t.Errorf("summary %q", res.Summary)
	}
	b, err := json.Marshal(res)
	if err != nil {
		t.Fatal(err)
	}
	var back api.CheckResult
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if back.Name != "db:datapusher" || back.Postgres == nil || back.Postgres.WriteTransactions == nil || *back.Postgres.WriteTransactions != 1 {
		t.Errorf("after JSON: %+v", back)
	}
	pgExec(t, writer, "COMMIT")
	res = runProbe(t, probe, 5*time.Second)
	if n := known(t, "write_transactions", res.Postgres.WriteTransactions); n != 0 {
		t.Errorf("after the commit: %d write transactions (%s)", n, res.Summary)
	}

	// A fault names the [[database]] table, never the password.
	pgExec(t, setup, "CREATE ROLE dp LOGIN PASSWORD 'Right-pw-4711'")
	requirePasswords(t, setup)
	bad := config.Database{Name: "datapusher", DSN: config.SecretURL(fmt.Sprintf("postgres://dp:Wr0ng-pw-0815@127.0.0.1:%d/datapusher_jobs?sslmode=disable", cl.Port()))}
	res = runProbe(t, NewDatabase(bad, PostgresLimits{}), 5*time.Second)
	if res.Status != api.CheckFail || !strings.Contains(res.Summary, "check the password in [[database]] datapusher's dsn") || strings.Contains(res.Summary, "Wr0ng") {
		t.Errorf("%s: %s", res.Status, res.Summary)
	}
}
