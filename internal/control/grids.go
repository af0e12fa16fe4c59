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
	"vgrid/internal/gridspec"
	"vgrid/internal/model"
	"vgrid/internal/store"
)

func gridKey(project, name string) string { return "grids/" + project + "/" + name }

// gridVolumesKey carries the volumes a grid made in the context of its
// parts' creation: they may be attached while still being created (their
// hosts wait for their endpoints, as for a cluster's scratch volumes).
type gridVolumesKey struct{}

func withGridVolumes(ctx context.Context, names []string) context.Context {
	m := map[string]bool{}
	for _, n := range names {
		m[n] = true
	}
	return context.WithValue(ctx, gridVolumesKey{}, m)
}

// gridMade says whether volume name was made by the grid being created.
func gridMade(ctx context.Context, name string) bool {
	m, _ := ctx.Value(gridVolumesKey{}).(map[string]bool)
	return m[name]
}

// Grid states, as stored.
const (
	gridCreating = "creating"
	gridCreated  = "created"
	gridDeleting = "deleting"
)

// CreateGrid makes a whole grid, everything or nothing: its networks and
// volumes, then its clusters and workspaces, the parts without a lease of
// their own booked as reservations at one start (linked leases). With
// req.Plan it carries out that plan exactly, or refuses when the calendar
// changed since; without, it plans first. When a part cannot be made
// (the calendar moved between two parts, a quota), what was made is
// deleted and the answer says which part failed and why.
func (ctl *Controller) CreateGrid(ctx context.Context, project string, req api.GridsPost) (api.Grid, error) {
	gi, err := ctl.parseGrid(ctx, project, req)
	if err != nil {
		return api.Grid{}, err
	}
	// One grid at a time: its parts are made one after another, each
	// under the calendar's lock, and checked against the plan.
	ctl.gridMu.Lock()
	defer ctl.gridMu.Unlock()

	ctl.mu.Lock()
	c, err := ctl.calendarLocked(ctx)
	if err != nil {
		ctl.mu.Unlock()
		return api.Grid{}, err
	}
	now := ctl.now()
	var k keptPlan
	if req.Plan != "" {
		if err := ctl.checkKeptPlan(req.Plan, project, gi, c, now, &k); err != nil {
			ctl.mu.Unlock()
			return api.Grid{}, err
		}
		// The plan's own window, not the earliest from now: an undated
		// plan applied some seconds after it was made still starts when
		// it said, if the calendar can still do that.
		gi.in.NotBefore, gi.in.Exact = k.plan.Start, true
	}
	plan, err := ctl.planLocked(ctx, c, project, gi, now, false, false)
	ctl.mu.Unlock()
	if err != nil {
		return api.Grid{}, err
	}
	switch {
	case req.Plan == "" || samePlacement(k.plan, plan):
	case !plan.Fits:
		return api.Grid{}, conflict(fmt.Sprintf("the calendar moved on since plan %s (leases started or ended): its window at %s can no longer be had (%s); plan again",
			req.Plan, fmtTime(k.plan.Start), shortMsg(plan)))
	default:
		return api.Grid{}, conflict(fmt.Sprintf("the calendar moved on since plan %s (leases started or ended): its placements no longer hold (it would now start %s, planned %s); plan again",
			req.Plan, fmtTime(plan.Start), fmtTime(k.plan.Start)))
	}
	if !plan.Fits {
		return api.Grid{}, conflict(fmt.Sprintf("grid %s does not fit: %s", gi.spec.Name, shortMsg(plan)))
	}

	g := api.Grid{Project: project, Name: gi.spec.Name, Spec: gi.spec, Values: req.Values, Plan: req.Plan,
		Start: plan.Start, End: plan.End, CreatedAt: now, State: gridCreating}
	b, _ := json.Marshal(g)
	if _, err := ctl.store.Create(ctx, gridKey(project, g.Name), b); err != nil {
		if errors.Is(err, store.ErrExists) {
			return api.Grid{}, invalid("invalid grid spec", api.FieldError{Field: "name", Reason: fmt.Sprintf("a grid named %q already exists in project %s", g.Name, project)})
		}
		return api.Grid{}, err
	}
	made := &gridParts{}
	fail := func(what string, err error) (api.Grid, error) {
		ctl.undoGrid(context.WithoutCancel(ctx), project, g.Name, made)
		return api.Grid{}, wrapGridErr(fmt.Sprintf("grid %s was not created (nothing of it was kept): %s", g.Name, what), err)
	}
	// Each part made is written into the grid's record at once, so that a
	// grid whose making stopped half way (its replica lost, and the undo
	// with it) can still be deleted whole.
	record := func() error {
		g.Clusters, g.Workspaces, g.Networks, g.Volumes = made.clusters, made.workspaces, made.networks, made.volumes
		b, _ := json.Marshal(g)
		_, err := ctl.store.Update(ctx, gridKey(project, g.Name), b, 0)
		return err
	}
	for _, n := range gi.spec.Networks {
		if _, err := ctl.CreateNetwork(ctx, project, api.NetworksPost{Name: n.Name, Subnet: n.Subnet, NAT: n.NAT}, ""); err != nil {
			return fail("network "+n.Name, err)
		}
		made.networks = append(made.networks, n.Name)
		if err := record(); err != nil {
			return fail("network "+n.Name, err)
		}
	}
	for i, v := range gi.spec.Volumes {
		want := plan.Volumes[i].Node
		var err error
		if v.SnapshotOf != "" {
			_, err = ctl.SnapshotVolume(ctx, project, v.SnapshotOf, v.Name)
		} else {
			_, err = ctl.CreateVolume(ctx, project, api.VolumesPost{Name: v.Name, Size: v.Size, IOPS: v.IOPS, BPS: v.BPS, Node: want}, true)
		}
		if err != nil {
			return fail("volume "+v.Name, err)
		}
		made.volumes = append(made.volumes, v.Name)
		if err := record(); err != nil {
			return fail("volume "+v.Name, err)
		}
	}
	pctx := withGridVolumes(ctx, made.volumes)
	for i, p := range gi.parts {
		pp := plan.Parts[i]
		ls := &model.LeaseSpec{Kind: model.LeaseReservation, Start: plan.Start}
		lease := ""
		switch {
		case p.Cluster != nil:
			cs := *p.Cluster
			if p.Linked {
				cs.Lease = ls
			}
			st, err := ctl.CreateCluster(pctx, project, cs)
			if err != nil {
				return fail("cluster "+cs.Name, err)
			}
			made.clusters = append(made.clusters, cs.Name)
			if err := record(); err != nil {
				return fail("cluster "+cs.Name, err)
			}
			lease = st.Lease
		case p.Workspace != nil:
			sp := *p.Workspace
			if p.Linked {
				sp.Lease = ls
			}
			ws, err := ctl.CreateWorkspace(pctx, project, sp)
			if err != nil {
				return fail("workspace "+sp.Name, err)
			}
			made.workspaces = append(made.workspaces, sp.Name)
			if err := record(); err != nil {
				return fail("workspace "+sp.Name, err)
			}
			lease = ws.Status.Lease
		}
		// Where the part went must be where the plan put it.
		if hosts := ctl.leaseHosts(lease); !sameHosts(hosts, pp) {
			return fail("part "+p.Name, conflict(fmt.Sprintf("the calendar changed while the grid was being made: %s went to %v, planned %v", p.Name, hosts, plannedHosts(pp))))
		}
	}
	g.State = gridCreated
	if err := record(); err != nil {
		return fail("its record", err)
	}
	ctl.log.Info("grid created", "project", project, "grid", g.Name, "start", g.Start, "clusters", len(made.clusters),
		"workspaces", len(made.workspaces), "networks", len(made.networks), "volumes", len(made.volumes), "plan", req.Plan)
	return ctl.Grid(ctx, project, g.Name)
}

