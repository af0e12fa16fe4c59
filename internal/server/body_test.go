package server

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"vgrid/api"
	"vgrid/internal/client"
	"vgrid/internal/model"
	"vgrid/internal/store/bolt"
)

// A request declaring a body over the limit with "Expect: 100-continue"
// gets the 413 (never a 100 Continue, never a reset) without sending it.
func TestBodyTooLargeWithExpectContinue(t *testing.T) {
	e := newEnv(t)
	conn, err := tls.Dial("tcp", e.hs.Listener.Addr().String(), e.hs.Client().Transport.(*http.Transport).TLSClientConfig)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(conn, "POST %s/workspaces HTTP/1.1\r\nHost: vgrid\r\nAuthorization: Bearer %s\r\n"+
		"Content-Type: application/yaml\r\nContent-Length: %d\r\nExpect: 100-continue\r\n\r\n",
		api.Prefix, e.admin.Token(), 64<<20)
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("no answer: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("status %d, want 413 (and no 100 Continue)", resp.StatusCode)
	}
	var body api.Error
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatalf("413 body: %v", err)
	}
	if body.Error.Code != api.CodeInvalid || !strings.Contains(body.Error.Message, "larger than") {
		t.Fatalf("413 body %+v", body.Error)
	}
}

// Go's own client, offering a large body with Expect: 100-continue, gets
// the 413 as an answer rather than a write error.
func TestBodyTooLargeGoClient(t *testing.T) {
	e := newEnv(t)
	tr := &http.Transport{ExpectContinueTimeout: 5 * time.Second, TLSClientConfig: e.hs.Client().Transport.(*http.Transport).TLSClientConfig}
	defer tr.CloseIdleConnections()
	big := bytes.Repeat([]byte("x"), 8<<20)
	for _, expect := range []bool{true, false} {
		req, _ := http.NewRequest("POST", e.hs.URL+api.Prefix+"/workspaces", bytes.NewReader(big))
		req.Header.Set("Authorization", "Bearer "+e.admin.Token())
		if expect {
			req.Header.Set("Expect", "100-continue")
		}
		resp, err := tr.RoundTrip(req)
		if err != nil {
			t.Fatalf("expect %v: %v, want a 413", expect, err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestEntityTooLarge {
			t.Fatalf("expect %v: status %d, want 413", expect, resp.StatusCode)
		}
	}
	// A body of unknown length over the limit is found out while read.
	req, _ := http.NewRequest("POST", e.hs.URL+api.Prefix+"/workspaces", io.MultiReader(bytes.NewReader(big[:maxBody+10])))
	req.Header.Set("Authorization", "Bearer "+e.admin.Token())
	req.ContentLength = -1
	resp, err := tr.RoundTrip(req)
	if err == nil {
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestEntityTooLarge {
			t.Fatalf("chunked: status %d, want 413", resp.StatusCode)
		}
	}
	// A body within the limit still works.
	if _, err := e.admin.CreateWorkspace(context.Background(), []byte(goodSpec)); err != nil {
		t.Fatal(err)
	}
}

// syncBuffer is a log destination safe for concurrent handlers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// recordingWriter notes whether anything was written.
type recordingWriter struct {
	h      http.Header
	status int
	n      int
}

func (w *recordingWriter) Header() http.Header         { return w.h }
func (w *recordingWriter) WriteHeader(s int)           { w.status = s }
func (w *recordingWriter) Write(p []byte) (int, error) { w.n += len(p); return len(p), nil }

// A canceled request is logged as the client going away, at debug level,
// and nothing is written; other errors are still internal errors.
func TestBodyClientGoneNotInternalError(t *testing.T) {
	var buf syncBuffer
	log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	w := &recordingWriter{h: http.Header{}}
	writeError(w, log, fmt.Errorf("list workspaces: %w", context.Canceled))
	if w.status != 0 || w.n != 0 {
		t.Fatalf("wrote %d (%d bytes) to a client that is gone", w.status, w.n)
	}
	if s := buf.String(); !strings.Contains(s, "client went away") || !strings.Contains(s, "level=DEBUG") || strings.Contains(s, "internal error") {
		t.Fatalf("log: %s", s)
	}
	w = &recordingWriter{h: http.Header{}}
	writeError(w, log, fmt.Errorf("disk on fire"))
	if w.status != http.StatusInternalServerError || !strings.Contains(buf.String(), "internal error") {
		t.Fatalf("a real failure: %d, log %s", w.status, buf.String())
	}
}

// End to end: an agent that hangs up during its long poll is not an
// internal error.
func TestBodyClientGoneDuringLongPoll(t *testing.T) {
	st, err := bolt.Open(filepath.Join(t.TempDir(), "store.db"))
	if err != nil {
		t.Fatal(err)
	}
	var buf syncBuffer
	srv, err := New(Config{Store: st, Logger: slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	if err != nil {
		t.Fatal(err)
	}
	hs, _, caPEM := serveTLS(t, srv, srv.Handler(), nil)
	t.Cleanup(func() { hs.Close(); st.Close() })
	e := &env{t: t, hs: hs, caPEM: caPEM, keys: map[string]string{}}
	ctx := context.Background()
	admin, err := srv.Bootstrap(ctx, "default")
	if err != nil {
		t.Fatal(err)
	}
	cl, err := client.New(client.Config{Server: hs.URL, Token: admin, CACert: caPEM})
	if err != nil {
		t.Fatal(err)
	}
	reg, err := cl.RegisterNode(ctx, model.Node{Name: "n1", Capacity: model.Resources{MilliCPU: 1000, Memory: model.GiB}}, e.csr("n1"))
	if err != nil {
		t.Fatal(err)
	}
	node := e.asNode(reg)
	as, err := node.Assignments(ctx, "n1", 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	pctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	if _, err := node.Assignments(pctx, "n1", as.Revision, 30*time.Second); err == nil {
		t.Fatal("the poll did not end with its context")
	}
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(buf.String(), "client went away") && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if s := buf.String(); !strings.Contains(s, "client went away") || strings.Contains(s, "internal error") {
		t.Fatalf("log after a client hung up: %s", s)
	}
}
