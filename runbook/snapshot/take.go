package snapshot

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/ckanops/ckanops/api"
	"github.com/ckanops/ckanops/config"
	"github.com/ckanops/ckanops/internal/human"
)

// DefaultStatsSettle is how long Take waits before reading the counters
// the second time: Postgres backends add their counts to the shared
// statistics up to about a second after they commit.
const DefaultStatsSettle = 1100 * time.Millisecond

// TimeLayout is the UTC time in a snapshot's directory name.
const TimeLayout = "20060102T150405Z"

// tempPrefix starts the name of a snapshot directory being written.
const tempPrefix = ".tmp-"

// Spec is what to snapshot and where.
type Spec struct {
	Site string // the site's name, in the directory name
	// Dir is where snapshots go ([snapshot] dir): this one goes to
	// Dir/<Site>-<UTC start time>. Take creates Dir if its parent exists.
	Dir string
	// PGDump is the pg_dump program, a name looked up on PATH or a path.
	// Default "pg_dump".
	PGDump string
	// CKANDB and DatastoreDB are the postgres:// URLs of CKAN's database
	// and the DataStore's. Empty: not configured, not dumped (the manifest
	// says so).
	CKANDB      config.SecretURL
	DatastoreDB config.SecretURL
	// Databases are the site's other Postgres databases (gate.toml's
	// [[database]]): each is counted and dumped like CKAN's, into
	// <name>.dump, after CKAN's and the DataStore's; a change to any of
	// them during the snapshot makes it inconsistent (none of their
	// tables is bookkeeping). With any, the manifest is format
	// FormatDatabases.
	Databases []config.Database
	// Storages are the site's file storages ([snapshot] Storages): each
	// local one (with a Path) is archived into its own tar
	// (StorageFileName), each other one is named in the manifest as not
	// included, and makes the snapshot Partial unless ExcludeStorages
	// names it. Empty: StoragePath alone, as the storage "default".
	Storages []config.Storage
	// StoragePath is CKAN's storage_path, used when Storages is empty.
	// Both empty: no storage is configured.
	StoragePath string
	// ExcludeStorages names storages left out on purpose ([snapshot]
	// exclude_storages): listed as excluded, never archived, and not a
	// reason for Partial.
	ExcludeStorages []string

	CKANVersion string    // recorded
	ModeVersion int64     // the gate's mode record version, recorded
	Fence       int64     // the fencing number of the runbook lock's lease, recorded; 0: none
	EnabledAt   time.Time // recorded; zero: unknown
	QuiescedAt  time.Time // recorded; zero: unknown

	// Clock tells the time. Default time.Now, in UTC.
	Clock func() time.Time
	// Output, when set, gets one line per event: progress ("pg_dump
	// ckan_db: 12.3 MB"), pg_dump's stderr, the verdict. Calls never
	// overlap; lines never hold a password.
	Output func(line string)
	// Progress, when set, gets how far each part (each database's
	// pg_dump, each storage's archive) has come: a first report at zero,
	// then at most every 250 ms while it runs, and a last one (Ended)
	// when it ends, done or not. Calls never overlap, nor with Output's.
	Progress func(api.Progress)
	// StatsSettle is how long to wait before reading the counters after
	// the dumps, when no proof (proof.go) tells what was written: PostgreSQL publishes a session's row counts up to about a
	// second after it commits. Zero: DefaultStatsSettle. Take then also
	// waits, up to about 10 s, for the sessions that worked during the
	// snapshot and may not have published yet (see "Reading the counters"
	// in postgres.go), so a shorter StatsSettle stays correct; it only
	// makes the verdict rest on that second wait alone.
	StatsSettle time.Duration

	// Incremental keeps each storage as a directory tree (KindTree,
	// StorageDirName, manifest format FormatTree) instead of a tar: the
	// files unchanged since the site's newest consistent snapshot in Dir
	// (same path, and the source's size, modification time, inode number
	// and change time as that snapshot recorded them) are hard links to
	// its copies, the others are copied. See tree.go.
	Incremental bool

	// ParallelThreshold: a database larger than this many bytes
	// (pg_database_size, read with the "before" counters) is dumped with
	// pg_dump --format=directory --jobs=Jobs into DumpDirName, each of its
	// files listed in the manifest (KindPGDumpDir, manifest format
	// FormatDumpDir); smaller ones with --format=custom. Zero:
	// config.DefaultSnapshotParallelThreshold ([snapshot]
	// parallel_threshold_bytes).
	ParallelThreshold int64
	// Jobs is pg_dump's --jobs for those databases. Zero: the number of
	// CPUs ([snapshot] jobs).
	Jobs int

	// link makes the hard links of Incremental; os.Link unless a test
	// sets it.
	link func(oldname, newname string) error

	// afterBefore, when set (by tests), runs once the "before" counters
	// and digest are taken and before anything is dumped.
	afterBefore func()
	// noProof, when set (by benchmarks), skips the proofs: the counters
	// decide, as they did before ckanops had proofs.
	noProof bool
}

