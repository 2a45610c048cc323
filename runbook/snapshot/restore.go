package snapshot

// Restoring a snapshot.
//
// Restore puts a snapshot back into the databases and the storage
// directory it is told to, and nowhere else: it reads the snapshot
// directory, never writes to it, and never connects to the databases the
// snapshot was taken of unless they are the targets it was given. Every
// check comes before the first write: the files against the manifest
// (Verify), the verdict, the parts asked for, the archive's entries, the
// storage target, and each target database. A refusal wraps ErrRefused
// and leaves everything as it was.
//
// The dumps go in with pg_restore --single-transaction (which implies
// --exit-on-error): a restore that fails half-way rolls back and leaves
// the database as it was. --no-owner and --no-privileges make the objects
// belong to the role pg_restore connects as, and leave out the grants (the
// DataStore's read-only user loses its access until `ckan datastore
// set-permissions` is applied again); the report says so.
//
// The storage archive is unpacked through an os.Root, with every entry
// checked first: no absolute name, no "..", nothing beneath a symbolic
// link or a file, and no symbolic link that resolves, through the
// archive's links and those already in the target, outside the target.
// Files are written to a temporary name and renamed into place, with
// their modes and modification times; the file system is synced
// (syncfs) at the end. Running as root, owners come from the archive
// (by name where the name exists here, else by number).

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
	"os/exec"
	"os/user"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"golang.org/x/sys/unix"

	"github.com/ckanops/ckanops/config"
	"github.com/ckanops/ckanops/internal/human"
)

// RestoreApplicationName is the application_name of every session a
// restore opens: pg_restore's and the table checks'.
const RestoreApplicationName = "ckanops-restore"

// ErrRefused is wrapped by the errors of a restore that refused to start:
// the snapshot does not match its manifest, is inconsistent (without
// Force), lacks a part asked for, or a target is not empty (without
// Clean) or not safe to write. Nothing was written.
var ErrRefused = errors.New("restore refused")

// RestoreSpec is what to restore, from where, into what.
type RestoreSpec struct {
	// Dir is the snapshot directory (the one holding manifest.json).
	Dir string
	// CKANDB and DatastoreDB are the postgres:// URLs of the databases to
	// restore the dumps into; they must exist. Empty: that dump is not
	// restored. A URL without a password lets PGPASSWORD or ~/.pgpass
	// supply it.
	CKANDB      config.SecretURL
	DatastoreDB config.SecretURL
	// StoragePath is the directory to unpack the storage archive into.
	// Empty: not restored. It may be missing when its parent exists.
	StoragePath string
	// PGRestore is the pg_restore program. Default "pg_restore".
	PGRestore string
	// Force restores an inconsistent snapshot.
	Force bool
	// Clean allows targets that are not empty: pg_restore --clean
	// --if-exists drops and recreates the dump's objects (other tables
	// stay), and the archive is unpacked over the storage directory's
	// entries (the snapshot's files replace theirs; entries the snapshot
	// does not hold are left in place and counted).
	Clean bool
	// Output, when set, gets one line per event. Lines never hold a
	// password.
	Output func(line string)
}

// RestoreReport says what a restore did. After a failure it says what was
// done before it.
type RestoreReport struct {
	Dir       string            `json:"dir"`
	Site      string            `json:"site"`
	Verdict   string            `json:"verdict"`
	Forced    bool              `json:"forced"`  // an inconsistent snapshot, restored because of Force
	Changed   []string          `json:"changed"` // the manifest's: what changed while it was taken
	Databases []DatabaseRestore `json:"databases"`
	Storage   *StorageRestore   `json:"storage,omitempty"`
	// Notes are what to do next: grants to give again, and the like.
	Notes   []string  `json:"notes"`
	Started time.Time `json:"started"`
	Seconds float64   `json:"seconds"`
}

// DatabaseRestore is what a restore did with one dump.
type DatabaseRestore struct {
	Name     string           `json:"name"`     // SourceCKANDB or SourceDatastoreDB
	Target   config.SecretURL `json:"target"`   // the target's URL, redacted when printed
	Database string           `json:"database"` // the target database's name
	File     string           `json:"file"`
	// TablesBefore is how many user tables the target held before
	// (extensions' tables left out); more than 0 only with Clean.
	TablesBefore int  `json:"tables_before"`
	Clean        bool `json:"clean"` // pg_restore ran with --clean --if-exists
	Done         bool `json:"done"`  // pg_restore succeeded
	// Tables is how many tables (pg_stat_user_tables) the target holds
	// after the restore; Missing names those the snapshot recorded that
	// it lacks (none, when all is well); Extra counts those the snapshot
	// did not record (left in place by Clean).
	Tables  int      `json:"tables"`
	Missing []string `json:"missing"`
	Extra   int      `json:"extra"`
	Seconds float64  `json:"seconds"`
}

