package gate

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"syscall"

	"github.com/ckanops/ckanops/internal/atomicfile"
)

// Store holds a site's mode record. Implementations must make
// CompareAndSwap atomic: two gates or two operators can never both win.
type Store interface {
	// Kind names the store for status and metrics ("file", "redis").
	Kind() string
	// Load returns the stored record. A store that was never written
	// returns ok == false and no error.
	Load(ctx context.Context) (rec Record, ok bool, err error)
	// CompareAndSwap stores next if the stored version is expect (0 for a
	// store never written). On a mismatch it returns a *ConflictError.
	CompareAndSwap(ctx context.Context, expect int64, next Record) error
	Close() error
}

// FileStore keeps the record in one JSON file, written atomically (temp
// file, fsync, rename, fsync of the directory), and holds an exclusive lock
// beside it so that two gates never share one state file by mistake.
type FileStore struct {
	path string
	mu   sync.Mutex
	lock *os.File
}

// OpenFileStore opens (and locks) the state file at path, creating its
// directory if needed. The file itself is created on the first change.
func OpenFileStore(path string) (*FileStore, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, fmt.Errorf("gate: state dir for %s: %w", path, err)
	}
	lock, err := os.OpenFile(path+".lock", os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("gate: state lock %s.lock: %w", path, err)
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		lock.Close()
		return nil, fmt.Errorf("gate: state file %s is in use by another gate process (lock %s.lock held): give each gate its own [state] file, or use [state] redis_url to share the mode", path, path)
	}
	return &FileStore{path: path, lock: lock}, nil
}

func (s *FileStore) Kind() string { return "file" }

// Path is the state file's path.
func (s *FileStore) Path() string { return s.path }

func (s *FileStore) Load(context.Context) (Record, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.load()
}

func (s *FileStore) load() (Record, bool, error) {
	b, err := os.ReadFile(s.path)
	if errors.Is(err, fs.ErrNotExist) {
		return Record{}, false, nil
	}
	if err != nil {
		return Record{}, false, fmt.Errorf("gate: read state file %s: %w", s.path, err)
	}
	var rec Record
	if err := json.Unmarshal(b, &rec); err != nil {
		return Record{}, false, fmt.Errorf("gate: state file %s is corrupt (%v): fix or remove it; the gate will not guess the mode", s.path, err)
	}
	if err := rec.validate(); err != nil {
		return Record{}, false, fmt.Errorf("gate: state file %s is invalid (%v): fix or remove it; the gate will not guess the mode", s.path, err)
	}
	return rec, true, nil
}

func (s *FileStore) CompareAndSwap(_ context.Context, expect int64, next Record) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	cur, ok, err := s.load()
	if err != nil {
		return err
	}
	if !ok {
		cur = Record{}
	}
	if cur.Version != expect {
		return &ConflictError{Current: cur}
	}
	return s.Write(next)
}

// Write stores rec unconditionally and atomically. The Redis store uses it
// to keep the gate's last known record on local disk.
func (s *FileStore) Write(rec Record) error {
	b, err := json.MarshalIndent(rec, "", "  ")
	if err != nil {
		return err
	}
	if err := atomicfile.Write(s.path, append(b, '\n'), 0o640); err != nil {
		return fmt.Errorf("gate: %w", err)
	}
	return nil
}

func (s *FileStore) Close() error {
	if s.lock == nil {
		return nil
	}
	err := s.lock.Close() // closing releases the flock
	s.lock = nil
	return err
}
