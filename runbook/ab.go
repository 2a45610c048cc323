package runbook

// The A/B runbook (api.RunbookOptions.AB, api.ABSteps). After A's
// snapshot, B, a second CKAN with its own databases, storage and gate
// (started read-only), is filled from the snapshot (restore_b), prepared
// by the operator's commands (prepare_b) and checked through its gate
// (verify_b); the public URL's traffic then goes to B (switch_to_b,
// confirmed) while A migrates and is verified through its own gate, and
// back to A (switch_to_a, confirmed) before A reopens (disable). B stays
// read-only throughout: nothing it is sent is accepted, so nothing is lost
// when the traffic comes back.
//
// Where the traffic is after a failure: before switch_to_b, on A (read-
// only); a switch_to_b whose traffic does not reach B runs switch_to_a to
// put it back on A; during migrate and verify, on B (read-only); a
// switch_to_a that fails leaves it where the public URL says it is (B, or
// A). A stays in maintenance until disable.

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/ckanops/ckanops/api"
	"github.com/ckanops/ckanops/ckanclient"
	"github.com/ckanops/ckanops/config"
	"github.com/ckanops/ckanops/runbook/snapshot"
)

// abSampleSize is how many of A's datasets verify_b asks B for.
const abSampleSize = 5

// Evidence details of the snapshot step: A's content as the snapshot was
// taken, which verify_b compares B's with.
const (
	detailABDatasets = "ab_datasets"
	detailABSample   = "ab_sample"
)

// abGate is a client of a gate's public API (its status, CKAN through it)
// at u, anonymous, without retries, and without keeping connections: after
// a switch, each request must go where the switch now sends it (nginx's
// old workers keep their connections until they close).
func abGate(u string) (*ckanclient.Client, error) {
	return ckanclient.New(u, ckanclient.Options{Retries: -1, Timeout: 15 * time.Second, UserAgent: "ckanops-gate-runbook-ab",
		HTTPClient: &http.Client{Transport: &http.Transport{DisableKeepAlives: true, Proxy: http.ProxyFromEnvironment}}})
}

// gateStatus is the status of the gate at u.
func gateStatus(ctx context.Context, u string) (*api.Status, error) {
	c, err := abGate(u)
	if err != nil {
		return nil, err
	}
	return c.Status(ctx)
}

// abStorageTarget is one of B's storage targets: the snapshot's storage
// Name ("" for the only one, [ab] storage_path) and B's directory.
type abStorageTarget struct{ name, path string }

func (e *Engine) abStorageTargets() []abStorageTarget {
	a := e.o.AB
	if a.StoragePath != "" {
		return []abStorageTarget{{"", a.StoragePath}}
	}
	out := make([]abStorageTarget, len(a.Storages))
	for i, s := range a.Storages {
		out[i] = abStorageTarget{s.Name, s.Path}
	}
	return out
}

// abDatabaseTargets are B's databases: the snapshot's source name and B's URL.
func (e *Engine) abDatabaseTargets() []config.Database {
	a := e.o.AB
	var out []config.Database
	if a.CKANDB != "" {
		out = append(out, config.Database{Name: snapshot.SourceCKANDB, DSN: a.CKANDB})
	}
	if a.DatastoreDB != "" {
		out = append(out, config.Database{Name: snapshot.SourceDatastoreDB, DSN: a.DatastoreDB})
	}
	return append(out, a.Databases...)
}

