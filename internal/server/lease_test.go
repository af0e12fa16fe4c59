package server

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"vgrid/api"
	"vgrid/internal/calendar"
	"vgrid/internal/model"
)

// leaseSpec is a workspace that takes all of n1's CPU (2 cores).
func leaseSpec(name, duration, lease string) []byte {
	s := fmt.Sprintf("name: %s\nimage: vgrid-guest\nquantum: {vcpus: 2, cpu: 2, memory: 512Mi, disk: 1Gi}\nduration: %s\n", name, duration)
	if lease != "" {
		s += "lease: " + lease + "\n"
	}
	return []byte(s)
}

func (e *env) get(name string) model.Workspace {
	e.t.Helper()
	w, err := e.admin.GetWorkspace(context.Background(), name)
	if err != nil {
		e.t.Fatalf("get %s: %v", name, err)
	}
	return w
}

func (e *env) reconcileAt(d time.Duration) {
	e.t.Helper()
	e.clk.Add(d)
	if err := e.srv.ctl.Reconcile(context.Background()); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) at(d time.Duration) string {
	return e.clk.Now().Add(d).UTC().Format(time.RFC3339)
}

// A best-effort workspace runs; a reservation for +1h on the same host is
// admitted; at +1h the best-effort one is suspended and the reservation
// placed; when the reservation ends the best-effort one resumes.
func TestReservationSuspendsBestEffortAndResumesIt(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	t0 := e.clk.Now()
	be, err := e.admin.CreateWorkspace(ctx, leaseSpec("batch", "4h", "{kind: best-effort}"))
	if err != nil {
		t.Fatal(err)
	}
	if be.Status.State != model.StatePending || be.Status.Node != "n1" {
		t.Fatalf("best effort on an idle host: %s on %q, want Pending on n1", be.Status.State, be.Status.Node)
	}
	be = e.report(be, api.AgentReport{State: model.StateStarting, PID: 10, StartedAt: t0, ProcessStarted: t0})
	be = e.report(be, api.AgentReport{State: model.StateRunning, PID: 10, Guest: &model.GuestInfo{VCPUs: 2, UptimeS: 1}})

	ar, err := e.admin.CreateWorkspace(ctx, leaseSpec("booked", "1h", fmt.Sprintf("{kind: reservation, start: %q}", e.at(time.Hour))))
	if err != nil {
		t.Fatalf("reservation over a preemptible lease: %v", err)
	}
	if ar.Status.State != model.StateScheduled || ar.Status.Node != "" || ar.Desired != model.DesiredRunning {
		t.Fatalf("reservation: %s on %q desired %s, want Scheduled, no host, running", ar.Status.State, ar.Status.Node, ar.Desired)
	}
	lv, err := e.admin.GetLease(ctx, "booked")
	if err != nil || lv.State != "scheduled" || !lv.Start.Equal(t0.Add(time.Hour)) || len(lv.Hosts) != 1 || lv.Hosts[0] != "n1" {
		t.Fatalf("lease of the reservation: %+v %v", lv, err)
	}

	e.reconcileAt(time.Hour - time.Second)
	if w := e.get("batch"); w.Desired != model.DesiredRunning {
		t.Fatalf("best effort preempted early: desired %s", w.Desired)
	}
	if w := e.get("booked"); w.Status.Node != "" {
		t.Fatalf("reservation placed early on %q", w.Status.Node)
	}
	gantt, err := e.admin.Calendar(ctx, e.clk.Now().Add(-time.Hour), e.clk.Now().Add(3*time.Hour), 40)
	if err != nil || !strings.Contains(gantt, "default/batch") || !strings.Contains(gantt, "default/booked") || !strings.Contains(gantt, "n1 |") {
		t.Fatalf("calendar:\n%s\n%v", gantt, err)
	}
	t.Logf("calendar:\n%s", gantt)

	e.reconcileAt(time.Second) // +1h
	be = e.get("batch")
	if be.Desired != model.DesiredSuspended || !strings.Contains(be.Status.Reason, "booked") {
		t.Fatalf("at the reservation's start the best effort is %s (%q), want suspended by booked", be.Desired, be.Status.Reason)
	}
	ar = e.get("booked")
	if ar.Desired != model.DesiredRunning || ar.Status.Node != "n1" || ar.Status.State != model.StatePending {
		t.Fatalf("at its start the reservation is %s/%s on %q, want running/Pending on n1", ar.Desired, ar.Status.State, ar.Status.Node)
	}
	now := e.clk.Now()
	be = e.report(be, api.AgentReport{State: model.StateSuspended, Suspended: now, SuspendTook: model.Duration(2 * time.Second), SuspendBytes: 512 << 20})
	if be.Status.State != model.StateSuspended || be.Status.Timings.SuspendBytes != 512<<20 || be.Status.Suspensions != 1 {
		t.Fatalf("after the suspend report: %+v", be.Status)
	}
	ar = e.report(ar, api.AgentReport{State: model.StateStarting, PID: 11, StartedAt: now, ProcessStarted: now})
	if lv, _ := e.admin.GetLease(ctx, "batch"); lv.State != "suspended" {
		t.Fatalf("best effort lease while preempted: %+v", lv)
	}

	e.reconcileAt(time.Hour) // +2h: the reservation ends, the best effort resumes
	ar = e.get("booked")
	if ar.Desired != model.DesiredStopped || !strings.Contains(ar.Status.Reason, "lease ended") {
		t.Fatalf("after its window the reservation is %s (%q)", ar.Desired, ar.Status.Reason)
	}
	be = e.get("batch")
	if be.Desired != model.DesiredRunning || be.Status.Node != "n1" {
		t.Fatalf("after the reservation the best effort is %s on %q, want running on n1", be.Desired, be.Status.Node)
	}
	// It ran 1h of its 4h: 3h are left from the resumption.
	if want := t0.Add(5 * time.Hour); !be.Status.ExpiresAt.Equal(want) {
		t.Fatalf("resumed lease expires %v, want %v", be.Status.ExpiresAt, want)
	}
	now = e.clk.Now()
	be = e.report(be, api.AgentReport{State: model.StateRunning, PID: 12, Guest: &model.GuestInfo{VCPUs: 2, UptimeS: 3601},
		Resumed: now, ResumeTook: model.Duration(time.Second)})
	if be.Status.State != model.StateRunning || !be.Status.Timings.Resumed.Equal(now) {
		t.Fatalf("after resuming: %+v", be.Status)
	}
	e.reconcileAt(3*time.Hour - time.Second)
	if w := e.get("batch"); w.Desired != model.DesiredRunning {
		t.Fatalf("resumed lease stopped early")
	}
	e.reconcileAt(time.Second)
	if w := e.get("batch"); w.Desired != model.DesiredStopped || !strings.Contains(w.Status.Reason, "lease ended") {
		t.Fatalf("resumed lease at its end: %s %q", w.Desired, w.Status.Reason)
	}
}

