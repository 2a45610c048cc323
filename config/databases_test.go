package config

import (
	"reflect"
	"strings"
	"testing"
)

// [[database]]: the site's other Postgres databases, in order, their
// URLs secret.
func TestLoadGateDatabases(t *testing.T) {
	g, warns, err := LoadGate(copyTo(t, "testdata/gate_databases.toml", t.TempDir(), 0o600))
	if err != nil {
		t.Fatal(err)
	}
	if len(warns) != 0 {
		t.Errorf("warnings: %v", warns)
	}
	want := []Database{
		{Name: "datapusher", DSN: "postgresql://datapusher:dppw@db.internal/datapusher_jobs"},
		// The same database name on another port is another database.
		{Name: "harvest-2", DSN: "postgres://harvest@db.internal:5433/ckan"},
	}
	if !reflect.DeepEqual(g.Checks.Databases, want) {
		t.Errorf("databases:\ngot  %+v\nwant %+v", g.Checks.Databases, want)
	}
	if s := g.Checks.Databases[0].DSN.String(); strings.Contains(s, "dppw") || !strings.Contains(s, "xxxxx") {
		t.Errorf("dsn shown as %s", s)
	}
	// None is the default.
	g, _, err = LoadGate("testdata/gate_minimal.toml")
	if err != nil {
		t.Fatal(err)
	}
	if g.Checks.Databases != nil {
		t.Errorf("minimal: databases %+v", g.Checks.Databases)
	}
}

func TestDatabaseErrorsHidePasswords(t *testing.T) {
	_, _, err := LoadGate("testdata/gate_databases_bad.toml")
	if err == nil {
		t.Fatal("no error")
	}
	for _, pw := range []string{"ckanpw", "dppw", "xlpw"} {
		if strings.Contains(err.Error(), pw) {
			t.Errorf("error shows password %q:\n%v", pw, err)
		}
	}
}

func init() {
	gateErrorCases = append(gateErrorCases, struct {
		file string
		want []string
	}{"gate_databases_bad.toml", []string{
		`testdata/gate_databases_bad.toml:16: database.name: duplicate database name "datapusher"; names must be unique`,
		`testdata/gate_databases_bad.toml:20: database.name: "ckan_db" is reserved (ckan_db, datastore_db, storage): give CKAN's database as [checks] ckan_db and the DataStore's as [checks] datastore_db, and name the others otherwise`,
		`testdata/gate_databases_bad.toml:24: database.name: "bad name" is not a database name: letters, digits, '_' and '-', at most 63, such as "datapusher" (it names the check db:<name> and the snapshot's <name>.dump)`,
		`testdata/gate_databases_bad.toml:29: database.dsn: scheme "postgresql+psycopg2" is not allowed; ...`,
		`testdata/gate_databases_bad.toml:33: database.dsn: names the same database as checks.ckan_db (postgresql://ckan:xxxxx@db.internal/ckan); list each database once`,
		`testdata/gate_databases_bad.toml:35: database.dsn: required key is missing`,
		`testdata/gate_databases_bad.toml:38: database.name: required key is missing`,
		`testdata/gate_databases_bad.toml:40: database.port: unknown key (known keys here: name, dsn)`,
	}})
}
