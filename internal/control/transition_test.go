package control

import (
	"strings"
	"testing"
	"time"

	"vgrid/internal/calendar"
	"vgrid/internal/model"
)

// Every calendar action against every workspace state (with the desired
// state the server gives it in that state): the resulting desired state,
// observed state, host and the event.
func TestTransitionEveryActionEveryState(t *testing.T) {
	now := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	end := now.Add(time.Hour)
	type want struct {
		desired model.Desired
		state   model.State
		node    string
		event   string
	}
	type row struct {
		state   model.State
		desired model.Desired
		node    string
		reason  string
	}
	rows := []row{
		{model.StateQueued, model.DesiredRunning, "", ""},
		{model.StateScheduled, model.DesiredRunning, "", ""},
		{model.StatePending, model.DesiredRunning, "n1", ""},
		{model.StateStarting, model.DesiredRunning, "n1", ""},
		{model.StateRunning, model.DesiredRunning, "n1", ""},
		{model.StateStopping, model.DesiredStopped, "n1", "stopped by user"},
		{model.StateStopped, model.DesiredStopped, "n1", "stopped by user"},
		{model.StateStopped, model.DesiredStopped, "n1", "requeued: preempted by x"},
		{model.StateSuspended, model.DesiredSuspended, "n1", "preempted by x"},
		{model.StateFailed, model.DesiredStopped, "n1", "crashed"},
	}
	// What each action does from each row, in row order.
	wants := map[calendar.ActionKind][]want{
		calendar.ActStart: {
			{model.DesiredRunning, model.StatePending, "n1", "scheduled"},
			{model.DesiredRunning, model.StatePending, "n1", "scheduled"},
			{model.DesiredRunning, model.StatePending, "n1", "lease-started"}, // placed at admission: its host is woken
			{model.DesiredRunning, model.StateStarting, "n1", ""},
			{model.DesiredRunning, model.StateRunning, "n1", ""},
			{model.DesiredStopped, model.StateStopping, "n1", ""}, // the user stopped it
			{model.DesiredStopped, model.StateStopped, "n1", ""},
			{model.DesiredRunning, model.StatePending, "n1", "scheduled"}, // requeued: boots again
			{model.DesiredRunning, model.StateSuspended, "n1", "resuming"},
			{model.DesiredStopped, model.StateFailed, "n1", ""},
		},
		calendar.ActResume: {
			// Never suspended: nothing to resume.
			{model.DesiredRunning, model.StateQueued, "", ""},
			{model.DesiredRunning, model.StateScheduled, "", ""},
			{model.DesiredRunning, model.StatePending, "n1", ""},
			{model.DesiredRunning, model.StateStarting, "n1", ""},
			{model.DesiredRunning, model.StateRunning, "n1", ""},
			// Stopped by its user (or failed): never resumed; its lease is
			// withdrawn when the guest is gone.
			{model.DesiredStopped, model.StateStopping, "n1", ""},
			{model.DesiredStopped, model.StateStopped, "n1", ""},
			{model.DesiredRunning, model.StateStopped, "n1", "resuming"},
			{model.DesiredRunning, model.StateSuspended, "n1", "resuming"},
			{model.DesiredStopped, model.StateFailed, "n1", ""},
		},
		calendar.ActSuspend: {
			{model.DesiredSuspended, model.StateQueued, "", "suspending"},
			{model.DesiredSuspended, model.StateScheduled, "", "suspending"},
			{model.DesiredSuspended, model.StatePending, "n1", "suspending"},
			{model.DesiredSuspended, model.StateStarting, "n1", "suspending"},
			{model.DesiredSuspended, model.StateRunning, "n1", "suspending"},
			{model.DesiredStopped, model.StateStopping, "n1", ""},
			{model.DesiredStopped, model.StateStopped, "n1", ""},
			{model.DesiredStopped, model.StateStopped, "n1", ""},
			{model.DesiredSuspended, model.StateSuspended, "n1", ""},
			{model.DesiredStopped, model.StateFailed, "n1", ""},
		},
		calendar.ActRequeue: {
			{model.DesiredStopped, model.StateQueued, "", "requeued"},
			{model.DesiredStopped, model.StateScheduled, "", "requeued"},
			{model.DesiredStopped, model.StateQueued, "n1", "requeued"},
			{model.DesiredStopped, model.StateStopping, "n1", "requeued"},
			{model.DesiredStopped, model.StateStopping, "n1", "requeued"},
			// Stopped by its user (or failed): never requeued, its lease
			// is withdrawn when the guest is gone.
			{model.DesiredStopped, model.StateStopping, "n1", ""},
			{model.DesiredStopped, model.StateStopped, "n1", ""},
			{model.DesiredStopped, model.StateStopped, "n1", ""},
			{model.DesiredStopped, model.StateSuspended, "n1", "requeued"},
			{model.DesiredStopped, model.StateFailed, "n1", ""},
		},
		calendar.ActEnd: {
			{model.DesiredStopped, model.StateStopped, "", "stopping"},
			{model.DesiredStopped, model.StateStopped, "", "stopping"},
			{model.DesiredStopped, model.StateStopped, "n1", "stopping"},
			{model.DesiredStopped, model.StateStopping, "n1", "stopping"},
			{model.DesiredStopped, model.StateStopping, "n1", "stopping"},
			{model.DesiredStopped, model.StateStopping, "n1", ""},
			{model.DesiredStopped, model.StateStopped, "n1", ""},
			{model.DesiredStopped, model.StateStopped, "n1", ""},
			{model.DesiredStopped, model.StateSuspended, "n1", "stopping"},
			{model.DesiredStopped, model.StateFailed, "n1", ""},
		},
	}
	// Stage: recorded (Status.Staging) on a workspace waiting to start;
	// nothing otherwise (see TestStageTransition).
	wants[calendar.ActStage] = []want{
		{model.DesiredRunning, model.StateQueued, "", "staging"},
		{model.DesiredRunning, model.StateScheduled, "", "staging"},
		{model.DesiredRunning, model.StatePending, "n1", "staging"},
		{model.DesiredRunning, model.StateStarting, "n1", ""},
		{model.DesiredRunning, model.StateRunning, "n1", ""},
		{model.DesiredStopped, model.StateStopping, "n1", ""},
		{model.DesiredStopped, model.StateStopped, "n1", ""},
		{model.DesiredStopped, model.StateStopped, "n1", ""},
		{model.DesiredSuspended, model.StateSuspended, "n1", ""},
		{model.DesiredStopped, model.StateFailed, "n1", ""},
	}
	for kind, ws := range wants {
		for i, r := range rows {
			w := model.Workspace{ID: "w1", Project: "p", Spec: model.WorkspaceSpec{Name: "a", Duration: model.Duration(time.Hour)},
				Desired: r.desired, Status: model.WorkspaceStatus{State: r.state, Node: r.node, Reason: r.reason, Lease: "p/a", Generation: 1}}
			if r.state == model.StateRunning || r.state == model.StateStopped {
				w.Status.StartedAt = now.Add(-time.Minute)
			}
			a := calendar.Action{At: now, Kind: kind, Lease: "p/a", Hosts: []string{"n1"}, Reason: "preempted by x"}
			got := transition(a, w, end, now)
			exp := want{r.desired, r.state, r.node, ""}
			if ws != nil {
				exp = ws[i]
			}
			g := want{got.WS.Desired, got.WS.Status.State, got.WS.Status.Node, got.Type}
			if g != exp {
				t.Errorf("%s on %s/%s (%q): got %+v, want %+v", kind, r.state, r.desired, r.reason, g, exp)
			}
			// An action for another lease, or on a workspace being
			// deleted, changes nothing.
			other := a
			other.Lease = "p/a#2"
			if ch := transition(other, w, end, now); ch.Type != "" || ch.WS.Desired != w.Desired || ch.WS.Status.State != w.Status.State {
				t.Errorf("%s of another lease on %s changed it: %+v", kind, r.state, ch)
			}
			del := w
			del.Desired = model.DesiredDeleted
			if ch := transition(a, del, end, now); ch.Type != "" || ch.WS.Desired != model.DesiredDeleted {
				t.Errorf("%s on a deleted workspace changed it: %+v", kind, ch)
			}
		}
	}
}

