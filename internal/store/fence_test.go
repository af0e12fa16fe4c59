package store_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"vgrid/internal/store"
	"vgrid/internal/store/bolt"
)

const fenceKey = "election/leader"

// fixture is a bolt store with a fence key, some data, and a fenced view
// whose fence returns what key and rev say.
type fixture struct {
	st     store.Store
	view   store.Store
	key    string
	rev    int64
	revs   map[string]int64 // of the data keys
	fenced int64            // the fence key's revision as written
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	st, err := bolt.Open(filepath.Join(t.TempDir(), "vgrid.db"))
	if err != nil {
		t.Fatalf("bolt.Open: %v", err)
	}
	t.Cleanup(func() { _ = st.Close() })
	f := &fixture{st: st, revs: map[string]int64{}}
	ctx := context.Background()
	if f.fenced, err = st.Create(ctx, fenceKey, []byte("me")); err != nil {
		t.Fatalf("Create(fence): %v", err)
	}
	f.key, f.rev = fenceKey, f.fenced
	for _, k := range []string{"d/a", "d/b", "d/c"} {
		if f.revs[k], err = st.Create(ctx, k, []byte("v-"+k)); err != nil {
			t.Fatalf("Create(%s): %v", k, err)
		}
	}
	f.view = store.Fence(st, func() (string, int64) { return f.key, f.rev })
	return f
}

// dump describes every key and the store's revision.
func (f *fixture) dump(t *testing.T) string {
	t.Helper()
	kvs, err := f.st.List(context.Background(), "")
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	rev, err := f.st.Revision(context.Background())
	if err != nil {
		t.Fatalf("Revision: %v", err)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "revision %d\n", rev)
	for _, kv := range kvs {
		fmt.Fprintf(&b, "%s=%s@%d\n", kv.Key, kv.Value, kv.Revision)
	}
	return b.String()
}

// write is one write through the fenced view; check verifies its effect
// and return value when the fence holds.
type write struct {
	name  string
	do    func(ctx context.Context, f *fixture) (int64, error)
	check func(t *testing.T, f *fixture, rev int64, err error)
}

// invalidWrites are refused whatever the fence says.
var invalidWrites = map[string]bool{"Txn naming the fence key": true}

func wantValue(t *testing.T, f *fixture, key, value string, rev int64) {
	t.Helper()
	kv, err := f.st.Get(context.Background(), key)
	if err != nil || string(kv.Value) != value || kv.Revision != rev {
		t.Fatalf("Get(%s): got %q@%d (error %v), want %q@%d", key, kv.Value, kv.Revision, err, value, rev)
	}
}

func wantGone(t *testing.T, f *fixture, key string) {
	t.Helper()
	if _, err := f.st.Get(context.Background(), key); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Get(%s): got error %v, want ErrNotFound", key, err)
	}
}

func wantIs(t *testing.T, what string, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("%s: got error %v, want %v", what, err, target)
	}
	if errors.Is(err, store.ErrNotLeader) {
		t.Fatalf("%s: got %v, which says ErrNotLeader with a valid fence", what, err)
	}
}

func current(t *testing.T, f *fixture) int64 {
	t.Helper()
	rev, err := f.st.Revision(context.Background())
	if err != nil {
		t.Fatalf("Revision: %v", err)
	}
	return rev
}

