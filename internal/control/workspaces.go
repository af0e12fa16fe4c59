package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"vgrid/api"
	"vgrid/internal/calendar"
	"vgrid/internal/model"
	"vgrid/internal/spec"
	"vgrid/internal/store"
)

// CreateWorkspace validates a parsed spec for project, submits its lease
// to the calendar and stores the workspace with its lease (and whatever
// the admission displaced) in one transaction. Nothing is stored unless
// all succeed. A refusal is a *RefusalError.
func (ctl *Controller) CreateWorkspace(ctx context.Context, project string, sp model.WorkspaceSpec) (model.Workspace, error) {
	if IdempotencyKey(ctx) != "" {
		// Sent again after a lost answer: what the first made, whatever
		// changed since (its image deleted, the project's limit reached).
		if kv, err := ctl.store.Get(ctx, wsKey(project, sp.Name)); err == nil {
			if w, ok := sameRequest(ctx, kv); ok {
				return w, nil
			}
		}
	}
	imgs, err := ctl.visibleImages(ctx, project)
	if err != nil {
		return model.Workspace{}, err
	}
	if err := spec.Validate(sp, imageLookup(imgs)); err != nil {
		return model.Workspace{}, err
	}
	if sp.Quantum.Bandwidth > 0 {
		// Enforced on a tap of an overlay network (internal/overlay);
		// a workspace on QEMU's user-mode networking has none.
		return model.Workspace{}, invalid("invalid workspace spec", api.FieldError{Field: "quantum.bandwidth",
			Reason: "not enforced on this workspace's network (QEMU user-mode networking): caps apply to members of overlay networks; leave it out"})
	}
	img := imgs[sp.Image]
	if sp.Quantum.Disk == 0 {
		sp.Quantum.Disk = max(img.MinDisk, model.GiB)
	} else if sp.Quantum.Disk < img.MinDisk {
		return model.Workspace{}, invalid("invalid workspace spec", api.FieldError{Field: "quantum.disk",
			Reason: fmt.Sprintf("%s is smaller than image %s (%s)", sp.Quantum.Disk, img.Name, img.MinDisk)})
	}

	ctl.mu.Lock()
	defer ctl.mu.Unlock()
	defer observeAdmission(sp.LeaseKind(), time.Now())
	if kv, err := ctl.store.Get(ctx, wsKey(project, sp.Name)); err == nil {
		if w, ok := sameRequest(ctx, kv); ok {
			return w, nil
		}
		return model.Workspace{}, invalid("invalid workspace spec", api.FieldError{Field: "name",
			Reason: fmt.Sprintf("a workspace named %q already exists in project %s", sp.Name, project)})
	} else if !errors.Is(err, store.ErrNotFound) {
		return model.Workspace{}, err
	}
	if err := ctl.checkWorkspaceLimit(ctx, project); err != nil {
		return model.Workspace{}, err
	}
	volOps, err := ctl.attachVolumes(ctx, project, []model.WorkspaceSpec{sp}, nil)
	if err != nil {
		return model.Workspace{}, err
	}
	now := ctl.now()
	ws := model.Workspace{
		ID: newID(), Project: project, Spec: sp, Desired: model.DesiredRunning, CreatedAt: now,
		Status: model.WorkspaceStatus{State: model.StatePending, Generation: 1}, RequestID: IdempotencyKey(ctx),
	}
	ws.Status.Timings.Created = now
	ws.Status.Lease = ref(ws)
	c, err := ctl.calendarLocked(ctx)
	if err != nil {
		return model.Workspace{}, err
	}
	if err := ctl.readyHost(ctx); err != nil {
		return model.Workspace{}, err
	}
	// A lease left over from an earlier workspace of this name (deleted
	// while its lease was still live) goes.
	if v, ok := c.Get(ws.Status.Lease); ok {
		switch v.State {
		case calendar.StateRunning, calendar.StateQueued, calendar.StateScheduled, calendar.StateSuspended:
			ctl.applyActions(ctx, cancelLease(c, v.ID, now))
		}
	}
	ws.Status.Lease = freshLeaseID(c, ws.Status.Lease, ws)
	adm, err := submitTimed(c, leaseOf(ws, img), now)
	var rf *calendar.Refusal
	switch {
	case errors.As(err, &rf):
		return model.Workspace{}, refused(rf, project)
	case err != nil:
		return model.Workspace{}, invalid("invalid workspace spec", api.FieldError{Field: "lease", Reason: err.Error()})
	}
	// The lease may start at once (an immediate lease, or a best-effort one
	// that finds room); its own start is applied here, the others' (and
	// any preemptions) once it is stored.
	var rest []calendar.Action
	for _, a := range c.Advance(now) {
		if a.Lease == ws.Status.Lease && a.Kind == calendar.ActStart {
			ws.Status.Node = a.Hosts[0]
			ws.Status.Timings.Scheduled = ctl.now()
			if v, ok := c.Get(a.Lease); ok {
				ws.Status.ExpiresAt = v.End
			}
			continue
		}
		if a.Lease == ws.Status.Lease && a.Kind == calendar.ActStage {
			// Its image is fetched from now (over the shared link, its
			// hold beginning once the image is there).
			ws = stageChange(a, ws, Change{WS: ws}).WS
			continue
		}
		rest = append(rest, a)
	}
	if ws.Status.Node == "" {
		ws.Status.State = model.StateScheduled
		if adm.State == calendar.StateQueued {
			ws.Status.State = model.StateQueued
		}
	}
	// The workspace, its lease, its volumes' attachments and whatever the
	// admission displaced are stored in one transaction before the answer.
	b, _ := json.Marshal(ws)
	err = ctl.commitLocked(ctx, rest, append([]store.Op{{Key: wsKey(project, sp.Name), Value: b, Rev: store.OpMustNotExist}}, volOps...))
	if errors.Is(err, store.ErrConflict) {
		return model.Workspace{}, conflict(fmt.Sprintf("workspace %q: its volumes changed while it was being created; try again", sp.Name))
	}
	if errors.Is(err, store.ErrExists) {
		return model.Workspace{}, invalid("invalid workspace spec", api.FieldError{Field: "name", Reason: "already exists"})
	}
	if err != nil {
		return model.Workspace{}, err
	}
	if kv, err := ctl.store.Get(ctx, wsKey(project, sp.Name)); err == nil {
		ws.Revision = kv.Revision
	}
	what := fmt.Sprintf("(%d vCPU, %.2f cores, %s memory, %s disk) for %s",
		sp.Quantum.VCPUs, sp.Quantum.CPUCores(), sp.Quantum.Memory, sp.Quantum.Disk, sp.Duration)
	switch {
	case ws.Status.Node != "":
		ctl.event(ctx, ws, "created", fmt.Sprintf("placed on %s %s", ws.Status.Node, what))
	case adm.State == calendar.StateQueued:
		ctl.event(ctx, ws, "created", fmt.Sprintf("queued (%s lease) %s", sp.LeaseKind(), what))
	default:
		ctl.event(ctx, ws, "created", fmt.Sprintf("scheduled (%s lease) on %v from %s to %s %s", sp.LeaseKind(), adm.Hosts,
			adm.Start.UTC().Format(time.RFC3339), adm.End.UTC().Format(time.RFC3339), what))
	}
	for _, v := range adm.Victims {
		ctl.log.Info("lease admission preempts", "lease", ws.Status.Lease, "victim", v.Lease, "how", v.Kind, "at", v.At)
	}
	for _, m := range adm.Moved {
		ctl.log.Info("lease admission moves a deadline lease", "lease", ws.Status.Lease, "moved", m.Lease,
			"from", m.FromStart, "to", m.Start, "hosts", m.Hosts)
	}
	for _, m := range adm.Resumes {
		ctl.log.Info("lease admission suspends a deadline lease and books its resume", "lease", ws.Status.Lease, "suspended", m.Lease,
			"resume", m.Start, "end", m.End, "hosts", m.Hosts)
	}
	ctl.log.Info("workspace created", "project", project, "workspace", sp.Name, "id", ws.ID, "node", ws.Status.Node, "state", ws.Status.State)
	ctl.wake()
	return ws, nil
}