// A reservation that cannot be guaranteed is refused, naming what is short,
// where, when, who holds it and when it would fit.
func TestReservationRefusedWhenItCannotBeGuaranteed(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	if _, err := e.admin.CreateWorkspace(ctx, leaseSpec("steady", "2h", "")); err != nil {
		t.Fatal(err)
	}
	_, err := e.admin.CreateWorkspace(ctx, leaseSpec("booked", "1h", fmt.Sprintf("{kind: reservation, start: %q}", e.at(time.Hour))))
	ce := apiErr(t, err)
	if ce.Status != http.StatusConflict || ce.Body.Code != api.CodeCapacity {
		t.Fatalf("got %d %s, want 409 insufficient_capacity", ce.Status, ce.Body.Code)
	}
	for _, want := range []string{"cpu", "n1", e.at(time.Hour), "held by default/steady", "earliest fit at " + e.at(2*time.Hour)} {
		if !strings.Contains(ce.Body.Message, want) {
			t.Errorf("message %q does not say %q", ce.Body.Message, want)
		}
	}
	if ce.Body.FreesAt == nil || !ce.Body.FreesAt.Equal(e.clk.Now().Add(2*time.Hour)) {
		t.Errorf("frees_at %v, want now+2h", ce.Body.FreesAt)
	}
	if _, err := e.admin.GetWorkspace(ctx, "booked"); err == nil {
		t.Errorf("a refused reservation was stored")
	}
	// A start in the past is refused too.
	_, err = e.admin.CreateWorkspace(ctx, leaseSpec("late", "1h", fmt.Sprintf("{kind: reservation, start: %q}", e.at(-time.Minute))))
	if ce := apiErr(t, err); ce.Status != http.StatusConflict || !strings.Contains(ce.Body.Message, "before now") {
		t.Errorf("reservation in the past: %d %q", ce.Status, ce.Body.Message)
	}
}

