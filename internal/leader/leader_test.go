package leader

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"vgrid/internal/store"
	"vgrid/internal/store/etcd"
	"vgrid/internal/store/etcd/etcdtest"
)

// gate relays TCP to a target and can hold every byte in both directions
// (the connections stay open): what etcd sees of a replica paused by
// SIGSTOP, or stuck, while the replica itself goes on in its own eyes.
type gate struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	cond   *sync.Cond
	held   bool
}

func newGate(t *testing.T, target string) *gate {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := &gate{ln: ln, target: target}
	g.cond = sync.NewCond(&g.mu)
	t.Cleanup(func() { g.hold(false); ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			u, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			go g.pipe(u, c)
			go g.pipe(c, u)
		}
	}()
	return g
}

func (g *gate) pipe(dst, src net.Conn) {
	defer dst.Close()
	defer src.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			g.mu.Lock()
			for g.held {
				g.cond.Wait()
			}
			g.mu.Unlock()
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func (g *gate) hold(on bool) {
	g.mu.Lock()
	g.held = on
	g.mu.Unlock()
	g.cond.Broadcast()
}

const storePrefix = "/vgrid-test/"

// replica is an elector with its own etcd connection and fenced store.
type replica struct {
	el     *Elector
	raw    *etcd.Store
	fenced store.Store
	stop   func()
}

func startReplica(t *testing.T, endpoint, name string) *replica {
	ctx, cancel := context.WithCancel(context.Background())
	raw, err := etcd.Open(ctx, etcd.Config{Endpoints: []string{endpoint}, Prefix: storePrefix, DialTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	el, err := New(Config{Client: raw.Client(), Prefix: storePrefix + "election", StorePrefix: storePrefix,
		Value: "https://" + name, TTL: time.Second, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); _ = el.Run(ctx) }()
	r := &replica{el: el, raw: raw, fenced: store.Fence(raw, el.Fence)}
	r.stop = func() {
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Errorf("elector %s did not stop", name)
		}
		raw.Close()
	}
	t.Cleanup(r.stop)
	return r
}

func waitState(t *testing.T, what string, ok func() bool) time.Duration {
	t.Helper()
	t0 := time.Now()
	for time.Since(t0) < 15*time.Second {
		if ok() {
			return time.Since(t0)
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("%s: not within 15s", what)
	return 0
}

// TestDeposedLeaderWriteRefused: replica A leads; etcd stops hearing from
// it (its connection held, as if A were paused) past its election's
// lease; B is elected and writes. A, resumed, still takes itself for the
// leader when it writes — a write it sent while held, and one sent
// after — and both are refused by the fence (store.ErrNotLeader), leave
// nothing, and A steps down.
func TestDeposedLeaderWriteRefused(t *testing.T) {
	ec := etcdtest.New(t, 1)
	ep := ec.Endpoints()[0]
	g := newGate(t, strings.TrimPrefix(ep, "http://"))
	ctx := context.Background()

	a := startReplica(t, "http://"+g.ln.Addr().String(), "a")
	waitState(t, "A leads", func() bool { return a.el.State().Leading })
	b := startReplica(t, ep, "b")
	waitState(t, "B sees A lead", func() bool { return b.el.State().Leader == "https://a" })
	if b.el.State().Leading {
		t.Fatal("B leads while A does")
	}
	if _, err := b.fenced.Create(ctx, "booked/h1", []byte("by b, never led")); !errors.Is(err, store.ErrNotLeader) {
		t.Fatalf("a write of B, which never led, through the fence: %v, want ErrNotLeader", err)
	}
	if _, err := a.fenced.Create(ctx, "booked/h1", []byte("a")); err != nil {
		t.Fatalf("the leader's write: %v", err)
	}

	// A is held: etcd hears nothing from it, A's own state still says it
	// leads (it hears nothing either).
	g.hold(true)
	heldAt := time.Now()
	sent := make(chan error, 1)
	go func() {
		_, err := a.fenced.Update(ctx, "booked/h1", []byte("a, while held"), 0)
		sent <- err
	}()
	waitState(t, "B elected once A's lease ended", func() bool { return b.el.State().Leading })
	t.Logf("B leads %s after A was held (election TTL 1s)", (time.Since(heldAt)).Round(time.Millisecond))
	if _, err := b.fenced.Update(ctx, "booked/h1", []byte("b"), 0); err != nil {
		t.Fatalf("the new leader's write: %v", err)
	}
	aKey, aRev := a.el.Fence()
	if bKey, bRev := b.el.Fence(); bKey == aKey || bRev <= aRev {
		t.Fatalf("fences: A %s@%d, B %s@%d: want B's later and distinct", aKey, aRev, bKey, bRev)
	}

	// A resumes.
	g.hold(false)
	select {
	case err := <-sent:
		if !errors.Is(err, store.ErrNotLeader) {
			t.Fatalf("A's write sent while held, applied after B was elected: %v, want ErrNotLeader", err)
		}
		if errors.Is(err, store.ErrConflict) {
			t.Fatalf("a fenced write must not look like a conflict (callers retry those): %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("A's held write never returned")
	}
	if _, err := a.fenced.Txn(ctx, []store.Op{{Key: "booked/h2", Value: []byte("a, resumed")}}); !errors.Is(err, store.ErrNotLeader) {
		t.Fatalf("A's write after it resumed: %v, want ErrNotLeader", err)
	}
	kv, err := b.raw.Get(ctx, "booked/h1")
	if err != nil || string(kv.Value) != "b" {
		t.Fatalf("booked/h1 = %q, %v; want B's value", kv.Value, err)
	}
	if _, err := b.raw.Get(ctx, "booked/h2"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("booked/h2, written by the deposed A: %v, want not found", err)
	}
	waitState(t, "A steps down", func() bool { return !a.el.State().Leading })
	if s := a.el.State(); s.Leader == "https://a" {
		t.Errorf("A still names itself the leader: %+v", s)
	}
}

// TestResignHandsOver: a leader that stops resigns, and the next replica
// leads well before the election's lease would have ended.
func TestResignHandsOver(t *testing.T) {
	ec := etcdtest.New(t, 1)
	ep := ec.Endpoints()[0]
	a := startReplica(t, ep, "a")
	waitState(t, "A leads", func() bool { return a.el.State().Leading })
	b := startReplica(t, ep, "b")
	waitState(t, "B follows A", func() bool { return b.el.State().Leader == "https://a" })
	t0 := time.Now()
	a.stop()
	waitState(t, "B leads", func() bool { return b.el.State().Leading })
	if d := time.Since(t0); d > 900*time.Millisecond {
		t.Errorf("B led %s after A resigned: the hand-over waited for the lease", d)
	}
	if s := b.el.State(); s.Leader != "https://b" || s.Term == 0 {
		t.Errorf("B's state %+v", s)
	}
}

// TestNewChecksConfig: an elector needs a client, and its election's
// prefix under the store's (the fence key is a store key).
func TestNewChecksConfig(t *testing.T) {
	if _, err := New(Config{Prefix: "/vgrid/election", StorePrefix: "/vgrid/"}); err == nil || !strings.Contains(err.Error(), "no etcd client") {
		t.Errorf("no client: %v", err)
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{"127.0.0.1:1"}})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	if _, err := New(Config{Client: cli, Prefix: "/other/election", StorePrefix: "/vgrid/"}); err == nil || !strings.Contains(err.Error(), "not under the store's prefix") {
		t.Errorf("prefix outside the store: %v", err)
	}
	e, err := New(Config{Client: cli, Prefix: "/vgrid/election", StorePrefix: "/vgrid/"})
	if err != nil {
		t.Fatal(err)
	}
	if k, r := e.Fence(); k != "" || r != 0 || e.Led() {
		t.Errorf("a new elector's fence %q@%d: want none", k, r)
	}
}
