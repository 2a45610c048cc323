package checks

import (
	"context"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/ckanops/ckanops/api"

	"github.com/ckanops/ckanops/config"
)

// Every [checks] key left out is a probe reported as not configured.
func TestProbesFromConfig(t *testing.T) {
	up, _ := url.Parse("http://127.0.0.1:1")
	names := func(ps []Probe) string {
		var n []string
		for _, p := range ps {
			n = append(n, p.Name())
		}
		return strings.Join(n, " ")
	}
	ps, err := Probes(config.ChecksConfig{}, up)
	if err != nil {
		t.Fatal(err)
	}
	if got := names(ps); got != "ckan ckan_db datastore_db redis solr storage" {
		t.Errorf("probes %s", got)
	}
	rep := NewRunner(RunnerOptions{Timeout: 200 * time.Millisecond}, ps[1:]...).Run(context.Background())
	for _, c := range rep.Checks {
		if !c.IsNotConfigured() || c.Status != api.CheckUnknown {
			t.Errorf("%s: %+v", c.Name, c)
		}
	}
	if want := "not configured: set storage_path in gate.toml's [checks] to probe it"; rep.Checks[4].Summary != want {
		t.Errorf("storage: %q", rep.Checks[4].Summary)
	}

	ps, err = Probes(config.ChecksConfig{
		CKANDB: "postgres://a@h/ckan", DatastoreDB: "postgres://a@h/ds", Redis: "redis://h:6379/0",
		Solr: "http://h:8983/solr/ckan", StoragePath: "/srv", SiteID: "x", RQQueues: []string{"a", "b"},
	}, up)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range ps {
		if _, nc := p.(funcProbe); nc {
			t.Errorf("%s is not configured", p.Name())
		}
	}
	if r := ps[3].(*Redis); r.siteID != "x" || len(r.queues) != 2 {
		t.Errorf("redis probe %+v", r)
	}
	o := RunnerOptionsFor("prod", config.ChecksConfig{})
	if o.Timeout != 3*time.Second || o.Refresh != 15*time.Second || o.Site != "prod" {
		t.Errorf("runner options %+v", o)
	}
}

func TestScrub(t *testing.T) {
	for _, c := range []struct{ url, msg string }{
		{"postgres://u:p%40ss-word@h/db", "auth failed for p@ss-word and p%40ss-word"},
		{"redis://:rqsecret@h:6379/0", "redis://:rqsecret@h:6379/0 said rqsecret"},
		{"redis://lonepw@h:6379/0", "AUTH lonepw failed"},
		{"http://h/solr?token=tok123", "GET http://h/solr?token=tok123: tok123"},
	} {
		got := scrub(c.msg, config.SecretURL(c.url))
		for _, secret := range []string{"p@ss-word", "p%40ss-word", "rqsecret", "lonepw", "tok123"} {
			if strings.Contains(got, secret) {
				t.Errorf("scrub(%q) = %q: shows %s", c.msg, got, secret)
			}
		}
		if !strings.Contains(got, "xxxxx") {
			t.Errorf("scrub(%q) = %q", c.msg, got)
		}
	}
}
