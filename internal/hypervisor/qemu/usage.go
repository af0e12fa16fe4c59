package qemu

import (
	"errors"
	"os"

	"vgrid/internal/cgroup"
)

// CPU accounting. Every run of an instance (a boot or a resume) gets a
// fresh cgroup, which QEMU joins before it execs (launch), so the group's
// CPU counter is the CPU time of the instance's current process. Get and
// List report it (Instance.CPUSeconds). The group is removed when the
// process ends (finish); just before that, the counter's last value is
// written to state.json with the exit (runState.CPUSeconds), so that the
// stopped or suspended instance still tells what its last run used
// (Instance.FinalCPUSeconds), to this driver and to a later one.

// groupCPUSeconds reads g's counter; 0 when it cannot be read.
func (d *Driver) groupCPUSeconds(id string, g *cgroup.Group) float64 {
	s, err := g.CPUSeconds()
	if err != nil {
		d.log.Debug("read cgroup cpu usage", "instance", id, "err", err)
		return 0
	}
	return s
}

// finalCPUSeconds reads the counter of the cgroup of v's run, whose
// process has ended and whose group is about to be removed. 0 when there
// is no group (left by a driver that removed it without recording it).
func (d *Driver) finalCPUSeconds(v *vm) float64 {
	g, err := d.cg.Load(d.opts.CgroupParent, v.id)
	if err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			v.log.Warn("read cpu usage at exit", "err", err)
		}
		return 0
	}
	return d.groupCPUSeconds(v.id, g)
}
