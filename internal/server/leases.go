package server

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"vgrid/api"
	"vgrid/internal/calendar"
	"vgrid/internal/model"
	"vgrid/internal/sched"
)

// The lease calendar is owned by the server and guarded by placeMu. It is
// restored from the stored lease records on first use (persist.go), hosts
// registering later are added to it, and the reconciler advances it and
// carries out its actions.

// hostLabel pins a lease to one host (a restarted workspace's disk lives on
// its host). Every calendar host carries it.
const hostLabel = "vgrid.io/host"

// calendarLocked returns the calendar, building it on first use. placeMu
// must be held.
func (s *Server) calendarLocked(ctx context.Context) (*calendar.Calendar, error) {
	if s.cal != nil {
		return s.cal, nil
	}
	if err := s.loadCalendar(ctx); err != nil {
		return nil, err
	}
	return s.cal, nil
}

func calHost(n model.Node) calendar.Host {
	labels := map[string]string{}
	for k, v := range n.Labels {
		labels[k] = v
	}
	labels[hostLabel] = n.Name
	return calendar.Host{Name: n.Name, Capacity: n.Capacity, Labels: labels}
}

// buildCalendar makes the calendar of a store written before lease
// records were stored: from the nodes, re-submitting the workspaces' leases: first the workspaces that hold a host (as immediate leases pinned
// to it, for what is left of their time), then the others in creation
// order (queued best-effort leases keep their submit time; reservations and
// deadline leases are admitted again for their window). Lost across a
// restart: a started lease's kind (it is no longer preemptible), a
// suspended lease's remaining time (it is queued again for its whole
// duration, pinned to its host), suspension counts and the fair-share
// history. A waiting lease that is refused now has its workspace stopped
// with the reason.
func (s *Server) buildCalendar(ctx context.Context) error {
	hosts, err := s.calendarHosts(ctx)
	if err != nil {
		return err
	}
	c, err := calendar.New(hosts, s.policy())
	if err != nil {
		return err
	}
	all, err := s.listWS(ctx, "ws/")
	if err != nil {
		return err
	}
	sort.SliceStable(all, func(i, j int) bool { return all[i].CreatedAt.Before(all[j].CreatedAt) })
	imgs, _ := s.images(ctx)
	now := s.now()
	var later []model.Workspace
	for _, ws := range all {
		if ws.Desired == model.DesiredDeleted || ws.Desired == model.DesiredStopped {
			continue
		}
		if !holds(ws) {
			switch {
			case ws.Status.State == model.StateQueued, ws.Status.State == model.StateScheduled,
				ws.Status.State == model.StateSuspended, ws.Desired == model.DesiredSuspended:
				later = append(later, ws)
			}
			continue // e.g. Failed: it waits for the user
		}
		end := ws.Status.ExpiresAt
		if end.IsZero() {
			end = ws.CreatedAt.Add(ws.Spec.Duration.D())
		}
		left := end.Sub(now)
		if left <= 0 {
			reason := fmt.Sprintf("lease ended at %s after %s", end.UTC().Format(time.RFC3339), ws.Spec.Duration)
			if _, err := s.stopRecord(ctx, ws.Project, ws.Spec.Name, reason); err != nil {
				s.log.Warn("stop at lease end", "workspace", ref(ws), "err", err)
			}
			continue
		}
		l := leaseOf(ws, imgs[ws.Spec.Image])
		l.Kind, l.Start, l.Deadline, l.Preempt, l.Duration = calendar.Immediate, time.Time{}, time.Time{}, calendar.PreemptNever, left
		l.Members[0].Labels = map[string]string{hostLabel: ws.Status.Node}
		if _, err := c.Submit(l, now); err != nil {
			s.log.Warn("calendar: restore running lease", "workspace", ref(ws), "err", err)
		}
	}
	for _, ws := range later {
		l := leaseOf(ws, imgs[ws.Spec.Image])
		l.Submitted = ws.CreatedAt
		if ws.Status.State == model.StateSuspended || ws.Desired == model.DesiredSuspended {
			l.Kind, l.Start, l.Deadline = calendar.BestEffort, time.Time{}, time.Time{}
			l.Members[0].Labels = map[string]string{hostLabel: ws.Status.Node}
		}
		if _, err := c.Submit(l, now); err != nil {
			s.log.Warn("calendar: restore lease", "workspace", ref(ws), "err", err)
			if _, err := s.stopRecord(ctx, ws.Project, ws.Spec.Name, "lease refused after a restart of the control plane: "+err.Error()); err != nil {
				s.log.Warn("stop workspace of a refused lease", "workspace", ref(ws), "err", err)
			}
		}
	}
	s.cal = c
	return nil
}