// StorageRestore is what a restore did with the storage archive.
type StorageRestore struct {
	Path string `json:"path"` // the target, as given
	File string `json:"file"`
	// Created: the target did not exist and was created.
	Created bool `json:"created"`
	// OverExisting: the target held entries and the archive was
	// unpacked over them.
	OverExisting bool  `json:"over_existing"`
	Done         bool  `json:"done"`
	Dirs         int64 `json:"dirs"`
	Files        int64 `json:"files"`
	Symlinks     int64 `json:"symlinks"`
	Bytes        int64 `json:"bytes"` // of the files
	// Replaced counts the files and links of the target the snapshot's
	// replaced.
	Replaced int64 `json:"replaced"`
	// Unrelated counts the target's entries the snapshot does not hold,
	// left in place; UnrelatedNames names the first of them.
	Unrelated      int      `json:"unrelated"`
	UnrelatedNames []string `json:"unrelated_names"`
	// Owners: running as root, the owners were set from the archive.
	Owners  bool    `json:"owners"`
	Seconds float64 `json:"seconds"`
}

// restoreTimeout bounds the checks of a target database: connect and
// list its tables.
const restoreTimeout = 30 * time.Second

// maxProblems is how many problems of the archive a refusal names.
const maxProblems = 10

// tempRestorePrefix starts the name a file or link of the archive is
// written under before it is renamed into place.
const tempRestorePrefix = ".ckanops-restore-"

// restorer is a checked RestoreSpec: what Restore will do.
type restorer struct {
	RestoreSpec
	out       *output
	pgRestore string // resolved; "" when no database is restored
	m         *Manifest
	dbs       []*dbTarget
	st        *storageTarget
	rep       *RestoreReport
}

// dbTarget is one dump to restore and where.
type dbTarget struct {
	db       *database
	file     File
	recorded map[string]bool // the tables the snapshot recorded, "schema.table"
	rep      *DatabaseRestore
}

// storageTarget is the archive to unpack and where.
type storageTarget struct {
	root     string // the target, absolute, links resolved (where it will be, when missing)
	create   bool   // missing: create it
	file     File
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

// Restore checks the snapshot in s.Dir and the targets, then restores the
// dumps asked for, one after the other (CKAN's first), then unpacks the
// storage archive. See "Restoring a snapshot" above. An error wrapping
// ErrRefused means nothing was written; any other error comes with the
// report of what was done before it (nil when it came before anything).
func Restore(ctx context.Context, s RestoreSpec) (*RestoreReport, error) {
	r, err := newRestorer(s)
	if err != nil {
		return nil, fmt.Errorf("snapshot: restore: %w", err)
	}
	if err := r.check(ctx); err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("snapshot: restore: cancelled while checking: %w (nothing was restored)", context.Cause(ctx))
		}
		return nil, err
	}
	err = r.run(ctx)
	r.rep.Seconds = seconds(time.Since(r.rep.Started))
	return r.rep, err
}

// refuse is the error of a refusal.
func refuse(format string, a ...any) error {
	return fmt.Errorf("snapshot: %w: %s (nothing was restored)", ErrRefused, fmt.Sprintf(format, a...))
}

