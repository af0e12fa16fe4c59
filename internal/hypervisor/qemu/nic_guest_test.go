package qemu

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"vgrid/internal/hypervisor"
	"vgrid/internal/hypervisor/hypervisortest"
	"vgrid/internal/model"
	"vgrid/internal/netnsrun"
)

// tapBridge makes a network namespace with a bridge and, on it, the
// persistent taps named (up), all removed when the test ends (the
// namespace goes, and with it its devices). It must be called before
// anything whose cleanup must run first (the guests using the taps).
func tapBridge(t *testing.T, taps ...string) netns.NsHandle {
	t.Helper()
	name := fmt.Sprintf("vgrid-qemu-nic-%d", os.Getpid())
	_ = netns.DeleteNamed(name) // left by a run that was killed
	ns, err := netnsrun.NewNamed(name)
	if err != nil {
		t.Fatalf("network namespace: %v", err)
	}
	t.Cleanup(func() {
		ns.Close()
		if err := netns.DeleteNamed(name); err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Errorf("delete namespace %s: %v", name, err)
		}
	})
	nl, err := netlink.NewHandleAt(ns)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nl.Close)
	must := func(err error, what string) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	lo, err := nl.LinkByName("lo")
	must(err, "lo")
	must(nl.LinkSetUp(lo), "lo up")
	must(nl.LinkAdd(&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "br0"}}), "bridge")
	br, err := nl.LinkByName("br0")
	must(err, "bridge")
	must(nl.LinkSetUp(br), "bridge up")
	for _, tap := range taps {
		// A tap is made with an ioctl on /dev/net/tun, in the namespace
		// of the calling thread (as internal/overlay does).
		must(netnsrun.Do(ns, func() error {
			return netlink.LinkAdd(&netlink.Tuntap{
				LinkAttrs: netlink.LinkAttrs{Name: tap},
				Mode:      netlink.TUNTAP_MODE_TAP,
				Flags:     netlink.TUNTAP_NO_PI | netlink.TUNTAP_VNET_HDR,
			})
		}), "tap "+tap)
		l, err := nl.LinkByName(tap)
		must(err, tap)
		must(nl.LinkSetMaster(l, br), tap+" onto the bridge")
		must(nl.LinkSetUp(l), tap+" up")
	}
	return ns
}

// TestNICsInGuest boots two guests on taps of one bridge, each with an
// address given through its seed and the roster of a cluster naming both,
// and checks that the guest agent applied them: each reports its address
// and the roster's revision, its first interface is eth0 with the NIC's
// MAC (and there is no other), one pings the other by its roster name
// (/etc/hosts), and the cluster's private key is in place; and that a
// guest on a tap suspends and resumes.
func TestNICsInGuest(t *testing.T) {
	requireHost(t)
	ns := tapBridge(t, "tap-a", "tap-b")
	_, d, img := hostSetup(t)
	ctx := hypervisortest.Context(t)

	type member struct {
		id, name, tap string
		addr          netip.Prefix
	}
	members := []member{
		{"nic-a", "vgc-a-0", "tap-a", netip.MustParsePrefix("10.77.0.2/24")},
		{"nic-b", "vgc-b-0", "tap-b", netip.MustParsePrefix("10.77.0.3/24")},
	}
	roster := make([]model.RosterEntry, len(members))
	for i, m := range members {
		roster[i] = model.RosterEntry{Name: m.name, Role: m.name[4:5], Address: m.addr.Addr()}
	}
	specs := make([]hypervisor.InstanceSpec, len(members))
	start := time.Now()
	for i, m := range members {
		spec := hypervisortest.Spec(m.id, img)
		spec.Quantum.Memory = 128 * model.MiB
		spec.NICs = []hypervisor.NIC{{Tap: m.tap, MAC: model.NICMAC(m.id, "net"), Address: m.addr}}
		spec.Context = &model.Context{Hostname: m.name, Cluster: &model.ClusterContext{
			Name: "vgc", Role: roster[i].Role, Head: members[0].name, Members: roster,
			PrivateKey: "-----BEGIN OPENSSH PRIVATE KEY-----\nnot-a-real-key\n-----END OPENSSH PRIVATE KEY-----\n",
			PublicKey:  "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPLACEHOLDER vgrid-cluster-vgc",
			Revision:   1,
		}}
		specs[i] = spec
		// QEMU opens its tap in the namespace of the thread that starts it.
		if err := netnsrun.Do(ns, func() error { _, err := d.Start(ctx, spec); return err }); err != nil {
			t.Fatal(err)
		}
	}
	for i, m := range members {
		in := hypervisortest.WaitGuest(t, d, m.id)
		g := in.Guest
		if g.Roster != 1 || !slices.Contains(g.Addresses, m.addr.String()) || g.Hostname != m.name {
			t.Errorf("%s: guest reports roster %d, addresses %q, hostname %q; want 1, %s, %s", m.id, g.Roster, g.Addresses, g.Hostname, m.addr, m.name)
		}
		out, code := execIn(t, d, m.id, "cat", "/sys/class/net/eth0/address")
		if code != 0 || strings.TrimSpace(out) != specs[i].NICs[0].MAC {
			t.Errorf("%s: eth0 has MAC %q (exit %d), want %s", m.id, out, code, specs[i].NICs[0].MAC)
		}
		if out, _ := execIn(t, d, m.id, "ls", "/sys/class/net"); strings.Join(strings.Fields(out), " ") != "eth0 lo" {
			t.Errorf("%s: interfaces %q, want eth0 and lo only", m.id, out)
		}
	}
	t.Logf("both guests ready %s after the first start", time.Since(start).Round(time.Millisecond))
	if out, code := execIn(t, d, members[0].id, "ping", "-c", "1", "-W", "5", members[1].name); code != 0 {
		hosts, _ := execIn(t, d, members[0].id, "cat", "/etc/hosts")
		t.Errorf("ping %s from %s: exit %d:\n%s\n/etc/hosts:\n%s", members[1].name, members[0].id, code, out, hosts)
	}
	if _, code := execIn(t, d, members[0].id, "test", "-f", "/root/.ssh/id_ed25519"); code != 0 {
		t.Errorf("/root/.ssh/id_ed25519: test -f exits %d", code)
	}
	// A suspended guest resumes on the same device set (-incoming): its
	// interface goes on where it was.
	if _, err := d.Suspend(ctx, members[0].id); err != nil {
		t.Fatal(err)
	}
	if err := netnsrun.Do(ns, func() error { _, err := d.Start(ctx, specs[0]); return err }); err != nil {
		t.Fatalf("resume: %v", err)
	}
	hypervisortest.WaitGuest(t, d, members[0].id)
	if out, code := execIn(t, d, members[0].id, "ping", "-c", "1", "-W", "5", members[1].name); code != 0 {
		t.Errorf("after a resume, ping %s: exit %d:\n%s", members[1].name, code, out)
	}
	t.Logf("checked, suspended and resumed %s after the first start", time.Since(start).Round(time.Millisecond))
}

// execIn runs argv in the guest and returns its output (both streams) and
// exit code.
func execIn(t *testing.T, d hypervisor.Driver, id string, argv ...string) (string, int) {
	t.Helper()
	var out strings.Builder
	res, err := d.Exec(context.Background(), id, hypervisor.ExecRequest{Argv: argv, Timeout: 30 * time.Second},
		func(_ string, b []byte) error { out.Write(b); return nil })
	if err != nil {
		t.Fatalf("%s: exec %q: %v", id, argv, err)
	}
	if res.Message != "" {
		out.WriteString(res.Message)
	}
	return out.String(), res.ExitCode
}
