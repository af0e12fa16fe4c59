package storetest

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"vgrid/internal/store"
)

// putOp and delOp build Txn ops.
func putOp(key, value string, rev int64) store.Op {
	return store.Op{Key: key, Value: []byte(value), Rev: rev}
}

func delOp(key string, rev int64) store.Op {
	return store.Op{Key: key, Delete: true, Rev: rev}
}

func txn(t *testing.T, s store.Store, ops ...store.Op) int64 {
	t.Helper()
	rev, err := s.Txn(context.Background(), ops)
	if err != nil {
		t.Fatalf("Txn(%s): got error %v, want none", describeOps(ops), err)
	}
	return rev
}

func describeOps(ops []store.Op) string {
	var b strings.Builder
	for i, op := range ops {
		if i > 0 {
			b.WriteString(", ")
		}
		verb := "put"
		switch {
		case op.Check:
			verb = "check"
		case op.Delete:
			verb = "delete"
		}
		fmt.Fprintf(&b, "%s %q@%d", verb, op.Key, op.Rev)
	}
	return b.String()
}

// dump describes every key of the store with its value and revision.
func dump(t *testing.T, s store.Store) string {
	t.Helper()
	kvs, err := s.List(context.Background(), "")
	if err != nil {
		t.Fatalf("List: got error %v, want none", err)
	}
	var b strings.Builder
	for _, kv := range kvs {
		fmt.Fprintf(&b, "%q=%q@%d\n", kv.Key, kv.Value, kv.Revision)
	}
	return b.String()
}

func wantMissing(t *testing.T, s store.Store, key string) {
	t.Helper()
	_, err := s.Get(context.Background(), key)
	wantErr(t, fmt.Sprintf("Get(%q)", key), err, store.ErrNotFound)
}

// wantTxnErr checks that err is a *store.ConflictError wrapping target
// (and only that sentinel) about key.
func wantTxnErr(t *testing.T, what string, err, target error, key string, expected, actual int64) {
	t.Helper()
	var ce *store.ConflictError
	if !errors.As(err, &ce) {
		t.Fatalf("%s: got %T (%v), want a *store.ConflictError", what, err, err)
	}
	for _, sentinel := range []error{store.ErrConflict, store.ErrExists, store.ErrNotFound} {
		if got, want := errors.Is(err, sentinel), sentinel == target; got != want {
			t.Fatalf("%s: errors.Is(%v, %v): got %v, want %v", what, err, sentinel, got, want)
		}
	}
	if ce.Key != key || ce.Expected != expected || ce.Actual != actual {
		t.Fatalf("%s: got conflict on %q expected %d actual %d, want %q expected %d actual %d",
			what, ce.Key, ce.Expected, ce.Actual, key, expected, actual)
	}
}

// wantNextIsMarker checks that the next event on ch is the one a marker write
// made after the writes under test.
func wantNextIsMarker(t *testing.T, s store.Store, ch <-chan store.Event, marker string) {
	t.Helper()
	rev := create(t, s, marker, "m")
	if ev := next(t, ch); ev.KV.Key != marker || ev.KV.Revision != rev {
		t.Fatalf("watch: got event %d %q@%d, want only the marker %q@%d", ev.Type, ev.KV.Key, ev.KV.Revision, marker, rev)
	}
}

