package calendar

import "sort"

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
}

func (x *scoreIndex) reset(n int) {
	x.score = make([]int32, n)
	for i := range x.buckets {
		x.buckets[i] = x.buckets[i][:0]
	}
}

func (x *scoreIndex) insert(pos, s int) {
	b := x.buckets[s]
	i := sort.Search(len(b), func(i int) bool { return b[i] >= int32(pos) })
	b = append(b, 0)
	copy(b[i+1:], b[i:])
	b[i] = int32(pos)
	x.buckets[s] = b
	x.score[pos] = int32(s)
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
// the index.
func (c *Calendar) takeRanked(g *group, from, to int64, ex func(*host) vec, perHost int, took func(*host, int) int) bool {
	mask := c.eligMask(g)
	need := len(g.members)
	for k := 0; k <= scoreSteps; k++ {
		s := k
		if c.pol.Placement == Pack {
			s = scoreSteps - k
		}
		for _, p := range c.index.buckets[s] {
			if mask != nil && !mask[p] {
				continue
			}
			h := c.order[p]
			e := ex(h)
			if f := &c.free[p]; !fitsFree(g.v, f, &e) {
				continue // (as fitOn: no room now; cheaper than the misses)
			}
			lim := need
			if perHost > 0 {
				lim = min(need, perHost)
			}
			if c.useMisses && c.missed(h, g, from, to) {
				continue
			}
			if n := c.fitOn(h, g, from, to, true, e, lim); n > 0 {
				if need = took(h, n); need == 0 {
					return true
				}
			} else if c.useMisses {
				c.noteMiss(h, g, from, to)
			}
		}
	}
	return false
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
