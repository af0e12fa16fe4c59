package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"vgrid/api"
	"vgrid/internal/calendar"
	"vgrid/internal/model"
	"vgrid/internal/store"
)

// A host's health follows its heartbeats (checkHosts, at every Reconcile):
//
//	Ready ──(no heartbeat for NodeTimeout)──▶ NotReady ──(for NodeLostAfter)──▶ Lost
//	  ▲                                          │                               │
//	  └────────────────(a heartbeat)─────────────┴───────────────────────────────┘
//
// A NotReady host is cordoned in the calendar (no new holds) but keeps what
// it holds. A Lost host leaves the calendar (calendar.RemoveHost): its
// best-effort leases are requeued, its begun reservations, immediate and
// deadline leases restarted elsewhere for the rest of their window where
// there is room now (else they fail, with the reason), and its workspaces
// are fenced (lostHost): whatever the control plane moved or ended is
// stopped on the host if it comes back, never run twice. A Lost host that
// heartbeats again comes back empty.

// hostState is a host's state from its last heartbeat at now; a host
// marked Lost stays Lost until it heartbeats again. Silence counts toward
// Lost only from started, when this control plane began to listen: after
// a control plane was down, its hosts get their whole bound to heartbeat
// again before their leases are handled elsewhere.
func hostState(n model.Node, now, started time.Time, notReadyAfter, lostAfter time.Duration) model.NodeState {
	if n.State == model.NodeLost {
		return model.NodeLost
	}
	late := now.Sub(n.LastHeartbeat)
	silent := now.Sub(n.LastHeartbeat)
	if started.After(n.LastHeartbeat) {
		silent = now.Sub(started)
	}
	switch {
	case silent >= lostAfter && lostAfter > 0:
		return model.NodeLost
	case late >= notReadyAfter:
		return model.NodeNotReady
	}
	return model.NodeReady
}

// lostHost fences a workspace of a host that was lost, once the calendar's
// decisions about its lease are stored: a guest that was (or may have
// been) up there is down as far as the control plane knows. restartsOn
// names the hosts the calendar restarted its lease on, if it did and has
// not started it there yet (it may stage the image first): the workspace
// then waits for that start, Scheduled on no host. It is pure; the
// generation goes up so that late reports from the host about the old
// guest are ignored, and the host's agent, if it comes back, stops it.
func lostHost(ws model.Workspace, host, restartsOn string) Change {
	same := Change{WS: ws}
	st := &ws.Status
	if st.Node != host || ws.Desired == model.DesiredDeleted {
		return same
	}
	why := "host " + host + " lost"
	switch {
	case st.ResumeOn != "":
		// To move once saved, but the host went first: it starts afresh
		// where the calendar resumed it.
		ws.Desired = model.DesiredRunning
		st.Node, st.ResumeOn = st.ResumeOn, ""
		st.State, st.Reason = model.StatePending, why+" before its memory was saved: it starts again from the beginning on "+st.Node
	case st.State == model.StateSuspended || (ws.Desired == model.DesiredSuspended && st.State != model.StateRunning):
		// Its saved memory is on the lost host: the calendar queued its
		// lease again from the beginning.
		ws.Desired = model.DesiredStopped
		st.State, st.Reason = model.StateQueued, "requeued: "+why+" with its saved memory; it starts again from the beginning"
	case restartsOn != "" && ws.Desired == model.DesiredRunning:
		// Restarted elsewhere, its start there not yet due: the calendar's
		// start places it (transition), from a fresh disk.
		st.Node = ""
		st.State, st.Reason = model.StateScheduled, why+": restarts on "+restartsOn+" for the rest of its lease, from a fresh disk"
	case !guestUp(ws) && st.State != model.StatePending:
		return same // nothing ran there (a Pending one may have begun to)
	case ws.Desired == model.DesiredStopped && strings.HasPrefix(st.Reason, "requeued"):
		st.State = model.StateQueued
	case ws.Desired == model.DesiredStopped && strings.Contains(st.Reason, "removed"):
		// Its lease ended with the host: no room elsewhere.
		st.State, st.Reason = model.StateFailed, why+": no room on another host for the rest of its lease"
	case ws.Desired == model.DesiredStopped:
		st.State = model.StateStopped
	default:
		ws.Desired = model.DesiredStopped
		st.State, st.Reason = model.StateFailed, why
	}
	st.PID, st.Guest = 0, nil
	st.Generation++
	return Change{WS: ws, Type: "host-lost", Message: fmt.Sprintf("%s: %s", why, lower(st.State))}
}