func testTxnAtomic(t *testing.T, open Open) {
	s := fresh(t, open)
	ra := create(t, s, "t/a", "a1")
	create(t, s, "t/b", "b1")
	rc := create(t, s, "t/c", "c1")
	before := revision(t, s)
	rev := txn(t, s,
		putOp("t/a", "a2", ra),                    // at its revision
		putOp("t/b", "b2", 0),                     // replace
		putOp("t/new", "n", store.OpMustNotExist), // create
		putOp("t/new0", "n0", 0),                  // create unconditionally
		delOp("t/c", rc),                          // delete at its revision
		delOp("t/missing", 0),                     // nothing to delete: no error
		store.Op{Key: "t/nil"},                    // a nil value is an empty one
	)
	if rev <= before {
		t.Fatalf("Txn: got revision %d, want > %d", rev, before)
	}
	if got := revision(t, s); got != rev {
		t.Fatalf("Revision after Txn: got %d, want %d", got, rev)
	}
	tests := []struct {
		key, value string
		present    bool
	}{
		{"t/a", "a2", true},
		{"t/b", "b2", true},
		{"t/new", "n", true},
		{"t/new0", "n0", true},
		{"t/nil", "", true},
		{"t/c", "", false},
		{"t/missing", "", false},
	}
	for _, tt := range tests {
		if tt.present {
			wantKV(t, s, tt.key, tt.value, rev)
		} else {
			wantMissing(t, s, tt.key)
		}
	}
	if got := create(t, s, "t/after", "x"); got <= rev {
		t.Fatalf("Create after Txn: got revision %d, want > %d", got, rev)
	}
}

func testTxnFailure(t *testing.T, open Open) {
	s := fresh(t, open)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ra := create(t, s, "t/a", "a1")
	rb := create(t, s, "t/b", "b1")
	rb2 := update(t, s, "t/b", "b2", rb)
	rc := create(t, s, "t/c", "c1")
	ch, err := s.Watch(ctx, "", 0)
	if err != nil {
		t.Fatalf("Watch: got error %v, want none", err)
	}
	tests := []struct {
		name     string
		ops      []store.Op
		target   error
		key      string
		expected int64
		actual   int64
	}{
		{"stale revision last", []store.Op{putOp("t/a", "x", ra), putOp("t/new", "x", store.OpMustNotExist), putOp("t/b", "x", rb)},
			store.ErrConflict, "t/b", rb, rb2},
		{"existing key first", []store.Op{putOp("t/a", "x", store.OpMustNotExist), putOp("t/b", "x", rb2)},
			store.ErrExists, "t/a", store.OpMustNotExist, ra},
		{"missing key in the middle", []store.Op{putOp("t/a", "x", ra), delOp("t/gone", 5), putOp("t/c", "x", rc)},
			store.ErrNotFound, "t/gone", 5, 0},
		{"stale delete after deletes", []store.Op{delOp("t/a", ra), delOp("t/c", 0), putOp("t/z", "x", 0), delOp("t/b", rb)},
			store.ErrConflict, "t/b", rb, rb2},
		{"two failures: the first is named", []store.Op{putOp("t/x", "x", 0), putOp("t/b", "x", rb), putOp("t/a", "x", store.OpMustNotExist)},
			store.ErrConflict, "t/b", rb, rb2},
		{"future revision", []store.Op{putOp("t/c", "x", 0), putOp("t/a", "x", ra+1000)},
			store.ErrConflict, "t/a", ra + 1000, ra},
	}
	for _, tt := range tests {
		failTxn(t, s, tt.name, tt.ops, tt.target, tt.key, tt.expected, tt.actual)
	}
	// Failed Txns deliver no events.
	wantNextIsMarker(t, s, ch, "t/marker")
}

func testTxnCreateConflict(t *testing.T, open Open) {
	s := fresh(t, open)
	ra := create(t, s, "t/a", "1")
	rt := txn(t, s, putOp("t/b", "1", store.OpMustNotExist), putOp("t/c", "1", 0))
	rd := create(t, s, "t/deleted", "1")
	del(t, s, "t/deleted", rd)
	tests := []struct {
		name   string
		key    string
		actual int64 // the key's revision; 0: absent, so the create succeeds
	}{
		{"made by Create", "t/a", ra},
		{"made by a Txn with OpMustNotExist", "t/b", rt},
		{"made by a Txn with rev 0", "t/c", rt},
		{"deleted", "t/deleted", 0},
		{"never existed", "t/never", 0},
		{"created again by this table", "t/deleted", -1}, // -1: the revision of the create above
	}
	created := map[string]int64{}
	var last int64 // the revision of the last Txn that went through
	for _, tt := range tests {
		before := revision(t, s)
		what := fmt.Sprintf("Txn(create %q, %s)", tt.key, tt.name)
		rev, err := s.Txn(context.Background(), []store.Op{putOp("t/side", "x", 0), putOp(tt.key, "new", store.OpMustNotExist)})
		if tt.actual == 0 {
			if err != nil {
				t.Fatalf("%s: got error %v, want none", what, err)
			}
			wantKV(t, s, tt.key, "new", rev)
			created[tt.key], last = rev, rev
			continue
		}
		actual := tt.actual
		if actual < 0 {
			actual = created[tt.key]
		}
		wantTxnErr(t, what, err, store.ErrExists, tt.key, store.OpMustNotExist, actual)
		if got := revision(t, s); got != before {
			t.Fatalf("%s: got revision %d, want %d", what, got, before)
		}
		// The other op of a failed Txn is not written either.
		if last == 0 {
			wantMissing(t, s, "t/side")
		} else {
			wantKV(t, s, "t/side", "x", last)
		}
	}
}

