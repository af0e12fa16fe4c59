package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"

	"vgrid/api"
	"vgrid/internal/store"
)

// Token lifetimes.
var (
	// DefaultJoinTTL is a join token's lifetime when its creator gives
	// none; MaxJoinTTL bounds it. A join token never lives forever.
	DefaultJoinTTL = 24 * time.Hour
	MaxJoinTTL     = 30 * 24 * time.Hour
	// NodeTokenTTL is a node token's lifetime. Agents rotate theirs when
	// half of it has passed.
	NodeTokenTTL = 7 * 24 * time.Hour
	// RotationGrace is how long a node token keeps working after it was
	// rotated, so that requests in flight with it finish.
	RotationGrace = 5 * time.Minute
	// expiredKeep is how long an expired token's record stays (so that its
	// use answers "token expired at ..." and token list shows it) before it
	// is purged.
	expiredKeep = 7 * 24 * time.Hour
)

// revokedNodeKey marks a host an admin revoked: a join token that has not
// registered that name yet may register it again.
func revokedNodeKey(node string) string { return "revoked/nodes/" + node }

// revokedNode is the value under revokedNodeKey.
type revokedNode struct {
	Node      string    `json:"node"`
	RevokedAt time.Time `json:"revoked_at"`
	By        string    `json:"by"` // the revoking admin token's ID
}

func (s *Server) nodeRevoked(ctx context.Context, node string) (bool, error) {
	_, err := s.store.Get(ctx, revokedNodeKey(node))
	if errors.Is(err, store.ErrNotFound) {
		return false, nil
	}
	return err == nil, err
}

func (s *Server) clearNodeRevoked(ctx context.Context, node string) error {
	if err := s.store.Delete(ctx, revokedNodeKey(node), 0); err != nil && !errors.Is(err, store.ErrNotFound) {
		return err
	}
	return nil
}

// mutateToken applies f to the stored token with hash, retrying on
// concurrent changes. A token deleted meanwhile is errUnauthorized.
func (s *Server) mutateToken(ctx context.Context, hash string, f func(*Token) error) error {
	for {
		kv, err := s.store.Get(ctx, tokenKey(hash))
		if errors.Is(err, store.ErrNotFound) {
			return errUnauthorized
		}
		if err != nil {
			return err
		}
		var t Token
		if err := json.Unmarshal(kv.Value, &t); err != nil {
			return fmt.Errorf("decode token: %w", err)
		}
		if err := f(&t); err != nil {
			return err
		}
		b, _ := json.Marshal(t)
		_, err = s.store.Update(ctx, kv.Key, b, kv.Revision)
		switch {
		case err == nil:
			return nil
		case errors.Is(err, store.ErrNotFound):
			return errUnauthorized
		case errors.Is(err, store.ErrConflict):
			continue
		default:
			return err
		}
	}
}

// useJoinToken records that the join token with hash registers host: a
// join token registers each host name once, and at most MaxHosts names.
func (s *Server) useJoinToken(ctx context.Context, hash, host string) error {
	return s.mutateToken(ctx, hash, func(t *Token) error {
		if t.expired(s.now()) {
			return &httpError{http.StatusUnauthorized, api.CodeUnauthorized,
				fmt.Sprintf("token expired at %s", t.expiry().UTC().Format(time.RFC3339)), nil}
		}
		if slices.Contains(t.Hosts, host) {
			return conflict(fmt.Sprintf("this join token registered host %q already: a join token registers each host name once; an admin creates a new one (vgrid token create --role join)", host))
		}
		if t.MaxHosts > 0 && len(t.Hosts) >= t.MaxHosts {
			return fmt.Errorf("%w: this join token registered its %d host(s) already", errForbidden, t.MaxHosts)
		}
		t.Hosts = append(t.Hosts, host)
		return nil
	})
}

// joinResumes says whether the join token with hash may register host
// again: it registered host, but that registration did not finish (no
// node token was issued: the replica that handled it lost its leadership
// or died half way, and its client was told the join may or may not
// have been done), and the host has no node token and was not revoked
// since. Otherwise the agent could never join again without an admin.
func (s *Server) joinResumes(ctx context.Context, hash, host string) (bool, error) {
	kv, err := s.store.Get(ctx, tokenKey(hash))
	if err != nil {
		return false, err
	}
	var t Token
	if err := json.Unmarshal(kv.Value, &t); err != nil {
		return false, fmt.Errorf("decode token: %w", err)
	}
	if !slices.Contains(t.Hosts, host) || slices.Contains(t.Joined, host) || t.expired(s.now()) {
		return false, nil
	}
	if revoked, err := s.nodeRevoked(ctx, host); err != nil || revoked {
		return false, err
	}
	ts, err := s.listTokens(ctx)
	if err != nil {
		return false, err
	}
	for _, nt := range ts {
		if nt.Role == RoleNode && nt.Node == host && !nt.expired(s.now()) {
			return false, nil
		}
	}
	return true, nil
}

