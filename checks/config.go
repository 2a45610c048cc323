package checks

import (
	"net/url"

	"github.com/ckanops/ckanops/api"

	"github.com/ckanops/ckanops/config"
)

// Probes returns the probes gate.toml's [checks] table asks for, in the
// order they are reported: ckan (status_show on upstream, CKAN's own
// server), ckan_db, datastore_db, db:<name> for each [[database]],
// redis, solr, storage. A key left out
// gives a NotConfigured probe. Zero values take the defaults.
func Probes(c config.ChecksConfig, upstream *url.URL) ([]Probe, error) {
	timeout := c.Timeout.Duration
	if timeout <= 0 {
		timeout = config.DefaultCheckTimeout
	}
	ckan, err := NewCKAN(upstream, timeout)
	if err != nil {
		return nil, err
	}
	limits := PostgresLimits{
		ConnectionsRatio:  c.WarnConnectionsRatio,
		IdleInTransaction: c.WarnIdleInTransaction.Duration,
		TransactionAge:    c.WarnTransactionAge.Duration,
	}
	probes := []Probe{ckan}
	for _, db := range []struct {
		name string
		dsn  config.SecretURL
	}{{api.ProbeCKANDB, c.CKANDB}, {api.ProbeDatastoreDB, c.DatastoreDB}} {
		if db.dsn == "" {
			probes = append(probes, NotConfigured(db.name, db.name))
		} else {
			probes = append(probes, NewPostgres(db.name, db.dsn, limits))
		}
	}
	for _, db := range c.Databases {
		probes = append(probes, NewDatabase(db, limits))
	}
	if c.Redis == "" {
		probes = append(probes, NotConfigured(api.ProbeRedis, "redis"))
	} else {
		probes = append(probes, NewRedis(c.Redis, c.SiteID, c.RQQueues))
	}
	if c.Solr == "" {
		probes = append(probes, NotConfigured(api.ProbeSolr, "solr"))
	} else {
		probes = append(probes, NewSolr(c.Solr))
	}
	if len(c.Storages) > 0 {
		probes = append(probes, NewStorages(c.Storages, 0, 0))
	} else if c.StoragePath == "" {
		probes = append(probes, NotConfigured(api.ProbeStorage, "storage_path"))
	} else {
		probes = append(probes, NewStorage(c.StoragePath, 0, 0))
	}
	return probes, nil
}

// RunnerOptionsFor is the Runner's configuration from [checks]: each
// probe's timeout, and a round reused for checks.interval.
func RunnerOptionsFor(site string, c config.ChecksConfig) RunnerOptions {
	o := RunnerOptions{Site: site, Timeout: c.Timeout.Duration, Refresh: c.Interval.Duration}
	if o.Timeout <= 0 {
		o.Timeout = config.DefaultCheckTimeout
	}
	if o.Refresh <= 0 {
		o.Refresh = config.DefaultCheckInterval
	}
	return o
}
