package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/ckanops/ckanops/api"
	"github.com/ckanops/ckanops/config"
	"github.com/ckanops/ckanops/runbook/snapshot"
)

const snapshotVerifyUsage = `snapshot verify [--json] [--pg-restore PROGRAM] DIR
Re-reads every file of the snapshot against its manifest (size and sha256),
runs 'pg_restore --list' on each database dump and reads each storage's tar
to its end. Runs on the host that holds the snapshot; needs no gate.

Exit status: 0 every file checks out; 1 a file does not; 2 bad usage or no
manifest.`

const snapshotRestoreUsage = `snapshot restore DIR [--ckan-db URL] [--datastore-db URL] [--db NAME=URL ...] [--storage [NAME=]PATH ...] [--all-storages] [--force] [--clean] [--pg-restore PROGRAM] [--jobs N] [--json]
Puts a snapshot back: verifies it as 'snapshot verify' does, restores each
dump given a target with pg_restore (--no-owner --no-privileges, in one
transaction: a restore that fails leaves its database as it was; a
database dumped in parallel, NAME.dir/ in the snapshot, with --jobs N
parallel jobs, default the number of CPUs, which pg_restore cannot run in
one transaction: a failure leaves part of it restored), then unpacks each storage's tar into its directory (created when missing), with
modes and times. Give at least one target; the others are left alone.

Databases: --ckan-db and --datastore-db take CKAN's dump and the
DataStore's; --db NAME=URL (repeatable) takes the dump of the site's
other database NAME (gate.toml's [[database]]: DataPusher's, a
harvester's...), NAME.dump in the snapshot, likewise.

Storages: a snapshot holds one tar per storage of the site (CKAN 2.12's
ckan.files.storage.<name>; 'default' for a lone storage_path). --storage
PATH restores a snapshot's only storage into PATH; --storage NAME=PATH
(repeatable) restores the storage NAME into PATH (write ./a=b for a
directory whose name holds '='). --all-storages restores every storage the
snapshot holds: into the PATH given for it, else into the directory the
manifest recorded (in place: that needs --clean). A storage the snapshot
does not hold (a cloud storage, or one excluded) is never restored.

Everything is checked before anything is written. It refuses, and says
why: a file that does not match the manifest; an inconsistent or partial
snapshot (unless --force; partial: a storage of the site is not in it); a
target the snapshot has no part for; two storages into one directory; a
target database
that holds tables or a storage directory that is not empty (unless
--clean: pg_restore --clean --if-exists drops and recreates the dump's
objects, other tables stay; the tar is unpacked over the directory, and
files the snapshot does not hold stay); an archive entry that would land,
or a link that would point, outside PATH.

Target databases must exist (createdb). It writes only to the targets
given, never to the snapshot; to restore a site in place, stop CKAN (or
keep its maintenance mode down) first. Leave passwords out of the URLs
(others can read a command line in ps): PGPASSWORD or ~/.pgpass supply
them. Afterwards: grants are not restored (the DataStore's read-only user
needs 'ckan datastore set-permissions' applied again), and the restored
objects belong to the role pg_restore connected as.

Exit status: 0 restored; 1 refused or failed (the reason says which, and
what was done); 2 bad usage or no manifest.`

