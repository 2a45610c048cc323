package serve

import (
	"io"
	"sync"
	"unicode/utf8"
)

// lineReader gives a command the lines a person types on an SSH terminal.
// Under `ssh -t` the client's terminal is raw and the server only emulates
// a PTY (its output's \n becomes \r\n): nothing echoes what is typed,
// Enter sends CR, and nothing edits a line. lineReader does what a
// terminal's line discipline would: it echoes what is typed, ends a line
// at CR or LF (handing over the line and "\n"), and handles backspace,
// Ctrl-U (erase the line), Ctrl-C (interrupt: the command's context
// ends, as SIGINT ends a local one), Ctrl-D (end of input, on an empty
// line) and drops escape sequences (arrow keys) and other controls. As a
// terminal does, it reads what is typed as it comes, whether or not the
// command reads: Ctrl-C interrupts a command that is busy.
type lineReader struct {
	src       io.Reader
	echo      io.Writer
	interrupt func()

	mu    sync.Mutex
	cond  *sync.Cond
	line  []byte // the line being typed
	ready []byte // finished lines not yet read
	eof   bool   // Ctrl-D on an empty line, or the source ended
	err   error  // the source's error, once ready is drained
	esc   int    // 0; 1 after ESC; 2 inside a CSI sequence (ESC [)
	cr    bool   // the last byte was CR: an LF right after it ends no line
	buf   [256]byte
}

// newLineReader starts reading src; the reading ends with src.
func newLineReader(src io.Reader, echo io.Writer, interrupt func()) *lineReader {
	r := &lineReader{src: src, echo: echo, interrupt: interrupt}
	r.cond = sync.NewCond(&r.mu)
	go r.pump()
	return r
}

// pump reads what the client sends until its end.
func (r *lineReader) pump() {
	for {
		n, err := r.src.Read(r.buf[:])
		r.mu.Lock()
		r.feed(r.buf[:n])
		if err != nil {
			// What was typed without Enter is still the last line.
			if !r.eof {
				r.ready = append(r.ready, r.line...)
			}
			r.line = nil
			r.err = err
		}
		r.cond.Broadcast()
		r.mu.Unlock()
		if err != nil {
			return
		}
	}
}

// maxLine bounds a line being typed: what comes beyond is dropped.
const maxLine = 4096

func (r *lineReader) Read(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for len(r.ready) == 0 {
		switch {
		case r.eof:
			return 0, io.EOF
		case r.err != nil:
			return 0, r.err
		}
		r.cond.Wait()
	}
	n := copy(p, r.ready)
	r.ready = r.ready[n:]
	return n, nil
}

// feed takes what the client sent. Call with mu held.
func (r *lineReader) feed(b []byte) {
	var out []byte
	for _, c := range b {
		if r.eof && c != 0x03 {
			continue // after Ctrl-D only an interrupt counts
		}
		cr := r.cr
		r.cr = c == '\r'
		if c == '\n' && cr {
			continue
		}
		switch {
		case r.esc == 1:
			r.esc = 0
			if c == '[' || c == 'O' {
				r.esc = 2
			}
			continue
		case r.esc == 2:
			if c >= 0x40 && c <= 0x7e {
				r.esc = 0
			}
			continue
		}
		switch c {
		case 0x1b:
			r.esc = 1
		case '\r', '\n':
			out = append(out, '\n')
			r.ready = append(append(r.ready, r.line...), '\n')
			r.line = nil
		case 0x7f, 0x08: // backspace
			if len(r.line) > 0 {
				_, size := utf8.DecodeLastRune(r.line)
				r.line = r.line[:len(r.line)-size]
				out = append(out, "\b \b"...)
			}
		case 0x15: // Ctrl-U
			for len(r.line) > 0 {
				_, size := utf8.DecodeLastRune(r.line)
				r.line = r.line[:len(r.line)-size]
				out = append(out, "\b \b"...)
			}
		case 0x03: // Ctrl-C
			// The echo goes out before the interrupt: the command may
			// answer it and end the session before feed returns.
			out = append(out, "^C\n"...)
			r.line = nil
			r.flush(out)
			out = nil
			if r.interrupt != nil {
				r.interrupt()
			}
		case 0x04: // Ctrl-D
			if len(r.line) == 0 {
				r.eof = true
			}
		case '\t':
			if len(r.line) < maxLine {
				r.line = append(r.line, c)
				out = append(out, c)
			}
		default:
			if c < 0x20 || len(r.line) >= maxLine {
				continue
			}
			r.line = append(r.line, c)
			out = append(out, c)
		}
	}
	r.flush(out)
}

// flush echoes out. Call with mu held.
func (r *lineReader) flush(out []byte) {
	if len(out) > 0 && r.echo != nil {
		_, _ = r.echo.Write(out)
	}
}
