package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"vgrid/internal/calendar"
	"vgrid/internal/model"
	"vgrid/internal/store"
)

// The lease calendar is owned by the server and guarded by placeMu. It is
// restored from the stored lease records on first use (persist.go), hosts
// registering later are added to it, and the reconciler advances it and
// carries out its actions.

// hostLabel pins a lease to one host (a restarted workspace's disk lives on
// its host). Every calendar host carries it.
const hostLabel = "vgrid.io/host"

// calendarLocked returns the calendar, building it on first use. placeMu
// must be held.
func (ctl *Controller) calendarLocked(ctx context.Context) (*calendar.Calendar, error) {
	if err := ctl.leadCheck(); err != nil {
		return nil, err
	}
	if ctl.cal != nil {
		return ctl.cal, nil
	}
	if err := ctl.loadCalendar(ctx); err != nil {
		return nil, err
	}
	// Volumes are stored apart (volumes/): the calendar takes them again.
	if err := ctl.syncCalendarVolumes(ctx, ctl.cal); err != nil {
		ctl.cal = nil
		return nil, err
	}
	return ctl.cal, nil
}

func calHost(n model.Node) calendar.Host {
	labels := map[string]string{}
	for k, v := range n.Labels {
		labels[k] = v
	}
	labels[hostLabel] = n.Name
	return calendar.Host{Name: n.Name, Capacity: n.Capacity, Labels: labels, Cordoned: n.Cordoned,
		BootTime: n.Measured.BootTime(), SuspendRate: n.Measured.SuspendRate(), ResumeRate: n.Measured.ResumeRate(),
		StageRate: n.Measured.StageRate(), Images: n.Images, MigrateRate: n.Measured.MigrateRate(),
		Storage: n.Storage != ""}
}

// buildCalendar makes the calendar of a store written before lease
// records were stored: from the nodes, re-submitting the workspaces' leases: first the workspaces that hold a host (as immediate leases pinned
// to it, for what is left of their time), then the others in creation
// order (queued best-effort leases keep their submit time; reservations and
// deadline leases are admitted again for their window). Lost across a
// restart: a started lease's kind (it is no longer preemptible), a
// suspended lease's remaining time (it is queued again for its whole
// duration, pinned to its host), suspension counts and the fair-share
// history. A waiting lease that is refused now has its workspace stopped
// with the reason.
func (ctl *Controller) buildCalendar(ctx context.Context) error {
	hosts, err := ctl.calendarHosts(ctx)
	if err != nil {
		return err
	}
	c, err := calendar.New(hosts, ctl.policy())
	if err != nil {
		return err
	}
	all, err := ctl.listWS(ctx, "ws/")
	if err != nil {
		return err
	}
	sort.SliceStable(all, func(i, j int) bool { return all[i].CreatedAt.Before(all[j].CreatedAt) })
	imgs, _ := ctl.images(ctx)
	now := ctl.now()
	var later []model.Workspace
	for _, ws := range all {
		if ws.Desired == model.DesiredDeleted || ws.Desired == model.DesiredStopped {
			continue
		}
		if !holds(ws) {
			switch {
			case ws.Status.State == model.StateQueued, ws.Status.State == model.StateScheduled,
				ws.Status.State == model.StateSuspended, ws.Desired == model.DesiredSuspended:
				later = append(later, ws)
			}
			continue // e.g. Failed: it waits for the user
		}
		end := ws.Status.ExpiresAt
		if end.IsZero() {
			end = ws.CreatedAt.Add(ws.Spec.Duration.D())
		}
		left := end.Sub(now)
		if left <= 0 {
			reason := fmt.Sprintf("lease ended at %s after %s", end.UTC().Format(time.RFC3339), ws.Spec.Duration)
			if _, err := ctl.stopRecord(ctx, ws.Project, ws.Spec.Name, reason); err != nil {
				ctl.log.Warn("stop at lease end", "workspace", ref(ws), "err", err)
			}
			continue
		}
		l := leaseOf(ws, imgs[ws.Spec.Image])
		l.Kind, l.Start, l.Deadline, l.Preempt, l.Duration = calendar.Immediate, time.Time{}, time.Time{}, calendar.PreemptNever, left
		l.Members[0].Labels = map[string]string{hostLabel: ws.Status.Node}
		if _, err := c.Submit(l, now); err != nil {
			ctl.log.Warn("calendar: restore running lease", "workspace", ref(ws), "err", err)
		}
	}
	for _, ws := range later {
		l := leaseOf(ws, imgs[ws.Spec.Image])
		l.Submitted = ws.CreatedAt
		if ws.Status.State == model.StateSuspended || ws.Desired == model.DesiredSuspended {
			l.Kind, l.Start, l.Deadline = calendar.BestEffort, time.Time{}, time.Time{}
			l.Members[0].Labels = map[string]string{hostLabel: ws.Status.Node}
		}
		if _, err := c.Submit(l, now); err != nil {
			ctl.log.Warn("calendar: restore lease", "workspace", ref(ws), "err", err)
			if _, err := ctl.stopRecord(ctx, ws.Project, ws.Spec.Name, "lease refused after a restart of the control plane: "+err.Error()); err != nil {
				ctl.log.Warn("stop workspace of a refused lease", "workspace", ref(ws), "err", err)
			}
		}
	}
	ctl.cal = c
	return nil
}

