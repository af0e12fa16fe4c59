package overlay

import (
	"errors"
	"fmt"
	"hash/fnv"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Names and defaults.
const (
	BridgePrefix = "vgb-" // bridge of network <vni>: vgb-<vni in decimal>
	VxlanPrefix  = "vgx-" // VXLAN device of network <vni>: vgx-<vni in decimal>
	IFBPrefix    = "vgi-" // IFB of a shaped tap: vgi-<tap> (or vgi-<hash>)

	DefaultPort = 4789 // IANA VXLAN port
	MaxVNI      = 1<<24 - 1

	// Encapsulation overhead: outer Ethernet 14 + IP 20/40 + UDP 8 + VXLAN 8.
	OverheadIPv4 = 50
	OverheadIPv6 = 70

	ifnameMax = 15
)

// Network is one overlay network as one host sees it.
type Network struct {
	VNI   uint32       // 1..MaxVNI, given by the control plane
	Local netip.Addr   // this host's underlay address (VXLAN source)
	Peers []netip.Addr // the other hosts of the network (Local, if listed, is ignored)
	Port  int          // UDP port; 0 means DefaultPort

	// UnderlayMTU is the MTU of the underlay; the bridge and the VXLAN
	// device get UnderlayMTU minus the overhead (50 for IPv4, 70 for
	// IPv6). 0 means the MTU of the link that holds Local.
	UnderlayMTU int

	// Gateway, if valid, is an address with its prefix length (e.g.
	// 10.0.0.1/24) for the bridge itself (host access, NAT). Invalid (the
	// zero Prefix): the bridge has no IP address.
	Gateway netip.Prefix

	// Remotes, optional, are guests' MAC addresses on other hosts: unicast
	// to them goes to their host only. Without an entry, a frame for a MAC
	// goes to every peer (the VXLAN device does not learn). Entries whose
	// Host is Local are skipped, so the whole network's list may be given.
	Remotes []Remote
}

// Remote places a guest's MAC address behind a host's underlay address.
type Remote struct {
	MAC  net.HardwareAddr
	Host netip.Addr
}

// Host is the datapath of one host: a network namespace and a netlink
// handle in it. Its methods are safe for concurrent use (they are
// serialised) and never change the calling thread's namespace (EnsureTap
// moves a thread of its own). It must not be used after Close.
type Host struct {
	mu sync.Mutex
	ns netns.NsHandle
	nl *netlink.Handle
}

// Open returns the datapath of the namespace ns (the Host keeps its own
// duplicate of the handle; the caller may close ns). netns.None() means
// the namespace the calling thread is in now.
func Open(ns netns.NsHandle) (*Host, error) {
	var own netns.NsHandle
	var err error
	if ns.IsOpen() {
		var fd int
		fd, err = unix.FcntlInt(uintptr(ns), unix.F_DUPFD_CLOEXEC, 0)
		own = netns.NsHandle(fd)
	} else {
		own, err = netns.Get()
	}
	if err != nil {
		return nil, fmt.Errorf("overlay: namespace: %w", err)
	}
	nl, err := netlink.NewHandleAt(own)
	if err != nil {
		own.Close()
		return nil, fmt.Errorf("overlay: netlink in the namespace: %w", err)
	}
	return &Host{ns: own, nl: nl}, nil
}

// OpenPath is Open for a namespace file such as /var/run/netns/<name>.
func OpenPath(path string) (*Host, error) {
	ns, err := netns.GetFromPath(path)
	if err != nil {
		return nil, fmt.Errorf("overlay: namespace %s: %w", path, err)
	}
	defer ns.Close()
	return Open(ns)
}

// Close releases the handles.
func (h *Host) Close() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.nl != nil {
		h.nl.Close()
		h.nl = nil
	}
	if h.ns.IsOpen() {
		err := h.ns.Close()
		h.ns = netns.None()
		return err
	}
	return nil
}

// Netlink is the Host's netlink handle (for inspection; do not close it).
func (h *Host) Netlink() *netlink.Handle { return h.nl }

