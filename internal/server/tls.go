package server

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// TLSFiles are the certificate files a server keeps in its data directory:
// a private CA (given to clients and agents so they can verify the server)
// and the server's certificate signed by it.
type TLSFiles struct {
	CACert, ServerCert, ServerKey string
	// CAKey is the CA's private key, kept (owner-only, beside the server's
	// key) so that the server's certificate can be reissued by the CA that
	// agents and clients already trust.
	CAKey string
	// Replaced is set when EnsureTLS found a CA whose key was never kept
	// (a data directory of an older vgrid) and made a new CA: what trusted
	// the old ca.crt (agents on other machines) needs the new one. The old
	// certificate is kept as Replaced.
	Replaced string
}

// renewBefore is how long before its end a server certificate is reissued.
const renewBefore = 30 * 24 * time.Hour

// EnsureTLS creates a CA and a server certificate in dir unless they exist,
// valid for the given host names and addresses plus localhost. An existing
// server certificate that does not cover them (--listen names a new
// address), ends within 30 days, or does not match its key or the CA is
// reissued by the same CA: agents and clients keep trusting the server.
// The hosts it covered before stay covered.
func EnsureTLS(dir string, hosts []string) (TLSFiles, error) {
	return ensureTLS(dir, hosts, time.Now())
}

func ensureTLS(dir string, hosts []string, now time.Time) (TLSFiles, error) {
	f := TLSFiles{
		CACert:     filepath.Join(dir, "ca.crt"),
		CAKey:      filepath.Join(dir, "ca.key"),
		ServerCert: filepath.Join(dir, "server.crt"),
		ServerKey:  filepath.Join(dir, "server.key"),
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return f, fmt.Errorf("tls dir: %w", err)
	}
	ca, caKey, caErr := f.loadCA()
	if _, err := os.Stat(f.CAKey); errors.Is(err, fs.ErrNotExist) && caErr != nil {
		if _, err := os.Stat(f.CACert); err == nil {
			// An older vgrid kept no CA key: nothing can sign hosts'
			// certificates with that CA. A new CA, and a new server
			// certificate from it (covering what the old one did).
			f.Replaced = f.CACert + ".old-" + now.UTC().Format("20060102T150405Z")
			if err := os.Rename(f.CACert, f.Replaced); err != nil {
				return f, fmt.Errorf("tls: set the old CA aside: %w", err)
			}
			if old, err := loadCertFile(f.ServerCert); err == nil {
				hosts = append(hosts, old.DNSNames...)
				for _, ip := range old.IPAddresses {
					hosts = append(hosts, ip.String())
				}
			}
			if err := os.Remove(f.ServerKey); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return f, err
			}
		}
	}
	if _, err := os.Stat(f.ServerKey); err == nil {
		why, old := f.reissueReason(hosts, now)
		if why == "" {
			return f, nil
		}
		if caErr != nil {
			if old != nil && now.Before(old.NotAfter) && strings.HasPrefix(why, endsOn) {
				// Still valid, and nothing to reissue it with: keep it.
				return f, nil
			}
			return f, fmt.Errorf("tls: the server certificate in %s %s, and the CA key that would reissue it is missing (%v): "+
				"remove %s to make a new CA, then give agents and clients the new ca.crt", dir, why, caErr, dir)
		}
		var keep []string
		if old != nil {
			keep = append(keep, old.DNSNames...)
			for _, ip := range old.IPAddresses {
				keep = append(keep, ip.String())
			}
		}
		return f, f.issue(ca, caKey, append(keep, hosts...), now)
	}
	if caErr != nil {
		// A new set (or one whose CA was lost before its server key was
		// written): a new CA. Its key goes first, its certificate second.
		var err error
		if ca, caKey, err = newCA(now); err != nil {
			return f, err
		}
		keyDER, err := x509.MarshalECPrivateKey(caKey)
		if err != nil {
			return f, err
		}
		if err := writePEM(f.CAKey, "EC PRIVATE KEY", keyDER, 0o600); err != nil {
			return f, err
		}
		if err := writePEM(f.CACert, "CERTIFICATE", ca.Raw, 0o644); err != nil {
			return f, err
		}
	}
	return f, f.issue(ca, caKey, hosts, now)
}

func newCA(now time.Time) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	caTmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "vgrid CA", Organization: []string{"vgrid"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.AddDate(10, 0, 0),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, nil, fmt.Errorf("create ca: %w", err)
	}
	ca, err := x509.ParseCertificate(caDER)
	return ca, caKey, err
}

