package client

import (
	"context"
	"net/url"

	"vgrid/api"
	"vgrid/internal/model"
)

// MigrateWorkspace moves a running workspace live to host req.To (empty:
// the calendar chooses). It returns once the migration is recorded.
func (c *Client) MigrateWorkspace(ctx context.Context, name string, req api.MigrateRequest) (model.Workspace, error) {
	var w model.Workspace
	return w, c.Do(ctx, "POST", "/workspaces/"+url.PathEscape(name)+"/migrate", req, &w)
}

// CancelMigration stops the workspace's migration under way.
func (c *Client) CancelMigration(ctx context.Context, name string) (model.Workspace, error) {
	var w model.Workspace
	return w, c.Do(ctx, "POST", "/workspaces/"+url.PathEscape(name)+"/migrate", api.MigrateRequest{Cancel: true}, &w)
}

// ResizeWorkspace changes the workspace's quantum (the fields req sets).
func (c *Client) ResizeWorkspace(ctx context.Context, name string, req api.ResizeRequest) (model.Workspace, error) {
	var w model.Workspace
	return w, c.Do(ctx, "POST", "/workspaces/"+url.PathEscape(name)+"/resize", req, &w)
}

// MigrationReport tells the control plane how a live migration of w goes
// on this host (an agent's call).
func (c *Client) MigrationReport(ctx context.Context, node string, w model.Workspace, r api.MigrationReport) error {
	return c.Do(ctx, "POST", "/nodes/"+url.PathEscape(node)+"/migrations/"+url.PathEscape(w.Project)+"/"+url.PathEscape(w.Spec.Name), r, nil)
}
