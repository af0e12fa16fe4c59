package gridtest

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"vgrid/internal/client"
	"vgrid/internal/netgrid"
	"vgrid/internal/testenv"
)

// Options configure Start.
type Options struct {
	Hosts int // default 3
	// Images are image directories passed to vgrid up --image.
	Images []string
	// Policy, if set, is the calendar policy file's contents (YAML).
	Policy string
	// ExtraArgs are more vgrid up flags.
	ExtraArgs []string
	// ReadyWithin bounds the wait for the N nodes (default 90s).
	ReadyWithin time.Duration
}

// Grid is a running `vgrid up --hosts N` subprocess.
type Grid struct {
	t       testing.TB
	Bin     string // the vgrid binary
	DataDir string
	Config  string // the admin client config (client.json)
	Net     netgrid.Config
	Client  *client.Client
	Hosts   []*Host
	logPath string
	args    []string
	within  time.Duration
	cmd     *exec.Cmd
	done    chan struct{}
}

// Host is one host of the grid, seen from outside vgrid up.
type Host struct {
	Index     int
	Name      string // node name
	Namespace string
	Address   string
	DataDir   string // <data-dir>/hosts/<name>
	g         *Grid
}

var (
	binMu sync.Mutex
	seq   atomic.Int32
)

// Bin builds the vgrid binary, once per test binary while a test using it
// runs (the first test's cleanup removes it; a later test builds again).
func Bin(t testing.TB) string {
	t.Helper()
	binMu.Lock()
	defer binMu.Unlock()
	bin := filepath.Join(os.TempDir(), fmt.Sprintf("vgrid-gridtest-%d", os.Getpid()))
	if _, err := os.Stat(bin); err == nil {
		return bin
	}
	cmd := exec.Command("go", "build", "-o", bin, "vgrid/cmd/vgrid")
	cmd.Dir = testenv.ModuleRoot(t)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build vgrid: %v\n%s", err, out)
	}
	t.Cleanup(func() { os.Remove(bin) })
	return bin
}

// Require skips (failing under VGRID_REQUIRE_ALL) unless the machine can
// make network namespaces: root and CLONE_NEWNET.
func Require(t testing.TB) {
	t.Helper()
	testenv.RequireRoot(t)
	if _, err := os.Stat("/proc/self/ns/net"); err != nil {
		testenv.Skip(t, "no network namespaces: %v", err)
	}
	errc := make(chan error, 1)
	go func() {
		// The thread is left in the new namespace and ends with the
		// goroutine (never unlocked).
		runtime.LockOSThread()
		errc <- unix.Unshare(unix.CLONE_NEWNET)
	}()
	if err := <-errc; err != nil {
		testenv.Skip(t, "cannot make a network namespace: %v", err)
	}
}

// Names returns a network config of its own for this test process and
// call: bridge vgt<pid>x<n>, namespaces vgt<pid>x<n>-h<i>, and a /24 in
// 10.64.0.0/10 that no interface of the machine uses.
func Names(t testing.TB, hosts int) netgrid.Config {
	t.Helper()
	n := seq.Add(1)
	pid := os.Getpid()
	c := netgrid.Config{Bridge: fmt.Sprintf("vgt%dx%d", pid, n), Prefix: fmt.Sprintf("vgt%dx%d-h", pid, n), Hosts: hosts}
	if len(c.Bridge) > 15 {
		c.Bridge = fmt.Sprintf("vgt%x", uint32(pid)<<4|uint32(n&15))
		c.Prefix = c.Bridge + "-h"
	}
	used := usedNets()
	h := fnv.New32a()
	fmt.Fprintf(h, "%d/%d", pid, n)
	start := h.Sum32() % (64 * 256)
	for k := uint32(0); k < 64*256; k++ {
		x := (start + k) % (64 * 256)
		s := fmt.Sprintf("10.%d.%d.0/24", 64+x/256, x%256)
		if !used[s] {
			c.Subnet = s
			return c
		}
	}
	t.Fatal("gridtest: no free /24 in 10.64.0.0/10")
	return c
}

// usedNets are the /24s of the root namespace's IPv4 addresses.
func usedNets() map[string]bool {
	out := map[string]bool{}
	addrs, err := netlink.AddrList(nil, netlink.FAMILY_V4)
	if err != nil {
		return out
	}
	for _, a := range addrs {
		ip := a.IP.To4()
		if ip == nil {
			continue
		}
		out[(&net.IPNet{IP: ip.Mask(net.CIDRMask(24, 32)), Mask: net.CIDRMask(24, 32)}).String()] = true
	}
	return out
}

