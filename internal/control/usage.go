package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"

	"vgrid/api"
	"vgrid/internal/calendar"
	"vgrid/internal/model"
	"vgrid/internal/store"
)

// Usage keys: used/<lease id> holds a model.LeaseUsage, apart from ws/ so
// that a usage report wakes no host's long poll.
func usedKey(lease string) string { return "used/" + lease }

// recordUsage adds an agent's CPU counter to the workspace's current
// lease: the counter is per process run (it starts at 0 on every start and
// resume), told apart by the process's start time; a final report (stop,
// suspend) carries no start time and belongs to the latest run.
func (ctl *Controller) recordUsage(ctx context.Context, ws model.Workspace, rep api.AgentReport) {
	id := leaseID(ws)
	for attempt := 0; attempt < 20; attempt++ {
		u := model.LeaseUsage{Lease: id, Project: ws.Project}
		var rev int64 = store.OpMustNotExist
		kv, err := ctl.store.Get(ctx, usedKey(id))
		switch {
		case err == nil:
			if err := json.Unmarshal(kv.Value, &u); err != nil {
				ctl.log.Warn("usage record", "lease", id, "err", err)
				return
			}
			rev = kv.Revision
		case !errors.Is(err, store.ErrNotFound):
			ctl.log.Warn("usage record", "lease", id, "err", err)
			return
		}
		added := addRun(&u, ws.Spec.Name, rep.StartedAt, rep.CPUSeconds)
		if added == 0 {
			return
		}
		b, _ := json.Marshal(u)
		_, err = ctl.store.Txn(ctx, []store.Op{{Key: usedKey(id), Value: b, Rev: rev}})
		if errors.Is(err, store.ErrConflict) || errors.Is(err, store.ErrExists) {
			continue
		}
		if err != nil {
			ctl.log.Warn("usage record", "lease", id, "err", err)
			return
		}
		ctl.countUsage(ctx, ws.Project, added)
		return
	}
}

// countUsage gives measured CPU time to the calendar's fair share (it
// counts only when the policy's fair-share basis is "used").
func (ctl *Controller) countUsage(ctx context.Context, project string, cpuSeconds float64) {
	ctl.mu.Lock()
	defer ctl.mu.Unlock()
	p := ctl.cfg.Policy
	if ctl.cal == nil || p == nil || p.FairShare == nil || p.FairShare.Basis != calendar.BasisUsed {
		return
	}
	ctl.cal.AddUsage(project, cpuSeconds, ctl.now())
	if err := ctl.commitLocked(ctx, nil, nil); err != nil {
		ctl.log.Warn("calendar: store decisions", "err", err)
	}
}

// addRun folds one counter reading into u and returns how much it added
// (0: nothing). Counters only grow: a smaller reading of the same run is an
// older one.
func addRun(u *model.LeaseUsage, workspace string, started time.Time, cpu float64) float64 {
	i := -1
	if started.IsZero() {
		// The final reading: the latest run of the workspace.
		for k, r := range u.Runs {
			if r.Workspace == workspace && (i < 0 || r.Started.After(u.Runs[i].Started)) {
				i = k
			}
		}
		if i < 0 {
			u.Runs = append(u.Runs, model.RunUsage{Workspace: workspace})
			i = len(u.Runs) - 1
		}
	} else {
		for k, r := range u.Runs {
			if r.Workspace == workspace && r.Started.Equal(started) {
				i = k
			}
		}
		if i < 0 {
			u.Runs = append(u.Runs, model.RunUsage{Workspace: workspace, Started: started})
			sort.Slice(u.Runs, func(a, b int) bool { return u.Runs[a].Started.Before(u.Runs[b].Started) })
			for k, r := range u.Runs {
				if r.Workspace == workspace && r.Started.Equal(started) {
					i = k
				}
			}
		}
	}
	if cpu <= u.Runs[i].CPUSeconds {
		return 0
	}
	added := cpu - u.Runs[i].CPUSeconds
	u.Runs[i].CPUSeconds = cpu
	return added
}

