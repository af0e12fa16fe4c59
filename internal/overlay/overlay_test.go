package overlay_test

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"vgrid/internal/overlay"
	"vgrid/internal/overlay/overlaytest"
	"vgrid/internal/testenv"
)

// bed is a test bed with an overlay.Host per host namespace.
type bed struct {
	*overlaytest.Bed
	dp []*overlay.Host
}

func newBed(t *testing.T, hosts int) *bed {
	t.Helper()
	testenv.RequireRoot(t)
	b := &bed{Bed: overlaytest.New(t, hosts)}
	requireKernel(t, b.Underlay)
	for _, h := range b.Hosts {
		dp, err := overlay.Open(h.Handle)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { dp.Close() })
		b.dp = append(b.dp, dp)
	}
	return b
}

// requireKernel skips (or fails, under VGRID_REQUIRE_ALL) without vxlan
// or ifb support, probed in the bed's underlay namespace.
func requireKernel(t *testing.T, ns *overlaytest.NS) {
	t.Helper()
	vx := netlink.NewLinkAttrs()
	vx.Name = "vgovprobe0"
	ifb := netlink.NewLinkAttrs()
	ifb.Name = "vgovprobe1"
	for _, l := range []netlink.Link{
		&netlink.Vxlan{LinkAttrs: vx, VxlanId: 1, Port: 4789},
		&netlink.Ifb{LinkAttrs: ifb},
	} {
		if err := ns.NL.LinkAdd(l); err != nil {
			if errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.ENOTSUP) || strings.Contains(err.Error(), "not supported") {
				testenv.Skip(t, "kernel without %s devices: %v", l.Type(), err)
			}
			t.Fatalf("probe %s: %v", l.Type(), err)
		}
		if err := ns.NL.LinkDel(l); err != nil {
			t.Fatal(err)
		}
	}
}

// network is VNI vni as host i (0-based) sees it, with every host a peer.
func (b *bed) network(vni uint32, i int) overlay.Network {
	return overlay.Network{VNI: vni, Local: b.Hosts[i].Addr, Peers: b.Addrs()}
}

func (b *bed) ensureAll(t *testing.T, vni uint32) {
	t.Helper()
	for i, dp := range b.dp {
		if err := dp.Ensure(b.network(vni, i)); err != nil {
			t.Fatalf("host %d: %v", i+1, err)
		}
	}
}

func ap(p netip.Prefix, port int) string {
	return netip.AddrPortFrom(p.Addr(), uint16(port)).String()
}

func TestConnectivity(t *testing.T) {
	b := newBed(t, 2)
	b.ensureAll(t, 100)
	h1 := b.Hosts[0]

	// The devices as designed.
	br, err := h1.NL.LinkByName("vgb-100")
	if err != nil {
		t.Fatal(err)
	}
	l, err := h1.NL.LinkByName("vgx-100")
	if err != nil {
		t.Fatal(err)
	}
	vx := l.(*netlink.Vxlan)
	if vx.VxlanId != 100 || vx.Port != 4789 || vx.Learning || len(vx.Group) != 0 || !vx.SrcAddr.Equal(net.IP(h1.Addr.AsSlice())) {
		t.Errorf("vxlan: id %d port %d learning %v group %v local %v", vx.VxlanId, vx.Port, vx.Learning, vx.Group, vx.SrcAddr)
	}
	if vx.MasterIndex != br.Attrs().Index || vx.MTU != 1450 || br.Attrs().MTU != 1450 {
		t.Errorf("vxlan master %d (bridge %d), MTU %d, bridge MTU %d", vx.MasterIndex, br.Attrs().Index, vx.MTU, br.Attrs().MTU)
	}
	peers, err := b.dp[0].PeerEntries(100)
	if err != nil || !slices.Equal(peers, []netip.Addr{b.Hosts[1].Addr}) {
		t.Errorf("FDB peers %v, %v; want [%v]", peers, err, b.Hosts[1].Addr)
	}

	g1 := b.AddGuest(t, h1, "g1", "vgb-100", netip.MustParsePrefix("10.100.0.1/24"))
	g2 := b.AddGuest(t, b.Hosts[1], "g2", "vgb-100", netip.MustParsePrefix("10.100.0.2/24"))
	overlaytest.Serve(t, g1, 7000)
	overlaytest.Serve(t, g2, 7000)
	for _, c := range []struct{ from, to *overlaytest.Guest }{{g1, g2}, {g2, g1}} {
		if got, err := overlaytest.AskTCP(c.from.NS, ap(c.to.Addr, 7000), 3*time.Second); err != nil || got != c.to.Label {
			t.Errorf("TCP %s -> %s: %q, %v", c.from.Label, c.to.Label, got, err)
		}
		if got, err := overlaytest.AskUDP(c.from.NS, ap(c.to.Addr, 7000), 3*time.Second); err != nil || got != c.to.Label {
			t.Errorf("UDP %s -> %s: %q, %v", c.from.Label, c.to.Label, got, err)
		}
	}
	// Ports came and went: the bridge kept the address Ensure gave it.
	if br, err = h1.NL.LinkByName("vgb-100"); err != nil || !slices.Equal(br.Attrs().HardwareAddr, overlay.BridgeMAC(100, h1.Addr)) {
		t.Errorf("bridge address %v, want %v", br.Attrs().HardwareAddr, overlay.BridgeMAC(100, h1.Addr))
	}
}