// pgRestore is the pg_restore the restore into B runs: beside [snapshot]
// pg_dump when that is a path, else pg_restore on $PATH.
func (e *Engine) pgRestore() string {
	if d := e.o.Snapshot.PGDump; strings.ContainsRune(d, '/') {
		p := filepath.Join(filepath.Dir(d), "pg_restore")
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return snapshot.DefaultPGRestore
}

// programProblem says why argv0 cannot be run, or "".
func programProblem(argv0 string) string {
	if _, err := exec.LookPath(argv0); err != nil {
		return fmt.Sprintf("%s cannot be run: %v", argv0, errors.Unwrap(err))
	}
	return ""
}

// dbName is the database a postgres URL names, for messages.
func dbName(dsn config.SecretURL) string {
	u, err := url.Parse(string(dsn))
	if err != nil {
		return "?"
	}
	return strings.TrimPrefix(u.Path, "/")
}

// abPreflight is what preflight checks of an A/B runbook besides its
// own: [ab] set, B's gate read-only (or not up yet: a warning, as
// [[ab.prepare]] may start it), the public URL served by A, B's databases
// empty, B's storage directories missing or empty, and every command's
// program there.
func (e *Engine) abPreflight(ctx context.Context) (fails, warns []string) {
	const step = api.StepPreflight
	a := e.o.AB
	site := e.o.Site.Name()
	check := func(ok bool, warn bool, msg string) {
		e.evidence(step, api.Evidence{Kind: api.EvidenceCheck, OK: ok, Summary: "a/b: " + msg})
		switch {
		case ok:
		case warn:
			warns = append(warns, "a/b: "+msg)
		default:
			fails = append(fails, "a/b: "+msg)
		}
	}
	if !a.Configured() {
		check(false, false, "[ab] is not in gate.toml: an A/B runbook needs B's gate, the public URL, B's targets and the switch commands (docs/config.md)")
		return fails, warns
	}
	switch st, err := gateStatus(ctx, a.BURL); {
	case err != nil:
		check(false, true, fmt.Sprintf("B's gate does not answer at %s (%v): [[ab.prepare]] must start it, read-only; verify_b checks it", a.BURL, err))
	case st.Site == site:
		check(false, false, fmt.Sprintf("b_url %s answers as site %s, this site: it must be B's gate, under a site name of its own", a.BURL, st.Site))
	case st.Mode != api.ModeReadOnly:
		check(false, false, fmt.Sprintf("B's gate (site %s at %s) is %s: B must be read-only (initial_mode = \"read-only\" in its gate.toml, from a fresh state file), or what it accepts is lost when the traffic returns to A", st.Site, a.BURL, st.Mode))
	default:
		e.seenB(st.Site)
		check(true, false, fmt.Sprintf("B's gate answers: site %s, read-only", st.Site))
	}
	pub, err := gateStatus(ctx, a.PublicURL)
	e.seenPublic(pub, err)
	switch st := pub; {
	case err != nil:
		check(false, false, fmt.Sprintf("the public URL %s does not answer with a gate's status (%v): the runbook could not tell where the traffic goes", a.PublicURL, err))
	case st.Site != site:
		check(false, false, fmt.Sprintf("the public URL %s is served by site %s, not %s: an A/B runbook starts with the traffic on A (switch it back first)", a.PublicURL, st.Site, site))
	default:
		check(true, false, fmt.Sprintf("the public URL %s is served by %s", a.PublicURL, site))
	}
	for _, db := range e.abDatabaseTargets() {
		tables, err := snapshot.UserTables(ctx, db.Name, db.DSN)
		switch {
		case err != nil:
			check(false, false, fmt.Sprintf("B's database for %s cannot be read: %v", db.Name, err))
		case len(tables) > 0:
			check(false, false, fmt.Sprintf("B's database for %s (%s) holds %d table(s): the restore needs it empty (drop and create it again)", db.Name, db.DSN, len(tables)))
		default:
			check(true, false, fmt.Sprintf("B's database for %s (%s) is empty", db.Name, dbName(db.DSN)))
		}
	}
	if len(e.abDatabaseTargets()) > 0 {
		if p := programProblem(e.pgRestore()); p != "" {
			check(false, false, "pg_restore: "+p+" (install postgresql-client)")
		}
	}
	for _, t := range e.abStorageTargets() {
		what := "B's storage directory " + t.path
		if t.name != "" {
			what = "B's directory for storage " + t.name + " (" + t.path + ")"
		}
		ents, err := os.ReadDir(t.path)
		switch {
		case errors.Is(err, os.ErrNotExist):
			if fi, perr := os.Stat(filepath.Dir(t.path)); perr != nil || !fi.IsDir() {
				check(false, false, what+" is missing and so is its parent directory")
			} else {
				check(true, false, what+" is missing: the restore creates it")
			}
		case err != nil:
			check(false, false, fmt.Sprintf("%s cannot be read: %v", what, err))
		case len(ents) > 0:
			check(false, false, fmt.Sprintf("%s holds %d entr(ies): the restore needs it empty or missing", what, len(ents)))
		default:
			check(true, false, what+" is empty")
		}
	}
	for _, l := range []struct {
		key  string
		cmds []config.Command
	}{{"prepare", a.Prepare}, {"switch_to_b", a.SwitchToB}, {"switch_to_a", a.SwitchToA}} {
		for _, c := range l.cmds {
			if p := programProblem(c.Argv[0]); p != "" {
				check(false, false, fmt.Sprintf("[[ab.%s]] %q: %s", l.key, c.Name, p))
			} else {
				check(true, false, fmt.Sprintf("[[ab.%s]] %q: %s is there", l.key, c.Name, c.Argv[0]))
			}
		}
	}
	return fails, warns
}

// recordAContent records, in the snapshot step, what A serves as its
// snapshot is taken (A is drained and read-only): the dataset count and a
// sample, which verify_b asks B for. Not fatal: verify_b asks A again if
// it is missing (A stays read-only and unmigrated until then).
func (e *Engine) recordAContent(ctx context.Context) {
	n, sample, err := e.aContentNow(ctx)
	if err != nil {
		e.evidence(api.StepSnapshot, api.Evidence{Kind: api.EvidenceNote,
			Summary: "a/b: A's dataset count not recorded (verify_b will ask A again): " + err.Error()})
		return
	}
	e.evidence(api.StepSnapshot, api.Evidence{Kind: api.EvidenceCheck, OK: true,
		Summary: fmt.Sprintf("a/b: A serves %d dataset(s) at the snapshot (package_search through A's gate); sample %s", n, strings.Join(sample, ", ")),
		Details: map[string]any{detailABDatasets: n, detailABSample: sample}})
}

// aContentNow asks A, through its gate, for its dataset count and a sample
// of its datasets' ids.
func (e *Engine) aContentNow(ctx context.Context) (int, []string, error) {
	c := e.o.Site.CKAN()
	res, err := c.PackageSearch(ctx, ckanclient.PackageSearchParams{Rows: abSampleSize, Sort: "name asc"})
	if err != nil {
		return 0, nil, fmt.Errorf("package_search through A's gate: %w", err)
	}
	sample := make([]string, 0, len(res.Results))
	for _, p := range res.Results {
		sample = append(sample, p.ID)
	}
	return res.Count, sample, nil
}

// aContent is A's content as recorded at the snapshot, else asked now.
func (e *Engine) aContent(ctx context.Context) (n int, sample []string, source string, err error) {
	e.mu.Lock()
	if st := e.rb.StepByName(api.StepSnapshot); st != nil {
		for _, ev := range st.Evidence {
			if ev.Details == nil || ev.Details[detailABDatasets] == nil {
				continue
			}
			n, _ = detailInt(ev.Details[detailABDatasets])
			switch v := ev.Details[detailABSample].(type) {
			case []string:
				sample = v
			case []any:
				for _, s := range v {
					if s, ok := s.(string); ok {
						sample = append(sample, s)
					}
				}
			}
			source = "recorded at the snapshot"
		}
	}
	e.mu.Unlock()
	if source != "" {
		return n, sample, source, nil
	}
	n, sample, err = e.aContentNow(ctx)
	return n, sample, "asked of A now (read-only since its snapshot, not migrated)", err
}

// snapshotDir is the directory of the snapshot this runbook took.
func (e *Engine) snapshotDir() (string, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.rb.Snapshot == nil || e.rb.Snapshot.Dir == "" {
		return "", errors.New("this runbook has taken no snapshot")
	}
	return e.rb.Snapshot.Dir, nil
}

// restoreB restores the snapshot just taken into B's databases and
// storage directories.
func (e *Engine) restoreB(ctx context.Context) error {
	const step = api.StepRestoreB
	dir, err := e.snapshotDir()
	if err != nil {
		return err
	}
	a := e.o.AB
	spec := snapshot.RestoreSpec{Dir: dir, CKANDB: a.CKANDB, DatastoreDB: a.DatastoreDB,
		StoragePath: a.StoragePath, PGRestore: e.pgRestore(), Jobs: e.o.Snapshot.Jobs,
		Output: func(line string) { e.output(step, line) }}
	throttle := newProgressThrottle(progressEvery)
	spec.Progress = func(p api.Progress) {
		if throttle.pass(p) {
			e.progress(step, p)
		}
	}
	if len(a.Databases) > 0 {
		spec.Databases = map[string]config.SecretURL{}
		for _, db := range a.Databases {
			spec.Databases[db.Name] = db.DSN
		}
	}
	if len(a.Storages) > 0 {
		spec.Storages = map[string]string{}
		for _, s := range a.Storages {
			spec.Storages[s.Name] = s.Path
		}
	}
	start := time.Now()
	rep, err := snapshot.Restore(ctx, spec)
	ev := api.Evidence{Kind: api.EvidenceRun, OK: err == nil, DurationMS: time.Since(start).Milliseconds()}
	var missing []string
	if rep != nil {
		dbs := make([]map[string]any, 0, len(rep.Databases))
		for _, d := range rep.Databases {
			dbs = append(dbs, map[string]any{"name": d.Name, "database": d.Database, "done": d.Done, "tables": d.Tables, "missing": d.Missing})
			for _, m := range d.Missing {
				missing = append(missing, d.Name+": "+m)
			}
		}
		sts := make([]map[string]any, 0, len(rep.Storages))
		for _, s := range rep.Storages {
			sts = append(sts, map[string]any{"name": s.Name, "path": s.Path, "done": s.Done, "files": s.Files, "bytes": s.Bytes})
		}
		ev.Details = map[string]any{"snapshot": dir, "databases": dbs, "storages": sts, "notes": rep.Notes}
	}
	switch {
	case errors.Is(err, snapshot.ErrRefused):
		ev.Summary = "restore into B refused, nothing was written: " + err.Error()
		e.evidence(step, ev)
		return fmt.Errorf("the restore into B refused to start, nothing was written: %v", err)
	case err != nil:
		ev.Summary = "restore into B failed: " + err.Error()
		e.evidence(step, ev)
		return fmt.Errorf("the restore into B failed part-way: %v; B's targets may hold part of the snapshot: drop and create B's databases again, empty, and empty B's storage directories before retrying", err)
	}
	ev.Summary = fmt.Sprintf("snapshot %s restored into B: %d database(s), %d storage(s) in %s", dir, len(rep.Databases), len(rep.Storages), time.Since(start).Round(time.Millisecond))
	if len(missing) > 0 {
		ev.OK = false
		ev.Summary += "; tables missing: " + strings.Join(missing, ", ")
	}
	e.evidence(step, ev)
	for _, n := range rep.Notes {
		e.evidence(step, api.Evidence{Kind: api.EvidenceNote, OK: true, Summary: n})
	}
	if len(missing) > 0 {
		return fmt.Errorf("the restore into B ended without tables the snapshot recorded: %s", strings.Join(missing, ", "))
	}
	return nil
}

// prepareB runs the [[ab.prepare]] commands.
func (e *Engine) prepareB(ctx context.Context) error {
	const step = api.StepPrepareB
	if len(e.o.AB.Prepare) == 0 {
		e.evidence(step, api.Evidence{Kind: api.EvidenceNote, OK: true, Summary: "no [[ab.prepare]] commands in gate.toml"})
	}
	for _, c := range e.o.AB.Prepare {
		if err := e.runRecorded(ctx, step, c); err != nil {
			return err
		}
	}
	return nil
}

// waitB waits, up to [ab] switch_wait, for B's gate to answer, and
// checks it is B's and read-only.
func (e *Engine) waitB(ctx context.Context, step string) (*api.Status, error) {
	a := e.o.AB
	deadline := time.Now().Add(a.SwitchWait.Duration)
	for {
		st, err := gateStatus(ctx, a.BURL)
		if err == nil {
			switch {
			case st.Site == e.o.Site.Name():
				err = fmt.Errorf("b_url %s answers as site %s, this site: it must be B's gate, under a site name of its own", a.BURL, st.Site)
			case st.Mode != api.ModeReadOnly:
				err = fmt.Errorf("B's gate (site %s) is %s, not read-only: what B accepted would be lost when the traffic returns to A; put it read-only (ckanops read-only %s) and retry", st.Site, st.Mode, st.Site)
			default:
				e.seenB(st.Site)
				e.evidence(step, api.Evidence{Kind: api.EvidenceCheck, OK: true,
					Summary: fmt.Sprintf("B's gate answers at %s: site %s, read-only (version %d)", a.BURL, st.Site, st.Version)})
				return st, nil
			}
			e.evidence(step, api.Evidence{Kind: api.EvidenceCheck, Summary: err.Error()})
			return nil, err
		}
		if time.Now().After(deadline) {
			e.evidence(step, api.Evidence{Kind: api.EvidenceCheck, Summary: "B's gate does not answer: " + err.Error()})
			return nil, fmt.Errorf("B's gate does not answer at %s after %s ([ab] switch_wait): %v", a.BURL, a.SwitchWait, err)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(max(e.o.Poll, 200*time.Millisecond)):
		}
	}
}

// verifyB checks B through its gate: read-only, A's dataset count, A's
// sample of datasets, and the snapshot's storage files in B's directories.
func (e *Engine) verifyB(ctx context.Context) error {
	const step = api.StepVerifyB
	if _, err := e.waitB(ctx, step); err != nil {
		return err
	}
	want, sample, source, err := e.aContent(ctx)
	if err != nil {
		e.evidence(step, api.Evidence{Kind: api.EvidenceCheck, Summary: "A's dataset count is unknown: " + err.Error()})
		return fmt.Errorf("A's dataset count, to compare B's with, is unknown: %w", err)
	}
	b, err := abGate(e.o.AB.BURL)
	if err != nil {
		return err
	}
	t0 := time.Now()
	res, err := b.PackageSearch(ctx, ckanclient.PackageSearchParams{Rows: 1})
	if err != nil {
		e.evidence(step, api.Evidence{Kind: api.EvidenceCheck, Summary: "package_search through B's gate failed: " + err.Error()})
		return fmt.Errorf("package_search through B's gate failed: %w (is B's CKAN up, its search index rebuilt?)", err)
	}
	ok := res.Count == want
	e.evidence(step, api.Evidence{Kind: api.EvidenceCheck, OK: ok, DurationMS: time.Since(t0).Milliseconds(),
		Summary: fmt.Sprintf("B serves %d dataset(s); A served %d (%s)", res.Count, want, source),
		Details: map[string]any{"b_datasets": res.Count, "a_datasets": want}})
	if !ok {
		return fmt.Errorf("B serves %d dataset(s), A %d at its snapshot: B's search index may not be rebuilt from B's database (ckan search-index rebuild, in [[ab.prepare]])", res.Count, want)
	}
	for _, id := range sample {
		t0 := time.Now()
		p, err := b.PackageShow(ctx, id)
		if err != nil {
			e.evidence(step, api.Evidence{Kind: api.EvidenceCheck, Summary: fmt.Sprintf("package_show %s through B's gate failed: %v", id, err)})
			return fmt.Errorf("dataset %s, which A serves, is not served by B: %w", id, err)
		}
		e.evidence(step, api.Evidence{Kind: api.EvidenceCheck, OK: true, DurationMS: time.Since(t0).Milliseconds(),
			Summary: fmt.Sprintf("package_show %s (%s) answers through B's gate", id, p.Name)})
	}
	return e.verifyBStorage(ctx, step)
}

// verifyBStorage checks that every file the snapshot's storages hold is
// in B's directory, at its size.
func (e *Engine) verifyBStorage(ctx context.Context, step string) error {
	targets := e.abStorageTargets()
	if len(targets) == 0 {
		return nil
	}
	dir, err := e.snapshotDir()
	if err != nil {
		return err
	}
	m, err := snapshot.Load(dir)
	if err != nil {
		return fmt.Errorf("the snapshot's manifest cannot be read: %w", err)
	}
	for _, t := range targets {
		var st *snapshot.Storage
		switch {
		case t.name == "" && len(m.Storages) == 1:
			st = &m.Storages[0]
		case t.name != "":
			st = m.StorageByName(t.name)
		}
		if st == nil {
			return fmt.Errorf("the snapshot holds no storage for B's directory %s", t.path)
		}
		files, err := storageFiles(dir, st)
		if err != nil {
			return fmt.Errorf("the files of storage %s in the snapshot cannot be listed: %w", st.Name, err)
		}
		var bad []string
		for _, f := range files {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			fi, err := os.Lstat(filepath.Join(t.path, filepath.FromSlash(f.name)))
			switch {
			case err != nil:
				bad = append(bad, f.name+": missing")
			case !fi.Mode().IsRegular() || fi.Size() != f.size:
				bad = append(bad, fmt.Sprintf("%s: %d bytes, the snapshot's %d", f.name, fi.Size(), f.size))
			}
		}
		ev := api.Evidence{Kind: api.EvidenceCheck, OK: len(bad) == 0,
			Summary: fmt.Sprintf("storage %s: %d/%d file(s) of the snapshot in %s", st.Name, len(files)-len(bad), len(files), t.path)}
		if len(bad) > 0 {
			ev.Details = map[string]any{"problems": bad[:min(len(bad), 20)]}
		}
		e.evidence(step, ev)
		if len(bad) > 0 {
			return fmt.Errorf("B's storage %s lacks %d file(s) of the snapshot (first: %s)", t.path, len(bad), bad[0])
		}
	}
	return nil
}

type storageFile struct {
	name string
	size int64
}

// storageFiles lists the regular files a snapshot's storage holds: from
// the manifest for a tree, from the archive's headers for a tar.
func storageFiles(dir string, st *snapshot.Storage) ([]storageFile, error) {
	var out []storageFile
	if st.Tree != nil {
		for _, en := range st.Tree.Entries {
			if en.Type == "file" {
				out = append(out, storageFile{en.Path, en.Size})
			}
		}
		return out, nil
	}
	f, err := os.Open(filepath.Join(dir, st.File))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		if h.Typeflag == tar.TypeReg {
			out = append(out, storageFile{path.Clean(strings.TrimPrefix(h.Name, "./")), h.Size})
		}
	}
}

