package snapshot

// Restoring a snapshot: the storage archive (see restore.go).
//
// Before anything is written, checkStorage looks at the target and reads
// every entry of the archive: no absolute name, no "..", nothing beneath a
// symbolic link or a file, no entry clashing with what the target holds,
// and no symbolic link that resolves outside the target (tar-slip). unpack
// then writes the entries through an os.Root confined to the target.

import (
	"archive/tar"
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/user"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ckanops/ckanops/internal/human"
)

// maxProblems is how many problems of the archive a refusal names.
const maxProblems = 10

// tempRestorePrefix starts the name a file or link of the archive is
// written under before it is renamed into place.
const tempRestorePrefix = ".ckanops-restore-"

// storageTarget is one storage's archive to unpack and where.
type storageTarget struct {
	name     string // the storage's, in the manifest
	path     string // the target, as given (or as recorded)
	label    string // "storage" for "default", "storage <name>" for the others: starts its messages
	root     string // the target, absolute, links resolved (where it will be, when missing)
	create   bool   // missing: create it
	file     File
	tree     *Tree                    // a storage kept as a tree (KindTree): its entries; nil for a tar
	entries  map[string]tarEntry      // the archive's, by clean relative name
	existing map[string]existingEntry // the target's, when unpacking over them
	owners   bool                     // running as root: set owners from the archive
	rep      *StorageRestore
}

// tarEntry is what the first pass records of an archive entry.
type tarEntry struct {
	typ  byte
	link string
}

// existingEntry is an entry already in the target.
type existingEntry struct {
	mode fs.FileMode
	link string
}

func (e existingEntry) isLink() bool { return e.mode&fs.ModeSymlink != 0 }

// checkStorage looks at the storage target and reads the archive's
// entries, refusing what would not be safe.
func (r *restorer) checkStorage(st *storageTarget) error {
	target := st.path
	st.rep = &StorageRestore{Name: st.name, Path: target, File: st.file.Name, UnrelatedNames: []string{}}
	fi, err := os.Stat(target)
	nonEmpty := false
	switch {
	case errors.Is(err, fs.ErrNotExist):
		parent := filepath.Dir(filepath.Clean(target))
		if pfi, perr := os.Stat(parent); perr != nil || !pfi.IsDir() {
			return refuse("%s target %s does not exist, nor does its parent %s: create it, or give another directory", st.label, target, parent)
		}
		st.create = true
	case err != nil:
		return refuse("cannot look at %s target %s: %v (running as %s)", st.label, target, unwrapPath(err), whoAmI())
	case !fi.IsDir():
		return refuse("%s target %s is not a directory: give a directory (CKAN's ckan.storage_path)", st.label, target)
	default:
		des, err := os.ReadDir(target)
		if err != nil {
			return refuse("cannot read %s target %s: %v (running as %s)", st.label, target, unwrapPath(err), whoAmI())
		}
		if len(des) > 0 && !r.Clean {
			return refuse("%s target %s is not empty (%d entries): restore into an empty or new directory, or pass --clean to unpack over it (the snapshot's files replace the ones there; other entries are left in place)", st.label, target, len(des))
		}
		nonEmpty = len(des) > 0
	}
	if st.root, err = resolve(target, st.create); err != nil {
		return refuse("cannot resolve %s target %s: %v", st.label, target, unwrapPath(err))
	}
	snap, err := resolve(r.Dir, false)
	if err != nil {
		return fmt.Errorf("snapshot: restore: cannot resolve %s: %v", r.Dir, unwrapPath(err))
	}
	if inside(snap, st.root) || inside(st.root, snap) {
		return refuse("%s target %s and the snapshot %s overlap: unpack the storage elsewhere", st.label, target, r.Dir)
	}
	if rec := r.m.StorageByName(st.name); rec != nil && rec.Path != "" {
		if src, err := resolve(rec.Path, false); err == nil && src == st.root {
			r.out.line("%s target %s is the storage the snapshot was taken of", st.label, target)
		}
	}

	st.existing = map[string]existingEntry{}
	if nonEmpty {
		st.rep.OverExisting = true
		if err := walkExisting(st.root, st.existing); err != nil {
			return refuse("cannot read %s target %s: %v", st.label, target, unwrapPath(err))
		}
	}
	var entries map[string]tarEntry
	var problems []string
	if st.tree != nil {
		entries, problems, err = scanHeaders(treeHeaders(st.tree))
	} else {
		entries, problems, err = scanArchive(filepath.Join(r.Dir, st.file.Name))
	}
	if err != nil {
		return refuse("%s: %v", st.file.Name, err)
	}
	st.entries = entries
	problems = append(problems, st.conflicts(target)...)
	if len(problems) > 0 {
		return refuse("%s cannot be unpacked safely into %s: %s", st.file.Name, target, summarise(problems, maxProblems, ""))
	}
	for name := range st.existing {
		if _, ok := st.entries[name]; !ok {
			st.rep.Unrelated++
			st.rep.UnrelatedNames = append(st.rep.UnrelatedNames, name)
		}
	}
	sort.Strings(st.rep.UnrelatedNames)
	if len(st.rep.UnrelatedNames) > maxNamedFiles {
		st.rep.UnrelatedNames = st.rep.UnrelatedNames[:maxNamedFiles]
	}
	st.owners = os.Geteuid() == 0
	switch {
	case st.create:
		r.out.line("%s target %s: will be created", st.label, target)
	case nonEmpty:
		left := ""
		if st.rep.Unrelated > 0 {
			left = fmt.Sprintf("; %d of them the snapshot does not hold and will be left in place", st.rep.Unrelated)
		}
		r.out.line("%s target %s holds %d entries: unpacking over them (--clean)%s", st.label, target, len(st.existing), left)
	default:
		r.out.line("%s target %s: empty", st.label, target)
	}
	return nil
}

