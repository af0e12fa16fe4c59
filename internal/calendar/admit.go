package calendar

import (
	"fmt"
	"math"
	"sort"
	"strings"
	"time"

	"vgrid/internal/model"
)

// Submit admits a lease at now or refuses it. Best-effort leases are queued
// (they start at a later Advance); the other kinds get their slots now or a
// *Refusal saying why not. A malformed lease is an error wrapping
// ErrInvalid; a known ID one wrapping ErrExists.
func (c *Calendar) Submit(in Lease, now time.Time) (_ Admission, err error) {
	defer func() {
		if err == nil {
			c.rev++ // see Revision
		}
	}()
	t := c.clamp(now)
	if err := validate(&in); err != nil {
		return Admission{}, fmt.Errorf("submit lease %s: %w", in.ID, err)
	}
	if old := c.leases[in.ID]; old != nil && old.st != StateRefused {
		return Admission{}, fmt.Errorf("submit lease %s: %w", in.ID, ErrExists)
	}
	l := c.newLease(in, t)
	c.leases[l.ID] = l
	c.mark(l)
	if r := c.checkStatic(l); r != nil {
		return c.refuse(l, r)
	}
	if r := c.checkCoreHours(l); r != nil {
		return c.refuse(l, r)
	}
	var (
		adm Admission
		r   *Refusal
	)
	switch l.Kind {
	case BestEffort:
		l.st = StateQueued
		c.enqueue(l)
		c.push(t, evArrive, l)
		adm = Admission{Lease: l.ID, State: StateQueued}
	case Immediate:
		adm, r = c.admitImmediate(l, t)
	case Reservation:
		adm, r = c.admitReservation(l, t)
	case Deadline:
		adm, r = c.admitDeadline(l, t)
	}
	if r != nil && (l.Kind == Reservation || l.Kind == Deadline) && (r.Reason == ReasonCapacity || r.Reason == ReasonDeadline) {
		if a, ok, tried := c.admitShifting(l, t); ok {
			adm, r = a, nil
		} else if len(tried) > 0 {
			r.Deadlines = tried
		}
	}
	if r != nil {
		return c.refuse(l, r)
	}
	c.charge(l)
	if l.Kind != BestEffort && c.queued > 0 {
		// Slots taken ahead can move the queue head's backfill plan
		// later, which may let a lease behind it start now.
		c.needPass = true
	}
	return adm, nil
}

func validate(l *Lease) error {
	switch {
	case l.ID == "":
		return fmt.Errorf("empty id: %w", ErrInvalid)
	case len(l.Members) == 0:
		return fmt.Errorf("no members: %w", ErrInvalid)
	case l.Duration <= 0:
		return fmt.Errorf("duration %v, want > 0: %w", l.Duration, ErrInvalid)
	case l.Image.Size < 0:
		return fmt.Errorf("negative image size: %w", ErrInvalid)
	case l.Duration > MaxDuration:
		return fmt.Errorf("duration %v, want at most %v: %w", l.Duration, MaxDuration, ErrInvalid)
	}
	for _, t := range []time.Time{l.Start, l.Deadline, l.Submitted} {
		if !t.IsZero() && !model.LeaseTimeOK(t) {
			return fmt.Errorf("time %s outside %d..%d: %w", fmtT(t), model.MinLeaseTime.Year(), model.MaxLeaseTime.Year(), ErrInvalid)
		}
	}
	switch l.Kind {
	case Immediate, BestEffort:
	case Reservation:
		if l.Start.IsZero() {
			return fmt.Errorf("reservation without a start: %w", ErrInvalid)
		}
	case Deadline:
		if l.Deadline.IsZero() {
			return fmt.Errorf("deadline lease without a deadline: %w", ErrInvalid)
		}
	default:
		return fmt.Errorf("unknown kind %q (want immediate, best-effort, reservation or deadline): %w", l.Kind, ErrInvalid)
	}
	switch l.Preempt {
	case PreemptSuspend, PreemptRequeue, PreemptNever:
	default:
		return fmt.Errorf("unknown preempt %q (want requeue, never or empty): %w", l.Preempt, ErrInvalid)
	}
	for i, m := range l.Members {
		r := m.Resources
		if r.MilliCPU < 0 || r.Memory < 0 || r.Disk < 0 || r.Bandwidth < 0 {
			return fmt.Errorf("member %d: negative resources: %w", i, ErrInvalid)
		}
	}
	return nil
}

