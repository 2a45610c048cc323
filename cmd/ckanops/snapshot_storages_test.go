package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ckanops/ckanops/runbook/snapshot"
)

// The CLI restores several storages: each by NAME=PATH, or all of them;
// a bare PATH is refused when the snapshot holds several.
func TestSnapshotRestoreSeveralStorages(t *testing.T) {
	dir := storagesSnapshot(t, snapshot.Consistent, nil, "default", "public")
	base := t.TempDir()
	a, b := filepath.Join(base, "a"), filepath.Join(base, "b")

	// verify names every tar and storage.
	code, out, errOut := runCLI(t, "snapshot", "verify", dir)
	for _, w := range []string{"ok    storage.tar", "ok    storage-public.tar", "storage public: /srv/ckan/public (storage-public.tar)"} {
		if code != 0 || !strings.Contains(out, w) {
			t.Errorf("verify: exit %d, lacks %q: %s %s", code, w, out, errOut)
		}
	}

	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--storage", a}, exitFail, "one storage target was given, but the snapshot holds 2 storages (default, public): name each target with NAME=PATH"},
		{[]string{"--storage", "bucket=" + a}, exitFail, "the snapshot holds no storage bucket (it holds default, public)"},
		{[]string{"--storage", "default=" + a, "--storage", "public=" + a}, exitFail, "overlap: give each storage its own directory"},
		{[]string{"--storage", "public="}, exitUsage, "--storage public=: give the directory to restore the storage public into"},
		{[]string{"--storage", "public=" + a, "--storage", "public=" + b}, exitUsage, "the storage public is given twice"},
		{[]string{"--storage", a, "--storage", b}, exitUsage, "a second bare PATH"},
	} {
		code, out, errOut := runCLI(t, append([]string{"snapshot", "restore", dir}, tc.args...)...)
		if code != tc.code || !strings.Contains(errOut, tc.want) {
			t.Errorf("%v: exit %d (want %d), stdout %q, stderr %q", tc.args, code, tc.code, out, errOut)
		}
	}
	if _, err := os.Lstat(a); err == nil {
		t.Fatal("a refused restore wrote a target")
	}

	// Both, by name.
	code, out, errOut = runCLI(t, "snapshot", "restore", dir, "--storage", "default="+a, "--storage", "public="+b, "--json")
	var res struct {
		OK       bool `json:"ok"`
		Storages []struct {
			Name  string `json:"name"`
			Path  string `json:"path"`
			Done  bool   `json:"done"`
			Files int64  `json:"files"`
		} `json:"storages"`
		Storage *struct{} `json:"storage"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("--json: %v:\n%s", err, out)
	}
	if code != 0 || !res.OK || len(res.Storages) != 2 || res.Storage != nil ||
		res.Storages[0].Name != "default" || res.Storages[0].Path != a || !res.Storages[0].Done ||
		res.Storages[1].Name != "public" || res.Storages[1].Path != b || !res.Storages[1].Done || res.Storages[1].Files != 2 {
		t.Errorf("exit %d: %+v; stderr %s", code, res, errOut)
	}
	for p, want := range map[string]string{filepath.Join(a, "d", "b.txt"): "beta", filepath.Join(b, "d", "b.txt"): "beta-public"} {
		if got, err := os.ReadFile(p); err != nil || string(got) != want {
			t.Errorf("%s: %q, %v", p, got, err)
		}
	}

	// All of them: public where given, default where... given too, over
	// what is there now (--clean); the summary names each.
	code, out, errOut = runCLI(t, "snapshot", "restore", dir, "--all-storages", "--storage", "default="+a, "--storage", "public="+b, "--clean")
	for _, w := range []string{"storage      " + a + ": 2 files", "storage public " + b + ": 2 files", "storage public: done"} {
		if code != 0 || !strings.Contains(out, w) {
			t.Errorf("--all-storages: exit %d, lacks %q:\n%s\n%s", code, w, out, errOut)
		}
	}
}

// A partial snapshot: refused without --force, naming what it lacks.
func TestSnapshotRestorePartial(t *testing.T) {
	dir := storagesSnapshot(t, snapshot.Partial, []snapshot.StorageNotIncluded{{Name: "bucket", Type: "ckanext-s3:s3", Reason: "the gate cannot archive it"}}, "default")
	target := filepath.Join(t.TempDir(), "storage")
	code, out, errOut := runCLI(t, "snapshot", "restore", dir, "--storage", target)
	if code != exitFail || !strings.Contains(errOut, "is partial (storage bucket (type ckanext-s3:s3) not included: the gate cannot archive it)") || !strings.Contains(errOut, "--force") {
		t.Errorf("partial: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	code, out, errOut = runCLI(t, "snapshot", "restore", dir, "--storage", target, "--force")
	for _, w := range []string{"warning: restoring a partial snapshot (forced", "(site data-city, partial, forced)", "storage bucket not in the snapshot, not restored: the gate cannot archive it"} {
		if code != 0 || !strings.Contains(out, w) {
			t.Errorf("--force: exit %d, lacks %q:\n%s\n%s", code, w, out, errOut)
		}
	}
	code, out, _ = runCLI(t, "snapshot", "verify", dir)
	if code != 0 || !strings.Contains(out, "verdict: partial") || !strings.Contains(out, "storage bucket: NOT INCLUDED: the gate cannot archive it") {
		t.Errorf("verify: exit %d:\n%s", code, out)
	}
}
