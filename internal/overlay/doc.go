// Package overlay is the per-host datapath of the private overlay networks
// of virtual clusters: VXLAN with unicast head-end replication, a Linux
// bridge per network, persistent taps for QEMU and per-tap rate caps. It
// is made with netlink (github.com/vishvananda/netlink); nothing is
// shelled out.
//
// # Namespaces
//
// A Host is the datapath of one network namespace: Open(ns) keeps a
// duplicate of the namespace handle and a netlink handle in it (Open with
// netns.None() binds the namespace the calling thread is in; OpenPath
// takes a file such as /var/run/netns/<name>). Callers need not lock OS
// threads: everything goes over the handle, except creating a tap, which
// is an ioctl on /dev/net/tun acting in the calling thread's namespace and
// so runs on a thread of its own moved into the Host's namespace. Methods
// are serialised by a mutex.
//
// # Devices of network <vni> (decimal, 1..2^24-1)
//
//   - vgb-<vni>: a bridge (kernel defaults: STP off), MTU = underlay MTU − 50 (IPv4
//     underlay; − 70 for IPv6), a fixed locally administered MAC derived
//     from the VNI and the local address (BridgeMAC; otherwise the bridge
//     takes its lowest port's MAC, which changes as taps come and go), no
//     IPv6 link-local address, and as only address Network.Gateway if given
//     (for host access or NAT; none otherwise).
//   - vgx-<vni>: a VXLAN device, id <vni>, local = Network.Local (the
//     host's underlay address), UDP destination port Network.Port (4789),
//     nolearning, no multicast group, same MTU, a port of vgb-<vni>.
//   - taps (EnsureTap): persistent, uid/gid 0, single queue, flags
//     IFF_TAP, IFF_NO_PI and IFF_VNET_HDR, the bridge's MTU, ports of
//     vgb-<vni>. QEMU attaches with
//     -netdev tap,ifname=<tap>,script=no,downscript=no. A tap's own MAC
//     (optional) must not be its guest's: the bridge would keep frames for
//     a port's own address.
//
// # Forwarding database (of vgx-<vni>, "self" entries, permanent)
//
//   - 00:00:00:00:00:00 dst <peer> for every other host of the network
//     (appended, one destination each): broadcast, multicast and unknown
//     unicast are copied to every peer (head-end replication).
//   - <mac> dst <host> for each Network.Remotes entry on another host.
//     The VXLAN device does not learn, so without these entries every
//     unicast frame also goes to every peer; with them it goes to its
//     guest's host only. The control plane knows the guests' MACs and
//     hosts, so it can give them.
//
// Ensure(n) is declarative and idempotent: it creates what is missing,
// fixes MTUs (the bridge ports' too), MAC, master and up state, recreates
// the VXLAN device if its id, local address, port or learning setting
// differ, adds missing FDB entries and deletes those of peers and remotes
// no longer listed. Run twice, the second run sends no change to the
// kernel. Delete(vni) removes both devices (taps stay, detached); List()
// reports the VNIs present by device name, and Taps(prefix) the taps with
// the network each is a port of, for the agent's cleanup.
//
// Isolation follows from the design: each network has its own bridge and
// VNI, so two networks may use the same guest subnet, even the same
// addresses, on the same hosts.
//
// # Rate caps (SetBandwidth)
//
// Rates are in bits per second and seen from the guest: egress is what the
// guest sends, ingress what it receives; 0 removes a cap.
//
//	guest → tap: ingress qdisc ffff: on the tap, u32 match-all filter
//	             (protocol all, prio 1) with action mirred egress redirect
//	             to the IFB vgi-<tap> (vgi-<fnv32 of tap> if too long),
//	             TBF 1: at the IFB's root
//	tap → guest: TBF 1: at the tap's root
//
// Each TBF, for a cap of bps bits per second:
//
//	rate  = bps / 8                           bytes per second
//	burst = max(rate × 10 ms, 128 KiB)        bucket
//	limit = burst + rate × 50 ms              queue, bytes
//
// The 10 ms of bucket keep the rate when the qdisc is serviced late (at 1
// Gbit/s a 64 KiB bucket lasts 0.5 ms); the 128 KiB floor holds a whole
// 64 KiB GSO packet, so TBF need not split them (at 10 Mbit/s it is about
// 100 ms of initial burst). The queue holds 50 ms at the cap. TBF counts Ethernet frames, so TCP goodput is ≈ 95% of the cap
// at MTU 1450. Measured (2 s, TCP, veths over VXLAN, 2 vCPUs), goodput /
// cap in both directions: 10 Mbit/s 1.01–1.03, 50 to 2000 Mbit/s
// 0.92–0.96. SetBandwidth replaces a TBF in place only when its
// parameters differ and remakes the redirect only when it is not exactly
// the one filter described above. DeleteTap removes the tap and its IFB.
package overlay
