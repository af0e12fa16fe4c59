package storage

import (
	"context"

	"vgrid/internal/qmp"
)

// The daemon's QMP client is internal/qmp's (events are not used: jobs and
// export removals are polled).
type qmpClient = qmp.Client

// QMPError is an error reply of the daemon.
type QMPError = qmp.Error

var errQMPClosed = qmp.ErrClosed

func dialQMP(ctx context.Context, path string) (*qmpClient, error) {
	return qmp.Dial(ctx, path, nil)
}
