package server

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"slices"
	"sync/atomic"
	"time"

	"vgrid/api"
	"vgrid/internal/model"
	"vgrid/internal/store"
)

// Host certificates: every agent authenticates with a client certificate
// signed by the control plane's CA (the CA that signed the server's own
// certificate, tls/ca.key) as well as with its node token. The server
// signs a host's certificate request when it registers (POST /nodes) and
// when its agent renews (POST /nodes/{node}/certificate), and records the
// serials it issued per host (nodecerts/<node>): only those are accepted,
// so that revoking the host (POST /nodes/{node}/revoke) refuses its
// certificate at once although the certificate itself is still valid.

// Host certificate lifetimes.
var (
	// DefaultCertTTL is a host certificate's lifetime when the control
	// plane is given none (Server.SetNodeCA). Agents renew theirs when
	// half of it has passed.
	DefaultCertTTL = 7 * 24 * time.Hour
	// CertRenewalGrace is how long the certificate a renewal replaced
	// keeps being accepted, so that requests in flight with it finish.
	CertRenewalGrace = 5 * time.Minute
)

// certBackdate is how far before its issue a host certificate's validity
// starts: room for the clocks of the hosts that will verify it.
const certBackdate = 5 * time.Minute

// maxCSRLen bounds a certificate request's PEM text.
const maxCSRLen = 16 << 10

// maxRSABits bounds an RSA key in a certificate request, so that checking
// its signature stays cheap.
const maxRSABits = 8192

// caHolder holds the server's nodeCA (nil: none yet).
type caHolder struct{ p atomic.Pointer[nodeCA] }

func (h *caHolder) get() *nodeCA { return h.p.Load() }

// nodeCA is the CA that signs host certificates.
type nodeCA struct {
	cert *x509.Certificate
	key  crypto.Signer
	pool *x509.CertPool
	ttl  time.Duration
}

// SetNodeCA makes the server sign hosts' client certificates with the CA
// of f (its ca.crt and ca.key), each valid for ttl (0: DefaultCertTTL).
// Call it before serving (again later: the new lifetime applies to the
// certificates issued from then on): without a CA no host can register,
// and node requests are refused for want of a certificate. The listener must ask
// for client certificates (ServerTLSConfig does).
func (s *Server) SetNodeCA(f TLSFiles, ttl time.Duration) error {
	ca, key, err := f.loadCA()
	if err != nil {
		return fmt.Errorf("host certificate authority: %w", err)
	}
	if ttl < 0 {
		return fmt.Errorf("host certificate lifetime %s: must be positive", ttl)
	}
	if ttl == 0 {
		ttl = DefaultCertTTL
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	s.ca.p.Store(&nodeCA{cert: ca, key: key, pool: pool, ttl: ttl})
	return nil
}

// csrError is a refusal of a certificate request: 400 naming field csr.
func csrError(reason string) error {
	return badRequest("csr: "+reason, api.FieldError{Field: "csr", Reason: reason})
}

// quoteShort quotes s, cut to 64 bytes: for echoing untrusted input.
func quoteShort(s string) string {
	if len(s) > 64 {
		s = s[:64] + "..."
	}
	return fmt.Sprintf("%q", s)
}

// checkCSR parses and checks a host's certificate request: exactly one PEM
// block of type CERTIFICATE REQUEST, a self-signature that verifies, a key
// that is ECDSA P-256 or RSA of 2048 to 8192 bits, and the common name
// node. A refusal is a 400 naming field csr and the reason. Nothing else
// of the request is used: the certificate's names, usages and lifetime
// are the server's.
func checkCSR(csrPEM, node string) (*x509.CertificateRequest, error) {
	if len(bytes.TrimSpace([]byte(csrPEM))) == 0 {
		return nil, csrError("required: the host's certificate request (PEM), which every agent sends when it registers")
	}
	if len(csrPEM) > maxCSRLen {
		return nil, csrError(fmt.Sprintf("%d bytes: a certificate request is at most %d", len(csrPEM), maxCSRLen))
	}
	blk, rest := pem.Decode([]byte(csrPEM))
	if blk == nil {
		return nil, csrError("not PEM: want one -----BEGIN CERTIFICATE REQUEST----- block")
	}
	if blk.Type != "CERTIFICATE REQUEST" && blk.Type != "NEW CERTIFICATE REQUEST" {
		return nil, csrError(fmt.Sprintf("a PEM block of type %s: want CERTIFICATE REQUEST", quoteShort(blk.Type)))
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		return nil, csrError("text after the PEM block: want exactly one certificate request")
	}
	csr, err := x509.ParseCertificateRequest(blk.Bytes)
	if err != nil {
		return nil, csrError("not a certificate request: " + err.Error())
	}
	if reason := checkHostKey(csr.PublicKey); reason != "" {
		return nil, csrError(reason)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, csrError("its signature does not verify: " + err.Error())
	}
	if cn := csr.Subject.CommonName; cn != node {
		return nil, csrError(fmt.Sprintf("common name %s: must be the host's name %s", quoteShort(cn), quoteShort(node)))
	}
	return csr, nil
}

// checkHostKey says why a host's public key is refused ("" if it is not).
func checkHostKey(pub any) string {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() {
			return fmt.Sprintf("an ECDSA key on curve %s: want P-256", k.Curve.Params().Name)
		}
	case *rsa.PublicKey:
		if n := k.N.BitLen(); n < 2048 || n > maxRSABits {
			return fmt.Sprintf("an RSA key of %d bits: want 2048 to %d", n, maxRSABits)
		}
	default:
		return fmt.Sprintf("a %T key: want ECDSA P-256 or RSA of 2048 bits or more", pub)
	}
	return ""
}

