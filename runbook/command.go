package runbook

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/ckanops/ckanops/api"
	"github.com/ckanops/ckanops/config"
)

// Tail limits: what evidence keeps of a command's output.
const (
	tailLines = 40
	tailBytes = 8 << 10
	maxLine   = 4 << 10 // longer lines are cut in the stream
)

// commandResult is what a finished command left as evidence.
type commandResult struct {
	ExitCode int // -1: did not start or was killed by a signal
	Duration time.Duration
	Tail     string
	TimedOut bool
}

// runCommand runs c without a shell, in its own process group, streaming
// each output line (stdout and stderr merged) to out. started, if not
// nil, is called with the group's id once the command runs. It kills the
// whole group when ctx ends or c.Timeout passes. The error says what went
// wrong in words an operator can act on.
func runCommand(ctx context.Context, c config.Command, env []string, out func(string), started func(pgid int)) (commandResult, error) {
	res := commandResult{ExitCode: -1}
	if len(c.Argv) == 0 {
		return res, errors.New("no argv")
	}
	ctx2, cancel := context.WithCancel(ctx)
	defer cancel()
	if c.Timeout.Duration > 0 {
		var cancelT context.CancelFunc
		ctx2, cancelT = context.WithTimeout(ctx2, c.Timeout.Duration)
		defer cancelT()
	}
	cmd := exec.CommandContext(ctx2, c.Argv[0], c.Argv[1:]...)
	cmd.Dir = c.Dir
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error {
		// The whole group: a script's children must not outlive it.
		return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	cmd.WaitDelay = 2 * time.Second // a grandchild holding the pipe open does not hang us
	lw := &lineWriter{emit: out}
	cmd.Stdout, cmd.Stderr = lw, lw
	cmd.Stdin = nil

	start := time.Now()
	err := cmd.Start()
	if err == nil {
		if started != nil {
			started(cmd.Process.Pid) // the group's leader: Setpgid
		}
		err = cmd.Wait()
	}
	lw.flush()
	res.Duration = time.Since(start)
	res.Tail = lw.tail()
	if cmd.ProcessState != nil {
		res.ExitCode = cmd.ProcessState.ExitCode()
	}
	var ee *exec.Error
	switch {
	case errors.As(err, &ee):
		return res, fmt.Errorf("%s cannot be run: %v", c.Argv[0], ee.Err)
	case ctx.Err() != nil:
		return res, fmt.Errorf("stopped after %s: %v", res.Duration.Round(time.Millisecond), context.Cause(ctx))
	case ctx2.Err() == context.DeadlineExceeded:
		res.TimedOut = true
		return res, fmt.Errorf("killed after its timeout of %s", c.Timeout.Duration)
	case err != nil && res.ExitCode > 0:
		return res, fmt.Errorf("exited with status %d", res.ExitCode)
	case err != nil:
		return res, err
	}
	return res, nil
}

// lineWriter splits output into lines for the stream and keeps a tail.
type lineWriter struct {
	emit func(string)

	mu    sync.Mutex
	part  []byte
	lines []string
	size  int
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			w.part = append(w.part, p...)
			if len(w.part) > maxLine {
				w.line(string(w.part[:maxLine]) + " …")
				w.part = w.part[:0]
			}
			break
		}
		w.part = append(w.part, p[:i]...)
		w.line(string(w.part))
		w.part = w.part[:0]
		p = p[i+1:]
	}
	return n, nil
}

func (w *lineWriter) flush() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.part) > 0 {
		w.line(string(w.part))
		w.part = nil
	}
}

func (w *lineWriter) line(s string) {
	s = strings.TrimRight(s, "\r")
	if len(s) > maxLine {
		s = s[:maxLine] + " …"
	}
	if w.emit != nil {
		w.emit(s)
	}
	w.lines = append(w.lines, s)
	w.size += len(s) + 1
	for len(w.lines) > tailLines || (w.size > tailBytes && len(w.lines) > 1) {
		w.size -= len(w.lines[0]) + 1
		w.lines = w.lines[1:]
	}
}

func (w *lineWriter) tail() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return strings.Join(w.lines, "\n")
}

// Details of a command's "running" evidence: its process group and the
// gate (Options.Holder) that started it.
const (
	detailPGID = "pgid"
	detailGate = "gate"
)

// commandLeftLocked looks at the current step's last command: one that
// started ("running" evidence with its process group) and has no result
// was cut off by its gate stopping without seeing it end (killed, or a
// crash, or a host that lost power); a takeover from another gate as well.
// Its process group may still run, and running the step again would run
// the command twice at once: two schema migrations, say.
//
// Started by this gate (the same Holder, so the same host), the group is
// looked for: still there, retry and resume are refused with how to end
// it; gone, they go on. Started by another gate, it cannot be seen from
// here: resume is refused with how to check on that gate's host, and retry
// (the operator's word that it does not run) goes on with note, which the
// step's evidence keeps. Call with mu held.
func (e *Engine) commandLeftLocked(retry bool) (note string, err error) {
	st := e.rb.StepByName(e.rb.Step)
	if st == nil || st.State != api.StepInterrupted {
		return "", nil
	}
	var last *api.Evidence
	for i := range st.Evidence {
		ev := &st.Evidence[i]
		switch {
		case ev.Kind == api.EvidenceRun:
			last = nil // the command before it ended
		case ev.Kind == api.EvidenceNote && ev.Details[detailPGID] != nil:
			last = ev
		}
	}
	if last == nil {
		return "", nil
	}
	pgid, _ := detailInt(last.Details[detailPGID])
	gate, _ := last.Details[detailGate].(string)
	if pgid <= 1 {
		return "", nil
	}
	name := strings.TrimPrefix(last.Summary, "running ")
	site := e.o.Site.Name()
	if gate == e.o.Holder {
		if err := syscall.Kill(-pgid, 0); err != nil && !errors.Is(err, syscall.EPERM) {
			return "", nil // gone
		}
		return "", fmt.Errorf("step %s: its command %s (process group %d), started by this gate before it stopped, is still running: running the step again now would run it twice at once. Let it end, or stop it (check with: ps -o pid,args -g %d; then: kill -TERM -- -%d), then: ckanops runbook %s --resume",
			st.Name, name, pgid, pgid, pgid, site)
	}
	if gate == "" {
		gate = "(not recorded)"
	}
	where := fmt.Sprintf("step %s: its command %s was started by gate %s (process group %d), which stopped without seeing it end", st.Name, name, gate, pgid)
	if retry {
		return where + "; it may still have been running there", nil
	}
	return "", fmt.Errorf("%s: it may still be running on that gate's host, and running the step again now would run it twice at once. Check there (ps -o pid,args -g %d; stop it with: kill -TERM -- -%d); once it is not running: ckanops runbook %s --retry",
		where, pgid, pgid, site)
}

// detailInt reads a number of evidence details: an int as recorded, a
// float64 once read back from JSON.
func detailInt(v any) (int, bool) {
	switch n := v.(type) {
	case int:
		return n, true
	case int64:
		return int(n), true
	case float64:
		return int(n), true
	}
	return 0, false
}
