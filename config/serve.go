package config

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"
)

// Serve is the optional [serve] table of sites.toml: how `ckanops serve`
// offers the console over SSH. When the table is absent it holds the
// defaults, with Present false and Operators "" (the command then wants
// --operators).
type Serve struct {
	Present       bool     // the file has a [serve] table
	Listen        string   // listen: host:port the SSH server listens on
	HostKey       string   // host_key: absolute path ("~" expanded, relative paths relative to sites.toml's directory); made on first start when missing
	Operators     string   // operators: absolute path of an authorized_keys file; each key's comment names its owner; required when Present
	Viewers       string   // viewers: absolute path of an authorized_keys file of those who may look but not change anything, or ""
	IdleTimeout   Duration // idle_timeout: a session idle this long is closed; > 0
	MaxSessions   int      // max_sessions: sessions at once, 1..MaxServeSessions
	ShutdownGrace Duration // shutdown_grace: how long sessions are given on SIGTERM, 0..MaxServeShutdownGrace
	MetricsListen string   // metrics_listen: host:port serving /metrics (Prometheus), or "" (off)
}

// Bounds of [serve]'s numbers.
const (
	MaxServeSessions      = 1024             // serve.max_sessions at most
	MaxServeShutdownGrace = 60 * time.Second // serve.shutdown_grace at most
)

// defaultServe is Serve when sites.toml, in dir, has no [serve] table.
func defaultServe(dir string) Serve {
	return Serve{
		Listen:        DefaultServeListen,
		HostKey:       filepath.Join(dir, DefaultServeHostKeyName),
		IdleTimeout:   Duration{DefaultServeIdleTimeout},
		MaxSessions:   DefaultServeMaxSessions,
		ShutdownGrace: Duration{DefaultServeShutdownGrace},
	}
}

// readServe reads the [serve] table t (which may be absent). Every key is
// read either way, so that an absent table gets its defaults the same way
// a present one does. Key files need not exist yet: the command reports
// missing ones when it starts. Those that exist are only looked at for
// their permissions.
func readServe(t *table) Serve {
	s := defaultServe(t.d.dir)
	s.Present = t.m != nil

	listenOK := !t.has("listen") // a bad listen is not compared with metrics_listen
	if v, ok := t.string("listen"); ok {
		if msg := checkServeAddr(v, "127.0.0.1:2222"); msg != "" {
			t.d.problem(t.sub("listen"), "%s", msg)
		} else {
			s.Listen, listenOK = v, true
		}
	}
	if p, ok := t.filePath("host_key"); ok {
		s.HostKey = p
	}
	if s.Present && !t.has("operators") {
		t.d.problem(t.sub("operators"), "required: the authorized_keys file of the people who may change sites")
	}
	s.Operators, _ = t.filePath("operators")
	s.Viewers, _ = t.filePath("viewers")
	s.IdleTimeout = t.duration("idle_timeout", DefaultServeIdleTimeout, false)
	s.MaxSessions = t.intRange("max_sessions", DefaultServeMaxSessions, 1, MaxServeSessions)
	s.ShutdownGrace = t.duration("shutdown_grace", DefaultServeShutdownGrace, true)
	if s.ShutdownGrace.Duration > MaxServeShutdownGrace {
		t.d.problem(t.sub("shutdown_grace"), "must be at most %s (how long sessions are given to finish on SIGTERM), found %s",
			shortDuration(MaxServeShutdownGrace), s.ShutdownGrace)
		s.ShutdownGrace = Duration{DefaultServeShutdownGrace}
	}
	if v, ok := t.string("metrics_listen"); ok {
		if msg := checkServeAddr(v, "127.0.0.1:9122"); msg != "" {
			t.d.problem(t.sub("metrics_listen"), "%s", msg)
		} else if listenOK && sameListenAddr(s.Listen, v) {
			t.d.problem(t.sub("metrics_listen"), "%q clashes with listen (%s): give /metrics a port of its own", v, s.Listen)
		} else {
			s.MetricsListen = v
		}
	}
	t.done()

	if s.Operators != "" && s.Viewers != "" && samePath(s.Operators, s.Viewers) {
		t.d.problem(t.sub("viewers"), "is the operators file too; viewers may only look, so their keys belong in a file of their own")
		s.Viewers = ""
	}
	for _, k := range []struct{ key, path string }{{"operators", s.Operators}, {"viewers", s.Viewers}} {
		if k.path != "" && samePath(s.HostKey, k.path) {
			t.d.problem(t.sub("host_key"), "%s is the %s file too; the server's private key must be a file of its own", s.HostKey, k.key)
		}
	}
	t.warnWritableKeys("operators", s.Operators)
	t.warnWritableKeys("viewers", s.Viewers)
	return s
}

// checkServeAddr vets a host:port to listen on; the port must be a
// number (0 picks a free one).
func checkServeAddr(s, example string) string {
	if checkListen(s) == "" {
		return ""
	}
	_, port, _ := net.SplitHostPort(example)
	return fmt.Sprintf("%q is not host:port with a numeric port; write it as %s (or :%s for every interface)", s, example, port)
}

// sameListenAddr says whether listening on a and on b would clash: the
// same port on the same host, or on every interface for either.
func sameListenAddr(a, b string) bool {
	ah, ap, errA := net.SplitHostPort(a)
	bh, bp, errB := net.SplitHostPort(b)
	if errA != nil || errB != nil || ap != bp || ap == "0" {
		return false
	}
	every := func(h string) bool { return h == "" || h == "0.0.0.0" || h == "::" }
	return every(ah) || every(bh) || strings.EqualFold(ah, bh)
}

// samePath says whether two absolute paths name the same file: equal, or
// both existing and the same file (through a link).
func samePath(a, b string) bool {
	if a == b {
		return true
	}
	fa, errA := os.Stat(a)
	fb, errB := os.Stat(b)
	return errA == nil && errB == nil && os.SameFile(fa, fb)
}

// warnWritableKeys warns when the authorized_keys file at path (read from
// key) exists and group or others may write it: they could add a key of
// their own.
func (t *table) warnWritableKeys(key, path string) {
	if path == "" || runtime.GOOS == "windows" {
		return
	}
	fi, err := os.Stat(path)
	if err != nil || !fi.Mode().IsRegular() {
		return
	}
	if mode := fi.Mode().Perm(); mode&0o022 != 0 {
		t.d.warn(t.sub(key), "%s file %s is writable by group or others (mode %04o): whoever can write it can add a key of their own; run: chmod go-w %s",
			key, path, mode, path)
	}
}

// intRange reads an optional integer from lowest to highest.
func (t *table) intRange(key string, def, lowest, highest int) int {
	v, present := t.lookup(key)
	if !present {
		return def
	}
	n, isInt := v.(int64)
	if !isInt {
		t.wrongType(t.sub(key), "an integer", v)
		return def
	}
	if n < int64(lowest) || n > int64(highest) {
		t.d.problem(t.sub(key), "must be from %d to %d, found %d", lowest, highest, n)
		return def
	}
	return int(n)
}
