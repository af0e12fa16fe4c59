// Package qemu is the hypervisor.Driver that runs each workspace as a QEMU
// process, controlled over QMP, talking to the in-guest agent over a
// virtio-serial port, with its quantum enforced by a cgroup.
//
// Files. An instance lives in StateDir/<id>/: spec.json (the spec it was
// last started with), state.json (accelerator, StartedAt, and when and why
// the last run stopped), disk.qcow2 (an overlay on the image's disk, kept
// across stops), cidata.iso (the NoCloud seed, rewritten on every start;
// both written by the driver itself, qcow2.go and iso9660.go, without
// spawning qemu-img or genisoimage),
// console.log (serial console), qemu.pid, qemu.log (QEMU's stderr, also after it
// daemonizes: -D), and the sockets qmp.sock and agent.sock. When those socket
// paths would exceed the 107 bytes a unix socket address holds, the sockets
// go to RunDir/<16 hex digits of sha256(instance dir)> instead (derived
// again by any later Driver; StateDir/<id>/run links to it for people).
//
// Processes. QEMU is started by /bin/sh running a fixed script that writes
// its own PID into every cgroup.procs file of the instance's group and
// execs QEMU (paths are arguments, never script text), so QEMU is charged
// for its memory from the start. A resume is the exception: QEMU starts
// outside its group and joins it while it loads its saved state (a cgroup
// v1 attach waits for an RCU grace period, which would otherwise delay
// everything after it), with a CPU cap of a core per vCPU and one more;
// the quantum's cap is set and the join awaited before cont. QEMU runs with -daemonize in a session of
// its own: it is not the agent's child, and survives the agent, even kill
// -9. An instance runs when qemu.pid names a live, non-zombie process whose
// command line contains the instance directory (which guards against PID
// reuse). A new Driver on the same StateDir adopts running instances: it
// reconnects QMP and the agent channel and asks the guest for its facts;
// instances whose process died meanwhile get "qemu exited while no driver
// was watching" (or the OOM killer, if their cgroup counted a kill).
//
// Identity. Every QEMU carries -name guest=vgrid:<8 hex digits of
// sha256(StateDir)>:<id> (process name vgrid-<id>), so the driver finds its
// processes in /proc by their command lines alone, apart from those of
// other agents' StateDirs (proc.go). A process of an ID whose directory is
// gone (an orphan) is listed by List, not found by Get, killed by Delete,
// and killed by Start before it starts the instance afresh: Start never
// runs a second QEMU for an ID. An orphan is not adopted: its disk is an
// unlinked file and its pidfile and sockets are gone.
//
// Acceleration. KVM is used only with a hardware KVM module and vmx/svm
// (see DetectAccel); otherwise TCG, with a warning naming the reason, and
// direct-boot guests get tsc_early_khz=<host TSC> on their kernel command
// line (without it their TSC calibration sometimes hangs under TCG) and
// tsc=reliable (without it a guest starved of CPU drops the TSC for
// jiffies and its clock runs slow; see KernelCmdline).
// Firmware-boot guests (q35, SeaBIOS) cannot be given it.
//
// Memory. The cgroup memory limit is quantum memory + overhead, with
// DefaultMemoryOverhead = 128 MiB + the TCG translation cache (-accel
// tcg,tb-size=64, so 192 MiB) under TCG, 64 MiB under KVM. See
// DefaultMemoryOverhead for the measurements behind it.
//
// CPU. The cgroup CPU cap is quantum.CPUCores() cores (CFS quota over a
// 100 ms period); -smp is quantum.VCPUs.
//
// Resize (resize.go). The guest's RAM (-m) is the spec's MaxMemory, or its
// quantum's memory when that is more, and every guest has a virtio
// balloon (id "balloon"), whose target is set to the quantum's memory
// right after QMP answers at start: the guest's balloon driver takes the
// rest early in its boot, and its MemTotal shows the quantum. Resize moves
// the running guest within that RAM: it first checks everything (vCPUs
// stay as started, since neither microvm nor q35 here hotplug CPUs; memory
// at most the RAM; the disk never smaller; the memory the guest would give
// back must leave it an eighth of its new size, at least 32 MiB,
// available, by the balloon driver's statistics, or its kernel would be
// starved into a panic), each refusal an ErrNotInPlace that changes
// nothing. Then memory given back first (balloon target down, wait until
// the guest reached it, else the target is set back and Resize fails
// having changed nothing), then the cgroup (CPU cap; memory limit for the
// new memory: lowered only now that the guest holds no more, raised
// before a grow: a limit below what the guest holds would have the kernel
// OOM-kill QEMU), the I/O caps (QMP block_set_io_throttle on the root
// drive), memory given (target up), and the disk last (QMP block_resize of
// the root drive, then the guest agent, run through Exec with -growfs,
// waits until the guest's kernel sees the new capacity and grows ext4
// online; a guest without the vgrid agent grows it at its next boot).
// spec.json records what was applied, and MaxMemory becomes the RAM the
// process has, so that memory given back can be given again after an
// agent restart. A resume loads the saved guest into the RAM it was saved
// with, whatever MaxMemory the caller passes (the balloon's state travels
// in the saved state). A stopped instance takes any quantum but a smaller
// disk (recorded in spec.json; a larger disk is grown with qemu-img
// resize, the filesystem at the guest's next boot); a suspended one only
// new CPU and I/O caps.
//
// Network. Without NICs the guest has one user-mode interface (NAT by
// QEMU, outbound only). With NICs (InstanceSpec.NICs), one virtio-net
// interface per NIC, in order, each on its tap (-netdev tap,ifname=<tap>,
// script=no,downscript=no), and no user-mode interface. The taps are the
// caller's (the host agent makes them persistent, internal/overlay) and
// must exist in the network namespace QEMU is started from: it opens them
// by name, in the namespace of the thread that calls Start. The seed
// carries network-config (NoCloud version 2: per interface, matched by
// MAC, its name ethN, addresses and gateway), which the guest agent (or
// cloud-init) applies. NICs are part of spec.json; a resume needs the same
// MACs, addresses and gateways (the taps may differ), see sameNICs.
//
// Suspend. Suspend saves the stopped guest with QEMU's migration into
// StateDir/<id>/memory.state (through a file descriptor passed over QMP)
// and ends the process; state.json records it once the process is gone.
// Start resumes it: the same command line plus -incoming defer, the file
// loaded, cont, the file deleted. See suspend.go. Both write an intent
// (intent.json) first, so that a driver taking over from one that died
// midway undoes or finishes the operation and removes partial files;
// a guest found paused with no operation under way is continued (intent.go).
//
// Moving. Portable lists the files of a stopped or suspended instance
// that another host needs; Adopt takes them in, rebases the disk onto
// this host's copy of the image (in Go, qcow2.go) and makes the instance
// appear whole (move.go).
//
// Live migration. PrepareIncoming makes an instance whose QEMU (same argv,
// plus -incoming defer, inside its cgroup from the start) serves an empty
// overlay writable over NBD and waits for the migration stream; the mark
// incoming.json holds the endpoint, so that Get and List show it paused
// with ExitReason "incoming", Start, Suspend, Exec and Portable refuse it
// (ErrIncoming), Stop and Delete end its QEMU at once, and a new driver
// leaves it waiting. MigrateOut mirrors the source's overlay into that
// export (blockdev-mirror sync top, copy-mode write-blocking) until it is
// in step, then migrates memory with return-path, auto-converge and
// pause-before-switchover: paused, the source ends the mirror (the target
// then holds every write) and lets the migration finish; the source QEMU
// then quits, its files stay until Delete. Any failure or cancellation
// undoes it all and continues the guest at the source; an intent lets a
// later driver do the same, or end the source if QEMU says it completed.
// FinishIncoming removes the export and the mark. See migrate.go for the
// choices and their measurements.
package qemu
