package calendar

import (
	"math"
	"slices"
	"sort"
)

// scoreSteps is the resolution of a host's allocation score: pack and
// spread rank hosts by allocation in steps of 1/scoreSteps, then by name.
const scoreSteps = 1024

// scoreOf is how allocated a host is: its dominant share of used capacity
// (the largest of cpu, memory, disk, bandwidth), in 1/scoreSteps.
func scoreOf(used, cap vec) int {
	s := 0
	for d := dCPU; d <= dBW; d++ {
		if cap[d] > 0 {
			q := int(float64(used[d]) * scoreSteps / float64(cap[d]))
			s = max(s, min(max(q, 0), scoreSteps))
		}
	}
	return s
}

// scoreIndex buckets live hosts by their allocation at the clock, each
// bucket in name order, so that pack and spread find the best host that
// fits without ranking every host.
type scoreIndex struct {
	score   []int32 // by position in Calendar.order
	buckets [scoreSteps + 1][]int32
	// memos are the buckets' memos of a pass (bucketMemo), nil until
	// pack or spread start something in a pass.
	memos *[scoreSteps + 1][maxBucketMemos]bucketMemo
}

// bucketMemo is a start's scan of one bucket in a pass: every host in
// the bucket at a position below pos had no room for one member of v
// under label constraint key over [t, end), at pass, epoch and host
// version stamp. ins are the positions below pos put in the bucket since
// (their score changed), which it says nothing of. Like a host's misses
// (hostMisses), it holds until the pass ends for members no smaller over
// windows no shorter: within a pass the slot table only fills.
type bucketMemo struct {
	pass, epoch, hostVer uint64
	t, end               int64
	key                  string
	v                    vec
	pos                  int32
	ins                  []int32
	ok                   bool
}

// maxBucketMemos bounds the memos kept per bucket, maxBucketIns the
// hosts put in a bucket since a memo (beyond it the memo is dropped).
const (
	maxBucketMemos = 8
	maxBucketIns   = 16
)

func (x *scoreIndex) reset(n int) {
	x.score = make([]int32, n)
	for i := range x.buckets {
		x.buckets[i] = x.buckets[i][:0]
	}
	x.memos = nil
}

func (x *scoreIndex) insert(pos, s int) {
	b := x.buckets[s]
	i := sort.Search(len(b), func(i int) bool { return b[i] >= int32(pos) })
	b = append(b, 0)
	copy(b[i+1:], b[i:])
	b[i] = int32(pos)
	x.buckets[s] = b
	x.score[pos] = int32(s)
	if x.memos != nil {
		for k := range x.memos[s] {
			if m := &x.memos[s][k]; m.ok && int32(pos) < m.pos {
				if len(m.ins) >= maxBucketIns {
					m.ok = false
					continue
				}
				m.ins = append(m.ins, int32(pos))
			}
		}
	}
}

func (x *scoreIndex) set(pos, s int) {
	old := int(x.score[pos])
	if old == s {
		return
	}
	b := x.buckets[old]
	i := sort.Search(len(b), func(i int) bool { return b[i] >= int32(pos) })
	if i < len(b) && b[i] == int32(pos) {
		x.buckets[old] = append(b[:i], b[i+1:]...)
	}
	x.insert(pos, s)
}

// rescore files host h under its allocation at the clock.
func (c *Calendar) rescore(h *host) {
	c.index.set(h.pos, scoreOf(h.cap.sub(c.free[h.pos]), h.cap))
}

// eligMask says, by position, which hosts match g's labels (nil: all).
func (c *Calendar) eligMask(g *group) []bool {
	if g.key == "" && c.cordoned == 0 {
		return nil
	}
	if m, ok := c.mask[g.key]; ok {
		return m
	}
	m := make([]bool, len(c.order))
	for _, h := range c.eligible(g) {
		m[h.pos] = true
	}
	c.mask[g.key] = m
	return m
}

