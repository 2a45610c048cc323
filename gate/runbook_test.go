package gate

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ckanops/ckanops/api"

	"github.com/jackc/pgx/v5"

	"github.com/ckanops/ckanops/ckanclient"
	"github.com/ckanops/ckanops/config"
	"github.com/ckanops/ckanops/internal/testpg"
	"github.com/ckanops/ckanops/runbook"
	"github.com/ckanops/ckanops/runbook/snapshot"
)

// runbookRig is a gate in front of ckansim with a runbook engine, two real
// Postgres databases standing in for CKAN's and the DataStore's, and a
// storage directory.
type runbookRig struct {
	*rig
	engine    *runbook.Engine
	pg        *testpg.Cluster
	client    *ckanclient.Client
	ckanDB    string
	dsDB      string
	storage   string
	snapshots string
}

func newRunbookRig(t *testing.T, mod func(*runbook.Options)) *runbookRig {
	t.Helper()
	pg := testpg.Start(t)
	ckanURL := pg.CreateDB(t, "ckan")
	dsURL := pg.CreateDB(t, "datastore")
	seedCKAN(t, ckanURL, dsURL)
	dir := t.TempDir()
	storage := filepath.Join(dir, "storage")
	must(t, os.MkdirAll(filepath.Join(storage, "resources", "0a1", "b2c"), 0o755))
	must(t, os.WriteFile(filepath.Join(storage, "resources", "0a1", "b2c", "3d4-e5f"), []byte("year,pm10\n2024,17\n"), 0o644))
	must(t, os.MkdirAll(filepath.Join(storage, "storage", "uploads", "group"), 0o755))
	must(t, os.WriteFile(filepath.Join(storage, "storage", "uploads", "group", "logo.png"), []byte("\x89PNG..."), 0o644))
	snaps := filepath.Join(dir, "snapshots")
	must(t, os.Mkdir(snaps, 0o750))

	checks := config.ChecksConfig{CKANDB: config.SecretURL(ckanURL), DatastoreDB: config.SecretURL(dsURL), StoragePath: storage}
	r := newRig(t, withChecks(checks))
	site, err := r.gate.RunbookSite(r.srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	o := runbook.Options{
		Site: site, JournalDir: filepath.Join(dir, "journal"), Holder: "gate-1",
		Snapshot:    config.SnapshotConfig{Dir: snaps, PGDump: filepath.Join(pg.BinDir(), "pg_dump"), StoragePath: storage, Keep: 5},
		Checks:      checks,
		Drain:       time.Minute,
		Poll:        20 * time.Millisecond,
		StatsSettle: 1100 * time.Millisecond,
	}
	if mod != nil {
		mod(&o)
	}
	e, err := runbook.Open(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	r.gate.AttachRunbook(e)
	c, err := ckanclient.New(r.srv.URL, ckanclient.Options{Token: opsToken, TokenStyle: ckanclient.AuthBearer, Retries: -1})
	if err != nil {
		t.Fatal(err)
	}
	return &runbookRig{rig: r, engine: e, pg: pg, client: c, ckanDB: ckanURL, dsDB: dsURL, storage: storage, snapshots: snaps}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// seedCKAN creates a few of CKAN's tables, with rows, and a DataStore table.
func seedCKAN(t *testing.T, ckanURL, dsURL string) {
	t.Helper()
	execSQL(t, ckanURL, `
CREATE TABLE package (id text PRIMARY KEY, name text NOT NULL, title text, metadata_modified timestamp);
CREATE TABLE resource (id text PRIMARY KEY, package_id text REFERENCES package(id), url text);
CREATE TABLE "user" (id text PRIMARY KEY, name text UNIQUE, sysadmin boolean, last_active timestamp);
CREATE TABLE api_token (id text PRIMARY KEY, user_id text REFERENCES "user"(id), last_access timestamp);
CREATE TABLE dashboard (user_id text PRIMARY KEY, activity_stream_last_viewed timestamp);
CREATE TABLE tracking_raw (user_key text, url text, tracking_type text, access_timestamp timestamp);
INSERT INTO package VALUES ('p1', 'air-quality-2024', 'Air quality 2024', now()), ('p2', 'bus-stops', 'Bus stops', now());
INSERT INTO resource VALUES ('0a1b2c3d4-e5f', 'p1', 'pm10.csv');
INSERT INTO "user" VALUES ('u1', 'admin', true, now());
INSERT INTO api_token VALUES ('t1', 'u1', now());
INSERT INTO dashboard VALUES ('u1', now());`)
	execSQL(t, dsURL, `
CREATE TABLE "0a1b2c3d4-e5f" (_id serial PRIMARY KEY, year int, pm10 numeric);
INSERT INTO "0a1b2c3d4-e5f" (year, pm10) VALUES (2024, 17), (2023, 19);`)
}

func execSQL(t *testing.T, url, sql string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, sql); err != nil {
		t.Fatalf("%v\n%s", err, sql)
	}
}

// waitRunbook polls the gate's runbook API until cond holds.
func (r *runbookRig) waitRunbook(what string, cond func(*api.Runbook) bool) *api.Runbook {
	r.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		rb, err := r.client.Runbook(context.Background())
		if err != nil {
			r.t.Fatal(err)
		}
		if rb != nil && cond(rb) {
			return rb
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("timed out waiting for %s: %+v", what, rb)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func runbookEnded(rb *api.Runbook) bool {
	return rb.State != api.RunbookRunning && rb.State != api.RunbookWaiting
}

// The whole runbook through the gate's API, as the CLI drives it: the
// snapshot is consistent, complete, and pg_restore reads its dumps.
func TestRunbookThroughTheGate(t *testing.T) {
	r := newRunbookRig(t, nil)
	ctx := context.Background()

	// An anonymous caller may not start one.
	anon, _ := ckanclient.New(r.srv.URL, ckanclient.Options{Retries: -1})
	if _, err := anon.StartRunbook(ctx, api.RunbookOptions{}); err == nil || !strings.Contains(err.Error(), "401") {
		t.Fatalf("anonymous start: %v", err)
	}
	if rb, err := r.client.Runbook(ctx); rb != nil || err != nil {
		t.Fatalf("before any runbook: %+v, %v", rb, err)
	}

	// Follow the event stream from the start, as the console does.
	var (
		evMu   sync.Mutex
		events []api.RunbookEvent
	)
	rb, err := r.client.StartRunbook(ctx, api.RunbookOptions{Message: "Upgrading to CKAN 2.11", For: "1h"})
	if err != nil {
		t.Fatal(err)
	}
	streamDone := make(chan error, 1)
	go func() {
		streamDone <- r.client.RunbookEvents(ctx, 0, func(ev api.RunbookEvent) error {
			evMu.Lock()
			defer evMu.Unlock()
			events = append(events, ev)
			return nil
		})
	}()

	rb = r.waitRunbook("enable to wait", func(rb *api.Runbook) bool { return rb.Waiting != nil })
	if rb.Waiting.Step != api.StepEnable {
		t.Fatalf("waiting at %s", rb.Waiting.Step)
	}
	if _, err := r.client.ConfirmStep(ctx, api.RunbookAction{Step: "enable", SiteName: "tset"}); err == nil || !strings.Contains(err.Error(), "type test exactly") {
		t.Fatalf("wrong site name: %v", err)
	}
	if st := r.status(true); st.Mode != api.ModeLive {
		t.Fatalf("mode %s before confirmation", st.Mode)
	}
	if _, err := r.client.ConfirmStep(ctx, api.RunbookAction{ID: rb.ID, Step: "enable", SiteName: "test"}); err != nil {
		t.Fatal(err)
	}
	rb = r.waitRunbook("disable to wait", func(rb *api.Runbook) bool {
		return rb.Waiting != nil && rb.Waiting.Step == api.StepDisable || runbookEnded(rb)
	})
	if rb.State != api.RunbookWaiting {
		t.Fatalf("%s at %s: %s", rb.State, rb.Step, rb.Error)
	}
	// Read-only all along: a write through the gate is refused.
	if res := r.do("POST", "/api/3/action/package_create", strings.NewReader(`{"name":"x"}`), "Authorization", ckansimSysadmin()); res.status != 503 {
		t.Fatalf("write during the runbook: %d", res.status)
	}
	if rb.Snapshot == nil || rb.Snapshot.Verdict != api.VerdictConsistent {
		t.Fatalf("snapshot %+v", rb.Snapshot)
	}
	rep, err := snapshot.Verify(ctx, rb.Snapshot.Dir, filepath.Join(r.pg.BinDir(), "pg_restore"))
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK || len(rep.Files) != 3 {
		t.Fatalf("verify: %+v", rep)
	}
	m := rep.Manifest
	if m.ModeVersion != r.status(true).Version || m.Times.Quiesced.IsZero() || m.CKANVersion == "" {
		t.Errorf("manifest: mode version %d, quiesced %v, ckan %q", m.ModeVersion, m.Times.Quiesced, m.CKANVersion)
	}
	if _, err := r.client.ConfirmStep(ctx, api.RunbookAction{Step: "disable"}); err != nil {
		t.Fatal(err)
	}
	rb = r.waitRunbook("the end", runbookEnded)
	if rb.State != api.RunbookDone {
		t.Fatalf("%s: %s", rb.State, rb.Error)
	}
	if st := r.status(true); st.Mode != api.ModeLive {
		t.Fatalf("mode %s after the runbook", st.Mode)
	}
	// The stream ends by itself once the runbook is over, with every event.
	select {
	case err := <-streamDone:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the event stream did not end with the runbook")
	}
	evMu.Lock()
	defer evMu.Unlock()
	if n := len(events); n == 0 || events[n-1].Kind != api.EventFinished || events[n-1].State != string(api.RunbookDone) {
		t.Fatalf("stream ended with %+v", events[len(events)-1])
	}
	for i := 1; i < len(events); i++ {
		if events[i].Seq != events[i-1].Seq+1 {
			t.Fatalf("stream skipped from %d to %d", events[i-1].Seq, events[i].Seq)
		}
	}
	// Every step and confirmation is in the audit log with its actor.
	audit, _ := os.ReadFile(r.audit)
	for _, want := range []string{`"event":"runbook-start","actor":"ops-token"`, `"event":"runbook-confirm","actor":"ops-token"`, `"event":"mode","actor":"ops-token"`, `"event":"runbook-done"`} {
		if !strings.Contains(string(audit), want) {
			t.Errorf("audit log lacks %s", want)
		}
	}
}

func ckansimSysadmin() string {
	return "eyJ0eXAiOiJKV1QiLCJhbGciOiJIUzI1NiJ9.eyJqdGkiOiJja2Fuc2ltLWFkbWluLXRva2VuIiwiaWF0IjoxNzM1Njg5NjAwfQ.ozAsD-I-nDcFmVUOHAC-yksS3ckWkfUbB4v7TZ4bIFU"
}

func runAuto(t *testing.T, r *runbookRig) *api.Runbook {
	t.Helper()
	if _, err := r.client.StartRunbook(context.Background(), api.RunbookOptions{AutoConfirm: true}); err != nil {
		t.Fatal(err)
	}
	return r.waitRunbook("the end", runbookEnded)
}

func TestRunbookSnapshotSeesAWriterBehindTheGate(t *testing.T) {
	var url string
	r := newRunbookRig(t, func(o *runbook.Options) {
		url = o.Checks.CKANDB.Reveal()
		var once sync.Once
		o.OnOutput = func(step, line string) {
			if step == api.StepSnapshot && strings.HasPrefix(line, "storage ") {
				once.Do(func() {
					execSQL(t, url, `INSERT INTO package VALUES ('p3', 'sneaky', 'Written behind the gate', now())`)
				})
			}
		}
	})
	rb := runAuto(t, r)
	if rb.State != api.RunbookFailed || rb.Step != api.StepSnapshot {
		t.Fatalf("%s at %s: %s", rb.State, rb.Step, rb.Error)
	}
	if rb.Snapshot == nil || rb.Snapshot.Verdict != api.VerdictInconsistent || !slices.ContainsFunc(rb.Snapshot.Changed, func(s string) bool {
		return strings.Contains(s, "public.package") && strings.Contains(s, "1 insert")
	}) {
		t.Fatalf("snapshot %+v", rb.Snapshot)
	}
	// The site stays read-only; the snapshot says what it is.
	if st := r.status(true); st.Mode != api.ModeReadOnly {
		t.Fatalf("mode %s", st.Mode)
	}
	m, err := snapshot.Load(rb.Snapshot.Dir)
	if err != nil || m.Verdict != snapshot.Inconsistent {
		t.Fatalf("manifest on disk: %+v, %v", m, err)
	}
}

func TestRunbookBookkeepingDoesNotSpoilTheSnapshot(t *testing.T) {
	var url string
	r := newRunbookRig(t, func(o *runbook.Options) {
		url = o.Checks.CKANDB.Reveal()
		var once sync.Once
		o.OnOutput = func(step, line string) {
			if step == api.StepSnapshot && strings.HasPrefix(line, "storage ") {
				once.Do(func() {
					execSQL(t, url, `UPDATE "user" SET last_active = now(); UPDATE api_token SET last_access = now();
INSERT INTO tracking_raw VALUES ('k', '/dataset/bus-stops', 'page', now()); UPDATE dashboard SET activity_stream_last_viewed = now()`)
				})
			}
		}
	})
	rb := runAuto(t, r)
	if rb.State != api.RunbookDone {
		t.Fatalf("%s at %s: %s", rb.State, rb.Step, rb.Error)
	}
	m, err := snapshot.Load(rb.Snapshot.Dir)
	if err != nil {
		t.Fatal(err)
	}
	if m.Verdict != snapshot.Consistent || len(m.Bookkeeping) < 4 {
		t.Fatalf("verdict %s, bookkeeping %q, changed %q", m.Verdict, m.Bookkeeping, m.Changed)
	}
}

// A fake pg_dump: fails, or hangs until killed.
func fakePGDump(t *testing.T, body string) string {
	p := filepath.Join(t.TempDir(), "pg_dump")
	must(t, os.WriteFile(p, []byte("#!/bin/sh\n"+body), 0o755))
	return p
}

func noSnapshotLeft(t *testing.T, dir string) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		t.Errorf("left in the snapshot dir: %s", e.Name())
	}
}

func TestRunbookPGDumpFails(t *testing.T) {
	r := newRunbookRig(t, func(o *runbook.Options) {
		o.Snapshot.PGDump = fakePGDump(t, "echo 'PGDMP partial'\necho 'pg_dump: error: query failed: out of shared memory' >&2\nexit 1\n")
	})
	rb := runAuto(t, r)
	if rb.State != api.RunbookFailed || rb.Step != api.StepSnapshot || !strings.Contains(rb.Error, "out of shared memory") {
		t.Fatalf("%s at %s: %s", rb.State, rb.Step, rb.Error)
	}
	if st := r.status(true); st.Mode != api.ModeReadOnly {
		t.Fatalf("mode %s", st.Mode)
	}
	noSnapshotLeft(t, r.snapshots)
}

func TestRunbookAbortMidSnapshot(t *testing.T) {
	started := make(chan struct{})
	var once sync.Once
	r := newRunbookRig(t, func(o *runbook.Options) {
		o.Snapshot.PGDump = fakePGDump(t, "echo 'PGDMP'\necho 'pg_dump: dumping contents of table public.package' >&2\nexec sleep 300\n")
		o.OnOutput = func(step, line string) {
			if strings.Contains(line, "dumping contents") {
				once.Do(func() { close(started) })
			}
		}
	})
	if _, err := r.client.StartRunbook(context.Background(), api.RunbookOptions{AutoConfirm: true}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-started:
	case <-time.After(60 * time.Second):
		t.Fatal("the snapshot never started")
	}
	rb, err := r.client.AbortRunbook(context.Background(), api.RunbookAction{Reason: "wrong night"})
	if err != nil {
		t.Fatal(err)
	}
	if rb.State != api.RunbookAborted || rb.StepByName(api.StepSnapshot).State != api.StepFailed {
		t.Fatalf("%s, snapshot %s", rb.State, rb.StepByName(api.StepSnapshot).State)
	}
	if st := r.status(true); st.Mode != api.ModeReadOnly {
		t.Fatalf("mode %s after an abort without disable", st.Mode)
	}
	noSnapshotLeft(t, r.snapshots)
}

func TestRunbookSnapshotDirNotWritable(t *testing.T) {
	r := newRunbookRig(t, nil)
	// A regular file where the directory should be: not writable, even by root.
	must(t, os.Remove(r.snapshots))
	must(t, os.WriteFile(r.snapshots, []byte("not a dir"), 0o644))
	rb := runAuto(t, r)
	if rb.State != api.RunbookFailed || rb.Step != api.StepPreflight || !strings.Contains(rb.Error, "is not a directory") {
		t.Fatalf("%s at %s: %s", rb.State, rb.Step, rb.Error)
	}
	if st := r.status(true); st.Mode != api.ModeLive {
		t.Fatalf("preflight changed the mode to %s", st.Mode)
	}
}
