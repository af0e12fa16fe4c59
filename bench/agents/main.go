// Command agents measures the control plane with many simulated hosts.
//
// It builds `vgrid` (or takes --bin), starts `vgrid server` as a child
// process on a temporary data directory (so that the server's memory and
// CPU time are its own, read from /proc/<pid>), makes a join token with
// `vgrid token create --role join --max-hosts N`, and runs N real host
// agents (internal/agent, as `vgrid agent` runs them) in this process, each
// with the fake hypervisor driver (no QEMU), its own data directory, its
// own host certificate and node token, heartbeats every --heartbeat and
// its long poll of assignments. Agents register in batches of --batch.
//
// Then, for --window, it makes user API calls at --rate per second, open
// loop (each on its own goroutine at its tick, so a slow answer does not
// slow the rate): GET /workspaces, GET /nodes, POST /workspaces of a small
// workspace that the calendar places on one of the simulated hosts, and
// DELETE /workspaces/{name} of the oldest one it made (about --keep-live
// of them live at a time), in turn. Meanwhile it times heartbeats
// (PUT /nodes/{node}/heartbeat) at --probe-rate per second, sent with the
// node token and host certificate of --probe-hosts of the registered
// agents (read from their data directories), on top of the agents' own
// heartbeats, at most one in flight per host (as an agent sends them;
// a tick that finds every probed host busy is counted, not sent). The agents' own calls are not timed: internal/client has no
// hook for that, and these are the same call from the same credentials.
//
//	go run ./bench/agents -agents 1000 -window 60s -rate 20
//
// It prints latencies (p50, p99, max), the server's RSS (VmRSS) at start,
// after registration and at the end, its peak (VmHWM), its CPU time
// (utime+stime) over the window, and what the agents logged as warnings.
// It raises RLIMIT_NOFILE to --nofile (or, without the privilege, to the
// hard limit; at least 4 × agents are needed), and the server inherits it.
package main

import (
	"bufio"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"vgrid/bench/internal/benchkit"
	"vgrid/internal/agent"
	"vgrid/internal/client"
	"vgrid/internal/hypervisor/fake"
	"vgrid/internal/model"
)

func main() {
	n := flag.Int("agents", 1000, "simulated hosts (agents in this process)")
	window := flag.Duration("window", 60*time.Second, "measurement window")
	rate := flag.Float64("rate", 20, "user API calls per second during the window")
	probeRate := flag.Float64("probe-rate", 20, "timed heartbeats per second during the window")
	probeHosts := flag.Int("probe-hosts", 50, "registered hosts whose credentials the timed heartbeats use")
	heartbeat := flag.Duration("heartbeat", 5*time.Second, "the agents' heartbeat period")
	batch := flag.Int("batch", 50, "agents registering at once")
	keepLive := flag.Int("keep-live", 10, "workspaces made before the window and kept live (each DELETE removes the oldest)")
	bin := flag.String("bin", "", "vgrid binary (default: go build ./cmd/vgrid into the work directory)")
	dir := flag.String("dir", "", "work directory (default: a new one under /var/tmp, removed at the end)")
	nofile := flag.Uint64("nofile", 65536, "RLIMIT_NOFILE for this process and the server")
	flag.Parse()

	if err := run(config{agents: *n, window: *window, rate: *rate, probeRate: *probeRate, probeHosts: *probeHosts,
		heartbeat: *heartbeat, batch: *batch, keepLive: *keepLive, bin: *bin, dir: *dir, nofile: *nofile}); err != nil {
		fmt.Fprintln(os.Stderr, "agents bench:", err)
		os.Exit(1)
	}
}

type config struct {
	agents            int
	window            time.Duration
	rate, probeRate   float64
	probeHosts, batch int
	heartbeat         time.Duration
	keepLive          int
	bin, dir          string
	nofile            uint64
}