var writes = []write{
	{"Create", func(ctx context.Context, f *fixture) (int64, error) { return f.view.Create(ctx, "d/new", []byte("n")) },
		func(t *testing.T, f *fixture, rev int64, err error) {
			if err != nil {
				t.Fatalf("Create: %v", err)
			}
			wantValue(t, f, "d/new", "n", rev)
		}},
	{"Create existing", func(ctx context.Context, f *fixture) (int64, error) { return f.view.Create(ctx, "d/a", []byte("n")) },
		func(t *testing.T, f *fixture, _ int64, err error) {
			wantIs(t, "Create(existing)", err, store.ErrExists)
		}},
	{"Update at rev", func(ctx context.Context, f *fixture) (int64, error) {
		return f.view.Update(ctx, "d/a", []byte("u"), f.revs["d/a"])
	}, func(t *testing.T, f *fixture, rev int64, err error) {
		if err != nil {
			t.Fatalf("Update: %v", err)
		}
		wantValue(t, f, "d/a", "u", rev)
	}},
	{"Update rev 0 creates", func(ctx context.Context, f *fixture) (int64, error) { return f.view.Update(ctx, "d/z", []byte("u"), 0) },
		func(t *testing.T, f *fixture, rev int64, err error) {
			if err != nil {
				t.Fatalf("Update: %v", err)
			}
			wantValue(t, f, "d/z", "u", rev)
		}},
	{"Update stale", func(ctx context.Context, f *fixture) (int64, error) {
		return f.view.Update(ctx, "d/a", []byte("u"), f.revs["d/a"]+100)
	}, func(t *testing.T, f *fixture, _ int64, err error) {
		wantIs(t, "Update(stale)", err, store.ErrConflict)
		var ce *store.ConflictError
		if !errors.As(err, &ce) || ce.Key != "d/a" || ce.Actual != f.revs["d/a"] {
			t.Fatalf("Update(stale): got %v, want a ConflictError on d/a at %d", err, f.revs["d/a"])
		}
	}},
	{"Update missing", func(ctx context.Context, f *fixture) (int64, error) {
		return f.view.Update(ctx, "d/none", []byte("u"), 3)
	},
		func(t *testing.T, f *fixture, _ int64, err error) {
			wantIs(t, "Update(missing)", err, store.ErrNotFound)
		}},
	{"Delete at rev", func(ctx context.Context, f *fixture) (int64, error) {
		return 0, f.view.Delete(ctx, "d/b", f.revs["d/b"])
	}, func(t *testing.T, f *fixture, _ int64, err error) {
		if err != nil {
			t.Fatalf("Delete: %v", err)
		}
		wantGone(t, f, "d/b")
	}},
	{"Delete rev 0", func(ctx context.Context, f *fixture) (int64, error) { return 0, f.view.Delete(ctx, "d/b", 0) },
		func(t *testing.T, f *fixture, _ int64, err error) {
			if err != nil {
				t.Fatalf("Delete: %v", err)
			}
			wantGone(t, f, "d/b")
		}},
	{"Delete missing rev 0", func(ctx context.Context, f *fixture) (int64, error) { return 0, f.view.Delete(ctx, "d/none", 0) },
		func(t *testing.T, f *fixture, _ int64, err error) {
			wantIs(t, "Delete(missing, 0)", err, store.ErrNotFound)
		}},
	{"Delete missing at rev", func(ctx context.Context, f *fixture) (int64, error) { return 0, f.view.Delete(ctx, "d/none", 2) },
		func(t *testing.T, f *fixture, _ int64, err error) {
			wantIs(t, "Delete(missing, 2)", err, store.ErrNotFound)
		}},
	{"Delete stale", func(ctx context.Context, f *fixture) (int64, error) {
		return 0, f.view.Delete(ctx, "d/b", f.revs["d/b"]+1)
	}, func(t *testing.T, f *fixture, _ int64, err error) { wantIs(t, "Delete(stale)", err, store.ErrConflict) }},
	{"Txn", func(ctx context.Context, f *fixture) (int64, error) {
		return f.view.Txn(ctx, []store.Op{
			{Key: "d/a", Value: []byte("t"), Rev: f.revs["d/a"]},
			{Key: "d/c", Delete: true},
			{Key: "d/t", Value: []byte("t"), Rev: store.OpMustNotExist},
		})
	}, func(t *testing.T, f *fixture, rev int64, err error) {
		if err != nil {
			t.Fatalf("Txn: %v", err)
		}
		wantValue(t, f, "d/a", "t", rev)
		wantValue(t, f, "d/t", "t", rev)
		wantGone(t, f, "d/c")
	}},
	{"Txn conflict", func(ctx context.Context, f *fixture) (int64, error) {
		return f.view.Txn(ctx, []store.Op{{Key: "d/a", Value: []byte("t"), Rev: store.OpMustNotExist}})
	}, func(t *testing.T, f *fixture, _ int64, err error) {
		wantIs(t, "Txn(conflict)", err, store.ErrExists)
		var ce *store.ConflictError
		if !errors.As(err, &ce) || ce.Key != "d/a" {
			t.Fatalf("Txn(conflict): got %v, want a ConflictError on d/a", err)
		}
	}},
	{"Txn of no change", func(ctx context.Context, f *fixture) (int64, error) {
		return f.view.Txn(ctx, []store.Op{{Key: "d/none", Delete: true}})
	}, func(t *testing.T, f *fixture, rev int64, err error) {
		if err != nil || rev != current(t, f) {
			t.Fatalf("Txn(no change): got %d (error %v), want the current revision %d", rev, err, current(t, f))
		}
	}},
	{"Txn naming the fence key", func(ctx context.Context, f *fixture) (int64, error) {
		return f.view.Txn(ctx, []store.Op{{Key: fenceKey, Value: []byte("x")}})
	}, func(t *testing.T, f *fixture, _ int64, err error) {
		if err == nil || errors.Is(err, store.ErrNotLeader) || errors.Is(err, store.ErrConflict) {
			t.Fatalf("Txn(fence key): got %v, want an invalid-argument error", err)
		}
	}},
}

