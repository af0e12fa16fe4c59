package server

import (
	"fmt"
	"math"
	"net/http"
	"strconv"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"vgrid/api"
)

// codeRateLimited is the api.Error code of a 429 answer.
const codeRateLimited = api.CodeRateLimited

// RateLimit is the per-token request rate limit: a token bucket per bearer
// token (keyed by the token's hash), refilled at PerSecond and holding at
// most Burst requests. One user, however busy, then takes at most its
// share of the server; other tokens are unaffected.
type RateLimit struct {
	// Disabled turns the limit off.
	Disabled bool
	// PerSecond and Burst apply to user, admin and join tokens (0:
	// DefaultRateLimit's).
	PerSecond float64
	Burst     int
	// NodePerSecond and NodeBurst apply to node (host agent) tokens (0:
	// DefaultRateLimit's). An agent's long poll for its assignments is
	// never limited.
	NodePerSecond float64
	NodeBurst     int
}

// DefaultRateLimit is the limit of a server that sets none: 50 requests a
// second with bursts of 100 for a person's token (a CLI or script doing
// far more is a runaway loop), and 20 times that for an agent's, whose
// reports grow with the workspaces on its host; the agent's long poll is
// exempt, so a host always learns of its work.
var DefaultRateLimit = RateLimit{PerSecond: 50, Burst: 100, NodePerSecond: 1000, NodeBurst: 2000}

// SetRateLimit changes the server's per-token rate limit; buckets start
// afresh.
func (s *Server) SetRateLimit(rl RateLimit) {
	s.limits.mu.Lock()
	defer s.limits.mu.Unlock()
	s.limits.cfg, s.limits.set = rl, true
	s.limits.buckets = nil
}

// rateLimiter keeps one token bucket per token. Its zero value applies
// DefaultRateLimit.
type rateLimiter struct {
	mu      sync.Mutex
	cfg     RateLimit
	set     bool             // cfg was set; else DefaultRateLimit
	now     func() time.Time // nil: time.Now (tests set it)
	buckets map[string]*bucket
	swept   time.Time // the last sweep of idle buckets
}

type bucket struct {
	lim  *rate.Limiter
	last time.Time // the last request
}

// sweepEvery is how often idle buckets are looked for (on a request: no
// goroutine).
const sweepEvery = time.Minute

// limits returns the limit and burst for a role.
func (c RateLimit) limits(role string) (rate.Limit, int) {
	d := DefaultRateLimit
	per, burst := c.PerSecond, c.Burst
	if per <= 0 {
		per = d.PerSecond
	}
	if burst <= 0 {
		burst = d.Burst
	}
	if role == RoleNode {
		per, burst = c.NodePerSecond, c.NodeBurst
		if per <= 0 {
			per = d.NodePerSecond
		}
		if burst <= 0 {
			burst = d.NodeBurst
		}
	}
	return rate.Limit(per), burst
}

// exempt says whether a route is never limited: an agent's long poll
// for its assignments (one at a time per host, and the host must always
// learn of its work).
func exempt(e endpoint) bool {
	return e.method == "GET" && e.path == "/nodes/{node}/assignments"
}

// allow takes one request of the principal from its bucket. When the
// bucket is empty it returns false and how long until a request would
// pass.
func (l *rateLimiter) allow(p principal) (ok bool, retry time.Duration, per rate.Limit, burst int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	cfg := DefaultRateLimit
	if l.set {
		cfg = l.cfg
	}
	if cfg.Disabled {
		return true, 0, 0, 0
	}
	now := time.Now()
	if l.now != nil {
		now = l.now()
	}
	per, burst = cfg.limits(p.Role)
	if now.Sub(l.swept) >= sweepEvery {
		l.sweep(now)
	}
	if l.buckets == nil {
		l.buckets = map[string]*bucket{}
	}
	b := l.buckets[p.hash]
	if b == nil {
		b = &bucket{lim: rate.NewLimiter(per, burst)}
		l.buckets[p.hash] = b
	}
	b.last = now
	if b.lim.AllowN(now, 1) {
		return true, 0, per, burst
	}
	// Less than one request's worth is left: the rest refills at per.
	missing := 1 - b.lim.TokensAt(now)
	retry = time.Duration(missing / float64(per) * float64(time.Second))
	return false, retry, per, burst
}

// sweep drops the buckets idle long enough to have refilled: a new bucket
// is the same, so memory stays bounded by the tokens active in the last
// minute and nothing a caller sees changes. The caller holds mu.
func (l *rateLimiter) sweep(now time.Time) {
	l.swept = now
	for k, b := range l.buckets {
		full := time.Duration(float64(b.lim.Burst()) / float64(b.lim.Limit()) * float64(time.Second))
		if now.Sub(b.last) > max(full, sweepEvery) {
			delete(l.buckets, k)
		}
	}
}

// rateLimited answers 429 with Retry-After (whole seconds, rounded up) if
// the caller's token has used up its bucket.
func (s *Server) rateLimited(w http.ResponseWriter, p principal, e endpoint) bool {
	if exempt(e) {
		return false
	}
	ok, retry, per, burst := s.limits.allow(p)
	if ok {
		return false
	}
	secs := max(1, int(math.Ceil(retry.Seconds())))
	w.Header().Set("Retry-After", strconv.Itoa(secs))
	writeError(w, s.log, &httpError{http.StatusTooManyRequests, codeRateLimited,
		fmt.Sprintf("too many requests: this token may make %g a second (bursts of %d); retry in %d s", float64(per), burst, secs), nil})
	return true
}