func run(c config) error {
	// Raise the limit of open files (the server inherits it): to
	// --nofile if allowed, else to the hard limit.
	lim := syscall.Rlimit{Cur: c.nofile, Max: c.nofile}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
			return err
		}
		lim.Cur = lim.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
			return fmt.Errorf("raise RLIMIT_NOFILE: %w", err)
		}
	}
	if need := uint64(4 * c.agents); lim.Cur < need {
		return fmt.Errorf("RLIMIT_NOFILE is %d, want at least %d for %d agents", lim.Cur, need, c.agents)
	}
	fmt.Printf("RLIMIT_NOFILE %d (this process and the server)\n", lim.Cur)
	work, cleanup, err := benchkit.WorkDir(c.dir, "/var/tmp", "vgrid-agents-bench-")
	if err != nil {
		return err
	}
	defer cleanup()
	if c.bin == "" {
		c.bin = filepath.Join(work, "vgrid")
		fmt.Println("building vgrid …")
		cmd := exec.Command("go", "build", "-o", c.bin, "vgrid/cmd/vgrid")
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("go build: %w", err)
		}
	}
	fmt.Printf("load average at start: %s\n", loadavg())

	// The server, with a small image the agents fetch on their first start.
	srvDir := filepath.Join(work, "server")
	if err := writeImage(filepath.Join(srvDir, "images", "bench")); err != nil {
		return err
	}
	logf, err := os.Create(filepath.Join(work, "server.log"))
	if err != nil {
		return err
	}
	defer logf.Close()
	srv := exec.Command(c.bin, "server", "--data-dir", srvDir, "--listen", "127.0.0.1:0", "--write-config=false",
		"--rate-limit", "0")
	srv.Stdout, srv.Stderr = logf, logf
	srv.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := srv.Start(); err != nil {
		return err
	}
	pid := srv.Process.Pid
	defer func() {
		_ = srv.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = srv.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			_ = srv.Process.Kill()
			<-done
		}
	}()
	ctx := context.Background()
	cfgPath := filepath.Join(srvDir, "client.json")
	var admin *client.Client
	var ccfg client.Config
	for deadline := time.Now().Add(60 * time.Second); admin == nil; time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			return fmt.Errorf("vgrid server did not answer within 60 s; see %s", logf.Name())
		}
		cfg, err := client.LoadConfigFile(cfgPath)
		if err != nil || cfg.Token == "" {
			continue
		}
		if cl, err := client.New(cfg); err == nil {
			if _, err := cl.Nodes(ctx); err == nil {
				admin, ccfg = cl, cfg
			}
		}
	}
	ca, err := os.ReadFile(filepath.Join(srvDir, "tls", "ca.crt"))
	if err != nil {
		return err
	}
	time.Sleep(time.Second)
	rssStart := readStatus(pid)
	fmt.Printf("server pid %d at %s; RSS %s\n", pid, ccfg.Server, mib(rssStart.rss))

	tokCmd := exec.Command(c.bin, "--config", cfgPath, "token", "create", "--role", "join", "--max-hosts", strconv.Itoa(c.agents))
	tokCmd.Env = append(os.Environ(), "VGRID_ADDR=", "VGRID_TOKEN=")
	tokCmd.Stderr = os.Stderr
	out, err := tokCmd.Output()
	if err != nil {
		return fmt.Errorf("token create: %w", err)
	}
	join := strings.TrimSpace(string(out))

	// The agents, registered in batches.
	warns := &warnCounter{counts: map[string]int{}, example: map[string]string{}}
	logger := slog.New(warns)
	actx, stopAgents := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() { stopAgents(); wg.Wait() }()
	nodes := make([]model.Node, c.agents)
	dirs := make([]string, c.agents)
	regStart := time.Now()
	var batchTimes []time.Duration
	for start := 0; start < c.agents; start += c.batch {
		t0 := time.Now()
		end := min(start+c.batch, c.agents)
		for i := start; i < end; i++ {
			nodes[i] = model.Node{Name: fmt.Sprintf("sim%04d", i), Address: "127.0.0.1", Accel: "tcg",
				Capacity: model.Resources{MilliCPU: 4000, Memory: 8 * model.GiB, Disk: 100 * model.GiB}}
			dirs[i] = filepath.Join(work, "hosts", nodes[i].Name)
			a, err := agent.New(agent.Config{
				Server:  client.Config{Server: ccfg.Server, Token: join, CACert: string(ca)},
				DataDir: dirs[i], Node: nodes[i],
				Driver: fake.New(filepath.Join(dirs[i], "instances")), Logger: logger, Heartbeat: c.heartbeat,
			})
			if err != nil {
				return err
			}
			wg.Add(1)
			go func() { defer wg.Done(); _ = a.Run(actx) }()
		}
		for i := start; i < end; i++ {
			for {
				if _, err := agent.LoadCredential(dirs[i]); err == nil {
					break
				}
				if time.Since(t0) > 5*time.Minute {
					return fmt.Errorf("agent %s did not register within 5 minutes", nodes[i].Name)
				}
				time.Sleep(20 * time.Millisecond)
			}
		}
		batchTimes = append(batchTimes, time.Since(t0))
	}
	regTime := time.Since(regStart)
	ready := readyNodes(ctx, admin)
	time.Sleep(2 * time.Second)
	rssReg := readStatus(pid)
	fmt.Printf("%d agents registered in %.1fs (batches of %d: p50 %s, max %s); %d Ready; server RSS %s, fds %d, threads %d\n",
		c.agents, regTime.Seconds(), c.batch, fmtDur(pct(batchTimes, 50)), fmtDur(pct(batchTimes, 100)), ready,
		mib(rssReg.rss), countFDs(pid), rssReg.threads)

	// Timed heartbeats: with the saved credentials of some agents.
	var probes []*probeClient
	for k := 0; k < min(c.probeHosts, c.agents); k++ {
		i := k * c.agents / min(c.probeHosts, c.agents)
		cred, err := agent.LoadCredential(dirs[i])
		if err != nil {
			return err
		}
		pair, err := agent.LoadCertificate(dirs[i])
		if err != nil {
			return err
		}
		cl, err := client.New(client.Config{Server: ccfg.Server, Token: cred.Token, CACert: string(ca),
			GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &pair, nil }})
		if err != nil {
			return err
		}
		probes = append(probes, &probeClient{cl: cl, node: nodes[i]})
	}

	// Workspaces live before the window starts, so that each DELETE in
	// the window has one to remove.
	ws := &workspaces{}
	for range c.keepLive {
		name := ws.newName()
		if _, err := admin.CreateWorkspace(ctx, workspaceSpec(name)); err != nil {
			return fmt.Errorf("create %s: %w", name, err)
		}
		ws.push(name)
	}
	warns.reset()

	// The window.
	fmt.Printf("measuring for %s: %.0f API calls/s, %.0f timed heartbeats/s (load average %s)\n", c.window, c.rate, c.probeRate, loadavg())
	cpu0, t0, self0 := readCPU(pid), time.Now(), selfCPU()
	rec := &recorder{lat: map[string][]time.Duration{}, errs: map[string]int{}, firstErr: map[string]string{}}
	wctx, endWindow := context.WithTimeout(ctx, c.window)
	defer endWindow()
	var peak atomic.Int64
	var opsWG sync.WaitGroup
	var states threadStates
	go func() { // RSS every second, thread states 10 times a second
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for k := 0; ; k++ {
			if k%10 == 0 {
				if s := readStatus(pid); s.rss > peak.Load() {
					peak.Store(s.rss)
				}
			}
			states.sample(pid)
			select {
			case <-wctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	var probeSkipped atomic.Int64
	tickDone := make(chan struct{})
	go func() {
		defer close(tickDone)
		next := 0
		tick(wctx, c.probeRate, func(int) {
			// One timed heartbeat at a time per host, as an agent sends
			// them: the next host with none in flight.
			var p *probeClient
			for range probes {
				q := probes[next%len(probes)]
				next++
				if q.busy.CompareAndSwap(false, true) {
					p = q
					break
				}
			}
			if p == nil {
				probeSkipped.Add(1)
				return
			}
			opsWG.Add(1)
			go func() {
				defer opsWG.Done()
				defer p.busy.Store(false)
				rec.do("PUT heartbeat (timed)", func() error { return p.cl.Heartbeat(ctx, p.node) })
			}()
		})
	}()
	ops := []string{"GET /workspaces", "GET /nodes", "POST /workspaces", "DELETE /workspaces/{name}"}
	tick(wctx, c.rate, func(k int) {
		op := ops[k%len(ops)]
		opsWG.Add(1)
		go func() {
			defer opsWG.Done()
			rec.do(op, func() error { return userCall(ctx, admin, ws, op) })
		}()
	})
	<-tickDone
	opsWG.Wait()
	elapsed := time.Since(t0)
	cpu1, self1 := readCPU(pid), selfCPU()
	rssEnd := readStatus(pid)
	ready = readyNodes(ctx, admin)

	// Report.
	fmt.Printf("\n%d agents, heartbeat every %s, window %s, load average at the end %s\n\n", c.agents, c.heartbeat, elapsed.Round(time.Millisecond), loadavg())
	fmt.Printf("| call | n | errors | p50 | p99 | max |\n|---|---|---|---|---|---|\n")
	for _, op := range append(ops, "PUT heartbeat (timed)") {
		l := rec.lat[op]
		fmt.Printf("| %s | %d | %d | %s | %s | %s |\n", op, len(l), rec.errs[op], fmtDur(pct(l, 50)), fmtDur(pct(l, 99)), fmtDur(pct(l, 100)))
	}
	var all []time.Duration
	for _, op := range ops {
		all = append(all, rec.lat[op]...)
	}
	fmt.Printf("| all user calls | %d | | %s | %s | %s |\n", len(all), fmtDur(pct(all, 50)), fmtDur(pct(all, 99)), fmtDur(pct(all, 100)))
	if n := probeSkipped.Load(); n > 0 {
		fmt.Printf("(%d timed heartbeats not sent: every probed host had one in flight)\n", n)
	}
	for op, e := range rec.firstErr {
		fmt.Printf("first error of %s: %s\n", op, e)
	}
	cpuSec := float64(cpu1-cpu0) / clkTck
	fmt.Printf("\n| server | value |\n|---|---|\n")
	fmt.Printf("| RSS at start (no hosts) | %s |\n| RSS after registration | %s |\n| RSS at the end | %s |\n| RSS max sampled in window (1 s) | %s |\n| VmHWM (peak) | %s |\n",
		mib(rssStart.rss), mib(rssReg.rss), mib(rssEnd.rss), mib(peak.Load()), mib(rssEnd.hwm))
	fmt.Printf("| CPU time over the window | %.1f s = %.2f cores |\n", cpuSec, cpuSec/elapsed.Seconds())
	fmt.Printf("| threads, open fds at the end | %d, %d |\n", rssEnd.threads, countFDs(pid))
	fmt.Printf("| threads running or runnable (R) / in disk wait (D), mean of %d samples | %.2f / %.2f |\n",
		states.n, float64(states.r)/float64(max(1, states.n)), float64(states.d)/float64(max(1, states.n)))
	fmt.Printf("| hosts Ready at the end | %d of %d |\n", ready, c.agents)
	fmt.Printf("| workspaces created / deleted in window; seen Running before delete | %d / %d; %d |\n", ws.created.Load(), ws.deleted.Load(), ws.sawRunning.Load())
	if n := ws.skipped.Load(); n > 0 {
		fmt.Printf("(%d DELETE turns found no workspace to delete: the creates before them had not been answered yet)\n", n)
	}
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	fmt.Printf("\nthis process (agents + client): CPU time over the window %.1f s = %.2f cores, %d goroutines, max RSS %s\n",
		(self1 - self0).Seconds(), (self1-self0).Seconds()/elapsed.Seconds(), runtime.NumGoroutine(), mib(ru.Maxrss*1024))
	fmt.Printf("agent warnings in the window: %s\n", warns.String())
	return nil
}

// tick calls f(0), f(1), … at rate per second until ctx ends, at fixed
// times (open loop: a late f does not delay the next).
func tick(ctx context.Context, rate float64, f func(int)) {
	if rate <= 0 {
		return
	}
	period := time.Duration(float64(time.Second) / rate)
	start := time.Now()
	for k := 0; ; k++ {
		at := start.Add(time.Duration(k) * period)
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Until(at)):
		}
		f(k)
	}
}

