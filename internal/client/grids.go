package client

import (
	"context"
	"net/url"

	"vgrid/api"
)

// Plan evaluates a grid against the live calendar without booking
// anything.
func (c *Client) Plan(ctx context.Context, req api.GridsPost) (api.Plan, error) {
	var p api.Plan
	return p, c.Do(ctx, "POST", "/plan", req, &p)
}

// CreateGrid makes a grid, everything or nothing (req.Plan: exactly that
// plan).
func (c *Client) CreateGrid(ctx context.Context, req api.GridsPost) (api.Grid, error) {
	var g api.Grid
	return g, c.Do(ctx, "POST", "/grids", req, &g)
}

// Grids lists the caller's project's grids.
func (c *Client) Grids(ctx context.Context) ([]api.Grid, error) {
	var l api.GridList
	return l.Grids, c.Do(ctx, "GET", "/grids", nil, &l)
}

// GetGrid returns one grid.
func (c *Client) GetGrid(ctx context.Context, name string) (api.Grid, error) {
	var g api.Grid
	return g, c.Do(ctx, "GET", "/grids/"+url.PathEscape(name), nil, &g)
}

// DeleteGrid deletes a grid and everything it made.
func (c *Client) DeleteGrid(ctx context.Context, name string) (api.Grid, error) {
	var g api.Grid
	return g, c.Do(ctx, "DELETE", "/grids/"+url.PathEscape(name), nil, &g)
}

// ExportGrid returns the grid's file, parameters at the values it was
// made with.
func (c *Client) ExportGrid(ctx context.Context, name string) ([]byte, error) {
	var b []byte
	return b, c.Do(ctx, "GET", "/grids/"+url.PathEscape(name)+"/export", nil, &b)
}
