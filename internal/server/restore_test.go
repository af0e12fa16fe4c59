package server

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"vgrid/api"
	"vgrid/internal/calendar"
	"vgrid/internal/model"
)

// restarted is a second control plane over the same store, as after a
// restart: its calendar is restored from the stored records.
func (e *env) restarted() *Server {
	e.t.Helper()
	srv, err := New(Config{Store: e.st, Now: e.clk.Now, Logger: discardLogger()})
	if err != nil {
		e.t.Fatal(err)
	}
	if _, err := srv.ctl.CalendarSnapshot(context.Background()); err != nil {
		e.t.Fatalf("restore: %v", err)
	}
	return srv
}

func snapshotJSON(t *testing.T, s *Server) string {
	t.Helper()
	snap, err := s.ctl.CalendarSnapshot(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	// Refused leases are never stored: they hold nothing.
	var ls []model.LeaseRecord
	for _, l := range snap.Leases {
		if l.State != calendar.StateRefused {
			ls = append(ls, l)
		}
	}
	snap.Leases = ls
	b, err := json.MarshalIndent(snap, "", " ")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// After every step of a mixed load (best effort running and queued, a
// reservation that suspends one, a deadline lease, a cancel), a control
// plane restarted over the same store has the same calendar, field by
// field; and the restarted one carries on: the reservation starts exactly
// at its start and the suspended lease resumes with its remaining time.
func TestCalendarRestoredFieldByFieldAfterRestart(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	t0 := e.clk.Now()
	same := func(step string) {
		t.Helper()
		want := snapshotJSON(t, e.srv)
		got := snapshotJSON(t, e.restarted())
		if got != want {
			t.Fatalf("%s: restored calendar differs\n got %s\nwant %s", step, got, want)
		}
	}
	be, err := e.admin.CreateWorkspace(ctx, leaseSpec("batch", "4h", "{kind: best-effort}"))
	if err != nil {
		t.Fatal(err)
	}
	e.report(be, api.AgentReport{State: model.StateStarting, PID: 10, StartedAt: t0, ProcessStarted: t0})
	same("best effort running")
	if _, err := e.admin.CreateWorkspace(ctx, leaseSpec("queued", "1h", "{kind: best-effort}")); err != nil {
		t.Fatal(err)
	}
	same("best effort queued")
	if _, err := e.admin.CreateWorkspace(ctx, leaseSpec("booked", "1h", fmt.Sprintf("{kind: reservation, start: %q}", e.at(time.Hour)))); err != nil {
		t.Fatal(err)
	}
	same("reservation admitted over a preemptible lease")
	if _, err := e.admin.CreateWorkspace(ctx, leaseSpec("due", "30m", fmt.Sprintf("{kind: deadline, deadline: %q}", e.at(8*time.Hour)))); err != nil {
		t.Fatal(err)
	}
	same("deadline lease")
	if _, err := e.admin.CreateWorkspace(ctx, leaseSpec("gone", "1h", "{kind: best-effort}")); err != nil {
		t.Fatal(err)
	}
	if _, err := e.admin.CancelLease(ctx, "gone"); err != nil {
		t.Fatal(err)
	}
	same("cancelled")
	e.reconcileAt(time.Hour)
	same("suspended for the reservation")

	// The restarted control plane takes over from here.
	e.srv = e.restarted()
	lv, err := e.srv.ctl.Lease(ctx, "default", "default/batch")
	if err != nil || lv.State != calendar.StateRunning && lv.State != calendar.StateSuspended {
		t.Fatalf("batch after restart: %+v %v", lv, err)
	}
	e.clk.Add(time.Hour)
	if err := e.srv.ctl.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	r, err := e.srv.ctl.Lease(ctx, "default", "default/booked")
	if err != nil {
		t.Fatal(err)
	}
	if r.State != calendar.StateDone || r.Hold != nil && !r.Hold.Start.Equal(t0.Add(time.Hour)) {
		t.Fatalf("reservation after restart: state %s hold %+v", r.State, r.Hold)
	}
	if seg := r.Segments[len(r.Segments)-1]; !seg.RunFrom.Equal(t0.Add(time.Hour)) || !seg.RunTo.Equal(t0.Add(2*time.Hour)) {
		t.Fatalf("reservation ran %s..%s, want %s..%s", seg.RunFrom, seg.RunTo, t0.Add(time.Hour), t0.Add(2*time.Hour))
	}
	// The deadline lease runs next (14:00-14:30), then the suspended one
	// resumes before the queued one, which was submitted after it.
	e.clk.Add(30 * time.Minute)
	if err := e.srv.ctl.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	b, err := e.srv.ctl.Lease(ctx, "default", "default/batch")
	if err != nil {
		t.Fatal(err)
	}
	if b.Suspensions != 1 || b.State != calendar.StateRunning || b.Hold == nil || !b.Hold.Resume {
		t.Fatalf("best effort after the reservation: %+v", b)
	}
	if got, want := b.Remaining.D(), 3*time.Hour; got != want {
		t.Fatalf("best effort remaining %v, want %v (4h less the hour it ran)", got, want)
	}
}

// Agents' CPU counters reach the lease (used) beside what it reserved, and
// `GET /usage` sums them per project; a usage-only report writes no
// workspace (no long poll wakes for it).
func TestUsageReservedAndUsed(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	t0 := e.clk.Now()
	ws, err := e.admin.CreateWorkspace(ctx, leaseSpec("burn", "2h", ""))
	if err != nil {
		t.Fatal(err)
	}
	ws = e.report(ws, api.AgentReport{State: model.StateRunning, PID: 10, StartedAt: t0, ProcessStarted: t0, CPUSeconds: 10})
	rev := ws.Revision
	e.clk.Add(30 * time.Minute)
	ws = e.report(ws, api.AgentReport{State: model.StateRunning, PID: 10, StartedAt: t0, CPUSeconds: 1800})
	if ws.Revision != rev {
		t.Fatalf("a usage-only report rewrote the workspace (revision %d -> %d)", rev, ws.Revision)
	}
	l, err := e.admin.GetLease(ctx, "burn")
	if err != nil {
		t.Fatal(err)
	}
	// 2 cores held for 30 minutes: 1 core-hour reserved; 1800 s used.
	if l.UsedCPUSeconds != 1800 || l.ReservedCoreHours < 0.999 || l.ReservedCoreHours > 1.001 {
		t.Fatalf("lease: used %v s, reserved %v core-h; want 1800 and 1", l.UsedCPUSeconds, l.ReservedCoreHours)
	}
	u, err := e.admin.Usage(ctx, "", false, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if len(u.Projects) != 1 || u.Projects[0].Project != "default" || u.Projects[0].UsedCPUSeconds != 1800 || u.Projects[0].Leases != 1 {
		t.Fatalf("usage: %+v", u.Projects)
	}
	// Another project's user sees only its own, and not default's.
	other, err := e.admin.CreateProject(ctx, "other")
	if err != nil {
		t.Fatal(err)
	}
	oc := e.admin.WithToken(other.Token)
	if u, err := oc.Usage(ctx, "", false, time.Time{}); err != nil || len(u.Projects) != 1 || u.Projects[0].Project != "other" || u.Projects[0].Leases != 0 {
		t.Fatalf("other project's usage: %+v %v", u.Projects, err)
	}
	if _, err := oc.Usage(ctx, "default", false, time.Time{}); apiErr(t, err).Status != 404 {
		t.Fatalf("another project's usage: %v, want 404", err)
	}
}
