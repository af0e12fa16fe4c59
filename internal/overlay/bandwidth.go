package overlay

import (
	"errors"
	"fmt"
	"hash/fnv"
	"net"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Shaping parameters (see the package comment for the formulas).
const (
	// BurstTime is how long the bucket lasts at the cap when it is larger
	// than MinBurst: the qdisc may be serviced this late without the link
	// losing rate.
	BurstTime = 10 * time.Millisecond
	// MinBurst holds a whole 64 KiB GSO packet with its headers, so TBF
	// need not split GSO packets and small rates keep an MTU-sized burst.
	MinBurst = 128 << 10
	// QueueLatency is how long a full queue takes to drain at the cap.
	QueueLatency = 50 * time.Millisecond
	// MinRate is the smallest cap (bits per second).
	MinRate = 64_000
)

// TBF is the token bucket SetBandwidth installs for a rate.
type TBF struct {
	Rate  uint64 // bytes per second
	Burst uint32 // bucket size, bytes
	Limit uint32 // queue size, bytes
}

// TBFFor computes the bucket for a cap of bps bits per second:
//
//	rate  = bps / 8
//	burst = max(rate × BurstTime, MinBurst)
//	limit = burst + rate × QueueLatency
func TBFFor(bps uint64) TBF {
	rate := bps / 8
	burst := max(rate*uint64(BurstTime)/uint64(time.Second), MinBurst)
	limit := burst + rate*uint64(QueueLatency)/uint64(time.Second)
	return TBF{Rate: rate, Burst: uint32(min(burst, 1<<31)), Limit: uint32(min(limit, 1<<31))}
}

func (p TBF) qdisc(link int) *netlink.Tbf {
	return &netlink.Tbf{
		QdiscAttrs: netlink.QdiscAttrs{LinkIndex: link, Handle: netlink.MakeHandle(1, 0), Parent: netlink.HANDLE_ROOT},
		Rate:       p.Rate,
		Limit:      p.Limit,
		Buffer:     netlink.Xmittime(p.Rate, p.Burst), // in scheduler ticks
	}
}

// IFBName is the IFB that shapes what the guest behind tap sends:
// vgi-<tap> if that fits in an interface name, else vgi-<hash of tap>.
func IFBName(tap string) string {
	if n := IFBPrefix + tap; len(n) <= ifnameMax {
		return n
	}
	f := fnv.New32a()
	f.Write([]byte(tap))
	return fmt.Sprintf("%s%08x", IFBPrefix, f.Sum32())
}

// SetBandwidth caps, in bits per second, what the guest behind tap sends
// (egressBps: the tap's ingress, redirected to the IFB IFBName(tap) and
// shaped by a TBF at its root) and what it receives (ingressBps: a TBF at
// the tap's root). Directions are the guest's, as in the CNI bandwidth
// plugin: egress leaves the guest, ingress enters it. 0 removes a cap (and
// the IFB). Calling again with other rates changes the TBFs in place;
// with the same rates it changes nothing. tap may be any device, e.g. the
// host end of a veth.
func (h *Host) SetBandwidth(tap string, egressBps, ingressBps uint64) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if err := validName(tap); err != nil {
		return err
	}
	for _, r := range []uint64{egressBps, ingressBps} {
		if r != 0 && r < MinRate {
			return fmt.Errorf("overlay: tap %s: rate %d bit/s: want 0 or at least %d", tap, r, MinRate)
		}
	}
	l, err := h.nl.LinkByName(tap)
	if err != nil {
		return fmt.Errorf("overlay: tap %s: %w", tap, err)
	}
	if ingressBps == 0 {
		err = h.removeTBF(l)
	} else {
		err = h.ensureTBF(l, TBFFor(ingressBps))
	}
	if err != nil {
		return fmt.Errorf("overlay: tap %s: guest ingress: %w", tap, err)
	}
	if egressBps == 0 {
		err = h.removeRedirect(l)
		if err == nil {
			err = h.deleteIFB(tap)
		}
	} else {
		err = h.ensureRedirect(l, TBFFor(egressBps))
	}
	if err != nil {
		return fmt.Errorf("overlay: tap %s: guest egress: %w", tap, err)
	}
	return nil
}

// Bandwidth reads back the caps SetBandwidth set on tap (0: none).
func (h *Host) Bandwidth(tap string) (egressBps, ingressBps uint64, err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	l, err := h.nl.LinkByName(tap)
	if err != nil {
		return 0, 0, fmt.Errorf("overlay: tap %s: %w", tap, err)
	}
	if t, err := h.rootTBF(l); err != nil {
		return 0, 0, err
	} else if t != nil {
		ingressBps = t.Rate * 8
	}
	if ifb, err := h.nl.LinkByName(IFBName(tap)); err == nil {
		if t, err := h.rootTBF(ifb); err != nil {
			return 0, 0, err
		} else if t != nil && h.hasRedirect(l, ifb.Attrs().Index) {
			egressBps = t.Rate * 8
		}
	}
	return egressBps, ingressBps, nil
}

// rootTBF is the TBF at the root of l, if that is where one is.
func (h *Host) rootTBF(l netlink.Link) (*netlink.Tbf, error) {
	qs, err := retry(func() ([]netlink.Qdisc, error) { return h.nl.QdiscList(l) })
	if err != nil {
		return nil, fmt.Errorf("qdiscs of %s: %w", l.Attrs().Name, err)
	}
	for _, q := range qs {
		if q.Attrs().Parent != netlink.HANDLE_ROOT {
			continue
		}
		t, _ := q.(*netlink.Tbf)
		return t, nil
	}
	return nil, nil
}

