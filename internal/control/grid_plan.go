package control

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"

	"vgrid/api"
	"vgrid/internal/calendar"
	"vgrid/internal/gridplan"
	"vgrid/internal/gridspec"
	"vgrid/internal/model"
	"vgrid/internal/store"
)

// PlanTTL is how long a plan can be carried out by its ID.
const PlanTTL = 15 * time.Minute

// maxPlans bounds the plans kept in memory (the oldest go first).
const maxPlans = 1000

// keptPlan is a plan the leader remembers for POST /grids {plan: ID}.
type keptPlan struct {
	plan    api.Plan
	project string
	digest  string             // of the expanded grid spec
	cal     *calendar.Calendar // the calendar it was made on (a new leader's is another)
	rev     uint64
	madeAt  time.Time
}

// gridInput is a parsed, validated grid with its parts as leases.
type gridInput struct {
	spec   model.GridSpec
	values map[string]string
	parts  []gridspec.Part
	in     gridplan.Input
	digest string
	// deadline, for a grid with a deadline lease: the window must end by it.
	deadline time.Time
	// members names each part's members, and their images, in order.
	members map[string][]model.ClusterMember
}

// parseGrid parses a grid request and builds what planning needs: each
// part's lease as CreateCluster or CreateWorkspace would submit it.
func (ctl *Controller) parseGrid(ctx context.Context, project string, req api.GridsPost) (*gridInput, error) {
	g, err := gridspec.Parse([]byte(req.Spec), req.Values, req.Set)
	if err != nil {
		return nil, err
	}
	imgs, err := ctl.visibleImages(ctx, project)
	if err != nil {
		return nil, err
	}
	if err := gridspec.Validate(g, imageLookup(imgs)); err != nil {
		return nil, err
	}
	nets, vols := gridspec.Refs(g)
	var fe []api.FieldError
	for _, n := range nets {
		if _, err := ctl.store.Get(ctx, networkKey(project, n)); errors.Is(err, store.ErrNotFound) {
			fe = append(fe, api.FieldError{Field: "networks", Reason: fmt.Sprintf("a part joins network %q, which neither the grid makes nor project %s has", n, project)})
		} else if err != nil {
			return nil, err
		}
	}
	for _, v := range vols {
		if _, err := ctl.store.Get(ctx, volumeKey(project, v)); errors.Is(err, store.ErrNotFound) {
			fe = append(fe, api.FieldError{Field: "volumes", Reason: fmt.Sprintf("a part attaches volume %q, which neither the grid makes nor project %s has", v, project)})
		} else if err != nil {
			return nil, err
		}
	}
	if len(fe) > 0 {
		return nil, invalid("invalid grid spec", fe...)
	}
	gi := &gridInput{spec: g, parts: gridspec.Parts(g), members: map[string][]model.ClusterMember{}}
	for i, v := range g.Volumes {
		pv := gridplan.Volume{Name: v.Name, Project: project, Size: v.Size}
		if v.SnapshotOf != "" {
			// A copy of an existing volume, made on its host, as large.
			src, err := ctl.getVolume(ctx, project, v.SnapshotOf)
			if err != nil {
				return nil, invalid("invalid grid spec", api.FieldError{Field: fmt.Sprintf("volumes[%d].snapshot_of", i), Reason: err.Error()})
			}
			pv.Size, pv.Host = src.Size, src.Node
		}
		gi.in.Volumes = append(gi.in.Volumes, pv)
	}
	for i, p := range gi.parts {
		var ms []model.ClusterMember
		var l calendar.Lease
		switch {
		case p.Cluster != nil:
			cs := *p.Cluster
			ms = cs.Members()
			if len(ms) == 0 {
				return nil, invalid("invalid grid spec", api.FieldError{Field: fmt.Sprintf("clusters[%s].roles", cs.Name), Reason: "every role has count 0: a cluster needs at least one member"})
			}
			roleIndex := map[string]int{}
			for i, r := range cs.Roles {
				roleIndex[r.Name] = i
			}
			for k := range ms {
				field := fmt.Sprintf("clusters[%s].roles[%d].quantum", cs.Name, roleIndex[ms[k].Role])
				if err := fillDisk(&ms[k].Spec, imgs[ms[k].Spec.Image], field); err != nil {
					return nil, err
				}
			}
			ws0 := model.Workspace{Project: project, Spec: ms[0].Spec}
			l = leaseOf(ws0, imgs[ms[0].Spec.Image])
			l.ID = clusterLeaseID(project, cs.Name)
			l.Members = make([]calendar.Request, len(ms))
			for k, m := range ms {
				l.Members[k] = calendar.Request{Workspace: m.Spec.Name, Resources: resourcesOf(m.Spec), Spread: m.Placement == model.PlacementSpread}
			}
		case p.Workspace != nil:
			sp := *p.Workspace
			img := imgs[sp.Image]
			if sp.Quantum.Disk == 0 {
				sp.Quantum.Disk = max(img.MinDisk, model.GiB)
			}
			ms = []model.ClusterMember{{Name: sp.Name, Spec: sp}}
			ws := model.Workspace{Project: project, Spec: sp}
			l = leaseOf(ws, img)
		default:
			return nil, fmt.Errorf("grid part %d: neither a cluster nor a workspace", i)
		}
		gi.members[p.Name] = ms
		imgsOf := make([]string, len(ms))
		for k, m := range ms {
			imgsOf[k] = m.Spec.Image
		}
		gi.in.Parts = append(gi.in.Parts, gridplan.Part{Name: p.Name, Kind: p.Kind, Lease: l, Linked: p.Linked, Images: imgsOf})
	}
	if g.Lease != nil {
		switch g.Lease.Kind {
		case model.LeaseReservation:
			// A dated grid: from that start on (the plan says when, if
			// later); undated: the earliest window from now.
			gi.in.NotBefore = g.Lease.Start
		case model.LeaseImmediate, "":
			gi.in.Exact = true // now (as soon as staged and booted) or refused
		case model.LeaseDeadline:
			gi.deadline = g.Lease.Deadline
		default:
			return nil, invalid("invalid grid spec", api.FieldError{Field: "lease.kind",
				Reason: fmt.Sprintf("%s: a grid's parts start together in one window (reservation, immediate or deadline); give a best-effort part a lease of its own", g.Lease.Kind)})
		}
	}
	b, _ := json.Marshal(g)
	sum := sha256.Sum256(b)
	gi.digest = hex.EncodeToString(sum[:])
	return gi, nil
}