// nodeSerial is a random, positive 128-bit serial number.
func nodeSerial() *big.Int {
	limit := new(big.Int).Lsh(big.NewInt(1), 128)
	for {
		n, err := rand.Int(rand.Reader, limit)
		if err != nil {
			panic(err) // crypto/rand does not fail on Linux
		}
		if n.Sign() > 0 {
			return n
		}
	}
}

// serialText is how a serial is recorded and shown: lower-case hex.
func serialText(n *big.Int) string { return n.Text(16) }

// addressIP is the IP address of a host's address field (an address, or
// address:port), or nil if it is a name or empty.
func addressIP(addr string) net.IP {
	if ip := net.ParseIP(addr); ip != nil {
		return ip
	}
	if h, _, err := net.SplitHostPort(addr); err == nil {
		return net.ParseIP(h)
	}
	return nil
}

var errNoCA = errors.New("this control plane has no certificate authority for host certificates (server.SetNodeCA)")

// signNodeCert signs a certificate for host node's key pub: CN and DNS name
// the host's name, the IP of its address if it is one, client and server
// authentication (agents also serve each other with it), a random serial,
// valid for the CA's TTL (within the CA's own lifetime).
func (s *Server) signNodeCert(node, address string, pub crypto.PublicKey) (certPEM string, leaf *x509.Certificate, err error) {
	ca := s.ca.get()
	if ca == nil {
		return "", nil, errNoCA
	}
	if reason := checkHostKey(pub); reason != "" {
		return "", nil, fmt.Errorf("host key: %s", reason)
	}
	now := s.now()
	notAfter := now.Add(ca.ttl)
	if notAfter.After(ca.cert.NotAfter) {
		notAfter = ca.cert.NotAfter
	}
	usage := x509.KeyUsageDigitalSignature
	if _, ok := pub.(*rsa.PublicKey); ok {
		usage |= x509.KeyUsageKeyEncipherment
	}
	tmpl := &x509.Certificate{
		SerialNumber:          nodeSerial(),
		Subject:               pkix.Name{CommonName: node},
		DNSNames:              []string{node},
		NotBefore:             now.Add(-certBackdate),
		NotAfter:              notAfter,
		KeyUsage:              usage,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
	}
	if ip := addressIP(address); ip != nil {
		tmpl.IPAddresses = []net.IP{ip}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, pub, ca.key)
	if err != nil {
		return "", nil, fmt.Errorf("sign host certificate: %w", err)
	}
	if leaf, err = x509.ParseCertificate(der); err != nil {
		return "", nil, err
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})), leaf, nil
}

