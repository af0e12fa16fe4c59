package calendar

import "slices"

// Running on: a lease to be suspended or requeued (started in a gap, or
// displaced for a reservation or a deadline lease) whose reason went away
// (the reservation was cancelled or cut short, a lease ended early) keeps
// running instead, when its hosts have the room for the rest of its run.

// noteStop records that l's hold now ends in a suspension or a requeue,
// so that the pass looks at whether it may run on (runOnAll).
func (c *Calendar) noteStop(l *lease) {
	l.roEpoch = ^uint64(0) // nothing known of its running on
	if !l.inStops {
		l.inStops = true
		c.stops = append(c.stops, l)
	}
}

// mayRunOn says whether l is still to be stopped and could run on: held,
// its stop not begun, nothing booked after it (a deadline lease's resume)
// and no moves under way. A hold cut before its run began (a requeue
// while it stages or boots) has lost its run's start (cut): it is
// requeued as planned, and starts again from the queue.
func (c *Calendar) mayRunOn(l *lease) bool {
	return l.held && l.fate != fateEnd && !l.suspendSent && !l.stopped && c.now < l.runTo &&
		l.T < l.runTo && l.next == nil && len(l.moves) == 0 && l.st != StateCancelled
}

// runOnAll lets each lease to be stopped run on where it can (runOn), in
// queue order, given tents, the pass's backfill reservations (out of the
// slot table): running on takes slots as a start would, and may not take
// those planned for a waiting lease ahead of it (by submission; those
// behind it are planned again, as they would be once it is back in the
// queue ahead of them: runOnBehind). Under backfilling none, nothing may overtake a
// waiting lease: it runs on only when none waits. It says whether one ran
// on.
func (c *Calendar) runOnAll(bf Backfill, tents []tentRec) bool {
	// In queue order (the order they were noted in may differ after a
	// restore).
	slices.SortFunc(c.stops, func(a, b *lease) int {
		if before(a, b) {
			return -1
		}
		if before(b, a) {
			return 1
		}
		return 0
	})
	keep, ran := c.stops[:0], false
	for _, l := range c.stops {
		if !c.mayRunOn(l) {
			l.inStops = false
			continue
		}
		if (bf != BackfillNone || c.queued == 0) && c.runOnBehind(l, tents) {
			l.inStops, ran = false, true
			continue
		}
		keep = append(keep, l)
	}
	clear(c.stops[len(keep):])
	c.stops = keep
	return ran
}

// runOnBehind is runOn for l unless a lease ahead of it in tents is
// planned on one of its hosts over the time it would run on (whether or
// not the host has room for both: a plan is not shared). What stopped it
// is kept: with nothing released since, the same plan still in tents, or
// the table without room after its hold, stops it again.
func (c *Calendar) runOnBehind(l *lease, tents []tentRec) bool {
	if l.roEpoch == c.epoch && !c.noMemo {
		if l.roBy == nil {
			return false
		}
		for i := range tents {
			if tents[i].l == l.roBy && tents[i].ver == l.roVer {
				return false
			}
		}
	}
	from, to := l.to, l.T+l.remaining+c.shutdown()
	for i := range tents {
		r := &tents[i]
		if before(r.l, l) && r.T-r.pre < to && from < r.T+r.run && c.sharesHost(r.hosts, l.hosts) {
			l.roEpoch, l.roBy, l.roVer = c.epoch, r.l, r.ver
			return false
		}
	}
	if c.runOn(l) {
		return true
	}
	l.roEpoch, l.roBy = c.epoch, nil
	return false
}

// sharesHost says whether a and b have a host in common.
func (c *Calendar) sharesHost(a, b []*host) bool {
	if len(a)*len(b) <= 64 {
		for _, h := range a {
			if slices.Contains(b, h) {
				return true
			}
		}
		return false
	}
	c.stamp++
	for _, h := range b {
		h.seen = c.stamp
	}
	for _, h := range a {
		if h.seen == c.stamp {
			return true
		}
	}
	return false
}

// runOn extends l's hold to the end of its run (and its shutdown), on the
// same hosts, if they have the room after it now and its project's quota
// allows: its suspension or requeue is dropped.
func (c *Calendar) runOn(l *lease) bool {
	end := l.T + l.remaining
	from, to := l.to, end+c.shutdown()
	if to <= from || !c.fitsOn(l, l.hosts, from, to) {
		return false
	}
	if _, over := c.quotaOver(l, from, to); over {
		return false
	}
	c.mark(l)
	c.holdUntil(l, end, to) // (no moves: every allocation ends at l.to)
	l.fate, l.cause = fateEnd, ""
	c.schedule(l)
	return true
}
