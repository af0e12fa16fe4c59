package control

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"vgrid/api"
	"vgrid/internal/model"
	"vgrid/internal/spec"
	"vgrid/internal/store"
	"vgrid/internal/store/bolt"
)

func TestHostState(t *testing.T) {
	t0 := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		late time.Duration
		was  model.NodeState
		want model.NodeState
	}{
		{0, "", model.NodeReady},
		{9 * time.Second, model.NodeReady, model.NodeReady},
		{10 * time.Second, model.NodeReady, model.NodeNotReady},
		{29 * time.Second, model.NodeNotReady, model.NodeNotReady},
		{30 * time.Second, model.NodeNotReady, model.NodeLost},
		{time.Second, model.NodeLost, model.NodeLost}, // until it heartbeats again
	} {
		n := model.Node{State: c.was, LastHeartbeat: t0}
		if got := hostState(n, t0.Add(c.late), t0, 10*time.Second, 30*time.Second); got != c.want {
			t.Errorf("%v late, was %q: %s, want %s", c.late, c.was, got, c.want)
		}
	}
	// A control plane that just started (after an hour down) gives its
	// hosts the whole bound: not ready, but not lost yet.
	n := model.Node{State: model.NodeReady, LastHeartbeat: t0}
	restarted := t0.Add(time.Hour)
	if got := hostState(n, restarted.Add(5*time.Second), restarted, 10*time.Second, 30*time.Second); got != model.NodeNotReady {
		t.Errorf("5s after a restart, last heard of an hour before: %s, want NotReady", got)
	}
	if got := hostState(n, restarted.Add(30*time.Second), restarted, 10*time.Second, 30*time.Second); got != model.NodeLost {
		t.Errorf("30s after a restart: %s, want Lost", got)
	}
}

// lostHost fences what may have run on the lost host and leaves the rest.
func TestLostHostFencing(t *testing.T) {
	ws := func(node string, d model.Desired, st model.State, reason string) model.Workspace {
		return model.Workspace{Desired: d, Status: model.WorkspaceStatus{Node: node, State: st, Reason: reason, PID: 42, Generation: 3}}
	}
	for _, c := range []struct {
		name   string
		in     model.Workspace
		state  model.State // "" : unchanged
		desire model.Desired
		reason string
	}{
		{"elsewhere", ws("h2", model.DesiredRunning, model.StateRunning, ""), "", "", ""},
		{"restarted elsewhere", ws("h2", model.DesiredRunning, model.StatePending, ""), "", "", ""},
		{"requeued best effort", ws("h1", model.DesiredStopped, model.StateStopping, "requeued: host h1 removed"), model.StateQueued, model.DesiredStopped, "requeued: host h1 removed"},
		{"lease failed with the host", ws("h1", model.DesiredStopped, model.StateStopping, "lease ended at X after 1h (host h1 removed; no room elsewhere for the rest of its window)"), model.StateFailed, model.DesiredStopped, "host h1 lost: no room on another host for the rest of its lease"},
		{"stopped by its user", ws("h1", model.DesiredStopped, model.StateStopping, "stopped by the user"), model.StateStopped, model.DesiredStopped, "stopped by the user"},
		{"running, lease unknown", ws("h1", model.DesiredRunning, model.StateRunning, ""), model.StateFailed, model.DesiredStopped, "host h1 lost"},
		{"pending", ws("h1", model.DesiredRunning, model.StatePending, ""), model.StateFailed, model.DesiredStopped, "host h1 lost"},
		{"suspended there", ws("h1", model.DesiredSuspended, model.StateSuspended, "preempted"), model.StateQueued, model.DesiredStopped, "requeued: host h1 lost with its saved memory; it starts again from the beginning"},
		{"stopped there, disk kept", ws("h1", model.DesiredStopped, model.StateStopped, "stopped by the user"), "", "", ""},
		{"failed there", ws("h1", model.DesiredStopped, model.StateFailed, "crashed"), "", "", ""},
		{"being deleted", ws("h1", model.DesiredDeleted, model.StateStopping, ""), "", "", ""},
		{"being saved to resume elsewhere", func() model.Workspace {
			w := ws("h1", model.DesiredSuspended, model.StateRunning, "preempted")
			w.Status.ResumeOn = "h2"
			return w
		}(), model.StatePending, model.DesiredRunning, "host h1 lost before its memory was saved: it starts again from the beginning on h2"},
	} {
		t.Run(c.name, func(t *testing.T) {
			ch := lostHost(c.in, "h1", "")
			if c.state == "" {
				if ch.Type != "" {
					t.Fatalf("changed: %+v", ch)
				}
				return
			}
			st := ch.WS.Status
			if ch.Type != "host-lost" || st.State != c.state || ch.WS.Desired != c.desire || st.Reason != c.reason {
				t.Fatalf("got %q %s desired %s reason %q; want %s desired %s reason %q", ch.Type, st.State, ch.WS.Desired, st.Reason, c.state, c.desire, c.reason)
			}
			if st.Generation != 4 || st.PID != 0 {
				t.Fatalf("generation %d pid %d: want 4 and 0 (late reports of the old guest ignored)", st.Generation, st.PID)
			}
			if again := lostHost(ch.WS, "h1", ""); again.Type != "" && c.state != model.StateQueued {
				// (idempotent: once fenced, nothing more)
				t.Fatalf("not idempotent: %+v", again)
			}
		})
	}
}

