package runbook

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"

	"github.com/ckanops/ckanops/api"

	"strings"
	"time"

	"github.com/ckanops/ckanops/ckanclient"
	"github.com/ckanops/ckanops/config"
	"github.com/ckanops/ckanops/runbook/snapshot"
)

// errSkipped: the operator skipped the step while it waited inside its
// action (preflight's warnings).
var errSkipped = errors.New("skipped")

// confirmation is what step asks before it runs, or nil.
func (e *Engine) confirmation(_ context.Context, step string) *api.Confirmation {
	if !stepNeedsConfirm(step) {
		return nil
	}
	o := e.rbOptions()
	site := e.o.Site.Name()
	switch step {
	case api.StepEnable:
		p := fmt.Sprintf("Put %s in %s mode", site, o.Mode)
		if o.Message != "" {
			p += fmt.Sprintf(" (message %q)", o.Message)
		}
		p += ", refusing every write, and suspend its RQ workers. Type the site's name to confirm."
		return &api.Confirmation{Step: step, Prompt: p, TypeSiteName: true}
	case api.StepMigrate:
		names := make([]string, len(e.o.Migrate))
		for i, c := range e.o.Migrate {
			names[i] = fmt.Sprintf("%s (%s)", c.Name, strings.Join(c.Argv, " "))
		}
		return &api.Confirmation{Step: step, TypeSiteName: true,
			Prompt: fmt.Sprintf("Run the migration on %s: %s. Type the site's name to confirm.", site, strings.Join(names, "; "))}
	case api.StepDisable:
		return &api.Confirmation{Step: step, Prompt: fmt.Sprintf("Reopen writes on %s (mode live) and resume its RQ workers?", site)}
	case api.StepSwitchToB, api.StepSwitchToA:
		return e.abConfirmation(step)
	}
	return nil
}

// runStep runs one step's action. A nil error means the step is done. In
// an A/B runbook, an error says where the traffic is and how to go on.
func (e *Engine) runStep(ctx context.Context, step, actor string) error {
	err := e.runStepAction(ctx, step, actor)
	if err == nil || !e.rbOptions().AB || ctx.Err() != nil || errors.Is(err, errSkipped) || errors.Is(err, ErrLeaseLost) {
		return err
	}
	if where := e.abWhere(step); where != "" {
		return fmt.Errorf("%w; %s", err, where)
	}
	return err
}

func (e *Engine) runStepAction(ctx context.Context, step, actor string) error {
	switch step {
	case api.StepPreflight:
		return e.preflight(ctx)
	case api.StepEnable:
		return e.enable(ctx, actor)
	case api.StepDrain:
		return e.drain(ctx, actor)
	case api.StepSnapshot:
		return e.snapshot(ctx)
	case api.StepMigrate:
		return e.migrate(ctx, actor)
	case api.StepVerify:
		return e.verify(ctx)
	case api.StepDisable:
		if err := e.disable(ctx, actor); err != nil {
			return err
		}
		if e.rbOptions().AB {
			e.evidence(api.StepDisable, api.Evidence{Kind: api.EvidenceNote, OK: true, Summary: e.retireB()})
		}
		return nil
	case api.StepRestoreB:
		return e.restoreB(ctx)
	case api.StepPrepareB:
		return e.prepareB(ctx)
	case api.StepVerifyB:
		return e.verifyB(ctx)
	case api.StepSwitchToB:
		return e.switchToB(ctx)
	case api.StepSwitchToA:
		return e.switchToA(ctx)
	}
	return fmt.Errorf("unknown step %q", step)
}

