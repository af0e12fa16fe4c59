// Command storage measures vgrid's storage paths side by side, in one run:
//
// Part "io": guest I/O on a network volume against the same I/O on the
// guest's root filesystem (its local qcow2 overlay). One guest of the
// vgrid guest image (benchkit.GuestImage: built from the current sources,
// so its agent has the iobench subcommand) is booted by the qemu driver
// (1 vCPU capped at 1 core, 256 MiB) with one volume: a qcow2 served by a
// storage.Daemon (qemu-storage-daemon) on 127.0.0.1 over NBD with mutual
// TLS (a CA and ECDSA certificates made here), which the guest agent
// formats and mounts at /vol. In each of --runs rounds, the two targets in
// turn (the first one alternating from round to round), the harness runs
// `vgrid-guest-agent iobench` in the guest through the driver's Exec on
// /vol/bench.dat and on /root/bench.dat: a sequential write of --io-size
// in 1 MiB blocks with an fsync at the end, a sequential read of it in
// 1 MiB blocks after the guest's page cache was dropped, then random
// 4 KiB reads and random 4 KiB writes with O_DIRECT for --rand-time each
// (IOPS, p50/p99 latency of single calls). Both files are written once
// before the first round (not measured). Both disks are qcow2 files on the
// same host filesystem, opened with the host's page cache (writeback,
// flushes honoured): the difference is the path, NBD+TLS through
// qemu-storage-daemon against QEMU's own qcow2 driver.
//
// Part "fetch": an image file brought to a host's image cache against cp.
// A control plane (internal/controlplane) runs in this process on
// 127.0.0.1; a file of --size random bytes is pushed to it as a raw image
// (client.PushImage); then, --runs times in turn, it is fetched into an
// empty cache directory with agent.FetchImageFile (the host agent's image
// cache code: client.ImageFileFrom over HTTPS, SHA-256 check, fsync,
// rename), and copied with `cp` plus an fsync of the copy, from the very
// file the control plane serves (its blob), which is read once before so
// that both read it from the page cache.
//
//	go build -o /tmp/storagebench ./bench/storage && /tmp/storagebench --runs 3
//
// Run it from within the module (the guest image is built from the
// sources there). It needs root (cgroups, drop_caches), QEMU
// (qemu-system-x86_64, qemu-img, qemu-storage-daemon) and the guest
// kernel, like the driver's tests.
package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"math"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"vgrid/bench/internal/benchkit"
	"vgrid/internal/agent"
	"vgrid/internal/cgroup"
	"vgrid/internal/client"
	"vgrid/internal/controlplane"
	guestagent "vgrid/internal/guest/agent"
	"vgrid/internal/hypervisor"
	"vgrid/internal/hypervisor/qemu"
	"vgrid/internal/model"
	"vgrid/internal/storage"
)

type config struct {
	runs     int
	size     int64 // part fetch: the file
	ioSize   int64 // part io: the sequential file
	randTime time.Duration
	parts    []string
	workdir  string
	verbose  bool
}

func main() {
	runs := flag.Int("runs", 3, "rounds of each measure")
	size := flag.String("size", "1GiB", "size of the image file fetched (part fetch)")
	ioSize := flag.String("io-size", "64MiB", "size of the guest's sequential write and read (part io)")
	randTime := flag.Duration("rand-time", 5*time.Second, "how long each random 4 KiB test runs (part io)")
	parts := flag.String("parts", "io,fetch", "comma-separated: io, fetch")
	workdir := flag.String("workdir", "", "work directory (default: a temporary one under /var/tmp, removed at the end)")
	verbose := flag.Bool("v", false, "print the driver's, the storage daemon's and the control plane's logs")
	flag.Parse()
	cfg := config{runs: *runs, randTime: *randTime, workdir: *workdir, verbose: *verbose}
	fail := func(format string, args ...any) {
		fmt.Fprintf(os.Stderr, "storagebench: "+format+"\n", args...)
		os.Exit(2)
	}
	var err error
	if cfg.size, err = parseSize(*size); err != nil {
		fail("--size: %v", err)
	}
	if cfg.ioSize, err = parseSize(*ioSize); err != nil {
		fail("--io-size: %v", err)
	}
	if cfg.ioSize%(1<<20) != 0 {
		fail("--io-size %d: want a whole number of MiB (the writes are 1 MiB blocks)", cfg.ioSize)
	}
	if cfg.runs < 1 {
		fail("--runs %d: want at least 1", cfg.runs)
	}
	if cfg.randTime <= 0 {
		fail("--rand-time %s: want more than 0", cfg.randTime)
	}
	for _, p := range strings.Split(*parts, ",") {
		if p != "io" && p != "fetch" {
			fail("--parts: %q: want io or fetch", p)
		}
		cfg.parts = append(cfg.parts, p)
	}
	if err := run(cfg); err != nil {
		fmt.Fprintln(os.Stderr, "storagebench:", err)
		os.Exit(1)
	}
}

