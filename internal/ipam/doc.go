// Package ipam manages the addresses and VXLAN network identifiers (VNIs)
// of vgrid's overlay networks, the private networks of virtual clusters.
// The control plane decides them; hosts only apply what they are given.
//
// It provides three things:
//
//   - Subnets. ParseSubnet and CheckSubnet accept an IPv4 prefix written
//     with its network address ("10.0.0.0/24", not "10.0.0.1/24"), from a
//     /16 (65533 members) to a /29 (5 members), inside a private range:
//     10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16 or the CGNAT range
//     100.64.0.0/10. IPv6 is refused for now.
//   - Pool, the addresses of one network's members, keyed by member ID
//     (e.g. a workspace ID).
//   - VNIs, the VNI of each network, keyed by network ID ("project/name"),
//     from a range that defaults to DefaultMinVNI..DefaultMaxVNI.
//
// # Layout
//
// In every subnet (LayoutOf) the first address is the network address,
// the next one the gateway, and the last the broadcast address; none of
// the three is ever given to a member. Members get the rest: for
// 10.0.0.0/24 the gateway is 10.0.0.1 and members get 10.0.0.2 to
// 10.0.0.254, 253 addresses (Capacity).
//
// # Determinism and stability
//
// Allocate gives a new key the lowest free address (or VNI), so the same
// sequence of calls always gives the same answers, whatever the map
// order: tests and golden files are stable, and errors about a damaged
// value name the first bad key in sorted order. A key keeps what it got
// (Allocate again returns it) until Release: the state is only the stored
// map, so an address survives restarts of the control plane and moves of
// the member's guest between hosts. A member may also ask for a static
// address (AllocateWant), which is refused if another member has it or if
// it is reserved or outside the subnet.
//
// A released address (or VNI) is free at once and the next new key gets
// it if it is the lowest free one: there is no cooldown, to keep the pool
// a plain map. The control plane must therefore release a member's
// address only once its guest is gone from the network (and a network's
// VNI only once no host carries it), so that two members never hold the
// same address at the same time.
//
// # Purity
//
// The package does no I/O, reads no clock, keeps no state of its own and
// does not panic on any input. Pool and VNIs are plain values that marshal
// to JSON (keys sorted by encoding/json); the control plane persists them
// and passes them back. Their methods validate them before every change,
// so a damaged stored value is refused (ErrInvalid, naming the key) rather
// than made worse, and a method that returns an error changes nothing.
// Errors are *Error values naming the field and the reason, and wrap
// ErrInvalid, ErrTaken or ErrFull for errors.Is.
//
// Allocate is linear in the number of members (it validates the pool and
// looks for the lowest gap); pools are a cluster's size, so this is cheap.
package ipam
