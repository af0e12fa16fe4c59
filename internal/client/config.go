package client

import (
	"crypto/tls"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// Config is what a client needs: where the server is, the token, and the
// CA that signed the server's certificate.
type Config struct {
	Server  string `json:"server"`             // https://127.0.0.1:7443
	Token   string `json:"token"`              // bearer token
	CACert  string `json:"ca_cert,omitempty"`  // PEM
	Project string `json:"project,omitempty"`  // for display only
	DataDir string `json:"data_dir,omitempty"` // of the vgrid up that wrote it
	// Insecure allows a plain http:// server address other than this
	// machine's (the token then crosses the network in the clear). Only
	// the --insecure flag sets it: no config file or variable does.
	Insecure bool `json:"-"`
	// ClientCert and ClientKey (PEM), or GetClientCertificate, are the
	// client certificate presented to the server: a host's agent
	// authenticates with its certificate as well as with its node token.
	// GetClientCertificate is asked at each new connection, so that a
	// renewed certificate is used without a new client; it may return an
	// empty certificate (none is sent then). Neither is ever saved in a
	// config file.
	ClientCert           string                                                      `json:"-"`
	ClientKey            string                                                      `json:"-"`
	GetClientCertificate func(*tls.CertificateRequestInfo) (*tls.Certificate, error) `json:"-"`
	// FailoverWait bounds how long a request keeps trying the replicas
	// (0: DefaultFailoverWait; negative: one try, no failover).
	FailoverWait time.Duration `json:"-"`
}

// DefaultConfigPath is where vgrid up writes the client config and where
// the CLI reads it: $VGRID_CONFIG, else ~/.config/vgrid/client.json.
func DefaultConfigPath() string {
	if p := os.Getenv("VGRID_CONFIG"); p != "" {
		return p
	}
	dir, err := os.UserConfigDir()
	if err != nil {
		dir = "/etc"
	}
	return filepath.Join(dir, "vgrid", "client.json")
}

// LoadConfigFile reads a config file as it is, without the environment.
func LoadConfigFile(path string) (Config, error) {
	var c Config
	b, err := os.ReadFile(path)
	if err != nil {
		return c, err
	}
	if err := json.Unmarshal(b, &c); err != nil {
		return c, fmt.Errorf("client config %s: %w", path, err)
	}
	return c, nil
}

// LoadConfig reads a config file (missing is not an error: the result is
// empty) and applies VGRID_ADDR, VGRID_TOKEN and VGRID_CA_CERT (a path).
func LoadConfig(path string) (Config, error) {
	var c Config
	b, err := os.ReadFile(path)
	switch {
	case err == nil:
		if err := json.Unmarshal(b, &c); err != nil {
			return c, fmt.Errorf("client config %s: %w", path, err)
		}
	case !os.IsNotExist(err):
		return c, fmt.Errorf("client config: %w", err)
	}
	if v := os.Getenv("VGRID_ADDR"); v != "" {
		c.Server = v
	}
	if v := os.Getenv("VGRID_TOKEN"); v != "" {
		c.Token = v
	}
	if v := os.Getenv("VGRID_CA_CERT"); v != "" {
		pem, err := os.ReadFile(v)
		if err != nil {
			return c, fmt.Errorf("VGRID_CA_CERT: %w", err)
		}
		c.CACert = string(pem)
	}
	return c, nil
}

// Save writes the config with owner-only permissions, atomically.
func (c Config) Save(path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	b, _ := json.MarshalIndent(c, "", "  ")
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
