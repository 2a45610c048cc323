package snapshot

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/ckanops/ckanops/config"
	"github.com/ckanops/ckanops/internal/human"
)

// FormatVersion is the manifest format this package writes for a site
// without other databases. It reads it, format 1, whose one storage
// ("storage") it reads as the storage "default" of storages, and
// FormatDatabases.
const FormatVersion = 2

// FormatDatabases is the format of a manifest whose databases hold the
// site's other databases (gate.toml's [[database]]: a record and a
// <name>.dump each), besides ckan_db and datastore_db. It is format 2
// otherwise; a ckanops that reads only formats 1 and 2 refuses it, rather
// than restore a site without those databases unawares.
const FormatDatabases = 3

// FormatTree is the format of a manifest with a storage kept as a
// directory tree (KindTree, Spec.Incremental) rather than a tar: its
// record has a Tree listing every entry, and the files unchanged since the
// site's previous snapshot are hard links to that snapshot's copies. It
// may hold the site's other databases too. A ckanops that reads only
// formats 1 to 3 refuses it, rather than look for a tar that is not there.
const FormatTree = 4

// FormatDumpDir is the format of a manifest with a database dumped in
// parallel (pg_dump --format=directory --jobs, Spec.ParallelThreshold)
// into DumpDirName: every file of that directory is listed, kind
// KindPGDumpDir. It may hold trees and the site's other databases too. A
// ckanops that reads only formats 1 to 4 refuses it, rather than look for
// a <name>.dump that is not there.
const FormatDumpDir = 5

// formatOneStorage is the format written before several storages were
// (format 1): it has "storage", one record, and no "storages".
const formatOneStorage = 1

// ManifestName is the manifest's file name in a snapshot directory. Its
// presence in a directory whose name does not start with a dot is what
// makes a snapshot complete.
const ManifestName = "manifest.json"

// Verdicts. Inconsistent wins over Partial: a snapshot in which something
// changed is inconsistent whatever it left out.
const (
	Consistent   = "consistent"
	Inconsistent = "inconsistent"
	// Partial: nothing the snapshot holds changed, but it lacks a storage
	// of the site that the gate cannot archive (a cloud bucket) and that
	// [snapshot] exclude_storages does not name. Never consistent.
	Partial = "partial"
)

// Kinds of files in a snapshot.
const (
	KindPGDump = "pg_dump" // pg_dump --format=custom
	KindTar    = "tar"     // storage, written by archive/tar
	// KindTree: storage, a directory of the snapshot holding the storage's
	// files at their relative paths (Storage.Tree lists them). Its Size is
	// the sum of its files' sizes, its SHA256 that of Tree (TreeDigest).
	KindTree = "tree"
	// KindPGDumpDir: one file of a database's pg_dump --format=directory
	// (DumpDirName(Source)/<file>), format FormatDumpDir. Every file of
	// the directory is listed, its toc.dat among them.
	KindPGDumpDir = "pg_dump_dir"
)

// Sources: what a file or a database record is a copy of. They are also
// the names of what was not configured.
const (
	SourceCKANDB      = "ckan_db"
	SourceDatastoreDB = "datastore_db"
	SourceStorage     = "storage"
)

// File names in a snapshot directory.
const (
	ckanDumpName      = SourceCKANDB + ".dump"
	datastoreDumpName = SourceDatastoreDB + ".dump"
	storageTarName    = "storage.tar" // the storage "default"'s archive
)

// StorageFileName is the archive of the storage name in a snapshot:
// storage.tar for "default" (config.StorageNameDefault: a lone storage
// path, as snapshots always named it), storage-<name>.tar for the others.
func StorageFileName(name string) string {
	if name == config.StorageNameDefault {
		return storageTarName
	}
	return "storage-" + name + ".tar"
}

// StorageDirName is the directory of the storage name in a snapshot of
// format FormatTree: storage for "default", storage-<name> for the others.
func StorageDirName(name string) string {
	return strings.TrimSuffix(StorageFileName(name), ".tar")
}

