package server

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"strings"
	"testing"
	"time"

	"vgrid/api"
	"vgrid/internal/client"
	"vgrid/internal/model"
)

var hostN2 = model.Node{Name: "n2", Accel: "tcg", Capacity: model.Resources{MilliCPU: 2000, Memory: 8 * model.GiB, Disk: 100 * model.GiB}}

// wantStatus fails unless err is an API error with status (and, if given,
// a message containing msg).
func wantStatus(t *testing.T, what string, err error, status int, msg string) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s: no error, want %d", what, status)
	}
	ce := apiErr(t, err)
	if ce.Status != status || !strings.Contains(ce.Body.Message, msg) {
		t.Fatalf("%s: %d %q, want %d with %q", what, ce.Status, ce.Body.Message, status, msg)
	}
}

func (e *env) joinToken(req api.TokensPost) api.TokenCreated {
	e.t.Helper()
	if req.Project == "" {
		req.Project = "default"
	}
	req.Role = RoleJoin
	tok, err := e.admin.CreateTokenWith(context.Background(), req)
	if err != nil {
		e.t.Fatalf("create join token: %v", err)
	}
	return tok
}

// A join token registers each host name once: after an admin revoked the
// host, the same join token cannot register it again (a new one can), and
// MaxHosts bounds how many hosts it registers.
func TestJoinTokenRegistersEachNameOnce(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	join := e.joinToken(api.TokensPost{})
	if _, err := e.admin.WithToken(join.Token).RegisterNode(ctx, hostN2, e.csr("n2")); err != nil {
		t.Fatal(err)
	}
	wantStatus(t, "the same join token, the same name", func() error {
		_, err := e.admin.WithToken(join.Token).RegisterNode(ctx, hostN2, e.csr("n2"))
		return err
	}(), http.StatusConflict, "registered already")
	if _, err := e.admin.RevokeNode(ctx, "n2"); err != nil {
		t.Fatal(err)
	}
	wantStatus(t, "the same join token after the host was revoked", func() error {
		_, err := e.admin.WithToken(join.Token).RegisterNode(ctx, hostN2, e.csr("n2"))
		return err
	}(), http.StatusConflict, "registers each host name once")
	if _, err := e.admin.WithToken(e.joinToken(api.TokensPost{}).Token).RegisterNode(ctx, hostN2, e.csr("n2")); err != nil {
		t.Fatalf("a new join token for the revoked host: %v", err)
	}

	one := e.joinToken(api.TokensPost{MaxHosts: 1})
	if _, err := e.admin.WithToken(one.Token).RegisterNode(ctx, model.Node{Name: "n3", Capacity: hostN2.Capacity}, e.csr("n3")); err != nil {
		t.Fatal(err)
	}
	wantStatus(t, "a second host with a max-hosts 1 join token", func() error {
		_, err := e.admin.WithToken(one.Token).RegisterNode(ctx, model.Node{Name: "n4", Capacity: hostN2.Capacity}, e.csr("n4"))
		return err
	}(), http.StatusForbidden, "registered its 1 host")
	// A failed registration does not use up the token's name.
	other := e.joinToken(api.TokensPost{})
	_, err := e.admin.WithToken(other.Token).RegisterNode(ctx, model.Node{Name: "n5"}, e.csr("n5"))
	wantStatus(t, "a host without capacity", err, http.StatusBadRequest, "")
	if _, err := e.admin.WithToken(other.Token).RegisterNode(ctx, model.Node{Name: "n5", Capacity: hostN2.Capacity}, e.csr("n5")); err != nil {
		t.Fatalf("the name after a failed registration: %v", err)
	}
}

