package transfer

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"vgrid/internal/transfer/transfertest"
)

const (
	srcHost = "src.example"
	dstHost = "dst.example"
	testID  = "ws-1"
)

// pki is shared by the tests: making keys is not free.
var pki struct {
	once                     sync.Once
	ca, otherCA              *transfertest.CA
	src, dst, intruder, evil *tls.Certificate
	otherSrc                 *tls.Certificate
}

func loadPKI(t testing.TB) {
	pki.once.Do(func() {
		must := func(c *tls.Certificate, err error) *tls.Certificate {
			if err != nil {
				panic(err)
			}
			return c
		}
		var err error
		if pki.ca, err = transfertest.NewCA("test CA"); err != nil {
			panic(err)
		}
		if pki.otherCA, err = transfertest.NewCA("other CA"); err != nil {
			panic(err)
		}
		pki.src = must(pki.ca.Issue(srcHost))
		pki.dst = must(pki.ca.Issue(dstHost))
		pki.intruder = must(pki.ca.Issue("intruder.example"))
		pki.evil = must(pki.otherCA.Issue(dstHost))
		pki.otherSrc = must(pki.otherCA.Issue(srcHost))
	})
}

func certFunc(c *tls.Certificate) func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	return func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return c, nil }
}

// source is a running Server.
type source struct {
	url        string
	files      []File
	authorized atomic.Int64 // calls of authorize
	fileGets   atomic.Int64 // requests of files
	mu         sync.Mutex
	ranges     []string // Range headers of the file requests, in order
}

type sourceOpts struct {
	serverCert *tls.Certificate
	wrap       func(http.Handler) http.Handler
	authorize  func(peer, id string) ([]File, error)
}

func startSource(t testing.TB, files []File, o sourceOpts) *source {
	t.Helper()
	loadPKI(t)
	s := &source{files: files}
	if o.serverCert == nil {
		o.serverCert = pki.src
	}
	if o.authorize == nil {
		o.authorize = func(peer, id string) ([]File, error) {
			if id != testID {
				return nil, fmt.Errorf("transfer %s: %w", id, ErrNotFound)
			}
			if peer != dstHost {
				return nil, fmt.Errorf("%s may not fetch %s: %w", peer, id, ErrForbidden)
			}
			return s.files, nil
		}
	}
	authz := o.authorize
	var h http.Handler = NewServer(func(peer, id string) ([]File, error) {
		s.authorized.Add(1)
		return authz(peer, id)
	}, nil)
	if o.wrap != nil {
		h = o.wrap(h)
	}
	inner := h
	h = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if bytes.Contains([]byte(r.URL.Path), []byte("/files/")) {
			s.fileGets.Add(1)
			s.mu.Lock()
			s.ranges = append(s.ranges, r.Header.Get("Range"))
			s.mu.Unlock()
		}
		inner.ServeHTTP(w, r)
	})
	cert := o.serverCert
	l, err := ListenTLS("127.0.0.1:0", func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return cert, nil }, pki.ca.Pool)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, ErrorLog: nil}
	srv.ErrorLog = newDiscardLogger()
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	s.url = "https://" + l.Addr().String()
	return s
}

func (s *source) rangeHeaders() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.ranges...)
}

func clientOpts(s *source, dir string) FetchOptions {
	return FetchOptions{
		URL:     s.url,
		ID:      testID,
		Dir:     dir,
		TLS:     ClientTLSConfig(certFunc(pki.dst), pki.ca.Pool, srcHost),
		Backoff: 10 * time.Millisecond,
		Retries: 3,
	}
}

// writeRandom writes size random bytes to path.
func writeRandom(t testing.TB, path string, size int64) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.CopyN(f, rand.Reader, size); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// writeSparseish writes a file of size bytes that is mostly holes, with
// random data at a few places, like a qcow2 overlay.
func writeSparseish(t testing.TB, path string, size int64) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	for _, at := range []struct{ off, n int64 }{
		{0, 1 << 20}, {10 << 20, 3<<20 + 17}, {33<<20 + 123, 70000}, {size - 1000, 1000},
	} {
		b := make([]byte, at.n)
		rand.Read(b)
		if _, err := f.WriteAt(b, at.off); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

func sameContent(t testing.TB, a, b string) {
	t.Helper()
	x, err := os.ReadFile(a)
	if err != nil {
		t.Fatal(err)
	}
	y, err := os.ReadFile(b)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(x, y) {
		t.Fatalf("%s and %s differ", a, b)
	}
}

// listDir lists the files under dir (relative, slash-separated).
func listDir(t testing.TB, dir string) []string {
	t.Helper()
	var out []string
	filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err == nil && p != dir {
			rel, _ := filepath.Rel(dir, p)
			out = append(out, filepath.ToSlash(rel))
		}
		return nil
	})
	return out
}

func fetchCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}
