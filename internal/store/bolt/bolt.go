package bolt

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	bbolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"vgrid/internal/store"
)

// Defaults.
const (
	DefaultHistory     = 10_000 // revisions kept for Watch replay
	DefaultWatchBuffer = 10_000 // events a watcher may lag before it is dropped
	DefaultLockTimeout = time.Second
)

var (
	dataBucket = []byte("data")
	metaBucket = []byte("meta")
	logBucket  = []byte("log")
	revKey     = []byte("revision")
	idKey      = []byte("id")
)

// ErrLocked is what Open's error matches (errors.Is) when another process
// has the store open.
var ErrLocked = errors.New("store is in use by another vgrid process")

type lockedError struct{ path string }

func (e *lockedError) Error() string {
	return fmt.Sprintf("store %s is in use by another vgrid process", e.path)
}

func (e *lockedError) Is(target error) bool { return target == ErrLocked }

// Option configures Open.
type Option func(*options)

type options struct {
	history     int
	watchBuffer int
	lockTimeout time.Duration
}

// WithHistory sets how many recent revisions the store keeps the changes of
// on disk to serve Watch from an earlier revision. 0 keeps none: Watch then
// only works from the current revision on.
func WithHistory(n int) Option {
	return func(o *options) { o.history = max(n, 0) }
}

// WithWatchBuffer sets how many undelivered events a watcher may have
// queued (beyond its initial replay) before its channel is closed.
func WithWatchBuffer(n int) Option {
	return func(o *options) { o.watchBuffer = max(n, 1) }
}

// WithLockTimeout sets how long Open waits for another process to release
// the file.
func WithLockTimeout(d time.Duration) Option {
	return func(o *options) { o.lockTimeout = d }
}

// Store is a store.Store on a bbolt file.
type Store struct {
	db   *bbolt.DB
	path string
	opts options

	rev atomic.Int64 // the last committed revision

	// closeMu is held for reading by every call and for writing by Close,
	// so that Close waits for calls under way and later calls see closed.
	closeMu sync.RWMutex
	closed  bool

	// wmu serializes writes together with their fan-out to watchers, so
	// that watchers see changes in revision order; it also guards watchers.
	wmu      sync.Mutex
	watchers map[*watcher]struct{}

	id     string // see ID
	report Report // Open's check of the file
}

var _ store.Store = (*Store)(nil)

