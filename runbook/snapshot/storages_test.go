package snapshot

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/ckanops/ckanops/config"
)

// smallStorage is a storage directory holding the files given (name ->
// content), all with mtime.
func smallStorage(t *testing.T, files map[string]string) string {
	t.Helper()
	root := t.TempDir()
	for name, body := range files {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, mtime, mtime); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

// storagesSpec is a storage-only Spec of the storages given.
func storagesSpec(t *testing.T, out *lines, storages ...config.Storage) Spec {
	return Spec{
		Site: "data-city", Dir: t.TempDir(), Storages: storages, StatsSettle: time.Millisecond,
		Clock:  func() time.Time { return time.Date(2024, 3, 1, 11, 2, 3, 0, time.UTC) },
		Output: out.add,
	}
}

// Several local storages: one tar each (storage.tar for "default"), each
// with its digests, all verified, each restored where it is asked to go.
func TestTakeSeveralStorages(t *testing.T) {
	ctx := context.Background()
	def := smallStorage(t, map[string]string{"resources/abc/def": "a,b\n1,2\n"})
	pub := smallStorage(t, map[string]string{"uploads/group/logo.png": "png", "uploads/user/me.jpg": "jpeg"})
	out := &lines{}
	s := storagesSpec(t, out,
		config.Storage{Name: "default", Path: def},
		config.Storage{Name: "public", Path: pub, Type: "ckan:fs:public"})
	m, err := Take(ctx, s)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("output:\n%s", strings.Join(out.all(), "\n"))
	if m.Verdict != Consistent || len(m.StoragesNotIncluded) != 0 || len(m.Changed) != 0 {
		t.Fatalf("verdict %s, not included %+v, changed %q", m.Verdict, m.StoragesNotIncluded, m.Changed)
	}
	var names []string
	for _, f := range m.Files {
		names = append(names, f.Name+":"+f.Source)
	}
	if want := []string{"storage.tar:storage", "storage-public.tar:storage"}; !reflect.DeepEqual(names, want) {
		t.Errorf("files %q, want %q", names, want)
	}
	if len(m.Storages) != 2 {
		t.Fatalf("storages %+v", m.Storages)
	}
	for i, want := range []struct {
		name, path, typ, file string
		files                 int64
	}{{"default", def, "", "storage.tar", 1}, {"public", pub, "ckan:fs:public", "storage-public.tar", 2}} {
		st := m.Storages[i]
		if st.Name != want.name || st.Path != want.path || st.Type != want.typ || st.File != want.file ||
			st.Before != st.After || st.Before.Files != want.files || len(st.Before.Digest) != 64 {
			t.Errorf("storage %d: %+v", i, st)
		}
	}
	if m.Storages[0].Before.Digest == m.Storages[1].Before.Digest {
		t.Error("two different storages have one digest")
	}
	loaded, err := Load(m.Dir)
	if err != nil || !reflect.DeepEqual(loaded, m) {
		t.Errorf("loaded %+v, %v", loaded, err)
	}
	b, _ := os.ReadFile(filepath.Join(m.Dir, ManifestName))
	for _, w := range []string{`"storages": [`, `"name": "public"`, `"file": "storage-public.tar"`, `"storages_not_included": []`} {
		if !strings.Contains(string(b), w) {
			t.Errorf("manifest lacks %s:\n%s", w, b)
		}
	}
	if strings.Contains(string(b), `"storage": {`) {
		t.Errorf("format 2 writes format 1's storage:\n%s", b)
	}

	// verify checks every tar; a damaged one is named.
	r, err := Verify(ctx, m.Dir, "")
	if err != nil || !r.OK || len(r.Files) != 2 {
		t.Fatalf("verify: %+v, %v", r, err)
	}
	cut(t, filepath.Join(m.Dir, "storage-public.tar"), 0.5)
	r, err = Verify(ctx, m.Dir, "")
	if err != nil || r.OK || !r.Files[0].OK || r.Files[1].OK || !strings.Contains(r.Files[1].Problem, "not a readable tar") {
		t.Errorf("verify of a cut storage-public.tar: %+v, %v", r.Files, err)
	}
}

// A change in a named storage is named with its storage.
func TestTakeNamedStorageChanged(t *testing.T) {
	def := smallStorage(t, map[string]string{"a.txt": "a"})
	pub := smallStorage(t, map[string]string{"b.txt": "b"})
	s := storagesSpec(t, &lines{}, config.Storage{Name: "default", Path: def}, config.Storage{Name: "public", Path: pub})
	s.afterBefore = func() {
		if err := os.WriteFile(filepath.Join(pub, "new.txt"), []byte("new"), 0o644); err != nil {
			t.Error(err)
		}
	}
	m, err := Take(context.Background(), s)
	if err != nil {
		t.Fatal(err)
	}
	if m.Verdict != Inconsistent || !reflect.DeepEqual(m.Changed, []string{"storage public: file new.txt added"}) {
		t.Errorf("verdict %s, changed %q", m.Verdict, m.Changed)
	}
}

// A storage the gate cannot archive makes the snapshot partial, never
// consistent; excluded, it is listed and the snapshot is consistent.
func TestTakePartialAndExcluded(t *testing.T) {
	ctx := context.Background()
	def := smallStorage(t, map[string]string{"a.txt": "a"})
	cloud := config.Storage{Name: "bucket", Type: "ckanext-s3:s3"}

	out := &lines{}
	m, err := Take(ctx, storagesSpec(t, out, config.Storage{Name: "default", Path: def}, cloud))
	if err != nil {
		t.Fatal(err)
	}
	if m.Verdict != Partial || len(m.Changed) != 0 || len(m.Storages) != 1 || len(m.Files) != 1 {
		t.Fatalf("verdict %s, changed %q, storages %+v", m.Verdict, m.Changed, m.Storages)
	}
	want := []StorageNotIncluded{{Name: "bucket", Type: "ckanext-s3:s3", Reason: "the gate cannot archive a storage that is not a local directory: back it up otherwise, then list it in [snapshot] exclude_storages"}}
	if !reflect.DeepEqual(m.StoragesNotIncluded, want) || !reflect.DeepEqual(m.Missing(), want) {
		t.Errorf("not included %+v", m.StoragesNotIncluded)
	}
	if p := m.Problems(); len(p) != 1 || !strings.HasPrefix(p[0], "storage bucket (type ckanext-s3:s3) not included: ") || !strings.Contains(p[0], "exclude_storages") {
		t.Errorf("problems %q", p)
	}
	if all := strings.Join(out.all(), "\n"); !strings.Contains(all, "verdict: partial: storage bucket (type ckanext-s3:s3) not included") {
		t.Errorf("output:\n%s", all)
	}
	if _, err := Load(m.Dir); err != nil {
		t.Errorf("a partial snapshot does not load: %v", err)
	}

	// Excluded: listed, and consistent.
	s := storagesSpec(t, &lines{}, config.Storage{Name: "default", Path: def}, cloud)
	s.ExcludeStorages = []string{"bucket"}
	m, err = Take(ctx, s)
	if err != nil {
		t.Fatal(err)
	}
	if m.Verdict != Consistent || len(m.Missing()) != 0 || len(m.StoragesNotIncluded) != 1 || !m.StoragesNotIncluded[0].Excluded ||
		m.StoragesNotIncluded[0].Reason != "excluded by [snapshot] exclude_storages" {
		t.Errorf("excluded: verdict %s, not included %+v", m.Verdict, m.StoragesNotIncluded)
	}

	// A local storage excluded is not archived, and keeps its path.
	pub := smallStorage(t, map[string]string{"b.txt": "b"})
	s = storagesSpec(t, &lines{}, config.Storage{Name: "default", Path: def}, config.Storage{Name: "public", Path: pub})
	s.ExcludeStorages = []string{"public"}
	if m, err = Take(ctx, s); err != nil {
		t.Fatal(err)
	}
	if m.Verdict != Consistent || len(m.Files) != 1 || len(m.StoragesNotIncluded) != 1 || m.StoragesNotIncluded[0].Path != pub {
		t.Errorf("local excluded: verdict %s, files %+v, not included %+v", m.Verdict, m.Files, m.StoragesNotIncluded)
	}

	// Inconsistent wins over partial.
	s = storagesSpec(t, &lines{}, config.Storage{Name: "default", Path: def}, cloud)
	s.afterBefore = func() { os.WriteFile(filepath.Join(def, "new.txt"), []byte("x"), 0o644) }
	if m, err = Take(ctx, s); err != nil {
		t.Fatal(err)
	}
	if m.Verdict != Inconsistent || len(m.Problems()) != 2 {
		t.Errorf("changed and partial: verdict %s, problems %q", m.Verdict, m.Problems())
	}
}

func TestTakeStoragesRefused(t *testing.T) {
	def := smallStorage(t, nil)
	for _, tc := range []struct {
		name string
		edit func(*Spec)
		want string
	}{
		{"only a cloud storage", func(s *Spec) { s.Storages = []config.Storage{{Name: "bucket", Type: "ckan:s3"}} }, "nothing to snapshot"},
		{"all excluded", func(s *Spec) { s.ExcludeStorages = []string{"default"} }, "nothing to snapshot"},
		{"unknown exclude", func(s *Spec) { s.ExcludeStorages = []string{"nope"} }, `exclude_storages names "nope"`},
		{"same directory twice", func(s *Spec) {
			s.Storages = append(s.Storages, config.Storage{Name: "again", Path: def + "/."})
		}, "are the same directory"},
		{"duplicate name", func(s *Spec) { s.Storages = append(s.Storages, s.Storages[0]) }, "given twice"},
		{"bad name", func(s *Spec) { s.Storages[0].Name = "../x" }, "not valid"},
		{"named storage missing", func(s *Spec) {
			s.Storages = append(s.Storages, config.Storage{Name: "public", Path: filepath.Join(def, "nope")})
		}, "storage public (" + filepath.Join(def, "nope") + ") does not exist"},
		{"dir inside a named storage", func(s *Spec) {
			s.Storages = append(s.Storages, config.Storage{Name: "public", Path: filepath.Dir(s.Dir)})
		}, "lies inside storage public"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := storagesSpec(t, &lines{}, config.Storage{Name: "default", Path: def})
			tc.edit(&s)
			m, err := Take(context.Background(), s)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Take: %+v, %v; want an error with %q", m, err, tc.want)
			}
		})
	}
}

