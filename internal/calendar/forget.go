package calendar

import "fmt"

// Forget drops a finished lease (done, cancelled or failed) from the
// calendar, to bound the memory of a long run: Get, Remaining, Leases,
// Snapshot, Changes and the Gantt chart no longer know it, and calls
// naming it fail with ErrNotFound. It changes no decision: a finished
// lease holds no slots, and what it counted for (fair-share usage,
// core-hours) is its project's. A lease that has not finished is not
// forgotten (ErrInvalid).
//
// The server does not call it (a lease's record and history stay); the
// simulator does, once it has taken a lease's result.
func (c *Calendar) Forget(id string) error {
	l := c.leases[id]
	if l == nil {
		return fmt.Errorf("forget lease %s: %w", id, ErrNotFound)
	}
	switch l.st {
	case StateDone, StateCancelled, StateFailed:
	default:
		return fmt.Errorf("forget lease %s: it is %s, not finished: %w", id, l.st, ErrInvalid)
	}
	if l.held || l.queued {
		return fmt.Errorf("forget lease %s: it still holds slots or waits: %w", id, ErrInvalid)
	}
	c.rev++ // see Revision
	delete(c.leases, id)
	delete(c.dirty, l)
	return nil
}