// preflight: every check not fail, the snapshot's tools and directory
// usable; warnings are listed and must be acknowledged.
func (e *Engine) preflight(ctx context.Context) error {
	const step = api.StepPreflight
	rep := e.o.Site.Health(ctx, true)
	var fails, warns []string
	for _, c := range rep.Checks {
		ev := api.Evidence{Kind: api.EvidenceCheck, Summary: c.Name + ": " + string(c.Status) + ": " + c.Summary,
			OK: c.Status == api.CheckOK, DurationMS: c.Duration.Milliseconds()}
		switch {
		case c.IsNotConfigured():
			ev.OK = true
		case c.Status == api.CheckFail:
			fails = append(fails, c.Name+": "+c.Summary)
		case c.Status == api.CheckWarn || c.Status == api.CheckUnknown:
			warns = append(warns, c.Name+": "+c.Summary)
		}
		e.evidence(step, ev)
	}
	for _, p := range e.snapshotProblems() {
		fails = append(fails, p)
		e.evidence(step, api.Evidence{Kind: api.EvidenceCheck, Summary: p})
	}
	if e.rbOptions().AB {
		f, w := e.abPreflight(ctx)
		fails, warns = append(fails, f...), append(warns, w...)
	}
	if st := e.o.Site.Status(ctx); st.Mode != api.ModeLive {
		warns = append(warns, fmt.Sprintf("the site is already %s since %s (by %s): the runbook keeps it so", st.Mode, stamp(st.Since), st.Actor))
	}
	if len(fails) > 0 {
		return fmt.Errorf("%d check(s) fail: %s", len(fails), strings.Join(fails, "; "))
	}
	if len(warns) == 0 {
		e.evidence(step, api.Evidence{Kind: api.EvidenceNote, OK: true, Summary: "every check passed"})
		return nil
	}
	if e.rbOptions().AutoConfirm {
		e.evidence(step, api.Evidence{Kind: api.EvidenceNote, OK: true,
			Summary: fmt.Sprintf("%d warning(s) acknowledged by auto-confirm: %s", len(warns), strings.Join(warns, "; "))})
		return nil
	}
	conf := &api.Confirmation{Step: step, Warnings: warns,
		Prompt: fmt.Sprintf("Preflight found %d warning(s). Acknowledge them and go on?", len(warns))}
	d, ok := e.wait(ctx, step, conf)
	if !ok || d.kind == "abort" {
		return context.Canceled
	}
	e.mu.Lock()
	e.rb.State = api.RunbookRunning
	e.setStep(step, api.StepRunning, "")
	e.mu.Unlock()
	if d.kind == "skip" {
		return errSkipped
	}
	e.evidence(step, api.Evidence{Kind: api.EvidenceNote, OK: true,
		Summary: fmt.Sprintf("%d warning(s) acknowledged by %s", len(warns), d.actor)})
	return nil
}

// snapshotProblems finds what would make the snapshot step fail, before
// the site is touched.
func (e *Engine) snapshotProblems() []string {
	var out []string
	dir := e.o.Snapshot.Dir
	if dir == "" {
		out = append(out, "snapshot: [snapshot] dir is not set")
	} else if fi, err := os.Stat(dir); err != nil {
		if _, perr := os.Stat(filepath.Dir(dir)); perr != nil {
			out = append(out, fmt.Sprintf("snapshot: dir %s does not exist and neither does its parent: create it or set [snapshot] dir", dir))
		}
	} else if !fi.IsDir() {
		out = append(out, fmt.Sprintf("snapshot: dir %s is not a directory", dir))
	} else if f, err := os.CreateTemp(dir, ".preflight-*"); err != nil {
		out = append(out, fmt.Sprintf("snapshot: dir %s is not writable: %v", dir, errors.Unwrap(err)))
	} else {
		f.Close()
		os.Remove(f.Name())
	}
	if e.o.Checks.CKANDB != "" || e.o.Checks.DatastoreDB != "" || len(e.o.Checks.Databases) > 0 {
		prog := e.o.Snapshot.PGDump
		if prog == "" {
			prog = config.DefaultPGDump
		}
		if _, err := exec.LookPath(prog); err != nil {
			out = append(out, fmt.Sprintf("snapshot: pg_dump %s cannot be run: %v (install postgresql-client or set [snapshot] pg_dump)", prog, errors.Unwrap(err)))
		}
	}
	storages := e.o.Snapshot.Storages
	if len(storages) == 0 && e.o.Snapshot.StoragePath != "" {
		storages = []config.Storage{{Name: "default", Path: e.o.Snapshot.StoragePath}}
	}
	for _, s := range storages {
		if !s.Local() {
			if !slices.Contains(e.o.Snapshot.ExcludeStorages, s.Name) {
				out = append(out, fmt.Sprintf("snapshot: storage %s (type %s) is not a local directory: the snapshot would be partial; back it up otherwise and list it in [snapshot] exclude_storages", s.Name, s.Type))
			}
			continue
		}
		if fi, err := os.Stat(s.Path); err != nil || !fi.IsDir() {
			out = append(out, fmt.Sprintf("snapshot: storage %s: %s is not a readable directory", s.Name, s.Path))
		}
	}
	return out
}

