package control

import (
	"fmt"
	"strings"
	"time"

	"vgrid/internal/calendar"
	"vgrid/internal/model"
)

// Change is what a calendar action does to a workspace: its new value
// and the event to record. A zero Type means nothing changes.
type Change struct {
	WS      model.Workspace
	Type    string
	Message string
}

// transition applies a calendar action to the workspace of its lease. It is
// pure: end is the lease's run end as the calendar has it (zero if
// unknown), now the time of the decision. The workspace is unchanged (and
// Type empty) when the action is not for its current lease, when it is
// being deleted, or when the action is already carried out.
func transition(a calendar.Action, ws model.Workspace, end, now time.Time) Change {
	same := Change{WS: ws}
	if leaseID(ws) != a.Lease || ws.Desired == model.DesiredDeleted {
		return same // an earlier lease of the workspace, or going away
	}
	host := ""
	if len(a.Hosts) > 0 {
		host = a.Hosts[0]
	}
	st := &ws.Status
	// The lease that displaced it may be another project's: not named.
	a.Reason = MaskReason(a.Reason, ws.Project)
	resume := func() Change {
		if ws.Desired == model.DesiredRunning && st.State != model.StateSuspended {
			return same
		}
		moved := ""
		if host != st.Node && st.Node != "" && st.State != model.StateSuspended && wantsLease(ws) {
			// Resumed elsewhere before its guest is saved here: it moves
			// once saved (Report).
			ws.Desired, st.ResumeOn = model.DesiredSuspended, host
			return Change{WS: ws, Type: "resuming", Message: fmt.Sprintf("to resume on %s once its memory is saved on %s", host, st.Node)}
		}
		st.ResumeOn = ""
		if host != st.Node && st.Node != "" && wantsLease(ws) {
			// Resumed elsewhere: the new host's agent copies the disk and
			// the saved memory from where they are first.
			from := st.Node
			if st.Move != nil {
				from = st.Move.From // not copied yet: still there
			}
			st.Move = &model.Move{From: from, Memory: true, Since: now}
			st.Node = host
			moved = fmt.Sprintf(" (its disk and saved memory copied from %s)", from)
		}
		if !wantsLease(ws) {
			// Stopped by its user while the calendar held it suspended
			// (its guest maybe still saving): never resumed; its lease is
			// withdrawn when the guest is gone (releasesLocked).
			return same
		}
		ws.Desired = model.DesiredRunning
		st.Reason = ""
		if !end.IsZero() {
			st.ExpiresAt = end
		}
		return Change{WS: ws, Type: "resuming", Message: fmt.Sprintf("resumed on %s until %s%s", host, end.UTC().Format(time.RFC3339), moved)}
	}
	switch a.Kind {
	case calendar.ActStart:
		if st.State == model.StateSuspended || ws.Desired == model.DesiredSuspended {
			return resume()
		}
		if ws.Desired != model.DesiredRunning && ws.Desired != model.DesiredStopped {
			return same
		}
		if ws.Desired == model.DesiredRunning && st.Node == host && st.State == model.StatePending {
			// Placed at admission; its lease starts now (after staging its
			// image): written, so that its host's agent, which held it
			// back while the lease waited, hears of it at once.
			st.Staging = nil
			return Change{WS: ws, Type: "lease-started", Message: fmt.Sprintf("its lease starts on %s", host)}
		}
		if ws.Desired == model.DesiredRunning && st.Node == host && (st.State == model.StateStarting || st.State == model.StateRunning) {
			return same // already started
		}
		if ws.Desired == model.DesiredStopped && st.Reason != "" && !strings.HasPrefix(st.Reason, "requeued") {
			return same // stopped by the user or its lease's end
		}
		if !st.StartedAt.IsZero() || !st.Timings.ProcessStarted.IsZero() {
			st.Generation++ // requeued: it boots again
		}
		ws.Desired = model.DesiredRunning
		st.Node, st.State, st.Reason = host, model.StatePending, ""
		st.Staging = nil // staged (or not): it boots now
		st.StartedAt, st.ExpiresAt, st.PID, st.Guest = time.Time{}, end, 0, nil
		created := st.Timings.Created
		st.Timings = model.Timings{Created: created, Scheduled: now}
		return Change{WS: ws, Type: "scheduled", Message: fmt.Sprintf("started by the lease calendar on %s", host)}
	case calendar.ActResume:
		return resume()
	case calendar.ActMigrate:
		// The calendar moves it live to make room (it holds both hosts
		// until the outcome, which EndMove gets; a guest that cannot
		// migrate now is seen by checkMigrations, which ends the move).
		if why := migratable(ws); why != "" || st.Node != a.From {
			return same
		}
		st.Migration = &model.Migration{To: a.To, Phase: model.MigrationPreparing, Since: now, Why: a.Reason, Calendar: true, Member: a.Member}
		return Change{WS: ws, Type: "migrating", Message: fmt.Sprintf("live migration from %s to %s begins (%s; due within %s)", a.From, a.To, a.Reason, a.Duration.Round(time.Second))}
	case calendar.ActSuspend:
		if ws.Desired != model.DesiredRunning {
			return same
		}
		cancelMigration(st)
		ws.Desired = model.DesiredSuspended
		st.Reason = a.Reason
		st.Suspensions++
		return Change{WS: ws, Type: "suspending", Message: a.Reason}
	case calendar.ActRequeue:
		if ws.Desired == model.DesiredStopped {
			// Requeued already, or stopped by its user while its guest
			// powers off: its lease is withdrawn when the guest is gone
			// (releasesLocked), never started again.
			return same
		}
		cancelMigration(st)
		ws.Desired = model.DesiredStopped
		st.Staging = nil
		st.Reason = "requeued: " + a.Reason
		switch st.State {
		case model.StatePending:
			st.State = model.StateQueued
		case model.StateStarting, model.StateRunning:
			st.State = model.StateStopping
		}
		return Change{WS: ws, Type: "requeued", Message: a.Reason}
	case calendar.ActEnd:
		if ws.Desired == model.DesiredStopped {
			return same
		}
		reason := fmt.Sprintf("lease ended at %s after %s", a.At.UTC().Format(time.RFC3339), ws.Spec.Duration)
		if a.Reason != "" && a.Reason != "cancelled" {
			reason += " (" + a.Reason + ")"
		}
		cancelMigration(st)
		ws.Desired = model.DesiredStopped
		st.Staging = nil // a lease cancelled while its image stages
		st.Reason = reason
		switch st.State {
		case model.StatePending, model.StateQueued, model.StateScheduled:
			st.State = model.StateStopped
		case model.StateStarting, model.StateRunning:
			st.State = model.StateStopping
		}
		return Change{WS: ws, Type: "stopping", Message: reason}
	case calendar.ActStage:
		return stageChange(a, ws, same)
	}
	return same
}

// cancelMigration asks the source to stop a migration under way: the
// guest is to stop or be saved where it runs (a copy of the migration, so
// the workspace it came with is not changed).
func cancelMigration(st *model.WorkspaceStatus) {
	if st.Migration != nil {
		m := *st.Migration
		m.Cancel = true
		st.Migration = &m
	}
}
