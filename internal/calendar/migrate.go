package calendar

// Moving a held lease's member to another host (live migration): begun by
// the caller (BeginMove, EndMove, Move), or decided by the calendar to
// make room for an admission instead of suspending a best-effort lease
// (Policy.Migrate, ActMigrate).
//
// A move in progress is part of the hold: the member keeps its slots on
// its host (its "source") and holds slots on the destination from the
// move's start to the end of the hold. The hold's allocations are then
// what desiredAllocs lists: one per host for the members that do not
// move, then a source and a destination allocation per move. Whenever the
// hold changes shape (a move begins or ends, a member is resized), rebuild
// brings the slot tables from now on to what desiredAllocs says, so that a
// calendar restored from the records, which builds the same list, has the
// same tables.

import (
	"fmt"
	"slices"
	"time"

	"vgrid/internal/model"
)

// move is a member of a held lease moving to another host.
type move struct {
	member int
	to     *host
	res    *model.Resources // the member's size on to; nil: unchanged
	start  int64            // to is held from here to the end of the hold
	// A move the calendar decided (auto) gives up its source slots at
	// srcTo, which are promised to lease by (cause of ActMigrate "making
	// room for by"); dur is the migration time it allows, sent says that
	// ActMigrate was given out. A move the caller began keeps its source
	// slots until EndMove.
	auto  bool
	srcTo int64
	by    string
	dur   int64
	sent  bool
}

// vec is the member's size on the destination.
func (mv *move) vec(l *lease) vec {
	if mv.res != nil {
		return vecOf(*mv.res)
	}
	return l.groupVec(mv.member)
}

// moveOf returns the move of member i in progress, if any.
func (l *lease) moveOf(i int) *move {
	for _, mv := range l.moves {
		if mv.member == i {
			return mv
		}
	}
	return nil
}

// dropMove forgets mv (not its slots: rebuild does that).
func (l *lease) dropMove(mv *move) {
	l.moves = slices.DeleteFunc(slices.Clone(l.moves), func(x *move) bool { return x == mv })
	if len(l.moves) == 0 {
		l.moves = nil
	}
}

// qvec is what the lease counts against its project's concurrent quotas
// from now on: its members, and the growth of members moving to a larger
// size (counted from the move's start, so that the quota is not promised
// twice).
func (l *lease) qvec() vec {
	q := l.total
	for _, mv := range l.moves {
		if mv.res != nil {
			q = q.add(positive(mv.vec(l).sub(l.groupVec(mv.member))))
		}
	}
	return q
}

// positive keeps the positive amounts of v.
func positive(v vec) vec {
	for d := range v {
		v[d] = max(v[d], 0)
	}
	return v
}

// desiredAllocs lists the allocations of l's current hold: the members
// that do not move, summed by host in order of first appearance (as
// perHost, which it equals without moves), then for each move its source
// and its destination. For a destination, ovEnd is when the migration is
// planned to be done (for the chart); 0 otherwise.
func (c *Calendar) desiredAllocs(l *lease) (as []*alloc, ovEnd []int64) {
	at := map[*host]int{}
	for i, h := range l.hosts {
		if l.moveOf(i) != nil {
			continue
		}
		if k, ok := at[h]; ok {
			as[k].v = as[k].v.add(l.groupVec(i))
			continue
		}
		at[h] = len(as)
		as = append(as, &alloc{l: l, h: h, v: l.groupVec(i), from: l.holdFrom, to: l.to})
		ovEnd = append(ovEnd, 0)
	}
	for _, mv := range l.moves {
		srcTo := l.to
		if mv.auto {
			srcTo = min(max(mv.srcTo, l.holdFrom), l.to)
		}
		start := min(max(mv.start, l.holdFrom), l.to)
		as = append(as, &alloc{l: l, h: l.hosts[mv.member], v: l.groupVec(mv.member), from: l.holdFrom, to: srcTo},
			&alloc{l: l, h: mv.to, v: mv.vec(l), from: start, to: l.to})
		ovEnd = append(ovEnd, 0, min(start+mv.dur, l.to))
	}
	return as, ovEnd
}