// A stop: from every state, with the user's reason; a requeued workspace
// (stopped by the calendar, its lease waiting) is stopped again so that its
// lease ends; a stopped or deleted one is refused or skipped.
func TestStopped(t *testing.T) {
	for _, tc := range []struct {
		state   model.State
		desired model.Desired
		reason  string
		want    model.State
		err     string
	}{
		{model.StateQueued, model.DesiredRunning, "", model.StateStopped, ""},
		{model.StateScheduled, model.DesiredRunning, "", model.StateStopped, ""},
		{model.StatePending, model.DesiredRunning, "", model.StateStopped, ""},
		{model.StateStarting, model.DesiredRunning, "", model.StateStopping, ""},
		{model.StateRunning, model.DesiredRunning, "", model.StateStopping, ""},
		{model.StateSuspended, model.DesiredSuspended, "preempted by x", model.StateSuspended, ""},
		{model.StateQueued, model.DesiredStopped, "requeued: preempted by x", model.StateStopped, ""},
		{model.StateStopped, model.DesiredStopped, "stopped by user", model.StateStopped, "skip"},
		{model.StateStopping, model.DesiredDeleted, "", model.StateStopping, "being deleted"},
	} {
		ws := model.Workspace{Spec: model.WorkspaceSpec{Name: "a"}, Desired: tc.desired, Status: model.WorkspaceStatus{State: tc.state, Reason: tc.reason}}
		err := stopped(&ws, "stopped by user")
		switch {
		case tc.err == "" && err != nil, tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("%s/%s %q: error %v, want %q", tc.state, tc.desired, tc.reason, err, tc.err)
		case tc.err == "" && (ws.Desired != model.DesiredStopped || ws.Status.State != tc.want || ws.Status.Reason != "stopped by user"):
			t.Errorf("%s/%s %q: got %s/%s %q, want %s/stopped", tc.state, tc.desired, tc.reason, ws.Status.State, ws.Desired, ws.Status.Reason, tc.want)
		}
	}
}

