package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"

	"vgrid/internal/calendar"
	"vgrid/internal/model"
	"vgrid/internal/store"
)

// The lease calendar's state is stored, and stored before it is acted on:
//
//	leases/<project>/<name>[#gen]   model.LeaseRecord (the lease ID is the key's rest)
//	usage/<project>                 model.ProjectUsage (fair share, charged core-hours)
//	calendar/state                  calendarState (the clock, removed hosts)
//
// Every calendar decision is written in one transaction together with what
// it does to the workspaces (see commitLocked), so that a crash at any
// moment leaves either the decision and its effects or neither. At start
// the calendar is restored from these records (calendar.Restore), exactly
// as it was.

const calendarStateKey = "calendar/state"

func leaseKey(id string) string { return "leases/" + id }

// calendarState is the calendar's own stored state besides its leases and
// projects.
type calendarState struct {
	Now     time.Time `json:"now"`
	Pass    bool      `json:"pass,omitempty"`
	Removed []string  `json:"removed,omitempty"`
}

// loadCalendar restores the calendar from its stored records, or, for a
// store written before leases were stored, builds it from the workspaces
// and stores what it built.
func (ctl *Controller) loadCalendar(ctx context.Context) error {
	kv, err := ctl.store.Get(ctx, calendarStateKey)
	if errors.Is(err, store.ErrNotFound) {
		if err := ctl.buildCalendar(ctx); err != nil {
			return err
		}
		if err := ctl.commitLocked(ctx, nil, nil); err != nil {
			ctl.cal = nil
			return err
		}
		return nil
	}
	if err != nil {
		return err
	}
	var cs calendarState
	if err := json.Unmarshal(kv.Value, &cs); err != nil {
		return fmt.Errorf("decode %s: %w", calendarStateKey, err)
	}
	snap := calendar.Snapshot{Now: cs.Now, Pass: cs.Pass, Removed: cs.Removed}
	kvs, err := ctl.store.List(ctx, "leases/")
	if err != nil {
		return err
	}
	for _, kv := range kvs {
		var r model.LeaseRecord
		if err := json.Unmarshal(kv.Value, &r); err != nil {
			return fmt.Errorf("decode %s: %w", kv.Key, err)
		}
		snap.Leases = append(snap.Leases, r)
	}
	if kvs, err = ctl.store.List(ctx, "usage/"); err != nil {
		return err
	}
	for _, kv := range kvs {
		var u model.ProjectUsage
		if err := json.Unmarshal(kv.Value, &u); err != nil {
			return fmt.Errorf("decode %s: %w", kv.Key, err)
		}
		snap.Projects = append(snap.Projects, u)
	}
	hosts, err := ctl.calendarHosts(ctx)
	if err != nil {
		return err
	}
	c, err := calendar.Restore(hosts, ctl.policy(), snap)
	if err != nil {
		return fmt.Errorf("restore the lease calendar: %w", err)
	}
	ctl.cal = c
	ctl.log.Info("lease calendar restored", "leases", len(snap.Leases), "projects", len(snap.Projects), "clock", cs.Now)
	return ctl.releaseOrphans(ctx)
}

// releaseOrphans ends the live leases whose workspace no longer wants them:
// gone, on another lease, or stopped (not by a requeue) — as when an
// agent's report that a guest stopped by itself was stored and the
// control plane died before it told the calendar. mu must be held.
func (ctl *Controller) releaseOrphans(ctx context.Context) error {
	now := ctl.now()
	// Carried to now first, so that each lease's state is the one Finish
	// or Cancel will find (see releaseActsLocked).
	acts := ctl.cal.Advance(now)
	released := 0
	for _, v := range ctl.cal.Leases() {
		if v.State.Over() || v.ShuttingDown {
			continue // over, or its hold ends by itself after the guests' shutdown
		}
		project, name, ok := refOfLease(v.ID)
		if !ok {
			continue
		}
		var orphan bool
		var err error
		if _, _, cl := clusterOfLease(v.ID); cl {
			// A cluster's: orphaned once no member's guest is up and none wants it.
			var mates []model.Workspace
			if mates, err = ctl.leaseMates(ctx, v, model.Workspace{}); err != nil {
				return err
			}
			orphan = clusterReleases(mates, v.State) && !anyWants(mates)
		} else {
			var ws model.Workspace
			ws, err = ctl.getWS(ctx, project, name)
			orphan = isNotFound(err)
			if err == nil {
				// A guest still up keeps its lease until the agent reports it
				// gone (guard.go).
				orphan = leaseID(ws) != v.ID || !guestUp(ws) && !wantsLease(ws)
			} else if !orphan {
				return err
			}
		}
		if !orphan {
			continue
		}
		var a []calendar.Action
		if v.State == calendar.StateRunning {
			a, err = ctl.cal.Finish(v.ID, now)
		} else {
			a, err = ctl.cal.Cancel(v.ID, now)
		}
		acts = append(acts, a...) // what carrying the calendar to now did, even on an error
		if err != nil {
			ctl.log.Warn("calendar: release orphaned lease", "lease", v.ID, "err", err)
			continue
		}
		ctl.log.Info("calendar: lease released, its workspace no longer wants it", "lease", v.ID)
		released++
	}
	if released == 0 && len(acts) == 0 {
		return nil
	}
	return ctl.commitLocked(ctx, acts, nil)
}

