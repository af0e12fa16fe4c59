package overlay

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"

	"vgrid/internal/overlay/overlaytest"
	"vgrid/internal/testenv"
)

func TestNames(t *testing.T) {
	if n := BridgeName(MaxVNI); n != "vgb-16777215" || len(n) > ifnameMax {
		t.Errorf("BridgeName(MaxVNI) = %q", n)
	}
	if n := VxlanName(100); n != "vgx-100" {
		t.Errorf("VxlanName(100) = %q", n)
	}
	if n := IFBName("tap0"); n != "vgi-tap0" {
		t.Errorf("IFBName(tap0) = %q", n)
	}
	long := IFBName("vgt-0123456789a")
	if len(long) > ifnameMax || !strings.HasPrefix(long, IFBPrefix) || long == IFBName("vgt-0123456789b") {
		t.Errorf("IFBName of long names: %q, %q", long, IFBName("vgt-0123456789b"))
	}
	a := netip.MustParseAddr("10.0.0.1")
	m := BridgeMAC(100, a)
	if m.String() != BridgeMAC(100, a).String() || m[0] != 0x02 || m.String() == BridgeMAC(101, a).String() ||
		m.String() == BridgeMAC(100, netip.MustParseAddr("10.0.0.2")).String() {
		t.Errorf("BridgeMAC: %s", m)
	}
	for _, bad := range []string{"", "a/b", "with space", "x:y", "abcdefghijklmnop"} {
		if validName(bad) == nil {
			t.Errorf("validName(%q) accepted", bad)
		}
	}
}

func TestTBFFor(t *testing.T) {
	for _, c := range []struct {
		bps          uint64
		burst, limit uint32
	}{
		{10_000_000, MinBurst, MinBurst + 62_500},
		{50_000_000, MinBurst, MinBurst + 312_500},
		{1_000_000_000, 1_250_000, 1_250_000 + 6_250_000},
	} {
		p := TBFFor(c.bps)
		if p.Rate != c.bps/8 || p.Burst != c.burst || p.Limit != c.limit {
			t.Errorf("TBFFor(%d) = %+v, want burst %d limit %d", c.bps, p, c.burst, c.limit)
		}
	}
}

// TestTBFReadback checks that the kernel reports a TBF exactly as
// SetBandwidth asks for it, so that asking again finds it right and
// leaves it alone.
func TestTBFReadback(t *testing.T) {
	testenv.RequireRoot(t)
	b := overlaytest.New(t, 1)
	h, err := Open(b.Hosts[0].Handle)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	eth0, err := h.nl.LinkByName("eth0")
	if err != nil {
		t.Fatal(err)
	}
	for _, bps := range []uint64{MinRate, 10_000_000, 50_000_000, 1_000_000_000, 40_000_000_000} {
		want := TBFFor(bps).qdisc(eth0.Attrs().Index)
		if err := h.ensureTBF(eth0, TBFFor(bps)); err != nil {
			t.Fatal(err)
		}
		have, err := h.rootTBF(eth0)
		if err != nil || have == nil {
			t.Fatalf("%d bit/s: no tbf: %v", bps, err)
		}
		if have.Handle != want.Handle || have.Rate != want.Rate || have.Limit != want.Limit || have.Buffer != want.Buffer {
			t.Errorf("%d bit/s: kernel has rate %d limit %d buffer %d handle %x, asked rate %d limit %d buffer %d handle %x",
				bps, have.Rate, have.Limit, have.Buffer, have.Handle, want.Rate, want.Limit, want.Buffer, want.Handle)
		}
	}
	// The redirect reads back as the one filter ensureRedirect looks for.
	if err := h.ensureRedirect(eth0, TBFFor(10_000_000)); err != nil {
		t.Fatal(err)
	}
	ifb, err := h.nl.LinkByName(IFBName("eth0"))
	if err != nil {
		t.Fatal(err)
	}
	if !h.hasRedirect(eth0, ifb.Attrs().Index) {
		fs, _ := h.nl.FilterList(eth0, netlink.MakeHandle(0xffff, 0))
		t.Errorf("redirect not recognised: %+v", fs)
	}
	if err := h.removeRedirect(eth0); err != nil {
		t.Fatal(err)
	}
	if h.hasRedirect(eth0, ifb.Attrs().Index) {
		t.Error("redirect left")
	}
	if err := h.removeTBF(eth0); err != nil {
		t.Fatal(err)
	}
	qs, _ := h.nl.QdiscList(eth0)
	for _, q := range qs {
		if _, ok := q.(*netlink.Tbf); ok {
			t.Error("tbf left")
		}
	}
}
