package agent

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"vgrid/internal/client"
)

// A host's client certificate: the agent keeps its private key (node.key,
// ECDSA P-256, owner-only) and the certificate the control plane's CA
// signed for it (node.crt) in its data directory. It presents the
// certificate on every request besides its node token, and renews it
// (POST /nodes/{node}/certificate, with a new key) once half of its
// lifetime has passed.

// KeyFile and CertFile are where an agent with data directory dir keeps
// its host key and certificate.
func KeyFile(dir string) string  { return filepath.Join(dir, "node.key") }
func CertFile(dir string) string { return filepath.Join(dir, "node.crt") }

// newKeyFile holds the key of a renewal until its certificate is saved.
func newKeyFile(dir string) string { return filepath.Join(dir, "node.key.new") }

// NewKey returns a new host key.
func NewKey() (*ecdsa.PrivateKey, error) {
	return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
}

func keyPEM(key *ecdsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), nil
}

// writeFileAtomic writes data to path through a temporary file in the same
// directory, synced and renamed: a crash leaves the old file or the new
// one, never a torn one.
func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if err == nil {
		err = f.Chmod(mode)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	syncDir(dir)
	return nil
}

// syncDir makes a rename in dir durable.
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
}

// LoadKey reads the host key saved in data directory dir.
func LoadKey(dir string) (*ecdsa.PrivateKey, error) {
	b, err := os.ReadFile(KeyFile(dir))
	if err != nil {
		return nil, err
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, fmt.Errorf("%s: not PEM", KeyFile(dir))
	}
	key, err := x509.ParseECPrivateKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", KeyFile(dir), err)
	}
	return key, nil
}

// SaveKeyAndCertificate saves a host key and its certificate (PEM) in data
// directory dir, each file atomically, and so that a crash between the two
// leaves a pair LoadCertificate can use: the key goes to node.key.new
// first, then the certificate to node.crt, then node.key.new becomes
// node.key.
func SaveKeyAndCertificate(dir string, key *ecdsa.PrivateKey, certPEM string) error {
	kp, err := keyPEM(key)
	if err != nil {
		return err
	}
	if _, err := tls.X509KeyPair([]byte(certPEM), kp); err != nil {
		return fmt.Errorf("host certificate does not match its key: %w", err)
	}
	if err := writeFileAtomic(newKeyFile(dir), kp, 0o600); err != nil {
		return fmt.Errorf("save host key: %w", err)
	}
	if err := writeFileAtomic(CertFile(dir), []byte(certPEM), 0o644); err != nil {
		return fmt.Errorf("save host certificate: %w", err)
	}
	if err := os.Rename(newKeyFile(dir), KeyFile(dir)); err != nil {
		return fmt.Errorf("save host key: %w", err)
	}
	syncDir(dir)
	return nil
}

// LoadCertificate reads the host certificate and key saved in data
// directory dir (Leaf set). It finishes a save a crash interrupted: a
// certificate that matches node.key.new rather than node.key.
func LoadCertificate(dir string) (tls.Certificate, error) {
	pair, err := tls.LoadX509KeyPair(CertFile(dir), KeyFile(dir))
	if err != nil {
		if p2, err2 := tls.LoadX509KeyPair(CertFile(dir), newKeyFile(dir)); err2 == nil {
			if err := os.Rename(newKeyFile(dir), KeyFile(dir)); err != nil {
				return tls.Certificate{}, fmt.Errorf("host key: %w", err)
			}
			syncDir(dir)
			pair, err = p2, nil
		}
	} else {
		os.Remove(newKeyFile(dir)) // a renewal that did not get its certificate
	}
	if err != nil {
		return tls.Certificate{}, err
	}
	if pair.Leaf == nil {
		if pair.Leaf, err = x509.ParseCertificate(pair.Certificate[0]); err != nil {
			return tls.Certificate{}, err
		}
	}
	return pair, nil
}

// pairOf makes the tls.Certificate of a key and its certificate (PEM).
func pairOf(key *ecdsa.PrivateKey, certPEM string) (tls.Certificate, error) {
	kp, err := keyPEM(key)
	if err != nil {
		return tls.Certificate{}, err
	}
	pair, err := tls.X509KeyPair([]byte(certPEM), kp)
	if err != nil {
		return tls.Certificate{}, err
	}
	if pair.Leaf == nil {
		if pair.Leaf, err = x509.ParseCertificate(pair.Certificate[0]); err != nil {
			return tls.Certificate{}, err
		}
	}
	return pair, nil
}

// TLS gives other code of this host (transfers between agents) the
// agent's current client certificate, which is also valid for serving
// (the control plane's CA signed it for client and server
// authentication), and the pool of the CA that signs every host's and
// the control plane's certificates (nil: the system's roots). The
// function returns the certificate of the moment: it changes when the
// agent renews it.
func (a *Agent) TLS() (cert func() (*tls.Certificate, error), ca *x509.CertPool) {
	cert = func() (*tls.Certificate, error) {
		c := a.cert.Load()
		if c == nil {
			return nil, errors.New("the agent has no host certificate yet: it has not registered")
		}
		return c, nil
	}
	if caPEM := a.cfg.Server.CACert; caPEM != "" {
		ca = x509.NewCertPool()
		if !ca.AppendCertsFromPEM([]byte(caPEM)) {
			ca = nil
		}
	}
	return cert, ca
}