type recorder struct {
	mu       sync.Mutex
	lat      map[string][]time.Duration
	errs     map[string]int
	firstErr map[string]string
}

func (r *recorder) do(op string, f func() error) {
	t0 := time.Now()
	err := f()
	d := time.Since(t0)
	r.mu.Lock()
	defer r.mu.Unlock()
	if err != nil {
		if errors.Is(err, errSkip) {
			return
		}
		r.errs[op]++
		if _, ok := r.firstErr[op]; !ok {
			r.firstErr[op] = err.Error()
		}
		return
	}
	r.lat[op] = append(r.lat[op], d)
}

var errSkip = errors.New("nothing to do")

type probeClient struct {
	cl   *client.Client
	node model.Node
	busy atomic.Bool // a timed heartbeat is in flight
}

// workspaces are those the bench made, oldest first.
type workspaces struct {
	mu      sync.Mutex
	seq     int
	live    []string
	running map[string]bool

	created, deleted, sawRunning atomic.Int64
	skipped                      atomic.Int64 // DELETEs with no workspace made yet to delete
}

func (w *workspaces) newName() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.seq++
	return fmt.Sprintf("b%06d", w.seq)
}

func (w *workspaces) push(name string) {
	w.mu.Lock()
	w.live = append(w.live, name)
	w.mu.Unlock()
}

