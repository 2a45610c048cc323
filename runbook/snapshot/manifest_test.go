package snapshot

import (
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"
)

// fakeManifest is a valid manifest of site started at started.
func fakeManifest(site string, started time.Time) *Manifest {
	return &Manifest{
		Format:        FormatVersion,
		Site:          site,
		Times:         Times{Started: started, Ended: started.Add(time.Minute)},
		Files:         []File{{Name: "ckan_db.dump", Kind: KindPGDump, Source: SourceCKANDB, Size: 3, SHA256: strings.Repeat("ab", 32)}},
		Databases:     []Database{},
		Storages:      []Storage{},
		NotConfigured: []string{SourceDatastoreDB, SourceStorage},
		Verdict:       Consistent,

		StoragesNotIncluded: []StorageNotIncluded{},
		Changed:             []string{},
		Bookkeeping:         []string{},
	}
}

// fakeSnapshot writes a complete-looking snapshot directory in parent.
func fakeSnapshot(t *testing.T, parent, site string, started time.Time) string {
	t.Helper()
	dir := filepath.Join(parent, site+"-"+started.Format(TimeLayout))
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := writeManifest(dir, fakeManifest(site, started)); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestLoadRoundTrip(t *testing.T) {
	dir := t.TempDir()
	started := time.Date(2006, 11, 29, 15, 13, 58, 0, time.UTC)
	m := fakeManifest("data-city", started)
	m.Times.Enabled = started.Add(-time.Hour)
	m.Databases = []Database{{
		Name: SourceCKANDB, Database: "ckan",
		Before:       map[string]Counters{"public.package": {Inserts: 1}},
		After:        map[string]Counters{"public.package": {Inserts: 1}},
		Relfilenodes: &Relfilenodes{Before: map[string]uint32{"public.package": 16384}, After: map[string]uint32{"public.package": 16384}},
		Schema:       &SchemaDigest{Before: strings.Repeat("cd", 32), After: strings.Repeat("cd", 32)},
	}}
	if err := writeManifest(dir, m); err != nil {
		t.Fatal(err)
	}
	got, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	m.Dir = dir
	if !reflect.DeepEqual(got, m) {
		t.Errorf("loaded\n%+v\nwrote\n%+v", got, m)
	}
	b, _ := os.ReadFile(filepath.Join(dir, ManifestName))
	for _, want := range []string{`"format": 2`, `"storages": []`, `"storages_not_included": []`, `"enabled": "2006-11-29T14:13:58Z"`, `"n_tup_ins": 1`, `"not_configured": [`, `"relfilenodes": {`, `"public.package": 16384`, `"schema": {`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("manifest lacks %s:\n%s", want, b)
		}
	}
	if strings.Contains(string(b), `"quiesced"`) {
		t.Errorf("an unknown time is written:\n%s", b)
	}
}

func TestLoadIsStrict(t *testing.T) {
	good := `{"format":1,"site":"s","ckan_version":"","mode_version":0,"times":{"started":"2024-01-01T00:00:00Z","ended":"2024-01-01T00:01:00Z"},` +
		`"files":[{"name":"ckan_db.dump","kind":"pg_dump","source":"ckan_db","size":1,"sha256":"` + strings.Repeat("0", 64) + `"}],` +
		`"databases":[],"not_configured":[],"verdict":"consistent","changed":[],"bookkeeping":[]}`
	// A manifest written before relfilenodes and the schema digest were.
	old := strings.Replace(good, `"databases":[]`, `"databases":[{"name":"ckan_db","database":"ckan","before":{"public.package":{"n_tup_ins":1,"n_tup_upd":0,"n_tup_del":0}},"after":{"public.package":{"n_tup_ins":1,"n_tup_upd":0,"n_tup_del":0}}}]`, 1)
	withShape := strings.Replace(old, `}}}]`, `}},"relfilenodes":{"before":{"public.package":16384},"after":{"public.package":16384}},"schema":{"before":"`+strings.Repeat("a", 64)+`","after":"`+strings.Repeat("b", 64)+`"}}]`, 1)
	for _, tc := range []struct{ name, text, want string }{
		{"good", good, ""},
		{"without relfilenodes and schema", old, ""},
		{"with relfilenodes and schema", withShape, ""},
		{"bad schema digest", strings.Replace(withShape, strings.Repeat("b", 64), "bb", 1), "schema digest"},
		{"unknown field", strings.Replace(good, `"site":"s"`, `"site":"s","extra":1`, 1), "unknown field"},
		{"trailing data", good + `{}`, "trailing data"},
		{"format 6", strings.Replace(good, `"format":1`, `"format":6`, 1), "format 6"},
		{"bad verdict", strings.Replace(good, `"consistent"`, `"fine"`, 1), "verdict"},
		{"escaping file name", strings.Replace(good, `"ckan_db.dump"`, `"../etc/passwd"`, 1), "not a file of the snapshot"},
		{"bad sha256", strings.Replace(good, strings.Repeat("0", 64), "00", 1), "sha256"},
		{"bad kind", strings.Replace(good, `"pg_dump"`, `"zip"`, 1), "kind"},
		{"not JSON", "manifest", "invalid character"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, ManifestName), []byte(tc.text), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := Load(dir)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("Load: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("Load error %v, want one with %q", err, tc.want)
			}
		})
	}
	if _, err := Load(t.TempDir()); err == nil || !strings.Contains(err.Error(), "no manifest.json") {
		t.Errorf("Load of an empty dir: %v", err)
	}
}

