package calendar

// Resizing a lease's member: in place, checked against the future of its
// host's slot table and its project's quotas, or (ResizeTarget) finding
// another host for a move that resizes it.

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"vgrid/internal/model"
)

// Resize gives member (its index in the lease's members) the resources
// res from now on. The lease's slots, its project's quotas, fair-share
// usage and core-hours count the new size from now; what ran before
// counts at the old one.
//
// A held lease (scheduled or running) keeps its hosts. Shrinking always
// succeeds and frees the capacity at once (the queue gets a pass: the
// actions may start waiting leases). Growing is granted only if the
// member's host has room for the new size from now (or from the start of
// a hold that has not begun) to the end of the hold without breaking any
// admitted lease (nothing is preempted for it), and within the project's
// quotas; otherwise the error is a *Refusal (ReasonResize) naming the
// short resource, the lease in the way (a reservation if one is, and when
// its hold begins), and MaxNow, the largest size possible now (or the
// quota). ResizeTarget finds another host for a resize with migration. A
// waiting lease (queued or suspended) just asks for the new size when it
// is placed; it is refused if no host could ever hold it or its quota is
// short. A refusal changes nothing; a resize to the same size does
// nothing.
//
// An unknown lease is an error wrapping ErrNotFound, one that is over one
// wrapping ErrFinished; a member out of range, negative resources, a
// lease to be suspended or requeued, or a member that is moving, one
// wrapping ErrInvalid. It advances the calendar to now and returns what
// is due.
func (c *Calendar) Resize(id string, member int, res model.Resources, now time.Time) ([]Action, error) {
	c.rev++ // see Revision
	t := c.clamp(now)
	c.advance(t)
	l, err := c.resizable(id, member, res)
	if err != nil {
		return c.take(), err
	}
	if l.Members[member].Resources == res {
		return c.take(), nil
	}
	if r := c.resizeRefusal(l, member, res, t); r != nil {
		return c.take(), r
	}
	q := l.qvec()
	c.setMember(l, member, res, t)
	if l.held {
		c.rebuild(l, t, q)
		c.schedule(l)
	} else {
		// Its memo and plan, and those behind it, assumed the old size.
		l.memoPass, l.planEpoch = 0, 0
		c.renew(l)
		c.released(nil)
		c.needPass = true
	}
	c.advance(t)
	return c.take(), nil
}

// resizable finds a lease whose member may be resized to res.
func (c *Calendar) resizable(id string, member int, res model.Resources) (*lease, error) {
	if res.MilliCPU < 0 || res.Memory < 0 || res.Disk < 0 || res.Bandwidth < 0 {
		return nil, fmt.Errorf("resize lease %s member %d: negative resources: %w", id, member, ErrInvalid)
	}
	l := c.leases[id]
	if l != nil && !l.held && !l.st.Over() {
		if member < 0 || member >= len(l.Members) {
			return nil, fmt.Errorf("resize lease %s: no member %d (it has %d): %w", id, member, len(l.Members), ErrInvalid)
		}
		return l, nil // waiting
	}
	return c.heldMember("resize", id, member)
}

