package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"vgrid/internal/store"
)

// Open opens a backend on dir. The suite may call it twice on one dir (after
// closing the first store) to check persistence; it closes every store it
// opens.
type Open func(t *testing.T, dir string) store.Store

// eventTimeout is how long the suite waits for a watch event.
const eventTimeout = 10 * time.Second

// Run runs the conformance suite against the backend that open creates.
func Run(t *testing.T, open Open) {
	RunMatching(t, open, func(string) bool { return true })
}

// RunMatching runs the cases of the suite whose names match says yes to
// (e.g. a short run against a slower, replicated setup).
func RunMatching(t *testing.T, open Open, match func(name string) bool) {
	tests := []struct {
		name string
		fn   func(t *testing.T, open Open)
	}{
		{"GetMissing", testGetMissing},
		{"CreateGet", testCreateGet},
		{"CreateExisting", testCreateExisting},
		{"Update", testUpdate},
		{"UpdateStale", testUpdateStale},
		{"UpdateUnconditional", testUpdateUnconditional},
		{"UpdateMissing", testUpdateMissing},
		{"Delete", testDelete},
		{"List", testList},
		{"Revisions", testRevisions},
		{"WatchLive", testWatchLive},
		{"WatchFromRevision", testWatchFromRevision},
		{"WatchCancel", testWatchCancel},
		{"WatchStoreClose", testWatchStoreClose},
		{"ConcurrentCreate", testConcurrentCreate},
		{"ConcurrentCAS", testConcurrentCAS},
		{"Persistence", testPersistence},
		{"Closed", testClosed},
		{"ValuesCopied", testValuesCopied},
		{"CanceledContext", testCanceledContext},
		{"TxnAtomic", testTxnAtomic},
		{"TxnFailure", testTxnFailure},
		{"TxnCreateConflict", testTxnCreateConflict},
		{"TxnRevMismatch", testTxnRevMismatch},
		{"TxnDelete", testTxnDelete},
		{"TxnNoChange", testTxnNoChange},
		{"TxnInvalid", testTxnInvalid},
		{"TxnWatch", testTxnWatch},
		{"TxnConcurrent", testTxnConcurrent},
		{"TxnValuesCopied", testTxnValuesCopied},
		{"TxnPersistence", testTxnPersistence},
		{"TxnCheckPass", testTxnCheckPass},
		{"TxnCheckFailure", testTxnCheckFailure},
		{"TxnCheckInvalid", testTxnCheckInvalid},
		{"ListPageWalk", testListPageWalk},
		{"ListPageAfter", testListPageAfter},
		{"ListPageChanges", testListPageChanges},
	}
	for _, tt := range tests {
		if match(tt.name) {
			t.Run(tt.name, func(t *testing.T) { tt.fn(t, open) })
		}
	}
}

// fresh opens a store on a new directory and closes it when the test ends.
func fresh(t *testing.T, open Open) store.Store {
	t.Helper()
	s := open(t, t.TempDir())
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func create(t *testing.T, s store.Store, key, value string) int64 {
	t.Helper()
	rev, err := s.Create(context.Background(), key, []byte(value))
	if err != nil {
		t.Fatalf("Create(%q): got error %v, want none", key, err)
	}
	if rev <= 0 {
		t.Fatalf("Create(%q): got revision %d, want > 0", key, rev)
	}
	return rev
}

func update(t *testing.T, s store.Store, key, value string, rev int64) int64 {
	t.Helper()
	n, err := s.Update(context.Background(), key, []byte(value), rev)
	if err != nil {
		t.Fatalf("Update(%q, rev %d): got error %v, want none", key, rev, err)
	}
	return n
}

func del(t *testing.T, s store.Store, key string, rev int64) {
	t.Helper()
	if err := s.Delete(context.Background(), key, rev); err != nil {
		t.Fatalf("Delete(%q, rev %d): got error %v, want none", key, rev, err)
	}
}

func revision(t *testing.T, s store.Store) int64 {
	t.Helper()
	rev, err := s.Revision(context.Background())
	if err != nil {
		t.Fatalf("Revision: got error %v, want none", err)
	}
	return rev
}

func wantKV(t *testing.T, s store.Store, key, value string, rev int64) {
	t.Helper()
	kv, err := s.Get(context.Background(), key)
	if err != nil {
		t.Fatalf("Get(%q): got error %v, want none", key, err)
	}
	if kv.Key != key || string(kv.Value) != value || kv.Revision != rev {
		t.Fatalf("Get(%q): got %q=%q@%d, want %q=%q@%d", key, kv.Key, kv.Value, kv.Revision, key, value, rev)
	}
}

func wantErr(t *testing.T, what string, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("%s: got error %v, want %v", what, err, target)
	}
}

