package checks

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/ckanops/ckanops/api"
	"github.com/ckanops/ckanops/config"
	"github.com/ckanops/ckanops/internal/human"
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

func (p *Storage) Name() string { return api.ProbeStorage }

// Storages probes every storage of the site (CKAN 2.12's file storages,
// config.ChecksConfig.Storages) as one check, "storage": each local one as
// Storage does, concurrently, under the same timeout; a storage that is not
// a local directory is named but not probed (nothing here can reach it).
// The status is the worst of theirs; the summary names each storage
// ("default: 40.0 GB free of ..., newest change ...; public: ..."), and
// the details are those of the first storage with that worst status (its
// Path says which).
type Storages struct {
	local []storageProbe
	other []string // "bucket (ckan:s3)"
}

type storageProbe struct {
	name  string
	probe *Storage
}

// NewStorages returns the probe of storages; maxEntries and maxTime bound
// each walk as NewStorage's do. With one local storage and no other, its
// result is exactly Storage's.
func NewStorages(storages []config.Storage, maxEntries int, maxTime time.Duration) *Storages {
	p := &Storages{}
	for _, s := range storages {
		if s.Local() {
			p.local = append(p.local, storageProbe{s.Name, NewStorage(s.Path, maxEntries, maxTime)})
		} else {
			p.other = append(p.other, fmt.Sprintf("%s (%s)", s.Name, s.Type))
		}
	}
	return p
}

func (p *Storages) Name() string { return api.ProbeStorage }

// Check probes each local storage concurrently and sums them up.
func (p *Storages) Check(ctx context.Context) api.CheckResult {
	results := make([]api.CheckResult, len(p.local))
	var wg sync.WaitGroup
	for i, s := range p.local {
		wg.Go(func() { results[i] = s.probe.Check(ctx) })
	}
	wg.Wait()
	notProbed := ""
	if len(p.other) > 0 {
		notProbed = "not local, so not probed (nor archived by a snapshot): " + strings.Join(p.other, ", ")
	}
	if len(results) == 0 {
		return api.CheckResult{Status: api.CheckUnknown, Summary: "no local storage; " + notProbed}
	}
	if len(results) == 1 && notProbed == "" {
		return results[0]
	}
	worst := 0
	var parts []string
	for i, r := range results {
		if statusRank(r.Status) > statusRank(results[worst].Status) {
			worst = i
		}
		parts = append(parts, p.local[i].name+": "+strings.TrimSuffix(r.Summary, ", "))
	}
	if notProbed != "" {
		parts = append(parts, notProbed)
	}
	res := results[worst]
	res.Summary = strings.Join(parts, "; ")
	return res
}

// statusRank orders statuses from best to worst.
func statusRank(s api.CheckStatus) int {
	switch s {
	case api.CheckOK:
		return 0
	case api.CheckWarn:
		return 1
	case api.CheckFail:
		return 3
	}
	return 2 // unknown
}

// Check looks at the directory and walks it, within its limits.
func (p *Storage) Check(ctx context.Context) api.CheckResult {
	d := &api.StorageDetails{Path: p.path}
	res := api.CheckResult{Status: api.CheckFail, Storage: d}
	fi, err := os.Stat(p.path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		d.Exists = new(false)
		res.Summary = fmt.Sprintf("%s does not exist: check checks.storage_path (CKAN's ckan.storage_path), and that its file system is mounted", p.path)
		return res
	case err != nil:
		res.Summary = fmt.Sprintf("cannot look at %s: %s (the gate runs as %s)", p.path, errText(err), whoAmI())
		return res
	case !fi.IsDir():
		d.Exists = new(true)
		res.Summary = fmt.Sprintf("%s is not a directory: checks.storage_path must be CKAN's ckan.storage_path", p.path)
		return res
	}
	d.Exists = new(true)
	f, err := os.Open(p.path)
	if err == nil {
		_, err = f.ReadDir(1)
		f.Close()
		if errors.Is(err, io.EOF) {
			err = nil // empty, but readable
		}
	}
	d.Readable = new(err == nil)
	if err != nil {
		res.Summary = fmt.Sprintf("cannot read %s: %s (the gate runs as %s; let it read CKAN's storage, e.g. add it to CKAN's group)", p.path, errText(err), whoAmI())
		return res
	}
	var st syscall.Statfs_t
	var free, total uint64
	if err := syscall.Statfs(p.path, &st); err == nil {
		free, total = st.Bavail*uint64(st.Bsize), st.Blocks*uint64(st.Bsize)
		d.FreeBytes, d.TotalBytes = new(free), new(total)
	}

	w := p.walk(ctx)
	d.EntriesScanned = new(w.entries)
	d.WalkComplete = new(w.stopped == "")
	d.WalkStopped = w.stopped
	d.Unreadable = new(w.unreadable)
	newest := "no file in it yet"
	if !w.newest.IsZero() {
		d.NewestModified = new(w.newest.UTC())
		d.NewestPath = w.newestPath
		newest = fmt.Sprintf("newest change %s ago (%s)", time.Since(w.newest).Round(time.Second), w.newestPath)
	}
	if w.stopped != "" {
		newest += fmt.Sprintf(" among the first %d entries (%s)", w.entries, w.stopped)
	}
	space, low := spaceText(free, total)
	res.Status = api.CheckOK
	res.Summary = space + newest
	switch {
	case w.unreadable > 0:
		res.Status = api.CheckWarn
		res.Summary = fmt.Sprintf("%d entries cannot be read by %s (a snapshot would miss them, e.g. %s); %s", w.unreadable, whoAmI(), w.firstUnreadable, res.Summary)
	case low:
		res.Status = api.CheckWarn
	}
	return res
}

// spaceText says the free space once, in the units of the rest of
// ckanops (human.Bytes): "40.0 GB free of 100.0 GB, ", or "less than 5%
// free: 3.0 GB of 100.0 GB, " when it is low. The console shows the
// summary and does not repeat it. "" when the space is not known.
func spaceText(free, total uint64) (text string, low bool) {
	if total == 0 {
		return "", false
	}
	f, t := human.Bytes(clampInt64(free)), human.Bytes(clampInt64(total))
	if free*20 < total {
		return fmt.Sprintf("less than 5%% free: %s of %s, ", f, t), true
	}
	return fmt.Sprintf("%s free of %s, ", f, t), false
}

// clampInt64 is n as an int64 for human.Bytes: at most 9.2 EB.
func clampInt64(n uint64) int64 {
	return int64(min(n, math.MaxInt64))
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