// checkHosts moves hosts between Ready, NotReady and Lost by their last
// heartbeats and carries out what that means.
func (ctl *Controller) checkHosts(ctx context.Context) error {
	nodes, err := ctl.nodes(ctx)
	if err != nil {
		return err
	}
	now := ctl.now()
	for _, n := range nodes {
		st := hostState(n, now, ctl.started, ctl.cfg.NodeTimeout, ctl.cfg.NodeLostAfter)
		switch {
		case st == model.NodeLost && n.State != model.NodeLost:
			if err := ctl.loseHost(ctx, n.Name); err != nil {
				ctl.log.Warn("host lost", "node", n.Name, "err", err)
			}
		case st == model.NodeLost:
			// Fenced already; again, should a write have failed (or this
			// control plane have just started), not at every look.
			ctl.mu.Lock()
			done := ctl.fenced[n.Name]
			ctl.mu.Unlock()
			if !done {
				ctl.fenceLost(ctx, n.Name)
			}
		default:
			ctl.setNotReady(ctx, n, st == model.NodeNotReady)
		}
	}
	return nil
}

// setNotReady cordons a host in the calendar while its heartbeats are
// late (and lifts that when they come again, unless an admin cordoned it).
func (ctl *Controller) setNotReady(ctx context.Context, n model.Node, late bool) {
	ctl.mu.Lock()
	defer ctl.mu.Unlock()
	if ctl.lateHosts == nil {
		ctl.lateHosts = map[string]bool{}
	}
	if ctl.lateHosts[n.Name] == late {
		return
	}
	ctl.lateHosts[n.Name] = late
	if late {
		ctl.log.Warn("host not ready: heartbeats late", "node", n.Name, "last", n.LastHeartbeat)
	} else {
		ctl.log.Info("host ready again", "node", n.Name)
	}
	ctl.cordonLocked(ctx, n.Name, late || n.Cordoned)
}

// cordonLocked sets a host's cordon in the calendar and stores what that
// makes due (lifting it may start waiting leases). mu must be held.
func (ctl *Controller) cordonLocked(ctx context.Context, name string, on bool) {
	if ctl.cal == nil || !ctl.calHosts[name] {
		return // the calendar takes it from the node record when it loads
	}
	acts, err := ctl.cal.SetCordon(name, on, ctl.now())
	if err != nil {
		ctl.log.Warn("calendar: cordon", "node", name, "err", err)
	}
	if err := ctl.commitLocked(ctx, acts, nil); err != nil {
		ctl.log.Warn("calendar: store decisions", "err", err)
	}
}