func TestFence(t *testing.T) {
	// How the fence is lost; "" is not lost.
	losses := []struct {
		name string
		lose func(t *testing.T, f *fixture)
	}{
		{"held", nil},
		{"fence key rewritten", func(t *testing.T, f *fixture) {
			if _, err := f.st.Update(context.Background(), fenceKey, []byte("other"), f.fenced); err != nil {
				t.Fatalf("Update(fence): %v", err)
			}
		}},
		{"fence key deleted", func(t *testing.T, f *fixture) {
			if err := f.st.Delete(context.Background(), fenceKey, 0); err != nil {
				t.Fatalf("Delete(fence): %v", err)
			}
		}},
		{"fence key recreated", func(t *testing.T, f *fixture) {
			ctx := context.Background()
			if err := f.st.Delete(ctx, fenceKey, 0); err != nil {
				t.Fatalf("Delete(fence): %v", err)
			}
			if _, err := f.st.Create(ctx, fenceKey, []byte("other")); err != nil {
				t.Fatalf("Create(fence): %v", err)
			}
		}},
		{"fence says no key", func(t *testing.T, f *fixture) { f.key = "" }},
		{"fence says no revision", func(t *testing.T, f *fixture) { f.rev = 0 }},
		{"fence at a stale revision", func(t *testing.T, f *fixture) { f.rev = f.fenced - 1 }},
	}
	for _, loss := range losses {
		for _, w := range writes {
			t.Run(loss.name+"/"+w.name, func(t *testing.T) {
				f := newFixture(t)
				if loss.lose == nil || invalidWrites[w.name] {
					rev, err := w.do(context.Background(), f)
					w.check(t, f, rev, err)
					return
				}
				loss.lose(t, f)
				before := f.dump(t)
				_, err := w.do(context.Background(), f)
				if !errors.Is(err, store.ErrNotLeader) {
					t.Fatalf("%s after the fence was lost: got error %v, want ErrNotLeader", w.name, err)
				}
				if errors.Is(err, store.ErrConflict) || errors.Is(err, store.ErrExists) || errors.Is(err, store.ErrNotFound) {
					t.Fatalf("%s after the fence was lost: got %v, which also says a condition failed", w.name, err)
				}
				if after := f.dump(t); after != before {
					t.Fatalf("%s after the fence was lost: got store\n%s\nwant it unchanged:\n%s", w.name, after, before)
				}
			})
		}
	}
}

// TestFenceReads checks that reads go through a lost fence.
func TestFenceReads(t *testing.T) {
	f := newFixture(t)
	f.key = ""
	ctx := context.Background()
	if kv, err := f.view.Get(ctx, "d/a"); err != nil || string(kv.Value) != "v-d/a" {
		t.Fatalf("Get: got %q (error %v), want v-d/a", kv.Value, err)
	}
	if kvs, err := f.view.List(ctx, "d/"); err != nil || len(kvs) != 3 {
		t.Fatalf("List: got %d keys (error %v), want 3", len(kvs), err)
	}
	if kvs, more, err := f.view.ListPage(ctx, "d/", "", 2); err != nil || len(kvs) != 2 || !more {
		t.Fatalf("ListPage: got %d keys, more %v (error %v), want 2 and more", len(kvs), more, err)
	}
	if rev, err := f.view.Revision(ctx); err != nil || rev != current(t, f) {
		t.Fatalf("Revision: got %d (error %v), want %d", rev, err, current(t, f))
	}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ch, err := f.view.Watch(wctx, "d/", 1)
	if err != nil {
		t.Fatalf("Watch: %v", err)
	}
	if ev := <-ch; ev.KV.Key != "d/a" {
		t.Fatalf("Watch: got %q first, want d/a", ev.KV.Key)
	}
}

// TestFenceDeleteRace checks that a fenced Delete with rev 0 deletes the
// key even while another writer keeps rewriting it.
func TestFenceDeleteRace(t *testing.T) {
	f := newFixture(t)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for ctx.Err() == nil {
			_, _ = f.st.Update(ctx, "d/a", []byte("again"), 0)
		}
	}()
	for range 20 {
		if err := f.view.Delete(context.Background(), "d/a", 0); err != nil && !errors.Is(err, store.ErrNotFound) {
			t.Errorf("Delete(d/a, 0) while rewritten: got %v, want nil or ErrNotFound", err)
		}
	}
	cancel()
	wg.Wait()
}

// TestFenceTrackWrites: the writes a fenced view makes are counted under
// TrackWrites's context; reads, writes refused by the fence and writes
// under another context are not.
func TestFenceTrackWrites(t *testing.T) {
	f := newFixture(t)
	ctx, wrote := store.TrackWrites(context.Background())
	if _, err := f.view.Get(ctx, "d/a"); err != nil || wrote() {
		t.Fatalf("after a read: wrote %v (error %v), want false", wrote(), err)
	}
	if _, err := f.view.Update(context.Background(), "d/a", []byte("x"), 0); err != nil || wrote() {
		t.Fatalf("after a write under another context: wrote %v (error %v), want false", wrote(), err)
	}
	f.key = ""
	if _, err := f.view.Update(ctx, "d/a", []byte("y"), 0); !errors.Is(err, store.ErrNotLeader) || wrote() {
		t.Fatalf("after a fenced-off write: wrote %v (error %v), want false and ErrNotLeader", wrote(), err)
	}
	f.key = fenceKey
	if err := f.view.Delete(ctx, "d/b", 0); err != nil || !wrote() {
		t.Fatalf("after a delete: wrote %v (error %v), want true", wrote(), err)
	}
}
