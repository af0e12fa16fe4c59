package transfer

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestRefused(t *testing.T) {
	loadPKI(t)
	for _, tc := range []struct {
		name       string
		serverCert *tls.Certificate // default pki.src
		clientTLS  func() *tls.Config
		id         string
		status     int    // the StatusError expected, 0: a TLS failure
		msg        string // in the error
		authorized bool   // authorize was asked
	}{
		{
			name:      "no client certificate",
			clientTLS: func() *tls.Config { return ClientTLSConfig(nil, pki.ca.Pool, srcHost) },
			msg:       "certificate required",
		},
		{
			name:      "client certificate of another CA",
			clientTLS: func() *tls.Config { return ClientTLSConfig(certFunc(pki.evil), pki.ca.Pool, srcHost) },
			msg:       "remote error: tls",
		},
		{
			name:       "server certificate of another CA",
			serverCert: pki.otherSrc,
			clientTLS:  func() *tls.Config { return ClientTLSConfig(certFunc(pki.dst), pki.ca.Pool, srcHost) },
			msg:        "certificate signed by unknown authority",
		},
		{
			name:      "server is not the expected host",
			clientTLS: func() *tls.Config { return ClientTLSConfig(certFunc(pki.dst), pki.ca.Pool, "other.example") },
			msg:       "certificate is valid for src.example, not other.example",
		},
		{
			name:       "peer not authorized",
			clientTLS:  func() *tls.Config { return ClientTLSConfig(certFunc(pki.intruder), pki.ca.Pool, srcHost) },
			status:     http.StatusForbidden,
			msg:        "intruder.example may not fetch ws-1: not allowed",
			authorized: true,
		},
		{
			name:       "unknown transfer",
			clientTLS:  func() *tls.Config { return ClientTLSConfig(certFunc(pki.dst), pki.ca.Pool, srcHost) },
			id:         "ws-2",
			status:     http.StatusNotFound,
			msg:        "no such transfer",
			authorized: true,
		},
		{
			name: "no verification",
			clientTLS: func() *tls.Config {
				c := ClientTLSConfig(certFunc(pki.dst), pki.ca.Pool, srcHost)
				c.InsecureSkipVerify = true
				return c
			},
			msg: "InsecureSkipVerify refused",
		},
		{
			name:      "no CA",
			clientTLS: func() *tls.Config { return ClientTLSConfig(certFunc(pki.dst), nil, srcHost) },
			msg:       "must have the CA",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, files := twoFiles(t)
			src := startSource(t, files, sourceOpts{serverCert: tc.serverCert})
			dst := t.TempDir()
			o := clientOpts(src, dst)
			o.TLS = tc.clientTLS()
			o.Backoff = time.Second // a retry would show in the time taken
			if tc.id != "" {
				o.ID = tc.id
			}
			t0 := time.Now()
			_, err := Fetch(fetchCtx(t), o)
			if err == nil {
				t.Fatal("Fetch succeeded")
			}
			t.Logf("%v", err)
			if d := time.Since(t0); d > 900*time.Millisecond {
				t.Errorf("refusal took %v: retried?", d)
			}
			if !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("error %q does not say %q", err, tc.msg)
			}
			var se *StatusError
			if errors.As(err, &se) != (tc.status != 0) || tc.status != 0 && se.Code != tc.status {
				t.Errorf("error %v, want status %d", err, tc.status)
			}
			if got := src.authorized.Load() > 0; got != tc.authorized {
				t.Errorf("authorize called: %v, want %v", got, tc.authorized)
			}
			if src.fileGets.Load() != 0 || len(listDir(t, dst)) != 0 {
				t.Errorf("files were requested (%d) or written (%v)", src.fileGets.Load(), listDir(t, dst))
			}
		})
	}
}

// TestServerRefusesUnverified checks the handler itself: no TLS, or TLS
// without a verified chain (a listener misconfigured), is refused before
// authorize.
func TestServerRefusesUnverified(t *testing.T) {
	loadPKI(t)
	called := false
	s := NewServer(func(string, string) ([]File, error) { called = true; return nil, nil }, nil)
	for _, state := range []*tls.ConnectionState{
		nil,
		{PeerCertificates: []*x509.Certificate{pki.dst.Leaf}}, // presented, not verified
	} {
		r := httptest.NewRequest("GET", "/v1/transfers/ws-1/manifest", nil)
		r.TLS = state
		w := httptest.NewRecorder()
		s.ServeHTTP(w, r)
		if w.Code != http.StatusUnauthorized || called {
			t.Errorf("TLS %v: status %d, authorize called %v", state, w.Code, called)
		}
	}
}

