package client

import (
	"context"
	"net/url"

	"vgrid/api"
	"vgrid/internal/model"
)

// CreateNetwork creates an overlay network in the caller's project.
func (c *Client) CreateNetwork(ctx context.Context, req api.NetworksPost) (model.Network, error) {
	var n model.Network
	return n, c.Do(ctx, "POST", "/networks", req, &n)
}

// Networks lists the caller's project's networks.
func (c *Client) Networks(ctx context.Context) ([]model.Network, error) {
	var l api.NetworkList
	return l.Networks, c.Do(ctx, "GET", "/networks", nil, &l)
}

// GetNetwork returns one network.
func (c *Client) GetNetwork(ctx context.Context, name string) (model.Network, error) {
	var n model.Network
	return n, c.Do(ctx, "GET", "/networks/"+url.PathEscape(name), nil, &n)
}

// DeleteNetwork deletes a network that no member uses.
func (c *Client) DeleteNetwork(ctx context.Context, name string) error {
	return c.Do(ctx, "DELETE", "/networks/"+url.PathEscape(name), nil, nil)
}
