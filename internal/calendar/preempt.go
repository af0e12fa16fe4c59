package calendar

// Preemption: which best-effort leases an admission may displace, by
// suspension or requeue, and in time to make room.

import (
	"fmt"
	"math"
	"slices"
	"sort"
	"time"
)

// victim is a lease an admission displaces, and how.
type victim struct {
	l    *lease
	kind ActionKind
	at   int64 // suspension (or requeue) begins
	rel  int64 // its slots are free from here
	// on lists the hosts the admission counts it gone from (a migration
	// moves its members off these).
	on []*host
}

// canPreempt says whether l's hold can be made to end by rel, and how.
func (c *Calendar) canPreempt(l *lease, rel, now int64) (victim, bool) {
	if l.Kind != BestEffort || l.Preempt == PreemptNever || !l.held || l.to <= rel || ranOut(l, rel) {
		return victim{}, false
	}
	if l.fate == fateSuspend && l.suspendSent || l.resume && l.T > now || len(l.moves) > 0 {
		// Already suspending, still resuming, or moving: leave it be. (A
		// suspension planned for later, as in a gap, may come sooner.)
		return victim{}, false
	}
	if !c.maySuspend(l) || l.Preempt == PreemptRequeue || l.T >= rel {
		if c.tooFresh(l, rel) {
			return victim{}, false
		}
		return victim{l: l, kind: ActRequeue, at: max(rel, l.holdFrom), rel: max(rel, l.holdFrom)}, true
	}
	x := rel - c.suspendTime(l)
	if x < now {
		return victim{}, false // too late to suspend it
	}
	if c.tooFresh(l, x) {
		return victim{}, false
	}
	if x < l.T {
		return victim{l: l, kind: ActRequeue, at: rel, rel: rel}, true
	}
	return victim{l: l, kind: ActSuspend, at: x, rel: rel}, true
}

// ranOut says whether l's run ends by rel and only its shutdown holds the
// slots then: there is no run left to displace, and a shutdown is not cut
// short.
func ranOut(l *lease, rel int64) bool {
	return l.fate == fateEnd && l.runTo < l.to && l.runTo <= rel
}

// tooFresh says whether l, displaced from at, would not have run
// Policy.MinRun by then since its run (re)started. A lease whose run has
// not begun by then loses no run.
func (c *Calendar) tooFresh(l *lease, at int64) bool {
	mr := int64(c.pol.MinRun)
	return mr > 0 && l.T < at && at-l.T < mr
}

// unsuspendable lists preemptible leases in the way that cannot be
// suspended in time, for refusals: too late, or (fresh) not yet run
// Policy.MinRun by from.
func (c *Calendar) unsuspendable(l *lease, from, to, now int64) (out, fresh []string) {
	seen := map[string]bool{}
	for gi := range l.groups {
		for _, h := range c.eligible(&l.groups[gi]) {
			for _, a := range h.allocs {
				v := a.l
				if a.from < to && a.to > from && !seen[v.ID] && v.Kind == BestEffort && v.Preempt != PreemptNever && !(v.fate == fateSuspend && v.suspendSent) && len(v.moves) == 0 && !ranOut(v, from) {
					seen[v.ID] = true
					if _, ok := c.canPreempt(v, from, now); !ok {
						if c.tooFresh(v, from) {
							fresh = append(fresh, v.ID)
						} else {
							out = append(out, v.ID)
						}
					}
				}
			}
		}
	}
	sort.Strings(out)
	sort.Strings(fresh)
	return out, fresh
}

