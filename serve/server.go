// Package serve is `ckanops serve`: the console and the CLI served over
// SSH, so that one host holds the sites' ops tokens and every engineer
// connects with a key of their own.
//
// It authenticates keys against two authorized_keys files (operators and
// viewers), runs one console or one command per session, ends idle and
// revoked sessions, and shuts down gently. What a session may do is the
// caller's business (Options.Console, Options.Command): this package knows
// who is connected, never what a site is.
package serve

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	tea "charm.land/bubbletea/v2"
	"charm.land/ssh"
	"charm.land/wish/v2"
	wishtea "charm.land/wish/v2/bubbletea"
	gossh "golang.org/x/crypto/ssh"
)

// Options configure a Server. Listen, HostKey, Operators, Console and
// Command are required.
type Options struct {
	Listen        string
	HostKey       string // made on first start (0600) when missing
	Operators     string // authorized_keys file of the people who may change sites
	Viewers       string // authorized_keys file of the people who may look; "" for none
	IdleTimeout   time.Duration
	MaxSessions   int
	ShutdownGrace time.Duration
	// KeysPoll is how often the keys files are checked for changes, so a
	// revoked key's open sessions end; zero means 2 s. The files are also
	// checked at every authentication.
	KeysPoll time.Duration
	Log      *slog.Logger

	// Console builds the console of a session with a terminal and no
	// command. notice, when the server must say something (shutdown,
	// idle), is turned into a message for the model by Notice. after, if
	// not nil, runs once the console has left the terminal (to print what
	// is still running, say).
	Console func(s *Session) (m tea.Model, after func(w io.Writer), err error)
	// Notice makes the model's message for a line the server must show.
	Notice func(text string) tea.Msg
	// Command runs a session's command line and returns its exit status.
	Command func(s *Session, args []string) int
}

// Session is one SSH session, as the console and the commands see it.
type Session struct {
	Who    Identity
	Remote string
	// PTY says the client asked for a terminal (ssh -t): a command's In
	// then gives the lines typed, echoed and edited as a terminal would,
	// and Ctrl-C ends its Context.
	PTY  bool
	Term string // the client's $TERM, with a terminal
	Env  []string
	In   io.Reader
	Out  io.Writer
	Err  io.Writer
	ctx  context.Context
}

// Context ends when the client leaves, the key is revoked, the session
// idles out or the server stops.
func (s *Session) Context() context.Context { return s.ctx }

// Exit statuses of sessions the server ends itself.
const (
	exitRefused = 1
	exitUsage   = 2
)

// Server is the SSH server.
type Server struct {
	opts    Options
	log     *slog.Logger
	keys    *Keyring
	ssh     *ssh.Server
	metrics *metrics

	ln      net.Listener
	conns   atomic.Int64
	maxConn int64

	mu       sync.Mutex
	sessions map[*live]struct{}
	stopping bool
	wg       sync.WaitGroup // sessions running
}

// live is a session being served.
type live struct {
	who     Identity
	remote  string
	kind    string // console or command
	started time.Time
	last    atomic.Int64 // unix nanos of the last input (console) or I/O (command)
	cancel  context.CancelFunc

	mu     sync.Mutex
	notify func(text string) // tells the person something now
	quit   func()            // ends a console; nil for commands
	reason string            // why the server ended it, said last
}

func (l *live) touch() { l.last.Store(time.Now().UnixNano()) }

// end ends the session, saying why.
func (l *live) end(reason string) {
	l.mu.Lock()
	if l.reason == "" {
		l.reason = reason
	}
	quit := l.quit
	l.mu.Unlock()
	if quit != nil {
		quit()
	}
	l.cancel()
}

func (l *live) say(text string) {
	l.mu.Lock()
	n := l.notify
	l.mu.Unlock()
	if n != nil {
		n(text)
	}
}

