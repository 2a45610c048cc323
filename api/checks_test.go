package api

import (
	"bytes"
	"encoding/json"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// Details are written as the probes' maps were: keys in sorted order. A
// field added out of order would still work, but change the bytes.
func TestDetailsFieldsInKeyOrder(t *testing.T) {
	for _, v := range []any{GateDetails{}, CKANDetails{}, PostgresDetails{}, RQDetails{}, SolrDetails{}, StorageDetails{}} {
		rt := reflect.TypeOf(v)
		var keys []string
		for f := range rt.Fields() {
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			if name == "" || name == "-" {
				t.Errorf("%s.%s has no JSON name", rt.Name(), f.Name)
			}
			keys = append(keys, name)
		}
		if !slices.IsSorted(keys) {
			t.Errorf("%s's fields are not in the order of their keys: %v", rt.Name(), keys)
		}
	}
}

// What the gate and its probes write decodes into the typed details, and
// encodes again to the same bytes.
func TestCheckResultRoundTrip(t *testing.T) {
	for _, c := range []struct {
		name, json string
		check      func(t *testing.T, r CheckResult)
	}{
		{"gate, one gate", `{"name":"gate","status":"ok","summary":"read-only (quiesced), 0 write(s) in flight","details":{"gate_id":"web1","in_flight":0,"mode":"read-only","phase":"quiesced","store":"file","store_ok":true,"version":1},"observed_at":"2026-11-29T16:11:46.475263423Z","duration_ms":0}`,
			func(t *testing.T, r CheckResult) {
				if g := r.Gate; g == nil || g.Mode != ModeReadOnly || g.GatesApplied != nil || !g.StoreOK {
					t.Errorf("%+v", g)
				}
			}},
		{"gate, lagging gates", `{"name":"gate","status":"ok","summary":"x","details":{"gate_id":"web1","gates_applied":1,"gates_lagging":["web2"],"gates_live":2,"in_flight":3,"mode":"down","phase":"draining","store":"redis","store_ok":false,"version":9},"observed_at":"2026-11-29T16:11:46Z","duration_ms":2}`,
			func(t *testing.T, r CheckResult) {
				if g := r.Gate; g == nil || *g.GatesApplied != 1 || *g.GatesLive != 2 || g.GatesLagging[0] != "web2" || g.InFlight != 3 {
					t.Errorf("%+v", g)
				}
			}},
		{"redis", `{"name":"redis","status":"warn","summary":"suspended","details":{"latency_ms":0.383,"maxmemory_bytes":0,"queued":0,"queues":[{"queue":"ckan:default:default","queued":0,"running":0,"stale":0,"workers":0}],"running":0,"site_id":"default","stale_started":0,"suspended":true,"suspended_for_seconds":7199.998,"used_memory_bytes":1224624,"workers":0},"observed_at":"2026-11-29T16:11:46.477164412Z","duration_ms":1}`,
			func(t *testing.T, r CheckResult) {
				if d := r.RQ; d == nil || *d.Running != 0 || !*d.Suspended || len(d.Queues) != 1 || *d.SuspendedForSeconds != 7199.998 {
					t.Errorf("%+v", d)
				}
			}},
		{"redis down", `{"name":"redis","status":"fail","summary":"refused","details":{"site_id":"default"},"observed_at":"2026-11-29T16:11:46Z","duration_ms":1}`,
			func(t *testing.T, r CheckResult) {
				if d := r.RQ; d == nil || d.Running != nil || d.Suspended != nil || d.Queued != nil {
					t.Errorf("%+v", d)
				}
			}},
		{"postgres, primary", `{"name":"ckan_db","status":"ok","summary":"x","details":{"by_state":{},"connections":3,"database":"ckan","database_connections":0,"hidden_sessions":0,"host":"db:5432","idle_in_transaction":0,"idle_in_transaction_longest_seconds":0,"in_recovery":false,"latency_ms":0.2,"longest_transaction_seconds":0,"max_connections":100,"oldest_write_transaction_seconds":0,"replay_lag_seconds":null,"size_bytes":7500000,"transactions":[],"user":"ckan","waiting_on_locks":0,"write_transactions":0},"observed_at":"2026-11-29T16:11:46Z","duration_ms":3}`,
			func(t *testing.T, r CheckResult) {
				d := r.Postgres
				if d == nil || d.WriteTransactions == nil || *d.WriteTransactions != 0 || d.ByState == nil || d.Transactions == nil ||
					d.ReplayLagSeconds != (ReplayLag{Read: true}) {
					t.Errorf("%+v", d)
				}
			}},
		{"postgres, replica", `{"name":"datastore_db","status":"ok","summary":"x","details":{"by_state":{"active":1},"connections":3,"database":"ds","database_connections":1,"hidden_sessions":0,"host":"db:5432","idle_in_transaction":0,"idle_in_transaction_longest_seconds":0,"in_recovery":true,"latency_ms":0.2,"longest_transaction_seconds":1.5,"max_connections":100,"oldest_write_transaction_seconds":1.5,"replay_lag_seconds":2.25,"size_bytes":7500000,"transactions":[{"pid":42,"user":"ckan","application_name":"","state":"active","writing":true,"age_seconds":1.5,"state_seconds":0.1,"waiting_on_lock":false}],"user":"ckan","waiting_on_locks":0,"write_transactions":1},"observed_at":"2026-11-29T16:11:46Z","duration_ms":3}`,
			func(t *testing.T, r CheckResult) {
				if d := r.Postgres; d == nil || *d.ReplayLagSeconds.Seconds != 2.25 || !d.Transactions[0].Writing || *d.WriteTransactions != 1 {
					t.Errorf("%+v", d)
				}
			}},
		{"postgres unreachable", `{"name":"ckan_db","status":"fail","summary":"refused","details":{"database":"ckan","host":"db:5432","user":"ckan"},"observed_at":"2026-11-29T16:11:46Z","duration_ms":3}`,
			func(t *testing.T, r CheckResult) {
				if d := r.Postgres; d == nil || d.WriteTransactions != nil || d.ReplayLagSeconds.Read || d.Transactions != nil {
					t.Errorf("%+v", d)
				}
			}},
		{"ckan", `{"name":"ckan","status":"ok","summary":"CKAN 2.11.5","details":{"latency_ms":3.5,"plugins":["activity"],"site_title":"","site_url":"http://x","version":"2.11.5"},"observed_at":"2026-11-29T16:11:46Z","duration_ms":3}`,
			func(t *testing.T, r CheckResult) {
				if d := r.CKAN; d == nil || *d.Version != "2.11.5" || *d.SiteTitle != "" {
					t.Errorf("%+v", d)
				}
			}},
		{"ckan, part of it", `{"name":"ckan","status":"ok","summary":"CKAN 2.11.5, 5 plugins","details":{"plugins":["activity","datastore"],"version":"2.11.5"},"observed_at":"2026-11-29T12:30:00Z","duration_ms":1500}`, nil},
		{"solr", `{"name":"solr","status":"ok","summary":"ping OK","details":{"http_status":200,"latency_ms":1.2,"qtime_ms":3,"solr_status":"OK","url":"http://solr:8983/solr/ckan/admin/ping?wt=json"},"observed_at":"2026-11-29T16:11:46Z","duration_ms":1}`,
			func(t *testing.T, r CheckResult) {
				if d := r.Solr; d == nil || *d.HTTPStatus != 200 || *d.SolrStatus != "OK" {
					t.Errorf("%+v", d)
				}
			}},
		{"storage", `{"name":"storage","status":"ok","summary":"x","details":{"entries_scanned":50,"exists":true,"free_bytes":40000000000,"newest_modified":"2026-11-29T16:10:16.5Z","newest_path":"resources/a/b","path":"/srv/ckan","readable":true,"total_bytes":100000000000,"unreadable":0,"walk_complete":false,"walk_stopped":"stopped after 10 entries"},"observed_at":"2026-11-29T16:11:46Z","duration_ms":1}`,
			func(t *testing.T, r CheckResult) {
				if d := r.Storage; d == nil || *d.FreeBytes != 40e9 || *d.WalkComplete || d.NewestModified.IsZero() {
					t.Errorf("%+v", d)
				}
			}},
		{"storage missing", `{"name":"storage","status":"fail","summary":"x","details":{"exists":false,"path":"/srv/ckan"},"observed_at":"2026-11-29T16:11:46Z","duration_ms":1}`, nil},
		{"not configured", `{"name":"redis","status":"unknown","summary":"not configured: set redis in gate.toml's [checks] to probe it","details":{"configured":false},"observed_at":"2026-11-29T16:11:46Z","duration_ms":0}`,
			func(t *testing.T, r CheckResult) {
				if !r.IsNotConfigured() || r.RQ != nil {
					t.Errorf("%+v", r)
				}
			}},
		{"no details", `{"name":"solr","status":"fail","summary":"no answer within 2s","observed_at":"2026-11-29T12:30:00Z","duration_ms":2000}`, nil},
		{"a check this version does not know", `{"name":"cache","status":"ok","summary":"x","details":{"hits":5,"nested":{"a":[1,2]}},"observed_at":"2026-11-29T12:30:00Z","duration_ms":1}`,
			func(t *testing.T, r CheckResult) {
				if string(r.Other) != `{"hits":5,"nested":{"a":[1,2]}}` || r.DetailsErr != nil {
					t.Errorf("other %s, %v", r.Other, r.DetailsErr)
				}
			}},
		{"a crashed probe's stack", `{"name":"ckan_db","status":"fail","summary":"the probe crashed: x","details":{"stack":"goroutine 1"},"observed_at":"2026-11-29T12:30:00Z","duration_ms":1}`, nil},
		{"a newer gate's key", `{"name":"redis","status":"ok","summary":"x","details":{"running":2,"site_id":"default","suspended":false,"zombies":1},"observed_at":"2026-11-29T12:30:00Z","duration_ms":1}`,
			func(t *testing.T, r CheckResult) {
				if d := r.RQ; d == nil || *d.Running != 2 || r.DetailsErr != nil || r.Other == nil {
					t.Errorf("%+v, other %s, %v", d, r.Other, r.DetailsErr)
				}
			}},
	} {
		t.Run(c.name, func(t *testing.T) {
			var r CheckResult
			if err := json.Unmarshal([]byte(c.json), &r); err != nil {
				t.Fatal(err)
			}
			if c.check != nil {
				c.check(t, r)
			}
			b, err := json.Marshal(r)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(b, []byte(c.json)) {
				t.Errorf("encoded again:\ngot  %s\nwant %s", b, c.json)
			}
		})
	}
}

// Typed details, set in process, encode to the keys the probes' maps had.
func TestTypedDetailsEncode(t *testing.T) {
	at := time.Date(2026, 11, 29, 12, 30, 0, 0, time.UTC)
	for _, c := range []struct {
		r    CheckResult
		want string
	}{
		{CheckResult{Name: ProbeCKANDB, Status: CheckFail, Summary: "refused", ObservedAt: at, Duration: 1500*time.Millisecond + 900*time.Microsecond,
			Postgres: &PostgresDetails{Host: "db:5432", Database: "ckan", User: "ckan"}},
			`{"name":"ckan_db","status":"fail","summary":"refused","details":{"database":"ckan","host":"db:5432","user":"ckan"},"observed_at":"2026-11-29T12:30:00Z","duration_ms":1500}`},
		{CheckResult{Name: ProbeRedis, Status: CheckOK, ObservedAt: at, RQ: &RQDetails{SiteID: "d", Running: new(int64(0)), Suspended: new(false)}},
			`{"name":"redis","status":"ok","summary":"","details":{"running":0,"site_id":"d","suspended":false},"observed_at":"2026-11-29T12:30:00Z","duration_ms":0}`},
		{CheckResult{Name: ProbeStorage, ObservedAt: at, Storage: &StorageDetails{Path: "/srv", Exists: new(true), Readable: new(false)}},
			`{"name":"storage","status":"","summary":"","details":{"exists":true,"path":"/srv","readable":false},"observed_at":"2026-11-29T12:30:00Z","duration_ms":0}`},
		{NotConfiguredResult("solr"),
			`{"name":"","status":"unknown","summary":"not configured: set solr in gate.toml's [checks] to probe it","details":{"configured":false},"observed_at":"0001-01-01T00:00:00Z","duration_ms":0}`},
	} {
		b, err := json.Marshal(c.r)
		if err != nil {
			t.Fatal(err)
		}
		if string(b) != c.want {
			t.Errorf("got  %s\nwant %s", b, c.want)
		}
	}
}

// Details that are not what their check's kind has are an error on the
// way out, not a silently wrong report.
func TestCheckResultMarshalRefusesMixedDetails(t *testing.T) {
	for _, c := range []struct {
		r    CheckResult
		want string
	}{
		{CheckResult{Name: ProbeRedis, RQ: &RQDetails{}, Postgres: &PostgresDetails{}}, "details of 2 kinds"},
		{CheckResult{Name: ProbeRedis, Postgres: &PostgresDetails{}}, `check "redis" has postgres details`},
		{CheckResult{Name: ProbeSolr, Solr: &SolrDetails{}, NotConfigured: true}, "details of 2 kinds"},
	} {
		if _, err := json.Marshal(c.r); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want %q", c.r, err, c.want)
		}
	}
	// A name this version does not know takes any kind.
	if _, err := json.Marshal(CheckResult{Name: "hang", Solr: &SolrDetails{}}); err != nil {
		t.Error(err)
	}
}

