package server

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"vgrid/api"
	"vgrid/internal/client"
	"vgrid/internal/model"
)

// keyPEMOf encodes an ECDSA key.
func keyPEMOf(t testing.TB, key *ecdsa.PrivateKey) string {
	t.Helper()
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}))
}

// signed makes a key and a certificate for it from tmpl, signed by the CA
// of f (a serial is set if tmpl has none); it returns both as PEM.
func signed(t testing.TB, f TLSFiles, tmpl *x509.Certificate) (certPEM, keyPEM string) {
	t.Helper()
	ca, caKey, err := f.loadCA()
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if tmpl.SerialNumber == nil {
		tmpl.SerialNumber = nodeSerial()
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})), keyPEMOf(t, key)
}

func parseCertPEM(t testing.TB, s string) *x509.Certificate {
	t.Helper()
	blk, _ := pem.Decode([]byte(s))
	if blk == nil {
		t.Fatalf("not PEM: %q", s)
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// status is the HTTP status of an error: an API error's, 0 if none.
func statusOf(t *testing.T, err error) int {
	t.Helper()
	if err == nil {
		return http.StatusOK
	}
	return apiErr(t, err).Status
}

// A node's request needs its token and its certificate: none, an expired
// one, one signed by another CA, one for another host, one revoked with
// its host, and the server's own are each refused; users and admins need
// none.
func TestNodeRequestsNeedTheirCertificate(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	now := e.clk.Now()
	n1 := e.nodeReg

	// n2: a second host, then revoked; its certificate stays refused
	// even with a fresh node token (vgrid up's in-process recovery).
	reg2, err := e.admin.WithToken(e.joinToken(api.TokensPost{}).Token).RegisterNode(ctx, hostN2, e.csr("n2"))
	if err != nil {
		t.Fatal(err)
	}
	n2Key := e.keys["n2"]
	if err := e.asNode(reg2).Heartbeat(ctx, hostN2); err != nil {
		t.Fatalf("n2 before its revocation: %v", err)
	}
	// n3: registered, its certificate then used with n1's token.
	reg3, err := e.admin.WithToken(e.joinToken(api.TokensPost{}).Token).RegisterNode(ctx, model.Node{Name: "n3", Capacity: hostN2.Capacity}, e.csr("n3"))
	if err != nil {
		t.Fatal(err)
	}
	out, err := e.admin.RevokeNode(ctx, "n2")
	if err != nil || out.CertificatesRevoked != 1 {
		t.Fatalf("revoke n2: %+v %v, want 1 certificate revoked", out, err)
	}
	if nodes, err := e.admin.Nodes(ctx); err == nil {
		for _, n := range nodes {
			if n.Name == "n2" && !n.CertificateExpiresAt.IsZero() {
				t.Fatalf("revoked n2 in the node list: certificate expires %s, want none", n.CertificateExpiresAt)
			}
		}
	}
	nt2, err := e.srv.IssueNodeToken(ctx, "default", "n2")
	if err != nil {
		t.Fatal(err)
	}

	expiredCert, expiredKey := signed(t, e.tls, &x509.Certificate{Subject: pkix.Name{CommonName: "n1"}, DNSNames: []string{"n1"},
		NotBefore: now.Add(-48 * time.Hour), NotAfter: now.Add(-time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	otherCA, err := ensureTLS(t.TempDir(), nil, now)
	if err != nil {
		t.Fatal(err)
	}
	foreignCert, foreignKey := signed(t, otherCA, &x509.Certificate{Subject: pkix.Name{CommonName: "n1"}, DNSNames: []string{"n1"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	// Signed by the right CA for the right name, but never issued to n1
	// (not recorded): as good as revoked.
	unrecordedCert, unrecordedKey := signed(t, e.tls, &x509.Certificate{Subject: pkix.Name{CommonName: "n1"}, DNSNames: []string{"n1"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})

	tests := []struct {
		name            string
		token           string
		cert, key       string
		node            string // the host in the path
		want            int
		msg             string // in the refusal
		handshakeRefuse bool   // refused by the TLS layer
	}{
		{"its own certificate", n1.Token, n1.Certificate, e.keys["n1"], "n1", http.StatusOK, "", false},
		{"no certificate", n1.Token, "", "", "n1", http.StatusUnauthorized, "no client certificate", false},
		{"an expired certificate", n1.Token, expiredCert, expiredKey, "n1", http.StatusUnauthorized, "", true},
		{"a certificate of another CA", n1.Token, foreignCert, foreignKey, "n1", http.StatusUnauthorized, "", true},
		// A replica's (server) certificate is a client certificate too
		// (replica.go), for no host.
		{"the server's own certificate", n1.Token, mustRead(t, e.tls.ServerCert), mustRead(t, e.tls.ServerKey), "n1", http.StatusForbidden, `for host "vgrid server"`, false},
		{"another host's certificate", n1.Token, reg3.Certificate, e.keys["n3"], "n1", http.StatusForbidden, `for host "n3"`, false},
		{"its certificate for another host's path", reg3.Token, reg3.Certificate, e.keys["n3"], "n1", http.StatusForbidden, "", false},
		{"a revoked host's certificate and token", reg2.Token, reg2.Certificate, n2Key, "n2", http.StatusUnauthorized, "", false},
		{"a revoked certificate with a new token", nt2.Token, reg2.Certificate, n2Key, "n2", http.StatusForbidden, "revoked", false},
		{"a certificate the server never issued", n1.Token, unrecordedCert, unrecordedKey, "n1", http.StatusForbidden, "revoked or replaced", false},
		{"no token", "", n1.Certificate, e.keys["n1"], "n1", http.StatusUnauthorized, "", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cl, err := client.New(client.Config{Server: e.hs.URL, Token: tc.token, CACert: e.caPEM, ClientCert: tc.cert, ClientKey: tc.key})
			if err != nil {
				t.Fatal(err)
			}
			for _, call := range []struct {
				what string
				do   func() error
			}{
				{"heartbeat", func() error { return cl.Heartbeat(ctx, model.Node{Name: tc.node}) }},
				{"assignments", func() error { _, err := cl.Assignments(ctx, tc.node, 0, 0); return err }},
				{"whoami", func() error { _, err := cl.Whoami(ctx); return err }},
			} {
				err := call.do()
				if call.what == "whoami" && tc.want == http.StatusForbidden && tc.msg == "" {
					continue // no host in the path: the token's and the certificate's agree
				}
				if got := statusOf(t, err); got != tc.want {
					t.Fatalf("%s: %d (%v), want %d", call.what, got, err, tc.want)
				}
				if err == nil {
					continue
				}
				if !strings.Contains(err.Error(), tc.msg) {
					t.Fatalf("%s: %v, want a message with %q", call.what, err, tc.msg)
				}
				if tls := strings.Contains(err.Error(), "TLS handshake"); tls != tc.handshakeRefuse {
					t.Fatalf("%s: refused in the TLS handshake: %v, want %v (%v)", call.what, tls, tc.handshakeRefuse, err)
				}
			}
		})
	}

	// Users and admins present no certificate.
	if _, err := e.admin.Nodes(ctx); err != nil {
		t.Fatalf("admin without a certificate: %v", err)
	}
	// A user token with a host's certificate is still a user.
	u, err := e.admin.CreateProject(ctx, "p1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.node.WithToken(u.Token).ListWorkspaces(ctx); err != nil {
		t.Fatalf("a user token over a host's certificate: %v", err)
	}
}

func mustRead(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// The certificate a registration gives: CN and DNS name the host, its
// address's IP, client and server authentication, a 128-bit random
// serial, the configured lifetime, signed by the CA.
func TestRegistrationCertificate(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	now := e.clk.Now()
	n := hostN2
	n.Address = "10.0.0.7:7443"
	reg, err := e.admin.WithToken(e.joinToken(api.TokensPost{}).Token).RegisterNode(ctx, n, e.csr("n2"))
	if err != nil {
		t.Fatal(err)
	}
	c := parseCertPEM(t, reg.Certificate)
	if c.Subject.CommonName != "n2" || !slices.Equal(c.DNSNames, []string{"n2"}) || len(c.IPAddresses) != 1 || !c.IPAddresses[0].Equal(net.ParseIP("10.0.0.7")) {
		t.Fatalf("names: CN %q DNS %v IP %v", c.Subject.CommonName, c.DNSNames, c.IPAddresses)
	}
	if !slices.Contains(c.ExtKeyUsage, x509.ExtKeyUsageClientAuth) || !slices.Contains(c.ExtKeyUsage, x509.ExtKeyUsageServerAuth) || c.IsCA {
		t.Fatalf("usages %v, CA %v", c.ExtKeyUsage, c.IsCA)
	}
	if !c.NotAfter.Equal(now.Add(DefaultCertTTL)) || !reg.CertificateExpiresAt.Equal(c.NotAfter) || c.NotBefore.After(now) {
		t.Fatalf("validity %s to %s (answer %s), want to %s", c.NotBefore, c.NotAfter, reg.CertificateExpiresAt, now.Add(DefaultCertTTL))
	}
	if c.SerialNumber.Sign() <= 0 || c.SerialNumber.BitLen() > 128 || c.SerialNumber.BitLen() < 64 {
		t.Fatalf("serial %s: %d bits", c.SerialNumber, c.SerialNumber.BitLen())
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM([]byte(e.caPEM))
	for _, usage := range []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth} {
		if _, err := c.Verify(x509.VerifyOptions{Roots: roots, CurrentTime: now, DNSName: "n2", KeyUsages: []x509.ExtKeyUsage{usage}}); err != nil {
			t.Fatalf("verify for %v: %v", usage, err)
		}
	}
	// The node list shows when the host's certificate expires.
	nodes, err := e.admin.Nodes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes {
		if n.Name == "n2" && !n.CertificateExpiresAt.Equal(c.NotAfter) {
			t.Fatalf("n2 in the node list: certificate expires %s, want %s", n.CertificateExpiresAt, c.NotAfter)
		}
	}
	// A host addressed by name gets no IP address.
	if c := parseCertPEM(t, e.nodeReg.Certificate); len(c.IPAddresses) != 0 {
		t.Fatalf("n1 (no address): IPs %v", c.IPAddresses)
	}
	// The lifetime is the server's to choose.
	if err := e.srv.SetNodeCA(e.tls, time.Hour); err != nil {
		t.Fatal(err)
	}
	reg3, err := e.admin.WithToken(e.joinToken(api.TokensPost{}).Token).RegisterNode(ctx, model.Node{Name: "n3", Capacity: hostN2.Capacity}, e.csr("n3"))
	if err != nil {
		t.Fatal(err)
	}
	if !reg3.CertificateExpiresAt.Equal(now.Add(time.Hour)) {
		t.Fatalf("with a TTL of 1h: expires %s", reg3.CertificateExpiresAt)
	}
}

// csrOf makes a certificate request for cn with key.
func csrOf(t testing.TB, key any, cn string) string {
	t.Helper()
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: cn}}, key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))
}

// badCSRs are certificate requests for host node that are refused, with
// a word of the reason. wrongCN is another host's name.
func badCSRs(t testing.TB, node, wrongCN string) []struct{ name, csr, reason string } {
	t.Helper()
	p256 := mustKey(t)
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	rsa1024, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	good := csrOf(t, p256, node)
	blk, _ := pem.Decode([]byte(good))
	tampered := append([]byte(nil), blk.Bytes...)
	tampered[len(tampered)-3] ^= 0xff // in the signature
	return []struct{ name, csr, reason string }{
		{"none", "", "required"},
		{"blank", "  \n", "required"},
		{"not PEM", "hello", "not PEM"},
		{"base64 without PEM armour", strings.Join(strings.Split(good, "\n")[1:3], ""), "not PEM"},
		{"a certificate", string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: blk.Bytes})), `type "CERTIFICATE"`},
		{"garbage in the PEM block", string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: []byte("garbage")})), "not a certificate request"},
		{"two requests", good + good, "exactly one"},
		{"wrong CN", csrOf(t, p256, wrongCN), "common name " + quoteShort(wrongCN)},
		{"no CN", csrOf(t, p256, ""), `common name ""`},
		{"CN in another case", csrOf(t, p256, strings.ToUpper(node)), "common name"},
		{"P-384 key", csrOf(t, p384, node), "P-384"},
		{"RSA 1024 key", csrOf(t, rsa1024, node), "RSA key of 1024 bits"},
		{"bad signature", string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: tampered})), "signature"},
		{"huge", strings.Repeat("A", maxCSRLen+1), "at most"},
	}
}

