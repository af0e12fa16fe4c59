package ipam

import (
	"fmt"
	"net/netip"
	"strings"
)

// Bounds of a subnet's prefix length.
const (
	// MinPrefixLen is the largest subnet allowed: a /16 (65533 members).
	MinPrefixLen = 16
	// MaxPrefixLen is the smallest subnet allowed: a /29 (5 members).
	MaxPrefixLen = 29
)

// privateRanges are the ranges a subnet may be taken from: RFC 1918 and
// the shared address space of RFC 6598 (CGNAT).
func privateRanges() [4]netip.Prefix {
	return [4]netip.Prefix{
		netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 0, 0, 0}), 8),
		netip.PrefixFrom(netip.AddrFrom4([4]byte{172, 16, 0, 0}), 12),
		netip.PrefixFrom(netip.AddrFrom4([4]byte{192, 168, 0, 0}), 16),
		netip.PrefixFrom(netip.AddrFrom4([4]byte{100, 64, 0, 0}), 10),
	}
}

const privateList = "10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16 or 100.64.0.0/10 (CGNAT)"

// ParseSubnet parses an overlay network's subnet, e.g. "10.0.0.0/24", and
// checks it with CheckSubnet. Errors name the field "subnet".
func ParseSubnet(s string) (netip.Prefix, error) {
	if s == "" {
		return netip.Prefix{}, invalid("subnet", "required, e.g. 10.0.0.0/24")
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		if a, aerr := netip.ParseAddr(s); aerr == nil && a.Is4() && !strings.Contains(s, "/") {
			return netip.Prefix{}, invalid("subnet", fmt.Sprintf("%s has no prefix length: write it as CIDR, e.g. %s/24", a, a))
		}
		return netip.Prefix{}, invalid("subnet", quoteShort(s)+" is not a CIDR prefix such as 10.0.0.0/24")
	}
	if err := CheckSubnet(p); err != nil {
		return netip.Prefix{}, err
	}
	return p, nil
}

// CheckSubnet checks a subnet: IPv4, its network address (no host bits
// set), a prefix length from /16 to /29, and inside a private range.
func CheckSubnet(p netip.Prefix) error {
	if reason := subnetProblem(p); reason != "" {
		return invalid("subnet", reason)
	}
	return nil
}

func subnetProblem(p netip.Prefix) string {
	a, bits := p.Addr(), p.Bits()
	switch {
	case !p.IsValid():
		return "required, e.g. 10.0.0.0/24"
	case !a.Is4():
		return fmt.Sprintf("%s is IPv6: only IPv4 subnets are supported for now", p)
	case bits < MinPrefixLen:
		return fmt.Sprintf("prefix /%d is too large: the largest subnet allowed is a /%d (%d member addresses)",
			bits, MinPrefixLen, capacityOf(MinPrefixLen))
	case bits > MaxPrefixLen:
		return fmt.Sprintf("prefix /%d is too small: the smallest subnet allowed is a /%d (%d member addresses)",
			bits, MaxPrefixLen, capacityOf(MaxPrefixLen))
	case p.Masked() != p:
		return fmt.Sprintf("%s has host bits set: a subnet is written with its network address; did you mean %s?", p, p.Masked())
	}
	for _, r := range privateRanges() {
		if r.Contains(a) && r.Bits() <= bits {
			return ""
		}
	}
	return fmt.Sprintf("%s is %s: use a private range, %s", p, kindOf(a), privateList)
}

// kindOf names the kind of non-private space a subnet starting at a is
// in. A subnet is at least a /16, so where it starts says where it is for
// every range of /16 or larger.
func kindOf(a netip.Addr) string {
	b := a.As4()
	switch {
	case a.IsLoopback():
		return "loopback address space"
	case a.IsLinkLocalUnicast():
		return "link-local address space"
	case a.IsMulticast():
		return "multicast address space"
	case b[0] == 0 || b[0] >= 240:
		return "reserved address space"
	}
	return "public address space"
}

// Layout is how a subnet's addresses are used. The network address, the
// gateway (the first host address) and the broadcast address are never
// given to members; members get First to Last.
type Layout struct {
	Subnet    netip.Prefix `json:"subnet"`
	Network   netip.Addr   `json:"network"`
	Gateway   netip.Addr   `json:"gateway"`
	First     netip.Addr   `json:"first"`
	Last      netip.Addr   `json:"last"`
	Broadcast netip.Addr   `json:"broadcast"`
}

// LayoutOf returns the layout of a subnet that passes CheckSubnet. For
// 10.0.0.0/24: network 10.0.0.0, gateway 10.0.0.1, members 10.0.0.2 to
// 10.0.0.254, broadcast 10.0.0.255.
func LayoutOf(p netip.Prefix) (Layout, error) {
	if err := CheckSubnet(p); err != nil {
		return Layout{}, err
	}
	base, size := toU32(p.Addr()), uint32(1)<<(32-p.Bits())
	return Layout{
		Subnet:    p,
		Network:   fromU32(base),
		Gateway:   fromU32(base + 1),
		First:     fromU32(base + 2),
		Last:      fromU32(base + size - 2),
		Broadcast: fromU32(base + size - 1),
	}, nil
}

// Capacity returns how many addresses members can get.
func (l Layout) Capacity() int { return capacityOf(l.Subnet.Bits()) }

// capacityOf returns the member addresses of a subnet of the given prefix
// length: all of them but the network, gateway and broadcast addresses.
func capacityOf(bits int) int {
	if bits < MinPrefixLen || bits > MaxPrefixLen {
		return 0
	}
	return 1<<(32-bits) - 3
}

// problem returns why a cannot be a member's address, or "".
func (l Layout) problem(a netip.Addr) string {
	switch {
	case !a.IsValid():
		return "required"
	case !a.Is4():
		return fmt.Sprintf("%s is not an IPv4 address", a)
	case !l.Subnet.Contains(a):
		return fmt.Sprintf("%s is outside subnet %s", a, l.Subnet)
	case a == l.Network:
		return fmt.Sprintf("%s is the network address of %s", a, l.Subnet)
	case a == l.Gateway:
		return fmt.Sprintf("%s is the gateway of %s", a, l.Subnet)
	case a == l.Broadcast:
		return fmt.Sprintf("%s is the broadcast address of %s", a, l.Subnet)
	}
	return ""
}

// index returns a member address's place in First..Last. a must have no
// problem.
func (l Layout) index(a netip.Addr) int { return int(toU32(a) - toU32(l.First)) }

// at returns the member address at place i of First..Last.
func (l Layout) at(i int) netip.Addr { return fromU32(toU32(l.First) + uint32(i)) }

func toU32(a netip.Addr) uint32 {
	b := a.As4()
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

func fromU32(u uint32) netip.Addr {
	return netip.AddrFrom4([4]byte{byte(u >> 24), byte(u >> 16), byte(u >> 8), byte(u)})
}
