package fake

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"vgrid/internal/hypervisor"
	"vgrid/internal/hypervisor/hypervisortest"
	"vgrid/internal/model"
)

// TestResizeRules checks that the fake refuses what the real driver
// cannot do in place, by the instance's state, and changes nothing then.
func TestResizeRules(t *testing.T) {
	ctx := context.Background()
	base := model.Quantum{VCPUs: 2, CPU: 1, Memory: 256 * model.MiB, Disk: model.GiB}
	with := func(f func(*model.Quantum)) model.Quantum {
		q := base
		f(&q)
		return q
	}
	tests := []struct {
		name  string
		max   model.ByteSize
		state hypervisor.InstanceState
		q     model.Quantum
		want  string // in the ErrNotInPlace error; "": no error
	}{
		{name: "caps", state: hypervisor.InstanceRunning, q: with(func(q *model.Quantum) { q.CPU, q.DiskIOPS, q.DiskBPS = 0.5, 100, model.MiB })},
		{name: "memory down", state: hypervisor.InstanceRunning, q: with(func(q *model.Quantum) { q.Memory = 128 * model.MiB })},
		{name: "memory to the max", max: 384 * model.MiB, state: hypervisor.InstanceRunning, q: with(func(q *model.Quantum) { q.Memory = 384 * model.MiB })},
		{name: "memory above the max", max: 384 * model.MiB, state: hypervisor.InstanceRunning,
			q: with(func(q *model.Quantum) { q.Memory = 385 * model.MiB }), want: "above the guest's maximum of 384Mi"},
		{name: "memory above the start's", state: hypervisor.InstanceRunning,
			q: with(func(q *model.Quantum) { q.Memory = 257 * model.MiB }), want: "above the guest's maximum of 256Mi"},
		{name: "more vcpus", state: hypervisor.InstanceRunning, q: with(func(q *model.Quantum) { q.VCPUs = 3 }), want: "no CPU hotplug"},
		{name: "fewer vcpus", state: hypervisor.InstanceRunning, q: with(func(q *model.Quantum) { q.VCPUs = 1 }), want: "vCPUs are not taken"},
		{name: "disk grown", state: hypervisor.InstanceRunning, q: with(func(q *model.Quantum) { q.Disk = 2 * model.GiB })},
		{name: "disk smaller", state: hypervisor.InstanceRunning, q: with(func(q *model.Quantum) { q.Disk = model.GiB / 2 }), want: "never shrunk"},
		{name: "stopped: more of everything", state: hypervisor.InstanceStopped,
			q: with(func(q *model.Quantum) { q.VCPUs, q.Memory, q.Disk = 4, model.GiB, 2*model.GiB })},
		{name: "stopped: disk smaller", state: hypervisor.InstanceStopped, q: with(func(q *model.Quantum) { q.Disk = 0 }), want: "never shrunk"},
		{name: "suspended: caps", state: hypervisor.InstanceSuspended, q: with(func(q *model.Quantum) { q.CPU = 0.25 })},
		{name: "suspended: memory", state: hypervisor.InstanceSuspended, q: with(func(q *model.Quantum) { q.Memory = 128 * model.MiB }),
			want: "a suspended guest resumes as it was saved"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := New(t.TempDir())
			defer d.Close()
			spec := hypervisortest.Spec("r-1", img)
			spec.Quantum, spec.MaxMemory = base, tt.max
			if _, err := d.Start(ctx, spec); err != nil {
				t.Fatal(err)
			}
			switch tt.state {
			case hypervisor.InstanceStopped:
				if err := d.Stop(ctx, spec.ID, time.Second); err != nil {
					t.Fatal(err)
				}
			case hypervisor.InstanceSuspended:
				if _, err := d.Suspend(ctx, spec.ID); err != nil {
					t.Fatal(err)
				}
			}
			err := d.Resize(ctx, spec.ID, tt.q)
			got, _ := d.Quantum(spec.ID)
			if tt.want == "" {
				if err != nil || got != tt.q {
					t.Errorf("got %v and quantum %+v, want %+v", err, got, tt.q)
				}
				return
			}
			if !errors.Is(err, hypervisor.ErrNotInPlace) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %v, want ErrNotInPlace saying %q", err, tt.want)
			}
			if got != base {
				t.Errorf("after a refusal the quantum is %+v, want %+v", got, base)
			}
		})
	}
}

// TestResizeGrowBack checks that memory given back by a running guest can
// be given again up to what it started with, and that the guest reports
// the new memory and disk.
func TestResizeGrowBack(t *testing.T) {
	ctx := context.Background()
	d := New(t.TempDir())
	defer d.Close()
	spec := hypervisortest.Spec("r-2", img)
	spec.Quantum.Disk = model.GiB
	if _, err := d.Start(ctx, spec); err != nil {
		t.Fatal(err)
	}
	q := spec.Quantum
	q.Memory = 128 * model.MiB
	if err := d.Resize(ctx, spec.ID, q); err != nil {
		t.Fatal(err)
	}
	q.Memory, q.Disk = spec.Quantum.Memory, 2*model.GiB
	if err := d.Resize(ctx, spec.ID, q); err != nil {
		t.Fatalf("memory back to the start's: %v", err)
	}
	in, err := d.Get(ctx, spec.ID)
	if err != nil || in.Guest == nil || in.Guest.MemoryMiB != 256*95/100 || in.Guest.DiskBytes != 2<<30 {
		t.Errorf("got %+v, %v, want the guest to report 256 MiB (less the kernel's) and a 2 GiB disk", in.Guest, err)
	}
}