// parseSize parses a byte size: 1GiB, 64MiB, 64Mi, 1048576.
func parseSize(s string) (int64, error) {
	n, err := model.ParseByteSize(s)
	if err != nil {
		return 0, err
	}
	if n <= 0 {
		return 0, fmt.Errorf("%q: want more than 0 bytes", s)
	}
	return int64(n), nil
}

// requirements says what this machine lacks to run the parts.
func requirements(cfg config) error {
	var missing []string
	if os.Geteuid() != 0 {
		missing = append(missing, "root (the guest's cgroup, dropping the guest's caches): run it with sudo")
	}
	bins := []string{}
	if cfg.has("io") {
		bins = append(bins, "qemu-system-x86_64", "qemu-img", "qemu-storage-daemon")
	}
	if cfg.has("fetch") {
		bins = append(bins, "cp", "qemu-img") // qemu-img: the control plane checks pushed images with it
	}
	for _, b := range bins {
		if _, err := exec.LookPath(b); err != nil {
			missing = append(missing, b+" (apt-get install qemu-system-x86 qemu-utils)")
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("this machine lacks: %s", strings.Join(missing, "; "))
	}
	return nil
}

func (c config) has(part string) bool {
	for _, p := range c.parts {
		if p == part {
			return true
		}
	}
	return false
}

func run(cfg config) error {
	if err := requirements(cfg); err != nil {
		return err
	}
	dir, cleanup, err := benchkit.WorkDir(cfg.workdir, "/var/tmp", "storagebench-")
	if err != nil {
		return err
	}
	defer cleanup()
	fmt.Printf("command: %s\n", shellJoin(os.Args))
	fmt.Printf("date: %s\nload before: %s\n", time.Now().Format(time.RFC3339), loadavg())
	ctx := context.Background()
	if cfg.has("io") {
		if err := runIO(ctx, cfg, filepath.Join(dir, "io")); err != nil {
			return fmt.Errorf("part io: %w", err)
		}
	}
	if cfg.has("fetch") {
		if err := runFetch(ctx, cfg, filepath.Join(dir, "fetch")); err != nil {
			return fmt.Errorf("part fetch: %w", err)
		}
	}
	fmt.Printf("\nload after: %s\n", loadavg())
	return nil
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown: " + err.Error()
	}
	return strings.TrimSpace(string(b))
}

