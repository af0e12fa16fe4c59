package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"regexp"
	"sort"
	"strconv"
	"time"

	"vgrid/api"
	"vgrid/internal/model"
	"vgrid/internal/store"
)

var nameRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9.-]{0,61}[a-z0-9])?$`)

// postNodes registers a host. A join token gets a new node token back; the
// node record is created or refreshed.
func (s *Server) postNodes(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	body, err := readBody(r)
	if err != nil {
		return err
	}
	var req api.NodesPost
	if err := json.Unmarshal(body, &req); err != nil {
		return badRequest("node: " + err.Error())
	}
	n := req.Node
	if !nameRE.MatchString(n.Name) {
		return badRequest("invalid node", api.FieldError{Field: "node.name", Reason: "must be a lower-case host name"})
	}
	if n.Capacity.MilliCPU <= 0 || n.Capacity.Memory <= 0 {
		return badRequest("invalid node", api.FieldError{Field: "node.capacity", Reason: "cpu and memory must be positive"})
	}
	now := s.now()
	n.RegisteredAt, n.LastHeartbeat = now, now
	b, _ := json.Marshal(n)
	if _, err := s.store.Update(ctx, "nodes/"+n.Name, b, 0); err != nil {
		return err
	}
	s.placeMu.Lock()
	if s.cal != nil && !s.calHosts[n.Name] {
		// A host the calendar does not know yet. (A known host's new
		// capacity is not taken into the calendar until a restart.)
		if err := s.cal.AddHost(calHost(n), now); err != nil {
			s.log.Warn("calendar: add host", "node", n.Name, "err", err)
		} else {
			s.calHosts[n.Name] = true
		}
	}
	s.placeMu.Unlock()
	tok, err := s.createToken(ctx, Token{Project: who(ctx).Project, Role: RoleNode, Node: n.Name})
	if err != nil {
		return err
	}
	s.log.Info("node registered", "node", n.Name, "cpu", n.Capacity.MilliCPU, "memory", n.Capacity.Memory.Human(), "accel", n.Accel)
	writeJSON(w, http.StatusCreated, api.NodeRegistered{Node: n, Token: tok})
	return nil
}

// nodeOf checks that a node token speaks for the node in the path.
func nodeOf(r *http.Request) (string, error) {
	n := r.PathValue("node")
	if who(r.Context()).Node != n {
		return "", fmt.Errorf("%w: this token belongs to node %q", errForbidden, who(r.Context()).Node)
	}
	return n, nil
}

func (s *Server) putNodeHeartbeat(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	name, err := nodeOf(r)
	if err != nil {
		return err
	}
	body, err := readBody(r)
	if err != nil {
		return err
	}
	var req api.NodesPost
	if err := json.Unmarshal(body, &req); err != nil {
		return badRequest("node: " + err.Error())
	}
	kv, err := s.store.Get(ctx, "nodes/"+name)
	if err != nil {
		return err
	}
	var n model.Node
	_ = json.Unmarshal(kv.Value, &n)
	if req.Node.Capacity.MilliCPU > 0 {
		n.Capacity = req.Node.Capacity
	}
	if req.Node.Labels != nil {
		n.Labels = req.Node.Labels
	}
	n.LastHeartbeat = s.now()
	b, _ := json.Marshal(n)
	if _, err := s.store.Update(ctx, "nodes/"+name, b, 0); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// getNodeAssignments returns the workspaces placed on the node. With
// ?after=REV it waits (up to ?wait=, default 30 s) until something under
// ws/ changed after REV, so agents learn of new work at once.
func (s *Server) getNodeAssignments(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	name, err := nodeOf(r)
	if err != nil {
		return err
	}
	if a := r.URL.Query().Get("after"); a != "" {
		after, err := strconv.ParseInt(a, 10, 64)
		if err != nil {
			return badRequest("after: not a revision")
		}
		wait := 30 * time.Second
		if ws := r.URL.Query().Get("wait"); ws != "" {
			if wait, err = time.ParseDuration(ws); err != nil || wait < 0 || wait > 5*time.Minute {
				return badRequest("wait: want a duration up to 5m")
			}
		}
		if err := s.waitChange(r, "ws/", after, wait); err != nil {
			return err
		}
	}
	rev, err := s.store.Revision(ctx)
	if err != nil {
		return err
	}
	all, err := s.listWS(ctx, "ws/")
	if err != nil {
		return err
	}
	imgs, err := s.images(ctx)
	if err != nil {
		return err
	}
	out := api.Assignments{Revision: rev, Workspaces: []model.Workspace{}}
	used := map[string]bool{}
	for _, ws := range all {
		if ws.Status.Node == name {
			out.Workspaces = append(out.Workspaces, ws)
			if !used[ws.Spec.Image] {
				used[ws.Spec.Image] = true
				if img, ok := imgs[ws.Spec.Image]; ok {
					out.Images = append(out.Images, img)
				}
			}
		}
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// waitChange blocks until a key under prefix changes after rev, the wait
// passes, or the client goes away.
func (s *Server) waitChange(r *http.Request, prefix string, rev int64, wait time.Duration) error {
	ctx := r.Context()
	cur, err := s.store.Revision(ctx)
	if err != nil {
		return err
	}
	wctx, cancel := contextWithTimeout(ctx, wait)
	defer cancel()
	from := rev
	if from > cur {
		from = cur
	}
	ch, err := s.store.Watch(wctx, prefix, from)
	if err != nil {
		// Too old to replay: answer at once with the current state.
		return nil
	}
	for {
		select {
		case ev, ok := <-ch:
			if !ok || ev.KV.Revision > rev {
				return nil
			}
		case <-wctx.Done():
			return nil
		}
	}
}

// putNodeWorkspaceStatus merges an agent's report into the workspace.
func (s *Server) putNodeWorkspaceStatus(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	node, err := nodeOf(r)
	if err != nil {
		return err
	}
	body, err := readBody(r)
	if err != nil {
		return err
	}
	var rep api.AgentReport
	if err := json.Unmarshal(body, &rep); err != nil {
		return badRequest("report: " + err.Error())
	}
	project, name := r.PathValue("project"), r.PathValue("name")
	var prev model.State
	ws, err := s.mutateWS(ctx, project, name, func(ws *model.Workspace) error {
		if ws.ID != rep.ID || ws.Status.Node != node {
			return &httpError{http.StatusGone, api.CodeNotFound, "no such workspace on this node", nil}
		}
		if rep.Generation < ws.Status.Generation {
			return errSkip // a report about an earlier start
		}
		prev = ws.Status.State
		st := &ws.Status
		next := rep.State
		// The user's wish wins over a report that predates it: a stopping
		// workspace does not flip back to Running.
		// (A workspace being suspended keeps running until it is saved.)
		if ws.Desired != model.DesiredRunning && ws.Desired != model.DesiredSuspended && (next == model.StateRunning || next == model.StateStarting) {
			next = model.StateStopping
		}
		if ws.Desired == model.DesiredRunning && next == model.StateStopped && prev != model.StateStopped {
			// It stopped without being asked: the guest powered off or crashed.
			ws.Desired = model.DesiredStopped
		}
		st.State = next
		if rep.Reason != "" || next == model.StateRunning {
			st.Reason = rep.Reason
		}
		st.PID, st.Accel, st.Cgroup = rep.PID, rep.Accel, rep.Cgroup
		if rep.CPUSeconds > 0 {
			st.CPUSeconds = rep.CPUSeconds
		}
		if rep.Guest != nil {
			st.Guest = rep.Guest
		}
		if !rep.StartedAt.IsZero() && (st.StartedAt.IsZero() || st.Timings.ProcessStarted.IsZero()) {
			st.StartedAt = rep.StartedAt // the lease's end (ExpiresAt) is the calendar's
		}
		t := &st.Timings
		setOnce(&t.AgentReceived, rep.AgentReceived)
		setOnce(&t.ProcessStarted, rep.ProcessStarted)
		setOnce(&t.GuestReady, rep.GuestReady)
		if !rep.Suspended.IsZero() {
			t.Suspended, t.SuspendTook, t.SuspendBytes = rep.Suspended, rep.SuspendTook, rep.SuspendBytes
		}
		if !rep.Resumed.IsZero() {
			t.Resumed, t.ResumeTook = rep.Resumed, rep.ResumeTook
		}
		if next == prev && rep.Guest == nil {
			return nil
		}
		return nil
	})
	if err != nil {
		return err
	}
	if ws.Status.State != prev {
		msg := string(ws.Status.State)
		switch ws.Status.State {
		case model.StateStarting:
			msg = fmt.Sprintf("QEMU pid %d started (%s), %s after the request", ws.Status.PID, ws.Status.Accel,
				since(ws.Status.Timings.Created, ws.Status.Timings.ProcessStarted))
		case model.StateRunning:
			if g := ws.Status.Guest; g != nil {
				msg = fmt.Sprintf("guest ready: %d vCPU, %d MiB, addresses %v", g.VCPUs, g.MemoryMiB, g.Addresses)
			}
		case model.StateStopped, model.StateFailed:
			if ws.Status.Reason != "" {
				msg += ": " + ws.Status.Reason
			}
		case model.StateSuspended:
			t := ws.Status.Timings
			msg = fmt.Sprintf("memory saved (%s) in %s", model.ByteSize(t.SuspendBytes), t.SuspendTook)
		}
		s.event(ctx, ws, lower(ws.Status.State), msg)
		if ws.Status.State == model.StateStopped || ws.Status.State == model.StateFailed {
			// It ended (by itself, or as asked): its slots are free.
			s.releaseIfRunning(ctx, ws)
		}
	}
	writeJSON(w, http.StatusOK, ws)
	return nil
}

func setOnce(dst *time.Time, v time.Time) {
	if dst.IsZero() && !v.IsZero() {
		*dst = v
	}
}

func lower(s model.State) string {
	b := []byte(s)
	if len(b) > 0 && b[0] >= 'A' && b[0] <= 'Z' {
		b[0] += 'a' - 'A'
	}
	return string(b)
}

// maxConsole bounds the stored console tail.
const maxConsole = 64 << 10

func (s *Server) putNodeWorkspaceConsole(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	node, err := nodeOf(r)
	if err != nil {
		return err
	}
	ws, err := s.getWS(ctx, r.PathValue("project"), r.PathValue("name"))
	if err != nil {
		return err
	}
	if ws.Status.Node != node || ws.ID != r.URL.Query().Get("id") {
		return &httpError{http.StatusGone, api.CodeNotFound, "no such workspace on this node", nil}
	}
	body, err := readBody(r)
	if err != nil {
		return err
	}
	if len(body) > maxConsole {
		body = body[len(body)-maxConsole:]
	}
	if _, err := s.store.Update(ctx, "console/"+ws.ID, body, 0); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// deleteNodeWorkspace is the agent saying it has torn a workspace down.
func (s *Server) deleteNodeWorkspace(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	node, err := nodeOf(r)
	if err != nil {
		return err
	}
	ws, err := s.getWS(ctx, r.PathValue("project"), r.PathValue("name"))
	if err != nil {
		return err
	}
	if ws.Status.Node != node || ws.ID != r.URL.Query().Get("id") {
		return &httpError{http.StatusGone, api.CodeNotFound, "no such workspace on this node", nil}
	}
	if ws.Desired != model.DesiredDeleted {
		return conflict("workspace is not being deleted")
	}
	if err := s.forget(ctx, ws); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) getNodes(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	nodes, err := s.nodes(ctx)
	if err != nil {
		return err
	}
	all, err := s.listWS(ctx, "ws/")
	if err != nil {
		return err
	}
	out := api.NodeList{Nodes: []api.NodeInfo{}}
	for _, n := range nodes {
		ni := api.NodeInfo{Node: n, Ready: s.nodeReady(n)}
		for _, ws := range all {
			if ws.Status.Node == n.Name && holds(ws) {
				ni.Allocated = ni.Allocated.Add(resourcesOf(ws.Spec))
				ni.Workspaces++
			}
		}
		out.Nodes = append(out.Nodes, ni)
	}
	sort.Slice(out.Nodes, func(i, j int) bool { return out.Nodes[i].Name < out.Nodes[j].Name })
	writeJSON(w, http.StatusOK, out)
	return nil
}

// getImageFile streams one file of an image to an agent's cache.
func (s *Server) getImageFile(w http.ResponseWriter, r *http.Request) error {
	imgs, err := s.images(r.Context())
	if err != nil {
		return err
	}
	img, ok := imgs[r.PathValue("name")]
	if !ok {
		return notFound(fmt.Sprintf("image %q", r.PathValue("name")))
	}
	var f *model.ImageFile
	switch r.PathValue("file") {
	case "disk":
		f = &img.Disk
	case "kernel":
		f = img.Kernel
	case "initrd":
		f = img.Initrd
	}
	if f == nil {
		return notFound(fmt.Sprintf("file %q of image %s", r.PathValue("file"), img.Name))
	}
	fh, err := os.Open(f.Path)
	if err != nil {
		return fmt.Errorf("image %s: %w", img.Name, err)
	}
	defer fh.Close()
	st, err := fh.Stat()
	if err != nil {
		return err
	}
	w.Header().Set("X-Vgrid-Sha256", f.SHA256)
	http.ServeContent(w, r, "", st.ModTime(), fh)
	return nil
}

func validImage(img model.Image) error {
	var fe []api.FieldError
	if !nameRE.MatchString(img.Name) {
		fe = append(fe, api.FieldError{Field: "name", Reason: "must be a lower-case name"})
	}
	if img.Boot != "direct" && img.Boot != "firmware" {
		fe = append(fe, api.FieldError{Field: "boot", Reason: `want "direct" or "firmware"`})
	}
	if img.Boot == "direct" && img.Kernel == nil {
		fe = append(fe, api.FieldError{Field: "kernel", Reason: "direct boot needs a kernel"})
	}
	if img.DiskFormat != "raw" && img.DiskFormat != "qcow2" {
		fe = append(fe, api.FieldError{Field: "disk_format", Reason: `want "raw" or "qcow2"`})
	}
	for _, f := range []struct {
		name string
		f    *model.ImageFile
	}{{"disk", &img.Disk}, {"kernel", img.Kernel}, {"initrd", img.Initrd}} {
		if f.f == nil {
			continue
		}
		if _, err := os.Stat(f.f.Path); err != nil {
			fe = append(fe, api.FieldError{Field: f.name + ".path", Reason: "not readable on the control plane: " + err.Error()})
		}
		if len(f.f.SHA256) != 64 {
			fe = append(fe, api.FieldError{Field: f.name + ".sha256", Reason: "want 64 hex digits"})
		}
	}
	if len(fe) > 0 {
		return badRequest("invalid image", fe...)
	}
	return nil
}

func (s *Server) postProjects(w http.ResponseWriter, r *http.Request) error {
	body, err := readBody(r)
	if err != nil {
		return err
	}
	var req api.ProjectsPost
	if err := json.Unmarshal(body, &req); err != nil {
		return badRequest("project: " + err.Error())
	}
	if !nameRE.MatchString(req.Name) {
		return badRequest("invalid project", api.FieldError{Field: "name", Reason: "must be a lower-case name"})
	}
	ctx := r.Context()
	if _, err := s.store.Get(ctx, "projects/"+req.Name); err == nil {
		return conflict(fmt.Sprintf("project %q exists", req.Name))
	} else if !errors.Is(err, store.ErrNotFound) {
		return err
	}
	tok, err := s.CreateToken(ctx, req.Name, RoleUser)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, api.TokenCreated{Project: req.Name, Role: RoleUser, Token: tok})
	return nil
}

func (s *Server) getProjects(w http.ResponseWriter, r *http.Request) error {
	kvs, err := s.store.List(r.Context(), "projects/")
	if err != nil {
		return err
	}
	out := []json.RawMessage{}
	for _, kv := range kvs {
		out = append(out, kv.Value)
	}
	writeJSON(w, http.StatusOK, map[string]any{"projects": out})
	return nil
}

func (s *Server) postTokens(w http.ResponseWriter, r *http.Request) error {
	body, err := readBody(r)
	if err != nil {
		return err
	}
	var req api.TokensPost
	if err := json.Unmarshal(body, &req); err != nil {
		return badRequest("token: " + err.Error())
	}
	if req.Role == "" {
		req.Role = RoleUser
	}
	if req.Role == RoleNode {
		return badRequest("role: node tokens come from registering a host with a join token")
	}
	if !nameRE.MatchString(req.Project) {
		return badRequest("invalid token request", api.FieldError{Field: "project", Reason: "must be a lower-case name"})
	}
	tok, err := s.CreateToken(r.Context(), req.Project, req.Role)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, api.TokenCreated{Project: req.Project, Role: req.Role, Token: tok})
	return nil
}
