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
	host, guest := net.Pipe()
	served := make(chan struct{})
	go func() {
		defer close(served)
		(&Driver{}).serveAgent(v, host)
	}()

	sc := bufio.NewScanner(guest)
	read := func() proto.Message {
		t.Helper()
		_ = guest.SetReadDeadline(time.Now().Add(5 * time.Second))
		if !sc.Scan() {
			t.Fatalf("no request from the host: %v", sc.Err())
		}
		var m proto.Message
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatal(err)
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
	b, _ := json.Marshal(proto.Message{Type: proto.TypeFacts, Info: &model.GuestInfo{VCPUs: 1, MemoryMiB: 92}})
	if _, err := guest.Write(append(b, '\n')); err != nil {
		t.Fatal(err)
	}
	select {
	case <-changed:
	case <-time.After(5 * time.Second):
		t.Fatal("the answer was not taken")
	}
	if g := v.guestInfo(); g == nil || g.VCPUs != 1 {
		t.Fatalf("guest %+v after its answer", g)
	}
	// Answered: no more requests (a read times out).
	_ = guest.SetReadDeadline(time.Now().Add(10 * agentAskAgain))
	if sc.Scan() {
		t.Fatalf("asked again after the answer: %s", sc.Text())
	}
	guest.Close()
	<-served
}
