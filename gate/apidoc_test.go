package gate

// docs/api.md is executed: every request in it is sent, in order, to a real
// gate in front of ckansim (with a throwaway Redis for RQ and a runbook
// engine), and the answer must have the documented status and the same JSON
// shape (the same keys, recursively; values are examples).

import (
	"bufio"
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ckanops/ckanops/api"

	"github.com/ckanops/ckanops/config"
	"github.com/ckanops/ckanops/internal/ckansim"
	"github.com/ckanops/ckanops/internal/testredis"
	"github.com/ckanops/ckanops/runbook"
)

var showAPI = flag.Bool("show-api", false, "print every answer of TestAPIDocIsTrue")

// exchange is one documented request and its documented answer.
type exchange struct {
	line    int // of the request in api.md
	method  string
	path    string
	header  http.Header
	body    string
	status  int
	ctype   string
	resBody string
}

// parseAPIDoc reads the ```http blocks of api.md: a request block
// ("METHOD PATH HTTP/1.1", headers, blank line, body) followed by its
// response block ("HTTP/1.1 STATUS ...", headers, blank line, body).
func parseAPIDoc(t *testing.T, path string) []exchange {
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var blocks []struct {
		line int
		text string
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	in, start, n := false, 0, 0
	var cur strings.Builder
	for sc.Scan() {
		n++
		l := sc.Text()
		switch {
		case !in && l == "```http":
			in, start = true, n+1
			cur.Reset()
		case in && l == "```":
			in = false
			blocks = append(blocks, struct {
				line int
				text string
			}{start, cur.String()})
		case in:
			cur.WriteString(l + "\n")
		}
	}
	var out []exchange
	for i := 0; i < len(blocks); i++ {
		head, body, _ := strings.Cut(blocks[i].text, "\n\n")
		lines := strings.Split(strings.TrimRight(head, "\n"), "\n")
		f := strings.Fields(lines[0])
		if len(f) != 3 || !strings.HasPrefix(f[2], "HTTP/") {
			t.Fatalf("api.md:%d: a request block starts with METHOD PATH HTTP/1.1, not %q", blocks[i].line, lines[0])
		}
		ex := exchange{line: blocks[i].line, method: f[0], path: f[1], header: http.Header{}, body: strings.TrimSpace(body)}
		for _, h := range lines[1:] {
			k, v, _ := strings.Cut(h, ":")
			ex.header.Add(strings.TrimSpace(k), strings.TrimSpace(v))
		}
		i++
		if i == len(blocks) {
			t.Fatalf("api.md:%d: request without a response block", ex.line)
		}
		head, body, _ = strings.Cut(blocks[i].text, "\n\n")
		lines = strings.Split(strings.TrimRight(head, "\n"), "\n")
		f = strings.Fields(lines[0])
		if len(f) < 2 || !strings.HasPrefix(f[0], "HTTP/") {
			t.Fatalf("api.md:%d: a response block starts with HTTP/1.1 STATUS, not %q", blocks[i].line, lines[0])
		}
		ex.status, _ = strconv.Atoi(f[1])
		for _, h := range lines[1:] {
			if k, v, _ := strings.Cut(h, ":"); strings.EqualFold(strings.TrimSpace(k), "Content-Type") {
				ex.ctype = strings.TrimSpace(v)
			}
		}
		ex.resBody = strings.TrimSpace(body)
		out = append(out, ex)
	}
	return out
}

func TestAPIDocIsTrue(t *testing.T) {
	rd := testredis.Start(t)
	dir := t.TempDir()
	storage := filepath.Join(dir, "storage")
	must(t, os.MkdirAll(filepath.Join(storage, "resources"), 0o755))
	must(t, os.WriteFile(filepath.Join(storage, "resources", "a.csv"), []byte("a\n1\n"), 0o644))
	snaps := filepath.Join(dir, "snapshots")
	must(t, os.Mkdir(snaps, 0o750))
	checks := config.ChecksConfig{Redis: config.SecretURL(rd.URL()), StoragePath: storage}
	r := newRig(t, withChecks(checks), func(o *Options) { o.Site, o.CKANVersion = "prod", VersionAuto })
	watch(t, r.gate) // the documented status names the surface CKAN's version chose
	r.waitSurface("surface 2.11", applied("2.11"))
	site, err := r.gate.RunbookSite(r.srv.URL)
	must(t, err)
	e, err := runbook.Open(runbook.Options{Site: site, JournalDir: filepath.Join(dir, "journal"),
		Snapshot: config.SnapshotConfig{Dir: snaps, StoragePath: storage, Keep: 3}, Checks: checks, Poll: 20 * time.Millisecond})
	must(t, err)
	t.Cleanup(func() { e.Close() })
	r.gate.AttachRunbook(e)

	// $AT is a window's start in the future, as the schedule examples need.
	at := time.Now().Add(72 * time.Hour).UTC().Truncate(time.Hour).Format(time.RFC3339)
	for _, ex := range parseAPIDoc(t, "../docs/api.md") {
		if strings.HasPrefix(ex.path, "/-/ckanops/runbook") {
			waitRunbookRests(t, e)
		}
		body := strings.NewReplacer("$OPS_TOKEN", opsToken, "$CKAN_TOKEN", ckansim.SysadminToken, "$AT", at).Replace(ex.body)
		req, _ := http.NewRequest(ex.method, r.srv.URL+ex.path, strings.NewReader(body))
		for k, vs := range ex.header {
			for _, v := range vs {
				req.Header.Add(k, strings.NewReplacer("$OPS_TOKEN", opsToken, "$CKAN_TOKEN", ckansim.SysadminToken).Replace(v))
			}
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("api.md:%d: %v", ex.line, err)
		}
		got, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if *showAPI {
			fmt.Printf("---- api.md:%d %s %s -> %d %s\n%s\n", ex.line, ex.method, ex.path, res.StatusCode, res.Header.Get("Content-Type"), got)
		}
		if res.StatusCode != ex.status {
			t.Errorf("api.md:%d: %s %s: status %d, documented %d\n%s", ex.line, ex.method, ex.path, res.StatusCode, ex.status, got)
			continue
		}
		ct := res.Header.Get("Content-Type")
		if ex.ctype != "" && !strings.HasPrefix(ct, strings.Split(ex.ctype, ";")[0]) {
			t.Errorf("api.md:%d: Content-Type %q, documented %q", ex.line, ct, ex.ctype)
		}
		switch {
		case strings.HasPrefix(ct, "application/json"):
			var doc, act any
			if err := json.Unmarshal([]byte(ex.resBody), &doc); err != nil {
				t.Errorf("api.md:%d: the documented answer is not JSON: %v", ex.line, err)
				continue
			}
			must(t, json.Unmarshal(got, &act))
			if d := shapeDiff("", doc, act); d != "" {
				t.Errorf("api.md:%d: %s %s: the answer's shape differs from the documented one: %s\nanswer: %s", ex.line, ex.method, ex.path, d, got)
			}
		case strings.HasPrefix(ct, "text/event-stream"), strings.HasPrefix(ct, "text/plain"):
			first := strings.SplitN(ex.resBody, "\n", 2)[0]
			field, _, _ := strings.Cut(first, " ")
			if !strings.Contains(string(got), field) {
				t.Errorf("api.md:%d: the answer does not hold %q:\n%s", ex.line, field, got)
			}
		}
	}
}

// waitRunbookRests waits until the runbook (if any) waits, has stopped or
// has ended: the documented answers show it at rest.
func waitRunbookRests(t *testing.T, e *runbook.Engine) {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		rb, err := e.Current()
		if err != nil || rb.State != api.RunbookRunning {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("the runbook never came to rest")
}

// shapeDiff compares two decoded JSON values by shape: objects must have
// the same keys (values compared recursively, except free-form "details");
// arrays compare their first elements when both have one; other values
// only by kind (null matches anything).
func shapeDiff(path string, doc, act any) string {
	switch d := doc.(type) {
	case map[string]any:
		a, ok := act.(map[string]any)
		if !ok {
			return fmt.Sprintf("%s: documented an object, got %T", orRoot(path), act)
		}
		var dk, ak []string
		for k := range d {
			dk = append(dk, k)
		}
		for k := range a {
			ak = append(ak, k)
		}
		sort.Strings(dk)
		sort.Strings(ak)
		if !slices.Equal(dk, ak) {
			return fmt.Sprintf("%s: documented keys %v, got %v", orRoot(path), dk, ak)
		}
		for _, k := range dk {
			if k == "details" {
				continue
			}
			if s := shapeDiff(path+"."+k, d[k], a[k]); s != "" {
				return s
			}
		}
	case []any:
		a, ok := act.([]any)
		if !ok {
			if act == nil {
				return ""
			}
			return fmt.Sprintf("%s: documented an array, got %T", orRoot(path), act)
		}
		if len(d) > 0 && len(a) > 0 {
			return shapeDiff(path+"[0]", d[0], a[0])
		}
	case nil:
	default:
		if act != nil && fmt.Sprintf("%T", doc) != fmt.Sprintf("%T", act) {
			return fmt.Sprintf("%s: documented a %T, got %T", orRoot(path), doc, act)
		}
	}
	return ""
}

func orRoot(p string) string {
	if p == "" {
		return "(top)"
	}
	return p
}
