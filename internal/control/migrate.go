package control

// Live migration: a running workspace moves to another host while its
// guest runs. The control plane decides and records; the two hosts' agents
// do the work, agent to QEMU to QEMU:
//
//  1. MigrateWorkspace (or a drain, a resize, the calendar) asks the
//     calendar to hold room for the member on the destination too
//     (BeginMove) and stores Status.Migration {To, Phase: preparing} with
//     it, in one transaction.
//  2. The destination's agent finds the workspace in its assignments'
//     Incoming list, builds its taps, prepares a QEMU waiting for the
//     stream and reports the endpoint (MigrationReport); Phase: migrating.
//  3. The source's agent sees the endpoint, mirrors the disk and copies
//     the memory, reporting progress, then reports done (with the
//     downtime) or failed.
//  4. Done: the workspace's Node is the destination, the calendar ends the
//     move (EndMove ok: the source's room is freed), the other hosts of its
//     networks update their forwarding entries. Failed or cancelled: the
//     guest runs on at the source, the destination's room is freed, and the
//     destination's agent deletes what it prepared.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"vgrid/api"
	"vgrid/internal/calendar"
	"vgrid/internal/model"
	"vgrid/internal/spec"
	"vgrid/internal/store"
)

// Bounds of a migration's phases: a destination that has not reported
// its endpoint after prepareTimeout, or a source silent for
// progressTimeout, fails the migration (the guest runs on at the source).
const (
	prepareTimeout  = 2 * time.Minute
	progressTimeout = 90 * time.Second
)

// migratable says why ws cannot begin a live migration now ("" if it can).
// It is pure.
func migratable(ws model.Workspace) string {
	st := ws.Status
	switch {
	case ws.Desired == model.DesiredDeleted:
		return "it is being deleted"
	case st.Migration != nil:
		return fmt.Sprintf("it is already migrating to %s (since %s); cancel it first with vgrid workspace migrate %s --cancel",
			st.Migration.To, st.Migration.Since.UTC().Format(time.RFC3339), ws.Spec.Name)
	case ws.Desired != model.DesiredRunning:
		return fmt.Sprintf("it is not meant to run (desired %s): only a running guest migrates live; a stopped one moves when started", ws.Desired)
	case st.State != model.StateRunning:
		return fmt.Sprintf("its guest is %s, not running: only a running guest migrates live", lower(st.State))
	case st.Move != nil || st.ResumeOn != "":
		return "its files are being moved between hosts"
	case st.Node == "":
		return "it is on no host"
	}
	return ""
}

// applyMigrationReport is what an agent's report on a migration does to
// the workspace: the new value and what it decides. It is pure. A report
// on a migration the workspace no longer has (another, or none) is a
// KindGone error: the agent drops it.
func applyMigrationReport(ws model.Workspace, node string, rep api.MigrationReport, now time.Time) (model.Workspace, migrationOutcome, error) {
	m := ws.Status.Migration
	if m == nil || ws.ID != rep.ID || !m.Since.Equal(rep.Since) {
		return ws, migNothing, gone("no such migration of this workspace")
	}
	next := ws
	mm := *m
	next.Status.Migration = &mm
	switch {
	case node == m.To && node != ws.Status.Node:
		switch {
		case rep.Failed != "":
			next.Status.Migration = nil
			return next, migFailed, nil
		case rep.Endpoint != nil:
			if m.Phase != model.MigrationPreparing {
				return ws, migNothing, nil // said already
			}
			ep := *rep.Endpoint
			mm.Endpoint, mm.Phase = &ep, model.MigrationRunning
			return next, migUpdate, nil
		}
		return ws, migNothing, invalid("a destination reports its endpoint or its failure")
	case node == ws.Status.Node:
		switch {
		case rep.Done:
			if m.Endpoint == nil {
				return ws, migNothing, invalid("done before the destination was ready")
			}
			next.Status.Node = m.To
			if m.Quantum != nil {
				next.Spec.Quantum = *m.Quantum
			}
			next.Status.Migration = nil
			// The destination says what it enforces, and with which
			// process and cgroup.
			next.Status.Applied, next.Status.PID, next.Status.Cgroup = nil, 0, nil
			return next, migDone, nil
		case rep.Failed != "":
			next.Status.Migration = nil
			return next, migFailed, nil
		case rep.Progress != nil:
			p := *rep.Progress
			p.At = now
			mm.Progress = &p
			return next, migUpdate, nil
		}
		return ws, migNothing, invalid("a source reports progress, done, or its failure")
	}
	return ws, migNothing, gone("this host is neither end of the migration")
}

