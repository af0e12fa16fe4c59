package qemu

import (
	"bufio"
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"testing"
	"time"

	"vgrid/internal/guest/proto"
	"vgrid/internal/model"
)

// TestServeAgentAsksAgain: a guest agent that never saw the first request
// for its facts (written while an incoming migration was still loading
// the guest) is asked again until it answers, and the guest is known
// ready then; once it has answered, it is not asked again.
func TestServeAgentAsksAgain(t *testing.T) {
	defer func(d time.Duration) { agentAskAgain = d }(agentAskAgain)
	agentAskAgain = 20 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	changed := make(chan struct{}, 16)
	v := &vm{id: "w1", log: slog.New(slog.DiscardHandler), ctx: ctx, notify: func() { changed <- struct{}{} }}
	fg, served := serveFake(t, v)
	read := func() proto.Message {
		t.Helper()
		m, ok := fg.read(5 * time.Second)
		if !ok {
			t.Fatalf("no request from the host: %v", fg.sc.Err())
		}
		return m
	}
	if m := read(); m.Type != proto.TypeFacts {
		t.Fatalf("first request %+v, want facts", m)
	}
	// The first request is lost; the second is answered.
	if m := read(); m.Type != proto.TypeFacts {
		t.Fatalf("second request %+v, want facts asked again", m)
	}
	if v.guestInfo() != nil {
		t.Fatal("guest known before it answered")
	}
	fg.write(proto.Message{Type: proto.TypeFacts, Info: &model.GuestInfo{VCPUs: 1, MemoryMiB: 92}})
	select {
	case <-changed:
	case <-time.After(5 * time.Second):
		t.Fatal("the answer was not taken")
	}
	if g := v.guestInfo(); g == nil || g.VCPUs != 1 {
		t.Fatalf("guest %+v after its answer", g)
	}
	// Answered: no more requests (a read times out).
	if m, ok := fg.read(10 * agentAskAgain); ok {
		t.Fatalf("asked again after the answer: %+v", m)
	}
	fg.conn.Close()
	<-served
}

// TestWatchAgent: a guest agent silent while a request waits is pinged;
// one that answers the ping keeps its connection, one that does not loses
// it (the request waiting ends) so that a new one is made.
func TestWatchAgent(t *testing.T) {
	defer func(a, p, s time.Duration) { agentAskAgain, agentPing, agentSilent = a, p, s }(agentAskAgain, agentPing, agentSilent)
	agentAskAgain, agentPing, agentSilent = 20*time.Millisecond, 40*time.Millisecond, 120*time.Millisecond
	for _, answers := range []bool{true, false} {
		ctx, cancel := context.WithCancel(context.Background())
		v := &vm{id: "w1", log: slog.New(slog.DiscardHandler), ctx: ctx, notify: func() {}}
		fg, served := serveFake(t, v)
		read := func() (proto.Message, bool) { return fg.read(2 * time.Second) }
		write := fg.write
		if m, ok := read(); !ok || m.Type != proto.TypeFacts {
			t.Fatalf("first request %+v, want facts", m)
		}
		write(proto.Message{Type: proto.TypeFacts, Info: &model.GuestInfo{VCPUs: 1}})
		// A request the guest never answers.
		requested := make(chan (<-chan proto.Message), 1)
		go func() {
			for {
				if ch, _, err := v.request(proto.Message{Type: proto.TypeExec, ID: "x1"}); err == nil {
					requested <- ch
					return
				}
				time.Sleep(5 * time.Millisecond)
			}
		}()
		if m, ok := read(); !ok || m.Type != proto.TypeExec {
			t.Fatalf("got %+v, want the exec", m)
		}
		start := time.Now()
		pings := 0
		for {
			m, ok := read()
			if !ok {
				break // the host closed the connection
			}
			if m.Type != proto.TypePing {
				t.Fatalf("got %+v, want a ping", m)
			}
			pings++
			if !answers {
				continue
			}
			write(proto.Message{Type: proto.TypePong, ID: m.ID})
			if pings == 3 {
				break
			}
		}
		if answers {
			if pings != 3 || time.Since(start) < 3*agentPing {
				t.Errorf("answering: %d pings in %s, want 3, each after %s of silence", pings, time.Since(start), agentPing)
			}
			fg.conn.Close()
		} else {
			if pings != 1 || time.Since(start) < agentPing+agentSilent {
				t.Errorf("silent: %d pings, connection closed after %s; want 1, closed after %s", pings, time.Since(start), agentPing+agentSilent)
			}
			if _, ok := <-<-requested; ok {
				t.Error("the waiting request got a reply, want its channel closed")
			}
		}
		<-served
		cancel()
	}
}

// fakeGuest is the guest agent's end of a connection in these tests.
type fakeGuest struct {
	t    *testing.T
	conn net.Conn
	sc   *bufio.Scanner
}

// serveFake serves v's agent connection (serveAgent) to a fake guest;
// served is closed when serveAgent returns.
func serveFake(t *testing.T, v *vm) (g *fakeGuest, served <-chan struct{}) {
	host, guest := net.Pipe()
	done := make(chan struct{})
	go func() {
		defer close(done)
		(&Driver{}).serveAgent(v, host)
	}()
	return &fakeGuest{t: t, conn: guest, sc: bufio.NewScanner(guest)}, done
}

// read returns the host's next message; false when none came within d
// or the connection ended.
func (g *fakeGuest) read(d time.Duration) (proto.Message, bool) {
	g.t.Helper()
	_ = g.conn.SetReadDeadline(time.Now().Add(d))
	if !g.sc.Scan() {
		return proto.Message{}, false
	}
	var m proto.Message
	if err := json.Unmarshal(g.sc.Bytes(), &m); err != nil {
		g.t.Fatal(err)
	}
	return m, true
}

// write sends m to the host.
func (g *fakeGuest) write(m proto.Message) {
	g.t.Helper()
	b, _ := json.Marshal(m)
	if _, err := g.conn.Write(append(b, '\n')); err != nil {
		g.t.Fatal(err)
	}
}
