package qemu

import (
	"crypto/sha256"
	"fmt"
	"strconv"
	"strings"

	"vgrid/internal/guest/proto"
	"vgrid/internal/hypervisor"
	"vgrid/internal/model"
)

// TBSizeMiB bounds TCG's translation-block cache. QEMU's default (1 GiB)
// would let a guest that runs much distinct code grow QEMU by up to 1 GiB
// beyond its RAM; 64 MiB keeps the memory overhead small and predictable
// at the price of more cache flushes for very large code footprints.
const TBSizeMiB = 64

// Argv returns QEMU's arguments (without the program name) for spec, with
// the instance's files at p, under accel ("kvm" or "tcg"). tscKHz is the
// host TSC frequency, given to direct-boot guests under TCG (0: omit). It
// is a pure function: everything it depends on is in its arguments.
func Argv(spec hypervisor.InstanceSpec, p Paths, accel string, tscKHz int64) []string {
	q := spec.Quantum
	firmware := spec.Image.Boot == "firmware"
	// dev picks the virtio-mmio device (microvm has no PCI bus) or its PCI
	// twin (q35).
	dev := func(mmio, pci string) string {
		if firmware {
			return pci
		}
		return mmio
	}
	var a []string
	add := func(args ...string) { a = append(a, args...) }

	// The VM's name (QMP query-name) says whose it is: vgrid, which
	// StateDir (a hash of it) and which instance, so that the driver finds
	// its processes by their command lines alone (proc.go). The process
	// name (ps, top; at most 15 bytes) is vgrid-<id>.
	add("-name", "guest="+guestName(p)+",process=vgrid-"+spec.ID)
	if firmware {
		// Ordinary cloud images boot from their disk through SeaBIOS; q35
		// is the modern PC with PCIe.
		add("-machine", "q35")
	} else {
		// microvm: no PCI, no legacy firmware; the kernel is loaded
		// directly (PVH entry). The fastest boot measured here (1.26 s).
		add("-machine", "microvm")
	}
	if accel == AccelKVM {
		// The host CPU model passes through the features KVM can offer.
		add("-accel", "kvm", "-cpu", "host")
	} else {
		// Bound the translation cache so QEMU's own memory is bounded
		// (see the package doc for the memory overhead).
		add("-accel", "tcg,tb-size="+strconv.Itoa(TBSizeMiB))
	}
	// RAM is the most the guest may have (MaxMemory); the balloon below
	// holds it down to the quantum's memory (set over QMP at start and by
	// Resize, resize.go).
	add("-smp", strconv.Itoa(q.VCPUs), "-m", strconv.FormatInt(ramSize(spec).MiB(), 10))
	// No default devices, no host config files, no window: everything the
	// guest has is on this command line. A guest reboot ends the process,
	// so that a reboot is seen (and the agent decides what happens next).
	add("-nodefaults", "-no-user-config", "-display", "none", "-no-reboot")
	if !firmware {
		add("-kernel", spec.Image.Kernel)
		if spec.Image.Initrd != "" {
			add("-initrd", spec.Image.Initrd)
		}
		add("-append", KernelCmdline(spec.Image.Cmdline, accel, tscKHz))
	}
	// The serial console goes to a file, read by ConsoleLog.
	add("-chardev", "file,id=con,path="+optPath(p.Console), "-serial", "chardev:con")
	// The control socket; wait=off so QEMU does not wait for a client.
	add("-qmp", "unix:"+optPath(p.QMP)+",server=on,wait=off")
	// The guest agent's channel: a virtio-serial port named vgrid.agent,
	// whose host end is a unix socket server the driver connects to.
	add("-device", dev("virtio-serial-device", "virtio-serial-pci"),
		"-chardev", "socket,id=agent,path="+optPath(p.Agent)+",server=on,wait=off",
		"-device", "virtserialport,chardev=agent,name="+proto.PortName)
	// The root disk (first, so it is /dev/vda): a qcow2 overlay on the image;
	// writeback caching; discard lets guest TRIM shrink the overlay; the
	// quantum's I/O caps are QEMU block throttling.
	drive := "file=" + optPath(p.Disk) + ",format=qcow2,if=none,id=" + rootDrive + ",cache=writeback,discard=unmap"
	if q.DiskIOPS > 0 {
		drive += ",throttling.iops-total=" + strconv.FormatInt(q.DiskIOPS, 10)
	}
	if q.DiskBPS > 0 {
		drive += ",throttling.bps-total=" + strconv.FormatInt(int64(q.DiskBPS), 10)
	}
	add("-drive", drive, "-device", dev("virtio-blk-device,drive=root", "virtio-blk-pci,drive=root,bootindex=0"))
	// The NoCloud seed (label cidata), read-only.
	add("-drive", "file="+optPath(p.Seed)+",format=raw,if=none,id=seed,readonly=on",
		"-device", dev("virtio-blk-device,drive=seed", "virtio-blk-pci,drive=seed"))
	if len(spec.NICs) == 0 {
		// User-mode networking gives outbound access without host setup;
		// the MAC is derived from the ID so that it is stable across
		// restarts.
		add("-netdev", "user,id=n0",
			"-device", dev("virtio-net-device", "virtio-net-pci")+",netdev=n0,mac="+MAC(spec.ID))
	} else {
		// One interface per NIC, in order, on the tap the host agent made
		// (persistent, so QEMU needs no privilege to open it; no helper
		// scripts). No user-mode interface: the guest's traffic goes
		// where its networks take it. vhost is off (QEMU's default): it
		// needs /dev/vhost-net, and gains nothing under TCG. The guest
		// matches its network-config to the interfaces by MAC (seed.go).
		for i, n := range spec.NICs {
			id := "n" + strconv.Itoa(i)
			add("-netdev", "tap,id="+id+",ifname="+n.Tap+",script=no,downscript=no",
				"-device", dev("virtio-net-device", "virtio-net-pci")+",netdev="+id+",mac="+strings.ToLower(n.MAC)+hostMTU(n.MTU))
		}
	}
	// The memory balloon: the guest's driver gives back whatever RAM above
	// the target the driver sets (QMP balloon), and takes it back when the
	// target rises; the guest's MemTotal follows (no deflate-on-oom: memory
	// given back stays given back). Its id names it for qom-get of the
	// guest's memory statistics (resize.go). Last, so that the devices
	// above keep their places.
	add("-device", dev("virtio-balloon-device", "virtio-balloon-pci")+",id="+balloonID)
	// Network volumes, after every other device so that those keep their
	// places with or without volumes (volumeArgs).
	add(volumeArgs(spec.Volumes, dev)...)
	// Detach from the agent: the guest must outlive it. QEMU forks, the
	// parent exits once the VM is set up, and the pidfile names the child.
	add("-pidfile", p.PIDFile, "-daemonize")
	// A daemonized QEMU sends stderr to /dev/null unless it has a log
	// file: keep its runtime errors (I/O errors, "terminating on signal").
	add("-D", p.Log)
	return a
}

