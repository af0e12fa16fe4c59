package netgrid

import (
	"errors"
	"fmt"
	"hash/fnv"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"vgrid/internal/netnsrun"
)

// Defaults of Config.
const (
	DefaultBridge = "vgridbr0"
	DefaultSubnet = "10.77.0.0/24"
	DefaultPrefix = "vgrid-h"
	// NetnsDir holds the persistent namespaces (as iproute2 keeps them).
	NetnsDir = "/var/run/netns"
	// MaxHosts is the most hosts a /24 holds at .(10+i).
	MaxHosts = 244
	// ifnameMax is the longest Linux interface name.
	ifnameMax = 15
)

// Config describes the grid's network.
type Config struct {
	Bridge string `json:"bridge"` // bridge in the root namespace
	Subnet string `json:"subnet"` // an IPv4 /24; the bridge holds .1
	Prefix string `json:"prefix"` // namespace i is <Prefix><i>
	Hosts  int    `json:"hosts"`  // namespaces 1..Hosts
}

// WithDefaults fills in the empty fields.
func (c Config) WithDefaults() Config {
	if c.Bridge == "" {
		c.Bridge = DefaultBridge
	}
	if c.Subnet == "" {
		c.Subnet = DefaultSubnet
	}
	if c.Prefix == "" {
		c.Prefix = DefaultPrefix
	}
	return c
}

// Validate checks the names and the subnet.
func (c Config) Validate() error {
	c = c.WithDefaults()
	if c.Hosts < 1 || c.Hosts > MaxHosts {
		return fmt.Errorf("netgrid: %d hosts, want 1 to %d", c.Hosts, MaxHosts)
	}
	if len(c.Bridge) > ifnameMax || strings.ContainsAny(c.Bridge, "/ \t\n") {
		return fmt.Errorf("netgrid: bridge name %q: at most %d characters, no spaces or slashes", c.Bridge, ifnameMax)
	}
	if strings.ContainsAny(c.Prefix, "/ \t\n") || c.Prefix == "." || c.Prefix == ".." {
		return fmt.Errorf("netgrid: namespace prefix %q: no spaces or slashes", c.Prefix)
	}
	if _, err := c.subnet(); err != nil {
		return err
	}
	return nil
}

func (c Config) subnet() (net.IP, error) {
	c = c.WithDefaults()
	ip, n, err := net.ParseCIDR(c.Subnet)
	if err != nil {
		return nil, fmt.Errorf("netgrid: subnet %q: %w", c.Subnet, err)
	}
	ones, bits := n.Mask.Size()
	if ip.To4() == nil || ones != 24 || bits != 32 {
		return nil, fmt.Errorf("netgrid: subnet %q: want an IPv4 /24", c.Subnet)
	}
	return n.IP.To4(), nil
}

func (c Config) ipAt(last byte) net.IP {
	base, err := c.subnet()
	if err != nil {
		return nil
	}
	return net.IPv4(base[0], base[1], base[2], last).To4()
}

// BridgeIP is the bridge's address (.1): the root namespace as the
// namespaces see it.
func (c Config) BridgeIP() net.IP { return c.ipAt(1) }

// HostIP is host i's address, .(10+i).
func (c Config) HostIP(i int) net.IP { return c.ipAt(byte(10 + i)) }

// Namespace is host i's namespace name.
func (c Config) Namespace(i int) string { return c.WithDefaults().Prefix + strconv.Itoa(i) }

// hostVeth is the root-namespace end of host i's veth pair: ve-<namespace>
// if that fits in an interface name, else ve + a hash of the namespace.
func (c Config) hostVeth(i int) string {
	ns := c.Namespace(i)
	if n := "ve-" + ns; len(n) <= ifnameMax {
		return n
	}
	h := fnv.New32a()
	h.Write([]byte(ns))
	return fmt.Sprintf("ve%08x", h.Sum32())
}

// Host is one namespace of the grid.
type Host struct {
	Index     int    // 1-based
	Namespace string // name under /var/run/netns
	Address   net.IP // eth0's address inside the namespace
	Veth      string // the veth end on the bridge
}

