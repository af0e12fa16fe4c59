package agent

import (
	"context"
	"testing"

	"vgrid/internal/hypervisor"
	"vgrid/internal/model"
)

// A guest that no workspace assigned to the host wants (the control plane
// forgot it, or was restored from an older backup) does not run on: it
// would hold no lease. Its disk is kept.
func TestAgentStopsGuestsNoWorkspaceWants(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	if _, err := r.user.CreateWorkspace(ctx, []byte(spec)); err != nil {
		t.Fatal(err)
	}
	r.waitState("w1", model.StateRunning)
	stray, err := r.drv.Start(ctx, hypervisor.InstanceSpec{ID: "wstray", Hostname: "stray",
		Quantum: model.Quantum{VCPUs: 1, CPU: 0.25, Memory: 128 << 20, Disk: model.GiB},
		Image:   hypervisor.LocalImage{Name: "vgrid-guest", Boot: "direct", Kernel: "/k", Disk: "/d", DiskFormat: "raw"}})
	if err != nil {
		t.Fatal(err)
	}
	if stray.State != hypervisor.InstanceRunning {
		t.Fatalf("stray instance: %s", stray.State)
	}
	r.eventually("the stray guest stopped", func() bool {
		in, err := r.drv.Get(ctx, "wstray")
		return err == nil && in.State == hypervisor.InstanceStopped
	})
	// The wanted one runs on.
	if w := r.waitState("w1", model.StateRunning); w.Desired != model.DesiredRunning {
		t.Fatalf("w1: desired %s", w.Desired)
	}
}