// Join tokens expire: 24 h by default, the TTL given, never more than
// MaxJoinTTL; an expired one is refused with 401 saying when it expired.
func TestJoinTokenExpires(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	short := e.joinToken(api.TokensPost{TTL: model.Duration(time.Hour)})
	if want := e.clk.Now().Add(time.Hour); !short.ExpiresAt.Equal(want) || short.ID == "" {
		t.Fatalf("created: id %q expires %s, want an ID and %s", short.ID, short.ExpiresAt, want)
	}
	def, err := e.admin.CreateToken(ctx, "default", RoleJoin)
	if err != nil {
		t.Fatal(err)
	}
	if want := e.clk.Now().Add(DefaultJoinTTL); !def.ExpiresAt.Equal(want) {
		t.Fatalf("default join TTL: expires %s, want %s", def.ExpiresAt, want)
	}
	_, err = e.admin.CreateTokenWith(ctx, api.TokensPost{Project: "default", Role: RoleJoin, TTL: model.Duration(MaxJoinTTL + time.Hour)})
	wantStatus(t, "a join token longer than the maximum", err, http.StatusBadRequest, "invalid token request")
	_, err = e.admin.CreateTokenWith(ctx, api.TokensPost{Project: "default", Role: RoleUser, MaxHosts: 3})
	wantStatus(t, "max_hosts on a user token", err, http.StatusBadRequest, "invalid token request")

	e.clk.Add(time.Hour)
	_, err = e.admin.WithToken(short.Token).RegisterNode(ctx, hostN2, e.csr("n2"))
	wantStatus(t, "an expired join token", err, http.StatusUnauthorized, "token expired at "+e.clk.Now().UTC().Format(time.RFC3339))
	e.clk.Add(DefaultJoinTTL - time.Hour)
	_, err = e.admin.WithToken(def.Token).RegisterNode(ctx, hostN2, e.csr("n2"))
	wantStatus(t, "a join token after the default TTL", err, http.StatusUnauthorized, "token expired at")
}

// Only admins create tokens: a user, join or node token gets 403.
func TestOnlyAdminsCreateTokens(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	user, err := e.admin.CreateProject(ctx, "p1")
	if err != nil {
		t.Fatal(err)
	}
	join := e.joinToken(api.TokensPost{})
	for _, tc := range []struct {
		who string
		cl  *client.Client
	}{{"user", e.admin.WithToken(user.Token)}, {"join", e.admin.WithToken(join.Token)}, {"node", e.node}} {
		for _, role := range []string{RoleJoin, RoleUser, RoleAdmin} {
			_, err := tc.cl.CreateToken(ctx, "p1", role)
			wantStatus(t, tc.who+" token creating a "+role+" token", err, http.StatusForbidden, "")
		}
		_, err := tc.cl.Tokens(ctx)
		wantStatus(t, tc.who+" token listing tokens", err, http.StatusForbidden, "")
		_, err = tc.cl.RevokeToken(ctx, join.ID)
		wantStatus(t, tc.who+" token revoking a token", err, http.StatusForbidden, "")
		_, err = tc.cl.RevokeNode(ctx, "n1")
		wantStatus(t, tc.who+" token revoking a node", err, http.StatusForbidden, "")
	}
}

