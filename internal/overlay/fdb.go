package overlay

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// PeerEntries lists the all-zero-MAC FDB entries (the head-end replication
// list) of network vni's VXLAN device: one underlay address per peer.
func (h *Host) PeerEntries(vni uint32) ([]netip.Addr, error) {
	fdb, err := h.FDB(vni)
	if err != nil {
		return nil, err
	}
	var out []netip.Addr
	for _, r := range fdb {
		if slices.Equal(r.MAC, zeroMAC) {
			out = append(out, r.Host)
		}
	}
	return out, nil
}

// FDB lists the static entries of network vni's VXLAN device, sorted by
// MAC then host: the peers (all-zero MAC) and the Remotes.
func (h *Host) FDB(vni uint32) ([]Remote, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	vx, err := h.nl.LinkByName(VxlanName(vni))
	if err != nil {
		return nil, fmt.Errorf("overlay: network %d: %w", vni, err)
	}
	have, err := h.fdb(vx)
	if err != nil {
		return nil, fmt.Errorf("overlay: network %d: %w", vni, err)
	}
	out := make([]Remote, 0, len(have))
	for k := range have {
		mac, _ := net.ParseMAC(k.mac)
		out = append(out, Remote{MAC: mac, Host: k.host})
	}
	slices.SortFunc(out, func(a, b Remote) int {
		if c := strings.Compare(a.MAC.String(), b.MAC.String()); c != 0 {
			return c
		}
		return a.Host.Compare(b.Host)
	})
	return out, nil
}

type fdbKey struct {
	mac  string // net.HardwareAddr.String()
	host netip.Addr
}

// fdb reads the FDB entries of vx that point at a remote host.
func (h *Host) fdb(vx netlink.Link) (map[fdbKey]bool, error) {
	idx := vx.Attrs().Index
	list, err := retry(func() ([]netlink.Neigh, error) { return h.nl.NeighList(idx, unix.AF_BRIDGE) })
	if err != nil {
		return nil, fmt.Errorf("list FDB of %s: %w", vx.Attrs().Name, err)
	}
	have := map[fdbKey]bool{}
	for _, e := range list {
		if e.LinkIndex != idx || e.Flags&netlink.NTF_SELF == 0 || len(e.HardwareAddr) != 6 {
			continue
		}
		if a, ok := netip.AddrFromSlice(e.IP); ok && a.IsValid() {
			have[fdbKey{e.HardwareAddr.String(), a.Unmap()}] = true
		}
	}
	return have, nil
}

func fdbEntry(idx int, k fdbKey) *netlink.Neigh {
	mac, _ := net.ParseMAC(k.mac)
	return &netlink.Neigh{
		LinkIndex:    idx,
		Family:       unix.AF_BRIDGE,
		Flags:        netlink.NTF_SELF,
		State:        netlink.NUD_PERMANENT | netlink.NUD_NOARP,
		HardwareAddr: mac,
		IP:           net.IP(k.host.AsSlice()),
	}
}

// syncFDB makes the entries of vx exactly: the all-zero MAC to each peer
// (appended: one MAC, many destinations) and each remote MAC to its host.
func (h *Host) syncFDB(vx netlink.Link, peers []netip.Addr, macs map[string]netip.Addr) error {
	have, err := h.fdb(vx)
	if err != nil {
		return err
	}
	want := map[fdbKey]bool{}
	for _, p := range peers {
		want[fdbKey{zeroMAC.String(), p}] = true
	}
	for m, a := range macs {
		want[fdbKey{m, a}] = true
	}
	idx := vx.Attrs().Index
	// Deletions first: a remote MAC that moved to another host has one
	// destination at a time.
	for k := range have {
		if want[k] {
			continue
		}
		if err := h.nl.NeighDel(fdbEntry(idx, k)); err != nil && !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("delete FDB entry %s dst %v: %w", k.mac, k.host, err)
		}
	}
	for k := range want {
		if have[k] {
			continue
		}
		if err := h.nl.NeighAppend(fdbEntry(idx, k)); err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("FDB entry %s dst %v: %w", k.mac, k.host, err)
		}
	}
	return nil
}
