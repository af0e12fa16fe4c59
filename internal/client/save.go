package client

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"vgrid/api"
	"vgrid/internal/model"
)

// SaveWorkspace asks for the workspace's disk to be saved as a new image
// (req.Image); it returns the save recorded, pending: the workspace's
// host carries it out (WaitSave).
func (c *Client) SaveWorkspace(ctx context.Context, name string, req api.SaveRequest) (model.Save, error) {
	var s model.Save
	return s, c.Do(ctx, "POST", "/workspaces/"+url.PathEscape(name)+"/save", req, &s)
}

// Saves lists the workspace's saves, newest first.
func (c *Client) Saves(ctx context.Context, name string) ([]model.Save, error) {
	var l api.SaveList
	return l.Saves, c.Do(ctx, "GET", "/workspaces/"+url.PathEscape(name)+"/saves", nil, &l)
}

// WaitSave polls the workspace's save id every interval (0: a second)
// until it has ended, calling seen (may be nil) with each state read. It
// returns the ended save (done or failed: check State), or ctx's error.
func (c *Client) WaitSave(ctx context.Context, name, id string, interval time.Duration, seen func(model.Save)) (model.Save, error) {
	if interval <= 0 {
		interval = time.Second
	}
	for {
		saves, err := c.Saves(ctx, name)
		if err != nil {
			return model.Save{}, err
		}
		found := false
		for _, s := range saves {
			if s.ID != id {
				continue
			}
			found = true
			if seen != nil {
				seen(s)
			}
			if s.State.Finished() {
				return s, nil
			}
		}
		if !found {
			return model.Save{}, fmt.Errorf("workspace %s has no save %s (any more)", name, id)
		}
		select {
		case <-ctx.Done():
			return model.Save{}, ctx.Err()
		case <-time.After(interval):
		}
	}
}

func nodeSave(node, id string) string {
	return "/nodes/" + url.PathEscape(node) + "/saves/" + url.PathEscape(id)
}

// SaveReport tells the control plane how save id goes on this host (an
// agent's call).
func (c *Client) SaveReport(ctx context.Context, node, id string, r api.SaveReport) (model.Save, error) {
	var s model.Save
	return s, c.Do(ctx, "POST", nodeSave(node, id), r, &s)
}

// SaveImageUpload sends the image file at path made for save id (an
// agent's call): its SHA-256 is computed first (one read of the file),
// then the file is streamed. consistency and took describe the copy.
// It returns the save as the control plane ended it.
func (c *Client) SaveImageUpload(ctx context.Context, node, id, path, consistency string, took time.Duration) (model.Save, error) {
	f, err := os.Open(path)
	if err != nil {
		return model.Save{}, err
	}
	defer f.Close()
	h := sha256.New()
	size, err := io.Copy(h, f)
	if err != nil {
		return model.Save{}, fmt.Errorf("hash %s: %w", path, err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return model.Save{}, err
	}
	q := url.Values{}
	q.Set(api.SaveParamSHA256, hex.EncodeToString(h.Sum(nil)))
	q.Set(api.SaveParamConsistency, consistency)
	q.Set(api.SaveParamTook, took.String())
	p := nodeSave(node, id) + "/image?" + q.Encode()
	req, err := http.NewRequestWithContext(ctx, "PUT", c.base()+p, io.NopCloser(f))
	if err != nil {
		return model.Save{}, err
	}
	req.ContentLength = size
	req.Header.Set("Content-Type", "application/octet-stream")
	req.Header.Set("Authorization", "Bearer "+c.token)
	resp, err := c.hc.Do(req)
	if err != nil {
		if certRefused(err) {
			return model.Save{}, &Error{Status: http.StatusUnauthorized, Body: api.ErrorBody{Code: api.CodeUnauthorized,
				Message: fmt.Sprintf("PUT %s: the server refused the client certificate in the TLS handshake (%v)", p, err)}}
		}
		return model.Save{}, fmt.Errorf("PUT %s: %w", p, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		raw, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		var e api.Error
		if json.Unmarshal(raw, &e) != nil || e.Error.Message == "" {
			e.Error.Message = fmt.Sprintf("PUT %s: %s: %s", p, resp.Status, strings.TrimSpace(string(raw)))
		}
		return model.Save{}, &Error{Status: resp.StatusCode, Body: e.Error}
	}
	var s model.Save
	if err := json.NewDecoder(resp.Body).Decode(&s); err != nil {
		return model.Save{}, fmt.Errorf("PUT %s: decode answer: %w", p, err)
	}
	return s, nil
}