func (c *Calendar) newLease(in Lease, t int64) *lease {
	alike := membersAlike(in.Members)
	if alike {
		// A trace's lease of thousands of members: they share one
		// read-only copy (setMember copies it before it writes).
		in.Members = c.alikeMembers(in.Members[0], len(in.Members))
	} else {
		in.Members = append([]Request(nil), in.Members...)
		for i := range in.Members {
			in.Members[i].Labels = cloneLabels(in.Members[i].Labels)
		}
	}
	l := &lease{Lease: in, arrival: t, submitted: t, run: int64(in.Duration), sharedMembers: alike}
	if !in.Submitted.IsZero() {
		l.submitted = tick(in.Submitted)
	}
	l.remaining = l.run
	if alike {
		// regroup's one group, its member list shared too.
		m := in.Members[0]
		v := vecOf(m.Resources)
		for d := range v {
			l.total[d] = v[d] * int64(len(in.Members)) // (the sum of the members)
		}
		l.groups = []group{{v: v, key: labelKey(nil), members: c.memberIndices(len(in.Members)), spread: m.Spread}}
	} else {
		l.regroup()
	}
	return l
}

// membersAlike says whether ms are more than one member, all the same,
// without labels.
func membersAlike(ms []Request) bool {
	if len(ms) < 2 || len(ms[0].Labels) != 0 {
		return false
	}
	m := ms[0]
	for _, x := range ms[1:] {
		if x.Resources != m.Resources || x.Workspace != m.Workspace || x.Spread != m.Spread || len(x.Labels) != 0 {
			return false
		}
	}
	return true
}

// alikeMembers returns n copies of m (without labels) from a read-only
// array kept for m's kind of member, which leases share.
func (c *Calendar) alikeMembers(m Request, n int) []Request {
	m.Labels = nil
	k := alikeKey{m.Resources, m.Workspace, m.Spread}
	ms := c.alike[k]
	if len(ms) < n {
		if c.alike == nil || len(c.alike) >= maxAlike {
			c.alike = map[alikeKey][]Request{} // (older leases keep theirs)
		}
		ms = make([]Request, max(n, 2*len(ms), 64))
		for i := range ms {
			ms[i] = m
		}
		c.alike[k] = ms
	}
	return ms[:n:n]
}

// alikeKey is a member without labels; maxAlike bounds the kinds kept.
type alikeKey struct {
	res       model.Resources
	workspace string
	spread    bool
}

const maxAlike = 16

// memberIndices returns 0, 1, ..., n-1 from a read-only array leases
// share (a group's member list is never written).
func (c *Calendar) memberIndices(n int) []int {
	if len(c.iota) < n {
		c.iota = make([]int, max(n, 2*len(c.iota), 64))
		for i := range c.iota {
			c.iota[i] = i
		}
	}
	return c.iota[:n:n]
}

