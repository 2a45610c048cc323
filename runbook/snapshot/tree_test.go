package snapshot

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ckanops/ckanops/api"
	"github.com/ckanops/ckanops/config"
)

// treeStorage is a storage of n files (in a few directories, with a
// symbolic link and an empty directory), each size bytes.
func treeStorage(t testing.TB, n, size int) string {
	t.Helper()
	root := t.TempDir()
	body := bytes.Repeat([]byte("0123456789abcdef"), size/16+1)[:size]
	for i := range n {
		p := filepath.Join(root, "resources", fmt.Sprintf("%02d", i%10), fmt.Sprintf("file-%04d.csv", i))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		b := append([]byte(fmt.Sprintf("%d\n", i)), body...)[:size]
		if err := os.WriteFile(p, b, 0o640); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, mtime, mtime.Add(time.Duration(i)*time.Millisecond+123)); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(root, "empty"), 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("resources/00", filepath.Join(root, "latest")); err != nil {
		t.Fatal(err)
	}
	return root
}

// incrementalSpec is a storage-only, incremental Spec whose clock moves a
// second each call.
func incrementalSpec(t testing.TB, out *lines, root string) Spec {
	now := time.Date(2024, 3, 1, 11, 2, 3, 0, time.UTC)
	return Spec{
		Site: "data-city", Dir: t.TempDir(), StatsSettle: time.Millisecond, Incremental: true,
		Storages: []config.Storage{{Name: "default", Path: root}},
		Clock: func() time.Time {
			now = now.Add(time.Second)
			return now
		},
		Output: out.add,
	}
}

func inode(t *testing.T, p string) uint64 {
	t.Helper()
	fi, err := os.Lstat(p)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t).Ino
}

func verifyOK(t *testing.T, dir string) {
	t.Helper()
	r, err := Verify(context.Background(), dir, "")
	if err != nil {
		t.Fatal(err)
	}
	if !r.OK {
		t.Errorf("verify %s: %+v", dir, r.Files)
	}
}