func testTxnRevMismatch(t *testing.T, open Open) {
	s := fresh(t, open)
	r1 := create(t, s, "t/k", "1")
	r2 := update(t, s, "t/k", "2", r1)
	rg := create(t, s, "t/gone", "1")
	del(t, s, "t/gone", rg)
	tests := []struct {
		name     string
		op       store.Op
		target   error
		expected int64
		actual   int64
	}{
		{"put at a stale revision", putOp("t/k", "x", r1), store.ErrConflict, r1, r2},
		{"put at a future revision", putOp("t/k", "x", r2+100), store.ErrConflict, r2 + 100, r2},
		{"put at a revision of a missing key", putOp("t/never", "x", r1), store.ErrNotFound, r1, 0},
		{"put at the revision of a deleted key", putOp("t/gone", "x", rg), store.ErrNotFound, rg, 0},
		{"delete at a stale revision", delOp("t/k", r1), store.ErrConflict, r1, r2},
		{"delete at a revision of a missing key", delOp("t/never", r2), store.ErrNotFound, r2, 0},
	}
	for _, tt := range tests {
		before := revision(t, s)
		// Another op that would succeed on its own must not be written.
		_, err := s.Txn(context.Background(), []store.Op{putOp("t/side", "x", 0), tt.op})
		wantTxnErr(t, tt.name, err, tt.target, tt.op.Key, tt.expected, tt.actual)
		wantMissing(t, s, "t/side")
		wantKV(t, s, "t/k", "2", r2)
		if got := revision(t, s); got != before {
			t.Fatalf("%s: got revision %d, want %d", tt.name, got, before)
		}
	}
	// At the right revision it goes through.
	rev := txn(t, s, putOp("t/k", "3", r2), putOp("t/side", "x", 0))
	wantKV(t, s, "t/k", "3", rev)
	wantKV(t, s, "t/side", "x", rev)
}

func testTxnDelete(t *testing.T, open Open) {
	s := fresh(t, open)
	ra := create(t, s, "t/a", "1")
	create(t, s, "t/b", "1")
	create(t, s, "t/c", "1")
	rev := txn(t, s, delOp("t/a", ra), delOp("t/b", 0), delOp("t/missing", 0), delOp("t/absent", store.OpMustNotExist), putOp("t/d", "1", 0))
	tests := []struct {
		key     string
		present bool
	}{
		{"t/a", false}, {"t/b", false}, {"t/c", true}, {"t/d", true}, {"t/missing", false}, {"t/absent", false},
	}
	for _, tt := range tests {
		if tt.present {
			if _, err := s.Get(context.Background(), tt.key); err != nil {
				t.Fatalf("Get(%q) after Txn: got error %v, want none", tt.key, err)
			}
		} else {
			wantMissing(t, s, tt.key)
		}
	}
	wantKV(t, s, "t/d", "1", rev)
	// A deleted key can be created again in a Txn, and deleted in one.
	r2 := txn(t, s, putOp("t/a", "2", store.OpMustNotExist))
	wantKV(t, s, "t/a", "2", r2)
	txn(t, s, delOp("t/a", r2), delOp("t/c", 0))
	wantMissing(t, s, "t/a")
	wantMissing(t, s, "t/c")
}

