package agent

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"vgrid/internal/client"
	"vgrid/internal/hypervisor"
	"vgrid/internal/model"
)

// imageCache keeps image files on the host, named by their SHA-256, so an
// image is fetched from the control plane once per host and every
// workspace disk is a copy-on-write overlay on the cached base.
type imageCache struct {
	dir string
	log *slog.Logger
	// rate, if set, is told the rate of each file received (bytes/s).
	rate func(int64)

	// mu guards the fields below; fetch serialises downloads.
	mu     sync.Mutex
	fetch  sync.Mutex
	images map[string]model.Image
}

func (c *imageCache) known(img model.Image) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.images == nil {
		c.images = map[string]model.Image{}
	}
	c.images[img.Name] = img
}

// cached lists (sorted) the known images whose files are all in the
// cache: a start there copies nothing.
func (c *imageCache) cached() []string {
	c.mu.Lock()
	imgs := make([]model.Image, 0, len(c.images))
	for _, img := range c.images {
		imgs = append(imgs, img)
	}
	c.mu.Unlock()
	out := []string{}
	for _, img := range imgs {
		have := true
		for _, f := range []*model.ImageFile{&img.Disk, img.Kernel, img.Initrd} {
			if f == nil {
				continue
			}
			if _, err := os.Stat(filepath.Join(c.dir, f.SHA256)); err != nil {
				have = false
				break
			}
		}
		if have {
			out = append(out, img.Name)
		}
	}
	sort.Strings(out)
	return out
}

// ensure returns the image with local paths, downloading what is missing.
func (c *imageCache) ensure(ctx context.Context, cl *client.Client, name string) (hypervisor.LocalImage, error) {
	c.mu.Lock()
	img, ok := c.images[name]
	c.mu.Unlock()
	if !ok {
		return hypervisor.LocalImage{}, fmt.Errorf("image %q is not known to this host", name)
	}
	li := hypervisor.LocalImage{Name: img.Name, Boot: img.Boot, DiskFormat: img.DiskFormat, Cmdline: img.Cmdline, MinDisk: img.MinDisk}
	var err error
	if li.Disk, err = c.file(ctx, cl, img.Name, "disk", &img.Disk); err != nil {
		return li, err
	}
	if img.Kernel != nil {
		if li.Kernel, err = c.file(ctx, cl, img.Name, "kernel", img.Kernel); err != nil {
			return li, err
		}
	}
	if img.Initrd != nil {
		if li.Initrd, err = c.file(ctx, cl, img.Name, "initrd", img.Initrd); err != nil {
			return li, err
		}
	}
	return li, nil
}

func (c *imageCache) file(ctx context.Context, cl *client.Client, image, which string, f *model.ImageFile) (string, error) {
	if len(f.SHA256) != 64 {
		return "", fmt.Errorf("%s of image %s has no valid sha256", which, image)
	}
	path := filepath.Join(c.dir, f.SHA256)
	if _, err := os.Stat(path); err == nil {
		return path, nil
	}
	c.fetch.Lock()
	defer c.fetch.Unlock()
	if _, err := os.Stat(path); err == nil {
		return path, nil
	}
	if err := os.MkdirAll(c.dir, 0o755); err != nil {
		return "", err
	}
	c.log.Info("fetching image file", "image", image, "file", which, "bytes", f.Size)
	rc, _, err := cl.ImageFile(ctx, image, which)
	if err != nil {
		return "", err
	}
	defer rc.Close()
	tmp, err := os.CreateTemp(c.dir, ".fetch-*")
	if err != nil {
		return "", err
	}
	defer os.Remove(tmp.Name())
	h := sha256.New()
	t0 := time.Now()
	n, err := io.Copy(io.MultiWriter(tmp, h), rc)
	if err != nil {
		tmp.Close()
		return "", fmt.Errorf("download %s of %s: %w", which, image, err)
	}
	if took := time.Since(t0); c.rate != nil && n >= 1<<20 && took > 0 {
		c.rate(int64(float64(n) / took.Seconds()))
	}
	if err := tmp.Close(); err != nil {
		return "", err
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != f.SHA256 {
		return "", fmt.Errorf("%s of image %s: sha256 %s, want %s", which, image, got, f.SHA256)
	}
	// Base images are never written: overlays take the writes.
	if err := os.Chmod(tmp.Name(), 0o444); err != nil {
		return "", err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return "", err
	}
	return path, nil
}
