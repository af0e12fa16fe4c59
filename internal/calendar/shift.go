package calendar

// Deadline leases that move. A deadline lease is given the earliest start
// that ends by its deadline, but what it was promised is its deadline, not
// that start: a reservation or another deadline lease that finds no room
// may move admitted deadline leases that have not begun (later, earlier,
// to other hosts), as long as each still ends by its own deadline. The new
// lease is refused only when no such arrangement exists.
//
// If moving those is not enough, a reservation may also suspend running
// deadline leases in its way and book their resumes (booked.go), and book
// again the resumes already booked in its window: each of them too must
// still end by its deadline. Suspension is the last resort: it is tried
// only when moving the leases that have not begun did not make room.
//
// The arrangement is found on a clone of the calendar first: the deadline
// leases in the way are taken off (and the running ones planned to be
// suspended in time), the new lease is admitted as usual (it may still
// displace best effort), then the deadline leases are placed again and the
// resumes booked, earliest deadline first, each at its earliest start.
// Only if every one of them fits is the same done on the calendar itself,
// which, making the same decisions as its clone, ends the same way.

import (
	"slices"
	"sort"
	"time"
)

// Moved is an admitted deadline lease that an admission moved, with its
// run before and after.
type Moved struct {
	Lease                          string
	FromStart, FromEnd, Start, End time.Time
	Hosts                          []string
	// Rebooked (in Admission.Resumes): FromStart and FromEnd bound the
	// resume booked before, not the run before the suspension.
	Rebooked bool
}