// sameTree fails unless b holds what a holds: types, permissions,
// modification times (ns), contents and link targets.
func sameTree(t *testing.T, a, b string) {
	t.Helper()
	type ent struct {
		mode  fs.FileMode
		mtime int64
		body  string
	}
	read := func(root string) map[string]ent {
		out := map[string]ent{}
		err := walkTree(context.Background(), root, func(p, rel string, info fs.FileInfo) error {
			e := ent{mode: info.Mode()}
			switch {
			case info.Mode()&fs.ModeSymlink != 0:
				l, err := os.Readlink(p)
				e.body = l
				out[rel] = e
				return err
			case info.Mode().IsRegular():
				b, err := os.ReadFile(p)
				e.body, e.mtime = string(b), info.ModTime().UnixNano()
				out[rel] = e
				return err
			default:
				e.mtime = info.ModTime().UnixNano()
			}
			out[rel] = e
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	ea, eb := read(a), read(b)
	if len(ea) != len(eb) {
		t.Errorf("%s has %d entries, %s %d", a, len(ea), b, len(eb))
	}
	for k, v := range ea {
		if w, ok := eb[k]; !ok || w != v {
			t.Errorf("%s: %+v in %s, %+v (%v) in %s", k, v.mode, a, w.mode, ok, b)
		}
	}
}

// A first snapshot copies everything; the second, after a few changes,
// hard-links the unchanged files to the first's copies and copies the
// rest; both verify; pruning the first leaves the second whole: it
// verifies and restores the source tree.
func TestTakeIncremental(t *testing.T) {
	ctx := context.Background()
	src := treeStorage(t, 100, 1000)
	out := &lines{}
	s := incrementalSpec(t, out, src)
	m1, err := Take(ctx, s)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("first:\n%s", strings.Join(out.all(), "\n"))
	st := m1.Storages[0]
	if m1.Format != FormatTree || st.File != "storage" || st.Tree == nil || m1.Verdict != Consistent {
		t.Fatalf("first: format %d, storage %+v, verdict %s", m1.Format, st, m1.Verdict)
	}
	if tr := st.Tree; tr.Copied != 100 || tr.Reused != 0 || tr.ReusedFrom != "" || tr.Fallback != "" || tr.CopiedBytes != 100_000 {
		t.Errorf("first tree: %+v", *tr)
	}
	if f := m1.Files[0]; f.Kind != KindTree || f.Name != "storage" || f.Size != 100_000 {
		t.Errorf("first file: %+v", f)
	}
	verifyOK(t, m1.Dir)

	// 1% changed, one added, one deleted, one touched.
	changed := filepath.Join(src, "resources/01/file-0011.csv")
	if err := os.WriteFile(changed, []byte("new content"), 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "resources/02/added.csv"), []byte("added"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(src, "resources/03/file-0013.csv")); err != nil {
		t.Fatal(err)
	}
	touched := filepath.Join(src, "resources/04/file-0014.csv")
	if err := os.Chtimes(touched, mtime, mtime.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}

	out = &lines{}
	s.Output = out.add
	m2, err := Take(ctx, s)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("second:\n%s", strings.Join(out.all(), "\n"))
	tr := m2.Storages[0].Tree
	if tr.Reused != 97 || tr.Copied != 3 || tr.ReusedFrom != filepath.Base(m1.Dir) || tr.ReusedBytes != 97_000 || tr.Fallback != "" {
		t.Errorf("second tree: reused %d (%d bytes) from %q, copied %d, fallback %q", tr.Reused, tr.ReusedBytes, tr.ReusedFrom, tr.Copied, tr.Fallback)
	}
	reused := map[string]bool{}
	for _, e := range tr.Entries {
		reused[e.Path] = e.Reused
	}
	for _, p := range []string{"resources/01/file-0011.csv", "resources/02/added.csv", "resources/04/file-0014.csv"} {
		if reused[p] {
			t.Errorf("%s reused", p)
		}
		if inode(t, filepath.Join(m2.Dir, "storage", p)) == inode(t, filepath.Join(src, p)) {
			t.Errorf("%s: the source's inode", p)
		}
	}
	for _, p := range []string{"resources/01/file-0011.csv", "resources/04/file-0014.csv"} {
		if inode(t, filepath.Join(m1.Dir, "storage", p)) == inode(t, filepath.Join(m2.Dir, "storage", p)) {
			t.Errorf("%s: linked, want a copy", p)
		}
	}
	if _, ok := reused["resources/03/file-0013.csv"]; ok {
		t.Error("the deleted file is listed")
	}
	for _, p := range []string{"resources/00/file-0000.csv", "resources/09/file-0099.csv"} {
		if !reused[p] {
			t.Errorf("%s not reused", p)
		}
		if a, b := inode(t, filepath.Join(m1.Dir, "storage", p)), inode(t, filepath.Join(m2.Dir, "storage", p)); a != b {
			t.Errorf("%s: inodes %d and %d, want one", p, a, b)
		}
	}
	if !strings.Contains(strings.Join(out.all(), "\n"), "3 copied (") {
		t.Errorf("output does not say 3 copied")
	}
	verifyOK(t, m1.Dir)
	verifyOK(t, m2.Dir)

	// Keep 1: the first goes, the second stays whole.
	removed, err := Prune(s.Dir, s.Site, 1)
	if err != nil || len(removed) != 1 || removed[0] != m1.Dir {
		t.Fatalf("prune: %v, %v", removed, err)
	}
	verifyOK(t, m2.Dir)
	target := filepath.Join(t.TempDir(), "restored")
	rep, err := Restore(ctx, RestoreSpec{Dir: m2.Dir, StoragePath: target})
	if err != nil {
		t.Fatal(err)
	}
	if st := rep.Storage; !st.Done || st.Files != 100 || st.Symlinks != 1 || st.File != "storage" {
		t.Errorf("restore: %+v", st)
	}
	sameTree(t, src, target)

	// A third snapshot, the first gone: linked to the second.
	m3, err := Take(ctx, s)
	if err != nil {
		t.Fatal(err)
	}
	if tr := m3.Storages[0].Tree; tr.Reused != 100 || tr.Copied != 0 || tr.ReusedFrom != filepath.Base(m2.Dir) {
		t.Errorf("third: %+v", *tr)
	}

	// Verify re-hashes the files, and sees what is not listed.
	bad := filepath.Join(m3.Dir, "storage", "resources/02/added.csv")
	if err := os.Remove(bad); err != nil { // a link: write a new file, not into m2's
		t.Fatal(err)
	}
	if err := os.WriteFile(bad, []byte("ADDED"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(m3.Dir, "storage", "stray"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	r, err := Verify(ctx, m3.Dir, "")
	if err != nil {
		t.Fatal(err)
	}
	if r.OK || len(r.Files) != 1 || !strings.Contains(r.Files[0].Problem, "resources/02/added.csv: sha256") || !strings.Contains(r.Files[0].Problem, "stray: not listed") {
		t.Errorf("verify of a changed tree: %+v", r.Files)
	}
	if _, err := Restore(ctx, RestoreSpec{Dir: m3.Dir, StoragePath: filepath.Join(t.TempDir(), "x")}); err == nil || !strings.Contains(err.Error(), "does not match its manifest") {
		t.Errorf("restore of a changed tree: %v", err)
	}
	verifyOK(t, m2.Dir)
}

// Across file systems (simulated: the link function says EXDEV), every
// file is copied, and the manifest and the output say why.
func TestTakeIncrementalCrossDevice(t *testing.T) {
	ctx := context.Background()
	src := treeStorage(t, 20, 100)
	out := &lines{}
	s := incrementalSpec(t, out, src)
	m1, err := Take(ctx, s)
	if err != nil {
		t.Fatal(err)
	}
	calls := 0
	s.link = func(oldname, newname string) error {
		calls++
		return &os.LinkError{Op: "link", Old: oldname, New: newname, Err: syscall.EXDEV}
	}
	m2, err := Take(ctx, s)
	if err != nil {
		t.Fatal(err)
	}
	tr := m2.Storages[0].Tree
	if tr.Reused != 0 || tr.Copied != 20 || tr.ReusedFrom != "" || !strings.Contains(tr.Fallback, "cross-device") || calls != 1 {
		t.Errorf("tree: %+v, %d link calls", *tr, calls)
	}
	if !strings.Contains(strings.Join(out.all(), "\n"), "every file copied, none hard-linked") {
		t.Errorf("output:\n%s", strings.Join(out.all(), "\n"))
	}
	p := "resources/00/file-0000.csv"
	if inode(t, filepath.Join(m1.Dir, "storage", p)) == inode(t, filepath.Join(m2.Dir, "storage", p)) {
		t.Error("linked across devices")
	}
	if err := os.RemoveAll(m1.Dir); err != nil {
		t.Fatal(err)
	}
	verifyOK(t, m2.Dir)

	// Another link failure (too many links): that file is copied, the
	// others still linked.
	s.link = func(oldname, newname string) error {
		if strings.HasSuffix(oldname, "file-0003.csv") {
			return &os.LinkError{Op: "link", Old: oldname, New: newname, Err: syscall.EMLINK}
		}
		return os.Link(oldname, newname)
	}
	m3, err := Take(ctx, s)
	if err != nil {
		t.Fatal(err)
	}
	if tr := m3.Storages[0].Tree; tr.Reused != 19 || tr.Copied != 1 || tr.Fallback != "" {
		t.Errorf("third: %+v", *tr)
	}
	verifyOK(t, m3.Dir)
}

// A tree's manifest is checked when it loads: its entries against the
// file record's digest and size.
func TestLoadTreeStrict(t *testing.T) {
	ctx := context.Background()
	src := treeStorage(t, 3, 10)
	m, err := Take(ctx, incrementalSpec(t, &lines{}, src))
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(m.Dir, ManifestName))
	if err != nil {
		t.Fatal(err)
	}
	var sum string
	for _, e := range m.Storages[0].Tree.Entries {
		if e.Type == treeFile {
			sum = e.SHA256
		}
	}
	for _, tc := range []struct{ name, from, to, want string }{
		{"entry changed", sum, strings.Repeat("0", 64), "its entries digest to"},
		{"format 2", `"format": 4`, `"format": 2`, `kind "tree" needs format 4`},
		{"escaping path", `"path": "empty"`, `"path": "../empty"`, "not a clean relative path"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if !bytes.Contains(b, []byte(tc.from)) {
				t.Fatalf("manifest lacks %s", tc.from)
			}
			if _, err := decodeManifest(bytes.Replace(b, []byte(tc.from), []byte(tc.to), 1)); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want %q", err, tc.want)
			}
		})
	}
	var raw map[string]any
	if err := json.Unmarshal(b, &raw); err != nil || raw["format"] != float64(FormatTree) {
		t.Errorf("format %v, %v", raw["format"], err)
	}
}

// Not a test: CKANOPS_MEASURE=1 go test -run TestMeasureIncremental -v
// prints the time of a first and a second snapshot of 200 MiB in 2,000
// files (CKANOPS_MEASURE_FILES files of CKANOPS_MEASURE_KB KiB), 1%
// changed between them, and of a tar snapshot.
func TestMeasureIncremental(t *testing.T) {
	if os.Getenv("CKANOPS_MEASURE") == "" {
		t.Skip("set CKANOPS_MEASURE=1 to measure")
	}
	ctx := context.Background()
	files, kib := 2000, 100
	if n, err := strconv.Atoi(os.Getenv("CKANOPS_MEASURE_FILES")); err == nil && n >= 100 {
		files = n
	}
	if n, err := strconv.Atoi(os.Getenv("CKANOPS_MEASURE_KB")); err == nil && n > 0 {
		kib = n
	}
	if os.Getenv("CKANOPS_MEASURE_DIR") != "" {
		t.Setenv("TMPDIR", os.Getenv("CKANOPS_MEASURE_DIR"))
	}
	src := treeStorage(t, files, kib<<10)
	s := incrementalSpec(t, &lines{}, src)
	s.Output = nil
	tarSpec := s
	tarSpec.Incremental, tarSpec.Dir = false, t.TempDir()
	syscall.Sync() // the source written: the snapshots' syncs need not flush it
	start := time.Now()
	if _, err := Take(ctx, tarSpec); err != nil {
		t.Fatal(err)
	}
	t.Logf("tar snapshot: %v", time.Since(start))
	start = time.Now()
	if _, err := Take(ctx, s); err != nil {
		t.Fatal(err)
	}
	t.Logf("first incremental snapshot: %v", time.Since(start))
	for i := 0; i < files; i += 100 {
		p := filepath.Join(src, "resources", fmt.Sprintf("%02d", i%10), fmt.Sprintf("file-%04d.csv", i))
		if err := os.WriteFile(p, bytes.Repeat([]byte("x"), kib<<10), 0o640); err != nil {
			t.Fatal(err)
		}
	}
	syscall.Sync()
	start = time.Now()
	m, err := Take(ctx, s)
	if err != nil {
		t.Fatal(err)
	}
	tr := m.Storages[0].Tree
	t.Logf("second incremental snapshot: %v (%d linked, %d copied)", time.Since(start), tr.Reused, tr.Copied)
}

// The copy of a tree reports its progress as the archive does: bytes
// copied plus bytes linked, against the walk's total; its restore, the
// bytes of its files unpacked against the tree's size.
func TestTreeProgress(t *testing.T) {
	ctx := context.Background()
	src := treeStorage(t, 10, 5000)
	s := incrementalSpec(t, &lines{}, src)
	if _, err := Take(ctx, s); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "resources/00/file-0000.csv"), make([]byte, 5000), 0o640); err != nil {
		t.Fatal(err)
	}
	var got []api.Progress
	s.Progress = func(p api.Progress) { got = append(got, p) }
	m, err := Take(ctx, s)
	if err != nil {
		t.Fatal(err)
	}
	if tr := m.Storages[0].Tree; tr.Reused != 9 || tr.Copied != 1 {
		t.Fatalf("tree %+v", *tr)
	}
	if len(got) < 2 {
		t.Fatalf("reports %+v", got)
	}
	first, last := got[0], got[len(got)-1]
	if first.Part != "copy of storage" || first.DoneBytes != 0 || first.TotalBytes != 50000 || first.TotalFiles != 10 {
		t.Errorf("first %+v", first)
	}
	if !last.Ended || last.DoneBytes != 50000 || last.DoneFiles != 10 {
		t.Errorf("last %+v", last)
	}

	got = nil
	_, err = Restore(ctx, RestoreSpec{Dir: m.Dir, StoragePath: filepath.Join(t.TempDir(), "storage"),
		Progress: func(p api.Progress) { got = append(got, p) }})
	if err != nil {
		t.Fatal(err)
	}
	first, last = got[0], got[len(got)-1]
	if first.Part != "unpack of storage" || first.DoneBytes != 0 || first.TotalBytes != 50000 {
		t.Errorf("restore first %+v", first)
	}
	if !last.Ended || last.DoneBytes != 50000 || last.DoneFiles != 10 {
		t.Errorf("restore last %+v", last)
	}
}

// Several storages: a tree each (storage/, storage-<name>/), each reusing
// its own previous copy; all restored.
func TestTakeIncrementalSeveralStorages(t *testing.T) {
	ctx := context.Background()
	def := smallStorage(t, map[string]string{"resources/abc/def": "a,b\n1,2\n"})
	pub := smallStorage(t, map[string]string{"uploads/group/logo.png": "png", "uploads/user/me.jpg": "jpeg"})
	s := incrementalSpec(t, &lines{}, def)
	s.Storages = append(s.Storages, config.Storage{Name: "public", Path: pub, Type: "ckan:fs:public"})
	if _, err := Take(ctx, s); err != nil {
		t.Fatal(err)
	}
	m, err := Take(ctx, s)
	if err != nil {
		t.Fatal(err)
	}
	if a, b := m.StorageByName("default"), m.StorageByName("public"); a.File != "storage" || b.File != "storage-public" || a.Tree.Reused != 1 || b.Tree.Reused != 2 {
		t.Errorf("storages %+v %+v", a, b)
	}
	verifyOK(t, m.Dir)
	base := t.TempDir()
	rep, err := Restore(ctx, RestoreSpec{Dir: m.Dir, Storages: map[string]string{"default": filepath.Join(base, "d"), "public": filepath.Join(base, "p")}})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Storages) != 2 {
		t.Fatalf("restored %+v", rep.Storages)
	}
	sameTree(t, def, filepath.Join(base, "d"))
	sameTree(t, pub, filepath.Join(base, "p"))
}