func testTxnNoChange(t *testing.T, open Open) {
	s := fresh(t, open)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	create(t, s, "t/a", "1")
	ch, err := s.Watch(ctx, "", 0)
	if err != nil {
		t.Fatalf("Watch: got error %v, want none", err)
	}
	tests := []struct {
		name string
		ops  []store.Op
	}{
		{"nil ops", nil},
		{"empty ops", []store.Op{}},
		{"delete of a missing key", []store.Op{delOp("t/missing", 0)}},
		{"deletes of missing keys", []store.Op{delOp("t/m1", 0), delOp("t/m2", store.OpMustNotExist)}},
	}
	for _, tt := range tests {
		before, cur := dump(t, s), revision(t, s)
		rev, err := s.Txn(context.Background(), tt.ops)
		if err != nil {
			t.Fatalf("Txn(%s): got error %v, want none", tt.name, err)
		}
		if rev != cur {
			t.Fatalf("Txn(%s): got revision %d, want the current %d", tt.name, rev, cur)
		}
		if got := revision(t, s); got != cur {
			t.Fatalf("Revision after Txn(%s): got %d, want %d", tt.name, got, cur)
		}
		if after := dump(t, s); after != before {
			t.Fatalf("Txn(%s): got store\n%s\nwant it unchanged:\n%s", tt.name, after, before)
		}
	}
	wantNextIsMarker(t, s, ch, "t/marker")
}

func testTxnInvalid(t *testing.T, open Open) {
	s := fresh(t, open)
	ra := create(t, s, "t/a", "1")
	tests := []struct {
		name string
		ops  []store.Op
	}{
		{"empty key", []store.Op{putOp("t/b", "x", 0), putOp("", "x", 0)}},
		{"key in two puts", []store.Op{putOp("t/a", "x", ra), putOp("t/b", "x", 0), putOp("t/a", "y", 0)}},
		{"key in a put and a delete", []store.Op{putOp("t/b", "x", 0), delOp("t/b", 0)}},
		{"revision below OpMustNotExist", []store.Op{putOp("t/b", "x", 0), putOp("t/c", "x", -2)}},
	}
	for _, tt := range tests {
		before, cur := dump(t, s), revision(t, s)
		_, err := s.Txn(context.Background(), tt.ops)
		if err == nil {
			t.Fatalf("Txn(%s): got no error, want one", tt.name)
		}
		if errors.Is(err, store.ErrConflict) || errors.Is(err, store.ErrExists) || errors.Is(err, store.ErrNotFound) {
			t.Fatalf("Txn(%s): got %v, want an invalid-argument error, not a condition failure", tt.name, err)
		}
		if after := dump(t, s); after != before || revision(t, s) != cur {
			t.Fatalf("Txn(%s): got store\n%s\nwant it unchanged at revision %d:\n%s", tt.name, after, cur, before)
		}
	}
}