// clientCertificate is the client's GetClientCertificate: the current
// host certificate, or none before the agent has one.
func (a *Agent) clientCertificate(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	if c := a.cert.Load(); c != nil {
		return c, nil
	}
	return &tls.Certificate{}, nil
}

// nodeClient returns a client that authenticates with node token token
// and the host certificate of each new connection's moment. It has
// connections of its own: one made before a new certificate never carries
// a request of it.
func (a *Agent) nodeClient(token string) (*client.Client, error) {
	cfg := a.cfg.Server
	cfg.Token = token
	cfg.ClientCert, cfg.ClientKey, cfg.GetClientCertificate = "", "", a.clientCertificate
	return client.New(cfg)
}

// joinClient returns a client with the join token and no certificate.
func (a *Agent) joinClient() (*client.Client, error) {
	cfg := a.cfg.Server
	cfg.ClientCert, cfg.ClientKey, cfg.GetClientCertificate = "", "", nil
	return client.New(cfg)
}

// certificateRequest makes a new host key and a certificate request for it.
func (a *Agent) certificateRequest() (*ecdsa.PrivateKey, string, error) {
	key, err := NewKey()
	if err != nil {
		return nil, "", err
	}
	csr, err := client.NewCertificateRequest(key, a.node)
	return key, csr, err
}

// renewDue reports whether the host certificate should be renewed: half of
// its lifetime has passed.
func (a *Agent) renewDue() bool {
	c := a.cert.Load()
	if c == nil || c.Leaf == nil {
		return false
	}
	now := a.now()
	a.mu.Lock()
	next := a.renewAt
	a.mu.Unlock()
	if now.Before(next) {
		return false
	}
	nb, na := c.Leaf.NotBefore, c.Leaf.NotAfter
	if !nb.Before(na) {
		return true
	}
	return !now.Before(nb.Add(na.Sub(nb) / 2))
}

// renewCert trades the host certificate for a new one with a new key,
// saves both and switches to them: new connections present the new
// certificate, the old one keeps being accepted for a grace period so
// that requests in flight finish. If they cannot be saved the agent uses
// them anyway (the old certificate is about to stop being accepted) and
// tries to save them again at each heartbeat.
func (a *Agent) renewCert(ctx context.Context) error {
	key, csr, err := a.certificateRequest()
	if err != nil {
		return err
	}
	nc, err := a.client().RenewCertificate(ctx, a.node, csr)
	if err != nil {
		a.mu.Lock()
		a.renewAt = a.now().Add(rotateRetry)
		a.mu.Unlock()
		return fmt.Errorf("renew host certificate: %w", err)
	}
	pair, err := pairOf(key, nc.Certificate)
	if err != nil {
		a.mu.Lock()
		a.renewAt = a.now().Add(rotateRetry)
		a.mu.Unlock()
		return fmt.Errorf("renewed host certificate: %w", err)
	}
	serr := SaveKeyAndCertificate(a.cfg.DataDir, key, nc.Certificate)
	if err := a.useCert(pair, key, nc.Certificate, serr != nil); err != nil {
		return err
	}
	if serr != nil {
		return fmt.Errorf("host certificate renewed (serial %s) but not saved; the agent uses it and saves it at the next heartbeat: %w", nc.Serial, serr)
	}
	a.log.Info("host certificate renewed", "serial", nc.Serial, "expires_at", nc.CertificateExpiresAt, "previous_expires_at", nc.PreviousExpiresAt)
	return nil
}

// useCert makes pair the host certificate and moves the agent to new
// connections, which present it.
func (a *Agent) useCert(pair tls.Certificate, key *ecdsa.PrivateKey, certPEM string, unsaved bool) error {
	a.cert.Store(&pair)
	a.mu.Lock()
	old, tok := a.cl, a.cred.Token
	a.mu.Unlock()
	cl, err := a.nodeClient(tok)
	if err != nil {
		return err
	}
	a.mu.Lock()
	if a.cred.Token != tok {
		cl = cl.WithToken(a.cred.Token) // rotated meanwhile
	}
	a.cl, a.renewAt = cl, time.Time{}
	a.certUnsaved = nil
	if unsaved {
		a.certUnsaved = &unsavedCert{key: key, certPEM: certPEM}
	}
	a.mu.Unlock()
	if old != nil {
		old.CloseIdleConnections()
	}
	return nil
}

// unsavedCert is a renewed host certificate not saved yet.
type unsavedCert struct {
	key     *ecdsa.PrivateKey
	certPEM string
}

// saveCertIfUnsaved retries saving a renewed certificate that could not
// be saved.
func (a *Agent) saveCertIfUnsaved() {
	a.mu.Lock()
	u := a.certUnsaved
	a.mu.Unlock()
	if u == nil {
		return
	}
	if err := SaveKeyAndCertificate(a.cfg.DataDir, u.key, u.certPEM); err != nil {
		a.log.Error("host certificate still not saved", "err", err)
		return
	}
	a.mu.Lock()
	if a.certUnsaved == u {
		a.certUnsaved = nil
	}
	a.mu.Unlock()
	a.log.Info("host certificate saved")
}
