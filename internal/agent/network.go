package agent

// Overlay networks on this host.
//
// The agent builds the host's part of the private networks its workspaces
// are on, with internal/overlay, in the network namespace it runs in (the
// one QEMU inherits, so QEMU finds the taps):
//
//   - for every network of Assignments.Networks that a NIC of a workspace
//     assigned here names (by VNI), a bridge and a VXLAN device whose
//     local address is the host's underlay address (Config.Node.Address),
//     with the network's peers and its members' MACs on other hosts;
//   - for each NIC of a workspace it starts, a persistent tap on that
//     bridge (tapName: the same name for the same workspace and NIC on
//     every run, so a restarted agent finds it), capped at the quantum's
//     bandwidth each way, which QEMU opens by name (hypervisor.NIC.Tap).
//
// The bridges get no address: the host routes nothing between networks
// (networks of different projects may share a subnet) and does no NAT
// for them (NetworkAssignment.NAT and Gateway are not applied here).
//
// A host whose address is not an IP address (a single-host vgrid up) has
// its networks on the loopback address, without peers: its guests reach
// one another over the bridge only.
//
// The agent deletes only what it made. It records the networks and taps
// it creates in network.json in its data directory before it creates
// them, and cleans up from that record: taps of workspaces no longer
// here once their QEMU is gone, and networks no longer assigned with no
// tap left on them. Another agent sharing the namespace (a test, a second
// vgrid up) keeps its devices, and an agent that never had a network
// never touches netlink.

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/vishvananda/netns"

	"vgrid/api"
	"vgrid/internal/hypervisor"
	"vgrid/internal/model"
	"vgrid/internal/overlay"
)

// Tap names: tapPrefix, 8 hex digits of the SHA-256 of the workspace ID,
// '-', the NIC's index. At most maxNICs NICs keep it within an interface
// name's 15 bytes.
const (
	tapPrefix = "vgt"
	maxNICs   = 1000
)

// singleHostMTU is the underlay MTU assumed for networks on the loopback
// address (whose own MTU, 64 KiB, would give the guests' bridge one no
// real link has).
const singleHostMTU = 1500

// errNetworkPending says a NIC's network is not in the host's assignments
// yet: the workspace waits (it is not a failure).
var errNetworkPending = errors.New("network not assigned to this host yet")

// tapOwner is the prefix of the names of workspace id's taps.
func tapOwner(id string) string {
	h := sha256.Sum256([]byte(id))
	return tapPrefix + hex.EncodeToString(h[:4]) + "-"
}

// tapName is the tap of workspace id's NIC i.
func tapName(id string, i int) string { return tapOwner(id) + strconv.Itoa(i) }

// ownerOf is the owner prefix (tapOwner) of tap name, which isTapName.
func ownerOf(name string) string { return name[:len(tapPrefix)+9] }

// isTapName says whether name is one tapName makes.
func isTapName(name string) bool {
	rest, ok := strings.CutPrefix(name, tapPrefix)
	if !ok || len(rest) < 10 || len(name) > 15 || rest[8] != '-' {
		return false
	}
	if _, err := hex.DecodeString(rest[:8]); err != nil || strings.ToLower(rest[:8]) != rest[:8] {
		return false
	}
	i, err := strconv.Atoi(rest[9:])
	return err == nil && i >= 0 && strconv.Itoa(i) == rest[9:]
}

// nicSpecs are w's NICs as the driver takes them.
func nicSpecs(w model.Workspace) []hypervisor.NIC {
	if len(w.NICs) == 0 {
		return nil
	}
	out := make([]hypervisor.NIC, len(w.NICs))
	for i, n := range w.NICs {
		out[i] = hypervisor.NIC{Tap: tapName(w.ID, i), MAC: n.MAC, Address: n.Address, Gateway: n.Gateway}
	}
	return out
}

// bandwidthOf is the cap of w's taps each way, in bits per second (0:
// none); a positive cap below the smallest the datapath takes is raised
// to it.
func bandwidthOf(w model.Workspace) uint64 {
	bw := w.Spec.Quantum.Bandwidth
	if bw <= 0 {
		return 0
	}
	return max(uint64(bw), overlay.MinRate)
}

// underlayAddr is the IP address in addr (with a port or not), and
// whether it can be a VXLAN source address that other hosts reach (not
// loopback, unspecified, multicast or scoped).
func underlayAddr(addr string) (a netip.Addr, usable bool) {
	host := addr
	if h, _, err := net.SplitHostPort(addr); err == nil {
		host = h
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Addr{}, false
	}
	a = a.Unmap()
	return a, a.Zone() == "" && !a.IsUnspecified() && !a.IsMulticast() && !a.IsLoopback()
}