// A workspace whose lease the calendar restarted on another host, where
// its start is not due yet (the image is staged first), waits for it there
// on no host: neither failed nor left on the lost host.
func TestLostHostRestartNotYetStarted(t *testing.T) {
	in := model.Workspace{Desired: model.DesiredRunning, Status: model.WorkspaceStatus{Node: "h1", State: model.StateRunning, PID: 42, Generation: 3}}
	ch := lostHost(in, "h1", "h2")
	st := ch.WS.Status
	if ch.Type != "host-lost" || st.State != model.StateScheduled || ch.WS.Desired != model.DesiredRunning || st.Node != "" ||
		st.Reason != "host h1 lost: restarts on h2 for the rest of its lease, from a fresh disk" || st.Generation != 4 || st.PID != 0 {
		t.Fatalf("got %q %s desired %s node %q reason %q generation %d pid %d", ch.Type, st.State, ch.WS.Desired, st.Node, st.Reason, st.Generation, st.PID)
	}
	if again := lostHost(ch.WS, "h1", "h2"); again.Type != "" {
		t.Fatalf("not idempotent: %+v", again)
	}
	// Once started there (transition), nothing more.
	started := in
	started.Status.Node, started.Status.State = "h2", model.StatePending
	if ch := lostHost(started, "h1", "h2"); ch.Type != "" {
		t.Fatalf("started elsewhere, changed: %+v", ch)
	}
}

