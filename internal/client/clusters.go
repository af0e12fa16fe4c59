package client

import (
	"context"
	"net/url"

	"vgrid/api"
	"vgrid/internal/model"
)

// CreateCluster creates a virtual cluster from a spec (YAML or JSON).
func (c *Client) CreateCluster(ctx context.Context, spec []byte) (model.ClusterStatus, error) {
	var st model.ClusterStatus
	return st, c.Do(ctx, "POST", "/clusters", spec, &st)
}

// Clusters lists the caller's project's clusters.
func (c *Client) Clusters(ctx context.Context) ([]model.ClusterStatus, error) {
	var l api.ClusterList
	return l.Clusters, c.Do(ctx, "GET", "/clusters", nil, &l)
}

// GetCluster returns one cluster with its members' state.
func (c *Client) GetCluster(ctx context.Context, name string) (model.ClusterStatus, error) {
	var st model.ClusterStatus
	return st, c.Do(ctx, "GET", "/clusters/"+url.PathEscape(name), nil, &st)
}

// DeleteCluster deletes a cluster and its members.
func (c *Client) DeleteCluster(ctx context.Context, name string) (model.ClusterStatus, error) {
	var st model.ClusterStatus
	return st, c.Do(ctx, "DELETE", "/clusters/"+url.PathEscape(name), nil, &st)
}

// StopCluster stops every member of a cluster.
func (c *Client) StopCluster(ctx context.Context, name string) (model.ClusterStatus, error) {
	var st model.ClusterStatus
	return st, c.Do(ctx, "POST", "/clusters/"+url.PathEscape(name)+"/stop", nil, &st)
}

// StartCluster starts a stopped cluster again, for a new lease.
func (c *Client) StartCluster(ctx context.Context, name string) (model.ClusterStatus, error) {
	var st model.ClusterStatus
	return st, c.Do(ctx, "POST", "/clusters/"+url.PathEscape(name)+"/start", nil, &st)
}

// ScaleCluster sets the member count of roles.
func (c *Client) ScaleCluster(ctx context.Context, name string, counts map[string]int) (model.ClusterStatus, error) {
	var st model.ClusterStatus
	return st, c.Do(ctx, "POST", "/clusters/"+url.PathEscape(name)+"/scale", api.ClusterScale{Counts: counts}, &st)
}

// ExportCluster returns the spec a cluster was created from, as YAML.
func (c *Client) ExportCluster(ctx context.Context, name string) ([]byte, error) {
	var b []byte
	return b, c.Do(ctx, "GET", "/clusters/"+url.PathEscape(name)+"/export", nil, &b)
}