// migrationOutcome is what a migration report decides.
type migrationOutcome int

const (
	migNothing migrationOutcome = iota // nothing to store
	migUpdate                          // store the workspace (endpoint, progress)
	migDone                            // the guest runs at the destination
	migFailed                          // the guest runs on at the source
)

// memberIndex is ws's member index in its lease v (0 for a lone workspace).
func memberIndex(v calendar.LeaseView, ws model.Workspace) int {
	for i, m := range v.Members {
		if m == ws.Spec.Name {
			return i
		}
	}
	return 0
}

// calendarWS reads a workspace, lets fn change it and the calendar under
// the lock, and stores both (with what the calendar made due) in one
// transaction, retrying when an agent's report came between. fn's error
// is returned as it is (the calendar's actions up to then are stored);
// errSkip writes nothing.
func (ctl *Controller) calendarWS(ctx context.Context, project, name string, fn func(c *calendar.Calendar, ws *model.Workspace) ([]calendar.Action, error)) (model.Workspace, error) {
	for attempt := 0; ; attempt++ {
		ws, err := ctl.getWS(ctx, project, name)
		if err != nil {
			return ws, err
		}
		next := ws
		ctl.mu.Lock()
		c, err := ctl.calendarLocked(ctx)
		if err != nil {
			ctl.mu.Unlock()
			return ws, err
		}
		acts, ferr := fn(c, &next)
		var ops []store.Op
		if ferr == nil {
			next.Revision = 0
			b, err := json.Marshal(next)
			if err != nil {
				ctl.mu.Unlock()
				return ws, err
			}
			ops = append(ops, store.Op{Key: wsKey(project, name), Value: b, Rev: ws.Revision})
		}
		err = ctl.commitLocked(ctx, acts, ops)
		ctl.mu.Unlock()
		if ferr != nil {
			if err != nil {
				ctl.log.Warn("calendar: store decisions", "err", err)
			}
			if errors.Is(ferr, errSkip) {
				return ws, nil
			}
			return ws, ferr
		}
		if errors.Is(err, store.ErrConflict) && attempt < 20 {
			continue
		}
		if err != nil {
			return ws, err
		}
		ctl.wake()
		if kv, err := ctl.store.Get(ctx, wsKey(project, name)); err == nil {
			if w, err := decodeWS(kv); err == nil {
				return w, nil
			}
		}
		return next, nil
	}
}

// MigrateWorkspace moves a running workspace live to host to (empty: the
// calendar chooses the host with room for it until its lease ends). The
// answer comes once the move is recorded; the agents then carry it out
// (Status.Migration shows how it goes, the events how it ended).
func (ctl *Controller) MigrateWorkspace(ctx context.Context, project, name string, req api.MigrateRequest) (model.Workspace, error) {
	if req.Bandwidth < 0 || req.Bandwidth > 0 && req.Bandwidth < spec.MinBandwidth {
		return model.Workspace{}, invalid("invalid migration", api.FieldError{Field: "bandwidth", Reason: fmt.Sprintf("at least %v (or 0 for no cap), got %v", spec.MinBandwidth, req.Bandwidth)})
	}
	if req.Mode != "" && req.Mode != model.MigrateLive && req.Mode != model.MigratePaused {
		return model.Workspace{}, invalid("invalid migration", api.FieldError{Field: "mode",
			Reason: fmt.Sprintf("%q: want %q, %q or empty (the host's default)", req.Mode, model.MigrateLive, model.MigratePaused)})
	}
	return ctl.beginMigration(ctx, project, name, req.To, "requested", nil, model.Migration{Bandwidth: req.Bandwidth, Mode: req.Mode})
}

