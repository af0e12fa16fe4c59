package control

// Resizing a workspace: its quantum changes while it runs. The calendar
// admits a growth only if the host can hold the new quantum for the rest
// of the lease without breaking any admitted lease (a reservation to
// come, above all); a shrink is admitted at once and frees room for the
// queue. The host's agent then applies the new quantum to the running
// guest (cgroup, balloon, disk, I/O and network caps) and says so
// (Status.Applied). A growth the host cannot hold is refused naming the
// lease in the way, or, with AllowMigrate, carried out by a live
// migration to a host that can.

import (
	"context"
	"errors"
	"fmt"

	"vgrid/api"
	"vgrid/internal/calendar"
	"vgrid/internal/model"
	"vgrid/internal/spec"
)

// Resized is q with the changes req asks for. It is pure.
func Resized(q model.Quantum, req api.ResizeRequest) model.Quantum {
	if req.VCPUs != nil {
		q.VCPUs = *req.VCPUs
	}
	if req.CPU != nil {
		q.CPU = *req.CPU
	}
	if req.Memory != nil {
		q.Memory = *req.Memory
	}
	if req.Disk != nil {
		q.Disk = *req.Disk
	}
	if req.DiskIOPS != nil {
		q.DiskIOPS = *req.DiskIOPS
	}
	if req.DiskBPS != nil {
		q.DiskBPS = *req.DiskBPS
	}
	if req.Bandwidth != nil {
		q.Bandwidth = *req.Bandwidth
	}
	return q
}

// notInPlace says which change from old to q a running guest cannot take
// without a new QEMU process (nil if it can take them all). It is pure.
func notInPlace(old, q model.Quantum) []api.FieldError {
	var out []api.FieldError
	if q.VCPUs != old.VCPUs {
		out = append(out, api.FieldError{Field: "vcpus", Reason: fmt.Sprintf(
			"a running guest keeps its %d vCPUs (its machine type has no CPU hotplug, and a live migration keeps the machine): stop the workspace, resize it, and start it again", old.VCPUs)})
	}
	maxMem := old.MaxMemory
	if maxMem < old.Memory {
		maxMem = old.Memory
	}
	if q.Memory > maxMem {
		out = append(out, api.FieldError{Field: "memory", Reason: fmt.Sprintf(
			"at most %s while it runs (the RAM it started with: set quantum.max_memory for more headroom at the next start), got %s", maxMem.Human(), q.Memory.Human())})
	}
	if old.Disk > 0 && q.Disk > 0 && q.Disk < old.Disk || old.Disk > 0 && q.Disk == 0 {
		out = append(out, api.FieldError{Field: "disk", Reason: fmt.Sprintf("a disk only grows: at least %s, got %s", old.Disk.Human(), q.Disk.Human())})
	}
	return out
}