// nodeCertsKey is where the serials issued to a host are recorded.
func nodeCertsKey(node string) string { return "nodecerts/" + node }

// issuedCert is one certificate issued to a host, as recorded.
type issuedCert struct {
	Serial   string    `json:"serial"`
	IssuedAt time.Time `json:"issued_at"`
	NotAfter time.Time `json:"not_after"`
	// Until, if set, is when a certificate a renewal replaced stops being
	// accepted (the end of its grace).
	Until time.Time `json:"until,omitzero"`
}

// acceptedUntil is when the certificate stops being accepted.
func (c issuedCert) acceptedUntil() time.Time {
	if !c.Until.IsZero() && c.Until.Before(c.NotAfter) {
		return c.Until
	}
	return c.NotAfter
}

// nodeCerts is the value under nodeCertsKey: the host's current
// certificate first, then the one it replaced while in its grace.
type nodeCerts struct {
	Node  string       `json:"node"`
	Certs []issuedCert `json:"certs"`
}

// nodeCertList reads the certificates recorded for node (none if there is
// no record) and the record's revision (0 if none).
func (s *Server) nodeCertList(ctx context.Context, node string) (nodeCerts, int64, error) {
	kv, err := s.store.Get(ctx, nodeCertsKey(node))
	if errors.Is(err, store.ErrNotFound) {
		return nodeCerts{Node: node}, 0, nil
	}
	if err != nil {
		return nodeCerts{}, 0, err
	}
	var nc nodeCerts
	if err := json.Unmarshal(kv.Value, &nc); err != nil {
		return nodeCerts{}, 0, fmt.Errorf("decode %s: %w", kv.Key, err)
	}
	return nc, kv.Revision, nil
}

// recordNodeCert records c as node's current certificate. The certificate
// with serial keep (the one that asked for the renewal), if it is still
// accepted, stays accepted for CertRenewalGrace more at most; every other
// one is dropped. It returns when the kept one stops being accepted (zero
// if none is kept).
func (s *Server) recordNodeCert(ctx context.Context, node string, c issuedCert, keep string) (time.Time, error) {
	for {
		cur, rev, err := s.nodeCertList(ctx, node)
		if err != nil {
			return time.Time{}, err
		}
		now := s.now()
		next := nodeCerts{Node: node, Certs: []issuedCert{c}}
		var prevUntil time.Time
		if keep != "" && keep != c.Serial {
			if i := slices.IndexFunc(cur.Certs, func(p issuedCert) bool { return p.Serial == keep }); i >= 0 {
				p := cur.Certs[i]
				if now.Before(p.acceptedUntil()) {
					if end := now.Add(CertRenewalGrace); p.Until.IsZero() || end.Before(p.Until) {
						p.Until = end
					}
					next.Certs = append(next.Certs, p)
					prevUntil = p.acceptedUntil()
				}
			}
		}
		b, _ := json.Marshal(next)
		if rev == 0 {
			_, err = s.store.Create(ctx, nodeCertsKey(node), b)
		} else {
			_, err = s.store.Update(ctx, nodeCertsKey(node), b, rev)
		}
		switch {
		case err == nil:
			return prevUntil, nil
		case errors.Is(err, store.ErrConflict), errors.Is(err, store.ErrExists), errors.Is(err, store.ErrNotFound):
			continue // changed meanwhile: again with what is there now
		default:
			return time.Time{}, fmt.Errorf("record host certificate: %w", err)
		}
	}
}

