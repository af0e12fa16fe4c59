package control

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"vgrid/internal/model"
	"vgrid/internal/store"
	"vgrid/internal/store/bolt"
)

func wakeEnv(t *testing.T) (*Controller, store.Store) {
	t.Helper()
	st, err := bolt.Open(filepath.Join(t.TempDir(), "store.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	ctl, err := New(Config{Store: st, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	// A first poll starts every waker's watch (they start lazily, at the
	// store's revision then): a waker started by a test's poll after the
	// test's own write would answer that poll at once ("cannot tell"),
	// as a CI run saw under load.
	rev, err := st.Revision(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if err := ctl.waitChange(context.Background(), "warm-up", rev, time.Millisecond); err != nil {
		t.Fatal(err)
	}
	return ctl, st
}

// putWS stores a workspace placed on node ("": not placed).
func putWS(t *testing.T, st store.Store, name, node string) {
	t.Helper()
	w := model.Workspace{ID: "id-" + name, Project: "p", Spec: model.WorkspaceSpec{Name: name}, Status: model.WorkspaceStatus{Node: node}}
	b, _ := json.Marshal(w)
	if _, err := st.Update(context.Background(), wsKey("p", name), b, 0); err != nil {
		t.Fatal(err)
	}
}

type pollResult struct {
	node string
	took time.Duration
	err  error
}

// poll starts a long poll of node from the store's current revision.
func poll(t *testing.T, ctl *Controller, node string, wait time.Duration) <-chan pollResult {
	t.Helper()
	rev, err := ctl.store.Revision(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	out := make(chan pollResult, 1)
	go func() {
		t0 := time.Now()
		err := ctl.waitChange(context.Background(), node, rev, wait)
		out <- pollResult{node, time.Since(t0), err}
	}()
	return out
}

// blocked waits until the polls of nodes wait on the shared watch.
func blocked(t *testing.T, ctl *Controller, nodes ...string) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		ctl.waker.mu.Lock()
		n := 0
		for _, node := range nodes {
			if ctl.waker.signal[node] != nil {
				n++
			}
		}
		ctl.waker.mu.Unlock()
		if n == len(nodes) {
			return
		}
	}
	t.Fatalf("polls of %v not waiting", nodes)
}

// woken says whether a poll returned within d.
func woken(ch <-chan pollResult, d time.Duration) (pollResult, bool) {
	select {
	case r := <-ch:
		return r, true
	case <-time.After(d):
		return pollResult{}, false
	}
}

// A change on host A wakes A's long poll at once and leaves host B's
// blocked until its wait passes; a workspace moving or deleted wakes the
// host it was on; an unplaced one wakes nobody.
func TestWakeOnlyTheHostConcerned(t *testing.T) {
	ctl, st := wakeEnv(t)
	putWS(t, st, "a1", "host-a")
	putWS(t, st, "b1", "host-b")
	const bWait = 700 * time.Millisecond

	// A new workspace on A.
	a, b := poll(t, ctl, "host-a", 10*time.Second), poll(t, ctl, "host-b", bWait)
	blocked(t, ctl, "host-a", "host-b")
	putWS(t, st, "a2", "host-a")
	if r, ok := woken(a, 2*time.Second); !ok || r.err != nil {
		t.Fatalf("A's poll not woken by a change on A: %+v %v", r, ok)
	}
	r, ok := woken(b, 3*time.Second)
	if !ok || r.err != nil {
		t.Fatalf("B's poll did not end after its wait: %+v", r)
	}
	if r.took < bWait-20*time.Millisecond {
		t.Fatalf("B's poll woken after %s by a change on A (wait %s)", r.took, bWait)
	}

	// A workspace moved from A to B wakes both.
	a, b = poll(t, ctl, "host-a", 10*time.Second), poll(t, ctl, "host-b", 10*time.Second)
	blocked(t, ctl, "host-a", "host-b")
	putWS(t, st, "a1", "host-b")
	for _, ch := range []<-chan pollResult{a, b} {
		if r, ok := woken(ch, 2*time.Second); !ok || r.err != nil {
			t.Fatalf("a move from A to B did not wake %s: %+v", r.node, r)
		}
	}

	// A deleted workspace (the event has no value) wakes the host it was
	// on, and only it.
	a, b = poll(t, ctl, "host-a", bWait), poll(t, ctl, "host-b", 10*time.Second)
	blocked(t, ctl, "host-a", "host-b")
	if err := st.Delete(context.Background(), wsKey("p", "b1"), 0); err != nil {
		t.Fatal(err)
	}
	if r, ok := woken(b, 2*time.Second); !ok || r.err != nil {
		t.Fatalf("a delete on B did not wake B: %+v", r)
	}
	if r, _ := woken(a, 3*time.Second); r.took < bWait-20*time.Millisecond {
		t.Fatalf("a delete on B woke A after %s", r.took)
	}

	// An unplaced workspace, and keys outside ws/, wake nobody.
	a = poll(t, ctl, "host-a", bWait)
	blocked(t, ctl, "host-a")
	putWS(t, st, "queued", "")
	if _, err := st.Update(context.Background(), "nodes/host-a", []byte(`{}`), 0); err != nil {
		t.Fatal(err)
	}
	if r, _ := woken(a, 3*time.Second); r.took < bWait-20*time.Millisecond {
		t.Fatalf("an unplaced workspace woke A after %s", r.took)
	}
	// It wakes its host once placed.
	a = poll(t, ctl, "host-a", 10*time.Second)
	blocked(t, ctl, "host-a")
	putWS(t, st, "queued", "host-a")
	if r, ok := woken(a, 2*time.Second); !ok || r.err != nil {
		t.Fatalf("placing a queued workspace on A did not wake A: %+v", r)
	}
}

// A poll from before what the shared watch knows, or from a revision
// this store has not reached, answers at once; a change made between two
// polls of a host is not missed.
func TestWakeRevisionsOutsideTheWatch(t *testing.T) {
	ctl, st := wakeEnv(t)
	putWS(t, st, "a1", "host-a")
	rev, _ := st.Revision(context.Background())
	putWS(t, st, "a2", "host-a") // before any watch
	for _, after := range []int64{rev, rev + 1000} {
		t0 := time.Now()
		if err := ctl.waitChange(context.Background(), "host-a", after, 5*time.Second); err != nil {
			t.Fatal(err)
		}
		if d := time.Since(t0); d > time.Second {
			t.Fatalf("after %d: waited %s, want an answer at once", after, d)
		}
	}
	// The watch runs now; a change between the answer and the next poll.
	rev, _ = st.Revision(context.Background())
	putWS(t, st, "a3", "host-a")
	t0 := time.Now()
	if err := ctl.waitChange(context.Background(), "host-a", rev, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(t0); d > time.Second {
		t.Fatalf("a change made before the poll was missed: waited %s", d)
	}
}

// Closing the store ends every poll (and the shared watch).
func TestWakeStoreClosed(t *testing.T) {
	ctl, st := wakeEnv(t)
	putWS(t, st, "a1", "host-a")
	a := poll(t, ctl, "host-a", 10*time.Second)
	blocked(t, ctl, "host-a")
	st.Close()
	if _, ok := woken(a, 2*time.Second); !ok {
		t.Fatal("a poll outlived its store")
	}
}

// A reservation's workspace, not placed yet, whose image the calendar has
// its hosts stage wakes those hosts (they fetch the image now); they wake
// again when the staging ends.
func TestWakeStagingHosts(t *testing.T) {
	ctl, st := wakeEnv(t)
	put := func(staging *model.Staging) {
		t.Helper()
		w := model.Workspace{ID: "id-r", Project: "p", Spec: model.WorkspaceSpec{Name: "r"}, Status: model.WorkspaceStatus{Staging: staging}}
		b, _ := json.Marshal(w)
		if _, err := st.Update(context.Background(), wsKey("p", "r"), b, 0); err != nil {
			t.Fatal(err)
		}
	}
	const bWait = 700 * time.Millisecond
	a, b := poll(t, ctl, "host-a", 10*time.Second), poll(t, ctl, "host-b", bWait)
	blocked(t, ctl, "host-a", "host-b")
	put(&model.Staging{Image: "img", Hosts: []string{"host-a"}})
	if r, ok := woken(a, 2*time.Second); !ok || r.err != nil {
		t.Fatalf("staging on A did not wake A: %+v %v", r, ok)
	}
	if r, _ := woken(b, 3*time.Second); r.took < bWait-20*time.Millisecond {
		t.Fatalf("staging on A woke B after %s", r.took)
	}
	a = poll(t, ctl, "host-a", 10*time.Second)
	blocked(t, ctl, "host-a")
	put(nil)
	if r, ok := woken(a, 2*time.Second); !ok || r.err != nil {
		t.Fatalf("the end of staging on A did not wake A: %+v %v", r, ok)
	}
}