func shellJoin(args []string) string {
	out := make([]string, len(args))
	for i, a := range args {
		if a == "" || strings.ContainsAny(a, " \t\n'\"\\$`*?[]{}()<>|&;#~") {
			a = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
		out[i] = a
	}
	return strings.Join(out, " ")
}

// ---- part io ----

// benchCgroup is the cgroup parent of the guest.
const benchCgroup = "vgrid-bench"

const (
	volName   = "benchvol"
	volSerial = "vgv-bench"
	volMount  = "/vol"
	// agentPath is the guest agent in the guest image.
	agentPath = "/usr/sbin/vgrid-guest-agent"
	execLimit = 10 * time.Minute
)

// targets are the two places of the guest's files: the volume and the
// root filesystem.
var targets = []struct{ name, file string }{
	{"volume", volMount + "/bench.dat"},
	{"local", "/root/bench.dat"},
}

// measure is one number taken from an iobench result.
type measure struct {
	name, unit string
	get        func(r guestagent.IOBenchResult) float64
}

var measures = []struct {
	mode string
	list []measure
}{
	{guestagent.IOSeqWrite, []measure{{"seq write 1M (+fsync)", "MB/s", func(r guestagent.IOBenchResult) float64 { return r.MBps }}}},
	{guestagent.IOSeqRead, []measure{{"seq read 1M (cold)", "MB/s", func(r guestagent.IOBenchResult) float64 { return r.MBps }}}},
	{guestagent.IORandRead, []measure{
		{"rand read 4K direct", "IOPS", func(r guestagent.IOBenchResult) float64 { return r.IOPS }},
		{"rand read 4K mean latency", "µs", func(r guestagent.IOBenchResult) float64 { return r.MeanUs }},
		{"rand read 4K p50", "µs", func(r guestagent.IOBenchResult) float64 { return r.P50us }},
		{"rand read 4K p99", "µs", func(r guestagent.IOBenchResult) float64 { return r.P99us }},
	}},
	{guestagent.IORandWrite, []measure{
		{"rand write 4K direct", "IOPS", func(r guestagent.IOBenchResult) float64 { return r.IOPS }},
		{"rand write 4K mean latency", "µs", func(r guestagent.IOBenchResult) float64 { return r.MeanUs }},
		{"rand write 4K p50", "µs", func(r guestagent.IOBenchResult) float64 { return r.P50us }},
		{"rand write 4K p99", "µs", func(r guestagent.IOBenchResult) float64 { return r.P99us }},
	}},
}

func runIO(ctx context.Context, cfg config, dir string) (err error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	img, err := benchkit.GuestImage()
	if err != nil {
		return fmt.Errorf("guest image: %w", err)
	}
	logger := benchkit.Logger(cfg.verbose)

	// The storage host: a CA, its certificate, a daemon on a free port.
	p, err := newPKI()
	if err != nil {
		return err
	}
	hostCert, hostKey, err := p.issue("storage.bench", []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}, true)
	if err != nil {
		return err
	}
	cliCert, cliKey, err := p.issue("host.bench", []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, false)
	if err != nil {
		return err
	}
	tlsDir := filepath.Join(dir, "client-tls")
	if err := writeFiles(tlsDir, map[string][]byte{"ca-cert.pem": p.caPEM, "client-cert.pem": cliCert, "client-key.pem": cliKey}); err != nil {
		return err
	}
	port, err := freePort()
	if err != nil {
		return err
	}
	sd, err := storage.Start(ctx, storage.Config{Dir: filepath.Join(dir, "storage"), Listen: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)),
		CACert: p.caPEM, Cert: hostCert, Key: hostKey, Log: logger})
	if err != nil {
		return fmt.Errorf("storage daemon: %w", err)
	}
	defer sd.Close()
	volSize := roundMiB(max(1<<30, 2*cfg.ioSize+256<<20))
	if err := sd.Create(ctx, volName, volSize); err != nil {
		return err
	}
	if _, err := sd.Export(ctx, volName, false); err != nil {
		return err
	}

	// The guest, with the volume at /vol and a root disk with room for
	// its file.
	d, err := qemu.New(qemu.Options{StateDir: filepath.Join(dir, "driver"), CgroupParent: benchCgroup + "/storage", Logger: logger})
	if err != nil {
		return err
	}
	defer d.Close()
	defer func() {
		if h, err := cgroup.Detect(); err == nil {
			for _, m := range h.Mounts() {
				_ = os.Remove(filepath.Join(m, benchCgroup, "storage"))
			}
		}
	}()
	spec := hypervisor.InstanceSpec{ID: "storage-bench", Hostname: "storage-bench", Image: img,
		Quantum: model.Quantum{VCPUs: 1, CPU: 1, Memory: 256 * model.MiB, Disk: model.ByteSize(roundMiB(max(1<<30, 2*cfg.ioSize+512<<20)))},
		Volumes: []hypervisor.VolumeAttachment{{Name: volName, Serial: volSerial, Host: "127.0.0.1", Port: port,
			Export: volName, Mount: volMount, TLSDir: tlsDir}}}
	t0 := time.Now()
	if _, err := d.Start(ctx, spec); err != nil {
		return err
	}
	defer func() {
		if derr := d.Delete(context.Background(), spec.ID); derr != nil && err == nil {
			err = derr
		}
	}()
	if err := benchkit.WaitGuest(ctx, d, spec.ID); err != nil {
		return err
	}
	in, err := d.Get(ctx, spec.ID)
	if err != nil {
		return err
	}
	exec := driverExec(d, spec.ID)
	mounts, err := exec(ctx, "sh", "-c", `awk '$2 == "/" || $2 == "`+volMount+`" { print $2, $1, $3 }' /proc/mounts; grep -H . /sys/block/vd*/serial 2>/dev/null; echo "clocksource $(cat /sys/devices/system/clocksource/clocksource0/current_clocksource)"`)
	if err != nil {
		return err
	}
	if !strings.Contains(mounts, volMount+" /dev/vd") {
		return fmt.Errorf("the volume is not mounted at %s in the guest:\n%s", volMount, mounts)
	}
	fmt.Printf("\n== part io: guest I/O, volume (NBD+TLS, qemu-storage-daemon on 127.0.0.1) vs local qcow2 overlay ==\n")
	fmt.Printf("guest: 1 vcpu capped at 1 core, 256Mi, accel %s, ready in %s; volume %s (%d MiB qcow2); mounts:\n%s",
		in.Accel, time.Since(t0).Round(time.Millisecond), volName, volSize>>20, indent(mounts))
	fmt.Printf("per round and target: seq write %d MiB (1 MiB blocks, fsync), seq read after drop_caches, rand 4K O_DIRECT read and write for %s each\n",
		cfg.ioSize>>20, cfg.randTime)
	fmt.Printf("latencies: one call at a time, so the mean (time / calls) is exact; p50/p99 are as fine as the guest's clock\n" +
		"(under TCG the guest kernel may find its TSC unstable and fall back to jiffies: then they come in 4 ms steps, 0 or 4000 µs)\n")

	// Each target's file written once, unmeasured.
	for _, tg := range targets {
		if _, err := iobench(ctx, exec, seqRun(tg.file, guestagent.IOSeqWrite, cfg.ioSize)); err != nil {
			return fmt.Errorf("%s: first write: %w", tg.name, err)
		}
	}
	results := map[string]map[string][]guestagent.IOBenchResult{} // target -> mode -> rounds
	for _, tg := range targets {
		results[tg.name] = map[string][]guestagent.IOBenchResult{}
	}
	for r := 0; r < cfg.runs; r++ {
		order := []int{0, 1}
		if r%2 == 1 {
			order = []int{1, 0}
		}
		for _, i := range order {
			tg := targets[i]
			line := fmt.Sprintf("round %d %-6s:", r+1, tg.name)
			for _, b := range []guestagent.IOBench{
				seqRun(tg.file, guestagent.IOSeqWrite, cfg.ioSize),
				seqRun(tg.file, guestagent.IOSeqRead, cfg.ioSize),
				randRun(tg.file, guestagent.IORandRead, cfg.ioSize, cfg.randTime),
				randRun(tg.file, guestagent.IORandWrite, cfg.ioSize, cfg.randTime),
			} {
				res, err := iobench(ctx, exec, b)
				if err != nil {
					return fmt.Errorf("round %d, %s, %s: %w", r+1, tg.name, b.Mode, err)
				}
				results[tg.name][b.Mode] = append(results[tg.name][b.Mode], res)
				if b.Mode == guestagent.IOSeqWrite || b.Mode == guestagent.IOSeqRead {
					line += fmt.Sprintf(" %s %.1f MB/s", b.Mode, res.MBps)
				} else {
					line += fmt.Sprintf(" %s %.0f IOPS (mean %.0f µs, p50 %.0f µs, p99 %.0f µs)", b.Mode, res.IOPS, res.MeanUs, res.P50us, res.P99us)
				}
			}
			fmt.Println(line)
		}
	}
	if cs, err := exec(ctx, "cat", "/sys/devices/system/clocksource/clocksource0/current_clocksource"); err == nil {
		fmt.Printf("guest clocksource at the end: %s\n", strings.TrimSpace(cs))
	}
	fmt.Printf("\n%d rounds, targets alternating; min / median / max\n\n", cfg.runs)
	fmt.Printf("| measure | unit | local qcow2 overlay | volume over NBD | volume/local (medians) |\n|---|---|---|---|---|\n")
	for _, m := range measures {
		for _, ms := range m.list {
			var loc, vol []float64
			for _, r := range results["local"][m.mode] {
				loc = append(loc, ms.get(r))
			}
			for _, r := range results["volume"][m.mode] {
				vol = append(vol, ms.get(r))
			}
			l, v := spread(loc), spread(vol)
			fmt.Printf("| %s | %s | %s | %s | %s |\n", ms.name, ms.unit, triple(l), triple(v), ratio(v[1], l[1]))
		}
	}
	return nil
}

