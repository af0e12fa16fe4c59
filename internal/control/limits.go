package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"vgrid/api"
	"vgrid/internal/model"
	"vgrid/internal/store"
)

// DefaultMaxWorkspaces is the site default of a project's workspace
// objects (running or not): one project must not fill the store and make
// every list slow for all.
const DefaultMaxWorkspaces = 1000

// Limits bound the objects of each project. Zero fields take the defaults.
type Limits struct {
	// Workspaces is the most workspace objects a project may have.
	Workspaces int `json:"workspaces,omitempty"`
	// VolumeBytes is the most bytes of network volumes a project may
	// have, all its volumes' sizes together (default DefaultVolumeBytes).
	VolumeBytes model.ByteSize `json:"volume_bytes,omitempty"`
}

// MaxLimit bounds what an admin may set a project's limit to.
const MaxLimit = 1_000_000

// projectRecord is the part of a stored project that limits read: its own
// limits, which override the site's.
type projectRecord struct {
	Limits *Limits `json:"limits,omitempty"`
}

// workspaceLimit is project's limit on workspace objects: its own, else
// the site's, else DefaultMaxWorkspaces.
func (ctl *Controller) workspaceLimit(ctx context.Context, project string) (int, error) {
	n := ctl.cfg.Limits.Workspaces
	if n <= 0 {
		n = DefaultMaxWorkspaces
	}
	kv, err := ctl.store.Get(ctx, "projects/"+project)
	if errors.Is(err, store.ErrNotFound) {
		return n, nil
	}
	if err != nil {
		return 0, err
	}
	var p projectRecord
	if err := json.Unmarshal(kv.Value, &p); err == nil && p.Limits != nil && p.Limits.Workspaces > 0 {
		n = p.Limits.Workspaces
	}
	return n, nil
}

// checkWorkspaceLimit refuses a new workspace of project at its limit.
// mu must be held, so that two creates cannot both take the last place.
func (ctl *Controller) checkWorkspaceLimit(ctx context.Context, project string) error {
	limit, err := ctl.workspaceLimit(ctx, project)
	if err != nil {
		return err
	}
	kvs, _, err := ctl.store.ListPage(ctx, wsKey(project, ""), "", limit)
	if err != nil {
		return err
	}
	if len(kvs) >= limit {
		return &Error{Kind: KindLimit, Msg: fmt.Sprintf("project %s has %d workspaces, its limit: delete some, or ask an admin to raise it (vgrid project limits %s --workspaces N)", project, len(kvs), project)}
	}
	return nil
}

// SetProjectLimits sets a project's own limits (zero fields: the site's).
func (ctl *Controller) SetProjectLimits(ctx context.Context, project string, l Limits) (Limits, error) {
	if l.Workspaces < 0 || l.Workspaces > MaxLimit {
		return l, invalid("invalid limits", api.FieldError{Field: "workspaces", Reason: fmt.Sprintf("%d: want 0 (the site default) to %d", l.Workspaces, MaxLimit)})
	}
	if l.VolumeBytes < 0 {
		return l, invalid("invalid limits", api.FieldError{Field: "volume_bytes", Reason: fmt.Sprintf("%s: want 0 (the site default) or more", l.VolumeBytes)})
	}
	for attempt := 0; ; attempt++ {
		kv, err := ctl.store.Get(ctx, "projects/"+project)
		if errors.Is(err, store.ErrNotFound) {
			return l, notFound(fmt.Sprintf("project %q", project))
		}
		if err != nil {
			return l, err
		}
		var p map[string]any
		if err := json.Unmarshal(kv.Value, &p); err != nil {
			return l, fmt.Errorf("decode %s: %w", kv.Key, err)
		}
		p["limits"] = l
		b, _ := json.Marshal(p)
		_, err = ctl.store.Update(ctx, kv.Key, b, kv.Revision)
		if errors.Is(err, store.ErrConflict) && attempt < 10 {
			continue
		}
		return l, err
	}
}