// A registration or renewal with a missing or bad certificate request is
// refused with 400 naming field csr and the reason; nothing is stored and
// the join token is not used up.
func TestBadCSRsRefused(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	join := e.joinToken(api.TokensPost{MaxHosts: 1})
	for _, tc := range badCSRs(t, "n2", "n1") {
		t.Run("registration/"+tc.name, func(t *testing.T) {
			before, _ := e.st.Revision(ctx)
			_, err := e.admin.WithToken(join.Token).RegisterNode(ctx, hostN2, tc.csr)
			wantCSRRefusal(t, "registration", err, tc.reason)
			if after, _ := e.st.Revision(ctx); after != before {
				t.Fatalf("store revision moved from %d to %d: something was stored", before, after)
			}
		})
	}
	for _, tc := range badCSRs(t, "n1", "n2") {
		t.Run("renewal/"+tc.name, func(t *testing.T) {
			before, _ := e.st.Revision(ctx)
			_, err := e.node.RenewCertificate(ctx, "n1", tc.csr)
			wantCSRRefusal(t, "renewal", err, tc.reason)
			if after, _ := e.st.Revision(ctx); after != before {
				t.Fatalf("store revision moved from %d to %d: something was stored", before, after)
			}
		})
	}
	// The join token still registers its one host.
	if _, err := e.admin.WithToken(join.Token).RegisterNode(ctx, hostN2, e.csr("n2")); err != nil {
		t.Fatalf("the join token after the refusals: %v", err)
	}
	// A CSR is required from an admin too.
	_, err := e.admin.RegisterNode(ctx, model.Node{Name: "n4", Capacity: hostN2.Capacity}, "")
	wantCSRRefusal(t, "an admin's registration without a CSR", err, "required")
	// An RSA key of 2048 bits is fine.
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.admin.RegisterNode(ctx, model.Node{Name: "n4", Capacity: hostN2.Capacity}, csrOf(t, rk, "n4")); err != nil {
		t.Fatalf("an RSA-2048 request: %v", err)
	}
}

func mustKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func wantCSRRefusal(t *testing.T, what string, err error, reason string) {
	t.Helper()
	ce := apiErr(t, err)
	if ce.Status != http.StatusBadRequest || ce.Body.Code != api.CodeInvalid {
		t.Fatalf("%s: %d %s %v, want 400 invalid", what, ce.Status, ce.Body.Code, err)
	}
	for _, f := range ce.Body.Fields {
		if f.Field == "csr" && strings.Contains(f.Reason, reason) {
			return
		}
	}
	t.Fatalf("%s: fields %+v, want csr with %q", what, ce.Body.Fields, reason)
}

// Renewal gives a new certificate; the old one keeps working for the
// grace period only, the new one until it expires; the host's record
// keeps the current one and the one in its grace.
func TestCertificateRenewal(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	old := e.node
	oldCert := parseCertPEM(t, e.nodeReg.Certificate)
	e.clk.Add(time.Hour)
	now := e.clk.Now()
	key := mustKey(t)
	nc, err := old.RenewCertificate(ctx, "n1", csrOf(t, key, "n1"))
	if err != nil {
		t.Fatal(err)
	}
	c := parseCertPEM(t, nc.Certificate)
	if nc.Node != "n1" || c.Subject.CommonName != "n1" || nc.Serial != serialText(c.SerialNumber) || c.SerialNumber.Cmp(oldCert.SerialNumber) == 0 ||
		!nc.CertificateExpiresAt.Equal(now.Add(DefaultCertTTL)) || !c.NotAfter.Equal(nc.CertificateExpiresAt) ||
		!nc.PreviousExpiresAt.Equal(now.Add(CertRenewalGrace)) {
		t.Fatalf("renewal answer %+v (serial %s)", nc, c.SerialNumber)
	}
	if nodes, err := e.admin.Nodes(ctx); err != nil || len(nodes) != 1 || !nodes[0].CertificateExpiresAt.Equal(nc.CertificateExpiresAt) {
		t.Fatalf("the node list after the renewal: %+v %v, want the certificate to expire at %s", nodes, err, nc.CertificateExpiresAt)
	}
	fresh := e.nodeClient(old.Token(), nc.Certificate, keyPEMOf(t, key))
	if _, err := fresh.Assignments(ctx, "n1", 0, 0); err != nil {
		t.Fatalf("the new certificate: %v", err)
	}
	_, err = old.RenewCertificate(ctx, "n2", csrOf(t, key, "n2"))
	wantStatus(t, "renewing another host's certificate", err, http.StatusForbidden, "")

	// Only the host's token and certificate renew.
	_, err = e.admin.RenewCertificate(ctx, "n1", csrOf(t, key, "n1"))
	wantStatus(t, "an admin renewing", err, http.StatusForbidden, "")

	e.clk.Add(CertRenewalGrace - time.Second)
	if err := old.Heartbeat(ctx, model.Node{Name: "n1"}); err != nil {
		t.Fatalf("the old certificate within its grace: %v", err)
	}
	nc2, _, err := e.srv.nodeCertList(ctx, "n1")
	if err != nil || len(nc2.Certs) != 2 || nc2.Certs[0].Serial != nc.Serial || nc2.Certs[1].Serial != serialText(oldCert.SerialNumber) {
		t.Fatalf("record within the grace: %+v %v", nc2, err)
	}
	e.clk.Add(time.Second)
	err = old.Heartbeat(ctx, model.Node{Name: "n1"})
	wantStatus(t, "the old certificate after its grace", err, http.StatusForbidden, "was replaced")
	if err := fresh.Heartbeat(ctx, model.Node{Name: "n1"}); err != nil {
		t.Fatalf("the new certificate after the grace: %v", err)
	}
	// A second renewal drops the first certificate, which is past its
	// grace: the record keeps two at most.
	key3 := mustKey(t)
	nc3, err := fresh.RenewCertificate(ctx, "n1", csrOf(t, key3, "n1"))
	if err != nil {
		t.Fatal(err)
	}
	rec, _, _ := e.srv.nodeCertList(ctx, "n1")
	if len(rec.Certs) != 2 || rec.Certs[0].Serial != nc3.Serial || rec.Certs[1].Serial != nc.Serial {
		t.Fatalf("record after a second renewal: %+v", rec)
	}
	// The new certificate works until it expires (the token is rotated
	// meanwhile, as the agent does).
	newest := e.nodeClient(old.Token(), nc3.Certificate, keyPEMOf(t, key3))
	e.clk.Add(NodeTokenTTL / 2)
	nt, err := newest.RotateNodeToken(ctx, "n1")
	if err != nil {
		t.Fatal(err)
	}
	newest = newest.WithToken(nt.Token)
	e.clk.Add(DefaultCertTTL/2 - time.Second)
	if err := newest.Heartbeat(ctx, model.Node{Name: "n1"}); err != nil {
		t.Fatalf("the renewed certificate a second before it expires: %v", err)
	}
	e.clk.Add(time.Second)
	err = newest.Heartbeat(ctx, model.Node{Name: "n1"})
	if statusOf(t, err) != http.StatusUnauthorized {
		t.Fatalf("the renewed certificate once expired: %v, want 401", err)
	}
}

