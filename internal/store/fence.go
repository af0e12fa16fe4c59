package store

import (
	"context"
	"errors"
	"fmt"
)

// ErrNotLeader says that a fenced write was refused because the writer's
// fence (the key its leader election wrote, at the revision it wrote it)
// is gone or has changed: another replica may lead now. It is not a
// conflict: retrying cannot help, the writer must stop writing.
var ErrNotLeader = errors.New("not the leader: its election was lost")

// maxDeleteTries bounds the read-then-delete loop of a fenced Delete with
// rev 0 when other writers keep changing the key.
const maxDeleteTries = 100

// Fence returns a view of st for a writer that may write only while it
// holds a leadership: reads (Get, List, ListPage, Watch, Revision) pass
// through, and every write (Create, Update, Delete, Txn) is made as one
// Txn whose first op is the condition Op{Key: key, Rev: rev, Check: true}
// with the key and revision that fence returns at the time of the write.
// The key is a store key (for etcd: without the backend's prefix) and
// rev its revision (the one the election wrote it at).
//
// If fence returns an empty key or a revision <= 0, or the fence key is
// gone or at another revision, the write writes nothing and fails with an
// error wrapping ErrNotLeader, never ErrConflict: callers retry conflicts,
// while a fenced writer must stop. Otherwise each method keeps its Store
// semantics and return values. The fence key may not be written through
// the view (a Txn naming it is invalid, as a key in two ops).
//
// Close closes st.
func Fence(st Store, fence func() (key string, rev int64)) Store {
	return &fenced{Store: st, fence: fence}
}

type fenced struct {
	Store // reads and Close pass through
	fence func() (string, int64)
}

// txn runs ops behind the fence check and maps a failing check to
// ErrNotLeader.
func (f *fenced) txn(ctx context.Context, ops []Op) (int64, error) {
	key, rev := f.fence()
	if key == "" || rev <= 0 {
		return 0, fmt.Errorf("fence key %q at revision %d: no leadership held: %w", key, rev, ErrNotLeader)
	}
	all := make([]Op, 0, len(ops)+1)
	all = append(all, Op{Key: key, Rev: rev, Check: true})
	all = append(all, ops...)
	n, err := f.Store.Txn(ctx, all)
	if err == nil {
		noteWrite(ctx)
	}
	var ce *ConflictError
	if errors.As(err, &ce) && ce.Key == key {
		if ce.Actual == 0 {
			return 0, fmt.Errorf("fence key %q (revision %d) is gone: %w", key, rev, ErrNotLeader)
		}
		return 0, fmt.Errorf("fence key %q is at revision %d, not %d: %w", key, ce.Actual, rev, ErrNotLeader)
	}
	return n, err
}

// Txn applies ops as Store.Txn does, if the fence holds.
func (f *fenced) Txn(ctx context.Context, ops []Op) (int64, error) {
	return f.txn(ctx, ops)
}

// Create writes a key that must not exist, if the fence holds.
func (f *fenced) Create(ctx context.Context, key string, value []byte) (int64, error) {
	rev, err := f.txn(ctx, []Op{{Key: key, Value: value, Rev: OpMustNotExist}})
	if ce := conflictOn(err, key); ce != nil {
		// As Store.Create says it: a plain ErrExists.
		return 0, fmt.Errorf("%s: %w", key, ErrExists)
	}
	return rev, err
}

// Update replaces a key at rev (0: whatever it is), if the fence holds.
func (f *fenced) Update(ctx context.Context, key string, value []byte, rev int64) (int64, error) {
	if rev < 0 {
		return 0, fmt.Errorf("update %s: invalid revision %d", key, rev)
	}
	n, err := f.txn(ctx, []Op{{Key: key, Value: value, Rev: rev}})
	if ce := conflictOn(err, key); ce != nil && errors.Is(ce, ErrNotFound) {
		return 0, fmt.Errorf("%s: %w", key, ErrNotFound)
	}
	return n, err
}

// Delete removes a key at rev (0: whatever it is), if the fence holds. A
// missing key is ErrNotFound, as in Store.Delete. In a Txn a delete of a
// missing key with rev 0 is no error, so rev 0 is made a delete at the
// revision just read (or, for a missing key, a check that it is absent),
// repeated if the key changes in between.
func (f *fenced) Delete(ctx context.Context, key string, rev int64) error {
	if rev < 0 {
		return fmt.Errorf("delete %s: invalid revision %d", key, rev)
	}
	if rev > 0 {
		_, err := f.txn(ctx, []Op{{Key: key, Delete: true, Rev: rev}})
		if ce := conflictOn(err, key); ce != nil && errors.Is(ce, ErrNotFound) {
			return fmt.Errorf("%s: %w", key, ErrNotFound)
		}
		return err
	}
	var err error
	for range maxDeleteTries {
		var kv KV
		kv, err = f.Store.Get(ctx, key)
		switch {
		case errors.Is(err, ErrNotFound):
			// Absent: the answer is ErrNotFound, but only if the fence
			// still holds, as for any other write.
			_, err = f.txn(ctx, []Op{{Key: key, Rev: OpMustNotExist, Check: true}})
			if err == nil {
				return fmt.Errorf("%s: %w", key, ErrNotFound)
			}
		case err != nil:
			return err
		default:
			_, err = f.txn(ctx, []Op{{Key: key, Delete: true, Rev: kv.Revision}})
			if err == nil {
				return nil
			}
		}
		if conflictOn(err, key) == nil {
			return err
		}
		// The key changed between the read and the write: read again.
	}
	return fmt.Errorf("delete %s: changed by others %d times in a row: %w", key, maxDeleteTries, err)
}

// conflictOn returns the ConflictError of err if it is about key.
func conflictOn(err error, key string) *ConflictError {
	var ce *ConflictError
	if errors.As(err, &ce) && ce.Key == key {
		return ce
	}
	return nil
}