// balloonID is the qdev id of the balloon device.
const balloonID = "balloon"

// rootDrive is the block backend (-drive id) of the root disk: the device
// QMP's block_resize and block_set_io_throttle name.
const rootDrive = "root"

// ramSize is the guest's RAM (-m): the spec's MaxMemory, or its quantum's
// memory when that is more. The balloon holds the guest to the quantum.
func ramSize(spec hypervisor.InstanceSpec) model.ByteSize {
	return max(spec.MaxMemory, spec.Quantum.Memory)
}

// KernelCmdline appends, under TCG, tsc_early_khz= (the host's TSC
// frequency) and tsc=reliable to an image's command line; an image's own
// setting of either stays. tsc=reliable keeps the guest's clock on the
// TSC: otherwise the kernel's clocksource watchdog, comparing the TSC with
// timer ticks that a guest starved of CPU loses, finds it "unstable" and
// falls back to jiffies, and the guest's time then runs slow (measured:
// 18 s of uptime over 27.6 s of wall time for a guest capped at a quarter
// core beside other guests), so that its commands' timeouts come late.
// Under TCG the TSC follows the host's clock while the guest runs.
func KernelCmdline(cmdline, accel string, tscKHz int64) string {
	if accel == AccelKVM {
		return cmdline
	}
	if tscKHz > 0 && !hasParam(cmdline, "tsc_early_khz") {
		cmdline += " tsc_early_khz=" + strconv.FormatInt(tscKHz, 10)
	}
	if !hasParam(cmdline, "tsc") {
		cmdline += " tsc=reliable"
	}
	return strings.TrimSpace(cmdline)
}

// hasParam says whether a kernel command line sets parameter name.
func hasParam(cmdline, name string) bool {
	for _, f := range strings.Fields(cmdline) {
		if f == name || strings.HasPrefix(f, name+"=") {
			return true
		}
	}
	return false
}

// MAC returns a stable, locally administered MAC address for an instance.
func MAC(id string) string {
	h := sha256.Sum256([]byte(id))
	return fmt.Sprintf("52:54:00:%02x:%02x:%02x", h[0], h[1], h[2])
}

