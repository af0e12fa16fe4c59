package calendar

import (
	"math"
	"sort"
)

// queueOf is the queue a waiting lease is kept in: its project's when fair
// share is on, else the one FIFO.
func (c *Calendar) queueOf(l *lease) *project {
	if c.pol.FairShare == nil {
		return &c.fifo
	}
	return c.project(l.Project)
}

// before is the order within a queue: submit time, then ID.
func before(a, b *lease) bool {
	if a.submitted != b.submitted {
		return a.submitted < b.submitted
	}
	return a.ID < b.ID
}

func (c *Calendar) enqueue(l *lease) {
	if l.queued {
		return
	}
	c.mark(l)
	q := c.queueOf(l)
	i := sort.Search(len(q.queue), func(i int) bool { return before(l, q.queue[i]) })
	q.queue = append(q.queue, nil)
	copy(q.queue[i+1:], q.queue[i:])
	q.queue[i] = l
	l.queued = true
	l.memoPass = 0
	l.planned = false
	c.queued++
	c.needPass = true
}

func (c *Calendar) dequeue(l *lease) {
	if !l.queued {
		return
	}
	c.mark(l)
	q := c.queueOf(l)
	i := sort.Search(len(q.queue), func(i int) bool { return !before(q.queue[i], l) })
	for ; i < len(q.queue); i++ {
		if q.queue[i] == l {
			copy(q.queue[i:], q.queue[i+1:])
			q.queue[len(q.queue)-1] = nil
			q.queue = q.queue[:len(q.queue)-1]
			break
		}
	}
	l.queued = false
	l.planned = false
	c.queued--
}

// queueOrder is the order in which waiting leases are considered at t.
func (c *Calendar) queueOrder(t int64) []*lease {
	out := c.orderBuf[:0]
	if c.pol.FairShare == nil {
		out = append(out, c.fifo.queue...)
		c.orderBuf = out
		return out
	}
	ps := make([]*project, 0, len(c.projects))
	share := map[*project]float64{}
	for _, p := range c.projects {
		if len(p.queue) > 0 {
			share[p] = c.usageAt(p, t) / p.weight
			ps = append(ps, p)
		}
	}
	sort.Slice(ps, func(i, j int) bool {
		a, b := share[ps[i]], share[ps[j]]
		if a != b {
			return a < b
		}
		return ps[i].name < ps[j].name
	})
	for _, p := range ps {
		out = append(out, p.queue...)
	}
	c.orderBuf = out
	return out
}

// tentRec is a backfill reservation made in a pass. ver identifies the
// sequence of reservations up to and including this one.
type tentRec struct {
	l     *lease
	T     int64
	hosts []*host
	ver   uint64
}

// pass starts what can start at t, in queue order, and (with backfilling)
// plans reservations for what cannot, so that leases further back start
// now only if they delay no reservation.
//
// A lease that did not fit now at some epoch and tentative plan set will
// not fit at the same epoch and set later: windows only get better when
// slots are released, which bumps the epoch. The pass skips such leases, so
// that a long queue costs little when nothing was released.
func (c *Calendar) pass(t int64) {
	c.needPass = false
	if c.queued == 0 {
		c.lastTents = c.lastTents[:0]
		return
	}
	bf := c.pol.Backfill
	if bf == "" {
		bf = BackfillAggressive
	}
	c.passNo++
	commits0 := c.commits
	var tents []tentRec
	var ver uint64
	// diverged is the first position at which this pass's reservations
	// differ from the last pass's.
	diverged := len(c.lastTents)
	blocked := false
	// Reservations enter the slot table only when a lease behind them is
	// actually tried or planned (most are skipped by their memo).
	added := 0
	flush := func() {
		for ; added < len(tents); added++ {
			c.addTentative(tents[added], 1)
		}
	}
	for _, l := range c.queueOrder(t) {
		if !l.queued || l.arrival > t {
			continue
		}
		if blocked {
			l.planned = false
			continue
		}
		pre := c.preFor(l)
		if why, over := c.quotaOver(l, t, t+pre+l.remaining); over {
			c.setReason(l, "held by quota: "+why)
			l.planned = false
			continue
		}
		if l.st != StateSuspended {
			c.setReason(l, "")
		}
		// Try it now unless it did not fit in the last pass and nothing it
		// could use has been freed since.
		k := len(tents)
		if (c.noMemo || l.memoPass != c.passNo-1 || c.mayFit(l, t, min(k, diverged))) && c.mayStartNow(l) {
			flush()
			if c.startNow(l, t) {
				continue
			}
		}
		l.memoEpoch, l.memoPass, l.memoK = c.epoch, c.passNo, k
		if bf == BackfillNone {
			blocked = true
			l.planned = false
			continue
		}
		if bf == BackfillAggressive && len(tents) > 0 || c.pol.Depth > 0 && len(tents) >= c.pol.Depth {
			l.planned = false
			continue
		}
		flush()
		rec, ok := c.plan(l, t, pre, ver, len(tents))
		if !ok {
			l.planned = false
			continue
		}
		if k := len(tents); k < diverged && c.lastTents[k].ver != rec.ver {
			diverged = k
		}
		tents = append(tents, rec)
		ver = rec.ver
	}
	for i := added - 1; i >= 0; i-- {
		c.addTentative(tents[i], -1)
	}
	c.lastTents = tents
	if c.commits != commits0 {
		// A lease that started can change the plans of those before it
		// in the queue: pass again until nothing more starts, so that
		// the result does not depend on when the next pass happens.
		c.needPass = true
	}
}

