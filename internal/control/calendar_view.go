package control

import (
	"context"
	"time"

	"vgrid/api"
	"vgrid/internal/calendar"
	"vgrid/internal/model"
)

// CalendarView is the calendar over [from, to) as data (GET
// /calendar?format=json, the dashboard's Gantt chart): one row per host
// with its bars, the hosts' capacities and the volumes on their disks.
// Unless all, bars and volumes of projects other than project are
// masked.
func (ctl *Controller) CalendarView(ctx context.Context, from, to time.Time, project string, all bool) (api.Calendar, error) {
	ctl.mu.Lock()
	c, err := ctl.calendarLocked(ctx)
	var out api.Calendar
	if err == nil {
		out = CalendarJSON(c, from, to, project, all)
	}
	ctl.mu.Unlock()
	if err != nil {
		return api.Calendar{}, err
	}
	if out.Now.IsZero() {
		out.Now = ctl.now() // a calendar not advanced yet has no clock
	}
	return out, nil
}

// CalendarJSON is c over [from, to) as the API's calendar: the rows of
// c.GanttData, each bar told its lease's kind, state, members and
// resources on that host, and, unless all, other projects' bars masked
// as calendar.Mask masks them (lease "*", no project, no kind, state or
// members; the times and resources stay, so that a chart of how booked
// the hosts are is right for everybody). It only reads c; the caller
// holds whatever lock guards c.
func CalendarJSON(c *calendar.Calendar, from, to time.Time, project string, all bool) api.Calendar {
	out := api.Calendar{From: from, To: to, Revision: int64(c.Revision()), Now: c.Now(), Rows: []api.GanttRow{}}
	now := c.Now()
	type leaseInfo struct {
		view calendar.LeaseView
		rec  model.LeaseRecord
		ok   bool
	}
	leases := map[string]*leaseInfo{}
	info := func(id string) *leaseInfo {
		li := leases[id]
		if li == nil {
			li = &leaseInfo{}
			v, ok1 := c.Get(id)
			r, ok2 := c.Record(id)
			li.view, li.rec, li.ok = v, r, ok1 && ok2
			leases[id] = li
		}
		return li
	}
	for _, row := range c.GanttData(from, to) {
		gh := api.GanttHost{Name: row.Host, Removed: row.Removed}
		if cp, ok := c.HostCapacity(row.Host); ok {
			gh.Capacity = cp
		}
		out.Hosts = append(out.Hosts, gh)
		gr := api.GanttRow{Host: row.Host, Removed: row.Removed, Bars: make([]api.GanttBar, 0, len(row.Bars))}
		for _, b := range row.Bars {
			gb := api.GanttBar{Lease: b.Lease, Project: b.Project, From: b.From, RunFrom: b.RunFrom, RunTo: b.RunTo, To: b.To}
			if li := info(b.Lease); li.ok {
				fillBar(&gb, row.Host, b, li.view, li.rec, now)
			}
			if !all && b.Project != project {
				gb = api.GanttBar{Lease: "*", Masked: true, Resources: gb.Resources,
					From: gb.From, RunFrom: gb.RunFrom, RunTo: gb.RunTo, To: gb.To}
			}
			gr.Bars = append(gr.Bars, gb)
		}
		out.Rows = append(out.Rows, gr)
		for _, v := range row.Volumes {
			gv := api.GanttVol{Host: row.Host, Name: v.Name, Project: v.Project, Size: v.Size}
			if !all && v.Project != project {
				gv.Name, gv.Project = "*", ""
			}
			out.Volumes = append(out.Volumes, gv)
		}
	}
	return out
}

// fillBar tells a bar on host what its lease is: kind, state, the members
// held there and their resources, whether it is suspended or migrating,
// and when its image starts being copied when that happens before the
// hold (a lease that stages ahead).
func fillBar(gb *api.GanttBar, host string, b calendar.Bar, v calendar.LeaseView, r model.LeaseRecord, now time.Time) {
	gb.Kind, gb.State = v.Kind, v.State
	gb.Suspended = v.State == model.LeaseSuspended
	// Which member is where: the current hold's hosts, else where a
	// suspended lease's memory is.
	hosts := v.Hosts
	if len(hosts) == 0 {
		hosts = r.SavedOn
	}
	var moves []model.LeaseMove
	if r.Hold != nil {
		moves = r.Hold.Moves
	}
	for i, m := range r.Members {
		on := i < len(hosts) && hosts[i] == host
		res := m.Resources
		if !on {
			for _, mv := range moves {
				if mv.Member == i && mv.To == host {
					on = true
					if mv.Resources != nil {
						res = *mv.Resources
					}
				}
			}
		}
		if on {
			gb.Members = append(gb.Members, m.Workspace)
			gb.Resources = gb.Resources.Add(res)
			if _, moving := v.Moving[i]; moving && b.To.After(now) {
				gb.Migrating = true
			}
		}
	}
	if len(gb.Members) == 0 && len(r.Members) > 0 {
		// A past hold on a host the lease has left: its members are
		// alike in practice (one group), so one member's size stands for
		// the hold's.
		gb.Members = []string{r.Members[0].Workspace}
		gb.Resources = r.Members[0].Resources
	}
	if h := r.Hold; h != nil && !h.Resume && h.Pre > 0 && b.RunFrom.Equal(h.Start) {
		if st := h.Start.Add(-h.Pre.D()); st.Before(b.From) {
			gb.StageFrom = st
		}
	}
}