// dropNodeCerts forgets every certificate issued to node, so that none is
// accepted any more, and returns how many were still accepted.
func (s *Server) dropNodeCerts(ctx context.Context, node string) (int, error) {
	cur, rev, err := s.nodeCertList(ctx, node)
	if err != nil || rev == 0 {
		return 0, err
	}
	if err := s.store.Delete(ctx, nodeCertsKey(node), 0); err != nil && !errors.Is(err, store.ErrNotFound) {
		return 0, err
	}
	now := s.now()
	n := 0
	for _, c := range cur.Certs {
		if now.Before(c.acceptedUntil()) {
			n++
		}
	}
	if n > 0 {
		s.log.Info("host certificates revoked", "node", node, "certificates", n)
	}
	s.setNodeCertExpiry(ctx, node, time.Time{})
	return n, nil
}

// setNodeCertExpiry shows in host node's record (vgrid node list) when its
// current certificate expires (zero: it has none). The record is the
// controller's: it is updated only if unchanged meanwhile (else read
// again), and a failure is logged only, the record being for display.
func (s *Server) setNodeCertExpiry(ctx context.Context, node string, at time.Time) {
	for attempt := 0; attempt < 20; attempt++ {
		kv, err := s.store.Get(ctx, "nodes/"+node)
		if errors.Is(err, store.ErrNotFound) {
			return
		}
		if err != nil {
			s.log.Warn("node record: certificate expiry", "node", node, "err", err)
			return
		}
		var n model.Node
		if err := json.Unmarshal(kv.Value, &n); err != nil {
			s.log.Warn("node record: certificate expiry", "node", node, "err", err)
			return
		}
		if n.CertificateExpiresAt.Equal(at) {
			return
		}
		n.CertificateExpiresAt = at
		b, _ := json.Marshal(n)
		_, err = s.store.Update(ctx, kv.Key, b, kv.Revision)
		if errors.Is(err, store.ErrConflict) {
			continue
		}
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			s.log.Warn("node record: certificate expiry", "node", node, "err", err)
		}
		return
	}
}

// issueNodeCert signs a certificate for node's key pub and records it as
// the host's current one (keeping the one with serial keep in its grace).
func (s *Server) issueNodeCert(ctx context.Context, node, address string, pub crypto.PublicKey, keep string) (api.NodeCertificate, error) {
	certPEM, leaf, err := s.signNodeCert(node, address, pub)
	if err != nil {
		return api.NodeCertificate{}, err
	}
	serial := serialText(leaf.SerialNumber)
	prev, err := s.recordNodeCert(ctx, node, issuedCert{Serial: serial, IssuedAt: s.now(), NotAfter: leaf.NotAfter}, keep)
	if err != nil {
		return api.NodeCertificate{}, err
	}
	s.setNodeCertExpiry(ctx, node, leaf.NotAfter)
	s.log.Info("host certificate issued", "node", node, "serial", serial, "expires_at", leaf.NotAfter, "previous", keep, "previous_expires_at", prev)
	return api.NodeCertificate{Node: node, Certificate: certPEM, CertificateExpiresAt: leaf.NotAfter, Serial: serial, PreviousExpiresAt: prev}, nil
}

// nodeAddress is the address field of node's stored record ("" if there
// is none).
func (s *Server) nodeAddress(ctx context.Context, node string) (string, error) {
	kv, err := s.store.Get(ctx, "nodes/"+node)
	if errors.Is(err, store.ErrNotFound) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	var n model.Node
	if err := json.Unmarshal(kv.Value, &n); err != nil {
		return "", fmt.Errorf("decode node %s: %w", node, err)
	}
	return n.Address, nil
}

// certUnauthorized is a 401 about the client certificate.
func certUnauthorized(msg string) error {
	return &httpError{http.StatusUnauthorized, api.CodeUnauthorized, msg, nil}
}

