package agent

import (
	"errors"
	"net"
	"net/netip"
	"reflect"
	"strings"
	"testing"

	"vgrid/api"
	"vgrid/internal/hypervisor"
	"vgrid/internal/hypervisor/fake"
	"vgrid/internal/model"
	"vgrid/internal/overlay"
)

func TestTapName(t *testing.T) {
	a, b := tapName("w-1", 0), tapName("w-2", 0)
	if a != tapName("w-1", 0) || a == b || a == tapName("w-1", 1) {
		t.Errorf("tap names not deterministic and distinct: %s %s %s", a, b, tapName("w-1", 1))
	}
	if !strings.HasPrefix(a, tapOwner("w-1")) || ownerOf(a) != tapOwner("w-1") || len(tapOwner("w-1")) != 12 {
		t.Errorf("owner of %s: %s", a, tapOwner("w-1"))
	}
	for _, i := range []int{0, 9, 10, maxNICs - 1} {
		n := tapName("a-very-long-workspace-id-of-forty-bytes-", i)
		if len(n) > 15 || !isTapName(n) {
			t.Errorf("tapName(…, %d) = %q: %d bytes, isTapName %v", i, n, len(n), isTapName(n))
		}
	}
	for _, n := range []string{"", "vgt", "vgt0123abcd", "vgt0123abcd-", "vgt0123ABCD-0", "vgt0123abcx-0", "vgt0123abcd-01",
		"vgt0123abcd-x", "vgt0123abcd_0", "vgb-5001", "eth0", "vgt0123abcd-1000"} {
		if isTapName(n) {
			t.Errorf("isTapName(%q) = true", n)
		}
	}
	if !isTapName("vgt0123abcd-0") || !isTapName("vgt0123abcd-999") {
		t.Error("isTapName refuses tap names")
	}
}

func TestUnderlayAddr(t *testing.T) {
	for _, c := range []struct {
		in   string
		want string
	}{
		{"10.99.0.3", "10.99.0.3"},
		{"10.99.0.3:7443", "10.99.0.3"},
		{"[fd00::3]:7443", "fd00::3"},
		{"fd00::3", "fd00::3"},
		{"::ffff:10.1.2.3", "10.1.2.3"},
		{"", ""},
		{"host.example", ""},
		{"127.0.0.1", ""},
		{"0.0.0.0", ""},
		{"224.0.0.1", ""},
		{"fe80::1%eth0", ""},
	} {
		a, ok := underlayAddr(c.in)
		if got := map[bool]string{true: a.String(), false: ""}[ok]; got != c.want || ok && !a.IsValid() {
			t.Errorf("underlayAddr(%q) = %v %v, want %q", c.in, a, ok, c.want)
		}
	}
}

func TestHostUnderlay(t *testing.T) {
	for _, c := range []struct {
		n    model.Node
		want string
	}{
		{model.Node{Address: "10.99.0.3", Transfer: "10.99.0.4:7444"}, "10.99.0.3"},
		{model.Node{Transfer: "10.99.0.4:7444"}, "10.99.0.4"},
		{model.Node{Transfer: "127.0.0.1:7444"}, "invalid IP"},
		{model.Node{Address: "box.example", Transfer: "10.99.0.4:7444"}, "10.99.0.4"},
		{model.Node{Address: "127.0.0.1", Transfer: "10.99.0.4:7444"}, "invalid IP"},
		{model.Node{}, "invalid IP"},
	} {
		if got := hostUnderlay(c.n).String(); got != c.want {
			t.Errorf("hostUnderlay(%+v) = %s, want %s", c.n, got, c.want)
		}
	}
}

