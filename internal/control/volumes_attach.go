package control

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"sync"

	"vgrid/api"
	"vgrid/internal/model"
	"vgrid/internal/store"
)

// Volumes seen from the workspaces: attaching them (one writer or
// readers only), the hosts' assignments (what a storage host serves,
// where the volumes of a host's workspaces are), and waking those hosts.

// attachVolumes checks the volumes the specs (a workspace, or a
// cluster's members) attach, in project: each exists and is ready (or is
// made with them: made), and a writable attachment is exclusive, against
// the project's other workspaces that are not being deleted and among
// the specs. It returns the writes that record the attachments
// (Volume.Attached), conditional on the volumes' revisions, to be
// committed with the workspaces.
func (ctl *Controller) attachVolumes(ctx context.Context, project string, specs []model.WorkspaceSpec, made map[string]bool) ([]store.Op, error) {
	need := false
	for _, sp := range specs {
		need = need || len(sp.Volumes) > 0
	}
	if !need {
		return nil, nil
	}
	wss, err := ctl.listWS(ctx, wsKey(project, ""))
	if err != nil {
		return nil, err
	}
	// A volume has one writer and no readers, or readers only: a
	// filesystem written by one guest is not read safely by another
	// (its cache goes stale).
	writer := map[string]string{} // volume → the workspace writing it
	reader := map[string]string{} // volume → a workspace reading it
	for _, w := range wss {
		if w.Desired == model.DesiredDeleted {
			continue
		}
		for _, m := range w.Spec.Volumes {
			if !m.ReadOnly {
				writer[m.Name] = w.Spec.Name
			} else {
				reader[m.Name] = w.Spec.Name
			}
		}
	}
	vols := map[string]model.Volume{}
	var order []string
	for _, sp := range specs {
		for i, m := range sp.Volumes {
			field := fmt.Sprintf("volumes[%d].name", i)
			if len(specs) > 1 {
				field = sp.Name + "." + field
			}
			if made[m.Name] {
				continue
			}
			v, ok := vols[m.Name]
			if !ok {
				v, err = ctl.getVolume(ctx, project, m.Name)
				if isNotFound(err) {
					return nil, invalid("invalid workspace spec", fieldErr(field, fmt.Sprintf("no volume %q in project %s (vgrid volume create)", m.Name, project)))
				}
				if err != nil {
					return nil, err
				}
				if v.State != model.VolumeReady && v.State != model.VolumeResizing && !(v.State == model.VolumeCreating && gridMade(ctx, m.Name)) {
					return nil, conflict(fmt.Sprintf("volume %q is %s, not ready: attach it once it is ready", m.Name, v.State))
				}
				vols[m.Name] = v
				order = append(order, m.Name)
			}
			if why := scratchRefusal(v, sp.Name); why != "" {
				return nil, conflict(why)
			}
			if w, ok := writer[m.Name]; ok {
				return nil, conflict(fmt.Sprintf("volume %q is attached writable to workspace %s: a volume has one writer, or readers only (delete %s first)", m.Name, w, w))
			}
			if !m.ReadOnly {
				if r, ok := reader[m.Name]; ok {
					return nil, conflict(fmt.Sprintf("volume %q is attached read-only to workspace %s: a volume has one writer, or readers only (attach it read_only: true, or delete its readers first)", m.Name, r))
				}
				writer[m.Name] = sp.Name
			} else {
				reader[m.Name] = sp.Name
			}
			v.Attached = append(v.Attached, sp.Name)
			vols[m.Name] = v
		}
	}
	var ops []store.Op
	for _, name := range order {
		v := vols[name]
		// What the record keeps: the workspaces that use it now.
		live := attachedTo(wss, name, false)
		for _, a := range v.Attached {
			if !contains(live, a) {
				live = append(live, a)
			}
		}
		sort.Strings(live)
		v.Attached = live
		rev := v.Revision
		v.Revision = 0
		b, _ := json.Marshal(v)
		ops = append(ops, store.Op{Key: volumeKey(project, name), Value: b, Rev: rev})
	}
	return ops, nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// volumeAssignments adds to a host's assignments the volumes it stores
// and the endpoints of those its workspaces (mine) attach.
func (ctl *Controller) volumeAssignments(ctx context.Context, node string, mine []model.Workspace, out *api.Assignments) error {
	all, err := ctl.listVolumes(ctx, "volumes/")
	if err != nil {
		return err
	}
	byName := map[string]model.Volume{}
	for _, v := range all {
		byName[v.Project+"/"+v.Name] = v
	}
	for _, v := range all {
		if v.Node != node {
			continue
		}
		s := api.VolumeServe{ID: v.ID, Project: v.Project, Name: v.Name, Size: v.Size, State: v.State, Want: api.VolumeWantServe}
		if v.State == model.VolumeDeleting {
			s.Want = api.VolumeWantDelete
		}
		if v.SnapshotOf != "" && v.State == model.VolumeCreating {
			if src, ok := byName[v.Project+"/"+v.SnapshotOf]; ok && src.Node == node {
				s.From = src.ID
			}
		}
		out.Volumes = append(out.Volumes, s)
	}
	seen := map[string]bool{}
	for _, w := range mine {
		for _, m := range w.Spec.Volumes {
			v, ok := byName[w.Project+"/"+m.Name]
			if !ok || v.Endpoint == nil || seen[v.ID] || v.State == model.VolumeDeleting {
				continue
			}
			seen[v.ID] = true
			e := v.Endpoint
			out.VolumeEndpoints = append(out.VolumeEndpoints, api.VolumeEndpoint{ID: v.ID, Project: v.Project, Name: v.Name,
				Node: v.Node, Host: e.Host, Port: e.Port, Export: e.Export, IOPS: v.IOPS, BPS: v.BPS})
		}
	}
	return nil
}

// volumeWake is what the volume waker keeps: each volume's storage host
// and endpoint. A volume's change wakes its storage host (before and
// after); its endpoint appearing or changing wakes the hosts of the
// workspaces attaching it (they find it in their assignments).
type volumeWake struct {
	mu     sync.Mutex
	nodeOf map[string]string // volume key → its storage host
	epOf   map[string]string // volume key → its endpoint, when it has one
}

// start takes the volumes as the watch starts.
func (w *volumeWake) start(kvs []store.KV) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.nodeOf, w.epOf = map[string]string{}, map[string]string{}
	for _, kv := range kvs {
		var v wakeVolume
		if json.Unmarshal(kv.Value, &v) == nil {
			w.nodeOf[kv.Key] = v.Node
			if ep := v.endpointOf(); ep != "" {
				w.epOf[kv.Key] = ep
			}
		}
	}
}