// resizeRefusal says why member of l cannot have res from t, or nil.
func (c *Calendar) resizeRefusal(l *lease, member int, res model.Resources, t int64) *Refusal {
	oldV, newV := l.groupVec(member), vecOf(res)
	delta := newV.sub(oldV)
	if !l.held {
		in := l.Lease
		in.Members = slices.Clone(in.Members)
		in.Members[member].Resources = res
		if sr := c.checkStatic(c.newLease(in, l.arrival)); sr != nil {
			return &Refusal{Lease: l.ID, Reason: ReasonResize, Member: member, Resource: sr.Resource,
				Detail: strings.TrimPrefix(sr.Error(), "lease "+l.ID+" refused: ")}
		}
		if r := c.growthRefusal(l, delta, t, t); r != nil {
			r.Reason, r.Member = ReasonResize, member
			return r
		}
		return nil
	}
	w0, h := max(t, l.holdFrom), l.hosts[member]
	grows := positive(delta)
	if grows == (vec{}) {
		return nil // shrinking (or not growing anything)
	}
	// Only the resources that grow must fit: a host whose capacity was
	// lowered under its holds still lets a member shrink the others.
	lim := h.cap
	for d := range delta {
		if delta[d] <= 0 {
			lim[d] = unlimited
		}
	}
	if x, over := h.tl.firstOver(w0, l.to, delta, lim); over {
		r := &Refusal{Lease: l.ID, Reason: ReasonResize, Member: member, Host: h.Name, From: tm(w0), To: tm(l.to), Members: 1}
		var only vec
		for d := range delta {
			if delta[d] > 0 {
				only[d] = newV[d]
			}
		}
		r.Resource, r.Requested, r.Free = shortDim(oldV.add(h.cap.sub(h.tl.max(w0, l.to))), only)
		c.noteHost(r, h)
		r.Blocking = holders(h, l, x, l.to)
		if b, from := inTheWay(h, l, x); b != nil {
			r.InTheWay, r.InTheWayKind, r.InTheWayFrom = b.l.ID, b.l.Kind, tm(from)
		}
		r.MaxNow = c.maxNow(l, member, w0, t)
		return r
	}
	if r := c.growthRefusal(l, delta, w0, t); r != nil {
		r.Reason, r.Member, r.MaxNow = ReasonResize, member, c.maxNow(l, member, w0, t)
		return r
	}
	return nil
}

// inTheWay is the hold on h, not l's, that makes it too full at x: a
// reservation's if one holds h then, else the one that began last. It
// returns the hold's allocation and when the lease's hold of h began
// (heldSince).
func inTheWay(h *host, l *lease, x int64) (*alloc, int64) {
	var best *alloc
	var bestFrom int64
	for _, a := range h.allocs {
		if a.l == l || a.from > x || x >= a.to {
			continue
		}
		from := heldSince(a)
		if best == nil || (a.l.Kind == Reservation) != (best.l.Kind == Reservation) && a.l.Kind == Reservation ||
			(a.l.Kind == Reservation) == (best.l.Kind == Reservation) && (from > bestFrom || from == bestFrom && a.l.ID < best.l.ID) {
			best, bestFrom = a, from
		}
	}
	return best, bestFrom
}

// heldSince is when a's lease began to hold a's host without a break:
// the start of a's chart segment, or of the segments it continues on the
// same host (a resize splits a hold's segment, a move ends it on one
// host and begins one on another). The chart, unlike the allocation,
// is what a restored calendar has too: a restored allocation begins
// with its hold, even where its lease came to the host later (moved).
func heldSince(a *alloc) int64 {
	l := a.l
	i := slices.Index(l.allocs, a)
	k := len(l.segs) - len(l.allocs)
	if i < 0 || k < 0 || l.segs[k+i].h != a.h {
		return a.from // a booked resume's: no segment yet
	}
	j := k + i
	for l.segs[j].cont {
		p := j - 1
		for ; p >= 0 && !(l.segs[p].h == a.h && l.segs[p].to == l.segs[j].from); p-- {
		}
		if p < 0 {
			break
		}
		j = p
	}
	return l.segs[j].from
}

// growthRefusal says why l may not grow by delta from w0 (held) or when
// placed (waiting), given its project's quotas: the concurrent ones over
// the rest of its hold, the core-hours for the rest of its run; nil if it
// may. The caller sets the refusal's reason.
func (c *Calendar) growthRefusal(l *lease, delta vec, w0, t int64) *Refusal {
	p := c.project(l.Project)
	grow := positive(delta)
	if p.quota == nil || grow == (vec{}) {
		return nil
	}
	if l.held {
		if x, over := p.qtl.firstOver(w0, l.to, grow, p.limit); over {
			m := p.qtl.at(x).add(grow)
			for d := range m {
				if m[d] > p.limit[d] {
					return &Refusal{Lease: l.ID, Resource: dimNames[d], Requested: float64(m[d]), Free: float64(p.limit[d]),
						From: tm(w0), To: tm(l.to), Detail: fmt.Sprintf("project quota: %s: project %s would hold %s of %s at %s",
							dimNames[d], l.Project, amount(dimNames[d], float64(m[d])), amount(dimNames[d], float64(p.limit[d])), fmtT(tm(x)))}
				}
			}
		}
	}
	if dcpu := delta[dCPU]; dcpu > 0 && p.quota.CoreHours > 0 {
		cost := coreSeconds(dcpu, c.runLeft(l, t)) / 3600
		left := p.quota.CoreHours - p.charged/3600
		if cost > left+1e-9 {
			return &Refusal{Lease: l.ID, Resource: "core-hours", Requested: cost, Free: left,
				Detail: fmt.Sprintf("project quota: core-hours: %s more for the rest of its run needs %.2f, project %s has %.2f of %.2f left",
					amount("cpu", float64(dcpu)), cost, l.Project, math.Max(left, 0), p.quota.CoreHours)}
		}
	}
	return nil
}