func seqRun(file, mode string, size int64) guestagent.IOBench {
	return guestagent.IOBench{File: file, Mode: mode, Size: size, BS: 1 << 20, DropCaches: mode == guestagent.IOSeqRead}
}

func randRun(file, mode string, size int64, d time.Duration) guestagent.IOBench {
	return guestagent.IOBench{File: file, Mode: mode, Size: size, BS: 4096, Duration: d, Direct: true}
}

// iobench runs the guest agent's iobench subcommand in the guest and
// reads its result.
func iobench(ctx context.Context, exec execFunc, b guestagent.IOBench) (guestagent.IOBenchResult, error) {
	out, err := exec(ctx, append([]string{agentPath}, b.Args()...)...)
	if err != nil {
		return guestagent.IOBenchResult{}, err
	}
	return parseResult(out, b.Mode)
}

// maxResultLine bounds what is read of the guest's answer.
const maxResultLine = 4096

// parseResult reads the one JSON line the guest's iobench printed (the
// guest's output is not trusted: a line too long, unknown fields, a
// mode other than asked for, negative or non-finite numbers are refused).
func parseResult(out, mode string) (guestagent.IOBenchResult, error) {
	line := strings.TrimSpace(out)
	if line == "" {
		return guestagent.IOBenchResult{}, errors.New("iobench printed nothing")
	}
	if len(line) > maxResultLine || strings.Contains(line, "\n") {
		return guestagent.IOBenchResult{}, fmt.Errorf("iobench output: want one JSON line of at most %d bytes, got %d bytes", maxResultLine, len(line))
	}
	dec := json.NewDecoder(strings.NewReader(line))
	dec.DisallowUnknownFields()
	var r guestagent.IOBenchResult
	if err := dec.Decode(&r); err != nil {
		return r, fmt.Errorf("iobench output: %w", err)
	}
	if dec.More() {
		return r, errors.New("iobench output: more than one JSON value")
	}
	if r.Mode != mode {
		return r, fmt.Errorf("iobench output: mode %q, asked for %q", r.Mode, mode)
	}
	if r.Ops <= 0 || r.Bytes <= 0 || r.BS <= 0 {
		return r, fmt.Errorf("iobench output: ops %d, bytes %d, bs %d: want more than 0", r.Ops, r.Bytes, r.BS)
	}
	for _, f := range []struct {
		name string
		v    float64
	}{{"seconds", r.Seconds}, {"iops", r.IOPS}, {"mb_per_s", r.MBps}, {"mean_us", r.MeanUs}, {"p50_us", r.P50us}, {"p99_us", r.P99us}, {"max_us", r.MaxUs}} {
		if math.IsNaN(f.v) || math.IsInf(f.v, 0) || f.v < 0 {
			return r, fmt.Errorf("iobench output: %s %v: want a finite number, 0 or more", f.name, f.v)
		}
	}
	if r.Seconds == 0 {
		return r, errors.New("iobench output: seconds 0")
	}
	return r, nil
}

