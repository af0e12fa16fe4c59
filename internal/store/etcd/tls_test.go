package etcd_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"vgrid/internal/store/etcd"
	"vgrid/internal/store/etcd/etcdtest"
	"vgrid/internal/testenv"
)

// writeCert makes a key and a certificate signed by parent (self-signed
// if parent is nil) and writes them as name.pem and name-key.pem.
func writeCert(t *testing.T, dir, name string, tmpl *x509.Certificate, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+".pem"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+"-key.pem"), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert, key
}

// TestTLS runs the store against an etcd that serves TLS and requires
// client certificates.
func TestTLS(t *testing.T) {
	bin, err := etcdtest.Binary()
	if err != nil {
		testenv.Skip(t, "etcd server: %v", err)
	}
	dir := t.TempDir()
	now := time.Now()
	ca, caKey := writeCert(t, dir, "ca", &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}, nil, nil)
	writeCert(t, dir, "server", &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "etcd"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:    x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}, ca, caKey)
	writeCert(t, dir, "client", &x509.Certificate{
		SerialNumber: big.NewInt(3), Subject: pkix.Name{CommonName: "vgrid"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}, ca, caKey)
	f := func(name string) string { return filepath.Join(dir, name) }
	c, err := etcdtest.StartCluster(filepath.Join(dir, "etcd"), 1, etcdtest.Options{
		Binary: bin, CertFile: f("server.pem"), KeyFile: f("server-key.pem"), ClientCAFile: f("ca.pem"),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Stop()

	ctx := context.Background()
	good := etcd.Config{Endpoints: c.Endpoints(), CAFile: f("ca.pem"), CertFile: f("client.pem"), KeyFile: f("client-key.pem"), Logger: quiet}
	s, err := etcd.Open(ctx, good)
	if err != nil {
		t.Fatalf("Open with TLS: %v", err)
	}
	defer s.Close()
	rev, err := s.Create(ctx, "k", []byte("v"))
	if err != nil {
		t.Fatalf("Create over TLS: %v", err)
	}
	if kv, err := s.Get(ctx, "k"); err != nil || kv.Revision != rev {
		t.Fatalf("Get over TLS: got %+v (error %v), want revision %d", kv, err, rev)
	}

	bad := []struct {
		name string
		cfg  etcd.Config
	}{
		{"no client certificate", etcd.Config{CAFile: f("ca.pem")}},
		{"server not trusted", etcd.Config{CertFile: f("client.pem"), KeyFile: f("client-key.pem")}},
	}
	for _, tt := range bad {
		tt.cfg.Endpoints, tt.cfg.Logger, tt.cfg.DialTimeout = c.Endpoints(), quiet, time.Second
		if s, err := etcd.Open(ctx, tt.cfg); err == nil {
			_ = s.Close()
			t.Fatalf("Open with %s: got no error", tt.name)
		}
	}
}