// hostUnderlay is the host's VXLAN source address: the IP address of
// its address (--address), else of its transfer address, as the control
// plane picks the address it gives the other hosts for this one. Invalid
// when that is none or not usable (a single-host vgrid up: no address,
// or loopback): a host alone.
func hostUnderlay(n model.Node) netip.Addr {
	for _, s := range []string{n.Address, n.Transfer} {
		if a, usable := underlayAddr(s); a.IsValid() {
			if usable {
				return a
			}
			return netip.Addr{}
		}
	}
	return netip.Addr{}
}

// overlayNetwork is assignment n as overlay.Ensure takes it on a host
// whose underlay address is local (invalid: a host alone, its networks on
// loopback without peers). Peers and remotes that cannot be used are left
// out, each with a warning, so that one bad entry does not take the whole
// network down.
func overlayNetwork(n api.NetworkAssignment, local netip.Addr) (overlay.Network, []string) {
	var warn []string
	if !local.IsValid() {
		if len(n.Peers) > 0 || len(n.Remotes) > 0 {
			warn = append(warn, fmt.Sprintf("network %s/%s (VNI %d) has members on other hosts, but this host has no underlay address (--address): they are not reachable from here",
				n.Project, n.Name, n.VNI))
		}
		return overlay.Network{VNI: n.VNI, Local: netip.AddrFrom4([4]byte{127, 0, 0, 1}), UnderlayMTU: singleHostMTU}, warn
	}
	usable := func(a netip.Addr) bool {
		a = a.Unmap()
		return a.IsValid() && !a.IsUnspecified() && !a.IsMulticast() && a.Is4() == local.Is4()
	}
	out := overlay.Network{VNI: n.VNI, Local: local}
	for _, p := range n.Peers {
		if !usable(p) {
			warn = append(warn, fmt.Sprintf("network %s/%s: peer %v is not a unicast address of the family of %v: left out", n.Project, n.Name, p, local))
			continue
		}
		out.Peers = append(out.Peers, p.Unmap())
	}
	for _, r := range n.Remotes {
		mac, err := net.ParseMAC(r.MAC)
		if err != nil || len(mac) != 6 || mac[0]&1 != 0 || slices.Equal(mac, net.HardwareAddr{0, 0, 0, 0, 0, 0}) {
			warn = append(warn, fmt.Sprintf("network %s/%s: remote MAC %q is not a unicast Ethernet address: left out", n.Project, n.Name, r.MAC))
			continue
		}
		if !usable(r.Peer) {
			warn = append(warn, fmt.Sprintf("network %s/%s: remote %s on %v: not a unicast address of the family of %v: left out", n.Project, n.Name, r.MAC, r.Peer, local))
			continue
		}
		out.Remotes = append(out.Remotes, overlay.Remote{MAC: mac, Host: r.Peer.Unmap()})
	}
	return out, warn
}

// netAssigned is what the control plane wants of this host's networks.
type netAssigned struct {
	// Local is the host's underlay address; invalid: a host alone.
	Local      netip.Addr
	Workspaces []model.Workspace
	Networks   []api.NetworkAssignment
}

// netCurrent is the host as it is.
type netCurrent struct {
	Networks []uint32      // present (overlay.Host.List)
	Taps     []overlay.Tap // present taps named by tapName
	// Owned are the networks and taps this agent made (its record).
	Owned netRecord
	// Live are the workspaces whose QEMU may run: the driver's instances
	// with a process, and those an operation (a start) is under way for.
	Live map[string]bool
}

// tapPlan is a tap of a running workspace, kept on its network and at
// its cap.
type tapPlan struct {
	Name string
	VNI  uint32
	Bps  uint64
}

// netPlan is what syncNetworks does, in this order: delete taps, ensure
// networks, keep the running workspaces' taps right, delete networks,
// and forget the records of devices that are gone.
type netPlan struct {
	DeleteTaps     []string
	Ensure         []overlay.Network // by VNI
	Taps           []tapPlan
	DeleteNetworks []uint32
	ForgetTaps     []string
	ForgetNetworks []uint32
	Warnings       []string
}

