package overlay

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"

	"github.com/vishvananda/netlink"

	"vgrid/internal/netnsrun"
)

// EnsureTap makes tap a persistent TAP device of network vni: owned by
// root (uid and gid 0), single queue, IFF_NO_PI and IFF_VNET_HDR (QEMU
// sets its own flags when it attaches with -netdev
// tap,ifname=<tap>,script=no,downscript=no[,vhost=on]), with the bridge's
// MTU, a port of the bridge, up. mac, if not nil, is the host-side address
// of the tap; it must differ from the guest's address (the bridge would
// take frames for the guest as its own). Ensure must have made the network.
// An existing tap is kept (QEMU may have it open) and fixed; a link of
// that name that is not a single-queue TAP is an error.
func (h *Host) EnsureTap(vni uint32, tap string, mac net.HardwareAddr) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if err := validName(tap); err != nil {
		return err
	}
	if mac != nil && (len(mac) != 6 || mac[0]&1 != 0) {
		return fmt.Errorf("overlay: tap %s: address %s: want a unicast Ethernet address", tap, mac)
	}
	brName := BridgeName(vni)
	br, err := h.nl.LinkByName(brName)
	if err != nil {
		return fmt.Errorf("overlay: tap %s: network %d: bridge %s: %w", tap, vni, brName, err)
	}
	if br.Type() != "bridge" {
		return fmt.Errorf("overlay: tap %s: %s is a %s, not a bridge", tap, brName, br.Type())
	}
	l, err := h.nl.LinkByName(tap)
	if isNotFound(err) {
		if err := h.createTap(tap); err != nil {
			return fmt.Errorf("overlay: create tap %s: %w", tap, err)
		}
		l, err = h.nl.LinkByName(tap)
	}
	if err != nil {
		return fmt.Errorf("overlay: tap %s: %w", tap, err)
	}
	t, ok := l.(*netlink.Tuntap)
	if !ok || t.Mode != netlink.TUNTAP_MODE_TAP {
		return fmt.Errorf("overlay: %s exists and is a %s, not a tap", tap, describe(l))
	}
	if t.Flags&netlink.TUNTAP_MULTI_QUEUE != 0 {
		return fmt.Errorf("overlay: tap %s is multi-queue: delete it first", tap)
	}
	a := l.Attrs()
	if mtu := br.Attrs().MTU; a.MTU != mtu {
		if err := h.nl.LinkSetMTU(l, mtu); err != nil {
			return fmt.Errorf("overlay: MTU %d on tap %s: %w", mtu, tap, err)
		}
	}
	if mac != nil && !bytes.Equal(a.HardwareAddr, mac) {
		if err := h.nl.LinkSetHardwareAddr(l, mac); err != nil {
			return fmt.Errorf("overlay: address %s on tap %s: %w", mac, tap, err)
		}
	}
	if a.MasterIndex != br.Attrs().Index {
		if err := h.nl.LinkSetMaster(l, br); err != nil {
			return fmt.Errorf("overlay: tap %s onto %s: %w", tap, brName, err)
		}
	}
	if a.Flags&net.FlagUp == 0 {
		if err := h.nl.LinkSetUp(l); err != nil {
			return fmt.Errorf("overlay: tap %s up: %w", tap, err)
		}
	}
	return nil
}

func describe(l netlink.Link) string {
	if t, ok := l.(*netlink.Tuntap); ok {
		return t.Mode.String()
	}
	return l.Type()
}

// createTap makes a persistent tap. TAP devices are made with an ioctl on
// /dev/net/tun, which acts in the namespace of the calling thread, not over
// a netlink socket: so it runs on a thread moved into h's namespace.
func (h *Host) createTap(name string) error {
	return netnsrun.Do(h.ns, func() error {
		return netlink.LinkAdd(&netlink.Tuntap{
			LinkAttrs: netlink.LinkAttrs{Name: name},
			Mode:      netlink.TUNTAP_MODE_TAP,
			Flags:     netlink.TUNTAP_NO_PI | netlink.TUNTAP_VNET_HDR,
			Owner:     0,
			Group:     0,
		})
	})
}

// DeleteTap removes tap and its IFB (see SetBandwidth). A tap that is not
// there is not an error; a link of that name that is not a tap is.
func (h *Host) DeleteTap(tap string) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if err := validName(tap); err != nil {
		return err
	}
	var errs []error
	if err := h.deleteIFB(tap); err != nil {
		errs = append(errs, err)
	}
	l, err := h.nl.LinkByName(tap)
	switch {
	case isNotFound(err):
	case err != nil:
		errs = append(errs, fmt.Errorf("tap %s: %w", tap, err))
	case l.Type() != "tuntap":
		errs = append(errs, fmt.Errorf("%s is a %s, not a tap: left alone", tap, l.Type()))
	default:
		if err := h.nl.LinkDel(l); err != nil && !isNotFound(err) {
			errs = append(errs, fmt.Errorf("delete tap %s: %w", tap, err))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("overlay: delete tap: %w", errors.Join(errs...))
	}
	return nil
}

func validName(name string) error {
	if name == "" || len(name) > ifnameMax || name == "." || name == ".." ||
		slices.ContainsFunc([]byte(name), func(c byte) bool { return c <= ' ' || c == '/' || c == ':' || c >= 0x7f }) {
		return fmt.Errorf("overlay: interface name %q: 1 to %d printable characters, no '/', ':' or spaces", name, ifnameMax)
	}
	return nil
}

// Tap is a TAP device as Taps reports it.
type Tap struct {
	Name string
	// VNI is the network whose bridge (vgb-<vni>) the tap is a port of; 0
	// when it is on none.
	VNI uint32
}

// Taps lists the TAP devices whose names start with prefix (all of them
// for ""), with the network each is a port of, sorted by name: the
// agent's view of the taps it may have to clean up.
func (h *Host) Taps(prefix string) ([]Tap, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	links, err := retry(h.nl.LinkList)
	if err != nil {
		return nil, fmt.Errorf("overlay: list links: %w", err)
	}
	bridges := map[int]uint32{}
	for _, l := range links {
		if l.Type() != "bridge" {
			continue
		}
		rest, ok := strings.CutPrefix(l.Attrs().Name, BridgePrefix)
		if !ok {
			continue
		}
		if v, err := strconv.ParseUint(rest, 10, 32); err == nil && v > 0 && v <= MaxVNI && strconv.FormatUint(v, 10) == rest {
			bridges[l.Attrs().Index] = uint32(v)
		}
	}
	var out []Tap
	for _, l := range links {
		t, ok := l.(*netlink.Tuntap)
		if !ok || t.Mode != netlink.TUNTAP_MODE_TAP || !strings.HasPrefix(t.Name, prefix) {
			continue
		}
		out = append(out, Tap{Name: t.Name, VNI: bridges[t.MasterIndex]})
	}
	slices.SortFunc(out, func(a, b Tap) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}
