package netgrid_test

import (
	"net"
	"os"
	"os/exec"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"vgrid/internal/model"
	"vgrid/internal/netgrid"
	"vgrid/internal/netgrid/gridtest"
)

func TestConfig(t *testing.T) {
	c := netgrid.Config{Hosts: 3}.WithDefaults()
	if c.Bridge != "vgridbr0" || c.Subnet != "10.77.0.0/24" || c.Prefix != "vgrid-h" {
		t.Fatalf("defaults: %+v", c)
	}
	if got := c.BridgeIP().String(); got != "10.77.0.1" {
		t.Errorf("bridge ip %s", got)
	}
	if got := c.HostIP(3).String(); got != "10.77.0.13" {
		t.Errorf("host 3 ip %s", got)
	}
	if got := c.Namespace(2); got != "vgrid-h2" {
		t.Errorf("namespace %s", got)
	}
	for _, bad := range []netgrid.Config{
		{Hosts: 0}, {Hosts: 245}, {Hosts: 1, Subnet: "10.0.0.0/16"}, {Hosts: 1, Subnet: "fd00::/120"},
		{Hosts: 1, Bridge: "a-very-long-bridge-name"}, {Hosts: 1, Prefix: "a/b"},
	} {
		if err := bad.Validate(); err == nil {
			t.Errorf("Validate(%+v) = nil, want an error", bad)
		}
	}
	hl := netgrid.Config{Hosts: 2, Prefix: "a-rather-long-namespace-prefix-"}.HostList()
	for _, h := range hl {
		if len(h.Veth) > 15 {
			t.Errorf("veth name %q longer than 15", h.Veth)
		}
	}
	if hl[0].Veth == hl[1].Veth {
		t.Errorf("veth names collide: %q", hl[0].Veth)
	}
}