// planNetworks decides what to make and what to delete. It ensures the
// assigned networks that a workspace assigned here (and not being
// deleted) has a NIC on; it deletes the taps this agent made for
// workspaces neither assigned here (and not being deleted) nor live, and
// the networks it made that are no longer assigned and have no tap left.
func planNetworks(as netAssigned, cur netCurrent) netPlan {
	var p netPlan
	used := map[uint32]bool{}
	want := map[string]bool{} // taps of workspaces that stay
	for _, w := range as.Workspaces {
		if w.Desired == model.DesiredDeleted {
			continue
		}
		for i, n := range w.NICs {
			used[n.VNI] = true
			want[tapName(w.ID, i)] = true
		}
	}
	liveOwner := map[string]bool{}
	for id, ok := range cur.Live {
		if ok {
			liveOwner[tapOwner(id)] = true
		}
	}

	// Networks to ensure.
	assigned := map[uint32]api.NetworkAssignment{}
	for _, n := range as.Networks {
		if prev, dup := assigned[n.VNI]; dup {
			p.Warnings = append(p.Warnings, fmt.Sprintf("VNI %d is assigned twice (%s/%s and %s/%s): the first is used", n.VNI, prev.Project, prev.Name, n.Project, n.Name))
			continue
		}
		assigned[n.VNI] = n
	}
	for _, vni := range sortedKeys(assigned) {
		if !used[vni] {
			continue
		}
		n, warn := overlayNetwork(assigned[vni], as.Local)
		p.Ensure = append(p.Ensure, n)
		p.Warnings = append(p.Warnings, warn...)
	}

	// Taps.
	present := map[string]overlay.Tap{}
	for _, t := range cur.Taps {
		present[t.Name] = t
	}
	deleted := map[string]bool{}
	for _, name := range sortedKeys(cur.Owned.Taps) {
		switch _, here := present[name]; {
		case !here:
			if !want[name] {
				p.ForgetTaps = append(p.ForgetTaps, name)
			}
		case want[name] || liveOwner[ownerOf(name)]:
		default:
			p.DeleteTaps = append(p.DeleteTaps, name)
			deleted[name] = true
		}
	}
	for _, w := range as.Workspaces {
		if w.Desired == model.DesiredDeleted || !cur.Live[w.ID] {
			continue
		}
		for i, n := range w.NICs {
			name := tapName(w.ID, i)
			if _, here := present[name]; !here || !used[n.VNI] {
				continue
			}
			if _, ok := assigned[n.VNI]; !ok {
				continue
			}
			p.Taps = append(p.Taps, tapPlan{Name: name, VNI: n.VNI, Bps: bandwidthOf(w)})
		}
	}

	// Networks to delete.
	onIt := map[uint32]int{}
	for _, t := range cur.Taps {
		if t.VNI != 0 && !deleted[t.Name] {
			onIt[t.VNI]++
		}
	}
	here := map[uint32]bool{}
	for _, vni := range cur.Networks {
		here[vni] = true
	}
	for _, vni := range sortedKeys(cur.Owned.Networks) {
		_, isAssigned := assigned[vni]
		switch {
		case !here[vni]:
			if !used[vni] || !isAssigned {
				p.ForgetNetworks = append(p.ForgetNetworks, vni)
			}
		case isAssigned || onIt[vni] > 0:
		default:
			p.DeleteNetworks = append(p.DeleteNetworks, vni)
		}
	}
	return p
}