// optPath escapes a path inside a QEMU option list, where "," separates
// options and ",," is a literal comma.
func optPath(p string) string { return strings.ReplaceAll(p, ",", ",,") }

// hostMTU is the virtio-net device option that tells the guest its MTU
// (VIRTIO_NET_F_MTU), or nothing for the default.
func hostMTU(mtu int) string {
	if mtu <= 0 {
		return ""
	}
	return ",host_mtu=" + strconv.Itoa(mtu)
}

// VolumeReconnectDelay is the NBD client's reconnect-delay for network
// volumes, in seconds: after the connection to the storage daemon breaks
// (it crashed, was restarted, or the network failed for a moment), the
// guest's requests wait this long for QEMU to reconnect (it keeps
// trying, at growing intervals of 1 to 16 s) and then fail with EIO,
// while reconnecting goes on in the background. 30 s covers a daemon
// restarted by its supervisor (a few seconds, the TLS handshake
// included) and the first retries; it is well under the guest kernel's
// 120 s hung-task warning, so that a storage host that stays down shows
// up as I/O errors in the guest rather than as processes stuck in D state
// for minutes.
const VolumeReconnectDelay = 30

// VolumeOpenTimeout is the NBD client's open-timeout in seconds: how long
// QEMU retries the first connection to a volume's server at start, so
// that a guest started while the storage daemon restarts still starts.
// A server still unreachable then fails the start with QEMU's reason.
const VolumeOpenTimeout = 10

// volumeArgs returns the arguments that attach the network volumes: one
// tls-creds-x509 object (endpoint=client) per distinct TLS directory;
// per volume an NBD client node (TLS, reconnect-delay, open-timeout;
// read-only=on for a read-only volume, discard passed through otherwise),
// a throttle group and a throttle node on top of it when the volume's I/O
// is capped, and a virtio-blk device with the volume's serial, by which
// the guest agent finds it. Nodes and devices are named by the volume's
// index (node names are at most 31 bytes): node vol<i> is what the device
// uses, vol<i>-nbd the NBD client under a throttle node, tg<i> the group.
// The same arguments on a migration's destination connect it to the same
// exports (shared storage: the disk mirror copies only the root disk).
func volumeArgs(vols []hypervisor.VolumeAttachment, dev func(mmio, pci string) string) []string {
	var a []string
	tls := map[string]string{} // TLS directory -> object id
	for _, v := range vols {
		if _, ok := tls[v.TLSDir]; ok {
			continue
		}
		id := "vtls" + strconv.Itoa(len(tls))
		tls[v.TLSDir] = id
		a = append(a, "-object", "tls-creds-x509,id="+id+",endpoint=client,dir="+optPath(v.TLSDir))
	}
	for i, v := range vols {
		node := "vol" + strconv.Itoa(i)
		capped := v.IOPS > 0 || v.BPS > 0
		nbd := node
		if capped {
			nbd = node + "-nbd"
		}
		// A read-only node makes QEMU open the export read-only and the
		// device read-only (the guest sees a read-only disk); a writable
		// one passes the guest's discards (TRIM) down to the export, which
		// every node on the way must allow.
		mode := ",discard=unmap"
		if v.ReadOnly {
			mode = ",read-only=on"
		}
		tlsHost := ""
		if v.TLSHostname != "" {
			tlsHost = ",tls-hostname=" + v.TLSHostname
		}
		opts := "driver=nbd,node-name=" + nbd +
			",server.type=inet,server.host=" + v.Host + ",server.port=" + strconv.Itoa(v.Port) +
			",export=" + optPath(v.Export) + ",tls-creds=" + tls[v.TLSDir] + tlsHost +
			",reconnect-delay=" + strconv.Itoa(VolumeReconnectDelay) +
			",open-timeout=" + strconv.Itoa(VolumeOpenTimeout) + mode
		if capped {
			tg := "tg" + strconv.Itoa(i)
			group := "throttle-group,id=" + tg
			if v.IOPS > 0 {
				group += ",x-iops-total=" + strconv.FormatInt(v.IOPS, 10)
			}
			if v.BPS > 0 {
				group += ",x-bps-total=" + strconv.FormatInt(v.BPS, 10)
			}
			a = append(a, "-object", group, "-blockdev", opts,
				"-blockdev", "driver=throttle,node-name="+node+",throttle-group="+tg+",file="+nbd+mode)
		} else {
			a = append(a, "-blockdev", opts)
		}
		a = append(a, "-device", dev("virtio-blk-device", "virtio-blk-pci")+",drive="+node+",id="+node+"-blk,serial="+v.Serial)
	}
	return a
}