func TestValidName(t *testing.T) {
	for _, tc := range []struct {
		name string
		ok   bool
	}{
		{"memory.bin", true},
		{"disk/overlay.qcow2", true},
		{"a-b_c.d/E.F-9", true},
		{"...", true}, // an odd name, not a parent
		{"..a", true},
		{"", false},
		{".", false},
		{"..", false},
		{"../x", false},
		{"a/../b", false},
		{"a/..", false},
		{"./a", false},
		{"a/./b", false},
		{"/etc/passwd", false},
		{"a//b", false},
		{"a/", false},
		{"a\\b", false},
		{"a b", false},
		{"a\x00b", false},
		{"é", false},
		{"a:b", false},
		{"~", false},
		{strings.Repeat("a", 256), false},
		{strings.Repeat("a/", 600) + "a", false},
	} {
		if err := ValidName(tc.name); (err == nil) != tc.ok {
			t.Errorf("ValidName(%q) = %v, want ok=%v", tc.name, err, tc.ok)
		}
	}
}

func TestCheckNames(t *testing.T) {
	for _, tc := range []struct {
		names []string
		err   string
	}{
		{[]string{"a", "b", "c/d", "c/e"}, ""},
		{[]string{"a", "a"}, "listed twice"},
		{[]string{"a", "a.part"}, "collide"},
		{[]string{"a.part", "a"}, "collide"},
		{[]string{"a", "a/b"}, "both a file and a directory"},
		{[]string{"a/b/c", "a/b"}, "both a file and a directory"},
		{[]string{"a", "a.part/b"}, "both a file and a directory"},
		{[]string{"ok", "../x"}, "not allowed"},
	} {
		err := checkNames(tc.names)
		if tc.err == "" && err != nil || tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("checkNames(%q) = %v, want %q", tc.names, err, tc.err)
		}
	}
}

// TestServerTraversal asks a real source for names outside its list.
func TestServerTraversal(t *testing.T) {
	dir, files := twoFiles(t)
	secret := filepath.Join(dir, "secret")
	os.WriteFile(secret, []byte("SECRET"), 0o600)
	src := startSource(t, files, sourceOpts{})
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: ClientTLSConfig(certFunc(pki.dst), pki.ca.Pool, srcHost)}}
	defer c.CloseIdleConnections()
	for _, p := range []string{
		"/v1/transfers/ws-1/files/secret",
		"/v1/transfers/ws-1/files/../secret",
		"/v1/transfers/ws-1/files/..%2fsecret",
		"/v1/transfers/ws-1/files/disk%2f..%2f..%2fsecret",
		"/v1/transfers/ws-1/files/%2f" + strings.TrimPrefix(secret, "/"),
		"/v1/transfers/ws-1/files/" + secret,
		"/v1/transfers/ws-1/files//" + secret,
		"/v1/transfers/..%2fws-1/files/memory.bin",
		"/v1/transfers/ws-1/files/memory.bin/",
		"/v1/transfers/ws-1/files/",
	} {
		resp, err := c.Get(src.url + p)
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		t.Logf("GET %s: %d %s", p, resp.StatusCode, strings.TrimSpace(string(b)))
		if resp.StatusCode/100 == 2 || strings.Contains(string(b), "SECRET") {
			t.Errorf("GET %s: %d %q", p, resp.StatusCode, b)
		}
	}

	// authorize itself returning a bad name: nothing is served.
	bad := startSource(t, []File{{Name: "../secret", Path: secret}}, sourceOpts{})
	for _, p := range []string{"/v1/transfers/ws-1/manifest", "/v1/transfers/ws-1/files/../secret", "/v1/transfers/ws-1/files/..%2fsecret"} {
		resp, err := c.Get(bad.url + p)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode < 300 || strings.Contains(string(b), "SECRET") {
			t.Errorf("bad source: GET %s: %d %q", p, resp.StatusCode, b)
		}
	}
}