// New checks the options, reads the keys and the host key (making it
// when missing), and returns a server that is not listening yet.
func New(o Options) (*Server, error) {
	if o.Console == nil || o.Command == nil {
		return nil, errors.New("serve: Console and Command are required")
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.MaxSessions <= 0 {
		o.MaxSessions = 32
	}
	if o.IdleTimeout <= 0 {
		o.IdleTimeout = 30 * time.Minute
	}
	if o.ShutdownGrace < 0 {
		o.ShutdownGrace = 0
	}
	if o.KeysPoll <= 0 {
		o.KeysPoll = 2 * time.Second
	}
	s := &Server{opts: o, log: o.Log, sessions: map[*live]struct{}{}, metrics: newMetrics()}
	// Connections (authenticated or not) are bounded too: a few more than
	// the sessions, for people reconnecting while their old one closes.
	s.maxConn = int64(o.MaxSessions*2 + 8)
	keys, err := NewKeyring(o.Operators, o.Viewers, func(msg string, args ...any) { s.log.Warn(msg, args...) })
	if err != nil {
		return nil, err
	}
	s.keys = keys
	s.metrics.setKeys(keys.Counts())
	signer, created, err := LoadHostKey(o.HostKey)
	if err != nil {
		return nil, err
	}
	if created {
		s.log.Info("host key made", "path", o.HostKey, "fingerprint", gossh.FingerprintSHA256(signer.PublicKey()))
	}
	srv, err := wish.NewServer(
		wish.WithAddress(o.Listen),
		wish.WithVersion("ckanops"),
		func(srv *ssh.Server) error {
			srv.AddHostKey(signer)
			return nil
		},
		wish.WithPublicKeyAuth(s.authenticate),
		wish.WithMiddleware(func(ssh.Handler) ssh.Handler { return s.handle }),
	)
	if err != nil {
		return nil, fmt.Errorf("serve: %w", err)
	}
	srv.HandshakeTimeout = 30 * time.Second
	srv.ConnCallback = s.admitConn
	srv.ConnectionCloseCallback = func(net.Conn) { s.conns.Add(-1) }
	srv.ConnectionFailedCallback = s.connFailed
	// No port forwarding, agent forwarding or subsystems (sftp): the
	// server's only business is its console and its commands.
	srv.SubsystemHandlers = map[string]ssh.SubsystemHandler{}
	srv.RequestHandlers = map[string]ssh.RequestHandler{}
	s.ssh = srv
	return s, nil
}

// HostKeyFingerprint is what a client is shown on first connection.
func (s *Server) HostKeyFingerprint() string {
	if len(s.ssh.HostSigners) == 0 {
		return ""
	}
	return gossh.FingerprintSHA256(s.ssh.HostSigners[0].PublicKey())
}

// Listen opens the listening socket, so that the caller knows the
// address (Addr) before Serve.
func (s *Server) Listen() error {
	ln, err := net.Listen("tcp", s.opts.Listen)
	if err != nil {
		return fmt.Errorf("serve: listen on %s: %w", s.opts.Listen, err)
	}
	s.ln = ln
	return nil
}

// Addr is the listening address, once Listen has run.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// MetricsHandler serves the server's Prometheus metrics.
func (s *Server) MetricsHandler() http.Handler { return s.metrics.handler() }

// Serve serves until ctx ends, then shuts down: no new connections, every
// session told, given ShutdownGrace to finish, then closed.
func (s *Server) Serve(ctx context.Context) error {
	if s.ln == nil {
		if err := s.Listen(); err != nil {
			return err
		}
	}
	s.log.Info("serving the console over SSH", "listen", s.ln.Addr().String(),
		"host_key", gossh.FingerprintSHA256(s.ssh.HostSigners[0].PublicKey()),
		"operators", s.keys.Counts()[RoleOperator], "viewers", s.keys.Counts()[RoleViewer])
	served := make(chan error, 1)
	go func() { served <- s.ssh.Serve(s.ln) }()
	watchDone := make(chan struct{})
	go s.watch(ctx, watchDone)
	select {
	case err := <-served:
		close(watchDone)
		if errors.Is(err, ssh.ErrServerClosed) {
			return nil
		}
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	close(watchDone)
	s.shutdown()
	<-served
	return nil
}

// shutdown stops accepting, tells every session, waits up to the grace
// period for them to end, then ends the rest.
func (s *Server) shutdown() {
	s.mu.Lock()
	s.stopping = true
	open := make([]*live, 0, len(s.sessions))
	for l := range s.sessions {
		open = append(open, l)
	}
	s.mu.Unlock()
	_ = s.ln.Close()
	s.log.Info("shutting down", "sessions", len(open), "grace", s.opts.ShutdownGrace.String())
	msg := fmt.Sprintf("ckanops serve is shutting down: this session ends within %s. Runbooks go on at the gates; reconnect to follow them.", s.opts.ShutdownGrace)
	for _, l := range open {
		l.say(msg)
	}
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(s.opts.ShutdownGrace):
		for _, l := range open {
			l.end("ckanops serve shut down: this session has ended. Runbooks go on at the gates; reconnect to follow them.")
		}
		select {
		case <-done:
		case <-time.After(3 * time.Second):
			s.log.Warn("sessions still open after the grace period: closing their connections")
		}
	}
	_ = s.ssh.Close()
}

// watch re-reads the keys files, ending the sessions of revoked keys, and
// ends idle sessions.
func (s *Server) watch(ctx context.Context, done <-chan struct{}) {
	t := time.NewTicker(min(s.opts.KeysPoll, s.opts.IdleTimeout))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-done:
			return
		case <-t.C:
		}
		if s.keys.Reload() {
			s.metrics.setKeys(s.keys.Counts())
			s.log.Info("keys files re-read", "operators", s.keys.Counts()[RoleOperator], "viewers", s.keys.Counts()[RoleViewer])
			s.endRevoked()
		}
		s.endIdle()
	}
}