// preemptFor places l over [from, to) by displacing best-effort leases that
// could make way by from: hosts that need no preemption first, then hosts
// whose displaceable leases started most recently, and on each host the
// most recently started victims until the members fit.
func (c *Calendar) preemptFor(l *lease, from, to, now int64) ([]*host, []victim, bool) {
	// What each eligible host would have free if every displaceable lease
	// left, and what it has free as things stand.
	type hostView struct {
		free, opt vec
		cands     []victim
	}
	views := map[*host]*hostView{}
	var hostsSeen []*host
	cache := map[*lease]victim{}
	canP := func(v *lease) (victim, bool) {
		if x, ok := cache[v]; ok {
			return x, x.l != nil
		}
		x, ok := c.canPreempt(v, from, now)
		if !ok {
			x = victim{}
		}
		cache[v] = x
		return x, ok
	}
	view := func(h *host) *hostView {
		if hv := views[h]; hv != nil {
			return hv
		}
		hv := &hostView{free: h.cap.sub(h.tl.max(from, to))}
		var skip []*alloc
		for _, a := range h.allocs {
			if a.from < to && a.to > from {
				if x, ok := canP(a.l); ok {
					skip = append(skip, a)
					hv.cands = append(hv.cands, x)
				}
			}
		}
		hv.opt = h.cap.sub(maxExcept(h, from, to, skip))
		views[h] = hv
		hostsSeen = append(hostsSeen, h)
		return hv
	}
	// Two passes per group: slots free as they stand, then slots that
	// preemption would free.
	hosts := make([]*host, len(l.Members))
	taken := map[*host]vec{}
	for gi := range l.groups {
		g := &l.groups[gi]
		need := g.members
		elig := c.eligible(g)
		for pass := 0; pass < 2 && len(need) > 0; pass++ {
			order := c.ranked(elig, from)
			if pass == 1 {
				// Displace where the leases in the way started last: they
				// lose the least.
				order = append([]*host(nil), order...)
				latest := func(h *host) int64 {
					t := int64(math.MinInt64)
					for _, x := range view(h).cands {
						t = max(t, x.l.T)
					}
					return t
				}
				sort.SliceStable(order, func(i, j int) bool { return latest(order[i]) > latest(order[j]) })
			}
			for _, h := range order {
				hv := view(h)
				f := hv.free
				if pass == 1 {
					f = hv.opt
				}
				n := copies(f.sub(taken[h]), g.v, len(need))
				for ; n > 0; n-- {
					hosts[need[0]] = h
					need = need[1:]
					taken[h] = taken[h].add(g.v)
				}
				if len(need) == 0 {
					break
				}
			}
		}
		if len(need) > 0 {
			return nil, nil, false
		}
	}
	// Choose victims host by host until what was taken fits.
	chosen := map[*lease]victim{}
	var order []*host
	for h := range taken {
		order = append(order, h)
	}
	sort.Slice(order, func(i, j int) bool { return order[i].pos < order[j].pos })
	for _, h := range order {
		hv := views[h]
		if taken[h].le(hv.free) {
			continue
		}
		cs := append([]victim(nil), hv.cands...)
		// Most recently started first: they lose the least.
		sort.Slice(cs, func(i, j int) bool {
			if cs[i].l.T != cs[j].l.T {
				return cs[i].l.T > cs[j].l.T
			}
			return cs[i].l.ID < cs[j].l.ID
		})
		var skip []*alloc
		for _, a := range h.allocs {
			if _, ok := chosen[a.l]; ok && a.from < to && a.to > from {
				skip = append(skip, a)
			}
		}
		for _, x := range cs {
			if taken[h].le(h.cap.sub(maxExcept(h, from, to, skip))) {
				break
			}
			if _, ok := chosen[x.l]; ok {
				continue
			}
			chosen[x.l] = x
			for _, a := range x.l.allocs {
				if a.h == h {
					skip = append(skip, a)
				}
			}
		}
		if !taken[h].le(h.cap.sub(maxExcept(h, from, to, skip))) {
			return nil, nil, false
		}
		// The victims counted gone from h must leave it.
		for _, a := range skip {
			if x, ok := chosen[a.l]; ok && !slices.Contains(x.on, h) {
				x.on = append(x.on, h)
				chosen[a.l] = x
			}
		}
	}
	vs := make([]victim, 0, len(chosen))
	for _, x := range chosen {
		vs = append(vs, x)
	}
	sort.Slice(vs, func(i, j int) bool { return vs[i].l.ID < vs[j].l.ID })
	return hosts, vs, true
}

// ranked orders hosts by the placement policy at time t.
func (c *Calendar) ranked(hs []*host, t int64) []*host {
	if c.firstFit() {
		return hs
	}
	out := append([]*host(nil), hs...)
	score := make(map[*host]int, len(out))
	for _, h := range out {
		score[h] = scoreOf(h.tl.at(t), h.cap)
	}
	sort.SliceStable(out, func(i, j int) bool {
		a, b := score[out[i]], score[out[j]]
		if a != b {
			if c.pol.Placement == Pack {
				return a > b
			}
			return a < b
		}
		return out[i].pos < out[j].pos
	})
	return out
}

// maxExcept is the most used on h over [from, to) without the skip allocations.
func maxExcept(h *host, from, to int64, skip []*alloc) vec {
	if len(skip) == 0 {
		return h.tl.max(from, to)
	}
	// Subtract the skipped allocations' steps from a copy of the window.
	var tl timeline
	i := h.tl.idx(from)
	if i >= 0 {
		tl.pts = append(tl.pts, point{from, h.tl.pts[i].v})
	}
	for k := i + 1; k < len(h.tl.pts) && h.tl.pts[k].t < to; k++ {
		tl.pts = append(tl.pts, h.tl.pts[k])
	}
	for _, a := range skip {
		tl.add(max(a.from, from), min(a.to, to), vec{}.sub(a.v))
	}
	return tl.max(from, to)
}

