package fake

import (
	"context"
	"fmt"

	"vgrid/internal/hypervisor"
)

var _ hypervisor.StatsReader = (*Driver)(nil)

// Stats implements hypervisor.StatsReader with simulated figures that
// tests can set: a running instance's CPU time is its SetCPUSeconds
// counter, its memory a quarter of its quantum's (what the fake saves on
// suspend: idle guests touch little), and what WriteDisk stored counts as
// written and allocated; the fake's guests read nothing. A stopped or
// suspended instance has only its allocated disk.
func (d *Driver) Stats(ctx context.Context, id string) (hypervisor.Stats, error) {
	if _, closed := d.state(); closed {
		return hypervisor.Stats{}, ErrClosed
	}
	h := d.host
	h.mu.Lock()
	defer h.mu.Unlock()
	in := h.insts[id]
	if in == nil {
		return hypervisor.Stats{}, fmt.Errorf("stats of %q: %w", id, hypervisor.ErrNotFound)
	}
	st := hypervisor.Stats{DiskAllocated: int64(len(in.disk))}
	if in.state == hypervisor.InstanceRunning || in.state == hypervisor.InstancePaused {
		st.Running, st.CPUSeconds = true, in.cpu
		st.MemoryBytes = int64(in.spec.Quantum.Memory) / 4
		st.DiskWrittenBytes = int64(len(in.disk))
	}
	return st, nil
}
