package control

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"vgrid/api"
	"vgrid/internal/calendar"
	"vgrid/internal/model"
)

// What an agent's report makes of a workspace.
func TestReportedState(t *testing.T) {
	ws := func(d model.Desired, st model.State, reason string) model.Workspace {
		return model.Workspace{Desired: d, Status: model.WorkspaceStatus{Node: "h1", State: st, Reason: reason, PID: 42}}
	}
	rep := func(st model.State, pid int, reason string) api.AgentReport {
		return api.AgentReport{State: st, PID: pid, Reason: reason}
	}
	for _, c := range []struct {
		name   string
		ws     model.Workspace
		rep    api.AgentReport
		state  model.State
		desire model.Desired
		reason string
	}{
		{"booted", ws(model.DesiredRunning, model.StateStarting, ""), rep(model.StateRunning, 42, ""),
			model.StateRunning, model.DesiredRunning, ""},
		{"a restarted agent adopts the same process", ws(model.DesiredRunning, model.StateRunning, ""), rep(model.StateStarting, 42, ""),
			model.StateRunning, model.DesiredRunning, ""},
		{"a new boot", ws(model.DesiredRunning, model.StateRunning, ""), rep(model.StateStarting, 43, ""),
			model.StateStarting, model.DesiredRunning, ""},
		{"late running report of a stopping one", ws(model.DesiredStopped, model.StateStopping, "stopped by the user"), rep(model.StateRunning, 42, ""),
			model.StateStopping, model.DesiredStopped, "stopped by the user"},
		{"powered off by itself", ws(model.DesiredRunning, model.StateRunning, ""), rep(model.StateStopped, 0, "the guest stopped by itself"),
			model.StateStopped, model.DesiredStopped, "the guest stopped by itself"},
		{"crashed", ws(model.DesiredRunning, model.StateRunning, ""), rep(model.StateFailed, 0, "qemu died"),
			model.StateFailed, model.DesiredStopped, "qemu died"},
		{"failed stays failed", ws(model.DesiredStopped, model.StateFailed, "qemu died"), rep(model.StateStopped, 0, ""),
			model.StateFailed, model.DesiredStopped, "qemu died"},
		{"saved", ws(model.DesiredSuspended, model.StateRunning, "preempted"), rep(model.StateSuspended, 0, ""),
			model.StateSuspended, model.DesiredSuspended, "preempted"},
		{"still saving", ws(model.DesiredSuspended, model.StateRunning, "preempted"), rep(model.StateRunning, 42, ""),
			model.StateRunning, model.DesiredSuspended, ""},
		{"ended while being saved", ws(model.DesiredSuspended, model.StateRunning, "preempted"), rep(model.StateStopped, 0, "preempted"),
			model.StateStopped, model.DesiredStopped, "its guest ended while being suspended; its memory was not saved"},
		{"save failed", ws(model.DesiredSuspended, model.StateRunning, "preempted"), rep(model.StateFailed, 0, "suspend: disk full"),
			model.StateFailed, model.DesiredStopped, "its guest ended while being suspended; its memory was not saved: suspend: disk full"},
		{"suspended before it booted", ws(model.DesiredSuspended, model.StatePending, "preempted"), rep(model.StateStopped, 0, "preempted"),
			model.StateStopped, model.DesiredSuspended, "preempted"},
		{"stopped as asked", ws(model.DesiredStopped, model.StateStopping, "stopped by the user"), rep(model.StateStopped, 0, ""),
			model.StateStopped, model.DesiredStopped, "stopped by the user"},
		// Requeued while it booted, then cancelled while its guest
		// stopped: the agent echoes the requeue's reason it was told
		// first; the cancel stands (else the lease waits on, and starts
		// again: the HA fault suite, seed 289655009).
		{"cancelled after a requeue", ws(model.DesiredStopped, model.StateStopping, "lease cancelled"), rep(model.StateStopped, 0, "requeued: for reservation r"),
			model.StateStopped, model.DesiredStopped, "lease cancelled"},
		{"stopping, reported as asked first", ws(model.DesiredStopped, model.StateStopping, "lease cancelled"), rep(model.StateStopping, 42, "requeued: for reservation r"),
			model.StateStopping, model.DesiredStopped, "lease cancelled"},
		{"failed while stopping", ws(model.DesiredStopped, model.StateStopping, "stopped by the user"), rep(model.StateFailed, 0, "stop: qemu did not exit"),
			model.StateFailed, model.DesiredStopped, "stop: qemu did not exit"},
		{"deleted", ws(model.DesiredDeleted, model.StateStopping, "deleted by the user"), rep(model.StateStopped, 0, "stopped by the user"),
			model.StateStopped, model.DesiredDeleted, "deleted by the user"},
	} {
		t.Run(c.name, func(t *testing.T) {
			st, d, reason := reportedState(c.ws, c.rep)
			if st != c.state || d != c.desire || reason != c.reason {
				t.Fatalf("got %s desired %s reason %q; want %s desired %s reason %q", st, d, reason, c.state, c.desire, c.reason)
			}
		})
	}
}

