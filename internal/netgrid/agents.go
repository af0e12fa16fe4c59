package netgrid

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"vgrid/internal/agent"
	"vgrid/internal/model"
)

// GridConfig says how to run the grid's agents.
type GridConfig struct {
	Net Config
	// Binary is the vgrid executable (default: this one).
	Binary string
	// Server is the control plane URL as the namespaces reach it
	// (https://<bridge IP>:<port>); CAFile its CA certificate; JoinTokenFile
	// a join token (needed only by agents that never registered).
	Server, CAFile, JoinTokenFile string
	// DataDir: host <name> keeps its files in DataDir/hosts/<name>.
	DataDir string
	// NodePrefix names the nodes <NodePrefix><i> (default "host").
	NodePrefix string
	// Share is each host's capacity; zero fields get DefaultShare's.
	Share model.Resources
	// Accel is passed to the agents (auto, kvm, tcg; default auto).
	Accel string
	// Labels are added to every host (besides grid-host=<i>).
	Labels map[string]string
	// ExtraArgs are more `vgrid agent` flags.
	ExtraArgs []string
	Logger    *slog.Logger
	// Backoff bounds the wait before restarting an agent that exited
	// (doubling from MinBackoff; defaults 500ms and 30s).
	MinBackoff, MaxBackoff time.Duration
}

// HostDir is host name's data directory under dataDir.
func HostDir(dataDir, name string) string { return filepath.Join(dataDir, "hosts", name) }

// AgentPIDFile is where the grid writes the PID of host dir's agent.
func AgentPIDFile(hostDir string) string { return filepath.Join(hostDir, "agent.pid") }

// NodeName is host i's node name.
func NodeName(prefix string, i int) string {
	if prefix == "" {
		prefix = "host"
	}
	return prefix + strconv.Itoa(i)
}

// Grid is a running set of agents, one per namespace.
type Grid struct {
	cfg   GridConfig
	hosts []*Agent
	log   *slog.Logger
	wg    sync.WaitGroup
}

// Agent is one host of a running grid: its agent process, supervised.
type Agent struct {
	Index     int
	Name      string // node name
	Namespace string
	Address   string
	DataDir   string
	Capacity  model.Resources

	g       *Grid
	mu      sync.Mutex
	cmd     *exec.Cmd
	pid     int
	stopped bool          // Stop was called: no more restarts
	wake    chan struct{} // ends a backoff wait early (Restart)
	exited  chan struct{} // closed when the supervisor ends
	started time.Time
}

