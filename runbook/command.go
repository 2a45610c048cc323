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
// each output line (stdout and stderr merged) to out. It kills the whole
// group when ctx ends or c.Timeout passes. The error says what went wrong
// in words an operator can act on.
func runCommand(ctx context.Context, c config.Command, env []string, out func(string)) (commandResult, error) {
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
	err := cmd.Run()
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