// gridParts are what a grid made, by kind.
type gridParts struct {
	networks, volumes, clusters, workspaces []string
}

// leaseHosts are the hosts of a lease in the calendar (nil if unknown).
func (ctl *Controller) leaseHosts(id string) []string {
	ctl.mu.Lock()
	defer ctl.mu.Unlock()
	if ctl.cal == nil {
		return nil
	}
	v, ok := ctl.cal.Get(id)
	if !ok {
		return nil
	}
	return v.Hosts
}

func plannedHosts(p api.PlanPart) []string {
	out := make([]string, len(p.Members))
	for i, m := range p.Members {
		out[i] = m.Host
	}
	return out
}

func sameHosts(hosts []string, p api.PlanPart) bool {
	want := plannedHosts(p)
	if len(hosts) != len(want) {
		return false
	}
	for i := range hosts {
		if hosts[i] != want[i] {
			return false
		}
	}
	return true
}

func shortMsg(p api.Plan) string {
	if p.Shortfall != nil {
		return p.Shortfall.Message
	}
	return "it never fits"
}

// checkKeptPlan finds plan id for project and gi and checks that it can
// still be carried out on c at now (mu held): kept, not expired, made for
// this grid file and these values, at this calendar's revision, fitting,
// and its window not yet begun.
func (ctl *Controller) checkKeptPlan(id, project string, gi *gridInput, c *calendar.Calendar, now time.Time, k *keptPlan) error {
	var ok bool
	*k, ok = ctl.keptPlan(id)
	switch {
	case !ok || k.project != project:
		return notFound(fmt.Sprintf("plan %q (plans are kept %s by the replica that leads; plan again)", id, PlanTTL))
	case now.Sub(k.madeAt) > PlanTTL:
		return conflict(fmt.Sprintf("plan %s expired at %s: plan again", id, k.madeAt.Add(PlanTTL).UTC().Format(time.RFC3339)))
	case k.digest != gi.digest:
		return conflict(fmt.Sprintf("plan %s was made for another grid file or other values than these: plan this one", id))
	case k.cal != c || k.rev != c.Revision():
		return conflict(fmt.Sprintf("the calendar changed since plan %s (revision %d then, %d now): the plan may no longer hold; plan again", id, k.rev, c.Revision()))
	case !k.plan.Fits:
		return conflict(fmt.Sprintf("plan %s does not fit: %s", id, shortMsg(k.plan)))
	case !k.plan.Start.After(now):
		return conflict(fmt.Sprintf("plan %s's window began at %s, before this apply: plan again", id, fmtTime(k.plan.Start)))
	}
	return nil
}

