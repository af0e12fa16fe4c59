package server

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"
)

func readCert(t *testing.T, path string) (*x509.Certificate, []byte) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		t.Fatalf("%s: no PEM", path)
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c, b
}

// verifies checks that the server certificate is signed by the CA and
// valid for every host at now.
func verifies(t *testing.T, f TLSFiles, now time.Time, hosts ...string) {
	t.Helper()
	_, caPEM := readCert(t, f.CACert)
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(caPEM)
	c, _ := readCert(t, f.ServerCert)
	for _, h := range hosts {
		if _, err := c.Verify(x509.VerifyOptions{DNSName: h, Roots: roots, CurrentTime: now}); err != nil {
			t.Errorf("server certificate for %s: %v", h, err)
		}
	}
	if _, err := ServerTLSConfig(f); err != nil {
		t.Error(err)
	}
}

// --listen naming a new address reissues the server certificate from the
// same CA, still covering the old addresses; the same hosts again change
// nothing.
func TestTLSReissuedForNewListenAddress(t *testing.T) {
	dir := t.TempDir()
	f, err := EnsureTLS(dir, []string{"127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	verifies(t, f, now, "localhost", "127.0.0.1")
	_, ca0 := readCert(t, f.CACert)
	_, srv0 := readCert(t, f.ServerCert)

	if _, err := EnsureTLS(dir, []string{"127.0.0.1"}); err != nil {
		t.Fatal(err)
	}
	if _, srv := readCert(t, f.ServerCert); !bytes.Equal(srv, srv0) {
		t.Error("the same hosts reissued the server certificate")
	}

	f, err = EnsureTLS(dir, []string{"10.1.2.3"})
	if err != nil {
		t.Fatal(err)
	}
	if _, ca := readCert(t, f.CACert); !bytes.Equal(ca, ca0) {
		t.Fatal("the CA changed: agents and clients would stop trusting the server")
	}
	if _, srv := readCert(t, f.ServerCert); bytes.Equal(srv, srv0) {
		t.Fatal("the server certificate was not reissued for a new address")
	}
	verifies(t, f, now, "localhost", "127.0.0.1", "10.1.2.3")

	if _, err := EnsureTLS(dir, []string{"vgrid.example.org"}); err != nil {
		t.Fatal(err)
	}
	verifies(t, f, now, "10.1.2.3", "vgrid.example.org")
	// An unspecified address (--listen 0.0.0.0:7443 or :7443) asks for nothing.
	_, srv1 := readCert(t, f.ServerCert)
	for _, h := range []string{"0.0.0.0", "::", ""} {
		if _, err := EnsureTLS(dir, []string{h}); err != nil {
			t.Fatal(err)
		}
	}
	if _, srv := readCert(t, f.ServerCert); !bytes.Equal(srv, srv1) {
		t.Error("an unspecified listen address reissued the certificate")
	}
}

// A server certificate close to its end is reissued from the same CA.
func TestTLSReissuedNearExpiry(t *testing.T) {
	dir := t.TempDir()
	t0 := time.Now()
	f, err := ensureTLS(dir, nil, t0)
	if err != nil {
		t.Fatal(err)
	}
	c0, srv0 := readCert(t, f.ServerCert)
	_, ca0 := readCert(t, f.CACert)
	// A month and a half before its end: kept.
	if _, err := ensureTLS(dir, nil, c0.NotAfter.Add(-45*24*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if _, srv := readCert(t, f.ServerCert); !bytes.Equal(srv, srv0) {
		t.Fatal("reissued 45 days before its end")
	}
	// Ten days before: reissued, and valid well after.
	later := c0.NotAfter.Add(-10 * 24 * time.Hour)
	if _, err := ensureTLS(dir, nil, later); err != nil {
		t.Fatal(err)
	}
	c1, _ := readCert(t, f.ServerCert)
	if !c1.NotAfter.After(later.AddDate(1, 0, 0)) {
		t.Fatalf("reissued certificate ends %s, want years after %s", c1.NotAfter, later)
	}
	if _, ca := readCert(t, f.CACert); !bytes.Equal(ca, ca0) {
		t.Fatal("the CA changed")
	}
	verifies(t, f, later, "localhost", "127.0.0.1")
	// A server key that does not match its certificate (a crash between
	// the two writes) is mended too.
	if err := os.WriteFile(f.ServerCert, srv0, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ensureTLS(dir, nil, t0); err != nil {
		t.Fatal(err)
	}
	verifies(t, f, t0, "localhost")
}

// A data directory of an older vgrid has a CA certificate but not its key,
// so nothing could sign hosts' certificates: a new CA is made (the old
// certificate set aside) and the server certificate is issued again by it,
// covering what the old one did.
func TestEnsureTLSWithoutCAKeyMakesANewCA(t *testing.T) {
	dir := t.TempDir()
	now := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	old, err := ensureTLS(dir, []string{"10.0.0.5"}, now)
	if err != nil {
		t.Fatal(err)
	}
	oldCA, _ := os.ReadFile(old.CACert)
	if err := os.Remove(old.CAKey); err != nil {
		t.Fatal(err)
	}
	f, err := ensureTLS(dir, nil, now.Add(time.Hour))
	if err != nil {
		t.Fatalf("ensure without the CA key: %v", err)
	}
	if f.Replaced == "" {
		t.Fatal("no new CA")
	}
	if b, _ := os.ReadFile(f.Replaced); string(b) != string(oldCA) {
		t.Fatal("the old CA certificate was not kept aside")
	}
	if _, _, err := f.loadCA(); err != nil {
		t.Fatalf("new CA: %v", err)
	}
	cert, err := loadCertFile(f.ServerCert)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	newCA, _ := os.ReadFile(f.CACert)
	pool.AppendCertsFromPEM(newCA)
	if _, err := cert.Verify(x509.VerifyOptions{Roots: pool, CurrentTime: now.Add(time.Hour)}); err != nil {
		t.Fatalf("server certificate not from the new CA: %v", err)
	}
	if !strings.Contains(fmt.Sprint(cert.IPAddresses), "10.0.0.5") {
		t.Fatalf("server certificate dropped the old address: %v", cert.IPAddresses)
	}
}