// beginMigration records a migration of project/name to host to (empty:
// the calendar's choice), why, with quantum q at the destination (nil:
// unchanged), with opt's Bandwidth and Mode.
func (ctl *Controller) beginMigration(ctx context.Context, project, name, to, why string, q *model.Quantum, opt model.Migration) (model.Workspace, error) {
	var dest string
	ws, err := ctl.calendarWS(ctx, project, name, func(c *calendar.Calendar, ws *model.Workspace) ([]calendar.Action, error) {
		if why := migratable(*ws); why != "" {
			return nil, conflict(fmt.Sprintf("workspace %q cannot migrate: %s", name, why))
		}
		if to == ws.Status.Node {
			return nil, invalid(fmt.Sprintf("workspace %q already runs on %s", name, to),
				api.FieldError{Field: "to", Reason: "is the host it runs on"})
		}
		id := leaseID(*ws)
		v, ok := c.Get(id)
		if !ok || v.State != calendar.StateRunning {
			return nil, conflict(fmt.Sprintf("workspace %q cannot migrate: its lease %s is not running", name, id))
		}
		member := memberIndex(v, *ws)
		quantum := ws.Spec.Quantum
		if q != nil {
			quantum = *q
		}
		res := quantum.Resources()
		now := ctl.now()
		if to == "" {
			t, err := c.ResizeTarget(id, member, res, now)
			if err != nil {
				return nil, calendarRefusal(err, project)
			}
			to = t
		}
		acts, err := c.BeginMove(id, member, to, &res, now)
		if err != nil {
			return acts, calendarRefusal(err, project)
		}
		dest = to
		ws.Status.Migration = &model.Migration{To: to, Phase: model.MigrationPreparing, Since: now, Why: why, Quantum: q, Member: member,
			Bandwidth: opt.Bandwidth, Mode: opt.Mode}
		return acts, nil
	})
	if err != nil {
		return ws, err
	}
	ctl.event(ctx, ws, "migrating", fmt.Sprintf("live migration from %s to %s begins (%s)", ws.Status.Node, dest, why))
	ctl.log.Info("migration begins", "workspace", ref(ws), "from", ws.Status.Node, "to", dest, "why", why)
	return ws, nil
}

// calendarRefusal turns a calendar error into the API's: a refusal (409
// naming what is short), an unknown host (400), else as it is.
func calendarRefusal(err error, project string) error {
	var rf *calendar.Refusal
	if errors.As(err, &rf) {
		return refused(rf, project)
	}
	if errors.Is(err, calendar.ErrUnknownHost) {
		return invalid(err.Error(), api.FieldError{Field: "to", Reason: "no such host"})
	}
	if errors.Is(err, calendar.ErrInvalid) || errors.Is(err, calendar.ErrNotFound) {
		return conflict(err.Error())
	}
	return err
}

// CancelMigration stops the migration of project/name under way: the
// guest runs on where it was. One still being prepared ends at once; one
// sending asks the source's agent to stop (it reports the failure).
func (ctl *Controller) CancelMigration(ctx context.Context, project, name string) (model.Workspace, error) {
	ws, err := ctl.getWS(ctx, project, name)
	if err != nil {
		return ws, err
	}
	m := ws.Status.Migration
	if m == nil {
		return ws, conflict(fmt.Sprintf("workspace %q is not migrating", name))
	}
	if m.Phase == model.MigrationPreparing {
		return ctl.endMigration(ctx, project, name, m.Since, false, "cancelled by the user", nil)
	}
	return ctl.mutateWS(ctx, project, name, func(w *model.Workspace) error {
		if w.Status.Migration == nil || !w.Status.Migration.Since.Equal(m.Since) {
			return conflict(fmt.Sprintf("workspace %q is not migrating", name))
		}
		if w.Status.Migration.Cancel {
			return errSkip
		}
		w.Status.Migration.Cancel = true
		return nil
	})
}

// MigrationReport takes an agent's report on a migration of a workspace
// (see applyMigrationReport).
func (ctl *Controller) MigrationReport(ctx context.Context, node, project, name string, rep api.MigrationReport) error {
	ws, err := ctl.getWS(ctx, project, name)
	if err != nil {
		return err
	}
	_, out, err := applyMigrationReport(ws, node, rep, ctl.now())
	if err != nil {
		return err
	}
	switch out {
	case migUpdate:
		_, err = ctl.mutateWS(ctx, project, name, func(w *model.Workspace) error {
			next, o, err := applyMigrationReport(*w, node, rep, ctl.now())
			if err != nil {
				return err
			}
			if o != migUpdate {
				return errSkip
			}
			*w = next
			return nil
		})
		return err
	case migDone:
		_, err = ctl.endMigration(ctx, project, name, rep.Since, true, "", &rep)
		return err
	case migFailed:
		why := rep.Failed
		if node == ws.Status.Migration.To {
			why = "destination " + node + ": " + why
		}
		_, err = ctl.endMigration(ctx, project, name, rep.Since, false, why, nil)
		return err
	}
	return nil
}