// A format 1 manifest (one "storage") loads as the storage "default".
func TestLoadFormatOne(t *testing.T) {
	dir, _ := handSnapshot(t, Consistent)
	m, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if m.Format != 1 || m.Storage != nil || len(m.Storages) != 1 || m.Storages[0].Name != "default" || m.Storages[0].File != "storage.tar" || m.Storages[0].Path != "/srv/ckan/storage" {
		t.Errorf("format 1: %+v", m)
	}
	b, _ := os.ReadFile(filepath.Join(dir, ManifestName))
	for _, tc := range []struct{ name, from, to, want string }{
		{"format 1 with storages", `"storage": {`, `"storages_not_included": [{"name": "x", "excluded": true, "reason": "r"}], "storage": {`, "format 1 has storage, not storages"},
		{"format 2 with storage", `"format": 1`, `"format": 2`, "format 2 has storages, not storage"},
		{"format 1 partial", `"verdict": "consistent"`, `"verdict": "partial"`, `format 1 has no verdict "partial"`},
	} {
		bad := strings.Replace(string(b), tc.from, tc.to, 1)
		if bad == string(b) {
			t.Fatalf("%s: %q is not in the manifest:\n%s", tc.name, tc.from, b)
		}
		d := t.TempDir()
		os.WriteFile(filepath.Join(d, ManifestName), []byte(bad), 0o600)
		if _, err := Load(d); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
}

func TestLoadStoragesStrict(t *testing.T) {
	good := `{"format":2,"site":"s","ckan_version":"","mode_version":0,"times":{"started":"2024-01-01T00:00:00Z","ended":"2024-01-01T00:01:00Z"},` +
		`"files":[{"name":"storage-public.tar","kind":"tar","source":"storage","size":1,"sha256":"` + strings.Repeat("0", 64) + `"}],` +
		`"databases":[],"storages":[{"name":"public","path":"/srv/p","file":"storage-public.tar","before":{"files":0,"bytes":0,"digest":""},"after":{"files":0,"bytes":0,"digest":""}}],` +
		`"storages_not_included":[{"name":"bucket","type":"ckan:s3","excluded":false,"reason":"r"}],` +
		`"not_configured":[],"verdict":"partial","changed":[],"bookkeeping":[]}`
	for _, tc := range []struct{ name, text, want string }{
		{"good", good, ""},
		{"consistent with a storage missing", strings.Replace(good, `"partial"`, `"consistent"`, 1), "not included and not excluded"},
		{"partial with nothing missing", strings.Replace(good, `"excluded":false`, `"excluded":true`, 1), "every storage is included or excluded"},
		{"inconsistent and partial", strings.Replace(good, `"partial"`, `"inconsistent"`, 1), ""},
		{"wrong file", strings.Replace(good, `"file":"storage-public.tar"`, `"file":"storage.tar"`, 1), "is not storage-public.tar"},
		{"name twice", strings.Replace(good, `{"name":"bucket"`, `{"name":"public"`, 1), "listed twice"},
		{"bad name", strings.Replace(strings.ReplaceAll(good, "storage-public.tar", "storage-../x.tar"), `"name":"public"`, `"name":"../x"`, 1), `storage name "../x" is not valid`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			os.WriteFile(filepath.Join(dir, ManifestName), []byte(tc.text), 0o600)
			_, err := Load(dir)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("Load: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("Load error %v, want one with %q", err, tc.want)
			}
		})
	}
}

