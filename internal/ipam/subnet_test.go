package ipam

import (
	"net/netip"
	"strings"
	"testing"
)

func TestParseSubnet(t *testing.T) {
	for _, c := range []struct {
		in, want, reason string
	}{
		{"10.0.0.0/24", "10.0.0.0/24", ""},
		{"10.255.0.0/16", "10.255.0.0/16", ""},
		{"172.16.0.0/16", "172.16.0.0/16", ""},
		{"172.31.255.248/29", "172.31.255.248/29", ""},
		{"192.168.7.0/24", "192.168.7.0/24", ""},
		{"100.64.0.0/16", "100.64.0.0/16", ""},
		{"100.127.255.0/24", "100.127.255.0/24", ""},
		{"", "", "required"},
		{"10.0.0.0", "", "10.0.0.0 has no prefix length: write it as CIDR, e.g. 10.0.0.0/24"},
		{"banana", "", `"banana" is not a CIDR prefix`},
		{"10.0.0.0/33", "", "is not a CIDR prefix"},
		{" 10.0.0.0/24", "", "is not a CIDR prefix"},
		{"10.0.0.0/024", "", "is not a CIDR prefix"},
		{strings.Repeat("1", 100), "", `"1111111111111111111111111111111111111111"... is not`},
		{"fd00::/64", "", "fd00::/64 is IPv6: only IPv4 subnets are supported for now"},
		{"::ffff:10.0.0.0/120", "", "is IPv6"},
		{"fe80::1%eth0/64", "", "is not a CIDR prefix"},
		{"10.0.0.1/24", "", "10.0.0.1/24 has host bits set: a subnet is written with its network address; did you mean 10.0.0.0/24?"},
		{"10.0.0.0/8", "", "prefix /8 is too large: the largest subnet allowed is a /16 (65533 member addresses)"},
		{"10.0.0.0/15", "", "prefix /15 is too large"},
		{"0.0.0.0/0", "", "prefix /0 is too large"},
		{"10.0.0.0/30", "", "prefix /30 is too small: the smallest subnet allowed is a /29 (5 member addresses)"},
		{"10.0.0.1/32", "", "prefix /32 is too small"},
		{"8.8.8.0/24", "", "8.8.8.0/24 is public address space: use a private range, 10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16 or 100.64.0.0/10 (CGNAT)"},
		{"172.32.0.0/16", "", "is public address space"},
		{"172.15.0.0/16", "", "is public address space"},
		{"100.128.0.0/16", "", "is public address space"},
		{"192.169.0.0/16", "", "is public address space"},
		{"127.0.0.0/24", "", "is loopback address space"},
		{"169.254.0.0/16", "", "is link-local address space"},
		{"224.0.0.0/24", "", "is multicast address space"},
		{"240.0.0.0/24", "", "is reserved address space"},
		{"0.0.0.0/24", "", "is reserved address space"},
		{"255.255.255.248/29", "", "is reserved address space"},
	} {
		p, err := ParseSubnet(c.in)
		if c.reason == "" {
			if err != nil || p.String() != c.want {
				t.Errorf("ParseSubnet(%q) = %v, %v; want %s", c.in, p, err, c.want)
			}
			continue
		}
		checkErr(t, "ParseSubnet("+c.in+")", err, "subnet", c.reason, ErrInvalid)
		if p.IsValid() {
			t.Errorf("ParseSubnet(%q) returned %v with an error", c.in, p)
		}
	}
}

func TestCheckSubnetZero(t *testing.T) {
	checkErr(t, "CheckSubnet(zero)", CheckSubnet(netip.Prefix{}), "subnet", "required", ErrInvalid)
}

