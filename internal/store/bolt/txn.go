package bolt

import (
	"context"
	"fmt"

	bbolt "go.etcd.io/bbolt"

	"vgrid/internal/store"
)

// Txn applies the ops atomically at one new revision, or none of them; see
// store.Store.
func (s *Store) Txn(ctx context.Context, ops []store.Op) (int64, error) {
	if err := checkOps(ops); err != nil {
		return 0, err
	}
	return s.commit(ctx, func(b *bbolt.Bucket, rev int64) ([]store.Event, error) {
		evs := make([]store.Event, 0, len(ops))
		for _, op := range ops {
			// Keys are distinct: each is checked before anything changes it.
			exists, err := checkOp(b, op)
			if err != nil {
				return nil, err
			}
			if op.Check {
				continue
			}
			if !op.Delete {
				ev, err := put(b, op.Key, op.Value, rev)
				if err != nil {
					return nil, err
				}
				evs = append(evs, ev)
				continue
			}
			if !exists {
				continue
			}
			if err := b.Delete([]byte(op.Key)); err != nil {
				return nil, err
			}
			evs = append(evs, store.Event{Type: store.EventDelete, KV: store.KV{Key: op.Key, Revision: rev}})
		}
		return evs, nil
	})
}

// checkOps rejects invalid keys and conditions, and a key in two ops.
func checkOps(ops []store.Op) error { return store.ValidateOps(ops, checkKey) }

// checkOp checks the op's condition against the key's current state and
// says whether the key exists.
func checkOp(b *bbolt.Bucket, op store.Op) (bool, error) {
	v := b.Get([]byte(op.Key))
	if v == nil {
		if op.Rev > 0 {
			return false, &store.ConflictError{Key: op.Key, Expected: op.Rev, Err: store.ErrNotFound}
		}
		return false, nil
	}
	cur, _, err := decodeValue(v)
	if err != nil {
		return true, fmt.Errorf("%s: %w", op.Key, err)
	}
	switch {
	case op.Rev == store.OpMustNotExist:
		return true, &store.ConflictError{Key: op.Key, Expected: op.Rev, Actual: cur, Err: store.ErrExists}
	case op.Rev > 0 && cur != op.Rev:
		return true, &store.ConflictError{Key: op.Key, Expected: op.Rev, Actual: cur, Err: store.ErrConflict}
	}
	return true, nil
}