// endMigration ends the migration since of project/name: ok, the guest
// runs at the destination (rep has the measures); else it runs on at the
// source, for why. The calendar's move ends with it in one transaction.
// A migration the calendar decided that fails leaves the source's room
// promised to another lease: the calendar then displaces the workspace as
// a preemption would (its actions are stored with it).
func (ctl *Controller) endMigration(ctx context.Context, project, name string, since time.Time, ok bool, why string, rep *api.MigrationReport) (model.Workspace, error) {
	var from string
	var m model.Migration
	ws, err := ctl.calendarWS(ctx, project, name, func(c *calendar.Calendar, ws *model.Workspace) ([]calendar.Action, error) {
		mp := ws.Status.Migration
		if mp == nil || !mp.Since.Equal(since) {
			return nil, errSkip
		}
		m, from = *mp, ws.Status.Node
		acts, err := c.EndMove(leaseID(*ws), m.Member, ok, ctl.now())
		if err != nil {
			// The calendar no longer has the move (its lease ended
			// meanwhile): the workspace's record is still put right.
			ctl.log.Warn("calendar: end move", "workspace", ref(*ws), "err", err)
		}
		ws.Status.Migration = nil
		if ok {
			ws.Status.Node = m.To
			if m.Quantum != nil {
				ws.Spec.Quantum = *m.Quantum
			}
			// The source's process and cgroup are gone; the destination's
			// agent says which are the guest's now (its next report).
			ws.Status.Applied, ws.Status.PID, ws.Status.Cgroup = nil, 0, nil
		}
		return acts, nil
	})
	if err != nil || ws.Status.Migration != nil && ws.Status.Migration.Since.Equal(since) {
		return ws, err
	}
	if from == "" {
		return ws, nil // ended already
	}
	observeMigration(ok, since, ctl.now(), rep)
	if ok {
		msg := fmt.Sprintf("live from %s to %s", from, m.To)
		if rep != nil {
			msg += fmt.Sprintf(" in %s, downtime %s, sent %s of memory and %s of disk",
				rep.Total.D().Round(time.Millisecond), rep.Downtime.D().Round(time.Millisecond),
				model.ByteSize(rep.MemoryBytes).Human(), model.ByteSize(rep.DiskBytes).Human())
		}
		if m.Quantum != nil {
			msg += "; quantum now " + quantumString(*m.Quantum)
		}
		ctl.event(ctx, ws, "migrated", msg)
		if rep != nil && rep.Total > 0 && rep.MemoryBytes+rep.DiskBytes > 0 {
			// What the calendar plans migrations with (Host.MigrateRate).
			rate := int64(float64(rep.MemoryBytes+rep.DiskBytes) / rep.Total.D().Seconds())
			for _, h := range []string{from, m.To} {
				ctl.recordHostTimes(ctx, h, func(t *model.HostTimes) { t.Migrate = model.AddSample(t.Migrate, rate) })
			}
		}
		ctl.log.Info("migrated", "workspace", ref(ws), "from", from, "to", m.To)
	} else {
		ctl.event(ctx, ws, "migration-failed", fmt.Sprintf("the guest runs on at %s; the move to %s ended: %s", from, m.To, why))
		ctl.log.Warn("migration failed", "workspace", ref(ws), "from", from, "to", m.To, "why", why)
	}
	return ws, nil
}

// quantumString is a quantum as a person reads it.
func quantumString(q model.Quantum) string {
	s := fmt.Sprintf("%d vCPU, cpu %g, memory %s", q.VCPUs, q.CPUCores(), q.Memory.Human())
	if q.Disk > 0 {
		s += ", disk " + q.Disk.Human()
	}
	if q.Bandwidth > 0 {
		s += ", bandwidth " + q.Bandwidth.String()
	}
	if q.DiskIOPS > 0 {
		s += fmt.Sprintf(", %d iops", q.DiskIOPS)
	}
	if q.DiskBPS > 0 {
		s += ", " + q.DiskBPS.Human() + "/s"
	}
	return s
}

