package ipam

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"
)

// Pool is the addresses of one overlay network's members: the subnet and,
// per member key (e.g. a workspace ID), its address. It is a plain value
// that the control plane stores as JSON; the map is the whole state, so a
// member keeps its address across restarts of the control plane and moves
// of its guest between hosts until it is released.
//
// Pool's methods assume nothing about where it came from: Allocate and
// AllocateWant validate it first and refuse a damaged one, and no method
// changes it when it returns an error. A copy of a Pool shares its map:
// use Clone before changing a Pool that others hold.
type Pool struct {
	Subnet   netip.Prefix          `json:"subnet"`
	Assigned map[string]netip.Addr `json:"assigned,omitempty"`
}

// NewPool returns an empty pool for a subnet that passes CheckSubnet.
func NewPool(subnet netip.Prefix) (Pool, error) {
	if err := CheckSubnet(subnet); err != nil {
		return Pool{}, err
	}
	return Pool{Subnet: subnet, Assigned: map[string]netip.Addr{}}, nil
}

// Clone returns a copy of p that shares nothing with it.
func (p *Pool) Clone() Pool {
	c := Pool{Subnet: p.Subnet}
	if p.Assigned != nil {
		c.Assigned = maps.Clone(p.Assigned)
	}
	return c
}

// Lookup returns key's address, if it has one.
func (p *Pool) Lookup(key string) (netip.Addr, bool) {
	a, ok := p.Assigned[key]
	return a, ok
}

// Len returns how many members have an address.
func (p *Pool) Len() int { return len(p.Assigned) }

// Capacity returns how many addresses members can get: the subnet's size
// less the network, gateway and broadcast addresses (0 for a bad subnet).
func (p *Pool) Capacity() int {
	if CheckSubnet(p.Subnet) != nil {
		return 0
	}
	return capacityOf(p.Subnet.Bits())
}

// Free returns how many addresses are left, Capacity() - Len() (never
// below 0). It is exact for a pool that passes Validate.
func (p *Pool) Free() int { return max(p.Capacity()-p.Len(), 0) }

// Release takes key's address back and reports whether it had one.
// Releasing an unknown key does nothing. The address is free at once: the
// next Allocate may give it to another member (see the package comment).
func (p *Pool) Release(key string) bool {
	_, ok := p.Assigned[key]
	delete(p.Assigned, key)
	return ok
}

// Allocate returns key's address, giving it the lowest free one if it has
// none yet. The same key always gets the same address until it is
// released. A full subnet is an ErrFull error.
func (p *Pool) Allocate(key string) (netip.Addr, error) {
	if reason := checkKey(key); reason != "" {
		return netip.Addr{}, invalid("key", reason)
	}
	l, used, err := p.check()
	if err != nil {
		return netip.Addr{}, err
	}
	if a, ok := p.Assigned[key]; ok {
		return a, nil
	}
	if n := l.Capacity(); len(used) == n {
		return netip.Addr{}, &Error{Field: "subnet", Kind: ErrFull, Reason: fmt.Sprintf(
			"%s is full: all %d member addresses are assigned (%d addresses less network, gateway and broadcast)",
			p.Subnet, n, n+3)}
	}
	// used is sorted: the first gap from 0 is the lowest free address.
	i := 0
	for _, u := range used {
		if u != i {
			break
		}
		i++
	}
	return p.assign(key, l.at(i)), nil
}

// AllocateWant gives key the address want, as a user asked for a static
// address. It is idempotent like Allocate: if key has want already, it
// returns it. It refuses (ErrInvalid) an address outside the subnet or
// reserved (network, gateway, broadcast), and (ErrTaken) one that another
// key has, or a key that has a different address: release it first.
func (p *Pool) AllocateWant(key string, want netip.Addr) (netip.Addr, error) {
	if reason := checkKey(key); reason != "" {
		return netip.Addr{}, invalid("key", reason)
	}
	l, _, err := p.check()
	if err != nil {
		return netip.Addr{}, err
	}
	if reason := l.problem(want); reason != "" {
		return netip.Addr{}, invalid("address", reason)
	}
	if a, ok := p.Assigned[key]; ok {
		if a == want {
			return a, nil
		}
		return netip.Addr{}, &Error{Field: "address", Kind: ErrTaken, Reason: fmt.Sprintf(
			"%s already has %s: release it before asking for %s", quoteShort(key), a, want)}
	}
	for _, k := range p.keys() {
		if p.Assigned[k] == want {
			return netip.Addr{}, &Error{Field: "address", Kind: ErrTaken, Reason: fmt.Sprintf(
				"%s is already assigned to %s", want, quoteShort(k))}
		}
	}
	return p.assign(key, want), nil
}

func (p *Pool) assign(key string, a netip.Addr) netip.Addr {
	if p.Assigned == nil {
		p.Assigned = map[string]netip.Addr{}
	}
	p.Assigned[key] = a
	return a
}

// Validate checks a loaded pool: a good subnet, and every key valid with
// an address of its own in the subnet that is not reserved. The error
// names the first bad key in sorted order.
func (p *Pool) Validate() error {
	_, _, err := p.check()
	return err
}

// check validates p and returns its layout and the places of the used
// member addresses in First..Last (Layout.index), sorted.
func (p *Pool) check() (Layout, []int, error) {
	l, err := LayoutOf(p.Subnet)
	if err != nil {
		return Layout{}, nil, err
	}
	used := make([]int, 0, len(p.Assigned))
	owner := make(map[netip.Addr]string, len(p.Assigned))
	for _, k := range p.keys() {
		if reason := checkKey(k); reason != "" {
			return Layout{}, nil, invalid(fieldPath("assigned", k), "key "+reason)
		}
		a := p.Assigned[k]
		if reason := l.problem(a); reason != "" {
			return Layout{}, nil, invalid(fieldPath("assigned", k), reason)
		}
		if other, dup := owner[a]; dup {
			return Layout{}, nil, invalid(fieldPath("assigned", k), fmt.Sprintf("%s is also assigned to %s", a, quoteShort(other)))
		}
		owner[a] = k
		used = append(used, l.index(a))
	}
	slices.Sort(used)
	return l, used, nil
}

// keys returns the assigned keys in sorted order, so that errors and
// choices do not depend on map order.
func (p *Pool) keys() []string { return slices.Sorted(maps.Keys(p.Assigned)) }
