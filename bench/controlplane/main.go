package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"vgrid/bench/internal/benchkit"
	"vgrid/internal/agent"
	"vgrid/internal/client"
	"vgrid/internal/control"
	"vgrid/internal/controlplane"
	"vgrid/internal/hypervisor/fake"
	"vgrid/internal/model"
	"vgrid/internal/server"
	"vgrid/internal/store/etcd/etcdtest"
)

// The etcd servers' timing, given explicitly so that the output says it.
const (
	etcdHeartbeatMs = 50
	etcdElectionMs  = 500
)

const imageName = "bench-img"

type config struct {
	n, c, k, warmup int
	backends        []string
	dir             string
	verbose         bool
}

func main() {
	n := flag.Int("n", 400, "measured creates per backend and repetition")
	c := flag.Int("c", 8, "concurrent clients")
	k := flag.Int("k", 1, "repetitions (k > 1: the median of each figure is reported)")
	warmup := flag.Int("warmup", 20, "creates before the measured ones, not recorded")
	backends := flag.String("backends", "bolt,etcd1,etcd3", "comma-separated: bolt, etcd1, etcd3")
	dir := flag.String("dir", "", "work directory (default: a new one under /var/tmp, removed at the end)")
	verbose := flag.Bool("v", false, "log the control planes' and the agents' info messages")
	cpuProfile := flag.String("cpuprofile", "", "write this process's CPU profile (control plane, agent, clients) to this file")
	flag.Parse()
	cfg := config{n: *n, c: *c, k: *k, warmup: *warmup, dir: *dir, verbose: *verbose}
	if err := cfg.parse(*backends); err != nil {
		fmt.Fprintln(os.Stderr, "controlplane bench:", err)
		os.Exit(2)
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "controlplane bench: -cpuprofile:", err)
			os.Exit(2)
		}
		defer f.Close()
		defer pprof.StopCPUProfile()
	}
	if err := run(cfg); err != nil {
		pprof.StopCPUProfile()
		fmt.Fprintln(os.Stderr, "controlplane bench:", err)
		os.Exit(1)
	}
}

// parse checks the flags and fills cfg.backends.
func (cfg *config) parse(backends string) error {
	switch {
	case cfg.n < 1:
		return fmt.Errorf("-n %d: want at least 1", cfg.n)
	case cfg.c < 1:
		return fmt.Errorf("-c %d: want at least 1", cfg.c)
	case cfg.k < 1:
		return fmt.Errorf("-k %d: want at least 1", cfg.k)
	case cfg.warmup < 0:
		return fmt.Errorf("-warmup %d: want 0 or more", cfg.warmup)
	case cfg.n+cfg.warmup > control.MaxLimit:
		return fmt.Errorf("-n plus -warmup is %d: want at most %d (the most workspaces a project may be allowed)", cfg.n+cfg.warmup, control.MaxLimit)
	}
	seen := map[string]bool{}
	for _, b := range strings.Split(backends, ",") {
		b = strings.TrimSpace(b)
		if _, ok := etcdMembers(b); !ok {
			return fmt.Errorf("-backends: %q: want bolt, etcd1 or etcd3", b)
		}
		if seen[b] {
			return fmt.Errorf("-backends: %q given twice", b)
		}
		seen[b] = true
		cfg.backends = append(cfg.backends, b)
	}
	return nil
}

// etcdMembers returns the etcd cluster size of a backend (0: bolt).
func etcdMembers(backend string) (int, bool) {
	switch backend {
	case "bolt":
		return 0, true
	case "etcd1":
		return 1, true
	case "etcd3":
		return 3, true
	}
	return 0, false
}

// result is one backend's measured part in one repetition.
type result struct {
	lat    []time.Duration // successful creates, in the order they were started
	wall   time.Duration
	errors int
	first  error // the first error, if any
	// caughtUp is how long after the last answer the host agent had every
	// workspace Running (its reports are store writes too); notRunning
	// counts those it had not within catchUpWait.
	caughtUp   time.Duration
	notRunning int
	// cpuSelf is this process's CPU time (control plane, agent, clients)
	// and cpuEtcd the etcd servers' during the measured creates.
	cpuSelf, cpuEtcd time.Duration
}

// catchUpWait bounds the wait for the agent after the measured creates.
const catchUpWait = 60 * time.Second

// tenths returns the medians of the first and of the last tenth of the
// latencies, in the order the creates were started: a store that slows
// as it fills shows here.
func (r result) tenths() (first, last time.Duration) {
	k := len(r.lat) / 10
	if k == 0 {
		return 0, 0
	}
	return benchkit.Stats(r.lat[:k])[1], benchkit.Stats(r.lat[len(r.lat)-k:])[1]
}

