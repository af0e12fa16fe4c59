package control

// Staging ahead of a start: the calendar's stage action for a reservation
// or deadline lease (whose image is fetched before its hold, while the
// host runs other leases) is recorded on the lease's workspaces as
// Status.Staging by the pure transition (stageChange), in the same
// transaction as the calendar's decision. The write also shows the user
// what is going on and survives a restart. A host's assignments then list
// the images to fetch now (Assignments.Stage), built here from the stored
// workspaces and the calendar's placement (member i of a cluster lease is
// on its lease's Hosts[i], so each host fetches what its own members
// boot).

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"vgrid/api"
	"vgrid/internal/calendar"
	"vgrid/internal/model"
)

// stageChange is transition's answer to a stage action: the workspace's
// image is to be fetched on the action's hosts now. Nothing changes for a
// workspace that is not waiting to start (stopped, already started,
// suspended) or that records this staging already.
func stageChange(a calendar.Action, ws model.Workspace, same Change) Change {
	st := &ws.Status
	if ws.Desired != model.DesiredRunning || len(a.Hosts) == 0 {
		return same
	}
	switch st.State {
	case model.StateQueued, model.StateScheduled, model.StatePending, "":
	default:
		return same // started, stopping or suspended: nothing to stage ahead
	}
	hosts := slices.Clone(a.Hosts)
	sort.Strings(hosts)
	if s := st.Staging; s != nil && s.Image == ws.Spec.Image && slices.Equal(s.Hosts, hosts) {
		return same
	}
	st.Staging = &model.Staging{Image: ws.Spec.Image, Hosts: hosts, Since: a.At}
	return Change{WS: ws, Type: "staging", Message: fmt.Sprintf("image %s is fetched on %s ahead of the lease's start", ws.Spec.Image, strings.Join(hosts, ","))}
}

// stagePlace says where a workspace of a lease runs and when its run
// begins, as the calendar has it; ok is false if the calendar does not
// know.
type stagePlace func(ws model.Workspace) (host string, start time.Time, ok bool)

// stageList is what node's agent is to fetch now: one request per
// workspace that records a staging (Status.Staging) on node, is still to
// start and wants to run, by start then workspace. place, when it knows
// the workspace, narrows a staging listing several hosts (a cluster's) to
// the workspace's own host and gives its start; else every host the
// staging lists fetches the image. It is pure.
func stageList(node string, all []model.Workspace, place stagePlace) []api.StageRequest {
	var out []api.StageRequest
	for _, ws := range all {
		s := ws.Status.Staging
		if s == nil || s.Image == "" || ws.Desired != model.DesiredRunning || !slices.Contains(s.Hosts, node) {
			continue
		}
		switch ws.Status.State {
		case model.StateQueued, model.StateScheduled, model.StatePending, "":
		default:
			continue
		}
		var start time.Time
		if place != nil {
			h, t, ok := place(ws)
			if ok && h != "" && h != node {
				continue // another member's host
			}
			if ok {
				start = t
			}
		}
		out = append(out, api.StageRequest{Image: s.Image, Workspace: ref(ws), Start: start})
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].Start.Equal(out[j].Start) {
			return out[i].Start.Before(out[j].Start)
		}
		return out[i].Workspace < out[j].Workspace
	})
	return out
}

// addStaging fills out.Stage for node from all (the stored workspaces)
// and adds the descriptions of the images to stage to out.Images
// (imgs: every known image by name), so that the agent can fetch them.
func (ctl *Controller) addStaging(ctx context.Context, node string, all []model.Workspace, imgs map[string]model.Image, out *api.Assignments) error {
	found := false
	for _, ws := range all {
		if s := ws.Status.Staging; s != nil && slices.Contains(s.Hosts, node) {
			found = true
			break
		}
	}
	if !found {
		return nil // no lock taken for the common case
	}
	ctl.mu.Lock()
	c, err := ctl.calendarLocked(ctx)
	if err != nil {
		ctl.mu.Unlock()
		return err
	}
	views := map[string]calendar.LeaseView{}
	for _, ws := range all {
		if ws.Status.Staging == nil {
			continue
		}
		id := leaseID(ws)
		if _, ok := views[id]; ok {
			continue
		}
		if v, ok := c.Get(id); ok {
			views[id] = v
		}
	}
	ctl.mu.Unlock()
	place := func(ws model.Workspace) (string, time.Time, bool) {
		v, ok := views[leaseID(ws)]
		if !ok {
			return "", time.Time{}, false
		}
		return memberHost(v, ws.Spec.Name), v.Start, true
	}
	out.Stage = stageList(node, all, place)
	for _, r := range out.Stage {
		if slices.ContainsFunc(out.Images, func(i model.Image) bool { return i.Name == r.Image }) {
			continue
		}
		if img, ok := imgs[r.Image]; ok {
			out.Images = append(out.Images, img)
		}
	}
	return nil
}

// memberHost is the host of workspace name in a lease's placement ("" if
// the lease does not place it).
func memberHost(v calendar.LeaseView, name string) string {
	for i, m := range v.Members {
		if m == name && i < len(v.Hosts) {
			return v.Hosts[i]
		}
	}
	if len(v.Hosts) == 1 {
		return v.Hosts[0]
	}
	return ""
}