// TestClientTraversal has a malicious source send bad manifests.
func TestClientTraversal(t *testing.T) {
	loadPKI(t)
	const sum = "0000000000000000000000000000000000000000000000000000000000000000"
	for _, tc := range []struct {
		name     string
		manifest string
		err      string
	}{
		{"parent", `{"files":[{"name":"../evil","size":4,"sha256":"` + sum + `"}]}`, `".." element`},
		{"deep parent", `{"files":[{"name":"a/../../evil","size":4,"sha256":"` + sum + `"}]}`, `".." element`},
		{"absolute", `{"files":[{"name":"/tmp/evil","size":4,"sha256":"` + sum + `"}]}`, "absolute"},
		{"backslash", `{"files":[{"name":"..\\evil","size":4,"sha256":"` + sum + `"}]}`, "not allowed"},
		{"part collision", `{"files":[{"name":"a","size":4,"sha256":"` + sum + `"},{"name":"a.part","size":4,"sha256":"` + sum + `"}]}`, "collide"},
		{"negative size", `{"files":[{"name":"a","size":-4,"sha256":"` + sum + `"}]}`, "out of range"},
		{"bad sum", `{"files":[{"name":"a","size":4,"sha256":"xyz"}]}`, "64 lowercase hex"},
		{"no list", `{}`, `no "files"`},
		{"trailing", `{"files":[]} {}`, "trailing"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			outside := t.TempDir()
			dst := filepath.Join(outside, "a", "staging")
			evil := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if strings.HasSuffix(r.URL.Path, "/manifest") {
					io.WriteString(w, tc.manifest)
					return
				}
				io.WriteString(w, "evil")
			})
			l, err := ListenTLS("127.0.0.1:0", func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return pki.src, nil }, pki.ca.Pool)
			if err != nil {
				t.Fatal(err)
			}
			srv := &http.Server{Handler: evil, ErrorLog: newDiscardLogger()}
			go srv.Serve(l)
			defer srv.Close()
			o := clientOpts(&source{url: "https://" + l.Addr().String()}, dst)
			_, err = Fetch(fetchCtx(t), o)
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Fatalf("got %v, want an error saying %q", err, tc.err)
			}
			if l := listDir(t, outside); strings.Join(l, " ") != "a a/staging" {
				t.Errorf("files written: %v", l)
			}
		})
	}
}

// TestSymlinkInStaging: a link in the staging directory does not lead
// Fetch out of it.
func TestSymlinkInStaging(t *testing.T) {
	_, files := twoFiles(t)
	src := startSource(t, files, sourceOpts{})
	dst, outside := t.TempDir(), t.TempDir()
	if err := os.Symlink(outside, filepath.Join(dst, "disk")); err != nil {
		t.Fatal(err)
	}
	_, err := Fetch(fetchCtx(t), clientOpts(src, dst))
	if err == nil || !strings.Contains(err.Error(), "disk/overlay.qcow2") {
		t.Fatalf("got %v, want an error naming disk/overlay.qcow2", err)
	}
	if l := listDir(t, outside); len(l) != 0 {
		t.Errorf("written outside the staging dir: %v", l)
	}
}

func TestParseRange(t *testing.T) {
	const size = 100
	for _, tc := range []struct {
		h          string
		start, end int64
		partial    bool
		err        bool
	}{
		{"", 0, 100, false, false},
		{"bytes=0-", 0, 100, true, false},
		{"bytes=10-", 10, 100, true, false},
		{"bytes=10-19", 10, 20, true, false},
		{"bytes=10-1000", 10, 100, true, false},
		{"bytes=99-", 99, 100, true, false},
		{"bytes=-5", 95, 100, true, false},
		{"bytes=-500", 0, 100, true, false},
		{"bytes=100-", 0, 0, false, true},
		{"bytes=-0", 0, 0, false, true},
		{"bytes=5-1", 0, 100, false, false},     // invalid: ignored
		{"bytes=0-1,5-6", 0, 100, false, false}, // several: ignored
		{"bytes=+5-", 0, 100, false, false},
		{"bytes=99999999999999999999-", 0, 100, false, false},
		{"items=0-", 0, 100, false, false},
		{"bytes=a-", 0, 100, false, false},
		{"bytes=5", 0, 100, false, false},
	} {
		s, e, p, err := parseRange(tc.h, size)
		if s != tc.start || e != tc.end || p != tc.partial || (err != nil) != tc.err {
			t.Errorf("parseRange(%q) = %d, %d, %v, %v; want %d, %d, %v, err %v", tc.h, s, e, p, err, tc.start, tc.end, tc.partial, tc.err)
		}
	}
}

func TestParseContentRange(t *testing.T) {
	for _, tc := range []struct {
		h       string
		a, b, n int64
		ok      bool
	}{
		{"bytes 0-99/100", 0, 99, 100, true},
		{"bytes 10-99/100", 10, 99, 100, true},
		{"bytes 10-100/100", 0, 0, 0, false},
		{"bytes */100", 0, 0, 0, false},
		{"bytes 5-4/100", 0, 0, 0, false},
		{"bytes -1-4/100", 0, 0, 0, false},
		{"0-99/100", 0, 0, 0, false},
	} {
		a, b, n, ok := parseContentRange(tc.h)
		if a != tc.a || b != tc.b || n != tc.n || ok != tc.ok {
			t.Errorf("parseContentRange(%q) = %d %d %d %v", tc.h, a, b, n, ok)
		}
	}
}