// leaseID names a workspace's lease: project/name, then project/name#gen
// for each restart by the user (and #<workspace id> appended when an
// earlier workspace of the same name had that lease ID). The workspace is
// what comes before the first '#'.
func leaseID(ws model.Workspace) string {
	if ws.Status.Lease != "" {
		return ws.Status.Lease
	}
	return ref(ws)
}

// refOfLease is the workspace (project, name) of a lease ID.
func refOfLease(id string) (project, name string, ok bool) {
	id, _, _ = strings.Cut(id, "#")
	return strings.Cut(id, "/")
}

// leaseOf is the calendar lease of a workspace: one member, its quantum.
func leaseOf(ws model.Workspace, img model.Image) calendar.Lease {
	l := calendar.Lease{
		ID: leaseID(ws), Project: ws.Project, Kind: ws.Spec.LeaseKind(),
		Members:  []calendar.Request{{Workspace: ws.Spec.Name, Resources: resourcesOf(ws.Spec)}},
		Duration: ws.Spec.Duration.D(),
		Image:    calendar.Image{Name: ws.Spec.Image, Size: model.ByteSize(img.Disk.Size)},
	}
	if ls := ws.Spec.Lease; ls != nil {
		l.Start, l.Deadline = ls.Start, ls.Deadline
		if l.Kind == calendar.BestEffort && ls.Preemptible != nil && !*ls.Preemptible {
			l.Preempt = calendar.PreemptNever
		}
	}
	if l.Kind != calendar.BestEffort {
		l.Preempt = ""
	}
	return l
}

// refusalError is a calendar refusal as the API's insufficient_capacity.
type refusalError struct{ r *calendar.Refusal }

func (e *refusalError) Error() string { return e.r.Error() }

// release tells the calendar that a workspace's lease is over (stopped,
// failed or deleted): a running lease finishes, a waiting one is
// withdrawn. It takes placeMu.
func (s *Server) release(ctx context.Context, ws model.Workspace) {
	s.placeMu.Lock()
	defer s.placeMu.Unlock()
	s.releaseLocked(ctx, ws)
}

func (s *Server) releaseLocked(ctx context.Context, ws model.Workspace) {
	c, err := s.calendarLocked(ctx)
	if err != nil {
		s.log.Warn("calendar", "err", err)
		return
	}
	id := leaseID(ws)
	v, ok := c.Get(id)
	if !ok {
		return
	}
	now := s.now()
	var acts []calendar.Action
	switch v.State {
	case calendar.StateRunning:
		acts, err = c.Finish(id, now)
	case calendar.StateQueued, calendar.StateScheduled, calendar.StateSuspended:
		acts, err = c.Cancel(id, now)
	default:
		return
	}
	if err != nil {
		s.log.Warn("calendar: release lease", "lease", id, "err", err)
	}
	s.applyActions(ctx, acts)
}

// releaseIfRunning finishes a running lease whose workspace stopped or
// failed by itself. A queued (requeued) or suspended lease is left alone.
func (s *Server) releaseIfRunning(ctx context.Context, ws model.Workspace) {
	s.placeMu.Lock()
	defer s.placeMu.Unlock()
	c, err := s.calendarLocked(ctx)
	if err != nil {
		return
	}
	if v, ok := c.Get(leaseID(ws)); ok && v.State == calendar.StateRunning {
		s.releaseLocked(ctx, ws)
	}
}