func (w *workspaces) pop() (string, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.live) == 0 {
		return "", false
	}
	name := w.live[0]
	w.live = w.live[1:]
	return name, true
}

func (w *workspaces) seen(list []model.Workspace) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.running == nil {
		w.running = map[string]bool{}
	}
	for _, x := range list {
		if x.Status.State == model.StateRunning {
			w.running[x.Spec.Name] = true
		}
	}
}

func (w *workspaces) wasRunning(name string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	r := w.running[name]
	delete(w.running, name)
	return r
}

func workspaceSpec(name string) []byte {
	return []byte("name: " + name + "\nimage: bench\nquantum: {vcpus: 1, cpu: 0.1, memory: 64Mi, disk: 1Gi}\nduration: 1h\n")
}

func userCall(ctx context.Context, cl *client.Client, ws *workspaces, op string) error {
	switch op {
	case "GET /workspaces":
		l, err := cl.ListWorkspacesPage(ctx, 500, "")
		if err == nil {
			ws.seen(l.Workspaces)
		}
		return err
	case "GET /nodes":
		_, err := cl.Nodes(ctx)
		return err
	case "POST /workspaces":
		name := ws.newName()
		if _, err := cl.CreateWorkspace(ctx, workspaceSpec(name)); err != nil {
			return err
		}
		ws.created.Add(1)
		ws.push(name)
		return nil
	case "DELETE /workspaces/{name}":
		name, ok := ws.pop()
		if !ok {
			ws.skipped.Add(1)
			return errSkip
		}
		if err := cl.DeleteWorkspace(ctx, name); err != nil {
			return err
		}
		ws.deleted.Add(1)
		if ws.wasRunning(name) {
			ws.sawRunning.Add(1)
		}
		return nil
	}
	return fmt.Errorf("unknown op %s", op)
}

