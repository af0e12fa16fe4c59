package control

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync/atomic"
	"testing"

	"vgrid/internal/store"
	"vgrid/internal/store/bolt"
)

// lostStore is a store whose single deletes fail as a replica's do once
// it lost its election (its transactions still pass: the one that
// removes the record came before). With all set, every write fails so;
// cutAfter, if set, is called with each update made and sets lost.
type lostStore struct {
	store.Store
	lost     atomic.Bool
	all      bool
	cutAfter func(key string, value []byte) bool
}

func (s *lostStore) Delete(ctx context.Context, key string, rev int64) error {
	if s.lost.Load() {
		return fmt.Errorf("delete %s: %w", key, store.ErrNotLeader)
	}
	return s.Store.Delete(ctx, key, rev)
}

func (s *lostStore) Txn(ctx context.Context, ops []store.Op) (int64, error) {
	if s.all && s.lost.Load() {
		return 0, fmt.Errorf("txn: %w", store.ErrNotLeader)
	}
	return s.Store.Txn(ctx, ops)
}

func (s *lostStore) Create(ctx context.Context, key string, value []byte) (int64, error) {
	if s.all && s.lost.Load() {
		return 0, fmt.Errorf("create %s: %w", key, store.ErrNotLeader)
	}
	return s.Store.Create(ctx, key, value)
}

func (s *lostStore) Update(ctx context.Context, key string, value []byte, rev int64) (int64, error) {
	if s.all && s.lost.Load() {
		return 0, fmt.Errorf("update %s: %w", key, store.ErrNotLeader)
	}
	n, err := s.Store.Update(ctx, key, value, rev)
	if err == nil && s.cutAfter != nil && s.cutAfter(key, value) {
		s.lost.Store(true)
	}
	return n, err
}

// TestDeleteDoneWhateverTheCleanup: a workspace on no host is deleted in
// one transaction with its lease; what fails after it (its events and
// console, removed apart) does not make the delete answer an error, which
// would tell the client nothing was done (503 not_leader) when the
// workspace is gone.
func TestDeleteDoneWhateverTheCleanup(t *testing.T) {
	bs, err := bolt.Open(filepath.Join(t.TempDir(), "store.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bs.Close() })
	st := &lostStore{Store: bs}
	ctl, _ := hostsEnvOn(t, st, "h1")
	ctx := context.Background()
	w := createWS(t, ctl, "later", "1", "{kind: reservation, start: 2026-12-02T12:00:00Z}")
	if w.Status.Node != "" {
		t.Fatalf("a reservation 2 h ahead is on %q", w.Status.Node)
	}
	st.lost.Store(true)
	if _, err := ctl.DeleteWorkspace(ctx, "p", "later"); err != nil {
		t.Fatalf("delete: %v", err)
	}
	if _, err := bs.Get(ctx, wsKey("p", "later")); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("the record after the delete: %v", err)
	}
	rec, err := ctl.Lease(ctx, "p", w.Status.Lease)
	if err != nil || !rec.State.Over() {
		t.Fatalf("its lease after the delete: %s, %v", rec.State, err)
	}
}