// inside reports whether p is dir or lies beneath it (both clean and
// absolute).
func inside(p, dir string) bool {
	rel, err := filepath.Rel(dir, p)
	return err == nil && filepath.IsLocal(rel)
}

// walkExisting records the entries under root, by slash-separated path.
func walkExisting(root string, into map[string]existingEntry) error {
	return filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == root {
			return nil
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		e := existingEntry{mode: d.Type()}
		if d.IsDir() {
			e.mode |= fs.ModeDir
		}
		if e.isLink() {
			if e.link, err = os.Readlink(p); err != nil {
				return err
			}
		}
		into[filepath.ToSlash(rel)] = e
		return nil
	})
}

// entryName is the checked name of an archive entry: relative, clean,
// inside the target.
func entryName(hdr *tar.Header) (string, error) {
	name := strings.TrimSuffix(hdr.Name, "/")
	switch {
	case name == "" || name == ".":
		return "", errors.New("names the storage directory itself")
	case path.IsAbs(name):
		return "", errors.New("is an absolute path")
	case !filepath.IsLocal(filepath.FromSlash(name)):
		return "", errors.New("leaves the storage directory")
	case path.Clean(name) != name:
		return "", errors.New("is not a clean relative path")
	case strings.HasPrefix(path.Base(name), tempRestorePrefix):
		return "", errors.New("is named like a restore's temporary file")
	}
	return name, nil
}

// scanArchive reads the archive's headers (skipping the contents: the file
// seeks) and returns its entries and what is wrong with them on their own.
func scanArchive(tarPath string) (map[string]tarEntry, []string, error) {
	f, err := os.Open(tarPath)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	return scanHeaders(tar.NewReader(f).Next)
}

// scanHeaders checks the entries next returns (until io.EOF): those of an
// archive, or of a tree (treeHeaders).
func scanHeaders(next func() (*tar.Header, error)) (map[string]tarEntry, []string, error) {
	entries := map[string]tarEntry{}
	var problems []string
	for {
		hdr, err := next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, nil, fmt.Errorf("not a readable tar: %v", err)
		}
		if hdr.Typeflag == tar.TypeXGlobalHeader {
			continue
		}
		name, err := entryName(hdr)
		if err != nil {
			problems = append(problems, fmt.Sprintf("entry %q %v", hdr.Name, err))
			continue
		}
		e := tarEntry{typ: hdr.Typeflag}
		switch hdr.Typeflag {
		case tar.TypeDir, tar.TypeReg:
		case tar.TypeSymlink:
			e.link = hdr.Linkname
		default:
			problems = append(problems, fmt.Sprintf("entry %q is a %s, not a file, directory or symbolic link", hdr.Name, typeName(hdr.Typeflag)))
			continue
		}
		if _, dup := entries[name]; dup {
			problems = append(problems, fmt.Sprintf("entry %q appears twice", hdr.Name))
			continue
		}
		entries[name] = e
	}
	return entries, problems, nil
}

