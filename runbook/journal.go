package runbook

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/ckanops/ckanops/api"

	"github.com/ckanops/ckanops/internal/atomicfile"
)

// Files of the journal directory.
const (
	recordName  = "runbook.json"  // the current (or last) runbook, rewritten atomically on every change
	journalName = "journal.jsonl" // every event of every runbook, appended
	lockName    = "runbook.lock"  // flock'd while a runbook is active (FileLock)
)

// journal keeps the runbook record and its events on disk.
type journal struct {
	dir string
	f   *os.File // journal.jsonl, opened for appending
}

func openJournal(dir string) (*journal, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("runbook: journal dir %s: %w", dir, err)
	}
	f, err := os.OpenFile(filepath.Join(dir, journalName), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		return nil, fmt.Errorf("runbook: open journal: %w", err)
	}
	return &journal{dir: dir, f: f}, nil
}

func (j *journal) close() error { return j.f.Close() }

// append writes one event; sync makes it durable before returning (state
// changes are synced, program output is not).
func (j *journal) append(ev api.RunbookEvent, sync bool) error {
	b, err := json.Marshal(ev)
	if err != nil {
		return err
	}
	if _, err := j.f.Write(append(b, '\n')); err != nil {
		return fmt.Errorf("runbook: append journal %s: %w", j.f.Name(), err)
	}
	if sync {
		if err := j.f.Sync(); err != nil {
			return fmt.Errorf("runbook: sync journal %s: %w", j.f.Name(), err)
		}
	}
	return nil
}

// save writes the record atomically: temp file, fsync, rename, fsync dir.
func (j *journal) save(rb *api.Runbook) error {
	b, err := json.MarshalIndent(rb, "", "  ")
	if err != nil {
		return err
	}
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

// events reads the journal's events of runbook id, in order. A torn last
// line (a crash mid-write) is ignored.
func (j *journal) events(id string) ([]api.RunbookEvent, error) {
	f, err := os.Open(filepath.Join(j.dir, journalName))
	if err != nil {
		return nil, fmt.Errorf("runbook: read journal: %w", err)
	}
	defer f.Close()
	var out []api.RunbookEvent
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64<<10), 4<<20)
	needle := []byte(`"runbook":"` + id + `"`)
	for sc.Scan() {
		line := sc.Bytes()
		if !bytes.Contains(line, needle) {
			continue
		}
		var ev api.RunbookEvent
		if json.Unmarshal(line, &ev) != nil || ev.Runbook != id {
			continue
		}
		out = append(out, ev)
	}
	if err := sc.Err(); err != nil {
		return out, fmt.Errorf("runbook: read journal: %w", err)
	}
	return out, nil
}