func init() {
	register(&command{
		name:    "snapshot",
		summary: "check or restore a snapshot a runbook wrote (snapshot verify|restore DIR)",
		usage: `snapshot verify|restore [flags] DIR
Forms:
  ckanops snapshot verify [--json] [--pg-restore PROGRAM] DIR
  ckanops snapshot restore DIR [--ckan-db URL] [--datastore-db URL] [--db NAME=URL ...]
                           [--storage [NAME=]PATH ...] [--all-storages] [--force] [--clean] [--pg-restore PROGRAM] [--jobs N] [--json]

verify re-reads every file of the snapshot against its manifest (size and
sha256; every file of a database dumped in parallel into <name>.dir/),
runs 'pg_restore --list' on each dump and reads each storage tar.

restore verifies the snapshot, then restores the dumps into the databases
given (pg_restore, one transaction each; a <name>.dir/ dump with
pg_restore --jobs N, not one transaction) and unpacks each storage asked for
into its directory. It checks everything first and refuses an inconsistent
or partial snapshot (unless --force) and non-empty targets (unless --clean).

Run 'ckanops snapshot verify --help' or 'ckanops snapshot restore --help'
for the details. Both run on the host that holds the snapshot; neither
needs a gate. Exit status: 0 ok; 1 a file does not check out, or the
restore was refused or failed; 2 bad usage or no manifest.`,
		run: func(e *env, args []string) error {
			if len(args) > 0 {
				switch args[0] {
				case "verify":
					return snapshotVerify(e, args[1:])
				case "restore":
					return snapshotRestore(e, args[1:])
				case "-h", "--help", "-help":
					return parse(e, newFlags(e, commands["snapshot"]), args)
				}
				return usageErr("unknown subcommand %q: want 'ckanops snapshot verify DIR' or 'ckanops snapshot restore DIR --ckan-db URL ...'", args[0])
			}
			return usageErr("want 'ckanops snapshot verify DIR' or 'ckanops snapshot restore DIR --ckan-db URL ...'")
		},
	})
}

// subcommand is the command whose --help a subcommand's flags print.
func subcommand(name, summary, usage string) *command {
	return &command{name: name, summary: summary, usage: usage}
}

func snapshotVerify(e *env, args []string) error {
	fs := newFlags(e, subcommand("snapshot verify", "check a snapshot against its manifest", snapshotVerifyUsage))
	asJSON := fs.Bool("json", false, "print the report as JSON")
	pgRestore := fs.String("pg-restore", snapshot.DefaultPGRestore, "the pg_restore program")
	if err := parse(e, fs, args); err != nil {
		return err
	}
	pos := fs.Args()
	if len(pos) != 1 {
		return usageErr("give exactly one snapshot DIR")
	}
	if err := e.stopIfDry(); err != nil {
		return err
	}
	ctx, stop := e.interruptible()
	defer stop()
	rep, err := snapshot.Verify(ctx, pos[0], *pgRestore)
	if err != nil {
		return usageErr("%v", err)
	}
	if *asJSON {
		if err := writeJSON(e.stdout, rep); err != nil {
			return err
		}
	} else {
		m := rep.Manifest
		fmt.Fprintf(e.stdout, "snapshot %s\nsite %s, CKAN %s, mode version %d, taken %s .. %s\nverdict: %s\n",
			rep.Dir, m.Site, m.CKANVersion, m.ModeVersion, m.Times.Started.Format("2006-01-02 15:04:05Z"), m.Times.Ended.Format("15:04:05Z"), m.Verdict)
		for _, c := range m.Changed {
			fmt.Fprintf(e.stdout, "  changed: %s\n", c)
		}
		for _, d := range m.Databases {
			file := snapshot.DumpFileName(d.Name)
			if fs := m.DumpFiles(d.Name); len(fs) > 0 && fs[0].Kind == snapshot.KindPGDumpDir {
				file = fmt.Sprintf("%s/, %d files, dumped in parallel", snapshot.DumpDirName(d.Name), len(fs))
			}
			fmt.Fprintf(e.stdout, "database %s: %s (%s, %d tables)\n", d.Name, d.Database, file, len(d.After))
		}
		for _, st := range m.Storages {
			if t := st.Tree; t != nil { // a directory tree (format 4), not a tar
				reuse := ""
				if t.Reused > 0 {
					reuse = fmt.Sprintf(", %d hard-linked to %s's copies when taken", t.Reused, t.ReusedFrom)
				}
				if t.Fallback != "" {
					reuse += "; " + t.Fallback
				}
				fmt.Fprintf(e.stdout, "storage %s: %s (%s/, %d files copied%s)\n", st.Name, st.Path, st.File, t.Copied, reuse)
				continue
			}
			fmt.Fprintf(e.stdout, "storage %s: %s (%s)\n", st.Name, st.Path, st.File)
		}
		for _, n := range m.StoragesNotIncluded {
			what := "NOT INCLUDED"
			if n.Excluded {
				what = "excluded"
			}
			fmt.Fprintf(e.stdout, "storage %s: %s: %s\n", n.Name, what, n.Reason)
		}
		for _, f := range rep.Files {
			if f.OK {
				fmt.Fprintf(e.stdout, "ok    %s\n", f.Name)
			} else {
				fmt.Fprintf(e.stdout, "FAIL  %s: %s\n", f.Name, f.Problem)
			}
		}
	}
	if !rep.OK {
		return &exitError{code: exitFail, err: errors.New("the snapshot does not match its manifest")}
	}
	return nil
}