// storageNameRE is a storage's name as a snapshot accepts it: it names a
// file of the snapshot. config checks the same.
var storageNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$`)

// Manifest is manifest.json: what a snapshot holds and whether it is
// consistent.
type Manifest struct {
	Format      int    `json:"format"`
	Site        string `json:"site"`
	CKANVersion string `json:"ckan_version"`
	ModeVersion int64  `json:"mode_version"`
	Fence       int64  `json:"fence,omitempty"` // the runbook lock's fencing number as it was taken; absent outside a runbook
	Times       Times  `json:"times"`
	Files       []File `json:"files"`
	// Databases has one record per configured database, CKAN's first.
	Databases []Database `json:"databases"`
	// Storages has one record per storage archived, one tar each, in the
	// order configured; empty when none was.
	Storages []Storage `json:"storages"`
	// StoragesNotIncluded names the site's storages the snapshot does not
	// hold: excluded on purpose ([snapshot] exclude_storages), or of a
	// type the gate cannot archive, which makes it Partial.
	StoragesNotIncluded []StorageNotIncluded `json:"storages_not_included"`
	// Storage is format 1's one storage. Load moves it into Storages (as
	// "default", storage.tar) and leaves this nil; format 2 never has it.
	Storage *Storage `json:"storage,omitempty"`
	// NotConfigured lists the sources (ckan_db, datastore_db, storage)
	// that were not configured, so not taken. "storage": no storage at all.
	NotConfigured []string `json:"not_configured"`
	Verdict       string   `json:"verdict"` // Consistent, Inconsistent or Partial
	// Changed names what changed while the snapshot was taken; empty when
	// consistent or partial. Why a snapshot is partial is in
	// StoragesNotIncluded (Problems says both).
	Changed []string `json:"changed"`
	// Bookkeeping names changes to tables CKAN writes on reads, which do
	// not spoil the verdict.
	Bookkeeping []string `json:"bookkeeping"`

	// Dir is the snapshot's directory: where Take put it or Load read
	// it. Not part of the file.
	Dir string `json:"-"`
}

// Times are the moments a snapshot records, in UTC. Enabled and Quiesced
// are left out when unknown.
type Times struct {
	Enabled  time.Time `json:"enabled,omitzero"`  // maintenance mode was enabled
	Quiesced time.Time `json:"quiesced,omitzero"` // writes were drained
	Started  time.Time `json:"started"`           // Take started
	Ended    time.Time `json:"ended"`             // the manifest was written
}

// File is one file of a snapshot.
type File struct {
	Name   string `json:"name"`   // relative to the snapshot directory
	Kind   string `json:"kind"`   // KindPGDump, KindPGDumpDir, KindTar or KindTree
	Source string `json:"source"` // SourceCKANDB, SourceDatastoreDB, SourceStorage or another database's name
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"` // hex
}

// Database is what a snapshot recorded of one database.
type Database struct {
	// Name is SourceCKANDB, SourceDatastoreDB or, for one of the site's
	// other databases, its [[database]] name; its dump is <Name>.dump.
	Name     string `json:"name"`
	Database string `json:"database"` // the database's name, no host or user
	// Before and After are the row counters of every user table, keyed
	// by "schema.table", read before the dump and after it.
	Before map[string]Counters `json:"before"`
	After  map[string]Counters `json:"after"`
	// Relfilenodes and Schema are what the counters do not see (TRUNCATE,
	// a table's rewrite, DDL), read with them. Manifests written before
	// ckanops read them have neither: they load, and say nothing of it.
	Relfilenodes *Relfilenodes `json:"relfilenodes,omitempty"`
	Schema       *SchemaDigest `json:"schema,omitempty"`
	// Proof is how the verdict knows what was written to the database
	// while the snapshot ran (see proof.go). Manifests written before
	// ckanops proved it have none: their counters decided.
	Proof *Proof `json:"proof,omitempty"`
}