// seenB records B's site name, for the runbook's AB.
func (e *Engine) seenB(site string) {
	e.mu.Lock()
	if e.rb.AB != nil {
		e.rb.AB.BSite = site
	}
	e.mu.Unlock()
}

// seenPublic records the site the public URL's status named (none when
// err), for the runbook's AB.
func (e *Engine) seenPublic(st *api.Status, err error) {
	t := e.o.Clock()
	e.mu.Lock()
	if e.rb.AB != nil {
		e.rb.AB.PublicSite = ""
		if err == nil && st != nil {
			e.rb.AB.PublicSite = st.Site
		}
		e.rb.AB.PublicChecked = &t
	}
	e.mu.Unlock()
}

// waitPublic waits, up to [ab] switch_wait, until the public URL's status
// names site. It returns the site last seen there ("" if it never
// answered) and whether it was site.
func (e *Engine) waitPublic(ctx context.Context, step, site string) (string, bool) {
	a := e.o.AB
	deadline := time.Now().Add(a.SwitchWait.Duration)
	last := ""
	for {
		st, err := gateStatus(ctx, a.PublicURL)
		e.seenPublic(st, err)
		if err == nil {
			last = st.Site
			if st.Site == site {
				e.evidence(step, api.Evidence{Kind: api.EvidenceCheck, OK: true,
					Summary: fmt.Sprintf("the public URL %s reaches %s (its status names %s, %s)", a.PublicURL, site, st.Site, st.Mode)})
				return last, true
			}
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			seen := "site " + last
			if err != nil {
				seen = "no gate's status: " + err.Error()
			}
			e.evidence(step, api.Evidence{Kind: api.EvidenceCheck,
				Summary: fmt.Sprintf("the public URL %s does not reach %s after %s ([ab] switch_wait): it answers with %s", a.PublicURL, site, a.SwitchWait, seen)})
			return last, false
		}
		select {
		case <-ctx.Done():
		case <-time.After(max(e.o.Poll, 200*time.Millisecond)):
		}
	}
}

