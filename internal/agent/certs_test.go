package agent

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"vgrid/internal/client"
	"vgrid/internal/model"
	"vgrid/internal/server"
)

// asHost is a client with a node token and the agent's certificate of the
// moment.
func (r *rig) asHost(token string) *client.Client {
	r.t.Helper()
	cert, _ := r.agent.TLS()
	cl, err := client.New(client.Config{Server: r.hs.URL, Token: token, CACert: r.ca,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return cert() }})
	if err != nil {
		r.t.Fatal(err)
	}
	return cl
}

// peekCert reads the saved certificate and key without LoadCertificate's
// recovery (which renames node.key.new: done while the agent saves, it
// made the agent's own rename fail, and its registration with it).
func peekCert(dir string) (tls.Certificate, error) {
	return tls.LoadX509KeyPair(CertFile(dir), KeyFile(dir))
}

// savedCert reads the agent's saved certificate, waiting for its first
// registration to have written it.
func savedCert(t *testing.T, dir string) tls.Certificate {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := peekCert(dir)
		if err == nil {
			return c
		}
		if time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// The agent joins with a certificate request and keeps its key and
// certificate; it renews the certificate (with a new key) once half of its
// lifetime has passed, saves both, and uses the new one without a restart:
// its requests go on after the old certificate's grace. A restarted agent
// resumes with the saved key and certificate.
func TestAgentRenewsCertificateAtHalfLifeAndSurvivesRestart(t *testing.T) {
	clk := &fakeClock{t: time.Now().UTC().Truncate(time.Second)}
	const ttl = 2 * time.Hour
	r := newRigCerts(t, func(c *server.Config) {
		c.Now = clk.Now
		c.NodeTimeout = 30 * 24 * time.Hour // the fake clock jumps
	}, func(c *Config) {
		c.Now = clk.Now
		c.Heartbeat = 50 * time.Millisecond
	}, ttl)
	ctx := context.Background()
	t0 := clk.Now()
	first := savedCert(t, r.dataDir)
	if cn := first.Leaf.Subject.CommonName; cn != "h1" || !first.Leaf.NotAfter.Equal(t0.Add(ttl)) {
		t.Fatalf("certificate at registration: CN %q until %s, want h1 until %s", cn, first.Leaf.NotAfter, t0.Add(ttl))
	}
	if _, ok := first.PrivateKey.(*ecdsa.PrivateKey); !ok {
		t.Fatalf("host key %T, want ECDSA", first.PrivateKey)
	}
	if fi, err := os.Stat(KeyFile(r.dataDir)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("node.key: %v %v, want mode 0600", fi.Mode(), err)
	}
	firstKey, _ := os.ReadFile(KeyFile(r.dataDir))
	firstCrt, _ := os.ReadFile(CertFile(r.dataDir))
	cred := credOf(t, r.dataDir)

	// TLS() gives the current certificate and the CA that signed it, for
	// serving (transfers between agents) as well as for clients.
	// (The agent saves the certificate before it takes it up.)
	certFn, pool := r.agent.TLS()
	r.eventually("TLS() gives the certificate saved at registration", func() bool {
		c, err := certFn()
		return err == nil && c.Leaf.SerialNumber.Cmp(first.Leaf.SerialNumber) == 0
	})
	if _, err := first.Leaf.Verify(x509.VerifyOptions{Roots: pool, CurrentTime: t0, DNSName: "h1", KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
		t.Fatalf("the host certificate as a server's: %v", err)
	}

	half := first.Leaf.NotBefore.Add(first.Leaf.NotAfter.Sub(first.Leaf.NotBefore) / 2)
	clk.Add(half.Sub(t0) - time.Minute)
	time.Sleep(300 * time.Millisecond) // a few heartbeats
	if c := savedCert(t, r.dataDir); c.Leaf.SerialNumber.Cmp(first.Leaf.SerialNumber) != 0 {
		t.Fatal("renewed before half of the lifetime passed")
	}
	clk.Add(time.Minute)
	r.eventually("the certificate renewed", func() bool {
		c, err := peekCert(r.dataDir)
		return err == nil && c.Leaf.SerialNumber.Cmp(first.Leaf.SerialNumber) != 0
	})
	second := savedCert(t, r.dataDir)
	if now := clk.Now(); !second.Leaf.NotAfter.Equal(now.Add(ttl)) || second.Leaf.Subject.CommonName != "h1" {
		t.Fatalf("renewed certificate: CN %q until %s (now %s)", second.Leaf.Subject.CommonName, second.Leaf.NotAfter, now)
	}
	if k, _ := os.ReadFile(KeyFile(r.dataDir)); string(k) == string(firstKey) {
		t.Fatal("the renewal kept the old key")
	}
	for _, pat := range []string{".node.key*", ".node.crt.*", "node.key.new"} {
		if tmp, _ := filepath.Glob(filepath.Join(r.dataDir, pat)); len(tmp) != 0 {
			t.Fatalf("temporary files left: %v", tmp)
		}
	}
	r.eventually("TLS() gives the new certificate", func() bool {
		c, err := certFn()
		return err == nil && c.Leaf.SerialNumber.Cmp(second.Leaf.SerialNumber) == 0
	})
	// The old certificate: accepted during its grace, refused after.
	old, err := client.New(client.Config{Server: r.hs.URL, Token: cred.Token, CACert: r.ca, ClientCert: string(firstCrt), ClientKey: string(firstKey)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := old.Whoami(ctx); err != nil {
		t.Fatalf("the old certificate within its grace: %v", err)
	}
	clk.Add(server.CertRenewalGrace)
	if _, err := old.WithToken(cred.Token).Whoami(ctx); status(err) != http.StatusForbidden {
		t.Fatalf("the old certificate after its grace: %v, want 403", err)
	}
	// The agent goes on with the new certificate, on new connections.
	if _, err := r.user.CreateWorkspace(ctx, []byte(spec)); err != nil {
		t.Fatal(err)
	}
	r.waitState("w1", model.StateRunning)

	// Restart: the agent resumes with the saved key, certificate and token.
	r.stopAgent()
	r.startAgent()
	if _, err := r.user.StopWorkspace(ctx, "w1"); err != nil {
		t.Fatal(err)
	}
	r.waitState("w1", model.StateStopped)
	if c := savedCert(t, r.dataDir); c.Leaf.SerialNumber.Cmp(second.Leaf.SerialNumber) != 0 {
		t.Fatal("the restarted agent did not resume with its saved certificate")
	}
	if c := credOf(t, r.dataDir); c.Token != cred.Token {
		t.Fatal("the restarted agent did not resume with its saved token")
	}
}

// selfSigned is a key and a certificate for it (for the file tests).
func selfSigned(t *testing.T, cn string) (*ecdsa.PrivateKey, string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return key, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}

// A crash between saving a renewal's certificate and its key leaves a pair
// LoadCertificate finishes; a renewal that never got its certificate
// leaves the old pair.
func TestLoadCertificateAfterAnInterruptedSave(t *testing.T) {
	dir := t.TempDir()
	keyA, certA := selfSigned(t, "a")
	if err := SaveKeyAndCertificate(dir, keyA, certA); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(newKeyFile(dir)); !os.IsNotExist(err) {
		t.Fatalf("node.key.new after a save: %v", err)
	}
	keyB, certB := selfSigned(t, "b")
	pb, _ := keyPEM(keyB)
	for _, tc := range []struct {
		name   string
		crt    string // node.crt after the crash
		wantCN string
	}{
		{"the certificate saved, not the key", certB, "b"},
		{"the new key saved, not the certificate", certA, "a"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := SaveKeyAndCertificate(dir, keyA, certA); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(newKeyFile(dir), pb, 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(CertFile(dir), []byte(tc.crt), 0o644); err != nil {
				t.Fatal(err)
			}
			c, err := LoadCertificate(dir)
			if err != nil || c.Leaf.Subject.CommonName != tc.wantCN {
				t.Fatalf("loaded %v %v, want CN %s", c.Leaf, err, tc.wantCN)
			}
			if _, err := os.Stat(newKeyFile(dir)); !os.IsNotExist(err) {
				t.Fatalf("node.key.new left: %v", err)
			}
			if c2, err := LoadCertificate(dir); err != nil || c2.Leaf.Subject.CommonName != tc.wantCN {
				t.Fatalf("loaded again: %v %v", c2.Leaf, err)
			}
		})
	}
	// A certificate that matches neither key is an error, not a guess.
	_, certC := selfSigned(t, "c")
	if err := os.WriteFile(CertFile(dir), []byte(certC), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadCertificate(dir); err == nil {
		t.Fatal("a certificate without its key loaded")
	}
}