// rebuild brings l's allocations, from t on, to what desiredAllocs says
// after its hold changed shape (oldQ is what it counted against its
// project's quotas before). Allocations that stay the same keep their
// chart segment; the others' segments end at t and new ones begin.
func (c *Calendar) rebuild(l *lease, t int64, oldQ vec) {
	c.mark(l)
	if p := c.project(l.Project); p.quota != nil {
		if d := l.qvec().sub(oldQ); d != (vec{}) {
			p.qtl.add(max(t, l.holdFrom), l.to, d)
		}
	}
	k := len(l.segs) - len(l.allocs)
	old := l.segs[k:]
	want, ovEnd := c.desiredAllocs(l)
	same := func(a, b *alloc) bool {
		return a.h == b.h && a.v == b.v && a.to == b.to && max(a.from, t) == max(b.from, t)
	}
	kept := make([]bool, len(l.allocs))
	allocs := make([]*alloc, len(want))
	tail := make([]seg, len(want))
	for j, w := range want {
		for i, a := range l.allocs {
			if !kept[i] && same(a, w) {
				kept[i] = true
				allocs[j], tail[j] = a, old[i]
				break
			}
		}
	}
	segs := slices.Clone(l.segs[:k])
	var touched []*host
	taken := false
	for i, a := range l.allocs {
		if kept[i] {
			continue
		}
		if s := max(t, a.from); s < a.to {
			a.h.tl.add(s, a.to, vec{}.sub(a.v))
			c.released(a.h)
		}
		a.h.allocs = removeAlloc(a.h.allocs, a)
		touched = append(touched, a.h)
		if s := old[i]; closeSeg(&s, t) {
			segs = append(segs, s)
		}
	}
	for j, w := range want {
		if allocs[j] != nil {
			continue
		}
		s := max(t, w.from)
		if s < w.to {
			w.h.tl.add(s, w.to, w.v)
			taken = true
		}
		if w.to > c.now {
			w.h.allocs = append(w.h.allocs, w)
		}
		touched = append(touched, w.h)
		allocs[j], tail[j] = w, c.segOf(l, w, s, ovEnd[j])
	}
	l.allocs = allocs
	l.segs = append(segs, tail...)
	for _, h := range touched {
		c.touch(h)
	}
	if taken {
		c.commits++
	}
	c.needPass = true
}

// segOf is the chart segment of a new allocation a of l from s; a
// destination's migration, until ovEnd, is drawn as overhead.
func (c *Calendar) segOf(l *lease, a *alloc, s, ovEnd int64) seg {
	clamp := func(x int64) int64 { return min(max(x, s), max(a.to, s)) }
	sg := seg{h: a.h, from: s, ovFrom: clamp(l.T - l.pre), runFrom: clamp(l.T), to: max(a.to, s), cont: true}
	if ovEnd > 0 {
		// (Moved while it still boots: its run begins with the others'.)
		sg.ovFrom, sg.runFrom = s, clamp(max(ovEnd, l.T))
	}
	sg.runTo = min(max(l.runTo, sg.runFrom), sg.to)
	return sg
}

// closeSeg ends a chart segment at t; false if nothing is left of it.
func closeSeg(s *seg, t int64) bool {
	if s.to > t {
		s.to = max(t, s.from)
	}
	s.runTo = min(s.runTo, s.to)
	s.runFrom = min(s.runFrom, s.to)
	s.ovFrom = min(s.ovFrom, s.to)
	return s.to > s.from
}

// migrateRate is h's live migration rate, bytes/s.
func migrateRate(h *host) int64 {
	if h.MigrateRate > 0 {
		return h.MigrateRate
	}
	return DefaultMigrateRate
}

// migrateTime is how long moving mem bytes of guest memory from a to b
// takes: MigrateSetup plus the transfer at the slower host's rate, in whole
// seconds rounded up.
func migrateTime(mem int64, a, b *host) int64 {
	return int64(MigrateSetup) + xfer(mem, min(migrateRate(a), migrateRate(b)))
}