// regroup groups l's identical members, largest first (greedy placement
// packs big members before small ones fill the gaps), and sums them.
func (l *lease) regroup() {
	in := l.Lease
	l.groups, l.total = nil, vec{}
	type key struct {
		v  vec
		lk string
	}
	var byKey map[key]int
	if len(in.Members) > 1 {
		byKey = map[key]int{}
	}
	prev := -1
	for i, m := range in.Members {
		v := vecOf(m.Resources)
		l.total = l.total.add(v)
		if prev >= 0 && len(m.Labels) == 0 {
			// Most leases repeat one member: the same as the one
			// before, of no labels, is in its group.
			if p := &in.Members[i-1]; len(p.Labels) == 0 && p.Resources == m.Resources && p.Spread == m.Spread {
				l.groups[prev].members = append(l.groups[prev].members, i)
				continue
			}
		}
		lk := labelKey(m.Labels)
		if m.Spread {
			lk += "\x00spread"
		}
		gi, ok := 0, len(l.groups) > 0
		if byKey != nil {
			gi, ok = byKey[key{v, lk}]
		}
		if !ok {
			gi = len(l.groups)
			if byKey != nil {
				byKey[key{v, lk}] = gi
			}
			l.groups = append(l.groups, group{v: v, labels: m.Labels, key: labelKey(m.Labels), spread: m.Spread})
		}
		l.groups[gi].members = append(l.groups[gi].members, i)
		prev = gi
	}
	sort.SliceStable(l.groups, func(i, j int) bool {
		a, b := l.groups[i].v, l.groups[j].v
		if a[dCPU] != b[dCPU] {
			return a[dCPU] > b[dCPU]
		}
		return a[dMem] > b[dMem]
	})
}

// checkStatic refuses leases that could never be placed: labels no host
// has, members larger than every host, or more than the eligible hosts hold
// when empty, or more than the project's quota.
func (c *Calendar) checkStatic(l *lease) *Refusal {
	// Place the members greedily (largest first) on empty hosts, as the
	// placement would.
	var residual map[*host]vec
	if len(l.groups) > 1 {
		residual = map[*host]vec{}
	}
	fit := 0
	for gi := range l.groups {
		g := &l.groups[gi]
		hs := c.eligible(g)
		if len(hs) == 0 {
			return &Refusal{Lease: l.ID, Reason: ReasonConstraint, Detail: g.key, Members: len(l.Members)}
		}
		need := len(g.members)
		for _, h := range hs {
			r := h.cap
			if residual != nil {
				if x, ok := residual[h]; ok {
					r = x
				}
			}
			n := copies(r, g.v, need)
			if residual != nil {
				residual[h] = r.sub(g.v.scale(int64(n)))
			}
			need -= n
			fit += n
			if need == 0 {
				break
			}
		}
		var best *host
		bestFrac := -1.0
		if need > 0 {
			for _, h := range hs {
				if f := fitFraction(h.cap, g.v); f > bestFrac {
					best, bestFrac = h, f
				}
			}
		}
		if need > 0 {
			r := &Refusal{Lease: l.ID, Reason: ReasonTooLarge, Members: len(l.Members), Fit: fit, Host: best.Name}
			r.Resource, r.Requested, r.Free = shortDim(best.cap, g.v)
			c.noteHost(r, best)
			if r.Resource == "disk" {
				r.Volumes = volNames(best)
			}
			if len(l.Members) > 1 {
				// Totals explain it better: all members against all hosts.
				var all vec
				seen := map[*host]bool{}
				for gi := range l.groups {
					for _, h := range c.eligible(&l.groups[gi]) {
						if !seen[h] {
							seen[h] = true
							all = all.add(h.cap)
						}
					}
				}
				r.Host, r.Capacity, r.Overcommit = "", 0, 0
				r.Resource, r.Requested, r.Free = shortDim(all, l.total)
			}
			return r
		}
	}
	p := c.project(l.Project)
	if p.quota != nil {
		for d := range p.limit {
			if l.total[d] > p.limit[d] {
				return &Refusal{Lease: l.ID, Reason: ReasonQuota, Resource: dimNames[d],
					Requested: float64(l.total[d]), Free: float64(p.limit[d]),
					Detail: fmt.Sprintf("%s: lease needs %s, project %s may hold at most %s", dimNames[d],
						amount(dimNames[d], float64(l.total[d])), l.Project, amount(dimNames[d], float64(p.limit[d])))}
			}
		}
	}
	return nil
}

