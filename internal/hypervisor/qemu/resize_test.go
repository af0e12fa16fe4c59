package qemu

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"vgrid/internal/guest/guesttest"
	"vgrid/internal/hypervisor"
	"vgrid/internal/hypervisor/hypervisortest"
	"vgrid/internal/model"
)

func TestCheckResize(t *testing.T) {
	cur := testSpec() // 2 vCPUs, 512 MiB
	cur.Quantum.Disk = 2 * model.GiB
	cur.MaxMemory = 1 * model.GiB
	saved := cur
	saved.Quantum.Memory = 768 * model.MiB
	firmware := cur
	firmware.Image.Boot = "firmware"
	noMax := cur
	noMax.MaxMemory = 0
	q := cur.Quantum
	with := func(f func(*model.Quantum)) model.Quantum {
		q := q
		f(&q)
		return q
	}
	tests := []struct {
		name  string
		cur   hypervisor.InstanceSpec
		q     model.Quantum
		state hypervisor.InstanceState
		saved *hypervisor.InstanceSpec
		want  []string // each in the error; none: no error
	}{
		{name: "same", q: q, state: hypervisor.InstanceRunning},
		{name: "cpu cap, io caps, bandwidth", state: hypervisor.InstanceRunning,
			q: with(func(q *model.Quantum) { q.CPU, q.DiskIOPS, q.DiskBPS, q.Bandwidth = 1.5, 100, model.MiB, 1e6 })},
		{name: "memory down", q: with(func(q *model.Quantum) { q.Memory = 64 * model.MiB }), state: hypervisor.InstanceRunning},
		{name: "memory up to the max", q: with(func(q *model.Quantum) { q.Memory = model.GiB }), state: hypervisor.InstanceRunning},
		{name: "memory above the max", q: with(func(q *model.Quantum) { q.Memory = model.GiB + model.MiB }), state: hypervisor.InstanceRunning,
			want: []string{"memory 1025Mi is above the guest's maximum of 1Gi"}},
		{name: "no max: memory back up to the start's", cur: noMax, q: q, state: hypervisor.InstanceRunning},
		{name: "no max: memory above the start's", cur: noMax, q: with(func(q *model.Quantum) { q.Memory = 513 * model.MiB }),
			state: hypervisor.InstanceRunning, want: []string{"above the guest's maximum of 512Mi"}},
		{name: "more vcpus", q: with(func(q *model.Quantum) { q.VCPUs = 3 }), state: hypervisor.InstanceRunning,
			want: []string{"microvm has no CPU hotplug: 3 vCPUs needs a restart (stop and start)"}},
		{name: "more vcpus on q35", cur: firmware, q: with(func(q *model.Quantum) { q.VCPUs = 4 }), state: hypervisor.InstanceRunning,
			want: []string{"q35 has no CPU hotplug: 4 vCPUs"}},
		{name: "fewer vcpus", q: with(func(q *model.Quantum) { q.VCPUs = 1 }), state: hypervisor.InstancePaused,
			want: []string{"vCPUs are not taken from a running guest: 1 vCPUs needs a restart"}},
		{name: "disk grown", q: with(func(q *model.Quantum) { q.Disk = 3 * model.GiB }), state: hypervisor.InstanceRunning},
		{name: "disk smaller", q: with(func(q *model.Quantum) { q.Disk = model.GiB }), state: hypervisor.InstanceRunning,
			want: []string{"disk 1Gi is smaller than its 2Gi"}},
		{name: "disk to the image's size", q: with(func(q *model.Quantum) { q.Disk = 0 }), state: hypervisor.InstanceStopped,
			want: []string{"never shrunk"}},
		{name: "every reason at once", q: with(func(q *model.Quantum) { q.VCPUs, q.Memory, q.Disk = 8, 2*model.GiB, 0 }),
			state: hypervisor.InstanceRunning, want: []string{"CPU hotplug", "maximum", "never shrunk"}},
		{name: "stopped: anything but a smaller disk", state: hypervisor.InstanceStopped,
			q: with(func(q *model.Quantum) { q.VCPUs, q.Memory, q.Disk = 8, 4*model.GiB, 4*model.GiB })},
		{name: "suspended: caps", state: hypervisor.InstanceSuspended, saved: &saved,
			q: with(func(q *model.Quantum) { q.Memory, q.CPU, q.DiskIOPS = 768*model.MiB, 0.25, 10 })},
		{name: "suspended: memory", state: hypervisor.InstanceSuspended, saved: &saved, q: q,
			want: []string{"a suspended guest resumes as it was saved, with 2 vCPUs and 768Mi"}},
		{name: "suspended without a saved spec", state: hypervisor.InstanceSuspended,
			q: with(func(q *model.Quantum) { q.VCPUs = 1 }), want: []string{"with 2 vCPUs and 512Mi"}},
		{name: "suspended: disk", state: hypervisor.InstanceSuspended,
			q: with(func(q *model.Quantum) { q.Disk = 4 * model.GiB }), want: []string{"the disk of a suspended guest grows once it runs again"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := tt.cur
			if c.ID == "" {
				c = cur
			}
			err := checkResize(c, tt.q, tt.state, tt.saved)
			if len(tt.want) == 0 {
				if err != nil {
					t.Errorf("got %v, want nil", err)
				}
				return
			}
			if !errors.Is(err, hypervisor.ErrNotInPlace) {
				t.Fatalf("got %v, want ErrNotInPlace", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
		})
	}
}

func TestBalloonAt(t *testing.T) {
	const mib = 1 << 20
	for _, tt := range []struct {
		actual, target int64
		want           bool
	}{
		{256 * mib, 256 * mib, true},
		{256*mib + 4095, 256 * mib, true},
		{256*mib + 4096, 256 * mib, false},
		{256*mib - 1, 256 * mib, false},
		{192*mib + 4096, 192*mib + 1, true}, // a target inside a page: the page above
	} {
		if got := balloonAt(tt.actual, tt.target); got != tt.want {
			t.Errorf("balloonAt(%d, %d) = %v, want %v", tt.actual, tt.target, got, tt.want)
		}
	}
}

func TestCanGiveBack(t *testing.T) {
	const mib = 1 << 20
	for _, tt := range []struct {
		name                  string
		avail, actual, target int64
		ok                    bool
	}{
		{"idle guest", 200 * mib, 256 * mib, 192 * mib, true},
		{"keeps 32 MiB", 96 * mib, 256 * mib, 192 * mib, true},
		{"would keep less than 32 MiB", 95 * mib, 256 * mib, 192 * mib, false},
		{"keeps an eighth of a large target", 1024*mib + 512*mib, 4096 * mib, 3072 * mib, true},
		{"less than an eighth", 1024*mib + 383*mib, 4096 * mib, 3072 * mib, false},
		{"memory held", 40 * mib, 320 * mib, 96 * mib, false},
	} {
		err := canGiveBack(tt.avail, tt.actual, tt.target)
		if (err == nil) != tt.ok || err != nil && !errors.Is(err, hypervisor.ErrNotInPlace) {
			t.Errorf("%s: got %v, want ok %v", tt.name, err, tt.ok)
		}
	}
}

func TestThrottleArgs(t *testing.T) {
	got := throttleArgs(model.Quantum{DiskIOPS: 300, DiskBPS: 5 * model.MiB})
	if got["device"] != "root" || got["iops"] != int64(300) || got["bps"] != int64(5<<20) ||
		got["iops_rd"] != 0 || got["iops_wr"] != 0 || got["bps_rd"] != 0 || got["bps_wr"] != 0 {
		t.Errorf("got %v", got)
	}
	if off := throttleArgs(model.Quantum{}); off["iops"] != int64(0) || off["bps"] != int64(0) {
		t.Errorf("no caps: got %v", off)
	}
}

// offlineDriver is a Driver on dir that runs no QEMU: enough for what
// Resize does to an instance without a process.
func offlineDriver(t *testing.T, dir string) *Driver {
	d := &Driver{
		opts:    Options{StateDir: dir, RunDir: t.TempDir(), QEMUPath: "qemu-system-x86_64"},
		log:     slog.New(slog.NewTextHandler(io.Discard, nil)),
		changes: hypervisor.NewNotifier(),
		vms:     map[string]*vm{},
	}
	d.ctx, d.cancel = context.WithCancel(context.Background())
	t.Cleanup(func() { d.cancel(); d.changes.Close() })
	return d
}

// TestResizeOffline resizes instances without a process: a stopped one
// takes any quantum but a smaller disk (its disk grown on the host), a
// suspended one only the caps; refusals change nothing.
func TestResizeOffline(t *testing.T) {
	ctx := hypervisortest.Context(t)
	dir := t.TempDir()
	d := offlineDriver(t, dir)
	base := filepath.Join(t.TempDir(), "base.raw")
	if err := os.WriteFile(base, make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	mk := func(id string, st *runState) (Paths, hypervisor.InstanceSpec) {
		t.Helper()
		p := d.paths(id)
		if err := os.MkdirAll(p.Dir, 0o755); err != nil {
			t.Fatal(err)
		}
		spec := testSpec()
		spec.ID = id
		spec.Image.Disk = base
		spec.Quantum.Disk = model.GiB
		spec.MaxMemory = model.GiB
		if err := writeJSON(p.Spec, spec); err != nil {
			t.Fatal(err)
		}
		if err := writeQcow2Overlay(p.Disk, base, "raw", int64(spec.Quantum.Disk)); err != nil {
			t.Fatal(err)
		}
		if st != nil {
			if err := writeJSON(p.State, st); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(memStatePath(p), []byte("state"), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		return p, spec
	}
	unchanged := func(p Paths, want hypervisor.InstanceSpec, size int64) {
		t.Helper()
		got, err := readSpec(p)
		if err != nil || got.Quantum != want.Quantum || got.MaxMemory != want.MaxMemory {
			t.Errorf("spec.json: got %+v, %v, want the quantum %+v", got.Quantum, err, want.Quantum)
		}
		if n, err := imageVirtualSize(p.Disk, "qcow2"); err != nil || n != size {
			t.Errorf("disk: %d bytes, %v, want %d", n, err, size)
		}
	}

	p, spec := mk("stopped", nil)
	q := spec.Quantum
	q.Disk = model.GiB / 2
	if err := d.Resize(ctx, spec.ID, q); !errors.Is(err, hypervisor.ErrNotInPlace) || !strings.Contains(err.Error(), "never shrunk") {
		t.Errorf("smaller disk: got %v, want ErrNotInPlace", err)
	}
	unchanged(p, spec, int64(model.GiB))
	if err := d.Resize(ctx, spec.ID, model.Quantum{VCPUs: 1}); !errors.Is(err, hypervisor.ErrInvalid) {
		t.Errorf("no memory: got %v, want ErrInvalid", err)
	}
	if err := d.Resize(ctx, "nope", spec.Quantum); !errors.Is(err, hypervisor.ErrNotFound) {
		t.Errorf("unknown: got %v, want ErrNotFound", err)
	}
	// More vCPUs and memory than the guest had, same disk: recorded.
	q = spec.Quantum
	q.VCPUs, q.Memory, q.CPU = 4, 2*model.GiB, 3
	if err := d.Resize(ctx, spec.ID, q); err != nil {
		t.Fatal(err)
	}
	want := spec
	want.Quantum = q
	unchanged(p, want, int64(model.GiB))
	if _, err := exec.LookPath("qemu-img"); err != nil {
		guesttest.Skip(t, "qemu-img is not installed: the disk of a stopped instance is not grown")
	}
	q.Disk = 3*model.GiB + 100 // rounded up to a sector
	if err := d.Resize(ctx, spec.ID, q); err != nil {
		t.Fatal(err)
	}
	want.Quantum = q
	unchanged(p, want, int64(3*model.GiB+512))

	// Suspended: the caps change, the machine does not.
	p, spec = mk("suspended", &runState{Accel: AccelTCG, StartedAt: time.Unix(1, 0), StoppedAt: time.Unix(2, 0),
		Suspended: &savedState{Bytes: 5}})
	q = spec.Quantum
	q.CPU, q.DiskIOPS = 0.25, 50
	if err := d.Resize(ctx, spec.ID, q); err != nil {
		t.Fatal(err)
	}
	want = spec
	want.Quantum = q
	unchanged(p, want, int64(model.GiB))
	q2 := q
	q2.Memory, q2.Disk = 256*model.MiB, 2*model.GiB
	if err := d.Resize(ctx, spec.ID, q2); !errors.Is(err, hypervisor.ErrNotInPlace) {
		t.Errorf("suspended, memory and disk: got %v, want ErrNotInPlace", err)
	}
	unchanged(p, want, int64(model.GiB))
}

// TestResizeGuest resizes a running guest (256 MiB of at most 384 MiB, 2
// vCPUs, a 1 GiB disk) and checks each change where it shows: MemTotal as
// the guest reports it and the cgroup's limit, the disk as the guest's
// filesystem sees it, the I/O cap as QEMU has it and as a reader in the
// guest meets it, the CPU cap as the cgroup counts a busy guest's time.
func TestResizeGuest(t *testing.T) {
	_, d, img := hostSetup(t)
	ctx := hypervisortest.Context(t)
	spec := hypervisortest.Spec("resize", img)
	spec.Quantum = model.Quantum{VCPUs: 2, CPU: 1, Memory: 256 * model.MiB, Disk: model.GiB}
	spec.MaxMemory = 384 * model.MiB
	start := time.Now()
	in, err := d.Start(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	if got := argAfter(qemuArgs(t, in.PID), "-m", 0); got != "384" {
		t.Errorf("qemu -m %s, want 384 (MaxMemory)", got)
	}
	hypervisortest.WaitGuest(t, d, spec.ID)
	g, err := d.cg.Load(testCgroupParent, spec.ID)
	if err != nil {
		t.Fatal(err)
	}
	overhead := int64(DefaultMemoryOverhead(AccelTCG, spec.Quantum))
	limit := func(want model.ByteSize) {
		t.Helper()
		if got, err := g.MemoryLimit(); err != nil || got != int64(want)+overhead {
			t.Errorf("cgroup memory limit %d, %v, want %s + overhead", got, err, want)
		}
	}
	// The balloon took the guest down to 256 MiB at boot: it reports
	// MemTotal of its 384 MiB less the 128 MiB the balloon holds.
	m0 := waitMemory(t, d, spec.ID, func(m int64) bool { return m > 160 && m <= 256 })
	time.Sleep(1500 * time.Millisecond) // a changing MemTotal would be reported within a second
	m0 = waitMemory(t, d, spec.ID, func(m int64) bool { return m > 160 && m <= 256 })
	t.Logf("guest up %s after Start, MemTotal %d MiB at a balloon of 256 MiB", time.Since(start).Round(time.Millisecond), m0)
	limit(256 * model.MiB)

	// Refused, and nothing changed.
	for _, tt := range []struct {
		name string
		f    func(*model.Quantum)
		want string
	}{
		{"memory above the max", func(q *model.Quantum) { q.Memory = 385 * model.MiB }, "maximum of 384Mi"},
		{"more vcpus", func(q *model.Quantum) { q.VCPUs, q.CPU = 3, 0.5 }, "microvm has no CPU hotplug: 3 vCPUs needs a restart"},
		{"fewer vcpus", func(q *model.Quantum) { q.VCPUs, q.Memory = 1, 192*model.MiB }, "vCPUs are not taken from a running guest"},
		{"smaller disk", func(q *model.Quantum) { q.Disk, q.CPU = model.GiB/2, 0.5 }, "never shrunk"},
	} {
		q := spec.Quantum
		tt.f(&q)
		if err := d.Resize(ctx, spec.ID, q); !errors.Is(err, hypervisor.ErrNotInPlace) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: got %v, want ErrNotInPlace saying %q", tt.name, err, tt.want)
		}
	}
	if s, _ := readSpec(d.paths(spec.ID)); s.Quantum != spec.Quantum {
		t.Errorf("after refusals spec.json has %+v, want %+v", s.Quantum, spec.Quantum)
	}
	limit(256 * model.MiB)
	if quota, _, _ := g.CPUMax(); quota != 100000 {
		t.Errorf("after refusals the cpu quota is %d, want 100000", quota)
	}

	// Memory: down 64 MiB, then up 128 MiB.
	q := spec.Quantum
	for _, mem := range []int64{192, 320} {
		q.Memory = model.ByteSize(mem) * model.MiB
		t0 := time.Now()
		if err := d.Resize(ctx, spec.ID, q); err != nil {
			t.Fatal(err)
		}
		took := time.Since(t0)
		want := m0 + mem - 256
		got := waitMemory(t, d, spec.ID, func(m int64) bool { return m >= want-1 && m <= want+1 })
		used, _ := g.MemoryUsage()
		t.Logf("memory %d MiB: Resize took %s, the guest reports MemTotal %d MiB %s after the call; the cgroup holds %s", mem,
			took.Round(time.Millisecond), got, time.Since(t0).Round(time.Millisecond), model.ByteSize(used))
		limit(q.Memory)
	}

	// A guest that cannot spare the memory (it is in a tmpfs, and there
	// is no swap) is not asked for it: its balloon driver would starve it
	// into a kernel panic. Nothing changes; the guest goes on.
	execOK(t, d, spec.ID, "mkdir -p /run/hold && mount -t tmpfs -o size=250m tmpfs /run/hold && dd if=/dev/zero of=/run/hold/f bs=1M count=200 2>/dev/null")
	held := q
	held.Memory = 96 * model.MiB
	t0 := time.Now()
	err = d.Resize(ctx, spec.ID, held)
	t.Logf("memory 96 MiB with 200 MiB held in the guest, after %s: %v", time.Since(t0).Round(time.Millisecond), err)
	if !errors.Is(err, hypervisor.ErrNotInPlace) || !strings.Contains(err.Error(), "free memory in the guest first") {
		t.Errorf("got %v, want ErrNotInPlace: the guest cannot spare it", err)
	}
	if in, _ := d.Get(ctx, spec.ID); in.State != hypervisor.InstanceRunning {
		log, _ := d.ConsoleLog(ctx, spec.ID, 3000)
		t.Fatalf("the guest is %s (%s):\n%s", in.State, in.ExitReason, log)
	}
	limit(320 * model.MiB)
	if s, _ := readSpec(d.paths(spec.ID)); s.Quantum != q {
		t.Errorf("spec.json has %+v, want %+v", s.Quantum, q)
	}
	execOK(t, d, spec.ID, "umount /run/hold")
	waitMemory(t, d, spec.ID, func(m int64) bool { return m == m0+64 })

	// Disk: 1 GiB to 2 GiB, filesystem and all.
	fsBefore := rootFSKiB(t, d, spec.ID)
	q.Disk = 2 * model.GiB
	t0 = time.Now()
	if err := d.Resize(ctx, spec.ID, q); err != nil {
		t.Fatal(err)
	}
	fsAfter := rootFSKiB(t, d, spec.ID)
	t.Logf("disk 2 GiB: Resize took %s; df: %d KiB before, %d KiB after", time.Since(t0).Round(time.Millisecond), fsBefore, fsAfter)
	if fsBefore > 1<<20 || fsAfter-fsBefore < 900<<10 || fsAfter > 2<<20 {
		t.Errorf("df of /: %d KiB before, %d KiB after; want at most 1 GiB, then about 2 GiB", fsBefore, fsAfter)
	}
	waitGuestInfo(t, d, spec.ID, "disk_bytes 2 GiB", func(g *model.GuestInfo) bool { return g.DiskBytes == 2<<30 })

	// I/O cap: 25 IOPS, then none.
	q.DiskIOPS = 25
	if err := d.Resize(ctx, spec.ID, q); err != nil {
		t.Fatal(err)
	}
	if got := rootIOPS(t, d, spec.ID); got != 25 {
		t.Errorf("QEMU's iops cap on the root disk: %d, want 25", got)
	}
	capped := directReads(t, d, spec.ID, 50)
	q.DiskIOPS = 0
	if err := d.Resize(ctx, spec.ID, q); err != nil {
		t.Fatal(err)
	}
	if got := rootIOPS(t, d, spec.ID); got != 0 {
		t.Errorf("QEMU's iops cap on the root disk: %d, want none", got)
	}
	free := directReads(t, d, spec.ID, 50)
	t.Logf("50 direct 4 KiB reads in the guest: %s at 25 IOPS, %s uncapped", capped.Round(time.Millisecond), free.Round(time.Millisecond))
	if capped < 1500*time.Millisecond || free > capped/2 {
		t.Errorf("50 reads took %s capped at 25 IOPS (want at least 1.5 s) and %s uncapped", capped, free)
	}

	// CPU: both vCPUs spinning, under caps of 0.5, 1.5 and 0.25 cores.
	spin, stopSpin := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for i := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			loop := "echo $$ > /run/spin." + strconv.Itoa(i) + "; while :; do :; done"
			_, _ = d.Exec(spin, spec.ID, hypervisor.ExecRequest{Argv: []string{"sh", "-c", loop}, Timeout: time.Minute},
				func(string, []byte) error { return nil })
		}()
	}
	for _, c := range []float64{0.5, 1.5, 0.25} {
		q.CPU = c
		if err := d.Resize(ctx, spec.ID, q); err != nil {
			t.Fatal(err)
		}
		time.Sleep(500 * time.Millisecond)
		checkCap(t, g, c, 4*time.Second)
	}
	execOK(t, d, spec.ID, "kill $(cat /run/spin.*)")
	stopSpin()
	wg.Wait()
	q.CPU = 1
	if err := d.Resize(ctx, spec.ID, q); err != nil {
		t.Fatal(err)
	}

	// Suspended and resumed: the same RAM (-m), the balloon where it was.
	if _, err := d.Suspend(ctx, spec.ID); err != nil {
		t.Fatal(err)
	}
	resumed := spec
	resumed.Quantum = q
	resumed.MaxMemory = 0 // the caller need not know it: the saved RAM is used
	in, err = d.Start(ctx, resumed)
	if err != nil {
		t.Fatal(err)
	}
	if in.LastResume == nil || argAfter(qemuArgs(t, in.PID), "-m", 0) != "384" {
		t.Errorf("after the resume: %+v, qemu -m %s; want resumed with -m 384", in, argAfter(qemuArgs(t, in.PID), "-m", 0))
	}
	waitMemory(t, d, spec.ID, func(m int64) bool { return m == m0+64 })

	// A new driver (an agent restart) finds MaxMemory in spec.json.
	d.Close()
	d2 := newTestDriver(t, d.opts.StateDir)
	q.Memory = 384 * model.MiB
	if err := d2.Resize(ctx, spec.ID, q); err != nil {
		t.Fatal(err)
	}
	waitMemory(t, d2, spec.ID, func(m int64) bool { return m == m0+128 })
	d = d2
	if s, _ := readSpec(d.paths(spec.ID)); s.Quantum != q || s.MaxMemory != spec.MaxMemory {
		t.Errorf("spec.json: %+v (max %s), want %+v (max %s)", s.Quantum, s.MaxMemory, q, spec.MaxMemory)
	}
	t.Logf("whole test %s", time.Since(start).Round(time.Millisecond))
}

// execOK runs script with sh -c in the guest and fails the test unless
// it exits 0.
func execOK(t *testing.T, d *Driver, id, script string) {
	t.Helper()
	if out, code := execIn(t, d, id, "sh", "-c", script); code != 0 {
		t.Fatalf("%s: exit %d: %s", script, code, out)
	}
}

// qemuArgs returns the command line of process pid.
func qemuArgs(t *testing.T, pid int) []string {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
}

// waitGuestInfo waits until the guest's report satisfies ok.
func waitGuestInfo(t *testing.T, d *Driver, id, what string, ok func(*model.GuestInfo) bool) *model.GuestInfo {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		in, err := d.Get(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		if in.Guest != nil && ok(in.Guest) {
			return in.Guest
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: the guest does not report %s: %+v", id, what, in.Guest)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitMemory waits until the guest reports a MemTotal (MiB) that
// satisfies ok, and returns it.
func waitMemory(t *testing.T, d *Driver, id string, ok func(int64) bool) int64 {
	t.Helper()
	return waitGuestInfo(t, d, id, "the MemTotal wanted", func(g *model.GuestInfo) bool { return ok(g.MemoryMiB) }).MemoryMiB
}

// rootFSKiB is the size of the guest's root filesystem as df shows it.
func rootFSKiB(t *testing.T, d *Driver, id string) int64 {
	t.Helper()
	out, code := execIn(t, d, id, "df", "-k", "/")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if code != 0 || len(lines) < 2 {
		t.Fatalf("df -k /: exit %d: %s", code, out)
	}
	f := strings.Fields(lines[len(lines)-1])
	if len(f) < 2 {
		t.Fatalf("df -k /: %q", out)
	}
	n, err := strconv.ParseInt(f[1], 10, 64)
	if err != nil {
		t.Fatalf("df -k /: %q: %v", out, err)
	}
	return n
}

// rootIOPS is the iops cap QEMU has on the root drive (query-block).
func rootIOPS(t *testing.T, d *Driver, id string) int64 {
	t.Helper()
	d.mu.Lock()
	v := d.vms[id]
	d.mu.Unlock()
	c, err := v.qmpClient(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var blocks []struct {
		Device   string `json:"device"`
		Inserted *struct {
			IOPS int64 `json:"iops"`
		} `json:"inserted"`
	}
	if err := c.Execute(context.Background(), "query-block", nil, &blocks); err != nil {
		t.Fatal(err)
	}
	for _, b := range blocks {
		if b.Device == rootDrive && b.Inserted != nil {
			return b.Inserted.IOPS
		}
	}
	t.Fatalf("query-block has no %s: %+v", rootDrive, blocks)
	return 0
}

// directReads times n 4 KiB reads of the guest's root disk that bypass
// its page cache (each one a request QEMU throttles).
func directReads(t *testing.T, d *Driver, id string, n int) time.Duration {
	t.Helper()
	t0 := time.Now()
	out, code := execIn(t, d, id, "dd", "if=/dev/vda", "of=/dev/null", "bs=4k", "count="+strconv.Itoa(n), "iflag=direct")
	if code != 0 {
		t.Fatalf("dd: exit %d: %s", code, out)
	}
	return time.Since(t0)
}