// movable lists the deadline leases, in ID order, whose hold has not begun
// at t (nothing staged, booted or run) and meets [from, to) on a host.
func (c *Calendar) movable(l *lease, from, to, t int64) []*lease {
	seen := map[*lease]bool{}
	var out []*lease
	for _, h := range c.order {
		for _, a := range h.allocs {
			v := a.l
			if a.booked || v == l || seen[v] || v.Kind != Deadline || !v.held || v.resume || v.started || v.staged || len(v.moves) > 0 ||
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
		return S - c.preFor(l), S + c.span(l.run)
	}
	return t, tick(l.Deadline) + c.shutdown()
}

// inWay lists, in ID order, the running deadline leases that could be
// suspended to be off their hosts by from, and the deadline leases whose
// booked resume meets [from, to) on a host (to be booked again).
func (c *Calendar) inWay(l *lease, from, to, t int64) (running, rebook []*lease) {
	seen := map[*lease]bool{}
	for _, h := range c.order {
		for _, a := range h.allocs {
			v := a.l
			if v == l || seen[v] || v.Kind != Deadline || a.from >= to || a.to <= from {
				continue
			}
			if a.booked {
				seen[v] = true
				rebook = append(rebook, v)
			} else if _, ok := c.suspendable(v, from, t); ok {
				seen[v] = true
				running = append(running, v)
			}
		}
	}
	byID := func(vs []*lease) {
		sort.Slice(vs, func(i, j int) bool { return vs[i].ID < vs[j].ID })
	}
	byID(running)
	byID(rebook)
	return running, rebook
}

// shiftSet is what an attempt to shift takes off: the deadline leases
// that have not begun (moved), the running ones to suspend, the ones
// whose booked resume is booked again.
type shiftSet struct {
	moved, suspend, rebook []string
}

func ids(vs []*lease) []string {
	out := make([]string, len(vs))
	for i, v := range vs {
		out[i] = v.ID
	}
	return out
}

// admitShifting tries to admit l, refused as things stand, by moving
// deadline leases in its way, and failing that (for a reservation) by also
// suspending running ones and booking their resumes. ok is false, and
// nothing changed, when no arrangement meets every deadline; tried then
// names the deadline leases that were tried, in ID order.
func (c *Calendar) admitShifting(l *lease, t int64) (adm Admission, ok bool, tried []string) {
	from, to := c.window(l, t)
	set := shiftSet{moved: ids(c.movable(l, from, to, t))}
	if adm, ok := c.tryShift(l, set, t); ok {
		return adm, true, nil
	}
	tried = set.moved
	if l.Kind == Reservation {
		running, rebook := c.inWay(l, c.slotsFrom(l), to, t)
		if len(running)+len(rebook) > 0 {
			set.suspend, set.rebook = ids(running), ids(rebook)
			if adm, ok := c.tryShift(l, set, t); ok {
				return adm, true, nil
			}
			tried = append(append(tried, set.suspend...), set.rebook...)
		}
	}
	sort.Strings(tried)
	return Admission{}, false, slices.Compact(tried)
}

// slotsFrom is where a reservation's slots begin.
func (c *Calendar) slotsFrom(l *lease) int64 {
	pre, boot := c.overheads(l)
	return tick(l.Start) - c.holdPre(l, pre, boot)
}

// tryShift is shift on a clone first, then on the calendar if the clone's
// worked.
func (c *Calendar) tryShift(l *lease, set shiftSet, t int64) (Admission, bool) {
	if len(set.moved)+len(set.suspend)+len(set.rebook) == 0 {
		return Admission{}, false
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
	if _, ok := cl.shift(trial, set, t); !ok {
		return Admission{}, false
	}
	return c.shift(l, set, t)
}

// shift takes the deadline leases of set off (suspending the running
// ones in time for l), admits l, and places them again or books their
// resumes; when one of these fails it puts the moved ones and the booked
// resumes back as they were (slots that the attempt freed by displacing
// best effort stay free) and returns false. A running lease planned to be
// suspended is not put back: shift is run on a clone first (tryShift),
// and the calendar, making the same decisions, then succeeds as well.
func (c *Calendar) shift(l *lease, set shiftSet, t int64) (Admission, bool) {
	type was struct {
		v                             *lease
		hosts                         []*host
		from, T, runTo, to, pre, boot int64
		start, end                    time.Time
		xfers                         []*transfer // its image's transfers on the link
	}
	olds := make([]was, 0, len(set.moved))
	for _, id := range set.moved {
		v := c.leases[id]
		olds = append(olds, was{v: v, hosts: v.hosts, from: v.holdFrom, T: v.T, runTo: v.runTo, to: v.to, pre: v.pre, boot: v.boot,
			start: tm(v.T), end: tm(v.runTo), xfers: v.xfers})
		c.cut(v, v.holdFrom)
		c.unhold(v)
	}
	type rebooked struct {
		v *lease
		b *booked
	}
	var rebooks []rebooked
	for _, id := range set.rebook {
		v := c.leases[id]
		rebooks = append(rebooks, rebooked{v, v.next})
		c.dropBooked(v)
	}
	var placed []*lease
	isMoved := func(v *lease) bool { return slices.ContainsFunc(olds, func(o was) bool { return o.v == v }) }
	undo := func() {
		for _, v := range placed {
			if v != l && !isMoved(v) {
				// Suspended or booked again: its new booking goes.
				c.dropBooked(v)
				continue
			}
			c.cut(v, v.holdFrom)
			c.unhold(v)
		}
		for _, o := range olds {
			c.commitHold(o.v, o.hosts, o.from, o.T, o.runTo, o.to, o.pre, o.boot, false)
			if len(o.xfers) > 0 {
				c.useLink(o.v, linkPlan{xs: o.xfers}, o.T-o.boot)
			}
		}
		for _, r := range rebooks {
			if r.v.next == nil {
				c.addBooked(r.v, r.b)
			}
		}
	}
	// The running leases in the way: suspended in time for l's slots.
	type susp struct {
		v          *lease
		start, end time.Time
	}
	var susps []susp
	var victims []victim
	rel := int64(0)
	if len(set.suspend) > 0 {
		rel = c.slotsFrom(l)
	}
	for _, id := range set.suspend {
		v := c.leases[id]
		x, ok := c.suspendable(v, rel, t)
		if !ok {
			undo()
			return Admission{}, false
		}
		susps = append(susps, susp{v: v, start: tm(v.T), end: tm(v.runTo)})
		vx := victim{l: v, kind: ActSuspend, at: x, rel: rel}
		victims = append(victims, vx)
		c.displace(vx, "preempted by "+l.ID)
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
	type item struct {
		v     *lease
		moved bool
	}
	var items []item
	for _, o := range olds {
		items = append(items, item{o.v, true})
	}
	for _, s := range susps {
		items = append(items, item{s.v, false})
	}
	for _, r := range rebooks {
		items = append(items, item{r.v, false})
	}
	sort.SliceStable(items, func(i, j int) bool { return items[i].v.Deadline.Before(items[j].v.Deadline) })
	for _, it := range items {
		if it.moved {
			if _, r := c.admitDeadline(it.v, t); r != nil {
				undo()
				return Admission{}, false
			}
		} else if !c.bookResume(it.v) {
			undo()
			return Admission{}, false
		}
		placed = append(placed, it.v)
	}
	for _, o := range olds {
		v := o.v
		if v.T == o.T && sameHosts(v.hosts, o.hosts) {
			continue
		}
		adm.Moved = append(adm.Moved, Moved{Lease: v.ID, FromStart: o.start, FromEnd: o.end, Start: tm(v.T), End: tm(v.runTo),
			Hosts: names(v.hosts)})
	}
	for _, vx := range victims {
		adm.Victims = append(adm.Victims, Victim{Lease: vx.l.ID, Kind: vx.kind, At: tm(vx.at)})
	}
	for _, s := range susps {
		b := s.v.next
		adm.Resumes = append(adm.Resumes, Moved{Lease: s.v.ID, FromStart: s.start, FromEnd: tm(s.v.runTo), Start: tm(b.T), End: tm(b.runTo),
			Hosts: names(b.hosts)})
	}
	for _, r := range rebooks {
		b := r.v.next
		if b.T == r.b.T {
			continue
		}
		adm.Resumes = append(adm.Resumes, Moved{Lease: r.v.ID, FromStart: tm(r.b.T), FromEnd: tm(r.b.runTo), Start: tm(b.T), End: tm(b.runTo),
			Hosts: names(b.hosts), Rebooked: true})
	}
	return adm, true
}