func TestDeadlineLeases(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	_, err := e.admin.CreateWorkspace(ctx, leaseSpec("rushed", "1h", fmt.Sprintf("{kind: deadline, deadline: %q}", e.at(30*time.Minute))))
	ce := apiErr(t, err)
	if ce.Status != http.StatusConflict || !strings.Contains(ce.Body.Message, "cannot end by "+e.at(30*time.Minute)) {
		t.Fatalf("infeasible deadline: %d %q", ce.Status, ce.Body.Message)
	}
	// Behind a 2h lease, a 1h job due in 4h starts when the host frees.
	if _, err := e.admin.CreateWorkspace(ctx, leaseSpec("steady", "2h", "")); err != nil {
		t.Fatal(err)
	}
	w, err := e.admin.CreateWorkspace(ctx, leaseSpec("report", "1h", fmt.Sprintf("{kind: deadline, deadline: %q}", e.at(4*time.Hour))))
	if err != nil || w.Status.State != model.StateScheduled {
		t.Fatalf("feasible deadline: %v %+v", err, w.Status)
	}
	_, err = e.admin.CreateWorkspace(ctx, leaseSpec("tight", "1h", fmt.Sprintf("{kind: deadline, deadline: %q}", e.at(150*time.Minute))))
	ce = apiErr(t, err)
	if ce.Status != http.StatusConflict || !strings.Contains(ce.Body.Message, "cannot end by") || !strings.Contains(ce.Body.Message, "default/") {
		t.Fatalf("deadline behind other leases: %d %q", ce.Status, ce.Body.Message)
	}
	e.reconcileAt(2 * time.Hour)
	if w := e.get("report"); w.Status.Node != "n1" || w.Status.State != model.StatePending {
		t.Fatalf("deadline lease at its start: %s on %q", w.Status.State, w.Status.Node)
	}
}

// Stopping a queued workspace withdraws its lease; cancelling a lease stops
// its workspace; a restarted server rebuilds its calendar from the store.
func TestLeaseCancelAndRestart(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	if _, err := e.admin.CreateWorkspace(ctx, leaseSpec("steady", "2h", "")); err != nil {
		t.Fatal(err)
	}
	q, err := e.admin.CreateWorkspace(ctx, leaseSpec("later", "1h", "{kind: best-effort}"))
	if err != nil || q.Status.State != model.StateQueued || q.Status.Node != "" {
		t.Fatalf("best effort on a full host: %v %+v", err, q.Status)
	}
	ls, err := e.admin.Leases(ctx)
	if err != nil || len(ls) != 2 {
		t.Fatalf("leases: %+v %v", ls, err)
	}
	lv, err := e.admin.CancelLease(ctx, "later")
	if err != nil || lv.State != "cancelled" {
		t.Fatalf("cancel: %+v %v", lv, err)
	}
	if w := e.get("later"); w.Desired != model.DesiredStopped || w.Status.State != model.StateStopped {
		t.Fatalf("workspace of a cancelled lease: %s/%s", w.Desired, w.Status.State)
	}
	if _, err := e.admin.CreateWorkspace(ctx, leaseSpec("next", "1h", "{kind: best-effort}")); err != nil {
		t.Fatal(err)
	}
	// A new server over the same store knows the running lease and the
	// queued one.
	srv2, err := New(Config{Store: e.st, Now: e.clk.Now, Logger: discardLogger()})
	if err != nil {
		t.Fatal(err)
	}
	e.clk.Add(2 * time.Hour)
	if err := srv2.ctl.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	if w := e.get("next"); w.Status.Node != "n1" || w.Status.State != model.StatePending {
		t.Fatalf("queued lease after a restart, once the host frees: %s on %q", w.Status.State, w.Status.Node)
	}
	if w := e.get("steady"); w.Desired != model.DesiredStopped {
		t.Fatalf("running lease after a restart, at its end: %s", w.Desired)
	}
}

