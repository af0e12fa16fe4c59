package qemu

import (
	"context"
	"os"
	"syscall"
	"time"

	"vgrid/internal/hypervisor"
)

var _ hypervisor.StatsReader = (*Driver)(nil)

// Stats implements hypervisor.StatsReader: CPU time and memory from the
// instance's cgroup, bytes read and written from QMP's query-blockstats
// (every block backend of the process: root disk, seed, volumes), and the
// blocks the root disk's overlay takes on the host. A figure that cannot
// be read is left 0 (an instance between two processes, a QMP connection
// that is busy), so a scrape never fails for one guest.
func (d *Driver) Stats(ctx context.Context, id string) (hypervisor.Stats, error) {
	in, err := d.Get(ctx, id)
	if err != nil {
		return hypervisor.Stats{}, err
	}
	var st hypervisor.Stats
	if fi, err := os.Stat(d.paths(id).Disk); err == nil {
		if sys, ok := fi.Sys().(*syscall.Stat_t); ok {
			st.DiskAllocated = sys.Blocks * 512
		}
	}
	if in.State != hypervisor.InstanceRunning && in.State != hypervisor.InstancePaused {
		return st, nil
	}
	st.Running, st.CPUSeconds = true, in.CPUSeconds
	if g, err := d.cg.Load(d.opts.CgroupParent, id); err == nil {
		if m, err := g.MemoryUsage(); err == nil {
			st.MemoryBytes = m
		}
	}
	d.mu.Lock()
	v := d.vms[id]
	d.mu.Unlock()
	if v == nil {
		return st, nil
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	c, err := v.qmpClient(ctx)
	if err != nil {
		return st, nil
	}
	var stats []struct {
		Stats struct {
			RdBytes int64 `json:"rd_bytes"`
			WrBytes int64 `json:"wr_bytes"`
		} `json:"stats"`
	}
	if err := c.Execute(ctx, "query-blockstats", nil, &stats); err != nil {
		v.log.Debug("query-blockstats", "err", err)
		return st, nil
	}
	for _, s := range stats {
		st.DiskReadBytes += s.Stats.RdBytes
		st.DiskWrittenBytes += s.Stats.WrBytes
	}
	return st, nil
}
