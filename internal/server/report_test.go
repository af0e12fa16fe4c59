package server

import (
	"context"
	"testing"

	"vgrid/api"
	"vgrid/internal/model"
)

// An agent that restarts adopts its running guests and reports them
// Starting until their guest agents answer again: the same process is not a
// new boot (no event, no boot-time sample), and a Failed workspace stays
// Failed when the agent then reports that nothing runs.
func TestReportsAfterAnAgentRestart(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	w, err := e.admin.CreateWorkspace(ctx, []byte(goodSpec))
	if err != nil {
		t.Fatal(err)
	}
	w = e.up(w)
	evs, _ := e.admin.WorkspaceEvents(ctx, "demo")
	w = e.report(w, api.AgentReport{State: model.StateStarting, PID: 7})
	if w.Status.State != model.StateRunning {
		t.Fatalf("the same QEMU reported Starting turned the workspace %s", w.Status.State)
	}
	if again, _ := e.admin.WorkspaceEvents(ctx, "demo"); len(again) != len(evs) {
		t.Fatalf("%d events after the adoption, %d before", len(again), len(evs))
	}
	// A new process is a new boot.
	w = e.report(w, api.AgentReport{State: model.StateStarting, PID: 8})
	if w.Status.State != model.StateStarting {
		t.Fatalf("a new QEMU process: %s, want Starting", w.Status.State)
	}
	w = e.report(w, api.AgentReport{State: model.StateFailed, Reason: "qemu: could not open disk"})
	w = e.report(w, api.AgentReport{State: model.StateStopped, Reason: w.Status.Reason})
	if w.Status.State != model.StateFailed || w.Status.Reason != "qemu: could not open disk" {
		t.Fatalf("after Failed then Stopped: %s %q", w.Status.State, w.Status.Reason)
	}
}
