package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"vgrid/internal/model"
	"vgrid/internal/sched"
	"vgrid/internal/store"
)

// Key layout in the store:
//
//	projects/<project>                     {name, created_at}
//	tokens/<sha256 of secret>              Token
//	nodes/<node>                           model.Node
//	images/<image>                         model.Image
//	ws/<project>/<name>                    model.Workspace
//	events/<project>/<name>/<id>/<seq>     model.Event
//	console/<id>                           tail of the serial console
func wsKey(project, name string) string { return "ws/" + project + "/" + name }

func newID() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return "w" + hex.EncodeToString(b)
}

func (s *Server) ensureProject(ctx context.Context, name string) error {
	b, _ := json.Marshal(map[string]any{"name": name, "created_at": s.now()})
	_, err := s.store.Create(ctx, "projects/"+name, b)
	if errors.Is(err, store.ErrExists) {
		return nil
	}
	return err
}

func (s *Server) getWS(ctx context.Context, project, name string) (model.Workspace, error) {
	kv, err := s.store.Get(ctx, wsKey(project, name))
	if errors.Is(err, store.ErrNotFound) {
		// The same answer whether it does not exist or belongs to another
		// project: a caller learns nothing about other projects.
		return model.Workspace{}, notFound(fmt.Sprintf("workspace %q", name))
	}
	if err != nil {
		return model.Workspace{}, err
	}
	return decodeWS(kv)
}

func decodeWS(kv store.KV) (model.Workspace, error) {
	var w model.Workspace
	if err := json.Unmarshal(kv.Value, &w); err != nil {
		return w, fmt.Errorf("decode %s: %w", kv.Key, err)
	}
	w.Revision = kv.Revision
	return w, nil
}

func (s *Server) listWS(ctx context.Context, prefix string) ([]model.Workspace, error) {
	kvs, err := s.store.List(ctx, prefix)
	if err != nil {
		return nil, err
	}
	out := make([]model.Workspace, 0, len(kvs))
	for _, kv := range kvs {
		w, err := decodeWS(kv)
		if err != nil {
			return nil, err
		}
		out = append(out, w)
	}
	return out, nil
}

// mutateWS applies fn to the stored workspace with optimistic concurrency,
// retrying on conflicts. fn may return errSkip to write nothing.
func (s *Server) mutateWS(ctx context.Context, project, name string, fn func(*model.Workspace) error) (model.Workspace, error) {
	for attempt := 0; ; attempt++ {
		w, err := s.getWS(ctx, project, name)
		if err != nil {
			return w, err
		}
		if err := fn(&w); err != nil {
			if errors.Is(err, errSkip) {
				return w, nil
			}
			return w, err
		}
		rev := w.Revision
		w.Revision = 0
		b, _ := json.Marshal(w)
		nrev, err := s.store.Update(ctx, wsKey(project, name), b, rev)
		if errors.Is(err, store.ErrConflict) && attempt < 50 {
			continue
		}
		if err != nil {
			return w, err
		}
		w.Revision = nrev
		return w, nil
	}
}

var errSkip = errors.New("skip")

// event appends to a workspace's history.
func (s *Server) event(ctx context.Context, w model.Workspace, typ, msg string) {
	e := model.Event{Time: s.now(), Type: typ, Message: msg}
	b, _ := json.Marshal(e)
	key := fmt.Sprintf("events/%s/%s/%s/%020d", w.Project, w.Spec.Name, w.ID, e.Time.UnixNano())
	if _, err := s.store.Update(ctx, key, b, 0); err != nil {
		s.log.Warn("record event", "workspace", w.Spec.Name, "err", err)
	}
}

// holds reports whether a workspace in this state holds resources on its host.
func holds(w model.Workspace) bool {
	if w.Status.Node == "" {
		return false
	}
	switch w.Status.State {
	case model.StateStopped, model.StateFailed, model.StateSuspended:
		return false
	}
	return true
}

func (s *Server) nodes(ctx context.Context) ([]model.Node, error) {
	kvs, err := s.store.List(ctx, "nodes/")
	if err != nil {
		return nil, err
	}
	out := make([]model.Node, 0, len(kvs))
	for _, kv := range kvs {
		var n model.Node
		if err := json.Unmarshal(kv.Value, &n); err != nil {
			return nil, fmt.Errorf("decode %s: %w", kv.Key, err)
		}
		out = append(out, n)
	}
	return out, nil
}

func (s *Server) nodeReady(n model.Node) bool {
	return s.now().Sub(n.LastHeartbeat) < s.cfg.NodeTimeout
}

// snapshot builds the scheduler's view: hosts with their commitments.
// skip names a workspace (project/name) whose own commitment is left out.
func (s *Server) snapshot(ctx context.Context, skip string) ([]sched.Host, error) {
	nodes, err := s.nodes(ctx)
	if err != nil {
		return nil, err
	}
	all, err := s.listWS(ctx, "ws/")
	if err != nil {
		return nil, err
	}
	idx := map[string]int{}
	hosts := make([]sched.Host, len(nodes))
	for i, n := range nodes {
		hosts[i] = sched.Host{Name: n.Name, Capacity: n.Capacity, Labels: n.Labels, Ready: s.nodeReady(n)}
		idx[n.Name] = i
	}
	for _, w := range all {
		ref := w.Project + "/" + w.Spec.Name
		if ref == skip || !holds(w) {
			continue
		}
		i, ok := idx[w.Status.Node]
		if !ok {
			continue
		}
		until := w.Status.ExpiresAt
		if until.IsZero() {
			until = w.CreatedAt.Add(w.Spec.Duration.D())
		}
		hosts[i].Commitments = append(hosts[i].Commitments, sched.Commitment{
			Workspace: ref, Resources: resourcesOf(w.Spec), Until: until,
		})
	}
	return hosts, nil
}

// resourcesOf is what a workspace holds on its host.
func resourcesOf(sp model.WorkspaceSpec) model.Resources {
	return sp.Quantum.Resources()
}

func (s *Server) images(ctx context.Context) (map[string]model.Image, error) {
	kvs, err := s.store.List(ctx, "images/")
	if err != nil {
		return nil, err
	}
	out := map[string]model.Image{}
	for _, kv := range kvs {
		var img model.Image
		if err := json.Unmarshal(kv.Value, &img); err != nil {
			return nil, fmt.Errorf("decode %s: %w", kv.Key, err)
		}
		out[img.Name] = img
	}
	return out, nil
}

func ref(w model.Workspace) string { return w.Project + "/" + w.Spec.Name }

func trimPrefix(key, prefix string) string { return strings.TrimPrefix(key, prefix) }

func since(t0, t time.Time) string { return t.Sub(t0).Round(time.Millisecond).String() }
