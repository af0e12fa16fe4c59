package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"vgrid/internal/model"
	"vgrid/internal/store"
)

// Scratch volumes: a cluster role with scratch: {size, mount} gives each
// of its members a writable volume of its own, named after the member
// (model.ScratchName: "<member>-scratch"). They are made in the
// transaction that stores the members (a cluster's create, or a scale
// up), counted in the project's storage quota, recorded with
// Volume.ScratchOf = the member, attached to that member only, and
// marked for deletion when the member's record goes (releaseScratch,
// called as the member is forgotten). A member's host starts it once the
// storage host reported the volume ready: until then the volume has no
// endpoint in the host's assignments, and the agent waits for it; the
// volume's endpoint appearing wakes the member's host (volumeWake).
//
// The checks (names free, quota, storage room) are made before the
// calendar admits the members, so that a refusal changes nothing; the
// storage hosts are chosen after it placed them, preferring a member's
// own host when it serves volumes.

// scratchReq is the scratch volume of one member to be made.
type scratchReq struct {
	Member string // the member workspace's name
	Name   string // the volume's name
	Size   model.ByteSize
	Field  string // the spec field that asks for it ("roles[1].scratch")
}

// scratchReqs lists the scratch volumes members ask for (their roles'
// scratch), in the members' order. It is pure.
func scratchReqs(cs model.ClusterSpec, members []model.ClusterMember) []scratchReq {
	roles := map[string]int{}
	for i, r := range cs.Roles {
		roles[r.Name] = i
	}
	var out []scratchReq
	for _, m := range members {
		i, ok := roles[m.Role]
		if !ok || cs.Roles[i].Scratch == nil {
			continue
		}
		out = append(out, scratchReq{Member: m.Name, Name: model.ScratchName(cs.Name, m.Role, m.Index),
			Size: cs.Roles[i].Scratch.Size, Field: fmt.Sprintf("roles[%d].scratch", i)})
	}
	return out
}

// scratchNames is the set of the volumes reqs make.
func scratchNames(reqs []scratchReq) map[string]bool {
	out := make(map[string]bool, len(reqs))
	for _, r := range reqs {
		out[r.Name] = true
	}
	return out
}

// placeScratch chooses a storage host for each scratch volume in order:
// the member's own host (prefer, by member name) when it is a storage
// host with room left, else the host with the most room left (as
// pickStorageHost). Each choice takes its room from the next ones. It is
// pure.
func placeScratch(hosts []storageHost, reqs []scratchReq, prefer map[string]string) ([]string, error) {
	left := append([]storageHost(nil), hosts...)
	out := make([]string, len(reqs))
	for i, r := range reqs {
		node := ""
		if p := prefer[r.Member]; p != "" {
			for _, h := range left {
				if h.Name == p && h.Free >= r.Size {
					node = p
				}
			}
		}
		if node == "" {
			n, err := pickStorageHost(left, r.Size, "")
			if err != nil {
				return nil, fmt.Errorf("scratch volume %s of member %s: %w", r.Name, r.Member, err)
			}
			node = n
		}
		for j := range left {
			if left[j].Name == node {
				left[j].Free -= r.Size
			}
		}
		out[i] = node
	}
	return out, nil
}

// scratchPlan is what checkScratch found: the storage hosts as they were
// and a placement that fits them without preferences (the fallback).
type scratchPlan struct {
	reqs     []scratchReq
	hosts    []storageHost
	fallback []string
}

// checkScratch checks, before the calendar admits the members, that
// their scratch volumes can be made in project: no volume has one of
// their names, they fit the project's storage quota (KindLimit, 409,
// naming used, asked and limit), and the storage hosts have room for
// them. ctl.vols.mu is held until the volumes are stored.
func (ctl *Controller) checkScratch(ctx context.Context, project, cluster string, reqs []scratchReq) (scratchPlan, error) {
	if len(reqs) == 0 {
		return scratchPlan{}, nil
	}
	var total model.ByteSize
	for _, r := range reqs {
		v, err := ctl.getVolume(ctx, project, r.Name)
		switch {
		case err == nil && v.State == model.VolumeDeleting:
			return scratchPlan{}, conflict(fmt.Sprintf("volume %q (the scratch volume of member %s) is still being deleted: try again once it is gone", r.Name, r.Member))
		case err == nil:
			return scratchPlan{}, conflict(fmt.Sprintf("a volume named %q exists in project %s: member %s's scratch volume takes its name (%s); delete or rename that volume", r.Name, project, r.Member, r.Field))
		case !isNotFound(err):
			return scratchPlan{}, err
		}
		total += r.Size
	}
	if err := ctl.checkQuota(ctx, project, total); err != nil {
		var e *Error
		if errors.As(err, &e) {
			return scratchPlan{}, &Error{Kind: e.Kind, Msg: fmt.Sprintf("cluster %s's %d scratch volumes (%s): %s", cluster, len(reqs), total.Human(), e.Msg)}
		}
		return scratchPlan{}, err
	}
	hosts, err := ctl.storageHosts(ctx)
	if err != nil {
		return scratchPlan{}, err
	}
	fallback, err := placeScratch(hosts, reqs, nil)
	if err != nil {
		var e *Error
		if errors.As(err, &e) {
			return scratchPlan{}, &Error{Kind: KindConflict, Msg: err.Error()}
		}
		return scratchPlan{}, err
	}
	return scratchPlan{reqs: reqs, hosts: hosts, fallback: fallback}, nil
}

