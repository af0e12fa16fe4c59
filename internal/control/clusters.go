package control

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strings"

	"golang.org/x/crypto/ssh"

	"vgrid/api"
	"vgrid/internal/calendar"
	"vgrid/internal/ipam"
	"vgrid/internal/model"
	"vgrid/internal/spec"
	"vgrid/internal/store"
)

// Clusters are stored as
//
//	clusters/<project>/<name>   model.Cluster
//
// Their members are workspaces of the project (ws/<project>/<member>, with
// Workspace.Cluster set) and share one calendar lease, "<project>/@<name>"
// (then "#<n>" for each start again), with one calendar member per
// workspace: the calendar admits them together or not at all. A cluster
// that names no network gets one of its own, named after it and deleted
// with it.
func clusterKey(project, name string) string { return "clusters/" + project + "/" + name }

// clusterLeaseID is the first lease of a cluster.
func clusterLeaseID(project, name string) string { return project + "/@" + name }

// clusterOfLease is the cluster (project, name) of a cluster lease ID; ok
// is false for a workspace's own lease.
func clusterOfLease(id string) (project, name string, ok bool) {
	p, n, ok := refOfLease(id)
	if !ok || !strings.HasPrefix(n, "@") {
		return "", "", false
	}
	return p, n[1:], true
}

// memberAction is what action a means for member i of a cluster lease: the
// same action with member i's host only.
func memberAction(a calendar.Action, i int) calendar.Action {
	if a.Kind == calendar.ActStage {
		return a // staging places nothing
	}
	if i < len(a.Hosts) {
		a.Hosts = []string{a.Hosts[i]}
	} else {
		a.Hosts = nil
	}
	return a
}

// clusterReleases decides, for the members of a cluster lease as they are
// to be stored, whether the lease ends now. Like a workspace's lease, it is
// held while any member's guest may be up; once none is, it ends if no
// member wants it any more (stopped or deleted), or if it runs and every
// member that wants it has stopped or failed on its own. It is pure.
func clusterReleases(members []model.Workspace, st calendar.State) bool {
	for _, m := range members {
		if guestUp(m) {
			return false
		}
	}
	wanted, ended := false, true
	for _, m := range members {
		if !wantsLease(m) {
			continue
		}
		wanted = true
		if m.Status.State != model.StateStopped && m.Status.State != model.StateFailed {
			ended = false
		}
	}
	if !wanted {
		return true
	}
	return st == calendar.StateRunning && ended
}

// leaseMates reads the member workspaces of a cluster lease, with ws (as
// it is to be stored) in place of its stored value. A member whose record
// is gone counts as not wanting the lease.
func (ctl *Controller) leaseMates(ctx context.Context, v calendar.LeaseView, ws model.Workspace) ([]model.Workspace, error) {
	out := make([]model.Workspace, 0, len(v.Members))
	for _, name := range v.Members {
		if name == ws.Spec.Name {
			out = append(out, ws)
			continue
		}
		m, err := ctl.getWS(ctx, v.Project, name)
		if isNotFound(err) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if leaseID(m) != v.ID {
			continue // on another lease already
		}
		out = append(out, m)
	}
	return out, nil
}

// clusterKeyPair makes the cluster's ssh key pair: an OpenSSH private key
// (PEM) and its authorized_keys line.
func clusterKeyPair(comment string) (private, public string, err error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return "", "", err
	}
	blk, err := ssh.MarshalPrivateKey(priv, comment)
	if err != nil {
		return "", "", err
	}
	sp, err := ssh.NewPublicKey(pub)
	if err != nil {
		return "", "", err
	}
	line := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(sp))) + " " + comment
	return string(pem.EncodeToMemory(blk)), line, nil
}

// fillDisk gives a spec without a disk size its image's (at least 1 GiB)
// and refuses one smaller than the image. field is the quantum's path.
func fillDisk(sp *model.WorkspaceSpec, img model.Image, field string) error {
	if sp.Quantum.Disk == 0 {
		sp.Quantum.Disk = max(img.MinDisk, model.GiB)
	} else if sp.Quantum.Disk < img.MinDisk {
		return invalid("invalid spec", api.FieldError{Field: field + ".disk",
			Reason: fmt.Sprintf("%s is smaller than image %s (%s)", sp.Quantum.Disk, img.Name, img.MinDisk)})
	}
	return nil
}