// fitFraction is how much of v fits in free: 1 or more if it fits.
func fitFraction(free, v vec) float64 {
	f := math.Inf(1)
	for d := range v {
		if v[d] > 0 {
			f = math.Min(f, float64(free[d])/float64(v[d]))
		}
	}
	return f
}

// shortDim names the dimension of v that free is shortest of.
func shortDim(free, v vec) (string, float64, float64) {
	bd, bf := -1, math.Inf(1)
	for d := range v {
		if v[d] > 0 && d != dWS {
			if f := float64(free[d]) / float64(v[d]); f < bf {
				bd, bf = d, f
			}
		}
	}
	if bd < 0 {
		return "", 0, 0
	}
	return dimNames[bd], float64(v[bd]), float64(max(free[bd], 0))
}

func coreSeconds(milli, ns int64) float64 { return float64(milli) / 1000 * float64(ns) / 1e9 }

func (c *Calendar) checkCoreHours(l *lease) *Refusal {
	p := c.project(l.Project)
	if p.quota == nil || p.quota.CoreHours == 0 {
		return nil
	}
	cost := coreSeconds(l.total[dCPU], l.run) / 3600
	left := p.quota.CoreHours - p.charged/3600
	if cost > left+1e-9 {
		return &Refusal{Lease: l.ID, Reason: ReasonQuota, Resource: "core-hours", Requested: cost, Free: left,
			Detail: fmt.Sprintf("core-hours: lease needs %.2f, project %s has %.2f of %.2f left",
				cost, l.Project, math.Max(left, 0), p.quota.CoreHours)}
	}
	return nil
}

func (c *Calendar) charge(l *lease) {
	l.charged = coreSeconds(l.total[dCPU], l.run)
	p := c.project(l.Project)
	p.charged += l.charged
	c.mark(l)
	c.markProject(p)
}

// refund gives back the core-seconds a lease will not use.
func (c *Calendar) refund(l *lease, t int64) {
	used := 0.0
	if l.held && l.started && t > l.T {
		used = coreSeconds(l.total[dCPU], min(t, l.runTo)-l.T)
	}
	used += coreSeconds(l.total[dCPU], l.run-l.remaining) + l.usedAdj
	if used < l.charged {
		p := c.project(l.Project)
		p.charged -= l.charged - used
		l.charged = used
		c.mark(l)
		c.markProject(p)
	}
}

// quotaOver checks the project's concurrent quotas over [from, to).
func (c *Calendar) quotaOver(l *lease, from, to int64) (string, bool) {
	if l.proj == nil {
		l.proj = c.project(l.Project)
	}
	p := l.proj
	if p.quota == nil {
		return "", false
	}
	m := p.qtl.max(from, to).add(l.total)
	for d := range m {
		if m[d] > p.limit[d] {
			held := m[d] - l.total[d]
			return fmt.Sprintf("%s: project %s would hold %s of %s in [%s, %s)", dimNames[d], l.Project,
				amount(dimNames[d], float64(m[d])), amount(dimNames[d], float64(p.limit[d])),
				fmtT(tm(from)), fmtT(tm(to))) + fmt.Sprintf(" (%s already held)", amount(dimNames[d], float64(held))), true
		}
	}
	return "", false
}

// refuse turns a lease away. It is not kept: a refusal holds nothing,
// and a caller submitting refused leases in a loop must not grow the
// calendar. (An earlier lease of the same ID, refused, was replaced.)
func (c *Calendar) refuse(l *lease, r *Refusal) (Admission, error) {
	l.st = StateRefused
	l.reason = r.Error()
	delete(c.leases, l.ID)
	delete(c.dirty, l)
	return Admission{}, r
}