// Restore puts several storages back: by name, or every one (where the
// manifest recorded it, or where named); a lone path is refused when the
// snapshot holds several.
func TestRestoreSeveralStorages(t *testing.T) {
	ctx := context.Background()
	def := smallStorage(t, map[string]string{"resources/abc/def": "a,b\n"})
	pub := smallStorage(t, map[string]string{"uploads/group/logo.png": "png"})
	m, err := Take(ctx, storagesSpec(t, &lines{},
		config.Storage{Name: "default", Path: def}, config.Storage{Name: "public", Path: pub}))
	if err != nil {
		t.Fatal(err)
	}
	base := t.TempDir()
	a, b := filepath.Join(base, "a"), filepath.Join(base, "b")

	for _, tc := range []struct {
		name string
		spec RestoreSpec
		want string
	}{
		{"one path, several storages", RestoreSpec{StoragePath: a}, "the snapshot holds 2 storages (default, public): name each target with NAME=PATH"},
		{"unknown storage", RestoreSpec{Storages: map[string]string{"bucket": a}}, "the snapshot holds no storage bucket (it holds default, public)"},
		{"two storages into one directory", RestoreSpec{Storages: map[string]string{"default": a, "public": a}}, "overlap: give each storage its own directory"},
		{"in place without --clean", RestoreSpec{AllStorages: true}, "storage target " + def + " is not empty"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.spec.Dir = m.Dir
			rep, err := Restore(ctx, tc.spec)
			wantRefused(t, rep, err, tc.want)
			if _, err := os.Lstat(a); err == nil {
				t.Error("a refused restore wrote a target")
			}
		})
	}

	// By name: only the storage named.
	out := &lines{}
	rep, err := Restore(ctx, RestoreSpec{Dir: m.Dir, Storages: map[string]string{"public": b}, Output: out.add})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Storages) != 1 || rep.Storage != rep.Storages[0] || rep.Storages[0].Name != "public" || !rep.Storages[0].Done || rep.Storages[0].Files != 1 {
		t.Errorf("public alone: %+v", rep.Storages)
	}
	if got, err := os.ReadFile(filepath.Join(b, "uploads/group/logo.png")); err != nil || string(got) != "png" {
		t.Errorf("logo.png: %q, %v", got, err)
	}
	if all := strings.Join(out.all(), "\n"); !strings.Contains(all, "storage public: done, 1 files") {
		t.Errorf("output:\n%s", all)
	}

	// Every storage: default where named, public where recorded (--clean:
	// it holds its files).
	os.WriteFile(filepath.Join(pub, "uploads/group/logo.png"), []byte("changed"), 0o644)
	rep, err = Restore(ctx, RestoreSpec{Dir: m.Dir, AllStorages: true, Storages: map[string]string{"default": a}, Clean: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Storages) != 2 || rep.Storage != nil || rep.Storages[0].Path != a || rep.Storages[1].Path != pub || !rep.Storages[0].Done || !rep.Storages[1].Done {
		t.Errorf("every storage: %+v", rep.Storages)
	}
	if got, err := os.ReadFile(filepath.Join(a, "resources/abc/def")); err != nil || string(got) != "a,b\n" {
		t.Errorf("default: %q, %v", got, err)
	}
	if got, err := os.ReadFile(filepath.Join(pub, "uploads/group/logo.png")); err != nil || string(got) != "png" {
		t.Errorf("public restored in place: %q, %v", got, err)
	}
}