func (r result) perSecond() float64 {
	if r.wall <= 0 {
		return 0
	}
	return float64(len(r.lat)) / r.wall.Seconds()
}

func run(cfg config) error {
	if cfg.hasEtcd() {
		if _, err := etcdtest.Binary(); err != nil {
			return err
		}
	}
	// An interrupt cancels the run; the deferred clean-ups still run.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	work, cleanup, err := benchkit.WorkDir(cfg.dir, "/var/tmp", "vgrid-cp-bench-")
	if err != nil {
		return err
	}
	defer cleanup()
	fmt.Printf("command: %s\n", strings.Join(os.Args, " "))
	fmt.Printf("date: %s, work directory %s\nload before: %s\n", time.Now().Format(time.RFC3339), work, loadavg())
	if cfg.hasEtcd() {
		bin, _ := etcdtest.Binary()
		fmt.Printf("etcd: %s, --heartbeat-interval %d --election-timeout %d, otherwise its defaults (etcdtest)\n",
			bin, etcdHeartbeatMs, etcdElectionMs)
	}
	results := map[string][]result{}
	for rep := range cfg.k {
		for i := range cfg.backends {
			// The order turns from one repetition to the next, so that no
			// backend always runs first (or last) on a machine that warms.
			b := cfg.backends[(i+rep)%len(cfg.backends)]
			dir := filepath.Join(work, fmt.Sprintf("%s-%d", b, rep+1))
			r, err := runBackend(ctx, cfg, b, dir)
			if err != nil {
				return fmt.Errorf("%s (repetition %d): %w", b, rep+1, err)
			}
			s := summarize(r)
			t1, t10 := r.tenths()
			fmt.Printf("%s run %d: %d creates in %.2fs = %.1f/s, p50 %s p99 %s max %s, %d errors; p50 of the first tenth %s, of the last %s; agent: all Running %.2fs after the last answer",
				b, rep+1, len(r.lat), r.wall.Seconds(), r.perSecond(), benchkit.MS(s.p50), benchkit.MS(s.p99), benchkit.MS(s.max), r.errors,
				benchkit.MS(t1), benchkit.MS(t10), r.caughtUp.Seconds())
			if len(r.lat) > 0 {
				fmt.Printf("; CPU per create: this process %s, etcd %s",
					benchkit.MS(r.cpuSelf/time.Duration(len(r.lat))), benchkit.MS(r.cpuEtcd/time.Duration(len(r.lat))))
			}
			if r.notRunning > 0 {
				fmt.Printf(" (%d not Running after %s)", r.notRunning, catchUpWait)
			}
			fmt.Println()
			if r.first != nil {
				fmt.Printf("  first error: %v\n", r.first)
			}
			results[b] = append(results[b], r)
			_ = os.RemoveAll(dir)
		}
	}
	fmt.Printf("load after: %s\n\n", loadavg())
	printTable(cfg, results)
	return nil
}

func (cfg config) hasEtcd() bool {
	for _, b := range cfg.backends {
		if m, _ := etcdMembers(b); m > 0 {
			return true
		}
	}
	return false
}

