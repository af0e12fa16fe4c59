package agent

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"vgrid/api"
	"vgrid/internal/metrics"
	"vgrid/internal/model"
)

// syncBuf is a log sink safe for the agent's goroutines.
type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) count(sub string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.Count(s.b.String(), sub)
}

// TestStageRequestFetchesImage: a StageRequest makes the agent fetch the
// image into its cache in the background (the call returns at once), once
// however often it is asked while the fetch runs; an image the host cannot
// fetch yet is retried with backoff until it can, and given up once no
// assignment asks for it.
func TestStageRequestFetchesImage(t *testing.T) {
	logs := &syncBuf{}
	r := newRigAgent(t, nil, func(c *Config) { c.Logger = slog.New(slog.NewTextHandler(logs, nil)) })
	t.Cleanup(func() {
		if t.Failed() {
			t.Log(logsString(logs))
		}
	})
	a := r.agent
	r.eventually("agent registered", func() bool { return a.client() != nil })
	a.stage.backoff = 20 * time.Millisecond
	ctx := context.Background()
	imgs, err := r.user.Images(ctx)
	if err != nil || len(imgs) == 0 {
		t.Fatalf("images %v %v", imgs, err)
	}
	if slices.Contains(a.images.cached(), "vgrid-guest") {
		t.Fatal("image cached before any staging")
	}
	a.images.known(imgs[0]) // as the assignments' Images describe it
	staged0 := histCount(t, metrics.AgentRegistry(), "vgrid_image_stage_duration_seconds", map[string]string{"image": "vgrid-guest"})
	req := api.StageRequest{Image: "vgrid-guest", Workspace: "default/booked", Start: time.Now().Add(time.Hour)}
	t0 := time.Now()
	for i := 0; i < 3; i++ {
		a.stageImages(ctx, []api.StageRequest{req})
	}
	if d := time.Since(t0); d > 500*time.Millisecond {
		t.Errorf("stageImages blocked for %v", d)
	}
	r.eventually("image staged", func() bool { return slices.Contains(a.images.cached(), "vgrid-guest") })
	for _, f := range []*model.ImageFile{&imgs[0].Disk, imgs[0].Kernel, imgs[0].Initrd} {
		if _, err := os.Stat(filepath.Join(a.images.dir, f.SHA256)); err != nil {
			t.Errorf("file %s not in the cache: %v", f.Path, err)
		}
	}
	r.eventually("staging over", func() bool { a.stage.mu.Lock(); defer a.stage.mu.Unlock(); return len(a.stage.active) == 0 })
	if n := logs.count("msg=\"image staged\""); n != 1 {
		t.Errorf("%d stagings logged, want 1:\n%s", n, logsString(logs))
	}
	if n := histCount(t, metrics.AgentRegistry(), "vgrid_image_stage_duration_seconds", map[string]string{"image": "vgrid-guest"}) - staged0; n != 1 {
		t.Errorf("%d stagings timed in vgrid_image_stage_duration_seconds, want 1", n)
	}
	// Cached: asked again, nothing is fetched.
	a.stageImages(ctx, []api.StageRequest{req})
	if n := logs.count("msg=\"staging image\""); n != 1 {
		t.Errorf("%d staging attempts, want 1 (the image is cached)", n)
	}

	// An image the host does not know yet fails, is retried, and is
	// fetched once it becomes known.
	later := registerImage(t, r, "later")
	a.stageImages(ctx, []api.StageRequest{{Image: "later", Workspace: "default/later"}})
	r.eventually("a retry", func() bool { return logs.count("image staging failed; retrying") >= 2 })
	a.images.known(later)
	r.eventually("later staged", func() bool { return slices.Contains(a.images.cached(), "later") })

	// One that is never known is dropped once no assignment asks for it.
	a.stageImages(ctx, []api.StageRequest{{Image: "never", Workspace: "default/never"}})
	r.eventually("a failure", func() bool { return logLine(logs, "image staging failed", "image=never") })
	a.stageImages(ctx, nil)
	r.eventually("never dropped", func() bool { return logLine(logs, "image staging dropped", "image=never") })
}

func logsString(s *syncBuf) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// logLine says whether a line of the log has all of subs.
func logLine(s *syncBuf, subs ...string) bool {
	for _, ln := range strings.Split(logsString(s), "\n") {
		all := true
		for _, sub := range subs {
			all = all && strings.Contains(ln, sub)
		}
		if all {
			return true
		}
	}
	return false
}

// registerImage adds a one-file image to the rig's control plane.
func registerImage(t *testing.T, r *rig, name string) model.Image {
	p := filepath.Join(t.TempDir(), name+".img")
	data := []byte(strings.Repeat("disk of "+name, 500))
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	h := sha256.Sum256(data)
	img := model.Image{Name: name, Boot: "firmware", Disk: model.ImageFile{Path: p, SHA256: hex.EncodeToString(h[:]), Size: int64(len(data))},
		DiskFormat: "raw", MinDisk: 256 * model.MiB}
	if err := r.srv.RegisterImage(context.Background(), img); err != nil {
		t.Fatal(err)
	}
	imgs, err := r.user.Images(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, i := range imgs {
		if i.Name == name {
			return i
		}
	}
	t.Fatalf("image %s not listed", name)
	return model.Image{}
}
