package storetest

import (
	"context"
	"errors"
	"testing"

	"vgrid/internal/store"
)

// checkOp builds a Check op: a condition that writes nothing.
func checkOp(key string, rev int64) store.Op {
	return store.Op{Key: key, Rev: rev, Check: true}
}

func testTxnCheckPass(t *testing.T, open Open) {
	s := fresh(t, open)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ra := create(t, s, "c/a", "1")
	rb := create(t, s, "c/b", "1")
	ch, err := s.Watch(ctx, "", 0)
	if err != nil {
		t.Fatalf("Watch: got error %v, want none", err)
	}
	// Checks alone write nothing and return the current revision.
	checksOnly := []struct {
		name string
		ops  []store.Op
	}{
		{"at its revision", []store.Op{checkOp("c/a", ra)}},
		{"absent key must not exist", []store.Op{checkOp("c/none", store.OpMustNotExist)}},
		{"no condition on a present key", []store.Op{checkOp("c/a", 0)}},
		{"no condition on an absent key", []store.Op{checkOp("c/none", 0)}},
		{"several", []store.Op{checkOp("c/a", ra), checkOp("c/b", rb), checkOp("c/none", store.OpMustNotExist)}},
		{"a check with a value", []store.Op{{Key: "c/a", Value: []byte("ignored"), Rev: ra, Check: true}}},
	}
	for _, tt := range checksOnly {
		before, cur := dump(t, s), revision(t, s)
		rev, err := s.Txn(context.Background(), tt.ops)
		if err != nil {
			t.Fatalf("Txn(checks %s): got error %v, want none", tt.name, err)
		}
		if rev != cur {
			t.Fatalf("Txn(checks %s): got revision %d, want the current %d", tt.name, rev, cur)
		}
		if after := dump(t, s); after != before || revision(t, s) != cur {
			t.Fatalf("Txn(checks %s): got store\n%s\nwant it unchanged at %d:\n%s", tt.name, after, cur, before)
		}
	}
	wantNextIsMarker(t, s, ch, "c/marker1")

	// Mixed with writes: the writes go through, the checked keys stay.
	rev := txn(t, s, checkOp("c/a", ra), putOp("c/new", "n", store.OpMustNotExist), checkOp("c/none", store.OpMustNotExist), delOp("c/b", rb))
	wantKV(t, s, "c/a", "1", ra)
	wantKV(t, s, "c/new", "n", rev)
	wantMissing(t, s, "c/b")
	wantMissing(t, s, "c/none")
	wantEvent(t, ch, store.EventPut, "c/new", "n", rev)
	wantEvent(t, ch, store.EventDelete, "c/b", "", rev)
	wantNextIsMarker(t, s, ch, "c/marker2")
}

func testTxnCheckFailure(t *testing.T, open Open) {
	s := fresh(t, open)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ra := create(t, s, "c/a", "1")
	ra2 := update(t, s, "c/a", "2", ra)
	rg := create(t, s, "c/gone", "1")
	del(t, s, "c/gone", rg)
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
		{"stale revision", []store.Op{checkOp("c/a", ra)}, store.ErrConflict, "c/a", ra, ra2},
		{"future revision", []store.Op{checkOp("c/a", ra2+100)}, store.ErrConflict, "c/a", ra2 + 100, ra2},
		{"missing key", []store.Op{checkOp("c/never", ra)}, store.ErrNotFound, "c/never", ra, 0},
		{"deleted key", []store.Op{checkOp("c/gone", rg)}, store.ErrNotFound, "c/gone", rg, 0},
		{"existing key must not exist", []store.Op{checkOp("c/a", store.OpMustNotExist)}, store.ErrExists, "c/a", store.OpMustNotExist, ra2},
		{"failing check first, writes after", []store.Op{checkOp("c/a", ra), putOp("c/x", "x", 0), delOp("c/a2", 0)},
			store.ErrConflict, "c/a", ra, ra2},
		{"writes first, failing check last", []store.Op{putOp("c/x", "x", 0), putOp("c/y", "y", store.OpMustNotExist), checkOp("c/gone", rg)},
			store.ErrNotFound, "c/gone", rg, 0},
		{"passing check, then a failing write", []store.Op{checkOp("c/a", ra2), putOp("c/a2", "x", ra)},
			store.ErrNotFound, "c/a2", ra, 0},
		{"failing write, then a failing check: the first is named", []store.Op{putOp("c/a2", "x", ra), checkOp("c/a", store.OpMustNotExist)},
			store.ErrNotFound, "c/a2", ra, 0},
		{"passing write condition, then a failing check", []store.Op{putOp("c/a", "x", ra2), checkOp("c/gone", store.OpMustNotExist), checkOp("c/new", ra)},
			store.ErrNotFound, "c/new", ra, 0},
	}
	for _, tt := range tests {
		failTxn(t, s, tt.name, tt.ops, tt.target, tt.key, tt.expected, tt.actual)
	}
	// Failed Txns deliver no events.
	wantNextIsMarker(t, s, ch, "c/marker")
}

func testTxnCheckInvalid(t *testing.T, open Open) {
	s := fresh(t, open)
	ra := create(t, s, "c/a", "1")
	tests := []struct {
		name string
		ops  []store.Op
	}{
		{"check and delete", []store.Op{putOp("c/b", "x", 0), {Key: "c/a", Rev: ra, Check: true, Delete: true}}},
		{"key in a check and a put", []store.Op{checkOp("c/a", ra), putOp("c/a", "x", 0)}},
		{"key in two checks", []store.Op{checkOp("c/a", ra), checkOp("c/a", ra)}},
		{"empty key", []store.Op{putOp("c/b", "x", 0), checkOp("", 0)}},
		{"revision below OpMustNotExist", []store.Op{putOp("c/b", "x", 0), checkOp("c/a", -2)}},
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