func (c *Calendar) admitted(l *lease, vs []victim) Admission {
	a := Admission{Lease: l.ID, State: StateScheduled, Start: tm(l.T), End: tm(l.runTo), Hosts: names(l.hosts)}
	for _, v := range vs {
		a.Victims = append(a.Victims, Victim{Lease: v.l.ID, Kind: v.kind, At: tm(v.at)})
	}
	return a
}

func (c *Calendar) admitImmediate(l *lease, t int64) (Admission, *Refusal) {
	pre, boot := c.overheads(l)
	T := t + pre
	end := T + c.span(l.run) // the hold's end: the run, then its shutdown
	if why, over := c.quotaOver(l, t, end); over {
		return Admission{}, &Refusal{Lease: l.ID, Reason: ReasonQuota, Detail: why}
	}
	hosts, ok := c.placeAt(l, t, end, t == c.now)
	if !ok {
		return Admission{}, c.capacityRefusal(l, t, T, end, pre, nil)
	}
	if c.linkFor(l) {
		// Its guests boot as soon as the link brings the image.
		by, ok, r := c.startOverLink(l, hosts, t, boot)
		switch {
		case r != nil:
			return Admission{}, r
		case !ok:
			T = by + boot
			return Admission{}, c.capacityRefusal(l, by, T, T+c.span(l.run), boot, nil)
		}
		return c.admitted(l, nil), nil
	}
	c.commit(l, hosts, t, T, T+l.run, pre, boot, false)
	return c.admitted(l, nil), nil
}

func (c *Calendar) admitReservation(l *lease, t int64) (Admission, *Refusal) {
	pre, boot := c.overheads(l)
	S := tick(l.Start)
	// Staging [S-pre, S-boot) must begin no earlier than now; the slots
	// are held from S-boot (holdPre): the host is free for others while
	// the image is fetched. The run ends at to, the hold at end, after
	// its shutdown: the next hold on the same slots begins no earlier.
	stageFrom, from, to := S-pre, S-c.holdPre(l, pre, boot), S+l.run
	end := S + c.span(l.run)
	if stageFrom < t {
		r := &Refusal{Lease: l.ID, Reason: ReasonTooSoon, From: tm(stageFrom), To: tm(end)}
		if pre > 0 {
			var takes []string
			if stage := pre - boot; stage > 0 {
				takes = append(takes, fmt.Sprintf("staging image %s (%s) takes %v", l.Image.Name, l.Image.Size, time.Duration(stage)))
			}
			if boot > 0 {
				takes = append(takes, fmt.Sprintf("booting takes %v", time.Duration(boot)))
			}
			r.Detail = fmt.Sprintf("%s, from %s, before now (%s)", strings.Join(takes, " and "), fmtT(tm(stageFrom)), fmtT(tm(t)))
		} else {
			r.Detail = fmt.Sprintf("start %s is before now (%s)", fmtT(tm(S)), fmtT(tm(t)))
		}
		if T, ok := c.earliest(l, t+pre, math.MaxInt64, S-from, c.span(l.run)); ok {
			r.EarliestFit = tm(T)
		}
		return Admission{}, r
	}
	if why, over := c.quotaOver(l, from, end); over {
		return Admission{}, &Refusal{Lease: l.ID, Reason: ReasonQuota, Detail: why}
	}
	if hosts, ok := c.placeAt(l, from, end, false); ok {
		pre, lp, r := c.linkPlanFor(l, hosts, S, pre, boot, t)
		if r != nil {
			return Admission{}, r
		}
		c.commit(l, hosts, from, S, to, pre, boot, false)
		c.useLink(l, lp, S-boot)
		return c.admitted(l, nil), nil
	}
	hosts, vs, ok := c.preemptFor(l, from, end, t)
	if !ok {
		late, fresh := c.unsuspendable(l, from, end, t)
		r := c.capacityRefusal(l, from, S, end, S-from, late)
		if len(fresh) > 0 {
			r.TooFresh, r.MinRun = fresh, c.pol.MinRun
		}
		return Admission{}, r
	}
	pre, lp, r := c.linkPlanFor(l, hosts, S, pre, boot, t)
	if r != nil {
		return Admission{}, r
	}
	c.commit(l, hosts, from, S, to, pre, boot, false)
	c.useLink(l, lp, S-boot)
	c.applyVictims(l, vs, t)
	return c.admitted(l, vs), nil
}

