package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"vgrid/api"
	"vgrid/internal/calendar"
	"vgrid/internal/ipam"
	"vgrid/internal/model"
	"vgrid/internal/spec"
	"vgrid/internal/store"
)

// StartCluster starts a stopped cluster again: every member, for a new
// lease of the cluster's duration, admitted whole. Each member's disk is
// on its host, so the new lease is pinned to the hosts the members were
// on; a cluster that no longer fits there is refused with the reason.
func (ctl *Controller) StartCluster(ctx context.Context, project, name string) (model.ClusterStatus, error) {
	cl, err := ctl.clusterRecord(ctx, project, name)
	if err != nil {
		return model.ClusterStatus{}, err
	}
	if cl.Desired == model.DesiredDeleted {
		return model.ClusterStatus{}, conflict(fmt.Sprintf("cluster %q is being deleted", name))
	}
	ctl.mu.Lock()
	defer ctl.mu.Unlock()
	wss, err := ctl.members(ctx, cl)
	if err != nil {
		return model.ClusterStatus{}, err
	}
	if len(wss) == 0 {
		return model.ClusterStatus{}, conflict(fmt.Sprintf("cluster %q has no members left", name))
	}
	var up []string
	for _, w := range wss {
		if w.Desired == model.DesiredRunning || w.Desired == model.DesiredSuspended || guestUp(w) {
			up = append(up, w.Spec.Name)
		}
	}
	if len(up) > 0 {
		if len(up) == len(wss) {
			return clusterStatus(cl, wss), nil // running already
		}
		return model.ClusterStatus{}, conflict(fmt.Sprintf("cluster %q is not stopped: members %s still run or stop; start it when every member is Stopped", name, strings.Join(up, ", ")))
	}
	c, err := ctl.calendarLocked(ctx)
	if err != nil {
		return model.ClusterStatus{}, err
	}
	imgs, err := ctl.images(ctx)
	if err != nil {
		return model.ClusterStatus{}, err
	}
	now := ctl.now()
	for _, w := range wss {
		ctl.applyActions(ctx, cancelLease(c, leaseID(w), now))
	}
	gen := wss[0].Status.Generation + 1
	id := fmt.Sprintf("%s#%d", clusterLeaseID(project, name), gen)
	if _, ok := c.Get(id); ok {
		id += "-" + wss[0].ID
	}
	l := leaseOf(wss[0], imgs[wss[0].Spec.Image])
	l.ID, l.Kind, l.Start, l.Deadline, l.Preempt = id, calendar.Immediate, time.Time{}, time.Time{}, ""
	l.Members = make([]calendar.Request, len(wss))
	for i, w := range wss {
		l.Members[i] = calendar.Request{Workspace: w.Spec.Name, Resources: resourcesOf(w.Spec)}
		if w.Status.Node != "" {
			l.Members[i].Labels = map[string]string{hostLabel: w.Status.Node}
		}
	}
	adm, err := c.Submit(l, now)
	var rf *calendar.Refusal
	if errors.As(err, &rf) {
		return model.ClusterStatus{}, refused(rf, project)
	}
	if err != nil {
		return model.ClusterStatus{}, conflict(err.Error())
	}
	hosts := adm.Hosts
	var rest []calendar.Action
	for _, a := range c.Advance(now) {
		if a.Lease == id && a.Kind == calendar.ActStart {
			hosts = a.Hosts
			continue
		}
		rest = append(rest, a)
	}
	end := now.Add(wss[0].Spec.Duration.D())
	if v, ok := c.Get(id); ok {
		end = v.End
	}
	var ops []store.Op
	for i, w := range wss {
		rev := w.Revision
		w.Desired = model.DesiredRunning
		w.Status.State, w.Status.Lease, w.Status.Reason = model.StatePending, id, ""
		if i < len(hosts) {
			w.Status.Node = hosts[i]
		}
		w.Status.Generation++
		w.Status.ExpiresAt, w.Status.StartedAt = end, now
		w.Status.Guest, w.Status.PID, w.Status.Move = nil, 0, nil
		w.Status.Timings = model.Timings{Created: now, Scheduled: now}
		w.Revision = 0
		wss[i] = w
		b, _ := json.Marshal(w)
		ops = append(ops, store.Op{Key: wsKey(project, w.Spec.Name), Value: b, Rev: rev})
	}
	cl.Desired = model.DesiredRunning
	crev := cl.Revision
	cl.Revision = 0
	b, _ := json.Marshal(cl)
	ops = append(ops, store.Op{Key: clusterKey(project, name), Value: b, Rev: crev})
	err = ctl.commitLocked(ctx, rest, ops)
	if errors.Is(err, store.ErrConflict) || errors.Is(err, store.ErrNotFound) {
		return model.ClusterStatus{}, conflict(fmt.Sprintf("cluster %q changed meanwhile; try again", name))
	}
	if err != nil {
		return model.ClusterStatus{}, err
	}
	for _, w := range wss {
		ctl.event(ctx, w, "starting", fmt.Sprintf("cluster %s started, new lease of %s", name, w.Spec.Duration))
	}
	ctl.wake()
	return clusterStatus(cl, wss), nil
}

