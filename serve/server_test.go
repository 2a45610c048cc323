package serve

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	tea "charm.land/bubbletea/v2"
	gossh "golang.org/x/crypto/ssh"
)

// person is a test key and its authorized_keys line.
type person struct {
	name   string
	signer gossh.Signer
}

func newPerson(t *testing.T, name string) person {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := gossh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return person{name: name, signer: s}
}

func (p person) line() string {
	return strings.TrimSpace(string(gossh.MarshalAuthorizedKey(p.signer.PublicKey()))) + " " + p.name + "\n"
}

func (p person) fingerprint() string { return gossh.FingerprintSHA256(p.signer.PublicKey()) }

func writeKeys(t *testing.T, path string, people ...person) {
	t.Helper()
	var b strings.Builder
	for _, p := range people {
		b.WriteString(p.line())
	}
	// A new file renamed into place, as an editor or ansible does: the
	// inode changes even when size and mtime would not.
	tmp := path + ".new"
	if err := os.WriteFile(tmp, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// testModel is a console stand-in: it shows who it serves, the window size
// and any notice, and quits on q.
type testModel struct {
	who    string
	w, h   int
	notice string
}

type noticeMsg string

func (m *testModel) Init() tea.Cmd { return nil }
func (m *testModel) Update(msg tea.Msg) (tea.Model, tea.Cmd) {
	switch msg := msg.(type) {
	case tea.WindowSizeMsg:
		m.w, m.h = msg.Width, msg.Height
	case noticeMsg:
		m.notice = string(msg)
	case tea.KeyPressMsg:
		if msg.String() == "q" {
			return m, tea.Quit
		}
	}
	return m, nil
}
func (m *testModel) View() tea.View {
	return tea.NewView(fmt.Sprintf("console for %s size %dx%d notice[%s]", m.who, m.w, m.h, m.notice))
}

type harness struct {
	t         *testing.T
	dir       string
	operators string
	viewers   string
	srv       *Server
	addr      string
	cancel    context.CancelFunc
	done      chan struct{} // closed when Serve returned, with its error in err
	err       error
	logs      *syncBuf
	hostKey   gossh.PublicKey
}

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func startServer(t *testing.T, ops, viewers []person, tweak func(*Options)) *harness {
	t.Helper()
	dir := t.TempDir()
	h := &harness{t: t, dir: dir, operators: filepath.Join(dir, "operators.keys"), viewers: filepath.Join(dir, "viewers.keys"), logs: &syncBuf{}}
	writeKeys(t, h.operators, ops...)
	writeKeys(t, h.viewers, viewers...)
	o := Options{
		Listen: "127.0.0.1:0", HostKey: filepath.Join(dir, "host", "ssh_host_ed25519"),
		Operators: h.operators, Viewers: h.viewers,
		IdleTimeout: time.Hour, MaxSessions: 8, ShutdownGrace: 2 * time.Second, KeysPoll: 50 * time.Millisecond,
		Log: slogTo(h.logs),
		Console: func(s *Session) (tea.Model, func(io.Writer), error) {
			return &testModel{who: s.Who.Name + "/" + string(s.Who.Role)}, func(w io.Writer) { fmt.Fprintln(w, "after: bye") }, nil
		},
		Notice: func(text string) tea.Msg { return noticeMsg(text) },
		Command: func(s *Session, args []string) int {
			switch args[0] {
			case "whoami":
				fmt.Fprintf(s.Out, "%s %s %s\n", s.Who.Name, s.Who.Role, s.Who.Actor())
				return 0
			case "fail":
				fmt.Fprintln(s.Err, "it failed")
				return 3
			case "wait":
				<-s.Context().Done()
				fmt.Fprintln(s.Err, "context ended")
				return 4
			case "echo":
				b, _ := io.ReadAll(s.In)
				fmt.Fprintf(s.Out, "read %q\n", b)
				return 0
			}
			return 2
		},
	}
	if tweak != nil {
		tweak(&o)
	}
	srv, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	h.srv, h.addr = srv, srv.Addr().String()
	h.hostKey = srv.ssh.HostSigners[0].PublicKey()
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel, h.done = cancel, make(chan struct{})
	go func() { h.err = srv.Serve(ctx); close(h.done) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-h.done:
		case <-time.After(15 * time.Second):
			t.Error("the server did not stop")
		}
	})
	return h
}

func (h *harness) dial(p person) (*gossh.Client, error) {
	return gossh.Dial("tcp", h.addr, &gossh.ClientConfig{
		User:            "ops",
		Auth:            []gossh.AuthMethod{gossh.PublicKeys(p.signer)},
		HostKeyCallback: gossh.FixedHostKey(h.hostKey),
		Timeout:         10 * time.Second,
	})
}

