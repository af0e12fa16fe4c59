package control

import (
	"context"
	"errors"
	"fmt"

	"vgrid/api"
	"vgrid/internal/calendar"
	"vgrid/internal/model"
)

// Volumes in the lease calendar: each stored volume holds its size of its
// storage host's disk there for good, so that leases asking disk see what
// is left and a new volume goes where the disk is free at the fullest
// moment to come (calendar.PlaceVolume). Volumes are durable in volumes/,
// not in the calendar's records: syncCalendarVolumes gives the calendar
// the stored set (at load, and before each volume decision).

// calVolume is v as the calendar has it.
func calVolume(v model.Volume) calendar.Volume {
	return calendar.Volume{Name: v.Project + "/" + v.Name, Project: v.Project, Size: v.Size, Host: v.Node}
}

// syncCalendarVolumes makes c's volumes the stored ones: missing ones
// added, grown ones grown, gone ones removed. placeMu must be held.
func (ctl *Controller) syncCalendarVolumes(ctx context.Context, c *calendar.Calendar) error {
	stored, err := ctl.listVolumes(ctx, "volumes/")
	if err != nil {
		return err
	}
	have := map[string]calendar.Volume{}
	for _, v := range c.Volumes() {
		have[v.Name] = v
	}
	now := ctl.now()
	want := map[string]bool{}
	for _, v := range stored {
		if v.Node == "" {
			continue
		}
		cv := calVolume(v)
		want[cv.Name] = true
		cur, ok := have[cv.Name]
		switch {
		case !ok:
			if err := c.AddVolume(cv, now); err != nil && !errors.Is(err, calendar.ErrUnknownHost) {
				ctl.log.Warn("calendar: volume", "volume", cv.Name, "host", cv.Host, "err", err)
			}
		case cur.Size < cv.Size:
			if err := c.ResizeVolume(cv.Name, cv.Size, now); err != nil {
				ctl.log.Warn("calendar: volume size", "volume", cv.Name, "size", cv.Size.Human(), "err", err)
			}
		}
	}
	for name := range have {
		if !want[name] {
			_ = c.RemoveVolume(name, now)
		}
	}
	return nil
}

// placeVolume chooses the storage host of a new volume of project with
// the calendar (want: the host an admin asked for) among the Ready
// storage hosts, and records it there. placeMu must be held; the caller
// removes it (unplaceVolume) if the volume is not stored after all.
func (ctl *Controller) placeVolume(ctx context.Context, project, name string, size model.ByteSize, want string) (string, error) {
	c, err := ctl.calendarLocked(ctx)
	if err != nil {
		return "", err
	}
	if err := ctl.syncCalendarVolumes(ctx, c); err != nil {
		return "", err
	}
	hosts, err := ctl.storageHosts(ctx)
	if err != nil {
		return "", err
	}
	if len(hosts) == 0 {
		return "", conflict("no storage host: no ready host's agent serves volumes (vgrid agent --storage-listen)")
	}
	if want != "" {
		ok := false
		for _, h := range hosts {
			ok = ok || h.Name == want
		}
		if !ok {
			return "", invalid("invalid volume", api.FieldError{Field: "node", Reason: fmt.Sprintf("%s is not a ready storage host (its agent serves no volumes, or it is cordoned or not ready)", want)})
		}
	}
	v := calendar.Volume{Name: project + "/" + name, Project: project, Size: size}
	host, err := c.PlaceVolume(v, want, ctl.now())
	var vr *calendar.VolumeRefusal
	if errors.As(err, &vr) {
		return "", conflict(vr.Error())
	}
	if err != nil {
		return "", err
	}
	for _, h := range hosts {
		if h.Name == host {
			return host, nil
		}
	}
	// The calendar's choice is a storage host that is not Ready now: the
	// Ready one with the most room instead.
	_ = c.RemoveVolume(v.Name, ctl.now())
	if host, err = pickStorageHost(hosts, size, ""); err != nil {
		return "", err
	}
	v.Host = host
	if err := c.AddVolume(v, ctl.now()); err != nil {
		return "", err
	}
	return host, nil
}

// unplaceVolume takes back what placeVolume recorded. placeMu must be held.
func (ctl *Controller) unplaceVolume(project, name string) {
	if ctl.cal != nil {
		_ = ctl.cal.RemoveVolume(project+"/"+name, ctl.now())
	}
}
