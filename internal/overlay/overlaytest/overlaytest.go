package overlaytest

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"vgrid/internal/netnsrun"
)

// Names.
const (
	Prefix   = "vgov-"          // of every namespace the bed makes
	netnsDir = "/var/run/netns" // where named namespaces live
	// UnderlaySubnet holds the hosts' addresses, .(10+i).
	UnderlaySubnet = "10.231.0.0/24"
)

var seq atomic.Int64

// NS is a named network namespace and a netlink handle in it.
type NS struct {
	Name   string // under /var/run/netns
	Handle netns.NsHandle
	NL     *netlink.Handle
}

// Path is the namespace's file.
func (n *NS) Path() string { return filepath.Join(netnsDir, n.Name) }

// Do runs f on an OS thread moved into the namespace. Sockets f opens
// stay in the namespace and may be used from any goroutine afterwards.
func (n *NS) Do(f func() error) error {
	if err := netnsrun.Do(n.Handle, f); err != nil {
		return fmt.Errorf("in %s: %w", n.Name, err)
	}
	return nil
}

// Listen opens a stream listener in the namespace.
func (n *NS) Listen(network, addr string) (l net.Listener, err error) {
	err = n.Do(func() error { l, err = net.Listen(network, addr); return err })
	return l, err
}

// ListenPacket opens a packet socket in the namespace.
func (n *NS) ListenPacket(network, addr string) (c net.PacketConn, err error) {
	err = n.Do(func() error { c, err = net.ListenPacket(network, addr); return err })
	return c, err
}

// Dial connects from the namespace.
func (n *NS) Dial(network, addr string, timeout time.Duration) (c net.Conn, err error) {
	err = n.Do(func() error { c, err = net.DialTimeout(network, addr, timeout); return err })
	return c, err
}

// Host is a host namespace with its underlay address on eth0.
type Host struct {
	*NS
	Index int
	Addr  netip.Addr
}

// Guest is a namespace behind a veth pair: eth0 inside, HostIf in the
// host's namespace.
type Guest struct {
	*NS
	Label  string // the name given to AddGuest
	Host   *Host
	HostIf string
	Addr   netip.Prefix
}

// Bed is a set of hosts on one underlay.
type Bed struct {
	Tag      string // vgov-<pid>-<n>
	Underlay *NS
	Hosts    []*Host
}

// Addrs are the hosts' underlay addresses.
func (b *Bed) Addrs() []netip.Addr {
	out := make([]netip.Addr, len(b.Hosts))
	for i, h := range b.Hosts {
		out[i] = h.Addr
	}
	return out
}

// New makes an underlay namespace and hosts host namespaces on it.
func New(t testing.TB, hosts int) *Bed {
	t.Helper()
	if hosts < 1 || hosts > 200 {
		t.Fatalf("overlaytest: %d hosts", hosts)
	}
	SweepStale()
	b := &Bed{Tag: fmt.Sprintf("%s%d-%d", Prefix, os.Getpid(), seq.Add(1))}
	b.Underlay = b.NewNS(t, "u")
	br := netlink.NewLinkAttrs()
	br.Name = "vgovu0"
	must(t, b.Underlay.NL.LinkAdd(&netlink.Bridge{LinkAttrs: br}), "underlay bridge")
	ubr, err := b.Underlay.NL.LinkByName("vgovu0")
	must(t, err, "underlay bridge")
	must(t, b.Underlay.NL.LinkSetUp(ubr), "underlay bridge up")
	base := netip.MustParsePrefix(UnderlaySubnet).Addr().As4()
	for i := 1; i <= hosts; i++ {
		ns := b.NewNS(t, "h"+strconv.Itoa(i))
		a := base
		a[3] = byte(10 + i)
		h := &Host{NS: ns, Index: i, Addr: netip.AddrFrom4(a)}
		peer := fmt.Sprintf("vgovh%d", i)
		Plug(t, ns, b.Underlay, "eth0", peer, 1500, netip.PrefixFrom(h.Addr, 24))
		l, err := b.Underlay.NL.LinkByName(peer)
		must(t, err, peer)
		must(t, b.Underlay.NL.LinkSetMaster(l, ubr), peer+" onto the underlay bridge")
		must(t, b.Underlay.NL.LinkSetUp(l), peer+" up")
		b.Hosts = append(b.Hosts, h)
	}
	for i, h := range b.Hosts {
		WaitUp(t, h.NS, "eth0")
		WaitUp(t, b.Underlay, fmt.Sprintf("vgovh%d", i+1))
	}
	WaitUp(t, b.Underlay, "vgovu0")
	return b
}

