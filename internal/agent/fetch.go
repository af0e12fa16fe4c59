package agent

import (
	"context"
	"log/slog"

	"vgrid/internal/client"
	"vgrid/internal/model"
)

// FetchImageFile brings one file of an image (which: disk, kernel or
// initrd) into the image cache directory dir, the way a host agent's
// cache does before a workspace starts: streamed from the control plane
// with client.ImageFileFrom into a part file, resumed with a range when
// cut, checked against sha256 (64 lowercase hex digits) and size, fsynced,
// made read-only and renamed to <dir>/<sha256>. It returns that path. A
// file already there whole is not fetched again. There is no size limit
// and no eviction (no workspaces to keep files for). It is the cache's
// own code, exported for tools that measure it (bench/storage).
func FetchImageFile(ctx context.Context, cl *client.Client, dir, image, which, sha256 string, size int64) (string, error) {
	c := &imageCache{dir: dir, log: slog.New(slog.DiscardHandler)}
	return c.file(ctx, cl, image, which, &model.ImageFile{SHA256: sha256, Size: size}, nil)
}
