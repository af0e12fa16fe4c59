package qemu

import (
	"fmt"
	"net"
	"slices"
	"strings"

	"vgrid/internal/hypervisor"
)

// MaxNICs bounds a guest's interfaces on taps. A microvm guest has 24
// virtio-mmio slots, three of them taken (the agent's channel, the disk
// and the seed); eight leaves room and is more than a workspace joins.
const MaxNICs = 8

// maxTapName is the longest Linux interface name (IFNAMSIZ less the NUL).
const maxTapName = 15

// checkSpec is the driver's check of a spec: what every driver checks
// (InstanceSpec.Validate) and its NICs. Errors wrap ErrInvalid.
func checkSpec(spec hypervisor.InstanceSpec) error {
	if err := spec.Validate(); err != nil {
		return err
	}
	return checkNICs(spec.NICs)
}

// checkNICs checks the interfaces on taps: a tap name of 1 to 15
// [a-z0-9-] (it goes into QEMU's option list and names a host device), a
// unicast Ethernet MAC in colon notation (either case), an IPv4 address
// with its prefix length, a gateway (if any) in that prefix; no tap or
// MAC twice.
func checkNICs(nics []hypervisor.NIC) error {
	bad := func(i int, format string, args ...any) error {
		return fmt.Errorf("%w: nic %d: %s", hypervisor.ErrInvalid, i, fmt.Sprintf(format, args...))
	}
	if len(nics) > MaxNICs {
		return fmt.Errorf("%w: %d nics: at most %d", hypervisor.ErrInvalid, len(nics), MaxNICs)
	}
	taps := map[string]int{}
	macs := map[string]int{}
	for i, n := range nics {
		if !validTapName(n.Tap) {
			return bad(i, "tap %q: want 1-%d of [a-z0-9-]", n.Tap, maxTapName)
		}
		if j, dup := taps[n.Tap]; dup {
			return bad(i, "tap %s: nic %d has it too", n.Tap, j)
		}
		taps[n.Tap] = i
		mac, err := net.ParseMAC(n.MAC)
		if err != nil || len(mac) != 6 || strings.ToLower(n.MAC) != mac.String() {
			return bad(i, "mac %q: want an Ethernet address as xx:xx:xx:xx:xx:xx", n.MAC)
		}
		if mac[0]&1 != 0 {
			return bad(i, "mac %s: a multicast address; want a unicast one", mac)
		}
		if slices.Equal(mac, make(net.HardwareAddr, 6)) {
			return bad(i, "mac %s: want a non-zero address", mac)
		}
		if j, dup := macs[mac.String()]; dup {
			return bad(i, "mac %s: nic %d has it too", mac, j)
		}
		macs[mac.String()] = i
		a := n.Address
		switch {
		case !a.IsValid():
			return bad(i, "no address: want an IPv4 address with its prefix length (10.0.0.2/24)")
		case n.MTU != 0 && (n.MTU < 576 || n.MTU > 65535):
			return bad(i, "mtu %d: want 576 to 65535, or 0 for the guest's default", n.MTU)
		case !a.Addr().Is4():
			return bad(i, "address %s: want IPv4", a)
		case a.Bits() < 1:
			return bad(i, "address %s: want a prefix length of 1 to 32", a)
		case a.Addr().IsUnspecified() || a.Addr().IsLoopback() || a.Addr().IsMulticast() || a.Addr().IsLinkLocalUnicast():
			return bad(i, "address %s: want a unicast address", a.Addr())
		}
		if g := n.Gateway; g.IsValid() {
			switch {
			case !g.Is4():
				return bad(i, "gateway %s: want IPv4", g)
			case g == a.Addr():
				return bad(i, "gateway %s: the nic's own address", g)
			case !a.Masked().Contains(g):
				return bad(i, "gateway %s: not in %s", g, a.Masked())
			}
		}
	}
	return nil
}

func validTapName(s string) bool {
	if s == "" || len(s) > maxTapName {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// sameNICs checks that a guest saved with old's interfaces can be
// restored with spec's: the same number, in the same order, with the
// same MACs (the saved device state is the device set), and the same
// addresses and gateways (the guest configured them at boot and does not
// read its seed again). The taps may differ.
func sameNICs(old, spec []hypervisor.NIC) error {
	if len(old) != len(spec) {
		return fmt.Errorf("%w: suspended with %d nics, cannot resume with %d", hypervisor.ErrInvalid, len(old), len(spec))
	}
	for i := range old {
		o, n := old[i], spec[i]
		if !strings.EqualFold(o.MAC, n.MAC) {
			return fmt.Errorf("%w: nic %d: suspended with mac %s, cannot resume with %s", hypervisor.ErrInvalid, i, o.MAC, n.MAC)
		}
		if o.MTU != n.MTU {
			return fmt.Errorf("%w: nic %d: suspended with mtu %d, cannot resume with %d", hypervisor.ErrInvalid, i, o.MTU, n.MTU)
		}
		if o.Address != n.Address || o.Gateway != n.Gateway {
			return fmt.Errorf("%w: nic %d: suspended with address %s (gateway %s), cannot resume with %s (gateway %s): the guest keeps what it configured",
				hypervisor.ErrInvalid, i, o.Address, o.Gateway, n.Address, n.Gateway)
		}
	}
	return nil
}
