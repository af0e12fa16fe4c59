package storage

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"
)

// checkTLS validates the TLS material of a Config before qemu sees it,
// so that a mistake is named here rather than in a QMP error: the CA
// parses and is a CA, the certificate matches the key, is issued by the
// CA, is valid now, allows both server and client authentication and
// digital signatures.
func checkTLS(caPEM, certPEM, keyPEM []byte, now time.Time) error {
	roots := x509.NewCertPool()
	n := 0
	for rest := caPEM; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			return fmt.Errorf("CACert: PEM block %q, want CERTIFICATE", b.Type)
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return fmt.Errorf("CACert: %w", err)
		}
		if !c.IsCA {
			return fmt.Errorf("CACert: %q is not a CA certificate", c.Subject.CommonName)
		}
		roots.AddCert(c)
		n++
	}
	if n == 0 {
		return errors.New("CACert: no PEM certificate")
	}
	if len(certPEM) == 0 {
		return errors.New("Cert: empty")
	}
	if len(keyPEM) == 0 {
		return errors.New("Key: empty")
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return fmt.Errorf("Cert/Key: %w", err)
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return fmt.Errorf("Cert: %w", err)
	}
	for _, u := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
		if len(leaf.ExtKeyUsage) > 0 && !slices.Contains(leaf.ExtKeyUsage, u) && !slices.Contains(leaf.ExtKeyUsage, x509.ExtKeyUsageAny) {
			return fmt.Errorf("Cert: extended key usage lacks %s", extUsageName(u))
		}
	}
	// An ECDSA certificate signs the handshake: if the key usage
	// extension is there, it must allow digital signature.
	if leaf.KeyUsage != 0 && leaf.KeyUsage&x509.KeyUsageDigitalSignature == 0 {
		return errors.New("Cert: key usage lacks digitalSignature")
	}
	inter := x509.NewCertPool()
	for _, der := range pair.Certificate[1:] {
		if c, err := x509.ParseCertificate(der); err == nil {
			inter.AddCert(c)
		}
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
		return fmt.Errorf("Cert: not valid under CACert: %w", err)
	}
	return nil
}

func extUsageName(u x509.ExtKeyUsage) string {
	if u == x509.ExtKeyUsageServerAuth {
		return "serverAuth"
	}
	return "clientAuth"
}

// ffdhe2048 is the 2048-bit finite field Diffie-Hellman group of RFC 7919
// as PKCS#3 parameters. Without a dh-params.pem qemu generates fresh
// parameters each time it loads the credentials, which takes from a tenth
// of a second to seconds: too slow for a restart.
const ffdhe2048 = `-----BEGIN DH PARAMETERS-----
MIIBCAKCAQEA//////////+t+FRYortKmq/cViAnPTzx2LnFg84tNpWp4TZBFGQz
+8yTnc4kmz75fS/jY2MMddj2gbICrsRhetPfHtXV/WVhJDP1H18GbtCFY2VVPe0a
87VXE15/V8k1mE8McODmi3fipona8+/och3xWKE2rec1MKzKT0g6eXq8CrGCsyT7
YdEIqUuyyOP7uWrat2DX9GgdT0Kj3jlN9K5W7edjcrsZCwenyO4KbXCeAvzhzffi
7MA0BM0oNC9hkXL+nOmFg/+OTxIy7vKBg8P+OxtMb61zO7X8vC7CIAXFjvGDfRaD
ssbzSibBsu/6iGtCOGEoXJf//////////wIBAg==
-----END DH PARAMETERS-----
`

// writeTLSDir writes the material into dir (made 0700) under the names
// qemu's tls-creds-x509 object reads.
func writeTLSDir(dir string, caPEM, certPEM, keyPEM []byte) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return err
	}
	for _, f := range []struct {
		name string
		data []byte
		perm os.FileMode
	}{
		{"ca-cert.pem", caPEM, 0o644},
		{"server-cert.pem", certPEM, 0o644},
		{"server-key.pem", keyPEM, 0o600},
		{"dh-params.pem", []byte(ffdhe2048), 0o644},
	} {
		if err := writeFileAtomic(filepath.Join(dir, f.name), f.data, f.perm); err != nil {
			return fmt.Errorf("tls dir: %w", err)
		}
	}
	return nil
}
