package calendar

import (
	"math"
	"slices"
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
	q.tot = append(q.tot, vec{})
	copy(q.tot[i+1:], q.tot[i:])
	q.tot[i] = l.total
	l.queued = true
	c.fresh(l)
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
			if i < len(q.queue)/2 {
				// Near the head (where leases start): move what is
				// before it, not what is after.
				copy(q.queue[1:i+1], q.queue[:i])
				q.queue[0] = nil
				q.queue = q.queue[1:]
				copy(q.tot[1:i+1], q.tot[:i])
				q.tot = q.tot[1:]
				break
			}
			copy(q.queue[i:], q.queue[i+1:])
			q.queue[len(q.queue)-1] = nil
			q.queue = q.queue[:len(q.queue)-1]
			copy(q.tot[i:], q.tot[i+1:])
			q.tot = q.tot[:len(q.tot)-1]
			break
		}
	}
	l.queued = false
	l.planned = false
	l.sweep = nil
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
	// pre and run are the window the plan was made for: [T-pre, T+run).
	pre, run int64
	// runs are hosts as runs of one host (hostRuns), for a lease of
	// identical members; nil: none made.
	runs []hostRun
}

// hostRun is n consecutive members on host h.
type hostRun struct {
	h *host
	n int
}

// hostRuns is hosts as runs of one host.
func hostRuns(hosts []*host) []hostRun {
	n := 0
	for i, h := range hosts {
		if i == 0 || h != hosts[i-1] {
			n++
		}
	}
	out := make([]hostRun, 0, n)
	for i, h := range hosts {
		if i == 0 || h != hosts[i-1] {
			out = append(out, hostRun{h, 0})
		}
		out[len(out)-1].n++
	}
	return out
}

