package checks

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ckanops/ckanops/api"
	"github.com/ckanops/ckanops/internal/testfs"
)

// freeRatio is the storage probe's free_ratio, as a trigger reads it.
func freeRatio(t *testing.T, res api.CheckResult) float64 {
	t.Helper()
	v, ok := res.DetailValue(api.DetailFreeRatio)
	if !ok {
		t.Fatalf("free_ratio unknown: %s (%+v)", res.Summary, res.Storage)
	}
	return v.(float64)
}

// A trigger's "free_ratio < 0.1" on hand-made storage results: this part
// needs no tmpfs and never skips.
func TestStorageFreeRatioCondition(t *testing.T) {
	low := condition(t, api.ProbeStorage, "free_ratio < 0.1")
	result := func(free, total *uint64) api.CheckResult {
		return api.CheckResult{Name: api.ProbeStorage, Status: api.CheckOK,
			Storage: &api.StorageDetails{Path: "/var/lib/ckan", Exists: new(true), FreeBytes: free, TotalBytes: total}}
	}
	for _, c := range []struct {
		name              string
		free, total       *uint64
		wantHolds, wantOK bool
		wantValue         string
	}{
		{"nearly full", new(uint64(50 << 20)), new(uint64(1 << 30)), true, true, "0.048828125"},
		{"full", new(uint64(0)), new(uint64(1 << 30)), true, true, "0"},
		{"at the limit", new(uint64(100)), new(uint64(1000)), false, true, "0.1"},
		{"plenty", new(uint64(900)), new(uint64(1000)), false, true, "0.9"},
		{"free unknown", nil, new(uint64(1000)), false, false, ""},
		{"total unknown", new(uint64(0)), nil, false, false, ""},
		{"total zero", new(uint64(0)), new(uint64(0)), false, false, ""},
	} {
		holds, known, value := low.Eval(result(c.free, c.total))
		if holds != c.wantHolds || known != c.wantOK || value != c.wantValue {
			t.Errorf("%s: %s: holds %v, known %v, value %q; want %v, %v, %q", c.name, low, holds, known, value, c.wantHolds, c.wantOK, c.wantValue)
		}
	}
	// A failed probe (no details) leaves a trigger blind.
	if holds, known, _ := low.Eval(api.CheckResult{Name: api.ProbeStorage, Status: api.CheckFail}); holds || known {
		t.Errorf("on a failed probe without details: holds %v, known %v", holds, known)
	}
	// free_bytes compares too.
	res := result(new(uint64(50<<20)), new(uint64(1<<30)))
	if holds, known, _ := condition(t, api.ProbeStorage, "free_bytes < 104857600").Eval(res); !holds || !known {
		t.Errorf("free_bytes < 100 MiB on 50 MiB free: holds %v, known %v", holds, known)
	}
}

// The storage probe on a real 8 MiB tmpfs as it fills up: free_bytes and
// free_ratio drop, the probe warns when less than 5% is free, and a
// trigger's "free_ratio < 0.1" holds; emptied, all is free again. Skipped
// where the machine refuses to mount a tmpfs (TestStorageFreeRatioCondition
// covers the comparison there).
func TestStorageTmpfs(t *testing.T) {
	const size = 8 << 20
	dir := testfs.Tmpfs(t, size)
	low := condition(t, api.ProbeStorage, "free_ratio < 0.1")
	probe := NewStorage(dir, 0, 0)

	res := runProbe(t, probe, 5*time.Second)
	if res.Status != api.CheckOK {
		t.Fatalf("empty: %s: %s", res.Status, res.Summary)
	}
	free0, total := known(t, "free_bytes", res.Storage.FreeBytes), known(t, "total_bytes", res.Storage.TotalBytes)
	if total != size || free0 != size || freeRatio(t, res) != 1 {
		t.Fatalf("empty: %d of %d bytes free (ratio %v), want all %d", free0, total, freeRatio(t, res), size)
	}
	evalHolds(t, low, res, false, true)

	// Half full.
	half := filepath.Join(dir, "resources", "half.bin")
	if err := os.MkdirAll(filepath.Dir(half), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(half, bytes.Repeat([]byte{'x'}, size/2), 0o644); err != nil {
		t.Fatal(err)
	}
	res = runProbe(t, probe, 5*time.Second)
	free := known(t, "free_bytes", res.Storage.FreeBytes)
	if res.Status != api.CheckOK || free > free0-size/2 || free < free0-size/2-64<<10 {
		t.Errorf("half full: %s: %d bytes free, want %d less a directory's pages (%s)", res.Status, free, free0-size/2, res.Summary)
	}
	if r := freeRatio(t, res); r > 0.5 || r < 0.49 {
		t.Errorf("half full: free_ratio %v, want just under 0.5", r)
	}
	evalHolds(t, low, res, false, true)

	// Full: written until there is no space left.
	fill, err := os.Create(filepath.Join(dir, "resources", "fill.bin"))
	if err != nil {
		t.Fatal(err)
	}
	chunk := bytes.Repeat([]byte{'y'}, 64<<10)
	for {
		if _, err = fill.Write(chunk); err != nil {
			break
		}
	}
	fill.Close()
	if !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("filling the tmpfs: %v, want ENOSPC", err)
	}
	res = runProbe(t, probe, 5*time.Second)
	free = known(t, "free_bytes", res.Storage.FreeBytes)
	if res.Status != api.CheckWarn || !strings.HasPrefix(res.Summary, "less than 5% free: ") || free >= 64<<10 {
		t.Errorf("full: %s: %s (%d bytes free)", res.Status, res.Summary, free)
	}
	if r := freeRatio(t, res); r >= 0.01 {
		t.Errorf("full: free_ratio %v", r)
	}
	evalHolds(t, low, res, true, true)
	if w := wireDetails(t, res); w["free_bytes"] != float64(free) || w["total_bytes"] != float64(size) {
		t.Errorf("full: details on the wire: %v", w)
	}

	// Emptied.
	if err := os.RemoveAll(filepath.Join(dir, "resources")); err != nil {
		t.Fatal(err)
	}
	res = runProbe(t, probe, 5*time.Second)
	if res.Status != api.CheckOK || known(t, "free_bytes", res.Storage.FreeBytes) != free0 {
		t.Errorf("emptied: %s: %s (%+v)", res.Status, res.Summary, res.Storage)
	}
	evalHolds(t, low, res, false, true)
}