// plan finds the earliest start for a waiting lease, reusing the last
// pass's plan when nothing it depends on changed.
func (c *Calendar) plan(l *lease, t, pre int64, ver uint64, k int) (tentRec, bool) {
	prev := uint64(0)
	if k > 0 && k <= len(c.lastTents) {
		prev = c.lastTents[k-1].ver
	}
	var last *tentRec
	if k < len(c.lastTents) && c.lastTents[k].l == l && prev == ver {
		last = &c.lastTents[k]
	}
	// Reuse the last plan only if nothing was released or committed since
	// it was made: then the earliest start and its hosts are the same.
	if last != nil && l.planEpoch == c.epoch && l.planCommits == c.commits && last.T >= t+pre && !c.noMemo {
		c.setPlan(l, *last)
		return *last, true
	}
	var T int64
	var hosts []*host
	if c.pol.ResumeInPlace && l.savedOn != nil {
		// Only where its memory is: the earliest time it fits there.
		pre = c.resumeInPlace(l)
		T1 := t + pre
		for !c.fitsOn(l, l.savedOn, T1-pre, T1+l.remaining) {
			nx, ok := nextFree(l.savedOn, T1-pre)
			if !ok {
				return tentRec{}, false
			}
			T1 = nx + pre
		}
		T, hosts = T1, l.savedOn
	} else if T1, ok := c.replan(l, last, t, pre); ok {
		T = T1
	} else if last != nil && !c.noMemo && len(l.groups) == 1 && last.T >= t+pre && c.fitsOn(l, last.hosts, last.T-pre, last.T+l.remaining) {
		// The old start is still possible: only an earlier one needs
		// looking for. (For identical members only: mixed members are
		// placed greedily, which may not find the old placement again.)
		T = last.T
		if T1, h1, ok := c.earliestPlaced(l, t+pre, last.T-1, pre, l.remaining); ok {
			T, hosts = T1, h1
		}
	} else if T1, h1, ok := c.earliestPlaced(l, t+pre, math.MaxInt64, pre, l.remaining); ok {
		T, hosts = T1, h1
	} else {
		return tentRec{}, false
	}
	if hosts == nil {
		var ok bool
		if hosts, ok = c.placeAt(l, T-pre, T+l.remaining, false); !ok {
			return tentRec{}, false
		}
	}
	rec := tentRec{l: l, T: T, hosts: hosts}
	if last != nil && last.T == T && sameHosts(last.hosts, hosts) {
		rec.ver = last.ver
	} else {
		c.tentVer++
		rec.ver = c.tentVer
	}
	l.planEpoch, l.planCommits = c.epoch, c.commits
	c.setPlan(l, rec)
	return rec, true
}

// replan finds a single-member lease's earliest start from its last plan.
// Since the plan was made, hosts have only lost capacity except those in
// the release log; so if the plan is still feasible, the earliest start is
// its start or an earlier one on a host released since.
func (c *Calendar) replan(l *lease, last *tentRec, t, pre int64) (int64, bool) {
	if last == nil || c.noMemo || len(l.Members) != 1 || last.T < t+pre || l.planEpoch <= c.relMin ||
		!c.fitsOn(l, last.hosts, last.T-pre, last.T+l.remaining) {
		return 0, false
	}
	var hosts []*host
	seen := map[*host]bool{}
	i := sort.Search(len(c.rel), func(i int) bool { return c.rel[i].epoch > l.planEpoch })
	for ; i < len(c.rel); i++ {
		h := c.rel[i].h
		if h == nil {
			return 0, false
		}
		if !h.down && !seen[h] && matches(h, l.groups[0].labels) {
			seen[h] = true
			hosts = append(hosts, h)
		}
	}
	T := last.T
	if len(hosts) > 0 {
		if T1, _, ok := c.earliestOn(l, hosts, t+pre, T, pre, l.remaining); ok {
			T = T1
		}
	}
	return T, true
}