// SetHostMigrateRate changes what the calendar knows of a live host's
// live migration rate (bytes/s; 0: unknown, DefaultMigrateRate), as the
// host measured it. Only migrations planned afterwards use it. An
// unknown (or removed) host is an error wrapping ErrNotFound; a negative
// rate one wrapping ErrInvalid.
func (c *Calendar) SetHostMigrateRate(name string, rate int64, now time.Time) error {
	c.clamp(now)
	h := c.byName[name]
	switch {
	case h == nil:
		return fmt.Errorf("set host migrate rate %s: %w", name, ErrNotFound)
	case rate < 0:
		return fmt.Errorf("set host migrate rate %s: negative rate %d: %w", name, rate, ErrInvalid)
	}
	h.MigrateRate = rate
	return nil
}

// BeginMove starts moving member (its index in the lease's members) of
// a held lease to host to, resized to res if res is not nil: from now on
// (or from the start of a hold that has not begun) the member holds slots
// on to until the end of the hold as well as on its own host, until
// EndMove says how the move ended. The caller carries the move out (a
// live migration).
//
// Host to must be live, not cordoned, have the member's labels and room
// for it (at its new size) over the rest of the hold given every
// committed hold (nothing is preempted for it), and a larger size must be
// within the project's quotas; if not, the error is a *Refusal
// (ReasonMove) naming the short resource, the host, the leases holding it
// and when it frees up (EarliestFit), or the quota. A refusal changes
// nothing.
//
// An unknown lease is an error wrapping ErrNotFound, an unknown (or
// removed) host one wrapping ErrUnknownHost (and ErrNotFound); a lease
// that is over one wrapping ErrFinished; one that holds no slots, is to be
// suspended or requeued, or whose member is already moving or already on
// to, one wrapping ErrInvalid. It advances the calendar to now and
// returns what is due.
func (c *Calendar) BeginMove(id string, member int, to string, res *model.Resources, now time.Time) ([]Action, error) {
	c.rev++ // see Revision
	t := c.clamp(now)
	c.advance(t)
	l, mv, err := c.checkMove(id, member, to, res, t)
	if err != nil {
		return c.take(), err
	}
	q := l.qvec()
	l.moves = append(l.moves, mv)
	c.rebuild(l, t, q)
	c.schedule(l)
	c.advance(t)
	return c.take(), nil
}

// checkMove says whether member of lease id may begin a move to host to
// at t, and returns the move.
func (c *Calendar) checkMove(id string, member int, to string, res *model.Resources, t int64) (*lease, *move, error) {
	l, err := c.heldMember("move", id, member)
	if err != nil {
		return nil, nil, err
	}
	d := c.byName[to]
	switch {
	case d == nil:
		return nil, nil, fmt.Errorf("move lease %s member %d to %s: %w", id, member, to, ErrUnknownHost)
	case d == l.hosts[member]:
		return nil, nil, fmt.Errorf("move lease %s member %d: it is on %s already: %w", id, member, to, ErrInvalid)
	case res != nil && (res.MilliCPU < 0 || res.Memory < 0 || res.Disk < 0 || res.Bandwidth < 0):
		return nil, nil, fmt.Errorf("move lease %s member %d: negative resources: %w", id, member, ErrInvalid)
	}
	w0 := max(t, l.holdFrom)
	mv := &move{member: member, to: d, res: res, start: w0}
	r := &Refusal{Lease: id, Reason: ReasonMove, Host: to, From: tm(w0), To: tm(l.to), Members: 1}
	m := l.Members[member]
	switch {
	case !matches(d, m.Labels):
		r.Detail = fmt.Sprintf("host %s does not have the member's labels %s", to, labelKey(m.Labels))
		return nil, nil, r
	case d.Cordoned:
		r.Detail = fmt.Sprintf("host %s is cordoned", to)
		return nil, nil, r
	}
	v := mv.vec(l)
	if _, over := d.tl.firstOver(w0, l.to, v, d.cap); over {
		r.Resource, r.Requested, r.Free = shortDim(d.cap.sub(d.tl.max(w0, l.to)), v)
		c.noteHost(r, d)
		r.Blocking = holders(d, l, w0, l.to)
		if at, ok := fitsFrom(d, w0, l.to, v); ok {
			r.EarliestFit = tm(at)
		}
		return nil, nil, r
	}
	if res != nil {
		if q := c.growthRefusal(l, vecOf(*res).sub(l.groupVec(member)), w0, t); q != nil {
			q.Reason, q.Host = ReasonMove, to
			return nil, nil, q
		}
	}
	return l, mv, nil
}