// restoreResult is restore's --json output: the report (absent when the
// restore was refused or failed before it started), whether it succeeded,
// and why not.
type restoreResult struct {
	OK      bool   `json:"ok"`
	Refused bool   `json:"refused"` // nothing was written
	Error   string `json:"error,omitempty"`
	*snapshot.RestoreReport
}

func snapshotRestore(e *env, args []string) error {
	fs := newFlags(e, subcommand("snapshot restore", "restore a snapshot into databases and a storage directory", snapshotRestoreUsage))
	ckanDB := fs.String("ckan-db", "", "postgres:// `URL` of the database to restore CKAN's dump into (it must exist)")
	datastoreDB := fs.String("datastore-db", "", "postgres:// `URL` of the database to restore the DataStore's dump into (it must exist)")
	var dbs dbFlag
	fs.Var(&dbs, "db", "`NAME=URL`: restore the dump of the site's other database NAME ([[database]]) into the database at the postgres:// URL (it must exist; repeatable)")
	var storages storageFlag
	fs.Var(&storages, "storage", "`PATH` to unpack the snapshot's storage into (created when missing, if its parent exists); NAME=PATH for the storage NAME of several (repeatable)")
	allStorages := fs.Bool("all-storages", false, "restore every storage of the snapshot: into its --storage NAME=PATH, else the directory the manifest recorded")
	force := fs.Bool("force", false, "restore an inconsistent or partial snapshot")
	clean := fs.Bool("clean", false, "restore into targets that are not empty: drop and recreate the dump's objects; unpack over the directory's files")
	pgRestore := fs.String("pg-restore", snapshot.DefaultPGRestore, "the pg_restore `PROGRAM`")
	jobs := fs.Int("jobs", config.DefaultSnapshotJobs(), "pg_restore's parallel jobs (`N`) for a database dumped in parallel (a <name>.dir/ dump), which is then not restored in one transaction; other dumps are restored in one transaction")
	asJSON := fs.Bool("json", false, "print the report as JSON (progress goes to stderr)")
	if err := parse(e, fs, args); err != nil {
		return err
	}
	pos := fs.Args()
	if len(pos) != 1 {
		return usageErr("give exactly one snapshot DIR")
	}
	if storages.err != nil {
		return usageErr("%v", storages.err)
	}
	if dbs.err != nil {
		return usageErr("%v", dbs.err)
	}
	if *jobs < 1 {
		return usageErr("--jobs %d: give at least 1", *jobs)
	}
	if *ckanDB == "" && *datastoreDB == "" && len(dbs.named) == 0 && storages.path == "" && len(storages.named) == 0 && !*allStorages {
		return usageErr("nothing to restore: give --ckan-db URL, --datastore-db URL, --db NAME=URL or --storage PATH")
	}
	targets := []struct{ flag, url string }{{"--ckan-db", *ckanDB}, {"--datastore-db", *datastoreDB}}
	var databases map[string]config.SecretURL
	for _, name := range slices.Sorted(maps.Keys(dbs.named)) {
		targets = append(targets, struct{ flag, url string }{"--db " + name, dbs.named[name]})
		if databases == nil {
			databases = map[string]config.SecretURL{}
		}
		databases[name] = config.SecretURL(dbs.named[name])
	}
	for _, f := range targets {
		if f.url == "" {
			continue
		}
		u := config.SecretURL(f.url)
		if !strings.HasPrefix(f.url, "postgres://") && !strings.HasPrefix(f.url, "postgresql://") {
			return usageErr("%s %s is not a postgres:// URL", f.flag, u)
		}
		if len(u.Secrets()) > 0 {
			fmt.Fprintf(e.stderr, "ckanops snapshot restore: warning: the %s URL holds a password, which other users can read in ps: leave it out and put it in PGPASSWORD or ~/.pgpass\n", f.flag)
		}
	}
	if err := e.stopIfDry(); err != nil {
		return err
	}
	dir := pos[0]
	if _, err := snapshot.Load(dir); err != nil {
		return usageErr("%v", err)
	}

	progress := e.stdout
	if *asJSON {
		progress = e.stderr
	}
	ctx, stop := e.interruptible()
	defer stop()
	// On a terminal, one progress line rewritten in place; otherwise a
	// line per part now and then (runbook.go's progressView).
	bars := newProgressView(progress)
	rep, err := snapshot.Restore(ctx, snapshot.RestoreSpec{
		Dir:         dir,
		CKANDB:      config.SecretURL(*ckanDB),
		DatastoreDB: config.SecretURL(*datastoreDB),
		Databases:   databases,
		StoragePath: storages.path,
		Storages:    storages.named,
		AllStorages: *allStorages,
		PGRestore:   *pgRestore,
		Jobs:        *jobs,
		Force:       *force,
		Clean:       *clean,
		Output: func(line string) {
			bars.clear()
			fmt.Fprintln(progress, line)
			bars.draw()
		},
		Progress: func(p api.Progress) { bars.update("restore", p, time.Now()) },
	})
	bars.clear()
	if *asJSON {
		res := restoreResult{OK: err == nil, Refused: errors.Is(err, snapshot.ErrRefused), RestoreReport: rep}
		if err != nil {
			res.Error = err.Error()
		}
		if jerr := writeJSON(e.stdout, res); jerr != nil && err == nil {
			return jerr
		}
	} else if rep != nil {
		printRestore(e.stdout, rep, err == nil)
	}
	if err != nil {
		return &exitError{code: exitFail, err: err}
	}
	return nil
}