// TestCancelRequeuedWhileStopping: a best-effort lease requeued for a
// reservation while its guest boots, then cancelled while that guest
// stops, ends when the agent reports the guest gone, even though the
// report echoes the requeue's reason it was told first.
func TestCancelRequeuedWhileStopping(t *testing.T) {
	ctl, clk, be := requeueEnv(t)
	ctx := context.Background()
	be, err := ctl.Report(ctx, "h1", "p", "be", api.AgentReport{ID: be.ID, Generation: be.Status.Generation, State: model.StateStarting, PID: 100})
	if err != nil {
		t.Fatal(err)
	}
	createWS(t, ctl, "r", "2", fmt.Sprintf("{kind: reservation, start: %s}", clk.now().Add(time.Minute).Format(time.RFC3339)))
	for i := 0; i < 12; i++ {
		clk.add(5 * time.Second)
		beatAll(t, ctl, "h1")
		if err := ctl.Reconcile(ctx); err != nil {
			t.Fatal(err)
		}
	}
	be, _ = ctl.Workspace(ctx, "p", "be")
	told := be.Status.Reason
	if be.Status.State != model.StateStopping || !strings.HasPrefix(told, "requeued") {
		t.Fatalf("be after the reservation's start: %s desired %s %q, want stopping, requeued", be.Status.State, be.Desired, told)
	}
	if _, err := ctl.CancelLease(ctx, "p", be.Status.Lease); err != nil {
		t.Fatal(err)
	}
	if _, err := ctl.Report(ctx, "h1", "p", "be", api.AgentReport{ID: be.ID, Generation: be.Status.Generation, State: model.StateStopped, Reason: told}); err != nil {
		t.Fatal(err)
	}
	be, _ = ctl.Workspace(ctx, "p", "be")
	rec, err := ctl.Lease(ctx, "p", be.Status.Lease)
	if err != nil {
		t.Fatal(err)
	}
	if !rec.State.Over() || be.Status.Reason != "lease cancelled" {
		t.Fatalf("after the cancel and the guest's stop: lease %s, workspace %s desired %s %q", rec.State, be.Status.State, be.Desired, be.Status.Reason)
	}
}

// TestStopAfterARequeueFellDue stops a workspace whose lease the calendar
// was to requeue before now, the calendar not carried there yet: the
// release sees the lease as it is now (requeued, waiting) and withdraws
// it. (Deciding on its state before, Finish found it "not running" once
// carried to now, and the lease stayed queued for a workspace its user
// had stopped: the control-plane fault suite, seed 858521132.)
func TestStopAfterARequeueFellDue(t *testing.T) {
	ctl, clk, be := requeueEnv(t)
	ctx := context.Background()
	createWS(t, ctl, "r", "2", fmt.Sprintf("{kind: reservation, start: %s}", clk.now().Add(time.Minute).Format(time.RFC3339)))
	if rec, err := ctl.Lease(ctx, "p", be.Status.Lease); err != nil || rec.State != model.LeaseRunning {
		t.Fatalf("be's lease before: %s, %v; want running", rec.State, err)
	}
	clk.add(2 * time.Minute) // past the requeue; nothing carried the calendar there
	if _, err := ctl.StopWorkspace(ctx, "p", "be", ""); err != nil {
		t.Fatal(err)
	}
	be, _ = ctl.Workspace(ctx, "p", "be")
	rec, err := ctl.Lease(ctx, "p", be.Status.Lease)
	if err != nil {
		t.Fatal(err)
	}
	if !rec.State.Over() {
		t.Fatalf("after the stop: lease %s (%q), workspace %s desired %s %q; want the lease over", rec.State, rec.Reason, be.Status.State, be.Desired, be.Status.Reason)
	}
}

// requeueEnv is a controller with one host h1, under a policy that
// requeues rather than suspends, and a best-effort workspace be placed
// there.
func requeueEnv(t *testing.T) (*Controller, *testClock, model.Workspace) {
	t.Helper()
	ctl, clk := hostsEnv(t, "h1")
	pol := calendar.DefaultPolicy()
	pol.Suspend = false // requeued, not suspended
	ctl.SetPolicy(&pol)
	be := createWS(t, ctl, "be", "2", "{kind: best-effort}")
	if be.Status.Node != "h1" {
		t.Fatalf("be on %q", be.Status.Node)
	}
	return ctl, clk, be
}