// clusterNet is one network of a cluster being created: its record as it
// will be stored, and whether the cluster makes it.
type clusterNet struct {
	n    model.Network
	pool ipam.Pool
	own  bool
}

// CreateCluster validates a cluster spec for project and creates its
// members, networks and one lease for all of them in one transaction: the
// calendar admits every member or none, and a refusal (a *RefusalError)
// stores nothing.
func (ctl *Controller) CreateCluster(ctx context.Context, project string, cs model.ClusterSpec) (model.ClusterStatus, error) {
	imgs, err := ctl.visibleImages(ctx, project)
	if err != nil {
		return model.ClusterStatus{}, err
	}
	if err := spec.ValidateCluster(cs, imageLookup(imgs)); err != nil {
		return model.ClusterStatus{}, err
	}
	members := cs.Members()
	if len(members) == 0 {
		return model.ClusterStatus{}, invalid("invalid cluster spec", api.FieldError{Field: "roles", Reason: "every role has count 0: a cluster needs at least one member"})
	}
	roleIndex := map[string]int{}
	for i, r := range cs.Roles {
		roleIndex[r.Name] = i
	}
	for i := range members {
		sp := &members[i].Spec
		field := fmt.Sprintf("roles[%d].quantum", roleIndex[members[i].Role])
		if err := fillDisk(sp, imgs[sp.Image], field); err != nil {
			return model.ClusterStatus{}, err
		}
	}
	private, public, err := clusterKeyPair("vgrid-cluster-" + cs.Name)
	if err != nil {
		return model.ClusterStatus{}, err
	}

	ctl.mu.Lock()
	defer ctl.mu.Unlock()
	if _, err := ctl.store.Get(ctx, clusterKey(project, cs.Name)); err == nil {
		return model.ClusterStatus{}, invalid("invalid cluster spec", api.FieldError{Field: "name",
			Reason: fmt.Sprintf("a cluster named %q already exists in project %s", cs.Name, project)})
	} else if !errors.Is(err, store.ErrNotFound) {
		return model.ClusterStatus{}, err
	}
	for _, m := range members {
		if _, err := ctl.store.Get(ctx, wsKey(project, m.Name)); err == nil {
			return model.ClusterStatus{}, invalid("invalid cluster spec", api.FieldError{Field: "name",
				Reason: fmt.Sprintf("member %s would take the name of workspace %q, which exists in project %s", m.Name, m.Name, project)})
		} else if !errors.Is(err, store.ErrNotFound) {
			return model.ClusterStatus{}, err
		}
	}
	if err := ctl.checkWorkspaceLimit(ctx, project); err != nil {
		return model.ClusterStatus{}, err
	}
	if err := ctl.readyHost(ctx); err != nil {
		return model.ClusterStatus{}, err
	}
	// The volumes' checks and writes, the scratch volumes' quota and
	// room, are serialised with the other volume decisions.
	ctl.vols.mu.Lock()
	defer ctl.vols.mu.Unlock()
	volOps, scratch, err := ctl.clusterVolumes(ctx, project, cs, members)
	if err != nil {
		return model.ClusterStatus{}, err
	}
	now := ctl.now()

	// Networks: the named ones of the project, or one of its own.
	var nets []clusterNet
	var vop *store.Op
	wantOwn := len(cs.Networks) == 0
	ownSubnet := ""
	for i, cn := range cs.Networks {
		if cn.Name == "" {
			wantOwn, ownSubnet = true, cn.Subnet
			continue
		}
		n, err := ctl.Network(ctx, project, cn.Name)
		if isNotFound(err) {
			return model.ClusterStatus{}, invalid("invalid cluster spec", api.FieldError{Field: fmt.Sprintf("networks[%d].name", i),
				Reason: fmt.Sprintf("project %s has no network %q (vgrid network create %s)", project, cn.Name, cn.Name)})
		}
		if err != nil {
			return model.ClusterStatus{}, err
		}
		nets = append(nets, clusterNet{n: n, pool: poolOf(n)})
	}
	if wantOwn {
		req := api.NetworksPost{Name: cs.Name, Subnet: ownSubnet}
		sub, fe := ValidateNetworksPost(req)
		if len(fe) > 0 {
			for i := range fe {
				fe[i].Field = "networks." + fe[i].Field
			}
			return model.ClusterStatus{}, invalid("invalid cluster spec", fe...)
		}
		if _, err := ctl.store.Get(ctx, networkKey(project, cs.Name)); err == nil {
			return model.ClusterStatus{}, conflict(fmt.Sprintf("project %s has a network %q already: the cluster's own network takes its name; name that network in the spec's networks to use it, or delete it", project, cs.Name))
		}
		lay, err := ipam.LayoutOf(sub)
		if err != nil {
			return model.ClusterStatus{}, invalid("invalid cluster spec", api.FieldError{Field: "networks.subnet", Reason: err.Error()})
		}
		vnis, op, err := ctl.loadVNIs(ctx)
		if err != nil {
			return model.ClusterStatus{}, err
		}
		n := model.Network{Project: project, Name: cs.Name, Subnet: sub, Gateway: lay.Gateway, Cluster: cs.Name, CreatedAt: now}
		if n.VNI, err = vnis.Allocate(vniKey(project, cs.Name)); err != nil {
			return model.ClusterStatus{}, conflict(fmt.Sprintf("cluster %q: no VNI left on the grid for its network (%d networks)", cs.Name, vnis.Len()))
		}
		if op.Value, err = json.Marshal(vnis); err != nil {
			return model.ClusterStatus{}, err
		}
		vop = &op
		own := clusterNet{n: n, pool: ipam.Pool{Subnet: sub, Assigned: map[string]netip.Addr{}}, own: true}
		nets = append([]clusterNet{own}, nets...)
	}

	// The members, with their addresses and the roster.
	wss := make([]model.Workspace, len(members))
	roster := make([]model.RosterEntry, len(members))
	for i, m := range members {
		ws := model.Workspace{
			ID: newID(), Project: project, Spec: m.Spec, Desired: model.DesiredRunning, CreatedAt: now,
			Status:  model.WorkspaceStatus{State: model.StatePending, Generation: 1},
			Cluster: &model.ClusterRef{Name: cs.Name, Role: m.Role, Index: m.Index},
		}
		ws.Status.Timings.Created = now
		for j := range nets {
			a, err := nets[j].pool.Allocate(ws.ID)
			if err != nil {
				return model.ClusterStatus{}, conflict(fmt.Sprintf("network %q (%s) has no room for %d more members: %d of %d addresses are taken",
					nets[j].n.Name, nets[j].n.Subnet, len(members)-i, nets[j].pool.Len(), nets[j].pool.Capacity()))
			}
			ws.NICs = append(ws.NICs, nicOf(nets[j].n, ws.ID, a))
		}
		roster[i] = model.RosterEntry{Name: m.Name, Role: m.Role, Address: ws.NICs[0].Address.Addr()}
		wss[i] = ws
	}
	for i := range wss {
		ctx := *wss[i].Spec.Context
		ctx.Cluster = &model.ClusterContext{Name: cs.Name, Role: members[i].Role, Index: members[i].Index,
			Head: members[0].Name, Members: roster, PrivateKey: private, PublicKey: public, Revision: 1}
		wss[i].Spec.Context = &ctx
	}

	// One lease for all of them.
	c, err := ctl.calendarLocked(ctx)
	if err != nil {
		return model.ClusterStatus{}, err
	}
	id := clusterLeaseID(project, cs.Name)
	if v, ok := c.Get(id); ok {
		if !v.State.Over() {
			ctl.applyActions(ctx, cancelLease(c, v.ID, now))
		}
		id += "#" + wss[0].ID // an earlier cluster of this name had it
	}
	l := leaseOf(wss[0], imgs[wss[0].Spec.Image])
	l.ID, l.Members = id, make([]calendar.Request, len(wss))
	for i := range wss {
		wss[i].Status.Lease = id
		l.Members[i] = calendar.Request{Workspace: wss[i].Spec.Name, Resources: resourcesOf(wss[i].Spec), Spread: members[i].Placement == model.PlacementSpread}
	}
	adm, err := submitTimed(c, l, now)
	var rf *calendar.Refusal
	switch {
	case errors.As(err, &rf):
		return model.ClusterStatus{}, refused(rf, project)
	case err != nil:
		return model.ClusterStatus{}, invalid("invalid cluster spec", api.FieldError{Field: "lease", Reason: err.Error()})
	}
	var rest []calendar.Action
	for _, a := range c.Advance(now) {
		if a.Lease != id || a.Kind != calendar.ActStart {
			rest = append(rest, a)
			continue
		}
		v, _ := c.Get(id)
		for i := range wss {
			wss[i].Status.Node = a.Hosts[i]
			wss[i].Status.Timings.Scheduled = now
			wss[i].Status.ExpiresAt = v.End
		}
	}
	for i := range wss {
		if wss[i].Status.Node == "" {
			wss[i].Status.State = model.StateScheduled
			if adm.State == calendar.StateQueued {
				wss[i].Status.State = model.StateQueued
			}
		}
	}

	cl := model.Cluster{Project: project, Spec: cs, Lease: id, PublicKey: public, Desired: model.DesiredRunning, CreatedAt: now}
	var ops []store.Op
	for _, w := range wss {
		cl.Members = append(cl.Members, w.Spec.Name)
		b, _ := json.Marshal(w)
		ops = append(ops, store.Op{Key: wsKey(project, w.Spec.Name), Value: b, Rev: store.OpMustNotExist})
	}
	for _, cn := range nets {
		cl.Networks = append(cl.Networks, cn.n.Name)
		n := cn.n
		n.Addresses = cn.pool.Assigned
		rev := n.Revision
		if cn.own {
			rev = store.OpMustNotExist
		}
		n.Revision = 0
		b, _ := json.Marshal(n)
		ops = append(ops, store.Op{Key: networkKey(project, n.Name), Value: b, Rev: rev})
	}
	if vop != nil {
		ops = append(ops, *vop)
	}
	ops = append(ops, volOps...)
	// The members' scratch volumes, on their own hosts where those
	// serve volumes.
	placed := map[string]string{}
	for _, w := range wss {
		placed[w.Spec.Name] = w.Status.Node
	}
	scratchVols, scratchOps := scratch.volumes(project, placed, now)
	ops = append(ops, scratchOps...)
	b, _ := json.Marshal(cl)
	ops = append(ops, store.Op{Key: clusterKey(project, cs.Name), Value: b, Rev: store.OpMustNotExist})
	if err := ctl.commitLocked(ctx, rest, ops); err != nil {
		if errors.Is(err, store.ErrConflict) || errors.Is(err, store.ErrExists) {
			return model.ClusterStatus{}, conflict(fmt.Sprintf("cluster %q: its names or networks changed while it was being created; try again", cs.Name))
		}
		return model.ClusterStatus{}, err
	}
	for _, w := range wss {
		switch {
		case w.Status.Node != "":
			ctl.event(ctx, w, "created", fmt.Sprintf("member of cluster %s, placed on %s", cs.Name, w.Status.Node))
		case adm.State == calendar.StateQueued:
			ctl.event(ctx, w, "created", fmt.Sprintf("member of cluster %s, queued (%s lease)", cs.Name, members[0].Spec.LeaseKind()))
		default:
			ctl.event(ctx, w, "created", fmt.Sprintf("member of cluster %s, scheduled (%s lease) from %s", cs.Name, members[0].Spec.LeaseKind(), adm.Start.UTC().Format("2006-01-02T15:04:05Z")))
		}
	}
	for _, v := range scratchVols {
		ctl.log.Info("volume created", "project", project, "volume", v.Name, "id", v.ID, "node", v.Node, "size", v.Size.Human(), "scratch_of", v.ScratchOf)
	}
	ctl.log.Info("cluster created", "project", project, "cluster", cs.Name, "members", len(wss), "lease", id, "state", adm.State)
	ctl.wake()
	return clusterStatus(cl, wss), nil
}

