package main

// The CLI end to end, as scripts (testdata/script/*.txtar): the ckanops
// binary TestMain built, against a real gate process in front of a
// simulated CKAN, one of each per script.

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/ckanops/ckanops/internal/ckansim"
)

// TestScript runs testdata/script/*.txtar. Each script has, in its
// environment:
//
//	CKANOPS_CONFIG  a sites.toml naming one site, e2e, behind GATE
//	GATE            the gate's URL
//
// and these commands besides testscript's own:
//
//	ckanops ARGS...   run the binary (stdout and stderr for the
//	                  assertions that follow); '! ckanops' wants it to fail
//	exitcode N        the last ckanops exited with N
//	write CODE        a package_create through the gate is answered CODE
func TestScript(t *testing.T) {
	testscript.Run(t, testscript.Params{
		Dir:   "testdata/script",
		Setup: setupScriptGate,
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"ckanops":  scriptCkanops,
			"exitcode": scriptExitCode,
			"write":    scriptWrite,
		},
	})
}

// setupScriptGate starts a simulated CKAN and a gate process in front of
// it, with their files in the script's work directory.
func setupScriptGate(env *testscript.Env) error {
	sim, err := ckansim.New(ckansim.Options{})
	if err != nil {
		return err
	}
	up := httptest.NewServer(sim)
	env.Defer(up.Close)
	listen, err := freeAddr()
	if err != nil {
		return err
	}
	dir := env.WorkDir
	gateURL := "http://" + listen
	files := map[string]string{
		"ops.token":  e2eToken + "\n",
		"gate.toml":  fmt.Sprintf("site = \"e2e\"\nlisten = %q\nupstream = %q\n\n[state]\nfile = \"state/e2e.state.json\"\n\n[auth]\nops_token_file = \"ops.token\"\n\n[gate]\nshutdown_timeout = \"5s\"\n", listen, up.URL),
		"sites.toml": fmt.Sprintf("[[site]]\nname = \"e2e\"\nurl = %q\ntoken_file = \"ops.token\"\n", gateURL),
	}
	for name, text := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o600); err != nil {
			return err
		}
	}
	logs := &syncBuffer{}
	gate := exec.Command(binPath, "gate", "--config", filepath.Join(dir, "gate.toml"))
	gate.Stdout, gate.Stderr = logs, logs
	if err := gate.Start(); err != nil {
		return err
	}
	env.Defer(func() {
		gate.Process.Kill()
		gate.Wait()
	})
	if err := waitForGate(gateURL, 30*time.Second); err != nil {
		return fmt.Errorf("%w; its log:\n%s", err, logs)
	}
	env.Setenv("CKANOPS_CONFIG", filepath.Join(dir, "sites.toml"))
	env.Setenv("GATE", gateURL)
	return nil
}

func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

func waitForGate(url string, within time.Duration) error {
	for deadline := time.Now().Add(within); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		res, err := http.Get(url + "/-/ckanops/status")
		if err == nil {
			res.Body.Close()
			return nil
		}
	}
	return errors.New("the gate did not come up")
}

// scriptCkanops runs the ckanops binary in the script's directory and
// environment.
func scriptCkanops(ts *testscript.TestScript, neg bool, args []string) {
	cmd := exec.Command(binPath, args...)
	cmd.Dir = ts.MkAbs(".")
	cmd.Env = []string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + ts.Getenv("HOME"),
		"TMPDIR=" + ts.Getenv("TMPDIR"),
		"CKANOPS_CONFIG=" + ts.Getenv("CKANOPS_CONFIG"),
	}
	cmd.Stdout, cmd.Stderr = ts.Stdout(), ts.Stderr()
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		code = ee.ExitCode()
	case err != nil:
		ts.Fatalf("ckanops: %v", err)
	}
	ts.Setenv("EXITCODE", strconv.Itoa(code))
	if code != 0 && !neg {
		ts.Fatalf("ckanops %s: exit %d", strings.Join(args, " "), code)
	}
	if code == 0 && neg {
		ts.Fatalf("ckanops %s: exit 0, want a failure", strings.Join(args, " "))
	}
}

func scriptExitCode(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 1 || neg {
		ts.Fatalf("usage: exitcode N")
	}
	if got := ts.Getenv("EXITCODE"); got != args[0] {
		ts.Fatalf("the last ckanops exited with %s, want %s", got, args[0])
	}
}

// scriptWrites numbers the datasets scriptWrite creates (a name is taken
// once).
var scriptWrites atomic.Int64

// scriptWrite posts a package_create through the gate, as CKAN's
// sysadmin, and wants the answer CODE.
func scriptWrite(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 1 || neg {
		ts.Fatalf("usage: write CODE")
	}
	req, _ := http.NewRequest("POST", ts.Getenv("GATE")+"/api/3/action/package_create",
		strings.NewReader(fmt.Sprintf(`{"name": "script-write-%d", "owner_org": "demo-org"}`, scriptWrites.Add(1))))
	req.Header.Set("Authorization", ckansim.SysadminToken)
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	ts.Check(err)
	io.Copy(io.Discard, res.Body)
	res.Body.Close()
	if got := strconv.Itoa(res.StatusCode); got != args[0] {
		ts.Fatalf("package_create through the gate: %s, want %s", got, args[0])
	}
}
