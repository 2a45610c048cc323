// Package testfs gives a test a small file system of its own, to fill up:
// Tmpfs mounts a tmpfs of a given size on a fresh directory and unmounts it
// and removes the directory at the test's end, whether the test passes,
// fails or panics. It imports `testing`, so no production package may
// import it.
//
// Mounting needs root or CAP_SYS_ADMIN (a container must grant it). When
// the machine refuses, Tmpfs skips the test with a line saying so, also
// under CI=true: CI runs tests as an ordinary user, and a test that needs a
// full disk must cover its logic without one too.
//
// A program killed outright (SIGKILL, a panic in another goroutine's
// cleanup) leaves its mount behind: `grep testfs-tmpfs- /proc/mounts`
// finds it, `umount DIR && rmdir DIR` removes it. It holds no more than its
// size in memory.
package testfs

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
)

// ErrMountRefused is wrapped by MountTmpfs's error when the machine
// refuses the mount (no privilege, no tmpfs), as opposed to a failure to
// make its directory.
var ErrMountRefused = errors.New("cannot mount tmpfs here")

// tmpfsMagic is statfs's f_type of a tmpfs (TMPFS_MAGIC).
const tmpfsMagic = 0x01021994

// DirPrefix starts the name of every mount point MountTmpfs makes, under
// os.TempDir().
const DirPrefix = "testfs-tmpfs-"

// mount and unmount are syscall.Mount and syscall.Unmount; tests replace
// them to play a machine that refuses.
var (
	mount   = syscall.Mount
	unmount = syscall.Unmount
)

// Mount is a mounted tmpfs.
type Mount struct {
	dir string

	mu     sync.Mutex
	closed bool
}

// MountTmpfs mounts a tmpfs of size bytes (rounded up to whole pages) on a
// fresh directory under os.TempDir(), mode 0755, nosuid, nodev, noexec.
// The caller must Close it. When the machine refuses, the error wraps
// ErrMountRefused ("cannot mount tmpfs here: operation not permitted") and
// nothing is left on disk.
func MountTmpfs(size int64) (*Mount, error) {
	if size <= 0 {
		return nil, fmt.Errorf("testfs: tmpfs size %d: want a positive number of bytes", size)
	}
	dir, err := os.MkdirTemp("", DirPrefix)
	if err != nil {
		return nil, fmt.Errorf("testfs: %w", err)
	}
	err = mount("tmpfs", dir, "tmpfs", syscall.MS_NOSUID|syscall.MS_NODEV|syscall.MS_NOEXEC, fmt.Sprintf("size=%d,mode=0755", size))
	if err != nil {
		os.Remove(dir)
		return nil, fmt.Errorf("%w: %v (mount -t tmpfs needs root or CAP_SYS_ADMIN)", ErrMountRefused, err)
	}
	m := &Mount{dir: dir}
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil || st.Type != tmpfsMagic {
		err = errors.Join(fmt.Errorf("testfs: %s is not a tmpfs after mounting one (statfs: type %#x, %v)", dir, st.Type, err), m.Close())
		return nil, err
	}
	return m, nil
}

// Dir returns the mount point, which Close removes.
func (m *Mount) Dir() string { return m.dir }

// Close unmounts the tmpfs (lazily, MNT_DETACH, when a file in it is still
// open: it goes once closed) and removes its directory, with what was in
// it. Closing again does nothing. When the unmount fails, the directory is
// left as it is and the error says how to remove it.
func (m *Mount) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil
	}
	err := unmount(m.dir, 0)
	if errors.Is(err, syscall.EBUSY) {
		err = unmount(m.dir, syscall.MNT_DETACH)
	}
	if err != nil && !errors.Is(err, syscall.EINVAL) { // EINVAL: not mounted (any more)
		return fmt.Errorf("testfs: unmount %s: %w (left mounted: umount %s && rmdir %s)", m.dir, err, m.dir, m.dir)
	}
	m.closed = true
	if err := os.RemoveAll(m.dir); err != nil {
		return fmt.Errorf("testfs: remove %s: %w", m.dir, err)
	}
	return nil
}

// Tmpfs mounts a tmpfs of size bytes for a test and returns its directory.
// t.Cleanup unmounts it and removes the directory, whether the test passes,
// fails or panics. When the machine refuses the mount the test is skipped
// with "cannot mount tmpfs here: <why>".
func Tmpfs(t testing.TB, size int64) string {
	t.Helper()
	m, err := MountTmpfs(size)
	if errors.Is(err, ErrMountRefused) {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := m.Close(); err != nil {
			t.Error(err)
		}
	})
	return m.Dir()
}

// Mounted reports whether dir is a mount point, by /proc/self/mountinfo;
// false when that cannot be read.
func Mounted(dir string) bool {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return false
	}
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n") {
		// 36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw
		fields := strings.Fields(line)
		if len(fields) > 4 && unescapeOctal(fields[4]) == dir {
			return true
		}
	}
	return false
}

// unescapeOctal undoes mountinfo's escapes of a path (a space is \040).
func unescapeOctal(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) && isOctal(s[i+1]) && isOctal(s[i+2]) && isOctal(s[i+3]) {
			b.WriteByte((s[i+1]-'0')<<6 | (s[i+2]-'0')<<3 | (s[i+3] - '0'))
			i += 3
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func isOctal(c byte) bool { return c >= '0' && c <= '7' }
