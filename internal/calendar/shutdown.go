package calendar

// Shut-down overheads (Policy.ShutdownTime). A lease's guests take time to
// shut down once their run ends, as they take time to boot before it: the
// hold of a run that ends keeps its slots for ShutdownTime after the run
// ([runTo, to) of a hold whose fate is fateEnd), so that nothing else is
// placed on them while the guests stop. The end action comes at the run's
// end (evStop; the control plane stops the guests then), and the slots are
// free at the hold's end (evEnd). Every placement of a run that ends
// counts the shutdown after it: a best-effort lease's start and backfill
// plan, a reservation's and a deadline lease's admission (the next hold
// on the same slots may not begin before the shutdown is over), an
// extension (the hold's end moves with the run's), a booked resume.
//
// What does not shut down: a suspension (its own time, memory to disk,
// then the slots are free), a requeue (the guests are stopped at once:
// their work is thrown away and the lease starts again from scratch), the
// source of a live migration (the guest left it when the move is over), a
// guest on a removed host. A run cut short (Finish, Cancel of a started
// lease, a shortening) shuts down from its new end, within the hold it
// had: a run shortened to end before a planned suspension or requeue has
// only the time left until then.
//
// A deadline lease meets its deadline when its run ends (the user's work
// is done); its shutdown may go past the deadline. A lease's End (its
// view, its admission) is its run's end.

// shutdown is how long a hold keeps its slots after a run that ends.
func (c *Calendar) shutdown() int64 { return int64(c.pol.ShutdownTime) }

// span is how long a run of run ns holds its slots from its start when
// it ends: the run, then the shutdown.
func (c *Calendar) span(run int64) int64 { return run + c.shutdown() }

// shorten ends l's run at t (not before its hold began), the rest of its
// hold after t being the shutdown, cut to ShutdownTime: the slots after
// t+ShutdownTime are given back. The hold's end does not move later. The
// caller sets the fate and schedules.
func (c *Calendar) shorten(l *lease, t int64) {
	t = max(t, l.holdFrom)
	c.dropBooked(l) // a run that ends resumes no more
	c.cut(l, min(t+c.shutdown(), l.to))
	c.endRun(l, t)
}

// stopNow ends l's run at t, its guests stopped then (no end action
// comes later: the caller emits one if it is due) and shutting down until
// its hold ends, for cause.
func (c *Calendar) stopNow(l *lease, t int64, cause string) {
	c.shorten(l, t)
	l.fate, l.cause, l.stopped = fateEnd, cause, true
	c.schedule(l)
}

// endRun ends l's run at t within its hold, in the lease and in the
// chart's record of the hold. A run that had not begun by t keeps none.
func (c *Calendar) endRun(l *lease, t int64) {
	l.runTo = min(l.runTo, t)
	l.T = min(l.T, l.runTo)
	k := len(l.segs) - len(l.allocs)
	for i := range l.allocs {
		s := &l.segs[k+i]
		s.runTo = min(s.runTo, max(t, s.from))
		s.runFrom = min(s.runFrom, s.runTo)
		s.ovFrom = min(s.ovFrom, s.runFrom)
	}
}

// shuttingDown says l's run is over and its guests are shutting down:
// its hold is ending and nothing may change it any more.
func (l *lease) shuttingDown() bool { return l.held && l.stopped }
