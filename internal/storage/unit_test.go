package storage

import (
	"context"
	"crypto/x509"
	"encoding/asn1"
	"encoding/binary"
	"encoding/pem"
	"math/big"
	"strings"
	"testing"
	"time"
)

func TestValidateName(t *testing.T) {
	for _, tc := range []struct {
		name string
		ok   bool
	}{
		{"a", true},
		{"vol-1", true},
		{"0", true},
		{strings.Repeat("z", 63), true},
		{strings.Repeat("z", 64), false},
		{"", false},
		{"Vol", false},
		{"a_b", false},
		{"a.b", false},
		{"../x", false},
		{"a b", false},
		{"é", false},
	} {
		err := ValidateName("name", tc.name)
		if (err == nil) != tc.ok {
			t.Errorf("ValidateName(%q) = %v, want ok=%t", tc.name, err, tc.ok)
		}
		if err != nil && !strings.HasPrefix(err.Error(), "name: ") {
			t.Errorf("error %q does not name the field", err)
		}
	}
}

func qcow2Header(magic string, version uint32, size uint64) []byte {
	h := make([]byte, 72)
	copy(h, magic)
	binary.BigEndian.PutUint32(h[4:], version)
	binary.BigEndian.PutUint64(h[24:], size)
	return h
}

func TestParseQcow2Size(t *testing.T) {
	for _, tc := range []struct {
		name string
		hdr  []byte
		size int64
		err  string
	}{
		{"v3", qcow2Header("QFI\xfb", 3, 4<<20), 4 << 20, ""},
		{"v2", qcow2Header("QFI\xfb", 2, 512), 512, ""},
		{"short", qcow2Header("QFI\xfb", 3, 1)[:31], 0, "32"},
		{"raw", qcow2Header("\x00\x00\x00\x00", 3, 1), 0, "magic"},
		{"v4", qcow2Header("QFI\xfb", 4, 1), 0, "version 4"},
		{"huge", qcow2Header("QFI\xfb", 3, 1<<63), 0, "out of range"},
	} {
		size, err := parseQcow2Size(tc.hdr)
		if tc.err == "" {
			if err != nil || size != tc.size {
				t.Errorf("%s: %d, %v; want %d", tc.name, size, err, tc.size)
			}
		} else if err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("%s: %v, want an error with %q", tc.name, err, tc.err)
		}
	}
}

func TestDecodeExports(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   string
		want map[string]bool
		err  string
	}{
		{"empty list", `{"version":1,"exports":[]}`, map[string]bool{}, ""},
		{"two", `{"version":1,"exports":[{"name":"a","read_only":true},{"name":"b","read_only":false}]}`, map[string]bool{"a": true, "b": false}, ""},
		{"version", `{"version":2,"exports":[]}`, nil, "version"},
		{"unknown field", `{"version":1,"exports":[],"x":1}`, nil, "unknown field"},
		{"bad name", `{"version":1,"exports":[{"name":"../etc"}]}`, nil, "exports[0].name"},
		{"duplicate", `{"version":1,"exports":[{"name":"a"},{"name":"a"}]}`, nil, "twice"},
		{"trailing", `{"version":1,"exports":[]} {}`, nil, "after"},
		{"not json", `exports`, nil, "exports file"},
		{"wrong type", `{"version":"1"}`, nil, "version"},
	} {
		got, err := decodeExports([]byte(tc.in))
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s: %v, want an error with %q", tc.name, err, tc.err)
			}
			continue
		}
		if err != nil || len(got) != len(tc.want) {
			t.Errorf("%s: %v, %v; want %v", tc.name, got, err, tc.want)
			continue
		}
		for k, v := range tc.want {
			if ro, ok := got[k]; !ok || ro != v {
				t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
			}
		}
		back, err := decodeExports(encodeExports(got))
		if err != nil || len(back) != len(got) {
			t.Errorf("%s: round trip: %v, %v", tc.name, back, err)
		}
	}
}