// loadCA reads the CA's certificate and key.
func (f TLSFiles) loadCA() (*x509.Certificate, *ecdsa.PrivateKey, error) {
	pair, err := tls.LoadX509KeyPair(f.CACert, f.CAKey)
	if err != nil {
		return nil, nil, err
	}
	ca, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return nil, nil, err
	}
	key, ok := pair.PrivateKey.(*ecdsa.PrivateKey)
	if !ok || !ca.IsCA {
		return nil, nil, fmt.Errorf("%s: not a vgrid CA", f.CACert)
	}
	return ca, key, nil
}

// reissueReason says why the server certificate must be reissued ("" if
// it need not be), and returns it when it could be read.
func (f TLSFiles) reissueReason(hosts []string, now time.Time) (string, *x509.Certificate) {
	b, err := os.ReadFile(f.ServerCert)
	if err != nil {
		return "cannot be read", nil
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		return "cannot be read", nil
	}
	cert, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		return "cannot be read", nil
	}
	if _, err := tls.LoadX509KeyPair(f.ServerCert, f.ServerKey); err != nil {
		// The hosts it covered are kept when it is reissued.
		return "does not match its key", cert
	}
	for _, h := range requiredHosts(hosts) {
		if cert.VerifyHostname(h) != nil {
			return "does not cover " + h, cert
		}
	}
	if !slices.Contains(cert.ExtKeyUsage, x509.ExtKeyUsageClientAuth) {
		return "cannot authenticate this replica to another (no client auth usage)", cert
	}
	if now.Add(renewBefore).After(cert.NotAfter) {
		return endsOn + cert.NotAfter.Format(time.DateOnly), cert
	}
	if b, err := os.ReadFile(f.CACert); err == nil {
		roots := x509.NewCertPool()
		roots.AppendCertsFromPEM(b)
		if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
			return "is not signed by " + f.CACert, cert
		}
	}
	return "", cert
}

const endsOn = "ends on "

// requiredHosts are the names and addresses a server certificate must
// cover: the given ones (but unspecified addresses) and localhost.
func requiredHosts(hosts []string) []string {
	out := []string{"localhost", "127.0.0.1", "::1"}
	for _, h := range hosts {
		if ip := net.ParseIP(h); h == "" || ip != nil && ip.IsUnspecified() {
			continue
		}
		out = append(out, h)
	}
	return out
}

// issue writes a new server key and a certificate for it signed by the CA,
// valid for hosts, localhost and this machine's name; the key goes last,
// its presence meaning the set is complete.
func (f TLSFiles) issue(ca *x509.Certificate, caKey *ecdsa.PrivateKey, hosts []string, now time.Time) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	notAfter := now.AddDate(5, 0, 0)
	if notAfter.After(ca.NotAfter) {
		notAfter = ca.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: "vgrid server"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		// Client auth too: a replica presents it to the leading replica
		// when it forwards a request (replica.go).
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	if h, err := os.Hostname(); err == nil {
		hosts = append(hosts, h)
	}
	seen := map[string]bool{}
	for _, h := range requiredHosts(hosts) {
		ip := net.ParseIP(h)
		if ip != nil {
			h = ip.String()
		}
		if seen[h] {
			continue
		}
		seen[h] = true
		if ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return fmt.Errorf("create server cert: %w", err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return err
	}
	if err := writePEM(f.ServerCert, "CERTIFICATE", der, 0o644); err != nil {
		return err
	}
	return writePEM(f.ServerKey, "EC PRIVATE KEY", keyDER, 0o600)
}

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	return n
}

func writePEM(path, typ string, der []byte, mode os.FileMode) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), mode); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// ServerTLSConfig loads the server's certificate and asks clients for a
// certificate signed by the CA: hosts' agents present theirs (a given
// certificate that is expired or signed by another CA fails the
// handshake); users and admins present none.
func ServerTLSConfig(f TLSFiles) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(f.ServerCert, f.ServerKey)
	if err != nil {
		return nil, fmt.Errorf("load server certificate: %w", err)
	}
	caPEM, err := os.ReadFile(f.CACert)
	if err != nil {
		return nil, fmt.Errorf("load CA certificate: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("%s: no PEM certificate", f.CACert)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12,
		ClientAuth: tls.VerifyClientCertIfGiven, ClientCAs: pool}, nil
}

// loadCertFile reads a PEM certificate.
func loadCertFile(path string) (*x509.Certificate, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, fmt.Errorf("%s: no PEM certificate", path)
	}
	return x509.ParseCertificate(blk.Bytes)
}