// maxNow is the largest size member of l (held) could have from w0 to
// the end of its hold on its host, within its project's quotas.
func (c *Calendar) maxNow(l *lease, member int, w0, t int64) model.Resources {
	old := l.groupVec(member)
	h := l.hosts[member]
	m := old.add(positive(h.cap.sub(h.tl.max(w0, l.to))))
	if p := c.project(l.Project); p.quota != nil {
		q := old.add(positive(p.limit.sub(p.qtl.max(w0, l.to))))
		for d := range m {
			m[d] = min(m[d], q[d])
		}
		if run := c.runLeft(l, t); p.quota.CoreHours > 0 && run > 0 {
			left := math.Max(p.quota.CoreHours*3600-p.charged, 0) // core-seconds
			more := left * 1000 / (float64(run) / 1e9)
			m[dCPU] = min(m[dCPU], old[dCPU]+int64(math.Min(more, float64(unlimited))))
		}
	}
	return model.Resources{MilliCPU: m[dCPU], Memory: model.ByteSize(m[dMem]), Disk: model.ByteSize(m[dDisk]), Bandwidth: model.ByteSize(m[dBW])}
}

// runLeft is the run time l still has from t on (its whole remaining run
// if it waits).
func (c *Calendar) runLeft(l *lease, t int64) int64 {
	if !l.held {
		return l.remaining
	}
	return max(l.T+l.remaining-max(t, l.T), 0)
}

// setMember gives member i of l the resources res from t: its project's
// core-hours are charged (or refunded) for the rest of its run, its
// fair-share usage counts the new cores from t, and what it ran before is
// remembered at the old size. The caller rebuilds its slots.
func (c *Calendar) setMember(l *lease, i int, res model.Resources, t int64) {
	c.mark(l)
	if dcpu := res.MilliCPU - l.Members[i].Resources.MilliCPU; dcpu != 0 {
		p := c.project(l.Project)
		left := c.runLeft(l, t)
		charged := max(l.charged+coreSeconds(dcpu, left), 0)
		p.charged += charged - l.charged
		l.charged = charged
		l.usedAdj += coreSeconds(-dcpu, l.run-left)
		if l.holding {
			c.accrue(p, t)
			p.runMilli += dcpu
		}
		c.markProject(p)
	}
	if l.sharedMembers {
		l.Members, l.sharedMembers = slices.Clone(l.Members), false
	}
	l.Members[i].Resources = res
	l.regroup()
	l.preVer = 0
}