// Workspace returns one workspace of project.
func (ctl *Controller) Workspace(ctx context.Context, project, name string) (model.Workspace, error) {
	return ctl.getWS(ctx, project, name)
}

// Workspaces returns one page of project's workspaces, reading only that
// page from the store.
func (ctl *Controller) Workspaces(ctx context.Context, project string, p Page) ([]model.Workspace, string, error) {
	kvs, next, err := ctl.page(ctx, "ws/"+project+"/", p)
	if err != nil {
		return nil, "", err
	}
	out := make([]model.Workspace, 0, len(kvs))
	for _, kv := range kvs {
		ws, err := decodeWS(kv)
		if err != nil {
			return nil, "", err
		}
		out = append(out, ws)
	}
	return out, next, nil
}

// DeleteWorkspace marks a workspace for deletion; the host's agent tears
// it down and then the record goes (Forgotten). A workspace no host holds
// goes at once.
func (ctl *Controller) DeleteWorkspace(ctx context.Context, project, name string) (model.Workspace, error) {
	if ws, err := ctl.getWS(ctx, project, name); err == nil && ws.Cluster != nil {
		return ws, memberRefusal(ws, "delete")
	}
	return ctl.deleteWorkspace(ctx, project, name)
}

// deleteWorkspace is DeleteWorkspace of any workspace, a cluster's member
// too.
func (ctl *Controller) deleteWorkspace(ctx context.Context, project, name string) (model.Workspace, error) {
	var changed bool
	ws, err := ctl.changeAndRelease(ctx, project, name, func(ws *model.Workspace) error {
		if ws.Desired == model.DesiredDeleted {
			return errSkip
		}
		changed = true
		ws.Desired = model.DesiredDeleted
		if ws.Status.State == model.StateRunning || ws.Status.State == model.StateStarting {
			ws.Status.State = model.StateStopping
		}
		return nil
	}, func(ws model.Workspace) bool { return ws.Status.Node == "" })
	if err != nil {
		return ws, err
	}
	if !changed {
		return ws, nil
	}
	if ws.Status.Node == "" {
		// No host holds it: the record went in the same transaction.
		ctl.forget(ctx, ws)
		return ws, nil
	}
	ctl.event(ctx, ws, "deleting", "delete requested")
	return ws, nil
}