// BridgeName is the bridge of network vni.
func BridgeName(vni uint32) string { return BridgePrefix + strconv.FormatUint(uint64(vni), 10) }

// VxlanName is the VXLAN device of network vni.
func VxlanName(vni uint32) string { return VxlanPrefix + strconv.FormatUint(uint64(vni), 10) }

// BridgeMAC is the fixed address Ensure gives the bridge of network vni on
// the host local: locally administered, unicast, stable (a bridge left to
// itself takes the lowest address of its ports, which changes as taps come
// and go and would invalidate the guests' ARP entry for the gateway).
func BridgeMAC(vni uint32, local netip.Addr) net.HardwareAddr {
	f := fnv.New64a()
	fmt.Fprintf(f, "vgrid-overlay %d %s", vni, local)
	s := f.Sum64()
	return net.HardwareAddr{0x02, byte(s >> 32), byte(s >> 24), byte(s >> 16), byte(s >> 8), byte(s)}
}

var zeroMAC = net.HardwareAddr{0, 0, 0, 0, 0, 0}

// plan is a validated Network with its defaults filled in.
type plan struct {
	Network
	mtu   int // of the bridge and the VXLAN device
	peers []netip.Addr
	macs  map[string]netip.Addr // MAC (net.HardwareAddr.String) -> host
}

func (h *Host) plan(n Network) (plan, error) {
	p := plan{Network: n}
	if n.VNI == 0 || n.VNI > MaxVNI {
		return p, fmt.Errorf("overlay: VNI %d: want 1 to %d", n.VNI, MaxVNI)
	}
	if !n.Local.IsValid() || n.Local.IsUnspecified() || n.Local.IsMulticast() {
		return p, fmt.Errorf("overlay: network %d: local address %v: want a unicast address", n.VNI, n.Local)
	}
	p.Local = n.Local.Unmap()
	if p.Port == 0 {
		p.Port = DefaultPort
	}
	if p.Port < 1 || p.Port > 65535 {
		return p, fmt.Errorf("overlay: network %d: port %d", n.VNI, n.Port)
	}
	for _, a := range n.Peers {
		a = a.Unmap()
		if !a.IsValid() || a.IsUnspecified() || a.IsMulticast() {
			return p, fmt.Errorf("overlay: network %d: peer %v: want a unicast address", n.VNI, a)
		}
		if a.Is4() != p.Local.Is4() {
			return p, fmt.Errorf("overlay: network %d: peer %v and local %v are of different families", n.VNI, a, p.Local)
		}
		if a != p.Local && !slices.Contains(p.peers, a) {
			p.peers = append(p.peers, a)
		}
	}
	slices.SortFunc(p.peers, netip.Addr.Compare)
	p.macs = map[string]netip.Addr{}
	for _, r := range n.Remotes {
		a := r.Host.Unmap()
		if len(r.MAC) != 6 || r.MAC[0]&1 != 0 || slices.Equal(r.MAC, zeroMAC) {
			return p, fmt.Errorf("overlay: network %d: remote MAC %s: want a unicast Ethernet address", n.VNI, r.MAC)
		}
		if !a.IsValid() || a.IsUnspecified() || a.IsMulticast() || a.Is4() != p.Local.Is4() {
			return p, fmt.Errorf("overlay: network %d: remote %s on %v: want a unicast address of the local one's family", n.VNI, r.MAC, a)
		}
		if prev, ok := p.macs[r.MAC.String()]; ok && prev != a {
			return p, fmt.Errorf("overlay: network %d: remote %s is on both %v and %v", n.VNI, r.MAC, prev, a)
		}
		if a != p.Local {
			p.macs[r.MAC.String()] = a
		}
	}
	if n.Gateway.IsValid() {
		p.Gateway = netip.PrefixFrom(n.Gateway.Addr().Unmap(), n.Gateway.Bits())
		if !p.Gateway.IsValid() {
			return p, fmt.Errorf("overlay: network %d: gateway %v", n.VNI, n.Gateway)
		}
	}
	under := n.UnderlayMTU
	if under == 0 {
		m, err := h.mtuOf(p.Local)
		if err != nil {
			return p, fmt.Errorf("overlay: network %d: %w", n.VNI, err)
		}
		under = m
	}
	p.mtu = under - OverheadIPv4
	if p.Local.Is6() {
		p.mtu = under - OverheadIPv6
	}
	if p.mtu < 576 {
		return p, fmt.Errorf("overlay: network %d: underlay MTU %d is too small", n.VNI, under)
	}
	return p, nil
}