// imageLookup is spec's image check over the image catalogue.
func imageLookup(imgs map[string]model.Image) spec.ImageLookup {
	return func(name string) (bool, []string) {
		_, ok := imgs[name]
		names := make([]string, 0, len(imgs))
		for n := range imgs {
			names = append(names, n)
		}
		sort.Strings(names)
		return ok, names
	}
}

// clusterStatus is a cluster with its members' state. It is pure.
func clusterStatus(cl model.Cluster, wss []model.Workspace) model.ClusterStatus {
	st := model.ClusterStatus{Cluster: cl}
	byName := map[string]model.Workspace{}
	for _, w := range wss {
		byName[w.Spec.Name] = w
	}
	rank := map[model.State]int{model.StateFailed: 0, model.StateStopped: 1, model.StateStopping: 2, model.StateSuspended: 3,
		model.StateQueued: 4, model.StateScheduled: 5, model.StatePending: 6, model.StateStarting: 7, model.StateRunning: 8}
	least := model.StateRunning
	for _, name := range cl.Members {
		w, ok := byName[name]
		ms := model.MemberStatus{Name: name, State: model.StateStopped, Reason: "its workspace is gone"}
		if ok {
			ms = model.MemberStatus{Name: name, Host: w.Status.Node, State: w.Status.State, Reason: w.Status.Reason}
			if w.Cluster != nil {
				ms.Role, ms.Index = w.Cluster.Role, w.Cluster.Index
			}
			for _, n := range w.NICs {
				ms.Addresses = append(ms.Addresses, n.Address.Addr().String())
			}
			ms.Contextualized = contextualized(w)
		}
		if ms.State == model.StateRunning && ms.Contextualized {
			st.Ready++
		}
		if r, ok := rank[ms.State]; ok && r < rank[least] {
			least = ms.State
		}
		st.Details = append(st.Details, ms)
	}
	st.State = string(least)
	if st.Ready == len(cl.Members) && len(cl.Members) > 0 {
		st.State = "Ready"
	}
	return st
}

