package calendar

// The pass's shortcuts (see pass): the memo of the leases behind the
// backfill reservations and the FIFO walk that uses it, the misses of a
// pass, a pass that would change nothing, and tries that need no
// reservation in the table. Each is exact: TestRandomWorkloads and
// TestScenariosWithoutShortcuts compare them with noMemo.

import (
	"slices"
	"sort"
)

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
