package store

import (
	"context"
	"sync/atomic"
)

// ErrNotLeader promises that nothing was written. A request that made a
// write and then failed with ErrNotLeader (a later write fenced, a read
// refused once its replica lost its session) must not be answered as if
// nothing had been done: its caller would send it again to another
// replica and have it carried out twice. TrackWrites lets the one who
// answers tell the two apart.

type writesKey struct{}

// TrackWrites returns a context under which the writes a fenced view
// (Fence) makes are counted, and a function that says whether any was
// made.
func TrackWrites(ctx context.Context) (context.Context, func() bool) {
	var n atomic.Int64
	return context.WithValue(ctx, writesKey{}, &n), func() bool { return n.Load() > 0 }
}

// noteWrite counts a write made under ctx (see TrackWrites).
func noteWrite(ctx context.Context) {
	if n, _ := ctx.Value(writesKey{}).(*atomic.Int64); n != nil {
		n.Add(1)
	}
}