func (c *Calendar) setPlan(l *lease, r tentRec) {
	l.planned, l.planT, l.planHosts = true, r.T, r.hosts
}

func sameHosts(a, b []*host) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// addTentative adds (sign 1) or takes away (-1) a backfill reservation.
func (c *Calendar) addTentative(r tentRec, sign int64) {
	pre := c.preFor(r.l)
	from, to := r.T-pre, r.T+r.l.remaining
	// Add run by run of members on the same host (a host in two runs is
	// added twice, which sums the same).
	for i := 0; i < len(r.hosts); {
		h, v := r.hosts[i], r.l.groupVec(i)
		j := i + 1
		for ; j < len(r.hosts) && r.hosts[j] == h; j++ {
			v = v.add(r.l.groupVec(j))
		}
		h.tl.add(from, to, v.scale(sign))
		i = j
	}
}

// hostVec is what a lease's members need on one host.
type hostVec struct {
	h *host
	v vec
}

// perHost sums l's members by host, in order of first appearance.
func perHost(l *lease, hosts []*host) []hostVec {
	if len(hosts) == 1 {
		return []hostVec{{hosts[0], l.groupVec(0)}}
	}
	out := make([]hostVec, 0, min(len(hosts), 8))
	for _, h := range hosts {
		h.mark = -1
	}
	for i, h := range hosts {
		v := l.groupVec(i)
		if h.mark < 0 {
			h.mark = len(out)
			out = append(out, hostVec{h, v})
		} else {
			out[h.mark].v = out[h.mark].v.add(v)
		}
	}
	return out
}

// mayStartNow is a quick test that rules out leases larger than all the
// capacity free now.
func (c *Calendar) mayStartNow(l *lease) bool { return l.total.le(c.freeSum) }

// startNow starts (or resumes) l at t if it fits.
func (c *Calendar) startNow(l *lease, t int64) bool {
	if !c.mayStartNow(l) {
		return false
	}
	if l.savedOn != nil && !anyCordoned(l.savedOn) {
		pre := c.resumeInPlace(l)
		if to := t + pre + l.remaining; c.fitsOn(l, l.savedOn, t, to) {
			c.commit(l, l.savedOn, t, t+pre, to, pre, 0, true)
			return true
		}
		if c.pol.ResumeInPlace {
			return c.startInGap(l, t)
		}
	}
	pre, boot := c.overheads(l)
	to := t + pre + l.remaining
	hosts, ok := c.placeAt(l, t, to, true)
	if !ok {
		return c.startInGap(l, t)
	}
	c.commit(l, hosts, t, t+pre, to, pre, boot, l.savedOn != nil)
	return true
}

// fitsOn says whether l's members fit on the given hosts over [from, to).
func (c *Calendar) fitsOn(l *lease, hosts []*host, from, to int64) bool {
	if len(l.groups) > 1 {
		for _, hv := range perHost(l, hosts) {
			if hv.h.down || !hv.h.tl.max(from, to).add(hv.v).le(hv.h.cap) {
				return false
			}
		}
		return true
	}
	// Identical members: each host's members form one run.
	v := l.groups[0].v
	for i := 0; i < len(hosts); {
		h := hosts[i]
		j := i + 1
		for ; j < len(hosts) && hosts[j] == h; j++ {
		}
		if h.down || !h.tl.max(from, to).add(v.scale(int64(j-i))).le(h.cap) {
			return false
		}
		i = j
	}
	return true
}

// nextFree is the next time after t at which the slot table of any of hs
// changes (a hold ends or begins); false if none does.
func nextFree(hs []*host, t int64) (int64, bool) {
	best, ok := int64(math.MaxInt64), false
	for _, h := range hs {
		if n, found := h.tl.next(t); found && n < best {
			best, ok = n, true
		}
	}
	return best, ok
}

// anyCordoned says whether one of hosts is cordoned (or gone).
func anyCordoned(hosts []*host) bool {
	for _, h := range hosts {
		if h.Cordoned || h.down {
			return true
		}
	}
	return false
}
