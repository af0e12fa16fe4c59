package qemu

import (
	"os"
	"testing"
	"time"

	"vgrid/internal/hypervisor"
	"vgrid/internal/hypervisor/hypervisortest"
	"vgrid/internal/model"
)

// Get and List while a start holds the instance's lock (its QEMU not up
// yet: no pidfile) do not take the run for one that ended: settling it
// would record an exit and remove the cgroup the QEMU is about to join.
// Once no operation holds it, the same files are settled as a QEMU gone.
func TestLookDuringStartDoesNotSettle(t *testing.T) {
	state := t.TempDir()
	d := newTestDriver(t, state)
	const id = "w-look"
	p := d.paths(id)
	if err := os.MkdirAll(p.Dir, 0o750); err != nil {
		t.Fatal(err)
	}
	spec := hypervisortest.Spec(id, hypervisor.LocalImage{Name: "i", Boot: "direct", Kernel: "/k", Disk: "/d", DiskFormat: "raw"})
	spec.Quantum = model.Quantum{VCPUs: 1, Memory: 128 * model.MiB}
	if err := writeJSON(p.Spec, spec); err != nil {
		t.Fatal(err)
	}
	if err := writeJSON(p.State, runState{Accel: AccelTCG, StartedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	ctx := hypervisortest.Context(t)
	unlock := d.locks.Lock(id) // a start under way
	in, err := d.Get(ctx, id)
	if err != nil || in.State != hypervisor.InstanceRunning || in.PID != 0 {
		t.Fatalf("Get during the start: %+v %v, want running without a pid yet", in, err)
	}
	list, err := d.List(ctx)
	if err != nil || len(list) != 1 || list[0].State != hypervisor.InstanceRunning {
		t.Fatalf("List during the start: %+v %v", list, err)
	}
	if st, _ := readState(p); st.exitRecorded() {
		t.Fatalf("the start's run was settled under it: %+v", st)
	}
	unlock()
	in, err = d.Get(ctx, id)
	if err != nil || in.State != hypervisor.InstanceStopped || in.ExitReason == "" {
		t.Fatalf("Get with no operation: %+v %v, want stopped with the reason", in, err)
	}
	if st, _ := readState(p); !st.exitRecorded() {
		t.Fatalf("not settled: %+v", st)
	}
}
