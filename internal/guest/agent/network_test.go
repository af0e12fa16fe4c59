package agent

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
)

func mustMAC(s string) net.HardwareAddr {
	m, err := net.ParseMAC(s)
	if err != nil {
		panic(err)
	}
	return m
}

// vgridNetworkConfig is what the qemu driver writes for two NICs (see
// qemu.NetworkConfig; its tests parse its output with ParseNetworkConfig).
const vgridNetworkConfig = `version: 2
ethernets:
  id0:
    match:
      macaddress: "02:aa:bb:cc:dd:01"
    set-name: "eth0"
    addresses:
      - "10.77.0.2/24"
    gateway4: "10.77.0.1"
  id1:
    match:
      macaddress: "02:aa:bb:cc:dd:02"
    set-name: "eth1"
    addresses:
      - "10.78.0.2/16"
`

func TestParseNetworkConfig(t *testing.T) {
	two := NetworkConfig{Ethernets: []Ethernet{
		{ID: "id0", MAC: mustMAC("02:aa:bb:cc:dd:01"), Name: "eth0",
			Addresses: []netip.Prefix{netip.MustParsePrefix("10.77.0.2/24")}, Gateway4: netip.MustParseAddr("10.77.0.1")},
		{ID: "id1", MAC: mustMAC("02:aa:bb:cc:dd:02"), Name: "eth1",
			Addresses: []netip.Prefix{netip.MustParsePrefix("10.78.0.2/16")}},
	}}
	tests := []struct {
		name string
		in   string
		want NetworkConfig
		err  string // a substring of the error; "" for none
	}{
		{name: "vgrid's", in: vgridNetworkConfig, want: two},
		{
			name: "under network:, unquoted, upper-case MAC, other keys",
			in: "network:\n  version: 2\n  renderer: networkd\n  ethernets:\n" +
				"    lan:\n      match: {macaddress: 02:12:34:56:78:90}\n      dhcp4: false\n      mtu: 1450\n" +
				"      addresses: [10.0.0.5/8, 'fd00::5/64', 10.0.0.5/8]\n" +
				"    b:\n      match:\n        macaddress: 02:AB:CD:EF:00:11\n",
			want: NetworkConfig{Ethernets: []Ethernet{
				{ID: "b", MAC: mustMAC("02:ab:cd:ef:00:11")},
				{ID: "lan", MAC: mustMAC("02:12:34:56:78:90"),
					Addresses: []netip.Prefix{netip.MustParsePrefix("10.0.0.5/8"), netip.MustParsePrefix("fd00::5/64")}},
			}},
		},
		{name: "no ethernets", in: "version: 2\n", want: NetworkConfig{}},
		{name: "empty", in: "", err: "version 0"},
		{name: "version 1", in: "version: 1\nconfig: []\n", err: "version 1: want 2"},
		{name: "not a mapping", in: "- a\n- b\n", err: "network-config"},
		{name: "bad yaml", in: "version: 2\nethernets: {a: [\n", err: "network-config"},
		{name: "ethernets a list", in: "version: 2\nethernets: [a]\n", err: "network-config"},
		{name: "no match", in: "version: 2\nethernets:\n  e:\n    addresses: [10.0.0.1/24]\n", err: `"e": no match: macaddress`},
		{name: "match by name", in: "version: 2\nethernets:\n  e:\n    match: {name: eth0}\n", err: "no match: macaddress"},
		{name: "bad mac", in: "version: 2\nethernets:\n  e:\n    match: {macaddress: nope}\n", err: `macaddress "nope"`},
		{name: "long mac", in: "version: 2\nethernets:\n  e:\n    match: {macaddress: '00:00:00:00:fe:80:00:00:00:00:00:00:02:00:5e:10:00:00:00:01'}\n", err: "want an Ethernet address"},
		{
			name: "same mac twice",
			in:   "version: 2\nethernets:\n  a:\n    match: {macaddress: '02:00:00:00:00:01'}\n  b:\n    match: {macaddress: '02:00:00:00:00:01'}\n",
			err:  `ethernet "a" has it too`,
		},
		{
			name: "same name twice",
			in: "version: 2\nethernets:\n  a:\n    match: {macaddress: '02:00:00:00:00:01'}\n    set-name: eth0\n" +
				"  b:\n    match: {macaddress: '02:00:00:00:00:02'}\n    set-name: eth0\n",
			err: "set-name eth0",
		},
		{name: "bad name", in: "version: 2\nethernets:\n  a:\n    match: {macaddress: '02:00:00:00:00:01'}\n    set-name: a/b\n", err: `set-name "a/b"`},
		{name: "long name", in: "version: 2\nethernets:\n  a:\n    match: {macaddress: '02:00:00:00:00:01'}\n    set-name: abcdefghijklmnop\n", err: "set-name"},
		{name: "address without length", in: "version: 2\nethernets:\n  a:\n    match: {macaddress: '02:00:00:00:00:01'}\n    addresses: [10.0.0.1]\n", err: `address "10.0.0.1"`},
		{name: "multicast address", in: "version: 2\nethernets:\n  a:\n    match: {macaddress: '02:00:00:00:00:01'}\n    addresses: [224.0.0.1/4]\n", err: "unicast"},
		{name: "v6 gateway4", in: "version: 2\nethernets:\n  a:\n    match: {macaddress: '02:00:00:00:00:01'}\n    gateway4: 'fd00::1'\n", err: `gateway4 "fd00::1"`},
		{name: "too large", in: "version: 2\n#" + strings.Repeat("x", maxNetworkConfig), err: "at most"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseNetworkConfig([]byte(tt.in))
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("got %+v, %v; want an error with %q", got, err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got\n%+v\nwant\n%+v", got, tt.want)
			}
		})
	}
}