// Start runs `vgrid up --hosts N` in a temp data directory and waits until
// its N nodes are ready. Everything is removed at t's cleanup.
func Start(t testing.TB, o Options) *Grid {
	t.Helper()
	Require(t)
	if o.Hosts == 0 {
		o.Hosts = 3
	}
	if o.ReadyWithin == 0 {
		o.ReadyWithin = 90 * time.Second
	}
	bin := Bin(t)
	nc := Names(t, o.Hosts)
	dataDir := t.TempDir()
	g := &Grid{t: t, Bin: bin, DataDir: dataDir, Config: filepath.Join(dataDir, "client.json"), Net: nc,
		logPath: filepath.Join(dataDir, "vgrid-up.log")}
	args := []string{"up", "--hosts", fmt.Sprint(o.Hosts), "--data-dir", dataDir, "--listen", "127.0.0.1:0", "--write-config=false",
		"--grid-bridge", nc.Bridge, "--grid-subnet", nc.Subnet, "--grid-prefix", nc.Prefix}
	for _, im := range o.Images {
		args = append(args, "--image", im)
	}
	if o.Policy != "" {
		p := filepath.Join(dataDir, "policy.yaml")
		if err := os.WriteFile(p, []byte(o.Policy), 0o644); err != nil {
			t.Fatal(err)
		}
		args = append(args, "--policy", p)
	}
	args = append(args, o.ExtraArgs...)
	for i := 1; i <= o.Hosts; i++ {
		name := netgrid.NodeName("host", i)
		g.Hosts = append(g.Hosts, &Host{Index: i, Name: name, Namespace: nc.Namespace(i), Address: nc.HostIP(i).String(),
			DataDir: netgrid.HostDir(dataDir, name), g: g})
	}
	t.Cleanup(g.cleanup)
	g.args, g.within = args, o.ReadyWithin
	g.Up()
	return g
}

// Running reports whether the vgrid up process runs.
func (g *Grid) Running() bool {
	if g.done == nil {
		return false
	}
	select {
	case <-g.done:
		return false
	default:
		return true
	}
}

