package snapshot

import (
	"archive/tar"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/ckanops/ckanops/api"
)

// A meter reports at zero, then at most every progressReportEvery, and
// its end once, with rate and ETA filled in.
func TestMeter(t *testing.T) {
	var got []api.Progress
	out := &output{progress: func(p api.Progress) { got = append(got, p) }}
	m := out.meter("archive of storage", 1000, 10)
	for i := range 1000 { // far faster than progressReportEvery
		m.update(int64(i), 0)
	}
	m.end(1000, 10)
	m.end(1000, 10)
	if len(got) != 2 {
		t.Fatalf("%d reports, want the first and the last: %+v", len(got), got)
	}
	if got[0].DoneBytes != 0 || got[0].TotalBytes != 1000 || got[0].TotalFiles != 10 || got[0].Ended {
		t.Errorf("first %+v", got[0])
	}
	if l := got[1]; !l.Ended || l.DoneBytes != 1000 || l.DoneFiles != 10 || l.RateBytesPerS <= 0 || l.ETAS != 0 {
		t.Errorf("last %+v", l)
	}
	var none *output
	none.meter("x", 0, 0).update(1, 1) // no progress function: nothing, no panic
}

// A restore reports each archive's unpacking: from zero to the archive's
// size, ended.
func TestRestoreProgress(t *testing.T) {
	dir, m := handSnapshot(t, Consistent,
		tarItem{name: "d/", typ: tar.TypeDir},
		tarItem{name: "d/f.txt", typ: tar.TypeReg, body: strings.Repeat("x", 100000)})
	var got []api.Progress
	_, err := Restore(context.Background(), RestoreSpec{Dir: dir, StoragePath: filepath.Join(t.TempDir(), "storage"),
		Progress: func(p api.Progress) { got = append(got, p) }})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) < 2 {
		t.Fatalf("reports %+v", got)
	}
	size := m.Files[0].Size
	first, last := got[0], got[len(got)-1]
	if first.Part != "unpack of storage" || first.DoneBytes != 0 || first.TotalBytes != size || first.Ended {
		t.Errorf("first %+v, want 0 of %d", first, size)
	}
	if !last.Ended || last.DoneBytes != size || last.DoneFiles != 1 {
		t.Errorf("last %+v, want ended at %d bytes, 1 file", last, size)
	}
}

// readOffset finds where a process has a file open.
func TestRestoreReadOffset(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ckan_db.dump")
	if err := os.WriteFile(path, make([]byte, 4096), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Seek(1234, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	real, _ := filepath.EvalSymlinks(path)
	if pos, ok := readOffset(os.Getpid(), real); !ok || pos != 1234 {
		t.Errorf("readOffset: %d, %v; want 1234", pos, ok)
	}
	if _, ok := readOffset(os.Getpid(), real+".not"); ok {
		t.Error("readOffset found a file not open")
	}
}

// A real pg_restore reports its progress as it reads the dump: from zero,
// through reports in between (its file offset in /proc), to the dump's
// whole size when it has succeeded.
func TestRestoreProgressOfARealPGRestore(t *testing.T) {
	fx := newFixture(t)
	fx.sql(t, fx.ckan, `CREATE TABLE activity (id int PRIMARY KEY, data text)`,
		`INSERT INTO activity SELECT i, md5(i::text) || md5((i * 7)::text) || md5((i * 13)::text) FROM generate_series(1, 1200000) i`)
	ctx := context.Background()
	s := fx.spec(t.TempDir(), "", &lines{})
	s.DatastoreDB = ""
	m, err := Take(ctx, s)
	if err != nil {
		t.Fatal(err)
	}
	target := withPassword(t, fx.cl.CreateDB(t, "ckan_restored"))
	var got []api.Progress
	var mu sync.Mutex
	_, err = Restore(ctx, RestoreSpec{Dir: m.Dir, CKANDB: target, PGRestore: fx.pgRestore,
		Progress: func(p api.Progress) {
			if p.Part == "pg_restore "+SourceCKANDB {
				mu.Lock()
				got = append(got, p)
				mu.Unlock()
			}
		}})
	if err != nil {
		t.Fatal(err)
	}
	size := m.Files[0].Size
	if len(got) < 3 {
		t.Fatalf("%d reports, want a first, some in between and a last: %+v", len(got), got)
	}
	first, last := got[0], got[len(got)-1]
	if first.DoneBytes != 0 || first.TotalBytes != size || !last.Ended || last.DoneBytes != size {
		t.Errorf("first %+v, last %+v; want 0 and %d", first, last, size)
	}
	between := 0
	for _, p := range got[1 : len(got)-1] {
		if p.DoneBytes > 0 && p.DoneBytes < size && !p.Ended {
			between++
		}
	}
	if between == 0 {
		t.Errorf("no report between the first and the last (%d bytes): %+v", size, got)
	}
	t.Logf("%d reports for a %d-byte dump, %d in between", len(got), size, between)
}
