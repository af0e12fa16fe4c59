package etcdtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Options tune the servers StartCluster starts. Zero values are defaults.
type Options struct {
	// Binary is the etcd executable (default: Binary()).
	Binary string
	// HeartbeatMs and ElectionMs are etcd's --heartbeat-interval and
	// --election-timeout (defaults 50 and 500: failover within about a
	// second).
	HeartbeatMs, ElectionMs int
	// StartTimeout bounds the wait for the cluster, or a restarted
	// member, to be healthy (default 30s).
	StartTimeout time.Duration
	// ExtraArgs are appended to every member's command line.
	ExtraArgs []string
	// CertFile and KeyFile, if set, make the client URLs https:// with
	// this server certificate (for 127.0.0.1); ClientCAFile then also
	// requires client certificates signed by that CA. Peers stay plain.
	CertFile, KeyFile, ClientCAFile string
}

// Binary returns the etcd executable: /usr/bin/etcd, else etcd in PATH,
// else an error.
func Binary() (string, error) {
	if fi, err := os.Stat("/usr/bin/etcd"); err == nil && !fi.IsDir() {
		return "/usr/bin/etcd", nil
	}
	p, err := exec.LookPath("etcd")
	if err != nil {
		return "", fmt.Errorf("no etcd executable at /usr/bin/etcd nor in PATH: %w", err)
	}
	return p, nil
}

// Cluster is a set of etcd servers on loopback, each a child process
// with its data directory and log file under the cluster's directory.
type Cluster struct {
	dir     string
	opts    Options
	members []*member
}

type member struct {
	name          string
	clientURL     string
	peerURL       string
	healthURL     string // plain HTTP, also with TLS clients
	dataDir, logf string
	args          []string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has exited
}

// StartCluster starts an n-member cluster with data directories under dir
// and waits until every member is healthy (its cluster has a leader and
// answers). On error nothing is left running.
func StartCluster(dir string, n int, opts Options) (*Cluster, error) {
	if n < 1 {
		return nil, fmt.Errorf("etcdtest: %d members: want at least 1", n)
	}
	if opts.Binary == "" {
		bin, err := Binary()
		if err != nil {
			return nil, fmt.Errorf("etcdtest: %w", err)
		}
		opts.Binary = bin
	}
	if opts.HeartbeatMs <= 0 {
		opts.HeartbeatMs = 50
	}
	if opts.ElectionMs <= 0 {
		opts.ElectionMs = 500
	}
	if opts.StartTimeout <= 0 {
		opts.StartTimeout = 30 * time.Second
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("etcdtest: %w", err)
	}
	if (opts.CertFile == "") != (opts.KeyFile == "") || (opts.ClientCAFile != "" && opts.CertFile == "") {
		return nil, errors.New("etcdtest: Options.CertFile and KeyFile go together, and ClientCAFile needs them")
	}
	scheme := "http"
	if opts.CertFile != "" {
		scheme = "https"
	}
	ports, err := freePorts(3 * n)
	if err != nil {
		return nil, fmt.Errorf("etcdtest: free ports: %w", err)
	}
	c := &Cluster{dir: dir, opts: opts}
	var initial []string
	for i := range n {
		m := &member{
			name:      "m" + strconv.Itoa(i),
			clientURL: scheme + "://127.0.0.1:" + strconv.Itoa(ports[3*i]),
			peerURL:   "http://127.0.0.1:" + strconv.Itoa(ports[3*i+1]),
			healthURL: "http://127.0.0.1:" + strconv.Itoa(ports[3*i+2]) + "/health",
		}
		m.dataDir = filepath.Join(dir, m.name+".etcd")
		m.logf = filepath.Join(dir, m.name+".log")
		c.members = append(c.members, m)
		initial = append(initial, m.name+"="+m.peerURL)
	}
	// A token of its own, so that members of another test's cluster on a
	// reused port never join this one.
	token := fmt.Sprintf("vgrid-test-%d-%d", os.Getpid(), time.Now().UnixNano())
	for _, m := range c.members {
		m.args = append([]string{
			"--name", m.name,
			"--data-dir", m.dataDir,
			"--listen-client-urls", m.clientURL,
			"--advertise-client-urls", m.clientURL,
			"--listen-peer-urls", m.peerURL,
			"--listen-metrics-urls", strings.TrimSuffix(m.healthURL, "/health"),
			"--initial-advertise-peer-urls", m.peerURL,
			"--initial-cluster", strings.Join(initial, ","),
			"--initial-cluster-state", "new",
			"--initial-cluster-token", token,
			"--heartbeat-interval", strconv.Itoa(opts.HeartbeatMs),
			"--election-timeout", strconv.Itoa(opts.ElectionMs),
			"--logger", "zap",
			"--log-outputs", "stderr",
		}, opts.ExtraArgs...)
		if opts.CertFile != "" {
			m.args = append(m.args, "--cert-file", opts.CertFile, "--key-file", opts.KeyFile)
		}
		if opts.ClientCAFile != "" {
			m.args = append(m.args, "--client-cert-auth", "--trusted-ca-file", opts.ClientCAFile)
		}
		if err := c.start(m); err != nil {
			c.Stop()
			return nil, err
		}
	}
	deadline := time.Now().Add(opts.StartTimeout)
	for i := range c.members {
		if err := c.waitHealthy(i, deadline); err != nil {
			c.Stop()
			return nil, err
		}
	}
	return c, nil
}

