package model

import (
	"crypto/sha256"
	"fmt"
	"net/netip"
)

// NIC is a workspace's interface on a private overlay network. The control
// plane decides it when the workspace joins the network (a cluster member
// at its creation) and it stays the workspace's own across restarts,
// suspensions and moves between hosts: the same MAC, the same address.
type NIC struct {
	// Network is the project's network (model.Network.Name).
	Network string `json:"network"`
	// VNI is the network's VXLAN identifier.
	VNI uint32 `json:"vni"`
	// MAC is the guest's hardware address on it (NICMAC).
	MAC string `json:"mac"`
	// Address is the guest's address with the network's prefix length
	// (e.g. 10.30.0.5/24).
	Address netip.Prefix `json:"address"`
	// Gateway is the network's gateway (its first address), set when the
	// network gives outbound access (NAT) through the host.
	Gateway netip.Addr `json:"gateway,omitzero"`
}

// NICMAC is the MAC address of workspace id on network: locally
// administered, unicast, 40 bits of a hash, so that members of one
// network differ and a workspace keeps its MAC wherever it runs.
func NICMAC(id, network string) string {
	h := sha256.Sum256([]byte(id + "/" + network))
	return fmt.Sprintf("02:%02x:%02x:%02x:%02x:%02x", h[0], h[1], h[2], h[3], h[4])
}

// ClusterRef says which cluster a workspace is a member of.
type ClusterRef struct {
	Name  string `json:"name"`
	Role  string `json:"role"`
	Index int    `json:"index"`
}

// ClusterContext is what a member of a cluster is told about the cluster
// (the context broker's roster): who the members are, where the head is,
// and a key pair made for the cluster so members can ssh to one another.
// It reaches the guest in its seed (vgrid-cluster.json); the guest agent
// writes /etc/hosts and the keys from it.
type ClusterContext struct {
	Name  string `json:"name"`
	Role  string `json:"role"`
	Index int    `json:"index"`
	// Head is the host name of the cluster's first member (the first role's
	// member 0).
	Head    string        `json:"head"`
	Members []RosterEntry `json:"members"`
	// PrivateKey is the cluster's OpenSSH private key (PEM), PublicKey its
	// authorized_keys line.
	PrivateKey string `json:"private_key,omitempty"`
	PublicKey  string `json:"public_key,omitempty"`
	// Revision counts changes of the roster (a scale, a member added).
	Revision int `json:"revision"`
}

// RosterEntry is one member of a cluster as the others see it.
type RosterEntry struct {
	Name    string     `json:"name"` // host name, the member workspace's name
	Role    string     `json:"role"`
	Address netip.Addr `json:"address,omitzero"` // on the cluster's first network
}
