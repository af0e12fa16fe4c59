package agent

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"vgrid/api"
	"vgrid/internal/hypervisor"
	"vgrid/internal/model"
	"vgrid/internal/overlay"
	"vgrid/internal/overlay/overlaytest"
	"vgrid/internal/testenv"
)

// overlayBed is two hosts as network namespaces on one underlay, with the
// datapath of the first; it skips (fails under VGRID_REQUIRE_ALL) without
// root or a kernel with vxlan and ifb devices.
func overlayBed(t *testing.T) (*overlaytest.Bed, *overlay.Host) {
	t.Helper()
	testenv.RequireRoot(t)
	b := overlaytest.New(t, 2)
	for i, l := range []netlink.Link{
		&netlink.Vxlan{LinkAttrs: netlink.LinkAttrs{Name: "vgovprobe0"}, VxlanId: 1, Port: 4789},
		&netlink.Ifb{LinkAttrs: netlink.LinkAttrs{Name: "vgovprobe1"}},
	} {
		if err := b.Underlay.NL.LinkAdd(l); err != nil {
			if errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.ENOTSUP) || strings.Contains(err.Error(), "not supported") {
				testenv.Skip(t, "kernel without %s devices: %v", l.Type(), err)
			}
			t.Fatalf("probe %d: %v", i, err)
		}
		_ = b.Underlay.NL.LinkDel(l)
	}
	dp, err := overlay.Open(b.Hosts[0].Handle)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dp.Close() })
	return b, dp
}