func (s *Server) openSessions() []*live {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*live, 0, len(s.sessions))
	for l := range s.sessions {
		out = append(out, l)
	}
	return out
}

// endRevoked ends the sessions whose key is gone or whose rights changed.
func (s *Server) endRevoked() {
	for _, l := range s.openSessions() {
		id, ok := s.keys.lookup(l.who.Fingerprint)
		switch {
		case !ok:
			s.log.Warn("ssh session ended: key revoked", "user", l.who.Name, "fingerprint", l.who.Fingerprint, "remote", l.remote)
			s.metrics.ended("revoked")
			l.end("ckanops serve: your key (" + l.who.Fingerprint + ") is no longer authorized: this session has ended.")
		case id.Role != l.who.Role || id.Name != l.who.Name:
			s.log.Warn("ssh session ended: key's rights changed", "user", l.who.Name, "fingerprint", l.who.Fingerprint,
				"was", string(l.who.Role), "now", string(id.Role), "remote", l.remote)
			s.metrics.ended("rights-changed")
			l.end("ckanops serve: your key's rights changed (now " + string(id.Role) + "): reconnect.")
		}
	}
}

func (s *Server) endIdle() {
	now := time.Now()
	for _, l := range s.openSessions() {
		idle := now.Sub(time.Unix(0, l.last.Load()))
		if idle < s.opts.IdleTimeout {
			continue
		}
		s.log.Info("ssh session ended: idle", "user", l.who.Name, "remote", l.remote, "idle", idle.Round(time.Second).String())
		s.metrics.ended("idle")
		l.end(fmt.Sprintf("ckanops serve: no input for %s: this session has ended. Runbooks go on at the gates; reconnect to follow them.", s.opts.IdleTimeout))
	}
}