// modeRequest is the runbook's maintenance request, for enable and for
// migrate's return from down.
func (e *Engine) modeRequest(mode api.Mode, why string) api.ModeRequest {
	o := e.rbOptions()
	reason := fmt.Sprintf("runbook %s: %s", e.id(), why)
	if o.Reason != "" {
		reason += ": " + o.Reason
	}
	return api.ModeRequest{Mode: mode, Message: o.Message, Until: o.Until, For: o.For, Reason: reason}
}

func (e *Engine) setMode(ctx context.Context, step string, req api.ModeRequest, actor string) (api.Status, error) {
	st, err := e.o.Site.SetMode(ctx, req, actor)
	if err != nil {
		e.evidence(step, api.Evidence{Kind: api.EvidenceMode, Summary: "mode " + string(req.Mode) + " refused by the gate: " + err.Error()})
		return st, fmt.Errorf("the gate refused mode %s: %w", req.Mode, err)
	}
	e.evidence(step, api.Evidence{Kind: api.EvidenceMode, OK: true,
		Summary: fmt.Sprintf("mode %s, version %d, phase %s", st.Mode, st.Version, st.Phase),
		Details: map[string]any{"mode": st.Mode, "version": st.Version, "phase": st.Phase, "since": st.Since}})
	return st, nil
}

// enable puts the site in maintenance, unless it already is in that mode.
func (e *Engine) enable(ctx context.Context, actor string) error {
	const step = api.StepEnable
	mode := e.rbOptions().Mode
	if cur := e.o.Site.Status(ctx); cur.Mode == mode {
		e.evidence(step, api.Evidence{Kind: api.EvidenceMode, OK: true,
			Summary: fmt.Sprintf("already %s since %s (version %d, by %s): kept as it is", cur.Mode, stamp(cur.Since), cur.Version, cur.Actor),
			Details: map[string]any{"mode": cur.Mode, "version": cur.Version, "since": cur.Since}})
		return nil
	}
	_, err := e.setMode(ctx, step, e.modeRequest(mode, "enable"), actor)
	return err
}

// drain suspends RQ and waits until nothing writes: no write in flight on
// any gate, no RQ job running, no write transaction in any database
// (ckan_db, datastore_db, and each [[database]], checked as db:<name>).
func (e *Engine) drain(ctx context.Context, actor string) error {
	const step = api.StepDrain
	js, err := e.o.Site.SuspendJobs(ctx, actor, "runbook "+e.id()+": drain")
	switch {
	case errors.Is(err, ErrNotConfigured):
		e.evidence(step, api.Evidence{Kind: api.EvidenceNote, OK: true, Summary: "RQ is not configured ([checks] redis): no workers to suspend"})
	case err != nil:
		e.evidence(step, api.Evidence{Kind: api.EvidenceCheck, Summary: "RQ workers not suspended: " + err.Error()})
		return fmt.Errorf("RQ workers could not be suspended: %w", err)
	default:
		e.evidence(step, api.Evidence{Kind: api.EvidenceCheck, OK: true,
			Summary: "RQ workers suspended (" + js.Check.Summary + ")"})
	}
	start := time.Now()
	deadline := time.NewTimer(e.o.Drain)
	defer deadline.Stop()
	last := ""
	for {
		busy, details := e.busy(ctx)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if len(busy) == 0 {
			t := e.o.Clock()
			details["drained_at"] = t
			e.evidence(step, api.Evidence{Kind: api.EvidenceCheck, OK: true, Time: t,
				DurationMS: time.Since(start).Milliseconds(), Details: details,
				Summary: "drained at " + stamp(t) + ": no write in flight on any gate, no RQ job running, no write transaction"})
			return nil
		}
		if s := strings.Join(busy, "; "); s != last {
			last = s
			e.evidence(step, api.Evidence{Kind: api.EvidenceCheck, Summary: "waiting: " + s, Details: details})
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-deadline.C:
			return fmt.Errorf("drain timed out after %s ([gate] drain_timeout); still busy: %s", e.o.Drain, last)
		case <-time.After(e.o.Poll):
		}
	}
}