func testTxnWatch(t *testing.T, open Open) {
	s := fresh(t, open)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch, err := s.Watch(ctx, "w/", 0)
	if err != nil {
		t.Fatalf("Watch: got error %v, want none", err)
	}
	rx := create(t, s, "w/x", "1")
	rev := txn(t, s,
		putOp("w/a", "1", store.OpMustNotExist),
		putOp("other/a", "1", 0), // another prefix
		delOp("w/x", rx),
		delOp("w/missing", 0), // no change: no event
		putOp("w/b", "2", 0),
	)
	rc := create(t, s, "w/c", "1")
	type want struct {
		typ        store.EventType
		key, value string
		rev        int64
	}
	check := func(what string, ch <-chan store.Event, wants []want) {
		t.Helper()
		for _, w := range wants {
			ev := next(t, ch)
			if ev.Type != w.typ || ev.KV.Key != w.key || string(ev.KV.Value) != w.value || ev.KV.Revision != w.rev {
				t.Fatalf("%s: got event %d %q=%q@%d, want %d %q=%q@%d", what, ev.Type, ev.KV.Key, ev.KV.Value, ev.KV.Revision, w.typ, w.key, w.value, w.rev)
			}
			if w.typ == store.EventDelete && ev.KV.Value != nil {
				t.Fatalf("%s: delete event of %q has value %q, want nil", what, w.key, ev.KV.Value)
			}
		}
	}
	check("live watch of w/", ch, []want{
		{store.EventPut, "w/x", "1", rx},
		{store.EventPut, "w/a", "1", rev},
		{store.EventDelete, "w/x", "", rev},
		{store.EventPut, "w/b", "2", rev},
		{store.EventPut, "w/c", "1", rc},
	})
	// The same from history, and with every prefix.
	tests := []struct {
		prefix string
		from   int64
		wants  []want
	}{
		{"w/", rx, []want{{store.EventPut, "w/a", "1", rev}, {store.EventDelete, "w/x", "", rev}, {store.EventPut, "w/b", "2", rev}, {store.EventPut, "w/c", "1", rc}}},
		{"", rx, []want{{store.EventPut, "w/a", "1", rev}, {store.EventPut, "other/a", "1", rev}, {store.EventDelete, "w/x", "", rev}, {store.EventPut, "w/b", "2", rev}, {store.EventPut, "w/c", "1", rc}}},
		{"other/", rx, []want{{store.EventPut, "other/a", "1", rev}}},
		{"w/b", rx, []want{{store.EventPut, "w/b", "2", rev}}},
		{"w/", rev, []want{{store.EventPut, "w/c", "1", rc}}},
	}
	for _, tt := range tests {
		ch, err := s.Watch(ctx, tt.prefix, tt.from)
		if err != nil {
			t.Fatalf("Watch(%q from %d): got error %v, want none", tt.prefix, tt.from, err)
		}
		check(fmt.Sprintf("watch of %q from %d", tt.prefix, tt.from), ch, tt.wants)
	}
}

func testTxnConcurrent(t *testing.T, open Open) {
	s := fresh(t, open)
	ctx := context.Background()
	rev := create(t, s, "cas/k", "start")
	const n = 16
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			_, errs[i] = s.Txn(ctx, []store.Op{
				putOp("cas/k", strconv.Itoa(i), rev),
				putOp("cas/by/"+strconv.Itoa(i), "won", store.OpMustNotExist),
			})
		}()
	}
	close(start)
	wg.Wait()
	winner := -1
	for i, err := range errs {
		switch {
		case err == nil && winner >= 0:
			t.Fatalf("Txn: goroutines %d and %d both won", winner, i)
		case err == nil:
			winner = i
		default:
			var ce *store.ConflictError
			if !errors.Is(err, store.ErrConflict) || !errors.As(err, &ce) || ce.Key != "cas/k" {
				t.Fatalf("Txn in goroutine %d: got error %v, want nil or a conflict on cas/k", i, err)
			}
		}
	}
	if winner < 0 {
		t.Fatalf("Txn: no goroutine won")
	}
	kv, err := s.Get(ctx, "cas/k")
	if err != nil || string(kv.Value) != strconv.Itoa(winner) {
		t.Fatalf("Get(cas/k): got %q (error %v), want the winner's value %q", kv.Value, err, strconv.Itoa(winner))
	}
	kvs, err := s.List(ctx, "cas/by/")
	if err != nil || len(kvs) != 1 || kvs[0].Key != "cas/by/"+strconv.Itoa(winner) || kvs[0].Revision != kv.Revision {
		t.Fatalf("List(cas/by/): got %v (error %v), want only the winner's key at %d", kvs, err, kv.Revision)
	}

	// Transfers between two keys with CAS on both: none is lost.
	const workers, moves, total = 6, 10, 1000
	rx := create(t, s, "acct/x", strconv.Itoa(total))
	create(t, s, "acct/y", "0")
	errc := make(chan error, workers)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range moves {
				if err := transfer(ctx, s); err != nil {
					errc <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Fatalf("transfer: got error %v, want none", err)
	}
	x, errX := s.Get(ctx, "acct/x")
	y, errY := s.Get(ctx, "acct/y")
	if errX != nil || errY != nil || x.Revision != y.Revision || x.Revision <= rx {
		t.Fatalf("accounts: got x@%d (%v), y@%d (%v), want both at the last transfer's revision", x.Revision, errX, y.Revision, errY)
	}
	if got, want := string(x.Value)+"/"+string(y.Value), fmt.Sprintf("%d/%d", total-workers*moves, workers*moves); got != want {
		t.Fatalf("accounts x/y: got %s, want %s", got, want)
	}
}