func wantConflict(t *testing.T, what string, err error, key string, expected, actual int64) {
	t.Helper()
	wantErr(t, what, err, store.ErrConflict)
	var ce *store.ConflictError
	if !errors.As(err, &ce) {
		t.Fatalf("%s: got %T (%v), want a *store.ConflictError", what, err, err)
	}
	if ce.Key != key || ce.Expected != expected || ce.Actual != actual {
		t.Fatalf("%s: got conflict %+v, want key %q expected %d actual %d", what, *ce, key, expected, actual)
	}
}

func testGetMissing(t *testing.T, open Open) {
	s := fresh(t, open)
	_, err := s.Get(context.Background(), "missing")
	wantErr(t, "Get(missing)", err, store.ErrNotFound)
}

func testCreateGet(t *testing.T, open Open) {
	s := fresh(t, open)
	rev := create(t, s, "a/1", "one")
	wantKV(t, s, "a/1", "one", rev)
	rev = create(t, s, "a/empty", "")
	wantKV(t, s, "a/empty", "", rev)
	bin := string([]byte{0, 1, 2, 0xff, '\n'})
	rev = create(t, s, "a/binary", bin)
	wantKV(t, s, "a/binary", bin, rev)
}

func testCreateExisting(t *testing.T, open Open) {
	s := fresh(t, open)
	rev := create(t, s, "k", "v1")
	_, err := s.Create(context.Background(), "k", []byte("v2"))
	wantErr(t, "second Create", err, store.ErrExists)
	wantKV(t, s, "k", "v1", rev)
}

func testUpdate(t *testing.T, open Open) {
	s := fresh(t, open)
	rev := create(t, s, "k", "v1")
	rev2 := update(t, s, "k", "v2", rev)
	if rev2 <= rev {
		t.Fatalf("Update: got revision %d, want > %d", rev2, rev)
	}
	wantKV(t, s, "k", "v2", rev2)
	rev3 := update(t, s, "k", "v3", rev2)
	wantKV(t, s, "k", "v3", rev3)
}

func testUpdateStale(t *testing.T, open Open) {
	s := fresh(t, open)
	rev := create(t, s, "k", "v1")
	rev2 := update(t, s, "k", "v2", rev)
	_, err := s.Update(context.Background(), "k", []byte("v3"), rev)
	wantConflict(t, "Update with a stale revision", err, "k", rev, rev2)
	_, err = s.Update(context.Background(), "k", []byte("v3"), rev2+1000)
	wantConflict(t, "Update with a future revision", err, "k", rev2+1000, rev2)
	wantKV(t, s, "k", "v2", rev2)
}

func testUpdateUnconditional(t *testing.T, open Open) {
	s := fresh(t, open)
	rev := update(t, s, "k", "created", 0)
	if rev <= 0 {
		t.Fatalf("Update(rev 0) of a missing key: got revision %d, want > 0", rev)
	}
	wantKV(t, s, "k", "created", rev)
	rev2 := update(t, s, "k", "replaced", 0)
	if rev2 <= rev {
		t.Fatalf("Update(rev 0): got revision %d, want > %d", rev2, rev)
	}
	wantKV(t, s, "k", "replaced", rev2)
}

func testUpdateMissing(t *testing.T, open Open) {
	s := fresh(t, open)
	_, err := s.Update(context.Background(), "missing", []byte("v"), 5)
	wantErr(t, "Update(missing, rev 5)", err, store.ErrNotFound)
	_, err = s.Get(context.Background(), "missing")
	wantErr(t, "Get after a failed Update", err, store.ErrNotFound)

	rev := create(t, s, "gone", "v")
	del(t, s, "gone", rev)
	_, err = s.Update(context.Background(), "gone", []byte("v"), rev)
	wantErr(t, "Update of a deleted key", err, store.ErrNotFound)
}

