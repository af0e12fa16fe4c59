package agent

import (
	"context"
	"errors"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"vgrid/api"
	"vgrid/internal/hypervisor"
	"vgrid/internal/metrics"
)

// Staging ahead of a start: the control plane lists in a host's
// assignments (Assignments.Stage) the images of leases due on the host
// that the calendar wants fetched now, while the host still runs other
// leases. The agent fetches each into its image cache in the background,
// one fetch per image at a time, retrying with backoff while the image is
// still asked for; the assignments loop never waits for it. When the lease
// starts, the guest's start finds the image cached.

// stageBackoff bounds the wait between attempts of a failed staging.
const (
	stageBackoffMin = time.Second
	stageBackoffMax = time.Minute
)

// stager keeps the agent's stagings. Its zero value is ready.
type stager struct {
	mu sync.Mutex
	// active has the images being fetched (or waiting to retry).
	active map[string]bool
	// wanted has the images the latest assignments ask for, with the
	// workspaces they are for.
	wanted map[string][]string
	// backoff is the first wait after a failure (0: stageBackoffMin).
	backoff time.Duration
}

// stageImages starts fetching the images reqs name that are neither
// cached nor being fetched, each in a goroutine of its own, and records
// which images are still wanted (a fetch that fails stops retrying once
// its image is not). It does not block.
func (a *Agent) stageImages(ctx context.Context, reqs []api.StageRequest) {
	wanted := map[string][]string{}
	for _, r := range reqs {
		if r.Image != "" {
			wanted[r.Image] = append(wanted[r.Image], r.Workspace)
		}
	}
	s := &a.stage
	s.mu.Lock()
	s.wanted = wanted
	if s.active == nil {
		s.active = map[string]bool{}
	}
	var start []string
	for img := range wanted {
		if !s.active[img] {
			start = append(start, img)
		}
	}
	s.mu.Unlock()
	if len(start) == 0 {
		return
	}
	cached := map[string]bool{}
	for _, n := range a.images.cached() {
		cached[n] = true
	}
	sort.Strings(start)
	for _, img := range start {
		if cached[img] {
			continue // nothing to fetch
		}
		s.mu.Lock()
		if s.active[img] {
			s.mu.Unlock()
			continue
		}
		s.active[img] = true
		s.mu.Unlock()
		a.wg.Add(1)
		go func() {
			defer a.wg.Done()
			defer func() {
				s.mu.Lock()
				delete(s.active, img)
				s.mu.Unlock()
			}()
			a.stageOne(ctx, img)
		}()
	}
}

// stillWanted says whether the latest assignments ask for img, and for
// which workspaces.
func (s *stager) stillWanted(img string) ([]string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ws, ok := s.wanted[img]
	return ws, ok
}

// stageOne fetches img into the cache, retrying with a doubling backoff
// while it is wanted and ctx lives.
func (a *Agent) stageOne(ctx context.Context, img string) {
	s := &a.stage
	wait := s.backoff
	if wait <= 0 {
		wait = stageBackoffMin
	}
	for attempt := 1; ; attempt++ {
		ws, ok := s.stillWanted(img)
		if !ok || ctx.Err() != nil {
			a.log.Info("image staging dropped", "image", img, "attempts", attempt-1)
			return
		}
		a.log.Info("staging image", "image", img, "for", strings.Join(ws, ","), "attempt", attempt)
		t0 := time.Now()
		var li hypervisor.LocalImage
		cl := a.client()
		err := errors.New("the agent is not registered yet")
		if cl != nil {
			li, err = a.images.ensure(ctx, cl, img)
		}
		if err == nil {
			var n int64
			for _, p := range []string{li.Disk, li.Kernel, li.Initrd} {
				if p == "" {
					continue
				}
				if fi, err := os.Stat(p); err == nil {
					n += fi.Size()
				}
			}
			a.log.Info("image staged", "image", img, "bytes", n, "took", time.Since(t0).Round(time.Millisecond))
			metrics.Since(metrics.Stage.WithLabelValues(img), t0)
			return
		}
		if ctx.Err() != nil {
			return
		}
		a.log.Warn("image staging failed; retrying", "image", img, "attempt", attempt, "err", err, "retry_in", wait)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		wait = min(2*wait, stageBackoffMax)
	}
}