// A count missing from the JSON, or of another type, is nil: unknown,
// never zero. The rest of the details still decode.
func TestDetailsUnknownIsNil(t *testing.T) {
	var renamed CheckResult
	if err := json.Unmarshal([]byte(`{"name":"ckan_db","status":"ok","summary":"x","details":{"host":"db","write_transaction_count":0,"connections":3}}`), &renamed); err != nil {
		t.Fatal(err)
	}
	if d := renamed.Postgres; d == nil || d.WriteTransactions != nil || *d.Connections != 3 || d.Host != "db" || renamed.DetailsErr != nil {
		t.Errorf("renamed: %+v, %v", d, renamed.DetailsErr)
	}

	in := `{"name":"redis","status":"ok","summary":"x","details":{"running":"0","suspended":1,"queued":4,"queues":[{"queue":5}]},"observed_at":"2026-11-29T12:30:00Z","duration_ms":0}`
	var mistyped CheckResult
	if err := json.Unmarshal([]byte(in), &mistyped); err != nil {
		t.Fatal(err)
	}
	if d := mistyped.RQ; d == nil || d.Running != nil || d.Suspended != nil || d.Queues != nil || *d.Queued != 4 {
		t.Errorf("mistyped: %+v", d)
	}
	if err := mistyped.DetailsErr; err == nil || !strings.Contains(err.Error(), `"running"`) || !strings.Contains(err.Error(), `"suspended"`) || !strings.Contains(err.Error(), `"queues"`) {
		t.Errorf("details error: %v", err)
	}
	if b, _ := json.Marshal(mistyped); string(b) != in {
		t.Errorf("encoded again:\ngot  %s\nwant %s", b, in)
	}

	for _, details := range []string{`"a string"`, `[1,2]`, `7`} {
		var r CheckResult
		if err := json.Unmarshal([]byte(`{"name":"ckan_db","status":"ok","details":`+details+`}`), &r); err != nil {
			t.Fatalf("%s: %v", details, err)
		}
		if r.DetailsErr == nil || r.Postgres == nil || r.Postgres.WriteTransactions != nil {
			t.Errorf("%s: %+v", details, r)
		}
	}
}
