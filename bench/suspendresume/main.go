// Command suspendresume measures the QEMU driver's suspend and resume
// against the bare mechanism they are made of, on small guests of the test
// image (built and cached the way the qemu package's tests build it,
// internal/guest/guesttest).
//
// Two guests of the same spec run side by side: one driven by the driver
// (Suspend, then Start, which resumes it), the other by hand with the
// same QMP commands and the tightest waits: for the save, stop,
// migrate-set-parameters (bandwidth), getfd and migrate "fd:" into a file,
// the MIGRATION event "completed", quit, and the process's end (pidfd);
// for the restore, QEMU started with the driver's own argv (qemu.Argv,
// -daemonize) plus -incoming defer, getfd, migrate-incoming "fd:", the
// MIGRATION event "completed", cont. The two alternate, K times each, in
// one run, and the harness prints min/median/max of each and the ratios.
//
//	go run ./bench/suspendresume -k 10
//
// It needs root (cgroups), qemu-system-x86_64 and the guest kernel, like
// the driver's tests.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"vgrid/bench/internal/benchkit"
	"vgrid/internal/hypervisor"
	"vgrid/internal/hypervisor/qemu"
	"vgrid/internal/model"
)

func main() {
	k := flag.Int("k", 10, "suspend+resume cycles of each kind")
	mem := flag.String("memory", "128Mi", "guest memory")
	settle := flag.Duration("settle", time.Second, "how long a guest runs between a resume and the next suspend")
	dir := flag.String("dir", "", "state directory (default: a new temporary directory, removed at the end)")
	verbose := flag.Bool("v", false, "print the driver's log")
	flag.Parse()
	if err := run(*k, *mem, *settle, *dir, *verbose); err != nil {
		fmt.Fprintln(os.Stderr, "suspendresume:", err)
		os.Exit(1)
	}
}

func run(k int, memory string, settle time.Duration, dir string, verbose bool) (err error) {
	mem, err := model.ParseByteSize(memory)
	if err != nil {
		return fmt.Errorf("-memory: %w", err)
	}
	dir, cleanup, err := benchkit.WorkDir(dir, "", "vgrid-suspendresume-")
	if err != nil {
		return err
	}
	defer cleanup()
	img, err := benchkit.GuestImage()
	if err != nil {
		return err
	}
	logger := benchkit.Logger(verbose)
	newDriver := func(sub string) (*qemu.Driver, error) {
		return qemu.New(qemu.Options{StateDir: filepath.Join(dir, sub), CgroupParent: "vgrid-bench", Logger: logger})
	}
	drv, err := newDriver("driver")
	if err != nil {
		return err
	}
	defer drv.Close()
	ctx := context.Background()
	spec := func(id string) hypervisor.InstanceSpec {
		return hypervisor.InstanceSpec{ID: id, Hostname: id, Quantum: model.Quantum{VCPUs: 1, Memory: mem}, Image: img}
	}
	ds, bs := spec("sr-driver"), spec("sr-bare")
	// Both guests are booted by a driver (same disk overlay, seed and
	// argv); the bare one is then left to this program.
	if _, err := drv.Start(ctx, ds); err != nil {
		return err
	}
	defer func() {
		if derr := drv.Delete(context.Background(), ds.ID); derr != nil && err == nil {
			err = derr
		}
	}()
	handover, err := benchkit.HandOver(ctx, func() (*qemu.Driver, error) { return newDriver("bare") }, bs)
	if err != nil {
		return err
	}
	bare := &bareVM{h: handover, p: handover.Paths, pid: handover.PID, verbose: verbose}
	defer func() {
		bare.kill()
		_ = handover.Remove()
	}()
	if err := benchkit.WaitGuest(ctx, drv, ds.ID); err != nil {
		return err
	}

	fmt.Printf("guest: 1 vcpu, %s, accel %s; %d cycles of each, alternating; %s between a resume and the next suspend\n",
		mem, handover.Accel, k, settle)
	var dSus, dRes, bSus, bRes []time.Duration
	var dBytes, bBytes []int64
	time.Sleep(settle)
	for i := 0; i < k; i++ {
		// The driver: Suspend, then Start (a resume).
		t0 := time.Now()
		res, err := drv.Suspend(ctx, ds.ID)
		if err != nil {
			return fmt.Errorf("driver suspend: %w", err)
		}
		sus := time.Since(t0)
		t1 := time.Now()
		if _, err := drv.Start(ctx, ds); err != nil {
			return fmt.Errorf("driver resume: %w", err)
		}
		resu := time.Since(t1)
		dSus, dRes, dBytes = append(dSus, sus), append(dRes, resu), append(dBytes, res.Bytes)
		time.Sleep(settle)

		// By hand.
		bsus, n, err := bare.suspend(ctx)
		if err != nil {
			return fmt.Errorf("bare suspend: %w", err)
		}
		bres, err := bare.resume(ctx)
		if err != nil {
			return fmt.Errorf("bare resume: %w", err)
		}
		bSus, bRes, bBytes = append(bSus, bsus), append(bRes, bres), append(bBytes, n)
		fmt.Printf("cycle %2d: driver suspend %7s resume %7s (%.1f MiB) | bare suspend %7s resume %7s (%.1f MiB)\n", i+1,
			benchkit.MS(sus), benchkit.MS(resu), benchkit.MiB(res.Bytes), benchkit.MS(bsus), benchkit.MS(bres), benchkit.MiB(n))
		time.Sleep(settle)
	}
	// The driver's guest must still be the same guest (no reboot).
	if err := benchkit.WaitGuest(ctx, drv, ds.ID); err != nil {
		return err
	}

	fmt.Println()
	fmt.Printf("%-16s %9s %9s %9s %10s\n", "", "min", "median", "max", "state MiB")
	row := func(name string, ds []time.Duration, bs []int64) {
		s := benchkit.Stats(ds)
		fmt.Printf("%-16s %9s %9s %9s %10.1f\n", name, benchkit.MS(s[0]), benchkit.MS(s[1]), benchkit.MS(s[2]), benchkit.MiB(benchkit.Median64(bs)))
	}
	row("driver suspend", dSus, dBytes)
	row("bare suspend", bSus, bBytes)
	row("driver resume", dRes, dBytes)
	row("bare resume", bRes, bBytes)
	ratio := func(a, b []time.Duration) string {
		sa, sb := benchkit.Stats(a), benchkit.Stats(b)
		return fmt.Sprintf("%.2fx (median), %.2fx (min)", sa[1].Seconds()/sb[1].Seconds(), sa[0].Seconds()/sb[0].Seconds())
	}
	fmt.Printf("\nsuspend: driver/bare %s\nresume:  driver/bare %s\n", ratio(dSus, bSus), ratio(dRes, bRes))
	return nil
}

