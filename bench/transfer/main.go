// Command transfer measures internal/transfer against cp.
//
// Local mode (the default) makes a file (--size, random data; or uses
// --file), serves it over TLS on loopback, and in the same run times, --runs
// times each: cp of the file plus an fsync of the copy, and transfer.Fetch
// of it (which also checks its SHA-256 and fsyncs). It prints the best and
// median times and the ratio fetch/cp:
//
//	go run ./bench/transfer --size 1GiB --runs 3
//
// Across hosts or network namespaces, share a --pki directory (its CA is
// made by the first side to start) and run a source and a destination:
//
//	go run ./bench/transfer --serve --listen 10.0.0.1:7443 --file /var/tmp/big --pki /tmp/pki
//	go run ./bench/transfer --url https://10.0.0.1:7443 --pki /tmp/pki --out /var/tmp/dst [--cp-from /var/tmp/big]
package main

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"vgrid/internal/transfer"
	"vgrid/internal/transfer/transfertest"
)

const (
	srcHost = "src.bench"
	dstHost = "dst.bench"
	benchID = "bench"
)

func main() {
	size := flag.String("size", "1GiB", "size of the generated file (local mode)")
	file := flag.String("file", "", "file to serve (default: a generated one)")
	dir := flag.String("dir", "", "work directory (default: a temporary one under /var/tmp)")
	runs := flag.Int("runs", 3, "runs of each")
	serve := flag.Bool("serve", false, "only serve --file on --listen")
	listen := flag.String("listen", "127.0.0.1:0", "address to serve on")
	url := flag.String("url", "", "fetch from this source (https://host:port) instead of a local one")
	pkiDir := flag.String("pki", "", "directory of the shared CA (--serve, --url)")
	out := flag.String("out", "", "staging directory of --url (default under --dir)")
	cpFrom := flag.String("cp-from", "", "with --url: a local file of the same size to time cp with")
	verbose := flag.Bool("v", false, "log the transfers")
	flag.Parse()

	log := slog.New(slog.DiscardHandler)
	if *verbose {
		log = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	var err error
	switch {
	case *serve:
		err = runServe(ctx, *listen, *file, *pkiDir, log)
	case *url != "":
		err = runFetch(ctx, *url, *pkiDir, *dir, *out, *cpFrom, *runs, log)
	default:
		err = runLocal(ctx, *size, *file, *dir, *runs, log)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "transfer bench:", err)
		os.Exit(1)
	}
}

func parseSize(s string) (int64, error) {
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		m      int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"G", 1 << 30}, {"M", 1 << 20}, {"K", 1 << 10}} {
		if strings.HasSuffix(s, u.suffix) {
			s, mult = strings.TrimSuffix(s, u.suffix), u.m
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("bad size %q", s)
	}
	return n * mult, nil
}

func workDir(dir string) (string, func(), error) {
	if dir != "" {
		return dir, func() {}, os.MkdirAll(dir, 0o755)
	}
	d, err := os.MkdirTemp("/var/tmp", "transfer-bench-")
	return d, func() { os.RemoveAll(d) }, err
}

// source serves path on l as transfer benchID to dstHost.
func source(l net.Listener, path string, log *slog.Logger) *http.Server {
	s := transfer.NewServer(func(peer, id string) ([]transfer.File, error) {
		if peer != dstHost {
			return nil, fmt.Errorf("%s: %w", peer, transfer.ErrForbidden)
		}
		if id != benchID {
			return nil, transfer.ErrNotFound
		}
		return []transfer.File{{Name: filepath.Base(path), Path: path}}, nil
	}, log)
	srv := &http.Server{Handler: s, ReadHeaderTimeout: 30 * time.Second}
	go srv.Serve(l)
	return srv
}

func serverCert(ca *transfertest.CA) (func(*tls.ClientHelloInfo) (*tls.Certificate, error), error) {
	c, err := ca.Issue(srcHost)
	if err != nil {
		return nil, err
	}
	return func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return c, nil }, nil
}

func clientTLS(ca *transfertest.CA) (*tls.Config, error) {
	c, err := ca.Issue(dstHost)
	if err != nil {
		return nil, err
	}
	return transfer.ClientTLSConfig(func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return c, nil }, ca.Pool, srcHost), nil
}

func makeFile(path string, size int64) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.CopyN(f, rand.Reader, size); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// warm reads path, so that cp and fetch both read it from the page cache.
func warm(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.Copy(io.Discard, f)
	return err
}

// timeCp times cp src dst and an fsync of dst.
func timeCp(src, dst string) (time.Duration, error) {
	os.Remove(dst)
	t0 := time.Now()
	if out, err := exec.Command("cp", src, dst).CombinedOutput(); err != nil {
		return 0, fmt.Errorf("cp: %v: %s", err, out)
	}
	f, err := os.Open(dst)
	if err != nil {
		return 0, err
	}
	err = f.Sync()
	f.Close()
	d := time.Since(t0)
	os.Remove(dst)
	return d, err
}

func timeFetch(ctx context.Context, o transfer.FetchOptions) (time.Duration, error) {
	os.RemoveAll(o.Dir)
	t0 := time.Now()
	_, err := transfer.Fetch(ctx, o)
	d := time.Since(t0)
	os.RemoveAll(o.Dir)
	return d, err
}