// leaseID names a workspace's lease: project/name, then project/name#gen
// for each restart by the user (and #<workspace id> appended when an
// earlier workspace of the same name had that lease ID). The workspace is
// what comes before the first '#'.
func leaseID(ws model.Workspace) string {
	if ws.Status.Lease != "" {
		return ws.Status.Lease
	}
	return ref(ws)
}

// refOfLease is the workspace (project, name) of a lease ID.
func refOfLease(id string) (project, name string, ok bool) {
	id, _, _ = strings.Cut(id, "#")
	return strings.Cut(id, "/")
}

// leaseOf is the calendar lease of a workspace: one member, its quantum.
func leaseOf(ws model.Workspace, img model.Image) calendar.Lease {
	l := calendar.Lease{
		ID: leaseID(ws), Project: ws.Project, Kind: ws.Spec.LeaseKind(),
		Members:  []calendar.Request{{Workspace: ws.Spec.Name, Resources: resourcesOf(ws.Spec)}},
		Duration: ws.Spec.Duration.D(),
		Image:    calendar.Image{Name: ws.Spec.Image, Size: model.ByteSize(img.Disk.Size)},
	}
	if ls := ws.Spec.Lease; ls != nil {
		l.Start, l.Deadline = ls.Start, ls.Deadline
		if l.Kind == calendar.BestEffort && ls.Preemptible != nil && !*ls.Preemptible {
			l.Preempt = calendar.PreemptNever
		}
	}
	if l.Kind != calendar.BestEffort {
		l.Preempt = ""
	}
	return l
}

// releaseActsLocked ends a workspace's lease in the calendar (Finish when
// it runs, Cancel when it waits) and returns what that makes due; the
// caller stores it. mu must be held.
func (ctl *Controller) releaseActsLocked(ctx context.Context, ws model.Workspace) ([]calendar.Action, error) {
	c, err := ctl.calendarLocked(ctx)
	if err != nil {
		return nil, err
	}
	id := leaseID(ws)
	// Carried to now first: what fell due since (a requeue, a suspension,
	// the lease's end) decides between Finish and Cancel. (Deciding on the
	// state before, a lease requeued on the way was "not running" for
	// Finish, and stayed queued for a workspace stopped by its user: the
	// control-plane fault suite, seed 858521132.)
	now := ctl.now()
	acts := c.Advance(now)
	v, ok := c.Get(id)
	if !ok {
		return acts, nil
	}
	var more []calendar.Action
	switch v.State {
	case calendar.StateRunning:
		if v.ShuttingDown {
			return acts, nil // its run is over: the hold ends by itself after the guests' shutdown
		}
		more, err = c.Finish(id, now)
	case calendar.StateQueued, calendar.StateScheduled, calendar.StateSuspended:
		more, err = c.Cancel(id, now)
	}
	return append(acts, more...), err
}