// checkNodeCert checks the client certificate of a request made with a node
// token t: one that the TLS handshake verified against the CA (so not
// expired nor foreign), for the token's host and the host in the path,
// issued to that host and neither revoked nor replaced past its grace.
// No, or an expired, certificate is 401; one for another host, revoked or
// replaced is 403.
func (s *Server) checkNodeCert(r *http.Request, t Token) error {
	leaf, ok := s.clientLeaf(r)
	if !ok {
		return certUnauthorized("no client certificate: a host's requests need its certificate (node.crt in the agent's data directory, signed by the control plane's CA) besides its node token")
	}
	cn := leaf.Subject.CommonName
	if cn != t.Node {
		return fmt.Errorf("%w: the client certificate is for host %s, the node token for host %q", errForbidden, quoteShort(cn), t.Node)
	}
	if n := r.PathValue("node"); n != "" && n != cn {
		return fmt.Errorf("%w: the client certificate is for host %s, not %q", errForbidden, quoteShort(cn), n)
	}
	now := s.now()
	if !now.Before(leaf.NotAfter) {
		return certUnauthorized(fmt.Sprintf("the client certificate expired at %s", leaf.NotAfter.UTC().Format(time.RFC3339)))
	}
	serial := serialText(leaf.SerialNumber)
	nc, _, err := s.nodeCertList(r.Context(), cn)
	if err != nil {
		return err
	}
	i := slices.IndexFunc(nc.Certs, func(c issuedCert) bool { return c.Serial == serial })
	if i < 0 {
		return fmt.Errorf("%w: the client certificate (serial %s) of host %q was revoked or replaced", errForbidden, serial, cn)
	}
	if end := nc.Certs[i].acceptedUntil(); !now.Before(end) {
		return fmt.Errorf("%w: the client certificate (serial %s) of host %q was replaced; its grace ended at %s", errForbidden, serial, cn, end.UTC().Format(time.RFC3339))
	}
	return nil
}

// postNodeCertificate renews the caller's host certificate: it signs the
// request's CSR and answers the new certificate; the caller's one keeps
// being accepted for CertRenewalGrace.
func (s *Server) postNodeCertificate(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	name, err := nodeOf(r)
	if err != nil {
		return err
	}
	body, err := readBody(r)
	if err != nil {
		return err
	}
	var req api.NodeCertificatePost
	if err := decodeStrict("", body, &req); err != nil {
		return err
	}
	csr, err := checkCSR(req.CSR, name)
	if err != nil {
		return err
	}
	addr, err := s.nodeAddress(ctx, name)
	if err != nil {
		return err
	}
	keep := ""
	if leaf, ok := s.clientLeaf(r); ok {
		keep = serialText(leaf.SerialNumber)
	}
	nc, err := s.issueNodeCert(ctx, name, addr, csr.PublicKey, keep)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, nc)
	return nil
}

// IssueNodeCertificate gives a registered host a new certificate for its
// key pub, as a renewal would but without one: its other certificates are
// no longer accepted. vgrid up uses it for its own agent, whose saved
// certificate expired while vgrid up was down or was revoked.
func (s *Server) IssueNodeCertificate(ctx context.Context, node string, pub crypto.PublicKey) (api.NodeCertificate, error) {
	if _, err := s.store.Get(ctx, "nodes/"+node); err != nil {
		return api.NodeCertificate{}, fmt.Errorf("node %s: %w", node, err)
	}
	addr, err := s.nodeAddress(ctx, node)
	if err != nil {
		return api.NodeCertificate{}, err
	}
	return s.issueNodeCert(ctx, node, addr, pub, "")
}

// NodeCertificateExpiry returns until when cert is accepted as host node's
// client certificate; ok is false if it is not (not signed by the CA,
// expired, for another host, revoked or replaced).
func (s *Server) NodeCertificateExpiry(ctx context.Context, node string, cert *x509.Certificate) (until time.Time, ok bool) {
	ca := s.ca.get()
	if ca == nil || cert == nil || cert.Subject.CommonName != node {
		return time.Time{}, false
	}
	now := s.now()
	if _, err := cert.Verify(x509.VerifyOptions{Roots: ca.pool, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		return time.Time{}, false
	}
	nc, _, err := s.nodeCertList(ctx, node)
	if err != nil {
		return time.Time{}, false
	}
	serial := serialText(cert.SerialNumber)
	for _, c := range nc.Certs {
		if c.Serial == serial && now.Before(c.acceptedUntil()) {
			return c.acceptedUntil(), true
		}
	}
	return time.Time{}, false
}
