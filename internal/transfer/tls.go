package transfer

import (
	"crypto/tls"
	"crypto/x509"
	"net"
)

// ServerTLSConfig is the TLS configuration of a source: TLS 1.3, HTTP/1.1,
// the server certificate from getCert, and client certificates required and
// verified against ca.
func ServerTLSConfig(getCert func(*tls.ClientHelloInfo) (*tls.Certificate, error), ca *x509.CertPool) *tls.Config {
	return &tls.Config{
		MinVersion:     tls.VersionTLS13,
		GetCertificate: getCert,
		ClientAuth:     tls.RequireAndVerifyClientCert,
		ClientCAs:      ca,
		NextProtos:     []string{"http/1.1"},
		// Full-size records from the start: the peer wants bulk data.
		DynamicRecordSizingDisabled: true,
	}
}

// ListenTLS listens on the TCP address addr with ServerTLSConfig(getCert, ca).
func ListenTLS(addr string, getCert func(*tls.ClientHelloInfo) (*tls.Certificate, error), ca *x509.CertPool) (net.Listener, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	return tls.NewListener(l, ServerTLSConfig(getCert, ca)), nil
}

// ClientTLSConfig is the TLS configuration of a destination: TLS 1.3, the
// client certificate from getCert, and the source's certificate verified
// against ca for the host name serverName.
func ClientTLSConfig(getCert func(*tls.CertificateRequestInfo) (*tls.Certificate, error), ca *x509.CertPool, serverName string) *tls.Config {
	return &tls.Config{
		MinVersion:           tls.VersionTLS13,
		GetClientCertificate: getCert,
		RootCAs:              ca,
		ServerName:           serverName,
		NextProtos:           []string{"http/1.1"},
	}
}
