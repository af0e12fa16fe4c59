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
	firstFit := c.pol.Placement == "" || c.pol.Placement == FirstFit
	if c.pol.FairShare == nil && len(c.pol.Quotas) == 0 && !c.noMemo && firstFit && len(c.freshQ) == 0 && c.settled == c.passState(t) {
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
	fast := c.pol.FairShare == nil && len(c.pol.Quotas) == 0 && !c.noMemo
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
	if fast && firstFit && !ranOn {
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

// overlaps says whether one of tents begins before end. A start now that
// holds its slots until end at the latest (no image over the link) reads
// nothing of the slot table from where those reservations begin: it may
// be tried without them in the table. (The pass's memos of such tries,
// misses and frontiers, speak of windows that end by then, where the
// table is the same with them.)
func (c *Calendar) overlaps(tents []tentRec, end int64) bool {
	for i := range tents {
		// (From where addTentative puts it.)
		if tents[i].T-c.preFor(tents[i].l) < end {
			return true
		}
	}
	return false
}

// passState is what a pass depends on that changes between passes: the
// clock, releases (epoch), leases queued or renewed, commits.
type passState struct {
	t, epoch, enq, commits uint64
	ok                     bool
}

func (c *Calendar) passState(t int64) passState {
	return passState{t: uint64(t), epoch: c.epoch, enq: c.enqSeq, commits: c.commits, ok: true}
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
		if (c.pol.Placement == "" || c.pol.Placement == FirstFit) && last.pre == pre && last.run == c.span(l.remaining) {
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

// bulkMemo is the memo of the leases behind the last pass's backfill
// reservations (see pass): every lease after x in queue order that was
// queued when the pass got there (enq at most enq) and had arrived by t
// did not fit in pass pass, at epoch epoch, behind k reservations.
type bulkMemo struct {
	ok          bool
	x           *lease
	enq         uint64
	t           int64
	epoch, pass uint64
	k           int
}

// memo is l's memo: the last pass's bulk memo where it applies, else its
// own.
func (c *Calendar) memo(l *lease, b *bulkMemo) (epoch, pass uint64, k int) {
	if b.ok && l.enq <= b.enq && l.arrival <= b.t && before(b.x, l) {
		return b.epoch, b.pass, b.k
	}
	return l.memoEpoch, l.memoPass, l.memoK
}

// fresh makes the next pass look at l itself: it is new in the queue, or
// what its memo assumed changed.
func (c *Calendar) fresh(l *lease) {
	c.enqSeq++
	l.enq = c.enqSeq
	c.freshQ = append(c.freshQ, l)
}

// renew is fresh for a waiting lease whose size or length changed.
func (c *Calendar) renew(l *lease) {
	if !l.queued {
		return
	}
	c.fresh(l)
	q := c.queueOf(l)
	for i, x := range q.queue {
		if x == l {
			q.tot[i] = l.total
		}
	}
}

// fastPass is pass's walk of the FIFO queue: every lease up to the last
// backfill reservation (visit), then, behind it, only the leases whose
// memo is their own (fresh ones, those the last pass had not put behind
// its reservations) and those its memo does not rule out: when the last
// pass's memo applies, a lease is tried only if it is no larger than the
// capacity free now and some host it could use was freed since (which
// visit checks as before). same is the memo's count of unchanged
// reservations for the leases behind, ntents the number of reservations.
func (c *Calendar) fastPass(t int64, last *bulkMemo, fresh []*lease, visit func(*lease) bool, behind func() bool, ntents, same func() int) {
	q := &c.fifo
	defer func() {
		// Leases that have not arrived keep their own memo (none).
		for _, l := range fresh {
			if l.queued && l.arrival > t {
				c.freshQ = append(c.freshQ, l)
			}
		}
	}()
	i := 0
	for i < len(q.queue) && !behind() {
		l := q.queue[i]
		if l.arrival > t {
			i++
			continue
		}
		if !visit(l) {
			return
		}
		if l.queued {
			i++
		}
	}
	if i >= len(q.queue) || !behind() {
		return
	}
	c.bulk = bulkMemo{ok: true, x: q.queue[i-1], enq: c.enqSeq, t: t, epoch: c.epoch, pass: c.passNo, k: ntents()}
	// What the memo of the leases behind the last pass's reservations
	// lets through: all (any), none, or those no larger than the free
	// capacity (some host was freed).
	any, some := !last.ok, false
	posX := len(q.queue)
	if last.ok {
		if last.epoch <= c.relMin || last.k > len(c.lastTents) {
			any = true
		} else {
			j := sort.Search(len(c.rel), func(j int) bool { return c.rel[j].epoch > last.epoch })
			some = j < len(c.rel)
			for k := same(); k < last.k && !some; k++ {
				some = len(c.lastTents[k].hosts) > 0
			}
		}
		posX = i + sort.Search(len(q.queue)-i, func(j int) bool { return before(last.x, q.queue[i+j]) })
	}
	// Fresh leases behind, by position.
	var must []int
	for _, l := range fresh {
		if !l.queued || l.arrival > t {
			continue
		}
		p := i + sort.Search(len(q.queue)-i, func(j int) bool { return !before(q.queue[i+j], l) })
		if p < len(q.queue) && q.queue[p] == l && p >= posX {
			must = append(must, p)
		}
	}
	slices.Sort(must)
	must = slices.Compact(must)
	// p counts positions as they were here; gone the leases started
	// since (the only ones to leave the queue in a pass).
	n0, gone, mi := len(q.queue), 0, 0
	for p := i; p < n0; p++ {
		if mi < len(must) && must[mi] < p {
			mi++
		}
		j := p - gone
		switch {
		case p < posX || any:
		case mi < len(must) && must[mi] == p:
		case some && q.tot[j].le(c.freeSum):
		case !some:
			// Nothing freed: only the fresh leases need a look.
			if mi >= len(must) {
				return
			}
			p = must[mi] - 1
			continue
		default:
			continue
		}
		l := q.queue[j]
		if l.arrival > t {
			continue
		}
		visit(l)
		if !l.queued {
			gone++
		}
	}
}

// miss is a fresh start that failed in the current pass: members of v
// under label constraint key, n of them, over [t, end) (and, when gap,
// over [t, gapEnd) for a start in a gap). Within a pass the slot table
// only fills (starts, reservations added), and first-fit or ranked
// placement of identical members finds room for n of them exactly when
// the hosts hold n copies in all, so a lease of the same members, at
// least as many, over a window at least as long fails too: the pass does
// not try it (most of a long queue, behind a backfill reservation that
// holds the free hosts, fails so).
type miss struct {
	v      vec
	key    string
	n      int
	end    int64
	gap    bool
	gapN   int
	gapEnd int64
}

type misses []miss

// shape says whether l is a lease misses can speak of: one group of
// identical members placed without spreading, a fresh start.
func missShape(l *lease) bool {
	return len(l.groups) == 1 && !l.groups[0].spread && l.savedOn == nil
}

// rules says whether a miss of this pass shows that startNow(l, t) fails.
func (ms misses) rules(c *Calendar, l *lease, t int64) bool {
	if c.noMemo || !missShape(l) {
		return false
	}
	g := &l.groups[0]
	n := len(l.Members)
	pre := c.preFor(l)
	end := t + pre + c.span(l.remaining)
	gapOK := c.mayUseGaps(l)
	for i := range ms {
		m := &ms[i]
		if !same(&m.v, &g.v) || m.key != g.key || n < m.n || end < m.end {
			continue
		}
		if !gapOK || m.gap && n >= m.gapN && t+pre+c.gapMinRun() >= m.gapEnd {
			return true
		}
	}
	return false
}

// note records that startNow(l, t) failed (c.gapMiss says whether its
// start in a gap failed for want of room, rather than not being tried or
// failing later).
func (ms *misses) note(c *Calendar, l *lease, t int64) {
	if c.noMemo || !missShape(l) || len(*ms) >= 16 {
		return
	}
	g := &l.groups[0]
	pre := c.preFor(l)
	*ms = append(*ms, miss{v: g.v, key: g.key, n: len(l.Members), end: t + pre + c.span(l.remaining),
		gap: c.gapMiss, gapN: len(l.Members), gapEnd: t + pre + c.gapMinRun()})
}