func TestNICSpecs(t *testing.T) {
	w := model.Workspace{ID: "w-1", NICs: []model.NIC{
		{Network: "a", VNI: 7, MAC: "02:00:00:00:00:01", Address: netip.MustParsePrefix("10.0.0.2/24"), Gateway: netip.MustParseAddr("10.0.0.1")},
		{Network: "b", VNI: 8, MAC: "02:00:00:00:00:02", Address: netip.MustParsePrefix("10.1.0.2/24")},
	}}
	got := nicSpecs(w)
	want := []hypervisor.NIC{
		{Tap: tapName("w-1", 0), MAC: "02:00:00:00:00:01", Address: netip.MustParsePrefix("10.0.0.2/24"), Gateway: netip.MustParseAddr("10.0.0.1")},
		{Tap: tapName("w-1", 1), MAC: "02:00:00:00:00:02", Address: netip.MustParsePrefix("10.1.0.2/24")},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("nicSpecs: got %+v, want %+v", got, want)
	}
	if nicSpecs(model.Workspace{ID: "x"}) != nil {
		t.Error("nicSpecs of a workspace without NICs is not nil")
	}
}

func TestOverlayNetwork(t *testing.T) {
	local := netip.MustParseAddr("10.9.0.1")
	p2, p3 := netip.MustParseAddr("10.9.0.2"), netip.MustParseAddr("10.9.0.3")
	n := api.NetworkAssignment{Project: "p", Name: "n", VNI: 42, Subnet: netip.MustParsePrefix("10.0.0.0/24"), Gateway: netip.MustParseAddr("10.0.0.1"), NAT: true,
		Peers: []netip.Addr{p2, netip.MustParseAddr("fd00::1"), p3, {}},
		Remotes: []api.RemoteMember{
			{MAC: "02:00:00:00:00:0a", Peer: p2},
			{MAC: "not a mac", Peer: p2},
			{MAC: "01:00:5e:00:00:01", Peer: p2}, // multicast
			{MAC: "02:00:00:00:00:0b", Peer: netip.MustParseAddr("fd00::1")},
			{MAC: "02:00:00:00:00:0c", Peer: p3},
		}}
	got, warn := overlayNetwork(n, local)
	want := overlay.Network{VNI: 42, Local: local, Peers: []netip.Addr{p2, p3}, Remotes: []overlay.Remote{
		{MAC: net.HardwareAddr{2, 0, 0, 0, 0, 0x0a}, Host: p2}, {MAC: net.HardwareAddr{2, 0, 0, 0, 0, 0x0c}, Host: p3}}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("overlayNetwork:\n got %+v\nwant %+v", got, want)
	}
	if len(warn) != 5 {
		t.Errorf("warnings: %q, want 5", warn)
	}
	// No gateway on the bridge: the host neither routes nor NATs.
	if got.Gateway.IsValid() {
		t.Errorf("gateway %v on the bridge", got.Gateway)
	}
	// A host alone: loopback, no peers, an MTU of its own.
	got, warn = overlayNetwork(n, netip.Addr{})
	if want := (overlay.Network{VNI: 42, Local: netip.MustParseAddr("127.0.0.1"), UnderlayMTU: singleHostMTU}); !reflect.DeepEqual(got, want) || len(warn) != 1 {
		t.Errorf("overlayNetwork alone: %+v %q, want %+v and a warning", got, warn, want)
	}
	if _, warn := overlayNetwork(api.NetworkAssignment{VNI: 42}, netip.Addr{}); len(warn) != 0 {
		t.Errorf("a network without peers on a host alone: warnings %q", warn)
	}
}