func (c *Calendar) admitDeadline(l *lease, t int64) (Admission, *Refusal) {
	pre, boot := c.overheads(l)
	// The run can begin once staged and booted (T0); the slots are held
	// from T-hp, after the staging (see holdPre).
	hp := c.holdPre(l, pre, boot)
	T0 := t + pre
	// Its earliest start, when it asks for one, is the earliest its run
	// may begin.
	asked := !l.Start.IsZero() && tick(l.Start) > T0
	if asked {
		T0 = tick(l.Start)
	}
	dl := tick(l.Deadline)
	Tmax := dl - l.run
	refusal := func(detail string) *Refusal {
		return &Refusal{Lease: l.ID, Reason: ReasonDeadline, From: tm(T0 - pre), To: tm(dl), Detail: detail}
	}
	if Tmax < T0 {
		if asked {
			return Admission{}, refusal(fmt.Sprintf("it runs %v from its earliest start (%s) even on idle hosts", time.Duration(l.run), fmtT(tm(T0))))
		}
		return Admission{}, refusal(fmt.Sprintf("it needs %v from now (%s) even on idle hosts", time.Duration(pre+l.run), fmtT(tm(t))))
	}
	// A start whose image the link cannot bring in time is tried again
	// from when it can (linkReady), a few times at most. The deadline
	// bounds the run's end (Tmax); the hold goes on for the shutdown
	// after it (span), which may end past the deadline.
	var linkR *Refusal
	var linkBy int64
	for try := 0; try < 4; try++ {
		T, ok := c.earliest(l, T0, Tmax, hp, c.span(l.run))
		if !ok {
			break
		}
		if why, over := c.quotaOver(l, T-hp, T+c.span(l.run)); over {
			return Admission{}, &Refusal{Lease: l.ID, Reason: ReasonQuota, Detail: why}
		}
		hosts, _ := c.placeAt(l, T-hp, T+c.span(l.run), T-hp == c.now)
		lpre, lp, r := c.linkPlanFor(l, hosts, T, pre, boot, t)
		if r != nil {
			linkR = r
			by, _, r2 := c.linkReady(l, hosts, t)
			if r2 != nil {
				linkR = r2
				break
			}
			linkBy = by
			if by+boot <= T || by+boot > Tmax {
				break
			}
			T0 = by + boot
			continue
		}
		c.commit(l, hosts, T-hp, T, T+l.run, lpre, boot, false)
		c.useLink(l, lp, T-boot)
		return c.admitted(l, nil), nil
	}
	// Not without preemption: try the times at which non-preemptible holds
	// end, earliest first.
	for _, T := range c.preemptStarts(l, T0, Tmax, hp) {
		from, to := T-hp, T+c.span(l.run)
		if _, over := c.quotaOver(l, from, to); over {
			continue
		}
		if hosts, vs, ok := c.preemptFor(l, from, to, t); ok {
			lpre, lp, r := c.linkPlanFor(l, hosts, T, pre, boot, t)
			if r != nil {
				linkR = r
				continue
			}
			c.commit(l, hosts, from, T, T+l.run, lpre, boot, false)
			c.useLink(l, lp, T-boot)
			c.applyVictims(l, vs, t)
			return c.admitted(l, vs), nil
		}
	}
	if linkR != nil {
		if linkBy > 0 && linkBy+boot > Tmax {
			return Admission{}, refusal(fmt.Sprintf("its image %s (%s) can be on its hosts by %s at the earliest over the shared link%s: it would end %s",
				l.Image.Name, l.Image.Size, fmtT(tm(linkBy)), c.linkBusy(t, linkBy, nil), fmtT(tm(linkBy+boot+l.run))))
		}
		return Admission{}, refusal(linkR.Detail)
	}
	cr := c.capacityRefusal(l, T0-hp, T0, T0+c.span(l.run), hp, nil)
	r := refusal("")
	r.Resource, r.Requested, r.Free, r.Host, r.Blocking = cr.Resource, cr.Requested, cr.Free, cr.Host, cr.Blocking
	r.Capacity, r.Overcommit = cr.Capacity, cr.Overcommit
	r.Members, r.Fit = cr.Members, cr.Fit
	r.EarliestFit = cr.EarliestFit
	if !cr.EarliestFit.IsZero() {
		r.Detail = fmt.Sprintf("it runs %v; earliest start %s would end %s", time.Duration(l.run),
			fmtT(cr.EarliestFit), fmtT(cr.EarliestFit.Add(time.Duration(l.run))))
	} else {
		r.Detail = fmt.Sprintf("it runs %v and there is never room", time.Duration(l.run))
	}
	if cr.Resource != "" {
		r.Detail += fmt.Sprintf("; at %s: %s requested %s, at most %s free on host %s", fmtT(tm(T0)),
			cr.Resource, amount(cr.Resource, cr.Requested), amount(cr.Resource, cr.Free), cr.Host)
		if len(cr.Blocking) > 0 {
			r.Detail += fmt.Sprintf(" (held by %s)", strings.Join(cr.Blocking, ", "))
		}
	}
	return Admission{}, r
}

