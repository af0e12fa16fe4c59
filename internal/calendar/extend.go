package calendar

// Extension and shortening of a lease's run.

import (
	"fmt"
	"math"
	"slices"
	"sort"
	"time"
)

// Extend changes a lease's run length by d (negative shortens) at now. It
// advances the calendar to now first and returns what is due, including
// the starts that a shortening allows.
//
// A lease whose slots end with its run (scheduled or running, and not to
// be suspended or requeued) keeps its hosts: the end of its hold and of its
// run move by d. A longer hold is granted only if every member still fits
// on its host over the added window, given every committed hold (nothing
// is preempted for it), and within its project's quotas; if not, the error
// is a *Refusal (ReasonExtend) that names the short resource, the host and
// the leases holding it (or the quota), and the longest extension possible
// now (Longest). A refusal changes nothing.
//
// A waiting lease (queued or suspended), or one whose hold ends in a
// suspension or a requeue, is owed d more (or less) run time; its slots are
// found when it is placed. Shortening a lease that is to be suspended or
// requeued so that its run ends before that ends it there instead.
//
// Shortening gives the slots after the new end back and lets the queue use
// them. The new end must stay after now, and after the start of a run that
// has not begun: shortening a lease to no more than it already ran is an
// error wrapping ErrInvalid, as are a zero d and extending a deadline lease
// past its deadline. The project's core-hours are charged for the added
// time and refunded for the time taken away. An unknown lease is an error
// wrapping ErrNotFound, one that is over (done, cancelled, refused, failed)
// one wrapping ErrFinished.
func (c *Calendar) Extend(id string, d time.Duration, now time.Time) ([]Action, error) {
	return c.extendBy(id, now, func(*lease, int64) (int64, error) { return int64(d), nil })
}

// ExtendTo moves the end of a lease's run to end ("until"): it is Extend
// by end minus the end the current run has if it is not interrupted (the
// End of its LeaseView when it is scheduled or running). A waiting lease
// (queued or suspended) has no end to move: that is an error wrapping
// ErrInvalid; extend it by a duration.
func (c *Calendar) ExtendTo(id string, end time.Time, now time.Time) ([]Action, error) {
	return c.extendBy(id, now, func(l *lease, t int64) (int64, error) {
		if !l.held {
			return 0, fmt.Errorf("it is %s and has no end to move (extend it by a duration): %w", l.st, ErrInvalid)
		}
		d := tick(end) - (l.T + l.remaining)
		if d == 0 {
			return 0, fmt.Errorf("its run already ends at %s: %w", fmtT(end), ErrInvalid)
		}
		return d, nil
	})
}

func (c *Calendar) extendBy(id string, now time.Time, by func(*lease, int64) (int64, error)) ([]Action, error) {
	c.rev++ // see Revision
	t := c.clamp(now)
	c.advance(t)
	l := c.leases[id]
	if l == nil {
		return c.take(), fmt.Errorf("extend lease %s: %w", id, ErrNotFound)
	}
	switch l.st {
	case StateDone, StateCancelled, StateRefused, StateFailed:
		return c.take(), fmt.Errorf("extend lease %s: it is %s: %w", id, l.st, ErrFinished)
	}
	if l.shuttingDown() {
		return c.take(), fmt.Errorf("extend lease %s: its run ended at %s and it is shutting down: %w", id, fmtT(tm(l.runTo)), ErrFinished)
	}
	if b := l.next; b != nil {
		return c.take(), fmt.Errorf("extend lease %s: it is to be suspended at %s for a reservation and its resume is booked from %s: extend it once it has resumed: %w",
			id, fmtT(tm(l.runTo)), fmtT(tm(b.T)), ErrInvalid)
	}
	d, err := by(l, t)
	if err == nil {
		var r *Refusal
		if r, err = c.extend(l, d, t); r != nil {
			return c.take(), r
		}
	}
	if err != nil {
		return c.take(), fmt.Errorf("extend lease %s: %w", id, err)
	}
	c.advance(t)
	return c.take(), nil
}

