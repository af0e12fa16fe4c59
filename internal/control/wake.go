package control

import (
	"context"
	"encoding/json"
	"slices"
	"sync"

	"vgrid/internal/store"
)

// nodeWaker wakes a host agent's long poll (Assignments with after > 0)
// only for the changes that concern its host: a workspace placed on it
// before or after the change. One watch of ws/ serves every poll, rather
// than one per poll each woken by every write: with 50 hosts a create
// would otherwise wake 50 polls, each listing every workspace.
//
// Store events carry the new value only, so the waker keeps the host of
// every placed workspace (key to Status.Node) to know where a workspace
// was before it moved or was deleted. Its zero value is ready: the watch
// starts with the first poll, and stops when the store closes it (the
// store closed, or the watch fell behind); the next poll starts it again.
type nodeWaker struct {
	mu      sync.Mutex
	running bool
	// since: every change after this revision is known.
	since int64
	// nodeOf is the host of each placed workspace, by key; vnisOf the
	// overlay networks of those that have NICs.
	nodeOf map[string]string
	vnisOf map[string][]uint32
	// toOf is the destination of each workspace migrating live; stageOf
	// the hosts fetching the image of each workspace staging.
	toOf    map[string]string
	stageOf map[string][]string
	// changed is the revision of each host's last change; allChanged that
	// of a change whose host could not be told (every host wakes).
	changed    map[string]int64
	allChanged int64
	// signal is closed at the next change of a host with a waiting poll.
	signal map[string]chan struct{}
}

// wsNode is the part of a stored workspace the waker reads.
type wsNode struct {
	Status struct {
		Node string `json:"node"`
		Move *struct {
			From string `json:"from"`
		} `json:"move"`
		Migration *struct {
			To string `json:"to"`
		} `json:"migration"`
		Staging *struct {
			Hosts []string `json:"hosts"`
		} `json:"staging"`
	} `json:"status"`
	NICs []struct {
		VNI uint32 `json:"vni"`
	} `json:"nics"`
}

func (v wsNode) vnis() []uint32 {
	var out []uint32
	for _, n := range v.NICs {
		out = append(out, n.VNI)
	}
	return out
}

// check says whether node has had a change after rev (or whether that
// cannot be told, which also ends the wait); else it returns a channel
// closed at node's next change.
func (w *nodeWaker) check(st store.Store, node string, rev int64) (<-chan struct{}, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.running && !w.startLocked(st) {
		return nil, true // answered at once, as a poll without a wait
	}
	if rev < w.since || w.changed[node] > rev || w.allChanged > rev {
		return nil, true
	}
	ch := w.signal[node]
	if ch == nil {
		ch = make(chan struct{})
		w.signal[node] = ch
	}
	return ch, false
}

// startLocked reads where every workspace is and watches ws/ from there.
// The caller holds mu.
func (w *nodeWaker) startLocked(st store.Store) bool {
	ctx, cancel := context.WithCancel(context.Background())
	rev, err := st.Revision(ctx)
	if err != nil {
		cancel()
		return false
	}
	// Changes after rev replay through the watch: a workspace listed as
	// already changed is seen again, which only wakes its host once more.
	kvs, err := st.List(ctx, "ws/")
	if err != nil {
		cancel()
		return false
	}
	ch, err := st.Watch(ctx, "ws/", rev)
	if err != nil {
		cancel()
		return false
	}
	w.nodeOf = make(map[string]string, len(kvs))
	w.vnisOf = map[string][]uint32{}
	for _, kv := range kvs {
		var v wsNode
		if json.Unmarshal(kv.Value, &v) == nil && v.Status.Node != "" {
			w.nodeOf[kv.Key] = v.Status.Node
			if vs := v.vnis(); len(vs) > 0 {
				w.vnisOf[kv.Key] = vs
			}
		}
	}
	w.running, w.since = true, rev
	w.changed, w.allChanged = map[string]int64{}, 0
	if w.signal == nil {
		w.signal = map[string]chan struct{}{}
	}
	go w.run(ch, cancel)
	return true
}

// run applies the watch's events until its channel closes, then wakes
// every poll (they look again, and the next one starts a new watch).
func (w *nodeWaker) run(ch <-chan store.Event, cancel context.CancelFunc) {
	for ev := range ch {
		w.apply(ev)
	}
	cancel()
	w.mu.Lock()
	defer w.mu.Unlock()
	w.running, w.nodeOf, w.changed = false, nil, nil
	for n, c := range w.signal {
		close(c)
		delete(w.signal, n)
	}
}

// apply wakes the hosts a change concerns: where the workspace was and
// where it is.
func (w *nodeWaker) apply(ev store.Event) {
	var now, from, to string
	var vnis []uint32
	var staging []string
	known := true
	if ev.Type == store.EventPut {
		var v wsNode
		if err := json.Unmarshal(ev.KV.Value, &v); err != nil {
			known = false
		}
		now, vnis = v.Status.Node, v.vnis()
		if v.Status.Move != nil {
			from = v.Status.Move.From // it serves the files
		}
		if v.Status.Migration != nil {
			to = v.Status.Migration.To // it takes the guest live
		}
		if v.Status.Staging != nil {
			staging = v.Status.Staging.Hosts // they fetch its image
		}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.nodeOf == nil {
		return // stopped meanwhile
	}
	before := w.nodeOf[ev.KV.Key]
	// The destination of a migration that ended (done, failed or
	// cancelled) learns of it too.
	toBefore := w.toOf[ev.KV.Key]
	if to == "" {
		delete(w.toOf, ev.KV.Key)
	} else {
		if w.toOf == nil {
			w.toOf = map[string]string{}
		}
		w.toOf[ev.KV.Key] = to
	}
	stageBefore := w.stageOf[ev.KV.Key]
	if len(staging) == 0 {
		delete(w.stageOf, ev.KV.Key)
	} else {
		if w.stageOf == nil {
			w.stageOf = map[string][]string{}
		}
		w.stageOf[ev.KV.Key] = staging
	}
	if len(vnis) == 0 {
		vnis = w.vnisOf[ev.KV.Key] // deleted: the networks it was on
	}
	if now == "" {
		delete(w.nodeOf, ev.KV.Key)
		delete(w.vnisOf, ev.KV.Key)
	} else {
		w.nodeOf[ev.KV.Key] = now
		if len(vnis) > 0 {
			w.vnisOf[ev.KV.Key] = vnis
		}
	}
	rev := ev.KV.Revision
	if !known {
		w.allChanged = rev
		for n, c := range w.signal {
			close(c)
			delete(w.signal, n)
		}
		return
	}
	hosts := []string{before, now, from, to, toBefore}
	hosts = append(hosts, staging...)
	hosts = append(hosts, stageBefore...)
	if before != now && len(vnis) > 0 {
		// A member of overlay networks placed, moved or gone: the other
		// hosts of its networks change their forwarding entries.
		hosts = append(hosts, w.networkHostsLocked(vnis)...)
	}
	for _, n := range hosts {
		if n == "" {
			continue
		}
		w.changed[n] = rev
		if c := w.signal[n]; c != nil {
			close(c)
			delete(w.signal, n)
		}
	}
}

// networkHostsLocked lists the hosts with members on any of vnis. The
// caller holds mu.
func (w *nodeWaker) networkHostsLocked(vnis []uint32) []string {
	var out []string
	for k, vs := range w.vnisOf {
		for _, v := range vs {
			if slices.Contains(vnis, v) {
				out = append(out, w.nodeOf[k])
				break
			}
		}
	}
	return out
}
