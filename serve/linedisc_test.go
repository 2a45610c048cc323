package serve

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	gossh "golang.org/x/crypto/ssh"
)

// chunks is a source that hands over one chunk per Read, then io.EOF.
type chunks struct{ c []string }

func (s *chunks) Read(p []byte) (int, error) {
	if len(s.c) == 0 {
		return 0, io.EOF
	}
	n := copy(p, s.c[0])
	s.c = s.c[1:]
	return n, nil
}

func TestLineReader(t *testing.T) {
	for _, tc := range []struct {
		name        string
		typed       []string
		lines, echo string
		interrupts  int
	}{
		{name: "enter is CR", typed: []string{"prod\r"}, lines: "prod\n", echo: "prod\n"},
		{name: "CRLF and LF end one line each", typed: []string{"y\r\n", "n\n"}, lines: "y\nn\n", echo: "y\nn\n"},
		{name: "backspace, also over a multi-byte rune", typed: []string{"prx\x7fod", "é\x7f\r"}, lines: "prod\n", echo: "prx\b \bodé\b \b\n"},
		{name: "backspace on an empty line", typed: []string{"\x7f\x08y\r"}, lines: "y\n", echo: "y\n"},
		{name: "Ctrl-U erases the line", typed: []string{"wrong\x15", "right\r"}, lines: "right\n", echo: "wrong\b \b\b \b\b \b\b \b\b \bright\n"},
		{name: "arrow keys and other controls are dropped", typed: []string{"a\x1b[A\x1b[1;5Cb\x1bOc\x07\r"}, lines: "ab\n", echo: "ab\n"},
		{name: "Ctrl-C interrupts", typed: []string{"half\x03"}, lines: "", echo: "half^C\n", interrupts: 1},
		{name: "Ctrl-D on an empty line ends the input", typed: []string{"a\r\x04", "more\r"}, lines: "a\n", echo: "a\n"},
		{name: "what was typed without Enter is the last line", typed: []string{"last"}, lines: "last", echo: "last"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var echo bytes.Buffer
			n := 0
			r := newLineReader(&chunks{c: tc.typed}, &echo, func() { n++ })
			got, err := io.ReadAll(r)
			if err != nil || string(got) != tc.lines || echo.String() != tc.echo || n != tc.interrupts {
				t.Errorf("read %q (%v), echoed %q, %d interrupt(s); want %q, %q, %d", got, err, echo.String(), n, tc.lines, tc.echo, tc.interrupts)
			}
		})
	}
	// A source's error other than EOF comes out after the lines.
	boom := errors.New("boom")
	r := newLineReader(io.MultiReader(strings.NewReader("x\r"), iotestErr{boom}), io.Discard, nil)
	if got, err := io.ReadAll(r); string(got) != "x\n" || !errors.Is(err, boom) {
		t.Errorf("read %q, %v", got, err)
	}
}

type iotestErr struct{ err error }

func (e iotestErr) Read([]byte) (int, error) { return 0, e.err }

// A command on a terminal (ssh -t) reads the lines typed, with echo, and
// Ctrl-C ends its context rather than the server's work; without a
// terminal, input is passed through untouched.
func TestCommandOnATerminalReadsLines(t *testing.T) {
	alice := newPerson(t, "alice")
	h := startServer(t, []person{alice}, nil, func(o *Options) {
		cmd := o.Command
		o.Command = func(s *Session, args []string) int {
			if args[0] != "ask" {
				return cmd(s, args)
			}
			buf := make([]byte, 64)
			n, _ := s.In.Read(buf)
			io.WriteString(s.Out, "got "+strings.TrimSpace(string(buf[:n]))+"\n")
			select {
			case <-s.Context().Done():
				io.WriteString(s.Out, "interrupted\n")
				return 130
			case <-time.After(10 * time.Second):
				return 0
			}
		}
	})
	sess, out, in := h.ptySession(alice, "xterm", 24, 80)
	if err := sess.Start("ask"); err != nil {
		t.Fatal(err)
	}
	io.WriteString(in, "prx\x7fod\r")
	waitFor(t, "the line read", func() bool { return strings.Contains(out.String(), "got prod") })
	io.WriteString(in, "\x03")
	err := sess.Wait()
	var exit *gossh.ExitError
	if !errors.As(err, &exit) || exit.ExitStatus() != 130 {
		t.Fatalf("exit: %v", err)
	}
	// The echo, then the answer; \n goes out as \r\n on a terminal.
	if want := "prx\b \bod\r\ngot prod\r\n^C\r\ninterrupted\r\n"; out.String() != want {
		t.Errorf("the terminal shows %q, want %q", out.String(), want)
	}
	// Without a terminal: the bytes as sent.
	if got, _, code := h.runIn(alice, "echo", "a\x7fb\r"); code != 0 || got != "read \"a\\x7fb\\r\"\n" {
		t.Errorf("echo without a terminal: %d %q", code, got)
	}
}

// runIn runs a command line as p, without a terminal, with stdin.
func (h *harness) runIn(p person, cmd, stdin string) (string, string, int) {
	h.t.Helper()
	c, err := h.dial(p)
	if err != nil {
		h.t.Fatalf("dial as %s: %v", p.name, err)
	}
	defer c.Close()
	sess, err := c.NewSession()
	if err != nil {
		h.t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	sess.Stdout, sess.Stderr = &out, &errOut
	sess.Stdin = strings.NewReader(stdin)
	err = sess.Run(cmd)
	code := 0
	var exit *gossh.ExitError
	switch {
	case errors.As(err, &exit):
		code = exit.ExitStatus()
	case err != nil:
		h.t.Fatalf("run %q: %v", cmd, err)
	}
	return out.String(), errOut.String(), code
}
