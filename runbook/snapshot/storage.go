package snapshot

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/ckanops/ckanops/internal/human"
)

// walkStorage records every entry under root (a resolved directory), keyed
// by its slash-separated path relative to root, and summarises the tree.
// An entry that disappears while it is being looked at is left out: the
// walk after the snapshot sees the difference.
//
// Directories are read by walkWorkers goroutines at once: on a cold cache
// a walk waits on the disk for each directory and inode, and a disk
// serves several requests faster than one after the other (measured in
// bench/RESULTS.md, "Snapshot: 1 GB of databases, 5 GB of storage"). The
// result does not depend on the order.
func walkStorage(ctx context.Context, root string) (map[string]entry, StorageTree, error) {
	type dir struct{ path, rel string }
	var (
		mu      sync.Mutex
		cond    = sync.NewCond(&mu)
		queue   = []dir{{root, ""}} // directories to read
		busy    int                 // workers reading one
		failed  error
		entries = map[string]entry{}
		tree    StorageTree
		wg      sync.WaitGroup
	)
	// read lists one directory: its entries, and its subdirectories to
	// read next.
	read := func(d dir) (map[string]entry, []dir, error) {
		list, err := os.ReadDir(d.path)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) && d.path != root {
				return nil, nil, nil
			}
			return nil, nil, err
		}
		found := make(map[string]entry, len(list))
		var subdirs []dir
		for _, de := range list {
			if err := ctx.Err(); err != nil {
				return nil, nil, err
			}
			info, err := de.Info()
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			if err != nil {
				return nil, nil, err
			}
			rel := de.Name()
			if d.rel != "" {
				rel = d.rel + "/" + rel
			}
			e := entry{mode: info.Mode()}
			if info.IsDir() {
				subdirs = append(subdirs, dir{filepath.Join(d.path, de.Name()), rel})
			} else {
				e.size, e.mtime = info.Size(), info.ModTime().UnixNano()
			}
			found[rel] = e
		}
		return found, subdirs, nil
	}
	for range walkWorkers {
		wg.Go(func() {
			mu.Lock()
			defer mu.Unlock()
			for {
				for len(queue) == 0 && busy > 0 && failed == nil {
					cond.Wait()
				}
				if len(queue) == 0 || failed != nil {
					cond.Broadcast()
					return
				}
				d := queue[len(queue)-1]
				queue = queue[:len(queue)-1]
				busy++
				mu.Unlock()
				found, subdirs, err := read(d)
				mu.Lock()
				busy--
				if err != nil && failed == nil {
					failed = err
				}
				for k, e := range found {
					entries[k] = e
					if e.mode.IsRegular() {
						tree.Files++
						tree.Bytes += e.size
					}
				}
				queue = append(queue, subdirs...)
				cond.Broadcast()
			}
		})
	}
	wg.Wait()
	if failed != nil {
		return nil, StorageTree{}, failed
	}
	tree.Digest = digest(entries)
	return entries, tree, nil
}

// walkWorkers is how many directories walkStorage reads at once.
const walkWorkers = 16

// walkTree calls fn for everything below root (not root itself), in
// lexical order, with its path, its slash-separated path relative to root,
// and its Lstat information. An entry that disappears while it is looked
// at is skipped; ctx ends the walk.
func walkTree(ctx context.Context, root string, fn func(path, rel string, info fs.FileInfo) error) error {
	return filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) && path != root {
				return nil
			}
			return err
		}
		if path == root {
			return nil
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		info, err := d.Info()
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, path)
		if err != nil {
			return err
		}
		return fn(path, filepath.ToSlash(rel), info)
	})
}