// run runs a command line as p: stdout, stderr and the exit status.
func (h *harness) run(p person, cmd string) (string, string, int) {
	h.t.Helper()
	return h.runIn(p, cmd, "")
}

func TestCommandSessionsCarryOutputAndExitStatus(t *testing.T) {
	alice, bob := newPerson(t, "alice"), newPerson(t, "bob")
	h := startServer(t, []person{alice}, []person{bob}, nil)

	out, _, code := h.run(alice, "whoami")
	want := "alice operator ssh:alice (" + alice.fingerprint() + ")\n"
	if code != 0 || out != want {
		t.Fatalf("whoami as alice: %d %q, want 0 %q", code, out, want)
	}
	if out, _, code := h.run(bob, "whoami"); code != 0 || !strings.HasPrefix(out, "bob viewer ") {
		t.Fatalf("whoami as bob: %d %q", code, out)
	}
	if _, errOut, code := h.run(alice, "fail"); code != 3 || errOut != "it failed\n" {
		t.Fatalf("fail: %d %q", code, errOut)
	}
	// A session without a terminal and without a command gets told how.
	if _, errOut, code := h.run(alice, ""); code != exitUsage || !strings.Contains(errOut, "ssh -t") {
		t.Fatalf("no command, no terminal: %d %q", code, errOut)
	}
	logs := h.logs.String()
	for _, want := range []string{`msg="ssh session start" user=alice role=operator`, `command=whoami`, `msg="ssh session end"`, "exit=3", "duration="} {
		if !strings.Contains(logs, want) {
			t.Errorf("the log lacks %q:\n%s", want, logs)
		}
	}
}

func TestStrangersAreRefusedAtAuthentication(t *testing.T) {
	alice, eve := newPerson(t, "alice"), newPerson(t, "eve")
	h := startServer(t, []person{alice}, nil, nil)
	_, err := h.dial(eve)
	if err == nil || !strings.Contains(err.Error(), "unable to authenticate") {
		t.Fatalf("eve's key: %v, want an authentication failure", err)
	}
	// Password and keyboard-interactive are not offered at all.
	_, err = gossh.Dial("tcp", h.addr, &gossh.ClientConfig{User: "ops", Auth: []gossh.AuthMethod{gossh.Password("hunter2")},
		HostKeyCallback: gossh.FixedHostKey(h.hostKey)})
	if err == nil {
		t.Fatal("a password was accepted")
	}
	waitFor(t, "the refusal logged", func() bool {
		return strings.Contains(h.logs.String(), "ssh connection refused: no authorized key")
	})
	if strings.Contains(h.logs.String(), "hunter2") {
		t.Fatal("the password reached the log")
	}
}