// StartGrid starts one agent per host of cfg.Net (Setup must have made
// them), after stopping agents a previous grid on the same data directory
// left running. The agents run until ctx ends or Stop.
func StartGrid(ctx context.Context, cfg GridConfig) (*Grid, error) {
	cfg.Net = cfg.Net.WithDefaults()
	if cfg.Binary == "" {
		self, err := os.Executable()
		if err != nil {
			return nil, err
		}
		cfg.Binary = self
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.MinBackoff == 0 {
		cfg.MinBackoff = 500 * time.Millisecond
	}
	if cfg.MaxBackoff == 0 {
		cfg.MaxBackoff = 30 * time.Second
	}
	if cfg.Accel == "" {
		cfg.Accel = "auto"
	}
	if err := os.MkdirAll(filepath.Join(cfg.DataDir, "hosts"), 0o700); err != nil {
		return nil, err
	}
	share, err := DefaultShare(cfg.Net.Hosts, cfg.DataDir)
	if err != nil {
		return nil, err
	}
	if cfg.Share.MilliCPU != 0 {
		share.MilliCPU = cfg.Share.MilliCPU
	}
	if cfg.Share.Memory != 0 {
		share.Memory = cfg.Share.Memory
	}
	if cfg.Share.Disk != 0 {
		share.Disk = cfg.Share.Disk
	}
	g := &Grid{cfg: cfg, log: cfg.Logger}
	for _, h := range cfg.Net.HostList() {
		name := NodeName(cfg.NodePrefix, h.Index)
		a := &Agent{Index: h.Index, Name: name, Namespace: h.Namespace, Address: h.Address.String(),
			DataDir: HostDir(cfg.DataDir, name), Capacity: share, g: g, wake: make(chan struct{}, 1), exited: make(chan struct{})}
		if err := os.MkdirAll(a.DataDir, 0o700); err != nil {
			return nil, err
		}
		StopStaleAgent(a.DataDir, 10*time.Second)
		g.hosts = append(g.hosts, a)
	}
	for _, a := range g.hosts {
		if err := a.start(); err != nil {
			g.Stop()
			return nil, fmt.Errorf("host %s: %w", a.Name, err)
		}
		g.wg.Add(1)
		go a.supervise(ctx)
	}
	go func() {
		<-ctx.Done()
		g.Stop()
	}()
	return g, nil
}

// Hosts are the grid's hosts, by index.
func (g *Grid) Hosts() []*Agent { return g.hosts }

// Stop stops every agent (SIGTERM, SIGKILL after 15 s) and waits for the
// supervisors. Guests keep running in their namespaces.
func (g *Grid) Stop() {
	var wg sync.WaitGroup
	for _, a := range g.hosts {
		wg.Add(1)
		go func() { defer wg.Done(); _ = a.Stop() }()
	}
	wg.Wait()
	g.wg.Wait()
}

// Wait waits until every supervisor has ended (after Stop, or ctx).
func (g *Grid) Wait() { g.wg.Wait() }

// TransferPort is where each grid host's agent serves the files of
// workspaces moving to other hosts.
const TransferPort = 7444

// args is the agent's command line.
func (a *Agent) args() []string {
	c := a.g.cfg
	args := []string{"agent",
		"--server", c.Server, "--join-token-file", c.JoinTokenFile, "--ca", c.CAFile,
		"--data-dir", a.DataDir, "--node-name", a.Name, "--accel", c.Accel,
		"--address", a.Address,
		"--cpus", strconv.FormatInt(a.Capacity.MilliCPU, 10) + "m",
		"--memory", strconv.FormatInt(int64(a.Capacity.Memory), 10),
		"--disk", strconv.FormatInt(int64(a.Capacity.Disk), 10),
		"--label", "grid-host=" + strconv.Itoa(a.Index),
		// Workspaces move between the grid's hosts over this.
		"--transfer-listen", net.JoinHostPort(a.Address, strconv.Itoa(TransferPort)),
		// Its guests' cgroups apart from the other hosts' on this machine
		// (a workspace may have a guest on two of them: one frozen on a
		// lost host, one restarted elsewhere).
		"--cgroup-parent", "vgrid/" + a.Name,
	}
	for k, v := range c.Labels {
		args = append(args, "--label", k+"="+v)
	}
	return append(args, c.ExtraArgs...)
}

// start forks the agent inside its namespace.
func (a *Agent) start() error {
	lf, err := os.OpenFile(filepath.Join(a.DataDir, "agent.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer lf.Close()
	cmd := exec.Command(a.g.cfg.Binary, a.args()...)
	cmd.Stdout, cmd.Stderr = lf, lf
	cmd.Dir = a.DataDir
	// A session of its own: a terminal's Ctrl-C reaches vgrid up, which
	// stops the agents in order.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	fmt.Fprintf(lf, "--- %s: starting agent %s in namespace %s\n", time.Now().Format(time.RFC3339), a.Name, a.Namespace)
	if err := InNamespace(a.Namespace, cmd.Start); err != nil {
		return err
	}
	a.mu.Lock()
	a.cmd, a.pid, a.started = cmd, cmd.Process.Pid, time.Now()
	a.mu.Unlock()
	if err := os.WriteFile(AgentPIDFile(a.DataDir), []byte(strconv.Itoa(cmd.Process.Pid)+"\n"), 0o644); err != nil {
		a.g.log.Warn("write agent pid file", "host", a.Name, "err", err)
	}
	a.g.log.Info("grid agent started", "host", a.Name, "namespace", a.Namespace, "pid", cmd.Process.Pid)
	return nil
}

// supervise waits for the agent and starts it again when it exits, with a
// doubling backoff reset by a minute of running.
func (a *Agent) supervise(ctx context.Context) {
	defer a.g.wg.Done()
	defer close(a.exited)
	backoff := a.g.cfg.MinBackoff
	for {
		a.mu.Lock()
		cmd := a.cmd
		a.mu.Unlock()
		if cmd != nil {
			err := cmd.Wait()
			a.mu.Lock()
			a.pid, a.cmd = 0, nil
			stopped, ran := a.stopped, time.Since(a.started)
			a.mu.Unlock()
			if stopped || ctx.Err() != nil {
				_ = os.Remove(AgentPIDFile(a.DataDir))
				return
			}
			if ran > time.Minute {
				backoff = a.g.cfg.MinBackoff
			}
			a.g.log.Warn("grid agent exited; restarting", "host", a.Name, "err", exitText(err), "after", backoff)
		}
		select {
		case <-ctx.Done():
			return
		case <-a.wake:
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, a.g.cfg.MaxBackoff)
		a.mu.Lock()
		if a.stopped {
			a.mu.Unlock()
			return
		}
		a.mu.Unlock()
		if err := a.start(); err != nil {
			a.g.log.Error("grid agent did not start", "host", a.Name, "err", err)
		}
	}
}

func exitText(err error) string {
	if err == nil {
		return "exit status 0"
	}
	return err.Error()
}

// PID is the agent's PID (0 while it is not running).
func (a *Agent) PID() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.pid
}

// signal sends sig to the agent.
func (a *Agent) signal(sig syscall.Signal) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.cmd == nil || a.cmd.Process == nil {
		return fmt.Errorf("host %s: agent not running", a.Name)
	}
	return a.cmd.Process.Signal(sig)
}

// Stop stops the agent for good (SIGTERM; SIGKILL after 15 s) and waits
// for it. Its guests keep running.
func (a *Agent) Stop() error {
	a.mu.Lock()
	a.stopped = true
	a.mu.Unlock()
	_ = Thaw(a) // a frozen agent cannot act on SIGTERM
	_ = a.signal(syscall.SIGTERM)
	select {
	case <-a.exited:
	case <-time.After(15 * time.Second):
		_ = a.signal(syscall.SIGKILL)
		<-a.exited
	}
	return nil
}

// Kill sends SIGKILL to the agent (not its guests); the grid starts it
// again after the backoff.
func (a *Agent) Kill() error { return a.signal(syscall.SIGKILL) }

// Restart stops the agent (SIGTERM) and starts it again at once.
func (a *Agent) Restart() error {
	_ = a.signal(syscall.SIGCONT)
	if err := a.signal(syscall.SIGTERM); err != nil {
		return err
	}
	select {
	case a.wake <- struct{}{}:
	default:
	}
	return nil
}

// Freeze stops (SIGSTOP) the agent and every process of its namespace:
// its QEMU guests included. The host looks dead to the control plane.
func (a *Agent) Freeze() error {
	_, err := Signal(a.Namespace, syscall.SIGSTOP)
	return err
}

// Thaw continues (SIGCONT) what Freeze stopped.
func (a *Agent) Thaw() error { return Thaw(a) }

// Thaw continues every process of a's namespace.
func Thaw(a *Agent) error {
	_, err := Signal(a.Namespace, syscall.SIGCONT)
	return err
}

// StopStaleAgent stops an agent that a grid which died (kill -9) left
// running on hostDir: the PID in its pid file, if that process is a
// `vgrid agent` with this data directory. SIGTERM, SIGKILL after wait.
func StopStaleAgent(hostDir string, wait time.Duration) {
	pid := ReadAgentPID(hostDir)
	if pid <= 0 || !isAgentOf(pid, hostDir) {
		return
	}
	_ = syscall.Kill(pid, syscall.SIGCONT)
	_ = syscall.Kill(pid, syscall.SIGTERM)
	deadline := time.Now().Add(wait)
	for time.Now().Before(deadline) {
		if !alive(pid) {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	_ = syscall.Kill(pid, syscall.SIGKILL)
	for i := 0; i < 100 && alive(pid); i++ {
		time.Sleep(20 * time.Millisecond)
	}
}

// ReadAgentPID is the PID in hostDir's agent.pid (0 if none).
func ReadAgentPID(hostDir string) int {
	b, err := os.ReadFile(AgentPIDFile(hostDir))
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return pid
}

// isAgentOf reports whether pid runs `vgrid agent … --data-dir hostDir`.
func isAgentOf(pid int, hostDir string) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	if err != nil {
		return false
	}
	args := strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
	isAgent, dir := false, false
	for i, a := range args {
		if a == "agent" {
			isAgent = true
		}
		if a == "--data-dir" && i+1 < len(args) && args[i+1] == hostDir {
			dir = true
		}
	}
	return isAgent && dir && alive(pid)
}

// alive: the process exists and is not a zombie.
func alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i > 0 && i+2 < len(s) && s[i+2] != 'Z'
}

// DefaultShare is each of n hosts' share of this machine: CPUs/n (at
// least one core each, so with more hosts than cores the grid offers more
// CPU than there is: an overcommit that the guests' CPU caps bound),
// (MemTotal − 1 GiB kept for the machine)/n, and the free space under
// dataDir/n.
func DefaultShare(n int, dataDir string) (model.Resources, error) {
	if n < 1 {
		n = 1
	}
	var r model.Resources
	r.MilliCPU = max(1000, int64(runtime.NumCPU())*1000/int64(n))
	total, err := agent.MemTotal()
	if err != nil {
		return r, err
	}
	r.Memory = max(total-model.GiB, total/2) / model.ByteSize(n)
	var st unix.Statfs_t
	if err := unix.Statfs(dataDir, &st); err != nil {
		return r, fmt.Errorf("statfs %s: %w", dataDir, err)
	}
	r.Disk = model.ByteSize(st.Bavail) * model.ByteSize(st.Bsize) / model.ByteSize(n)
	return r, nil
}
