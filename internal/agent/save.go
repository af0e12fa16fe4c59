package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"vgrid/api"
	"vgrid/internal/client"
	"vgrid/internal/model"
)

// Saves of this host's workspaces' disks as images (Assignments.Saves,
// from `vgrid workspace save`). Each runs in its own goroutine, at most
// maxSaves at once: the driver writes the image into <DataDir>/saves/<id>.qcow2
// (SaveImage), reporting progress about once a second; then the file is
// uploaded to the control plane, which stores it as the project's image
// and ends the save; a failure is reported with its reason. The file is
// removed either way. A save listed again after this agent restarted is
// carried out again from the start; files no save under way owns are
// removed.

const (
	// maxSaves bounds the saves the agent runs at once (each reads a
	// whole disk and writes it compressed).
	maxSaves = 2
	// saveReportEvery is how often a save's progress is reported.
	saveReportEvery = time.Second
	// maxSaveReason bounds a failure's reason as sent.
	maxSaveReason = 4 << 10
)

// saveRunner tracks the saves under way. Its zero value is ready.
type saveRunner struct {
	mu   sync.Mutex
	seen map[string]bool // under way or waiting for a slot, by save ID
	sem  chan struct{}
}

func (a *Agent) saveDir() string { return filepath.Join(a.cfg.DataDir, "saves") }

// startSaves starts the saves not under way yet, and removes files left
// by saves that are not.
func (a *Agent) startSaves(ctx context.Context, saves []model.Save) {
	r := &a.saves
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.seen == nil {
		r.seen, r.sem = map[string]bool{}, make(chan struct{}, maxSaves)
	}
	for _, s := range saves {
		if r.seen[s.ID] || s.Node != a.node {
			continue
		}
		r.seen[s.ID] = true
		sem := r.sem
		a.wg.Add(1)
		go func() {
			defer a.wg.Done()
			defer func() {
				r.mu.Lock()
				delete(r.seen, s.ID)
				r.mu.Unlock()
			}()
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				return
			}
			defer func() { <-sem }()
			a.runSave(ctx, s)
		}()
	}
	ents, _ := os.ReadDir(a.saveDir())
	for _, e := range ents {
		id, _, _ := strings.Cut(e.Name(), ".")
		if !r.seen[id] {
			_ = os.Remove(filepath.Join(a.saveDir(), e.Name()))
		}
	}
}

// runSave carries out one save: the disk saved by the driver, then
// uploaded.
func (a *Agent) runSave(ctx context.Context, s model.Save) {
	log := a.log.With("save", s.ID, "workspace", s.Project+"/"+s.Workspace, "image", s.Image)
	if err := os.MkdirAll(a.saveDir(), 0o700); err != nil {
		a.saveFailed(ctx, log, s.ID, fmt.Errorf("save directory: %w", err))
		return
	}
	path := filepath.Join(a.saveDir(), s.ID+".qcow2")
	_ = os.Remove(path) // left by this save's earlier run
	defer os.Remove(path)

	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	p := &saveProgress{wake: make(chan struct{}, 1)}
	reporter := make(chan struct{})
	go func() {
		defer close(reporter)
		a.reportSaveProgress(runCtx, log, s.ID, p, cancel)
	}()
	log.Info("saving disk as image")
	res, err := a.drv.SaveImage(runCtx, s.WorkspaceID, path, p.set)
	cancel()
	<-reporter
	if p.isGone() {
		log.Info("save ended by the control plane while the disk was copied")
		return
	}
	if err != nil {
		if ctx.Err() != nil {
			err = errors.New("the host agent stopped before the disk was saved")
		}
		a.saveFailed(ctx, log, s.ID, err)
		return
	}
	log.Info("disk saved; uploading", "bytes", res.Bytes, "took", res.Took.Round(time.Millisecond), "consistency", res.Consistency)
	done, err := a.client().SaveImageUpload(ctx, a.node, s.ID, path, res.Consistency, res.Took)
	if err != nil {
		var ce *client.Error
		if errors.As(err, &ce) && ce.Status < 500 {
			// The control plane refused it and ended the save (failed)
			// itself, or the save is gone.
			log.Warn("image upload refused", "err", err)
			return
		}
		a.saveFailed(ctx, log, s.ID, fmt.Errorf("upload: %w", err))
		return
	}
	log.Info("saved as image", "digest", done.Digest, "bytes", done.Bytes)
}

// saveFailed reports a save's failure, a few times if need be; also while
// the agent stops.
func (a *Agent) saveFailed(ctx context.Context, log *slog.Logger, id string, err error) {
	reason := err.Error()
	if len(reason) > maxSaveReason {
		reason = reason[:maxSaveReason]
	}
	log.Warn("save failed", "err", reason)
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	for try := 0; ; try++ {
		_, err := a.client().SaveReport(ctx, a.node, id, api.SaveReport{Failed: reason})
		var ce *client.Error
		if err == nil || (errors.As(err, &ce) && ce.Status < 500) || try == 2 {
			if err != nil {
				log.Warn("report a failed save", "err", err)
			}
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
	}
}

// saveProgress is the driver's latest word on a save's copy, for the
// reporter.
type saveProgress struct {
	mu          sync.Mutex
	done, total int64
	fresh, gone bool
	wake        chan struct{}
}

func (p *saveProgress) set(done, total int64) {
	p.mu.Lock()
	p.done, p.total, p.fresh = done, total, true
	p.mu.Unlock()
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

func (p *saveProgress) take() (model.SaveProgress, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	fresh := p.fresh
	p.fresh = false
	return model.SaveProgress{Done: p.done, Total: p.total}, fresh
}

func (p *saveProgress) isGone() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.gone
}

// reportSaveProgress sends the save's progress at most every
// saveReportEvery until ctx ends. The control plane saying the save is
// gone (ended, or deleted) cancels the copy.
func (a *Agent) reportSaveProgress(ctx context.Context, log *slog.Logger, id string, p *saveProgress, cancel context.CancelFunc) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-p.wake:
		}
		if pr, fresh := p.take(); fresh {
			_, err := a.client().SaveReport(ctx, a.node, id, api.SaveReport{Progress: &pr})
			var ce *client.Error
			if errors.As(err, &ce) && ce.Status == http.StatusGone {
				p.mu.Lock()
				p.gone = true
				p.mu.Unlock()
				cancel()
				return
			}
			if err != nil && ctx.Err() == nil {
				log.Debug("report save progress", "err", err)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(saveReportEvery):
		}
	}
}