func TestIsolation(t *testing.T) {
	b := newBed(t, 2)
	b.ensureAll(t, 100)
	b.ensureAll(t, 200)
	h1, h2 := b.Hosts[0], b.Hosts[1]
	// Same subnet in both networks; g4 even has g2's address.
	g1 := b.AddGuest(t, h1, "g1", "vgb-100", netip.MustParsePrefix("10.0.0.1/24"))
	g2 := b.AddGuest(t, h2, "g2", "vgb-100", netip.MustParsePrefix("10.0.0.2/24"))
	g3 := b.AddGuest(t, h1, "g3", "vgb-200", netip.MustParsePrefix("10.0.0.3/24"))
	g4 := b.AddGuest(t, h2, "g4", "vgb-200", netip.MustParsePrefix("10.0.0.2/24"))
	for _, g := range []*overlaytest.Guest{g1, g2, g3, g4} {
		overlaytest.Serve(t, g, 7000)
	}
	// Each network reaches its own guest behind the shared address.
	for _, c := range []struct {
		from *overlaytest.Guest
		want string
	}{{g1, "g2"}, {g3, "g4"}} {
		if got, err := overlaytest.AskTCP(c.from.NS, "10.0.0.2:7000", 3*time.Second); err != nil || got != c.want {
			t.Errorf("%s -> 10.0.0.2: %q, %v; want %s", c.from.Label, got, err, c.want)
		}
		if got, err := overlaytest.AskUDP(c.from.NS, "10.0.0.2:7000", 3*time.Second); err != nil || got != c.want {
			t.Errorf("UDP %s -> 10.0.0.2: %q, %v; want %s", c.from.Label, got, err, c.want)
		}
	}
	// Across networks nothing answers, on the same host or another.
	var wg sync.WaitGroup
	for _, c := range []struct{ from, to *overlaytest.Guest }{{g1, g3}, {g3, g1}, {g2, g3}, {g4, g1}} {
		wg.Go(func() {
			if got, err := overlaytest.AskTCP(c.from.NS, ap(c.to.Addr, 7000), time.Second); err == nil {
				t.Errorf("%s reached %s: %q", c.from.Label, c.to.Label, got)
			}
			if got, err := overlaytest.AskUDP(c.from.NS, ap(c.to.Addr, 7000), 500*time.Millisecond); err == nil {
				t.Errorf("UDP: %s reached %s: %q", c.from.Label, c.to.Label, got)
			}
		})
	}
	wg.Wait()
	// And ARP never resolved: g1 has no link-layer address for g3.
	eth0, err := g1.NL.LinkByName("eth0")
	if err != nil {
		t.Fatal(err)
	}
	neighs, err := g1.NL.NeighList(eth0.Attrs().Index, netlink.FAMILY_V4)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range neighs {
		if n.IP.Equal(net.IP(g3.Addr.Addr().AsSlice())) && len(n.HardwareAddr) > 0 && n.State&(netlink.NUD_REACHABLE|netlink.NUD_STALE|netlink.NUD_DELAY|netlink.NUD_PROBE) != 0 {
			t.Errorf("g1 resolved g3's address: %v state %#x", n.HardwareAddr, n.State)
		}
	}
}