// argvs writes commands as an operator would type them.
func argvs(cmds []config.Command) string {
	out := make([]string, len(cmds))
	for i, c := range cmds {
		out[i] = strings.Join(c.Argv, " ")
	}
	return strings.Join(out, "; ")
}

// switchToB sends the traffic to B, once B is still read-only, and checks
// the public URL reaches it; otherwise it puts the traffic back on A.
func (e *Engine) switchToB(ctx context.Context) error {
	const step = api.StepSwitchToB
	bst, err := e.waitB(ctx, step)
	if err != nil {
		return fmt.Errorf("%w; nothing was switched: the traffic still goes to A, which stays read-only", err)
	}
	for _, c := range e.o.AB.SwitchToB {
		if err := e.runRecorded(ctx, step, c); err != nil {
			return e.switchBack(ctx, step, err)
		}
	}
	if last, ok := e.waitPublic(ctx, step, bst.Site); !ok {
		return e.switchBack(ctx, step, fmt.Errorf("after [[ab.switch_to_b]], the public URL %s still reaches %s, not B (%s)", e.o.AB.PublicURL, orUnknown(last), bst.Site))
	}
	return nil
}

func orUnknown(site string) string {
	if site == "" {
		return "no gate"
	}
	return "site " + site
}

// switchBack runs [[ab.switch_to_a]] after a switch to B that failed, and
// says where the traffic is. It runs even when the runbook is being
// aborted: the traffic must not be left half-way.
func (e *Engine) switchBack(ctx context.Context, step string, why error) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Minute)
	defer cancel()
	site := e.o.Site.Name()
	by := fmt.Sprintf("ckanops runbook %s --retry", site)
	e.evidence(step, api.Evidence{Kind: api.EvidenceNote, Summary: "switching the traffic back to A: " + why.Error()})
	for _, c := range e.o.AB.SwitchToA {
		if err := e.runRecorded(ctx, step, c); err != nil {
			return fmt.Errorf("%v; switching the traffic back to A failed too (%v): the public URL may reach B (read-only) or neither: run %s by hand, check %s/-/ckanops/status names %s, then %s; A stays read-only",
				why, err, argvs(e.o.AB.SwitchToA), e.o.AB.PublicURL, site, by)
		}
	}
	if last, ok := e.waitPublic(ctx, step, site); !ok {
		return fmt.Errorf("%v; after [[ab.switch_to_a]] the public URL reaches %s, not A: send the traffic to A by hand (%s), check %s/-/ckanops/status names %s, then %s; A stays read-only",
			why, orUnknown(last), argvs(e.o.AB.SwitchToA), e.o.AB.PublicURL, site, by)
	}
	return fmt.Errorf("%v; the traffic was switched back: the public URL reaches A again, which stays read-only; fix the switch, then %s (or abort)", why, by)
}

