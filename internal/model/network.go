package model

import (
	"net/netip"
	"time"
)

// Network is a private overlay network of a project: a VXLAN segment
// (VNI) across the hosts its members run on, with its own subnet. Networks
// of different projects are isolated even when their subnets are the
// same. The control plane gives each member an address (Addresses) that
// stays its own across restarts and moves.
type Network struct {
	Project string `json:"project"`
	Name    string `json:"name"`
	// Subnet is an IPv4 private prefix (/16 to /29); Gateway is its first
	// address, kept for the hosts' side (NAT, host access).
	Subnet  netip.Prefix `json:"subnet"`
	Gateway netip.Addr   `json:"gateway"`
	// VNI is the VXLAN network identifier, unique on the grid.
	VNI uint32 `json:"vni"`
	// NAT gives members outbound access through their host.
	NAT bool `json:"nat,omitempty"`
	// Cluster names the cluster the network was made for (deleted with
	// it); empty for a network the user created.
	Cluster   string    `json:"cluster,omitempty"`
	CreatedAt time.Time `json:"created_at"`
	// Addresses are the members' addresses, by workspace ID.
	Addresses map[string]netip.Addr `json:"addresses,omitempty"`
	// Revision is the store revision the object was read at.
	Revision int64 `json:"revision,omitempty"`
}
