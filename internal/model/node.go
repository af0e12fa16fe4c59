package model

import "time"

// Resources is what placement counts on a host.
type Resources struct {
	MilliCPU int64    `json:"millicpu"` // thousandths of a core
	Memory   ByteSize `json:"memory"`
	Disk     ByteSize `json:"disk"`
	// Bandwidth is network bandwidth in bytes per second (0: not counted
	// for a request; a host with 0 offers none).
	Bandwidth ByteSize `json:"bandwidth,omitempty"`
}

// Add returns r + o.
func (r Resources) Add(o Resources) Resources {
	return Resources{MilliCPU: r.MilliCPU + o.MilliCPU, Memory: r.Memory + o.Memory, Disk: r.Disk + o.Disk, Bandwidth: r.Bandwidth + o.Bandwidth}
}

// Sub returns r - o.
func (r Resources) Sub(o Resources) Resources {
	return Resources{MilliCPU: r.MilliCPU - o.MilliCPU, Memory: r.Memory - o.Memory, Disk: r.Disk - o.Disk, Bandwidth: r.Bandwidth - o.Bandwidth}
}

// Fits reports whether o fits inside r.
func (r Resources) Fits(o Resources) bool {
	return o.MilliCPU <= r.MilliCPU && o.Memory <= r.Memory && o.Disk <= r.Disk && o.Bandwidth <= r.Bandwidth
}

// Node is a physical host that runs an agent.
type Node struct {
	Name     string            `json:"name"`
	Address  string            `json:"address,omitempty"`
	Labels   map[string]string `json:"labels,omitempty"`
	Capacity Resources         `json:"capacity"`
	// Accel is the acceleration the agent uses: kvm or tcg.
	Accel         string    `json:"accel"`
	Hypervisor    string    `json:"hypervisor,omitempty"` // e.g. "qemu 7.2.22"
	Cgroup        string    `json:"cgroup,omitempty"`     // v1, v2 or hybrid
	AgentVersion  string    `json:"agent_version,omitempty"`
	RegisteredAt  time.Time `json:"registered_at"`
	LastHeartbeat time.Time `json:"last_heartbeat"`
}

// Image is a bootable environment that workspaces are built from.
type Image struct {
	Name string `json:"name"`
	// Boot is "direct" (QEMU loads Kernel/Initrd itself, -M microvm) or
	// "firmware" (BIOS boots the disk, as for ordinary cloud images).
	Boot string `json:"boot"`
	// Disk is the base disk; workspaces get a qcow2 overlay on it.
	Disk       ImageFile  `json:"disk"`
	DiskFormat string     `json:"disk_format"` // raw or qcow2
	Kernel     *ImageFile `json:"kernel,omitempty"`
	Initrd     *ImageFile `json:"initrd,omitempty"`
	Cmdline    string     `json:"cmdline,omitempty"`
	// MinDisk is the base disk's virtual size: a workspace disk is never smaller.
	MinDisk   ByteSize  `json:"min_disk"`
	CreatedAt time.Time `json:"created_at"`
}

// ImageFile is one file of an image, named by content.
type ImageFile struct {
	Path   string `json:"path"`   // where the control plane serves it from
	SHA256 string `json:"sha256"` // the cache key on hosts
	Size   int64  `json:"size"`
}
