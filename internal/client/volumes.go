package client

import (
	"context"
	"net/url"

	"vgrid/api"
	"vgrid/internal/model"
)

// CreateVolume creates a network volume in the caller's project.
func (c *Client) CreateVolume(ctx context.Context, req api.VolumesPost) (model.Volume, error) {
	var v model.Volume
	return v, c.Do(ctx, "POST", "/volumes", req, &v)
}

// Volumes lists the caller's project's volumes.
func (c *Client) Volumes(ctx context.Context) ([]model.Volume, error) {
	var l api.VolumeList
	return l.Volumes, c.Do(ctx, "GET", "/volumes", nil, &l)
}

// GetVolume returns one volume.
func (c *Client) GetVolume(ctx context.Context, name string) (model.Volume, error) {
	var v model.Volume
	return v, c.Do(ctx, "GET", "/volumes/"+url.PathEscape(name), nil, &v)
}

// DeleteVolume asks for a volume's removal; it returns the volume, being
// deleted.
func (c *Client) DeleteVolume(ctx context.Context, name string) (model.Volume, error) {
	var v model.Volume
	return v, c.Do(ctx, "DELETE", "/volumes/"+url.PathEscape(name), nil, &v)
}

// ResizeVolume grows a volume to size.
func (c *Client) ResizeVolume(ctx context.Context, name string, size model.ByteSize) (model.Volume, error) {
	var v model.Volume
	return v, c.Do(ctx, "POST", "/volumes/"+url.PathEscape(name)+"/resize", api.VolumeResize{Size: size}, &v)
}

// SnapshotVolume makes volume to with the content of volume name.
func (c *Client) SnapshotVolume(ctx context.Context, name, to string) (model.Volume, error) {
	var v model.Volume
	return v, c.Do(ctx, "POST", "/volumes/"+url.PathEscape(name)+"/snapshot", api.VolumeSnapshot{To: to}, &v)
}

// ReportVolume is a storage host's report on a volume it serves.
func (c *Client) ReportVolume(ctx context.Context, node, project, name string, rep api.VolumeReport) error {
	return c.Do(ctx, "POST", "/nodes/"+url.PathEscape(node)+"/volumes/"+url.PathEscape(project)+"/"+url.PathEscape(name), rep, nil)
}

// SetStorage tells the control plane where node's agent serves volumes
// (host:port; empty: none).
func (c *Client) SetStorage(ctx context.Context, node, address string) error {
	return c.Do(ctx, "PUT", "/nodes/"+url.PathEscape(node)+"/storage", api.StorageHost{Address: address}, nil)
}
