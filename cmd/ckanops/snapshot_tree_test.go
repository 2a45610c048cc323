package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ckanops/ckanops/config"
	"github.com/ckanops/ckanops/runbook/snapshot"
)

// verify names a storage kept as a tree and what it reused; restore
// copies it out, after the snapshot it reused is gone.
func TestSnapshotVerifyRestoreTree(t *testing.T) {
	ctx := context.Background()
	src := t.TempDir()
	for name, body := range map[string]string{"a/one.csv": "1", "a/two.csv": "22", "b/three.csv": "333"} {
		p := filepath.Join(src, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	now := time.Date(2024, 3, 1, 11, 2, 3, 0, time.UTC)
	spec := snapshot.Spec{Site: "site", Dir: t.TempDir(), Incremental: true, StatsSettle: time.Millisecond,
		Storages: []config.Storage{{Name: "default", Path: src}},
		Clock:    func() time.Time { now = now.Add(time.Second); return now }}
	m1, err := snapshot.Take(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "b/three.csv"), []byte("3333"), 0o644); err != nil {
		t.Fatal(err)
	}
	m2, err := snapshot.Take(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(m1.Dir); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := runCLI(t, "snapshot", "verify", m2.Dir)
	want := "storage default: " + src + " (storage/, 1 files copied, 2 hard-linked to " + filepath.Base(m1.Dir) + "'s copies when taken)"
	for _, w := range []string{want, "ok    storage\n"} {
		if code != 0 || !strings.Contains(out, w) {
			t.Errorf("verify: exit %d, lacks %q: %s %s", code, w, out, errOut)
		}
	}
	target := filepath.Join(t.TempDir(), "restored")
	code, out, errOut = runCLI(t, "snapshot", "restore", m2.Dir, "--storage", target)
	if code != 0 {
		t.Fatalf("restore: exit %d: %s %s", code, out, errOut)
	}
	for name, body := range map[string]string{"a/one.csv": "1", "a/two.csv": "22", "b/three.csv": "3333"} {
		if b, err := os.ReadFile(filepath.Join(target, name)); err != nil || string(b) != body {
			t.Errorf("%s: %q, %v", name, b, err)
		}
	}
}