// HostList lists the grid's hosts as Setup makes them.
func (c Config) HostList() []Host {
	c = c.WithDefaults()
	out := make([]Host, 0, c.Hosts)
	for i := 1; i <= c.Hosts; i++ {
		out = append(out, Host{Index: i, Namespace: c.Namespace(i), Address: c.HostIP(i), Veth: c.hostVeth(i)})
	}
	return out
}

// NamespacePath is the file of a persistent namespace.
func NamespacePath(name string) string { return filepath.Join(NetnsDir, name) }

// Setup makes (or repairs) the bridge and the namespaces of c. It needs
// root (CAP_NET_ADMIN and CAP_SYS_ADMIN).
func Setup(c Config) ([]Host, error) {
	c = c.WithDefaults()
	if err := c.Validate(); err != nil {
		return nil, err
	}
	br, err := ensureBridge(c)
	if err != nil {
		return nil, err
	}
	hosts := c.HostList()
	var renewed []net.IP
	for _, h := range hosts {
		fresh, err := ensureHost(c, br, h)
		if err != nil {
			return nil, fmt.Errorf("netgrid: host %d (%s): %w", h.Index, h.Namespace, err)
		}
		if fresh {
			renewed = append(renewed, h.Address)
		}
	}
	if len(renewed) > 0 {
		forgetNeighbours(hosts, renewed)
	}
	if err := openFirewall(c.Bridge); err != nil {
		return nil, err
	}
	return hosts, nil
}

func ensureBridge(c Config) (netlink.Link, error) {
	br, err := netlink.LinkByName(c.Bridge)
	if err != nil {
		if !isNotFound(err) {
			return nil, fmt.Errorf("netgrid: bridge %s: %w", c.Bridge, err)
		}
		if err := netlink.LinkAdd(&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: c.Bridge}}); err != nil && !errors.Is(err, unix.EEXIST) {
			return nil, fmt.Errorf("netgrid: create bridge %s: %w", c.Bridge, err)
		}
		if br, err = netlink.LinkByName(c.Bridge); err != nil {
			return nil, fmt.Errorf("netgrid: bridge %s: %w", c.Bridge, err)
		}
	}
	if br.Type() != "bridge" {
		return nil, fmt.Errorf("netgrid: %s exists and is a %s, not a bridge", c.Bridge, br.Type())
	}
	addr := &netlink.Addr{IPNet: &net.IPNet{IP: c.BridgeIP(), Mask: net.CIDRMask(24, 32)}}
	if err := netlink.AddrReplace(br, addr); err != nil {
		return nil, fmt.Errorf("netgrid: address %s on %s: %w", addr.IPNet, c.Bridge, err)
	}
	if err := netlink.LinkSetUp(br); err != nil {
		return nil, fmt.Errorf("netgrid: bridge %s up: %w", c.Bridge, err)
	}
	return br, nil
}

func isNotFound(err error) bool {
	var nf netlink.LinkNotFoundError
	return errors.As(err, &nf) || errors.Is(err, unix.ENODEV)
}

// ensureNamespace opens the persistent namespace name, creating it (or
// re-creating it, if its file is there but no longer a namespace).
func ensureNamespace(name string) (netns.NsHandle, error) {
	p := NamespacePath(name)
	if isNamespaceFile(p) {
		return netns.GetFromPath(p)
	}
	if _, err := os.Stat(p); err == nil {
		// A leftover file without its mount: not a namespace.
		_ = unix.Unmount(p, unix.MNT_DETACH)
		if err := os.Remove(p); err != nil {
			return netns.None(), err
		}
	}
	return netnsrun.NewNamed(name)
}

// isNamespaceFile reports whether p is a mounted network namespace file.
func isNamespaceFile(p string) bool {
	var st unix.Statfs_t
	if err := unix.Statfs(p, &st); err != nil {
		return false
	}
	return st.Type == unix.NSFS_MAGIC
}

// ensureHost makes or repairs host h; fresh reports a new veth pair (a
// new MAC address behind h.Address).
func ensureHost(c Config, br netlink.Link, h Host) (fresh bool, err error) {
	ns, err := ensureNamespace(h.Namespace)
	if err != nil {
		return false, fmt.Errorf("namespace: %w", err)
	}
	defer ns.Close()
	nh, err := netlink.NewHandleAt(ns)
	if err != nil {
		return false, fmt.Errorf("netlink in the namespace: %w", err)
	}
	defer nh.Close()
	return ensureLinks(c, br, h, ns, nh)
}