func stats(ds []time.Duration) (best, median time.Duration) {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[0], s[len(s)/2]
}

func mbps(size int64, d time.Duration) float64 { return float64(size) / 1e6 / d.Seconds() }

func report(size int64, cps, fetches []time.Duration) {
	fmt.Printf("size %d bytes (%.2f GiB), %d runs each\n", size, float64(size)/(1<<30), len(fetches))
	if len(cps) > 0 {
		b, m := stats(cps)
		fmt.Printf("cp+fsync   best %8.3fs (%6.0f MB/s)  median %8.3fs (%6.0f MB/s)\n", b.Seconds(), mbps(size, b), m.Seconds(), mbps(size, m))
	}
	b, m := stats(fetches)
	fmt.Printf("fetch      best %8.3fs (%6.0f MB/s)  median %8.3fs (%6.0f MB/s)\n", b.Seconds(), mbps(size, b), m.Seconds(), mbps(size, m))
	if len(cps) > 0 {
		cb, cm := stats(cps)
		fmt.Printf("ratio fetch/cp: best %.2f, median %.2f (1.00 = as fast as cp)\n", b.Seconds()/cb.Seconds(), m.Seconds()/cm.Seconds())
	}
}

func runLocal(ctx context.Context, sizeFlag, file, dir string, runs int, log *slog.Logger) error {
	work, cleanup, err := workDir(dir)
	if err != nil {
		return err
	}
	defer cleanup()
	if file == "" {
		size, err := parseSize(sizeFlag)
		if err != nil {
			return err
		}
		file = filepath.Join(work, "source.bin")
		fmt.Printf("writing %d random bytes to %s\n", size, file)
		if err := makeFile(file, size); err != nil {
			return err
		}
	}
	fi, err := os.Stat(file)
	if err != nil {
		return err
	}
	ca, err := transfertest.NewCA("bench CA")
	if err != nil {
		return err
	}
	getCert, err := serverCert(ca)
	if err != nil {
		return err
	}
	l, err := transfer.ListenTLS("127.0.0.1:0", getCert, ca.Pool)
	if err != nil {
		return err
	}
	srv := source(l, file, log)
	defer srv.Close()
	tc, err := clientTLS(ca)
	if err != nil {
		return err
	}
	o := transfer.FetchOptions{URL: "https://" + l.Addr().String(), ID: benchID, Dir: filepath.Join(work, "staging"), TLS: tc, Log: log}

	if err := warm(file); err != nil {
		return err
	}
	// The first fetch also has the source compute the sum.
	first, err := timeFetch(ctx, o)
	if err != nil {
		return err
	}
	fmt.Printf("first fetch (source hashes the file first): %.3fs\n", first.Seconds())
	var cps, fetches []time.Duration
	for range runs {
		d, err := timeCp(file, filepath.Join(work, "cp.bin"))
		if err != nil {
			return err
		}
		cps = append(cps, d)
		if d, err = timeFetch(ctx, o); err != nil {
			return err
		}
		fetches = append(fetches, d)
	}
	report(fi.Size(), cps, fetches)
	return nil
}

func runServe(ctx context.Context, listen, file, pkiDir string, log *slog.Logger) error {
	if file == "" || pkiDir == "" {
		return errors.New("--serve needs --file and --pki")
	}
	ca, err := transfertest.LoadOrCreateCA(pkiDir)
	if err != nil {
		return err
	}
	getCert, err := serverCert(ca)
	if err != nil {
		return err
	}
	l, err := transfer.ListenTLS(listen, getCert, ca.Pool)
	if err != nil {
		return err
	}
	srv := source(l, file, log)
	fmt.Printf("serving %s at https://%s (host %s, transfer %q)\n", file, l.Addr(), srcHost, benchID)
	<-ctx.Done()
	return srv.Close()
}

func runFetch(ctx context.Context, url, pkiDir, dir, out, cpFrom string, runs int, log *slog.Logger) error {
	if pkiDir == "" {
		return errors.New("--url needs --pki")
	}
	work, cleanup, err := workDir(dir)
	if err != nil {
		return err
	}
	defer cleanup()
	ca, err := transfertest.LoadOrCreateCA(pkiDir)
	if err != nil {
		return err
	}
	tc, err := clientTLS(ca)
	if err != nil {
		return err
	}
	if out == "" {
		out = filepath.Join(work, "staging")
	}
	var size int64
	o := transfer.FetchOptions{URL: url, ID: benchID, Dir: out, TLS: tc, Log: log,
		Progress: func(_, total int64) { size = total }}
	first, err := timeFetch(ctx, o)
	if err != nil {
		return err
	}
	fmt.Printf("first fetch (the source may hash the file first): %.3fs\n", first.Seconds())
	var cps, fetches []time.Duration
	for range runs {
		if cpFrom != "" {
			d, err := timeCp(cpFrom, filepath.Join(work, "cp.bin"))
			if err != nil {
				return err
			}
			cps = append(cps, d)
		}
		d, err := timeFetch(ctx, o)
		if err != nil {
			return err
		}
		fetches = append(fetches, d)
	}
	report(size, cps, fetches)
	return nil
}