func readyNodes(ctx context.Context, cl *client.Client) int {
	ns, err := cl.Nodes(ctx)
	if err != nil {
		return -1
	}
	n := 0
	for _, x := range ns {
		if x.Ready {
			n++
		}
	}
	return n
}

// writeImage writes a tiny direct-boot image (the fake driver boots
// nothing) in dir, as the server finds images under <data-dir>/images.
func writeImage(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	file := func(name string) (*model.ImageFile, error) {
		p := filepath.Join(dir, name)
		data := []byte(strings.Repeat("content of "+name+"\n", 256))
		if err := os.WriteFile(p, data, 0o644); err != nil {
			return nil, err
		}
		h := sha256.Sum256(data)
		return &model.ImageFile{Path: p, SHA256: hex.EncodeToString(h[:]), Size: int64(len(data))}, nil
	}
	disk, err := file("rootfs.img")
	if err != nil {
		return err
	}
	kernel, err := file("vmlinux")
	if err != nil {
		return err
	}
	initrd, err := file("initrd.img")
	if err != nil {
		return err
	}
	img := model.Image{Name: "bench", Boot: "direct", Disk: *disk, DiskFormat: "raw", Kernel: kernel, Initrd: initrd,
		MinDisk: 256 * model.MiB, CreatedAt: time.Now().UTC()}
	b, _ := json.MarshalIndent(img, "", "  ")
	return os.WriteFile(filepath.Join(dir, "image.json"), b, 0o644)
}

