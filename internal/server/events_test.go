package server

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"vgrid/api"
	"vgrid/internal/model"
)

// sse is one open GET /events stream; its events come on ch.
type sse struct {
	ch   chan string // "change <json>" per event, closed at EOF
	body io.Closer
}

func openEvents(t *testing.T, hc *http.Client, base, token string) *sse {
	t.Helper()
	req, _ := http.NewRequest("GET", base+api.Prefix+"/events", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Accept", "text/event-stream")
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		t.Fatalf("GET /events: %d %s %s", resp.StatusCode, resp.Header.Get("Content-Type"), b)
	}
	s := &sse{ch: make(chan string, 100), body: resp.Body}
	t.Cleanup(func() { resp.Body.Close() })
	ready := make(chan struct{})
	go func() {
		defer close(s.ch)
		sc := bufio.NewScanner(resp.Body)
		var typ string
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == ": ready":
				close(ready)
			case strings.HasPrefix(line, "event: "):
				typ = strings.TrimPrefix(line, "event: ")
			case strings.HasPrefix(line, "data: "):
				s.ch <- typ + " " + strings.TrimPrefix(line, "data: ")
			}
		}
	}()
	select {
	case <-ready:
	case <-time.After(5 * time.Second):
		t.Fatal("no ready comment on the event stream")
	}
	return s
}

// collect reads events until each of wants is in one of them (or the
// time is up) and returns all read.
func (s *sse) collect(t *testing.T, wants ...string) []string {
	t.Helper()
	var got []string
	deadline := time.After(5 * time.Second)
	left := map[string]bool{}
	for _, w := range wants {
		left[w] = true
	}
	for len(left) > 0 {
		select {
		case ev, ok := <-s.ch:
			if !ok {
				t.Fatalf("stream ended before %v; got %v", wants, got)
			}
			got = append(got, ev)
			for w := range left {
				if strings.Contains(ev, w) {
					delete(left, w)
				}
			}
		case <-deadline:
			t.Fatalf("no event with %v within 5s; got %v", left, got)
		}
	}
	return got
}

func wsSpec(name string) []byte {
	return []byte(fmt.Sprintf(`{"name":%q,"image":"vgrid-guest","quantum":{"vcpus":1,"memory":"256Mi"},"duration":"1h"}`, name))
}

// A user's stream carries its project's changes and the hosts' only; an
// admin's carries everyone's.
func TestEventsStream(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	pa, err := e.srv.CreateToken(ctx, "pa", RoleUser)
	if err != nil {
		t.Fatal(err)
	}
	pb, err := e.srv.CreateToken(ctx, "pb", RoleUser)
	if err != nil {
		t.Fatal(err)
	}
	// Without Accept: text/event-stream, a clear refusal, not a hang.
	if code, _, body := e.call(t, "GET", "/events", pa); code != http.StatusNotAcceptable || !strings.Contains(body.Message, "text/event-stream") {
		t.Errorf("GET /events without Accept: %d %q", code, body.Message)
	}
	sa := openEvents(t, e.hs.Client(), e.hs.URL, pa)
	sadm := openEvents(t, e.hs.Client(), e.hs.URL, e.admin.Token())
	if _, err := e.admin.WithToken(pb).CreateWorkspace(ctx, wsSpec("pb-secret")); err != nil {
		t.Fatal(err)
	}
	if _, err := e.admin.WithToken(pa).CreateWorkspace(ctx, wsSpec("pa-own")); err != nil {
		t.Fatal(err)
	}
	got := sa.collect(t, `"kind":"workspaces","name":"pa-own"`, `"kind":"leases","name":"pa-own`)
	for _, ev := range got {
		if !strings.HasPrefix(ev, "change ") {
			t.Errorf("event type: %q", ev)
		}
		if strings.Contains(ev, "pb") {
			t.Errorf("pa's stream shows pb's object: %s", ev)
		}
		var x api.Event
		if err := json.Unmarshal([]byte(strings.TrimPrefix(ev, "change ")), &x); err != nil || x.Revision == 0 {
			t.Errorf("event %q: %+v %v", ev, x, err)
		}
	}
	sadm.collect(t, `"kind":"workspaces","name":"pb/pb-secret"`, `"kind":"workspaces","name":"pa/pa-own"`)
	// Hosts are everybody's: a heartbeat is seen by pa.
	if err := e.node.Heartbeat(ctx, model.Node{Name: "n1"}); err != nil {
		t.Fatal(err)
	}
	sa.collect(t, `"kind":"nodes","name":"n1"`)
}

