package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/ckanops/ckanops/config"
	"github.com/ckanops/ckanops/gate"
)

func init() {
	register(&command{
		name:    "gate",
		summary: "run the maintenance-mode proxy in front of one CKAN web node",
		usage: `gate --config gate.toml
The gate listens on 'listen', forwards to CKAN at 'upstream', enforces the
site's mode (live, read-only, down), drains in-flight writes, and serves the
control API under /-/ckanops/. See docs/config.md for gate.toml.
SIGTERM or SIGINT: stop accepting, let requests in flight finish (at most
gate.shutdown_timeout), exit. SIGHUP: reopen the audit log at its path
(after logrotate; a renamed log is also reopened at its next entry).`,
		run: func(e *env, args []string) error {
			fs := newFlags(e, commands["gate"])
			path := fs.String("config", "", "path to gate.toml (required)")
			logFlags := addLogFlags(fs)
			if err := parse(e, fs, args); err != nil {
				return err
			}
			if *path == "" {
				return usageErr("--config gate.toml is required (see docs/config.md)")
			}
			if err := e.stopIfDry(); err != nil {
				return err
			}
			log, err := logFlags.logger(e.stderr)
			if err != nil {
				return err
			}
			cfg, warns, err := config.LoadGate(*path)
			if err != nil {
				return err
			}
			for _, w := range warns {
				log.Warn(w.Message, "file", w.File, "key", w.Key)
			}
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			hup := make(chan os.Signal, 1)
			signal.Notify(hup, syscall.SIGHUP)
			defer signal.Stop(hup)
			go func() {
				for {
					select {
					case <-ctx.Done():
						return
					case <-hup:
						paths, err := gate.ReopenAuditLogs()
						for _, p := range paths {
							log.Info("audit log reopened (SIGHUP)", "file", p)
						}
						if err != nil {
							log.Error("audit log not reopened (SIGHUP): the next entry tries again", "err", err.Error())
						}
					}
				}
			}()
			return gate.Run(ctx, cfg, log, nil)
		},
	})
}