// admitConn bounds the connections open at once.
func (s *Server) admitConn(_ ssh.Context, c net.Conn) net.Conn {
	if n := s.conns.Add(1); n > s.maxConn {
		s.conns.Add(-1)
		s.metrics.refused("connections")
		s.log.Warn("ssh connection refused: too many open", "remote", c.RemoteAddr().String(), "limit", s.maxConn)
		return nil
	}
	return c
}

// connFailed logs a connection that never authenticated: a stranger's key,
// a scanner, a client that gave up.
func (s *Server) connFailed(c net.Conn, err error) {
	if errors.Is(err, io.EOF) {
		return
	}
	var noAuth *gossh.ServerAuthError
	if errors.As(err, &noAuth) {
		s.metrics.refused("authentication")
		s.log.Warn("ssh connection refused: no authorized key", "remote", c.RemoteAddr().String())
		return
	}
	s.log.Debug("ssh handshake failed", "remote", c.RemoteAddr().String(), "err", err.Error())
}

// authenticate lets a key in when one of the keys files lists it.
func (s *Server) authenticate(ctx ssh.Context, key ssh.PublicKey) bool {
	if _, ok := s.keys.Lookup(key); !ok {
		s.log.Debug("ssh key not authorized", "remote", ctx.RemoteAddr().String(), "user", ctx.User(), "fingerprint", gossh.FingerprintSHA256(key))
		return false
	}
	return true
}

// handle serves one session: the console, or one command.
func (s *Server) handle(sess ssh.Session) {
	remote := sess.RemoteAddr().String()
	pub := sess.PublicKey()
	if pub == nil {
		_ = sess.Exit(exitRefused)
		return
	}
	// Who it is now: the key may have been revoked since it authenticated.
	who, ok := s.keys.lookup(gossh.FingerprintSHA256(pub))
	if !ok {
		fmt.Fprintln(sess.Stderr(), "ckanops serve: your key is no longer authorized.")
		_ = sess.Exit(exitRefused)
		return
	}
	if sess.Subsystem() != "" {
		fmt.Fprintf(sess.Stderr(), "ckanops serve: subsystem %q is not served.\n", sess.Subsystem())
		_ = sess.Exit(exitRefused)
		return
	}
	ctx, cancel := context.WithCancel(sess.Context())
	defer cancel()
	l := &live{who: who, remote: remote, started: time.Now(), cancel: cancel}
	l.touch()
	args := sess.Command()
	pty, winCh, hasPTY := sess.Pty()
	l.kind = "command"
	if len(args) == 0 || (len(args) == 1 && args[0] == "tui") {
		l.kind = "console"
	}
	if !s.register(l) {
		s.metrics.refused("sessions")
		s.log.Warn("ssh session refused: too many open", "user", who.Name, "remote", remote, "limit", s.opts.MaxSessions)
		fmt.Fprintf(sess.Stderr(), "ckanops serve: all %d sessions are in use (or the server is stopping): try again in a minute.\n", s.opts.MaxSessions)
		_ = sess.Exit(exitRefused)
		return
	}
	defer s.unregister(l)
	s.metrics.started(who.Role, l.kind)
	defer s.metrics.stopped(who.Role, l.kind)
	command := strings.Join(args, " ")
	s.log.Info("ssh session start", "user", who.Name, "role", string(who.Role), "fingerprint", who.Fingerprint,
		"remote", remote, "kind", l.kind, "command", command, "pty", hasPTY)

	env := sess.Environ()
	session := &Session{Who: who, Remote: remote, PTY: hasPTY, Env: env, ctx: ctx}
	if hasPTY {
		session.Term = pty.Term
	}
	var code int
	switch {
	case l.kind == "console" && !hasPTY:
		fmt.Fprintln(sess.Stderr(), "ckanops serve: the console needs a terminal: connect with 'ssh -t', or give a command (status, check, enable, disable, runbook, actions, help).")
		code = exitUsage
	case l.kind == "console":
		code = s.runConsole(ctx, sess, session, l, winCh)
	default:
		code = s.runCommand(sess, session, l, args)
	}
	l.mu.Lock()
	reason := l.reason
	l.mu.Unlock()
	if reason != "" {
		fmt.Fprintln(sess.Stderr(), reason)
		if code == 0 {
			code = exitRefused
		}
	}
	s.log.Info("ssh session end", "user", who.Name, "role", string(who.Role), "remote", remote, "kind", l.kind,
		"command", command, "exit", code, "duration", time.Since(l.started).Round(time.Millisecond).String())
	_ = sess.Exit(code)
}

