package agent

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"vgrid/internal/model"
	"vgrid/internal/server"
)

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// The calendar's preemption end to end with the fake driver: a reservation
// suspends a best-effort guest (its process ends, its uptime stops) and the
// guest resumes after the reservation, its uptime continuing.
func TestReservationSuspendsAndResumesBestEffortGuest(t *testing.T) {
	clk := &fakeClock{t: time.Now().UTC().Truncate(time.Second)}
	r := newRigWith(t, func(c *server.Config) {
		c.Now = clk.Now
		c.ReconcileEvery = 20 * time.Millisecond
		c.NodeTimeout = 24 * time.Hour // the fake clock jumps
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = r.srv.Run(ctx) }()
	defer func() { cancel(); <-done }()

	spec := func(name, dur, lease string) []byte {
		return []byte(fmt.Sprintf("name: %s\nimage: vgrid-guest\nquantum: {vcpus: 4, cpu: 4, memory: 256Mi}\nduration: %s\nlease: %s\n", name, dur, lease))
	}
	if _, err := r.user.CreateWorkspace(ctx, spec("batch", "4h", "{kind: best-effort}")); err != nil {
		t.Fatal(err)
	}
	be := r.waitState("batch", model.StateRunning)
	pid0 := be.Status.PID
	start := clk.Now().Add(time.Hour).Format(time.RFC3339)
	if _, err := r.user.CreateWorkspace(ctx, spec("booked", "1h", fmt.Sprintf("{kind: reservation, start: %q}", start))); err != nil {
		t.Fatal(err)
	}
	r.waitState("booked", model.StateScheduled)
	// Let the guest's uptime grow, then reach the reservation's start.
	time.Sleep(300 * time.Millisecond)
	inst, err := r.drv.Get(ctx, be.ID)
	if err != nil || inst.Guest == nil {
		t.Fatalf("driver: %+v %v", inst, err)
	}
	up0 := inst.Guest.UptimeS
	clk.Add(time.Hour)
	be = r.waitState("batch", model.StateSuspended)
	if be.Desired != model.DesiredSuspended || be.Status.PID != 0 || be.Status.Timings.Suspended.IsZero() || be.Status.Timings.SuspendBytes == 0 {
		t.Fatalf("suspended best effort: desired %s %+v", be.Desired, be.Status)
	}
	ar := r.waitState("booked", model.StateRunning)
	if ar.Status.Node != "h1" {
		t.Fatalf("reservation on %q", ar.Status.Node)
	}

	clk.Add(time.Hour)
	r.waitState("booked", model.StateStopped)
	be = r.waitState("batch", model.StateRunning)
	if be.Status.PID == 0 || be.Status.PID == pid0 {
		t.Fatalf("resumed guest pid %d (before %d), want a new process", be.Status.PID, pid0)
	}
	if be.Status.Generation != 1 || be.Status.Timings.Resumed.IsZero() {
		t.Fatalf("resumed: generation %d, timings %+v", be.Status.Generation, be.Status.Timings)
	}
	// The guest was not rebooted: the uptime it reports after the
	// resumption continues from before the suspension.
	if be.Status.Guest == nil || be.Status.Guest.UptimeS < up0 {
		t.Fatalf("uptime after the resumption %+v, want at least %.3fs", be.Status.Guest, up0)
	}
	lv, err := r.user.GetLease(ctx, "batch")
	if err != nil || lv.State != "running" || lv.Suspensions != 1 {
		t.Fatalf("lease after the resumption: %+v %v", lv, err)
	}
}
