package agent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"time"

	"go.yaml.in/yaml/v2"
)

// NetworkConfig is what the agent applies of a NoCloud network-config
// (version 2, the netplan format): its ethernets, each matched to an
// interface by MAC address.
type NetworkConfig struct {
	Ethernets []Ethernet // sorted by ID
}

// Ethernet is one interface of a network-config.
type Ethernet struct {
	ID  string           // the key under ethernets
	MAC net.HardwareAddr // match: macaddress
	// Name (set-name) is what the interface is renamed to; "" keeps the
	// kernel's name.
	Name      string
	Addresses []netip.Prefix
	// Gateway4 is the IPv4 default route's next hop; zero: none.
	Gateway4 netip.Addr
}

// Bounds on a network-config; far above what vgrid writes.
const (
	maxNetworkConfig = 64 << 10
	maxEthernets     = 64
	maxAddresses     = 64
)

// rawNetwork is a network-config document as YAML has it. NoCloud takes
// it with or without a top-level "network:" key.
type rawNetwork struct {
	Network   *rawNetwork            `yaml:"network"`
	Version   int                    `yaml:"version"`
	Ethernets map[string]rawEthernet `yaml:"ethernets"`
}

type rawEthernet struct {
	Match struct {
		MACAddress string `yaml:"macaddress"`
	} `yaml:"match"`
	SetName   string   `yaml:"set-name"`
	Addresses []string `yaml:"addresses"`
	Gateway4  string   `yaml:"gateway4"`
}

