package snapshot

// Restoring a snapshot: the databases (see restore.go).
//
// pg_restore runs with --single-transaction into each target, one after
// the other. A target's tables are listed before (a database that is not
// empty is refused without Clean) and after (to compare them with those
// the snapshot recorded).

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/ckanops/ckanops/config"

	"github.com/ckanops/ckanops/internal/human"
)

// restoreTimeout bounds the checks of a target database: connect and
// list its tables.
const restoreTimeout = 30 * time.Second

// dbTarget is one dump to restore and where.
type dbTarget struct {
	db       *database
	file     File
	recorded map[string]bool // the tables the snapshot recorded, "schema.table"
	rep      *DatabaseRestore
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

// UserTables lists the user tables of the database at dsn (those of
// extensions left out), as a restore's check that its target is empty
// sees them. source names the database in errors.
func UserTables(ctx context.Context, source string, dsn config.SecretURL) ([]string, error) {
	db, err := newDatabase(source, dsn)
	if err != nil {
		return nil, err
	}
	return listTables(ctx, db, userTablesQuery)
}

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

// restoreArgs is pg_restore's argv after the program: never the password.
// jobs > 0 restores a directory dump with that many parallel jobs, which
// pg_restore cannot do in one transaction: each job commits its own part,
// so a failure leaves what was restored before it in the target.
func restoreArgs(db *database, clean bool, file string, jobs int) []string {
	args := []string{"--no-owner", "--no-privileges", "--exit-on-error", "--single-transaction", "--no-password"}
	if jobs > 0 {
		args[3] = "--jobs=" + strconv.Itoa(jobs)
	}
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
	jobs := 0
	if t.file.Kind == KindPGDumpDir {
		jobs = max(r.Jobs, 1)
		r.out.line("pg_restore %s: restoring the directory dump %s/ (%s) into %s with %d parallel jobs (not one transaction: a failure leaves part of it restored)",
			db.source, t.file.Name, human.Bytes(t.file.Size), db.what(), jobs)
	} else {
		r.out.line("pg_restore %s: restoring %s (%s) into %s", db.source, t.file.Name, human.Bytes(t.file.Size), db.what())
	}

	cmd := exec.CommandContext(ctx, r.pgRestore, restoreArgs(db, r.Clean, filepath.Join(r.Dir, t.file.Name), jobs)...)
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
	stopWatch := func(bool) {}
	if jobs == 0 {
		stopWatch = r.watchRead(cmd.Process.Pid, "pg_restore "+db.source, filepath.Join(r.Dir, t.file.Name), t.file.Size)
	} else if mt := r.out.meter("pg_restore "+db.source, t.file.Size, 0); mt != nil {
		// Several processes read several files: only the start and the end.
		stopWatch = func(bool) { mt.end(t.file.Size, 0) }
	}
	lines := r.readRestoreStderr(stderr, db)
	err = cmd.Wait()
	stopWatch(err == nil)
	if err != nil {
		if ctx.Err() != nil {
			if jobs > 0 {
				return fmt.Errorf("cancelled while pg_restore restored %s (a parallel restore is not one transaction: the database holds part of the dump): %w", db.what(), context.Cause(ctx))
			}
			return fmt.Errorf("cancelled while pg_restore restored %s (its single transaction rolled back): %w", db.what(), context.Cause(ctx))
		}
		msg := fmt.Sprintf("pg_restore of %s into %s failed with %v (its single transaction rolled back: the database is as it was)", t.file.Name, db.what(), err)
		if jobs > 0 {
			msg = fmt.Sprintf("pg_restore of %s into %s failed with %v (a parallel restore is not one transaction: the database holds part of the dump; restore it again with --clean, or into a fresh database)", t.file.Name, db.what(), err)
		}
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

// watchRead reports, as part's progress, how far process pid has read the
// file at path (of size bytes), from its file offset in /proc, until the
// returned function is called: it reports the part's end, at the whole
// size when the process succeeded (it read it all), else where it was
// last seen.
func (r *restorer) watchRead(pid int, part, path string, size int64) (stop func(ok bool)) {
	if r.out == nil || r.out.progress == nil {
		return func(bool) {}
	}
	if p, err := filepath.EvalSymlinks(path); err == nil {
		path = p
	}
	if p, err := filepath.Abs(path); err == nil {
		path = p
	}
	done, exited := make(chan struct{}), make(chan struct{})
	var succeeded bool
	go func() {
		defer close(exited)
		mt := r.out.meter(part, size, 0)
		var pos int64
		t := time.NewTicker(progressReportEvery)
		defer t.Stop()
		for {
			select {
			case <-done:
				if succeeded {
					pos = size
				}
				mt.end(pos, 0)
				return
			case <-t.C:
				if p, ok := readOffset(pid, path); ok {
					pos = max(pos, p)
					mt.update(pos, 0)
				}
			}
		}
	}()
	return func(ok bool) {
		succeeded = ok
		close(done)
		<-exited
	}
}

// readOffset is the offset at which process pid has the file at path
// open, from /proc/<pid>/fdinfo (Linux); ok is false when it cannot be
// read, or the file is not open.
func readOffset(pid int, path string) (pos int64, ok bool) {
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	fds, err := os.ReadDir(dir)
	if err != nil {
		return 0, false
	}
	for _, fd := range fds {
		if l, err := os.Readlink(filepath.Join(dir, fd.Name())); err != nil || l != path {
			continue
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/fdinfo/%s", pid, fd.Name()))
		if err != nil {
			return 0, false
		}
		for _, line := range strings.Split(string(b), "\n") {
			if v, found := strings.CutPrefix(line, "pos:"); found {
				n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
				return n, err == nil
			}
		}
	}
	return 0, false
}