// A suspended workspace resumed on another host moves there, its files
// copied from where it was saved; one resumed again before the copy
// finished still copies from the first host.
func TestResumeElsewhereMoves(t *testing.T) {
	now := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	ws := model.Workspace{Project: "p", Spec: model.WorkspaceSpec{Name: "w"}, Desired: model.DesiredSuspended,
		Status: model.WorkspaceStatus{Node: "h1", State: model.StateSuspended, Lease: "p/w"}}
	ch := transition(calendar.Action{Kind: calendar.ActResume, Lease: "p/w", Hosts: []string{"h2"}}, ws, now.Add(time.Hour), now)
	m := ch.WS.Status.Move
	if ch.Type != "resuming" || ch.WS.Status.Node != "h2" || m == nil || m.From != "h1" || !m.Memory || ch.WS.Desired != model.DesiredRunning {
		t.Fatalf("resume elsewhere: %+v move %+v", ch, m)
	}
	again := ch.WS
	again.Desired, again.Status.State = model.DesiredSuspended, model.StateSuspended
	ch = transition(calendar.Action{Kind: calendar.ActResume, Lease: "p/w", Hosts: []string{"h3"}}, again, now.Add(time.Hour), now)
	if m := ch.WS.Status.Move; ch.WS.Status.Node != "h3" || m == nil || m.From != "h1" {
		t.Fatalf("resumed again elsewhere before the copy: node %s move %+v", ch.WS.Status.Node, m)
	}
	ch = transition(calendar.Action{Kind: calendar.ActResume, Lease: "p/w", Hosts: []string{"h1"}}, ws, now.Add(time.Hour), now)
	if ch.WS.Status.Move != nil || ch.WS.Status.Node != "h1" {
		t.Fatalf("resume in place moved: %+v", ch.WS.Status)
	}
}