func typeName(t byte) string {
	switch t {
	case tar.TypeLink:
		return "hard link"
	case tar.TypeChar:
		return "character device"
	case tar.TypeBlock:
		return "block device"
	case tar.TypeFifo:
		return "named pipe"
	}
	return fmt.Sprintf("entry of type %q", t)
}

// conflicts returns what keeps the archive's entries from being unpacked
// safely into the target as it is: an entry beneath a link or a file (of
// the archive, or already there), an entry whose kind clashes with what
// is there (a directory for a file, or the other way round), a link that
// resolves outside the target.
func (st *storageTarget) conflicts(target string) []string {
	names := make([]string, 0, len(st.entries))
	for n := range st.entries {
		names = append(names, n)
	}
	sort.Strings(names)
	lookup := func(p string) (string, bool) {
		if e, ok := st.entries[p]; ok {
			return e.link, e.typ == tar.TypeSymlink
		}
		if x, ok := st.existing[p]; ok && x.isLink() {
			return x.link, true
		}
		return "", false
	}
	var problems []string
	for _, name := range names {
		e := st.entries[name]
		if p := st.beneath(name, target); p != "" {
			problems = append(problems, p)
			continue
		}
		if x, ok := st.existing[name]; ok {
			switch {
			case e.typ == tar.TypeDir && !x.mode.IsDir():
				problems = append(problems, fmt.Sprintf("%s is a %s in %s where the snapshot has a directory: move it away", name, existingKind(x.mode), target))
				continue
			case e.typ != tar.TypeDir && x.mode.IsDir():
				problems = append(problems, fmt.Sprintf("%s is a directory in %s where the snapshot has a %s: move it away", name, target, kindOfEntry(e.typ)))
				continue
			case e.typ != tar.TypeDir && !x.mode.IsRegular() && !x.isLink():
				problems = append(problems, fmt.Sprintf("%s is a %s in %s where the snapshot has a %s: move it away", name, existingKind(x.mode), target, kindOfEntry(e.typ)))
				continue
			}
		}
		if e.typ == tar.TypeSymlink && !resolvesInside(name, e.link, lookup) {
			problems = append(problems, fmt.Sprintf("symbolic link %s -> %s points outside %s", name, e.link, target))
		}
	}
	return problems
}

// beneath says what is wrong with name's parents: one is a link or a
// file, in the archive or in the target.
func (st *storageTarget) beneath(name, target string) string {
	for dir := path.Dir(name); dir != "."; dir = path.Dir(dir) {
		if a, ok := st.entries[dir]; ok {
			if a.typ != tar.TypeDir {
				return fmt.Sprintf("entry %s lies beneath the %s %s of the archive", name, kindOfEntry(a.typ), dir)
			}
			// The archive makes it a directory; what is there must be one.
		}
		if x, ok := st.existing[dir]; ok && !x.mode.IsDir() {
			return fmt.Sprintf("entry %s lies beneath %s, a %s in %s: move it away", name, dir, existingKind(x.mode), target)
		}
	}
	return ""
}

func kindOfEntry(t byte) string {
	switch t {
	case tar.TypeDir:
		return "directory"
	case tar.TypeSymlink:
		return "symbolic link"
	}
	return "file"
}

func existingKind(m fs.FileMode) string {
	switch {
	case m.IsRegular():
		return "file"
	case m.IsDir():
		return "directory"
	case m&fs.ModeSymlink != 0:
		return "symbolic link"
	}
	return "special file"
}

