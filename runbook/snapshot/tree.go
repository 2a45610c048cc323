package snapshot

// Storages kept as directory trees (Spec.Incremental, KindTree, format
// FormatTree).
//
// The storage's files are kept at their relative paths in the snapshot's
// directory storage/ (storage-<name>/). A file the site's previous
// consistent snapshot of the same storage already holds, unchanged, is a
// hard link to that snapshot's copy: same path, and the source file's
// size, modification time, inode number and change time as that snapshot
// recorded them. Any other file is read, hashed and copied. Every
// snapshot stays whole on its own: removing the previous one removes a
// name of the shared inode, not its data. The manifest's Tree lists every
// entry with its metadata and, for files, its SHA-256, so that Verify
// re-hashes every file in this snapshot's directory and Restore needs
// nothing else.
//
// Where the previous snapshot lies on another file system (or os.Link
// says EXDEV), every file is copied, and Tree.Fallback and a line of the
// output say so.

import (
	"archive/tar"
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/ckanops/ckanops/internal/human"
)

// Types of a TreeEntry.
const (
	treeDir     = "dir"
	treeFile    = "file"
	treeSymlink = "symlink"
)

// Tree is what a storage kept as a directory tree holds.
type Tree struct {
	// ReusedFrom names the previous snapshot (its directory's name, beside
	// this one) whose copies the reused files were hard-linked to when they
	// were taken; empty when none was reused. The links do not depend on
	// it: it may be gone.
	ReusedFrom string `json:"reused_from,omitempty"`
	// Fallback says why files that could have been linked were copied
	// (the previous snapshot is on another file system); empty otherwise.
	Fallback    string `json:"fallback,omitempty"`
	Reused      int64  `json:"reused"` // files hard-linked to ReusedFrom's copies
	ReusedBytes int64  `json:"reused_bytes"`
	Copied      int64  `json:"copied"` // files read, hashed and copied
	CopiedBytes int64  `json:"copied_bytes"`
	// Entries lists every directory, file and symbolic link, in the order
	// of the walk (lexical, a directory before its entries).
	Entries []TreeEntry `json:"entries"`
}

// TreeEntry is one entry of a Tree.
type TreeEntry struct {
	Path   string `json:"path"` // slash-separated, relative to the storage
	Type   string `json:"type"` // dir, file or symlink
	Mode   int64  `json:"mode"` // permission, setuid, setgid and sticky bits (Unix, as tar records them)
	MTime  int64  `json:"mtime"`
	Size   int64  `json:"size,omitempty"`
	SHA256 string `json:"sha256,omitempty"` // a file's, hex
	Link   string `json:"link,omitempty"`   // a symbolic link's target
	UID    int    `json:"uid"`
	GID    int    `json:"gid"`
	Uname  string `json:"uname,omitempty"`
	Gname  string `json:"gname,omitempty"`
	// Ino and CTime are the source file's inode number and change time
	// (ns) as the walk saw them before the copy: with Size, MTime and
	// Path, what tells the next snapshot the file is unchanged.
	Ino   uint64 `json:"ino,omitempty"`
	CTime int64  `json:"ctime,omitempty"`
	// Reused: a hard link to the copy of Tree.ReusedFrom, whose SHA-256
	// it keeps.
	Reused bool `json:"reused,omitempty"`
}

