package calendar

// A first-fit start scans the eligible hosts in order for room over
// [t, end). Within a pass the slot table only fills (starts, and the
// backfill reservations added), so a host with no room for one member of
// v over [t, end) has none later in the pass for a member at least as
// large in every dimension over a window at least as long. The pass keeps
// such findings as frontiers: every eligible host before pos had no room
// for one member of v over [t, end). A later start of a lease of the same
// label constraint whose member and window dominate a frontier's begins
// its scan there, and places its members on the same hosts a scan from
// the first host would: the hosts skipped would all have said no. On a
// grid of thousands of hosts, most of them full early in a long queue,
// this is most of a start's cost.

// frontier is one such finding.
type frontier struct {
	v   vec
	key string
	end int64
	pos int
}

// frontiers are the findings of one pass at one clock, slot table epoch
// and host version; they are dropped when any of these changes.
type frontiers struct {
	pass, epoch, hostVer uint64
	t                    int64
	fs                   []frontier
	next                 int // the entry to overwrite when full
}

// maxFrontiers bounds the findings kept: each start reads them all.
const maxFrontiers = 64

// frontiersAt is the pass's findings at t, dropped first if they were
// made in another pass or at another clock, epoch or host version.
func (c *Calendar) frontiersAt(t int64) *frontiers {
	f := &c.fronts
	if f.pass != c.passNo || f.epoch != c.epoch || f.hostVer != c.hostVer || f.t != t {
		*f = frontiers{pass: c.passNo, epoch: c.epoch, hostVer: c.hostVer, t: t, fs: f.fs[:0]}
	}
	return f
}

// from is where a scan for members of g over [t, end) may begin.
func (f *frontiers) from(g *group, end int64) int {
	pos := 0
	for i := range f.fs {
		x := &f.fs[i]
		if x.pos > pos && x.end <= end && x.key == g.key && x.v.le(g.v) {
			pos = x.pos
		}
	}
	return pos
}

// note records that the eligible hosts before pos have no room for one
// member of g over [t, end). A finding it makes useless (for a member
// and window at least as large, no further) is dropped.
func (f *frontiers) note(g *group, end int64, pos int) {
	n := 0
	for _, x := range f.fs {
		if x.key == g.key && x.pos <= pos && end <= x.end && g.v.le(x.v) {
			continue
		}
		f.fs[n] = x
		n++
	}
	f.fs = f.fs[:n]
	x := frontier{v: g.v, key: g.key, end: end, pos: pos}
	if len(f.fs) < maxFrontiers {
		f.fs = append(f.fs, x)
		return
	}
	f.next %= maxFrontiers
	f.fs[f.next] = x
	f.next++
}

// placeNow is placeAt(l, t, to, true) for a start at the clock within a
// pass: a first-fit placement of identical members, not spread, scans from
// the pass's frontier and records where it found room first.
func (c *Calendar) placeNow(l *lease, t, to int64) ([]*host, bool) {
	if c.noMemo || len(l.groups) != 1 || l.groups[0].spread {
		return c.placeAt(l, t, to, true)
	}
	if !c.firstFit() {
		// Pack and spread rank the hosts, and the ranks change as they
		// fill: each host remembers its own last miss instead.
		c.useMisses = true
		defer func() { c.useMisses = false }()
		return c.placeAt(l, t, to, true)
	}
	g := &l.groups[0]
	f := c.frontiersAt(t)
	hosts := c.eligible(g)
	out := make([]*host, len(l.Members))
	need, k, first := len(g.members), 0, len(hosts)
	for i := f.from(g, to); i < len(hosts) && need > 0; i++ {
		h := hosts[i]
		n := c.fitOn(h, g, t, to, true, vec{}, need)
		if n == 0 {
			continue
		}
		first = min(first, i)
		need -= n
		for ; n > 0; n-- {
			out[g.members[k]] = h
			k++
		}
	}
	f.note(g, to, first)
	if need > 0 {
		return nil, false
	}
	return out, true
}

// hostMisses are a host's last failed starts in a pass: no room for one
// member of v over [t, end), at pass pass, epoch and host version. Like
// a frontier, each rules out members no smaller over windows no shorter
// from t until the pass ends. They are kept by host position, and only
// once pack or spread start something in a pass.
type hostMisses struct {
	pass, epoch, hostVer uint64
	t                    int64
	n                    int
	ms                   [4]struct {
		end int64
		v   vec
	}
}

// missed says whether h's misses show that one member of g does not fit
// there over [t, end).
func (c *Calendar) missed(h *host, g *group, t, end int64) bool {
	if h.pos >= len(c.hmiss) {
		return false
	}
	m := &c.hmiss[h.pos]
	if m.pass != c.passNo || m.epoch != c.epoch || m.hostVer != c.hostVer || m.t != t {
		return false
	}
	for i := range min(m.n, len(m.ms)) {
		if x := &m.ms[i]; x.end <= end && x.v.le(g.v) {
			return true
		}
	}
	return false
}

// noteMiss records that one member of g does not fit on h over [t, end).
func (c *Calendar) noteMiss(h *host, g *group, t, end int64) {
	if len(c.hmiss) != len(c.order) {
		c.hmiss = make([]hostMisses, len(c.order))
	}
	m := &c.hmiss[h.pos]
	if m.pass != c.passNo || m.epoch != c.epoch || m.hostVer != c.hostVer || m.t != t {
		*m = hostMisses{pass: c.passNo, epoch: c.epoch, hostVer: c.hostVer, t: t}
	}
	x := &m.ms[m.n%len(m.ms)]
	x.end, x.v = end, g.v
	m.n++
}
