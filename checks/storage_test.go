package checks

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ckanops/ckanops/api"
	"github.com/ckanops/ckanops/config"
	"github.com/ckanops/ckanops/internal/human"
)

// storageTree lays out files as CKAN's storage does, all old but one.
func storageTree(t testing.TB, n int) (root, newest string) {
	t.Helper()
	root = t.TempDir()
	old := time.Now().Add(-48 * time.Hour)
	for i := range n {
		dir := filepath.Join(root, "resources", fmt.Sprintf("%03d", i%7), fmt.Sprintf("%03d", i%5))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		f := filepath.Join(dir, fmt.Sprintf("file-%d", i))
		if err := os.WriteFile(f, []byte("data"), 0o644); err != nil {
			t.Fatal(err)
		}
		os.Chtimes(f, old, old)
	}
	filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if d != nil && d.IsDir() {
			os.Chtimes(p, old, old)
		}
		return nil
	})
	newest = filepath.Join("resources", "003", "002", "file-17")
	recent := time.Now().Add(-90 * time.Second)
	if err := os.Chtimes(filepath.Join(root, newest), recent, recent); err != nil {
		t.Fatal(err)
	}
	return root, newest
}

func TestStorage(t *testing.T) {
	root, newest := storageTree(t, 50)
	res := runProbe(t, NewStorage(root, 0, 0), 5*time.Second)
	if res.Status != api.CheckOK {
		t.Fatalf("%s: %s", res.Status, res.Summary)
	}
	d := res.Storage
	if !known(t, "exists", d.Exists) || !known(t, "readable", d.Readable) || !known(t, "walk_complete", d.WalkComplete) || d.NewestPath != newest {
		t.Errorf("details %+v", d)
	}
	if n := known(t, "entries_scanned", d.EntriesScanned); n < 50 {
		t.Errorf("entries_scanned %d", n)
	}
	free, total := known(t, "free_bytes", d.FreeBytes), known(t, "total_bytes", d.TotalBytes)
	if total == 0 || free > total {
		t.Errorf("free %d of %d bytes", free, total)
	}
	if !strings.Contains(res.Summary, "newest change 1m3") || !strings.Contains(res.Summary, " ago ("+newest+")") {
		t.Errorf("summary %q", res.Summary)
	}
	// The space in ckanops' one unit system, said once.
	space := human.Bytes(int64(free)) + " free of " + human.Bytes(int64(total)) + ", "
	if !strings.HasPrefix(res.Summary, space) || strings.Count(res.Summary, "free") != 1 || strings.Contains(res.Summary, "iB") {
		t.Errorf("summary %q, want it to begin %q", res.Summary, space)
	}

	// A bounded walk says it stopped.
	res = runProbe(t, NewStorage(root, 10, 0), 5*time.Second)
	if d := res.Storage; res.Status != api.CheckOK || known(t, "walk_complete", d.WalkComplete) || known(t, "entries_scanned", d.EntriesScanned) != 10 ||
		d.WalkStopped != "stopped after 10 entries" || !strings.Contains(res.Summary, "among the first 10 entries (stopped after 10 entries)") {
		t.Errorf("bounded walk: %s %+v", res.Summary, d)
	}

	// Empty: fine, nothing to report yet.
	res = runProbe(t, NewStorage(t.TempDir(), 0, 0), 5*time.Second)
	if res.Status != api.CheckOK || !strings.Contains(res.Summary, "no file in it yet") {
		t.Errorf("empty: %s: %s", res.Status, res.Summary)
	}
}

// The free space is said once, in decimal units (as everywhere in
// ckanops), and only once when it is low.
func TestStorageSpaceText(t *testing.T) {
	for _, c := range []struct {
		free, total uint64
		want        string
		low         bool
	}{
		{40e9, 100e9, "40.0 GB free of 100.0 GB, ", false},
		{5e9, 100e9, "5.0 GB free of 100.0 GB, ", false},
		{3_400_000_000, 100e9, "less than 5% free: 3.4 GB of 100.0 GB, ", true},
		{0, 0, "", false}, // statfs failed: nothing to say
	} {
		got, low := spaceText(c.free, c.total)
		if got != c.want || low != c.low {
			t.Errorf("spaceText(%d, %d) = %q, %v; want %q, %v", c.free, c.total, got, low, c.want, c.low)
		}
		if strings.Count(got, "free") > 1 || strings.Contains(got, "iB") {
			t.Errorf("%q says the free space twice, or in binary units", got)
		}
	}
}

