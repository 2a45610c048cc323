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
// The storage archive (or a storage kept as a tree: a tar stream made from
// the manifest's entries and the tree's files) is unpacked through an
// os.Root, with every entry
// checked first: no absolute name, no "..", nothing beneath a symbolic
// link or a file, and no symbolic link that resolves, through the
// archive's links and those already in the target, outside the target.
// Files are written to a temporary name and renamed into place, with
// their modes and modification times; the file system is synced
// (syncfs) at the end. Running as root, owners come from the archive
// (by name where the name exists here, else by number).
//
// The code is in four files: this one holds Restore, what it is given and
// what it reports, and the run; restore_check.go the checks before the
// first write; restore_db.go pg_restore and the target databases;
// restore_storage.go the storage archive, its checks and its unpacking.

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os/exec"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ckanops/ckanops/config"

	"github.com/ckanops/ckanops/api"
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
	// Databases maps the site's other databases the snapshot holds
	// (gate.toml's [[database]]), by name, to the postgres:// URL of the
	// database to restore each one's dump into, as for CKANDB. A database
	// not named is not restored.
	Databases map[string]config.SecretURL
	// StoragePath is the directory to unpack the storage archive into,
	// when the snapshot holds one storage (whatever its name); with
	// several, name each in Storages. Empty: not restored. A target may
	// be missing when its parent exists.
	StoragePath string
	// Storages maps a storage of the snapshot, by name, to the directory
	// to unpack it into. A storage not named is not restored, unless
	// AllStorages.
	Storages map[string]string
	// AllStorages restores every storage the snapshot holds: into its
	// directory in Storages, else the path the manifest recorded for it
	// (in place: such a target holds files, so it needs Clean).
	AllStorages bool
	// PGRestore is the pg_restore program. Default "pg_restore".
	PGRestore string
	// Jobs is pg_restore's --jobs for a database dumped in parallel (a
	// directory dump, KindPGDumpDir); a custom-format dump is restored in
	// one transaction, without jobs. Zero: the number of CPUs. A parallel
	// restore is not one transaction: a failure leaves part of the dump in
	// the target.
	Jobs int
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
	// Progress, when set, gets how far each part has come: each
	// pg_restore (the bytes of its dump read), each archive (its bytes
	// read): a first report at zero, then at most every 250 ms, and a last
	// one (Ended). Calls never overlap, nor with Output's.
	Progress func(api.Progress)
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
	// Storages are the storages restored (or to be), in the manifest's
	// order.
	Storages []*StorageRestore `json:"storages"`
	// Storage is the one storage restored, when exactly one was asked
	// for (the same record as Storages[0]); absent otherwise.
	Storage *StorageRestore `json:"storage,omitempty"`
	// NotIncluded are the storages of the site the snapshot does not hold
	// (its manifest's storages_not_included): not restored, whatever is
	// asked.
	NotIncluded []StorageNotIncluded `json:"not_included"`
	// Notes are what to do next: grants to give again, and the like.
	Notes   []string  `json:"notes"`
	Started time.Time `json:"started"`
	Seconds float64   `json:"seconds"`
}