// execFunc runs a command in the guest and returns its standard output.
type execFunc func(ctx context.Context, argv ...string) (string, error)

func driverExec(d *qemu.Driver, id string) execFunc {
	return func(ctx context.Context, argv ...string) (string, error) {
		ctx, cancel := context.WithTimeout(ctx, execLimit+30*time.Second)
		defer cancel()
		var out, errOut strings.Builder
		res, err := d.Exec(ctx, id, hypervisor.ExecRequest{Argv: argv, Timeout: execLimit}, func(stream string, b []byte) error {
			if stream == hypervisor.StreamStdout {
				out.Write(b)
			} else if errOut.Len() < 4096 {
				errOut.Write(b)
			}
			return nil
		})
		if err == nil && res.ExitCode != 0 {
			err = fmt.Errorf("%v: exit %d %s: %s", argv, res.ExitCode, res.Message, strings.TrimSpace(errOut.String()))
		}
		return out.String(), err
	}
}

// pki is a throwaway CA for the storage daemon and the guest's QEMU.
type pki struct {
	ca     *x509.Certificate
	key    *ecdsa.PrivateKey
	caPEM  []byte
	serial int64
}

func newPKI() (*pki, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "vgrid storage bench CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	ca, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &pki{ca: ca, key: key, caPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), serial: 1}, nil
}

