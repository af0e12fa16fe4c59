package calendar

import (
	"math"
	"slices"
	"time"
)

// cand is a host that may take members, with its placement score.
type cand struct {
	h     *host
	score int
}

// placeAt finds hosts for all of l's members over [from, to) on the slot
// table as it stands, following the placement policy: member i goes to
// hosts[i]. now says that from is the clock, so that the free-now index may
// rule hosts out without looking at their tables.
func (c *Calendar) placeAt(l *lease, from, to int64, now bool) ([]*host, bool) {
	return c.placeInto(make([]*host, len(l.Members)), l, from, to, now)
}

// placeInto is placeAt into hosts, len(l.Members) long (a scratch buffer
// the caller may reuse).
func (c *Calendar) placeInto(hosts []*host, l *lease, from, to int64, now bool) ([]*host, bool) {
	var extra map[*host]vec
	if len(l.groups) > 1 {
		extra = map[*host]vec{}
	}
	for gi := range l.groups {
		g := &l.groups[gi]
		if g.spread && len(g.members) > 1 && c.spreadOut(g, from, to, now, extra, hosts) {
			continue
		}
		k := 0
		ok := c.takeHosts(g, from, to, now, extra, 0, func(h *host, n int) {
			for ; n > 0; n-- {
				hosts[g.members[k]] = h
				k++
			}
		})
		if !ok {
			return nil, false
		}
	}
	return hosts, true
}

// spreadOut places g's members one per host, if there are enough hosts
// with room, into hosts (and extra); else it changes nothing and the
// members share hosts.
func (c *Calendar) spreadOut(g *group, from, to int64, now bool, extra map[*host]vec, hosts []*host) bool {
	var trial map[*host]vec
	if extra != nil {
		trial = make(map[*host]vec, len(extra))
		for h, v := range extra {
			trial[h] = v
		}
	}
	var took []*host
	if !c.takeHosts(g, from, to, now, trial, 1, func(h *host, n int) {
		for ; n > 0; n-- {
			took = append(took, h)
		}
	}) {
		return false
	}
	for k, h := range took {
		hosts[g.members[k]] = h
	}
	for h, v := range trial {
		extra[h] = v
	}
	return true
}

// firstFit says whether the policy places by first fit (the default).
func (c *Calendar) firstFit() bool { return c.pol.Placement == "" || c.pol.Placement == FirstFit }

// fitOn is how many of g's members fit on h over [from, to), beyond extra.
func (c *Calendar) fitOn(h *host, g *group, from, to int64, now bool, ex vec, limit int) int {
	if now {
		// The free-now index is an upper bound on what is free over any
		// window that starts now.
		f := &c.free[h.pos]
		for d := range g.v {
			if g.v[d] > f[d]-ex[d] {
				return 0
			}
		}
	}
	return h.tl.fits(from, to, h.cap, ex, g.v, limit)
}

// takeHosts places g's members over [from, to) and reports each host's share
// to use, at most perHost on one host (0: no bound); false if they do not
// all fit.
func (c *Calendar) takeHosts(g *group, from, to int64, now bool, extra map[*host]vec, perHost int, use func(*host, int)) bool {
	need := len(g.members)
	lim := func() int {
		if perHost > 0 {
			return min(need, perHost)
		}
		return need
	}
	hosts := c.eligible(g)
	ex := func(h *host) vec {
		if extra == nil {
			return vec{}
		}
		return extra[h]
	}
	took := func(h *host, n int) int {
		use(h, n)
		need -= n
		if extra != nil {
			extra[h] = extra[h].add(g.v.scale(int64(n)))
		}
		return need
	}
	switch {
	case c.firstFit():
		for _, h := range hosts {
			if n := c.fitOn(h, g, from, to, now, ex(h), lim()); n > 0 {
				if took(h, n) == 0 {
					return true
				}
			}
		}
		return false
	case now:
		return c.takeRanked(g, from, to, ex, perHost, took)
	}
	// Pack or spread in the future: rank hosts by how allocated they are
	// at from.
	cs := c.candBuf[:0]
	for _, h := range hosts {
		used := h.tl.at(from).add(ex(h))
		cs = append(cs, cand{h: h, score: scoreOf(used, h.cap)})
	}
	c.candBuf = cs[:0]
	pack := c.pol.Placement == Pack
	better := func(a, b *cand) bool {
		if a.score != b.score {
			return a.score > b.score == pack
		}
		return a.h.pos < b.h.pos
	}
	// Best first: a heap, so that hosts whose window turns out full cost
	// log(hosts) each rather than a scan.
	ch := candHeap{cs: cs, better: better}
	ch.init()
	for len(ch.cs) > 0 {
		h := ch.cs[0].h
		ch.pop()
		if n := c.fitOn(h, g, from, to, false, ex(h), lim()); n > 0 {
			took(h, n)
			if need == 0 {
				c.candBuf = ch.cs[:0]
				return true
			}
		}
	}
	return false
}