// fakeLinks is Links in memory, as strict as the kernel where it matters:
// a link is renamed only while down and to a free name; a gateway needs
// the link up with an address whose prefix holds it.
type fakeLinks struct {
	links  []Link
	addrs  map[int][]netip.Prefix
	routes map[int]netip.Addr // default route: link -> gateway (one per family in reality; v4 only here)
	ops    []string
	fail   map[string]error // op prefix -> error
}

func newFakeLinks(links ...Link) *fakeLinks {
	return &fakeLinks{links: links, addrs: map[int][]netip.Prefix{}, routes: map[int]netip.Addr{}}
}

func (f *fakeLinks) find(index int) (*Link, error) {
	for i := range f.links {
		if f.links[i].Index == index {
			return &f.links[i], nil
		}
	}
	return nil, fmt.Errorf("no link %d", index)
}

func (f *fakeLinks) op(format string, args ...any) error {
	s := fmt.Sprintf(format, args...)
	f.ops = append(f.ops, s)
	for prefix, err := range f.fail {
		if strings.HasPrefix(s, prefix) {
			return err
		}
	}
	return nil
}

func (f *fakeLinks) List() ([]Link, error) {
	out := make([]Link, len(f.links))
	copy(out, f.links)
	return out, nil
}

func (f *fakeLinks) SetName(index int, name string) error {
	l, err := f.find(index)
	if err != nil {
		return err
	}
	if err := f.op("name %s %s", l.Name, name); err != nil {
		return err
	}
	if l.Up {
		return errors.New("device or resource busy")
	}
	for _, o := range f.links {
		if o.Name == name {
			return errors.New("file exists")
		}
	}
	l.Name = name
	return nil
}

func (f *fakeLinks) SetUp(index int, up bool) error {
	l, err := f.find(index)
	if err != nil {
		return err
	}
	if err := f.op("up %s %v", l.Name, up); err != nil {
		return err
	}
	l.Up = up
	return nil
}

func (f *fakeLinks) AddAddress(index int, a netip.Prefix) error {
	l, err := f.find(index)
	if err != nil {
		return err
	}
	if err := f.op("addr %s %s", l.Name, a); err != nil {
		return err
	}
	if !slices.Contains(f.addrs[index], a) {
		f.addrs[index] = append(f.addrs[index], a)
	}
	return nil
}

func (f *fakeLinks) SetDefaultRoute(index int, gw netip.Addr) error {
	l, err := f.find(index)
	if err != nil {
		return err
	}
	if err := f.op("route %s %s", l.Name, gw); err != nil {
		return err
	}
	if !l.Up || !slices.ContainsFunc(f.addrs[index], func(p netip.Prefix) bool { return p.Masked().Contains(gw) }) {
		return errors.New("network is unreachable")
	}
	clear(f.routes)
	f.routes[index] = gw
	return nil
}

// names maps MAC -> name.
func (f *fakeLinks) names() map[string]string {
	m := map[string]string{}
	for _, l := range f.links {
		m[l.MAC.String()] = l.Name
	}
	return m
}

