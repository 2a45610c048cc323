package main

// End-to-end through a real terminal: `ckanops demo` in tmux, driven by
// keystrokes as an operator would, checked from outside through the gate's
// status endpoint and what reached the simulated CKAN.

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ckanops/ckanops/api"

	"github.com/ckanops/ckanops/ckanclient"
	"github.com/ckanops/ckanops/internal/demo"
)

// tmux drives one session on a private tmux server (-L), so a
// developer's own sessions are never touched.
type tmux struct {
	t       *testing.T
	sock    string
	session string
}

func (x tmux) run(args ...string) string {
	x.t.Helper()
	out, err := exec.Command("tmux", append([]string{"-L", x.sock}, args...)...).CombinedOutput()
	if err != nil {
		x.t.Fatalf("tmux %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func (x tmux) screen() string { return x.run("capture-pane", "-p", "-t", x.session) }

// keys sends tmux key names (Enter, Tab, BSpace) or, with literal, text.
func (x tmux) keys(literal bool, keys ...string) {
	x.t.Helper()
	args := []string{"send-keys", "-t", x.session}
	if literal {
		args = append(args, "-l")
	}
	x.run(append(args, keys...)...)
}

// waitScreen waits until the screen holds want.
func (x tmux) waitScreen(want string) {
	x.t.Helper()
	x.waitFor(fmt.Sprintf("%q", want), func(s string) bool { return strings.Contains(s, want) })
}

// waitCursorOn waits until the dashboard's cursor (a row starting with
// ">") is on the row of site, whatever columns stand between them.
func (x tmux) waitCursorOn(site string) {
	x.t.Helper()
	x.waitFor("the cursor on "+site, func(s string) bool {
		for _, line := range strings.Split(s, "\n") {
			if rest, ok := strings.CutPrefix(strings.TrimSpace(line), ">"); ok && slices.Contains(strings.Fields(rest), site) {
				return true
			}
		}
		return false
	})
}

func (x tmux) waitFor(what string, ok func(screen string) bool) {
	x.t.Helper()
	deadline := time.Now().Add(60 * time.Second) // the demo starts a Postgres and a Redis first
	for {
		s := x.screen()
		if ok(s) {
			return
		}
		if time.Now().After(deadline) {
			x.t.Fatalf("the screen never showed %s; it shows:\n%s", what, s)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// requireTmux skips a test without tmux, and fails it in CI.
func requireTmux(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("tmux"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("tmux not found: apt-get install tmux")
		}
		t.Skip("tmux not found: apt-get install tmux")
	}
}

func demoSites(t *testing.T, infoURL string) []demo.SiteInfo {
	t.Helper()
	res, err := http.Get(infoURL + "/sites")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var out []demo.SiteInfo
	if err := json.NewDecoder(res.Body).Decode(&out); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestDemoInTmuxEnableByKeystrokes(t *testing.T) {
	requireTmux(t)
	dir := t.TempDir()
	infoFile := filepath.Join(dir, "info.json")
	name := fmt.Sprintf("ckanops-e2e-%d", os.Getpid())
	xs := tmux{t: t, sock: name, session: name}
	xs.run("new-session", "-d", "-s", name, "-x", "120", "-y", "36",
		fmt.Sprintf("%s demo --info %s 2>%s", binPath, infoFile, filepath.Join(dir, "demo.err")))
	t.Cleanup(func() { exec.Command("tmux", "-L", name, "kill-server").Run() })

	xs.waitScreen("ckanops console · 3 sites")
	var info struct {
		InfoURL string `json:"info_url"`
	}
	b, err := os.ReadFile(infoFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &info); err != nil {
		t.Fatal(err)
	}
	sites := demoSites(t, info.InfoURL)
	target := sites[0] // data-city: the first row, where the cursor starts
	xs.waitCursorOn(target.Name)
	gate, _ := ckanclient.New(target.GateURL, ckanclient.Options{Retries: -1})

	// e, keep read-only, a message, a duration, a wrong name, then the right one.
	xs.keys(false, "e")
	xs.waitScreen("Enable maintenance on " + target.Name)
	xs.keys(false, "Tab")
	xs.keys(true, "tmux e2e")
	xs.keys(false, "Tab")
	xs.keys(true, "30m")
	xs.keys(false, "Tab")
	xs.keys(true, "data-ctiy")
	xs.keys(false, "Enter")
	xs.waitScreen("type " + target.Name + " exactly to confirm")
	if st, err := gate.Status(t.Context()); err != nil || st.Mode != api.ModeLive {
		t.Fatalf("a wrongly typed name changed the mode: %+v, %v", st, err)
	}
	for range len("data-ctiy") {
		xs.keys(false, "BSpace")
	}
	xs.keys(true, target.Name)
	xs.keys(false, "Enter")

	// The gate says read-only, with our message.
	deadline := time.Now().Add(30 * time.Second)
	var st *api.Status
	for {
		st, err = gate.Status(t.Context())
		if err == nil && st.Mode == api.ModeReadOnly && st.Phase == api.PhaseQuiesced {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the gate never went read-only and quiesced: %+v, %v\nscreen:\n%s", st, err, xs.screen())
		}
		time.Sleep(100 * time.Millisecond)
	}
	if st.Message != "tmux e2e" || st.Until == nil {
		t.Errorf("status %+v", st)
	}
	xs.waitScreen("READ-ONLY")

	// Writes stopped: while the demo's traffic goes on (reads keep reaching
	// CKAN), no write does.
	before := siteByName(demoSites(t, info.InfoURL), target.Name)
	for {
		now := siteByName(demoSites(t, info.InfoURL), target.Name)
		if now.Writes != before.Writes {
			t.Fatalf("a write reached CKAN in read-only mode: %d -> %d", before.Writes, now.Writes)
		}
		if now.Requests >= before.Requests+25 {
			break // ~25 requests of traffic, of which writes are one in seven
		}
		if time.Now().After(deadline.Add(60 * time.Second)) {
			t.Fatalf("the demo's traffic stopped: %+v", now)
		}
		time.Sleep(200 * time.Millisecond)
	}
	// q quits the console, which stops the demo and removes its files.
	xs.keys(false, "q")
	for exec.Command("tmux", "-L", xs.sock, "has-session", "-t", xs.session).Run() == nil {
		if time.Now().After(deadline.Add(90 * time.Second)) {
			t.Fatalf("the demo did not end on q:\n%s", xs.screen())
		}
		time.Sleep(100 * time.Millisecond)
	}
	var demoDir struct{ Dir string }
	json.Unmarshal(b, &demoDir)
	if _, err := os.Stat(demoDir.Dir); !os.IsNotExist(err) {
		t.Errorf("the demo left %s behind (%v)", demoDir.Dir, err)
	}
}

func siteByName(s []demo.SiteInfo, name string) demo.SiteInfo {
	for _, x := range s {
		if x.Name == name {
			return x
		}
	}
	return demo.SiteInfo{}
}

// A runbook waiting for an operator shows on the dashboard, with the
// "needs you" mark, and still does in a narrow terminal, where the keys
// keep working.
func TestDemoInTmuxShowsAWaitingRunbook(t *testing.T) {
	requireTmux(t)
	dir := t.TempDir()
	infoFile := filepath.Join(dir, "info.json")
	name := fmt.Sprintf("ckanops-e2e-wait-%d", os.Getpid())
	xs := tmux{t: t, sock: name, session: name}
	xs.run("new-session", "-d", "-s", name, "-x", "140", "-y", "36",
		fmt.Sprintf("%s demo --quiet --info %s 2>%s", binPath, infoFile, filepath.Join(dir, "demo.err")))
	t.Cleanup(func() { exec.Command("tmux", "-L", name, "kill-server").Run() })
	xs.waitScreen("ckanops console · 3 sites")
	var info struct {
		InfoURL string `json:"info_url"`
		Token   string `json:"token"`
	}
	b, err := os.ReadFile(infoFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &info); err != nil {
		t.Fatal(err)
	}
	target := demoSites(t, info.InfoURL)[1]
	gate, err := ckanclient.New(target.GateURL, ckanclient.Options{Retries: -1, Token: info.Token, TokenStyle: ckanclient.AuthBearer})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := gate.StartRunbook(t.Context(), api.RunbookOptions{Message: "tmux e2e"}); err != nil {
		t.Fatal(err)
	}
	// The row says the runbook waits for you, and the title counts it.
	xs.waitFor("the waiting runbook on the dashboard", func(s string) bool {
		for _, line := range strings.Split(s, "\n") {
			if strings.Contains(line, target.Name) && strings.Contains(line, "WAITING FOR YOU") && strings.Contains(line, "!") {
				return true
			}
		}
		return false
	})
	xs.waitScreen("1 need you")
	// Narrow: the site and its waiting runbook are still there, and keys work.
	xs.run("resize-window", "-t", name, "-x", "50", "-y", "15")
	xs.waitFor("the compact list", func(s string) bool {
		return strings.Contains(s, target.Name) && strings.Contains(s, "WAIT") && !strings.Contains(s, "too small")
	})
	xs.keys(false, "?")
	xs.waitScreen("quit")
}