func testDelete(t *testing.T, open Open) {
	s := fresh(t, open)
	ctx := context.Background()

	rev := create(t, s, "k", "v1")
	rev2 := update(t, s, "k", "v2", rev)
	err := s.Delete(ctx, "k", rev)
	wantConflict(t, "Delete with a stale revision", err, "k", rev, rev2)
	wantKV(t, s, "k", "v2", rev2)
	del(t, s, "k", rev2)
	_, err = s.Get(ctx, "k")
	wantErr(t, "Get after Delete", err, store.ErrNotFound)

	create(t, s, "any", "v")
	del(t, s, "any", 0)
	_, err = s.Get(ctx, "any")
	wantErr(t, "Get after Delete(rev 0)", err, store.ErrNotFound)

	wantErr(t, "Delete(missing, rev 0)", s.Delete(ctx, "missing", 0), store.ErrNotFound)
	wantErr(t, "Delete(missing, rev 3)", s.Delete(ctx, "missing", 3), store.ErrNotFound)
	wantErr(t, "second Delete", s.Delete(ctx, "k", rev2), store.ErrNotFound)

	// A deleted key can be created again.
	rev3 := create(t, s, "k", "again")
	wantKV(t, s, "k", "again", rev3)
}

func testList(t *testing.T, open Open) {
	s := fresh(t, open)
	ctx := context.Background()
	revs := map[string]int64{}
	// Written out of order, so that key order is not creation order.
	for _, k := range []string{"a/3", "ab/1", "a/1", "b/1", "a/2", "a", "a/2/x", "ab/0"} {
		revs[k] = create(t, s, k, "v-"+k)
	}
	tests := []struct {
		prefix string
		want   []string
	}{
		{"a/", []string{"a/1", "a/2", "a/2/x", "a/3"}},
		{"ab/", []string{"ab/0", "ab/1"}},
		{"a", []string{"a", "a/1", "a/2", "a/2/x", "a/3", "ab/0", "ab/1"}},
		{"a/2", []string{"a/2", "a/2/x"}},
		{"b/", []string{"b/1"}},
		{"c/", nil},
		{"", []string{"a", "a/1", "a/2", "a/2/x", "a/3", "ab/0", "ab/1", "b/1"}},
	}
	for _, tt := range tests {
		kvs, err := s.List(ctx, tt.prefix)
		if err != nil {
			t.Fatalf("List(%q): got error %v, want none", tt.prefix, err)
		}
		var got []string
		for _, kv := range kvs {
			got = append(got, kv.Key)
			if string(kv.Value) != "v-"+kv.Key || kv.Revision != revs[kv.Key] {
				t.Fatalf("List(%q): got %q=%q@%d, want value %q at %d", tt.prefix, kv.Key, kv.Value, kv.Revision, "v-"+kv.Key, revs[kv.Key])
			}
		}
		if fmt.Sprint(got) != fmt.Sprint(tt.want) {
			t.Fatalf("List(%q): got keys %v, want %v", tt.prefix, got, tt.want)
		}
	}
	del(t, s, "a/2", 0)
	kvs, err := s.List(ctx, "a/")
	if err != nil || len(kvs) != 3 {
		t.Fatalf("List(a/) after a delete: got %d keys (error %v), want 3", len(kvs), err)
	}
}

func testRevisions(t *testing.T, open Open) {
	s := fresh(t, open)
	ctx := context.Background()
	if rev := revision(t, s); rev < 0 {
		t.Fatalf("Revision of a new store: got %d, want >= 0", rev)
	}
	last := revision(t, s)
	step := func(what string, rev int64) {
		t.Helper()
		if rev <= last {
			t.Fatalf("%s: got revision %d, want > %d", what, rev, last)
		}
		if cur := revision(t, s); cur < rev {
			t.Fatalf("Revision after %s: got %d, want >= %d", what, cur, rev)
		}
		last = rev
	}
	a := create(t, s, "a", "1")
	step("Create(a)", a)
	b := create(t, s, "b", "1")
	step("Create(b)", b)
	a2 := update(t, s, "a", "2", a)
	step("Update(a)", a2)
	b2 := update(t, s, "b", "2", 0)
	step("Update(b, 0)", b2)
	del(t, s, "a", a2)
	step("Delete(a)", revision(t, s))
	c := create(t, s, "c", "1")
	step("Create(c)", c)
	// Failed writes do not bump the revision past later successful ones.
	if _, err := s.Create(ctx, "c", nil); !errors.Is(err, store.ErrExists) {
		t.Fatalf("Create(c) again: got %v, want ErrExists", err)
	}
	d := create(t, s, "d", "1")
	step("Create(d)", d)
	wantKV(t, s, "b", "2", b2)
	wantKV(t, s, "c", "1", c)
}