// DatabaseRestore is what a restore did with one dump.
type DatabaseRestore struct {
	Name     string           `json:"name"`     // SourceCKANDB, SourceDatastoreDB or another database's name
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

// StorageRestore is what a restore did with one storage's archive.
type StorageRestore struct {
	Name string `json:"name"` // the storage's, in the manifest
	Path string `json:"path"` // the target, as given (or as recorded, with AllStorages)
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

// restorer is a checked RestoreSpec: what Restore will do.
type restorer struct {
	RestoreSpec
	out       *output
	pgRestore string // resolved; "" when no database is restored
	m         *Manifest
	dbs       []*dbTarget
	sts       []*storageTarget
	rep       *RestoreReport
}

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
	if s.Jobs <= 0 {
		s.Jobs = config.DefaultSnapshotJobs()
	}
	secrets := []config.SecretURL{s.CKANDB, s.DatastoreDB}
	for _, u := range s.Databases {
		secrets = append(secrets, u)
	}
	r := &restorer{RestoreSpec: s, out: &output{f: s.Output, progress: s.Progress, secrets: secrets}}
	if s.Dir == "" {
		return nil, errors.New("no snapshot directory")
	}
	if s.CKANDB == "" && s.DatastoreDB == "" && len(s.Databases) == 0 && s.StoragePath == "" && len(s.Storages) == 0 && !s.AllStorages {
		return nil, errors.New("nothing to restore: give a target for ckan_db, datastore_db, another database or the storage")
	}
	type target struct {
		source string
		url    config.SecretURL
	}
	targets := []target{{SourceCKANDB, s.CKANDB}, {SourceDatastoreDB, s.DatastoreDB}}
	var others []config.Database
	for _, name := range slices.Sorted(maps.Keys(s.Databases)) {
		others = append(others, config.Database{Name: name, DSN: s.Databases[name]})
		targets = append(targets, target{name, s.Databases[name]})
	}
	if err := checkDatabaseNames(others); err != nil {
		return nil, err
	}
	for _, c := range targets {
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
	for i, a := range r.dbs {
		for _, b := range r.dbs[:i] {
			if sameDatabase(a.db.conn, b.db.conn) {
				if b.db.source == SourceCKANDB && a.db.source == SourceDatastoreDB {
					return nil, fmt.Errorf("the ckan_db and datastore_db targets are the same database (%s): CKAN keeps them apart; give two databases", a.db.name)
				}
				return nil, fmt.Errorf("the %s and %s targets are the same database (%s): give each its own database", b.db.source, a.db.source, a.db.name)
			}
		}
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

// run restores the databases, then the storage. It stops at the first
// failure; the report holds what was done.
func (r *restorer) run(ctx context.Context) error {
	r.rep.Started = time.Now().UTC()
	for _, st := range r.sts {
		r.rep.Storages = append(r.rep.Storages, st.rep)
	}
	if len(r.sts) == 1 {
		r.rep.Storage = r.sts[0].rep
	}
	for i, t := range r.dbs {
		r.rep.Databases = append(r.rep.Databases, *t.rep)
		err := r.restoreDB(ctx, t)
		r.rep.Databases[i] = *t.rep
		if err != nil {
			return fmt.Errorf("snapshot: restore: %w%s", err, r.sofar())
		}
	}
	for _, st := range r.sts {
		if err := r.unpack(ctx, st); err != nil {
			return fmt.Errorf("snapshot: restore: %w%s", err, r.sofar())
		}
	}
	for _, t := range r.dbs {
		switch t.db.source {
		case SourceCKANDB:
			r.rep.Notes = append(r.rep.Notes, fmt.Sprintf("ckan_db: the restored objects belong to the role pg_restore connected as (--no-owner): connect CKAN to %s as that role, or hand them over (REASSIGN OWNED)", t.db.name))
		case SourceDatastoreDB:
			r.rep.Notes = append(r.rep.Notes, fmt.Sprintf("datastore_db: grants were not restored (--no-privileges): give the DataStore's read-only user its access again with `ckan datastore set-permissions`, applied to %s", t.db.name))
		default:
			r.rep.Notes = append(r.rep.Notes, fmt.Sprintf("%s: the restored objects belong to the role pg_restore connected as (--no-owner) and grants were not restored (--no-privileges): connect its program to %s as that role, or hand them over (REASSIGN OWNED) and grant again", t.db.source, t.db.name))
		}
	}
	for _, st := range r.sts {
		if st.rep.Unrelated > 0 {
			r.rep.Notes = append(r.rep.Notes, fmt.Sprintf("%s: %d entries of %s that the snapshot does not hold were left in place (%s): remove them if they should go", st.label, st.rep.Unrelated, st.path, summarise(st.rep.UnrelatedNames, 5, "")))
		}
		if !st.owners {
			r.rep.Notes = append(r.rep.Notes, fmt.Sprintf("%s: the restored files belong to %s (not running as root, owners were not restored): make sure CKAN's user can write %s", st.label, whoAmI(), st.path))
		}
	}
	for _, n := range r.m.StoragesNotIncluded {
		r.rep.Notes = append(r.rep.Notes, fmt.Sprintf("storage %s: not in the snapshot (%s), so not restored: it is as it is now", n.Name, n.Reason))
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
	for _, st := range r.sts {
		switch {
		case st.rep.Done:
			done = append(done, st.label)
		case st.rep.Files+st.rep.Dirs+st.rep.Symlinks > 0:
			not = append(not, fmt.Sprintf("%s (partly unpacked into %s: %d files, %d directories, %d links)", st.label, st.path, st.rep.Files, st.rep.Dirs, st.rep.Symlinks))
		default:
			not = append(not, st.label)
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

func seconds(d time.Duration) float64 {
	return float64(d.Round(time.Millisecond)) / float64(time.Second)
}
