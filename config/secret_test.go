package config

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

func TestRedact(t *testing.T) {
	cases := []struct{ in, want string }{
		{"", ""},
		{"postgresql://ckan:pw1@db:5432/ckan", "postgresql://ckan:xxxxx@db:5432/ckan"},
		{"postgres://ckan@db/ckan", "postgres://ckan@db/ckan"},
		{"postgres:///ckan?host=/run/postgresql", "postgres:///ckan?host=/run/postgresql"},
		{"postgres://ckan@db/ckan?sslmode=require&password=pw2", "postgres://ckan@db/ckan?password=xxxxx&sslmode=require"},
		{"redis://:pw3@127.0.0.1:6379/1", "redis://:xxxxx@127.0.0.1:6379/1"},
		{"redis://pw4@127.0.0.1:6379/1", "redis://xxxxx@127.0.0.1:6379/1"},
		{"redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"},
		{"http://solr:pw5@solr:8983/solr/ckan", "http://solr:xxxxx@solr:8983/solr/ckan"},
		{"http://solr:8983/solr?token=pw6", "http://solr:8983/solr?token=xxxxx"},
		{"host=db user=ckan password=pw7", hiddenURL},
		{"postgres://ckan:pw8@db:bad/ckan", hiddenURL},
	}
	for _, c := range cases {
		if got := Redact(c.in); got != c.want {
			t.Errorf("Redact(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

// Every way of printing a SecretURL, alone or inside a Gate, hides the
// password.
func TestSecretURLNeverPrintsPassword(t *testing.T) {
	g, _, err := LoadGate("testdata/gate_full.toml")
	if err != nil {
		t.Fatal(err)
	}
	passwords := []string{"statepw", "ckanpw", "dspw"}
	var logged bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logged, nil))
	log.Info("loaded", "redis", g.State.RedisURL, "db", g.Checks.CKANDB, "ds", g.Checks.DatastoreDB)
	var jlogged bytes.Buffer
	slog.New(slog.NewJSONHandler(&jlogged, nil)).Info("loaded", "checks", g.Checks, "state", g.State)
	js, err := json.Marshal(g)
	if err != nil {
		t.Fatal(err)
	}
	forms := map[string]string{
		"%v":        fmt.Sprintf("%v", g),
		"%+v":       fmt.Sprintf("%+v", *g),
		"%#v":       fmt.Sprintf("%#v", *g),
		"%s field":  fmt.Sprintf("%s %s", g.Checks.CKANDB, g.State.RedisURL),
		"%q field":  fmt.Sprintf("%q", g.Checks.DatastoreDB),
		"json":      string(js),
		"slog text": logged.String(),
		"slog json": jlogged.String(),
	}
	for name, s := range forms {
		for _, pw := range passwords {
			if strings.Contains(s, pw) {
				t.Errorf("%s shows password %q: %s", name, pw, s)
			}
		}
		if !strings.Contains(s, "xxxxx") {
			t.Errorf("%s shows no redacted URL: %s", name, s)
		}
	}
	if got := g.Checks.CKANDB.Reveal(); got != "postgresql://ckan:ckanpw@db.internal:5432/ckan" {
		t.Errorf("Reveal() = %q", got)
	}
}

func TestErrorsHidePasswords(t *testing.T) {
	_, _, err := LoadGate("testdata/gate_secrets.toml")
	if err == nil {
		t.Fatal("no error")
	}
	for _, pw := range []string{"st4tepw", "ckandbpw", "dspw", "rqpw", "solrpw", "solrqpw"} {
		if strings.Contains(err.Error(), pw) {
			t.Errorf("error shows password %q:\n%v", pw, err)
		}
	}
	_, _, err = LoadGate("testdata/gate_many.toml")
	if strings.Contains(err.Error(), "hunter2pw") {
		t.Errorf("error shows password:\n%v", err)
	}
}

func TestSecretURLSecrets(t *testing.T) {
	cases := map[SecretURL][]string{
		"postgres://ckan:p%40ss@db/ckan":                 {"p@ss", "p%40ss", "p@ss"},
		"redis://onlyuser@cache:6379/0":                  {"onlyuser"},
		"postgres://ckan@db/ckan?sslpassword=s3cret&x=1": {"s3cret"},
		"postgres://db/ckan":                             nil,
		"http://user@solr:8983/solr/ckan":                nil,
	}
	for u, want := range cases {
		got := u.Secrets()
		if len(got) != len(want) {
			t.Errorf("%s: Secrets() = %q, want %q", u.String(), got, want)
			continue
		}
		for i := range want {
			if got[i] != want[i] {
				t.Errorf("%s: Secrets() = %q, want %q", u.String(), got, want)
			}
		}
	}
}