// bareVM is a guest driven by hand.
type bareVM struct {
	h       *benchkit.Handover
	p       qemu.Paths // h.Paths
	pid     int
	qmp     *benchkit.QMP
	verbose bool
}

// migrationTimeout bounds a save or a restore.
const migrationTimeout = time.Minute

func (b *bareVM) statePath() string { return filepath.Join(b.p.Dir, "bare.state") }

// suspend saves the guest into a file and ends its QEMU.
func (b *bareVM) suspend(ctx context.Context) (time.Duration, int64, error) {
	f, err := os.OpenFile(b.statePath(), os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	pidfd, err := unix.PidfdOpen(b.pid, 0)
	if err != nil {
		return 0, 0, err
	}
	defer unix.Close(pidfd)
	t0 := time.Now()
	if b.qmp == nil {
		// The first time: the driver's connection was just closed.
		if b.qmp, err = benchkit.DialQMP(b.p.QMP); err != nil {
			return 0, 0, err
		}
	}
	c := b.qmp
	err = c.EnableMigrationEvents()
	if err == nil {
		err = c.Run("stop", nil)
	}
	if err == nil {
		err = c.Run("migrate-set-parameters", map[string]any{"max-bandwidth": int64(64 << 30)})
	}
	if err == nil {
		err = c.RunFD("getfd", map[string]any{"fdname": "bare"}, int(f.Fd()))
	}
	if err == nil {
		err = c.Run("migrate", map[string]any{"uri": "fd:bare"})
	}
	if err == nil {
		err = c.WaitMigration(ctx, migrationTimeout)
	}
	if err == nil {
		_ = c.Run("quit", nil) // the reply may be lost as QEMU exits
		err = benchkit.WaitPidfd(pidfd, 10*time.Second)
	}
	took := time.Since(t0)
	c.Close()
	b.qmp = nil
	if err != nil {
		return 0, 0, err
	}
	fi, err := f.Stat()
	if err != nil {
		return 0, 0, err
	}
	return took, fi.Size(), nil
}

// resume starts QEMU on the saved state and continues the guest.
func (b *bareVM) resume(ctx context.Context) (time.Duration, error) {
	f, err := os.Open(b.statePath())
	if err != nil {
		return 0, err
	}
	defer f.Close()
	benchkit.RemoveRuntimeFiles(b.p)
	cmd := b.h.Command(b.p, "-incoming", "defer")
	t0 := time.Now()
	if err := benchkit.RunQEMU(cmd); err != nil {
		return 0, err
	}
	launched := time.Now()
	if b.pid, err = benchkit.ReadPID(b.p.PIDFile); err != nil {
		return 0, err
	}
	c, err := benchkit.DialQMP(b.p.QMP)
	if err != nil {
		return 0, err
	}
	b.qmp = c
	err = c.EnableMigrationEvents()
	if err == nil {
		err = c.RunFD("getfd", map[string]any{"fdname": "bare"}, int(f.Fd()))
	}
	if err == nil {
		err = c.Run("migrate-incoming", map[string]any{"uri": "fd:bare"})
	}
	if err == nil {
		err = c.WaitMigration(ctx, migrationTimeout)
	}
	if err == nil {
		err = c.Run("cont", nil)
	}
	took := time.Since(t0)
	if err != nil {
		return 0, err
	}
	if b.verbose {
		fmt.Fprintf(os.Stderr, "bare resume: qemu daemonized after %s\n", benchkit.MS(launched.Sub(t0)))
	}
	// cont must have run the guest (not merely set autostart).
	st, err := c.Status()
	if err != nil {
		return 0, err
	}
	if st != "running" {
		return 0, fmt.Errorf("after cont the guest is %s", st)
	}
	return took, nil
}

func (b *bareVM) kill() {
	if b.qmp != nil {
		b.qmp.Close()
	}
	if benchkit.QEMUAlive(b.pid, b.p.Dir) {
		syscall.Kill(b.pid, syscall.SIGKILL)
		time.Sleep(100 * time.Millisecond)
	}
}
