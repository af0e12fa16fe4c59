package server

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"vgrid/api"
	"vgrid/internal/model"
)

// limited sets a server's rate limit and gives its limiter the env's
// clock.
func (e *env) limited(rl RateLimit) {
	e.srv.SetRateLimit(rl)
	e.srv.limits.mu.Lock()
	e.srv.limits.now = e.clk.Now
	e.srv.limits.mu.Unlock()
}

// call makes a raw request and returns its status, Retry-After and error
// body.
func (e *env) call(t *testing.T, method, path, token string) (int, string, api.ErrorBody) {
	t.Helper()
	req, _ := http.NewRequest(method, e.hs.URL+api.Prefix+path, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := e.hs.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body api.Error
	if resp.StatusCode >= 400 {
		if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
			t.Fatalf("%s %s: %d with a body that is not an API error: %v", method, path, resp.StatusCode, err)
		}
	}
	return resp.StatusCode, resp.Header.Get("Retry-After"), body.Error
}

// A burst over a token's limit gets 429 with Retry-After and a message
// saying when; another token is unaffected; after the wait it passes.
func TestRateLimitPerToken(t *testing.T) {
	e := newEnv(t)
	user, err := e.admin.CreateToken(context.Background(), "default", RoleUser)
	if err != nil {
		t.Fatal(err)
	}
	e.limited(RateLimit{PerSecond: 2, Burst: 5})
	admin := e.admin.Token()
	for i := 0; i < 5; i++ {
		if st, _, b := e.call(t, "GET", "/whoami", admin); st != http.StatusOK {
			t.Fatalf("request %d of a burst of 5: %d %s", i+1, st, b.Message)
		}
	}
	st, retry, b := e.call(t, "GET", "/workspaces", admin)
	if st != http.StatusTooManyRequests || retry != "1" || b.Code != codeRateLimited || !strings.Contains(b.Message, "retry in 1 s") {
		t.Fatalf("6th request: %d Retry-After %q %+v; want 429, 1, a message saying when", st, retry, b)
	}
	// Another token has its own bucket.
	if st, _, b := e.call(t, "GET", "/whoami", user.Token); st != http.StatusOK {
		t.Fatalf("another token: %d %s", st, b.Message)
	}
	// Half a second refills one request's worth at 2 a second.
	e.clk.Add(400 * time.Millisecond)
	if st, _, _ := e.call(t, "GET", "/whoami", admin); st != http.StatusTooManyRequests {
		t.Fatalf("after 0.4 s: %d, want still 429", st)
	}
	e.clk.Add(200 * time.Millisecond)
	if st, _, b := e.call(t, "GET", "/whoami", admin); st != http.StatusOK {
		t.Fatalf("after the wait: %d %s", st, b.Message)
	}
	// An unauthenticated request is answered 401, not counted.
	if st, _, _ := e.call(t, "GET", "/whoami", "vgu_nope"); st != http.StatusUnauthorized {
		t.Fatalf("unknown token: %d", st)
	}
}

// Retry-After rounds up to whole seconds.
func TestRateLimitRetryAfterRoundsUp(t *testing.T) {
	e := newEnv(t)
	e.limited(RateLimit{PerSecond: 0.25, Burst: 1})
	tok := e.admin.Token()
	if st, _, _ := e.call(t, "GET", "/whoami", tok); st != http.StatusOK {
		t.Fatal(st)
	}
	e.clk.Add(500 * time.Millisecond)
	// 0.875 of a request missing at 0.25 a second: 3.5 s, said as 4.
	if st, retry, _ := e.call(t, "GET", "/whoami", tok); st != http.StatusTooManyRequests || retry != "4" {
		t.Fatalf("%d Retry-After %q, want 429 and 4", st, retry)
	}
}

// A host agent's long poll is never limited; its other calls have the
// node limit.
func TestRateLimitAgentLongPollExempt(t *testing.T) {
	e := newEnv(t)
	e.limited(RateLimit{PerSecond: 1, Burst: 1, NodePerSecond: 1, NodeBurst: 2})
	ctx := context.Background()
	for i := 0; i < 10; i++ {
		if _, err := e.node.Assignments(ctx, "n1", 0, 0); err != nil {
			t.Fatalf("assignments %d: %v", i+1, err)
		}
	}
	hb := func() error {
		return e.node.Heartbeat(ctx, model.Node{Name: "n1"})
	}
	for i := 0; i < 2; i++ {
		if err := hb(); err != nil {
			t.Fatalf("heartbeat %d within the node burst: %v", i+1, err)
		}
	}
	if err := hb(); apiErr(t, err).Status != http.StatusTooManyRequests {
		t.Fatalf("heartbeat over the node burst: %v", err)
	}
	if _, err := e.node.Assignments(ctx, "n1", 0, 0); err != nil {
		t.Fatalf("assignments once the node's bucket is empty: %v", err)
	}
}

// The default limit lets an ordinary burst through; Disabled turns it off.
func TestRateLimitDefaultsAndDisabled(t *testing.T) {
	e := newEnv(t)
	e.limited(DefaultRateLimit)
	tok := e.admin.Token()
	n := 0
	for ; n < 1000; n++ {
		if st, _, _ := e.call(t, "GET", "/whoami", tok); st != http.StatusOK {
			break
		}
	}
	if n != DefaultRateLimit.Burst {
		t.Fatalf("default limit: %d requests passed at once, want %d", n, DefaultRateLimit.Burst)
	}
	e.limited(RateLimit{Disabled: true})
	for i := 0; i < 300; i++ {
		if st, _, _ := e.call(t, "GET", "/whoami", tok); st != http.StatusOK {
			t.Fatalf("request %d with the limit off: %d", i, st)
		}
	}
}

// Idle buckets go: memory is bounded by the tokens active lately.
func TestRateLimitEvictsIdleBuckets(t *testing.T) {
	var l rateLimiter
	now := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	l.now = func() time.Time { return now }
	for i := 0; i < 1000; i++ {
		l.allow(principal{Token: Token{Role: RoleUser}, hash: fmt.Sprint(i)})
	}
	if len(l.buckets) != 1000 {
		t.Fatalf("%d buckets, want 1000", len(l.buckets))
	}
	now = now.Add(2 * sweepEvery)
	if ok, _, _, _ := l.allow(principal{Token: Token{Role: RoleUser}, hash: "new"}); !ok {
		t.Fatal("refused")
	}
	if len(l.buckets) != 1 {
		t.Fatalf("%d buckets after all but one were idle for %s, want 1", len(l.buckets), 2*sweepEvery)
	}
}
