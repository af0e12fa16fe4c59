package store

import (
	"context"
	"sync/atomic"
)

type writesKey struct{}

// TrackWrites returns a context under which a fenced view (Fence) notes
// the writes it makes, and a function that says whether any was made.
// ErrNotLeader promises that nothing was written: a request that made a
// write and then failed with it (a later write fenced, a read refused
// once its replica lost its session) must not be answered so, or its
// caller would send it again to another replica and have it carried out
// twice. This lets the one who answers tell the two apart.
func TrackWrites(ctx context.Context) (context.Context, func() bool) {
	var wrote atomic.Bool
	return context.WithValue(ctx, writesKey{}, &wrote), wrote.Load
}

// noteWrite notes a write made under ctx (see TrackWrites).
func noteWrite(ctx context.Context) {
	if wrote, _ := ctx.Value(writesKey{}).(*atomic.Bool); wrote != nil {
		wrote.Store(true)
	}
}