// candHeap orders candidate hosts best first.
type candHeap struct {
	cs     []cand
	better func(a, b *cand) bool
}

func (q *candHeap) init() {
	for i := len(q.cs)/2 - 1; i >= 0; i-- {
		q.down(i)
	}
}

func (q *candHeap) down(i int) {
	n := len(q.cs)
	for {
		l := 2*i + 1
		if l >= n {
			return
		}
		m := l
		if r := l + 1; r < n && q.better(&q.cs[r], &q.cs[l]) {
			m = r
		}
		if !q.better(&q.cs[m], &q.cs[i]) {
			return
		}
		q.cs[i], q.cs[m] = q.cs[m], q.cs[i]
		i = m
	}
}

func (q *candHeap) pop() {
	n := len(q.cs) - 1
	q.cs[0] = q.cs[n]
	q.cs = q.cs[:n]
	q.down(0)
}

// sweepHost follows one host's count of members that fit as the start T
// moves right.
type sweepHost struct {
	h      *host
	li, ei int // next point whose leaving / entering the window changes the count
	cnt    int
	top    int // the count over a window of no use (identical members)
	next   int64
}

// earliest returns the earliest start T in [T0, Tmax] at which all of l's
// members fit over [T-pre, T+run) on the slot table as it stands.
//
// For identical members it sweeps T over the times at which some host's
// count of members that fit can change (a point leaving the window on the
// left, or entering it on the right), keeping the total up to date; the
// cost is the number of points, not hosts x points. Mixed members are
// placed greedily at each such time.
func (c *Calendar) earliest(l *lease, T0, Tmax, pre, run int64) (int64, bool) {
	T, _, ok := c.earliestOn(l, nil, T0, Tmax, pre, run)
	return T, ok
}

// earliestPlaced is earliest, also returning the placement at that start.
func (c *Calendar) earliestPlaced(l *lease, T0, Tmax, pre, run int64) (int64, []*host, bool) {
	T, hosts, ok := c.earliestOn(l, nil, T0, Tmax, pre, run)
	if ok && hosts == nil {
		hosts, ok = c.placeAt(l, T-pre, T+run, false)
	}
	return T, hosts, ok
}

