package etcd_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
	"go.uber.org/zap"

	"vgrid/internal/store"
	"vgrid/internal/store/etcd"
	"vgrid/internal/store/etcd/etcdtest"
)

// leader returns the index of the cluster's leader.
func leader(ctx context.Context, t *testing.T, cli *clientv3.Client, eps []string) int {
	t.Helper()
	for ctx.Err() == nil {
		for i, ep := range eps {
			// A dead member would hold the call until its deadline.
			sctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
			st, err := cli.Status(sctx, ep)
			cancel()
			if err == nil && st.Leader != 0 && st.Leader == st.Header.MemberId {
				return i
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("no leader found: %v", ctx.Err())
	return -1
}

// createRetrying creates key, retrying failures for up to 15s: writes fail
// while a new leader is elected. ErrExists after a failed attempt means
// that attempt was applied after all.
func createRetrying(t *testing.T, s store.Store, key string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	var last error
	for attempt := 0; time.Now().Before(deadline); attempt++ {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, err := s.Create(ctx, key, []byte("v-"+key))
		cancel()
		if err == nil || (attempt > 0 && errors.Is(err, store.ErrExists)) {
			return
		}
		last = err
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("Create(%s) did not go through within 15s: %v", key, last)
}

// TestMemberKilled kills each member of a 3-member cluster in turn, the
// leader first: the store goes on (writes, and a watch opened before,
// which is resumed on another member when its own dies), and each killed
// member, restarted, catches up.
func TestMemberKilled(t *testing.T) {
	c := etcdtest.New(t, 3)
	s := open(t, c, "/f/")
	defer s.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	createRetrying(t, s, "f/before")
	ch, err := s.Watch(ctx, "f/", 0)
	if err != nil {
		t.Fatal(err)
	}
	first := leader(ctx, t, s.Client(), c.Endpoints())
	order := []int{first, (first + 1) % 3, (first + 2) % 3}
	var last int64
	n := 0 // keys written
	for round, dead := range order {
		if err := c.Kill(dead); err != nil {
			t.Fatal(err)
		}
		for range 4 {
			createRetrying(t, s, fmt.Sprintf("f/%02d", n))
			n++
		}
		// Every write is seen once, in order, by the watch made before.
		for i := n - 4; i < n; i++ {
			want := fmt.Sprintf("f/%02d", i)
			select {
			case ev, ok := <-ch:
				if !ok {
					t.Fatalf("round %d (member %d killed): watch closed before %s", round, dead, want)
				}
				if ev.KV.Key != want || ev.Type != store.EventPut || ev.KV.Revision <= last {
					t.Fatalf("round %d: watch: got %d %s@%d, want a put of %s after %d", round, ev.Type, ev.KV.Key, ev.KV.Revision, want, last)
				}
				last = ev.KV.Revision
			case <-ctx.Done():
				t.Fatalf("round %d: watch: no event for %s", round, want)
			}
		}
		if l := leader(ctx, t, s.Client(), c.Endpoints()); l == dead {
			t.Fatalf("round %d: leader is the killed member %d", round, dead)
		}
		if err := c.Restart(dead); err != nil {
			t.Fatal(err)
		}
		catchUp(ctx, t, c.Endpoints()[dead], s.Key(fmt.Sprintf("f/%02d", n-1)), last)
	}
	// And a store using only the last restarted member works.
	s1 := openEndpoints(t, c.Endpoints()[order[2]:order[2]+1], "/f/", 0)
	defer s1.Close()
	kvs, err := s1.List(ctx, "f/")
	if err != nil || len(kvs) != n+1 {
		t.Fatalf("List through a restarted member: got %d keys (error %v), want %d", len(kvs), err, n+1)
	}
	if _, err := s1.Create(ctx, "f/after", nil); err != nil {
		t.Fatalf("Create through a restarted member: %v", err)
	}
}

// catchUp waits until the member at ep has key at rev in its own data (a
// serializable read answers from the member alone).
func catchUp(ctx context.Context, t *testing.T, ep, key string, rev int64) {
	t.Helper()
	one, err := clientv3.New(clientv3.Config{Endpoints: []string{ep}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer one.Close()
	for {
		resp, err := one.Get(ctx, key, clientv3.WithSerializable())
		if err == nil && len(resp.Kvs) == 1 && resp.Kvs[0].ModRevision == rev {
			return
		}
		if ctx.Err() != nil {
			t.Fatalf("restarted member %s did not catch up to %s@%d: last read %v (error %v)", ep, key, rev, resp, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func openEndpoints(t *testing.T, eps []string, prefix string, timeout time.Duration) *etcd.Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := etcd.Open(ctx, etcd.Config{Endpoints: eps, Prefix: prefix, RequestTimeout: timeout, Logger: quiet})
	if err != nil {
		t.Fatalf("Open(%v): %v", eps, err)
	}
	return s
}

// TestNoQuorum checks that without a quorum requests fail within the
// request timeout, saying which endpoints and why, and work again once
// the quorum is back.
func TestNoQuorum(t *testing.T) {
	c := etcdtest.New(t, 3)
	s := openEndpoints(t, c.Endpoints(), "/q/", 1500*time.Millisecond)
	defer s.Close()
	createRetrying(t, s, "q/a")
	for _, i := range []int{1, 2} {
		if err := c.Kill(i); err != nil {
			t.Fatal(err)
		}
	}
	start := time.Now()
	_, err := s.Create(context.Background(), "q/b", nil)
	took := time.Since(start)
	if err == nil {
		t.Fatalf("Create without a quorum: got no error")
	}
	if took > 5*time.Second {
		t.Fatalf("Create without a quorum: failed after %v, want about the 1.5s request timeout", took)
	}
	for _, want := range []string{strings.Join(c.Endpoints(), ","), "quorum"} {
		if !strings.Contains(err.Error(), want) {
			t.Fatalf("Create without a quorum: got %v, want it to say %q", err, want)
		}
	}
	// A caller's own deadline is honoured and explained the same way.
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	_, err = s.Get(ctx, "q/a")
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "quorum") {
		t.Fatalf("Get without a quorum: got %v, want a deadline error about the quorum", err)
	}
	for _, i := range []int{1, 2} {
		if err := c.Restart(i); err != nil {
			t.Fatal(err)
		}
	}
	createRetrying(t, s, "q/c")
}

// TestElectionFence is the wiring of leader election: an election held
// under the store's prefix, its key (as a store key) and revision as the
// fence. Writes go through while the campaign is won and fail with
// ErrNotLeader once it is resigned or the session's lease is gone.
func TestElectionFence(t *testing.T) {
	c := etcdtest.New(t, 1)
	s := open(t, c, "/e/")
	defer s.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	campaign := func() (*concurrency.Session, *concurrency.Election, func() (string, int64)) {
		sess, err := concurrency.NewSession(s.Client(), concurrency.WithTTL(5))
		if err != nil {
			t.Fatal(err)
		}
		e := concurrency.NewElection(sess, s.Key("election/"))
		if err := e.Campaign(ctx, "me"); err != nil {
			t.Fatal(err)
		}
		fence := func() (string, int64) {
			k, ok := s.StoreKey(e.Key())
			if !ok {
				return "", 0
			}
			return k, e.Rev()
		}
		return sess, e, fence
	}
	sess, e, fence := campaign()
	fenced := store.Fence(s, fence)
	if _, err := fenced.Create(ctx, "data/a", []byte("1")); err != nil {
		t.Fatalf("Create while leading: %v", err)
	}
	if err := e.Resign(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := fenced.Create(ctx, "data/b", []byte("1")); !errors.Is(err, store.ErrNotLeader) {
		t.Fatalf("Create after resigning: got %v, want ErrNotLeader", err)
	}
	_ = sess.Close()

	// A new session wins; its lease is revoked (as when it expires).
	sess2, _, fence2 := campaign()
	fenced2 := store.Fence(s, fence2)
	if _, err := fenced2.Update(ctx, "data/a", []byte("2"), 0); err != nil {
		t.Fatalf("Update while leading: %v", err)
	}
	if _, err := s.Client().Revoke(ctx, sess2.Lease()); err != nil {
		t.Fatal(err)
	}
	if err := fenced2.Delete(ctx, "data/a", 0); !errors.Is(err, store.ErrNotLeader) {
		t.Fatalf("Delete after the lease is gone: got %v, want ErrNotLeader", err)
	}
	if kv, err := s.Get(ctx, "data/a"); err != nil || string(kv.Value) != "2" {
		t.Fatalf("Get(data/a): got %q (error %v), want 2", kv.Value, err)
	}
	_ = sess2.Close()
}