func TestConsoleSessionFollowsTheTerminal(t *testing.T) {
	alice := newPerson(t, "alice")
	h := startServer(t, []person{alice}, nil, nil)
	sess, out, in := h.ptySession(alice, "xterm-256color", 30, 100)
	if err := sess.Shell(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the console at 100x30", func() bool { return strings.Contains(out.String(), "console for alice/operator size 100x30") })
	if err := sess.WindowChange(40, 120); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the console resized to 120x40", func() bool { return strings.Contains(out.String(), "size 120x40") })
	in.Write([]byte("q"))
	done := make(chan error, 1)
	go func() { done <- sess.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("q ended the session with %v, want exit 0", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("q did not end the session")
	}
	if !strings.Contains(out.String(), "after: bye") {
		t.Fatalf("the console's closing words are missing:\n%q", out.String())
	}
	// The server goes on: q ends the session, not the server.
	if out, _, code := h.run(alice, "whoami"); code != 0 || !strings.HasPrefix(out, "alice") {
		t.Fatalf("after q: %d %q", code, out)
	}
}

// ptySession opens a session as p with a terminal (term, rows x cols);
// what it shows goes to out, and in is its input.
func (h *harness) ptySession(p person, term string, rows, cols int) (sess *gossh.Session, out *syncBuf, in io.WriteCloser) {
	h.t.Helper()
	c, err := h.dial(p)
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(func() { c.Close() })
	if sess, err = c.NewSession(); err != nil {
		h.t.Fatal(err)
	}
	out = &syncBuf{}
	sess.Stdout, sess.Stderr = out, out
	if in, err = sess.StdinPipe(); err != nil {
		h.t.Fatal(err)
	}
	if err := sess.RequestPty(term, rows, cols, gossh.TerminalModes{}); err != nil {
		h.t.Fatal(err)
	}
	return sess, out, in
}

// openConsole opens a console session and waits until it is drawn.
func (h *harness) openConsole(p person) (*gossh.Session, *syncBuf, chan error) {
	h.t.Helper()
	sess, out, _ := h.ptySession(p, "xterm", 24, 80)
	if err := sess.Shell(); err != nil {
		h.t.Fatal(err)
	}
	waitFor(h.t, "the console drawn", func() bool { return strings.Contains(out.String(), "console for "+p.name) })
	done := make(chan error, 1)
	go func() { done <- sess.Wait() }()
	return sess, out, done
}

func waitEnd(t *testing.T, done chan error, within time.Duration) error {
	t.Helper()
	select {
	case err := <-done:
		return err
	case <-time.After(within):
		t.Fatalf("the session did not end within %s", within)
	}
	return nil
}

func TestRevokingAKeyEndsItsSessionsAndRefusesIt(t *testing.T) {
	alice, carol := newPerson(t, "alice"), newPerson(t, "carol")
	h := startServer(t, []person{alice, carol}, nil, nil)
	_, out, done := h.openConsole(carol)
	// A command session of carol's that would run forever.
	c, err := h.dial(carol)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cmdSess, _ := c.NewSession()
	var cmdErr bytes.Buffer
	cmdSess.Stderr = &cmdErr
	if err := cmdSess.Start("wait"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the command session started", func() bool { return strings.Count(h.logs.String(), "user=carol") >= 2 })

	writeKeys(t, h.operators, alice) // carol's key is revoked
	err = waitEnd(t, done, 10*time.Second)
	if err == nil || !strings.Contains(out.String(), "is no longer authorized") {
		t.Fatalf("carol's console after revocation: %v\n%q", err, out.String())
	}
	cmdDone := make(chan error, 1)
	go func() { cmdDone <- cmdSess.Wait() }()
	if err := waitEnd(t, cmdDone, 10*time.Second); err == nil || !strings.Contains(cmdErr.String(), "no longer authorized") {
		t.Fatalf("carol's command after revocation: %v %q", err, cmdErr.String())
	}
	if _, err := h.dial(carol); err == nil {
		t.Fatal("carol's revoked key still connects")
	}
	if _, _, code := h.run(alice, "whoami"); code != 0 {
		t.Fatal("alice lost her access")
	}
	// A key added while the server runs works at once.
	dave := newPerson(t, "dave")
	writeKeys(t, h.viewers, dave)
	if out, _, code := h.run(dave, "whoami"); code != 0 || !strings.HasPrefix(out, "dave viewer") {
		t.Fatalf("dave: %d %q", code, out)
	}
	if !strings.Contains(h.logs.String(), "ssh session ended: key revoked") {
		t.Fatalf("the revocation is not logged:\n%s", h.logs)
	}
}

func TestIdleConsolesEnd(t *testing.T) {
	alice := newPerson(t, "alice")
	h := startServer(t, []person{alice}, nil, func(o *Options) { o.IdleTimeout = 300 * time.Millisecond })
	_, out, done := h.openConsole(alice)
	if err := waitEnd(t, done, 10*time.Second); err == nil {
		t.Fatal("an idle console ended with exit 0, want 1")
	}
	if !strings.Contains(out.String(), "no input for 300ms") {
		t.Fatalf("the idle console was not told why:\n%q", out.String())
	}
}

func TestSessionLimit(t *testing.T) {
	alice := newPerson(t, "alice")
	h := startServer(t, []person{alice}, nil, func(o *Options) { o.MaxSessions = 1 })
	_, _, done := h.openConsole(alice)
	_, errOut, code := h.run(alice, "whoami")
	if code != exitRefused || !strings.Contains(errOut, "all 1 sessions are in use") {
		t.Fatalf("a second session: %d %q", code, errOut)
	}
	_ = done
}

func TestShutdownTellsSessionsAndGivesThemTime(t *testing.T) {
	alice := newPerson(t, "alice")
	h := startServer(t, []person{alice}, nil, func(o *Options) { o.ShutdownGrace = 500 * time.Millisecond })
	_, out, done := h.openConsole(alice)
	c, _ := h.dial(alice)
	defer c.Close()
	cmdSess, _ := c.NewSession()
	var cmdErr syncBuf
	cmdSess.Stderr = &cmdErr
	if err := cmdSess.Start("wait"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "both sessions open", func() bool { return strings.Count(h.logs.String(), "ssh session start") >= 2 })
	start := time.Now()
	h.cancel()
	waitFor(t, "the console told", func() bool { return strings.Contains(out.String(), "ckanops serve is shutting down") })
	waitEnd(t, done, 10*time.Second)
	if d := time.Since(start); d < 400*time.Millisecond {
		t.Fatalf("the console ended after %s, before its grace", d)
	}
	cmdDone := make(chan error, 1)
	go func() { cmdDone <- cmdSess.Wait() }()
	waitEnd(t, cmdDone, 10*time.Second)
	if !strings.Contains(cmdErr.String(), "is shutting down") || !strings.Contains(cmdErr.String(), "context ended") {
		t.Fatalf("the command session was not told and ended: %q", cmdErr.String())
	}
	select {
	case <-h.done:
		if h.err != nil {
			t.Fatal(h.err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return")
	}
	if _, err := h.dial(alice); err == nil {
		t.Fatal("the server still accepts connections")
	}
}

func TestHostKeyIsMadeOnceAndKept(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "keys", "ssh_host_ed25519")
	s1, created, err := LoadHostKey(path)
	if err != nil || !created {
		t.Fatalf("first start: %v created=%v", err, created)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("host key mode: %v %v", fi.Mode(), err)
	}
	s2, created, err := LoadHostKey(path)
	if err != nil || created {
		t.Fatalf("second start: %v created=%v", err, created)
	}
	if !bytes.Equal(s1.PublicKey().Marshal(), s2.PublicKey().Marshal()) {
		t.Fatal("the host key changed across restarts")
	}
	os.Chmod(path, 0o644)
	if _, _, err := LoadHostKey(path); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("a host key others may read: %v", err)
	}
	// Across a real restart of the server, clients see the same key.
	alice := newPerson(t, "alice")
	var seen []string
	for range 2 {
		h := startServer(t, []person{alice}, nil, func(o *Options) { o.HostKey = filepath.Join(dir, "served_key") })
		seen = append(seen, gossh.FingerprintSHA256(h.hostKey))
		if _, _, code := h.run(alice, "whoami"); code != 0 {
			t.Fatal("whoami failed")
		}
		h.cancel()
		<-h.done
	}
	if seen[0] != seen[1] {
		t.Fatalf("the served host key changed across restarts: %v", seen)
	}
}

func TestKeysFiles(t *testing.T) {
	dir := t.TempDir()
	alice, bob, mallory := newPerson(t, "alice"), newPerson(t, "bob"), newPerson(t, "mallory")
	ops := filepath.Join(dir, "operators.keys")
	views := filepath.Join(dir, "viewers.keys")
	pub := func(p person) string {
		return strings.TrimSpace(string(gossh.MarshalAuthorizedKey(p.signer.PublicKey())))
	}
	os.WriteFile(ops, []byte("# on-call\n\n"+
		pub(alice)+" alice\n"+
		`from="10.0.0.0/8" `+pub(mallory)+" mallory\n"+ // options are refused, not ignored
		pub(newPerson(t, "x"))+"\n"+ // no comment: whose is it?
		"ssh-ed25519 notbase64 broken\n"+
		pub(bob)+" bob\n"+
		pub(newPerson(t, "y"))+" al\u202ecie\n"), 0o600) // a bidi override would reorder the audit log's text
	os.WriteFile(views, []byte(pub(bob)+" bob\n"), 0o600)
	var reports []string
	k, err := NewKeyring(ops, views, func(msg string, args ...any) { reports = append(reports, fmt.Sprint(msg, args)) })
	if err != nil {
		t.Fatal(err)
	}
	if id, ok := k.Lookup(alice.signer.PublicKey()); !ok || id.Role != RoleOperator || id.Name != "alice" || id.Line != 3 {
		t.Fatalf("alice: %+v %v", id, ok)
	}
	if _, ok := k.Lookup(mallory.signer.PublicKey()); ok {
		t.Fatal("a key with options was let in")
	}
	if id, ok := k.Lookup(bob.signer.PublicKey()); !ok || id.Role != RoleViewer {
		t.Fatalf("bob, in both files, must be a viewer: %+v", id)
	}
	all := strings.Join(reports, "\n")
	for _, want := range []string{"key options (from)", "no comment", "not an SSH public key", "in both the operators and the viewers file", "cannot name an actor"} {
		if !strings.Contains(all, want) {
			t.Errorf("no report of %q in:\n%s", want, all)
		}
	}
	// The operators file gone: nobody is an operator until it is back.
	os.Remove(ops)
	if _, ok := k.Lookup(alice.signer.PublicKey()); ok {
		t.Fatal("alice is still let in with her file gone")
	}
	if _, err := NewKeyring(filepath.Join(dir, "none"), "", nil); err == nil {
		t.Fatal("a missing operators file at start must be an error")
	}
}

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func slogTo(w io.Writer) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelInfo}))
}