// maxLinkHops is how many links a resolution follows, as Linux does.
const maxLinkHops = 40

// resolvesInside reports whether the symbolic link name (relative to the
// root, slash-separated) with target link resolves inside the root the way
// the kernel would resolve it: component by component, following the
// links lookup knows (the archive's, and those already in the target),
// with ".." going up from where each link led. Absolute targets, and a
// chain of links longer than maxLinkHops, do not count as inside.
func resolvesInside(name, link string, lookup func(string) (string, bool)) bool {
	if link == "" || path.IsAbs(link) {
		return false
	}
	var stack []string // the directory resolved so far, below the root
	if d := path.Dir(name); d != "." {
		stack = strings.Split(d, "/")
	}
	queue := strings.Split(link, "/")
	hops := 0
	for len(queue) > 0 {
		c := queue[0]
		queue = queue[1:]
		switch c {
		case "", ".":
			continue
		case "..":
			if len(stack) == 0 {
				return false
			}
			stack = stack[:len(stack)-1]
			continue
		}
		p := path.Join(strings.Join(stack, "/"), c)
		if t, ok := lookup(p); ok {
			hops++
			if hops > maxLinkHops || t == "" || path.IsAbs(t) {
				return false
			}
			queue = append(strings.Split(t, "/"), queue...)
			continue
		}
		stack = append(stack[:len(stack):len(stack)], c)
	}
	return true
}

// dirMeta is a directory whose mode, owner and time are set once
// everything beneath it is written.
type dirMeta struct {
	name string
	hdr  *tar.Header
}

// unpack writes the archive's entries into the target.
func (r *restorer) unpack(ctx context.Context, st *storageTarget) error {
	rep := st.rep
	start := time.Now()
	defer func() { rep.Seconds = seconds(time.Since(start)) }()
	target := st.path
	r.out.line("%s: unpacking %s (%s) into %s", st.label, st.file.Name, human.Bytes(st.file.Size), target)

	if st.create {
		if err := os.Mkdir(st.root, 0o755); err != nil {
			return fmt.Errorf("%s: cannot create %s: %v (running as %s)", st.label, target, unwrapPath(err), whoAmI())
		}
		rep.Created = true
		r.out.line("%s: created %s", st.label, target)
	}
	root, err := os.OpenRoot(st.root)
	if err != nil {
		return fmt.Errorf("%s: %v", st.label, err)
	}
	defer root.Close()

	u := &unpacker{root: root, buf: make([]byte, copyBufferSize), owners: st.owners, users: map[string]int{}, groups: map[string]int{}}
	mt := r.out.meter("unpack of "+st.label, st.file.Size, 0)
	var read int64
	defer func() { mt.end(read, rep.Files) }()
	onRead := func(n int) {
		read += int64(n)
		mt.update(read, rep.Files)
	}
	// A tar's progress is its file offset; a tree's, the bytes of its
	// files copied (its Size), read from the stream streamTree makes.
	var tr *tar.Reader
	var content io.Reader
	if st.tree != nil {
		stream, stop := streamTree(filepath.Join(r.Dir, st.file.Name), st.tree)
		defer stop()
		tr = tar.NewReader(stream)
		content = countingReader{tr, onRead}
	} else {
		f, err := os.Open(filepath.Join(r.Dir, st.file.Name))
		if err != nil {
			return fmt.Errorf("%s: %v", st.label, err)
		}
		defer f.Close()
		tr = tar.NewReader(bufio.NewReaderSize(countingReader{f, onRead}, copyBufferSize))
		content = tr
	}
	var dirs []dirMeta
	last := time.Now()
	for {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("%s: cancelled: %w", st.label, context.Cause(ctx))
		}
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("%s: %s: %v", st.label, st.file.Name, err)
		}
		if hdr.Typeflag == tar.TypeXGlobalHeader {
			continue
		}
		name, err := entryName(hdr)
		if e, ok := st.entries[name]; err != nil || !ok || e.typ != hdr.Typeflag || e.link != hdr.Linkname {
			return fmt.Errorf("%s: %s changed while it was restored (entry %q): restore again", st.label, st.file.Name, hdr.Name)
		}
		if d := path.Dir(name); d != "." {
			if err := root.MkdirAll(d, 0o755); err != nil {
				return fmt.Errorf("%s: %s: %v", st.label, d, unwrapPath(err))
			}
		}
		x, existed := st.existing[name]
		switch hdr.Typeflag {
		case tar.TypeDir:
			if err := root.MkdirAll(name, 0o700); err != nil {
				return fmt.Errorf("%s: %s: %v", st.label, name, unwrapPath(err))
			}
			dirs = append(dirs, dirMeta{name, hdr})
			rep.Dirs++
		case tar.TypeReg:
			if err := u.file(name, hdr, content); err != nil {
				return fmt.Errorf("%s: %s: %w", st.label, name, restoreWriteHint(err, target))
			}
			rep.Files++
			rep.Bytes += hdr.Size
		case tar.TypeSymlink:
			if err := u.symlink(name, hdr); err != nil {
				return fmt.Errorf("%s: %s: %w", st.label, name, restoreWriteHint(err, target))
			}
			rep.Symlinks++
		}
		if existed && !x.mode.IsDir() {
			rep.Replaced++
		}
		if time.Since(last) >= progressEvery {
			last = time.Now()
			r.out.line("%s: %d files (%s) so far", st.label, rep.Files, human.Bytes(rep.Bytes))
		}
	}
	// Deepest first, so that a directory's time is set after its entries
	// were written, and a read-only one was writable while they were.
	sort.SliceStable(dirs, func(i, j int) bool {
		return strings.Count(dirs[i].name, "/") > strings.Count(dirs[j].name, "/")
	})
	for _, d := range dirs {
		if err := u.dirMeta(d.name, d.hdr); err != nil {
			return fmt.Errorf("%s: %s: %v", st.label, d.name, unwrapPath(err))
		}
	}
	if err := syncFS(st.root); err != nil {
		return fmt.Errorf("%s: syncing %s: %w", st.label, target, err)
	}
	rep.Owners = st.owners
	rep.Done = true
	replaced := ""
	if rep.Replaced > 0 {
		replaced = fmt.Sprintf(", replacing %d", rep.Replaced)
	}
	r.out.line("%s: done, %d files (%s), %d directories, %d links into %s%s (%v)", st.label,
		rep.Files, human.Bytes(rep.Bytes), rep.Dirs, rep.Symlinks, target, replaced, time.Since(start).Round(time.Millisecond))
	return nil
}