// The agent's network code on a real datapath: a workspace with one NIC
// on VNI 5001 with a member on another host gets its bridge, VXLAN device,
// forwarding entries and capped tap; the cap follows the quantum; once
// the workspace and its QEMU are gone, tap and network are too. What the
// agent did not make stays.
func TestAgentOverlayDatapath(t *testing.T) {
	b, dp := overlayBed(t)
	h1, h2 := b.Hosts[0], b.Hosts[1]
	ctx := t.Context()
	a, drv := newNetAgent(t, h1.Addr.String(), dp)

	// Another's network and tap (of the same names' shapes): left alone.
	if err := dp.Ensure(overlay.Network{VNI: 7, Local: h1.Addr}); err != nil {
		t.Fatal(err)
	}
	foreign := tapName("someone-else", 0)
	if err := dp.EnsureTap(7, foreign, nil); err != nil {
		t.Fatal(err)
	}

	const id = "w-net-1"
	remote := "02:aa:bb:cc:dd:ee"
	w := model.Workspace{ID: id, Project: "p", Desired: model.DesiredRunning,
		Spec: model.WorkspaceSpec{Name: "w1", Quantum: model.Quantum{VCPUs: 1, Memory: 128 * model.MiB, Bandwidth: 50 * model.Mbit}},
		NICs: []model.NIC{{Network: "n1", VNI: 5001, MAC: model.NICMAC(id, "n1"), Address: netip.MustParsePrefix("10.0.0.2/24")}}}
	as := api.Assignments{Workspaces: []model.Workspace{w}, Networks: []api.NetworkAssignment{{
		Project: "p", Name: "n1", VNI: 5001, Subnet: netip.MustParsePrefix("10.0.0.0/24"), Gateway: netip.MustParseAddr("10.0.0.1"),
		Peers: []netip.Addr{h2.Addr}, Remotes: []api.RemoteMember{{MAC: remote, Peer: h2.Addr}},
	}}}
	a.setAssigned(as)
	a.syncNetworks(ctx)
	if vnis, _ := dp.List(); !slices.Equal(vnis, []uint32{7, 5001}) {
		t.Fatalf("networks after the assignment: %v", vnis)
	}

	// The start: tap, cap, the spec's NICs.
	nics, err := a.prepareNICs(w)
	if err != nil {
		t.Fatal(err)
	}
	tap := tapName(id, 0)
	// The bridge's MTU: the underlay's 1500 less the VXLAN overhead.
	want := []hypervisor.NIC{{Tap: tap, MAC: w.NICs[0].MAC, Address: w.NICs[0].Address, MTU: 1450}}
	if !slices.Equal(nics, want) {
		t.Fatalf("NICs %+v, want %+v", nics, want)
	}
	if _, err := drv.Start(ctx, hypervisor.InstanceSpec{ID: id, Hostname: "w1", Quantum: w.Spec.Quantum, NICs: nics,
		Image: hypervisor.LocalImage{Name: "i", Boot: "direct", Kernel: "/k", Disk: "/d", DiskFormat: "raw"}}); err != nil {
		t.Fatal(err)
	}

	br, err := h1.NL.LinkByName("vgb-5001")
	if err != nil || br.Type() != "bridge" {
		t.Fatalf("bridge: %v %v", br, err)
	}
	if addrs, _ := h1.NL.AddrList(br, netlink.FAMILY_V4); len(addrs) != 0 {
		t.Errorf("the bridge has addresses %v: the host must not route between networks", addrs)
	}
	vl, err := h1.NL.LinkByName("vgx-5001")
	if err != nil {
		t.Fatal(err)
	}
	vx, ok := vl.(*netlink.Vxlan)
	if !ok || vx.VxlanId != 5001 || !vx.SrcAddr.Equal(net.IP(h1.Addr.AsSlice())) || vx.Learning || vx.MasterIndex != br.Attrs().Index {
		t.Errorf("vxlan: %+v", vl)
	}
	if peers, err := dp.PeerEntries(5001); err != nil || !slices.Equal(peers, []netip.Addr{h2.Addr}) {
		t.Errorf("peer entries %v %v, want %v", peers, err, h2.Addr)
	}
	fdb, err := dp.FDB(5001)
	if err != nil || !slices.ContainsFunc(fdb, func(r overlay.Remote) bool { return r.MAC.String() == remote && r.Host == h2.Addr }) {
		t.Errorf("FDB %v %v: no entry for %s on %v", fdb, err, remote, h2.Addr)
	}
	tl, err := h1.NL.LinkByName(tap)
	if err != nil {
		t.Fatal(err)
	}
	if tt, ok := tl.(*netlink.Tuntap); !ok || tt.Mode != netlink.TUNTAP_MODE_TAP || tt.NonPersist || tl.Attrs().MasterIndex != br.Attrs().Index {
		t.Errorf("tap %s: %+v", tap, tl)
	}
	if eg, in, err := dp.Bandwidth(tap); err != nil || eg != 50e6 || in != 50e6 {
		t.Errorf("cap %d/%d %v, want 50 Mbit/s each way", eg, in, err)
	}

	// Running, synced again: nothing changes; a new cap is applied, and
	// none removes it.
	a.syncNetworks(ctx)
	if eg, in, _ := dp.Bandwidth(tap); eg != 50e6 || in != 50e6 {
		t.Errorf("cap after a resync %d/%d", eg, in)
	}
	for _, bw := range []model.BitRate{200 * model.Mbit, 0} {
		w.Spec.Quantum.Bandwidth = bw
		as.Workspaces = []model.Workspace{w}
		a.setAssigned(as)
		a.syncNetworks(ctx)
		if eg, in, _ := dp.Bandwidth(tap); eg != uint64(bw) || in != uint64(bw) {
			t.Errorf("cap %d/%d, want %d", eg, in, bw)
		}
	}

	// A restarted agent (same data directory) keeps all of it.
	a2, err := New(Config{DataDir: a.cfg.DataDir, Driver: drv, Logger: quiet(), Overlay: dp, Node: a.cfg.Node})
	if err != nil {
		t.Fatal(err)
	}
	a2.setAssigned(as)
	a2.syncNetworks(ctx)
	if _, err := h1.NL.LinkByName(tap); err != nil {
		t.Fatalf("tap after an agent restart: %v", err)
	}

	// The workspace is gone from the assignments, its QEMU not yet: all
	// stays.
	a2.setAssigned(api.Assignments{})
	a2.syncNetworks(ctx)
	if _, err := h1.NL.LinkByName(tap); err != nil {
		t.Fatalf("tap removed while its QEMU runs: %v", err)
	}
	if vnis, _ := dp.List(); !slices.Equal(vnis, []uint32{7, 5001}) {
		t.Fatalf("networks while the QEMU runs: %v", vnis)
	}
	// Its QEMU gone: tap and network go; the foreign ones stay.
	if err := drv.Delete(ctx, id); err != nil {
		t.Fatal(err)
	}
	a2.syncNetworks(ctx)
	if _, err := h1.NL.LinkByName(tap); err == nil {
		t.Error("tap still there")
	}
	if vnis, _ := dp.List(); !slices.Equal(vnis, []uint32{7}) {
		t.Errorf("networks after the workspace left: %v, want [7]", vnis)
	}
	if taps, _ := dp.Taps(tapPrefix); len(taps) != 1 || taps[0].Name != foreign {
		t.Errorf("taps left: %v, want only %s", taps, foreign)
	}
	a2.netMu.Lock()
	r := *a2.record()
	a2.netMu.Unlock()
	if len(r.Networks) != 0 || len(r.Taps) != 0 {
		t.Errorf("record after the cleanup: %+v", r)
	}
}

