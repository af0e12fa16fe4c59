package qemu

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
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

// hostParentPrefix starts the name of a test host's cgroup parent.
const hostParentPrefix = "host-"

// newHostDriver makes a driver standing for a host of its own: besides
// its state directory, its cgroups go under a parent of its own (derived
// from the directory, so that a driver made again on it finds them), as
// on another machine. Two drivers on one machine with the same instance
// ID would otherwise share its cgroup, which a live migration, running
// the instance on both at once, cannot have.
func newHostDriver(t *testing.T, stateDir string) *Driver {
	t.Helper()
	h := sha256.Sum256([]byte(stateDir))
	d, err := New(Options{StateDir: stateDir, CgroupParent: testCgroupParent + "/" + hostParentPrefix + hex.EncodeToString(h[:4]),
		Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

// hostPair makes two test hosts whose instances are deleted when the
// test ends.
func hostPair(t *testing.T) (dirA, dirB string, a, b *Driver) {
	t.Helper()
	newDriver := func(t *testing.T, dir string) hypervisor.Driver { return newHostDriver(t, dir) }
	dirA, dirB = t.TempDir(), t.TempDir()
	t.Cleanup(func() {
		hypervisortest.Cleanup(t, newDriver, dirA)
		hypervisortest.Cleanup(t, newDriver, dirB)
	})
	return dirA, dirB, newHostDriver(t, dirA), newHostDriver(t, dirB)
}

func TestParseListen(t *testing.T) {
	tests := []struct {
		listen string
		ip     string
		port   int
		ok     bool
	}{
		{"127.0.0.1:0", "127.0.0.1", 0, true},
		{"10.1.2.3:7000", "10.1.2.3", 7000, true},
		{"[::1]:0", "::1", 0, true},
		{"[::ffff:10.0.0.1]:5", "10.0.0.1", 5, true},
		{"0.0.0.0:0", "", 0, false},
		{"[::]:0", "", 0, false},
		{"localhost:0", "", 0, false},
		{"127.0.0.1", "", 0, false},
		{"127.0.0.1:65535", "", 0, false}, // no room for the disk's port
		{"127.0.0.1:x", "", 0, false},
		{"[fe80::1%eth0]:0", "", 0, false},
	}
	for _, tt := range tests {
		ip, port, err := parseListen(tt.listen)
		if tt.ok != (err == nil) || (tt.ok && (ip.String() != tt.ip || port != tt.port)) {
			t.Errorf("parseListen(%q): got %v, %d, %v; want %s, %d, ok=%v", tt.listen, ip, port, err, tt.ip, tt.port, tt.ok)
		}
		if err != nil && !errors.Is(err, hypervisor.ErrInvalid) {
			t.Errorf("parseListen(%q): got %v, want ErrInvalid", tt.listen, err)
		}
	}
}

func TestParseEndpoint(t *testing.T) {
	tests := []struct {
		name                    string
		ep                      hypervisor.MigrationEndpoint
		mem, host, port, export string
		ok                      bool
	}{
		{"ipv4", hypervisor.MigrationEndpoint{Memory: "10.0.0.2:4000", Disk: "nbd://10.0.0.2:4001/root"}, "10.0.0.2:4000", "10.0.0.2", "4001", "root", true},
		{"ipv6", hypervisor.MigrationEndpoint{Memory: "[fd00::2]:4000", Disk: "nbd://[fd00::2]:4001/root"}, "[fd00::2]:4000", "fd00::2", "4001", "root", true},
		{"no memory", hypervisor.MigrationEndpoint{Disk: "nbd://10.0.0.2:4001/root"}, "", "", "", "", false},
		{"memory port 0", hypervisor.MigrationEndpoint{Memory: "10.0.0.2:0", Disk: "nbd://10.0.0.2:4001/root"}, "", "", "", "", false},
		{"not nbd", hypervisor.MigrationEndpoint{Memory: "10.0.0.2:4000", Disk: "http://10.0.0.2:4001/root"}, "", "", "", "", false},
		{"no disk port", hypervisor.MigrationEndpoint{Memory: "10.0.0.2:4000", Disk: "nbd://10.0.0.2/root"}, "", "", "", "", false},
		{"no export", hypervisor.MigrationEndpoint{Memory: "10.0.0.2:4000", Disk: "nbd://10.0.0.2:4001/"}, "", "", "", "", false},
		{"deep export", hypervisor.MigrationEndpoint{Memory: "10.0.0.2:4000", Disk: "nbd://10.0.0.2:4001/a/b"}, "", "", "", "", false},
		{"query", hypervisor.MigrationEndpoint{Memory: "10.0.0.2:4000", Disk: "nbd://10.0.0.2:4001/root?x=1"}, "", "", "", "", false},
	}
	for _, tt := range tests {
		mem, host, port, export, err := parseEndpoint(tt.ep)
		if tt.ok != (err == nil) || (tt.ok && (mem != tt.mem || host != tt.host || port != tt.port || export != tt.export)) {
			t.Errorf("%s: got %q %q %q %q, %v; want %q %q %q %q, ok=%v", tt.name, mem, host, port, export, err, tt.mem, tt.host, tt.port, tt.export, tt.ok)
		}
		if err != nil && !errors.Is(err, hypervisor.ErrInvalid) {
			t.Errorf("%s: got %v, want ErrInvalid", tt.name, err)
		}
	}
}

// execOut runs argv in the guest and returns its standard output; a
// non-zero exit fails the test.
func execOut(t *testing.T, d *Driver, id string, argv ...string) string {
	t.Helper()
	var out strings.Builder
	res, err := d.Exec(context.Background(), id, hypervisor.ExecRequest{Argv: argv, Timeout: 30 * time.Second},
		func(stream string, data []byte) error {
			if stream == hypervisor.StreamStdout {
				out.Write(data)
			}
			return nil
		})
	if err != nil || res.ExitCode != 0 {
		t.Fatalf("exec %v in %s: %+v, %v", argv, id, res, err)
	}
	return out.String()
}

// TestPrepareIncoming checks the incoming side alone: fixed ports, the
// quantum's cgroup from the start, a driver restart that leaves the
// waiting QEMU alone, Stop and Delete that end it at once, a second
// preparation after its QEMU ended.
func TestPrepareIncoming(t *testing.T) {
	requireHost(t)
	img := localImage(guesttest.Image(t))
	_, dirB, _, dB := hostPair(t)
	ctx := hypervisortest.Context(t)
	spec := hypervisortest.Spec("prep-1", img)

	// A fixed port: memory on it, the disk on the next.
	port := freeTCPPortPair(t)
	ep, err := dB.PrepareIncoming(ctx, spec, "127.0.0.1:"+strconv.Itoa(port))
	if err != nil {
		t.Fatal(err)
	}
	want := hypervisor.MigrationEndpoint{Memory: "127.0.0.1:" + strconv.Itoa(port), Disk: "nbd://127.0.0.1:" + strconv.Itoa(port+1) + "/root"}
	if ep != want {
		t.Errorf("endpoint: got %+v, want %+v", ep, want)
	}
	in, err := dB.Get(ctx, spec.ID)
	if err != nil || in.State != hypervisor.InstancePaused || in.ExitReason != IncomingReason || in.PID <= 0 {
		t.Fatalf("Get: got %+v, %v", in, err)
	}
	// The quantum holds before the guest comes: QEMU is in its group.
	g, err := dB.cg.Load(dB.opts.CgroupParent, spec.ID)
	if err != nil {
		t.Fatal(err)
	}
	procs, err := g.Procs()
	if err != nil || !containsInt(procs, in.PID) {
		t.Errorf("cgroup procs: got %v, %v, want qemu %d among them", procs, err, in.PID)
	}
	if lim, err := g.MemoryLimit(); err != nil || lim != int64(dB.MemoryLimit(in.Accel, spec.Quantum)) {
		t.Errorf("cgroup memory limit: got %d, %v, want %d", lim, err, dB.MemoryLimit(in.Accel, spec.Quantum))
	}
	if _, err := dB.PrepareIncoming(ctx, spec, "0.0.0.0:0"); !errors.Is(err, hypervisor.ErrInvalid) {
		t.Errorf("PrepareIncoming on 0.0.0.0: got %v, want ErrInvalid", err)
	}

	// An agent restart: the new driver leaves the waiting QEMU be.
	dB.Close()
	dB = newHostDriver(t, dirB)
	again, err := dB.Get(ctx, spec.ID)
	if err != nil || again.State != hypervisor.InstancePaused || again.PID != in.PID || again.ExitReason != IncomingReason {
		t.Fatalf("after a driver restart: got %+v, %v, want still paused incoming as pid %d", again, err, in.PID)
	}
	if ep2, err := dB.PrepareIncoming(ctx, spec, "127.0.0.1:0"); err != nil || ep2 != ep {
		t.Errorf("PrepareIncoming after a driver restart: got %+v, %v, want %+v", ep2, err, ep)
	}

	// Stop ends the waiting QEMU at once; Start then refuses the partial
	// disk; a new preparation makes it again.
	t0 := time.Now()
	if err := dB.Stop(ctx, spec.ID, time.Minute); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(t0); took > 5*time.Second {
		t.Errorf("Stop of an incoming instance took %s", took)
	}
	st, err := dB.Get(ctx, spec.ID)
	if err != nil || st.State != hypervisor.InstanceStopped || !strings.HasPrefix(st.ExitReason, "incoming migration") {
		t.Errorf("after Stop: got %+v, %v, want stopped, the incoming migration said", st, err)
	}
	if _, err := dB.Start(ctx, spec); !errors.Is(err, hypervisor.ErrIncoming) {
		t.Errorf("Start of a stopped incoming instance: got %v, want ErrIncoming", err)
	}
	if _, err := dB.Portable(ctx, spec.ID); !errors.Is(err, hypervisor.ErrIncoming) {
		t.Errorf("Portable of a stopped incoming instance: got %v, want ErrIncoming", err)
	}
	if _, err := dB.FinishIncoming(ctx, spec.ID); err == nil {
		t.Error("FinishIncoming of a stopped incoming instance: got nil, want an error")
	}
	ep3, err := dB.PrepareIncoming(ctx, spec, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	in3, err := dB.Get(ctx, spec.ID)
	if err != nil || in3.State != hypervisor.InstancePaused || in3.PID == in.PID {
		t.Errorf("prepared again: got %+v, %v, want paused with a new process", in3, err)
	}
	t.Logf("prepared again: %+v", ep3)

	t0 = time.Now()
	if err := dB.Delete(ctx, spec.ID); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(t0); took > 5*time.Second {
		t.Errorf("Delete of an incoming instance took %s", took)
	}
	if _, err := os.Stat(filepath.Join(dirB, spec.ID)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("instance directory after Delete: %v", err)
	}
	if _, err := dB.cg.Load(dB.opts.CgroupParent, spec.ID); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("cgroup after Delete: got %v, want it gone", err)
	}
}

func containsInt(xs []int, x int) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}

// TestLiveMigration moves a 256 MiB guest that counts on its console and
// writes its count to its disk: the downtime is reported, the count goes
// on at the destination from where it was (no reboot), and what the guest
// wrote before the move is on the destination's disk.
func TestLiveMigration(t *testing.T) {
	requireHost(t)
	img := localImage(guesttest.Image(t))
	dirA, _, dA, dB := hostPair(t)
	ctx := hypervisortest.Context(t)
	spec := hypervisortest.Spec("mig-tick", img)
	spec.Context = &model.Context{UserData: tickScript}
	if _, err := dA.Start(ctx, spec); err != nil {
		t.Fatal(err)
	}
	before := hypervisortest.WaitGuest(t, dA, spec.ID)
	boot := execOut(t, dA, spec.ID, "cat", "/proc/sys/kernel/random/boot_id")
	execOut(t, dA, spec.ID, "sh", "-c", "echo written-at-the-source > /root/mig-probe && sync")
	waitTicks(t, dA, spec.ID, 3, hypervisortest.GuestTimeout)

	ep, err := dB.PrepareIncoming(ctx, spec, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dest, err := dB.Get(ctx, spec.ID)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var reps []hypervisor.MigrationProgress
	res, err := dA.MigrateOut(ctx, spec.ID, ep, hypervisor.MigrateOptions{}, func(p hypervisor.MigrationProgress) {
		mu.Lock()
		reps = append(reps, p)
		mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("migrated: total %s, downtime %s, memory %.1f MiB, disk %.1f MiB", res.Total.Round(time.Millisecond), res.Downtime,
		float64(res.MemoryBytes)/(1<<20), float64(res.DiskBytes)/(1<<20))
	if res.Downtime <= 0 || res.Downtime > res.Total || res.MemoryBytes <= 0 || res.DiskBytes <= 0 {
		t.Errorf("result: got %+v, want a downtime within the total, memory and disk sent", res)
	}
	t.Logf("progress: %+v", reps)
	var sawDisk, sawMemory bool
	for _, p := range reps {
		switch p.Phase {
		case "disk":
			sawDisk = true
		case "memory":
			sawMemory = true
			if p.MemoryTotal < int64(spec.Quantum.Memory) {
				t.Errorf("memory progress: total %d, want at least the guest's %d", p.MemoryTotal, spec.Quantum.Memory)
			}
		}
	}
	if !sawDisk || !sawMemory {
		t.Errorf("progress: got %+v, want disk and memory phases", reps)
	}
	lastA := ticks(t, dA, spec.ID)

	// The source: no process, no cgroup, files until Delete.
	src, err := dA.Get(ctx, spec.ID)
	if err != nil || src.State != hypervisor.InstanceStopped || src.ExitReason != "migrated to "+ep.Memory {
		t.Errorf("source: got %+v, %v, want stopped, migrated to %s", src, err, ep.Memory)
	}
	if !waitGone(before.PID, marker(dA.paths(spec.ID)), time.Second, nil) {
		t.Errorf("source qemu %d still runs", before.PID)
	}
	if _, err := dA.cg.Load(dA.opts.CgroupParent, spec.ID); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("source cgroup: got %v, want it gone", err)
	}
	if _, err := os.Stat(dA.paths(spec.ID).Disk); err != nil {
		t.Errorf("source disk before Delete: %v", err)
	}

	in, err := dB.FinishIncoming(ctx, spec.ID)
	if err != nil {
		t.Fatal(err)
	}
	if in.State != hypervisor.InstanceRunning || in.PID != dest.PID || in.ExitReason != "" {
		t.Errorf("FinishIncoming: got %+v, want running as pid %d", in, dest.PID)
	}
	after := hypervisortest.WaitGuest(t, dB, spec.ID)
	if after.Guest.UptimeS <= before.Guest.UptimeS {
		t.Errorf("uptime: %.2fs at the destination, %.2fs before: did it reboot?", after.Guest.UptimeS, before.Guest.UptimeS)
	}
	if b := execOut(t, dB, spec.ID, "cat", "/proc/sys/kernel/random/boot_id"); b != boot {
		t.Errorf("boot id: got %q at the destination, %q before", b, boot)
	}
	if got := strings.TrimSpace(execOut(t, dB, spec.ID, "cat", "/root/mig-probe")); got != "written-at-the-source" {
		t.Errorf("the destination's disk has %q, want what the guest wrote at the source", got)
	}
	// The count goes on from where the source left it.
	onB := waitTicks(t, dB, spec.ID, 2, 30*time.Second)
	if len(lastA) == 0 || onB[0] <= lastA[len(lastA)-1] || onB[0] > lastA[len(lastA)-1]+2 {
		t.Errorf("ticks: the source ended at %v, the destination began at %v: want the next ones", lastA[max(0, len(lastA)-3):], onB[:min(3, len(onB))])
	}
	n, err := strconv.Atoi(strings.TrimSpace(execOut(t, dB, spec.ID, "cat", "/root/ticks")))
	if err != nil || n < onB[0] {
		t.Errorf("/root/ticks at the destination: got %d, %v, want at least %d", n, err, onB[0])
	}

	if err := dA.Delete(ctx, spec.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dirA, spec.ID)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("source directory after Delete: %v", err)
	}
	if err := dB.Delete(ctx, spec.ID); err != nil {
		t.Fatal(err)
	}
}

// TestMigrateRecover has a driver die in the middle of a migration (its
// goroutine held at a point, the driver closed, a new one made on its
// directory): paused before the switch, the migration is undone and the
// guest runs on at the source; once it completed, the source is ended and
// the guest runs at the destination.
func TestMigrateRecover(t *testing.T) {
	requireHost(t)
	img := localImage(guesttest.Image(t))
	dirA, _, dA, dB := hostPair(t)
	ctx := hypervisortest.Context(t)
	spec := hypervisortest.Spec("mig-recover", img)
	if _, err := dA.Start(ctx, spec); err != nil {
		t.Fatal(err)
	}
	before := hypervisortest.WaitGuest(t, dA, spec.ID)

	// die runs MigrateOut on d until it reaches point, and then closes d,
	// as an agent killed there. release lets the old call go on (it then
	// fails, its driver closed).
	die := func(d *Driver, ep hypervisor.MigrationEndpoint, point string) (release func()) {
		t.Helper()
		reached, hold := make(chan struct{}), make(chan struct{})
		var once, released sync.Once
		crashPoint = func(name string) {
			if name == point {
				once.Do(func() { close(reached) })
				<-hold
			}
		}
		done := make(chan struct{})
		release = func() {
			released.Do(func() {
				crashPoint = nil
				close(hold)
				<-done
			})
		}
		// Should the test stop early: the held call goes on and its
		// driver lets go of QEMU's QMP socket, so that the cleanup's
		// driver can delete the instances.
		t.Cleanup(func() { d.Close(); release() })
		go func() {
			defer close(done)
			_, err := d.MigrateOut(ctx, spec.ID, ep, hypervisor.MigrateOptions{}, nil)
			t.Logf("the dead driver's MigrateOut returned: %v", err)
		}()
		select {
		case <-reached:
		case <-done:
			t.Fatalf("MigrateOut ended before %s", point)
		case <-time.After(2 * time.Minute):
			t.Fatalf("MigrateOut did not reach %s", point)
		}
		d.Close()
		return release
	}

	// Paused before the switch, the mirror running: undone.
	ep, err := dB.PrepareIncoming(ctx, spec, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	release := die(dA, ep, "migrate-switchover")
	dA = newHostDriver(t, dirA)
	release()
	in, err := dA.Get(ctx, spec.ID)
	if err != nil || in.State != hypervisor.InstanceRunning || in.PID != before.PID {
		t.Fatalf("after a driver died before the switch: got %+v, %v, want running on as pid %d", in, err, before.PID)
	}
	if _, err := os.Stat(dA.paths(spec.ID).Intent); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("intent after recovery: %v", err)
	}
	execOut(t, dA, spec.ID, "sh", "-c", "echo still-here > /root/mig-probe && sync")
	v := dA.watchPID(spec.ID, dA.paths(spec.ID), before.PID)
	c, err := v.qmpClient(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := queryJob(ctx, c); !errors.Is(err, errNoJob) {
		t.Errorf("mirror job after recovery: got %v, want none", err)
	}
	if err := dB.Delete(ctx, spec.ID); err != nil {
		t.Fatal(err)
	}

	// Completed: the source is ended, the guest runs at the destination.
	ep, err = dB.PrepareIncoming(ctx, spec, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	release = die(dA, ep, "migrate-completed")
	dA = newHostDriver(t, dirA)
	release()
	src, err := dA.Get(ctx, spec.ID)
	if err != nil || src.State != hypervisor.InstanceStopped || !strings.HasPrefix(src.ExitReason, "migrated to") {
		t.Errorf("after a driver died once the migration completed: got %+v, %v, want stopped, migrated", src, err)
	}
	if _, err := dB.FinishIncoming(ctx, spec.ID); err != nil {
		t.Fatal(err)
	}
	hypervisortest.WaitGuest(t, dB, spec.ID)
	if got := strings.TrimSpace(execOut(t, dB, spec.ID, "cat", "/root/mig-probe")); got != "still-here" {
		t.Errorf("the destination's disk has %q, want %q", got, "still-here")
	}
}

// TestMigrateMode: a mode asked for is kept; without one a guest under
// KVM migrates live and one under TCG paused.
func TestMigrateMode(t *testing.T) {
	for _, tt := range []struct {
		mode  hypervisor.MigrateMode
		accel string
		want  hypervisor.MigrateMode
	}{
		{"", AccelKVM, hypervisor.MigrateLive},
		{"", AccelTCG, hypervisor.MigratePaused},
		{"", "", hypervisor.MigratePaused},
		{hypervisor.MigrateLive, AccelTCG, hypervisor.MigrateLive},
		{hypervisor.MigratePaused, AccelKVM, hypervisor.MigratePaused},
	} {
		if got := migrateMode(tt.mode, tt.accel); got != tt.want {
			t.Errorf("migrateMode(%q, %q) = %q, want %q", tt.mode, tt.accel, got, tt.want)
		}
	}
}
