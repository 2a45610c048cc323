package throwaway

// This file holds what the Postgres and Redis servers share, and nothing
// server specific: StartProcess runs a server in its own process group with
// SIGKILL as its parent-death signal, its output appended to a log file;
// Process.WaitReady polls it until it answers; Process.Stop sends it a
// signal and falls back to SIGKILL of its whole group. StartOnFreePort and
// RetryPortTaken choose and keep its TCP port of 127.0.0.1.
//
// The parent-death signal is sent when the OS thread that started the child
// exits, which in Go happens only when the whole program dies (or when a
// goroutine that called runtime.LockOSThread ends without unlocking).

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"syscall"
	"time"
)

const (
	startTries = 5        // ports tried when another process takes ours
	logTail    = 16 << 10 // bytes of a server log that Log keeps
)

// Process is one run of a server started by StartProcess.
type Process struct {
	cmd      *exec.Cmd
	logPath  string
	logStart int64         // size of the log when the process started
	exited   chan struct{} // closed once cmd.Wait returns
	err      error         // cmd.Wait's result, valid after exited is closed
}

// StartProcess starts cmd with its stdout and stderr appended to the file
// logPath (created if need be). It sets Setpgid and Pdeathsig (SIGKILL) in
// cmd.SysProcAttr, keeping its other fields such as Credential, so the
// process leads its own group and dies with its parent. Stdout, Stderr and
// SysProcAttr must not be otherwise in use.
func StartProcess(cmd *exec.Cmd, logPath string) (*Process, error) {
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer logFile.Close() // the child has its own copy
	logStart, err := logFile.Seek(0, io.SeekEnd)
	if err != nil {
		return nil, err
	}
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid = true
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &Process{cmd: cmd, logPath: logPath, logStart: logStart, exited: make(chan struct{})}
	go func() { p.err = cmd.Wait(); close(p.exited) }()
	return p, nil
}

// Pid returns the process id, which is also its process group id.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// exitErr describes the exit of the process; exited is closed.
func (p *Process) exitErr() error {
	if p.err == nil {
		return errors.New("server exited")
	}
	return fmt.Errorf("server exited: %w", p.err)
}

// WaitReady calls ready every interval until it returns nil, the process
// exits, or timeout passes. ready bounds its own duration.
func (p *Process) WaitReady(timeout, interval time.Duration, ready func() error) error {
	deadline := time.Now().Add(timeout)
	var lastErr error
	for time.Now().Before(deadline) {
		select {
		case <-p.exited:
			return p.exitErr()
		default:
		}
		if lastErr = ready(); lastErr == nil {
			return nil
		}
		select {
		case <-p.exited:
			return p.exitErr()
		case <-time.After(interval):
		}
	}
	return fmt.Errorf("server not ready after %v: %v", timeout, lastErr)
}

// Stop sends sig to the process and waits up to timeout for it to exit;
// then, or at once when sig is SIGKILL, it kills the whole process group
// and waits up to timeout again. It returns an error when the process had
// to be killed although sig was not SIGKILL, or survived. Stopping an
// exited process does nothing.
func (p *Process) Stop(sig syscall.Signal, timeout time.Duration) error {
	select {
	case <-p.exited:
		return nil // reaped: its pid, and group id, may belong to another now
	default:
	}
	if sig != syscall.SIGKILL {
		_ = p.cmd.Process.Signal(sig)
		select {
		case <-p.exited:
			return nil
		case <-time.After(timeout):
		}
	}
	_ = syscall.Kill(-p.Pid(), syscall.SIGKILL)
	select {
	case <-p.exited:
		if sig != syscall.SIGKILL {
			return fmt.Errorf("server ignored %v for %v, killed it", sig, timeout)
		}
		return nil
	case <-time.After(timeout):
		return fmt.Errorf("server pid %d survived SIGKILL", p.Pid())
	}
}

// Log returns what the process wrote to its log file, trimmed of
// surrounding white space.
func (p *Process) Log() string { return ReadLog(p.logPath, p.logStart) }

// ReadLog returns the file at path from byte offset off, or its last -off
// bytes when off is negative, trimmed of surrounding white space; all of it
// when shorter than off (truncated since), "" when it cannot be read.
func ReadLog(path string, off int64) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	switch {
	case off < 0 && int64(len(b)) > -off:
		b = b[int64(len(b))+off:]
	case off >= 0 && off <= int64(len(b)):
		b = b[off:]
	}
	return string(bytes.TrimSpace(b))
}

// ErrPortTaken is what a start function returns, wrapped, when its server
// could not bind its port.
var ErrPortTaken = errors.New("port already in use")

// StartOnFreePort calls start with a TCP port of 127.0.0.1 that was free a
// moment ago and, while start fails with ErrPortTaken (another process took
// the port in between), with another one, at most tries times in all. It
// returns start's last error.
func StartOnFreePort(tries int, start func(port int) error) error {
	err := errors.New("no port tried")
	for range tries {
		var port int
		if port, err = freePort(); err != nil {
			return err
		}
		if err = start(port); !errors.Is(err, ErrPortTaken) {
			return err
		}
	}
	return err
}

// RetryPortTaken calls start again every 100 ms while it fails with
// ErrPortTaken, for at most timeout, and returns its last error. It serves
// restarts on the same port, which was the server's a moment ago: better
// wait a little for whoever holds it than move the server.
func RetryPortTaken(timeout time.Duration, start func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := start()
		if !errors.Is(err, ErrPortTaken) || time.Now().After(deadline) {
			return err
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// freePort returns a TCP port of 127.0.0.1 that was free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("pick a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
