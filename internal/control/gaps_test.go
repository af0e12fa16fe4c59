package control

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"vgrid/internal/model"
)

// A best-effort workspace that does not fit whole before a reservation
// starts at once in the gap (the calendar's default policy), runs, and is
// suspended in time for the reservation, naming it; the reservation then
// starts on the host.
func TestBestEffortInGap(t *testing.T) {
	ctx := context.Background()
	ctl, clk := hostsEnv(t, "h1")
	beatAll(t, ctl, "h1")
	start := clk.now().Add(30 * time.Minute)
	ar := createWS(t, ctl, "ar", "2", fmt.Sprintf("{kind: reservation, start: %q}", start.Format(time.RFC3339)))
	be := createWS(t, ctl, "be", "2", "{kind: best-effort}") // 2h: not before ar, which holds h1 for 2h from +30m
	if err := ctl.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	be = running(t, ctl, be, clk.now())
	if be.Status.Node != "h1" || be.Status.State != model.StateRunning {
		t.Fatalf("be: %s on %q, want running on h1 in the gap before ar", be.Status.State, be.Status.Node)
	}
	clk.add(30 * time.Minute)
	beatAll(t, ctl, "h1")
	if err := ctl.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	w, err := ctl.Workspace(ctx, "p", "be")
	if err != nil {
		t.Fatal(err)
	}
	if w.Desired != model.DesiredSuspended || !strings.Contains(w.Status.Reason+eventsText(t, ctl, w), "started in a gap: suspended for") {
		t.Fatalf("be at ar's start: desired %s, reason %q, events %s", w.Desired, w.Status.Reason, eventsText(t, ctl, w))
	}
	if a, _ := ctl.Workspace(ctx, "p", ar.Spec.Name); a.Status.Node != "h1" {
		t.Fatalf("ar at its start: on %q, want h1", a.Status.Node)
	}
}

func eventsText(t *testing.T, ctl *Controller, w model.Workspace) string {
	t.Helper()
	evs, err := ctl.Events(context.Background(), w.Project, w.Spec.Name)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, e := range evs {
		fmt.Fprintf(&b, "[%s %s] ", e.Type, e.Message)
	}
	return b.String()
}