// mtuOf is the MTU of the link holding addr.
func (h *Host) mtuOf(addr netip.Addr) (int, error) {
	addrs, err := retry(func() ([]netlink.Addr, error) { return h.nl.AddrList(nil, netlink.FAMILY_ALL) })
	if err != nil {
		return 0, fmt.Errorf("list addresses: %w", err)
	}
	for _, a := range addrs {
		if ip, ok := netip.AddrFromSlice(a.IP); ok && ip.Unmap() == addr {
			l, err := h.nl.LinkByIndex(a.LinkIndex)
			if err != nil {
				return 0, fmt.Errorf("link of %v: %w", addr, err)
			}
			return l.Attrs().MTU, nil
		}
	}
	return 0, fmt.Errorf("local address %v is on no link here (give UnderlayMTU)", addr)
}

// Ensure makes the host's part of network n what n describes: the bridge,
// the VXLAN device (recreated if its VNI, source address, port or learning
// setting differ), one all-zero FDB entry per peer and one per remote MAC
// (entries no longer listed are removed), the MTUs (the bridge's ports'
// too), the bridge's address, both up.
// What is already right is left untouched, so running it twice changes
// nothing.
func (h *Host) Ensure(n Network) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	p, err := h.plan(n)
	if err != nil {
		return err
	}
	br, err := h.ensureBridge(p)
	if err != nil {
		return fmt.Errorf("overlay: network %d: %w", p.VNI, err)
	}
	vx, err := h.ensureVxlan(p, br)
	if err != nil {
		return fmt.Errorf("overlay: network %d: %w", p.VNI, err)
	}
	if err := h.syncFDB(vx, p.peers, p.macs); err != nil {
		return fmt.Errorf("overlay: network %d: %w", p.VNI, err)
	}
	if err := h.syncGateway(br, p.Gateway); err != nil {
		return fmt.Errorf("overlay: network %d: %w", p.VNI, err)
	}
	if err := h.syncPortMTU(br, p.mtu); err != nil {
		return fmt.Errorf("overlay: network %d: %w", p.VNI, err)
	}
	for _, l := range []netlink.Link{vx, br} {
		if l.Attrs().Flags&net.FlagUp == 0 {
			if err := h.nl.LinkSetUp(l); err != nil {
				return fmt.Errorf("overlay: network %d: %s up: %w", p.VNI, l.Attrs().Name, err)
			}
		}
	}
	return nil
}

func (h *Host) ensureBridge(p plan) (netlink.Link, error) {
	name := BridgeName(p.VNI)
	mac := BridgeMAC(p.VNI, p.Local)
	br, err := h.nl.LinkByName(name)
	if isNotFound(err) {
		attrs := netlink.NewLinkAttrs() // TxQLen -1: the kernel's default
		attrs.Name, attrs.MTU, attrs.HardwareAddr = name, p.mtu, mac
		add := &netlink.Bridge{LinkAttrs: attrs}
		if err := h.nl.LinkAdd(add); err != nil {
			return nil, fmt.Errorf("create bridge %s: %w", name, err)
		}
		if br, err = h.nl.LinkByName(name); err == nil {
			// A pure layer-2 switch: no IPv6 link-local address, so the
			// host sends nothing into the overlay (no DAD, MLD, RS).
			_ = h.nl.LinkSetIP6AddrGenMode(br, 1) // IN6_ADDR_GEN_MODE_NONE
		}
	}
	if err != nil {
		return nil, fmt.Errorf("bridge %s: %w", name, err)
	}
	if br.Type() != "bridge" {
		return nil, fmt.Errorf("%s exists and is a %s, not a bridge", name, br.Type())
	}
	if br.Attrs().MTU != p.mtu {
		if err := h.nl.LinkSetMTU(br, p.mtu); err != nil {
			return nil, fmt.Errorf("MTU %d on %s: %w", p.mtu, name, err)
		}
	}
	if !slices.Equal(br.Attrs().HardwareAddr, mac) {
		if err := h.nl.LinkSetHardwareAddr(br, mac); err != nil {
			return nil, fmt.Errorf("address %s on %s: %w", mac, name, err)
		}
	}
	return br, nil
}