// NewNS makes the namespace <tag>-<role> with lo up, deleted at cleanup.
func (b *Bed) NewNS(t testing.TB, role string) *NS {
	t.Helper()
	name := b.Tag + "-" + role
	h, err := newNamed(name)
	if err != nil {
		t.Fatalf("overlaytest: namespace %s: %v", name, err)
	}
	n := &NS{Name: name, Handle: h}
	t.Cleanup(func() {
		if n.NL != nil {
			n.NL.Close()
		}
		n.Handle.Close()
		if err := netns.DeleteNamed(name); err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Errorf("overlaytest: delete namespace %s: %v", name, err)
		}
	})
	if n.NL, err = netlink.NewHandleAt(h); err != nil {
		t.Fatalf("overlaytest: netlink in %s: %v", name, err)
	}
	lo, err := n.NL.LinkByName("lo")
	must(t, err, name+": lo")
	must(t, n.NL.LinkSetUp(lo), name+": lo up")
	return n
}

// AddGuest makes the guest namespace <tag>-<name> (name at most 11
// characters) with eth0 at addr, paired with vgov<name> on bridge in h's
// namespace; both ends get the bridge's MTU.
func (b *Bed) AddGuest(t testing.TB, h *Host, name, bridge string, addr netip.Prefix) *Guest {
	t.Helper()
	br, err := h.NL.LinkByName(bridge)
	must(t, err, "bridge "+bridge+" in "+h.Name)
	mtu := br.Attrs().MTU
	g := &Guest{NS: b.NewNS(t, name), Label: name, Host: h, HostIf: "vgov" + name, Addr: addr}
	Plug(t, g.NS, h.NS, "eth0", g.HostIf, mtu, addr)
	l, err := h.NL.LinkByName(g.HostIf)
	must(t, err, g.HostIf)
	must(t, h.NL.LinkSetMaster(l, br), g.HostIf+" onto "+bridge)
	must(t, h.NL.LinkSetUp(l), g.HostIf+" up")
	WaitUp(t, g.NS, "eth0")
	WaitUp(t, h.NS, g.HostIf, bridge)
	return g
}

