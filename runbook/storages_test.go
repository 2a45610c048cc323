package runbook

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/ckanops/ckanops/api"
	"github.com/ckanops/ckanops/config"
	"github.com/ckanops/ckanops/runbook/snapshot"
)

// A site with a storage the gate cannot archive: preflight says so; once
// it is skipped, the snapshot is partial, the step fails naming
// exclude_storages, and the site stays in maintenance. Once excluded, the runbook finishes with a consistent
// snapshot that lists it, and every local storage is archived.
func TestRunbookSnapshotStorages(t *testing.T) {
	cloud := config.Storage{Name: "bucket", Type: "ckanext-s3:s3"}
	t.Run("partial", func(t *testing.T) {
		site := newFakeSite(t)
		e, _ := testEngine(t, site, func(o *Options) {
			o.Snapshot.Storages = []config.Storage{{Name: "default", Path: o.Snapshot.StoragePath}, cloud}
		})
		if _, err := e.Start(context.Background(), api.RunbookOptions{AutoConfirm: true}, "x"); err != nil {
			t.Fatal(err)
		}
		rb := waitFor(t, e, "preflight to stop", ended)
		if rb.State != api.RunbookFailed || rb.Step != api.StepPreflight || !strings.Contains(rb.Error, "storage bucket (type ckanext-s3:s3) is not a local directory: the snapshot would be partial") {
			t.Fatalf("preflight: %s at %s: %s", rb.State, rb.Step, rb.Error)
		}
		if _, err := e.Skip(api.RunbookAction{Step: api.StepPreflight}, "x"); err != nil {
			t.Fatal(err)
		}
		rb = waitFor(t, e, "the end", func(rb *api.Runbook) bool { return ended(rb) && rb.Step != api.StepPreflight })
		if rb.State != api.RunbookFailed || rb.Step != api.StepSnapshot {
			t.Fatalf("%s at %s: %s", rb.State, rb.Step, rb.Error)
		}
		for _, w := range []string{"is partial: storage bucket (type ckanext-s3:s3) not included", "back up storage bucket otherwise and list it in [snapshot] exclude_storages"} {
			if !strings.Contains(rb.Error, w) {
				t.Errorf("error %q lacks %q", rb.Error, w)
			}
		}
		if rb.Snapshot == nil || rb.Snapshot.Verdict != snapshot.Partial {
			t.Fatalf("snapshot %+v", rb.Snapshot)
		}
		if site.mode() != api.ModeReadOnly {
			t.Fatalf("mode %s after a partial snapshot", site.mode())
		}
	})
	t.Run("excluded, several local", func(t *testing.T) {
		site := newFakeSite(t)
		pub := filepath.Join(t.TempDir(), "public")
		if err := os.MkdirAll(filepath.Join(pub, "uploads"), 0o755); err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(pub, "uploads", "logo.png"), []byte("png"), 0o644)
		e, _ := testEngine(t, site, func(o *Options) {
			o.Snapshot.Storages = []config.Storage{{Name: "default", Path: o.Snapshot.StoragePath}, {Name: "public", Path: pub}, cloud}
			o.Snapshot.ExcludeStorages = []string{"bucket"}
		})
		if _, err := e.Start(context.Background(), api.RunbookOptions{AutoConfirm: true}, "x"); err != nil {
			t.Fatal(err)
		}
		rb := waitFor(t, e, "the end", ended)
		if rb.State != api.RunbookDone || rb.Snapshot == nil || rb.Snapshot.Verdict != snapshot.Consistent {
			t.Fatalf("%s at %s: %s; snapshot %+v", rb.State, rb.Step, rb.Error, rb.Snapshot)
		}
		m, err := snapshot.Load(rb.Snapshot.Dir)
		if err != nil {
			t.Fatal(err)
		}
		if len(m.Storages) != 2 || m.Storages[1].File != "storage-public.tar" || len(m.StoragesNotIncluded) != 1 || !m.StoragesNotIncluded[0].Excluded {
			t.Errorf("storages %+v, not included %+v", m.Storages, m.StoragesNotIncluded)
		}
	})
}

// With [snapshot] incremental, the runbook's second snapshot hard-links
// the files that did not change since its first, and stays whole when the
// first is deleted.
func TestRunbookIncrementalSnapshots(t *testing.T) {
	site := newFakeSite(t)
	var storage string
	e, _ := testEngine(t, site, func(o *Options) {
		o.Snapshot.Incremental = true
		storage = o.Snapshot.StoragePath
	})
	for i := range 20 {
		os.MkdirAll(filepath.Join(storage, "resources"), 0o755)
		os.WriteFile(filepath.Join(storage, "resources", "r"+strconv.Itoa(i)+".csv"), []byte(strings.Repeat("x", 1000+i)), 0o644)
	}
	run := func() *snapshot.Manifest {
		t.Helper()
		if _, err := e.Start(context.Background(), api.RunbookOptions{AutoConfirm: true, SkipMigrate: true}, "x"); err != nil {
			t.Fatal(err)
		}
		rb := waitFor(t, e, "the end", ended)
		if rb.State != api.RunbookDone || rb.Snapshot == nil || rb.Snapshot.Verdict != snapshot.Consistent {
			t.Fatalf("%s at %s: %s; snapshot %+v", rb.State, rb.Step, rb.Error, rb.Snapshot)
		}
		m, err := snapshot.Load(rb.Snapshot.Dir)
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	first := run()
	if tr := first.Storages[0].Tree; tr == nil || tr.Reused != 0 || tr.Copied < 20 {
		t.Fatalf("the first snapshot's storage: %+v", first.Storages[0])
	}
	os.WriteFile(filepath.Join(storage, "resources", "r3.csv"), []byte("changed"), 0o644)
	second := run()
	tr := second.Storages[0].Tree
	if n := first.Storages[0].Tree.Copied; tr == nil || tr.Reused != n-1 || tr.Copied != 1 || tr.ReusedFrom != filepath.Base(first.Dir) {
		t.Fatalf("the second snapshot's storage: reused %d from %q, copied %d", tr.Reused, tr.ReusedFrom, tr.Copied)
	}
	if err := os.RemoveAll(first.Dir); err != nil {
		t.Fatal(err)
	}
	rep, err := snapshot.Verify(context.Background(), second.Dir, "")
	if err != nil || !rep.OK {
		t.Fatalf("the second snapshot after the first was deleted: %v %+v", err, rep)
	}
}
