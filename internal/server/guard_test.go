package server

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"vgrid/api"
	"vgrid/internal/client"
	"vgrid/internal/model"
)

// assigned is workspace name as host n1's agent is told of it.
func (e *env) assigned(name string) model.Workspace {
	e.t.Helper()
	as, err := e.node.Assignments(context.Background(), "n1", 0, 0)
	if err != nil {
		e.t.Fatal(err)
	}
	for _, w := range as.Workspaces {
		if w.Spec.Name == name {
			return w
		}
	}
	e.t.Fatalf("%s is not assigned to n1", name)
	return model.Workspace{}
}

func (e *env) up(w model.Workspace) model.Workspace {
	now := e.clk.Now()
	return e.report(w, api.AgentReport{State: model.StateRunning, PID: 7, StartedAt: now, ProcessStarted: now, GuestReady: now})
}

// Issue 7, item 3: a guest runs only while its lease is held, and a
// lease's room is given back only when its guest is gone.
func TestGuestRunsOnlyWhileItsLeaseIsHeld(t *testing.T) {
	ctx := context.Background()
	full := func(name string) []byte { return leaseSpec(name, "1h", "") } // 2 cores: the whole host

	t.Run("a failed guest is not started again", func(t *testing.T) {
		e := newEnv(t)
		w, err := e.admin.CreateWorkspace(ctx, full("a"))
		if err != nil {
			t.Fatal(err)
		}
		w = e.report(w, api.AgentReport{State: model.StateFailed, Reason: "start: qemu exited"})
		if w.Desired != model.DesiredStopped {
			t.Errorf("after Failed: desired %s, want stopped (its lease ended)", w.Desired)
		}
		if a := e.assigned("a"); a.Desired == model.DesiredRunning {
			t.Errorf("the agent is told to run a workspace whose lease is over")
		}
		// Its room is free: another workspace gets the host.
		if _, err := e.admin.CreateWorkspace(ctx, full("b")); err != nil {
			t.Fatalf("the failed workspace's room was not given back: %v", err)
		}
	})

	t.Run("a stop keeps the room until the guest is gone", func(t *testing.T) {
		e := newEnv(t)
		w, err := e.admin.CreateWorkspace(ctx, full("a"))
		if err != nil {
			t.Fatal(err)
		}
		w = e.up(w)
		if w, err = e.admin.StopWorkspace(ctx, "a"); err != nil {
			t.Fatal(err)
		}
		_, err = e.admin.CreateWorkspace(ctx, full("b"))
		if ce := apiErr(t, err); ce.Status != http.StatusConflict {
			t.Fatalf("while a's guest powers off, b got %d, want 409", ce.Status)
		}
		e.report(w, api.AgentReport{State: model.StateStopped})
		if _, err := e.admin.CreateWorkspace(ctx, full("b")); err != nil {
			t.Fatalf("after a's guest stopped, b: %v", err)
		}
	})

	t.Run("a delete keeps the room until the host tore it down", func(t *testing.T) {
		e := newEnv(t)
		w, err := e.admin.CreateWorkspace(ctx, full("a"))
		if err != nil {
			t.Fatal(err)
		}
		w = e.up(w)
		if err := e.admin.DeleteWorkspace(ctx, "a"); err != nil {
			t.Fatal(err)
		}
		if _, err := e.admin.CreateWorkspace(ctx, full("b")); err == nil {
			t.Fatalf("b admitted while a's guest is still up")
		}
		if err := e.node.Deleted(ctx, "n1", w); err != nil {
			t.Fatal(err)
		}
		if _, err := e.admin.CreateWorkspace(ctx, full("b")); err != nil {
			t.Fatalf("after a was torn down, b: %v", err)
		}
	})

	t.Run("a lease's end holds the next guest until the old one is gone", func(t *testing.T) {
		e := newEnv(t)
		w, err := e.admin.CreateWorkspace(ctx, full("a"))
		if err != nil {
			t.Fatal(err)
		}
		w = e.up(w)
		if _, err := e.admin.CreateWorkspace(ctx, leaseSpec("b", "1h", "{kind: reservation, start: \""+e.at(time.Hour)+"\"}")); err != nil {
			t.Fatal(err)
		}
		e.reconcileAt(time.Hour)
		if a := e.get("a"); a.Desired != model.DesiredStopped || a.Status.State != model.StateStopping {
			t.Fatalf("a after its lease: %s/%s", a.Desired, a.Status.State)
		}
		b := e.assigned("b")
		if b.Desired != model.DesiredRunning || !strings.Contains(b.Status.Hold, "waiting for room") {
			t.Fatalf("b while a powers off: desired %s hold %q; want held", b.Desired, b.Status.Hold)
		}
		e.report(e.get("a"), api.AgentReport{State: model.StateStopped})
		if b := e.assigned("b"); b.Status.Hold != "" {
			t.Fatalf("b still held after a stopped: %q", b.Status.Hold)
		}
	})

	t.Run("a stopping guest's lease preempted meanwhile is withdrawn when it is gone", func(t *testing.T) {
		// Found by the fault suite: the lease was suspended while the guest
		// powered off, and stayed suspended (to resume later) after it.
		e := newEnv(t)
		w, err := e.admin.CreateWorkspace(ctx, leaseSpec("batch", "4h", "{kind: best-effort}"))
		if err != nil {
			t.Fatal(err)
		}
		w = e.up(w)
		if _, err := e.admin.CreateWorkspace(ctx, leaseSpec("booked", "1h", "{kind: reservation, start: \""+e.at(time.Hour)+"\"}")); err != nil {
			t.Fatal(err)
		}
		if w, err = e.admin.StopWorkspace(ctx, "batch"); err != nil {
			t.Fatal(err)
		}
		e.reconcileAt(time.Hour) // the reservation preempts batch, still powering off
		e.report(e.get("batch"), api.AgentReport{State: model.StateStopped})
		l, err := e.admin.GetLease(ctx, "batch")
		if err != nil {
			t.Fatal(err)
		}
		if !model.LeaseState(l.State).Over() {
			t.Fatalf("the stopped workspace's lease is %s, want over", l.State)
		}
		if b := e.get("batch"); b.Desired != model.DesiredStopped {
			t.Fatalf("the stopped workspace is desired %s", b.Desired)
		}
	})

	t.Run("a host that shrank across a restart keeps its guests and their leases, and takes no more", func(t *testing.T) {
		e := newEnv(t)
		w, err := e.admin.CreateWorkspace(ctx, full("a")) // 2 cores
		if err != nil {
			t.Fatal(err)
		}
		e.up(w)
		// The host comes back with one core.
		if err := e.node.Heartbeat(ctx, model.Node{Name: "n1", Accel: "tcg",
			Capacity: model.Resources{MilliCPU: 1000, Memory: 8 * model.GiB, Disk: 100 * model.GiB}}); err != nil {
			t.Fatal(err)
		}
		srv := e.restarted()
		r, err := srv.ctl.Lease(ctx, "default", "a")
		if err != nil || r.State != model.LeaseRunning {
			t.Fatalf("the running guest's lease after the restart: %v (%v), want running", r.State, err)
		}
		hs := httptest.NewServer(srv.Handler())
		defer hs.Close()
		admin, err := client.New(client.Config{Server: hs.URL, Token: e.admin.Token()})
		if err != nil {
			t.Fatal(err)
		}
		_, err = admin.CreateWorkspace(ctx, []byte(strings.Replace(string(leaseSpec("b", "1h", "")), "cpu: 2", "cpu: 0.5", 1)))
		if ce := apiErr(t, err); ce.Status != http.StatusConflict || ce.Body.Code != api.CodeCapacity {
			t.Fatalf("a shrunk host full of guests, another create: %d %s, want 409 %s", ce.Status, ce.Body.Code, api.CodeCapacity)
		}
	})

	t.Run("a restart keeps a stopping guest's room", func(t *testing.T) {
		e := newEnv(t)
		w, err := e.admin.CreateWorkspace(ctx, full("a"))
		if err != nil {
			t.Fatal(err)
		}
		e.up(w)
		if _, err := e.admin.StopWorkspace(ctx, "a"); err != nil {
			t.Fatal(err)
		}
		srv := e.restarted()
		if r, err := srv.ctl.Lease(ctx, "default", "a"); err != nil || r.State != model.LeaseRunning {
			t.Fatalf("after a restart the stopping guest's lease is %v (%v), want running", r.State, err)
		}
	})
}