func ensureLinks(c Config, br netlink.Link, h Host, ns netns.NsHandle, nh *netlink.Handle) (fresh bool, err error) {

	outer, oerr := netlink.LinkByName(h.Veth)
	inner, ierr := nh.LinkByName("eth0")
	paired := oerr == nil && ierr == nil && outer.Type() == "veth" && inner.Type() == "veth" &&
		outer.Attrs().ParentIndex == inner.Attrs().Index && inner.Attrs().ParentIndex == outer.Attrs().Index
	if !paired {
		// Start the pair afresh: either end alone is useless.
		if oerr == nil {
			if err := netlink.LinkDel(outer); err != nil {
				return fresh, fmt.Errorf("delete stale %s: %w", h.Veth, err)
			}
		}
		if inner, ierr = nh.LinkByName("eth0"); ierr == nil {
			if err := nh.LinkDel(inner); err != nil {
				return fresh, fmt.Errorf("delete stale eth0: %w", err)
			}
		}
		v := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: h.Veth}, PeerName: "eth0", PeerNamespace: netlink.NsFd(int(ns))}
		if err := netlink.LinkAdd(v); err != nil {
			return fresh, fmt.Errorf("create veth %s/eth0: %w", h.Veth, err)
		}
		if outer, err = netlink.LinkByName(h.Veth); err != nil {
			return fresh, err
		}
		if inner, err = nh.LinkByName("eth0"); err != nil {
			return fresh, err
		}
		fresh = true
	}
	if outer.Attrs().MasterIndex != br.Attrs().Index {
		if err := netlink.LinkSetMaster(outer, br); err != nil {
			return fresh, fmt.Errorf("%s onto %s: %w", h.Veth, c.Bridge, err)
		}
	}
	if err := netlink.LinkSetUp(outer); err != nil {
		return fresh, fmt.Errorf("%s up: %w", h.Veth, err)
	}
	lo, err := nh.LinkByName("lo")
	if err != nil {
		return fresh, fmt.Errorf("lo: %w", err)
	}
	if err := nh.LinkSetUp(lo); err != nil {
		return fresh, fmt.Errorf("lo up: %w", err)
	}
	mask := net.CIDRMask(24, 32)
	if err := nh.AddrReplace(inner, &netlink.Addr{IPNet: &net.IPNet{IP: h.Address, Mask: mask}}); err != nil {
		return fresh, fmt.Errorf("address %s on eth0: %w", h.Address, err)
	}
	// Other addresses on eth0 (a Config that changed) would confuse the
	// host's identity: drop them.
	if addrs, err := nh.AddrList(inner, netlink.FAMILY_V4); err == nil {
		for _, a := range addrs {
			if !a.IP.Equal(h.Address) {
				_ = nh.AddrDel(inner, &a)
			}
		}
	}
	if err := nh.LinkSetUp(inner); err != nil {
		return fresh, fmt.Errorf("eth0 up: %w", err)
	}
	def := &netlink.Route{LinkIndex: inner.Attrs().Index, Dst: nil, Gw: c.BridgeIP()}
	if err := nh.RouteReplace(def); err != nil {
		return fresh, fmt.Errorf("default route via %s: %w", c.BridgeIP(), err)
	}
	return fresh, nil
}

// forgetNeighbours deletes the root namespace's and the hosts' neighbour
// (ARP) entries for addresses now behind a new veth, which would
// otherwise point at the old MAC address until they age out.
func forgetNeighbours(hosts []Host, addrs []net.IP) {
	forget := func(nh *netlink.Handle) {
		neighs, err := nh.NeighList(0, netlink.FAMILY_V4)
		if err != nil {
			return
		}
		for _, n := range neighs {
			for _, a := range addrs {
				if n.IP.Equal(a) {
					_ = nh.NeighDel(&n)
				}
			}
		}
	}
	if root, err := netlink.NewHandle(); err == nil {
		forget(root)
		root.Close()
	}
	for _, h := range hosts {
		ns, err := netns.GetFromPath(NamespacePath(h.Namespace))
		if err != nil {
			continue
		}
		if nh, err := netlink.NewHandleAt(ns); err == nil {
			forget(nh)
			nh.Close()
		}
		ns.Close()
	}
}

