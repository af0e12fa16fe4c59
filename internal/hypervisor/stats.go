package hypervisor

import "context"

// Stats is what an instance uses now, for metrics. Counters are those of
// the instance's current process (a resume is a new process: they start
// again from 0); a stopped or suspended instance has only DiskAllocated.
type Stats struct {
	// Running says the instance has a process (running or paused): the
	// counters below are its.
	Running bool
	// CPUSeconds is the CPU time of the process (its cgroup's counter).
	CPUSeconds float64
	// MemoryBytes is the memory charged to its cgroup.
	MemoryBytes int64
	// DiskReadBytes and DiskWrittenBytes are what the guest read from and
	// wrote to its disks (all of them, network volumes included).
	DiskReadBytes, DiskWrittenBytes int64
	// DiskAllocated is the host space the instance's own disk file takes
	// (its allocated blocks, not its virtual size).
	DiskAllocated int64
}

// StatsReader is a Driver that can tell an instance's usage (optional:
// the agent reports what Instance says without it). Unknown IDs return
// ErrNotFound; a counter that cannot be read is 0.
type StatsReader interface {
	Stats(ctx context.Context, id string) (Stats, error)
}