// pass starts what can start at t, in queue order, and (with backfilling)
// plans reservations for what cannot, so that leases further back start
// now only if they delay no reservation.
//
// A lease that did not fit now at some epoch and tentative plan set will
// not fit at the same epoch and set later: windows only get better when
// slots are released, which bumps the epoch. The pass skips such leases, so
// that a long queue costs little when nothing was released.
//
// Behind the backfill reservations (aggressive backfilling's one, or
// Depth of them), a waiting lease can only be tried now, and every lease
// there that is not started ends the pass with the same memo. The FIFO
// queue (no fair share, no quotas) keeps that memo once for all of them
// (bulkMemo) and, behind the reservations, looks only at the leases that
// must be tried (a lease smaller than the free capacity, on a host freed
// since) or that the last pass did not see there (fresh ones, and those
// between this pass's reservations and the last's): the others would
// only have their memo renewed. A long queue then costs little even
// when something was released.
func (c *Calendar) pass(t int64) {
	c.needPass = false
	bf := c.pol.Backfill
	if bf == "" {
		bf = BackfillAggressive
	}
	if c.queued == 0 {
		c.lastTents = c.lastTents[:0]
		c.bulk.ok = false
		if len(c.stops) > 0 {
			c.runOnAll(bf, nil)
		}
		return
	}
	// fast: the FIFO walk (fastPass) and its memos.
	fast := c.pol.FairShare == nil && len(c.pol.Quotas) == 0 && !c.noMemo
	if fast && c.firstFit() && len(c.freshQ) == 0 && c.settled == c.passState(t) {
		// A pass again at the same instant with nothing released,
		// queued or committed since the last pass ended: that pass's
		// starts took slots only, each past the backfill reservations
		// made before it, so no lease before one of them can start now
		// or earlier than planned, and first fit plans the same hosts
		// (see plan). This one would find what that one did.
		return
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
	misses := c.misses[:0]
	defer func() { c.misses = misses[:0] }()
	last := c.bulk
	c.bulk.ok = false
	fresh := c.freshQ
	c.freshQ = c.freshBuf[:0]
	c.freshBuf = fresh[:0]
	// behind says the reservations are all made: leases from here on can
	// only be tried now.
	behind := func() bool {
		return bf == BackfillAggressive && len(tents) > 0 || c.pol.Depth > 0 && len(tents) >= c.pol.Depth
	}
	// visit is one lease's turn; false when nothing behind it needs one
	// (backfilling none, blocked).
	visit := func(l *lease) bool {
		if blocked {
			if fast {
				return false
			}
			l.planned = false
			return true
		}
		pre := c.preFor(l)
		if why, over := c.quotaOver(l, t, t+pre+c.span(l.remaining)); over {
			c.setReason(l, "held by quota: "+why)
			l.planned = false
			return true
		}
		if l.st != StateSuspended {
			c.setReason(l, "")
		}
		// Try it now unless it did not fit in the last pass and nothing it
		// could use has been freed since.
		k := len(tents)
		epoch, pass, mk := c.memo(l, &last)
		if (c.noMemo || pass != c.passNo-1 || c.mayFit(l, t, min(k, diverged), epoch, mk)) && c.mayStartNow(l) && !misses.rules(c, l, t) {
			if c.noMemo || c.pol.Link.Bandwidth > 0 || c.overlaps(tents[added:], t+pre+c.span(l.remaining)) {
				flush()
			}
			c.gapMiss, c.linkMiss = false, false
			if c.startNow(l, t) {
				return true
			}
			if !c.linkMiss {
				misses.note(c, l, t)
			}
		}
		l.memoEpoch, l.memoPass, l.memoK = c.epoch, c.passNo, k
		if c.linkMiss || len(l.groups) > 1 {
			// The link frees up with time, not releases, and mixed
			// members may fit with nothing released (mayFit): try it
			// again, and have the next pass look at it itself (behind
			// the reservations, the pass's bulk memo would speak for
			// it).
			l.memoPass = 0
			c.linkMiss = false
			c.fresh(l)
		}
		if bf == BackfillNone {
			blocked = true
			l.planned = false
			return !fast
		}
		if behind() {
			l.planned = false
			return true
		}
		flush()
		rec, ok := c.plan(l, t, pre, ver, len(tents))
		if !ok {
			l.planned = false
			return true
		}
		if k := len(tents); k < diverged && c.lastTents[k].ver != rec.ver {
			diverged = k
		}
		tents = append(tents, rec)
		ver = rec.ver
		return true
	}
	if !fast {
		for _, l := range c.queueOrder(t) {
			if !l.queued || l.arrival > t {
				continue
			}
			visit(l)
		}
	} else {
		c.fastPass(t, &last, fresh, visit, behind, func() int { return len(tents) }, func() int { return min(len(tents), diverged) })
		// Leases planned in the last pass and not in this one are no
		// longer planned (a visit would have said so).
		for _, r := range c.lastTents {
			r.l.planned = false
		}
		for _, r := range tents {
			r.l.planned = true
		}
	}
	for i := added - 1; i >= 0; i-- {
		c.addTentative(tents[i], -1)
	}
	ranOn := false
	if len(c.stops) > 0 {
		ranOn = c.runOnAll(bf, tents)
	}
	c.lastTents = tents
	c.settled = passState{}
	if fast && c.firstFit() && !ranOn {
		// (A lease that ran on took slots after the plans were made.)
		c.settled = c.passState(t)
	}
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
		T1, ok := c.earliestThere(l, l.savedOn, t, pre, c.span(l.remaining))
		if !ok {
			return tentRec{}, false
		}
		T, hosts = T1, l.savedOn
	} else if T1, ok := c.replan(l, last, t, pre); ok {
		T = T1
	} else if last != nil && !c.noMemo && len(l.groups) == 1 && last.T >= t+pre && l.planEpoch == c.epoch && c.fitsOn(l, last.hosts, last.T-pre, last.T+c.span(l.remaining)) {
		// Nothing released since the plan was made (only slots taken):
		// no window got better, so no earlier start can have appeared,
		// and the old start is still possible. (For identical members
		// only: mixed members are placed greedily, which may not find the
		// old placement again.) After a release the sweep below finds
		// the same start as a search for an earlier one would, and reads
		// the first-fit placement off its counts rather than placing
		// again.
		T = last.T
		if c.firstFit() && last.pre == pre && last.run == c.span(l.remaining) {
			// First fit over the same window and hosts, with only slots
			// taken since, places as it did: a host it skipped has no
			// more room, and one it filled has exactly the room for the
			// members it gave it (they still fit, and no host gained).
			hosts = last.hosts
		}
	} else if T1, h1, ok := c.sweepPlan(l, ver, t+pre, pre, c.span(l.remaining)); ok {
		T, hosts = T1, h1
	} else {
		return tentRec{}, false
	}
	if hosts == nil {
		var ok bool
		if hosts, ok = c.placeInto(slices.Grow(c.placeBuf[:0], len(l.Members))[:len(l.Members)], l, T-pre, T+c.span(l.remaining), false); !ok {
			return tentRec{}, false
		}
		c.placeBuf = hosts[:0]
	}
	// hosts is a scratch buffer (c.placeBuf): the plan keeps the last
	// plan's hosts when they are the same, else a copy.
	rec := tentRec{l: l, T: T, pre: pre, run: c.span(l.remaining)}
	if last != nil && last.T == T && sameHosts(last.hosts, hosts) {
		rec.ver, rec.hosts, rec.runs = last.ver, last.hosts, last.runs
	} else {
		c.tentVer++
		rec.ver, rec.hosts = c.tentVer, slices.Clone(hosts)
	}
	if rec.runs == nil && len(l.groups) == 1 && len(hosts) > 8 {
		rec.runs = hostRuns(rec.hosts)
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
		!c.fitsOn(l, last.hosts, last.T-pre, last.T+c.span(l.remaining)) {
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
		if T1, _, ok := c.earliestOn(l, hosts, t+pre, T, pre, c.span(l.remaining)); ok {
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
	from, to := r.T-pre, r.T+c.span(r.l.remaining)
	// Add run by run of members on the same host (a host in two runs is
	// added twice, which sums the same).
	alike := len(r.l.groups) == 1
	if alike && r.runs != nil {
		// Identical members: each run's size times one.
		for _, hr := range r.runs {
			hr.h.tl.add(from, to, r.l.groups[0].v.scale(int64(hr.n)*sign))
		}
		return
	}
	for i := 0; i < len(r.hosts); {
		h, v := r.hosts[i], r.l.groupVec(i)
		j := i + 1
		if alike {
			// Identical members: the run's size times one.
			for j < len(r.hosts) && r.hosts[j] == h {
				j++
			}
			v = v.scale(int64(j - i))
		} else {
			for ; j < len(r.hosts) && r.hosts[j] == h; j++ {
				v = v.add(r.l.groupVec(j))
			}
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
	return appendPerHost(make([]hostVec, 0, min(len(hosts), 8)), l, hosts)
}

// appendPerHost is perHost appended to out (a buffer the caller reuses).
func appendPerHost(out []hostVec, l *lease, hosts []*host) []hostVec {
	for _, h := range hosts {
		h.mark = -1
	}
	if len(l.groups) == 1 && len(hosts) > 1 {
		// Identical members: run by run of one host, the run's size
		// times one (the same sums).
		v := l.groups[0].v
		for i := 0; i < len(hosts); {
			h, j := hosts[i], i+1
			for j < len(hosts) && hosts[j] == h {
				j++
			}
			if w := v.scale(int64(j - i)); h.mark < 0 {
				h.mark = len(out)
				out = append(out, hostVec{h, w})
			} else {
				out[h.mark].v = out[h.mark].v.add(w)
			}
			i = j
		}
		return out
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
		if to := t + pre + l.remaining; c.fitsOn(l, l.savedOn, t, to+c.shutdown()) {
			c.commit(l, l.savedOn, t, t+pre, to, pre, 0, true)
			return true
		}
		if c.pol.ResumeInPlace {
			return c.startInGap(l, t)
		}
	}
	pre, boot := c.overheads(l)
	to := t + pre + l.remaining
	hosts, ok := c.placeNow(l, t, to+c.shutdown())
	if !ok {
		return c.startInGap(l, t)
	}
	if l.savedOn == nil && c.linkFor(l) {
		if _, ok, r := c.startOverLink(l, hosts, t, boot); ok || r == nil && c.startInGap(l, t) {
			return true
		}
		c.linkMiss = true
		return false
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
