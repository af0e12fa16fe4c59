package overlay_test

import (
	"slices"
	"testing"

	"github.com/vishvananda/netlink"

	"vgrid/internal/overlay"
)

func TestTaps(t *testing.T) {
	b := newBed(t, 1)
	dp, h1 := b.dp[0], b.Hosts[0]
	b.ensureAll(t, 100)
	b.ensureAll(t, 200)
	for _, c := range []struct {
		vni  uint32
		name string
	}{{100, "vgovtap1"}, {200, "vgovtap0"}, {100, "othertap"}} {
		if err := dp.EnsureTap(c.vni, c.name, nil); err != nil {
			t.Fatal(err)
		}
	}
	// A tap on no bridge, and a device of the prefix that is no tap.
	if err := dp.EnsureTap(100, "vgovtap2", nil); err != nil {
		t.Fatal(err)
	}
	l, _ := h1.NL.LinkByName("vgovtap2")
	if err := h1.NL.LinkSetNoMaster(l); err != nil {
		t.Fatal(err)
	}
	d := netlink.NewLinkAttrs()
	d.Name = "vgovtapx"
	if err := h1.NL.LinkAdd(&netlink.Bridge{LinkAttrs: d}); err != nil {
		t.Fatal(err)
	}
	got, err := dp.Taps("vgovtap")
	if err != nil {
		t.Fatal(err)
	}
	want := []overlay.Tap{{Name: "vgovtap0", VNI: 200}, {Name: "vgovtap1", VNI: 100}, {Name: "vgovtap2"}}
	if !slices.Equal(got, want) {
		t.Errorf("Taps: got %v, want %v", got, want)
	}
	all, err := dp.Taps("")
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 4 {
		t.Errorf("Taps(\"\"): %v, want 4 taps", all)
	}
}
