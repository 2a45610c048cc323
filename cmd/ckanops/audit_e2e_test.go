package main

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ckanops/ckanops/api"
)

// gateCall calls the gate's control API with the ops token.
func (s *site) gateCall(method, path, body string) (int, string) {
	s.t.Helper()
	req, _ := http.NewRequest(method, s.gateURL+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+e2eToken)
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

// SIGHUP makes the gate reopen its audit log (logrotate's postrotate), and
// the audit tail follows the new file.
func TestGateReopensTheAuditLogOnSIGHUP(t *testing.T) {
	s := newSite(t)
	s.startGate()
	path := filepath.Join(s.dir, "state", "audit.jsonl")
	if code, out, errOut := s.cli("enable", "--reason", "before rotation", "e2e"); code != 0 {
		t.Fatalf("enable: exit %d\n%s\n%s", code, out, errOut)
	}
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	if err := s.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	// The new file appears at once, before any entry.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if _, err := os.Stat(path); err == nil {
			break
		}
		if time.Now().After(deadline) || s.cmd.ProcessState != nil {
			t.Fatalf("no new audit log after SIGHUP; the gate's log:\n%s", s.logs)
		}
	}
	if code, out, errOut := s.cli("disable", "--reason", "after rotation", "e2e"); code != 0 {
		t.Fatalf("disable after SIGHUP: exit %d\n%s\n%s\nthe gate's log:\n%s", code, out, errOut, s.logs)
	}
	b, _ := os.ReadFile(path)
	if n := strings.Count(string(b), `"event":"mode"`); n != 1 || !strings.Contains(string(b), "after rotation") {
		t.Fatalf("the new audit log:\n%s", b)
	}
	code, body := s.gateCall("GET", api.PathAudit+"?tail=1", "")
	var tail api.AuditTail
	if code != 200 || json.Unmarshal([]byte(body), &tail) != nil || len(tail.Entries) != 1 || tail.Entries[0].Reason != "after rotation" {
		t.Fatalf("audit tail: %d %s", code, body)
	}
	if !strings.Contains(s.logs.String(), "audit log reopened (SIGHUP)") {
		t.Fatalf("the gate did not log the reopening:\n%s", s.logs)
	}
	s.cmd.Process.Signal(syscall.SIGTERM)
	if err := s.cmd.Wait(); err != nil {
		t.Fatalf("gate exit after SIGTERM: %v\n%s", err, s.logs)
	}
}

// A gate whose audit log cannot be written (a full disk: /dev/full) still
// changes the mode, and says so in the answer, the health and the metrics.
func TestGateReportsAFailingAuditLog(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("needs /dev/full")
	}
	s := newSite(t)
	f, err := os.OpenFile(s.gateConf, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("\n[audit]\nfile = \"/dev/full\"\n")
	f.Close()
	s.startGate()

	code, body := s.gateCall("POST", api.PathMode, `{"mode": "read-only", "reason": "disk full"}`)
	var st api.Status
	if code != 200 || json.Unmarshal([]byte(body), &st) != nil || st.Mode != api.ModeReadOnly ||
		!strings.HasPrefix(st.Audit, "failed: ") || !strings.Contains(st.Audit, "no space left on device") {
		t.Fatalf("mode change: %d %s", code, body)
	}
	code, body = s.gateCall("GET", api.PathHealth, "")
	var rep api.Report
	if code != 200 || json.Unmarshal([]byte(body), &rep) != nil || len(rep.Checks) == 0 ||
		rep.Checks[0].Name != api.ProbeGate || rep.Checks[0].Status != api.CheckWarn ||
		!strings.Contains(rep.Checks[0].Summary, "audit log cannot be written since") {
		t.Fatalf("health: %d %s", code, body)
	}
	if _, body = s.gateCall("GET", "/-/ckanops/metrics", ""); !strings.Contains(body, "\nckanops_audit_failures_total 1\n") {
		t.Fatalf("metrics:\n%s", body)
	}
	if !strings.Contains(s.logs.String(), "audit log append failed") {
		t.Fatalf("the gate did not log the failure:\n%s", s.logs)
	}
}