// WaitUp waits until the links are operationally up (or, for devices that
// do not track it, unknown). Until the kernel's link watcher has seen a
// new carrier, a device drops what is sent on it; this can take a second.
func WaitUp(t testing.TB, ns *NS, names ...string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for _, name := range names {
		for {
			l, err := ns.NL.LinkByName(name)
			must(t, err, name)
			if s := l.Attrs().OperState; s == netlink.OperUp || s == netlink.OperUnknown {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("overlaytest: %s in %s is %s, not up", name, ns.Name, l.Attrs().OperState)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// Plug makes a veth pair: inner in ns (with addr, up) and outer in peer
// (down, for the caller to attach), both with MTU mtu.
func Plug(t testing.TB, ns, peer *NS, inner, outer string, mtu int, addr netip.Prefix) {
	t.Helper()
	attrs := netlink.NewLinkAttrs()
	attrs.Name, attrs.MTU = inner, mtu
	v := &netlink.Veth{LinkAttrs: attrs, PeerName: outer, PeerNamespace: netlink.NsFd(int(peer.Handle)), PeerTxQLen: -1}
	must(t, ns.NL.LinkAdd(v), fmt.Sprintf("veth %s/%s", inner, outer))
	o, err := peer.NL.LinkByName(outer)
	must(t, err, outer)
	must(t, peer.NL.LinkSetMTU(o, mtu), outer+" MTU")
	l, err := ns.NL.LinkByName(inner)
	must(t, err, inner)
	a := &netlink.Addr{IPNet: &net.IPNet{IP: addr.Addr().AsSlice(), Mask: net.CIDRMask(addr.Bits(), addr.Addr().BitLen())}}
	must(t, ns.NL.AddrAdd(l, a), "address "+addr.String())
	must(t, ns.NL.LinkSetUp(l), inner+" up")
}

func must(t testing.TB, err error, what string) {
	t.Helper()
	if err != nil {
		t.Fatalf("overlaytest: %s: %v", what, err)
	}
}

// newNamed makes a persistent namespace on a thread of its own, moved
// back afterwards (or, if that fails, left to die with its goroutine).
func newNamed(name string) (netns.NsHandle, error) {
	return netnsrun.NewNamed(name)
}

// SweepStale deletes the namespaces vgov-<pid>-… of processes that are
// gone (a test binary that was killed before its cleanups ran).
func SweepStale() {
	ents, err := os.ReadDir(netnsDir)
	if err != nil {
		return
	}
	for _, e := range ents {
		rest, ok := strings.CutPrefix(e.Name(), Prefix)
		if !ok {
			continue
		}
		pid, _, ok := strings.Cut(rest, "-")
		if !ok {
			continue
		}
		n, err := strconv.Atoi(pid)
		if err != nil || n <= 0 || n == os.Getpid() {
			continue
		}
		if _, err := os.Stat(filepath.Join("/proc", pid)); errors.Is(err, os.ErrNotExist) {
			_ = netns.DeleteNamed(e.Name())
		}
	}
}

// Serve answers, until cleanup, on TCP and UDP port of g's address with
// g's label: a TCP connection gets it and is closed; a datagram gets it
// as a reply.
func Serve(t testing.TB, g *Guest, port int) {
	t.Helper()
	addr := netip.AddrPortFrom(g.Addr.Addr(), uint16(port)).String()
	ln, err := g.Listen("tcp", addr)
	must(t, err, "listen "+addr)
	pc, err := g.ListenPacket("udp", addr)
	must(t, err, "listen udp "+addr)
	t.Cleanup(func() { ln.Close(); pc.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_, _ = io.WriteString(c, g.Label)
			c.Close()
		}
	}()
	go func() {
		buf := make([]byte, 1500)
		for {
			_, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			_, _ = pc.WriteTo([]byte(g.Label), from)
		}
	}()
}

// AskTCP connects from ns to addr and returns what the server sent.
func AskTCP(ns *NS, addr string, timeout time.Duration) (string, error) {
	c, err := ns.Dial("tcp", addr, timeout)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(timeout))
	b, err := io.ReadAll(c)
	return string(b), err
}

// AskUDP sends a datagram from ns to addr and returns the reply.
func AskUDP(ns *NS, addr string, timeout time.Duration) (string, error) {
	c, err := ns.Dial("udp", addr, timeout)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(timeout))
	if _, err := c.Write([]byte("?")); err != nil {
		return "", err
	}
	buf := make([]byte, 1500)
	n, err := c.Read(buf)
	return string(buf[:n]), err
}

// Throughput sends TCP from ns from to addr:port (a listener it opens in
// to) and returns the rate the receiver saw, in bits per second, over dur
// after warmup (both counted from the first byte received).
func Throughput(from, to *NS, addr netip.Addr, port int, warmup, dur time.Duration) (float64, error) {
	ap := netip.AddrPortFrom(addr, uint16(port)).String()
	ln, err := to.Listen("tcp", ap)
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	type result struct {
		bps float64
		err error
	}
	res := make(chan result, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			res <- result{0, err}
			return
		}
		defer c.Close()
		_ = c.SetReadDeadline(time.Now().Add(warmup + dur + 10*time.Second))
		buf := make([]byte, 256<<10)
		var total, startBytes int64
		var first, start time.Time
		for {
			n, err := c.Read(buf)
			now := time.Now()
			total += int64(n)
			if n > 0 && first.IsZero() {
				first = now
			}
			if start.IsZero() && !first.IsZero() && now.Sub(first) >= warmup {
				start, startBytes = now, total
			}
			if !start.IsZero() && now.Sub(start) >= dur {
				res <- result{float64(total-startBytes) * 8 / now.Sub(start).Seconds(), nil}
				return
			}
			if err != nil {
				res <- result{0, fmt.Errorf("receive: %w", err)}
				return
			}
		}
	}()
	c, err := from.Dial("tcp", ap, 2*time.Second)
	if err != nil {
		return 0, err
	}
	go func() {
		buf := make([]byte, 64<<10)
		for {
			if _, err := c.Write(buf); err != nil {
				return
			}
		}
	}()
	r := <-res
	c.Close()
	return r.bps, r.err
}
