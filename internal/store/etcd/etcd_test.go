package etcd_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"vgrid/internal/store"
	"vgrid/internal/store/etcd"
	"vgrid/internal/store/etcd/etcdtest"
	"vgrid/internal/store/storetest"
)

// quiet logs only the store's warnings, to stderr (a test's t.Log cannot
// take lines from watch goroutines that outlive it).
var quiet = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))

// opener opens stores on one cluster, a prefix per directory: subtests do
// not see each other's keys, and reopening a directory finds its keys.
func opener(c *etcdtest.Cluster) storetest.Open {
	var mu sync.Mutex
	prefixes := map[string]string{}
	return func(t *testing.T, dir string) store.Store {
		mu.Lock()
		p, ok := prefixes[dir]
		if !ok {
			p = fmt.Sprintf("/test/%d/", len(prefixes))
			prefixes[dir] = p
		}
		mu.Unlock()
		return open(t, c, p)
	}
}

func open(t testing.TB, c *etcdtest.Cluster, prefix string) *etcd.Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := etcd.Open(ctx, etcd.Config{Endpoints: c.Endpoints(), Prefix: prefix, Logger: quiet})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return s
}

func TestConformance(t *testing.T) {
	storetest.Run(t, opener(etcdtest.New(t, 1)))
}

// TestConformanceThreeMembers runs the cases of transactions, watches and
// concurrent writers against a replicated cluster, where requests go to
// different members.
func TestConformanceThreeMembers(t *testing.T) {
	storetest.RunMatching(t, opener(etcdtest.New(t, 3)), func(name string) bool {
		return strings.HasPrefix(name, "Txn") || strings.HasPrefix(name, "Watch") || strings.HasPrefix(name, "Concurrent")
	})
}

func TestKeys(t *testing.T) {
	c := etcdtest.New(t, 1)
	s := open(t, c, "/pfx/")
	defer s.Close()
	if got := s.Key("ws/p/a"); got != "/pfx/ws/p/a" {
		t.Fatalf("Key: got %q, want /pfx/ws/p/a", got)
	}
	for _, tt := range []struct {
		etcdKey, want string
		ok            bool
	}{{"/pfx/ws/p/a", "ws/p/a", true}, {"/pfx/", "", true}, {"/other/ws", "", false}, {"/pf", "", false}} {
		if got, ok := s.StoreKey(tt.etcdKey); got != tt.want || ok != tt.ok {
			t.Fatalf("StoreKey(%q): got %q, %v, want %q, %v", tt.etcdKey, got, ok, tt.want, tt.ok)
		}
	}
	// A key written by the store is at Key(...) in etcd, at its revision,
	// and a key written beside the prefix is not seen.
	ctx := context.Background()
	rev, err := s.Create(ctx, "k", []byte("v"))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := s.Client().Get(ctx, "/pfx/k")
	if err != nil || len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "v" || resp.Kvs[0].ModRevision != rev {
		t.Fatalf("etcd Get(/pfx/k): got %v (error %v), want v at %d", resp, err, rev)
	}
	if _, err := s.Client().Put(ctx, "/pfxk", "beside"); err != nil {
		t.Fatal(err)
	}
	if kvs, err := s.List(ctx, ""); err != nil || len(kvs) != 1 {
		t.Fatalf("List: got %v (error %v), want only k", kvs, err)
	}
	if _, err := s.Get(ctx, ""); err != nil && !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Get(\"\"): %v", err)
	}
}

func TestOpenErrors(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name string
		cfg  etcd.Config
		want string
	}{
		{"no endpoints", etcd.Config{}, "Config.Endpoints"},
		{"empty endpoint", etcd.Config{Endpoints: []string{" "}}, "Config.Endpoints[0]"},
		{"cert without key", etcd.Config{Endpoints: []string{"https://127.0.0.1:1"}, CertFile: "c.pem"}, "Config.CertFile"},
		{"missing CA", etcd.Config{Endpoints: []string{"https://127.0.0.1:1"}, CAFile: "/nonexistent/ca.pem"}, "Config.CAFile"},
		{"negative timeout", etcd.Config{Endpoints: []string{"http://127.0.0.1:1"}, DialTimeout: -1}, "DialTimeout"},
		{"nobody listening", etcd.Config{Endpoints: []string{"http://127.0.0.1:1"}, DialTimeout: 500 * time.Millisecond, Logger: quiet},
			"etcd at http://127.0.0.1:1: no answer within 500ms"},
	}
	for _, tt := range tests {
		s, err := etcd.Open(ctx, tt.cfg)
		if err == nil {
			_ = s.Close()
			t.Fatalf("Open(%s): got no error, want one", tt.name)
		}
		if !strings.Contains(err.Error(), tt.want) {
			t.Fatalf("Open(%s): got %v, want it to say %q", tt.name, err, tt.want)
		}
	}
}

// TestWatchCompacted checks that a watch from before the compaction is
// refused with ErrCompacted, and one from just before the compaction
// revision replays from it.
func TestWatchCompacted(t *testing.T) {
	c := etcdtest.New(t, 1)
	s := open(t, c, "/c/")
	defer s.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var revs []int64
	for i := range 5 {
		rev, err := s.Update(ctx, "w/k", []byte(fmt.Sprint(i)), 0)
		if err != nil {
			t.Fatal(err)
		}
		revs = append(revs, rev)
	}
	// Keep revs[2] and later.
	if _, err := s.Client().Compact(ctx, revs[2], clientv3.WithCompactPhysical()); err != nil {
		t.Fatalf("Compact: %v", err)
	}
	for _, from := range []int64{revs[0], revs[2] - 2} {
		if _, err := s.Watch(ctx, "w/", from); !errors.Is(err, store.ErrCompacted) {
			t.Fatalf("Watch(from %d) after a compaction at %d: got %v, want ErrCompacted", from, revs[2], err)
		}
	}
	ch, err := s.Watch(ctx, "w/", revs[2]-1)
	if err != nil {
		t.Fatalf("Watch(from %d): got %v, want none", revs[2]-1, err)
	}
	for i := 2; i < 5; i++ {
		select {
		case ev := <-ch:
			if ev.KV.Revision != revs[i] || string(ev.KV.Value) != fmt.Sprint(i) {
				t.Fatalf("Watch: got %q@%d, want %d@%d", ev.KV.Value, ev.KV.Revision, i, revs[i])
			}
		case <-ctx.Done():
			t.Fatalf("Watch: no event at %d", revs[i])
		}
	}
	// Other reads are unaffected.
	if _, err := s.Get(ctx, "w/k"); err != nil {
		t.Fatalf("Get after compaction: %v", err)
	}
}

// TestWatchLagging checks that a reader that never reads has its channel
// closed once WatchBuffer events are waiting.
func TestWatchLagging(t *testing.T) {
	c := etcdtest.New(t, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	s, err := etcd.Open(ctx, etcd.Config{Endpoints: c.Endpoints(), WatchBuffer: 5, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ch, err := s.Watch(ctx, "l/", 0)
	if err != nil {
		t.Fatal(err)
	}
	ops := make([]store.Op, 20)
	for i := range ops {
		ops[i] = store.Op{Key: fmt.Sprintf("l/%02d", i), Value: []byte("x")}
	}
	if _, err := s.Txn(ctx, ops); err != nil {
		t.Fatal(err)
	}
	n := 0
	for range ch {
		n++
	}
	if ctx.Err() != nil || n >= len(ops) {
		t.Fatalf("lagging watch: got %d events (ctx %v), want the channel closed before all %d", n, ctx.Err(), len(ops))
	}
}