// restoreWriteHint adds what to do to a write error that says the disk is
// full.
func restoreWriteHint(err error, target string) error {
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
		return fmt.Errorf("%w: the file system of %s is full: free space there", err, target)
	}
	return err
}

// unpacker writes entries through an os.Root.
type unpacker struct {
	root          *os.Root
	buf           []byte
	owners        bool
	users, groups map[string]int // name -> id, -1 for unknown here
}

// restoredMode is the mode to set: the permissions and the setuid, setgid
// and sticky bits of the archive.
func restoredMode(hdr *tar.Header) fs.FileMode {
	return hdr.FileInfo().Mode() & (fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky)
}

// tempName is a free-looking name beside name.
func tempName(name string) string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return path.Join(path.Dir(name), tempRestorePrefix+hex.EncodeToString(b[:]))
}

// file writes a regular file under a temporary name, with its owner,
// mode and time, and renames it into place.
func (u *unpacker) file(name string, hdr *tar.Header, src io.Reader) (err error) {
	tmp := tempName(name)
	f, err := u.root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return unwrapPath(err)
	}
	renamed := false
	defer func() {
		if f != nil {
			f.Close()
		}
		if !renamed {
			_ = u.root.Remove(tmp)
		}
	}()
	// The struct hides *os.File's ReaderFrom, so that buf is the buffer used.
	n, err := io.CopyBuffer(struct{ io.Writer }{f}, src, u.buf)
	if err != nil {
		return unwrapPath(err)
	}
	if n != hdr.Size {
		return fmt.Errorf("%d bytes in the archive, its header says %d", n, hdr.Size)
	}
	if u.owners {
		uid, gid := u.ids(hdr)
		if err := f.Chown(uid, gid); err != nil {
			return unwrapPath(err)
		}
	}
	if err := f.Chmod(restoredMode(hdr)); err != nil { // after Chown, which clears setuid
		return unwrapPath(err)
	}
	err = f.Close()
	f = nil
	if err != nil {
		return unwrapPath(err)
	}
	if err := u.root.Chtimes(tmp, hdr.ModTime, hdr.ModTime); err != nil {
		return unwrapPath(err)
	}
	if err := u.root.Rename(tmp, name); err != nil {
		return unwrapPath(err)
	}
	renamed = true
	return nil
}