// loseHost takes a host that stopped heartbeating out of the calendar,
// stores what that decides together with the host's new state, and fences
// its workspaces.
func (ctl *Controller) loseHost(ctx context.Context, name string) error {
	ctl.mu.Lock()
	c, err := ctl.calendarLocked(ctx)
	if err != nil {
		ctl.mu.Unlock()
		return err
	}
	kv, err := ctl.store.Get(ctx, "nodes/"+name)
	if err != nil {
		ctl.mu.Unlock()
		return err
	}
	var n model.Node
	if err := json.Unmarshal(kv.Value, &n); err != nil {
		ctl.mu.Unlock()
		return fmt.Errorf("decode %s: %w", kv.Key, err)
	}
	now := ctl.now()
	n.State, n.LostAt = model.NodeLost, now
	b, _ := json.Marshal(n)
	nodeOp := store.Op{Key: "nodes/" + name, Value: b, Rev: kv.Revision}
	// What ran there, to say why it restarts elsewhere.
	was := map[string]bool{}
	for _, v := range c.Leases() {
		for _, h := range v.Hosts {
			if h == name && !v.State.Over() {
				was[v.ID] = true
			}
		}
	}
	var acts []calendar.Action
	if ctl.calHosts[name] {
		acts, err = c.RemoveHost(name, now)
		if err != nil && !errors.Is(err, calendar.ErrNotFound) {
			ctl.log.Warn("calendar: remove host", "node", name, "err", err)
		}
		delete(ctl.calHosts, name)
	}
	// The leases restarted elsewhere: started there at once, or later
	// (after staging the image), so not all have a start action yet.
	restarted := map[string]string{}
	for id := range was {
		if on := restartedOnLocked(c, id, name); on != "" {
			restarted[id] = on
		}
	}
	err = ctl.commitLocked(ctx, acts, []store.Op{nodeOp})
	delete(ctl.lateHosts, name)
	ctl.mu.Unlock()
	if err != nil {
		return err
	}
	ctl.log.Warn("host lost: no heartbeat", "node", name, "last", n.LastHeartbeat, "after", now.Sub(n.LastHeartbeat).Round(time.Second))
	ids := make([]string, 0, len(restarted))
	for id := range restarted {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		if project, wsName, ok := refOfLease(id); ok {
			if ws, err := ctl.getWS(ctx, project, wsName); err == nil {
				ctl.event(ctx, ws, "restarted", fmt.Sprintf("host %s lost: restarted on %s for the rest of its lease (its disk was on %s: it boots from a fresh one)",
					name, restarted[id], name))
			}
		}
	}
	ctl.fenceLost(ctx, name)
	ctl.refreshMovable(ctx)
	ctl.wake()
	return nil
}

// restartedOnLocked names the hosts (comma-separated) where the calendar
// restarted lease id after host lost left it: "" unless it is scheduled or
// running on other hosts. mu must be held.
func restartedOnLocked(c *calendar.Calendar, id, lost string) string {
	v, ok := c.Get(id)
	if !ok || (v.State != calendar.StateScheduled && v.State != calendar.StateRunning) || len(v.Hosts) == 0 {
		return ""
	}
	for _, h := range v.Hosts {
		if h == lost {
			return ""
		}
	}
	return strings.Join(v.Hosts, ",")
}

// restartedOn is restartedOnLocked with mu taken.
func (ctl *Controller) restartedOn(ctx context.Context, ws model.Workspace, lost string) string {
	ctl.mu.Lock()
	defer ctl.mu.Unlock()
	c, err := ctl.calendarLocked(ctx)
	if err != nil {
		return ""
	}
	return restartedOnLocked(c, leaseID(ws), lost)
}

// fenceLost applies lostHost to every workspace still on a lost host.
// It records the host as fenced when every write went through.
func (ctl *Controller) fenceLost(ctx context.Context, name string) {
	all, err := ctl.listWS(ctx, "ws/")
	if err != nil {
		ctl.log.Warn("fence lost host", "node", name, "err", err)
		return
	}
	ok := true
	defer func() {
		ctl.mu.Lock()
		if ctl.fenced == nil {
			ctl.fenced = map[string]bool{}
		}
		ctl.fenced[name] = ok
		ctl.mu.Unlock()
	}()
	for _, ws := range all {
		if lostHost(ws, name, "").Type == "" {
			continue
		}
		var ch Change
		_, err := ctl.changeAndRelease(ctx, ws.Project, ws.Spec.Name, func(w *model.Workspace) error {
			ch = lostHost(*w, name, ctl.restartedOn(ctx, *w, name))
			if ch.Type == "" {
				return errSkip
			}
			*w = ch.WS
			return nil
		}, nil)
		if err != nil {
			ctl.log.Warn("fence workspace of a lost host", "workspace", ref(ws), "err", err)
			ok = false
			continue
		}
		if ch.Type != "" {
			ctl.event(ctx, ch.WS, ch.Type, ch.Message)
		}
	}
}