func TestCheckTLS(t *testing.T) {
	ca := newTestCA(t, "ca")
	other := newTestCA(t, "other")
	good, goodKey := ca.issue(t, "h", certOpts{})
	_, otherKey := ca.issue(t, "h2", certOpts{})
	serverOnly, serverOnlyKey := ca.issue(t, "h", certOpts{ext: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
	noSig, noSigKey := ca.issue(t, "h", certOpts{usage: x509.KeyUsageKeyEncipherment})
	foreign, foreignKey := other.issue(t, "h", certOpts{})
	expired, expiredKey := ca.issue(t, "h", certOpts{notAfter: time.Now().Add(-time.Minute)})
	for _, tc := range []struct {
		name          string
		ca, cert, key []byte
		err           string
	}{
		{"good", ca.certPEM, good, goodKey, ""},
		{"no CA", nil, good, goodKey, "CACert: no PEM"},
		{"CA is a leaf", good, good, goodKey, "CACert"},
		{"no cert", ca.certPEM, nil, goodKey, "Cert: empty"},
		{"no key", ca.certPEM, good, nil, "Key: empty"},
		{"key of another cert", ca.certPEM, good, otherKey, "Cert/Key"},
		{"server auth only", ca.certPEM, serverOnly, serverOnlyKey, "clientAuth"},
		{"no digital signature", ca.certPEM, noSig, noSigKey, "digitalSignature"},
		{"another CA", ca.certPEM, foreign, foreignKey, "not valid under CACert"},
		{"expired", ca.certPEM, expired, expiredKey, "not valid under CACert"},
	} {
		err := checkTLS(tc.ca, tc.cert, tc.key, time.Now())
		if tc.err == "" {
			if err != nil {
				t.Errorf("%s: %v", tc.name, err)
			}
		} else if err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("%s: %v, want an error with %q", tc.name, err, tc.err)
		}
	}
}

// TestStartRefusesBadConfig: configuration errors name the field and
// come before any process is started.
func TestStartRefusesBadConfig(t *testing.T) {
	ca := newTestCA(t, "ca")
	cert, key := ca.issue(t, "h", certOpts{})
	good := Config{Dir: t.TempDir(), Listen: "127.0.0.1:10809", CACert: ca.certPEM, Cert: cert, Key: key, Binary: "true"}
	for _, tc := range []struct {
		name string
		edit func(*Config)
		err  string
	}{
		{"no dir", func(c *Config) { c.Dir = "" }, "Dir"},
		{"port 0", func(c *Config) { c.Listen = "127.0.0.1:0" }, "Listen"},
		{"no port", func(c *Config) { c.Listen = "127.0.0.1" }, "Listen"},
		{"no host", func(c *Config) { c.Listen = ":10809" }, "Listen"},
		{"port too big", func(c *Config) { c.Listen = "127.0.0.1:65536" }, "Listen"},
		{"named port", func(c *Config) { c.Listen = "127.0.0.1:nbd" }, "Listen"},
		{"no binary", func(c *Config) { c.Binary = "/nonexistent/qemu-storage-daemon" }, "Binary"},
		{"no key", func(c *Config) { c.Key = nil }, "Key"},
		{"long dir", func(c *Config) { c.Dir = "/tmp/" + strings.Repeat("d", 120) }, "Dir"},
	} {
		cfg := good
		tc.edit(&cfg)
		d, err := Start(context.Background(), cfg)
		if err == nil {
			d.Close()
			t.Errorf("%s: started", tc.name)
			continue
		}
		if !strings.HasPrefix(err.Error(), tc.err) {
			t.Errorf("%s: %v, want an error about %s", tc.name, err, tc.err)
		}
	}
}

// TestDHParams: the embedded parameters are a safe-prime group with
// generator 2, as RFC 7919 defines them.
func TestDHParams(t *testing.T) {
	b, _ := pem.Decode([]byte(ffdhe2048))
	if b == nil || b.Type != "DH PARAMETERS" {
		t.Fatal("not a DH PARAMETERS PEM block")
	}
	var params struct{ P, G *big.Int }
	if rest, err := asn1.Unmarshal(b.Bytes, &params); err != nil || len(rest) != 0 {
		t.Fatalf("asn1: %v, %d bytes left", err, len(rest))
	}
	if params.P.BitLen() != 2048 || params.G.Int64() != 2 {
		t.Fatalf("p of %d bits, g %v", params.P.BitLen(), params.G)
	}
	q := new(big.Int).Rsh(params.P, 1)
	if !params.P.ProbablyPrime(8) || !q.ProbablyPrime(8) {
		t.Fatal("p is not a safe prime")
	}
}