// TreeDigest is the SHA256 of a tree's File: the SHA-256 of one line per
// entry, in order: the quoted path, the type, the mode (octal), the size,
// the SHA-256 and the quoted link target.
func TreeDigest(entries []TreeEntry) string {
	h := sha256.New()
	var line []byte
	for _, e := range entries {
		line = strconv.AppendQuote(line[:0], e.Path)
		line = append(line, ' ')
		line = append(line, e.Type...)
		line = append(line, ' ')
		line = strconv.AppendInt(line, e.Mode, 8)
		line = append(line, ' ')
		line = strconv.AppendInt(line, e.Size, 10)
		line = append(line, ' ')
		line = append(line, e.SHA256...)
		line = append(line, ' ')
		line = strconv.AppendQuote(line, e.Link)
		line = append(line, '\n')
		h.Write(line)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// validate checks a tree against its file's record.
func (t *Tree) validate(f File) error {
	if t.ReusedFrom != "" && (strings.ContainsAny(t.ReusedFrom, `/\`) || strings.HasPrefix(t.ReusedFrom, ".")) {
		return fmt.Errorf("reused_from %q is not a snapshot's directory name", t.ReusedFrom)
	}
	seen := map[string]bool{}
	var size int64
	for _, e := range t.Entries {
		if e.Path == "" || e.Path == "." || path.IsAbs(e.Path) || path.Clean(e.Path) != e.Path || !filepath.IsLocal(filepath.FromSlash(e.Path)) {
			return fmt.Errorf("entry %q is not a clean relative path", e.Path)
		}
		if seen[e.Path] {
			return fmt.Errorf("entry %s listed twice", e.Path)
		}
		seen[e.Path] = true
		switch e.Type {
		case treeFile:
			if h, err := hex.DecodeString(e.SHA256); err != nil || len(h) != 32 {
				return fmt.Errorf("entry %s: sha256 %q is not 64 hex digits", e.Path, e.SHA256)
			}
			if e.Size < 0 {
				return fmt.Errorf("entry %s: negative size", e.Path)
			}
			size += e.Size
		case treeDir, treeSymlink:
			if e.Size != 0 || e.SHA256 != "" || e.Reused {
				return fmt.Errorf("entry %s: a %s has no size, sha256 or reuse", e.Path, e.Type)
			}
		default:
			return fmt.Errorf("entry %s: type %q is not %s, %s or %s", e.Path, e.Type, treeDir, treeFile, treeSymlink)
		}
		if e.Reused && t.ReusedFrom == "" {
			return fmt.Errorf("entry %s is reused, but reused_from is empty", e.Path)
		}
	}
	if size != f.Size {
		return fmt.Errorf("its files hold %d bytes, the file record says %d", size, f.Size)
	}
	if d := TreeDigest(t.Entries); d != f.SHA256 {
		return fmt.Errorf("its entries digest to %s, the file record says %s", d, f.SHA256)
	}
	return nil
}

// prevTree is the previous snapshot's copy of a storage.
type prevTree struct {
	name    string // the snapshot's directory name
	dir     string // its tree's directory
	entries map[string]*TreeEntry
}

// previous returns the site's newest consistent snapshot in Dir, or nil.
func (p *plan) previous() *Entry {
	list, err := List(p.Dir)
	if err != nil {
		p.out.line("cannot list the snapshots in %s (%v): every file is copied", p.Dir, err)
		return nil
	}
	for _, e := range list {
		if e.Manifest.Site == p.Site && e.Manifest.Verdict == Consistent {
			return &e
		}
	}
	return nil
}

// prevTreeOf is prev's copy of the storage name, or nil: none when prev
// kept it as a tar, or took it from another directory (path, as
// configured).
func prevTreeOf(prev *Entry, name, path string) *prevTree {
	if prev == nil {
		return nil
	}
	rec := prev.Manifest.StorageByName(name)
	if rec == nil || rec.Tree == nil || rec.Path != path {
		return nil
	}
	pt := &prevTree{name: filepath.Base(prev.Dir), dir: filepath.Join(prev.Dir, rec.File), entries: map[string]*TreeEntry{}}
	for i := range rec.Tree.Entries {
		e := &rec.Tree.Entries[i]
		if e.Type == treeFile {
			pt.entries[e.Path] = e
		}
	}
	return pt
}

// treeWriter writes one storage's tree.
type treeWriter struct {
	root, dest string // the storage (resolved) and the tree's directory in the snapshot
	label      string
	out        *output
	mt         *meter
	prev       *prevTree
	link       func(oldname, newname string) error
	tree       *Tree
	buf        []byte
	done, n    int64 // bytes copied or linked, files
	linkFailed bool  // a link failed other than across devices: said once
}

// writeTree copies the tree under root (a resolved directory) into
// dir/name, hard-linking the files unchanged since prev (nil: none), and
// returns its File and Tree. link is os.Link but in tests. The file
// system is synced (syncfs) once at the end, as the tar is fsynced.
func writeTree(ctx context.Context, root, dir, name, label string, prev *prevTree, link func(string, string) error, out *output, mt *meter) (File, *Tree, error) {
	f := File{Name: name, Kind: KindTree, Source: SourceStorage}
	w := &treeWriter{root: root, dest: filepath.Join(dir, name), label: label, out: out, mt: mt, prev: prev, link: link,
		tree: &Tree{Entries: []TreeEntry{}}, buf: make([]byte, copyBufferSize)}
	defer func() { mt.end(w.done, w.n) }()
	if err := os.Mkdir(w.dest, 0o700); err != nil {
		return f, nil, fmt.Errorf("copy of %s: %w", label, writeHint(err, dir))
	}
	if prev != nil {
		w.checkDevice(dir)
	}
	last := time.Now()
	err := walkTree(ctx, root, func(p, rel string, info fs.FileInfo) error {
		if err := w.entry(p, rel, info); err != nil {
			return err
		}
		if time.Since(last) >= progressEvery {
			last = time.Now()
			out.line("copy of %s: %d files, %s (%d linked, %d copied)", label, w.n, human.Bytes(w.done), w.tree.Reused, w.tree.Copied)
		}
		return nil
	})
	if err == nil {
		err = syncFS(w.dest)
	}
	if err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			return f, nil, ctxErr
		}
		return f, nil, fmt.Errorf("copy of %s: %w", label, writeHint(err, filepath.Dir(dir)))
	}
	if w.tree.Reused > 0 {
		w.tree.ReusedFrom = prev.name
	}
	f.Size = w.tree.ReusedBytes + w.tree.CopiedBytes
	f.SHA256 = TreeDigest(w.tree.Entries)
	from := ""
	if w.tree.Reused > 0 {
		from = fmt.Sprintf(" (%d files, %s, linked to %s)", w.tree.Reused, human.Bytes(w.tree.ReusedBytes), prev.name)
	}
	out.line("copy of %s: done, %d files (%s): %d copied (%s)%s", label, w.n, human.Bytes(f.Size), w.tree.Copied, human.Bytes(w.tree.CopiedBytes), from)
	return f, w.tree, nil
}

// checkDevice falls back to copying everything when the previous
// snapshot's tree is on another file system than dir.
func (w *treeWriter) checkDevice(dir string) {
	a, errA := os.Stat(w.prev.dir)
	b, errB := os.Stat(dir)
	if errA != nil || errB != nil {
		w.fallback(fmt.Sprintf("cannot look at %s (%v)", w.prev.dir, errors.Join(errA, errB)))
		return
	}
	sa, okA := a.Sys().(*syscall.Stat_t)
	sb, okB := b.Sys().(*syscall.Stat_t)
	if okA && okB && sa.Dev != sb.Dev {
		w.fallback(fmt.Sprintf("the previous snapshot %s is on another file system", w.prev.name))
	}
}

// fallback gives up linking: every file is copied from now on.
func (w *treeWriter) fallback(why string) {
	w.tree.Fallback = why + ": every file copied, none hard-linked"
	w.out.line("copy of %s: %s", w.label, w.tree.Fallback)
	w.prev = nil
}

// entry records and writes one entry of the walk.
func (w *treeWriter) entry(p, rel string, info fs.FileInfo) error {
	link := ""
	if info.Mode()&fs.ModeSymlink != 0 {
		var err error
		if link, err = os.Readlink(p); err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
	} else if !info.IsDir() && !info.Mode().IsRegular() {
		w.out.line("copy of %s: left out %s (%s, not a file, directory or link)", w.label, rel, info.Mode().Type())
		return nil
	}
	hdr, err := tar.FileInfoHeader(info, link)
	if err != nil {
		return fmt.Errorf("%s: %w", rel, err)
	}
	e := TreeEntry{Path: rel, Mode: hdr.Mode & 0o7777, MTime: info.ModTime().UnixNano(), Link: link,
		UID: hdr.Uid, GID: hdr.Gid, Uname: hdr.Uname, Gname: hdr.Gname}
	dest := filepath.Join(w.dest, filepath.FromSlash(rel))
	switch {
	case info.IsDir():
		e.Type = treeDir
		if err := os.Mkdir(dest, 0o700); err != nil {
			return err
		}
	case info.Mode()&fs.ModeSymlink != 0:
		e.Type = treeSymlink
		if err := os.Symlink(link, dest); err != nil {
			return err
		}
	default:
		e.Type, e.Size = treeFile, info.Size()
		if st, ok := info.Sys().(*syscall.Stat_t); ok {
			e.Ino, e.CTime = st.Ino, st.Ctim.Nano()
		}
		stored, err := w.file(p, dest, &e)
		if err != nil || !stored {
			return err
		}
		w.n++
		w.mt.update(w.done, w.n)
	}
	w.tree.Entries = append(w.tree.Entries, e)
	return nil
}

// file links or copies one regular file; stored is false when it is gone
// since the walk saw it.
func (w *treeWriter) file(src, dest string, e *TreeEntry) (stored bool, err error) {
	if w.prev != nil {
		if pe := w.prev.entries[e.Path]; pe != nil && pe.Ino != 0 && pe.Ino == e.Ino && pe.CTime == e.CTime && pe.Size == e.Size && pe.MTime == e.MTime {
			old := filepath.Join(w.prev.dir, filepath.FromSlash(e.Path))
			fi, err := os.Lstat(old)
			if err == nil && fi.Mode().IsRegular() && fi.Size() == e.Size {
				err = w.link(old, dest)
			} else if err == nil {
				err = errors.New("not the file the manifest lists")
			}
			switch {
			case err == nil:
				e.SHA256, e.Reused = pe.SHA256, true
				w.tree.Reused++
				w.tree.ReusedBytes += e.Size
				w.done += e.Size
				return true, nil
			case errors.Is(err, syscall.EXDEV):
				w.fallback(fmt.Sprintf("cannot hard-link to the previous snapshot %s (%v)", w.prev.name, unwrapLink(err)))
			case !w.linkFailed:
				w.linkFailed = true
				w.out.line("copy of %s: cannot hard-link %s to the previous snapshot's copy (%v): copied (and any other such file)", w.label, e.Path, unwrapLink(err))
			}
		}
	}
	in, err := os.Open(src)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	defer in.Close()
	out, err := os.OpenFile(dest, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return false, err
	}
	defer out.Close()
	h := sha256.New()
	dst := countingWriter{io.MultiWriter(out, h), func(n int) {
		w.done += int64(n)
		w.mt.update(w.done, w.n)
	}}
	// LimitReader also hides in's WriterTo, so that buf is the buffer used.
	n, err := io.CopyBuffer(dst, io.LimitReader(in, e.Size), w.buf)
	if err != nil {
		return false, err
	}
	if n < e.Size {
		w.out.line("copy of %s: %s shrank while it was copied; padded with zeros (the verdict will name it)", w.label, e.Path)
		clear(w.buf)
		for left := e.Size - n; left > 0; {
			k := min(left, int64(len(w.buf)))
			if _, err := dst.Write(w.buf[:k]); err != nil {
				return false, err
			}
			left -= k
		}
	}
	if err := out.Close(); err != nil {
		return false, err
	}
	e.SHA256 = hex.EncodeToString(h.Sum(nil))
	w.tree.Copied++
	w.tree.CopiedBytes += e.Size
	return true, nil
}

// unwrapLink drops the paths of an *os.LinkError.
func unwrapLink(err error) error {
	var le *os.LinkError
	if errors.As(err, &le) {
		return le.Err
	}
	return err
}

// verifyTree returns what is wrong with a tree: an entry missing or of
// another type, a file of another size or SHA-256 (every file is read and
// hashed, reused or not), a link with another target, and what the
// directory holds that the manifest does not list.
func verifyTree(ctx context.Context, dir string, tree *Tree, buf []byte) []string {
	fi, err := os.Lstat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return []string{"missing"}
	case err != nil:
		return []string{fmt.Sprintf("cannot look at it: %v", unwrapPath(err))}
	case !fi.IsDir():
		return []string{"not a directory"}
	}
	if tree == nil {
		return []string{"the manifest lists no storage tree for it"}
	}
	var problems []string
	listed := map[string]bool{}
	for _, e := range tree.Entries {
		if ctx.Err() != nil {
			return append(problems, ctx.Err().Error())
		}
		listed[e.Path] = true
		p := filepath.Join(dir, filepath.FromSlash(e.Path))
		if p := verifyTreeEntry(p, e, buf); p != "" {
			problems = append(problems, e.Path+": "+p)
		}
	}
	err = walkTree(ctx, dir, func(_, rel string, _ fs.FileInfo) error {
		if !listed[rel] {
			problems = append(problems, rel+": not listed in the manifest")
		}
		return nil
	})
	if err != nil {
		problems = append(problems, fmt.Sprintf("cannot walk it: %v", unwrapPath(err)))
	}
	if len(problems) > maxProblems {
		problems = append(problems[:maxProblems:maxProblems], fmt.Sprintf("and %d more", len(problems)-maxProblems))
	}
	return problems
}

// verifyTreeEntry says what is wrong with one entry, "" when nothing.
func verifyTreeEntry(p string, e TreeEntry, buf []byte) string {
	fi, err := os.Lstat(p)
	if errors.Is(err, fs.ErrNotExist) {
		return "missing"
	}
	if err != nil {
		return fmt.Sprintf("cannot look at it: %v", unwrapPath(err))
	}
	switch e.Type {
	case treeDir:
		if !fi.IsDir() {
			return "not a directory"
		}
	case treeSymlink:
		if fi.Mode()&fs.ModeSymlink == 0 {
			return "not a symbolic link"
		}
		if l, err := os.Readlink(p); err != nil || l != e.Link {
			return fmt.Sprintf("links to %q, the manifest says %q", l, e.Link)
		}
	case treeFile:
		if !fi.Mode().IsRegular() {
			return "not a regular file"
		}
		if fi.Size() != e.Size {
			return fmt.Sprintf("size %d, the manifest says %d", fi.Size(), e.Size)
		}
		f, err := os.Open(p)
		if err != nil {
			return fmt.Sprintf("cannot open: %v", unwrapPath(err))
		}
		defer f.Close()
		h := sha256.New()
		if _, err := io.CopyBuffer(h, struct{ io.Reader }{f}, buf); err != nil {
			return fmt.Sprintf("read error: %v", unwrapPath(err))
		}
		if sum := hex.EncodeToString(h.Sum(nil)); sum != e.SHA256 {
			return fmt.Sprintf("sha256 %s, the manifest says %s", sum, e.SHA256)
		}
	}
	return ""
}

// treeHeader is the tar header a restore reads for a tree's entry.
func treeHeader(e TreeEntry) *tar.Header {
	h := &tar.Header{Name: e.Path, Mode: e.Mode, Uid: e.UID, Gid: e.GID, Uname: e.Uname, Gname: e.Gname,
		ModTime: time.Unix(0, e.MTime), Format: tar.FormatPAX}
	switch e.Type {
	case treeDir:
		h.Typeflag, h.Name = tar.TypeDir, e.Path+"/"
	case treeSymlink:
		h.Typeflag, h.Linkname = tar.TypeSymlink, e.Link
	default:
		h.Typeflag, h.Size = tar.TypeReg, e.Size
	}
	return h
}

// streamTree is the tree in dir as a tar stream, written by a goroutine
// from the manifest's entries and the files' contents (read through an
// os.Root confined to dir): what unpack reads for a tree. stop closes the
// stream and waits for the goroutine.
func streamTree(dir string, tree *Tree) (r io.Reader, stop func()) {
	pr, pw := io.Pipe()
	done := make(chan struct{})
	go func() {
		defer close(done)
		pw.CloseWithError(writeTreeTar(dir, tree, pw))
	}()
	return pr, func() {
		pr.Close()
		<-done
	}
}

func writeTreeTar(dir string, tree *Tree, w io.Writer) error {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return err
	}
	defer root.Close()
	bw := bufio.NewWriterSize(w, copyBufferSize)
	tw := tar.NewWriter(bw)
	buf := make([]byte, copyBufferSize)
	for _, e := range tree.Entries {
		if err := tw.WriteHeader(treeHeader(e)); err != nil {
			return fmt.Errorf("%s: %w", e.Path, err)
		}
		if e.Type != treeFile {
			continue
		}
		f, err := root.Open(filepath.FromSlash(e.Path))
		if err != nil {
			return fmt.Errorf("%s: %w", e.Path, unwrapPath(err))
		}
		n, err := io.CopyBuffer(struct{ io.Writer }{tw}, io.LimitReader(f, e.Size), buf)
		f.Close()
		if err == nil && n < e.Size {
			err = fmt.Errorf("%d bytes, the manifest says %d", n, e.Size)
		}
		if err != nil {
			return fmt.Errorf("%s: %w", e.Path, unwrapPath(err))
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return bw.Flush()
}

// treeHeaders are the tar headers of a tree's entries, for scanHeaders.
func treeHeaders(tree *Tree) func() (*tar.Header, error) {
	i := 0
	return func() (*tar.Header, error) {
		if i >= len(tree.Entries) {
			return nil, io.EOF
		}
		i++
		return treeHeader(tree.Entries[i-1]), nil
	}
}
