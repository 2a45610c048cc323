package testfs

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// childEnv selects, in a subprocess of this test binary, which child test
// runs.
const childEnv = "TESTFS_CHILD"

func TestTmpfs(t *testing.T) {
	var dir string
	var open *os.File // still open at cleanup: unmounted lazily
	t.Run("mounted", func(t *testing.T) {
		dir = Tmpfs(t, 8<<20)
		if !Mounted(dir) {
			t.Fatalf("%s is not a mount point", dir)
		}
		if !strings.HasPrefix(filepath.Base(dir), DirPrefix) {
			t.Errorf("mount point %s, want it named %s*", dir, DirPrefix)
		}
		var st syscall.Statfs_t
		if err := syscall.Statfs(dir, &st); err != nil {
			t.Fatal(err)
		}
		if total := st.Blocks * uint64(st.Bsize); total != 8<<20 || st.Bavail != st.Blocks {
			t.Errorf("%d bytes, %d of %d blocks free; want 8 MiB, all free", total, st.Bavail, st.Blocks)
		}
		// It fills up: 9 MiB do not fit.
		f, err := os.Create(filepath.Join(dir, "big"))
		if err != nil {
			t.Fatal(err)
		}
		open = f
		_, err = f.Write(bytes.Repeat([]byte{'x'}, 9<<20))
		if !errors.Is(err, syscall.ENOSPC) {
			t.Errorf("writing 9 MiB: %v, want ENOSPC", err)
		}
	})
	if open != nil {
		defer open.Close()
	}
	if dir == "" {
		return // skipped: mounting refused
	}
	if Mounted(dir) {
		t.Errorf("%s still mounted after the test", dir)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("%s still exists after the test (%v)", dir, err)
	}
}

func TestMountTmpfsClose(t *testing.T) {
	m, err := MountTmpfs(1 << 20)
	if errors.Is(err, ErrMountRefused) {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(m.Dir(), "f"), []byte("data"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if Mounted(m.Dir()) {
		t.Errorf("%s still mounted after Close", m.Dir())
	}
	if _, err := os.Stat(m.Dir()); !os.IsNotExist(err) {
		t.Errorf("%s still exists after Close (%v)", m.Dir(), err)
	}
	if err := m.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, err := MountTmpfs(0); err == nil || errors.Is(err, ErrMountRefused) {
		t.Errorf("MountTmpfs(0): %v, want a size error", err)
	}
}

// A machine that refuses the mount (as without CAP_SYS_ADMIN): an error
// saying so, nothing left on disk, and Tmpfs skips.
func TestMountRefused(t *testing.T) {
	mount = func(string, string, string, uintptr, string) error { return syscall.EPERM }
	t.Cleanup(func() { mount = syscall.Mount })
	before, _ := filepath.Glob(filepath.Join(os.TempDir(), DirPrefix+"*"))

	m, err := MountTmpfs(8 << 20)
	if err == nil {
		m.Close()
		t.Fatal("MountTmpfs succeeded")
	}
	if !errors.Is(err, ErrMountRefused) || !strings.HasPrefix(err.Error(), "cannot mount tmpfs here: operation not permitted") {
		t.Errorf("error %q, want ErrMountRefused saying why", err)
	}
	after, _ := filepath.Glob(filepath.Join(os.TempDir(), DirPrefix+"*"))
	if len(after) > len(before) {
		t.Errorf("a refused mount left a directory: %v, was %v", after, before)
	}

	var skipped bool
	t.Run("skips", func(t *testing.T) {
		defer func() { skipped = t.Skipped() }()
		Tmpfs(t, 8<<20)
		t.Error("Tmpfs returned although the mount was refused")
	})
	if !skipped {
		t.Error("Tmpfs did not skip")
	}
}

// TestFailedTestUnmounts checks that a failing test's cleanup unmounts its
// tmpfs and removes the directory.
func TestFailedTestUnmounts(t *testing.T) {
	cmd := exec.Command(os.Args[0], "-test.run=^TestChildFailing$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), childEnv+"=failing",
		"GORACE="+strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0"))
	out, err := cmd.CombinedOutput()
	if strings.Contains(string(out), "--- SKIP: TestChildFailing") {
		t.Skip("no tmpfs was mounted")
	}
	if _, ok := err.(*exec.ExitError); !ok || !strings.Contains(string(out), "--- FAIL: TestChildFailing") {
		t.Fatalf("child: %v, want a failure\n%s", err, out)
	}
	var dir string
	for _, line := range strings.Split(string(out), "\n") {
		if _, err := fmt.Sscanf(strings.TrimSpace(line), "MOUNT dir=%s", &dir); err == nil {
			break
		}
	}
	if dir == "" {
		t.Fatalf("child did not report its mount:\n%s", out)
	}
	if Mounted(dir) {
		t.Errorf("%s still mounted after the failed test", dir)
		syscall.Unmount(dir, syscall.MNT_DETACH)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("%s still exists after the failed test (%v)", dir, err)
		os.Remove(dir)
	}
}

func TestChildFailing(t *testing.T) {
	if os.Getenv(childEnv) != "failing" {
		t.Skip("runs only as a subprocess of TestFailedTestUnmounts")
	}
	dir := Tmpfs(t, 1<<20)
	fmt.Printf("MOUNT dir=%s\n", dir)
	os.WriteFile(filepath.Join(dir, "f"), []byte("data"), 0o644)
	t.Error("deliberate failure")
}

func TestUnescapeOctal(t *testing.T) {
	for in, want := range map[string]string{
		`/tmp/a\040b`: "/tmp/a b",
		`/tmp/a\134b`: `/tmp/a\b`,
		`/tmp/plain`:  "/tmp/plain",
		`/tmp/x\04`:   `/tmp/x\04`,
	} {
		if got := unescapeOctal(in); got != want {
			t.Errorf("unescapeOctal(%q) = %q, want %q", in, got, want)
		}
	}
}