// plan is a checked Spec: what Take will do.
type plan struct {
	Spec
	pgDump        string      // resolved path; "" when no database is configured
	dbs           []*database // CKAN's first
	storages      []*storagePlan
	notIncluded   []StorageNotIncluded
	notConfigured []string
	out           *output
}

// storagePlan is one storage to archive.
type storagePlan struct {
	config.Storage
	root string // Path with its links resolved
	file string // StorageFileName(Name)
	// what names it in messages: "storage_path /srv/ckan" for the storage
	// "default", "storage uploads (/srv/uploads)" for the others.
	what string
	// prefix starts its lines of the verdict: "storage" for "default",
	// "storage uploads:" for the others.
	prefix string
}

// Take takes a snapshot of s's databases and storage, writes its manifest
// and returns it. See the package documentation for what it does; on any
// error, and when ctx is cancelled, nothing is kept and the error says
// which part failed and why.
func Take(ctx context.Context, s Spec) (*Manifest, error) {
	p, err := check(s)
	if err != nil {
		return nil, fmt.Errorf("snapshot: %w", err)
	}
	started := p.Clock().UTC()
	t, err := newTempDir(p.Dir, p.Site, started)
	if err != nil {
		return nil, fmt.Errorf("snapshot: %w", err)
	}
	m, err := p.take(ctx, t, started)
	if err != nil {
		msg := "the snapshot was not kept"
		if rmErr := t.remove(); rmErr != nil {
			msg = fmt.Sprintf("the snapshot is incomplete and %s could not be removed (%v): remove it", t.tmp, rmErr)
		}
		return nil, fmt.Errorf("snapshot: %w: %s", err, msg)
	}
	return m, nil
}