func TestConfigureNetwork(t *testing.T) {
	cfg, err := ParseNetworkConfig([]byte(vgridNetworkConfig))
	if err != nil {
		t.Fatal(err)
	}
	mac0, mac1 := mustMAC("02:aa:bb:cc:dd:01"), mustMAC("02:aa:bb:cc:dd:02")
	// The kernel probed the interfaces the other way round, and rcS set
	// one up: they swap names.
	f := newFakeLinks(
		Link{Index: 1, Name: "lo", Up: true},
		Link{Index: 2, Name: "eth0", MAC: mac1, Up: true},
		Link{Index: 3, Name: "eth1", MAC: mac0},
	)
	if err := configureNetwork(f, cfg, 0); err != nil {
		t.Fatalf("%v (ops %q)", err, f.ops)
	}
	wantNames := map[string]string{"": "lo", mac0.String(): "eth0", mac1.String(): "eth1"}
	if got := f.names(); !reflect.DeepEqual(got, wantNames) {
		t.Errorf("names: got %v, want %v", got, wantNames)
	}
	for _, l := range f.links {
		if !l.Up {
			t.Errorf("%s is down", l.Name)
		}
	}
	wantAddrs := map[int][]netip.Prefix{3: {netip.MustParsePrefix("10.77.0.2/24")}, 2: {netip.MustParsePrefix("10.78.0.2/16")}}
	if !reflect.DeepEqual(f.addrs, wantAddrs) {
		t.Errorf("addresses: got %v, want %v", f.addrs, wantAddrs)
	}
	if want := map[int]netip.Addr{3: netip.MustParseAddr("10.77.0.1")}; !reflect.DeepEqual(f.routes, want) {
		t.Errorf("default route: got %v, want %v", f.routes, want)
	}
	t.Logf("ops: %q", f.ops)

	// Again (an agent restarted): no rename, nothing brought up.
	f.ops = nil
	if err := configureNetwork(f, cfg, 0); err != nil {
		t.Fatal(err)
	}
	for _, op := range f.ops {
		if strings.HasPrefix(op, "name ") || strings.HasPrefix(op, "up ") {
			t.Errorf("second apply: %s", op)
		}
	}
	if got := f.names(); !reflect.DeepEqual(got, wantNames) {
		t.Errorf("names after the second apply: got %v", got)
	}
}

func TestConfigureNetworkPartial(t *testing.T) {
	cfg, err := ParseNetworkConfig([]byte(vgridNetworkConfig))
	if err != nil {
		t.Fatal(err)
	}
	mac0 := mustMAC("02:aa:bb:cc:dd:01")
	// The second NIC is missing, and an interface that is not in the
	// config holds eth0: the first NIC keeps its name but is configured.
	f := newFakeLinks(
		Link{Index: 2, Name: "eth0", MAC: mustMAC("52:54:00:00:00:01")},
		Link{Index: 3, Name: "eth5", MAC: mac0},
	)
	err = configureNetwork(f, cfg, 0)
	if err == nil || !strings.Contains(err.Error(), "no interface with address 02:aa:bb:cc:dd:02") ||
		!strings.Contains(err.Error(), "cannot name eth5 eth0") {
		t.Errorf("got %v; want errors for the missing NIC and the taken name", err)
	}
	if got := f.names()[mac0.String()]; got != "eth5" {
		t.Errorf("name: got %s, want eth5 kept", got)
	}
	if !reflect.DeepEqual(f.addrs[3], []netip.Prefix{netip.MustParsePrefix("10.77.0.2/24")}) || f.routes[3] != netip.MustParseAddr("10.77.0.1") {
		t.Errorf("addresses %v routes %v; want the first NIC configured", f.addrs, f.routes)
	}

	// A failing address add is reported; the route is still tried.
	f = newFakeLinks(Link{Index: 3, Name: "eth0", MAC: mac0})
	f.fail = map[string]error{"addr ": errors.New("boom")}
	one := NetworkConfig{Ethernets: cfg.Ethernets[:1]}
	if err := configureNetwork(f, one, 0); err == nil || !strings.Contains(err.Error(), "boom") {
		t.Errorf("got %v, want boom", err)
	}
	if !slices.Contains(f.ops, "route eth0 10.77.0.1") {
		t.Errorf("ops %q: no route tried", f.ops)
	}
}

func TestApplyNetwork(t *testing.T) {
	root := fakeRoot(t, map[string]string{"sys/class/net/eth0/address": "52:54:00:00:00:01\n"})
	var dhcp []string
	f := newFakeLinks(Link{Index: 2, Name: "eth0", MAC: mustMAC("02:aa:bb:cc:dd:01")})
	a := New(Config{Root: root, Log: log.New(io.Discard, "", 0), Links: f,
		StartDHCP: func(iface string) error { dhcp = append(dhcp, iface); return nil }})
	// No network-config: DHCP on eth0, once per boot.
	for range 2 {
		if err := a.applyNetwork(nil); err != nil {
			t.Fatal(err)
		}
	}
	if !slices.Equal(dhcp, []string{"eth0"}) {
		t.Errorf("dhcp started on %q, want eth0 once", dhcp)
	}
	// A network-config: applied, no DHCP.
	dhcp = nil
	one := "version: 2\nethernets:\n  id0:\n    match: {macaddress: '02:aa:bb:cc:dd:01'}\n    addresses: [10.9.0.2/24]\n"
	if err := a.applyNetwork([]byte(one)); err != nil {
		t.Fatal(err)
	}
	if len(dhcp) != 0 || !slices.Equal(f.addrs[2], []netip.Prefix{netip.MustParsePrefix("10.9.0.2/24")}) {
		t.Errorf("dhcp %q, addresses %v", dhcp, f.addrs)
	}
	if err := a.applyNetwork([]byte("version: 3\n")); err == nil {
		t.Error("a bad network-config: no error")
	}
	// Without Links (a test root), a network-config is not applied.
	b := New(Config{Root: t.TempDir(), Log: log.New(io.Discard, "", 0)})
	if err := b.applyNetwork([]byte(one)); err != nil {
		t.Error(err)
	}
	// No eth0: no DHCP.
	dhcp = nil
	c := New(Config{Root: t.TempDir(), Log: log.New(io.Discard, "", 0), StartDHCP: func(iface string) error { dhcp = append(dhcp, iface); return nil }})
	if err := c.applyNetwork(nil); err != nil || len(dhcp) != 0 {
		t.Errorf("no eth0: %v, dhcp %q", err, dhcp)
	}
}