// Teardown removes the grid's namespaces (every <prefix><digits>, not
// only 1..Hosts), their veths, the bridge and the firewall rules Setup
// added. Processes still in a namespace keep it alive, unnamed, until they
// end: callers check PIDs first (see Busy).
func Teardown(c Config) error {
	c = c.WithDefaults()
	var errs []error
	for _, name := range Namespaces(c.Prefix) {
		i, _ := strconv.Atoi(strings.TrimPrefix(name, c.Prefix))
		if l, err := netlink.LinkByName(c.hostVeth(i)); err == nil {
			if err := netlink.LinkDel(l); err != nil {
				errs = append(errs, fmt.Errorf("delete %s: %w", l.Attrs().Name, err))
			}
		}
		if err := netns.DeleteNamed(name); err != nil && !errors.Is(err, os.ErrNotExist) {
			// Not mounted (a leftover file): remove the file.
			if rerr := os.Remove(NamespacePath(name)); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
				errs = append(errs, fmt.Errorf("delete namespace %s: %w", name, err))
			}
		}
	}
	if br, err := netlink.LinkByName(c.Bridge); err == nil {
		if br.Type() != "bridge" {
			errs = append(errs, fmt.Errorf("%s is a %s, not a bridge: left alone", c.Bridge, br.Type()))
		} else if err := netlink.LinkDel(br); err != nil {
			errs = append(errs, fmt.Errorf("delete bridge %s: %w", c.Bridge, err))
		}
	}
	if err := closeFirewall(c.Bridge); err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return fmt.Errorf("netgrid teardown: %w", errors.Join(errs...))
	}
	return nil
}

// Namespaces lists the persistent namespaces named <prefix><digits>.
func Namespaces(prefix string) []string {
	ents, err := os.ReadDir(NetnsDir)
	if err != nil {
		return nil
	}
	var out []string
	for _, e := range ents {
		rest, ok := strings.CutPrefix(e.Name(), prefix)
		if !ok || rest == "" {
			continue
		}
		if _, err := strconv.Atoi(rest); err == nil && !strings.HasPrefix(rest, "+") && !strings.HasPrefix(rest, "-") {
			out = append(out, e.Name())
		}
	}
	return out
}

// Firewall rules (see the package comment).
const ruleComment = "vgrid-netgrid "

func firewallRules(bridge string) [][]string {
	tag := []string{"-m", "comment", "--comment", ruleComment + bridge}
	return [][]string{
		append([]string{"FORWARD", "-i", bridge, "-o", bridge}, append(tag, "-j", "ACCEPT")...),
		append([]string{"INPUT", "-i", bridge}, append(tag, "-j", "ACCEPT")...),
	}
}

func iptables() string {
	p, err := exec.LookPath("iptables")
	if err != nil {
		return ""
	}
	return p
}

func openFirewall(bridge string) error {
	ipt := iptables()
	if ipt == "" {
		return nil
	}
	for _, r := range firewallRules(bridge) {
		if exec.Command(ipt, append([]string{"-w", "-C"}, r...)...).Run() == nil {
			continue
		}
		if out, err := exec.Command(ipt, append([]string{"-w", "-I"}, r...)...).CombinedOutput(); err != nil {
			return fmt.Errorf("netgrid: iptables -I %s: %v: %s", strings.Join(r, " "), err, strings.TrimSpace(string(out)))
		}
	}
	return nil
}

func closeFirewall(bridge string) error {
	ipt := iptables()
	if ipt == "" {
		return nil
	}
	for _, r := range firewallRules(bridge) {
		for exec.Command(ipt, append([]string{"-w", "-C"}, r...)...).Run() == nil {
			if out, err := exec.Command(ipt, append([]string{"-w", "-D"}, r...)...).CombinedOutput(); err != nil {
				return fmt.Errorf("netgrid: iptables -D %s: %v: %s", strings.Join(r, " "), err, strings.TrimSpace(string(out)))
			}
		}
	}
	return nil
}
