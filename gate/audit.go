package gate

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/ckanops/ckanops/api"
)

// AuditEntry is one line of the audit log (its wire type, shared with
// the console, is api.AuditEntry).
type AuditEntry = api.AuditEntry

// AuditLog is an append-only JSON-lines file. Every entry is synced to disk
// before Append returns, so a crash never loses an acknowledged change.
//
// It follows rotation: before each append it checks that its open file is
// still the one at its path, and opens the path anew (creating it) when the
// file was renamed, removed or replaced, as logrotate's default (create)
// mode does. Reopen does the same unconditionally, for SIGHUP. It remembers
// failed appends, for the gate probe and ckanops_audit_failures_total.
type AuditLog struct {
	path string

	mu       sync.Mutex
	f        *os.File  // the file appended to; after a failed reopen, the previous one
	failures uint64    // appends that failed, since the gate started
	since    time.Time // when appends started failing; zero while they succeed
	lastErr  error     // the last failed append's error
	closed   bool
}

// auditFileMode is the mode of an audit log the gate creates, before the
// umask; a reopened log gets its predecessor's mode.
const auditFileMode = 0o640

// OpenAuditLog opens (creating if needed) the audit log at path for appending.
func OpenAuditLog(path string) (*AuditLog, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, fmt.Errorf("gate: audit dir for %s: %w", path, err)
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, auditFileMode)
	if err != nil {
		return nil, fmt.Errorf("gate: open audit log %s: %w", path, err)
	}
	a := &AuditLog{path: path, f: f}
	openAuditLogs.add(a)
	return a, nil
}

// Path is the audit log's path.
func (a *AuditLog) Path() string { return a.path }

// Append writes e as one line and syncs it. A failure is remembered (see
// the gate probe) until an append succeeds again.
func (a *AuditLog) Append(e AuditEntry) error {
	b, err := json.Marshal(e)
	if err != nil {
		return err
	}
	b = append(b, '\n')
	a.mu.Lock()
	defer a.mu.Unlock()
	err = a.appendLocked(b)
	if err != nil {
		a.failures++
		if a.since.IsZero() {
			a.since = e.Time
			if a.since.IsZero() {
				a.since = time.Now().UTC()
			}
		}
		a.lastErr = err
		return err
	}
	a.since, a.lastErr = time.Time{}, nil
	return nil
}

func (a *AuditLog) appendLocked(b []byte) error {
	if a.closed {
		return fmt.Errorf("gate: append audit log %s: %w", a.path, os.ErrClosed)
	}
	// A log rotated away is reopened. If that fails, the entry still goes
	// to the previous file (so it is kept somewhere), and the append
	// counts as failed: the log at a.path does not hold it.
	follow := a.followLocked()
	err := a.writeLocked(b)
	switch {
	case follow != nil && err != nil:
		return fmt.Errorf("%v; %w", follow, err)
	case follow != nil:
		return fmt.Errorf("%w (the entry went to the file previously open there)", follow)
	}
	return err
}

func (a *AuditLog) writeLocked(b []byte) error {
	if _, err := a.f.Write(b); err != nil {
		return fmt.Errorf("gate: append audit log %s: %w", a.path, err)
	}
	if err := a.f.Sync(); err != nil {
		return fmt.Errorf("gate: sync audit log %s: %w", a.path, err)
	}
	return nil
}

// followLocked reopens the log when the file at a.path is not the open one.
func (a *AuditLog) followLocked() error {
	st, err := os.Stat(a.path)
	if err == nil {
		if fst, ferr := a.f.Stat(); ferr == nil && os.SameFile(st, fst) {
			return nil
		}
	}
	return a.reopenLocked()
}

// reopenLocked opens a.path anew (creating it with the open file's mode)
// and closes the previous file; on failure the previous file stays open.
func (a *AuditLog) reopenLocked() error {
	perm := os.FileMode(auditFileMode)
	if fst, err := a.f.Stat(); err == nil {
		perm = fst.Mode().Perm()
	}
	f, err := os.OpenFile(a.path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, perm)
	if err != nil {
		return fmt.Errorf("gate: reopen audit log %s: %w", a.path, err)
	}
	a.f.Close()
	a.f = f
	return nil
}