// changeAndRelease applies change to a stored workspace and ends its lease
// in the calendar, storing both (and what the release makes due) in one
// transaction: a crash leaves both or neither. remove deletes the
// workspace record instead of writing it. change may return errSkip.
func (ctl *Controller) changeAndRelease(ctx context.Context, project, name string, change func(*model.Workspace) error, remove func(model.Workspace) bool) (model.Workspace, error) {
	for attempt := 0; ; attempt++ {
		ws, err := ctl.getWS(ctx, project, name)
		if err != nil {
			return ws, err
		}
		next := ws
		if err := change(&next); err != nil {
			if errors.Is(err, errSkip) {
				return ws, nil
			}
			return ws, err
		}
		op := store.Op{Key: wsKey(project, name), Rev: ws.Revision}
		if remove != nil && remove(next) {
			op.Delete = true
		} else {
			next.Revision = 0
			if op.Value, err = json.Marshal(next); err != nil {
				return ws, err
			}
		}
		ctl.mu.Lock()
		var release bool
		var rev int64
		if release, err = ctl.releasesLocked(ctx, next); err == nil {
			if release {
				// Finish and Cancel carry the calendar to now first: their
				// actions are stored even should they then refuse.
				acts, rerr := ctl.releaseActsLocked(ctx, next)
				if rerr != nil {
					ctl.log.Warn("calendar: release lease", "lease", leaseID(next), "err", rerr)
				}
				err = ctl.commitLocked(ctx, acts, []store.Op{op})
			} else {
				rev, err = ctl.store.Txn(ctx, []store.Op{op})
			}
		}
		ctl.mu.Unlock()
		if (errors.Is(err, store.ErrConflict) || errors.Is(err, store.ErrNotFound)) && attempt < 20 {
			continue // an agent's report came between: read it again
		}
		if err != nil {
			return ws, err
		}
		next.Revision = rev
		if release {
			ctl.wake() // the freed room may let a waiting lease start
			if kv, err := ctl.store.Get(ctx, op.Key); err == nil {
				next.Revision = kv.Revision
			}
		}
		return next, nil
	}
}

// releasesLocked decides whether writing ws, as it is to be stored, ends
// its lease in the same transaction. A guest that may be up keeps its
// lease's room until the agent reports it gone (see guard.go). Once no
// guest is up, a running lease finishes if the workspace stopped (as asked,
// by itself, or failing); a waiting or suspended one (the calendar moved
// it while the guest powered off) is withdrawn if the workspace no longer
// wants it, and left alone if it does (a requeued workspace). mu must be
// held.
func (ctl *Controller) releasesLocked(ctx context.Context, ws model.Workspace) (bool, error) {
	if guestUp(ws) {
		return false, nil
	}
	c, err := ctl.calendarLocked(ctx)
	if err != nil {
		return false, err
	}
	v, ok := c.Get(leaseID(ws))
	if !ok || v.State.Over() {
		return false, nil
	}
	if _, _, cl := clusterOfLease(v.ID); cl {
		mates, err := ctl.leaseMates(ctx, v, ws)
		if err != nil {
			return false, err
		}
		return clusterReleases(mates, v.State), nil
	}
	if !wantsLease(ws) {
		return true, nil
	}
	// Still wanted (a suspension that ended the guest instead): a running
	// lease whose guest stopped or failed ends; one starting or queued
	// does not.
	stopped := ws.Status.State == model.StateStopped || ws.Status.State == model.StateFailed
	return v.State == calendar.StateRunning && stopped, nil
}

// advanceCalendar carries the calendar to now and applies what is due.
func (ctl *Controller) advanceCalendar(ctx context.Context) error {
	ctl.mu.Lock()
	defer ctl.mu.Unlock()
	c, err := ctl.calendarLocked(ctx)
	if err != nil {
		return err
	}
	return ctl.commitLocked(ctx, c.Advance(ctl.now()), nil)
}

// applyActions stores the calendar's decisions and carries out its actions
// on the stored workspaces; the agents then converge. placeMu must be held.
func (ctl *Controller) applyActions(ctx context.Context, acts []calendar.Action) {
	if err := ctl.commitLocked(ctx, acts, nil); err != nil {
		ctl.log.Warn("calendar: store decisions", "err", err)
	}
}

// cancelLease withdraws a lease, ignoring one that is already over.
func cancelLease(c *calendar.Calendar, id string, now time.Time) []calendar.Action {
	acts, _ := c.Cancel(id, now)
	return acts
}

// readyHost refuses (503) when no host is ready: there is nowhere to run.
func (ctl *Controller) readyHost(ctx context.Context) error {
	nodes, err := ctl.nodes(ctx)
	if err != nil {
		return err
	}
	for _, n := range nodes {
		if hostState(n, ctl.now(), ctl.started, ctl.cfg.NodeTimeout, ctl.cfg.NodeLostAfter) == model.NodeReady {
			return nil
		}
	}
	return ErrNoReadyHost
}

// freshLeaseID returns base, or base with the workspace's ID appended when
// the calendar already has a lease of that name (from an earlier workspace
// of the same name).
func freshLeaseID(c *calendar.Calendar, base string, ws model.Workspace) string {
	if _, ok := c.Get(base); !ok {
		return base
	}
	return base + "#" + ws.ID
}
