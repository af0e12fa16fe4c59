package client

import (
	"context"
	"net/url"

	"vgrid/api"
)

// Node returns one host with what is committed on it.
func (c *Client) Node(ctx context.Context, name string) (api.NodeInfo, error) {
	var n api.NodeInfo
	return n, c.Do(ctx, "GET", "/nodes/"+url.PathEscape(name), nil, &n)
}

// CordonNode cordons (on) or uncordons a host (admin).
func (c *Client) CordonNode(ctx context.Context, name string, on bool) (api.NodeInfo, error) {
	var n api.NodeInfo
	verb := "/uncordon"
	if on {
		verb = "/cordon"
	}
	return n, c.Do(ctx, "POST", "/nodes/"+url.PathEscape(name)+verb, nil, &n)
}

// DrainNode cordons a host and moves its workspaces elsewhere (admin).
func (c *Client) DrainNode(ctx context.Context, name string) (api.NodeDrained, error) {
	var out api.NodeDrained
	return out, c.Do(ctx, "POST", "/nodes/"+url.PathEscape(name)+"/drain", nil, &out)
}

// DeleteNode forgets a host that has no workspaces (admin).
func (c *Client) DeleteNode(ctx context.Context, name string) (api.NodeRevoked, error) {
	var out api.NodeRevoked
	return out, c.Do(ctx, "DELETE", "/nodes/"+url.PathEscape(name), nil, &out)
}