// extend changes l's run length by d at t (the clock): a refusal, or an
// error for a change that makes no sense, or nil when it is done.
func (c *Calendar) extend(l *lease, d, t int64) (*Refusal, error) {
	if d == 0 {
		return nil, fmt.Errorf("extension by 0: %w", ErrInvalid)
	}
	if d > int64(MaxDuration) || d < -int64(MaxDuration) || l.run+d > int64(MaxDuration) {
		return nil, fmt.Errorf("extension by %v: a lease runs at most %v: %w", time.Duration(d), MaxDuration, ErrInvalid)
	}
	if !l.held {
		// Waiting: only the run time owed changes.
		if l.remaining+d <= 0 {
			return nil, fmt.Errorf("shortening by %v leaves no run: it has %v left to run: %w",
				time.Duration(-d), time.Duration(l.remaining), ErrInvalid)
		}
		if r := c.extendRefusal(l, d, false); r != nil {
			return r, nil
		}
		c.lengthen(l, d)
		// Its memo and plan, and those of the leases behind it, assumed
		// the old length: the next pass looks at the whole queue again.
		l.memoPass, l.planEpoch = 0, 0
		c.renew(l)
		c.released(nil)
		c.needPass = true
		return nil, nil
	}
	end := l.T + l.remaining // where the run ends if nothing stops it
	newEnd := end + d
	// It has run up to now, or up to the start of its suspension.
	ranTo := min(t, l.runTo)
	switch {
	case l.T <= t && newEnd <= ranTo:
		when := fmt.Sprintf("now (%s)", fmtT(tm(t)))
		if ranTo < t {
			when = fmt.Sprintf("its suspension (%s)", fmtT(tm(ranTo)))
		}
		return nil, fmt.Errorf("shortening by %v would end its run at %s, not after %s: it has only %v left to run: %w",
			time.Duration(-d), fmtT(tm(newEnd)), when, time.Duration(end-ranTo), ErrInvalid)
	case l.T > t && newEnd <= l.T:
		return nil, fmt.Errorf("shortening by %v leaves no run: it runs %v from %s: %w",
			time.Duration(-d), time.Duration(l.remaining), fmtT(tm(l.T)), ErrInvalid)
	case l.Kind == Deadline && d > 0 && newEnd > tick(l.Deadline):
		return nil, fmt.Errorf("extending by %v would end it at %s, after its deadline %s: %w",
			time.Duration(d), fmtT(tm(newEnd)), fmtT(l.Deadline), ErrInvalid)
	}
	switch {
	case l.fate == fateEnd && d > 0:
		if r := c.extendRefusal(l, d, true); r != nil {
			return r, nil
		}
		c.grow(l, newEnd)
		c.schedule(l)
	case l.fate == fateEnd:
		c.shorten(l, newEnd)
		c.schedule(l)
	default:
		if r := c.extendRefusal(l, d, false); r != nil {
			return r, nil
		}
		// To be suspended (from runTo) or requeued (at to): a run that
		// now ends before that just ends.
		stop := l.to
		if l.fate == fateSuspend {
			stop = l.runTo
		}
		if newEnd <= stop {
			// It shuts down from newEnd, within the hold it had.
			c.shorten(l, newEnd)
			l.fate, l.cause = fateEnd, ""
			c.schedule(l)
		}
	}
	c.lengthen(l, d)
	return nil, nil
}

// lengthen changes l's run length and what it is owed by d, charging (or
// refunding) its project's core-hours.
func (c *Calendar) lengthen(l *lease, d int64) {
	c.mark(l)
	l.run += d
	l.remaining += d
	l.Duration = time.Duration(l.run)
	charged := max(l.charged+coreSeconds(l.total[dCPU], d), 0)
	if charged != l.charged {
		p := c.project(l.Project)
		p.charged += charged - l.charged
		l.charged = charged
		c.markProject(p)
	}
}

// grow moves the end of l's run later, to newEnd, and the end of its
// hold (which ends with its run and its shutdown) by as much, on the same
// hosts; extendRefusal said it fits.
func (c *Calendar) grow(l *lease, newEnd int64) {
	c.holdUntil(l, newEnd, newEnd+(l.to-l.runTo)) // the shutdown the hold has
}

