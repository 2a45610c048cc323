package gate

import (
	"encoding/json"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/ckanops/ckanops/api"
)

// auditTail is GET /-/ckanops/audit?tail=n.
func (r *rig) auditTail(n string) []AuditEntry {
	r.t.Helper()
	res := r.do("GET", "/-/ckanops/audit?tail="+n, nil, "Authorization", "Bearer "+opsToken)
	if res.status != 200 {
		r.t.Fatalf("audit tail: %d %s", res.status, res.body)
	}
	var tail api.AuditTail
	if err := json.Unmarshal([]byte(res.body), &tail); err != nil {
		r.t.Fatalf("audit tail: %v\n%s", err, res.body)
	}
	return tail.Entries
}

func modes(es []AuditEntry) string {
	var s []string
	for _, e := range es {
		s = append(s, e.From+">"+e.To)
	}
	return strings.Join(s, " ")
}

// The audit log follows logrotate: a log renamed (and perhaps replaced by
// an empty file, or removed) under a running gate gets the next entry at
// its path, and the audit tail shows it.
func TestAuditLogFollowsRotation(t *testing.T) {
	for _, tc := range []struct {
		name   string
		rotate func(t *testing.T, path string)
		perm   os.FileMode // of the file at path afterwards
		tail   string      // GET /-/ckanops/audit?tail=5 afterwards
	}{
		{"renamed", func(t *testing.T, path string) {
			must(t, os.Rename(path, path+".1"))
		}, 0o600, "live>read-only read-only>live"},
		{"renamed, and an empty file created (logrotate's create)", func(t *testing.T, path string) {
			must(t, os.Rename(path, path+".1"))
			must(t, os.WriteFile(path, nil, 0o604))
			must(t, os.Chmod(path, 0o604))
		}, 0o604, "live>read-only read-only>live"},
		{"removed", func(t *testing.T, path string) {
			must(t, os.Remove(path))
		}, 0o600, "read-only>live"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t)
			must(t, os.Chmod(r.audit, 0o600))
			r.mustMode(api.ModeReadOnly, "one")
			tc.rotate(t, r.audit)
			if st := r.mustMode(api.ModeLive, "two"); st.Audit != "" {
				t.Fatalf("the answer says %q", st.Audit)
			}
			if got := modes(r.auditTail("1")); got != "read-only>live" {
				t.Fatalf("audit tail after the rotation: %q", got)
			}
			if got := modes(auditEntries(t, r.audit)); got != "read-only>live" {
				t.Fatalf("the new file holds %q", got)
			}
			if got := modes(r.auditTail("5")); got != tc.tail {
				t.Fatalf("audit tail 5: %q, want %q", got, tc.tail)
			}
			st, err := os.Stat(r.audit)
			must(t, err)
			if st.Mode().Perm() != tc.perm {
				t.Fatalf("the new file's mode is %v, want %v", st.Mode().Perm(), tc.perm)
			}
			if tc.tail != "read-only>live" {
				if got := modes(auditEntries(t, r.audit+".1")); got != "live>read-only" {
					t.Fatalf("the rotated file holds %q", got)
				}
			}
		})
	}
}

// Reopen (SIGHUP) opens the path anew at once, before any entry.
func TestAuditLogReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	a, err := OpenAuditLog(path)
	must(t, err)
	defer a.Close()
	must(t, a.Append(AuditEntry{Event: "mode", To: "read-only"}))
	must(t, os.Rename(path, path+".1"))
	reopened, err := ReopenAuditLogs()
	must(t, err)
	if !containsString(reopened, path) {
		t.Fatalf("reopened %v, not %s", reopened, path)
	}
	if st, err := os.Stat(path); err != nil || st.Size() != 0 {
		t.Fatalf("after Reopen: %v %v", st, err)
	}
	must(t, a.Append(AuditEntry{Event: "mode", To: "live"}))
	if got := modes(auditEntries(t, path)); got != ">live" {
		t.Fatalf("the new file holds %q", got)
	}
	if got := modes(auditEntries(t, path+".1")); got != ">read-only" {
		t.Fatalf("the old file holds %q", got)
	}
	// A closed log is left alone, and refuses entries.
	must(t, a.Close())
	reopened, _ = ReopenAuditLogs()
	if containsString(reopened, path) {
		t.Fatal("a closed log was reopened")
	}
	if err := a.Append(AuditEntry{Event: "mode"}); err == nil {
		t.Fatal("append after close")
	}
}