// newRestorer validates s without touching anything: the URLs parse, and
// pg_restore runs.
func newRestorer(s RestoreSpec) (*restorer, error) {
	if s.PGRestore == "" {
		s.PGRestore = DefaultPGRestore
	}
	r := &restorer{RestoreSpec: s, out: &output{f: s.Output, secrets: []config.SecretURL{s.CKANDB, s.DatastoreDB}}}
	if s.Dir == "" {
		return nil, errors.New("no snapshot directory")
	}
	if s.CKANDB == "" && s.DatastoreDB == "" && s.StoragePath == "" {
		return nil, errors.New("nothing to restore: give a target for ckan_db, datastore_db or the storage")
	}
	for _, c := range []struct {
		source string
		url    config.SecretURL
	}{{SourceCKANDB, s.CKANDB}, {SourceDatastoreDB, s.DatastoreDB}} {
		if c.url == "" {
			continue
		}
		db, err := newDatabase(c.source, c.url)
		if err != nil {
			return nil, err
		}
		db.conn.RuntimeParams["application_name"] = RestoreApplicationName
		r.dbs = append(r.dbs, &dbTarget{db: db})
	}
	if len(r.dbs) == 2 && sameDatabase(r.dbs[0].db.conn, r.dbs[1].db.conn) {
		return nil, fmt.Errorf("the ckan_db and datastore_db targets are the same database (%s): CKAN keeps them apart; give two databases", r.dbs[0].db.name)
	}
	if len(r.dbs) > 0 {
		p, err := exec.LookPath(s.PGRestore)
		if err != nil {
			if !strings.ContainsRune(s.PGRestore, '/') {
				return nil, fmt.Errorf("%s not found on PATH: install postgresql-client or give the pg_restore program", s.PGRestore)
			}
			return nil, fmt.Errorf("pg_restore %s cannot be run (%v): install postgresql-client or give the pg_restore program", s.PGRestore, unwrapPath(err))
		}
		r.pgRestore = p
	}
	return r, nil
}

func sameDatabase(a, b *pgx.ConnConfig) bool {
	return a.Host == b.Host && a.Port == b.Port && a.Database == b.Database
}

// check does every check, in order of cost, and fills in the plan and the
// report. Nothing is written.
func (r *restorer) check(ctx context.Context) error {
	m, err := Load(r.Dir)
	if err != nil {
		return err
	}
	// The parts asked for are in the snapshot.
	files := map[string]File{}
	for _, f := range m.Files {
		files[f.Source] = f
	}
	var missing []string
	for _, t := range r.dbs {
		f, ok := files[t.db.source]
		if !ok || f.Kind != KindPGDump {
			missing = append(missing, fmt.Sprintf("a %s target was given, but the snapshot holds no %s dump%s", t.db.source, t.db.source, notConfiguredNote(m, t.db.source)))
			continue
		}
		t.file = f
	}
	if r.StoragePath != "" {
		if f, ok := files[SourceStorage]; !ok || f.Kind != KindTar {
			missing = append(missing, "a storage target was given, but the snapshot holds no storage archive"+notConfiguredNote(m, SourceStorage))
		} else {
			r.st = &storageTarget{file: f}
		}
	}
	if len(missing) > 0 {
		return refuse("%s: leave that target out", strings.Join(missing, "; "))
	}
	// The verdict.
	if m.Verdict != Consistent && !r.Force {
		return refuse("snapshot %s is %s (changed while it was taken: %s): restore a consistent snapshot, or restore this one anyway with --force", r.Dir, m.Verdict, summarise(m.Changed, 5, ""))
	}
	// The files, against the manifest.
	r.out.line("verifying %s against its manifest", r.Dir)
	vr, err := Verify(ctx, r.Dir, r.PGRestore)
	if err != nil {
		return err
	}
	var bad []string
	for _, c := range vr.Files {
		if !c.OK {
			bad = append(bad, c.Name+": "+c.Problem)
		}
	}
	if len(bad) > 0 {
		return refuse("snapshot %s does not match its manifest: %s; restore another snapshot (ckanops snapshot verify %s shows every file)", r.Dir, strings.Join(bad, "; "), r.Dir)
	}
	r.m = vr.Manifest
	m = r.m
	r.out.line("verified %d files (%s)", len(vr.Files), human.Bytes(m.Bytes()))

	r.rep = &RestoreReport{
		Dir: r.Dir, Site: m.Site, Verdict: m.Verdict, Forced: m.Verdict != Consistent,
		Changed: append([]string{}, m.Changed...), Databases: []DatabaseRestore{}, Notes: []string{},
	}
	if r.rep.Forced {
		r.out.line("warning: restoring an inconsistent snapshot (forced; changed while it was taken: %s)", summarise(m.Changed, 5, ""))
	}

	// The storage target and the archive's entries.
	if r.st != nil {
		if err := r.checkStorage(); err != nil {
			return err
		}
	}
	// The target databases: all of them before any is written.
	var refusals []string
	for _, t := range r.dbs {
		tables, err := listTables(ctx, t.db, userTablesQuery)
		if err != nil {
			return fmt.Errorf("snapshot: restore: %w (nothing was restored)", err)
		}
		t.recorded = map[string]bool{}
		for _, d := range m.Databases {
			if d.Name == t.db.source {
				for k := range d.Before {
					t.recorded[k] = true
				}
				for k := range d.After {
					t.recorded[k] = true
				}
			}
		}
		t.rep = &DatabaseRestore{Name: t.db.source, Target: t.db.secret, Database: t.db.name, File: t.file.Name,
			TablesBefore: len(tables), Clean: r.Clean, Missing: []string{}}
		switch {
		case len(tables) == 0:
			r.out.line("%s target, database %s: empty", t.db.source, t.db.name)
		case !r.Clean:
			refusals = append(refusals, fmt.Sprintf("the %s target, database %s, is not empty: it holds %s", t.db.source, t.db.name, summarise(tables, 5, "")))
		default:
			r.out.line("%s target, database %s, holds %d tables: the dump's objects will be dropped and recreated (--clean); other tables stay", t.db.source, t.db.name, len(tables))
		}
	}
	if len(refusals) > 0 {
		return refuse("%s; restore into an empty database, or pass --clean to drop and recreate the snapshot's objects in it", strings.Join(refusals, "; "))
	}
	return nil
}

