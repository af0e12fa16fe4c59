package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/pflag"

	"vgrid/api"
	"vgrid/internal/agent"
	"vgrid/internal/calendar"
	"vgrid/internal/controlplane"
	"vgrid/internal/model"
	"vgrid/internal/netgrid"
)

// gridFlags are vgrid up's flags for a grid of hosts in network
// namespaces (internal/netgrid).
type gridFlags struct {
	hosts                              int
	bridge, subnet, prefix, nodePrefix string
	hostCPUs                           float64
}

func (g *gridFlags) register(f *pflag.FlagSet) {
	f.IntVar(&g.hosts, "hosts", 0, "run a grid of N hosts, each a network namespace with its own agent (0: one local agent in this process)")
	f.StringVar(&g.bridge, "grid-bridge", netgrid.DefaultBridge, "with --hosts: the bridge joining the namespaces")
	f.StringVar(&g.subnet, "grid-subnet", netgrid.DefaultSubnet, "with --hosts: the bridge's IPv4 /24 (the bridge is .1, host i is .(10+i))")
	f.StringVar(&g.prefix, "grid-prefix", netgrid.DefaultPrefix, "with --hosts: host i's network namespace is <prefix><i>")
	f.StringVar(&g.nodePrefix, "grid-node-prefix", "host", "with --hosts: host i's node name is <prefix><i>")
	f.Float64Var(&g.hostCPUs, "grid-host-cpus", 0, "with --hosts: each host's CPU capacity in cores (0: this machine's CPUs shared out, at least 1 each)")
}

// args repeats the flags for the detached vgrid up.
func (g *gridFlags) args() []string {
	if g.hosts == 0 {
		return nil
	}
	return []string{"--hosts", strconv.Itoa(g.hosts), "--grid-bridge", g.bridge, "--grid-subnet", g.subnet,
		"--grid-prefix", g.prefix, "--grid-node-prefix", g.nodePrefix, "--grid-host-cpus", strconv.FormatFloat(g.hostCPUs, 'f', -1, 64)}
}

func (g *gridFlags) net() netgrid.Config {
	return netgrid.Config{Bridge: g.bridge, Subnet: g.subnet, Prefix: g.prefix, Hosts: g.hosts}.WithDefaults()
}

// gridFile records a grid's network in its data directory, for vgrid
// down --destroy-hosts.
type gridFile struct {
	Net        netgrid.Config `json:"net"`
	NodePrefix string         `json:"node_prefix"`
}

func gridFilePath(dataDir string) string { return filepath.Join(dataDir, "grid.json") }