// switchToA sends the traffic back to A and checks the public URL
// reaches it.
func (e *Engine) switchToA(ctx context.Context) error {
	const step = api.StepSwitchToA
	site := e.o.Site.Name()
	by := fmt.Sprintf("ckanops runbook %s --retry", site)
	for _, c := range e.o.AB.SwitchToA {
		if err := e.runRecorded(ctx, step, c); err != nil {
			where, _ := e.publicSite(ctx)
			return fmt.Errorf("%v; the public URL reaches %s (A and B are both read-only): fix the switch, then %s", err, orUnknown(where), by)
		}
	}
	if last, ok := e.waitPublic(ctx, step, site); !ok {
		return fmt.Errorf("after [[ab.switch_to_a]] the public URL %s reaches %s, not A (A and B are both read-only): fix the switch, then %s", e.o.AB.PublicURL, orUnknown(last), by)
	}
	return nil
}

// publicSite is the site the public URL's status names now.
func (e *Engine) publicSite(ctx context.Context) (string, error) {
	st, err := gateStatus(ctx, e.o.AB.PublicURL)
	if err != nil {
		return "", err
	}
	return st.Site, nil
}

// abConfigErr says why this gate may not run a step of the current A/B
// runbook. With the Redis store any gate may resume or retry it (one that
// took it over when its gate stopped, say), and every step reads this
// gate's [ab]: B's targets and gate, the switch commands, and the public
// URL that tells where the traffic is. A gate without it, or whose [ab]
// names another B or public URL than the runbook started with, would act
// on the wrong site or tell the operator the wrong way back.
func (e *Engine) abConfigErr() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.abConfigErrLocked()
}