// heldMember finds a lease that holds slots and may move or resize
// member now.
func (c *Calendar) heldMember(what, id string, member int) (*lease, error) {
	l := c.leases[id]
	switch {
	case l == nil:
		return nil, fmt.Errorf("%s lease %s: %w", what, id, ErrNotFound)
	case l.st.Over():
		return nil, fmt.Errorf("%s lease %s: it is %s: %w", what, id, l.st, ErrFinished)
	case member < 0 || member >= len(l.Members):
		return nil, fmt.Errorf("%s lease %s: no member %d (it has %d): %w", what, id, member, len(l.Members), ErrInvalid)
	case !l.held:
		return nil, fmt.Errorf("%s lease %s: it holds no slots (%s): %w", what, id, l.st, ErrInvalid)
	case l.fate != fateEnd:
		return nil, fmt.Errorf("%s lease %s: it is to be %sed at %s: %w", what, id, fateNames[l.fate], fmtT(tm(l.runTo)), ErrInvalid)
	case l.stopped:
		return nil, fmt.Errorf("%s lease %s: its run ended at %s and it is shutting down: %w", what, id, fmtT(tm(l.runTo)), ErrInvalid)
	case l.moveOf(member) != nil:
		return nil, fmt.Errorf("%s lease %s: member %d is moving to %s already: %w", what, id, member, l.moveOf(member).to.Name, ErrInvalid)
	}
	return l, nil
}

// holders names the leases other than l holding h over [from, to).
func holders(h *host, l *lease, from, to int64) []string {
	var out []string
	for _, a := range h.allocs {
		if a.l != l && a.from < to && a.to > from && !slices.Contains(out, a.l.ID) {
			out = append(out, a.l.ID)
		}
	}
	slices.Sort(out)
	return out
}

// fitsFrom is the earliest time in [from, to) from which v fits on h
// until to; false if it never does.
func fitsFrom(h *host, from, to int64, v vec) (int64, bool) {
	i := h.tl.idx(from)
	var cur vec
	if i >= 0 {
		cur = h.tl.pts[i].v
	}
	at, ok := from, cur.add(v).le(h.cap)
	for k := i + 1; k < len(h.tl.pts) && h.tl.pts[k].t < to; k++ {
		switch fits := h.tl.pts[k].v.add(v).le(h.cap); {
		case !fits:
			ok = false
		case !ok:
			at, ok = h.tl.pts[k].t, true
		}
	}
	return at, ok
}

// EndMove ends the move of member of lease id at now. ok says the member
// is on the destination now: from now on it holds slots there only (at
// its new size, if the move resized it) and its source slots are free.
// !ok says it stayed where it was: its destination slots are free. A move
// the calendar decided (ActMigrate) whose source slots are promised to
// another lease cannot simply stay: the lease is then displaced as a
// preemption would (suspended if it can be saved before the slots are
// needed, else requeued), and the actions say so.
//
// A member that is not moving, or whose migration the calendar has not
// given out yet, is an error wrapping ErrInvalid (a lease that ended
// meanwhile has no move left); an unknown lease one wrapping ErrNotFound.
// It advances the calendar to now and returns what is due.
func (c *Calendar) EndMove(id string, member int, ok bool, now time.Time) ([]Action, error) {
	c.rev++ // see Revision
	t := c.clamp(now)
	c.advance(t)
	l := c.leases[id]
	if l == nil {
		return c.take(), fmt.Errorf("end move of lease %s: %w", id, ErrNotFound)
	}
	mv := l.moveOf(member)
	switch {
	case mv == nil:
		return c.take(), fmt.Errorf("end move of lease %s member %d: no move in progress (%s): %w", id, member, l.st, ErrInvalid)
	case mv.auto && !mv.sent:
		return c.take(), fmt.Errorf("end move of lease %s member %d: its migration begins at %s: %w", id, member, fmtT(tm(mv.start)), ErrInvalid)
	}
	q := l.qvec()
	switch {
	case ok:
		l.dropMove(mv)
		hosts := slices.Clone(l.hosts)
		hosts[member] = mv.to
		l.hosts = hosts
		if mv.res != nil {
			c.setMember(l, member, *mv.res, t)
		}
		c.rebuild(l, t, q)
		c.movedBy(l, mv.to, t)
		c.schedule(l)
	case mv.auto:
		c.migrationFailed(l, t)
	default:
		l.dropMove(mv)
		c.rebuild(l, t, q)
		c.schedule(l)
	}
	c.advance(t)
	return c.take(), nil
}