type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *testClock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func hostsEnv(t *testing.T, names ...string) (*Controller, *testClock) {
	t.Helper()
	st, err := bolt.Open(filepath.Join(t.TempDir(), "store.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return hostsEnvOn(t, st, names...)
}

// hostsEnvOn is hostsEnv on the store st.
func hostsEnvOn(t *testing.T, st store.Store, names ...string) (*Controller, *testClock) {
	t.Helper()
	clk := &testClock{t: time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)}
	ctl, err := New(Config{Store: st, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Now: clk.now,
		NodeTimeout: 10 * time.Second, NodeLostAfter: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	img := model.Image{Name: "img", Boot: "direct", DiskFormat: "raw", MinDisk: model.GiB,
		Disk: model.ImageFile{Path: "/nonexistent/disk", SHA256: strings.Repeat("a", 64), Size: 1}}
	if err := ctl.RegisterImage(ctx, img, false); err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		if _, err := ctl.RegisterNode(ctx, model.Node{Name: n, Accel: "tcg", Capacity: model.Resources{MilliCPU: 2000, Memory: 4 * model.GiB, Disk: 100 * model.GiB}}); err != nil {
			t.Fatal(err)
		}
	}
	return ctl, clk
}

func createWS(t *testing.T, ctl *Controller, name, cpu, lease string) model.Workspace {
	t.Helper()
	return createIn(t, ctl, "p", name, cpu, lease)
}

func running(t *testing.T, ctl *Controller, w model.Workspace, at time.Time) model.Workspace {
	t.Helper()
	ctx := context.Background()
	w, err := ctl.Workspace(ctx, "p", w.Spec.Name)
	if err != nil {
		t.Fatal(err)
	}
	for _, st := range []model.State{model.StateStarting, model.StateRunning} {
		w, err = ctl.Report(ctx, w.Status.Node, "p", w.Spec.Name, api.AgentReport{ID: w.ID, Generation: w.Status.Generation, State: st, PID: 100, StartedAt: at, ProcessStarted: at})
		if err != nil {
			t.Fatalf("report %s %s: %v", w.Spec.Name, st, err)
		}
	}
	return w
}

// A host whose heartbeats stop is NotReady (given nothing new), then Lost:
// its immediate lease restarts on the other host where there is room, its
// best-effort lease is queued again, what finds no room fails with the
// reason, and a late report from the lost host about an old guest changes
// nothing. When it heartbeats again it is Ready and in the calendar, empty.
func TestHostLoss(t *testing.T) {
	ctx := context.Background()
	ctl, clk := hostsEnv(t, "h1", "h2")
	t0 := clk.now()
	// h1: im (1 core) and be (1 core); h2: big (1.5 cores), so that only
	// one of h1's can move there.
	im := createWS(t, ctl, "im", "1", "")
	if im.Status.Node != "h1" {
		t.Fatalf("im on %q, want h1", im.Status.Node)
	}
	big := createWS(t, ctl, "big", "1.5", "")
	be := createWS(t, ctl, "be", "1", "{kind: best-effort}")
	if big.Status.Node != "h2" {
		t.Fatalf("big on %q, want h2", big.Status.Node)
	}
	if err := ctl.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	im, be, big = running(t, ctl, im, t0), running(t, ctl, be, t0), running(t, ctl, big, t0)
	if be.Status.Node != "h1" {
		t.Fatalf("be on %q, want h1", be.Status.Node)
	}

	// h2 heartbeats; h1 goes silent.
	beat := func(n string) {
		if err := ctl.Heartbeat(ctx, n, model.Node{}); err != nil {
			t.Fatal(err)
		}
	}
	state := func(n string) model.NodeState {
		nodes, err := ctl.Nodes(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, ni := range nodes {
			if ni.Name == n {
				return ni.State
			}
		}
		t.Fatalf("no node %s", n)
		return ""
	}
	for i := 0; i < 3; i++ {
		clk.add(5 * time.Second)
		beat("h2")
		if err := ctl.Reconcile(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if s := state("h1"); s != model.NodeNotReady {
		t.Fatalf("h1 after 15s silent: %s, want NotReady", s)
	}
	// NotReady: given nothing new.
	if w := createWS(t, ctl, "new", "0.25", ""); w.Status.Node != "h2" {
		t.Fatalf("new workspace placed on %q while h1 is NotReady", w.Status.Node)
	}
	for i := 0; i < 4; i++ {
		clk.add(5 * time.Second)
		beat("h2")
		if err := ctl.Reconcile(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if s := state("h1"); s != model.NodeLost {
		t.Fatalf("h1 after 35s silent: %s, want Lost", s)
	}
	get := func(name string) model.Workspace {
		w, err := ctl.Workspace(ctx, "p", name)
		if err != nil {
			t.Fatal(err)
		}
		return w
	}
	// im: restarted on h2 (0.5 core left there after big and new: 0.25 + 1
	// does not fit... big 1.5 + new 0.25 leaves 0.25): no room, so Failed;
	// be: queued again.
	gotIm, gotBe := get("im"), get("be")
	if gotIm.Status.State != model.StateFailed || !strings.Contains(gotIm.Status.Reason, "host h1 lost") {
		t.Fatalf("im after h1 lost: %s %q on %s", gotIm.Status.State, gotIm.Status.Reason, gotIm.Status.Node)
	}
	if gotBe.Status.State != model.StateQueued || gotBe.Status.Generation <= be.Status.Generation {
		t.Fatalf("be after h1 lost: %s %q gen %d", gotBe.Status.State, gotBe.Status.Reason, gotBe.Status.Generation)
	}
	// A late report from h1 about be's old guest changes nothing.
	if _, err := ctl.Report(ctx, "h1", "p", "be", api.AgentReport{ID: be.ID, Generation: be.Status.Generation, State: model.StateRunning, PID: 100}); err != nil {
		t.Fatalf("late report: %v", err)
	}
	if w := get("be"); w.Status.State != model.StateQueued {
		t.Fatalf("late report from the lost host changed be: %s", w.Status.State)
	}
	// h1 assignments: be and im are there, to be stopped (desired stopped).
	as, err := ctl.Assignments(ctx, "h1", 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range as.Workspaces {
		if w.Desired == model.DesiredRunning {
			t.Fatalf("the lost host is still asked to run %s", w.Spec.Name)
		}
	}

	// h1 comes back: Ready, in the calendar again, and be starts on it.
	clk.add(time.Second)
	beat("h1")
	if err := ctl.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	if s := state("h1"); s != model.NodeReady {
		t.Fatalf("h1 back: %s", s)
	}
	if w := get("be"); w.Desired != model.DesiredRunning || w.Status.Node != "h1" || w.Status.State != model.StatePending {
		t.Fatalf("be after h1 came back: %s on %s desired %s", w.Status.State, w.Status.Node, w.Desired)
	}
}

// With room on another host, a begun immediate lease restarts there for the
// rest of its window, with an event saying why.
func TestHostLossRestartsElsewhere(t *testing.T) {
	ctx := context.Background()
	ctl, clk := hostsEnv(t, "h1", "h2")
	im := createWS(t, ctl, "im", "1", "")
	im = running(t, ctl, im, clk.now())
	end := im.Status.ExpiresAt
	for i := 0; i < 7; i++ {
		clk.add(5 * time.Second)
		if err := ctl.Heartbeat(ctx, "h2", model.Node{}); err != nil {
			t.Fatal(err)
		}
		if err := ctl.Reconcile(ctx); err != nil {
			t.Fatal(err)
		}
	}
	w, err := ctl.Workspace(ctx, "p", "im")
	if err != nil {
		t.Fatal(err)
	}
	if w.Status.Node != "h2" || w.Desired != model.DesiredRunning || w.Status.State != model.StatePending || w.Status.Generation != im.Status.Generation+1 {
		t.Fatalf("im after h1 lost: %s on %s desired %s gen %d", w.Status.State, w.Status.Node, w.Desired, w.Status.Generation)
	}
	if !w.Status.ExpiresAt.Equal(end) {
		t.Fatalf("restarted lease ends %s, want %s (the rest of its window)", w.Status.ExpiresAt, end)
	}
	evs, err := ctl.Events(ctx, "p", "im")
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, e := range evs {
		if e.Type == "restarted" && strings.Contains(e.Message, "host h1 lost: restarted on h2") {
			found = true
		}
	}
	if !found {
		t.Fatalf("no restart event: %+v", evs)
	}
}

func beatAll(t *testing.T, ctl *Controller, names ...string) {
	t.Helper()
	for _, n := range names {
		if err := ctl.Heartbeat(context.Background(), n, model.Node{Transfer: n + ":7444"}); err != nil {
			t.Fatal(err)
		}
	}
}

func report(t *testing.T, ctl *Controller, w model.Workspace, r api.AgentReport) model.Workspace {
	t.Helper()
	cur, err := ctl.Workspace(context.Background(), w.Project, w.Spec.Name)
	if err != nil {
		t.Fatal(err)
	}
	r.ID, r.Generation = cur.ID, cur.Status.Generation
	out, err := ctl.Report(context.Background(), cur.Status.Node, cur.Project, cur.Spec.Name, r)
	if err != nil {
		t.Fatalf("report %+v: %v", r, err)
	}
	return out
}

// A stopped workspace whose host is cordoned starts on another host, its
// disk copied from the first: the destination is told where from, the
// source lists it as outgoing until the destination reports it moved.
func TestStartElsewhereMovesTheDisk(t *testing.T) {
	ctx := context.Background()
	ctl, clk := hostsEnv(t, "h1", "h2")
	beatAll(t, ctl, "h1", "h2")
	w := createWS(t, ctl, "w", "1", "")
	running(t, ctl, w, clk.now()) // (the controller's clock: a report from the real one may be in its future)
	if _, err := ctl.StopWorkspace(ctx, "p", "w", "stopped by the user"); err != nil {
		t.Fatal(err)
	}
	w = report(t, ctl, w, api.AgentReport{State: model.StateStopped})
	if w.Status.State != model.StateStopped || w.Status.Node != "h1" {
		t.Fatalf("stopped: %s on %s", w.Status.State, w.Status.Node)
	}
	if _, err := ctl.CordonNode(ctx, "h1", true); err != nil {
		t.Fatal(err)
	}
	// h2 has measured how fast it receives files: the start stages the
	// image first, so no start action comes at once; it is placed all the
	// same.
	if err := ctl.Heartbeat(ctx, "h2", model.Node{Measured: &model.HostTimes{Stage: []int64{1 << 20}}}); err != nil {
		t.Fatal(err)
	}
	w, err := ctl.StartWorkspace(ctx, "p", "w")
	if err != nil {
		t.Fatal(err)
	}
	if m := w.Status.Move; w.Status.Node != "h2" || m == nil || m.From != "h1" || m.Memory {
		t.Fatalf("started on %s, move %+v; want h2 from h1, disk only", w.Status.Node, m)
	}
	as, err := ctl.Assignments(ctx, "h2", 0, 0)
	if err != nil || len(as.Workspaces) != 1 || as.Workspaces[0].Status.Move == nil || as.Workspaces[0].Status.Move.Source != "h1:7444" {
		t.Fatalf("h2's assignments: %+v %v", as, err)
	}
	src, err := ctl.Assignments(ctx, "h1", 0, 0)
	if err != nil || len(src.Outgoing) != 1 || src.Outgoing[0].To != "h2" || src.Outgoing[0].ID != w.ID {
		t.Fatalf("h1's outgoing: %+v %v", src.Outgoing, err)
	}
	w = report(t, ctl, w, api.AgentReport{State: model.StateStopped, MoveBytes: 100, MoveDone: 40})
	if m := w.Status.Move; m == nil || m.Done != 40 || w.Status.State != model.StatePending {
		t.Fatalf("progress: %+v %s", m, w.Status.State)
	}
	w = report(t, ctl, w, api.AgentReport{State: model.StateStopped, Moved: true, MoveBytes: 100, MoveDone: 100})
	if w.Status.Move != nil || w.Status.State != model.StatePending || w.Desired != model.DesiredRunning {
		t.Fatalf("moved: %+v %s desired %s (a move report says nothing of the guest)", w.Status.Move, w.Status.State, w.Desired)
	}
	if src, _ := ctl.Assignments(ctx, "h1", 0, 0); len(src.Outgoing) != 0 {
		t.Fatalf("still outgoing after the move: %+v", src.Outgoing)
	}
	evs, _ := ctl.Events(ctx, "p", "w")
	if e := evs[len(evs)-1]; e.Type != "moved" || !strings.Contains(e.Message, "copied from h1") {
		t.Fatalf("last event %+v", e)
	}
}

// Draining a host whose workspaces no other host has room for suspends
// the best-effort one (to resume elsewhere later) and leaves the immediate
// one, with why.
func TestDrainWithoutRoomSuspends(t *testing.T) {
	ctx := context.Background()
	ctl, clk := hostsEnv(t, "h1", "h2")
	beatAll(t, ctl, "h1", "h2")
	be := createWS(t, ctl, "be", "1", "{kind: best-effort}")
	im := createWS(t, ctl, "im", "0.5", "")
	x := createWS(t, ctl, "x", "2", "") // fills h2
	if err := ctl.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	be, im, x = running(t, ctl, be, clk.now()), running(t, ctl, im, clk.now()), running(t, ctl, x, clk.now())
	if be.Status.Node != "h1" || im.Status.Node != "h1" || x.Status.Node != "h2" {
		t.Fatalf("placed on %s, %s and %s, want h1, h1, h2", be.Status.Node, im.Status.Node, x.Status.Node)
	}
	clk.add(time.Minute)
	beatAll(t, ctl, "h1", "h2")
	out, err := ctl.DrainNode(ctx, "h1")
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]api.DrainEntry{}
	for _, m := range out.Moves {
		got[m.Workspace] = m
	}
	if got["be"].Action != "suspended" || got["im"].Action != "left" || len(out.Moves) != 2 {
		t.Fatalf("drain: %+v", out.Moves)
	}
	if !strings.Contains(got["im"].Reason, "no other host has room") {
		t.Errorf("im left because %q", got["im"].Reason)
	}
	if n, _ := ctl.Node(ctx, "h1"); !n.Cordoned {
		t.Fatal("drained host not cordoned")
	}
	if w, _ := ctl.Workspace(ctx, "p", "be"); w.Desired != model.DesiredSuspended || w.Status.Node != "h1" {
		t.Fatalf("be after drain: desired %s on %s", w.Desired, w.Status.Node)
	}
}

// Draining a host migrates its running workspaces live, of any lease
// kind, to the host with room; the agents' reports carry each move out
// (or fail it, leaving the guest where it was), and the calendar follows.
func TestDrainMigrates(t *testing.T) {
	ctx := context.Background()
	ctl, clk := hostsEnv(t, "h1", "h2")
	beatAll(t, ctl, "h1", "h2")
	be := createWS(t, ctl, "be", "1", "{kind: best-effort}")
	im := createWS(t, ctl, "im", "0.5", "")
	if err := ctl.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	be, im = running(t, ctl, be, clk.now()), running(t, ctl, im, clk.now())
	clk.add(time.Minute)
	beatAll(t, ctl, "h1", "h2")
	out, err := ctl.DrainNode(ctx, "h1")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range out.Moves {
		if m.Action != "migrating" || m.Reason != "live to h2" {
			t.Fatalf("drain: %+v", out.Moves)
		}
	}
	// The destination is told to prepare both; the source not yet.
	if as, _ := ctl.Assignments(ctx, "h2", 0, 0); len(as.Incoming) != 2 {
		t.Fatalf("h2's incoming: %+v", as.Incoming)
	}
	leaseOn := func(name string) (string, map[int]string) {
		w, _ := ctl.Workspace(ctx, "p", name)
		ctl.mu.Lock()
		defer ctl.mu.Unlock()
		v, _ := ctl.cal.Get(leaseID(w))
		return v.Hosts[0], v.Moving
	}
	if h, mv := leaseOn("be"); h != "h1" || mv[0] != "h2" {
		t.Fatalf("be's lease during the move: on %s moving %v", h, mv)
	}
	ep := &model.MigrationEndpoint{Memory: "10.0.0.2:5000", Disk: "nbd://10.0.0.2:5001/vda"}
	rep := func(node, name string, r api.MigrationReport) {
		t.Helper()
		w, _ := ctl.Workspace(ctx, "p", name)
		r.ID, r.Since = w.ID, w.Status.Migration.Since
		if err := ctl.MigrationReport(ctx, node, "p", name, r); err != nil {
			t.Fatalf("%s's report on %s: %v", node, name, err)
		}
	}
	for _, n := range []string{"be", "im"} {
		rep("h2", n, api.MigrationReport{Endpoint: ep})
	}
	if w, _ := ctl.Workspace(ctx, "p", "be"); w.Status.Migration.Phase != model.MigrationRunning || w.Status.Migration.Endpoint == nil {
		t.Fatalf("be after its destination is ready: %+v", w.Status.Migration)
	}
	rep("h1", "be", api.MigrationReport{Progress: &model.MigrationProgress{Phase: "memory", MemoryTotal: 512 << 20, MemoryTransferred: 100 << 20}})
	rep("h1", "be", api.MigrationReport{Done: true, Total: model.Duration(2 * time.Second), Downtime: model.Duration(40 * time.Millisecond), MemoryBytes: 300 << 20})
	rep("h1", "im", api.MigrationReport{Failed: "connection reset"})
	w, _ := ctl.Workspace(ctx, "p", "be")
	if w.Status.Node != "h2" || w.Status.Migration != nil {
		t.Fatalf("be after its migration: on %s, %+v", w.Status.Node, w.Status.Migration)
	}
	if h, mv := leaseOn("be"); h != "h2" || len(mv) != 0 {
		t.Fatalf("be's lease after the move: on %s moving %v", h, mv)
	}
	if h, mv := leaseOn("im"); h != "h1" || len(mv) != 0 {
		t.Fatalf("im's lease after its failed move: on %s moving %v", h, mv)
	}
	evs, _ := ctl.Events(ctx, "p", "be")
	if e := evs[len(evs)-1]; e.Type != "migrated" || !strings.Contains(e.Message, "downtime 40ms") {
		t.Fatalf("be's last event %+v", e)
	}
	evs, _ = ctl.Events(ctx, "p", "im")
	if e := evs[len(evs)-1]; e.Type != "migration-failed" || !strings.Contains(e.Message, "connection reset") {
		t.Fatalf("im's last event %+v", e)
	}
	// The source's reports on be are now refused (it left), h2's taken.
	if _, err := ctl.Report(ctx, "h1", "p", "be", api.AgentReport{ID: w.ID, Generation: w.Status.Generation, State: model.StateStopped}); err == nil {
		t.Fatal("h1's report on be after it left was taken")
	}
	if w := report(t, ctl, w, api.AgentReport{State: model.StateRunning, PID: 7}); w.Status.PID != 7 {
		t.Fatalf("h2's report: %+v", w.Status)
	}
}

// A heartbeat with a new capacity reaches the calendar: a workspace
// waiting for room starts when its host grows; measured transfer rates are
// kept with the node.
func TestHeartbeatChangesReachTheCalendar(t *testing.T) {
	ctx := context.Background()
	ctl, clk := hostsEnv(t, "h1")
	createWS(t, ctl, "a", "2", "{kind: best-effort}")
	b := createWS(t, ctl, "b", "2", "{kind: best-effort}")
	if err := ctl.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	if w, _ := ctl.Workspace(ctx, "p", "b"); w.Status.State != model.StateQueued {
		t.Fatalf("b on a full host: %s", w.Status.State)
	}
	grown := model.Node{Capacity: model.Resources{MilliCPU: 4000, Memory: 4 * model.GiB, Disk: 100 * model.GiB},
		Measured: &model.HostTimes{Stage: []int64{200 << 20}}}
	if err := ctl.Heartbeat(ctx, "h1", grown); err != nil {
		t.Fatal(err)
	}
	clk.add(5 * time.Second) // staging its image, at the rate measured
	if err := ctl.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	if w, _ := ctl.Workspace(ctx, "p", "b"); w.Status.State != model.StatePending || w.Status.Node != "h1" || w.ID != b.ID {
		t.Fatalf("b after h1 grew: %s on %s", w.Status.State, w.Status.Node)
	}
	n, _ := ctl.Node(ctx, "h1")
	if n.Measured.StageRate() != 200<<20 {
		t.Fatalf("stage rate %d", n.Measured.StageRate())
	}
	// The guests it runs, as it says.
	if err := ctl.Heartbeat(ctx, "h1", model.Node{Running: []string{b.ID}}); err != nil {
		t.Fatal(err)
	}
	if n, _ := ctl.Node(ctx, "h1"); len(n.Running) != 1 || n.Running[0] != b.ID {
		t.Fatalf("running %v", n.Running)
	}
	err := ctl.Heartbeat(ctx, "h1", model.Node{Running: []string{"../etc"}})
	if err == nil || !strings.Contains(err.Error(), "invalid heartbeat") {
		t.Fatalf("a heartbeat naming a bad workspace ID: %v", err)
	}
}

// A host with workspaces is not deleted (the refusal names them); an
// empty one is, and leaves the calendar.
func TestDeleteNode(t *testing.T) {
	ctx := context.Background()
	ctl, _ := hostsEnv(t, "h1", "h2")
	createWS(t, ctl, "w", "1", "")
	err := ctl.DeleteNode(ctx, "h1")
	if err == nil || !strings.Contains(err.Error(), "p/w") {
		t.Fatalf("delete a host with a workspace: %v", err)
	}
	if err := ctl.DeleteNode(ctx, "h2"); err != nil {
		t.Fatal(err)
	}
	if _, err := ctl.Node(ctx, "h2"); err == nil {
		t.Fatal("h2 still there")
	}
	if err := ctl.DeleteNode(ctx, "h2"); err == nil {
		t.Fatal("deleted twice")
	}
	// The calendar has no h2: a workspace too big for h1's room is refused.
	createWS(t, ctl, "x", "1", "")
	if _, err := ctl.CreateWorkspace(ctx, "p", mustSpec(t, "third", "1")); err == nil {
		t.Fatal("placed on a deleted host")
	}
}

func mustSpec(t *testing.T, name, cpu string) model.WorkspaceSpec {
	t.Helper()
	sp, err := spec.Parse([]byte(fmt.Sprintf("name: %s\nimage: img\nquantum: {vcpus: 2, cpu: %s, memory: 512Mi, disk: 1Gi}\nduration: 2h\n", name, cpu)))
	if err != nil {
		t.Fatal(err)
	}
	return sp
}

// A control plane started again after being down longer than the bound
// does not declare its hosts lost before they had the time to heartbeat
// to it; a host that stays silent is lost a bound after the start.
func TestRestartedControlPlaneWaitsForHeartbeats(t *testing.T) {
	ctx := context.Background()
	old, clk := hostsEnv(t, "h1")
	w := createWS(t, old, "w", "1", "")
	running(t, old, w, clk.now())
	clk.add(time.Hour) // the control plane was down
	ctl, err := New(Config{Store: old.store, Logger: old.log, Now: clk.now, NodeTimeout: 10 * time.Second, NodeLostAfter: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if err := ctl.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	if n, _ := ctl.Node(ctx, "h1"); n.State == model.NodeLost {
		t.Fatal("h1 lost at once after the control plane's restart")
	}
	if got, _ := ctl.Workspace(ctx, "p", "w"); got.Status.State != model.StateRunning {
		t.Fatalf("w after the restart: %s", got.Status.State)
	}
	clk.add(31 * time.Second)
	if err := ctl.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	if n, _ := ctl.Node(ctx, "h1"); n.State != model.NodeLost {
		t.Fatalf("h1 silent for the bound after the restart: %s, want Lost", n.State)
	}
}

// A workspace placed at admission whose lease starts later (its image
// staged first, at the rate the host measured) is held back from its agent
// until then, and its agent's long poll wakes when the lease starts, not
// at the poll's timeout (found by hand: a 30 s wait after a start).
func TestLeaseStartAfterStagingWakesTheAgent(t *testing.T) {
	ctx := context.Background()
	ctl, clk := hostsEnv(t, "h1")
	w := createWS(t, ctl, "w", "1", "")
	running(t, ctl, w, clk.now())
	if _, err := ctl.StopWorkspace(ctx, "p", "w", "stopped by the user"); err != nil {
		t.Fatal(err)
	}
	report(t, ctl, w, api.AgentReport{State: model.StateStopped})
	if err := ctl.Heartbeat(ctx, "h1", model.Node{Measured: &model.HostTimes{Stage: []int64{1 << 20}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := ctl.StartWorkspace(ctx, "p", "w"); err != nil {
		t.Fatal(err)
	}
	as, err := ctl.Assignments(ctx, "h1", 0, 0)
	if err != nil || len(as.Workspaces) != 1 {
		t.Fatalf("assignments: %+v %v", as, err)
	}
	if as.Workspaces[0].Status.Hold == "" {
		t.Fatal("not held back while its image is staged")
	}
	done := make(chan time.Duration, 1)
	go func() {
		t0 := time.Now()
		_, _ = ctl.Assignments(ctx, "h1", as.Revision, 10*time.Second)
		done <- time.Since(t0)
	}()
	time.Sleep(100 * time.Millisecond)
	clk.add(5 * time.Second)
	if err := ctl.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case took := <-done:
		if took > 5*time.Second {
			t.Fatalf("long poll woke after %v", took)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the agent's long poll did not wake when the lease started")
	}
	as, _ = ctl.Assignments(ctx, "h1", 0, 0)
	if got := as.Workspaces[0]; got.Status.Hold != "" || got.ID != w.ID {
		t.Fatalf("still held back: %q", got.Status.Hold)
	}
}

// A host whose heartbeats were late is ready again with its next heartbeat,
// not with the next health check: a start right after that heartbeat is
// not refused by the cordon the late heartbeats put on it (as after a
// restart of the control plane, when make run starts its example at once).
func TestHeartbeatLiftsTheLateCordonAtOnce(t *testing.T) {
	ctx := context.Background()
	ctl, clk := hostsEnv(t, "h1")
	clk.add(15 * time.Second) // late: NotReady, cordoned in the calendar
	if err := ctl.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	sp := mustSpec(t, "w", "0.5")
	if _, err := ctl.CreateWorkspace(ctx, "p", sp); err == nil {
		t.Fatal("placed on a host whose heartbeats are late")
	}
	beatAll(t, ctl, "h1")
	w, err := ctl.CreateWorkspace(ctx, "p", sp)
	if err != nil || w.Status.Node != "h1" {
		t.Fatalf("right after the heartbeat: %+v %v, want placed on h1", w.Status, err)
	}
}
