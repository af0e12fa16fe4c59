package store

import (
	"context"
	"errors"
	"fmt"
)

// Sentinel errors. Backends wrap them; callers test with errors.Is.
var (
	ErrNotFound = errors.New("not found")
	ErrExists   = errors.New("already exists")
	ErrConflict = errors.New("revision conflict")
	ErrClosed   = errors.New("store closed")
)

// KV is one stored key with its value and the revision of its last change.
type KV struct {
	Key      string
	Value    []byte
	Revision int64 // > 0; the store-wide revision at which the key last changed
}

// EventType says what happened to a key.
type EventType int

// Event types.
const (
	EventPut EventType = iota + 1
	EventDelete
)

// Event is one change delivered by Watch.
type Event struct {
	Type EventType
	KV   KV // for EventDelete, Value is nil and Revision is the delete's revision
}

// Store is a small, strongly consistent key-value store with a store-wide
// revision counter: the embedded default (bbolt) and etcd both provide it.
// Keys are plain strings with "/" separators; List and Watch take prefixes.
//
// Every write is durable when the call returns (acknowledged means on disk
// or on a quorum), and atomic: a crash leaves either the old or the new value.
type Store interface {
	// Get returns the key, or an error wrapping ErrNotFound.
	Get(ctx context.Context, key string) (KV, error)
	// List returns every key with the prefix, in key order.
	List(ctx context.Context, prefix string) ([]KV, error)
	// Create writes a key that must not exist yet (else ErrExists).
	Create(ctx context.Context, key string, value []byte) (rev int64, err error)
	// Update replaces a key whose revision is still rev (else ErrConflict;
	// ErrNotFound if it is gone). rev 0 means unconditionally (create or replace).
	Update(ctx context.Context, key string, value []byte, rev int64) (newRev int64, err error)
	// Delete removes a key whose revision is still rev (rev 0: whatever it is).
	// Deleting a missing key returns ErrNotFound.
	Delete(ctx context.Context, key string, rev int64) error
	// Watch delivers, in revision order, every change to keys with the prefix
	// made after revision fromRev (0: from now on). The channel closes when ctx
	// ends or the store closes. A slow reader does not block writers: a watcher
	// that falls too far behind has its channel closed and must re-list.
	Watch(ctx context.Context, prefix string, fromRev int64) (<-chan Event, error)
	// Revision returns the store's current revision.
	Revision(ctx context.Context) (int64, error)
	// Txn applies every op atomically at one new store revision, or none of
	// them (as etcd's Txn with compares on mod_revision). If a condition
	// fails it writes nothing and returns a *ConflictError naming the first
	// failing key in op order; the error wraps ErrConflict, or ErrExists for
	// OpMustNotExist on an existing key, or ErrNotFound for Rev > 0 on a
	// missing key. Conditions are checked against the state before the Txn;
	// a key may appear in only one op (else an error, as in etcd). A delete
	// of a missing key with Rev 0 (or OpMustNotExist) is no error and no
	// change. Txn returns the new revision; if no op changes anything (an
	// empty ops list, or only deletes of missing keys) it returns the current
	// revision and writes nothing. Watchers see one event per change, all at
	// the Txn's revision, in op order. etcd limits a Txn to 128 ops by
	// default (--max-txn-ops): keep Txns small.
	Txn(ctx context.Context, ops []Op) (rev int64, err error)
	// ListPage returns at most limit keys with the prefix that sort after
	// `after` ("" = from the start), in key order, and whether more follow.
	// limit <= 0 means no limit. after need not exist (nor have the prefix),
	// so the last key of a page continues the walk even if it was deleted
	// since; each page is read at its own revision. It costs O(limit).
	ListPage(ctx context.Context, prefix, after string, limit int) (kvs []KV, more bool, err error)
	// Close releases the store. Calls after Close return ErrClosed.
	Close() error
}

// OpMustNotExist, as an Op's Rev, says that the key must not exist.
const OpMustNotExist = -1

// Op is one write of a Txn, or with Check one condition of it.
type Op struct {
	Key    string
	Value  []byte // ignored for deletes and checks
	Delete bool
	// Rev is the condition on the key's current revision: 0 = none (create
	// or replace; delete if present), > 0 = the key must exist at exactly
	// this revision, OpMustNotExist = the key must not exist.
	Rev int64
	// Check makes the op a condition only: it writes nothing, and its Rev
	// is checked as any other op's (with the same ConflictError if it
	// fails). A Txn of checks alone that pass writes nothing and returns the
	// current revision. Check and Delete together are invalid.
	Check bool
}

// ConflictError says which key had a revision other than the one expected.
type ConflictError struct {
	Key      string
	Expected int64 // OpMustNotExist: the key was expected to be absent
	Actual   int64 // 0: the key is absent
	// Err is the sentinel the error wraps: ErrConflict (also when nil),
	// ErrExists (Expected is OpMustNotExist) or ErrNotFound (Actual is 0).
	Err error
}

func (e *ConflictError) Error() string {
	switch err := e.Unwrap(); {
	case errors.Is(err, ErrExists):
		return fmt.Sprintf("%s: revision %d, expected none: %v", e.Key, e.Actual, err)
	case errors.Is(err, ErrNotFound):
		return fmt.Sprintf("%s: no revision, expected %d: %v", e.Key, e.Expected, err)
	default:
		return fmt.Sprintf("%s: revision %d, expected %d: %v", e.Key, e.Actual, e.Expected, err)
	}
}

// Unwrap makes errors.Is(err, ErrConflict) true, or errors.Is(err,
// ErrExists) or errors.Is(err, ErrNotFound) if that is what Err says.
func (e *ConflictError) Unwrap() error {
	if e.Err == nil {
		return ErrConflict
	}
	return e.Err
}

// ValidateOps rejects, before anything is written, ops a Txn may not take:
// a key checkKey refuses, a revision condition below OpMustNotExist, a
// check op that also deletes, a key in more than one op. Backends share
// it so that they refuse the same Txns with the same errors.
func ValidateOps(ops []Op, checkKey func(string) error) error {
	seen := make(map[string]struct{}, len(ops))
	for i, op := range ops {
		if err := checkKey(op.Key); err != nil {
			return fmt.Errorf("txn op %d: %w", i, err)
		}
		if op.Rev < OpMustNotExist {
			return fmt.Errorf("txn op %d: %s: invalid revision condition %d", i, op.Key, op.Rev)
		}
		if op.Check && op.Delete {
			return fmt.Errorf("txn op %d: %s: a check op cannot also delete", i, op.Key)
		}
		if _, dup := seen[op.Key]; dup {
			return fmt.Errorf("txn op %d: %s: key in more than one op", i, op.Key)
		}
		seen[op.Key] = struct{}{}
	}
	return nil
}