// transfer moves 1 from acct/x to acct/y, retrying on conflicts.
func transfer(ctx context.Context, s store.Store) error {
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		x, err := s.Get(ctx, "acct/x")
		if err != nil {
			return err
		}
		y, err := s.Get(ctx, "acct/y")
		if err != nil {
			return err
		}
		nx, errX := strconv.Atoi(string(x.Value))
		ny, errY := strconv.Atoi(string(y.Value))
		if err := errors.Join(errX, errY); err != nil {
			return err
		}
		_, err = s.Txn(ctx, []store.Op{
			putOp("acct/x", strconv.Itoa(nx-1), x.Revision),
			putOp("acct/y", strconv.Itoa(ny+1), y.Revision),
		})
		if !errors.Is(err, store.ErrConflict) {
			return err
		}
	}
	return errors.New("no transfer went through within a minute")
}

func testTxnValuesCopied(t *testing.T, open Open) {
	s := fresh(t, open)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch, err := s.Watch(ctx, "c/", 0)
	if err != nil {
		t.Fatalf("Watch: got error %v, want none", err)
	}
	ops := []store.Op{putOp("c/a", "original", 0), putOp("c/b", "original", 0)}
	rev := txn(t, s, ops...)
	for _, op := range ops {
		copy(op.Value, "XXXXXXXX") // the caller reuses its buffers
	}
	for range ops {
		ev := next(t, ch)
		if string(ev.KV.Value) != "original" {
			t.Fatalf("watch: got value %q, want %q", ev.KV.Value, "original")
		}
		copy(ev.KV.Value, "WWWWWWWW")
	}
	wantKV(t, s, "c/a", "original", rev)
	wantKV(t, s, "c/b", "original", rev)
}

func testTxnPersistence(t *testing.T, open Open) {
	dir := t.TempDir()
	s := open(t, dir)
	ra := create(t, s, "p/a", "1")
	rev := txn(t, s, putOp("p/a", "2", ra), putOp("p/b", "1", store.OpMustNotExist), delOp("p/missing", 0))
	if err := s.Close(); err != nil {
		t.Fatalf("Close: got error %v, want none", err)
	}
	s = open(t, dir)
	defer s.Close()
	wantKV(t, s, "p/a", "2", rev)
	wantKV(t, s, "p/b", "1", rev)
	if got := revision(t, s); got < rev {
		t.Fatalf("Revision after reopening: got %d, want >= %d", got, rev)
	}
	_, err := s.Txn(context.Background(), []store.Op{putOp("p/a", "3", ra)})
	wantTxnErr(t, "stale Txn after reopening", err, store.ErrConflict, "p/a", ra, rev)
}

// failTxn runs ops, which must fail as wantTxnErr says, and checks that
// neither the store nor its revision changed.
func failTxn(t *testing.T, s store.Store, name string, ops []store.Op, target error, key string, expected, actual int64) {
	t.Helper()
	before, rev := dump(t, s), revision(t, s)
	_, err := s.Txn(context.Background(), ops)
	wantTxnErr(t, name, err, target, key, expected, actual)
	if after := dump(t, s); after != before {
		t.Fatalf("%s: got store\n%s\nwant it unchanged:\n%s", name, after, before)
	}
	if got := revision(t, s); got != rev {
		t.Fatalf("%s: got revision %d, want it unchanged at %d", name, got, rev)
	}
}
