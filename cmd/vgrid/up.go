package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"vgrid/internal/agent"
	"vgrid/internal/client"
	"vgrid/internal/controlplane"
	"vgrid/internal/hypervisor/qemu"
	"vgrid/internal/metrics"
	"vgrid/internal/model"
	"vgrid/internal/policyfile"
)

// defaultDataDir is $VGRID_DATA_DIR, else /var/lib/vgrid for root, else
// ~/.local/share/vgrid.
func defaultDataDir() string {
	if d := os.Getenv("VGRID_DATA_DIR"); d != "" {
		return d
	}
	if os.Geteuid() == 0 {
		return "/var/lib/vgrid"
	}
	home, _ := os.UserHomeDir()
	return filepath.Join(home, ".local", "share", "vgrid")
}

const defaultListen = "127.0.0.1:7443"

type upOptions struct {
	dataDir, listen, accel, nodeName, policy string
	images                                   []string
	detach                                   bool
	writeConfig                              bool
	labels                                   map[string]string
	usageEvery                               time.Duration
	imageCacheSize                           string // --image-cache-size
	storageListen                            string // --storage-listen
	site                                     siteLimits
	grid                                     gridFlags // --hosts N: a namespace grid (grid.go)
}

func newUpCmd() *cobra.Command {
	o := &upOptions{}
	c := &cobra.Command{
		Use:   "up",
		Short: "Run everything on this machine: control plane, embedded store and a local agent",
		Long: `Run the control plane with its embedded store and a host agent for this
machine, in one process. The agent talks to the control plane over the same
HTTPS API that agents on other hosts use.

On first start it creates a CA, an admin token and a client config
(<data-dir>/client.json, copied to the default client config path) so the
CLI works with no flags. Images found in <data-dir>/images/*/image.json are
registered at start. Workspaces keep running when vgrid up stops, and are
adopted again when it starts.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if _, err := parseImageCacheSize(o.imageCacheSize); err != nil {
				return err
			}
			if o.detach {
				return detach(cmd.Context(), o)
			}
			return runUp(cmd.Context(), o)
		},
	}
	f := c.Flags()
	f.StringVar(&o.dataDir, "data-dir", defaultDataDir(), "where the store, certificates, images and workspace disks live")
	f.StringVar(&o.listen, "listen", defaultListen, "HTTPS listen address of the API")
	f.StringVar(&o.accel, "accel", "auto", "guest acceleration: auto (KVM only with hardware virtualization), kvm or tcg")
	f.StringVar(&o.nodeName, "node-name", "", "name of this host (default: the host name)")
	f.StringArrayVar(&o.images, "image", nil, "also register the image built in this directory (repeatable)")
	f.StringToStringVar(&o.labels, "label", nil, "host labels, key=value (repeatable)")
	f.BoolVarP(&o.detach, "detach", "d", false, "run in the background (log in <data-dir>/vgrid.log) and return when ready")
	f.StringVar(&o.policy, "policy", "", "lease calendar policy file (YAML: backfill, placement, suspend, fair_share, quotas; see docs/cli.md)")
	f.BoolVar(&o.writeConfig, "write-config", true, "write the client config to the default client config path too")
	f.DurationVar(&o.usageEvery, "usage-every", 10*time.Second, "how often the local agent reports a running workspace's CPU time")
	f.StringVar(&o.imageCacheSize, "image-cache-size", "0", imageCacheSizeUsage)
	f.StringVar(&o.storageListen, "storage-listen", "auto", "IP:port where the local agent serves network volumes (qemu-storage-daemon, NBD over TLS); auto: 127.0.0.1:10809; off: it stores none")
	o.site.register(f)
	o.grid.register(f)
	registerLogFormat(f)
	return c
}

func newLogger() *slog.Logger {
	return slog.New(logHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo})) // --log-format
}

// runUp is the all-in-one process.
func runUp(ctx context.Context, o *upOptions) error {
	log := newLogger()
	policy, err := policyfile.Load(o.policy)
	if err != nil {
		return err
	}
	if again, err := gridOfDataDir(o); err != nil {
		return err
	} else if again {
		fmt.Fprintf(os.Stderr, "vgrid up: %s ran a grid of %d hosts (grid.json): starting it again\n", o.dataDir, o.grid.hosts)
	}
	if o.grid.hosts > 0 {
		return runGrid(ctx, log, o, policy)
	}
	cp, err := controlplane.Start(ctx, log, controlplane.Config{DataDir: o.dataDir, Listen: o.listen, Policy: policy, Images: o.images, WriteConfig: o.writeConfig,
		Limits: o.site.limits(), RateLimit: o.site.rateLimit(), NodeTimeout: o.site.nodeTimeout, NodeLostAfter: o.site.nodeLost})
	if err != nil {
		return err
	}
	defer cp.Close()

	ag, stop, err := startLocalAgent(ctx, log, o, cp, "")
	if err != nil {
		return err
	}
	_ = metrics.AgentRegistry().Register(ag.MetricsCollector()) // served on the API's /metrics
	fmt.Fprintf(os.Stderr, "vgrid up: API at %s, data in %s, host %s (%s). Ctrl-C stops vgrid; workspaces keep running.\n",
		cp.URL, o.dataDir, ag.NodeName(), ag.Accel())
	err = cp.Wait(ctx)
	stop()
	return err
}

// localAgent is the agent vgrid up runs in its own process for this
// machine.
type localAgent struct {
	*agent.Agent
	accel string
}

// Accel is the acceleration its guests use.
func (l localAgent) Accel() string { return l.accel }

// startLocalAgent runs this machine's agent in this process (its guests'
// instances in <data-dir>/instances), serving transfers on transferListen
// if given; stop waits for it to end after ctx.
func startLocalAgent(ctx context.Context, log *slog.Logger, o *upOptions, cp *controlplane.ControlPlane, transferListen string) (localAgent, func(), error) {
	cacheBytes, err := parseImageCacheSize(o.imageCacheSize)
	if err != nil {
		return localAgent{}, nil, err
	}
	drv, err := qemu.New(qemu.Options{StateDir: filepath.Join(o.dataDir, "instances"), Accel: o.accel, Logger: log})
	if err != nil {
		return localAgent{}, nil, err
	}
	ag, err := agent.New(agent.Config{
		Server:          client.Config{Server: cp.URL, Token: cp.JoinToken, CACert: cp.CAPEM},
		DataDir:         filepath.Join(o.dataDir, "agent"),
		Node:            model.Node{Name: o.nodeName, Labels: o.labels, Accel: drv.Accel(), AgentVersion: version},
		Driver:          drv,
		Logger:          log,
		UsageEvery:      o.usageEvery,
		TransferListen:  transferListen,
		StorageListen:   storageListenOf(o.storageListen, "127.0.0.1"),
		ImageCacheBytes: cacheBytes,
	})
	if err != nil {
		drv.Close()
		return localAgent{}, nil, err
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); _ = ag.Run(ctx) }()
	return localAgent{ag, drv.Accel()}, func() { wg.Wait(); drv.Close() }, nil
}

func newServerCmd() *cobra.Command {
	var dataDir, listen, policy string
	var site siteLimits
	var repl replicaFlags
	writeConfig := true
	c := &cobra.Command{
		Use:   "server",
		Short: "Run the control plane only (agents on hosts join it with a join token)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			pol, err := policyfile.Load(policy)
			if err != nil {
				return err
			}
			etcdCfg, err := repl.etcd()
			if err != nil {
				return err
			}
			cp, err := controlplane.Start(ctx, newLogger(), controlplane.Config{DataDir: dataDir, Listen: listen, Policy: pol, WriteConfig: writeConfig,
				Limits: site.limits(), RateLimit: site.rateLimit(), NodeTimeout: site.nodeTimeout, NodeLostAfter: site.nodeLost,
				Etcd: etcdCfg, BlobDir: repl.blobDir})
			if err != nil {
				return err
			}
			defer cp.Close()
			fmt.Fprintf(os.Stderr, "vgrid server: API at %s; join token for agents in %s\n", cp.URL, filepath.Join(dataDir, "join.token"))
			return cp.Wait(ctx)
		},
	}
	c.Flags().StringVar(&dataDir, "data-dir", defaultDataDir(), "where the store and certificates live")
	c.Flags().StringVar(&listen, "listen", defaultListen, "HTTPS listen address")
	c.Flags().StringVar(&policy, "policy", "", "lease calendar policy file (see vgrid up --help)")
	c.Flags().BoolVar(&writeConfig, "write-config", true, "write the admin client config to the default client config path too")
	site.register(c.Flags())
	registerLogFormat(c.Flags())
	repl.register(c.Flags())
	return c
}

func newAgentCmd() *cobra.Command {
	var dataDir, srvURL, joinFile, caFile, accel, nodeName, transferListen, transferAddr, cgroupParent, imageCacheSize string
	var storageListen, metricsListen string
	var labels map[string]string
	var capFlags capacityFlags
	c := &cobra.Command{
		Use:   "agent",
		Short: "Run a host agent that joins a control plane",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			join, err := os.ReadFile(joinFile)
			if err != nil {
				return fmt.Errorf("--join-token-file: %w", err)
			}
			ca, err := os.ReadFile(caFile)
			if err != nil {
				return fmt.Errorf("--ca: %w", err)
			}
			capacity, err := capFlags.resources()
			if err != nil {
				return err
			}
			cacheBytes, err := parseImageCacheSize(imageCacheSize)
			if err != nil {
				return err
			}
			log := newLogger()
			drv, err := qemu.New(qemu.Options{StateDir: filepath.Join(dataDir, "instances"), Accel: accel, Logger: log, CgroupParent: cgroupParent})
			if err != nil {
				return err
			}
			defer drv.Close()
			ag, err := agent.New(agent.Config{
				Server:  client.Config{Server: srvURL, Token: strings.TrimSpace(string(join)), CACert: string(ca)},
				DataDir: filepath.Join(dataDir, "agent"),
				Node: model.Node{Name: nodeName, Address: capFlags.address, Labels: labels, Capacity: capacity,
					Accel: drv.Accel(), AgentVersion: version},
				Driver: drv, Logger: log,
				TransferListen: transferListen, TransferAddress: transferAddr,
				ImageCacheBytes: cacheBytes,
				StorageListen:   storageListenOf(storageListen, capFlags.address),
			})
			if err != nil {
				return err
			}
			if metricsListen != "" {
				stop, err := serveAgentMetrics(log, metricsListen, ag)
				if err != nil {
					return err
				}
				defer stop()
			}
			return ag.Run(cmd.Context())
		},
	}
	f := c.Flags()
	f.StringVar(&dataDir, "data-dir", defaultDataDir(), "where workspace disks and the image cache live")
	f.StringVar(&srvURL, "server", "https://"+defaultListen, "control plane URL")
	f.StringVar(&joinFile, "join-token-file", "", "file holding a join token (vgrid token create --role join)")
	f.StringVar(&caFile, "ca", "", "the control plane's CA certificate (<server data dir>/tls/ca.crt)")
	f.StringVar(&transferListen, "transfer-listen", "", "host:port to serve the files of workspaces moving to other hosts (mutual TLS with host certificates; empty: none, and workspaces cannot move off this host)")
	f.StringVar(&cgroupParent, "cgroup-parent", qemu.DefaultCgroupParent, "the cgroup under which each guest's group is made (agents sharing a machine, as in a namespace grid, each need their own)")
	f.StringVar(&transferAddr, "transfer-address", "", "host:port other hosts dial for those files (default: --transfer-listen, or --address with its port)")
	f.StringVar(&accel, "accel", "auto", "auto, kvm or tcg")
	f.StringVar(&nodeName, "node-name", "", "name of this host (default: the host name)")
	f.StringToStringVar(&labels, "label", nil, "host labels, key=value")
	f.StringVar(&imageCacheSize, "image-cache-size", "0", imageCacheSizeUsage)
	f.StringVar(&storageListen, "storage-listen", "auto", "IP:port where this host serves network volumes (qemu-storage-daemon, NBD over TLS); auto: --address, port 10809, when given; off: none")
	f.StringVar(&metricsListen, "metrics-listen", "", "host:port serving this agent's metrics as plain, unauthenticated HTTP GET /metrics, e.g. 127.0.0.1:9465 (empty: none)")
	registerLogFormat(f)
	capFlags.register(f)
	return c
}

const imageCacheSizeUsage = "the most the host's image cache may hold, e.g. 20Gi; the least recently used images no workspace of the host uses are evicted (0: no limit)"

// parseImageCacheSize reads --image-cache-size.
func parseImageCacheSize(s string) (int64, error) {
	n, err := model.ParseByteSize(s)
	if err != nil {
		return 0, fmt.Errorf("--image-cache-size: %w", err)
	}
	if n < 0 {
		return 0, fmt.Errorf("--image-cache-size: want 0 (no limit) or more, got %s", s)
	}
	return int64(n), nil
}

// detach starts `vgrid up` in the background and waits until its API answers.
func detach(ctx context.Context, o *upOptions) error {
	if err := os.MkdirAll(o.dataDir, 0o700); err != nil {
		return err
	}
	if _, err := gridOfDataDir(o); err != nil {
		return err
	}
	logPath := filepath.Join(o.dataDir, "vgrid.log")
	lf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer lf.Close()
	self, err := os.Executable()
	if err != nil {
		return err
	}
	args := []string{"up", "--data-dir", o.dataDir, "--listen", o.listen, "--accel", o.accel,
		"--write-config=" + strconv.FormatBool(o.writeConfig), "--usage-every", o.usageEvery.String(), "--log-format", logFormat.String()}
	args = append(args, o.site.args()...)
	if o.nodeName != "" {
		args = append(args, "--node-name", o.nodeName)
	}
	if o.imageCacheSize != "" {
		args = append(args, "--image-cache-size", o.imageCacheSize)
	}
	if o.policy != "" {
		abs, err := filepath.Abs(o.policy)
		if err != nil {
			return err
		}
		args = append(args, "--policy", abs)
	}
	for _, im := range o.images {
		args = append(args, "--image", im)
	}
	for k, v := range o.labels {
		args = append(args, "--label", k+"="+v)
	}
	args = append(args, o.grid.args()...)
	cmd := exec.Command(self, args...)
	cmd.Stdout, cmd.Stderr = lf, lf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	since := time.Now().Add(-time.Second) // (the clocks are this machine's)
	if err := cmd.Start(); err != nil {
		return err
	}
	pid := cmd.Process.Pid
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	cfgPath := filepath.Join(o.dataDir, "client.json")
	w := newWaiter(os.Stderr, "starting vgrid up")
	defer w.done()
	deadline := time.Now().Add(90 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-done:
			if why := lastError(logPath); why != "" {
				return fmt.Errorf("vgrid up exited (%v): %s\n(log: %s)", err, why, logPath)
			}
			return fmt.Errorf("vgrid up exited (%v); see %s", err, logPath)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
		cfg, err := client.LoadConfigFile(cfgPath)
		if err != nil || cfg.Token == "" {
			continue
		}
		cl, err := client.New(cfg)
		if err != nil {
			continue
		}
		nodes, err := cl.Nodes(ctx)
		if err != nil {
			w.status("waiting for the API")
			continue
		}
		if o.grid.hosts > 0 {
			if ready := readyNodes(nodes, since); len(ready) >= o.grid.hosts {
				w.done()
				fmt.Fprintf(os.Stderr, "vgrid up running in the background (pid %d): API %s, %d hosts (%s), log %s\n",
					pid, cfg.Server, len(ready), strings.Join(ready, ", "), logPath)
				return nil
			}
			w.status(fmt.Sprintf("waiting for the grid's agents to register (%d of %d ready)", len(readyNodes(nodes, since)), o.grid.hosts))
			continue
		}
		for _, n := range nodes {
			// Heard from since this start: a host record from before a
			// restart says Ready until it times out, but the calendar
			// has its capacity and labels again only from a heartbeat.
			if n.Ready && !n.LastHeartbeat.Before(since) {
				w.done()
				fmt.Fprintf(os.Stderr, "vgrid up running in the background (pid %d): API %s, host %s (%s), log %s\n",
					pid, cfg.Server, n.Name, n.Accel, logPath)
				return nil
			}
		}
		w.status("waiting for the local agent to register")
	}
	return fmt.Errorf("vgrid up did not become ready in 90s; see %s", logPath)
}

func newDownCmd() *cobra.Command {
	var dataDir string
	var destroyHosts bool
	c := &cobra.Command{
		Use:   "down",
		Short: "Stop a vgrid up running in the background (workspaces keep running)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := stopUp(dataDir); err != nil {
				return err
			}
			return downGrid(dataDir, destroyHosts)
		},
	}
	c.Flags().StringVar(&dataDir, "data-dir", defaultDataDir(), "data directory of the vgrid up to stop")
	c.Flags().BoolVar(&destroyHosts, "destroy-hosts", false, "also remove the network namespaces and bridge of a vgrid up --hosts grid (refused while guests run in them)")
	return c
}

// stopUp stops the vgrid up whose pid file is in dataDir (with its grid
// agents, which it stops itself).
func stopUp(dataDir string) error {
	b, err := os.ReadFile(filepath.Join(dataDir, "vgrid.pid"))
	if err != nil {
		if _, gerr := os.Stat(gridFilePath(dataDir)); gerr == nil {
			return nil // a grid's agents may be left over: downGrid
		}
		return fmt.Errorf("no vgrid up in %s: %w", dataDir, err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return fmt.Errorf("pid file: %w", err)
	}
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		if errors.Is(err, syscall.ESRCH) {
			fmt.Fprintln(os.Stderr, "vgrid up was not running")
			return nil
		}
		return err
	}
	// A grid's vgrid up stops its agents first (up to 15 s, in parallel).
	for i := 0; i < 300; i++ {
		if syscall.Kill(pid, 0) != nil {
			fmt.Fprintf(os.Stderr, "vgrid up (pid %d) stopped; workspaces keep running and are adopted at the next vgrid up\n", pid)
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("vgrid up (pid %d) did not stop in 30s", pid)
}

// lastError is the last "error: " line of a vgrid up log (what made it
// exit), without the prefix; "" if there is none.
func lastError(logPath string) string {
	b, err := os.ReadFile(logPath)
	if err != nil {
		return ""
	}
	if len(b) > 64<<10 {
		b = b[len(b)-64<<10:]
	}
	why := ""
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "error: "); ok {
			why = rest
		}
	}
	return why
}