// IssueNodeCertificate and NodeCertificateExpiry (vgrid up's recovery of
// its own agent).
func TestIssueNodeCertificate(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	c1 := parseCertPEM(t, e.nodeReg.Certificate)
	if until, ok := e.srv.NodeCertificateExpiry(ctx, "n1", c1); !ok || !until.Equal(c1.NotAfter) {
		t.Fatalf("n1's certificate: %s %v", until, ok)
	}
	if _, ok := e.srv.NodeCertificateExpiry(ctx, "n2", c1); ok {
		t.Fatal("n1's certificate accepted for n2")
	}
	key := mustKey(t)
	nc, err := e.srv.IssueNodeCertificate(ctx, "n1", key.Public())
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := e.srv.NodeCertificateExpiry(ctx, "n1", c1); ok {
		t.Fatal("the replaced certificate is still accepted")
	}
	if _, ok := e.srv.NodeCertificateExpiry(ctx, "n1", parseCertPEM(t, nc.Certificate)); !ok {
		t.Fatal("the issued certificate is not accepted")
	}
	if _, err := e.srv.IssueNodeCertificate(ctx, "nope", key.Public()); err == nil {
		t.Fatal("a certificate for an unknown host")
	}
	rsaKey, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.srv.IssueNodeCertificate(ctx, "n1", rsaKey.Public()); err == nil {
		t.Fatal("a certificate for a 1024-bit RSA key")
	}
	e.clk.Add(DefaultCertTTL)
	if _, ok := e.srv.NodeCertificateExpiry(ctx, "n1", parseCertPEM(t, nc.Certificate)); ok {
		t.Fatal("an expired certificate is accepted")
	}
}