// contextualized reports whether a member's guest applied its roster.
func contextualized(w model.Workspace) bool {
	g := w.Status.Guest
	if g == nil || w.Spec.Context == nil || w.Spec.Context.Cluster == nil {
		return false
	}
	return g.Roster >= w.Spec.Context.Cluster.Revision
}

func decodeCluster(kv store.KV) (model.Cluster, error) {
	var c model.Cluster
	if err := json.Unmarshal(kv.Value, &c); err != nil {
		return c, fmt.Errorf("decode %s: %w", kv.Key, err)
	}
	c.Revision = kv.Revision
	return c, nil
}

// clusterRecord reads a stored cluster of project.
func (ctl *Controller) clusterRecord(ctx context.Context, project, name string) (model.Cluster, error) {
	kv, err := ctl.store.Get(ctx, clusterKey(project, name))
	if errors.Is(err, store.ErrNotFound) {
		return model.Cluster{}, notFound(fmt.Sprintf("cluster %q", name))
	}
	if err != nil {
		return model.Cluster{}, err
	}
	return decodeCluster(kv)
}

// members reads a cluster's member workspaces (those still stored).
func (ctl *Controller) members(ctx context.Context, cl model.Cluster) ([]model.Workspace, error) {
	var out []model.Workspace
	for _, name := range cl.Members {
		w, err := ctl.getWS(ctx, cl.Project, name)
		if isNotFound(err) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if w.Cluster == nil || w.Cluster.Name != cl.Spec.Name {
			continue // a workspace of that name that is not the member
		}
		out = append(out, w)
	}
	return out, nil
}