// earliestOn is earliest over the given hosts (nil: all eligible hosts).
// For identical members placed first fit over all eligible hosts, it also
// returns the placement, read off the sweep's counts, in a scratch buffer
// (c.placeBuf) valid until the next call; else nil.
func (c *Calendar) earliestOn(l *lease, hosts []*host, T0, Tmax, pre, run int64) (int64, []*host, bool) {
	if T0 > Tmax {
		return 0, nil, false
	}
	all := hosts == nil
	single := len(l.groups) == 1
	need := len(l.Members)
	if hosts != nil {
		// as given
	} else if single {
		hosts = c.eligible(&l.groups[0])
	} else {
		seen := map[*host]bool{}
		for gi := range l.groups {
			for _, h := range c.eligible(&l.groups[gi]) {
				if !seen[h] {
					seen[h] = true
					hosts = append(hosts, h)
				}
			}
		}
	}
	// count is how many members fit on s's host over the window at the
	// start its cursors stand at: timeline.fits over [T-pre, T+run),
	// whose points are li-1 (none before the first) to ei-1, read
	// without searching for them.
	var v vec
	if single {
		v = l.groups[0].v
	}
	count := func(s *sweepHost) int {
		if !single {
			return 0
		}
		p := s.h.tl.pts
		// (No more than top fit: the host's capacity bounds every point.)
		i, n := s.li-1, min(need, s.top)
		if i >= 0 {
			n = copies(s.h.cap.sub(p[i].v), v, n)
		} else {
			n = copies(s.h.cap, v, n)
		}
		for k := i + 1; n > 0 && k < s.ei; k++ {
			n = min(n, copies(s.h.cap.sub(p[k].v), v, n))
		}
		return n
	}
	rec := single && c.recSweep
	check := func(T int64, total int) bool {
		if single {
			if rec && (len(c.sweepRec) == 0 || c.sweepRec[len(c.sweepRec)-1].n != total) {
				c.sweepRec = append(c.sweepRec, sweepStep{T, total})
			}
			return total >= need
		}
		_, ok := c.placeAt(l, T-pre, T+run, false)
		return ok
	}
	// advance moves s's cursors past T.
	advance := func(s *sweepHost, T int64) {
		p := s.h.tl.pts
		for s.li < len(p) && p[s.li].t+pre <= T {
			s.li++
		}
		for s.ei < len(p) && p[s.ei].t-run+1 <= T {
			s.ei++
		}
	}
	// setNext sets s.next to the next point that may change its count.
	// For identical members, a point leaving the window can only raise
	// it, so none counts when it is as high as it gets; one entering can
	// only lower it, so none counts when it is zero. (The cursors pass
	// the skipped points at the host's next event; the total does not
	// change at them, so no start is found there.) Mixed members are
	// placed again at every point.
	setNext := func(s *sweepHost) {
		p := s.h.tl.pts
		s.next = math.MaxInt64
		if s.li < len(p) && (!single || s.cnt < s.top) {
			s.next = p[s.li].t + pre
		}
		if s.ei < len(p) && (!single || s.cnt > 0) && p[s.ei].t-run+1 < s.next {
			s.next = p[s.ei].t - run + 1
		}
	}
	if cap(c.sweepBuf) < len(hosts) {
		c.sweepBuf = make([]sweepHost, len(hosts))
	}
	hs := c.sweepBuf[:len(hosts)]
	clear(hs)
	total := 0
	q := c.sweepQ[:0]
	defer func() { c.sweepQ = q[:0] }()
	top := 0 // hosts of the same capacity in a row have the same top
	for i, h := range hosts {
		s := &hs[i]
		s.h = h
		// First points whose leaving (p.t+pre) and entering (p.t-run+1)
		// come after T0.
		s.li = h.tl.idx(T0-pre) + 1
		s.ei = h.tl.idx(T0+run-1) + 1
		if single {
			if i == 0 || !same(&h.cap, &hosts[i-1].cap) {
				top = copies(h.cap, v, need)
			}
			s.top = top
		}
		s.cnt = count(s)
		total += s.cnt
		if single && total >= need {
			// All fit at T0 on the hosts so far: the start is T0, and
			// first fit takes no host after this one (the rest keep a
			// count of zero, unread).
			break
		}
		setNext(s)
		if s.next != math.MaxInt64 {
			q = append(q, sweepEnt{next: s.next, pos: h.pos, i: i})
		}
	}
	// place reads the first-fit placement off the counts at T.
	place := func() []*host {
		if !single || !all || !c.firstFit() || l.groups[0].spread {
			return nil
		}
		// (Into a scratch buffer: the caller keeps a copy if it needs one.)
		out := slices.Grow(c.placeBuf[:0], need)
		defer func() { c.placeBuf = out[:0] }()
		for i := range hs {
			for n := hs[i].cnt; n > 0 && len(out) < need; n-- {
				out = append(out, hs[i].h)
			}
		}
		return out
	}
	if check(T0, total) {
		return T0, place(), true
	}
	q.init()
	for len(q) > 0 {
		T := q[0].next
		if T > Tmax {
			return 0, nil, false
		}
		for len(q) > 0 && q[0].next == T {
			s := &hs[q[0].i]
			n := s.cnt
			// Only a point leaving the window can raise a count; one
			// entering can only lower it, and zero stays zero.
			recount := n > 0 || s.li < len(s.h.tl.pts) && s.h.tl.pts[s.li].t+pre == T
			advance(s, T)
			if recount {
				n = count(s)
			}
			total += n - s.cnt
			s.cnt = n
			setNext(s)
			if s.next == math.MaxInt64 {
				q.pop()
			} else {
				q[0].next = s.next
				q.fix0()
			}
		}
		if check(T, total) {
			return T, place(), true
		}
	}
	return 0, nil, false
}

// sweepEnt is a host in the sweep's heap: its next change, its position
// (ties go by it) and its index in the sweep (no pointers, so that
// moving entries costs no write barriers).
type sweepEnt struct {
	next int64
	pos  int
	i    int
}

// sweepHeap is a min-heap of hosts by next change.
type sweepHeap []sweepEnt

