package server

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"sync/atomic"
	"time"

	"vgrid/api"
	"vgrid/internal/store"
)

// A control plane may run as several replicas over one etcd store. Every
// replica serves the whole API: it answers reads from the store (after
// authenticating the caller), and forwards to the leading replica, before
// reading anything, what needs the calendar (every write, and a read the
// controller refuses on a follower). The leader authenticates a forwarded
// request as any other, by the caller's bearer token; a host's client
// certificate, which the leader cannot see through the proxy, is passed in
// forwardedCertHeader, and believed only on a connection whose own client
// certificate is a replica's (the server certificate, signed by the shared
// CA, CN replicaCN).

// forwardedCertHeader carries the verified client certificate (base64 DER)
// of a host's request forwarded by a replica.
const forwardedCertHeader = "X-Vgrid-Forwarded-Client-Cert"

// forwardedByHeader names the replica that forwarded a request: a leader
// never forwards such a request again (no loops while leadership moves).
const forwardedByHeader = "X-Vgrid-Forwarded-By"

// replicaCN is the common name of a replica's (server) certificate.
const replicaCN = "vgrid server"

// Leadership says whether this replica leads and, if not, the API URL of
// the one that does ("" while none is known).
type Leadership func() (leading bool, leaderURL string)

// replication is a replica's forwarding state (nil fields: a single
// control plane, which always leads).
type replication struct {
	leadership Leadership
	name       string
	transport  http.RoundTripper
	// proxy is the reverse proxy to the current leader's URL.
	proxy atomic.Pointer[leaderProxy]
}

type leaderProxy struct {
	url string
	rp  *httputil.ReverseProxy
}

// SetReplication makes the server one replica of several: leadership tells
// who leads, name identifies this replica in forwarded requests, and
// clientCert is the certificate it presents to the leader (its server
// certificate); the leader is verified against the CA of SetNodeCA, which
// must be set first.
func (s *Server) SetReplication(name string, leadership Leadership, clientCert tls.Certificate) error {
	ca := s.ca.get()
	if ca == nil {
		return errors.New("replication: no CA (SetNodeCA first)")
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{RootCAs: ca.pool, Certificates: []tls.Certificate{clientCert}, MinVersion: tls.VersionTLS12}
	tr.ResponseHeaderTimeout = 0 // long polls and streams pass through
	tr.MaxIdleConnsPerHost = 32
	s.repl = &replication{leadership: leadership, name: name, transport: tr}
	return nil
}

// leading reports whether this server decides (it leads, or it is the only
// replica).
func (s *Server) leading() bool {
	if s.repl == nil {
		return true
	}
	l, _ := s.repl.leadership()
	return l
}

// forwardFirst says whether r goes to the leader before this replica
// reads anything: it does not lead and r is a write, or it knows of no
// leader at all (an election under way, or it is cut off from etcd), in
// which case it cannot tell whether the store it would read is current
// and forward answers 503 not_leader: the caller tries another replica.
func (s *Server) forwardFirst(r *http.Request) bool {
	if s.repl == nil {
		return false
	}
	leading, url := s.repl.leadership()
	return !leading && (needsLeader(r) || url == "")
}

// needsLeader says whether a request must be served by the leader: every
// method but GET (reads are answered from the store, and forwarded only if
// the controller refuses them on a follower).
func needsLeader(r *http.Request) bool {
	return r.Method != http.MethodGet && r.Method != http.MethodHead
}

// forward proxies r to the leading replica. It answers 503 not_leader if
// no leader is known, or if r was already forwarded once (the leader it
// was meant for no longer leads: the caller retries).
func (s *Server) forward(w http.ResponseWriter, r *http.Request) {
	_, url := s.repl.leadership()
	if url == "" || r.Header.Get(forwardedByHeader) != "" {
		why := "no replica leads the control plane at the moment (an election is under way)"
		if url != "" {
			why = "the replica this request was forwarded to no longer leads"
		}
		writeError(w, s.log, fmt.Errorf("%s: %w", why, store.ErrNotLeader))
		return
	}
	lp := s.repl.proxy.Load()
	if lp == nil || lp.url != url {
		rp, err := s.newLeaderProxy(url)
		if err != nil {
			writeError(w, s.log, err)
			return
		}
		lp = &leaderProxy{url: url, rp: rp}
		s.repl.proxy.Store(lp)
	}
	lp.rp.ServeHTTP(w, r)
}

func (s *Server) newLeaderProxy(leader string) (*httputil.ReverseProxy, error) {
	u, err := url.Parse(leader)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("leader address %q: %w", leader, store.ErrNotLeader)
	}
	return &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(u)
			pr.Out.Host = u.Host
			pr.Out.Header.Del(forwardedCertHeader)
			pr.Out.Header.Set(forwardedByHeader, s.repl.name)
			if tls := pr.In.TLS; tls != nil && len(tls.VerifiedChains) > 0 && len(tls.VerifiedChains[0]) > 0 {
				pr.Out.Header.Set(forwardedCertHeader, base64.StdEncoding.EncodeToString(tls.VerifiedChains[0][0].Raw))
			}
		},
		Transport:     s.repl.transport,
		FlushInterval: -1, // streams (logs, exec, long polls) pass at once
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			if clientGone(r.Context().Err()) {
				return
			}
			var op *net.OpError
			if (errors.As(err, &op) && op.Op == "dial") || !needsLeader(r) {
				// The leader is unreachable, so nothing was done (or it was
				// a read): the caller retries, here or elsewhere, once a
				// new one is elected.
				writeError(w, s.log, fmt.Errorf("forward to the leader %s: %v: %w", leader, err, store.ErrNotLeader))
				return
			}
			// The leader went away with the request: it may have been
			// carried out. The caller looks before trying again.
			writeError(w, s.log, &httpError{http.StatusBadGateway, api.CodeLeaderLost,
				fmt.Sprintf("the leading replica %s went away while it handled this request (%v): it may or may not have been carried out; look before trying again", leader, err), nil})
		},
	}, nil
}

// clientLeaf is the verified client certificate of r: the one of its own
// TLS connection, or, on a connection from another replica, the one that
// replica verified and forwarded (checked against the CA again).
func (s *Server) clientLeaf(r *http.Request) (*x509.Certificate, bool) {
	if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 || len(r.TLS.VerifiedChains[0]) == 0 {
		return nil, false
	}
	leaf := r.TLS.VerifiedChains[0][0]
	h := r.Header.Get(forwardedCertHeader)
	if h == "" || leaf.Subject.CommonName != replicaCN {
		return leaf, true
	}
	der, err := base64.StdEncoding.DecodeString(h)
	if err != nil {
		return nil, false
	}
	fwd, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, false
	}
	ca := s.ca.get()
	if ca == nil {
		return nil, false
	}
	// Expiry is checked by the caller against its clock; here the chain.
	if _, err := fwd.Verify(x509.VerifyOptions{Roots: ca.pool, CurrentTime: fwd.NotBefore.Add(time.Second),
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		return nil, false
	}
	return fwd, true
}
