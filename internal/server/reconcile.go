package server

import (
	"context"
	"time"
)

func contextWithTimeout(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, d)
}

// reconcile advances the lease calendar and carries out its actions
// (starts, suspensions, resumptions and ends due now). The calendar is the
// only authority on when a lease ends.
func (s *Server) reconcile(ctx context.Context) error {
	return s.advanceCalendar(ctx)
}