func vxlanMatches(v *netlink.Vxlan, p plan) bool {
	return v.VxlanId == int(p.VNI) && v.Port == p.Port && !v.Learning && !v.FlowBased &&
		(len(v.Group) == 0 || v.Group.IsUnspecified()) && v.SrcAddr.Equal(net.IP(p.Local.AsSlice()))
}

func (h *Host) ensureVxlan(p plan, br netlink.Link) (netlink.Link, error) {
	name := VxlanName(p.VNI)
	l, err := h.nl.LinkByName(name)
	if err != nil && !isNotFound(err) {
		return nil, fmt.Errorf("vxlan %s: %w", name, err)
	}
	if err == nil {
		v, ok := l.(*netlink.Vxlan)
		if !ok {
			return nil, fmt.Errorf("%s exists and is a %s, not a vxlan", name, l.Type())
		}
		if !vxlanMatches(v, p) {
			// VNI, addresses and port cannot all be changed in place.
			if err := h.nl.LinkDel(l); err != nil {
				return nil, fmt.Errorf("delete outdated %s: %w", name, err)
			}
			l = nil
		}
	}
	if l == nil {
		attrs := netlink.NewLinkAttrs()
		attrs.Name, attrs.MTU = name, p.mtu
		add := &netlink.Vxlan{
			LinkAttrs: attrs,
			VxlanId:   int(p.VNI),
			SrcAddr:   net.IP(p.Local.AsSlice()),
			Port:      p.Port,
			Learning:  false,
		}
		if err := h.nl.LinkAdd(add); err != nil {
			return nil, fmt.Errorf("create vxlan %s: %w", name, err)
		}
		if l, err = h.nl.LinkByName(name); err != nil {
			return nil, fmt.Errorf("vxlan %s: %w", name, err)
		}
		_ = h.nl.LinkSetIP6AddrGenMode(l, 1) // a bridge port needs no address
	}
	if l.Attrs().MTU != p.mtu {
		if err := h.nl.LinkSetMTU(l, p.mtu); err != nil {
			return nil, fmt.Errorf("MTU %d on %s: %w", p.mtu, name, err)
		}
	}
	if l.Attrs().MasterIndex != br.Attrs().Index {
		if err := h.nl.LinkSetMaster(l, br); err != nil {
			return nil, fmt.Errorf("%s onto %s: %w", name, br.Attrs().Name, err)
		}
	}
	return l, nil
}

// syncPortMTU gives the bridge's other ports (taps) its MTU, e.g. after
// the underlay's changed: a port with a smaller one drops what the bridge
// forwards to it.
func (h *Host) syncPortMTU(br netlink.Link, mtu int) error {
	links, err := retry(h.nl.LinkList)
	if err != nil {
		return fmt.Errorf("list links: %w", err)
	}
	for _, l := range links {
		if l.Attrs().MasterIndex == br.Attrs().Index && l.Attrs().MTU != mtu {
			if err := h.nl.LinkSetMTU(l, mtu); err != nil {
				return fmt.Errorf("MTU %d on port %s: %w", mtu, l.Attrs().Name, err)
			}
		}
	}
	return nil
}