// abConfigErrLocked is abConfigErr with mu held.
func (e *Engine) abConfigErrLocked() error {
	isAB, ab := e.rb.Options.AB, e.rb.AB
	if !isAB {
		return nil
	}
	a := e.o.AB
	var why string
	switch {
	case !a.Configured():
		why = fmt.Sprintf("this gate (%s) has no [ab] in its gate.toml", e.o.Holder)
	case ab != nil && (a.BURL != ab.BURL || a.PublicURL != ab.PublicURL):
		why = fmt.Sprintf("this gate's (%s) [ab] names B %s and the public URL %s, not the runbook's B %s and public URL %s",
			e.o.Holder, a.BURL, a.PublicURL, ab.BURL, ab.PublicURL)
	default:
		return nil
	}
	where := "the traffic is where the runbook's last step left it"
	if ab != nil && ab.PublicSite != "" && ab.PublicChecked != nil {
		where = fmt.Sprintf("%s led to %s when last looked, at %s", ab.PublicURL, ab.PublicSite, ab.PublicChecked.Format(time.RFC3339))
	}
	want := "the runbook's"
	if ab != nil {
		want = fmt.Sprintf("b_url = %q, public_url = %q", ab.BURL, ab.PublicURL)
	}
	return fmt.Errorf("%s: it cannot run this A/B runbook's steps and changed nothing (%s). Retry through a gate whose [ab] has %s (or give this gate that [ab] and restart it): ckanops runbook %s --retry",
		why, where, want, e.o.Site.Name())
}

