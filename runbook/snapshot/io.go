package snapshot

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/ckanops/ckanops/api"
	"github.com/ckanops/ckanops/config"
)

// copyBufferSize is the size of the buffers the dumps and the archive
// stream through: large writes, few system calls.
const copyBufferSize = 1 << 20

// progressEvery is how often a running dump or archive reports its size.
const progressEvery = 5 * time.Second

// sink is a snapshot file being written: buffered, hashed and counted as
// it goes, so that it is never read back to be hashed.
type sink struct {
	path string
	f    *os.File
	bw   *bufio.Writer
	h    hash.Hash
	n    int64 // bytes accepted
}

// createSink creates path, which must not exist, readable by its owner
// only: a dump holds every user's password hash.
func createSink(path string) (*sink, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, err
	}
	return &sink{path: path, f: f, bw: bufio.NewWriterSize(f, copyBufferSize), h: sha256.New()}, nil
}

func (s *sink) Write(p []byte) (int, error) {
	n, err := s.bw.Write(p)
	s.h.Write(p[:n])
	s.n += int64(n)
	return n, err
}

// finish flushes, syncs and closes the file, and returns its size and
// SHA-256.
func (s *sink) finish() (size int64, sum string, err error) {
	if err := s.bw.Flush(); err != nil {
		return 0, "", err
	}
	if err := s.f.Sync(); err != nil {
		return 0, "", err
	}
	f := s.f
	s.f = nil
	if err := f.Close(); err != nil {
		return 0, "", err
	}
	return s.n, hex.EncodeToString(s.h.Sum(nil)), nil
}

// abort closes the file if finish did not; the temporary directory goes
// with it.
func (s *sink) abort() {
	if s.f != nil {
		s.f.Close()
		s.f = nil
	}
}

// writeHint adds what to do to a write error that says the disk is full.
func writeHint(err error, dir string) error {
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
		return fmt.Errorf("%w: the file system of %s is full: free space there or set [snapshot] dir to a larger one", err, dir)
	}
	return err
}

// syncDir fsyncs a directory, so that the entries made in it last.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// output sends progress lines to the caller's function, one at a time
// (the dumps and the archive run concurrently), with every secret of the
// snapshot's databases scrubbed from them; and progress reports to the
// caller's progress function, one at a time too.
type output struct {
	mu       sync.Mutex
	f        func(string)
	progress func(api.Progress)
	secrets  []config.SecretURL
}

// progressReportEvery is how often, at most, one part reports its
// progress (Spec.Progress).
const progressReportEvery = 250 * time.Millisecond

// meter reports one part's progress: at most every progressReportEvery,
// and always its end. A nil meter, or one of an output without a
// progress function, reports nothing.
type meter struct {
	out               *output
	part              string
	total, totalFiles int64
	start, last       time.Time
	ended             bool
}

// meter starts reporting the progress of part, of total bytes and
// totalFiles files (0: unknown), with a first report at zero.
func (o *output) meter(part string, total, totalFiles int64) *meter {
	if o == nil || o.progress == nil {
		return nil
	}
	m := &meter{out: o, part: part, total: total, totalFiles: totalFiles, start: time.Now()}
	m.report(0, 0, false)
	return m
}

// update reports done bytes and files, unless it reported less than
// progressReportEvery ago.
func (m *meter) update(done, files int64) {
	if m == nil || m.ended || time.Since(m.last) < progressReportEvery {
		return
	}
	m.report(done, files, false)
}

// end reports the part's last progress, once.
func (m *meter) end(done, files int64) {
	if m == nil || m.ended {
		return
	}
	m.ended = true
	m.report(done, files, true)
}

func (m *meter) report(done, files int64, ended bool) {
	m.last = time.Now()
	p := api.NewProgress(m.part, done, m.total, m.last.Sub(m.start))
	p.DoneFiles, p.TotalFiles, p.Ended = files, m.totalFiles, ended
	m.out.mu.Lock()
	defer m.out.mu.Unlock()
	m.out.progress(p)
}

func (o *output) line(format string, args ...any) {
	if o == nil || o.f == nil {
		return
	}
	s := scrub(fmt.Sprintf(format, args...), o.secrets...)
	o.mu.Lock()
	defer o.mu.Unlock()
	o.f(s)
}

// scrub replaces, in msg, each URL with its redacted form and each of its
// secret parts (password, escaped or not) with xxxxx. Secrets shorter than
// three characters are left alone rather than blank out letters all over
// a message.
func scrub(msg string, urls ...config.SecretURL) string {
	for _, u := range urls {
		raw := u.Reveal()
		if raw == "" {
			continue
		}
		msg = strings.ReplaceAll(msg, raw, u.String())
		for _, s := range u.Secrets() {
			if len(s) >= 3 {
				msg = strings.ReplaceAll(msg, s, "xxxxx")
			}
		}
	}
	return msg
}
