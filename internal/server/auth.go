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
	"slices"
	"strings"
	"time"

	"vgrid/api"
	"vgrid/internal/store"
)

// Roles a token can have.
const (
	RoleAdmin = "admin" // manages projects, tokens, images, nodes; and its own project's workspaces
	RoleUser  = "user"  // its own project's workspaces
	RoleJoin  = "join"  // registers a host's agent, nothing else
	RoleNode  = "node"  // one registered agent: its assignments and reports
)

// Token is what the store keeps of a bearer token, under the hash of its
// secret (the secret itself is never stored nor logged). Its public ID is
// the start of that hash (tokenID).
type Token struct {
	Project   string    `json:"project"`
	Role      string    `json:"role"`
	Node      string    `json:"node,omitempty"` // RoleNode only
	CreatedAt time.Time `json:"created_at"`
	// ExpiresAt is when the token stops working; zero is never (user and
	// admin tokens created without a TTL, and node tokens from before
	// node tokens expired: agents rotate those at once). A join token
	// always expires (see expiry).
	ExpiresAt time.Time `json:"expires_at,omitzero"`
	// Hosts are the host names a join token registered: each at most
	// once. MaxHosts, if > 0, bounds how many.
	Hosts    []string `json:"hosts,omitempty"`
	MaxHosts int      `json:"max_hosts,omitempty"`
	// Joined are the Hosts whose registration finished: their node token
	// was issued. A host in Hosts but not here may join again with the
	// same token (see joinResumes).
	Joined []string `json:"joined,omitempty"`
}

// expiry is when t stops working (zero: never). A join token stored
// before tokens had an expiry gets the default join TTL from its creation.
func (t Token) expiry() time.Time {
	if t.ExpiresAt.IsZero() && t.Role == RoleJoin {
		return t.CreatedAt.Add(DefaultJoinTTL)
	}
	return t.ExpiresAt
}

// expired reports whether t no longer works at now.
func (t Token) expired(now time.Time) bool {
	e := t.expiry()
	return !e.IsZero() && !now.Before(e)
}

// principal is the caller of one request.
type principal struct {
	Token
	hash string
}

// id is the caller's token's public ID.
func (p principal) id() string { return tokenID(p.hash) }

type ctxKey struct{}

func who(ctx context.Context) principal {
	p, _ := ctx.Value(ctxKey{}).(principal)
	return p
}

func tokenKey(hash string) string { return "tokens/" + hash }

// tokenIDLen is how many hex digits of a token's hash make its public ID:
// 48 bits, enough to tell a deployment's tokens apart, and nothing an
// attacker can use (finding the secret from the hash is infeasible).
const tokenIDLen = 12

// tokenID is the public ID of the token whose hash is hash.
func tokenID(hash string) string {
	if len(hash) < tokenIDLen {
		return hash
	}
	return hash[:tokenIDLen]
}

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
	secret, _, err := s.issueToken(ctx, t)
	return secret, err
}

// issueToken stores a new token and returns its secret and its record as
// stored. A join or node token without an expiry gets its role's default
// TTL. Tokens long expired are purged on the way.
func (s *Server) issueToken(ctx context.Context, t Token) (secret string, stored Token, err error) {
	prefix := map[string]string{RoleAdmin: "vga", RoleUser: "vgu", RoleJoin: "vgj", RoleNode: "vgn"}[t.Role]
	if prefix == "" {
		return "", t, badRequest(fmt.Sprintf("role: unknown role %q (want user, admin or join)", t.Role))
	}
	secret = NewSecret(prefix)
	t.CreatedAt = s.now()
	if t.ExpiresAt.IsZero() {
		switch t.Role {
		case RoleJoin:
			t.ExpiresAt = t.CreatedAt.Add(DefaultJoinTTL)
		case RoleNode:
			t.ExpiresAt = t.CreatedAt.Add(NodeTokenTTL)
		}
	}
	s.purgeExpiredTokens(ctx)
	b, _ := json.Marshal(t)
	if _, err := s.store.Create(ctx, tokenKey(hashToken(secret)), b); err != nil {
		return "", t, fmt.Errorf("store token: %w", err)
	}
	return secret, t, nil
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
	if t.expired(s.now()) {
		return principal{}, &httpError{http.StatusUnauthorized, api.CodeUnauthorized,
			fmt.Sprintf("token expired at %s", t.expiry().UTC().Format(time.RFC3339)), nil}
	}
	if t.Role == RoleNode {
		// A host proves itself with its client certificate too (certs.go).
		if err := s.checkNodeCert(r, t); err != nil {
			return principal{}, err
		}
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

// TokenValid reports whether a secret is a known token that has not
// expired.
func (s *Server) TokenValid(ctx context.Context, secret string) bool {
	t, ok := s.lookupToken(ctx, secret)
	return ok && !t.expired(s.now())
}

// TokenExpiry returns when a valid token expires (zero: never); ok is
// false for an unknown or expired token.
func (s *Server) TokenExpiry(ctx context.Context, secret string) (expires time.Time, ok bool) {
	t, ok := s.lookupToken(ctx, secret)
	if !ok || t.expired(s.now()) {
		return time.Time{}, false
	}
	return t.expiry(), true
}

func (s *Server) lookupToken(ctx context.Context, secret string) (Token, bool) {
	kv, err := s.store.Get(ctx, tokenKey(hashToken(secret)))
	if err != nil {
		return Token{}, false
	}
	var t Token
	if json.Unmarshal(kv.Value, &t) != nil {
		return Token{}, false
	}
	return t, true
}

// storedToken is a token as listed from the store.
type storedToken struct {
	Token
	hash string
	rev  int64
}

// listTokens returns every stored token (records that do not decode are
// left out).
func (s *Server) listTokens(ctx context.Context) ([]storedToken, error) {
	kvs, err := s.store.List(ctx, "tokens/")
	if err != nil {
		return nil, err
	}
	out := make([]storedToken, 0, len(kvs))
	for _, kv := range kvs {
		var t Token
		if json.Unmarshal(kv.Value, &t) == nil {
			out = append(out, storedToken{Token: t, hash: strings.TrimPrefix(kv.Key, "tokens/"), rev: kv.Revision})
		}
	}
	return out, nil
}

// revokeNodeTokens deletes every node token of a host but those whose
// hashes are in keep, and returns how many it deleted.
func (s *Server) revokeNodeTokens(ctx context.Context, node string, keep ...string) (int, error) {
	ts, err := s.listTokens(ctx)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, t := range ts {
		if t.Role != RoleNode || t.Node != node || slices.Contains(keep, t.hash) {
			continue
		}
		if err := s.store.Delete(ctx, tokenKey(t.hash), t.rev); err != nil && !errors.Is(err, store.ErrNotFound) {
			return n, err
		}
		n++
		s.log.Info("node token revoked", "node", node, "token_id", tokenID(t.hash))
	}
	return n, nil
}
