package control

import (
	"context"
	"sync"

	"vgrid/internal/store"
)

// hostWaker wakes the hosts' long polls (waitChange) on changes under one
// store prefix that concern them: one watch of the prefix serves every
// poll, as nodeWaker does for ws/. The commands to run in guests (exec/),
// the saves (saves/) and the volumes (volumes/) each have one; what
// concerns which host is theirs to say (hosts).
type hostWaker struct {
	prefix string
	// start, if set, is given the prefix's records when the watch starts
	// (from the revision it starts at), for state hosts keeps.
	start func(kvs []store.KV)
	// hosts names the hosts an event concerns. It is called outside mu,
	// in the watch's goroutine, one event at a time (it may read the
	// store).
	hosts func(ev store.Event) []string

	mu      sync.Mutex
	running bool
	// since: every change after this revision is known.
	since int64
	// changed is the revision of each host's last change.
	changed map[string]int64
	// signal is closed at the next change of a host with a waiting poll.
	signal map[string]chan struct{}
}

// check says whether node has had a change after rev (or whether that
// cannot be told); else it returns a channel closed at its next one.
func (w *hostWaker) check(st store.Store, node string, rev int64) (<-chan struct{}, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.running && !w.startLocked(st) {
		return nil, true
	}
	if rev < w.since || w.changed[node] > rev {
		return nil, true
	}
	ch := w.signal[node]
	if ch == nil {
		ch = make(chan struct{})
		w.signal[node] = ch
	}
	return ch, false
}

// startLocked starts the watch. mu is held.
func (w *hostWaker) startLocked(st store.Store) bool {
	ctx, cancel := context.WithCancel(context.Background())
	rev, err := st.Revision(ctx)
	if err != nil {
		cancel()
		return false
	}
	if w.start != nil {
		kvs, err := st.List(ctx, w.prefix)
		if err != nil {
			cancel()
			return false
		}
		w.start(kvs)
	}
	ch, err := st.Watch(ctx, w.prefix, rev)
	if err != nil {
		cancel()
		return false
	}
	w.running, w.since, w.changed = true, rev, map[string]int64{}
	if w.signal == nil {
		w.signal = map[string]chan struct{}{}
	}
	go func() {
		for ev := range ch {
			if hosts := w.hosts(ev); len(hosts) > 0 {
				w.wake(ev.KV.Revision, hosts)
			}
		}
		// The watch ended (the store closed, or it fell behind): every
		// poll returns, and the next one starts it again.
		cancel()
		w.mu.Lock()
		defer w.mu.Unlock()
		w.running, w.changed = false, nil
		for n, c := range w.signal {
			close(c)
			delete(w.signal, n)
		}
	}()
	return true
}

// wake records a change of hosts at rev and wakes their polls.
func (w *hostWaker) wake(rev int64, hosts []string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.changed == nil {
		return // stopped meanwhile
	}
	for _, n := range hosts {
		if n == "" {
			continue
		}
		if rev > w.changed[n] {
			w.changed[n] = rev
		}
		if c := w.signal[n]; c != nil {
			close(c)
			delete(w.signal, n)
		}
	}
}