func (q sweepHeap) less(i, j int) bool {
	if q[i].next != q[j].next {
		return q[i].next < q[j].next
	}
	return q[i].pos < q[j].pos
}

func (q sweepHeap) init() {
	for i := len(q)/2 - 1; i >= 0; i-- {
		q.down(i)
	}
}

func (q sweepHeap) down(i int) {
	n := len(q)
	for {
		l := 2*i + 1
		if l >= n {
			return
		}
		m := l
		if r := l + 1; r < n && q.less(r, l) {
			m = r
		}
		if !q.less(m, i) {
			return
		}
		q[i], q[m] = q[m], q[i]
		i = m
	}
}

func (q sweepHeap) fix0() { q.down(0) }

func (q *sweepHeap) pop() {
	old := *q
	n := len(old) - 1
	old[0] = old[n]
	*q = old[:n]
	q.down(0)
}

// stageTime is how long staging l's image takes: on the slowest eligible
// host, so that all members are ready together.
func (c *Calendar) stageTime(l *lease) int64 {
	if l.Image.Size <= 0 {
		return 0
	}
	if c.linkFor(l) {
		// One transfer on the shared link at least, unless every
		// eligible host has the image (link.go books the real ones).
		for gi := range l.groups {
			for _, h := range c.eligible(&l.groups[gi]) {
				if !slices.Contains(h.Images, l.Image.Name) {
					return xfer(int64(l.Image.Size), c.linkBW)
				}
			}
		}
		return 0
	}
	var worst int64
	for gi := range l.groups {
		if !c.eligAgg(&l.groups[gi]).stages {
			continue // no eligible host stages in time: xfer is 0 on each
		}
		for _, h := range c.eligible(&l.groups[gi]) {
			if slices.Contains(h.Images, l.Image.Name) {
				continue // cached there
			}
			if d := xfer(int64(l.Image.Size), h.StageRate); d > worst {
				worst = d
			}
		}
	}
	return worst
}

// xfer is the time to move size bytes at rate bytes/s, in whole seconds
// rounded up, as nanoseconds (0 when the rate is 0: not modelled).
func xfer(size, rate int64) int64 {
	if size <= 0 || rate <= 0 {
		return 0
	}
	s := size / rate
	if size%rate != 0 {
		s++
	}
	return s * 1e9
}

// preFor is the overhead before l's run starts: for a fresh start, staging
// its image and then booting its guests, so that they are ready when the
// run starts; for a resume, restoring its memory (moved from where it was
// saved). It is the worst over eligible hosts, since it must be known
// before the hosts are chosen (the window searched and the victims' time
// to be gone depend on it); on a faster host the guests are ready early.
func (c *Calendar) preFor(l *lease) int64 {
	if l.preVer == c.hostVer+1 {
		return l.preCache
	}
	var p, b int64
	if l.savedOn == nil {
		b = c.bootTime(l)
		p = c.stageTime(l) + b
	} else {
		// Each host moves and restores its members' memory; under
		// ExclusionGlobal the restores come one after the other, at
		// worst all of the lease's memory at the slowest host's rate.
		mem := maxMemPerHost(l, l.savedOn)
		rmem := mem
		if c.pol.Exclusion == ExclusionGlobal {
			rmem = 0
			for _, m := range l.Members {
				rmem += int64(m.Resources.Memory)
			}
		}
		for gi := range l.groups {
			for _, h := range c.eligible(&l.groups[gi]) {
				if d := xfer(rmem, h.ResumeRate) + xfer(mem, h.StageRate); d > p {
					p = d
				}
			}
		}
	}
	l.preCache, l.bootCache, l.preVer = p, b, c.hostVer+1
	return p
}

// overheads is preFor and the part of it that is booting (0 for a resume).
func (c *Calendar) overheads(l *lease) (pre, boot int64) {
	pre = c.preFor(l)
	return pre, l.bootCache
}

// stagesAhead says whether a fresh start of l stages its image before its
// hold: reservations and deadline leases are planned ahead, so their
// image is fetched over [T-pre, T-boot) while the host's slots stay free
// for others, and the hold begins at T-boot. Immediate and best-effort
// leases start at once on a host that must be free anyway: they stage
// within their hold, unless their image comes over the shared link
// (holdPre).
func stagesAhead(k Kind) bool { return k == Reservation || k == Deadline }

