package server

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"vgrid/api"
	"vgrid/internal/model"
)

// A lease is extended when its host stays free for the longer window;
// an extension into an admitted reservation is refused with a 409 that
// names the reservation and the longest extension possible; shortening
// lets a queued lease start at once.
func TestLeaseExtendThroughTheAPI(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	t0 := e.clk.Now()
	if _, err := e.admin.CreateWorkspace(ctx, leaseSpec("work", "1h", "")); err != nil {
		t.Fatal(err)
	}
	l, err := e.admin.ExtendLease(ctx, "work", time.Hour, time.Time{})
	if err != nil {
		t.Fatalf("extension on a free host: %v", err)
	}
	if !l.End.Equal(t0.Add(2 * time.Hour)) {
		t.Fatalf("end after +1h: %s, want %s", l.End, t0.Add(2*time.Hour))
	}
	if w := e.get("work"); !w.Status.ExpiresAt.Equal(t0.Add(2 * time.Hour)) {
		t.Fatalf("workspace expires_at %s, want the lease's new end", w.Status.ExpiresAt)
	}
	if _, err := e.admin.CreateWorkspace(ctx, leaseSpec("booked", "1h", fmt.Sprintf("{kind: reservation, start: %q}", e.at(3*time.Hour)))); err != nil {
		t.Fatal(err)
	}
	_, err = e.admin.ExtendLease(ctx, "work", 2*time.Hour, time.Time{})
	ce := apiErr(t, err)
	if ce.Status != http.StatusConflict || ce.Body.Code != "insufficient_capacity" ||
		!strings.Contains(ce.Body.Message, "default/booked") || ce.Body.Longest == nil || ce.Body.Longest.D() != time.Hour {
		t.Fatalf("extension into a reservation: %d %s %q longest %v", ce.Status, ce.Body.Code, ce.Body.Message, ce.Body.Longest)
	}
	if l2, _ := e.admin.GetLease(ctx, "work"); !l2.End.Equal(l.End) {
		t.Fatalf("a refused extension moved the end to %s", l2.End)
	}
	if l, err = e.admin.ExtendLease(ctx, "work", 0, t0.Add(3*time.Hour)); err != nil || !l.End.Equal(t0.Add(3*time.Hour)) {
		t.Fatalf("until the reservation's start: %+v %v", l, err)
	}
	// Bad requests name the field.
	for _, bad := range []string{`{}`, `{"by": "1h", "until": "2026-11-24T20:00:00Z"}`, `{"by": "soon"}`, `{"by": "-5h"}`} {
		err := e.admin.Do(ctx, "POST", "/leases/work/extend", []byte(bad), nil)
		if ce := apiErr(t, err); ce.Status != http.StatusBadRequest {
			t.Fatalf("%s: status %d (%s), want 400", bad, ce.Status, ce.Body.Message)
		}
	}
	// Shorten: a best-effort lease waiting for the host starts now.
	q, err := e.admin.CreateWorkspace(ctx, leaseSpec("later", "30m", "{kind: best-effort}"))
	if err != nil || q.Status.State != model.StateQueued {
		t.Fatalf("best effort behind a busy host: %s %v", q.Status.State, err)
	}
	e.clk.Add(10 * time.Minute)
	if _, err := e.admin.ExtendLease(ctx, "work", -170*time.Minute+time.Minute, time.Time{}); err != nil {
		t.Fatalf("shorten: %v", err)
	}
	e.reconcileAt(time.Minute)
	if w := e.get("later"); w.Status.Node != "n1" {
		t.Fatalf("queued lease after the shortening: %s on %q", w.Status.State, w.Status.Node)
	}
}

// The host's measured boot time reaches the calendar: a reservation
// admitted afterwards is started that much before its start, so that its
// guest is ready at the start.
func TestReservationStartsEarlyByMeasuredBootTime(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	t0 := e.clk.Now()
	be, err := e.admin.CreateWorkspace(ctx, leaseSpec("first", "30m", ""))
	if err != nil {
		t.Fatal(err)
	}
	be = e.report(be, api.AgentReport{State: model.StateStarting, PID: 10, StartedAt: t0, ProcessStarted: t0})
	e.report(be, api.AgentReport{State: model.StateRunning, PID: 10, GuestReady: t0.Add(1500 * time.Millisecond), Guest: &model.GuestInfo{VCPUs: 2}})
	nodes, err := e.admin.Nodes(ctx)
	if err != nil || len(nodes) != 1 || nodes[0].Measured.BootTime() != 1500*time.Millisecond {
		t.Fatalf("node's measured boot time: %+v %v", nodes, err)
	}
	start := t0.Add(time.Hour)
	if _, err := e.admin.CreateWorkspace(ctx, leaseSpec("booked", "1h", fmt.Sprintf("{kind: reservation, start: %q}", start.Format(time.RFC3339)))); err != nil {
		t.Fatal(err)
	}
	// The calendar counts boot in whole seconds: 2 s early.
	e.reconcileAt(time.Hour - 3*time.Second)
	if w := e.get("booked"); w.Status.Node != "" {
		t.Fatalf("reservation placed 3 s early on %q", w.Status.Node)
	}
	e.reconcileAt(time.Second)
	if w := e.get("booked"); w.Status.Node != "n1" || w.Status.State != model.StatePending || !w.Status.ExpiresAt.Equal(start.Add(time.Hour)) {
		t.Fatalf("reservation 2 s before its start: %s on %q until %s, want Pending on n1 until %s", w.Status.State, w.Status.Node, w.Status.ExpiresAt, start.Add(time.Hour))
	}
	l, err := e.admin.GetLease(ctx, "booked")
	if err != nil || !l.Start.Equal(start) || !l.End.Equal(start.Add(time.Hour)) {
		t.Fatalf("lease window %s..%s, want %s..%s (%v)", l.Start, l.End, start, start.Add(time.Hour), err)
	}
}
