package snapshot

// Parallel dumps of large databases.
//
// A database larger than Spec.ParallelThreshold (pg_database_size, read
// with the "before" counters) is dumped with pg_dump --format=directory
// --jobs=N into <name>.dir/ (DumpDirName): pg_dump's jobs share one
// synchronized snapshot of the database, so the dump is as consistent as
// a custom-format one. pg_dump writes the files itself; once it has
// exited each file is read back, hashed, synced and listed in the
// manifest (kind KindPGDumpDir, manifest format FormatDumpDir), so that
// verify checks every one of them. Restore runs pg_restore --jobs, which
// cannot be one transaction (see restoreArgs).

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/ckanops/ckanops/internal/human"
)

// DumpDirName is the directory of a database's parallel dump in a
// snapshot: ckan_db.dir, <name>.dir.
func DumpDirName(name string) string { return name + ".dir" }

// dumpTOCName is the table of contents of a directory dump, the file
// every such dump has.
const dumpTOCName = "toc.dat"

// dumpDirArgs is pg_dump's argv for a directory dump into path with jobs
// parallel jobs: never the password.
func (db *database) dumpDirArgs(path string, jobs int) []string {
	return []string{"--format=directory", "--jobs=" + strconv.Itoa(jobs), "--no-password", "--file=" + path, "--dbname=" + db.dumpURL}
}

// dumpDir runs pg_dump --format=directory --jobs=jobs into
// dir/<source>.dir, then hashes and syncs every file it wrote and returns
// them, sorted by name. Its progress is the size of the directory, read
// now and then, against estimate (the database's size: an over-estimate,
// as the files are compressed and hold no index). Cancelling ctx kills
// pg_dump and its jobs (its whole process group). exited is called when
// pg_dump has exited.
func dumpDir(ctx context.Context, db *database, pgDump, dir string, jobs int, estimate int64, out *output, exited func()) ([]File, error) {
	name := DumpDirName(db.source)
	path := filepath.Join(dir, name)
	mt := out.meter("pg_dump "+db.source, max(estimate, 0), 0)
	var written int64
	defer func() { mt.end(written, 0) }()
	out.line("pg_dump %s: %s is larger than [snapshot] parallel_threshold_bytes: dumping it with %d parallel jobs into %s/",
		db.source, human.Bytes(estimate), jobs, name)

	cmd := exec.CommandContext(ctx, pgDump, db.dumpDirArgs(path, jobs)...)
	cmd.Env = db.dumpEnv()
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = killWait
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("pg_dump of %s: cannot run %s: %w", db.what(), pgDump, err)
	}
	tail := make(chan []string, 1)
	go func() { tail <- readStderr(stderr, db, out) }()

	// The directory's size, now and then, while pg_dump runs.
	done := make(chan struct{})
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		t := time.NewTicker(progressReportEvery)
		defer t.Stop()
		last := time.Now()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				n := dirSize(path)
				mt.update(n, 0)
				if time.Since(last) >= progressEvery {
					last = time.Now()
					out.line("pg_dump %s: %s", db.source, human.Bytes(n))
				}
			}
		}
	}()
	lines := <-tail
	waitErr := cmd.Wait()
	close(done)
	<-watched
	if exited != nil {
		exited()
	}
	switch {
	case ctx.Err() != nil:
		return nil, ctx.Err()
	case waitErr != nil:
		msg := fmt.Sprintf("pg_dump of %s failed with %v", db.what(), waitErr)
		if len(lines) > 0 {
			msg += ": " + strings.Join(lines, "; ")
		}
		return nil, errors.New(msg)
	}

	entries, err := os.ReadDir(path)
	if err != nil {
		return nil, fmt.Errorf("pg_dump of %s: reading %s: %w", db.what(), name, err)
	}
	var files []File
	for _, e := range entries {
		if !e.Type().IsRegular() {
			return nil, fmt.Errorf("pg_dump of %s: %s/%s is not a regular file", db.what(), name, e.Name())
		}
		f := File{Name: name + "/" + e.Name(), Kind: KindPGDumpDir, Source: db.source}
		if f.Size, f.SHA256, err = hashSync(ctx, filepath.Join(path, e.Name())); err != nil {
			return nil, cancelled(ctx, "hashing the dump", fmt.Errorf("pg_dump of %s: %s: %w", db.what(), f.Name, writeHint(err, filepath.Dir(dir))))
		}
		written += f.Size
		files = append(files, f)
	}
	if !slices.ContainsFunc(files, func(f File) bool { return f.Name == name+"/"+dumpTOCName }) {
		return nil, fmt.Errorf("pg_dump of %s exited 0 but wrote no %s/%s", db.what(), name, dumpTOCName)
	}
	if err := syncDir(path); err != nil {
		return nil, fmt.Errorf("pg_dump of %s: syncing %s: %w", db.what(), name, err)
	}
	out.line("pg_dump %s: done, %d files, %s", db.source, len(files), human.Bytes(written))
	return files, nil
}

// hashSync reads the file at path to its end, syncs it and returns its
// size and SHA-256.
func hashSync(ctx context.Context, path string) (int64, string, error) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return 0, "", err
	}
	defer f.Close()
	if err := f.Chmod(0o600); err != nil { // a dump holds every user's password hash
		return 0, "", err
	}
	h := sha256.New()
	n, err := io.CopyBuffer(h, ctxReader{ctx, f}, make([]byte, copyBufferSize))
	if err != nil {
		return 0, "", err
	}
	if err := f.Sync(); err != nil {
		return 0, "", err
	}
	return n, hex.EncodeToString(h.Sum(nil)), f.Close()
}

// ctxReader stops reading once ctx is done.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// dirSize sums the sizes of the files directly in dir; 0 when it cannot
// be read (pg_dump has not created it yet).
func dirSize(dir string) int64 {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return 0
	}
	var n int64
	for _, e := range entries {
		if fi, err := e.Info(); err == nil && fi.Mode().IsRegular() {
			n += fi.Size()
		}
	}
	return n
}
