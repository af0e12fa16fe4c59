package client

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"vgrid/api"
)

// FileBody is the body of an image file answer (ImageFileFrom). Start is
// the offset in the file of its first byte: the offset asked for when the
// server answered the range (206), 0 when it sent the whole file (200),
// in which case the caller starts again from the beginning.
type FileBody struct {
	io.ReadCloser
	Start int64
}

// ImageFileFrom opens one file of an image (disk, kernel or initrd) from
// offset on, with an HTTP Range "bytes=OFFSET-", so that a download cut
// short goes on where it stopped. It returns the body (a *FileBody; see
// Start) and the file's total size (-1 when the server did not say). An
// offset of 0 asks for the whole file.
func (c *Client) ImageFileFrom(ctx context.Context, image, which string, offset int64) (io.ReadCloser, int64, error) {
	if offset < 0 {
		return nil, 0, fmt.Errorf("image %s %s: offset %d: want 0 or more", image, which, offset)
	}
	path := "/images/" + url.PathEscape(image) + "/files/" + url.PathEscape(which)
	req, err := http.NewRequestWithContext(ctx, "GET", c.base()+path, nil)
	if err != nil {
		return nil, 0, err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	if offset > 0 {
		req.Header.Set("Range", "bytes="+strconv.FormatInt(offset, 10)+"-")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		if certRefused(err) {
			return nil, 0, &Error{Status: http.StatusUnauthorized, Body: api.ErrorBody{Code: api.CodeUnauthorized,
				Message: fmt.Sprintf("GET %s: the server refused the client certificate in the TLS handshake (%v)", path, err)}}
		}
		return nil, 0, fmt.Errorf("GET %s: %w", path, err)
	}
	switch resp.StatusCode {
	case http.StatusOK:
		return &FileBody{ReadCloser: resp.Body, Start: 0}, resp.ContentLength, nil
	case http.StatusPartialContent:
		if offset == 0 {
			resp.Body.Close()
			return nil, 0, fmt.Errorf("GET %s: a partial answer (206) to a request for the whole file", path)
		}
		start, total, err := parseContentRange(resp.Header.Get("Content-Range"))
		if err != nil {
			resp.Body.Close()
			return nil, 0, fmt.Errorf("GET %s: Content-Range: %w", path, err)
		}
		if start != offset {
			resp.Body.Close()
			return nil, 0, fmt.Errorf("GET %s: Content-Range starts at %d, asked for %d", path, start, offset)
		}
		return &FileBody{ReadCloser: resp.Body, Start: start}, total, nil
	}
	defer resp.Body.Close()
	if resp.StatusCode < 300 {
		return nil, 0, fmt.Errorf("GET %s: unexpected answer %s", path, resp.Status)
	}
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	var e api.Error
	if json.Unmarshal(raw, &e) != nil || e.Error.Message == "" {
		e.Error.Message = fmt.Sprintf("GET %s: %s: %s", path, resp.Status, strings.TrimSpace(string(raw)))
	}
	return nil, 0, &Error{Status: resp.StatusCode, Body: e.Error}
}

// parseContentRange reads "bytes FIRST-LAST/TOTAL" (TOTAL may be "*",
// returned as -1).
func parseContentRange(s string) (start, total int64, err error) {
	rest, ok := strings.CutPrefix(strings.TrimSpace(s), "bytes ")
	if !ok {
		return 0, 0, fmt.Errorf("%q: want bytes FIRST-LAST/TOTAL", s)
	}
	rng, tot, ok := strings.Cut(rest, "/")
	if !ok {
		return 0, 0, fmt.Errorf("%q: no total", s)
	}
	first, last, ok := strings.Cut(rng, "-")
	if !ok {
		return 0, 0, fmt.Errorf("%q: no range", s)
	}
	a, err1 := strconv.ParseInt(first, 10, 64)
	b, err2 := strconv.ParseInt(last, 10, 64)
	if err1 != nil || err2 != nil || a < 0 || b < a {
		return 0, 0, fmt.Errorf("%q: bad range", s)
	}
	total = -1
	if tot != "*" {
		if total, err = strconv.ParseInt(tot, 10, 64); err != nil || total <= b {
			return 0, 0, fmt.Errorf("%q: bad total", s)
		}
	}
	return a, total, nil
}