// freePorts finds n distinct free TCP ports on loopback. Another process
// may take one before etcd binds it; etcd then fails and says so in its
// log, which StartCluster's error shows.
func freePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			_ = l.Close()
		}
	}()
	ports := make([]int, n)
	for i := range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		ports[i] = l.Addr().(*net.TCPAddr).Port
	}
	return ports, nil
}

// start starts m's process, appending its output to its log file.
func (c *Cluster) start(m *member) error {
	logf, err := os.OpenFile(m.logf, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("etcdtest: member %s: %w", m.name, err)
	}
	cmd := exec.Command(c.opts.Binary, m.args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	// The servers die with the process that started them, even if it
	// never calls Stop.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		_ = logf.Close()
		return fmt.Errorf("etcdtest: start member %s (%s): %w", m.name, c.opts.Binary, err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		_ = logf.Close()
		close(done)
	}()
	m.mu.Lock()
	m.cmd, m.done = cmd, done
	m.mu.Unlock()
	return nil
}

// waitHealthy polls member i's /health (on its plain metrics listener) until it says true, the member
// exits, or deadline passes.
func (c *Cluster) waitHealthy(i int, deadline time.Time) error {
	m := c.members[i]
	m.mu.Lock()
	done := m.done
	m.mu.Unlock()
	client := &http.Client{Timeout: time.Second}
	var last string
	for {
		select {
		case <-done:
			return fmt.Errorf("etcdtest: member %s exited while starting; its log ends:\n%s", m.name, tail(m.logf))
		default:
		}
		resp, err := client.Get(m.healthURL)
		if err == nil {
			var body bytes.Buffer
			_, _ = body.ReadFrom(resp.Body)
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK && strings.Contains(body.String(), `"health":"true"`) {
				return nil
			}
			last = fmt.Sprintf("%s: %s", resp.Status, strings.TrimSpace(body.String()))
		} else {
			last = err.Error()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("etcdtest: member %s not healthy within %v (last answer: %s); its log ends:\n%s",
				m.name, c.opts.StartTimeout, last, tail(m.logf))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// tail returns the last lines of a log file.
func tail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > 20 {
		lines = lines[len(lines)-20:]
	}
	return strings.Join(lines, "\n")
}

// Endpoints returns the members' client URLs, in member order.
func (c *Cluster) Endpoints() []string {
	eps := make([]string, len(c.members))
	for i, m := range c.members {
		eps[i] = m.clientURL
	}
	return eps
}

// Size returns the number of members.
func (c *Cluster) Size() int { return len(c.members) }

// Log returns the tail of member i's log.
func (c *Cluster) Log(i int) string { return tail(c.members[i].logf) }

// Kill kills member i with SIGKILL and waits for it to exit. Killing a
// dead member does nothing.
func (c *Cluster) Kill(i int) error {
	if i < 0 || i >= len(c.members) {
		return fmt.Errorf("etcdtest: member %d of %d", i, len(c.members))
	}
	m := c.members[i]
	m.mu.Lock()
	cmd, done := m.cmd, m.done
	m.mu.Unlock()
	if cmd == nil {
		return nil
	}
	select {
	case <-done:
		return nil
	default:
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("etcdtest: kill member %s: %w", m.name, err)
	}
	select {
	case <-done:
		return nil
	case <-time.After(10 * time.Second):
		return fmt.Errorf("etcdtest: member %s (pid %d) still running 10s after SIGKILL", m.name, cmd.Process.Pid)
	}
}

// Restart starts a killed member i again on its data directory and
// waits until it is healthy (back in the cluster). A running member is
// killed first.
func (c *Cluster) Restart(i int) error {
	if err := c.Kill(i); err != nil {
		return err
	}
	if err := c.start(c.members[i]); err != nil {
		return err
	}
	return c.waitHealthy(i, time.Now().Add(c.opts.StartTimeout))
}

// Stop kills every member and removes their data directories and logs.
func (c *Cluster) Stop() {
	for i := range c.members {
		_ = c.Kill(i)
	}
	for _, m := range c.members {
		_ = os.RemoveAll(m.dataDir)
		_ = os.Remove(m.logf)
	}
}

// WaitHealthy waits, within ctx, until member i answers as healthy.
func (c *Cluster) WaitHealthy(ctx context.Context, i int) error {
	deadline := time.Now().Add(c.opts.StartTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	return c.waitHealthy(i, deadline)
}
