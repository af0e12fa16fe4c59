package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"vgrid/internal/agent"
	"vgrid/internal/client"
	"vgrid/internal/controlplane"
	"vgrid/internal/model"
)

func startCP(t *testing.T, ctx context.Context, dir string) (*controlplane.ControlPlane, func()) {
	t.Helper()
	cctx, cancel := context.WithCancel(ctx)
	cp, err := controlplane.Start(cctx, newLogger(), controlplane.Config{DataDir: dir, Listen: "127.0.0.1:0"})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	return cp, func() { cancel(); _ = cp.Wait(cctx); cp.Close() }
}

// hostCSR is a certificate request for host node with a new key.
func hostCSR(t *testing.T, node string) (*ecdsa.PrivateKey, string) {
	t.Helper()
	key, err := agent.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	csr, err := client.NewCertificateRequest(key, node)
	if err != nil {
		t.Fatal(err)
	}
	return key, csr
}

func httpStatus(err error) int {
	var ce *client.Error
	if errors.As(err, &ce) {
		return ce.Status
	}
	return 0
}

// vgrid token create/list/revoke and vgrid node revoke through a real
// control plane; and vgrid up's own agent, whose host was revoked (or
// whose token expired) while vgrid up was down, gets a new node token at
// the next start.
func TestTokenAndNodeRevokeCLI(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	cp, stop := startCP(t, ctx, dir)
	cfg := filepath.Join(dir, "client.json")
	cc, err := client.LoadConfigFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	admin, err := client.New(cc)
	if err != nil {
		t.Fatal(err)
	}

	out, err := cli(t, cfg, "token", "create", "--role", "join", "--ttl", "2h", "--max-hosts", "2")
	if err != nil {
		t.Fatalf("token create: %v\n%s", err, out)
	}
	join := strings.SplitN(out, "\n", 2)[0]
	if !strings.HasPrefix(join, "vgj_") || !strings.Contains(out, "(join, project default) expires") {
		t.Fatalf("token create printed %q", out)
	}
	if _, err := cli(t, cfg, "token", "create", "--role", "join", "--ttl", "1000h"); err == nil || !strings.Contains(err.Error(), "ttl") {
		t.Fatalf("a join token of 1000h: %v, want a refusal naming ttl", err)
	}
	// The local agent's registration, as vgrid up's agent makes it.
	key, csr := hostCSR(t, "local")
	reg, err := admin.WithToken(cp.JoinToken).RegisterNode(ctx, model.Node{Name: "local",
		Capacity: model.Resources{MilliCPU: 2000, Memory: 8 * model.GiB, Disk: 100 * model.GiB}}, csr)
	if err != nil {
		t.Fatal(err)
	}
	agentDir := filepath.Join(dir, "agent")
	if err := os.MkdirAll(agentDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := agent.SaveKeyAndCertificate(agentDir, key, reg.Certificate); err != nil {
		t.Fatal(err)
	}
	if err := agent.SaveCredential(agentDir, agent.Credential{Server: cp.URL, Node: "local", Token: reg.Token, ID: reg.ID,
		IssuedAt: reg.IssuedAt, ExpiresAt: reg.ExpiresAt}); err != nil {
		t.Fatal(err)
	}

	out, err = cli(t, cfg, "token", "list")
	if err != nil {
		t.Fatalf("token list: %v\n%s", err, out)
	}
	for _, secret := range []string{join, reg.Token, cp.JoinToken, cc.Token} {
		if strings.Contains(out, secret) || strings.Contains(out, strings.SplitN(secret, "_", 2)[1][:16]) {
			t.Fatalf("token list shows a secret:\n%s", out)
		}
	}
	if !strings.Contains(out, "ID") || !strings.Contains(out, "(this)") || !strings.Contains(out, "local") || !strings.Contains(out, "never") {
		t.Fatalf("token list:\n%s", out)
	}
	toks, err := admin.Tokens(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var joinID string
	for _, tk := range toks {
		if tk.Role == "join" && tk.MaxHosts == 2 {
			joinID = tk.ID
		}
	}
	if joinID == "" || !strings.Contains(out, joinID) {
		t.Fatalf("the new join token is not in the list:\n%s", out)
	}
	if out, err := cli(t, cfg, "token", "revoke", joinID); err != nil || !strings.Contains(out, "revoked") {
		t.Fatalf("token revoke: %v\n%s", err, out)
	}
	_, csr9 := hostCSR(t, "n9")
	if _, err := admin.WithToken(join).RegisterNode(ctx, model.Node{Name: "n9", Capacity: model.Resources{MilliCPU: 1000, Memory: model.GiB}}, csr9); httpStatus(err) != http.StatusUnauthorized {
		t.Fatalf("a revoked join token: %v, want 401", err)
	}

	// A user token cannot create tokens.
	user, err := admin.CreateProject(ctx, "p1")
	if err != nil {
		t.Fatal(err)
	}
	ucfg := cc
	ucfg.Token = user.Token
	ucfgPath := filepath.Join(dir, "user.json")
	if err := ucfg.Save(ucfgPath); err != nil {
		t.Fatal(err)
	}
	if _, err := cli(t, ucfgPath, "token", "create", "--project", "p1", "--role", "join"); httpStatus(err) != http.StatusForbidden {
		t.Fatalf("a user creating a join token: %v, want 403", err)
	}

	out, err = cli(t, cfg, "node", "revoke", "local")
	if err != nil || !strings.Contains(out, "node local revoked (1 node token(s))") {
		t.Fatalf("node revoke: %v\n%s", err, out)
	}
	if err := admin.WithToken(reg.Token).Heartbeat(ctx, model.Node{Name: "local"}); httpStatus(err) != http.StatusUnauthorized {
		t.Fatalf("the revoked host's token: %v, want 401", err)
	}
	if _, err := cli(t, cfg, "node", "revoke", "nope"); httpStatus(err) != http.StatusNotFound {
		t.Fatalf("revoking an unknown node: %v, want 404", err)
	}
	localJoin := cp.JoinToken
	stop()

	// The next start renews the local agent's credential in place.
	cp, stop = startCP(t, ctx, dir)
	if cp.JoinToken != localJoin {
		t.Fatal("a fresh local join token was replaced at restart")
	}
	cred, err := agent.LoadCredential(agentDir)
	if err != nil {
		t.Fatal(err)
	}
	if cred.Token == reg.Token || cred.Node != "local" || cred.Server != cp.URL || cred.ExpiresAt.IsZero() {
		t.Fatalf("local agent credential after the restart: node %q server %q expires %s (same token: %v)",
			cred.Node, cred.Server, cred.ExpiresAt, cred.Token == reg.Token)
	}
	// Its certificate was revoked with the host: it has a new one too,
	// for the key it had.
	pair, err := agent.LoadCertificate(agentDir)
	if err != nil {
		t.Fatal(err)
	}
	if pair.Leaf.Subject.CommonName != "local" || pair.Leaf.Equal(parseCert(t, reg.Certificate)) || !pair.Leaf.PublicKey.(*ecdsa.PublicKey).Equal(key.Public()) {
		t.Fatalf("local agent certificate after the restart: CN %q, the same as before: %v", pair.Leaf.Subject.CommonName, pair.Leaf.Equal(parseCert(t, reg.Certificate)))
	}
	cc, _ = client.LoadConfigFile(cfg)
	hc := cc
	hc.Token = cred.Token
	hc.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &pair, nil }
	host, err := client.New(hc)
	if err != nil {
		t.Fatal(err)
	}
	if err := host.Heartbeat(ctx, model.Node{Name: "local"}); err != nil {
		t.Fatalf("the renewed local agent token and certificate: %v", err)
	}
	// A restart with both still good changes neither.
	stop()
	_, stop = startCP(t, ctx, dir)
	defer stop()
	if c, err := agent.LoadCredential(agentDir); err != nil || c.Token != cred.Token {
		t.Fatalf("the token after a second restart: %v (changed: %v)", err, c.Token != cred.Token)
	}
	if p2, err := agent.LoadCertificate(agentDir); err != nil || !p2.Leaf.Equal(pair.Leaf) {
		t.Fatalf("the certificate after a second restart: %v", err)
	}
}

func parseCert(t *testing.T, s string) *x509.Certificate {
	t.Helper()
	blk, _ := pem.Decode([]byte(s))
	if blk == nil {
		t.Fatal("not PEM")
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}
