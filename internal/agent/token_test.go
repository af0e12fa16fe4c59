package agent

import (
	"context"
	"crypto/x509"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"vgrid/internal/client"
	"vgrid/internal/model"
	"vgrid/internal/server"
)

// credOf reads the agent's saved credential, waiting for its first
// registration to have written it.
func credOf(t *testing.T, dir string) Credential {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := LoadCredential(dir)
		if err == nil {
			return c
		}
		if time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func status(err error) int {
	var ce *client.Error
	if errors.As(err, &ce) {
		return ce.Status
	}
	return 0
}

// The agent rotates its node token once half of its lifetime has passed,
// saves the new one (atomically: no temporary file is left) and uses it;
// the old one stops after the grace period; a restarted agent resumes with
// the saved token although its join token has long expired.
func TestAgentRotatesNodeTokenAndSurvivesRestart(t *testing.T) {
	clk := &fakeClock{t: time.Now().UTC().Truncate(time.Second)}
	r := newRigAgent(t, func(c *server.Config) {
		c.Now = clk.Now
		c.NodeTimeout = 30 * 24 * time.Hour // the fake clock jumps
	}, func(c *Config) {
		c.Now = clk.Now
		c.Heartbeat = 50 * time.Millisecond
	})
	ctx := context.Background()
	t0 := clk.Now()
	first := credOf(t, r.dataDir)
	if first.Node != "h1" || first.ID == "" || !first.IssuedAt.Equal(t0) || !first.ExpiresAt.Equal(t0.Add(server.NodeTokenTTL)) {
		t.Fatalf("saved at registration: %+v", first)
	}
	clk.Add(server.NodeTokenTTL/2 - time.Minute)
	time.Sleep(300 * time.Millisecond) // a few heartbeats
	if c := credOf(t, r.dataDir); c.Token != first.Token {
		t.Fatal("rotated before half of the lifetime passed")
	}
	clk.Add(time.Minute)
	r.eventually("the node token rotated", func() bool {
		c, err := LoadCredential(r.dataDir)
		return err == nil && c.Token != first.Token
	})
	second := credOf(t, r.dataDir)
	if now := clk.Now(); !second.IssuedAt.Equal(now) || !second.ExpiresAt.Equal(now.Add(server.NodeTokenTTL)) || second.ID == first.ID {
		t.Fatalf("rotated credential %+v (now %s)", second, now)
	}
	if tmp, _ := filepath.Glob(filepath.Join(r.dataDir, ".node.json.*")); len(tmp) != 0 {
		t.Fatalf("temporary files left: %v", tmp)
	}
	old := r.asHost(first.Token)
	if _, err := old.Whoami(ctx); err != nil {
		t.Fatalf("the old token within the grace period: %v", err)
	}
	clk.Add(server.RotationGrace)
	if _, err := old.Whoami(ctx); status(err) != http.StatusUnauthorized {
		t.Fatalf("the old token after the grace period: %v, want 401", err)
	}
	// The agent works with the new token.
	if _, err := r.user.CreateWorkspace(ctx, []byte(spec)); err != nil {
		t.Fatal(err)
	}
	r.waitState("w1", model.StateRunning)

	// Restart: the join token (24 h) expired days ago, so only the saved
	// node token can let the agent in.
	r.stopAgent()
	clk.Add(time.Hour)
	if _, err := r.user.WithToken(r.join).Whoami(ctx); status(err) != http.StatusUnauthorized {
		t.Fatalf("the join token: %v, want 401 (expired)", err)
	}
	r.startAgent()
	if _, err := r.user.StopWorkspace(ctx, "w1"); err != nil {
		t.Fatal(err)
	}
	r.waitState("w1", model.StateStopped)
	if c := credOf(t, r.dataDir); c.Token != second.Token {
		t.Fatal("the restarted agent did not resume with its saved token")
	}
}

// An agent whose saved token expired while it was down cannot join again
// by itself (a join token does not register a known host); once an admin
// revoked the host, it joins with a new join token.
func TestAgentWithExpiredTokenJoinsAgainAfterRevoke(t *testing.T) {
	clk := &fakeClock{t: time.Now().UTC().Truncate(time.Second)}
	r := newRigAgent(t, func(c *server.Config) {
		c.Now = clk.Now
		c.NodeTimeout = 30 * 24 * time.Hour
	}, func(c *Config) { c.Now = clk.Now })
	ctx := context.Background()
	first := credOf(t, r.dataDir)
	r.stopAgent()
	clk.Add(server.NodeTokenTTL + time.Hour)
	if _, err := r.user.WithToken(first.Token).Whoami(ctx); status(err) != http.StatusUnauthorized {
		t.Fatalf("the saved token: %v, want 401 (expired)", err)
	}
	// A new join token alone is refused: the host is known.
	join, err := r.srv.CreateToken(ctx, "default", server.RoleJoin)
	if err != nil {
		t.Fatal(err)
	}
	key, err := NewKey()
	if err != nil {
		t.Fatal(err)
	}
	csr, err := client.NewCertificateRequest(key, "h1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.user.WithToken(join).RegisterNode(ctx, model.Node{Name: "h1", Capacity: model.Resources{MilliCPU: 1000, Memory: model.GiB}}, csr); status(err) != http.StatusConflict {
		t.Fatalf("a join token for the known host: %v, want 409", err)
	}
	if _, err := r.user.RevokeNode(ctx, "h1"); err != nil {
		t.Fatal(err)
	}
	r.join = join
	r.startAgent()
	r.eventually("the agent registered again, with a new certificate", func() bool {
		c, err := LoadCredential(r.dataDir)
		if err != nil || c.Token == first.Token {
			return false
		}
		// The new certificate, not the expired one it started with (the
		// token is saved first).
		cert, _ := r.agent.TLS()
		cc, err := cert()
		if err != nil || len(cc.Certificate) == 0 {
			return false
		}
		leaf, err := x509.ParseCertificate(cc.Certificate[0])
		return err == nil && leaf.NotAfter.After(clk.Now())
	})
	c := credOf(t, r.dataDir)
	if _, err := r.asHost(c.Token).Whoami(ctx); err != nil {
		t.Fatalf("the new node token: %v", err)
	}
	if fi, err := os.Stat(CredentialFile(r.dataDir)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("node.json mode %v %v, want 0600", fi.Mode(), err)
	}
}