func fmtTime(t time.Time) string { return t.UTC().Format(time.RFC3339) }

// wrapGridErr keeps the kind of err (invalid, conflict…) with the grid's
// context in front of its message.
func wrapGridErr(prefix string, err error) error {
	var e *Error
	if errors.As(err, &e) {
		c := *e
		c.Msg = prefix + ": " + e.Msg
		return &c
	}
	return fmt.Errorf("%s: %w", prefix, err)
}

// undoGrid deletes what a grid made, the parts first; volumes and
// networks go once their members are gone (collectGrid).
func (ctl *Controller) undoGrid(ctx context.Context, project, name string, made *gridParts) {
	// The record keeps the parts not deleted, for a delete again.
	var leftC, leftW []string
	for _, c := range made.clusters {
		if _, err := ctl.DeleteCluster(ctx, project, c); err != nil && !isNotFound(err) {
			ctl.log.Warn("grid: undo: delete cluster", "project", project, "grid", name, "cluster", c, "err", err)
			leftC = append(leftC, c)
		}
	}
	for _, w := range made.workspaces {
		if _, err := ctl.DeleteWorkspace(ctx, project, w); err != nil && !isNotFound(err) {
			ctl.log.Warn("grid: undo: delete workspace", "project", project, "grid", name, "workspace", w, "err", err)
			leftW = append(leftW, w)
		}
	}
	g := api.Grid{Project: project, Name: name, State: gridDeleting, Networks: made.networks, Volumes: made.volumes,
		Clusters: leftC, Workspaces: leftW, CreatedAt: ctl.now()}
	b, _ := json.Marshal(g)
	_, _ = ctl.store.Update(ctx, gridKey(project, name), b, 0)
	if len(leftC)+len(leftW) > 0 {
		return // its volumes and networks are still used: deleted with the next delete
	}
	ctl.collectGrid(ctx, project, name, made.volumes, made.networks)
}