// Proof is how a snapshot's verdict knows what was written to one
// database while it ran.
type Proof struct {
	// Method is MethodXIDHorizon (no transaction committed anywhere in the
	// cluster), MethodWAL (the WAL of the transactions that committed,
	// read with pg_walinspect) or MethodStatistics (the row counters,
	// after waiting for Postgres to publish them).
	Method string `json:"method"`
	// Committed is how many transactions of the cluster committed while
	// the snapshot ran (MethodWAL); 0 for MethodXIDHorizon; -1: not known.
	Committed int `json:"committed"`
	// WALBytes is how much WAL MethodWAL read.
	WALBytes int64 `json:"wal_bytes,omitempty"`
	// Why says, for MethodStatistics, why neither proof held.
	Why string `json:"why,omitempty"`
}

// Relfilenodes are the relfilenode (pg_class) of every ordinary table of
// the user schemas, keyed by "schema.table", read before the dump and
// after it. TRUNCATE, VACUUM FULL, CLUSTER and an ALTER TABLE that
// rewrites the table give it a new one; autovacuum, VACUUM and ANALYZE do
// not.
type Relfilenodes struct {
	Before map[string]uint32 `json:"before"`
	After  map[string]uint32 `json:"after"`
}

// SchemaDigest fingerprints the definitions of the relations of the user
// schemas (tables, views, materialized views, foreign tables: columns,
// defaults, indexes, constraints, triggers, rules, owner, privileges),
// before the dump and after it: the SHA-256 (hex) of one line per relation,
// sorted by name, holding the quoted "schema.relation", its relkind and
// the MD5 of its definition as postgres.go's catalogQuery reads it. Only
// the same ckanops's two readings can be compared.
type SchemaDigest struct {
	Before string `json:"before"`
	After  string `json:"after"`
}

// Counters are a table's cumulative row counters from pg_stat_user_tables.
type Counters struct {
	Inserts int64 `json:"n_tup_ins"`
	Updates int64 `json:"n_tup_upd"`
	Deletes int64 `json:"n_tup_del"`
}

// Storage is what a snapshot recorded of one file storage.
type Storage struct {
	// Name is the storage's (config.Storage); "default" for a lone
	// storage_path and for format 1's storage.
	Name   string      `json:"name,omitempty"`
	Path   string      `json:"path"`           // its directory, as configured
	Type   string      `json:"type,omitempty"` // CKAN's adapter, when configured
	File   string      `json:"file,omitempty"` // its archive in the snapshot: StorageFileName(Name), or StorageDirName(Name) for a tree
	Before StorageTree `json:"before"`
	After  StorageTree `json:"after"`
	// Tree is what a storage kept as a directory (KindTree, format
	// FormatTree) holds; nil for a tar.
	Tree *Tree `json:"tree,omitempty"`
}

// StorageNotIncluded is a storage of the site the snapshot does not hold.
type StorageNotIncluded struct {
	Name string `json:"name"`
	Type string `json:"type,omitempty"` // CKAN's adapter, when configured
	Path string `json:"path,omitempty"` // its directory, for a local storage excluded
	// Excluded: [snapshot] exclude_storages names it; it does not spoil
	// the verdict. Otherwise the gate cannot archive it and the snapshot
	// is Partial.
	Excluded bool   `json:"excluded"`
	Reason   string `json:"reason"`
}

// StorageByName is the storage record called name, or nil.
func (m *Manifest) StorageByName(name string) *Storage {
	for i := range m.Storages {
		if m.Storages[i].Name == name {
			return &m.Storages[i]
		}
	}
	return nil
}

// Missing names the storages that make the snapshot partial: not
// included, and not excluded.
func (m *Manifest) Missing() []StorageNotIncluded {
	var out []StorageNotIncluded
	for _, s := range m.StoragesNotIncluded {
		if !s.Excluded {
			out = append(out, s)
		}
	}
	return out
}

// Problems is why the snapshot is not consistent: what changed, then
// each storage it lacks ("storage bucket (type ckan:s3) not included:
// ..."). Empty when consistent.
func (m *Manifest) Problems() []string {
	out := append([]string{}, m.Changed...)
	for _, s := range m.Missing() {
		out = append(out, missingText(s))
	}
	return out
}

