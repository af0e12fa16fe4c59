package server

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"vgrid/internal/store"
)

// Roles a token can have.
const (
	RoleAdmin = "admin" // manages projects, tokens, images, nodes; and its own project's workspaces
	RoleUser  = "user"  // its own project's workspaces
	RoleJoin  = "join"  // registers a host's agent, nothing else
	RoleNode  = "node"  // one registered agent: its assignments and reports
)

// Token is what the store keeps of a bearer token: only its hash.
type Token struct {
	Project   string    `json:"project"`
	Role      string    `json:"role"`
	Node      string    `json:"node,omitempty"` // RoleNode only
	CreatedAt time.Time `json:"created_at"`
}

// principal is the caller of one request.
type principal struct {
	Token
	hash string
}

type ctxKey struct{}

func who(ctx context.Context) principal {
	p, _ := ctx.Value(ctxKey{}).(principal)
	return p
}

func tokenKey(hash string) string { return "tokens/" + hash }

func hashToken(tok string) string {
	h := sha256.Sum256([]byte(tok))
	return hex.EncodeToString(h[:])
}

// NewSecret returns a random bearer token.
func NewSecret(prefix string) string {
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	return prefix + "_" + hex.EncodeToString(b)
}

// createToken stores a new token and returns its secret.
func (s *Server) createToken(ctx context.Context, t Token) (string, error) {
	prefix := map[string]string{RoleAdmin: "vga", RoleUser: "vgu", RoleJoin: "vgj", RoleNode: "vgn"}[t.Role]
	if prefix == "" {
		return "", badRequest(fmt.Sprintf("role: unknown role %q (want user, admin or join)", t.Role))
	}
	secret := NewSecret(prefix)
	t.CreatedAt = s.now()
	b, _ := json.Marshal(t)
	if _, err := s.store.Create(ctx, tokenKey(hashToken(secret)), b); err != nil {
		return "", fmt.Errorf("store token: %w", err)
	}
	return secret, nil
}

// authenticate resolves the bearer token of a request.
func (s *Server) authenticate(r *http.Request) (principal, error) {
	h := r.Header.Get("Authorization")
	tok, ok := strings.CutPrefix(h, "Bearer ")
	if !ok || tok == "" {
		return principal{}, errUnauthorized
	}
	hash := hashToken(strings.TrimSpace(tok))
	kv, err := s.store.Get(r.Context(), tokenKey(hash))
	if errors.Is(err, store.ErrNotFound) {
		return principal{}, errUnauthorized
	}
	if err != nil {
		return principal{}, err
	}
	// The lookup is by hash, so the comparison below is belt and braces
	// against a store that matched loosely.
	if subtle.ConstantTimeCompare([]byte(kv.Key), []byte(tokenKey(hash))) != 1 {
		return principal{}, errUnauthorized
	}
	var t Token
	if err := json.Unmarshal(kv.Value, &t); err != nil {
		return principal{}, fmt.Errorf("decode token: %w", err)
	}
	return principal{Token: t, hash: hash}, nil
}

// requireRole checks the caller's role.
func requireRole(ctx context.Context, roles ...string) error {
	p := who(ctx)
	for _, r := range roles {
		if p.Role == r {
			return nil
		}
	}
	return fmt.Errorf("%w (role %s; needs %s)", errForbidden, p.Role, strings.Join(roles, " or "))
}

// TokenValid reports whether a secret is a known token.
func (s *Server) TokenValid(ctx context.Context, secret string) bool {
	_, err := s.store.Get(ctx, tokenKey(hashToken(secret)))
	return err == nil
}

// revokeNodeTokens deletes every node token of a host.
func (s *Server) revokeNodeTokens(ctx context.Context, node string) error {
	kvs, err := s.store.List(ctx, "tokens/")
	if err != nil {
		return err
	}
	for _, kv := range kvs {
		var t Token
		if json.Unmarshal(kv.Value, &t) == nil && t.Role == RoleNode && t.Node == node {
			if err := s.store.Delete(ctx, kv.Key, kv.Revision); err != nil && !errors.Is(err, store.ErrNotFound) {
				return err
			}
			s.log.Info("node token revoked", "node", node)
		}
	}
	return nil
}
