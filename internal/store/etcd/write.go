package etcd

import (
	"context"
	"fmt"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"vgrid/internal/store"
)

// Create writes a key that must not exist yet: a Txn on create_revision 0.
func (s *Store) Create(ctx context.Context, key string, value []byte) (int64, error) {
	if err := checkKey(key); err != nil {
		return 0, err
	}
	rctx, cancel, err := s.begin(ctx)
	if err != nil {
		return 0, err
	}
	defer cancel()
	k := s.Key(key)
	resp, err := s.client.Txn(rctx).
		If(clientv3.Compare(clientv3.CreateRevision(k), "=", 0)).
		Then(clientv3.OpPut(k, string(value))).
		Commit()
	if err != nil {
		return 0, s.fail(ctx, rctx, "create "+key, err)
	}
	if !resp.Succeeded {
		return 0, fmt.Errorf("%s: %w", key, store.ErrExists)
	}
	return resp.Header.Revision, nil
}

// Update replaces a key whose mod_revision is still rev; rev 0 writes the
// key whatever its state.
func (s *Store) Update(ctx context.Context, key string, value []byte, rev int64) (int64, error) {
	if err := checkKey(key); err != nil {
		return 0, err
	}
	if rev < 0 {
		return 0, fmt.Errorf("update %s: invalid revision %d", key, rev)
	}
	rctx, cancel, err := s.begin(ctx)
	if err != nil {
		return 0, err
	}
	defer cancel()
	k := s.Key(key)
	if rev == 0 {
		resp, err := s.client.Put(rctx, k, string(value))
		if err != nil {
			return 0, s.fail(ctx, rctx, "update "+key, err)
		}
		return resp.Header.Revision, nil
	}
	resp, err := s.client.Txn(rctx).
		If(clientv3.Compare(clientv3.ModRevision(k), "=", rev)).
		Then(clientv3.OpPut(k, string(value))).
		Else(clientv3.OpGet(k, clientv3.WithKeysOnly())).
		Commit()
	if err != nil {
		return 0, s.fail(ctx, rctx, "update "+key, err)
	}
	if !resp.Succeeded {
		return 0, mismatch(key, rev, resp.Responses[0].GetResponseRange().GetKvs())
	}
	return resp.Header.Revision, nil
}

// Delete removes a key whose mod_revision is still rev (rev 0: whatever
// it is); a missing key is store.ErrNotFound.
func (s *Store) Delete(ctx context.Context, key string, rev int64) error {
	if err := checkKey(key); err != nil {
		return err
	}
	if rev < 0 {
		return fmt.Errorf("delete %s: invalid revision %d", key, rev)
	}
	rctx, cancel, err := s.begin(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	k := s.Key(key)
	if rev == 0 {
		resp, err := s.client.Delete(rctx, k)
		if err != nil {
			return s.fail(ctx, rctx, "delete "+key, err)
		}
		if resp.Deleted == 0 {
			return fmt.Errorf("%s: %w", key, store.ErrNotFound)
		}
		return nil
	}
	resp, err := s.client.Txn(rctx).
		If(clientv3.Compare(clientv3.ModRevision(k), "=", rev)).
		Then(clientv3.OpDelete(k)).
		Else(clientv3.OpGet(k, clientv3.WithKeysOnly())).
		Commit()
	if err != nil {
		return s.fail(ctx, rctx, "delete "+key, err)
	}
	if !resp.Succeeded {
		return mismatch(key, rev, resp.Responses[0].GetResponseRange().GetKvs())
	}
	return nil
}

// mismatch is the error of Update or Delete at rev when the key, as read
// in the same transaction, is missing or at another revision.
func mismatch(key string, rev int64, kvs []*mvccpb.KeyValue) error {
	if len(kvs) == 0 {
		return fmt.Errorf("%s: %w", key, store.ErrNotFound)
	}
	return &store.ConflictError{Key: key, Expected: rev, Actual: kvs[0].ModRevision}
}

// Txn applies the ops atomically, or none of them, as one etcd Txn: a
// compare per condition (mod_revision = Rev, or create_revision = 0 for
// OpMustNotExist), the writes if all hold, else a keys-only read of every
// conditioned key in the same transaction, from which the first failing
// op in op order is named.
func (s *Store) Txn(ctx context.Context, ops []store.Op) (int64, error) {
	if err := checkOps(ops); err != nil {
		return 0, err
	}
	rctx, cancel, err := s.begin(ctx)
	if err != nil {
		return 0, err
	}
	defer cancel()
	var cmps []clientv3.Cmp
	var writes, reads []clientv3.Op
	var conds []store.Op // the conditioned ops, in the order of reads
	for _, op := range ops {
		k := s.Key(op.Key)
		switch {
		case op.Rev > 0:
			cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(k), "=", op.Rev))
		case op.Rev == store.OpMustNotExist:
			cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(k), "=", 0))
		}
		if op.Rev != 0 {
			conds = append(conds, op)
			reads = append(reads, clientv3.OpGet(k, clientv3.WithKeysOnly()))
		}
		switch {
		case op.Check:
		case op.Delete:
			writes = append(writes, clientv3.OpDelete(k))
		default:
			writes = append(writes, clientv3.OpPut(k, string(op.Value)))
		}
	}
	if len(cmps) == 0 && len(writes) == 0 {
		return s.revision(ctx, rctx)
	}
	resp, err := s.client.Txn(rctx).If(cmps...).Then(writes...).Else(reads...).Commit()
	if err != nil {
		return 0, s.fail(ctx, rctx, "txn", err)
	}
	if resp.Succeeded {
		// etcd bumps the revision only if something changed; the header
		// has the current one either way.
		return resp.Header.Revision, nil
	}
	for i, op := range conds {
		kvs := resp.Responses[i].GetResponseRange().GetKvs()
		var actual int64
		if len(kvs) > 0 {
			actual = kvs[0].ModRevision
		}
		switch {
		case op.Rev == store.OpMustNotExist && actual != 0:
			return 0, &store.ConflictError{Key: op.Key, Expected: op.Rev, Actual: actual, Err: store.ErrExists}
		case op.Rev > 0 && actual == 0:
			return 0, &store.ConflictError{Key: op.Key, Expected: op.Rev, Err: store.ErrNotFound}
		case op.Rev > 0 && actual != op.Rev:
			return 0, &store.ConflictError{Key: op.Key, Expected: op.Rev, Actual: actual, Err: store.ErrConflict}
		}
	}
	// Unreachable unless etcd and this code disagree on a compare.
	return 0, fmt.Errorf("txn: etcd at %s refused the compares, but every key read in the same transaction meets its condition", s.endpoints)
}

// checkOps rejects invalid keys and conditions, and a key in two ops,
// before anything is sent.
func checkOps(ops []store.Op) error { return store.ValidateOps(ops, checkKey) }