// policy is the configured calendar policy. Suspended leases may resume
// on another host (whose agent copies their files there first) only when
// every host serves transfers; else they resume where they were saved.
func (ctl *Controller) policy() calendar.Policy {
	p := calendar.DefaultPolicy()
	p.Migrate = true // as policyfile.Default
	if ctl.cfg.Policy != nil {
		p = *ctl.cfg.Policy
	}
	p.ResumeInPlace = p.ResumeInPlace || !ctl.movable
	return p
}

// movableHosts says whether every live host serves transfers (and there
// is one): then workspaces may move between them.
func movableHosts(nodes []model.Node) bool {
	n := 0
	for _, nd := range nodes {
		if nd.State == model.NodeLost {
			continue
		}
		if nd.Transfer == "" {
			return false
		}
		n++
	}
	return n > 0
}

// refreshMovable recomputes movableHosts after a host registered or
// changed its transfer address; the calendar is restored under the new
// policy at its next use when that changes it.
func (ctl *Controller) refreshMovable(ctx context.Context) {
	nodes, err := ctl.nodes(ctx)
	if err != nil {
		return
	}
	m := movableHosts(nodes)
	ctl.mu.Lock()
	defer ctl.mu.Unlock()
	if m != ctl.movable {
		ctl.movable = m
		ctl.cal = nil
		ctl.log.Info("workspaces may move between hosts", "movable", m)
	}
}

// calendarHosts are the registered nodes as calendar hosts; it records
// them as known to the calendar.
func (ctl *Controller) calendarHosts(ctx context.Context) ([]calendar.Host, error) {
	nodes, err := ctl.nodes(ctx)
	if err != nil {
		return nil, err
	}
	hosts := make([]calendar.Host, 0, len(nodes))
	ctl.calHosts = map[string]bool{}
	ctl.movable = movableHosts(nodes)
	for _, n := range nodes {
		if n.State == model.NodeLost {
			continue // removed from the calendar (its snapshot names it)
		}
		h := calHost(n)
		h.Cordoned = h.Cordoned || ctl.lateHosts[n.Name]
		hosts = append(hosts, h)
		ctl.calHosts[n.Name] = true
	}
	return hosts, nil
}