func TestListAndPrune(t *testing.T) {
	parent := t.TempDir()
	t0 := time.Date(2024, 3, 1, 12, 0, 0, 0, time.UTC)
	var city []string // newest last
	for i := range 4 {
		city = append(city, fakeSnapshot(t, parent, "data-city", t0.Add(time.Duration(i)*time.Hour)))
	}
	other := fakeSnapshot(t, parent, "data", t0.Add(-time.Hour)) // "data" prefixes "data-city"
	// Not complete: no manifest, a dot name, a broken manifest.
	for _, d := range []string{"data-city-20240301T170000Z", ".hidden-20240301T170000Z"} {
		if err := os.Mkdir(filepath.Join(parent, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(parent, "data-city-20240301T170000Z", "ckan_db.dump"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	broken := filepath.Join(parent, "data-city-20240301T180000Z")
	os.Mkdir(broken, 0o700)
	os.WriteFile(filepath.Join(broken, ManifestName), []byte("{"), 0o600)

	entries, err := List(parent)
	if err != nil {
		t.Fatal(err)
	}
	var dirs []string
	for _, e := range entries {
		dirs = append(dirs, e.Dir)
	}
	want := []string{city[3], city[2], city[1], city[0], other}
	if !reflect.DeepEqual(dirs, want) {
		t.Fatalf("List:\n got %q\nwant %q", dirs, want)
	}

	// Temporary directories: a stale one, a fresh one, one a Take holds
	// locked, another site's.
	old := time.Now().Add(-time.Hour)
	mkTemp := func(name string, mtime time.Time) string {
		d := filepath.Join(parent, name)
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(d, "ckan_db.dump"), []byte("partial"), 0o600)
		if err := os.Chtimes(d, mtime, mtime); err != nil {
			t.Fatal(err)
		}
		return d
	}
	stale := mkTemp(".tmp-data-city-20240301T190000Z", old)
	stale2 := mkTemp(".tmp-data-city-20240301T190000Z-2", old)
	fresh := mkTemp(".tmp-data-city-20240301T200000Z", time.Now())
	locked := mkTemp(".tmp-data-city-20240301T210000Z", old)
	otherTemp := mkTemp(".tmp-data-20240301T190000Z", old)
	lf, err := os.Open(locked)
	if err != nil {
		t.Fatal(err)
	}
	defer lf.Close()
	if err := syscall.Flock(int(lf.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		t.Fatal(err)
	}

	if _, err := Prune(parent, "data-city", 0); err == nil {
		t.Error("Prune keep=0 accepted")
	}
	removed, err := Prune(parent, "data-city", 2)
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(removed)
	wantRemoved := []string{stale, stale2, city[0], city[1]}
	sort.Strings(wantRemoved)
	if !reflect.DeepEqual(removed, wantRemoved) {
		t.Errorf("Prune removed:\n got %q\nwant %q", removed, wantRemoved)
	}
	for _, d := range []string{city[2], city[3], other, fresh, locked, otherTemp, broken} {
		if _, err := os.Stat(d); err != nil {
			t.Errorf("%s was removed: %v", d, err)
		}
	}
	for _, d := range wantRemoved {
		if _, err := os.Stat(d); !os.IsNotExist(err) {
			t.Errorf("%s still there: %v", d, err)
		}
	}

	if entries, err := List(filepath.Join(parent, "missing")); err != nil || len(entries) != 0 {
		t.Errorf("List of a missing dir: %v, %v", entries, err)
	}
}

func TestIsTempOf(t *testing.T) {
	for name, want := range map[string]bool{
		".tmp-data-20240301T190000Z":        true,
		".tmp-data-20240301T190000Z-3":      true,
		".tmp-data-city-20240301T190000Z":   false,
		".tmp-data-20240301T190000Z-x":      false,
		".tmp-data-20240301T190000Z-1":      false,
		"data-20240301T190000Z":             false,
		".tmp-data-2024030":                 false,
		".tmp-data-20240301T190000Z-3-2024": false,
	} {
		if got := isTempOf(name, "data"); got != want {
			t.Errorf("isTempOf(%q, data) = %v, want %v", name, got, want)
		}
	}
}