// warnCounter is a slog handler that counts the agents' warnings and
// errors by message.
type warnCounter struct {
	mu      sync.Mutex
	counts  map[string]int
	example map[string]string
}

func (w *warnCounter) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelWarn }
func (w *warnCounter) Handle(_ context.Context, r slog.Record) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.counts[r.Message]++
	if _, ok := w.example[r.Message]; !ok {
		var b strings.Builder
		r.Attrs(func(a slog.Attr) bool { fmt.Fprintf(&b, " %s=%v", a.Key, a.Value); return true })
		w.example[r.Message] = b.String()
	}
	return nil
}
func (w *warnCounter) WithAttrs([]slog.Attr) slog.Handler { return w }
func (w *warnCounter) WithGroup(string) slog.Handler      { return w }
func (w *warnCounter) reset() {
	w.mu.Lock()
	w.counts, w.example = map[string]int{}, map[string]string{}
	w.mu.Unlock()
}
func (w *warnCounter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.counts) == 0 {
		return "none"
	}
	var parts []string
	for m, n := range w.counts {
		parts = append(parts, fmt.Sprintf("%q ×%d (e.g.%s)", m, n, w.example[m]))
	}
	sort.Strings(parts)
	return strings.Join(parts, ", ")
}

// /proc readings.

// clkTck is USER_HZ, 100 on Linux on every architecture Go supports.
const clkTck = 100

type procStatus struct {
	rss, hwm int64 // bytes
	threads  int
}

func readStatus(pid int) procStatus {
	var s procStatus
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return s
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) < 2 {
			continue
		}
		v, _ := strconv.ParseInt(fs[1], 10, 64)
		switch fs[0] {
		case "VmRSS:":
			s.rss = v * 1024
		case "VmHWM:":
			s.hwm = v * 1024
		case "Threads:":
			s.threads = int(v)
		}
	}
	return s
}

// readCPU is utime+stime of pid in clock ticks.
func readCPU(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// The command name may hold spaces: fields count from after its ')'.
	s := string(b)
	fs := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	// fs[0] is field 3 (state); utime is field 14, stime field 15.
	u, _ := strconv.ParseInt(fs[11], 10, 64)
	st, _ := strconv.ParseInt(fs[12], 10, 64)
	return u + st
}

// threadStates counts the server's threads by state over samples.
type threadStates struct{ n, r, d int }

// sample reads the state of each thread of pid (R running or runnable,
// D uninterruptible: in this server, waiting for the disk, i.e. fsync).
func (t *threadStates) sample(pid int) {
	dirs, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/stat", pid))
	t.n++
	for _, p := range dirs {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		s := string(b)
		fs := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		if len(fs) == 0 {
			continue
		}
		switch fs[0] {
		case "R":
			t.r++
		case "D":
			t.d++
		}
	}
}

// selfCPU is this process's user + system CPU time.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func countFDs(pid int) int {
	es, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	return len(es)
}

func loadavg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	fs := strings.Fields(string(b))
	if len(fs) < 3 {
		return "?"
	}
	return strings.Join(fs[:3], " ")
}

func mib(b int64) string { return fmt.Sprintf("%.0f MiB", float64(b)/(1<<20)) }

func pct(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := benchkit.Sorted(ds)
	i := int(float64(len(s))*p/100+0.5) - 1
	return s[max(0, min(i, len(s)-1))]
}

func fmtDur(d time.Duration) string {
	switch {
	case d == 0:
		return "–"
	case d < time.Millisecond:
		return fmt.Sprintf("%.2f ms", float64(d)/1e6)
	case d < time.Second:
		return fmt.Sprintf("%.1f ms", float64(d)/1e6)
	default:
		return fmt.Sprintf("%.2f s", d.Seconds())
	}
}
