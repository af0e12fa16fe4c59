package qemu

import (
	"math"
	"testing"
	"time"

	"vgrid/internal/cgroup"
	"vgrid/internal/hypervisor"
	"vgrid/internal/hypervisor/hypervisortest"
)

// checkCPUSeconds compares a running instance's CPUSeconds, from Get and
// from List, with its cgroup's own counter read just before and just
// after: they must agree within 10%, and grow with the guest's use. It
// returns the cgroup counter last read.
func checkCPUSeconds(t *testing.T, d *Driver, id string, g *cgroup.Group) float64 {
	t.Helper()
	ctx := hypervisortest.Context(t)
	var prev, last float64
	for i := 0; i < 4; i++ {
		if i > 0 {
			time.Sleep(time.Second)
		}
		before, err := g.CPUSeconds()
		if err != nil {
			t.Fatal(err)
		}
		var in hypervisor.Instance
		if i%2 == 0 {
			if in, err = d.Get(ctx, id); err != nil {
				t.Fatal(err)
			}
		} else {
			insts, err := d.List(ctx)
			if err != nil {
				t.Fatal(err)
			}
			for _, x := range insts {
				if x.ID == id {
					in = x
				}
			}
		}
		after, err := g.CPUSeconds()
		if err != nil {
			t.Fatal(err)
		}
		last = after
		ref := (before + after) / 2
		t.Logf("read %d: instance %.3f s, cgroup %.3f..%.3f s", i, in.CPUSeconds, before, after)
		if in.State != hypervisor.InstanceRunning || in.FinalCPUSeconds != 0 {
			t.Errorf("read %d: got %+v, want running with no final CPU", i, in)
		}
		if ref <= 0 || math.Abs(in.CPUSeconds-ref) > 0.1*ref {
			t.Errorf("read %d: instance says %.3f s, its cgroup %.3f s: more than 10%% apart", i, in.CPUSeconds, ref)
		}
		if i > 0 && in.CPUSeconds <= prev {
			t.Errorf("read %d: %.3f s after %.3f s a second before, want it growing (the guest spins)", i, in.CPUSeconds, prev)
		}
		prev = in.CPUSeconds
	}
	return last
}

// checkFinalCPUSeconds stops a spinning instance whose cgroup counter
// was last at cpu and checks what the stopped instance says its process
// used: at least cpu, and no more than the cap allowed since.
func checkFinalCPUSeconds(t *testing.T, d *Driver, id string, capCores, cpu float64) {
	t.Helper()
	ctx := hypervisortest.Context(t)
	t0 := time.Now()
	if err := d.Stop(ctx, id, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	elapsed := time.Since(t0).Seconds()
	in, err := d.Get(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("stopped after %.1f s: final %.3f s, cgroup last read %.3f s", elapsed, in.FinalCPUSeconds, cpu)
	if in.State != hypervisor.InstanceStopped || in.CPUSeconds != 0 {
		t.Errorf("after Stop: got %+v, want stopped with CPUSeconds 0", in)
	}
	if most := cpu + 1.2*capCores*(elapsed+0.5) + 0.2; in.FinalCPUSeconds < cpu || in.FinalCPUSeconds > most {
		t.Errorf("final CPU: got %.3f s, want %.3f..%.3f s", in.FinalCPUSeconds, cpu, most)
	}
	if _, err := d.cg.Load(testCgroupParent, id); err == nil {
		t.Errorf("cgroup of the stopped instance is still there")
	}
	// A later driver reads the same from state.json.
	d2 := newTestDriver(t, d.opts.StateDir)
	if in2, err := d2.Get(ctx, id); err != nil || in2.FinalCPUSeconds != in.FinalCPUSeconds {
		t.Errorf("another driver: got %+v, %v, want FinalCPUSeconds %v", in2, err, in.FinalCPUSeconds)
	}
}
