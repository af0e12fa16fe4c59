package client

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net"
	"net/http"
	"time"
)

// DefaultFailoverWait bounds how long a request keeps trying the replicas
// of a control plane (one is down, or an election is under way: a new
// leader is usually there within a few seconds); Config.FailoverWait
// changes it.
const DefaultFailoverWait = 30 * time.Second

// base is the API base URL of the replica in use.
func (c *Client) base() string { return c.bases[int(c.cur.Load())%len(c.bases)] }

// Servers are the replicas' API base URLs, the one in use first.
func (c *Client) Servers() []string {
	i := int(c.cur.Load()) % len(c.bases)
	return append(append([]string{}, c.bases[i:]...), c.bases[:i]...)
}

// failover is one request's walk over the replicas.
type failover struct {
	start time.Time
	tries int
}

// again says whether a request that failed at base (err: the transport's
// error; nil: the replica answered 503 not_leader, or 502 leader_lost to
// an idempotent request) is tried again: on the next replica at once, and
// after a short pause once every replica was tried, until the client's
// FailoverWait has passed or ctx ends. A request that may have reached the server (any
// transport error after the connection was made) is tried again only if
// it is idempotent: a GET, or a write with an idempotency key; another
// write might have been done.
func (fo *failover) again(ctx context.Context, c *Client, base, method string, keyed bool, err error) bool {
	if err != nil && (len(c.bases) == 1 || !retryable(err, method, keyed)) {
		// One server that does not answer: say so at once (the caller,
		// a person or an agent's loop, decides whether to wait).
		return false
	}
	if fo.start.IsZero() {
		fo.start = time.Now()
	}
	if c.failWait < 0 || time.Since(fo.start) > c.failWait || ctx.Err() != nil {
		return false
	}
	fo.tries++
	// Move on from base unless another request already did.
	i := int(c.cur.Load())
	if c.bases[i%len(c.bases)] == base {
		c.cur.CompareAndSwap(int32(i), int32((i+1)%len(c.bases)))
	}
	if fo.tries%len(c.bases) == 0 {
		t := time.NewTimer(min(time.Duration(fo.tries/len(c.bases))*100*time.Millisecond, time.Second))
		defer t.Stop()
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
		}
	}
	return true
}

// retryable says whether a transport error may be retried elsewhere: a
// connection never made (refused, unreachable, timed out dialing) always;
// a connection lost mid-way only for reads and keyed writes.
func retryable(err error, method string, keyed bool) bool {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return true
	}
	return keyed || method == http.MethodGet || method == http.MethodHead
}

// newRequestKey is a fresh idempotency key: 128 random bits.
func newRequestKey() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
