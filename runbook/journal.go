package runbook

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/ckanops/ckanops/api"

	"github.com/ckanops/ckanops/internal/atomicfile"
)

// Files of the journal directory.
const (
	recordName  = "runbook.json"  // the current (or last) runbook, rewritten atomically on every change
	journalName = "journal.jsonl" // the current (or last) runbook's events, appended
	lockName    = "runbook.lock"  // flock'd while a runbook is active (FileLock)

	// rotatedPrefix and rotatedSuffix name an earlier runbook's events,
	// journal-<runbook id>.jsonl, moved away when the next one started.
	rotatedPrefix = "journal-"
	rotatedSuffix = ".jsonl"
	// keepRotated is how many earlier runbooks' journals are kept.
	keepRotated = 10
	// maxJournalLine bounds one line read back from the journal; a longer
	// one (never written by the engine) is skipped.
	maxJournalLine = 4 << 20
)

// journal keeps the runbook record and its events on disk. journal.jsonl
// holds one runbook's events: when an event of another runbook comes, the
// file is first moved to journal-<its runbook>.jsonl, and the oldest such
// files beyond keepRotated are removed.
type journal struct {
	dir string
	f   *os.File // journal.jsonl, opened for appending
	cur string   // the runbook of journal.jsonl's last event; "" if none (or unknown)

	// beforeWrite, if set, is called before each event is written (tests:
	// a slow disk).
	beforeWrite atomic.Pointer[func()]
}

func openJournal(dir string) (*journal, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("runbook: journal dir %s: %w", dir, err)
	}
	f, err := os.OpenFile(filepath.Join(dir, journalName), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		return nil, fmt.Errorf("runbook: open journal: %w", err)
	}
	cur, err := lastRunbook(f.Name())
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("runbook: read journal: %w", err)
	}
	return &journal{dir: dir, f: f, cur: cur}, nil
}

func (j *journal) close() error { return j.f.Close() }

// append writes one event; sync makes it durable before returning (state
// changes are synced, program output is not). The first event of another
// runbook than the file's moves the file away first.
func (j *journal) append(ev api.RunbookEvent, sync bool) error {
	b, err := json.Marshal(ev)
	if err != nil {
		return err
	}
	err = j.appendLine(ev.Runbook, append(b, '\n'))
	if sync {
		err = errors.Join(err, j.sync())
	}
	return err
}

// appendLine writes one marshalled event of runbook id (line ends with
// its newline), unsynced. The first event of another runbook than the
// file's moves the file away first.
func (j *journal) appendLine(id string, line []byte) error {
	var rotErr error
	if j.cur != "" && id != j.cur {
		rotErr = j.rotate()
	}
	j.cur = id
	if f := j.beforeWrite.Load(); f != nil {
		(*f)()
	}
	if _, err := j.f.Write(line); err != nil {
		return errors.Join(rotErr, fmt.Errorf("runbook: append journal %s: %w", j.f.Name(), err))
	}
	return rotErr
}

// sync makes the events written so far durable.
func (j *journal) sync() error {
	if err := j.f.Sync(); err != nil {
		return fmt.Errorf("runbook: sync journal %s: %w", j.f.Name(), err)
	}
	return nil
}

// rotate moves journal.jsonl, which holds runbook j.cur's events, to
// journal-<j.cur>.jsonl, opens a new journal.jsonl and removes the oldest
// rotated journals beyond keepRotated. If the file cannot be moved, the
// events go on in it.
func (j *journal) rotate() error {
	path := filepath.Join(j.dir, journalName)
	if err := j.f.Sync(); err != nil {
		return fmt.Errorf("runbook: rotate journal: sync %s: %w (its events stay there)", path, err)
	}
	to := filepath.Join(j.dir, rotatedName(j.cur))
	if _, err := os.Lstat(to); err == nil {
		// Never overwrite history: a second file for the same runbook.
		to = filepath.Join(j.dir, rotatedName(fmt.Sprintf("%s.%d", j.cur, time.Now().UnixNano())))
	}
	if err := os.Rename(path, to); err != nil {
		return fmt.Errorf("runbook: rotate journal: %w (its events stay in %s)", err, path)
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		// Put it back rather than lose the open file's place.
		if rerr := os.Rename(to, path); rerr != nil {
			return fmt.Errorf("runbook: rotate journal: open a new %s: %w (events go on to %s)", path, err, to)
		}
		return fmt.Errorf("runbook: rotate journal: open a new %s: %w (its events stay there)", path, err)
	}
	j.f.Close()
	j.f = f
	if err := syncDir(j.dir); err != nil {
		return fmt.Errorf("runbook: rotate journal: %w", err)
	}
	return pruneRotated(j.dir, keepRotated)
}

// rotatedName is the file of runbook id's journal once it was moved away.
// An id that is not a plain file name (never one of newID's) is replaced.
func rotatedName(id string) string {
	ok := id != "" && len(id) <= 128 && id[0] != '.'
	for _, c := range id {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			ok = false
		}
	}
	if !ok {
		id = "unnamed-" + time.Now().UTC().Format("20060102T150405.000000000Z")
	}
	return rotatedPrefix + id + rotatedSuffix
}