// symlink makes a symbolic link under a temporary name, with its owner and
// time, and renames it into place.
func (u *unpacker) symlink(name string, hdr *tar.Header) error {
	tmp := tempName(name)
	if err := u.root.Symlink(hdr.Linkname, tmp); err != nil {
		return unwrapPath(err)
	}
	err := func() error {
		if u.owners {
			uid, gid := u.ids(hdr)
			if err := u.root.Lchown(tmp, uid, gid); err != nil {
				return unwrapPath(err)
			}
		}
		d, err := u.root.Open(path.Dir(tmp))
		if err != nil {
			return unwrapPath(err)
		}
		defer d.Close()
		if err := lutimesAt(int(d.Fd()), path.Base(tmp), hdr.ModTime); err != nil {
			return err
		}
		return unwrapPath(u.root.Rename(tmp, name))
	}()
	if err != nil {
		_ = u.root.Remove(tmp)
	}
	return err
}

// dirMeta sets a directory's owner, mode and time.
func (u *unpacker) dirMeta(name string, hdr *tar.Header) error {
	if u.owners {
		uid, gid := u.ids(hdr)
		if err := u.root.Lchown(name, uid, gid); err != nil {
			return err
		}
	}
	if err := u.root.Chmod(name, restoredMode(hdr)); err != nil {
		return err
	}
	return u.root.Chtimes(name, hdr.ModTime, hdr.ModTime)
}

// ids are the owner and group to give an entry: by name when the name
// exists here, as tar does, else the archive's numbers.
func (u *unpacker) ids(hdr *tar.Header) (uid, gid int) {
	uid, gid = hdr.Uid, hdr.Gid
	if id := lookupID(u.users, hdr.Uname, func(n string) (string, error) {
		usr, err := user.Lookup(n)
		if err != nil {
			return "", err
		}
		return usr.Uid, nil
	}); id >= 0 {
		uid = id
	}
	if id := lookupID(u.groups, hdr.Gname, func(n string) (string, error) {
		g, err := user.LookupGroup(n)
		if err != nil {
			return "", err
		}
		return g.Gid, nil
	}); id >= 0 {
		gid = id
	}
	return uid, gid
}

// lookupID returns the id of a user or group name, cached; -1 when the
// name is empty or unknown here.
func lookupID(cache map[string]int, name string, look func(string) (string, error)) int {
	if name == "" {
		return -1
	}
	if id, ok := cache[name]; ok {
		return id
	}
	id := -1
	if s, err := look(name); err == nil {
		if n, err := strconv.Atoi(s); err == nil {
			id = n
		}
	}
	cache[name] = id
	return id
}

// lutimesAt sets the access and modification times of name in the
// directory dirfd without following a symbolic link: Go has no Lchtimes.
func lutimesAt(dirfd int, name string, t time.Time) error {
	ts := []unix.Timespec{unix.NsecToTimespec(t.UnixNano()), unix.NsecToTimespec(t.UnixNano())}
	if err := unix.UtimesNanoAt(dirfd, name, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("set the time of link %s: %w", name, err)
	}
	return nil
}

// syncFS flushes the file system holding dir (syncfs): one call for
// everything unpacked, rather than an fsync per file.
func syncFS(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	return unix.Syncfs(int(f.Fd()))
}

// countingReader passes reads from r and their sizes to f.
type countingReader struct {
	r io.Reader
	f func(int)
}

func (c countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.f(n)
	return n, err
}
