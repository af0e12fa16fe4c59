package qemu

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"vgrid/internal/cgroup"
	"vgrid/internal/guest/guesttest"
	"vgrid/internal/hypervisor"
	"vgrid/internal/hypervisor/hypervisortest"
	"vgrid/internal/model"
)

// hostSetup gives a test a state directory whose instances are all
// deleted (QEMU killed, cgroups removed) when it ends, pass or fail, and
// a driver on it.
func hostSetup(t *testing.T) (string, *Driver, hypervisor.LocalImage) {
	t.Helper()
	requireHost(t)
	img := localImage(guesttest.Image(t))
	dir := t.TempDir()
	t.Cleanup(func() {
		hypervisortest.Cleanup(t, func(t *testing.T, dir string) hypervisor.Driver { return newTestDriver(t, dir) }, dir)
	})
	return dir, newTestDriver(t, dir), img
}

// waitConsole polls the console log until it contains s.
func waitConsole(t *testing.T, d hypervisor.Driver, id, s string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		log, err := d.ConsoleLog(context.Background(), id, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(log), s) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("console has no %q after %s:\n%s", s, timeout, log)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// measureCPU returns the cores the group used over d, and the share of
// CFS periods in which its quota throttled it.
func measureCPU(t *testing.T, g *cgroup.Group, d time.Duration) (cores, throttled float64) {
	t.Helper()
	u0, err := g.CPUUsage()
	if err != nil {
		t.Fatal(err)
	}
	p0, th0, _ := g.Throttled()
	t0 := time.Now()
	time.Sleep(d)
	u1, err := g.CPUUsage()
	if err != nil {
		t.Fatal(err)
	}
	p1, th1, _ := g.Throttled()
	cores = float64(u1-u0) / float64(time.Since(t0))
	if p1 > p0 {
		throttled = float64(th1-th0) / float64(p1-p0)
	}
	t.Logf("used %.3f cores over %s; throttled in %d of %d periods", cores, d, th1-th0, p1-p0)
	return cores, throttled
}

// checkCap measures a spinning guest's CPU use and compares it with cap.
// The cap is an upper bound, always checked. Whether the guest reaches it
// depends on the host having the CPU to spare: when other processes keep
// the group from using its quota (it is throttled in few periods), the
// measurement is repeated, and if the host never quiets down only the
// upper bound is checked.
func checkCap(t *testing.T, g *cgroup.Group, capCores float64, d time.Duration) {
	t.Helper()
	for try := 1; ; try++ {
		cores, throttled := measureCPU(t, g, d)
		t.Logf("cpu cap %.2f: measured %.3f cores", capCores, cores)
		if cores > capCores*1.2 {
			t.Errorf("got %.3f cores, above the cap of %.2f by more than 20%%", cores, capCores)
			return
		}
		if throttled >= 0.8 {
			if cores < capCores*0.8 {
				t.Errorf("got %.3f cores, want %.2f ± 20%%", cores, capCores)
			}
			return
		}
		if try == 4 {
			t.Logf("WARNING: the host was too busy for the guest to reach its cap (throttled in %.0f%% of periods); only the upper bound was checked", throttled*100)
			return
		}
		t.Logf("host busy (throttled in only %.0f%% of periods): measuring again", throttled*100)
	}
}

// TestCPUCap checks that a guest spinning on its one vCPU gets the CPU
// cap of its quantum, before and after a Resize, and that the driver
// reports the CPU time its process used (Instance.CPUSeconds, and
// FinalCPUSeconds once stopped) as its cgroup counts it.
func TestCPUCap(t *testing.T) {
	_, d, img := hostSetup(t)
	ctx := hypervisortest.Context(t)
	spec := hypervisortest.Spec("cpucap", img)
	spec.Quantum = model.Quantum{VCPUs: 1, CPU: 0.5, Memory: 256 * model.MiB}
	spec.Context = &model.Context{UserData: "#!/bin/sh\nwhile :; do :; done\n"}
	in, err := d.Start(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	g, err := d.cg.Load(testCgroupParent, spec.ID)
	if err != nil {
		t.Fatal(err)
	}
	if in.Cgroup["cpu"] != g.Paths()["cpu"] || in.Cgroup["memory"] == "" {
		t.Errorf("instance cgroup: got %v, want %v", in.Cgroup, g.Paths())
	}
	if q, p, err := g.CPUMax(); err != nil || q != 50000 || p != 100000 {
		t.Errorf("cpu quota: got %d/%d, %v, want 50000/100000", q, p, err)
	}
	wantMem := int64(256*model.MiB + DefaultMemoryOverhead(AccelTCG, spec.Quantum))
	if m, err := g.MemoryLimit(); err != nil || m != wantMem {
		t.Errorf("memory limit: got %d, %v, want %d (256 MiB + overhead)", m, err, wantMem)
	}
	hypervisortest.WaitGuest(t, d, spec.ID)
	time.Sleep(time.Second) // boot noise and the start of the loop
	checkCap(t, g, 0.5, 5*time.Second)

	q := spec.Quantum
	q.CPU = 0.25
	if err := d.Resize(ctx, spec.ID, q); err != nil {
		t.Fatal(err)
	}
	if quota, _, _ := g.CPUMax(); quota != 25000 {
		t.Errorf("quota after resize: got %d, want 25000", quota)
	}
	time.Sleep(300 * time.Millisecond)
	checkCap(t, g, 0.25, 3*time.Second)

	// CPU accounting: what the driver reports is the cgroup's counter,
	// and what the process used in all is kept when it ends.
	cpu := checkCPUSeconds(t, d, spec.ID, g)
	checkFinalCPUSeconds(t, d, spec.ID, 0.25, cpu)
}

// TestHelperProcess is not a test: TestSurvivesAgentKill runs the test
// binary with it to have a driver in a process it can kill -9.
func TestHelperProcess(t *testing.T) {
	dir := os.Getenv("VGRID_QEMU_HELPER_DIR")
	if dir == "" {
		t.Skip("helper process of TestSurvivesAgentKill")
	}
	var spec hypervisor.InstanceSpec
	if err := json.Unmarshal([]byte(os.Getenv("VGRID_QEMU_HELPER_SPEC")), &spec); err != nil {
		t.Fatal(err)
	}
	d, err := New(Options{StateDir: dir, CgroupParent: testCgroupParent})
	if err != nil {
		t.Fatal(err)
	}
	in, err := d.Start(context.Background(), spec)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Printf("PID %d\n", in.PID)
	time.Sleep(time.Hour) // until killed
}

// TestSurvivesAgentKill starts a guest from a driver in another process,
// kills that process with SIGKILL, and checks that the guest lives on and
// a new driver adopts it.
func TestSurvivesAgentKill(t *testing.T) {
	dir, _, img := hostSetup(t)
	spec := hypervisortest.Spec("survivor", img)
	b, _ := json.Marshal(spec)
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$", "-test.v")
	cmd.Env = append(os.Environ(), "VGRID_QEMU_HELPER_DIR="+dir, "VGRID_QEMU_HELPER_SPEC="+string(b))
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	pid := 0
	sc := bufio.NewScanner(out)
	var lines []string
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if n, ok := strings.CutPrefix(sc.Text(), "PID "); ok {
			pid, _ = strconv.Atoi(n)
			break
		}
	}
	if pid == 0 {
		t.Fatalf("helper printed no PID:\n%s", strings.Join(lines, "\n"))
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()

	time.Sleep(500 * time.Millisecond)
	p := instancePaths(filepath.Join(dir, spec.ID), DefaultRunDir)
	if !alive(pid, marker(p)) {
		t.Fatalf("qemu %d died with the driver's process", pid)
	}
	d2 := newTestDriver(t, dir)
	in, err := d2.Get(context.Background(), spec.ID)
	if err != nil || in.State != hypervisor.InstanceRunning || in.PID != pid {
		t.Fatalf("after kill -9 of the driver: got %+v, %v, want running as %d", in, err, pid)
	}
	hypervisortest.WaitGuest(t, d2, spec.ID)
}

// TestDiskPersists checks that what a guest writes lands in its overlay,
// and that a restart boots the same overlay: the user-data script, which
// the guest runs once per instance (its marker is on the disk), does not
// run again.
func TestDiskPersists(t *testing.T) {
	for _, tool := range []string{"debugfs"} {
		if _, err := exec.LookPath(tool); err != nil {
			guesttest.Skip(t, "%s is not installed", tool)
		}
	}
	dir, d, img := hostSetup(t)
	ctx := hypervisortest.Context(t)
	spec := hypervisortest.Spec("disk", img)
	spec.Context = &model.Context{UserData: "#!/bin/sh\necho vgrid-disk-mark > /root/mark\nsync\necho MARK-WRITTEN\n"}
	if _, err := d.Start(ctx, spec); err != nil {
		t.Fatal(err)
	}
	waitConsole(t, d, spec.ID, "MARK-WRITTEN", hypervisortest.GuestTimeout)
	if err := d.Stop(ctx, spec.ID, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	disk := filepath.Join(dir, spec.ID, diskFile)
	raw := filepath.Join(t.TempDir(), "disk.raw")
	if b, err := exec.Command("qemu-img", "convert", "-O", "raw", disk, raw).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img convert: %v: %s", err, b)
	}
	b, err := exec.Command("debugfs", "-R", "cat /root/mark", raw).Output()
	if err != nil || !strings.Contains(string(b), "vgrid-disk-mark") {
		t.Fatalf("/root/mark in the overlay: got %q, %v", b, err)
	}
	st1, err := os.Stat(disk)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Start(ctx, spec); err != nil {
		t.Fatal(err)
	}
	hypervisortest.WaitGuest(t, d, spec.ID)
	st2, err := os.Stat(disk)
	if err != nil || !os.SameFile(st1, st2) {
		t.Errorf("disk after restart: %v; want the same file", err)
	}
	time.Sleep(2 * time.Second)
	log, _ := d.ConsoleLog(ctx, spec.ID, 1<<20)
	if strings.Contains(string(log), "MARK-WRITTEN") {
		t.Errorf("user-data ran again on restart: the disk was not kept")
	}
}

// fillScript fills the guest's RAM through a tmpfs.
const fillScript = "#!/bin/sh\nmkdir -p /mnt/fill\nmount -t tmpfs -o size=75% tmpfs /mnt/fill\n" +
	"dd if=/dev/zero of=/mnt/fill/f bs=1M 2>/dev/null\necho FILLED $(du -m /mnt/fill/f)\n"

// TestMemoryOverheadHolds fills a guest's RAM and checks that QEMU stays
// within quantum memory + DefaultMemoryOverhead; it logs the peak.
func TestMemoryOverheadHolds(t *testing.T) {
	_, d, img := hostSetup(t)
	ctx := hypervisortest.Context(t)
	for _, mem := range []model.ByteSize{256 * model.MiB, 1024 * model.MiB} {
		spec := hypervisortest.Spec(fmt.Sprintf("fill-%d", mem.MiB()), img)
		spec.Quantum.Memory = mem
		spec.Context = &model.Context{UserData: fillScript}
		if _, err := d.Start(ctx, spec); err != nil {
			t.Fatal(err)
		}
		waitConsole(t, d, spec.ID, "FILLED", 2*hypervisortest.GuestTimeout)
		time.Sleep(2 * time.Second)
		in, err := d.Get(ctx, spec.ID)
		if err != nil || in.State != hypervisor.InstanceRunning {
			t.Fatalf("%s after filling its RAM: got %+v, %v, want running", mem, in, err)
		}
		peak := peakMemory(t, in.Cgroup["memory"])
		limit := mem + DefaultMemoryOverhead(AccelTCG, spec.Quantum)
		t.Logf("guest %s: cgroup peak %d MiB, peak - guest RAM = %+d MiB, limit %s", mem, peak>>20, (peak-int64(mem))>>20, limit)
		if err := d.Delete(ctx, spec.ID); err != nil {
			t.Fatal(err)
		}
	}
}

// peakMemory reads the most memory the group has held.
func peakMemory(t *testing.T, dir string) int64 {
	t.Helper()
	for _, f := range []string{"memory.max_usage_in_bytes", "memory.peak"} {
		if b, err := os.ReadFile(filepath.Join(dir, f)); err == nil {
			n, _ := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
			return n
		}
	}
	t.Fatalf("no peak memory file in %s", dir)
	return 0
}

// TestOOMReason gives QEMU almost no room above guest RAM, fills the
// guest's RAM, and checks that the exit is put down to the OOM killer.
func TestOOMReason(t *testing.T) {
	requireHost(t)
	img := localImage(guesttest.Image(t))
	dir := t.TempDir()
	newOOMDriver := func(t *testing.T, dir string) *Driver {
		d, err := New(Options{StateDir: dir, CgroupParent: testCgroupParent, Logger: testLogger(t),
			MemoryOverhead: func(string, model.Quantum) model.ByteSize { return 16 * model.MiB }})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { d.Close() })
		return d
	}
	t.Cleanup(func() {
		hypervisortest.Cleanup(t, func(t *testing.T, dir string) hypervisor.Driver { return newOOMDriver(t, dir) }, dir)
	})
	d := newOOMDriver(t, dir)
	ctx := hypervisortest.Context(t)
	spec := hypervisortest.Spec("oom", img)
	spec.Context = &model.Context{UserData: fillScript}
	if _, err := d.Start(ctx, spec); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(2 * hypervisortest.GuestTimeout)
	for {
		in, err := d.Get(ctx, spec.ID)
		if err != nil {
			t.Fatal(err)
		}
		if in.State == hypervisor.InstanceStopped {
			t.Logf("exit reason: %s", in.ExitReason)
			if !strings.Contains(in.ExitReason, "OOM") {
				t.Errorf("exit reason %q, want the OOM killer", in.ExitReason)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("qemu was not OOM-killed")
		}
		time.Sleep(100 * time.Millisecond)
	}
	if _, err := d.cg.Load(testCgroupParent, spec.ID); err == nil {
		t.Errorf("cgroup of the dead instance is still there")
	}
}

// TestLongStateDir runs an instance whose directory is too long for its
// sockets (they go under the run directory), pauses and resumes it over
// QMP, and checks that Delete removes the socket directory too.
func TestLongStateDir(t *testing.T) {
	requireHost(t)
	img := localImage(guesttest.Image(t))
	dir := filepath.Join(t.TempDir(), strings.Repeat("long-state-directory-", 5))
	t.Cleanup(func() {
		hypervisortest.Cleanup(t, func(t *testing.T, dir string) hypervisor.Driver { return newTestDriver(t, dir) }, dir)
	})
	d := newTestDriver(t, dir)
	ctx := hypervisortest.Context(t)
	spec := hypervisortest.Spec("long-dir-instance-with-a-long-name", img)
	if _, err := d.Start(ctx, spec); err != nil {
		t.Fatal(err)
	}
	p := d.paths(spec.ID)
	if p.SockDir == p.Dir || !strings.HasPrefix(p.SockDir, DefaultRunDir) {
		t.Fatalf("sockets in %s; want them under %s", p.SockDir, DefaultRunDir)
	}
	if target, err := os.Readlink(filepath.Join(p.Dir, runLink)); err != nil || target != p.SockDir {
		t.Errorf("run link: got %q, %v, want %q", target, err, p.SockDir)
	}
	hypervisortest.WaitGuest(t, d, spec.ID)

	d.mu.Lock()
	v := d.vms[spec.ID]
	d.mu.Unlock()
	c, err := v.qmpClient(ctx)
	if err != nil {
		t.Fatal(err)
	}
	waitState := func(want hypervisor.InstanceState) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for {
			in, err := d.Get(ctx, spec.ID)
			if err == nil && in.State == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("got %+v, %v, want %s", in, err, want)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	if err := c.Execute(ctx, "stop", nil, nil); err != nil {
		t.Fatal(err)
	}
	waitState(hypervisor.InstancePaused)
	if err := c.Execute(ctx, "cont", nil, nil); err != nil {
		t.Fatal(err)
	}
	waitState(hypervisor.InstanceRunning)

	if err := d.Delete(ctx, spec.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(p.SockDir); !os.IsNotExist(err) {
		t.Errorf("socket directory after Delete: %v, want it gone", err)
	}
}

// TestGuestPowerOff checks the exit reason when the guest powers itself off.
func TestGuestPowerOff(t *testing.T) {
	_, d, img := hostSetup(t)
	ctx := hypervisortest.Context(t)
	spec := hypervisortest.Spec("poweroff", img)
	spec.Context = &model.Context{UserData: "#!/bin/sh\nsleep 1\npoweroff -f\n"}
	if _, err := d.Start(ctx, spec); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(hypervisortest.GuestTimeout)
	for {
		in, err := d.Get(ctx, spec.ID)
		if err != nil {
			t.Fatal(err)
		}
		if in.State == hypervisor.InstanceStopped {
			if in.ExitReason != "guest powered off" {
				t.Errorf("exit reason: got %q, want %q", in.ExitReason, "guest powered off")
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the guest did not power off")
		}
		time.Sleep(50 * time.Millisecond)
	}
}