func missingText(s StorageNotIncluded) string {
	what := "storage " + s.Name
	if s.Type != "" {
		what += " (type " + s.Type + ")"
	}
	return what + " not included: " + s.Reason
}

// StorageTree summarises one walk of the storage tree.
type StorageTree struct {
	Files int64 `json:"files"` // regular files
	Bytes int64 `json:"bytes"` // their sizes, summed
	// Digest is the SHA-256 (hex) of one line per entry (file, directory,
	// symbolic link...), sorted by path: the quoted relative path, the
	// size, the modification time in nanoseconds and the mode (Go's
	// fs.FileMode, octal), separated by spaces. Directories are recorded
	// with size and time 0: what changes in them is their entries.
	Digest string `json:"digest"`
}

// Bytes is the total size of the snapshot's files, manifest excluded.
func (m *Manifest) Bytes() int64 {
	var n int64
	for _, f := range m.Files {
		n += f.Size
	}
	return n
}

// maxManifestSize bounds what Load reads, and so what writeManifest
// writes: a DataStore with tens of thousands of tables still fits many
// times over. A variable for the tests of the bound.
var maxManifestSize int64 = 256 << 20

// Load reads dir/manifest.json strictly: unknown fields, trailing data, a
// format other than FormatVersion or a file name leaving the directory
// are errors.
func Load(dir string) (*Manifest, error) {
	path := filepath.Join(dir, ManifestName)
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("snapshot: %s has no %s: not a complete snapshot", dir, ManifestName)
	}
	if err != nil {
		return nil, fmt.Errorf("snapshot: read manifest: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxManifestSize+1))
	if err != nil {
		return nil, fmt.Errorf("snapshot: read manifest: %w", err)
	}
	if int64(len(b)) > maxManifestSize {
		return nil, fmt.Errorf("snapshot: manifest %s is larger than %d bytes", path, maxManifestSize)
	}
	m, err := decodeManifest(b)
	if err != nil {
		return nil, fmt.Errorf("snapshot: manifest %s: %w", path, err)
	}
	m.Dir = dir
	return m, nil
}

func decodeManifest(b []byte) (*Manifest, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var m Manifest
	if err := dec.Decode(&m); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("trailing data after the JSON object")
	}
	if err := m.validate(); err != nil {
		return nil, err
	}
	return &m, nil
}

