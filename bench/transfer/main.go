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
//
// Between two network namespaces of this machine (--netns, as root): it
// makes a bridge and two namespaces with internal/netgrid (--bridge,
// --subnet, --prefix; removed at the end), runs itself with --serve in the
// first, and, --runs times in turn, times `cp` of the file plus an fsync
// of the copy, `dd bs=4M conv=fsync`, and a fetch run by a child process
// of itself in the second namespace (--fetch-once: one transfer.Fetch,
// timed inside the child, so the child's start-up is not counted). The
// source file is read once before, so that all three read it from the
// page cache; caches are not dropped. It prints min, median and max of
// each and the ratios fetch/cp and fetch/dd:
//
//	go run ./bench/transfer --netns --size 1GiB --runs 5
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"vgrid/bench/internal/benchkit"
	"vgrid/internal/netgrid"
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
	netnsMode := flag.Bool("netns", false, "serve from one network namespace and fetch from another (root)")
	bridge := flag.String("bridge", "vgtbench0", "--netns: bridge name")
	subnet := flag.String("subnet", "10.213.57.0/24", "--netns: the namespaces' /24")
	prefix := flag.String("prefix", "vgtbench-h", "--netns: namespace name prefix")
	fetchOnce := flag.Bool("fetch-once", false, "fetch --url once into --out and print the seconds it took (used by --netns)")
	flag.Parse()

	log := slog.New(slog.DiscardHandler)
	if *verbose {
		log = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	var err error
	switch {
	case *fetchOnce:
		err = runFetchOnce(ctx, *url, *pkiDir, *out, log)
	case *netnsMode:
		err = runNetns(ctx, netgrid.Config{Bridge: *bridge, Subnet: *subnet, Prefix: *prefix, Hosts: 2}, *size, *file, *dir, *runs, *verbose)
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

// workDir is --dir, or a temporary directory under /var/tmp removed by
// cleanup.
func workDir(dir string) (string, func(), error) {
	return benchkit.WorkDir(dir, "/var/tmp", "transfer-bench-")
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

func timeFetch(ctx context.Context, o transfer.FetchOptions) (time.Duration, error) {
	os.RemoveAll(o.Dir)
	t0 := time.Now()
	_, err := transfer.Fetch(ctx, o)
	d := time.Since(t0)
	os.RemoveAll(o.Dir)
	return d, err
}

// stats returns the best and the median (the upper of the two middle
// values of an even count) of ds.
func stats(ds []time.Duration) (best, median time.Duration) {
	s := benchkit.Sorted(ds)
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
		if err := benchkit.RandomFile(file, size); err != nil {
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

	if err := benchkit.Warm(file); err != nil {
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
		d, err := benchkit.TimeCp(file, filepath.Join(work, "cp.bin"))
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
			d, err := benchkit.TimeCp(cpFrom, filepath.Join(work, "cp.bin"))
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

// runFetchOnce fetches url once into out (removed first and after) and
// prints the time the fetch took, in seconds, and its network namespace
// (net:[inode]) on standard output.
func runFetchOnce(ctx context.Context, url, pkiDir, out string, log *slog.Logger) error {
	if url == "" || pkiDir == "" || out == "" {
		return errors.New("--fetch-once needs --url, --pki and --out")
	}
	ca, err := transfertest.LoadOrCreateCA(pkiDir)
	if err != nil {
		return err
	}
	tc, err := clientTLS(ca)
	if err != nil {
		return err
	}
	d, err := timeFetch(ctx, transfer.FetchOptions{URL: url, ID: benchID, Dir: out, TLS: tc, Log: log})
	if err != nil {
		return err
	}
	ns, _ := os.Readlink("/proc/self/ns/net")
	fmt.Printf("%.6f %s\n", d.Seconds(), ns)
	return nil
}

// timeDd times dd of src to dst with 4 MiB blocks and an fsync at the end.
func timeDd(src, dst string) (time.Duration, error) {
	os.Remove(dst)
	t0 := time.Now()
	if out, err := exec.Command("dd", "if="+src, "of="+dst, "bs=4M", "conv=fsync", "status=none").CombinedOutput(); err != nil {
		return 0, fmt.Errorf("dd: %v: %s", err, out)
	}
	d := time.Since(t0)
	os.Remove(dst)
	return d, nil
}

// spread returns the min, the median (the upper of the two middle values
// of an even count) and the max of ds.
func spread(ds []time.Duration) (lo, med, hi time.Duration) {
	s := benchkit.Sorted(ds)
	return s[0], s[len(s)/2], s[len(s)-1]
}

// runNetns serves the file from the first namespace of c and fetches it
// from the second, against cp and dd on this machine, in turn.
func runNetns(ctx context.Context, c netgrid.Config, sizeFlag, file, dir string, runs int, verbose bool) (err error) {
	if err := c.Validate(); err != nil {
		return err
	}
	if ns := netgrid.Namespaces(c.WithDefaults().Prefix); len(ns) > 0 {
		return fmt.Errorf("namespaces with prefix %q exist already (%v): choose another --prefix", c.Prefix, ns)
	}
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
		if err := benchkit.RandomFile(file, size); err != nil {
			return err
		}
	}
	fi, err := os.Stat(file)
	if err != nil {
		return err
	}
	pki := filepath.Join(work, "pki")
	if _, err := transfertest.LoadOrCreateCA(pki); err != nil {
		return err
	}
	hosts, err := netgrid.Setup(c)
	defer func() {
		if terr := netgrid.Teardown(c); terr != nil {
			err = errors.Join(err, terr)
		}
	}()
	if err != nil {
		return err
	}
	src, dst := hosts[0], hosts[1]
	self, err := os.Executable()
	if err != nil {
		return err
	}
	vflag := []string{}
	if verbose {
		vflag = []string{"-v"}
	}
	listen := net.JoinHostPort(src.Address.String(), "7443")
	srv := exec.Command(self, append([]string{"--serve", "--listen", listen, "--file", file, "--pki", pki}, vflag...)...)
	srv.Stdout, srv.Stderr = os.Stdout, os.Stderr
	if err := netgrid.InNamespace(src.Namespace, srv.Start); err != nil {
		return fmt.Errorf("source in %s: %w", src.Namespace, err)
	}
	defer func() {
		_ = srv.Process.Signal(os.Interrupt)
		_ = srv.Wait()
	}()
	url := "https://" + listen
	var st syscall.Stat_t
	if err := syscall.Stat(netgrid.NamespacePath(dst.Namespace), &st); err != nil {
		return err
	}
	wantNS := fmt.Sprintf("net:[%d]", st.Ino)
	fetch := func() (inChild, wall time.Duration, err error) {
		cmd := exec.CommandContext(ctx, self, append([]string{"--fetch-once", "--url", url, "--pki", pki, "--out", filepath.Join(work, "staging")}, vflag...)...)
		var out strings.Builder
		cmd.Stdout, cmd.Stderr = &out, os.Stderr
		t0 := time.Now()
		if err := netgrid.InNamespace(dst.Namespace, cmd.Start); err != nil {
			return 0, 0, err
		}
		if err := cmd.Wait(); err != nil {
			return 0, 0, fmt.Errorf("fetch in %s: %w", dst.Namespace, err)
		}
		wall = time.Since(t0)
		var sec float64
		var ns string
		if _, err := fmt.Sscan(out.String(), &sec, &ns); err != nil {
			return 0, 0, fmt.Errorf("fetch output %q: %w", out.String(), err)
		}
		if ns != wantNS {
			return 0, 0, fmt.Errorf("fetch ran in namespace %s, want %s (%s)", ns, wantNS, dst.Namespace)
		}
		return time.Duration(sec * float64(time.Second)), wall, nil
	}
	// The first fetch (the source hashes the file; retried while the
	// source starts) and one cp and dd are not counted.
	var first time.Duration
	for attempt := 0; ; attempt++ {
		if first, _, err = fetch(); err == nil {
			break
		} else if attempt == 20 {
			return err
		}
		time.Sleep(250 * time.Millisecond)
	}
	fmt.Printf("source %s in %s, fetched from %s (%s); first fetch (source hashes the file): %.3fs\n",
		url, src.Namespace, dst.Namespace, dst.Address, first.Seconds())
	if err := benchkit.Warm(file); err != nil {
		return err
	}
	if _, err := benchkit.TimeCp(file, filepath.Join(work, "cp.bin")); err != nil {
		return err
	}
	if _, err := timeDd(file, filepath.Join(work, "dd.bin")); err != nil {
		return err
	}
	var cps, dds, fetches, walls []time.Duration
	for r := range runs {
		dc, err := benchkit.TimeCp(file, filepath.Join(work, "cp.bin"))
		if err != nil {
			return err
		}
		dd, err := timeDd(file, filepath.Join(work, "dd.bin"))
		if err != nil {
			return err
		}
		df, wall, err := fetch()
		if err != nil {
			return err
		}
		cps, dds, fetches, walls = append(cps, dc), append(dds, dd), append(fetches, df), append(walls, wall)
		fmt.Printf("run %d: cp+fsync %.3fs  dd %.3fs  fetch %.3fs (process %.3fs)\n", r+1, dc.Seconds(), dd.Seconds(), df.Seconds(), wall.Seconds())
	}
	size := fi.Size()
	fmt.Printf("\nsize %d bytes (%.2f GiB), %d runs each, in turn; page cache not dropped (source warm), every copy fsynced\n\n", size, float64(size)/(1<<30), runs)
	fmt.Printf("| what | min | median | max | median MB/s |\n|---|---|---|---|---|\n")
	row := func(name string, ds []time.Duration) {
		lo, med, hi := spread(ds)
		fmt.Printf("| %s | %.3f s | %.3f s | %.3f s | %.0f |\n", name, lo.Seconds(), med.Seconds(), hi.Seconds(), mbps(size, med))
	}
	row("cp + fsync", cps)
	row("dd bs=4M conv=fsync", dds)
	row("fetch, namespace to namespace (mTLS, SHA-256, fsync)", fetches)
	row("fetch process, start to exit", walls)
	_, mc, _ := spread(cps)
	_, md, _ := spread(dds)
	_, mf, _ := spread(fetches)
	ratios := func(a, b []time.Duration) []time.Duration { // a/b run by run, as durations of 1 s = 1.0
		out := make([]time.Duration, len(a))
		for i := range a {
			out[i] = time.Duration(a[i].Seconds() / b[i].Seconds() * float64(time.Second))
		}
		return out
	}
	_, rc, _ := spread(ratios(fetches, cps))
	_, rd, _ := spread(ratios(fetches, dds))
	fmt.Printf("\nratio fetch/cp: %.2f (medians), %.2f (median of the runs' ratios)\n", mf.Seconds()/mc.Seconds(), rc.Seconds())
	fmt.Printf("ratio fetch/dd: %.2f (medians), %.2f (median of the runs' ratios)\n", mf.Seconds()/md.Seconds(), rd.Seconds())
	return nil
}