// stuckMigration says why a migration must be given up ("" if not): its
// destination never became ready, or its source went silent, or one of
// its hosts is not ready. It is pure; ready says whether a host is.
func stuckMigration(ws model.Workspace, ready func(string) bool, now time.Time) string {
	m := ws.Status.Migration
	if m == nil {
		return ""
	}
	switch {
	case m.Cancel && m.Phase == model.MigrationPreparing:
		return "cancelled before the destination was ready"
	case !ready(m.To):
		return "destination host " + m.To + " is not ready"
	case m.Phase == model.MigrationPreparing && now.Sub(m.Since) > prepareTimeout:
		return fmt.Sprintf("destination host %s did not prepare in %s", m.To, prepareTimeout)
	case m.Phase == model.MigrationRunning && !ready(ws.Status.Node):
		return "source host " + ws.Status.Node + " is not ready"
	}
	last := m.Since
	if m.Progress != nil && m.Progress.At.After(last) {
		last = m.Progress.At
	}
	if m.Phase == model.MigrationRunning && now.Sub(last) > progressTimeout {
		return fmt.Sprintf("source host %s reported no progress for %s", ws.Status.Node, progressTimeout)
	}
	return ""
}

// checkMigrations gives up the migrations that are stuck (stuckMigration),
// and ends the calendar's moves that no workspace carries out (one the
// calendar decided for a guest that could not migrate then).
func (ctl *Controller) checkMigrations(ctx context.Context) {
	all, err := ctl.listWS(ctx, "ws/")
	if err != nil {
		return
	}
	ctl.endOrphanMoves(ctx)
	var ready func(string) bool
	now := ctl.now()
	for _, ws := range all {
		if ws.Status.Migration == nil {
			continue
		}
		if ready == nil {
			nodes, err := ctl.nodes(ctx)
			if err != nil {
				return
			}
			state := map[string]bool{}
			for _, n := range nodes {
				state[n.Name] = hostState(n, now, ctl.started, ctl.cfg.NodeTimeout, ctl.cfg.NodeLostAfter) == model.NodeReady
			}
			ready = func(h string) bool { return state[h] }
		}
		if why := stuckMigration(ws, ready, now); why != "" {
			if _, err := ctl.endMigration(ctx, ws.Project, ws.Spec.Name, ws.Status.Migration.Since, false, why, nil); err != nil {
				ctl.log.Warn("give up a migration", "workspace", ref(ws), "err", err)
			}
		}
	}
}

// endOrphanMoves ends (not done) the calendar's moves whose workspace has
// no migration to that host. The calendar and the workspaces are written
// together under the lock (commitLocked), so under it they agree, except
// where the calendar decided a move for a guest that could not migrate
// (transition leaves it be): that lease is then displaced as the
// calendar's EndMove says (suspended or requeued).
func (ctl *Controller) endOrphanMoves(ctx context.Context) {
	ctl.mu.Lock()
	defer ctl.mu.Unlock()
	c, err := ctl.calendarLocked(ctx)
	if err != nil {
		return
	}
	// The migrations the calendar gives out now are first stored with
	// their workspaces (transition), so that they are not taken for
	// orphans.
	if err := ctl.commitLocked(ctx, c.Advance(ctl.now()), nil); err != nil {
		ctl.log.Warn("calendar: store decisions", "err", err)
		return
	}
	for _, v := range c.Leases() {
		for i, to := range v.Moving {
			if i >= len(v.Members) {
				continue
			}
			project := v.Project
			ws, err := ctl.getWS(ctx, project, v.Members[i])
			if err == nil && ws.Status.Migration != nil && ws.Status.Migration.To == to && leaseID(ws) == v.ID {
				continue
			}
			if err != nil && !errors.Is(err, store.ErrNotFound) && !isNotFound(err) {
				continue
			}
			acts, err := c.EndMove(v.ID, i, false, ctl.now())
			switch {
			case errors.Is(err, calendar.ErrInvalid):
				// A migration the calendar gives out later.
			case err != nil:
				ctl.log.Warn("calendar: end a move no workspace makes", "lease", v.ID, "member", i, "err", err)
			default:
				ctl.log.Info("calendar: a move no workspace makes ended", "lease", v.ID, "member", i, "to", to)
			}
			if err != nil && len(acts) == 0 {
				continue
			}
			// What the calendar made due on the way is stored in any case.
			if err := ctl.commitLocked(ctx, acts, nil); err != nil {
				ctl.log.Warn("calendar: store decisions", "err", err)
				return
			}
		}
	}
}