// next returns the next event from ch, failing the test on a timeout or a
// closed channel.
func next(t *testing.T, ch <-chan store.Event) store.Event {
	t.Helper()
	select {
	case ev, ok := <-ch:
		if !ok {
			t.Fatalf("watch: channel closed, want an event")
		}
		return ev
	case <-time.After(eventTimeout):
		t.Fatalf("watch: no event within %v", eventTimeout)
	}
	return store.Event{}
}

func wantEvent(t *testing.T, ch <-chan store.Event, typ store.EventType, key, value string, rev int64) store.Event {
	t.Helper()
	ev := next(t, ch)
	if ev.Type != typ || ev.KV.Key != key || string(ev.KV.Value) != value || (rev != 0 && ev.KV.Revision != rev) {
		t.Fatalf("watch: got event %d %q=%q@%d, want %d %q=%q@%d", ev.Type, ev.KV.Key, ev.KV.Value, ev.KV.Revision, typ, key, value, rev)
	}
	if typ == store.EventDelete && ev.KV.Value != nil {
		t.Fatalf("watch: delete event of %q has value %q, want nil", key, ev.KV.Value)
	}
	return ev
}

// wantClosed waits for ch to close, allowing events before it does.
func wantClosed(t *testing.T, ch <-chan store.Event) {
	t.Helper()
	deadline := time.After(eventTimeout)
	for {
		select {
		case _, ok := <-ch:
			if !ok {
				return
			}
		case <-deadline:
			t.Fatalf("watch: channel still open after %v, want it closed", eventTimeout)
		}
	}
}

func testWatchLive(t *testing.T, open Open) {
	s := fresh(t, open)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	create(t, s, "w/before", "x") // made before the watch: not delivered
	ch, err := s.Watch(ctx, "w/", 0)
	if err != nil {
		t.Fatalf("Watch: got error %v, want none", err)
	}
	ra := create(t, s, "w/a", "1")
	create(t, s, "other/a", "1")
	create(t, s, "w2/a", "1")
	create(t, s, "w", "1")
	rb := create(t, s, "w/b", "1")
	ra2 := update(t, s, "w/a", "2", ra)
	del(t, s, "w/b", rb)
	rdel := revision(t, s)
	rc := create(t, s, "w/c", "1")

	wantEvent(t, ch, store.EventPut, "w/a", "1", ra)
	wantEvent(t, ch, store.EventPut, "w/b", "1", rb)
	wantEvent(t, ch, store.EventPut, "w/a", "2", ra2)
	ev := wantEvent(t, ch, store.EventDelete, "w/b", "", 0)
	if ev.KV.Revision <= ra2 || ev.KV.Revision > rdel {
		t.Fatalf("watch: delete event at revision %d, want in (%d, %d]", ev.KV.Revision, ra2, rdel)
	}
	wantEvent(t, ch, store.EventPut, "w/c", "1", rc)
}

func testWatchFromRevision(t *testing.T, open Open) {
	s := fresh(t, open)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	r1 := create(t, s, "w/a", "1")
	r2 := update(t, s, "w/a", "2", r1)
	create(t, s, "x/noise", "1")
	r3 := create(t, s, "w/b", "1")
	del(t, s, "w/a", r2)
	r4 := revision(t, s)

	ch, err := s.Watch(ctx, "w/", r1)
	if err != nil {
		t.Fatalf("Watch(from %d): got error %v, want none", r1, err)
	}
	wantEvent(t, ch, store.EventPut, "w/a", "2", r2)
	wantEvent(t, ch, store.EventPut, "w/b", "1", r3)
	ev := wantEvent(t, ch, store.EventDelete, "w/a", "", 0)
	if ev.KV.Revision <= r3 || ev.KV.Revision > r4 {
		t.Fatalf("watch: delete event at revision %d, want in (%d, %d]", ev.KV.Revision, r3, r4)
	}
	r5 := create(t, s, "w/c", "live")
	wantEvent(t, ch, store.EventPut, "w/c", "live", r5)

	// From the current revision: only what comes next.
	cur := revision(t, s)
	ch2, err := s.Watch(ctx, "w/", cur)
	if err != nil {
		t.Fatalf("Watch(from %d): got error %v, want none", cur, err)
	}
	r6 := create(t, s, "w/d", "next")
	wantEvent(t, ch2, store.EventPut, "w/d", "next", r6)

	// From the middle, with a narrower prefix.
	ch3, err := s.Watch(ctx, "w/b", r2)
	if err != nil {
		t.Fatalf("Watch(w/b from %d): got error %v, want none", r2, err)
	}
	wantEvent(t, ch3, store.EventPut, "w/b", "1", r3)
	r7 := update(t, s, "w/b", "2", r3)
	wantEvent(t, ch3, store.EventPut, "w/b", "2", r7)
}