// advanceCalendar carries the calendar to now and applies what is due.
func (s *Server) advanceCalendar(ctx context.Context) error {
	s.placeMu.Lock()
	defer s.placeMu.Unlock()
	c, err := s.calendarLocked(ctx)
	if err != nil {
		return err
	}
	return s.commitLocked(ctx, c.Advance(s.now()), nil)
}

// applyActions stores the calendar's decisions and carries out its actions
// on the stored workspaces; the agents then converge. placeMu must be held.
func (s *Server) applyActions(ctx context.Context, acts []calendar.Action) {
	if err := s.commitLocked(ctx, acts, nil); err != nil {
		s.log.Warn("calendar: store decisions", "err", err)
	}
}

func viewInfo(v calendar.LeaseView) api.Lease {
	out := api.Lease{
		ID: v.ID, Project: v.Project, Kind: string(v.Kind), State: string(v.State),
		Start: v.Start, End: v.End, Hosts: v.Hosts, Planned: v.Planned,
		Remaining: model.Duration(v.Remaining), Suspensions: v.Suspensions, Requeues: v.Requeues, Reason: v.Reason,
	}
	if out.Hosts == nil {
		out.Hosts = []string{}
	}
	return out
}

// visible reports whether the caller may see a lease: its own project's.
func visible(ctx context.Context, v calendar.LeaseView) bool {
	return v.Project == who(ctx).Project
}