// movedBy ends the move overhead of l's chart segment on host to at t,
// when a move there ended sooner than planned: the guest runs there from
// t, not from the end the move was given, or from its run's start if it
// was moved while it still booted. A segment another move of l still
// goes to keeps its overhead.
func (c *Calendar) movedBy(l *lease, to *host, t int64) {
	for _, mv := range l.moves {
		if mv.to == to {
			return
		}
	}
	from := max(t, l.T)
	k := len(l.segs) - len(l.allocs)
	for j, a := range l.allocs {
		if s := &l.segs[k+j]; a.h == to && s.runFrom > from {
			s.runFrom = max(from, s.from)
			s.runTo = min(max(l.runTo, s.runFrom), s.to)
		}
	}
}

// Move is BeginMove and EndMove(ok) at once: the member is on host to
// from now (for a caller that moves it in no time, such as a simulator).
func (c *Calendar) Move(id string, member int, to string, res *model.Resources, now time.Time) ([]Action, error) {
	c.rev++ // see Revision
	acts, err := c.BeginMove(id, member, to, res, now)
	if err != nil {
		return acts, err
	}
	more, err := c.EndMove(id, member, true, now)
	return append(acts, more...), err
}

// migrationFailed displaces l at t, one of whose calendar-decided
// migrations failed, as a preemption would: all of l must be off its
// hosts by the first time its moves' source slots are promised.
func (c *Calendar) migrationFailed(l *lease, t int64) {
	dl, by := int64(0), ""
	for _, mv := range l.moves {
		if mv.auto && (by == "" || mv.srcTo < dl) {
			dl, by = mv.srcTo, mv.by
		}
	}
	v := victim{l: l, kind: ActRequeue, at: max(dl, t), rel: max(dl, t)}
	if x := dl - c.suspendTime(l); c.maySuspend(l) && l.Preempt == PreemptSuspend && l.started && l.T <= t && x >= t {
		v = victim{l: l, kind: ActSuspend, at: x, rel: dl}
	}
	c.cut(l, v.rel)
	q := l.qvec()
	l.moves = nil
	c.rebuild(l, t, q)
	c.displace(v, "preempted by "+by)
}

// migrateVictim moves, instead of displacing it, the victim x of
// admission adm, made at t, off the hosts adm needs (x.on): each of its
// members there goes to another host that can hold it from the start of
// its migration to the end of its hold, the migration (ActMigrate)
// beginning so that it is done when adm needs the slots. False, changing
// nothing, if that is not possible for every such member or not allowed:
// only running best-effort leases migrate, under Policy.Migrate.
func (c *Calendar) migrateVictim(adm *lease, x *victim, t int64) bool {
	v := x.l
	if !c.pol.Migrate || !v.started || v.resume && v.T > t || v.fate != fateEnd || len(v.moves) > 0 || len(x.on) == 0 {
		return false
	}
	rel := x.rel
	var plan []*move
	pending := map[*host]vec{}
	for i, h := range v.hosts {
		if !slices.Contains(x.on, h) {
			continue
		}
		m := v.Members[i]
		g := group{labels: m.Labels, key: labelKey(m.Labels)}
		vm := v.groupVec(i)
		var mv *move
		for _, d := range c.ranked(c.eligible(&g), rel) {
			if d == h || slices.Contains(x.on, d) {
				continue
			}
			dur := migrateTime(int64(m.Resources.Memory), h, d)
			start := rel - dur
			if start < t || start >= v.to || !d.tl.max(start, v.to).add(pending[d]).add(vm).le(d.cap) {
				continue
			}
			mv = &move{member: i, to: d, start: start, auto: true, srcTo: rel, by: adm.ID, dur: dur}
			break
		}
		if mv == nil {
			return false
		}
		pending[mv.to] = pending[mv.to].add(vm)
		plan = append(plan, mv)
	}
	if len(plan) == 0 {
		return false
	}
	q := v.qvec()
	v.moves = append(v.moves, plan...)
	c.rebuild(v, t, q)
	c.schedule(v)
	x.kind, x.at = ActMigrate, plan[0].start
	for _, mv := range plan {
		x.at = min(x.at, mv.start)
	}
	return true
}

