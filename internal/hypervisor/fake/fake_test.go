package fake

import (
	"context"
	"errors"
	"testing"
	"time"

	"vgrid/internal/hypervisor"
	"vgrid/internal/hypervisor/hypervisortest"
)

var img = hypervisor.LocalImage{Name: "fake", Boot: "direct", Disk: "/fake/rootfs", DiskFormat: "raw", Kernel: "/fake/vmlinux"}

func newDriver(t *testing.T, stateDir string) hypervisor.Driver {
	d := New(stateDir)
	t.Cleanup(func() { d.Close() })
	return d
}

func TestConformance(t *testing.T) {
	hypervisortest.Run(t, newDriver, img)
}

func TestFaults(t *testing.T) {
	ctx := context.Background()
	boom := errors.New("boom")
	d := New(t.TempDir())
	defer d.Close()
	spec := hypervisortest.Spec("f-1", img)

	d.SetFaults(Faults{StartErr: boom})
	if _, err := d.Start(ctx, spec); !errors.Is(err, boom) {
		t.Errorf("Start: got %v, want boom", err)
	}
	if _, err := d.Get(ctx, spec.ID); !errors.Is(err, hypervisor.ErrNotFound) {
		t.Errorf("Get after failed start: got %v, want ErrNotFound", err)
	}

	d.SetFaults(Faults{GuestDelay: 100 * time.Millisecond, StopErr: boom})
	in, err := d.Start(ctx, spec)
	if err != nil || in.Guest != nil {
		t.Fatalf("Start with guest delay: got %+v, %v, want no guest yet", in, err)
	}
	select {
	case id := <-d.Changes(): // the start
		if id != spec.ID {
			t.Errorf("change: got %q", id)
		}
	case <-time.After(time.Second):
		t.Fatal("no change after start")
	}
	select {
	case <-d.Changes(): // the guest's report
	case <-time.After(time.Second):
		t.Fatal("no change when the guest reported")
	}
	if in, _ := d.Get(ctx, spec.ID); in.Guest == nil {
		t.Errorf("after the delay: got no guest")
	}
	if err := d.Stop(ctx, spec.ID, time.Second); !errors.Is(err, boom) {
		t.Errorf("Stop: got %v, want boom", err)
	}
	if err := d.Crash(spec.ID, "killed by the kernel OOM killer"); err != nil {
		t.Fatal(err)
	}
	in, _ = d.Get(ctx, spec.ID)
	if in.State != hypervisor.InstanceStopped || in.ExitReason != "killed by the kernel OOM killer" {
		t.Errorf("after Crash: got %+v", in)
	}
	d.SetFaults(Faults{NoGuest: true})
	if in, _ := d.Start(ctx, spec); in.Guest != nil || in.State != hypervisor.InstanceRunning {
		t.Errorf("NoGuest: got %+v", in)
	}
}

func TestClosed(t *testing.T) {
	d := New(t.TempDir())
	d.Close()
	if _, err := d.Start(context.Background(), hypervisortest.Spec("c", img)); !errors.Is(err, ErrClosed) {
		t.Errorf("got %v, want ErrClosed", err)
	}
	if _, ok := <-d.Changes(); ok {
		t.Error("Changes still open after Close")
	}
}

func TestSuspendFault(t *testing.T) {
	ctx := context.Background()
	boom := errors.New("boom")
	d := New(t.TempDir())
	defer d.Close()
	spec := hypervisortest.Spec("s-1", img)
	if _, err := d.Start(ctx, spec); err != nil {
		t.Fatal(err)
	}
	d.SetFaults(Faults{SuspendErr: boom})
	if _, err := d.Suspend(ctx, spec.ID); !errors.Is(err, boom) {
		t.Errorf("Suspend: got %v, want boom", err)
	}
	if in, _ := d.Get(ctx, spec.ID); in.State != hypervisor.InstanceRunning {
		t.Errorf("after a failed Suspend: got %+v, want running", in)
	}
	d.SetFaults(Faults{})
	res, err := d.Suspend(ctx, spec.ID)
	if err != nil || res.Bytes != int64(spec.Quantum.Memory/4) {
		t.Errorf("Suspend: got %+v, %v", res, err)
	}
}