// ResizeTarget returns the best other host to which member of a held
// lease could move at the size res for the rest of its hold (from now, or
// from the start of a hold that has not begun), for a resize with
// migration (BeginMove with res): one that is live, not cordoned, has the
// member's labels and room for res given every committed hold, ranked by
// the placement policy. It changes nothing. If there is none, or the
// project's quotas do not allow the growth, the error is a *Refusal
// (ReasonResize) naming the host that came closest, its short resource
// and holders, or the quota; other errors are Resize's.
func (c *Calendar) ResizeTarget(id string, member int, res model.Resources, now time.Time) (string, error) {
	t := max(tick(now), c.now)
	l, err := c.resizable(id, member, res)
	if err != nil {
		return "", err
	}
	if !l.held {
		return "", fmt.Errorf("resize target of lease %s: it holds no slots (%s): %w", id, l.st, ErrInvalid)
	}
	w0, cur, v := max(t, l.holdFrom), l.hosts[member], vecOf(res)
	if r := c.growthRefusal(l, v.sub(l.groupVec(member)), w0, t); r != nil {
		r.Reason, r.Member = ReasonResize, member
		return "", r
	}
	m := l.Members[member]
	g := group{labels: m.Labels, key: labelKey(m.Labels)}
	var best *host
	bestFrac := -1.0
	for _, h := range c.ranked(c.eligible(&g), w0) {
		if h == cur {
			continue
		}
		free := h.cap.sub(h.tl.max(w0, l.to))
		if v.le(free) {
			return h.Name, nil
		}
		if f := fitFraction(free, v); f > bestFrac {
			best, bestFrac = h, f
		}
	}
	r := &Refusal{Lease: id, Reason: ReasonResize, Member: member, From: tm(w0), To: tm(l.to), Members: 1,
		Detail: fmt.Sprintf("no other host with its labels has room for it until the end of its hold (%s)", fmtT(tm(l.to)))}
	if best != nil {
		r.Host = best.Name
		r.Resource, r.Requested, r.Free = shortDim(best.cap.sub(best.tl.max(w0, l.to)), v)
		c.noteHost(r, best)
		r.Blocking = holders(best, l, w0, l.to)
	}
	return "", r
}

// memberError explains a refused move or resize.
func (r *Refusal) memberError() string {
	var b strings.Builder
	if r.Reason == ReasonMove {
		fmt.Fprintf(&b, "lease %s: move of member %d to host %s refused: ", r.Lease, r.Member, r.Host)
	} else {
		fmt.Fprintf(&b, "lease %s: resize of member %d refused: ", r.Lease, r.Member)
	}
	if r.Host != "" && r.Resource != "" && r.Resource != "core-hours" && !strings.HasPrefix(r.Detail, "project quota") {
		fmt.Fprintf(&b, "%s requested %s, at most %s ", r.Resource, amount(r.Resource, r.Requested), amount(r.Resource, r.Free))
		if r.Reason == ReasonResize && r.InTheWay != "" {
			fmt.Fprintf(&b, "possible on host %s in [%s, %s) (%s %s holds it from %s)", r.Host, fmtT(r.From), fmtT(r.To),
				r.InTheWayKind, r.InTheWay, fmtT(r.InTheWayFrom))
		} else {
			fmt.Fprintf(&b, "free on host %s in [%s, %s)", r.Host, fmtT(r.From), fmtT(r.To))
			if len(r.Blocking) > 0 {
				fmt.Fprintf(&b, " (held by %s)", strings.Join(r.Blocking, ", "))
			}
		}
		b.WriteString(r.overcommitNote())
		if r.Detail != "" {
			b.WriteString("; " + r.Detail)
		}
	} else {
		b.WriteString(r.Detail)
	}
	switch {
	case r.Reason == ReasonMove && r.Resource != "" && !r.EarliestFit.IsZero():
		fmt.Fprintf(&b, "; room there from %s", fmtT(r.EarliestFit))
	case r.Reason == ReasonMove && r.Resource != "" && r.Detail == "":
		b.WriteString("; no room there before the hold ends")
	}
	if r.MaxNow != (model.Resources{}) {
		fmt.Fprintf(&b, "; largest size possible now: %s", fmtResources(r.MaxNow))
	}
	return b.String()
}

// fmtResources prints a size for people.
func fmtResources(r model.Resources) string {
	parts := []string{amount("cpu", float64(r.MilliCPU)), r.Memory.Human() + " memory"}
	if r.Disk > 0 && r.Disk < model.ByteSize(unlimited) {
		parts = append(parts, r.Disk.Human()+" disk")
	}
	if r.Bandwidth > 0 && r.Bandwidth < model.ByteSize(unlimited) {
		parts = append(parts, (model.BitRate(r.Bandwidth)*8).String()+" bandwidth")
	}
	return strings.Join(parts, ", ")
}
