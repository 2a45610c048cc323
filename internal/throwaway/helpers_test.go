package throwaway

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// skipOrFail skips a test whose server is not installed here, or fails it
// when CI=true: CI installs them all.
func skipOrFail(t *testing.T, err error) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatal(err)
	}
	t.Skip(err)
}

// child returns a command running one test of this binary with childEnv set
// to mode, without CI from our environment.
func child(test, mode string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], "-test.run=^"+test+"$", "-test.v", "-test.count=1")
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "CI=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	// Without this a -race child sleeps a second before exiting.
	cmd.Env = append(cmd.Env, "GORACE="+strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0"), childEnv+"="+mode)
	return cmd
}

// killServerOwner runs child test, which starts a server, prints
// "SERVER pid=PID dir=DIR" and sleeps; then it kills the child with SIGKILL
// and returns the server's processes as they were before (PID and its
// children). The test's end removes DIR.
func killServerOwner(t *testing.T, test, mode string) []int {
	t.Helper()
	cmd := child(test, mode)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	defer cmd.Process.Kill()

	var pid int
	var dir string
	var output strings.Builder
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		output.WriteString(sc.Text() + "\n")
		if _, err := fmt.Sscanf(sc.Text(), "SERVER pid=%d dir=%s", &pid, &dir); err == nil {
			break
		}
	}
	if pid == 0 {
		cmd.Wait()
		t.Fatalf("child did not report a server:\n%s", output.String())
	}
	t.Cleanup(func() { os.RemoveAll(dir) }) // what a killed program may leave behind
	procs := append([]int{pid}, childrenOf(pid)...)
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	return procs
}

// checkDead checks that every process of procs dies within 10 s, and kills
// the survivors.
func checkDead(t *testing.T, procs []int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for _, p := range procs {
		for alive(p) && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		if alive(p) {
			t.Errorf("server process %d (of %d) survived the program that started it", p, procs[0])
			syscall.Kill(p, syscall.SIGKILL)
		}
	}
}

// childrenOf lists the processes whose parent is pid.
func childrenOf(pid int) []int {
	entries, _ := os.ReadDir("/proc")
	var kids []int
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		s := string(b)
		fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		if len(fields) > 1 && fields[1] == strconv.Itoa(pid) {
			kids = append(kids, p)
		}
	}
	return kids
}
