package agent

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"vgrid/internal/hypervisor"
	"vgrid/internal/metrics"
	"vgrid/internal/model"
)

// Metrics: the usage of the host's workspaces, read when scraped: CPU
// time, memory, disk I/O and allocated disk from the driver (when it is a
// hypervisor.StatsReader; else CPU time from its Instance), network bytes
// from the counters of the workspace's taps. Labelled by workspace ID,
// name and project, for the workspaces assigned to this host.

// sysClassNet is where the kernel shows network devices' counters (a
// test points it at a directory of its own).
var sysClassNet = "/sys/class/net"

// MetricsCollector returns a collector of the agent's workspaces' usage,
// read at scrape time. Register it in one registry (metrics.AgentHandler
// makes one; `vgrid up` uses metrics.AgentRegistry).
func (a *Agent) MetricsCollector() prometheus.Collector { return agentCollector{a} }

type agentCollector struct{ a *Agent }

func (c agentCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{metrics.WorkspaceCPU, metrics.WorkspaceMemory, metrics.WorkspaceDiskRead,
		metrics.WorkspaceDiskWritten, metrics.WorkspaceDiskAlloc, metrics.WorkspaceNetRx, metrics.WorkspaceNetTx} {
		ch <- d
	}
}

func (c agentCollector) Collect(ch chan<- prometheus.Metric) {
	a := c.a
	a.mu.Lock()
	wss := make([]model.Workspace, 0, len(a.assigned))
	for _, w := range a.assigned {
		wss = append(wss, w)
	}
	a.mu.Unlock()
	sort.Slice(wss, func(i, j int) bool { return wss[i].ID < wss[j].ID })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, w := range wss {
		st, err := a.stats(ctx, w.ID)
		if errors.Is(err, hypervisor.ErrNotFound) {
			continue // not started here yet, or gone
		}
		if err != nil {
			ch <- prometheus.NewInvalidMetric(metrics.WorkspaceCPU, err)
			continue
		}
		lv := []string{w.ID, w.Spec.Name, w.Project}
		gauge := func(d *prometheus.Desc, v float64) {
			ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, lv...)
		}
		counter := func(d *prometheus.Desc, v float64) {
			ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, lv...)
		}
		gauge(metrics.WorkspaceDiskAlloc, float64(st.DiskAllocated))
		if !st.Running {
			continue
		}
		counter(metrics.WorkspaceCPU, st.CPUSeconds)
		gauge(metrics.WorkspaceMemory, float64(st.MemoryBytes))
		counter(metrics.WorkspaceDiskRead, float64(st.DiskReadBytes))
		counter(metrics.WorkspaceDiskWritten, float64(st.DiskWrittenBytes))
		if len(w.NICs) > 0 {
			var rx, tx int64
			for i := range w.NICs {
				r, t := tapBytes(tapName(w.ID, i))
				rx, tx = rx+r, tx+t
			}
			// The tap's receive is what the guest sent, and the other
			// way round.
			counter(metrics.WorkspaceNetRx, float64(tx))
			counter(metrics.WorkspaceNetTx, float64(rx))
		}
	}
}

// stats reads an instance's usage from the driver.
func (a *Agent) stats(ctx context.Context, id string) (hypervisor.Stats, error) {
	if sr, ok := a.drv.(hypervisor.StatsReader); ok {
		return sr.Stats(ctx, id)
	}
	in, err := a.drv.Get(ctx, id)
	if err != nil {
		return hypervisor.Stats{}, err
	}
	running := in.State == hypervisor.InstanceRunning || in.State == hypervisor.InstancePaused
	return hypervisor.Stats{Running: running, CPUSeconds: in.CPUSeconds}, nil
}

// tapBytes reads a tap's receive and transmit byte counters (0 for a
// device that is not there).
func tapBytes(tap string) (rx, tx int64) {
	read := func(name string) int64 {
		b, err := os.ReadFile(filepath.Join(sysClassNet, tap, "statistics", name))
		if err != nil {
			return 0
		}
		n, _ := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
		return n
	}
	return read("rx_bytes"), read("tx_bytes")
}