// applyVictims plans the displacement of vs for lease l, admitted at t
// and committed already: under Policy.Migrate, a running victim is moved
// to other hosts where it can be (its entry in vs becomes ActMigrate),
// else it is suspended or requeued.
func (c *Calendar) applyVictims(l *lease, vs []victim, t int64) {
	for i := range vs {
		if !c.migrateVictim(l, &vs[i], t) {
			c.displace(vs[i], "preempted by "+l.ID)
		}
	}
}

// displace plans the suspension or requeue of a victim, for cause.
func (c *Calendar) displace(x victim, cause string) {
	v := x.l
	switch x.kind {
	case ActSuspend:
		c.cut(v, x.rel)
		v.runTo = x.at
		k := len(v.segs) - len(v.allocs)
		for i := range v.allocs {
			v.segs[k+i].runTo = min(x.at, v.segs[k+i].to)
		}
		v.fate = fateSuspend
	default:
		begun := v.started || v.staged && !v.stagedOutside()
		c.cut(v, x.rel)
		v.fate = fateRequeue
		if v.to == v.holdFrom && begun {
			// Started (or staging within its hold) at this very
			// instant: requeued at once, as one that ran, since the
			// caller has its start and its project counts it running.
			v.cause = cause
			c.requeue(v, x.at)
			return
		}
		if v.to == v.holdFrom {
			// It had not begun: just back to the queue.
			c.unhold(v)
			v.st = StateQueued
			v.reason = cause
			c.enqueue(v)
			return
		}
	}
	v.cause = cause
	c.noteStop(v)
	c.schedule(v)
}

// unhold forgets a hold that ended (or never began), and a resume booked
// after it.
func (c *Calendar) unhold(l *lease) {
	c.dropBooked(l)
	c.dropLink(l)
	c.mark(l)
	l.held, l.stopped = false, false
	l.allocs = nil
	l.moves = nil
	l.hosts = nil
	l.gen++
}

// preemptStarts lists candidate starts in [T0, Tmax] for a lease that may
// preempt: T0, every end of a hold, and the first start at which each
// suspendable lease in the way could be off its host.
func (c *Calendar) preemptStarts(l *lease, T0, Tmax, pre int64) []int64 {
	set := map[int64]bool{T0: true}
	for gi := range l.groups {
		for _, h := range c.eligible(&l.groups[gi]) {
			for _, a := range h.allocs {
				if T := a.to + pre; T > T0 && T <= Tmax {
					set[T] = true
				}
				if v := a.l; v.Kind == BestEffort && v.Preempt == PreemptSuspend && c.maySuspend(v) {
					if T := T0 + c.suspendTime(v); T > T0 && T <= Tmax {
						set[T] = true
					}
				}
			}
		}
	}
	out := make([]int64, 0, len(set))
	for T := range set {
		out = append(out, T)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// Evict displaces a best-effort lease now, as a preemption would: a
// running one is suspended at once (its memory saved where it runs) and
// resumes where the calendar finds room, or is requeued if it may not be
// suspended; a waiting one on its hosts goes back to the queue. Drain uses
// it on a cordoned host, so the lease resumes elsewhere. why is the
// reason its actions carry. A lease that is not best-effort, not
// preemptible, or not holding slots is an error wrapping ErrInvalid; one
// already being suspended changes nothing. It advances the calendar to
// now and returns what is due.
func (c *Calendar) Evict(id, why string, now time.Time) ([]Action, error) {
	c.rev++ // see Revision
	t := c.clamp(now)
	c.advance(t)
	l := c.leases[id]
	switch {
	case l == nil:
		return c.take(), fmt.Errorf("evict %s: %w", id, ErrNotFound)
	case l.Kind != BestEffort || l.Preempt == PreemptNever:
		return c.take(), fmt.Errorf("evict %s: only preemptible best-effort leases are displaced, not this %s one: %w", id, l.Kind, ErrInvalid)
	case !l.held:
		return c.take(), fmt.Errorf("evict %s: it holds no slots (%s): %w", id, l.st, ErrInvalid)
	case l.fate != fateEnd || l.stopped:
		return c.take(), nil // being suspended or requeued already, or shutting down
	case len(l.moves) > 0:
		return c.take(), fmt.Errorf("evict %s: member %d is moving to %s (end the move first): %w", id, l.moves[0].member, l.moves[0].to.Name, ErrInvalid)
	}
	rel := t
	if l.T <= t && c.maySuspend(l) && l.Preempt == PreemptSuspend {
		rel = t + c.suspendTime(l) // its run has begun: saved from now
	}
	v, ok := c.canPreempt(l, rel, t)
	if !ok {
		return c.take(), fmt.Errorf("evict %s: it cannot be displaced now (still resuming): %w", id, ErrInvalid)
	}
	c.displace(v, why)
	l.cause = why
	if l.st == StateQueued {
		l.reason = why
	}
	c.released(nil)
	c.needPass = true
	c.advance(t)
	return c.take(), nil
}