// Reopen opens the log's path anew, whatever is there (SIGHUP).
func (a *AuditLog) Reopen() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return nil
	}
	return a.reopenLocked()
}

func (a *AuditLog) Close() error {
	openAuditLogs.remove(a)
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return nil
	}
	a.closed = true
	return a.f.Close()
}

// auditState is what the gate probe and the metrics say of the log.
type auditState struct {
	failures uint64    // failed appends, ever
	since    time.Time // appends have failed since; zero while they succeed
	err      error     // the last failure
}

// state reads the log's write state; a nil log never fails.
func (a *AuditLog) state() auditState {
	if a == nil {
		return auditState{}
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	return auditState{failures: a.failures, since: a.since, err: a.lastErr}
}

// appendAudit appends e to the audit log, if there is one, and logs a
// failure; the error is for answers that must say so (a mode change's
// "audit" field).
func (g *Gate) appendAudit(e AuditEntry) error {
	if g.opts.Audit == nil {
		return nil
	}
	err := g.opts.Audit.Append(e)
	if err != nil {
		g.log.Error("audit log append failed", "err", err.Error(), "event", e.Event)
	}
	return err
}

// auditRegistry holds the process's open audit logs, so that the gate
// command's SIGHUP reaches them (ReopenAuditLogs).
type auditRegistry struct {
	mu   sync.Mutex
	logs map[*AuditLog]struct{}
}

var openAuditLogs = &auditRegistry{logs: map[*AuditLog]struct{}{}}

func (r *auditRegistry) add(a *AuditLog) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.logs[a] = struct{}{}
}

func (r *auditRegistry) remove(a *AuditLog) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.logs, a)
}

// ReopenAuditLogs reopens every audit log open in this process at its path
// (after logrotate, or any move of the file): what `ckanops gate` does on
// SIGHUP. It returns the paths reopened and what failed.
func ReopenAuditLogs() ([]string, error) {
	openAuditLogs.mu.Lock()
	logs := make([]*AuditLog, 0, len(openAuditLogs.logs))
	for a := range openAuditLogs.logs {
		logs = append(logs, a)
	}
	openAuditLogs.mu.Unlock()
	var paths []string
	var errs []error
	for _, a := range logs {
		if err := a.Reopen(); err != nil {
			errs = append(errs, err)
			continue
		}
		paths = append(paths, a.path)
	}
	return paths, errors.Join(errs...)
}

// auditTailWindow is how much of a file's end Tail reads at most.
const auditTailWindow = 512 << 10

// Tail returns the last n entries, oldest first, from the file now at the
// log's path, and from the file logrotate moved away (<path>.1) when the
// current one holds fewer than n. A torn last line (a crash mid-write) and
// lines that do not parse are skipped.
func (a *AuditLog) Tail(n int) ([]AuditEntry, error) {
	out, err := tailAuditFile(a.path, n)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("gate: read audit log: %w", err)
	}
	if len(out) < n {
		if older, err := tailAuditFile(a.path+".1", n-len(out)); err == nil {
			out = append(older, out...)
		}
	}
	if out == nil {
		out = []AuditEntry{}
	}
	return out, nil
}

// tailAuditFile returns the last n entries of one file, oldest first.
func tailAuditFile(path string, n int) ([]AuditEntry, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	size, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return nil, err
	}
	off := max(0, size-auditTailWindow)
	buf := make([]byte, size-off)
	if _, err := f.ReadAt(buf, off); err != nil && err != io.EOF {
		return nil, err
	}
	lines := bytes.Split(buf, []byte("\n"))
	if off > 0 && len(lines) > 0 {
		lines = lines[1:] // the window starts mid-line
	}
	var out []AuditEntry
	for i := len(lines) - 1; i >= 0 && len(out) < n; i-- {
		var e AuditEntry
		if len(bytes.TrimSpace(lines[i])) == 0 || json.Unmarshal(lines[i], &e) != nil {
			continue
		}
		out = append(out, e)
	}
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return out, nil
}