// validate checks what Load promises its callers.
func (m *Manifest) validate() error {
	switch m.Format {
	case FormatVersion, FormatDatabases, FormatTree, FormatDumpDir:
		if m.Storage != nil {
			return fmt.Errorf("format %d has storages, not storage (format %d's)", FormatVersion, formatOneStorage)
		}
	case formatOneStorage:
		if len(m.Storages) > 0 || len(m.StoragesNotIncluded) > 0 {
			return fmt.Errorf("format %d has storage, not storages (format %d's)", formatOneStorage, FormatVersion)
		}
		if m.Verdict == Partial {
			return fmt.Errorf("format %d has no verdict %q", formatOneStorage, Partial)
		}
		if st := m.Storage; st != nil {
			if st.Name != "" || st.File != "" || st.Type != "" {
				return fmt.Errorf("format %d's storage has no name, type or file", formatOneStorage)
			}
			rec := *st
			rec.Name, rec.File = config.StorageNameDefault, storageTarName
			m.Storages = []Storage{rec}
			m.Storage = nil
		}
	default:
		return fmt.Errorf("format %d is not one this ckanops reads (%d, %d, %d, %d or %d): a newer ckanops wrote it; verify or restore it with that one", m.Format, formatOneStorage, FormatVersion, FormatDatabases, FormatTree, FormatDumpDir)
	}
	if m.Site == "" {
		return errors.New("no site")
	}
	switch m.Verdict {
	case Consistent, Inconsistent, Partial:
	default:
		return fmt.Errorf("verdict %q is not %q, %q or %q", m.Verdict, Consistent, Inconsistent, Partial)
	}
	if m.Verdict == Consistent && len(m.Missing()) > 0 {
		return fmt.Errorf("verdict %q, but storage %s is not included and not excluded", Consistent, m.Missing()[0].Name)
	}
	if m.Verdict == Partial && len(m.Missing()) == 0 {
		return fmt.Errorf("verdict %q, but every storage is included or excluded", Partial)
	}
	if m.Times.Started.IsZero() || m.Times.Ended.IsZero() {
		return errors.New("times.started or times.ended missing")
	}
	seen := map[string]bool{}
	for _, f := range m.Files {
		if !filepath.IsLocal(f.Name) || f.Name == ManifestName {
			return fmt.Errorf("file name %q is not a file of the snapshot directory", f.Name)
		}
		if seen[f.Name] {
			return fmt.Errorf("file %s listed twice", f.Name)
		}
		seen[f.Name] = true
		switch {
		case f.Kind == KindTree && m.Format != FormatTree && m.Format != FormatDumpDir:
			return fmt.Errorf("file %s: kind %q needs format %d or %d", f.Name, f.Kind, FormatTree, FormatDumpDir)
		case f.Kind == KindPGDumpDir && m.Format != FormatDumpDir:
			return fmt.Errorf("file %s: kind %q needs format %d", f.Name, f.Kind, FormatDumpDir)
		case f.Kind == KindPGDumpDir && (filepath.Dir(f.Name) != DumpDirName(f.Source) || f.Source == ""):
			return fmt.Errorf("file %s: kind %q, but not a file of %s", f.Name, f.Kind, DumpDirName(f.Source))
		case f.Kind != KindPGDump && f.Kind != KindPGDumpDir && f.Kind != KindTar && f.Kind != KindTree:
			return fmt.Errorf("file %s: kind %q is not %q, %q, %q or %q", f.Name, f.Kind, KindPGDump, KindPGDumpDir, KindTar, KindTree)
		}
		if f.Size < 0 {
			return fmt.Errorf("file %s: negative size", f.Name)
		}
		if h, err := hex.DecodeString(f.SHA256); err != nil || len(h) != 32 {
			return fmt.Errorf("file %s: sha256 %q is not 64 hex digits", f.Name, f.SHA256)
		}
	}
	for _, d := range m.Databases {
		if p := d.Proof; p != nil && p.Method != MethodXIDHorizon && p.Method != MethodWAL && p.Method != MethodStatistics {
			return fmt.Errorf("database %s: proof method %q is not %q, %q or %q", d.Name, p.Method, MethodXIDHorizon, MethodWAL, MethodStatistics)
		}
	}
	names := map[string]bool{}
	for _, st := range m.Storages {
		if !storageNameRE.MatchString(st.Name) || names[st.Name] {
			return fmt.Errorf("storage name %q is not valid or listed twice", st.Name)
		}
		names[st.Name] = true
		if st.Tree != nil {
			f, ok := fileByName(m.Files, st.File)
			if st.File != StorageDirName(st.Name) || !ok || f.Kind != KindTree {
				return fmt.Errorf("storage %s: file %q is not %s, a tree of the snapshot", st.Name, st.File, StorageDirName(st.Name))
			}
			if err := st.Tree.validate(f); err != nil {
				return fmt.Errorf("storage %s: %w", st.Name, err)
			}
			continue
		}
		if f, ok := fileByName(m.Files, st.File); st.File != StorageFileName(st.Name) || !ok || f.Kind != KindTar {
			return fmt.Errorf("storage %s: file %q is not %s, a file of the snapshot", st.Name, st.File, StorageFileName(st.Name))
		}
	}
	for _, st := range m.StoragesNotIncluded {
		if !storageNameRE.MatchString(st.Name) || names[st.Name] {
			return fmt.Errorf("storage name %q is not valid or listed twice", st.Name)
		}
		names[st.Name] = true
	}
	dbNames := map[string]bool{}
	for _, d := range m.Databases {
		if dbNames[d.Name] {
			return fmt.Errorf("database record %q listed twice", d.Name)
		}
		dbNames[d.Name] = true
		if !IsCoreDatabase(d.Name) {
			switch {
			case m.Format != FormatDatabases && m.Format != FormatTree && m.Format != FormatDumpDir:
				return fmt.Errorf("database record %q is not %s or %s (format %d has no others)", d.Name, SourceCKANDB, SourceDatastoreDB, m.Format)
			case !config.DatabaseNameRE.MatchString(d.Name) || slices.Contains(config.ReservedDatabaseNames, d.Name):
				return fmt.Errorf("database record %q: not a database name", d.Name)
			}
			f, ok := fileByName(m.Files, DumpFileName(d.Name))
			if !ok {
				f, ok = fileByName(m.Files, DumpDirName(d.Name)+"/"+dumpTOCName)
			}
			if !ok || (f.Kind != KindPGDump && f.Kind != KindPGDumpDir) || f.Source != d.Name {
				return fmt.Errorf("database record %s: the files list no %s or %s dump of it", d.Name, DumpFileName(d.Name), DumpDirName(d.Name))
			}
		}
		if s := d.Schema; s != nil {
			for _, h := range []string{s.Before, s.After} {
				if b, err := hex.DecodeString(h); err != nil || len(b) != 32 {
					return fmt.Errorf("database record %s: schema digest %q is not 64 hex digits", d.Name, h)
				}
			}
		}
	}
	// A directory dump has its table of contents, and only one dump.
	for _, f := range m.Files {
		if f.Kind != KindPGDumpDir {
			continue
		}
		if _, ok := fileByName(m.Files, DumpDirName(f.Source)+"/"+dumpTOCName); !ok {
			return fmt.Errorf("file %s: its directory dump %s lists no %s", f.Name, DumpDirName(f.Source), dumpTOCName)
		}
		if _, ok := fileByName(m.Files, DumpFileName(f.Source)); ok {
			return fmt.Errorf("database %s has both a %s and a %s dump", f.Source, DumpFileName(f.Source), DumpDirName(f.Source))
		}
	}
	return nil
}

