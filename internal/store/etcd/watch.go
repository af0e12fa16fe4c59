package etcd

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"vgrid/internal/store"
)

// DefaultWatchBuffer is how many events a watcher may lag behind before
// its channel is closed (Config.WatchBuffer).
const DefaultWatchBuffer = 10_000

// Watch delivers every change to keys with the prefix after fromRev (0:
// from now on) from etcd's history, in revision order.
//
// A fromRev older than the cluster's compaction is an error wrapping
// store.ErrCompacted, found by a read at fromRev+1 before the watch
// starts; if a compaction overtakes the watch after that, the channel
// closes instead. The channel closes when ctx ends, the store closes, the
// reader lags more than Config.WatchBuffer events behind, or the watch
// cannot be re-established within the request timeout: the etcd watch is
// made with WithRequireLeader, so a member cut off from the leader ends
// it, and it is then resumed (from the revision after the last event
// received) on whichever member answers. After a close the caller must
// re-list and watch from the revision of its listing.
func (s *Store) Watch(ctx context.Context, prefix string, fromRev int64) (<-chan store.Event, error) {
	if fromRev < 0 {
		return nil, fmt.Errorf("watch from revision %d: negative revision", fromRev)
	}
	rctx, cancel, err := s.begin(ctx)
	if err != nil {
		return nil, err
	}
	defer cancel()
	// Watching from an explicit revision (also for "now") means no write
	// made after Watch returns is missed while etcd registers the watch.
	cur, err := s.revision(ctx, rctx)
	if err != nil {
		return nil, err
	}
	if fromRev == 0 {
		fromRev = cur
	}
	if fromRev < cur {
		_, err := s.client.Get(rctx, s.prefix, clientv3.WithRev(fromRev+1), clientv3.WithCountOnly())
		if errors.Is(err, rpctypes.ErrCompacted) {
			return nil, fmt.Errorf("watch from revision %d: etcd at %s has compacted its history past it: %w", fromRev, s.endpoints, store.ErrCompacted)
		}
		if err != nil {
			return nil, s.fail(ctx, rctx, fmt.Sprintf("watch from revision %d", fromRev), err)
		}
	}
	out := make(chan store.Event)
	wctx, wcancel := context.WithCancel(ctx)
	stop := context.AfterFunc(s.ctx, wcancel) // Close ends the watch
	go func() {
		defer close(out)
		defer stop()
		defer wcancel()
		s.watch(wctx, prefix, fromRev+1, out)
	}()
	return out, nil
}

// watch feeds out from etcd watches starting at next until ctx ends, the
// reader lags too far, or the watch fails for good.
func (s *Store) watch(ctx context.Context, prefix string, next int64, out chan<- store.Event) {
	var queue []store.Event
	var failing time.Time // when the current run of failures began
	backoff := 50 * time.Millisecond
	for {
		wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
		ch := s.client.Watch(wctx, s.Key(prefix), clientv3.WithPrefix(), clientv3.WithRev(next), clientv3.WithCreatedNotify())
		var err error
		queue, next, err = s.pump(ctx, ch, queue, next, out, &failing)
		cancel()
		switch {
		case ctx.Err() != nil:
			return
		case errors.Is(err, store.ErrCompacted), errors.Is(err, errLagging):
			s.log.Warn("etcd store: watch closed; the watcher must re-list", "prefix", prefix, "next", next, "error", err)
			return
		}
		if failing.IsZero() {
			failing = time.Now()
		}
		if time.Since(failing) > s.timeout {
			s.log.Warn("etcd store: watch closed: it could not be re-established", "prefix", prefix, "next", next,
				"endpoints", s.endpoints, "for", s.timeout, "error", err)
			return
		}
		s.log.Debug("etcd store: watch interrupted, resuming", "prefix", prefix, "next", next, "error", err)
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
			return
		}
		backoff = min(2*backoff, time.Second)
	}
}

var errLagging = errors.New("the reader fell too far behind")

// pump moves events from one etcd watch channel to out through queue. It
// returns when ctx ends or the etcd watch ends, with what is still queued,
// the next revision to watch from, and why the etcd watch ended.
func (s *Store) pump(ctx context.Context, ch clientv3.WatchChan, queue []store.Event, next int64, out chan<- store.Event, failing *time.Time) ([]store.Event, int64, error) {
	for {
		var send chan<- store.Event
		var head store.Event
		if len(queue) > 0 {
			send, head = out, queue[0]
		}
		select {
		case <-ctx.Done():
			return queue, next, ctx.Err()
		case send <- head:
			queue[0] = store.Event{}
			queue = queue[1:]
		case resp, ok := <-ch:
			if !ok {
				return queue, next, errors.New("etcd watch channel closed")
			}
			if resp.CompactRevision != 0 {
				return queue, next, fmt.Errorf("history compacted up to revision %d: %w", resp.CompactRevision, store.ErrCompacted)
			}
			if err := resp.Err(); err != nil {
				return queue, next, err
			}
			*failing = time.Time{} // the watch works (again)
			for _, ev := range resp.Events {
				queue = append(queue, s.event(ev))
				// Responses hold whole revisions: resuming after the
				// last one received repeats and skips nothing.
				next = ev.Kv.ModRevision + 1
			}
			if len(queue) > s.watchBuffer {
				return nil, next, fmt.Errorf("%d events queued: %w", len(queue), errLagging)
			}
		}
	}
}

// event converts an etcd event under the prefix.
func (s *Store) event(ev *clientv3.Event) store.Event {
	if ev.Type == mvccpb.DELETE {
		return store.Event{Type: store.EventDelete, KV: store.KV{Key: string(ev.Kv.Key[len(s.prefix):]), Revision: ev.Kv.ModRevision}}
	}
	return store.Event{Type: store.EventPut, KV: s.kv(ev.Kv.Key, ev.Kv.Value, ev.Kv.ModRevision)}
}