// volumes are the scratch volumes of the plan, placed once the members
// are (nodeOf: each member's host, "" when not placed yet), and the
// writes that make them (each must not exist), to be committed with the
// members.
func (p scratchPlan) volumes(project string, nodeOf map[string]string, now time.Time) ([]model.Volume, []store.Op) {
	if len(p.reqs) == 0 {
		return nil, nil
	}
	nodes, err := placeScratch(p.hosts, p.reqs, nodeOf)
	if err != nil {
		nodes = p.fallback // the preferences packed worse: the checked placement
	}
	vols := make([]model.Volume, len(p.reqs))
	ops := make([]store.Op, len(p.reqs))
	for i, r := range p.reqs {
		v := model.Volume{CreatedAt: now}
		v.ID, v.Name, v.Project, v.Size, v.Node = newVolumeID(), r.Name, project, r.Size, nodes[i]
		v.State, v.ScratchOf, v.Attached = model.VolumeCreating, r.Member, []string{r.Member}
		b, _ := json.Marshal(v)
		vols[i] = v
		ops[i] = store.Op{Key: volumeKey(project, r.Name), Value: b, Rev: store.OpMustNotExist}
	}
	return vols, ops
}

// scratchRefusal says why volume v cannot be attached by workspace ws:
// a scratch volume is its member's only ("" when it can be).
func scratchRefusal(v model.Volume, ws string) string {
	if v.ScratchOf == "" || v.ScratchOf == ws {
		return ""
	}
	return fmt.Sprintf("volume %q is the scratch volume of cluster member %s: it is attached to that member only (snapshot it to share its content)", v.Name, v.ScratchOf)
}

// releaseScratch marks for deletion the scratch volumes of a workspace
// whose record went (a member deleted, with its cluster or by a scale
// down); their storage hosts remove them.
func (ctl *Controller) releaseScratch(ctx context.Context, ws model.Workspace) {
	for _, m := range ws.Spec.Volumes {
		if err := ctl.dropScratch(ctx, ws.Project, m.Name, ws.Spec.Name); err != nil {
			ctl.log.Warn("delete a member's scratch volume", "workspace", ref(ws), "volume", m.Name, "err", err)
		}
	}
}

// dropScratch marks volume name of project for deletion if it is
// member's scratch volume.
func (ctl *Controller) dropScratch(ctx context.Context, project, name, member string) error {
	for attempt := 0; attempt < 20; attempt++ {
		v, err := ctl.getVolume(ctx, project, name)
		if isNotFound(err) {
			return nil
		}
		if err != nil {
			return err
		}
		if v.ScratchOf != member || v.State == model.VolumeDeleting {
			return nil
		}
		v.State, v.Reason, v.Endpoint = model.VolumeDeleting, "", nil
		_, err = ctl.putVolume(ctx, v)
		if errors.Is(err, store.ErrConflict) {
			continue
		}
		if err == nil {
			ctl.log.Info("volume deleting", "project", project, "volume", name, "id", v.ID, "node", v.Node, "scratch_of", member)
		}
		return err
	}
	return fmt.Errorf("volume %q kept changing", name)
}

// sweepScratch marks for deletion the project's scratch volumes whose
// member is no longer stored (its record went but the control plane
// stopped before its volume was marked).
func (ctl *Controller) sweepScratch(ctx context.Context, project string) error {
	vols, err := ctl.listVolumes(ctx, volumeKey(project, ""))
	if err != nil {
		return err
	}
	for _, v := range vols {
		if v.ScratchOf == "" || v.State == model.VolumeDeleting {
			continue
		}
		if _, err := ctl.getWS(ctx, project, v.ScratchOf); !isNotFound(err) {
			if err != nil {
				return err
			}
			continue
		}
		if err := ctl.dropScratch(ctx, project, v.Name, v.ScratchOf); err != nil {
			return err
		}
	}
	return nil
}
