package calendar

// Deadline leases that move. A deadline lease is given the earliest start
// that ends by its deadline, but what it was promised is its deadline, not
// that start: a reservation or another deadline lease that finds no room
// may move admitted deadline leases that have not begun (later, earlier,
// to other hosts), as long as each still ends by its own deadline. The new
// lease is refused only when no such arrangement exists.
//
// The arrangement is found on a clone of the calendar first: the deadline
// leases in the way are taken off, the new lease is admitted as usual (it
// may still displace best effort), then the deadline leases are placed
// again, earliest deadline first, each at its earliest start. Only if every
// one of them fits is the same done on the calendar itself, which, making
// the same decisions as its clone, ends the same way.

import (
	"sort"
	"time"
)

// Moved is an admitted deadline lease that an admission moved, with its
// run before and after.
type Moved struct {
	Lease                          string
	FromStart, FromEnd, Start, End time.Time
	Hosts                          []string
}

// movable lists the deadline leases, in ID order, whose hold has not begun
// at t (nothing staged, booted or run) and meets [from, to) on a host.
func (c *Calendar) movable(l *lease, from, to, t int64) []*lease {
	seen := map[*lease]bool{}
	var out []*lease
	for _, h := range c.order {
		for _, a := range h.allocs {
			v := a.l
			if v == l || seen[v] || v.Kind != Deadline || !v.held || v.started || v.staged || len(v.moves) > 0 ||
				v.fate != fateEnd || v.holdFrom <= t || v.T-v.pre <= t || a.from >= to || a.to <= from {
				continue
			}
			seen[v] = true
			out = append(out, v)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// window is where a refused reservation or deadline lease could run, to
// find the deadline leases in its way.
func (c *Calendar) window(l *lease, t int64) (int64, int64) {
	if l.Kind == Reservation {
		S := tick(l.Start)
		return S - c.preFor(l), S + l.run
	}
	return t, tick(l.Deadline)
}

// admitShifting tries to admit l, refused as things stand, by moving
// deadline leases in its way. ok is false, and nothing changed, when no
// arrangement meets every deadline.
func (c *Calendar) admitShifting(l *lease, t int64) (Admission, bool) {
	from, to := c.window(l, t)
	vs := c.movable(l, from, to, t)
	if len(vs) == 0 {
		return Admission{}, false
	}
	ids := make([]string, len(vs))
	for i, v := range vs {
		ids[i] = v.ID
	}
	// The trial, on a clone that has not heard of l.
	delete(c.leases, l.ID)
	cl, err := c.Clone()
	c.leases[l.ID] = l
	if err != nil {
		return Admission{}, false
	}
	trial := cl.newLease(l.Lease, t)
	cl.leases[trial.ID] = trial
	if _, ok := cl.shift(trial, ids, t); !ok {
		return Admission{}, false
	}
	return c.shift(l, ids, t)
}

// shift takes the deadline leases ids off, admits l, and places them
// again; when one of these fails it puts them back as they were (slots
// that the attempt freed by displacing best effort stay free) and returns
// false.
func (c *Calendar) shift(l *lease, ids []string, t int64) (Admission, bool) {
	type was struct {
		v                      *lease
		hosts                  []*host
		from, T, to, pre, boot int64
		start, end             time.Time
	}
	olds := make([]was, 0, len(ids))
	for _, id := range ids {
		v := c.leases[id]
		olds = append(olds, was{v: v, hosts: v.hosts, from: v.holdFrom, T: v.T, to: v.to, pre: v.pre, boot: v.boot,
			start: tm(v.T), end: tm(v.runTo)})
		c.cut(v, v.holdFrom)
		c.unhold(v)
	}
	var placed []*lease
	undo := func() {
		for _, v := range placed {
			c.cut(v, v.holdFrom)
			c.unhold(v)
		}
		for _, o := range olds {
			c.commit(o.v, o.hosts, o.from, o.T, o.to, o.pre, o.boot, false)
		}
	}
	var (
		adm Admission
		r   *Refusal
	)
	if l.Kind == Reservation {
		adm, r = c.admitReservation(l, t)
	} else {
		adm, r = c.admitDeadline(l, t)
	}
	if r != nil {
		undo()
		return Admission{}, false
	}
	placed = append(placed, l)
	// Earliest deadline first: the tightest take the earliest room.
	order := append([]was(nil), olds...)
	sort.SliceStable(order, func(i, j int) bool { return order[i].v.Deadline.Before(order[j].v.Deadline) })
	for _, o := range order {
		if _, r := c.admitDeadline(o.v, t); r != nil {
			undo()
			return Admission{}, false
		}
		placed = append(placed, o.v)
	}
	for _, o := range olds {
		v := o.v
		if v.T == o.T && sameHosts(v.hosts, o.hosts) {
			continue
		}
		adm.Moved = append(adm.Moved, Moved{Lease: v.ID, FromStart: o.start, FromEnd: o.end, Start: tm(v.T), End: tm(v.runTo),
			Hosts: names(v.hosts)})
	}
	return adm, true
}