func testWatchCancel(t *testing.T, open Open) {
	s := fresh(t, open)
	ctx, cancel := context.WithCancel(context.Background())
	ch, err := s.Watch(ctx, "w/", 0)
	if err != nil {
		t.Fatalf("Watch: got error %v, want none", err)
	}
	r := create(t, s, "w/a", "1")
	wantEvent(t, ch, store.EventPut, "w/a", "1", r)
	cancel()
	wantClosed(t, ch)
	// Writes go on after the watcher is gone.
	create(t, s, "w/b", "1")
}

func testWatchStoreClose(t *testing.T, open Open) {
	s := open(t, t.TempDir())
	ch, err := s.Watch(context.Background(), "", 0)
	if err != nil {
		t.Fatalf("Watch: got error %v, want none", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: got error %v, want none", err)
	}
	wantClosed(t, ch)
}

func testConcurrentCreate(t *testing.T, open Open) {
	s := fresh(t, open)
	const n = 20
	var wg sync.WaitGroup
	errs := make([]error, n)
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			_, errs[i] = s.Create(context.Background(), "race/k", []byte(strconv.Itoa(i)))
		}()
	}
	close(start)
	wg.Wait()
	winner := -1
	for i, err := range errs {
		switch {
		case err == nil && winner >= 0:
			t.Fatalf("Create: goroutines %d and %d both won", winner, i)
		case err == nil:
			winner = i
		case !errors.Is(err, store.ErrExists):
			t.Fatalf("Create in goroutine %d: got error %v, want nil or ErrExists", i, err)
		}
	}
	if winner < 0 {
		t.Fatalf("Create: no goroutine won")
	}
	kv, err := s.Get(context.Background(), "race/k")
	if err != nil || string(kv.Value) != strconv.Itoa(winner) {
		t.Fatalf("Get: got %q (error %v), want the winner's value %q", kv.Value, err, strconv.Itoa(winner))
	}
}

