package snapshot

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Entry is one complete snapshot in a directory.
type Entry struct {
	Dir      string
	Manifest *Manifest
}

// List returns the complete snapshots in parent, newest first: the
// directories whose name does not start with a dot and whose manifest
// loads. A directory with a manifest that does not load is left out (and
// so never pruned). A parent that does not exist holds no snapshot.
func List(parent string) ([]Entry, error) {
	des, err := os.ReadDir(parent)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("snapshot: list %s: %w", parent, err)
	}
	var out []Entry
	for _, de := range des {
		if !de.IsDir() || strings.HasPrefix(de.Name(), ".") {
			continue
		}
		dir := filepath.Join(parent, de.Name())
		m, err := Load(dir)
		if err != nil {
			continue
		}
		out = append(out, Entry{Dir: dir, Manifest: m})
	}
	sort.SliceStable(out, func(i, j int) bool {
		a, b := out[i].Manifest.Times.Started, out[j].Manifest.Times.Started
		if !a.Equal(b) {
			return a.After(b)
		}
		return out[i].Dir > out[j].Dir
	})
	return out, nil
}

// staleAfter is how old (by modification time) an unlocked temporary
// directory must be for Prune to remove it: a Take creates its directory
// a moment before it locks it.
const staleAfter = time.Minute

// Prune keeps the newest keep complete snapshots of site in parent and
// removes the older ones, and removes the temporary directories of site's
// failed or interrupted snapshots: those no running Take holds locked.
// It returns the paths it removed.
func Prune(parent, site string, keep int) (removed []string, err error) {
	if keep < 1 {
		return nil, fmt.Errorf("snapshot: prune keeps at least 1 snapshot, not %d", keep)
	}
	entries, err := List(parent)
	if err != nil {
		return nil, err
	}
	var errs []error
	n := 0
	for _, e := range entries {
		if e.Manifest.Site != site {
			continue
		}
		n++
		if n <= keep {
			continue
		}
		if err := os.RemoveAll(e.Dir); err != nil {
			errs = append(errs, err)
			continue
		}
		removed = append(removed, e.Dir)
	}

	des, err := os.ReadDir(parent)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		errs = append(errs, err)
	}
	for _, de := range des {
		if !de.IsDir() || !isTempOf(de.Name(), site) {
			continue
		}
		dir := filepath.Join(parent, de.Name())
		ok, err := removeStale(dir)
		if err != nil {
			errs = append(errs, err)
		}
		if ok {
			removed = append(removed, dir)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return removed, fmt.Errorf("snapshot: prune %s: %w", parent, err)
	}
	return removed, nil
}

// isTempOf reports whether name is a temporary directory of site's:
// .tmp-<site>-<time>[-N].
func isTempOf(name, site string) bool {
	rest, ok := strings.CutPrefix(name, tempPrefix+site+"-")
	if !ok || len(rest) < len(TimeLayout) {
		return false
	}
	if _, err := time.Parse(TimeLayout, rest[:len(TimeLayout)]); err != nil {
		return false
	}
	rest = rest[len(TimeLayout):]
	if rest == "" {
		return true
	}
	n, err := strconv.Atoi(strings.TrimPrefix(rest, "-"))
	return strings.HasPrefix(rest, "-") && err == nil && n > 1
}

// removeStale removes a temporary directory unless a Take holds it
// locked or it is younger than staleAfter.
func removeStale(dir string) (bool, error) {
	fi, err := os.Stat(dir)
	if err != nil {
		return false, nil // gone already
	}
	if time.Since(fi.ModTime()) < staleAfter {
		return false, nil
	}
	f, err := os.Open(dir)
	if err != nil {
		return false, nil
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		return false, nil // in use
	}
	if err := os.RemoveAll(dir); err != nil {
		return false, err
	}
	return true, nil
}