// ScaleCluster sets the member count of roles (role name → count) of a
// running cluster. New members are admitted together, all or none, by a
// lease of their own that ends with the cluster's; they get addresses on
// the cluster's networks, and every member's roster (revision + 1) names
// them. Members beyond a lower count are deleted (the highest indexes
// first); their room in the cluster's lease is held until it ends.
func (ctl *Controller) ScaleCluster(ctx context.Context, project, name string, counts map[string]int) (model.ClusterStatus, error) {
	cl, err := ctl.clusterRecord(ctx, project, name)
	if err != nil {
		return model.ClusterStatus{}, err
	}
	if cl.Desired != model.DesiredRunning {
		return model.ClusterStatus{}, conflict(fmt.Sprintf("cluster %q is %s: scale a running cluster", name, strings.ToLower(string(cl.Desired))))
	}
	var sets []string
	for role, n := range counts {
		found := false
		for _, r := range cl.Spec.Roles {
			found = found || r.Name == role
		}
		if !found {
			return model.ClusterStatus{}, invalid("invalid scale", fieldErr(role, fmt.Sprintf("cluster %s has no role %q (its roles: %s)", name, role, roleNames(cl.Spec))))
		}
		sets = append(sets, fmt.Sprintf("roles.%s.count=%d", role, n))
	}
	next, err := applySets(cl.Spec, sets)
	if err != nil {
		return model.ClusterStatus{}, err
	}
	imgs, err := ctl.images(ctx)
	if err != nil {
		return model.ClusterStatus{}, err
	}

	ctl.mu.Lock()
	defer ctl.mu.Unlock()
	cur, err := ctl.members(ctx, cl)
	if err != nil {
		return model.ClusterStatus{}, err
	}
	have := map[string]model.Workspace{}
	for _, w := range cur {
		have[w.Spec.Name] = w
	}
	var add []model.ClusterMember
	keep := map[string]bool{}
	for _, m := range next.Members() {
		keep[m.Name] = true
		if _, ok := have[m.Name]; !ok {
			add = append(add, m)
		}
	}
	var drop []model.Workspace
	for _, w := range cur {
		if !keep[w.Spec.Name] {
			drop = append(drop, w)
		}
	}
	c, err := ctl.calendarLocked(ctx)
	if err != nil {
		return model.ClusterStatus{}, err
	}
	now := ctl.now()
	var main calendar.LeaseView
	for _, w := range cur {
		if v, ok := c.Get(leaseID(w)); ok && v.State == calendar.StateRunning {
			main = v
			break
		}
	}
	if len(add) > 0 && main.ID == "" {
		return model.ClusterStatus{}, conflict(fmt.Sprintf("cluster %q has no running lease: scale it up once it runs", name))
	}

	// New members: addresses, roster, one lease of their own.
	var nets []clusterNet
	for _, nn := range cl.Networks {
		n, err := ctl.Network(ctx, project, nn)
		if err != nil {
			return model.ClusterStatus{}, err
		}
		nets = append(nets, clusterNet{n: n, pool: poolOf(n)})
	}
	fresh := make([]model.Workspace, len(add))
	for i, m := range add {
		sp := m.Spec
		if err := fillDisk(&sp, imgs[sp.Image], "quantum"); err != nil {
			return model.ClusterStatus{}, err
		}
		w := model.Workspace{ID: newID(), Project: project, Spec: sp, Desired: model.DesiredRunning, CreatedAt: now,
			Status:  model.WorkspaceStatus{State: model.StatePending, Generation: 1},
			Cluster: &model.ClusterRef{Name: name, Role: m.Role, Index: m.Index}}
		w.Status.Timings.Created = now
		for j := range nets {
			a, err := nets[j].pool.Allocate(w.ID)
			if err != nil {
				return model.ClusterStatus{}, conflict(fmt.Sprintf("network %q (%s) has no room for %d more members", nets[j].n.Name, nets[j].n.Subnet, len(add)-i))
			}
			w.NICs = append(w.NICs, nicOf(nets[j].n, w.ID, a))
		}
		fresh[i] = w
	}
	// The new members' volumes: the checks of a create (each volume
	// exists, is ready, one writer or readers only, a scratch volume its
	// member's only) and their scratch volumes (names free, quota, room),
	// serialised with the other volume decisions until stored.
	ctl.vols.mu.Lock()
	volsHeld := true
	defer func() {
		if volsHeld {
			ctl.vols.mu.Unlock()
		}
	}()
	volOps, scratch, err := ctl.clusterVolumes(ctx, project, next, add)
	if err != nil {
		return model.ClusterStatus{}, err
	}
	// The roster: the members that stay, then the new ones, in spec order.
	var roster []model.RosterEntry
	var all []model.Workspace
	for _, m := range next.Members() {
		w, ok := have[m.Name]
		if !ok {
			for _, f := range fresh {
				if f.Spec.Name == m.Name {
					w = f
				}
			}
		}
		all = append(all, w)
		e := model.RosterEntry{Name: m.Name, Role: m.Role}
		if len(w.NICs) > 0 {
			e.Address = w.NICs[0].Address.Addr()
		}
		roster = append(roster, e)
	}
	var base model.ClusterContext
	if len(cur) > 0 && cur[0].Spec.Context != nil && cur[0].Spec.Context.Cluster != nil {
		base = *cur[0].Spec.Context.Cluster
	}
	base.Members, base.Revision = roster, base.Revision+1
	if len(roster) > 0 {
		base.Head = roster[0].Name
	}

	var rest []calendar.Action
	var lid string
	if len(fresh) > 0 {
		lid = fmt.Sprintf("%s#s%d", clusterLeaseID(project, name), base.Revision)
		if _, ok := c.Get(lid); ok {
			lid += "-" + fresh[0].ID
		}
		l := leaseOf(fresh[0], imgs[fresh[0].Spec.Image])
		l.ID, l.Kind, l.Start, l.Deadline, l.Preempt = lid, calendar.Immediate, time.Time{}, time.Time{}, ""
		l.Duration = main.End.Sub(now)
		if l.Duration <= 0 {
			return model.ClusterStatus{}, conflict(fmt.Sprintf("cluster %q: its lease ends now", name))
		}
		l.Members = make([]calendar.Request, len(fresh))
		for i := range fresh {
			fresh[i].Status.Lease = lid
			l.Members[i] = calendar.Request{Workspace: fresh[i].Spec.Name, Resources: resourcesOf(fresh[i].Spec), Spread: add[i].Placement == model.PlacementSpread}
		}
		adm, err := c.Submit(l, now)
		if err != nil {
			var rf *calendar.Refusal
			if errors.As(err, &rf) {
				return model.ClusterStatus{}, refused(rf, project)
			}
			return model.ClusterStatus{}, conflict(err.Error())
		}
		for i := range fresh {
			if i < len(adm.Hosts) {
				// Where it was placed, even if its image is staged first.
				fresh[i].Status.Node = adm.Hosts[i]
			}
		}
		for _, a := range c.Advance(now) {
			if a.Lease != lid || a.Kind != calendar.ActStart {
				rest = append(rest, a)
				continue
			}
			for i := range fresh {
				fresh[i].Status.Node = a.Hosts[i]
				fresh[i].Status.Timings.Scheduled = now
				fresh[i].Status.ExpiresAt = main.End
			}
		}
	}

	for i := range all {
		for _, f := range fresh {
			if f.Spec.Name == all[i].Spec.Name {
				all[i] = f // as placed
			}
		}
	}
	var ops []store.Op
	for _, w := range all {
		if w.Spec.Context == nil {
			w.Spec.Context = &model.Context{}
		}
		ctxCopy := *w.Spec.Context
		r := base
		r.Role, r.Index = w.Cluster.Role, w.Cluster.Index
		ctxCopy.Cluster = &r
		w.Spec.Context = &ctxCopy
		rev := w.Revision
		if rev == 0 {
			rev = store.OpMustNotExist
		}
		w.Revision = 0
		b, _ := json.Marshal(w)
		ops = append(ops, store.Op{Key: wsKey(project, w.Spec.Name), Value: b, Rev: rev})
	}
	for _, cn := range nets {
		n := cn.n
		n.Addresses = cn.pool.Assigned
		rev := n.Revision
		n.Revision = 0
		b, _ := json.Marshal(n)
		ops = append(ops, store.Op{Key: networkKey(project, n.Name), Value: b, Rev: rev})
	}
	ops = append(ops, volOps...)
	placed := map[string]string{}
	for _, w := range fresh {
		placed[w.Spec.Name] = w.Status.Node
	}
	scratchVols, scratchOps := scratch.volumes(project, placed, now)
	ops = append(ops, scratchOps...)
	ncl := cl
	ncl.Spec = next
	ncl.Members = nil
	for _, w := range all {
		ncl.Members = append(ncl.Members, w.Spec.Name)
	}
	ncl.Revision = 0
	b, _ := json.Marshal(ncl)
	ops = append(ops, store.Op{Key: clusterKey(project, name), Value: b, Rev: cl.Revision})
	if err := ctl.commitLocked(ctx, rest, ops); err != nil {
		if errors.Is(err, store.ErrConflict) || errors.Is(err, store.ErrExists) || errors.Is(err, store.ErrNotFound) {
			return model.ClusterStatus{}, conflict(fmt.Sprintf("cluster %q changed meanwhile; try again", name))
		}
		return model.ClusterStatus{}, err
	}
	ctl.vols.mu.Unlock()
	volsHeld = false
	for _, v := range scratchVols {
		ctl.log.Info("volume created", "project", project, "volume", v.Name, "id", v.ID, "node", v.Node, "size", v.Size.Human(), "scratch_of", v.ScratchOf)
	}
	for _, w := range fresh {
		ctl.event(ctx, w, "created", fmt.Sprintf("member of cluster %s (scaled up), placed on %s", name, w.Status.Node))
	}
	ctl.mu.Unlock()
	for _, w := range drop {
		if _, err := ctl.deleteWorkspace(ctx, project, w.Spec.Name); err != nil && !isNotFound(err) {
			ctl.log.Warn("scale down: delete member", "workspace", ref(w), "err", err)
		}
	}
	ctl.mu.Lock()
	ctl.wake()
	ctl.log.Info("cluster scaled", "project", project, "cluster", name, "added", len(fresh), "removed", len(drop), "roster", base.Revision)
	st, err := ctl.members(ctx, ncl)
	if err != nil {
		return model.ClusterStatus{}, err
	}
	return clusterStatus(ncl, st), nil
}