func testConcurrentCAS(t *testing.T, open Open) {
	s := fresh(t, open)
	ctx := context.Background()
	const workers, increments = 8, 20
	create(t, s, "counter", "0")
	var wg sync.WaitGroup
	errc := make(chan error, workers)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range increments {
				for {
					kv, err := s.Get(ctx, "counter")
					if err != nil {
						errc <- err
						return
					}
					n, err := strconv.Atoi(string(kv.Value))
					if err != nil {
						errc <- err
						return
					}
					_, err = s.Update(ctx, "counter", []byte(strconv.Itoa(n+1)), kv.Revision)
					if err == nil {
						break
					}
					if !errors.Is(err, store.ErrConflict) {
						errc <- err
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Fatalf("increment: got error %v, want none", err)
	}
	kv, err := s.Get(ctx, "counter")
	if err != nil {
		t.Fatalf("Get(counter): %v", err)
	}
	if got, want := string(kv.Value), strconv.Itoa(workers*increments); got != want {
		t.Fatalf("counter: got %s, want %s", got, want)
	}
}

func testPersistence(t *testing.T, open Open) {
	dir := t.TempDir()
	s := open(t, dir)
	ra := create(t, s, "p/a", "1")
	rb := create(t, s, "p/b", "1")
	rb2 := update(t, s, "p/b", "2", rb)
	rc := create(t, s, "p/c", "1")
	del(t, s, "p/c", rc)
	last := revision(t, s)
	if err := s.Close(); err != nil {
		t.Fatalf("Close: got error %v, want none", err)
	}

	s = open(t, dir)
	defer s.Close()
	wantKV(t, s, "p/a", "1", ra)
	wantKV(t, s, "p/b", "2", rb2)
	_, err := s.Get(context.Background(), "p/c")
	wantErr(t, "Get of a key deleted before reopening", err, store.ErrNotFound)
	if got := revision(t, s); got < last {
		t.Fatalf("Revision after reopening: got %d, want >= %d", got, last)
	}
	rd := create(t, s, "p/d", "1")
	if rd <= last {
		t.Fatalf("Create after reopening: got revision %d, want > %d", rd, last)
	}
	_, err = s.Update(context.Background(), "p/b", []byte("3"), rb)
	wantConflict(t, "stale Update after reopening", err, "p/b", rb, rb2)
}

func testClosed(t *testing.T, open Open) {
	s := open(t, t.TempDir())
	ctx := context.Background()
	create(t, s, "k", "v")
	if err := s.Close(); err != nil {
		t.Fatalf("Close: got error %v, want none", err)
	}
	_, err := s.Get(ctx, "k")
	wantErr(t, "Get after Close", err, store.ErrClosed)
	_, err = s.List(ctx, "")
	wantErr(t, "List after Close", err, store.ErrClosed)
	_, err = s.Create(ctx, "k2", nil)
	wantErr(t, "Create after Close", err, store.ErrClosed)
	_, err = s.Update(ctx, "k", nil, 0)
	wantErr(t, "Update after Close", err, store.ErrClosed)
	wantErr(t, "Delete after Close", s.Delete(ctx, "k", 0), store.ErrClosed)
	_, err = s.Watch(ctx, "", 0)
	wantErr(t, "Watch after Close", err, store.ErrClosed)
	_, err = s.Revision(ctx)
	wantErr(t, "Revision after Close", err, store.ErrClosed)
	_, err = s.Txn(ctx, []store.Op{{Key: "k2"}})
	wantErr(t, "Txn after Close", err, store.ErrClosed)
	_, err = s.Txn(ctx, nil)
	wantErr(t, "empty Txn after Close", err, store.ErrClosed)
	_, _, err = s.ListPage(ctx, "", "", 10)
	wantErr(t, "ListPage after Close", err, store.ErrClosed)
	if err := s.Close(); err != nil && !errors.Is(err, store.ErrClosed) {
		t.Fatalf("second Close: got error %v, want nil or ErrClosed", err)
	}
}

func testValuesCopied(t *testing.T, open Open) {
	s := fresh(t, open)
	ctx := context.Background()
	ctxW, cancel := context.WithCancel(ctx)
	defer cancel()
	ch, err := s.Watch(ctxW, "c/", 0)
	if err != nil {
		t.Fatalf("Watch: %v", err)
	}

	in := []byte("original")
	rev, err := s.Create(ctx, "c/k", in)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	copy(in, "XXXXXXXX") // the caller reuses its buffer
	wantKV(t, s, "c/k", "original", rev)

	kv, _ := s.Get(ctx, "c/k")
	copy(kv.Value, "YYYYYYYY") // the caller scribbles on what it got
	wantKV(t, s, "c/k", "original", rev)

	kvs, _ := s.List(ctx, "c/")
	if len(kvs) == 1 {
		copy(kvs[0].Value, "ZZZZZZZZ")
	}
	wantKV(t, s, "c/k", "original", rev)

	ev := next(t, ch)
	if !bytes.Equal(ev.KV.Value, []byte("original")) {
		t.Fatalf("watch: got value %q, want %q", ev.KV.Value, "original")
	}
	copy(ev.KV.Value, "WWWWWWWW")
	wantKV(t, s, "c/k", "original", rev)

	up := []byte("updated")
	rev2, err := s.Update(ctx, "c/k", up, rev)
	if err != nil {
		t.Fatalf("Update: %v", err)
	}
	copy(up, "XXXXXXX")
	wantKV(t, s, "c/k", "updated", rev2)
}

func testCanceledContext(t *testing.T, open Open) {
	s := fresh(t, open)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := s.Get(ctx, "k")
	wantErr(t, "Get with a canceled context", err, context.Canceled)
	_, err = s.Create(ctx, "k", []byte("v"))
	wantErr(t, "Create with a canceled context", err, context.Canceled)
	_, err = s.Txn(ctx, []store.Op{{Key: "k", Value: []byte("v")}})
	wantErr(t, "Txn with a canceled context", err, context.Canceled)
	_, _, err = s.ListPage(ctx, "", "", 10)
	wantErr(t, "ListPage with a canceled context", err, context.Canceled)
	_, err = s.Get(context.Background(), "k")
	wantErr(t, "Get after a canceled Create and Txn", err, store.ErrNotFound)
}
