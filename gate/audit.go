package gate

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// AuditEntry is one line of the audit log.
type AuditEntry struct {
	Time    time.Time `json:"time"`
	Event   string    `json:"event"` // "mode" for a mode change, "bypass-write" for a write let through in down mode
	Actor   string    `json:"actor"`
	From    string    `json:"from,omitempty"`
	To      string    `json:"to,omitempty"`
	Version int64     `json:"version,omitempty"`
	Message string    `json:"message,omitempty"`
	Reason  string    `json:"reason,omitempty"`
	Method  string    `json:"method,omitempty"`
	Path    string    `json:"path,omitempty"`
	Remote  string    `json:"remote"`
}

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