// Node tokens expire after NodeTokenTTL; whoami and the registration say
// when.
func TestNodeTokenExpires(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	t0 := e.clk.Now()
	me, err := e.node.Whoami(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if me.Role != RoleNode || me.Node != "n1" || me.TokenID == "" || !me.CreatedAt.Equal(t0) || !me.ExpiresAt.Equal(t0.Add(NodeTokenTTL)) {
		t.Fatalf("whoami %+v, want node n1 with an ID, created %s, expiring %s", me, t0, t0.Add(NodeTokenTTL))
	}
	reg, err := e.admin.WithToken(e.joinToken(api.TokensPost{}).Token).RegisterNode(ctx, hostN2, e.csr("n2"))
	if err != nil {
		t.Fatal(err)
	}
	if !reg.IssuedAt.Equal(t0) || !reg.ExpiresAt.Equal(t0.Add(NodeTokenTTL)) || reg.ID == "" {
		t.Fatalf("registration: id %q issued %s expires %s", reg.ID, reg.IssuedAt, reg.ExpiresAt)
	}
	e.clk.Add(NodeTokenTTL - time.Second)
	if err := e.node.Heartbeat(ctx, model.Node{Name: "n1"}); err != nil {
		t.Fatalf("a node token a second before it expires: %v", err)
	}
	e.clk.Add(time.Second)
	_, err = e.node.Assignments(ctx, "n1", 0, 0)
	wantStatus(t, "an expired node token", err, http.StatusUnauthorized, "token expired at")
	// The admin's token does not expire.
	if _, err := e.admin.Nodes(ctx); err != nil {
		t.Fatalf("the admin token: %v", err)
	}
}

// Rotation gives a new node token; the old one works for the grace period
// and then no more. A lost rotation answer is no leak: rotating again
// revokes the token nobody kept.
func TestNodeTokenRotation(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	old := e.node
	e.clk.Add(time.Hour)
	nt, err := old.RotateNodeToken(ctx, "n1")
	if err != nil {
		t.Fatal(err)
	}
	now := e.clk.Now()
	if nt.Token == "" || nt.Token == old.Token() || !nt.IssuedAt.Equal(now) || !nt.ExpiresAt.Equal(now.Add(NodeTokenTTL)) ||
		!nt.PreviousExpiresAt.Equal(now.Add(RotationGrace)) {
		t.Fatalf("rotation answer %+v", nt)
	}
	_, err = old.RotateNodeToken(ctx, "n2")
	wantStatus(t, "rotating another node's token", err, http.StatusForbidden, "")

	lost := nt
	nt, err = old.RotateNodeToken(ctx, "n1") // the answer above was "lost"
	if err != nil {
		t.Fatalf("rotating again within the grace period: %v", err)
	}
	if !nt.PreviousExpiresAt.Equal(now.Add(RotationGrace)) {
		t.Fatalf("a second rotation moved the old token's end to %s", nt.PreviousExpiresAt)
	}
	_, err = old.WithToken(lost.Token).Assignments(ctx, "n1", 0, 0)
	wantStatus(t, "the token of a lost rotation answer", err, http.StatusUnauthorized, "")

	fresh := old.WithToken(nt.Token)
	e.clk.Add(RotationGrace - time.Second)
	if _, err := old.Assignments(ctx, "n1", 0, 0); err != nil {
		t.Fatalf("the old token within the grace period: %v", err)
	}
	e.clk.Add(time.Second)
	_, err = old.Assignments(ctx, "n1", 0, 0)
	wantStatus(t, "the old token after the grace period", err, http.StatusUnauthorized, "token expired at")
	if _, err := fresh.Assignments(ctx, "n1", 0, 0); err != nil {
		t.Fatalf("the new token: %v", err)
	}
	if me, err := fresh.Whoami(ctx); err != nil || me.TokenID != nt.ID || !me.ExpiresAt.Equal(nt.ExpiresAt) {
		t.Fatalf("whoami with the new token: %+v %v", me, err)
	}
}

// A revoked token's next request is refused.
func TestRevokedTokenRefusedAtOnce(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	user, err := e.admin.CreateProject(ctx, "p1")
	if err != nil {
		t.Fatal(err)
	}
	ucl := e.admin.WithToken(user.Token)
	if _, err := ucl.ListWorkspaces(ctx); err != nil {
		t.Fatal(err)
	}
	me, err := ucl.Whoami(ctx)
	if err != nil {
		t.Fatal(err)
	}
	revoked, err := e.admin.RevokeToken(ctx, me.TokenID)
	if err != nil {
		t.Fatal(err)
	}
	if revoked.ID != me.TokenID || revoked.Role != RoleUser || revoked.Project != "p1" {
		t.Fatalf("revoked %+v", revoked)
	}
	_, err = ucl.ListWorkspaces(ctx)
	wantStatus(t, "a revoked user token", err, http.StatusUnauthorized, "")
	_, err = e.admin.RevokeToken(ctx, me.TokenID)
	wantStatus(t, "revoking it again", err, http.StatusNotFound, "")
	_, err = e.admin.RevokeToken(ctx, "xyz")
	wantStatus(t, "a malformed ID", err, http.StatusBadRequest, "")

	// A node token revoked by ID stops at once too.
	nme, err := e.node.Whoami(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.admin.RevokeToken(ctx, nme.TokenID); err != nil {
		t.Fatal(err)
	}
	err = e.node.Heartbeat(ctx, model.Node{Name: "n1"})
	wantStatus(t, "a revoked node token", err, http.StatusUnauthorized, "")
}

// Revoking a node stops every node token of the host at once, and the
// host name can be registered again with a fresh join token.
func TestNodeRevoke(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	reg, err := e.admin.WithToken(e.joinToken(api.TokensPost{}).Token).RegisterNode(ctx, hostN2, e.csr("n2"))
	if err != nil {
		t.Fatal(err)
	}
	n2 := e.asNode(reg)
	nt, err := n2.RotateNodeToken(ctx, "n2") // two tokens now: the new one and the old one in its grace period
	if err != nil {
		t.Fatal(err)
	}
	out, err := e.admin.RevokeNode(ctx, "n2")
	if err != nil {
		t.Fatal(err)
	}
	if out.Node != "n2" || out.TokensRevoked != 2 || out.CertificatesRevoked != 1 {
		t.Fatalf("revoke answer %+v, want n2 with 2 tokens and 1 certificate", out)
	}
	for _, tok := range []string{reg.Token, nt.Token} {
		err := n2.WithToken(tok).Heartbeat(ctx, hostN2)
		wantStatus(t, "a node token of a revoked host", err, http.StatusUnauthorized, "")
	}
	if _, err := e.node.Assignments(ctx, "n1", 0, 0); err != nil {
		t.Fatalf("another host's token: %v", err)
	}
	reg2, err := e.admin.WithToken(e.joinToken(api.TokensPost{}).Token).RegisterNode(ctx, hostN2, e.csr("n2"))
	if err != nil {
		t.Fatalf("registering the revoked host with a fresh join token: %v", err)
	}
	if err := e.asNode(reg2).Heartbeat(ctx, hostN2); err != nil {
		t.Fatal(err)
	}
	// Registered again, it is no longer revoked: another join token
	// cannot take it over.
	_, err = e.admin.WithToken(e.joinToken(api.TokensPost{}).Token).RegisterNode(ctx, hostN2, e.csr("n2"))
	wantStatus(t, "a third join token for the re-registered host", err, http.StatusConflict, "registered already")
	_, err = e.admin.RevokeNode(ctx, "nope")
	wantStatus(t, "revoking an unknown node", err, http.StatusNotFound, "")
}

// The token list names tokens by ID and never shows a secret or a hash.
func TestTokenListHasNoSecrets(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	join := e.joinToken(api.TokensPost{MaxHosts: 2})
	reg, err := e.admin.WithToken(join.Token).RegisterNode(ctx, hostN2, e.csr("n2"))
	if err != nil {
		t.Fatal(err)
	}
	user, err := e.admin.CreateProject(ctx, "p1")
	if err != nil {
		t.Fatal(err)
	}
	var raw []byte
	if err := e.admin.Do(ctx, "GET", "/tokens", nil, &raw); err != nil {
		t.Fatal(err)
	}
	secrets := []string{e.admin.Token(), e.node.Token(), join.Token, reg.Token, user.Token}
	for _, s := range secrets {
		for _, leak := range []string{s, hashToken(s), strings.SplitN(s, "_", 2)[1]} {
			if strings.Contains(string(raw), leak) {
				t.Fatalf("token list shows a secret or a hash: %s", raw)
			}
		}
	}
	var list api.TokenList
	if err := json.Unmarshal(raw, &list); err != nil {
		t.Fatal(err)
	}
	byID := map[string]api.TokenInfo{}
	for _, ti := range list.Tokens {
		byID[ti.ID] = ti
	}
	if len(byID) != len(list.Tokens) || len(list.Tokens) < 5 {
		t.Fatalf("%d tokens, %d IDs: %s", len(list.Tokens), len(byID), raw)
	}
	j := byID[join.ID]
	if j.Role != RoleJoin || j.MaxHosts != 2 || len(j.Hosts) != 1 || j.Hosts[0] != "n2" || !j.ExpiresAt.Equal(join.ExpiresAt) {
		t.Fatalf("join token in the list: %+v", j)
	}
	if n := byID[reg.ID]; n.Role != RoleNode || n.Node != "n2" || n.ExpiresAt.IsZero() {
		t.Fatalf("node token in the list: %+v", n)
	}
	me, _ := e.admin.Whoami(ctx)
	if a := byID[me.TokenID]; a.Role != RoleAdmin || !a.Current || !a.ExpiresAt.IsZero() {
		t.Fatalf("the caller's admin token in the list: %+v", a)
	}
	toks, err := e.admin.Tokens(ctx)
	if err != nil || len(toks) != len(list.Tokens) {
		t.Fatalf("client Tokens: %d %v", len(toks), err)
	}
}

// Tokens stored before tokens had an expiry: a join token expires the
// default TTL after its creation; a node token works (its agent rotates
// it at once).
func TestTokensStoredWithoutExpiry(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	put := func(tok Token) string {
		secret := NewSecret("vgx")
		b, _ := json.Marshal(tok)
		if _, err := e.st.Create(ctx, tokenKey(hashToken(secret)), b); err != nil {
			t.Fatal(err)
		}
		return secret
	}
	t0 := e.clk.Now()
	join := put(Token{Project: "default", Role: RoleJoin, CreatedAt: t0.Add(-DefaultJoinTTL)})
	node := put(Token{Project: "default", Role: RoleNode, Node: "n1", CreatedAt: t0.Add(-30 * 24 * time.Hour)})
	_, err := e.admin.WithToken(join).RegisterNode(ctx, hostN2, e.csr("n2"))
	wantStatus(t, "an old join token", err, http.StatusUnauthorized, "token expired at")
	me, err := e.node.WithToken(node).Whoami(ctx)
	if err != nil || !me.ExpiresAt.IsZero() {
		t.Fatalf("an old node token: %+v %v", me, err)
	}
	nt, err := e.node.WithToken(node).RotateNodeToken(ctx, "n1")
	if err != nil || !nt.ExpiresAt.Equal(t0.Add(NodeTokenTTL)) {
		t.Fatalf("rotating an old node token: %+v %v", nt, err)
	}
	e.clk.Add(RotationGrace)
	_, err = e.node.WithToken(node).Whoami(ctx)
	wantStatus(t, "the old node token after its rotation", err, http.StatusUnauthorized, "token expired at")
}

// IssueNodeToken (vgrid up for its own agent) replaces a host's node
// tokens and clears its revocation.
func TestIssueNodeToken(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	if _, err := e.admin.RevokeNode(ctx, "n1"); err != nil {
		t.Fatal(err)
	}
	nt, err := e.srv.IssueNodeToken(ctx, "default", "n1")
	if err != nil {
		t.Fatal(err)
	}
	// The revocation dropped the host's certificate too: vgrid up issues
	// one as well (IssueNodeCertificate).
	err = e.node.WithToken(nt.Token).Heartbeat(ctx, model.Node{Name: "n1"})
	wantStatus(t, "the issued token with the revoked certificate", err, http.StatusForbidden, "revoked")
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	nc, err := e.srv.IssueNodeCertificate(ctx, "n1", key.Public())
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalECPrivateKey(key)
	issued := e.nodeClient(nt.Token, nc.Certificate, string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der})))
	if err := issued.Heartbeat(ctx, model.Node{Name: "n1"}); err != nil {
		t.Fatalf("the issued token and certificate: %v", err)
	}
	if ok, _ := e.srv.nodeRevoked(ctx, "n1"); ok {
		t.Fatal("n1 still marked revoked")
	}
	if _, err := e.srv.IssueNodeToken(ctx, "default", "nope"); err == nil {
		t.Fatal("a token for an unknown host")
	}
}