func TestDefaultShare(t *testing.T) {
	one, err := netgrid.DefaultShare(1, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	many, err := netgrid.DefaultShare(1000, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if many.MilliCPU != 1000 {
		t.Errorf("1000 hosts get %dm each, want at least one core", many.MilliCPU)
	}
	if many.Memory*1000 > one.Memory || many.Memory <= 0 || one.Disk <= 0 {
		t.Errorf("shares: one %+v, of 1000 %+v", one, many)
	}
	if one.Memory > one.Memory+model.GiB {
		t.Error("overflow")
	}
}

// nsInode identifies a namespace file.
func nsInode(t *testing.T, name string) uint64 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(netgrid.NamespacePath(name), &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}

func handle(t *testing.T, ns string) *netlink.Handle {
	t.Helper()
	h, err := netns.GetFromName(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	nh, err := netlink.NewHandleAt(h)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nh.Close)
	return nh
}

// checkHost checks the namespace's eth0, lo and default route.
func checkHost(t *testing.T, c netgrid.Config, h netgrid.Host) {
	t.Helper()
	nh := handle(t, h.Namespace)
	eth0, err := nh.LinkByName("eth0")
	if err != nil {
		t.Fatalf("%s: eth0: %v", h.Namespace, err)
	}
	if eth0.Attrs().Flags&net.FlagUp == 0 {
		t.Errorf("%s: eth0 down", h.Namespace)
	}
	addrs, _ := nh.AddrList(eth0, netlink.FAMILY_V4)
	if len(addrs) != 1 || !addrs[0].IP.Equal(h.Address) {
		t.Errorf("%s: eth0 addresses %v, want %s", h.Namespace, addrs, h.Address)
	}
	lo, _ := nh.LinkByName("lo")
	if lo == nil || lo.Attrs().Flags&net.FlagUp == 0 {
		t.Errorf("%s: lo not up", h.Namespace)
	}
	routes, _ := nh.RouteList(nil, netlink.FAMILY_V4)
	def := false
	for _, r := range routes {
		if (r.Dst == nil || r.Dst.String() == "0.0.0.0/0") && r.Gw.Equal(c.BridgeIP()) {
			def = true
		}
	}
	if !def {
		t.Errorf("%s: no default route via %s: %v", h.Namespace, c.BridgeIP(), routes)
	}
	outer, err := netlink.LinkByName(h.Veth)
	if err != nil {
		t.Fatalf("%s: %v", h.Veth, err)
	}
	br, _ := netlink.LinkByName(c.Bridge)
	if outer.Attrs().MasterIndex != br.Attrs().Index || outer.Attrs().Flags&net.FlagUp == 0 {
		t.Errorf("%s: not up on %s", h.Veth, c.Bridge)
	}
}

// reach dials from namespace from (or the root namespace if "") to addr,
// for up to 15 s (after a repair a neighbour entry may be stale for a few
// seconds).
func reach(t *testing.T, from, addr string) {
	t.Helper()
	dial := func() error {
		c, err := net.DialTimeout("tcp", addr, 3*time.Second)
		if err != nil {
			return err
		}
		return c.Close()
	}
	var err error
	for deadline := time.Now().Add(15 * time.Second); ; {
		if from == "" {
			err = dial()
		} else {
			err = netgrid.InNamespace(from, dial)
		}
		if err == nil || time.Now().After(deadline) {
			break
		}
	}
	if err != nil {
		t.Errorf("from %q to %s: %v", from, addr, err)
	}
}

// listen listens on addr inside namespace ns ("" for the root one).
func listen(t *testing.T, ns, addr string) net.Listener {
	t.Helper()
	var ln net.Listener
	f := func() (err error) { ln, err = net.Listen("tcp", addr); return err }
	var err error
	if ns == "" {
		err = f()
	} else {
		err = netgrid.InNamespace(ns, f)
	}
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	t.Cleanup(func() { ln.Close() })
	return ln
}

func TestSetupIdempotentAndTeardown(t *testing.T) {
	gridtest.Require(t)
	c := gridtest.Names(t, 2)
	t.Cleanup(func() { _ = netgrid.Teardown(c) })
	hosts, err := netgrid.Setup(c)
	if err != nil {
		t.Fatal(err)
	}
	if len(hosts) != 2 {
		t.Fatalf("%d hosts", len(hosts))
	}
	br, err := netlink.LinkByName(c.Bridge)
	if err != nil {
		t.Fatal(err)
	}
	if addrs, _ := netlink.AddrList(br, netlink.FAMILY_V4); len(addrs) != 1 || !addrs[0].IP.Equal(c.BridgeIP()) {
		t.Fatalf("bridge addresses %v, want %s", addrs, c.BridgeIP())
	}
	for _, h := range hosts {
		checkHost(t, c, h)
	}
	// Traffic: root -> namespace, namespace -> root (the bridge address),
	// namespace -> namespace.
	ln := listen(t, hosts[1].Namespace, hosts[1].Address.String()+":0")
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	reach(t, "", net.JoinHostPort(hosts[1].Address.String(), port))
	reach(t, hosts[0].Namespace, net.JoinHostPort(hosts[1].Address.String(), port))
	rl := listen(t, "", c.BridgeIP().String()+":0")
	reach(t, hosts[0].Namespace, rl.Addr().String())

	// Again: everything is reused.
	ino := nsInode(t, hosts[0].Namespace)
	veth, _ := netlink.LinkByName(hosts[0].Veth)
	if _, err := netgrid.Setup(c); err != nil {
		t.Fatal(err)
	}
	if nsInode(t, hosts[0].Namespace) != ino {
		t.Error("Setup made namespace 1 again")
	}
	if v, _ := netlink.LinkByName(hosts[0].Veth); v == nil || v.Attrs().Index != veth.Attrs().Index {
		t.Error("Setup made the veth of host 1 again")
	}
	// The listener in namespace 2 still works: the namespace was kept.
	reach(t, hosts[0].Namespace, net.JoinHostPort(hosts[1].Address.String(), port))

	// Break things; Setup repairs them.
	if v, err := netlink.LinkByName(hosts[1].Veth); err == nil {
		_ = netlink.LinkDel(v) // takes eth0 of namespace 2 with it
	}
	nh := handle(t, hosts[0].Namespace)
	lo, _ := nh.LinkByName("lo")
	_ = nh.LinkSetDown(lo)
	eth0, _ := nh.LinkByName("eth0")
	_ = nh.AddrAdd(eth0, &netlink.Addr{IPNet: &net.IPNet{IP: net.ParseIP("192.0.2.7").To4(), Mask: net.CIDRMask(24, 32)}})
	_ = netlink.LinkSetDown(br)
	if _, err := netgrid.Setup(c); err != nil {
		t.Fatal(err)
	}
	for _, h := range hosts {
		checkHost(t, c, h)
	}
	reach(t, hosts[0].Namespace, net.JoinHostPort(hosts[1].Address.String(), port))
	reach(t, hosts[1].Namespace, rl.Addr().String())

	// A process started in a namespace is listed there.
	cmd := exec.Command("sleep", "30")
	if err := netgrid.InNamespace(hosts[0].Namespace, cmd.Start); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	pids, err := netgrid.PIDs(hosts[0].Namespace)
	if err != nil || !slices.Contains(pids, cmd.Process.Pid) {
		t.Errorf("PIDs(%s) = %v, %v; want it to hold %d", hosts[0].Namespace, pids, err, cmd.Process.Pid)
	}
	if mine, _ := netgrid.PIDs(hosts[1].Namespace); slices.Contains(mine, cmd.Process.Pid) {
		t.Errorf("the process is listed in %s too", hosts[1].Namespace)
	}
	if busy := netgrid.Busy(c); len(busy) != 1 {
		t.Errorf("Busy = %v, want namespace 1 only", busy)
	}
	if _, err := netgrid.Signal(hosts[0].Namespace, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()

	// Teardown removes everything, and can run again.
	ln.Close()
	if err := netgrid.Teardown(c); err != nil {
		t.Fatal(err)
	}
	if _, err := netlink.LinkByName(c.Bridge); err == nil {
		t.Error("bridge still there")
	}
	for _, h := range hosts {
		if _, err := os.Stat(netgrid.NamespacePath(h.Namespace)); !os.IsNotExist(err) {
			t.Errorf("%s still there: %v", h.Namespace, err)
		}
		if _, err := netlink.LinkByName(h.Veth); err == nil {
			t.Errorf("%s still there", h.Veth)
		}
	}
	if err := netgrid.Teardown(c); err != nil {
		t.Errorf("second Teardown: %v", err)
	}
}

func TestSetupReplacesStaleNamespaceFile(t *testing.T) {
	gridtest.Require(t)
	c := gridtest.Names(t, 1)
	t.Cleanup(func() { _ = netgrid.Teardown(c) })
	// A plain file where the namespace should be (a reboot leaves such
	// files when /var/run is not a tmpfs).
	if err := os.MkdirAll(netgrid.NetnsDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(netgrid.NamespacePath(c.Namespace(1)), nil, 0o444); err != nil {
		t.Fatal(err)
	}
	hosts, err := netgrid.Setup(c)
	if err != nil {
		t.Fatal(err)
	}
	checkHost(t, c, hosts[0])
}