// hosts are the hosts a volume's change concerns.
func (w *volumeWake) hosts(st store.Store, ev store.Event) []string {
	var v wakeVolume
	if ev.Type == store.EventPut {
		_ = json.Unmarshal(ev.KV.Value, &v)
	}
	w.mu.Lock()
	hosts := []string{w.nodeOf[ev.KV.Key], v.Node}
	if v.Node == "" {
		delete(w.nodeOf, ev.KV.Key)
	} else {
		w.nodeOf[ev.KV.Key] = v.Node
	}
	ep := v.endpointOf()
	moved := ep != "" && ep != w.epOf[ev.KV.Key]
	if ep == "" {
		delete(w.epOf, ev.KV.Key)
	} else {
		w.epOf[ev.KV.Key] = ep
	}
	w.mu.Unlock()
	if moved && v.Project != "" && v.Name != "" {
		hosts = append(hosts, attachingHosts(context.Background(), st, v.Project, v.Name)...)
	}
	return hosts
}

// wakeVolume is the part of a stored volume the waker reads.
type wakeVolume struct {
	Node     string                `json:"node"`
	Project  string                `json:"project"`
	Name     string                `json:"name"`
	Endpoint *model.VolumeEndpoint `json:"endpoint"`
}

// endpointOf is a volume's endpoint as the waker compares it ("": none).
func (v wakeVolume) endpointOf() string {
	if v.Endpoint == nil {
		return ""
	}
	return fmt.Sprintf("%s:%d/%s", v.Endpoint.Host, v.Endpoint.Port, v.Endpoint.Export)
}

// attachingHosts lists the hosts of project's workspaces whose specs
// attach volume name: where each is placed, and where it migrates to.
func attachingHosts(ctx context.Context, st store.Store, project, name string) []string {
	kvs, err := st.List(ctx, wsKey(project, ""))
	if err != nil {
		return nil
	}
	var out []string
	for _, kv := range kvs {
		var w struct {
			Spec struct {
				Volumes []struct {
					Name string `json:"name"`
				} `json:"volumes"`
			} `json:"spec"`
			Status struct {
				Node      string `json:"node"`
				Migration *struct {
					To string `json:"to"`
				} `json:"migration"`
			} `json:"status"`
		}
		if json.Unmarshal(kv.Value, &w) != nil {
			continue
		}
		for _, m := range w.Spec.Volumes {
			if m.Name != name {
				continue
			}
			if w.Status.Node != "" {
				out = append(out, w.Status.Node)
			}
			if w.Status.Migration != nil && w.Status.Migration.To != "" {
				out = append(out, w.Status.Migration.To)
			}
			break
		}
	}
	return out
}

// clusterVolumes checks the volumes new members of cluster cs attach
// (see attachVolumes; their scratch volumes are made with them, see
// checkScratch) and returns the writes recording the attachments and the
// plan of the scratch volumes. ctl.vols.mu is held until they are
// stored.
func (ctl *Controller) clusterVolumes(ctx context.Context, project string, cs model.ClusterSpec, members []model.ClusterMember) ([]store.Op, scratchPlan, error) {
	reqs := scratchReqs(cs, members)
	specs := make([]model.WorkspaceSpec, len(members))
	for i, m := range members {
		specs[i] = m.Spec
	}
	ops, err := ctl.attachVolumes(ctx, project, specs, scratchNames(reqs))
	if err != nil {
		return nil, scratchPlan{}, err
	}
	plan, err := ctl.checkScratch(ctx, project, cs.Name, reqs)
	if err != nil {
		return nil, scratchPlan{}, err
	}
	return ops, plan, nil
}