// joinedWith records that the join token with hash finished registering
// host. Only logged when it fails: the node token is issued, and that
// token already keeps the host from joining again (joinResumes).
func (s *Server) joinedWith(ctx context.Context, hash, host string) {
	err := s.mutateToken(ctx, hash, func(t *Token) error {
		if !slices.Contains(t.Joined, host) {
			t.Joined = append(t.Joined, host)
		}
		return nil
	})
	if err != nil {
		s.log.Warn("join token: record a finished registration", "token_id", tokenID(hash), "node", host, "err", err)
	}
}

// unuseJoinToken undoes useJoinToken when the registration failed after it.
func (s *Server) unuseJoinToken(ctx context.Context, hash, host string) {
	err := s.mutateToken(ctx, hash, func(t *Token) error {
		t.Hosts = slices.DeleteFunc(t.Hosts, func(h string) bool { return h == host })
		return nil
	})
	if err != nil {
		s.log.Warn("join token: undo a failed registration", "token_id", tokenID(hash), "node", host, "err", err)
	}
}

// purgeExpiredTokens deletes the tokens that expired more than expiredKeep
// ago. Errors are logged only: the purge is housekeeping.
func (s *Server) purgeExpiredTokens(ctx context.Context) {
	ts, err := s.listTokens(ctx)
	if err != nil {
		s.log.Warn("purge expired tokens", "err", err)
		return
	}
	cutoff := s.now().Add(-expiredKeep)
	for _, t := range ts {
		if !t.expired(cutoff) {
			continue
		}
		if err := s.store.Delete(ctx, tokenKey(t.hash), t.rev); err != nil && !errors.Is(err, store.ErrNotFound) && !errors.Is(err, store.ErrConflict) {
			s.log.Warn("purge expired token", "token_id", tokenID(t.hash), "err", err)
		}
	}
}

// tokenInfo is what may be shown of a stored token: never its secret nor
// its hash.
func (s *Server) tokenInfo(hash string, t Token, caller string) api.TokenInfo {
	return api.TokenInfo{ID: tokenID(hash), Project: t.Project, Role: t.Role, Node: t.Node, Hosts: t.Hosts,
		MaxHosts: t.MaxHosts, CreatedAt: t.CreatedAt, ExpiresAt: t.expiry(), Expired: t.expired(s.now()),
		Current: caller == hash}
}

// getTokens lists the tokens (admin), optionally only those of
// ?project=, ?role= or ?node=.
func (s *Server) getTokens(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	ts, err := s.listTokens(ctx)
	if err != nil {
		return err
	}
	q := r.URL.Query()
	out := api.TokenList{Tokens: []api.TokenInfo{}}
	for _, t := range ts {
		if p := q.Get("project"); p != "" && t.Project != p {
			continue
		}
		if ro := q.Get("role"); ro != "" && t.Role != ro {
			continue
		}
		if n := q.Get("node"); n != "" && t.Node != n {
			continue
		}
		out.Tokens = append(out.Tokens, s.tokenInfo(t.hash, t.Token, who(ctx).hash))
	}
	sort.SliceStable(out.Tokens, func(i, j int) bool {
		a, b := out.Tokens[i], out.Tokens[j]
		if !a.CreatedAt.Equal(b.CreatedAt) {
			return a.CreatedAt.Before(b.CreatedAt)
		}
		return a.ID < b.ID
	})
	writeJSON(w, http.StatusOK, out)
	return nil
}

var tokenIDRE = regexp.MustCompile(`^[0-9a-f]{8,64}$`)

// deleteToken revokes one token by its ID (admin): its next request is
// refused.
func (s *Server) deleteToken(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	id := r.PathValue("id")
	if !tokenIDRE.MatchString(id) {
		return badRequest("invalid token ID", api.FieldError{Field: "id", Reason: "the ID vgrid token list shows (hex digits)"})
	}
	kvs, err := s.store.List(ctx, tokenKey(id))
	if err != nil {
		return err
	}
	switch len(kvs) {
	case 0:
		return notFound(fmt.Sprintf("token %s", id))
	case 1:
	default:
		return conflict(fmt.Sprintf("token ID %s is ambiguous: %d tokens start with it; give more digits", id, len(kvs)))
	}
	kv := kvs[0]
	var t Token
	if err := json.Unmarshal(kv.Value, &t); err != nil {
		return fmt.Errorf("decode token: %w", err)
	}
	if err := s.store.Delete(ctx, kv.Key, 0); err != nil {
		return err
	}
	hash := strings.TrimPrefix(kv.Key, "tokens/")
	s.log.Info("token revoked", "token_id", tokenID(hash), "role", t.Role, "project", t.Project, "node", t.Node, "by", who(ctx).id())
	writeJSON(w, http.StatusOK, s.tokenInfo(hash, t, who(ctx).hash))
	return nil
}