func FuzzParseNetworkConfig(f *testing.F) {
	f.Add([]byte(vgridNetworkConfig))
	f.Add([]byte("network:\n  version: 2\n  ethernets:\n    e: {match: {macaddress: '02:00:00:00:00:01'}, addresses: ['fd00::1/64']}\n"))
	f.Add([]byte("version: 2\nethernets: {a: &x {match: {macaddress: '02:00:00:00:00:01'}}, b: *x}\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		cfg, err := ParseNetworkConfig(b)
		if err != nil {
			return
		}
		macs, names := map[string]bool{}, map[string]bool{}
		for i, e := range cfg.Ethernets {
			if i > 0 && cfg.Ethernets[i-1].ID >= e.ID {
				t.Fatalf("ethernets not sorted: %q before %q", cfg.Ethernets[i-1].ID, e.ID)
			}
			if len(e.MAC) != 6 || macs[e.MAC.String()] {
				t.Fatalf("ethernet %q: MAC %v (length or duplicate)", e.ID, e.MAC)
			}
			macs[e.MAC.String()] = true
			if e.Name != "" && (!validLinkName(e.Name) || names[e.Name]) {
				t.Fatalf("ethernet %q: name %q", e.ID, e.Name)
			}
			names[e.Name] = e.Name != ""
			for _, a := range e.Addresses {
				if !a.IsValid() || a.Addr().IsMulticast() || a.Addr().IsUnspecified() {
					t.Fatalf("ethernet %q: address %v", e.ID, a)
				}
			}
			if e.Gateway4.IsValid() && !e.Gateway4.Is4() {
				t.Fatalf("ethernet %q: gateway4 %v", e.ID, e.Gateway4)
			}
		}
		// Applying it to interfaces with its MACs changes only those.
		var links []Link
		for i, e := range cfg.Ethernets {
			links = append(links, Link{Index: 10 + i, Name: fmt.Sprintf("if%d", i), MAC: bytes.Clone(e.MAC)})
		}
		fl := newFakeLinks(links...)
		_ = configureNetwork(fl, cfg, 0)
		for _, op := range fl.ops {
			if strings.HasPrefix(op, "name ") && strings.Count(op, " ") != 2 {
				t.Fatalf("odd op %q", op)
			}
		}
	})
}

func TestApplySeedNetworkAndCluster(t *testing.T) {
	root := t.TempDir()
	f := newFakeLinks(Link{Index: 2, Name: "eth0", MAC: mustMAC("02:aa:bb:cc:dd:01")},
		Link{Index: 3, Name: "eth1", MAC: mustMAC("02:aa:bb:cc:dd:02")})
	var dhcp []string
	a := New(Config{Root: root, Log: log.New(io.Discard, "", 0), Links: f,
		SetHostname: func(string) error { return nil },
		RunUserData: func(string, []string) error { return nil },
		StartDHCP:   func(iface string) error { dhcp = append(dhcp, iface); return nil }})
	seed := &Seed{InstanceID: "c-a-0", Hostname: "c-a-0", SSHKeys: []string{"ssh-ed25519 USER u@h"},
		NetworkConfig: []byte(vgridNetworkConfig), Cluster: []byte(testCluster)}
	for range 2 {
		if err := a.applySeed(seed); err != nil {
			t.Fatal(err)
		}
	}
	if len(dhcp) != 0 || len(f.addrs[2]) != 1 || len(f.addrs[3]) != 1 {
		t.Errorf("dhcp %q addresses %v", dhcp, f.addrs)
	}
	if got := a.facts().Roster; got != 3 {
		t.Errorf("roster: got %d, want 3", got)
	}
	b, err := os.ReadFile(filepath.Join(root, authKeysFile))
	if err != nil || string(b) != "ssh-ed25519 USER u@h\nssh-ed25519 CLUSTER vgrid-cluster-c\n" {
		t.Errorf("authorized_keys: %q, %v", b, err)
	}
}