// A workspace deleted and created again under the same name gets a lease
// of its own, and a restart by the user a new one pinned to its host.
func TestLeaseIDsOfRecreatedAndRestartedWorkspaces(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	w, err := e.admin.CreateWorkspace(ctx, leaseSpec("demo", "1h", ""))
	if err != nil {
		t.Fatal(err)
	}
	if w.Status.Lease != "default/demo" {
		t.Fatalf("lease %q", w.Status.Lease)
	}
	if err := e.admin.DeleteWorkspace(ctx, "demo"); err != nil {
		t.Fatal(err)
	}
	if err := e.node.Deleted(ctx, "n1", w); err != nil {
		t.Fatal(err)
	}
	w, err = e.admin.CreateWorkspace(ctx, leaseSpec("demo", "1h", ""))
	if err != nil {
		t.Fatalf("the deleted workspace's lease still holds the host: %v", err)
	}
	if w.Status.Lease != "default/demo#"+w.ID || w.Status.Node != "n1" {
		t.Fatalf("recreated: lease %q on %q", w.Status.Lease, w.Status.Node)
	}
	w = e.report(w, api.AgentReport{State: model.StateStarting, PID: 3, StartedAt: e.clk.Now()})
	if _, err := e.admin.StopWorkspace(ctx, "demo"); err != nil {
		t.Fatal(err)
	}
	w = e.report(e.get("demo"), api.AgentReport{State: model.StateStopped})
	w, err = e.admin.StartWorkspace(ctx, "demo")
	if err != nil || w.Status.Lease != "default/demo#2" || w.Status.Node != "n1" {
		t.Fatalf("restart: %v lease %q on %q", err, w.Status.Lease, w.Status.Node)
	}
	lv, err := e.admin.GetLease(ctx, "demo")
	if err != nil || lv.ID != "default/demo#2" || lv.State != "running" {
		t.Fatalf("lease of the restarted workspace: %+v %v", lv, err)
	}
	// The host is taken: another immediate workspace is refused.
	if _, err := e.admin.CreateWorkspace(ctx, leaseSpec("other", "1h", "")); apiErr(t, err).Status != http.StatusConflict {
		t.Fatalf("second full-host workspace: %v", err)
	}
}

func TestPolicyQuotaRefusesThroughTheAPI(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	p := calendar.DefaultPolicy()
	p.Quotas = map[string]calendar.Quota{"default": {Workspaces: 1}}
	e.srv.ctl.SetPolicy(&p)
	if _, err := e.admin.CreateWorkspace(ctx, []byte(goodSpec)); err != nil {
		t.Fatal(err)
	}
	_, err := e.admin.CreateWorkspace(ctx, []byte(strings.Replace(goodSpec, "name: demo", "name: second", 1)))
	ce := apiErr(t, err)
	if ce.Status != http.StatusConflict || !strings.Contains(ce.Body.Message, "quota") {
		t.Fatalf("got %d %q, want 409 naming the quota", ce.Status, ce.Body.Message)
	}
}