func (h *Host) ensureTBF(l netlink.Link, p TBF) error {
	want := p.qdisc(l.Attrs().Index)
	have, err := h.rootTBF(l)
	if err != nil {
		return err
	}
	if have != nil && have.Handle == want.Handle && have.Rate == want.Rate && have.Limit == want.Limit && have.Buffer == want.Buffer {
		return nil
	}
	if err := h.nl.QdiscReplace(want); err != nil {
		return fmt.Errorf("tbf on %s: %w", l.Attrs().Name, err)
	}
	return nil
}

func (h *Host) removeTBF(l netlink.Link) error {
	have, err := h.rootTBF(l)
	if err != nil || have == nil {
		return err
	}
	if err := h.nl.QdiscDel(have); err != nil && !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("delete tbf of %s: %w", l.Attrs().Name, err)
	}
	return nil
}

func ingressQdisc(link int) *netlink.Ingress {
	return &netlink.Ingress{QdiscAttrs: netlink.QdiscAttrs{LinkIndex: link, Handle: netlink.MakeHandle(0xffff, 0), Parent: netlink.HANDLE_INGRESS}}
}

// hasIngress reports whether l has an ingress qdisc.
func (h *Host) hasIngress(l netlink.Link) (bool, error) {
	qs, err := retry(func() ([]netlink.Qdisc, error) { return h.nl.QdiscList(l) })
	if err != nil {
		return false, fmt.Errorf("qdiscs of %s: %w", l.Attrs().Name, err)
	}
	for _, q := range qs {
		if _, ok := q.(*netlink.Ingress); ok {
			return true, nil
		}
	}
	return false, nil
}

// hasRedirect reports whether the ingress of l holds exactly one filter:
// a match-all u32 redirecting to the device ifb.
func (h *Host) hasRedirect(l netlink.Link, ifb int) bool {
	fs, err := retry(func() ([]netlink.Filter, error) { return h.nl.FilterList(l, netlink.MakeHandle(0xffff, 0)) })
	if err != nil || len(fs) != 1 {
		return false
	}
	u, ok := fs[0].(*netlink.U32)
	if !ok || len(u.Actions) != 1 || u.Protocol != unix.ETH_P_ALL {
		return false
	}
	m, ok := u.Actions[0].(*netlink.MirredAction)
	return ok && m.MirredAction == netlink.TCA_EGRESS_REDIR && m.Ifindex == ifb
}

// ensureRedirect shapes l's ingress on an IFB: TBF p at the IFB's root
// first, then the redirect, so there is no moment without the cap but
// with the redirect to an unshaped IFB.
func (h *Host) ensureRedirect(l netlink.Link, p TBF) error {
	name := IFBName(l.Attrs().Name)
	ifb, err := h.nl.LinkByName(name)
	if isNotFound(err) {
		attrs := netlink.NewLinkAttrs()
		attrs.Name = name
		if err := h.nl.LinkAdd(&netlink.Ifb{LinkAttrs: attrs}); err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("create ifb %s: %w", name, err)
		}
		ifb, err = h.nl.LinkByName(name)
	}
	if err != nil {
		return fmt.Errorf("ifb %s: %w", name, err)
	}
	if ifb.Type() != "ifb" {
		return fmt.Errorf("%s exists and is a %s, not an ifb", name, ifb.Type())
	}
	if ifb.Attrs().Flags&net.FlagUp == 0 {
		if err := h.nl.LinkSetUp(ifb); err != nil {
			return fmt.Errorf("ifb %s up: %w", name, err)
		}
	}
	if err := h.ensureTBF(ifb, p); err != nil {
		return err
	}
	if h.hasRedirect(l, ifb.Attrs().Index) {
		return nil
	}
	// Start the ingress afresh: whatever filters it held are not ours.
	if err := h.removeRedirect(l); err != nil {
		return err
	}
	idx := l.Attrs().Index
	if err := h.nl.QdiscAdd(ingressQdisc(idx)); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("ingress qdisc on %s: %w", l.Attrs().Name, err)
	}
	f := &netlink.U32{
		FilterAttrs: netlink.FilterAttrs{
			LinkIndex: idx,
			Parent:    netlink.MakeHandle(0xffff, 0),
			Priority:  1,
			Protocol:  unix.ETH_P_ALL,
		},
		// Sel nil: one key with mask 0, which every packet matches.
		Actions: []netlink.Action{netlink.NewMirredAction(ifb.Attrs().Index)},
	}
	if err := h.nl.FilterAdd(f); err != nil {
		return fmt.Errorf("redirect %s to %s: %w", l.Attrs().Name, name, err)
	}
	return nil
}

// removeRedirect deletes l's ingress qdisc and with it its filters.
func (h *Host) removeRedirect(l netlink.Link) error {
	ok, err := h.hasIngress(l)
	if err != nil || !ok {
		return err
	}
	if err := h.nl.QdiscDel(ingressQdisc(l.Attrs().Index)); err != nil && !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("delete ingress qdisc of %s: %w", l.Attrs().Name, err)
	}
	return nil
}

func (h *Host) deleteIFB(tap string) error {
	name := IFBName(tap)
	l, err := h.nl.LinkByName(name)
	if isNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("ifb %s: %w", name, err)
	}
	if l.Type() != "ifb" {
		return fmt.Errorf("%s is a %s, not an ifb: left alone", name, l.Type())
	}
	if err := h.nl.LinkDel(l); err != nil && !isNotFound(err) {
		return fmt.Errorf("delete ifb %s: %w", name, err)
	}
	return nil
}
