package benchkit

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"vgrid/internal/hypervisor"
	"vgrid/internal/hypervisor/qemu"
)

// Handover is a guest that a QEMU driver booted (its disk overlay, seed
// and command line are the driver's) and then left to the harness, which
// drives it by hand as bare QEMU.
type Handover struct {
	// Spec is the instance the driver started.
	Spec hypervisor.InstanceSpec
	// Paths are the driver's files of the instance.
	Paths qemu.Paths
	// Accel is the accelerator the driver chose ("kvm" or "tcg").
	Accel string
	// PID is the QEMU process the driver started.
	PID int
	// QEMU is the path of qemu-system-x86_64.
	QEMU string
	// TSCkHz is the host's TSC frequency the driver gives a TCG guest (0
	// when unknown under KVM, which does not need it).
	TSCkHz int64

	newDriver func() (*qemu.Driver, error)
}

// HandOver starts spec with a driver from newDriver, waits until its guest
// agent answers, and closes the driver, which frees QEMU's one QMP
// connection for the harness. If anything fails after the start, the
// instance is deleted. Remove deletes the driver's files at the end.
func HandOver(ctx context.Context, newDriver func() (*qemu.Driver, error), spec hypervisor.InstanceSpec) (*Handover, error) {
	qemuPath, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		return nil, err
	}
	d, err := newDriver()
	if err != nil {
		return nil, err
	}
	defer d.Close()
	h, err := handOver(ctx, d, spec)
	if err != nil {
		// Delete is idempotent: nothing to do if the start failed early.
		err = errors.Join(err, d.Delete(context.Background(), spec.ID))
		return nil, err
	}
	h.QEMU, h.newDriver = qemuPath, newDriver
	return h, nil
}

func handOver(ctx context.Context, d *qemu.Driver, spec hypervisor.InstanceSpec) (*Handover, error) {
	if _, err := d.Start(ctx, spec); err != nil {
		return nil, err
	}
	if err := WaitGuest(ctx, d, spec.ID); err != nil {
		return nil, err
	}
	in, err := d.Get(ctx, spec.ID)
	if err != nil {
		return nil, err
	}
	h := &Handover{Spec: spec, Paths: d.Paths(spec.ID), Accel: in.Accel, PID: in.PID}
	if h.TSCkHz, err = qemu.TSCkHz(); err != nil && h.Accel == qemu.AccelTCG {
		return nil, err
	}
	return h, nil
}

// Command returns the QEMU command of the driver's command line
// (qemu.Argv) for the guest on paths p, with extra arguments after it, to
// run in p.Dir.
func (h *Handover) Command(p qemu.Paths, extra ...string) *exec.Cmd {
	cmd := exec.Command(h.QEMU, append(qemu.Argv(h.Spec, p, h.Accel, h.TSCkHz), extra...)...)
	cmd.Dir = p.Dir
	return cmd
}

// Remove deletes what the driver made for the guest, through a new driver
// on the same state directory. The harness ends its QEMU processes first.
func (h *Handover) Remove() error {
	d, err := h.newDriver()
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Delete(context.Background(), h.Spec.ID)
}

// RunQEMU runs cmd, a QEMU that daemonizes, until its first process has
// exited (QEMU then runs in the background), with QEMU's output in the
// error.
func RunQEMU(cmd *exec.Cmd) error {
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("qemu: %w: %s", err, out)
	}
	return nil
}

// RemoveRuntimeFiles removes the pid file and sockets of p, left by a QEMU
// that ended, before another starts on them.
func RemoveRuntimeFiles(p qemu.Paths) {
	for _, s := range []string{p.PIDFile, p.QMP, p.Agent} {
		os.Remove(s)
	}
}

// ReadPID returns the pid in the pid file path.
func ReadPID(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 0, fmt.Errorf("pid file %s: %w", path, err)
	}
	return pid, nil
}

// QEMUAlive reports whether pid is a live QEMU (not a zombie) whose
// command line contains mark.
func QEMUAlive(pid int, mark string) bool {
	if pid <= 0 {
		return false
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	if err != nil || len(b) == 0 { // gone, or a zombie
		return false
	}
	s := string(b)
	return strings.Contains(s, "qemu") && strings.Contains(s, mark)
}

// WaitPidfd waits until the process of pidfd has exited, at most timeout.
func WaitPidfd(pidfd int, timeout time.Duration) error {
	fds := []unix.PollFd{{Fd: int32(pidfd), Events: unix.POLLIN}}
	for {
		n, err := unix.Poll(fds, int(timeout.Milliseconds()))
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return err
		}
		if n == 0 {
			return errors.New("qemu did not exit")
		}
		return nil
	}
}
