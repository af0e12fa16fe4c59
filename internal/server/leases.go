package server

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"vgrid/api"
	"vgrid/internal/control"
	"vgrid/internal/model"
)

// getLeases answers one page of the caller's project's stored leases.
func (s *Server) getLeases(w http.ResponseWriter, r *http.Request) error {
	p, err := pageOf(r)
	if err != nil {
		return err
	}
	recs, next, err := s.ctl.Leases(r.Context(), who(r.Context()).Project, p)
	if err != nil {
		return err
	}
	out := api.LeaseList{Leases: make([]api.Lease, 0, len(recs)), Continue: next}
	now := s.now()
	for _, rec := range recs {
		u, err := s.ctl.LeaseUsage(r.Context(), rec.ID)
		if err != nil {
			return err
		}
		out.Leases = append(out.Leases, recordInfo(rec, u, now))
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// getLease finds a lease by its workspace's name or by lease ID.
func (s *Server) getLease(w http.ResponseWriter, r *http.Request) error {
	rec, err := s.ctl.Lease(r.Context(), who(r.Context()).Project, r.PathValue("name"))
	if err != nil {
		return err
	}
	return s.writeLease(w, r, rec)
}

// deleteLease cancels a lease: its workspace is stopped (a waiting one
// never starts) and its slots are given back.
func (s *Server) deleteLease(w http.ResponseWriter, r *http.Request) error {
	rec, err := s.ctl.CancelLease(r.Context(), who(r.Context()).Project, r.PathValue("name"))
	if err != nil {
		return err
	}
	return s.writeLease(w, r, rec)
}

// recordInfo is a stored lease as the API shows it: its current (or last)
// run and what is left of it at now.
func recordInfo(r model.LeaseRecord, u model.LeaseUsage, now time.Time) api.Lease {
	out := api.Lease{ID: r.ID, Project: r.Project, Kind: string(r.Kind), State: string(r.State),
		Hosts: []string{}, Remaining: r.Remaining, Suspensions: r.Suspensions, Requeues: r.Requeues, Reason: control.MaskReason(r.Reason, r.Project)}
	for _, m := range r.Members {
		out.Members = append(out.Members, m.Workspace)
	}
	cs, ms := r.Reserved(now)
	out.ReservedCoreHours, out.ReservedGiBHours = cs/3600, ms/float64(model.GiB)/3600
	out.UsedCPUSeconds = u.CPUSeconds()
	out.UsedCoreHours = out.UsedCPUSeconds / 3600
	switch {
	case r.Hold != nil:
		out.Start, out.End, out.Hosts = r.Hold.Start, r.Hold.RunEnd, r.Hold.Hosts
		if r.Hold.Started && now.After(r.Hold.Start) {
			upto := now
			if upto.After(r.Hold.RunEnd) {
				upto = r.Hold.RunEnd
			}
			ran := upto.Sub(r.Hold.Start)
			out.Remaining = model.Duration(max(r.Remaining.D()-ran, 0))
		}
	case r.State.Over():
		out.Remaining = 0
		if n := len(r.Segments); n > 0 {
			out.Start, out.End = r.Segments[n-1].RunFrom, r.Segments[n-1].RunTo
			out.Hosts = []string{r.Segments[n-1].Host}
		}
	}
	return out
}

// getCalendar draws the calendar as text: ?from= and ?to= (RFC 3339, or a
// duration relative to now such as -1h or 6h), ?width= cells. Admins see
// every project; others see their own leases, the rest shown as '*'.
// ?format=json (or Accept: application/json) answers an api.Calendar.
func (s *Server) getCalendar(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	now := s.now()
	q := r.URL.Query()
	parse := func(name string, def time.Time) (time.Time, error) {
		v := q.Get(name)
		if v == "" {
			return def, nil
		}
		if t, err := time.Parse(time.RFC3339, v); err == nil {
			return t, nil
		}
		if d, err := time.ParseDuration(v); err == nil {
			return now.Add(d), nil
		}
		return time.Time{}, badRequest(fmt.Sprintf("%s: want an RFC 3339 time or a duration from now (e.g. 6h)", name))
	}
	from, err := parse("from", now)
	if err != nil {
		return err
	}
	to, err := parse("to", from.Add(24*time.Hour))
	if err != nil {
		return err
	}
	if !to.After(from) {
		return badRequest("to: must be after from")
	}
	if q.Get("format") == "json" || q.Get("format") == "" && strings.Contains(r.Header.Get("Accept"), "application/json") {
		cal, err := s.ctl.CalendarView(ctx, from, to, who(ctx).Project, who(ctx).Role == RoleAdmin)
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, cal)
		return nil
	}
	if f := q.Get("format"); f != "" && f != "text" {
		return badRequest("format: want text or json")
	}
	width := 72
	if v := q.Get("width"); v != "" {
		if width, err = strconv.Atoi(v); err != nil || width < 1 || width > 1000 {
			return badRequest("width: want 1 to 1000 cells")
		}
	}
	text, err := s.ctl.Gantt(ctx, from, to, width, who(ctx).Project, who(ctx).Role == RoleAdmin)
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, err = w.Write([]byte(text))
	return err
}

// getUsage sums reserved and used resources per project: ?project= (admins
// may name any project or none for all; others see their own), ?since=
// (RFC 3339, or a duration back from now such as 24h).
func (s *Server) getUsage(w http.ResponseWriter, r *http.Request) error {
	p := who(r.Context())
	q := r.URL.Query()
	project := q.Get("project")
	switch {
	case p.Role != RoleAdmin && project != "" && project != p.Project:
		return notFound(fmt.Sprintf("project %q", project))
	case p.Role != RoleAdmin || project == "" && q.Get("all") == "":
		if project == "" {
			project = p.Project
		}
	}
	if q.Get("all") != "" && p.Role == RoleAdmin {
		project = ""
	}
	var since time.Time
	if v := q.Get("since"); v != "" {
		t, err := time.Parse(time.RFC3339, v)
		if err != nil {
			d, derr := time.ParseDuration(v)
			if derr != nil || d < 0 {
				return badRequest("since: want an RFC 3339 time or a duration back from now (e.g. 24h)")
			}
			t = s.now().Add(-d)
		}
		since = t
	}
	us, err := s.ctl.Usage(r.Context(), project, since)
	if err != nil {
		return err
	}
	out := api.UsageList{Projects: []api.ProjectUsage{}}
	if !since.IsZero() {
		out.Since = &since
	}
	for _, u := range us {
		out.Projects = append(out.Projects, api.ProjectUsage{Project: u.Project, Leases: u.Leases,
			ReservedCoreHours: u.ReservedCoreSecond / 3600, ReservedGiBHours: u.ReservedMemByteSec / float64(model.GiB) / 3600,
			UsedCPUSeconds: u.UsedCPUSeconds, UsedCoreHours: u.UsedCPUSeconds / 3600, FairShareCoreHours: u.FairShare / 3600})
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// postLeaseExtend lengthens or shortens a lease: {"by": "2h"} (negative
// shortens) or {"until": RFC 3339}.
func (s *Server) postLeaseExtend(w http.ResponseWriter, r *http.Request) error {
	body, err := readBody(r)
	if err != nil {
		return err
	}
	var req api.LeaseExtend
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return badRequest("lease extension: " + err.Error())
	}
	switch {
	case req.By == 0 && req.Until.IsZero():
		return badRequest("invalid lease extension", api.FieldError{Field: "by", Reason: "give by (a duration, negative to shorten) or until (a time)"})
	case req.By != 0 && !req.Until.IsZero():
		return badRequest("invalid lease extension", api.FieldError{Field: "until", Reason: "give by or until, not both"})
	}
	rec, err := s.ctl.ExtendLease(r.Context(), who(r.Context()).Project, r.PathValue("name"), req.By.D(), req.Until)
	if err != nil {
		return err
	}
	return s.writeLease(w, r, rec)
}

// writeLease answers with a lease as the API shows it, with its usage.
func (s *Server) writeLease(w http.ResponseWriter, r *http.Request, rec model.LeaseRecord) error {
	u, err := s.ctl.LeaseUsage(r.Context(), rec.ID)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, recordInfo(rec, u, s.now()))
	return nil
}