// forget removes what is kept about a workspace whose record went (with
// its lease's release, in one transaction): its events, console and
// addresses. The delete is done by then, so what fails here is logged,
// not answered: an error would say the delete failed. (The HA fault
// suite, seed 440283122: a leader paused between the two lost its
// election; its next write answered 503 not_leader, which promises that
// nothing was done, so the client sent the delete to the new leader and
// was told the workspace was not found.)
func (ctl *Controller) forget(ctx context.Context, ws model.Workspace) {
	ctl.log.Info("workspace deleted", "project", ws.Project, "workspace", ws.Spec.Name, "id", ws.ID)
	evs, err := ctl.store.List(ctx, fmt.Sprintf("events/%s/%s/%s/", ws.Project, ws.Spec.Name, ws.ID))
	for _, kv := range evs {
		if err == nil {
			err = ctl.store.Delete(ctx, kv.Key, 0)
		}
	}
	if derr := ctl.store.Delete(ctx, "console/"+ws.ID, 0); err == nil && !errors.Is(derr, store.ErrNotFound) {
		err = derr
	}
	if err != nil {
		ctl.log.Warn("deleted workspace: its events or console were not all removed", "workspace", ref(ws), "err", err)
	}
	ctl.releaseAddresses(ctx, ws)
}

// StopWorkspace stops a workspace and ends its lease in the calendar, in
// one transaction.
func (ctl *Controller) StopWorkspace(ctx context.Context, project, name, reason string) (model.Workspace, error) {
	return ctl.stopWorkspace(ctx, project, name, reason, false)
}

