package calendar

import (
	"math"
	"sort"
)

// A waiting lease's plan is a sweep (earliestOn) from the clock to its
// earliest start. After a release it is planned again, and the new start
// can only be earlier; but the sweep began again at the clock, passing the
// same points as the last one. sweepMemo keeps what the last sweep saw: an
// upper bound on how many members fit at each start up to the one it
// found. Since then, on the same table (the same backfill reservations
// before the lease, the same hosts), a host's count can only have risen
// if it was released (the release log), and by no more than its top; so
// no start at which the bound plus those tops is short of the members can
// be the new earliest, and the next sweep begins at the first one where it
// is not. The sweep then finds the same start and the same counts there.

// sweepStep says that over [t, the next step's t), at most n members fit.
type sweepStep struct {
	t int64
	n int
}

// sweepMemo is a lease's bound from its last sweep (identical members
// placed over all eligible hosts).
type sweepMemo struct {
	// The table it speaks of: at epoch epoch, host version hostVer,
	// behind the backfill reservations whose sequence is prev.
	epoch, hostVer, prev uint64
	pre, run             int64
	need                 int
	v                    vec
	// steps cover [steps[0].t, the found start]; the last one is the
	// found start, where all members fit.
	steps []sweepStep
}

// maxSweepSteps bounds a memo's steps (a longer sweep keeps none).
const maxSweepSteps = 64

// sweepFloor is the earliest start ≥ T0 at which l may fit now, by its
// sweep memo, and how much the release log may have raised its counts
// since (see sweepMemo); T0 and 0 when the memo does not apply. prev
// identifies the backfill reservations before l.
func (c *Calendar) sweepFloor(l *lease, prev uint64, T0, pre, run int64) (int64, int) {
	m := l.sweep
	if m == nil || c.noMemo || len(l.groups) != 1 || m.prev != prev || m.hostVer != c.hostVer ||
		m.epoch <= c.relMin || m.pre != pre || m.run != run || m.need != len(l.Members) ||
		m.v != l.groups[0].v || len(m.steps) == 0 || T0 < m.steps[0].t {
		return T0, 0
	}
	need, v := m.need, m.v
	rise := 0
	for i := sort.Search(len(c.rel), func(i int) bool { return c.rel[i].epoch > m.epoch }); i < len(c.rel); i++ {
		h := c.rel[i].h
		if h == nil {
			return T0, 0
		}
		// (A host released twice counts twice: a bound all the same.)
		rise += copies(h.cap, v, need)
		if rise >= need {
			return T0, 0
		}
	}
	for j, s := range m.steps {
		if j+1 < len(m.steps) && m.steps[j+1].t <= T0 {
			continue
		}
		if s.n+rise >= need {
			return max(s.t, T0), rise
		}
	}
	return T0, 0
}

// keepSweep makes l's sweep memo from the sweep just made from floor (its
// steps in c.sweepRec, the last one at the start it found) for a plan from
// T0: the old memo's steps over [T0, floor), raised by rise, then the new
// ones.
func (c *Calendar) keepSweep(l *lease, prev uint64, T0, floor int64, rise int, pre, run int64) {
	rec := c.sweepRec
	m := l.sweep
	if m == nil {
		m = &sweepMemo{}
		l.sweep = m
	}
	out := m.steps[:0]
	if floor > T0 {
		// The old steps over [T0, floor) (out only ever writes at or
		// before the step it reads).
		for j, s := range m.steps {
			if s.t >= floor {
				break
			}
			if j+1 < len(m.steps) && m.steps[j+1].t <= T0 {
				continue
			}
			out = append(out, sweepStep{max(s.t, T0), s.n + rise})
		}
	}
	if len(out)+len(rec) > maxSweepSteps || len(rec) == 0 || rec[0].t != floor {
		l.sweep = nil
		return
	}
	out = append(out, rec...)
	*m = sweepMemo{epoch: c.epoch, hostVer: c.hostVer, prev: prev, pre: pre, run: run,
		need: len(l.Members), v: l.groups[0].v, steps: out}
}

// sweepPlan is earliestPlaced from T0 for plan, starting the sweep at the
// floor its memo gives and keeping the memo up to date.
func (c *Calendar) sweepPlan(l *lease, prev uint64, T0, pre, run int64) (int64, []*host, bool) {
	if c.noMemo || len(l.groups) != 1 {
		return c.earliestPlaced(l, T0, math.MaxInt64, pre, run)
	}
	floor, rise := c.sweepFloor(l, prev, T0, pre, run)
	c.sweepRec, c.recSweep = c.sweepRec[:0], true
	T, hosts, ok := c.earliestPlaced(l, floor, math.MaxInt64, pre, run)
	c.recSweep = false
	if ok {
		c.keepSweep(l, prev, T0, floor, rise, pre, run)
	} else {
		l.sweep = nil
	}
	return T, hosts, ok
}