// rotatedJournals lists dir's rotated journals, newest first (by the time
// of their last event's write, then by name).
func rotatedJournals(dir string) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	type file struct {
		name string
		mod  time.Time
	}
	var files []file
	for _, e := range ents {
		n := e.Name()
		if !e.Type().IsRegular() || !strings.HasPrefix(n, rotatedPrefix) || !strings.HasSuffix(n, rotatedSuffix) {
			continue
		}
		info, err := e.Info()
		if err != nil {
			continue // removed meanwhile
		}
		files = append(files, file{n, info.ModTime()})
	}
	slices.SortFunc(files, func(a, b file) int {
		if c := b.mod.Compare(a.mod); c != 0 {
			return c
		}
		return strings.Compare(b.name, a.name)
	})
	names := make([]string, len(files))
	for i, f := range files {
		names[i] = f.name
	}
	return names, nil
}

// pruneRotated removes the rotated journals beyond the keep newest.
func pruneRotated(dir string, keep int) error {
	names, err := rotatedJournals(dir)
	if err != nil {
		return fmt.Errorf("runbook: list rotated journals: %w", err)
	}
	var errs []error
	for _, n := range names[min(keep, len(names)):] {
		if err := os.Remove(filepath.Join(dir, n)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, fmt.Errorf("runbook: remove old journal: %w", err))
		}
	}
	return errors.Join(errs...)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}

// lastRunbook returns the runbook of the journal's last readable event,
// reading back from its end at most maxJournalLine bytes.
func lastRunbook(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	size, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return "", err
	}
	for window := int64(64 << 10); ; window *= 4 {
		off := max(0, size-window)
		buf := make([]byte, size-off)
		if _, err := f.ReadAt(buf, off); err != nil && err != io.EOF {
			return "", err
		}
		lines := bytes.Split(buf, []byte("\n"))
		if off > 0 {
			lines = lines[1:] // the window starts mid-line
		}
		for i := len(lines) - 1; i >= 0; i-- {
			var ev struct {
				Runbook string `json:"runbook"`
			}
			if json.Unmarshal(lines[i], &ev) == nil && ev.Runbook != "" {
				return ev.Runbook, nil
			}
		}
		if off == 0 || window >= maxJournalLine {
			return "", nil
		}
	}
}

// save writes the record atomically: temp file, fsync, rename, fsync dir.
func (j *journal) save(rb *api.Runbook) error {
	b, err := json.MarshalIndent(rb, "", "  ")
	if err != nil {
		return err
	}
	return j.saveRecord(b)
}

// saveRecord writes a marshalled record (see save).
func (j *journal) saveRecord(b []byte) error {
	if err := atomicfile.Write(filepath.Join(j.dir, recordName), append(b, '\n'), 0o640); err != nil {
		return fmt.Errorf("runbook: save record: %w", err)
	}
	return nil
}

// load reads the last record; nil when there is none.
func (j *journal) load() (*api.Runbook, error) {
	b, err := os.ReadFile(filepath.Join(j.dir, recordName))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("runbook: read record: %w", err)
	}
	var rb api.Runbook
	if err := json.Unmarshal(b, &rb); err != nil {
		return nil, fmt.Errorf("runbook: record %s is damaged: %w (move it away to start afresh; the journal %s keeps the history)",
			filepath.Join(j.dir, recordName), err, filepath.Join(j.dir, journalName))
	}
	return &rb, nil
}

// events reads runbook id's events back, in order, bounded as the engine
// bounds them in memory: past maxEvents events, program output is dropped
// (it stays in the file). The runbook's last event is kept all the same,
// so that numbering goes on after the highest seq on disk. The file is
// read line by line, never whole; a torn last line (a crash mid-write)
// and lines that do not parse are ignored. The events are read from
// journal.jsonl, or, if it holds none of id's, from id's rotated journal.
func (j *journal) events(id string) ([]api.RunbookEvent, error) {
	out, err := readEvents(filepath.Join(j.dir, journalName), id)
	if err != nil || len(out) > 0 {
		return out, err
	}
	// A crash between moving the file away and recording the next runbook.
	rotated, err := readEvents(filepath.Join(j.dir, rotatedName(id)), id)
	if errors.Is(err, fs.ErrNotExist) {
		return out, nil
	}
	return rotated, err
}

func readEvents(path, id string) ([]api.RunbookEvent, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("runbook: read journal: %w", err)
	}
	defer f.Close()
	var out []api.RunbookEvent
	var last *api.RunbookEvent // the last event, if the cap dropped it
	needle := []byte(`"runbook":"` + id + `"`)
	err = eachLine(f, maxJournalLine, func(line []byte) {
		if !bytes.Contains(line, needle) {
			return
		}
		var ev api.RunbookEvent
		if json.Unmarshal(line, &ev) != nil || ev.Runbook != id {
			return
		}
		if !streamed(ev.Kind) || len(out) < maxEvents {
			out, last = append(out, ev), nil
			return
		}
		last = &ev
	})
	if last != nil {
		out = append(out, *last)
	}
	if err != nil {
		return out, fmt.Errorf("runbook: read journal %s: %w", path, err)
	}
	return out, nil
}

// eachLine calls fn with each line of r, without its newline; fn must not
// keep the slice. Lines longer than maxLine are skipped.
func eachLine(r io.Reader, maxLine int, fn func([]byte)) error {
	br := bufio.NewReaderSize(r, 64<<10)
	var long []byte // a line longer than br's buffer, so far
	skip := false   // the current line is too long
	for {
		chunk, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			if !skip && len(long)+len(chunk) > maxLine {
				skip, long = true, long[:0]
			} else if !skip {
				long = append(long, chunk...)
			}
			continue
		}
		if !skip {
			line := chunk
			if len(long) > 0 {
				long = append(long, chunk...)
				line = long
			}
			if line = bytes.TrimSuffix(line, []byte("\n")); len(line) > 0 && len(line) <= maxLine {
				fn(line)
			}
		}
		skip, long = false, long[:0]
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}