// busy lists what still writes; empty means drained.
func (e *Engine) busy(ctx context.Context) ([]string, map[string]any) {
	var busy []string
	details := map[string]any{}
	st := e.o.Site.Status(ctx)
	details["mode_version"] = st.Version
	if st.Mode == api.ModeLive {
		return []string{"the site is live again (changed by " + st.Actor + "): nothing to drain into"}, details
	}
	stopped := e.stoppedGates()
	for _, g := range st.Gates {
		switch {
		case g.Gone && slices.Contains(stopped, g.ID):
			// An operator said it is stopped (journaled and audited).
		case g.Gone:
			// Cut off from the store, it may still enforce an older mode,
			// possibly live: the site is not known to be quiet.
			busy = append(busy, fmt.Sprintf("gate %s is gone (no heartbeat since %s): it may still let writes through; once it is stopped, say so: ckanops runbook %s --gate-stopped %s",
				g.ID, stamp(g.Seen), e.o.Site.Name(), g.ID))
		case g.Version < st.Version:
			busy = append(busy, fmt.Sprintf("gate %s has not applied mode version %d yet (it has %d)", g.ID, st.Version, g.Version))
		case g.InFlight > 0:
			busy = append(busy, fmt.Sprintf("%d write(s) in flight on gate %s", g.InFlight, g.ID))
		case g.Phase == api.PhaseDraining:
			busy = append(busy, "gate "+g.ID+" is draining")
		}
	}
	if len(st.InFlight) > 0 {
		w := st.InFlight[0]
		details["oldest_write"] = fmt.Sprintf("%s %s for %s", w.Method, w.Path, time.Duration(w.AgeMS)*time.Millisecond)
	}
	var rep api.Report
	if p, ok := e.o.Site.(DrainProber); ok {
		rep = p.DrainHealth(ctx) // Redis and the databases only
	} else {
		rep = e.o.Site.Health(ctx, true)
	}
	reported := map[string]bool{}
	for _, c := range rep.Checks {
		reported[c.Name] = true
		if c.IsNotConfigured() {
			continue
		}
		switch c.Name {
		case api.ProbeRedis:
			busy = append(busy, rqBusy(c, details)...)
		default:
			if api.IsDatabaseProbe(c.Name) {
				busy = append(busy, dbBusy(c, details)...)
			}
		}
	}
	// A probe the gate's configuration has and the report lacks (the
	// probes could not be built) is as unknown as one that failed.
	type expected struct {
		name       string
		configured bool
		what       string
	}
	want := []expected{
		{api.ProbeRedis, e.o.Checks.Redis != "", "RQ's running jobs are"},
		{api.ProbeCKANDB, e.o.Checks.CKANDB != "", "its write transactions are"},
		{api.ProbeDatastoreDB, e.o.Checks.DatastoreDB != "", "its write transactions are"},
	}
	for _, db := range e.o.Checks.Databases {
		want = append(want, expected{api.ProbeDatabase(db.Name), true, "its write transactions are"})
	}
	for _, p := range want {
		if p.configured && !reported[p.name] {
			busy = append(busy, fmt.Sprintf("%s: %s unknown: the checks report has no %s check", p.name, p.what, p.name))
		}
	}
	return busy, details
}