// walkStorage reads directories concurrently; what it records is what a
// walk in order records.
func TestWalkStorageMatchesAnOrderedWalk(t *testing.T) {
	ctx := context.Background()
	root := treeStorage(t, 300, 10)
	for i := range 40 {
		p := filepath.Join(root, "deep", fmt.Sprintf("a%d", i%4), fmt.Sprintf("b%d", i%7), fmt.Sprintf("c%d", i))
		if err := os.MkdirAll(p, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(p, "f.csv"), []byte(strconv.Itoa(i)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want := map[string]entry{}
	var wantTree StorageTree
	err := walkTree(ctx, root, func(_, rel string, info fs.FileInfo) error {
		e := entry{mode: info.Mode()}
		if !info.IsDir() {
			e.size, e.mtime = info.Size(), info.ModTime().UnixNano()
		}
		if info.Mode().IsRegular() {
			wantTree.Files++
			wantTree.Bytes += info.Size()
		}
		want[rel] = e
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	wantTree.Digest = digest(want)
	for range 5 {
		got, tree, err := walkStorage(ctx, root)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, want) || tree != wantTree {
			t.Fatalf("walkStorage: %d entries, %+v; the ordered walk: %d, %+v", len(got), tree, len(want), wantTree)
		}
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if _, _, err := walkStorage(cancelled, root); !errors.Is(err, context.Canceled) {
		t.Errorf("a cancelled walk: %v", err)
	}
	if _, _, err := walkStorage(ctx, filepath.Join(root, "missing")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a missing root: %v", err)
	}
}

// Not a test: CKANOPS_MEASURE=1 go test -run TestMeasureWalk -v (as root,
// to drop the page cache) times the walk of CKANOPS_MEASURE_FILES files
// on a cold cache, one directory at a time and walkStorage's way.
func TestMeasureWalk(t *testing.T) {
	if os.Getenv("CKANOPS_MEASURE") == "" {
		t.Skip("set CKANOPS_MEASURE=1 to measure")
	}
	files := 20000
	if n, err := strconv.Atoi(os.Getenv("CKANOPS_MEASURE_FILES")); err == nil && n >= 100 {
		files = n
	}
	root := t.TempDir()
	for i := range files {
		p := filepath.Join(root, "resources", fmt.Sprintf("%03x", i%997), fmt.Sprintf("%03x", i%13), fmt.Sprintf("f-%d", i))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cold := func() {
		syscall.Sync()
		if err := os.WriteFile("/proc/sys/vm/drop_caches", []byte("3"), 0); err != nil {
			t.Skipf("cannot drop the page cache: %v", err)
		}
	}
	ctx := context.Background()
	for round := range 3 {
		cold()
		start := time.Now()
		n := 0
		if err := walkTree(ctx, root, func(_, _ string, _ fs.FileInfo) error { n++; return nil }); err != nil {
			t.Fatal(err)
		}
		ordered := time.Since(start)
		cold()
		start = time.Now()
		entries, _, err := walkStorage(ctx, root)
		if err != nil {
			t.Fatal(err)
		}
		concurrent := time.Since(start)
		t.Logf("round %d: %d entries: in order %v, %d at once %v (%.2fx)", round+1, n, ordered, walkWorkers, concurrent, concurrent.Seconds()/ordered.Seconds())
		if len(entries) != n {
			t.Fatalf("%d entries, want %d", len(entries), n)
		}
	}
}

// A storage whose tree would take the manifest past what Load reads is
// kept as a tar instead, and the output says so: the snapshot verifies
// and restores. The estimate stays above what a tree's entry takes.
func TestTooBigATreeIsATar(t *testing.T) {
	ctx := context.Background()
	src := treeStorage(t, 50, 10)
	out := &lines{}
	m, err := Take(ctx, incrementalSpec(t, out, src))
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(m.Dir, ManifestName))
	if err != nil {
		t.Fatal(err)
	}
	entries := len(m.Storages[0].Tree.Entries)
	// What the entries take: the manifest as written, less the same
	// without them.
	bare := *m
	bare.Storages = slices.Clone(m.Storages)
	tree := *m.Storages[0].Tree
	tree.Entries = nil
	bare.Storages[0].Tree = &tree
	sb, err := json.MarshalIndent(&bare, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	perEntry := (len(b) - len(sb) - 1) / entries
	if est := treeManifestBytes(beforeOf(t, src)) / int64(entries); perEntry < 100 || est < int64(perEntry) {
		t.Errorf("the estimate (%d bytes an entry) is below what an entry takes (%d)", est, perEntry)
	}
	t.Logf("a tree's entry takes about %d bytes of the manifest (%d entries)", perEntry, entries)

	defer func(b int64) { treeManifestBudget = b }(treeManifestBudget)
	treeManifestBudget = 10 * 500
	out = &lines{}
	s := incrementalSpec(t, out, src)
	m, err = Take(ctx, s)
	if err != nil {
		t.Fatal(err)
	}
	st := m.Storages[0]
	if st.Tree != nil || st.File != "storage.tar" || m.Verdict != Consistent {
		t.Fatalf("storage %+v, verdict %s", st, m.Verdict)
	}
	if !containsLine(out.all(), "storage: ") || !strings.Contains(strings.Join(out.all(), "\n"), "are more than a snapshot's manifest can list: archived as a tar, not a tree") {
		t.Errorf("the output does not say so:\n%s", strings.Join(out.all(), "\n"))
	}
	if r, err := Verify(ctx, m.Dir, ""); err != nil || !r.OK {
		t.Fatalf("verify: %+v %v", r, err)
	}

	// Should the estimate fall short, a manifest Load would refuse is not
	// written: the snapshot fails with the way out, and nothing is kept.
	treeManifestBudget = 1 << 40
	defer func(n int64) { maxManifestSize = n }(maxManifestSize)
	maxManifestSize = int64(len(b)) / 2
	dir := t.TempDir()
	s = incrementalSpec(t, &lines{}, src)
	s.Dir = dir
	_, err = Take(ctx, s)
	if err == nil || !strings.Contains(err.Error(), "more than the ") ||
		!strings.Contains(err.Error(), "set [snapshot] incremental = false to keep storages as tars") ||
		!strings.HasSuffix(err.Error(), "the snapshot was not kept") {
		t.Fatalf("a manifest past the bound: %v", err)
	}
	if left, _ := os.ReadDir(dir); len(left) != 0 {
		t.Errorf("left behind: %v", left)
	}
}

// beforeOf is what a walk of root records.
func beforeOf(t *testing.T, root string) map[string]entry {
	t.Helper()
	e, _, err := walkStorage(context.Background(), root)
	if err != nil {
		t.Fatal(err)
	}
	return e
}