// notConfiguredNote says, when it did, that the manifest lists source as
// not configured.
func notConfiguredNote(m *Manifest, source string) string {
	for _, n := range m.NotConfigured {
		if n == source {
			return " (it was not configured when the snapshot was taken)"
		}
	}
	return ""
}

// summarise joins the first n items with "; " and says how many more
// there are, then what, when given.
func summarise(items []string, n int, what string) string {
	s := strings.Join(items[:min(n, len(items))], "; ")
	if len(items) > n {
		s += fmt.Sprintf("; and %d more", len(items)-n)
	}
	if what != "" {
		s += " " + what
	}
	return s
}

// userTablesQuery lists the target's user tables: ordinary and
// partitioned tables outside the system schemas (and other sessions'
// temporary ones), leaving out those an extension owns (PostGIS's
// spatial_ref_sys in a fresh database, say).
const userTablesQuery = `SELECT n.nspname || '.' || c.relname
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p')
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname !~ '^pg_(toast|temp_)'
  AND NOT EXISTS (SELECT 1 FROM pg_depend d
                  WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')
ORDER BY 1`

// statTablesQuery lists the tables as the snapshot's counters saw them.
const statTablesQuery = `SELECT schemaname || '.' || relname FROM pg_stat_user_tables ORDER BY 1`

// listTables runs a query of one text column on db.
func listTables(ctx context.Context, db *database, query string) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, restoreTimeout)
	defer cancel()
	fail := func(err error) ([]string, error) {
		hint := ""
		var pe *pgconn.PgError
		if errors.As(err, &pe) && pe.Code == "3D000" { // invalid_catalog_name
			hint = fmt.Sprintf(": create it first (createdb -O OWNER %s); pg_restore restores into an existing database", db.name)
		}
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		return nil, fmt.Errorf("%s target %s: %s%s", db.source, db.what(), scrub(err.Error(), db.secret), hint)
	}
	conn, err := pgx.ConnectConfig(ctx, db.conn)
	if err != nil {
		return fail(err)
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		conn.Close(cctx)
	}()
	rows, err := conn.Query(ctx, query)
	if err != nil {
		return fail(err)
	}
	tables, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return fail(err)
	}
	return tables, nil
}