// Open opens the store file at path, or creates it (and its directory) if
// there is no file there. A new file is made complete under a temporary
// name and then linked into place, so that a crash never leaves an empty
// or half-made store file behind; an empty (0-byte) file is therefore
// damage, never a new store.
//
// Before bbolt reads the file, Open checks it page by page (see Check): a
// damaged file is an error wrapping ErrDamaged (a *DamagedError naming the
// file and what to do), never a panic. Open writes nothing to a sound
// store unless it lacks the store's buckets or ID, or its watch log is
// longer than the history kept.
func Open(path string, opts ...Option) (*Store, error) {
	o := options{history: DefaultHistory, watchBuffer: DefaultWatchBuffer, lockTimeout: DefaultLockTimeout}
	for _, opt := range opts {
		opt(&o)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	if _, err := os.Lstat(path); errors.Is(err, fs.ErrNotExist) {
		if err := create(path); err != nil {
			return nil, fmt.Errorf("open store %s: create: %w", path, err)
		}
	}
	db, f, rep, err := openChecked("open", path, false, o.lockTimeout)
	if err != nil {
		return nil, err
	}
	s := &Store{db: db, path: path, opts: o, watchers: map[*watcher]struct{}{}, report: rep}
	if err := s.prepare(); err != nil {
		var pe *panicError
		if errors.As(err, &pe) {
			// bbolt may hold its locks after a panic: give the file up
			// (which releases the lock) without closing the database.
			_ = f.Close()
			rep.problem("bbolt failed reading the file: %v", pe.v)
			return nil, damaged("open", path, &rep)
		}
		_ = db.Close()
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	return s, nil
}

// prepare reads the revision and ID, and makes what a sound file may lack
// (the buckets, the ID) and trims the log, writing only if there is need.
func (s *Store) prepare() error {
	var rev int64
	var id string
	need := false
	err := guard(func() error {
		return s.db.View(func(tx *bbolt.Tx) error {
			mb, lb := tx.Bucket(metaBucket), tx.Bucket(logBucket)
			if tx.Bucket(dataBucket) == nil || mb == nil || lb == nil {
				need = true
				return nil
			}
			if v := mb.Get(revKey); v != nil {
				if len(v) != 8 {
					return fmt.Errorf("corrupt revision counter (%d bytes)", len(v))
				}
				rev = int64(binary.BigEndian.Uint64(v))
			}
			id = string(mb.Get(idKey))
			k, _ := lb.Cursor().First()
			need = id == "" || k != nil && int64(binary.BigEndian.Uint64(k)) <= rev-int64(s.opts.history)
			return nil
		})
	})
	if err == nil && need {
		err = guard(func() error {
			return s.db.Update(func(tx *bbolt.Tx) error {
				var err error
				rev, id, err = initBuckets(tx)
				if err != nil {
					return err
				}
				return trimLog(tx.Bucket(logBucket), rev, s.opts.history)
			})
		})
	}
	if err != nil {
		return err
	}
	s.rev.Store(rev)
	s.id = id
	s.report.ID, s.report.Revision = id, rev
	return nil
}

// initBuckets makes the store's buckets and ID where missing, and returns
// the revision and the ID.
func initBuckets(tx *bbolt.Tx) (int64, string, error) {
	for _, name := range [][]byte{dataBucket, metaBucket, logBucket} {
		if _, err := tx.CreateBucketIfNotExists(name); err != nil {
			return 0, "", err
		}
	}
	mb := tx.Bucket(metaBucket)
	var rev int64
	if v := mb.Get(revKey); v != nil {
		if len(v) != 8 {
			return 0, "", fmt.Errorf("corrupt revision counter (%d bytes)", len(v))
		}
		rev = int64(binary.BigEndian.Uint64(v))
	}
	id := string(mb.Get(idKey))
	if id == "" {
		id = newID()
		if err := mb.Put(idKey, []byte(id)); err != nil {
			return 0, "", err
		}
	}
	return rev, id, nil
}

// ID returns the store's identity: a random ID made with the store and
// kept in it, so that a copy (a backup) has its original's ID and another
// store has another.
func (s *Store) ID() string { return s.id }

// Report returns what Open's check of the file found (its warnings
// included), with the revision and ID as opened.
func (s *Store) Report() Report {
	r := s.report
	r.Problems = slices.Clone(r.Problems)
	r.Warnings = slices.Clone(r.Warnings)
	return r
}

// Path returns the file the store is kept in.
func (s *Store) Path() string { return s.path }

// begin starts a call: it fails if the store is closed or ctx is done. The
// caller must call s.closeMu.RUnlock when it returns nil.
func (s *Store) begin(ctx context.Context) error {
	s.closeMu.RLock()
	if s.closed {
		s.closeMu.RUnlock()
		return store.ErrClosed
	}
	if err := ctx.Err(); err != nil {
		s.closeMu.RUnlock()
		return err
	}
	return nil
}

// dbErr maps bbolt's "not open" to store.ErrClosed.
func dbErr(err error) error {
	if errors.Is(err, berrors.ErrDatabaseNotOpen) {
		return store.ErrClosed
	}
	return err
}

func checkKey(key string) error {
	switch {
	case key == "":
		return errors.New("empty key")
	case len(key) > bbolt.MaxKeySize:
		return fmt.Errorf("key of %d bytes is longer than %d", len(key), bbolt.MaxKeySize)
	}
	return nil
}

// encodeValue prefixes value with rev.
func encodeValue(rev int64, value []byte) []byte {
	buf := make([]byte, 8+len(value))
	binary.BigEndian.PutUint64(buf, uint64(rev))
	copy(buf[8:], value)
	return buf
}

// decodeValue splits a stored value; the returned slice aliases v.
func decodeValue(v []byte) (int64, []byte, error) {
	if len(v) < 8 {
		return 0, nil, fmt.Errorf("corrupt value (%d bytes)", len(v))
	}
	return int64(binary.BigEndian.Uint64(v)), v[8:], nil
}

func revBytes(rev int64) []byte {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(rev))
	return b[:]
}

// Get returns the key, or an error wrapping store.ErrNotFound.
func (s *Store) Get(ctx context.Context, key string) (store.KV, error) {
	if err := s.begin(ctx); err != nil {
		return store.KV{}, err
	}
	defer s.closeMu.RUnlock()
	var kv store.KV
	err := s.db.View(func(tx *bbolt.Tx) error {
		v := tx.Bucket(dataBucket).Get([]byte(key))
		if v == nil {
			return fmt.Errorf("%s: %w", key, store.ErrNotFound)
		}
		rev, val, err := decodeValue(v)
		if err != nil {
			return fmt.Errorf("%s: %w", key, err)
		}
		kv = store.KV{Key: key, Value: bytes.Clone(val), Revision: rev}
		return nil
	})
	return kv, dbErr(err)
}

// List returns every key with the prefix, in key order.
func (s *Store) List(ctx context.Context, prefix string) ([]store.KV, error) {
	if err := s.begin(ctx); err != nil {
		return nil, err
	}
	defer s.closeMu.RUnlock()
	var kvs []store.KV
	err := s.db.View(func(tx *bbolt.Tx) error {
		c := tx.Bucket(dataBucket).Cursor()
		p := []byte(prefix)
		for k, v := c.Seek(p); k != nil && bytes.HasPrefix(k, p); k, v = c.Next() {
			rev, val, err := decodeValue(v)
			if err != nil {
				return fmt.Errorf("%s: %w", k, err)
			}
			kvs = append(kvs, store.KV{Key: string(k), Value: bytes.Clone(val), Revision: rev})
		}
		return nil
	})
	if err != nil {
		return nil, dbErr(err)
	}
	return kvs, nil
}

// ListPage returns at most limit keys with the prefix after the key after,
// in key order, and whether more follow. It seeks to the first key and
// reads one key past the page.
func (s *Store) ListPage(ctx context.Context, prefix, after string, limit int) ([]store.KV, bool, error) {
	if err := s.begin(ctx); err != nil {
		return nil, false, err
	}
	defer s.closeMu.RUnlock()
	var kvs []store.KV
	more := false
	err := s.db.View(func(tx *bbolt.Tx) error {
		c := tx.Bucket(dataBucket).Cursor()
		p := []byte(prefix)
		start := p
		if after > prefix {
			start = []byte(after)
		}
		k, v := c.Seek(start)
		if k != nil && after != "" && string(k) == after {
			k, v = c.Next()
		}
		for ; k != nil && bytes.HasPrefix(k, p); k, v = c.Next() {
			if limit > 0 && len(kvs) == limit {
				more = true
				return nil
			}
			rev, val, err := decodeValue(v)
			if err != nil {
				return fmt.Errorf("%s: %w", k, err)
			}
			if kvs == nil && limit > 0 {
				kvs = make([]store.KV, 0, min(limit, 1024))
			}
			kvs = append(kvs, store.KV{Key: string(k), Value: bytes.Clone(val), Revision: rev})
		}
		return nil
	})
	if err != nil {
		return nil, false, dbErr(err)
	}
	return kvs, more, nil
}

// Revision returns the store's current revision.
func (s *Store) Revision(ctx context.Context) (int64, error) {
	if err := s.begin(ctx); err != nil {
		return 0, err
	}
	defer s.closeMu.RUnlock()
	return s.rev.Load(), nil
}

// Create writes a key that must not exist yet.
func (s *Store) Create(ctx context.Context, key string, value []byte) (int64, error) {
	return s.write(ctx, key, func(b *bbolt.Bucket, rev int64) (store.Event, error) {
		if b.Get([]byte(key)) != nil {
			return store.Event{}, fmt.Errorf("%s: %w", key, store.ErrExists)
		}
		return put(b, key, value, rev)
	})
}

// Update replaces a key whose revision is still rev; rev 0 writes the key
// whatever its state.
func (s *Store) Update(ctx context.Context, key string, value []byte, rev int64) (int64, error) {
	return s.write(ctx, key, func(b *bbolt.Bucket, newRev int64) (store.Event, error) {
		if err := checkRev(b, key, rev, rev != 0); err != nil {
			return store.Event{}, err
		}
		return put(b, key, value, newRev)
	})
}

// Delete removes a key whose revision is still rev (rev 0: whatever it is).
func (s *Store) Delete(ctx context.Context, key string, rev int64) error {
	_, err := s.write(ctx, key, func(b *bbolt.Bucket, newRev int64) (store.Event, error) {
		if err := checkRev(b, key, rev, true); err != nil {
			return store.Event{}, err
		}
		if err := b.Delete([]byte(key)); err != nil {
			return store.Event{}, err
		}
		return store.Event{Type: store.EventDelete, KV: store.KV{Key: key, Revision: newRev}}, nil
	})
	return err
}

// checkRev checks the key's current revision against rev (0: any). With
// mustExist, a missing key is store.ErrNotFound.
func checkRev(b *bbolt.Bucket, key string, rev int64, mustExist bool) error {
	v := b.Get([]byte(key))
	if v == nil {
		if mustExist {
			return fmt.Errorf("%s: %w", key, store.ErrNotFound)
		}
		return nil
	}
	cur, _, err := decodeValue(v)
	if err != nil {
		return fmt.Errorf("%s: %w", key, err)
	}
	if rev != 0 && cur != rev {
		return &store.ConflictError{Key: key, Expected: rev, Actual: cur}
	}
	return nil
}

func put(b *bbolt.Bucket, key string, value []byte, rev int64) (store.Event, error) {
	if err := b.Put([]byte(key), encodeValue(rev, value)); err != nil {
		return store.Event{}, err
	}
	val := bytes.Clone(value)
	if val == nil {
		val = []byte{}
	}
	return store.Event{Type: store.EventPut, KV: store.KV{Key: key, Value: val, Revision: rev}}, nil
}

// write runs one change of one key; see commit.
func (s *Store) write(ctx context.Context, key string, change func(b *bbolt.Bucket, rev int64) (store.Event, error)) (int64, error) {
	if err := checkKey(key); err != nil {
		return 0, err
	}
	return s.commit(ctx, func(b *bbolt.Bucket, rev int64) ([]store.Event, error) {
		ev, err := change(b, rev)
		if err != nil {
			return nil, err
		}
		return []store.Event{ev}, nil
	})
}

// errNoChange rolls back a transaction whose change changed nothing.
var errNoChange = errors.New("no change")

// commit runs a change in one transaction at the next revision, logs the
// events it returns under that revision, commits (with fsync), and hands
// them to the watchers. A change that returns no events leaves the store
// and its revision as they are; commit then returns the current revision.
func (s *Store) commit(ctx context.Context, change func(b *bbolt.Bucket, rev int64) ([]store.Event, error)) (int64, error) {
	if err := s.begin(ctx); err != nil {
		return 0, err
	}
	defer s.closeMu.RUnlock()

	s.wmu.Lock()
	defer s.wmu.Unlock()
	cur := s.rev.Load()
	rev := cur + 1
	var evs []store.Event
	err := s.db.Update(func(tx *bbolt.Tx) error {
		var err error
		if evs, err = change(tx.Bucket(dataBucket), rev); err != nil {
			return err
		}
		if len(evs) == 0 {
			return errNoChange
		}
		if err := tx.Bucket(metaBucket).Put(revKey, revBytes(rev)); err != nil {
			return err
		}
		if s.opts.history == 0 {
			return nil
		}
		lb := tx.Bucket(logBucket)
		if err := lb.Put(revBytes(rev), encodeLog(evs)); err != nil {
			return err
		}
		return trimLog(lb, rev, s.opts.history)
	})
	if errors.Is(err, errNoChange) {
		return cur, nil
	}
	if err != nil {
		return 0, dbErr(err)
	}
	s.rev.Store(rev)
	for _, ev := range evs {
		s.publish(ev)
	}
	return rev, nil
}

// Watch delivers every change to keys with the prefix after fromRev (0: from
// now on), replaying from the on-disk log when fromRev is in the past.
func (s *Store) Watch(ctx context.Context, prefix string, fromRev int64) (<-chan store.Event, error) {
	if fromRev < 0 {
		return nil, fmt.Errorf("watch from revision %d: negative revision", fromRev)
	}
	if err := s.begin(ctx); err != nil {
		return nil, err
	}
	defer s.closeMu.RUnlock()

	// Holding wmu, no write can commit between the replay and registering.
	s.wmu.Lock()
	defer s.wmu.Unlock()
	cur := s.rev.Load()
	if fromRev == 0 {
		fromRev = cur
	}
	var replay []store.Event
	if fromRev < cur {
		err := s.db.View(func(tx *bbolt.Tx) error {
			c := tx.Bucket(logBucket).Cursor()
			oldest := cur + 1 // the oldest revision still logged
			if k, _ := c.First(); k != nil {
				oldest = int64(binary.BigEndian.Uint64(k))
			}
			if fromRev < oldest-1 {
				return fmt.Errorf("watch from revision %d: history starts after revision %d: %w", fromRev, oldest-1, store.ErrCompacted)
			}
			p := []byte(prefix)
			for k, v := c.Seek(revBytes(fromRev + 1)); k != nil; k, v = c.Next() {
				evs, err := decodeLog(int64(binary.BigEndian.Uint64(k)), v)
				if err != nil {
					return err
				}
				for _, ev := range evs {
					if bytes.HasPrefix([]byte(ev.KV.Key), p) {
						replay = append(replay, ev)
					}
				}
			}
			return nil
		})
		if err != nil {
			return nil, dbErr(err)
		}
	}
	w := &watcher{
		prefix: prefix,
		after:  fromRev,
		queue:  replay,
		limit:  len(replay) + s.opts.watchBuffer,
		out:    make(chan store.Event),
		wake:   make(chan struct{}, 1),
		stop:   make(chan struct{}),
	}
	s.watchers[w] = struct{}{}
	go w.run(ctx, s)
	return w.out, nil
}

// publish hands a committed change to the watchers. The caller holds wmu.
func (s *Store) publish(ev store.Event) {
	for w := range s.watchers {
		if !w.push(ev) {
			delete(s.watchers, w)
		}
	}
}

func (s *Store) removeWatcher(w *watcher) {
	s.wmu.Lock()
	delete(s.watchers, w)
	s.wmu.Unlock()
}

// Close closes the watch channels and the file. Later calls return
// store.ErrClosed.
func (s *Store) Close() error {
	s.closeMu.Lock()
	defer s.closeMu.Unlock()
	if s.closed {
		return store.ErrClosed
	}
	s.closed = true
	s.wmu.Lock()
	for w := range s.watchers {
		w.halt()
		delete(s.watchers, w)
	}
	s.wmu.Unlock()
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("close store %s: %w", s.path, err)
	}
	return nil
}