func containsString(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

// A full disk: writes to /dev/full fail with ENOSPC, the way a full
// filesystem's do.
func fullAuditLog(t *testing.T) (*AuditLog, string) {
	t.Helper()
	if runtime.GOOS != "linux" {
		t.Skip("needs /dev/full")
	}
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	must(t, os.Symlink("/dev/full", path))
	a, err := OpenAuditLog(path)
	must(t, err)
	t.Cleanup(func() { a.Close() })
	return a, path
}

// A failed audit append changes the mode all the same, and says so: in the
// answer, in the gate probe (until an append succeeds again) and in
// ckanops_audit_failures_total.
func TestAuditFailureIsObservable(t *testing.T) {
	full, path := fullAuditLog(t)
	now := time.Date(2026, 11, 29, 16, 0, 0, 0, time.UTC)
	r := newRig(t, func(o *Options) {
		o.Audit = full
		o.Clock = func() time.Time { return now }
	})
	if v := metricValue(t, r.srv, "ckanops_audit_failures_total"); v != "0" {
		t.Fatalf("ckanops_audit_failures_total before: %q", v)
	}
	if gc := byName(r.health())["gate"]; gc.Status != api.CheckOK {
		t.Fatalf("gate probe before: %s %s", gc.Status, gc.Summary)
	}

	st := r.mustMode(api.ModeReadOnly, "one")
	if st.Mode != api.ModeReadOnly || !strings.HasPrefix(st.Audit, "failed: ") || !strings.Contains(st.Audit, "no space left on device") {
		t.Fatalf("answer: mode %s, audit %q", st.Mode, st.Audit)
	}
	if r.status(true).Mode != api.ModeReadOnly {
		t.Fatal("the change was not made")
	}
	if s := r.status(true); s.Audit != "" {
		t.Fatalf("status carries audit %q", s.Audit)
	}
	now = now.Add(time.Minute)
	r.mustMode(api.ModeDown, "two")
	if v := metricValue(t, r.srv, "ckanops_audit_failures_total"); v != "2" {
		t.Fatalf("ckanops_audit_failures_total: %q", v)
	}
	gc := byName(r.health())["gate"]
	if gc.Status != api.CheckWarn || !strings.Contains(gc.Summary, "audit log cannot be written since 2026-11-29T16:00:00Z") ||
		!strings.Contains(gc.Summary, "no space left on device") {
		t.Fatalf("gate probe: %s %q", gc.Status, gc.Summary)
	}

	// The disk has room again (here: the path is a file once more): the
	// next entry is written, and the probe is ok.
	must(t, os.Remove(path))
	st = r.mustMode(api.ModeLive, "three")
	if st.Audit != "" {
		t.Fatalf("answer after recovery: audit %q", st.Audit)
	}
	if gc := byName(r.health())["gate"]; gc.Status != api.CheckOK {
		t.Fatalf("gate probe after recovery: %s %s", gc.Status, gc.Summary)
	}
	if v := metricValue(t, r.srv, "ckanops_audit_failures_total"); v != "2" {
		t.Fatalf("ckanops_audit_failures_total after recovery: %q", v)
	}
	if got := modes(auditEntries(t, path)); got != "down>live" {
		t.Fatalf("the log holds %q", got)
	}
}

// A log that cannot be reopened after its rotation (here a directory took
// its path) keeps the entry in the previous file, and the append counts as
// failed: the log at its path does not hold it.
func TestAuditReopenFailureIsAFailure(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	a, err := OpenAuditLog(path)
	must(t, err)
	defer a.Close()
	must(t, os.Rename(path, path+".1"))
	must(t, os.Mkdir(path, 0o750))
	t0 := time.Date(2026, 11, 29, 16, 0, 0, 0, time.UTC)
	err = a.Append(AuditEntry{Time: t0, Event: "mode", To: "read-only"})
	if err == nil || !strings.Contains(err.Error(), "reopen audit log") {
		t.Fatalf("append: %v", err)
	}
	if got := modes(auditEntries(t, path+".1")); got != ">read-only" {
		t.Fatalf("the previous file holds %q", got)
	}
	if s := a.state(); s.failures != 1 || !s.since.Equal(t0) || s.err == nil {
		t.Fatalf("state: %+v", s)
	}
	// Once the path is free again, the next append reopens it.
	must(t, os.Remove(path))
	must(t, a.Append(AuditEntry{Time: t0.Add(time.Second), Event: "mode", To: "live"}))
	if got := modes(auditEntries(t, path)); got != ">live" {
		t.Fatalf("the new file holds %q", got)
	}
	if s := a.state(); s.failures != 1 || !s.since.IsZero() || s.err != nil {
		t.Fatalf("state after recovery: %+v", s)
	}
}