// ResizeWorkspace changes a workspace's quantum. A running one is resized
// in place when the calendar admits it (see the file's comment); with
// req.AllowMigrate a growth its host cannot hold moves it live to a host
// that can. One that is not running (stopped, no lease held) has its
// spec changed for its next start. The answer comes once the decision is
// stored; Status.Applied shows when the host enforces it.
func (ctl *Controller) ResizeWorkspace(ctx context.Context, project, name string, req api.ResizeRequest) (model.Workspace, error) {
	ws, err := ctl.getWS(ctx, project, name)
	if err != nil {
		return ws, err
	}
	old := ws.Spec.Quantum
	q := Resized(old, req)
	if q == old {
		return ws, invalid("nothing to change: give at least one of vcpus, cpu, memory, disk, disk_iops, disk_bps, bandwidth (different from now)")
	}
	if err := spec.ValidateQuantum(q); err != nil {
		return ws, err
	}
	if ws.Status.Migration != nil {
		return ws, conflict(fmt.Sprintf("workspace %q is migrating to %s: resize it once it is there", name, ws.Status.Migration.To))
	}
	running := ws.Desired == model.DesiredRunning && ws.Status.Node != "" &&
		(ws.Status.State == model.StateRunning || ws.Status.State == model.StateStarting)
	if !running {
		return ctl.resizeIdle(ctx, project, name, old, q)
	}
	if fe := notInPlace(old, q); len(fe) > 0 {
		return ws, &Error{Kind: KindConflict, Msg: fmt.Sprintf("workspace %q cannot take this resize while it runs: %s", name, fe[0].Reason), Fields: fe}
	}
	var refusal error
	ws, err = ctl.calendarWS(ctx, project, name, func(c *calendar.Calendar, w *model.Workspace) ([]calendar.Action, error) {
		if w.Spec.Quantum != old {
			return nil, conflict(fmt.Sprintf("workspace %q was resized meanwhile: try again", name))
		}
		id := leaseID(*w)
		v, ok := c.Get(id)
		if !ok || v.State != calendar.StateRunning {
			return nil, conflict(fmt.Sprintf("workspace %q cannot be resized now: its lease %s is not running", name, id))
		}
		acts, err := c.Resize(id, memberIndex(v, *w), q.Resources(), ctl.now())
		if err != nil {
			refusal = err
			return acts, calendarRefusal(err, project)
		}
		w.Spec.Quantum = q
		return acts, nil
	})
	var rf *calendar.Refusal
	if err != nil && req.AllowMigrate && errors.As(refusal, &rf) {
		mw, merr := ctl.beginMigration(ctx, project, name, "", "resize", &q, model.Migration{})
		if merr != nil {
			return mw, fmt.Errorf("%w; and no host can take it at the new size: %w", err, merr)
		}
		ctl.event(ctx, mw, "resizing", fmt.Sprintf("%s has no room for %s until the lease ends (%v): migrating to %s, resized there",
			ws.Status.Node, quantumString(q), err, mw.Status.Migration.To))
		return mw, nil
	}
	if err != nil {
		return ws, err
	}
	ctl.event(ctx, ws, "resizing", fmt.Sprintf("quantum %s -> %s; admitted on %s until the lease ends", quantumString(old), quantumString(q), ws.Status.Node))
	return ws, nil
}

// resizeIdle changes the quantum of a workspace that does not run: it
// takes effect at its next start (admitted then). A disk never shrinks.
func (ctl *Controller) resizeIdle(ctx context.Context, project, name string, old, q model.Quantum) (model.Workspace, error) {
	ws, err := ctl.mutateWS(ctx, project, name, func(w *model.Workspace) error {
		if w.Spec.Quantum != old {
			return conflict(fmt.Sprintf("workspace %q was resized meanwhile: try again", name))
		}
		if w.Desired == model.DesiredRunning || w.Status.Migration != nil {
			return conflict(fmt.Sprintf("workspace %q is %s: resize it once it runs, or stop it first", name, lower(w.Status.State)))
		}
		if w.Status.State == model.StateSuspended && (q.VCPUs != old.VCPUs || q.Memory != old.Memory || q.MaxMemory != old.MaxMemory || q.Disk != old.Disk) {
			return conflict(fmt.Sprintf("workspace %q is suspended: its saved memory resumes only into the machine it was saved from (vCPUs, memory, disk); change the CPU cap, I/O or bandwidth now, the rest once it runs again", name))
		}
		if old.Disk > 0 && q.Disk < old.Disk {
			return &Error{Kind: KindConflict, Msg: fmt.Sprintf("a disk only grows: at least %s", old.Disk.Human()),
				Fields: []api.FieldError{{Field: "disk", Reason: fmt.Sprintf("at least %s, got %s", old.Disk.Human(), q.Disk.Human())}}}
		}
		w.Spec.Quantum = q
		return nil
	})
	if err != nil {
		return ws, err
	}
	ctl.event(ctx, ws, "resized", fmt.Sprintf("quantum %s -> %s, from its next start", quantumString(old), quantumString(q)))
	return ws, nil
}
