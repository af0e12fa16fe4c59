package calendar

// Best effort in gaps: a waiting best-effort lease that does not fit for
// its whole run may start in the room there is now, up to the next hold
// that needs that room (a reservation, a deadline lease, a waiting lease's
// backfill plan), planned to be suspended in time for it and resumed later
// where there is room. The lease makes progress between reservations
// instead of waiting for a window as long as its whole run, which a stream
// of later reservations might never leave it (the starvation of large
// best-effort leases under many reservations).

import (
	"fmt"
	"time"
)

// DefaultGapMinRun is the least run a gap must give a best-effort lease
// when Policy.GapMinRun is 0: shorter gaps would cost more in boot,
// suspension and resumption than they give.
const DefaultGapMinRun = 5 * time.Minute

func (c *Calendar) gapMinRun() int64 {
	if c.pol.GapMinRun > 0 {
		return int64(c.pol.GapMinRun)
	}
	return int64(DefaultGapMinRun)
}

// mayUseGaps says whether l may be started in a gap under the policy.
func (c *Calendar) mayUseGaps(l *lease) bool {
	return c.pol.Gaps && c.maySuspend(l) && l.Kind == BestEffort && l.Preempt == PreemptSuspend && l.remaining > c.gapMinRun()
}

// startInGap starts (or resumes) l at t for as long as there is room, when
// its whole run does not fit: on the hosts that hold its saved memory
// first, else where placement finds room for the least run. It gives up
// (false) when no gap gives the least run plus the time to suspend.
func (c *Calendar) startInGap(l *lease, t int64) bool {
	if !c.mayUseGaps(l) {
		return false
	}
	if l.savedOn != nil && !anyCordoned(l.savedOn) {
		if p := c.resumeInPlace(l); c.tryGap(l, l.savedOn, t, t+p, p, 0, true) {
			return true
		}
		if c.pol.ResumeInPlace {
			return false
		}
	}
	pre, boot := c.overheads(l)
	hosts, ok := c.placeNow(l, t, t+pre+c.gapMinRun())
	if !ok {
		c.gapMiss = true
		return false
	}
	if l.savedOn == nil && c.linkFor(l) {
		// The image comes over the link: the hold begins when it is there.
		// Its staging comes before the hold.
		by, lp, r := c.linkReady(l, hosts, t)
		if r != nil || !c.tryGap(l, hosts, by, by+boot, by+boot-lp.start, boot, false) {
			c.linkMiss = true
			return false
		}
		c.useLink(l, lp, by)
		return true
	}
	return c.tryGap(l, hosts, t, t+pre, pre, boot, l.savedOn != nil)
}

// tryGap commits l on hosts from `from` until the room there ends, its run
// [T, end-suspend) followed by its suspension, if that run is at least
// the gap minimum. (If the whole run and its shutdown fit, it just runs.)
func (c *Calendar) tryGap(l *lease, hosts []*host, from, T, pre, boot int64, resume bool) bool {
	sus := c.suspendOn(l, hosts)
	least := T + c.gapMinRun() + sus
	full := T + c.span(l.remaining)
	if !c.fitsOn(l, hosts, from, least) {
		return false
	}
	end := full
	for _, hv := range perHost(l, hosts) {
		if at, over := hv.h.tl.firstOver(least, full, hv.v, hv.h.cap); over && at < end {
			end = at
		}
	}
	if end >= full {
		c.commit(l, hosts, from, T, T+l.remaining, pre, boot, resume)
		return true // the whole run fits after all
	}
	if end-sus >= T+l.remaining {
		// The whole run fits, but not all of its shutdown: it runs to its
		// end and shuts down until the room ends (as a run cut short
		// before a planned stop does). A suspension there would save a
		// lease with no run left.
		c.commitHold(l, hosts, from, T, T+l.remaining, end, pre, boot, resume)
		return true
	}
	c.commitHold(l, hosts, from, T, end-sus, end, pre, boot, resume)
	l.fate = fateSuspend
	l.cause = c.gapCause(l, hosts, end)
	c.noteStop(l)
	c.schedule(l)
	return true
}

// gapCause names what ends l's gap at end: the lease whose hold begins
// there on one of its hosts, else a waiting lease's plan.
func (c *Calendar) gapCause(l *lease, hosts []*host, end int64) string {
	for _, h := range hosts {
		for _, a := range h.allocs {
			if a.l != l && a.from == end {
				return fmt.Sprintf("started in a gap: suspended for %s at %s", a.l.ID, fmtT(tm(end)))
			}
		}
	}
	return fmt.Sprintf("started in a gap: suspended at %s for a waiting lease's planned start", fmtT(tm(end)))
}

// suspendOn is how long suspending l takes when its members are on hosts.
func (c *Calendar) suspendOn(l *lease, hosts []*host) int64 {
	return c.memTime(l, hosts, func(h *host) int64 { return h.SuspendRate })
}
