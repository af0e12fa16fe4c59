package control

import (
	"fmt"
	"sort"
	"strings"

	"vgrid/internal/model"
)

// The one rule between leases and guests, kept here and nowhere else:
//
//   - A guest runs only while its lease is held. What an agent is told
//     (Assignments) passes through guard: a workspace wanted running whose
//     lease is not running in the calendar is sent as wanted stopped, one
//     wanted suspended whose lease is over likewise.
//   - A lease's room is given back only when its guest is gone. A stop,
//     delete or cancel of a workspace whose guest may be up leaves its
//     lease running in the calendar; the lease is finished when the agent
//     reports the guest Stopped or Failed, or the workspace torn down
//     (in the same transaction as that report: releasesLocked). Where the
//     calendar moved on without waiting (a lease's end, a requeue, a
//     suspension), guard holds back new guests on the host until the
//     guests still up there leave room for them.
//
// So the QEMU processes on a host never take more than its capacity, and
// none runs without a lease, whatever the order of stops, reports and
// restarts of the control plane.

// guestUp reports whether the agent may have a guest process of ws up: it
// reported one starting, running or stopping.
func guestUp(ws model.Workspace) bool {
	if ws.Status.Node == "" {
		return false
	}
	switch ws.Status.State {
	case model.StateStarting, model.StateRunning, model.StateStopping:
		return true
	}
	return false
}

// wantsLease reports whether ws still wants its lease: not being deleted,
// and not stopped (a requeued workspace is stopped but waits for its lease
// to start again).
func wantsLease(ws model.Workspace) bool {
	switch ws.Desired {
	case model.DesiredDeleted:
		return false
	case model.DesiredStopped:
		return strings.HasPrefix(ws.Status.Reason, "requeued")
	}
	return true
}

// leaseStateFunc tells a lease's state in the calendar; ok is false when
// the calendar has no such lease.
type leaseStateFunc func(id string) (st model.LeaseState, ok bool)

// guard returns the workspaces of one host as its agent is to see them:
// each wanted running only while its lease runs (a guest already up whose
// lease was just suspended or requeued is left as it is: its new desired
// state is on its way), and a guest not yet up
// held back (Status.Hold) while the guests up on the host and those
// started before it would not leave room for it within capacity. It is
// pure; wss are the workspaces placed on the host.
func guard(wss []model.Workspace, lease leaseStateFunc, capacity model.Resources) []model.Workspace {
	out := make([]model.Workspace, len(wss))
	copy(out, wss)
	var used model.Resources
	upCount := 0
	var starting []int
	for i := range out {
		ws := &out[i]
		st, ok := lease(leaseID(*ws))
		switch ws.Desired {
		case model.DesiredRunning:
			switch {
			case ok && st == model.LeaseRunning:
			case ok && !st.Over() && !guestUp(*ws):
				// Its lease waits: not yet, but not stopped either.
				ws.Status.Hold = fmt.Sprintf("waiting for its lease (%s) to start", st)
				continue
			case ok && !st.Over():
				// Up while its lease was just suspended or requeued: the
				// workspace's new desired state (saved, or stopped) is
				// stored with that decision, after the value the host is
				// read here (wss is read before the calendar). Stopped
				// here, a guest to be saved would lose its memory, and its
				// lease end once resumed (the control-plane fault suite:
				// leases done short of their run, nobody having stopped
				// them).
			default:
				ws.Desired = model.DesiredStopped
				ws.Status.Reason = noLeaseReason(st, ok)
			}
		case model.DesiredSuspended:
			if !ok || st.Over() {
				ws.Desired = model.DesiredStopped
				ws.Status.Reason = noLeaseReason(st, ok)
			}
		}
		if guestUp(*ws) {
			used = used.Add(resourcesOf(ws.Spec))
			upCount++
		} else if ws.Desired == model.DesiredRunning {
			starting = append(starting, i)
		}
	}
	// First come, first started: in the order the calendar started them.
	sort.SliceStable(starting, func(a, b int) bool {
		x, y := out[starting[a]], out[starting[b]]
		if !x.Status.Timings.Scheduled.Equal(y.Status.Timings.Scheduled) {
			return x.Status.Timings.Scheduled.Before(y.Status.Timings.Scheduled)
		}
		return x.ID < y.ID
	})
	for _, i := range starting {
		ws := &out[i]
		need := resourcesOf(ws.Spec)
		if capacity.Fits(used.Add(need)) {
			used = used.Add(need)
			continue
		}
		ws.Status.Hold = fmt.Sprintf("waiting for room on %s: %d guest(s) still up there use %s", ws.Status.Node, upCount, describe(used))
	}
	return out
}

func noLeaseReason(st model.LeaseState, ok bool) string {
	if !ok {
		return "stopped: it holds no lease"
	}
	return fmt.Sprintf("stopped: its lease is %s", st)
}

func describe(r model.Resources) string {
	return fmt.Sprintf("%.3g cores, %s memory", float64(r.MilliCPU)/1000, r.Memory.Human())
}