// check validates s, fills in its defaults, resolves pg_dump and the
// storage path and makes sure Dir is usable. Nothing is written but Dir
// itself, when it is missing and its parent is there.
func check(s Spec) (*plan, error) {
	if s.PGDump == "" {
		s.PGDump = config.DefaultPGDump
	}
	if s.Clock == nil {
		s.Clock = func() time.Time { return time.Now().UTC() }
	}
	if s.StatsSettle == 0 {
		s.StatsSettle = DefaultStatsSettle
	}
	if s.link == nil {
		s.link = os.Link
	}
	if s.ParallelThreshold <= 0 {
		s.ParallelThreshold = config.DefaultSnapshotParallelThreshold
	}
	if s.Jobs <= 0 {
		s.Jobs = config.DefaultSnapshotJobs()
	}
	secrets := []config.SecretURL{s.CKANDB, s.DatastoreDB}
	for _, d := range s.Databases {
		secrets = append(secrets, d.DSN)
	}
	p := &plan{Spec: s, out: &output{f: s.Output, progress: s.Progress, secrets: secrets}}

	if s.Site == "" || strings.ContainsAny(s.Site, `/\`) || strings.HasPrefix(s.Site, ".") {
		return nil, fmt.Errorf("site name %q cannot name a snapshot directory", s.Site)
	}
	if s.CKANDB == "" && s.DatastoreDB == "" && len(s.Databases) == 0 && s.StoragePath == "" && len(s.Storages) == 0 {
		return nil, errors.New("nothing to snapshot: none of ckan_db, datastore_db, [[database]] and storage_path is configured")
	}
	for _, c := range []struct {
		source string
		url    config.SecretURL
	}{{SourceCKANDB, s.CKANDB}, {SourceDatastoreDB, s.DatastoreDB}} {
		if c.url == "" {
			p.notConfigured = append(p.notConfigured, c.source)
			continue
		}
		db, err := newDatabase(c.source, c.url)
		if err != nil {
			return nil, err
		}
		p.dbs = append(p.dbs, db)
	}
	if err := checkDatabaseNames(s.Databases); err != nil {
		return nil, err
	}
	for _, d := range s.Databases {
		db, err := newDatabase(d.Name, d.DSN)
		if err != nil {
			return nil, err
		}
		p.dbs = append(p.dbs, db)
	}
	for i, a := range p.dbs {
		for _, b := range p.dbs[:i] {
			if sameDatabase(a.conn, b.conn) {
				return nil, fmt.Errorf("%s and %s are the same database (%s): list each database once", b.source, a.source, a.name)
			}
		}
	}
	if len(p.dbs) > 0 {
		path, err := exec.LookPath(s.PGDump)
		if err != nil {
			if !strings.ContainsRune(s.PGDump, '/') {
				return nil, fmt.Errorf("%s not found on PATH: install postgresql-client or set [snapshot] pg_dump", s.PGDump)
			}
			return nil, fmt.Errorf("pg_dump %s cannot be run (%v): install postgresql-client or set [snapshot] pg_dump", s.PGDump, unwrapPath(err))
		}
		p.pgDump = path
	}
	if err := p.checkStorages(); err != nil {
		return nil, err
	}
	if len(p.dbs) == 0 && len(p.storages) == 0 {
		return nil, errors.New("nothing to snapshot: no database is configured, and no storage can be archived (the others are excluded or not local)")
	}
	if err := p.prepareDir(); err != nil {
		return nil, err
	}
	return p, nil
}

// checkDatabaseNames checks the names of the site's other databases:
// config's rule, unique, not reserved.
func checkDatabaseNames(dbs []config.Database) error {
	seen := map[string]bool{}
	for _, d := range dbs {
		switch {
		case !config.DatabaseNameRE.MatchString(d.Name) || slices.Contains(config.ReservedDatabaseNames, d.Name):
			return fmt.Errorf("database name %q is not valid (letters, digits, '_' and '-'; not %s)", d.Name, strings.Join(config.ReservedDatabaseNames, ", "))
		case seen[d.Name]:
			return fmt.Errorf("database name %q is given twice", d.Name)
		case d.DSN == "":
			return fmt.Errorf("database %s has no URL", d.Name)
		}
		seen[d.Name] = true
	}
	return nil
}

// checkStorages sorts the Spec's storages into those to archive, each a
// directory (links resolved), and those not included.
func (p *plan) checkStorages() error {
	storages := p.Spec.Storages
	if len(storages) == 0 && p.StoragePath != "" {
		storages = []config.Storage{{Name: config.StorageNameDefault, Path: p.StoragePath}}
	}
	if len(storages) == 0 {
		p.notConfigured = append(p.notConfigured, SourceStorage)
		return nil
	}
	names := map[string]bool{}
	for _, st := range storages {
		if !storageNameRE.MatchString(st.Name) || names[st.Name] {
			return fmt.Errorf("storage name %q is not valid or given twice", st.Name)
		}
		names[st.Name] = true
	}
	for _, ex := range p.ExcludeStorages {
		if !names[ex] {
			return fmt.Errorf("exclude_storages names %q, which is not a storage of the site", ex)
		}
	}
	for _, st := range storages {
		excluded := slices.Contains(p.ExcludeStorages, st.Name)
		switch {
		case excluded:
			p.notIncluded = append(p.notIncluded, StorageNotIncluded{Name: st.Name, Type: st.Type, Path: st.Path, Excluded: true,
				Reason: "excluded by [snapshot] exclude_storages"})
			continue
		case !st.Local():
			p.notIncluded = append(p.notIncluded, StorageNotIncluded{Name: st.Name, Type: st.Type,
				Reason: "the gate cannot archive a storage that is not a local directory: back it up otherwise, then list it in [snapshot] exclude_storages"})
			continue
		}
		sp := &storagePlan{Storage: st, file: StorageFileName(st.Name), what: "storage_path " + st.Path, prefix: "storage"}
		if st.Name != config.StorageNameDefault {
			sp.what, sp.prefix = fmt.Sprintf("storage %s (%s)", st.Name, st.Path), "storage "+st.Name+":"
		}
		fi, err := os.Stat(st.Path)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			return fmt.Errorf("%s does not exist: check [snapshot] storage_path, [checks] storage_path or [[storage]] (CKAN's ckan.storage_path or ckan.files.storage.<name>.path) and that its file system is mounted", sp.what)
		case err != nil:
			return fmt.Errorf("cannot look at %s: %v (running as %s)", sp.what, unwrapPath(err), whoAmI())
		case !fi.IsDir():
			return fmt.Errorf("%s is not a directory: it must be CKAN's storage directory", sp.what)
		}
		if sp.root, err = filepath.EvalSymlinks(st.Path); err != nil {
			return fmt.Errorf("cannot resolve %s: %v", sp.what, unwrapPath(err))
		}
		if sp.root, err = filepath.Abs(sp.root); err != nil {
			return err
		}
		for _, o := range p.storages {
			if o.root == sp.root {
				return fmt.Errorf("%s and %s are the same directory: list it once", o.what, sp.what)
			}
		}
		p.storages = append(p.storages, sp)
	}
	return nil
}

// prepareDir makes sure Dir is a directory, creating it when its parent
// exists, and that it does not lie inside the storage it would archive.
func (p *plan) prepareDir() error {
	dir := p.Dir
	if dir == "" {
		return errors.New("no snapshot dir: set [snapshot] dir")
	}
	fi, err := os.Stat(dir)
	missing := errors.Is(err, fs.ErrNotExist)
	switch {
	case missing:
		parent := filepath.Dir(filepath.Clean(dir))
		if pfi, perr := os.Stat(parent); perr != nil || !pfi.IsDir() {
			return fmt.Errorf("snapshot dir %s does not exist, nor does its parent %s: create it or set [snapshot] dir", dir, parent)
		}
	case err != nil:
		return fmt.Errorf("cannot look at snapshot dir %s: %v (running as %s)", dir, unwrapPath(err), whoAmI())
	case !fi.IsDir():
		return fmt.Errorf("snapshot dir %s is not a directory: set [snapshot] dir to a directory", dir)
	}
	if len(p.storages) > 0 {
		// Where Dir is, or would be once created, links resolved.
		real, err := resolve(dir, missing)
		if err != nil {
			return fmt.Errorf("cannot resolve snapshot dir %s: %v", dir, unwrapPath(err))
		}
		for _, st := range p.storages {
			if rel, err := filepath.Rel(st.root, real); err == nil && filepath.IsLocal(rel) {
				return fmt.Errorf("snapshot dir %s lies inside %s: the archive would hold the snapshot itself; set [snapshot] dir elsewhere", dir, st.what)
			}
		}
	}
	if missing {
		if err := os.Mkdir(dir, 0o750); err != nil && !errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("snapshot dir %s does not exist and cannot be created (%v, running as %s): create it or set [snapshot] dir", dir, unwrapPath(err), whoAmI())
		}
		p.out.line("created snapshot dir %s", dir)
	}
	return nil
}

// resolve returns the absolute path of dir with its links resolved; of
// its parent, joined with its name, when dir is missing.
func resolve(dir string, missing bool) (string, error) {
	dir = filepath.Clean(dir)
	base := ""
	if missing {
		dir, base = filepath.Dir(dir), filepath.Base(dir)
	}
	real, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return "", err
	}
	if real, err = filepath.Abs(real); err != nil {
		return "", err
	}
	if base != "" {
		real = filepath.Join(real, base)
	}
	return real, nil
}

// take does the work in t. Its errors say which part failed.
func (p *plan) take(ctx context.Context, t *tempDir, started time.Time) (*Manifest, error) {
	out := p.out
	out.line("snapshot of %s: writing %s", p.Site, t.tmp)
	m := &Manifest{
		Format:              FormatVersion,
		Site:                p.Site,
		CKANVersion:         p.CKANVersion,
		ModeVersion:         p.ModeVersion,
		Fence:               p.Fence,
		Times:               Times{Enabled: utc(p.EnabledAt), Quiesced: utc(p.QuiescedAt), Started: started},
		Files:               []File{},
		Databases:           []Database{},
		Storages:            []Storage{},
		StoragesNotIncluded: append([]StorageNotIncluded{}, p.notIncluded...),
		NotConfigured:       append([]string{}, p.notConfigured...),
		Changed:             []string{},
		Bookkeeping:         []string{},
	}
	var changed, kept []string

	// Before.
	beforeFiles := make([]map[string]entry, len(p.storages))
	var prev *Entry
	if p.Incremental && len(p.storages) > 0 {
		m.Format = FormatTree
		if prev = p.previous(); prev != nil {
			out.line("previous consistent snapshot: %s: its unchanged files are hard-linked", filepath.Base(prev.Dir))
		} else {
			out.line("no previous consistent snapshot of %s in %s: every file is copied", p.Site, p.Dir)
		}
	}
	for _, st := range p.storages {
		file := st.file
		if p.Incremental {
			file = StorageDirName(st.Name)
		}
		m.Storages = append(m.Storages, Storage{Name: st.Name, Path: st.Path, Type: st.Type, File: file})
	}
	readBefore := make([]reading, len(p.dbs))
	for i, db := range p.dbs {
		r, err := readCounters(ctx, db, true, time.Time{}, out)
		if err != nil {
			return nil, cancelled(ctx, "reading the row counters", err)
		}
		readBefore[i] = r
		m.Databases = append(m.Databases, Database{
			Name: db.source, Database: db.name, Before: r.counters,
			Relfilenodes: &Relfilenodes{Before: r.relfilenodes()},
			Schema:       &SchemaDigest{Before: r.schemaDigest()},
		})
		out.line("counters %s: %d tables", db.what(), len(r.counters))
	}
	// The dumps start as soon as the row counters are read; each archive
	// first digests the storage it is about to write. All run
	// concurrently: the first to fail stops the others.
	type part func(context.Context) ([]File, error)
	var parts []part
	var (
		mu        sync.Mutex
		dumpsEnd  time.Time // when the last pg_dump exited: the statistics settle from then
		walked1   int       // storages walked before their archive
		treeBytes int64     // the manifest's estimated size for the trees so far
	)
	if len(p.Databases) > 0 && m.Format == FormatVersion {
		m.Format = FormatDatabases
	}
	if len(p.storages) == 0 && p.afterBefore != nil {
		p.afterBefore()
	}
	for i, db := range p.dbs {
		exited := func() {
			mu.Lock()
			dumpsEnd = time.Now()
			mu.Unlock()
		}
		size := readBefore[i].size
		if size > p.ParallelThreshold {
			m.Format = FormatDumpDir
			parts = append(parts, func(ctx context.Context) ([]File, error) {
				return dumpDir(ctx, db, p.pgDump, t.tmp, p.Jobs, size, out, exited)
			})
			continue
		}
		parts = append(parts, func(ctx context.Context) ([]File, error) {
			f, err := dump(ctx, db, p.pgDump, t.tmp, size, out, exited)
			return []File{f}, err
		})
	}
	for i, st := range p.storages {
		parts = append(parts, func(ctx context.Context) ([]File, error) {
			entries, tree, err := walkStorage(ctx, st.root)
			if err != nil {
				return nil, cancelled(ctx, "walking the storage", fmt.Errorf("walk %s: %v", st.what, err))
			}
			asTree := p.Incremental
			mu.Lock()
			beforeFiles[i] = entries
			m.Storages[i].Before = tree
			walked1++
			last := walked1 == len(p.storages)
			if asTree {
				// A tree lists every entry in the manifest, which Load
				// reads only up to maxManifestSize: a storage that would
				// take the manifest past treeManifestBudget is a tar.
				need := treeManifestBytes(entries)
				if treeBytes+need > treeManifestBudget {
					asTree = false
					m.Storages[i].File = st.file
				} else {
					treeBytes += need
				}
			}
			mu.Unlock()
			// "storage /srv/ckan: 5 files" for "default", "storage public
			// (/srv/public): ..." for the others.
			label := "storage " + st.Path
			if st.Name != config.StorageNameDefault {
				label = fmt.Sprintf("storage %s (%s)", st.Name, st.Path)
			}
			out.line("%s: %d files, %s", label, tree.Files, human.Bytes(tree.Bytes))
			if last && p.afterBefore != nil {
				p.afterBefore()
			}
			label = strings.TrimSuffix(st.prefix, ":")
			if p.Incremental && !asTree {
				out.line("%s: %d entries are more than a snapshot's manifest can list: archived as a tar, not a tree", label, len(entries))
			}
			if asTree {
				f, kept, err := writeTree(ctx, st.root, t.tmp, m.Storages[i].File, label, prevTreeOf(prev, st.Name, st.Path), p.link, out,
					out.meter("copy of "+label, tree.Bytes, tree.Files))
				mu.Lock()
				m.Storages[i].Tree = kept
				mu.Unlock()
				return []File{f}, err
			}
			f, err := writeTar(ctx, st.root, t.tmp, st.file, label, out, out.meter("archive of "+label, tree.Bytes, tree.Files))
			return []File{f}, err
		})
	}
	files := make([][]File, len(parts))
	runCtx, stop := context.WithCancelCause(ctx)
	var wg sync.WaitGroup
	for i, run := range parts {
		wg.Go(func() {
			f, err := run(runCtx)
			if err != nil {
				stop(err)
				return
			}
			files[i] = f
		})
	}
	wg.Wait()
	cause := context.Cause(runCtx)
	stop(nil)
	if err := ctx.Err(); err != nil {
		return nil, cancelled(ctx, "the dumps ran", err)
	}
	if cause != nil {
		return nil, cause
	}
	for _, fs := range files {
		m.Files = append(m.Files, fs...)
	}

	// After: the storages are walked again while the statistics settle.
	var (
		afterFiles = make([]map[string]entry, len(p.storages))
		walkErrs   = make([]error, len(p.storages))
		walked     = make(chan struct{})
	)
	go func() {
		defer close(walked)
		for i, st := range p.storages {
			var tree StorageTree
			afterFiles[i], tree, walkErrs[i] = walkStorage(ctx, st.root)
			m.Storages[i].After = tree
		}
	}()
	// What was written to each database: proved at once where the
	// transaction ids or the WAL can tell (proof.go); otherwise the
	// counters decide, once the statistics have settled.
	horizons := make([]horizon, len(p.dbs))
	for i := range p.dbs {
		horizons[i] = readBefore[i].horizon
		if p.noProof {
			horizons[i].why = "noProof"
		}
	}
	proofs, err := proveWrites(ctx, p.dbs, horizons)
	if err != nil {
		<-walked
		return nil, cancelled(ctx, "proving what was written", err)
	}
	settle := false
	for i, db := range p.dbs {
		switch pr := proofs[i]; pr.Method {
		case MethodXIDHorizon:
			out.line("%s: no transaction committed in its cluster during the snapshot", db.what())
		case MethodWAL:
			out.line("%s: %d transaction(s) committed in its cluster during the snapshot; their WAL (%s) shows what they wrote", db.what(), pr.Committed, human.Bytes(pr.WALBytes))
		default:
			out.line("%s: the row counters decide: %s", db.what(), pr.Why)
			settle = true
		}
	}
	// The settling overlaps the archive when that ends last.
	if wait := time.Until(dumpsEnd.Add(p.StatsSettle)); settle && wait > 0 {
		out.line("waiting %v for Postgres's statistics to settle", wait.Round(time.Millisecond))
		timer := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			timer.Stop()
			<-walked
			return nil, cancelled(ctx, "waiting for the statistics", ctx.Err())
		case <-timer.C:
		}
	}
	for i, db := range p.dbs {
		b, pr := readBefore[i], proofs[i]
		var since time.Time // the proofs need no wait
		if pr.Method == MethodStatistics {
			since = b.at // the sessions that worked since may not have published
		}
		r, err := readCounters(ctx, db, false, since, out)
		if err != nil {
			<-walked
			return nil, cancelled(ctx, "reading the row counters again", err)
		}
		d := &m.Databases[i]
		d.After = r.counters
		d.Relfilenodes.After = r.relfilenodes()
		d.Schema.After = r.schemaDigest()
		d.Proof = &pr.Proof
		var ch, k []string
		switch pr.Method {
		case MethodStatistics:
			if !b.tracking {
				ch = append(ch, db.source+": track_counts is off, so changes to its rows cannot be seen: turn it back on")
			}
			c, kk := compareCounters(db.source, d.Before, d.After)
			ch, k = append(ch, c...), kk
		case MethodWAL:
			ch, k = judgeChanges(db.source, pr.changes)
			for _, u := range pr.unknown {
				ch = append(ch, db.source+" "+u)
			}
		}
		counted := func(name string) bool {
			_, inBefore := d.Before[name]
			_, inAfter := d.After[name]
			return inBefore || inAfter
		}
		changed = append(changed, compareCatalogs(db.source, b.relations, r.relations, counted)...)
		changed = append(changed, ch...)
		kept = append(kept, k...)
	}
	<-walked
	for i, st := range p.storages {
		if walkErrs[i] != nil {
			return nil, cancelled(ctx, "walking the storage again", fmt.Errorf("walk %s: %v", st.what, walkErrs[i]))
		}
		changed = append(changed, compareStorage(st.prefix, beforeFiles[i], afterFiles[i])...)
	}
	m.Verdict = verdictOf(changed, m.Missing())
	m.Changed = append(m.Changed, changed...)
	m.Bookkeeping = append(m.Bookkeeping, kept...)
	for _, k := range kept {
		out.line("bookkeeping: %s", k)
	}
	for _, n := range m.StoragesNotIncluded {
		if n.Excluded {
			out.line("storage %s: not included (%s)", n.Name, n.Reason)
		}
	}
	if m.Verdict == Consistent {
		out.line("verdict: consistent")
	} else {
		out.line("verdict: %s: %s", m.Verdict, strings.Join(m.Problems(), "; "))
	}

	// The manifest, last; then the name.
	m.Times.Ended = p.Clock().UTC()
	if err := writeManifest(t.tmp, m); err != nil {
		return nil, fmt.Errorf("writing the manifest: %w", writeHint(err, p.Dir))
	}
	if err := syncDir(t.tmp); err != nil {
		return nil, fmt.Errorf("syncing %s: %w", t.tmp, err)
	}
	if err := ctx.Err(); err != nil {
		return nil, cancelled(ctx, "finishing the snapshot", err)
	}
	if err := t.commit(); err != nil {
		return nil, err
	}
	m.Dir = t.final
	out.line("snapshot of %s: kept %s (%s, %s)", p.Site, t.final, m.Verdict, human.Bytes(m.Bytes()))
	return m, nil
}

// treeManifestBudget is what the trees of one snapshot may take of its
// manifest (estimated, treeManifestBytes), below maxManifestSize with room
// for the rest and for the estimate's error.
var treeManifestBudget int64 = maxManifestSize * 3 / 4

// treeManifestBytes estimates what a tree of these entries adds to the
// manifest: each entry's path, and 500 bytes for its other fields as
// written (indented JSON: measured 415 bytes an entry with its path,
// TestTooBigATreeIsATar; owners' names and links add to it).
func treeManifestBytes(entries map[string]entry) int64 {
	n := int64(0)
	for p := range entries {
		n += int64(len(p)) + 500
	}
	return n
}

// cancelled says that ctx ended while doing what; otherwise it returns err.
func cancelled(ctx context.Context, while string, err error) error {
	if ctx.Err() == nil {
		return err
	}
	return fmt.Errorf("cancelled while %s: %w", while, context.Cause(ctx))
}

func utc(t time.Time) time.Time {
	if t.IsZero() {
		return t
	}
	return t.UTC()
}

// tempDir is a snapshot directory being written, locked so that Prune
// leaves it alone.
type tempDir struct {
	parent, tmp, final string
	lock               *os.File // holds an exclusive flock on tmp
	committed          bool
}

// newTempDir creates parent/.tmp-<site>-<time>, 0700, and locks it. When
// that name, or its final form, is taken (two snapshots in one second),
// it adds -2, -3...
func newTempDir(parent, site string, started time.Time) (*tempDir, error) {
	base := site + "-" + started.UTC().Format(TimeLayout)
	for i := 1; i <= 100; i++ {
		name := base
		if i > 1 {
			name += "-" + strconv.Itoa(i)
		}
		t := &tempDir{parent: parent, tmp: filepath.Join(parent, tempPrefix+name), final: filepath.Join(parent, name)}
		if _, err := os.Lstat(t.final); err == nil {
			continue
		}
		err := os.Mkdir(t.tmp, 0o700)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		if err != nil {
			if errors.Is(err, fs.ErrPermission) || errors.Is(err, syscall.EROFS) {
				return nil, fmt.Errorf("snapshot dir %s is not writable (%v, running as %s): fix its permissions or set [snapshot] dir", parent, unwrapPath(err), whoAmI())
			}
			return nil, fmt.Errorf("cannot create a directory in snapshot dir %s: %v", parent, unwrapPath(err))
		}
		lock, err := os.Open(t.tmp)
		if err == nil {
			err = syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
			if err != nil {
				lock.Close()
			}
		}
		if err != nil {
			os.RemoveAll(t.tmp)
			return nil, fmt.Errorf("cannot lock %s: %v", t.tmp, err)
		}
		t.lock = lock
		return t, nil
	}
	return nil, fmt.Errorf("snapshot dir %s already holds 100 snapshots named %s: is the clock right?", parent, base)
}

// commit renames the directory to its final name and syncs the parent.
func (t *tempDir) commit() error {
	if _, err := os.Lstat(t.final); err == nil {
		return fmt.Errorf("%s appeared while the snapshot was taken: another ckanops writes here", t.final)
	}
	if err := os.Rename(t.tmp, t.final); err != nil {
		return fmt.Errorf("renaming %s to %s: %w", t.tmp, t.final, err)
	}
	t.committed = true
	if err := syncDir(t.parent); err != nil {
		return fmt.Errorf("syncing %s after the rename: %w", t.parent, err)
	}
	t.unlock()
	return nil
}

// unlock releases the lock (closing the file does).
func (t *tempDir) unlock() {
	if t.lock != nil {
		t.lock.Close()
		t.lock = nil
	}
}

// remove removes what was written, wherever it stands.
func (t *tempDir) remove() error {
	defer t.unlock()
	if t.committed {
		return os.RemoveAll(t.final)
	}
	return os.RemoveAll(t.tmp)
}

// unwrapPath drops the path of a *fs.PathError, which the message already
// names.
func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	var ee *exec.Error
	if errors.As(err, &ee) {
		return ee.Err
	}
	return err
}

// whoAmI names the user the process runs as, for permission errors.
func whoAmI() string {
	if u, err := user.Current(); err == nil {
		return u.Username
	}
	return "uid " + strconv.Itoa(os.Geteuid())
}
