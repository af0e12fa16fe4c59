package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/spf13/pflag"

	"vgrid/internal/agent"
	"vgrid/internal/metrics"
)

// logFormat is --log-format of vgrid up, server and agent: the handler
// newLogger gives its loggers.
var logFormat = logFormatFlag("text")

// logFormatFlag is a --log-format value: text or json, refused otherwise
// when the flags are parsed.
type logFormatFlag string

func (f *logFormatFlag) String() string { return string(*f) }
func (f *logFormatFlag) Type() string   { return "text|json" }
func (f *logFormatFlag) Set(s string) error {
	if s != "text" && s != "json" {
		return fmt.Errorf("want text or json, got %q", s)
	}
	*f = logFormatFlag(s)
	return nil
}

// registerLogFormat adds --log-format to a command's flags.
func registerLogFormat(f *pflag.FlagSet) {
	f.Var(&logFormat, "log-format", "log lines as text (key=value) or json (one object a line)")
}

// logHandler is the slog handler of --log-format.
func logHandler(w interface{ Write([]byte) (int, error) }, opts *slog.HandlerOptions) slog.Handler {
	if logFormat == "json" {
		return slog.NewJSONHandler(w, opts)
	}
	return slog.NewTextHandler(w, opts)
}

// serveAgentMetrics serves ag's metrics (and the agent process's) as plain
// HTTP GET /metrics on listen until the returned stop is called. Nothing
// there is authenticated: listen on loopback, or an address only the
// monitoring network reaches.
func serveAgentMetrics(log *slog.Logger, listen string, ag *agent.Agent) (stop func(), err error) {
	h, err := metrics.AgentHandler(ag.MetricsCollector())
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return nil, fmt.Errorf("--metrics-listen: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", h)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Warn("metrics listener", "err", err)
		}
	}()
	log.Info("serving metrics", "address", ln.Addr().String())
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	}, nil
}
