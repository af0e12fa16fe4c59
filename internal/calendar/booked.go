package calendar

// Deadline leases suspended and resumed around reservations. A running
// deadline lease is in a reservation's (or another deadline lease's) way:
// it may be suspended in time for it, as a best-effort lease is, but what
// it was promised is its deadline, so its resume is booked at once, in
// the same admission: slots on the hosts its memory is saved on, from the
// end of its suspension, for the rest of its run and the restore before
// it, ending by its deadline. The booked resume holds its slots like any
// hold (later admissions see them taken); one that has not begun may be
// booked again later (shift.go), still by the deadline. When the
// suspension ends, the lease takes the booked hold as its own and resumes
// there, instead of waiting in the queue as a best-effort lease does.

// booked is a deadline lease's booked resume: the hold [from, to) on
// hosts (member -> host), restoring over [T-pre, T), running [T, runTo),
// then shutting down (Policy.ShutdownTime) until to.
type booked struct {
	hosts                   []*host
	from, T, runTo, to, pre int64
	allocs                  []*alloc
}

// suspendable says whether the running deadline lease v, in the way of a
// lease over [from, ...), may be suspended to be off its hosts by from,
// as of now: its suspension then begins at the returned time.
func (c *Calendar) suspendable(v *lease, from, now int64) (int64, bool) {
	if v.Kind != Deadline || !c.maySuspend(v) || v.Preempt == PreemptNever || v.Preempt == PreemptRequeue ||
		!v.held || !v.started || v.resume && v.T > now || v.fate != fateEnd || v.suspendSent || len(v.moves) > 0 ||
		v.next != nil || v.to <= from || ranOut(v, from) {
		return 0, false
	}
	x := from - c.suspendTime(v)
	if x < now || x < v.T || c.tooFresh(v, x) {
		return 0, false
	}
	return x, true
}

// bookResume books the resume of v, whose hold is planned to end in a
// suspension (fate suspend, ending at v.to): on the hosts its memory will
// be on, at the earliest start from v.to at which it fits, ending by its
// deadline. It reports whether there is such a start.
func (c *Calendar) bookResume(v *lease) bool {
	hosts := v.hosts
	pre := c.resumeOn(v, hosts)
	run := v.remaining - (v.runTo - v.T)
	T, ok := c.earliestThere(v, hosts, v.to, pre, c.span(run))
	if !ok || T+run > tick(v.Deadline) {
		return false
	}
	c.addBooked(v, &booked{hosts: hosts, from: T - pre, T: T, runTo: T + run, to: T + c.span(run), pre: pre})
	return true
}

// addBooked books b as v's resume: its slots are taken.
func (c *Calendar) addBooked(v *lease, b *booked) {
	c.mark(v)
	v.next = b
	b.allocs = b.allocs[:0]
	for _, hv := range perHost(v, b.hosts) {
		a := &alloc{l: v, h: hv.h, v: hv.v, from: b.from, to: b.to, booked: true}
		b.allocs = append(b.allocs, a)
		if a.to > a.from {
			hv.h.tl.add(a.from, a.to, a.v)
		}
		hv.h.allocs = append(hv.h.allocs, a)
		c.touch(hv.h)
	}
	if p := c.project(v.Project); p.quota != nil && b.to > b.from {
		p.qtl.add(b.from, b.to, v.qvec())
	}
}

// dropBooked gives back the slots of v's booked resume, if any.
func (c *Calendar) dropBooked(v *lease) {
	b := v.next
	if b == nil {
		return
	}
	c.mark(v)
	v.next = nil
	for _, a := range b.allocs {
		if a.to > a.from {
			a.h.tl.add(a.from, a.to, vec{}.sub(a.v))
		}
		a.h.allocs = removeAlloc(a.h.allocs, a)
		c.touch(a.h)
		c.released(a.h)
	}
	if p := c.project(v.Project); p.quota != nil && b.to > b.from {
		p.qtl.add(b.from, b.to, vec{}.sub(v.qvec()))
	}
	c.needPass = true
}

// takeBooked makes v's booked resume its hold, once its suspension ended
// (evRelease): the same slots, now the current hold's.
func (c *Calendar) takeBooked(v *lease) {
	b := v.next
	c.dropBooked(v)
	c.commitHold(v, b.hosts, b.from, b.T, b.runTo, b.to, b.pre, 0, true)
}