// watcher queues the events of one Watch call and feeds them to its
// channel from its own goroutine.
type watcher struct {
	prefix string
	after  int64 // deliver only revisions above this
	out    chan store.Event
	wake   chan struct{} // a signal that the queue has grown
	stop   chan struct{} // closed when the watcher must end

	mu      sync.Mutex
	queue   []store.Event
	limit   int
	stopped bool
}

// push queues ev if the watcher wants it. It returns false if the watcher
// is gone (stopped, or now dropped for lagging).
func (w *watcher) push(ev store.Event) bool {
	if ev.KV.Revision <= w.after || !hasPrefix(ev.KV.Key, w.prefix) {
		return !w.isStopped()
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.stopped {
		return false
	}
	if len(w.queue) >= w.limit {
		w.stopLocked()
		return false
	}
	w.queue = append(w.queue, ev)
	select {
	case w.wake <- struct{}{}:
	default:
	}
	return true
}

func hasPrefix(key, prefix string) bool {
	return len(key) >= len(prefix) && key[:len(prefix)] == prefix
}

func (w *watcher) isStopped() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.stopped
}

func (w *watcher) halt() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.stopLocked()
}

func (w *watcher) stopLocked() {
	if !w.stopped {
		w.stopped = true
		w.queue = nil
		close(w.stop)
	}
}

// run delivers queued events until ctx ends or the watcher is stopped, then
// closes the channel.
func (w *watcher) run(ctx context.Context, s *Store) {
	defer close(w.out)
	defer s.removeWatcher(w)
	defer w.halt()
	for {
		w.mu.Lock()
		if w.stopped {
			w.mu.Unlock()
			return
		}
		if len(w.queue) == 0 {
			w.mu.Unlock()
			select {
			case <-w.wake:
				continue
			case <-w.stop:
				return
			case <-ctx.Done():
				return
			}
		}
		ev := w.queue[0]
		w.queue[0] = store.Event{}
		w.queue = w.queue[1:]
		w.mu.Unlock()
		// Each receiver gets its own copy of the value.
		if ev.KV.Value != nil {
			ev.KV.Value = bytes.Clone(ev.KV.Value)
		}
		select {
		case w.out <- ev:
		case <-w.stop:
			return
		case <-ctx.Done():
			return
		}
	}
}