// Up starts vgrid up again (after Stop, or a `vgrid down`) with the same
// flags and data directory, and waits until the hosts are ready.
func (g *Grid) Up() {
	t := g.t
	t.Helper()
	if g.Running() {
		return
	}
	g.start(g.args)
	n := len(g.Hosts)
	deadline := time.Now().Add(g.within)
	for {
		select {
		case <-g.done:
			t.Fatalf("vgrid up --hosts %d exited: %v; log:\n%s", n, g.cmd.ProcessState, g.Log())
		default:
		}
		if cl := g.clientOrNil(); cl != nil {
			if nodes, err := cl.Nodes(context.Background()); err == nil {
				ready := 0
				for _, n := range nodes {
					if n.Ready {
						ready++
					}
				}
				if ready >= n {
					g.Client = cl
					return
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("vgrid up --hosts %d: not %d ready nodes within %s; log:\n%s", n, n, g.within, g.Log())
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func (g *Grid) start(args []string) {
	g.t.Helper()
	lf, err := os.OpenFile(g.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		g.t.Fatal(err)
	}
	defer lf.Close()
	g.cmd = exec.Command(g.Bin, args...)
	g.cmd.Stdout, g.cmd.Stderr = lf, lf
	g.cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := g.cmd.Start(); err != nil {
		g.t.Fatal(err)
	}
	g.done = make(chan struct{})
	go func() { _ = g.cmd.Wait(); close(g.done) }()
}

func (g *Grid) clientOrNil() *client.Client {
	cfg, err := client.LoadConfigFile(g.Config)
	if err != nil || cfg.Token == "" {
		return nil
	}
	cl, err := client.New(cfg)
	if err != nil {
		return nil
	}
	return cl
}

// Log is vgrid up's output so far.
func (g *Grid) Log() string {
	b, _ := os.ReadFile(g.logPath)
	if len(b) > 8000 {
		b = b[len(b)-8000:]
	}
	return string(b)
}

// AgentLog is the end of host h's agent.log.
func (h *Host) AgentLog() string {
	b, _ := os.ReadFile(filepath.Join(h.DataDir, "agent.log"))
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

// CLI runs a vgrid client command against the grid.
func (g *Grid) CLI(args ...string) (string, error) {
	cmd := exec.Command(g.Bin, append([]string{"--config", g.Config}, args...)...)
	cmd.Env = append(os.Environ(), "VGRID_ADDR=", "VGRID_TOKEN=")
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// CLIOut runs a vgrid client command against the grid and returns its
// standard output and standard error apart (progress goes to the latter).
func (g *Grid) CLIOut(args ...string) (stdout, stderr string, err error) {
	cmd := exec.Command(g.Bin, append([]string{"--config", g.Config}, args...)...)
	cmd.Env = append(os.Environ(), "VGRID_ADDR=", "VGRID_TOKEN=")
	var o, e strings.Builder
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	return o.String(), e.String(), err
}

// Stop stops vgrid up (SIGTERM; it stops its agents), as `vgrid down`
// does. Guests keep running.
func (g *Grid) Stop() {
	if !g.Running() {
		return
	}
	_ = g.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-g.done:
	case <-time.After(40 * time.Second):
		_ = g.cmd.Process.Signal(syscall.SIGKILL)
		<-g.done
	}
}

// PID is the agent's PID (from its pid file; 0 if none).
func (h *Host) PID() int { return netgrid.ReadAgentPID(h.DataDir) }

// Kill sends SIGKILL to the host's agent (vgrid up starts it again after
// a backoff); its guests keep running.
func (h *Host) Kill() error {
	pid := h.PID()
	if pid <= 0 {
		return fmt.Errorf("host %s: no agent pid", h.Name)
	}
	return syscall.Kill(pid, syscall.SIGKILL)
}

// Restart stops the agent (SIGTERM) and waits (up to 30 s) until vgrid
// up has started a new one.
func (h *Host) Restart() error {
	old := h.PID()
	if old <= 0 {
		return fmt.Errorf("host %s: no agent pid", h.Name)
	}
	if err := syscall.Kill(old, syscall.SIGTERM); err != nil {
		return err
	}
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if p := h.PID(); p > 0 && p != old {
			return nil
		}
	}
	return fmt.Errorf("host %s: no new agent within 30s", h.Name)
}

// Freeze stops (SIGSTOP) every process of the host's namespace: the agent
// and its QEMU guests.
// It returns once every one of them is stopped (a signal is delivered
// when its process next runs), or after 5 s with an error.
func (h *Host) Freeze() error {
	pids, err := netgrid.Signal(h.Namespace, syscall.SIGSTOP)
	if err != nil {
		return err
	}
	deadline := time.Now().Add(5 * time.Second)
	for _, p := range pids {
		for {
			st := procState(p)
			if st == "T" || st == "t" || st == "" || st == "Z" {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("freeze %s: pid %d still in state %s", h.Name, p, st)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	return nil
}

// procState is the state letter of /proc/<pid>/stat ("" if it is gone).
func procState(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ""
	}
	s := string(b)
	if i := strings.LastIndexByte(s, ')'); i > 0 && i+2 < len(s) {
		return s[i+2 : i+3]
	}
	return ""
}

// Thaw continues (SIGCONT) them.
func (h *Host) Thaw() error { _, err := netgrid.Signal(h.Namespace, syscall.SIGCONT); return err }

// PIDs lists the processes in the host's namespace.
func (h *Host) PIDs() []int { p, _ := netgrid.PIDs(h.Namespace); return p }

// InNamespace reports whether pid runs in the host's namespace.
func (h *Host) InNamespace(pid int) (bool, error) {
	var a, b unix.Stat_t
	if err := unix.Stat(netgrid.NamespacePath(h.Namespace), &a); err != nil {
		return false, err
	}
	if err := unix.Stat(fmt.Sprintf("/proc/%d/ns/net", pid), &b); err != nil {
		return false, err
	}
	return a.Ino == b.Ino && a.Dev == b.Dev, nil
}

// cleanup deletes the workspaces, stops vgrid up, kills whatever is left
// in the namespaces (guests, agents) and removes the namespaces and the
// bridge.
func (g *Grid) cleanup() {
	t := g.t
	for _, ns := range netgrid.Namespaces(g.Net.Prefix) {
		_, _ = netgrid.Signal(ns, syscall.SIGCONT)
	}
	if cl := g.clientOrNil(); cl != nil && g.done != nil {
		select {
		case <-g.done:
		default:
			// (vgrid up runs: its agents delete the guests.)
			ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
			if list, err := cl.ListWorkspaces(ctx); err == nil {
				for _, w := range list {
					_ = cl.DeleteWorkspace(ctx, w.Spec.Name)
				}
				for ctx.Err() == nil {
					if l, err := cl.ListWorkspaces(ctx); err != nil || len(l) == 0 {
						break
					}
					time.Sleep(200 * time.Millisecond)
				}
			}
			cancel()
		}
	}
	g.Stop()
	var left []string
	for _, ns := range netgrid.Namespaces(g.Net.Prefix) {
		for i := 0; i < 100; i++ {
			pids, err := netgrid.Signal(ns, syscall.SIGKILL)
			if err != nil && !errors.Is(err, os.ErrNotExist) || len(pids) == 0 {
				break
			}
			if i == 0 {
				left = append(left, fmt.Sprintf("%s: %v", ns, pids))
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	if len(left) > 0 {
		t.Logf("gridtest: killed processes left in the namespaces: %s", strings.Join(left, "; "))
	}
	if err := netgrid.Teardown(g.Net); err != nil {
		t.Errorf("gridtest: %v", err)
	}
}
