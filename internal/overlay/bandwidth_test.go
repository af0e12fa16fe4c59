package overlay_test

import (
	"net/netip"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"vgrid/internal/overlay"
	"vgrid/internal/overlay/overlaytest"
)

func TestBandwidth(t *testing.T) {
	b := newBed(t, 2)
	b.ensureAll(t, 100)
	h1 := b.Hosts[0]
	dp := b.dp[0]
	g1 := b.AddGuest(t, h1, "g1", "vgb-100", netip.MustParsePrefix("10.100.0.1/24"))
	g2 := b.AddGuest(t, b.Hosts[1], "g2", "vgb-100", netip.MustParsePrefix("10.100.0.2/24"))

	port := 7100
	measure := func(from, to *overlaytest.Guest, dur time.Duration) float64 {
		t.Helper()
		port++
		bps, err := overlaytest.Throughput(from.NS, to.NS, to.Addr.Addr(), port, 200*time.Millisecond, dur)
		if err != nil {
			t.Fatalf("%s -> %s: %v", from.Label, to.Label, err)
		}
		return bps
	}
	const mbit = 1e6
	freeOut := measure(g1, g2, 500*time.Millisecond)
	freeIn := measure(g2, g1, 500*time.Millisecond)
	t.Logf("uncapped: g1 sends %.0f Mbit/s, receives %.0f Mbit/s", freeOut/mbit, freeIn/mbit)

	const capBps = 50_000_000
	if err := dp.SetBandwidth(g1.HostIf, capBps, capBps); err != nil {
		t.Fatal(err)
	}
	if e, i, err := dp.Bandwidth(g1.HostIf); err != nil || e != capBps || i != capBps {
		t.Errorf("Bandwidth: %d, %d, %v", e, i, err)
	}
	out := measure(g1, g2, 2*time.Second)
	in := measure(g2, g1, 2*time.Second)
	t.Logf("capped at 50 Mbit/s: g1 sends %.1f Mbit/s, receives %.1f Mbit/s", out/mbit, in/mbit)
	for _, c := range []struct {
		dir       string
		got, free float64
	}{{"egress", out, freeOut}, {"ingress", in, freeIn}} {
		if c.got < 0.8*capBps || c.got > 1.2*capBps {
			t.Errorf("%s: %.1f Mbit/s, want 50 ± 20%%", c.dir, c.got/mbit)
		}
		if c.free < 2*capBps {
			t.Errorf("%s uncapped: %.1f Mbit/s, not much above the cap", c.dir, c.free/mbit)
		}
	}

	// Same rates again: nothing changes. New rates: changed in place.
	ifb, err := h1.NL.LinkByName(overlay.IFBName(g1.HostIf))
	if err != nil {
		t.Fatal(err)
	}
	before := qdiscs(t, h1.NL, g1.HostIf, ifb.Attrs().Name)
	if err := dp.SetBandwidth(g1.HostIf, capBps, capBps); err != nil {
		t.Fatal(err)
	}
	if again := qdiscs(t, h1.NL, g1.HostIf, ifb.Attrs().Name); again != before {
		t.Errorf("same rates changed the qdiscs:\n%s\nto\n%s", before, again)
	}
	if err := dp.SetBandwidth(g1.HostIf, 20_000_000, 100_000_000); err != nil {
		t.Fatal(err)
	}
	if e, i, err := dp.Bandwidth(g1.HostIf); err != nil || e != 20_000_000 || i != 100_000_000 {
		t.Errorf("Bandwidth after resize: %d, %d, %v", e, i, err)
	}
	if ifb2, err := h1.NL.LinkByName(ifb.Attrs().Name); err != nil || ifb2.Attrs().Index != ifb.Attrs().Index {
		t.Errorf("ifb remade on resize: %v", err)
	}
	got := measure(g1, g2, 800*time.Millisecond)
	t.Logf("resized to 20 Mbit/s: g1 sends %.1f Mbit/s", got/mbit)
	if got < 16e6 || got > 24e6 {
		t.Errorf("after resize: %.1f Mbit/s, want 20 ± 20%%", got/mbit)
	}

	// Uncapped again: no TBF, no ingress qdisc, no ifb.
	if err := dp.SetBandwidth(g1.HostIf, 0, 0); err != nil {
		t.Fatal(err)
	}
	if e, i, err := dp.Bandwidth(g1.HostIf); err != nil || e != 0 || i != 0 {
		t.Errorf("Bandwidth after removal: %d, %d, %v", e, i, err)
	}
	if _, err := h1.NL.LinkByName(ifb.Attrs().Name); err == nil {
		t.Error("ifb left after removal")
	}
	l, _ := h1.NL.LinkByName(g1.HostIf)
	qs, _ := h1.NL.QdiscList(l)
	for _, q := range qs {
		if q.Type() == "tbf" || q.Type() == "ingress" {
			t.Errorf("%s qdisc left after removal", q.Type())
		}
	}
	if err := dp.SetBandwidth(g1.HostIf, 0, 0); err != nil {
		t.Errorf("removing twice: %v", err)
	}
}

// qdiscs describes the shaping state of the tap and its ifb.
func qdiscs(t *testing.T, nl *netlink.Handle, names ...string) string {
	t.Helper()
	s := ""
	for _, name := range names {
		l, err := nl.LinkByName(name)
		if err != nil {
			t.Fatal(err)
		}
		qs, err := nl.QdiscList(l)
		if err != nil {
			t.Fatal(err)
		}
		for _, q := range qs {
			s += name + " " + q.Type() + " " + netlink.HandleStr(q.Attrs().Handle) + " parent " + netlink.HandleStr(q.Attrs().Parent)
			if tb, ok := q.(*netlink.Tbf); ok {
				s += " " + formatTBF(tb)
			}
			s += "\n"
		}
		fs, err := nl.FilterList(l, netlink.MakeHandle(0xffff, 0))
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range fs {
			s += name + " filter " + f.Type() + " " + netlink.HandleStr(f.Attrs().Handle) + "\n"
		}
	}
	return s
}

func formatTBF(tb *netlink.Tbf) string {
	return "rate=" + itoa(tb.Rate) + " limit=" + itoa(uint64(tb.Limit)) + " buffer=" + itoa(uint64(tb.Buffer))
}

func itoa(v uint64) string {
	const digits = "0123456789"
	if v == 0 {
		return "0"
	}
	var b []byte
	for ; v > 0; v /= 10 {
		b = append([]byte{digits[v%10]}, b...)
	}
	return string(b)
}