// stopWorkspace is StopWorkspace; a cluster's member is stopped only if
// member says the cluster stops it.
func (ctl *Controller) stopWorkspace(ctx context.Context, project, name, reason string, member bool) (model.Workspace, error) {
	var changed bool
	ws, err := ctl.changeAndRelease(ctx, project, name, func(ws *model.Workspace) error {
		if !member {
			if err := memberRefusal(*ws, "stop"); err != nil {
				return err
			}
		}
		if err := stopped(ws, reason); err != nil {
			return err
		}
		changed = true
		return nil
	}, nil)
	if err == nil && changed {
		ctl.event(ctx, ws, "stopping", reason)
	}
	return ws, err
}

// stopped is the stop of a workspace: desired stopped, with the reason.
func stopped(ws *model.Workspace, reason string) error {
	switch {
	case ws.Desired == model.DesiredDeleted:
		return conflict(fmt.Sprintf("workspace %q is being deleted", ws.Spec.Name))
	case ws.Desired == model.DesiredStopped && !strings.HasPrefix(ws.Status.Reason, "requeued"):
		return errSkip // a requeued one still has a lease waiting: stop ends it
	}
	ws.Desired = model.DesiredStopped
	ws.Status.Reason = reason
	switch ws.Status.State {
	case model.StatePending, model.StateQueued, model.StateScheduled:
		ws.Status.State = model.StateStopped
	case model.StateStarting, model.StateRunning:
		ws.Status.State = model.StateStopping
	}
	return nil
}

// stopRecord sets desired stopped in the store; the calendar is not told
// (for the rebuild of a calendar from workspaces, which has no lease of
// it).
func (ctl *Controller) stopRecord(ctx context.Context, project, name, reason string) (model.Workspace, error) {
	ws, err := ctl.mutateWS(ctx, project, name, func(ws *model.Workspace) error { return stopped(ws, reason) })
	if err == nil {
		ctl.event(ctx, ws, "stopping", reason)
	}
	return ws, err
}