// ParseNetworkConfig reads the subset of a NoCloud network-config version
// 2 that vgrid writes: under ethernets, per interface, match: macaddress
// (required: the agent finds interfaces by MAC), set-name, addresses (CIDR
// prefixes, IPv4 or IPv6) and gateway4. Other keys are ignored (cloud-init
// knows many more); a value the agent would apply wrongly is an error: a
// version other than 2, a bad MAC, name, address or gateway, one MAC or
// name on two interfaces.
func ParseNetworkConfig(b []byte) (cfg NetworkConfig, err error) {
	if len(b) > maxNetworkConfig {
		return NetworkConfig{}, fmt.Errorf("network-config: %d bytes, at most %d", len(b), maxNetworkConfig)
	}
	var raw rawNetwork
	// The YAML decoder is not known to panic, but the agent is the
	// guest's init-ish process: an odd seed must not take it down.
	func() {
		defer func() {
			if r := recover(); r != nil {
				err = fmt.Errorf("network-config: %v", r)
			}
		}()
		err = yaml.Unmarshal(b, &raw)
	}()
	if err != nil {
		return NetworkConfig{}, fmt.Errorf("network-config: %w", err)
	}
	if raw.Network != nil {
		raw = *raw.Network
	}
	if raw.Version != 2 {
		return NetworkConfig{}, fmt.Errorf("network-config: version %d: want 2", raw.Version)
	}
	if len(raw.Ethernets) > maxEthernets {
		return NetworkConfig{}, fmt.Errorf("network-config: %d ethernets, at most %d", len(raw.Ethernets), maxEthernets)
	}
	ids := make([]string, 0, len(raw.Ethernets))
	for id := range raw.Ethernets {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	macs, names := map[string]string{}, map[string]string{}
	for _, id := range ids {
		r := raw.Ethernets[id]
		bad := func(format string, args ...any) error {
			return fmt.Errorf("network-config: ethernet %q: %s", id, fmt.Sprintf(format, args...))
		}
		e := Ethernet{ID: id, Name: r.SetName}
		if r.Match.MACAddress == "" {
			return NetworkConfig{}, bad("no match: macaddress")
		}
		mac, err := net.ParseMAC(r.Match.MACAddress)
		if err != nil || len(mac) != 6 {
			return NetworkConfig{}, bad("macaddress %q: want an Ethernet address", r.Match.MACAddress)
		}
		e.MAC = mac
		if other, dup := macs[mac.String()]; dup {
			return NetworkConfig{}, bad("macaddress %s: ethernet %q has it too", mac, other)
		}
		macs[mac.String()] = id
		if e.Name != "" {
			if !validLinkName(e.Name) {
				return NetworkConfig{}, bad("set-name %q: not an interface name", e.Name)
			}
			if other, dup := names[e.Name]; dup {
				return NetworkConfig{}, bad("set-name %s: ethernet %q has it too", e.Name, other)
			}
			names[e.Name] = id
		}
		if len(r.Addresses) > maxAddresses {
			return NetworkConfig{}, bad("%d addresses, at most %d", len(r.Addresses), maxAddresses)
		}
		for _, s := range r.Addresses {
			p, err := netip.ParsePrefix(s)
			if err != nil {
				return NetworkConfig{}, bad("address %q: want an address with its prefix length", s)
			}
			if a := p.Addr(); a.Zone() != "" || a.IsUnspecified() || a.IsMulticast() {
				return NetworkConfig{}, bad("address %s: want a unicast address", p)
			}
			if !slices.Contains(e.Addresses, p) {
				e.Addresses = append(e.Addresses, p)
			}
		}
		if r.Gateway4 != "" {
			g, err := netip.ParseAddr(r.Gateway4)
			if err != nil || !g.Is4() || g.IsUnspecified() || g.IsMulticast() {
				return NetworkConfig{}, bad("gateway4 %q: want an IPv4 unicast address", r.Gateway4)
			}
			e.Gateway4 = g
		}
		cfg.Ethernets = append(cfg.Ethernets, e)
	}
	return cfg, nil
}

// validLinkName reports whether Linux takes s as an interface name
// (dev_valid_name), restricted to printable ASCII.
func validLinkName(s string) bool {
	if s == "" || len(s) > 15 || s == "." || s == ".." {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c >= 0x7f || c == '/' || c == ':' {
			return false
		}
	}
	return true
}

// Link is a network interface of the guest.
type Link struct {
	Index int
	Name  string
	MAC   net.HardwareAddr
	Up    bool
}

// Links is what the agent changes of the guest's network interfaces:
// netlinkLinks in the guest, a fake in tests. Indexes are the kernel's
// interface indexes.
type Links interface {
	// List returns the interfaces.
	List() ([]Link, error)
	// SetName renames a link, which must be down.
	SetName(index int, name string) error
	// SetUp brings a link up or down.
	SetUp(index int, up bool) error
	// AddAddress gives a link an address; one it has already is no error.
	AddAddress(index int, addr netip.Prefix) error
	// SetDefaultRoute makes gw, through the link, the default route of
	// its family, replacing any other.
	SetDefaultRoute(index int, gw netip.Addr) error
}

// linkPoll is how often configureNetwork looks again for interfaces that
// are not there yet.
const linkPoll = 50 * time.Millisecond

// configureNetwork applies cfg: it waits (at most wait) for an interface
// with each ethernet's MAC, renames those whose set-name differs (through
// a temporary name, so that two interfaces may swap names), brings them
// up, adds their addresses, and sets the default route to the first
// gateway4 (in ID order). Applying it again changes nothing. Whatever
// fails is returned, after the rest was done.
func configureNetwork(l Links, cfg NetworkConfig, wait time.Duration) error {
	deadline := time.Now().Add(wait)
	var links []Link
	match := make([]int, len(cfg.Ethernets)) // index into links, or -1
	for {
		var err error
		if links, err = l.List(); err != nil {
			return fmt.Errorf("network: list interfaces: %w", err)
		}
		missing := 0
		for i, e := range cfg.Ethernets {
			match[i] = slices.IndexFunc(links, func(k Link) bool { return bytes.Equal(k.MAC, e.MAC) })
			if match[i] < 0 {
				missing++
			}
		}
		if missing == 0 || !time.Now().Before(deadline) {
			break
		}
		time.Sleep(linkPoll)
	}
	var errs []error
	// Renames: each link that needs one is set down and given a
	// temporary name first, then its own. A name another link holds that
	// is not being renamed is not taken from it.
	type rename struct {
		link   *Link
		name   string
		staged bool // it has its temporary name
	}
	var renames []*rename
	for i, e := range cfg.Ethernets {
		if match[i] < 0 {
			errs = append(errs, fmt.Errorf("network: ethernet %s: no interface with address %s", e.ID, e.MAC))
			continue
		}
		if k := &links[match[i]]; e.Name != "" && k.Name != e.Name {
			renames = append(renames, &rename{link: k, name: e.Name})
		}
	}
	// Drop the renames to a name that an interface keeps, until none is
	// left (dropping one makes its interface keep its name).
	for dropped := true; dropped; {
		dropped = false
		moving := map[int]bool{}
		for _, r := range renames {
			moving[r.link.Index] = true
		}
		for i, r := range renames {
			holder := slices.IndexFunc(links, func(k Link) bool { return k.Name == r.name })
			if holder >= 0 && !moving[links[holder].Index] {
				errs = append(errs, fmt.Errorf("network: cannot name %s %s: another interface has that name", r.link.Name, r.name))
				renames = slices.Delete(renames, i, i+1)
				dropped = true
				break
			}
		}
	}
	for _, r := range renames {
		if r.link.Up {
			if err := l.SetUp(r.link.Index, false); err != nil {
				errs = append(errs, fmt.Errorf("network: %s down: %w", r.link.Name, err))
				continue
			}
			r.link.Up = false
		}
		tmp := fmt.Sprintf("vgridtmp%d", r.link.Index)
		if err := l.SetName(r.link.Index, tmp); err != nil {
			errs = append(errs, fmt.Errorf("network: rename %s: %w", r.link.Name, err))
			continue
		}
		r.link.Name, r.staged = tmp, true
	}
	for _, r := range renames {
		if !r.staged {
			continue
		}
		if err := l.SetName(r.link.Index, r.name); err != nil {
			errs = append(errs, fmt.Errorf("network: rename %s to %s: %w", r.link.Name, r.name, err))
			continue
		}
		r.link.Name = r.name
	}
	routed := false
	for i, e := range cfg.Ethernets {
		if match[i] < 0 {
			continue
		}
		k := &links[match[i]]
		if !k.Up {
			if err := l.SetUp(k.Index, true); err != nil {
				errs = append(errs, fmt.Errorf("network: %s up: %w", k.Name, err))
				continue
			}
			k.Up = true
		}
		for _, a := range e.Addresses {
			if err := l.AddAddress(k.Index, a); err != nil {
				errs = append(errs, fmt.Errorf("network: address %s on %s: %w", a, k.Name, err))
			}
		}
		if e.Gateway4.IsValid() && !routed {
			routed = true
			if err := l.SetDefaultRoute(k.Index, e.Gateway4); err != nil {
				errs = append(errs, fmt.Errorf("network: default route via %s on %s: %w", e.Gateway4, k.Name, err))
			}
		}
	}
	return errors.Join(errs...)
}

// Where the agent keeps its network state (relative to its root; /run is
// a tmpfs, so it is per boot).
const dhcpMarkerDir = "run/vgrid"

// linkWait is how long the agent waits for the interfaces that its
// network-config names (their drivers are loaded by the initrd, so they
// are normally there at once).
const linkWait = 5 * time.Second

// applyNetwork configures the network: from a network-config (raw, from
// the seed) when there is one, else by DHCP on eth0 (QEMU's user-mode
// network), started once per boot in the background.
func (a *Agent) applyNetwork(raw []byte) error {
	if raw == nil {
		return a.startDefaultDHCP()
	}
	cfg, err := ParseNetworkConfig(raw)
	if err != nil {
		return err
	}
	if a.links == nil {
		a.log.Printf("network-config with %d interfaces not applied: no access to the interfaces", len(cfg.Ethernets))
		return nil
	}
	if err := configureNetwork(a.links, cfg, a.linkWait); err != nil {
		return err
	}
	a.log.Printf("network: configured %d interfaces from the seed's network-config", len(cfg.Ethernets))
	return nil
}

// startDefaultDHCP starts the DHCP client on eth0 if there is an eth0 and
// no earlier agent of this boot started it.
func (a *Agent) startDefaultDHCP() error {
	const iface = "eth0"
	if a.startDHCP == nil {
		return nil
	}
	if _, err := os.Stat(filepath.Join(a.root, "sys/class/net", iface)); err != nil {
		return nil
	}
	dir := filepath.Join(a.root, dhcpMarkerDir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("dhcp: %w", err)
	}
	f, err := os.OpenFile(filepath.Join(dir, "dhcp."+iface), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if errors.Is(err, os.ErrExist) {
		return nil // started by an earlier agent of this boot
	}
	if err != nil {
		return fmt.Errorf("dhcp: %w", err)
	}
	f.Close()
	if err := a.startDHCP(iface); err != nil {
		return err
	}
	a.dhcpStarted = true
	return nil
}

// dhcpWait bounds how long the agent waits for the DHCP lease before it
// says it is ready: its first facts then carry the address (the host asks
// for them once per connection).
const dhcpWait = 5 * time.Second

// waitAddress waits, when this agent started DHCP, until an interface has
// an address, at most dhcpWait.
func (a *Agent) waitAddress(ctx context.Context) {
	if !a.dhcpStarted {
		return
	}
	deadline := time.Now().Add(dhcpWait)
	for len(interfaceAddresses()) == 0 && time.Now().Before(deadline) && ctx.Err() == nil {
		time.Sleep(20 * time.Millisecond)
	}
}