func roleNames(s model.ClusterSpec) string {
	var out []string
	for _, r := range s.Roles {
		out = append(out, r.Name)
	}
	return strings.Join(out, ", ")
}

func fieldErr(field, reason string) api.FieldError {
	return api.FieldError{Field: field, Reason: reason}
}

// applySets is spec.ApplySets; its field errors are the caller's input.
func applySets(s model.ClusterSpec, sets []string) (model.ClusterSpec, error) {
	out, err := spec.ApplySets(s, sets)
	if err != nil {
		var fe *spec.FieldErrors
		if errors.As(err, &fe) {
			return out, err
		}
		return out, invalid("invalid scale", fieldErr("counts", err.Error()))
	}
	return out, nil
}

// poolOf is the address pool of a network as stored.
func poolOf(n model.Network) ipam.Pool {
	p := ipam.Pool{Subnet: n.Subnet, Assigned: map[string]netip.Addr{}}
	for k, a := range n.Addresses {
		p.Assigned[k] = a
	}
	return p
}

// nicOf is workspace id's NIC on network n at address a.
func nicOf(n model.Network, id string, a netip.Addr) model.NIC {
	nic := model.NIC{Network: n.Name, VNI: n.VNI, MAC: model.NICMAC(id, n.Name), Address: netip.PrefixFrom(a, n.Subnet.Bits())}
	if n.NAT {
		nic.Gateway = n.Gateway
	}
	return nic
}