func sortedKeys[K interface{ ~string | ~uint32 }, V any](m map[K]V) []K {
	out := make([]K, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// netRecord is what this agent made of the overlay on this host (kept in
// network.json in its data directory).
type netRecord struct {
	Networks map[uint32]bool
	Taps     map[string]bool
}

type netRecordFile struct {
	Networks []uint32 `json:"networks"`
	Taps     []string `json:"taps"`
}

func (a *Agent) netRecordPath() string { return filepath.Join(a.cfg.DataDir, "network.json") }

// record is the agent's record, read from its file at the first use.
// Called with netMu held.
func (a *Agent) record() *netRecord {
	if a.netRec != nil {
		return a.netRec
	}
	r := &netRecord{Networks: map[uint32]bool{}, Taps: map[string]bool{}}
	b, err := os.ReadFile(a.netRecordPath())
	if err == nil {
		var f netRecordFile
		if err := json.Unmarshal(b, &f); err != nil {
			a.log.Warn("overlay record unreadable: the devices it lists are not cleaned up", "file", a.netRecordPath(), "err", err)
		}
		for _, v := range f.Networks {
			r.Networks[v] = true
		}
		for _, t := range f.Taps {
			if isTapName(t) {
				r.Taps[t] = true
			}
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		a.log.Warn("overlay record", "err", err)
	}
	a.netRec = r
	return r
}

// saveRecord writes the record. Called with netMu held.
func (a *Agent) saveRecord() {
	r := a.record()
	f := netRecordFile{Networks: sortedKeys(r.Networks), Taps: sortedKeys(r.Taps)}
	b, _ := json.Marshal(f)
	if err := writeFileAtomic(a.netRecordPath(), b, 0o600); err != nil {
		a.netWarn("record", "overlay record not saved: a restarted agent would not clean up what it lists", "err", err)
		return
	}
	a.netOK("record")
}

// ownNetwork and ownTap add a device to the record (saved) before it is
// made. Called with netMu held.
func (a *Agent) ownNetwork(vni uint32) {
	if r := a.record(); !r.Networks[vni] {
		r.Networks[vni] = true
		a.saveRecord()
	}
}

func (a *Agent) ownTap(name string) {
	if r := a.record(); !r.Taps[name] {
		r.Taps[name] = true
		a.saveRecord()
	}
}

// overlayHost is the datapath: Config.Overlay, else the namespace the
// agent runs in, opened at the first use. Called with netMu held.
func (a *Agent) overlayHost() (*overlay.Host, error) {
	if a.cfg.Overlay != nil {
		return a.cfg.Overlay, nil
	}
	if a.ovl != nil {
		return a.ovl, nil
	}
	open := a.openOverlay
	if open == nil {
		open = func() (*overlay.Host, error) { return overlay.Open(netns.None()) }
	}
	h, err := open()
	if err != nil {
		return nil, err
	}
	a.ovl = h
	return h, nil
}

// netAssignedNow is the assignments' view of the networks.
func (a *Agent) netAssignedNow() netAssigned {
	a.mu.Lock()
	local := hostUnderlay(a.cfg.Node)
	defer a.mu.Unlock()
	as := netAssigned{Local: local, Networks: a.networks}
	for _, id := range sortedKeys(a.assigned) {
		as.Workspaces = append(as.Workspaces, a.assigned[id])
	}
	// A workspace migrating here has its taps made before it comes.
	for _, id := range sortedKeys(a.liveIn) {
		if _, dup := a.assigned[id]; !dup {
			as.Workspaces = append(as.Workspaces, a.liveIn[id])
		}
	}
	return as
}

// netWarn logs a problem of the overlay once until it changes or is
// cleared by netOK. Called with netMu held.
func (a *Agent) netWarn(key, msg string, args ...any) {
	line := msg + fmt.Sprint(args...)
	if a.netLogged[key] == line {
		return
	}
	if a.netLogged == nil {
		a.netLogged = map[string]string{}
	}
	a.netLogged[key] = line
	a.log.Warn(msg, args...)
}

func (a *Agent) netOK(key string) { delete(a.netLogged, key) }

// setCap caps tap at bps each way (0: none), unless it is so already.
func setCap(h *overlay.Host, tap string, bps uint64) error {
	if eg, in, err := h.Bandwidth(tap); err == nil && eg == bps && in == bps {
		return nil
	}
	return h.SetBandwidth(tap, bps, bps)
}

// syncNetworks converges the host's overlay devices on the assignments:
// see planNetworks. Run on every assignments reply and every resync.
func (a *Agent) syncNetworks(ctx context.Context) {
	a.netMu.Lock()
	defer a.netMu.Unlock()
	as := a.netAssignedNow()
	rec := a.record()
	needed := len(as.Networks) > 0 || len(rec.Networks) > 0 || len(rec.Taps) > 0
	for _, w := range as.Workspaces {
		needed = needed || len(w.NICs) > 0
	}
	if !needed {
		return
	}
	h, err := a.overlayHost()
	if err != nil {
		a.netWarn("open", "overlay networks unavailable on this host", "err", err)
		return
	}
	a.netOK("open")
	cur := netCurrent{Owned: *rec, Live: map[string]bool{}}
	// Busy first, then the driver: a start that ends in between is in
	// the driver's list.
	a.mu.Lock()
	for id := range a.busy {
		cur.Live[id] = true
	}
	a.mu.Unlock()
	insts, err := a.drv.List(ctx)
	if err != nil {
		if ctx.Err() == nil {
			a.netWarn("list", "overlay: cannot list instances; nothing is cleaned up", "err", err)
		}
		return
	}
	for _, in := range insts {
		if in.PID > 0 || in.State == hypervisor.InstanceRunning || in.State == hypervisor.InstancePaused {
			cur.Live[in.ID] = true
		}
	}
	if cur.Networks, err = h.List(); err != nil {
		a.netWarn("list", "overlay: list networks", "err", err)
		return
	}
	taps, err := h.Taps(tapPrefix)
	if err != nil {
		a.netWarn("list", "overlay: list taps", "err", err)
		return
	}
	a.netOK("list")
	for _, t := range taps {
		if isTapName(t.Name) {
			cur.Taps = append(cur.Taps, t)
		}
	}
	p := planNetworks(as, cur)
	for _, w := range p.Warnings {
		a.netWarn("plan/"+w, "overlay: "+w)
	}
	changed := false
	for _, name := range p.DeleteTaps {
		if err := h.DeleteTap(name); err != nil {
			a.netWarn("tap/"+name, "overlay: delete the tap of a workspace gone", "tap", name, "err", err)
			continue
		}
		a.netOK("tap/" + name)
		delete(rec.Taps, name)
		changed = true
		a.log.Info("overlay: tap of a workspace no longer here deleted", "tap", name)
	}
	for _, n := range p.Ensure {
		a.ownNetwork(n.VNI)
		key := "net/" + strconv.FormatUint(uint64(n.VNI), 10)
		if err := h.Ensure(n); err != nil {
			a.netWarn(key, "overlay: network", "vni", n.VNI, "err", err)
			continue
		}
		a.netOK(key)
	}
	for _, t := range p.Taps {
		a.ownTap(t.Name)
		err := h.EnsureTap(t.VNI, t.Name, nil)
		if err == nil {
			err = setCap(h, t.Name, t.Bps)
		}
		if err != nil {
			a.netWarn("tap/"+t.Name, "overlay: tap of a running workspace", "tap", t.Name, "err", err)
			continue
		}
		a.netOK("tap/" + t.Name)
	}
	for _, vni := range p.DeleteNetworks {
		key := "net/" + strconv.FormatUint(uint64(vni), 10)
		if err := h.Delete(vni); err != nil {
			a.netWarn(key, "overlay: delete a network no longer here", "vni", vni, "err", err)
			continue
		}
		a.netOK(key)
		delete(rec.Networks, vni)
		changed = true
		a.log.Info("overlay: network no longer assigned here deleted", "vni", vni)
	}
	for _, name := range p.ForgetTaps {
		delete(rec.Taps, name)
		changed = true
	}
	for _, vni := range p.ForgetNetworks {
		delete(rec.Networks, vni)
		changed = true
	}
	if changed {
		a.saveRecord()
	}
}

// prepareNICs makes what w's NICs need before its QEMU starts: each
// network (from the assignments), a tap per NIC on it with w's cap, and
// returns the NICs for the instance spec. A network not assigned yet is
// errNetworkPending (w waits); any other error means w cannot start here.
func (a *Agent) prepareNICs(w model.Workspace) ([]hypervisor.NIC, error) {
	if len(w.NICs) == 0 {
		return nil, nil
	}
	if len(w.NICs) > maxNICs {
		return nil, fmt.Errorf("%d NICs: at most %d", len(w.NICs), maxNICs)
	}
	a.netMu.Lock()
	defer a.netMu.Unlock()
	as := a.netAssignedNow()
	byVNI := map[uint32]api.NetworkAssignment{}
	for _, n := range as.Networks {
		if _, dup := byVNI[n.VNI]; !dup {
			byVNI[n.VNI] = n
		}
	}
	for _, nic := range w.NICs {
		if _, ok := byVNI[nic.VNI]; !ok {
			return nil, fmt.Errorf("%w: %s (VNI %d)", errNetworkPending, nic.Network, nic.VNI)
		}
	}
	h, err := a.overlayHost()
	if err != nil {
		return nil, fmt.Errorf("overlay networks unavailable on this host: %w", err)
	}
	done := map[uint32]bool{}
	for _, nic := range w.NICs {
		if done[nic.VNI] {
			continue
		}
		done[nic.VNI] = true
		n, warn := overlayNetwork(byVNI[nic.VNI], as.Local)
		for _, m := range warn {
			a.netWarn("plan/"+m, "overlay: "+m)
		}
		a.ownNetwork(nic.VNI)
		if err := h.Ensure(n); err != nil {
			return nil, fmt.Errorf("network %s: %w", nic.Network, err)
		}
	}
	bps := bandwidthOf(w)
	specs := nicSpecs(w)
	for i, nic := range w.NICs {
		tap := tapName(w.ID, i)
		a.ownTap(tap)
		if err := h.EnsureTap(nic.VNI, tap, nil); err != nil {
			return nil, fmt.Errorf("network %s: %w", nic.Network, err)
		}
		if err := setCap(h, tap, bps); err != nil {
			return nil, fmt.Errorf("network %s: bandwidth cap: %w", nic.Network, err)
		}
		if specs[i].MTU, err = h.MTU(nic.VNI); err != nil {
			return nil, fmt.Errorf("network %s: %w", nic.Network, err)
		}
	}
	return specs, nil
}
