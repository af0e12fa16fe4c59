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
	// Close releases the store. Calls after Close return ErrClosed.
	Close() error
}

// ConflictError says which key had a revision other than the one expected.
type ConflictError struct {
	Key      string
	Expected int64
	Actual   int64
}

func (e *ConflictError) Error() string {
	return fmt.Sprintf("%s: revision %d, expected %d: %v", e.Key, e.Actual, e.Expected, ErrConflict)
}

// Unwrap makes errors.Is(err, ErrConflict) true.
func (e *ConflictError) Unwrap() error { return ErrConflict }