// runGrid is vgrid up --hosts N: the control plane in this process,
// listening on --listen and on the bridge address, and N agents in
// namespaces.
func runGrid(ctx context.Context, log *slog.Logger, o *upOptions, policy *calendar.Policy) error {
	if o.nodeName != "" {
		return fmt.Errorf("--node-name names the local agent; with --hosts the hosts are named by --grid-node-prefix")
	}
	dataDir, err := filepath.Abs(o.dataDir)
	if err != nil {
		return err
	}
	nc := o.grid.net()
	if err := nc.Validate(); err != nil {
		return err
	}
	if os.Geteuid() != 0 {
		return fmt.Errorf("--hosts needs root (it makes network namespaces and a bridge)")
	}
	hosts, err := netgrid.Setup(nc)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return err
	}
	b, _ := json.MarshalIndent(gridFile{Net: nc, NodePrefix: o.grid.nodePrefix}, "", "  ")
	if err := os.WriteFile(gridFilePath(dataDir), append(b, '\n'), 0o644); err != nil {
		return err
	}
	// The control plane lives until the agents are stopped: they may still
	// report while they stop.
	cpCtx, cancelCP := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelCP()
	cp, err := controlplane.Start(cpCtx, log, controlplane.Config{DataDir: dataDir, Listen: o.listen, Policy: policy, Images: o.images,
		WriteConfig: o.writeConfig, Limits: o.site.limits(), RateLimit: o.site.rateLimit(), NodeTimeout: o.site.nodeTimeout, NodeLostAfter: o.site.nodeLost,
		ExtraListen: []string{nc.BridgeIP().String()}})
	if err != nil {
		return err
	}
	defer cp.Close()
	u, err := url.Parse(cp.URL)
	if err != nil {
		return err
	}
	srvURL := "https://" + net.JoinHostPort(nc.BridgeIP().String(), u.Port())
	g, err := netgrid.StartGrid(ctx, netgrid.GridConfig{
		Net: nc, Server: srvURL, CAFile: filepath.Join(dataDir, "tls", "ca.crt"), JoinTokenFile: filepath.Join(dataDir, "join.token"),
		DataDir: dataDir, NodePrefix: o.grid.nodePrefix, Accel: o.accel, Labels: o.labels, Logger: log,
		Share: model.Resources{MilliCPU: int64(o.grid.hostCPUs * 1000)},
	})
	if err != nil {
		cancelCP()
		_ = cp.Wait(cpCtx)
		return err
	}
	// A data directory where vgrid up ran with its one local agent keeps
	// that host too: its workspaces' guests run here, and leaving it out
	// would have them declared lost and run a second time elsewhere.
	stopLocal := func() {}
	if _, err := os.Stat(agent.CredentialFile(filepath.Join(dataDir, "agent"))); err == nil {
		ag, stop, err := startLocalAgent(ctx, log, o, cp, net.JoinHostPort(nc.BridgeIP().String(), strconv.Itoa(netgrid.TransferPort)))
		if err != nil {
			g.Stop()
			cancelCP()
			_ = cp.Wait(cpCtx)
			return fmt.Errorf("the local host of this data directory: %w", err)
		}
		stopLocal = stop
		fmt.Fprintf(os.Stderr, "vgrid up: this data directory had a local host, %s: it runs beside the grid (drain it with vgrid node drain %s)\n", ag.NodeName(), ag.NodeName())
	}
	defer func() { stopLocal() }()
	fmt.Fprintf(os.Stderr, "vgrid up: API at %s (for the hosts: %s), data in %s, %d hosts on bridge %s (%s):\n",
		cp.URL, srvURL, dataDir, len(hosts), nc.Bridge, nc.Subnet)
	printGridTable(os.Stderr, g)
	fmt.Fprintln(os.Stderr, "Ctrl-C or vgrid down stops vgrid and the agents; workspaces keep running in their namespaces.")
	done := make(chan error, 1)
	go func() { done <- cp.Wait(cpCtx) }()
	select {
	case <-ctx.Done():
		g.Stop()
		cancelCP()
		return <-done
	case err := <-done:
		g.Stop()
		return err
	}
}

func printGridTable(w *os.File, g *netgrid.Grid) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "HOST\tNAMESPACE\tADDRESS\tCPU\tMEMORY\tDISK\tAGENT PID\tDATA DIR")
	for _, h := range g.Hosts() {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\n", h.Name, h.Namespace, h.Address,
			strconv.FormatFloat(float64(h.Capacity.MilliCPU)/1000, 'f', -1, 64), h.Capacity.Memory.Human(), h.Capacity.Disk.Human(),
			h.PID(), h.DataDir)
	}
	tw.Flush()
}

// readyNodes names the ready nodes.
func readyNodes(nodes []api.NodeInfo, since time.Time) []string {
	var out []string
	for _, n := range nodes {
		if n.Ready && !n.LastHeartbeat.Before(since) {
			out = append(out, n.Name)
		}
	}
	return out
}

// downGrid stops the agents a grid left (vgrid up was killed), and with
// destroy removes its namespaces and bridge, unless processes (guests)
// still run in them.
func downGrid(dataDir string, destroy bool) error {
	b, err := os.ReadFile(gridFilePath(dataDir))
	if err != nil {
		if destroy {
			return fmt.Errorf("--destroy-hosts: no grid in %s (%v)", dataDir, err)
		}
		return nil
	}
	var gf gridFile
	if err := json.Unmarshal(b, &gf); err != nil {
		return fmt.Errorf("%s: %w", gridFilePath(dataDir), err)
	}
	abs, _ := filepath.Abs(dataDir)
	dirs, _ := filepath.Glob(filepath.Join(abs, "hosts", "*"))
	for _, d := range dirs {
		netgrid.StopStaleAgent(d, 15*time.Second)
	}
	if !destroy {
		return nil
	}
	if busy := netgrid.Busy(gf.Net); len(busy) > 0 {
		return fmt.Errorf("--destroy-hosts: processes still run in the grid's namespaces (delete or stop their workspaces first):\n  %s",
			strings.Join(busy, "\n  "))
	}
	if err := netgrid.Teardown(gf.Net); err != nil {
		return err
	}
	_ = os.Remove(gridFilePath(dataDir))
	fmt.Fprintf(os.Stderr, "removed the grid's namespaces %s<i> and bridge %s\n", gf.Net.Prefix, gf.Net.Bridge)
	return nil
}

