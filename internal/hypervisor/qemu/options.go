package qemu

import (
	"fmt"
	"log/slog"
	"path/filepath"

	"vgrid/internal/cgroup"
	"vgrid/internal/model"
)

// Options configure a Driver. Only StateDir is required.
type Options struct {
	// StateDir holds one directory per instance, StateDir/<id>. A new
	// Driver on the same StateDir adopts the instances found there.
	StateDir string
	// RunDir holds socket directories for instances whose StateDir path is
	// too long for a unix socket address. Default /run/vgrid.
	RunDir string
	// QEMUPath is qemu-system-x86_64, looked up in PATH by default. The
	// driver writes the qcow2 overlay (qcow2.go) and the seed ISO
	// (iso9660.go) itself; the one other program it runs is qemu-img
	// (beside QEMUPath, else in PATH), to grow the disk of a stopped
	// instance (resize.go).
	QEMUPath string
	// Accel is "auto" (default: DetectAccel), "kvm" or "tcg". A spec's
	// own Accel overrides it.
	Accel string
	// CgroupParent is the cgroup under which instance groups are made.
	// Default "vgrid".
	CgroupParent string
	// Cgroups is the cgroup layout; default cgroup.Detect().
	Cgroups *cgroup.Hierarchy
	// Logger; default slog.Default().
	Logger *slog.Logger
	// MemoryOverhead is added to a quantum's memory to get the cgroup
	// memory limit, so that QEMU's own memory does not eat into the
	// guest's. Default DefaultMemoryOverhead.
	MemoryOverhead func(accel string, q model.Quantum) model.ByteSize
}

// DefaultMemoryOverhead is what QEMU needs beyond guest RAM:
//
//	TCG: 128 MiB + TBSizeMiB (64 MiB) = 192 MiB
//	KVM:  64 MiB
//
// Measured on this project's host (QEMU 7.2, -M microvm, -accel
// tcg,tb-size=64, the cloud kernel as PVH vmlinux): an idle guest's QEMU
// has a VmRSS of 202, 204 and 214 MiB at -m 256, 512 and 1024; of that,
// about 80 MiB is guest RAM the guest touched, up to the tb-size is the
// translation cache, about 50 MiB the mapped vmlinux (page cache, charged
// to whichever cgroup read it first) and about 20 MiB QEMU's own heap and
// device state. A 256 MiB guest that filled its RAM peaked at 349 MiB in
// its cgroup: RAM + 93 MiB (TestMemoryOverheadHolds). 128 MiB + the cache
// bound leaves about 100 MiB of headroom over that. KVM has no translation
// cache; 64 MiB is the usual figure there (not measured: no usable KVM).
func DefaultMemoryOverhead(accel string, _ model.Quantum) model.ByteSize {
	if accel == AccelKVM {
		return 64 * model.MiB
	}
	return 128*model.MiB + TBSizeMiB*model.MiB
}

// Defaults.
const (
	DefaultRunDir       = "/run/vgrid"
	DefaultCgroupParent = cgroup.DefaultParent
)

func (o *Options) fill() error {
	if o.StateDir == "" {
		return fmt.Errorf("no state directory")
	}
	abs, err := filepath.Abs(o.StateDir)
	if err != nil {
		return err
	}
	o.StateDir = abs
	if o.RunDir == "" {
		o.RunDir = DefaultRunDir
	}
	if o.QEMUPath == "" {
		o.QEMUPath = "qemu-system-x86_64"
	}
	switch o.Accel {
	case "":
		o.Accel = "auto"
	case "auto", AccelKVM, AccelTCG:
	default:
		return fmt.Errorf("accel %q: want auto, kvm or tcg", o.Accel)
	}
	if o.CgroupParent == "" {
		o.CgroupParent = DefaultCgroupParent
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.MemoryOverhead == nil {
		o.MemoryOverhead = DefaultMemoryOverhead
	}
	return nil
}