// hostBack brings a Lost host back (it heartbeats or registers again):
// Ready, and in the calendar again, empty. mu must not be held.
func (ctl *Controller) hostBack(ctx context.Context, n model.Node) {
	ctl.mu.Lock()
	defer ctl.mu.Unlock()
	delete(ctl.fenced, n.Name)
	if ctl.cal == nil || ctl.calHosts[n.Name] {
		return
	}
	h := calHost(n)
	if err := ctl.cal.AddHost(h, ctl.now()); err != nil {
		ctl.log.Warn("calendar: add host", "node", n.Name, "err", err)
		return
	}
	ctl.calHosts[n.Name] = true
	if err := ctl.commitLocked(ctx, ctl.cal.Advance(ctl.now()), nil); err != nil {
		ctl.log.Warn("calendar: store decisions", "err", err)
	}
	ctl.log.Info("lost host back: in the calendar again, empty", "node", n.Name)
}

// CordonNode cordons (on) or uncordons a host: a cordoned host keeps what
// it runs but is given nothing new.
func (ctl *Controller) CordonNode(ctx context.Context, name string, on bool) (model.Node, error) {
	var n model.Node
	for attempt := 0; ; attempt++ {
		kv, err := ctl.store.Get(ctx, "nodes/"+name)
		if errors.Is(err, store.ErrNotFound) {
			return n, notFound(fmt.Sprintf("node %q", name))
		}
		if err != nil {
			return n, err
		}
		n = model.Node{}
		if err := json.Unmarshal(kv.Value, &n); err != nil {
			return n, fmt.Errorf("decode %s: %w", kv.Key, err)
		}
		n.Cordoned = on
		b, _ := json.Marshal(n)
		_, err = ctl.store.Update(ctx, kv.Key, b, kv.Revision)
		if errors.Is(err, store.ErrConflict) && attempt < 20 {
			continue
		}
		if err != nil {
			return n, err
		}
		break
	}
	ctl.mu.Lock()
	ctl.cordonLocked(ctx, name, on || ctl.lateHosts[name])
	ctl.mu.Unlock()
	ctl.wake()
	ctl.log.Info("node cordon", "node", name, "cordoned", on)
	return n, nil
}

// NodeInfo returns one host with what is committed on it.
func (ctl *Controller) NodeInfo(ctx context.Context, name string) (api.NodeInfo, error) {
	nodes, err := ctl.Nodes(ctx)
	if err != nil {
		return api.NodeInfo{}, err
	}
	for _, n := range nodes {
		if n.Name == name {
			return n, nil
		}
	}
	return api.NodeInfo{}, notFound(fmt.Sprintf("node %q", name))
}

// Node returns a host's stored record.
func (ctl *Controller) Node(ctx context.Context, name string) (model.Node, error) {
	kv, err := ctl.store.Get(ctx, "nodes/"+name)
	if errors.Is(err, store.ErrNotFound) {
		return model.Node{}, notFound(fmt.Sprintf("node %q", name))
	}
	if err != nil {
		return model.Node{}, err
	}
	var n model.Node
	if err := json.Unmarshal(kv.Value, &n); err != nil {
		return n, fmt.Errorf("decode %s: %w", kv.Key, err)
	}
	return n, nil
}