// Cluster returns one cluster of project with its members' state.
func (ctl *Controller) Cluster(ctx context.Context, project, name string) (model.ClusterStatus, error) {
	cl, err := ctl.clusterRecord(ctx, project, name)
	if err != nil {
		return model.ClusterStatus{}, err
	}
	wss, err := ctl.members(ctx, cl)
	if err != nil {
		return model.ClusterStatus{}, err
	}
	return clusterStatus(cl, wss), nil
}

// Clusters lists the project's clusters by name.
func (ctl *Controller) Clusters(ctx context.Context, project string) ([]model.ClusterStatus, error) {
	kvs, err := ctl.store.List(ctx, clusterKey(project, ""))
	if err != nil {
		return nil, err
	}
	out := make([]model.ClusterStatus, 0, len(kvs))
	for _, kv := range kvs {
		cl, err := decodeCluster(kv)
		if err != nil {
			return nil, err
		}
		wss, err := ctl.members(ctx, cl)
		if err != nil {
			return nil, err
		}
		out = append(out, clusterStatus(cl, wss))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Spec.Name < out[j].Spec.Name })
	return out, nil
}

// StopCluster stops every member; the cluster's lease ends when the last
// guest is down.
func (ctl *Controller) StopCluster(ctx context.Context, project, name string) (model.ClusterStatus, error) {
	cl, err := ctl.setClusterDesired(ctx, project, name, model.DesiredStopped)
	if err != nil {
		return model.ClusterStatus{}, err
	}
	for _, m := range cl.Members {
		if _, err := ctl.stopWorkspace(ctx, project, m, "cluster "+name+" stopped by its user", true); err != nil && !isNotFound(err) {
			return model.ClusterStatus{}, err
		}
	}
	return ctl.Cluster(ctx, project, name)
}

