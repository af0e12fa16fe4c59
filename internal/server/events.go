package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"vgrid/api"
)

// heartbeatEvery is how often an idle event stream gets a comment line,
// so that proxies keep it open and the client sees it is alive.
const heartbeatEvery = 15 * time.Second

// getEvents streams server-sent events (text/event-stream, to a client
// that accepts it): one "change"
// event per change of an object the caller may see (api.Event as JSON),
// a comment every 15 s. It ends when the client goes, the watch falls
// behind or its store closes (the client reconnects and reads everything
// again), or the HTTP server shuts down.
func (s *Server) getEvents(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	if !strings.Contains(r.Header.Get("Accept"), "text/event-stream") {
		// Whoever did not ask for a stream would wait on it forever.
		return &httpError{http.StatusNotAcceptable, api.CodeInvalid,
			"GET /events is a stream of server-sent events: send Accept: text/event-stream", nil}
	}
	// Registered first: a Shutdown that began before would not call it.
	shutdown := shutdownSignal(r)
	p := who(ctx)
	ch, err := s.ctl.WatchChanges(ctx, p.Project, p.Role == RoleAdmin)
	if err != nil {
		return err
	}
	rc := http.NewResponseController(w)
	// A stream outlives any write deadline the server sets per request.
	if err := rc.SetWriteDeadline(time.Time{}); err != nil && !errors.Is(err, http.ErrNotSupported) {
		return err
	}
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no") // a buffering reverse proxy would hold events back
	w.WriteHeader(http.StatusOK)
	// The first line tells the client the stream is up (it then reads
	// everything once: changes before this were not streamed).
	if _, err := fmt.Fprint(w, ": ready\n\n"); err != nil {
		return nil
	}
	if err := rc.Flush(); err != nil {
		return nil
	}
	tick := time.NewTicker(heartbeatEvery)
	defer tick.Stop()
	for {
		var msg string
		select {
		case <-ctx.Done():
			return nil
		case <-shutdown:
			return nil
		case <-tick.C:
			msg = ": heartbeat\n\n"
		case ev, ok := <-ch:
			if !ok {
				return nil
			}
			b, _ := json.Marshal(ev)
			msg = "event: change\ndata: " + string(b) + "\n\n"
		}
		if _, err := fmt.Fprint(w, msg); err != nil {
			return nil // the client went away: nobody to tell
		}
		if err := rc.Flush(); err != nil {
			return nil
		}
	}
}

// shutdowns maps each *http.Server serving event streams to a channel
// closed when its Shutdown begins: Shutdown waits for active requests,
// and a stream would never end by itself.
var shutdowns sync.Map // *http.Server -> chan struct{}

// shutdownSignal is closed when the HTTP server serving r shuts down; nil
// (never ready) when r did not come through an http.Server (tests).
func shutdownSignal(r *http.Request) <-chan struct{} {
	hs, _ := r.Context().Value(http.ServerContextKey).(*http.Server)
	if hs == nil {
		return nil
	}
	c := make(chan struct{})
	v, loaded := shutdowns.LoadOrStore(hs, c)
	if !loaded {
		hs.RegisterOnShutdown(func() { close(c) })
	}
	return v.(chan struct{})
}