// DrainNode cordons a host and moves its workspaces off it with the means
// there are, live migration first: a running workspace (of any lease
// kind) migrates live to the host the calendar finds with room for it
// until its lease ends; where no host has room, a running best-effort
// workspace is suspended and resumes on another host (its files copied
// there) as soon as the calendar finds room; a suspended one resumes
// elsewhere likewise. What cannot be moved now is left, with the reason
// (no host with room for a lease that may not be suspended; stopped
// workspaces, whose disk moves when they are started again, elsewhere
// since the host is cordoned).
func (ctl *Controller) DrainNode(ctx context.Context, name string) (api.NodeDrained, error) {
	out := api.NodeDrained{Node: name, Moves: []api.DrainEntry{}}
	if _, err := ctl.CordonNode(ctx, name, true); err != nil {
		return out, err
	}
	all, err := ctl.listWS(ctx, "ws/")
	if err != nil {
		return out, err
	}
	why := "host " + name + " draining"
	for _, ws := range all {
		if ws.Status.Node != name || ws.Desired == model.DesiredDeleted {
			continue
		}
		e := api.DrainEntry{Project: ws.Project, Workspace: ws.Spec.Name}
		switch {
		case ws.Status.Migration != nil:
			e.Action = "migrating"
			e.Reason = "already migrating live to " + ws.Status.Migration.To
		case ws.Status.State == model.StateSuspended || ws.Desired == model.DesiredSuspended:
			e.Action = "suspended"
			e.Reason = "resumes on another host when there is room"
		case ws.Desired == model.DesiredRunning && migratable(ws) == "":
			mw, merr := ctl.beginMigration(ctx, ws.Project, ws.Spec.Name, "", "drain", nil, model.Migration{})
			if merr == nil {
				e.Action = "migrating"
				e.Reason = "live to " + mw.Status.Migration.To
				break
			}
			e.Action, e.Reason = ctl.evictForDrain(ctx, ws, why)
			e.Reason += " (no live migration: " + merr.Error() + ")"
		case ws.Desired == model.DesiredRunning:
			e.Action, e.Reason = ctl.evictForDrain(ctx, ws, why)
		case ws.Status.State == model.StateStopped || ws.Status.State == model.StateFailed:
			e.Action = "left"
			e.Reason = "stopped: its disk moves when it is started again (on another host, this one being cordoned)"
		default:
			continue // queued or scheduled: nothing on the host
		}
		out.Moves = append(out.Moves, e)
		ctl.log.Info("drain", "node", name, "workspace", ref(ws), "action", e.Action, "reason", e.Reason)
	}
	ctl.wake()
	return out, nil
}

// evictForDrain suspends a running best-effort workspace of a draining
// host (it resumes elsewhere), and says what it did.
func (ctl *Controller) evictForDrain(ctx context.Context, ws model.Workspace, why string) (action, reason string) {
	ctl.mu.Lock()
	var acts []calendar.Action
	c, err := ctl.calendarLocked(ctx)
	if err == nil {
		acts, err = c.Evict(leaseID(ws), why, ctl.now())
		if cerr := ctl.commitLocked(ctx, acts, nil); cerr != nil && err == nil {
			err = cerr
		}
	}
	ctl.mu.Unlock()
	if err != nil {
		if errors.Is(err, calendar.ErrInvalid) {
			return "left", "a running " + string(ws.Spec.LeaseKind()) + " lease is not suspended, and no other host has room to take it live"
		}
		return "left", "not moved while it runs: " + err.Error()
	}
	return "suspended", "resumes on another host when there is room"
}

// DeleteNode forgets a host that no longer serves: its record goes, and it
// leaves the calendar. A host that still has workspaces (placed there, or
// whose files are there) is refused, naming them: drain it, or move or
// delete them, first.
func (ctl *Controller) DeleteNode(ctx context.Context, name string) error {
	if _, err := ctl.Node(ctx, name); err != nil {
		return err
	}
	all, err := ctl.listWS(ctx, "ws/")
	if err != nil {
		return err
	}
	var on []string
	for _, ws := range all {
		if ws.Status.Node == name || ws.Status.Move != nil && ws.Status.Move.From == name {
			on = append(on, ref(ws))
		}
	}
	if len(on) > 0 {
		if len(on) > 10 {
			on = append(on[:10], fmt.Sprintf("and %d more", len(on)-10))
		}
		return conflict(fmt.Sprintf("host %s still has workspaces (%s): drain it and delete or start elsewhere what stays on it first", name, strings.Join(on, ", ")))
	}
	ctl.mu.Lock()
	defer ctl.mu.Unlock()
	del := []store.Op{{Key: "nodes/" + name, Delete: true}}
	if _, err := ctl.calendarLocked(ctx); err != nil {
		return err
	}
	var acts []calendar.Action
	if ctl.calHosts[name] {
		acts, err = ctl.cal.RemoveHost(name, ctl.now())
		if err != nil && !errors.Is(err, calendar.ErrNotFound) {
			return err
		}
		delete(ctl.calHosts, name)
	}
	delete(ctl.lateHosts, name)
	if err := ctl.commitLocked(ctx, acts, del); err != nil {
		return err
	}
	ctl.log.Info("node deleted", "node", name)
	return nil
}