// snapshot is what Ensure manages on one host, by value.
func snapshot(t *testing.T, b *bed, i int, vni uint32) string {
	t.Helper()
	nl := b.Hosts[i].NL
	var s strings.Builder
	for _, name := range []string{overlay.BridgeName(vni), overlay.VxlanName(vni)} {
		l, err := nl.LinkByName(name)
		if err != nil {
			t.Fatal(err)
		}
		a := l.Attrs()
		fmt.Fprintf(&s, "%s idx=%d mtu=%d mac=%s master=%d flags=%v\n", name, a.Index, a.MTU, a.HardwareAddr, a.MasterIndex, a.Flags)
		if vx, ok := l.(*netlink.Vxlan); ok {
			fmt.Fprintf(&s, "  vni=%d port=%d local=%s learning=%v\n", vx.VxlanId, vx.Port, vx.SrcAddr, vx.Learning)
		}
		addrs, _ := nl.AddrList(l, netlink.FAMILY_ALL)
		for _, ad := range addrs {
			fmt.Fprintf(&s, "  addr %s\n", ad.IPNet)
		}
	}
	peers, err := b.dp[i].PeerEntries(vni)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(&s, "peers %v\n", peers)
	return s.String()
}

func TestEnsureIdempotent(t *testing.T) {
	b := newBed(t, 3)
	dp, h1 := b.dp[0], b.Hosts[0]
	n := b.network(100, 0)
	if err := dp.Ensure(n); err != nil {
		t.Fatal(err)
	}
	first := snapshot(t, b, 0, 100)
	if !strings.Contains(first, fmt.Sprintf("peers [%v %v]", b.Hosts[1].Addr, b.Hosts[2].Addr)) {
		t.Errorf("after Ensure:\n%s", first)
	}

	// Twice: the same devices, entries and addresses, and the kernel
	// reports no change at all.
	time.Sleep(100 * time.Millisecond) // let the first round's events pass
	links := make(chan netlink.LinkUpdate, 64)
	neighs := make(chan netlink.NeighUpdate, 64)
	done := make(chan struct{})
	defer close(done)
	if err := netlink.LinkSubscribeAt(h1.Handle, links, done); err != nil {
		t.Fatal(err)
	}
	if err := netlink.NeighSubscribeAt(h1.Handle, neighs, done); err != nil {
		t.Fatal(err)
	}
	if err := dp.Ensure(n); err != nil {
		t.Fatal(err)
	}
	if again := snapshot(t, b, 0, 100); again != first {
		t.Errorf("second Ensure changed the state:\n%s\nto\n%s", first, again)
	}
	select {
	case u := <-links:
		t.Errorf("second Ensure changed link %s", u.Attrs().Name)
	case u := <-neighs:
		t.Errorf("second Ensure changed neighbour %v", u.Neigh)
	case <-time.After(200 * time.Millisecond):
	}

	// A peer leaves, then comes back.
	n.Peers = []netip.Addr{b.Hosts[1].Addr}
	if err := dp.Ensure(n); err != nil {
		t.Fatal(err)
	}
	if p, _ := dp.PeerEntries(100); !slices.Equal(p, []netip.Addr{b.Hosts[1].Addr}) {
		t.Errorf("after h3 left: peers %v", p)
	}
	select { // the monitor above does see changes
	case <-neighs:
	case <-time.After(time.Second):
		t.Error("no neighbour event for the removed FDB entry")
	}
	n.Peers = b.Addrs()
	if err := dp.Ensure(n); err != nil {
		t.Fatal(err)
	}
	if again := snapshot(t, b, 0, 100); again != first {
		t.Errorf("after h3 came back:\n%s\nwant\n%s", again, first)
	}

	// A gateway address, then none.
	n.Gateway = netip.MustParsePrefix("10.100.0.254/24")
	if err := dp.Ensure(n); err != nil {
		t.Fatal(err)
	}
	if s := snapshot(t, b, 0, 100); !strings.Contains(s, "addr 10.100.0.254/24") {
		t.Errorf("no gateway address:\n%s", s)
	}
	n.Gateway = netip.Prefix{}
	if err := dp.Ensure(n); err != nil {
		t.Fatal(err)
	}
	if again := snapshot(t, b, 0, 100); again != first {
		t.Errorf("after the gateway went:\n%s\nwant\n%s", again, first)
	}

	// Another port and MTU: the VXLAN device is remade, with its entries,
	// and the taps follow the MTU.
	if err := dp.EnsureTap(100, "vgovtap0", nil); err != nil {
		t.Fatal(err)
	}
	n.Port, n.UnderlayMTU = 8472, 1400
	if err := dp.Ensure(n); err != nil {
		t.Fatal(err)
	}
	if tap, err := h1.NL.LinkByName("vgovtap0"); err != nil || tap.Attrs().MTU != 1350 {
		t.Errorf("tap after the MTU changed: %v", err)
	}
	l, err := h1.NL.LinkByName("vgx-100")
	if err != nil {
		t.Fatal(err)
	}
	if vx := l.(*netlink.Vxlan); vx.Port != 8472 || vx.MTU != 1350 {
		t.Errorf("vxlan port %d MTU %d, want 8472 and 1350", vx.Port, vx.MTU)
	}
	if p, _ := dp.PeerEntries(100); len(p) != 2 {
		t.Errorf("remade vxlan has peers %v", p)
	}
	if vnis, err := dp.List(); err != nil || !slices.Equal(vnis, []uint32{100}) {
		t.Errorf("List: %v, %v", vnis, err)
	}

	// Invalid networks are refused before anything is touched.
	for _, bad := range []overlay.Network{
		{VNI: 0, Local: h1.Addr},
		{VNI: 1 << 24, Local: h1.Addr},
		{VNI: 5, Local: netip.Addr{}},
		{VNI: 5, Local: h1.Addr, Peers: []netip.Addr{netip.MustParseAddr("fd00::1")}},
		{VNI: 5, Local: netip.MustParseAddr("192.0.2.1")}, // not here, and no MTU given
	} {
		if err := dp.Ensure(bad); err == nil {
			t.Errorf("Ensure(%+v) succeeded", bad)
		}
	}
	if vnis, _ := dp.List(); !slices.Equal(vnis, []uint32{100}) {
		t.Errorf("List after refusals: %v", vnis)
	}
}

