package snapshot

// Restoring a snapshot: the checks before the first write (see restore.go).
//
// check loads the manifest, refuses a part asked for that the snapshot
// lacks and an inconsistent snapshot (without Force), verifies the files
// against the manifest, then checks the storage target and the archive
// (checkStorage, in restore_storage.go) and refuses a target database that
// is not empty (without Clean).

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/ckanops/ckanops/config"

	"github.com/ckanops/ckanops/internal/human"
)

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
		switch f.Kind {
		case KindPGDump:
			files[f.Source] = f
		case KindPGDumpDir: // the whole directory, as one
			d := files[f.Source]
			d.Name, d.Kind, d.Source = DumpDirName(f.Source), KindPGDumpDir, f.Source
			d.Size += f.Size
			files[f.Source] = d
		}
	}
	tars := map[string]File{} // by storage name
	for _, st := range m.Storages {
		for _, f := range m.Files {
			if f.Name == st.File {
				tars[st.Name] = f
			}
		}
	}
	var missing []string
	for _, t := range r.dbs {
		f, ok := files[t.db.source]
		if !ok || (f.Kind != KindPGDump && f.Kind != KindPGDumpDir) {
			note := notConfiguredNote(m, t.db.source)
			if !IsCoreDatabase(t.db.source) {
				note = heldDatabases(m)
			}
			missing = append(missing, fmt.Sprintf("a %s target was given, but the snapshot holds no %s dump%s", t.db.source, t.db.source, note))
			continue
		}
		t.file = f
	}
	sts, miss := r.storageTargets(m)
	missing = append(missing, miss...)
	if len(missing) > 0 {
		return refuse("%s: leave that target out", strings.Join(missing, "; "))
	}
	for _, st := range sts {
		f, ok := tars[st.name]
		if !ok || (f.Kind != KindTar && f.Kind != KindTree) {
			return refuse("storage %s: the manifest names no archive for it", st.name)
		}
		st.file = f
	}
	r.sts = sts
	// The verdict.
	switch {
	case m.Verdict == Inconsistent && !r.Force:
		return refuse("snapshot %s is %s (changed while it was taken: %s): restore a consistent snapshot, or restore this one anyway with --force", r.Dir, m.Verdict, summarise(m.Changed, 5, ""))
	case m.Verdict == Partial && !r.Force:
		return refuse("snapshot %s is %s (%s): restore a consistent snapshot, or restore this one anyway with --force (what it lacks stays as it is now)", r.Dir, m.Verdict, summarise(m.Problems(), 5, ""))
	case m.Verdict != Consistent && m.Verdict != Inconsistent && m.Verdict != Partial:
		return refuse("snapshot %s has the verdict %q", r.Dir, m.Verdict)
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
	for _, st := range r.sts { // the tree verified, not the one read before
		if rec := m.StorageByName(st.name); rec != nil && rec.File == st.file.Name {
			st.tree = rec.Tree
		}
		if st.file.Kind == KindTree && st.tree == nil {
			return refuse("storage %s: the manifest lists no entries of its tree %s", st.name, st.file.Name)
		}
	}
	r.out.line("verified %d files (%s)", len(vr.Files), human.Bytes(m.Bytes()))

	r.rep = &RestoreReport{
		Dir: r.Dir, Site: m.Site, Verdict: m.Verdict, Forced: m.Verdict != Consistent,
		Changed: append([]string{}, m.Changed...), Databases: []DatabaseRestore{}, Notes: []string{},
		Storages: []*StorageRestore{}, NotIncluded: append([]StorageNotIncluded{}, m.StoragesNotIncluded...),
	}
	if r.rep.Forced {
		if m.Verdict == Partial {
			r.out.line("warning: restoring a partial snapshot (forced; %s)", summarise(m.Problems(), 5, ""))
		} else {
			r.out.line("warning: restoring an inconsistent snapshot (forced; changed while it was taken: %s)", summarise(m.Changed, 5, ""))
		}
	}

	// The storage targets and the archives' entries.
	for i, st := range r.sts {
		if err := r.checkStorage(st); err != nil {
			return err
		}
		for _, o := range r.sts[:i] {
			if inside(st.root, o.root) || inside(o.root, st.root) {
				return refuse("%s target %s and %s target %s overlap: give each storage its own directory", o.label, o.path, st.label, st.path)
			}
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

// storageTargets are the storages to restore and where, in the
// manifest's order, and the targets given that the snapshot has no
// storage for.
func (r *restorer) storageTargets(m *Manifest) ([]*storageTarget, []string) {
	var names []string
	for _, st := range m.Storages {
		names = append(names, st.Name)
	}
	holds := "it holds no storage" + notConfiguredNote(m, SourceStorage)
	if len(names) > 0 {
		holds = "it holds " + strings.Join(names, ", ")
	}
	var missing []string
	if r.StoragePath != "" {
		switch len(m.Storages) {
		case 0:
			missing = append(missing, "a storage target was given, but the snapshot holds no storage archive"+notConfiguredNote(m, SourceStorage))
		case 1:
		default:
			missing = append(missing, fmt.Sprintf("one storage target was given, but the snapshot holds %d storages (%s): name each target with NAME=PATH", len(m.Storages), strings.Join(names, ", ")))
		}
	}
	for name := range r.Storages {
		if m.StorageByName(name) == nil {
			why := holds
			for _, n := range m.StoragesNotIncluded {
				if n.Name == name {
					why = "it was not included: " + n.Reason
				}
			}
			missing = append(missing, fmt.Sprintf("a target for storage %s was given, but the snapshot holds no storage %s (%s)", name, name, why))
		}
	}
	if r.AllStorages && len(m.Storages) == 0 {
		missing = append(missing, "every storage was asked for, but the snapshot holds no storage archive"+notConfiguredNote(m, SourceStorage))
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		return nil, missing
	}
	var out []*storageTarget
	for _, rec := range m.Storages {
		path, ok := r.Storages[rec.Name]
		switch {
		case ok:
		case r.StoragePath != "":
			path = r.StoragePath
		case r.AllStorages:
			path = rec.Path
		default:
			continue
		}
		label := "storage"
		if rec.Name != config.StorageNameDefault {
			label = "storage " + rec.Name
		}
		out = append(out, &storageTarget{name: rec.Name, path: path, label: label})
	}
	return out, nil
}

// heldDatabases names the databases whose dumps the snapshot holds.
func heldDatabases(m *Manifest) string {
	var names []string
	for _, d := range m.Databases {
		names = append(names, d.Name)
	}
	if len(names) == 0 {
		return " (it holds no database)"
	}
	return " (it holds " + strings.Join(names, ", ") + ")"
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