func TestLayoutOf(t *testing.T) {
	for _, c := range []struct {
		subnet                                   string
		network, gateway, first, last, broadcast string
		capacity                                 int
	}{
		{"10.0.0.0/24", "10.0.0.0", "10.0.0.1", "10.0.0.2", "10.0.0.254", "10.0.0.255", 253},
		{"192.168.1.8/29", "192.168.1.8", "192.168.1.9", "192.168.1.10", "192.168.1.14", "192.168.1.15", 5},
		{"172.16.0.0/16", "172.16.0.0", "172.16.0.1", "172.16.0.2", "172.16.255.254", "172.16.255.255", 65533},
		{"100.64.4.0/22", "100.64.4.0", "100.64.4.1", "100.64.4.2", "100.64.7.254", "100.64.7.255", 1021},
	} {
		l, err := LayoutOf(prefix(c.subnet))
		if err != nil {
			t.Errorf("LayoutOf(%s): %v", c.subnet, err)
			continue
		}
		got := []string{l.Network.String(), l.Gateway.String(), l.First.String(), l.Last.String(), l.Broadcast.String()}
		want := []string{c.network, c.gateway, c.first, c.last, c.broadcast}
		if strings.Join(got, " ") != strings.Join(want, " ") || l.Capacity() != c.capacity || l.Subnet != prefix(c.subnet) {
			t.Errorf("LayoutOf(%s) = %v (capacity %d), want %v (capacity %d)", c.subnet, got, l.Capacity(), want, c.capacity)
		}
	}
	for _, bad := range []string{"10.0.0.0/8", "10.0.0.7/29", "8.8.0.0/16", "fd00::/120"} {
		if _, err := LayoutOf(prefix(bad)); err == nil {
			t.Errorf("LayoutOf(%s): got no error", bad)
		}
	}
}

func TestLayoutProblem(t *testing.T) {
	l, _ := LayoutOf(prefix("10.0.0.0/24"))
	for _, c := range []struct{ addr, reason string }{
		{"10.0.0.2", ""},
		{"10.0.0.254", ""},
		{"10.0.0.0", "10.0.0.0 is the network address of 10.0.0.0/24"},
		{"10.0.0.1", "10.0.0.1 is the gateway of 10.0.0.0/24"},
		{"10.0.0.255", "10.0.0.255 is the broadcast address of 10.0.0.0/24"},
		{"10.0.1.2", "10.0.1.2 is outside subnet 10.0.0.0/24"},
		{"::ffff:10.0.0.2", "::ffff:10.0.0.2 is not an IPv4 address"},
		{"fd00::2", "fd00::2 is not an IPv4 address"},
	} {
		if got := l.problem(addr(c.addr)); got != c.reason {
			t.Errorf("problem(%s) = %q, want %q", c.addr, got, c.reason)
		}
	}
	if got := l.problem(netip.Addr{}); got != "required" {
		t.Errorf("problem(zero) = %q, want required", got)
	}
}

func TestFieldPath(t *testing.T) {
	for _, c := range [][3]string{
		{"assigned", "w0a1b", "assigned.w0a1b"},
		{"assigned", "_x9", "assigned._x9"},
		{"assigned", "9x", `assigned["9x"]`},
		{"assigned", "proj/net", `assigned["proj/net"]`},
		{"assigned", "", `assigned[""]`},
	} {
		if got := fieldPath(c[0], c[1]); got != c[2] {
			t.Errorf("fieldPath(%q, %q) = %q, want %q", c[0], c[1], got, c[2])
		}
	}
}

func TestQuoteShort(t *testing.T) {
	for _, c := range [][2]string{
		{"abc", `"abc"`},
		{strings.Repeat("a", 40), `"` + strings.Repeat("a", 40) + `"`},
		{strings.Repeat("a", 41), `"` + strings.Repeat("a", 40) + `"...`},
		{strings.Repeat("a", 39) + "é" + "x", `"` + strings.Repeat("a", 39) + `"...`}, // no cut inside é
	} {
		if got := quoteShort(c[0]); got != c[1] {
			t.Errorf("quoteShort(%q) = %s, want %s", c[0], got, c[1])
		}
	}
}