// takeRanked places g's members over a window starting at the clock on
// the best hosts for pack (most allocated first) or spread (least), using
// the index. Within a pass (useMisses), a bucket's memo lets a start skip
// the hosts of the bucket an earlier start found no room on.
func (c *Calendar) takeRanked(g *group, from, to int64, ex func(*host) vec, perHost int, took func(*host, int) int) bool {
	mask := c.eligMask(g)
	need := len(g.members)
	memo := c.useMisses && !c.noMemo
	if memo && c.index.memos == nil {
		c.index.memos = new([scoreSteps + 1][maxBucketMemos]bucketMemo)
	}
	// visit tries host position p; false when every member is placed.
	first := int32(math.MaxInt32) // the bucket's first host with room
	visit := func(p int32) bool {
		if mask != nil && !mask[p] {
			return true
		}
		h := c.order[p]
		e := ex(h)
		if f := &c.free[p]; !fitsFree(g.v, f, &e) {
			return true // (as fitOn: no room now; cheaper than the misses)
		}
		lim := need
		if perHost > 0 {
			lim = min(need, perHost)
		}
		if c.useMisses && c.missed(h, g, from, to) {
			return true
		}
		if n := c.fitOn(h, g, from, to, true, e, lim); n > 0 {
			first = min(first, p)
			if need = took(h, n); need == 0 {
				return false
			}
		} else if c.useMisses {
			c.noteMiss(h, g, from, to)
		}
		return true
	}
	for k := 0; k <= scoreSteps; k++ {
		s := k
		if c.pol.Placement == Pack {
			s = scoreSteps - k
		}
		b := c.index.buckets[s]
		if len(b) == 0 {
			continue
		}
		first = math.MaxInt32
		done := false
		start := 0
		if m := c.bucketMemoFor(s, g, from, to, memo); m != nil {
			// The hosts put in the bucket since the memo first (their
			// positions are below its), then those from its position.
			ins := slices.Clone(m.ins)
			slices.Sort(ins)
			for _, p := range slices.Compact(ins) {
				if c.index.score[p] == int32(s) && !visit(p) {
					done = true
					break
				}
			}
			start = sort.Search(len(b), func(i int) bool { return b[i] >= m.pos })
		}
		for i := start; i < len(b) && !done; i++ {
			done = !visit(b[i])
		}
		if memo {
			c.noteBucket(s, g, from, to, first)
		}
		if done {
			return true
		}
	}
	return false
}

// bucketMemoFor is bucket s's memo that rules out hosts for one member of
// g over [t, end) in this pass, if any (and use).
func (c *Calendar) bucketMemoFor(s int, g *group, t, end int64, use bool) *bucketMemo {
	if !use {
		return nil
	}
	for k := range c.index.memos[s] {
		m := &c.index.memos[s][k]
		if m.ok && m.pass == c.passNo && m.epoch == c.epoch && m.hostVer == c.hostVer && m.t == t &&
			m.key == g.key && m.end <= end && m.v.le(g.v) {
			return m
		}
	}
	return nil
}

// noteBucket records that the hosts of bucket s below position pos had no
// room for one member of g over [t, end): a new memo, unless one as good
// is kept; one it makes useless is dropped, else the older one goes.
func (c *Calendar) noteBucket(s int, g *group, t, end int64, pos int32) {
	ms := &c.index.memos[s]
	slot := -1
	for k := range ms {
		m := &ms[k]
		if !m.ok || m.pass != c.passNo || m.epoch != c.epoch || m.hostVer != c.hostVer || m.t != t {
			m.ok = false
		} else if m.key == g.key && m.pos >= pos && m.end <= end && m.v.le(g.v) {
			return // as good already
		} else if m.key == g.key && m.pos <= pos && end <= m.end && g.v.le(m.v) {
			m.ok = false // useless beside the new one
		}
		if !m.ok && slot < 0 {
			slot = k
		}
	}
	if slot < 0 {
		// The older one goes (the first slot holds the newer).
		copy(ms[1:], ms[:len(ms)-1])
		ms[0] = bucketMemo{}
		slot = 0
	}
	ms[slot] = bucketMemo{pass: c.passNo, epoch: c.epoch, hostVer: c.hostVer, t: t, end: end,
		key: g.key, v: g.v, pos: pos, ins: ms[slot].ins[:0], ok: true}
}

// fitsFree says whether one member of v fits in free beyond ex: fitOn's
// test of the free-now index.
func fitsFree(v vec, free, ex *vec) bool {
	for d := range v {
		if v[d] > free[d]-ex[d] {
			return false
		}
	}
	return true
}