// checkStorage looks at the storage target and reads the archive's
// entries, refusing what would not be safe.
func (r *restorer) checkStorage() error {
	st := r.st
	target := r.StoragePath
	st.rep = &StorageRestore{Path: target, File: st.file.Name, UnrelatedNames: []string{}}
	fi, err := os.Stat(target)
	nonEmpty := false
	switch {
	case errors.Is(err, fs.ErrNotExist):
		parent := filepath.Dir(filepath.Clean(target))
		if pfi, perr := os.Stat(parent); perr != nil || !pfi.IsDir() {
			return refuse("storage target %s does not exist, nor does its parent %s: create it, or give another directory", target, parent)
		}
		st.create = true
	case err != nil:
		return refuse("cannot look at storage target %s: %v (running as %s)", target, unwrapPath(err), whoAmI())
	case !fi.IsDir():
		return refuse("storage target %s is not a directory: give a directory (CKAN's ckan.storage_path)", target)
	default:
		des, err := os.ReadDir(target)
		if err != nil {
			return refuse("cannot read storage target %s: %v (running as %s)", target, unwrapPath(err), whoAmI())
		}
		if len(des) > 0 && !r.Clean {
			return refuse("storage target %s is not empty (%d entries): restore into an empty or new directory, or pass --clean to unpack over it (the snapshot's files replace the ones there; other entries are left in place)", target, len(des))
		}
		nonEmpty = len(des) > 0
	}
	if st.root, err = resolve(target, st.create); err != nil {
		return refuse("cannot resolve storage target %s: %v", target, unwrapPath(err))
	}
	snap, err := resolve(r.Dir, false)
	if err != nil {
		return fmt.Errorf("snapshot: restore: cannot resolve %s: %v", r.Dir, unwrapPath(err))
	}
	if inside(snap, st.root) || inside(st.root, snap) {
		return refuse("storage target %s and the snapshot %s overlap: unpack the storage elsewhere", target, r.Dir)
	}
	if r.m.Storage != nil && r.m.Storage.Path != "" {
		if src, err := resolve(r.m.Storage.Path, false); err == nil && src == st.root {
			r.out.line("storage target %s is the storage the snapshot was taken of", target)
		}
	}

	st.existing = map[string]existingEntry{}
	if nonEmpty {
		st.rep.OverExisting = true
		if err := walkExisting(st.root, st.existing); err != nil {
			return refuse("cannot read storage target %s: %v", target, unwrapPath(err))
		}
	}
	entries, problems, err := scanArchive(filepath.Join(r.Dir, st.file.Name))
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
		r.out.line("storage target %s: will be created", target)
	case nonEmpty:
		left := ""
		if st.rep.Unrelated > 0 {
			left = fmt.Sprintf("; %d of them the snapshot does not hold and will be left in place", st.rep.Unrelated)
		}
		r.out.line("storage target %s holds %d entries: unpacking over them (--clean)%s", target, len(st.existing), left)
	default:
		r.out.line("storage target %s: empty", target)
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
	tr := tar.NewReader(f)
	entries := map[string]tarEntry{}
	var problems []string
	for {
		hdr, err := tr.Next()
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

// run restores the databases, then the storage. It stops at the first
// failure; the report holds what was done.
func (r *restorer) run(ctx context.Context) error {
	r.rep.Started = time.Now().UTC()
	if r.st != nil {
		r.rep.Storage = r.st.rep
	}
	for i, t := range r.dbs {
		r.rep.Databases = append(r.rep.Databases, *t.rep)
		err := r.restoreDB(ctx, t)
		r.rep.Databases[i] = *t.rep
		if err != nil {
			return fmt.Errorf("snapshot: restore: %w%s", err, r.sofar())
		}
	}
	if r.st != nil {
		if err := r.unpack(ctx); err != nil {
			return fmt.Errorf("snapshot: restore: %w%s", err, r.sofar())
		}
	}
	for _, t := range r.dbs {
		switch t.db.source {
		case SourceCKANDB:
			r.rep.Notes = append(r.rep.Notes, fmt.Sprintf("ckan_db: the restored objects belong to the role pg_restore connected as (--no-owner): connect CKAN to %s as that role, or hand them over (REASSIGN OWNED)", t.db.name))
		case SourceDatastoreDB:
			r.rep.Notes = append(r.rep.Notes, fmt.Sprintf("datastore_db: grants were not restored (--no-privileges): give the DataStore's read-only user its access again with `ckan datastore set-permissions`, applied to %s", t.db.name))
		}
	}
	if st := r.st; st != nil && st.rep.Unrelated > 0 {
		r.rep.Notes = append(r.rep.Notes, fmt.Sprintf("storage: %d entries of %s that the snapshot does not hold were left in place (%s): remove them if they should go", st.rep.Unrelated, r.StoragePath, summarise(st.rep.UnrelatedNames, 5, "")))
	}
	if st := r.st; st != nil && !st.owners {
		r.rep.Notes = append(r.rep.Notes, fmt.Sprintf("storage: the restored files belong to %s (not running as root, owners were not restored): make sure CKAN's user can write %s", whoAmI(), r.StoragePath))
	}
	for _, n := range r.rep.Notes {
		r.out.line("next: %s", n)
	}
	r.out.line("restore of %s from %s: done in %v", r.m.Site, r.Dir, time.Since(r.rep.Started).Round(time.Millisecond))
	return nil
}

// sofar says, after a failure, what was done before it.
func (r *restorer) sofar() string {
	var done, not []string
	for _, d := range r.rep.Databases {
		if d.Done {
			done = append(done, d.Name)
		}
	}
	for _, t := range r.dbs {
		if !t.rep.Done {
			not = append(not, t.db.source)
		}
	}
	if r.st != nil && !r.st.rep.Done {
		if r.st.rep.Files+r.st.rep.Dirs+r.st.rep.Symlinks > 0 {
			not = append(not, fmt.Sprintf("storage (partly unpacked into %s: %d files, %d directories, %d links)", r.StoragePath, r.st.rep.Files, r.st.rep.Dirs, r.st.rep.Symlinks))
		} else {
			not = append(not, "storage")
		}
	}
	s := ""
	if len(done) > 0 {
		s += "; restored: " + strings.Join(done, ", ")
	}
	if len(not) > 0 {
		s += "; not restored: " + strings.Join(not, ", ")
	}
	return s
}

// restoreArgs is pg_restore's argv after the program: never the password.
func restoreArgs(db *database, clean bool, file string) []string {
	args := []string{"--no-owner", "--no-privileges", "--exit-on-error", "--single-transaction", "--no-password"}
	if clean {
		args = append(args, "--clean", "--if-exists")
	}
	return append(args, "--dbname="+db.dumpURL, file)
}

// restoreDB runs pg_restore for one target, then counts its tables.
func (r *restorer) restoreDB(ctx context.Context, t *dbTarget) error {
	start := time.Now()
	defer func() { t.rep.Seconds = seconds(time.Since(start)) }()
	db := t.db
	r.out.line("pg_restore %s: restoring %s (%s) into %s", db.source, t.file.Name, human.Bytes(t.file.Size), db.what())

	cmd := exec.CommandContext(ctx, r.pgRestore, restoreArgs(db, r.Clean, filepath.Join(r.Dir, t.file.Name))...)
	cmd.Env = db.toolEnv(RestoreApplicationName)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = killWait
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("pg_restore of %s: cannot run %s: %w", db.what(), r.pgRestore, err)
	}
	lines := r.readRestoreStderr(stderr, db)
	if err := cmd.Wait(); err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("cancelled while pg_restore restored %s (its single transaction rolled back): %w", db.what(), context.Cause(ctx))
		}
		msg := fmt.Sprintf("pg_restore of %s into %s failed with %v (its single transaction rolled back: the database is as it was)", t.file.Name, db.what(), err)
		if len(lines) > 0 {
			msg += ": " + strings.Join(lines, "; ")
		}
		return errors.New(msg)
	}
	t.rep.Done = true

	tables, err := listTables(ctx, db, statTablesQuery)
	if err != nil {
		return fmt.Errorf("pg_restore of %s into %s succeeded, but its tables cannot be listed: %w", t.file.Name, db.what(), err)
	}
	have := map[string]bool{}
	for _, tb := range tables {
		have[tb] = true
		if len(t.recorded) > 0 && !t.recorded[tb] {
			t.rep.Extra++
		}
	}
	for tb := range t.recorded {
		if !have[tb] {
			t.rep.Missing = append(t.rep.Missing, tb)
		}
	}
	sort.Strings(t.rep.Missing)
	t.rep.Tables = len(tables)
	r.out.line("pg_restore %s: done, %d tables in %s (%v)", db.source, len(tables), db.what(), time.Since(start).Round(time.Millisecond))
	if len(t.rep.Missing) > 0 {
		r.out.line("warning: %s: %d tables the snapshot recorded are not in %s: %s", db.source, len(t.rep.Missing), db.what(), summarise(t.rep.Missing, 5, ""))
	}
	if t.rep.Extra > 0 {
		r.out.line("%s: %d tables of %s are not the snapshot's and were left in place", db.source, t.rep.Extra, db.what())
	}
	return nil
}