// Shutdown of the HTTP server ends open streams (it would otherwise wait
// for them until its deadline).
func TestEventsEndOnShutdown(t *testing.T) {
	e := newEnv(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: e.srv.Handler(), ReadHeaderTimeout: 10 * time.Second}
	go hs.Serve(ln)
	s := openEvents(t, http.DefaultClient, "http://"+ln.Addr().String(), e.admin.Token())
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	t0 := time.Now()
	if err := hs.Shutdown(ctx); err != nil {
		t.Fatalf("shutdown with an open stream: %v after %v", err, time.Since(t0))
	}
	select {
	case _, ok := <-s.ch:
		for ok {
			_, ok = <-s.ch
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the stream did not end at shutdown")
	}
}

// The calendar as JSON: the caller's bars told in full, other projects'
// masked, the hosts' capacity; admins see everything.
func TestCalendarJSON(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	pa, _ := e.srv.CreateToken(ctx, "pa", RoleUser)
	pb, _ := e.srv.CreateToken(ctx, "pb", RoleUser)
	for _, c := range []struct{ tok, name string }{{pa, "pa-own"}, {pb, "pb-secret"}} {
		if _, err := e.admin.WithToken(c.tok).CreateWorkspace(ctx, wsSpec(c.name)); err != nil {
			t.Fatal(err)
		}
	}
	get := func(tok, query, accept string) (int, string) {
		req, _ := http.NewRequest("GET", e.hs.URL+api.Prefix+"/calendar"+query, nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		if accept != "" {
			req.Header.Set("Accept", accept)
		}
		resp, err := e.hs.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	code, body := get(pa, "?format=json&from=-1h&to=4h", "")
	if code != 200 {
		t.Fatalf("calendar json: %d %s", code, body)
	}
	if strings.Contains(body, "pb") {
		t.Errorf("pa's calendar names pb's lease: %s", body)
	}
	var cal api.Calendar
	if err := json.Unmarshal([]byte(body), &cal); err != nil {
		t.Fatal(err)
	}
	if len(cal.Rows) != 1 || cal.Rows[0].Host != "n1" || len(cal.Hosts) != 1 || cal.Hosts[0].Capacity.MilliCPU != 2000 {
		t.Fatalf("rows/hosts: %+v %+v", cal.Rows, cal.Hosts)
	}
	var own, masked int
	for _, b := range cal.Rows[0].Bars {
		switch {
		case b.Masked:
			masked++
			if b.Lease != "*" || b.Project != "" || len(b.Members) != 0 || b.Kind != "" {
				t.Errorf("masked bar tells too much: %+v", b)
			}
		case b.Lease == "pa/pa-own":
			own++
			if b.Project != "pa" || b.Kind != model.LeaseImmediate || b.State == "" || len(b.Members) != 1 ||
				b.Resources.MilliCPU != 1000 || b.Resources.Memory != 256*model.MiB || !b.To.After(b.From) {
				t.Errorf("own bar: %+v", b)
			}
		default:
			t.Errorf("unexpected bar %+v", b)
		}
	}
	if own != 1 || masked != 1 {
		t.Errorf("%d own bars, %d masked, want 1 and 1", own, masked)
	}
	if cal.Revision == 0 || cal.Now.IsZero() {
		t.Errorf("revision %d, now %v", cal.Revision, cal.Now)
	}
	// Accept asks for JSON too; the admin sees both projects.
	if code, body := get(e.admin.Token(), "", "application/json"); code != 200 || !strings.Contains(body, `"lease": "pb/pb-secret"`) || strings.Contains(body, `"masked"`) {
		t.Errorf("admin calendar json: %d %s", code, body)
	}
	// The text form is unchanged; a bad format is named.
	if code, body := get(pa, "", ""); code != 200 || strings.HasPrefix(body, "{") {
		t.Errorf("text calendar: %d %s", code, body)
	}
	if code, body := get(pa, "?format=xml", ""); code != 400 || !strings.Contains(body, "format") {
		t.Errorf("format=xml: %d %s", code, body)
	}
}
