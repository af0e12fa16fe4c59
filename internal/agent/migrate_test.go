package agent

import (
	"context"
	"testing"
	"time"

	"vgrid/api"
	"vgrid/internal/client"
	"vgrid/internal/hypervisor"
	"vgrid/internal/hypervisor/fake"
	"vgrid/internal/metrics"
	"vgrid/internal/model"
)

// secondHost starts another agent ("h2", its own fake driver) on the
// rig's control plane and returns its driver.
func (r *rig) secondHost() *fake.Driver {
	r.t.Helper()
	drv := fake.New(r.t.TempDir())
	cfg := Config{
		Server:  client.Config{Server: r.hs.URL, Token: r.join, CACert: r.ca},
		DataDir: r.t.TempDir(),
		Node:    model.Node{Name: "h2", Accel: "tcg", Capacity: model.Resources{MilliCPU: 4000, Memory: 8 * model.GiB, Disk: 100 * model.GiB}},
		Driver:  drv, Logger: quiet(), Resync: 200 * time.Millisecond, Heartbeat: time.Second,
	}
	a, err := New(cfg)
	if err != nil {
		r.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = a.Run(ctx) }()
	r.t.Cleanup(func() { cancel(); <-done })
	r.eventually("h2 registered", func() bool {
		nodes, err := r.user.Nodes(context.Background())
		return err == nil && len(nodes) == 2 && nodes[0].Ready && nodes[1].Ready
	})
	return drv
}

// The two agents carry a live migration out: the destination prepares
// and says where, the source sends, the guest runs on at the destination
// (same boot), and the source's copy is deleted; a migration the source
// fails leaves the guest where it was.
func TestAgentsMigrateLive(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	if _, err := r.user.CreateWorkspace(ctx, []byte(spec)); err != nil {
		t.Fatal(err)
	}
	w := r.waitState("w1", model.StateRunning)
	boot, err := r.drv.BootID(w.ID)
	if err != nil {
		t.Fatal(err)
	}
	d2 := r.secondHost()
	migrated0 := histCount(t, metrics.Registry(), "vgrid_workspace_migration_duration_seconds", map[string]string{"outcome": "succeeded"})
	if _, err := r.user.MigrateWorkspace(ctx, "w1", api.MigrateRequest{To: "h2"}); err != nil {
		t.Fatal(err)
	}
	r.eventually("w1 running on h2", func() bool {
		w, err := r.user.GetWorkspace(ctx, "w1")
		return err == nil && w.Status.Node == "h2" && w.Status.Migration == nil && w.Status.State == model.StateRunning
	})
	r.eventually("h2 finished the incoming side", func() bool {
		in, err := d2.Get(ctx, w.ID)
		return err == nil && in.State == hypervisor.InstanceRunning && in.ExitReason == ""
	})
	if b, err := d2.BootID(w.ID); err != nil || b != boot {
		t.Fatalf("boot at the destination %q (%v), want %q: the guest rebooted", b, err, boot)
	}
	r.eventually("h1's copy deleted", func() bool {
		_, err := r.drv.Get(ctx, w.ID)
		return err != nil
	})
	evs, _ := r.user.WorkspaceEvents(ctx, "w1")
	if e := evs[len(evs)-1]; e.Type != "migrated" && e.Type != "running" {
		t.Errorf("last event %+v", e)
	}
	if n := histCount(t, metrics.Registry(), "vgrid_workspace_migration_duration_seconds", map[string]string{"outcome": "succeeded"}) - migrated0; n != 1 {
		t.Errorf("%d migrations timed in vgrid_workspace_migration_duration_seconds{outcome=succeeded}, want 1", n)
	}
	// Back to h1, failing at the source: the guest stays on h2.
	d2.SetFaults(fake.Faults{MigrateErr: errMigrate})
	if _, err := r.user.MigrateWorkspace(ctx, "w1", api.MigrateRequest{To: "h1"}); err != nil {
		t.Fatal(err)
	}
	r.eventually("the failed migration ended", func() bool {
		w, err := r.user.GetWorkspace(ctx, "w1")
		return err == nil && w.Status.Migration == nil
	})
	if w, _ := r.user.GetWorkspace(ctx, "w1"); w.Status.Node != "h2" || w.Status.State != model.StateRunning {
		t.Fatalf("after a failed migration: %s on %s", w.Status.State, w.Status.Node)
	}
	r.eventually("h1 deleted what it prepared", func() bool {
		_, err := r.drv.Get(ctx, w.ID)
		return err != nil
	})
}

// A resize reaches the running guest through the driver, and the
// workspace says the host applies it.
func TestAgentAppliesResize(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	if _, err := r.user.CreateWorkspace(ctx, []byte(spec)); err != nil {
		t.Fatal(err)
	}
	w := r.waitState("w1", model.StateRunning)
	cpu, mem := 1.5, model.ByteSize(256*model.MiB)
	if _, err := r.user.ResizeWorkspace(ctx, "w1", api.ResizeRequest{CPU: &cpu, Memory: &mem}); err != nil {
		t.Fatal(err)
	}
	r.eventually("the new quantum applied", func() bool {
		w, err := r.user.GetWorkspace(ctx, "w1")
		return err == nil && w.Status.Applied != nil && w.Status.Applied.CPU == 1.5 && w.Status.Applied.Memory == mem
	})
	if q, _ := r.drv.Quantum(w.ID); q.CPU != 1.5 || q.Memory != mem {
		t.Fatalf("the driver's quantum %+v", q)
	}
	// More vCPUs is refused while it runs, naming why.
	v := 4
	_, err := r.user.ResizeWorkspace(ctx, "w1", api.ResizeRequest{VCPUs: &v})
	var ce *client.Error
	if e, ok := err.(*client.Error); ok {
		ce = e
	}
	if ce == nil || ce.Status != 409 {
		t.Fatalf("more vCPUs while running: %v, want 409", err)
	}
}

var errMigrate = errorString("the migration stream broke")

type errorString string

func (e errorString) Error() string { return string(e) }