func TestTap(t *testing.T) {
	b := newBed(t, 1)
	dp, h1 := b.dp[0], b.Hosts[0]
	if err := dp.EnsureTap(100, "vgovtap0", nil); err == nil {
		t.Error("EnsureTap without the network succeeded")
	}
	b.ensureAll(t, 100)
	mac := net.HardwareAddr{0xfe, 0x54, 0, 0, 0, 1}
	for range 2 {
		if err := dp.EnsureTap(100, "vgovtap0", mac); err != nil {
			t.Fatal(err)
		}
	}
	br, _ := h1.NL.LinkByName("vgb-100")
	l, err := h1.NL.LinkByName("vgovtap0")
	if err != nil {
		t.Fatal(err)
	}
	tap, ok := l.(*netlink.Tuntap)
	if !ok {
		t.Fatalf("vgovtap0 is a %s", l.Type())
	}
	a := tap.Attrs()
	if tap.Mode != netlink.TUNTAP_MODE_TAP || tap.NonPersist || tap.Owner != 0 || tap.Flags&netlink.TUNTAP_MULTI_QUEUE != 0 ||
		a.MasterIndex != br.Attrs().Index || a.Flags&net.FlagUp == 0 || a.MTU != 1450 || !slices.Equal(a.HardwareAddr, mac) {
		t.Errorf("tap: mode %v persistent %v owner %d flags %#x master %d (bridge %d) up %v MTU %d mac %s",
			tap.Mode, !tap.NonPersist, tap.Owner, tap.Flags, a.MasterIndex, br.Attrs().Index, a.Flags&net.FlagUp != 0, a.MTU, a.HardwareAddr)
	}
	// QEMU can attach: it opens the tap by name with its own flags.
	if err := h1.Do(func() error { return attachTap("vgovtap0") }); err != nil {
		t.Errorf("attach like QEMU: %v", err)
	}
	if err := dp.SetBandwidth("vgovtap0", 10_000_000, 20_000_000); err != nil {
		t.Fatal(err)
	}
	if _, err := h1.NL.LinkByName(overlay.IFBName("vgovtap0")); err != nil {
		t.Errorf("no ifb: %v", err)
	}
	for range 2 {
		if err := dp.DeleteTap("vgovtap0"); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range []string{"vgovtap0", overlay.IFBName("vgovtap0")} {
		if _, err := h1.NL.LinkByName(name); err == nil {
			t.Errorf("%s still there", name)
		}
	}
	// Not a tap: refused, left alone.
	if err := dp.EnsureTap(100, "eth0", nil); err == nil {
		t.Error("EnsureTap on eth0 succeeded")
	}
	if err := dp.DeleteTap("eth0"); err == nil {
		t.Error("DeleteTap on eth0 succeeded")
	}
	if _, err := h1.NL.LinkByName("eth0"); err != nil {
		t.Errorf("eth0: %v", err)
	}
}

// attachTap does what QEMU's -netdev tap,ifname=<name> does.
func attachTap(name string) error {
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	req, err := unix.NewIfreq(name)
	if err != nil {
		return err
	}
	req.SetUint16(unix.IFF_TAP | unix.IFF_NO_PI | unix.IFF_VNET_HDR)
	return unix.IoctlIfreq(fd, unix.TUNSETIFF, req)
}

func TestDelete(t *testing.T) {
	b := newBed(t, 2)
	dp, h1 := b.dp[0], b.Hosts[0]
	b.ensureAll(t, 100)
	b.ensureAll(t, 200)
	if err := dp.EnsureTap(100, "vgovtap0", nil); err != nil {
		t.Fatal(err)
	}
	if vnis, err := dp.List(); err != nil || !slices.Equal(vnis, []uint32{100, 200}) {
		t.Fatalf("List: %v, %v", vnis, err)
	}
	if err := dp.Delete(100); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"vgb-100", "vgx-100"} {
		if _, err := h1.NL.LinkByName(name); err == nil {
			t.Errorf("%s still there", name)
		}
	}
	if tap, err := h1.NL.LinkByName("vgovtap0"); err != nil || tap.Attrs().MasterIndex != 0 {
		t.Errorf("tap after Delete: %v", err)
	}
	if vnis, _ := dp.List(); !slices.Equal(vnis, []uint32{200}) {
		t.Errorf("List after Delete(100): %v", vnis)
	}
	if err := dp.Delete(200); err != nil {
		t.Fatal(err)
	}
	if err := dp.Delete(200); err != nil {
		t.Errorf("second Delete: %v", err)
	}
	if err := dp.DeleteTap("vgovtap0"); err != nil {
		t.Fatal(err)
	}
	links, err := h1.NL.LinkList()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, l := range links {
		names = append(names, l.Attrs().Name)
	}
	if !slices.Equal(names, []string{"lo", "eth0"}) {
		t.Errorf("links left: %v", names)
	}
	if vnis, _ := dp.List(); len(vnis) != 0 {
		t.Errorf("List at the end: %v", vnis)
	}
	if _, err := os.Stat("/var/run/netns/" + h1.Name); err != nil {
		t.Errorf("host namespace: %v", err)
	}
}