// rqBusy is what the redis check says still runs: jobs running, workers
// not suspended. Counts it does not know (nil: the probe failed or did
// not answer, or the report lacks them) keep the drain waiting, and are
// null in the evidence.
func rqBusy(c api.CheckResult, details map[string]any) []string {
	d := c.RQ
	if d == nil {
		d = &api.RQDetails{}
	}
	details["rq_running"] = orNil(d.Running)
	if c.Status == api.CheckFail {
		return []string{"RQ cannot be read: " + c.Summary}
	}
	var busy []string
	switch {
	case d.Suspended == nil:
		busy = append(busy, "whether RQ's workers are suspended is unknown: "+unknownWhy(c, "suspended"))
	case !*d.Suspended:
		busy = append(busy, "RQ workers are not suspended")
	}
	switch {
	case d.Running == nil:
		busy = append(busy, "RQ's running jobs are unknown: "+unknownWhy(c, "running"))
	case *d.Running > 0:
		busy = append(busy, fmt.Sprintf("%d RQ job(s) running", *d.Running))
	}
	return busy
}

// dbBusy is what a database check (ckan_db, datastore_db, db:<name>)
// says still writes. An unknown count keeps the drain waiting.
func dbBusy(c api.CheckResult, details map[string]any) []string {
	d := c.Postgres
	if d == nil {
		d = &api.PostgresDetails{}
	}
	details[c.Name+"_write_transactions"] = orNil(d.WriteTransactions)
	if d.HiddenSessions != nil && *d.HiddenSessions > 0 {
		details[c.Name+"_hidden_sessions"] = *d.HiddenSessions
	}
	switch {
	case c.Status == api.CheckFail:
		return []string{c.Name + " cannot be read: " + c.Summary}
	case d.WriteTransactions == nil:
		return []string{c.Name + ": its write transactions are unknown: " + unknownWhy(c, "write_transactions")}
	case d.HiddenSessions != nil && *d.HiddenSessions > 0:
		user := d.User
		if user == "" {
			user = "<the probe's user>"
		}
		return []string{fmt.Sprintf("%s: its write transactions are unknown: %d session(s) of other roles are hidden from %s (as a superuser, run: GRANT pg_read_all_stats TO %s;)",
			c.Name, *d.HiddenSessions, user, user)}
	case *d.WriteTransactions == 0:
		return nil
	}
	who := ""
	for _, t := range d.Transactions {
		if t.Writing {
			who = fmt.Sprintf(" (oldest: pid %d, user %s, application %q, %.0fs)", t.PID, t.User, t.ApplicationName, t.AgeSeconds)
			break
		}
	}
	return []string{fmt.Sprintf("%s: %d write transaction(s)%s", c.Name, *d.WriteTransactions, who)}
}

// orNil is *p, or an untyped nil (null in the journal) for an unknown.
func orNil[T any](p *T) any {
	if p == nil {
		return nil
	}
	return *p
}

// unknownWhy says why check c lacks the detail key.
func unknownWhy(c api.CheckResult, key string) string {
	switch {
	case c.DetailsErr != nil:
		return c.DetailsErr.Error()
	case c.Status == api.CheckUnknown:
		return "the check is unknown: " + c.Summary
	}
	return fmt.Sprintf("the %s check (%s) reports no %q", c.Name, c.Status, key)
}

