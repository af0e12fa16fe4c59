package control

import (
	"context"
	"fmt"

	"vgrid/internal/model"
	"vgrid/internal/store"
)

// A create carries an idempotency key (the API's Idempotency-Key header,
// chosen by the client for each create it means): the workspace it makes
// records it, and the same create sent again — by a client that never got
// the answer, perhaps because the replica that had it died — gets that
// workspace back rather than "already exists". A create with another key,
// or none, is refused as before.

type idempotencyKey struct{}

// MaxIdempotencyKey bounds an idempotency key's length.
const MaxIdempotencyKey = 128

// WithIdempotencyKey returns ctx carrying the create's idempotency key.
func WithIdempotencyKey(ctx context.Context, key string) context.Context {
	if key == "" {
		return ctx
	}
	return context.WithValue(ctx, idempotencyKey{}, key)
}

// IdempotencyKey is the key ctx carries ("" if none).
func IdempotencyKey(ctx context.Context) string {
	k, _ := ctx.Value(idempotencyKey{}).(string)
	return k
}

// CheckIdempotencyKey says what is wrong with a key: printable ASCII, at
// most MaxIdempotencyKey bytes.
func CheckIdempotencyKey(key string) error {
	if len(key) > MaxIdempotencyKey {
		return fmt.Errorf("%d bytes, at most %d", len(key), MaxIdempotencyKey)
	}
	for i := 0; i < len(key); i++ {
		if key[i] < 0x21 || key[i] > 0x7e {
			return fmt.Errorf("byte %d is not printable ASCII", i)
		}
	}
	return nil
}

// sameRequest says whether the stored workspace kv was made by the create
// ctx repeats.
func sameRequest(ctx context.Context, kv store.KV) (model.Workspace, bool) {
	key := IdempotencyKey(ctx)
	if key == "" {
		return model.Workspace{}, false
	}
	w, err := decodeWS(kv)
	if err != nil || w.RequestID != key {
		return model.Workspace{}, false
	}
	return w, true
}
