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
// is how QMP system_powerdown reaches a busybox guest. The parsers for
// /proc and /sys files and for the seed files are small pure functions so
// that they are tested on the host.
package agent