// snapshot takes the snapshot and requires it consistent.
func (e *Engine) snapshot(ctx context.Context) error {
	const step = api.StepSnapshot
	st := e.o.Site.Status(ctx)
	var quiesced time.Time
	e.mu.Lock()
	if d := e.rb.StepByName(api.StepDrain); d != nil {
		for _, ev := range d.Evidence {
			if ev.OK && ev.Kind == api.EvidenceCheck && ev.Details != nil && ev.Details["drained_at"] != nil {
				quiesced = ev.Time
			}
		}
	}
	e.mu.Unlock()
	throttle := newProgressThrottle(progressEvery)
	version := ""
	if s, err := e.o.Site.CKAN().StatusShow(ctx); err == nil {
		version = s.CKANVersion
	} else {
		e.evidence(step, api.Evidence{Kind: api.EvidenceNote, Summary: "CKAN's version is unknown: " + err.Error()})
	}
	spec := snapshot.Spec{
		Site: e.o.Site.Name(), Dir: e.o.Snapshot.Dir, PGDump: e.o.Snapshot.PGDump,
		CKANDB: e.o.Checks.CKANDB, DatastoreDB: e.o.Checks.DatastoreDB, Databases: e.o.Checks.Databases,
		// Every storage ([snapshot] Storages, resolved by config); a
		// SnapshotConfig built without them archives StoragePath alone.
		StoragePath: e.o.Snapshot.StoragePath, Storages: e.o.Snapshot.Storages, ExcludeStorages: e.o.Snapshot.ExcludeStorages,
		Incremental:       e.o.Snapshot.Incremental,
		ParallelThreshold: e.o.Snapshot.ParallelThresholdBytes, Jobs: e.o.Snapshot.Jobs,
		CKANVersion: version, ModeVersion: st.Version, Fence: e.fence.Load(), EnabledAt: st.Since, QuiescedAt: quiesced,
		Clock: e.o.Clock, StatsSettle: e.o.StatsSettle,
		Output: func(line string) { e.output(step, line) },
		Progress: func(p api.Progress) {
			if throttle.pass(p) {
				e.progress(step, p)
			}
		},
	}
	start := time.Now()
	m, err := snapshot.Take(ctx, spec)
	if err != nil {
		e.evidence(step, api.Evidence{Kind: api.EvidenceRun, Summary: err.Error(), DurationMS: time.Since(start).Milliseconds()})
		return err
	}
	var total int64
	files := make([]map[string]any, 0, len(m.Files))
	dirs := map[string]map[string]any{} // a directory dump: one row, not one per table
	for _, f := range m.Files {
		total += f.Size
		if f.Kind == snapshot.KindPGDumpDir {
			name := snapshot.DumpDirName(f.Source) + "/"
			d, ok := dirs[name]
			if !ok {
				d = map[string]any{"name": name, "size": int64(0), "files": 0}
				dirs[name] = d
				files = append(files, d)
			}
			d["size"] = d["size"].(int64) + f.Size
			d["files"] = d["files"].(int) + 1
			continue
		}
		files = append(files, map[string]any{"name": f.Name, "size": f.Size, "sha256": f.SHA256})
	}
	sum := &api.SnapshotSummary{Dir: m.Dir, Verdict: m.Verdict, Changed: m.Changed, Bytes: total}
	e.mu.Lock()
	e.rb.Snapshot = sum
	e.mu.Unlock()
	e.evidence(step, api.Evidence{Kind: api.EvidenceRun, OK: m.Verdict == snapshot.Consistent,
		DurationMS: time.Since(start).Milliseconds(),
		Summary:    fmt.Sprintf("snapshot %s: %d file(s), %d bytes, %s", m.Dir, len(m.Files), total, m.Verdict),
		Details: map[string]any{"dir": m.Dir, "files": files, "verdict": m.Verdict, "changed": m.Changed,
			"bookkeeping": m.Bookkeeping, "not_configured": m.NotConfigured, "storages_not_included": m.StoragesNotIncluded}})
	switch m.Verdict {
	case snapshot.Consistent:
	case snapshot.Partial:
		// Not a full snapshot: a storage of the site is not in it.
		var names []string
		for _, s := range m.Missing() {
			names = append(names, s.Name)
		}
		return fmt.Errorf("snapshot %s is partial: %s; the site is still in maintenance: back up storage %s otherwise and list it in [snapshot] exclude_storages (gate.toml, read when the gate starts), then retry the step; or abort",
			m.Dir, strings.Join(m.Problems(), "; "), strings.Join(names, ", "))
	default:
		return fmt.Errorf("snapshot %s is inconsistent: %s changed while it was taken; the site is still in maintenance: retry the step to take another, or abort",
			m.Dir, strings.Join(m.Changed, "; "))
	}
	if e.rbOptions().AB {
		e.recordAContent(ctx)
	}
	keep := e.o.Snapshot.Keep
	if keep > 0 {
		removed, err := snapshot.Prune(e.o.Snapshot.Dir, e.o.Site.Name(), keep)
		if err != nil {
			e.evidence(step, api.Evidence{Kind: api.EvidenceNote, Summary: "old snapshots not pruned: " + err.Error()})
		} else if len(removed) > 0 {
			e.evidence(step, api.Evidence{Kind: api.EvidenceNote, OK: true,
				Summary: fmt.Sprintf("removed %d old snapshot(s) ([snapshot] keep = %d): %s", len(removed), keep, strings.Join(removed, ", "))})
		}
	}
	return nil
}

