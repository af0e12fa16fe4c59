package ipam

import (
	"fmt"
	"maps"
	"slices"
)

// VXLAN network identifiers are 24 bits; vgrid never uses 0.
const (
	MinVNI = 1
	MaxVNI = 1<<24 - 1 // 16777215
	// DefaultMinVNI and DefaultMaxVNI are the range vgrid takes VNIs from
	// unless configured otherwise, clear of the low numbers that hand-made
	// VXLAN setups tend to use.
	DefaultMinVNI = 4096
	DefaultMaxVNI = 65535
)

// VNIs is the VXLAN network identifiers of the overlay networks: the
// range Min..Max (inclusive) and, per network key (e.g. "project/name"),
// its VNI. Like Pool it is a plain value the control plane stores as
// JSON; its methods validate it before a change and change nothing when
// they return an error. A copy shares the map: use Clone.
type VNIs struct {
	Min      uint32            `json:"min"`
	Max      uint32            `json:"max"`
	Assigned map[string]uint32 `json:"assigned,omitempty"`
}

// NewVNIs returns an empty set of VNIs over lo..hi, which must pass
// CheckVNIRange. NewVNIs(DefaultMinVNI, DefaultMaxVNI) is the default.
func NewVNIs(lo, hi uint32) (VNIs, error) {
	if err := CheckVNIRange(lo, hi); err != nil {
		return VNIs{}, err
	}
	return VNIs{Min: lo, Max: hi, Assigned: map[string]uint32{}}, nil
}

// CheckVNIRange checks a range of VNIs: MinVNI <= lo <= hi <= MaxVNI.
// Errors name the field "min" (lo) or "max" (hi).
func CheckVNIRange(lo, hi uint32) error {
	switch {
	case lo < MinVNI:
		return invalid("min", fmt.Sprintf("must be at least %d (VNIs are %d to %d; the default range is %d to %d), got %d",
			MinVNI, MinVNI, MaxVNI, DefaultMinVNI, DefaultMaxVNI, lo))
	case hi > MaxVNI:
		return invalid("max", fmt.Sprintf("must be at most %d (VXLAN network identifiers are 24 bits), got %d", MaxVNI, hi))
	case lo > hi:
		return invalid("min", fmt.Sprintf("%d is above max %d", lo, hi))
	}
	return nil
}

// Clone returns a copy of v that shares nothing with it.
func (v *VNIs) Clone() VNIs {
	c := VNIs{Min: v.Min, Max: v.Max}
	if v.Assigned != nil {
		c.Assigned = maps.Clone(v.Assigned)
	}
	return c
}

// Lookup returns key's VNI, if it has one.
func (v *VNIs) Lookup(key string) (uint32, bool) {
	n, ok := v.Assigned[key]
	return n, ok
}

// Len returns how many networks have a VNI.
func (v *VNIs) Len() int { return len(v.Assigned) }

// Capacity returns how many VNIs the range holds (0 for a bad range).
func (v *VNIs) Capacity() int {
	if CheckVNIRange(v.Min, v.Max) != nil {
		return 0
	}
	return int(v.Max-v.Min) + 1
}

// Free returns Capacity() - Len() (never below 0); exact for a VNIs that
// passes Validate.
func (v *VNIs) Free() int { return max(v.Capacity()-v.Len(), 0) }

// Release takes key's VNI back and reports whether it had one. The VNI is
// free at once, as a Pool's addresses are.
func (v *VNIs) Release(key string) bool {
	_, ok := v.Assigned[key]
	delete(v.Assigned, key)
	return ok
}

// Allocate returns key's VNI, giving it the lowest free one of the range
// if it has none yet. The same key always gets the same VNI until it is
// released. A full range is an ErrFull error.
func (v *VNIs) Allocate(key string) (uint32, error) {
	if reason := checkKey(key); reason != "" {
		return 0, invalid("key", reason)
	}
	used, err := v.check()
	if err != nil {
		return 0, err
	}
	if n, ok := v.Assigned[key]; ok {
		return n, nil
	}
	if len(used) == v.Capacity() {
		return 0, &Error{Field: "vni", Kind: ErrFull, Reason: fmt.Sprintf(
			"range %d-%d is full: all %d VNIs are assigned", v.Min, v.Max, len(used))}
	}
	// used is sorted and within the range: the first gap from Min is the
	// lowest free VNI.
	next := v.Min
	for _, n := range used {
		if n != next {
			break
		}
		next++
	}
	if v.Assigned == nil {
		v.Assigned = map[string]uint32{}
	}
	v.Assigned[key] = next
	return next, nil
}

// Validate checks a loaded VNIs: a good range, and every key valid with a
// VNI of its own inside the range. The error names the first bad key in
// sorted order.
func (v *VNIs) Validate() error {
	_, err := v.check()
	return err
}

// check validates v and returns the assigned VNIs, sorted.
func (v *VNIs) check() ([]uint32, error) {
	if err := CheckVNIRange(v.Min, v.Max); err != nil {
		return nil, err
	}
	owner := make(map[uint32]string, len(v.Assigned))
	used := make([]uint32, 0, len(v.Assigned))
	for _, k := range slices.Sorted(maps.Keys(v.Assigned)) {
		if reason := checkKey(k); reason != "" {
			return nil, invalid(fieldPath("assigned", k), "key "+reason)
		}
		n := v.Assigned[k]
		if n < v.Min || n > v.Max {
			return nil, invalid(fieldPath("assigned", k), fmt.Sprintf("VNI %d is outside the range %d-%d", n, v.Min, v.Max))
		}
		if other, dup := owner[n]; dup {
			return nil, invalid(fieldPath("assigned", k), fmt.Sprintf("VNI %d is also assigned to %s", n, quoteShort(other)))
		}
		owner[n] = k
		used = append(used, n)
	}
	slices.Sort(used)
	return used, nil
}