// commitLocked stores what the calendar changed (lease records, project
// usage, its clock) together with the effects of acts on the workspaces
// and the extra ops, in one transaction. It retries when an agent's report
// changed a workspace meanwhile. If it cannot write, the calendar is
// dropped, to be restored from the store at its next use: memory is never
// ahead of what is stored. Events are recorded after the write. placeMu
// must be held.
func (ctl *Controller) commitLocked(ctx context.Context, acts []calendar.Action, extra []store.Op) error {
	c := ctl.cal
	if c == nil {
		return errors.New("no lease calendar")
	}
	// However they came due (the reconciler, a heartbeat, a report, a
	// request that advanced the calendar), the actions carried out here
	// are timed against when they were due.
	observeLag(ctl.now(), acts)
	recs, projs := c.Changes()
	var base []store.Op
	for _, r := range recs {
		if r.State == calendar.StateRefused {
			continue // never admitted: nothing to keep
		}
		b, err := json.Marshal(r)
		if err != nil {
			ctl.cal = nil
			return err
		}
		base = append(base, store.Op{Key: leaseKey(r.ID), Value: b})
	}
	for _, u := range projs {
		b, _ := json.Marshal(u)
		base = append(base, store.Op{Key: "usage/" + u.Project, Value: b})
	}
	snap := calendarState{Now: c.Now(), Removed: c.Removed()}
	b, _ := json.Marshal(snap)
	base = append(base, store.Op{Key: calendarStateKey, Value: b})
	base = append(base, extra...)
	now := ctl.now()
	mine := map[string]bool{}
	for _, op := range extra {
		mine[op.Key] = true
	}
	for attempt := 0; ; attempt++ {
		ops := append([]store.Op(nil), base...)
		changes, wsOps, err := ctl.effects(ctx, acts, now, mine)
		if err != nil {
			ctl.cal = nil
			return err
		}
		ops = append(ops, wsOps...)
		_, err = ctl.store.Txn(ctx, ops)
		var ce *store.ConflictError
		if errors.As(err, &ce) && isWSKey(ce.Key) && !mine[ce.Key] && attempt < 50 {
			continue // an agent's report: read again and redo the effects
		}
		if err != nil {
			ctl.cal = nil
			return fmt.Errorf("store the lease calendar's decisions: %w", err)
		}
		for _, ch := range changes {
			ctl.event(ctx, ch.WS, ch.Type, ch.Message)
			ctl.log.Info("lease "+ch.Type, "workspace", ref(ch.WS), "host", ch.WS.Status.Node)
		}
		return nil
	}
}

func isWSKey(k string) bool { return len(k) > 3 && k[:3] == "ws/" }

// effects computes what acts do to the stored workspaces: their new
// values as conditional writes, and the changes to record as events.
func (ctl *Controller) effects(ctx context.Context, acts []calendar.Action, now time.Time, skip map[string]bool) ([]Change, []store.Op, error) {
	cur := map[string]model.Workspace{}
	changed := map[string]bool{}
	var order []string
	var changes []Change
	type target struct {
		key string
		a   calendar.Action
	}
	var targets []target
	for _, a := range acts {
		project, name, ok := refOfLease(a.Lease)
		if !ok {
			continue
		}
		if _, _, cl := clusterOfLease(a.Lease); cl {
			// A cluster's lease: member i is workspace Members[i] on Hosts[i].
			v, ok := ctl.cal.Get(a.Lease)
			if !ok {
				continue
			}
			for i, m := range v.Members {
				if a.Kind == calendar.ActMigrate && i != a.Member {
					continue // one member moves
				}
				targets = append(targets, target{wsKey(project, m), memberAction(a, i)})
			}
			continue
		}
		targets = append(targets, target{wsKey(project, name), a})
	}
	for _, t := range targets {
		k, a := t.key, t.a
		if skip[k] {
			continue // the caller writes it
		}
		ws, seen := cur[k]
		if !seen {
			kv, err := ctl.store.Get(ctx, k)
			if errors.Is(err, store.ErrNotFound) {
				continue // deleted meanwhile
			}
			if err != nil {
				return nil, nil, err
			}
			if ws, err = decodeWS(kv); err != nil {
				return nil, nil, err
			}
			order = append(order, k)
		}
		var end time.Time
		if v, ok := ctl.cal.Get(a.Lease); ok {
			end = v.End
		}
		ch := transition(a, ws, end, now)
		cur[k] = ch.WS
		if ch.Type != "" {
			changes = append(changes, ch)
			changed[k] = true
		}
	}
	sort.Strings(order)
	var ops []store.Op
	for _, k := range order {
		if !changed[k] {
			continue
		}
		ws := cur[k]
		rev := ws.Revision
		ws.Revision = 0
		b, err := json.Marshal(ws)
		if err != nil {
			return nil, nil, err
		}
		ops = append(ops, store.Op{Key: k, Value: b, Rev: rev})
	}
	return changes, ops, nil
}

// leaseRecord reads a stored lease of project by ID.
func (ctl *Controller) leaseRecord(ctx context.Context, project, id string) (model.LeaseRecord, error) {
	var r model.LeaseRecord
	kv, err := ctl.store.Get(ctx, leaseKey(id))
	if errors.Is(err, store.ErrNotFound) {
		return r, notFound(fmt.Sprintf("lease %q", id))
	}
	if err != nil {
		return r, err
	}
	if err := json.Unmarshal(kv.Value, &r); err != nil {
		return r, fmt.Errorf("decode %s: %w", kv.Key, err)
	}
	if r.Project != project {
		return model.LeaseRecord{}, notFound(fmt.Sprintf("lease %q", id))
	}
	return r, nil
}