// readRestoreStderr passes pg_restore's stderr to the output, line by
// line, scrubbed, and returns its last stderrTail lines.
func (r *restorer) readRestoreStderr(rd io.Reader, db *database) []string {
	var tail []string
	sc := bufio.NewScanner(rd)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(scrub(sc.Text(), db.secret))
		if len(db.password) >= 3 {
			line = strings.ReplaceAll(line, db.password, "xxxxx")
		}
		if line == "" {
			continue
		}
		r.out.line("pg_restore %s: %s", db.source, line)
		if len(tail) == stderrTail {
			tail = tail[1:]
		}
		tail = append(tail, line)
	}
	_, _ = io.Copy(io.Discard, rd)
	return tail
}

// dirMeta is a directory whose mode, owner and time are set once
// everything beneath it is written.
type dirMeta struct {
	name string
	hdr  *tar.Header
}

// unpack writes the archive's entries into the target.
func (r *restorer) unpack(ctx context.Context) error {
	st := r.st
	rep := st.rep
	start := time.Now()
	defer func() { rep.Seconds = seconds(time.Since(start)) }()
	target := r.StoragePath
	r.out.line("storage: unpacking %s (%s) into %s", st.file.Name, human.Bytes(st.file.Size), target)

	if st.create {
		if err := os.Mkdir(st.root, 0o755); err != nil {
			return fmt.Errorf("storage: cannot create %s: %v (running as %s)", target, unwrapPath(err), whoAmI())
		}
		rep.Created = true
		r.out.line("storage: created %s", target)
	}
	root, err := os.OpenRoot(st.root)
	if err != nil {
		return fmt.Errorf("storage: %v", err)
	}
	defer root.Close()
	f, err := os.Open(filepath.Join(r.Dir, st.file.Name))
	if err != nil {
		return fmt.Errorf("storage: %v", err)
	}
	defer f.Close()

	u := &unpacker{root: root, buf: make([]byte, copyBufferSize), owners: st.owners, users: map[string]int{}, groups: map[string]int{}}
	tr := tar.NewReader(bufio.NewReaderSize(f, copyBufferSize))
	var dirs []dirMeta
	last := time.Now()
	for {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("storage: cancelled: %w", context.Cause(ctx))
		}
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("storage: %s: %v", st.file.Name, err)
		}
		if hdr.Typeflag == tar.TypeXGlobalHeader {
			continue
		}
		name, err := entryName(hdr)
		if e, ok := st.entries[name]; err != nil || !ok || e.typ != hdr.Typeflag || e.link != hdr.Linkname {
			return fmt.Errorf("storage: %s changed while it was restored (entry %q): restore again", st.file.Name, hdr.Name)
		}
		if d := path.Dir(name); d != "." {
			if err := root.MkdirAll(d, 0o755); err != nil {
				return fmt.Errorf("storage: %s: %v", d, unwrapPath(err))
			}
		}
		x, existed := st.existing[name]
		switch hdr.Typeflag {
		case tar.TypeDir:
			if err := root.MkdirAll(name, 0o700); err != nil {
				return fmt.Errorf("storage: %s: %v", name, unwrapPath(err))
			}
			dirs = append(dirs, dirMeta{name, hdr})
			rep.Dirs++
		case tar.TypeReg:
			if err := u.file(name, hdr, tr); err != nil {
				return fmt.Errorf("storage: %s: %w", name, restoreWriteHint(err, target))
			}
			rep.Files++
			rep.Bytes += hdr.Size
		case tar.TypeSymlink:
			if err := u.symlink(name, hdr); err != nil {
				return fmt.Errorf("storage: %s: %w", name, restoreWriteHint(err, target))
			}
			rep.Symlinks++
		}
		if existed && !x.mode.IsDir() {
			rep.Replaced++
		}
		if time.Since(last) >= progressEvery {
			last = time.Now()
			r.out.line("storage: %d files (%s) so far", rep.Files, human.Bytes(rep.Bytes))
		}
	}
	// Deepest first, so that a directory's time is set after its entries
	// were written, and a read-only one was writable while they were.
	sort.SliceStable(dirs, func(i, j int) bool {
		return strings.Count(dirs[i].name, "/") > strings.Count(dirs[j].name, "/")
	})
	for _, d := range dirs {
		if err := u.dirMeta(d.name, d.hdr); err != nil {
			return fmt.Errorf("storage: %s: %v", d.name, unwrapPath(err))
		}
	}
	if err := syncFS(st.root); err != nil {
		return fmt.Errorf("storage: syncing %s: %w", target, err)
	}
	rep.Owners = st.owners
	rep.Done = true
	replaced := ""
	if rep.Replaced > 0 {
		replaced = fmt.Sprintf(", replacing %d", rep.Replaced)
	}
	r.out.line("storage: done, %d files (%s), %d directories, %d links into %s%s (%v)",
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

func seconds(d time.Duration) float64 {
	return float64(d.Round(time.Millisecond)) / float64(time.Second)
}
