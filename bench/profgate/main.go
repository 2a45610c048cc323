// Command profgate is the gate exactly as `ckanops gate --config gate.toml`
// runs it (gate.Run, same config loading), plus net/http/pprof on a second,
// separate loopback listener. It exists so the benchmark script can take a
// CPU profile of a gate process under load; the product's gate exposes no
// pprof endpoint and this build is never shipped.
//
//	profgate -config gate.toml -pprof 127.0.0.1:6060
//	curl -o cpu.pprof 'http://127.0.0.1:6060/debug/pprof/profile?seconds=10'
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	_ "net/http/pprof" // registers /debug/pprof/ on http.DefaultServeMux
	"os"
	"os/signal"
	"syscall"

	"github.com/ckanops/ckanops/config"
	"github.com/ckanops/ckanops/gate"
)

func main() {
	path := flag.String("config", "", "path to gate.toml (required)")
	pprofAddr := flag.String("pprof", "127.0.0.1:6060", "loopback address for /debug/pprof/")
	flag.Parse()
	if err := run(*path, *pprofAddr); err != nil {
		fmt.Fprintln(os.Stderr, "profgate:", err)
		os.Exit(1)
	}
}

func run(path, pprofAddr string) error {
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	cfg, warns, err := config.LoadGate(path)
	if err != nil {
		return err
	}
	for _, w := range warns {
		log.Warn(w.Message, "file", w.File, "key", w.Key)
	}
	ln, err := net.Listen("tcp", pprofAddr)
	if err != nil {
		return fmt.Errorf("pprof listener: %w", err)
	}
	go http.Serve(ln, http.DefaultServeMux)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return gate.Run(ctx, cfg, log, nil)
}