func (s *Server) register(l *live) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopping || len(s.sessions) >= s.opts.MaxSessions {
		return false
	}
	s.sessions[l] = struct{}{}
	s.wg.Add(1)
	return true
}

func (s *Server) unregister(l *live) {
	s.mu.Lock()
	delete(s.sessions, l)
	s.mu.Unlock()
	s.wg.Done()
}

// runCommand runs one command line with the session's streams.
func (s *Server) runCommand(sess ssh.Session, session *Session, l *live, args []string) int {
	session.In = activityReader{sess, l}
	if session.PTY {
		// A terminal: the person types lines, and Ctrl-C interrupts the
		// command (its context), not the session's other work.
		ctx, cancel := context.WithCancel(session.ctx)
		defer cancel()
		session.ctx = ctx
		session.In = newLineReader(session.In, activityWriter{sess, l}, cancel)
	}
	session.Out = activityWriter{sess, l}
	session.Err = activityWriter{sess.Stderr(), l}
	l.mu.Lock()
	l.notify = func(text string) { fmt.Fprintln(sess.Stderr(), text) }
	l.mu.Unlock()
	return s.opts.Command(session, args)
}

// runConsole runs the console on the session's terminal until the person
// quits, leaves, idles out, or the server ends it.
func (s *Server) runConsole(ctx context.Context, sess ssh.Session, session *Session, l *live, winCh <-chan ssh.Window) int {
	in := inputReader{sess, l}
	session.In, session.Out, session.Err = in, sess, sess.Stderr()
	m, after, err := s.opts.Console(session)
	if err != nil {
		fmt.Fprintf(sess.Stderr(), "ckanops serve: the console cannot start: %v\n", err)
		return exitRefused
	}
	opts := append(wishtea.MakeOptions(sess), tea.WithInput(in), tea.WithContext(ctx))
	p := tea.NewProgram(m, opts...)
	l.mu.Lock()
	l.quit = p.Quit
	l.notify = func(text string) {
		if s.opts.Notice != nil {
			p.Send(s.opts.Notice(text))
		}
	}
	l.mu.Unlock()
	resized := make(chan struct{})
	go func() {
		defer close(resized)
		for {
			select {
			case <-ctx.Done():
				return
			case w, ok := <-winCh:
				if !ok {
					return
				}
				p.Send(tea.WindowSizeMsg{Width: w.Width, Height: w.Height})
			}
		}
	}()
	_, err = p.Run()
	l.mu.Lock()
	l.quit, l.notify = nil, nil
	l.mu.Unlock()
	l.cancel()
	<-resized
	if after != nil {
		after(sess.Stderr())
	}
	if err != nil && !errors.Is(err, tea.ErrProgramKilled) && !errors.Is(err, tea.ErrInterrupted) {
		s.log.Warn("console ended with an error", "user", session.Who.Name, "err", err.Error())
		return exitRefused
	}
	return 0
}

// inputReader notes each read of the person's keys, for the idle timeout.
type inputReader struct {
	r io.Reader
	l *live
}

func (r inputReader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	if n > 0 {
		r.l.touch()
	}
	return n, err
}

// activityReader and activityWriter note any I/O of a command session: a
// command that prints is not idle.
type activityReader = inputReader

type activityWriter struct {
	w io.Writer
	l *live
}

func (w activityWriter) Write(p []byte) (int, error) {
	w.l.touch()
	return w.w.Write(p)
}
