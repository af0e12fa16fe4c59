// Package agent is the in-guest agent of a vgrid workspace VM. It runs under
// busybox init inside the guest, finds the virtio-serial port named
// proto.PortName, announces itself with a "ready" message carrying the
// guest's facts (CPUs, memory, addresses, hostname, kernel, root disk size,
// uptime) and then answers host requests line by line (facts, ping,
// shutdown). At start it applies the workspace context from a NoCloud
// "cidata" seed disk (hostname, environment, SSH keys, a user-data script):
// the network from its network-config (interfaces matched by MAC, renamed,
// addressed and routed over netlink; without one, DHCP on eth0), and for a
// cluster member its roster (/etc/hosts) and the cluster's key pair from
// vgrid-cluster.json, whose revision it then reports (GuestInfo.Roster).
// It powers the guest off when the ACPI power button is pressed, which
// is how QMP system_powerdown reaches a busybox guest. It watches what the
// host may change while the guest runs (watch.go, every second): MemTotal
// (the host's balloon), the root disk's size and the online CPUs; a change
// is reported unasked as a facts message, and a root disk grown has the
// root filesystem (ext4, grown online with EXT4_IOC_RESIZE_FS, as at
// boot) grown to fill it. Run with -growfs=BYTES, the binary waits for the
// kernel to see the root disk at that size, grows the filesystem and
// prints the sizes as JSON: the host runs it through exec after it grew
// the disk, to know when the guest has the space. The parsers for
// /proc and /sys files and for the seed files are small pure functions so
// that they are tested on the host.
package agent
