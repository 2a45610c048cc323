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
	"strings"

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