// commandEnv is what the runbook's programs get besides the gate's environment.
func (e *Engine) commandEnv() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	env := []string{"CKANOPS_SITE=" + e.o.Site.Name(), "CKANOPS_RUNBOOK=" + e.rb.ID}
	if e.rb.Snapshot != nil {
		env = append(env, "CKANOPS_SNAPSHOT="+e.rb.Snapshot.Dir)
	}
	if e.rb.Options.AB {
		env = append(env, "CKANOPS_B_URL="+e.o.AB.BURL, "CKANOPS_PUBLIC_URL="+e.o.AB.PublicURL)
	}
	return env
}

// run runs one [[migrate]] or [[verify]] command and records it.
func (e *Engine) runRecorded(ctx context.Context, step string, c config.Command) error {
	res, err := runCommand(ctx, c, e.commandEnv(), func(line string) { e.output(step, line) }, func(pgid int) {
		// Where it runs, for a restart that finds it not ended (commandLeft).
		e.evidence(step, api.Evidence{Kind: api.EvidenceNote, OK: true, Summary: "running " + c.Name + ": " + strings.Join(c.Argv, " "), Argv: c.Argv,
			Details: map[string]any{detailPGID: pgid, detailGate: e.o.Holder}})
		e.durable() // on disk and sent to Redis now, not with the next batch
	})
	ev := api.Evidence{Kind: api.EvidenceRun, Argv: c.Argv, DurationMS: res.Duration.Milliseconds(), OutputTail: res.Tail, OK: err == nil}
	code := res.ExitCode
	ev.ExitCode = &code
	if err != nil {
		ev.Summary = fmt.Sprintf("%s: %v", c.Name, err)
	} else {
		ev.Summary = fmt.Sprintf("%s: exit 0 in %s", c.Name, res.Duration.Round(time.Millisecond))
	}
	e.evidence(step, ev)
	if err != nil {
		return fmt.Errorf("%s %q %v", step, c.Name, err)
	}
	return nil
}

// migrate runs the [[migrate]] commands; those with mode "down" run with
// the site down, and it returns to the runbook's mode after them.
func (e *Engine) migrate(ctx context.Context, actor string) error {
	const step = api.StepMigrate
	want := e.rbOptions().Mode
	for i, c := range e.o.Migrate {
		if c.Mode == api.ModeDown && e.o.Site.Status(ctx).Mode != api.ModeDown {
			if _, err := e.setMode(ctx, step, e.modeRequest(api.ModeDown, "migrate "+c.Name), actor); err != nil {
				return err
			}
		}
		if err := e.runRecorded(ctx, step, c); err != nil {
			return err // the site stays as it is: down if it was
		}
		nextDown := i+1 < len(e.o.Migrate) && e.o.Migrate[i+1].Mode == api.ModeDown
		if !nextDown && e.o.Site.Status(ctx).Mode != want {
			if _, err := e.setMode(ctx, step, e.modeRequest(want, "after migrate "+c.Name), actor); err != nil {
				return err
			}
		}
	}
	return nil
}

