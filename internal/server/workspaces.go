package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"vgrid/api"
	"vgrid/internal/calendar"
	"vgrid/internal/model"
	"vgrid/internal/spec"
	"vgrid/internal/store"
)

// maxBody bounds request bodies; a spec with 64 KiB of user data fits.
const maxBody = 1 << 20

func readBody(r *http.Request) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	if err != nil {
		return nil, badRequest("read body: " + err.Error())
	}
	if len(b) > maxBody {
		return nil, badRequest(fmt.Sprintf("body: larger than %d bytes", maxBody))
	}
	return b, nil
}

// postWorkspaces creates a workspace: parse and validate the spec (YAML or
// JSON), place it, and store it. Nothing is stored unless all succeed.
func (s *Server) postWorkspaces(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	p := who(ctx)
	body, err := readBody(r)
	if err != nil {
		return err
	}
	sp, err := spec.Parse(body)
	if err != nil {
		// Every parse failure is the caller's input: syntax errors carry a
		// line, field errors a path.
		var fe *spec.FieldErrors
		if errors.As(err, &fe) {
			return err
		}
		return badRequest(err.Error())
	}
	imgs, err := s.images(ctx)
	if err != nil {
		return err
	}
	lookup := func(name string) (bool, []string) {
		_, ok := imgs[name]
		names := make([]string, 0, len(imgs))
		for n := range imgs {
			names = append(names, n)
		}
		sort.Strings(names)
		return ok, names
	}
	if err := spec.Validate(sp, lookup); err != nil {
		return err
	}
	img := imgs[sp.Image]
	if sp.Quantum.Disk == 0 {
		sp.Quantum.Disk = max(img.MinDisk, model.GiB)
	} else if sp.Quantum.Disk < img.MinDisk {
		return badRequest("invalid workspace spec", api.FieldError{Field: "quantum.disk",
			Reason: fmt.Sprintf("%s is smaller than image %s (%s)", sp.Quantum.Disk, img.Name, img.MinDisk)})
	}

	s.placeMu.Lock()
	defer s.placeMu.Unlock()
	if _, err := s.store.Get(ctx, wsKey(p.Project, sp.Name)); err == nil {
		return badRequest("invalid workspace spec", api.FieldError{Field: "name",
			Reason: fmt.Sprintf("a workspace named %q already exists in project %s", sp.Name, p.Project)})
	} else if !errors.Is(err, store.ErrNotFound) {
		return err
	}
	now := s.now()
	ws := model.Workspace{
		ID: newID(), Project: p.Project, Spec: sp, Desired: model.DesiredRunning, CreatedAt: now,
		Status: model.WorkspaceStatus{State: model.StatePending, Generation: 1},
	}
	ws.Status.Timings.Created = now
	ws.Status.Lease = ref(ws)
	c, err := s.calendarLocked(ctx)
	if err != nil {
		return err
	}
	if err := s.readyHost(ctx); err != nil {
		return err
	}
	// A lease left over from an earlier workspace of this name (deleted
	// while its lease was still live) goes.
	if v, ok := c.Get(ws.Status.Lease); ok {
		switch v.State {
		case calendar.StateRunning, calendar.StateQueued, calendar.StateScheduled, calendar.StateSuspended:
			s.applyActions(ctx, cancelLease(c, v.ID, now))
		}
	}
	ws.Status.Lease = freshLeaseID(c, ws.Status.Lease, ws)
	adm, err := c.Submit(leaseOf(ws, img), now)
	var rf *calendar.Refusal
	switch {
	case errors.As(err, &rf):
		return &refusalError{rf}
	case err != nil:
		return badRequest("invalid workspace spec", api.FieldError{Field: "lease", Reason: err.Error()})
	}
	// The lease may start at once (an immediate lease, or a best-effort one
	// that finds room); its own start is applied here, the others' (and
	// any preemptions) once it is stored.
	var rest []calendar.Action
	for _, a := range c.Advance(now) {
		if a.Lease == ws.Status.Lease && a.Kind == calendar.ActStart {
			ws.Status.Node = a.Hosts[0]
			ws.Status.Timings.Scheduled = s.now()
			if v, ok := c.Get(a.Lease); ok {
				ws.Status.ExpiresAt = v.End
			}
			continue
		}
		rest = append(rest, a)
	}
	if ws.Status.Node == "" {
		ws.Status.State = model.StateScheduled
		if adm.State == calendar.StateQueued {
			ws.Status.State = model.StateQueued
		}
	}
	// The workspace, its lease and whatever the admission displaced are
	// stored in one transaction before the answer.
	b, _ := json.Marshal(ws)
	err = s.commitLocked(ctx, rest, []store.Op{{Key: wsKey(p.Project, sp.Name), Value: b, Rev: store.OpMustNotExist}})
	if errors.Is(err, store.ErrExists) {
		return badRequest("invalid workspace spec", api.FieldError{Field: "name", Reason: "already exists"})
	}
	if err != nil {
		return err
	}
	if kv, err := s.store.Get(ctx, wsKey(p.Project, sp.Name)); err == nil {
		ws.Revision = kv.Revision
	}
	what := fmt.Sprintf("(%d vCPU, %.2f cores, %s memory, %s disk) for %s",
		sp.Quantum.VCPUs, sp.Quantum.CPUCores(), sp.Quantum.Memory, sp.Quantum.Disk, sp.Duration)
	switch {
	case ws.Status.Node != "":
		s.event(ctx, ws, "created", fmt.Sprintf("placed on %s %s", ws.Status.Node, what))
	case adm.State == calendar.StateQueued:
		s.event(ctx, ws, "created", fmt.Sprintf("queued (%s lease) %s", sp.LeaseKind(), what))
	default:
		s.event(ctx, ws, "created", fmt.Sprintf("scheduled (%s lease) on %v from %s to %s %s", sp.LeaseKind(), adm.Hosts,
			adm.Start.UTC().Format(time.RFC3339), adm.End.UTC().Format(time.RFC3339), what))
	}
	for _, v := range adm.Victims {
		s.log.Info("lease admission preempts", "lease", ws.Status.Lease, "victim", v.Lease, "how", v.Kind, "at", v.At)
	}
	s.log.Info("workspace created", "project", p.Project, "workspace", sp.Name, "id", ws.ID, "node", ws.Status.Node, "state", ws.Status.State)
	writeJSON(w, http.StatusCreated, ws)
	return nil
}