// TestOpen checks the two other ways to name a host's namespace: its file,
// and the calling thread's current namespace.
func TestOpen(t *testing.T) {
	b := newBed(t, 1)
	h1 := b.Hosts[0]
	dp, err := overlay.OpenPath(h1.Path())
	if err != nil {
		t.Fatal(err)
	}
	defer dp.Close()
	if err := dp.Ensure(b.network(7, 0)); err != nil {
		t.Fatal(err)
	}
	if _, err := h1.NL.LinkByName("vgb-7"); err != nil {
		t.Errorf("Ensure via OpenPath: %v", err)
	}
	var vnis []uint32
	err = h1.Do(func() error {
		here, err := overlay.Open(netns.None())
		if err != nil {
			return err
		}
		defer here.Close()
		vnis, err = here.List()
		return err
	})
	if err != nil || !slices.Equal(vnis, []uint32{7}) {
		t.Errorf("List via Open(None) in h1: %v, %v", vnis, err)
	}
}

// TestUnicast shows what Remotes are for: without them the VXLAN device
// floods unicast to every peer; with them it goes to its host only.
func TestUnicast(t *testing.T) {
	b := newBed(t, 3)
	b.ensureAll(t, 100)
	g1 := b.AddGuest(t, b.Hosts[0], "g1", "vgb-100", netip.MustParsePrefix("10.100.0.1/24"))
	g2 := b.AddGuest(t, b.Hosts[1], "g2", "vgb-100", netip.MustParsePrefix("10.100.0.2/24"))
	rx := func(i int) uint64 {
		l, err := b.Hosts[i].NL.LinkByName("vgx-100")
		if err != nil {
			t.Fatal(err)
		}
		return l.Attrs().Statistics.RxBytes
	}
	port := 7200
	send := func() (toH2, toH3 uint64) {
		r2, r3 := rx(1), rx(2)
		port++
		if _, err := overlaytest.Throughput(g1.NS, g2.NS, g2.Addr.Addr(), port, 0, 300*time.Millisecond); err != nil {
			t.Fatal(err)
		}
		return rx(1) - r2, rx(2) - r3
	}
	toH2, toH3 := send()
	t.Logf("no remotes: h2 received %d bytes, h3 %d", toH2, toH3)
	if toH3 < toH2/2 {
		t.Errorf("without remotes h3 got %d of %d bytes: expected the flood", toH3, toH2)
	}

	mac := func(g *overlaytest.Guest) net.HardwareAddr {
		l, err := g.NL.LinkByName("eth0")
		if err != nil {
			t.Fatal(err)
		}
		return l.Attrs().HardwareAddr
	}
	remotes := []overlay.Remote{{MAC: mac(g1), Host: b.Hosts[0].Addr}, {MAC: mac(g2), Host: b.Hosts[1].Addr}}
	for i, dp := range b.dp {
		n := b.network(100, i)
		n.Remotes = remotes
		if err := dp.Ensure(n); err != nil {
			t.Fatal(err)
		}
	}
	fdb, err := b.dp[2].FDB(100)
	if err != nil || len(fdb) != 4 {
		t.Errorf("h3 FDB: %v, %v; want 2 peers and 2 remotes", fdb, err)
	}
	toH2, toH3 = send()
	t.Logf("with remotes: h2 received %d bytes, h3 %d", toH2, toH3)
	if toH3 > toH2/20 {
		t.Errorf("with remotes h3 still got %d of %d bytes", toH3, toH2)
	}

	// A guest moves from h2 to h3: its entry follows, in place.
	remotes[1].Host = b.Hosts[2].Addr
	n := b.network(100, 0)
	n.Remotes = remotes
	if err := b.dp[0].Ensure(n); err != nil {
		t.Fatal(err)
	}
	fdb, _ = b.dp[0].FDB(100)
	var dsts []netip.Addr
	for _, r := range fdb {
		if slices.Equal(r.MAC, remotes[1].MAC) {
			dsts = append(dsts, r.Host)
		}
	}
	if !slices.Equal(dsts, []netip.Addr{b.Hosts[2].Addr}) {
		t.Errorf("moved guest's entries on h1: %v", dsts)
	}
	// Bad remotes are refused.
	n.Remotes = []overlay.Remote{{MAC: net.HardwareAddr{1, 0, 0, 0, 0, 1}, Host: b.Hosts[1].Addr}}
	if err := b.dp[0].Ensure(n); err == nil {
		t.Error("multicast remote MAC accepted")
	}
}