// abConfirmation is what switch_to_b and switch_to_a ask.
func (e *Engine) abConfirmation(step string) *api.Confirmation {
	site := e.o.Site.Name()
	a := e.o.AB
	switch step {
	case api.StepSwitchToB:
		return &api.Confirmation{Step: step, TypeSiteName: true,
			Prompt: fmt.Sprintf("Send %s's traffic (%s) to B, the read-only copy at %s: %s. Type the site's name to confirm.", site, a.PublicURL, a.BURL, argvs(a.SwitchToB))}
	case api.StepSwitchToA:
		return &api.Confirmation{Step: step,
			Prompt: fmt.Sprintf("Send the traffic of %s back to %s (still read-only until disable): %s?", a.PublicURL, site, argvs(a.SwitchToA))}
	}
	return nil
}

// abWhere is what a failed step of an A/B runbook adds: where the traffic
// is, and how to go on or switch back. switch_to_b and switch_to_a say it
// themselves.
func (e *Engine) abWhere(step string) string {
	site := e.o.Site.Name()
	retry := fmt.Sprintf("ckanops runbook %s --retry", site)
	switch step {
	case api.StepPreflight:
		return "nothing was changed: the traffic goes to A; fix it, then " + retry
	case api.StepEnable, api.StepDrain, api.StepSnapshot, api.StepRestoreB, api.StepPrepareB, api.StepVerifyB:
		return "the traffic still goes to A, which stays in maintenance; fix it, then " + retry + " (or abort: ckanops runbook " + site + " --disable-now reopens A)"
	case api.StepMigrate, api.StepVerify:
		return fmt.Sprintf("the traffic goes to B (read-only); A stays in maintenance: fix it, then %s; or send readers back to A as it is with: %s", retry, argvs(e.o.AB.SwitchToA))
	case api.StepDisable:
		return "the traffic goes to A (B stays read-only): " + retry
	}
	return ""
}