func TestPlanNetworks(t *testing.T) {
	local := netip.MustParseAddr("10.9.0.1")
	peer := netip.MustParseAddr("10.9.0.2")
	nic := func(vni uint32) model.NIC {
		return model.NIC{Network: "n" + string(rune('0'+vni%10)), VNI: vni, MAC: "02:00:00:00:00:01", Address: netip.MustParsePrefix("10.0.0.2/24")}
	}
	ws := func(id string, d model.Desired, bw model.BitRate, vnis ...uint32) model.Workspace {
		w := model.Workspace{ID: id, Desired: d, Spec: model.WorkspaceSpec{Name: id, Quantum: model.Quantum{Bandwidth: bw}}}
		for _, v := range vnis {
			w.NICs = append(w.NICs, nic(v))
		}
		return w
	}
	netw := func(vni uint32, peers ...netip.Addr) api.NetworkAssignment {
		return api.NetworkAssignment{Project: "p", Name: "n", VNI: vni, Peers: peers}
	}
	ens := func(vni uint32, peers ...netip.Addr) overlay.Network {
		return overlay.Network{VNI: vni, Local: local, Peers: peers}
	}
	rec := func(nets []uint32, taps ...string) netRecord {
		r := netRecord{Networks: map[uint32]bool{}, Taps: map[string]bool{}}
		for _, v := range nets {
			r.Networks[v] = true
		}
		for _, t := range taps {
			r.Taps[t] = true
		}
		return r
	}
	tap := func(id string, i int, vni uint32) overlay.Tap { return overlay.Tap{Name: tapName(id, i), VNI: vni} }
	live := func(ids ...string) map[string]bool {
		m := map[string]bool{}
		for _, id := range ids {
			m[id] = true
		}
		return m
	}
	running := model.DesiredRunning
	for _, c := range []struct {
		name string
		as   netAssigned
		cur  netCurrent
		want netPlan
		warn int
	}{
		{name: "nothing", as: netAssigned{Local: local}, cur: netCurrent{Owned: rec(nil)}},
		{
			name: "a workspace's network is ensured",
			as:   netAssigned{Local: local, Workspaces: []model.Workspace{ws("w1", running, 0, 5001)}, Networks: []api.NetworkAssignment{netw(5001, peer)}},
			cur:  netCurrent{Owned: rec(nil)},
			want: netPlan{Ensure: []overlay.Network{ens(5001, peer)}},
		},
		{
			name: "a stopped workspace keeps its network; one of two NICs on the same network: ensured once",
			as: netAssigned{Local: local, Workspaces: []model.Workspace{ws("w1", model.DesiredStopped, 0, 5001, 5001, 5002)},
				Networks: []api.NetworkAssignment{netw(5002), netw(5001, peer)}},
			cur:  netCurrent{Owned: rec(nil)},
			want: netPlan{Ensure: []overlay.Network{ens(5001, peer), ens(5002)}},
		},
		{
			name: "a network no workspace here uses is not made, nor deleted while assigned",
			as:   netAssigned{Local: local, Networks: []api.NetworkAssignment{netw(5001, peer)}},
			cur:  netCurrent{Networks: []uint32{5001}, Owned: rec([]uint32{5001})},
		},
		{
			name: "a network not assigned yet is not made",
			as:   netAssigned{Local: local, Workspaces: []model.Workspace{ws("w1", running, 0, 5001)}},
			cur:  netCurrent{Owned: rec(nil)},
		},
		{
			name: "a workspace gone, its QEMU too: tap and network deleted",
			as:   netAssigned{Local: local},
			cur: netCurrent{Networks: []uint32{5001}, Taps: []overlay.Tap{tap("w1", 0, 5001)},
				Owned: rec([]uint32{5001}, tapName("w1", 0)), Live: live()},
			want: netPlan{DeleteTaps: []string{tapName("w1", 0)}, DeleteNetworks: []uint32{5001}},
		},
		{
			name: "a workspace gone whose QEMU still runs keeps its tap, and so its network",
			as:   netAssigned{Local: local},
			cur: netCurrent{Networks: []uint32{5001}, Taps: []overlay.Tap{tap("w1", 0, 5001)},
				Owned: rec([]uint32{5001}, tapName("w1", 0)), Live: live("w1")},
		},
		{
			name: "a workspace being deleted: its tap goes once its QEMU is gone; the network stays while assigned",
			as: netAssigned{Local: local, Workspaces: []model.Workspace{ws("w1", model.DesiredDeleted, 0, 5001), ws("w2", running, 0, 5001)},
				Networks: []api.NetworkAssignment{netw(5001)}},
			cur: netCurrent{Networks: []uint32{5001}, Taps: []overlay.Tap{tap("w1", 0, 5001), tap("w2", 0, 5001)},
				Owned: rec([]uint32{5001}, tapName("w1", 0), tapName("w2", 0)), Live: live("w2")},
			want: netPlan{DeleteTaps: []string{tapName("w1", 0)}, Ensure: []overlay.Network{ens(5001)},
				Taps: []tapPlan{{Name: tapName("w2", 0), VNI: 5001}}},
		},
		{
			name: "a stopped workspace keeps its taps",
			as: netAssigned{Local: local, Workspaces: []model.Workspace{ws("w1", model.DesiredStopped, 0, 5001)},
				Networks: []api.NetworkAssignment{netw(5001)}},
			cur: netCurrent{Networks: []uint32{5001}, Taps: []overlay.Tap{tap("w1", 0, 5001)},
				Owned: rec([]uint32{5001}, tapName("w1", 0))},
			want: netPlan{Ensure: []overlay.Network{ens(5001)}},
		},
		{
			name: "a NIC dropped from a stopped workspace: its tap goes",
			as: netAssigned{Local: local, Workspaces: []model.Workspace{ws("w1", model.DesiredStopped, 0, 5001)},
				Networks: []api.NetworkAssignment{netw(5001)}},
			cur: netCurrent{Networks: []uint32{5001, 5002}, Taps: []overlay.Tap{tap("w1", 0, 5001), tap("w1", 1, 5002)},
				Owned: rec([]uint32{5001, 5002}, tapName("w1", 0), tapName("w1", 1))},
			want: netPlan{DeleteTaps: []string{tapName("w1", 1)}, Ensure: []overlay.Network{ens(5001)}, DeleteNetworks: []uint32{5002}},
		},
		{
			name: "a running workspace's taps are kept right, at its cap",
			as: netAssigned{Local: local, Workspaces: []model.Workspace{ws("w1", running, 100*model.Mbit, 5001), ws("w2", running, 1000, 5001)},
				Networks: []api.NetworkAssignment{netw(5001, peer)}},
			cur: netCurrent{Networks: []uint32{5001}, Taps: []overlay.Tap{tap("w1", 0, 5001), tap("w2", 0, 0)},
				Owned: rec([]uint32{5001}, tapName("w1", 0)), Live: live("w1", "w2")},
			want: netPlan{Ensure: []overlay.Network{ens(5001, peer)},
				Taps: []tapPlan{{Name: tapName("w1", 0), VNI: 5001, Bps: 100e6}, {Name: tapName("w2", 0), VNI: 5001, Bps: overlay.MinRate}}},
		},
		{
			name: "what this agent did not make is left alone",
			as:   netAssigned{Local: local},
			cur: netCurrent{Networks: []uint32{7, 5001}, Taps: []overlay.Tap{tap("other", 0, 7), tap("w1", 0, 5001)},
				Owned: rec([]uint32{5001}, tapName("w1", 0))},
			want: netPlan{DeleteTaps: []string{tapName("w1", 0)}, DeleteNetworks: []uint32{5001}},
		},
		{
			name: "a network it made with another's tap on it stays",
			as:   netAssigned{Local: local},
			cur:  netCurrent{Networks: []uint32{5001}, Taps: []overlay.Tap{tap("other", 0, 5001)}, Owned: rec([]uint32{5001})},
		},
		{
			name: "records of devices gone are forgotten, unless about to be made",
			as: netAssigned{Local: local, Workspaces: []model.Workspace{ws("w1", running, 0, 5001)},
				Networks: []api.NetworkAssignment{netw(5001)}},
			cur:  netCurrent{Owned: rec([]uint32{5001, 5002}, tapName("w1", 0), tapName("w9", 0))},
			want: netPlan{Ensure: []overlay.Network{ens(5001)}, ForgetTaps: []string{tapName("w9", 0)}, ForgetNetworks: []uint32{5002}},
		},
		{
			name: "a host alone: loopback, no peers",
			as:   netAssigned{Workspaces: []model.Workspace{ws("w1", running, 0, 5001)}, Networks: []api.NetworkAssignment{netw(5001, peer)}},
			cur:  netCurrent{Owned: rec(nil)},
			want: netPlan{Ensure: []overlay.Network{{VNI: 5001, Local: netip.MustParseAddr("127.0.0.1"), UnderlayMTU: singleHostMTU}}},
			warn: 1,
		},
		{
			name: "a VNI assigned twice: the first",
			as: netAssigned{Local: local, Workspaces: []model.Workspace{ws("w1", running, 0, 5001)},
				Networks: []api.NetworkAssignment{netw(5001, peer), {Project: "q", Name: "m", VNI: 5001}}},
			cur:  netCurrent{Owned: rec(nil)},
			want: netPlan{Ensure: []overlay.Network{ens(5001, peer)}},
			warn: 1,
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := planNetworks(c.as, c.cur)
			if len(got.Warnings) != c.warn {
				t.Errorf("warnings %q, want %d", got.Warnings, c.warn)
			}
			got.Warnings = nil
			if !reflect.DeepEqual(got, c.want) {
				t.Errorf("plan:\n got %+v\nwant %+v", got, c.want)
			}
		})
	}
}