// leaseIDsFree gives each part's lease an ID the calendar does not have
// yet (an earlier cluster or workspace of the name left its lease), as
// the creation will.
func leaseIDsFree(c *calendar.Calendar, in *gridplan.Input) {
	for i := range in.Parts {
		l := &in.Parts[i].Lease
		if v, ok := c.Get(l.ID); ok {
			l.ID = v.ID + "#grid"
		}
	}
}

// PlanGrid evaluates a grid against the live calendar without booking
// anything, and keeps the plan for PlanTTL under its ID. all shows other
// projects' leases in the plan's chart.
func (ctl *Controller) PlanGrid(ctx context.Context, project string, req api.GridsPost, all bool) (api.Plan, error) {
	gi, err := ctl.parseGrid(ctx, project, req)
	if err != nil {
		return api.Plan{}, err
	}
	ctl.mu.Lock()
	defer ctl.mu.Unlock()
	c, err := ctl.calendarLocked(ctx)
	if err != nil {
		return api.Plan{}, err
	}
	now := ctl.now()
	p, err := ctl.planLocked(ctx, c, project, gi, now, all, true)
	if err != nil {
		return api.Plan{}, err
	}
	id := make([]byte, 8)
	rand.Read(id)
	p.ID = "plan-" + hex.EncodeToString(id)
	p.ExpiresAt = now.Add(PlanTTL)
	ctl.keepPlan(keptPlan{plan: p, project: project, digest: gi.digest, cal: c, rev: c.Revision(), madeAt: now})
	return p, nil
}

