package control

import (
	"context"
	"errors"
	"fmt"

	"vgrid/internal/metrics"
	"vgrid/internal/store"
)

// Several control-plane replicas share one store; one of them, elected
// (internal/controlplane), leads: it alone owns the calendar and runs the
// reconciler. A controller leads from New on (a single control plane);
// SetLeading(false) makes it a follower, whose calendar decisions fail
// with store.ErrNotLeader (its server forwards them to the leader) and
// whose Run does nothing. Leading is not what keeps two replicas from
// booking the same capacity: the store's fence is (store.Fence), since a
// replica may lead in its own eyes after its election was lost.

// SetLeading makes the controller lead or follow. A controller that starts
// to lead forgets its calendar (the next use restores it from the stored
// leases, which is what the last leader wrote), gives the hosts a fresh
// grace before their silence counts (they were talking to another
// replica), and wakes Run at once.
func (ctl *Controller) SetLeading(leading bool) {
	ctl.mu.Lock()
	was := ctl.leading
	ctl.leading = leading
	if leading != was {
		ctl.cal = nil
		ctl.calHosts = nil
		ctl.lateHosts = map[string]bool{}
		ctl.fenced = map[string]bool{}
		ctl.started = ctl.now()
	}
	ctl.mu.Unlock()
	metrics.SetLeader(leading)
	if leading && !was {
		ctl.wake()
	}
}

// Leading reports whether the controller leads.
func (ctl *Controller) Leading() bool {
	ctl.mu.Lock()
	defer ctl.mu.Unlock()
	return ctl.leading
}

// errFollower is what a follower's calendar use returns.
var errFollower = fmt.Errorf("this replica does not lead the control plane: %w", store.ErrNotLeader)

// leadCheck returns errFollower unless the controller leads. ctl.mu held.
func (ctl *Controller) leadCheck() error {
	if !ctl.leading {
		return errFollower
	}
	return nil
}

// IsNotLeader reports whether err says the request needs the leading
// replica: this one follows, or lost its election while deciding.
func IsNotLeader(err error) bool { return err != nil && errors.Is(err, store.ErrNotLeader) }

// reconcileIfLeading is Run's look at the calendar, on the leader only.
func (ctl *Controller) reconcileIfLeading(ctx context.Context) error {
	if !ctl.Leading() {
		return nil
	}
	return ctl.Reconcile(ctx)
}