func TestStorageFaults(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "a-file")
	os.WriteFile(file, nil, 0o644)
	missing := filepath.Join(dir, "no", "such")
	for _, c := range []struct{ path, want string }{
		{missing, missing + " does not exist: check checks.storage_path"},
		{file, file + " is not a directory"},
	} {
		res := runProbe(t, NewStorage(c.path, 0, 0), time.Second)
		if res.Status != api.CheckFail || !strings.Contains(res.Summary, c.want) {
			t.Errorf("%s: %s: %s", c.path, res.Status, res.Summary)
		}
	}
	if os.Geteuid() == 0 {
		t.Log("running as root: permissions cannot be tested")
		return
	}
	locked := filepath.Join(dir, "locked")
	os.Mkdir(locked, 0o000)
	defer os.Chmod(locked, 0o755)
	res := runProbe(t, NewStorage(locked, 0, 0), time.Second)
	if res.Status != api.CheckFail || !strings.Contains(res.Summary, "cannot read "+locked+": permission denied") {
		t.Errorf("unreadable: %s: %s", res.Status, res.Summary)
	}
	res = runProbe(t, NewStorage(dir, 0, 0), time.Second)
	if res.Status != api.CheckWarn || !strings.Contains(res.Summary, "1 entries cannot be read") {
		t.Errorf("an unreadable subdirectory: %s: %s", res.Status, res.Summary)
	}
}

// Several storages, one check: each local one probed and named, the worst
// status wins (with that storage's details), the others named as not
// probed.
func TestStorages(t *testing.T) {
	good, newest := storageTree(t, 20)
	missing := filepath.Join(t.TempDir(), "gone")
	res := runProbe(t, NewStorages([]config.Storage{
		{Name: "default", Path: good},
		{Name: "public", Path: missing, Type: "ckan:fs:public"},
		{Name: "bucket", Type: "ckanext-s3:s3"},
	}, 0, 0), 5*time.Second)
	if res.Name != api.ProbeStorage || res.Status != api.CheckFail || res.Storage == nil || res.Storage.Path != missing {
		t.Fatalf("%s: %s %+v", res.Status, res.Summary, res.Storage)
	}
	for _, w := range []string{"default: ", " ago (" + newest + ")", "; public: " + missing + " does not exist", "; not local, so not probed (nor archived by a snapshot): bucket (ckanext-s3:s3)"} {
		if !strings.Contains(res.Summary, w) {
			t.Errorf("summary %q lacks %q", res.Summary, w)
		}
	}

	// Both fine: ok, the first's details.
	other, _ := storageTree(t, 20)
	res = runProbe(t, NewStorages([]config.Storage{{Name: "default", Path: good}, {Name: "public", Path: other}}, 0, 0), 5*time.Second)
	if res.Status != api.CheckOK || res.Storage.Path != good || strings.Count(res.Summary, "free of") != 2 || !strings.Contains(res.Summary, "; public: ") {
		t.Errorf("%s: %s %+v", res.Status, res.Summary, res.Storage)
	}

	// One storage alone: exactly the Storage probe's result.
	one := runProbe(t, NewStorages([]config.Storage{{Name: "default", Path: good}}, 0, 0), 5*time.Second)
	if one.Status != api.CheckOK || strings.Contains(one.Summary, "default:") || one.Storage.Path != good {
		t.Errorf("one: %s %+v", one.Summary, one.Storage)
	}

	// Only a cloud storage: unknown, said so.
	res = runProbe(t, NewStorages([]config.Storage{{Name: "bucket", Type: "ckan:s3"}}, 0, 0), 5*time.Second)
	if res.Status != api.CheckUnknown || !strings.Contains(res.Summary, "no local storage; not local, so not probed") {
		t.Errorf("cloud only: %s %s", res.Status, res.Summary)
	}
}