// runBackend starts etcd (if the backend uses it), a control plane and a
// host agent in dir, runs the creates, and stops everything it started,
// on errors too.
func runBackend(ctx context.Context, cfg config, backend, dir string) (res result, err error) {
	log := benchkit.Logger(cfg.verbose).With("backend", backend)
	members, _ := etcdMembers(backend)
	var etcdCfg *controlplane.EtcdConfig
	if members > 0 {
		cl, err := etcdtest.StartCluster(filepath.Join(dir, "etcd"), members,
			etcdtest.Options{HeartbeatMs: etcdHeartbeatMs, ElectionMs: etcdElectionMs})
		if err != nil {
			return res, err
		}
		defer cl.Stop()
		etcdCfg = &controlplane.EtcdConfig{Endpoints: cl.Endpoints(), Prefix: "/vgrid-bench/", Name: "bench"}
	}
	cpCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	dataDir := filepath.Join(dir, "cp")
	cp, err := controlplane.Start(cpCtx, log, controlplane.Config{
		DataDir: dataDir, Listen: "127.0.0.1:0", Etcd: etcdCfg,
		// The default 50 requests/s per token would cap the figures.
		RateLimit: server.RateLimit{Disabled: true},
		Limits:    control.Limits{Workspaces: max(control.DefaultMaxWorkspaces, cfg.warmup+cfg.n)},
	})
	if err != nil {
		return res, fmt.Errorf("start the control plane: %w", err)
	}
	defer func() {
		cancel()
		if werr := cp.Wait(cpCtx); werr != nil {
			err = errors.Join(err, fmt.Errorf("control plane: %w", werr))
		}
		cp.Close()
	}()
	term, err := waitLeading(ctx, cp)
	if err != nil {
		return res, err
	}
	ccfg, err := client.LoadConfigFile(filepath.Join(dataDir, "client.json"))
	if err != nil {
		return res, err
	}
	ccfg.Server = cp.URL
	admin, err := client.New(ccfg)
	if err != nil {
		return res, err
	}
	img, err := writeImage(filepath.Join(dataDir, "images", imageName))
	if err != nil {
		return res, err
	}
	if _, err := admin.RegisterImage(ctx, img); err != nil {
		return res, fmt.Errorf("register the image: %w", err)
	}
	stopAgent, err := startAgent(ctx, log, ccfg, cp.JoinToken, img, filepath.Join(dir, "agent"))
	if err != nil {
		return res, err
	}
	defer func() {
		if serr := stopAgent(); serr != nil {
			err = errors.Join(err, serr)
		}
	}()
	if err := waitReady(ctx, admin); err != nil {
		return res, err
	}
	if cfg.warmup > 0 {
		if w := creates(ctx, admin, "warm", cfg.warmup, cfg.c); w.errors > 0 {
			return res, fmt.Errorf("warm-up: %d of %d creates failed, the first: %w", w.errors, cfg.warmup, w.first)
		}
	}
	self0, etcd0 := cpuTimes()
	res = creates(ctx, admin, "ws", cfg.n, cfg.c)
	end := time.Now()
	self1, etcd1 := cpuTimes()
	res.cpuSelf, res.cpuEtcd = self1-self0, etcd1-etcd0
	if ctx.Err() != nil {
		return res, ctx.Err()
	}
	// The client retries a 503 not_leader for up to client.DefaultFailoverWait:
	// a leader change during the run would hide inside the latencies.
	if el := cp.Elector(); el != nil {
		if s := el.State(); !s.Leading || s.Term != term {
			return res, fmt.Errorf("the leadership changed during the run (term %d, now %d, leading %v)", term, s.Term, s.Leading)
		}
	}
	// The agent's reports trail the creates; waiting for them keeps the
	// shutdown from cutting them off, and says how far behind it was.
	want := cfg.warmup + len(res.lat)
	for {
		ws, err := admin.ListWorkspaces(ctx)
		if err != nil {
			return res, fmt.Errorf("list workspaces: %w", err)
		}
		if len(ws) != want {
			return res, fmt.Errorf("the project lists %d workspaces after %d successful creates", len(ws), want)
		}
		res.notRunning = 0
		for _, w := range ws {
			if w.Status.State != model.StateRunning {
				res.notRunning++
			}
		}
		res.caughtUp = time.Since(end)
		if res.notRunning == 0 || res.caughtUp > catchUpWait {
			return res, nil
		}
		select {
		case <-ctx.Done():
			return res, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// waitLeading waits until cp leads (at once with the embedded store) and
// returns its election term (0 with the embedded store).
func waitLeading(ctx context.Context, cp *controlplane.ControlPlane) (int64, error) {
	el := cp.Elector()
	if el == nil {
		return 0, nil
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		if s := el.State(); s.Leading {
			return s.Term, nil
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("the control plane did not lead within 30s (state %+v)", el.State())
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// creates makes n creates of workspaces named prefix-<i> with c clients
// working through them, and times each.
func creates(ctx context.Context, cl *client.Client, prefix string, n, c int) result {
	lat := make([]time.Duration, n)
	errs := make([]error, n)
	var next atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for range c {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n || ctx.Err() != nil {
					return
				}
				spec := workspaceSpec(fmt.Sprintf("%s-%d", prefix, i))
				t0 := time.Now()
				_, err := cl.CreateWorkspace(ctx, spec)
				lat[i], errs[i] = time.Since(t0), err
			}
		}()
	}
	wg.Wait()
	r := result{wall: time.Since(start)}
	for i := range n {
		if errs[i] != nil {
			r.errors++
			if r.first == nil {
				r.first = errs[i]
			}
			continue
		}
		if lat[i] > 0 {
			r.lat = append(r.lat, lat[i])
		}
	}
	return r
}

// workspaceSpec is a small workspace with an immediate one-hour lease.
func workspaceSpec(name string) []byte {
	return []byte(fmt.Sprintf("name: %s\nimage: %s\nquantum: {vcpus: 1, memory: 64Mi}\nduration: 1h\nlease: {kind: immediate}\n", name, imageName))
}

// writeImage writes a small image's files into dir (under the control
// plane's images/, the only place it registers images from).
func writeImage(dir string) (model.Image, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return model.Image{}, err
	}
	var werr error
	file := func(n string) *model.ImageFile {
		p := filepath.Join(dir, n)
		data := []byte(strings.Repeat("controlplane bench "+n+"\n", 512))
		werr = errors.Join(werr, os.WriteFile(p, data, 0o644))
		h := sha256.Sum256(data)
		return &model.ImageFile{Path: p, SHA256: hex.EncodeToString(h[:]), Size: int64(len(data))}
	}
	img := model.Image{Name: imageName, Boot: "direct", Disk: *file("rootfs.img"), DiskFormat: "raw",
		Kernel: file("vmlinux"), Initrd: file("initrd.img"), MinDisk: 64 * model.MiB}
	return img, werr
}

// startAgent runs one host agent in this process with the fake driver,
// its image cache filled beforehand, registered with the join token. The
// returned function stops it.
func startAgent(ctx context.Context, log *slog.Logger, ccfg client.Config, join string, img model.Image, dir string) (func() error, error) {
	cache := filepath.Join(dir, "images")
	if err := os.MkdirAll(cache, 0o755); err != nil {
		return nil, err
	}
	for _, f := range []*model.ImageFile{&img.Disk, img.Kernel, img.Initrd} {
		b, err := os.ReadFile(f.Path)
		if err != nil {
			return nil, err
		}
		if err := os.WriteFile(filepath.Join(cache, f.SHA256), b, 0o444); err != nil {
			return nil, err
		}
	}
	drv := fake.New(filepath.Join(dir, "instances"))
	a, err := agent.New(agent.Config{
		Server:  client.Config{Server: ccfg.Server, Token: join, CACert: ccfg.CACert},
		DataDir: dir, Driver: drv, Logger: log.With("host", "bench-host"),
		Node: model.Node{Name: "bench-host", Accel: "fake",
			Capacity: model.Resources{MilliCPU: 1000 * 1000, Memory: 4 * model.TiB, Disk: 100 * model.TiB}},
		Heartbeat: time.Second, Resync: 3 * time.Second, StopTimeout: time.Second,
	})
	if err != nil {
		drv.Close()
		return nil, fmt.Errorf("host agent: %w", err)
	}
	actx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer drv.Close()
		_ = a.Run(actx)
	}()
	return func() error {
		cancel()
		select {
		case <-done:
			return nil
		case <-time.After(20 * time.Second):
			return errors.New("the host agent did not stop within 20s")
		}
	}, nil
}

// waitReady waits until the control plane lists the agent's host Ready
// with a heartbeat after its registration. Ready alone is not enough: the
// node record is stored Ready before the registration adds the host to
// the lease calendar, and a create in between is refused ("no host has
// labels"); the agent heartbeats only once its registration has returned.
func waitReady(ctx context.Context, cl *client.Client) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		ns, err := cl.Nodes(ctx)
		if err == nil && len(ns) == 1 && ns[0].Ready && ns[0].LastHeartbeat.After(ns[0].RegisteredAt) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the host agent did not register within 30s (%d hosts listed, %v)", len(ns), err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// summary is a run's figures.
type summary struct {
	perSecond     float64
	p50, p99, max time.Duration
	errors        int
	// cpuSelf and cpuEtcd are CPU time per successful create.
	cpuSelf, cpuEtcd time.Duration
}

func summarize(r result) summary {
	s := benchkit.Sorted(r.lat)
	out := summary{perSecond: r.perSecond(), errors: r.errors}
	if len(s) > 0 {
		out.p50, out.p99, out.max = benchkit.Stats(s)[1], percentile(s, 0.99), s[len(s)-1]
		out.cpuSelf, out.cpuEtcd = r.cpuSelf/time.Duration(len(s)), r.cpuEtcd/time.Duration(len(s))
	}
	return out
}

// percentile returns the nearest-rank p-quantile of sorted values.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(p*float64(len(sorted))+0.999999) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

// median combines repetitions: the median of each figure on its own
// (benchkit.Median64: the upper middle of an even count), errors summed.
func median(rs []result) summary {
	var ps, p50, p99, mx, cs, ce []int64
	out := summary{}
	for _, r := range rs {
		s := summarize(r)
		// Creates per second kept to 1/1000.
		ps = append(ps, int64(s.perSecond*1000+0.5))
		p50, p99, mx = append(p50, int64(s.p50)), append(p99, int64(s.p99)), append(mx, int64(s.max))
		cs, ce = append(cs, int64(s.cpuSelf)), append(ce, int64(s.cpuEtcd))
		out.errors += s.errors
	}
	out.perSecond = float64(benchkit.Median64(ps)) / 1000
	out.p50, out.p99, out.max = time.Duration(benchkit.Median64(p50)), time.Duration(benchkit.Median64(p99)), time.Duration(benchkit.Median64(mx))
	out.cpuSelf, out.cpuEtcd = time.Duration(benchkit.Median64(cs)), time.Duration(benchkit.Median64(ce))
	return out
}

// printTable prints the markdown table, with the ratios to bolt's figures
// when bolt was measured.
func printTable(cfg config, results map[string][]result) {
	what := "one run"
	if cfg.k > 1 {
		what = fmt.Sprintf("median of %d runs", cfg.k)
	}
	fmt.Printf("%d creates per backend, %d concurrent clients, after %d warm-up creates; %s\n\n", cfg.n, cfg.c, cfg.warmup, what)
	fmt.Println("| backend | creates/s | p50 | p99 | max | errors | throughput / bolt | p99 / bolt | CPU per create: vgrid + etcd |")
	fmt.Println("|---|---|---|---|---|---|---|---|---|")
	names := map[string]string{"bolt": "bbolt (embedded)", "etcd1": "etcd, 1 member", "etcd3": "etcd, 3 members"}
	order := append([]string(nil), cfg.backends...)
	sort.SliceStable(order, func(i, j int) bool { return order[i] < order[j] }) // bolt, etcd1, etcd3
	base, haveBase := summary{}, len(results["bolt"]) > 0
	if haveBase {
		base = median(results["bolt"])
	}
	for _, b := range order {
		s := median(results[b])
		ratio := func(x, y float64) string {
			if !haveBase || y == 0 {
				return "–"
			}
			return fmt.Sprintf("%.2f", x/y)
		}
		fmt.Printf("| %s | %.1f | %s | %s | %s | %d | %s | %s | %s + %s |\n", names[b], s.perSecond,
			benchkit.MS(s.p50), benchkit.MS(s.p99), benchkit.MS(s.max), s.errors,
			ratio(s.perSecond, base.perSecond), ratio(float64(s.p99), float64(base.p99)),
			benchkit.MS(s.cpuSelf), benchkit.MS(s.cpuEtcd))
	}
}

// cpuTimes returns the CPU time (user and system) of this process and the
// sum of its child processes named etcd, from /proc (clock ticks of 10 ms).
func cpuTimes() (self, etcd time.Duration) {
	self = procCPU("self")
	me := os.Getpid()
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, st := range stats {
		b, err := os.ReadFile(st)
		if err != nil {
			continue
		}
		f, ok := statFields(string(b))
		if ok && f.comm == "etcd" && f.ppid == me {
			etcd += f.cpu
		}
	}
	return self, etcd
}

func procCPU(pid string) time.Duration {
	b, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return 0
	}
	f, _ := statFields(string(b))
	return f.cpu
}

type procStat struct {
	comm string
	ppid int
	cpu  time.Duration
}

// statFields parses /proc/<pid>/stat: the name in parentheses, then the
// fields after it (ppid is the 4th field, utime and stime the 14th and
// 15th, counted from the pid as the 1st).
func statFields(s string) (procStat, bool) {
	open, end := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
	if open < 0 || end < open {
		return procStat{}, false
	}
	rest := strings.Fields(s[end+1:]) // rest[0] is field 3 (state)
	if len(rest) < 13 {
		return procStat{}, false
	}
	var ppid int
	var ut, st int64
	if _, err := fmt.Sscan(rest[1], &ppid); err != nil {
		return procStat{}, false
	}
	if _, err := fmt.Sscan(rest[11], &ut); err != nil {
		return procStat{}, false
	}
	if _, err := fmt.Sscan(rest[12], &st); err != nil {
		return procStat{}, false
	}
	return procStat{comm: s[open+1 : end], ppid: ppid, cpu: time.Duration(ut+st) * 10 * time.Millisecond}, true
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	return strings.Join(strings.Fields(string(b))[:3], " ")
}
