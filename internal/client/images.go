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
	"strings"

	"vgrid/api"
	"vgrid/internal/model"
)

// PushOptions are the optional parts of an image push.
type PushOptions struct {
	Format string // raw or qcow2 (required by the server)
	Public bool
	Tags   []string
	// SHA256 is the body's expected digest (hex); "" to skip the check.
	SHA256 string
	// Like names an image whose way of booting the new one takes.
	Like string
	// Progress, if set, is called as the body is sent (bytes sent, total).
	Progress func(done, total int64)
}

// PushImage uploads a disk image of size bytes read from r as the
// caller's project's image name. The body is streamed with its length;
// the server hashes and checks it and answers the stored image.
func (c *Client) PushImage(ctx context.Context, name string, r io.Reader, size int64, opt PushOptions) (model.Image, error) {
	if size <= 0 {
		return model.Image{}, fmt.Errorf("push image %s: size %d: want more than 0 bytes", name, size)
	}
	q := url.Values{}
	q.Set(api.ImageParamFormat, opt.Format)
	if opt.Like != "" {
		q.Set(api.ImageParamLike, opt.Like)
	}
	if opt.Public {
		q.Set(api.ImageParamPublic, "true")
	}
	for _, t := range opt.Tags {
		q.Add(api.ImageParamTag, t)
	}
	path := "/images/" + url.PathEscape(name) + "?" + q.Encode()
	var body io.Reader = io.LimitReader(r, size)
	if opt.Progress != nil {
		body = &progressReader{r: body, total: size, fn: opt.Progress}
	}
	req, err := http.NewRequestWithContext(ctx, "PUT", c.base()+path, body)
	if err != nil {
		return model.Image{}, err
	}
	req.ContentLength = size
	req.Header.Set("Content-Type", "application/octet-stream")
	// A refusal (a name taken, a bad parameter) comes before the body is
	// sent.
	req.Header.Set("Expect", "100-continue")
	if opt.SHA256 != "" {
		req.Header.Set(api.HeaderSHA256, opt.SHA256)
	}
	var img model.Image
	return img, c.stream(req, "PUT", path, &img)
}

// GetImage returns an image the caller's project sees.
func (c *Client) GetImage(ctx context.Context, name string) (model.Image, error) {
	var img model.Image
	return img, c.Do(ctx, "GET", "/images/"+url.PathEscape(name), nil, &img)
}

// DeleteImage deletes one of the caller's project's images (an admin:
// any).
func (c *Client) DeleteImage(ctx context.Context, name string) error {
	return c.Do(ctx, "DELETE", "/images/"+url.PathEscape(name), nil, nil)
}

// PullImage downloads an image's disk into w, calling progress (if not
// nil) as it comes, and checks its SHA-256 against the image's digest: a
// mismatch is an error (w then holds bad bytes: the caller discards them).
func (c *Client) PullImage(ctx context.Context, name string, w io.Writer, progress func(done, total int64)) (model.Image, error) {
	img, err := c.GetImage(ctx, name)
	if err != nil {
		return img, err
	}
	want := img.Disk.SHA256
	if d, ok := strings.CutPrefix(img.Digest, "sha256:"); ok {
		want = d
	}
	rc, total, err := c.ImageFile(ctx, name, "disk")
	if err != nil {
		return img, err
	}
	defer rc.Close()
	if total < 0 {
		total = img.Disk.Size
	}
	h := sha256.New()
	var src io.Reader = rc
	if progress != nil {
		src = &progressReader{r: rc, total: total, fn: progress}
	}
	n, err := io.Copy(io.MultiWriter(w, h), src)
	if err != nil {
		return img, fmt.Errorf("pull image %s: after %d bytes: %w", name, n, err)
	}
	if n != img.Disk.Size {
		return img, fmt.Errorf("pull image %s: got %d bytes, the image has %d", name, n, img.Disk.Size)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != want {
		return img, fmt.Errorf("pull image %s: the data's digest is sha256:%s, the image's sha256:%s", name, got, want)
	}
	return img, nil
}

// stream sends a prepared request with the client's token and decodes a
// JSON answer into out, or an error answer into *Error, as send does.
func (c *Client) stream(req *http.Request, method, path string, out any) error {
	req.Header.Set("Authorization", "Bearer "+c.token)
	resp, err := c.hc.Do(req)
	if err != nil {
		if certRefused(err) {
			return &Error{Status: http.StatusUnauthorized, Body: api.ErrorBody{Code: api.CodeUnauthorized,
				Message: fmt.Sprintf("%s %s: the server refused the client certificate in the TLS handshake (%v)", method, path, err)}}
		}
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		raw, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		var e api.Error
		if json.Unmarshal(raw, &e) != nil || e.Error.Message == "" {
			e.Error.Message = fmt.Sprintf("%s %s: %s: %s", method, path, resp.Status, strings.TrimSpace(string(raw)))
		}
		return &Error{Status: resp.StatusCode, Body: e.Error}
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("%s %s: decode answer: %w", method, path, err)
	}
	return nil
}

// progressReader reports the bytes read through it.
type progressReader struct {
	r     io.Reader
	done  int64
	total int64
	fn    func(done, total int64)
}

func (p *progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	if n > 0 {
		p.done += int64(n)
		p.fn(p.done, p.total)
	}
	return n, err
}