// specs records the instance specs the agent starts.
type specs struct {
	hypervisor.Driver
	mu  sync.Mutex
	got map[string]hypervisor.InstanceSpec
}

func (s *specs) Start(ctx context.Context, spec hypervisor.InstanceSpec) (hypervisor.Instance, error) {
	s.mu.Lock()
	s.got[spec.ID] = spec
	s.mu.Unlock()
	return s.Driver.Start(ctx, spec)
}

func (s *specs) spec(id string) (hypervisor.InstanceSpec, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sp, ok := s.got[id]
	return sp, ok
}

// End to end with the control plane: the members of a cluster on its own
// network start with a NIC each, on taps of the network's bridge, capped;
// deleting the cluster removes taps and network.
func TestAgentStartsClusterOnOverlay(t *testing.T) {
	b, dp := overlayBed(t)
	h1 := b.Hosts[0]
	rec := &specs{got: map[string]hypervisor.InstanceSpec{}}
	r := newRigAgent(t, nil, func(c *Config) {
		rec.Driver = c.Driver
		c.Driver, c.Overlay, c.Node.Address = rec, dp, h1.Addr.String()
	})
	ctx := t.Context()
	ctl := r.srv.Controller()
	cs := model.ClusterSpec{Name: "c", Duration: model.Duration(time.Hour), Roles: []model.ClusterRole{{Name: "node", Count: 2, Image: "vgrid-guest",
		Quantum: model.Quantum{VCPUs: 1, CPU: 0.25, Memory: 128 * model.MiB, Disk: model.GiB, Bandwidth: 100 * model.Mbit}}}}
	st, err := ctl.CreateCluster(ctx, "default", cs)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Details) != 2 {
		t.Fatalf("members %+v", st.Details)
	}
	var vni uint32
	var taps []string
	for _, m := range st.Details {
		w := r.waitState(m.Name, model.StateRunning)
		if len(w.NICs) != 1 {
			t.Fatalf("%s: NICs %+v", m.Name, w.NICs)
		}
		vni = w.NICs[0].VNI
		sp, ok := rec.spec(w.ID)
		want := []hypervisor.NIC{{Tap: tapName(w.ID, 0), MAC: w.NICs[0].MAC, Address: w.NICs[0].Address, Gateway: w.NICs[0].Gateway, MTU: 1450}}
		if !ok || !slices.Equal(sp.NICs, want) {
			t.Fatalf("%s started with NICs %+v, want %+v", m.Name, sp.NICs, want)
		}
		taps = append(taps, want[0].Tap)
	}
	br, err := h1.NL.LinkByName(overlay.BridgeName(vni))
	if err != nil {
		t.Fatal(err)
	}
	for _, tap := range taps {
		l, err := h1.NL.LinkByName(tap)
		if err != nil || l.Attrs().MasterIndex != br.Attrs().Index {
			t.Fatalf("tap %s: %v %v", tap, l, err)
		}
		if eg, in, err := dp.Bandwidth(tap); err != nil || eg != 100e6 || in != 100e6 {
			t.Errorf("tap %s: cap %d/%d %v", tap, eg, in, err)
		}
	}
	if _, err := ctl.DeleteCluster(ctx, "default", "c"); err != nil {
		t.Fatal(err)
	}
	r.eventually("taps and network gone", func() bool {
		left, err := dp.Taps(tapPrefix)
		vnis, err2 := dp.List()
		return err == nil && err2 == nil && len(left) == 0 && len(vnis) == 0
	})
}
