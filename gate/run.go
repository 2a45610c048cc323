package gate

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/ckanops/ckanops/config"
	"github.com/ckanops/ckanops/gate/classify"
	"github.com/ckanops/ckanops/runbook"
)

// Run starts the gate described by cfg and serves until ctx is done
// (SIGTERM), then drains requests in flight for at most the configured
// shutdown timeout. ready, if not nil, is called with the listening
// address once the gate accepts connections.
func Run(ctx context.Context, cfg *config.Gate, log *slog.Logger, ready func(addr string)) error {
	redis.SetLogger(redisLog{log.With("component", "redis")})
	token, warns, err := cfg.OpsToken()
	for _, w := range warns {
		log.Warn(w.Message, "file", w.File, "key", w.Key)
	}
	if err != nil {
		return err
	}
	up, err := url.Parse(cfg.Upstream)
	if err != nil {
		return fmt.Errorf("gate: upstream: %w", err)
	}
	local, err := OpenFileStore(cfg.State.File)
	if err != nil {
		return err
	}
	defer local.Close()
	var store Store = local
	if cfg.State.RedisURL != "" {
		rs, err := OpenRedisStore(cfg.State.RedisURL.Reveal(), cfg.Site)
		if err != nil {
			return err
		}
		defer rs.Close()
		store = rs
	} else {
		local = nil // the file is the store itself
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("gate: listen on %s: %w", cfg.Listen, err)
	}
	defer ln.Close()
	var metricsLn net.Listener
	if a := cfg.Gate.MetricsListen; a != "" {
		if metricsLn, err = net.Listen("tcp", a); err != nil {
			return fmt.Errorf("gate: metrics_listen: listen on %s: %w", a, err)
		}
		defer metricsLn.Close()
	}
	audit, err := OpenAuditLog(cfg.Audit.File)
	if err != nil {
		return err
	}
	defer audit.Close()

	adminTTL := cfg.Auth.SysadminCacheTTL.Duration
	if adminTTL == 0 {
		adminTTL = -1 // 0s in gate.toml turns the cache off
	}
	gateID := hostname() + ":" + portOf(ln.Addr())
	var lease TriggerLease
	if rs, ok := store.(*RedisStore); ok && len(cfg.Triggers) > 0 {
		// One gate of the site acts for the triggers; a lease three
		// rounds long passes to another gate when its holder stops.
		tick := cmp.Or(cfg.Checks.Interval.Duration, config.DefaultCheckInterval)
		lease = NewRedisTriggerLease(rs.rdb, cfg.Site, gateID, max(3*tick, 5*time.Second))
	}
	g, err := New(ctx, Options{
		Site:      cfg.Site,
		SiteTitle: cfg.Gate.SiteTitle,
		Upstream:  up,
		Store:     store,
		Local:     local,
		Audit:     audit,
		GateID:    gateID,
		OpsToken:  token,
		Policy: classify.Policy{
			AllowActions: cfg.Policy.AllowActions,
			DenyActions:  cfg.Policy.DenyActions,
			AllowPosts:   cfg.Policy.AllowPosts,
			DenyGet:      cfg.Policy.DenyGet,
			RootPath:     cfg.Gate.RootPath, // "/" none, "" learned (WatchVersion)
		},
		RootPath:         cfg.Gate.RootPath,
		CKANVersion:      cfg.Policy.CKANVersion,
		LearnedFile:      cfg.Policy.LearnedFile,
		BypassCIDRs:      cfg.Policy.BypassCIDRs,
		TrustedProxies:   cfg.Policy.TrustedProxies,
		RetryAfter:       cfg.Gate.RetryAfter.Duration,
		NoticePoll:       cfg.Gate.NoticePoll.Duration,
		UpstreamMaxConns: cfg.Gate.MaxUpstreamConns,
		Triggers:         cfg.Triggers,
		TriggerLease:     lease,
		SysadminCacheTTL: adminTTL,
		Checks:           cfg.Checks,
		InitialMode:      cfg.State.InitialMode,
		InitialMessage:   cfg.State.InitialMessage,
		Logger:           log,
	})
	if err != nil {
		return err
	}
	go g.Sync(ctx)
	go g.WatchVersion(ctx)

	site, err := g.RunbookSite("http://" + ln.Addr().String())
	if err != nil {
		return err
	}
	var lock runbook.Lock
	var shared *runbook.Shared
	if rs, ok := store.(*RedisStore); ok {
		// Every gate of the site serves its runbook, which one runs.
		lock = runbook.NewRedisLock(rs.rdb, cfg.Site, cfg.Runbook.Lease.Duration)
		shared = runbook.NewShared(rs.rdb, cfg.Site)
	}
	eng, err := runbook.Open(runbook.Options{
		Site: site, JournalDir: cfg.Runbook.JournalDir, Lock: lock, Shared: shared, Holder: g.opts.GateID,
		Snapshot: cfg.Snapshot, Checks: cfg.Checks, Migrate: cfg.Migrate, Verify: cfg.Verify, AB: cfg.AB,
		ExpectCKAN: cfg.Runbook.ExpectCKANVersion, Drain: cfg.Gate.DrainTimeout.Duration,
		Poll: cfg.Runbook.PollInterval.Duration, Logger: log,
	})
	if err != nil {
		// The site still needs its gate: serve, and say what is wrong on
		// the runbook API, in health and in the log.
		log.Error("runbook unavailable: the gate serves without it", "journal_dir", cfg.Runbook.JournalDir, "err", err.Error())
		g.RunbookUnavailable(err)
	} else {
		g.AttachRunbook(eng)
		// Stopping ends the runbook's event streams (and interrupts a
		// running step, which the next start shows) before the server
		// waits for its requests.
		stopped := make(chan struct{})
		go func() {
			<-ctx.Done()
			eng.Close()
			close(stopped)
		}()
		defer func() { <-stopped }()
	}

	// After the runbook engine: a window may start the runbook.
	go g.RunSchedule(ctx)
	go g.RunTriggers(ctx)

	if metricsLn != nil {
		defer serveMetrics(ctx, metricsLn, g.MetricsHandler(), log)()
	}

	mode := g.Mode()
	log.Info("gate listening", "site", cfg.Site, "listen", ln.Addr().String(), "upstream", up.Redacted(),
		"mode", mode.Mode, "version", mode.Version, "store", store.Kind(), "state", cfg.State.File, "gate_id", g.opts.GateID)
	if ready != nil {
		ready(ln.Addr().String())
	}
	return Serve(ctx, ln, g, cfg.Gate.ShutdownTimeout.Duration, log)
}

// redisLog sends go-redis's own messages (failed dials and the like) to
// the gate's structured log, one line each, instead of bare stderr.
type redisLog struct{ l *slog.Logger }

func (r redisLog) Printf(_ context.Context, format string, v ...any) {
	r.l.Debug(fmt.Sprintf(format, v...))
}

func portOf(a net.Addr) string {
	_, port, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	return port
}

// serveMetrics serves h as GET /metrics on ln ([gate] metrics_listen)
// until stop is called.
func serveMetrics(ctx context.Context, ln net.Listener, h http.Handler, log *slog.Logger) (stop func()) {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", h)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: time.Minute,
		BaseContext: func(net.Listener) context.Context { return ctx }}
	go func() { _ = srv.Serve(ln) }()
	log.Info("metrics listening", "listen", ln.Addr().String())
	return func() { srv.Close() }
}
