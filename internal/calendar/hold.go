package calendar

// Holds: a lease given its slots on hosts (commit), and a hold cut short.

import "slices"

// commit gives l slots on hosts (member i on hosts[i]) for a run [T,
// runTo) that ends: over [from, runTo+ShutdownTime), the shutdown after
// the run (shutdown.go). The caller checked that they fit.
func (c *Calendar) commit(l *lease, hosts []*host, from, T, runTo, pre, boot int64, resume bool) {
	c.commitHold(l, hosts, from, T, runTo, runTo+c.shutdown(), pre, boot, resume)
}

// commitHold gives l slots on hosts (member i on hosts[i]) over [from,
// to), its run [T, runTo) starting after pre of overhead, the last boot
// of which is booting (a fresh start), and schedules its events; the
// hold ends with the lease, [runTo, to) its shutdown. A fresh start that
// stages ahead (stagesAhead) has from = T-boot: its staging [T-pre,
// T-boot) holds no slots, and the chart shows the hold from from.
func (c *Calendar) commitHold(l *lease, hosts []*host, from, T, runTo, to, pre, boot int64, resume bool) {
	c.commits++
	l.held, l.resume = true, resume
	l.hosts = hosts
	l.holdFrom, l.T, l.runTo, l.to, l.pre, l.boot = from, T, runTo, to, pre, boot
	l.fate, l.cause = fateEnd, ""
	l.staged, l.started, l.suspendSent, l.stopped = false, false, false, false
	l.planned, l.planHosts = false, nil
	l.reason = ""
	l.moves = nil
	// One allocation for the lease's holds, and room for its new
	// segments at once: a lease of hundreds of members otherwise costs as
	// many small allocations.
	hvs := appendPerHost(c.hvBuf[:0], l, hosts)
	c.hvBuf = hvs[:0]
	as := make([]alloc, len(hvs))
	l.allocs = slices.Grow(l.allocs[:0], len(hvs))
	l.segs = slices.Grow(l.segs, len(hvs))
	for i, hv := range hvs {
		h := hv.h
		a := &as[i]
		*a = alloc{l: l, h: h, v: hv.v, from: from, to: to}
		l.allocs = append(l.allocs, a)
		h.tl.add(from, to, a.v)
		h.allocs = append(h.allocs, a)
		if from <= c.now {
			c.touch(h)
		}
		l.segs = append(l.segs, seg{h: h, from: from, ovFrom: max(T-pre, from), runFrom: T, runTo: runTo, to: to})
	}
	if p := c.project(l.Project); p.quota != nil {
		p.qtl.add(from, to, l.total)
	}
	if l.queued {
		c.dequeue(l)
	}
	if l.st != StateRunning {
		l.st = StateScheduled
	}
	c.schedule(l)
}

// groupVec is member i's resources.
func (l *lease) groupVec(i int) vec { return vecOf(l.Members[i].Resources) }

// cut ends l's current hold at t (no earlier than it began): the slots
// after t are given back.
func (c *Calendar) cut(l *lease, t int64) {
	if !l.held {
		return
	}
	t = max(t, l.holdFrom)
	c.mark(l)
	for _, a := range l.allocs {
		// (A move's destination may begin after t, its source end before.)
		if s := max(t, a.from); s < a.to {
			a.h.tl.add(s, a.to, vec{}.sub(a.v))
			a.to = s
			c.touch(a.h)
			c.released(a.h)
		}
	}
	if p := c.project(l.Project); p.quota != nil && t < l.to {
		p.qtl.add(t, l.to, vec{}.sub(l.qvec()))
	}
	q := l.qvec()
	l.to = t
	l.runTo = min(l.runTo, t)
	// A hold cut before its run began keeps no run: [t, t). Its start is
	// not scheduled any more (see schedule), and what it used is nothing.
	l.T = min(l.T, t)
	// Fix up the chart's record of the hold.
	k := len(l.segs) - len(l.allocs)
	for i := range l.allocs {
		closeSeg(&l.segs[k+i], t)
	}
	if t == l.holdFrom {
		// Nothing was held: forget the record and the allocations.
		l.segs = l.segs[:k]
		for _, a := range l.allocs {
			a.h.allocs = removeAlloc(a.h.allocs, a)
		}
		l.moves = nil
	} else if len(l.moves) > 0 {
		// Moves that would begin when the hold is over are dropped.
		n := len(l.moves)
		l.moves = slices.DeleteFunc(slices.Clone(l.moves), func(mv *move) bool { return mv.start >= t })
		if len(l.moves) != n {
			c.rebuild(l, t, q)
		}
	}
	c.needPass = true
}

func removeAlloc(as []*alloc, a *alloc) []*alloc {
	for i, x := range as {
		if x == a {
			copy(as[i:], as[i+1:])
			as[len(as)-1] = nil
			return as[:len(as)-1]
		}
	}
	return as
}