// getLeases answers one page of the caller's project's stored leases
// (?limit=, ?continue=).
func (s *Server) getLeases(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	kvs, next, err := s.page(r, "leases/"+who(ctx).Project+"/")
	if err != nil {
		return err
	}
	out := api.LeaseList{Leases: make([]api.Lease, 0, len(kvs)), Continue: next}
	now := s.now()
	for _, kv := range kvs {
		var rec model.LeaseRecord
		if err := json.Unmarshal(kv.Value, &rec); err != nil {
			return fmt.Errorf("decode %s: %w", kv.Key, err)
		}
		out.Leases = append(out.Leases, recordInfo(rec, now))
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// recordInfo is a stored lease as the API shows it: its current (or last)
// run and what is left of it at now.
func recordInfo(r model.LeaseRecord, now time.Time) api.Lease {
	out := api.Lease{ID: r.ID, Project: r.Project, Kind: string(r.Kind), State: string(r.State),
		Hosts: []string{}, Remaining: r.Remaining, Suspensions: r.Suspensions, Requeues: r.Requeues, Reason: r.Reason}
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

// leaseByName finds a lease of the caller's project by workspace name (its
// current lease) or by lease ID.
func (s *Server) leaseByName(ctx context.Context, c *calendar.Calendar, name string) (calendar.LeaseView, bool) {
	p := who(ctx).Project
	ids := []string{name, p + "/" + name}
	if ws, err := s.getWS(ctx, p, name); err == nil {
		ids = append([]string{leaseID(ws)}, ids...)
	}
	for _, id := range ids {
		if v, ok := c.Get(id); ok && visible(ctx, v) {
			return v, true
		}
	}
	return calendar.LeaseView{}, false
}

func (s *Server) getLease(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	s.placeMu.Lock()
	defer s.placeMu.Unlock()
	c, err := s.calendarLocked(ctx)
	if err != nil {
		return err
	}
	v, ok := s.leaseByName(ctx, c, r.PathValue("name"))
	if !ok {
		return notFound(fmt.Sprintf("lease %q", r.PathValue("name")))
	}
	writeJSON(w, http.StatusOK, viewInfo(v))
	return nil
}

// deleteLease cancels a lease: its workspace is stopped (a waiting one
// never starts) and its slots are given back.
func (s *Server) deleteLease(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	s.placeMu.Lock()
	c, err := s.calendarLocked(ctx)
	var v calendar.LeaseView
	ok := false
	if err == nil {
		v, ok = s.leaseByName(ctx, c, r.PathValue("name"))
	}
	s.placeMu.Unlock()
	if err != nil {
		return err
	}
	if !ok {
		return notFound(fmt.Sprintf("lease %q", r.PathValue("name")))
	}
	project, name, _ := refOfLease(v.ID)
	if ws, err := s.getWS(ctx, project, name); err == nil && leaseID(ws) == v.ID {
		if _, err := s.stopWS(ctx, project, name, "lease cancelled"); err != nil {
			return err
		}
	} else {
		s.placeMu.Lock()
		acts, err := c.Cancel(v.ID, s.now())
		if err != nil {
			s.placeMu.Unlock()
			return conflict(err.Error())
		}
		s.applyActions(ctx, acts)
		s.placeMu.Unlock()
	}
	s.placeMu.Lock()
	v, _ = c.Get(v.ID)
	s.placeMu.Unlock()
	writeJSON(w, http.StatusOK, viewInfo(v))
	return nil
}

// getCalendar draws the calendar as text: ?from= and ?to= (RFC 3339, or a
// duration relative to now such as -1h or 6h), ?width= cells. Admins see
// every project; others see their own leases, the rest shown as '*'.
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
	width := 72
	if v := q.Get("width"); v != "" {
		if width, err = strconv.Atoi(v); err != nil || width < 1 || width > 1000 {
			return badRequest("width: want 1 to 1000 cells")
		}
	}
	s.placeMu.Lock()
	c, err := s.calendarLocked(ctx)
	var text string
	if err == nil {
		text = c.Gantt(from, to, width)
	}
	s.placeMu.Unlock()
	if err != nil {
		return err
	}
	if who(ctx).Role != RoleAdmin {
		text = ownGantt(text, who(ctx).Project)
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, err = w.Write([]byte(text))
	return err
}

// ownGantt hides other projects' leases in a Gantt text: their letters
// become '*' and they leave the legend.
func ownGantt(text, project string) string {
	lines := strings.Split(text, "\n")
	hide := map[rune]bool{}
	for i, ln := range lines {
		rest, ok := strings.CutPrefix(ln, "legend:")
		if !ok {
			continue
		}
		main, tail, _ := strings.Cut(rest, ";")
		var keep []string
		for _, f := range strings.Fields(main) {
			letter, id, ok := strings.Cut(f, "=")
			if ok && !strings.HasPrefix(id, project+"/") {
				for _, r := range letter {
					hide[r] = true
				}
				continue
			}
			keep = append(keep, f)
		}
		lines[i] = "legend: " + strings.Join(keep, " ") + "; *: other projects;" + tail
	}
	for i, ln := range lines {
		pre, body, ok := strings.Cut(ln, "|")
		if !ok || strings.HasPrefix(ln, "legend:") {
			continue
		}
		lines[i] = pre + "|" + strings.Map(func(r rune) rune {
			if hide[r] || hide[toLower(r)] {
				return '*'
			}
			return r
		}, body)
	}
	return strings.Join(lines, "\n")
}

func toLower(r rune) rune {
	if r >= 'A' && r <= 'Z' {
		return r + 'a' - 'A'
	}
	return r
}

// cancelLease withdraws a lease, ignoring one that is already over.
func cancelLease(c *calendar.Calendar, id string, now time.Time) []calendar.Action {
	acts, _ := c.Cancel(id, now)
	return acts
}

// readyHost refuses (503) when no host is ready: there is nowhere to run.
func (s *Server) readyHost(ctx context.Context) error {
	nodes, err := s.nodes(ctx)
	if err != nil {
		return err
	}
	for _, n := range nodes {
		if s.nodeReady(n) {
			return nil
		}
	}
	return &sched.NoFitError{NoHosts: true}
}

// freshLeaseID returns base, or base with the workspace's ID appended when
// the calendar already has a lease of that name (from an earlier workspace
// of the same name).
func freshLeaseID(c *calendar.Calendar, base string, ws model.Workspace) string {
	if v, ok := c.Get(base); !ok || v.State == calendar.StateRefused {
		return base
	}
	return base + "#" + ws.ID
}