// DeleteCluster deletes every member (each goes once its host tore it
// down), then the cluster, its own network and the members' addresses.
func (ctl *Controller) DeleteCluster(ctx context.Context, project, name string) (model.ClusterStatus, error) {
	cl, err := ctl.setClusterDesired(ctx, project, name, model.DesiredDeleted)
	if err != nil {
		return model.ClusterStatus{}, err
	}
	// Its listed members, and any other workspace that is its member: one
	// a scale down dropped from the list but could not delete (its
	// replica lost half way), which would keep the cluster forever.
	members := append([]string(nil), cl.Members...)
	all, err := ctl.listWS(ctx, wsKey(project, ""))
	if err != nil {
		return model.ClusterStatus{}, err
	}
	for _, w := range all {
		if w.Cluster != nil && w.Cluster.Name == name && !slices.Contains(members, w.Spec.Name) {
			members = append(members, w.Spec.Name)
		}
	}
	for _, m := range members {
		if _, err := ctl.deleteWorkspace(ctx, project, m); err != nil && !isNotFound(err) {
			return model.ClusterStatus{}, err
		}
	}
	if err := ctl.collectCluster(ctx, project, name); err != nil {
		return model.ClusterStatus{}, err
	}
	st, err := ctl.Cluster(ctx, project, name)
	if isNotFound(err) {
		cl.Desired = model.DesiredDeleted
		return model.ClusterStatus{Cluster: cl, State: "Deleted"}, nil
	}
	return st, err
}

// setClusterDesired records what the user wants of the cluster.
func (ctl *Controller) setClusterDesired(ctx context.Context, project, name string, d model.Desired) (model.Cluster, error) {
	for attempt := 0; ; attempt++ {
		cl, err := ctl.clusterRecord(ctx, project, name)
		if err != nil {
			return cl, err
		}
		if cl.Desired == model.DesiredDeleted && d != model.DesiredDeleted {
			return cl, conflict(fmt.Sprintf("cluster %q is being deleted", name))
		}
		if cl.Desired == d {
			return cl, nil
		}
		rev := cl.Revision
		cl.Desired, cl.Revision = d, 0
		b, _ := json.Marshal(cl)
		_, err = ctl.store.Txn(ctx, []store.Op{{Key: clusterKey(project, name), Value: b, Rev: rev}})
		if errors.Is(err, store.ErrConflict) && attempt < 20 {
			continue
		}
		return cl, err
	}
}

