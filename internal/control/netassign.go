package control

import (
	"context"
	"net"
	"net/netip"
	"slices"
	"sort"

	"vgrid/api"
	"vgrid/internal/model"
)

// networkAssignments is what host node needs of the overlay networks its
// workspaces are on: for each, the other hosts with members on it (their
// underlay addresses, from addrs) and those members' MACs. Members are
// counted from their placement, before their guests start, so that the
// forwarding entries are there when they boot. A member migrating live to
// node counts as node's own (its tap is made here before it arrives), and
// as on its source for the other hosts until it has arrived. A member on a host without
// a known address is left out (its host cannot be reached). It is pure.
func networkAssignments(node string, all []model.Workspace, nets map[string]model.Network, addrs map[string]netip.Addr) []api.NetworkAssignment {
	type key struct{ project, name string }
	want := map[key]bool{}
	// here: the workspace's guest is (or is coming) on this host: placed
	// here, or migrating live to it.
	here := func(ws model.Workspace) bool {
		return ws.Status.Node == node || ws.Status.Migration != nil && ws.Status.Migration.To == node
	}
	for _, ws := range all {
		if !here(ws) {
			continue
		}
		for _, nic := range ws.NICs {
			want[key{ws.Project, nic.Network}] = true
		}
	}
	if len(want) == 0 {
		return nil
	}
	peers := map[key]map[netip.Addr]bool{}
	remotes := map[key][]api.RemoteMember{}
	for _, ws := range all {
		if ws.Status.Node == "" || here(ws) || ws.Desired == model.DesiredDeleted {
			continue
		}
		a, ok := addrs[ws.Status.Node]
		if !ok {
			continue
		}
		for _, nic := range ws.NICs {
			k := key{ws.Project, nic.Network}
			if !want[k] {
				continue
			}
			if peers[k] == nil {
				peers[k] = map[netip.Addr]bool{}
			}
			peers[k][a] = true
			remotes[k] = append(remotes[k], api.RemoteMember{MAC: nic.MAC, Peer: a})
		}
	}
	var out []api.NetworkAssignment
	for k := range want {
		n, ok := nets[k.project+"/"+k.name]
		if !ok {
			continue // deleted under its member: the member is not started
		}
		na := api.NetworkAssignment{Project: k.project, Name: k.name, VNI: n.VNI, Subnet: n.Subnet, Gateway: n.Gateway, NAT: n.NAT}
		for a := range peers[k] {
			na.Peers = append(na.Peers, a)
		}
		slices.SortFunc(na.Peers, netip.Addr.Compare)
		na.Remotes = remotes[k]
		sort.Slice(na.Remotes, func(i, j int) bool { return na.Remotes[i].MAC < na.Remotes[j].MAC })
		out = append(out, na)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].VNI < out[j].VNI })
	return out
}

// underlayAddr is a host's underlay address: its registered address, or
// the host part of its transfer address.
func underlayAddr(n model.Node) (netip.Addr, bool) {
	if a, err := netip.ParseAddr(n.Address); err == nil {
		return a.Unmap(), true
	}
	if h, _, err := net.SplitHostPort(n.Transfer); err == nil {
		if a, err := netip.ParseAddr(h); err == nil {
			return a.Unmap(), true
		}
	}
	return netip.Addr{}, false
}

// hostNetworks fills the network part of a host's assignments.
func (ctl *Controller) hostNetworks(ctx context.Context, node string, all []model.Workspace) ([]api.NetworkAssignment, error) {
	need := false
	for _, ws := range all {
		here := ws.Status.Node == node || ws.Status.Migration != nil && ws.Status.Migration.To == node
		if here && len(ws.NICs) > 0 {
			need = true
			break
		}
	}
	if !need {
		return nil, nil
	}
	kvs, err := ctl.store.List(ctx, "networks/")
	if err != nil {
		return nil, err
	}
	nets := map[string]model.Network{}
	for _, kv := range kvs {
		n, err := decodeNetwork(kv)
		if err != nil {
			return nil, err
		}
		nets[n.Project+"/"+n.Name] = n
	}
	nodes, err := ctl.nodes(ctx)
	if err != nil {
		return nil, err
	}
	addrs := map[string]netip.Addr{}
	for _, n := range nodes {
		if a, ok := underlayAddr(n); ok {
			addrs[n.Name] = a
		}
	}
	return networkAssignments(node, all, nets, addrs), nil
}