// digest is StorageTree.Digest of entries.
func digest(entries map[string]entry) string {
	paths := make([]string, 0, len(entries))
	for p := range entries {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	h := sha256.New()
	var line []byte
	for _, p := range paths {
		e := entries[p]
		line = strconv.AppendQuote(line[:0], p)
		line = append(line, ' ')
		line = strconv.AppendInt(line, e.size, 10)
		line = append(line, ' ')
		line = strconv.AppendInt(line, e.mtime, 10)
		line = append(line, ' ')
		line = strconv.AppendUint(line, uint64(e.mode), 8)
		line = append(line, '\n')
		h.Write(line)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// writeTar archives the tree under root (a resolved directory) into
// dir/name: directories, regular files and symbolic links (as
// links), named relative to root, with their modes and modification
// times (to the second, as tar does; PAX headers only where a name or a
// size needs them). Sockets, pipes and devices are left out and said so.
// The archive is hashed as it is written. mt, if not nil, gets the bytes
// of content and the files archived so far.
func writeTar(ctx context.Context, root, dir, name, label string, out *output, mt *meter) (File, error) {
	f := File{Name: name, Kind: KindTar, Source: SourceStorage}
	s, err := createSink(filepath.Join(dir, name))
	if err != nil {
		return f, fmt.Errorf("archive of %s: %w", label, err)
	}
	defer s.abort()
	tw := tar.NewWriter(s)
	buf := make([]byte, copyBufferSize)
	var files, bytes, content int64 // content: bytes, and what the current file has written
	defer func() { mt.end(content, files) }()
	onWrite := func(n int) {
		content += int64(n)
		mt.update(content, files)
	}
	lastReport := time.Now()
	err = walkTree(ctx, root, func(path, rel string, info fs.FileInfo) error {
		link := ""
		switch {
		case info.Mode()&fs.ModeSymlink != 0:
			if link, err = os.Readlink(path); err != nil {
				if errors.Is(err, fs.ErrNotExist) {
					return nil
				}
				return err
			}
		case !info.IsDir() && !info.Mode().IsRegular():
			out.line("archive of %s: left out %s (%s, not a file, directory or link)", label, rel, info.Mode().Type())
			return nil
		}
		hdr, err := tar.FileInfoHeader(info, link)
		if err != nil {
			return fmt.Errorf("%s: %w", rel, err)
		}
		hdr.Name = rel
		if info.IsDir() {
			hdr.Name += "/"
		}
		if !info.Mode().IsRegular() {
			return tw.WriteHeader(hdr)
		}
		n, archived, err := archiveFile(tw, hdr, path, buf, onWrite)
		content = bytes
		if err != nil || !archived {
			return err
		}
		if n < hdr.Size {
			out.line("archive of %s: %s shrank while it was archived; padded with zeros (the verdict will name it)", label, rel)
		}
		files++
		bytes += hdr.Size
		content = bytes
		mt.update(content, files)
		if time.Since(lastReport) >= progressEvery {
			lastReport = time.Now()
			out.line("archive of %s: %d files, %s", label, files, human.Bytes(s.n))
		}
		return nil
	})
	if err == nil {
		err = tw.Close()
	}
	if err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			return f, ctxErr
		}
		return f, fmt.Errorf("archive of %s: %w", label, writeHint(err, filepath.Dir(dir)))
	}
	if f.Size, f.SHA256, err = s.finish(); err != nil {
		return f, fmt.Errorf("archive of %s: %w", label, writeHint(err, filepath.Dir(dir)))
	}
	out.line("archive of %s: done, %d files (%s), %s", label, files, human.Bytes(bytes), human.Bytes(f.Size))
	return f, nil
}

// archiveFile writes one regular file: its header and hdr.Size bytes of
// content. A file that shrank since it was looked at is padded with zeros
// (n says how much was real); one that grew is cut at hdr.Size. A file
// gone since the walk saw it is left out (archived is false). onWrite, if
// not nil, gets the size of each write of content.
func archiveFile(tw *tar.Writer, hdr *tar.Header, path string, buf []byte, onWrite func(int)) (n int64, archived bool, err error) {
	src, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, err
	}
	defer src.Close()
	if err := tw.WriteHeader(hdr); err != nil {
		return 0, false, err
	}
	var dst io.Writer = tw
	if onWrite != nil {
		dst = countingWriter{tw, onWrite}
	}
	// LimitReader also hides src's WriterTo, so that buf is the buffer used.
	n, err = io.CopyBuffer(dst, io.LimitReader(src, hdr.Size), buf)
	if err != nil {
		return n, false, err
	}
	if n < hdr.Size {
		clear(buf)
		for left := hdr.Size - n; left > 0; {
			k := min(left, int64(len(buf)))
			if _, err := dst.Write(buf[:k]); err != nil {
				return n, false, err
			}
			left -= k
		}
	}
	return n, true, nil
}

// countingWriter passes writes to w and their sizes to f.
type countingWriter struct {
	w io.Writer
	f func(int)
}

func (c countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.f(n)
	return n, err
}
