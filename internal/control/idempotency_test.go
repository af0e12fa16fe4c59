package control

import (
	"context"
	"strings"
	"testing"
)

// TestCreateIdempotency: a create sent again with its idempotency key
// answers the workspace it made (nothing booked twice); with another key,
// or none, the name is taken.
func TestCreateIdempotency(t *testing.T) {
	ctl, _ := hostsEnv(t, "h1")
	ctx := context.Background()
	first, err := ctl.CreateWorkspace(WithIdempotencyKey(ctx, "k1"), "p", mustSpec(t, "w", "1"))
	if err != nil {
		t.Fatal(err)
	}
	if first.RequestID != "k1" {
		t.Fatalf("request id %q, want k1", first.RequestID)
	}
	again, err := ctl.CreateWorkspace(WithIdempotencyKey(ctx, "k1"), "p", mustSpec(t, "w", "1"))
	if err != nil {
		t.Fatalf("the same create again: %v", err)
	}
	if again.ID != first.ID || again.Status.Lease != first.Status.Lease || again.Status.Node != first.Status.Node {
		t.Fatalf("the same create again made %+v, want the first %+v", again.Status, first.Status)
	}
	leases, err := ctl.store.List(ctx, "leases/p/")
	if err != nil || len(leases) != 1 {
		t.Fatalf("%d leases stored (%v), want 1", len(leases), err)
	}
	for _, tc := range []struct{ name, key string }{{"another key", "k2"}, {"no key", ""}} {
		_, err := ctl.CreateWorkspace(WithIdempotencyKey(ctx, tc.key), "p", mustSpec(t, "w", "1"))
		if err == nil || !strings.Contains(err.Error(), "invalid workspace spec") {
			t.Errorf("%s: %v, want the name refused", tc.name, err)
		}
	}
	// Whatever changed since (here its image's record is gone, which a
	// new create would be refused for), the resend answers the first.
	if err := ctl.store.Delete(ctx, "images/img", 0); err != nil {
		t.Fatal(err)
	}
	if again, err := ctl.CreateWorkspace(WithIdempotencyKey(ctx, "k1"), "p", mustSpec(t, "w", "1")); err != nil || again.ID != first.ID {
		t.Fatalf("the same create again, its image gone: %v", err)
	}
}

func TestCheckIdempotencyKey(t *testing.T) {
	for _, tc := range []struct {
		key string
		ok  bool
	}{
		{"0f3a9c", true}, {strings.Repeat("a", MaxIdempotencyKey), true}, {strings.Repeat("a", MaxIdempotencyKey+1), false},
		{"has space", false}, {"tab\t", false}, {"é", false}, {"", true},
	} {
		if err := CheckIdempotencyKey(tc.key); (err == nil) != tc.ok {
			t.Errorf("CheckIdempotencyKey(%q) = %v, want ok %v", tc.key, err, tc.ok)
		}
	}
}