// printRestore sums up what a restore did.
func printRestore(w io.Writer, rep *snapshot.RestoreReport, ok bool) {
	verdict := rep.Verdict
	if rep.Forced {
		verdict += ", forced"
	}
	if ok {
		fmt.Fprintf(w, "\nrestored snapshot %s (site %s, %s) in %.1f s:\n", rep.Dir, rep.Site, verdict, rep.Seconds)
	} else {
		fmt.Fprintf(w, "\nrestore of snapshot %s (site %s, %s) stopped after %.1f s:\n", rep.Dir, rep.Site, verdict, rep.Seconds)
	}
	for _, d := range rep.Databases {
		switch {
		case d.Done:
			extra := ""
			if d.Extra > 0 {
				extra = fmt.Sprintf(", %d other tables left in place", d.Extra)
			}
			if len(d.Missing) > 0 {
				extra += fmt.Sprintf(", %d tables of the snapshot MISSING", len(d.Missing))
			}
			fmt.Fprintf(w, "  %-12s database %s: %d tables%s (%.1f s)\n", d.Name, d.Database, d.Tables, extra, d.Seconds)
		default:
			fmt.Fprintf(w, "  %-12s database %s: not restored\n", d.Name, d.Database)
		}
	}
	for _, st := range rep.Storages {
		label := "storage"
		if st.Name != config.StorageNameDefault {
			label = "storage " + st.Name
		}
		if st.Done {
			fmt.Fprintf(w, "  %-12s %s: %d files (%s), %d directories, %d links (%.1f s)\n", label, st.Path, st.Files, sizeString(st.Bytes), st.Dirs, st.Symlinks, st.Seconds)
		} else {
			fmt.Fprintf(w, "  %-12s %s: not restored (%d files written)\n", label, st.Path, st.Files)
		}
	}
	for _, n := range rep.NotIncluded {
		fmt.Fprintf(w, "  %-12s not in the snapshot, not restored: %s\n", "storage "+n.Name, n.Reason)
	}
}