// retireB is the A/B runbook's last word: B stays read-only until its
// operator retires it, and how.
func (e *Engine) retireB() string {
	a := e.o.AB
	var dbs []string
	for _, db := range e.abDatabaseTargets() {
		dbs = append(dbs, dbName(db.DSN))
	}
	var dirs []string
	for _, t := range e.abStorageTargets() {
		dirs = append(dirs, t.path)
	}
	msg := fmt.Sprintf("B (%s) stays read-only until its operator retires it: stop B's gate and CKAN", a.BURL)
	if len(dbs) > 0 {
		msg += ", drop its databases (dropdb " + strings.Join(dbs, ", dropdb ") + ")"
	}
	if len(dirs) > 0 {
		msg += ", remove its storage (" + strings.Join(dirs, ", ") + ")"
	}
	return msg + " when no longer wanted; never reopen B (writes it accepted would never reach A)"
}

// abAbortNoteLocked is what an abort of an A/B runbook adds when the
// traffic may still go to B (switch_to_b done, switch_to_a not): how to
// send it back. Call with mu held.
func (e *Engine) abAbortNoteLocked() string {
	if !e.rb.Options.AB {
		return ""
	}
	toB, toA := e.rb.StepByName(api.StepSwitchToB), e.rb.StepByName(api.StepSwitchToA)
	if toB == nil || toA == nil || toB.State != api.StepDone || toA.State == api.StepDone {
		return ""
	}
	if e.abConfigErrLocked() != nil {
		// This gate's [ab] is not the runbook's: its commands would not do.
		to := "the [[ab.switch_to_a]] commands of a gate configured with the runbook's [ab]"
		if ab := e.rb.AB; ab != nil {
			to = fmt.Sprintf("the [[ab.switch_to_a]] commands of a gate whose [ab] has b_url = %q, public_url = %q", ab.BURL, ab.PublicURL)
		}
		return "the public URL's traffic may still go to B (read-only): send it back to A with " + to
	}
	return fmt.Sprintf("the public URL's traffic may still go to B (read-only): send it back to A with %s", argvs(e.o.AB.SwitchToA))
}
