package server

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"testing"
)

// FuzzCSR feeds checkCSR arbitrary certificate requests and host names: it
// never panics; a refusal is a 400 naming field csr; what it accepts is
// one request, of at most maxCSRLen bytes, for exactly that host name,
// with an allowed key and a signature that verifies. The seed corpus
// (testdata/fuzz/FuzzCSR) holds a good request, one for another host,
// one with an RSA-1024 key, one whose signature was altered, a
// certificate in place of a request, and non-PEM text.
func FuzzCSR(f *testing.F) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		f.Fatal(err)
	}
	good := csrOf(f, key, "n1")
	f.Add([]byte(good), "n1")
	f.Add([]byte(good), "n2")
	f.Add([]byte(good+good), "n1")
	f.Add([]byte("-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n"), "n1")
	f.Fuzz(func(t *testing.T, data []byte, node string) {
		csr, err := checkCSR(string(data), node)
		if err != nil {
			refusal(t, err)
			for _, fe := range err.(*httpError).fields {
				if fe.Field != "csr" {
					t.Fatalf("a refusal naming %q, want csr", fe.Field)
				}
			}
			return
		}
		switch {
		case len(data) > maxCSRLen:
			t.Fatalf("%d bytes accepted", len(data))
		case csr.Subject.CommonName != node:
			t.Fatalf("common name %q accepted for host %q", csr.Subject.CommonName, node)
		case checkHostKey(csr.PublicKey) != "":
			t.Fatalf("key %T accepted: %s", csr.PublicKey, checkHostKey(csr.PublicKey))
		case csr.CheckSignature() != nil:
			t.Fatalf("a bad signature accepted: %v", csr.CheckSignature())
		}
		blk, rest := pem.Decode(data)
		if blk == nil || len(bytes.TrimSpace(rest)) != 0 {
			t.Fatalf("accepted with more than one PEM block: %q", data)
		}
		if _, err := x509.ParseCertificateRequest(blk.Bytes); err != nil {
			t.Fatalf("accepted, but does not parse: %v", err)
		}
	})
}