// LeaseUsage returns what a lease's workspaces used (zero if nothing was
// reported).
func (ctl *Controller) LeaseUsage(ctx context.Context, id string) (model.LeaseUsage, error) {
	u := model.LeaseUsage{Lease: id}
	kv, err := ctl.store.Get(ctx, usedKey(id))
	if errors.Is(err, store.ErrNotFound) {
		return u, nil
	}
	if err != nil {
		return u, err
	}
	if err := json.Unmarshal(kv.Value, &u); err != nil {
		return u, fmt.Errorf("decode %s: %w", kv.Key, err)
	}
	return u, nil
}

// ProjectUsage sums a project's leases that held slots at or after since:
// what they reserved (from since) and what they used.
type ProjectUsage struct {
	Project            string
	Leases             int
	ReservedCoreSecond float64
	ReservedMemByteSec float64
	UsedCPUSeconds     float64
	// FairShare is the calendar's decayed usage of the project (core-seconds).
	FairShare float64
}

// Usage sums the usage of project (every project when project is "") since
// a time (zero: all time).
func (ctl *Controller) Usage(ctx context.Context, project string, since time.Time) ([]ProjectUsage, error) {
	prefix := "leases/"
	if project != "" {
		prefix += project + "/"
	}
	kvs, err := ctl.store.List(ctx, prefix)
	if err != nil {
		return nil, err
	}
	now := ctl.now()
	by := map[string]*ProjectUsage{}
	get := func(p string) *ProjectUsage {
		if by[p] == nil {
			by[p] = &ProjectUsage{Project: p}
		}
		return by[p]
	}
	if project != "" {
		get(project)
	}
	for _, kv := range kvs {
		var r model.LeaseRecord
		if err := json.Unmarshal(kv.Value, &r); err != nil {
			return nil, fmt.Errorf("decode %s: %w", kv.Key, err)
		}
		if !since.IsZero() {
			r = clipSince(r, since)
			if len(r.Segments) == 0 && r.Hold == nil {
				continue
			}
		}
		pu := get(r.Project)
		pu.Leases++
		c, m := r.Reserved(now)
		pu.ReservedCoreSecond += c
		pu.ReservedMemByteSec += m
		u, err := ctl.LeaseUsage(ctx, r.ID)
		if err != nil {
			return nil, err
		}
		for _, run := range u.Runs {
			if since.IsZero() || !run.Started.Before(since) || run.Started.IsZero() {
				pu.UsedCPUSeconds += run.CPUSeconds
			}
		}
	}
	fs, err := ctl.store.List(ctx, "usage/")
	if err != nil {
		return nil, err
	}
	for _, kv := range fs {
		var u model.ProjectUsage
		if json.Unmarshal(kv.Value, &u) == nil {
			if pu, ok := by[u.Project]; ok {
				pu.FairShare = u.DecayedCoreSeconds
			}
		}
	}
	// The calendar knows the usage as of now (the store has it as of the
	// last lease that began or ended).
	ctl.mu.Lock()
	if c, err := ctl.calendarLocked(ctx); err == nil {
		for p, pu := range by {
			pu.FairShare = c.FairShareUsage(p, now)
		}
	}
	ctl.mu.Unlock()
	out := make([]ProjectUsage, 0, len(by))
	for _, pu := range by {
		out = append(out, *pu)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Project < out[j].Project })
	return out, nil
}

// clipSince keeps the parts of a lease's segments at or after since.
func clipSince(r model.LeaseRecord, since time.Time) model.LeaseRecord {
	var segs []model.LeaseSegment
	for _, s := range r.Segments {
		if !s.To.After(since) {
			continue
		}
		if s.From.Before(since) {
			s.From = since
		}
		segs = append(segs, s)
	}
	r.Segments = segs
	return r
}
