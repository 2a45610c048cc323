package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	tea "charm.land/bubbletea/v2"

	"github.com/ckanops/ckanops/ckanclient"
	"github.com/ckanops/ckanops/config"
	"github.com/ckanops/ckanops/serve"
	"github.com/ckanops/ckanops/tui"
)

func init() {
	register(&command{
		name:    "serve",
		summary: "serve the console and the CLI over SSH to the on-call team (keys in operators.keys, viewers.keys)",
		usage: `serve [flags]
Serves the console (ssh -t -p 2222 HOST) and the CLI (ssh -p 2222 HOST
status --json) over SSH, with the tokens of sites.toml staying on this
host. Keys listed in the operators file may change sites; keys in the
viewers file may only look. Each key's comment is its owner's name: the
gates audit every change as "ssh:NAME (SHA256:...) via ops-token". The
keys files are re-read when they change: a revoked key's sessions end.
Settings come from sites.toml's [serve] table; flags override them.

Over SSH: status, check, actions, enable, disable, runbook, version and
help (viewers: status, check, actions without --learn, version, help).
--config is not accepted: the host's sites.toml is used.`,
		run: runServe,
	})
}

func runServe(e *env, args []string) error {
	fs := newFlags(e, commands["serve"])
	cfgPath := fs.String("config", "", "path to sites.toml (default $CKANOPS_CONFIG, else $XDG_CONFIG_HOME/ckanops/sites.toml)")
	listen := fs.String("listen", "", "address to listen on, host:port (default [serve] listen, else "+config.DefaultServeListen+")")
	hostKey := fs.String("host-key", "", "the server's host key `FILE`, made (0600) when missing (default [serve] host_key)")
	operators := fs.String("operators", "", "authorized_keys `FILE` of the people who may change sites (default [serve] operators)")
	viewers := fs.String("viewers", "", "authorized_keys `FILE` of the people who may only look (default [serve] viewers)")
	metricsListen := fs.String("metrics-listen", "", "serve Prometheus metrics on host:port (default [serve] metrics_listen; none when empty)")
	lf := addLogFlags(fs)
	if err := parse(e, fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageErr("serve takes no arguments")
	}
	log, err := lf.logger(e.stderr)
	if err != nil {
		return err
	}
	if err := e.stopIfDry(); err != nil {
		return err
	}
	path := *cfgPath
	if path == "" {
		p, err := config.SitesPath()
		if err != nil {
			return usageErr("%v", err)
		}
		path = p
	}
	sites, warns, err := config.LoadSites(path)
	if err != nil {
		return err
	}
	for _, w := range warns {
		log.Warn("sites.toml", "warning", w.String())
	}
	sc := sites.Serve
	override := func(dst *string, v string) {
		if v != "" {
			*dst = v
		}
	}
	override(&sc.Listen, *listen)
	override(&sc.HostKey, *hostKey)
	override(&sc.Operators, *operators)
	override(&sc.Viewers, *viewers)
	override(&sc.MetricsListen, *metricsListen)
	if sc.Operators == "" {
		return usageErr("no operators keys file: set [serve] operators in %s or pass --operators FILE", path)
	}
	h := &sshCommands{sites: sites, path: path}
	srv, err := serve.New(serve.Options{
		Listen: sc.Listen, HostKey: sc.HostKey, Operators: sc.Operators, Viewers: sc.Viewers,
		IdleTimeout: sc.IdleTimeout.Duration, MaxSessions: sc.MaxSessions, ShutdownGrace: sc.ShutdownGrace.Duration,
		Log:     log,
		Console: h.console,
		Notice:  func(text string) tea.Msg { return tui.NoticeMsg{Text: text} },
		Command: h.command,
	})
	if err != nil {
		return err
	}
	if err := srv.Listen(); err != nil {
		return err
	}
	fmt.Fprintf(e.stderr, "ckanops serve: listening on %s (host key %s)\n", srv.Addr(), srv.HostKeyFingerprint())
	ctx, stop := signal.NotifyContext(e.context(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if sc.MetricsListen != "" {
		ln, err := net.Listen("tcp", sc.MetricsListen)
		if err != nil {
			return fmt.Errorf("metrics: listen on %s: %w", sc.MetricsListen, err)
		}
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", srv.MetricsHandler())
		hs := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		go func() { _ = hs.Serve(ln) }()
		defer hs.Close()
		log.Info("metrics", "listen", ln.Addr().String())
	}
	return srv.Serve(ctx)
}

// sshCommands runs what the people connected over SSH ask for.
type sshCommands struct {
	sites *config.Sites
	path  string
}

// sshAllowed are the commands served over SSH, and whether each changes
// a site (and so needs the operator's right). Everything else runs on the
// console host itself (gate, serve, demo, snapshot, config).
var sshAllowed = map[string]bool{
	"status": false, "check": false, "actions": false, "version": false, "help": false,
	"enable": true, "disable": true, "runbook": true,
	"schedule": true, // showing the window is a look: see refuseOverSSH
}

// refuseOverSSH says why a command line may not run for who, or "".
func refuseOverSSH(who serve.Identity, args []string) string {
	name := args[0]
	if name == "--help" || name == "-h" {
		name = "help"
	}
	changes, ok := sshAllowed[name]
	if !ok {
		return fmt.Sprintf("%q is not served over SSH: the commands are %s ('ssh -t' opens the console); gate, serve, demo, snapshot and config run on the console host itself", name, allowedList())
	}
	flags := args[1:]
	if i := slices.Index(flags, "--"); i >= 0 {
		flags = flags[:i]
	}
	for _, a := range flags {
		if a == "--config" || strings.HasPrefix(a, "--config=") {
			return "--config is not accepted over SSH: this host's sites.toml is used"
		}
		if name == "actions" && (a == "--learn" || strings.HasPrefix(a, "--learn=")) {
			changes = true
		}
	}
	if name == "schedule" {
		// Showing the planned window looks; any flag but --json plans or
		// cancels (deny by default).
		changes = slices.ContainsFunc(flags, func(a string) bool {
			return strings.HasPrefix(a, "-") && a != "--json" && a != "--json=true"
		})
	}
	for _, a := range flags {
		if a == "--help" || a == "-h" {
			changes = false // asking how never changes anything
		}
	}
	if changes && who.Role != serve.RoleOperator {
		return fmt.Sprintf("%s is a viewer: '%s' changes a site and needs the operator permission (a key in the operators file); nothing was changed", who.Name, strings.Join(args[:min(2, len(args))], " "))
	}
	return ""
}

func allowedList() string {
	names := make([]string, 0, len(sshAllowed))
	for n := range sshAllowed {
		names = append(names, n)
	}
	slices.Sort(names)
	return strings.Join(names, ", ")
}

// printSSHUsage lists what the person may run over SSH.
func printSSHUsage(w io.Writer, who serve.Identity) {
	fmt.Fprintf(w, "ckanops over SSH, for %s (%s)\n\n", who.Name, who.Role)
	fmt.Fprintln(w, "  ssh -t HOST            the console")
	fmt.Fprintln(w, "  ssh HOST COMMAND ...   one command, as the CLI runs it:")
	names := make([]string, 0, len(sshAllowed))
	for n := range sshAllowed {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		c := commands[n]
		if c == nil || c.summary == "" {
			continue
		}
		note := ""
		switch {
		case n == "schedule" && who.Role != serve.RoleOperator:
			note = " (viewers: show only)"
		case sshAllowed[n] && who.Role != serve.RoleOperator:
			note = " (operators only)"
		}
		fmt.Fprintf(w, "    %-9s %s%s\n", n, c.summary, note)
	}
	fmt.Fprintln(w, "\n'ssh HOST COMMAND --help' shows a command's flags; --config is not accepted (this host's sites.toml is used).")
}

// viewerReason is what refuses a viewer's change, at the gate clients.
func viewerReason(who serve.Identity) string {
	if who.Role == serve.RoleOperator {
		return ""
	}
	return fmt.Sprintf("%s is a viewer (changing a site needs the operator permission: a key in the operators file)", who.Name)
}

// command runs one command line for a session and returns its exit code.
func (h *sshCommands) command(s *serve.Session, args []string) int {
	if len(args) == 1 && (args[0] == "help" || args[0] == "--help" || args[0] == "-h") {
		printSSHUsage(s.Out, s.Who)
		return 0
	}
	if why := refuseOverSSH(s.Who, args); why != "" {
		fmt.Fprintf(s.Err, "ckanops: %s\n", why)
		return exitUsage
	}
	e := &env{
		stdin: s.In, stdout: s.Out, stderr: s.Err,
		getenv:    func(string) string { return "" }, // the server's environment is not the client's business
		ctx:       s.Context(),
		sitesPath: h.path,
		actor:     s.Who.Actor(),
		readOnly:  viewerReason(s.Who),
		terminal:  s.PTY,
	}
	return run(e, args)
}

// console builds the console of a session with a terminal.
func (h *sshCommands) console(s *serve.Session) (tea.Model, func(io.Writer), error) {
	sites, _, err := config.LoadSites(h.path) // re-read: sites added since the start show up
	if err != nil {
		return nil, nil, err
	}
	opts := tui.Options{
		Refresh:   sites.Defaults.Refresh.Duration,
		UserAgent: "ckanops-serve/" + buildVersion(),
		Who:       s.Who.Name + " (" + string(s.Who.Role) + ")",
		ReadOnly:  viewerReason(s.Who),
		NoColor:   slices.ContainsFunc(s.Env, func(v string) bool { return strings.HasPrefix(v, "NO_COLOR=") && v != "NO_COLOR=" }),
	}
	m := tui.New(tui.SitesFromConfig(sites, ckanclient.Options{UserAgent: opts.UserAgent, Actor: s.Who.Actor(), ReadOnly: opts.ReadOnly}), opts)
	after := func(w io.Writer) {
		m.Close()
		for _, line := range m.QuitSummary() {
			fmt.Fprintln(w, line)
		}
	}
	return m, after, nil
}
