package calendar

import (
	"time"

	"vgrid/internal/model"
)

// HostCapacity returns a host's capacity as the calendar holds it (what
// it was given, without overcommit), for charts that divide booked
// resources by capacity: the live host of that name, else the last
// removed one; false if the calendar never had it. Read-only.
func (c *Calendar) HostCapacity(name string) (model.Resources, bool) {
	if h := c.byName[name]; h != nil {
		return h.Capacity, true
	}
	for i := len(c.hosts) - 1; i >= 0; i-- {
		if c.hosts[i].Name == name {
			return c.hosts[i].Capacity, true
		}
	}
	return model.Resources{}, false
}

// Remaining is Get(id).Remaining, the run time the lease still has,
// without building the rest of its view (a simulator asks for it at
// every start, and a view of a lease of thousands of members costs as
// many host names).
func (c *Calendar) Remaining(id string) (time.Duration, bool) {
	l := c.leases[id]
	if l == nil {
		return 0, false
	}
	return c.remainingOf(l), true
}

// remainingOf is l's view's Remaining: the run time it was granted, less
// what it has run of its current hold; 0 once it is over.
func (c *Calendar) remainingOf(l *lease) time.Duration {
	switch {
	case l.held && l.stopped:
		return 0 // its run is over: it is shutting down
	case l.held:
		if l.started && c.now > l.T {
			return time.Duration(l.remaining - (min(c.now, l.runTo) - l.T))
		}
	case l.queued && l.planned:
	case l.st == StateDone || l.st == StateCancelled || l.st == StateFailed:
		return 0
	}
	return time.Duration(l.remaining)
}