// holdUntil moves the end of l's run later, to newEnd, and the end of its
// hold to to, on the same hosts; the caller checked that they have the
// room.
func (c *Calendar) holdUntil(l *lease, newEnd, to int64) {
	from := l.to
	k := len(l.segs) - len(l.allocs)
	for i, a := range l.allocs {
		if a.to != from {
			continue // a migration's source, given up before the end
		}
		a.h.tl.add(from, to, a.v)
		a.to = to
		l.segs[k+i].to, l.segs[k+i].runTo = to, newEnd
	}
	if p := c.project(l.Project); p.quota != nil {
		p.qtl.add(from, to, l.qvec())
	}
	l.to, l.runTo = to, newEnd
	// Slots taken, as by a commit: the queue's plans must not be reused,
	// and the plan of the lease at its head may move, which can let one
	// behind it start now.
	c.commits++
	if c.queued > 0 {
		c.needPass = true
	}
}

// endsWith sums, by host, l's allocations that end with its hold (all of
// them but the sources of calendar-decided migrations).
func endsWith(l *lease) []hostVec {
	var out []hostVec
	for _, a := range l.allocs {
		if a.to != l.to {
			continue
		}
		i := slices.IndexFunc(out, func(x hostVec) bool { return x.h == a.h })
		if i < 0 {
			out = append(out, hostVec{a.h, a.v})
		} else {
			out[i].v = out[i].v.add(a.v)
		}
	}
	return out
}

// extendRefusal says why l's run cannot be longer by d, or nil if it can.
// slots says that its hold's end moves too, so that its hosts and its
// project's concurrent quota must have room over [end, end+d). The refusal's
// Longest is the longest extension that every limit allows.
func (c *Calendar) extendRefusal(l *lease, d int64, slots bool) *Refusal {
	var r *Refusal
	longest := d
	from, to := l.to, l.to+d
	p := c.project(l.Project)
	if slots {
		// The host whose table is first too full after the end.
		var worst *hostVec
		at := int64(math.MaxInt64)
		ends := endsWith(l)
		for i := range ends {
			a := &ends[i]
			if x, over := a.h.tl.firstOver(from, to, a.v, a.h.cap); over && (x < at || x == at && a.h.Name < worst.h.Name) {
				worst, at = a, x
			}
		}
		if worst != nil {
			h := worst.h
			r = &Refusal{Lease: l.ID, Reason: ReasonExtend, Host: h.Name, From: tm(from), To: tm(to)}
			r.Resource, r.Requested, r.Free = shortDim(h.cap.sub(h.tl.max(from, to)), worst.v)
			c.noteHost(r, h)
			// Who holds the host from there to the end asked for.
			seen := map[string]bool{}
			for _, b := range h.allocs {
				if b.l != l && b.from < to && b.to > at && !seen[b.l.ID] {
					seen[b.l.ID] = true
					r.Blocking = append(r.Blocking, b.l.ID)
				}
			}
			sort.Strings(r.Blocking)
			longest = min(longest, at-from)
		}
		if p.quota != nil {
			if x, over := p.qtl.firstOver(from, to, l.qvec(), p.limit); over {
				if r == nil {
					why, _ := c.quotaOver(l, from, to)
					r = &Refusal{Lease: l.ID, Reason: ReasonExtend, From: tm(from), To: tm(to), Detail: why}
				}
				longest = min(longest, x-from)
			}
		}
	}
	if cpu := l.total[dCPU]; d > 0 && p.quota != nil && p.quota.CoreHours > 0 && cpu > 0 {
		cost := coreSeconds(cpu, d) / 3600
		left := p.quota.CoreHours - p.charged/3600
		if cost > left+1e-9 {
			if r == nil {
				r = &Refusal{Lease: l.ID, Reason: ReasonExtend, Resource: "core-hours", Requested: cost, Free: left,
					Detail: fmt.Sprintf("core-hours: %v more needs %.2f, project %s has %.2f of %.2f left",
						time.Duration(d), cost, l.Project, math.Max(left, 0), p.quota.CoreHours)}
				if slots {
					r.From, r.To = tm(from), tm(to)
				}
			}
			// The whole seconds that what is left pays for.
			secs := math.Floor(math.Max(left, 0) * 3600 * 1000 / float64(cpu))
			longest = min(longest, int64(math.Min(secs, float64(d/1e9)))*1e9)
		}
	}
	if r == nil {
		return nil
	}
	r.Longest = time.Duration(max(longest, 0) / 1e9 * 1e9)
	return r
}
