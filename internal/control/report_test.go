package control

import (
	"testing"

	"vgrid/api"
	"vgrid/internal/model"
)

// What an agent's report makes of a workspace.
func TestReportedState(t *testing.T) {
	ws := func(d model.Desired, st model.State, reason string) model.Workspace {
		return model.Workspace{Desired: d, Status: model.WorkspaceStatus{Node: "h1", State: st, Reason: reason, PID: 42}}
	}
	rep := func(st model.State, pid int, reason string) api.AgentReport {
		return api.AgentReport{State: st, PID: pid, Reason: reason}
	}
	for _, c := range []struct {
		name   string
		ws     model.Workspace
		rep    api.AgentReport
		state  model.State
		desire model.Desired
		reason string
	}{
		{"booted", ws(model.DesiredRunning, model.StateStarting, ""), rep(model.StateRunning, 42, ""),
			model.StateRunning, model.DesiredRunning, ""},
		{"a restarted agent adopts the same process", ws(model.DesiredRunning, model.StateRunning, ""), rep(model.StateStarting, 42, ""),
			model.StateRunning, model.DesiredRunning, ""},
		{"a new boot", ws(model.DesiredRunning, model.StateRunning, ""), rep(model.StateStarting, 43, ""),
			model.StateStarting, model.DesiredRunning, ""},
		{"late running report of a stopping one", ws(model.DesiredStopped, model.StateStopping, "stopped by the user"), rep(model.StateRunning, 42, ""),
			model.StateStopping, model.DesiredStopped, "stopped by the user"},
		{"powered off by itself", ws(model.DesiredRunning, model.StateRunning, ""), rep(model.StateStopped, 0, "the guest stopped by itself"),
			model.StateStopped, model.DesiredStopped, "the guest stopped by itself"},
		{"crashed", ws(model.DesiredRunning, model.StateRunning, ""), rep(model.StateFailed, 0, "qemu died"),
			model.StateFailed, model.DesiredStopped, "qemu died"},
		{"failed stays failed", ws(model.DesiredStopped, model.StateFailed, "qemu died"), rep(model.StateStopped, 0, ""),
			model.StateFailed, model.DesiredStopped, "qemu died"},
		{"saved", ws(model.DesiredSuspended, model.StateRunning, "preempted"), rep(model.StateSuspended, 0, ""),
			model.StateSuspended, model.DesiredSuspended, "preempted"},
		{"still saving", ws(model.DesiredSuspended, model.StateRunning, "preempted"), rep(model.StateRunning, 42, ""),
			model.StateRunning, model.DesiredSuspended, ""},
		{"ended while being saved", ws(model.DesiredSuspended, model.StateRunning, "preempted"), rep(model.StateStopped, 0, "preempted"),
			model.StateStopped, model.DesiredStopped, "its guest ended while being suspended; its memory was not saved"},
		{"save failed", ws(model.DesiredSuspended, model.StateRunning, "preempted"), rep(model.StateFailed, 0, "suspend: disk full"),
			model.StateFailed, model.DesiredStopped, "its guest ended while being suspended; its memory was not saved: suspend: disk full"},
		{"suspended before it booted", ws(model.DesiredSuspended, model.StatePending, "preempted"), rep(model.StateStopped, 0, "preempted"),
			model.StateStopped, model.DesiredSuspended, "preempted"},
		{"stopped as asked", ws(model.DesiredStopped, model.StateStopping, "stopped by the user"), rep(model.StateStopped, 0, ""),
			model.StateStopped, model.DesiredStopped, "stopped by the user"},
	} {
		t.Run(c.name, func(t *testing.T) {
			st, d, reason := reportedState(c.ws, c.rep)
			if st != c.state || d != c.desire || reason != c.reason {
				t.Fatalf("got %s desired %s reason %q; want %s desired %s reason %q", st, d, reason, c.state, c.desire, c.reason)
			}
		})
	}
}