// postNodeToken rotates the caller's node token: it answers a new one and
// the caller's stops working after RotationGrace. Other node tokens of the
// host (one whose rotation answer was lost) are revoked.
func (s *Server) postNodeToken(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	name, err := nodeOf(r)
	if err != nil {
		return err
	}
	p := who(ctx)
	now := s.now()
	graceEnd := now.Add(RotationGrace)
	prev := graceEnd
	if err := s.mutateToken(ctx, p.hash, func(t *Token) error {
		if !t.ExpiresAt.IsZero() && t.ExpiresAt.Before(graceEnd) {
			prev = t.ExpiresAt // rotated before: its grace stays as it was
			return nil
		}
		t.ExpiresAt = graceEnd
		return nil
	}); err != nil {
		return err
	}
	secret, t, err := s.issueToken(ctx, Token{Project: p.Project, Role: RoleNode, Node: name})
	if err != nil {
		return err
	}
	hash := hashToken(secret)
	if _, err := s.revokeNodeTokens(ctx, name, p.hash, hash); err != nil {
		return err
	}
	s.log.Info("node token rotated", "node", name, "token_id", tokenID(hash), "previous", p.id(), "previous_expires_at", prev)
	writeJSON(w, http.StatusCreated, api.NodeToken{Node: name, Token: secret, ID: tokenID(hash),
		IssuedAt: t.CreatedAt, ExpiresAt: t.ExpiresAt, PreviousExpiresAt: prev})
	return nil
}

// postNodeRevoke revokes a host (admin): every node token and client
// certificate it has stops working at once, and its name may be registered again with a join token
// that has not registered that name before. The node's record and the
// workspaces placed on it stay as they are.
func (s *Server) postNodeRevoke(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	name := r.PathValue("node")
	_, err := s.store.Get(ctx, "nodes/"+name)
	known := err == nil
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return err
	}
	n, err := s.revokeNodeTokens(ctx, name)
	if err != nil {
		return err
	}
	certs, err := s.dropNodeCerts(ctx, name)
	if err != nil {
		return err
	}
	if !known && n == 0 && certs == 0 {
		return notFound(fmt.Sprintf("node %q", name))
	}
	if known {
		b, _ := json.Marshal(revokedNode{Node: name, RevokedAt: s.now(), By: who(ctx).id()})
		if _, err := s.store.Update(ctx, revokedNodeKey(name), b, 0); err != nil {
			return err
		}
	}
	s.log.Info("node revoked", "node", name, "tokens", n, "certificates", certs, "by", who(ctx).id())
	writeJSON(w, http.StatusOK, api.NodeRevoked{Node: name, TokensRevoked: n, CertificatesRevoked: certs})
	return nil
}

// whoami is the answer of GET /whoami.
func whoami(p principal) api.Whoami {
	return api.Whoami{Project: p.Project, Role: p.Role, Node: p.Node, TokenID: p.id(),
		CreatedAt: p.CreatedAt, ExpiresAt: p.expiry()}
}

// IssueNodeToken gives a registered host a fresh node token as an admin
// re-registering it would: the host's other node tokens are revoked and
// a revocation mark is cleared. vgrid up uses it for its own agent, whose
// saved token expired while vgrid up was down (a join token cannot
// register a known host again).
func (s *Server) IssueNodeToken(ctx context.Context, project, node string) (api.NodeToken, error) {
	if _, err := s.store.Get(ctx, "nodes/"+node); err != nil {
		return api.NodeToken{}, fmt.Errorf("node %s: %w", node, err)
	}
	if _, err := s.revokeNodeTokens(ctx, node); err != nil {
		return api.NodeToken{}, err
	}
	if err := s.clearNodeRevoked(ctx, node); err != nil {
		return api.NodeToken{}, err
	}
	secret, t, err := s.issueToken(ctx, Token{Project: project, Role: RoleNode, Node: node})
	if err != nil {
		return api.NodeToken{}, err
	}
	id := tokenID(hashToken(secret))
	s.log.Info("node token issued in-process", "node", node, "token_id", id)
	return api.NodeToken{Node: node, Token: secret, ID: id, IssuedAt: t.CreatedAt, ExpiresAt: t.ExpiresAt}, nil
}