// A join whose replica lost its leadership half way (the host registered,
// no node token issued) is carried on by the same join token; a finished
// one is not, nor one for a host another token joined since.
func TestJoinResumes(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	join := e.joinToken(api.TokensPost{})
	// What the interrupted join did: the token used for n2, n2 registered.
	if err := e.srv.useJoinToken(ctx, hashToken(join.Token), "n2"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.srv.ctl.RegisterNode(ctx, hostN2); err != nil {
		t.Fatal(err)
	}
	agent := e.admin.WithToken(join.Token)
	reg, err := agent.RegisterNode(ctx, hostN2, e.csr("n2"))
	if err != nil || reg.Token == "" || reg.Certificate == "" {
		t.Fatalf("the interrupted join again: %v (token %q)", err, reg.Token)
	}
	_, err = agent.RegisterNode(ctx, hostN2, e.csr("n2"))
	wantStatus(t, "a finished join again", err, http.StatusConflict, "registered already")

	// Interrupted for n3, then n3 joined with another token: the first
	// token may not take it over.
	if err := e.srv.useJoinToken(ctx, hashToken(join.Token), "n3"); err != nil {
		t.Fatal(err)
	}
	n3 := hostN2
	n3.Name = "n3"
	if _, err := e.admin.WithToken(e.joinToken(api.TokensPost{}).Token).RegisterNode(ctx, n3, e.csr("n3")); err != nil {
		t.Fatal(err)
	}
	_, err = agent.RegisterNode(ctx, n3, e.csr("n3"))
	wantStatus(t, "a join of a host that holds a node token", err, http.StatusConflict, "registered already")
}

// A host delete interrupted after the record went (its replica lost)
// is finished by sending it again: the host's node tokens and
// certificates are revoked then; only then is it not found.
func TestDeleteNodeFinishes(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	if err := e.srv.ctl.DeleteNode(ctx, "n1"); err != nil { // what the interrupted delete did
		t.Fatal(err)
	}
	out, err := e.admin.DeleteNode(ctx, "n1")
	if err != nil || out.TokensRevoked != 1 || out.CertificatesRevoked == 0 {
		t.Fatalf("the delete again: %+v %v, want n1's token and certificate revoked", out, err)
	}
	_, err = e.node.Assignments(ctx, "n1", 0, 0)
	wantStatus(t, "the deleted host's node token", err, http.StatusUnauthorized, "")
	_, err = e.admin.DeleteNode(ctx, "n1")
	wantStatus(t, "a third delete", err, http.StatusNotFound, "")
}