// emitMigrations gives out the calendar-decided migrations of l due at at.
func (c *Calendar) emitMigrations(l *lease, at int64) {
	for _, mv := range l.moves {
		if mv.auto && !mv.sent && mv.start <= at {
			mv.sent = true
			c.actions = append(c.actions, Action{At: tm(at), Kind: ActMigrate, Lease: l.ID, Hosts: names(l.hosts),
				Reason: "making room for " + mv.by, Member: mv.member, From: l.hosts[mv.member].Name, To: mv.to.Name,
				Duration: time.Duration(mv.dur)})
		}
	}
}

// dropMovesOn ends the moves of l that involve host h, which is going
// away, at t: a calendar-decided migration to it fails (the lease is
// displaced); other moves to or from it are dropped (a member moving off
// it stays there, with the host's other holds).
func (c *Calendar) dropMovesOn(l *lease, h *host, t int64) {
	for _, mv := range l.moves {
		if mv.auto && mv.to == h {
			c.migrationFailed(l, t)
			return
		}
	}
	q := l.qvec()
	n := len(l.moves)
	for _, mv := range slices.Clone(l.moves) {
		if mv.to == h || l.hosts[mv.member] == h {
			l.dropMove(mv)
		}
	}
	if len(l.moves) != n {
		c.rebuild(l, t, q)
		c.schedule(l)
	}
}

// movesRecord is the durable form of l's moves.
func movesRecord(l *lease) []model.LeaseMove {
	var out []model.LeaseMove
	for _, mv := range l.moves {
		r := model.LeaseMove{Member: mv.member, To: mv.to.Name, Start: tm(mv.start)}
		if mv.res != nil {
			res := *mv.res
			r.Resources = &res
		}
		if mv.auto {
			r.SourceUntil, r.Cause, r.Duration, r.Sent = tm(mv.srcTo), mv.by, model.Duration(mv.dur), mv.sent
		}
		out = append(out, r)
	}
	return out
}

// restoreMoves rebuilds l's moves from its hold's record.
func (c *Calendar) restoreMoves(l *lease, rs []model.LeaseMove) error {
	for _, r := range rs {
		to := c.all[r.To]
		switch {
		case r.Member < 0 || r.Member >= len(l.Members):
			return fmt.Errorf("move of member %d of %d: %w", r.Member, len(l.Members), ErrInvalid)
		case to == nil:
			return fmt.Errorf("move to unknown host %q: %w", r.To, ErrInvalid)
		case to == l.hosts[r.Member] || l.moveOf(r.Member) != nil:
			return fmt.Errorf("move of member %d to %s: already there or moving: %w", r.Member, r.To, ErrInvalid)
		case r.Resources != nil && (r.Resources.MilliCPU < 0 || r.Resources.Memory < 0 || r.Resources.Disk < 0 || r.Resources.Bandwidth < 0):
			return fmt.Errorf("move of member %d: negative resources: %w", r.Member, ErrInvalid)
		case r.Duration < 0:
			return fmt.Errorf("move of member %d: negative duration: %w", r.Member, ErrInvalid)
		}
		mv := &move{member: r.Member, to: to, start: tick(r.Start), auto: !r.SourceUntil.IsZero()}
		if r.Resources != nil {
			res := *r.Resources
			mv.res = &res
		}
		if mv.auto {
			mv.srcTo, mv.by, mv.dur, mv.sent = tick(r.SourceUntil), r.Cause, int64(r.Duration), r.Sent
		}
		l.moves = append(l.moves, mv)
	}
	return nil
}