// planLocked plans gi on c at now (mu held); chart adds the plan's Gantt
// (a plan shown to the user; an apply only compares placements).
func (ctl *Controller) planLocked(ctx context.Context, c *calendar.Calendar, project string, gi *gridInput, now time.Time, all, chart bool) (api.Plan, error) {
	if err := ctl.syncCalendarVolumes(ctx, c); err != nil {
		return api.Plan{}, err
	}
	in := gi.in
	in.Parts = append([]gridplan.Part(nil), gi.in.Parts...)
	leaseIDsFree(c, &in)
	res, err := gridplan.Evaluate(c, in, now)
	if err != nil {
		return api.Plan{}, err
	}
	if res.Fits && !gi.deadline.IsZero() && res.End.After(gi.deadline) {
		res.Fits = false
		res.Shortfall = &gridplan.Shortfall{Message: fmt.Sprintf("the earliest window, %s to %s, ends after the grid's deadline %s",
			fmtTime(res.Start), fmtTime(res.End), fmtTime(gi.deadline))}
	}
	p := api.Plan{Grid: gi.spec.Name, Project: project, CalendarRevision: int64(c.Revision()), MadeAt: now,
		Fits: res.Fits, Tries: res.Tries, Requested: in.NotBefore}
	if p.Requested.IsZero() {
		p.Requested = now
	}
	for _, n := range gi.spec.Networks {
		p.Networks = append(p.Networks, api.PlanNetwork{Name: n.Name, Subnet: n.Subnet})
	}
	nets, vols := gridspec.Refs(gi.spec)
	for _, n := range nets {
		p.Networks = append(p.Networks, api.PlanNetwork{Name: n, Exists: true})
	}
	for i, v := range gi.spec.Volumes {
		p.Volumes = append(p.Volumes, api.PlanVolume{Name: v.Name, Size: gi.in.Volumes[i].Size, Node: res.Volumes[v.Name]})
	}
	for _, v := range vols {
		pv := api.PlanVolume{Name: v, Exists: true}
		if mv, err := ctl.getVolume(ctx, project, v); err == nil {
			pv.Size, pv.Node = mv.Size, mv.Node
		}
		p.Volumes = append(p.Volumes, pv)
	}
	if !res.Fits {
		if sf := res.Shortfall; sf != nil {
			p.Shortfall = &api.PlanShortfall{Part: sf.Part, Resource: sf.Resource, Requested: sf.Requested, Free: sf.Free, Host: sf.Host, Message: sf.Message}
		}
		return p, nil
	}
	p.Start, p.End = res.Start, res.End
	p.Delay = max(0, p.Start.Sub(p.Requested))
	planned := map[string]bool{}
	for i, part := range in.Parts {
		adm := res.Admissions[part.Name]
		rec := res.Records[part.Name]
		pp := api.PlanPart{Name: part.Name, Kind: part.Kind, Lease: part.Lease.ID, LeaseKind: calendar.Reservation, Start: adm.Start, End: adm.End}
		if !part.Linked {
			pp.LeaseKind = part.Lease.Kind
		}
		planned[part.Lease.ID] = true
		ms := gi.members[gi.parts[i].Name]
		for k, m := range ms {
			pm := api.PlanMember{Name: m.Spec.Name, Image: m.Spec.Image, Resources: resourcesOf(m.Spec)}
			if k < len(adm.Hosts) {
				pm.Host = adm.Hosts[k]
			}
			if pm.Host != "" && !c.HasImage(pm.Host, pm.Image) && rec.Hold != nil && rec.Hold.Pre > rec.Hold.Boot {
				pm.Stage, pm.StageAt = true, rec.Hold.Start.Add(-rec.Hold.Pre.D())
			}
			for _, v := range m.Spec.Volumes {
				pm.Volumes = append(pm.Volumes, v.Name)
			}
			pm.Networks = partNetworks(gi.parts[i])
			pp.Members = append(pp.Members, pm)
		}
		p.Parts = append(p.Parts, pp)
	}
	for _, e := range res.Effects {
		pe := api.PlanEffect{Lease: e.Lease, Project: e.Project, Action: e.Action, At: e.At, By: e.By}
		if !all && e.Project != project {
			pe.Lease, pe.Project = "*", ""
		}
		p.Effects = append(p.Effects, pe)
	}
	if !chart {
		return p, nil
	}
	from := now.Add(-time.Hour)
	if p.Start.Add(-time.Hour).After(from) {
		from = p.Start.Add(-time.Hour)
	}
	to := p.End.Add(time.Hour)
	view := CalendarJSON(res.After, from, to, project, all)
	for i := range view.Rows {
		for k := range view.Rows[i].Bars {
			b := &view.Rows[i].Bars[k]
			if planned[b.Lease] {
				b.Planned = true
			}
		}
	}
	p.Gantt = &view
	return p, nil
}

func partNetworks(p gridspec.Part) []string {
	var out []string
	if p.Cluster != nil {
		for _, n := range p.Cluster.Networks {
			if n.Name != "" {
				out = append(out, n.Name)
			}
		}
		if len(out) == 0 {
			out = append(out, p.Cluster.Name+" (its own)")
		}
	}
	return out
}

func (ctl *Controller) keepPlan(k keptPlan) {
	ctl.plansMu.Lock()
	defer ctl.plansMu.Unlock()
	if ctl.plans == nil {
		ctl.plans = map[string]keptPlan{}
	}
	for id, old := range ctl.plans {
		if k.madeAt.Sub(old.madeAt) > PlanTTL {
			delete(ctl.plans, id)
		}
	}
	if len(ctl.plans) >= maxPlans {
		ids := make([]string, 0, len(ctl.plans))
		for id := range ctl.plans {
			ids = append(ids, id)
		}
		sort.Slice(ids, func(i, j int) bool { return ctl.plans[ids[i]].madeAt.Before(ctl.plans[ids[j]].madeAt) })
		for _, id := range ids[:len(ids)-maxPlans+1] {
			delete(ctl.plans, id)
		}
	}
	ctl.plans[k.plan.ID] = k
}

func (ctl *Controller) keptPlan(id string) (keptPlan, bool) {
	ctl.plansMu.Lock()
	defer ctl.plansMu.Unlock()
	k, ok := ctl.plans[id]
	return k, ok
}

// samePlacement says whether two plans book the same: window, parts'
// leases, members' hosts and volumes' hosts.
func samePlacement(a, b api.Plan) bool {
	if a.Fits != b.Fits || !a.Start.Equal(b.Start) || !a.End.Equal(b.End) || len(a.Parts) != len(b.Parts) || len(a.Volumes) != len(b.Volumes) {
		return false
	}
	for i := range a.Parts {
		pa, pb := a.Parts[i], b.Parts[i]
		if pa.Lease != pb.Lease || !pa.Start.Equal(pb.Start) || len(pa.Members) != len(pb.Members) {
			return false
		}
		for k := range pa.Members {
			if pa.Members[k].Host != pb.Members[k].Host || pa.Members[k].Name != pb.Members[k].Name {
				return false
			}
		}
	}
	for i := range a.Volumes {
		if a.Volumes[i].Node != b.Volumes[i].Node {
			return false
		}
	}
	return true
}