// StartWorkspace starts a stopped workspace again, on the host that holds
// its disk, for a new lease of its duration.
func (ctl *Controller) StartWorkspace(ctx context.Context, project, name string) (model.Workspace, error) {
	ctl.mu.Lock()
	defer ctl.mu.Unlock()
	cur, err := ctl.getWS(ctx, project, name)
	if err != nil {
		return model.Workspace{}, err
	}
	if cur.Desired == model.DesiredRunning {
		return cur, nil
	}
	if err := memberRefusal(cur, "start"); err != nil {
		return cur, err
	}
	if cur.Desired == model.DesiredDeleted {
		return model.Workspace{}, conflict(fmt.Sprintf("workspace %q is being deleted", name))
	}
	if cur.Status.State == model.StateStopping {
		return model.Workspace{}, conflict(fmt.Sprintf("workspace %q is still stopping; start it when it is Stopped", name))
	}
	// The disk lives on its host: the new run, an immediate lease, is
	// pinned there; if that host cannot take it (full, cordoned, not
	// ready) it may go to another, whose agent copies the disk first.
	c, err := ctl.calendarLocked(ctx)
	if err != nil {
		return model.Workspace{}, err
	}
	imgs, err := ctl.images(ctx)
	if err != nil {
		return model.Workspace{}, err
	}
	now := ctl.now()
	old := leaseID(cur)
	ctl.applyActions(ctx, cancelLease(c, old, now))
	next := cur
	next.Status.Lease = freshLeaseID(c, fmt.Sprintf("%s#%d", ref(cur), cur.Status.Generation+1), cur)
	l := leaseOf(next, imgs[cur.Spec.Image])
	l.Kind, l.Start, l.Deadline, l.Preempt = calendar.Immediate, time.Time{}, time.Time{}, ""
	from := cur.Status.Node
	if m := cur.Status.Move; m != nil {
		from = m.From // its disk never got to Node
	}
	var fromNode model.Node
	if from != "" {
		l.Members[0].Labels = map[string]string{hostLabel: from}
		fromNode, _ = ctl.Node(ctx, from)
	}
	adm, err := submitTimed(c, l, now)
	if err != nil && from != "" && fromNode.State != model.NodeLost && fromNode.Transfer != "" {
		// Not on its own host: anywhere else, its disk copied there.
		l.Members[0].Labels = nil
		if adm2, err2 := c.Submit(l, now); err2 == nil {
			adm, err = adm2, nil
		}
	}
	if err != nil {
		if fromNode.State == model.NodeLost {
			return model.Workspace{}, conflict(fmt.Sprintf("workspace %q: its disk is on host %s, which is lost; it can start when %s is back", name, from, from))
		}
		var rf *calendar.Refusal
		if errors.As(err, &rf) {
			return model.Workspace{}, refused(rf, project)
		}
		return model.Workspace{}, conflict(err.Error())
	}
	host := cur.Status.Node
	if len(adm.Hosts) > 0 {
		host = adm.Hosts[0] // where it was placed, even if it stages its image first
	}
	var rest []calendar.Action
	for _, a := range c.Advance(now) {
		if a.Lease == l.ID && a.Kind == calendar.ActStart {
			host = a.Hosts[0]
			continue
		}
		rest = append(rest, a)
	}
	ws := cur
	ws.Desired = model.DesiredRunning
	ws.Status.State = model.StatePending
	ws.Status.Node = host
	ws.Status.Lease = l.ID
	ws.Status.Reason = ""
	ws.Status.Generation++
	ws.Status.ExpiresAt = now.Add(ws.Spec.Duration.D())
	if v, ok := c.Get(l.ID); ok {
		ws.Status.ExpiresAt = v.End
	}
	ws.Status.StartedAt = now
	ws.Status.Guest = nil
	ws.Status.PID = 0
	ws.Status.Move = cur.Status.Move
	if from != "" && host != from {
		ws.Status.Move = &model.Move{From: from, Since: now}
	} else if host == from {
		ws.Status.Move = nil
	}
	ws.Status.Timings = model.Timings{Created: now, Scheduled: now}
	ws.Revision = 0
	b, _ := json.Marshal(ws)
	err = ctl.commitLocked(ctx, rest, []store.Op{{Key: wsKey(project, name), Value: b, Rev: cur.Revision}})
	if errors.Is(err, store.ErrConflict) || errors.Is(err, store.ErrNotFound) {
		return model.Workspace{}, conflict(fmt.Sprintf("workspace %q changed meanwhile; try again", name))
	}
	if err != nil {
		return model.Workspace{}, err
	}
	if kv, err := ctl.store.Get(ctx, wsKey(project, name)); err == nil {
		ws.Revision = kv.Revision
	}
	ctl.event(ctx, ws, "starting", fmt.Sprintf("start requested, new lease of %s", ws.Spec.Duration))
	return ws, nil
}

// Logs returns the tail of a workspace's serial console.
func (ctl *Controller) Logs(ctx context.Context, project, name string) ([]byte, error) {
	ws, err := ctl.getWS(ctx, project, name)
	if err != nil {
		return nil, err
	}
	kv, err := ctl.store.Get(ctx, "console/"+ws.ID)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	return kv.Value, err
}

// Events returns a workspace's history.
func (ctl *Controller) Events(ctx context.Context, project, name string) ([]model.Event, error) {
	ws, err := ctl.getWS(ctx, project, name)
	if err != nil {
		return nil, err
	}
	kvs, err := ctl.store.List(ctx, fmt.Sprintf("events/%s/%s/%s/", ws.Project, ws.Spec.Name, ws.ID))
	if err != nil {
		return nil, err
	}
	out := []model.Event{}
	for _, kv := range kvs {
		var e model.Event
		if json.Unmarshal(kv.Value, &e) == nil {
			out = append(out, e)
		}
	}
	return out, nil
}
