package config

import (
	"path/filepath"
	"reflect"
	"testing"
)

// CKAN 2.12's file storages: [checks] storage_path as an array of paths,
// [[storage]] tables with a path or a type the gate cannot archive, and
// [snapshot] exclude_storages.
func TestLoadGateStorages(t *testing.T) {
	g, warns, err := LoadGate("testdata/gate_storages.toml")
	if err != nil {
		t.Fatal(err)
	}
	if len(warns) != 0 {
		t.Errorf("warnings: %v", warns)
	}
	dir, err := filepath.Abs("testdata")
	if err != nil {
		t.Fatal(err)
	}
	want := []Storage{
		{Name: "resources", Path: filepath.Join(dir, "storage", "resources")}, // relative to the file
		{Name: "uploads", Path: "/var/lib/ckan/uploads"},
		{Name: "public", Path: filepath.Join(dir, "public"), Type: "ckan:fs:public"},
		{Name: "bucket", Type: "ckanext-s3:s3"},
	}
	if !reflect.DeepEqual(g.Checks.Storages, want) {
		t.Errorf("checks storages:\ngot  %+v\nwant %+v", g.Checks.Storages, want)
	}
	// The first local storage stands for the others where one path is
	// wanted (the probe, the preflight).
	if g.Checks.StoragePath != want[0].Path || g.Snapshot.StoragePath != want[0].Path {
		t.Errorf("storage_path: checks %q, snapshot %q", g.Checks.StoragePath, g.Snapshot.StoragePath)
	}
	// Without [snapshot] storage_path, the snapshot covers every storage.
	if !reflect.DeepEqual(g.Snapshot.Storages, want) || !reflect.DeepEqual(g.Snapshot.ExcludeStorages, []string{"bucket"}) {
		t.Errorf("snapshot: %+v", g.Snapshot)
	}
	for _, s := range want {
		if s.Local() != (s.Name != "bucket") {
			t.Errorf("%s: Local() = %v", s.Name, s.Local())
		}
	}
}

// [checks] storage_path as one path is the storage "default", as before.
func TestLoadGateOneStoragePath(t *testing.T) {
	g, _, err := LoadGate("testdata/gate_minimal.toml")
	if err != nil {
		t.Fatal(err)
	}
	want := []Storage{{Name: StorageNameDefault, Path: "/var/lib/ckan"}}
	if !reflect.DeepEqual(g.Checks.Storages, want) || !reflect.DeepEqual(g.Snapshot.Storages, want) || g.Snapshot.ExcludeStorages != nil {
		t.Errorf("checks %+v, snapshot %+v", g.Checks.Storages, g.Snapshot)
	}
}

func TestSnapshotStorages(t *testing.T) {
	local := Storage{Name: "resources", Path: "/srv/resources", Type: "ckan:fs"}
	other := Storage{Name: "uploads", Path: "/srv/uploads"}
	cloud := Storage{Name: "bucket", Type: "ckan:s3"}
	all := []Storage{local, other, cloud}
	for _, c := range []struct {
		name     string
		path     string
		override bool
		want     []Storage
	}{
		{"every storage", "/srv/resources", false, all},
		{"override: a path of its own, as default", "/srv/ckan", true, []Storage{{Name: "default", Path: "/srv/ckan"}, cloud}},
		{"override: a storage's path keeps its name", "/srv/uploads", true, []Storage{other, cloud}},
	} {
		if got := snapshotStorages(all, c.path, c.override); !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s:\ngot  %+v\nwant %+v", c.name, got, c.want)
		}
	}
	// A Gate built by hand: the one path, as default.
	if got := snapshotStorages(nil, "/srv/ckan", false); !reflect.DeepEqual(got, []Storage{{Name: "default", Path: "/srv/ckan"}}) {
		t.Errorf("no storages: %+v", got)
	}
}

func init() {
	gateErrorCases = append(gateErrorCases, []struct {
		file string
		want []string
	}{
		{"gate_storages_bad.toml", []string{
			`testdata/gate_storages_bad.toml:9: checks.storage_path: entry 2: "/srv/b/files": another path also ends in "files", which names the storage: give them [[storage]] tables with names`,
			`testdata/gate_storages_bad.toml:9: checks.storage_path: entry 3: "/srv/a/files" is listed twice`,
			`testdata/gate_storages_bad.toml:9: checks.storage_path: entry 4: expected a string, found an integer`,
			`testdata/gate_storages_bad.toml:12: storage.name: duplicate storage name "files"; names must be unique`,
			`testdata/gate_storages_bad.toml:17: storage.type: "ckanext-s3:s3" is not a local type (ckan:fs, ckan:fs:public) but the storage has a path: a storage of another type has no path, and the gate cannot archive it`,
			`testdata/gate_storages_bad.toml:24: storage.path: required for a storage of type "ckan:fs" (CKAN's ckan.files.storage.<name>.path)`,
			`testdata/gate_storages_bad.toml:28: storage.path: a storage needs a path (a local directory) or a type (such as "ckan:s3", which the gate cannot archive)`,
			`testdata/gate_storages_bad.toml:32: storage.name: "bad name" is not a storage name: ...`,
			`testdata/gate_storages_bad.toml:35: storage.name: required key is missing`,
			`testdata/gate_storages_bad.toml:40: storage.path: /srv/a/files is the directory of another storage too; list it once`,
			`testdata/gate_storages_bad.toml:43: snapshot.exclude_storages: entry 2: "nope" names no storage ([checks] storage_path or [[storage]]): the storages are files, ...`,
			`testdata/gate_storages_bad.toml:43: snapshot.exclude_storages: entry 3: "cloud" is listed twice`,
		}},
		{"gate_storages_override.toml", []string{
			`testdata/gate_storages_override.toml:18: snapshot.storage_path: is archived as storage "default", which is also the name of the storage of type "ckanext-s3:s3": name that storage otherwise in [[storage]]`,
		}},
		{"gate_storages_wrong_type.toml", []string{
			`testdata/gate_storages_wrong_type.toml:9: checks.storage_path: expected a path or an array of paths, found an integer`,
			`testdata/gate_storages_wrong_type.toml:11: storage: expected an array of tables ([[storage]]), found a table`,
			`testdata/gate_storages_wrong_type.toml:15: snapshot.dir: is inside the storage path that is archived (/srv/ckan); the snapshot would contain itself`,
		}},
	}...)
}