// newNetAgent is an agent that is not run: its network code is driven by
// hand.
func newNetAgent(t *testing.T, addr string, dp *overlay.Host) (*Agent, *fake.Driver) {
	t.Helper()
	drv := fake.New(t.TempDir())
	t.Cleanup(func() { drv.Close() })
	a, err := New(Config{
		DataDir: t.TempDir(), Driver: drv, Logger: quiet(), Overlay: dp,
		Node: model.Node{Name: "h1", Address: addr, Capacity: model.Resources{MilliCPU: 4000, Memory: 8 * model.GiB, Disk: 100 * model.GiB}},
	})
	if err != nil {
		t.Fatal(err)
	}
	return a, drv
}

// A workspace whose network is not assigned yet waits; where the overlay
// cannot be had (no netlink permission), a workspace with NICs cannot
// start, and says why; one without NICs never touches the overlay.
func TestPrepareNICsErrors(t *testing.T) {
	a, _ := newNetAgent(t, "10.9.0.1", nil)
	opened := 0
	a.openOverlay = func() (*overlay.Host, error) { opened++; return nil, errors.New("netlink: operation not permitted") }
	plain := model.Workspace{ID: "w0", Desired: model.DesiredRunning}
	w := model.Workspace{ID: "w1", Desired: model.DesiredRunning, NICs: []model.NIC{{Network: "n", VNI: 5001, MAC: "02:00:00:00:00:01"}}}
	a.setAssigned(api.Assignments{Workspaces: []model.Workspace{plain, w}})
	if nics, err := a.prepareNICs(plain); nics != nil || err != nil {
		t.Fatalf("no NICs: %v %v", nics, err)
	}
	if _, err := a.prepareNICs(w); !errors.Is(err, errNetworkPending) || !strings.Contains(err.Error(), "n (VNI 5001)") {
		t.Fatalf("network not assigned: %v", err)
	}
	if opened != 0 {
		t.Fatalf("overlay opened %d times for nothing", opened)
	}
	a.setAssigned(api.Assignments{Workspaces: []model.Workspace{plain, w}, Networks: []api.NetworkAssignment{{Project: "p", Name: "n", VNI: 5001}}})
	_, err := a.prepareNICs(w)
	if err == nil || errors.Is(err, errNetworkPending) || !strings.Contains(err.Error(), "overlay networks unavailable on this host: netlink: operation not permitted") {
		t.Fatalf("no overlay: %v", err)
	}
	// The sync logs and goes on.
	a.syncNetworks(t.Context())
	many := model.Workspace{ID: "w2", NICs: make([]model.NIC, maxNICs+1)}
	if _, err := a.prepareNICs(many); err == nil {
		t.Error("too many NICs accepted")
	}
	// An agent that has no network and never had one does not open the
	// overlay at all.
	b, _ := newNetAgent(t, "", nil)
	b.openOverlay = func() (*overlay.Host, error) { t.Error("overlay opened"); return nil, errors.New("no") }
	b.setAssigned(api.Assignments{Workspaces: []model.Workspace{plain}})
	b.syncNetworks(t.Context())
}
