package control

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

// EnsureProject creates a project record unless it exists.
func (ctl *Controller) EnsureProject(ctx context.Context, name string) error {
	b, _ := json.Marshal(map[string]any{"name": name, "created_at": ctl.now()})
	_, err := ctl.store.Create(ctx, "projects/"+name, b)
	if errors.Is(err, store.ErrExists) {
		return nil
	}
	return err
}

func (ctl *Controller) getWS(ctx context.Context, project, name string) (model.Workspace, error) {
	kv, err := ctl.store.Get(ctx, wsKey(project, name))
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

func (ctl *Controller) listWS(ctx context.Context, prefix string) ([]model.Workspace, error) {
	kvs, err := ctl.store.List(ctx, prefix)
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
func (ctl *Controller) mutateWS(ctx context.Context, project, name string, fn func(*model.Workspace) error) (model.Workspace, error) {
	for attempt := 0; ; attempt++ {
		w, err := ctl.getWS(ctx, project, name)
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
		nrev, err := ctl.store.Update(ctx, wsKey(project, name), b, rev)
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

// event appends to a workspace's history.
func (ctl *Controller) event(ctx context.Context, w model.Workspace, typ, msg string) {
	e := model.Event{Time: ctl.now(), Type: typ, Message: msg}
	b, _ := json.Marshal(e)
	key := fmt.Sprintf("events/%s/%s/%s/%020d", w.Project, w.Spec.Name, w.ID, e.Time.UnixNano())
	if _, err := ctl.store.Update(ctx, key, b, 0); err != nil {
		ctl.log.Warn("record event", "workspace", w.Spec.Name, "err", err)
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

func (ctl *Controller) nodes(ctx context.Context) ([]model.Node, error) {
	kvs, err := ctl.store.List(ctx, "nodes/")
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

// resourcesOf is what a workspace holds on its host.
func resourcesOf(sp model.WorkspaceSpec) model.Resources {
	return sp.Quantum.Resources()
}

func ref(w model.Workspace) string { return w.Project + "/" + w.Spec.Name }

func trimPrefix(key, prefix string) string { return strings.TrimPrefix(key, prefix) }

func since(t0, t time.Time) string { return t.Sub(t0).Round(time.Millisecond).String() }
