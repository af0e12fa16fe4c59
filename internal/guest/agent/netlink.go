package agent

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"syscall"

	"github.com/vishvananda/netlink"
)

// netlinkLinks is Links on the guest's kernel, over netlink (nothing is
// shelled out).
type netlinkLinks struct{}

func (netlinkLinks) List() ([]Link, error) {
	ls, err := netlink.LinkList()
	if err != nil {
		return nil, err
	}
	out := make([]Link, 0, len(ls))
	for _, l := range ls {
		a := l.Attrs()
		out = append(out, Link{Index: a.Index, Name: a.Name, MAC: a.HardwareAddr, Up: a.Flags&net.FlagUp != 0})
	}
	return out, nil
}

func (netlinkLinks) SetName(index int, name string) error {
	l, err := netlink.LinkByIndex(index)
	if err != nil {
		return err
	}
	return netlink.LinkSetName(l, name)
}

func (netlinkLinks) SetUp(index int, up bool) error {
	l, err := netlink.LinkByIndex(index)
	if err != nil {
		return err
	}
	if up {
		return netlink.LinkSetUp(l)
	}
	return netlink.LinkSetDown(l)
}

func (netlinkLinks) AddAddress(index int, p netip.Prefix) error {
	l, err := netlink.LinkByIndex(index)
	if err != nil {
		return err
	}
	// Replace: an address the link has already is no error. The
	// broadcast address of an IPv4 prefix is computed by the library.
	return netlink.AddrReplace(l, &netlink.Addr{IPNet: ipNet(p)})
}

func (netlinkLinks) SetDefaultRoute(index int, gw netip.Addr) error {
	zero := netip.IPv4Unspecified()
	if gw.Is6() {
		zero = netip.IPv6Unspecified()
	}
	dst := ipNet(netip.PrefixFrom(zero, 0))
	return netlink.RouteReplace(&netlink.Route{LinkIndex: index, Dst: dst, Gw: gw.AsSlice()})
}

func ipNet(p netip.Prefix) *net.IPNet {
	a := p.Addr()
	return &net.IPNet{IP: a.AsSlice(), Mask: net.CIDRMask(p.Bits(), a.BitLen())}
}

// udhcpcScript is the busybox udhcpc event script of the guest image.
const udhcpcScript = "/usr/share/udhcpc/default.script"

// startUDHCPC starts busybox udhcpc on iface in the background (-b: it
// forks once it has a lease or has tried for a while; its script sets
// the address, route and resolver), in a session of its own so that it
// outlives an agent restart, with its output appended to a log.
func startUDHCPC(iface string) error {
	cmd := exec.Command("/bin/busybox", "udhcpc", "-i", iface, "-b", "-q", "-s", udhcpcScript)
	if log, err := os.OpenFile("/var/log/udhcpc.log", os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644); err == nil {
		cmd.Stdout, cmd.Stderr = log, log
		defer log.Close()
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start udhcpc: %w", err)
	}
	go func() { _ = cmd.Wait() }()
	return nil
}