// getWorkspaces answers one page of the caller's project's workspaces
// (?limit=, ?continue=), reading only that page from the store.
func (s *Server) getWorkspaces(w http.ResponseWriter, r *http.Request) error {
	p := who(r.Context())
	prefix := "ws/" + p.Project + "/"
	kvs, next, err := s.page(r, prefix)
	if err != nil {
		return err
	}
	out := api.WorkspaceList{Workspaces: make([]model.Workspace, 0, len(kvs)), Continue: next}
	for _, kv := range kvs {
		ws, err := decodeWS(kv)
		if err != nil {
			return err
		}
		out.Workspaces = append(out.Workspaces, ws)
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// page reads one page of keys under prefix as the request asks: ?limit=
// (default api.DefaultPage, at most api.MaxPage) after ?continue= (the
// last key of the previous page, without the prefix). It returns the next
// continue token, "" after the last page.
func (s *Server) page(r *http.Request, prefix string) ([]store.KV, string, error) {
	q := r.URL.Query()
	limit := api.DefaultPage
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > api.MaxPage {
			return nil, "", badRequest(fmt.Sprintf("limit: want 1 to %d", api.MaxPage))
		}
		limit = n
	}
	after := ""
	if c := q.Get("continue"); c != "" {
		if strings.ContainsAny(c, "\x00") || len(c) > 512 {
			return nil, "", badRequest("continue: not a token this server gave")
		}
		after = prefix + c
	}
	kvs, more, err := s.store.ListPage(r.Context(), prefix, after, limit)
	if err != nil {
		return nil, "", err
	}
	next := ""
	if more && len(kvs) > 0 {
		next = strings.TrimPrefix(kvs[len(kvs)-1].Key, prefix)
	}
	return kvs, next, nil
}

func (s *Server) getWorkspace(w http.ResponseWriter, r *http.Request) error {
	ws, err := s.getWS(r.Context(), who(r.Context()).Project, r.PathValue("name"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, ws)
	return nil
}

// deleteWorkspace marks the workspace for deletion; the host's agent tears
// it down and then the record goes. A workspace no host holds goes at once.
func (s *Server) deleteWorkspace(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	p := who(ctx)
	name := r.PathValue("name")
	ws, err := s.mutateWS(ctx, p.Project, name, func(ws *model.Workspace) error {
		if ws.Desired == model.DesiredDeleted {
			return errSkip
		}
		ws.Desired = model.DesiredDeleted
		if ws.Status.State == model.StateRunning || ws.Status.State == model.StateStarting {
			ws.Status.State = model.StateStopping
		}
		return nil
	})
	if err != nil {
		return err
	}
	s.event(ctx, ws, "deleting", "delete requested")
	s.release(ctx, ws)
	if ws.Status.Node == "" {
		if err := s.forget(ctx, ws); err != nil {
			return err
		}
	}
	writeJSON(w, http.StatusAccepted, ws)
	return nil
}

// forget removes a workspace and everything kept about it.
func (s *Server) forget(ctx context.Context, ws model.Workspace) error {
	if err := s.store.Delete(ctx, wsKey(ws.Project, ws.Spec.Name), 0); err != nil && !errors.Is(err, store.ErrNotFound) {
		return err
	}
	evs, _ := s.store.List(ctx, fmt.Sprintf("events/%s/%s/%s/", ws.Project, ws.Spec.Name, ws.ID))
	for _, kv := range evs {
		_ = s.store.Delete(ctx, kv.Key, 0)
	}
	_ = s.store.Delete(ctx, "console/"+ws.ID, 0)
	s.log.Info("workspace deleted", "project", ws.Project, "workspace", ws.Spec.Name, "id", ws.ID)
	return nil
}

func (s *Server) postWorkspaceStop(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	ws, err := s.stopWS(ctx, who(ctx).Project, r.PathValue("name"), "stopped by user")
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusAccepted, ws)
	return nil
}

// stopWS stops a workspace and ends its lease in the calendar.
func (s *Server) stopWS(ctx context.Context, project, name, reason string) (model.Workspace, error) {
	ws, err := s.stopRecord(ctx, project, name, reason)
	if err == nil {
		s.release(ctx, ws)
	}
	return ws, err
}

// stopRecord sets desired stopped in the store (the calendar is not told).
func (s *Server) stopRecord(ctx context.Context, project, name, reason string) (model.Workspace, error) {
	ws, err := s.mutateWS(ctx, project, name, func(ws *model.Workspace) error {
		switch {
		case ws.Desired == model.DesiredDeleted:
			return conflict(fmt.Sprintf("workspace %q is being deleted", name))
		case ws.Desired == model.DesiredStopped:
			return errSkip
		}
		ws.Desired = model.DesiredStopped
		ws.Status.Reason = reason
		switch ws.Status.State {
		case model.StatePending, model.StateQueued, model.StateScheduled:
			ws.Status.State = model.StateStopped
		case model.StateStarting, model.StateRunning:
			ws.Status.State = model.StateStopping
		}
		return nil
	})
	if err == nil {
		s.event(ctx, ws, "stopping", reason)
	}
	return ws, err
}

// postWorkspaceStart starts a stopped workspace again, on the host that
// holds its disk, for a new lease of its duration.
func (s *Server) postWorkspaceStart(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	p := who(ctx)
	name := r.PathValue("name")
	s.placeMu.Lock()
	defer s.placeMu.Unlock()
	cur, err := s.getWS(ctx, p.Project, name)
	if err != nil {
		return err
	}
	if cur.Desired == model.DesiredRunning {
		writeJSON(w, http.StatusOK, cur)
		return nil
	}
	if cur.Desired == model.DesiredDeleted {
		return conflict(fmt.Sprintf("workspace %q is being deleted", name))
	}
	if cur.Status.State == model.StateStopping {
		return conflict(fmt.Sprintf("workspace %q is still stopping; start it when it is Stopped", name))
	}
	// The disk lives on its host: only that host can start it (moving it is
	// migration's job). The new run is an immediate lease pinned there.
	c, err := s.calendarLocked(ctx)
	if err != nil {
		return err
	}
	imgs, err := s.images(ctx)
	if err != nil {
		return err
	}
	now := s.now()
	old := leaseID(cur)
	s.applyActions(ctx, cancelLease(c, old, now))
	next := cur
	next.Status.Lease = freshLeaseID(c, fmt.Sprintf("%s#%d", ref(cur), cur.Status.Generation+1), cur)
	l := leaseOf(next, imgs[cur.Spec.Image])
	l.Kind, l.Start, l.Deadline, l.Preempt = calendar.Immediate, time.Time{}, time.Time{}, ""
	if cur.Status.Node != "" {
		l.Members[0].Labels = map[string]string{hostLabel: cur.Status.Node}
	}
	if _, err := c.Submit(l, now); err != nil {
		var rf *calendar.Refusal
		if errors.As(err, &rf) {
			return &refusalError{rf}
		}
		return conflict(err.Error())
	}
	host := cur.Status.Node
	var rest []calendar.Action
	for _, a := range c.Advance(now) {
		if a.Lease == l.ID && a.Kind == calendar.ActStart {
			host = a.Hosts[0]
			continue
		}
		rest = append(rest, a)
	}
	ws := cur
	ws.Desired = model.DesiredRunning
	ws.Status.State = model.StatePending
	ws.Status.Node = host
	ws.Status.Lease = l.ID
	ws.Status.Reason = ""
	ws.Status.Generation++
	ws.Status.ExpiresAt = now.Add(ws.Spec.Duration.D())
	if v, ok := c.Get(l.ID); ok {
		ws.Status.ExpiresAt = v.End
	}
	ws.Status.StartedAt = now
	ws.Status.Guest = nil
	ws.Status.PID = 0
	ws.Status.Timings = model.Timings{Created: now, Scheduled: now}
	ws.Revision = 0
	b, _ := json.Marshal(ws)
	err = s.commitLocked(ctx, rest, []store.Op{{Key: wsKey(p.Project, name), Value: b, Rev: cur.Revision}})
	if errors.Is(err, store.ErrConflict) || errors.Is(err, store.ErrNotFound) {
		return conflict(fmt.Sprintf("workspace %q changed meanwhile; try again", name))
	}
	if err != nil {
		return err
	}
	if kv, err := s.store.Get(ctx, wsKey(p.Project, name)); err == nil {
		ws.Revision = kv.Revision
	}
	s.event(ctx, ws, "starting", fmt.Sprintf("start requested, new lease of %s", ws.Spec.Duration))
	writeJSON(w, http.StatusAccepted, ws)
	return nil
}

func (s *Server) getWorkspaceLogs(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	ws, err := s.getWS(ctx, who(ctx).Project, r.PathValue("name"))
	if err != nil {
		return err
	}
	kv, err := s.store.Get(ctx, "console/"+ws.ID)
	if errors.Is(err, store.ErrNotFound) {
		kv.Value = nil
	} else if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, err = w.Write(kv.Value)
	return err
}

func (s *Server) getWorkspaceEvents(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	ws, err := s.getWS(ctx, who(ctx).Project, r.PathValue("name"))
	if err != nil {
		return err
	}
	kvs, err := s.store.List(ctx, fmt.Sprintf("events/%s/%s/%s/", ws.Project, ws.Spec.Name, ws.ID))
	if err != nil {
		return err
	}
	out := api.EventList{Events: []model.Event{}}
	for _, kv := range kvs {
		var e model.Event
		if json.Unmarshal(kv.Value, &e) == nil {
			out.Events = append(out.Events, e)
		}
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) getImages(w http.ResponseWriter, r *http.Request) error {
	imgs, err := s.images(r.Context())
	if err != nil {
		return err
	}
	out := api.ImageList{Images: []model.Image{}}
	for _, img := range imgs {
		out.Images = append(out.Images, img)
	}
	sort.Slice(out.Images, func(i, j int) bool { return out.Images[i].Name < out.Images[j].Name })
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) postImages(w http.ResponseWriter, r *http.Request) error {
	body, err := readBody(r)
	if err != nil {
		return err
	}
	var img model.Image
	dec := json.NewDecoder(strings.NewReader(string(body)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&img); err != nil {
		return badRequest("image: " + err.Error())
	}
	if err := validImage(img); err != nil {
		return err
	}
	if err := s.RegisterImage(r.Context(), img); err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, img)
	return nil
}
