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

// Refusals, lease reasons, workspace status and events never name another
// project's lease: the caller learns there is one, not which.
func TestNoLeaksBetweenProjects(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	t0 := e.clk.Now()
	other, err := e.admin.CreateProject(ctx, "pa")
	if err != nil {
		t.Fatal(err)
	}
	pa := e.admin.WithToken(other.Token)
	// default runs best effort; pa reserves the host from +1h.
	be, err := e.admin.CreateWorkspace(ctx, leaseSpec("batch", "4h", "{kind: best-effort}"))
	if err != nil {
		t.Fatal(err)
	}
	e.report(be, api.AgentReport{State: model.StateRunning, PID: 10, StartedAt: t0, ProcessStarted: t0, Guest: &model.GuestInfo{VCPUs: 2}})
	if _, err := pa.CreateWorkspace(ctx, leaseSpec("secret-plan", "1h", fmt.Sprintf("{kind: reservation, start: %q}", e.at(time.Hour)))); err != nil {
		t.Fatal(err)
	}
	// A reservation of default's over pa's is refused without naming it.
	_, err = e.admin.CreateWorkspace(ctx, leaseSpec("mine", "1h", fmt.Sprintf("{kind: reservation, start: %q}", e.at(90*time.Minute))))
	ce := apiErr(t, err)
	if ce.Status != http.StatusConflict {
		t.Fatalf("overlapping reservation: %d %s", ce.Status, ce.Body.Message)
	}
	leaks := func(what, s string) {
		t.Helper()
		if strings.Contains(s, "secret-plan") || strings.Contains(s, "pa/") {
			t.Errorf("%s names pa's lease: %s", what, s)
		}
	}
	leaks("the refusal", ce.Body.Message)
	leaks("the refusal's blocking list", strings.Join(ce.Body.Blocking, ","))
	if !strings.Contains(ce.Body.Message, "another project") && !strings.Contains(strings.Join(ce.Body.Blocking, ","), "another project") {
		t.Errorf("the refusal does not say another project holds the host: %q %v", ce.Body.Message, ce.Body.Blocking)
	}
	// pa's reservation suspends default's best effort: its status, events
	// and lease say so without naming pa's lease.
	e.reconcileAt(time.Hour)
	w := e.get("batch")
	if w.Desired != model.DesiredSuspended {
		t.Fatalf("best effort not suspended: %s", w.Desired)
	}
	leaks("the workspace's reason", w.Status.Reason)
	evs, err := e.admin.WorkspaceEvents(ctx, "batch")
	if err != nil {
		t.Fatal(err)
	}
	for _, ev := range evs {
		leaks("event "+ev.Type, ev.Message)
	}
	e.report(w, api.AgentReport{State: model.StateSuspended, Suspended: e.clk.Now(), SuspendTook: model.Duration(time.Second), SuspendBytes: 1 << 20})
	e.reconcileAt(time.Second)
	l, err := e.admin.GetLease(ctx, "batch")
	if err != nil {
		t.Fatal(err)
	}
	leaks("the lease's reason", l.Reason)
	if !strings.Contains(l.Reason+w.Status.Reason, "another project") {
		t.Errorf("reasons %q / %q do not say another project preempted it", l.Reason, w.Status.Reason)
	}
}

// A join token cannot take over a registered host (it would read the
// context of other projects' workspaces there); an admin can replace the
// host, and the node tokens it had stop working.
func TestJoinTokenCannotTakeOverAHost(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	join, err := e.admin.CreateToken(ctx, "default", RoleJoin)
	if err != nil {
		t.Fatal(err)
	}
	n1 := model.Node{Name: "n1", Accel: "tcg", Capacity: model.Resources{MilliCPU: 64000, Memory: 64 * model.GiB}}
	_, err = e.admin.WithToken(join.Token).RegisterNode(ctx, n1, e.csr("n1"))
	if ce := apiErr(t, err); ce.Status != http.StatusConflict || !strings.Contains(ce.Body.Message, "registered already") {
		t.Fatalf("a join token re-registering n1: %d %q, want 409", ce.Status, ce.Body.Message)
	}
	if _, err := e.node.Assignments(ctx, "n1", 0, 0); err != nil {
		t.Fatalf("n1's own node token after the attempt: %v", err)
	}
	// A new host is fine.
	if _, err := e.admin.WithToken(join.Token).RegisterNode(ctx, model.Node{Name: "n2", Capacity: n1.Capacity}, e.csr("n2")); err != nil {
		t.Fatalf("a new host: %v", err)
	}
	// An admin replaces n1: the old node token is revoked.
	reg, err := e.admin.RegisterNode(ctx, n1, e.csr("n1"))
	if err != nil {
		t.Fatalf("admin re-registers n1: %v", err)
	}
	if _, err := e.node.Assignments(ctx, "n1", 0, 0); apiErr(t, err).Status != http.StatusUnauthorized {
		t.Fatalf("n1's old node token after an admin replaced it: %v, want 401", err)
	}
	if _, err := e.asNode(reg).Assignments(ctx, "n1", 0, 0); err != nil {
		t.Fatalf("n1's new node token: %v", err)
	}
}
