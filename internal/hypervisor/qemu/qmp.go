package qemu

import (
	"context"
	"encoding/json"

	"vgrid/internal/qmp"
)

// The driver's QMP client is internal/qmp's.
type (
	qmpClient = qmp.Client
	qmpError  = qmp.Error
)

// errQMPClosed is returned for commands on a closed connection.
var errQMPClosed = qmp.ErrClosed

// dialQMP connects to a QMP socket and negotiates capabilities.
func dialQMP(ctx context.Context, path string, onEvent func(string, json.RawMessage)) (*qmpClient, error) {
	return qmp.Dial(ctx, path, onEvent)
}