// holdPre is the part of a fresh start's overhead (pre, of which boot is
// booting) that l's hold covers before its run: boot alone when l stages
// ahead or its image comes over the shared link (link.go), else all of
// it.
//
// Staging is modelled at the host's full StageRate even when several
// leases stage on one host at once (they really share it); a host that
// stages many images together may then finish some of them late, which
// only delays those guests' boot, never another lease's slots.
func (c *Calendar) holdPre(l *lease, pre, boot int64) int64 {
	if stagesAhead(l.Kind) || c.linkFor(l) {
		return boot
	}
	return pre
}

// stagedOutside says whether l's current hold is a fresh start whose
// staging comes before the hold's slots.
func (l *lease) stagedOutside() bool {
	return l.held && !l.resume && l.holdFrom > l.T-l.pre
}

// bootTime is how long l's guests take to boot: the longest boot time of
// its eligible hosts, in whole seconds rounded up.
func (c *Calendar) bootTime(l *lease) int64 {
	var worst time.Duration
	for gi := range l.groups {
		worst = max(worst, c.eligAgg(&l.groups[gi]).boot)
	}
	return int64((worst + time.Second - 1) / time.Second * time.Second)
}

// hostAgg is what preFor needs of a group's eligible hosts as a whole,
// computed once per host version rather than once per lease (a lease's
// overheads are computed when it is submitted or re-queued, and a scan of
// every host each time made a grid of thousands of hosts slow to fill).
type hostAgg struct {
	boot   time.Duration // the longest boot time
	stages bool          // some host has a stage rate (staging takes time)
}

// eligAgg is hostAgg of g's eligible hosts.
func (c *Calendar) eligAgg(g *group) hostAgg {
	if c.aggVer != c.hostVer+1 {
		clear(c.agg)
		c.aggVer = c.hostVer + 1
	}
	if a, ok := c.agg[g.key]; ok {
		return a
	}
	var a hostAgg
	for _, h := range c.eligible(g) {
		a.boot = max(a.boot, h.BootTime)
		a.stages = a.stages || h.StageRate > 0
	}
	if c.agg == nil {
		c.agg = map[string]hostAgg{}
	}
	c.agg[g.key] = a
	return a
}

// resumeInPlace is the time to resume l on the hosts its image is on.
func (c *Calendar) resumeInPlace(l *lease) int64 { return c.resumeOn(l, l.savedOn) }

// resumeOn is how long l takes to restore its memory saved on hosts
// (member -> host), there.
func (c *Calendar) resumeOn(l *lease, hosts []*host) int64 {
	return c.memTime(l, hosts, func(h *host) int64 { return h.ResumeRate })
}

// memTime is how long saving or restoring l's memory on hosts (member ->
// host) takes at each host's rate: the hosts in parallel, each writing
// its members' memory in turn (ExclusionLocal), or the hosts one after
// the other (ExclusionGlobal).
func (c *Calendar) memTime(l *lease, hosts []*host, rate func(*host) int64) int64 {
	var p int64
	for h, v := range memByHost(l, hosts) {
		if d := xfer(v, rate(h)); c.pol.Exclusion == ExclusionGlobal {
			p += d
		} else {
			p = max(p, d)
		}
	}
	return p
}

// maySuspend says whether preemption may suspend l (else it is
// requeued): Policy.Suspend, and with SerialOnly a lease of one member.
func (c *Calendar) maySuspend(l *lease) bool {
	return c.pol.Suspend && (!c.pol.SerialOnly || len(l.Members) == 1)
}

// earliestThere is the earliest run start T >= from+pre at which l fits
// on hosts (member -> host) over [T-pre, T+run), or false if never.
func (c *Calendar) earliestThere(l *lease, hosts []*host, from, pre, run int64) (int64, bool) {
	T := from + pre
	for !c.fitsOn(l, hosts, T-pre, T+run) {
		nx, ok := nextFree(hosts, T-pre)
		if !ok {
			return 0, false
		}
		T = nx + pre
	}
	return T, true
}

// suspendTime is how long suspending l's current hold takes.
func (c *Calendar) suspendTime(l *lease) int64 { return c.suspendOn(l, l.hosts) }

func memByHost(l *lease, hosts []*host) map[*host]int64 {
	m := map[*host]int64{}
	for i, h := range hosts {
		m[h] += int64(l.Members[i].Resources.Memory)
	}
	return m
}

func maxMemPerHost(l *lease, hosts []*host) int64 {
	var worst int64
	for _, v := range memByHost(l, hosts) {
		worst = max(worst, v)
	}
	return worst
}
