package server

import (
	"context"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"vgrid/internal/metrics"
)

// Metrics: every request is timed and counted by route and status code,
// the route being the router's pattern (e.g. "GET
// /api/v1/workspaces/{name}"), never the raw path, so that names in paths
// do not multiply the series. GET /metrics serves, to admin tokens only,
// the process's metrics (internal/metrics) with this server's own: its
// request metrics and its controller's, read at scrape time. Each
// Handler has a registry of its own, so servers in one process (tests)
// never collide.

// instrument registers GET /metrics on mux and returns mux wrapped in the
// request metrics.
func (s *Server) instrument(mux *http.ServeMux) http.Handler {
	hm := metrics.NewHTTP()
	reg := prometheus.NewRegistry()
	reg.MustRegister(hm.Requests, s.ctl.MetricsCollector())
	prom := metrics.Handler(reg)
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, r *http.Request) {
		p, err := s.authenticate(r)
		if err != nil {
			writeError(w, s.log, err)
			return
		}
		if err := requireRole(context.WithValue(r.Context(), ctxKey{}, p), RoleAdmin); err != nil {
			writeError(w, s.log, err)
			return
		}
		prom.ServeHTTP(w, r)
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t0 := time.Now()
		sw := &statusWriter{ResponseWriter: w}
		// The mux sets r.Pattern on this very request when it routes it.
		mux.ServeHTTP(sw, r)
		route := r.Pattern
		if route == "" {
			route = "unmatched" // no route: 404 or 405 from the mux itself
		}
		hm.Observe(route, sw.status(), time.Since(t0))
	})
}

// statusWriter remembers the status code written. Unwrap lets
// http.ResponseController reach the connection's writer (flushes of
// streamed output, deadlines).
type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.code == 0 && code >= 200 {
		w.code = code // not 1xx: informational answers come before the real one
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Flush serves callers that assert http.Flusher rather than use
// http.ResponseController.
func (w *statusWriter) Flush() {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	_ = http.NewResponseController(w.ResponseWriter).Flush()
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (w *statusWriter) status() int {
	if w.code == 0 {
		return http.StatusOK // the handler wrote nothing: net/http sends 200
	}
	return w.code
}