// syncGateway leaves the bridge with gw as its only address (link-local
// IPv6 addresses aside), or with none.
func (h *Host) syncGateway(br netlink.Link, gw netip.Prefix) error {
	addrs, err := retry(func() ([]netlink.Addr, error) { return h.nl.AddrList(br, netlink.FAMILY_ALL) })
	if err != nil {
		return fmt.Errorf("addresses of %s: %w", br.Attrs().Name, err)
	}
	found := false
	for _, a := range addrs {
		ip, _ := netip.AddrFromSlice(a.IP)
		ones, _ := a.Mask.Size()
		if gw.IsValid() && ip.Unmap() == gw.Addr() && ones == gw.Bits() {
			found = true
			continue
		}
		if ip.Is6() && ip.IsLinkLocalUnicast() {
			continue
		}
		if err := h.nl.AddrDel(br, &a); err != nil {
			return fmt.Errorf("delete address %s of %s: %w", a.IPNet, br.Attrs().Name, err)
		}
	}
	if gw.IsValid() && !found {
		bits := 32
		if gw.Addr().Is6() {
			bits = 128
		}
		a := &netlink.Addr{IPNet: &net.IPNet{IP: gw.Addr().AsSlice(), Mask: net.CIDRMask(gw.Bits(), bits)}}
		if err := h.nl.AddrReplace(br, a); err != nil {
			return fmt.Errorf("address %s on %s: %w", gw, br.Attrs().Name, err)
		}
	}
	return nil
}

// Delete removes network vni's VXLAN device and bridge (taps on the bridge
// stay, detached). A network that is not there is not an error.
func (h *Host) Delete(vni uint32) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	var errs []error
	for _, c := range []struct{ name, kind string }{{VxlanName(vni), "vxlan"}, {BridgeName(vni), "bridge"}} {
		l, err := h.nl.LinkByName(c.name)
		if isNotFound(err) {
			continue
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", c.name, err))
			continue
		}
		if l.Type() != c.kind {
			errs = append(errs, fmt.Errorf("%s is a %s, not a %s: left alone", c.name, l.Type(), c.kind))
			continue
		}
		if err := h.nl.LinkDel(l); err != nil && !isNotFound(err) {
			errs = append(errs, fmt.Errorf("delete %s: %w", c.name, err))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("overlay: delete network %d: %w", vni, errors.Join(errs...))
	}
	return nil
}

// List returns the VNIs of the networks present (a bridge vgb-<vni> or a
// VXLAN device vgx-<vni>), sorted.
func (h *Host) List() ([]uint32, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	links, err := retry(h.nl.LinkList)
	if err != nil {
		return nil, fmt.Errorf("overlay: list links: %w", err)
	}
	var out []uint32
	for _, l := range links {
		name := l.Attrs().Name
		var rest string
		var ok bool
		switch l.Type() {
		case "bridge":
			rest, ok = strings.CutPrefix(name, BridgePrefix)
		case "vxlan":
			rest, ok = strings.CutPrefix(name, VxlanPrefix)
		}
		if !ok {
			continue
		}
		v, err := strconv.ParseUint(rest, 10, 32)
		if err != nil || v == 0 || v > MaxVNI || strconv.FormatUint(v, 10) != rest {
			continue
		}
		if !slices.Contains(out, uint32(v)) {
			out = append(out, uint32(v))
		}
	}
	slices.Sort(out)
	return out, nil
}

func isNotFound(err error) bool {
	var nf netlink.LinkNotFoundError
	return err != nil && (errors.As(err, &nf) || errors.Is(err, unix.ENODEV))
}

// retry repeats a netlink dump the kernel interrupted (the table changed
// while it was being read).
func retry[T any](f func() (T, error)) (T, error) {
	var v T
	var err error
	for range 5 {
		v, err = f()
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			return v, err
		}
	}
	return v, err
}

// MTU is the MTU of network vni's bridge on this host: what its guests'
// interfaces must not exceed.
func (h *Host) MTU(vni uint32) (int, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	l, err := h.nl.LinkByName(BridgeName(vni))
	if err != nil {
		return 0, fmt.Errorf("overlay: network %d: %w", vni, err)
	}
	return l.Attrs().MTU, nil
}
