package gate

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"

	"github.com/ckanops/ckanops/api"
)

// AuditEntry is one line of the audit log (its wire type, shared with
// the console, is api.AuditEntry).
type AuditEntry = api.AuditEntry

// AuditLog is an append-only JSON-lines file. Every entry is synced to disk
// before Append returns, so a crash never loses an acknowledged change.
type AuditLog struct {
	mu sync.Mutex
	f  *os.File
}

// OpenAuditLog opens (creating if needed) the audit log at path for appending.
func OpenAuditLog(path string) (*AuditLog, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, fmt.Errorf("gate: audit dir for %s: %w", path, err)
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		return nil, fmt.Errorf("gate: open audit log %s: %w", path, err)
	}
	return &AuditLog{f: f}, nil
}

// Append writes e as one line and syncs it.
func (a *AuditLog) Append(e AuditEntry) error {
	b, err := json.Marshal(e)
	if err != nil {
		return err
	}
	b = append(b, '\n')
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, err := a.f.Write(b); err != nil {
		return fmt.Errorf("gate: append audit log %s: %w", a.f.Name(), err)
	}
	if err := a.f.Sync(); err != nil {
		return fmt.Errorf("gate: sync audit log %s: %w", a.f.Name(), err)
	}
	return nil
}

func (a *AuditLog) Close() error { return a.f.Close() }

// auditTailWindow is how much of the log's end Tail reads at most.
const auditTailWindow = 512 << 10

// Tail returns the last n entries, oldest first. A torn last line (a crash
// mid-write) and lines that do not parse are skipped.
func (a *AuditLog) Tail(n int) ([]AuditEntry, error) {
	f, err := os.Open(a.f.Name())
	if err != nil {
		return nil, fmt.Errorf("gate: read audit log: %w", err)
	}
	defer f.Close()
	size, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return nil, fmt.Errorf("gate: read audit log: %w", err)
	}
	off := max(0, size-auditTailWindow)
	buf := make([]byte, size-off)
	if _, err := f.ReadAt(buf, off); err != nil && err != io.EOF {
		return nil, fmt.Errorf("gate: read audit log: %w", err)
	}
	lines := bytes.Split(buf, []byte("\n"))
	if off > 0 && len(lines) > 0 {
		lines = lines[1:] // the window starts mid-line
	}
	out := []AuditEntry{}
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
