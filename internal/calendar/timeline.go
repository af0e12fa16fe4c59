package calendar

import (
	"math"

	"vgrid/internal/model"
)

// The dimensions the slot table counts. Workspaces counts members; hosts
// have no limit on it, project quotas may.
const (
	dCPU = iota
	dMem
	dDisk
	dBW
	dWS
	nd
)

var dimNames = [nd]string{"cpu", "memory", "disk", "bandwidth", "workspaces"}

// vec is an amount of every dimension.
type vec [nd]int64

func vecOf(r model.Resources) vec {
	return vec{r.MilliCPU, int64(r.Memory), int64(r.Disk), int64(r.Bandwidth), 1}
}

func (a vec) add(b vec) vec {
	for i := range a {
		a[i] += b[i]
	}
	return a
}

func (a vec) sub(b vec) vec {
	for i := range a {
		a[i] -= b[i]
	}
	return a
}

func (a vec) scale(n int64) vec {
	for i := range a {
		a[i] *= n
	}
	return a
}

// le reports a <= b in every dimension.
func (a vec) le(b vec) bool {
	for i := range a {
		if a[i] > b[i] {
			return false
		}
	}
	return true
}

// copies is how many times v fits in free (capped at limit; limit when v is zero).
func copies(free, v vec, limit int) int {
	if limit == 1 {
		// One copy fits where every dimension it needs has room: the
		// same answer without dividing.
		for i := range v {
			if v[i] > 0 && free[i] < v[i] {
				return 0
			}
		}
		return 1
	}
	n := int64(limit)
	for i := range v {
		if v[i] <= 0 {
			continue
		}
		k := free[i] / v[i]
		if free[i] < 0 {
			k = -1
		}
		if k < n {
			n = k
		}
	}
	if n < 0 {
		return 0
	}
	return int(n)
}

// unlimited stands for "no limit" in a quota vector.
const unlimited = math.MaxInt64 / 4

// hostWorkspaces is a host's limit on workspaces: none in practice, and
// small enough that the free capacity of a million hosts sums without
// overflow.
const hostWorkspaces = 1 << 40

// point says that from t on (until the next point) the used amount is v.
type point struct {
	t int64
	v vec
}

// timeline is a step function of used resources over time: a sorted list
// of points, zero before the first. It is the slot table of one host (or of
// one project, for quotas).
type timeline struct {
	pts []point
}

// idx returns the index of the last point at or before t, or -1.
func (tl *timeline) idx(t int64) int {
	p := tl.pts
	// Fast paths: most queries are at or after the last point, or before the first.
	if n := len(p); n == 0 || t < p[0].t {
		return -1
	} else if t >= p[n-1].t {
		return n - 1
	}
	// Binary search for the first point after t (sort.Search without
	// its closure: this is the calendar's innermost loop).
	lo, hi := 1, len(p)-1 // p[0].t <= t < p[n-1].t
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if p[m].t > t {
			hi = m
		} else {
			lo = m + 1
		}
	}
	return lo - 1
}

// at returns what is used at t.
func (tl *timeline) at(t int64) vec {
	if i := tl.idx(t); i >= 0 {
		return tl.pts[i].v
	}
	return vec{}
}

// max returns, per dimension, the most used at any instant of [from, to).
func (tl *timeline) max(from, to int64) vec {
	i := tl.idx(from)
	var m vec
	if i >= 0 {
		m = tl.pts[i].v
	}
	for k := i + 1; k < len(tl.pts) && tl.pts[k].t < to; k++ {
		v := &tl.pts[k].v
		for d := range m {
			if v[d] > m[d] {
				m[d] = v[d]
			}
		}
	}
	return m
}

// fits is how many copies of v fit over [from, to) on top of the use and
// of ex, within limit: copies(limit-max(from, to)-ex, v, n). The same
// as that, since copies is monotone in every dimension, it is the least
// over the window's points of what fits at each, so the walk stops at
// the first point with no room (most windows on a busy host end there).
func (tl *timeline) fits(from, to int64, limit, ex, v vec, n int) int {
	i := tl.idx(from)
	free := limit.sub(ex)
	if i >= 0 {
		n = min(n, copies(free.sub(tl.pts[i].v), v, n))
	} else {
		n = copies(free, v, n)
	}
	for k := i + 1; n > 0 && k < len(tl.pts) && tl.pts[k].t < to; k++ {
		n = min(n, copies(free.sub(tl.pts[k].v), v, n))
	}
	return n
}

// split makes sure a point starts at t and returns its index.
func (tl *timeline) split(t int64) int {
	i := tl.idx(t)
	if i >= 0 && tl.pts[i].t == t {
		return i
	}
	var v vec
	if i >= 0 {
		v = tl.pts[i].v
	}
	tl.pts = append(tl.pts, point{})
	copy(tl.pts[i+2:], tl.pts[i+1:])
	tl.pts[i+1] = point{t, v}
	return i + 1
}

// add adds v over [from, to) (v may be negative, to take an allocation away).
func (tl *timeline) add(from, to int64, v vec) {
	if from >= to {
		return
	}
	i := tl.split(from)
	j := tl.split(to)
	for k := i; k < j; k++ {
		p := &tl.pts[k].v
		for d := range p {
			p[d] += v[d]
		}
	}
	// Merge equal neighbours so that the table stays as short as the
	// function it describes (j first: removing it keeps i valid).
	if same(&tl.pts[j].v, &tl.pts[j-1].v) {
		tl.remove(j)
	}
	if i > 0 && same(&tl.pts[i].v, &tl.pts[i-1].v) || i == 0 && tl.pts[0].v == (vec{}) {
		tl.remove(i)
	}
}

// same is *a == *b, without the call to compare memory.
func same(a, b *vec) bool {
	for d := range a {
		if a[d] != b[d] {
			return false
		}
	}
	return true
}

func (tl *timeline) remove(i int) {
	copy(tl.pts[i:], tl.pts[i+1:])
	tl.pts = tl.pts[:len(tl.pts)-1]
}

// gc forgets the points before t, keeping the one in force at t.
func (tl *timeline) gc(t int64) {
	i := tl.idx(t)
	if i <= 0 {
		return
	}
	n := copy(tl.pts, tl.pts[i:])
	tl.pts = tl.pts[:n]
	if tl.pts[0].v == (vec{}) {
		tl.remove(0)
	}
}

// next returns the time of the first point after t (ok false if none).
func (tl *timeline) next(t int64) (int64, bool) {
	i := tl.idx(t) + 1
	if i < len(tl.pts) {
		return tl.pts[i].t, true
	}
	return 0, false
}

// firstOver returns the first instant of [from, to) at which the use plus v
// exceeds limit in some dimension, walking the points in the window; ok is
// false if there is none (v fits over the whole window).
func (tl *timeline) firstOver(from, to int64, v, limit vec) (int64, bool) {
	i := tl.idx(from)
	var cur vec
	if i >= 0 {
		cur = tl.pts[i].v
	}
	if from < to && !cur.add(v).le(limit) {
		return from, true
	}
	for k := i + 1; k < len(tl.pts) && tl.pts[k].t < to; k++ {
		if !tl.pts[k].v.add(v).le(limit) {
			return tl.pts[k].t, true
		}
	}
	return 0, false
}