// collectCluster removes a cluster being deleted once none of its members
// is stored any more, and then its own networks once no address is left
// on them (members torn down at once may give theirs back after the
// cluster went).
func (ctl *Controller) collectCluster(ctx context.Context, project, name string) error {
	cl, err := ctl.clusterRecord(ctx, project, name)
	switch {
	case err == nil:
		if cl.Desired != model.DesiredDeleted {
			return nil
		}
		// Any member left, a listed one or one being dropped by a scale down.
		all, err := ctl.listWS(ctx, wsKey(project, ""))
		if err != nil {
			return err
		}
		for _, w := range all {
			if w.Cluster != nil && w.Cluster.Name == name {
				return nil
			}
		}
		if err := ctl.store.Delete(ctx, clusterKey(project, name), cl.Revision); err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
		ctl.log.Info("cluster deleted", "project", project, "cluster", name)
		// Scratch volumes whose member went without them (a stop of the
		// control plane between the two).
		if err := ctl.sweepScratch(ctx, project); err != nil {
			ctl.log.Warn("delete scratch volumes of gone members", "project", project, "err", err)
		}
	case !isNotFound(err):
		return err
	}
	nets, err := ctl.Networks(ctx, project)
	if err != nil {
		return err
	}
	for _, n := range nets {
		if n.Cluster != name || len(n.Addresses) > 0 {
			continue
		}
		if _, err := ctl.store.Get(ctx, clusterKey(project, name)); err == nil {
			continue // a new cluster of the name
		}
		if err := ctl.DeleteNetwork(ctx, project, n.Name); err != nil && !isNotFound(err) {
			ctl.log.Warn("delete a cluster's network", "project", project, "network", n.Name, "err", err)
		}
	}
	return nil
}

// releaseAddresses gives back a forgotten workspace's addresses, marks
// its scratch volumes for deletion, and removes its cluster when it was
// the last member of one being deleted.
func (ctl *Controller) releaseAddresses(ctx context.Context, ws model.Workspace) {
	for _, nic := range ws.NICs {
		for attempt := 0; attempt < 20; attempt++ {
			n, err := ctl.Network(ctx, ws.Project, nic.Network)
			if err != nil {
				break
			}
			if _, ok := n.Addresses[ws.ID]; !ok {
				break
			}
			delete(n.Addresses, ws.ID)
			rev := n.Revision
			n.Revision = 0
			b, _ := json.Marshal(n)
			if _, err = ctl.store.Txn(ctx, []store.Op{{Key: networkKey(ws.Project, n.Name), Value: b, Rev: rev}}); !errors.Is(err, store.ErrConflict) {
				if err != nil {
					ctl.log.Warn("release a member's address", "network", n.Name, "workspace", ref(ws), "err", err)
				}
				break
			}
		}
	}
	// Its scratch volumes go with it.
	ctl.releaseScratch(ctx, ws)
	if ws.Cluster != nil {
		if err := ctl.collectCluster(ctx, ws.Project, ws.Cluster.Name); err != nil {
			ctl.log.Warn("remove a deleted cluster", "cluster", ws.Cluster.Name, "err", err)
		}
	}
}

// memberRefusal refuses a workspace operation on a cluster member: its
// lease and its life are the cluster's.
func memberRefusal(ws model.Workspace, op string) error {
	if ws.Cluster == nil {
		return nil
	}
	return conflict(fmt.Sprintf("workspace %q is a member of cluster %q: %s the cluster (vgrid cluster %s %s)", ws.Spec.Name, ws.Cluster.Name, op, op, ws.Cluster.Name))
}

// ExportCluster returns the spec a cluster was created from.
func (ctl *Controller) ExportCluster(ctx context.Context, project, name string) (model.ClusterSpec, error) {
	cl, err := ctl.clusterRecord(ctx, project, name)
	return cl.Spec, err
}

// anyWants reports whether a member still wants the cluster's lease.
func anyWants(members []model.Workspace) bool {
	for _, m := range members {
		if wantsLease(m) {
			return true
		}
	}
	return false
}
