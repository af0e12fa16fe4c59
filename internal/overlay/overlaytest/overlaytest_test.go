package overlaytest_test

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"vgrid/internal/overlay/overlaytest"
	"vgrid/internal/testenv"
)

// TestBed checks the bed itself: hosts reach each other over the
// underlay, and a guest on a plain bridge reaches its host.
func TestBed(t *testing.T) {
	testenv.RequireRoot(t)
	b := overlaytest.New(t, 2)
	h1, h2 := b.Hosts[0], b.Hosts[1]
	overlaytest.Serve(t, &overlaytest.Guest{NS: h2.NS, Label: "h2", Addr: netip.PrefixFrom(h2.Addr, 24)}, 7000)
	if got, err := overlaytest.AskTCP(h1.NS, netip.AddrPortFrom(h2.Addr, 7000).String(), 2*time.Second); err != nil || got != "h2" {
		t.Fatalf("h1 -> h2: %q, %v", got, err)
	}

	attrs := netlink.NewLinkAttrs()
	attrs.Name = "vgovbr"
	if err := h1.NL.LinkAdd(&netlink.Bridge{LinkAttrs: attrs}); err != nil {
		t.Fatal(err)
	}
	br, err := h1.NL.LinkByName("vgovbr")
	if err != nil {
		t.Fatal(err)
	}
	addr := &netlink.Addr{IPNet: &net.IPNet{IP: net.IPv4(192, 168, 77, 1), Mask: net.CIDRMask(24, 32)}}
	if err := h1.NL.AddrAdd(br, addr); err != nil {
		t.Fatal(err)
	}
	if err := h1.NL.LinkSetUp(br); err != nil {
		t.Fatal(err)
	}
	g := b.AddGuest(t, h1, "g", "vgovbr", netip.MustParsePrefix("192.168.77.2/24"))
	overlaytest.Serve(t, g, 7001)
	if got, err := overlaytest.AskUDP(h1.NS, "192.168.77.2:7001", 500*time.Millisecond); err != nil || got != "g" {
		t.Fatalf("h1 -> guest: %q, %v", got, err)
	}
	if got, err := overlaytest.AskTCP(g.NS, "10.231.0.12:7000", time.Second); err == nil {
		t.Fatalf("guest reached h2 with no route: %q", got)
	}
}