// issue makes an ECDSA P-256 certificate (for 127.0.0.1 when server) and
// its key as PKCS#8 PEM. QEMU wants both digitalSignature and
// keyEncipherment in a critical key usage.
func (p *pki) issue(cn string, ext []x509.ExtKeyUsage, server bool) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	p.serial++
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(p.serial), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage: ext, BasicConstraintsValid: true,
	}
	if server {
		tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
		tmpl.DNSNames = []string{"localhost"}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.ca, &key.PublicKey, p.key)
	if err != nil {
		return nil, nil, err
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), nil
}

func writeFiles(dir string, files map[string][]byte) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			return err
		}
	}
	return nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func roundMiB(n int64) int64 { return (n + 1<<20 - 1) &^ (1<<20 - 1) }

func indent(s string) string {
	var b strings.Builder
	for _, l := range strings.Split(strings.TrimRight(s, "\n"), "\n") {
		b.WriteString("  " + l + "\n")
	}
	return b.String()
}

// ---- part fetch ----

func runFetch(ctx context.Context, cfg config, dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	cpDir := filepath.Join(dir, "controlplane")
	cp, err := controlplane.Start(ctx, benchkit.Logger(cfg.verbose), controlplane.Config{DataDir: cpDir, Listen: "127.0.0.1:0"})
	if err != nil {
		return fmt.Errorf("control plane: %w", err)
	}
	defer func() { cancel(); _ = cp.Wait(ctx); cp.Close() }() // ctx is cancelled first: Wait shuts down
	ccfg, err := client.LoadConfigFile(filepath.Join(cpDir, "client.json"))
	if err != nil {
		return err
	}
	cl, err := client.New(ccfg)
	if err != nil {
		return err
	}

	fmt.Printf("\n== part fetch: an image file into a host's image cache vs cp ==\n")
	src := filepath.Join(dir, "source.bin")
	t0 := time.Now()
	if err := benchkit.RandomFile(src, cfg.size); err != nil {
		return err
	}
	fmt.Printf("wrote %d random bytes in %s\n", cfg.size, time.Since(t0).Round(time.Millisecond))
	f, err := os.Open(src)
	if err != nil {
		return err
	}
	t0 = time.Now()
	img, err := cl.PushImage(ctx, "storage-bench", f, cfg.size, client.PushOptions{Format: "raw"})
	f.Close()
	if err != nil {
		return fmt.Errorf("push: %w", err)
	}
	fmt.Printf("pushed to the control plane (%s) in %s: sha256 %s\n", cp.URL, time.Since(t0).Round(time.Millisecond), img.Disk.SHA256)
	// cp reads the file the control plane serves; the generated one goes.
	blob := filepath.Join(cpDir, "blobs", "sha256", img.Disk.SHA256)
	if st, err := os.Stat(blob); err != nil || st.Size() != cfg.size {
		return fmt.Errorf("the control plane's blob %s: %v (want %d bytes)", blob, err, cfg.size)
	}
	os.Remove(src)
	if err := benchkit.Warm(blob); err != nil {
		return err
	}
	cacheDir := filepath.Join(dir, "cache")
	dst := filepath.Join(dir, "cp.bin")
	fetch := func() (time.Duration, error) {
		os.RemoveAll(cacheDir)
		t := time.Now()
		path, err := agent.FetchImageFile(ctx, cl, cacheDir, img.Name, "disk", img.Disk.SHA256, img.Disk.Size)
		d := time.Since(t)
		if err == nil {
			if st, serr := os.Stat(path); serr != nil || st.Size() != cfg.size {
				err = fmt.Errorf("fetched %s: %v, want %d bytes", path, serr, cfg.size)
			}
		}
		os.RemoveAll(cacheDir)
		return d, err
	}
	copyOnce := func() (time.Duration, error) { return benchkit.TimeCp(blob, dst) }
	var fetches, cps []time.Duration
	for r := 0; r < cfg.runs; r++ {
		var dc, df time.Duration
		var err error
		if r%2 == 0 {
			if dc, err = copyOnce(); err == nil {
				df, err = fetch()
			}
		} else {
			if df, err = fetch(); err == nil {
				dc, err = copyOnce()
			}
		}
		if err != nil {
			return fmt.Errorf("round %d: %w", r+1, err)
		}
		cps, fetches = append(cps, dc), append(fetches, df)
		fmt.Printf("round %d: cp+fsync %.3fs (%.0f MB/s)  fetch %.3fs (%.0f MB/s)\n", r+1, dc.Seconds(), mbps(cfg.size, dc), df.Seconds(), mbps(cfg.size, df))
	}
	fmt.Printf("\nsize %d bytes (%.2f GiB), %d rounds, in turn; source in the page cache, every copy fsynced; min / median / max\n\n",
		cfg.size, float64(cfg.size)/(1<<30), cfg.runs)
	fmt.Printf("| what | seconds | MB/s (of the median) |\n|---|---|---|\n")
	c, fe := benchkit.Stats(cps), benchkit.Stats(fetches)
	sec := func(s [3]time.Duration) string {
		return fmt.Sprintf("%.3f / %.3f / %.3f", s[0].Seconds(), s[1].Seconds(), s[2].Seconds())
	}
	fmt.Printf("| cp + fsync | %s | %.0f |\n", sec(c), mbps(cfg.size, c[1]))
	fmt.Printf("| image cache fetch (HTTPS from the control plane, SHA-256, fsync, rename) | %s | %.0f |\n", sec(fe), mbps(cfg.size, fe[1]))
	fmt.Printf("\nratio fetch/cp (medians): %s\n", ratio(fe[1].Seconds(), c[1].Seconds()))
	return nil
}

func mbps(size int64, d time.Duration) float64 { return float64(size) / 1e6 / d.Seconds() }

// ---- statistics ----

// spread returns the min, the median (the mean of the two middle values
// of an even count) and the max of xs; zeros when xs is empty.
func spread(xs []float64) [3]float64 {
	if len(xs) == 0 {
		return [3]float64{}
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	med := s[len(s)/2]
	if len(s)%2 == 0 {
		med = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return [3]float64{s[0], med, s[len(s)-1]}
}

func triple(s [3]float64) string {
	f := func(x float64) string {
		if x >= 100 {
			return strconv.FormatFloat(x, 'f', 0, 64)
		}
		return strconv.FormatFloat(x, 'f', 1, 64)
	}
	return f(s[0]) + " / " + f(s[1]) + " / " + f(s[2])
}

// ratio is a/b as "1.23x" (three significant digits below 0.1:
// "0.00448x"), or "n/a" when b is 0.
func ratio(a, b float64) string {
	if b == 0 {
		return "n/a"
	}
	if r := a / b; r != 0 && r < 0.1 {
		return strconv.FormatFloat(r, 'g', 3, 64) + "x"
	}
	return fmt.Sprintf("%.2fx", a/b)
}