// verify checks that CKAN answers through the gate, at the expected
// version, with a working search; then the [[verify]] commands.
func (e *Engine) verify(ctx context.Context) error {
	const step = api.StepVerify
	c := e.o.Site.CKAN()
	t0 := time.Now()
	s, err := c.StatusShow(ctx)
	if err != nil {
		e.evidence(step, api.Evidence{Kind: api.EvidenceCheck, Summary: "status_show through the gate failed: " + err.Error()})
		return fmt.Errorf("status_show through the gate failed: %w", err)
	}
	e.evidence(step, api.Evidence{Kind: api.EvidenceCheck, OK: true, DurationMS: time.Since(t0).Milliseconds(),
		Summary: fmt.Sprintf("status_show answers through the gate: CKAN %s", s.CKANVersion), Details: map[string]any{"ckan_version": s.CKANVersion}})
	if want := e.o.ExpectCKAN; want != "" && s.CKANVersion != want {
		e.evidence(step, api.Evidence{Kind: api.EvidenceCheck, Summary: fmt.Sprintf("CKAN is %s, expected %s", s.CKANVersion, want)})
		return fmt.Errorf("CKAN reports version %s, [runbook] expect_ckan_version is %s", s.CKANVersion, want)
	}
	t0 = time.Now()
	res, err := c.PackageSearch(ctx, ckanclient.PackageSearchParams{Rows: 0})
	if err != nil {
		e.evidence(step, api.Evidence{Kind: api.EvidenceCheck, Summary: "package_search failed: " + err.Error()})
		return fmt.Errorf("package_search through the gate failed: %w", err)
	}
	e.evidence(step, api.Evidence{Kind: api.EvidenceCheck, OK: true, DurationMS: time.Since(t0).Milliseconds(),
		Summary: fmt.Sprintf("package_search answers: %d dataset(s)", res.Count)})
	for _, cmd := range e.o.Verify {
		if err := e.runRecorded(ctx, step, cmd); err != nil {
			return err
		}
	}
	return nil
}

// disable reopens writes, resumes RQ, and confirms that every gate is live
// and CKAN answers.
func (e *Engine) disable(ctx context.Context, actor string) error {
	const step = api.StepDisable
	if err := e.reopen(ctx, step, actor, "disable"); err != nil {
		return err
	}
	deadline := time.Now().Add(min(e.o.Drain, time.Minute))
	for {
		st := e.o.Site.Status(ctx)
		applied, live, lagging := st.Applied()
		if st.Mode == api.ModeLive && st.Phase == api.PhaseLive && applied == live {
			e.evidence(step, api.Evidence{Kind: api.EvidenceCheck, OK: true,
				Summary: fmt.Sprintf("live on %d/%d gate(s), version %d", applied, live, st.Version)})
			break
		}
		if st.Mode != api.ModeLive {
			return fmt.Errorf("the mode is %s again (changed by %s) before the disable was confirmed", st.Mode, st.Actor)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("gates %s have not applied live mode (version %d)", strings.Join(lagging, ", "), st.Version)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(e.o.Poll):
		}
	}
	s, err := e.o.Site.CKAN().StatusShow(ctx)
	if err != nil {
		return fmt.Errorf("writes are open, but status_show through the gate failed: %w", err)
	}
	e.evidence(step, api.Evidence{Kind: api.EvidenceCheck, OK: true, Summary: "CKAN answers through the gate: " + s.CKANVersion})
	return nil
}

// reopen sets the mode live and resumes RQ.
func (e *Engine) reopen(ctx context.Context, step, actor, why string) error {
	if _, err := e.setMode(ctx, step, api.ModeRequest{Mode: api.ModeLive, Reason: "runbook " + e.id() + ": " + why}, actor); err != nil {
		return err
	}
	js, err := e.o.Site.ResumeJobs(ctx, actor, "runbook "+e.id()+": "+why)
	switch {
	case errors.Is(err, ErrNotConfigured):
		e.evidence(step, api.Evidence{Kind: api.EvidenceNote, OK: true, Summary: "RQ is not configured: no workers to resume"})
	case err != nil:
		e.evidence(step, api.Evidence{Kind: api.EvidenceCheck, Summary: "RQ workers not resumed: " + err.Error()})
		return fmt.Errorf("writes are open but RQ's workers were not resumed: %w (resume them with POST /-/ckanops/jobs/resume)", err)
	default:
		e.evidence(step, api.Evidence{Kind: api.EvidenceCheck, OK: true, Summary: "RQ workers resumed (" + js.Check.Summary + ")"})
	}
	return nil
}

// disableNow is the abort's "disable maintenance now".
func (e *Engine) disableNow(ctx context.Context, actor string) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	return e.reopen(ctx, api.StepDisable, actor, "disable now (abort)")
}

// stamp is a time as operators read it in the journal: to the second, in
// UTC (the gate cannot know the reader's zone; the console shows its own
// times in local time).
func stamp(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05 UTC") }