// A partial snapshot is refused without Force, and says what it lacks;
// forced, the storages not included are named in the notes.
func TestRestorePartial(t *testing.T) {
	ctx := context.Background()
	def := smallStorage(t, map[string]string{"a.txt": "a"})
	m, err := Take(ctx, storagesSpec(t, &lines{}, config.Storage{Name: "default", Path: def}, config.Storage{Name: "bucket", Type: "ckan:s3"}))
	if err != nil {
		t.Fatal(err)
	}
	target := filepath.Join(t.TempDir(), "storage")
	rep, err := Restore(ctx, RestoreSpec{Dir: m.Dir, StoragePath: target})
	wantRefused(t, rep, err, "is partial (storage bucket (type ckan:s3) not included", "--force")
	rep, err = Restore(ctx, RestoreSpec{Dir: m.Dir, Storages: map[string]string{"bucket": target}, Force: true})
	wantRefused(t, rep, err, "a target for storage bucket was given, but the snapshot holds no storage bucket (it was not included: ")

	rep, err = Restore(ctx, RestoreSpec{Dir: m.Dir, StoragePath: target, Force: true})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Forced || rep.Verdict != Partial || len(rep.NotIncluded) != 1 || rep.Storage == nil || !rep.Storage.Done {
		t.Errorf("forced partial: %+v", rep)
	}
	found := false
	for _, n := range rep.Notes {
		found = found || strings.HasPrefix(n, "storage bucket: not in the snapshot")
	}
	if !found {
		t.Errorf("notes %q", rep.Notes)
	}
	if errors.Is(err, ErrRefused) {
		t.Error("refused")
	}
}
