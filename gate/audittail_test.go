package gate

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestAuditTail(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	a, err := OpenAuditLog(path)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if got, err := a.Tail(5); err != nil || len(got) != 0 {
		t.Fatalf("empty log: %v %v", got, err)
	}
	// Enough entries that the last ones lie beyond the read window's start.
	big := strings.Repeat("x", 1000)
	for i := range 1000 {
		must(t, a.Append(AuditEntry{Time: time.Unix(int64(i), 0).UTC(), Event: "mode", Actor: fmt.Sprint("actor-", i), Message: big, Remote: "127.0.0.1"}))
	}
	// A crash mid-write leaves a torn line at the end.
	f, _ := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString(`{"time":"2026-11-29T12:00:00Z","event":"mo`)
	f.Close()
	got, err := a.Tail(3)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || got[0].Actor != "actor-997" || got[2].Actor != "actor-999" {
		t.Fatalf("tail: %d entries, %+v", len(got), got)
	}
	// More than the window holds: as many as it holds, newest last.
	got, _ = a.Tail(500)
	if n := len(got); n < 400 || got[n-1].Actor != "actor-999" {
		t.Fatalf("tail 500: %d entries, last %q", n, got[n-1].Actor)
	}
	r := newRig(t)
	if res := r.do("GET", "/-/ckanops/audit?tail=0", nil, "Authorization", "Bearer "+opsToken); res.status != 400 {
		t.Fatalf("tail=0: %d", res.status)
	}
	if res := r.do("GET", "/-/ckanops/audit", nil); res.status != 401 {
		t.Fatalf("anonymous: %d", res.status)
	}
}