// collectGrid deletes a grid's volumes and networks once nothing uses
// them, then its record; it tries for up to 10 minutes in the background
// (the members' guests are stopped by their hosts first).
func (ctl *Controller) collectGrid(ctx context.Context, project, name string, vols, nets []string) {
	try := func() bool {
		done := true
		for _, v := range vols {
			if _, err := ctl.DeleteVolume(ctx, project, v); err != nil && !isNotFound(err) {
				done = false
			}
		}
		for _, n := range nets {
			if err := ctl.DeleteNetwork(ctx, project, n); err != nil && !isNotFound(err) {
				done = false
			}
		}
		if done {
			_ = ctl.store.Delete(ctx, gridKey(project, name), 0)
			ctl.log.Info("grid deleted", "project", project, "grid", name)
		}
		return done
	}
	if try() {
		return
	}
	go func() {
		deadline := time.Now().Add(10 * time.Minute)
		for time.Now().Before(deadline) {
			time.Sleep(500 * time.Millisecond)
			if try() {
				return
			}
		}
		ctl.log.Warn("grid: volumes or networks still in use after 10 minutes; delete the grid again", "project", project, "grid", name)
	}()
}

func decodeGrid(kv store.KV) (api.Grid, error) {
	var g api.Grid
	if err := json.Unmarshal(kv.Value, &g); err != nil {
		return g, fmt.Errorf("grid %s: %w", kv.Key, err)
	}
	return g, nil
}

// Grid returns one grid of project with the state of its workspaces.
func (ctl *Controller) Grid(ctx context.Context, project, name string) (api.Grid, error) {
	kv, err := ctl.store.Get(ctx, gridKey(project, name))
	if errors.Is(err, store.ErrNotFound) {
		return api.Grid{}, notFound(fmt.Sprintf("grid %q", name))
	}
	if err != nil {
		return api.Grid{}, err
	}
	g, err := decodeGrid(kv)
	if err != nil {
		return api.Grid{}, err
	}
	ctl.gridState(ctx, &g)
	return g, nil
}

// gridState sums the states of the grid's workspaces (clusters' members
// included) into g.State.
func (ctl *Controller) gridState(ctx context.Context, g *api.Grid) {
	if g.State != gridCreated {
		return
	}
	counts := map[string]int{}
	names := append([]string(nil), g.Workspaces...)
	for _, c := range g.Clusters {
		if cl, err := ctl.clusterRecord(ctx, g.Project, c); err == nil {
			names = append(names, cl.Members...)
		}
	}
	for _, n := range names {
		kv, err := ctl.store.Get(ctx, wsKey(g.Project, n))
		if err != nil {
			counts["gone"]++
			continue
		}
		var ws model.Workspace
		if json.Unmarshal(kv.Value, &ws) == nil {
			counts[strings.ToLower(string(ws.Status.State))]++
		}
	}
	keys := make([]string, 0, len(counts))
	for k := range counts {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%d %s", counts[k], k))
	}
	g.State = strings.Join(parts, ", ")
}

// Grids lists project's grids (every project's when project is empty).
func (ctl *Controller) Grids(ctx context.Context, project string) ([]api.Grid, error) {
	prefix := "grids/"
	if project != "" {
		prefix += project + "/"
	}
	kvs, err := ctl.store.List(ctx, prefix)
	if err != nil {
		return nil, err
	}
	out := []api.Grid{}
	for _, kv := range kvs {
		g, err := decodeGrid(kv)
		if err != nil {
			return nil, err
		}
		ctl.gridState(ctx, &g)
		out = append(out, g)
	}
	return out, nil
}

// DeleteGrid deletes a grid: its clusters and workspaces at once (their
// guests stop), its volumes and networks once nothing uses them, then
// the grid itself; until then it is listed as deleting.
func (ctl *Controller) DeleteGrid(ctx context.Context, project, name string) (api.Grid, error) {
	g, err := ctl.Grid(ctx, project, name)
	if err != nil {
		return api.Grid{}, err
	}
	made := &gridParts{networks: g.Networks, volumes: g.Volumes, clusters: g.Clusters, workspaces: g.Workspaces}
	ctl.undoGrid(context.WithoutCancel(ctx), project, name, made)
	g.State = gridDeleting
	return g, nil
}

// ExportGrid returns the grid's spec as a file that makes it again
// (parameters at the values it was made with).
func (ctl *Controller) ExportGrid(ctx context.Context, project, name string) ([]byte, error) {
	g, err := ctl.Grid(ctx, project, name)
	if err != nil {
		return nil, err
	}
	return gridspec.Export(g.Spec)
}