// storageNameRE is what --storage takes for NAME in NAME=PATH: a storage
// name (config's rule), never a path (no '/').
var storageNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$`)

// storageFlag is --storage, repeatable: one bare PATH (the snapshot's only
// storage), or NAME=PATH for a storage by name.
type storageFlag struct {
	path  string
	named map[string]string
	err   error // the first bad value; reported as bad usage
}

func (f *storageFlag) String() string { return "" }
func (f *storageFlag) Type() string   { return "string" }

func (f *storageFlag) Set(v string) error {
	name, path, isNamed := strings.Cut(v, "=")
	switch {
	case isNamed && storageNameRE.MatchString(name):
		if path == "" {
			f.setErr("--storage %s=: give the directory to restore the storage %s into", name, name)
			return nil
		}
		if _, dup := f.named[name]; dup {
			f.setErr("--storage %s=...: the storage %s is given twice", name, name)
			return nil
		}
		if f.named == nil {
			f.named = map[string]string{}
		}
		f.named[name] = path
	case f.path != "":
		f.setErr("--storage %s: a second bare PATH; with several storages, give each as --storage NAME=PATH", v)
	default:
		f.path = v
	}
	return nil
}

func (f *storageFlag) setErr(format string, a ...any) {
	if f.err == nil {
		f.err = fmt.Errorf(format, a...)
	}
}

// dbFlag is --db NAME=URL, repeatable: the target of the site's other
// database NAME.
type dbFlag struct {
	named map[string]string
	err   error // the first bad value; reported as bad usage
}

func (f *dbFlag) String() string { return "" }
func (f *dbFlag) Type() string   { return "string" }

func (f *dbFlag) Set(v string) error {
	name, u, ok := strings.Cut(v, "=")
	var err error
	switch {
	case !ok || u == "" || strings.Contains(name, "://"):
		shown := v
		if strings.Contains(v, "://") {
			shown = config.SecretURL(v).String() // it may hold a password
		}
		err = fmt.Errorf("--db %s: give NAME=URL, such as --db datapusher=postgresql://ckan@127.0.0.1/datapusher_jobs", shown)
	case !config.DatabaseNameRE.MatchString(name) || slices.Contains(config.ReservedDatabaseNames, name):
		err = fmt.Errorf("--db %s=...: %q is not the name of one of the site's other databases (letters, digits, '_' and '-'; CKAN's and the DataStore's take --ckan-db and --datastore-db)", name, name)
	default:
		if _, dup := f.named[name]; dup {
			err = fmt.Errorf("--db %s=...: the database %s is given twice", name, name)
		}
	}
	if err != nil {
		if f.err == nil {
			f.err = err
		}
		return nil
	}
	if f.named == nil {
		f.named = map[string]string{}
	}
	f.named[name] = u
	return nil
}

// sizeString is a size for people: "12.3 MB".
func sizeString(n int64) string {
	if n < 1000 {
		return fmt.Sprintf("%d B", n)
	}
	f, units := float64(n)/1000, "kMGTP"
	for len(units) > 1 && f >= 1000 {
		f, units = f/1000, units[1:]
	}
	return fmt.Sprintf("%.1f %cB", f, units[0])
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
