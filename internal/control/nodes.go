package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"sort"
	"time"

	"vgrid/api"
	"vgrid/internal/model"
	"vgrid/internal/store"
)

// NameRE is what names of hosts, projects and images must look like.
var NameRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9.-]{0,61}[a-z0-9])?$`)

// RegisterNode stores a host (new or returning) and adds it to the
// calendar if it does not know it.
func (ctl *Controller) RegisterNode(ctx context.Context, n model.Node) (model.Node, error) {
	if fe := validRegistration(n, ctl.now()); len(fe) > 0 {
		return n, invalid("invalid node", fe...)
	}
	now := ctl.now()
	n.RegisteredAt, n.LastHeartbeat = now, now
	// What the control plane keeps of a host across its registrations.
	n.State, n.Cordoned, n.LostAt, n.CertificateExpiresAt = model.NodeReady, false, time.Time{}, time.Time{}
	if old, err := ctl.Node(ctx, n.Name); err == nil {
		n.Cordoned, n.CertificateExpiresAt = old.Cordoned, old.CertificateExpiresAt
		if n.Storage == "" {
			n.Storage = old.Storage // told apart (PUT /nodes/{node}/storage)
		}
		// What its guests showed of its speed stays; the agent's own
		// measurements (file transfer rates) are its own.
		if m := old.Measured; m != nil {
			c := *m
			if n.Measured != nil {
				c.Stage = n.Measured.Stage
			}
			n.Measured = &c
		}
	} else if n.Measured != nil {
		n.Measured = &model.HostTimes{Stage: n.Measured.Stage}
	}
	b, _ := json.Marshal(n)
	// Stored and added to the calendar under the calendar's lock: a create
	// never sees the host Ready in the store but missing from the
	// calendar (it was refused as if no host had room).
	ctl.mu.Lock()
	if _, err := ctl.store.Update(ctx, "nodes/"+n.Name, b, 0); err != nil {
		ctl.mu.Unlock()
		return n, err
	}
	delete(ctl.lateHosts, n.Name)
	known := ctl.cal != nil && ctl.calHosts[n.Name]
	if ctl.cal != nil && !ctl.calHosts[n.Name] {
		// A host the calendar does not know yet.
		if err := ctl.cal.AddHost(calHost(n), now); err != nil {
			ctl.log.Warn("calendar: add host", "node", n.Name, "err", err)
		} else {
			ctl.calHosts[n.Name] = true
		}
	}
	ctl.mu.Unlock()
	if known {
		ctl.updateHost(ctx, n) // as it describes itself now
	}
	ctl.wake()
	ctl.log.Info("node registered", "node", n.Name, "cpu", n.Capacity.MilliCPU, "memory", n.Capacity.Memory.Human(), "accel", n.Accel)
	return n, nil
}

// Heartbeat records that a host is alive, with its capacity and labels
// when it sends them.
func (ctl *Controller) Heartbeat(ctx context.Context, name string, hb model.Node) error {
	if fe := validHeartbeat(name, hb, ctl.now()); len(fe) > 0 {
		return invalid("invalid heartbeat", fe...)
	}
	var n model.Node
	var back, changed bool
	for attempt := 0; ; attempt++ {
		kv, err := ctl.store.Get(ctx, "nodes/"+name)
		if err != nil {
			return err
		}
		n = model.Node{}
		if err := json.Unmarshal(kv.Value, &n); err != nil {
			return fmt.Errorf("decode %s: %w", kv.Key, err)
		}
		before := calHost(n)
		if hb.Capacity.MilliCPU > 0 {
			n.Capacity = hb.Capacity
		}
		if hb.Labels != nil {
			n.Labels = hb.Labels
		}
		if m := hb.Measured; m != nil && len(m.Stage) > 0 {
			if n.Measured == nil {
				n.Measured = &model.HostTimes{}
			}
			n.Measured.Stage = m.Stage
		}
		if hb.Images != nil {
			n.Images = hb.Images
		}
		changed = !reflect.DeepEqual(before, calHost(n))
		if hb.Transfer != "" {
			n.Transfer = hb.Transfer
		}
		n.Running = hb.Running
		if hb.AgentVersion != "" {
			n.AgentVersion = hb.AgentVersion // an agent upgraded in place
		}
		back = n.State == model.NodeLost
		n.LastHeartbeat = ctl.now()
		n.State, n.LostAt = model.NodeReady, time.Time{}
		b, _ := json.Marshal(n)
		// Conditional: a host being declared Lost meanwhile is seen.
		_, err = ctl.store.Update(ctx, kv.Key, b, kv.Revision)
		if errors.Is(err, store.ErrConflict) && attempt < 20 {
			continue
		}
		if err != nil {
			return err
		}
		break
	}
	observeHeartbeat(name)
	if back {
		ctl.log.Warn("lost host heartbeats again", "node", name)
		ctl.hostBack(ctx, n)
	} else if changed {
		ctl.updateHost(ctx, n)
	}
	ctl.mu.Lock()
	late := ctl.lateHosts[name]
	ctl.mu.Unlock()
	if late && !back {
		// Ready from this heartbeat on, not from the next health check:
		// a request that saw the host Ready is not refused by the cordon
		// its late heartbeats put on it (a restarted control plane).
		ctl.setNotReady(ctx, n, false)
	}
	return nil
}

// Assignments returns the workspaces placed on node and the images they
// use. With after > 0 it first waits (up to wait) until a workspace placed
// on node (before or after the change) changed after that revision, so
// agents learn of new work at once and other hosts' changes wake nobody.
func (ctl *Controller) Assignments(ctx context.Context, name string, after int64, wait time.Duration) (api.Assignments, error) {
	if after > 0 {
		if err := ctl.waitChange(ctx, name, after, wait); err != nil {
			return api.Assignments{}, err
		}
	}
	rev, err := ctl.store.Revision(ctx)
	if err != nil {
		return api.Assignments{}, err
	}
	all, err := ctl.listWS(ctx, "ws/")
	if err != nil {
		return api.Assignments{}, err
	}
	imgs, err := ctl.images(ctx)
	if err != nil {
		return api.Assignments{}, err
	}
	out := api.Assignments{Revision: rev, Workspaces: []model.Workspace{}}
	used := map[string]bool{}
	var mine []model.Workspace
	var sources map[string]string
	for _, ws := range all {
		if m := ws.Status.Move; m != nil && m.From == name && ws.Status.Node != name {
			out.Outgoing = append(out.Outgoing, api.Outgoing{ID: ws.ID, Project: ws.Project, Name: ws.Spec.Name, To: ws.Status.Node, Memory: m.Memory})
		}
		if m := ws.Status.Migration; m != nil && m.To == name && ws.Status.Node != name && ws.Desired != model.DesiredDeleted {
			// Migrating live to this host: its agent prepares it.
			out.Incoming = append(out.Incoming, ws)
			if !used[ws.Spec.Image] {
				used[ws.Spec.Image] = true
				if img, ok := imgs[ws.Spec.Image]; ok {
					out.Images = append(out.Images, img)
				}
			}
		}
		if ws.Status.Node == name {
			if m := ws.Status.Move; m != nil {
				// Where the files are served from, as that host says now.
				if sources == nil {
					sources = ctl.transferAddrs(ctx)
				}
				m.Source = sources[m.From]
			}
			mine = append(mine, ws)
			if !used[ws.Spec.Image] {
				used[ws.Spec.Image] = true
				if img, ok := imgs[ws.Spec.Image]; ok {
					out.Images = append(out.Images, img)
				}
			}
		}
	}
	if len(mine) > 0 {
		if out.Workspaces, err = ctl.guarded(ctx, name, mine); err != nil {
			return api.Assignments{}, err
		}
	}
	if len(mine) > 0 || len(out.Incoming) > 0 {
		if out.Networks, err = ctl.hostNetworks(ctx, name, all); err != nil {
			return api.Assignments{}, err
		}
	}
	if out.Execs, err = ctl.pendingExecs(ctx, name); err != nil {
		return api.Assignments{}, err
	}
	if out.Saves, err = ctl.pendingSaves(ctx, name); err != nil { // save.go
		return api.Assignments{}, err
	}
	if err := ctl.addStaging(ctx, name, all, imgs, &out); err != nil {
		return api.Assignments{}, err
	}
	if err := ctl.volumeAssignments(ctx, name, append(mine, out.Incoming...), &out); err != nil {
		return api.Assignments{}, err
	}
	return out, nil
}

// guarded passes a host's workspaces through guard (see guard.go), with
// the calendar's lease states and the host's capacity.
func (ctl *Controller) guarded(ctx context.Context, node string, wss []model.Workspace) ([]model.Workspace, error) {
	kv, err := ctl.store.Get(ctx, "nodes/"+node)
	if err != nil {
		return nil, err
	}
	var n model.Node
	if err := json.Unmarshal(kv.Value, &n); err != nil {
		return nil, fmt.Errorf("decode %s: %w", kv.Key, err)
	}
	ctl.mu.Lock()
	defer ctl.mu.Unlock()
	c, err := ctl.calendarLocked(ctx)
	if err != nil {
		return nil, err
	}
	states := func(id string) (model.LeaseState, bool) {
		v, ok := c.Get(id)
		return v.State, ok
	}
	return guard(wss, states, ctl.policy().Overcommit.Capacity(n.Capacity)), nil
}

// waitChange blocks until a workspace placed on node, before or after the
// change, changes after rev; or the wait passes, or the client goes away.
// It returns at once when rev is not a revision of this store (ahead of
// it) or older than what the shared watch knows (see nodeWaker).
func (ctl *Controller) waitChange(ctx context.Context, node string, rev int64, wait time.Duration) error {
	cur, err := ctl.store.Revision(ctx)
	if err != nil {
		return err
	}
	if rev > cur {
		return nil
	}
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for {
		ch, done := ctl.waker.check(ctl.store, node, rev)
		if done {
			return nil
		}
		// A command for one of its guests wakes it too (exec.go).
		xch, done := ctl.execs.waker.check(ctl.store, node, rev)
		if done {
			return nil
		}
		// And a change of a volume it stores (volumes.go).
		vch, done := ctl.vols.waker.check(ctl.store, node, rev)
		if done {
			return nil
		}
		// And a save of one of its workspaces' disks (save.go).
		sch, done := ctl.waitSave(node, rev)
		if done {
			return nil
		}
		select {
		case <-ch:
		case <-xch:
		case <-sch:
		case <-vch:
		case <-timer.C:
			return nil
		case <-ctx.Done():
			return nil
		}
	}
}

// Report merges an agent's report about one workspace on node. A
// workspace that is not (or no longer) on the node is a KindGone error.
func (ctl *Controller) Report(ctx context.Context, node, project, name string, rep api.AgentReport) (model.Workspace, error) {
	if fe := ValidateReport(rep, ctl.now()); len(fe) > 0 {
		return model.Workspace{}, invalid("invalid report", fe...)
	}
	var prev model.State
	var movedFrom *model.Move
	var resumeMoved bool
	var resizedTo *model.Quantum
	// Written with the end of its lease when the report says its guest is
	// gone (changeAndRelease).
	ws, err := ctl.changeAndRelease(ctx, project, name, func(ws *model.Workspace) (err error) {
		if ws.ID != rep.ID || ws.Status.Node != node {
			return gone("no such workspace on this node")
		}
		if rep.Generation < ws.Status.Generation {
			return errSkip // a report about an earlier start
		}
		if rep.Moved || rep.MoveBytes > 0 {
			// A report on copying the workspace's files here: it says
			// nothing of its guest.
			m := ws.Status.Move
			switch {
			case m == nil:
				return errSkip
			case rep.Moved:
				movedFrom, ws.Status.Move = m, nil
				movedFrom.Bytes, movedFrom.Done = rep.MoveBytes, rep.MoveBytes
			default:
				m.Bytes, m.Done = rep.MoveBytes, rep.MoveDone
			}
			prev = ws.Status.State
			return nil
		}
		before, _ := json.Marshal(ws)
		defer func() {
			// A report that changes nothing (a usage refresh) writes
			// nothing: a write would wake every host's long poll.
			if after, _ := json.Marshal(ws); err == nil && string(after) == string(before) {
				err = errSkip
			}
		}()
		prev = ws.Status.State
		st := &ws.Status
		st.State, ws.Desired, st.Reason = reportedState(*ws, rep)
		st.PID, st.Accel, st.Cgroup = rep.PID, rep.Accel, rep.Cgroup
		if rep.Applied != nil && (st.Applied == nil || *st.Applied != *rep.Applied) {
			if st.Applied != nil && *rep.Applied == ws.Spec.Quantum {
				resizedTo = rep.Applied
			}
			q := *rep.Applied
			st.Applied = &q
		}
		if rep.Guest != nil {
			st.Guest = rep.Guest
		}
		if !rep.StartedAt.IsZero() && (st.StartedAt.IsZero() || st.Timings.ProcessStarted.IsZero()) {
			st.StartedAt = rep.StartedAt // the lease's end (ExpiresAt) is the calendar's
		}
		t := &st.Timings
		setOnce(&t.AgentReceived, rep.AgentReceived)
		setOnce(&t.ProcessStarted, rep.ProcessStarted)
		setOnce(&t.GuestReady, rep.GuestReady)
		if !rep.Suspended.IsZero() {
			t.Suspended, t.SuspendTook, t.SuspendBytes = rep.Suspended, rep.SuspendTook, rep.SuspendBytes
		}
		if !rep.Resumed.IsZero() {
			t.Resumed, t.ResumeTook = rep.Resumed, rep.ResumeTook
		}
		if st.State == model.StateSuspended && st.ResumeOn != "" && st.ResumeOn != node {
			// Saved: now it moves to where the calendar resumed it.
			st.Move = &model.Move{From: node, Memory: true, Since: ctl.now()}
			st.Node, st.ResumeOn, ws.Desired = st.ResumeOn, "", model.DesiredRunning
			resumeMoved = true
		}
		return nil
	}, nil)
	if err != nil {
		return ws, err
	}
	if rep.CPUSeconds > 0 && rep.Generation >= ws.Status.Generation {
		ctl.recordUsage(ctx, ws, rep)
	}
	if resizedTo != nil {
		ctl.event(ctx, ws, "resized", fmt.Sprintf("%s enforces %s on the running guest", node, quantumString(*resizedTo)))
	}
	if resumeMoved {
		ctl.event(ctx, ws, "resuming", fmt.Sprintf("saved on %s; resumes on %s, its disk and saved memory copied there", node, ws.Status.Node))
	}
	if m := movedFrom; m != nil {
		took := ctl.now().Sub(m.Since)
		what := "disk"
		if m.Memory {
			what = "disk and saved memory"
		}
		ctl.event(ctx, ws, "moved", fmt.Sprintf("%s copied from %s (%s, checksummed) in %s", what, m.From, model.ByteSize(m.Bytes).Human(), took.Round(time.Millisecond)))
	}
	if ws.Status.State != prev {
		ctl.learnHostTimes(ctx, node, ws)
		msg := string(ws.Status.State)
		switch ws.Status.State {
		case model.StateStarting:
			msg = fmt.Sprintf("QEMU pid %d started (%s), %s after the request", ws.Status.PID, ws.Status.Accel,
				since(ws.Status.Timings.Created, ws.Status.Timings.ProcessStarted))
		case model.StateRunning:
			if g := ws.Status.Guest; g != nil {
				msg = fmt.Sprintf("guest ready: %d vCPU, %d MiB, addresses %v", g.VCPUs, g.MemoryMiB, g.Addresses)
			}
		case model.StateStopped, model.StateFailed:
			if ws.Status.Reason != "" {
				msg += ": " + ws.Status.Reason
			}
		case model.StateSuspended:
			t := ws.Status.Timings
			msg = fmt.Sprintf("memory saved (%s) in %s", model.ByteSize(t.SuspendBytes).Human(), t.SuspendTook.D().Round(time.Millisecond))
		}
		ctl.event(ctx, ws, lower(ws.Status.State), msg)
	}
	return ws, nil
}

func setOnce(dst *time.Time, v time.Time) {
	if dst.IsZero() && !v.IsZero() {
		*dst = v
	}
}

func lower(s model.State) string {
	b := []byte(s)
	if len(b) > 0 && b[0] >= 'A' && b[0] <= 'Z' {
		b[0] += 'a' - 'A'
	}
	return string(b)
}

// MaxConsole bounds the stored console tail.
const MaxConsole = 64 << 10

// Console stores the tail of a workspace's serial console.
func (ctl *Controller) Console(ctx context.Context, node, project, name, id string, tail []byte) error {
	ws, err := ctl.getWS(ctx, project, name)
	if err != nil {
		return err
	}
	if ws.Status.Node != node || ws.ID != id {
		return gone("no such workspace on this node")
	}
	if len(tail) > MaxConsole {
		tail = tail[len(tail)-MaxConsole:]
	}
	_, err = ctl.store.Update(ctx, "console/"+ws.ID, tail, 0)
	return err
}

// Forgotten is the agent saying it has torn a workspace down: the record
// goes.
func (ctl *Controller) Forgotten(ctx context.Context, node, project, name, id string) error {
	ws, err := ctl.getWS(ctx, project, name)
	if err != nil {
		return err
	}
	if ws.Status.Node != node || ws.ID != id {
		return gone("no such workspace on this node")
	}
	if ws.Desired != model.DesiredDeleted {
		return conflict("workspace is not being deleted")
	}
	// The record goes with the end of its lease, in one transaction: the
	// guest is gone.
	removed := false
	gone, err := ctl.changeAndRelease(ctx, project, name, func(w *model.Workspace) error {
		if w.ID != id {
			return errSkip // another workspace of the name meanwhile
		}
		w.Status.State, w.Status.PID = model.StateStopped, 0
		removed = true
		return nil
	}, func(model.Workspace) bool { return true })
	if err != nil || !removed {
		return err
	}
	ctl.forget(ctx, gone)
	return nil
}

// Nodes lists the hosts with what is committed on them.
func (ctl *Controller) Nodes(ctx context.Context) ([]api.NodeInfo, error) {
	nodes, err := ctl.nodes(ctx)
	if err != nil {
		return nil, err
	}
	all, err := ctl.listWS(ctx, "ws/")
	if err != nil {
		return nil, err
	}
	out := api.NodeList{Nodes: []api.NodeInfo{}}
	for _, n := range nodes {
		n.State = hostState(n, ctl.now(), ctl.started, ctl.cfg.NodeTimeout, ctl.cfg.NodeLostAfter)
		ni := api.NodeInfo{Node: n, Ready: n.State == model.NodeReady}
		for _, ws := range all {
			if ws.Status.Node == n.Name && holds(ws) {
				ni.Allocated = ni.Allocated.Add(resourcesOf(ws.Spec))
				ni.Workspaces++
			}
		}
		ni.Free = n.Capacity.Sub(ni.Allocated)
		out.Nodes = append(out.Nodes, ni)
	}
	sort.Slice(out.Nodes, func(i, j int) bool { return out.Nodes[i].Name < out.Nodes[j].Name })
	return out.Nodes, nil
}

// learnHostTimes takes a host's speed from a workspace that just became
// Running (its boot time, or its restore rate after a resume) or Suspended
// (its save rate), keeps it with the node, and gives the calendar the
// slowest recent figures, so that reservations are planned to be ready at
// their start.
func (ctl *Controller) learnHostTimes(ctx context.Context, node string, ws model.Workspace) {
	observeGuestTimes(node, ws)
	t := ws.Status.Timings
	var add func(*model.HostTimes)
	switch ws.Status.State {
	case model.StateRunning:
		switch {
		case !t.Resumed.IsZero() && t.ResumeTook > 0 && t.SuspendBytes > 0:
			rate := int64(float64(t.SuspendBytes) / t.ResumeTook.D().Seconds())
			add = func(h *model.HostTimes) { h.Resume = model.AddSample(h.Resume, rate) }
		case t.Resumed.IsZero() && !t.ProcessStarted.IsZero() && t.GuestReady.After(t.ProcessStarted):
			boot := t.GuestReady.Sub(t.ProcessStarted)
			if boot > 10*time.Minute {
				return // not a boot: the agent was away
			}
			add = func(h *model.HostTimes) { h.Boot = model.AddSample(h.Boot, model.Duration(boot)) }
		}
	case model.StateSuspended:
		if t.SuspendBytes > 0 && t.SuspendTook > 0 {
			rate := int64(float64(t.SuspendBytes) / t.SuspendTook.D().Seconds())
			add = func(h *model.HostTimes) { h.Suspend = model.AddSample(h.Suspend, rate) }
		}
	}
	if add == nil {
		return
	}
	ctl.recordHostTimes(ctx, node, add)
}

// recordHostTimes adds a measure (add) to a host's record and gives the
// calendar the host's figures.
func (ctl *Controller) recordHostTimes(ctx context.Context, node string, add func(*model.HostTimes)) {
	var n model.Node
	for attempt := 0; ; attempt++ {
		kv, err := ctl.store.Get(ctx, "nodes/"+node)
		if err != nil {
			return
		}
		n = model.Node{}
		if err := json.Unmarshal(kv.Value, &n); err != nil {
			return
		}
		if n.Measured == nil {
			n.Measured = &model.HostTimes{}
		}
		add(n.Measured)
		b, _ := json.Marshal(n)
		_, err = ctl.store.Update(ctx, "nodes/"+node, b, kv.Revision)
		if errors.Is(err, store.ErrConflict) && attempt < 20 {
			continue
		}
		if err != nil {
			ctl.log.Warn("record host times", "node", node, "err", err)
			return
		}
		break
	}
	ctl.mu.Lock()
	defer ctl.mu.Unlock()
	if ctl.cal == nil || !ctl.calHosts[node] {
		return // restored from the node record at its next use
	}
	h := calHost(n)
	if err := ctl.cal.SetHostTimes(node, h.BootTime, h.SuspendRate, h.ResumeRate, ctl.now()); err != nil {
		ctl.log.Warn("calendar: host times", "node", node, "err", err)
		return
	}
	if err := ctl.cal.SetHostMigrateRate(node, h.MigrateRate, ctl.now()); err != nil {
		ctl.log.Warn("calendar: host migration rate", "node", node, "err", err)
		return
	}
	if err := ctl.commitLocked(ctx, nil, nil); err != nil {
		ctl.log.Warn("calendar: store decisions", "err", err)
	}
	ctl.log.Info("host times", "node", node, "boot", h.BootTime, "suspend_rate", model.ByteSize(h.SuspendRate), "resume_rate", model.ByteSize(h.ResumeRate))
}

// transferAddrs are the hosts' transfer addresses (model.Node.Transfer).
func (ctl *Controller) transferAddrs(ctx context.Context) map[string]string {
	out := map[string]string{}
	nodes, err := ctl.nodes(ctx)
	if err != nil {
		return out
	}
	for _, n := range nodes {
		out[n.Name] = n.Transfer
	}
	return out
}

// updateHost gives the calendar a live host as it describes itself now
// (capacity, labels, measured rates) and stores what that makes due.
func (ctl *Controller) updateHost(ctx context.Context, n model.Node) {
	ctl.mu.Lock()
	defer ctl.mu.Unlock()
	if ctl.cal == nil || !ctl.calHosts[n.Name] {
		return // taken from the node record when the calendar loads
	}
	acts, err := ctl.cal.UpdateHost(calHost(n), ctl.now())
	if err != nil {
		ctl.log.Warn("calendar: update host", "node", n.Name, "err", err)
	}
	if err := ctl.commitLocked(ctx, acts, nil); err != nil {
		ctl.log.Warn("calendar: store decisions", "err", err)
	}
	ctl.log.Info("host changed", "node", n.Name, "cpu", n.Capacity.MilliCPU, "memory", n.Capacity.Memory.Human(), "stage_rate", model.ByteSize(n.Measured.StageRate()).Human())
}

// reportedState is what an agent's report makes of a workspace's state,
// desired state and reason. It is pure.
func reportedState(ws model.Workspace, rep api.AgentReport) (model.State, model.Desired, string) {
	prev, desired, reason := ws.Status.State, ws.Desired, ws.Status.Reason
	next := rep.State
	// Stopped as the control plane asked (a stop, a cancel, a requeue,
	// its lease's end): the reason is the control plane's. The agent
	// echoes the one it was told when it began to stop, which may be
	// older: a requeue's, then the user's cancel while the guest stopped;
	// the echo would bring the requeue back, and the lease start again.
	asked := (desired == model.DesiredStopped || desired == model.DesiredDeleted) && reason != ""
	// The user's wish wins over a report that predates it: a stopping
	// workspace does not flip back to Running.
	// (A workspace being suspended keeps running until it is saved.)
	if desired != model.DesiredRunning && desired != model.DesiredSuspended && (next == model.StateRunning || next == model.StateStarting) {
		next = model.StateStopping
	}
	if prev == model.StateRunning && next == model.StateStarting && rep.PID != 0 && rep.PID == ws.Status.PID {
		// An agent that restarted adopts the same QEMU process before
		// its guest agent has answered again: still running, not a
		// new boot (which would be an event and a boot-time sample).
		next = model.StateRunning
	}
	if prev == model.StateFailed && next == model.StateStopped {
		// The agent confirming that nothing runs: it stays Failed, with
		// its reason, until it is started again.
		next = model.StateFailed
	}
	gone := next == model.StateStopped || next == model.StateFailed
	switch {
	case desired == model.DesiredRunning && gone && prev != next:
		// It stopped without being asked (the guest powered off or
		// crashed) or could not start: its lease ends, and it stays
		// stopped until the user starts it again.
		desired = model.DesiredStopped
	case desired == model.DesiredSuspended && gone && guestUp(ws):
		// Its guest ended while being saved (QEMU died, or the agent
		// restarted mid-save and found no whole saved state): nothing
		// to resume. Like a crash: its lease ends, it stays stopped.
		// (Found by the control-plane fault suite, seed 535850181: left
		// wanted suspended, the calendar resumed it to a guest that was
		// gone, and its lease ended with the workspace wanted running.)
		desired = model.DesiredStopped
		why := "its guest ended while being suspended; its memory was not saved"
		if rep.Reason != "" && rep.Reason != reason {
			why += ": " + rep.Reason
		}
		return next, desired, why
	}
	if (rep.Reason != "" || next == model.StateRunning) && (!asked || next == model.StateFailed) {
		reason = rep.Reason
	}
	return next, desired, reason
}