// DumpFiles are the files of the dump of the database called source:
// its <source>.dump, or every file of its <source>.dir; nil when the
// snapshot holds none.
func (m *Manifest) DumpFiles(source string) []File {
	var out []File
	for _, f := range m.Files {
		if f.Source == source && (f.Kind == KindPGDump || f.Kind == KindPGDumpDir) {
			out = append(out, f)
		}
	}
	return out
}

// IsCoreDatabase reports whether name is CKAN's database or the
// DataStore's, as opposed to one of the site's other databases.
func IsCoreDatabase(name string) bool {
	return name == SourceCKANDB || name == SourceDatastoreDB
}

// DumpFileName is the dump of the database called name in a snapshot:
// ckan_db.dump, datastore_db.dump, <name>.dump.
func DumpFileName(name string) string { return name + ".dump" }

// DatabaseByName is the database record called name, or nil.
func (m *Manifest) DatabaseByName(name string) *Database {
	for i := range m.Databases {
		if m.Databases[i].Name == name {
			return &m.Databases[i]
		}
	}
	return nil
}

func fileByName(files []File, name string) (File, bool) {
	for _, f := range files {
		if f.Name == name {
			return f, true
		}
	}
	return File{}, false
}

// writeManifest writes dir/manifest.json and syncs it.
func writeManifest(dir string, m *Manifest) error {
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	b = append(b, '\n')
	if int64(len(b)) > maxManifestSize {
		// Load would refuse it: a snapshot nobody could verify or restore.
		return fmt.Errorf("the manifest would be %s, more than the %s ckanops loads (a storage kept as a tree lists every entry): set [snapshot] incremental = false to keep storages as tars",
			human.Bytes(int64(len(b))), human.Bytes(maxManifestSize))
	}
	f, err := os.OpenFile(filepath.Join(dir, ManifestName), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