// capacityRefusal explains why l does not fit over [from, to) (its run
// starting at T): the host that comes closest, its short resource, the
// leases holding it, and the earliest start at which l would fit.
func (c *Calendar) capacityRefusal(l *lease, from, T, to, pre int64, unsusp []string) *Refusal {
	r := &Refusal{Lease: l.ID, Reason: ReasonCapacity, From: tm(from), To: tm(to), Members: len(l.Members), Unsuspendable: unsusp}
	g := &l.groups[0]
	// The closest host that cannot take a member names the short resource
	// and who holds it.
	var best *host
	bestFrac := -1.0
	fit := 0
	for gi := range l.groups {
		for _, h := range c.eligible(&l.groups[gi]) {
			free := h.cap.sub(h.tl.max(from, to))
			fit += copies(free, l.groups[gi].v, len(l.groups[gi].members))
			if f := fitFraction(free, l.groups[gi].v); f < 1 && f > bestFrac {
				best, bestFrac, g = h, f, &l.groups[gi]
			}
		}
	}
	r.Fit = min(fit, len(l.Members)-1)
	if best != nil {
		r.Host = best.Name
		r.Resource, r.Requested, r.Free = shortDim(best.cap.sub(best.tl.max(from, to)), g.v)
		c.noteHost(r, best)
		if r.Resource == "disk" {
			r.Volumes = volNames(best)
		}
		seen := map[string]bool{}
		for _, a := range best.allocs {
			if a.from < to && a.to > from && !seen[a.l.ID] {
				seen[a.l.ID] = true
				r.Blocking = append(r.Blocking, a.l.ID)
			}
		}
		sort.Strings(r.Blocking)
	}
	if E, ok := c.earliest(l, T, math.MaxInt64, pre, to-T); ok {
		r.EarliestFit = tm(E)
	}
	return r
}

// noteHost records h's capacity of r's short resource, and the
// overcommit ratio behind it.
func (c *Calendar) noteHost(r *Refusal, h *host) {
	for d, name := range dimNames {
		if name == r.Resource {
			r.Capacity, r.Overcommit = float64(h.cap[d]), c.pol.Overcommit.ratios()[d]
		}
	}
}
