package checks

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/ckanops/ckanops/api"
)

// Limits of the storage probe's walk for the newest change: a large file
// store is sampled, and the result says so.
const (
	DefaultStorageWalkEntries = 20000
	DefaultStorageWalkTime    = time.Second
)

// Storage probes CKAN's file storage (ckan.storage_path): that it exists
// and can be read, the free space, and the newest change in it.
type Storage struct {
	path       string
	maxEntries int
	maxTime    time.Duration
}

// NewStorage returns the probe of the directory path. maxEntries and
// maxTime bound the walk for the newest change (0: the defaults); the
// probe's timeout bounds it too.
func NewStorage(path string, maxEntries int, maxTime time.Duration) *Storage {
	if maxEntries <= 0 {
		maxEntries = DefaultStorageWalkEntries
	}
	if maxTime <= 0 {
		maxTime = DefaultStorageWalkTime
	}
	return &Storage{path: path, maxEntries: maxEntries, maxTime: maxTime}
}

func (p *Storage) Name() string { return "storage" }

// Check looks at the directory and walks it, within its limits.
func (p *Storage) Check(ctx context.Context) api.CheckResult {
	res := api.CheckResult{Status: api.CheckFail, Details: map[string]any{"path": p.path}}
	d := res.Details
	fi, err := os.Stat(p.path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		d["exists"] = false
		res.Summary = fmt.Sprintf("%s does not exist: check checks.storage_path (CKAN's ckan.storage_path), and that its file system is mounted", p.path)
		return res
	case err != nil:
		res.Summary = fmt.Sprintf("cannot look at %s: %s (the gate runs as %s)", p.path, errText(err), whoAmI())
		return res
	case !fi.IsDir():
		d["exists"] = true
		res.Summary = fmt.Sprintf("%s is not a directory: checks.storage_path must be CKAN's ckan.storage_path", p.path)
		return res
	}
	d["exists"] = true
	f, err := os.Open(p.path)
	if err == nil {
		_, err = f.ReadDir(1)
		f.Close()
		if errors.Is(err, io.EOF) {
			err = nil // empty, but readable
		}
	}
	d["readable"] = err == nil
	if err != nil {
		res.Summary = fmt.Sprintf("cannot read %s: %s (the gate runs as %s; let it read CKAN's storage, e.g. add it to CKAN's group)", p.path, errText(err), whoAmI())
		return res
	}
	var st syscall.Statfs_t
	var free, total uint64
	if err := syscall.Statfs(p.path, &st); err == nil {
		free, total = st.Bavail*uint64(st.Bsize), st.Blocks*uint64(st.Bsize)
		d["free_bytes"], d["total_bytes"] = free, total
	}

	w := p.walk(ctx)
	d["entries_scanned"] = w.entries
	d["walk_complete"] = w.stopped == ""
	if w.stopped != "" {
		d["walk_stopped"] = w.stopped
	}
	d["unreadable"] = w.unreadable
	newest := "no file in it yet"
	if !w.newest.IsZero() {
		d["newest_modified"] = w.newest.UTC()
		d["newest_path"] = w.newestPath
		newest = fmt.Sprintf("newest change %s ago (%s)", time.Since(w.newest).Round(time.Second), w.newestPath)
	}
	if w.stopped != "" {
		newest += fmt.Sprintf(" among the first %d entries (%s)", w.entries, w.stopped)
	}
	space := ""
	if total > 0 {
		space = fmt.Sprintf("%s free of %s, ", bytesText(free), bytesText(total))
	}
	res.Status = api.CheckOK
	res.Summary = space + newest
	switch {
	case w.unreadable > 0:
		res.Status = api.CheckWarn
		res.Summary = fmt.Sprintf("%d entries cannot be read by %s (a snapshot would miss them, e.g. %s); %s", w.unreadable, whoAmI(), w.firstUnreadable, res.Summary)
	case total > 0 && free*20 < total:
		res.Status = api.CheckWarn
		res.Summary = "less than 5% free: " + res.Summary
	}
	return res
}

type walkResult struct {
	entries, unreadable int
	newest              time.Time
	newestPath          string
	firstUnreadable     string
	stopped             string // why the walk stopped early, "" if it did not
}

var errWalkLimit = errors.New("walk limit")

// walk looks for the newest modification time under the path, stopping
// after maxEntries entries or maxTime (or half the time left to the
// probe, whichever comes first).
func (p *Storage) walk(ctx context.Context) walkResult {
	var w walkResult
	budget := p.maxTime
	if dl, ok := ctx.Deadline(); ok {
		budget = min(budget, time.Until(dl)/2)
	}
	deadline := time.Now().Add(budget)
	err := filepath.WalkDir(p.path, func(path string, de fs.DirEntry, err error) error {
		if err != nil {
			if path != p.path {
				w.unreadable++
				if w.firstUnreadable == "" {
					w.firstUnreadable = rel(p.path, path)
				}
			}
			return nil // go on with the rest
		}
		if path == p.path {
			return nil
		}
		w.entries++
		if info, err := de.Info(); err == nil && info.ModTime().After(w.newest) {
			w.newest, w.newestPath = info.ModTime(), rel(p.path, path)
		}
		switch {
		case w.entries >= p.maxEntries:
			w.stopped = fmt.Sprintf("stopped after %d entries", p.maxEntries)
		case w.entries%64 == 0 && time.Now().After(deadline):
			w.stopped = fmt.Sprintf("stopped after %s", budget.Round(time.Millisecond))
		case w.entries%64 == 0 && ctx.Err() != nil:
			w.stopped = "stopped at the probe's timeout"
		default:
			return nil
		}
		return errWalkLimit
	})
	if err != nil && !errors.Is(err, errWalkLimit) && w.stopped == "" {
		w.stopped = "stopped: " + errText(err)
	}
	return w
}

func rel(root, path string) string {
	if r, err := filepath.Rel(root, path); err == nil {
		return r
	}
	return path
}

// errText is an error without the path the caller names already.
func errText(err error) string {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err.Error()
	}
	return err.Error()
}

func whoAmI() string {
	uid := os.Geteuid()
	if u, err := user.LookupId(strconv.Itoa(uid)); err == nil {
		return fmt.Sprintf("user %s (uid %d)", u.Username, uid)
	}
	return fmt.Sprintf("uid %d", uid)
}

// bytesText writes a byte count for people: 512 B, 3.2 GiB.
func bytesText(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
