package server

import (
	"context"
	"fmt"
	"time"

	"vgrid/internal/model"
)

func contextWithTimeout(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, d)
}

// reconcile advances the lease calendar and carries out its actions, and
// enforces lease ends: a workspace whose lease is over is stopped.
func (s *Server) reconcile(ctx context.Context) error {
	// The calendar first: starts, suspensions, resumptions and ends due now.
	if err := s.advanceCalendar(ctx); err != nil {
		return err
	}
	all, err := s.listWS(ctx, "ws/")
	if err != nil {
		return err
	}
	now := s.now()
	for _, ws := range all {
		if ws.Desired == model.DesiredRunning && !ws.Status.ExpiresAt.IsZero() && !now.Before(ws.Status.ExpiresAt) {
			reason := fmt.Sprintf("lease ended at %s after %s", ws.Status.ExpiresAt.UTC().Format(time.RFC3339), ws.Spec.Duration)
			if _, err := s.stopWS(ctx, ws.Project, ws.Spec.Name, reason); err != nil {
				s.log.Warn("stop at lease end", "workspace", ref(ws), "err", err)
			} else {
				s.log.Info("lease ended", "workspace", ref(ws))
			}
		}
	}
	return nil
}