// capacityFlags are vgrid agent's capacity overrides and address.
type capacityFlags struct {
	cpus, memory, disk, bandwidth, address string
}

func (c *capacityFlags) register(f *pflag.FlagSet) {
	f.StringVar(&c.cpus, "cpus", "", "CPU capacity offered, in cores (1.5) or millicores (1500m) (default: the online CPUs)")
	f.StringVar(&c.memory, "memory", "", "memory offered, e.g. 4Gi (default: MemTotal less 1Gi)")
	f.StringVar(&c.disk, "disk", "", "disk offered, e.g. 100Gi (default: the free space under --data-dir)")
	f.StringVar(&c.bandwidth, "bandwidth", "", "network bandwidth offered to guests' caps, e.g. 1Gbit (default: 10Gbit)")
	f.StringVar(&c.address, "address", "", "this host's address, as the node record shows it")
}

func (c *capacityFlags) resources() (model.Resources, error) {
	var r model.Resources
	if c.cpus != "" {
		m, err := parseMilliCPU(c.cpus)
		if err != nil {
			return r, fmt.Errorf("--cpus: %w", err)
		}
		r.MilliCPU = m
	}
	if c.bandwidth != "" {
		b, err := model.ParseBitRate(c.bandwidth)
		if err != nil {
			return r, fmt.Errorf("--bandwidth: %w", err)
		}
		r.Bandwidth = b.BytesPerSecond()
	}
	for _, x := range []struct {
		flag, v string
		dst     *model.ByteSize
	}{{"--memory", c.memory, &r.Memory}, {"--disk", c.disk, &r.Disk}} {
		if x.v == "" {
			continue
		}
		n, err := model.ParseByteSize(x.v)
		if err != nil {
			return r, fmt.Errorf("%s: %w", x.flag, err)
		}
		if n <= 0 {
			return r, fmt.Errorf("%s: want more than 0, got %s", x.flag, x.v)
		}
		*x.dst = n
	}
	return r, nil
}

// parseMilliCPU reads "500m" (millicores) or "0.5" (cores).
func parseMilliCPU(s string) (int64, error) {
	s = strings.TrimSpace(s)
	if m, ok := strings.CutSuffix(s, "m"); ok {
		n, err := strconv.ParseInt(m, 10, 64)
		if err != nil || n <= 0 {
			return 0, fmt.Errorf("%q: want a positive number of millicores such as 500m", s)
		}
		return n, nil
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) || f <= 0 || f > 1e6 {
		return 0, fmt.Errorf("%q: want a positive number of cores such as 0.5 or 2, or millicores such as 500m", s)
	}
	m := int64(math.Round(f * 1000))
	if m == 0 {
		return 0, fmt.Errorf("%q: less than a millicore", s)
	}
	return m, nil
}

// gridOfDataDir fills o's grid flags from the grid.json of its data
// directory when --hosts was not given: a vgrid up on a data directory
// where a grid ran starts that grid again (its guests run in its
// namespaces; without their agents they would be declared lost).
func gridOfDataDir(o *upOptions) (bool, error) {
	if o.grid.hosts > 0 {
		return false, nil
	}
	b, err := os.ReadFile(gridFilePath(o.dataDir))
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	var gf gridFile
	if err := json.Unmarshal(b, &gf); err != nil {
		return false, fmt.Errorf("%s: %w", gridFilePath(o.dataDir), err)
	}
	if gf.Net.Hosts < 1 {
		return false, nil
	}
	o.grid.hosts, o.grid.bridge, o.grid.subnet, o.grid.prefix = gf.Net.Hosts, gf.Net.Bridge, gf.Net.Subnet, gf.Net.Prefix
	if gf.NodePrefix != "" {
		o.grid.nodePrefix = gf.NodePrefix
	}
	return true, nil
}
