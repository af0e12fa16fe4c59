package fake

import (
	"context"
	"errors"
	"math"
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
	hypervisortest.Run(t, newDriver, img, hypervisortest.WithDiskProbe(hypervisortest.DiskProbe{
		Prepare: func(spec hypervisor.InstanceSpec, _ string) hypervisor.InstanceSpec { return spec },
		Write: func(t *testing.T, d hypervisor.Driver, id, token string) {
			if err := d.(*Driver).WriteDisk(id, []byte(token)); err != nil {
				t.Fatal(err)
			}
		},
		Read: func(t *testing.T, d hypervisor.Driver, id string) string {
			b, err := d.(*Driver).ReadDisk(id)
			if err != nil {
				t.Fatal(err)
			}
			return string(b)
		},
	}), hypervisortest.WithGuestProbe(guestProbe)) // migrate_test.go
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

func TestSetCPUSeconds(t *testing.T) {
	ctx := context.Background()
	d := New(t.TempDir())
	defer d.Close()
	spec := hypervisortest.Spec("cpu-1", img)
	get := func() hypervisor.Instance {
		t.Helper()
		in, err := d.Get(ctx, spec.ID)
		if err != nil {
			t.Fatal(err)
		}
		return in
	}
	check := func(what string, in hypervisor.Instance, cpu, final float64) {
		t.Helper()
		if in.CPUSeconds != cpu || in.FinalCPUSeconds != final {
			t.Errorf("%s: got CPUSeconds %v, FinalCPUSeconds %v, want %v, %v", what, in.CPUSeconds, in.FinalCPUSeconds, cpu, final)
		}
	}
	if err := d.SetCPUSeconds(spec.ID, 1); !errors.Is(err, hypervisor.ErrNotFound) {
		t.Errorf("unknown instance: got %v, want ErrNotFound", err)
	}
	in, err := d.Start(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	check("started", in, 0, 0)
	for _, bad := range []float64{-1, math.NaN(), math.Inf(1)} {
		if err := d.SetCPUSeconds(spec.ID, bad); !errors.Is(err, hypervisor.ErrInvalid) {
			t.Errorf("SetCPUSeconds(%v): got %v, want ErrInvalid", bad, err)
		}
	}
	if err := d.SetCPUSeconds(spec.ID, 1.5); err != nil {
		t.Fatal(err)
	}
	check("running", get(), 1.5, 0)
	if insts, err := d.List(ctx); err != nil || len(insts) != 1 {
		t.Fatalf("List: %v, %v", insts, err)
	} else {
		check("listed", insts[0], 1.5, 0)
	}
	if err := d.Stop(ctx, spec.ID, time.Second); err != nil {
		t.Fatal(err)
	}
	check("stopped", get(), 0, 1.5)
	if err := d.SetCPUSeconds(spec.ID, 2); !errors.Is(err, hypervisor.ErrNotRunning) {
		t.Errorf("stopped instance: got %v, want ErrNotRunning", err)
	}

	if in, err = d.Start(ctx, spec); err != nil {
		t.Fatal(err)
	}
	check("restarted", in, 0, 0)
	_ = d.SetCPUSeconds(spec.ID, 3)
	if _, err := d.Suspend(ctx, spec.ID); err != nil {
		t.Fatal(err)
	}
	check("suspended", get(), 0, 3)
	if in, err = d.Start(ctx, spec); err != nil {
		t.Fatal(err)
	}
	check("resumed", in, 0, 0)
	_ = d.SetCPUSeconds(spec.ID, 0.25)
	if err := d.Crash(spec.ID, "boom"); err != nil {
		t.Fatal(err)
	}
	check("crashed", get(), 0, 0.25)
}
